//! PostgreSQL through tokio-postgres, pooled by deadpool, over connections made in
//! [`connect`]: TLS negotiated there, and every message from the server checked against the
//! result cap before it is read.
//!
//! Every read runs in `START TRANSACTION READ ONLY` with `SET LOCAL statement_timeout` and
//! `SET LOCAL search_path = pg_catalog, pg_temp`, through the extended protocol only
//! (bound parameters, never caller text in a simple query), from a cursor that returns at most
//! `limit + 1` rows, and the transaction is always rolled back. A read costs two round trips:
//! the begin, the query's description and the cursor's declaration leave in one write; the
//! fetch and the rollback in the next. The client enforces the timeout too: when the deadline
//! passes, or the caller's future is dropped, the query is cancelled on the server and the
//! connection is discarded, never reused; a connection goes back to the pool only once its
//! transaction has ended. Before it is discarded, the connection is asked for one more answer,
//! which the server gives only once it has stopped the statement: some work (functions over
//! large constants, folded while planning) ignores a cancel until it is done, and the call's
//! quota slot stays taken until then.
//!
//! A connection that turns out dead when the transaction begins (the server restarted since it
//! was pooled) is replaced and the read tried again; once the statement was sent it is never
//! run again, whatever happens to it (`pg_terminate_backend` included).
//!
//! Parameters are sent in PostgreSQL's text format, so the server parses each into whatever
//! type the statement needs, as it does for `psql`. Results are decoded from the binary
//! format (see [`super::json`]); a type without a decoder here is turned into its text form
//! by PostgreSQL itself, through the type's output function (see [`PRINT`]) in a read-only
//! transaction.

use std::error::Error as StdError;
use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use std::sync::Arc;

use bytes::BytesMut;
use futures_util::StreamExt;
use futures_util::future::BoxFuture;
use serde_json::Value;
use tokio::time::Instant;
use tokio_postgres::config::{Host, SslMode};
use tokio_postgres::error::SqlState;
use tokio_postgres::types::{FromSql, IsNull, Kind, ToSql, Type, to_sql_checked};
use tokio_postgres::{Row, Statement};

use super::{
    Adapter, AdapterError, AdapterErrorKind, ColumnDescription, Executed, ForeignKey, IndexDescription, PoolOptions,
    Posture, QueryResult, ReadOptions, ResultColumn, SqlValue, TableDescription, TableSummary, WriteOptions,
    WriteTransaction,
};
use super::{LONG_VALUE_PIECE, RowCollector, ensure_runnable, take_url_parameter};
use crate::evidence::{Evidence, Read, SlotHold, Write};
use crate::json;
use crate::sql::{AllowList, SqlDialect, TableName, ValidatedQuery};

mod connect;

use connect::{ConnectError, Connector, PgConnection};

type Pool = deadpool::managed::Pool<Pooled>;
type Object = deadpool::managed::Object<Pooled>;

/// The pool's manager: the connector, shared with cancel requests.
struct Pooled(Arc<Connector>);

impl deadpool::managed::Manager for Pooled {
    type Type = PgConnection;
    type Error = ConnectError;

    async fn create(&self) -> Result<PgConnection, ConnectError> {
        deadpool::managed::Manager::create(&*self.0).await
    }

    async fn recycle(
        &self,
        connection: &mut PgConnection,
        metrics: &deadpool::managed::Metrics,
    ) -> deadpool::managed::RecycleResult<ConnectError> {
        deadpool::managed::Manager::recycle(&*self.0, connection, metrics).await
    }
}

/// Connections of our own, opened to cancel abandoned statements, at most this many at once: a
/// burst of cancelled calls cannot open an unbounded number of extra connections.
const SIDE_CONNECTIONS: usize = 4;

/// How long an abandoned statement is waited for before its slot is released anyway.
const MAX_STOP_WAIT: Duration = Duration::from_secs(600);

/// The settings of every read, ending with the statement timeout's `=`.
///
/// The search path holds only the system catalog, and the temporary schema last: every table
/// a read names is written out with its schema by the gate, and no function, operator or type
/// can be found anywhere else. With a user schema on the path, whoever may create objects in
/// it could plant `public.lower(varchar)`, which PostgreSQL prefers to `pg_catalog.lower(text)`
/// for a `varchar` argument (an exact match beats an implicit cast, whatever the path's order:
/// CVE-2018-1058), and run code of their own in every read that calls `lower`.
/// Prints a value of a type with no decoder here as the server prints it: `format('%s', …)`
/// calls the type's output function, as `psql` shows it. A cast to text would not do: for
/// `inet` it is a function of its own, which adds the `/32` the output leaves out.
const PRINT: &str = "SELECT pg_catalog.format('%s', $1)";

const READ_SETTINGS: &str = "SET LOCAL search_path = pg_catalog, pg_temp; SET LOCAL statement_timeout = ";

/// How long the client waits past the server's own statement timeout before it cancels.
const CLIENT_GRACE: Duration = Duration::from_millis(250);
/// The time limit for introspection queries.
const INTROSPECTION_TIMEOUT: Duration = Duration::from_secs(10);

/// The PostgreSQL adapter.
pub struct PostgresAdapter {
    pool: Pool,
    allow: AllowList,
    /// `SET LOCAL …` for every write transaction, built once (the default schema is quoted
    /// here), ending with the statement timeout's `=`.
    settings_prefix: String,
    max_connections: usize,
    /// Also used for cancel requests, which open a connection of their own.
    connector: Arc<Connector>,
    /// The budget of side connections that cancel abandoned statements.
    side: Arc<tokio::sync::Semaphore>,
    /// The largest message a connection takes from the server.
    max_message_bytes: usize,
    shapes: Shapes,
    /// The database is on another machine and the URL asks for plain text (see
    /// [`super::PLAINTEXT_FINDING`]).
    plaintext: bool,
    /// Which allow-listed names are plain tables (see [`PostgresAdapter::runs_no_stored_code`]).
    kinds: Arc<super::TableKinds>,
}

impl fmt::Debug for PostgresAdapter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PostgresAdapter").field("default_schema", &self.allow.default_schema()).finish_non_exhaustive()
    }
}

impl PostgresAdapter {
    /// Builds the pool for `url` (`postgres://…` or `postgresql://…`). No connection is made
    /// until the first call. The URL never appears in an error.
    pub fn connect(url: &str, allow: AllowList, options: PoolOptions) -> Result<Self, AdapterError> {
        if allow.dialect() != SqlDialect::Postgres {
            return Err(AdapterError::invalid("the allow-list was built for another SQL dialect"));
        }
        let (url, root_certificates) = take_url_parameter(url, "sslrootcert");
        // Certificates are always verified in full, so libpq's verify-ca and verify-full are
        // what require means here.
        let (url, named_mode) = match take_url_parameter(&url, "sslmode") {
            (base, Some(mode)) => {
                let mode = if matches!(mode.as_str(), "verify-ca" | "verify-full") { "require" } else { mode.as_str() };
                (format!("{base}{}sslmode={mode}", if base.contains('?') { '&' } else { '?' }), true)
            }
            (base, None) => (base, false),
        };
        let mut config: tokio_postgres::Config = url
            .parse()
            .map_err(|_| AdapterError::invalid("the PostgreSQL URL is not valid (the URL itself is not shown)"))?;
        // On another machine, TLS is required unless the URL names another mode (libpq's
        // default, `prefer`, lets an active attacker answer "no TLS" and read everything).
        let remote = reaches_another_machine(&config);
        let named_mode = named_mode || config.get_ssl_mode() != SslMode::Prefer;
        if remote && !named_mode {
            config.ssl_mode(SslMode::Require);
        }
        let plaintext = remote && matches!(config.get_ssl_mode(), SslMode::Disable | SslMode::Prefer);
        if plaintext {
            tracing::warn!("{}", super::PLAINTEXT_FINDING);
        }
        let tls = tls_config(root_certificates.as_deref())?;
        config.connect_timeout(options.connect_timeout);
        if config.get_application_name().is_none() {
            config.application_name("sqlwarden");
        }
        let connector = Arc::new(Connector::new(config, tls, options.max_message_bytes()));
        let pool = Pool::builder(Pooled(Arc::clone(&connector)))
            .max_size(options.max_connections.max(1))
            .wait_timeout(Some(options.connect_timeout))
            .create_timeout(Some(options.connect_timeout))
            .recycle_timeout(Some(options.connect_timeout))
            .runtime(deadpool::Runtime::Tokio1)
            .build()
            .map_err(|error| AdapterError::new(AdapterErrorKind::Connection, error.to_string()))?;
        let settings_prefix = format!(
            "SET LOCAL search_path = pg_catalog, {}; SET LOCAL statement_timeout = ",
            quote(allow.default_schema())
        );
        Ok(PostgresAdapter {
            pool,
            allow,
            settings_prefix,
            max_connections: options.max_connections.max(1),
            connector,
            side: Arc::new(tokio::sync::Semaphore::new(SIDE_CONNECTIONS)),
            max_message_bytes: options.max_message_bytes(),
            shapes: Shapes::default(),
            plaintext,
            kinds: Arc::new(super::TableKinds::new()),
        })
    }

    /// A connection checked out for a call; see [`Checkout`].
    fn checkout(&self, object: Object, hold: SlotHold) -> Checkout {
        Checkout::new(object, Arc::clone(&self.connector), Arc::clone(&self.side), hold)
    }

