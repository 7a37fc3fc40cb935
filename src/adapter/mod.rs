//! The database adapter interface. Every method that touches a database takes admitted
//! [`Evidence`] by value; writing needs `Evidence<'_, Write>`, which exists only for a write
//! tool admitted in read-write mode, and reading caller SQL needs a [`ValidatedQuery`].

// Helpers shared by the backends go unused in builds without some of them.
#![cfg_attr(not(all(feature = "postgres", feature = "mysql", feature = "sqlite")), allow(dead_code, unused_imports))]

use std::time::Duration;

use futures_util::future::BoxFuture;
use serde::Serialize;

use crate::denial::{Denial, DenialCode};
use crate::evidence::{Evidence, Read, Write};
use crate::json;
use crate::sql::{AllowList, Mask, MaskKey, ParamValue, SqlDialect, ValidatedQuery};

mod connection;
mod error;
mod plan;
mod rows;

pub(crate) use connection::*;
pub use connection::{MAX_STATEMENT_TIME, is_local_host};
pub use error::{AdapterError, AdapterErrorKind};
pub use plan::{PlanLimit, QueryPlan};
pub(crate) use plan::{mysql_estimates, postgres_estimates, sqlite_scans};
pub use rows::JsonRows;
pub(crate) use rows::*;

#[cfg(feature = "mysql")]
pub mod mysql;
#[cfg(feature = "postgres")]
pub mod postgres;
#[cfg(feature = "sqlite")]
pub mod sqlite;

/// Connection settings of a backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolOptions {
    /// The most connections held open (for SQLite: the most reads at once).
    pub max_connections: usize,
    /// How long to wait for a connection to be established, or for a free one.
    pub connect_timeout: Duration,
    /// The largest result a read may return, in bytes of JSON (`[limits] max_result_bytes`).
    /// The networked backends also refuse any one message from the database larger than
    /// this and [`PoolOptions::PROTOCOL_ROOM`] (a MySQL packet, a PostgreSQL protocol
    /// message): such a row could not fit, and no single value may take the process's memory
    /// past the limits. (SQLite applies each read's own cap to every value.)
    pub max_result_bytes: usize,
}

impl PoolOptions {
    /// What a message may hold beyond the result cap: the rest of a row, a long column list,
    /// an error. A row that fits the cap as JSON fits this as a message, but for arrays of
    /// numbers, whose binary form can be larger than their JSON.
    pub const PROTOCOL_ROOM: usize = 1 << 20;

    /// The largest message accepted from the database.
    pub fn max_message_bytes(&self) -> usize {
        self.max_result_bytes.saturating_add(Self::PROTOCOL_ROOM)
    }
}

impl Default for PoolOptions {
    fn default() -> Self {
        PoolOptions { max_connections: 8, connect_timeout: Duration::from_secs(5), max_result_bytes: 8_000_000 }
    }
}

/// Opens the adapter the URL's scheme names: `postgres://` or `postgresql://`, `mysql://` or
/// `mariadb://`, `sqlite:`. Networked backends connect lazily, on the first call; SQLite
/// opens its file at once. Neither the URL nor its password appears in an error.
#[cfg_attr(not(all(feature = "postgres", feature = "mysql", feature = "sqlite")), allow(unused_variables))]
pub fn connect(
    url: &str,
    allow: crate::sql::AllowList,
    options: PoolOptions,
) -> Result<std::sync::Arc<dyn Adapter>, AdapterError> {
    let scheme = url.split_once(':').map_or("", |(scheme, _)| scheme).to_ascii_lowercase();
    match scheme.as_str() {
        #[cfg(feature = "postgres")]
        "postgres" | "postgresql" => Ok(std::sync::Arc::new(postgres::PostgresAdapter::connect(url, allow, options)?)),
        #[cfg(not(feature = "postgres"))]
        "postgres" | "postgresql" => Err(unsupported("PostgreSQL")),
        #[cfg(feature = "mysql")]
        "mysql" | "mariadb" => Ok(std::sync::Arc::new(mysql::MySqlAdapter::connect(url, allow, options)?)),
        #[cfg(not(feature = "mysql"))]
        "mysql" | "mariadb" => Err(unsupported("MySQL")),
        #[cfg(feature = "sqlite")]
        "sqlite" => Ok(std::sync::Arc::new(sqlite::SqliteAdapter::open(url, allow, options.max_connections)?)),
        #[cfg(not(feature = "sqlite"))]
        "sqlite" => Err(unsupported("SQLite")),
        _ => Err(AdapterError::of_kind(AdapterErrorKind::InvalidInput).with_message(
            "the database URL must start with postgres://, postgresql://, mysql://, mariadb:// or sqlite:",
        )),
    }
}

