//! The record of one call on its way: the decisions not yet written, and how they reach the
//! audit sink (with a `cancelled` record if the call is dropped while its tool runs).

use super::*;

pub(super) struct Call {
    /// The tool name as asked, cut to [`MAX_TOOL_NAME_LEN`] characters for the audit log.
    pub(super) requested: Box<str>,
    /// The name as asked was longer than any tool name can be, so it names no tool.
    pub(super) oversized_name: bool,
    pub(super) args: Value,
    /// Stage decisions not yet written to the audit sink.
    pub(super) trail: Trail,
    /// How the call came in, for every record.
    pub(super) origin: Origin,
    /// The wall-clock time when the call was created; record timestamps are this plus the
    /// monotonic time since `started`. Decisions read the clock afresh.
    pub(super) anchor: SystemTime,
    pub(super) started: Instant,
    /// When the previous decision was made: a stage's duration runs from here.
    pub(super) mark: Instant,
}

impl Call {
    /// Records a decision made now. Its duration runs from the previous decision: through
    /// [`Boundary::invoke`] the stages run back to back, so that is the stage's own time.
    pub(super) fn note(&mut self, stage: Stage, code: Option<DenialCode>) {
        let decided = Instant::now();
        self.trail.push(AuditRecord {
            timestamp: self.anchor + decided.duration_since(self.started),
            stage,
            decision: if code.is_some() { AuditDecision::Deny } else { AuditDecision::Allow },
            code,
            duration: decided.duration_since(self.mark),
            rows_affected: None,
        });
        self.mark = decided;
    }

    /// Records a denial and hands the trail to the audit sink. The call is denied either way;
    /// a batch that cannot be written is logged and counted.
    pub(super) fn deny(
        &mut self,
        boundary: &Boundary,
        session: Option<&SessionContext>,
        stage: Stage,
        denial: Denial,
    ) -> Denial {
        self.note(stage, Some(denial.code()));
        let _already_denied = self.submit(boundary, session);
        denial
    }

    /// Hands the pending stage records to the audit sink.
    pub(super) fn submit(&mut self, boundary: &Boundary, session: Option<&SessionContext>) -> Submitted {
        self.submit_with(boundary, session, None)
    }

    /// Hands the pending stage records to the audit sink, with what the call read.
    pub(super) fn submit_with(
        &mut self,
        boundary: &Boundary,
        session: Option<&SessionContext>,
        read: Option<&ReadFacts>,
    ) -> Submitted {
        let batch = AuditBatch {
            session,
            tool: &self.requested,
            records: self.trail.as_slice(),
            read,
            origin: Some(&self.origin),
        };
        let submitted = boundary.submit_audit(&batch);
        self.trail.clear();
        submitted
    }
}

/// The decisions of one call not yet written: at most one per stage, kept inline.
pub(super) struct Trail {
    pub(super) records: [AuditRecord; 5],
    pub(super) len: usize,
}

impl Default for Trail {
    fn default() -> Self {
        const BLANK: AuditRecord = AuditRecord {
            timestamp: SystemTime::UNIX_EPOCH,
            stage: Stage::Resolve,
            decision: AuditDecision::Deny,
            code: None,
            duration: std::time::Duration::ZERO,
            rows_affected: None,
        };
        Trail { records: [BLANK; 5], len: 0 }
    }
}

impl Trail {
    pub(super) fn push(&mut self, record: AuditRecord) {
        // A call makes at most one decision per stage, and each batch is written and cleared
        // before the next stage, so there is always room.
        if let Some(slot) = self.records.get_mut(self.len) {
            *slot = record;
            self.len += 1;
        }
    }

    /// Adds a write's row count to the latest record.
    pub(super) fn count_rows(&mut self, rows: Option<u64>) {
        if let Some(last) = self.len.checked_sub(1).and_then(|last| self.records.get_mut(last)) {
            last.rows_affected = rows;
        }
    }

    pub(super) fn as_slice(&self) -> &[AuditRecord] {
        &self.records[..self.len]
    }

    pub(super) fn clear(&mut self) {
        self.len = 0;
    }
}

/// Records a `cancelled` execute event if the run future is dropped while the tool runs.
pub(super) struct CancelRecorder<'a> {
    pub(super) boundary: &'a Boundary,
    pub(super) call: &'a AdmittedCall,
    pub(super) origin: Origin,
    pub(super) started: Instant,
    pub(super) armed: bool,
}

impl Drop for CancelRecorder<'_> {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        let record = AuditRecord {
            timestamp: self.boundary.clock.now(),
            stage: Stage::Execute,
            decision: AuditDecision::Cancelled,
            code: None,
            duration: self.started.elapsed(),
            rows_affected: self.call.rows_written(),
        };
        let read = self.call.read.lock().ok();
        let batch = AuditBatch {
            session: Some(&self.call.session),
            tool: self.call.tool.as_str(),
            records: &[record],
            read: read.as_ref().and_then(|read| read.as_ref()),
            origin: Some(&self.origin),
        };
        // Nothing is left to deny, and a drop must not wait: a refusal is logged and counted by
        // `submit_audit`.
        let _ = self.boundary.submit_audit(&batch);
    }
}
