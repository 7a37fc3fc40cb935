//! MCP over stdin and stdout, with a thin layer in front of rmcp's transport so that every
//! message gets an answer or a documented refusal:
//!
//! - a line that is not JSON gets a JSON-RPC parse error (-32700), where rmcp would stay silent;
//! - a message over [`MAX_MESSAGE_BYTES`] is refused (-32600) and skipped, and serving goes on;
//! - JSON that is not a JSON-RPC 2.0 message gets an invalid-request error (-32600);
//! - an id that is neither a string nor an integer, or params that are not an object, are
//!   refused with the id echoed where it can be (-32600, -32602);
//! - until rmcp has answered an `initialize` with a result, any request but `initialize` and
//!   `ping` is refused (-32600) and notifications are dropped: rmcp would end the session on
//!   them; a second `initialize` is refused.
//!
//! Everything else passes to rmcp unchanged. One task owns stdout, so replies never interleave.
//! On end of input, SIGTERM or SIGINT, reading stops; rmcp finishes the calls in flight and the
//! function returns.

use serde_json::{Value, json};
use std::sync::Arc;

use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::sync::{Notify, mpsc};

use super::McpServer;
use super::result::{Encoded, Outputs, ServerMessage, encode};
use crate::service::Service;

/// The longest message read, in bytes. Longer ones are refused and skipped.
pub const MAX_MESSAGE_BYTES: usize = 4 << 20;

const PARSE_ERROR: i64 = -32700;
const INVALID_REQUEST: i64 = -32600;
const INVALID_PARAMS: i64 = -32602;

/// Serves MCP on stdin and stdout until the input ends or the process is asked to stop.
///
/// Pipes and sockets (how MCP clients start servers) are read and written without blocking,
/// on the runtime's own event loop; a terminal or a file falls back to tokio's standard streams,
/// which hand each read and write to a thread of their own.
pub async fn serve_stdio(service: Arc<Service>) -> std::io::Result<()> {
    let input = streams::stdin();
    let output = streams::stdout();
    serve_on(service, input, output).await
}

/// Serves MCP on any byte streams; see the module documentation.
pub async fn serve_on<R, W>(service: Arc<Service>, input: R, output: W) -> std::io::Result<()>
where
    R: AsyncRead + Unpin + Send + 'static,
    W: AsyncWrite + Unpin + Send + 'static,
{
    use rmcp::ServiceExt;

    let outputs = Arc::new(Outputs::default());
    let server = McpServer::new(service, Arc::clone(&outputs));
    let lifecycle = Arc::new(Lifecycle::default());
    let output = Arc::new(Output {
        writer: tokio::sync::Mutex::new(Box::new(output)),
        large: tokio::sync::Semaphore::new(1),
        lifecycle: lifecycle.clone(),
    });
    let (forward, incoming) = mpsc::channel(64);
    let activity = Arc::new(Notify::new());
    let armed = tokio::spawn(keep_a_timer_armed(Arc::clone(&activity)));
    let reader = tokio::spawn(read_client(input, forward, Arc::clone(&output), lifecycle, activity));
    match server.serve(Channel { incoming, output: Arc::clone(&output), outputs }).await {
        Ok(running) => {
            if let Err(error) = running.waiting().await {
                tracing::error!(%error, "the MCP session ended with an error");
            }
        }
        // The client left (or sent nothing valid) before initializing.
        Err(error) => tracing::info!(%error, "the MCP session ended before it was initialized"),
    }
    reader.abort();
    armed.abort();
    let _ = reader.await;
    output.shutdown().await
}

/// How long the timer [`keep_a_timer_armed`] keeps is set for: no longer than the least time
/// any read gives its client-side deadline beyond its own timeout (the adapters' grace).
const ARMED_FOR: std::time::Duration = std::time::Duration::from_millis(250);

