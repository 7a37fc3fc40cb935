//! What a failure means for the caller: an [`AdapterError`] whose message never quotes a
//! value (an SQLSTATE, or the words of the query), and whether the read may be tried again.

use super::*;

/// Why work inside a transaction failed.
pub(super) enum Failure {
    /// The connection was dead when the transaction began: nothing ran.
    NotBegun(tokio_postgres::Error),
    Postgres(tokio_postgres::Error),
    Adapter(AdapterError),
}

impl Failure {
    pub(super) fn into_adapter_error(self) -> AdapterError {
        match self {
            Failure::Adapter(error) => error,
            Failure::Postgres(error) | Failure::NotBegun(error) => classify(&error),
        }
    }
}

/// Maps a PostgreSQL error to what a caller may see. Only messages that name the query's
/// own words (class 42: unknown column, syntax) are passed on; a data error's message can
/// quote row values, so it is replaced by its SQLSTATE.
pub(super) fn classify(error: &tokio_postgres::Error) -> AdapterError {
    if is_connection_failure(error) {
        return AdapterError::new(AdapterErrorKind::Connection, error.to_string());
    }
    let Some(db) = error.as_db_error() else {
        return AdapterError::new(AdapterErrorKind::Database, error.to_string());
    };
    let code = db.code();
    let state = code.code();
    // The cause kept for the log carries the SQLSTATE only: details can quote row values.
    let cause = format!("SQLSTATE {state}");
    if *code == SqlState::QUERY_CANCELED {
        return AdapterError::new(AdapterErrorKind::Timeout, cause);
    }
    if *code == SqlState::READ_ONLY_SQL_TRANSACTION {
        return AdapterError::new(AdapterErrorKind::Database, cause)
            .with_message("the database refused to write: the transaction is read-only");
    }
    if state.starts_with("42") {
        let mut message = format!("the database refused the statement: {} (SQLSTATE {state})", db.message());
        if let Some(hint) = db.hint() {
            message.push_str("; hint: ");
            message.push_str(hint);
        }
        return AdapterError::new(AdapterErrorKind::Database, cause).with_message(message);
    }
    if state.starts_with("22") {
        return AdapterError::new(AdapterErrorKind::InvalidInput, cause).with_message(format!(
            "a value does not fit its type or operation (SQLSTATE {state}); check the parameters and casts"
        ));
    }
    AdapterError::new(AdapterErrorKind::Database, cause)
        .with_message(format!("the database refused the statement (SQLSTATE {state})"))
}

/// Whether the connection, not the statement, failed: the read can be tried again elsewhere.
pub(super) fn is_connection_failure(error: &tokio_postgres::Error) -> bool {
    if error.is_closed() {
        return true;
    }
    match error.code() {
        Some(code) => {
            let state = code.code();
            state.starts_with("08") || matches!(state, "57P01" | "57P02" | "57P03")
        }
        None => error.source().is_some_and(|source| source.is::<std::io::Error>()),
    }
}

pub(super) fn text(row: &Row, index: usize) -> Result<String, AdapterError> {
    row.try_get(index).map_err(decode_failure)
}

pub(super) fn decode_failure(error: tokio_postgres::Error) -> AdapterError {
    AdapterError::new(AdapterErrorKind::Internal, error.to_string())
}

/// Why no connection could be had, telling a certificate that failed verification apart.
pub(super) fn unreachable(error: &(dyn StdError + 'static)) -> AdapterError {
    let mut cause = Some(error);
    while let Some(current) = cause {
        // tokio-rustls wraps its errors in io::Error, whose source() skips the wrapped error.
        let wrapped = current.downcast_ref::<std::io::Error>().and_then(std::io::Error::get_ref);
        if matches!(current.downcast_ref::<ConnectError>(), Some(ConnectError::TlsRefused)) {
            return AdapterError::new(AdapterErrorKind::Connection, error.to_string()).with_message(
                "the database does not offer TLS, which the connection requires (TLS is required for a database \
                 on another machine unless the URL says sslmode=disable)",
            );
        }
        if current.is::<rustls::Error>() || wrapped.is_some_and(|inner| inner.is::<rustls::Error>()) {
            return AdapterError::new(AdapterErrorKind::Connection, error.to_string()).with_message(
                "the database's TLS certificate could not be verified; name its CA with sslrootcert=PATH, \
                 or use sslmode=disable on a trusted network",
            );
        }
        cause = current.source();
    }
    AdapterError::new(AdapterErrorKind::Connection, error.to_string())
}
