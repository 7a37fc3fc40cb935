//! A ready sqlwarden: the reference tools over one database, behind the boundary, for one
//! session. The stdio server and the `call` command both run calls through this.

use std::sync::Arc;

use serde_json::Value;

use crate::adapter::{self, Adapter, Posture};
use crate::audit::{AuditSink, AuditWriter, Origin};
use crate::boundary::Boundary;
use crate::config::{AuditTarget, Config, QuotaStore};
use crate::denial::Denial;
use crate::evidence::{Evidence, Read};
use crate::policy::{Access, Capabilities, Grant, Mode, QuotaEngine, SessionContext};
use crate::quota::RedisQuotas;
use crate::sql::{SqlDialect, SqlValidator};
use crate::tools::declared::{DeclaredRead, DeclaredWrite};
use crate::tools::reference::{DescribeTable, ExplainQuery, ListTables, QueryRead};
use crate::tools::{ToolError, ToolOutput, ToolRegistry};

/// The reference tools, by name.
pub const REFERENCE_TOOLS: [&str; 4] = ["query_read", "list_tables", "describe_table", "explain_query"];

/// A boundary with the reference tools over one database, and the session calls run as.
pub struct Service {
    boundary: Boundary,
    session: Arc<SessionContext>,
    audit: Arc<dyn AuditSink>,
    warnings: Vec<String>,
    untrusted_framing: bool,
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
        Self::from_config_with(config, |_, _| Ok(()))
    }

    /// The service a configuration describes, with tools of your own: `custom` receives the
    /// configured database and registers them next to the reference tools. They run through
    /// the same boundary, and `[[grants]]` may name them.
    ///
    /// ```no_run
    /// # use std::sync::Arc;
    /// # use sqlwarden::service::Service;
    /// # struct MyTool(Arc<dyn sqlwarden::adapter::Adapter>);
    /// # impl sqlwarden::Tool for MyTool {
    /// #     type Access = sqlwarden::Read; type Input = (); type Output = ();
    /// #     fn name(&self) -> &str { "my_tool" }
    /// #     fn description(&self) -> &str { "" }
    /// #     async fn call(&self, _: sqlwarden::Evidence<'_, sqlwarden::Read>, _: ()) -> Result<(), sqlwarden::ToolError> { Ok(()) }
    /// # }
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let config = sqlwarden::config::Config::load(std::path::Path::new("sqlwarden.toml"))?;
    /// let service = Service::from_config_with(config, |database, tools| {
    ///     Ok(tools.register(MyTool(Arc::clone(database)))?)
    /// })?;
    /// # Ok(()) }
    /// ```
    pub fn from_config_with(
        config: Config,
        custom: impl FnOnce(&Arc<dyn Adapter>, &mut ToolRegistry) -> Result<(), Box<dyn std::error::Error + Send + Sync>>,
    ) -> Result<Service, ServiceError> {
        let adapter = connect(&config)?;
        let mut tools = ToolRegistry::new();
        custom(&adapter, &mut tools).map_err(|error| ServiceError(format!("custom tools: {error}")))?;
        let mut service = Self::assemble(tools, adapter, &config, audit_sink(&config)?)?;
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
        mut tools: ToolRegistry,
        adapter: Arc<dyn Adapter>,
        config: &Config,
        audit: Arc<dyn AuditSink>,
    ) -> Result<Service, ServiceError> {
        let validator = SqlValidator::new(config.allow.clone()).with_budget(config.limits.max_result_bytes);
        register(&mut tools, ExplainQuery::new(Arc::clone(&adapter), validator.clone(), config.limits))?;
        let query_read = QueryRead::new(Arc::clone(&adapter), validator, config.limits);
        register(&mut tools, query_read.with_mask_key(config.mask_key.clone()))?;
        register(&mut tools, ListTables::new(Arc::clone(&adapter)))?;
        register(&mut tools, DescribeTable::new(Arc::clone(&adapter)))?;
        for declared in &config.tools {
            let adapter = Arc::clone(&adapter);
            match DeclaredRead::new(Arc::clone(declared), Arc::clone(&adapter), config.limits, config.mask_key.clone())
            {
                Some(read) => register(&mut tools, read)?,
                None => match DeclaredWrite::new(Arc::clone(declared), adapter, config.limits.max_result_bytes) {
                    Some(write) => register(&mut tools, write)?,
                    None => {
                        return Err(ServiceError(format!(
                            "[[tools]] {} declares neither a read nor a write",
                            declared.name
                        )));
                    }
                },
            }
        }
        let mut warnings = Vec::new();
        let mut grants = Vec::with_capacity(config.grants.len());
        for grant in &config.grants {
            let Some(access) = tools.get(grant.tool.as_str()).map(|tool| tool.access) else {
                let mut offered: Vec<&str> = tools.iter().map(|tool| tool.name.as_str()).collect();
                offered.sort_unstable();
                return Err(ServiceError(format!(
                    "[[grants]] names tool {}, which this server does not offer ({})",
                    grant.tool,
                    offered.join(", ")
                )));
            };
            if access == Access::Write && config.mode == Mode::ReadOnly {
                warnings.push(format!("tool {} writes, but the server is read-only: it will be refused", grant.tool));
            }
            grants.push(grant.grant().map_err(|error| ServiceError(format!("[[grants]] {error}")))?);
        }
        let builder = Boundary::builder(tools).mode(config.mode).authorizer(Capabilities::from_grants(grants));
        let builder = match &config.quota_store {
            QuotaStore::Memory => builder.quotas(QuotaEngine::new(config.quotas)),
            QuotaStore::Redis(redis) => builder.quotas(
                RedisQuotas::new(redis, config.quotas).map_err(|error| ServiceError(format!("[quotas] {error}")))?,
            ),
        };
        let boundary = builder.audit(Arc::clone(&audit)).build();
        let session = bind_session(config)?;
        Ok(Service {
            boundary,
            session,
            audit,
            warnings,
            untrusted_framing: config.untrusted_framing,
            #[cfg(feature = "sqlite")]
            _demo: None,
        })
    }

    /// Runs one call through the boundary as the configured session.
    pub async fn call(&self, tool: &str, args: Value) -> Result<ToolOutput, Denial> {
        self.boundary.invoke(Some(Arc::clone(&self.session)), tool, args).await
    }

    /// [`call`](Self::call), for a call that came in as `origin` says (its transport and
    /// request id go on its audit records).
    pub async fn call_from(&self, origin: Origin, tool: &str, args: Value) -> Result<ToolOutput, Denial> {
        self.boundary.invoke_from(origin, Some(Arc::clone(&self.session)), tool, args).await
    }

    /// [`call_from`](Self::call_from), as `session` (a transport's verified caller; `None` is
    /// denied).
    pub async fn call_as(
        &self,
        origin: Origin,
        session: Option<Arc<SessionContext>>,
        tool: &str,
        args: Value,
    ) -> Result<ToolOutput, Denial> {
        self.boundary.invoke_from(origin, session, tool, args).await
    }

    /// The boundary, for a transport to drive.
    pub fn boundary(&self) -> &Boundary {
        &self.boundary
    }

    /// The session calls run as.
    pub fn session(&self) -> &Arc<SessionContext> {
        &self.session
    }

    /// The audit sink, to flush before the process exits.
    pub fn audit(&self) -> &Arc<dyn AuditSink> {
        &self.audit
    }

    /// Settings that are allowed but probably not meant.
    pub fn warnings(&self) -> &[String] {
        &self.warnings
    }

    /// Whether the text content of a result holding rows is framed as untrusted data
    /// (`[output] untrusted_framing`, on by default).
    pub fn frames_untrusted_data(&self) -> bool {
        self.untrusted_framing
    }
}

