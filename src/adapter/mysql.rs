//! MySQL and MariaDB through mysql_async and its pool.
//!
//! Every connection starts with a fixed `sql_mode` (backslash escapes on, `ANSI_QUOTES`
//! off, as the SQL gate's parser reads text), UTF-8 and the UTC time zone. Every read sets
//! the server's statement time limit (`max_statement_time` on MariaDB, `max_execution_time`
//! on MySQL) and `sql_select_limit` to `limit + 1`, runs in `START TRANSACTION READ ONLY`,
//! and is always rolled back. Caller SQL only ever runs as one prepared statement (the binary
//! protocol takes exactly one statement); no LOCAL INFILE handler is installed, so the client
//! refuses any file request. When the deadline passes or the caller's future is dropped,
//! the connection is killed from a separate connection (`KILL`, never `KILL QUERY`: the
//! connection id could already serve another caller) and is not reused.
//!
//! `sql_select_limit` stops a query without its own `LIMIT` on the server after `limit + 1`
//! rows. A query with a larger `LIMIT` of its own is read to that `LIMIT` and the rows past
//! `limit + 1` are discarded, never returned.

use std::borrow::Cow;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use futures_util::future::BoxFuture;
use mysql_async::consts::{ColumnFlags, ColumnType};
use mysql_async::prelude::Queryable;
use mysql_async::{Conn, Opts, OptsBuilder, Pool, PoolConstraints, PoolOpts, Row, SslOpts, Value as MyValue};
use serde_json::Value;
use tokio::time::Instant;

use super::{
    Adapter, AdapterError, AdapterErrorKind, ColumnDescription, Executed, ForeignKey, IndexDescription, PoolOptions,
    Posture, QueryResult, ReadOptions, ResultColumn, SqlValue, TableDescription, TableSummary, WriteOptions,
    WriteTransaction,
};
use super::{LONG_VALUE_PIECE, RowCollector, ensure_runnable, take_url_parameter};
use crate::evidence::{Evidence, Read, SlotHold, Write};
use crate::json;
use crate::sql::{AllowList, SqlDialect, TableName, ValidatedQuery};

const CLIENT_GRACE: Duration = Duration::from_millis(250);
const INTROSPECTION_TIMEOUT: Duration = Duration::from_secs(10);
/// The session every statement runs in, set by each read's and each write's own settings (a
/// connection is reset whenever it goes back to the pool: see [`MySqlAdapter::connect`]).
const SESSION: &str = "SET SESSION sql_mode = 'ONLY_FULL_GROUP_BY,STRICT_TRANS_TABLES,NO_ZERO_IN_DATE,NO_ZERO_DATE,\
    ERROR_FOR_DIVISION_BY_ZERO,NO_ENGINE_SUBSTITUTION', time_zone = '+00:00', NAMES utf8mb4";

/// The MySQL and MariaDB adapter.
pub struct MySqlAdapter {
    pool: Pool,
    opts: Opts,
    allow: AllowList,
    connect_timeout: Duration,
    max_connections: usize,
    /// The largest packet the client takes (see [`PoolOptions::max_message_bytes`]).
    max_message_bytes: usize,
    /// What kind of server this is; learned on the first connection that answers.
    server: tokio::sync::OnceCell<ServerKind>,
    /// The budget of side connections that stop abandoned statements.
    side: Arc<tokio::sync::Semaphore>,
    /// Which allow-listed tables are base tables (see [`end_read`]).
    kinds: Arc<TableKinds>,
    /// The database is on another machine and the URL asks for plain text (see
    /// [`super::PLAINTEXT_FINDING`]).
    plaintext: bool,
}

impl std::fmt::Debug for MySqlAdapter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MySqlAdapter").field("database", &self.allow.default_schema()).finish_non_exhaustive()
    }
}

