#!/usr/bin/env python3
"""End-to-end benchmark over Streamable HTTP: the release `sqlwarden` binary with a JWT verified
on every request, and optionally DBHub over its HTTP transport, side by side in one run.

    python3 benches/e2e_http.py                            # sqlwarden alone
    python3 benches/e2e_http.py --dbhub /tmp/dbhub/node_modules/@bytebase/dbhub/dist/index.js
    python3 benches/e2e_http.py --no-build --n 3000 --concurrency 16
    python3 benches/e2e_http.py --baseline /tmp/sqlwarden-base --rounds 3 --concurrency 1 --concurrency 16

It builds the release binary, loads the PostgreSQL fixtures of benches/e2e.py (`customers`:
10,000 rows; `orders`: 100,000), and serves them over HTTP with `[auth]` reading the test JWKS
of tests/fixtures/auth. One RS256 token is signed with `openssl` (the test key, valid for an
hour); every request carries it, and the server verifies it on every request. DBHub, when
given, serves the same database with a static bearer token (the only authentication it has).

Each case (point query, 1,000 rows) runs at 1, 16 and 64 requests in flight: as many keep-alive
connections, each with its own MCP session, driven by one client thread with a selector. The
table gives calls/s, p50/p99 latency as the client saw it, the server's CPU time per call (from
/proc/PID/stat) and its peak RSS (VmHWM). Then `--idle-sessions` sessions (1,000) are opened on a fresh sqlwarden
and left idle, and its resident memory is read.

With `--baseline OTHER_BINARY`, the release binary and that one (another commit's build) serve
the same cases in turn, `--rounds` times each, and the table gives each one's medians.

The client is Python (raw sockets and a selector): on this 2-core machine it competes with the
server for CPU, so calls/s and latency are a floor for both servers alike; the CPU per call is
the server's own. Python 3 standard library only, plus `openssl` and, for DBHub, `node`.
"""

import argparse
import base64
import http.client
import json
import os
import selectors
import socket
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import e2e  # noqa: E402

ROOT = e2e.ROOT
FIXTURES = os.path.join(ROOT, "tests", "fixtures", "auth")
ISSUER = "https://idp.bench"
DBHUB_TOKEN = "dbhub-bench-token"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def b64url(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def rs256_token(audience):
    """A JWT signed with the test RSA key (kid rsa-1) by openssl."""
    now = int(time.time())
    header = b64url(json.dumps({"alg": "RS256", "typ": "JWT", "kid": "rsa-1"}).encode())
    claims = b64url(json.dumps({"iss": ISSUER, "aud": audience, "sub": "bench", "tenant": "bench",
                                "iat": now, "exp": now + 3600}).encode())
    signing_input = f"{header}.{claims}".encode()
    signature = subprocess.run(["openssl", "dgst", "-sha256", "-sign", os.path.join(FIXTURES, "rsa.pem")],
                               input=signing_input, capture_output=True, check=True).stdout
    return f"{header}.{claims}.{b64url(signature)}"


def wait_for_port(port, process, seconds=30):
    deadline = time.time() + seconds
    while time.time() < deadline:
        if process.poll() is not None:
            sys.exit(f"the server exited with {process.returncode}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    sys.exit("the server did not listen")


def cpu_ticks(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])


def status_kb(pid, key):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    return None


class Server:
    """A server process and how to talk MCP to it."""

    def __init__(self, name, command, port, token, tool, argument, env=None):
        self.name, self.port, self.token, self.tool, self.argument = name, port, token, tool, argument
        self.process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                        stderr=subprocess.DEVNULL, env=env)
        wait_for_port(port, self.process)

    def stop(self):
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()

    def headers(self, session):
        headers = {"Content-Type": "application/json", "Accept": "application/json, text/event-stream",
                   "Authorization": f"Bearer {self.token}"}
        if session:
            headers["Mcp-Session-Id"] = session
        return headers