/// Keeps a timer armed while messages keep coming. tokio's timer wakes its own event loop (an
/// eventfd write, then one more turn of the loop) whenever a timer is set to fire before every
/// timer already armed; each read sets a deadline, so with none armed each call paid for that
/// wake. One armed timer due no later than any read's deadline spares them. It is re-armed
/// while messages arrive and lapses after a quiet period, so an idle server does not wake.
/// Only a cost depends on it: a deadline set before it fires still wakes the loop, as before.
async fn keep_a_timer_armed(activity: Arc<Notify>) {
    use futures_util::FutureExt as _;
    loop {
        activity.notified().await;
        loop {
            tokio::time::sleep(ARMED_FOR).await;
            // Another period only if a message came during this one.
            if activity.notified().now_or_never().is_none() {
                break;
            }
        }
    }
}

type ClientMessage = rmcp::service::RxJsonRpcMessage<rmcp::RoleServer>;

/// The one writer of the output: whole lines, one at a time, so replies never interleave.
///
/// A large result takes its turn among large results first (`large`), and only then waits for
/// the output: so a short message (a `ping`'s answer) waits at most for the one line being
/// written, never for every large result queued behind it.
struct Output {
    writer: tokio::sync::Mutex<Box<dyn AsyncWrite + Unpin + Send>>,
    large: tokio::sync::Semaphore,
    lifecycle: Arc<Lifecycle>,
}

impl Output {
    /// Writes a line the front layer made (with its newline).
    async fn write_line(&self, line: &[u8]) -> std::io::Result<()> {
        let mut writer = self.writer.lock().await;
        writer.write_all(line).await?;
        writer.flush().await
    }

    /// Writes a message whole. A large result takes its turn among large results first.
    async fn write(&self, message: Encoded) -> std::io::Result<()> {
        if let Encoded::Line(line) = &message {
            self.lifecycle.observe(line);
        }
        let _turn = if message.is_large() { self.large.acquire().await.ok() } else { None };
        let mut writer = self.writer.lock().await;
        message.write_to(&mut *writer).await?;
        writer.flush().await
        // The output is let go of before the turn: a short message waiting gets it first.
    }

    async fn shutdown(&self) -> std::io::Result<()> {
        let mut writer = self.writer.lock().await;
        writer.flush().await
    }
}

/// rmcp's side of the session: the messages the reader checked and parsed, and the output.
struct Channel {
    incoming: mpsc::Receiver<ClientMessage>,
    output: Arc<Output>,
    outputs: Arc<Outputs>,
}

impl rmcp::transport::Transport<rmcp::RoleServer> for Channel {
    type Error = std::io::Error;

    fn send(
        &mut self,
        message: ServerMessage,
    ) -> impl std::future::Future<Output = Result<(), Self::Error>> + Send + 'static {
        let output = Arc::clone(&self.output);
        let message = encode(message, &self.outputs).map_err(std::io::Error::other);
        async move { output.write(message?).await }
    }

    fn receive(&mut self) -> impl std::future::Future<Output = Option<ClientMessage>> + Send {
        // A channel's receive is cancel-safe, as rmcp's select loop needs.
        self.incoming.recv()
    }

    async fn close(&mut self) -> Result<(), Self::Error> {
        self.incoming.close();
        Ok(())
    }
}

/// Whether rmcp has accepted an `initialize`: only its successful answer opens the session, so
/// that a refused `initialize` leaves the gate closed.
#[derive(Default)]
struct Lifecycle {
    /// The id of the `initialize` request forwarded last, until answered.
    pending: std::sync::Mutex<Option<Value>>,
    initialized: std::sync::atomic::AtomicBool,
}

impl Lifecycle {
    fn is_initialized(&self) -> bool {
        self.initialized.load(std::sync::atomic::Ordering::Acquire)
    }

    fn forwarding_initialize(&self, id: &Value) {
        if let Ok(mut pending) = self.pending.lock() {
            *pending = Some(id.clone());
        }
    }

    /// Watches rmcp's output for the answer to the pending `initialize`.
    fn observe(&self, line: &[u8]) {
        if self.is_initialized() {
            return;
        }
        let Ok(mut pending) = self.pending.lock() else { return };
        let Some(id) = pending.as_ref() else { return };
        let Ok(message) = serde_json::from_slice::<Value>(line) else { return };
        if message.get("id") != Some(id) {
            return;
        }
        if message.get("result").is_some() {
            self.initialized.store(true, std::sync::atomic::Ordering::Release);
        }
        *pending = None;
    }
}