impl MySqlAdapter {
    /// Builds the pool for `url` (`mysql://…` or `mariadb://…`, naming a database). No
    /// connection is made until the first call. The URL never appears in an error.
    pub fn connect(url: &str, allow: AllowList, options: PoolOptions) -> Result<Self, AdapterError> {
        if allow.dialect() != SqlDialect::MySql {
            return Err(AdapterError::invalid("the allow-list was built for another SQL dialect"));
        }
        let url: Cow<'_, str> = match url.strip_prefix("mariadb://") {
            Some(rest) => Cow::Owned(format!("mysql://{rest}")),
            None => Cow::Borrowed(url),
        };
        let (url, root_certificates) = take_url_parameter(&url, "sslrootcert");
        let parsed = Opts::from_url(&url)
            .map_err(|_| AdapterError::invalid("the MySQL URL is not valid (the URL itself is not shown)"))?;
        // On another machine, TLS is required unless the URL says `require_ssl=false`.
        let remote = parsed.socket().is_none() && !super::is_local_host(parsed.ip_or_hostname());
        let named = take_url_parameter(&url, "require_ssl").1.is_some();
        let asked = match parsed.ssl_opts().cloned() {
            None if remote && !named => Some(SslOpts::default()),
            asked => asked,
        };
        let ssl = match (asked, root_certificates) {
            (Some(ssl), _) if ssl.accept_invalid_certs() || ssl.skip_domain_validation() => {
                return Err(AdapterError::invalid(
                    "TLS certificate verification cannot be turned off (verify_ca, verify_identity)",
                ));
            }
            (Some(ssl), Some(path)) => Some(ssl.with_root_certs(vec![PathBuf::from(path).into()])),
            (None, Some(_)) => {
                return Err(AdapterError::invalid(
                    "sslrootcert needs TLS: require_ssl=true, or a host on another machine",
                ));
            }
            (ssl, None) => ssl,
        };
        let plaintext = remote && ssl.is_none();
        if plaintext {
            tracing::warn!("{}", super::PLAINTEXT_FINDING);
        }
        if parsed.db_name().is_none() {
            return Err(AdapterError::invalid("the MySQL URL must name a database"));
        }
        let constraints = PoolConstraints::new(0, options.max_connections.max(1))
            .ok_or_else(|| AdapterError::invalid("the pool size is not valid"))?;
        let opts: Opts = OptsBuilder::from_opts(parsed)
            .ssl_opts(ssl)
            // The client refuses a packet (a row) larger than a result may be, before reading it
            // whole: one value cannot take the process's memory past the limits.
            .max_allowed_packet(Some(options.max_message_bytes()))
            // Idle connections are kept for a while (with no time to live, mysql_async would
            // close every connection above the minimum as soon as it is returned).
            .pool_opts(
                PoolOpts::default()
                    .with_constraints(constraints)
                    // A connection is reset (`COM_RESET_CONNECTION`) when it goes back to the
                    // pool, off the answer's path: whatever one call left on it (a user
                    // variable, a session setting, a temporary table, an open transaction) is
                    // gone before the next call gets it. A read of base tables only, which runs
                    // no stored code, is rolled back instead and keeps its prepared statements
                    // (see `end_read`).
                    .with_reset_connection(true)
                    .with_inactive_connection_ttl(Duration::from_secs(300)),
            )
            .into();
        let kinds = Arc::new(TableKinds::new(&allow));
        Ok(MySqlAdapter {
            pool: Pool::new(opts.clone()),
            opts,
            allow,
            connect_timeout: options.connect_timeout,
            max_connections: options.max_connections.max(1),
            server: tokio::sync::OnceCell::new(),
            side: Arc::new(tokio::sync::Semaphore::new(SIDE_CONNECTIONS)),
            kinds,
            max_message_bytes: options.max_message_bytes(),
            plaintext,
        })
    }

    async fn checkout(&self, deadline: Instant) -> Result<Conn, AdapterError> {
        let wait = deadline.min(Instant::now() + self.connect_timeout);
        match tokio::time::timeout_at(wait, self.pool.get_conn()).await {
            Ok(Ok(conn)) => Ok(conn),
            Ok(Err(error)) => Err(AdapterError::new(AdapterErrorKind::Connection, scrub(&error))),
            Err(_) => Err(AdapterError::of_kind(AdapterErrorKind::Connection)),
        }
    }

    /// What kind of server this is, asked until it has answered once (a failed probe is not
    /// remembered: the call fails as its connection did, and the next one asks again).
    async fn server(&self, conn: &mut Conn) -> Result<ServerKind, mysql_async::Error> {
        remember(&self.server, ServerKind::probe(conn)).await
    }

    /// Runs `work` in a read-only transaction, within `timeout`. A connection that turns out
    /// dead before the statement is sent is replaced; once it is sent, the statement is never
    /// run again, whatever happens to it (an operator's `KILL` included). Should the deadline
    /// pass or the caller go away first, the statement is stopped (see [`Stopper`]) and `hold`
    /// keeps the call's quota slot until the server has let go of it.
    async fn in_read_transaction<C: Sync + ?Sized, R>(
        &self,
        hold: SlotHold,
        timeout: Duration,
        run: &ReadRun<'_>,
        context: &C,
        work: for<'t> fn(&'t mut Conn, &'t C) -> BoxFuture<'t, Result<R, Failure>>,
    ) -> Result<R, AdapterError> {
        let deadline = Instant::now() + timeout + CLIENT_GRACE;
        let mut hold = hold;
        let mut attempt = 0;
        loop {
            attempt += 1;
            let mut conn = self.checkout(deadline).await?;
            let server = match self.server(&mut conn).await {
                Ok(server) => server,
                Err(error) => {
                    drop(conn);
                    if is_connection_failure(&error) && attempt <= self.max_connections {
                        continue;
                    }
                    return Err(classify(&error));
                }
            };
            let settings = if server.mariadb {
                format!(
                    "{SESSION}, SESSION max_statement_time = {:.3}, SESSION sql_select_limit = {}; \
                     START TRANSACTION READ ONLY",
                    super::statement_millis(timeout) as f64 / 1000.0,
                    run.row_cap
                )
            } else {
                format!(
                    "{SESSION}, SESSION max_execution_time = {}, SESSION sql_select_limit = {}; \
                     START TRANSACTION READ ONLY",
                    super::statement_millis(timeout),
                    run.row_cap
                )
            };
            let mut running = self.running(conn, hold);
            // The settings and the transaction's start share one round trip; a failed setting
            // stops the batch before the transaction starts, and nothing runs.
            match tokio::time::timeout_at(deadline, running.conn().query_drop(settings)).await {
                // Dropped here, `running` stops whatever the connection does.
                Err(_) => return Err(AdapterError::timed_out()),
                Ok(Err(error)) => {
                    let (conn, back) = running.finish();
                    drop(conn);
                    // Every pooled connection may be dead (a restart kills them all): try each
                    // once, and one fresh.
                    if is_connection_failure(&error) && attempt <= self.max_connections {
                        hold = back;
                        continue;
                    }
                    return Err(classify(&error));
                }
                Ok(Ok(())) => {}
            }
            // The statement is sent from here on.
            let Ok(result) = tokio::time::timeout_at(deadline, work(running.conn(), context)).await else {
                return Err(AdapterError::timed_out());
            };
            let (conn, _ended) = running.finish();
            // The transaction ends whatever the work's outcome, without holding up the answer:
            // see `end_read`. A packet too large for the client broke the connection anyway.
            let keep = !run.large.load(Ordering::Relaxed)
                && !matches!(&result, Err(Failure::MySql(error)) if is_packet_too_large(error));
            // Most reads name base tables the catalog listed within the second: nothing to copy.
            let base_only = match run.tables {
                None => Ok(true),
                Some(tables) => {
                    self.kinds.known.fresh(tables).ok_or_else(|| (tables.to_vec(), Arc::clone(&self.kinds)))
                }
            };
            let repeat = match base_only {
                Ok(true) => None,
                _ => run.repeat.filter(|_| server.prepares_as_we_read).map(str::to_owned),
            };
            let after = AfterRead { base_only, repeat };
            tokio::spawn(end_read(self.running(conn, SlotHold::none()), self.connect_timeout, keep, after));
            return result.map_err(|failure| match failure {
                Failure::MySql(error) if is_connection_failure(&error) && !is_packet_too_large(&error) => {
                    lost_while_running(scrub(&error))
                }
                failure => failure.into_adapter_error(),
            });
        }
    }

    /// Says what limit a refused packet went over.
    fn explain(&self, error: AdapterError) -> AdapterError {
        if error.kind() == AdapterErrorKind::ResultTooLarge && error.message.is_none() {
            return error.with_message(format!(
                "a row is larger than {} bytes, more than a result may hold; select fewer or smaller columns",
                self.max_message_bytes
            ));
        }
        error
    }

    /// A connection about to run a statement for a call, stopped should it be abandoned.
    fn running(&self, conn: Conn, hold: SlotHold) -> Running {
        let stopper = Stopper { opts: self.opts.clone(), side: Arc::clone(&self.side), hold };
        Running { id: conn.id(), conn: Some(conn), stopper: Some(stopper) }
    }
}

/// The refusal of a statement whose connection failed while it ran: it is not run again.
fn lost_while_running(cause: String) -> AdapterError {
    AdapterError::new(AdapterErrorKind::Connection, cause).with_message(
        "the connection to the database was lost while the statement ran (it may have been ended by an \
         administrator); it was not run again",
    )
}

/// What [`end_read`] needs to know of the read.
struct AfterRead {
    /// Whether the read named base tables only (our own catalog reads do), or, when what the
    /// catalog said is not fresh, the tables it named, to ask.
    base_only: Result<bool, (Vec<TableName>, Arc<TableKinds>)>,
    /// The statement to prepare again after a reset (only where the server's own `sql_mode`
    /// reads text as the session does: see [`ServerKind`]).
    repeat: Option<String>,
}

