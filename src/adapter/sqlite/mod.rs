//! Embedded SQLite through rusqlite, with SQLite compiled in.
//!
//! Reads use a small pool of connections opened read-only, each with `PRAGMA query_only` and
//! an authorizer that lets a caller's statement only select, read allow-listed tables (or
//! the tables an allow-listed view reads) and call functions: a write, a pragma, `ATTACH` or
//! a read of anything else is refused by SQLite itself while the statement is prepared. Each
//! statement is prepared alone (rusqlite refuses trailing statements) and runs on tokio's
//! blocking pool. A progress handler stops it at its deadline, or as soon as the caller's
//! future is dropped.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::future::BoxFuture;
use rusqlite::hooks::{AuthAction, AuthContext, Authorization};
use rusqlite::limits::Limit;
use rusqlite::types::{Value as SqliteValue, ValueRef};
use rusqlite::{Connection, ErrorCode, OpenFlags};
use serde_json::Value;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::{
    Adapter, AdapterError, AdapterErrorKind, ColumnDescription, Executed, ForeignKey, IndexDescription, Posture,
    QueryPlan, QueryResult, ReadOptions, ResultColumn, RowCollector, SqlValue, TableDescription, TableSummary,
    WriteOptions, WriteTransaction, ensure_runnable, sqlite_scans,
};
use crate::evidence::{Evidence, Read, SlotHold, Write};
use crate::json;
use crate::sql::{AllowList, SqlDialect, TableName, ValidatedQuery, is_table_function};

mod plan;
use plan::plan;

/// How long the client waits past the deadline the progress handler enforces.
const CLIENT_GRACE: Duration = Duration::from_millis(250);
/// The time limit for introspection.
const INTROSPECTION_TIMEOUT: Duration = Duration::from_secs(10);
/// The longest value our own introspection statements may read (SQLite's default).
const INTERNAL_MAX_VALUE: usize = 1_000_000_000;
/// SQLite's only schema for the allow-list; attached databases are not offered.
const SCHEMA: &str = "main";

/// The SQLite adapter.
pub struct SqliteAdapter {
    target: Target,
    allow: Arc<AllowList>,
    idle: Arc<Mutex<Vec<ReadConnection>>>,
    permits: Arc<Semaphore>,
}

/// Where the database is.
#[derive(Debug, Clone)]
enum Target {
    File(PathBuf),
    /// A URI filename, e.g. a shared in-memory database (`file:demo?mode=memory&cache=shared`).
    Uri(String),
}

impl std::fmt::Debug for SqliteAdapter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteAdapter").finish_non_exhaustive()
    }
}

/// A read connection and the state its hooks consult.
struct ReadConnection {
    connection: Connection,
    state: Arc<CallState>,
}

/// What the progress handler and the authorizer of one connection know about the current call.
struct CallState {
    /// The call the connection serves now, counted up by [`CallState::begin`].
    generation: AtomicU64,
    /// The call whose caller is gone (its generation): its statement stops at the next check.
    /// A call that has already ended cannot stop the next one, which has another generation.
    cancelled: AtomicU64,
    /// Our own introspection statements may read the catalog; a caller's may not.
    internal: AtomicBool,
    /// The deadline, in nanoseconds after `base`.
    deadline: AtomicU64,
    base: Instant,
}

impl CallState {
    fn expired(&self) -> bool {
        let elapsed = u64::try_from(self.base.elapsed().as_nanos()).unwrap_or(u64::MAX);
        self.cancelled.load(Ordering::Acquire) == self.generation.load(Ordering::Acquire)
            || elapsed > self.deadline.load(Ordering::Relaxed)
    }

    /// Starts a call on the connection; its generation, for [`StopOnDrop`].
    fn begin(&self, deadline: Instant, internal: bool) -> u64 {
        let nanos = deadline.saturating_duration_since(self.base).as_nanos();
        self.deadline.store(u64::try_from(nanos).unwrap_or(u64::MAX), Ordering::Relaxed);
        self.internal.store(internal, Ordering::Relaxed);
        self.generation.fetch_add(1, Ordering::AcqRel) + 1
    }
}

