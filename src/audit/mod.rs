//! Audit: one structured event for every decision at every stage, allow and deny.
//!
//! Each event carries timestamp, session id, identity, tenant, tool, stage, decision, denial code
//! and duration — never arguments, SQL parameters or row values. Events go to an [`AuditSink`],
//! never to stdout (which carries the protocol). The boundary hands the sink one
//! [`AuditBatch`] at a time: the stage decisions up to admission before the tool runs, then
//! the outcome. If a batch cannot be recorded the call is denied: a tool never runs
//! unaudited, and a result is never returned unaudited.
//!
//! The server writes through an [`AuditWriter`], a thread of its own behind a bounded queue, so
//! that a slow disk or an unread pipe delays no call but its own, and that one only until the
//! writer's deadline, when it is denied.

use std::fmt;
use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::Path;
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use serde::Serialize;
use thiserror::Error;

use crate::denial::DenialCode;
use crate::json::{Clock, Date, Years, write_date_time};
use crate::policy::SessionContext;

mod chain;
mod stats;
mod verify;
mod writer;

pub use chain::ChainKey;
pub use stats::{Stats, stats};
pub use verify::{Break, Verified, verify};
pub use writer::{AuditWriter, Submitted};

/// A stage of the pipeline, as recorded in the audit log.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Stage {
    /// Session validation and tool lookup.
    Resolve,
    /// The read-only mode check.
    Mode,
    /// The capability check.
    Authorize,
    /// Quota admission.
    Admit,
    /// The tool ran (or its input was refused). A write tool's record is written before its
    /// transaction commits.
    Execute,
    /// A write whose execute record was written, but whose commit then failed.
    Commit,
}

impl Stage {
    /// The stage's name in the audit log.
    pub const fn as_str(self) -> &'static str {
        match self {
            Stage::Resolve => "resolve",
            Stage::Mode => "mode",
            Stage::Authorize => "authorize",
            Stage::Admit => "admit",
            Stage::Execute => "execute",
            Stage::Commit => "commit",
        }
    }
}

/// What was decided at a stage.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AuditDecision {
    /// The call passed this stage (for `execute`: the tool succeeded).
    Allow,
    /// The call was stopped at this stage, with a code.
    Deny,
    /// The caller went away while the tool ran; the call's future was dropped.
    Cancelled,
}

impl AuditDecision {
    /// The decision's name in the audit log.
    pub const fn as_str(self) -> &'static str {
        match self {
            AuditDecision::Allow => "allow",
            AuditDecision::Deny => "deny",
            AuditDecision::Cancelled => "cancelled",
        }
    }
}

/// One decision at one stage.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AuditRecord {
    /// When the decision was made.
    pub timestamp: SystemTime,
    /// The stage.
    pub stage: Stage,
    /// The decision.
    pub decision: AuditDecision,
    /// The denial code, for denials.
    pub code: Option<DenialCode>,
    /// How long the stage took: the time since the call's previous decision (or since the
    /// call was created). For the execute stage, how long the tool ran.
    pub duration: Duration,
    /// For the execute stage of a write tool: the rows its statements affected — committed
    /// when the decision is `allow`, rolled back otherwise. `None` for everything else.
    pub rows_affected: Option<u64>,
}

/// How a call came in: written on each of its records.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Origin {
    transport: Option<Transport>,
    /// The MCP session's id, as JSON text.
    mcp_session: Option<Box<str>>,
    /// The request's JSON-RPC id, as JSON text.
    request_id: Option<Box<str>>,
}

/// The way a call came in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Transport {
    /// MCP over stdin and stdout.
    Stdio,
    /// MCP over Streamable HTTP.
    Http,
    /// `sqlwarden call`.
    Cli,
}

impl Transport {
    /// Its name in the audit log.
    pub const fn as_str(self) -> &'static str {
        match self {
            Transport::Stdio => "stdio",
            Transport::Http => "http",
            Transport::Cli => "cli",
        }
    }
}

/// The origin of a call that came in no known way: written as nulls.
const NO_ORIGIN: Origin = Origin { transport: None, mcp_session: None, request_id: None };

impl Origin {
    /// A call that came in over `transport`.
    pub fn new(transport: Transport) -> Origin {
        Origin { transport: Some(transport), mcp_session: None, request_id: None }
    }

