//! PostgreSQL through tokio-postgres, pooled by deadpool.
//!
//! | file | what |
//! |---|---|
//! | `mod.rs` | the adapter: its pool, and the [`Adapter`] methods |
//! | `read.rs` | the read protocol and its pipelining contract |
//! | `write.rs` | the write transaction |
//! | `decode.rs` | parameters in, values out as JSON text |
//! | `error.rs` | failures, classified without values |
//! | `tls.rs` | which hosts need TLS, and the certificate verifier |
//! | `connect.rs` | connections: the TLS handshake, and every message from the server checked against the result cap before it is read |
//! | `catalog.rs` | introspection and posture queries |

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
    Posture, QueryPlan, QueryResult, ReadOptions, ResultColumn, SqlValue, TableDescription, TableSummary, WriteOptions,
    WriteTransaction,
};
use super::{LONG_VALUE_PIECE, RowCollector, UrlParameters, ensure_runnable};
use crate::evidence::{Evidence, Read, SlotHold, Write};
use crate::json;
use crate::sql::{AllowList, SqlDialect, TableName, ValidatedQuery};

mod catalog;
mod connect;
mod decode;
mod error;
mod read;
mod tls;
mod write;

use catalog::*;
use decode::*;
use error::*;
use read::*;
use tls::*;
use write::*;

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
        let parameters = UrlParameters::take(url, &["sslrootcert", "sslmode"]);
        let root_certificates = parameters.get("sslrootcert");
        // Certificates are always verified in full, so libpq's verify-ca and verify-full are
        // what require means here.
        let (url, named_mode) = match parameters.get("sslmode") {
            Some(mode) => {
                let mode = if matches!(mode, "verify-ca" | "verify-full") { "require" } else { mode };
                let base = &parameters.url;
                (format!("{base}{}sslmode={mode}", if base.contains('?') { '&' } else { '?' }), true)
            }
            None => (parameters.url.clone(), false),
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
        let tls = tls_config(root_certificates)?;
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
    /// A read's plan, the read not being run (see [`read::plan`]).
    async fn plan(
        &self,
        hold: SlotHold,
        query: &ValidatedQuery,
        params: &[SqlValue],
        options: ReadOptions,
    ) -> Result<QueryPlan, AdapterError> {
        let context = ReadContext { sql: query.sql(), params, options, shapes: &self.shapes };
        let plan = self
            .in_read_transaction(hold, options.timeout, Some(query.tables()), &context, |tx, context| {
                Box::pin(read::plan(tx, context))
            })
            .await?;
        let (cost, rows) = super::postgres_estimates(&plan);
        Ok(QueryPlan { plan, cost, rows })
    }

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
            if options.plan_limit.is_set() {
                let plan = self.plan(evidence.hold_slot(), query, params, options).await?;
                options.plan_limit.check(&plan)?;
            }
            let context = ReadContext { sql: query.sql(), params, options, shapes: &self.shapes };
            let hold = evidence.hold_slot();
            let tables = Some(query.tables());
            self.in_read_transaction(hold, options.timeout, tables, &context, |tx, context| Box::pin(read(tx, context)))
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
            self.plan(evidence.hold_slot(), query, params, options).await
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
                    rule: None,
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
            Ok(super::with_column_rules(description, &self.allow))
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
            let settings = if options.names_qualified() { READ_SETTINGS } else { &self.settings_prefix };
            let begin = format!(
                "BEGIN READ WRITE; {settings}{millis}; SET LOCAL idle_in_transaction_session_timeout = {}",
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
