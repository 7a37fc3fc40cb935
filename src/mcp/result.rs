//! The one way a tool's result reaches the wire, for every transport.
//!
//! A tool's output is JSON text already ([`ToolOutput`]); a `tools/call` result carries it twice,
//! as its structured content and, escaped, as its one text block. Parsing it into a
//! `serde_json::Value` for rmcp and serializing it again would cost more than the query, so the
//! output travels beside rmcp instead of through it:
//!
//! 1. the handler leaves the output in [`Outputs`] and returns rmcp a result with no content,
//!    whose `_meta` names the output's handle ([`Outputs::hold`]);
//! 2. rmcp completes the result as the negotiated protocol revision wants (`isError`,
//!    `resultType`…) and hands the message to the transport;
//! 3. the transport calls [`encode`], which takes the output back by its handle and writes the
//!    message: rmcp's members of the result as rmcp serializes them, then the text block and the
//!    structured content from the output. [`Encoded::write_to`] writes it, escaping the text a
//!    piece at a time so that no escaped copy of a large result is made whole.
//!
//! Every member comes from a serializer or from [`ToolOutput`], which holds one JSON value
//! (see its documentation), so what is written is one JSON-RPC message.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use rmcp::model::{CallToolResult, JsonRpcMessage, JsonRpcResponse, MetaObject, ServerResult};
use serde_json::Value;
use tokio::io::{AsyncWrite, AsyncWriteExt};

use crate::json::text::escape_json_text;
use crate::tools::ToolOutput;

/// A message from rmcp to the client.
pub(crate) type ServerMessage = rmcp::service::TxJsonRpcMessage<rmcp::RoleServer>;

/// The `_meta` member that names a held output. It never reaches the wire: [`encode`] takes it
/// out.
const HANDLE: &str = "sqlwarden/output";

/// How much of a large result is escaped and written at a time.
pub(crate) const PIECE: usize = 256 << 10;

/// Tool outputs between the handler that made them and the transport that writes them, each
/// under a handle used once.
#[derive(Default)]
pub(crate) struct Outputs {
    next: AtomicU64,
    held: Mutex<HashMap<u64, ToolOutput>>,
}

impl Outputs {
    /// Holds `output` and returns the result rmcp is to send for it: no content yet, and the
    /// output's handle in `_meta`.
    pub(crate) fn hold(&self, output: ToolOutput) -> CallToolResult {
        let handle = self.next.fetch_add(1, Ordering::Relaxed);
        if let Ok(mut held) = self.held.lock() {
            held.insert(handle, output);
        }
        let mut result = CallToolResult::success(Vec::new());
        result.meta = Some(MetaObject(serde_json::Map::from_iter([(HANDLE.to_owned(), Value::from(handle))])));
        result
    }

    /// The output held under the handle `result` names, taking the handle out of the result.
    fn take(&self, result: &mut CallToolResult) -> Option<Result<ToolOutput, Unheld>> {
        let meta = result.meta.as_mut()?;
        let handle = meta.0.remove(HANDLE)?;
        if meta.0.is_empty() {
            result.meta = None;
        }
        let output = handle.as_u64().and_then(|handle| self.held.lock().ok()?.remove(&handle));
        Some(output.ok_or(Unheld))
    }

    /// How many outputs wait for their message to be written.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.held.lock().map_or(0, |held| held.len())
    }
}

/// A result named an output that is not held (it cannot be made to: only [`Outputs::hold`]
/// names one, and only [`encode`] takes it).
#[derive(Debug, thiserror::Error)]
#[error("a tool result names an output that is not held")]
pub(crate) struct Unheld;

/// A message ready to write.
pub(crate) enum Encoded {
    /// One line of JSON, without its newline.
    Line(Vec<u8>),
    /// A tool's result: `head` (the message up to the text block's content), the output
    /// escaped as that content, the rest of the block and the structured content's name, the
    /// output as it is, and `}}` closing the result and the message.
    Result { head: Vec<u8>, output: String },
}

/// What follows the escaped text: the end of the text block and of `content`, then the name
/// of the structured content.
const AFTER_TEXT: &[u8] = b"\"}],\"structuredContent\":";

