//! The `sqlwarden` command line.
//!
//! `serve` (the default) serves MCP on stdio; `call` runs one tool call through the same
//! pipeline and prints the result; `check` reports what the configured database role may do
//! beyond reading.

use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use sqlwarden::config::Config;
use sqlwarden::logging::LogWriter;
use sqlwarden::service::Service;

/// sqlwarden: lets AI agents use SQL databases through MCP tools, behind a typed security
/// boundary. Without a configuration it serves a built-in demo SQLite database.
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    /// The configuration file (see README.md); without one, the built-in demo database.
    #[arg(long, global = true, value_name = "PATH")]
    config: Option<PathBuf>,
}

#[derive(Subcommand)]
enum Command {
    /// Serves MCP over stdin and stdout (the default), or over HTTP when the configuration has
    /// [http] or --http is given.
    Serve {
        /// Serve MCP over Streamable HTTP on this address (such as 127.0.0.1:8080) instead of stdio.
        #[arg(long, value_name = "ADDR")]
        http: Option<String>,
    },
    /// Runs one tool call through the full pipeline and prints its result as JSON.
    Call {
        /// The tool: query_read, list_tables, describe_table, explain_query, or one declared in [[tools]].
        tool: String,
        /// The call's arguments, a JSON object.
        #[arg(default_value = "{}")]
        arguments: String,
    },
    /// Checks the configuration, connects, and reports what the database role may do beyond
    /// reading. Exits 0 when it may only read, 1 when it may do more, 2 when it cannot check.
    Check,
    /// Works with audit files.
    Audit {
        #[command(subcommand)]
        command: AuditCommand,
    },
}

#[derive(Subcommand)]
enum AuditCommand {
    /// Verifies the hash chain of audit files, given oldest first (a rotated file before the
    /// one that followed it). Exits 0 when the chain is intact and closed, 1 at the first break
    /// (named by file and line), 2 when it cannot verify.
    Verify {
        /// The environment variable holding the chain's key, when it was written with
        /// `[audit] hmac_key_env`.
        #[arg(long, value_name = "NAME")]
        hmac_key_env: Option<String>,
        /// The audit files, oldest first.
        #[arg(required = true, value_name = "FILE")]
        files: Vec<PathBuf>,
    },
    /// Sums up audit files, as JSON: calls, denials by code, the query fingerprints run most,
    /// and the rows returned to each principal.
    Stats {
        /// The audit files.
        #[arg(required = true, value_name = "FILE")]
        files: Vec<PathBuf>,
    },
}

fn main() -> ExitCode {
    start_with_memory_settings();
    let cli = Cli::parse();
    match cli.command.unwrap_or(Command::Serve { http: None }) {
        Command::Serve { http } => serve(cli.config, http),
        Command::Call { tool, arguments } => call(cli.config, &tool, &arguments),
        Command::Check => check(cli.config),
        Command::Audit { command: AuditCommand::Verify { hmac_key_env, files } } => {
            verify_audit(hmac_key_env.as_deref(), &files)
        }
        Command::Audit { command: AuditCommand::Stats { files } } => audit_stats(&files),
    }
}

/// Two settings that keep the memory a large result used from staying with the process, read
/// only when a process starts; so the server starts itself again with them, once (should that
/// fail, it goes on as it is). `tests/postgres.rs` and `tests/mysql.rs` read the process's memory
/// from `/proc` after large results.
///
/// - glibc's allocator raises its mmap threshold each time a large block is freed, so that later
///   large blocks come from the heap and stay there once freed. A fixed threshold (1 MiB) keeps
///   every large block mapped, and gives it back when it is freed. Fixing it also fixes the
///   heap's trim threshold at 128 KiB, which would give back and take again the top of the heap
///   with every answer of a few hundred KiB (two `brk` calls per call): 4 MiB instead.
/// - mysql_async keeps up to 128 packet buffers for reuse, each of up to 4 MiB: 64 KiB each is
///   plenty for the packets of ordinary rows.
fn start_with_memory_settings() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        use std::os::unix::process::CommandExt as _;
        const THRESHOLD: &str = "glibc.malloc.mmap_threshold=1048576:glibc.malloc.trim_threshold=4194304";
        const BUFFERS: (&str, &str) = ("MYSQL_ASYNC_BUFFER_SIZE_CAP", "65536");
        let tunables = std::env::var("GLIBC_TUNABLES").unwrap_or_default();
        let threshold_set = tunables.split(':').any(|tunable| tunable.starts_with("glibc.malloc.mmap_threshold="));
        let buffers_set = std::env::var_os(BUFFERS.0).is_some();
        if threshold_set && buffers_set {
            return;
        }
        let Ok(program) = std::env::current_exe() else { return };
        let mut again = std::process::Command::new(program);
        again.args(std::env::args_os().skip(1));
        if !threshold_set {
            again.env(
                "GLIBC_TUNABLES",
                if tunables.is_empty() { THRESHOLD.to_owned() } else { format!("{tunables}:{THRESHOLD}") },
            );
        }
        if !buffers_set {
            again.env(BUFFERS.0, BUFFERS.1);
        }
        // Only returns if the program could not be started again.
        let _ = again.exec();
    }
}