/// What `sqlwarden check` found.
#[derive(Debug)]
pub struct CheckReport {
    /// The database's dialect.
    pub dialect: SqlDialect,
    /// How many allow-listed tables the database shows.
    pub visible_tables: usize,
    /// What the role may do beyond reading.
    pub posture: Posture,
    /// Settings that are allowed but probably not meant.
    pub warnings: Vec<String>,
    /// With `backend = "redis"`, whether Redis answered: without it every call is denied.
    pub quota_store: Option<Result<(), String>>,
    /// `[[columns]]` rules that name a table or a column the database does not have, one line
    /// each.
    pub column_rules: Vec<String>,
}

/// The check's own read tool: the adapter's posture, through the boundary like any call.
struct CheckPosture(Arc<dyn Adapter>);

impl crate::tools::Tool for CheckPosture {
    type Access = Read;
    type Input = serde_json::Map<String, Value>;
    type Output = Posture;

    fn name(&self) -> &str {
        "check_posture"
    }

    fn description(&self) -> &str {
        "Reports what the database role may do beyond reading."
    }

    async fn call(
        &self,
        evidence: Evidence<'_, Read>,
        _input: serde_json::Map<String, Value>,
    ) -> Result<Posture, ToolError> {
        Ok(self.0.posture(evidence).await?)
    }
}