    /// Runs `work` in a read-only transaction on a pooled connection, within `timeout`. A
    /// connection found dead when the transaction begins is replaced and the work tried again;
    /// once the transaction has begun, the work is never tried again. The connection goes
    /// back to the pool only once the transaction is known to have ended. `hold` keeps the
    /// call's quota slot until an abandoned statement has stopped (see [`Checkout`]).
    async fn in_read_transaction<C: Sync + ?Sized, R>(
        &self,
        hold: SlotHold,
        timeout: Duration,
        tables: Option<&[TableName]>,
        context: &C,
        work: for<'t> fn(&'t ReadTx<'t>, &'t C) -> BoxFuture<'t, Result<R, Failure>>,
    ) -> Result<R, AdapterError> {
        let deadline = Instant::now() + timeout + CLIENT_GRACE;
        let begin = format!("START TRANSACTION READ ONLY; {READ_SETTINGS}{}", super::statement_millis(timeout));
        let mut hold = hold;
        let mut attempt = 0;
        loop {
            attempt += 1;
            let object = match tokio::time::timeout_at(deadline, self.pool.get()).await {
                Ok(Ok(object)) => object,
                Ok(Err(error)) => return Err(unreachable(&error)),
                Err(_) => return Err(AdapterError::timed_out()),
            };
            let mut checkout = self.checkout(object, hold);
            let run = async {
                let tx = ReadTx { client: checkout.client(), begin: &begin, open: AtomicBool::new(false) };
                let result = work(&tx, context).await;
                let ended = tx.end().await;
                (result, ended)
            };
            let outcome = tokio::time::timeout_at(deadline, run).await;
            let Ok((result, ended)) = outcome else {
                // Still armed: the checkout cancels the statement and discards the connection.
                return Err(AdapterError::timed_out());
            };
            let oversized = checkout.refused_a_large_message();
            match (result, ended) {
                // Nothing ran: the connection was dead before the transaction began. Every
                // pooled connection may be dead (a restart kills them all): try each once, and
                // one fresh.
                (Err(Failure::NotBegun(error)), _) => {
                    hold = checkout.discard();
                    if attempt > self.max_connections {
                        return Err(AdapterError::new(AdapterErrorKind::Connection, error.to_string()));
                    }
                }
                (result, Ok(())) => {
                    // A read that may have run stored code does not leave its connection to
                    // the next caller: what a function set outside the transaction (an
                    // advisory lock, `setseed`) would outlive the rollback.
                    let plain = match tables {
                        None => true,
                        Some(tables) => {
                            tokio::time::timeout_at(deadline, self.runs_no_stored_code(checkout.client(), tables))
                                .await
                                .unwrap_or(false)
                        }
                    };
                    if plain {
                        checkout.release();
                    } else {
                        let _closed = checkout.discard();
                    }
                    return result.map_err(|failure| self.failed(failure, oversized));
                }
                // The rollback failed: whatever state the connection is in, it is not reused.
                // The result stands; a read-only transaction had nothing to keep.
                (result, Err(_)) => {
                    let _ended = checkout.discard();
                    return result.map_err(|failure| self.failed(failure, oversized));
                }
            }
        }
    }

    /// Whether a read of `tables` runs no code of the database's users: every one is a plain
    /// table (no view, no row-level security, whose policies call functions), as the catalog
    /// said at most a second ago. When that is older, the catalog is asked on `client`, the
    /// read's own connection, its transaction ended; any doubt is a no.
    async fn runs_no_stored_code(&self, client: &tokio_postgres::Client, tables: &[TableName]) -> bool {
        if let Some(answer) = self.kinds.fresh(tables) {
            return answer;
        }
        let schemas: Vec<String> = self.allow.schemas().map(str::to_owned).collect();
        let Ok(rows) = client.query(PLAIN_TABLES, &[&schemas]).await else { return false };
        self.kinds.learn(
            rows.iter()
                .filter_map(|row| Some(TableName { schema: row.try_get(0).ok()?, table: row.try_get(1).ok()? }))
                .collect(),
        );
        self.kinds.fresh(tables).unwrap_or(false)
    }

    /// The caller's view of a failure after the transaction began: a message over the limit
    /// is a result too large; a connection lost is not tried again.
    fn failed(&self, failure: Failure, oversized: bool) -> AdapterError {
        match failure {
            Failure::Postgres(error) if oversized && is_connection_failure(&error) => {
                AdapterError::new(AdapterErrorKind::ResultTooLarge, error.to_string()).with_message(format!(
                    "a row is larger than {} bytes, more than a result may hold; select fewer or smaller columns",
                    self.max_message_bytes
                ))
            }
            Failure::Postgres(error) if is_connection_failure(&error) => {
                AdapterError::new(AdapterErrorKind::Connection, error.to_string()).with_message(
                    "the connection to the database was lost while the statement ran (it may have been ended by \
                     an administrator); it was not run again",
                )
            }
            failure => failure.into_adapter_error(),
        }
    }
}

/// Whether any host the configuration names is on another machine (see
/// [`super::is_local_host`]); `hostaddr`, when given, is where the connection goes.
fn reaches_another_machine(config: &tokio_postgres::Config) -> bool {
    let (hosts, addresses) = (config.get_hosts(), config.get_hostaddrs());
    (0..hosts.len().max(addresses.len())).any(|index| match (addresses.get(index), hosts.get(index)) {
        (Some(address), _) => !address.to_canonical().is_loopback(),
        (None, Some(Host::Tcp(name))) => !super::is_local_host(name),
        (None, Some(Host::Unix(_)) | None) => false,
    })
}

/// A read-only transaction on one connection, begun by the work inside it so that the begin
/// can share a message with the work's first requests. It knows whether it may be open, so
/// that it is always ended before its connection is reused.
struct ReadTx<'c> {
    client: &'c tokio_postgres::Client,
    /// `START TRANSACTION READ ONLY` and the `SET LOCAL`s, as one simple query.
    begin: &'c str,
    open: AtomicBool,
}

impl<'c> ReadTx<'c> {
    /// Begins the transaction and returns the client to run the work on. Requests sent after
    /// this one's first poll run inside the transaction (or fail, if it did not begin).
    async fn begin(&self) -> Result<&'c tokio_postgres::Client, Failure> {
        self.open.store(true, Ordering::Release);
        self.client.batch_execute(self.begin).await.map_err(|error| {
            if is_connection_failure(&error) { Failure::NotBegun(error) } else { Failure::Postgres(error) }
        })?;
        Ok(self.client)
    }

    fn is_open(&self) -> bool {
        self.open.load(Ordering::Acquire)
    }

    /// Rolls the transaction back, if it may be open.
    async fn end(&self) -> Result<(), Failure> {
        if self.is_open() {
            self.client.batch_execute("ROLLBACK").await.map_err(Failure::Postgres)?;
            self.open.store(false, Ordering::Release);
        }
        Ok(())
    }
}