/// Ends a read's transaction, on a task of its own so that the answer does not wait for the
/// round trips. mysql_async knows nothing of a transaction begun by a query. If `keep` (the
/// connection read no large packet):
/// - after a read of base tables only, the transaction is rolled back: such a read runs no
///   stored code (no trigger fires on a read, and the gate lets no stored function or
///   state-changing built-in through), so it leaves no session state;
/// - after a read of anything else (a view, whose stored functions could set variables), the
///   connection is reset (`COM_RESET_CONNECTION`), which ends the transaction and clears the
///   session, and the statement is prepared again on it for the next call (see [`AfterRead`]).
///
/// Only a connection that answered goes back to the pool; otherwise it is gone already (a
/// connection failure), or is closed here, or, if closing does not finish, stopped from another
/// connection.
async fn end_read(mut running: Running, limit: Duration, keep: bool, after: AfterRead) {
    if keep {
        let conn = running.conn();
        let ended = tokio::time::timeout(limit, async {
            let base_only = match &after.base_only {
                Ok(known) => *known,
                Err((tables, kinds)) => kinds.all_base(conn, tables).await,
            };
            if base_only {
                conn.query_drop("ROLLBACK").await?;
                return Ok::<bool, mysql_async::Error>(true);
            }
            let supported = conn.reset().await?;
            if supported && let Some(sql) = &after.repeat {
                // A statement that does not prepare is prepared, and refused, by its next call.
                let _ = conn.prep(sql.as_str()).await;
            }
            Ok(supported)
        })
        .await;
        match ended {
            Ok(Ok(done)) => {
                // Rolled back, or reset here already; a server without `COM_RESET_CONNECTION`
                // is reset by the pool, its own way.
                running.conn().reset_connection(!done);
                drop(running.finish());
                return;
            }
            Ok(Err(error)) if is_connection_failure(&error) => {
                drop(running.finish());
                return;
            }
            _ => {}
        }
    } else if let Ok(Err(error)) = tokio::time::timeout(limit, running.conn().query_drop("ROLLBACK")).await
        && is_connection_failure(&error)
    {
        drop(running.finish());
        return;
    }
    if let Ok(Ok(())) = tokio::time::timeout(limit, running.take().disconnect()).await {
        running.stopper = None;
    }
}

/// What the MySQL adapter needs to ask its catalog which tables are base tables.
struct TableKinds {
    /// The allow-list's schemas, as the catalog query's parameters.
    schemas: Vec<String>,
    known: super::TableKinds,
}

impl TableKinds {
    fn new(allow: &AllowList) -> Self {
        TableKinds { schemas: allow.schemas().map(str::to_owned).collect(), known: super::TableKinds::new() }
    }

    /// Whether every one of `tables` is a base table; the catalog is asked, on `conn`, when
    /// what it said is older than [`super::TableKinds::FRESH`]. A name it does not list as a
    /// base table (a view, a table created since), or any doubt, is a no.
    async fn all_base(&self, conn: &mut Conn, tables: &[TableName]) -> bool {
        if let Some(answer) = self.known.fresh(tables) {
            return answer;
        }
        if self.schemas.is_empty() {
            return false;
        }
        let marks = vec!["?"; self.schemas.len()].join(", ");
        let query = format!(
            "SELECT LOWER(TABLE_SCHEMA), LOWER(TABLE_NAME) FROM information_schema.TABLES \
             WHERE TABLE_TYPE = 'BASE TABLE' AND TABLE_SCHEMA IN ({marks})"
        );
        let Ok(rows) = conn.exec::<(String, String), _, _>(query, self.schemas.clone()).await else { return false };
        self.known.learn(rows.into_iter().map(|(schema, table)| TableName { schema, table }).collect());
        self.known.fresh(tables).unwrap_or(false)
    }
}

/// What kind of server the adapter talks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct ServerKind {
    /// MariaDB (`max_statement_time`), or MySQL (`max_execution_time`).
    mariadb: bool,
    /// The server's own `sql_mode` reads statements as the session's does (it holds no mode
    /// that changes how text is read: quotes, escapes, `||`, spaces after names…), so that a
    /// statement prepared on a connection just reset, before the session's settings, is read
    /// as it will run.
    prepares_as_we_read: bool,
}

impl ServerKind {
    async fn probe(conn: &mut Conn) -> Result<ServerKind, mysql_async::Error> {
        let answer: Option<(String, String)> = conn.query_first("SELECT VERSION(), @@GLOBAL.sql_mode").await?;
        let (version, mode) = answer.unwrap_or_default();
        Ok(ServerKind { mariadb: version.contains("MariaDB"), prepares_as_we_read: reads_as_we_do(&mode) })
    }
}

/// Whether every mode in `sql_mode` leaves how statement text is read alone.
fn reads_as_we_do(sql_mode: &str) -> bool {
    const TEXT_NEUTRAL: &[&str] = &[
        "STRICT_TRANS_TABLES",
        "STRICT_ALL_TABLES",
        "ERROR_FOR_DIVISION_BY_ZERO",
        "NO_AUTO_CREATE_USER",
        "NO_ENGINE_SUBSTITUTION",
        "ONLY_FULL_GROUP_BY",
        "NO_ZERO_IN_DATE",
        "NO_ZERO_DATE",
        "NO_AUTO_VALUE_ON_ZERO",
        "NO_DIR_IN_CREATE",
        "ALLOW_INVALID_DATES",
        "TRADITIONAL",
    ];
    sql_mode.split(',').filter(|mode| !mode.is_empty()).all(|mode| TEXT_NEUTRAL.contains(&mode))
}

/// What `probe` answers, kept in `known` only once it has answered.
async fn remember<T: Copy, E>(
    known: &tokio::sync::OnceCell<T>,
    probe: impl Future<Output = Result<T, E>>,
) -> Result<T, E> {
    known.get_or_try_init(|| probe).await.copied()
}

/// A connection running a statement for a call. Dropped before the statement is known to have
/// ended (the deadline passed, the caller went away, a write was abandoned), it stops the
/// statement from another connection: see [`Stopper::stop`]. The connection is never returned
/// to the pool meanwhile, so that its id cannot come to serve another caller.
struct Running {
    /// The connection's id on the server.
    id: u32,
    conn: Option<Conn>,
    stopper: Option<Stopper>,
}

impl Running {
    fn conn(&mut self) -> &mut Conn {
        // Taken out only by `finish` or `take`, after which the value is not used again.
        self.conn.as_mut().expect("a running connection holds its connection until it ends")
    }

    /// The statement has ended: the connection is the caller's again, with the slot hold.
    fn finish(mut self) -> (Conn, SlotHold) {
        let hold = self.stopper.take().map_or_else(SlotHold::none, |stopper| stopper.hold);
        (self.conn.take().expect("a running connection holds its connection until it ends"), hold)
    }

    /// The connection, leaving the stopper armed without it: dropping this value then stops
    /// the connection's thread on the server by its id.
    fn take(&mut self) -> Conn {
        self.conn.take().expect("a running connection holds its connection until it ends")
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let Some(stopper) = self.stopper.take() else { return };
        let conn = self.conn.take();
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(stopper.stop(self.id, conn));
        }
    }
}