/// Checks a configuration against its database: connects, counts the allow-listed tables it
/// can see, and asks the database what the role may do beyond reading. The calls go through
/// the boundary and are audited like any other.
pub async fn check(config: Config) -> Result<CheckReport, ServiceError> {
    let adapter = connect(&config)?;
    let mut tools = ToolRegistry::new();
    register(&mut tools, ListTables::new(Arc::clone(&adapter)))?;
    register(&mut tools, CheckPosture(adapter))?;
    let grants = ["list_tables", "check_posture"]
        .into_iter()
        .map(|tool| Grant::new(&config.identity, &config.tenant, tool))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|error| ServiceError(format!("[session] {error}")))?;
    let boundary =
        Boundary::builder(tools).authorizer(Capabilities::from_grants(grants)).audit(audit_sink(&config)?).build();
    let session = bind_session(&config)?;
    let unreachable = |denial: Denial| ServiceError(format!("the database: {} ({})", denial.message(), denial.code()));
    let listed = boundary.invoke(Some(Arc::clone(&session)), "list_tables", serde_json::json!({})).await;
    let posture = match listed {
        Ok(_) => boundary.invoke(Some(session), "check_posture", serde_json::json!({})).await,
        Err(ref denial) => Err(denial.clone()),
    };
    // A denial's records were handed over without waiting: write them before the check ends.
    let _ = boundary.close_audit(std::time::Duration::from_secs(2));
    let (listed, posture) = (listed.map_err(unreachable)?, posture.map_err(unreachable)?);
    let posture: Posture = serde_json::from_str(posture.as_json()).map_err(|error| ServiceError(error.to_string()))?;
    #[derive(serde::Deserialize)]
    struct Listed {
        tables: Vec<serde::de::IgnoredAny>,
    }
    let listed: Listed = serde_json::from_str(listed.as_json()).map_err(|error| ServiceError(error.to_string()))?;
    let column_rules = check_column_rules(&config).await?;
    let quota_store = match &config.quota_store {
        QuotaStore::Memory => None,
        QuotaStore::Redis(redis) => Some(match RedisQuotas::new(redis, config.quotas) {
            Ok(quotas) => quotas.ping().await,
            Err(error) => Err(error),
        }),
    };
    Ok(CheckReport {
        dialect: config.database.dialect,
        visible_tables: listed.tables.len(),
        posture,
        warnings: config.warnings,
        quota_store,
        column_rules,
    })
}

