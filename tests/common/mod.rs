//! Counting fakes shared by the runtime tests: they count every side effect so that a test can
//! assert that a denied call caused none.
#![allow(dead_code)]

use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use futures_util::future::BoxFuture;
use serde_json::{Value, json};
use sqlwarden::ToolRegistry;
use sqlwarden::adapter::{
    Adapter, AdapterError, Executed, Posture, QueryResult, ReadOptions, SqlValue, TableDescription, TableSummary,
    WriteOptions, WriteTransaction,
};
use sqlwarden::audit::{AuditBatch, AuditDecision, AuditError, AuditSink, Stage};
use sqlwarden::policy::{
    Admission, AdmitFuture, Authorizer, AuthzRequest, Capabilities, Decision, Grant, ManualClock, Mode, QuotaEngine,
    QuotaPermit, QuotaPolicy, QuotaRequest, SessionContext,
};
use sqlwarden::sql::{SqlDialect, ValidatedQuery};
use sqlwarden::{Boundary, DenialCode, Evidence, Read, Tool, ToolError, Write};

pub const IDENTITY: &str = "analyst@example.com";
pub const TENANT: &str = "acme";

pub fn session() -> Arc<SessionContext> {
    Arc::new(SessionContext::builder().identity(IDENTITY).tenant(TENANT).bind().expect("valid session"))
}

pub fn session_of(identity: &str, tenant: &str) -> Arc<SessionContext> {
    Arc::new(SessionContext::builder().identity(identity).tenant(tenant).bind().expect("valid session"))
}

pub fn grant(tool: &str) -> Grant {
    Grant::new(IDENTITY, TENANT, tool).expect("valid grant")
}

/// Every side effect a call can have, counted.
#[derive(Default)]
pub struct Effects {
    pub handler_runs: AtomicUsize,
    pub adapter_calls: AtomicUsize,
    pub rows_written: AtomicUsize,
    /// Write transactions rolled back, and dropped without commit or rollback.
    pub rollbacks: AtomicUsize,
    pub abandoned: AtomicUsize,
    /// The row cap each write statement was given.
    pub row_caps: Mutex<Vec<u64>>,
    pub authorizer_calls: AtomicUsize,
    pub quota_admits: AtomicUsize,
    pub permits_released: AtomicUsize,
}

impl Effects {
    pub fn handler_runs(&self) -> usize {
        self.handler_runs.load(SeqCst)
    }
    pub fn adapter_calls(&self) -> usize {
        self.adapter_calls.load(SeqCst)
    }
    pub fn rows_written(&self) -> usize {
        self.rows_written.load(SeqCst)
    }
    pub fn rollbacks(&self) -> usize {
        self.rollbacks.load(SeqCst)
    }
    pub fn abandoned(&self) -> usize {
        self.abandoned.load(SeqCst)
    }
    pub fn authorizer_calls(&self) -> usize {
        self.authorizer_calls.load(SeqCst)
    }
    pub fn quota_admits(&self) -> usize {
        self.quota_admits.load(SeqCst)
    }
    pub fn permits_released(&self) -> usize {
        self.permits_released.load(SeqCst)
    }
    /// Everything but the policy checks themselves: what a denied call must never cause.
    pub fn assert_untouched(&self) {
        assert_eq!(self.handler_runs(), 0, "the handler ran");
        assert_eq!(self.adapter_calls(), 0, "the adapter was called");
        assert_eq!(self.rows_written(), 0, "rows were written");
        assert_eq!(self.quota_admits(), 0, "quota was reserved");
    }
}

/// A database stand-in that counts calls and writes.
pub struct CountingAdapter {
    pub effects: Arc<Effects>,
}

impl Adapter for CountingAdapter {
    fn dialect(&self) -> SqlDialect {
        SqlDialect::Sqlite
    }