/// How reading one line ended.
enum Line {
    Complete,
    TooLong,
    End,
}

/// Reads one line into `line` (without its newline), keeping at most `max` bytes: a longer line
/// is consumed to its end and reported as too long.
async fn read_line<R: AsyncRead + Unpin>(reader: &mut BufReader<R>, line: &mut Vec<u8>, max: usize) -> Line {
    let mut too_long = false;
    loop {
        let available = match reader.fill_buf().await {
            Ok(available) => available,
            Err(_) => return Line::End,
        };
        if available.is_empty() {
            return if line.is_empty() && !too_long {
                Line::End
            } else if too_long {
                Line::TooLong
            } else {
                Line::Complete
            };
        }
        let (chunk, found) = match available.iter().position(|byte| *byte == b'\n') {
            Some(at) => (&available[..at], Some(at)),
            None => (available, None),
        };
        if !too_long {
            if line.len() + chunk.len() > max {
                too_long = true;
                line.clear();
            } else {
                line.extend_from_slice(chunk);
            }
        }
        let used = found.map_or(chunk.len(), |at| at + 1);
        reader.consume(used);
        if found.is_some() {
            return if too_long { Line::TooLong } else { Line::Complete };
        }
    }
}

fn error_line(id: Value, code: i64, message: &str) -> Vec<u8> {
    let mut line =
        json!({"jsonrpc": "2.0", "id": id, "error": {"code": code, "message": message}}).to_string().into_bytes();
    line.push(b'\n');
    line
}

/// A request id that may be echoed: a string or a number, else null.
/// The id of a line that does not decode, when it can still be read: a lone surrogate or a
/// byte that is not UTF-8 in some other string does not hide it (skipped values are not
/// decoded), so the client can tell which request failed.
fn readable_id(text: &[u8]) -> Value {
    #[derive(serde::Deserialize)]
    struct IdOnly {
        id: Option<Value>,
    }
    match serde_json::from_slice::<IdOnly>(text) {
        Ok(IdOnly { id }) => echoable(id.as_ref()),
        Err(_) => Value::Null,
    }
}

fn echoable(id: Option<&Value>) -> Value {
    match id {
        Some(id @ (Value::String(_) | Value::Number(_))) => id.clone(),
        _ => Value::Null,
    }
}

/// Reads the client's messages, answering what rmcp would not, and passes the rest on.
async fn read_client<R>(
    input: R,
    forward: mpsc::Sender<ClientMessage>,
    output: Arc<Output>,
    lifecycle: Arc<Lifecycle>,
    activity: Arc<Notify>,
) where
    R: AsyncRead + Unpin,
{
    let mut reader = BufReader::new(input);
    let mut stop = Stop::new();
    let mut line = Vec::new();
    loop {
        line.clear();
        let read = tokio::select! {
            read = read_line(&mut reader, &mut line, MAX_MESSAGE_BYTES) => read,
            () = stop.requested() => break,
        };
        let reply = match read {
            Line::End => break,
            Line::TooLong => Some(error_line(
                Value::Null,
                INVALID_REQUEST,
                &format!("the message is longer than {MAX_MESSAGE_BYTES} bytes and was skipped"),
            )),
            Line::Complete => {
                let text = line.strip_suffix(b"\r").unwrap_or(&line);
                // A byte-order mark is not part of the message.
                let text = text.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(text);
                if text.iter().all(u8::is_ascii_whitespace) {
                    continue;
                }
                match check(text, &lifecycle) {
                    Check::Forward(message) => {
                        activity.notify_one();
                        if forward.send(*message).await.is_err() {
                            break;
                        }
                        continue;
                    }
                    Check::Drop => continue,
                    Check::Reply(reply) => Some(reply),
                }
            }
        };
        if let Some(reply) = reply
            && output.write_line(&reply).await.is_err()
        {
            break;
        }
    }
    // Dropping the sender ends rmcp's input; it finishes what is in flight.
}

enum Check {
    Forward(Box<ClientMessage>),
    Drop,
    Reply(Vec<u8>),
}