impl SqliteAdapter {
    /// An adapter for `url`: `sqlite:PATH`, `sqlite://PATH` or `sqlite:file:…` (a URI filename).
    /// The file must exist; it is opened read-only for reads. `max_connections` bounds the
    /// reads that run at once.
    pub fn open(url: &str, allow: AllowList, max_connections: usize) -> Result<Self, AdapterError> {
        if allow.dialect() != SqlDialect::Sqlite {
            return Err(AdapterError::invalid("the allow-list was built for another SQL dialect"));
        }
        let rest =
            url.strip_prefix("sqlite:").ok_or_else(|| AdapterError::invalid("a SQLite URL starts with sqlite:"))?;
        let target = if rest.starts_with("file:") {
            Target::Uri(rest.to_owned())
        } else {
            let path = rest.strip_prefix("//").unwrap_or(rest);
            if path.is_empty() {
                return Err(AdapterError::invalid("the SQLite URL names no file"));
            }
            Target::File(PathBuf::from(path))
        };
        let adapter = SqliteAdapter {
            target,
            allow: Arc::new(allow),
            idle: Arc::new(Mutex::new(Vec::new())),
            permits: Arc::new(Semaphore::new(max_connections.max(1))),
        };
        // Open one connection now, so that a missing or unreadable file is reported at once.
        let first = adapter.open_read()?;
        adapter.idle.lock().map_err(|_| poisoned())?.push(first);
        Ok(adapter)
    }

    fn open_with(&self, flags: OpenFlags) -> Result<Connection, AdapterError> {
        let opened = match &self.target {
            Target::File(path) => Connection::open_with_flags(path, flags),
            Target::Uri(uri) => Connection::open_with_flags(uri, flags | OpenFlags::SQLITE_OPEN_URI),
        };
        opened.map_err(|error| {
            AdapterError::new(AdapterErrorKind::Connection, error.to_string())
                .with_message("the SQLite database cannot be opened")
        })
    }

    fn open_read(&self) -> Result<ReadConnection, AdapterError> {
        let mut connection = self.open_with(OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX)?;
        connection.pragma_update(None, "query_only", true).map_err(|error| classify(&error))?;
        let state = Arc::new(CallState {
            generation: AtomicU64::new(0),
            // No call, so none cancelled.
            cancelled: AtomicU64::new(u64::MAX),
            internal: AtomicBool::new(false),
            deadline: AtomicU64::new(0),
            base: Instant::now(),
        });
        let progress = Arc::clone(&state);
        connection.progress_handler(1000, Some(move || progress.expired())).map_err(|error| classify(&error))?;
        let (hook, allow) = (Arc::clone(&state), Arc::clone(&self.allow));
        // Without its authorizer the connection is not used: fail closed.
        connection
            .authorizer(Some(move |context: AuthContext<'_>| authorize(&context, &allow, &hook)))
            .map_err(|error| classify(&error))?;
        Ok(ReadConnection { connection, state })
    }

    /// Runs `work` on a read connection on the blocking pool, within `timeout`. When the
    /// deadline passes or the caller's future is dropped, the statement is stopped.
    ///
    /// Every value a statement makes or reads is limited to `max_value_bytes` (SQLite's
    /// `SQLITE_LIMIT_LENGTH`): one that would be larger fails at once with `SQLITE_TOOBIG`,
    /// before it is built. `hold` keeps the call's quota slot until the statement has stopped
    /// on the blocking pool, even after the caller was answered.
    async fn read_with<R: Send + 'static>(
        &self,
        hold: SlotHold,
        timeout: Duration,
        max_value_bytes: usize,
        internal: bool,
        work: impl FnOnce(&Connection) -> Result<R, AdapterError> + Send + 'static,
    ) -> Result<R, AdapterError> {
        let deadline = Instant::now() + timeout;
        let permit: OwnedSemaphorePermit =
            match tokio::time::timeout_at(deadline.into(), Arc::clone(&self.permits).acquire_owned()).await {
                Ok(Ok(permit)) => permit,
                Ok(Err(_)) => return Err(AdapterError::of_kind(AdapterErrorKind::Connection)),
                Err(_) => return Err(AdapterError::timed_out()),
            };
        let idle = self.idle.lock().map_err(|_| poisoned())?.pop();
        let read = match idle {
            Some(read) => read,
            None => self.open_read()?,
        };
        let generation = read.state.begin(deadline, internal);
        let stop = StopOnDrop(Some((Arc::clone(&read.state), generation)));
        let pool = Arc::clone(&self.idle);
        let task = tokio::task::spawn_blocking(move || {
            let length = i32::try_from(max_value_bytes).unwrap_or(i32::MAX).max(1);
            let result = read
                .connection
                .set_limit(Limit::SQLITE_LIMIT_LENGTH, length)
                .map_err(|error| classify(&error))
                .and_then(|_| work(&read.connection));
            if let Ok(mut idle) = pool.lock() {
                idle.push(read);
            }
            drop(permit);
            drop(hold);
            result
        });
        let outcome = tokio::time::timeout_at((deadline + CLIENT_GRACE).into(), task).await;
        match outcome {
            Ok(Ok(result)) => {
                stop.disarm();
                result
            }
            Ok(Err(join)) => Err(AdapterError::new(AdapterErrorKind::Internal, join.to_string())),
            Err(_) => Err(AdapterError::timed_out()),
        }
    }
}

/// Stops the connection's statement when dropped, unless disarmed: the statement of its own
/// call (by generation), never one of a later call the connection has gone on to serve.
struct StopOnDrop(Option<(Arc<CallState>, u64)>);

impl StopOnDrop {
    fn disarm(mut self) {
        self.0 = None;
    }
}

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        if let Some((state, generation)) = self.0.take() {
            state.cancelled.store(generation, Ordering::Release);
        }
    }
}

