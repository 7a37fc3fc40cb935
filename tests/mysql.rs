//! The MySQL/MariaDB adapter against a real server, through the reference tools and the
//! boundary. Each backstop is checked from the database's side.
#![cfg(feature = "mysql")]

mod databases;

use std::sync::Arc;
use std::time::{Duration, Instant};

use databases::{Relay, Service, unavailable, unique_suffix};
use mysql_async::prelude::Queryable;
use mysql_async::{Conn, Opts};
use serde_json::{Value, json};
use sqlwarden::DenialCode;
use sqlwarden::adapter::PoolOptions;
use sqlwarden::adapter::mysql::MySqlAdapter;
use sqlwarden::sql::{AllowList, SqlDialect};
use sqlwarden::tools::reference::ReadLimits;

fn admin_url() -> String {
    std::env::var("SQLWARDEN_TEST_MYSQL_URL").unwrap_or_else(|_| "mysql://root@127.0.0.1:3306/test".into())
}

/// A database of the test's own, dropped when the test ends.
struct TestDb {
    name: String,
    admin: Conn,
}

impl TestDb {
    async fn create(fixture: &str) -> Option<TestDb> {
        let opts = Opts::from_url(&admin_url()).expect("admin URL");
        let mut admin = match Conn::new(opts).await {
            Ok(admin) => admin,
            Err(error) => {
                unavailable("MariaDB/MySQL", &error);
                return None;
            }
        };
        let name = format!("sqlwarden_test_{}", unique_suffix());
        admin.query_drop(format!("CREATE DATABASE {name}")).await.expect("create database");
        admin.query_drop(format!("USE {name}")).await.expect("use");
        for statement in fixture.split(";\n").map(str::trim).filter(|s| !s.is_empty()) {
            admin.query_drop(statement).await.unwrap_or_else(|error| panic!("{statement}: {error}"));
        }
        Some(TestDb { name, admin })
    }

    fn url(&self) -> String {
        let admin = admin_url();
        let base = admin.rsplit_once('/').map_or(admin.as_str(), |(base, _)| base);
        format!("{base}/{}", self.name)
    }

    fn allow(&self) -> AllowList {
        AllowList::new(SqlDialect::MySql, &self.name)
            .table(&self.name, "customers")
            .table(&self.name, "orders")
            .table(&self.name, "events")
            .table(&self.name, "types")
    }

    fn service(&self, limits: ReadLimits) -> Service {
        let adapter = MySqlAdapter::connect(&self.url(), self.allow(), PoolOptions::default()).expect("adapter");
        Service::new(Arc::new(adapter), self.allow(), limits)
    }

    /// Statements of this database still running whose text contains `text`.
    async fn running(&mut self, text: &str) -> usize {
        let own = self.admin.id();
        let rows: Vec<(u64, Option<String>)> = self
            .admin
            .exec(
                "SELECT ID, INFO FROM information_schema.PROCESSLIST WHERE DB = ? AND COMMAND IN ('Query', 'Execute')",
                (&self.name,),
            )
            .await
            .expect("processlist");
        rows.into_iter()
            .filter(|(id, info)| *id != u64::from(own) && info.as_deref().is_some_and(|i| i.contains(text)))
            .count()
    }

