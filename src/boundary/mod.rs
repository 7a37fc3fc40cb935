//! The execution boundary: the typestate pipeline every tool call goes through.
//!
//! An [`Invocation`] moves through sealed states, each transition consuming it and returning
//! the next state or a [`Denial`]:
//!
//! | state | reached by | proven |
//! |---|---|---|
//! | [`Unvalidated`] | [`Boundary::invocation`] | nothing |
//! | [`Resolved`] | [`Invocation::resolve`] | the session context is present and unexpired; the tool exists; its access class |
//! | [`ModeChecked`] | [`Invocation::check_mode`] | the server mode allows that access class (read-only stops write tools here, before authorization) |
//! | [`Authorized`] | [`Invocation::authorize`] | a grant lets this identity in this tenant invoke this tool |
//! | [`Admitted`] | [`Invocation::admit`] | quota is reserved, held by a permit until the call ends |
//!
//! [`Invocation::run`] exists only on `Invocation<Admitted>`; it hands the tool [`Evidence`](crate::evidence::Evidence), the
//! only value adapter methods accept. [`Boundary::invoke`] runs the whole pipeline.
//!
//! Fail closed: an `Err` from a policy and a panic inside any check or handler become a
//! denial; every decision is audited, and a call whose audit cannot be written is denied.

pub(crate) mod state;
mod trail;

use trail::{Call, CancelRecorder, Trail};

use std::fmt;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Instant, SystemTime};

use futures_util::FutureExt;
use serde_json::Value;

pub use state::{Admitted, Authorized, ModeChecked, Resolved, State, Unvalidated};

use crate::audit::{
    AuditBatch, AuditDecision, AuditError, AuditRecord, AuditSink, AuditWriter, Origin, ReadFacts, Stage, Submitted,
};
use crate::denial::{Denial, DenialCode};
use crate::evidence::{AdmittedCall, BeforeCommit};
use crate::policy::{
    Access, Admission as QuotaAdmission, Authorizer, AuthzRequest, Capabilities, Clock, Decision, Egress,
    MAX_TOOL_NAME_LEN, Mode, QuotaDenied, QuotaEngine, QuotaKey, QuotaPolicy, QuotaRequest, SessionContext,
    SystemClock,
};
use crate::tools::ToolOutput;
use crate::tools::{ToolInfo, ToolRegistry};
use state::sealed::{Admission, Claim, Resolution, Sealed};

/// The configured boundary: registry, mode, authorizer, quotas, audit sink and clock.
pub struct Boundary {
    registry: ToolRegistry,
    mode: Mode,
    authorizer: Box<dyn Authorizer>,
    quotas: Box<dyn QuotaAdmission>,
    audit: Box<dyn AuditSink>,
    audit_failures: AtomicU64,
    clock: Arc<dyn Clock>,
}

/// Builds a [`Boundary`]. Every part has a secure default: read-only mode, no grants, the
/// default [`QuotaPolicy`], audit to stderr, the system clock.
#[must_use]
pub struct BoundaryBuilder {
    registry: ToolRegistry,
    mode: Mode,
    authorizer: Option<Box<dyn Authorizer>>,
    quotas: Option<Box<dyn QuotaAdmission>>,
    audit: Option<Box<dyn AuditSink>>,
    clock: Option<Arc<dyn Clock>>,
}

impl BoundaryBuilder {
    /// Sets the server mode (default: read-only).
    pub fn mode(mut self, mode: Mode) -> Self {
        self.mode = mode;
        self
    }

    /// Sets the authorizer (default: [`Capabilities::none`], which denies every call).
    pub fn authorizer(mut self, authorizer: impl Authorizer + 'static) -> Self {
        self.authorizer = Some(Box::new(authorizer));
        self
    }

    /// Sets the quota gate (default: a [`QuotaEngine`] with [`QuotaPolicy::default`]).
    pub fn quotas(mut self, quotas: impl QuotaAdmission + 'static) -> Self {
        self.quotas = Some(Box::new(quotas));
        self
    }

