//! The PostgreSQL adapter against a real server, through the reference tools and the boundary.
//! Each backstop is checked from the database's side.
#![cfg(feature = "postgres")]

mod databases;

use std::sync::Arc;
use std::time::{Duration, Instant};

use databases::{Relay, Service, unavailable, unique_suffix};
use serde_json::{Value, json};
use sqlwarden::DenialCode;
use sqlwarden::adapter::PoolOptions;
use sqlwarden::adapter::postgres::PostgresAdapter;
use sqlwarden::sql::{AllowList, SqlDialect};
use sqlwarden::tools::reference::ReadLimits;
use tokio_postgres::{Client, NoTls};

fn admin_url() -> String {
    std::env::var("SQLWARDEN_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

async fn connect(url: &str) -> Result<Client, tokio_postgres::Error> {
    let (client, connection) = tokio_postgres::connect(url, NoTls).await?;
    tokio::spawn(async move {
        let _ = connection.await;
    });
    Ok(client)
}

/// A database of the test's own, dropped (with its connections) when the test ends.
struct TestDb {
    name: String,
    admin: Client,
    /// A superuser connection to the test database, for fixtures and checks.
    client: Client,
}

impl TestDb {
    async fn create(fixture: &str) -> Option<TestDb> {
        let admin = match connect(&admin_url()).await {
            Ok(admin) => admin,
            Err(error) => {
                unavailable("PostgreSQL", &error);
                return None;
            }
        };
        let name = format!("sqlwarden_test_{}", unique_suffix());
        admin.batch_execute(&format!("CREATE DATABASE {name}")).await.expect("create database");
        let client = connect(&Self::url_of(&name)).await.expect("connect to the test database");
        client.batch_execute(fixture).await.expect("fixture");
        Some(TestDb { name, admin, client })
    }

    fn url_of(name: &str) -> String {
        let admin = admin_url();
        let base = admin.rsplit_once('/').map_or(admin.as_str(), |(base, _)| base);
        format!("{base}/{name}")
    }

    /// The adapter's URL. The server on loopback has a self-signed certificate for
    /// `localhost`, which the adapter (verifying every certificate) cannot accept for
    /// 127.0.0.1, so plain TCP is chosen explicitly.
    fn url(&self) -> String {
        format!("{}?sslmode=disable", Self::url_of(&self.name))
    }

    fn adapter(&self, allow: AllowList) -> Arc<PostgresAdapter> {
        Arc::new(PostgresAdapter::connect(&self.url(), allow, PoolOptions::default()).expect("adapter"))
    }

    /// Statements of this database still running that contain `text`, other than this check.
    async fn running(&self, text: &str) -> i64 {
        let row = self
            .admin
            .query_one(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = $1 AND state = 'active' \
                 AND query LIKE '%' || $2 || '%' AND pid <> pg_backend_pid()",
                &[&self.name, &text],
            )
            .await
            .expect("pg_stat_activity");
        row.get(0)
    }

    /// Waits up to `within` for no statement containing `text` to run; returns how long it took.
    async fn gone_within(&self, text: &str, within: Duration) -> Option<Duration> {
        let start = Instant::now();
        while start.elapsed() < within {
            if self.running(text).await == 0 {
                return Some(start.elapsed());
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        None
    }

    async fn kill_sqlwarden_connections(&self) -> i64 {
        let row = self
            .admin
            .query_one(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity \
                 WHERE datname = $1 AND application_name = 'sqlwarden'",
                &[&self.name],
            )
            .await
            .expect("terminate");
        row.get(0)
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        if !admin_statement(format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name)) {
            eprintln!("could not drop test database {}", self.name);
        }
    }
}

/// Runs one statement as the administrator, from a `Drop`; whether it succeeded.
fn admin_statement(sql: String) -> bool {
    let done = databases::block_on_detached(async move { connect(&admin_url()).await?.batch_execute(&sql).await });
    matches!(done, Some(Ok(())))
}

const SHOP: &str = "
    CREATE TABLE customers (
        id integer PRIMARY KEY,
        name text NOT NULL,
        email varchar(200) UNIQUE,
        created_at timestamptz NOT NULL DEFAULT now()
    );
    COMMENT ON COLUMN customers.email IS 'where receipts go';
    CREATE TABLE orders (
        id bigint PRIMARY KEY,
        customer_id integer NOT NULL REFERENCES customers (id),
        total numeric(10,2) NOT NULL
    );
    CREATE INDEX orders_by_customer ON orders (customer_id, total);
    CREATE TABLE secrets (id integer PRIMARY KEY, value text);
    CREATE TABLE events (id serial PRIMARY KEY, note text);
    INSERT INTO customers (id, name, email) VALUES (1, 'Ada', 'ada@example.com'), (2, 'Grace', NULL), (3, 'secret-value', 'x@example.com');
    INSERT INTO orders SELECT n, 1 + n % 3, (n % 1000) / 7.0 FROM generate_series(1, 100000) AS n;
    INSERT INTO secrets VALUES (1, 'hunter2');
    CREATE FUNCTION write_event() RETURNS integer LANGUAGE sql AS 'INSERT INTO public.events (note) VALUES (''written'') RETURNING id';
    CREATE VIEW sneaky AS SELECT write_event() AS id;
    CREATE VIEW tx_state AS SELECT current_setting('transaction_read_only') AS read_only,
        current_setting('statement_timeout') AS statement_timeout, current_setting('search_path') AS search_path;
    CREATE VIEW slow AS SELECT 1 AS slept FROM pg_sleep(30);
";

/// How a read shows in `pg_stat_activity` while its rows are computed: as the fetch from its
/// cursor (only the slow view's reads run long enough to be seen).
const SLOW: &str = "FROM sqlwarden_rows";

fn shop_allow() -> AllowList {
    AllowList::new(SqlDialect::Postgres, "public")
        .table("public", "customers")
        .table("public", "orders")
        .table("public", "events")
        .table("public", "sneaky")
        .table("public", "tx_state")
        .table("public", "slow")
        .table("public", "types")
}

async fn shop() -> Option<(TestDb, Service)> {
    let db = TestDb::create(SHOP).await?;
    let service = Service::new(db.adapter(shop_allow()), shop_allow(), ReadLimits::default());
    Some((db, service))
}

fn refusal(result: Result<Value, sqlwarden::Denial>) -> (DenialCode, String) {
    let denial = result.expect_err("refused");
    (denial.code(), denial.message().to_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_run_in_a_read_only_transaction_with_our_settings() {
    let Some((_db, service)) = shop().await else { return };
    // Twice: a repeated read goes out in one message, and must run just the same.
    for _ in 0..2 {
        let result = service.read(json!({"query": "SELECT * FROM tx_state", "timeout_ms": 1500})).await;
        assert_eq!(result["rows"], json!([["on", "1500ms", "pg_catalog, pg_temp"]]));
        assert_eq!(result["columns"][0], json!({"name": "read_only", "type": "text"}));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_go_back_to_the_pool_outside_any_transaction() {
    let Some((db, service)) = shop().await else { return };
    let calls = [
        ("query_read", json!({"query": "SELECT id, name FROM customers WHERE id = $1", "params": [1]})),
        ("query_read", json!({"query": "SELECT id FROM orders", "limit": 3})),
        ("query_read", json!({"query": "SELECT id FROM customers WHERE id = -1"})),
        // Types printed by the server, after the rows are fetched.
        ("query_read", json!({"query": "SELECT CAST('10.0.0.1' AS inet) AS ip, CAST('(1,2)' AS point) AS pt"})),
        // Refused by the server: when describing, and when running.
        ("query_read", json!({"query": "SELECT no_such_column FROM customers"})),
        ("query_read", json!({"query": "SELECT 1 / (id - id) FROM customers"})),
        ("query_read", json!({"query": "SELECT * FROM sneaky"})),
        ("list_tables", json!({})),
        ("describe_table", json!({"table": "orders"})),
    ];
    // Twice each: a repeated read goes out in one message (see `Shapes`).
    for (tool, args) in calls.iter().chain(calls.iter()) {
        let outcome = service.call(tool, args.clone()).await;
        let busy: i64 = db
            .client
            .query_one(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() \
                 AND pid <> pg_backend_pid() AND state <> 'idle'",
                &[],
            )
            .await
            .expect("activity")
            .get(0);
        assert_eq!(busy, 0, "{tool} {args} ({outcome:?}) left its connection inside a transaction");
    }
    let printed = service.read(json!({"query": "SELECT CAST('10.0.0.1' AS inet) AS ip"})).await;
    assert_eq!(printed["rows"], json!([["10.0.0.1"]]), "as PostgreSQL prints it");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_repeated_read_sees_a_table_altered_since() {
    let Some((db, service)) = shop().await else { return };
    let one = json!({"query": "SELECT * FROM customers WHERE id = $1", "params": [1]});
    let none = json!({"query": "SELECT * FROM customers WHERE id = $1", "params": [-1]});
    let names = |result: &Value| -> Vec<String> {
        result["columns"]
            .as_array()
            .expect("columns")
            .iter()
            .map(|c| c["name"].as_str().expect("name").to_owned())
            .collect()
    };
    let first = service.read(one.clone()).await;
    let again = service.read(one.clone()).await;
    assert_eq!(first["rows"], again["rows"]);
    assert_eq!(first["columns"], again["columns"]);
    assert_eq!(service.read(none.clone()).await["columns"], first["columns"], "an empty result is described too");
    db.client
        .batch_execute("ALTER TABLE customers RENAME COLUMN name TO full_name; ALTER TABLE customers ALTER COLUMN email TYPE inet USING NULL")
        .await
        .expect("alter");
    db.client.batch_execute("UPDATE customers SET email = '10.1.2.3' WHERE id = 1").await.expect("update");
    // Rows bring their own description, and a type without a decoder is printed by the server.
    let altered = service.read(one.clone()).await;
    assert_eq!(names(&altered), ["id", "full_name", "email", "created_at"]);
    assert_eq!(altered["columns"][2], json!({"name": "email", "type": "inet"}));
    assert_eq!(altered["rows"][0][2], json!("10.1.2.3"));
    // An empty result's description is at most a second old.
    let none = json!({"query": "SELECT * FROM orders WHERE id = $1", "params": [-1]});
    assert_eq!(names(&service.read(none.clone()).await), ["id", "customer_id", "total"]);
    db.client.batch_execute("ALTER TABLE orders RENAME COLUMN total TO amount").await.expect("alter");
    service.read(none.clone()).await;
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(names(&service.read(none.clone()).await), ["id", "customer_id", "amount"]);
    assert_eq!(names(&service.read(none).await), ["id", "customer_id", "amount"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_that_reaches_the_engine_is_refused_by_it() {
    let Some((db, service)) = shop().await else { return };
    for _ in 0..2 {
        let (code, message) = refusal(service.call("query_read", json!({"query": "SELECT * FROM sneaky"})).await);
        assert_eq!(code, DenialCode::DbError);
        assert!(message.contains("read-only"), "{message}");
    }
    let count: i64 = db.client.query_one("SELECT count(*) FROM events", &[]).await.expect("count").get(0);
    assert_eq!(count, 0, "nothing was written");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_timed_out_query_is_refused_and_gone_from_the_server() {
    let Some((db, service)) = shop().await else { return };
    let started = Instant::now();
    let (code, _) =
        refusal(service.call("query_read", json!({"query": "SELECT * FROM slow", "timeout_ms": 300})).await);
    assert_eq!(code, DenialCode::Timeout);
    assert!(started.elapsed() < Duration::from_secs(5), "answered at the timeout, not after the 30 s sleep");
    assert!(db.gone_within(SLOW, Duration::from_secs(1)).await.is_some(), "the statement still runs");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_call_cancels_its_query_on_the_server() {
    let Some((db, service)) = shop().await else { return };
    let call = service.call("query_read", json!({"query": "SELECT * FROM slow", "timeout_ms": 30000}));
    let watch = async {
        tokio::time::sleep(Duration::from_millis(500)).await;
        db.running(SLOW).await
    };
    tokio::select! {
        _ = call => panic!("the call ended before it was dropped"),
        running = watch => assert_eq!(running, 1, "the statement runs on the server until the call is dropped"),
    }
    assert!(db.gone_within(SLOW, Duration::from_secs(1)).await.is_some(), "the statement still runs");
    // The pool is still usable afterwards.
    let result = service.read(json!({"query": "SELECT count(*) AS n FROM customers"})).await;
    assert_eq!(result["rows"], json!([[3]]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn truncation_is_exact_around_the_limit() {
    let Some((_db, service)) = shop().await else { return };
    for (limit, rows, truncated) in [(2, 2, true), (3, 3, false), (4, 3, false), (1, 1, true)] {
        let result = service.read(json!({"query": "SELECT id FROM customers ORDER BY id", "limit": limit})).await;
        assert_eq!(result["row_count"], json!(rows), "limit {limit}");
        assert_eq!(result["rows"].as_array().map(Vec::len), Some(rows), "limit {limit}");
        assert_eq!(result["truncated"], json!(truncated), "limit {limit}");
    }
    let all = service.read(json!({"query": "SELECT * FROM orders"})).await;
    assert_eq!(all["row_count"], json!(100), "the default limit applies");
    assert_eq!(all["truncated"], json!(true));
    let capped = service.read(json!({"query": "SELECT id FROM orders", "limit": 1_000_000})).await;
    assert_eq!(capped["row_count"], json!(1000), "a larger limit is capped at max_rows");
    let inner = service.read(json!({"query": "SELECT * FROM (SELECT id FROM orders LIMIT 5000) AS o"})).await;
    assert_eq!(inner["row_count"], json!(100), "a LIMIT inside a subquery does not lift the outer limit");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_result_over_the_byte_cap_is_refused() {
    let Some((db, _)) = shop().await else { return };
    let limits = ReadLimits { max_result_bytes: 2000, ..ReadLimits::default() };
    let service = Service::new(db.adapter(shop_allow()), shop_allow(), limits);
    let small = service.read(json!({"query": "SELECT id FROM orders ORDER BY id", "limit": 10})).await;
    assert_eq!(small["row_count"], json!(10));
    let (code, message) =
        refusal(service.call("query_read", json!({"query": "SELECT * FROM orders", "limit": 1000})).await);
    assert_eq!(code, DenialCode::ResultTooLarge);
    assert!(message.contains("2000 bytes"), "{message}");
}

const TYPES: &str = "
    CREATE TYPE mood AS ENUM ('sad', 'happy');
    CREATE DOMAIN positive AS integer CHECK (VALUE > 0);
    CREATE TYPE pair AS (a integer, b text);
    CREATE TABLE types (
        i2 smallint, i4 integer, i8 bigint, big bigint, n numeric(40,12), nn numeric, f4 real, f8 double precision,
        fnan double precision, finf double precision, b boolean, t text, v varchar(10), c char(3), u uuid,
        d date, dinf date, tm time, tz timetz, ts timestamp, tstz timestamptz, iv interval, by bytea,
        j json, jb jsonb, arr integer[], grid text[][], m mood, pos positive, ip inet, pt point, p pair,
        r int4range, nothing text
    );
    SET timezone = 'UTC';
    INSERT INTO types VALUES (
        -32768, 2147483647, 9007199254740991, 9223372036854775807, '-1234567890123456789012345678.000000000001',
        'NaN', 1.5, 0.1, 'NaN', '-Infinity', true, 'héllo \"quoted\"', 'varchar', 'ab', 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11',
        '2024-02-29', 'infinity', '13:45:00.5', '13:45:00+02:30', '2024-02-29 13:45:00.123456', '2024-02-29 13:45:00+01',
        '1 year 2 months 3 days 04:05:06.5', '\\x00ff41', '{\"a\": [1, 2]}', '{\"b\": null}', '{1,NULL,3}',
        '{{a,b},{c,d}}', 'happy', 7, '192.168.0.1/24', '(1.5,2)', '(1,x)', '[1,5)', NULL
    );
";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn values_come_back_as_faithful_json() {
    let Some(db) = TestDb::create(TYPES).await else { return };
    let service = Service::new(db.adapter(shop_allow()), shop_allow(), ReadLimits::default());
    let result = service.read(json!({"query": "SELECT * FROM types"})).await;
    let columns: Vec<&str> =
        result["columns"].as_array().expect("columns").iter().map(|c| c["name"].as_str().expect("name")).collect();
    let row = result["rows"][0].as_array().expect("one row");
    let value = |name: &str| row[columns.iter().position(|c| *c == name).expect(name)].clone();
    assert_eq!(value("i2"), json!(-32768));
    assert_eq!(value("i4"), json!(2147483647));
    assert_eq!(value("i8"), json!(9007199254740991_i64), "2^53 - 1 is still a number");
    assert_eq!(value("big"), json!("9223372036854775807"), "beyond 2^53 an integer is a string");
    assert_eq!(value("n"), json!("-1234567890123456789012345678.000000000001"));
    assert_eq!(value("nn"), json!("NaN"));
    assert_eq!(value("f4"), json!(1.5));
    assert_eq!(value("f8"), json!(0.1));
    assert_eq!(value("fnan"), json!("NaN"));
    assert_eq!(value("finf"), json!("-Infinity"));
    assert_eq!(value("b"), json!(true));
    assert_eq!(value("t"), json!("héllo \"quoted\""));
    assert_eq!(value("v"), json!("varchar"));
    assert_eq!(value("c"), json!("ab "), "char(n) is blank-padded");
    assert_eq!(value("u"), json!("a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"));
    assert_eq!(value("d"), json!("2024-02-29"));
    assert_eq!(value("dinf"), json!("infinity"));
    assert_eq!(value("tm"), json!("13:45:00.5"));
    assert_eq!(value("tz"), json!("13:45:00+02:30"));
    assert_eq!(value("ts"), json!("2024-02-29T13:45:00.123456"));
    assert_eq!(value("tstz"), json!("2024-02-29T12:45:00Z"), "a point in time, in UTC");
    assert_eq!(value("iv"), json!("P1Y2M3DT4H5M6.5S"));
    assert_eq!(value("by"), json!("AP9B"));
    assert_eq!(value("j"), json!({"a": [1, 2]}));
    assert_eq!(value("jb"), json!({"b": null}));
    assert_eq!(value("arr"), json!([1, null, 3]));
    assert_eq!(value("grid"), json!([["a", "b"], ["c", "d"]]));
    assert_eq!(value("m"), json!("happy"));
    assert_eq!(value("pos"), json!(7));
    assert_eq!(value("ip"), json!("192.168.0.1/24"), "a type without a decoder comes back as its text form");
    assert_eq!(value("pt"), json!("(1.5,2)"));
    assert_eq!(value("p"), json!("(1,x)"));
    assert_eq!(value("r"), json!("[1,5)"));
    assert_eq!(value("nothing"), Value::Null);
    // As the server prints them: an address alone has no `/32` (a cast to text would add it).
    let addresses = service
        .read(json!({"query": "SELECT CAST('10.1.2.3' AS inet) AS a, CAST('10.0.0.0/8' AS cidr) AS b, \
                               CAST('::1' AS inet) AS c, ARRAY[CAST('10.1.2.3' AS inet)] AS d"}))
        .await;
    assert_eq!(addresses["rows"], json!([["10.1.2.3", "10.0.0.0/8", "::1", "{10.1.2.3}"]]));
    // `json` is the server's text: duplicate keys and digits beyond a double are kept.
    let text = service
        .read_text(json!({"query": "SELECT CAST('{\"a\": 1, \"a\": 123456789012345678901234567890.5}' AS json) AS j"}))
        .await;
    assert!(text.contains(r#"[{"a": 1, "a": 123456789012345678901234567890.5}]"#), "{text}");
    let types: Vec<&str> =
        result["columns"].as_array().expect("columns").iter().map(|c| c["type"].as_str().expect("type")).collect();
    assert_eq!(types[columns.iter().position(|c| *c == "arr").expect("arr")], "int4[]");
    assert_eq!(types[columns.iter().position(|c| *c == "m").expect("m")], "mood");
}

/// Valid PostgreSQL the gate once refused: `ARRAY(subquery)` and `ROW(…)`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn array_subqueries_and_row_constructors_run() {
    let Some((_db, service)) = shop().await else { return };
    let result = service
        .read(json!({"query": "SELECT ARRAY(SELECT c.id FROM customers c ORDER BY c.id) AS ids, \
                               ROW(1, 'a') AS pair, ROW(1, 'a') = ROW(1, 'a') AS same"}))
        .await;
    assert_eq!(result["rows"], json!([[[1, 2, 3], [1, "a"], true]]), "an anonymous row is an array of its fields");
    let nested =
        service.read(json!({"query": "SELECT ROW(1, ROW(NULL, ARRAY[2.5]), CAST('2024-02-29' AS date))"})).await;
    assert_eq!(nested["rows"], json!([[[1, [null, ["2.5"]], "2024-02-29"]]]));
    // A field only the server can print: refused with a message that says what to do.
    let (code, message) =
        refusal(service.call("query_read", json!({"query": "SELECT ROW(1, CAST('10.0.0.1' AS inet))"})).await);
    assert_eq!(code, DenialCode::InvalidInput, "{message}");
    assert!(message.contains("select that field as a column"), "{message}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parameters_are_bound_and_parsed_by_the_server() {
    let Some((_db, service)) = shop().await else { return };
    let by_id = |id: Value| json!({"query": "SELECT name FROM customers WHERE id = $1", "params": [id]});
    assert_eq!(service.read(by_id(json!(1))).await["rows"], json!([["Ada"]]));
    assert_eq!(service.read(by_id(json!("2"))).await["rows"], json!([["Grace"]]), "text is parsed as the type needs");
    let (code, message) = refusal(service.call("query_read", by_id(json!("1 OR 1=1"))).await);
    assert_eq!(code, DenialCode::InvalidInput, "a parameter is a value, never SQL");
    assert!(!message.contains("1 OR 1=1"), "{message}");
    let dated = service
        .read(json!({"query": "SELECT count(*) AS n FROM customers WHERE created_at < $1", "params": ["2999-01-01T00:00:00Z"]}))
        .await;
    assert_eq!(dated["rows"], json!([[3]]));
    let null = service.read(json!({"query": "SELECT count(*) AS n FROM customers WHERE email IS NOT DISTINCT FROM $1", "params": [null]})).await;
    assert_eq!(null["rows"], json!([[1]]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn database_errors_never_quote_row_values() {
    let Some((_db, service)) = shop().await else { return };
    let (code, message) =
        refusal(service.call("query_read", json!({"query": "SELECT CAST(name AS integer) FROM customers"})).await);
    assert_eq!(code, DenialCode::InvalidInput);
    assert!(!message.contains("secret-value") && !message.contains("Ada"), "{message}");
    assert!(message.contains("22P02"), "{message}");
    let (code, message) = refusal(service.call("query_read", json!({"query": "SELECT nme FROM customers"})).await);
    assert_eq!(code, DenialCode::DbError);
    assert!(
        message.contains("column \"nme\" does not exist"),
        "a message about the query's own words is passed on: {message}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn introspection_shows_allowed_tables_as_the_catalog_describes_them() {
    let Some((db, service)) = shop().await else { return };
    let listed = service.call("list_tables", json!({})).await.expect("listed");
    let names: Vec<&str> =
        listed["tables"].as_array().expect("tables").iter().map(|t| t["name"].as_str().expect("name")).collect();
    assert_eq!(names, ["customers", "events", "orders", "slow", "sneaky", "tx_state"], "never secrets");
    assert_eq!(listed["tables"][0], json!({"schema": "public", "name": "customers", "kind": "table"}));
    assert_eq!(listed["tables"][3]["kind"], json!("view"));
    let elsewhere = service.call("list_tables", json!({"schema": "pg_catalog"})).await.expect("listed");
    assert_eq!(elsewhere["tables"], json!([]), "a schema outside the allow-list shows nothing");

    let described = service.call("describe_table", json!({"table": "orders"})).await.expect("described");
    assert_eq!(described["primary_key"], json!(["id"]));
    assert_eq!(
        described["foreign_keys"],
        json!([{"name": "orders_customer_id_fkey", "columns": ["customer_id"], "referenced_schema": "public",
                "referenced_table": "customers", "referenced_columns": ["id"]}])
    );
    assert_eq!(
        described["indexes"],
        json!([{"name": "orders_by_customer", "columns": ["customer_id", "total"], "unique": false},
               {"name": "orders_pkey", "columns": ["id"], "unique": true}])
    );
    let customers =
        service.call("describe_table", json!({"schema": "public", "table": "Customers"})).await.expect("described");
    let columns = customers["columns"].as_array().expect("columns");
    // Compare with the engine's own catalog.
    let catalog = db
        .client
        .query(
            "SELECT column_name::text, is_nullable = 'YES', column_default::text FROM information_schema.columns              WHERE table_schema = 'public' AND table_name = 'customers' ORDER BY ordinal_position",
            &[],
        )
        .await
        .expect("catalog");
    assert_eq!(columns.len(), catalog.len());
    for (column, row) in columns.iter().zip(&catalog) {
        assert_eq!(column["name"], json!(row.get::<_, String>(0)));
        assert_eq!(column["nullable"], json!(row.get::<_, bool>(1)));
        assert_eq!(column["default"], json!(row.get::<_, Option<String>>(2)));
    }
    assert_eq!(
        columns[2],
        json!({"name": "email", "type": "character varying(200)", "nullable": true, "default": null, "comment": "where receipts go"})
    );
    assert_eq!(customers["indexes"][0]["unique"], json!(true));

    for hidden in [
        json!({"table": "secrets"}),
        json!({"table": "nonexistent_but_allowed"}),
        json!({"schema": "pg_catalog", "table": "pg_authid"}),
    ] {
        let (code, message) = refusal(service.call("describe_table", hidden.clone()).await);
        assert_eq!((code, message.as_str()), (DenialCode::QueryRejected, "no such table, or not allowed"), "{hidden}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_connections_are_replaced() {
    let Some((db, service)) = shop().await else { return };
    let query = json!({"query": "SELECT count(*) AS n FROM customers"});
    // Open several pooled connections at once.
    let calls: Vec<_> = (0..4).map(|_| service.call("query_read", query.clone())).collect();
    for result in futures_util::future::join_all(calls).await {
        assert_eq!(result.expect("read")["rows"], json!([[3]]));
    }
    assert!(db.kill_sqlwarden_connections().await >= 1);
    for _ in 0..6 {
        assert_eq!(service.read(query.clone()).await["rows"], json!([[3]]), "the next calls succeed");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_that_is_down_is_a_prompt_error_and_calls_recover_when_it_returns() {
    let Some(db) = TestDb::create(SHOP).await else { return };
    let target = databases::host_of(&admin_url(), "127.0.0.1:5432");
    let mut relay = Relay::start(0, target.clone()).await;
    let url = db.url().replace(&target, &format!("127.0.0.1:{}", relay.port));
    let options = PoolOptions { max_connections: 4, connect_timeout: Duration::from_secs(2), ..PoolOptions::default() };
    let adapter = Arc::new(PostgresAdapter::connect(&url, shop_allow(), options).expect("adapter"));
    let service = Service::new(adapter, shop_allow(), ReadLimits::default());
    let query = json!({"query": "SELECT count(*) AS n FROM customers"});
    assert_eq!(service.read(query.clone()).await["rows"], json!([[3]]));
    databases::assert_down_and_back(&service, &mut relay, target, query, "postgres://").await;
}

#[test]
fn a_bad_url_is_refused_without_echoing_it() {
    let allow = AllowList::new(SqlDialect::Postgres, "public");
    for url in
        ["postgres://user:hunter2@host:notaport/db", "postgres://u:hunter2@h/db?sslrootcert=/nonexistent/host.pem"]
    {
        let error = PostgresAdapter::connect(url, allow.clone(), PoolOptions::default()).expect_err("refused");
        let shown = format!("{error} {:?}", error.denial());
        assert!(!shown.contains("hunter2") && !shown.contains("host"), "{shown}");
    }
}

/// The server's own certificate, where Debian puts it, when the server has TLS on.
async fn server_certificate(db: &TestDb) -> Option<&'static str> {
    const SNAKEOIL: &str = "/etc/ssl/certs/ssl-cert-snakeoil.pem";
    let ssl: String = db.client.query_one("SHOW ssl", &[]).await.expect("show ssl").get(0);
    let file: String = db.client.query_one("SHOW ssl_cert_file", &[]).await.expect("show").get(0);
    if ssl == "on" && file == SNAKEOIL && std::path::Path::new(SNAKEOIL).exists() {
        Some(SNAKEOIL)
    } else {
        // `.ci/run` gives the server this certificate: with the databases required, a server
        // without it is a failure, never a skip.
        assert!(!databases::required(), "the PostgreSQL server has no TLS with {SNAKEOIL}");
        eprintln!("skipped: the server has no TLS with {SNAKEOIL}");
        None
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_certificates_are_verified() {
    let Some(db) = TestDb::create("CREATE VIEW tls AS SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid();").await
    else {
        return;
    };
    let Some(certificate) = server_certificate(&db).await else { return };
    if !std::path::Path::new("/etc/ssl/certs/ISRG_Root_X1.pem").exists() {
        assert!(!databases::required(), "no unrelated CA certificate (ca-certificates) to test against");
        eprintln!("skipped: no unrelated CA certificate to test against");
        return;
    }
    let allow = AllowList::new(SqlDialect::Postgres, "public").table("public", "tls");
    let localhost = TestDb::url_of(&db.name).replace("127.0.0.1", "localhost");
    let connect = |url: String| {
        let adapter = PostgresAdapter::connect(&url, allow.clone(), PoolOptions::default()).expect("adapter");
        Service::new(Arc::new(adapter), allow.clone(), ReadLimits::default())
    };
    let query = json!({"query": "SELECT ssl FROM tls"});

    let trusted = connect(format!("{localhost}?sslmode=verify-full&sslrootcert={certificate}"));
    assert_eq!(trusted.read(query.clone()).await["rows"], json!([[true]]), "the connection is encrypted");

    // Another CA than the one that signed the server's certificate: the chain does not verify.
    let other_ca = "/etc/ssl/certs/ISRG_Root_X1.pem";
    // The right CA, but the certificate names localhost, not 127.0.0.1: the name does not.
    let by_address = TestDb::url_of(&db.name);
    for untrusted in [
        format!("{localhost}?sslmode=require&sslrootcert={other_ca}"),
        format!("{localhost}?sslrootcert={other_ca}"),
        format!("{by_address}?sslmode=require&sslrootcert={certificate}"),
    ] {
        let (code, message) = refusal(connect(untrusted.clone()).call("query_read", query.clone()).await);
        assert_eq!(code, DenialCode::DbError, "{untrusted}");
        assert!(message.contains("TLS certificate could not be verified"), "{untrusted}: {message}");
    }
    let plain = connect(format!("{localhost}?sslmode=disable"));
    assert_eq!(plain.read(query).await["rows"], json!([[false]]));
}

/// A database on another machine (here, this machine's own non-loopback address) is reached
/// only over verified TLS unless the URL names another `sslmode`: a server that answers "no
/// TLS" is refused before anything is sent in plain text. With `sslmode=disable` it works
/// (relayed to the real server), and `sqlwarden check` reports it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_on_another_machine_is_not_reached_in_plain_text_unless_asked() {
    let Some(db) = TestDb::create("CREATE TABLE t (id int); INSERT INTO t VALUES (1);").await else { return };
    let Some(address) = databases::another_machine() else { return };
    let allow = AllowList::new(SqlDialect::Postgres, "public").table("public", "t");
    let connect = |url: String| {
        let adapter = PostgresAdapter::connect(&url, allow.clone(), PoolOptions::default()).expect("adapter");
        Service::new(Arc::new(adapter), allow.clone(), ReadLimits::default())
    };
    let query = json!({"query": "SELECT id FROM t"});
    // A server without TLS: it answers the TLS request with "N", and records what follows.
    let listener = tokio::net::TcpListener::bind((address, 0)).await.expect("bind");
    let port = listener.local_addr().expect("address").port();
    let plain_text_seen = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let seen = Arc::clone(&plain_text_seen);
    let server = tokio::spawn(async move {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        while let Ok((mut stream, _)) = listener.accept().await {
            let mut request = [0u8; 8];
            if stream.read_exact(&mut request).await.is_err() {
                continue;
            }
            let _ = stream.write_all(b"N").await;
            let mut more = [0u8; 64];
            if matches!(stream.read(&mut more).await, Ok(n) if n > 0) {
                seen.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            }
        }
    });
    let fake = format!("postgres://postgres@{address}:{port}/{}", db.name);
    let (code, message) = refusal(connect(fake.clone()).call("query_read", query.clone()).await);
    assert_eq!(code, DenialCode::DbError);
    assert!(message.contains("TLS"), "{message}");
    assert_eq!(plain_text_seen.load(std::sync::atomic::Ordering::SeqCst), 0, "nothing went out in plain text");
    // The explicit opt-out does go in plain text (the fake then hangs up).
    let _ = connect(format!("{fake}?sslmode=disable")).call("query_read", query.clone()).await;
    assert!(plain_text_seen.load(std::sync::atomic::Ordering::SeqCst) > 0, "sslmode=disable is plain text");
    server.abort();

    let target = databases::host_of(&TestDb::url_of(&db.name), "127.0.0.1:5432");
    let relay = Relay::start_on(address, 0, target.clone()).await;
    let relayed = TestDb::url_of(&db.name).replace(&target, &format!("{address}:{}", relay.port));
    let plain = format!("{relayed}?sslmode=disable");
    assert_eq!(connect(plain.clone()).read(query.clone()).await["rows"], json!([[1]]));
    let config =
        format!("[database]\nurl = \"{plain}\"\n[allowlist]\ntables = [\"t\"]\n[audit]\npath = \"/dev/null\"\n");
    let config = sqlwarden::config::Config::parse(&config, "test.toml", |_| None).expect("valid");
    let checked = sqlwarden::service::check(config).await.expect("checked");
    assert!(checked.posture.findings.iter().any(|f| f.contains("unencrypted")), "{:?}", checked.posture.findings);
    // Through the same relay with no sslmode, TLS is required (and this certificate does not
    // name the address): refused.
    let (code, _) = refusal(connect(relayed).call("query_read", query).await);
    assert_eq!(code, DenialCode::DbError);
}

/// What a function of an allow-listed view sets outside the read's transaction (a session
/// advisory lock, the random seed), which its rollback does not undo, is not left to the next
/// call: a connection that ran such a read is closed, not pooled.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_call_sees_session_state_an_earlier_call_left() {
    let fixture = "
        CREATE TABLE t (id int); INSERT INTO t VALUES (1);
        CREATE FUNCTION plant() RETURNS int LANGUAGE plpgsql AS $$
            BEGIN PERFORM pg_catalog.setseed(0.5); PERFORM pg_catalog.pg_advisory_lock(4242); RETURN 1; END $$;
        CREATE VIEW plant AS SELECT public.plant() AS planted;
    ";
    let Some(db) = TestDb::create(fixture).await else { return };
    // What random() gives first after setseed(0.5), as a session of its own shows.
    db.client.batch_execute("SELECT setseed(0.5)").await.expect("seed");
    let seeded: f64 = db.client.query_one("SELECT random()", &[]).await.expect("random").get(0);
    let allow = AllowList::new(SqlDialect::Postgres, "public").table("public", "t").table("public", "plant");
    // One connection: were it pooled, the next call would get the very session the view used.
    let one = PoolOptions { max_connections: 1, ..PoolOptions::default() };
    let adapter = PostgresAdapter::connect(&db.url(), allow.clone(), one).expect("adapter");
    let service = Service::new(Arc::new(adapter), allow, ReadLimits::default());
    for _ in 0..3 {
        assert_eq!(service.read(json!({"query": "SELECT planted FROM plant"})).await["rows"], json!([[1]]));
        let next = service.read(json!({"query": "SELECT random() AS r FROM t"})).await;
        assert_ne!(next["rows"][0][0].as_f64(), Some(seeded), "the next call drew from the seed the view set");
        let started = Instant::now();
        loop {
            let held: i64 = db
                .client
                .query_one("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND objid = 4242", &[])
                .await
                .expect("locks")
                .get(0);
            if held == 0 {
                break;
            }
            assert!(started.elapsed() < Duration::from_secs(5), "the view's advisory lock outlived its call");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    // Reads of plain tables keep their connection: the same backend serves them all.
    let backends = || async {
        let rows = db
            .client
            .query(
                "SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND application_name = 'sqlwarden' \
                 ORDER BY pid",
                &[],
            )
            .await
            .expect("activity");
        rows.iter().map(|row| row.get::<_, i32>(0)).collect::<Vec<_>>()
    };
    let before = backends().await;
    for _ in 0..5 {
        service.read(json!({"query": "SELECT id FROM t"})).await;
    }
    assert_eq!(backends().await, before, "a read of a plain table closed its connection");
    assert_eq!(before.len(), 1);
}

/// Log lines written while a test runs, on this thread.
#[derive(Clone, Default)]
struct Captured(Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().expect("log lock").extend_from_slice(bytes);
        Ok(bytes.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// An operator can see why the database failed: the cause of a database error is logged once
/// at warn, with the tool and the session, free of the values involved (a parameter the
/// server quoted is not in it); an unreachable database says why.
#[tokio::test(flavor = "current_thread")]
async fn the_cause_of_a_database_error_is_logged_once_without_values() {
    let Some((_db, service)) = shop().await else { return };
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_max_level(tracing::Level::WARN)
        .with_ansi(false)
        .finish();
    let _logging = tracing::subscriber::set_default(subscriber);
    let secret = "secret-parameter-value";
    let (code, _) = refusal(
        service.call("query_read", json!({"query": "SELECT CAST($1 AS integer) AS n", "params": [secret]})).await,
    );
    assert_eq!(code, DenialCode::InvalidInput);
    let unreachable = PostgresAdapter::connect(
        "postgres://postgres@127.0.0.1:1/nothing?connect_timeout=2",
        shop_allow(),
        PoolOptions { connect_timeout: Duration::from_secs(2), ..PoolOptions::default() },
    )
    .expect("adapter");
    let down = Service::new(Arc::new(unreachable), shop_allow(), ReadLimits::default());
    let (code, _) = refusal(down.call("query_read", json!({"query": "SELECT id FROM customers"})).await);
    assert_eq!(code, DenialCode::DbError);
    let log = String::from_utf8(captured.0.lock().expect("log lock").clone()).expect("utf-8");
    let lines: Vec<&str> = log.lines().filter(|line| line.contains("the database call failed")).collect();
    assert_eq!(lines.len(), 2, "one line per failure: {log}");
    assert!(lines[0].contains("WARN") && lines[0].contains("query_read") && lines[0].contains("session="), "{log}");
    assert!(lines[0].contains("SQLSTATE 22P02"), "the cause, by its code: {log}");
    assert!(lines[1].contains("refused"), "why the database is unreachable: {log}");
    assert!(!log.contains(secret), "no value in the log: {log}");
}

/// A login role of the test's own, dropped after the databases that mention it.
struct TestRole(String);

impl Drop for TestRole {
    fn drop(&mut self) {
        admin_statement(format!("DROP ROLE IF EXISTS {}", self.0));
    }
}

/// A second role that may create objects in the default schema plants functions, operators and
/// an aggregate there that shadow built-ins for the exact argument types a query uses (the
/// CVE-2018-1058 mechanism: an exact match beats an implicit cast, whatever the search path's
/// order). Each raises an error if it ever runs. No read runs any of them, no result changes,
/// introspection still works, and naming them with their schema is refused by the gate.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn objects_planted_in_the_default_schema_never_run_in_a_read() {
    let planter = TestRole(format!("sqlwarden_planter_{}", unique_suffix()));
    let Some((db, service)) = shop().await else { return };
    let queries = [
        "SELECT lower(email) FROM customers WHERE id = 1",
        "SELECT upper(email::varchar), length(email) FROM customers WHERE id = 1",
        "SELECT id FROM customers WHERE email = 'ada@example.com'::varchar",
        "SELECT email || email::varchar AS twice FROM customers WHERE id = 1",
        "SELECT max(email) AS most, count(*) FROM customers",
        "SELECT abs(id::smallint), substr(email, 1, 3) FROM customers WHERE id = 1",
        "SELECT id FROM customers WHERE email LIKE 'ada%' ORDER BY id",
        "SELECT trim(name::varchar), md5(email) FROM customers WHERE id = 1",
    ];
    let mut before = Vec::new();
    for query in queries {
        before.push(service.read(json!({"query": query})).await["rows"].clone());
    }
    db.admin.batch_execute(&format!("CREATE ROLE {} LOGIN", planter.0)).await.expect("role");
    let planted = |signature: &str, returns: &str| {
        format!(
            "CREATE FUNCTION public.{signature} RETURNS {returns} LANGUAGE plpgsql AS \
             $$ BEGIN RAISE EXCEPTION 'planted code ran'; END $$;"
        )
    };
    let plant = [
        format!("GRANT CREATE, USAGE ON SCHEMA public TO {0}; SET ROLE {0};", planter.0),
        planted("lower(varchar)", "text"),
        planted("upper(varchar)", "text"),
        planted("length(varchar)", "integer"),
        planted("abs(smallint)", "smallint"),
        planted("substr(varchar, integer, integer)", "text"),
        planted("trim(varchar)", "text"),
        planted("btrim(varchar)", "text"),
        planted("md5(varchar)", "text"),
        planted("planted_eq(varchar, varchar)", "boolean"),
        planted("planted_concat(varchar, varchar)", "text"),
        planted("planted_like(varchar, text)", "boolean"),
        planted("planted_max(varchar, varchar)", "varchar"),
        "CREATE OPERATOR public.= (LEFTARG = varchar, RIGHTARG = varchar, FUNCTION = public.planted_eq);".into(),
        "CREATE OPERATOR public.|| (LEFTARG = varchar, RIGHTARG = varchar, FUNCTION = public.planted_concat);".into(),
        "CREATE OPERATOR public.~~ (LEFTARG = varchar, RIGHTARG = text, FUNCTION = public.planted_like);".into(),
        "CREATE AGGREGATE public.max(varchar) (SFUNC = public.planted_max, STYPE = varchar);".into(),
        "RESET ROLE;".into(),
    ];
    db.client.batch_execute(&plant.concat()).await.expect("planted");
    // Planted, they would run: the exact match wins with the default schema on the path.
    let shadowed = db
        .client
        .batch_execute("SET search_path = pg_catalog, public; SELECT lower(email) FROM customers WHERE id = 1");
    let error = shadowed.await.expect_err("the planted function runs with the schema on the path");
    assert!(format!("{error:?}").contains("planted code ran"), "{error:?}");
    db.client.batch_execute("RESET search_path").await.expect("reset");
    for (query, expected) in queries.iter().zip(&before) {
        let result = service.call("query_read", json!({"query": query})).await;
        assert_eq!(&result.unwrap_or_else(|denial| panic!("{query}: {denial:?}"))["rows"], expected, "{query}");
    }
    assert!(service.call("list_tables", json!({})).await.is_ok());
    assert!(service.call("describe_table", json!({"table": "customers"})).await.is_ok());
    for named in [
        "SELECT public.lower(email) FROM customers",
        "SELECT email OPERATOR(public.=) email FROM customers",
        "SELECT public.max(email) FROM customers",
    ] {
        let (code, message) = refusal(service.call("query_read", json!({"query": named})).await);
        assert_eq!(code, DenialCode::QueryRejected, "{named}: {message}");
    }
    // `sqlwarden check` names who besides the owner may create in an allow-listed schema.
    let text = format!(
        "[database]\nurl = \"{}\"\n[allowlist]\nschemas = [\"public\"]\ntables = [\"customers\"]\n\
         [audit]\npath = \"/dev/null\"\n",
        db.url()
    );
    let config = sqlwarden::config::Config::parse(&text, "test.toml", |_| None).expect("valid");
    let checked = sqlwarden::service::check(config).await.expect("checked");
    let finding = format!("{} can create objects in schema public", planter.0);
    assert!(checked.posture.findings.contains(&finding), "{:?}", checked.posture.findings);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_reports_what_the_role_may_do_beyond_reading() {
    let role = TestRole(format!("sqlwarden_reader_{}", unique_suffix()));
    let Some(db) = TestDb::create(SHOP).await else { return };
    db.admin.batch_execute(&format!("CREATE ROLE {} LOGIN", role.0)).await.expect("role");
    db.client
        .batch_execute(&format!(
            "GRANT USAGE ON SCHEMA public TO {0}; GRANT SELECT ON customers, orders TO {0};",
            role.0
        ))
        .await
        .expect("grants");
    let config = |url: String| {
        let text = format!(
            "[database]\nurl = \"{url}\"\n[allowlist]\nschemas = [\"public\"]\ntables = [\"customers\", \"orders\"]\n\
             [audit]\npath = \"/dev/null\"\n"
        );
        sqlwarden::config::Config::parse(&text, "test.toml", |_| None).expect("valid")
    };

    let reader_url = db.url().replace("postgres@", &format!("{}@", role.0));
    let reader = sqlwarden::service::check(config(reader_url)).await.expect("checked");
    assert_eq!(reader.posture.role, role.0);
    assert_eq!(reader.posture.findings, Vec::<String>::new(), "a role granted SELECT only may only read");
    assert_eq!(reader.visible_tables, 2);

    let superuser = sqlwarden::service::check(config(db.url())).await.expect("checked");
    assert!(superuser.posture.findings.iter().any(|f| f == "it is a superuser"), "{:?}", superuser.posture.findings);
    assert!(superuser.posture.findings.iter().any(|f| f == "it can change table public.customers"));
    assert!(
        !superuser.posture.findings.iter().any(|f| f.contains("secrets")),
        "tables outside the allow-list are not named"
    );

    db.client.batch_execute(&format!("GRANT UPDATE ON orders TO {}", role.0)).await.expect("grant");
    let writer_url = db.url().replace("postgres@", &format!("{}@", role.0));
    let writer = sqlwarden::service::check(config(writer_url)).await.expect("checked");
    assert_eq!(writer.posture.findings, ["it can change table public.orders"]);
    drop(db);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_stdio_server_serves_a_configured_database() {
    let Some(db) = TestDb::create(SHOP).await else { return };
    let audit = std::env::temp_dir().join(format!("sqlwarden-audit-{}.jsonl", unique_suffix()));
    let config = databases::ConfigFile::new(&format!(
        "[database]\nurl_env = \"SQLWARDEN_TEST_URL\"\n[allowlist]\nschemas = [\"public\"]\ntables = [\"customers\"]\n\
         [[grants]]\ntool = \"query_read\"\n[audit]\npath = \"{}\"\n",
        audit.display()
    ));
    // The URL reaches the server through its environment, as url_env intends.
    let mut server =
        databases::McpProcess::start_with_env(&["--config", &config.path()], &[("SQLWARDEN_TEST_URL", &db.url())]);
    server.initialize();
    let listed = server.request("tools/list", json!({}));
    assert_eq!(listed["result"]["tools"].as_array().map(Vec::len), Some(1), "only the granted tool is listed");
    let rows = server.call("query_read", json!({"query": "SELECT name FROM customers WHERE id = $1", "params": [1]}));
    assert_eq!(rows["structuredContent"]["rows"], json!([["Ada"]]));
    // `json` keeps the line breaks it was given; the answer is still one line of JSON.
    let spread = server.call("query_read", json!({"query": "SELECT '{\"a\":\n\t[1,\r\n 2]}'::json AS j"}));
    assert_eq!(spread["structuredContent"]["rows"], json!([[{"a": [1, 2]}]]));
    let text = databases::unframe(spread["content"][0]["text"].as_str().expect("text"));
    assert_eq!(text, spread["structuredContent"]);
    let hidden = server.call("query_read", json!({"query": "SELECT * FROM secrets"}));
    assert_eq!(hidden["structuredContent"]["code"], json!("QUERY_REJECTED"));
    let ungranted = server.call("describe_table", json!({"table": "customers"}));
    assert_eq!(ungranted["structuredContent"]["code"], json!("UNAUTHORIZED"));
    assert_eq!(server.finish(), Some(0));
    let records = std::fs::read_to_string(&audit).expect("audit file");
    let _ = std::fs::remove_file(&audit);
    assert!(records.lines().count() >= 10, "every decision is audited to the configured file");
    assert!(!records.contains("Ada") && !records.contains("hunter2"), "no row values in the audit");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancelled_mcp_request_stops_its_statement() {
    let Some(db) = TestDb::create(SHOP).await else { return };
    let config = databases::ConfigFile::new(&format!(
        "[database]\nurl = \"{}\"\n[allowlist]\nschemas = [\"public\"]\ntables = [\"slow\", \"customers\"]\n\
         [[grants]]\ntool = \"query_read\"\n[audit]\npath = \"/dev/null\"\n",
        db.url()
    ));
    let mut server = databases::McpProcess::start(&["--config", &config.path()]);
    server.initialize();
    server.send_line(
        &json!({"jsonrpc": "2.0", "id": 500, "method": "tools/call",
                "params": {"name": "query_read", "arguments": {"query": "SELECT * FROM slow", "timeout_ms": 30000}}})
        .to_string(),
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(db.running(SLOW).await, 1, "the statement runs until the request is cancelled");
    server.send_line(
        r#"{"jsonrpc":"2.0","method":"notifications/cancelled","params":{"requestId":500,"reason":"test"}}"#,
    );
    assert!(db.gone_within(SLOW, Duration::from_secs(1)).await.is_some(), "the statement still runs");
    let next = server.call("query_read", json!({"query": "SELECT count(*) AS n FROM customers"}));
    assert_eq!(next["structuredContent"]["rows"], json!([[3]]));
    assert_eq!(server.finish(), Some(0));
}

/// Over HTTP, a session's tool call is stopped on the database when the client cancels it
/// (`notifications/cancelled`, answered on its POST with the cancelled error) and when the client
/// closes the connection it waits on; the session serves the next call either way.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_http_call_stops_its_statement_when_cancelled_or_abandoned() {
    let Some(db) = TestDb::create(SHOP).await else { return };
    let port =
        std::net::TcpListener::bind("127.0.0.1:0").and_then(|free| free.local_addr()).expect("a free port").port();
    let config = databases::ConfigFile::new(&format!(
        "[database]\nurl = \"{}\"\n[allowlist]\nschemas = [\"public\"]\ntables = [\"slow\", \"customers\"]\n\
         [[grants]]\ntool = \"query_read\"\n[audit]\npath = \"/dev/null\"\n[http]\nlisten = \"127.0.0.1:{port}\"\n",
        db.url()
    ));
    let mut server = std::process::Command::new(env!("CARGO_BIN_EXE_sqlwarden"))
        .args(["serve", "--config", &config.path()])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("the server starts");
    let post = move |session: Option<String>, message: Value| http_post(port, session.as_deref(), &message);
    let session = tokio::task::spawn_blocking(move || {
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "the server did not listen");
            std::thread::sleep(Duration::from_millis(50));
        }
        let (status, session, _) = post(None, json!({"jsonrpc": "2.0", "id": 0, "method": "initialize",
            "params": {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}}}));
        assert_eq!(status, 200);
        let session = session.expect("a session id");
        post(Some(session.clone()), json!({"jsonrpc": "2.0", "method": "notifications/initialized"}));
        session
    })
    .await
    .expect("the session opens");
    let slow_call = json!({"jsonrpc": "2.0", "id": 7, "method": "tools/call",
        "params": {"name": "query_read", "arguments": {"query": "SELECT * FROM slow", "timeout_ms": 30000}}});

    let waiting = {
        let (session, call) = (session.clone(), slow_call.clone());
        tokio::task::spawn_blocking(move || post(Some(session), call))
    };
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(db.running(SLOW).await, 1, "the statement runs until the request is cancelled");
    let cancel = json!({"jsonrpc": "2.0", "method": "notifications/cancelled", "params": {"requestId": 7}});
    let (status, _, _) = {
        let session = session.clone();
        tokio::task::spawn_blocking(move || post(Some(session), cancel)).await.expect("the cancel is sent")
    };
    assert_eq!(status, 202);
    assert!(db.gone_within(SLOW, Duration::from_secs(2)).await.is_some(), "the cancelled statement still runs");
    let (status, _, answer) = waiting.await.expect("the call is answered");
    assert_eq!((status, answer["error"]["message"].clone()), (200, json!("the request was cancelled")), "{answer}");

    let abandoned = {
        let (session, call) = (session.clone(), slow_call.to_string());
        std::thread::spawn(move || {
            use std::io::Write;
            let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connects");
            let head = format!(
                "POST /mcp HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\n\
                 Accept: application/json\r\nMcp-Session-Id: {session}\r\nContent-Length: {}\r\n\r\n",
                call.len()
            );
            stream.write_all(format!("{head}{call}").as_bytes()).expect("the call is sent");
            stream
        })
    };
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(db.running(SLOW).await, 1, "the statement runs while its client waits");
    drop(abandoned.join().expect("the call was sent"));
    assert!(db.gone_within(SLOW, Duration::from_secs(2)).await.is_some(), "an abandoned statement still runs");

    let next = json!({"jsonrpc": "2.0", "id": 8, "method": "tools/call",
        "params": {"name": "query_read", "arguments": {"query": "SELECT count(*) AS n FROM customers"}}});
    let (status, _, answer) = tokio::task::spawn_blocking(move || post(Some(session), next)).await.expect("answered");
    assert_eq!((status, answer["result"]["structuredContent"]["rows"].clone()), (200, json!([[3]])), "{answer}");
    let _ = server.kill();
    let _ = server.wait();
}

/// One POST to `/mcp` on a connection of its own: the status, the `Mcp-Session-Id` answered,
/// and the JSON body (null when there is none).
fn http_post(port: u16, session: Option<&str>, message: &Value) -> (u16, Option<String>, Value) {
    use std::io::{Read, Write};
    let body = message.to_string();
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connects");
    stream.set_read_timeout(Some(Duration::from_secs(60))).expect("a read timeout");
    let session = session.map(|id| format!("Mcp-Session-Id: {id}\r\n")).unwrap_or_default();
    let request = format!(
        "POST /mcp HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\n\
         Accept: application/json, text/event-stream\r\n{session}Connection: close\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).expect("the request is sent");
    let mut answer = String::new();
    stream.read_to_string(&mut answer).expect("the answer is read");
    let (head, body) = answer.split_once("\r\n\r\n").unwrap_or((&answer, ""));
    let status = head.split(' ').nth(1).and_then(|code| code.parse().ok()).unwrap_or(0);
    let session = head
        .lines()
        .find_map(|line| line.split_once(':').filter(|(name, _)| name.eq_ignore_ascii_case("mcp-session-id")))
        .map(|(_, value)| value.trim().to_owned());
    (status, session, serde_json::from_str(body).unwrap_or(Value::Null))
}

/// Every denial code a read-only stdio session can meet, end to end through the server.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_denial_code_comes_back_as_a_structured_tool_error() {
    let Some(db) = TestDb::create(SHOP).await else { return };
    let config = databases::ConfigFile::new(&format!(
        "[database]\nurl = \"{}\"\n[allowlist]\nschemas = [\"public\"]\ntables = [\"customers\", \"orders\", \"slow\"]\n\
         [limits]\nmax_result_bytes = 2000\n[quotas]\nrate_per_minute = 60\nburst = 9\n\
         [[grants]]\ntool = \"query_read\"\n[audit]\npath = \"/dev/null\"\n",
        db.url()
    ));
    let mut server = databases::McpProcess::start(&["--config", &config.path()]);
    server.initialize();
    let mut code = |tool: &str, arguments: Value| {
        let result = server.call(tool, arguments);
        assert_eq!(result["isError"], json!(true), "{result}");
        result["structuredContent"]["code"].as_str().expect("a code").to_owned()
    };
    assert_eq!(code("nope", json!({})), "TOOL_NOT_FOUND");
    assert_eq!(code("describe_table", json!({"table": "customers"})), "UNAUTHORIZED");
    assert_eq!(code("query_read", json!({"query": "SELECT 1", "limit": 0})), "INVALID_INPUT");
    assert_eq!(code("query_read", json!({"query": "DELETE FROM customers"})), "QUERY_REJECTED");
    assert_eq!(code("query_read", json!({"query": "SELECT nme FROM customers"})), "DB_ERROR");
    assert_eq!(code("query_read", json!({"query": "SELECT * FROM slow", "timeout_ms": 200})), "TIMEOUT");
    assert_eq!(code("query_read", json!({"query": "SELECT * FROM orders", "limit": 1000})), "RESULT_TOO_LARGE");
    // Five calls above were admitted, each spending a token; the burst of 9 runs out below.
    let mut last = String::new();
    for _ in 0..5 {
        last = code("query_read", json!({"query": "SELECT nme FROM customers"}));
    }
    assert_eq!(last, "RATE_LIMITED");
    assert_eq!(server.finish(), Some(0));
}

const LEDGER: &str = "CREATE TABLE ledger (id serial PRIMARY KEY, note text NOT NULL);
    INSERT INTO ledger (note) VALUES ('a'), ('b'), ('c');";

impl databases::LedgerProbe for TestDb {
    async fn state(&mut self) -> (i64, i64) {
        let row = self
            .client
            .query_one("SELECT count(*), count(*) FILTER (WHERE note LIKE '%!') FROM ledger", &[])
            .await
            .expect("ledger state");
        (row.get(0), row.get(1))
    }

    async fn open_transactions(&mut self) -> i64 {
        let row = self
            .admin
            .query_one(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = $1 AND state LIKE 'idle in transaction%'",
                &[&self.name],
            )
            .await
            .expect("pg_stat_activity");
        row.get(0)
    }
}

#[tokio::test]
async fn write_tools_commit_exactly_what_they_declare_and_nothing_else() {
    let Some(mut db) = TestDb::create(LEDGER).await else { return };
    let adapter: Arc<dyn sqlwarden::adapter::Adapter> = db.adapter(AllowList::new(SqlDialect::Postgres, "public"));
    databases::exercise_write_tools(adapter, &mut db).await;
}

/// `examples/write_controlled.rs` over MCP, configured by files as an operator would.
#[test]
fn the_write_controlled_example_adds_one_customer_only_when_mode_and_grant_allow() {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    let Some(db) = runtime.block_on(TestDb::create(
        "CREATE TABLE customers (id serial PRIMARY KEY, name text NOT NULL, email text NOT NULL UNIQUE);
         INSERT INTO customers (name, email) VALUES ('Ada', 'ada@example.com');",
    )) else {
        return;
    };
    let count = || -> i64 {
        runtime.block_on(db.client.query_one("SELECT count(*) FROM customers", &[])).expect("count").get(0)
    };
    databases::check_write_controlled_example(&db.url(), "public", count);
}

/// `examples/postgres_introspection.rs` over MCP: its tool reports the allow-listed tables'
/// indexes, and nothing of the others.
#[test]
fn the_introspection_example_reports_indexes_of_allowed_tables_only() {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    let Some(db) = runtime.block_on(TestDb::create(
        "CREATE TABLE customers (id int PRIMARY KEY, email text UNIQUE);
         CREATE TABLE secrets (id int PRIMARY KEY, value text);
         CREATE INDEX secrets_by_value ON secrets (value);
         INSERT INTO customers SELECT n, 'c' || n || '@example.com' FROM generate_series(1, 100) AS n;",
    )) else {
        return;
    };
    let config = databases::ConfigFile::new(&format!(
        "[database]\nurl = \"{}\"\n[allowlist]\nschemas = [\"public\"]\ntables = [\"customers\"]\n\
         [[grants]]\ntool = \"index_usage\"\n[audit]\npath = \"/dev/null\"\n",
        db.url()
    ));
    let example = databases::example("postgres_introspection");
    let mut server = databases::McpProcess::spawn(&example, &["--config", &config.path()], &[]);
    server.initialize();
    let report = server.call("index_usage", json!({}));
    assert_eq!(report["isError"], json!(false), "{report}");
    let indexes = report["structuredContent"]["indexes"].as_array().expect("indexes").clone();
    let mut names: Vec<&str> = indexes.iter().map(|index| index["index"].as_str().expect("name")).collect();
    names.sort_unstable();
    assert_eq!(names, ["customers_email_key", "customers_pkey"], "the secrets table's indexes stay hidden");
    assert!(indexes.iter().all(|index| index["table"] == "customers" && index["pages"].is_i64()));
    let one = server.call("index_usage", json!({"table": "customers"}));
    assert_eq!(one["structuredContent"]["indexes"].as_array().map(Vec::len), Some(2));
    for refused in [json!({"table": "secrets"}), json!({"table": "pg_authid"})] {
        let denied = server.call("index_usage", refused.clone());
        assert_eq!(denied["structuredContent"]["code"], json!("QUERY_REJECTED"), "{refused}");
    }
    let unknown_field = server.call("index_usage", json!({"schema": "pg_catalog"}));
    assert_eq!(unknown_field["structuredContent"]["code"], json!("INVALID_INPUT"));
    assert_eq!(server.finish(), Some(0));
}

/// Large values: one of 12 MB (more than any result may hold), five of 2 MB (10 MB together),
/// and one of 4 MB to compute over.
const BLOBS: &str = "
    CREATE TABLE blobs (id int PRIMARY KEY, body text NOT NULL);
    ALTER TABLE blobs ALTER COLUMN body SET STORAGE EXTERNAL;
    INSERT INTO blobs SELECT 1, repeat('x', 12000000);
    INSERT INTO blobs SELECT n, repeat(chr(64 + n), 2000000) FROM generate_series(2, 6) AS n;
    INSERT INTO blobs SELECT 7, repeat('abcd', 1000000);
";

fn blobs_allow() -> AllowList {
    AllowList::new(SqlDialect::Postgres, "public").table("public", "blobs")
}

/// The whole process, under `max_concurrent` (4) calls at a time of huge values, wide rows and
/// many rows, with the default limits: its peak memory stays within 64 MiB + 2 ×
/// `max_result_bytes` × `max_concurrent`, every call is answered within its time limit and a
/// second, `ping` is answered throughout, and its memory comes back once the calls are done.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn huge_values_and_wide_rows_stay_within_the_memory_bound_and_the_loop_answers() {
    let Some(db) = TestDb::create(BLOBS).await else { return };
    let audit = std::env::temp_dir().join(format!("sqlwarden-audit-{}.jsonl", unique_suffix()));
    let config = databases::ConfigFile::new(&format!(
        "[database]\nurl = \"{}\"\n[allowlist]\nschemas = [\"public\"]\ntables = [\"blobs\"]\n\
         [[grants]]\ntool = \"query_read\"\n[audit]\npath = \"{}\"\n",
        db.url(),
        audit.display()
    ));
    let wide = (0..70).map(|n| format!("repeat('a', 100000) AS c{n}")).collect::<Vec<_>>().join(", ");
    let cases = [
        ("SELECT body FROM blobs WHERE id = 1", "RESULT_TOO_LARGE"),
        ("SELECT body FROM blobs WHERE id BETWEEN 2 AND 6 ORDER BY id", "RESULT_TOO_LARGE"),
        ("SELECT repeat(chr(1), 1300000)", "ok"),
        ("SELECT repeat(chr(34), 3900000)", "ok"),
        (&format!("SELECT {wide}"), "ok"),
        ("SELECT repeat('x', 70000) FROM generate_series(1, 110)", "ok"),
        ("SELECT repeat(chr(1), 100000000)", "QUERY_REJECTED"),
        ("SELECT md5(body) FROM blobs ORDER BY id", "ok"),
    ];
    tokio::task::block_in_place(|| {
        databases::Probe::start(&["--config", &config.path()], &[], databases::Stderr::Null)
            .hold_the_memory_bound(&cases);
    });
    let _ = std::fs::remove_file(audit);
}

/// A row larger than any result may hold is refused as the server announces it, before it is
/// read, and the read is not tried again on another connection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_row_larger_than_any_result_is_refused_before_it_is_read_and_once() {
    let Some(db) = TestDb::create(BLOBS).await else { return };
    let target = databases::host_of(&admin_url(), "127.0.0.1:5432");
    let relay = Relay::start(0, target.clone()).await;
    let url = db.url().replace(&target, &format!("127.0.0.1:{}", relay.port));
    let options = PoolOptions { max_result_bytes: 500_000, ..PoolOptions::default() };
    let adapter = Arc::new(PostgresAdapter::connect(&url, blobs_allow(), options).expect("adapter"));
    let limits = ReadLimits { max_result_bytes: 500_000, ..ReadLimits::default() };
    let service = Service::new(adapter, blobs_allow(), limits);
    let (code, message) =
        refusal(service.call("query_read", json!({"query": "SELECT body FROM blobs WHERE id = 2"})).await);
    assert_eq!(code, DenialCode::ResultTooLarge);
    assert!(message.starts_with("a row is larger than 1548576 bytes"), "{message}");
    assert_eq!(relay.accepted.load(std::sync::atomic::Ordering::SeqCst), 1, "one connection, one try");
    // The pool carries on.
    assert_eq!(service.read(json!({"query": "SELECT id FROM blobs WHERE id = 7"})).await["rows"], json!([[7]]));
}

/// A statement PostgreSQL does not stop at its time limit (a long step: here, hundreds of
/// hashes of a 4 MB value in one row, which no cancel interrupts) keeps its caller's quota
/// slot after the caller has its `TIMEOUT`, until the database has really stopped it; then the
/// slot is free at once. A statement the database does stop is gone within a second.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_statement_that_outlives_its_timeout_keeps_its_quota_slot_until_it_ends() {
    let Some(db) = TestDb::create(BLOBS).await else { return };
    let service = Service::new(db.adapter(blobs_allow()), blobs_allow(), ReadLimits::default());
    let tag = format!("slow-{}", unique_suffix());
    let hashes = vec!["md5(body)"; 600].join(" || ");
    let query = format!("SELECT '{tag}' AS tag, length({hashes}) FROM blobs WHERE id = 7");
    let started = Instant::now();
    let (code, _) = refusal(service.call("query_read", json!({"query": query, "timeout_ms": 300})).await);
    assert_eq!(code, DenialCode::Timeout);
    assert!(started.elapsed() < Duration::from_secs(2), "answered at its deadline: {:?}", started.elapsed());
    tokio::time::sleep(Duration::from_millis(1000)).await;
    if db.running(&tag).await > 0 {
        assert_eq!(service.reads_in_flight(), 1, "still running on the database: the slot is held");
        let gone = db.gone_within(&tag, Duration::from_secs(120)).await.expect("the statement ends");
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(service.reads_in_flight(), 0, "released once the statement ended ({gone:?})");
    } else {
        assert_eq!(service.reads_in_flight(), 0);
    }
    // An interruptible statement past its time limit is gone within a second, slot and all.
    let counted = format!("counted-{}", unique_suffix());
    let endless = format!(
        "SELECT '{counted}' AS tag, count(*) FROM generate_series(1, 100000) AS a, generate_series(1, 100000) AS b"
    );
    let (code, _) = refusal(service.call("query_read", json!({"query": endless, "timeout_ms": 300})).await);
    assert_eq!(code, DenialCode::Timeout);
    assert!(db.gone_within(&counted, Duration::from_secs(1)).await.is_some(), "stopped within a second");
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(service.reads_in_flight(), 0);
}

/// A read whose backend an operator terminates is an error at once, saying it was not run
/// again; and it is not run again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_ended_by_the_database_is_an_error_at_once_and_is_not_run_again() {
    let Some(db) = TestDb::create(BLOBS).await else { return };
    let service = Arc::new(Service::new(db.adapter(blobs_allow()), blobs_allow(), ReadLimits::default()));
    let tag = format!("killed-{}", unique_suffix());
    let endless = format!(
        "SELECT '{tag}' AS tag, count(*) FROM generate_series(1, 100000) AS a, generate_series(1, 100000) AS b"
    );
    let call = {
        let service = Arc::clone(&service);
        tokio::spawn(async move { service.call("query_read", json!({"query": endless, "timeout_ms": 30000})).await })
    };
    let start = Instant::now();
    while db.running(&tag).await == 0 {
        // A bound on liveness, not a figure: on a loaded machine the read may take a while to
        // start, and if it ends before it was seen, what it answered is the diagnosis.
        if call.is_finished() {
            panic!("the read ended before it was seen running: {:?}", call.await);
        }
        assert!(start.elapsed() < Duration::from_secs(30), "the read started");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let killed: i64 = db
        .admin
        .query_one(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE datname = $1 \
             AND query LIKE '%' || $2 || '%' AND pid <> pg_backend_pid()",
            &[&db.name, &tag],
        )
        .await
        .expect("terminate")
        .get(0);
    assert_eq!(killed, 1);
    let killed_at = Instant::now();
    let result = tokio::time::timeout(Duration::from_secs(5), call).await.expect("answered promptly").expect("joined");
    assert!(killed_at.elapsed() < Duration::from_secs(2), "answered {:?} after the kill", killed_at.elapsed());
    let (code, message) = refusal(result);
    assert_eq!(code, DenialCode::DbError);
    assert!(message.contains("it was not run again"), "{message}");
    for _ in 0..20 {
        assert_eq!(db.running(&tag).await, 0, "not run again");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_read_is_audited_with_its_fingerprint_tables_and_what_it_returned() {
    let Some((_db, service)) = shop().await else { return };
    databases::check_read_records(&service, "customers", "public.customers").await;
}

/// PostgreSQL's own ways to a ruled column: whole-row references and their functions, casts of
/// rows, column aliases on the table, LATERAL, `TABLE`, and its aggregates and operators.
const POSTGRES_COLUMN_BYPASSES: &[&str] = &[
    "SELECT \"ssn\" FROM people",
    "SELECT \"SSN\" FROM people",
    "SELECT public.people.ssn FROM people",
    "SELECT U&\"\\0073sn\" FROM people",
    "SELECT p FROM people p",
    "SELECT people FROM people",
    "SELECT row_to_json(p) AS j FROM people p",
    "SELECT to_jsonb(p) AS j FROM people p",
    "SELECT to_json(p.*) AS j FROM people p",
    "SELECT json_agg(p) AS j FROM people p",
    "SELECT array_agg(p) AS a FROM people p",
    "SELECT (p).ssn FROM people p",
    "SELECT (p).email FROM people p",
    "SELECT p::text AS t FROM people p",
    "SELECT id FROM people p WHERE p::text LIKE '%PLANTED%'",
    "SELECT id FROM people p WHERE (p.*)::text LIKE '%PLANTED%'",
    "SELECT ROW(p.*)::text AS r FROM people p",
    "SELECT x.f FROM people AS x(a, b, c, d, f)",
    "SELECT x.a FROM people AS x(a)",
    "SELECT l.s FROM people p, LATERAL (SELECT p.ssn AS s) l",
    "SELECT l.s FROM people p CROSS JOIN LATERAL (SELECT p.email AS s) l",
    "TABLE people",
    "SELECT array_agg(email) AS a FROM people",
    "SELECT string_agg(email, ',') AS a FROM people",
    "SELECT jsonb_build_object('e', email) AS j FROM people",
    "SELECT id FROM people WHERE email ~ '^ann'",
    "SELECT id FROM people WHERE email ILIKE 'ANN%'",
    "SELECT encode(convert_to(ssn, 'UTF8'), 'hex') AS h FROM people",
    "SELECT id FROM people WHERE email IS DISTINCT FROM NULL",
    "SELECT (SELECT p.email) AS e FROM people p",
    "SELECT DISTINCT ON (email) id FROM people",
    "SELECT id FROM people ORDER BY email USING <",
];

/// No query `query_read` accepts returns a denied value or an unmasked masked value, whatever
/// the way to it; refusals say `COLUMN_DENIED` with the column; masked columns come back
/// masked; `describe_table` hides denied columns.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn column_rules_hold_on_every_way_to_a_column() {
    let Some(db) = TestDb::create(databases::PEOPLE).await else { return };
    let allow = || {
        AllowList::new(SqlDialect::Postgres, "public").schema("public").columns(
            "public",
            "people",
            databases::people_rule(),
        )
    };
    let service = Service::new(db.adapter(allow()), allow(), ReadLimits::default());
    let (accepted, refused) = databases::column_rules_hold(&service, POSTGRES_COLUMN_BYPASSES).await;
    assert!(accepted >= 5 && refused >= 80, "accepted {accepted}, refused {refused}");
}

#[tokio::test]
async fn declared_tools_bind_typed_params_and_claims_and_cap_their_writes() {
    let Some(db) = TestDb::create(databases::TICKETS).await else { return };
    databases::exercise_declared_tools(&db.url(), SqlDialect::Postgres).await;
}

/// A declared write runs with only the system catalog on its search path (every table in its
/// statement is qualified by the gate): an operator planted in the default schema, here
/// `text = integer`, which the catalog lacks, is never picked, so the statement fails instead
/// of running the planter's function.
#[tokio::test]
async fn a_declared_write_never_runs_an_operator_planted_in_the_default_schema() {
    let fixture = format!(
        "{}CREATE TABLE spied (n integer);
         CREATE FUNCTION spy(text, integer) RETURNS boolean LANGUAGE sql
             AS 'INSERT INTO public.spied VALUES (1) RETURNING true';
         CREATE OPERATOR public.= (LEFTARG = text, RIGHTARG = integer, FUNCTION = spy);",
        databases::TICKETS
    );
    let Some(db) = TestDb::create(&fixture).await else { return };
    let config = format!(
        "[database]\nurl = \"{}\"\n[mode]\nread_only = false\n[allowlist]\ntables = [\"tickets\"]\n[audit]\npath = \"/dev/null\"\n\
         [[tools]]\nname = \"bump\"\ndescription = \"d\"\naccess = \"write\"\nmax_affected_rows = 5\n\
         statement = \"UPDATE tickets SET priority = 9 WHERE title = 5\"\n[[grants]]\ntool = \"bump\"\n",
        db.url()
    );
    let config = sqlwarden::config::Config::parse(&config, "test", |_| None).expect("config");
    let service = sqlwarden::service::Service::from_config(config).expect("service");
    let refused = service.call("bump", json!({})).await.expect_err("no such operator in the catalog");
    assert_eq!(refused.code(), DenialCode::DbError, "{}", refused.message());
    let spied: i64 = db.client.query_one("SELECT count(*) FROM spied", &[]).await.expect("count").get(0);
    assert_eq!(spied, 0, "the planted operator's function never ran");
    let bumped: i64 =
        db.client.query_one("SELECT count(*) FROM tickets WHERE priority = 9", &[]).await.expect("count").get(0);
    assert_eq!(bumped, 0);
}

/// `explain_query` plans without running: a view that sleeps 30 s is planned at once, and one
/// whose function writes is planned without the write being tried (in a read-only transaction
/// it would fail); the plan guard refuses before running, by rows and by cost
/// (`exercise_plans`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn explain_query_plans_without_running_and_the_plan_guard_refuses_before_running() {
    let Some(db) = TestDb::create(SHOP).await else { return };
    databases::exercise_plans(&db.url(), SqlDialect::Postgres, "SELECT count(*) FROM orders a, orders b").await;
    let service =
        databases::planning_service(&db.url(), &["slow", "sneaky", "orders", "customers"], "max_plan_cost = 100");
    let started = Instant::now();
    for query in ["SELECT * FROM slow", "SELECT * FROM sneaky"] {
        let plan = service.call("explain_query", json!({"query": query})).await.expect("planned, not run");
        assert!(plan.to_value().expect("JSON")["cost"].as_f64().is_some(), "{query}");
    }
    assert!(started.elapsed() < Duration::from_secs(20), "the 30 s sleep never ran");
    let events: i64 = db.client.query_one("SELECT count(*) FROM events", &[]).await.expect("count").get(0);
    assert_eq!(events, 0);
    let refused = service.call("query_read", json!({"query": "SELECT id FROM orders"})).await.expect_err("costly");
    assert_eq!(refused.code(), DenialCode::TooExpensive, "{}", refused.message());
    let read = service.call("query_read", json!({"query": "SELECT name FROM customers WHERE id = 1"})).await;
    assert_eq!(read.expect("cheap").to_value().expect("JSON")["rows"], json!([["Ada"]]));
}

/// PostgreSQL's own statistics say `explain_query` ran nothing: over one connection, the scans
/// of `orders` that `pg_stat_user_tables` counts grow by what a read of it adds when it runs, and
/// by no more when three plans of reads of it were asked for before that read.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_databases_statistics_show_no_scan_for_a_plan() {
    let Some(db) = TestDb::create(SHOP).await else { return };
    // One pooled connection: every call's statistics are flushed by the same server process,
    // so those of a plan cannot arrive after those of the read that follows it.
    let service = databases::planning_service(&db.url(), &["orders"], "");
    let scans = async || -> i64 {
        db.client.batch_execute("SELECT pg_stat_clear_snapshot()").await.expect("clear");
        let row = db
            .client
            .query_one("SELECT coalesce(seq_scan, 0) + coalesce(idx_scan, 0) FROM pg_stat_user_tables WHERE relname = 'orders'", &[])
            .await
            .expect("pg_stat_user_tables");
        row.get(0)
    };
    // One index scan, never a parallel one (whose workers count scans of their own).
    let read = json!({"query": "SELECT total FROM orders WHERE id = 7"});
    // Once a read's scans show, what one read adds; the server flushes a process's statistics
    // within about ten seconds of its last transaction.
    let settle = async |from: i64| -> i64 {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let now = scans().await;
            if now > from || Instant::now() > deadline {
                // A moment more, for a flush that comes in parts.
                tokio::time::sleep(Duration::from_millis(1500)).await;
                return scans().await;
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    };
    // The fixture's own scans (its index builds) are flushed first, so that they are not
    // taken for a read's.
    db.client.batch_execute("SELECT pg_stat_force_next_flush()").await.expect("flush");
    db.client.batch_execute("SELECT 1").await.expect("a transaction to flush at");
    let before = scans().await;
    service.call("query_read", read.clone()).await.expect("reads");
    let after_one = settle(before).await;
    let one_read = after_one - before;
    assert!(one_read > 0, "a read's scans are counted");
    for query in [
        "SELECT count(*) FROM orders WHERE total > 1",
        "SELECT count(*) FROM orders a, orders b",
        "SELECT id FROM orders",
    ] {
        service.call("explain_query", json!({"query": query})).await.expect("planned");
    }
    service.call("query_read", read).await.expect("reads");
    let after_two = settle(after_one).await;
    assert_eq!(after_two - after_one, one_read, "the plans added no scan");
}