/// Decides what to do with one complete line.
fn check(text: &[u8], lifecycle: &Lifecycle) -> Check {
    let value: Value = match serde_json::from_slice(text) {
        Ok(value) => value,
        Err(_) => {
            return Check::Reply(error_line(readable_id(text), PARSE_ERROR, "Parse error: the message is not JSON"));
        }
    };
    let Some(message) = value.as_object() else {
        return Check::Reply(error_line(Value::Null, INVALID_REQUEST, "Invalid request: a message is a JSON object"));
    };
    let id = message.get("id");
    let method = message.get("method");
    let is_response = id.is_some() && (message.contains_key("result") || message.contains_key("error"));
    let valid = message.get("jsonrpc").and_then(Value::as_str) == Some("2.0")
        && (method.is_some_and(Value::is_string) || is_response)
        && id.is_none_or(|id| matches!(id, Value::String(_) | Value::Number(_)));
    if !valid {
        return Check::Reply(error_line(echoable(id), INVALID_REQUEST, "Invalid request: not a JSON-RPC 2.0 message"));
    }
    if let Some(Value::Number(number)) = id
        && number.as_i64().is_none()
    {
        let exact = number.is_f64() && number.as_f64().is_some_and(|f| f.abs() < 9.0e15);
        return Check::Reply(error_line(
            if exact { Value::Number(number.clone()) } else { Value::Null },
            INVALID_REQUEST,
            "Invalid request: an id is a string or an integer",
        ));
    }
    if method.is_some() && message.get("params").is_some_and(|params| !params.is_object()) {
        return Check::Reply(error_line(echoable(id), INVALID_PARAMS, "Invalid params: params must be an object"));
    }
    if lifecycle.is_initialized() {
        if method.and_then(Value::as_str) == Some("initialize") {
            return Check::Reply(error_line(echoable(id), INVALID_REQUEST, "the session is already initialized"));
        }
        return parsed(value);
    }
    match (method.and_then(Value::as_str), id) {
        (Some("initialize"), Some(id)) => {
            lifecycle.forwarding_initialize(id);
            parsed(value)
        }
        (Some("ping"), Some(_)) => parsed(value),
        (Some(_), Some(id)) => Check::Reply(error_line(
            id.clone(),
            INVALID_REQUEST,
            "the session is not initialized: send initialize first",
        )),
        // A notification or a response before initialize has nothing to answer.
        _ => Check::Drop,
    }
}

/// A checked message as rmcp's type. A request whose params do not fit its method is refused
/// with its id; a notification or a response that does not fit has nothing to answer.
fn parsed(value: Value) -> Check {
    let value = match tool_call(value) {
        Ok(message) => return Check::Forward(Box::new(message)),
        Err(value) => value,
    };
    let request = match (value.get("id"), value.get("method")) {
        // Only known methods can fail to parse (others become custom requests): short names.
        (Some(id), Some(Value::String(method))) => Some((id.clone(), method.chars().take(64).collect::<String>())),
        _ => None,
    };
    match serde_json::from_value::<ClientMessage>(value) {
        Ok(message) => Check::Forward(Box::new(message)),
        Err(error) => match request {
            Some((id, method)) => {
                // serde quotes the offending value: keep the message short.
                let mut reason = error.to_string();
                if let Some((cut, _)) = reason.char_indices().nth(200) {
                    reason.truncate(cut);
                    reason.push('…');
                }
                Check::Reply(error_line(
                    echoable(Some(&id)),
                    INVALID_PARAMS,
                    &format!("Invalid params for {method}: {reason}"),
                ))
            }
            None => Check::Drop,
        },
    }
}

/// A plain `tools/call` (an id, a tool's name, its arguments, nothing else) as rmcp's type,
/// built directly: rmcp's deserializer goes through serde's buffered untagged and flattened
/// forms, about a twentieth of a point query's CPU time in perf, more than parsing the line.
/// Any other message is handed back for that deserializer, which gives the same value for
/// this one.
fn tool_call(mut value: Value) -> Result<ClientMessage, Value> {
    use rmcp::model::{ClientRequest, JsonRpcMessage, JsonRpcRequest, Request};
    match value.as_object_mut().and_then(tool_call_parts) {
        Some((id, params)) => {
            Ok(JsonRpcMessage::Request(JsonRpcRequest::new(id, ClientRequest::CallToolRequest(Request::new(params)))))
        }
        None => Err(value),
    }
}

