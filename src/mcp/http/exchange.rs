//! One message through a session's conversation: handed to rmcp and its answer awaited, or,
//! for a plain `tools/call` of an initialized session, answered on the request's own task.

use bytes::Bytes;
use http::{Response, StatusCode};
use rmcp::model::{ClientNotification, ClientRequest, JsonRpcMessage, JsonRpcNotification, JsonRpcRequest};
use serde_json::{Value, json};

use super::session::{self, Conversation, id_key};
use super::{Body, error, jsonrpc_error, respond};
use crate::mcp::Caller;
use crate::mcp::front::{self, Check, INVALID_REQUEST};

/// JSON-RPC's internal error, as rmcp answers a cancelled request.
const INTERNAL_ERROR: i64 = -32603;

/// Sends one checked message through `conversation` and waits for its answer: 200 with the
/// JSON-RPC answer for a request, 202 for a notification or a response.
pub(super) async fn exchange(
    conversation: &Conversation,
    body: &[u8],
    caller: &Caller,
) -> Result<Response<Body>, Response<Body>> {
    let message = match front::check(body, &conversation.router.lifecycle) {
        Check::Forward(message) => *message,
        Check::Drop => return Ok(respond(StatusCode::ACCEPTED, "application/json", Bytes::new())),
        Check::Reply(mut line) => {
            line.pop();
            return Ok(jsonrpc_error(line));
        }
    };
    let message = match message {
        JsonRpcMessage::Request(JsonRpcRequest { id, request: ClientRequest::CallToolRequest(call), .. })
            if is_plain(&call.params)
                && let Some(revision) = conversation.answers_calls() =>
        {
            return call_directly(conversation, id, call.params, caller, revision).await;
        }
        other => other,
    };
    let JsonRpcMessage::Request(request) = &message else {
        if let JsonRpcMessage::Notification(JsonRpcNotification {
            notification: ClientNotification::CancelledNotification(cancelled),
            ..
        }) = &message
            && let Some(id) = &cancelled.params.request_id
        {
            conversation.router.cancel(&id_key(id));
        }
        if !conversation.forward(message, caller).await {
            return Err(gone());
        }
        return Ok(respond(StatusCode::ACCEPTED, "application/json", Bytes::new()));
    };
    let id = request.id.clone();
    if let ClientRequest::InitializeRequest(_) = &request.request {
        conversation.router.lifecycle.forwarding_initialize(&serde_json::to_value(&id).unwrap_or(Value::Null));
    }
    let key = id_key(&id);
    let Some(answer) = conversation.router.expect(key.clone(), false) else {
        return Err(in_progress(id));
    };
    let waiting = Waiting { conversation, key: Some(key), id: id.clone(), caller };
    if !conversation.forward(message, caller).await {
        return Err(gone());
    }
    let mut waiting = waiting;
    match answer.await {
        Ok(answer) => {
            waiting.key = None;
            Ok(respond(StatusCode::OK, "application/json", Bytes::from(answer)))
        }
        Err(_) => {
            waiting.key = None;
            Err(gone())
        }
    }
}

/// Whether a `tools/call` carries only a tool's name and arguments: one with `_meta` or
/// input responses goes through rmcp, which reads them.
fn is_plain(params: &rmcp::model::CallToolRequestParams) -> bool {
    params.meta.is_none() && params.input_responses.is_none() && params.request_state.is_none()
}

/// Answers a plain `tools/call` of an initialized session here ([`Conversation::call_tool`]).
/// A `notifications/cancelled` naming it stops it, and its answer is the error rmcp gives a
/// cancelled request.
async fn call_directly(
    conversation: &Conversation,
    id: rmcp::model::RequestId,
    params: rmcp::model::CallToolRequestParams,
    caller: &Caller,
    revision: &str,
) -> Result<Response<Body>, Response<Body>> {
    let key = id_key(&id);
    let Some(cancelled) = conversation.router.expect(key.clone(), true) else {
        return Err(in_progress(id));
    };
    let _pending = Pending { router: &conversation.router, key };
    let echo = id.clone().into_json_value();
    tokio::select! {
        answer = conversation.call_tool(id, params, caller, revision) => match answer {
            Ok(answer) => Ok(respond(StatusCode::OK, "application/json", Bytes::from(answer))),
            Err(cause) => {
                tracing::error!(error = %cause, "the answer to a tool call could not be encoded");
                Err(error(StatusCode::INTERNAL_SERVER_ERROR, echo, INTERNAL_ERROR, "the answer could not be encoded"))
            }
        },
        _ = cancelled => Ok(error(StatusCode::OK, echo, INTERNAL_ERROR, "the request was cancelled")),
    }
}

/// A call the transport answers itself, registered under its id until it is answered.
struct Pending<'a> {
    router: &'a session::Router,
    key: String,
}

impl Drop for Pending<'_> {
    fn drop(&mut self) {
        self.router.forget(&self.key);
    }
}

fn in_progress(id: rmcp::model::RequestId) -> Response<Body> {
    error(StatusCode::CONFLICT, id.into_json_value(), INVALID_REQUEST, "a request with this id is being answered")
}

/// A POST waiting for its answer. Dropped before the answer came (the client went away), it
/// cancels the request, which stops its statement on the database.
struct Waiting<'a> {
    conversation: &'a Conversation,
    key: Option<String>,
    id: rmcp::model::RequestId,
    caller: &'a Caller,
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        let Some(key) = self.key.take() else { return };
        if !self.conversation.router.forget(&key) {
            return;
        }
        let cancel = json!({"jsonrpc": "2.0", "method": "notifications/cancelled",
            "params": {"requestId": self.id.clone().into_json_value(), "reason": "the HTTP request was closed"}});
        if let Ok(cancel) = serde_json::from_value(cancel) {
            let conversation = self.conversation.clone();
            let caller = self.caller.clone();
            tokio::spawn(async move {
                conversation.forward(cancel, &caller).await;
            });
        }
    }
}

fn gone() -> Response<Body> {
    error(StatusCode::INTERNAL_SERVER_ERROR, Value::Null, INVALID_REQUEST, "the session ended before answering")
}
