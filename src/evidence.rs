//! Admitted evidence: the only key to the database, and typed by access class.

use std::fmt;
use std::marker::PhantomData;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::audit::ReadFacts;
use crate::denial::{Denial, DenialCode};
use crate::policy::{Access, Allowance, Mode, QuotaPermit, SessionContext, ToolName};

/// An access class at the type level: [`Read`] or [`Write`]. Sealed.
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not an access class",
    label = "use sqlwarden::Read or sqlwarden::Write",
    note = "access classes are sealed: a tool reads or writes, nothing else"
)]
pub trait AccessClass: sealed::Sealed + Send + Sync + 'static {
    /// The runtime access class this type stands for.
    const ACCESS: Access;
}

/// The access class of tools that only read.
#[derive(Debug)]
pub enum Read {}
/// The access class of tools that may change data.
#[derive(Debug)]
pub enum Write {}

impl AccessClass for Read {
    const ACCESS: Access = Access::Read;
}
impl AccessClass for Write {
    const ACCESS: Access = Access::Write;
}

mod sealed {
    #[diagnostic::on_unimplemented(
        message = "`{Self}` is not an access class",
        label = "use sqlwarden::Read or sqlwarden::Write",
        note = "access classes are sealed: a tool reads or writes, nothing else"
    )]
    pub trait Sealed {}
    impl Sealed for super::Read {}
    impl Sealed for super::Write {}
}

/// Proof that this call passed every stage of the boundary, for a tool of access class `A`.
///
/// A tool's handler receives it; every [`Adapter`](crate::adapter::Adapter) method that
/// touches a database takes it **by value**, so it can be spent once. It borrows the admitted
/// invocation, so it cannot outlive the call (nor be moved into a spawned task), and it has no
/// public constructor: it exists only because the boundary admitted the call.
/// `Evidence<'_, Write>` exists only for a write tool admitted in read-write mode.
pub struct Evidence<'a, A: AccessClass> {
    call: &'a AdmittedCall,
    _access: PhantomData<fn() -> A>,
}

/// The part of an admitted invocation a handler may see.
pub(crate) struct AdmittedCall {
    pub(crate) session: Arc<SessionContext>,
    pub(crate) tool: ToolName,
    pub(crate) access: Access,
    pub(crate) mode: Mode,
    /// Rows a write tool's statements have affected so far, for the audit.
    pub(crate) rows_affected: AtomicU64,
    /// What a read ran and returned, for the audit: set by the tool that ran it, with the
    /// query's fingerprint and tables before it runs and what it returned after.
    pub(crate) read: std::sync::Mutex<Option<ReadFacts>>,
    /// The call's quota slot, shared with whatever must keep it after the call returns
    /// ([`Evidence::hold_slot`]); the boundary lets go of its own share when the tool returns.
    pub(crate) slot: Option<Arc<QuotaPermit>>,
    /// Where a write asks for its execute record to be written before it commits (see
    /// [`AdmittedCall::record_before_commit`]).
    pub(crate) before_commit: Option<tokio::sync::mpsc::Sender<BeforeCommit>>,
}

/// A write's request to the boundary: write the call's execute record (allowed, `rows`
/// affected) now, and answer once it is on record.
pub(crate) struct BeforeCommit {
    pub(crate) rows: u64,
    pub(crate) answer: tokio::sync::oneshot::Sender<Result<(), Denial>>,
}

impl AdmittedCall {
    /// Writes the call's execute record before its transaction commits, and waits until it
    /// is on record. An error (the audit cannot be written, or no boundary listens) means the
    /// write must not commit: fail closed.
    pub(crate) async fn record_before_commit(&self, rows: u64) -> Result<(), Denial> {
        let unavailable = || Denial::new(DenialCode::Internal, "audit unavailable");
        let ask = self.before_commit.as_ref().ok_or_else(unavailable)?;
        let (answer, answered) = tokio::sync::oneshot::channel();
        ask.send(BeforeCommit { rows, answer }).await.map_err(|_| unavailable())?;
        answered.await.unwrap_or_else(|_| Err(unavailable()))
    }

    /// Notes what the call's read ran or returned, for its execute record.
    pub(crate) fn note_read(&self, update: impl FnOnce(&mut Option<ReadFacts>)) {
        if let Ok(mut read) = self.read.lock() {
            update(&mut read);
        }
    }

    /// For a write tool, the rows its statements affected; `None` for a read tool.
    pub(crate) fn rows_written(&self) -> Option<u64> {
        (self.access == Access::Write).then(|| self.rows_affected.load(Ordering::Relaxed))
    }
}