/// Whether each `[[columns]]` rule names a table the database has and columns that table has:
/// a rule for a column that is not there (a typo) protects nothing. Looked at through a
/// `describe_table` that sees the ruled columns, through the boundary like any call. The
/// problems found, one line each.
async fn check_column_rules(config: &Config) -> Result<Vec<String>, ServiceError> {
    if !config.allow.has_column_rules() {
        return Ok(Vec::new());
    }
    let raw = adapter::connect(&config.database.url, config.allow.without_column_rules(), config.database.pool)
        .map_err(|error| ServiceError(format!("[database] {}", error.denial().message())))?;
    let mut tools = ToolRegistry::new();
    register(&mut tools, DescribeTable::new(raw))?;
    let grant = Grant::new(&config.identity, &config.tenant, "describe_table")
        .map_err(|error| ServiceError(format!("[session] {error}")))?;
    let boundary =
        Boundary::builder(tools).authorizer(Capabilities::from_grants([grant])).audit(audit_sink(config)?).build();
    let session = bind_session(config)?;
    let mut problems = Vec::new();
    let mut rules: Vec<_> = config.allow.column_rules().collect();
    rules.sort_by(|a, b| a.0.cmp(b.0));
    for (table, rule) in rules {
        let args = serde_json::json!({"schema": table.schema, "table": table.table});
        let described = boundary.invoke(Some(Arc::clone(&session)), "describe_table", args).await;
        let Ok(described) = described.and_then(|output| output.to_value().map_err(|_| Denial::internal())) else {
            problems.push(format!(
                "[[columns]] table {table}: the database shows no such table; the rule protects nothing"
            ));
            continue;
        };
        let present: Vec<String> = described["columns"]
            .as_array()
            .map(|columns| columns.iter().filter_map(|column| column["name"].as_str()).map(str::to_lowercase).collect())
            .unwrap_or_default();
        for column in rule.columns() {
            if !present.iter().any(|name| name == column) {
                problems.push(format!(
                    "[[columns]] table {table}: it has no column {column}; the rule for it protects nothing"
                ));
            }
        }
    }
    let _ = boundary.close_audit(std::time::Duration::from_secs(2));
    Ok(problems)
}

/// The adapter the configuration's URL names.
fn connect(config: &Config) -> Result<Arc<dyn Adapter>, ServiceError> {
    adapter::connect(&config.database.url, config.allow.clone(), config.database.pool).map_err(|error| {
        let reason = error.denial().message().to_owned();
        ServiceError(format!("[database] {reason}"))
    })
}

/// The audit sink the configuration names: a writer thread, so that no file or pipe can stall
/// the event loop.
fn audit_sink(config: &Config) -> Result<Arc<dyn AuditSink>, ServiceError> {
    let writer = match &config.audit {
        AuditTarget::Stderr => AuditWriter::stderr(config.audit_deadline)
            .map_err(|error| ServiceError(format!("[audit] cannot start the audit writer: {error}")))?,
        AuditTarget::File(path) => AuditWriter::append_to(path, config.audit_deadline)
            .map_err(|error| ServiceError(format!("[audit] {} cannot be opened: {error}", path.display())))?,
    };
    let writer = match &config.audit_key {
        Some(key) => writer.with_key(key.clone()),
        None => writer,
    };
    Ok(Arc::new(match config.audit_max_bytes {
        Some(max_bytes) => writer.rotate_at(max_bytes),
        None => writer,
    }))
}

/// The session calls run as.
fn bind_session(config: &Config) -> Result<Arc<SessionContext>, ServiceError> {
    let mut builder = SessionContext::builder().identity(&config.identity).tenant(&config.tenant);
    for (name, value) in &config.session_claims {
        builder = builder.claim(name.as_str(), value.as_str());
    }
    builder.bind().map(Arc::new).map_err(|error| ServiceError(format!("[session] {error}")))
}

fn register(tools: &mut ToolRegistry, tool: impl crate::tools::Tool) -> Result<(), ServiceError> {
    tools.register(tool).map_err(|error| ServiceError(error.to_string()))
}
