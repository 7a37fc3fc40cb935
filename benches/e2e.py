#!/usr/bin/env python3
"""End-to-end benchmark: the release `sqlwarden` binary over stdio, as an MCP client drives it.

    python3 benches/e2e.py                 # both databases, the table README shows
    python3 benches/e2e.py --only postgres --n 500
    python3 benches/e2e.py --baseline /tmp/sqlwarden-before --rounds 5   # side by side with another build

It builds the release binary, loads the fixtures into PostgreSQL and MariaDB on this machine
(`customers`: 10,000 rows; `orders`: 100,000 rows with numeric(10,2) totals) in a database
of its own (`sqlwarden_bench`, dropped at the end unless --keep), writes a configuration per
database, and runs `mcp_probe.py bench` for the point query and the 1,000-row query at 1 and 8
requests in flight. It prints one Markdown table: p50, p99, calls/s, peak RSS and the server's
CPU time per call, plus the number of calls that returned errors (which must be 0).

With --baseline BINARY (a release build of another commit), each case runs both binaries in
turn, --rounds times, on the same fixtures, and the table gives each one's median p50 and
median server CPU per call, and the change in CPU.

With --redis [URL] (default redis://127.0.0.1:6379/0), each case runs twice: with the quotas
in this process, and with `[quotas] backend = "redis"` (keys under `sqlwarden-bench:`), so the
table shows what a shared reservation adds to a call.

Connection settings come from SQLWARDEN_TEST_POSTGRES_URL and SQLWARDEN_TEST_MYSQL_URL (the
test suite's variables), defaulting to this machine's servers. Python 3 standard library only.
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from urllib.parse import urlsplit

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DATABASE = "sqlwarden_bench"

POINT = "SELECT id, name FROM customers WHERE id = 42"
ROWS = "SELECT * FROM orders LIMIT 1000"

POSTGRES_FIXTURE = """
CREATE TABLE customers (id integer PRIMARY KEY, name text NOT NULL, email text NOT NULL);
CREATE TABLE orders (id integer PRIMARY KEY, customer_id integer NOT NULL REFERENCES customers (id),
    total numeric(10,2) NOT NULL, created_at timestamptz NOT NULL);
INSERT INTO customers SELECT n, 'Customer ' || n, 'customer' || n || '@example.com'
    FROM generate_series(1, 10000) AS n;
INSERT INTO orders SELECT n, 1 + n % 10000, (n % 100000) / 100.0, timestamptz '2026-01-01' + n * interval '1 minute'
    FROM generate_series(1, 100000) AS n;
ANALYZE;
"""

MYSQL_FIXTURE = """
CREATE TABLE customers (id INT PRIMARY KEY, name VARCHAR(100) NOT NULL, email VARCHAR(200) NOT NULL);
CREATE TABLE orders (id INT PRIMARY KEY, customer_id INT NOT NULL, total DECIMAL(10,2) NOT NULL,
    created_at DATETIME NOT NULL, CONSTRAINT orders_customer FOREIGN KEY (customer_id) REFERENCES customers (id));
CREATE TABLE digits (d INT NOT NULL);
INSERT INTO digits VALUES (0), (1), (2), (3), (4), (5), (6), (7), (8), (9);
CREATE TABLE numbers (n INT PRIMARY KEY);
INSERT INTO numbers SELECT 1 + a.d + 10 * b.d + 100 * c.d + 1000 * e.d + 10000 * f.d
    FROM digits a, digits b, digits c, digits e, digits f;
INSERT INTO customers SELECT n, CONCAT('Customer ', n), CONCAT('customer', n, '@example.com')
    FROM numbers WHERE n <= 10000;
INSERT INTO orders SELECT n, 1 + n % 10000, (n % 100000) / 100.0, TIMESTAMP '2026-01-01 00:00:00' + INTERVAL n MINUTE
    FROM numbers;
