//! The MCP layer: the only module that imports rmcp. Every `tools/call` goes through the
//! boundary, unknown tool names included; `tools/list` shows only the tools the session is
//! granted in the server's mode.

mod stdio;

use std::sync::Arc;

use rmcp::ErrorData as McpError;
use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CallToolResult, Implementation, ListToolsResult, PaginatedRequestParams,
    ServerCapabilities, ServerConfig, Tool as McpTool, ToolAnnotations,
};
use rmcp::service::RequestContext;
use rmcp::{RoleServer, ServerHandler};
use serde_json::{Value, json};

pub use stdio::{MAX_MESSAGE_BYTES, serve_stdio};

use crate::policy::Access;
use crate::service::Service;
use crate::tools::ToolOutput;

/// The MCP handler over a [`Service`].
#[derive(Clone)]
pub struct McpServer {
    service: Arc<Service>,
    /// Served by [`serve_on`]: a result's structured content is left for the transport to
    /// write from its text, which holds the same JSON (see [`structured`]).
    spliced: bool,
}

impl std::fmt::Debug for McpServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("McpServer").finish_non_exhaustive()
    }
}

impl McpServer {
    /// A handler for `service`.
    pub fn new(service: Arc<Service>) -> Self {
        McpServer { service, spliced: false }
    }

    fn tools(&self) -> Vec<McpTool> {
        let boundary = self.service.boundary();
        boundary
            .visible_tools(self.service.session())
            .into_iter()
            .map(|tool| {
                let annotations = ToolAnnotations::new()
                    .read_only(tool.access == Access::Read)
                    .destructive(tool.access == Access::Write);
                let mut listed =
                    McpTool::new(tool.name.as_str().to_owned(), tool.description.to_owned(), tool.input_schema());
                listed.annotations = Some(annotations);
                listed
            })
            .collect()
    }
}

impl ServerHandler for McpServer {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build())
            .with_server_info(Implementation::new("sqlwarden", env!("CARGO_PKG_VERSION")))
            .with_instructions(
                "SQL database tools behind a security boundary. Use list_tables and describe_table to learn the \
                 schema, then query_read with placeholders for values. Refusals come back as tool errors with a \
                 stable code and a reason.",
            )
    }

    async fn list_tools(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, McpError> {
        Ok(ListToolsResult::with_all_items(self.tools()))
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, McpError> {
        let arguments = request.arguments.map_or_else(|| json!({}), Value::Object);
        let call = self.service.call(&request.name, arguments);
        // A cancelled request drops the call, which stops its statement on the database.
        let outcome = tokio::select! {
            outcome = call => outcome,
            () = context.ct.cancelled() => {
                return Err(McpError::internal_error("the request was cancelled", None));
            }
        };
        Ok(match outcome {
            Ok(output) => structured(output, self.spliced),
            Err(denial) => {
                CallToolResult::structured_error(json!({"code": denial.code(), "message": denial.message()}))
            }
        }
        .into())
    }
}

/// A tool's output as a result: its JSON text as the text content and, as structured content
/// (which is an object), the same JSON, wrapped as `{"result": …}` when it is not an object.
///
/// When `spliced`, the structured content is left out here: the transport writes it from the
/// text, so that a large result is neither parsed nor serialized again. Every successful
/// result made this way, and only those, has no structured content and one text block.
fn structured(output: ToolOutput, spliced: bool) -> CallToolResult {
    let text = if output.is_object() { output.into_json() } else { format!("{{\"result\":{}}}", output.as_json()) };
    let structured = if spliced { None } else { serde_json::from_str(&text).ok() };
    let mut result = CallToolResult::success(vec![rmcp::model::ContentBlock::text(text)]);
    result.structured_content = structured;
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn structured_results_are_what_rmcp_would_make() {
        let value = json!({"rows": [[1, "a \"quoted\" é"], [null, 1.5]], "row_count": 2});
        let output = ToolOutput::of(&value).expect("serializes");
        assert_eq!(structured(output.clone(), false), CallToolResult::structured(value.clone()));
        let mut spliced = CallToolResult::structured(value);
        spliced.structured_content = None;
        assert_eq!(structured(output, true), spliced);
    }

    #[test]
    fn outputs_other_than_objects_are_wrapped() {
        let output = ToolOutput::of(&json!([1, "two"])).expect("serializes");
        assert_eq!(structured(output, false), CallToolResult::structured(json!({"result": [1, "two"]})));
    }
}