/// Logs go to stderr as JSON lines, through a thread of their own (see `sqlwarden::logging`);
/// stdout carries only the protocol.
fn init_logs() -> Option<LogWriter> {
    let filter = tracing_subscriber::EnvFilter::try_from_env("SQLWARDEN_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,rmcp=warn"));
    let writer = LogWriter::stderr(LogWriter::DEFAULT_QUEUE).ok()?;
    tracing_subscriber::fmt().json().with_env_filter(filter).with_writer(writer.clone()).try_init().ok()?;
    Some(writer)
}

/// Writes one line to stderr. Unlike `eprintln!`, it never panics: stderr may be a pipe that
/// is full and non-blocking (see `sqlwarden::audit::AuditWriter`), and the line is then lost.
fn say(message: std::fmt::Arguments<'_>) {
    let _ = writeln!(std::io::stderr(), "sqlwarden: {message}");
}

/// How long an exiting server waits for its audit records and log lines to be written.
const FLUSH_AT_EXIT: Duration = Duration::from_secs(2);

/// Starts a runtime and the service, then runs `work` with it. A service that cannot start
/// exits 2 with its reason.
fn with_service<F: std::future::Future<Output = ExitCode>>(
    config: Option<PathBuf>,
    work: impl FnOnce(Service) -> F,
) -> ExitCode {
    with_service_serving(config, None, |service, _| work(service))
}

/// [`with_service`], with the HTTP settings the configuration (or `--http ADDR`) asks for.
fn with_service_serving<F: std::future::Future<Output = ExitCode>>(
    config: Option<PathBuf>,
    http: Option<&str>,
    work: impl FnOnce(Service, Option<Http>) -> F,
) -> ExitCode {
    let runtime = match runtime() {
        Ok(runtime) => runtime,
        Err(error) => {
            say(format_args!("{error}"));
            return ExitCode::FAILURE;
        }
    };
    let code = runtime.block_on(async {
        match service(config, http) {
            Ok((service, http)) => {
                let audit = std::sync::Arc::clone(service.audit());
                let code = work(service, http).await;
                // Records of calls denied or cancelled were handed over without waiting; the
                // audit's chain is closed.
                if let Err(error) = audit.close(FLUSH_AT_EXIT) {
                    say(format_args!("some audit records may not have been written: {error}"));
                }
                code
            }
            Err(error) => {
                say(format_args!("{error}"));
                ExitCode::from(2)
            }
        }
    });
    // The work is done. Reading stdin blocks a thread that only new input or its end would
    // free (after a signal, neither may come), so the runtime is not waited for.
    runtime.shutdown_background();
    code
}

fn serve(config: Option<PathBuf>, http: Option<String>) -> ExitCode {
    let logs = init_logs();
    let code = with_service_serving(config, http.as_deref(), |service, http| async move {
        let service = std::sync::Arc::new(service);
        let hangups = tokio::spawn(reopen_audit_on_hangup(std::sync::Arc::clone(service.audit())));
        let served = match http {
            Some((http, auth)) => {
                tracing::info!(version = env!("CARGO_PKG_VERSION"), "serving MCP over HTTP");
                sqlwarden::mcp::serve_http(std::sync::Arc::clone(&service), http, auth).await
            }
            None => {
                tracing::info!(version = env!("CARGO_PKG_VERSION"), "serving MCP on stdio");
                sqlwarden::mcp::serve_stdio(std::sync::Arc::clone(&service)).await
            }
        };
        hangups.abort();
        let failures = service.boundary().audit_failures();
        if failures > 0 {
            tracing::warn!(failures, "audit batches could not be written; their calls were denied");
        }
        match served {
            Ok(()) => ExitCode::SUCCESS,
            Err(error) => {
                tracing::error!(%error, "serving failed");
                say(format_args!("{error}"));
                ExitCode::FAILURE
            }
        }
    });
    if let Some(logs) = logs {
        logs.flush(FLUSH_AT_EXIT);
    }
    code
}

