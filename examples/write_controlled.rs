//! An MCP stdio server built on sqlwarden: the reference tools plus a write tool,
//! `add_customer {name, email}`, for a `customers(id, name, email)` table on PostgreSQL or
//! MySQL/MariaDB.
//!
//! ```text
//! cargo run --example write_controlled -- --config sqlwarden.toml
//! ```
//!
//! It reads the same configuration file as `sqlwarden`. To let it write, the file must say
//! `[mode] read_only = false` and grant the tool (`[[grants]] tool = "add_customer"`);
//! otherwise the call is refused with `READ_ONLY` (before authorization) or `UNAUTHORIZED`.
//!
//! Defense in depth, layer by layer:
//! 1. the boundary: session, read-only mode, grant, quota — as for every tool;
//! 2. typed input: unknown fields refused; `name` 1–100 characters without control
//!    characters, `email` of a plausible shape, at most 254 characters — checked in
//!    `validate`, before any transaction opens;
//! 3. one fixed, parameterized INSERT: the model supplies values, never SQL;
//! 4. at most one row affected (`MAX_AFFECTED_ROWS = 1`): anything more rolls back;
//! 5. the transaction commits only if the tool returns `Ok`.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use clap::Parser;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sqlwarden::adapter::{Adapter, SqlValue};
use sqlwarden::config::Config;
use sqlwarden::service::Service;
use sqlwarden::sql::SqlDialect;
use sqlwarden::tools::{WriteTool, WriteTx};
use sqlwarden::{Denial, DenialCode, ToolError};

/// Adds one customer.
struct AddCustomer {
    db: Arc<dyn Adapter>,
}

/// The tool's input: exactly these two fields. The schema clients see is derived from this
/// type, bounds included; `validate` enforces them before any transaction opens.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct NewCustomer {
    /// The customer's name.
    #[schemars(length(min = 1, max = 100))]
    name: String,
    /// Where receipts go.
    #[schemars(email, length(max = 254))]
    email: String,
}

/// What the tool returns.
#[derive(Serialize)]
struct Added {
    id: Option<i64>,
    name: String,
    email: String,
}

const MAX_NAME: usize = 100;
const MAX_EMAIL: usize = 254;

// The statements are fixed text; values are bound to the placeholders.
const INSERT_POSTGRES: &str = "INSERT INTO customers (name, email) VALUES ($1, $2) RETURNING id";
const INSERT_MYSQL: &str = "INSERT INTO customers (name, email) VALUES (?, ?)";

impl NewCustomer {
    /// The input as stored: surrounding white space removed.
    fn trimmed(&self) -> (&str, &str) {
        (self.name.trim(), self.email.trim())
    }
}

/// One `@`, a local part of 1 to 64 characters, a domain with a dot and no empty labels, and
/// nothing that is whitespace or a control character.
fn plausible_email(email: &str) -> bool {
    let Some((local, domain)) = email.split_once('@') else { return false };
    let labels: Vec<&str> = domain.split('.').collect();
    !local.is_empty()
        && local.len() <= 64
        && !domain.contains('@')
        && labels.len() >= 2
        && labels.iter().all(|label| !label.is_empty() && label.chars().all(|c| c.is_alphanumeric() || c == '-'))
        && !email.chars().any(|c| c.is_whitespace() || c.is_control())
}

impl WriteTool for AddCustomer {
    type Input = NewCustomer;
    type Output = Added;
    const MAX_AFFECTED_ROWS: u64 = 1;

    fn name(&self) -> &str {
        "add_customer"
    }

    fn description(&self) -> &str {
        "Adds one customer with a name and an email address; returns the new customer's id."
    }

    fn input_schema(&self) -> serde_json::Map<String, Value> {
        sqlwarden::tools::input_schema_of::<NewCustomer>()
    }

    fn database(&self) -> &dyn Adapter {
        &*self.db
    }

    /// Runs before the transaction opens: bad input never reaches the database.
    fn validate(&self, input: &NewCustomer) -> Result<(), Denial> {
        let invalid = |message: &str| Err(Denial::new(DenialCode::InvalidInput, message.to_owned()));
        let (name, email) = input.trimmed();
        if name.is_empty() || name.chars().count() > MAX_NAME {
            return invalid("name must be 1 to 100 characters");
        }
        if name.chars().any(char::is_control) {
            return invalid("name must not contain control characters");
        }
        if email.len() > MAX_EMAIL || !plausible_email(email) {
            return invalid("email must look like name@example.com (at most 254 characters)");
        }
        Ok(())
    }

    async fn call(&self, tx: &mut WriteTx<'_>, input: NewCustomer) -> Result<Added, ToolError> {
        let (name, email) = input.trimmed();
        let (name, email) = (name.to_owned(), email.to_owned());
        let params = [SqlValue::Text(name.clone()), SqlValue::Text(email.clone())];
        let id = match self.db.dialect() {
            SqlDialect::Postgres => {
                let done = tx.execute(INSERT_POSTGRES, &params).await?;
                done.rows.first().and_then(|row| row.first()).and_then(Value::as_i64)
            }
            SqlDialect::MySql => {
                let done = tx.execute(INSERT_MYSQL, &params).await?;
                done.last_insert_id.and_then(|id| i64::try_from(id).ok())
            }
            _ => return Err(Denial::new(DenialCode::InvalidInput, "add_customer supports PostgreSQL and MySQL").into()),
        };
        Ok(Added { id, name, email })
    }
}

#[derive(Parser)]
#[command(about = "sqlwarden's reference tools plus add_customer, over MCP on stdio")]
struct Cli {
    /// The sqlwarden configuration file.
    #[arg(long, value_name = "PATH")]
    config: PathBuf,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // Logs go to stderr: stdout carries the protocol.
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("SQLWARDEN_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,rmcp=warn")),
        )
        .json()
        .init();
    let runtime = match tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("write_controlled: cannot start: {error}");
            return ExitCode::FAILURE;
        }
    };
    let code = runtime.block_on(async {
        // The reference tools, plus ours: same registry, same boundary, same config file.
        let service = Config::load(&cli.config).map_err(|error| error.to_string()).and_then(|config| {
            Service::from_config_with(config, |db, tools| Ok(tools.register(AddCustomer { db: Arc::clone(db) })?))
                .map_err(|error| error.to_string())
        });
        let service = match service {
            Ok(service) => Arc::new(service),
            Err(error) => {
                eprintln!("write_controlled: {error}");
                return ExitCode::from(2);
            }
        };
        for warning in service.warnings() {
            eprintln!("write_controlled: warning: {warning}");
        }
        match sqlwarden::mcp::serve_stdio(service).await {
            Ok(()) => ExitCode::SUCCESS,
            Err(error) => {
                eprintln!("write_controlled: stdout failed: {error}");
                ExitCode::FAILURE
            }
        }
    });
    // Reading stdin blocks a thread that only new input would free: do not wait for it.
    runtime.shutdown_background();
    code
}