/// The engine-side allow-list: a caller's statement may select, read allow-listed tables and
/// call functions, nothing else.
fn authorize(context: &AuthContext<'_>, allow: &AllowList, state: &CallState) -> Authorization {
    let internal = state.internal.load(Ordering::Relaxed);
    match context.action {
        AuthAction::Select | AuthAction::Recursive | AuthAction::Function { .. } => Authorization::Allow,
        // A read without a database is of a CTE or subquery, not of a stored table (needed: a
        // recursive CTE reads its own rows so, see `a_query_past_its_timeout_is_stopped`).
        AuthAction::Read { .. } if context.database_name.is_none() => Authorization::Allow,
        AuthAction::Read { table_name, .. } => {
            let in_main = context.database_name == Some(SCHEMA);
            let through_allowed_view = context.accessor.is_some_and(|view| allow.permits(SCHEMA, view));
            // The table-valued functions the gate lets into FROM (`json_each`) are read as
            // tables of `main`.
            let table_function = is_table_function(SqlDialect::Sqlite, table_name);
            if internal || (in_main && (allow.permits(SCHEMA, table_name) || through_allowed_view || table_function)) {
                Authorization::Allow
            } else {
                Authorization::Deny
            }
        }
        AuthAction::Pragma { .. } if internal => Authorization::Allow,
        _ => Authorization::Deny,
    }
}

impl Adapter for SqliteAdapter {
    fn dialect(&self) -> SqlDialect {
        SqlDialect::Sqlite
    }