    /// Sets the audit sink (default: an [`AuditWriter`] to stderr).
    pub fn audit(mut self, sink: impl AuditSink + 'static) -> Self {
        self.audit = Some(Box::new(sink));
        self
    }

    /// Sets the clock used for expiries and, by the default quota engine, for rates.
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = Some(clock);
        self
    }

    /// Builds the boundary.
    pub fn build(self) -> Boundary {
        let clock = self.clock.unwrap_or_else(|| Arc::new(SystemClock::new()));
        Boundary {
            registry: self.registry,
            mode: self.mode,
            authorizer: self.authorizer.unwrap_or_else(|| Box::new(Capabilities::none())),
            quotas: self
                .quotas
                .unwrap_or_else(|| Box::new(QuotaEngine::with_clock(QuotaPolicy::default(), Arc::clone(&clock)))),
            audit: self.audit.unwrap_or_else(default_audit),
            audit_failures: AtomicU64::new(0),
            clock,
        }
    }
}

impl Boundary {
    /// Starts building a boundary around these tools.
    pub fn builder(registry: ToolRegistry) -> BoundaryBuilder {
        BoundaryBuilder { registry, mode: Mode::default(), authorizer: None, quotas: None, audit: None, clock: None }
    }

    /// The server mode.
    pub fn mode(&self) -> Mode {
        self.mode
    }

    /// The registered tools.
    pub fn registry(&self) -> &ToolRegistry {
        &self.registry
    }

    /// How many audit batches could not be written since the boundary was built. Each failure
    /// denied its call (or, for a call already denied or cancelled, lost its record): alert on it.
    pub fn audit_failures(&self) -> u64 {
        self.audit_failures.load(Ordering::Relaxed)
    }

    /// Waits until every audit record handed to the sink so far is written, at most `within`:
    /// for a server about to exit.
    pub fn flush_audit(&self, within: std::time::Duration) -> Result<(), AuditError> {
        self.audit.flush(within)
    }

    /// Closes the audit (its hash chain, for an [`AuditWriter`]) and waits until every record
    /// is written, at most `within`: for a server about to exit.
    pub fn close_audit(&self, within: std::time::Duration) -> Result<(), AuditError> {
        self.audit.close(within)
    }

    /// Hands a batch to the audit sink. A refusal or a panic is logged and counted at once; a
    /// batch on its way is counted by [`Self::audit_written`] if it then fails.
    fn submit_audit(&self, batch: &AuditBatch<'_>) -> Submitted {
        let submitted = catch_unwind(AssertUnwindSafe(|| self.audit.submit(batch)))
            .unwrap_or_else(|_panic| Submitted::recorded(Err(AuditError::Poisoned)));
        if let Some(error) = submitted.failure() {
            self.audit_failed(batch.tool, error);
        }
        submitted
    }

    /// Waits until a submitted batch is written; a failure is logged, counted and an internal
    /// denial, "audit unavailable".
    async fn audit_written(&self, tool: &str, submitted: Submitted) -> Result<(), Denial> {
        if submitted.has_failed() {
            // Counted when it was submitted.
            return Err(audit_unavailable());
        }
        submitted.written().await.map_err(|error| {
            self.audit_failed(tool, &error);
            audit_unavailable()
        })
    }

    fn audit_failed(&self, tool: &str, error: &AuditError) {
        self.audit_failures.fetch_add(1, Ordering::Relaxed);
        tracing::error!(tool, %error, "cannot write audit records");
    }