impl Adapter for PostgresAdapter {
    fn dialect(&self) -> SqlDialect {
        SqlDialect::Postgres
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
            if query.param_count() != params.len() {
                return Err(AdapterError::invalid(format!(
                    "the query takes {} parameters but {} were given",
                    query.param_count(),
                    params.len()
                )));
            }
            let context = ReadContext { sql: query.sql(), params, options, shapes: &self.shapes };
            let hold = evidence.hold_slot();
            let tables = Some(query.tables());
            self.in_read_transaction(hold, options.timeout, tables, &context, |tx, context| Box::pin(read(tx, context)))
                .await
        })
    }

    fn list_tables<'a>(
        &'a self,
        evidence: Evidence<'a, Read>,
        schema: Option<&'a str>,
    ) -> BoxFuture<'a, Result<Vec<TableSummary>, AdapterError>> {
        Box::pin(async move {
            let schemas: Vec<String> = match schema {
                Some(schema) => vec![self.allow.resolve(Some(schema), "").schema],
                None => self.allow.schemas().map(str::to_owned).collect(),
            };
            let rows = self
                .in_read_transaction(evidence.hold_slot(), INTROSPECTION_TIMEOUT, None, &schemas, |tx, schemas| {
                    Box::pin(async move {
                        tx.begin().await?.query(LIST_TABLES, &[schemas]).await.map_err(Failure::Postgres)
                    })
                })
                .await?;
            let mut tables = Vec::with_capacity(rows.len());
            for row in rows {
                let (schema, name, kind): (String, String, i8) =
                    (text(&row, 0)?, text(&row, 1)?, row.try_get(2).map_err(decode_failure)?);
                if self.allow.permits(&schema, &name) {
                    tables.push(TableSummary { schema, name, kind: relation_kind(kind as u8).to_owned() });
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
            let (schema, table) = (name.schema.as_str(), name.table.as_str());
            let (columns, primary_key, foreign_keys, indexes) = self
                .in_read_transaction(
                    evidence.hold_slot(),
                    INTROSPECTION_TIMEOUT,
                    None,
                    &(schema, table),
                    |tx, (schema, table)| {
                        Box::pin(async move {
                            let tx = tx.begin().await?;
                            let params: [&(dyn ToSql + Sync); 2] = [schema, table];
                            let columns = tx.query(DESCRIBE_COLUMNS, &params).await.map_err(Failure::Postgres)?;
                            let primary_key =
                                tx.query(DESCRIBE_PRIMARY_KEY, &params).await.map_err(Failure::Postgres)?;
                            let foreign_keys =
                                tx.query(DESCRIBE_FOREIGN_KEYS, &params).await.map_err(Failure::Postgres)?;
                            let indexes = tx.query(DESCRIBE_INDEXES, &params).await.map_err(Failure::Postgres)?;
                            Ok((columns, primary_key, foreign_keys, indexes))
                        })
                    },
                )
                .await?;
            if columns.is_empty() {
                return Err(AdapterError::of_kind(AdapterErrorKind::NotVisible));
            }
            let mut description = TableDescription {
                schema: schema.to_owned(),
                name: table.to_owned(),
                columns: Vec::with_capacity(columns.len()),
                primary_key: Vec::new(),
                foreign_keys: Vec::new(),
                indexes: Vec::new(),
            };
            for row in &columns {
                description.columns.push(ColumnDescription {
                    name: text(row, 0)?,
                    data_type: text(row, 1)?,
                    nullable: row.try_get(2).map_err(decode_failure)?,
                    default: row.try_get(3).map_err(decode_failure)?,
                    comment: row.try_get(4).map_err(decode_failure)?,
                });
            }
            for row in &primary_key {
                description.primary_key.push(text(row, 0)?);
            }
            for row in &foreign_keys {
                let (referenced_schema, referenced_table) = (text(row, 2)?, text(row, 3)?);
                // A key to a table the caller may not see would name that table: leave it out.
                if self.allow.permits(&referenced_schema, &referenced_table) {
                    description.foreign_keys.push(ForeignKey {
                        name: text(row, 0)?,
                        columns: row.try_get(1).map_err(decode_failure)?,
                        referenced_schema,
                        referenced_table,
                        referenced_columns: row.try_get(4).map_err(decode_failure)?,
                    });
                }
            }
            for row in &indexes {
                description.indexes.push(IndexDescription {
                    name: text(row, 0)?,
                    unique: row.try_get(1).map_err(decode_failure)?,
                    columns: row.try_get(2).map_err(decode_failure)?,
                });
            }
            Ok(description)
        })
    }

    fn posture<'a>(&'a self, evidence: Evidence<'a, Read>) -> BoxFuture<'a, Result<Posture, AdapterError>> {
        Box::pin(async move {
            let schemas: Vec<String> = self.allow.schemas().map(str::to_owned).collect();
            let (role, writable) = self
                .in_read_transaction(evidence.hold_slot(), INTROSPECTION_TIMEOUT, None, &schemas, |tx, schemas| {
                    Box::pin(async move {
                        let tx = tx.begin().await?;
                        let role = tx.query_one(POSTURE_ROLE, &[]).await.map_err(Failure::Postgres)?;
                        let writable = tx.query(POSTURE_WRITABLE, &[schemas]).await.map_err(Failure::Postgres)?;
                        Ok((role, writable))
                    })
                })
                .await?;
            let flag = |index: usize| role.try_get::<_, bool>(index).map_err(decode_failure);
            let mut findings = Vec::new();
            if self.plaintext {
                findings.push(super::PLAINTEXT_FINDING.to_owned());
            }
            for (index, finding) in [
                (1, "it is a superuser"),
                (2, "it can create roles"),
                (3, "it can create databases"),
                (4, "it bypasses row-level security"),
                (5, "it can create schemas in this database"),
                (6, "it can read or write server files or run server programs"),
            ] {
                if flag(index)? {
                    findings.push(finding.to_owned());
                }
            }
            for row in &writable {
                let (schema, name, privilege): (String, String, String) = (text(row, 0)?, text(row, 1)?, text(row, 2)?);
                if privilege == "CREATE" {
                    findings.push(format!("it can create objects in schema {schema}"));
                } else if privilege == "SHARED" {
                    // Reads never find what is planted there by name (their search path holds
                    // only pg_catalog), but write tools and other clients of the schema may.
                    findings.push(format!("{name} can create objects in schema {schema}"));
                } else if self.allow.permits(&schema, &name) {
                    findings.push(format!("it can change table {schema}.{name}"));
                }
            }
            Ok(Posture { role: text(&role, 0)?, findings })
        })
    }

    fn begin_write<'a>(
        &'a self,
        evidence: Evidence<'a, Write>,
        options: WriteOptions,
    ) -> BoxFuture<'a, Result<Box<dyn WriteTransaction<'a> + 'a>, AdapterError>> {
        Box::pin(async move {
            // The tool's statements see the configured schema first, as reads do, and a
            // transaction left open by a lost client ends on the server's side as well.
            let millis = super::statement_millis(options.timeout());
            let begin = format!(
                "BEGIN READ WRITE; {}{millis}; SET LOCAL idle_in_transaction_session_timeout = {}",
                self.settings_prefix,
                millis + super::statement_millis(CLIENT_GRACE),
            );
            let mut hold = evidence.hold_slot();
            let mut attempt = 0;
            loop {
                attempt += 1;
                let object = self.pool.get().await.map_err(|error| unreachable(&error))?;
                let mut checkout = self.checkout(object, hold);
                match checkout.client().batch_execute(&begin).await {
                    Ok(()) => return Ok(Box::new(PostgresWrite { checkout }) as Box<dyn WriteTransaction<'a> + 'a>),
                    // Nothing has run yet: a dead pooled connection is replaced, as for reads.
                    Err(error) if is_connection_failure(&error) && attempt <= self.max_connections => {
                        hold = checkout.discard();
                    }
                    Err(error) => {
                        let _ended = checkout.discard();
                        return Err(classify(&error));
                    }
                }
            }
        })
    }
}

/// A write transaction on a checked-out connection. Dropped without commit or rollback, its
/// checkout cancels what runs and closes the connection, which ends the transaction unsaved.
struct PostgresWrite {
    checkout: Checkout,
}

impl PostgresWrite {
    /// Ends the transaction with `command`; the connection goes back to the pool only if
    /// that worked.
    async fn finish(mut self: Box<Self>, command: &'static str) -> Result<(), AdapterError> {
        match self.checkout.client().batch_execute(command).await {
            Ok(()) => {
                self.checkout.release();
                Ok(())
            }
            Err(error) => {
                let _ended = self.checkout.discard();
                Err(classify(&error))
            }
        }
    }
}

impl<'a> WriteTransaction<'a> for PostgresWrite {
    fn execute<'s>(
        &'s mut self,
        statement: &'static str,
        params: &'s [SqlValue],
        row_cap: u64,
    ) -> BoxFuture<'s, Result<Executed, AdapterError>> {
        Box::pin(async move {
            let client = self.checkout.client();
            let prepared = client.prepare(statement).await.map_err(|error| classify(&error))?;
            if prepared.params().len() != params.len() {
                return Err(AdapterError::invalid("the statement's parameters do not match the values given"));
            }
            let stream =
                client.query_raw(&prepared, params.iter().map(Param)).await.map_err(|error| classify(&error))?;
            let mut stream = std::pin::pin!(stream);
            let mut rows = Vec::new();
            while let Some(row) = stream.next().await {
                let row = row.map_err(|error| classify(&error))?;
                if rows.len() as u64 > row_cap {
                    // Over the limit already; the caller refuses the statement.
                    return Ok(Executed { rows_affected: rows.len() as u64, last_insert_id: None, rows });
                }
                let mut values = Vec::with_capacity(row.len());
                for (index, column) in row.columns().iter().enumerate() {
                    let Raw(raw) = row.try_get(index).map_err(decode_failure)?;
                    values.push(match raw {
                        None => Value::Null,
                        Some(raw) => decode(column.type_(), raw).ok_or_else(|| {
                            AdapterError::invalid(format!(
                                "RETURNING column {} has type {}, which is not decoded here; cast it to text",
                                column.name(),
                                type_name(column.type_())
                            ))
                        })?,
                    });
                }
                rows.push(values);
            }
            let rows_affected = stream.rows_affected().unwrap_or(rows.len() as u64);
            Ok(Executed { rows_affected, last_insert_id: None, rows })
        })
    }

    fn commit(self: Box<Self>) -> BoxFuture<'a, Result<(), AdapterError>> {
        Box::pin(self.finish("COMMIT"))
    }

    fn rollback(self: Box<Self>) -> BoxFuture<'a, Result<(), AdapterError>> {
        Box::pin(self.finish("ROLLBACK"))
    }
}

/// A pooled connection in use. Unless released or discarded, dropping it stops whatever
/// statement the connection runs (see [`Checkout::stop`]), then closes the connection instead
/// of returning it to the pool: a cancel request names only the server process, so a reused
/// connection could lose another caller's query to it.
struct Checkout {
    object: Option<Object>,
    connector: Arc<Connector>,
    side: Arc<tokio::sync::Semaphore>,
    /// The call's quota slot, kept until an abandoned statement has stopped.
    hold: Option<SlotHold>,
}

impl Checkout {
    fn new(object: Object, connector: Arc<Connector>, side: Arc<tokio::sync::Semaphore>, hold: SlotHold) -> Self {
        Checkout { object: Some(object), connector, side, hold: Some(hold) }
    }

    fn client(&mut self) -> &mut Object {
        // The object is taken out only on release, discard or drop, after which the checkout is
        // never used again.
        self.object.as_mut().expect("a checkout holds its connection until it ends")
    }

    /// Whether the connection was failed because a message from the server was over the limit.
    fn refused_a_large_message(&self) -> bool {
        self.object.as_ref().is_some_and(|object| object.refused_a_large_message())
    }

    /// Returns the connection to the pool: its work ended normally. One that read a large
    /// message is closed instead, so that its read buffer, as large, is freed.
    fn release(&mut self) {
        self.hold = None;
        if let Some(object) = self.object.take()
            && object.holds_a_large_buffer()
        {
            drop(Object::take(object));
        }
    }