/// On SIGHUP (sent by logrotate once it has renamed the audit file), the audit's chain is
/// closed in the old file and goes on in the file now at the configured path.
async fn reopen_audit_on_hangup(audit: std::sync::Arc<dyn sqlwarden::audit::AuditSink>) {
    use tokio::signal::unix::{SignalKind, signal};
    let Ok(mut hangups) = signal(SignalKind::hangup()) else { return };
    while hangups.recv().await.is_some() {
        match audit.reopen() {
            Ok(()) => tracing::info!("the audit file was reopened"),
            Err(error) => tracing::warn!(%error, "the audit file could not be reopened"),
        }
    }
}

fn runtime() -> Result<tokio::runtime::Runtime, String> {
    tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(|error| format!("cannot start: {error}"))
}

/// `sqlwarden audit stats`: the sums go to stdout, as JSON.
fn audit_stats(files: &[PathBuf]) -> ExitCode {
    match sqlwarden::audit::stats(files) {
        Ok(stats) => match serde_json::to_writer_pretty(std::io::stdout().lock(), &stats) {
            Ok(()) => {
                let _ = writeln!(std::io::stdout());
                ExitCode::SUCCESS
            }
            Err(_) => ExitCode::FAILURE,
        },
        Err(error) => {
            say(format_args!("cannot read the audit: {error}"));
            ExitCode::from(2)
        }
    }
}

/// `sqlwarden audit verify`: the report goes to stdout.
fn verify_audit(key_env: Option<&str>, files: &[PathBuf]) -> ExitCode {
    use sqlwarden::audit::{ChainKey, verify};
    let key = match key_env {
        None => None,
        Some(name) => match std::env::var_os(name).map(|key| ChainKey::new(key.into_encoded_bytes())) {
            Some(Some(key)) => Some(key),
            Some(None) => {
                say(format_args!("the key in {name} is shorter than {} bytes", ChainKey::MIN_BYTES));
                return ExitCode::from(2);
            }
            None => {
                say(format_args!("{name} is not set"));
                return ExitCode::from(2);
            }
        },
    };
    let mut out = std::io::stdout().lock();
    match verify(files, key.as_ref()) {
        Ok(verified) => {
            let _ = writeln!(
                out,
                "intact: {} records in {} file(s), the chain opened {} time(s) and closed",
                verified.records,
                files.len(),
                verified.opened
            );
            ExitCode::SUCCESS
        }
        Err(broken) if broken.line == 0 => {
            say(format_args!("{broken}"));
            ExitCode::from(2)
        }
        Err(broken) => {
            let _ = writeln!(out, "broken: {broken}");
            ExitCode::FAILURE
        }
    }
}

fn check(config: Option<PathBuf>) -> ExitCode {
    let Some(path) = config else {
        say(format_args!("check needs --config PATH (the built-in demo needs no check)"));
        return ExitCode::from(2);
    };
    let report = runtime().and_then(|runtime| {
        runtime.block_on(async {
            let config = Config::load(&path).map_err(|error| error.to_string())?;
            let http = match &config.http {
                Some(http) => Some(http_report(http, &config.auth).await),
                None => None,
            };
            let report = sqlwarden::service::check(config).await.map_err(|error| error.to_string())?;
            Ok((report, http))
        })
    });
    let (report, http) = match report {
        Ok(report) => report,
        Err(error) => {
            say(format_args!("{error}"));
            return ExitCode::from(2);
        }
    };
    let mut text = format!(
        "{}: the configuration is valid\ndatabase: {}, connected as {}\nallow-listed tables visible: {}\n",
        path.display(),
        report.dialect,
        report.posture.role,
        report.visible_tables
    );
    for warning in &report.warnings {
        text.push_str(&format!("warning: {warning}\n"));
    }
    for line in http.iter().flatten() {
        text.push_str(&format!("http: {line}\n"));
    }
    let mut code = match &report.quota_store {
        Some(Ok(())) => {
            text.push_str("quotas: redis answers\n");
            ExitCode::SUCCESS
        }
        Some(Err(error)) => {
            text.push_str(&format!(
                "quotas: redis cannot be reached ({error}): every call would be denied with QUOTA_UNAVAILABLE\n"
            ));
            ExitCode::FAILURE
        }
        None => ExitCode::SUCCESS,
    };
    for problem in &report.column_rules {
        text.push_str(&format!("columns: {problem}\n"));
        code = ExitCode::FAILURE;
    }
    if report.posture.findings.is_empty() {
        text.push_str("posture: the role may only read\n");
    } else {
        for finding in &report.posture.findings {
            text.push_str(&format!("posture: the database role can do more than read: {finding}\n"));
        }
        text.push_str("posture: use a read-only role (see README.md)\n");
        code = ExitCode::FAILURE;
    }
    match std::io::stdout().lock().write_all(text.as_bytes()) {
        Ok(()) => code,
        Err(_) => ExitCode::FAILURE,
    }
}

