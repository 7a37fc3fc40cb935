//! The database adapter interface. Every method that touches a database takes admitted
//! [`Evidence`] by value; writing needs `Evidence<'_, Write>`, which exists only for a write
//! tool admitted in read-write mode, and reading caller SQL needs a [`ValidatedQuery`].

// Helpers shared by the backends go unused in builds without some of them.
#![cfg_attr(not(all(feature = "postgres", feature = "mysql", feature = "sqlite")), allow(dead_code))]

use std::borrow::Cow;
use std::error::Error as StdError;
use std::fmt;
use std::time::Duration;

use futures_util::future::BoxFuture;
use serde::Serialize;

use crate::denial::{Denial, DenialCode};
use crate::evidence::{Evidence, Read, Write};
use crate::json;
use crate::sql::{AllowList, ParamValue, SqlDialect, ValidatedQuery};

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

/// Collects a read's rows within its row limit and byte cap, as the backend streams them,
/// writing them as JSON text straight away.
pub(crate) struct RowCollector {
    /// `[` and the rows so far, comma-separated.
    text: String,
    rows: usize,
    options: ReadOptions,
    /// How long the text was when the read last let other tasks run.
    yielded_at: usize,
}

impl RowCollector {
    /// How much text a read writes before it lets other tasks on its thread run.
    const YIELD_EVERY: usize = 1 << 20;

    pub(crate) fn new(options: ReadOptions) -> Self {
        RowCollector { text: String::from("["), rows: 0, options, yielded_at: 0 }
    }

    /// Whether the read has written [`Self::YIELD_EVERY`] bytes since it last yielded: then
    /// it should yield, so that a large result never holds the event loop for long. Counts
    /// this as a yield.
    pub(crate) fn should_yield(&mut self) -> bool {
        let due = self.text.len() - self.yielded_at.min(self.text.len()) >= Self::YIELD_EVERY;
        if due {
            self.yielded_at = self.text.len();
        }
        due
    }

    /// The refusal of a result over the byte cap.
    pub(crate) fn too_large(&self) -> AdapterError {
        result_too_large(self.options.max_bytes)
    }

    /// How many bytes of text are written so far.
    pub(crate) fn written(&self) -> usize {
        self.text.len()
    }

    /// Whether the limit is reached: a further row only means the result is truncated.
    pub(crate) fn is_full(&self) -> bool {
        self.rows >= self.options.limit
    }

    /// Starts a row: write its values through the [`RowWriter`], then [`end`](RowWriter::end)
    /// it. A row left unended is only ever followed by the read's failure.
    pub(crate) fn row(&mut self) -> RowWriter<'_> {
        if self.rows > 0 {
            self.text.push(',');
        }
        self.text.push('[');
        RowWriter { collector: self, first: true }
    }

    /// Adds a row of values (the backends write theirs through [`row`](Self::row)).
    #[cfg(test)]
    pub(crate) fn push(&mut self, values: &[serde_json::Value]) -> Result<(), AdapterError> {
        if self.rows > 0 {
            self.text.push(',');
        }
        write_row(&mut self.text, values);
        self.ended_row()
    }

    /// Counts a row just written. After the first, room is made for as many more of its size
    /// as the limit lets come, up to the byte cap and 1 MiB, rather than growing a step at a
    /// time.
    fn ended_row(&mut self) -> Result<(), AdapterError> {
        self.rows += 1;
        if self.rows == 1 {
            let expected = self.text.len().saturating_mul(self.options.limit.saturating_sub(1));
            self.text.reserve(expected.min(self.options.max_bytes).min(1 << 20));
        }
        self.check()
    }

    /// Replaces values already written: each range of the text (in order, not overlapping)
    /// with the JSON text given for it. Then the byte cap is checked again.
    pub(crate) fn replace(&mut self, replacements: Vec<(std::ops::Range<usize>, String)>) -> Result<(), AdapterError> {
        if replacements.is_empty() {
            return Ok(());
        }
        let mut text = String::with_capacity(self.text.len());
        let mut copied = 0;
        for (range, value) in replacements {
            let kept = self
                .text
                .get(copied..range.start)
                .filter(|_| range.start <= range.end && self.text.is_char_boundary(range.end))
                .ok_or_else(|| AdapterError::invalid("a value to replace is out of place"))?;
            text.push_str(kept);
            text.push_str(&value);
            copied = range.end;
        }
        text.push_str(&self.text[copied..]);
        self.text = text;
        self.check()
    }

    /// Refuses the result once its text, closing bracket included, is over the byte cap.
    fn check(&self) -> Result<(), AdapterError> {
        if self.text.len() + 1 > self.options.max_bytes {
            return Err(self.too_large());
        }
        Ok(())
    }

    pub(crate) fn finish(mut self, columns: Vec<ResultColumn>, truncated: bool) -> QueryResult {
        self.text.push(']');
        QueryResult { columns, rows: JsonRows { text: self.text, count: self.rows }, truncated }
    }
}