    /// Closes the connection without cancelling anything (it is dead already, or idle),
    /// handing back the slot hold.
    fn discard(&mut self) -> SlotHold {
        if let Some(object) = self.object.take() {
            drop(Object::take(object));
        }
        self.hold.take().unwrap_or_else(SlotHold::none)
    }

    /// Cancels what the connection runs, from a side connection, then waits for the answer to
    /// one more request on the connection itself: the server gives it only once the statement
    /// has stopped, which the slot hold waits for. Some work ignores a cancel until it is done
    /// (constant folding while planning, a function over a large value); that is waited for,
    /// at most [`MAX_STOP_WAIT`]. Then the connection is closed.
    async fn stop(object: Object, connector: Arc<Connector>, side: Arc<tokio::sync::Semaphore>, hold: SlotHold) {
        let token = object.cancel_token();
        let cancelled = async {
            let _side = side.acquire().await;
            connector.cancel(&token).await
        };
        if let Err(error) = cancelled.await {
            tracing::warn!(%error, "could not cancel an abandoned PostgreSQL statement");
        }
        match tokio::time::timeout(MAX_STOP_WAIT, object.batch_execute("ROLLBACK")).await {
            Ok(_) => {}
            Err(_) => tracing::warn!(
                wait_s = MAX_STOP_WAIT.as_secs(),
                "an abandoned PostgreSQL statement still runs; its quota slot is released"
            ),
        }
        drop(Object::take(object));
        drop(hold);
    }
}

impl Drop for Checkout {
    fn drop(&mut self) {
        let (Some(object), Some(hold)) = (self.object.take(), self.hold.take()) else { return };
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => {
                let (connector, side) = (Arc::clone(&self.connector), Arc::clone(&self.side));
                runtime.spawn(Checkout::stop(object, connector, side, hold));
            }
            Err(_) => drop(Object::take(object)),
        }
    }
}

/// What a read needs inside its transaction.
struct ReadContext<'a> {
    sql: &'a str,
    params: &'a [SqlValue],
    options: ReadOptions,
    shapes: &'a Shapes,
}

/// What recent reads' results looked like, by query text, so that a repeated read can begin,
/// open its cursor, fetch and roll back in one round trip instead of describing the query
/// first. A description is kept only when every column is of a built-in type decoded here
/// (the fetch then needs no type lookups, which could not be answered while its rows wait),
/// and is trusted for at most [`Shapes::FRESH_FOR`]: rows bring their own description, so it
/// only names an empty result's columns, and a table altered since is described afresh within
/// that time. Bounded: at most [`Shapes::CAPACITY`] texts of at most
/// [`Shapes::MAX_TEXT_BYTES`]; a full memory is cleared.
#[derive(Default)]
struct Shapes(std::sync::Mutex<std::collections::HashMap<Box<str>, Shape>>);

struct Shape {
    columns: Vec<ResultColumn>,
    params: usize,
    learned: Instant,
}

impl Shapes {
    const CAPACITY: usize = 256;
    const MAX_TEXT_BYTES: usize = 4096;
    const FRESH_FOR: Duration = Duration::from_secs(1);

    fn get(&self, sql: &str, params: usize) -> Option<Vec<ResultColumn>> {
        let shapes = self.0.lock().ok()?;
        let shape = shapes.get(sql)?;
        (shape.params == params && shape.learned.elapsed() < Self::FRESH_FOR).then(|| shape.columns.clone())
    }

    /// Keeps the description of `statement` if every column qualifies.
    fn learn(&self, sql: &str, statement: &Statement, columns: &[ResultColumn]) {
        let built_in = |ty: &Type| Type::from_oid(ty.oid()).is_some() && decodable(ty);
        if sql.len() > Self::MAX_TEXT_BYTES || !statement.columns().iter().all(|column| built_in(column.type_())) {
            return;
        }
        let Ok(mut shapes) = self.0.lock() else { return };
        if shapes.len() >= Self::CAPACITY {
            shapes.clear();
        }
        let shape = Shape { columns: columns.to_vec(), params: statement.params().len(), learned: Instant::now() };
        shapes.insert(sql.into(), shape);
    }

    fn forget(&self, sql: &str) {
        if let Ok(mut shapes) = self.0.lock() {
            shapes.remove(sql);
        }
    }
}

/// The cursor a read fetches from; it lives only as long as its transaction.
const CURSOR: &str = "sqlwarden_rows";

/// A parameter type of 0: the server infers it, and parses the text it is sent as that type.
static UNSPECIFIED: std::sync::LazyLock<Type> =
    std::sync::LazyLock::new(|| Type::new("unknown".to_owned(), 0, Kind::Pseudo, "pg_catalog".to_owned()));

/// The read itself. The first message begins the transaction, describes the query (its
/// parameters and columns) and declares a cursor over it; the second fetches at most
/// `limit + 1` rows and, when every column has a decoder here, rolls back. A query whose
/// description is fresh in [`Shapes`] sends all of it, fetch and rollback included, in one
/// message. The query runs only through the cursor, and a cursor exists only inside a
/// transaction block: if the begin failed, nothing ran.
async fn read(tx: &ReadTx<'_>, context: &ReadContext<'_>) -> Result<QueryResult, Failure> {
    let ReadContext { sql, params, options, shapes } = *context;
    let client = tx.client;
    let declare = format!("DECLARE {CURSOR} NO SCROLL CURSOR FOR {sql}");
    let fetch = format!("FETCH FORWARD {} FROM {CURSOR}", options.limit.saturating_add(1));
    let values: Vec<Param<'_>> = params.iter().map(Param).collect();
    let typed: Vec<(&(dyn ToSql + Sync), Type)> =
        values.iter().map(|value| (value as &(dyn ToSql + Sync), UNSPECIFIED.clone())).collect();
    // Requests are sent as each future is first polled, and `join`s poll in order: the begin
    // goes first, and the requests of one join leave in one write.
    let (columns, fetched) = if let Some(known) = shapes.get(sql, params.len()) {
        let (begun, declared, fetched, ended) = futures_util::future::join4(
            tx.begin(),
            client.execute_typed(&declare, &typed),
            collect_rows(client, &fetch, options, Some(&known)),
            tx.end(),
        )
        .await;
        let fetched =
            begun.and(declared.map_err(Failure::Postgres)).and(fetched).and_then(|fetched| ended.map(|()| fetched));
        let mut fetched = fetched.inspect_err(|_| shapes.forget(sql))?;
        match fetched.changed.take() {
            // The rows' own description wins; a different one is learned afresh next time.
            Some(seen) => {
                shapes.forget(sql);
                (seen, fetched)
            }
            None => (known, fetched),
        }
    } else {
        let (begun, described, declared) =
            futures_util::future::join3(tx.begin(), client.prepare(sql), client.execute_typed(&declare, &typed)).await;
        begun?;
        let statement = described.map_err(Failure::Postgres)?;
        declared.map_err(Failure::Postgres)?;
        if statement.params().len() != params.len() {
            return Err(Failure::Adapter(AdapterError::invalid(
                "the query's placeholders do not match the parameters given",
            )));
        }
        let columns = result_columns(&statement);
        let all_decodable = statement.columns().iter().all(|column| decodable(column.type_()));
        shapes.learn(sql, &statement, &columns);
        // Dropping the statement queues its close, which then leaves in the fetch's write.
        drop(statement);
        let collect = collect_rows(client, &fetch, options, None);
        let fetched = if all_decodable {
            let (fetched, ended) = futures_util::future::join(collect, tx.end()).await;
            ended?;
            fetched?
        } else {
            collect.await?
        };
        (columns, fetched)
    };
    let Fetched { mut rows, truncated, pending, .. } = fetched;
    if !pending.is_empty() {
        if pending.iter().any(|value| value.ty == Type::RECORD) {
            // The server cannot be sent an anonymous record to print.
            return Err(Failure::Adapter(AdapterError::invalid(
                "a ROW(…) column holds a field of a type that can only be returned as a column of its own; \
                 select that field as a column",
            )));
        }
        // A value with no decoder here: PostgreSQL prints it, inside a read-only transaction.
        if !tx.is_open() {
            tx.begin().await?;
        }
        let mut as_text: Vec<(Type, Statement)> = Vec::new();
        let mut printed = Vec::with_capacity(pending.len());
        for Pending { at, ty, raw } in pending {
            let statement = match as_text.iter().find(|(known, _)| *known == ty) {
                Some((_, statement)) => statement.clone(),
                None => {
                    let statement =
                        client.prepare_typed(PRINT, std::slice::from_ref(&ty)).await.map_err(Failure::Postgres)?;
                    as_text.push((ty, statement.clone()));
                    statement
                }
            };
            let row_of_text = client.query_one(&statement, &[&RawParam(&raw)]).await.map_err(Failure::Postgres)?;
            let value: String = row_of_text.try_get(0).map_err(|error| Failure::Adapter(decode_failure(error)))?;
            let mut text = String::with_capacity(value.len() + 2);
            json::text::string(&mut text, &value);
            printed.push((at, text));
        }
        rows.replace(printed).map_err(Failure::Adapter)?;
    }
    Ok(rows.finish(columns, truncated))
}

/// A value to print on the server: where the result's text holds it, its type and its binary
/// form.
struct Pending {
    at: std::ops::Range<usize>,
    ty: Type,
    raw: Vec<u8>,
}

/// What a fetch brought: the rows, whether there were more, the values PostgreSQL must print,
/// and the columns as the rows describe them, when that differs from the description expected.
struct Fetched {
    rows: RowCollector,
    truncated: bool,
    pending: Vec<Pending>,
    changed: Option<Vec<ResultColumn>>,
}

