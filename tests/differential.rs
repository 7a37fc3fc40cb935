//! The gate against the engines: what the engine reads is what the gate checked. Queries made
//! of lexer-sensitive pieces (comments, quotes and escapes, `@`, `$`, `#`, numbers the dialects
//! read differently, ODBC escapes…) are validated, and each accepted one, as printed, is
//! prepared by the real engine. The engine must see the same result columns, by count and by
//! name (every item is aliased), as sqlparser sees in the printed text; on SQLite its
//! authorizer must report reading only the tables the gate found. A piece the engine lexes
//! differently shows up as a column too many or too few, a name that differs, or a table the
//! gate never saw.
#![cfg(all(feature = "postgres", feature = "mysql", feature = "sqlite"))]

mod databases;

use std::collections::BTreeSet;

use databases::{unavailable, unique_suffix};
use proptest::strategy::{Strategy, ValueTree};
use proptest::test_runner::TestRunner;
use sqlparser::ast::{SelectItem, SetExpr, Statement};
use sqlparser::dialect::{Dialect, MySqlDialect, PostgreSqlDialect, SQLiteDialect};
use sqlparser::parser::Parser;
use sqlwarden::sql::{AllowList, SqlDialect, SqlValidator, ValidatedQuery};

/// Pieces every dialect reads, and pieces one dialect reads its own way.
const COMMON: &[&str] = &[
    "t.id",
    "t.name",
    "1",
    "'a'",
    "'a''b'",
    "1e3",
    ".5",
    "3.",
    "1.5e+3",
    "t.id-1",
    "t.id - -1",
    "1/*c*/+1",
    "1 -- c\n",
    "upper(t.name)",
    "count(*) OVER ()",
    "CASE WHEN t.id = 1 THEN 'x' ELSE 'y' END",
    "(SELECT max(o.id) FROM orders AS o)",
    "coalesce(NULL, 1)",
    "'a' || 'b'",
    "X'41'",
];

const POSTGRES: &[&str] = &[
    "E'a\\nb'",
    "E'a\\'b'",
    "'a\\'",
    "$$a$$",
    "$q$a'b$q$",
    "U&'d\\0061t'",
    "B'101'",
    "t.id::text",
    "1::int + 1",
    "interval '1 day'",
    "date '2020-01-01'",
    "1 /* a /* nested */ b */ + 1",
    "t.id--1\n",
    "\"id\"",
    "\"t\".\"name\"",
    "ARRAY[1, 2]",
    "ROW(1, 'a')",
    "ARRAY(SELECT o.id FROM orders AS o)",
    "0x1F",
    "1_000",
    "$1",
];

const MYSQL: &[&str] = &[
    "'a\\'b'",
    "'a\\\\'",
    "'\\\\'",
    "\"a\"",
    "\"a\\\"b\"",
    "'a' 'b'",
    "_utf8mb4'a'",
    "N'a'",
    "0x1F",
    "b'01'",
    "0b1",
    "1--1",
    "1 # c\n",
    "/*!50000 1 */",
    "/*! 1 */",
    "/*M! 1 */",
    "1 DIV 2",
    "1 <=> 1",
    "`id`",
    "t.`name`",
    "{fn ucase('a')}",
    "{d '2020-01-01'}",
    "ROW(1, 2) = ROW(1, 2)",
    "1 MOD 2",
    "!0",
    "\\N",
    "t.id@x",
    "@@version",
    "DISTINCT@@version",
    "BINARY@@datadir",
    "t.id$x",
    "1e",
    "1ea",
];

const SQLITE: &[&str] = &[
    "\"id\"",
    "[id]",
    "t.[name]",
    "`id`",
    "x'41'",
    "'a\\'",
    "1 -- c\n",
    "$a",
    ":a",
    "@a",
    "?",
    "0x1F",
    "t.id->>'$.a'",
    "json_extract('{\"a\":1}', '$.a')",
];

fn pieces(dialect: SqlDialect) -> Vec<&'static str> {
    let own = match dialect {
        SqlDialect::Postgres => POSTGRES,
        SqlDialect::MySql => MYSQL,
        SqlDialect::Sqlite => SQLITE,
    };
    COMMON.iter().chain(own).copied().collect()
}

