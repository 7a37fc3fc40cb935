#!/usr/bin/env python3
"""Shared quotas under load: three `sqlwarden serve --http` replicas on one Redis, 64 callers for
30 s, Redis restarted once in the middle (shut down without saving, started again empty).

    python3 benches/replicas.py                  # builds the release binary first
    python3 benches/replicas.py --no-build --seconds 30 --callers 64

The replicas serve a SQLite table of 10,000 rows over HTTP on loopback (`auth = "none"`: every
call runs as the one `[session]` principal, which is the worst case for a shared limit), with
`[quotas] rate_per_minute = 600, burst = 60, max_concurrent = 4, rows_per_hour = 3000` in the
Redis at --redis (default 127.0.0.1:6379, restarted by this script: do not point it at a Redis
that holds anything you need). Each caller has its own keep-alive connection and MCP session on
one of the replicas, and calls `query_read` (10 rows) as fast as it is answered.

It prints what the limits promise and what happened, from the callers' answers and the
replicas' audit files:
- calls admitted, against the rate's bound (the burst plus one call per 0.1 s of the run);
- the most calls running at once across the replicas (from the audit's execute records: when
  each call's admission was written and when it ended), against `max_concurrent`;
- calls admitted while Redis was down;
- rows returned, against `rows_per_hour`.
It exits 1 when one of them is broken. Python 3 standard library, `redis-cli`, `redis-server`.
"""

import argparse
import http.client
import json
import os
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from datetime import datetime

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RATE, BURST, MAX_CONCURRENT, ROWS_PER_HOUR, LIMIT = 600, 60, 4, 3000, 10


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def redis_cli(port, *args):
    return subprocess.run(["redis-cli", "-p", str(port), *args], capture_output=True, text=True).stdout.strip()


def start_redis(port):
    subprocess.run(["redis-server", "--daemonize", "yes", "--bind", "127.0.0.1", "--port", str(port),
                    "--save", "", "--appendonly", "no"], check=True, stdout=subprocess.DEVNULL)
    deadline = time.time() + 10
    while redis_cli(port, "ping") != "PONG":
        if time.time() > deadline:
            sys.exit("redis-server did not come back")
        time.sleep(0.05)