    fn query_read<'a>(
        &'a self,
        _evidence: Evidence<'a, Read>,
        _query: &'a ValidatedQuery,
        _params: &'a [SqlValue],
        _options: ReadOptions,
    ) -> BoxFuture<'a, Result<QueryResult, AdapterError>> {
        self.effects.adapter_calls.fetch_add(1, SeqCst);
        Box::pin(async { Ok(QueryResult { columns: Vec::new(), rows: Default::default(), truncated: false }) })
    }

    fn list_tables<'a>(
        &'a self,
        _evidence: Evidence<'a, Read>,
        _schema: Option<&'a str>,
    ) -> BoxFuture<'a, Result<Vec<TableSummary>, AdapterError>> {
        self.effects.adapter_calls.fetch_add(1, SeqCst);
        Box::pin(async {
            Ok(vec![TableSummary { schema: "public".into(), name: "customers".into(), kind: "table".into() }])
        })
    }

    fn describe_table<'a>(
        &'a self,
        _evidence: Evidence<'a, Read>,
        _schema: Option<&'a str>,
        _table: &'a str,
    ) -> BoxFuture<'a, Result<TableDescription, AdapterError>> {
        self.effects.adapter_calls.fetch_add(1, SeqCst);
        Box::pin(async { Err(AdapterError::of_kind(sqlwarden::adapter::AdapterErrorKind::NotVisible)) })
    }

    fn posture<'a>(&'a self, _evidence: Evidence<'a, Read>) -> BoxFuture<'a, Result<Posture, AdapterError>> {
        self.effects.adapter_calls.fetch_add(1, SeqCst);
        Box::pin(async { Ok(Posture { role: "counting".into(), findings: Vec::new() }) })
    }

    fn begin_write<'a>(
        &'a self,
        _evidence: Evidence<'a, Write>,
        _options: WriteOptions,
    ) -> BoxFuture<'a, Result<Box<dyn WriteTransaction<'a> + 'a>, AdapterError>> {
        self.effects.adapter_calls.fetch_add(1, SeqCst);
        let tx = CountingTx { effects: &self.effects, pending: 0, ended: false, lost: false };
        Box::pin(async move { Ok(Box::new(tx) as Box<dyn WriteTransaction<'a> + 'a>) })
    }
}

/// A write transaction that counts: a statement affects as many rows as its `Int` parameter
/// says (1 without one), and fails if a `Text` parameter is "fail"; with one that is "lost",
/// the commit loses its connection.
struct CountingTx<'a> {
    effects: &'a Effects,
    pending: usize,
    ended: bool,
    lost: bool,
}

impl<'a> WriteTransaction<'a> for CountingTx<'a> {
    fn execute<'s>(
        &'s mut self,
        _statement: &'static str,
        params: &'s [SqlValue],
        row_cap: u64,
    ) -> BoxFuture<'s, Result<Executed, AdapterError>> {
        self.effects.row_caps.lock().expect("not poisoned").push(row_cap);
        self.lost |= params.iter().any(|param| *param == SqlValue::Text("lost".into()));
        let fails = params.iter().any(|param| *param == SqlValue::Text("fail".into()));
        let rows = params.iter().find_map(|param| match param {
            SqlValue::Int(rows) => Some(*rows as u64),
            _ => None,
        });
        Box::pin(async move {
            if fails {
                return Err(AdapterError::of_kind(sqlwarden::adapter::AdapterErrorKind::Database));
            }
            let rows_affected = rows.unwrap_or(1);
            self.pending += rows_affected as usize;
            Ok(Executed { rows_affected, ..Executed::default() })
        })
    }

    fn commit(mut self: Box<Self>) -> BoxFuture<'a, Result<(), AdapterError>> {
        self.ended = true;
        if self.lost {
            return Box::pin(async { Err(AdapterError::of_kind(sqlwarden::adapter::AdapterErrorKind::Connection)) });
        }
        self.effects.rows_written.fetch_add(self.pending, SeqCst);
        Box::pin(async { Ok(()) })
    }

    fn rollback(mut self: Box<Self>) -> BoxFuture<'a, Result<(), AdapterError>> {
        self.ended = true;
        self.effects.rollbacks.fetch_add(1, SeqCst);
        Box::pin(async { Ok(()) })
    }
}

impl Drop for CountingTx<'_> {
    fn drop(&mut self) {
        if !self.ended {
            self.effects.abandoned.fetch_add(1, SeqCst);
        }
    }
}

/// What a test tool does once it runs.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Behaviour {
    Succeed,
    Fail,
    Panic,
    Hang,
}

/// A read tool that lists tables through the adapter.
pub struct ReadTool {
    pub name: &'static str,
    pub adapter: Arc<CountingAdapter>,
    pub behaviour: Behaviour,
}

/// A write tool that inserts rows through a write transaction, then behaves as told.
pub struct InsertTool {
    pub name: &'static str,
    pub adapter: Arc<CountingAdapter>,
    pub max_rows_exceeded_is_ignored: bool,
    pub then: Behaviour,
    pub timeout: Duration,
}

impl InsertTool {
    pub fn new(name: &'static str, adapter: Arc<CountingAdapter>) -> Self {
        InsertTool {
            name,
            adapter,
            max_rows_exceeded_is_ignored: false,
            then: Behaviour::Succeed,
            timeout: Duration::from_secs(5),
        }
    }
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NoInput {}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Customer {
    pub name: String,
    /// How many rows the fake statement affects.
    #[serde(default)]
    pub rows: Option<i64>,
    /// Run the statement a second time.
    #[serde(default)]
    pub twice: bool,
}

async fn behave(behaviour: Behaviour) -> Result<(), ToolError> {
    match behaviour {
        Behaviour::Succeed => Ok(()),
        Behaviour::Fail => Err(ToolError::internal("the tool failed")),
        Behaviour::Panic => panic!("the tool panicked"),
        Behaviour::Hang => std::future::pending().await,
    }
}

impl Tool for ReadTool {
    type Access = Read;
    type Input = NoInput;
    type Output = Value;