/// The error for a backend left out of this build.
#[cfg(not(all(feature = "postgres", feature = "mysql", feature = "sqlite")))]
fn unsupported(backend: &str) -> AdapterError {
    AdapterError::of_kind(AdapterErrorKind::InvalidInput)
        .with_message(format!("this build of sqlwarden has no {backend} support (cargo feature)"))
}

/// A database backend.
pub trait Adapter: Send + Sync {
    /// The SQL dialect this backend speaks; queries must have been validated for it.
    fn dialect(&self) -> SqlDialect;

    /// Runs one validated query in a read-only transaction that is always rolled back, with
    /// `params` bound in order, stopping after `options.limit` rows.
    fn query_read<'a>(
        &'a self,
        evidence: Evidence<'a, Read>,
        query: &'a ValidatedQuery,
        params: &'a [SqlValue],
        options: ReadOptions,
    ) -> BoxFuture<'a, Result<QueryResult, AdapterError>>;

    /// The plan of one validated query, the query not being run: in a read-only transaction,
    /// within `options.timeout` (PostgreSQL `EXPLAIN (FORMAT JSON)`, without `ANALYZE`; MySQL
    /// `EXPLAIN FORMAT=JSON`; SQLite `EXPLAIN QUERY PLAN`). A backend that cannot says so.
    fn explain<'a>(
        &'a self,
        evidence: Evidence<'a, Read>,
        query: &'a ValidatedQuery,
        params: &'a [SqlValue],
        options: ReadOptions,
    ) -> BoxFuture<'a, Result<QueryPlan, AdapterError>> {
        let _ = (evidence, query, params, options);
        Box::pin(async { Err(AdapterError::invalid("this database cannot explain a query")) })
    }

    /// Lists the tables the caller may see, optionally in one schema only.
    fn list_tables<'a>(
        &'a self,
        evidence: Evidence<'a, Read>,
        schema: Option<&'a str>,
    ) -> BoxFuture<'a, Result<Vec<TableSummary>, AdapterError>>;

    /// Describes one table the caller may see.
    fn describe_table<'a>(
        &'a self,
        evidence: Evidence<'a, Read>,
        schema: Option<&'a str>,
        table: &'a str,
    ) -> BoxFuture<'a, Result<TableDescription, AdapterError>>;

    /// Opens a write transaction for a [`WriteTool`](crate::tools::WriteTool). Only a write tool
    /// admitted in read-write mode holds the evidence this needs, and only sqlwarden's write
    /// runner can make the [`WriteOptions`]: tools reach writes through
    /// [`WriteTx`](crate::tools::WriteTx), which counts affected rows and commits only when
    /// the tool succeeds.
    fn begin_write<'a>(
        &'a self,
        evidence: Evidence<'a, Write>,
        options: WriteOptions,
    ) -> BoxFuture<'a, Result<Box<dyn WriteTransaction<'a> + 'a>, AdapterError>>;

    /// What the database lets this connection's role do beyond reading, for the operator
    /// (`sqlwarden check`). Every finding is a reason to use a narrower role.
    fn posture<'a>(&'a self, evidence: Evidence<'a, Read>) -> BoxFuture<'a, Result<Posture, AdapterError>>;
}

/// Bounds for one write transaction. Only sqlwarden makes them, from the write tool's
/// declaration, so only its write runner can open a write transaction.
#[derive(Debug)]
pub struct WriteOptions {
    timeout: Duration,
    max_rows: u64,
    qualified: bool,
}

impl WriteOptions {
    pub(crate) fn new(timeout: Duration, max_rows: u64) -> Self {
        WriteOptions { timeout, max_rows, qualified: false }
    }