impl<'a, A: AccessClass> Evidence<'a, A> {
    /// The only constructor. It re-checks what the pipeline proved, failing closed should the
    /// registry ever hand a tool evidence of another class.
    pub(crate) fn new(call: &'a AdmittedCall) -> Option<Self> {
        let consistent = call.access == A::ACCESS && call.mode.allows(A::ACCESS);
        consistent.then_some(Evidence { call, _access: PhantomData })
    }

    /// The session the call runs in.
    pub fn session(&self) -> &'a SessionContext {
        &self.call.session
    }

    /// The tool being run.
    pub fn tool(&self) -> &'a ToolName {
        &self.call.tool
    }

    /// Keeps the call's quota slot (its place among the calls in flight) taken until the
    /// returned hold is dropped, even after the call has returned: for a backend whose
    /// statement may outlive the call on the database (a statement the database cannot stop at
    /// once), so that the caller is held to its concurrency limit until the database has really
    /// stopped. It carries no authority; it only delays the slot's release.
    pub fn hold_slot(&self) -> SlotHold {
        SlotHold(self.call.slot.clone())
    }

    /// What the call may return under the egress budgets (`[quotas] rows_per_hour`,
    /// `bytes_per_hour`): reserved for it when it was admitted, and charged, less what it did not
    /// return, when it ends. A read returns no more: fewer rows, marked truncated.
    pub fn allowance(&self) -> Allowance {
        self.call.slot.as_ref().map(|slot| slot.allowance()).unwrap_or_default()
    }

    /// The admitted call this evidence stands for.
    pub(crate) fn admitted(&self) -> &'a AdmittedCall {
        self.call
    }
}

/// A share of an admitted call's quota slot: the slot is released when the call has returned
/// and every hold is dropped. See [`Evidence::hold_slot`].
#[must_use = "dropping the hold lets go of the slot at once"]
pub struct SlotHold(Option<Arc<QuotaPermit>>);

impl SlotHold {
    /// A hold on nothing, for work that has no call's slot to keep.
    pub fn none() -> Self {
        SlotHold(None)
    }

    /// Another hold on the same slot.
    pub fn share(&self) -> Self {
        SlotHold(self.0.clone())
    }
}

impl fmt::Debug for SlotHold {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.0.is_some() { "SlotHold" } else { "SlotHold(none)" })
    }
}

impl<A: AccessClass> fmt::Debug for Evidence<'_, A> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Evidence").field("tool", &self.call.tool).field("access", &A::ACCESS).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn call(access: Access, mode: Mode) -> AdmittedCall {
        let session = SessionContext::builder().identity("ada").tenant("acme").bind().expect("valid");
        AdmittedCall {
            session: Arc::new(session),
            tool: ToolName::new("t").expect("valid"),
            access,
            mode,
            rows_affected: AtomicU64::new(0),
            read: std::sync::Mutex::new(None),
            slot: None,
            before_commit: None,
        }
    }

    /// With no boundary listening, a write cannot have its record written, so it may not
    /// commit: fail closed.
    #[tokio::test]
    async fn a_record_before_commit_with_no_boundary_listening_is_refused() {
        let call = call(Access::Write, Mode::ReadWrite);
        let refused = call.record_before_commit(1).await.expect_err("nothing listens");
        assert_eq!((refused.code(), refused.message()), (DenialCode::Internal, "audit unavailable"));
        let (ask, asked) = tokio::sync::mpsc::channel(1);
        drop(asked);
        let call = AdmittedCall { before_commit: Some(ask), ..call };
        assert!(call.record_before_commit(1).await.is_err(), "the boundary stopped listening");
    }

    #[test]
    fn evidence_matches_the_admitted_access_class_only() {
        for mode in [Mode::ReadOnly, Mode::ReadWrite] {
            let read = call(Access::Read, mode);
            assert!(Evidence::<Read>::new(&read).is_some());
            assert!(Evidence::<Write>::new(&read).is_none(), "a read call never yields write evidence");
        }
        let write = call(Access::Write, Mode::ReadWrite);
        assert!(Evidence::<Write>::new(&write).is_some());
        assert!(Evidence::<Read>::new(&write).is_none(), "evidence is of exactly the declared class");
    }

    #[test]
    fn write_evidence_needs_read_write_mode() {
        assert!(Evidence::<Write>::new(&call(Access::Write, Mode::ReadOnly)).is_none());
    }
}