    fn query_read<'a>(
        &'a self,
        evidence: Evidence<'a, Read>,
        query: &'a ValidatedQuery,
        params: &'a [SqlValue],
        options: ReadOptions,
    ) -> BoxFuture<'a, Result<QueryResult, AdapterError>> {
        Box::pin(async move {
            ensure_runnable(query, &self.allow, params, options.max_bytes)?;
            let (sql, params, tables) = (query.sql().to_owned(), params.to_vec(), query.tables().to_vec());
            let (hold, cap) = (evidence.hold_slot(), options.max_bytes);
            self.read_with(hold, options.timeout, cap, false, move |connection| {
                // The plan guard runs on the read's own connection, just before the read.
                if options.plan_limit.is_set() {
                    options.plan_limit.check(&plan(connection, &sql, &params, &tables)?)?;
                }
                read(connection, &sql, &params, options)
            })
            .await
        })
    }

    fn explain<'a>(
        &'a self,
        evidence: Evidence<'a, Read>,
        query: &'a ValidatedQuery,
        params: &'a [SqlValue],
        options: ReadOptions,
    ) -> BoxFuture<'a, Result<QueryPlan, AdapterError>> {
        Box::pin(async move {
            ensure_runnable(query, &self.allow, params, options.max_bytes)?;
            let (sql, params, tables) = (query.sql().to_owned(), params.to_vec(), query.tables().to_vec());
            self.read_with(evidence.hold_slot(), options.timeout, options.max_bytes, false, move |connection| {
                plan(connection, &sql, &params, &tables)
            })
            .await
        })
    }

    fn list_tables<'a>(
        &'a self,
        evidence: Evidence<'a, Read>,
        schema: Option<&'a str>,
    ) -> BoxFuture<'a, Result<Vec<TableSummary>, AdapterError>> {
        Box::pin(async move {
            if schema.is_some_and(|schema| !schema.eq_ignore_ascii_case(SCHEMA)) {
                return Ok(Vec::new());
            }
            let allow = Arc::clone(&self.allow);
            self.read_with(evidence.hold_slot(), INTROSPECTION_TIMEOUT, INTERNAL_MAX_VALUE, true, move |connection| {
                let mut statement = connection.prepare(LIST_TABLES).map_err(|error| classify(&error))?;
                let rows = statement
                    .query_map([], |row| Ok((row.get::<_, String>(0)?, row.get::<_, String>(1)?)))
                    .map_err(|error| classify(&error))?;
                let mut tables = Vec::new();
                for row in rows {
                    let (name, kind) = row.map_err(|error| classify(&error))?;
                    if allow.permits(SCHEMA, &name) {
                        tables.push(TableSummary { schema: SCHEMA.to_owned(), name, kind });
                    }
                }
                Ok(tables)
            })
            .await
        })
    }

    fn describe_table<'a>(
        &'a self,
        evidence: Evidence<'a, Read>,
        schema: Option<&'a str>,
        table: &'a str,
    ) -> BoxFuture<'a, Result<TableDescription, AdapterError>> {
        Box::pin(async move {
            let name = self.allow.resolve(schema, table);
            if !self.allow.allows(&name) {
                return Err(AdapterError::of_kind(AdapterErrorKind::NotVisible));
            }
            let allow = Arc::clone(&self.allow);
            let hold = evidence.hold_slot();
            let described = self
                .read_with(hold, INTROSPECTION_TIMEOUT, INTERNAL_MAX_VALUE, true, move |connection| {
                    describe(connection, &allow, &name.table)
                })
                .await?;
            Ok(super::with_column_rules(described, &self.allow))
        })
    }

    fn posture<'a>(&'a self, _evidence: Evidence<'a, Read>) -> BoxFuture<'a, Result<Posture, AdapterError>> {
        Box::pin(async move {
            let mut findings = Vec::new();
            if let Target::File(path) = &self.target {
                // Opening for writing (without truncating or writing) is the one true test: the
                // mode bits do not bind a privileged process.
                let writable = std::fs::OpenOptions::new().write(true).open(path).is_ok();
                if writable {
                    findings.push(
                        "the database file is writable by this process (sqlwarden opens it read-only; make the file \
                         read-only to be sure nothing else running as this user changes it)"
                            .to_owned(),
                    );
                }
            }
            Ok(Posture { role: "this process".to_owned(), findings })
        })
    }

    fn begin_write<'a>(
        &'a self,
        _evidence: Evidence<'a, Write>,
        options: WriteOptions,
    ) -> BoxFuture<'a, Result<Box<dyn WriteTransaction<'a> + 'a>, AdapterError>> {
        Box::pin(async move {
            let mut connection = self.open_with(OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX)?;
            let stop = Arc::new(AtomicBool::new(false));
            let (flag, deadline) = (Arc::clone(&stop), Instant::now() + options.timeout());
            let connection = tokio::task::spawn_blocking(move || {
                // A statement stops at its deadline, or when the transaction is abandoned.
                connection
                    .progress_handler(1000, Some(move || flag.load(Ordering::Relaxed) || Instant::now() > deadline))?;
                connection.busy_timeout(options.timeout())?;
                connection.execute_batch("BEGIN IMMEDIATE").map(|()| connection)
            })
            .await
            .map_err(|join| AdapterError::new(AdapterErrorKind::Internal, join.to_string()))?
            .map_err(|error| classify(&error))?;
            Ok(Box::new(SqliteWrite { connection: Some(connection), stop }) as Box<dyn WriteTransaction<'a> + 'a>)
        })
    }
}