    /// Marks the statements as the SQL gate printed them, every table written `schema.table`.
    pub(crate) fn qualified(mut self, qualified: bool) -> Self {
        self.qualified = qualified;
        self
    }

    /// Whether every table the statements name is written `schema.table` (a declared write
    /// tool's statement, printed by the gate): then no schema but the system catalog need be
    /// searched for names, and a backend that has a search path leaves every other schema
    /// off it, so that no function or operator planted in one can be picked.
    pub fn names_qualified(&self) -> bool {
        self.qualified
    }

    /// How long the whole transaction may take; the backend sets it as the database's
    /// statement timeout where it has one.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// The most rows the tool may affect. A statement returning more rows than this is refused
    /// anyway, so a backend need not read further.
    pub fn max_rows(&self) -> u64 {
        self.max_rows
    }
}

/// What a backend implements to offer write transactions. Tools never hold one: they use
/// [`WriteTx`](crate::tools::WriteTx), which wraps it.
///
/// Dropping a transaction that was neither committed nor rolled back (a panic, a cancelled
/// call, a time-out) must end it without committing, even while a statement runs: cancel
/// the statement or close the connection; never return it to a pool inside a transaction.
pub trait WriteTransaction<'a>: Send {
    /// Runs one parameterized statement written by the tool's author, reading at most
    /// `row_cap + 1` returned rows (`RETURNING`).
    fn execute<'s>(
        &'s mut self,
        statement: &'static str,
        params: &'s [SqlValue],
        row_cap: u64,
    ) -> BoxFuture<'s, Result<Executed, AdapterError>>;

    /// Commits.
    fn commit(self: Box<Self>) -> BoxFuture<'a, Result<(), AdapterError>>;

    /// Rolls back, leaving the connection clean for reuse.
    fn rollback(self: Box<Self>) -> BoxFuture<'a, Result<(), AdapterError>>;
}

/// What one statement of a write transaction reported.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Executed {
    /// The rows the statement inserted, updated or deleted, as the database counts them.
    /// (PostgreSQL counts the rows a `SELECT` returns too.)
    pub rows_affected: u64,
    /// The id the statement generated: MySQL's `LAST_INSERT_ID()`, SQLite's rowid after an
    /// insert; `None` on PostgreSQL (use `RETURNING`).
    pub last_insert_id: Option<u64>,
    /// The rows a `RETURNING` clause returned, in the JSON mapping of [`json`].
    pub rows: Vec<Vec<serde_json::Value>>,
}

/// A statement parameter.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum SqlValue {
    /// SQL NULL.
    Null,
    /// A boolean.
    Bool(bool),
    /// A 64-bit integer.
    Int(i64),
    /// A double.
    Float(f64),
    /// Text.
    Text(String),
    /// Bytes.
    Bytes(Vec<u8>),
}

/// Bounds for one read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReadOptions {
    /// The most rows returned; one more is read to tell whether there were more.
    pub limit: usize,
    /// How long the statement may run, enforced by the database and by the client.
    pub timeout: Duration,
    /// The most bytes the rows may take as JSON; a larger result is refused with
    /// `RESULT_TOO_LARGE`, never cut short silently.
    pub max_bytes: usize,
    /// What is left of an egress budget, in bytes of JSON: rows past it are left out whole and
    /// the result is marked truncated (the caller says why). `None`: no budget.
    pub budget_bytes: Option<usize>,
    /// The plan guard: when set, the read's plan is checked first, and a read estimated over
    /// it is refused with `TOO_EXPENSIVE` before it runs.
    pub plan_limit: PlanLimit,
}

/// What a read returned.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct QueryResult {
    /// The result's columns, in order.
    pub columns: Vec<ResultColumn>,
    /// The rows, each a JSON array in column order (see [`json`] for the value mapping).
    pub rows: JsonRows,
    /// Whether the query had more rows than the limit.
    pub truncated: bool,
}

/// One result column.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ResultColumn {
    /// The column's name as the database reports it.
    pub name: String,
    /// The database's name for its type.
    #[serde(rename = "type")]
    pub data_type: String,
}

/// What a database role may do beyond reading, as the database itself reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct Posture {
    /// The role (or, for SQLite, the process) the adapter connects as.
    pub role: String,
    /// What it may do that a read-only role should not, one finding each; empty when the
    /// database reports nothing beyond reading.
    pub findings: Vec<String>,
}

