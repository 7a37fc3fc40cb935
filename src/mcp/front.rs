//! The checks every transport makes before rmcp sees a message, so that every message gets an
//! answer or a documented refusal:
//!
//! - text that is not JSON gets a JSON-RPC parse error (-32700), where rmcp would stay silent;
//! - JSON that is not a JSON-RPC 2.0 message gets an invalid-request error (-32600);
//! - an id that is neither a string nor an integer, or params that are not an object, are
//!   refused with the id echoed where it can be (-32600, -32602);
//! - until rmcp has answered an `initialize` with a result, any request but `initialize` and
//!   `ping` is refused (-32600) and notifications are dropped: rmcp would end the session on
//!   them; a second `initialize` is refused.

use serde_json::{Value, json};

/// A message from the client, as rmcp takes it.
pub(crate) type ClientMessage = rmcp::service::RxJsonRpcMessage<rmcp::RoleServer>;

pub(crate) const PARSE_ERROR: i64 = -32700;
pub(crate) const INVALID_REQUEST: i64 = -32600;
pub(crate) const INVALID_PARAMS: i64 = -32602;

/// Whether rmcp has accepted an `initialize`: only its successful answer opens the session, so
/// that a refused `initialize` leaves the gate closed.
#[derive(Default)]
pub(crate) struct Lifecycle {
    /// The id of the `initialize` request forwarded last, until answered.
    pending: std::sync::Mutex<Option<Value>>,
    initialized: std::sync::atomic::AtomicBool,
    /// The protocol revision rmcp's `initialize` result named.
    negotiated: std::sync::OnceLock<Box<str>>,
}

impl Lifecycle {
    /// A lifecycle with no `initialize` to wait for (a stateless revision's request).
    pub(crate) fn opened() -> Lifecycle {
        let lifecycle = Lifecycle::default();
        lifecycle.initialized.store(true, std::sync::atomic::Ordering::Release);
        lifecycle
    }

    pub(crate) fn is_initialized(&self) -> bool {
        self.initialized.load(std::sync::atomic::Ordering::Acquire)
    }

    pub(crate) fn forwarding_initialize(&self, id: &Value) {
        if let Ok(mut pending) = self.pending.lock() {
            *pending = Some(id.clone());
        }
    }

    /// Watches rmcp's output for the answer to the pending `initialize`.
    pub(crate) fn observe(&self, line: &[u8]) {
        if self.is_initialized() {
            return;
        }
        let Ok(mut pending) = self.pending.lock() else { return };
        let Some(id) = pending.as_ref() else { return };
        let Ok(message) = serde_json::from_slice::<Value>(line) else { return };
        if message.get("id") != Some(id) {
            return;
        }
        if let Some(result) = message.get("result") {
            if let Some(version) = result.get("protocolVersion").and_then(Value::as_str) {
                let _ = self.negotiated.set(version.into());
            }
            self.initialized.store(true, std::sync::atomic::Ordering::Release);
        }
        *pending = None;
    }

    /// The protocol revision the session's `initialize` settled on, once it has.
    pub(crate) fn negotiated(&self) -> Option<&str> {
        self.negotiated.get().map(|version| &**version)
    }
}

pub(crate) fn error_line(id: Value, code: i64, message: &str) -> Vec<u8> {
    let mut line =
        json!({"jsonrpc": "2.0", "id": id, "error": {"code": code, "message": message}}).to_string().into_bytes();
    line.push(b'\n');
    line
}

/// A request id that may be echoed: a string or a number, else null.
/// The id of a line that does not decode, when it can still be read: a lone surrogate or a
/// byte that is not UTF-8 in some other string does not hide it (skipped values are not
/// decoded), so the client can tell which request failed.
pub(crate) fn readable_id(text: &[u8]) -> Value {
    #[derive(serde::Deserialize)]
    struct IdOnly {
        id: Option<Value>,
    }
    match serde_json::from_slice::<IdOnly>(text) {
        Ok(IdOnly { id }) => echoable(id.as_ref()),
        Err(_) => Value::Null,
    }
}

pub(crate) fn echoable(id: Option<&Value>) -> Value {
    match id {
        Some(id @ (Value::String(_) | Value::Number(_))) => id.clone(),
        _ => Value::Null,
    }
}

pub(crate) enum Check {
    Forward(Box<ClientMessage>),
    Drop,
    Reply(Vec<u8>),
}

/// Decides what to do with one complete line.
pub(crate) fn check(text: &[u8], lifecycle: &Lifecycle) -> Check {
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
        Ok(message) => match misfit(&message) {
            Some(reason) => {
                let (id, method) = request.unwrap_or_default();
                Check::Reply(error_line(
                    echoable(Some(&id)),
                    INVALID_PARAMS,
                    &format!("Invalid params for {method}: {reason}"),
                ))
            }
            None => Check::Forward(Box::new(message)),
        },
        Err(error) => match request {
            Some((id, method)) => Check::Reply(error_line(
                echoable(Some(&id)),
                INVALID_PARAMS,
                &format!("Invalid params for {method}: {}", short(error.to_string())),
            )),
            None => Check::Drop,
        },
    }
}