    /// With the request's JSON-RPC id (a string or an integer).
    pub fn request(mut self, id: &impl Serialize) -> Origin {
        self.request_id = serde_json::to_string(id).ok().map(String::into_boxed_str);
        self
    }

    /// With the MCP session's id.
    pub fn mcp_session(mut self, id: &str) -> Origin {
        self.mcp_session = serde_json::to_string(id).ok().map(String::into_boxed_str);
        self
    }

    /// Writes `,"transport":…,"mcp_session":…,"request_id":…`.
    fn write(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(br#","transport":"#);
        match self.transport {
            Some(transport) => {
                out.push(b'"');
                out.extend_from_slice(transport.as_str().as_bytes());
                out.push(b'"');
            }
            None => out.extend_from_slice(b"null"),
        }
        out.extend_from_slice(br#","mcp_session":"#);
        out.extend_from_slice(self.mcp_session.as_deref().unwrap_or("null").as_bytes());
        out.extend_from_slice(br#","request_id":"#);
        out.extend_from_slice(self.request_id.as_deref().unwrap_or("null").as_bytes());
    }
}

/// What a read returned, for its execute record: never the SQL text, never a value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadFacts {
    /// The query's fingerprint: the SHA-256, in hex, of the validated statement printed with
    /// every literal replaced, so one query shape has one fingerprint whatever its values.
    pub fingerprint: String,
    /// The tables it read, each as `schema.table`.
    pub tables: Vec<String>,
    /// Rows returned.
    pub rows: u64,
    /// Bytes of JSON the rows took.
    pub bytes: u64,
    /// Whether there were more rows than the limit.
    pub truncated: bool,
}

/// Consecutive decisions about one call, recorded together.
#[derive(Debug, Clone, Copy)]
pub struct AuditBatch<'a> {
    /// The call's session, if it had a valid one.
    pub session: Option<&'a SessionContext>,
    /// The tool requested (at most 128 characters of what the caller sent).
    pub tool: &'a str,
    /// The decisions, in order.
    pub records: &'a [AuditRecord],
    /// What the call read, written on its execute record.
    pub read: Option<&'a ReadFacts>,
    /// How the call came in; `None` writes nulls.
    pub origin: Option<&'a Origin>,
}

impl<'a> AuditBatch<'a> {
    /// The batch as self-contained events, one per record.
    pub fn events(&self) -> impl Iterator<Item = AuditEvent<'a>> + 'a {
        let (session, tool, read, origin) = (self.session, self.tool, self.read, self.origin);
        self.records.iter().map(move |record| AuditEvent {
            session,
            tool,
            record: *record,
            read: read.filter(|_| record.stage == Stage::Execute),
            origin,
        })
    }
}

/// One audit event, complete: a record with its call's session and tool. Serializes as the
/// JSON object the [`JsonLinesSink`] writes.
#[derive(Debug, Clone, Copy)]
pub struct AuditEvent<'a> {
    /// The call's session, if it had a valid one.
    pub session: Option<&'a SessionContext>,
    /// The tool requested.
    pub tool: &'a str,
    /// The decision.
    pub record: AuditRecord,
    /// What the call read, on an execute record.
    pub read: Option<&'a ReadFacts>,
    /// How the call came in.
    pub origin: Option<&'a Origin>,
}

impl Serialize for AuditEvent<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let record = &self.record;
        let entries = 12 + usize::from(record.rows_affected.is_some()) + if self.read.is_some() { 5 } else { 0 };
        let mut map = serializer.serialize_map(Some(entries))?;
        map.serialize_entry("timestamp", &humantime::format_rfc3339_micros(record.timestamp).to_string())?;
        map.serialize_entry("session_id", &self.session.map(|s| s.id().as_str()))?;
        map.serialize_entry("identity", &self.session.map(SessionContext::identity))?;
        map.serialize_entry("tenant", &self.session.map(SessionContext::tenant))?;
        map.serialize_entry("tool", self.tool)?;
        let origin = self.origin.unwrap_or(&NO_ORIGIN);
        map.serialize_entry("transport", &origin.transport)?;
        let raw = |text: &Option<Box<str>>| {
            text.as_deref().and_then(|text| serde_json::from_str::<serde_json::Value>(text).ok())
        };
        map.serialize_entry("mcp_session", &raw(&origin.mcp_session))?;
        map.serialize_entry("request_id", &raw(&origin.request_id))?;
        map.serialize_entry("stage", &record.stage)?;
        map.serialize_entry("decision", &record.decision)?;
        map.serialize_entry("code", &record.code)?;
        map.serialize_entry("duration_us", &micros(record.duration))?;
        if let Some(rows) = record.rows_affected {
            map.serialize_entry("rows_affected", &rows)?;
        }
        if let Some(read) = self.read {
            map.serialize_entry("fingerprint", &read.fingerprint)?;
            map.serialize_entry("tables", &read.tables)?;
            map.serialize_entry("rows_returned", &read.rows)?;
            map.serialize_entry("bytes_returned", &read.bytes)?;
            map.serialize_entry("truncated", &read.truncated)?;
        }
        map.end()
    }
}

