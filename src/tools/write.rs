//! Write tools: [`WriteTool`] and the [`WriteTx`] it writes through.
//!
//! A write tool never opens, commits or rolls back a transaction itself. The runner here checks
//! the input with [`WriteTool::validate`], then opens a transaction with the call's
//! `Evidence<Write>` (which exists only for a write tool admitted in
//! read-write mode), hands the tool `&mut WriteTx`, and then:
//!
//! - commits only if the tool returned `Ok` and no statement failed or went over the tool's
//!   declared [`MAX_AFFECTED_ROWS`](WriteTool::MAX_AFFECTED_ROWS);
//! - rolls back if the tool returned an error;
//! - abandons the transaction (cancelling what runs, closing the connection, never committing)
//!   if the tool panicked, the call was cancelled or it ran past its
//!   [`timeout`](WriteTool::timeout).
//!
//! The audit event of the call's `execute` stage records how many rows the statements
//! affected: committed if the decision is `allow`, rolled back otherwise.

use std::future::Future;
use std::sync::atomic::Ordering;
use std::time::Duration;

use futures_util::future::BoxFuture;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

use super::{Tool, ToolError};
use crate::adapter::{Adapter, AdapterError, AdapterErrorKind, Executed, SqlValue, WriteOptions, WriteTransaction};
use crate::denial::{Denial, DenialCode};
use crate::evidence::{AdmittedCall, Evidence, Write};

/// A tool that changes data. Implementing it makes the type a [`Tool`] of access class
/// [`Write`], registered like any other tool and run through the same boundary.
///
/// ```
/// use std::sync::Arc;
/// use sqlwarden::adapter::{Adapter, SqlValue};
/// use sqlwarden::tools::{WriteTool, WriteTx};
/// use sqlwarden::ToolError;
///
/// struct CloseTicket { db: Arc<dyn Adapter> }
///
/// #[derive(serde::Deserialize)]
/// #[serde(deny_unknown_fields)]
/// struct Ticket { id: i64 }
///
/// impl WriteTool for CloseTicket {
///     type Input = Ticket;
///     type Output = bool;
///     const MAX_AFFECTED_ROWS: u64 = 1;
///
///     fn name(&self) -> &str { "close_ticket" }
///     fn description(&self) -> &str { "Closes one open ticket." }
///     fn database(&self) -> &dyn Adapter { &*self.db }
///
///     async fn call(&self, tx: &mut WriteTx<'_>, ticket: Ticket) -> Result<bool, ToolError> {
///         let done = tx
///             .execute("UPDATE tickets SET status = 'closed' WHERE id = ? AND status = 'open'", &[SqlValue::Int(ticket.id)])
///             .await?;
///         Ok(done.rows_affected == 1)
///     }
/// }
/// ```
pub trait WriteTool: Send + Sync + 'static {
    /// The input, deserialized from the call's JSON arguments. Use
    /// `#[serde(deny_unknown_fields)]` so that unknown fields are refused.
    type Input: DeserializeOwned + Send;
    /// The output, serialized to JSON for the caller.
    type Output: Serialize + Send;

    /// The most rows all of one call's statements together may insert, update or delete
    /// (at least 1). A statement that takes the count past it is refused with
    /// `QUERY_REJECTED` and the transaction is rolled back.
    const MAX_AFFECTED_ROWS: u64;

    /// The tool's name (1 to 128 characters of `A-Z a-z 0-9 _ - .`).
    fn name(&self) -> &str;

    /// What the tool does, for the model.
    fn description(&self) -> &str;

    /// The JSON Schema of the input, shown to MCP clients; see [`Tool::input_schema`].
    fn input_schema(&self) -> serde_json::Map<String, Value> {
        super::any_object()
    }

    /// How long one call may take, from opening the transaction to committing it. Past it
    /// the transaction is abandoned and the call denied with `TIMEOUT`. Five seconds unless
    /// overridden.
    fn timeout(&self) -> Duration {
        Duration::from_secs(5)
    }

    /// The database the tool writes to.
    fn database(&self) -> &dyn Adapter;

    /// Checks the input before anything touches the database: an error here is the call's
    /// answer, and no transaction is opened. Accepts everything unless overridden.
    fn validate(&self, input: &Self::Input) -> Result<(), Denial> {
        let _ = input;
        Ok(())
    }

    /// Does the tool's work inside `tx`. Return `Ok` to commit, an error to roll back.
    fn call(
        &self,
        tx: &mut WriteTx<'_>,
        input: Self::Input,
    ) -> impl Future<Output = Result<Self::Output, ToolError>> + Send;
}

impl<T: WriteTool> Tool for T {
    type Access = Write;
    type Input = T::Input;
    type Output = T::Output;

    fn name(&self) -> &str {
        WriteTool::name(self)
    }

    fn description(&self) -> &str {
        WriteTool::description(self)
    }

