//! What every backend does the same way: which hosts are this machine, which URL parameters
//! sqlwarden reads itself, statement time limits, which tables are plain, and the last check
//! before a query runs.

use super::*;

/// Which allow-listed names are plain tables (no view, no row-level security), as the catalog
/// said at most [`TableKinds::FRESH`] ago: a read of plain tables only runs no stored code, so
/// it leaves no session state behind; after any other read a connection is reset or closed.
/// Each backend asks its own catalog.
pub(crate) struct TableKinds {
    known: std::sync::Mutex<Option<(std::time::Instant, std::collections::HashSet<crate::sql::TableName>)>>,
}

impl TableKinds {
    /// How long what the catalog said is trusted.
    pub(crate) const FRESH: Duration = Duration::from_secs(1);

    pub(crate) fn new() -> Self {
        TableKinds { known: std::sync::Mutex::new(None) }
    }

    /// Whether every one of `tables` is plain, if the catalog said so within [`Self::FRESH`];
    /// `None` when what it said is older, or it has not been asked.
    pub(crate) fn fresh(&self, tables: &[crate::sql::TableName]) -> Option<bool> {
        let guard = self.known.lock().ok()?;
        let (learned, plain) = guard.as_ref()?;
        (learned.elapsed() < Self::FRESH).then(|| tables.iter().all(|table| plain.contains(table)))
    }

    /// Keeps what the catalog just said.
    pub(crate) fn learn(&self, plain: std::collections::HashSet<crate::sql::TableName>) {
        if let Ok(mut guard) = self.known.lock() {
            *guard = Some((std::time::Instant::now(), plain));
        }
    }
}

/// The longest statement time limit every engine takes (PostgreSQL's `statement_timeout` is
/// at most `i32::MAX` ms, MySQL's `max_execution_time` a `u32` of ms, MariaDB's
/// `max_statement_time` at most a year): a limit given to a backend is clamped to it, and
/// the configuration refuses longer ones.
pub const MAX_STATEMENT_TIME: Duration = Duration::from_secs(24 * 60 * 60);

/// `timeout` in whole milliseconds, at least 1 and at most [`MAX_STATEMENT_TIME`].
pub(crate) fn statement_millis(timeout: Duration) -> u64 {
    u64::try_from(timeout.min(MAX_STATEMENT_TIME).as_millis()).unwrap_or(u64::MAX).max(1)
}

/// Whether `host`, as written in a database URL, is this machine: a loopback address
/// (`127.0.0.0/8`, `::1`, also IPv4-mapped), `localhost`, or a Unix socket's path. Anything
/// else (another name, another address, `db.localhost` included) is reached over a network,
/// where the connection is encrypted unless plain text is asked for by name
/// (`sqlwarden check` reports it).
pub fn is_local_host(host: &str) -> bool {
    if host.starts_with('/') {
        return true;
    }
    let host = host.strip_suffix('.').unwrap_or(host);
    let host = host.strip_prefix('[').and_then(|inner| inner.strip_suffix(']')).unwrap_or(host);
    host.eq_ignore_ascii_case("localhost")
        || host.parse::<std::net::IpAddr>().is_ok_and(|address| address.to_canonical().is_loopback())
}

/// What `sqlwarden check` reports, and the server warns at startup, when a database on
/// another machine is reached with plain text asked for by name.
pub(crate) const PLAINTEXT_FINDING: &str = "its connection may travel unencrypted: the database is on another \
     machine and the URL asks for plain text (sslmode=disable or prefer, require_ssl=false)";

/// A database URL's query, parsed once (by `url`'s `form_urlencoded`: values percent-decoded,
/// `+` read as a space), with the parameters sqlwarden reads itself taken out of the URL: the
/// drivers refuse parameters they do not know.
pub(crate) struct UrlParameters {
    /// The URL without the parameters taken out; the others are kept as they were written.
    pub(crate) url: String,
    /// Every parameter, decoded, in order.
    pairs: Vec<(String, String)>,
}