    fn name(&self) -> &str {
        self.name
    }
    fn description(&self) -> &str {
        "lists tables"
    }
    async fn call(&self, evidence: Evidence<'_, Read>, _input: NoInput) -> Result<Value, ToolError> {
        self.adapter.effects.handler_runs.fetch_add(1, SeqCst);
        behave(self.behaviour).await?;
        let tables = self.adapter.list_tables(evidence, None).await?;
        Ok(json!({ "tables": tables.len() }))
    }
}

impl sqlwarden::tools::WriteTool for InsertTool {
    type Input = Customer;
    type Output = Value;
    const MAX_AFFECTED_ROWS: u64 = 2;

    fn name(&self) -> &str {
        self.name
    }
    fn description(&self) -> &str {
        "adds a customer"
    }
    fn database(&self) -> &dyn Adapter {
        &*self.adapter
    }
    fn timeout(&self) -> Duration {
        self.timeout
    }
    fn validate(&self, input: &Customer) -> Result<(), sqlwarden::Denial> {
        if input.name.is_empty() {
            return Err(sqlwarden::Denial::new(DenialCode::InvalidInput, "name must not be empty"));
        }
        Ok(())
    }
    async fn call(&self, tx: &mut sqlwarden::tools::WriteTx<'_>, input: Customer) -> Result<Value, ToolError> {
        self.adapter.effects.handler_runs.fetch_add(1, SeqCst);
        let mut params = vec![SqlValue::Text(input.name)];
        params.extend(input.rows.map(SqlValue::Int));
        let mut inserted = 0;
        for _ in 0..if input.twice { 2 } else { 1 } {
            match tx.execute("INSERT INTO customers (name) VALUES ($1)", &params).await {
                Ok(executed) => inserted += executed.rows_affected,
                Err(_) if self.max_rows_exceeded_is_ignored => {}
                Err(error) => return Err(error.into()),
            }
        }
        behave(self.then).await?;
        assert_eq!(tx.max_rows(), 2, "the declared maximum");
        Ok(json!({ "inserted": inserted, "counted": tx.rows_affected() }))
    }
}

/// Wraps an authorizer and counts how often it is asked.
pub struct CountingAuthorizer<A> {
    pub inner: A,
    pub effects: Arc<Effects>,
}

impl<A: Authorizer> Authorizer for CountingAuthorizer<A> {
    fn authorize(&self, request: &AuthzRequest<'_>) -> Result<Decision, Box<dyn std::error::Error + Send + Sync>> {
        self.effects.authorizer_calls.fetch_add(1, SeqCst);
        self.inner.authorize(request)
    }
}

/// Wraps a quota gate; counts admissions and releases.
pub struct CountingQuota<Q> {
    pub inner: Q,
    pub effects: Arc<Effects>,
}

struct Release {
    _inner: QuotaPermit,
    effects: Arc<Effects>,
}

impl Drop for Release {
    fn drop(&mut self) {
        self.effects.permits_released.fetch_add(1, SeqCst);
    }
}

impl<Q: Admission> Admission for CountingQuota<Q> {
    fn admit<'a>(&'a self, request: QuotaRequest<'a>) -> AdmitFuture<'a> {
        Box::pin(async move {
            let permit = self.inner.admit(request).await?;
            self.effects.quota_admits.fetch_add(1, SeqCst);
            Ok(QuotaPermit::from_guard(Release { _inner: permit, effects: Arc::clone(&self.effects) }))
        })
    }
}

/// An audit sink that keeps events in memory and can be told to fail.
pub struct MemorySink {
    pub events: Mutex<Vec<Recorded>>,
    /// Batches written so far.
    pub batches: AtomicUsize,
    /// Batches from this index on fail (`usize::MAX`: never).
    pub fail_from: AtomicUsize,
    pub panic: std::sync::atomic::AtomicBool,
}

impl Default for MemorySink {
    fn default() -> Self {
        MemorySink {
            events: Mutex::default(),
            batches: AtomicUsize::new(0),
            fail_from: AtomicUsize::new(usize::MAX),
            panic: std::sync::atomic::AtomicBool::new(false),
        }
    }
}

/// An audit event as recorded, owned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recorded {
    pub timestamp: SystemTime,
    pub session_id: Option<String>,
    pub identity: Option<String>,
    pub tenant: Option<String>,
    pub tool: String,
    pub stage: Stage,
    pub decision: AuditDecision,
    pub code: Option<DenialCode>,
    pub duration: Duration,
    pub rows_affected: Option<u64>,
}