/// Fetches from the cursor, writing rows as they arrive; the first row's description is
/// checked against `expected`, when there is one.
async fn collect_rows(
    client: &tokio_postgres::Client,
    fetch: &str,
    options: ReadOptions,
    expected: Option<&[ResultColumn]>,
) -> Result<Fetched, Failure> {
    let stream = client.query_typed_raw(fetch, std::iter::empty::<(&(dyn ToSql + Sync), Type)>()).await;
    let mut stream = Box::pin(stream.map_err(Failure::Postgres)?);
    let mut fetched =
        Fetched { rows: RowCollector::new(options), truncated: false, pending: Vec::new(), changed: None };
    let mut expected = expected;
    while let Some(row) = stream.next().await {
        let row = row.map_err(Failure::Postgres)?;
        if let Some(columns) = expected.take() {
            let same = columns.len() == row.columns().len()
                && columns
                    .iter()
                    .zip(row.columns())
                    .all(|(known, seen)| known.name == seen.name() && is_type_named(seen.type_(), &known.data_type));
            if !same {
                fetched.changed = Some(describe(row.columns()));
            }
        }
        if fetched.rows.is_full() {
            fetched.truncated = true;
            break;
        }
        let mut out = fetched.rows.row();
        for (index, column) in row.columns().iter().enumerate() {
            let Raw(raw) = row.try_get(index).map_err(|error| Failure::Adapter(decode_failure(error)))?;
            if let Some(raw) = raw
                && raw.len() > LONG_VALUE_PIECE
                && let Some(bytes) = long_kind(column.type_())
            {
                out.long_value(raw, bytes).await.map_err(Failure::Adapter)?;
                continue;
            }
            let limit = out.limit();
            let text = out.value();
            let written = match raw {
                None => {
                    json::text::null(text);
                    Ok(())
                }
                Some(raw) => match write_value(column.type_(), raw, text, limit) {
                    Ok(()) => Ok(()),
                    Err(Unwritten::TooLarge) => Err(json::text::TooLarge),
                    Err(Unwritten::Undecodable) => {
                        // Held as its bytes for now; PostgreSQL prints it once the rows are in.
                        let start = text.len();
                        json::text::lossy_within(text, raw, limit).map(|()| {
                            let at = start..text.len();
                            fetched.pending.push(Pending { at, ty: column.type_().clone(), raw: raw.to_vec() });
                        })
                    }
                },
            };
            // The refusal is made only when needed: its message is formatted.
            if written.is_err() {
                return Err(Failure::Adapter(out.too_large()));
            }
        }
        out.end().map_err(Failure::Adapter)?;
        if fetched.rows.should_yield() {
            tokio::task::yield_now().await;
        }
    }
    Ok(fetched)
}

/// For a type whose values can be long and are written as they are (text, or bytes as
/// base64), which of the two: such a value is written a piece at a time.
fn long_kind(ty: &Type) -> Option<bool> {
    match *ty {
        Type::TEXT | Type::VARCHAR | Type::BPCHAR | Type::NAME | Type::UNKNOWN | Type::XML => Some(false),
        Type::BYTEA => Some(true),
        _ => match ty.kind() {
            Kind::Enum(_) => Some(false),
            Kind::Domain(base) => long_kind(base),
            _ => None,
        },
    }
}

/// Whether [`decode`] has a decoder for values of the type.
fn decodable(ty: &Type) -> bool {
    match ty.kind() {
        Kind::Enum(_) => true,
        Kind::Domain(base) | Kind::Array(base) => decodable(base),
        Kind::Simple => DECODED.contains(ty),
        _ => false,
    }
}

/// The simple types [`decode`] reads.
const DECODED: [Type; 26] = [
    Type::BOOL,
    Type::RECORD,
    Type::INT2,
    Type::INT4,
    Type::INT8,
    Type::OID,
    Type::FLOAT4,
    Type::FLOAT8,
    Type::NUMERIC,
    Type::TEXT,
    Type::VARCHAR,
    Type::BPCHAR,
    Type::NAME,
    Type::UNKNOWN,
    Type::XML,
    Type::CHAR,
    Type::UUID,
    Type::DATE,
    Type::TIME,
    Type::TIMETZ,
    Type::TIMESTAMP,
    Type::TIMESTAMPTZ,
    Type::INTERVAL,
    Type::BYTEA,
    Type::JSON,
    Type::JSONB,
];

fn result_columns(statement: &Statement) -> Vec<ResultColumn> {
    describe(statement.columns())
}

fn describe(columns: &[tokio_postgres::Column]) -> Vec<ResultColumn> {
    columns
        .iter()
        .map(|column| ResultColumn { name: column.name().to_owned(), data_type: type_name(column.type_()) })
        .collect()
}

/// Whether [`type_name`] of `ty` is `name`, without writing it out.
fn is_type_named(ty: &Type, name: &str) -> bool {
    match ty.kind() {
        Kind::Array(element) => name.strip_suffix("[]") == Some(element.name()),
        _ => ty.name() == name,
    }
}

fn type_name(ty: &Type) -> String {
    match ty.kind() {
        Kind::Array(element) => format!("{}[]", element.name()),
        _ => ty.name().to_owned(),
    }
}

/// Why a value was not written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Unwritten {
    /// Its type has no decoder here, or its bytes cannot be read: PostgreSQL prints it.
    Undecodable,
    /// It would take the text past its limit.
    TooLarge,
}

impl From<json::text::TooLarge> for Unwritten {
    fn from(_: json::text::TooLarge) -> Self {
        Unwritten::TooLarge
    }
}

/// What `raw` holds, or [`Unwritten::Undecodable`].
fn some<T>(value: Option<T>) -> Result<T, Unwritten> {
    value.ok_or(Unwritten::Undecodable)
}

/// Writes one value from PostgreSQL's binary format as JSON text, taking `out` at most to
/// `limit` bytes; for a type decoded by the server instead (or a value this cannot read),
/// writes nothing and says so.
fn write_value(ty: &Type, raw: &[u8], out: &mut String, limit: usize) -> Result<(), Unwritten> {
    let start = out.len();
    let written = encode(ty, raw, out, limit);
    if written == Err(Unwritten::Undecodable) {
        out.truncate(start);
    }
    written
}

/// One value as a JSON value, for the few rows a write returns.
fn decode(ty: &Type, raw: &[u8]) -> Option<Value> {
    let mut text = String::new();
    write_value(ty, raw, &mut text, usize::MAX).ok()?;
    serde_json::from_str(&text).ok()
}

/// [`write_value`], which may leave part of a value behind when it fails.
fn encode(ty: &Type, raw: &[u8], out: &mut String, limit: usize) -> Result<(), Unwritten> {
    use json::text;
    // The built-in types first: each is simple, and asking a type its kind costs a lookup per
    // value. Digits, dates, times and base64 need no escaping: they are only put between quotes.
    match *ty {
        Type::BOOL => text::bool(out, *some(raw.first())? != 0),
        Type::INT2 => text::int(out, i64::from(i16::from_be_bytes(some(raw.try_into().ok())?))),
        Type::INT4 => text::int(out, i64::from(i32::from_be_bytes(some(raw.try_into().ok())?))),
        Type::INT8 => text::int(out, i64::from_be_bytes(some(raw.try_into().ok())?)),
        Type::OID => text::int(out, i64::from(u32::from_be_bytes(some(raw.try_into().ok())?))),
        Type::FLOAT4 => text::float(out, f64::from(f32::from_be_bytes(some(raw.try_into().ok())?))),
        Type::FLOAT8 => text::float(out, f64::from_be_bytes(some(raw.try_into().ok())?)),
        // At most 147,455 digits: small enough to write before the row's check.
        Type::NUMERIC => some(text::quoted_with(out, |out| numeric(raw, out)))?,
        Type::TEXT | Type::VARCHAR | Type::BPCHAR | Type::NAME | Type::UNKNOWN | Type::XML => {
            text::string_within(out, some(std::str::from_utf8(raw).ok())?, limit)?;
        }
        Type::CHAR => text::string(out, char::from(*some(raw.first())?).encode_utf8(&mut [0; 4])),
        Type::UUID => {
            let value = some(raw.try_into().ok())?;
            text::quoted_with(out, |out| json::write_uuid(out, value));
        }
        Type::DATE => match i32::from_be_bytes(some(raw.try_into().ok())?) {
            i32::MAX => text::quoted(out, "infinity"),
            i32::MIN => text::quoted(out, "-infinity"),
            days => text::quoted_with(out, |out| json::write_date(out, i64::from(days) + POSTGRES_EPOCH_DAYS)),
        },
        Type::TIME => {
            let micros = i64::from_be_bytes(some(raw.try_into().ok())?);
            text::quoted_with(out, |out| json::write_time(out, micros));
        }
        Type::TIMETZ => {
            let (time, zone) = some(raw.split_at_checked(8))?;
            let micros = i64::from_be_bytes(some(time.try_into().ok())?);
            // PostgreSQL stores the offset in seconds west of UTC.
            let east = -i64::from(i32::from_be_bytes(some(zone.try_into().ok())?));
            text::quoted_with(out, |out| {
                json::write_time(out, micros);
                out.push(if east < 0 { '-' } else { '+' });
                let east = east.unsigned_abs();
                json::push_padded(out, east / 3600, 2);
                out.push(':');
                json::push_padded(out, east / 60 % 60, 2);
                if east % 60 != 0 {
                    out.push(':');
                    json::push_padded(out, east % 60, 2);
                }
            });
        }
        Type::TIMESTAMP | Type::TIMESTAMPTZ => match i64::from_be_bytes(some(raw.try_into().ok())?) {
            i64::MAX => text::quoted(out, "infinity"),
            i64::MIN => text::quoted(out, "-infinity"),
            micros => {
                let micros = some(micros.checked_add(POSTGRES_EPOCH_MICROS))?;
                let utc = *ty == Type::TIMESTAMPTZ;
                text::quoted_with(out, |out| json::write_timestamp(out, micros, utc));
            }
        },
        Type::INTERVAL => {
            let (micros, rest) = some(raw.split_at_checked(8))?;
            let (days, months) = some(rest.split_at_checked(4))?;
            text::quoted(
                out,
                &json::interval(
                    i32::from_be_bytes(some(months.try_into().ok())?),
                    i32::from_be_bytes(some(days.try_into().ok())?),
                    i64::from_be_bytes(some(micros.try_into().ok())?),
                ),
            );
        }
        Type::BYTEA => text::base64_within(out, raw, limit)?,
        // JSON as the server printed it: duplicate keys, key order and digits kept.
        Type::JSON => some(text::json_within(out, raw, limit))??,
        Type::JSONB => match raw.split_first() {
            Some((1, printed)) => some(text::json_within(out, printed, limit))??,
            _ => return Err(Unwritten::Undecodable),
        },
        // An anonymous row (`ROW(…)`): the server cannot take one back to print it.
        Type::RECORD => encode_record(raw, out, limit)?,
        _ => {
            return match ty.kind() {
                Kind::Enum(_) => Ok(text::string_within(out, some(std::str::from_utf8(raw).ok())?, limit)?),
                Kind::Domain(base) => encode(base, raw, out, limit),
                Kind::Array(element) => encode_array(element, raw, out, limit),
                _ => Err(Unwritten::Undecodable),
            };
        }
    }
    Ok(())
}