/// Connections of our own, opened to stop abandoned statements, at most this many at once: a
/// burst of cancelled calls cannot open an unbounded number of extra connections.
const SIDE_CONNECTIONS: usize = 4;

/// How long an abandoned statement is waited for before its slot is released anyway.
const MAX_STOP_WAIT: Duration = Duration::from_secs(600);

/// What it takes to stop an abandoned statement.
struct Stopper {
    opts: Opts,
    /// The budget of side connections.
    side: Arc<tokio::sync::Semaphore>,
    /// The call's quota slot, kept until the server has let go of the statement.
    hold: SlotHold,
}

impl Stopper {
    /// Kills connection `id` from a connection of its own (`KILL`, never `KILL QUERY`: the
    /// statement stops and its transaction is rolled back), then waits until the server's
    /// process list no longer shows it: MySQL and MariaDB only notice a kill between steps of
    /// their work, and a long step (a function over a large value) goes on until it ends.
    /// Until then the call's quota slot stays taken, at most [`MAX_STOP_WAIT`].
    async fn stop(self, id: u32, conn: Option<Conn>) {
        let stopped = async {
            let _side = self.side.acquire().await;
            tokio::time::timeout(MAX_STOP_WAIT, kill_and_wait(id, &self.opts)).await
        };
        match stopped.await {
            Ok(Ok(())) => {}
            Ok(Err(error)) => tracing::warn!(error = %scrub(&error), "could not stop an abandoned MySQL statement"),
            Err(_) => tracing::warn!(
                wait_s = MAX_STOP_WAIT.as_secs(),
                "an abandoned MySQL statement still runs; its quota slot is released"
            ),
        }
        if let Some(conn) = conn {
            let _ = tokio::time::timeout(Duration::from_secs(5), conn.disconnect()).await;
        }
        drop(self.hold);
    }
}

/// `KILL id`, then waits until the process list no longer shows `id`.
async fn kill_and_wait(id: u32, opts: &Opts) -> Result<(), mysql_async::Error> {
    let mut conn = Conn::new(opts.clone()).await?;
    match conn.query_drop(format!("KILL {id}")).await {
        // Unknown thread: it has ended already.
        Err(mysql_async::Error::Server(error)) if error.code == 1094 => {}
        other => other?,
    }
    let mut pause = Duration::from_millis(10);
    while conn.exec_first::<u64, _, _>(STILL_RUNNING, (id,)).await?.is_some() {
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_millis(250));
    }
    conn.disconnect().await
}

const STILL_RUNNING: &str = "SELECT ID FROM information_schema.PROCESSLIST WHERE ID = ?";

impl Adapter for MySqlAdapter {
    fn dialect(&self) -> SqlDialect {
        SqlDialect::MySql
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
            let run = ReadRun {
                row_cap: options.limit.saturating_add(1),
                large: AtomicBool::new(false),
                repeat: Some(query.sql()),
                tables: Some(query.tables()),
            };
            let context = ReadContext { sql: query.sql(), params, options, large: &run.large };
            self.in_read_transaction(evidence.hold_slot(), options.timeout, &run, &context, |conn, context| {
                Box::pin(read(conn, context))
            })
            .await
            .map_err(|error| self.explain(error))
        })
    }

    fn list_tables<'a>(
        &'a self,
        evidence: Evidence<'a, Read>,
        schema: Option<&'a str>,
    ) -> BoxFuture<'a, Result<Vec<TableSummary>, AdapterError>> {
        Box::pin(async move {
            let hold = evidence.hold_slot();
            let schemas: Vec<String> = match schema {
                Some(schema) => vec![self.allow.resolve(Some(schema), "").schema],
                None => self.allow.schemas().map(str::to_owned).collect(),
            };
            let mut tables = Vec::new();
            for schema in schemas {
                let rows: Vec<(String, String, String)> = self
                    .in_read_transaction(
                        hold.share(),
                        INTROSPECTION_TIMEOUT,
                        &ReadRun::introspection(),
                        schema.as_str(),
                        |conn, schema| {
                            Box::pin(async move { conn.exec(LIST_TABLES, (schema,)).await.map_err(Failure::MySql) })
                        },
                    )
                    .await?;
                for (schema, name, kind) in rows {
                    if self.allow.permits(&schema, &name) {
                        let kind = if kind == "VIEW" { "view" } else { "table" };
                        tables.push(TableSummary { schema, name, kind: kind.to_owned() });
                    }
                }
            }
            Ok(tables)
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
            let key = (name.schema.clone(), name.table.clone());
            let (columns, keys, indexes) = self
                .in_read_transaction(
                    evidence.hold_slot(),
                    INTROSPECTION_TIMEOUT,
                    &ReadRun::introspection(),
                    &key,
                    |conn, (schema, table)| {
                        Box::pin(async move {
                            let columns: Vec<Row> =
                                conn.exec(DESCRIBE_COLUMNS, (schema, table)).await.map_err(Failure::MySql)?;
                            let keys: Vec<Row> =
                                conn.exec(DESCRIBE_KEYS, (schema, table)).await.map_err(Failure::MySql)?;
                            let indexes: Vec<Row> =
                                conn.exec(DESCRIBE_INDEXES, (schema, table)).await.map_err(Failure::MySql)?;
                            Ok((columns, keys, indexes))
                        })
                    },
                )
                .await?;
            let Some(first) = columns.first() else {
                return Err(AdapterError::of_kind(AdapterErrorKind::NotVisible));
            };
            let mut description = TableDescription {
                schema: text(first, 0)?,
                name: text(first, 1)?,
                columns: Vec::with_capacity(columns.len()),
                primary_key: Vec::new(),
                foreign_keys: Vec::new(),
                indexes: Vec::new(),
            };
            for row in &columns {
                let comment = text(row, 6)?;
                description.columns.push(ColumnDescription {
                    name: text(row, 2)?,
                    data_type: text(row, 3)?,
                    nullable: text(row, 4)? == "YES",
                    default: optional_text(row, 5)?,
                    comment: (!comment.is_empty()).then_some(comment),
                });
            }
            for row in &keys {
                let (constraint, column) = (text(row, 0)?, text(row, 1)?);
                let referenced = (optional_text(row, 2)?, optional_text(row, 3)?, optional_text(row, 4)?);
                match referenced {
                    (Some(schema), Some(table), Some(referenced_column)) => {
                        if !self.allow.permits(&schema, &table) {
                            continue;
                        }
                        match description.foreign_keys.last_mut() {
                            Some(key) if key.name == constraint => {
                                key.columns.push(column);
                                key.referenced_columns.push(referenced_column);
                            }
                            _ => description.foreign_keys.push(ForeignKey {
                                name: constraint,
                                columns: vec![column],
                                referenced_schema: schema,
                                referenced_table: table,
                                referenced_columns: vec![referenced_column],
                            }),
                        }
                    }
                    _ if constraint == "PRIMARY" => description.primary_key.push(column),
                    _ => {}
                }
            }
            for row in &indexes {
                let (index, column, non_unique) = (text(row, 0)?, text(row, 1)?, text(row, 2)?);
                match description.indexes.last_mut() {
                    Some(last) if last.name == index => last.columns.push(column),
                    _ => description.indexes.push(IndexDescription {
                        name: index,
                        columns: vec![column],
                        unique: non_unique == "0",
                    }),
                }
            }
            Ok(description)
        })
    }

    fn posture<'a>(&'a self, evidence: Evidence<'a, Read>) -> BoxFuture<'a, Result<Posture, AdapterError>> {
        Box::pin(async move {
            let (role, grants) = self
                .in_read_transaction(
                    evidence.hold_slot(),
                    INTROSPECTION_TIMEOUT,
                    &ReadRun::introspection(),
                    &(),
                    |conn, ()| {
                        Box::pin(async move {
                            let role: Option<String> =
                                conn.query_first("SELECT CURRENT_USER()").await.map_err(Failure::MySql)?;
                            let grants: Vec<String> = conn.query("SHOW GRANTS").await.map_err(Failure::MySql)?;
                            Ok((role.unwrap_or_default(), grants))
                        })
                    },
                )
                .await?;
            let plaintext = self.plaintext.then(|| super::PLAINTEXT_FINDING.to_owned());
            Ok(Posture {
                role,
                findings: plaintext.into_iter().chain(grants.iter().filter_map(|grant| grant_finding(grant))).collect(),
            })
        })
    }

    fn begin_write<'a>(
        &'a self,
        evidence: Evidence<'a, Write>,
        options: WriteOptions,
    ) -> BoxFuture<'a, Result<Box<dyn WriteTransaction<'a> + 'a>, AdapterError>> {
        Box::pin(async move {
            let hold = evidence.hold_slot();
            let mut attempt = 0;
            loop {
                attempt += 1;
                let mut conn = self.checkout(Instant::now() + options.timeout()).await?;
                // The connection comes reset from the pool (see `connect`). MariaDB's statement
                // time limit covers writes too (MySQL's covers SELECT only: there the client's
                // deadline and KILL stop a write).
                let server = match self.server(&mut conn).await {
                    Ok(server) => server,
                    Err(error) if is_connection_failure(&error) && attempt <= self.max_connections => continue,
                    Err(error) => return Err(classify(&error)),
                };
                let begin = if server.mariadb {
                    format!(
                        "{SESSION}, SESSION max_statement_time = {:.3}; START TRANSACTION READ WRITE",
                        super::statement_millis(options.timeout()) as f64 / 1000.0
                    )
                } else {
                    format!("{SESSION}; START TRANSACTION READ WRITE")
                };
                let begun = conn.query_drop(begin);
                match begun.await {
                    Ok(()) => {
                        let write = MySqlWrite { running: Some(self.running(conn, hold)) };
                        return Ok(Box::new(write) as Box<dyn WriteTransaction<'a> + 'a>);
                    }
                    // Nothing has run yet: a dead pooled connection is replaced, as for reads.
                    Err(error) if is_connection_failure(&error) && attempt <= self.max_connections => drop(conn),
                    Err(error) => return Err(Failure::MySql(error).into_adapter_error()),
                }
            }
        })
    }
}