/// A write transaction on a connection of its own. Closing the connection uncommitted rolls
/// it back; dropped while a statement runs, the statement is interrupted first.
struct SqliteWrite {
    /// `None` while a statement runs on the blocking pool, or after a failed one.
    connection: Option<Connection>,
    stop: Arc<AtomicBool>,
}

impl SqliteWrite {
    async fn with<R: Send + 'static>(
        &mut self,
        work: impl FnOnce(&Connection) -> Result<R, rusqlite::Error> + Send + 'static,
    ) -> Result<R, AdapterError> {
        let connection = self.connection.take().ok_or_else(|| AdapterError::invalid("the transaction has ended"))?;
        let (connection, result) = tokio::task::spawn_blocking(move || {
            let result = work(&connection);
            (connection, result)
        })
        .await
        .map_err(|join| AdapterError::new(AdapterErrorKind::Internal, join.to_string()))?;
        self.connection = Some(connection);
        result.map_err(|error| classify(&error))
    }

    async fn finish(mut self: Box<Self>, command: &'static str) -> Result<(), AdapterError> {
        self.with(move |connection| connection.execute_batch(command)).await
    }
}

impl Drop for SqliteWrite {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

impl<'a> WriteTransaction<'a> for SqliteWrite {
    fn execute<'s>(
        &'s mut self,
        statement: &'static str,
        params: &'s [SqlValue],
        row_cap: u64,
    ) -> BoxFuture<'s, Result<Executed, AdapterError>> {
        let params = params.to_vec();
        Box::pin(async move {
            self.with(move |connection| {
                let mut prepared = connection.prepare(statement)?;
                if prepared.parameter_count() != params.len() {
                    return Err(rusqlite::Error::InvalidParameterCount(params.len(), prepared.parameter_count()));
                }
                bind(&mut prepared, &params)?;
                let width = prepared.column_count();
                let (before, id_before) = (connection.total_changes(), connection.last_insert_rowid());
                let mut rows = Vec::new();
                let mut cursor = prepared.raw_query();
                while let Some(row) = cursor.next()? {
                    if rows.len() as u64 > row_cap {
                        // Over the limit already; the caller refuses the statement.
                        break;
                    }
                    rows.push(values(row, width)?);
                }
                drop(cursor);
                let rows_affected = connection.total_changes().saturating_sub(before);
                // SQLite keeps the last insert's rowid across statements: only a new one counts.
                let inserted = connection.last_insert_rowid();
                let last_insert_id = (inserted != id_before && inserted > 0).then_some(inserted.unsigned_abs());
                Ok(Executed { rows_affected, last_insert_id, rows })
            })
            .await
        })
    }

    fn commit(self: Box<Self>) -> BoxFuture<'a, Result<(), AdapterError>> {
        Box::pin(self.finish("COMMIT"))
    }

    fn rollback(self: Box<Self>) -> BoxFuture<'a, Result<(), AdapterError>> {
        Box::pin(self.finish("ROLLBACK"))
    }
}

fn bind(statement: &mut rusqlite::Statement<'_>, params: &[SqlValue]) -> Result<(), rusqlite::Error> {
    for (index, param) in params.iter().enumerate() {
        let value = match param {
            SqlValue::Null => SqliteValue::Null,
            SqlValue::Bool(value) => SqliteValue::Integer(i64::from(*value)),
            SqlValue::Int(value) => SqliteValue::Integer(*value),
            SqlValue::Float(value) => SqliteValue::Real(*value),
            SqlValue::Text(value) => SqliteValue::Text(value.clone()),
            SqlValue::Bytes(value) => SqliteValue::Blob(value.clone()),
        };
        statement.raw_bind_parameter(index + 1, value)?;
    }
    Ok(())
}