/// Why audit events could not be recorded.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum AuditError {
    /// Writing to the sink failed.
    #[error("cannot write audit events")]
    Io(#[from] io::Error),
    /// The events could not be serialized.
    #[error("cannot serialize audit events")]
    Serialize(#[from] serde_json::Error),
    /// The sink is unusable after an earlier panic.
    #[error("audit sink is poisoned")]
    Poisoned,
    /// The writer cannot take the batch: its queue is full, or it has stopped.
    #[error("the audit writer is unavailable (its queue is full or it has stopped)")]
    Unavailable,
    /// The batch was not written within the writer's deadline.
    #[error("audit records were not written within the deadline")]
    TimedOut,
}

/// Where audit events go. The boundary denies any call whose events cannot be recorded.
pub trait AuditSink: Send + Sync {
    /// Records a batch, all or nothing as far as the sink can tell.
    fn record(&self, batch: &AuditBatch<'_>) -> Result<(), AuditError>;

    /// Hands a batch over without blocking; the boundary calls this, and waits on the
    /// [`Submitted`] for as long as the sink allows. The default records the batch at once: a
    /// sink whose `record` may block (a file, a pipe) should hand the work to a thread instead,
    /// as [`AuditWriter`] does.
    fn submit(&self, batch: &AuditBatch<'_>) -> Submitted {
        Submitted::recorded(self.record(batch))
    }

    /// Waits until everything handed over so far is recorded, at most `within`.
    fn flush(&self, within: Duration) -> Result<(), AuditError> {
        let _ = within;
        Ok(())
    }

    /// The server is stopping: ends what the sink keeps open (the [`AuditWriter`]'s hash
    /// chain, with a `close` record) and flushes, at most `within`. The default flushes.
    fn close(&self, within: Duration) -> Result<(), AuditError> {
        self.flush(within)
    }

    /// The audit file was rotated from outside (SIGHUP): goes on in the file now at its path.
    /// The default does nothing.
    fn reopen(&self) -> Result<(), AuditError> {
        Ok(())
    }
}

impl<T: AuditSink + ?Sized> AuditSink for std::sync::Arc<T> {
    fn record(&self, batch: &AuditBatch<'_>) -> Result<(), AuditError> {
        (**self).record(batch)
    }

    fn submit(&self, batch: &AuditBatch<'_>) -> Submitted {
        (**self).submit(batch)
    }

    fn flush(&self, within: Duration) -> Result<(), AuditError> {
        (**self).flush(within)
    }

    fn close(&self, within: Duration) -> Result<(), AuditError> {
        (**self).close(within)
    }

    fn reopen(&self) -> Result<(), AuditError> {
        (**self).reopen()
    }
}

/// Writes each event as one line of JSON; a batch goes out in a single `write`, not fsynced.
///
/// It writes on the caller's thread, so it suits writers that never block (`io::sink()`, a
/// `Vec`). For a file or a pipe, use an [`AuditWriter`].
pub struct JsonLinesSink<W> {
    out: Mutex<(W, Vec<u8>)>,
}

impl JsonLinesSink<io::Stderr> {
    /// Audit to standard error.
    pub fn stderr() -> Self {
        Self::new(io::stderr())
    }
}

impl JsonLinesSink<File> {
    /// Audit to a file, appending; the file is created if missing.
    pub fn append_to(path: impl AsRef<Path>) -> io::Result<Self> {
        Ok(Self::new(OpenOptions::new().create(true).append(true).open(path)?))
    }
}

impl<W: Write + Send> JsonLinesSink<W> {
    /// Audit to any writer.
    pub fn new(out: W) -> Self {
        JsonLinesSink { out: Mutex::new((out, Vec::with_capacity(2048))) }
    }

    /// Takes the writer back.
    pub fn into_inner(self) -> W {
        self.out.into_inner().unwrap_or_else(|poisoned| poisoned.into_inner()).0
    }
}

impl<W: Write + Send> AuditSink for JsonLinesSink<W> {
    fn record(&self, batch: &AuditBatch<'_>) -> Result<(), AuditError> {
        let mut guard = self.out.lock().map_err(|_| AuditError::Poisoned)?;
        let (out, lines) = &mut *guard;
        lines.clear();
        let start = write_lines(lines, batch)?;
        out.write_all(&lines[start..])?;
        out.flush()?;
        Ok(())
    }
}

impl<W> fmt::Debug for JsonLinesSink<W> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("JsonLinesSink")
    }
}