DROP TABLE numbers, digits;
ANALYZE TABLE customers, orders;
"""


def run(command, **kwargs):
    return subprocess.run(command, check=True, **kwargs)


def postgres_url():
    return os.environ.get("SQLWARDEN_TEST_POSTGRES_URL", "postgres://postgres@127.0.0.1:5432/postgres")


def mysql_url():
    return os.environ.get("SQLWARDEN_TEST_MYSQL_URL", "mysql://root@127.0.0.1:3306/test")


def with_database(url, name):
    base = url.rsplit("/", 1)[0]
    return f"{base}/{name}"


def mysql_client_args(url):
    parts = urlsplit(url)
    args = ["mysql", "--batch", "-h", parts.hostname or "127.0.0.1", "-P", str(parts.port or 3306),
            "-u", parts.username or "root"]
    if parts.password:
        args.append(f"-p{parts.password}")
    return args


def load_postgres():
    admin = postgres_url()
    run(["psql", "-q", admin, "-c", f"DROP DATABASE IF EXISTS {DATABASE}", "-c", f"CREATE DATABASE {DATABASE}"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    run(["psql", "-q", "-v", "ON_ERROR_STOP=1", with_database(admin, DATABASE)], input=POSTGRES_FIXTURE.encode(),
        stdout=subprocess.DEVNULL)
    # Loopback PostgreSQL has a certificate for `localhost`, not 127.0.0.1.
    return with_database(admin, DATABASE) + "?sslmode=disable", "public"


def drop_postgres():
    run(["psql", "-q", postgres_url(), "-c", f"DROP DATABASE IF EXISTS {DATABASE}"], stdout=subprocess.DEVNULL)


def load_mysql():
    client = mysql_client_args(mysql_url())
    run(client + ["-e", f"DROP DATABASE IF EXISTS {DATABASE}; CREATE DATABASE {DATABASE}"])
    run(client + [DATABASE], input=MYSQL_FIXTURE.encode(), stdout=subprocess.DEVNULL)
    return with_database(mysql_url(), DATABASE), DATABASE


def drop_mysql():
    run(mysql_client_args(mysql_url()) + ["-e", f"DROP DATABASE IF EXISTS {DATABASE}"])


BACKENDS = {
    "postgres": ("PostgreSQL", load_postgres, drop_postgres),
    "mysql": ("MariaDB", load_mysql, drop_mysql),
}


def config(url, schema, directory, redis=None):
    path = os.path.join(directory, f"{schema}{'-redis' if redis else ''}.toml")
    store = f'backend = "redis"\nredis_url = "{redis}"\nkey_prefix = "sqlwarden-bench:"\n' if redis else ""
    with open(path, "w") as f:
        f.write(
            f'[database]\nurl = "{url}"\n'
            f'[allowlist]\nschemas = ["{schema}"]\ntables = ["customers", "orders"]\n'
            # Benchmarks make thousands of calls a second: the quota's limits are not what is
            # measured (its cost is, with --redis).
            "[quotas]\nrate_per_minute = 100000000\nburst = 1000000\nmax_concurrent = 64\n" + store +
            '[[grants]]\ntool = "query_read"\n'
            f'[audit]\npath = "{os.path.join(directory, "audit.jsonl")}"\n'
        )
    return path


def bench(probe, binary, config_path, query, limit, concurrency, n):
    args = json.dumps({"query": query, "limit": limit})
    out = subprocess.run(
        [sys.executable, probe, "bench", "--tool", "query_read", "--args", args, "--n", str(n),
         "--concurrency", str(concurrency), "--warmup", "200", "--", binary, "--config", config_path],
        check=True, capture_output=True, text=True)
    report = json.loads(out.stdout.strip().splitlines()[-1])
    return report


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", choices=sorted(BACKENDS), action="append", help="one backend (repeatable)")
    parser.add_argument("--n", type=int, default=2000, help="measured calls per run (2000)")
    parser.add_argument("--probe", default=os.path.join(ROOT, "..", "shared", "tools", "mcp_probe.py"),
                        help="path to mcp_probe.py")
    parser.add_argument("--keep", action="store_true", help="keep the benchmark databases")
    parser.add_argument("--no-build", action="store_true", help="use the release binary as it is")
    parser.add_argument("--baseline", help="another sqlwarden binary to run side by side, in the same run")
    parser.add_argument("--redis", nargs="?", const="redis://127.0.0.1:6379/0",
                        help="also run each case with the quotas in this Redis")
    parser.add_argument("--rounds", type=int, default=None,
                        help="runs of each binary per case (1; 5 with --baseline), medians reported")
    options = parser.parse_args()

    if not os.path.exists(options.probe):
        sys.exit(f"mcp_probe.py not found at {options.probe}; pass --probe PATH")
    if not options.no_build:
        run(["cargo", "build", "--release", "--quiet", "--bin", "sqlwarden"], cwd=ROOT)
    binary = os.path.join(ROOT, "target", "release", "sqlwarden")
    if options.baseline:
        return side_by_side(options, binary)

    rows = []
    for label, name, query, limit, concurrency, path in cases(options):
        print(f"{label}: {name}, {concurrency} in flight…", file=sys.stderr)
        report = bench(options.probe, binary, path, query, limit, concurrency, options.n)
        rows.append((label, name, concurrency, report))

    print("| database | query | in flight | p50 µs | p99 µs | calls/s | peak RSS MiB | server CPU µs/call | errors |")
    print("|---|---|---|---|---|---|---|---|---|")
    failed = False
    for label, name, concurrency, report in rows:
        errors = report.get("errors") or 0
        if isinstance(errors, list):
            errors = len(errors)
        failed |= errors != 0
        peak = report.get("peak_rss_kb")
        print(f"| {label} | {name} | {concurrency} | {report.get('p50_us')} | {report.get('p99_us')} | "
              f"{report.get('calls_per_s')} | {round(peak / 1024, 1) if peak else '?'} | "
              f"{report.get('server_cpu_us_per_call')} | {errors} |")
    return 1 if failed else 0


def cases(options):
    """Each measured case, with the configuration for its database: the fixtures are loaded
    before a database's cases and dropped after them (unless --keep)."""
    directory = tempfile.mkdtemp(prefix="sqlwarden-bench-")
    try:
        for key in options.only or ["postgres", "mysql"]:
            label, load, drop = BACKENDS[key]
            print(f"loading {label} fixtures…", file=sys.stderr)
            url, schema = load()
            try:
                paths = [(label, config(url, schema, directory))]
                if options.redis:
                    paths.append((f"{label}, quotas in Redis", config(url, schema, directory, options.redis)))
                for name, query, limit in [("point query", POINT, 100), ("1,000 rows", ROWS, 1000)]:
                    for concurrency in (1, 8):
                        for case_label, path in paths:
                            yield case_label, name, query, limit, concurrency, path
            finally:
                if not options.keep:
                    drop()
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def median(values):
    values = sorted(v for v in values if v is not None)
    return values[len(values) // 2] if values else None


def side_by_side(options, binary):
    """Each case: the baseline and this build in turn, `rounds` times, medians compared."""
    rounds = options.rounds or 5
    results = []
    failed = False
    for label, name, query, limit, concurrency, path in cases(options):
        runs = {"baseline": [], "this build": []}
        for round_ in range(rounds):
            print(f"{label}: {name}, {concurrency} in flight, round {round_ + 1}/{rounds}…", file=sys.stderr)
            for which, path_to in (("baseline", options.baseline), ("this build", binary)):
                report = bench(options.probe, path_to, path, query, limit, concurrency, options.n)
                errors = report.get("errors") or 0
                failed |= (len(errors) if isinstance(errors, list) else errors) != 0
                runs[which].append(report)
        results.append((label, name, concurrency, runs))

    print(f"| database | query | in flight | p50 µs before | p50 µs after | CPU µs/call before | "
          f"CPU µs/call after | CPU change |")
    print("|---|---|---|---|---|---|---|---|")
    for label, name, concurrency, runs in results:
        p50 = {k: median([r.get("p50_us") for r in v]) for k, v in runs.items()}
        cpu = {k: median([r.get("server_cpu_us_per_call") for r in v]) for k, v in runs.items()}
        change = (f"{(cpu['this build'] - cpu['baseline']) / cpu['baseline'] * 100:+.1f} %"
                  if cpu["baseline"] and cpu["this build"] is not None else "?")
        print(f"| {label} | {name} | {concurrency} | {p50['baseline']} | {p50['this build']} | "
              f"{cpu['baseline']} | {cpu['this build']} | {change} |")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