/// The read itself, on the blocking pool.
fn read(
    connection: &Connection,
    sql: &str,
    params: &[SqlValue],
    options: ReadOptions,
) -> Result<QueryResult, AdapterError> {
    let mut statement = connection.prepare(sql).map_err(|error| classify(&error))?;
    if statement.parameter_count() != params.len() {
        return Err(AdapterError::invalid("the query's placeholders do not match the parameters given"));
    }
    bind(&mut statement, params).map_err(|error| classify(&error))?;
    let columns: Vec<ResultColumn> = statement
        .columns()
        .map(|column| ResultColumn {
            name: column.name().to_owned(),
            data_type: column.decl_type().unwrap_or("").to_ascii_lowercase(),
        })
        .collect();
    let width = columns.len();
    let mut rows = RowCollector::new(options);
    let mut truncated = false;
    let mut cursor = statement.raw_query();
    while let Some(row) = cursor.next().map_err(|error| classify(&error))? {
        if rows.is_full() {
            truncated = true;
            break;
        }
        let mut out = rows.row();
        for index in 0..width {
            let value = row.get_ref(index).map_err(|error| classify(&error))?;
            let limit = out.limit();
            if write_value(value, out.value(), limit).is_err() {
                return Err(out.too_large());
            }
        }
        out.end()?;
    }
    Ok(rows.finish(columns, truncated))
}

/// One row's values in the JSON mapping, for the few rows a write returns.
fn values(row: &rusqlite::Row<'_>, width: usize) -> Result<Vec<Value>, rusqlite::Error> {
    let mut values = Vec::with_capacity(width);
    let mut text = String::new();
    for index in 0..width {
        text.clear();
        let written = write_value(row.get_ref(index)?, &mut text, usize::MAX);
        values.push(written.ok().and_then(|()| serde_json::from_str(&text).ok()).unwrap_or(Value::Null));
    }
    Ok(values)
}

/// Writes one value as JSON text, unless it would take `out` past `limit` bytes.
fn write_value(value: ValueRef<'_>, out: &mut String, limit: usize) -> Result<(), json::text::TooLarge> {
    match value {
        ValueRef::Null => json::text::null(out),
        ValueRef::Integer(value) => json::text::int(out, value),
        ValueRef::Real(value) => json::text::float(out, value),
        ValueRef::Text(text) => return json::text::lossy_within(out, text, limit),
        ValueRef::Blob(blob) => return json::text::base64_within(out, blob, limit),
    }
    Ok(())
}

fn describe(connection: &Connection, allow: &AllowList, table: &str) -> Result<TableDescription, AdapterError> {
    let sqlite = |error: rusqlite::Error| classify(&error);
    let mut info = connection.prepare(TABLE_INFO).map_err(sqlite)?;
    let mut columns = Vec::new();
    let mut keyed = Vec::new();
    let mut name = None;
    let mut rows = info.query([table]).map_err(sqlite)?;
    while let Some(row) = rows.next().map_err(sqlite)? {
        let column: String = row.get(0).map_err(sqlite)?;
        let key: i64 = row.get(4).map_err(sqlite)?;
        if key > 0 {
            keyed.push((key, column.clone()));
        }
        name.get_or_insert(row.get::<_, String>(5).map_err(sqlite)?);
        columns.push(ColumnDescription {
            name: column,
            data_type: row.get::<_, String>(1).map_err(sqlite)?.to_ascii_lowercase(),
            nullable: row.get::<_, i64>(2).map_err(sqlite)? == 0,
            default: row.get(3).map_err(sqlite)?,
            comment: None,
            rule: None,
        });
    }
    drop(rows);
    let Some(name) = name else {
        return Err(AdapterError::of_kind(AdapterErrorKind::NotVisible));
    };
    keyed.sort();
    let primary_key: Vec<String> = keyed.into_iter().map(|(_, column)| column).collect();

    let mut foreign_keys: Vec<(i64, ForeignKey)> = Vec::new();
    let mut fks = connection.prepare(FOREIGN_KEYS).map_err(sqlite)?;
    let mut rows = fks.query([table]).map_err(sqlite)?;
    while let Some(row) = rows.next().map_err(sqlite)? {
        let id: i64 = row.get(0).map_err(sqlite)?;
        let referenced: String = row.get(1).map_err(sqlite)?;
        let (from, to): (String, Option<String>) = (row.get(2).map_err(sqlite)?, row.get(3).map_err(sqlite)?);
        if foreign_keys.last().is_none_or(|(last, _)| *last != id) {
            foreign_keys.push((
                id,
                ForeignKey {
                    name: format!("{name}_fk{id}"),
                    columns: Vec::new(),
                    referenced_schema: SCHEMA.to_owned(),
                    referenced_table: referenced,
                    referenced_columns: Vec::new(),
                },
            ));
        }
        if let Some((_, key)) = foreign_keys.last_mut() {
            key.columns.push(from);
            key.referenced_columns.extend(to);
        }
    }
    drop(rows);
    // A key to a table the caller may not see would name that table: leave it out.
    let foreign_keys: Vec<ForeignKey> = foreign_keys
        .into_iter()
        .map(|(_, key)| key)
        .filter(|key| allow.permits(SCHEMA, &key.referenced_table))
        .collect();

    let mut indexes = Vec::new();
    let mut list = connection.prepare(INDEX_LIST).map_err(sqlite)?;
    let listed: Vec<(String, bool)> = list
        .query_map([table], |row| Ok((row.get(0)?, row.get::<_, i64>(1)? != 0)))
        .map_err(sqlite)?
        .collect::<Result<_, _>>()
        .map_err(sqlite)?;
    let mut info = connection.prepare(INDEX_INFO).map_err(sqlite)?;
    for (index, unique) in listed {
        let columns: Vec<String> = info
            .query_map([&index], |row| Ok(row.get::<_, Option<String>>(0)?.unwrap_or_else(|| "<expression>".into())))
            .map_err(sqlite)?
            .collect::<Result<_, _>>()
            .map_err(sqlite)?;
        indexes.push(IndexDescription { name: index, columns, unique });
    }
    Ok(TableDescription { schema: SCHEMA.to_owned(), name, columns, primary_key, foreign_keys, indexes })
}

