// The happy path compiles from outside the crate: a custom adapter and custom tools, driven
// through every stage by hand and through `Boundary::invoke`.
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use futures_util::future::BoxFuture;
use serde_json::json;
use sqlwarden::adapter::{
    Adapter, AdapterError, Executed, Posture, QueryResult, ReadOptions, ResultColumn, SqlValue, TableDescription, TableSummary, WriteOptions, WriteTransaction,
};
use sqlwarden::sql::{SqlDialect, ValidatedQuery};
use sqlwarden::audit::JsonLinesSink;
use sqlwarden::ToolRegistry;
use sqlwarden::policy::{Capabilities, Grant, Mode, SessionContext};
use sqlwarden::tools::{WriteTool, WriteTx};
use sqlwarden::{Boundary, Denial, DenialCode, Evidence, Read, Tool, ToolError, Write};

#[derive(Default)]
struct Memory {
    rows: AtomicU64,
}

struct Insert<'a>(&'a Memory, u64);

impl<'a> WriteTransaction<'a> for Insert<'a> {
    fn execute<'s>(&'s mut self, _statement: &'static str, _params: &'s [SqlValue], _row_cap: u64) -> BoxFuture<'s, Result<Executed, AdapterError>> {
        self.1 += 1;
        Box::pin(async { Ok(Executed { rows_affected: 1, ..Executed::default() }) })
    }
    fn commit(self: Box<Self>) -> BoxFuture<'a, Result<(), AdapterError>> {
        self.0.rows.fetch_add(self.1, Ordering::SeqCst);
        Box::pin(async { Ok(()) })
    }
    fn rollback(self: Box<Self>) -> BoxFuture<'a, Result<(), AdapterError>> {
        Box::pin(async { Ok(()) })
    }
}

impl Adapter for Memory {
    fn dialect(&self) -> SqlDialect {
        SqlDialect::Sqlite
    }
    fn query_read<'a>(&'a self, _: Evidence<'a, Read>, query: &'a ValidatedQuery, _: &'a [SqlValue], _: ReadOptions) -> BoxFuture<'a, Result<QueryResult, AdapterError>> {
        let columns = vec![ResultColumn { name: query.sql().into(), data_type: "text".into() }];
        Box::pin(async move { Ok(QueryResult { columns, rows: Default::default(), truncated: false }) })
    }
    fn list_tables<'a>(&'a self, _: Evidence<'a, Read>, _: Option<&'a str>) -> BoxFuture<'a, Result<Vec<TableSummary>, AdapterError>> {
        Box::pin(async { Ok(vec![TableSummary { schema: "main".into(), name: "customers".into(), kind: "table".into() }]) })
    }
    fn describe_table<'a>(&'a self, _: Evidence<'a, Read>, _: Option<&'a str>, _: &'a str) -> BoxFuture<'a, Result<TableDescription, AdapterError>> {
        Box::pin(async { Err(AdapterError::of_kind(sqlwarden::adapter::AdapterErrorKind::NotVisible)) })
    }
    fn posture<'a>(&'a self, _: Evidence<'a, Read>) -> BoxFuture<'a, Result<Posture, AdapterError>> {
        Box::pin(async { Ok(Posture { role: "memory".into(), findings: Vec::new() }) })
    }
    fn begin_write<'a>(&'a self, _: Evidence<'a, Write>, _: WriteOptions) -> BoxFuture<'a, Result<Box<dyn WriteTransaction<'a> + 'a>, AdapterError>> {
        Box::pin(async move { Ok(Box::new(Insert(self, 0)) as Box<dyn WriteTransaction<'a> + 'a>) })
    }
}

struct ListTables(Arc<Memory>);
struct AddCustomer(Arc<Memory>);

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct NewCustomer {
    name: String,
}

impl Tool for ListTables {
    type Access = Read;
    type Input = serde_json::Map<String, serde_json::Value>;
    type Output = Vec<TableSummary>;
    fn name(&self) -> &str {
        "list_tables"
    }
    fn description(&self) -> &str {
        "Lists tables."
    }
    async fn call(&self, evidence: Evidence<'_, Read>, _: Self::Input) -> Result<Vec<TableSummary>, ToolError> {
        Ok(self.0.list_tables(evidence, None).await?)
    }
}

impl WriteTool for AddCustomer {
    type Input = NewCustomer;
    type Output = u64;
    const MAX_AFFECTED_ROWS: u64 = 1;
    fn name(&self) -> &str {
        "add_customer"
    }
    fn description(&self) -> &str {
        "Adds a customer."
    }
    fn database(&self) -> &dyn Adapter {
        &*self.0
    }
    async fn call(&self, tx: &mut WriteTx<'_>, input: NewCustomer) -> Result<u64, ToolError> {
        if input.name.is_empty() {
            return Err(Denial::new(DenialCode::InvalidInput, "name must not be empty").into());
        }
        let inserted = tx.execute("INSERT INTO customers (name) VALUES (?)", &[SqlValue::Text(input.name)]).await?;
        // Committed by sqlwarden once this returns Ok.
        Ok(inserted.rows_affected)
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let db = Arc::new(Memory::default());
    let mut tools = ToolRegistry::new();
    tools.register(ListTables(Arc::clone(&db)))?;
    tools.register(AddCustomer(Arc::clone(&db)))?;
    let boundary = Boundary::builder(tools)
        .mode(Mode::ReadWrite)
        .authorizer(Capabilities::from_grants([Grant::new("ada", "acme", "list_tables")?, Grant::new("ada", "acme", "add_customer")?]))
        .audit(JsonLinesSink::new(std::io::sink()))
        .build();
    let session = Arc::new(SessionContext::builder().identity("ada").tenant("acme").bind()?);

    // Every stage by hand, in order.
    let admitted = boundary
        .invocation(Some(Arc::clone(&session)), "list_tables", json!({}))
        .resolve()?
        .check_mode()?
        .authorize()?
        .admit()
        .await?;
    let listed = admitted.run().await?;
    assert_eq!(listed.to_value()?[0]["name"], "customers");

    // The one-call entry point.
    assert_eq!(boundary.invoke(Some(Arc::clone(&session)), "add_customer", json!({"name": "Bob"})).await?.as_json(), "1");
    assert_eq!(db.rows.load(Ordering::SeqCst), 1);
    let refused = boundary.invoke(Some(session), "add_customer", json!({"name": ""})).await;
    assert_eq!(refused.map_err(|d| d.code()), Err(DenialCode::InvalidInput));
    Ok(())
}