impl UrlParameters {
    /// Parses `url`'s query and takes the parameters named in `ours` out of the URL.
    pub(crate) fn take(url: &str, ours: &[&str]) -> UrlParameters {
        let Some((base, query)) = url.split_once('?') else {
            return UrlParameters { url: url.to_owned(), pairs: Vec::new() };
        };
        let mut pairs = Vec::new();
        let mut kept = Vec::new();
        for written in query.split('&').filter(|pair| !pair.is_empty()) {
            let Some((name, value)) = ::url::form_urlencoded::parse(written.as_bytes()).next() else { continue };
            if !ours.contains(&name.as_ref()) {
                kept.push(written);
            }
            pairs.push((name.into_owned(), value.into_owned()));
        }
        let url = if kept.is_empty() { base.to_owned() } else { format!("{base}?{}", kept.join("&")) };
        UrlParameters { url, pairs }
    }

    /// The value of the parameter `name` (its last, if it is given more than once).
    pub(crate) fn get(&self, name: &str) -> Option<&str> {
        self.pairs.iter().rev().find(|(found, _)| found == name).map(|(_, value)| value.as_str())
    }
}

/// Refuses a query validated for another dialect than the backend's, or under an allow-list
/// that let it name a table the backend's own allow-list does not (a validator built with a
/// wider list than the adapter's), or whose size-amplifying calls would, with these
/// parameters, make more than the result cap ([`ValidatedQuery::check_params`]). Every backend
/// checks this before it runs a query.
pub(crate) fn ensure_runnable(
    query: &ValidatedQuery,
    allow: &AllowList,
    params: &[SqlValue],
    max_bytes: usize,
) -> Result<(), AdapterError> {
    if query.dialect() != allow.dialect() {
        return Err(AdapterError::invalid("the query was validated for another SQL dialect"));
    }
    if let Some(table) = query.tables().iter().find(|table| !allow.allows(table)) {
        return Err(AdapterError::of_kind(AdapterErrorKind::Refused)
            .with_message(format!("table {table} is not in this database's allow-list")));
    }
    query
        .check_params(&param_values(params), max_bytes)
        .map_err(|denial| AdapterError::of_kind(AdapterErrorKind::Refused).with_message(denial.message().to_owned()))
}

/// Statement parameters as the amplification guard sees them.
pub(crate) fn param_values(params: &[SqlValue]) -> Vec<ParamValue<'_>> {
    params
        .iter()
        .map(|param| match param {
            SqlValue::Null => ParamValue::Null,
            SqlValue::Bool(value) => ParamValue::Number(f64::from(u8::from(*value))),
            SqlValue::Int(value) => ParamValue::Number(*value as f64),
            SqlValue::Float(value) => ParamValue::Number(*value),
            SqlValue::Text(value) => ParamValue::Text(value),
            SqlValue::Bytes(value) => ParamValue::Bytes(value.len()),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_parameters_are_taken_out_decoded_and_the_rest_kept_as_written() {
        let none = UrlParameters::take("postgres://h/db", &["sslrootcert"]);
        assert_eq!((none.url.as_str(), none.get("sslrootcert")), ("postgres://h/db", None));
        let some = UrlParameters::take(
            "postgres://h/db?sslmode=require&sslrootcert=%2Fetc%2Fca%20file.pem&options=-c%20x%3Dy",
            &["sslrootcert", "sslmode"],
        );
        assert_eq!(some.url, "postgres://h/db?options=-c%20x%3Dy", "the others as they were written");
        assert_eq!(some.get("sslrootcert"), Some("/etc/ca file.pem"), "percent-decoded");
        assert_eq!(some.get("sslmode"), Some("require"));
        assert_eq!(some.get("options"), Some("-c x=y"), "every parameter can be read");
        let only = UrlParameters::take("mysql://h/db?sslrootcert=a&sslrootcert=b", &["sslrootcert"]);
        assert_eq!((only.url.as_str(), only.get("sslrootcert")), ("mysql://h/db", Some("b")));
    }
}
