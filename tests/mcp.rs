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
    assert_eq!(names, ["describe_table", "list_tables", "query_read"]);
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
    let text: Value = serde_json::from_str(rows["content"][0]["text"].as_str().expect("text")).expect("JSON text");
    assert_eq!(text, rows["structuredContent"], "the text copy is the same result");

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