/// `SELECT p AS c0, q AS c1, … FROM customers AS t [WHERE …]`, from the dialect's pieces.
fn queries(dialect: SqlDialect, count: usize) -> Vec<String> {
    let pieces = pieces(dialect);
    let n = pieces.len();
    let strategy = (proptest::collection::vec(0..n, 1..4), 0..4usize, 0..n);
    let mut runner = TestRunner::deterministic();
    let mut queries = Vec::with_capacity(count + n);
    // Each piece alone first, also as what follows the table (where an alias goes), then
    // combinations.
    for piece in &pieces {
        queries.push(format!("SELECT {piece} AS c0 FROM customers AS t"));
        queries.push(format!("SELECT max(id) AS c0 FROM customers {piece}"));
    }
    for _ in 0..count {
        let (items, filter, condition) = strategy.new_tree(&mut runner).expect("a case").current();
        let list: Vec<String> =
            items.iter().enumerate().map(|(index, piece)| format!("{} AS c{index}", pieces[*piece])).collect();
        let filter = match filter {
            1 => format!(" WHERE t.id = {}", pieces[condition]),
            2 => format!(" WHERE t.id IN (SELECT o.customer_id FROM orders AS o WHERE o.id > {})", pieces[condition]),
            3 => format!(" ORDER BY {}", pieces[condition]),
            _ => String::new(),
        };
        queries.push(format!("SELECT {} FROM customers AS t{filter}", list.join(", ")));
    }
    queries
}

fn parser(dialect: SqlDialect) -> Box<dyn Dialect> {
    match dialect {
        SqlDialect::Postgres => Box::new(PostgreSqlDialect {}),
        SqlDialect::MySql => Box::new(MySqlDialect {}),
        SqlDialect::Sqlite => Box::new(SQLiteDialect {}),
    }
}

/// The result columns sqlparser sees in the printed text: every item is aliased, so its
/// name, and whether sqlparser reads it as a column of a table (a bare or qualified name).
fn gate_columns(dialect: SqlDialect, sql: &str) -> Vec<(String, bool)> {
    use sqlparser::ast::Expr;
    let statements = Parser::parse_sql(&*parser(dialect), sql).expect("the printed text parses");
    let [Statement::Query(query)] = statements.as_slice() else { panic!("one query: {sql}") };
    let SetExpr::Select(select) = query.body.as_ref() else { panic!("a SELECT: {sql}") };
    select
        .projection
        .iter()
        .map(|item| match item {
            SelectItem::ExprWithAlias { alias, expr } => {
                (alias.value.clone(), matches!(expr, Expr::Identifier(_) | Expr::CompoundIdentifier(_)))
            }
            other => panic!("an item without its alias: {other} in {sql}"),
        })
        .collect()
}

fn validator(dialect: SqlDialect, schema: &str) -> SqlValidator {
    SqlValidator::new(AllowList::new(dialect, schema).table(schema, "customers").table(schema, "orders"))
}

/// What a run found: how many queries the gate accepted and the engine prepared, and every
/// disagreement.
#[derive(Default)]
struct Findings {
    accepted: usize,
    prepared: usize,
    disagreements: Vec<String>,
}

impl Findings {
    /// `engine`: each result column's name, and whether it comes from a table (`None` where
    /// the engine does not say).
    fn compare(&mut self, dialect: SqlDialect, query: &ValidatedQuery, engine: Vec<(String, Option<bool>)>) {
        self.prepared += 1;
        let gate = gate_columns(dialect, query.sql());
        let names = |columns: &[(String, bool)]| columns.iter().map(|(name, _)| name.clone()).collect::<Vec<_>>();
        let engine_names: Vec<String> = engine.iter().map(|(name, _)| name.clone()).collect();
        // A name the gate reads as a table's column must be one to the engine too.
        let agree = names(&gate) == engine_names
            && gate.iter().zip(&engine).all(|((_, named), (_, from_table))| !named || *from_table != Some(false));
        if !agree {
            self.disagreements
                .push(format!("{dialect}: {}\n  gate sees {gate:?}\n  engine sees {engine:?}", query.sql()));
        }
    }

    fn assert_agreed(&self, dialect: SqlDialect) {
        eprintln!("{dialect}: {} accepted, {} prepared by the engine", self.accepted, self.prepared);
        assert!(self.disagreements.is_empty(), "{}", self.disagreements.join("\n"));
        assert!(self.prepared >= 100, "{dialect}: only {} queries reached the engine", self.prepared);
    }
}

const GENERATED: usize = 600;

