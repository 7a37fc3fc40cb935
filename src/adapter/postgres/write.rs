//! The write transaction a write tool runs in: begun with the read settings' search path and
//! a statement timeout, committed only when the tool succeeds, rolled back otherwise.

use super::*;

/// A write transaction on a checked-out connection. Dropped without commit or rollback, its
/// checkout cancels what runs and closes the connection, which ends the transaction unsaved.
pub(super) struct PostgresWrite {
    pub(super) checkout: Checkout,
}

impl PostgresWrite {
    /// Ends the transaction with `command`; the connection goes back to the pool only if
    /// that worked.
    pub(super) async fn finish(mut self: Box<Self>, command: &'static str) -> Result<(), AdapterError> {
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
