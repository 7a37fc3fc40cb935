//! Real databases for the integration tests: each test gets a database of its own, created
//! here and dropped afterwards, even when the test fails.
//!
//! Without a server the tests say they were skipped and pass, unless `SQLWARDEN_REQUIRE_DB=1`
//! (set by `.ci/run`), which makes a missing server a failure.
#![allow(dead_code)]

use std::sync::Arc;

use serde_json::{Value, json};
use sqlwarden::ToolRegistry;
use sqlwarden::adapter::{Adapter, SqlValue};
use sqlwarden::audit::JsonLinesSink;
use sqlwarden::policy::{Capabilities, Grant, Mode, QuotaEngine, QuotaKey, QuotaPolicy, SessionContext};
use sqlwarden::sql::{AllowList, SqlValidator};
use sqlwarden::tools::reference::{DescribeTable, ListTables, QueryRead, ReadLimits};
use sqlwarden::tools::{WriteTool, WriteTx};
use sqlwarden::{Boundary, Denial};
use sqlwarden::{DenialCode, ToolError};

pub const IDENTITY: &str = "analyst@example.com";
pub const TENANT: &str = "acme";

/// Whether a missing database fails the test instead of skipping it.
pub fn required() -> bool {
    std::env::var("SQLWARDEN_REQUIRE_DB").is_ok_and(|value| value == "1")
}

/// Reports a database that cannot be reached: a skip, or a failure when one is required.
pub fn unavailable(what: &str, error: &dyn std::fmt::Display) {
    if required() {
        panic!("{what} is required (SQLWARDEN_REQUIRE_DB=1) but unavailable: {error}");
    }
    eprintln!("skipped: {what} is not reachable ({error}); set SQLWARDEN_REQUIRE_DB=1 to make this a failure");
}

/// Runs `work` to completion on a thread with a runtime of its own: cleanup from a `Drop`, which
/// runs on a test's runtime and cannot block it. `None` when the thread failed.
pub fn block_on_detached<T: Send + 'static>(work: impl std::future::Future<Output = T> + Send + 'static) -> Option<T> {
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
        runtime.block_on(work)
    })
    .join()
    .ok()
}

/// The host and port of a database URL (`…@host:port/…`).
pub fn host_of(url: &str, default: &str) -> String {
    url.split('@').nth(1).and_then(|rest| rest.split('/').next()).unwrap_or(default).to_owned()
}

/// With the database behind `relay`: stops it, checks that `query` is refused promptly with
/// `DB_ERROR` and a message that names neither the address nor `scheme`, brings the database
/// back on the same port and checks that the next call succeeds without a restart.
pub async fn assert_down_and_back(service: &Service, relay: &mut Relay, target: String, query: Value, scheme: &str) {
    let healthy = service.read(query.clone()).await["rows"].clone();
    relay.stop().await;
    let started = std::time::Instant::now();
    let denial = service.call("query_read", query.clone()).await.expect_err("refused");
    assert_eq!(denial.code(), sqlwarden::DenialCode::DbError);
    assert!(
        started.elapsed() < std::time::Duration::from_secs(10),
        "refused promptly, not hung: {:?}",
        started.elapsed()
    );
    assert!(!denial.message().contains("127.0.0.1") && !denial.message().contains(scheme), "{}", denial.message());
    let _relay = Relay::start(relay.port, target).await;
    assert_eq!(service.read(query).await["rows"], healthy, "recovered without a restart");
}