/// `sqlwarden check`'s lines about the HTTP transport: where it listens, whether the JWKS can
/// be read, and what weakens it.
async fn http_report(http: &sqlwarden::config::HttpConfig, auth: &sqlwarden::config::AuthConfig) -> Vec<String> {
    let mut lines = vec![format!("serving {} at {}{}", http.resource, http.listen, http.path)];
    if let sqlwarden::config::AuthConfig::Bearer(bearer) = auth
        && let Some(settings) = &bearer.jwt
    {
        match sqlwarden::auth::JwtVerifier::new(settings.clone()).await {
            Ok(verifier) if verifier.key_count() > 0 => {
                lines.push(format!("the JWKS holds {} usable signing keys", verifier.key_count()));
            }
            Ok(_) => lines.push("posture: the JWKS could not be fetched: every token would be refused".into()),
            Err(error) => lines.push(format!("posture: {error}")),
        }
    }
    let now = std::time::SystemTime::now();
    lines.extend(
        sqlwarden::config::http_posture(http, auth, now).into_iter().map(|finding| format!("posture: {finding}")),
    );
    lines
}

/// What the HTTP transport serves with: its settings and who may call it.
type Http = (sqlwarden::config::HttpConfig, sqlwarden::config::AuthConfig);

fn service(config: Option<PathBuf>, http_listen: Option<&str>) -> Result<(Service, Option<Http>), String> {
    #[cfg_attr(not(feature = "sqlite"), allow(unused_mut))]
    let mut warnings = Vec::new();
    let (service, http) = match config {
        Some(path) => {
            let config = Config::load_serving(&path, http_listen).map_err(|error| error.to_string())?;
            let http = config.http.clone().map(|http| (http, config.auth.clone()));
            (Service::from_config(config), http)
        }
        #[cfg(feature = "sqlite")]
        None => {
            let http = match http_listen {
                Some(listen) => Some(sqlwarden::config::HttpConfig::without_auth(listen, &mut warnings)?),
                None => None,
            };
            (Service::demo(), http)
        }
        #[cfg(not(feature = "sqlite"))]
        None => return Err("this build has no demo database (cargo feature sqlite); pass --config".into()),
    };
    let service = service.map_err(|error| error.to_string())?;
    for warning in service.warnings().iter().chain(&warnings) {
        say(format_args!("warning: {warning}"));
    }
    Ok((service, http))
}

fn call(config: Option<PathBuf>, tool: &str, arguments: &str) -> ExitCode {
    let arguments: serde_json::Value = match serde_json::from_str(arguments) {
        Ok(arguments) => arguments,
        Err(error) => {
            say(format_args!("the arguments are not JSON: {error}"));
            return ExitCode::from(2);
        }
    };
    with_service(config, |service| async move {
        let (output, code) = match service
            .call_from(sqlwarden::audit::Origin::new(sqlwarden::audit::Transport::Cli), tool, arguments)
            .await
        {
            Ok(output) => (output, ExitCode::SUCCESS),
            Err(denial) => match sqlwarden::ToolOutput::of(
                &serde_json::json!({"code": denial.code(), "message": denial.message()}),
            ) {
                Ok(output) => (output, ExitCode::FAILURE),
                Err(_) => return ExitCode::FAILURE,
            },
        };
        let mut stdout = std::io::stdout().lock();
        // Pretty when it can be read back (it always can, but for values nested past 128 levels).
        let written = match output.to_value() {
            Ok(value) => serde_json::to_writer_pretty(&mut stdout, &value).map_err(std::io::Error::from),
            Err(_) => stdout.write_all(output.as_json().as_bytes()),
        };
        match written.and_then(|()| writeln!(stdout)) {
            Ok(()) => code,
            Err(_) => ExitCode::FAILURE,
        }
    })
}