impl MemorySink {
    pub fn events(&self) -> Vec<Recorded> {
        self.events.lock().expect("sink lock").clone()
    }
    pub fn stages(&self) -> Vec<(Stage, AuditDecision, Option<DenialCode>)> {
        self.events().into_iter().map(|e| (e.stage, e.decision, e.code)).collect()
    }
}

impl AuditSink for MemorySink {
    fn record(&self, batch: &AuditBatch<'_>) -> Result<(), AuditError> {
        if self.panic.load(SeqCst) {
            panic!("audit sink panicked");
        }
        if self.batches.fetch_add(1, SeqCst) >= self.fail_from.load(SeqCst) {
            return Err(AuditError::Io(std::io::Error::other("disk full")));
        }
        let mut kept = self.events.lock().expect("sink lock");
        kept.extend(batch.events().map(|e| Recorded {
            timestamp: e.record.timestamp,
            session_id: e.session.map(|s| s.id().to_string()),
            identity: e.session.map(|s| s.identity().to_owned()),
            tenant: e.session.map(|s| s.tenant().to_owned()),
            tool: e.tool.to_owned(),
            stage: e.record.stage,
            decision: e.record.decision,
            code: e.record.code,
            duration: e.record.duration,
            rows_affected: e.record.rows_affected,
        }));
        Ok(())
    }
}

/// A boundary wired with counting fakes: a read tool `list`, a write tool `add_customer`, plus
/// read tools `failing`, `panicking` and `hanging`.
pub struct Harness {
    pub boundary: Boundary,
    pub effects: Arc<Effects>,
    pub audit: Arc<MemorySink>,
    pub clock: Arc<ManualClock>,
}

pub struct Setup {
    pub mode: Mode,
    pub grants: Vec<Grant>,
    pub policy: QuotaPolicy,
    /// Another sink than the harness's `MemorySink` (which then stays empty).
    pub sink: Option<Arc<dyn AuditSink>>,
}

impl Default for Setup {
    fn default() -> Self {
        Setup { mode: Mode::ReadOnly, grants: Vec::new(), policy: QuotaPolicy::default(), sink: None }
    }
}

pub const START: SystemTime = SystemTime::UNIX_EPOCH;

pub fn start() -> SystemTime {
    START + Duration::from_secs(1_800_000_000)
}

impl Harness {
    pub fn new(setup: Setup) -> Self {
        let effects = Arc::new(Effects::default());
        let adapter = Arc::new(CountingAdapter { effects: Arc::clone(&effects) });
        let mut tools = ToolRegistry::new();
        let read = |name, behaviour| ReadTool { name, adapter: Arc::clone(&adapter), behaviour };
        tools.register(read("list", Behaviour::Succeed)).expect("register");
        tools.register(read("failing", Behaviour::Fail)).expect("register");
        tools.register(read("panicking", Behaviour::Panic)).expect("register");
        tools.register(read("hanging", Behaviour::Hang)).expect("register");
        let write = |name, then, ignore, timeout| InsertTool {
            name,
            adapter: Arc::clone(&adapter),
            max_rows_exceeded_is_ignored: ignore,
            then,
            timeout: Duration::from_millis(timeout),
        };
        for tool in [
            write("add_customer", Behaviour::Succeed, false, 5000),
            write("add_then_fail", Behaviour::Fail, false, 5000),
            write("add_then_panic", Behaviour::Panic, false, 5000),
            write("add_then_hang", Behaviour::Hang, false, 100),
            write("add_ignoring_errors", Behaviour::Succeed, true, 5000),
        ] {
            tools.register(tool).expect("register");
        }
        let clock = Arc::new(ManualClock::starting_at(start()));
        let audit = Arc::new(MemorySink::default());
        let sink: Arc<dyn AuditSink> = setup.sink.unwrap_or_else(|| audit.clone());
        let boundary = Boundary::builder(tools)
            .mode(setup.mode)
            .clock(clock.clone())
            .authorizer(CountingAuthorizer {
                inner: Capabilities::from_grants(setup.grants),
                effects: Arc::clone(&effects),
            })
            .quotas(CountingQuota {
                inner: QuotaEngine::with_clock(setup.policy, clock.clone()),
                effects: Arc::clone(&effects),
            })
            .audit(sink)
            .build();
        Harness { boundary, effects, audit, clock }
    }

    pub fn granting(tools: &[&str]) -> Self {
        Harness::new(Setup { grants: tools.iter().map(|t| grant(t)).collect(), ..Setup::default() })
    }

    pub async fn call(
        &self,
        session: &Arc<SessionContext>,
        tool: &str,
        args: Value,
    ) -> Result<Value, sqlwarden::Denial> {
        self.boundary
            .invoke(Some(Arc::clone(session)), tool, args)
            .await
            .map(|output| output.to_value().expect("the output is JSON"))
    }
}
