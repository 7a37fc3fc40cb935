//! The read protocol: every read is one read-only transaction, pipelined into one or two
//! round trips.
//!
//! Every read runs in `START TRANSACTION READ ONLY` with `SET LOCAL statement_timeout` and
//! `SET LOCAL search_path = pg_catalog, pg_temp`, through the extended protocol only (bound
//! parameters, never caller text in a simple query), from a cursor that returns at most
//! `limit + 1` rows, and the transaction is always rolled back.
//!
//! # The pipelining contract
//!
//! A read's requests leave together, so that it costs two round trips (the begin, the query's
//! description and the cursor's declaration in one write; the fetch and the rollback in the
//! next), or one when the query's description is fresh in [`Shapes`]. This rests on:
//!
//! 1. tokio-postgres sends a request when its future is first polled, and a connection answers
//!    its requests in the order they were sent;
//! 2. `futures_util::future::join3` and `join4` poll their futures in argument order, so the
//!    requests of one join leave in that order, in one write;
//! 3. our rule: [`ReadTx::begin`] is the first future of every join, and the query runs only
//!    through a cursor (`DECLARE … CURSOR`), which PostgreSQL accepts only inside a transaction
//!    block. So when the begin fails, the declaration fails too, the query does not run, and
//!    no cursor is left.
//!
//! Reorder a join, or run the query other than through the cursor, and a read whose begin
//! failed could run outside its read-only transaction:
//! `a_read_whose_begin_fails_runs_nothing_and_leaves_no_cursor` fails when either happens.
//!
//! # Ending a read
//!
//! The client enforces the timeout too: when the deadline passes, or the caller's future is
//! dropped, the query is cancelled on the server and the connection is discarded, never
//! reused; a connection goes back to the pool only once its transaction has ended. Before it
//! is discarded, the connection is asked for one more answer, which the server gives only once
//! it has stopped the statement: some work (functions over large constants, folded while
//! planning) ignores a cancel until it is done, and the call's quota slot stays taken until
//! then.
//!
//! A connection that turns out dead when the transaction begins (the server restarted since it
//! was pooled) is replaced and the read tried again; once the statement was sent it is never
//! run again, whatever happens to it (`pg_terminate_backend` included).

use super::*;

/// Prints a value of a type with no decoder here as the server prints it: `format('%s', …)`
/// calls the type's output function, as `psql` shows it. A cast to text would not do: for
/// `inet` it is a function of its own, which adds the `/32` the output leaves out.
pub(super) const PRINT: &str = "SELECT pg_catalog.format('%s', $1)";

/// The settings of every read, ending with the statement timeout's `=`.
///
/// The search path holds only the system catalog, and the temporary schema last: every table
/// a read names is written out with its schema by the gate, and no function, operator or type
/// can be found anywhere else. With a user schema on the path, whoever may create objects in
/// it could plant `public.lower(varchar)`, which PostgreSQL prefers to `pg_catalog.lower(text)`
/// for a `varchar` argument (an exact match beats an implicit cast, whatever the path's order:
/// CVE-2018-1058), and run code of their own in every read that calls `lower`.
pub(super) const READ_SETTINGS: &str = "SET LOCAL search_path = pg_catalog, pg_temp; SET LOCAL statement_timeout = ";

/// A read-only transaction on one connection, begun by the work inside it so that the begin
/// can share a message with the work's first requests. It knows whether it may be open, so
/// that it is always ended before its connection is reused.
pub(super) struct ReadTx<'c> {
    pub(super) client: &'c tokio_postgres::Client,
    /// `START TRANSACTION READ ONLY` and the `SET LOCAL`s, as one simple query.
    pub(super) begin: &'c str,
    pub(super) open: AtomicBool,
}

impl<'c> ReadTx<'c> {
    /// Begins the transaction and returns the client to run the work on. Requests sent after
    /// this one's first poll run inside the transaction (or fail, if it did not begin).
    pub(super) async fn begin(&self) -> Result<&'c tokio_postgres::Client, Failure> {
        self.open.store(true, Ordering::Release);
        self.client.batch_execute(self.begin).await.map_err(|error| {
            if is_connection_failure(&error) { Failure::NotBegun(error) } else { Failure::Postgres(error) }
        })?;
        Ok(self.client)
    }

    pub(super) fn is_open(&self) -> bool {
        self.open.load(Ordering::Acquire)
    }

    /// Rolls the transaction back, if it may be open.
    pub(super) async fn end(&self) -> Result<(), Failure> {
        if self.is_open() {
            self.client.batch_execute("ROLLBACK").await.map_err(Failure::Postgres)?;
            self.open.store(false, Ordering::Release);
        }
        Ok(())
    }
}

/// A pooled connection in use. Unless released or discarded, dropping it stops whatever
/// statement the connection runs (see [`Checkout::stop`]), then closes the connection instead
/// of returning it to the pool: a cancel request names only the server process, so a reused
/// connection could lose another caller's query to it.
pub(super) struct Checkout {
    pub(super) object: Option<Object>,
    pub(super) connector: Arc<Connector>,
    pub(super) side: Arc<tokio::sync::Semaphore>,
    /// The call's quota slot, kept until an abandoned statement has stopped.
    pub(super) hold: Option<SlotHold>,
}