/// A write transaction. Dropped without commit or rollback (a panic, a cancelled call), its
/// connection is stopped from another one (see [`Running`]) and closed, never returned to the
/// pool inside its transaction: the next caller's `START TRANSACTION` would commit it.
struct MySqlWrite {
    /// `None` once ended.
    running: Option<Running>,
}

impl MySqlWrite {
    fn conn(&mut self) -> Result<&mut Conn, AdapterError> {
        self.running.as_mut().map(Running::conn).ok_or_else(|| AdapterError::invalid("the transaction has ended"))
    }

    /// Ends the transaction with `command`; the connection goes back to the pool only if
    /// that worked.
    async fn finish(mut self: Box<Self>, command: &'static str) -> Result<(), AdapterError> {
        let mut running = self.running.take().ok_or_else(|| AdapterError::invalid("the transaction has ended"))?;
        // Should this future be dropped while the command runs, `running` stops the connection.
        let result = running.conn().query_drop(command).await;
        let (conn, _ended) = running.finish();
        match result {
            Ok(()) => Ok(()),
            Err(error) => {
                // Closing the connection ends whatever is left of the transaction, unsaved.
                let _closed = conn.disconnect().await;
                Err(Failure::MySql(error).into_adapter_error())
            }
        }
    }
}

impl<'a> WriteTransaction<'a> for MySqlWrite {
    fn execute<'s>(
        &'s mut self,
        statement: &'static str,
        params: &'s [SqlValue],
        row_cap: u64,
    ) -> BoxFuture<'s, Result<Executed, AdapterError>> {
        Box::pin(async move {
            let conn = self.conn()?;
            let run = async {
                let prepared = conn.prep(statement).await.map_err(Failure::MySql)?;
                if usize::from(prepared.num_params()) != params.len() {
                    return Err(Failure::Adapter(AdapterError::invalid(
                        "the statement's parameters do not match the values given",
                    )));
                }
                let mut result = conn.exec_iter(&prepared, to_params(params)).await.map_err(Failure::MySql)?;
                let columns: Vec<mysql_async::Column> = result.columns_ref().to_vec();
                let mut rows = Vec::new();
                while let Some(row) = result.next().await.map_err(Failure::MySql)? {
                    if rows.len() as u64 > row_cap {
                        // Over the limit already; the caller refuses the statement.
                        break;
                    }
                    let values = row.unwrap_raw();
                    rows.push(
                        columns
                            .iter()
                            .zip(values)
                            .map(|(column, value)| value.map_or(Value::Null, |value| decode(column, &value)))
                            .collect(),
                    );
                }
                let (affected, last_insert_id) = (result.affected_rows(), result.last_insert_id());
                result.drop_result().await.map_err(Failure::MySql)?;
                Ok(Executed { rows_affected: affected, last_insert_id, rows })
            };
            run.await.map_err(Failure::into_adapter_error)
        })
    }

    fn commit(self: Box<Self>) -> BoxFuture<'a, Result<(), AdapterError>> {
        Box::pin(self.finish("COMMIT"))
    }

    fn rollback(self: Box<Self>) -> BoxFuture<'a, Result<(), AdapterError>> {
        Box::pin(self.finish("ROLLBACK"))
    }
}

/// How a read runs, besides its statement.
struct ReadRun<'s> {
    /// At most this many rows are sent.
    row_cap: usize,
    /// Set when the read met a large value (see [`LARGE_PACKET`]).
    large: AtomicBool,
    /// The statement to prepare again once the connection is reset, for the next call.
    repeat: Option<&'s str>,
    /// The tables the statement reads (`None`: our own catalog reads, which run no stored code).
    tables: Option<&'s [TableName]>,
}

