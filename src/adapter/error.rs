//! The adapters' error: a kind, a message safe to show the caller, and a cause for the log.

use std::borrow::Cow;
use std::error::Error as StdError;
use std::fmt;

use super::*;

/// An adapter failure. Its `Display` never shows a connection string, credentials or row
/// values; its caller-facing message is written by the adapter to be safe to show.
#[derive(Debug)]
pub struct AdapterError {
    kind: AdapterErrorKind,
    pub(super) message: Option<Cow<'static, str>>,
    source: Option<Box<dyn StdError + Send + Sync>>,
}

/// What kind of failure an [`AdapterError`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum AdapterErrorKind {
    /// The statement ran past its time limit.
    Timeout,
    /// The result exceeded the byte cap.
    ResultTooLarge,
    /// The caller may not see that object (allow-list), or it does not exist.
    NotVisible,
    /// The call's input does not fit the statement (parameters, dialect).
    InvalidInput,
    /// The database refused or failed the statement.
    Database,
    /// The database could not be reached.
    Connection,
    /// A write tool's statements affected more rows than it declared.
    TooManyRows,
    /// The query was refused before it ran (with these parameters, say).
    Refused,
    /// The query's plan is estimated over `[limits] max_plan_cost` or `max_plan_rows`.
    TooExpensive,
    /// A fault of ours: the database's answer could not be read (a value that does not
    /// decode, say). Answered `INTERNAL`.
    Internal,
}

impl AdapterError {
    /// An error of this kind, keeping its cause for the log.
    pub fn new(kind: AdapterErrorKind, source: impl Into<Box<dyn StdError + Send + Sync>>) -> Self {
        AdapterError { kind, message: None, source: Some(source.into()) }
    }

    /// An error of this kind with no further cause.
    pub fn of_kind(kind: AdapterErrorKind) -> Self {
        AdapterError { kind, message: None, source: None }
    }

    /// Adds a message for the caller. It must not carry credentials, connection strings or
    /// row values.
    #[must_use]
    pub fn with_message(mut self, message: impl Into<Cow<'static, str>>) -> Self {
        self.message = Some(message.into());
        self
    }

    /// The call's input does not fit, for this reason.
    pub(crate) fn invalid(message: impl Into<Cow<'static, str>>) -> Self {
        AdapterError::of_kind(AdapterErrorKind::InvalidInput).with_message(message)
    }

    /// The statement ran past its time limit.
    pub(crate) fn timed_out() -> Self {
        AdapterError::of_kind(AdapterErrorKind::Timeout)
    }

    /// What kind of failure this is.
    pub fn kind(&self) -> AdapterErrorKind {
        self.kind
    }

    /// The denial a caller sees: the message set for it, or the kind's generic one. The cause
    /// is not in it (the boundary logs it).
    pub fn denial(&self) -> Denial {
        let (code, generic) = match self.kind {
            AdapterErrorKind::Timeout => (DenialCode::Timeout, "the statement exceeded its time limit"),
            AdapterErrorKind::ResultTooLarge => (DenialCode::ResultTooLarge, "the result exceeds the size limit"),
            AdapterErrorKind::NotVisible => (DenialCode::QueryRejected, "no such table, or not allowed"),
            AdapterErrorKind::InvalidInput => (DenialCode::InvalidInput, "the input does not fit the statement"),
            AdapterErrorKind::Database => (DenialCode::DbError, "the database refused the statement"),
            AdapterErrorKind::Connection => (DenialCode::DbError, "the database is unavailable; try again later"),
            AdapterErrorKind::TooManyRows => {
                (DenialCode::QueryRejected, "the change affected more rows than the tool allows; nothing was changed")
            }
            AdapterErrorKind::Refused => (DenialCode::QueryRejected, "the query was refused"),
            AdapterErrorKind::TooExpensive => {
                (DenialCode::TooExpensive, "the query's plan is estimated over the limit")
            }
            AdapterErrorKind::Internal => (DenialCode::Internal, "internal error"),
        };
        Denial::new(code, self.message.clone().unwrap_or(Cow::Borrowed(generic)))
    }
}

impl fmt::Display for AdapterError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self.kind {
            AdapterErrorKind::Timeout => "statement timed out",
            AdapterErrorKind::ResultTooLarge => "result too large",
            AdapterErrorKind::NotVisible => "object not visible",
            AdapterErrorKind::InvalidInput => "invalid input",
            AdapterErrorKind::Database => "database error",
            AdapterErrorKind::Connection => "database connection failed",
            AdapterErrorKind::TooManyRows => "too many rows affected",
            AdapterErrorKind::Refused => "query refused",
            AdapterErrorKind::TooExpensive => "query plan over the limit",
            AdapterErrorKind::Internal => "internal error",
        })?;
        match &self.message {
            Some(message) => write!(f, ": {message}"),
            None => Ok(()),
        }
    }
}

impl StdError for AdapterError {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        self.source.as_deref().map(|e| e as &(dyn StdError + 'static))
    }
}
