//! The stdio MCP server, spawned and driven over its stdin and stdout as a client would.
#![cfg(feature = "sqlite")]

mod databases;

use databases::McpProcess;
use serde_json::{Value, json};

#[test]
fn the_demo_serves_the_reference_tools_over_stdio() {
    let mut server = McpProcess::start(&[]);
    let initialized = server.initialize();
    assert_eq!(initialized["result"]["serverInfo"]["name"], json!("sqlwarden"));
    assert!(initialized["result"]["capabilities"]["tools"].is_object());

    let listed = server.request("tools/list", json!({}));
    let tools = listed["result"]["tools"].as_array().expect("tools").clone();
    let names: Vec<&str> = tools.iter().map(|tool| tool["name"].as_str().expect("name")).collect();
    assert_eq!(names, ["describe_table", "explain_query", "list_tables", "query_read"]);
    for tool in &tools {
        assert_eq!(tool["annotations"]["readOnlyHint"], json!(true), "{tool}");
        assert_eq!(tool["annotations"]["destructiveHint"], json!(false), "{tool}");
        assert_eq!(tool["inputSchema"]["additionalProperties"], json!(false), "{tool}");
    }
    let query_read = tools.iter().find(|tool| tool["name"] == json!("query_read")).expect("query_read");
    assert_eq!(query_read["inputSchema"]["properties"]["limit"]["maximum"], json!(1000));
    assert_eq!(query_read["inputSchema"]["required"], json!(["query"]));

    let rows =
        server.call("query_read", json!({"query": "SELECT id, name FROM customers WHERE id = ?", "params": [2]}));
    assert_eq!(rows["isError"], json!(false));
    assert_eq!(rows["structuredContent"]["rows"], json!([[2, "Alan Turing"]]));
    let text = databases::unframe(rows["content"][0]["text"].as_str().expect("text"));
    assert_eq!(text, rows["structuredContent"], "the text copy, framed as data, is the same result");

    let refused = server.call("query_read", json!({"query": "UPDATE customers SET name = 'x'"}));
    assert_eq!(refused["isError"], json!(true));
    assert_eq!(refused["structuredContent"]["code"], json!("QUERY_REJECTED"));
    let unknown = server.call("drop_database", json!({}));
    assert_eq!(unknown["structuredContent"], json!({"code": "TOOL_NOT_FOUND", "message": "unknown tool"}));

    server.send_line("this is not JSON");
    let parse_error = server.receive();
    assert_eq!((parse_error["error"]["code"].clone(), parse_error["id"].clone()), (json!(-32700), Value::Null));
    let still = server.call("list_tables", json!({}));
    assert_eq!(still["structuredContent"]["tables"].as_array().map(Vec::len), Some(4), "still serving");

    assert_eq!(server.finish(), Some(0), "end of input ends the server cleanly");
}