/// Appends the batch as JSON lines, byte for byte what serializing each [`AuditEvent`] gives,
/// escaping the session's fields (once, at bind) and the tool (once per batch) only. Returns
/// where the lines start: the escaped tool name is kept in front of them.
fn write_lines(lines: &mut Vec<u8>, batch: &AuditBatch<'_>) -> Result<usize, serde_json::Error> {
    const NO_SESSION: &str = r#""session_id":null,"identity":null,"tenant":null"#;
    let session = batch.session.map_or(NO_SESSION, SessionContext::audit_json);
    // The escaped tool name goes first, once; each line copies it from there.
    let tool_start = lines.len();
    serde_json::to_writer(&mut *lines, batch.tool)?;
    let tool = tool_start..lines.len();
    let mut clock = Rfc3339::default();
    for record in batch.records {
        lines.extend_from_slice(br#"{"timestamp":""#);
        clock.write(lines, record.timestamp);
        lines.extend_from_slice(b"\",");
        lines.extend_from_slice(session.as_bytes());
        lines.extend_from_slice(br#","tool":"#);
        lines.extend_from_within(tool.clone());
        batch.origin.unwrap_or(&NO_ORIGIN).write(lines);
        lines.extend_from_slice(br#","stage":""#);
        lines.extend_from_slice(record.stage.as_str().as_bytes());
        lines.extend_from_slice(br#"","decision":""#);
        lines.extend_from_slice(record.decision.as_str().as_bytes());
        lines.extend_from_slice(br#"","code":"#);
        match record.code {
            Some(code) => {
                lines.push(b'"');
                lines.extend_from_slice(code.as_str().as_bytes());
                lines.push(b'"');
            }
            None => lines.extend_from_slice(b"null"),
        }
        lines.extend_from_slice(br#","duration_us":"#);
        lines.extend_from_slice(itoa::Buffer::new().format(micros(record.duration)).as_bytes());
        if let Some(rows) = record.rows_affected {
            lines.extend_from_slice(br#","rows_affected":"#);
            lines.extend_from_slice(itoa::Buffer::new().format(rows).as_bytes());
        }
        if let Some(read) = batch.read.filter(|_| record.stage == Stage::Execute) {
            lines.extend_from_slice(br#","fingerprint":"#);
            serde_json::to_writer(&mut *lines, &read.fingerprint)?;
            lines.extend_from_slice(br#","tables":"#);
            serde_json::to_writer(&mut *lines, &read.tables)?;
            lines.extend_from_slice(br#","rows_returned":"#);
            lines.extend_from_slice(itoa::Buffer::new().format(read.rows).as_bytes());
            lines.extend_from_slice(br#","bytes_returned":"#);
            lines.extend_from_slice(itoa::Buffer::new().format(read.bytes).as_bytes());
            lines.extend_from_slice(if read.truncated { br#","truncated":true"# } else { br#","truncated":false"# });
        }
        lines.extend_from_slice(b"}\n");
    }
    Ok(tool.end)
}

/// A record of the chain itself (`open` or `close`), as a line to seal.
fn control_line(kind: &str) -> Vec<u8> {
    let mut line = Vec::with_capacity(64);
    line.extend_from_slice(br#"{"timestamp":""#);
    Rfc3339::default().write(&mut line, SystemTime::now());
    line.extend_from_slice(br#"","audit":""#);
    line.extend_from_slice(kind.as_bytes());
    line.extend_from_slice(b"\"}\n");
    line
}

fn micros(duration: Duration) -> u64 {
    u64::try_from(duration.as_micros()).unwrap_or(u64::MAX)
}

/// Writes `YYYY-MM-DDTHH:MM:SS.ffffffZ`, as `humantime::format_rfc3339_micros` does, without
/// going through `fmt`, and formats the date and time once for consecutive timestamps in the
/// same second. Times before 1970 or after 9999 are clamped to those bounds.
#[derive(Default)]
struct Rfc3339 {
    second: Option<u64>,
    prefix: Vec<u8>,
}

impl Rfc3339 {
    fn write(&mut self, out: &mut Vec<u8>, at: SystemTime) {
        const MAX_SECS: u64 = 253_402_300_799; // 9999-12-31T23:59:59Z
        let since_epoch = at.duration_since(SystemTime::UNIX_EPOCH).unwrap_or(Duration::ZERO);
        let (secs, micros) = match since_epoch.as_secs() {
            secs if secs > MAX_SECS => (MAX_SECS, 999_999),
            secs => (secs, since_epoch.subsec_micros()),
        };
        if self.second != Some(secs) {
            self.second = Some(secs);
            let mut prefix = String::with_capacity(20);
            let date = Date::from_unix_days(i64::try_from(secs / 86_400).unwrap_or_default());
            let second_of_day = secs % 86_400;
            let time = Clock {
                hours: second_of_day / 3600,
                minutes: second_of_day / 60 % 60,
                seconds: second_of_day % 60,
                micros: 0,
            };
            write_date_time(&mut prefix, date, Some(time), false, Years::Plain);
            prefix.push('.');
            self.prefix = prefix.into_bytes();
        }
        out.extend_from_slice(&self.prefix);
        push_digits(out, u64::from(micros), 6);
        out.push(b'Z');
    }
}

#[cfg(test)]
fn write_rfc3339_micros(out: &mut Vec<u8>, at: SystemTime) {
    Rfc3339::default().write(out, at);
}

/// Writes the last `width` decimal digits of `value`, zero-padded.
fn push_digits(out: &mut Vec<u8>, value: u64, width: usize) {
    let mut buffer = [b'0'; 6];
    let mut rest = value;
    for slot in buffer[..width].iter_mut().rev() {
        *slot = b'0' + (rest % 10) as u8;
        rest /= 10;
    }
    out.extend_from_slice(&buffer[..width]);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::SessionContext;

    fn record(stage: Stage, decision: AuditDecision, code: Option<DenialCode>) -> AuditRecord {
        AuditRecord {
            timestamp: SystemTime::UNIX_EPOCH + Duration::from_micros(1_764_000_000_123_456),
            stage,
            decision,
            code,
            duration: Duration::from_micros(7),
            rows_affected: None,
        }
    }

    fn written(batch: &AuditBatch<'_>) -> Vec<serde_json::Value> {
        let sink = JsonLinesSink::new(Vec::new());
        sink.record(batch).expect("writes");
        let text = String::from_utf8(sink.into_inner()).expect("utf-8");
        assert!(text.ends_with('\n'));
        text.lines().map(|line| serde_json::from_str(line).expect("each line is JSON")).collect()
    }

    #[test]
    fn each_event_is_one_line_of_json_with_every_field() {
        let session = SessionContext::builder().identity("ali\"ce\\").tenant("ac/me").bind().expect("valid");
        let records = [
            record(Stage::Authorize, AuditDecision::Allow, None),
            record(Stage::Admit, AuditDecision::Deny, Some(DenialCode::RateLimited)),
            AuditRecord { rows_affected: Some(3), ..record(Stage::Execute, AuditDecision::Allow, None) },
        ];
        let read = ReadFacts {
            fingerprint: "f".repeat(64),
            tables: vec!["public.orders".into(), "pub\"lic.x".into()],
            rows: 2,
            bytes: 31,
            truncated: true,
        };
        let origin = Origin::new(Transport::Stdio).request(&"r\"1").mcp_session("s-1");
        let batch = AuditBatch {
            session: Some(&session),
            tool: "to\"ol\u{1}",
            records: &records,
            read: Some(&read),
            origin: Some(&origin),
        };
        let lines = written(&batch);
        assert_eq!(
            lines[1],
            serde_json::json!({
                "timestamp": "2025-11-24T16:00:00.123456Z",
                "session_id": session.id().as_str(),
                "identity": "ali\"ce\\",
                "tenant": "ac/me",
                "tool": "to\"ol\u{1}",
                "transport": "stdio",
                "mcp_session": "s-1",
                "request_id": "r\"1",
                "stage": "admit",
                "decision": "deny",
                "code": "RATE_LIMITED",
                "duration_us": 7,
            })
        );
        assert_eq!(lines.len(), 3);
        assert_eq!(lines[0]["code"], serde_json::Value::Null);
        assert_eq!(lines[0].get("rows_affected"), None, "only a write's execute event counts rows");
        assert_eq!(lines[2]["rows_affected"], 3);
        assert_eq!(lines[1].get("fingerprint"), None, "what was read goes on the execute record only");
        assert_eq!(lines[2]["fingerprint"], "f".repeat(64));
        assert_eq!(lines[2]["tables"], serde_json::json!(["public.orders", "pub\"lic.x"]));
        assert_eq!(
            (&lines[2]["rows_returned"], &lines[2]["bytes_returned"], &lines[2]["truncated"]),
            (&2.into(), &31.into(), &true.into())
        );
        assert_eq!(lines[0]["stage"], "authorize");
        // The fast writer and the Serialize impl agree.
        let serialized: Vec<_> = batch.events().map(|e| serde_json::to_value(e).expect("serializes")).collect();
        assert_eq!(lines, serialized);
    }

    #[test]
    fn a_call_without_session_is_written_with_nulls() {
        let records = [record(Stage::Resolve, AuditDecision::Deny, Some(DenialCode::SessionContextInvalid))];
        let lines = written(&AuditBatch { session: None, tool: "t", records: &records, read: None, origin: None });
        for key in ["session_id", "identity", "tenant"] {
            assert_eq!(lines[0][key], serde_json::Value::Null, "{key}");
        }
        assert_eq!(lines[0]["code"], "SESSION_CONTEXT_INVALID");
    }

    #[test]
    fn timestamps_match_humantime_across_the_calendar() {
        // Leap days, century rules, month ends, and a spread of ordinary instants.
        let mut instants: Vec<u64> =
            vec![0, 59, 951_782_400, 951_868_799, 4_107_542_399, 4_107_628_800, 253_402_300_799];
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        for _ in 0..20_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            instants.push(x % 253_402_300_800);
        }
        for secs in instants {
            let at = SystemTime::UNIX_EPOCH + Duration::new(secs, (secs % 1_000_000) as u32 * 1_000 + 999);
            let mut ours = Vec::new();
            write_rfc3339_micros(&mut ours, at);
            assert_eq!(
                String::from_utf8(ours).expect("ascii"),
                humantime::format_rfc3339_micros(at).to_string(),
                "{secs}"
            );
        }
    }

    #[test]
    fn a_reused_formatter_matches_a_fresh_one() {
        let mut reused = Rfc3339::default();
        let base = SystemTime::UNIX_EPOCH + Duration::from_secs(1_764_000_000);
        let offsets_us = [0, 1, 999_999, 1_000_000, 1_000_001, 86_400_000_000, 86_400_000_000, 3];
        for offset in offsets_us {
            let at = base + Duration::from_micros(offset);
            let mut ours = Vec::new();
            reused.write(&mut ours, at);
            assert_eq!(String::from_utf8(ours).expect("ascii"), humantime::format_rfc3339_micros(at).to_string());
        }
    }

    #[test]
    fn out_of_range_timestamps_are_clamped() {
        let mut before = Vec::new();
        write_rfc3339_micros(&mut before, SystemTime::UNIX_EPOCH - Duration::from_secs(1));
        assert_eq!(before, b"1970-01-01T00:00:00.000000Z");
        let mut after = Vec::new();
        write_rfc3339_micros(&mut after, SystemTime::UNIX_EPOCH + Duration::from_secs(300_000_000_000));
        assert_eq!(after, b"9999-12-31T23:59:59.999999Z");
    }

    struct Broken;

    impl Write for Broken {
        fn write(&mut self, _: &[u8]) -> io::Result<usize> {
            Err(io::Error::other("disk full"))
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_failing_writer_is_an_error() {
        let records = [record(Stage::Resolve, AuditDecision::Allow, None)];
        let batch = AuditBatch { session: None, tool: "t", records: &records, read: None, origin: None };
        assert!(matches!(JsonLinesSink::new(Broken).record(&batch), Err(AuditError::Io(_))));
    }
}
