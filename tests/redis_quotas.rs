//! Quotas shared through Redis: the same arithmetic as the in-process engine, one limit across
//! replicas (in-process instances and `sqlwarden` processes), leases that a dead replica cannot
//! keep, `QUOTA_UNAVAILABLE` while Redis is away and recovery when it returns, and egress
//! budgets that no number of concurrent callers can overdraw.
//!
//! They need Redis at `SQLWARDEN_TEST_REDIS_URL` (default `redis://127.0.0.1:6379/0`); without
//! it they say they were skipped, unless `SQLWARDEN_REQUIRE_DB=1`. The outage test starts a
//! `redis-server` of its own on a free port. Every test keeps its keys under a prefix of its
//! own and deletes them. The replicas serve a SQLite file, so the file needs the `sqlite` feature.
#![cfg(feature = "sqlite")]

mod databases;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use databases::{ConfigFile, McpProcess};
use serde_json::{Value, json};
use sqlwarden::policy::Admission;
use sqlwarden::policy::{Egress, QuotaDenied, QuotaEngine, QuotaKey, QuotaPolicy, QuotaRequest};
use sqlwarden::quota::{RedisQuotaConfig, RedisQuotas};

const KEY: QuotaKey<'static> = QuotaKey { tenant: "acme", identity: "ada", tool: "query_read" };

fn redis_url() -> String {
    std::env::var("SQLWARDEN_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379/0".into())
}

/// `host:port` of a `redis://host:port/db` URL.
fn address_of(url: &str) -> String {
    let rest = url.trim_start_matches("redis://");
    let authority = rest.split('/').next().unwrap_or(rest);
    authority.rsplit('@').next().unwrap_or(authority).to_owned()
}

/// One command over RESP; the reply as text (integers and bulk strings as they are, arrays
/// as their elements, one per line).
fn command(address: &str, args: &[&str]) -> Result<String, String> {
    let mut stream = TcpStream::connect(address).map_err(|error| error.to_string())?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).map_err(|error| error.to_string())?;
    let mut request = format!("*{}\r\n", args.len());
    for arg in args {
        request.push_str(&format!("${}\r\n{arg}\r\n", arg.len()));
    }
    stream.write_all(request.as_bytes()).map_err(|error| error.to_string())?;
    let mut reply = Vec::new();
    let mut buffer = [0u8; 65536];
    loop {
        let read = stream.read(&mut buffer).map_err(|error| error.to_string())?;
        if read == 0 {
            break;
        }
        reply.extend_from_slice(&buffer[..read]);
        if complete(&reply) {
            break;
        }
    }
    let text = String::from_utf8_lossy(&reply).into_owned();
    if let Some(error) = text.strip_prefix('-') {
        return Err(error.trim().to_owned());
    }
    Ok(text
        .lines()
        .filter(|line| !line.starts_with('*') && !line.starts_with('$'))
        .map(|line| line.trim_start_matches([':', '+']))
        .collect::<Vec<_>>()
        .join("\n"))
}

/// Whether a RESP reply (a simple value, or an array of bulk strings) is whole.
fn complete(reply: &[u8]) -> bool {
    let text = String::from_utf8_lossy(reply);
    let mut lines = text.split("\r\n");
    let Some(first) = lines.next() else { return false };
    match first.chars().next() {
        Some('*') => {
            let count: usize = first[1..].parse().unwrap_or(0);
            text.matches("\r\n").count() > 2 * count
        }
        Some('$') => text.matches("\r\n").count() >= 2 || first == "$-1",
        Some(_) => text.ends_with("\r\n"),
        None => false,
    }
}

/// Redis's URL, or `None` when it cannot be reached (skipped, unless required).
fn redis() -> Option<String> {
    let url = redis_url();
    match command(&address_of(&url), &["PING"]) {
        Ok(pong) if pong == "PONG" => Some(url),
        Ok(other) => {
            databases::unavailable("Redis", &other);
            None
        }
        Err(error) => {
            databases::unavailable("Redis", &error);
            None
        }
    }
}

/// A key prefix of the test's own; its keys are deleted when it drops.
struct Prefix {
    address: String,
    prefix: String,
}

impl Prefix {
    fn new(url: &str) -> Prefix {
        Prefix { address: address_of(url), prefix: format!("sqlwarden-test:{}:", databases::unique_suffix()) }
    }