#[test]
fn nothing_runs_before_initialize_and_the_server_survives_it() {
    let mut server = McpProcess::start(&[]);
    server.send_line(r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#);
    let early = server.request("tools/call", json!({"name": "list_tables", "arguments": {}}));
    assert_eq!(early["error"]["code"], json!(-32600));
    assert!(early["result"].is_null());
    let huge = format!(r#"{{"jsonrpc":"2.0","id":99,"method":"ping","params":{{"pad":"{}"}}}}"#, "x".repeat(5 << 20));
    server.send_line(&huge);
    assert_eq!(server.receive()["error"]["code"], json!(-32600), "an over-long message is refused");
    assert_eq!(server.initialize()["result"]["serverInfo"]["name"], json!("sqlwarden"));
    assert_eq!(server.call("list_tables", json!({}))["isError"], json!(false));
    assert_eq!(server.finish(), Some(0));
}

#[test]
fn sigterm_lets_the_server_exit_cleanly() {
    let mut server = McpProcess::start(&[]);
    server.initialize();
    assert_eq!(server.call("list_tables", json!({}))["isError"], json!(false));
    let killed = std::process::Command::new("kill").args(["-TERM", &server.pid().to_string()]).status().expect("kill");
    assert!(killed.success());
    assert_eq!(server.wait(), Some(0), "SIGTERM ends the server with exit code 0");
}

#[test]
fn a_refused_initialize_leaves_the_session_closed_but_alive() {
    let mut server = McpProcess::start(&[]);
    let refused = server.request("initialize", json!({}));
    assert!(refused["error"].is_object(), "{refused}");
    // rmcp would end the session on a notification before a successful initialize.
    server.send_line(r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#);
    let early = server.request("tools/list", json!({}));
    assert_eq!(early["error"]["code"], json!(-32600), "still not initialized: {early}");
    assert_eq!(server.initialize()["result"]["serverInfo"]["name"], json!("sqlwarden"), "a later initialize succeeds");
    assert_eq!(server.call("list_tables", json!({}))["isError"], json!(false));
    assert_eq!(server.finish(), Some(0));
}

/// The demo under huge values and wide rows, `max_concurrent` (4) at a time: the server's peak
/// resident memory stays within 64 MiB + 2 × `max_result_bytes` × `max_concurrent`, the memory
/// a refusal took comes back, every call is answered within its time limit and a second, and a
/// `ping` is answered throughout. What the gate cannot bound from the text (a value grown from
/// the rows) SQLite refuses as it would pass `max_result_bytes`.
#[test]
fn huge_values_and_wide_rows_stay_within_the_memory_bound_on_the_demo() {
    let wide = (0..70).map(|n| format!("printf('%.*c', 100000, 'a') AS c{n}")).collect::<Vec<_>>().join(", ");
    let cases = [
        ("SELECT printf('%.*c', 70000, char(1)) FROM orders", "RESULT_TOO_LARGE"),
        ("SELECT group_concat(printf('%.*c', 100000, 'x')) FROM orders", "RESULT_TOO_LARGE"),
        ("SELECT printf('%.*c', 1300000, char(1))", "ok"),
        ("SELECT printf('%.*c', 3900000, '\"')", "ok"),
        (&format!("SELECT {wide}"), "ok"),
        ("SELECT CAST(printf('%.*c', 5000000, 'z') AS BLOB)", "ok"),
        (
            "SELECT group_concat(a.email || b.email || c.email) FROM customers a, customers b, customers c",
            "RESULT_TOO_LARGE",
        ),
        ("SELECT group_concat(a.email || b.email) FROM customers a, customers b, orders c WHERE c.id <= 40", "ok"),
        ("SELECT printf('%.*c', 900000000, char(1))", "QUERY_REJECTED"),
        ("SELECT printf('%.*c', (SELECT count(*) FROM order_items) * 100000, 'x')", "QUERY_REJECTED"),
        ("SELECT printf('%.*c', 1000000, 'y') FROM products", "RESULT_TOO_LARGE"),
    ];
    databases::Probe::start(&[], &[], databases::Stderr::Null).hold_the_memory_bound(&cases);
}

/// A SQLite database file of the test's own, with a small table, and a config serving it with
/// audit to `audit` (a path, or stderr when `None`) within a 100 ms audit deadline.
fn served_file(audit: Option<&std::path::Path>) -> (std::path::PathBuf, databases::ConfigFile) {
    let path = std::env::temp_dir().join(format!("sqlwarden-stderr-{}.db", databases::unique_suffix()));
    let connection = rusqlite::Connection::open(&path).expect("create");
    connection
        .execute_batch(
            "CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT);
             WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 100)
                 INSERT INTO notes SELECT i, 'note ' || i FROM n;",
        )
        .expect("fixture");
    let audit = audit.map_or_else(String::new, |path| format!("path = \"{}\"\n", path.display()));
    let config = databases::ConfigFile::new(&format!(
        "[database]\nurl = \"sqlite:{}\"\n[allowlist]\nschemas = [\"main\"]\ntables = [\"notes\"]\n\
         [[grants]]\ntool = \"query_read\"\n[quotas]\nrate_per_minute = 100000\nburst = 1000\n\
         [audit]\ndeadline_ms = 100\n{audit}",
        path.display()
    ));
    (path, config)
}

/// A client that never reads the server's stderr, where audit goes: once the pipe is full,
/// every call is answered or denied (`INTERNAL`, "audit unavailable") within the audit
/// deadline, `ping` is answered throughout, and no call ran without its audit record: when
/// stderr is read at last, every call that ran has its records there.
#[test]
fn a_client_that_never_reads_stderr_gets_answers_or_denials_and_no_call_runs_unaudited() {
    use std::io::Read;
    use std::time::Duration;
    let (database, config) = served_file(None);
    let mut probe = databases::Probe::start(&["--config", &config.path()], &[], databases::Stderr::Unread);
    let (mut answered, mut denied) = (0usize, 0usize);
    let mut longest = Duration::ZERO;
    for n in 0..400 {
        let (sent, answer) = probe.read(json!({"query": format!("SELECT body FROM notes WHERE id = {}", n % 100 + 1)}));
        let reply = answer.recv_timeout(Duration::from_secs(10)).expect("every call is answered");
        longest = longest.max(sent.elapsed());
        match reply.code().as_str() {
            "ok" => answered += 1,
            "INTERNAL" => {
                assert!(reply.text.contains("audit unavailable"), "{}", reply.text);
                denied += 1;
            }
            other => panic!("call {n}: {other}: {}", reply.text),
        }
        if n % 50 == 0 {
            let ping = probe.request("ping", json!({}), Duration::from_secs(10));
            assert!(ping.latency() < databases::ping_bound(), "a ping waited {:?}", ping.latency());
        }
    }
    eprintln!("{answered} calls answered, {denied} denied; the longest took {longest:?}");
    assert!(denied > 0, "the pipe filled, and the calls after it were denied");
    // The deadline (100 ms), and room for an unoptimized build.
    assert!(longest < Duration::from_secs(2), "a call took {longest:?}");
    // Read stderr at last: every call that ran has its record of having run.
    let mut stderr = probe.stderr.take().expect("stderr");
    let reader = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stderr.read_to_string(&mut text);
        text
    });
    assert_eq!(probe.finish(), Some(0));
    let text = reader.join().expect("stderr read");
    let ran = text
        .lines()
        .filter(|line| line.contains("\"stage\":\"execute\"") && line.contains("\"decision\":\"allow\""))
        .count();
    let admitted = text
        .lines()
        .filter(|line| line.contains("\"stage\":\"admit\"") && line.contains("\"decision\":\"allow\""))
        .count();
    eprintln!("{admitted} admissions and {ran} executions audited");
    assert!(ran >= answered, "{answered} calls ran, {ran} have an execute record");
    assert!(admitted >= answered, "{answered} calls ran, {admitted} have an admission record");
    let _ = std::fs::remove_file(database);
}