    fn input_schema(&self) -> serde_json::Map<String, Value> {
        WriteTool::input_schema(self)
    }

    async fn call(&self, evidence: Evidence<'_, Write>, input: T::Input) -> Result<T::Output, ToolError> {
        const { assert!(T::MAX_AFFECTED_ROWS > 0, "a write tool must be allowed to affect at least one row") };
        run(self, evidence, input).await
    }
}

/// What the runner needs of a write: its bounds and its work. Every [`WriteTool`] is one, with
/// the bounds its code declares; a write tool declared in the configuration is one with the
/// bounds its entry declares.
pub(crate) trait Transactional: Send + Sync + 'static {
    type Input: Send;
    type Output: Send;

    /// The most rows the call's statements together may affect (at least 1).
    fn max_rows(&self) -> u64;
    /// Whether its statements are the SQL gate's, every table written `schema.table`
    /// ([`WriteOptions::names_qualified`]).
    fn names_qualified(&self) -> bool {
        false
    }
    fn timeout(&self) -> Duration;
    fn database(&self) -> &dyn Adapter;
    fn validate(&self, input: &Self::Input) -> Result<(), Denial>;
    fn work(
        &self,
        tx: &mut WriteTx<'_>,
        input: Self::Input,
    ) -> impl Future<Output = Result<Self::Output, ToolError>> + Send;
}

impl<T: WriteTool> Transactional for T {
    type Input = T::Input;
    type Output = T::Output;

    fn max_rows(&self) -> u64 {
        T::MAX_AFFECTED_ROWS
    }

    fn timeout(&self) -> Duration {
        WriteTool::timeout(self)
    }

    fn database(&self) -> &dyn Adapter {
        WriteTool::database(self)
    }

    fn validate(&self, input: &T::Input) -> Result<(), Denial> {
        WriteTool::validate(self, input)
    }

    fn work(&self, tx: &mut WriteTx<'_>, input: T::Input) -> impl Future<Output = Result<T::Output, ToolError>> + Send {
        WriteTool::call(self, tx, input)
    }
}

/// Runs a write: checks the input, opens the transaction, does the work in it, puts the change
/// on record and commits; rolls back or abandons it on every other path.
pub(crate) async fn run<T: Transactional>(
    tool: &T,
    evidence: Evidence<'_, Write>,
    input: T::Input,
) -> Result<T::Output, ToolError> {
    tool.validate(&input)?;
    let timeout = tool.timeout();
    // Past the time limit the work's future is dropped, and the transaction with it:
    // abandoned, never committed.
    let (tx, output) = tokio::time::timeout(timeout, work(tool, evidence, input, timeout)).await.map_err(|_| {
        ToolError::from(
            AdapterError::timed_out().with_message("the write exceeded its time limit; nothing was changed"),
        )
    })??;
    // The change is on record before it is made: no record, no commit. (A spoiled
    // transaction is not committed: `commit` rolls it back, and the execute record says so.)
    if !tx.failed
        && let Err(denial) = tx.call.record_before_commit(tx.rows_affected).await
    {
        tx.rollback().await;
        return Err(denial.into());
    }
    match tokio::time::timeout(timeout, tx.commit()).await {
        Ok(committed) => committed.map(|()| output),
        Err(_elapsed) => Err(Denial::new(DenialCode::Timeout, UNKNOWN_OUTCOME).into()),
    }
}

const UNKNOWN_OUTCOME: &str = "the database did not confirm the commit; the change may or may not have been saved";

/// Opens the transaction and runs the tool in it; on the tool's error, rolls back.
async fn work<'a, T: Transactional>(
    tool: &'a T,
    evidence: Evidence<'a, Write>,
    input: T::Input,
    timeout: Duration,
) -> Result<(WriteTx<'a>, T::Output), ToolError> {
    let call = evidence.admitted();
    let max_rows = tool.max_rows();
    let options = WriteOptions::new(timeout, max_rows).qualified(tool.names_qualified());
    let inner = tool.database().begin_write(evidence, options).await?;
    let mut tx = WriteTx { inner: Some(inner), call, max_rows, rows_affected: 0, failed: false };
    match tool.work(&mut tx, input).await {
        Ok(output) => Ok((tx, output)),
        Err(error) => {
            tx.rollback().await;
            Err(error)
        }
    }
}

/// SQL text fixed in the tool's code: a string literal, or any `&'static str`. Statements
/// built at run time (a `String`, `format!`) are not `FixedSql`; their values go in `params`.
#[diagnostic::on_unimplemented(
    message = "a statement must be a fixed string, not `{Self}`",
    label = "SQL built at run time",
    note = "write the statement as a string literal with placeholders, and pass the values as parameters"
)]
pub trait FixedSql: fixed::Sealed {
    /// The statement's text.
    fn text(self) -> &'static str;
}