#[test]
fn sqlite_reads_what_the_gate_checked() {
    let mut connection = rusqlite::Connection::open_in_memory().expect("memory database");
    connection
        .execute_batch(
            "CREATE TABLE customers (id INTEGER PRIMARY KEY, name TEXT); \
             CREATE TABLE orders (id INTEGER PRIMARY KEY, customer_id INTEGER); \
             CREATE TABLE secrets (id INTEGER, value TEXT);",
        )
        .expect("fixture");
    let read = std::sync::Arc::new(std::sync::Mutex::new(BTreeSet::new()));
    let seen = std::sync::Arc::clone(&read);
    connection
        .authorizer(Some(move |context: rusqlite::hooks::AuthContext<'_>| {
            if let rusqlite::hooks::AuthAction::Read { table_name, .. } = context.action
                && context.database_name.is_some()
            {
                seen.lock().expect("lock").insert(table_name.to_owned());
            }
            rusqlite::hooks::Authorization::Allow
        }))
        .expect("authorizer");
    let validator = validator(SqlDialect::Sqlite, "main");
    let mut findings = Findings::default();
    for sql in queries(SqlDialect::Sqlite, GENERATED) {
        let Ok(query) = validator.validate(&sql, 0) else { continue };
        findings.accepted += 1;
        read.lock().expect("lock").clear();
        let Ok(statement) = connection.prepare(query.sql()) else { continue };
        let engine = statement.column_names().map(|name| (name.to_owned(), None)).collect();
        findings.compare(SqlDialect::Sqlite, &query, engine);
        let checked: BTreeSet<String> = query.tables().iter().map(|table| table.table.clone()).collect();
        let engine_read = read.lock().expect("lock").clone();
        if !engine_read.is_subset(&checked) {
            findings
                .disagreements
                .push(format!("sqlite: {}\n  reads {engine_read:?}, checked {checked:?}", query.sql()));
        }
    }
    findings.assert_agreed(SqlDialect::Sqlite);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_reads_what_the_gate_checked() {
    let admin_url = std::env::var("SQLWARDEN_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into());
    let admin = match tokio_postgres::connect(&admin_url, tokio_postgres::NoTls).await {
        Ok((client, connection)) => {
            tokio::spawn(connection);
            client
        }
        Err(error) => return unavailable("PostgreSQL", &error),
    };
    let name = format!("sqlwarden_diff_{}", unique_suffix());
    admin.batch_execute(&format!("CREATE DATABASE {name}")).await.expect("create database");
    let base = admin_url.rsplit_once('/').map_or(admin_url.as_str(), |(base, _)| base).to_owned();
    let (client, connection) =
        tokio_postgres::connect(&format!("{base}/{name}"), tokio_postgres::NoTls).await.expect("connect");
    let running = tokio::spawn(connection);
    client
        .batch_execute(
            "CREATE TABLE customers (id integer PRIMARY KEY, name text); \
             CREATE TABLE orders (id integer PRIMARY KEY, customer_id integer);",
        )
        .await
        .expect("fixture");
    let validator = validator(SqlDialect::Postgres, "public");
    let mut findings = Findings::default();
    for sql in queries(SqlDialect::Postgres, GENERATED) {
        let params = usize::from(sql.contains("$1"));
        let Ok(query) = validator.validate(&sql, params) else { continue };
        findings.accepted += 1;
        let Ok(statement) = client.prepare(query.sql()).await else { continue };
        let engine = statement
            .columns()
            .iter()
            .map(|column| (column.name().to_owned(), Some(column.table_oid().is_some())))
            .collect();
        findings.compare(SqlDialect::Postgres, &query, engine);
    }
    drop(client);
    let _ = running.await;
    admin.batch_execute(&format!("DROP DATABASE {name} WITH (FORCE)")).await.expect("drop database");
    findings.assert_agreed(SqlDialect::Postgres);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mariadb_reads_what_the_gate_checked() {
    use mysql_async::prelude::Queryable;
    let admin_url =
        std::env::var("SQLWARDEN_TEST_MYSQL_URL").unwrap_or_else(|_| "mysql://root@127.0.0.1:3306/test".into());
    let opts = mysql_async::Opts::from_url(&admin_url).expect("admin URL");
    let mut conn = match mysql_async::Conn::new(opts).await {
        Ok(conn) => conn,
        Err(error) => return unavailable("MariaDB/MySQL", &error),
    };
    let name = format!("sqlwarden_diff_{}", unique_suffix());
    // The session sqlwarden's reads run in.
    conn.query_drop(
        "SET SESSION sql_mode = 'ONLY_FULL_GROUP_BY,STRICT_TRANS_TABLES,NO_ZERO_IN_DATE,NO_ZERO_DATE,\
         ERROR_FOR_DIVISION_BY_ZERO,NO_ENGINE_SUBSTITUTION'",
    )
    .await
    .expect("session");
    conn.query_drop(format!("CREATE DATABASE {name}")).await.expect("create database");
    conn.query_drop(format!("USE {name}")).await.expect("use");
    conn.query_drop("CREATE TABLE customers (id INT PRIMARY KEY, name VARCHAR(100))").await.expect("fixture");
    conn.query_drop("CREATE TABLE orders (id INT PRIMARY KEY, customer_id INT)").await.expect("fixture");
    let validator = validator(SqlDialect::MySql, &name);
    let mut findings = Findings::default();
    for sql in queries(SqlDialect::MySql, GENERATED) {
        let Ok(query) = validator.validate(&sql, 0) else { continue };
        findings.accepted += 1;
        let Ok(statement) = conn.prep(query.sql()).await else { continue };
        let engine = statement
            .columns()
            .iter()
            .map(|column| (column.name_str().into_owned(), Some(!column.org_table_str().is_empty())))
            .collect();
        let _ = conn.close(statement).await;
        findings.compare(SqlDialect::MySql, &query, engine);
    }
    conn.query_drop(format!("DROP DATABASE {name}")).await.expect("drop database");
    findings.assert_agreed(SqlDialect::MySql);
}