def post(connection, server, session, message):
    connection.request("POST", "/mcp", body=json.dumps(message), headers=server.headers(session))
    response = connection.getresponse()
    body = response.read()
    if response.getheader("Content-Type", "").startswith("text/event-stream"):
        for line in body.decode().splitlines():
            if line.startswith("data:"):
                body = line[5:].strip().encode()
    return response.status, response.getheader("Mcp-Session-Id"), body


def open_session(connection, server):
    status, session, body = post(connection, server, None, {
        "jsonrpc": "2.0", "id": 0, "method": "initialize",
        "params": {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "bench", "version": "1"}}})
    if status != 200:
        raise RuntimeError(f"initialize: {status} {body[:200]!r}")
    post(connection, server, session, {"jsonrpc": "2.0", "method": "notifications/initialized"})
    return session


def response(buffer):
    """The first whole HTTP/1.1 response in `buffer`: (status, body, the bytes after it), or None."""
    end = buffer.find(b"\r\n\r\n")
    if end < 0:
        return None
    lines = buffer[:end].decode("latin-1").split("\r\n")
    headers = {name.strip().lower(): value.strip() for name, _, value in (line.partition(":") for line in lines[1:])}
    status, at = int(lines[0].split()[1]), end + 4
    if "content-length" in headers:
        length = int(headers["content-length"])
        if len(buffer) < at + length:
            return None
        body, rest = buffer[at:at + length], buffer[at + length:]
    elif headers.get("transfer-encoding", "").lower() == "chunked":
        body = b""
        while True:
            line_end = buffer.find(b"\r\n", at)
            if line_end < 0:
                return None
            size = int(buffer[at:line_end].split(b";")[0], 16)
            if len(buffer) < line_end + 4 + size:
                return None
            body += buffer[line_end + 2:line_end + 2 + size]
            at = line_end + 4 + size
            if size == 0:
                break
        rest = buffer[at:]
    else:
        body, rest = b"", buffer[at:]
    if headers.get("content-type", "").startswith("text/event-stream"):
        for line in body.decode().splitlines():
            if line.startswith("data:"):
                body = line[5:].strip().encode()
    return status, body, rest