/// The id and params of a plain `tools/call` (checked by [`check`] to be a JSON-RPC 2.0
/// request), taking the arguments out of `message`; `None`, with `message` untouched, for
/// anything else.
fn tool_call_parts(
    message: &mut serde_json::Map<String, Value>,
) -> Option<(rmcp::model::RequestId, rmcp::model::CallToolRequestParams)> {
    use rmcp::model::{CallToolRequestParams, NumberOrString};
    if message.len() != 4 || message.get("method")?.as_str()? != "tools/call" || !message.contains_key("jsonrpc") {
        return None;
    }
    let id = match message.get("id")? {
        Value::Number(number) => NumberOrString::Number(number.as_i64()?),
        Value::String(id) => NumberOrString::String(id.as_str().into()),
        _ => return None,
    };
    let params = message.get_mut("params")?.as_object_mut()?;
    let name = params.get("name")?.as_str()?.to_owned();
    let plain = params.keys().all(|key| key == "name" || key == "arguments");
    if !plain || params.get("arguments").is_some_and(|arguments| !arguments.is_object()) {
        return None;
    }
    let call = CallToolRequestParams::new(name);
    match params.remove("arguments") {
        Some(Value::Object(arguments)) => Some((id, call.with_arguments(arguments))),
        _ => Some((id, call)),
    }
}

/// SIGTERM or SIGINT, once asked for.
struct Stop {
    #[cfg(unix)]
    signals: Option<(tokio::signal::unix::Signal, tokio::signal::unix::Signal)>,
}

impl Stop {
    fn new() -> Self {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            let signals = signal(SignalKind::terminate()).ok().zip(signal(SignalKind::interrupt()).ok());
            Stop { signals }
        }
        #[cfg(not(unix))]
        Stop {}
    }

    async fn requested(&mut self) {
        #[cfg(unix)]
        if let Some((terminate, interrupt)) = self.signals.as_mut() {
            tokio::select! {
                _ = terminate.recv() => {}
                _ = interrupt.recv() => {}
            }
            tracing::info!("asked to stop: finishing the calls in flight");
            return;
        }
        std::future::pending::<()>().await;
    }
}

/// stdin and stdout as streams of the runtime's event loop, where the operating system allows.
mod streams {
    use tokio::io::{AsyncRead, AsyncWrite};

    type Reader = Box<dyn AsyncRead + Unpin + Send>;
    type Writer = Box<dyn AsyncWrite + Unpin + Send>;

    pub(super) fn stdin() -> Reader {
        #[cfg(unix)]
        if let Some(reader) = unix::stdin() {
            return reader;
        }
        Box::new(tokio::io::stdin())
    }

    pub(super) fn stdout() -> Writer {
        #[cfg(unix)]
        if let Some(writer) = unix::stdout() {
            return writer;
        }
        Box::new(tokio::io::stdout())
    }

    /// A pipe or a Unix socket is duplicated and made non-blocking. Anything else (a terminal,
    /// a file), and a stream open on the same file as stderr (`2>&1`: logs and audit lines on
    /// stderr expect blocking writes), is left to tokio's standard streams.
    #[cfg(unix)]
    mod unix {
        use std::fs::File;
        use std::os::fd::{AsFd, OwnedFd};
        use std::os::unix::fs::{FileTypeExt, MetadataExt};

        use super::{Reader, Writer};

        enum Kind {
            Pipe(File),
            Socket(tokio::net::UnixStream),
        }

        fn open(file: File) -> Option<Kind> {
            let kind = file.metadata().ok()?.file_type();
            if kind.is_fifo() {
                return Some(Kind::Pipe(file));
            }
            if !kind.is_socket() {
                return None;
            }
            let socket = std::os::unix::net::UnixStream::from(OwnedFd::from(file));
            // Refuses a socket of another family.
            socket.local_addr().ok()?;
            socket.set_nonblocking(true).ok()?;
            tokio::net::UnixStream::from_std(socket).ok().map(Kind::Socket)
        }