impl Checkout {
    pub(super) fn new(
        object: Object,
        connector: Arc<Connector>,
        side: Arc<tokio::sync::Semaphore>,
        hold: SlotHold,
    ) -> Self {
        Checkout { object: Some(object), connector, side, hold: Some(hold) }
    }

    pub(super) fn client(&mut self) -> &mut Object {
        // The object is taken out only on release, discard or drop, after which the checkout is
        // never used again.
        self.object.as_mut().expect("a checkout holds its connection until it ends")
    }

    /// Whether the connection was failed because a message from the server was over the limit.
    pub(super) fn refused_a_large_message(&self) -> bool {
        self.object.as_ref().is_some_and(|object| object.refused_a_large_message())
    }

    /// Returns the connection to the pool: its work ended normally. One that read a large
    /// message is closed instead, so that its read buffer, as large, is freed.
    pub(super) fn release(&mut self) {
        self.hold = None;
        if let Some(object) = self.object.take()
            && object.holds_a_large_buffer()
        {
            drop(Object::take(object));
        }
    }

    /// Closes the connection without cancelling anything (it is dead already, or idle),
    /// handing back the slot hold.
    pub(super) fn discard(&mut self) -> SlotHold {
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
    pub(super) async fn stop(
        object: Object,
        connector: Arc<Connector>,
        side: Arc<tokio::sync::Semaphore>,
        hold: SlotHold,
    ) {
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
pub(super) struct ReadContext<'a> {
    pub(super) sql: &'a str,
    pub(super) params: &'a [SqlValue],
    pub(super) options: ReadOptions,
    pub(super) shapes: &'a Shapes,
}

/// The plan of a read, the read not being run: `EXPLAIN (FORMAT JSON)`, without `ANALYZE`,
/// in the read's own transaction and settings. The begin is awaited before the `EXPLAIN` is
/// sent, so nothing is planned outside the transaction.
pub(super) async fn plan(tx: &ReadTx<'_>, context: &ReadContext<'_>) -> Result<Value, Failure> {
    let client = tx.begin().await?;
    let explain = format!("EXPLAIN (FORMAT JSON) {}", context.sql);
    let values: Vec<Param<'_>> = context.params.iter().map(Param).collect();
    let typed: Vec<(&(dyn ToSql + Sync), Type)> =
        values.iter().map(|value| (value as &(dyn ToSql + Sync), UNSPECIFIED.clone())).collect();
    let rows = client.query_typed(&explain, &typed).await.map_err(Failure::Postgres)?;
    let row = rows.first().ok_or_else(|| Failure::Adapter(AdapterError::invalid("EXPLAIN returned no plan")))?;
    let Raw(raw) = row.try_get(0).map_err(|error| Failure::Adapter(decode_failure(error)))?;
    serde_json::from_slice(raw.unwrap_or_default())
        .map_err(|error| Failure::Adapter(AdapterError::new(AdapterErrorKind::Internal, error.to_string())))
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
pub(super) struct Shapes(std::sync::Mutex<std::collections::HashMap<Box<str>, Shape>>);

pub(super) struct Shape {
    pub(super) columns: Vec<ResultColumn>,
    pub(super) params: usize,
    pub(super) learned: Instant,
}

impl Shapes {
    const CAPACITY: usize = 256;
    const MAX_TEXT_BYTES: usize = 4096;
    const FRESH_FOR: Duration = Duration::from_secs(1);

    pub(super) fn get(&self, sql: &str, params: usize) -> Option<Vec<ResultColumn>> {
        let shapes = self.0.lock().ok()?;
        let shape = shapes.get(sql)?;
        (shape.params == params && shape.learned.elapsed() < Self::FRESH_FOR).then(|| shape.columns.clone())
    }

    /// Keeps the description of `statement` if every column qualifies.
    pub(super) fn learn(&self, sql: &str, statement: &Statement, columns: &[ResultColumn]) {
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

    pub(super) fn forget(&self, sql: &str) {
        if let Ok(mut shapes) = self.0.lock() {
            shapes.remove(sql);
        }
    }
}

/// The cursor a read fetches from; it lives only as long as its transaction.
pub(super) const CURSOR: &str = "sqlwarden_rows";

/// A parameter type of 0: the server infers it, and parses the text it is sent as that type.
pub(super) static UNSPECIFIED: std::sync::LazyLock<Type> =
    std::sync::LazyLock::new(|| Type::new("unknown".to_owned(), 0, Kind::Pseudo, "pg_catalog".to_owned()));

/// The read itself. The first message begins the transaction, describes the query (its
/// parameters and columns) and declares a cursor over it; the second fetches at most
/// `limit + 1` rows and, when every column has a decoder here, rolls back. A query whose
/// description is fresh in [`Shapes`] sends all of it, fetch and rollback included, in one
/// message. The query runs only through the cursor, and a cursor exists only inside a
/// transaction block: if the begin failed, nothing ran.
pub(super) async fn read(tx: &ReadTx<'_>, context: &ReadContext<'_>) -> Result<QueryResult, Failure> {
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
pub(super) struct Pending {
    pub(super) at: std::ops::Range<usize>,
    pub(super) ty: Type,
    pub(super) raw: Vec<u8>,
}

/// What a fetch brought: the rows, whether there were more, the values PostgreSQL must print,
/// and the columns as the rows describe them, when that differs from the description expected.
pub(super) struct Fetched {
    pub(super) rows: RowCollector,
    pub(super) truncated: bool,
    pub(super) pending: Vec<Pending>,
    pub(super) changed: Option<Vec<ResultColumn>>,
}

/// Fetches from the cursor, writing rows as they arrive; the first row's description is
/// checked against `expected`, when there is one.
pub(super) async fn collect_rows(
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

#[cfg(test)]
mod tests {
    use super::*;

    /// A connection to the test server, or `None` (the test is skipped) when there is none and
    /// none is required (`SQLWARDEN_REQUIRE_DB`).
    async fn client() -> Option<tokio_postgres::Client> {
        let url = std::env::var("SQLWARDEN_TEST_POSTGRES_URL")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned());
        let url = format!("{url}{}sslmode=disable", if url.contains('?') { '&' } else { '?' });
        match tokio_postgres::connect(&url, tokio_postgres::NoTls).await {
            Ok((client, connection)) => {
                tokio::spawn(connection);
                Some(client)
            }
            Err(error) => {
                assert!(std::env::var_os("SQLWARDEN_REQUIRE_DB").is_none(), "PostgreSQL is required: {error}");
                eprintln!("skipped: PostgreSQL is not reachable");
                None
            }
        }
    }

    async fn count(client: &tokio_postgres::Client, sql: &str) -> i64 {
        client.query_one(sql, &[]).await.expect("counts").get(0)
    }

    /// The pipelining contract (see the module documentation): when the begin fails, the
    /// query, sent in the same write, does not run, whether its description is known (one
    /// write: begin, declare, fetch, rollback) or not (begin, describe, declare).
    #[tokio::test]
    async fn a_read_whose_begin_fails_runs_nothing_and_leaves_no_cursor() {
        let Some(client) = client().await else { return };
        let schema = format!("sqlwarden_pipeline_{}", std::process::id());
        let effects = format!("SELECT count(*) FROM {schema}.effects");
        client
            .batch_execute(&format!(
                "DROP SCHEMA IF EXISTS {schema} CASCADE; CREATE SCHEMA {schema}; \
                 CREATE TABLE {schema}.effects (n int); \
                 CREATE FUNCTION {schema}.effect() RETURNS int LANGUAGE sql \
                 AS 'INSERT INTO {schema}.effects VALUES (1) RETURNING n'"
            ))
            .await
            .expect("fixture");
        // The function has an effect wherever a transaction lets it: here, in autocommit.
        client.batch_execute(&format!("SELECT {schema}.effect()")).await.expect("runs");
        assert_eq!(count(&client, &effects).await, 1, "the control: run outside a read, the function writes");
        client.batch_execute(&format!("DELETE FROM {schema}.effects")).await.expect("reset");

        let sql = format!("SELECT {schema}.effect()");
        let options = ReadOptions {
            limit: 10,
            timeout: Duration::from_secs(5),
            max_bytes: 1 << 20,
            budget_bytes: None,
            plan_limit: Default::default(),
        };
        let shapes = Shapes::default();
        let failing = ReadTx { client: &client, begin: "SELECT 1/0", open: AtomicBool::new(false) };
        let context = ReadContext { sql: &sql, params: &[], options, shapes: &shapes };

        // Unknown description: begin, describe and declare leave together.
        assert!(read(&failing, &context).await.is_err());
        let _ = failing.end().await;
        // A real read-only transaction, so that the description becomes known (the engine
        // refuses the function's insert there).
        let real = ReadTx { client: &client, begin: "START TRANSACTION READ ONLY", open: AtomicBool::new(false) };
        assert!(read(&real, &context).await.is_err(), "a read-only transaction refuses the insert");
        let _ = real.end().await;
        let _ = client.batch_execute("ROLLBACK").await;
        assert!(shapes.get(&sql, 0).is_some(), "the description is known now");
        // Known description: begin, declare, fetch and rollback leave in one write.
        let failing = ReadTx { client: &client, begin: "SELECT 1/0", open: AtomicBool::new(false) };
        assert!(read(&failing, &context).await.is_err());
        let _ = failing.end().await;

        assert_eq!(count(&client, &effects).await, 0, "the query ran outside a read-only transaction");
        let cursors = format!("SELECT count(*) FROM pg_catalog.pg_cursors WHERE name = '{CURSOR}'");
        assert_eq!(count(&client, &cursors).await, 0, "a cursor was left");
        client.batch_execute(&format!("DROP SCHEMA {schema} CASCADE")).await.expect("cleanup");
    }
}