/// The refusal of a result over a cap of `max_bytes`.
fn result_too_large(max_bytes: usize) -> AdapterError {
    AdapterError::of_kind(AdapterErrorKind::ResultTooLarge)
        .with_message(format!("the result exceeds {max_bytes} bytes; select fewer columns or rows"))
}

/// `[value,value,…]`.
fn write_row(text: &mut String, values: &[serde_json::Value]) {
    text.push('[');
    for (index, value) in values.iter().enumerate() {
        if index > 0 {
            text.push(',');
        }
        json::text::value(text, value);
    }
    text.push(']');
}

/// A value longer than this is written off the event loop, through [`RowWriter::long_value`].
pub(crate) const LONG_VALUE_PIECE: usize = 256 << 10;

/// One row being written: a value at a time, in column order.
pub(crate) struct RowWriter<'c> {
    collector: &'c mut RowCollector,
    first: bool,
}

impl RowWriter<'_> {
    /// The length the text may not pass, whatever the next values are: the byte cap less the
    /// brackets that close the row and the result. A value that cannot be a number, a date or
    /// some other small thing is written within it (`json::text::string_within` and kin), so
    /// that no value is ever encoded past the cap.
    pub(crate) fn limit(&self) -> usize {
        self.collector.options.max_bytes.saturating_sub(2)
    }

    /// The refusal of a result over the byte cap.
    pub(crate) fn too_large(&self) -> AdapterError {
        self.collector.too_large()
    }

    /// The text to write the next value at the end of: exactly one JSON value.
    pub(crate) fn value(&mut self) -> &mut String {
        if !std::mem::take(&mut self.first) {
            self.collector.text.push(',');
        }
        &mut self.collector.text
    }

    /// Writes a long value from the database, text (as a JSON string, invalid UTF-8 replaced)
    /// or bytes (as base64), within the limit. Its size is checked first; then the work of
    /// writing it (a copy, escaping or encoding) is done on tokio's blocking pool, off the
    /// event loop, so that no value holds up the other calls and messages on it.
    pub(crate) async fn long_value(&mut self, value: &[u8], bytes: bool) -> Result<(), AdapterError> {
        let limit = self.limit();
        let max_bytes = self.collector.options.max_bytes;
        let out = self.value();
        let least = if bytes { value.len().div_ceil(3).saturating_mul(4) } else { value.len() };
        if out.len().saturating_add(least).saturating_add(2) > limit {
            return Err(result_too_large(max_bytes));
        }
        let (mut text, value) = (std::mem::take(out), value.to_vec());
        let task = tokio::task::spawn_blocking(move || {
            let written = if bytes {
                json::text::base64_within(&mut text, &value, limit)
            } else {
                json::text::lossy_within(&mut text, &value, limit)
            };
            (text, written)
        });
        let (text, written) =
            task.await.map_err(|join| AdapterError::new(AdapterErrorKind::Internal, join.to_string()))?;
        *self.collector_text() = text;
        written.map_err(|_| result_too_large(max_bytes))
    }

    /// The result's text, where the next value goes, without a separator before it.
    fn collector_text(&mut self) -> &mut String {
        &mut self.collector.text
    }

    /// Ends the row, or refuses the result when it has grown past the byte cap.
    pub(crate) fn end(self) -> Result<(), AdapterError> {
        self.collector.text.push(']');
        self.collector.ended_row()
    }
}