/// Days from 1970-01-01 to PostgreSQL's epoch, 2000-01-01.
const POSTGRES_EPOCH_DAYS: i64 = 10_957;
const POSTGRES_EPOCH_MICROS: i64 = POSTGRES_EPOCH_DAYS * 86_400_000_000;

/// An array in binary format: dimensions, then the elements in row-major order, written as
/// nested JSON arrays.
fn encode_array(element: &Type, raw: &[u8], out: &mut String, limit: usize) -> Result<(), Unwritten> {
    let mut input = raw;
    let word = |input: &mut &[u8]| some(take(input, 4).and_then(|bytes| bytes.try_into().ok()).map(i32::from_be_bytes));
    let dimensions = some(usize::try_from(word(&mut input)?).ok())?;
    some(take(&mut input, 8))?; // the has-null flag and the element type
    let mut lengths = Vec::with_capacity(dimensions.min(raw.len()));
    for _ in 0..dimensions {
        lengths.push(some(usize::try_from(word(&mut input)?).ok())?);
        some(take(&mut input, 4))?; // the lower bound
    }
    // PostgreSQL writes an empty array with no dimensions; an element takes 4 bytes at least.
    let count = some(lengths.iter().try_fold(1usize, |total, length| total.checked_mul(*length)))?;
    if dimensions > 0 && (count == 0 || count > raw.len() / 4) {
        return Err(Unwritten::Undecodable);
    }
    encode_nested(element, if dimensions == 0 { &[] } else { &lengths }, &mut input, out, limit)?;
    if input.is_empty() { Ok(()) } else { Err(Unwritten::Undecodable) }
}

/// An anonymous record in binary format (a count, then each field's type, length and value),
/// written as a JSON array of its fields. A field of a type without a decoder here makes the
/// whole record undecodable.
fn encode_record(raw: &[u8], out: &mut String, limit: usize) -> Result<(), Unwritten> {
    let mut input = raw;
    let word = |input: &mut &[u8]| some(take(input, 4).and_then(|bytes| bytes.try_into().ok()).map(i32::from_be_bytes));
    let count = some(usize::try_from(word(&mut input)?).ok())?;
    out.push('[');
    for index in 0..count {
        if out.len() > limit {
            return Err(Unwritten::TooLarge);
        }
        if index > 0 {
            out.push(',');
        }
        let ty = some(Type::from_oid(word(&mut input)?.cast_unsigned()))?;
        match usize::try_from(word(&mut input)?) {
            Ok(length) => encode(&ty, some(take(&mut input, length))?, out, limit)?,
            Err(_) => json::text::null(out),
        }
    }
    out.push(']');
    if input.is_empty() { Ok(()) } else { Err(Unwritten::Undecodable) }
}

/// One level of an array: `lengths[0]` items, each an element or a level further down.
fn encode_nested(
    element: &Type,
    lengths: &[usize],
    input: &mut &[u8],
    out: &mut String,
    limit: usize,
) -> Result<(), Unwritten> {
    out.push('[');
    if let Some((length, inner)) = lengths.split_first() {
        for index in 0..*length {
            if out.len() > limit {
                return Err(Unwritten::TooLarge);
            }
            if index > 0 {
                out.push(',');
            }
            if inner.is_empty() {
                let length = i32::from_be_bytes(some(take(input, 4).and_then(|bytes| bytes.try_into().ok()))?);
                match usize::try_from(length) {
                    Ok(length) => encode(element, some(take(input, length))?, out, limit)?,
                    Err(_) => json::text::null(out),
                }
            } else {
                encode_nested(element, inner, input, out, limit)?;
            }
        }
    }
    out.push(']');
    Ok(())
}

/// The next `n` bytes of `input`.
fn take<'r>(input: &mut &'r [u8], n: usize) -> Option<&'r [u8]> {
    let (head, rest) = input.split_at_checked(n)?;
    *input = rest;
    Some(head)
}

/// A numeric in binary format: base-10000 digits with a weight, a sign and a display scale,
/// written out digit for digit.
fn numeric(raw: &[u8], out: &mut String) -> Option<()> {
    let word = |at: usize| raw.get(at..at + 2).map(|bytes| u16::from_be_bytes([bytes[0], bytes[1]]));
    let count = usize::from(word(0)?);
    let weight = i64::from(word(2)? as i16);
    let sign = word(4)?;
    let scale = usize::from(word(6)?);
    if raw.len() < 8 + 2 * count {
        return None;
    }
    match sign {
        0x0000 | 0x4000 => {}
        0xC000 => {
            out.push_str("NaN");
            return Some(());
        }
        0xD000 => {
            out.push_str("Infinity");
            return Some(());
        }
        0xF000 => {
            out.push_str("-Infinity");
            return Some(());
        }
        _ => return None,
    }
    // Base-10000 digits; those past the stored ones are zeros.
    let digit = |index: i64| {
        usize::try_from(index)
            .ok()
            .filter(|index| *index < count)
            .and_then(|index| word(8 + 2 * index))
            .map_or(0, u64::from)
    };
    if sign == 0x4000 {
        out.push('-');
    }
    if weight < 0 {
        out.push('0');
    } else {
        json::push_padded(out, digit(0), 1);
        for index in 1..=weight {
            json::push_padded(out, digit(index), 4);
        }
    }
    if scale > 0 {
        out.push('.');
        let start = out.len();
        let mut index = weight + 1;
        while out.len() - start < scale {
            json::push_padded(out, digit(index), 4);
            index += 1;
        }
        out.truncate(start + scale);
    }
    Some(())
}

/// A parameter sent in text format, for the server to parse into the type it needs.
#[derive(Debug)]
struct Param<'a>(&'a SqlValue);

impl ToSql for Param<'_> {
    fn to_sql(&self, _ty: &Type, out: &mut BytesMut) -> Result<IsNull, Box<dyn StdError + Sync + Send>> {
        match self.0 {
            SqlValue::Null => return Ok(IsNull::Yes),
            SqlValue::Bool(value) => out.extend_from_slice(if *value { b"t" } else { b"f" }),
            SqlValue::Int(value) => out.extend_from_slice(itoa::Buffer::new().format(*value).as_bytes()),
            SqlValue::Float(value) => {
                let text = if value.is_nan() {
                    "NaN".to_owned()
                } else if value.is_infinite() {
                    if *value > 0.0 { "Infinity" } else { "-Infinity" }.to_owned()
                } else {
                    format!("{value:?}")
                };
                out.extend_from_slice(text.as_bytes());
            }
            SqlValue::Text(value) => out.extend_from_slice(value.as_bytes()),
            SqlValue::Bytes(value) => {
                out.extend_from_slice(b"\\x");
                for byte in value {
                    out.extend_from_slice(format!("{byte:02x}").as_bytes());
                }
            }
        }
        Ok(IsNull::No)
    }

    fn accepts(_: &Type) -> bool {
        true
    }

    fn encode_format(&self, _ty: &Type) -> tokio_postgres::types::Format {
        tokio_postgres::types::Format::Text
    }

    to_sql_checked!();
}

/// A value's bytes exactly as the server sent them, in binary format.
#[derive(Debug)]
struct RawParam<'a>(&'a [u8]);

impl ToSql for RawParam<'_> {
    fn to_sql(&self, _ty: &Type, out: &mut BytesMut) -> Result<IsNull, Box<dyn StdError + Sync + Send>> {
        out.extend_from_slice(self.0);
        Ok(IsNull::No)
    }

    fn accepts(_: &Type) -> bool {
        true
    }

    to_sql_checked!();
}

