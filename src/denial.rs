//! Denials: the expected outcome of a call that may not proceed, with a stable code.

use std::borrow::Cow;
use std::fmt;

use serde::Serialize;

/// The stable denial codes. Clients may match on [`DenialCode::as_str`]; it never changes for a
/// given variant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
#[non_exhaustive]
pub enum DenialCode {
    /// The session context is missing, invalid or expired.
    SessionContextInvalid,
    /// No tool of that name is registered.
    ToolNotFound,
    /// The tool writes and the server is read-only.
    ReadOnly,
    /// No grant allows this caller to invoke this tool.
    Unauthorized,
    /// A rate or concurrency quota is exhausted.
    RateLimited,
    /// The tool's input is not acceptable.
    InvalidInput,
    /// The SQL validator refused the query.
    QueryRejected,
    /// The call took longer than its time limit.
    Timeout,
    /// The result is larger than allowed.
    ResultTooLarge,
    /// The database reported an error.
    DbError,
    /// An internal fault; details are in the server's log, never in the answer.
    Internal,
    /// An egress budget (rows or bytes an hour) is spent; the message says when it refills.
    BudgetExhausted,
    /// The shared quota store could not answer in time, so nothing is admitted.
    QuotaUnavailable,
    /// The query reaches a denied column, or a masked one other than by selecting it as it is.
    ColumnDenied,
    /// A declared tool binds a param to a claim the caller's credential does not carry, or
    /// carries in a form the param does not take.
    ClaimMissing,
    /// The query's plan is estimated over `[limits] max_plan_cost` or `max_plan_rows`.
    TooExpensive,
}

impl DenialCode {
    /// The code as it appears on the wire and in the audit log.
    pub const fn as_str(self) -> &'static str {
        match self {
            DenialCode::SessionContextInvalid => "SESSION_CONTEXT_INVALID",
            DenialCode::ToolNotFound => "TOOL_NOT_FOUND",
            DenialCode::ReadOnly => "READ_ONLY",
            DenialCode::Unauthorized => "UNAUTHORIZED",
            DenialCode::RateLimited => "RATE_LIMITED",
            DenialCode::InvalidInput => "INVALID_INPUT",
            DenialCode::QueryRejected => "QUERY_REJECTED",
            DenialCode::Timeout => "TIMEOUT",
            DenialCode::ResultTooLarge => "RESULT_TOO_LARGE",
            DenialCode::DbError => "DB_ERROR",
            DenialCode::Internal => "INTERNAL",
            DenialCode::BudgetExhausted => "BUDGET_EXHAUSTED",
            DenialCode::QuotaUnavailable => "QUOTA_UNAVAILABLE",
            DenialCode::ColumnDenied => "COLUMN_DENIED",
            DenialCode::ClaimMissing => "CLAIM_MISSING",
            DenialCode::TooExpensive => "TOO_EXPENSIVE",
        }
    }
}

impl fmt::Display for DenialCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A call that may not proceed: a stable [`DenialCode`] and a message for the caller.
///
/// The message helps a legitimate caller fix the call; it never carries policy internals,
/// credentials or stack traces. Serializes as `{"code": …, "message": …}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Denial {
    code: DenialCode,
    message: Cow<'static, str>,
}

impl Denial {
    /// A denial with this code and message.
    pub fn new(code: DenialCode, message: impl Into<Cow<'static, str>>) -> Self {
        Denial { code, message: message.into() }
    }

    /// The generic answer to an internal fault. Log the fault itself; never put it here.
    pub fn internal() -> Self {
        Denial::new(DenialCode::Internal, "internal error")
    }

    /// The stable code.
    pub fn code(&self) -> DenialCode {
        self.code
    }

    /// The message for the caller.
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl fmt::Display for Denial {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.code, self.message)
    }
}

impl std::error::Error for Denial {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_stable_on_the_wire() {
        let all = [
            (DenialCode::SessionContextInvalid, "SESSION_CONTEXT_INVALID"),
            (DenialCode::ToolNotFound, "TOOL_NOT_FOUND"),
            (DenialCode::ReadOnly, "READ_ONLY"),
            (DenialCode::Unauthorized, "UNAUTHORIZED"),
            (DenialCode::RateLimited, "RATE_LIMITED"),
            (DenialCode::InvalidInput, "INVALID_INPUT"),
            (DenialCode::QueryRejected, "QUERY_REJECTED"),
            (DenialCode::Timeout, "TIMEOUT"),
            (DenialCode::ResultTooLarge, "RESULT_TOO_LARGE"),
            (DenialCode::DbError, "DB_ERROR"),
            (DenialCode::Internal, "INTERNAL"),
            (DenialCode::BudgetExhausted, "BUDGET_EXHAUSTED"),
            (DenialCode::QuotaUnavailable, "QUOTA_UNAVAILABLE"),
            (DenialCode::ColumnDenied, "COLUMN_DENIED"),
        ];
        for (code, text) in all {
            assert_eq!(code.as_str(), text);
            assert_eq!(code.to_string(), text);
            assert_eq!(serde_json::to_value(code).expect("serializes"), serde_json::json!(text));
        }
    }

    #[test]
    fn serializes_as_code_and_message() {
        let denial = Denial::new(DenialCode::ReadOnly, "write tools are disabled");
        assert_eq!(
            serde_json::to_value(&denial).expect("serializes"),
            serde_json::json!({"code": "READ_ONLY", "message": "write tools are disabled"})
        );
        assert_eq!(denial.to_string(), "READ_ONLY: write tools are disabled");
        assert_eq!(Denial::internal().code(), DenialCode::Internal);
    }
}