/// A random suffix for names that must not collide between concurrent tests.
pub fn unique_suffix() -> String {
    let mut bytes = [0u8; 6];
    getrandom::fill(&mut bytes).expect("random bytes");
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

/// The three reference tools over `adapter`, granted to one session, in read-only mode.
pub struct Service {
    pub boundary: Boundary,
    pub session: Arc<SessionContext>,
    /// The boundary's quotas (the default policy), to see the calls in flight.
    pub quotas: Arc<QuotaEngine>,
    /// What the boundary's audit wrote.
    pub audit: Audited,
}

/// An audit kept in memory: the lines a [`JsonLinesSink`] wrote.
#[derive(Clone, Default)]
pub struct Audited(Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for Audited {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().expect("lock").extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Audited {
    pub fn text(&self) -> String {
        String::from_utf8(self.0.lock().expect("lock").clone()).expect("utf-8")
    }

    /// The execute records of `tool`, in order.
    pub fn executions(&self, tool: &str) -> Vec<Value> {
        self.text()
            .lines()
            .map(|line| serde_json::from_str::<Value>(line).expect("each audit line is JSON"))
            .filter(|record| record["tool"] == tool && record["stage"] == "execute")
            .collect()
    }
}

/// The execute record of every `query_read` names its query's shape and what it returned, and
/// never its text: the same fingerprint for two values in one shape, another for another shape.
/// `table` has an integer `id` with rows 1 and 2, and `qualified` is how the audit names it.
pub async fn check_read_records(service: &Service, table: &str, qualified: &str) {
    let before = service.audit.executions("query_read").len();
    let one = service.read(json!({"query": format!("SELECT id FROM {table} WHERE id = 1")})).await;
    service.read(json!({"query": format!("SELECT id FROM {table} WHERE id = 2")})).await;
    service.read(json!({"query": format!("SELECT id FROM {table} WHERE id = 1 OR id = 2"), "limit": 1})).await;
    let records = service.audit.executions("query_read");
    let [first, second, other] = &records[before..] else { panic!("three execute records: {records:?}") };
    let fingerprint = first["fingerprint"].as_str().expect("a fingerprint");
    assert!(fingerprint.len() == 64 && fingerprint.bytes().all(|b| b.is_ascii_hexdigit()), "{fingerprint}");
    assert_eq!(second["fingerprint"], first["fingerprint"], "one shape, one fingerprint, whatever its values");
    assert_ne!(other["fingerprint"], first["fingerprint"], "another shape, another fingerprint");
    assert_eq!(first["tables"], json!([qualified]));
    assert_eq!((&first["rows_returned"], &first["truncated"]), (&json!(1), &json!(false)));
    assert_eq!(first["bytes_returned"], json!(serde_json::to_string(&one["rows"]).expect("JSON").len()));
    assert_eq!((&other["rows_returned"], &other["truncated"]), (&json!(1), &json!(true)));
    let text = service.audit.text();
    for word in ["SELECT", "select", "WHERE", table] {
        assert!(!text.contains(&format!("{word} ")), "the audit holds no SQL text: {word}");
    }
}

impl Service {
    pub fn new(adapter: Arc<dyn Adapter>, allow: AllowList, limits: ReadLimits) -> Self {
        let mut tools = ToolRegistry::new();
        tools.register(QueryRead::new(Arc::clone(&adapter), SqlValidator::new(allow), limits)).expect("registers");
        tools.register(ListTables::new(Arc::clone(&adapter))).expect("registers");
        tools.register(DescribeTable::new(adapter)).expect("registers");
        let grants = ["query_read", "list_tables", "describe_table"]
            .map(|tool| Grant::new(IDENTITY, TENANT, tool).expect("valid grant"));
        let quotas = Arc::new(QuotaEngine::new(QuotaPolicy::default()));
        let audit = Audited::default();
        let boundary = Boundary::builder(tools)
            .authorizer(Capabilities::from_grants(grants))
            .quotas(Arc::clone(&quotas))
            .audit(JsonLinesSink::new(audit.clone()))
            .build();
        let session = Arc::new(SessionContext::builder().identity(IDENTITY).tenant(TENANT).bind().expect("valid"));
        Service { boundary, session, quotas, audit }
    }

    /// The `query_read` calls in flight: admitted, and not yet let go of their quota slot.
    pub fn reads_in_flight(&self) -> usize {
        self.quotas.in_flight(&QuotaKey { tenant: TENANT, identity: IDENTITY, tool: "query_read" })
    }

    pub async fn call(&self, tool: &str, args: Value) -> Result<Value, Denial> {
        self.boundary
            .invoke(Some(Arc::clone(&self.session)), tool, args)
            .await
            .map(|output| output.to_value().expect("the output is JSON"))
    }

    /// `query_read` that must succeed, as the JSON text the tool answered.
    pub async fn read_text(&self, args: Value) -> String {
        match self.boundary.invoke(Some(Arc::clone(&self.session)), "query_read", args.clone()).await {
            Ok(output) => output.into_json(),
            Err(denial) => panic!("{args} was refused: {denial:?}"),
        }
    }

    /// `query_read` that must succeed.
    pub async fn read(&self, args: Value) -> Value {
        match self.call("query_read", args.clone()).await {
            Ok(value) => value,
            Err(denial) => panic!("{args} was refused: {denial:?}"),
        }
    }
}

/// A TCP relay standing in for the server, to take "the database" down and bring it back.
pub struct Relay {
    pub port: u16,
    accept: Option<tokio::task::JoinHandle<()>>,
    connections: Arc<tokio::sync::Mutex<tokio::task::JoinSet<()>>>,
    /// How many connections it has accepted.
    pub accepted: Arc<std::sync::atomic::AtomicUsize>,
}

/// An address of this machine that is not a loopback address, standing in for another
/// machine (nothing is sent off this one): the address a UDP socket would send from towards
/// a documentation-range address (no packet is sent). `None` (and the test fails when the
/// databases are required) on a machine with no such address.
pub fn another_machine() -> Option<std::net::IpAddr> {
    let socket = std::net::UdpSocket::bind("0.0.0.0:0").ok()?;
    socket.connect("192.0.2.1:9").ok()?;
    let address = socket.local_addr().ok()?.ip();
    if address.is_loopback() || address.is_unspecified() {
        assert!(!required(), "this machine has no address besides loopback to stand in for another machine");
        eprintln!("skipped: this machine has no address besides loopback");
        return None;
    }
    Some(address)
}

impl Relay {
    pub async fn start(port: u16, target: String) -> Relay {
        Self::start_on(std::net::Ipv4Addr::LOCALHOST.into(), port, target).await
    }

    /// A relay listening on `address` (see [`another_machine`]).
    pub async fn start_on(address: std::net::IpAddr, port: u16, target: String) -> Relay {
        let listener = tokio::net::TcpListener::bind((address, port)).await.expect("bind");
        let port = listener.local_addr().expect("address").port();
        let connections = Arc::new(tokio::sync::Mutex::new(tokio::task::JoinSet::new()));
        let relayed = Arc::clone(&connections);
        let accepted = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counted = Arc::clone(&accepted);
        let accept = tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                let target = target.clone();
                relayed.lock().await.spawn(async move {
                    if let Ok(mut outbound) = tokio::net::TcpStream::connect(target).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
            }
        });
        Relay { port, accept: Some(accept), connections, accepted }
    }

    /// Stops listening and closes every relayed connection before returning.
    pub async fn stop(&mut self) {
        if let Some(accept) = self.accept.take() {
            accept.abort();
            let _ = accept.await;
        }
        self.connections.lock().await.shutdown().await;
    }
}

/// The `sqlwarden` binary serving MCP on its stdin and stdout, driven as a client would.
pub struct McpProcess {
    child: std::process::Child,
    stdin: Option<std::process::ChildStdin>,
    lines: std::sync::mpsc::Receiver<String>,
    next_id: u64,
}

impl McpProcess {
    /// Starts `sqlwarden serve` with these extra arguments.
    pub fn start(args: &[&str]) -> McpProcess {
        Self::start_with_env(args, &[])
    }

    /// Starts `sqlwarden serve` with these arguments and environment variables.
    pub fn start_with_env(args: &[&str], env: &[(&str, &str)]) -> McpProcess {
        let mut all = vec!["serve"];
        all.extend_from_slice(args);
        Self::spawn(std::path::Path::new(env!("CARGO_BIN_EXE_sqlwarden")), &all, env)
    }

    /// Starts `program` (an MCP server on stdio) with these arguments and environment.
    pub fn spawn(program: &std::path::Path, args: &[&str], env: &[(&str, &str)]) -> McpProcess {
        use std::io::BufRead;
        use std::process::{Command, Stdio};
        let mut child = Command::new(program)
            .args(args)
            .envs(env.iter().copied())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("starts");
        let stdout = child.stdout.take().expect("stdout");
        let (sender, lines) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stdout).lines() {
                let Ok(line) = line else { return };
                if sender.send(line).is_err() {
                    return;
                }
            }
        });
        McpProcess { stdin: child.stdin.take(), child, lines, next_id: 1 }
    }

    /// Sends one raw line.
    pub fn send_line(&mut self, line: &str) {
        use std::io::Write;
        let stdin = self.stdin.as_mut().expect("open");
        stdin.write_all(line.as_bytes()).expect("write");
        stdin.write_all(b"\n").expect("write");
        stdin.flush().expect("flush");
    }

    /// The next message from the server, within 10 s.
    pub fn receive(&mut self) -> Value {
        let line = self.lines.recv_timeout(std::time::Duration::from_secs(10)).expect("an answer within 10 s");
        serde_json::from_str(&line).expect("the server writes JSON")
    }

    /// Sends a request and returns its response.
    pub fn request(&mut self, method: &str, params: Value) -> Value {
        let id = self.next_id;
        self.next_id += 1;
        self.send_line(
            &serde_json::json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params}).to_string(),
        );
        loop {
            let message = self.receive();
            if message["id"] == serde_json::json!(id) {
                return message;
            }
        }
    }

    /// `initialize` and `notifications/initialized`.
    pub fn initialize(&mut self) -> Value {
        let result = self.request(
            "initialize",
            serde_json::json!({"protocolVersion": "2025-06-18", "capabilities": {},
                               "clientInfo": {"name": "sqlwarden-tests", "version": "1"}}),
        );
        self.send_line(r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#);
        result
    }

    /// `tools/call`, returning the result.
    pub fn call(&mut self, tool: &str, arguments: Value) -> Value {
        self.request("tools/call", serde_json::json!({"name": tool, "arguments": arguments}))["result"].clone()
    }

    /// The server's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Closes stdin and returns the exit code.
    pub fn finish(mut self) -> Option<i32> {
        drop(self.stdin.take());
        self.wait()
    }

    /// Waits up to 10 s for the server to exit and returns its exit code.
    pub fn wait(&mut self) -> Option<i32> {
        let code = exit_within_10s(&mut self.child);
        if code.is_none() {
            let _ = self.child.kill();
        }
        code
    }
}

