//! The `sqlwarden` command line.
//!
//! This build carries the security kernel (the library); the stdio MCP server that serves the
//! reference tools is not in it yet, so `serve` says so and exits non-zero rather than pretend.

use std::process::ExitCode;

const USAGE: &str = "\
sqlwarden: an MCP server that lets AI agents use SQL databases behind a typed security boundary

Usage: sqlwarden [serve] [--config PATH]
       sqlwarden --help | --version
";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("--help" | "-h") => {
            eprint!("{USAGE}");
            ExitCode::SUCCESS
        }
        Some("--version" | "-V") => {
            eprintln!("sqlwarden {}", env!("CARGO_PKG_VERSION"));
            ExitCode::SUCCESS
        }
        None | Some("serve" | "--config") => {
            eprintln!("sqlwarden: the stdio server is not part of this build yet; the library is (see README.md)");
            ExitCode::from(2)
        }
        Some(other) => {
            eprintln!("sqlwarden: unknown argument `{other}`\n\n{USAGE}");
            ExitCode::from(2)
        }
    }
}