def run_case(server, query, concurrency, n, warmup):
    """`n` calls (after `warmup`) over `concurrency` keep-alive connections, each with its own session,
    from one thread with a selector: a request is sent on a connection as soon as its previous answer
    is read. Latencies, errors, calls/s, server CPU."""
    selector = selectors.DefaultSelector()
    total, sent, done = n + warmup, 0, 0
    latencies, errors, measured_start, start_ticks = [], 0, None, None
    for _ in range(concurrency):
        connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=60)
        session = open_session(connection, server)
        headers = "".join(f"{name}: {value}\r\n" for name, value in server.headers(session).items())
        state = {"sock": connection.sock, "connection": connection, "buffer": b"", "began": 0.0, "call": 0,
                 "head": f"POST /mcp HTTP/1.1\r\nHost: 127.0.0.1:{server.port}\r\n{headers}"}
        selector.register(connection.sock, selectors.EVENT_READ, state)

    def send(state):
        state["call"] += 1
        body = json.dumps({"jsonrpc": "2.0", "id": state["call"], "method": "tools/call",
                           "params": {"name": server.tool, "arguments": server.argument(query)}}).encode()
        state["began"] = time.perf_counter()
        state["sock"].sendall(f"{state['head']}Content-Length: {len(body)}\r\n\r\n".encode() + body)

    for key in list(selector.get_map().values()):
        send(key.data)
        sent += 1
    if warmup == 0:
        measured_start, start_ticks = time.perf_counter(), cpu_ticks(server.process.pid)
    while done < total:
        for key, _ in selector.select(timeout=60):
            state = key.data
            data = state["sock"].recv(1 << 16)
            if not data:
                raise RuntimeError(f"{server.name} closed a connection")
            state["buffer"] += data
            parsed = response(state["buffer"])
            if parsed is None:
                continue
            status, body, state["buffer"] = parsed
            done += 1
            if done == warmup:
                measured_start, start_ticks = time.perf_counter(), cpu_ticks(server.process.pid)
            elif done > warmup:
                latencies.append(time.perf_counter() - state["began"])
                if not (status == 200 and b'"isError":true' not in body and b'"error"' not in body[:200]):
                    if not errors:
                        print(f"{server.name}: first error: {status} {body[:300]!r}", file=sys.stderr)
                    errors += 1
            if sent < total:
                send(state)
                sent += 1
    elapsed = time.perf_counter() - measured_start
    ticks = cpu_ticks(server.process.pid) - start_ticks
    for key in list(selector.get_map().values()):
        key.data["connection"].close()
    selector.close()
    latencies.sort()
    hz = os.sysconf("SC_CLK_TCK")
    return {
        "calls_per_s": round(n / elapsed),
        "p50_us": round(latencies[len(latencies) // 2] * 1e6),
        "p99_us": round(latencies[int(len(latencies) * 0.99)] * 1e6),
        "cpu_us_per_call": round(ticks / hz / n * 1e6, 1),
        "peak_rss_mib": round(status_kb(server.process.pid, "VmHWM") / 1024, 1),
        "errors": errors,
    }


def sqlwarden_config(url, directory, port):
    path = os.path.join(directory, "http.toml")
    with open(path, "w") as f:
        f.write(
            f'[database]\nurl = "{url}"\nmax_connections = 16\n'
            '[allowlist]\nschemas = ["public"]\ntables = ["customers", "orders"]\n'
            "[quotas]\nrate_per_minute = 100000000\nburst = 1000000\nmax_concurrent = 64\n"
            '[[grants]]\ntool = "query_read"\n'
            f'[audit]\npath = "{os.path.join(directory, "audit.jsonl")}"\n'
            f'[http]\nlisten = "127.0.0.1:{port}"\nmax_sessions = 2000\n'
            f'[auth]\nissuer = "{ISSUER}"\njwks_file = "{os.path.join(FIXTURES, "jwks.json")}"\ntenant_claim = "tenant"\n'
        )
    return path


def start_sqlwarden(binary, url, directory):
    port = free_port()
    path = sqlwarden_config(url, directory, port)
    token = rs256_token(f"http://127.0.0.1:{port}/mcp")
    return Server("sqlwarden", [binary, "serve", "--config", path], port, token, "query_read",
                  lambda query: {"query": query, "limit": 1000})


def start_dbhub(script, url):
    port = free_port()
    dsn = url.split("?")[0] + "?sslmode=disable"
    return Server("DBHub", ["node", script, "--transport", "http", "--port", str(port), "--dsn", dsn,
                            "--auth-token", DBHUB_TOKEN], port, DBHUB_TOKEN, "execute_sql",
                  lambda query: {"sql": query})


def idle_sessions(binary, url, directory, count):
    server = start_sqlwarden(binary, url, directory)
    try:
        connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=60)
        for _ in range(count):
            open_session(connection, server)
        connection.close()
        time.sleep(1)
        return status_kb(server.process.pid, "VmRSS"), status_kb(server.process.pid, "VmHWM")
    finally:
        server.stop()


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=2000, help="measured calls per case (2000)")
    parser.add_argument("--warmup", type=int, default=200)
    parser.add_argument("--concurrency", type=int, action="append", help="requests in flight (1, 16, 64)")
    parser.add_argument("--dbhub", help="DBHub's dist/index.js, to run side by side")
    parser.add_argument("--idle-sessions", type=int, default=1000)
    parser.add_argument("--no-build", action="store_true")
    parser.add_argument("--keep", action="store_true", help="keep the benchmark database")
    parser.add_argument("--baseline", help="another sqlwarden binary to run side by side, in turn")
    parser.add_argument("--rounds", type=int, default=1, help="runs of each binary per case, with --baseline")
    options = parser.parse_args()
    if not options.no_build:
        e2e.run(["cargo", "build", "--release", "--quiet", "--bin", "sqlwarden"], cwd=ROOT)
    binary = os.path.join(ROOT, "target", "release", "sqlwarden")
    directory = tempfile.mkdtemp(prefix="sqlwarden-http-bench-")
    print("loading PostgreSQL fixtures…", file=sys.stderr)
    url, _ = e2e.load_postgres()
    if options.baseline:
        try:
            return side_by_side(options, binary, url, directory)
        finally:
            if not options.keep:
                e2e.drop_postgres()
    rows = []
    try:
        for name, query in [("point query", e2e.POINT), ("1,000 rows", e2e.ROWS)]:
            for concurrency in options.concurrency or [1, 16, 64]:
                starts = [lambda: start_sqlwarden(binary, url, directory)]
                if options.dbhub:
                    starts.append(lambda: start_dbhub(options.dbhub, url))
                for start in starts:
                    server = start()
                    try:
                        print(f"{server.name}: {name}, {concurrency} in flight…", file=sys.stderr)
                        rows.append((server.name, name, concurrency,
                                     run_case(server, query, concurrency, options.n, options.warmup)))
                    finally:
                        server.stop()
        rss, hwm = idle_sessions(binary, url, directory, options.idle_sessions)
    finally:
        if not options.keep:
            e2e.drop_postgres()
    print("| server | query | in flight | calls/s | p50 µs | p99 µs | server CPU µs/call | peak RSS MiB | errors |")
    print("|---|---|---|---|---|---|---|---|---|")
    failed = False
    for server, name, concurrency, r in rows:
        failed |= r["errors"] != 0
        print(f"| {server} | {name} | {concurrency} | {r['calls_per_s']} | {r['p50_us']} | {r['p99_us']} | "
              f"{r['cpu_us_per_call']} | {r['peak_rss_mib']} | {r['errors']} |")
    print(f"\nsqlwarden with {options.idle_sessions} idle sessions: RSS {round(rss / 1024, 1)} MiB, "
          f"peak {round(hwm / 1024, 1)} MiB")
    return 1 if failed else 0