    async fn gone_within(&mut self, text: &str, within: Duration) -> bool {
        let start = Instant::now();
        while start.elapsed() < within {
            if self.running(text).await == 0 {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        false
    }

    async fn kill_other_connections(&mut self) -> usize {
        let own = self.admin.id();
        let ids: Vec<u64> = self
            .admin
            .exec("SELECT ID FROM information_schema.PROCESSLIST WHERE DB = ?", (&self.name,))
            .await
            .expect("processlist");
        let mut killed = 0;
        for id in ids.into_iter().filter(|id| *id != u64::from(own)) {
            if self.admin.query_drop(format!("KILL {id}")).await.is_ok() {
                killed += 1;
            }
        }
        killed
    }

    async fn count(&mut self, table: &str) -> i64 {
        let count: Option<i64> =
            self.admin.query_first(format!("SELECT count(*) FROM {}.{table}", self.name)).await.expect("count");
        count.unwrap_or(-1)
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        if !admin_statement(format!("DROP DATABASE IF EXISTS {}", self.name)) {
            eprintln!("could not drop test database {}", self.name);
        }
    }
}

/// Runs one statement as the administrator, from a `Drop`; whether it succeeded.
fn admin_statement(sql: String) -> bool {
    let done = databases::block_on_detached(async move {
        let mut admin = Conn::new(Opts::from_url(&admin_url()).expect("url")).await?;
        admin.query_drop(sql).await?;
        admin.disconnect().await
    });
    matches!(done, Some(Ok(())))
}

const SHOP: &str = "
    CREATE TABLE customers (id INT PRIMARY KEY, name VARCHAR(100) NOT NULL, email VARCHAR(200) UNIQUE COMMENT 'where receipts go',
        created_at TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP);
    CREATE TABLE orders (id BIGINT PRIMARY KEY, customer_id INT NOT NULL, total DECIMAL(10,2) NOT NULL,
        KEY orders_by_customer (customer_id, total), CONSTRAINT orders_customer FOREIGN KEY (customer_id) REFERENCES customers (id));
    CREATE TABLE secrets (id INT PRIMARY KEY, value TEXT);
    CREATE TABLE events (id INT AUTO_INCREMENT PRIMARY KEY, note TEXT);
    INSERT INTO customers (id, name, email) VALUES (1, 'Ada', 'ada@example.com'), (2, 'Grace', NULL), (3, 'secret-value', 'x@example.com');
    CREATE TABLE digits (n INT);
    INSERT INTO digits VALUES (0), (1), (2), (3), (4), (5), (6), (7), (8), (9);
    INSERT INTO orders SELECT id, 1 + id % 3, (id % 1000) / 7 FROM (SELECT 1 + a.n + 10 * b.n + 100 * c.n + 1000 * d.n + 10000 * e.n AS id
        FROM digits a, digits b, digits c, digits d, digits e) AS numbers;
    INSERT INTO secrets VALUES (1, 'hunter2');
    CREATE TABLE types (ti TINYINT, i INT, big BIGINT, ubig BIGINT UNSIGNED, d DECIMAL(40,12), f FLOAT, db DOUBLE,
        t VARCHAR(20), c CHAR(3), bin VARBINARY(4), bl BLOB, dt DATE, tm TIME(3), dtm DATETIME(6), ts TIMESTAMP NULL,
        y YEAR, j JSON, e ENUM('sad','happy'), bits BIT(10), n TEXT);
    INSERT INTO types VALUES (-128, 2147483647, 9007199254740993, 18446744073709551615, '-1234567890123456789012345678.000000000001',
        1.5, 0.1, 'héllo \"q\"', 'ab', x'00ff41', x'0102', '2024-02-29', '-838:59:59.5', '2024-02-29 13:45:00.123456',
        '2024-02-29 13:45:00', 2024, '{\"a\": [1, 2]}', 'happy', b'1000000001', NULL);
";

fn refusal(result: Result<Value, sqlwarden::Denial>) -> (DenialCode, String) {
    let denial = result.expect_err("refused");
    (denial.code(), denial.message().to_owned())
}

/// Ten billion rows to count: far longer than any test waits.
const FOREVER: &str = "SELECT count(*) AS n FROM orders AS a, orders AS b WHERE a.total + b.total >= 0";
const FOREVER_MARK: &str = "AS a, ";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_return_rows_in_a_read_only_transaction_and_stop_at_the_limit() {
    let Some(db) = TestDb::create(SHOP).await else { return };
    let service = db.service(ReadLimits::default());
    for (limit, rows, truncated) in [(2, 2, true), (3, 3, false), (4, 3, false), (1, 1, true)] {
        let result = service.read(json!({"query": "SELECT id FROM customers ORDER BY id", "limit": limit})).await;
        assert_eq!(result["row_count"], json!(rows), "limit {limit}");
        assert_eq!(result["truncated"], json!(truncated), "limit {limit}");
    }
    let all = service.read(json!({"query": "SELECT * FROM orders"})).await;
    assert_eq!((all["row_count"].clone(), all["truncated"].clone()), (json!(100), json!(true)));
    let own_limit = service.read(json!({"query": "SELECT id FROM orders LIMIT 5000", "limit": 10})).await;
    assert_eq!((own_limit["row_count"].clone(), own_limit["truncated"].clone()), (json!(10), json!(true)));
    let inner = service.read(json!({"query": "SELECT * FROM (SELECT id FROM orders LIMIT 5000) AS o"})).await;
    assert_eq!(inner["row_count"], json!(100), "a LIMIT inside a subquery does not lift the outer limit");
    let by_id = service.read(json!({"query": "SELECT name FROM customers WHERE id = ?", "params": [1]})).await;
    assert_eq!(by_id["rows"], json!([["Ada"]]));
    // The next call on the same pool still sees the default cap: settings are per call.
    let again = service.read(json!({"query": "SELECT id FROM orders", "limit": 1000})).await;
    assert_eq!(again["row_count"], json!(1000));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_read_leaves_a_transaction_holding_its_tables() {
    let Some(mut db) = TestDb::create(SHOP).await else { return };
    // One connection: the one a failed read returns to the pool is the next one used.
    let one = PoolOptions { max_connections: 1, ..PoolOptions::default() };
    let adapter = MySqlAdapter::connect(&db.url(), db.allow(), one).expect("adapter");
    let limits = ReadLimits { max_result_bytes: 200, ..ReadLimits::default() };
    let service = Service::new(Arc::new(adapter), db.allow(), limits);
    db.admin.query_drop("SET SESSION lock_wait_timeout = 2").await.expect("lock wait timeout");
    let reads = [
        ("SELECT o.id FROM orders AS o JOIN customers AS c ON c.id = o.customer_id LIMIT 1", None),
        // Refused here, after rows of the table arrived.
        ("SELECT * FROM orders", Some(DenialCode::ResultTooLarge)),
        // Refused by the server, once the statement has the table open.
        ("SELECT id FROM customers WHERE id = (SELECT customer_id FROM orders)", Some(DenialCode::DbError)),
    ];
    for (number, (query, expected)) in reads.into_iter().enumerate() {
        let outcome = service.call("query_read", json!({"query": query})).await;
        assert_eq!(outcome.as_ref().err().map(sqlwarden::Denial::code), expected, "{query}: {outcome:?}");
        // A transaction left open would hold its tables' metadata locks, and DDL would wait.
        for table in ["orders", "customers"] {
            let alter = format!("ALTER TABLE {table} ADD COLUMN added_{number} INT");
            let altered = db.admin.query_drop(&alter).await;
            assert!(altered.is_ok(), "after {query}: {alter}: {altered:?}");
        }
        let after = service.read(json!({"query": "SELECT name FROM customers WHERE id = 1"})).await;
        assert_eq!(after["rows"], json!([["Ada"]]), "the connection is usable after {query}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_session_is_read_only_and_fixed() {
    let Some(mut db) = TestDb::create(SHOP).await else { return };
    for statement in [
        "CREATE FUNCTION session_state() RETURNS TEXT READS SQL DATA RETURN CONCAT_WS('|', @@session.sql_mode, \
         @@session.time_zone, @@session.max_statement_time, @@session.sql_select_limit)",
        "CREATE VIEW session_state AS SELECT session_state() AS state",
        "CREATE FUNCTION write_event() RETURNS INT MODIFIES SQL DATA BEGIN INSERT INTO events (note) VALUES ('x'); RETURN 1; END",
        "CREATE VIEW sneaky AS SELECT write_event() AS id",
    ] {
        db.admin.query_drop(statement).await.unwrap_or_else(|error| panic!("{statement}: {error}"));
    }
    let allow = db.allow().table(&db.name, "session_state").table(&db.name, "sneaky");
    let adapter = MySqlAdapter::connect(&db.url(), allow.clone(), PoolOptions::default()).expect("adapter");
    let service = Service::new(Arc::new(adapter), allow, ReadLimits::default());
    let state = service.read(json!({"query": "SELECT * FROM session_state", "timeout_ms": 1500, "limit": 7})).await;
    let state = state["rows"][0][0].as_str().expect("state").to_owned();
    let parts: Vec<&str> = state.split('|').collect();
    assert!(!parts[0].contains("ANSI_QUOTES") && !parts[0].contains("NO_BACKSLASH_ESCAPES"), "{state}");
    assert!(parts[0].contains("STRICT_TRANS_TABLES"), "{state}");
    assert_eq!(parts[1..], ["+00:00", "1.500000", "8"], "{state}");
    // A write that reaches the server inside our transaction is refused by the server.
    let (code, message) = refusal(service.call("query_read", json!({"query": "SELECT * FROM sneaky"})).await);
    assert_eq!(code, DenialCode::DbError);
    assert!(message.contains("read-only"), "{message}");
    assert_eq!(db.count("events").await, 0, "nothing was written");
}

/// What one call leaves on its connection is gone before the next call gets it: here views
/// an operator allow-listed call functions that set a user variable and a session variable.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_call_sees_session_state_an_earlier_call_left() {
    let Some(mut db) = TestDb::create(SHOP).await else { return };
    for statement in [
        "CREATE FUNCTION plant() RETURNS INT NO SQL BEGIN SET @planted = 'left behind'; \
         SET SESSION div_precision_increment = 9; RETURN 1; END",
        "CREATE VIEW plant AS SELECT plant() AS planted",
        "CREATE FUNCTION peek() RETURNS TEXT NO SQL RETURN CONCAT_WS('|', COALESCE(@planted, 'none'), \
         @@session.div_precision_increment, @@session.sql_mode, @@session.time_zone)",
        "CREATE VIEW peek AS SELECT peek() AS seen",
    ] {
        db.admin.query_drop(statement).await.unwrap_or_else(|error| panic!("{statement}: {error}"));
    }
    let allow = db.allow().table(&db.name, "plant").table(&db.name, "peek").table(&db.name, "swapped");
    db.admin.query_drop("CREATE TABLE swapped (planted INT)").await.expect("table");
    // One connection: the next call gets the very connection the planting call used.
    let one = PoolOptions { max_connections: 1, ..PoolOptions::default() };
    let adapter = MySqlAdapter::connect(&db.url(), allow.clone(), one).expect("adapter");
    let service = Service::new(Arc::new(adapter), allow, ReadLimits::default());
    let peek = json!({"query": "SELECT seen FROM peek"});
    let before = service.read(peek.clone()).await["rows"][0][0].as_str().expect("seen").to_owned();
    assert!(before.starts_with("none|4|"), "{before}");
    for _ in 0..3 {
        let planted = service.read(json!({"query": "SELECT planted FROM plant"})).await;
        assert_eq!(planted["rows"], json!([[1]]));
        let seen = service.read(peek.clone()).await["rows"][0][0].as_str().expect("seen").to_owned();
        assert_eq!(seen, before, "the next call saw what the planting call left");
    }
    // A base table read (and learned as one) that becomes a view is known as a view within a
    // second: from then on its reads are followed by a reset too.
    service.read(json!({"query": "SELECT planted FROM swapped"})).await;
    db.admin.query_drop("DROP TABLE swapped").await.expect("drop");
    db.admin.query_drop("CREATE VIEW swapped AS SELECT plant() AS planted").await.expect("view");
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(service.read(json!({"query": "SELECT planted FROM swapped"})).await["rows"], json!([[1]]));
    let seen = service.read(peek.clone()).await["rows"][0][0].as_str().expect("seen").to_owned();
    assert_eq!(seen, before, "the next call saw what the swapped view's function left");
    // (A stored function runs in the sql_mode it was created with; the time zone is the session's.)
    assert_eq!(before.split('|').nth(3), Some("+00:00"), "the session is set again after each reset: {before}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_timed_out_query_is_refused_and_gone_from_the_server() {
    let Some(mut db) = TestDb::create(SHOP).await else { return };
    let service = db.service(ReadLimits::default());
    let started = Instant::now();
    let (code, _) = refusal(service.call("query_read", json!({"query": FOREVER, "timeout_ms": 300})).await);
    assert_eq!(code, DenialCode::Timeout);
    assert!(started.elapsed() < Duration::from_secs(5), "{:?}", started.elapsed());
    assert!(db.gone_within(FOREVER_MARK, Duration::from_secs(1)).await, "the statement still runs");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_call_kills_its_query_on_the_server() {
    let Some(mut db) = TestDb::create(SHOP).await else { return };
    let service = db.service(ReadLimits::default());
    {
        let call = service.call("query_read", json!({"query": FOREVER, "timeout_ms": 30000}));
        tokio::pin!(call);
        let wait = tokio::time::sleep(Duration::from_millis(500));
        tokio::select! {
            _ = &mut call => panic!("the call ended before it was dropped"),
            () = wait => {}
        }
        assert_eq!(db.running(FOREVER_MARK).await, 1, "the statement runs on the server until the call is dropped");
    }
    assert!(db.gone_within(FOREVER_MARK, Duration::from_secs(1)).await, "the statement still runs");
    let next = service.read(json!({"query": "SELECT count(*) FROM customers"})).await;
    assert_eq!(next["rows"], json!([[3]]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn values_come_back_as_faithful_json() {
    let Some(db) = TestDb::create(SHOP).await else { return };
    let service = db.service(ReadLimits::default());
    let result = service.read(json!({"query": "SELECT * FROM types"})).await;
    assert_eq!(
        result["rows"][0],
        json!([
            -128,
            2147483647,
            "9007199254740993",
            "18446744073709551615",
            "-1234567890123456789012345678.000000000001",
            1.5,
            0.1,
            "héllo \"q\"",
            "ab",
            "AP9B",
            "AQI=",
            "2024-02-29",
            "-838:59:59.5",
            "2024-02-29T13:45:00.123456",
            "2024-02-29T13:45:00Z",
            2024,
            "{\"a\": [1, 2]}",
            "happy",
            513,
            null
        ]),
        "MariaDB keeps JSON as text and reports it as text"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn decimals_from_expressions_aggregates_and_literals_are_exact_digits() {
    let Some(db) = TestDb::create(SHOP).await else { return };
    let service = db.service(ReadLimits::default());
    // The server marks a decimal it computed as binary: it is still a number, never base64.
    let result = service
        .read(json!({"query": "SELECT sum(d), avg(d), max(d) * 2, 1.5, CAST(2 AS DECIMAL(5,2)), 0.1 + 0.2, -0.0 FROM types"}))
        .await;
    assert_eq!(
        result["rows"],
        json!([[
            "-1234567890123456789012345678.000000000001",
            "-1234567890123456789012345678.0000000000010000",
            "-2469135780246913578024691356.000000000002",
            "1.5",
            "2.00",
            "0.3",
            "0.0"
        ]])
    );
    let types: Vec<&str> =
        result["columns"].as_array().expect("columns").iter().map(|c| c["type"].as_str().expect("type")).collect();
    assert_eq!(types, ["decimal"; 7]);
    let total = service.read(json!({"query": "SELECT sum(total) FROM orders WHERE id <= 10"})).await;
    assert_eq!(total["rows"], json!([["7.86"]]));
}

/// Valid MySQL the gate once refused: strings with backslashes, `FROM DUAL`, `ROW(…)`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backslash_strings_dual_and_row_values_run_as_written() {
    let Some(db) = TestDb::create(SHOP).await else { return };
    let service = db.service(ReadLimits::default());
    let strings = service
        .read(json!({"query": r"SELECT '\\' AS a, 'it\'s' AS b, 'it''s' AS c, 'x\' UNION SELECT value FROM secrets -- ' AS d FROM DUAL"}))
        .await;
    assert_eq!(strings["rows"], json!([["\\", "it's", "it's", "x' UNION SELECT value FROM secrets -- "]]));
    let row = service.read(json!({"query": "SELECT name FROM customers WHERE ROW(id, name) = ROW(1, 'Ada')"})).await;
    assert_eq!(row["rows"], json!([["Ada"]]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_never_quote_row_values() {
    let Some(db) = TestDb::create(SHOP).await else { return };
    let service = db.service(ReadLimits::default());
    let (code, message) = refusal(service.call("query_read", json!({"query": "SELECT nme FROM customers"})).await);
    assert_eq!(code, DenialCode::DbError);
    assert!(message.contains("Unknown column 'nme'"), "{message}");
    let (code, message) = refusal(
        service.call("query_read", json!({"query": "SELECT id FROM customers WHERE id = ?", "params": [[1]]})).await,
    );
    assert_eq!(code, DenialCode::InvalidInput, "{message}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn introspection_shows_allowed_tables_as_the_catalog_describes_them() {
    let Some(db) = TestDb::create(SHOP).await else { return };
    let service = db.service(ReadLimits::default());
    let listed = service.call("list_tables", json!({})).await.expect("listed");
    let names: Vec<&str> =
        listed["tables"].as_array().expect("tables").iter().map(|t| t["name"].as_str().expect("name")).collect();
    assert_eq!(names, ["customers", "events", "orders", "types"], "never secrets");
    let described = service.call("describe_table", json!({"table": "orders"})).await.expect("described");
    assert_eq!(described["primary_key"], json!(["id"]));
    assert_eq!(
        described["foreign_keys"],
        json!([{"name": "orders_customer", "columns": ["customer_id"], "referenced_schema": db.name,
                "referenced_table": "customers", "referenced_columns": ["id"]}])
    );
    assert_eq!(
        described["indexes"],
        json!([{"name": "orders_by_customer", "columns": ["customer_id", "total"], "unique": false},
               {"name": "PRIMARY", "columns": ["id"], "unique": true}])
    );
    let customers = service.call("describe_table", json!({"table": "CUSTOMERS"})).await.expect("described");
    assert_eq!(
        customers["columns"][2],
        json!({"name": "email", "type": "varchar(200)", "nullable": true, "default": "NULL", "comment": "where receipts go"})
    );
    for hidden in
        [json!({"table": "secrets"}), json!({"table": "nowhere"}), json!({"schema": "mysql", "table": "user"})]
    {
        let (code, message) = refusal(service.call("describe_table", hidden.clone()).await);
        assert_eq!((code, message.as_str()), (DenialCode::QueryRejected, "no such table, or not allowed"), "{hidden}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_connections_are_replaced() {
    let Some(mut db) = TestDb::create(SHOP).await else { return };
    let service = db.service(ReadLimits::default());
    let query = json!({"query": "SELECT count(*) FROM customers"});
    let calls: Vec<_> = (0..4).map(|_| service.call("query_read", query.clone())).collect();
    for result in futures_util::future::join_all(calls).await {
        assert_eq!(result.expect("read")["rows"], json!([[3]]));
    }
    assert!(db.kill_other_connections().await >= 1);
    for _ in 0..6 {
        assert_eq!(service.read(query.clone()).await["rows"], json!([[3]]), "the next calls succeed");
    }
}

#[test]
fn a_bad_url_is_refused_without_echoing_it() {
    let allow = AllowList::new(SqlDialect::MySql, "app");
    for url in ["mysql://user:hunter2@host:notaport/app", "mysql://user:hunter2@host/", "mariadb://user:hunter2@host"] {
        let error = MySqlAdapter::connect(url, allow.clone(), PoolOptions::default()).expect_err("refused");
        let shown = format!("{error} {:?}", error.denial());
        assert!(!shown.contains("hunter2") && !shown.contains("host"), "{shown}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_is_never_downgraded_nor_unverified() {
    let allow = AllowList::new(SqlDialect::MySql, "app");
    for url in
        ["mysql://u@h/app?require_ssl=true&verify_ca=false", "mysql://u@h/app?require_ssl=true&verify_identity=false"]
    {
        let error = MySqlAdapter::connect(url, allow.clone(), PoolOptions::default()).expect_err("refused");
        assert!(error.to_string().contains("verification cannot be turned off"), "{error}");
    }
    for url in [
        "mysql://u@127.0.0.1/app?sslrootcert=/ca.pem",
        "mysql://u@db.example/app?sslrootcert=/ca.pem&require_ssl=false",
    ] {
        let error = MySqlAdapter::connect(url, allow.clone(), PoolOptions::default()).expect_err("refused");
        assert!(error.to_string().contains("sslrootcert needs TLS"), "{url}: {error}");
    }

    // Required TLS is never given up: a server without TLS (as on this project's CI machine),
    // or one whose certificate does not name 127.0.0.1, is refused, not used in plain text.
    let Some(db) = TestDb::create(SHOP).await else { return };
    let url = format!("{}?require_ssl=true", db.url());
    let adapter = MySqlAdapter::connect(&url, db.allow(), PoolOptions::default()).expect("adapter");
    let service = Service::new(Arc::new(adapter), db.allow(), ReadLimits::default());
    let (code, _) = refusal(service.call("query_read", json!({"query": "SELECT count(*) FROM customers"})).await);
    assert_eq!(code, DenialCode::DbError);
}

/// A database on another machine (here, this machine's own non-loopback address, relayed to
/// the server) is reached only over verified TLS unless the URL says `require_ssl=false`; then
/// it works, and `sqlwarden check` reports it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_on_another_machine_is_not_reached_in_plain_text_unless_asked() {
    let Some(db) = TestDb::create(SHOP).await else { return };
    let Some(address) = databases::another_machine() else { return };
    let target = databases::host_of(&db.url(), "127.0.0.1:3306");
    let relay = Relay::start_on(address, 0, target.clone()).await;
    let remote = db.url().replace(&target, &format!("{address}:{}", relay.port));
    let query = json!({"query": "SELECT count(*) FROM customers"});
    let connect = |url: String| {
        let adapter = MySqlAdapter::connect(&url, db.allow(), PoolOptions::default()).expect("adapter");
        Service::new(Arc::new(adapter), db.allow(), ReadLimits::default())
    };
    // The server offers no TLS (or a certificate that does not name this address): refused.
    let (code, _) = refusal(connect(remote.clone()).call("query_read", query.clone()).await);
    assert_eq!(code, DenialCode::DbError);
    assert!(relay.accepted.load(std::sync::atomic::Ordering::SeqCst) > 0, "it did try the server");
    // Plain text asked for by name: it works, and check says so.
    let plain = format!("{remote}?require_ssl=false");
    assert_eq!(connect(plain.clone()).read(query.clone()).await["rows"], json!([[3]]));
    let config = format!(
        "[database]\nurl = \"{plain}\"\n[allowlist]\nschemas = [\"{}\"]\ntables = [\"customers\"]\n\
         [audit]\npath = \"/dev/null\"\n",
        db.name
    );
    let config = sqlwarden::config::Config::parse(&config, "test.toml", |_| None).expect("valid");
    let checked = sqlwarden::service::check(config).await.expect("checked");
    assert!(
        checked.posture.findings.iter().any(|finding| finding.contains("unencrypted")),
        "{:?}",
        checked.posture.findings
    );
    // On this machine, plain text stays the default.
    assert_eq!(connect(db.url()).read(query).await["rows"], json!([[3]]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_that_is_down_is_a_prompt_error_and_calls_recover_when_it_returns() {
    let Some(db) = TestDb::create(SHOP).await else { return };
    let url = db.url();
    let target = databases::host_of(&url, "127.0.0.1:3306");
    let mut relay = Relay::start(0, target.clone()).await;
    // mysql_async would otherwise move a loopback connection to the server's Unix socket,
    // around the relay.
    let relayed = format!("{}?prefer_socket=false", url.replace(&target, &format!("127.0.0.1:{}", relay.port)));
    let options = PoolOptions { max_connections: 4, connect_timeout: Duration::from_secs(2), ..PoolOptions::default() };
    let adapter = MySqlAdapter::connect(&relayed, db.allow(), options).expect("adapter");
    let service = Service::new(Arc::new(adapter), db.allow(), ReadLimits::default());
    let query = json!({"query": "SELECT count(*) FROM customers"});
    assert_eq!(service.read(query.clone()).await["rows"], json!([[3]]));
    databases::assert_down_and_back(&service, &mut relay, target, query, "mysql://").await;
}

/// A user of the test's own, dropped when the test ends.
struct TestUser(String);

impl Drop for TestUser {
    fn drop(&mut self) {
        admin_statement(format!("DROP USER IF EXISTS '{}'@'%'", self.0));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_reports_what_the_user_may_do_beyond_reading() {
    let user = TestUser(format!("sqlwarden_reader_{}", unique_suffix()));
    let Some(mut db) = TestDb::create(SHOP).await else { return };
    db.admin.query_drop(format!("CREATE USER '{}'@'%'", user.0)).await.expect("user");
    db.admin.query_drop(format!("GRANT SELECT ON {}.* TO '{}'@'%'", db.name, user.0)).await.expect("grant");
    let config = |url: String| {
        let text = format!(
            "[database]\nurl = \"{url}\"\n[allowlist]\nschemas = [\"{}\"]\ntables = [\"customers\", \"orders\"]\n\
             [audit]\npath = \"/dev/null\"\n",
            db.name
        );
        sqlwarden::config::Config::parse(&text, "test.toml", |_| None).expect("valid")
    };
    let reader_url = db.url().replace("root@", &format!("{}@", user.0));
    let reader = sqlwarden::service::check(config(reader_url.clone())).await.expect("checked");
    assert!(reader.posture.role.starts_with(&user.0), "{}", reader.posture.role);
    assert_eq!(reader.posture.findings, Vec::<String>::new());
    assert_eq!(reader.visible_tables, 2);

    db.admin.query_drop(format!("GRANT INSERT ON {}.orders TO '{}'@'%'", db.name, user.0)).await.expect("grant");
    let writer = sqlwarden::service::check(config(reader_url)).await.expect("checked");
    assert_eq!(writer.posture.findings.len(), 1, "{:?}", writer.posture.findings);
    assert!(writer.posture.findings[0].starts_with("it has INSERT on "), "{:?}", writer.posture.findings);
    let root = sqlwarden::service::check(config(db.url())).await.expect("checked");
    assert!(root.posture.findings.iter().any(|f| f.contains("ALL PRIVILEGES")), "{:?}", root.posture.findings);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_stdio_server_serves_a_configured_database() {
    let Some(db) = TestDb::create(SHOP).await else { return };
    let config = databases::ConfigFile::new(&format!(
        "[database]\nurl = \"{}\"\n[allowlist]\ntables = [\"customers\", \"orders\"]\n\
         [[grants]]\ntool = \"query_read\"\n[[grants]]\ntool = \"list_tables\"\n[audit]\npath = \"/dev/null\"\n",
        db.url()
    ));
    let mut server = databases::McpProcess::start(&["--config", &config.path()]);
    server.initialize();
    let listed = server.call("list_tables", json!({}));
    assert_eq!(listed["structuredContent"]["tables"].as_array().map(Vec::len), Some(2));
    let rows = server.call("query_read", json!({"query": "SELECT count(*) AS n FROM orders"}));
    assert_eq!(rows["structuredContent"]["rows"], json!([[100000]]));
    let write = server.call("query_read", json!({"query": "DELETE FROM orders"}));
    assert_eq!(write["structuredContent"]["code"], json!("QUERY_REJECTED"));
    assert_eq!(server.finish(), Some(0));
}

const LEDGER: &str = "CREATE TABLE ledger (id INT AUTO_INCREMENT PRIMARY KEY, note VARCHAR(100) NOT NULL);
    INSERT INTO ledger (note) VALUES ('a'), ('b'), ('c')";

impl databases::LedgerProbe for TestDb {
    async fn state(&mut self) -> (i64, i64) {
        let sql =
            format!("SELECT count(*), CAST(COALESCE(SUM(note LIKE '%!'), 0) AS SIGNED) FROM {}.ledger", self.name);
        self.admin.query_first(sql).await.expect("ledger state").expect("one row")
    }

    async fn open_transactions(&mut self) -> i64 {
        let own = self.admin.id();
        let open: Option<i64> = self
            .admin
            .exec_first(
                "SELECT count(*) FROM information_schema.INNODB_TRX t JOIN information_schema.PROCESSLIST p \
                 ON p.ID = t.trx_mysql_thread_id WHERE p.DB = ? AND p.ID <> ?",
                (&self.name, own),
            )
            .await
            .expect("innodb_trx");
        open.unwrap_or(0)
    }
}

#[tokio::test]
async fn write_tools_commit_exactly_what_they_declare_and_nothing_else() {
    let Some(mut db) = TestDb::create(LEDGER).await else { return };
    let adapter = MySqlAdapter::connect(&db.url(), AllowList::new(SqlDialect::MySql, &db.name), PoolOptions::default())
        .expect("adapter");
    databases::exercise_write_tools(Arc::new(adapter), &mut db).await;
}

/// `examples/write_controlled.rs` over MCP, configured by files as an operator would.
#[test]
fn the_write_controlled_example_adds_one_customer_only_when_mode_and_grant_allow() {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    let Some(db) = runtime.block_on(TestDb::create(
        "CREATE TABLE customers (id INT AUTO_INCREMENT PRIMARY KEY, name VARCHAR(100) NOT NULL,
            email VARCHAR(254) NOT NULL UNIQUE);
         INSERT INTO customers (name, email) VALUES ('Ada', 'ada@example.com')",
    )) else {
        return;
    };
    let (url, name) = (db.url(), db.name.clone());
    let db = std::cell::RefCell::new(db);
    let count = || runtime.block_on(db.borrow_mut().count("customers"));
    databases::check_write_controlled_example(&url, &name, count);
}

/// Large values: one of 12 MB (more than any result may hold, and than the client takes), five
/// of 2 MB (10 MB together), one of 4 MB to compute over, and 200 rows to read many of.
const BLOBS: &str = "
    CREATE TABLE blobs (id INT PRIMARY KEY, body LONGTEXT NOT NULL);
    INSERT INTO blobs VALUES (1, repeat('x', 12000000));
    INSERT INTO blobs VALUES (2, repeat('B', 2000000)), (3, repeat('C', 2000000)), (4, repeat('D', 2000000));
    INSERT INTO blobs VALUES (5, repeat('E', 2000000)), (6, repeat('F', 2000000)), (7, repeat('abcd', 1000000));
    CREATE TABLE numbers (n INT PRIMARY KEY);
    INSERT INTO numbers SELECT 1 + a.n + 10 * b.n FROM (SELECT 0 AS n UNION SELECT 1 UNION SELECT 2 UNION SELECT 3
        UNION SELECT 4 UNION SELECT 5 UNION SELECT 6 UNION SELECT 7 UNION SELECT 8 UNION SELECT 9) AS a,
        (SELECT 0 AS n UNION SELECT 1 UNION SELECT 2 UNION SELECT 3 UNION SELECT 4 UNION SELECT 5 UNION SELECT 6
        UNION SELECT 7 UNION SELECT 8 UNION SELECT 9 UNION SELECT 10 UNION SELECT 11 UNION SELECT 12 UNION SELECT 13
        UNION SELECT 14 UNION SELECT 15 UNION SELECT 16 UNION SELECT 17 UNION SELECT 18 UNION SELECT 19) AS b
";

impl TestDb {
    fn blobs_allow(&self) -> AllowList {
        AllowList::new(SqlDialect::MySql, &self.name).table(&self.name, "blobs").table(&self.name, "numbers")
    }

    /// How many threads of this database's are still working on a statement whose text holds
    /// `text`, whatever their command (a killed one shows `Killed`).
    async fn present(&mut self, text: &str) -> usize {
        self.working_on(text).await.len()
    }

    /// The threads of this database's (other than the test's own) working on a statement whose
    /// text holds `text`.
    async fn working_on(&mut self, text: &str) -> Vec<u64> {
        let own = self.admin.id();
        let rows: Vec<(u64, Option<String>)> = self
            .admin
            .exec("SELECT ID, INFO FROM information_schema.PROCESSLIST WHERE DB = ?", (&self.name,))
            .await
            .expect("processlist");
        rows.into_iter()
            .filter(|(id, info)| *id != u64::from(own) && info.as_deref().is_some_and(|i| i.contains(text)))
            .map(|(id, _)| id)
            .collect()
    }
}

/// The whole process under `max_concurrent` (4) calls at a time of huge values, wide rows and
/// many rows, with the default limits: see the PostgreSQL test of the same name.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn huge_values_and_wide_rows_stay_within_the_memory_bound_and_the_loop_answers() {
    let Some(db) = TestDb::create(BLOBS).await else { return };
    let audit = std::env::temp_dir().join(format!("sqlwarden-audit-{}.jsonl", unique_suffix()));
    let config = databases::ConfigFile::new(&format!(
        "[database]\nurl = \"{}\"\n[allowlist]\nschemas = [\"{}\"]\ntables = [\"blobs\", \"numbers\"]\n\
         [[grants]]\ntool = \"query_read\"\n[audit]\npath = \"{}\"\n",
        db.url(),
        db.name,
        audit.display()
    ));
    let wide = (0..70).map(|n| format!("repeat('a', 100000) AS c{n}")).collect::<Vec<_>>().join(", ");
    let cases = [
        ("SELECT body FROM blobs WHERE id = 1", "RESULT_TOO_LARGE"),
        ("SELECT body FROM blobs WHERE id BETWEEN 2 AND 6 ORDER BY id", "RESULT_TOO_LARGE"),
        ("SELECT repeat(unhex('01'), 1300000)", "ok"),
        ("SELECT repeat('\"', 3900000)", "ok"),
        (&format!("SELECT {wide}"), "ok"),
        ("SELECT repeat('x', 70000) FROM numbers ORDER BY n", "ok"),
        ("SELECT repeat('a', 100000000)", "QUERY_REJECTED"),
        ("SELECT md5(body) FROM blobs ORDER BY id", "ok"),
    ];
    tokio::task::block_in_place(|| {
        databases::Probe::start(&["--config", &config.path()], &[], databases::Stderr::Null)
            .hold_the_memory_bound(&cases);
    });
    let _ = std::fs::remove_file(audit);
}

/// A row larger than the client takes is `RESULT_TOO_LARGE` after one try, never retried on
/// other connections (it once ran nine times for one call).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_row_larger_than_any_result_is_refused_once() {
    let Some(db) = TestDb::create(BLOBS).await else { return };
    let url = db.url();
    let target = databases::host_of(&url, "127.0.0.1:3306");
    let relay = Relay::start(0, target.clone()).await;
    let relayed = format!("{}?prefer_socket=false", url.replace(&target, &format!("127.0.0.1:{}", relay.port)));
    let options = PoolOptions { max_result_bytes: 500_000, ..PoolOptions::default() };
    let adapter = MySqlAdapter::connect(&relayed, db.blobs_allow(), options).expect("adapter");
    let limits = ReadLimits { max_result_bytes: 500_000, ..ReadLimits::default() };
    let service = Service::new(Arc::new(adapter), db.blobs_allow(), limits);
    let (code, message) =
        refusal(service.call("query_read", json!({"query": "SELECT body FROM blobs WHERE id = 2"})).await);
    assert_eq!(code, DenialCode::ResultTooLarge);
    assert!(message.starts_with("a row is larger than 1548576 bytes"), "{message}");
    assert_eq!(relay.accepted.load(std::sync::atomic::Ordering::SeqCst), 1, "one connection, one try");
    assert_eq!(service.read(json!({"query": "SELECT id FROM blobs WHERE id = 7"})).await["rows"], json!([[7]]));
}

/// A statement MariaDB does not stop at its time limit (hundreds of hashes of a 4 MB value in
/// one row: a kill is noticed only between rows) keeps its caller's quota slot after the caller
/// has its `TIMEOUT`, until the server has let go of it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_statement_that_outlives_its_timeout_keeps_its_quota_slot_until_it_ends() {
    let Some(mut db) = TestDb::create(BLOBS).await else { return };
    let adapter = MySqlAdapter::connect(&db.url(), db.blobs_allow(), PoolOptions::default()).expect("adapter");
    let service = Service::new(Arc::new(adapter), db.blobs_allow(), ReadLimits::default());
    let tag = format!("slow-{}", unique_suffix());
    let hashes = vec!["md5(body)"; 600].join(", ");
    let query = format!("SELECT '{tag}' AS tag, length(concat({hashes})) FROM blobs WHERE id = 7");
    let started = Instant::now();
    let (code, _) = refusal(service.call("query_read", json!({"query": query, "timeout_ms": 300})).await);
    assert_eq!(code, DenialCode::Timeout);
    assert!(started.elapsed() < Duration::from_secs(2), "answered at its deadline: {:?}", started.elapsed());
    tokio::time::sleep(Duration::from_millis(1000)).await;
    if db.present(&tag).await > 0 {
        assert_eq!(service.reads_in_flight(), 1, "still running on the server: the slot is held");
        let start = Instant::now();
        while db.present(&tag).await > 0 {
            assert!(start.elapsed() < Duration::from_secs(120), "the statement ends");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        tokio::time::sleep(Duration::from_millis(700)).await;
    }
    assert_eq!(service.reads_in_flight(), 0, "released once the statement ended");
}

/// A read whose connection an operator kills is an error at once, saying it was not run
/// again; and it is not run again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_ended_by_the_database_is_an_error_at_once_and_is_not_run_again() {
    let Some(mut db) = TestDb::create(BLOBS).await else { return };
    let adapter = MySqlAdapter::connect(&db.url(), db.blobs_allow(), PoolOptions::default()).expect("adapter");
    let service = Arc::new(Service::new(Arc::new(adapter), db.blobs_allow(), ReadLimits::default()));
    let tag = format!("killed-{}", unique_suffix());
    let endless = format!("SELECT '{tag}' AS tag, count(*) FROM numbers a, numbers b, numbers c, numbers d, numbers e");
    let call = {
        let service = Arc::clone(&service);
        tokio::spawn(async move { service.call("query_read", json!({"query": endless, "timeout_ms": 30000})).await })
    };
    let start = Instant::now();
    let id = loop {
        if let Some(&id) = db.working_on(&tag).await.first() {
            break id;
        }
        // A bound on liveness, not a figure: on a loaded machine the read may take a while to
        // start, and if it ends before it was seen, what it answered is the diagnosis.
        if call.is_finished() {
            panic!("the read ended before it was seen running: {:?}", call.await);
        }
        assert!(start.elapsed() < Duration::from_secs(30), "the read started");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    db.admin.query_drop(format!("KILL {id}")).await.expect("kill");
    let killed_at = Instant::now();
    let result = tokio::time::timeout(Duration::from_secs(5), call).await.expect("answered promptly").expect("joined");
    assert!(killed_at.elapsed() < Duration::from_secs(2), "answered {:?} after the kill", killed_at.elapsed());
    let (code, message) = refusal(result);
    assert_eq!(code, DenialCode::DbError);
    assert!(message.contains("it was not run again"), "{message}");
    // The killed thread may linger a moment; no other may take the statement up.
    for _ in 0..20 {
        let again = db.working_on(&tag).await.into_iter().filter(|other| *other != id);
        assert_eq!(again.count(), 0, "not run again");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// MariaDB's counterpart of a planted shadowing function: a stored function named like a
/// built-in, in the database reads run in, is never what a read calls (the server calls its
/// own), and calling one by its database's name is refused by the gate, as is any stored
/// function not on the dialect's list.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stored_functions_planted_in_the_database_never_run_in_a_read() {
    let Some(mut db) = TestDb::create(SHOP).await else { return };
    for statement in [
        "CREATE FUNCTION lower(s TEXT) RETURNS TEXT READS SQL DATA RETURN (SELECT value FROM secrets LIMIT 1)",
        "CREATE FUNCTION leak() RETURNS TEXT READS SQL DATA RETURN (SELECT value FROM secrets LIMIT 1)",
    ] {
        db.admin.query_drop(statement).await.unwrap_or_else(|error| panic!("{statement}: {error}"));
    }
    let service = db.service(ReadLimits::default());
    let lowered = service.read(json!({"query": "SELECT lower(name) FROM customers WHERE id = 1"})).await;
    assert_eq!(lowered["rows"], json!([["ada"]]), "the server's own lower(), not the planted one");
    for query in [format!("SELECT {}.lower(name) FROM customers", db.name), "SELECT leak() FROM customers".to_owned()] {
        let (code, message) = refusal(service.call("query_read", json!({"query": query})).await);
        assert_eq!(code, DenialCode::QueryRejected, "{query}: {message}");
        assert!(!message.contains("hunter2"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_read_is_audited_with_its_fingerprint_tables_and_what_it_returned() {
    let Some(db) = TestDb::create(SHOP).await else { return };
    let service = db.service(ReadLimits::default());
    databases::check_read_records(&service, "customers", &format!("{}.customers", db.name)).await;
}

/// MySQL's and MariaDB's own ways to a ruled column: backquotes, `_rowid`, `TABLE`, its JSON
/// and string aggregates, REGEXP and full-text search, joins of its own.
const MYSQL_COLUMN_BYPASSES: &[&str] = &[
    "SELECT `ssn` FROM people",
    "SELECT `SSN` FROM people",
    "SELECT _rowid FROM people",
    "TABLE people",
    "SELECT JSON_OBJECT('s', ssn) AS j FROM people",
    "SELECT JSON_ARRAYAGG(email) AS j FROM people",
    "SELECT GROUP_CONCAT(email) AS g FROM people",
    "SELECT id FROM people WHERE email REGEXP '^ann'",
    "SELECT id FROM people WHERE MATCH (email) AGAINST ('ann')",
    "SELECT HEX(ssn) AS h FROM people",
    "SELECT id FROM people WHERE email LIKE BINARY 'ann%'",
    "SELECT id FROM people WHERE ssn SOUNDS LIKE 'x'",
    "SELECT * FROM people p STRAIGHT_JOIN teams t ON t.id = p.team",
    "SELECT p.id FROM people p STRAIGHT_JOIN teams t ON t.ssn = p.ssn",
    "SELECT email FROM people INTO @x",
    "SELECT people.`email` FROM people",
    "SELECT id FROM people WHERE INSTR(email, 'ann') > 0",
    "SELECT IF(email LIKE 'a%', 1, 0) AS c FROM people",
];

/// See the PostgreSQL test of the same name.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn column_rules_hold_on_every_way_to_a_column() {
    let Some(db) = TestDb::create(databases::PEOPLE).await else { return };
    let allow = || {
        AllowList::new(SqlDialect::MySql, &db.name).schema(&db.name).columns(
            &db.name,
            "people",
            databases::people_rule(),
        )
    };
    let adapter = MySqlAdapter::connect(&db.url(), allow(), PoolOptions::default()).expect("adapter");
    let service = Service::new(Arc::new(adapter), allow(), ReadLimits::default());
    let (accepted, refused) = databases::column_rules_hold(&service, MYSQL_COLUMN_BYPASSES).await;
    assert!(accepted >= 5 && refused >= 70, "accepted {accepted}, refused {refused}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn declared_tools_bind_typed_params_and_claims_and_cap_their_writes() {
    let Some(db) = TestDb::create(databases::TICKETS).await else { return };
    databases::exercise_declared_tools(&db.url(), SqlDialect::MySql).await;
}

/// `explain_query` plans without running (the server never shows the query running); the plan
/// guard refuses before running (`exercise_plans`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn explain_query_plans_without_running_and_the_plan_guard_refuses_before_running() {
    let Some(mut db) = TestDb::create(SHOP).await else { return };
    databases::exercise_plans(&db.url(), SqlDialect::MySql, FOREVER).await;
    assert_eq!(db.running(FOREVER_MARK).await, 0, "nothing of it ran");
}