/// Which allow-listed names are plain tables (no view, no row-level security), as the catalog
/// said at most [`TableKinds::FRESH`] ago: a read of plain tables only runs no stored code, so
/// it leaves no session state behind; after any other read a connection is reset or closed.
/// Each backend asks its own catalog.
pub(crate) struct TableKinds {
    known: std::sync::Mutex<Option<(std::time::Instant, std::collections::HashSet<crate::sql::TableName>)>>,
}

impl TableKinds {
    /// How long what the catalog said is trusted.
    pub(crate) const FRESH: Duration = Duration::from_secs(1);

    pub(crate) fn new() -> Self {
        TableKinds { known: std::sync::Mutex::new(None) }
    }

    /// Whether every one of `tables` is plain, if the catalog said so within [`Self::FRESH`];
    /// `None` when what it said is older, or it has not been asked.
    pub(crate) fn fresh(&self, tables: &[crate::sql::TableName]) -> Option<bool> {
        let guard = self.known.lock().ok()?;
        let (learned, plain) = guard.as_ref()?;
        (learned.elapsed() < Self::FRESH).then(|| tables.iter().all(|table| plain.contains(table)))
    }

    /// Keeps what the catalog just said.
    pub(crate) fn learn(&self, plain: std::collections::HashSet<crate::sql::TableName>) {
        if let Ok(mut guard) = self.known.lock() {
            *guard = Some((std::time::Instant::now(), plain));
        }
    }
}

/// The longest statement time limit every engine takes (PostgreSQL's `statement_timeout` is
/// at most `i32::MAX` ms, MySQL's `max_execution_time` a `u32` of ms, MariaDB's
/// `max_statement_time` at most a year): a limit given to a backend is clamped to it, and
/// the configuration refuses longer ones.
pub const MAX_STATEMENT_TIME: Duration = Duration::from_secs(24 * 60 * 60);

/// `timeout` in whole milliseconds, at least 1 and at most [`MAX_STATEMENT_TIME`].
pub(crate) fn statement_millis(timeout: Duration) -> u64 {
    u64::try_from(timeout.min(MAX_STATEMENT_TIME).as_millis()).unwrap_or(u64::MAX).max(1)
}

/// Whether `host`, as written in a database URL, is this machine: a loopback address
/// (`127.0.0.0/8`, `::1`, also IPv4-mapped), `localhost`, or a Unix socket's path. Anything
/// else (another name, another address, `db.localhost` included) is reached over a network,
/// where the connection is encrypted unless plain text is asked for by name
/// ([`PLAINTEXT_FINDING`]).
pub fn is_local_host(host: &str) -> bool {
    if host.starts_with('/') {
        return true;
    }
    let host = host.strip_suffix('.').unwrap_or(host);
    let host = host.strip_prefix('[').and_then(|inner| inner.strip_suffix(']')).unwrap_or(host);
    host.eq_ignore_ascii_case("localhost")
        || host.parse::<std::net::IpAddr>().is_ok_and(|address| address.to_canonical().is_loopback())
}

/// What `sqlwarden check` reports, and the server warns at startup, when a database on
/// another machine is reached with plain text asked for by name.
pub(crate) const PLAINTEXT_FINDING: &str = "its connection may travel unencrypted: the database is on another \
     machine and the URL asks for plain text (sslmode=disable or prefer, require_ssl=false)";

/// Removes `name=value` from a URL's query string (drivers refuse parameters they do not
/// know), returning the URL without it and the value.
pub(crate) fn take_url_parameter(url: &str, name: &str) -> (String, Option<String>) {
    let Some((base, query)) = url.split_once('?') else {
        return (url.to_owned(), None);
    };
    let mut value = None;
    let kept: Vec<&str> = query
        .split('&')
        .filter(|pair| match pair.split_once('=') {
            Some((key, found)) if key == name => {
                value = Some(found.to_owned());
                false
            }
            _ => true,
        })
        .collect();
    let url = if kept.is_empty() { base.to_owned() } else { format!("{base}?{}", kept.join("&")) };
    (url, value)
}