    /// The tools `session` may invoke now: those its grants allow and, in read-only mode, only
    /// read tools. An authorizer error or panic hides the tool.
    pub fn visible_tools(&self, session: &SessionContext) -> Vec<ToolInfo<'_>> {
        let now = self.clock.now();
        self.registry
            .iter()
            .filter(|tool| self.mode.allows(tool.access))
            .filter(|tool| {
                let request = AuthzRequest {
                    identity: session.identity(),
                    tenant: session.tenant(),
                    tool: tool.name.as_str(),
                    scopes: session.scopes(),
                    now,
                };
                matches!(
                    catch_unwind(AssertUnwindSafe(|| self.authorizer.authorize(&request))),
                    Ok(Ok(Decision::Allow))
                )
            })
            .collect()
    }

    /// A raw call, not yet validated: the session it claims, the tool name and the JSON
    /// arguments.
    pub fn invocation(
        &self,
        session: Option<Arc<SessionContext>>,
        tool: &str,
        args: Value,
    ) -> Invocation<'_, Unvalidated> {
        self.invocation_from(Origin::default(), session, tool, args)
    }

    /// [`invocation`](Self::invocation), for a call that came in as `origin` says (the
    /// transport and the request's id, written on each of its audit records).
    pub fn invocation_from(
        &self,
        origin: Origin,
        session: Option<Arc<SessionContext>>,
        tool: &str,
        args: Value,
    ) -> Invocation<'_, Unvalidated> {
        let started = Instant::now();
        Invocation {
            boundary: self,
            call: Box::new(Call {
                requested: truncated(tool),
                oversized_name: tool.chars().nth(MAX_TOOL_NAME_LEN).is_some(),
                args,
                trail: Trail::default(),
                origin,
                anchor: self.clock.now(),
                started,
                mark: started,
            }),
            proof: Claim(session),
        }
    }

    /// Runs a call through every stage, then the tool: the one entry point for callers.
    ///
    /// The quota reservation is released when the call ends: on success, on error, on a
    /// panic in the tool and when this future is dropped mid-flight.
    pub async fn invoke(
        &self,
        session: Option<Arc<SessionContext>>,
        tool: &str,
        args: Value,
    ) -> Result<ToolOutput, Denial> {
        self.invoke_from(Origin::default(), session, tool, args).await
    }

    /// [`invoke`](Self::invoke), for a call that came in as `origin` says.
    pub async fn invoke_from(
        &self,
        origin: Origin,
        session: Option<Arc<SessionContext>>,
        tool: &str,
        args: Value,
    ) -> Result<ToolOutput, Denial> {
        self.invocation_from(origin, session, tool, args)
            .resolve()?
            .check_mode()?
            .authorize()?
            .admit()
            .await?
            .run()
            .await
    }
}

impl fmt::Debug for Boundary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Boundary").field("mode", &self.mode).field("tools", &self.registry).finish_non_exhaustive()
    }
}

/// One tool call on its way through the boundary; `S` is the stage it has reached.
///
/// The states, in order: [`Unvalidated`] → [`Resolved`] ([`resolve`](Invocation::resolve)) →
/// [`ModeChecked`] ([`check_mode`](Invocation::check_mode)) → [`Authorized`]
/// ([`authorize`](Invocation::authorize)) → [`Admitted`] ([`admit`](Invocation::admit)), then
/// [`run`](Invocation::run). Each transition consumes the invocation. Fields are private,
/// nothing here is `Clone`, `Default` or `Deserialize`, and the states are sealed, so there is
/// no way to reach a state but through its transition.
#[must_use = "an invocation does nothing until it is taken through every stage and run"]
pub struct Invocation<'b, S: State> {
    boundary: &'b Boundary,
    // Boxed so that each transition moves a few words, not the whole call.
    call: Box<Call>,
    proof: <S as Sealed>::Proof,
}

impl<'b> Invocation<'b, Unvalidated> {
    /// Validates the session context (present and unexpired) and finds the tool.
    pub fn resolve(self) -> Result<Invocation<'b, Resolved>, Denial> {
        let now = self.boundary.clock.now();
        let outcome = guarded(Stage::Resolve, || {
            let session = match &self.proof.0 {
                Some(session) if !session.is_expired_at(now) => Arc::clone(session),
                Some(_) => {
                    return Err(Denial::new(DenialCode::SessionContextInvalid, "the session context has expired"));
                }
                None => return Err(Denial::new(DenialCode::SessionContextInvalid, "no valid session context")),
            };
            let unknown = || Denial::new(DenialCode::ToolNotFound, "unknown tool");
            if self.call.oversized_name {
                return Err(unknown());
            }
            let (name, tool) = self.boundary.registry.lookup(&self.call.requested).ok_or_else(unknown)?;
            Ok(Resolution { session, name: name.clone(), tool: Arc::clone(tool) })
        });
        let Invocation { boundary, mut call, proof } = self;
        match outcome {
            Ok(resolution) => {
                call.note(Stage::Resolve, None);
                Ok(Invocation { boundary, call, proof: resolution })
            }
            Err(denial) => Err(call.deny(boundary, proof.0.as_deref(), Stage::Resolve, denial)),
        }
    }
}