/// Maps a SQLite error to what a caller may see. SQLite's messages name the query's words
/// (no such column, syntax), not row values, and are passed on.
fn classify(error: &rusqlite::Error) -> AdapterError {
    match error {
        rusqlite::Error::SqliteFailure(failure, message) => {
            let text = message.as_deref().unwrap_or("statement failed");
            match failure.code {
                ErrorCode::OperationInterrupted => AdapterError::timed_out(),
                ErrorCode::TooBig => AdapterError::new(AdapterErrorKind::ResultTooLarge, text.to_owned())
                    .with_message("a value is larger than a result may hold; select fewer or smaller values"),
                ErrorCode::AuthorizationForStatementDenied => {
                    AdapterError::new(AdapterErrorKind::Database, text.to_owned())
                        .with_message("the database refused the statement: it may only read allow-listed tables")
                }
                ErrorCode::ReadOnly => AdapterError::new(AdapterErrorKind::Database, text.to_owned())
                    .with_message("the database refused to write: the connection is read-only"),
                ErrorCode::CannotOpen | ErrorCode::NotADatabase | ErrorCode::DatabaseCorrupt => {
                    AdapterError::new(AdapterErrorKind::Connection, text.to_owned())
                }
                _ => AdapterError::new(AdapterErrorKind::Database, text.to_owned())
                    .with_message(format!("the database refused the statement: {}", cut(text))),
            }
        }
        rusqlite::Error::MultipleStatement => AdapterError::invalid("exactly one statement is allowed"),
        rusqlite::Error::InvalidParameterCount(..) => {
            AdapterError::invalid("the statement's parameters do not match the values given")
        }
        // What rusqlite could not convert or read: a fault of ours.
        other => AdapterError::new(AdapterErrorKind::Internal, other.to_string()),
    }
}

fn cut(text: &str) -> String {
    match text.char_indices().nth(200) {
        Some((end, _)) => format!("{}…", &text[..end]),
        None => text.to_owned(),
    }
}

fn poisoned() -> AdapterError {
    AdapterError::of_kind(AdapterErrorKind::Internal).with_message("the connection pool failed")
}

const LIST_TABLES: &str =
    "SELECT name, type FROM main.sqlite_schema WHERE type IN ('table', 'view') ORDER BY name COLLATE NOCASE";