impl ReadRun<'static> {
    /// A catalog read: no row cap, nothing prepared again.
    fn introspection() -> Self {
        ReadRun { row_cap: usize::MAX, large: AtomicBool::new(false), repeat: None, tables: None }
    }
}

struct ReadContext<'a> {
    sql: &'a str,
    params: &'a [SqlValue],
    options: ReadOptions,
    /// Set when the read met a large value (see [`LARGE_PACKET`]).
    large: &'a AtomicBool,
}

/// Above this, a packet leaves the connection's read buffer that large for as long as the
/// connection lives (mysql_async never shrinks it): such a connection is closed rather than
/// pooled, so that the memory a large result used is given back.
const LARGE_PACKET: usize = 1 << 20;

async fn read(conn: &mut Conn, context: &ReadContext<'_>) -> Result<QueryResult, Failure> {
    let ReadContext { sql, params, options, large } = *context;
    let read = read_rows(conn, sql, params, options).await;
    // A row too large for the result, or a large one that fitted, came in a large packet.
    if matches!(&read, Err(Failure::Adapter(error)) if error.kind() == AdapterErrorKind::ResultTooLarge)
        || read.as_ref().is_ok_and(|(_, largest)| *largest > LARGE_PACKET)
    {
        large.store(true, Ordering::Relaxed);
    }
    read.map(|(result, _)| result)
}

/// The read's rows, and the most text one row took.
async fn read_rows(
    conn: &mut Conn,
    sql: &str,
    params: &[SqlValue],
    options: ReadOptions,
) -> Result<(QueryResult, usize), Failure> {
    let statement = conn.prep(sql).await.map_err(Failure::MySql)?;
    if usize::from(statement.num_params()) != params.len() {
        return Err(Failure::Adapter(AdapterError::invalid(
            "the query's placeholders do not match the parameters given",
        )));
    }
    let mut result = conn.exec_iter(&statement, to_params(params)).await.map_err(Failure::MySql)?;
    let described: Vec<mysql_async::Column> = result.columns_ref().to_vec();
    let columns = described
        .iter()
        .map(|column| ResultColumn { name: column.name_str().into_owned(), data_type: type_name(column).to_owned() })
        .collect();
    let mut rows = RowCollector::new(options);
    let mut truncated = false;
    let mut largest = 0;
    while let Some(row) = result.next().await.map_err(Failure::MySql)? {
        if rows.is_full() {
            truncated = true;
            break;
        }
        let before = rows.written();
        let mut out = rows.row();
        for (index, column) in described.iter().enumerate() {
            if let Some(MyValue::Bytes(bytes)) = row.as_ref(index)
                && bytes.len() > LONG_VALUE_PIECE
                && let Some(binary) = long_kind(column)
            {
                out.long_value(bytes, binary).await.map_err(Failure::Adapter)?;
                continue;
            }
            let limit = out.limit();
            let written = match row.as_ref(index) {
                Some(value) => write_value(column, value, out.value(), limit),
                None => {
                    json::text::null(out.value());
                    Ok(())
                }
            };
            if written.is_err() {
                return Err(Failure::Adapter(out.too_large()));
            }
        }
        out.end().map_err(Failure::Adapter)?;
        largest = largest.max(rows.written() - before);
        if rows.should_yield() {
            tokio::task::yield_now().await;
        }
    }
    result.drop_result().await.map_err(Failure::MySql)?;
    Ok((rows.finish(columns, truncated), largest))
}

fn to_params(params: &[SqlValue]) -> mysql_async::Params {
    if params.is_empty() {
        return mysql_async::Params::Empty;
    }
    mysql_async::Params::Positional(
        params
            .iter()
            .map(|param| match param {
                SqlValue::Null => MyValue::NULL,
                SqlValue::Bool(value) => MyValue::Int(i64::from(*value)),
                SqlValue::Int(value) => MyValue::Int(*value),
                SqlValue::Float(value) => MyValue::Double(*value),
                SqlValue::Text(value) => MyValue::Bytes(value.clone().into_bytes()),
                SqlValue::Bytes(value) => MyValue::Bytes(value.clone()),
            })
            .collect(),
    )
}

/// The binary character set: bytes, not text.
const BINARY: u16 = 63;

/// One value as a JSON value, for the few rows a write returns.
fn decode(column: &mysql_async::Column, value: &MyValue) -> Value {
    let mut text = String::new();
    match write_value(column, value, &mut text, usize::MAX) {
        Ok(()) => serde_json::from_str(&text).unwrap_or(Value::Null),
        Err(_) => Value::Null,
    }
}

/// Writes one value as JSON text, unless it would take `out` past `limit` bytes.
fn write_value(
    column: &mysql_async::Column,
    value: &MyValue,
    out: &mut String,
    limit: usize,
) -> Result<(), json::text::TooLarge> {
    use json::text;
    let kind = column.column_type();
    match value {
        MyValue::NULL => text::null(out),
        MyValue::Int(value) => text::int(out, *value),
        MyValue::UInt(value) => text::uint(out, *value),
        MyValue::Float(value) => text::float(out, f64::from(*value)),
        MyValue::Double(value) => text::float(out, *value),
        // Digits and separators only: nothing to escape.
        MyValue::Date(year, month, day, hour, minute, second, micros) => text::quoted_with(out, |out| {
            let date = json::Date { year: i64::from(*year), month: u32::from(*month), day: u32::from(*day) };
            let time = (kind != ColumnType::MYSQL_TYPE_DATE).then(|| json::Clock {
                hours: u64::from(*hour),
                minutes: u64::from(*minute),
                seconds: u64::from(*second),
                micros: u64::from(*micros),
            });
            // Sessions run in UTC.
            let utc = matches!(kind, ColumnType::MYSQL_TYPE_TIMESTAMP | ColumnType::MYSQL_TYPE_TIMESTAMP2);
            json::write_date_time(out, date, time, utc && time.is_some(), json::Years::Plain);
        }),
        MyValue::Time(negative, days, hours, minutes, seconds, micros) => text::quoted_with(out, |out| {
            if *negative {
                out.push('-');
            }
            let hours = u64::from(*days) * 24 + u64::from(*hours);
            let time = json::Clock {
                hours,
                minutes: u64::from(*minutes),
                seconds: u64::from(*seconds),
                micros: u64::from(*micros),
            };
            json::write_clock(out, time);
        }),
        MyValue::Bytes(bytes) => {
            return match kind {
                ColumnType::MYSQL_TYPE_JSON => {
                    text::json_within(out, bytes, limit).unwrap_or_else(|| text::lossy_within(out, bytes, limit))
                }
                ColumnType::MYSQL_TYPE_BIT => {
                    text::uint(out, bytes.iter().fold(0u64, |total, byte| total.wrapping_shl(8) | u64::from(*byte)));
                    Ok(())
                }
                ColumnType::MYSQL_TYPE_GEOMETRY => text::base64_within(out, bytes, limit),
                // Digits, as the server wrote them, whatever the character set: a decimal from an
                // expression, an aggregate or a literal is marked binary, and is no less a number.
                ColumnType::MYSQL_TYPE_NEWDECIMAL | ColumnType::MYSQL_TYPE_DECIMAL => {
                    text::lossy_within(out, bytes, limit)
                }
                _ if column.character_set() == BINARY && column.flags().contains(ColumnFlags::BINARY_FLAG) => {
                    text::base64_within(out, bytes, limit)
                }
                _ => text::lossy_within(out, bytes, limit),
            };
        }
    }
    Ok(())
}

