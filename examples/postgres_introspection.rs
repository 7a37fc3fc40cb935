//! A custom read tool for PostgreSQL, served with the reference tools over MCP on stdio:
//! `index_usage {table?}` reports, for the allow-listed tables, each index's size and how
//! often the planner has used it — what an agent needs to answer "which indexes are unused?"
//! without being allowed to read the catalogs itself.
//!
//! ```text
//! cargo run --example postgres_introspection -- --config sqlwarden.toml
//! ```
//!
//! Grant it like any tool (`[[grants]] tool = "index_usage"`). How it stays safe:
//! 1. its one query is fixed and validated at start-up by the same SQL gate as `query_read`,
//!    against an allow-list of its own that names the two catalog relations it reads;
//! 2. it runs on a connection pool of its own, made with that same allow-list (a backend runs
//!    only queries whose tables its own allow-list permits, so the operator's pool could not
//!    run it), through the adapter's read path: a read-only transaction, a statement time
//!    limit, row and byte caps — it holds `Evidence<Read>`, which cannot open a write;
//! 3. it reports only tables the configuration's allow-list permits, so it shows nothing
//!    `list_tables` would not;
//! 4. its input is typed: an optional table name, unknown fields refused.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sqlwarden::adapter::{Adapter, PoolOptions, ReadOptions, SqlValue};
use sqlwarden::config::Config;
use sqlwarden::service::Service;
use sqlwarden::sql::{AllowList, SqlDialect, SqlValidator, ValidatedQuery};
use sqlwarden::{Denial, DenialCode, Evidence, Read, Tool, ToolError};

/// Index sizes and use for the allow-listed tables.
struct IndexUsage {
    db: Arc<dyn Adapter>,
    /// What the operator allowed: only these tables are reported.
    allow: AllowList,
    query: ValidatedQuery,
}

const QUERY: &str = "SELECT s.schemaname, s.relname, s.indexrelname, s.idx_scan, s.idx_tup_read, c.relpages \
     FROM pg_catalog.pg_stat_user_indexes AS s JOIN pg_catalog.pg_class AS c ON c.oid = s.indexrelid \
     WHERE s.schemaname = $1 AND ($2 = '' OR s.relname = $2) \
     ORDER BY s.relname, s.indexrelname";

/// The most indexes one call reports.
const MAX_INDEXES: usize = 1000;

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct Input {
    /// One table; without it, every allowed table of the default schema.
    #[serde(default)]
    #[schemars(length(min = 1, max = 63))]
    table: Option<String>,
}

#[derive(Serialize)]
struct Index {
    schema: String,
    table: String,
    index: String,
    scans: Value,
    tuples_read: Value,
    /// Size in pages (8 KiB each unless the server was built otherwise), as of the last
    /// `VACUUM` or `ANALYZE`.
    pages: Value,
}

#[derive(Serialize)]
struct Report {
    indexes: Vec<Index>,
    truncated: bool,
}

impl IndexUsage {
    /// Validates the tool's query once, against an allow-list naming the two catalog
    /// relations it reads, and makes a pool with that allow-list to run it on. A query the
    /// gate refuses stops the server from starting.
    fn new(url: &str, pool: PoolOptions, allow: AllowList) -> Result<IndexUsage, String> {
        let own = AllowList::new(SqlDialect::Postgres, allow.default_schema())
            .table("pg_catalog", "pg_stat_user_indexes")
            .table("pg_catalog", "pg_class");
        let query = SqlValidator::new(own.clone())
            .validate(QUERY, 2)
            .map_err(|denial| format!("its own query was refused: {}", denial.message()))?;
        let pool = PoolOptions { max_connections: 1, ..pool };
        let db = sqlwarden::adapter::connect(url, own, pool).map_err(|error| error.denial().message().to_owned())?;
        Ok(IndexUsage { db, allow, query })
    }
}

impl Tool for IndexUsage {
    type Access = Read;
    type Input = Input;
    type Output = Report;

    fn name(&self) -> &str {
        "index_usage"
    }

    fn description(&self) -> &str {
        "For the allowed tables: each index, its size in pages, and how often it has been scanned \
         since statistics were last reset. Indexes with zero scans are candidates for removal."
    }

    fn input_schema(&self) -> serde_json::Map<String, Value> {
        sqlwarden::tools::input_schema_of::<Input>()
    }

    async fn call(&self, evidence: Evidence<'_, Read>, input: Input) -> Result<Report, ToolError> {
        let schema = self.allow.default_schema().to_owned();
        let table = input.table.unwrap_or_default();
        if !table.is_empty() && !self.allow.permits(&schema, &table) {
            return Err(Denial::new(DenialCode::QueryRejected, "no such table, or not allowed").into());
        }
        let options = ReadOptions {
            limit: MAX_INDEXES,
            timeout: Duration::from_secs(5),
            max_bytes: 1 << 20,
            budget_bytes: None,
            plan_limit: Default::default(),
        };
        let params = [SqlValue::Text(schema), SqlValue::Text(table)];
        let result = self.db.query_read(evidence, &self.query, &params, options).await?;
        let text = |value: &Value| value.as_str().unwrap_or_default().to_owned();
        let rows = result.rows.to_values().map_err(ToolError::internal)?;
        let indexes = rows
            .iter()
            .filter_map(|row| match row.as_slice() {
                [schema, table, index, scans, tuples_read, pages] => Some(Index {
                    schema: text(schema),
                    table: text(table),
                    index: text(index),
                    scans: scans.clone(),
                    tuples_read: tuples_read.clone(),
                    pages: pages.clone(),
                }),
                _ => None,
            })
            // Only what the operator allowed; the statistics view shows every table.
            .filter(|index| self.allow.permits(&index.schema, &index.table))
            .collect();
        Ok(Report { indexes, truncated: result.truncated })
    }
}

#[derive(Parser)]
#[command(about = "sqlwarden's reference tools plus index_usage for PostgreSQL, over MCP on stdio")]
struct Cli {
    /// The sqlwarden configuration file.
    #[arg(long, value_name = "PATH")]
    config: PathBuf,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("postgres_introspection: cannot start: {error}");
            return ExitCode::FAILURE;
        }
    };
    let code = runtime.block_on(async {
        let service = Config::load(&cli.config).map_err(|error| error.to_string()).and_then(|config| {
            if config.database.dialect != SqlDialect::Postgres {
                return Err("this example needs a PostgreSQL database".to_owned());
            }
            let (url, pool, allow) = (config.database.url.clone(), config.database.pool, config.allow.clone());
            Service::from_config_with(config, |_, tools| {
                let tool = IndexUsage::new(&url, pool, allow).map_err(|error| format!("index_usage: {error}"))?;
                Ok(tools.register(tool)?)
            })
            .map_err(|error| error.to_string())
        });
        let service = match service {
            Ok(service) => Arc::new(service),
            Err(error) => {
                eprintln!("postgres_introspection: {error}");
                return ExitCode::from(2);
            }
        };
        match sqlwarden::mcp::serve_stdio(service).await {
            Ok(()) => ExitCode::SUCCESS,
            Err(error) => {
                eprintln!("postgres_introspection: stdout failed: {error}");
                ExitCode::FAILURE
            }
        }
    });
    runtime.shutdown_background();
    code
}
