//! A ready sqlwarden: the reference tools over one database, behind the boundary, for one
//! session. The stdio server and the `call` command both run calls through this.

use std::sync::Arc;

use serde_json::Value;

use crate::adapter::{self, Adapter};
use crate::audit::JsonLinesSink;
use crate::boundary::{Boundary, Denial};
use crate::config::{AuditTarget, Config};
use crate::policy::{Access, Capabilities, Grant, Mode, QuotaEngine, SessionContext, ToolRegistry};
use crate::sql::SqlValidator;
use crate::tools::reference::{DescribeTable, ListTables, QueryRead};

/// The reference tools, by name.
pub const REFERENCE_TOOLS: [&str; 3] = ["query_read", "list_tables", "describe_table"];

/// A boundary with the reference tools over one database, and the session calls run as.
pub struct Service {
    boundary: Boundary,
    session: Arc<SessionContext>,
    warnings: Vec<String>,
    /// Keeps the demo database alive while the service is.
    #[cfg(feature = "sqlite")]
    _demo: Option<crate::demo::DemoDatabase>,
}

impl std::fmt::Debug for Service {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Service").field("mode", &self.boundary.mode()).finish_non_exhaustive()
    }
}

/// Why a service could not be built.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ServiceError(String);

impl Service {
    /// The service a configuration describes. The database is reached lazily (SQLite files
    /// are opened at once).
    pub fn from_config(config: Config) -> Result<Service, ServiceError> {
        let adapter =
            adapter::connect(&config.database.url, config.allow.clone(), config.database.pool).map_err(|error| {
                ServiceError(format!(
                    "[database] {}",
                    error.denial().map_or_else(|| error.to_string(), |d| d.message().to_owned())
                ))
            })?;
        let mut service = match &config.audit {
            AuditTarget::Stderr => Self::assemble(adapter, &config, JsonLinesSink::stderr())?,
            AuditTarget::File(path) => {
                let sink = JsonLinesSink::append_to(path)
                    .map_err(|error| ServiceError(format!("[audit] {} cannot be opened: {error}", path.display())))?;
                Self::assemble(adapter, &config, sink)?
            }
        };
        service.warnings.splice(0..0, config.warnings);
        Ok(service)
    }

    /// The built-in demo: a small in-memory SQLite shop, every table readable, the three
    /// reference tools granted, read-only, audit to stderr.
    #[cfg(feature = "sqlite")]
    pub fn demo() -> Result<Service, ServiceError> {
        let demo = crate::demo::DemoDatabase::create().map_err(|error| ServiceError(error.to_string()))?;
        let mut text = format!(
            "[database]\nurl = {:?}\nmax_connections = 4\n[session]\nidentity = \"demo\"\ntenant = \"demo\"\n\
             [allowlist]\nschemas = [\"main\"]\ntables = [\"*\"]\n",
            demo.url()
        );
        for tool in REFERENCE_TOOLS {
            text.push_str(&format!("[[grants]]\ntool = \"{tool}\"\n"));
        }
        let mut config =
            Config::parse(&text, "the built-in demo", |_| None).map_err(|error| ServiceError(error.to_string()))?;
        config.allow = crate::demo::DemoDatabase::allow_list();
        let mut service = Self::from_config(config)?;
        service._demo = Some(demo);
        Ok(service)
    }

    fn assemble(
        adapter: Arc<dyn Adapter>,
        config: &Config,
        audit: impl crate::audit::AuditSink + 'static,
    ) -> Result<Service, ServiceError> {
        let mut tools = ToolRegistry::new();
        let validator = SqlValidator::new(config.allow.clone());
        register(&mut tools, QueryRead::new(Arc::clone(&adapter), validator, config.limits))?;
        register(&mut tools, ListTables::new(Arc::clone(&adapter)))?;
        register(&mut tools, DescribeTable::new(adapter))?;
        let mut warnings = Vec::new();
        let mut grants = Vec::with_capacity(config.grants.len());
        for grant in &config.grants {
            let Some(access) = tools.get(grant.tool.as_str()).map(|tool| tool.access) else {
                return Err(ServiceError(format!(
                    "[[grants]] names tool {}, which this server does not offer ({})",
                    grant.tool,
                    REFERENCE_TOOLS.join(", ")
                )));
            };
            if access == Access::Write && config.mode == Mode::ReadOnly {
                warnings.push(format!("tool {} writes, but the server is read-only: it will be refused", grant.tool));
            }
            let mut granted = Grant::new(&config.identity, &config.tenant, grant.tool.as_str())
                .map_err(|error| ServiceError(format!("[[grants]] {error}")))?;
            if let Some(at) = grant.expires_at {
                granted = granted.expires_at(at);
            }
            grants.push(granted);
        }
        let boundary = Boundary::builder(tools)
            .mode(config.mode)
            .authorizer(Capabilities::from_grants(grants))
            .quotas(QuotaEngine::new(config.quotas))
            .audit(audit)
            .build();
        let session = SessionContext::builder()
            .identity(&config.identity)
            .tenant(&config.tenant)
            .bind()
            .map_err(|error| ServiceError(format!("[session] {error}")))?;
        Ok(Service {
            boundary,
            session: Arc::new(session),
            warnings,
            #[cfg(feature = "sqlite")]
            _demo: None,
        })
    }

    /// Runs one call through the boundary as the configured session.
    pub async fn call(&self, tool: &str, args: Value) -> Result<Value, Denial> {
        self.boundary.invoke(Some(Arc::clone(&self.session)), tool, args).await
    }

    /// The boundary, for a transport to drive.
    pub fn boundary(&self) -> &Boundary {
        &self.boundary
    }

    /// The session calls run as.
    pub fn session(&self) -> &Arc<SessionContext> {
        &self.session
    }

    /// Settings that are allowed but probably not meant.
    pub fn warnings(&self) -> &[String] {
        &self.warnings
    }
}

fn register(tools: &mut ToolRegistry, tool: impl crate::tools::Tool) -> Result<(), ServiceError> {
    tools.register(tool).map_err(|error| ServiceError(error.to_string()))
}