/// With `[audit] path`, a client that never reads stderr, where the logs go (at their most
/// talkative), has every call answered: logs drop lines rather than wait.
#[test]
fn with_an_audit_file_a_client_that_never_reads_stderr_has_every_call_answered() {
    use std::time::Duration;
    let audit = std::env::temp_dir().join(format!("sqlwarden-audit-{}.jsonl", databases::unique_suffix()));
    let (database, config) = served_file(Some(&audit));
    let probe = databases::Probe::start(
        &["--config", &config.path()],
        &[("SQLWARDEN_LOG", "trace")],
        databases::Stderr::Unread,
    );
    for n in 0..400 {
        let (_, answer) = probe.read(json!({"query": format!("SELECT body FROM notes WHERE id = {}", n % 100 + 1)}));
        let reply = answer.recv_timeout(Duration::from_secs(10)).expect("every call is answered");
        assert_eq!(reply.code(), "ok", "call {n}: {}", reply.text);
    }
    let ping = probe.request("ping", json!({}), Duration::from_secs(10));
    assert!(ping.latency() < databases::ping_bound(), "a ping waited {:?}", ping.latency());
    assert_eq!(probe.finish(), Some(0));
    let records = std::fs::read_to_string(&audit).expect("audit file");
    let ran = records.lines().filter(|line| line.contains("\"stage\":\"execute\"")).count();
    assert_eq!(ran, 400, "every call's execute record is in the file");
    let _ = std::fs::remove_file(audit);
    let _ = std::fs::remove_file(database);
}