/// Why a request for a method this server answers did not fit that method's params, if it did
/// not. rmcp's request type is an untagged enum ending with a custom request, which takes any
/// method: a `tools/call` without a name, say, lands there and would be answered as an unknown
/// method (-32601), where its params are what is wrong. (rmcp takes any `tools/list` params
/// that are an object.)
fn misfit(message: &ClientMessage) -> Option<String> {
    use rmcp::model::{
        CallToolRequestMethod, CallToolRequestParams, ClientRequest, ConstString, InitializeRequestParams,
        InitializeResultMethod, JsonRpcMessage, JsonRpcRequest,
    };
    let JsonRpcMessage::Request(JsonRpcRequest { request: ClientRequest::CustomRequest(custom), .. }) = message else {
        return None;
    };
    let params = custom.params.clone().unwrap_or(Value::Null);
    let fits = match custom.method.as_str() {
        CallToolRequestMethod::VALUE => serde_json::from_value::<CallToolRequestParams>(params).map(drop),
        InitializeResultMethod::VALUE => serde_json::from_value::<InitializeRequestParams>(params).map(drop),
        _ => return None,
    };
    Some(short(fits.err().map_or_else(|| "they do not fit the method".to_owned(), |error| error.to_string())))
}

/// serde's reason, which quotes the offending value, cut to 200 characters.
fn short(mut reason: String) -> String {
    if let Some((cut, _)) = reason.char_indices().nth(200) {
        reason.truncate(cut);
        reason.push('…');
    }
    reason
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
        assert_eq!(crate::mcp::MAX_MESSAGE_BYTES, 4 * 1024 * 1024);
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

    /// rmcp's request type takes a known method whose params do not fit as a custom request,
    /// which it would answer as an unknown method: the front layer answers -32602 with the
    /// reason and the id. An unknown method still goes to rmcp (-32601).
    #[test]
    fn a_known_method_whose_params_do_not_fit_is_invalid_params_not_an_unknown_method() {
        let initialized = &Lifecycle::default();
        initialized.forwarding_initialize(&json!(0));
        initialized.observe(br#"{"jsonrpc": "2.0", "id": 0, "result": {}}"#);
        for (line, reason) in [
            (
                r#"{"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"arguments": {}}}"#,
                "missing field `name`",
            ),
            (r#"{"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": 5}}"#, "expected a string"),
            (
                r#"{"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": "q", "arguments": [1]}}"#,
                "map",
            ),
            (r#"{"jsonrpc": "2.0", "id": 1, "method": "tools/call"}"#, "CallToolRequestParams"),
        ] {
            let reply = reply_of(line, initialized).unwrap_or_else(|| panic!("{line}: answered"));
            assert_eq!(
                (reply["id"].clone(), reply["error"]["code"].clone()),
                (json!(1), json!(INVALID_PARAMS)),
                "{line}"
            );
            let message = reply["error"]["message"].as_str().unwrap_or_default();
            assert!(message.starts_with("Invalid params for ") && message.contains(reason), "{line}: {message}");
        }
        let fresh = &Lifecycle::default();
        let reply =
            reply_of(r#"{"jsonrpc": "2.0", "id": 2, "method": "initialize", "params": {"capabilities": {}}}"#, fresh);
        let message = reply.expect("answered")["error"]["message"].clone();
        assert_eq!(message, json!("Invalid params for initialize: missing field `protocolVersion`"));
        for forwarded in [
            r#"{"jsonrpc": "2.0", "id": 1, "method": "foo/bar", "params": {"x": 1}}"#,
            r#"{"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": "q", "arguments": {"a": 1}}}"#,
        ] {
            assert!(reply_of(forwarded, initialized).is_none(), "{forwarded}: forwarded to rmcp");
        }
    }

    #[test]
    fn only_initialize_and_ping_pass_before_an_initialize_succeeds() {
        let lifecycle = Lifecycle::default();
        let early = reply_of(r#"{"jsonrpc": "2.0", "id": "a", "method": "tools/call", "params": {}}"#, &lifecycle);
        assert_eq!(early.as_ref().map(|r| r["id"].clone()), Some(json!("a")));
        let notification = br#"{"jsonrpc": "2.0", "method": "notifications/initialized"}"#;
        assert!(matches!(check(notification, &lifecycle), Check::Drop));
        assert!(matches!(check(br#"{"jsonrpc": "2.0", "id": 1, "method": "ping"}"#, &lifecycle), Check::Forward(_)));
        // An initialize whose params do not fit is refused here; the gate stays closed.
        let unfit = reply_of(r#"{"jsonrpc": "2.0", "id": 2, "method": "initialize", "params": {}}"#, &lifecycle);
        assert_eq!(unfit.expect("answered")["error"]["code"], json!(INVALID_PARAMS));
        assert!(!lifecycle.is_initialized());
        let initialize = br#"{"jsonrpc": "2.0", "id": 2, "method": "initialize", "params": {"protocolVersion": "0",
            "capabilities": {}, "clientInfo": {"name": "c", "version": "1"}}}"#;
        assert!(matches!(check(initialize, &lifecycle), Check::Forward(_)));
        // rmcp refuses it: the gate stays closed, and a notification still cannot end the session.
        lifecycle.observe(br#"{"jsonrpc": "2.0", "id": 2, "error": {"code": -32602, "message": "bad"}}"#);
        assert!(!lifecycle.is_initialized());
        assert!(matches!(check(notification, &lifecycle), Check::Drop));
        let retry = br#"{"jsonrpc": "2.0", "id": 3, "method": "initialize", "params": {"protocolVersion": "0",
            "capabilities": {}, "clientInfo": {"name": "c", "version": "1"}}}"#;
        assert!(matches!(check(retry, &lifecycle), Check::Forward(_)));
        lifecycle.observe(br#"{"jsonrpc": "2.0", "id": 99, "result": {}}"#);
        assert!(!lifecycle.is_initialized(), "only the answer to the initialize counts");
        lifecycle.observe(br#"{"jsonrpc": "2.0", "id": 3, "result": {"protocolVersion": "2025-06-18"}}"#);
        assert!(lifecycle.is_initialized());
        assert!(matches!(check(notification, &lifecycle), Check::Forward(_)));
    }
}