/// Any value, undecoded.
struct Raw<'a>(Option<&'a [u8]>);

impl<'a> FromSql<'a> for Raw<'a> {
    fn from_sql(_: &Type, raw: &'a [u8]) -> Result<Self, Box<dyn StdError + Sync + Send>> {
        Ok(Raw(Some(raw)))
    }

    fn from_sql_null(_: &Type) -> Result<Self, Box<dyn StdError + Sync + Send>> {
        Ok(Raw(None))
    }

    fn accepts(_: &Type) -> bool {
        true
    }
}

/// Why work inside a transaction failed.
enum Failure {
    /// The connection was dead when the transaction began: nothing ran.
    NotBegun(tokio_postgres::Error),
    Postgres(tokio_postgres::Error),
    Adapter(AdapterError),
}

impl Failure {
    fn into_adapter_error(self) -> AdapterError {
        match self {
            Failure::Adapter(error) => error,
            Failure::Postgres(error) | Failure::NotBegun(error) => classify(&error),
        }
    }
}

/// Maps a PostgreSQL error to what a caller may see. Only messages that name the query's
/// own words (class 42: unknown column, syntax) are passed on; a data error's message can
/// quote row values, so it is replaced by its SQLSTATE.
fn classify(error: &tokio_postgres::Error) -> AdapterError {
    if is_connection_failure(error) {
        return AdapterError::new(AdapterErrorKind::Connection, error.to_string());
    }
    let Some(db) = error.as_db_error() else {
        return AdapterError::new(AdapterErrorKind::Database, error.to_string());
    };
    let code = db.code();
    let state = code.code();
    // The cause kept for the log carries the SQLSTATE only: details can quote row values.
    let cause = format!("SQLSTATE {state}");
    if *code == SqlState::QUERY_CANCELED {
        return AdapterError::new(AdapterErrorKind::Timeout, cause);
    }
    if *code == SqlState::READ_ONLY_SQL_TRANSACTION {
        return AdapterError::new(AdapterErrorKind::Database, cause)
            .with_message("the database refused to write: the transaction is read-only");
    }
    if state.starts_with("42") {
        let mut message = format!("the database refused the statement: {} (SQLSTATE {state})", db.message());
        if let Some(hint) = db.hint() {
            message.push_str("; hint: ");
            message.push_str(hint);
        }
        return AdapterError::new(AdapterErrorKind::Database, cause).with_message(message);
    }
    if state.starts_with("22") {
        return AdapterError::new(AdapterErrorKind::InvalidInput, cause).with_message(format!(
            "a value does not fit its type or operation (SQLSTATE {state}); check the parameters and casts"
        ));
    }
    AdapterError::new(AdapterErrorKind::Database, cause)
        .with_message(format!("the database refused the statement (SQLSTATE {state})"))
}

/// Whether the connection, not the statement, failed: the read can be tried again elsewhere.
fn is_connection_failure(error: &tokio_postgres::Error) -> bool {
    if error.is_closed() {
        return true;
    }
    match error.code() {
        Some(code) => {
            let state = code.code();
            state.starts_with("08") || matches!(state, "57P01" | "57P02" | "57P03")
        }
        None => error.source().is_some_and(|source| source.is::<std::io::Error>()),
    }
}

fn text(row: &Row, index: usize) -> Result<String, AdapterError> {
    row.try_get(index).map_err(decode_failure)
}

fn decode_failure(error: tokio_postgres::Error) -> AdapterError {
    AdapterError::new(AdapterErrorKind::Internal, error.to_string())
}

/// Why no connection could be had, telling a certificate that failed verification apart.
fn unreachable(error: &(dyn StdError + 'static)) -> AdapterError {
    let mut cause = Some(error);
    while let Some(current) = cause {
        // tokio-rustls wraps its errors in io::Error, whose source() skips the wrapped error.
        let wrapped = current.downcast_ref::<std::io::Error>().and_then(std::io::Error::get_ref);
        if matches!(current.downcast_ref::<ConnectError>(), Some(ConnectError::TlsRefused)) {
            return AdapterError::new(AdapterErrorKind::Connection, error.to_string()).with_message(
                "the database does not offer TLS, which the connection requires (TLS is required for a database \
                 on another machine unless the URL says sslmode=disable)",
            );
        }
        if current.is::<rustls::Error>() || wrapped.is_some_and(|inner| inner.is::<rustls::Error>()) {
            return AdapterError::new(AdapterErrorKind::Connection, error.to_string()).with_message(
                "the database's TLS certificate could not be verified; name its CA with sslrootcert=PATH, \
                 or use sslmode=disable on a trusted network",
            );
        }
        cause = current.source();
    }
    AdapterError::new(AdapterErrorKind::Connection, error.to_string())
}

/// TLS settings: certificates are always verified, chain and host name, against
/// `root_certificates` (a PEM file, as libpq's `sslrootcert`) when given, else against the
/// system's roots. `sslmode` decides whether TLS is used: `disable`, `prefer` (TLS when the
/// server offers it; the default for this machine) or `require` (also spelled `verify-ca` or
/// `verify-full`; the default for a database on another machine).
fn tls_config(root_certificates: Option<&str>) -> Result<rustls::ClientConfig, AdapterError> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    match root_certificates {
        Some(path) => {
            let unreadable = || AdapterError::invalid("the sslrootcert file cannot be read as PEM certificates");
            for certificate in CertificateDer::pem_file_iter(path).map_err(|_| unreadable())? {
                roots.add(certificate.map_err(|_| unreadable())?).map_err(|_| unreadable())?;
            }
        }
        None => {
            for certificate in rustls_native_certs::load_native_certs().certs {
                // A system certificate rustls cannot use is skipped, as every TLS client does.
                let _ = roots.add(certificate);
            }
        }
    }
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|error| AdapterError::new(AdapterErrorKind::Connection, error))?
        .with_root_certificates(roots)
        .with_no_client_auth())
}

/// Quotes an identifier for PostgreSQL.
fn quote(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

fn relation_kind(kind: u8) -> &'static str {
    match kind {
        b'v' => "view",
        b'm' => "materialized view",
        b'f' => "foreign table",
        _ => "table",
    }
}

/// The plain tables of the allow-listed schemas: no view, no row-level security. It runs after
/// a read's transaction has ended, with the session's search path: every operator is named
/// with its schema, so none planted in another schema can stand in.
const PLAIN_TABLES: &str = "SELECT n.nspname::pg_catalog.text, c.relname::pg_catalog.text \
     FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid OPERATOR(pg_catalog.=) c.relnamespace \
     WHERE n.nspname OPERATOR(pg_catalog.=) ANY ($1::pg_catalog.text[]) \
     AND c.relkind OPERATOR(pg_catalog.=) ANY ('{r,p}'::pg_catalog.\"char\"[]) AND NOT c.relrowsecurity";

const POSTURE_ROLE: &str = "SELECT current_user::text, r.rolsuper, r.rolcreaterole, r.rolcreatedb, r.rolbypassrls, \
     pg_catalog.has_database_privilege(pg_catalog.current_database(), 'CREATE'), \
     pg_catalog.pg_has_role(current_user, 'pg_read_server_files', 'MEMBER') \
     OR pg_catalog.pg_has_role(current_user, 'pg_write_server_files', 'MEMBER') \
     OR pg_catalog.pg_has_role(current_user, 'pg_execute_server_program', 'MEMBER') \
     FROM pg_catalog.pg_roles r WHERE r.rolname = current_user";

/// Allow-listed schemas the role can create in, schemas where others than their owner can
/// (PUBLIC included, as before PostgreSQL 15), and tables the role can change.
const POSTURE_WRITABLE: &str = "SELECT n.nspname::text, '', 'CREATE' FROM pg_catalog.pg_namespace n \
     WHERE n.nspname = ANY($1) AND pg_catalog.has_schema_privilege(n.oid, 'CREATE') \
     UNION ALL SELECT n.nspname::text, CASE WHEN a.grantee = 0 THEN 'PUBLIC' \
     ELSE pg_catalog.pg_get_userbyid(a.grantee)::text END, 'SHARED' FROM pg_catalog.pg_namespace n \
     CROSS JOIN LATERAL pg_catalog.aclexplode(COALESCE(n.nspacl, pg_catalog.acldefault('n', n.nspowner))) a \
     WHERE n.nspname = ANY($1) AND a.privilege_type = 'CREATE' AND a.grantee <> n.nspowner \
     UNION ALL SELECT n.nspname::text, c.relname::text, 'WRITE' FROM pg_catalog.pg_class c \
     JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
     WHERE c.relkind IN ('r', 'p') AND n.nspname = ANY($1) \
     AND pg_catalog.has_table_privilege(c.oid, 'INSERT, UPDATE, DELETE, TRUNCATE') \
     ORDER BY 1, 2";

const LIST_TABLES: &str = "SELECT n.nspname::text, c.relname::text, c.relkind \
     FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
     WHERE c.relkind IN ('r', 'p', 'v', 'm', 'f') AND n.nspname = ANY($1) \
     ORDER BY 1, 2";

const DESCRIBE_COLUMNS: &str = "SELECT a.attname::text, pg_catalog.format_type(a.atttypid, a.atttypmod), \
     NOT a.attnotnull, pg_catalog.pg_get_expr(d.adbin, d.adrelid), pg_catalog.col_description(c.oid, a.attnum::int) \
     FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
     JOIN pg_catalog.pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped \
     LEFT JOIN pg_catalog.pg_attrdef d ON d.adrelid = c.oid AND d.adnum = a.attnum \
     WHERE n.nspname = $1 AND c.relname = $2 AND c.relkind IN ('r', 'p', 'v', 'm', 'f') \
     ORDER BY a.attnum";

