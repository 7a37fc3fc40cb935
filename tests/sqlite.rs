//! The SQLite adapter on real database files, through the reference tools and the boundary.
#![cfg(feature = "sqlite")]

mod databases;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use databases::{Service, unique_suffix};
use serde_json::{Value, json};
use sqlwarden::DenialCode;
use sqlwarden::adapter::sqlite::SqliteAdapter;
use sqlwarden::sql::{AllowList, SqlDialect};
use sqlwarden::tools::reference::ReadLimits;

/// A database file of the test's own, removed afterwards.
struct TestFile(PathBuf);

impl TestFile {
    fn create(fixture: &str) -> TestFile {
        let path = std::env::temp_dir().join(format!("sqlwarden-test-{}.db", unique_suffix()));
        let connection = rusqlite::Connection::open(&path).expect("create");
        connection.execute_batch(fixture).expect("fixture");
        TestFile(path)
    }

    fn url(&self) -> String {
        format!("sqlite:{}", self.0.display())
    }
}

impl Drop for TestFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

const SHOP: &str = "
    CREATE TABLE customers (id INTEGER PRIMARY KEY, name TEXT NOT NULL, email VARCHAR(200) UNIQUE, score REAL DEFAULT 0.5);
    CREATE TABLE orders (id INTEGER PRIMARY KEY, customer_id INTEGER NOT NULL REFERENCES customers (id), total NUMERIC);
    CREATE INDEX orders_by_customer ON orders (customer_id, total);
    CREATE TABLE secrets (id INTEGER PRIMARY KEY, value TEXT);
    CREATE VIEW big_spenders AS SELECT c.name, sum(o.total) AS spent FROM customers c JOIN orders o ON o.customer_id = c.id GROUP BY c.name;
    INSERT INTO customers (id, name, email) VALUES (1, 'Ada', 'ada@example.com'), (2, 'Grace', NULL), (3, 'Linus', 'l@example.com');
    WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 100000)
        INSERT INTO orders SELECT i, 1 + i % 3, (i % 1000) / 8.0 FROM n;
    INSERT INTO secrets VALUES (1, 'hunter2');
    CREATE TABLE types (i INTEGER, big INTEGER, r REAL, t TEXT, b BLOB, n TEXT);
    INSERT INTO types VALUES (-7, 9223372036854775807, 1.5, 'héllo', x'00ff41', NULL);
";

fn allow() -> AllowList {
    AllowList::new(SqlDialect::Sqlite, "main")
        .table("main", "customers")
        .table("main", "orders")
        .table("main", "big_spenders")
        .table("main", "types")
}

fn service(file: &TestFile, limits: ReadLimits) -> Service {
    let adapter = SqliteAdapter::open(&file.url(), allow(), 2).expect("opens");
    Service::new(Arc::new(adapter), allow(), limits)
}

fn refusal(result: Result<Value, sqlwarden::Denial>) -> (DenialCode, String) {
    let denial = result.expect_err("refused");
    (denial.code(), denial.message().to_owned())
}