impl<'b> Invocation<'b, Resolved> {
    /// Checks the tool's access class against the server mode: in read-only mode a write tool
    /// stops here, before authorization is consulted.
    pub fn check_mode(self) -> Result<Invocation<'b, ModeChecked>, Denial> {
        let mode = self.boundary.mode;
        self.check(Stage::Mode, |resolution| {
            if mode.allows(resolution.tool.access()) {
                Ok(())
            } else {
                Err(Denial::new(DenialCode::ReadOnly, "this tool writes and the server is in read-only mode"))
            }
        })
    }
}

impl<'b> Invocation<'b, ModeChecked> {
    /// Asks the authorizer whether this identity in this tenant may invoke this tool. Default
    /// deny: anything but an explicit allow — a deny, an error, a panic — is a denial.
    pub fn authorize(self) -> Result<Invocation<'b, Authorized>, Denial> {
        let (authorizer, clock) = (&*self.boundary.authorizer, &*self.boundary.clock);
        self.check(Stage::Authorize, |resolution| {
            let request = AuthzRequest {
                identity: resolution.session.identity(),
                tenant: resolution.session.tenant(),
                tool: resolution.name.as_str(),
                scopes: resolution.session.scopes(),
                now: clock.now(),
            };
            let unauthorized = || Denial::new(DenialCode::Unauthorized, "not authorized to invoke this tool");
            match authorizer.authorize(&request) {
                Ok(Decision::Allow) => Ok(()),
                Ok(Decision::Deny) => Err(unauthorized()),
                Err(error) => {
                    tracing::error!(tool = request.tool, %error, "authorizer failed; denying");
                    Err(unauthorized())
                }
            }
        })
    }
}

impl<'b> Invocation<'b, Authorized> {
    /// Reserves quota for the call, then writes the call's stage decisions to the audit sink.
    /// The reservation is released when the invocation ends, however it ends.
    pub async fn admit(self) -> Result<Invocation<'b, Admitted>, Denial> {
        let outcome = {
            let key = QuotaKey {
                tenant: self.proof.session.tenant(),
                identity: self.proof.session.identity(),
                tool: self.proof.name.as_str(),
            };
            let (tool, args, quotas) = (&self.proof.tool, &self.call.args, &self.boundary.quotas);
            // The tool's weighing of its input and the quota backend are both guarded: a panic,
            // whether in the call or while it is awaited, is a denial.
            match guarded(Stage::Admit, || {
                Ok(quotas.admit(QuotaRequest { key, cost: tool.cost(args), egress: tool.egress(args) }))
            }) {
                Ok(admitting) => match AssertUnwindSafe(admitting).catch_unwind().await {
                    Ok(admitted) => admitted.map_err(quota_denial),
                    Err(_panic) => {
                        tracing::error!(stage = Stage::Admit.as_str(), "quota admission panicked; denying");
                        Err(Denial::internal())
                    }
                },
                Err(denial) => Err(denial),
            }
        };
        let Invocation { boundary, mut call, proof } = self;
        let permit = match outcome {
            Ok(permit) => permit,
            Err(denial) => return Err(call.deny(boundary, Some(&proof.session), Stage::Admit, denial)),
        };
        call.note(Stage::Admit, None);
        // Nothing runs unless its admission is on record: `run` waits for this before the tool.
        let recorded = call.submit(boundary, Some(&proof.session));
        if recorded.has_failed() {
            return Err(audit_unavailable());
        }
        Ok(Invocation { boundary, call, proof: Admission { resolution: proof, permit, recorded } })
    }
}