    fn keys(&self) -> Vec<String> {
        command(&self.address, &["KEYS", &format!("{}*", self.prefix)])
            .unwrap_or_default()
            .lines()
            .filter(|line| !line.is_empty())
            .map(str::to_owned)
            .collect()
    }
}

impl Drop for Prefix {
    fn drop(&mut self) {
        for key in self.keys() {
            let _ = command(&self.address, &["DEL", &key]);
        }
    }
}

fn settings(url: &str, prefix: &Prefix, lease: Duration) -> RedisQuotaConfig {
    RedisQuotaConfig {
        url: url.to_owned(),
        key_prefix: prefix.prefix.clone(),
        timeout: Duration::from_millis(500),
        lease,
    }
}

fn request(cost: u32, egress: Option<Egress>) -> QuotaRequest<'static> {
    QuotaRequest { key: KEY, cost, egress }
}

/// What a backend answered, without the permit: for comparing backends.
fn outcome(admitted: &Result<sqlwarden::policy::QuotaPermit, QuotaDenied>) -> String {
    match admitted {
        Ok(permit) => format!("admitted {:?}", permit.allowance()),
        Err(QuotaDenied::Rate { .. }) => "rate".into(),
        Err(QuotaDenied::Cost { .. }) => "cost".into(),
        Err(QuotaDenied::Budget { budget, .. }) => format!("{budget} budget"),
        Err(denied) => format!("{denied}"),
    }
}

