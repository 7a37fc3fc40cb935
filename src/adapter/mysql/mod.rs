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
    Posture, QueryPlan, QueryResult, ReadOptions, ResultColumn, SqlValue, TableDescription, TableSummary, WriteOptions,
    WriteTransaction,
};
use super::{LONG_VALUE_PIECE, RowCollector, UrlParameters, ensure_runnable};
use crate::evidence::{Evidence, Read, SlotHold, Write};
use crate::json;
use crate::sql::{AllowList, SqlDialect, TableName, ValidatedQuery};

mod catalog;
mod decode;
mod error;
mod read;
mod session;
mod stop;
mod write;

use catalog::*;
use decode::*;
use error::*;
use read::*;
use session::*;
use stop::*;
use write::*;

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
        let parameters = UrlParameters::take(&url, &["sslrootcert"]);
        let root_certificates = parameters.get("sslrootcert");
        let parsed = Opts::from_url(&parameters.url)
            .map_err(|_| AdapterError::invalid("the MySQL URL is not valid (the URL itself is not shown)"))?;
        // On another machine, TLS is required unless the URL says `require_ssl=false`.
        let remote = parsed.socket().is_none() && !super::is_local_host(parsed.ip_or_hostname());
        let named = parameters.get("require_ssl").is_some();
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

    /// A read's plan, the read not being run: `EXPLAIN FORMAT=JSON` in the read's own
    /// transaction and settings.
    async fn plan(
        &self,
        hold: SlotHold,
        query: &ValidatedQuery,
        params: &[SqlValue],
        options: ReadOptions,
    ) -> Result<QueryPlan, AdapterError> {
        let run = ReadRun { row_cap: 1, large: AtomicBool::new(false), repeat: None, tables: Some(query.tables()) };
        let context = ReadContext { sql: query.sql(), params, options, large: &run.large };
        let plan = self
            .in_read_transaction(hold, options.timeout, &run, &context, |conn, context| {
                Box::pin(read::plan(conn, context))
            })
            .await?;
        let (cost, rows) = super::mysql_estimates(&plan);
        Ok(QueryPlan { plan, cost, rows })
    }

    /// Says what limit a refused packet went over.
    fn sized(&self, error: AdapterError) -> AdapterError {
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
            if options.plan_limit.is_set() {
                let plan = self.plan(evidence.hold_slot(), query, params, options).await?;
                options.plan_limit.check(&plan)?;
            }
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
            .map_err(|error| self.sized(error))
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
            self.plan(evidence.hold_slot(), query, params, options).await
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
                    rule: None,
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
            Ok(super::with_column_rules(description, &self.allow))
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
