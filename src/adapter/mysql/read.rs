//! The read protocol: the session's settings and `START TRANSACTION READ ONLY` as one batch,
//! then the caller's query as one prepared statement (binary protocol, exactly one
//! statement); after the answer, on a task of its own, the read is ended: rolled back when it
//! named only base tables (which run no stored code on a read), else the connection is reset
//! (`COM_RESET_CONNECTION`), so that nothing a view's stored function set outlives the call.

use super::*;

/// The refusal of a statement whose connection failed while it ran: it is not run again.
pub(super) fn lost_while_running(cause: String) -> AdapterError {
    AdapterError::new(AdapterErrorKind::Connection, cause).with_message(
        "the connection to the database was lost while the statement ran (it may have been ended by an \
         administrator); it was not run again",
    )
}

/// What [`end_read`] needs to know of the read.
pub(super) struct AfterRead {
    /// Whether the read named base tables only (our own catalog reads do), or, when what the
    /// catalog said is not fresh, the tables it named, to ask.
    pub(super) base_only: Result<bool, (Vec<TableName>, Arc<TableKinds>)>,
    /// The statement to prepare again after a reset (only where the server's own `sql_mode`
    /// reads text as the session does: see [`ServerKind`]).
    pub(super) repeat: Option<String>,
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
pub(super) async fn end_read(mut running: Running, limit: Duration, keep: bool, after: AfterRead) {
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

/// How a read runs, besides its statement.
pub(super) struct ReadRun<'s> {
    /// At most this many rows are sent.
    pub(super) row_cap: usize,
    /// Set when the read met a large value (see [`LARGE_PACKET`]).
    pub(super) large: AtomicBool,
    /// The statement to prepare again once the connection is reset, for the next call.
    pub(super) repeat: Option<&'s str>,
    /// The tables the statement reads (`None`: our own catalog reads, which run no stored code).
    pub(super) tables: Option<&'s [TableName]>,
}

impl ReadRun<'static> {
    /// A catalog read: no row cap, nothing prepared again.
    pub(super) fn introspection() -> Self {
        ReadRun { row_cap: usize::MAX, large: AtomicBool::new(false), repeat: None, tables: None }
    }
}

pub(super) struct ReadContext<'a> {
    pub(super) sql: &'a str,
    pub(super) params: &'a [SqlValue],
    pub(super) options: ReadOptions,
    /// Set when the read met a large value (see [`LARGE_PACKET`]).
    pub(super) large: &'a AtomicBool,
}

/// Above this, a packet leaves the connection's read buffer that large for as long as the
/// connection lives (mysql_async never shrinks it): such a connection is closed rather than
/// pooled, so that the memory a large result used is given back.
pub(super) const LARGE_PACKET: usize = 1 << 20;

/// The plan of a read, the read not being run: `EXPLAIN FORMAT=JSON`, as one prepared
/// statement with the read's parameters.
pub(super) async fn plan(conn: &mut Conn, context: &ReadContext<'_>) -> Result<Value, Failure> {
    let explain = format!("EXPLAIN FORMAT=JSON {}", context.sql);
    let text: Option<String> =
        conn.exec_first(explain.as_str(), to_params(context.params)).await.map_err(Failure::MySql)?;
    let text = text.ok_or_else(|| Failure::Adapter(AdapterError::invalid("EXPLAIN returned no plan")))?;
    serde_json::from_str(&text)
        .map_err(|error| Failure::Adapter(AdapterError::new(AdapterErrorKind::Internal, error.to_string())))
}

pub(super) async fn read(conn: &mut Conn, context: &ReadContext<'_>) -> Result<QueryResult, Failure> {
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
pub(super) async fn read_rows(
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
