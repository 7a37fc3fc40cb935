//! The MCP layer: the only module that imports rmcp. Every `tools/call` goes through the
//! boundary, unknown tool names included; `tools/list` shows only the tools the session is
//! granted in the server's mode.

mod result;
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

use crate::audit::{Origin, Transport};
use crate::policy::Access;
use crate::service::Service;
use result::Outputs;

/// The MCP handler over a [`Service`], for one transport: a tool's output goes to the
/// transport through `outputs` (see [`result`]).
#[derive(Clone)]
pub(crate) struct McpServer {
    service: Arc<Service>,
    outputs: Arc<Outputs>,
}

impl std::fmt::Debug for McpServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("McpServer").finish_non_exhaustive()
    }
}

impl McpServer {
    /// A handler for `service` whose outputs the transport takes from `outputs`.
    pub(crate) fn new(service: Arc<Service>, outputs: Arc<Outputs>) -> Self {
        McpServer { service, outputs }
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
        let origin = Origin::new(Transport::Stdio).request(&context.id);
        let call = self.service.call_from(origin, &request.name, arguments);
        // A cancelled request drops the call, which stops its statement on the database.
        let outcome = tokio::select! {
            outcome = call => outcome,
            () = context.ct.cancelled() => {
                return Err(McpError::internal_error("the request was cancelled", None));
            }
        };
        Ok(match outcome {
            Ok(output) => self.outputs.hold(output),
            Err(denial) => {
                CallToolResult::structured_error(json!({"code": denial.code(), "message": denial.message()}))
            }
        }
        .into())
    }
}