/// The server's own audit file, as an operator would check it: its chain verifies after the
/// server stopped, also across a SIGHUP sent once logrotate renamed the file; the old file
/// ends closed and the new one follows on.
#[test]
fn the_servers_audit_verifies_across_a_sighup_rotation() {
    let audit = std::env::temp_dir().join(format!("sqlwarden-hup-{}.jsonl", databases::unique_suffix()));
    let rotated = audit.with_extension("jsonl.1");
    let (database, config) = served_file(Some(&audit));
    let mut server = McpProcess::start(&["--config", &config.path()]);
    server.initialize();
    let read = |server: &mut McpProcess, id: u32| {
        let result = server.call("query_read", json!({"query": format!("SELECT body FROM notes WHERE id = {id}")}));
        assert_eq!(result["isError"], json!(false), "{result}");
    };
    read(&mut server, 1);
    std::fs::rename(&audit, &rotated).expect("renamed, as logrotate does");
    assert_eq!(send_signal(server.pid(), "HUP"), 0);
    // The server reopens on its own time: the new file appears when it has.
    let started = std::time::Instant::now();
    while !audit.exists() && started.elapsed() < std::time::Duration::from_secs(5) {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    read(&mut server, 2);
    assert_eq!(server.finish(), Some(0));
    let verify = std::process::Command::new(databases::binary())
        .args(["audit", "verify"])
        .arg(&rotated)
        .arg(&audit)
        .output()
        .expect("runs");
    let report = String::from_utf8_lossy(&verify.stdout);
    assert_eq!(verify.status.code(), Some(0), "{report}");
    assert!(report.contains("opened 2 time(s)"), "{report}");
    let old = std::fs::read_to_string(&rotated).expect("old file");
    assert!(old.lines().last().is_some_and(|line| line.contains(r#""audit":"close""#)), "{old}");
    // Each call's records say how it came in: over stdio, and which request it was.
    let new = std::fs::read_to_string(&audit).expect("new file");
    let executes: Vec<Value> = old
        .lines()
        .chain(new.lines())
        .map(|line| serde_json::from_str::<Value>(line).expect("JSON"))
        .filter(|record| record["stage"] == "execute")
        .collect();
    assert_eq!(executes.len(), 2);
    for record in &executes {
        assert_eq!(record["transport"], "stdio", "{record}");
        assert!(record["request_id"].is_number(), "{record}");
    }
    assert_ne!(executes[0]["request_id"], executes[1]["request_id"]);
    for file in [&audit, &rotated, &database] {
        let _ = std::fs::remove_file(file);
    }
}

/// Sends `signal` (by name) to process `pid`, with kill(1); its exit code.
fn send_signal(pid: u32, signal: &str) -> i32 {
    std::process::Command::new("kill")
        .arg(format!("-{signal}"))
        .arg(pid.to_string())
        .status()
        .map_or(-1, |status| status.code().unwrap_or(-1))
}

/// A configuration with `[[columns]]` rules, served over stdio: a denied column is refused with
/// `COLUMN_DENIED`, a masked one comes back masked, hashed with the key `[output]
/// mask_key_env` names (the same hash from another server with the same key), and the rows'
/// text content is framed as untrusted data unless `untrusted_framing = false`.
#[test]
fn column_rules_and_framing_hold_on_the_configured_server() {
    let path = std::env::temp_dir().join(format!("sqlwarden-columns-{}.db", databases::unique_suffix()));
    rusqlite::Connection::open(&path).expect("create").execute_batch(databases::PEOPLE).expect("fixture");
    let config = |framing: bool| {
        databases::ConfigFile::new(&format!(
            "[database]\nurl = \"sqlite:{}\"\n[allowlist]\nschemas = [\"main\"]\ntables = [\"*\"]\n\
             [[grants]]\ntool = \"query_read\"\n[[grants]]\ntool = \"describe_table\"\n\
             [[columns]]\ntable = \"people\"\ndeny = [\"ssn\", \"password_hash\"]\n\
             mask = {{ email = \"hash\", phone = \"last4\" }}\n\
             [output]\nuntrusted_framing = {framing}\nmask_key_env = \"SQLWARDEN_TEST_MASK_KEY\"\n",
            path.display()
        ))
    };
    let key = ("SQLWARDEN_TEST_MASK_KEY", "k".repeat(32));
    let read = |server: &mut McpProcess, query: &str| server.call("query_read", json!({"query": query}));
    let mut hashes = Vec::new();
    for framing in [true, false] {
        let config = config(framing);
        let mut server = McpProcess::start_with_env(&["--config", &config.path()], &[(key.0, key.1.as_str())]);
        server.initialize();
        let denied = read(&mut server, "SELECT id FROM people WHERE ssn LIKE 'SSN%'");
        assert_eq!(denied["structuredContent"]["code"], json!("COLUMN_DENIED"), "{denied}");
        assert!(denied["structuredContent"]["message"].as_str().unwrap_or_default().contains("ssn"), "{denied}");
        let masked = read(&mut server, "SELECT id, email, phone FROM people WHERE id = 1");
        let rows = &masked["structuredContent"]["rows"];
        assert_eq!(rows[0][2], json!("****4321"), "{masked}");
        hashes.push(rows[0][1].clone());
        let text = masked["content"][0]["text"].as_str().expect("text");
        match framing {
            true => assert_eq!(databases::unframe(text), masked["structuredContent"]),
            false => assert_eq!(serde_json::from_str::<Value>(text).expect("JSON"), masked["structuredContent"]),
        }
        assert!(!masked.to_string().to_lowercase().contains("planted"), "{masked}");
        assert_eq!(server.finish(), Some(0));
    }
    assert_eq!(hashes[0], hashes[1], "one key, one hash, across servers");
    let _ = std::fs::remove_file(path);
}