        /// Duplicates `fd`, unless it is open on the same file as stderr.
        fn duplicate(fd: std::os::fd::BorrowedFd<'_>) -> Option<File> {
            let file = File::from(fd.try_clone_to_owned().ok()?);
            let stderr = File::from(std::io::stderr().as_fd().try_clone_to_owned().ok()?);
            let (this, err) = (file.metadata().ok()?, stderr.metadata().ok()?);
            ((this.dev(), this.ino()) != (err.dev(), err.ino())).then_some(file)
        }

        pub(super) fn stdin() -> Option<Reader> {
            match open(duplicate(std::io::stdin().as_fd())?)? {
                Kind::Pipe(file) => Some(Box::new(tokio::net::unix::pipe::Receiver::from_file(file).ok()?)),
                Kind::Socket(socket) => Some(Box::new(socket)),
            }
        }

        pub(super) fn stdout() -> Option<Writer> {
            match open(duplicate(std::io::stdout().as_fd())?)? {
                Kind::Pipe(file) => Some(Box::new(tokio::net::unix::pipe::Sender::from_file(file).ok()?)),
                Kind::Socket(socket) => Some(Box::new(socket)),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reply_of(text: &str, lifecycle: &Lifecycle) -> Option<Value> {
        match check(text.as_bytes(), lifecycle) {
            Check::Reply(line) => Some(serde_json::from_slice(&line).expect("JSON")),
            Check::Forward(_) | Check::Drop => None,
        }
    }

    /// A line that does not decode still gets its id back when the id can be read.
    #[test]
    fn a_message_that_does_not_decode_gets_its_id_back_when_it_can_be_read() {
        let lifecycle = Lifecycle::default();
        for (line, id) in [
            (r#"{"jsonrpc": "2.0", "id": 7, "method": "tools/call", "params": {"name": "q\ud800"}}"#, json!(7)),
            (r#"{"jsonrpc": "2.0", "method": "ping", "params": {"x": "\udfff"}, "id": "a"}"#, json!("a")),
            (r#"{"jsonrpc": "2.0", "id": 7, "method": "ping""#, Value::Null),
            (r#"{"id": "\ud800", "method": "ping"}"#, Value::Null),
            ("not JSON", Value::Null),
        ] {
            let reply = reply_of(line, &lifecycle).expect("answered");
            assert_eq!(reply["error"]["code"], json!(PARSE_ERROR), "{line}");
            assert_eq!(reply["id"], id, "{line}");
        }
    }

    #[test]
    fn a_plain_tool_call_is_built_as_rmcp_would_parse_it() {
        let plain = [
            json!({"jsonrpc": "2.0", "id": 7, "method": "tools/call", "params": {"name": "query_read", "arguments": {"query": "SELECT 1", "params": [1, "a"]}}}),
            json!({"jsonrpc": "2.0", "id": "x\"y", "method": "tools/call", "params": {"name": "list_tables"}}),
            json!({"id": -1, "params": {"arguments": {}, "name": ""}, "method": "tools/call", "jsonrpc": "2.0"}),
        ];
        for message in plain {
            let rmcp: ClientMessage = serde_json::from_value(message.clone()).expect("rmcp parses it");
            let built = tool_call(message).expect("a plain tools/call");
            assert_eq!(format!("{built:?}"), format!("{rmcp:?}"));
            assert_eq!(
                serde_json::to_value(&built).expect("serializes"),
                serde_json::to_value(&rmcp).expect("serializes")
            );
        }
        let other = [
            json!({"jsonrpc": "2.0", "id": 7, "method": "tools/list", "params": {"name": "query_read"}}),
            json!({"jsonrpc": "2.0", "id": 7, "method": "tools/call", "params": {"name": "q", "_meta": {"progressToken": 1}}}),
            json!({"jsonrpc": "2.0", "id": 7, "method": "tools/call", "params": {"name": "q", "arguments": null}}),
            json!({"jsonrpc": "2.0", "id": 7, "method": "tools/call", "params": {"name": "q", "arguments": [1]}}),
            json!({"jsonrpc": "2.0", "id": 7, "method": "tools/call", "params": {"name": 1}}),
            json!({"jsonrpc": "2.0", "id": 7, "method": "tools/call", "params": {}}),
            json!({"jsonrpc": "2.0", "id": 7, "method": "tools/call", "params": []}),
            json!({"jsonrpc": "2.0", "id": 7, "method": "tools/call"}),
            json!({"jsonrpc": "2.0", "id": 1.5, "method": "tools/call", "params": {"name": "q"}}),
            json!({"jsonrpc": "2.0", "id": null, "method": "tools/call", "params": {"name": "q"}}),
            json!({"jsonrpc": "2.0", "method": "tools/call", "params": {"name": "q"}, "extra": 1}),
            json!({"jsonrpc": "2.0", "id": 7, "method": "tools/call", "params": {"name": "q"}, "extra": 1}),
            json!({"id": 7, "method": "tools/call", "params": {"name": "q"}, "extra": 1}),
            json!(["tools/call"]),
        ];
        for message in other {
            assert_eq!(tool_call(message.clone()).expect_err("not a plain tools/call"), message);
        }
    }

    #[test]
    fn error_codes_and_bounds_are_the_documented_ones() {
        assert_eq!((PARSE_ERROR, INVALID_REQUEST, INVALID_PARAMS), (-32700, -32600, -32602));
        assert_eq!(MAX_MESSAGE_BYTES, 4 * 1024 * 1024);
    }

    #[test]
    fn every_malformed_message_is_answered() {
        let initialized = Lifecycle::default();
        initialized.initialized.store(true, std::sync::atomic::Ordering::Release);
        let initialized = &initialized;
        let parse = reply_of("{not json", initialized).expect("answered");
        assert_eq!(parse["error"]["code"], json!(PARSE_ERROR));
        assert_eq!(parse["id"], Value::Null);
        let deep = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
        assert_eq!(reply_of(&deep, initialized).expect("answered")["error"]["code"], json!(PARSE_ERROR));
        for invalid in [
            r#"[1, 2]"#,
            r#"{"jsonrpc": "1.0", "id": 1, "method": "ping"}"#,
            r#"{"jsonrpc": "2.0", "id": 1}"#,
            r#"{"jsonrpc": "2.0", "id": {"x": 1}, "method": "ping"}"#,
            r#"{"jsonrpc": "2.0", "id": 7, "method": 5}"#,
        ] {
            let reply = reply_of(invalid, initialized).expect("answered");
            assert_eq!(reply["error"]["code"], json!(INVALID_REQUEST), "{invalid}");
        }
        assert_eq!(
            reply_of(r#"{"jsonrpc": "2.0", "id": 7, "method": 5}"#, initialized).expect("answered")["id"],
            json!(7)
        );
        assert!(reply_of(r#"{"jsonrpc": "2.0", "id": 1, "method": "tools/list"}"#, initialized).is_none());
        let fractional = reply_of(r#"{"jsonrpc": "2.0", "id": 1.5, "method": "ping"}"#, initialized).expect("answered");
        assert_eq!(
            (fractional["id"].clone(), fractional["error"]["code"].clone()),
            (json!(1.5), json!(INVALID_REQUEST))
        );
        let huge = reply_of(r#"{"jsonrpc": "2.0", "id": 1180591620717411303424, "method": "ping"}"#, initialized);
        assert_eq!(huge.expect("answered")["id"], Value::Null, "an id that cannot be echoed exactly is not echoed");
        let params = reply_of(r#"{"jsonrpc": "2.0", "id": 3, "method": "tools/list", "params": []}"#, initialized);
        assert_eq!(params.expect("answered")["error"]["code"], json!(INVALID_PARAMS));
        // rmcp takes most misfitting params as a custom request; `_meta` must be an object.
        let misfit =
            reply_of(r#"{"jsonrpc": "2.0", "id": "m", "method": "ping", "params": {"_meta": 5}}"#, initialized)
                .expect("answered");
        assert_eq!((misfit["id"].clone(), misfit["error"]["code"].clone()), (json!("m"), json!(INVALID_PARAMS)));
        let long = format!(
            r#"{{"jsonrpc": "2.0", "id": 5, "method": "ping", "params": {{"_meta": "{}"}}}}"#,
            "x".repeat(10_000)
        );
        let reason = reply_of(&long, initialized).expect("answered")["error"]["message"].as_str().map(str::len);
        assert!(reason.is_some_and(|length| length < 300), "the refusal does not quote the input at length");
        let notification =
            check(br#"{"jsonrpc": "2.0", "method": "notifications/initialized", "params": {"_meta": 5}}"#, initialized);
        assert!(matches!(notification, Check::Drop), "a notification that does not fit is dropped, not answered");
        let again = reply_of(r#"{"jsonrpc": "2.0", "id": 4, "method": "initialize", "params": {}}"#, initialized);
        assert_eq!(again.expect("answered")["error"]["message"], json!("the session is already initialized"));
    }

    #[test]
    fn only_initialize_and_ping_pass_before_an_initialize_succeeds() {
        let lifecycle = Lifecycle::default();
        let early = reply_of(r#"{"jsonrpc": "2.0", "id": "a", "method": "tools/call", "params": {}}"#, &lifecycle);
        assert_eq!(early.as_ref().map(|r| r["id"].clone()), Some(json!("a")));
        let notification = br#"{"jsonrpc": "2.0", "method": "notifications/initialized"}"#;
        assert!(matches!(check(notification, &lifecycle), Check::Drop));
        assert!(matches!(check(br#"{"jsonrpc": "2.0", "id": 1, "method": "ping"}"#, &lifecycle), Check::Forward(_)));
        let initialize = br#"{"jsonrpc": "2.0", "id": 2, "method": "initialize", "params": {}}"#;
        assert!(matches!(check(initialize, &lifecycle), Check::Forward(_)));
        // rmcp refuses it: the gate stays closed, and a notification still cannot end the session.
        lifecycle.observe(br#"{"jsonrpc": "2.0", "id": 2, "error": {"code": -32602, "message": "bad"}}"#);
        assert!(!lifecycle.is_initialized());
        assert!(matches!(check(notification, &lifecycle), Check::Drop));
        let retry = br#"{"jsonrpc": "2.0", "id": 3, "method": "initialize", "params": {}}"#;
        assert!(matches!(check(retry, &lifecycle), Check::Forward(_)));
        lifecycle.observe(br#"{"jsonrpc": "2.0", "id": 99, "result": {}}"#);
        assert!(!lifecycle.is_initialized(), "only the answer to the initialize counts");
        lifecycle.observe(br#"{"jsonrpc": "2.0", "id": 3, "result": {"protocolVersion": "2025-06-18"}}"#);
        assert!(lifecycle.is_initialized());
        assert!(matches!(check(notification, &lifecycle), Check::Forward(_)));
    }

    #[tokio::test]
    async fn long_lines_are_skipped_whole_and_reading_goes_on() {
        let input = format!("{}\nshort\n", "x".repeat(100));
        let mut reader = BufReader::with_capacity(16, input.as_bytes());
        let mut line = Vec::new();
        assert!(matches!(read_line(&mut reader, &mut line, 50).await, Line::TooLong));
        line.clear();
        assert!(matches!(read_line(&mut reader, &mut line, 50).await, Line::Complete));
        assert_eq!(line, b"short");
        line.clear();
        assert!(matches!(read_line(&mut reader, &mut line, 50).await, Line::End));
        // A line of exactly the maximum is read whole, across several buffer fills.
        let exact = format!("{}\n{}\n", "y".repeat(50), "z".repeat(51));
        let mut reader = BufReader::with_capacity(8, exact.as_bytes());
        line.clear();
        assert!(matches!(read_line(&mut reader, &mut line, 50).await, Line::Complete));
        assert_eq!(line.len(), 50);
        line.clear();
        assert!(matches!(read_line(&mut reader, &mut line, 50).await, Line::TooLong), "one byte more is too long");
        line.clear();
        let mut unterminated = BufReader::new("tail".as_bytes());
        assert!(matches!(read_line(&mut unterminated, &mut line, 50).await, Line::Complete));
        assert_eq!(line, b"tail");
    }
}