/// One table as listed by [`Adapter::list_tables`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TableSummary {
    /// Schema (PostgreSQL), database (MySQL) or `main` (SQLite).
    pub schema: String,
    /// Table name.
    pub name: String,
    /// `table` or `view`.
    pub kind: String,
}

/// A table's structure as returned by [`Adapter::describe_table`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TableDescription {
    /// Schema.
    pub schema: String,
    /// Table name.
    pub name: String,
    /// Columns in table order.
    pub columns: Vec<ColumnDescription>,
    /// Primary-key columns, in key order.
    pub primary_key: Vec<String>,
    /// Foreign keys.
    pub foreign_keys: Vec<ForeignKey>,
    /// Indexes.
    pub indexes: Vec<IndexDescription>,
}

/// One column.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ColumnDescription {
    /// Column name.
    pub name: String,
    /// Database type name.
    #[serde(rename = "type")]
    pub data_type: String,
    /// Whether NULL is allowed.
    pub nullable: bool,
    /// Default expression, if any.
    pub default: Option<String>,
    /// Comment, if any.
    pub comment: Option<String>,
    /// The column's rule, if it has one: `denied`, or `masked: <mask>` (see `[[columns]]`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rule: Option<String>,
}

/// A description as the allow-list's column rules let it be seen. A denied column is left out,
/// with every key and index that names it, unless its table's rule shows denied columns (then
/// it is marked `denied`); a masked column is marked with its mask. A foreign key to a denied
/// column of another table is left out the same way. No value of a column is ever shown.
pub(crate) fn with_column_rules(mut description: TableDescription, allow: &AllowList) -> TableDescription {
    let hidden = |schema: &str, table: &str, column: &str| {
        allow.column_rule(schema, table).is_some_and(|rule| rule.is_denied(column) && !rule.shows_denied())
    };
    // An index column may be an expression (`lower(email)`): any name in it counts.
    let names = |text: &str| {
        text.split(|c: char| !(c.is_alphanumeric() || c == '_' || c == '$'))
            .filter(|word| !word.is_empty())
            .map(str::to_owned)
            .collect::<Vec<_>>()
    };
    let (schema, table) = (description.schema.clone(), description.name.clone());
    let here = |column: &str| hidden(&schema, &table, column);
    if let Some(rule) = allow.column_rule(&schema, &table) {
        description.columns.retain(|column| !here(&column.name));
        for column in &mut description.columns {
            if rule.is_denied(&column.name) {
                column.rule = Some("denied".into());
            } else if let Some(mask) = rule.mask_of(&column.name) {
                column.rule = Some(format!("masked: {mask}"));
            }
        }
        if description.primary_key.iter().any(|column| here(column)) {
            description.primary_key.clear();
        }
        description.indexes.retain(|index| !index.columns.iter().flat_map(|column| names(column)).any(|n| here(&n)));
    }
    description.foreign_keys.retain(|key| {
        !key.columns.iter().any(|column| here(column))
            && !key
                .referenced_columns
                .iter()
                .any(|column| hidden(&key.referenced_schema, &key.referenced_table, column))
    });
    description
}

/// One foreign key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ForeignKey {
    /// Constraint name.
    pub name: String,
    /// Referencing columns.
    pub columns: Vec<String>,
    /// Referenced schema.
    pub referenced_schema: String,
    /// Referenced table.
    pub referenced_table: String,
    /// Referenced columns.
    pub referenced_columns: Vec<String>,
}

