//! `sqlwarden.toml`: one file, unknown keys refused, secure defaults, secrets by reference.
//!
//! ```toml
//! [database]
//! url_env = "DATABASE_URL"          # or url = "postgres://reader@127.0.0.1:5432/app"
//!
//! [session]
//! identity = "analyst@example.com"
//! tenant = "acme"
//!
//! [allowlist]
//! schemas = ["public"]
//! tables = ["customers", "orders"]  # ["*"]: every table of those schemas
//!
//! [[grants]]
//! tool = "query_read"
//! ```
//!
//! Everything left out takes its secure default: read-only mode, no grants, an empty
//! allow-list, the limits and quotas of [`ReadLimits::default`] and [`QuotaPolicy::default`],
//! audit to stderr.

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use serde::Deserialize;

mod http;
mod quotas;
mod tools;

pub use crate::quota::RedisQuotaConfig;
pub use http::{AuthConfig, BearerConfig, DEFAULT_PATH, HttpConfig, http_posture};
pub use quotas::QuotaStore;

use crate::adapter::PoolOptions;
use crate::policy::{Mode, QuotaPolicy, SessionContext, ToolName};
use crate::sql::{AllowList, ColumnRule, Mask, MaskKey, SqlDialect};
use crate::tools::reference::ReadLimits;

/// A configuration, read and checked.
#[derive(Debug)]
pub struct Config {
    /// Where the database is and how to reach it.
    pub database: DatabaseConfig,
    /// The identity and tenant the stdio session runs as.
    pub identity: String,
    /// See [`Config::identity`].
    pub tenant: String,
    /// Read-only (the default) or read-write.
    pub mode: Mode,
    /// The tables `query_read`, `list_tables` and `describe_table` may see.
    pub allow: AllowList,
    /// Row, time and size limits of `query_read`.
    pub limits: ReadLimits,
    /// Call quotas per (tenant, identity, tool), cost and egress budgets per (tenant, identity).
    pub quotas: QuotaPolicy,
    /// Where quota state lives: this process, or a Redis the replicas share.
    pub quota_store: QuotaStore,
    /// The further claims of the stdio session (`[session] claims`).
    pub session_claims: Vec<(String, String)>,
    /// The tools declared in the configuration (`[[tools]]`), checked.
    pub tools: Vec<std::sync::Arc<crate::tools::declared::DeclaredTool>>,
    /// The tools the session may call.
    pub grants: Vec<GrantConfig>,
    /// Whether row-returning results are framed as untrusted data in their text content
    /// (`[output] untrusted_framing`, on by default).
    pub untrusted_framing: bool,
    /// The key of the `hash` column mask (`[output] mask_key_env`; random when unset).
    pub mask_key: MaskKey,
    /// Where audit records go.
    pub audit: AuditTarget,
    /// How long a call waits for its audit records to be written before it is denied.
    pub audit_deadline: Duration,
    /// The key of the audit's hash chain (`[audit] hmac_key_env`), if one is set.
    pub audit_key: Option<crate::audit::ChainKey>,
    /// The size at which the audit file is rotated (`[audit] max_bytes`), if any.
    pub audit_max_bytes: Option<u64>,
    /// The Streamable HTTP transport, when `[http]` (or `--http`) asks for it.
    pub http: Option<HttpConfig>,
    /// Who may call over HTTP.
    pub auth: AuthConfig,
    /// Settings that are allowed but probably not meant, for the operator to see.
    pub warnings: Vec<String>,
}

/// The shortest `hash` mask key taken, in bytes.
const MIN_MASK_KEY_BYTES: usize = 32;

/// Adds the `[[columns]]` rules to the allow-list. Each names an allowed table; a column is
/// denied or masked, not both; a mask is `hash`, `last4` or `redact`.
fn column_rules(mut allow: AllowList, entries: Vec<RawColumns>) -> Result<AllowList, String> {
    let mut seen = std::collections::HashSet::new();
    for entry in entries {
        let (schema, table) = match (entry.schema, entry.table.split_once('.')) {
            (Some(schema), _) => (schema, entry.table.clone()),
            (None, Some((schema, table))) => (schema.to_owned(), table.to_owned()),
            (None, None) => (allow.default_schema().to_owned(), entry.table.clone()),
        };
        let at = format!("[[columns]] table {schema}.{table}");
        let resolved = allow.resolve(Some(&schema), &table);
        if !allow.allows(&resolved) {
            return Err(format!("{at}: the table is not in the allow-list"));
        }
        if !seen.insert(resolved.clone()) {
            return Err(format!("{at} has rules twice; keep one entry per table"));
        }
        if entry.deny.is_empty() && entry.mask.is_empty() {
            return Err(format!("{at} denies and masks nothing"));
        }
        let mut rule = ColumnRule::new().show_denied(entry.show_denied);
        for column in &entry.deny {
            if column.trim().is_empty() {
                return Err(format!("{at}: deny lists an empty column name"));
            }
            rule = rule.deny(column).map_err(|error| format!("{at}: {error}"))?;
        }
        for (column, mask) in &entry.mask {
            let mask = Mask::named(mask).ok_or_else(|| {
                format!("{at}: mask {column} = {mask:?}: a mask is \"hash\", \"last4\" or \"redact\"")
            })?;
            rule = rule.mask(column, mask).map_err(|error| format!("{at}: {error}"))?;
        }
        allow = allow.columns(&resolved.schema, &resolved.table, rule);
    }
    Ok(allow)
}