/// A message as JSON, with a held tool output written in (see the module documentation).
pub(crate) fn encode(message: ServerMessage, outputs: &Outputs) -> Result<Encoded, EncodeError> {
    let JsonRpcMessage::Response(JsonRpcResponse { id, result: ServerResult::CallToolResult(mut result), jsonrpc }) =
        message
    else {
        return Ok(Encoded::Line(serde_json::to_vec(&message)?));
    };
    let Some(output) = outputs.take(&mut result) else {
        let message: ServerMessage =
            JsonRpcMessage::Response(JsonRpcResponse { jsonrpc, id, result: ServerResult::CallToolResult(result) });
        return Ok(Encoded::Line(serde_json::to_vec(&message)?));
    };
    let output = output?;
    // The structured content is an object: any other value is wrapped as {"result": …}.
    let output = if output.is_object() { output.into_json() } else { format!("{{\"result\":{}}}", output.as_json()) };
    let mut head = Vec::with_capacity(128);
    head.extend_from_slice(b"{\"jsonrpc\":\"2.0\",\"id\":");
    serde_json::to_writer(&mut head, &id)?;
    head.extend_from_slice(b",\"result\":{");
    // rmcp's members, as rmcp writes them; the content and the structured content are ours.
    let Value::Object(mut members) = serde_json::to_value(&result)? else {
        return Err(EncodeError::NotAnObject);
    };
    members.remove("content");
    members.remove("structuredContent");
    for (name, value) in &members {
        serde_json::to_writer(&mut head, name)?;
        head.push(b':');
        serde_json::to_writer(&mut head, value)?;
        head.push(b',');
    }
    head.extend_from_slice(b"\"content\":[{\"type\":\"text\",\"text\":\"");
    Ok(Encoded::Result { head, output })
}