/// One index.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct IndexDescription {
    /// Index name.
    pub name: String,
    /// Indexed columns or expressions, in order.
    pub columns: Vec<String>,
    /// Whether the index is unique.
    pub unique: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statement_time_limits_are_clamped_to_what_every_engine_takes() {
        assert_eq!(statement_millis(Duration::ZERO), 1);
        assert_eq!(statement_millis(Duration::from_micros(1500)), 1);
        assert_eq!(statement_millis(Duration::from_secs(5)), 5000);
        assert_eq!(statement_millis(Duration::MAX), 86_400_000);
        assert!(statement_millis(Duration::MAX) <= i32::MAX as u64, "PostgreSQL's statement_timeout");
    }

    #[test]
    fn only_loopback_localhost_and_sockets_are_this_machine() {
        for local in [
            "127.0.0.1",
            "127.1.2.3",
            "::1",
            "[::1]",
            "::ffff:127.0.0.1",
            "[::ffff:127.0.0.1]",
            "localhost",
            "LocalHost",
            "localhost.",
            "/var/run/postgresql",
            "/tmp/mysql.sock",
        ] {
            assert!(is_local_host(local), "{local}");
        }
        for remote in [
            "db.example.com",
            "db.localhost",
            "localhost.example.com",
            "localhost6",
            "10.0.0.5",
            "192.0.2.2",
            "0.0.0.0",
            "::",
            "[fd00::2]",
            "::ffff:10.0.0.1",
            "128.0.0.1",
            "",
            "127.0.0.1.nip.io",
        ] {
            assert!(!is_local_host(remote), "{remote}");
        }
    }
    use crate::sql::AllowList;

    fn options(limit: usize, max_bytes: usize) -> ReadOptions {
        ReadOptions {
            limit,
            timeout: Duration::from_secs(1),
            max_bytes,
            budget_bytes: None,
            plan_limit: PlanLimit::default(),
        }
    }

    #[test]
    fn rows_are_collected_as_the_json_of_their_values() {
        use serde_json::json;
        let rows = [vec![json!(1), json!("a\"b\n")], vec![json!(null), json!({"k": [1.5, true]})], vec![]];
        let mut collector = RowCollector::new(options(3, 1 << 20));
        collector.push(&rows[0]).expect("fits");
        let mut row = collector.row();
        json::text::null(row.value());
        json::text::value(row.value(), &rows[1][1]);
        row.end().expect("fits");
        assert!(!collector.is_full());
        collector.push(&rows[2]).expect("fits");
        assert!(collector.is_full());
        let result = collector.finish(Vec::new(), true);
        assert_eq!(result.rows.as_json(), serde_json::to_string(&rows).expect("serializes"));
        assert_eq!(result.rows, JsonRows::from_values(&rows));
        assert_eq!(result.rows.len(), 3);
        assert!(!result.rows.is_empty());
        assert_eq!(result.rows.to_values().expect("parses"), rows);
        assert_eq!(serde_json::to_value(&result).expect("serializes")["rows"], json!(rows));
        assert_eq!(format!("{:?}", result.rows), "JsonRows { rows: 3, bytes: 41 }", "no values in debug output");
        assert_eq!(JsonRows::default().as_json(), "[]");
        assert!(JsonRows::default().is_empty());
    }

    #[test]
    fn rows_written_a_value_at_a_time_are_one_json_array() {
        let mut collector = RowCollector::new(options(2, 1 << 20));
        for values in [[1, 2], [3, 4]] {
            let mut row = collector.row();
            for value in values {
                json::text::int(row.value(), value);
            }
            row.end().expect("fits");
        }
        assert_eq!(collector.finish(Vec::new(), false).rows.as_json(), "[[1,2],[3,4]]");
        let mut empty = RowCollector::new(options(2, 1 << 20));
        empty.row().end().expect("fits");
        assert_eq!(empty.finish(Vec::new(), false).rows.as_json(), "[[]]");
    }

    #[test]
    fn room_is_made_for_the_rows_to_come_after_the_first() {
        use serde_json::json;
        let mut collector = RowCollector::new(options(1000, 1 << 30));
        collector.push(&[json!("a value of some length")]).expect("fits");
        let first = collector.text.len();
        assert!(collector.text.capacity() >= first * 1000, "room for 999 more rows like the first");
        // At most 1 MiB is set aside at once, and never more than the byte cap.
        let mut wide = RowCollector::new(options(usize::MAX, 1 << 30));
        wide.push(&[json!("x".repeat(4096))]).expect("fits");
        assert!(wide.text.capacity() >= 1 << 20);
        assert!(wide.text.capacity() < 8 << 20, "{}", wide.text.capacity());
        let mut capped = RowCollector::new(options(1000, 10_000));
        capped.push(&[json!("x".repeat(100))]).expect("fits");
        assert!(capped.text.capacity() < 30_000, "{}", capped.text.capacity());
    }

    #[tokio::test]
    async fn long_values_are_written_a_piece_at_a_time_as_short_ones_are() {
        use serde_json::json;
        let text = "é\"\u{1}x".repeat(LONG_VALUE_PIECE / 3);
        let bytes: Vec<u8> = (0..2 * LONG_VALUE_PIECE + 1).map(|n| (n % 251) as u8).collect();
        let invalid = [b"ok".as_slice(), &[0xff; 3], b"end"].concat();
        let expected = json!([[1, text, crate::json::oracle::bytes(&bytes), "ok\u{fffd}\u{fffd}\u{fffd}end"]]);
        let mut collector = RowCollector::new(options(2, 1 << 24));
        let mut row = collector.row();
        json::text::int(row.value(), 1);
        row.long_value(text.as_bytes(), false).await.expect("fits");
        row.long_value(&bytes, true).await.expect("fits");
        row.long_value(&invalid, false).await.expect("fits");
        row.end().expect("fits");
        let written = collector.finish(Vec::new(), false);
        assert_eq!(written.rows.as_json(), expected.to_string());
        // The cap holds: a long value is refused before it passes it, and escaping stops there.
        let size = expected.to_string().len();
        for cap in [size - 4, size / 2, LONG_VALUE_PIECE + 10] {
            let mut collector = RowCollector::new(options(2, cap));
            let mut row = collector.row();
            let refused = async {
                row.long_value(text.as_bytes(), false).await?;
                row.long_value(&bytes, true).await?;
                row.long_value(&invalid, false).await
            };
            let error = refused.await.expect_err("over the cap");
            assert_eq!(error.kind(), AdapterErrorKind::ResultTooLarge);
            assert!(collector.text.len() <= cap, "{} > {cap}", collector.text.len());
        }
    }

    #[test]
    fn the_byte_cap_counts_the_whole_array() {
        use serde_json::json;
        // `[[1,2]]` is 7 bytes.
        let mut exact = RowCollector::new(options(10, 7));
        exact.push(&[json!(1), json!(2)]).expect("7 bytes fit in 7");
        let mut over = RowCollector::new(options(10, 6));
        let error = over.push(&[json!(1), json!(2)]).expect_err("7 bytes do not fit in 6");
        assert_eq!(error.kind(), AdapterErrorKind::ResultTooLarge);
        let mut written = RowCollector::new(options(10, 6));
        let mut row = written.row();
        json::text::int(row.value(), 1);
        json::text::int(row.value(), 2);
        assert_eq!(row.end().expect_err("counted alike").kind(), AdapterErrorKind::ResultTooLarge);
    }

    #[test]
    fn values_are_replaced_in_place_and_counted_again() {
        use serde_json::json;
        let mut collector = RowCollector::new(options(10, 20));
        collector.push(&[json!("x"), json!(1), json!("y")]).expect("fits");
        // `[["x",1,"y"]]`: "x" at 2..5, "y" at 8..11.
        collector.replace(vec![(2..5, "\"long\"".into()), (8..11, "null".into())]).expect("fits");
        assert_eq!(collector.text, r#"[["long",1,null"#.to_owned() + "]");
        let error = collector.replace(vec![(2..8, "\"far too long a value\"".into())]).expect_err("over the cap");
        assert_eq!(error.kind(), AdapterErrorKind::ResultTooLarge);
        let mut collector = RowCollector::new(options(10, 100));
        collector.push(&[json!("x"), json!("y")]).expect("fits");
        assert!(collector.replace(vec![(6..9, "1".into()), (2..5, "2".into())]).is_err(), "out of order");
        assert!(collector.replace(vec![(2..50, "1".into())]).is_err(), "out of range");
    }

    /// Masking rewrites only the masked positions; rows that masking takes past the byte budget
    /// are left out whole from the end, and the result says so.
    #[test]
    fn masked_rows_keep_their_other_values_and_stay_within_the_budget() {
        use serde_json::json;
        let key = MaskKey::new(b"k".to_vec());
        let rows = JsonRows::from_values(&[
            vec![json!(1), json!("4111222233334444"), json!({"a": [1]})],
            vec![json!(2), json!(null), json!("x")],
        ]);
        let (masked, cut) = rows.clone().masked(&[(1, Mask::Last4)], &key, None).expect("masks");
        assert_eq!(masked.as_json(), r#"[[1,"****4444",{"a":[1]}],[2,null,"x"]]"#);
        assert_eq!((masked.len(), cut), (2, false));
        let (unmasked, _) = rows.clone().masked(&[], &key, None).expect("nothing to mask");
        assert_eq!(unmasked, rows);
        // A hash is 66 bytes of JSON: the first row takes 77, the whole 110 with the second.
        let (hashed, cut) = rows.clone().masked(&[(0, Mask::Hash)], &key, Some(100)).expect("masks");
        assert_eq!((hashed.len(), cut), (1, true), "{}", hashed.as_json());
        assert!(hashed.as_json().len() < 100);
        let (none, cut) = rows.masked(&[(0, Mask::Hash)], &key, Some(20)).expect("masks");
        assert_eq!((none.as_json(), none.len(), cut), ("[]", 0, true));
    }

    #[test]
    fn a_byte_budget_leaves_out_whole_rows_and_marks_the_result_truncated() {
        use serde_json::json;
        let budgeted = |budget| RowCollector::new(ReadOptions { budget_bytes: Some(budget), ..options(10, 1000) });
        // `[[1],[22],[333]]`: the rows end at 4, 9 and 15, the array at 16.
        let mut collector = budgeted(10);
        for value in [1, 22, 333] {
            if !collector.is_full() {
                collector.push(&[json!(value)]).expect("never refused for the budget");
            }
        }
        assert!(collector.is_full(), "no row after one left out");
        let result = collector.finish(Vec::new(), false);
        assert_eq!((result.rows.as_json(), result.truncated), ("[[1],[22]]", true));
        let mut whole = budgeted(16);
        for value in [1, 22, 333] {
            whole.push(&[json!(value)]).expect("fits");
        }
        let result = whole.finish(Vec::new(), false);
        assert_eq!((result.rows.as_json(), result.truncated), ("[[1],[22],[333]]", false), "16 bytes fit in 16");
        // Values printed later (PostgreSQL's types without a decoder) are counted again: the
        // rows they push past the budget are left out, and values of rows left out are dropped.
        let mut printed = budgeted(14);
        for value in ["a", "b", "c"] {
            if !printed.is_full() {
                printed.push(&[json!(value)]).expect("fits");
            }
        }
        // `[["a"],["b"]]` (13 bytes); "c" was left out, its value at 16..19 goes with it.
        printed.replace(vec![(2..5, "\"aaaa\"".into()), (16..19, "\"x\"".into())]).expect("fits the cap");
        let result = printed.finish(Vec::new(), false);
        assert_eq!((result.rows.as_json(), result.truncated), (r#"[["aaaa"]]"#, true));
    }

    #[test]
    fn the_scheme_chooses_the_backend() {
        let refuse = |url: &str, dialect| {
            connect(url, AllowList::new(dialect, "x"), PoolOptions::default()).err().map(|error| error.to_string())
        };
        assert_eq!(
            refuse("oracle://scott:tiger@db/x", SqlDialect::Postgres).as_deref(),
            Some(
                "invalid input: the database URL must start with postgres://, postgresql://, mysql://, mariadb:// or sqlite:"
            )
        );
        assert!(refuse("", SqlDialect::Sqlite).is_some());
        // Each scheme reaches its own backend, which checks the allow-list's dialect first.
        for (url, dialect) in [
            ("postgres://u@h/db", SqlDialect::MySql),
            ("POSTGRESQL://u@h/db", SqlDialect::Sqlite),
            ("mysql://u@h/db", SqlDialect::Postgres),
            ("mariadb://u@h/db", SqlDialect::Sqlite),
            ("sqlite:/nonexistent.db", SqlDialect::Postgres),
        ] {
            assert_eq!(
                refuse(url, dialect).as_deref(),
                Some("invalid input: the allow-list was built for another SQL dialect"),
                "{url}"
            );
        }
        assert!(refuse("postgres://u@h/db", SqlDialect::Postgres).is_none(), "networked backends connect lazily");
        assert!(refuse("mariadb://u@h/db", SqlDialect::MySql).is_none());
    }
}
