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