/// Why a message could not be encoded.
#[derive(Debug, thiserror::Error)]
pub(crate) enum EncodeError {
    /// serde_json failed to write a member.
    #[error(transparent)]
    Json(#[from] serde_json::Error),
    /// The result serialized as something other than an object.
    #[error("a tool result did not serialize as an object")]
    NotAnObject,
    /// See [`Unheld`].
    #[error(transparent)]
    Unheld(#[from] Unheld),
}

impl Encoded {
    /// Whether it is a result large enough to be written a piece at a time.
    pub(crate) fn is_large(&self) -> bool {
        matches!(self, Encoded::Result { output, .. } if output.len() > PIECE)
    }

    /// Writes the message and its newline. A result is escaped a piece at a time. It does not
    /// yield between pieces of its own accord: escaping a piece is quick, and a message being
    /// written holds up every other, so it is best finished at once; it waits only while the
    /// client has not read what was written.
    pub(crate) async fn write_to<W: AsyncWrite + Unpin + ?Sized>(&self, writer: &mut W) -> std::io::Result<()> {
        let (head, output) = match self {
            Encoded::Line(line) => {
                writer.write_all(line).await?;
                return writer.write_all(b"\n").await;
            }
            Encoded::Result { head, output } => (head, output),
        };
        if output.len() <= PIECE {
            // The usual case: the whole message in one write.
            let mut line = Vec::with_capacity(head.len() + output.len() / 4 * 9 + AFTER_TEXT.len() + 3);
            line.extend_from_slice(head);
            escape_json_text(&mut line, output);
            line.extend_from_slice(AFTER_TEXT);
            line.extend_from_slice(output.as_bytes());
            line.extend_from_slice(b"}}\n");
            return writer.write_all(&line).await;
        }
        writer.write_all(head).await?;
        let mut escaped = Vec::with_capacity(PIECE + PIECE / 4);
        let mut rest = output.as_str();
        while !rest.is_empty() {
            let cut = if rest.len() > PIECE { rest.floor_char_boundary(PIECE) } else { rest.len() };
            let (piece, tail) = rest.split_at(cut);
            escaped.clear();
            escape_json_text(&mut escaped, piece);
            writer.write_all(&escaped).await?;
            rest = tail;
        }
        writer.write_all(AFTER_TEXT).await?;
        writer.write_all(output.as_bytes()).await?;
        writer.write_all(b"}}\n").await
    }
}

#[cfg(test)]
mod tests {
    use rmcp::model::{ContentBlock, NumberOrString, ResultType};
    use serde_json::json;

    use super::*;

    /// The line written for a message, without its newline.
    fn written(message: ServerMessage, outputs: &Outputs) -> Vec<u8> {
        let encoded = encode(message, outputs).expect("encodes");
        let runtime = tokio::runtime::Builder::new_current_thread().build().expect("runtime");
        let mut out = Vec::new();
        runtime.block_on(encoded.write_to(&mut out)).expect("writes");
        assert_eq!(out.pop(), Some(b'\n'));
        out
    }

    fn response(id: NumberOrString, result: CallToolResult) -> ServerMessage {
        ServerMessage::Response(JsonRpcResponse {
            jsonrpc: Default::default(),
            id,
            result: ServerResult::CallToolResult(result),
        })
    }

    #[test]
    fn a_held_output_is_written_as_rmcp_would_write_its_structured_result() {
        let values = [
            json!({"rows": [[1, "a \"b\"\n"], [null, 2.5]], "row_count": 2}),
            json!({"text": "", "\"text\":\"\"": "\\\"", "é😀\u{1}": [[]]}),
            json!({}),
            // Longer than a piece, with characters of every width across the cuts.
            json!({"rows": ["é\"😀\u{1}x\\".repeat(PIECE / 5)]}),
        ];
        let ids = [NumberOrString::Number(7), NumberOrString::String("x\"y".into())];
        let outputs = Outputs::default();
        for (value, id) in values.iter().flat_map(|value| ids.iter().map(move |id| (value, id))) {
            // What rmcp's own serialization of the structured result would be, with what
            // rmcp adds for the protocol revision (here, the result type), and without.
            for result_type in [None, Some(ResultType::COMPLETE)] {
                let mut expected = CallToolResult::structured(value.clone());
                expected.result_type = result_type.clone();
                let expected = serde_json::to_value(response(id.clone(), expected)).expect("serializes");
                let mut held = outputs.hold(ToolOutput::of(value).expect("serializes"));
                held.result_type = result_type;
                let line = written(response(id.clone(), held), &outputs);
                assert_eq!(serde_json::from_slice::<Value>(&line).expect("one JSON value"), expected);
            }
        }
        assert_eq!(outputs.len(), 0, "each output is taken when its message is written");
    }

    #[test]
    fn an_output_other_than_an_object_is_wrapped() {
        let outputs = Outputs::default();
        let held = outputs.hold(ToolOutput::of(&json!([1, "two"])).expect("serializes"));
        let line = written(response(NumberOrString::Number(1), held), &outputs);
        let expected = response(NumberOrString::Number(1), CallToolResult::structured(json!({"result": [1, "two"]})));
        assert_eq!(
            serde_json::from_slice::<Value>(&line).expect("JSON"),
            serde_json::to_value(expected).expect("serializes")
        );
    }

    #[test]
    fn results_that_hold_no_output_are_written_as_rmcp_writes_them() {
        let outputs = Outputs::default();
        let others = [
            CallToolResult::success(vec![ContentBlock::text("a"), ContentBlock::text("b")]),
            CallToolResult::structured(json!({"text": "", "a": "\"b\""})),
            CallToolResult::structured_error(json!({"code": "UNAUTHORIZED", "message": "no"})),
        ];
        for result in others {
            let other = response(NumberOrString::Number(1), result);
            assert_eq!(written(other.clone(), &outputs), serde_json::to_vec(&other).expect("serializes"));
        }
    }

    #[test]
    fn a_handle_is_used_once_and_an_unheld_one_is_an_error_not_an_empty_result() {
        let outputs = Outputs::default();
        let held = outputs.hold(ToolOutput::of(&json!({"a": 1})).expect("serializes"));
        assert!(encode(response(NumberOrString::Number(1), held.clone()), &outputs).is_ok());
        assert!(matches!(
            encode(response(NumberOrString::Number(2), held), &outputs),
            Err(EncodeError::Unheld(Unheld))
        ));
    }
}