/// Refuses a query validated for another dialect than the backend's, or under an allow-list
/// that let it name a table the backend's own allow-list does not (a validator built with a
/// wider list than the adapter's), or whose size-amplifying calls would, with these
/// parameters, make more than the result cap ([`ValidatedQuery::check_params`]). Every backend
/// checks this before it runs a query.
pub(crate) fn ensure_runnable(
    query: &ValidatedQuery,
    allow: &AllowList,
    params: &[SqlValue],
    max_bytes: usize,
) -> Result<(), AdapterError> {
    if query.dialect() != allow.dialect() {
        return Err(AdapterError::invalid("the query was validated for another SQL dialect"));
    }
    if let Some(table) = query.tables().iter().find(|table| !allow.allows(table)) {
        return Err(AdapterError::of_kind(AdapterErrorKind::Refused)
            .with_message(format!("table {table} is not in this database's allow-list")));
    }
    let values: Vec<ParamValue<'_>> = params
        .iter()
        .map(|param| match param {
            SqlValue::Null => ParamValue::Null,
            SqlValue::Bool(value) => ParamValue::Number(f64::from(u8::from(*value))),
            SqlValue::Int(value) => ParamValue::Number(*value as f64),
            SqlValue::Float(value) => ParamValue::Number(*value),
            SqlValue::Text(value) => ParamValue::Text(value),
            SqlValue::Bytes(value) => ParamValue::Bytes(value.len()),
        })
        .collect();
    query
        .check_params(&values, max_bytes)
        .map_err(|denial| AdapterError::of_kind(AdapterErrorKind::Refused).with_message(denial.message().to_owned()))
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
}

impl WriteOptions {
    pub(crate) fn new(timeout: Duration, max_rows: u64) -> Self {
        WriteOptions { timeout, max_rows }
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

/// A read's rows as JSON text: an array of rows, each an array of values in column order
/// (see [`json`] for the value mapping). The backends write it as rows arrive, and it reaches
/// the caller as it is, without being taken apart and written again.
///
/// ```
/// use serde_json::json;
/// use sqlwarden::adapter::JsonRows;
///
/// let rows = JsonRows::from_values(&[vec![json!(1), json!("a\"b")], vec![json!(null), json!(2.5)]]);
/// assert_eq!(rows.len(), 2);
/// assert_eq!(rows.as_json(), r#"[[1,"a\"b"],[null,2.5]]"#);
/// assert_eq!(rows.to_values().unwrap()[1][1], json!(2.5));
/// ```
#[derive(Clone, PartialEq, Eq)]
pub struct JsonRows {
    /// Always one JSON array of arrays: only this module writes it.
    text: String,
    count: usize,
}

impl JsonRows {
    /// Rows of JSON values, written as the backends write them.
    pub fn from_values(rows: &[Vec<serde_json::Value>]) -> JsonRows {
        let mut text = String::from("[");
        for (index, row) in rows.iter().enumerate() {
            if index > 0 {
                text.push(',');
            }
            write_row(&mut text, row);
        }
        text.push(']');
        JsonRows { text, count: rows.len() }
    }

    /// How many rows there are.
    pub fn len(&self) -> usize {
        self.count
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// The rows as compact JSON text.
    pub fn as_json(&self) -> &str {
        &self.text
    }

    /// The rows as JSON values. (This parses the text: it fails only on values nested deeper
    /// than `serde_json` reads, 128 levels.)
    pub fn to_values(&self) -> Result<Vec<Vec<serde_json::Value>>, serde_json::Error> {
        serde_json::from_str(&self.text)
    }
}

impl Default for JsonRows {
    fn default() -> Self {
        JsonRows { text: String::from("[]"), count: 0 }
    }
}

/// Shows the size of the rows, never their values.
impl fmt::Debug for JsonRows {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JsonRows").field("rows", &self.count).field("bytes", &self.text.len()).finish()
    }
}

/// The rows as they are: a JSON array of arrays.
impl Serialize for JsonRows {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let raw: &serde_json::value::RawValue = serde_json::from_str(&self.text).map_err(serde::ser::Error::custom)?;
        raw.serialize(serializer)
    }
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

/// An adapter failure. Its `Display` never shows a connection string, credentials or row
/// values; its caller-facing message is written by the adapter to be safe to show.
#[derive(Debug)]
pub struct AdapterError {
    kind: AdapterErrorKind,
    message: Option<Cow<'static, str>>,
    source: Option<Box<dyn StdError + Send + Sync>>,
}

/// What kind of failure an [`AdapterError`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum AdapterErrorKind {
    /// The statement ran past its time limit.
    Timeout,
    /// The result exceeded the byte cap.
    ResultTooLarge,
    /// The caller may not see that object (allow-list), or it does not exist.
    NotVisible,
    /// The call's input does not fit the statement (parameters, dialect).
    InvalidInput,
    /// The database refused or failed the statement.
    Database,
    /// The database could not be reached.
    Connection,
    /// A write tool's statements affected more rows than it declared.
    TooManyRows,
    /// The query was refused before it ran (with these parameters, say).
    Refused,
    /// A fault of ours: the database's answer could not be read (a value that does not
    /// decode, say). Answered `INTERNAL`.
    Internal,
}

impl AdapterError {
    /// An error of this kind, keeping its cause for the log.
    pub fn new(kind: AdapterErrorKind, source: impl Into<Box<dyn StdError + Send + Sync>>) -> Self {
        AdapterError { kind, message: None, source: Some(source.into()) }
    }