/// The database settings. Its `Debug` never shows the URL, which may hold a password.
pub struct DatabaseConfig {
    /// The connection URL.
    pub url: String,
    /// The SQL dialect the URL's scheme names.
    pub dialect: SqlDialect,
    /// Pool size and connect timeout.
    pub pool: PoolOptions,
}

impl fmt::Debug for DatabaseConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DatabaseConfig")
            .field("url", &"<not shown>")
            .field("dialect", &self.dialect)
            .field("pool", &self.pool)
            .finish()
    }
}

/// One grant: a tool, to the callers it names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GrantConfig {
    /// The tool granted.
    pub tool: ToolName,
    /// Only to this identity, if set.
    pub identity: Option<String>,
    /// Only to this tenant, if set.
    pub tenant: Option<String>,
    /// Only to callers whose token carries this scope, if set.
    pub scope: Option<String>,
    /// When the grant ends (exclusive), if ever.
    pub expires_at: Option<SystemTime>,
}

impl GrantConfig {
    /// The grant this entry describes: its tool, to the callers it names.
    pub fn grant(&self) -> Result<crate::policy::Grant, crate::policy::GrantError> {
        let mut granted = crate::policy::Grant::to_anyone(self.tool.as_str())?;
        if let Some(identity) = &self.identity {
            granted = granted.identity(identity)?;
        }
        if let Some(tenant) = &self.tenant {
            granted = granted.tenant(tenant)?;
        }
        if let Some(scope) = &self.scope {
            granted = granted.scope(scope)?;
        }
        if let Some(at) = self.expires_at {
            granted = granted.expires_at(at);
        }
        Ok(granted)
    }
}

/// Where audit records go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuditTarget {
    /// Standard error (the default).
    Stderr,
    /// A JSON-lines file, appended to.
    File(PathBuf),
}