/// For a column whose values can be long and are written as they are (text, or bytes as
/// base64), which of the two: such a value is written a piece at a time. JSON is checked
/// whole, and bits are a number.
fn long_kind(column: &mysql_async::Column) -> Option<bool> {
    match column.column_type() {
        ColumnType::MYSQL_TYPE_JSON | ColumnType::MYSQL_TYPE_BIT => None,
        ColumnType::MYSQL_TYPE_GEOMETRY => Some(true),
        ColumnType::MYSQL_TYPE_NEWDECIMAL | ColumnType::MYSQL_TYPE_DECIMAL => Some(false),
        _ => Some(column.character_set() == BINARY && column.flags().contains(ColumnFlags::BINARY_FLAG)),
    }
}

fn type_name(column: &mysql_async::Column) -> &'static str {
    let binary = column.character_set() == BINARY;
    match column.column_type() {
        ColumnType::MYSQL_TYPE_TINY => "tinyint",
        ColumnType::MYSQL_TYPE_SHORT => "smallint",
        ColumnType::MYSQL_TYPE_INT24 => "mediumint",
        ColumnType::MYSQL_TYPE_LONG => "int",
        ColumnType::MYSQL_TYPE_LONGLONG => "bigint",
        ColumnType::MYSQL_TYPE_FLOAT => "float",
        ColumnType::MYSQL_TYPE_DOUBLE => "double",
        ColumnType::MYSQL_TYPE_NEWDECIMAL | ColumnType::MYSQL_TYPE_DECIMAL => "decimal",
        ColumnType::MYSQL_TYPE_DATE => "date",
        ColumnType::MYSQL_TYPE_TIME | ColumnType::MYSQL_TYPE_TIME2 => "time",
        ColumnType::MYSQL_TYPE_DATETIME | ColumnType::MYSQL_TYPE_DATETIME2 => "datetime",
        ColumnType::MYSQL_TYPE_TIMESTAMP | ColumnType::MYSQL_TYPE_TIMESTAMP2 => "timestamp",
        ColumnType::MYSQL_TYPE_YEAR => "year",
        ColumnType::MYSQL_TYPE_JSON => "json",
        ColumnType::MYSQL_TYPE_BIT => "bit",
        ColumnType::MYSQL_TYPE_ENUM => "enum",
        ColumnType::MYSQL_TYPE_SET => "set",
        ColumnType::MYSQL_TYPE_GEOMETRY => "geometry",
        ColumnType::MYSQL_TYPE_NULL => "null",
        ColumnType::MYSQL_TYPE_TINY_BLOB
        | ColumnType::MYSQL_TYPE_MEDIUM_BLOB
        | ColumnType::MYSQL_TYPE_LONG_BLOB
        | ColumnType::MYSQL_TYPE_BLOB => {
            if binary {
                "blob"
            } else {
                "text"
            }
        }
        ColumnType::MYSQL_TYPE_VAR_STRING | ColumnType::MYSQL_TYPE_VARCHAR => {
            if binary {
                "varbinary"
            } else {
                "varchar"
            }
        }
        ColumnType::MYSQL_TYPE_STRING => {
            if binary {
                "binary"
            } else {
                "char"
            }
        }
        _ => "unknown",
    }
}

enum Failure {
    MySql(mysql_async::Error),
    Adapter(AdapterError),
}

impl Failure {
    fn into_adapter_error(self) -> AdapterError {
        match self {
            Failure::Adapter(error) => error,
            Failure::MySql(error) => classify(&error),
        }
    }
}

/// Server errors whose messages name only the query's own words (unknown column, syntax,
/// unknown table or function), and so may be shown. Others, such as "Incorrect integer
/// value: '…'", can quote data and are replaced by their number.
const SAFE_MESSAGES: [u16; 12] = [1044, 1052, 1054, 1064, 1109, 1142, 1143, 1146, 1222, 1241, 1248, 1305];

fn classify(error: &mysql_async::Error) -> AdapterError {
    if is_packet_too_large(error) {
        return AdapterError::new(AdapterErrorKind::ResultTooLarge, scrub(error));
    }
    if is_connection_failure(error) {
        return AdapterError::new(AdapterErrorKind::Connection, scrub(error));
    }
    let mysql_async::Error::Server(server) = error else {
        return AdapterError::new(AdapterErrorKind::Database, scrub(error));
    };
    let cause = format!("MySQL error {}", server.code);
    match server.code {
        // MariaDB max_statement_time, MySQL max_execution_time, a killed query.
        1969 | 3024 | 1317 => AdapterError::new(AdapterErrorKind::Timeout, cause),
        // A packet over the server's own max_allowed_packet.
        1153 | 1301 => AdapterError::new(AdapterErrorKind::ResultTooLarge, cause),
        1792 => AdapterError::new(AdapterErrorKind::Database, cause)
            .with_message("the database refused to write: the transaction is read-only"),
        code if SAFE_MESSAGES.contains(&code) => AdapterError::new(AdapterErrorKind::Database, cause)
            .with_message(format!("the database refused the statement: {} (MySQL error {code})", server.message)),
        1292 | 1366 | 1365 | 1264 | 1406 | 1690 | 3140 | 3141 | 4038 => {
            AdapterError::new(AdapterErrorKind::InvalidInput, cause).with_message(format!(
                "a value does not fit its type or operation (MySQL error {}); check the parameters and casts",
                server.code
            ))
        }
        code => AdapterError::new(AdapterErrorKind::Database, cause)
            .with_message(format!("the database refused the statement (MySQL error {code})")),
    }
}

/// Whether the client refused a packet over its `max_allowed_packet`: a row too large for any
/// result. The connection cannot be used after it, but the row would be as large on any other.
fn is_packet_too_large(error: &mysql_async::Error) -> bool {
    use mysql_common::proto::codec::error::PacketCodecError;
    let mysql_async::Error::Io(mysql_async::IoError::Io(io)) = error else { return false };
    io.get_ref()
        .and_then(|inner| inner.downcast_ref::<PacketCodecError>())
        .is_some_and(|codec| matches!(codec, PacketCodecError::PacketTooLarge))
}

fn is_connection_failure(error: &mysql_async::Error) -> bool {
    match error {
        mysql_async::Error::Io(_) => true,
        mysql_async::Error::Driver(driver) => {
            matches!(driver, mysql_async::DriverError::ConnectionClosed | mysql_async::DriverError::PoolDisconnected)
        }
        // Server shutdown, connection killed, server gone.
        mysql_async::Error::Server(server) => matches!(server.code, 1053 | 1927 | 2006 | 2013 | 4031),
        _ => false,
    }
}

