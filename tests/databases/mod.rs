//! Real databases for the integration tests: each test gets a database of its own, created
//! here and dropped afterwards, even when the test fails.
//!
//! Without a server the tests say they were skipped and pass, unless `SQLWARDEN_REQUIRE_DB=1`
//! (set by `.ci/run`), which makes a missing server a failure.
#![allow(dead_code)]

use std::sync::Arc;

use serde_json::Value;
use sqlwarden::adapter::Adapter;
use sqlwarden::audit::JsonLinesSink;
use sqlwarden::policy::{Capabilities, Grant, SessionContext, ToolRegistry};
use sqlwarden::sql::{AllowList, SqlValidator};
use sqlwarden::tools::reference::{DescribeTable, ListTables, QueryRead, ReadLimits};
use sqlwarden::{Boundary, Denial};

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
}

impl Service {
    pub fn new(adapter: Arc<dyn Adapter>, allow: AllowList, limits: ReadLimits) -> Self {
        let mut tools = ToolRegistry::new();
        tools.register(QueryRead::new(Arc::clone(&adapter), SqlValidator::new(allow), limits)).expect("registers");
        tools.register(ListTables::new(Arc::clone(&adapter))).expect("registers");
        tools.register(DescribeTable::new(adapter)).expect("registers");
        let grants = ["query_read", "list_tables", "describe_table"]
            .map(|tool| Grant::new(IDENTITY, TENANT, tool).expect("valid grant"));
        let boundary = Boundary::builder(tools)
            .authorizer(Capabilities::from_grants(grants))
            .audit(JsonLinesSink::new(std::io::sink()))
            .build();
        let session = Arc::new(SessionContext::builder().identity(IDENTITY).tenant(TENANT).bind().expect("valid"));
        Service { boundary, session }
    }

    pub async fn call(&self, tool: &str, args: Value) -> Result<Value, Denial> {
        self.boundary.invoke(Some(Arc::clone(&self.session)), tool, args).await
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
}

impl Relay {
    pub async fn start(port: u16, target: String) -> Relay {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await.expect("bind");
        let port = listener.local_addr().expect("address").port();
        let connections = Arc::new(tokio::sync::Mutex::new(tokio::task::JoinSet::new()));
        let relayed = Arc::clone(&connections);
        let accept = tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                let target = target.clone();
                relayed.lock().await.spawn(async move {
                    if let Ok(mut outbound) = tokio::net::TcpStream::connect(target).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
            }
        });
        Relay { port, accept: Some(accept), connections }
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
        use std::io::BufRead;
        use std::process::{Command, Stdio};
        let mut child = Command::new(env!("CARGO_BIN_EXE_sqlwarden"))
            .arg("serve")
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
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return status.code();
            }
            if std::time::Instant::now() > deadline {
                let _ = self.child.kill();
                return None;
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
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