def side_by_side(options, binary, url, directory):
    """Each case with the baseline and the release binary in turn, `rounds` times: the medians."""
    import statistics
    runs = {}
    for name, query in [("point query", e2e.POINT), ("1,000 rows", e2e.ROWS)]:
        for concurrency in options.concurrency or [1, 16, 64]:
            for round_ in range(options.rounds):
                for label, path in [("baseline", options.baseline), ("this build", binary)]:
                    server = start_sqlwarden(path, url, directory)
                    try:
                        print(f"{label}: {name}, {concurrency} in flight, round {round_ + 1}…", file=sys.stderr)
                        runs.setdefault((name, concurrency, label), []).append(
                            run_case(server, query, concurrency, options.n, options.warmup))
                    finally:
                        server.stop()
    print("| query | in flight | calls/s before | calls/s after | p50 µs before | p50 µs after "
          "| CPU µs/call before | CPU µs/call after | CPU change |")
    print("|---|---|---|---|---|---|---|---|---|")
    failed = False
    for name, concurrency in dict.fromkeys((n, c) for n, c, _ in runs):
        before, after = runs[(name, concurrency, "baseline")], runs[(name, concurrency, "this build")]
        failed |= any(r["errors"] for r in before + after)
        median = lambda rs, key: statistics.median(r[key] for r in rs)  # noqa: E731
        cpu_before, cpu_after = median(before, "cpu_us_per_call"), median(after, "cpu_us_per_call")
        print(f"| {name} | {concurrency} | {median(before, 'calls_per_s'):.0f} | {median(after, 'calls_per_s'):.0f} "
              f"| {median(before, 'p50_us'):.0f} | {median(after, 'p50_us'):.0f} | {cpu_before:.1f} | {cpu_after:.1f} "
              f"| {(cpu_after - cpu_before) / cpu_before * 100:+.1f} % |")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