def replica(binary, directory, database, redis_port, prefix, index):
    port = free_port()
    audit = os.path.join(directory, f"audit-{index}.jsonl")
    config = os.path.join(directory, f"replica-{index}.toml")
    with open(config, "w") as f:
        f.write(f'auth = "none"\n[database]\nurl = "sqlite:{database}"\n'
                '[allowlist]\nschemas = ["main"]\ntables = ["t"]\n'
                f"[quotas]\nrate_per_minute = {RATE}\nburst = {BURST}\nmax_concurrent = {MAX_CONCURRENT}\n"
                f'rows_per_hour = {ROWS_PER_HOUR}\nbackend = "redis"\n'
                f'redis_url = "redis://127.0.0.1:{redis_port}/0"\nkey_prefix = "{prefix}"\n'
                '[[grants]]\ntool = "query_read"\n'
                f'[audit]\npath = "{audit}"\n[http]\nlisten = "127.0.0.1:{port}"\nmax_sessions = 1000\n')
    process = subprocess.Popen([binary, "serve", "--config", config], stdin=subprocess.DEVNULL,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 20
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            break
        except OSError:
            if time.time() > deadline or process.poll() is not None:
                sys.exit("a replica did not start")
            time.sleep(0.05)
    return process, port, audit


HEADERS = {"Content-Type": "application/json", "Accept": "application/json, text/event-stream"}


def post(connection, session, message):
    headers = dict(HEADERS, **({"Mcp-Session-Id": session} if session else {}))
    connection.request("POST", "/mcp", body=json.dumps(message), headers=headers)
    response = connection.getresponse()
    return response.status, response.getheader("Mcp-Session-Id"), response.read()


def caller(port, until, answers, lock):
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    _, session, _ = post(connection, None, {"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
        "protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "replicas", "version": "1"}}})
    post(connection, session, {"jsonrpc": "2.0", "method": "notifications/initialized"})
    call = 0
    while time.time() < until:
        call += 1
        sent = time.time()
        status, _, body = post(connection, session, {"jsonrpc": "2.0", "id": call, "method": "tools/call", "params": {
            "name": "query_read", "arguments": {"query": "SELECT id FROM t", "limit": LIMIT}}})
        result = json.loads(body).get("result", {}) if status == 200 else {}
        if result.get("isError"):
            code = json.loads(result["content"][0]["text"]).get("code")
            rows = 0
        else:
            code, rows = (None, result.get("structuredContent", {}).get("row_count", 0)) if result else ("HTTP", 0)
        with lock:
            answers.append((sent, time.time(), code, rows))
        if code is not None:
            time.sleep(0.005)


def stamp(text):
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def running_at_once(audits):
    """The most calls running at once: from each call's admit record (allow) to its execute
    record, matched by session id."""
    events = []
    for path in audits:
        started = {}
        with open(path) as f:
            for line in f:
                record = json.loads(line)
                if record.get("tool") != "query_read":
                    continue
                if record.get("stage") == "admit" and record.get("decision") == "allow":
                    started[record["session_id"], record["request_id"]] = stamp(record["timestamp"])
                elif record.get("stage") == "execute":
                    began = started.pop((record["session_id"], record["request_id"]), None)
                    if began is not None:
                        events += [(began, 1), (stamp(record["timestamp"]), -1)]
    most = now = 0
    for _, change in sorted(events, key=lambda event: (event[0], event[1])):
        now += change
        most = max(most, now)
    return most


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=30)
    parser.add_argument("--callers", type=int, default=64)
    parser.add_argument("--redis-port", type=int, default=6379)
    parser.add_argument("--no-build", action="store_true")
    options = parser.parse_args()
    if not options.no_build:
        subprocess.run(["cargo", "build", "--release", "--quiet", "--bin", "sqlwarden"], cwd=ROOT, check=True)
    binary = os.path.join(ROOT, "target", "release", "sqlwarden")
    directory = tempfile.mkdtemp(prefix="sqlwarden-replicas-")
    database = os.path.join(directory, "t.db")
    with sqlite3.connect(database) as connection:
        connection.execute("CREATE TABLE t (id INTEGER PRIMARY KEY)")
        connection.executemany("INSERT INTO t VALUES (?)", [(n,) for n in range(10000)])
    if redis_cli(options.redis_port, "ping") != "PONG":
        start_redis(options.redis_port)
    prefix = f"sqlwarden-replicas:{os.getpid()}:"
    replicas = [replica(binary, directory, database, options.redis_port, prefix, index) for index in range(3)]
    answers, lock = [], threading.Lock()
    began = time.time()
    until = began + options.seconds
    threads = [threading.Thread(target=caller, args=(replicas[i % 3][1], until, answers, lock))
               for i in range(options.callers)]
    for thread in threads:
        thread.start()
    time.sleep(options.seconds / 2)
    down = time.time()
    redis_cli(options.redis_port, "shutdown", "nosave")
    time.sleep(1)
    start_redis(options.redis_port)
    up = time.time()
    for thread in threads:
        thread.join()
    for process, _, _ in replicas:
        process.terminate()
        process.wait(timeout=10)
    elapsed = max(answer[1] for answer in answers) - began
    admitted = [answer for answer in answers if answer[2] is None]
    during_outage = [answer for answer in admitted if down + 0.05 < answer[0] and answer[1] < up - 0.05]
    rows = sum(answer[3] for answer in admitted)
    codes = {}
    for answer in answers:
        codes[answer[2] or "admitted"] = codes.get(answer[2] or "admitted", 0) + 1
    bound = BURST + int(elapsed * RATE / 60) + 1
    most = running_at_once([audit for _, _, audit in replicas])
    broken = len(admitted) > bound or most > MAX_CONCURRENT or during_outage or rows > ROWS_PER_HOUR
    print(f"{options.callers} callers on 3 replicas for {elapsed:.1f} s, Redis down from "
          f"{down - began:.1f} s to {up - began:.1f} s; answers: {codes}")
    print(f"admitted: {len(admitted)} (bound: burst {BURST} + {RATE}/min over the run = {bound})")
    print(f"most calls running at once: {most} (max_concurrent = {MAX_CONCURRENT})")
    print(f"admitted while Redis was down: {len(during_outage)}")
    print(f"rows returned: {rows} (rows_per_hour = {ROWS_PER_HOUR})")
    subprocess.run(["rm", "-rf", directory])
    return 1 if broken else 0


if __name__ == "__main__":
    sys.exit(main())