impl Invocation<'_, Admitted> {
    /// Runs the tool with [`Evidence`](crate::evidence::Evidence) of its access class and returns its output as JSON text.
    ///
    /// A panic in the tool becomes an internal denial. The quota permit is released when this
    /// returns or when its future is dropped.
    pub async fn run(self) -> Result<ToolOutput, Denial> {
        let Invocation { boundary, mut call, proof: Admission { resolution, permit, recorded } } = self;
        let Resolution { session, name, tool } = resolution;
        // The tool runs only once its admission is on record.
        if let Err(denial) = boundary.audit_written(&call.requested, recorded).await {
            drop(permit);
            call.note(Stage::Execute, Some(denial.code()));
            let _already_denied = call.submit(boundary, Some(&session));
            return Err(denial);
        }
        let writes = tool.access() == Access::Write;
        let (ask, asked) = if writes {
            let (ask, asked) = tokio::sync::mpsc::channel::<BeforeCommit>(1);
            (Some(ask), Some(asked))
        } else {
            (None, None)
        };
        let mut admitted = AdmittedCall {
            session,
            tool: name,
            access: tool.access(),
            mode: boundary.mode,
            rows_affected: AtomicU64::new(0),
            read: std::sync::Mutex::new(None),
            slot: Some(Arc::new(permit)),
            before_commit: ask,
        };
        let args = std::mem::take(&mut call.args);
        let mut cancelled =
            CancelRecorder { boundary, call: &admitted, origin: call.origin.clone(), started: call.mark, armed: true };
        // While the tool runs, a write may ask for its execute record to be written before it
        // commits (see `AdmittedCall::record_before_commit`); it commits only once it is.
        let execute_recorded = std::sync::atomic::AtomicBool::new(false);
        let running = AssertUnwindSafe(tool.call(&admitted, args)).catch_unwind();
        let outcome = if let Some(mut asked) = asked {
            let records = async {
                while let Some(BeforeCommit { rows, answer }) = asked.recv().await {
                    call.note(Stage::Execute, None);
                    call.trail.count_rows(Some(rows));
                    let submitted = call.submit(boundary, Some(&admitted.session));
                    let written = boundary.audit_written(admitted.tool.as_str(), submitted).await;
                    execute_recorded.store(written.is_ok(), Ordering::Relaxed);
                    let _ = answer.send(written);
                }
                std::future::pending::<()>().await;
            };
            tokio::pin!(running, records);
            tokio::select! {
                biased;
                outcome = &mut running => outcome,
                () = &mut records => unreachable!("waits forever once the tool has no more to ask"),
            }
        } else {
            running.await
        };
        cancelled.armed = false;
        drop(cancelled);
        // A call that returned is charged what its read returned (nothing, when it read
        // nothing or failed); a call that panicked keeps its whole egress reservation.
        if let (Some(slot), Ok(returned)) = (&admitted.slot, &outcome) {
            let facts = admitted.read.lock().ok().and_then(|read| read.as_ref().map(|read| (read.rows, read.bytes)));
            let (rows, bytes) = match (returned, facts) {
                (Ok(_), Some(facts)) => facts,
                _ => (0, 0),
            };
            slot.charge(Egress { rows, bytes });
        }
        // The call's own share of its quota slot. An adapter whose statement outlives the call
        // on the database keeps a share of its own until the database has stopped it.
        admitted.slot = None;

        let result = match outcome {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(error)) => Err(error.into_denial(admitted.tool.as_str(), &admitted.session)),
            Err(_panic) => {
                tracing::error!(tool = admitted.tool.as_str(), "tool panicked; denying");
                Err(Denial::internal())
            }
        };
        let code = result.as_ref().err().map(Denial::code);
        if execute_recorded.load(Ordering::Relaxed) {
            // The execute record is written; only a commit that then failed has more to say.
            if code.is_none() {
                return result;
            }
            call.note(Stage::Commit, code);
        } else {
            call.note(Stage::Execute, code);
        }
        call.trail.count_rows(admitted.rows_written());
        // A result is only returned once it is on record.
        let recorded = {
            let read = admitted.read.lock().ok();
            call.submit_with(boundary, Some(&admitted.session), read.as_ref().and_then(|read| read.as_ref()))
        };
        boundary.audit_written(admitted.tool.as_str(), recorded).await?;
        result
    }
}