const FOREVER: &str = "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) SELECT count(*) FROM c";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_return_rows_and_stop_exactly_at_the_limit() {
    let file = TestFile::create(SHOP);
    let service = service(&file, ReadLimits::default());
    for (limit, rows, truncated) in [(2, 2, true), (3, 3, false), (4, 3, false)] {
        let result = service.read(json!({"query": "SELECT id, name FROM customers ORDER BY id", "limit": limit})).await;
        assert_eq!(result["row_count"], json!(rows), "limit {limit}");
        assert_eq!(result["truncated"], json!(truncated), "limit {limit}");
    }
    let all = service.read(json!({"query": "SELECT * FROM orders"})).await;
    assert_eq!((all["row_count"].clone(), all["truncated"].clone()), (json!(100), json!(true)));
    let first = service.read(json!({"query": "SELECT id, name FROM customers WHERE id = ?", "params": [1]})).await;
    assert_eq!(first["rows"], json!([[1, "Ada"]]));
    assert_eq!(first["columns"], json!([{"name": "id", "type": "integer"}, {"name": "name", "type": "text"}]));
    let through_view = service.read(json!({"query": "SELECT name FROM big_spenders ORDER BY name"})).await;
    assert_eq!(through_view["row_count"], json!(3), "an allowed view reads its tables");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn values_come_back_as_faithful_json() {
    let file = TestFile::create(SHOP);
    let service = service(&file, ReadLimits::default());
    let result = service.read(json!({"query": "SELECT * FROM types"})).await;
    assert_eq!(result["rows"], json!([[-7, "9223372036854775807", 1.5, "héllo", "AP9B", null]]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_query_past_its_timeout_is_stopped() {
    let file = TestFile::create(SHOP);
    let service = service(&file, ReadLimits::default());
    let started = Instant::now();
    let (code, _) = refusal(service.call("query_read", json!({"query": FOREVER, "timeout_ms": 300})).await);
    assert_eq!(code, DenialCode::Timeout);
    assert!(started.elapsed() < Duration::from_secs(5), "{:?}", started.elapsed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_call_stops_its_statement_and_frees_the_connection() {
    let file = TestFile::create(SHOP);
    let adapter = SqliteAdapter::open(&file.url(), allow(), 1).expect("opens");
    let service = Service::new(Arc::new(adapter), allow(), ReadLimits::default());
    let call = service.call("query_read", json!({"query": FOREVER, "timeout_ms": 30000}));
    assert!(tokio::time::timeout(Duration::from_millis(300), call).await.is_err(), "still running when dropped");
    // One connection only: the next call gets it only if the dropped statement stopped.
    let next = service.call("query_read", json!({"query": "SELECT count(*) FROM customers", "timeout_ms": 2000}));
    assert_eq!(next.await.expect("the connection was freed")["rows"], json!([[3]]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_result_over_the_byte_cap_is_refused() {
    let file = TestFile::create(SHOP);
    let service = service(&file, ReadLimits { max_result_bytes: 1000, ..ReadLimits::default() });
    let (code, message) =
        refusal(service.call("query_read", json!({"query": "SELECT * FROM orders", "limit": 1000})).await);
    assert_eq!(code, DenialCode::ResultTooLarge);
    assert!(message.contains("1000 bytes"), "{message}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn introspection_shows_allowed_tables_as_the_catalog_describes_them() {
    let file = TestFile::create(SHOP);
    let service = service(&file, ReadLimits::default());
    let listed = service.call("list_tables", json!({})).await.expect("listed");
    assert_eq!(
        listed["tables"],
        json!([
            {"schema": "main", "name": "big_spenders", "kind": "view"},
            {"schema": "main", "name": "customers", "kind": "table"},
            {"schema": "main", "name": "orders", "kind": "table"},
            {"schema": "main", "name": "types", "kind": "table"},
        ])
    );
    let described = service.call("describe_table", json!({"table": "ORDERS"})).await.expect("described");
    assert_eq!(described["name"], json!("orders"));
    assert_eq!(described["primary_key"], json!(["id"]));
    assert_eq!(
        described["foreign_keys"],
        json!([{"name": "orders_fk0", "columns": ["customer_id"], "referenced_schema": "main",
                "referenced_table": "customers", "referenced_columns": ["id"]}])
    );
    assert_eq!(
        described["indexes"],
        json!([{"name": "orders_by_customer", "columns": ["customer_id", "total"], "unique": false}])
    );
    let customers = service.call("describe_table", json!({"table": "customers"})).await.expect("described");
    assert_eq!(
        customers["columns"],
        json!([
            {"name": "id", "type": "integer", "nullable": true, "default": null, "comment": null},
            {"name": "name", "type": "text", "nullable": false, "default": null, "comment": null},
            {"name": "email", "type": "varchar(200)", "nullable": true, "default": null, "comment": null},
            {"name": "score", "type": "real", "nullable": true, "default": "0.5", "comment": null},
        ])
    );
    assert_eq!(customers["indexes"][0]["unique"], json!(true), "the UNIQUE constraint's index");
    for hidden in [json!({"table": "secrets"}), json!({"table": "sqlite_schema"}), json!({"table": "nowhere"})] {
        let (code, message) = refusal(service.call("describe_table", hidden.clone()).await);
        assert_eq!((code, message.as_str()), (DenialCode::QueryRejected, "no such table, or not allowed"), "{hidden}");
    }
    let other = service.call("list_tables", json!({"schema": "temp"})).await.expect("listed");
    assert_eq!(other["tables"], json!([]));
}

#[test]
fn a_missing_file_is_refused_at_open_without_naming_it() {
    let missing = std::env::temp_dir().join(format!("sqlwarden-missing-{}.db", unique_suffix()));
    let error = SqliteAdapter::open(&format!("sqlite:{}", missing.display()), allow(), 1).expect_err("refused");
    let shown = format!("{error} {:?}", error.denial());
    assert!(shown.contains("cannot be opened") && !shown.contains("sqlwarden-missing"), "{shown}");
    assert!(!missing.exists(), "opening read-only never creates the file");
    assert!(SqliteAdapter::open("postgres://x", allow(), 1).is_err());
}

impl databases::LedgerProbe for TestFile {
    async fn state(&mut self) -> (i64, i64) {
        let connection = rusqlite::Connection::open(&self.0).expect("open");
        connection
            .query_row("SELECT count(*), count(*) FILTER (WHERE note LIKE '%!') FROM ledger", [], |row| {
                Ok((row.get(0)?, row.get(1)?))
            })
            .expect("ledger state")
    }

    /// 1 while another connection holds the write lock.
    async fn open_transactions(&mut self) -> i64 {
        let connection = rusqlite::Connection::open(&self.0).expect("open");
        match connection.execute_batch("BEGIN IMMEDIATE; ROLLBACK") {
            Ok(()) => 0,
            Err(_busy) => 1,
        }
    }
}

#[tokio::test]
async fn write_tools_commit_exactly_what_they_declare_and_nothing_else() {
    let mut file = TestFile::create(
        "CREATE TABLE ledger (id INTEGER PRIMARY KEY, note TEXT NOT NULL);
         INSERT INTO ledger (note) VALUES ('a'), ('b'), ('c');",
    );
    let adapter =
        SqliteAdapter::open(&file.url(), AllowList::new(SqlDialect::Sqlite, "main"), 2).expect("opens the file");
    databases::exercise_write_tools(Arc::new(adapter), &mut file).await;
}

/// Every value a read makes or reads is capped at `max_result_bytes` by SQLite itself
/// (`SQLITE_LIMIT_LENGTH`): a stored value or a built one over the cap is refused as it is
/// made, even when what the query returns of it is small; a value under it is read.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_value_over_the_byte_cap_is_refused_by_the_engine_even_when_the_result_is_small() {
    let file = TestFile::create(
        "CREATE TABLE customers (id INTEGER PRIMARY KEY, name TEXT NOT NULL, email TEXT, score REAL);
         CREATE TABLE orders (id INTEGER PRIMARY KEY, customer_id INTEGER, total NUMERIC);
         CREATE TABLE types (i INTEGER, b BLOB);
         CREATE VIEW big_spenders AS SELECT 1 AS name;
         INSERT INTO customers VALUES (1, printf('%.*c', 600000, 'a'), NULL, 0), (2, 'Grace', NULL, 0);
         WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 10000)
             INSERT INTO orders SELECT i, 2, printf('%.*c', 100, 'x') FROM n;",
    );
    let service = service(&file, ReadLimits { max_result_bytes: 500_000, ..ReadLimits::default() });
    for query in
        ["SELECT substr(name, 1, 3) FROM customers WHERE id = 1", "SELECT length(group_concat(total)) FROM orders"]
    {
        let (code, message) = refusal(service.call("query_read", json!({"query": query})).await);
        assert_eq!(code, DenialCode::ResultTooLarge, "{query}: {message}");
    }
    let read = service.read(json!({"query": "SELECT substr(name, 1, 3) FROM customers WHERE id = 2"})).await;
    assert_eq!(read["rows"], json!([["Gra"]]));
    let under = service.read(json!({"query": "SELECT length(group_concat(total)) FROM orders WHERE id <= 4000"})).await;
    assert_eq!(under["rows"], json!([[4000 * 101 - 1]]));
}

/// SQLite's table-valued JSON functions, which the gate lets into FROM, run end to end.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn table_valued_json_functions_run_end_to_end() {
    let file = TestFile::create(SHOP);
    let service = service(&file, ReadLimits::default());
    let each = service.read(json!({"query": "SELECT key, value FROM json_each('[10, 20]') ORDER BY key"})).await;
    assert_eq!(each["rows"], json!([[0, 10], [1, 20]]));
    let joined = service
        .read(json!({"query": "SELECT c.id, j.value FROM customers AS c, json_each(json_array(c.id, c.name)) AS j \
                               WHERE c.id = 1 ORDER BY j.key"}))
        .await;
    assert_eq!(joined["rows"], json!([[1, 1], [1, "Ada"]]));
    let tree = service.read(json!({"query": "SELECT count(*) FROM json_tree('{\"a\": [1, 2]}')"})).await;
    assert_eq!(tree["rows"], json!([[4]]));
}

/// An adapter runs only queries whose tables its own allow-list permits, whatever allow-list
/// the validator that accepted them was built with.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_adapter_refuses_a_query_validated_under_a_wider_allow_list() {
    let file = TestFile::create(SHOP);
    let adapter = SqliteAdapter::open(&file.url(), allow(), 2).expect("opens");
    let wider = allow().table("main", "secrets");
    let service = Service::new(Arc::new(adapter), wider, ReadLimits::default());
    let (code, message) = refusal(service.call("query_read", json!({"query": "SELECT value FROM secrets"})).await);
    assert_eq!(code, DenialCode::QueryRejected, "{message}");
    assert!(message.contains("main.secrets is not in this database's allow-list"), "{message}");
    assert_eq!(service.read(json!({"query": "SELECT count(*) FROM customers"})).await["rows"], json!([[3]]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_read_is_audited_with_its_fingerprint_tables_and_what_it_returned() {
    let file = TestFile::create(SHOP);
    let service = service(&file, ReadLimits::default());
    databases::check_read_records(&service, "customers", "main.customers").await;
}

/// SQLite's own ways to a ruled column: its row id under each of its names (an INTEGER
/// PRIMARY KEY column is the row id), brackets and backquotes, its JSON and string functions.
const SQLITE_COLUMN_BYPASSES: &[&str] = &[
    "SELECT rowid FROM people",
    "SELECT _rowid_ FROM people",
    "SELECT oid FROM people",
    "SELECT p.rowid FROM people p",
    "SELECT [ssn] FROM people",
    "SELECT `ssn` FROM people",
    "SELECT \"SSN\" FROM people",
    "SELECT 'ssn' FROM people",
    "SELECT json_object('s', ssn) AS j FROM people",
    "SELECT group_concat(email) AS g FROM people",
    "SELECT json_group_array(email) AS a FROM people",
    "SELECT id FROM people WHERE email GLOB 'ann*'",
    "SELECT hex(ssn) AS h FROM people",
    "SELECT id FROM people WHERE instr(email, 'ann') > 0",
    "SELECT iif(email LIKE 'a%', 1, 0) AS c FROM people",
    "SELECT id FROM people INDEXED BY sqlite_autoindex_people_1",
];

/// See the PostgreSQL test of the same name.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn column_rules_hold_on_every_way_to_a_column() {
    let file = TestFile::create(databases::PEOPLE);
    let allow = || {
        AllowList::new(SqlDialect::Sqlite, "main").schema("main").columns("main", "people", databases::people_rule())
    };
    let adapter = SqliteAdapter::open(&file.url(), allow(), 2).expect("opens");
    let service = Service::new(Arc::new(adapter), allow(), ReadLimits::default());
    let (accepted, refused) = databases::column_rules_hold(&service, SQLITE_COLUMN_BYPASSES).await;
    assert!(accepted >= 5 && refused >= 70, "accepted {accepted}, refused {refused}");
}

/// A result that fits the byte cap as it is read but not once masked (a hash is 64 hex
/// digits) is refused, as any result over the cap is.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_result_over_the_byte_cap_once_masked_is_refused() {
    let file = TestFile::create(
        "CREATE TABLE people (id INTEGER PRIMARY KEY, email TEXT);
         WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 50)
             INSERT INTO people SELECT i, 'a' FROM n;",
    );
    let rule = sqlwarden::sql::ColumnRule::new().mask("email", sqlwarden::sql::Mask::Hash).expect("rule");
    let allow = || AllowList::new(SqlDialect::Sqlite, "main").schema("main").columns("main", "people", rule.clone());
    let adapter = SqliteAdapter::open(&file.url(), allow(), 2).expect("opens");
    let limits = ReadLimits { max_result_bytes: 1000, ..ReadLimits::default() };
    let service = Service::new(Arc::new(adapter), allow(), limits);
    let raw = service.read(json!({"query": "SELECT id FROM people"})).await;
    assert_eq!(raw["row_count"], json!(50), "the rows fit as they are read");
    let (code, _) = refusal(service.call("query_read", json!({"query": "SELECT email FROM people"})).await);
    assert_eq!(code, DenialCode::ResultTooLarge);
    let few = service.read(json!({"query": "SELECT email FROM people", "limit": 5})).await;
    assert_eq!(few["row_count"], json!(5));
}

#[tokio::test]
async fn declared_tools_bind_typed_params_and_claims_and_cap_their_writes() {
    let file = TestFile::create(databases::TICKETS);
    databases::exercise_declared_tools(&file.url(), SqlDialect::Sqlite).await;
}

/// A declared read runs as `query_read` does: its masked columns leave masked, and its output
/// is marked as rows, for the transports to frame as untrusted data.
#[tokio::test]
async fn a_declared_read_masks_and_is_framed_as_query_read_is() {
    let file = TestFile::create(databases::PEOPLE);
    let config = format!(
        "[database]\nurl = \"{}\"\n[allowlist]\ntables = [\"people\"]\n[audit]\npath = \"/dev/null\"\n\
         [[columns]]\ntable = \"people\"\ndeny = [\"ssn\"]\nmask = {{ phone = \"last4\" }}\n\
         [[tools]]\nname = \"person\"\ndescription = \"One person.\"\naccess = \"read\"\n\
         statement = \"SELECT name, phone FROM people WHERE id = ?\"\n\
         [[tools.params]]\nname = \"id\"\ntype = \"integer\"\n[[grants]]\ntool = \"person\"\n",
        file.url()
    );
    let config = sqlwarden::config::Config::parse(&config, "test", |_| None).expect("config");
    let service = sqlwarden::service::Service::from_config(config).expect("service");
    let output = service.call("person", json!({"id": 1})).await.expect("reads");
    assert!(output.carries_rows(), "framed as untrusted data by the transports");
    assert_eq!(output.to_value().expect("JSON")["rows"], json!([["Ann", "****4321"]]));
}

/// `explain_query` plans without running; the plan guard refuses before running
/// (`exercise_plans`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn explain_query_plans_without_running_and_the_plan_guard_refuses_before_running() {
    let file = TestFile::create(SHOP);
    databases::exercise_plans(&file.url(), SqlDialect::Sqlite, "SELECT count(*) FROM orders a, orders b, orders c")
        .await;
}
