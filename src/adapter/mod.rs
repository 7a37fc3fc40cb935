//! The database adapter interface. Every method that touches a database takes admitted
//! [`Evidence`] by value; writing needs `Evidence<'_, Write>`, which exists only for a write
//! tool admitted in read-write mode, and reading caller SQL needs a [`ValidatedQuery`].

use std::borrow::Cow;
use std::error::Error as StdError;
use std::fmt;
use std::time::Duration;

use futures_util::future::BoxFuture;
use serde::Serialize;

use crate::boundary::{Denial, DenialCode, Evidence, Read, Write};
use crate::sql::{SqlDialect, ValidatedQuery};

pub mod json;
#[cfg(feature = "postgres")]
pub mod postgres;
#[cfg(feature = "sqlite")]
pub mod sqlite;

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

    /// Opens a write transaction. Only a write tool admitted in read-write mode holds the
    /// evidence this needs.
    fn begin_write<'a>(&'a self, evidence: Evidence<'a, Write>) -> BoxFuture<'a, Result<WriteTx<'a>, AdapterError>>;
}

/// A write transaction bound to the invocation that opened it. Rolled back unless committed.
pub struct WriteTx<'a> {
    inner: Box<dyn WriteTransaction<'a> + 'a>,
}

/// What a backend implements to offer write transactions (see [`WriteTx`]).
pub trait WriteTransaction<'a>: Send {
    /// Runs one parameterized statement written by the tool's author; returns rows affected.
    fn execute<'s>(
        &'s mut self,
        statement: &'static str,
        params: &'s [SqlValue],
    ) -> BoxFuture<'s, Result<u64, AdapterError>>;

    /// Commits. Dropping the transaction without committing rolls it back.
    fn commit(self: Box<Self>) -> BoxFuture<'a, Result<(), AdapterError>>;
}

impl<'a> WriteTx<'a> {
    /// Wraps a backend's transaction.
    pub fn new(inner: Box<dyn WriteTransaction<'a> + 'a>) -> Self {
        WriteTx { inner }
    }

    /// Runs one parameterized statement; `statement` is fixed text, never built from input.
    pub async fn execute(&mut self, statement: &'static str, params: &[SqlValue]) -> Result<u64, AdapterError> {
        self.inner.execute(statement, params).await
    }

    /// Commits the transaction.
    pub async fn commit(self) -> Result<(), AdapterError> {
        self.inner.commit().await
    }
}

impl fmt::Debug for WriteTx<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("WriteTx")
    }
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
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct QueryResult {
    /// The result's columns, in order.
    pub columns: Vec<ResultColumn>,
    /// The rows, each a JSON array in column order (see [`json`] for the value mapping).
    pub rows: Vec<Vec<serde_json::Value>>,
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

    /// What kind of failure this is.
    pub fn kind(&self) -> AdapterErrorKind {
        self.kind
    }

    /// The denial a caller sees, or `None` for a fault to be logged and answered generically.
    pub fn denial(&self) -> Option<Denial> {
        let (code, generic) = match self.kind {
            AdapterErrorKind::Timeout => (DenialCode::Timeout, "the statement exceeded its time limit"),
            AdapterErrorKind::ResultTooLarge => (DenialCode::ResultTooLarge, "the result exceeds the size limit"),
            AdapterErrorKind::NotVisible => (DenialCode::QueryRejected, "no such table, or not allowed"),
            AdapterErrorKind::InvalidInput => (DenialCode::InvalidInput, "the input does not fit the statement"),
            AdapterErrorKind::Database => (DenialCode::DbError, "the database refused the statement"),
            AdapterErrorKind::Connection => (DenialCode::DbError, "the database is unavailable; try again later"),
        };
        Some(Denial::new(code, self.message.clone().unwrap_or(Cow::Borrowed(generic))))
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