impl<'b, S: State<Proof = Resolution> + Sealed> Invocation<'b, S> {
    /// A stage that only inspects what is already proven.
    fn check<N: State + Sealed<Proof = Resolution>>(
        self,
        stage: Stage,
        check: impl FnOnce(&Resolution) -> Result<(), Denial>,
    ) -> Result<Invocation<'b, N>, Denial> {
        let outcome = guarded(stage, || check(&self.proof));
        let Invocation { boundary, mut call, proof } = self;
        match outcome {
            Ok(()) => {
                call.note(stage, None);
                Ok(Invocation { boundary, call, proof })
            }
            Err(denial) => Err(call.deny(boundary, Some(&proof.session), stage, denial)),
        }
    }
}

impl<S: State> fmt::Debug for Invocation<'_, S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Invocation").field("tool", &self.call.requested).finish_non_exhaustive()
    }
}

/// The answer to a call whose audit records cannot be written.
fn audit_unavailable() -> Denial {
    Denial::new(DenialCode::Internal, "audit unavailable")
}

/// The audit sink of a boundary built without one: a writer thread to stderr, or, should no
/// thread start, a sink that refuses every batch (so every call is denied).
fn default_audit() -> Box<dyn AuditSink> {
    match AuditWriter::stderr(AuditWriter::DEFAULT_DEADLINE) {
        Ok(writer) => Box::new(writer),
        Err(error) => {
            tracing::error!(%error, "cannot start the audit writer; every call will be denied");
            Box::new(Refusing)
        }
    }
}

/// A sink that can write nothing.
struct Refusing;

impl AuditSink for Refusing {
    fn record(&self, _batch: &AuditBatch<'_>) -> Result<(), AuditError> {
        Err(AuditError::Unavailable)
    }
}

/// Runs one check; a panic inside it is an internal denial, never an allow.
fn guarded<T>(stage: Stage, check: impl FnOnce() -> Result<T, Denial>) -> Result<T, Denial> {
    catch_unwind(AssertUnwindSafe(check)).unwrap_or_else(|_panic| {
        tracing::error!(stage = stage.as_str(), "check panicked; denying");
        Err(Denial::internal())
    })
}

fn quota_denial(denied: QuotaDenied) -> Denial {
    match denied {
        QuotaDenied::Rate { retry_after } => Denial::new(
            DenialCode::RateLimited,
            format!("rate limit reached; retry in {} ms", retry_after.as_millis().max(1)),
        ),
        QuotaDenied::Concurrency => {
            Denial::new(DenialCode::RateLimited, "too many calls in flight; retry when one finishes")
        }
        QuotaDenied::KeyTableFull => Denial::new(DenialCode::RateLimited, "quota capacity reached; retry later"),
        QuotaDenied::Cost { retry_after } => Denial::new(
            DenialCode::RateLimited,
            format!("cost quota reached; retry in {} ms", retry_after.as_millis().max(1)),
        ),
        QuotaDenied::CostTooHigh { cost } => Denial::new(
            DenialCode::RateLimited,
            format!("this call costs {cost}, more than the cost quota allows at once; ask for fewer rows"),
        ),
        QuotaDenied::Budget { budget, refills_in } => Denial::new(
            DenialCode::BudgetExhausted,
            format!(
                "the hourly {budget} budget is spent (or held by calls in flight); it refills in {} s",
                refills_in.as_secs().max(1)
            ),
        ),
        QuotaDenied::Unavailable(error) => {
            tracing::error!(%error, "the quota store did not answer; denying");
            Denial::new(DenialCode::QuotaUnavailable, "quotas cannot be checked right now; retry later")
        }
        other => {
            tracing::error!(error = %other, "quota evaluation failed; denying");
            Denial::internal()
        }
    }
}

/// The requested tool name as the audit log keeps it: at most 128 characters.
fn truncated(tool: &str) -> Box<str> {
    match tool.char_indices().nth(MAX_TOOL_NAME_LEN) {
        Some((cut, _)) => tool[..cut].into(),
        None => tool.into(),
    }
}