const DESCRIBE_PRIMARY_KEY: &str = "SELECT a.attname::text \
     FROM pg_catalog.pg_index i JOIN pg_catalog.pg_class c ON c.oid = i.indrelid \
     JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
     CROSS JOIN LATERAL pg_catalog.unnest(i.indkey::int2[]) WITH ORDINALITY AS k(attnum, ord) \
     JOIN pg_catalog.pg_attribute a ON a.attrelid = c.oid AND a.attnum = k.attnum \
     WHERE n.nspname = $1 AND c.relname = $2 AND i.indisprimary \
     ORDER BY k.ord";

const DESCRIBE_FOREIGN_KEYS: &str = "SELECT con.conname::text, \
     ARRAY(SELECT a.attname::text FROM pg_catalog.unnest(con.conkey) WITH ORDINALITY AS k(attnum, ord) \
           JOIN pg_catalog.pg_attribute a ON a.attrelid = con.conrelid AND a.attnum = k.attnum ORDER BY k.ord), \
     rn.nspname::text, rc.relname::text, \
     ARRAY(SELECT a.attname::text FROM pg_catalog.unnest(con.confkey) WITH ORDINALITY AS k(attnum, ord) \
           JOIN pg_catalog.pg_attribute a ON a.attrelid = con.confrelid AND a.attnum = k.attnum ORDER BY k.ord) \
     FROM pg_catalog.pg_constraint con JOIN pg_catalog.pg_class c ON c.oid = con.conrelid \
     JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
     JOIN pg_catalog.pg_class rc ON rc.oid = con.confrelid JOIN pg_catalog.pg_namespace rn ON rn.oid = rc.relnamespace \
     WHERE con.contype = 'f' AND n.nspname = $1 AND c.relname = $2 \
     ORDER BY con.conname";

const DESCRIBE_INDEXES: &str = "SELECT ic.relname::text, i.indisunique, \
     ARRAY(SELECT pg_catalog.pg_get_indexdef(i.indexrelid, k.ord, true) \
           FROM pg_catalog.generate_series(1, i.indnkeyatts::int) AS k(ord) ORDER BY k.ord) \
     FROM pg_catalog.pg_index i JOIN pg_catalog.pg_class ic ON ic.oid = i.indexrelid \
     JOIN pg_catalog.pg_class c ON c.oid = i.indrelid JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
     WHERE n.nspname = $1 AND c.relname = $2 \
     ORDER BY ic.relname";

#[cfg(test)]
mod tests {
    use super::*;

    /// TLS is required for every form of a host on another machine unless the URL names a
    /// mode; loopback, `localhost` and Unix sockets keep libpq's default.
    #[test]
    fn tls_is_required_for_another_machine_unless_a_mode_is_named() {
        let allow = || AllowList::new(SqlDialect::Postgres, "public");
        for (url, mode, plaintext) in [
            ("postgres://u@localhost/db", SslMode::Prefer, false),
            ("postgres://u@127.0.0.1:5433/db", SslMode::Prefer, false),
            ("postgres://u@[::1]/db", SslMode::Prefer, false),
            ("postgres://u@%2Fvar%2Frun%2Fpostgresql/db", SslMode::Prefer, false),
            ("host=/var/run/postgresql dbname=db user=u", SslMode::Prefer, false),
            ("postgres://u@localhost/db?sslmode=disable", SslMode::Disable, false),
            ("postgres://u@db.example/db", SslMode::Require, false),
            ("postgres://u@10.0.0.5/db", SslMode::Require, false),
            ("postgres://u@[fd00::2]:5432/db", SslMode::Require, false),
            ("postgres://u@localhost,db.example/db", SslMode::Require, false),
            ("host=localhost hostaddr=10.0.0.5 dbname=db user=u", SslMode::Require, false),
            ("host=db.example dbname=db user=u", SslMode::Require, false),
            ("postgres://u@db.example/db?sslmode=verify-full", SslMode::Require, false),
            ("postgres://u@db.example/db?sslmode=require", SslMode::Require, false),
            ("postgres://u@db.example/db?sslmode=disable", SslMode::Disable, true),
            ("postgres://u@db.example/db?sslmode=prefer", SslMode::Prefer, true),
            ("host=db.example dbname=db user=u sslmode=disable", SslMode::Disable, true),
        ] {
            let adapter = PostgresAdapter::connect(url, allow(), PoolOptions::default()).expect(url);
            assert_eq!((adapter.connector.ssl_mode(), adapter.plaintext), (mode, plaintext), "{url}");
        }
    }

    fn numeric_bytes(weight: i16, sign: u16, scale: u16, digits: &[u16]) -> Vec<u8> {
        let mut out = Vec::new();
        out.extend_from_slice(&(digits.len() as u16).to_be_bytes());
        out.extend_from_slice(&weight.to_be_bytes());
        out.extend_from_slice(&sign.to_be_bytes());
        out.extend_from_slice(&scale.to_be_bytes());
        for digit in digits {
            out.extend_from_slice(&digit.to_be_bytes());
        }
        out
    }

    #[test]
    fn numerics_are_written_digit_for_digit() {
        assert_eq!(decode(&Type::NUMERIC, &numeric_bytes(0, 0, 0, &[0])), Some(Value::from("0")));
        assert_eq!(decode(&Type::NUMERIC, &numeric_bytes(0, 0, 2, &[12, 3400])), Some(Value::from("12.34")));
        assert_eq!(decode(&Type::NUMERIC, &numeric_bytes(-1, 0, 3, &[10])), Some(Value::from("0.001")));
        assert_eq!(decode(&Type::NUMERIC, &numeric_bytes(-2, 0x4000, 8, &[1])), Some(Value::from("-0.00000001")));
        assert_eq!(decode(&Type::NUMERIC, &numeric_bytes(2, 0, 0, &[1])), Some(Value::from("100000000")));
        assert_eq!(
            decode(&Type::NUMERIC, &numeric_bytes(1, 0, 5, &[9999, 9999, 9999, 9])),
            Some(Value::from("99999999.99990"))
        );
        assert_eq!(decode(&Type::NUMERIC, &numeric_bytes(0, 0xC000, 0, &[])), Some(Value::from("NaN")));
        assert_eq!(decode(&Type::NUMERIC, &[0, 1]), None, "truncated input is not decoded");
    }

    #[test]
    fn arrays_nest_by_dimension() {
        let mut raw = Vec::new();
        for word in [2i32, 1, 23, 2, 1, 2, 1] {
            raw.extend_from_slice(&word.to_be_bytes());
        }
        for value in [Some(1i32), None, Some(3), Some(4)] {
            match value {
                Some(value) => {
                    raw.extend_from_slice(&4i32.to_be_bytes());
                    raw.extend_from_slice(&value.to_be_bytes());
                }
                None => raw.extend_from_slice(&(-1i32).to_be_bytes()),
            }
        }
        assert_eq!(decode(&Type::INT4_ARRAY, &raw), Some(serde_json::json!([[1, null], [3, 4]])));
        assert_eq!(decode(&Type::INT4_ARRAY, &raw[..raw.len() - 1]), None, "truncated input is not decoded");
        let mut out = String::from("[1,");
        assert_eq!(
            write_value(&Type::INT4_ARRAY, &raw[..raw.len() - 1], &mut out, usize::MAX),
            Err(Unwritten::Undecodable)
        );
        assert_eq!(out, "[1,", "a value that cannot be read leaves nothing behind");
        let empty = [0i32, 0, 23].iter().flat_map(|word| word.to_be_bytes()).collect::<Vec<u8>>();
        assert_eq!(decode(&Type::INT4_ARRAY, &empty), Some(serde_json::json!([])));
        let hollow = [2i32, 0, 23, 1_000_000, 1, 0, 1].iter().flat_map(|word| word.to_be_bytes()).collect::<Vec<u8>>();
        assert_eq!(decode(&Type::INT4_ARRAY, &hollow), None, "dimensions with no elements are not expanded");
    }

    #[test]
    fn url_parameters_are_taken_out() {
        assert_eq!(take_url_parameter("postgres://h/db", "sslrootcert"), ("postgres://h/db".into(), None));
        assert_eq!(
            take_url_parameter("postgres://h/db?sslmode=require&sslrootcert=/ca.pem&x=1", "sslrootcert"),
            ("postgres://h/db?sslmode=require&x=1".into(), Some("/ca.pem".into()))
        );
        assert_eq!(
            take_url_parameter("postgres://h/db?sslrootcert=a", "sslrootcert"),
            ("postgres://h/db".into(), Some("a".into()))
        );
    }

    #[test]
    fn a_type_is_named_as_type_name_writes_it() {
        for ty in [Type::INT4, Type::INT4_ARRAY, Type::TEXT, Type::TIMESTAMPTZ_ARRAY] {
            assert!(is_type_named(&ty, &type_name(&ty)), "{ty}");
        }
        assert!(!is_type_named(&Type::INT4, "int8"));
        assert!(!is_type_named(&Type::INT4_ARRAY, "int4"));
        assert!(!is_type_named(&Type::INT4, "int4[]"));
    }

    #[test]
    fn identifiers_are_quoted() {
        assert_eq!(quote("public"), "\"public\"");
        assert_eq!(quote("we\"ird"), "\"we\"\"ird\"");
    }
}
