//! # sqlwarden
//!
//! Lets AI agents use SQL databases through tools, behind a security boundary whose ordering
//! is proven by the type system.
//!
//! Every tool call is an [`Invocation`] that must pass, in order, session validation and tool
//! lookup ([`Resolved`]), the read-only mode check ([`ModeChecked`]), authorization
//! ([`Authorized`]) and quota admission ([`Admitted`]). Only an admitted invocation can run a
//! tool, and only the [`Evidence`] it hands the tool opens the database: every
//! [`adapter::Adapter`] method takes it by value. Skipping or reordering a stage does not
//! compile; see `ui-tests/` and `SECURITY-INVARIANTS.md`.
//!
//! ```
//! use std::sync::Arc;
//! use sqlwarden::policy::{Capabilities, Grant, SessionContext};
//! use sqlwarden::{Boundary, DenialCode, Evidence, Read, Tool, ToolError, ToolRegistry};
//!
//! struct Greet;
//!
//! #[derive(serde::Deserialize)]
//! #[serde(deny_unknown_fields)]
//! struct Who { name: String }
//!
//! impl Tool for Greet {
//!     type Access = Read;
//!     type Input = Who;
//!     type Output = String;
//!     fn name(&self) -> &str { "greet" }
//!     fn description(&self) -> &str { "Says hello." }
//!     async fn call(&self, _evidence: Evidence<'_, Read>, who: Who) -> Result<String, ToolError> {
//!         Ok(format!("hello, {}", who.name))
//!     }
//! }
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let mut tools = ToolRegistry::new();
//! tools.register(Greet)?;
//! let boundary = Boundary::builder(tools)
//!     .authorizer(Capabilities::from_grants([Grant::new("ada", "acme", "greet")?]))
//!     .audit(sqlwarden::audit::JsonLinesSink::new(std::io::sink()))
//!     .build();
//! let session = Arc::new(SessionContext::builder().identity("ada").tenant("acme").bind()?);
//!
//! # let rt = tokio::runtime::Builder::new_current_thread().build()?;
//! # rt.block_on(async {
//! let hello = boundary.invoke(Some(session.clone()), "greet", serde_json::json!({"name": "Bob"})).await;
//! assert_eq!(hello.map(|output| output.into_json()), Ok(r#""hello, Bob""#.to_owned()));
//!
//! let unknown = boundary.invoke(Some(session), "drop_all", serde_json::json!({})).await;
//! assert_eq!(unknown.unwrap_err().code(), DenialCode::ToolNotFound);
//! # });
//! # Ok(())
//! # }
//! ```
//!
//! ## Modules
//!
//! Top to bottom; a module uses only those below it (see `ARCHITECTURE.md`).
//!
//! | module | what |
//! |---|---|
//! | [`mcp`] | the MCP transports (stdio) over one result encoder |
//! | [`service`] | a running server, wired from a [`config::Config`] |
//! | [`config`] | the TOML configuration, validated once |
//! | [`boundary`] | the typestate pipeline every call goes through |
//! | [`tools`] | the [`Tool`] trait, the [`ToolRegistry`], the reference and write tools |
//! | [`adapter`] | the database adapter interface and its backends |
//! | [`evidence`] | admitted [`Evidence`], the only key an adapter accepts |
//! | [`audit`] | audit events and sinks, and the audit writer thread |
//! | [`logging`] | the log writer thread: logs never stall a call |
//! | [`policy`] | sessions, tool names, mode, capabilities, quotas: pure decisions |
//! | [`sql`] | the SQL gate: sqlparser-based validation into a [`sql::ValidatedQuery`] |
//! | [`denial`] | [`Denial`] and its stable codes |
//! | [`json`] | how database values become JSON |
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod adapter;
pub mod audit;
pub mod auth;
pub mod boundary;
pub mod config;
#[cfg(feature = "sqlite")]
pub mod demo;
pub mod denial;
pub mod evidence;
pub mod json;
pub mod logging;
pub mod mcp;
mod pipe;
pub mod policy;
pub mod quota;
pub mod service;
pub mod sql;
pub mod tools;

pub use boundary::{
    Admitted, Authorized, Boundary, BoundaryBuilder, Invocation, ModeChecked, Resolved, State, Unvalidated,
};
pub use denial::{Denial, DenialCode};
pub use evidence::{AccessClass, Evidence, Read, SlotHold, Write};
pub use tools::{Tool, ToolError, ToolOutput, ToolRegistry};