    /// An error of this kind with no further cause.
    pub fn of_kind(kind: AdapterErrorKind) -> Self {
        AdapterError { kind, message: None, source: None }
    }

    /// Adds a message for the caller. It must not carry credentials, connection strings or
    /// row values.
    #[must_use]
    pub fn with_message(mut self, message: impl Into<Cow<'static, str>>) -> Self {
        self.message = Some(message.into());
        self
    }

    /// The call's input does not fit, for this reason.
    pub(crate) fn invalid(message: impl Into<Cow<'static, str>>) -> Self {
        AdapterError::of_kind(AdapterErrorKind::InvalidInput).with_message(message)
    }

    /// The statement ran past its time limit.
    pub(crate) fn timed_out() -> Self {
        AdapterError::of_kind(AdapterErrorKind::Timeout)
    }

    /// What kind of failure this is.
    pub fn kind(&self) -> AdapterErrorKind {
        self.kind
    }

    /// The denial a caller sees: the message set for it, or the kind's generic one. The cause
    /// is not in it (the boundary logs it).
    pub fn denial(&self) -> Denial {
        let (code, generic) = match self.kind {
            AdapterErrorKind::Timeout => (DenialCode::Timeout, "the statement exceeded its time limit"),
            AdapterErrorKind::ResultTooLarge => (DenialCode::ResultTooLarge, "the result exceeds the size limit"),
            AdapterErrorKind::NotVisible => (DenialCode::QueryRejected, "no such table, or not allowed"),
            AdapterErrorKind::InvalidInput => (DenialCode::InvalidInput, "the input does not fit the statement"),
            AdapterErrorKind::Database => (DenialCode::DbError, "the database refused the statement"),
            AdapterErrorKind::Connection => (DenialCode::DbError, "the database is unavailable; try again later"),
            AdapterErrorKind::TooManyRows => {
                (DenialCode::QueryRejected, "the change affected more rows than the tool allows; nothing was changed")
            }
            AdapterErrorKind::Refused => (DenialCode::QueryRejected, "the query was refused"),
            AdapterErrorKind::Internal => (DenialCode::Internal, "internal error"),
        };
        Denial::new(code, self.message.clone().unwrap_or(Cow::Borrowed(generic)))
    }
}

impl fmt::Display for AdapterError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self.kind {
            AdapterErrorKind::Timeout => "statement timed out",
            AdapterErrorKind::ResultTooLarge => "result too large",
            AdapterErrorKind::NotVisible => "object not visible",
            AdapterErrorKind::InvalidInput => "invalid input",
            AdapterErrorKind::Database => "database error",
            AdapterErrorKind::Connection => "database connection failed",
            AdapterErrorKind::TooManyRows => "too many rows affected",
            AdapterErrorKind::Refused => "query refused",
            AdapterErrorKind::Internal => "internal error",
        })?;
        match &self.message {
            Some(message) => write!(f, ": {message}"),
            None => Ok(()),
        }
    }
}

impl StdError for AdapterError {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        self.source.as_deref().map(|e| e as &(dyn StdError + 'static))
    }
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
        ReadOptions { limit, timeout: Duration::from_secs(1), max_bytes }
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