/// Columns: name, declared type, not null, default, primary-key position, and the table's
/// name as the catalog spells it.
const TABLE_INFO: &str = "SELECT p.name, p.type, p.\"notnull\", p.dflt_value, p.pk, s.name \
     FROM main.sqlite_schema AS s, pragma_table_info(s.name, 'main') AS p \
     WHERE s.type IN ('table', 'view') AND s.name = ?1 COLLATE NOCASE ORDER BY p.cid";
const FOREIGN_KEYS: &str =
    "SELECT id, \"table\", \"from\", \"to\" FROM pragma_foreign_key_list(?1, 'main') ORDER BY id, seq";
const INDEX_LIST: &str = "SELECT name, \"unique\" FROM pragma_index_list(?1, 'main') ORDER BY name";
const INDEX_INFO: &str = "SELECT name FROM pragma_index_info(?1, 'main') ORDER BY seqno";

#[cfg(test)]
mod tests {
    use super::*;

    /// Statements the SQL gate would never pass, handed to a read connection directly: the
    /// engine refuses each, and nothing changes.
    #[tokio::test]
    async fn the_engine_refuses_what_a_read_connection_must_not_do() {
        let path = std::env::temp_dir().join(format!("sqlwarden-unit-{}.db", std::process::id()));
        let setup = Connection::open(&path).expect("create");
        setup
            .execute_batch("CREATE TABLE t (id INTEGER); CREATE TABLE hidden (x); INSERT INTO t VALUES (1);")
            .expect("fixture");
        let allow = AllowList::new(SqlDialect::Sqlite, "main").table("main", "t");
        let adapter = SqliteAdapter::open(&format!("sqlite:{}", path.display()), allow, 1).expect("opens");
        let options = ReadOptions {
            limit: 10,
            timeout: Duration::from_secs(5),
            max_bytes: 1 << 20,
            budget_bytes: None,
            plan_limit: Default::default(),
        };
        for sql in [
            "INSERT INTO t VALUES (2)",
            "DELETE FROM t",
            "CREATE TABLE u (x)",
            "PRAGMA query_only = 0",
            "ATTACH DATABASE ':memory:' AS other",
            "SELECT * FROM hidden",
            "SELECT * FROM sqlite_schema",
        ] {
            let error = adapter
                .read_with(SlotHold::none(), Duration::from_secs(5), 1 << 20, false, move |connection| {
                    read(connection, sql, &[], options)
                })
                .await
                .expect_err(sql);
            assert_eq!(error.kind(), AdapterErrorKind::Database, "{sql}");
        }
        let two = adapter
            .read_with(SlotHold::none(), Duration::from_secs(5), 1 << 20, false, move |connection| {
                read(connection, "SELECT 1; SELECT 2", &[], options)
            })
            .await
            .expect_err("two statements");
        assert_eq!(two.kind(), AdapterErrorKind::InvalidInput);
        let count: i64 = setup.query_row("SELECT count(*) FROM t", [], |row| row.get(0)).expect("count");
        assert_eq!(count, 1, "nothing was written");
        drop(adapter);
        let _ = std::fs::remove_file(&path);
    }

    /// A call whose caller went away after its statement ended (its connection already serving
    /// the next call) stops nothing: only its own statement, by generation.
    #[test]
    fn a_stale_cancellation_cannot_stop_the_next_call() {
        let state = Arc::new(CallState {
            generation: AtomicU64::new(0),
            cancelled: AtomicU64::new(0),
            internal: AtomicBool::new(false),
            deadline: AtomicU64::new(0),
            base: Instant::now(),
        });
        let later = Instant::now() + Duration::from_secs(60);
        let first = state.begin(later, false);
        let stale = StopOnDrop(Some((Arc::clone(&state), first)));
        let second = state.begin(later, false);
        assert_ne!(first, second);
        drop(stale);
        assert!(!state.expired(), "the first call's cancellation stopped the second");
        let current = StopOnDrop(Some((Arc::clone(&state), second)));
        drop(current);
        assert!(state.expired(), "a call's own cancellation stops it");
        state.begin(later, false);
        assert!(!state.expired(), "and not the call after it");
    }

    #[test]
    fn sqlite_messages_are_cut_short() {
        assert_eq!(cut("short"), "short");
        let long = "x".repeat(300);
        assert_eq!(cut(&long).chars().count(), 201);
    }
}
