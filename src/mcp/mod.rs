//! The MCP layer: the only module that imports rmcp. Every `tools/call` goes through the
//! boundary, unknown tool names included; `tools/list` shows only the tools the session is
//! granted in the server's mode.

mod armed;
mod front;
mod http;
mod result;
mod stdio;
mod stop;

use std::sync::Arc;

use rmcp::ErrorData as McpError;
use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CallToolResult, Implementation, ListToolsResult, PaginatedRequestParams,
    ServerCapabilities, ServerConfig, Tool as McpTool, ToolAnnotations,
};
use rmcp::service::RequestContext;
use rmcp::{RoleServer, ServerHandler};
use serde_json::{Value, json};

pub use http::{HttpServer, serve_http};
pub use stdio::{MAX_MESSAGE_BYTES, serve_stdio};

use crate::audit::{Origin, Transport};
use crate::policy::{Access, SessionContext};
use crate::service::Service;
use result::Outputs;

/// The MCP handler over a [`Service`], for one transport: a tool's output goes to the
/// transport through `outputs` (see [`result`]).
#[derive(Clone)]
pub(crate) struct McpServer {
    service: Arc<Service>,
    outputs: Arc<Outputs>,
    transport: Transport,
}

/// The verified caller of an HTTP request. The transport puts it in the request's extensions;
/// rmcp hands them to the handler with the request.
#[derive(Clone)]
pub(crate) struct Caller {
    session: Arc<SessionContext>,
    mcp_session: Option<Arc<str>>,
}

impl std::fmt::Debug for McpServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("McpServer").finish_non_exhaustive()
    }
}

impl McpServer {
    /// A handler for `service` whose outputs the transport takes from `outputs`.
    pub(crate) fn new(service: Arc<Service>, outputs: Arc<Outputs>) -> Self {
        McpServer { service, outputs, transport: Transport::Stdio }
    }

    /// A handler for HTTP: each request's session comes from its [`Caller`], never from the
    /// configuration.
    pub(crate) fn for_http(service: Arc<Service>, outputs: Arc<Outputs>) -> Self {
        McpServer { service, outputs, transport: Transport::Http }
    }

    /// The session a request runs as, and where it came from. Over HTTP, a request without a
    /// verified caller has no session, and the boundary denies it.
    fn caller(&self, context: &RequestContext<RoleServer>) -> (Option<Arc<SessionContext>>, Origin) {
        self.caller_of(context.extensions.get::<Caller>(), &context.id)
    }

    /// The session and origin of request `id` from `caller` (see [`McpServer::caller`]).
    pub(crate) fn caller_of(
        &self,
        caller: Option<&Caller>,
        id: &rmcp::model::RequestId,
    ) -> (Option<Arc<SessionContext>>, Origin) {
        let origin = Origin::new(self.transport).request(id);
        match self.transport {
            Transport::Http => match caller {
                Some(caller) => {
                    let origin = match &caller.mcp_session {
                        Some(id) => origin.mcp_session(id),
                        None => origin,
                    };
                    (Some(Arc::clone(&caller.session)), origin)
                }
                None => (None, origin),
            },
            _ => (Some(Arc::clone(self.service.session())), origin),
        }
    }

    fn tools(&self, session: Option<&SessionContext>) -> Vec<McpTool> {
        let Some(session) = session else { return Vec::new() };
        let boundary = self.service.boundary();
        boundary
            .visible_tools(session)
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

    /// Runs one `tools/call` through the boundary as `session`: the one handler of tool calls.
    /// rmcp calls it (through [`ServerHandler::call_tool`]); the HTTP transport calls it
    /// directly for a session's calls (see `http::session`). The output is held in the
    /// handler's [`Outputs`] for the result encoder.
    pub(crate) async fn call(
        &self,
        request: CallToolRequestParams,
        session: Option<Arc<SessionContext>>,
        origin: Origin,
    ) -> CallToolResult {
        let arguments = request.arguments.map_or_else(|| json!({}), Value::Object);
        match self.service.call_as(origin, session, &request.name, arguments).await {
            Ok(output) => self.outputs.hold(output),
            Err(denial) => {
                CallToolResult::structured_error(json!({"code": denial.code(), "message": denial.message()}))
            }
        }
    }

    /// Where the outputs of this handler's calls wait for the result encoder.
    pub(crate) fn outputs(&self) -> &Outputs {
        &self.outputs
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
        context: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, McpError> {
        let (session, _) = self.caller(&context);
        Ok(ListToolsResult::with_all_items(self.tools(session.as_deref())))
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, McpError> {
        let (session, origin) = self.caller(&context);
        // A cancelled request drops the call, which stops its statement on the database.
        tokio::select! {
            result = self.call(request, session, origin) => Ok(result.into()),
            () = context.ct.cancelled() => Err(McpError::internal_error("the request was cancelled", None)),
        }
    }
}
