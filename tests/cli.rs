//! The `sqlwarden` binary, run as a user would.
#![cfg(feature = "sqlite")]

use std::process::Command;

use serde_json::{Value, json};

fn sqlwarden(args: &[&str]) -> (Option<i32>, Value, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_sqlwarden")).args(args).output().expect("runs");
    let stdout = serde_json::from_slice(&output.stdout).unwrap_or(Value::Null);
    (output.status.code(), stdout, String::from_utf8_lossy(&output.stderr).into_owned())
}

#[test]
fn call_runs_one_tool_call_on_the_demo() {
    let (code, out, err) =
        sqlwarden(&["call", "query_read", r#"{"query": "SELECT name FROM customers ORDER BY id", "limit": 2}"#]);
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(out["rows"], json!([["Grace Hopper"], ["Alan Turing"]]));
    assert_eq!(out["truncated"], json!(true));
    assert!(err.contains(r#""stage":"execute","decision":"allow""#), "the audit goes to stderr: {err}");

    let (code, out, _) = sqlwarden(&["call", "query_read", r#"{"query": "DELETE FROM customers"}"#]);
    assert_eq!(code, Some(1));
    assert_eq!(out, json!({"code": "QUERY_REJECTED", "message": "only queries are allowed, not DELETE"}));

    let (code, out, _) = sqlwarden(&["call", "list_tables"]);
    assert_eq!(code, Some(0));
    assert_eq!(out["tables"].as_array().map(Vec::len), Some(4));
}

#[test]
fn bad_input_and_configs_are_refused_with_a_reason() {
    let (code, _, err) = sqlwarden(&["call", "query_read", "{not json"]);
    assert_eq!(code, Some(2));
    assert!(err.contains("the arguments are not JSON"), "{err}");
    let (code, _, err) = sqlwarden(&["call", "list_tables", "--config", "/nonexistent/sqlwarden.toml"]);
    assert_eq!(code, Some(2));
    assert!(err.contains("/nonexistent/sqlwarden.toml: cannot be read"), "{err}");
}

#[test]
fn serve_is_the_default_and_ends_cleanly_at_the_end_of_input() {
    let (code, out, _) = sqlwarden(&[]);
    assert_eq!(code, Some(0));
    assert_eq!(out, Value::Null, "nothing on stdout without a request");
    let (code, _, _) = sqlwarden(&["--version"]);
    assert_eq!(code, Some(0));
}

#[test]
fn check_reports_the_posture_and_exits_by_it() {
    let dir = std::env::temp_dir().join(format!("sqlwarden-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let database = dir.join("shop.db");
    rusqlite::Connection::open(&database)
        .expect("create")
        .execute_batch("CREATE TABLE t (id INTEGER);")
        .expect("table");
    let config = dir.join("sqlwarden.toml");
    std::fs::write(
        &config,
        format!("[database]\nurl = \"sqlite:{}\"\n[allowlist]\ntables = [\"t\"]\n", database.display()),
    )
    .expect("config");
    let config = config.to_str().expect("path");

    let output =
        Command::new(env!("CARGO_BIN_EXE_sqlwarden")).args(["check", "--config", config]).output().expect("runs");
    let report = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(1), "a writable file is a finding: {report}");
    assert!(report.contains("the configuration is valid"), "{report}");
    assert!(report.contains("allow-listed tables visible: 1"), "{report}");
    assert!(report.contains("the database file is writable by this process"), "{report}");
    assert!(report.contains("warning: no [[grants]]"), "{report}");

    let mut permissions = std::fs::metadata(&database).expect("metadata").permissions();
    permissions.set_readonly(true);
    std::fs::set_permissions(&database, permissions).expect("read-only");
    let output =
        Command::new(env!("CARGO_BIN_EXE_sqlwarden")).args(["check", "--config", config]).output().expect("runs");
    let report = String::from_utf8_lossy(&output.stdout);
    // A privileged user (root, as in CI) can write a read-only file anyway, and is told so.
    let still_writable = std::fs::OpenOptions::new().write(true).open(&database).is_ok();
    if still_writable {
        assert_eq!(output.status.code(), Some(1), "{report}");
    } else {
        assert_eq!(output.status.code(), Some(0), "{report}");
        assert!(report.contains("posture: the role may only read"), "{report}");
    }

    let (code, _, err) = sqlwarden(&["check"]);
    assert_eq!(code, Some(2));
    assert!(err.contains("check needs --config"), "{err}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn audit_verify_proves_an_untouched_chain_across_restarts_and_names_the_line_edited() {
    let dir = std::env::temp_dir().join(format!("sqlwarden-cli-audit-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let database = dir.join("app.db");
    let connection = rusqlite::Connection::open(&database).expect("opens");
    connection
        .execute_batch("CREATE TABLE t (id INTEGER PRIMARY KEY); INSERT INTO t VALUES (1), (2);")
        .expect("fixture");
    drop(connection);
    let audit = dir.join("audit.jsonl");
    let config = dir.join("sqlwarden.toml");
    std::fs::write(
        &config,
        format!(
            "[database]\nurl = \"sqlite:{}\"\n[allowlist]\nschemas = [\"main\"]\ntables = [\"t\"]\n\
             [[grants]]\ntool = \"query_read\"\n[audit]\npath = \"{}\"\nhmac_key_env = \"SQLWARDEN_TEST_AUDIT_KEY\"\n",
            database.display(),
            audit.display()
        ),
    )
    .expect("config");
    let key = ("SQLWARDEN_TEST_AUDIT_KEY", "a key for the audit chain, 32+ bytes");
    let run = |args: &[&str]| {
        let output = Command::new(env!("CARGO_BIN_EXE_sqlwarden")).args(args).env(key.0, key.1).output().expect("runs");
        (output.status.code(), String::from_utf8_lossy(&output.stdout).into_owned())
    };
    let config_arg = config.to_str().expect("utf-8 path");
    // Two servers' lives, one after the other: a restart continues the chain.
    for id in [1, 2] {
        let query = format!(r#"{{"query": "SELECT id FROM t WHERE id = {id}"}}"#);
        let (code, out) = run(&["call", "query_read", &query, "--config", config_arg]);
        assert_eq!(code, Some(0), "{out}");
    }
    let audit_arg = audit.to_str().expect("utf-8 path");
    let (code, out) = run(&["audit", "verify", "--hmac-key-env", key.0, audit_arg]);
    assert_eq!(code, Some(0), "{out}");
    assert!(out.starts_with("intact: "), "{out}");
    let text = std::fs::read_to_string(&audit).expect("audit");
    let executes: Vec<Value> = text
        .lines()
        .map(|line| serde_json::from_str::<Value>(line).expect("JSON"))
        .filter(|record| record["stage"] == "execute")
        .collect();
    assert_eq!(executes.len(), 2);
    assert_eq!(executes[0]["fingerprint"], executes[1]["fingerprint"], "one shape");
    assert_eq!((&executes[0]["transport"], &executes[0]["request_id"]), (&json!("cli"), &Value::Null));
    assert!(!text.contains("SELECT"), "no SQL text in the audit");

    let (code, out) = run(&["audit", "stats", audit_arg]);
    assert_eq!(code, Some(0), "{out}");
    let stats: Value = serde_json::from_str(&out).expect("stats are JSON");
    assert_eq!(stats["calls"], 2);
    assert_eq!(stats["top_fingerprints"][0][1], 2, "{stats}");
    assert_eq!(stats["rows_by_principal"]["local/local"], 2, "{stats}");
    // Without the key, the keyed chain does not verify.
    let (code, out) = run(&["audit", "verify", audit_arg]);
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains(": line 1: "), "{out}");
    // An edited line is named.
    let mut lines: Vec<&str> = text.lines().collect();
    let edited = lines[2].replacen("\"decision\":\"allow\"", "\"decision\":\"deny\"", 1);
    assert_ne!(edited, lines[2]);
    lines[2] = &edited;
    std::fs::write(&audit, lines.join("\n") + "\n").expect("edited");
    let (code, out) = run(&["audit", "verify", "--hmac-key-env", key.0, audit_arg]);
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains(": line 3: "), "{out}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// `check` looks up every `[[columns]]` rule in the database: a rule naming a column, or a
/// table, the database does not have protects nothing (a typo), and check says so and fails.
#[test]
fn check_reports_column_rules_that_protect_nothing() {
    let dir = std::env::temp_dir().join(format!("sqlwarden-cli-columns-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let database = dir.join("people.db");
    rusqlite::Connection::open(&database)
        .expect("create")
        .execute_batch("CREATE TABLE people (id INTEGER, email TEXT, ssn TEXT); CREATE TABLE teams (id INTEGER);")
        .expect("tables");
    let check = |rules: &str| {
        let config = dir.join("sqlwarden.toml");
        std::fs::write(
            &config,
            format!(
                "[database]\nurl = \"sqlite:{}\"\n[allowlist]\nschemas = [\"main\"]\ntables = [\"*\"]\n{rules}",
                database.display()
            ),
        )
        .expect("config");
        let output = Command::new(env!("CARGO_BIN_EXE_sqlwarden"))
            .args(["check", "--config", config.to_str().expect("path")])
            .output()
            .expect("runs");
        (output.status.code(), String::from_utf8_lossy(&output.stdout).into_owned())
    };
    let (_, report) = check("[[columns]]\ntable = \"people\"\ndeny = [\"SSN\"]\nmask = { email = \"hash\" }\n");
    assert!(report.contains("the configuration is valid") && !report.contains("columns:"), "{report}");
    let (code, report) =
        check("[[columns]]\ntable = \"people\"\ndeny = [\"ssn_number\"]\nmask = { email = \"hash\" }\n");
    assert_eq!(code, Some(1), "{report}");
    assert!(report.contains("columns: [[columns]] table main.people: it has no column ssn_number"), "{report}");
    let (code, report) = check("[[columns]]\ntable = \"peoples\"\ndeny = [\"ssn\"]\n");
    assert_eq!(code, Some(1), "{report}");
    assert!(report.contains("columns: [[columns]] table main.peoples: the database shows no such table"), "{report}");
    let _ = std::fs::remove_dir_all(&dir);
}