/// An error's text for the log, without anything a server could have quoted from data.
fn scrub(error: &mysql_async::Error) -> String {
    match error {
        mysql_async::Error::Server(server) => format!("MySQL error {}", server.code),
        mysql_async::Error::Url(_) => "invalid URL".to_owned(),
        other => other.to_string(),
    }
}

fn text(row: &Row, index: usize) -> Result<String, AdapterError> {
    match row.as_ref(index) {
        Some(MyValue::Bytes(bytes)) => Ok(String::from_utf8_lossy(bytes).into_owned()),
        Some(MyValue::Int(value)) => Ok(value.to_string()),
        Some(MyValue::UInt(value)) => Ok(value.to_string()),
        _ => Err(AdapterError::of_kind(AdapterErrorKind::Internal).with_message("the catalog answered unexpectedly")),
    }
}

fn optional_text(row: &Row, index: usize) -> Result<Option<String>, AdapterError> {
    match row.as_ref(index) {
        Some(MyValue::NULL) => Ok(None),
        _ => text(row, index).map(Some),
    }
}

/// What a `SHOW GRANTS` line allows beyond reading, or `None` when it only reads.
fn grant_finding(grant: &str) -> Option<String> {
    const READING: [&str; 4] = ["SELECT", "USAGE", "SHOW VIEW", "SHOW DATABASES"];
    let rest = grant.strip_prefix("GRANT ")?;
    let (privileges, rest) = rest.split_once(" ON ")?;
    let scope = rest.split_once(" TO ").map_or(rest, |(scope, _)| scope);
    let beyond: Vec<&str> =
        privileges.split(", ").map(str::trim).filter(|privilege| !READING.contains(privilege)).collect();
    let mut finding =
        if beyond.is_empty() { String::new() } else { format!("it has {} on {scope}", beyond.join(", ")) };
    if grant.contains("WITH GRANT OPTION") {
        if !finding.is_empty() {
            finding.push_str("; ");
        }
        finding.push_str(&format!("it can grant its privileges on {scope}"));
    }
    (!finding.is_empty()).then_some(finding)
}

const LIST_TABLES: &str = "SELECT TABLE_SCHEMA, TABLE_NAME, TABLE_TYPE FROM information_schema.TABLES \
     WHERE TABLE_SCHEMA = ? ORDER BY TABLE_NAME";

const DESCRIBE_COLUMNS: &str = "SELECT TABLE_SCHEMA, TABLE_NAME, COLUMN_NAME, COLUMN_TYPE, IS_NULLABLE, COLUMN_DEFAULT, \
     COLUMN_COMMENT FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ? ORDER BY ORDINAL_POSITION";

const DESCRIBE_KEYS: &str = "SELECT CONSTRAINT_NAME, COLUMN_NAME, REFERENCED_TABLE_SCHEMA, REFERENCED_TABLE_NAME, \
     REFERENCED_COLUMN_NAME FROM information_schema.KEY_COLUMN_USAGE WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ? \
     ORDER BY CONSTRAINT_NAME = 'PRIMARY' DESC, CONSTRAINT_NAME, ORDINAL_POSITION";

const DESCRIBE_INDEXES: &str = "SELECT INDEX_NAME, COLUMN_NAME, NON_UNIQUE FROM information_schema.STATISTICS \
     WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ? ORDER BY INDEX_NAME, SEQ_IN_INDEX";

#[cfg(test)]
mod tests {
    use super::*;

    /// A probe that failed is asked again; one that answered is not.
    #[test]
    fn only_modes_that_leave_text_alone_allow_preparing_before_the_session_is_set() {
        for mode in ["", "STRICT_TRANS_TABLES,ERROR_FOR_DIVISION_BY_ZERO,NO_AUTO_CREATE_USER,NO_ENGINE_SUBSTITUTION"] {
            assert!(reads_as_we_do(mode), "{mode}");
        }
        for mode in [
            "ANSI_QUOTES",
            "STRICT_TRANS_TABLES,NO_BACKSLASH_ESCAPES",
            "PIPES_AS_CONCAT",
            "ORACLE",
            "ANSI",
            "IGNORE_SPACE",
        ] {
            assert!(!reads_as_we_do(mode), "{mode}");
        }
    }

    #[tokio::test]
    async fn the_server_kind_is_kept_only_once_the_probe_answered() {
        let known = tokio::sync::OnceCell::new();
        assert_eq!(remember(&known, async { Err::<bool, &str>("connection lost") }).await, Err("connection lost"));
        assert_eq!(remember(&known, async { Ok::<bool, &str>(true) }).await, Ok(true), "asked again");
        assert_eq!(remember(&known, async { Ok::<bool, &str>(false) }).await, Ok(true), "not asked again");
    }

    /// TLS is required for every form of a host on another machine unless the URL says
    /// `require_ssl=false`; loopback, `localhost` and a Unix socket keep plain text.
    #[test]
    fn tls_is_required_for_another_machine_unless_plain_text_is_asked_for() {
        let allow = || AllowList::new(SqlDialect::MySql, "app");
        for (url, tls, plaintext) in [
            ("mysql://u@localhost/app", false, false),
            ("mysql://u@127.0.0.1:3307/app", false, false),
            ("mysql://u@[::1]/app", false, false),
            ("mysql://u@db.example/app?socket=/run/mysqld/mysqld.sock", false, false),
            ("mysql://u@localhost/app?require_ssl=true", true, false),
            ("mysql://u@db.example/app", true, false),
            ("mariadb://u@10.0.0.5/app", true, false),
            ("mysql://u@[fd00::2]:3306/app", true, false),
            ("mysql://u@db.example/app?require_ssl=true", true, false),
            ("mysql://u@db.example/app?require_ssl=false", false, true),
        ] {
            let adapter = MySqlAdapter::connect(url, allow(), PoolOptions::default()).expect(url);
            assert_eq!((adapter.opts.ssl_opts().is_some(), adapter.plaintext), (tls, plaintext), "{url}");
        }
    }

    #[test]
    fn grants_beyond_reading_are_findings() {
        assert_eq!(grant_finding("GRANT USAGE ON *.* TO `reader`@`%`"), None);
        assert_eq!(grant_finding("GRANT SELECT, SHOW VIEW ON `shop`.* TO `reader`@`%`"), None);
        assert_eq!(
            grant_finding("GRANT SELECT, INSERT, DELETE ON `shop`.* TO `app`@`%`").as_deref(),
            Some("it has INSERT, DELETE on `shop`.*")
        );
        assert_eq!(
            grant_finding("GRANT ALL PRIVILEGES ON *.* TO `root`@`localhost` WITH GRANT OPTION").as_deref(),
            Some("it has ALL PRIVILEGES on *.*; it can grant its privileges on *.*")
        );
        assert_eq!(grant_finding("REVOKE x"), None);
    }
}