impl FixedSql for &'static str {
    fn text(self) -> &'static str {
        self
    }
}

mod fixed {
    pub trait Sealed {}
    impl Sealed for &'static str {}
}

/// A write transaction, lent to a [`WriteTool`] for one call.
///
/// It runs parameterized statements whose text is fixed in the tool's code (`&'static str`;
/// values go in `params`, never into the text), counts the rows they affect against the
/// tool's [`MAX_AFFECTED_ROWS`](WriteTool::MAX_AFFECTED_ROWS), and cannot be committed,
/// kept or moved out of the call by the tool: the runner commits it when the tool succeeds.
pub struct WriteTx<'a> {
    /// `None` once committed or rolled back.
    inner: Option<Box<dyn WriteTransaction<'a> + 'a>>,
    call: &'a AdmittedCall,
    max_rows: u64,
    rows_affected: u64,
    /// A statement failed or went over the limit: the transaction can only be rolled back.
    failed: bool,
}

impl<'a> WriteTx<'a> {
    /// Runs one statement with `params` bound to its placeholders (`$1` on PostgreSQL, `?`
    /// on MySQL and SQLite) and returns what it reported.
    ///
    /// Fails with `QUERY_REJECTED` if the rows affected so far exceed the tool's maximum.
    /// After any failure the transaction is spoiled: further statements are refused and it
    /// is rolled back whatever the tool returns.
    pub fn execute<'t>(
        &'t mut self,
        statement: impl FixedSql,
        params: &'t [SqlValue],
    ) -> BoxFuture<'t, Result<Executed, AdapterError>> {
        // Boxed, so that the future's type does not name the statement's: a statement that is
        // not fixed is one error, at the call.
        Box::pin(self.execute_fixed(statement.text(), params))
    }

    /// Runs a declared write tool's statement: text the gate checked when the configuration was
    /// read, which lives as long as the process.
    pub(crate) async fn execute_declared(
        &mut self,
        statement: &'static str,
        params: &[SqlValue],
    ) -> Result<Executed, AdapterError> {
        self.execute_fixed(statement, params).await
    }

    async fn execute_fixed(&mut self, statement: &'static str, params: &[SqlValue]) -> Result<Executed, AdapterError> {
        if self.failed {
            return Err(AdapterError::of_kind(AdapterErrorKind::Database)
                .with_message("an earlier statement failed; the transaction will be rolled back"));
        }
        let inner = self.inner.as_mut().ok_or_else(|| AdapterError::invalid("the transaction has ended"))?;
        let remaining = self.max_rows - self.rows_affected;
        // Until it has succeeded, a statement spoils the transaction (also if it is dropped).
        self.failed = true;
        let executed = inner.execute(statement, params, remaining).await?;
        let reported = executed.rows_affected.max(executed.rows.len() as u64);
        self.rows_affected = self.rows_affected.saturating_add(reported);
        self.call.rows_affected.store(self.rows_affected, Ordering::Relaxed);
        if self.rows_affected > self.max_rows {
            return Err(AdapterError::of_kind(AdapterErrorKind::TooManyRows).with_message(format!(
                "the change would affect {} rows; this tool may change at most {}; nothing was changed",
                self.rows_affected, self.max_rows
            )));
        }
        self.failed = false;
        Ok(executed)
    }

    /// The rows the statements so far have affected.
    pub fn rows_affected(&self) -> u64 {
        self.rows_affected
    }

    /// The most rows this tool may affect.
    pub fn max_rows(&self) -> u64 {
        self.max_rows
    }

    /// Commits, unless a statement failed: then it rolls back and denies.
    async fn commit(mut self) -> Result<(), ToolError> {
        let Some(inner) = self.inner.take() else {
            return Err(ToolError::internal("the write transaction ended before its commit"));
        };
        if self.failed {
            // The tool swallowed a failed statement's error and reported success anyway.
            rollback(inner).await;
            return Err(Denial::new(
                DenialCode::DbError,
                "a statement failed, so the change was rolled back; nothing was changed",
            )
            .into());
        }
        inner.commit().await.map_err(|error| match error.kind() {
            AdapterErrorKind::Connection => Denial::new(DenialCode::DbError, UNKNOWN_OUTCOME).into(),
            _ => error.into(),
        })
    }

    async fn rollback(mut self) {
        if let Some(inner) = self.inner.take() {
            rollback(inner).await;
        }
    }
}

async fn rollback(inner: Box<dyn WriteTransaction<'_> + '_>) {
    if let Err(error) = inner.rollback().await {
        // The backend ends a transaction it could not roll back by closing its connection.
        tracing::warn!(%error, "could not roll back a write transaction");
    }
}

impl std::fmt::Debug for WriteTx<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WriteTx")
            .field("rows_affected", &self.rows_affected)
            .field("max_rows", &self.max_rows)
            .finish_non_exhaustive()
    }
}