/// The child's exit code once it has exited, waiting at most 10 s; `None` if it has not.
fn exit_within_10s(child: &mut std::process::Child) -> Option<i32> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            return status.code();
        }
        if std::time::Instant::now() > deadline {
            return None;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

impl Drop for McpProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A configuration file in a directory of its own, removed with it.
pub struct ConfigFile {
    dir: std::path::PathBuf,
}

impl ConfigFile {
    /// Writes `text` as `sqlwarden.toml` in a fresh directory.
    pub fn new(text: &str) -> ConfigFile {
        let dir = std::env::temp_dir().join(format!("sqlwarden-config-{}", unique_suffix()));
        std::fs::create_dir_all(&dir).expect("dir");
        std::fs::write(dir.join("sqlwarden.toml"), text).expect("config");
        ConfigFile { dir }
    }

    /// The file's path.
    pub fn path(&self) -> String {
        self.dir.join("sqlwarden.toml").display().to_string()
    }
}

impl Drop for ConfigFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A write tool over a `ledger (id, note)` table, on any backend: inserts one row,
/// then does what the input says (`"ok"`, `"fail"` or `"panic"`).
pub struct LedgerAdd(pub Arc<dyn Adapter>);

/// A write tool that declares one row but changes every row of `ledger`.
pub struct LedgerRelabelAll(pub Arc<dyn Adapter>);

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LedgerEntry {
    pub note: String,
    pub then: String,
}

fn postgres(adapter: &dyn Adapter) -> bool {
    adapter.dialect() == sqlwarden::sql::SqlDialect::Postgres
}

impl WriteTool for LedgerAdd {
    type Input = LedgerEntry;
    type Output = Value;
    const MAX_AFFECTED_ROWS: u64 = 1;

    fn name(&self) -> &str {
        "ledger_add"
    }
    fn description(&self) -> &str {
        "adds a note"
    }
    fn database(&self) -> &dyn Adapter {
        &*self.0
    }
    async fn call(&self, tx: &mut WriteTx<'_>, entry: LedgerEntry) -> Result<Value, ToolError> {
        let params = [SqlValue::Text(entry.note)];
        let done = if postgres(&*self.0) {
            tx.execute("INSERT INTO ledger (note) VALUES ($1) RETURNING id", &params).await?
        } else {
            tx.execute("INSERT INTO ledger (note) VALUES (?)", &params).await?
        };
        match entry.then.as_str() {
            "fail" => Err(ToolError::internal("failed after the insert")),
            "panic" => panic!("panicked after the insert"),
            "hang" => std::future::pending().await,
            _ => Ok(serde_json::json!({"rows": done.rows, "last_insert_id": done.last_insert_id})),
        }
    }
}

impl WriteTool for LedgerRelabelAll {
    type Input = serde_json::Map<String, Value>;
    type Output = u64;
    const MAX_AFFECTED_ROWS: u64 = 1;

    fn name(&self) -> &str {
        "ledger_relabel_all"
    }
    fn description(&self) -> &str {
        "changes every note"
    }
    fn database(&self) -> &dyn Adapter {
        &*self.0
    }
    async fn call(&self, tx: &mut WriteTx<'_>, _: serde_json::Map<String, Value>) -> Result<u64, ToolError> {
        let done = if self.0.dialect() == sqlwarden::sql::SqlDialect::MySql {
            tx.execute("UPDATE ledger SET note = CONCAT(note, '!')", &[]).await?
        } else {
            tx.execute("UPDATE ledger SET note = note || '!'", &[]).await?
        };
        Ok(done.rows_affected)
    }
}

/// An audit sink that refuses every batch holding an execute record, and records the rest
/// nowhere.
struct NoExecuteRecords;

impl sqlwarden::audit::AuditSink for NoExecuteRecords {
    fn record(&self, batch: &sqlwarden::audit::AuditBatch<'_>) -> Result<(), sqlwarden::audit::AuditError> {
        if batch.records.iter().any(|record| record.stage == sqlwarden::audit::Stage::Execute) {
            return Err(sqlwarden::audit::AuditError::Io(std::io::Error::other("disk full")));
        }
        Ok(())
    }
}

/// The ledger tools over `adapter` in `mode`, with grants for `granted` only.
pub fn ledger_service(adapter: &Arc<dyn Adapter>, mode: Mode, granted: &[&str]) -> Service {
    ledger_service_auditing(adapter, mode, granted, JsonLinesSink::new(std::io::sink()))
}

/// [`ledger_service`] with its audit going to `audit`.
fn ledger_service_auditing(
    adapter: &Arc<dyn Adapter>,
    mode: Mode,
    granted: &[&str],
    audit: impl sqlwarden::audit::AuditSink + 'static,
) -> Service {
    let mut tools = ToolRegistry::new();
    tools.register(LedgerAdd(Arc::clone(adapter))).expect("registers");
    tools.register(LedgerRelabelAll(Arc::clone(adapter))).expect("registers");
    let grants = granted.iter().map(|tool| Grant::new(IDENTITY, TENANT, tool).expect("valid grant"));
    let quotas = Arc::new(QuotaEngine::new(QuotaPolicy::default()));
    let boundary = Boundary::builder(tools)
        .mode(mode)
        .authorizer(Capabilities::from_grants(grants))
        .quotas(Arc::clone(&quotas))
        .audit(audit)
        .build();
    let session = Arc::new(SessionContext::builder().identity(IDENTITY).tenant(TENANT).bind().expect("valid"));
    // The audit went to `audit`: nothing is kept here.
    Service { boundary, session, quotas, audit: Audited::default() }
}

/// The database's view of the ledger: the number of rows and of notes changed by
/// `ledger_relabel_all`, and the transactions still open on it.
pub trait LedgerProbe {
    fn state(&mut self) -> impl std::future::Future<Output = (i64, i64)>;
    fn open_transactions(&mut self) -> impl std::future::Future<Output = i64>;
}

/// The original's frozen invariant 5 ("write tool controlled execution") against a real
/// database whose `ledger` holds three rows: denied calls change nothing, a granted call in
/// read-write mode inserts exactly one row, and a statement over the declared maximum, a
/// handler error, a panic or a cancelled call after a statement rolls everything back.
pub async fn exercise_write_tools(adapter: Arc<dyn Adapter>, probe: &mut impl LedgerProbe) {
    let entry = |then: &str| serde_json::json!({"note": "added", "then": then});
    assert_eq!(probe.state().await, (3, 0));

    let read_only = ledger_service(&adapter, Mode::ReadOnly, &["ledger_add", "ledger_relabel_all"]);
    assert_eq!(read_only.call("ledger_add", entry("ok")).await.map_err(|d| d.code()), Err(DenialCode::ReadOnly));
    let ungranted = ledger_service(&adapter, Mode::ReadWrite, &["ledger_relabel_all"]);
    assert_eq!(ungranted.call("ledger_add", entry("ok")).await.map_err(|d| d.code()), Err(DenialCode::Unauthorized));
    assert_eq!(probe.state().await, (3, 0), "denied calls change nothing");

    let service = ledger_service(&adapter, Mode::ReadWrite, &["ledger_add", "ledger_relabel_all"]);
    let added = service.call("ledger_add", entry("ok")).await.expect("inserts");
    let id = added["rows"][0][0].as_i64().or_else(|| added["last_insert_id"].as_i64());
    assert_eq!(id, Some(4), "the new row's id comes back: {added}");
    assert_eq!(probe.state().await, (4, 0), "exactly one row");

    let too_many = service.call("ledger_relabel_all", serde_json::json!({})).await.expect_err("four rows > one");
    assert_eq!(too_many.code(), DenialCode::QueryRejected);
    assert!(too_many.message().contains("at most 1"), "{}", too_many.message());
    for then in ["fail", "panic"] {
        let failed = service.call("ledger_add", entry(then)).await.expect_err("fails after its insert");
        assert_eq!(failed.code(), DenialCode::Internal, "{then}");
    }
    let cancelled =
        tokio::time::timeout(std::time::Duration::from_millis(300), service.call("ledger_add", entry("hang")));
    assert!(cancelled.await.is_err(), "the client gave up on the call");
    assert_eq!(probe.state().await, (4, 0), "rolled back: no row changed, none added");
    // A write whose execute record cannot be written is not committed.
    let unaudited = ledger_service_auditing(&adapter, Mode::ReadWrite, &["ledger_add"], NoExecuteRecords);
    let refused = unaudited.call("ledger_add", entry("ok")).await.expect_err("no record, no commit");
    assert_eq!((refused.code(), refused.message()), (DenialCode::Internal, "audit unavailable"));
    assert_eq!(probe.state().await, (4, 0), "the unaudited insert was rolled back");

    // Each call takes a pooled connection; none may carry an abandoned transaction along.
    for _ in 0..3 {
        service.call("ledger_add", entry("ok")).await.expect("the pool is healthy afterwards");
    }
    assert_eq!(probe.state().await, (7, 0));
    let started = std::time::Instant::now();
    while probe.open_transactions().await > 0 {
        assert!(started.elapsed() < std::time::Duration::from_secs(5), "a transaction was left open");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

/// An example's executable, built first by the cargo running the tests (a no-op when it is
/// up to date; a test run filtered to one target would otherwise use a stale build or none).
pub fn example(name: &str) -> std::path::PathBuf {
    let deps = std::env::current_exe().expect("test executable");
    let profile = deps.parent().and_then(std::path::Path::parent).expect("target profile directory");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut build = std::process::Command::new(cargo);
    build.args(["build", "--quiet", "--example", name]);
    // What cargo sets for a test run (package metadata, OUT_DIR…) would make this build's
    // fingerprints differ from the ordinary one, and rebuild everything each time.
    for (key, _) in std::env::vars_os() {
        let key = key.to_string_lossy();
        let keep = matches!(key.as_ref(), "CARGO_HOME" | "CARGO_TARGET_DIR") || key.starts_with("CARGO_BUILD_");
        if (key.starts_with("CARGO_") && !keep) || key == "OUT_DIR" {
            build.env_remove(key.as_ref());
        }
    }
    if profile.file_name().is_some_and(|dir| dir == "release") {
        build.arg("--release");
    }
    let built = build.stdout(std::process::Stdio::null()).status().expect("cargo runs");
    assert!(built.success(), "the example {name} builds");
    profile.join("examples").join(name)
}

/// The write-controlled example against a database with `customers(id, name, email)`
/// holding one row: the operator's three configurations, checked over MCP and by counting
/// rows with `count`.
pub fn check_write_controlled_example(url: &str, schema: &str, count: impl Fn() -> i64) {
    let config = |read_only: bool, grant: bool| {
        let mut text = format!(
            "[database]\nurl = \"{url}\"\n[mode]\nread_only = {read_only}\n[allowlist]\nschemas = [\"{schema}\"]\n\
             tables = [\"customers\"]\n[[grants]]\ntool = \"query_read\"\n[audit]\npath = \"/dev/null\"\n"
        );
        if grant {
            text.push_str("[[grants]]\ntool = \"add_customer\"\n");
        }
        ConfigFile::new(&text)
    };
    let example = example("write_controlled");
    let start = |config: &ConfigFile| {
        let mut server = McpProcess::spawn(&example, &["--config", &config.path()], &[]);
        server.initialize();
        server
    };
    let add = serde_json::json!({"name": "Grace Hopper", "email": "grace@example.com"});
    let code = |result: &Value| result["structuredContent"]["code"].as_str().map(str::to_owned);
    assert_eq!(count(), 1);

    let read_only = config(true, true);
    let mut server = start(&read_only);
    assert_eq!(code(&server.call("add_customer", add.clone())).as_deref(), Some("READ_ONLY"));
    assert_eq!(server.finish(), Some(0));
    let ungranted = config(false, false);
    let mut server = start(&ungranted);
    let listed = server.request("tools/list", serde_json::json!({}));
    assert_eq!(listed["result"]["tools"].as_array().map(Vec::len), Some(1), "only query_read is granted");
    assert_eq!(code(&server.call("add_customer", add.clone())).as_deref(), Some("UNAUTHORIZED"));
    assert_eq!(server.finish(), Some(0));
    assert_eq!(count(), 1, "denied calls change nothing");

    let writable = config(false, true);
    let mut server = start(&writable);
    let listed = server.request("tools/list", serde_json::json!({}));
    let tool = listed["result"]["tools"]
        .as_array()
        .and_then(|tools| tools.iter().find(|tool| tool["name"] == "add_customer"))
        .cloned()
        .expect("add_customer is listed");
    assert_eq!(tool["annotations"]["destructiveHint"], true);
    assert_eq!(tool["annotations"]["readOnlyHint"], false);
    assert_eq!(tool["inputSchema"]["additionalProperties"], false);
    assert_eq!(tool["inputSchema"]["properties"]["name"]["maxLength"], 100, "bounds derived from the input type");
    assert_eq!(tool["inputSchema"]["properties"]["email"]["format"], "email");
    assert_eq!(tool["inputSchema"]["required"], serde_json::json!(["name", "email"]));
    let added = server.call("add_customer", add.clone());
    assert_eq!(added["isError"], false, "{added}");
    assert_eq!(added["structuredContent"]["id"], 2);
    assert_eq!(added["structuredContent"]["email"], "grace@example.com");
    assert_eq!(count(), 2, "exactly one row");
    for invalid in [
        serde_json::json!({"name": "", "email": "x@example.com"}),
        serde_json::json!({"name": "Eve", "email": "not an email"}),
        serde_json::json!({"name": "Eve\u{7}", "email": "eve@example.com"}),
        serde_json::json!({"name": "Eve", "email": "eve@example.com", "id": 1}),
        serde_json::json!({"name": "x".repeat(101), "email": "eve@example.com"}),
    ] {
        assert_eq!(code(&server.call("add_customer", invalid.clone())).as_deref(), Some("INVALID_INPUT"), "{invalid}");
    }
    let duplicate = server.call("add_customer", add);
    assert_eq!(code(&duplicate).as_deref(), Some("DB_ERROR"), "the unique email is the database's to enforce");
    assert_eq!(server.finish(), Some(0));
    assert_eq!(count(), 2, "refused and failed calls change nothing");
}

/// The `sqlwarden` binary driven as a fast MCP client drives it: many requests in flight, each
/// answer matched to its request by id as it arrives, and a large answer never parsed (a client
/// that parsed it would measure its own parsing). For limits that belong to the whole process:
/// its memory from `/proc`, and how long a `ping` waits while other calls run.
pub struct Probe {
    child: std::process::Child,
    stdin: std::sync::Mutex<Option<std::process::ChildStdin>>,
    pending: Arc<std::sync::Mutex<std::collections::HashMap<u64, std::sync::mpsc::Sender<Reply>>>>,
    next_id: std::sync::atomic::AtomicU64,
    /// The unread end of stderr, kept open, when the server's stderr is not drained.
    pub stderr: Option<std::process::ChildStderr>,
}

/// An answer: when it came, how long its line was, and its text (cut at 64 KiB).
#[derive(Debug, Clone)]
pub struct Reply {
    pub sent: std::time::Instant,
    pub came: std::time::Instant,
    pub bytes: usize,
    pub text: String,
}

impl Reply {
    /// How long the answer took.
    pub fn latency(&self) -> std::time::Duration {
        self.came - self.sent
    }

    /// The denial code of a tool's refusal, or `"ok"`.
    pub fn code(&self) -> String {
        self.text
            .split("\"code\":\"")
            .nth(1)
            .and_then(|rest| rest.split('"').next())
            .filter(|_| self.text.contains("\"isError\":true"))
            .unwrap_or("ok")
            .to_owned()
    }
}

/// What the server's stderr is connected to.
pub enum Stderr {
    Null,
    /// A pipe nobody reads until the test says so.
    Unread,
}

/// The binary the process-wide tests run: `SQLWARDEN_TEST_BINARY` (a release build, say), or
/// this build's.
pub fn binary() -> std::path::PathBuf {
    std::env::var_os("SQLWARDEN_TEST_BINARY")
        .map_or_else(|| std::path::PathBuf::from(env!("CARGO_BIN_EXE_sqlwarden")), std::path::PathBuf::from)
}

/// How long a `ping` may wait while large calls run. The design's figure is 100 ms, for an
/// optimized build (`SQLWARDEN_TEST_BINARY=target/release/sqlwarden`); an unoptimized build
/// does the same work many times slower, so it is given ten times as long.
pub fn ping_bound() -> std::time::Duration {
    if std::env::var_os("SQLWARDEN_TEST_BINARY").is_some() || !cfg!(debug_assertions) {
        std::time::Duration::from_millis(100)
    } else {
        std::time::Duration::from_millis(1000)
    }
}

impl Probe {
    /// Starts the server with these arguments and environment, and initializes the session.
    pub fn start(args: &[&str], env: &[(&str, &str)], stderr: Stderr) -> Probe {
        use std::process::{Command, Stdio};
        let mut child = Command::new(binary())
            .args(args)
            .envs(env.iter().copied())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(match stderr {
                Stderr::Null => Stdio::null(),
                Stderr::Unread => Stdio::piped(),
            })
            .spawn()
            .expect("starts");
        let stdout = child.stdout.take().expect("stdout");
        let pending: Arc<std::sync::Mutex<std::collections::HashMap<u64, std::sync::mpsc::Sender<Reply>>>> =
            Arc::default();
        let waiting = Arc::clone(&pending);
        std::thread::spawn(move || read_replies(stdout, &waiting));
        let probe = Probe {
            stdin: std::sync::Mutex::new(child.stdin.take()),
            stderr: child.stderr.take(),
            child,
            pending,
            next_id: std::sync::atomic::AtomicU64::new(1),
        };
        let initialized = probe.request(
            "initialize",
            serde_json::json!({"protocolVersion": "2025-06-18", "capabilities": {},
                               "clientInfo": {"name": "sqlwarden-tests", "version": "1"}}),
            std::time::Duration::from_secs(30),
        );
        assert!(initialized.text.contains("\"result\""), "initialized: {}", initialized.text);
        probe.write(r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#);
        probe
    }

    fn write(&self, line: &str) {
        use std::io::Write;
        let mut stdin = self.stdin.lock().expect("stdin");
        let stdin = stdin.as_mut().expect("open");
        stdin.write_all(line.as_bytes()).expect("write");
        stdin.write_all(b"\n").expect("write");
        stdin.flush().expect("flush");
    }

    /// Sends a request; its answer comes on the returned channel.
    pub fn send(&self, method: &str, params: Value) -> std::sync::mpsc::Receiver<Reply> {
        let id = self.next_id.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let (sender, receiver) = std::sync::mpsc::channel();
        self.pending.lock().expect("pending").insert(id, sender);
        self.write(&serde_json::json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params}).to_string());
        receiver
    }

    /// Sends a request and waits for its answer.
    pub fn request(&self, method: &str, params: Value, within: std::time::Duration) -> Reply {
        let sent = std::time::Instant::now();
        let reply = self.send(method, params).recv_timeout(within);
        let mut reply = reply.unwrap_or_else(|_| panic!("{method}: no answer within {within:?}"));
        reply.sent = sent;
        reply
    }

    /// `query_read` with these arguments, sent now.
    pub fn read(&self, arguments: Value) -> (std::time::Instant, std::sync::mpsc::Receiver<Reply>) {
        (
            std::time::Instant::now(),
            self.send("tools/call", serde_json::json!({"name": "query_read", "arguments": arguments})),
        )
    }

    /// A field of `/proc/<pid>/status`, in KiB (`VmHWM`: the peak resident memory; `VmRSS`).
    pub fn status_kib(&self, field: &str) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).expect("status");
        status
            .lines()
            .find_map(|line| line.strip_prefix(field)?.strip_prefix(':'))
            .and_then(|value| value.split_whitespace().next()?.parse().ok())
            .unwrap_or_else(|| panic!("no {field} in /proc status"))
    }

    /// Runs the `query_read` calls, `at_once` at a time (each waited for at most `within`),
    /// while a `ping` goes out every 10 ms; returns the answers and the longest ping.
    pub fn under_load(
        &self,
        queries: &[String],
        at_once: usize,
        within: std::time::Duration,
    ) -> (Vec<Reply>, std::time::Duration) {
        let done = std::sync::atomic::AtomicBool::new(false);
        std::thread::scope(|scope| {
            let pinger = scope.spawn(|| {
                let mut longest = std::time::Duration::ZERO;
                while !done.load(std::sync::atomic::Ordering::Relaxed) {
                    let reply = self.request("ping", serde_json::json!({}), std::time::Duration::from_secs(30));
                    longest = longest.max(reply.latency());
                    std::thread::sleep(std::time::Duration::from_millis(10));
                }
                longest
            });
            let mut replies = Vec::new();
            for batch in queries.chunks(at_once) {
                let sent: Vec<_> = batch.iter().map(|query| self.read(serde_json::json!({"query": query}))).collect();
                for ((at, answer), query) in sent.into_iter().zip(batch) {
                    let mut reply =
                        answer.recv_timeout(within).unwrap_or_else(|_| panic!("{query}: no answer within {within:?}"));
                    reply.sent = at;
                    replies.push(reply);
                }
            }
            done.store(true, std::sync::atomic::Ordering::Relaxed);
            (replies, pinger.join().expect("pinger"))
        })
    }

    /// The memory-and-time check of one server under its default limits (`max_result_bytes`
    /// 8,000,000, `max_concurrent` 4), given queries and the code each must give (`"ok"` for a
    /// result): the refusals (`RESULT_TOO_LARGE`) first, twice, and the memory they took must
    /// come back (within 8 MiB of what the process held before); then every query, four at a
    /// time, twice over, each answered as expected within its time limit (5 s) and a second,
    /// with a `ping` answered within [`ping_bound`] throughout; and the peak resident memory
    /// within 64 MiB + 2 × `max_result_bytes` × `max_concurrent`. The server ends cleanly.
    pub fn hold_the_memory_bound(self, cases: &[(&str, &str)]) {
        use std::time::Duration;
        let queries: Vec<String> = cases.iter().map(|(query, _)| (*query).to_owned()).collect();
        // A first batch starts what the process starts once: its pool, the blocking pool's
        // threads.
        let refused: Vec<String> = cases
            .iter()
            .filter(|(_, expected)| *expected == "RESULT_TOO_LARGE")
            .flat_map(|(query, _)| [(*query).to_owned(), (*query).to_owned()])
            .collect();
        let (replies, _) = self.under_load(&refused, 4, Duration::from_secs(30));
        assert!(replies.iter().all(|reply| reply.code() == "RESULT_TOO_LARGE"), "{replies:?}");
        std::thread::sleep(Duration::from_millis(500));
        let baseline = self.status_kib("VmRSS");
        let (replies, _) = self.under_load(&refused, 4, Duration::from_secs(30));
        assert!(replies.iter().all(|reply| reply.code() == "RESULT_TOO_LARGE"), "{replies:?}");
        // Connections that read large rows are closed as their transactions end, just after.
        let mut after = self.status_kib("VmRSS");
        for _ in 0..30 {
            if after <= baseline + (8 << 10) {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
            after = self.status_kib("VmRSS");
        }
        eprintln!("resident memory {baseline} KiB before the refusals, {after} KiB after");
        assert!(after <= baseline + (8 << 10), "memory came back: {baseline} KiB before, {after} KiB after");
        for round in 0..2 {
            let (replies, longest_ping) = self.under_load(&queries, 4, Duration::from_secs(30));
            for (reply, (query, expected)) in replies.iter().zip(cases) {
                let shown = &reply.text[..reply.text.len().min(300)];
                assert_eq!(reply.code(), *expected, "round {round}: {query}: {shown}");
                assert!(reply.latency() < Duration::from_secs(6), "{query}: answered after {:?}", reply.latency());
            }
            eprintln!("round {round}: the longest ping waited {longest_ping:?}");
            assert!(longest_ping < ping_bound(), "round {round}: a ping waited {longest_ping:?}");
        }
        let peak = self.status_kib("VmHWM");
        eprintln!("peak resident memory {peak} KiB");
        let bound = (64 << 10) + 2 * 8_000_000 * 4 / 1024;
        assert!(peak <= bound, "peak resident memory {peak} KiB, bound {bound} KiB");
        assert_eq!(self.finish(), Some(0));
    }

    /// Closes stdin and waits up to 10 s for the server to exit; its exit code.
    pub fn finish(mut self) -> Option<i32> {
        drop(self.stdin.lock().expect("stdin").take());
        exit_within_10s(&mut self.child)
    }
}

impl Drop for Probe {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Reads the server's answers, large reads at a time, and hands each to whoever waits for its
/// id, reading the id from the line's start (the server writes `{"jsonrpc":"2.0","id":…`).
fn read_replies(
    mut stdout: std::process::ChildStdout,
    pending: &std::sync::Mutex<std::collections::HashMap<u64, std::sync::mpsc::Sender<Reply>>>,
) {
    use std::io::Read;
    let mut buffer = Vec::with_capacity(1 << 20);
    let mut chunk = vec![0u8; 1 << 20];
    let mut line_start = 0;
    loop {
        let read = match stdout.read(&mut chunk) {
            Ok(0) | Err(_) => return,
            Ok(read) => read,
        };
        let came = std::time::Instant::now();
        let scan_from = buffer.len();
        buffer.extend_from_slice(&chunk[..read]);
        let mut from = scan_from;
        while let Some(at) = memchr::memchr(b'\n', &buffer[from..]) {
            let end = from + at;
            let line = &buffer[line_start..end];
            let head = String::from_utf8_lossy(&line[..line.len().min(64 << 10)]).into_owned();
            let id = head
                .split("\"id\":")
                .nth(1)
                .and_then(|rest| rest.split(|c: char| !c.is_ascii_digit()).next())
                .and_then(|digits| digits.parse::<u64>().ok());
            if let Some(sender) = id.and_then(|id| pending.lock().ok()?.remove(&id)) {
                let _ = sender.send(Reply { sent: came, came, bytes: line.len(), text: head });
            }
            line_start = end + 1;
            from = end + 1;
        }
        buffer.drain(..line_start);
        line_start = 0;
    }
}

/// The JSON inside a row-returning result's text content, which is framed as untrusted data:
/// a line saying the block is data, not instructions; `<untrusted-data-…>`; the JSON; and
/// `</untrusted-data-…>` with the same boundary. Panics if the frame is not exactly so.
pub fn unframe(text: &str) -> serde_json::Value {
    let lines: Vec<&str> = text.split('\n').collect();
    let [notice, open, json, close] = lines.as_slice() else { panic!("not a framed text: {text:.300}") };
    let boundary = open.strip_prefix('<').and_then(|open| open.strip_suffix('>')).expect("an opening boundary line");
    assert!(boundary.starts_with("untrusted-data-") && boundary.len() == "untrusted-data-".len() + 32, "{boundary}");
    assert_eq!(*close, format!("</{boundary}>"), "the block closes with its own boundary");
    assert!(notice.contains(&format!("<{boundary}>")) && notice.contains("not instructions"), "{notice}");
    serde_json::from_str(json).expect("the framed text is the JSON result")
}

/// The column-rule corpus's tables, in SQL every engine reads (one statement a line).
/// `people` has values planted in its denied (`ssn`, `password_hash`) and masked (`email`,
/// `phone`) columns, each holding `PLANTED`; `teams` shares column names with it, for joins.
pub const PEOPLE: &str = "
CREATE TABLE people (id integer PRIMARY KEY, name varchar(100) NOT NULL, email varchar(200), phone varchar(50), ssn varchar(50), password_hash varchar(100), team integer);
INSERT INTO people VALUES (1, 'Ann', 'ann.planted@example.com', '555-PLANTED-4321', 'SSN-PLANTED-111', 'PWH-PLANTED-aaa', 1), (2, 'Bob', 'bob.planted@example.com', '555-PLANTED-8765', 'SSN-PLANTED-222', 'PWH-PLANTED-bbb', 1);
CREATE TABLE teams (id integer PRIMARY KEY, ssn varchar(50), email varchar(200), title varchar(50));
INSERT INTO teams VALUES (1, 'x', 'ops@example.com', 'Ops');
CREATE INDEX people_by_ssn ON people (ssn);
CREATE INDEX people_by_team ON people (team, email);
";

/// The rules of `people`: `ssn` and `password_hash` denied, `email` hashed, `phone` to its
/// last four.
pub fn people_rule() -> sqlwarden::sql::ColumnRule {
    use sqlwarden::sql::{ColumnRule, Mask};
    ColumnRule::new()
        .deny("ssn")
        .and_then(|rule| rule.deny("password_hash"))
        .and_then(|rule| rule.mask("email", Mask::Hash))
        .and_then(|rule| rule.mask("phone", Mask::Last4))
        .expect("a valid rule")
}

/// Ways to reach `people`'s ruled columns that every engine reads alike: by name in every
/// position, through CTEs, subqueries, joins and windows, as whole rows and `*`, and masked
/// columns in expressions, conditions, orderings, groupings and set operations.
pub const COLUMN_BYPASSES: &[&str] = &[
    "SELECT ssn FROM people",
    "SELECT SSN FROM people",
    "SELECT p.ssn FROM people p",
    "SELECT people.ssn FROM people",
    "SELECT id FROM people WHERE ssn LIKE 'SSN%'",
    "SELECT id FROM people WHERE ssn IN ('SSN-PLANTED-111')",
    "SELECT id FROM people WHERE ssn BETWEEN 'A' AND 'Z'",
    "SELECT id FROM people WHERE 'SSN-PLANTED-111' = ssn",
    "SELECT id FROM people WHERE length(ssn) > 3",
    "SELECT id FROM people ORDER BY ssn",
    "SELECT id FROM people ORDER BY CASE WHEN ssn LIKE 'SSN-P%' THEN 0 ELSE 1 END",
    "SELECT count(*) AS n FROM people GROUP BY ssn",
    "SELECT id FROM people GROUP BY id HAVING max(ssn) > 'A'",
    "SELECT max(ssn) AS m FROM people",
    "SELECT coalesce(ssn, 'n') AS s FROM people",
    "SELECT CAST(ssn AS char(20)) AS s FROM people",
    "SELECT x FROM (SELECT ssn AS x FROM people) d",
    "WITH d AS (SELECT ssn AS x FROM people) SELECT x FROM d",
    "WITH d(x) AS (SELECT ssn FROM people) SELECT x FROM d",
    "SELECT id FROM people WHERE EXISTS (SELECT 1 FROM people q WHERE q.ssn = 'SSN-PLANTED-111' AND q.id = people.id)",
    "SELECT (SELECT max(password_hash) FROM people) AS h",
    "SELECT count(*) AS n FROM people WHERE password_hash IS NOT NULL",
    "SELECT id FROM people p WHERE p.password_hash <> ''",
    "SELECT row_number() OVER (ORDER BY ssn) AS n FROM people",
    "SELECT id FROM people AS ssn",
    "SELECT p.id FROM people p JOIN teams t USING (ssn)",
    "SELECT p.id FROM people p JOIN teams t ON p.ssn = t.ssn",
    "SELECT p.id FROM people p NATURAL JOIN teams",
    "SELECT * FROM people",
    "SELECT p.* FROM people p",
    "SELECT people.* FROM people",
    "SELECT * FROM people NATURAL JOIN teams",
    "SELECT * FROM (SELECT * FROM people) d",
    "SELECT * FROM people JOIN teams ON teams.id = people.team",
    "SELECT * FROM (people p JOIN teams t ON t.id = p.team)",
    "SELECT lower(email) AS e FROM people",
    "SELECT replace(email, '@', ' at ') AS e FROM people",
    "SELECT substr(phone, 1, 8) AS p FROM people",
    "SELECT id FROM people WHERE email = 'ann.planted@example.com'",
    "SELECT id FROM people WHERE email LIKE 'ann%'",
    "SELECT CASE WHEN email LIKE 'a%' THEN 1 ELSE 0 END AS c FROM people",
    "SELECT email FROM people ORDER BY email",
    "SELECT email AS e FROM people ORDER BY e",
    "SELECT email FROM people ORDER BY 1",
    "SELECT id, email FROM people GROUP BY 2, id",
    "SELECT DISTINCT email FROM people",
    "SELECT email FROM people UNION SELECT 'x'",
    "SELECT email FROM people UNION ALL SELECT 'x'",
    "SELECT 'x' AS a UNION SELECT email FROM people",
    "SELECT max(email) AS m FROM people",
    "SELECT min(phone) AS m FROM people",
    "SELECT count(DISTINCT email) AS n FROM people",
    "SELECT (SELECT email FROM people WHERE id = 1) AS e",
    "SELECT e FROM (SELECT email AS e FROM people) d",
    "WITH d AS (SELECT email FROM people) SELECT email FROM d",
    "SELECT a.id FROM people a JOIN people b ON a.email = b.email",
    "SELECT a.id FROM people a JOIN teams b USING (email)",
    "SELECT email, phone FROM people WHERE phone LIKE '%4321'",
    "SELECT id FROM people WHERE id IN (SELECT id FROM people WHERE email LIKE 'a%')",
    "SELECT row_number() OVER (ORDER BY email) AS n, id FROM people",
    "SELECT id, rank() OVER (PARTITION BY phone ORDER BY id) AS r FROM people",
    "SELECT (SELECT count(*) FROM people q WHERE q.email < p.email) AS rank_of FROM people p",
    "SELECT id FROM people WHERE (email, id) = ('a', 1)",
    // Accepted, with the masked columns masked.
    "SELECT id, email, phone FROM people ORDER BY id",
    "SELECT p.email AS contact FROM people p WHERE p.id = 1",
    "SELECT 'x' AS a, email FROM people WHERE team = 1",
    "SELECT t.email FROM people p JOIN teams t ON t.id = p.team",
    "SELECT t.*, p.id FROM people p JOIN teams t ON t.id = p.team",
];

/// Runs every bypass (the common ones and the engine's own) through `query_read`, each by
/// itself, and checks that no answer, result or refusal, holds a planted value or a trace of
/// one, and that a refusal for the rules says `COLUMN_DENIED` with the column or table. Then
/// that masked columns selected as they are come back masked, and that `describe_table`
/// hides the denied columns and marks the masked ones. Returns (accepted, refused).
pub async fn column_rules_hold(service: &Service, own: &[&str]) -> (usize, usize) {
    let traces = ["planted", "detnalp", "504c414e544544", "706c616e746564", "ssn-", "pwh-"];
    let leaks = |text: &str| {
        let lower = text.to_lowercase();
        traces.iter().find(|trace| lower.contains(*trace)).map(|trace| (*trace).to_owned())
    };
    let (mut accepted, mut refused) = (0, 0);
    let call = |args: Value| async move {
        loop {
            match service.call("query_read", args.clone()).await {
                // The corpus is larger than the default burst: wait, rather than count it.
                Err(denial) if denial.code() == DenialCode::RateLimited => {
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                }
                answer => return answer,
            }
        }
    };
    for query in COLUMN_BYPASSES.iter().chain(own) {
        match call(json!({"query": query})).await {
            Ok(output) => {
                let text = output.to_string();
                assert_eq!(leaks(&text), None, "{query} returned {text}");
                accepted += 1;
            }
            Err(denial) => {
                assert_eq!(leaks(denial.message()), None, "{query}: {}", denial.message());
                let expected = [DenialCode::ColumnDenied, DenialCode::QueryRejected, DenialCode::DbError];
                assert!(expected.contains(&denial.code()), "{query}: refused for another reason: {denial:?}");
                if denial.code() == DenialCode::ColumnDenied {
                    let message = denial.message();
                    let named = ["ssn", "password_hash", "email", "phone", "people", "rowid", "oid"]
                        .iter()
                        .any(|name| message.contains(name));
                    assert!(named, "{query}: the refusal names the column or the table: {message}");
                }
                refused += 1;
            }
        }
    }
    assert!(COLUMN_BYPASSES.len() + own.len() >= 60, "at least 60 attempts");

    let masked = call(json!({"query": "SELECT id, email, phone, name FROM people ORDER BY id"}))
        .await
        .expect("masked columns selected as they are");
    let rows = masked["rows"].as_array().expect("rows");
    assert_eq!(rows.len(), 2);
    let hash = rows[0][1].as_str().expect("a hash");
    assert!(hash.len() == 64 && hash.bytes().all(|b| b.is_ascii_hexdigit()), "{hash}");
    assert_ne!(rows[0][1], rows[1][1], "another value, another hash");
    assert_eq!((&rows[0][2], &rows[1][2], &rows[0][3]), (&json!("****4321"), &json!("****8765"), &json!("Ann")));
    let again = call(json!({"query": "SELECT email FROM people WHERE id = 1"})).await.expect("read");
    assert_eq!(again["rows"][0][0], rows[0][1], "stable under one key, for joins and comparisons");

    let described = service.call("describe_table", json!({"table": "people"})).await.expect("described");
    let columns: Vec<(String, Value)> = described["columns"]
        .as_array()
        .expect("columns")
        .iter()
        .map(|column| (column["name"].as_str().expect("name").to_lowercase(), column["rule"].clone()))
        .collect();
    let names: Vec<&str> = columns.iter().map(|(name, _)| name.as_str()).collect();
    assert_eq!(names, ["id", "name", "email", "phone", "team"], "denied columns are not shown");
    assert_eq!(columns[2].1, json!("masked: hash"));
    assert_eq!(columns[3].1, json!("masked: last4"));
    assert_eq!(columns[0].1, Value::Null);
    // Nor is an index or key on a denied column; an index on others stays.
    assert!(!described.to_string().to_lowercase().contains("ssn"), "{described}");
    let indexes: Vec<&str> =
        described["indexes"].as_array().expect("indexes").iter().filter_map(|index| index["name"].as_str()).collect();
    assert!(indexes.contains(&"people_by_team"), "{described}");
    (accepted, refused)
}

/// The declared tools' table, in SQL every engine takes (statements end with `;` and a line).
pub const TICKETS: &str = "CREATE TABLE tickets (id INTEGER PRIMARY KEY, tenant VARCHAR(40) NOT NULL, \
     title VARCHAR(200) NOT NULL, priority INTEGER NOT NULL, due DATE);
INSERT INTO tickets (id, tenant, title, priority, due) VALUES (1, 'acme', 'one', 1, '2026-01-01'), \
     (2, 'acme', 'two', 2, '2026-02-01'), (3, 'globex', 'three', 3, '2026-03-01'), (4, 'acme', 'four', 3, NULL);
";

/// A configuration over `url` (with `[mode] read_only = read_only`) declaring the tools
/// [`exercise_declared_tools`] calls, each granted, and `query_read` to look at the table.
pub fn declared_tools_config(url: &str, dialect: sqlwarden::sql::SqlDialect, read_only: bool) -> String {
    let p = |n: usize| match dialect {
        sqlwarden::sql::SqlDialect::Postgres => format!("${n}"),
        _ => "?".to_owned(),
    };
    let (p1, p2, p3, p4) = (p(1), p(2), p(3), p(4));
    // A size-amplifying call whose count is a param: the guard can only check it on each call.
    let pad = match dialect {
        sqlwarden::sql::SqlDialect::Sqlite => format!("printf('%.*c', {p1}, 'x')"),
        _ => format!("repeat('x', {p1})"),
    };
    let mut text = format!(
        r#"[database]
url = "{url}"
[session]
identity = "ada"
tenant = "acme"
claims = {{ region = "eu" }}
[mode]
read_only = {read_only}
[allowlist]
tables = ["tickets"]
[audit]
path = "/dev/null"

[[tools]]
name = "my_tickets"
description = "Your tenant's tickets of at least some priority."
access = "read"
statement = "SELECT id, title FROM tickets WHERE tenant = {p1} AND priority >= {p2} ORDER BY id"
max_rows = 10
[[tools.params]]
name = "tenant"
type = "string"
from_claim = "tenant"
[[tools.params]]
name = "min_priority"
type = "integer"
description = "The least priority"
min = 1
max = 5
default = 1

[[tools]]
name = "due_before"
description = "Your tenant's tickets due before a date."
access = "read"
statement = "SELECT id FROM tickets WHERE due < {p1} AND tenant = {p2} ORDER BY id"
[[tools.params]]
name = "before"
type = "date"
[[tools.params]]
name = "tenant"
type = "string"
from_claim = "tenant"

[[tools]]
name = "regional"
description = "Your tenant's tickets whose title is not your region."
access = "read"
statement = "SELECT id FROM tickets WHERE tenant = {p1} AND title <> {p2} ORDER BY id"
[[tools.params]]
name = "tenant"
type = "string"
from_claim = "tenant"
[[tools.params]]
name = "region"
type = "string"
from_claim = "region"

[[tools]]
name = "team_tickets"
description = "Needs a team claim the session does not have."
access = "read"
statement = "SELECT id FROM tickets WHERE title = {p1}"
[[tools.params]]
name = "team"
type = "string"
from_claim = "team"

[[tools]]
name = "retitle"
description = "Retitles your tenant's tickets of at least some priority."
access = "write"
statement = "UPDATE tickets SET title = {p1} WHERE tenant = {p2} AND priority >= {p3}"
max_affected_rows = 1
[[tools.params]]
name = "title"
type = "string"
max_length = 20
pattern = "^[a-z ]+$"
[[tools.params]]
name = "tenant"
type = "string"
from_claim = "tenant"
[[tools.params]]
name = "min_priority"
type = "integer"

[[tools]]
name = "open_ticket"
description = "Opens a ticket for your tenant."
access = "write"
statement = "INSERT INTO tickets (id, tenant, title, priority) VALUES ({p1}, {p2}, {p3}, {p4})"
max_affected_rows = 1
[[tools.params]]
name = "id"
type = "integer"
min = 100
[[tools.params]]
name = "tenant"
type = "string"
from_claim = "tenant"
[[tools.params]]
name = "title"
type = "string"
[[tools.params]]
name = "priority"
type = "integer"
enum = [1, 2, 3]

[[tools]]
name = "pad_title"
description = "Pads one of your tenant's tickets' title: its count is checked on each call."
access = "write"
statement = "UPDATE tickets SET title = {pad} WHERE id = {p2} AND tenant = {p3}"
max_affected_rows = 1
[[tools.params]]
name = "count"
type = "integer"
[[tools.params]]
name = "id"
type = "integer"
[[tools.params]]
name = "tenant"
type = "string"
from_claim = "tenant"
"#
    );
    for tool in
        ["query_read", "my_tickets", "due_before", "regional", "team_tickets", "retitle", "open_ticket", "pad_title"]
    {
        text.push_str(&format!("[[grants]]\ntool = \"{tool}\"\n"));
    }
    text
}

/// Declared tools on a real database holding [`TICKETS`], configured as an operator would:
/// typed params are checked and bound, claim-bound params come from the session and can be
/// neither seen nor set, a write over its `max_affected_rows` changes nothing, and read-only
/// mode hides and refuses the write tools.
pub async fn exercise_declared_tools(url: &str, dialect: sqlwarden::sql::SqlDialect) {
    use sqlwarden::config::Config;
    use sqlwarden::service::Service;
    let service = |read_only: bool| {
        let config = Config::parse(&declared_tools_config(url, dialect, read_only), "test", |_| None).expect("config");
        Service::from_config(config).expect("service")
    };
    let writer = service(false);
    let call = async |tool: &str, args: Value| -> Result<Value, Denial> {
        writer.call(tool, args).await.map(|output| output.to_value().expect("JSON"))
    };
    let ids = |result: &Value| -> Vec<i64> {
        result["rows"].as_array().expect("rows").iter().map(|row| row[0].as_i64().expect("id")).collect()
    };
    let code = |result: Result<Value, Denial>| result.expect_err("refused").code();
    let tickets = async || {
        let all = call("query_read", json!({"query": "SELECT id, tenant, title FROM tickets ORDER BY id"}))
            .await
            .expect("reads");
        all["rows"].clone()
    };

    // tools/list: a claim-bound param is not in the schema; the others carry their bounds.
    let visible = writer.boundary().visible_tools(writer.session());
    let schema = visible.iter().find(|tool| tool.name.as_str() == "my_tickets").expect("listed").input_schema();
    assert_eq!(
        Value::Object(schema),
        json!({"type": "object", "additionalProperties": false, "properties": {"min_priority": {
            "type": "integer", "description": "The least priority", "minimum": 1, "maximum": 5, "default": 1}}})
    );
    let retitle = visible.iter().find(|tool| tool.name.as_str() == "retitle").expect("listed").input_schema();
    assert_eq!(retitle["required"], json!(["title", "min_priority"]));
    assert!(retitle["properties"].get("tenant").is_none());

    // Reads: only the session's tenant's rows, the default and given values bound.
    assert_eq!(ids(&call("my_tickets", json!({})).await.expect("reads")), [1, 2, 4]);
    assert_eq!(ids(&call("my_tickets", json!({"min_priority": 3})).await.expect("reads")), [4]);
    assert_eq!(ids(&call("due_before", json!({"before": "2026-01-15"})).await.expect("reads")), [1]);
    assert_eq!(ids(&call("regional", json!({})).await.expect("reads")), [1, 2, 4]);
    for (tool, args) in [
        ("my_tickets", json!({"tenant": "globex"})),
        ("my_tickets", json!({"min_priority": 0})),
        ("my_tickets", json!({"min_priority": 6})),
        ("my_tickets", json!({"min_priority": "3"})),
        ("my_tickets", json!({"min_priority": 1.5})),
        ("my_tickets", json!({"other": 1})),
        ("due_before", json!({})),
        ("due_before", json!({"before": "2026-02-30"})),
        ("due_before", json!({"before": "2026-01-01' OR '1'='1"})),
        ("regional", json!({"region": "us"})),
    ] {
        assert_eq!(code(call(tool, args.clone()).await), DenialCode::InvalidInput, "{tool} {args}");
    }
    assert_eq!(code(call("team_tickets", json!({})).await), DenialCode::ClaimMissing);

    // Writes: bound to the tenant; over max_affected_rows nothing changes.
    let before = tickets().await;
    let over = call("retitle", json!({"title": "new", "min_priority": 1})).await.expect_err("3 rows");
    assert_eq!(over.code(), DenialCode::QueryRejected, "{}", over.message());
    assert!(over.message().contains("at most 1"), "{}", over.message());
    assert_eq!(tickets().await, before, "nothing was changed");
    for args in [
        json!({"title": "New", "min_priority": 3}),
        json!({"title": "x".repeat(21), "min_priority": 3}),
        json!({"title": "new", "min_priority": 3, "tenant": "globex"}),
    ] {
        assert_eq!(code(call("retitle", args.clone()).await), DenialCode::InvalidInput, "{args}");
    }
    assert_eq!(tickets().await, before);
    let done = call("retitle", json!({"title": "renamed", "min_priority": 3})).await.expect("one row");
    assert_eq!(done["rows_affected"], 1);
    let opened = call("open_ticket", json!({"id": 100, "title": "fresh", "priority": 2})).await.expect("inserts");
    assert_eq!(opened["rows_affected"], 1);
    for args in [json!({"id": 99, "title": "x", "priority": 2}), json!({"id": 101, "title": "x", "priority": 4})] {
        assert_eq!(code(call("open_ticket", args.clone()).await), DenialCode::InvalidInput, "{args}");
    }
    assert_eq!(
        tickets().await,
        json!([
            [1, "acme", "one"],
            [2, "acme", "two"],
            [3, "globex", "three"],
            [4, "acme", "renamed"],
            [100, "acme", "fresh"]
        ])
    );

    // A write's params pass the amplification guard on each call, before anything runs.
    let before = tickets().await;
    let padded = call("pad_title", json!({"count": 100_000_000, "id": 1})).await.expect_err("over the byte cap");
    assert_eq!(padded.code(), DenialCode::QueryRejected, "{}", padded.message());
    assert_eq!(tickets().await, before, "nothing was changed");

    // Read-only: the write tools are hidden and refused; the reads still run.
    let reader = service(true);
    let names: Vec<String> =
        reader.boundary().visible_tools(reader.session()).iter().map(|tool| tool.name.as_str().to_owned()).collect();
    assert!(
        names.contains(&"my_tickets".to_owned())
            && !names.iter().any(|name| name == "retitle" || name == "open_ticket")
    );
    let refused = reader.call("open_ticket", json!({"id": 200, "title": "x", "priority": 1})).await.expect_err("ro");
    assert_eq!(refused.code(), DenialCode::ReadOnly);
    assert_eq!(tickets().await.as_array().map(Vec::len), Some(5));
}

/// A service over `url` with one connection, allowing `tables` and granting `query_read` and
/// `explain_query`, with `limits` (lines of `[limits]`).
pub fn planning_service(url: &str, tables: &[&str], limits: &str) -> sqlwarden::service::Service {
    let text = format!(
        "[database]\nurl = \"{url}\"\nmax_connections = 1\n[allowlist]\ntables = {tables:?}\n[limits]\n{limits}\n\
         [audit]\npath = \"/dev/null\"\n\
         [[grants]]\ntool = \"query_read\"\n[[grants]]\ntool = \"explain_query\"\n"
    );
    let config = sqlwarden::config::Config::parse(&text, "test", |_| None).expect("config");
    sqlwarden::service::Service::from_config(config).expect("service")
}

/// `explain_query` and the plan guard on a real database holding a shop's `customers` (ids 1 to
/// 3, the first `Ada`) and `orders` (100,000 rows):
/// - `expensive`, a query that would run far longer than its time limit, is planned at once
///   (were it run, the call would end in `TIMEOUT`), with an estimate of more than a million rows;
/// - a query `query_read` refuses is refused by `explain_query` too;
/// - with `[limits] max_plan_rows = 1000`, `query_read` refuses a read of every order with
///   `TOO_EXPENSIVE` before it runs, and runs a read of one customer by its key.
pub async fn exercise_plans(url: &str, dialect: sqlwarden::sql::SqlDialect, expensive: &str) {
    let placeholder = if dialect == sqlwarden::sql::SqlDialect::Postgres { "$1" } else { "?" };
    let tables = ["customers", "orders"];
    let open = planning_service(url, &tables, "");
    let explained = open
        .call("explain_query", json!({"query": expensive, "timeout_ms": 3000}))
        .await
        .unwrap_or_else(|denial| panic!("planned, not run: {denial:?}"))
        .to_value()
        .expect("JSON");
    let rows = explained["rows"].as_f64().expect("a row estimate");
    assert!(rows > 1e6, "{rows} rows estimated for {expensive}: {explained}");
    assert!(!explained["plan"].is_null());
    let keyed = format!("SELECT name FROM customers WHERE id = {placeholder}");
    let one = open.call("explain_query", json!({"query": keyed, "params": [1]})).await.expect("planned");
    assert_eq!(one.to_value().expect("JSON")["rows"], json!(1.0), "one row by its key");
    let refused = open.call("explain_query", json!({"query": "SELECT * FROM secrets"})).await.expect_err("gate");
    assert_eq!(refused.code(), DenialCode::QueryRejected);

    let guarded = planning_service(url, &tables, "max_plan_rows = 1000");
    let refused = guarded.call("query_read", json!({"query": "SELECT id FROM orders"})).await.expect_err("too many");
    assert_eq!(refused.code(), DenialCode::TooExpensive, "{}", refused.message());
    assert!(refused.message().contains("max_plan_rows (1000)"), "{}", refused.message());
    let read = guarded.call("query_read", json!({"query": keyed, "params": [1]})).await.expect("one row");
    assert_eq!(read.to_value().expect("JSON")["rows"], json!([["Ada"]]));
}
