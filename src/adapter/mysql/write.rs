//! The write transaction a write tool runs in; the connection is reset after it, so that no
//! variable or setting a statement left outlives the call.

use super::*;

/// A write transaction. Dropped without commit or rollback (a panic, a cancelled call), its
/// connection is stopped from another one (see [`Running`]) and closed, never returned to the
/// pool inside its transaction: the next caller's `START TRANSACTION` would commit it.
pub(super) struct MySqlWrite {
    /// `None` once ended.
    pub(super) running: Option<Running>,
}

impl MySqlWrite {
    pub(super) fn conn(&mut self) -> Result<&mut Conn, AdapterError> {
        self.running.as_mut().map(Running::conn).ok_or_else(|| AdapterError::invalid("the transaction has ended"))
    }

    /// Ends the transaction with `command`; the connection goes back to the pool only if
    /// that worked.
    pub(super) async fn finish(mut self: Box<Self>, command: &'static str) -> Result<(), AdapterError> {
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