#[tokio::test]
async fn redis_admits_exactly_as_the_in_process_engine_does() {
    let Some(url) = redis() else { return };
    let prefix = Prefix::new(&url);
    let policy = QuotaPolicy::new(60, 4, 3)
        .and_then(|policy| policy.with_cost_per_minute(30))
        .and_then(|policy| policy.with_rows_per_hour(100))
        .expect("valid");
    let shared = RedisQuotas::new(&settings(&url, &prefix, Duration::from_secs(60)), policy).expect("redis");
    let local = QuotaEngine::new(policy);
    // Within a second: the same sequence of asks, the same answers, permits held as they go.
    let asks = [
        request(10, Some(Egress { rows: 60, bytes: 1000 })),
        request(10, Some(Egress { rows: 60, bytes: 1000 })),
        request(31, None),
        request(5, None),
        request(5, Some(Egress { rows: 10, bytes: 10 })),
        request(1, None),
    ];
    let (mut held_shared, mut held_local, mut seen) = (Vec::new(), Vec::new(), Vec::new());
    for ask in asks {
        let (from_shared, from_local) = (shared.admit(ask).await, local.admit(ask).await);
        assert_eq!(outcome(&from_shared), outcome(&from_local), "after {seen:?}");
        seen.push(outcome(&from_local));
        held_shared.extend(from_shared.ok());
        held_local.extend(from_local.ok());
    }
    assert_eq!(
        seen,
        [
            "admitted Allowance { rows: Some(60), bytes: None }",
            "admitted Allowance { rows: Some(40), bytes: None }",
            "the call costs 31, more than cost_per_minute allows at once",
            "admitted Allowance { rows: None, bytes: None }",
            "too many calls in flight",
            "too many calls in flight",
        ]
    );
    drop(held_local);
    drop(held_shared);
    // The concurrency slots come back (Redis's after its release script has run); the cost
    // quota (25 of 30 spent) and the rate (3 of a burst of 4) decide the rest alike.
    let deadline = Instant::now() + Duration::from_secs(5);
    let from_shared = loop {
        let admitted = shared.admit(request(5, None)).await;
        if !matches!(admitted, Err(QuotaDenied::Concurrency)) || Instant::now() > deadline {
            break admitted;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(outcome(&from_shared), outcome(&local.admit(request(5, None)).await));
    let (from_shared, from_local) = (shared.admit(request(1, None)).await, local.admit(request(1, None)).await);
    assert!(
        matches!(
            (&from_shared, &from_local),
            (Err(QuotaDenied::Rate { retry_after: a }), Err(QuotaDenied::Rate { retry_after: b }))
                if *a <= Duration::from_secs(1) && *b <= Duration::from_secs(1)
        ),
        "{from_shared:?} {from_local:?}"
    );
}

#[tokio::test]
async fn replicas_sharing_redis_hold_one_concurrency_limit() {
    let Some(url) = redis() else { return };
    let prefix = Prefix::new(&url);
    let policy = QuotaPolicy::new(6000, 100, 3).expect("valid");
    let replicas: Vec<RedisQuotas> = (0..3)
        .map(|_| RedisQuotas::new(&settings(&url, &prefix, Duration::from_secs(60)), policy).expect("redis"))
        .collect();
    let mut held = Vec::new();
    for (index, replica) in replicas.iter().cycle().take(9).enumerate() {
        match replica.admit(request(1, None)).await {
            Ok(permit) => held.push(permit),
            Err(QuotaDenied::Concurrency) => assert!(index >= 3, "only the first three are admitted"),
            Err(other) => panic!("{other}"),
        }
    }
    assert_eq!(held.len(), 3, "three calls in flight across three replicas, not three each");
    drop(held.pop());
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        match replicas[2].admit(request(1, None)).await {
            Ok(permit) => {
                held.push(permit);
                break;
            }
            Err(QuotaDenied::Concurrency) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Err(other) => panic!("a released slot is free on every replica: {other}"),
        }
    }
    assert!(matches!(replicas[0].admit(request(1, None)).await, Err(QuotaDenied::Concurrency)));
}

#[tokio::test]
async fn a_lease_nobody_releases_expires_within_lease_s_and_a_running_call_keeps_its_own() {
    let Some(url) = redis() else { return };
    let prefix = Prefix::new(&url);
    let lease = Duration::from_secs(1);
    let policy = QuotaPolicy::new(6000, 100, 1).expect("valid");
    let (dead, alive) = (
        RedisQuotas::new(&settings(&url, &prefix, lease), policy).expect("redis"),
        RedisQuotas::new(&settings(&url, &prefix, lease), policy).expect("redis"),
    );
    // A permit whose release never runs: what a replica killed mid-call leaves behind. Its
    // quotas are dropped too, so nothing renews the lease.
    std::mem::forget(dead.admit(request(1, None)).await.expect("the one slot"));
    drop(dead);
    let taken = Instant::now();
    assert!(matches!(alive.admit(request(1, None)).await, Err(QuotaDenied::Concurrency)));
    let freed = loop {
        match alive.admit(request(1, None)).await {
            Ok(permit) => break permit,
            Err(QuotaDenied::Concurrency) => {
                assert!(taken.elapsed() < lease + Duration::from_millis(500), "the lease outlived lease_s");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(other) => panic!("{other}"),
        }
    };
    assert!(taken.elapsed() >= lease - Duration::from_millis(100), "freed before the lease ended");
    // A call that runs three leases long keeps its slot: its lease is renewed while it runs.
    let other = RedisQuotas::new(&settings(&url, &prefix, lease), policy).expect("redis");
    for _ in 0..6 {
        tokio::time::sleep(lease / 2).await;
        assert!(matches!(other.admit(request(1, None)).await, Err(QuotaDenied::Concurrency)), "the lease lapsed");
    }
    drop(freed);
}

/// A `redis-server` of the test's own, on a free port, that can be stopped and started again.
struct PrivateRedis {
    port: u16,
    child: Option<Child>,
}

/// A Redis of the test's own, when Redis is available (the shared one answers) and
/// `redis-server` starts; otherwise the test says it was skipped (a failure when the
/// databases are required).
fn private_redis() -> Option<PrivateRedis> {
    redis()?;
    let private = PrivateRedis::start();
    if private.is_none() {
        databases::unavailable("redis-server (to start a private one)", &"it did not start");
    }
    private
}

impl PrivateRedis {
    fn start() -> Option<PrivateRedis> {
        let port = std::net::TcpListener::bind("127.0.0.1:0").ok()?.local_addr().ok()?.port();
        let mut redis = PrivateRedis { port, child: None };
        redis.restart().then_some(redis)
    }

    fn restart(&mut self) -> bool {
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn();
        let Ok(child) = child else { return false };
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while command(&format!("127.0.0.1:{}", self.port), &["PING"]).as_deref() != Ok("PONG") {
            if Instant::now() > deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        true
    }

    fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }
}

impl Drop for PrivateRedis {
    fn drop(&mut self) {
        self.stop();
    }
}

#[test]
fn while_redis_is_away_every_call_is_denied_with_quota_unavailable_then_the_server_recovers() {
    let Some(mut private) = private_redis() else { return };
    let database = Table::new(100);
    let config = database
        .config(&format!("[quotas]\nbackend = \"redis\"\nredis_url = \"{}\"\nredis_timeout_ms = 100\n", private.url()));
    let mut server = McpProcess::start(&["--config", &config.path()]);
    server.initialize();
    assert_eq!(code_of(&server.call("query_read", json!({"query": "SELECT id FROM t", "limit": 1}))), None);
    private.stop();
    for _ in 0..5 {
        let began = Instant::now();
        let answer = server.call("query_read", json!({"query": "SELECT id FROM t", "limit": 1}));
        assert_eq!(code_of(&answer).as_deref(), Some("QUOTA_UNAVAILABLE"), "{answer}");
        assert!(began.elapsed() < Duration::from_secs(3), "denied promptly, not hung");
    }
    assert!(private.restart(), "redis-server starts again");
    let deadline = Instant::now() + Duration::from_secs(15);
    let mut denials = 5;
    loop {
        let answer = server.call("query_read", json!({"query": "SELECT id FROM t", "limit": 1}));
        match code_of(&answer) {
            None => break,
            Some(code) if code == "QUOTA_UNAVAILABLE" && Instant::now() < deadline => {
                denials += 1;
                std::thread::sleep(Duration::from_millis(100));
            }
            Some(code) => panic!("the server did not recover: {code}"),
        }
    }
    drop(server);
    let audit = std::fs::read_to_string(database.last_audit()).unwrap_or_default();
    let recorded = audit.lines().filter(|line| line.contains("\"code\":\"QUOTA_UNAVAILABLE\"")).count();
    assert_eq!(recorded, denials, "each denial is on record");
}

/// A SQLite table `t (id, body)` of `rows` rows in a file of its own, and configs over it,
/// each with an audit file of its own (a server refuses to share one).
struct Table {
    path: std::path::PathBuf,
    audits: std::cell::RefCell<Vec<std::path::PathBuf>>,
}

impl Table {
    fn new(rows: usize) -> Table {
        let suffix = databases::unique_suffix();
        let path = std::env::temp_dir().join(format!("sqlwarden-redis-{suffix}.db"));
        let connection = rusqlite::Connection::open(&path).expect("sqlite");
        connection.execute_batch("CREATE TABLE t (id INTEGER PRIMARY KEY, body TEXT)").expect("table");
        let mut insert = connection.prepare("INSERT INTO t VALUES (?1, ?2)").expect("insert");
        for id in 0..rows {
            insert.execute(rusqlite::params![id as i64, format!("row {id}")]).expect("row");
        }
        Table { path, audits: std::cell::RefCell::new(Vec::new()) }
    }

    /// A configuration reading `t`, granting `query_read`, with `extra` appended.
    fn config(&self, extra: &str) -> ConfigFile {
        let audit = std::env::temp_dir().join(format!("sqlwarden-redis-audit-{}.jsonl", databases::unique_suffix()));
        self.audits.borrow_mut().push(audit.clone());
        ConfigFile::new(&format!(
            "[database]\nurl = \"sqlite:{}\"\n[allowlist]\nschemas = [\"main\"]\ntables = [\"t\"]\n\
             [limits]\nmax_timeout_ms = 60000\n[[grants]]\ntool = \"query_read\"\n[audit]\npath = \"{}\"\n{extra}",
            self.path.display(),
            audit.display()
        ))
    }

    /// The audit file of the last configuration made.
    fn last_audit(&self) -> std::path::PathBuf {
        self.audits.borrow().last().cloned().unwrap_or_default()
    }
}

impl Drop for Table {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
        for audit in self.audits.borrow().iter() {
            let _ = std::fs::remove_file(audit);
        }
    }
}

/// The denial code of a `tools/call` result, `None` for a result.
fn code_of(result: &Value) -> Option<String> {
    if result["isError"] != json!(true) {
        return None;
    }
    let text = result["content"][0]["text"].as_str().unwrap_or_default();
    let denial: Value = serde_json::from_str(text).unwrap_or(Value::Null);
    Some(denial["code"].as_str().unwrap_or("?").to_owned())
}

/// Sends `calls` `tools/call` requests on `server` at once, and collects their results.
fn call_at_once(server: &mut McpProcess, first_id: u64, calls: &[Value]) -> Vec<Value> {
    for (index, arguments) in calls.iter().enumerate() {
        let message = json!({"jsonrpc": "2.0", "id": first_id + index as u64, "method": "tools/call",
                             "params": {"name": "query_read", "arguments": arguments}});
        server.send_line(&message.to_string());
    }
    let mut results = Vec::new();
    while results.len() < calls.len() {
        let message = server.receive();
        if message.get("id").is_some() && message.get("result").is_some() {
            results.push(message["result"].clone());
        }
    }
    results
}

/// Starts `count` replicas over `table`, each with `extra` in its configuration, initialized.
fn replicas(table: &Table, extra: &str, count: usize) -> Vec<McpProcess> {
    (0..count)
        .map(|_| {
            let config = table.config(extra);
            let mut server = McpProcess::start(&["--config", &config.path()]);
            server.initialize();
            server
        })
        .collect()
}

/// Each replica sends its calls at once, from a thread of its own; all results.
fn hammer(servers: Vec<McpProcess>, calls: Vec<Value>) -> (Vec<McpProcess>, Vec<Value>) {
    let barrier = Arc::new(std::sync::Barrier::new(servers.len()));
    let threads: Vec<_> = servers
        .into_iter()
        .map(|mut server| {
            let (barrier, calls) = (Arc::clone(&barrier), calls.clone());
            std::thread::spawn(move || {
                barrier.wait();
                let results = call_at_once(&mut server, 100, &calls);
                (server, results)
            })
        })
        .collect();
    let mut servers = Vec::new();
    let mut results = Vec::new();
    for thread in threads {
        let (server, answers) = thread.join().expect("a replica's caller");
        servers.push(server);
        results.extend(answers);
    }
    (servers, results)
}

fn rows_returned(results: &[Value]) -> u64 {
    results.iter().filter_map(|result| result["structuredContent"]["row_count"].as_u64()).sum()
}

#[test]
fn no_principal_reads_more_rows_than_its_budget_under_32_concurrent_callers() {
    let database = Table::new(1000);
    for backend in ["memory", "redis"] {
        let (store, _prefix) = match backend {
            "redis" => {
                let Some(url) = redis() else { return };
                let prefix = Prefix::new(&url);
                let store = format!("backend = \"redis\"\nredis_url = \"{url}\"\nkey_prefix = \"{}\"\n", prefix.prefix);
                (store, Some(prefix))
            }
            _ => (String::new(), None),
        };
        let extra =
            format!("[quotas]\nrows_per_hour = 250\nmax_concurrent = 64\nburst = 100\nrate_per_minute = 6000\n{store}");
        // Memory quotas belong to one process: its 32 callers share one replica. Redis
        // quotas are shared: two replicas, 16 callers each.
        let count = if backend == "redis" { 2 } else { 1 };
        let calls = vec![json!({"query": "SELECT id, body FROM t", "limit": 40}); 32 / count];
        let (_servers, results) = hammer(replicas(&database, &extra, count), calls);
        assert_eq!(results.len(), 32);
        assert_eq!(rows_returned(&results), 250, "{backend}: the whole budget, and not one row more");
        for result in &results {
            match code_of(result).as_deref() {
                None => {
                    let rows = result["structuredContent"]["row_count"].as_u64().expect("rows");
                    if rows < 40 {
                        assert_eq!(result["structuredContent"]["truncated_by"], "rows_per_hour", "{result}");
                    }
                }
                Some("BUDGET_EXHAUSTED") => {
                    let text = result["content"][0]["text"].as_str().unwrap_or_default();
                    assert!(text.contains("refills in"), "{text}");
                }
                Some(other) => panic!("{backend}: {other}"),
            }
        }
    }
}

#[test]
fn replicas_hold_one_rate_within_one_burst() {
    let Some(url) = redis() else { return };
    let prefix = Prefix::new(&url);
    let database = Table::new(10);
    let extra = format!(
        "[quotas]\nrate_per_minute = 60\nburst = 5\nmax_concurrent = 64\nbackend = \"redis\"\nredis_url = \"{url}\"\n\
         key_prefix = \"{}\"\n",
        prefix.prefix
    );
    let began = Instant::now();
    let (_servers, results) =
        hammer(replicas(&database, &extra, 3), vec![json!({"query": "SELECT id FROM t", "limit": 1}); 8]);
    let admitted = results.iter().filter(|result| code_of(result).is_none()).count() as u64;
    // One call a second, five at once: in the time the 24 calls took, at most the burst plus
    // one a second (and one for the second under way).
    let most = 5 + began.elapsed().as_secs() + 1;
    assert!((5..=most).contains(&admitted), "{admitted} admitted across 3 replicas, at most {most}");
    assert!(results.iter().all(|result| matches!(code_of(result).as_deref(), None | Some("RATE_LIMITED"))));
}

/// A query that keeps SQLite busy for a second or more.
fn slow_query() -> Value {
    json!({"query": "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 3000000) \
                     SELECT count(*) FROM c", "timeout_ms": 60000})
}

#[test]
fn replicas_never_run_more_than_max_concurrent_calls() {
    let Some(url) = redis() else { return };
    let prefix = Prefix::new(&url);
    let database = Table::new(10);
    let extra = format!(
        "[quotas]\nmax_concurrent = 2\nbackend = \"redis\"\nredis_url = \"{url}\"\nkey_prefix = \"{}\"\n",
        prefix.prefix
    );
    let (_servers, results) = hammer(replicas(&database, &extra, 3), vec![slow_query(); 3]);
    let admitted = results.iter().filter(|result| code_of(result).is_none()).count();
    assert_eq!(admitted, 2, "two slow calls ran across 3 replicas; the rest were refused at once");
    assert!(results.iter().all(|result| matches!(code_of(result).as_deref(), None | Some("RATE_LIMITED"))));
}

#[test]
fn a_replica_killed_mid_call_frees_its_lease_within_lease_s() {
    let Some(url) = redis() else { return };
    let prefix = Prefix::new(&url);
    let database = Table::new(10);
    let lease = Duration::from_secs(2);
    let extra = format!(
        "[quotas]\nmax_concurrent = 1\nlease_s = {}\nbackend = \"redis\"\nredis_url = \"{url}\"\nkey_prefix = \"{}\"\n",
        lease.as_secs(),
        prefix.prefix
    );
    let mut started = replicas(&database, &extra, 2);
    let (mut survivor, mut doomed) = (started.pop().expect("two"), started.pop().expect("two"));
    let slow = json!({"jsonrpc": "2.0", "id": 50, "method": "tools/call",
                      "params": {"name": "query_read", "arguments": slow_query()}});
    doomed.send_line(&slow.to_string());
    let leases = |prefix: &Prefix| prefix.keys().into_iter().filter(|key| key.contains(":lease:")).count();
    let deadline = Instant::now() + Duration::from_secs(10);
    while leases(&prefix) == 0 {
        assert!(Instant::now() < deadline, "the slow call never took its lease");
        std::thread::sleep(Duration::from_millis(10));
    }
    let fast = json!({"query": "SELECT id FROM t", "limit": 1});
    assert_eq!(code_of(&survivor.call("query_read", fast.clone())).as_deref(), Some("RATE_LIMITED"));
    // SIGKILL: no release, no renewal, nothing more from that replica.
    let killed = Instant::now();
    assert!(Command::new("kill").args(["-KILL", &doomed.pid().to_string()]).status().expect("kill").success());
    loop {
        match code_of(&survivor.call("query_read", fast.clone())).as_deref() {
            None => break,
            Some("RATE_LIMITED") => {
                assert!(killed.elapsed() < lease + Duration::from_secs(1), "the dead replica's lease outlived lease_s");
                std::thread::sleep(Duration::from_millis(50));
            }
            Some(other) => panic!("{other}"),
        }
    }
}

#[test]
fn check_says_whether_redis_answers() {
    let Some(url) = redis() else { return };
    let database = Table::new(1);
    let closed = std::net::TcpListener::bind("127.0.0.1:0").expect("port").local_addr().expect("addr").port();
    for (redis_url, expected) in [
        (url, "quotas: redis answers"),
        (format!("redis://:hunter2@127.0.0.1:{closed}/0"), "quotas: redis cannot be reached"),
    ] {
        let config = database.config(&format!("[quotas]\nbackend = \"redis\"\nredis_url = \"{redis_url}\"\n"));
        let output = Command::new(env!("CARGO_BIN_EXE_sqlwarden"))
            .args(["check", "--config", &config.path()])
            .output()
            .expect("runs");
        let report = String::from_utf8_lossy(&output.stdout);
        assert!(report.contains(expected), "{report}");
        assert!(!report.contains("hunter2"), "the URL's password stays out: {report}");
        if expected.contains("cannot") {
            assert_eq!(output.status.code(), Some(1), "{report}");
            assert!(report.contains("QUOTA_UNAVAILABLE"), "{report}");
        }
    }
}

#[tokio::test]
async fn a_call_costs_one_round_trip_its_release_rides_on_the_next_admission() {
    let Some(private) = private_redis() else { return };
    let address = format!("127.0.0.1:{}", private.port);
    let prefix = Prefix::new(&private.url());
    let policy = QuotaPolicy::new(600_000, 1000, 4).and_then(|p| p.with_rows_per_hour(1_000_000)).expect("valid");
    let quotas = RedisQuotas::new(&settings(&private.url(), &prefix, Duration::from_secs(60)), policy).expect("redis");
    let calls = 50;
    for _ in 0..calls {
        let permit = quotas.admit(request(1, Some(Egress { rows: 100, bytes: 10_000 }))).await.expect("admitted");
        permit.charge(Egress { rows: 10, bytes: 100 });
        drop(permit);
    }
    tokio::time::sleep(sqlwarden::quota::FLUSH_AFTER * 5).await;
    let stats = command(&address, &["INFO", "commandstats"]).expect("stats");
    let scripts: u64 = stats
        .lines()
        .filter(|line| line.starts_with("cmdstat_evalsha:") || line.starts_with("cmdstat_eval:"))
        .filter_map(|line| line.split("calls=").nth(1)?.split(',').next()?.parse::<u64>().ok())
        .sum();
    // One script per call, the first sent twice (Redis did not know it yet), and the last
    // call's release on its own.
    assert!(scripts <= calls + 3, "{scripts} scripts for {calls} calls:\n{stats}");
    let budget = prefix.keys().into_iter().find(|key| key.ends_with(":budget")).expect("a budget window");
    let used = command(&address, &["HGET", &budget, "rows"]).expect("rows");
    assert_eq!(used, (calls * 10).to_string(), "every call gave back the 90 rows it did not return");
    let leases = prefix.keys().into_iter().filter(|key| key.contains(":lease:")).count();
    assert_eq!(leases, 0, "and every lease");

    // A release waits FLUSH_AFTER for an admission to carry it, while other tasks run, rather
    // than go out on its own at once. (Only a look taken well within FLUSH_AFTER tells.)
    let mut looked = 0;
    for _ in 0..5 {
        let permit = quotas.admit(request(1, None)).await.expect("admitted");
        drop(permit);
        let dropped = Instant::now();
        tokio::time::sleep(sqlwarden::quota::FLUSH_AFTER / 10).await;
        let leased = prefix.keys().into_iter().any(|key| key.contains(":lease:"));
        if dropped.elapsed() < sqlwarden::quota::FLUSH_AFTER / 2 {
            looked += 1;
            assert!(leased, "the release went out on its own before FLUSH_AFTER");
        }
        tokio::time::sleep(sqlwarden::quota::FLUSH_AFTER * 3).await;
        assert!(!prefix.keys().into_iter().any(|key| key.contains(":lease:")), "then it goes out");
    }
    assert!(looked > 0, "no look was taken within FLUSH_AFTER / 2 of a release");
}

#[tokio::test]
async fn a_redis_that_restarts_without_its_data_hands_out_no_fresh_burst_and_no_fresh_budget() {
    let Some(mut private) = private_redis() else { return };
    let prefix = Prefix::new(&private.url());
    let policy = QuotaPolicy::new(60, 3, 10).and_then(|p| p.with_rows_per_hour(100)).expect("valid");
    let quotas = RedisQuotas::new(&settings(&private.url(), &prefix, Duration::from_secs(60)), policy).expect("redis");
    let read = || request(1, Some(Egress { rows: 40, bytes: 1000 }));
    for expected in [40, 40, 20] {
        let permit = quotas.admit(read()).await.expect("within the burst and the budget");
        assert_eq!(permit.allowance().rows, Some(expected));
        permit.charge(Egress { rows: expected, bytes: 100 });
    }
    // Redis goes away and comes back empty (no persistence, as on these machines).
    let after = restart_then_admit(&mut private, &quotas, read()).await;
    assert!(matches!(after, Err(QuotaDenied::Rate { .. })), "the burst stays spent: {after:?}");
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let after = quotas.admit(read()).await;
    assert!(
        matches!(after, Err(QuotaDenied::Budget { budget: "rows", .. })),
        "a token came back, the budget did not: {after:?}"
    );
    // What was restored is stored: a replica that never saw this principal finds it spent too.
    let fresh = RedisQuotas::new(&settings(&private.url(), &prefix, Duration::from_secs(60)), policy).expect("redis");
    let after = fresh.admit(read()).await;
    assert!(matches!(after, Err(QuotaDenied::Budget { budget: "rows", .. })), "{after:?}");
}

/// The cost quota and the bytes budget deny in Redis as in the process, with the same answers:
/// a call over what is left of the cost quota, and a read once the bytes are spent.
#[tokio::test]
async fn redis_denies_cost_and_bytes_exactly_as_the_in_process_engine_does() {
    let Some(url) = redis() else { return };
    let prefix = Prefix::new(&url);
    let policy = QuotaPolicy::new(6000, 100, 10)
        .and_then(|policy| policy.with_cost_per_minute(10))
        .and_then(|policy| policy.with_bytes_per_hour(500))
        .expect("valid");
    let shared = RedisQuotas::new(&settings(&url, &prefix, Duration::from_secs(60)), policy).expect("redis");
    let local = QuotaEngine::new(policy);
    let read = |bytes| request(1, Some(Egress { rows: 10, bytes }));
    let mut seen = Vec::new();
    for (ask, charged) in [
        (request(6, None), None),
        (request(6, None), None),
        (read(400), Some(400)),
        (read(400), Some(100)),
        (read(10), None),
    ] {
        let (from_shared, from_local) = (shared.admit(ask).await, local.admit(ask).await);
        assert_eq!(outcome(&from_shared), outcome(&from_local), "after {seen:?}");
        seen.push(outcome(&from_local));
        for permit in [from_shared, from_local].into_iter().flatten() {
            if let Some(bytes) = charged {
                permit.charge(Egress { rows: 1, bytes });
            }
        }
    }
    assert_eq!(
        seen,
        [
            "admitted Allowance { rows: None, bytes: None }",
            "cost",
            "admitted Allowance { rows: None, bytes: Some(400) }",
            "admitted Allowance { rows: None, bytes: Some(100) }",
            "bytes budget",
        ]
    );
}

/// A cost quota spent before Redis lost its data stays spent after: it is not handed out again.
#[tokio::test]
async fn a_redis_that_restarts_without_its_data_hands_out_no_fresh_cost() {
    let Some(mut private) = private_redis() else { return };
    let prefix = Prefix::new(&private.url());
    let policy = QuotaPolicy::new(6000, 100, 10).and_then(|p| p.with_cost_per_minute(3)).expect("valid");
    let quotas = RedisQuotas::new(&settings(&private.url(), &prefix, Duration::from_secs(60)), policy).expect("redis");
    for _ in 0..3 {
        drop(quotas.admit(request(1, None)).await.expect("within the cost quota"));
    }
    let after = restart_then_admit(&mut private, &quotas, request(1, None)).await;
    assert!(matches!(after, Err(QuotaDenied::Cost { .. })), "the cost quota stays spent: {after:?}");
}

/// Stops `private` and starts it again, empty; then what `quotas` answer `ask` once Redis
/// answers again.
async fn restart_then_admit(
    private: &mut PrivateRedis,
    quotas: &RedisQuotas,
    ask: QuotaRequest<'static>,
) -> Result<sqlwarden::policy::QuotaPermit, QuotaDenied> {
    private.stop();
    assert!(private.restart(), "redis-server starts again");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match quotas.admit(ask).await {
            Err(QuotaDenied::Unavailable(_)) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            other => return other,
        }
    }
}

/// Quotas dropped (a server shutting down) send at once the releases that wait, and their
/// background tasks end.
#[tokio::test]
async fn dropped_quotas_give_back_what_waits_and_leave_no_task_behind() {
    let Some(url) = redis() else { return };
    let prefix = Prefix::new(&url);
    let policy = QuotaPolicy::new(6000, 100, 10).expect("valid");
    let metrics = tokio::runtime::Handle::current().metrics();
    let before = metrics.num_alive_tasks();
    let quotas = RedisQuotas::new(&settings(&url, &prefix, Duration::from_millis(300)), policy).expect("redis");
    assert!(metrics.num_alive_tasks() > before, "the renewal and release tasks run");
    drop(quotas.admit(request(1, None)).await.expect("admitted"));
    drop(quotas);
    let deadline = Instant::now() + Duration::from_secs(2);
    while metrics.num_alive_tasks() > before {
        assert!(Instant::now() < deadline, "the quotas' tasks end once they are dropped");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let leases = prefix.keys().into_iter().filter(|key| key.contains(":lease:")).count();
    assert_eq!(leases, 0, "the lease was given back before the tasks ended");
}
