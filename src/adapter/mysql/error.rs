//! What a failure means for the caller: an [`AdapterError`] whose message quotes the server
//! only for errors that name the query's words, never a value.

use super::*;

pub(super) enum Failure {
    MySql(mysql_async::Error),
    Adapter(AdapterError),
}

impl Failure {
    pub(super) fn into_adapter_error(self) -> AdapterError {
        match self {
            Failure::Adapter(error) => error,
            Failure::MySql(error) => classify(&error),
        }
    }
}

/// Server errors whose messages name only the query's own words (unknown column, syntax,
/// unknown table or function), and so may be shown. Others, such as "Incorrect integer
/// value: '…'", can quote data and are replaced by their number.
pub(super) const SAFE_MESSAGES: [u16; 12] = [1044, 1052, 1054, 1064, 1109, 1142, 1143, 1146, 1222, 1241, 1248, 1305];

pub(super) fn classify(error: &mysql_async::Error) -> AdapterError {
    if is_packet_too_large(error) {
        return AdapterError::new(AdapterErrorKind::ResultTooLarge, scrub(error));
    }
    if is_connection_failure(error) {
        return AdapterError::new(AdapterErrorKind::Connection, scrub(error));
    }
    let mysql_async::Error::Server(server) = error else {
        return AdapterError::new(AdapterErrorKind::Database, scrub(error));
    };
    let cause = format!("MySQL error {}", server.code);
    match server.code {
        // MariaDB max_statement_time, MySQL max_execution_time, a killed query.
        1969 | 3024 | 1317 => AdapterError::new(AdapterErrorKind::Timeout, cause),
        // A packet over the server's own max_allowed_packet.
        1153 | 1301 => AdapterError::new(AdapterErrorKind::ResultTooLarge, cause),
        1792 => AdapterError::new(AdapterErrorKind::Database, cause)
            .with_message("the database refused to write: the transaction is read-only"),
        code if SAFE_MESSAGES.contains(&code) => AdapterError::new(AdapterErrorKind::Database, cause)
            .with_message(format!("the database refused the statement: {} (MySQL error {code})", server.message)),
        1292 | 1366 | 1365 | 1264 | 1406 | 1690 | 3140 | 3141 | 4038 => {
            AdapterError::new(AdapterErrorKind::InvalidInput, cause).with_message(format!(
                "a value does not fit its type or operation (MySQL error {}); check the parameters and casts",
                server.code
            ))
        }
        code => AdapterError::new(AdapterErrorKind::Database, cause)
            .with_message(format!("the database refused the statement (MySQL error {code})")),
    }
}

/// Whether the client refused a packet over its `max_allowed_packet`: a row too large for any
/// result. The connection cannot be used after it, but the row would be as large on any other.
pub(super) fn is_packet_too_large(error: &mysql_async::Error) -> bool {
    use mysql_common::proto::codec::error::PacketCodecError;
    let mysql_async::Error::Io(mysql_async::IoError::Io(io)) = error else { return false };
    io.get_ref()
        .and_then(|inner| inner.downcast_ref::<PacketCodecError>())
        .is_some_and(|codec| matches!(codec, PacketCodecError::PacketTooLarge))
}

pub(super) fn is_connection_failure(error: &mysql_async::Error) -> bool {
    match error {
        mysql_async::Error::Io(_) => true,
        mysql_async::Error::Driver(driver) => {
            matches!(driver, mysql_async::DriverError::ConnectionClosed | mysql_async::DriverError::PoolDisconnected)
        }
        // Server shutdown, connection killed, server gone.
        mysql_async::Error::Server(server) => matches!(server.code, 1053 | 1927 | 2006 | 2013 | 4031),
        _ => false,
    }
}

/// An error's text for the log, without anything a server could have quoted from data.
pub(super) fn scrub(error: &mysql_async::Error) -> String {
    match error {
        mysql_async::Error::Server(server) => format!("MySQL error {}", server.code),
        mysql_async::Error::Url(_) => "invalid URL".to_owned(),
        other => other.to_string(),
    }
}

pub(super) fn text(row: &Row, index: usize) -> Result<String, AdapterError> {
    match row.as_ref(index) {
        Some(MyValue::Bytes(bytes)) => Ok(String::from_utf8_lossy(bytes).into_owned()),
        Some(MyValue::Int(value)) => Ok(value.to_string()),
        Some(MyValue::UInt(value)) => Ok(value.to_string()),
        _ => Err(AdapterError::of_kind(AdapterErrorKind::Internal).with_message("the catalog answered unexpectedly")),
    }
}

pub(super) fn optional_text(row: &Row, index: usize) -> Result<Option<String>, AdapterError> {
    match row.as_ref(index) {
        Some(MyValue::NULL) => Ok(None),
        _ => text(row, index).map(Some),
    }
}