/// A configuration that cannot be used; the message names the file and the key.
#[derive(Debug, thiserror::Error)]
#[error("{origin}: {message}")]
pub struct ConfigError {
    origin: String,
    message: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    database: Option<RawDatabase>,
    #[serde(default)]
    session: RawSession,
    #[serde(default)]
    mode: RawMode,
    #[serde(default)]
    allowlist: RawAllowList,
    #[serde(default)]
    limits: RawLimits,
    #[serde(default)]
    quotas: quotas::RawQuotas,
    #[serde(default)]
    grants: Vec<RawGrant>,
    #[serde(default)]
    columns: Vec<RawColumns>,
    #[serde(default)]
    tools: Vec<tools::RawTool>,
    #[serde(default)]
    output: RawOutput,
    #[serde(default)]
    audit: RawAudit,
    http: Option<http::RawHttp>,
    auth: Option<http::RawAuthChoice>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDatabase {
    url: Option<String>,
    url_env: Option<String>,
    /// The schema unqualified table names mean (PostgreSQL: `public`; MySQL: the URL's
    /// database; SQLite: `main`).
    default_schema: Option<String>,
    max_connections: Option<usize>,
    connect_timeout_ms: Option<u64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSession {
    identity: String,
    tenant: String,
    /// Further claims, for declared tools' params bound to them (`from_claim`).
    #[serde(default)]
    claims: std::collections::BTreeMap<String, String>,
}

impl Default for RawSession {
    fn default() -> Self {
        RawSession { identity: "local".into(), tenant: "local".into(), claims: Default::default() }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMode {
    read_only: bool,
}

impl Default for RawMode {
    fn default() -> Self {
        RawMode { read_only: true }
    }
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawAllowList {
    #[serde(default)]
    schemas: Vec<String>,
    #[serde(default)]
    tables: Vec<String>,
    /// Functions, session facts and catalog lookups beyond the dialect's own list.
    #[serde(default)]
    functions: Vec<String>,
}

/// `[[columns]]`: one table's denied and masked columns.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawColumns {
    schema: Option<String>,
    table: String,
    #[serde(default)]
    deny: Vec<String>,
    #[serde(default)]
    mask: std::collections::BTreeMap<String, String>,
    #[serde(default)]
    show_denied: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawOutput {
    #[serde(default = "framing_on")]
    untrusted_framing: bool,
    mask_key_env: Option<String>,
}

fn framing_on() -> bool {
    true
}

impl Default for RawOutput {
    fn default() -> Self {
        RawOutput { untrusted_framing: true, mask_key_env: None }
    }
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawLimits {
    default_rows: Option<usize>,
    max_rows: Option<usize>,
    default_timeout_ms: Option<u64>,
    max_timeout_ms: Option<u64>,
    max_result_bytes: Option<usize>,
    max_plan_cost: Option<u64>,
    max_plan_rows: Option<u64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawGrant {
    tool: String,
    identity: Option<String>,
    tenant: Option<String>,
    scope: Option<String>,
    expires_at: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawAudit {
    path: Option<PathBuf>,
    deadline_ms: Option<u64>,
    hmac_key_env: Option<String>,
    max_bytes: Option<u64>,
}

impl Config {
    /// Reads and checks the file at `path`; `url_env` is read from the process environment.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let origin = path.display().to_string();
        let text = std::fs::read_to_string(path)
            .map_err(|error| ConfigError { origin: origin.clone(), message: format!("cannot be read: {error}") })?;
        Config::parse(&text, &origin, |name| std::env::var(name).ok())
    }

    /// Checks a configuration's text. `origin` names it in errors; `env` reads variables.
    pub fn parse(text: &str, origin: &str, env: impl Fn(&str) -> Option<String>) -> Result<Config, ConfigError> {
        Config::parse_serving(text, origin, env, None)
    }

    /// Reads and checks the file at `path`, with HTTP on `http_listen` if given (as
    /// `sqlwarden serve --http ADDR` asks), whatever `[http] listen` says.
    pub fn load_serving(path: &Path, http_listen: Option<&str>) -> Result<Config, ConfigError> {
        let origin = path.display().to_string();
        let text = std::fs::read_to_string(path)
            .map_err(|error| ConfigError { origin: origin.clone(), message: format!("cannot be read: {error}") })?;
        Config::parse_serving(&text, &origin, |name| std::env::var(name).ok(), http_listen)
    }

    /// [`parse`](Self::parse), with HTTP on `http_listen` if given.
    pub fn parse_serving(
        text: &str,
        origin: &str,
        env: impl Fn(&str) -> Option<String>,
        http_listen: Option<&str>,
    ) -> Result<Config, ConfigError> {
        let fail = |message: String| ConfigError { origin: origin.to_owned(), message };
        let raw: RawConfig = toml::from_str(text).map_err(|error| fail(toml_error(text, &error)))?;
        let mut warnings = Vec::new();

        let database = raw.database.ok_or_else(|| fail("[database] is missing: set url or url_env".into()))?;
        let url = match (database.url, database.url_env) {
            (Some(url), None) => url,
            (None, Some(name)) => env(&name)
                .filter(|value| !value.is_empty())
                .ok_or_else(|| fail(format!("[database] url_env names {name}, which is not set")))?,
            (Some(_), Some(_)) => return Err(fail("[database] has both url and url_env; keep one".into())),
            (None, None) => return Err(fail("[database] needs url or url_env".into())),
        };
        let dialect = dialect_of(&url).ok_or_else(|| {
            fail("[database] url must start with postgres://, postgresql://, mysql://, mariadb:// or sqlite:".into())
        })?;
        let default_schema = match (database.default_schema, dialect) {
            (Some(schema), _) => schema,
            (None, SqlDialect::Postgres) => "public".into(),
            (None, SqlDialect::Sqlite) => "main".into(),
            (None, SqlDialect::MySql) => mysql_database(&url)
                .ok_or_else(|| fail("[database] a MySQL url must name its database (mysql://…/DATABASE)".into()))?,
        };
        let defaults = PoolOptions::default();
        let mut pool = PoolOptions {
            max_connections: positive(database.max_connections, defaults.max_connections, "[database] max_connections")
                .map_err(fail)?,
            connect_timeout: Duration::from_millis(
                positive(
                    database.connect_timeout_ms,
                    u64::try_from(defaults.connect_timeout.as_millis()).unwrap_or(u64::MAX),
                    "[database] connect_timeout_ms",
                )
                .map_err(fail)?,
            ),
            max_result_bytes: defaults.max_result_bytes,
        };

        // Checked here as the boundary will: a session that cannot bind is a configuration error.
        SessionContext::builder()
            .identity(&raw.session.identity)
            .tenant(&raw.session.tenant)
            .bind()
            .map_err(|error| fail(format!("[session] {error}")))?;

        let mode = if raw.mode.read_only { Mode::ReadOnly } else { Mode::ReadWrite };

        let mut allow = AllowList::new(dialect, &default_schema);
        let every_table = raw.allowlist.tables.iter().any(|table| table == "*");
        if every_table && raw.allowlist.tables.len() > 1 {
            return Err(fail("[allowlist] tables = [\"*\"] allows every table; list no others beside it".into()));
        }
        for schema in &raw.allowlist.schemas {
            if every_table {
                allow = allow.schema(schema);
            }
        }
        for table in raw.allowlist.tables.iter().filter(|table| *table != "*") {
            match table.split_once('.') {
                Some((schema, table)) => allow = allow.table(schema, table),
                None if raw.allowlist.schemas.is_empty() => allow = allow.table(&default_schema, table),
                None => {
                    for schema in &raw.allowlist.schemas {
                        allow = allow.table(schema, table);
                    }
                }
            }
        }
        for function in &raw.allowlist.functions {
            allow = allow.function(function).map_err(|error| fail(format!("[allowlist] functions: {error}")))?;
        }
        if raw.allowlist.tables.is_empty() {
            warnings.push("[allowlist] lists no tables: query_read, list_tables and describe_table see none".into());
        }
        allow = column_rules(allow, raw.columns).map_err(fail)?;
        let mask_key = match raw.output.mask_key_env {
            Some(name) => {
                let key =
                    env(&name).ok_or_else(|| fail(format!("[output] mask_key_env names {name}, which is not set")))?;
                if key.len() < MIN_MASK_KEY_BYTES {
                    return Err(fail(format!("[output] the key in {name} is shorter than {MIN_MASK_KEY_BYTES} bytes")));
                }
                MaskKey::new(key.into_bytes())
            }
            None => {
                if allow.has_column_rules() {
                    warnings.push(
                        "[output] sets no mask_key_env: hash masks are stable only until the server restarts, \
                         and differ between replicas"
                            .into(),
                    );
                }
                MaskKey::random().map_err(fail)?
            }
        };

        let limit_defaults = ReadLimits::default();
        let millis = |duration: Duration| u64::try_from(duration.as_millis()).unwrap_or(u64::MAX);
        let limits = ReadLimits {
            default_rows: positive(raw.limits.default_rows, limit_defaults.default_rows, "[limits] default_rows")
                .map_err(fail)?,
            max_rows: positive(raw.limits.max_rows, limit_defaults.max_rows, "[limits] max_rows").map_err(fail)?,
            default_timeout: Duration::from_millis(
                positive(
                    raw.limits.default_timeout_ms,
                    millis(limit_defaults.default_timeout),
                    "[limits] default_timeout_ms",
                )
                .map_err(fail)?,
            ),
            max_timeout: Duration::from_millis(
                positive(raw.limits.max_timeout_ms, millis(limit_defaults.max_timeout), "[limits] max_timeout_ms")
                    .map_err(fail)?,
            ),
            max_result_bytes: positive(
                raw.limits.max_result_bytes,
                limit_defaults.max_result_bytes,
                "[limits] max_result_bytes",
            )
            .map_err(fail)?,
            plan_limit: crate::adapter::PlanLimit {
                max_cost: raw.limits.max_plan_cost,
                max_rows: raw.limits.max_plan_rows,
            },
        };
        if raw.limits.max_plan_cost == Some(0) || raw.limits.max_plan_rows == Some(0) {
            return Err(fail("[limits] max_plan_cost and max_plan_rows must be at least 1".into()));
        }
        if raw.limits.max_plan_cost.is_some() && dialect != SqlDialect::Postgres {
            return Err(fail(format!(
                "[limits] max_plan_cost is for PostgreSQL, whose planner gives one cost for a query; on {dialect} \
                 use max_plan_rows"
            )));
        }
        pool.max_result_bytes = limits.max_result_bytes;
        if limits.max_rows < limits.default_rows {
            return Err(fail(format!(
                "[limits] max_rows ({}) is below default_rows ({})",
                limits.max_rows, limits.default_rows
            )));
        }
        if limits.max_timeout > crate::adapter::MAX_STATEMENT_TIME {
            return Err(fail(format!(
                "[limits] max_timeout_ms ({}) is above {} (24 hours), the longest time limit every database takes",
                millis(limits.max_timeout),
                millis(crate::adapter::MAX_STATEMENT_TIME)
            )));
        }
        if limits.max_timeout < limits.default_timeout {
            return Err(fail(format!(
                "[limits] max_timeout_ms ({}) is below default_timeout_ms ({})",
                millis(limits.max_timeout),
                millis(limits.default_timeout)
            )));
        }

        let (quotas, quota_store) = quotas::quotas(raw.quotas, &env).map_err(fail)?;
        let declared = tools::tools(raw.tools, &allow, &limits, mode, &mut warnings).map_err(fail)?;
        let session_claims = tools::session_claims(raw.session.claims).map_err(fail)?;

        let mut grants: Vec<GrantConfig> = Vec::with_capacity(raw.grants.len());
        for grant in raw.grants {
            let tool = ToolName::new(&grant.tool).map_err(|error| fail(format!("[[grants]] tool: {error}")))?;
            let expires_at = match grant.expires_at {
                None => None,
                Some(text) => Some(humantime::parse_rfc3339(&text).map_err(|_| {
                    fail(format!("[[grants]] expires_at {text:?} is not an RFC 3339 time such as 2027-01-01T00:00:00Z"))
                })?),
            };
            let entry =
                GrantConfig { tool, identity: grant.identity, tenant: grant.tenant, scope: grant.scope, expires_at };
            // Checked as the service will build it.
            entry.grant().map_err(|error| fail(format!("[[grants]] for {}: {error}", entry.tool)))?;
            if grants.iter().any(|known| GrantConfig { expires_at, ..known.clone() } == entry) {
                return Err(fail(format!("[[grants]] grants {} twice to the same callers", entry.tool)));
            }
            grants.push(entry);
        }
        if grants.is_empty() {
            warnings.push("no [[grants]]: the session may call no tool".into());
        }

        let audit = match raw.audit.path {
            Some(path) => AuditTarget::File(path),
            None => {
                warnings.push(
                    "[audit] names no path: audit records go to stderr, and once a client that does not read \
                     stderr has let its pipe fill, every call is denied (\"audit unavailable\"); set [audit] path"
                        .into(),
                );
                AuditTarget::Stderr
            }
        };
        let default_deadline = u64::try_from(crate::audit::AuditWriter::DEFAULT_DEADLINE.as_millis()).unwrap_or(1000);
        let audit_deadline = Duration::from_millis(
            positive(raw.audit.deadline_ms, default_deadline, "[audit] deadline_ms").map_err(fail)?,
        );
        let audit_key = match raw.audit.hmac_key_env {
            None => None,
            Some(name) => {
                let key =
                    env(&name).ok_or_else(|| fail(format!("[audit] hmac_key_env names {name}, which is not set")))?;
                Some(crate::audit::ChainKey::new(key).ok_or_else(|| {
                    fail(format!(
                        "[audit] the key in {name} is shorter than {} bytes",
                        crate::audit::ChainKey::MIN_BYTES
                    ))
                })?)
            }
        };
        if raw.audit.max_bytes == Some(0) {
            return Err(fail("[audit] max_bytes must be at least 1".into()));
        }
        let http = http::http(raw.http, http_listen).map_err(fail)?;
        let mut auth = http::auth(raw.auth, http.as_ref(), &mut warnings).map_err(fail)?;
        // A token's claims that declared tools bind params to are kept in its principal.
        if let AuthConfig::Bearer(bearer) = &mut auth
            && let Some(jwt) = &mut bearer.jwt
        {
            let mut claims: Vec<String> = declared.iter().flat_map(|tool| tool.claims()).map(str::to_owned).collect();
            claims.sort_unstable();
            claims.dedup();
            jwt.claims = claims;
        }
        Ok(Config {
            database: DatabaseConfig { url, dialect, pool },
            identity: raw.session.identity,
            tenant: raw.session.tenant,
            mode,
            allow,
            limits,
            quotas,
            quota_store,
            session_claims,
            tools: declared,
            grants,
            untrusted_framing: raw.output.untrusted_framing,
            mask_key,
            audit,
            audit_deadline,
            audit_key,
            audit_max_bytes: raw.audit.max_bytes,
            http,
            auth,
            warnings,
        })
    }
}

/// The dialect a database URL's scheme names.
pub fn dialect_of(url: &str) -> Option<SqlDialect> {
    let scheme = url.split_once(':')?.0.to_ascii_lowercase();
    match scheme.as_str() {
        "postgres" | "postgresql" => Some(SqlDialect::Postgres),
        "mysql" | "mariadb" => Some(SqlDialect::MySql),
        "sqlite" => Some(SqlDialect::Sqlite),
        _ => None,
    }
}

/// The database a MySQL URL names: its path, percent-decoded, read as mysql_async reads it
/// (with `url`).
fn mysql_database(url: &str) -> Option<String> {
    let parsed = url::Url::parse(url).ok()?;
    let database = percent_encoding::percent_decode_str(parsed.path().strip_prefix('/')?).decode_utf8().ok()?;
    (!database.is_empty()).then(|| database.into_owned())
}

/// A TOML error as its position and message, never an excerpt of the file: a line of it can
/// hold a database URL with its password. Quoted values in the message (serde quotes the
/// value of a wrong type) are left out too.
fn toml_error(text: &str, error: &toml::de::Error) -> String {
    let mut message = String::with_capacity(error.message().len());
    let mut quoted = false;
    for c in error.message().trim_end().chars() {
        if c == '"' {
            if !quoted {
                message.push_str("\"…\"");
            }
            quoted = !quoted;
        } else if !quoted {
            message.push(c);
        }
    }
    // serde names a wrong enum value in backticks (`unknown variant `…``); keys stay.
    if let Some(at) = message.find("unknown variant `")
        && let Some(end) = message[at + 17..].find('`')
    {
        message.replace_range(at + 17..at + 17 + end, "…");
    }
    match error.span() {
        Some(span) => {
            // A span is at a character boundary; should it not be, the position is the end.
            let before = text.get(..span.start).unwrap_or(text);
            let line = before.matches('\n').count() + 1;
            let column = before.rsplit('\n').next().map_or(0, |last| last.chars().count()) + 1;
            format!("TOML error at line {line}, column {column}: {message}")
        }
        None => format!("TOML error: {message}"),
    }
}

fn positive<T: PartialOrd + Default + fmt::Display + Copy>(
    value: Option<T>,
    default: T,
    key: &str,
) -> Result<T, String> {
    match value {
        Some(value) if value <= T::default() => Err(format!("{key} must be at least 1, not {value}")),
        Some(value) => Ok(value),
        None => Ok(default),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sql::TableName;

    #[test]
    fn a_mysql_urls_database_is_its_path_percent_decoded() {
        assert_eq!(mysql_database("mysql://u:p@h:3306/app?require_ssl=true").as_deref(), Some("app"));
        assert_eq!(mysql_database("mariadb://h/my%20app").as_deref(), Some("my app"));
        assert_eq!(mysql_database("mysql://h/"), None);
        assert_eq!(mysql_database("mysql://h"), None);
    }

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::parse(text, "test.toml", |name| {
            (name == "DB_URL").then(|| "postgres://reader:s3cret@db/app".to_owned())
        })
    }

    fn error(text: &str) -> String {
        parse(text).expect_err("refused").to_string()
    }

    /// `[[columns]]` rules reach the gate; a rule that names a table outside the allow-list,
    /// a column both denied and masked, an unknown mask or a table twice is refused.
    #[test]
    fn column_rules_are_read_and_checked() {
        let base = "[database]\nurl = \"postgres://h/db\"\n[allowlist]\ntables = [\"customers\", \"orders\"]\n";
        let config = parse(&format!(
            "{base}[[columns]]\ntable = \"Customers\"\ndeny = [\"ssn\"]\nmask = {{ email = \"hash\", phone = \"last4\" }}\n"
        ))
        .expect("valid");
        let rule = config.allow.column_rule("public", "customers").expect("a rule");
        assert!(rule.is_denied("SSN") && !rule.shows_denied());
        assert_eq!((rule.mask_of("email"), rule.mask_of("phone")), (Some(Mask::Hash), Some(Mask::Last4)));
        assert!(config.allow.column_rule("public", "orders").is_none());
        assert!(config.untrusted_framing, "framing is on by default");
        assert!(config.warnings.iter().any(|warning| warning.contains("mask_key_env")), "{:?}", config.warnings);
        let validator = crate::sql::SqlValidator::new(config.allow.clone());
        let denial = validator.validate("SELECT ssn FROM customers", 0).expect_err("refused");
        assert_eq!(denial.code(), crate::denial::DenialCode::ColumnDenied);

        for (entry, expected) in [
            (
                "table = \"secrets\"\ndeny = [\"x\"]",
                "[[columns]] table public.secrets: the table is not in the allow-list",
            ),
            (
                "table = \"customers\"\ndeny = [\"email\"]\nmask = { email = \"hash\" }",
                "column email is both denied and masked",
            ),
            ("table = \"customers\"\nmask = { email = \"md5\" }", "a mask is \"hash\", \"last4\" or \"redact\""),
            ("table = \"customers\"", "denies and masks nothing"),
            ("table = \"customers\"\ndeny = [\"\"]", "deny lists an empty column name"),
            ("table = \"customers\"\ndenied = [\"x\"]", "unknown field `denied`"),
        ] {
            let message = error(&format!("{base}[[columns]]\n{entry}\n"));
            assert!(message.contains(expected), "{entry}: {message}");
        }
        let twice = format!(
            "{base}[[columns]]\ntable = \"customers\"\ndeny = [\"a\"]\n[[columns]]\ntable = \"public.customers\"\ndeny = [\"b\"]\n"
        );
        assert!(error(&twice).contains("has rules twice"), "{}", error(&twice));

        let off = parse(&format!("{base}[output]\nuntrusted_framing = false\n")).expect("valid");
        assert!(!off.untrusted_framing);
        let short = error(&format!("{base}[output]\nmask_key_env = \"DB_URL\"\n"));
        assert!(short.contains("[output] the key in DB_URL is shorter than 32 bytes"), "{short}");
        let unset = error(&format!("{base}[output]\nuntrusted_framing = true\nmask_key_env = \"NOPE\"\n"));
        assert!(unset.contains("[output] mask_key_env names NOPE, which is not set"), "{unset}");
    }

    /// Session facts and catalog lookups are refused unless the operator lists them; what has
    /// effects beyond reading cannot be listed.
    #[test]
    fn functions_beyond_the_dialects_list_are_allowed_by_name_only_if_they_only_read() {
        let config = parse(
            "[database]\nurl = \"postgres://h/db\"\n[allowlist]\ntables = [\"t\"]\nfunctions = [\"current_user\", \"RegClass\"]\n",
        )
        .expect("valid");
        let validator = crate::sql::SqlValidator::new(config.allow.clone());
        assert!(validator.validate("SELECT current_user, 't'::regclass FROM t", 0).is_ok());
        assert!(validator.validate("SELECT current_role FROM t", 0).is_err(), "only what is listed");
        assert!(validator.validate("SELECT 't'::regrole FROM t", 0).is_err(), "only what is listed");
        let message = error("[database]\nurl = \"postgres://h/db\"\n[allowlist]\nfunctions = [\"pg_sleep\"]\n");
        assert!(message.contains("[allowlist] functions: pg_sleep can never be allowed"), "{message}");
        // A function that reads a table named by a string would pass the allow-list by.
        for reader in ["table_to_xml", "query_to_xml", "cursor_to_xml", "schema_to_xml", "database_to_xml"] {
            let message =
                error(&format!("[database]\nurl = \"postgres://h/db\"\n[allowlist]\nfunctions = [\"{reader}\"]\n"));
            assert!(message.contains("can never be allowed"), "{reader}: {message}");
        }
        let message = error("[database]\nurl = \"postgres://h/db\"\n[allowlist]\nfunctions = [\"a;b\"]\n");
        assert!(message.contains("is not a function name"), "{message}");
    }

    /// A line of the file can hold a URL with its password: an error shows where and why, never
    /// the line, nor a value it quotes.
    #[test]
    fn a_toml_error_never_echoes_the_file() {
        for (text, expected) in [
            ("[database]\nurl = \"postgres://u:hunter2@db/x\" extra\n", "line 2, column 35"),
            ("[database]\nurl = \"postgres://u:hunter2@db/x\"\nmax_connections = \"hunter2\"\n", "line 3"),
            ("[database]\nurl = \"postgres://u:hunter2@db/x\"\nbogus = 1\n", "unknown field `bogus`"),
            ("[database]\nurl = \"postgres://u:hunter2@db/x\n", "line 2"),
            ("[database]\nurl = ['postgres://u:hunter2@db/x']\n", "line 2"),
        ] {
            let message = error(text);
            assert!(message.contains(expected), "{text}: {message}");
            assert!(!message.contains("hunter2"), "{text}: {message}");
        }
        // An enum value serde names in backticks is left out too.
        #[derive(Debug, Deserialize)]
        enum Kind {
            #[allow(dead_code)]
            Memory,
        }
        #[derive(Debug, Deserialize)]
        struct Keyed {
            #[allow(dead_code)]
            backend: Kind,
        }
        let text = "backend = \"redis://u:hunter2@cache\"\n";
        let refused = toml::from_str::<Keyed>(text).expect_err("not a variant");
        let message = toml_error(text, &refused);
        assert!(message.contains("unknown variant") && !message.contains("hunter2"), "{message}");
    }

    #[test]
    fn defaults_are_secure() {
        let config = parse("[database]\nurl = \"sqlite:demo.db\"\n").expect("valid");
        assert_eq!(config.mode, Mode::ReadOnly);
        assert!(config.grants.is_empty());
        assert!(!config.allow.permits("main", "anything"), "the allow-list is empty");
        assert_eq!(config.limits, ReadLimits::default());
        assert_eq!(config.quotas, QuotaPolicy::default());
        assert_eq!(config.audit, AuditTarget::Stderr);
        assert_eq!(config.database.dialect, SqlDialect::Sqlite);
        assert_eq!(config.allow.default_schema(), "main");
        assert_eq!(config.audit_deadline, Duration::from_secs(1));
        assert_eq!(config.warnings.len(), 3, "{:?}", config.warnings);
        assert!(config.warnings[2].contains("set [audit] path"), "{:?}", config.warnings);
    }

    #[test]
    fn a_full_file_is_read() {
        let config = parse(
            r#"
            [database]
            url_env = "DB_URL"
            max_connections = 3
            connect_timeout_ms = 2500
            [session]
            identity = "analyst@example.com"
            tenant = "acme"
            [mode]
            read_only = false
            [allowlist]
            schemas = ["public", "sales"]
            tables = ["customers", "audit.events"]
            [limits]
            default_rows = 10
            max_rows = 20
            default_timeout_ms = 100
            max_timeout_ms = 200
            max_result_bytes = 1000
            [quotas]
            rate_per_minute = 60
            burst = 5
            max_concurrent = 2
            [[grants]]
            tool = "query_read"
            [[grants]]
            tool = "list_tables"
            expires_at = "2027-01-01T00:00:00Z"
            [audit]
            path = "audit.jsonl"
            deadline_ms = 250
            "#,
        )
        .expect("valid");
        assert_eq!(config.database.url, "postgres://reader:s3cret@db/app");
        assert_eq!(
            config.database.pool,
            PoolOptions { max_connections: 3, connect_timeout: Duration::from_millis(2500), max_result_bytes: 1000 }
        );
        assert_eq!((config.identity.as_str(), config.tenant.as_str()), ("analyst@example.com", "acme"));
        assert_eq!(config.mode, Mode::ReadWrite);
        for (schema, table, allowed) in [
            ("public", "customers", true),
            ("sales", "customers", true),
            ("audit", "events", true),
            ("public", "events", false),
            ("audit", "customers", false),
        ] {
            assert_eq!(config.allow.permits(schema, table), allowed, "{schema}.{table}");
        }
        assert_eq!(
            config.limits,
            ReadLimits {
                default_rows: 10,
                max_rows: 20,
                default_timeout: Duration::from_millis(100),
                max_timeout: Duration::from_millis(200),
                max_result_bytes: 1000,
                plan_limit: crate::adapter::PlanLimit::default(),
            }
        );
        assert_eq!(config.quotas, QuotaPolicy::new(60, 5, 2).expect("valid"));
        assert_eq!(config.grants.len(), 2);
        assert_eq!(config.grants[1].expires_at, Some(SystemTime::UNIX_EPOCH + Duration::from_secs(1_798_761_600)));
        assert_eq!(config.audit, AuditTarget::File("audit.jsonl".into()));
        assert_eq!(config.audit_deadline, Duration::from_millis(250));
        assert!(config.warnings.is_empty(), "{:?}", config.warnings);
        let debug = format!("{config:?}");
        assert!(
            !debug.contains("s3cret") && debug.contains("url: \"<not shown>\""),
            "Debug never shows the URL: {debug}"
        );
        assert!(debug.contains("dialect: Postgres"), "{debug}");
    }

    #[test]
    fn a_star_allows_whole_schemas_but_not_beside_other_tables() {
        let config =
            parse("[database]\nurl = \"postgres://h/db\"\n[allowlist]\nschemas = [\"public\"]\ntables = [\"*\"]\n")
                .expect("valid");
        assert!(config.allow.allows(&TableName { schema: "public".into(), table: "anything".into() }));
        assert!(
            error(
                "[database]\nurl = \"postgres://h/db\"\n[allowlist]\nschemas = [\"public\"]\ntables = [\"*\", \"x\"]\n"
            )
            .contains("list no others")
        );
    }

    #[test]
    fn unknown_keys_are_errors_naming_the_file_and_key() {
        let message = error("[database]\nurl = \"sqlite:x.db\"\n[limits]\nmax_rowz = 5\n");
        assert!(message.starts_with("test.toml: "), "{message}");
        assert!(message.contains("max_rowz"), "{message}");
        assert!(error("[databse]\nurl = \"sqlite:x\"\n").contains("databse"));
    }

    #[test]
    fn invalid_combinations_are_refused_with_a_reason() {
        let cases = [
            ("", "[database] is missing"),
            ("[database]\n", "needs url or url_env"),
            ("[database]\nurl = \"sqlite:x\"\nurl_env = \"DB_URL\"\n", "both url and url_env"),
            ("[database]\nurl_env = \"UNSET\"\n", "url_env names UNSET, which is not set"),
            ("[database]\nurl = \"oracle://h/db\"\n", "url must start with"),
            ("[database]\nurl = \"mysql://h:3306\"\n", "must name its database"),
            ("[database]\nurl = \"sqlite:x\"\nmax_connections = 0\n", "max_connections must be at least 1"),
            (
                "[database]\nurl = \"sqlite:x\"\n[limits]\ndefault_rows = 5000\n",
                "max_rows (1000) is below default_rows (5000)",
            ),
            ("[database]\nurl = \"sqlite:x\"\n[limits]\nmax_rows = 10\n", "max_rows (10) is below default_rows (100)"),
            ("[database]\nurl = \"sqlite:x\"\n[limits]\nmax_timeout_ms = 10\n", "max_timeout_ms (10) is below"),
            (
                "[database]\nurl = \"sqlite:x\"\n[limits]\nmax_timeout_ms = 86400001\n",
                "max_timeout_ms (86400001) is above 86400000",
            ),
            ("[database]\nurl = \"sqlite:x\"\n[limits]\nmax_timeout_ms = 18446744073709551615\n", "is above 86400000"),
            ("[database]\nurl = \"sqlite:x\"\n[limits]\nmax_result_bytes = 0\n", "max_result_bytes must be at least 1"),
            ("[database]\nurl = \"sqlite:x\"\n[quotas]\nburst = 0\n", "[quotas] quota `burst` must be at least 1"),
            ("[database]\nurl = \"sqlite:x\"\n[session]\nidentity = \"\"\ntenant = \"t\"\n", "[session]"),
            ("[database]\nurl = \"sqlite:x\"\n[[grants]]\ntool = \"*\"\n", "[[grants]] tool"),
            ("[database]\nurl = \"sqlite:x\"\n[[grants]]\ntool = \"a\"\n[[grants]]\ntool = \"a\"\n", "grants a twice"),
            ("[database]\nurl = \"sqlite:x\"\n[[grants]]\ntool = \"a\"\nexpires_at = \"soon\"\n", "not an RFC 3339"),
        ];
        for (text, expected) in cases {
            let message = error(text);
            assert!(message.contains(expected), "{text:?}: {message}");
        }
    }

    #[test]
    fn tables_without_schemas_belong_to_the_default_schema() {
        let config =
            parse("[database]\nurl = \"postgres://h/db\"\n[allowlist]\ntables = [\"customers\"]\n").expect("valid");
        assert!(config.allow.permits("public", "customers"));
        assert!(!config.allow.permits("sales", "customers"));
    }

    #[test]
    fn limits_may_equal_their_caps() {
        let config = parse(
            "[database]\nurl = \"sqlite:x\"\n[limits]\ndefault_rows = 7\nmax_rows = 7\n\
             default_timeout_ms = 9\nmax_timeout_ms = 9\n",
        )
        .expect("a default equal to its cap is valid");
        assert_eq!((config.limits.default_rows, config.limits.max_rows), (7, 7));
        assert_eq!(config.limits.default_timeout, config.limits.max_timeout);
    }

    #[test]
    fn the_default_schema_follows_the_backend() {
        let schema = |url: &str| {
            parse(&format!("[database]\nurl = \"{url}\"\n")).expect("valid").allow.default_schema().to_owned()
        };
        assert_eq!(schema("postgresql://h/db"), "public");
        assert_eq!(schema("mariadb://u@h:3306/shop?prefer_socket=false"), "shop");
        assert_eq!(schema("sqlite:x.db"), "main");
        let config = parse("[database]\nurl = \"postgres://h/db\"\ndefault_schema = \"app\"\n").expect("valid");
        assert_eq!(config.allow.default_schema(), "app");
    }
}
