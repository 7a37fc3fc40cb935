//! What the crate's types print in logs: never argument values, grants' principals or writers.

mod common;

use common::*;
use serde_json::json;
use sqlwarden::audit::JsonLinesSink;
use sqlwarden::policy::{Capabilities, Grant};

#[test]
fn an_invocation_prints_its_tool_but_never_its_arguments() {
    let h = Harness::granting(&["list"]);
    let invocation = h.boundary.invocation(Some(session()), "list", json!({"password": "hunter2", "row": "4111-1111"}));
    let shown = format!("{invocation:?}");
    assert!(shown.contains("list"), "{shown}");
    assert!(!shown.contains("hunter2") && !shown.contains("4111"), "{shown}");
    let resolved = invocation.resolve().expect("resolves");
    assert!(!format!("{resolved:?}").contains("hunter2"));
}

#[test]
fn a_boundary_prints_its_mode_and_tools() {
    let h = Harness::granting(&["list"]);
    let shown = format!("{:?}", h.boundary);
    assert!(shown.contains("ReadOnly") && shown.contains("add_customer") && shown.contains("Write"), "{shown}");
}

#[test]
fn capabilities_print_a_count_not_who_holds_them() {
    let caps = Capabilities::from_grants([Grant::new("ceo@example.com", "acme", "query_read").expect("valid")]);
    let shown = format!("{caps:?}");
    assert_eq!(shown, "Capabilities { grants: 1 }");
}

#[test]
fn sinks_and_permits_print_their_kind_only() {
    assert_eq!(format!("{:?}", JsonLinesSink::new(Vec::<u8>::new())), "JsonLinesSink");
    let permit = sqlwarden::policy::QuotaPermit::from_guard("secret guard");
    assert_eq!(format!("{permit:?}"), "QuotaPermit");
}

#[tokio::test]
async fn evidence_prints_its_tool_and_access_class_only() {
    use sqlwarden::tools::ToolRegistry;
    use sqlwarden::{Boundary, Evidence, Read, Tool, ToolError};

    struct ShowEvidence;
    #[derive(serde::Deserialize)]
    struct Anything {
        #[allow(dead_code)]
        secret: String,
    }
    impl Tool for ShowEvidence {
        type Access = Read;
        type Input = Anything;
        type Output = String;
        fn name(&self) -> &str {
            "show_evidence"
        }
        fn description(&self) -> &str {
            "returns its evidence's Debug text"
        }
        async fn call(&self, evidence: Evidence<'_, Read>, _: Anything) -> Result<String, ToolError> {
            Ok(format!("{evidence:?}"))
        }
    }
    let mut tools = ToolRegistry::new();
    tools.register(ShowEvidence).expect("register");
    let boundary = Boundary::builder(tools)
        .authorizer(Capabilities::from_grants([grant("show_evidence")]))
        .audit(JsonLinesSink::new(std::io::sink()))
        .build();
    let shown = boundary.invoke(Some(session()), "show_evidence", json!({"secret": "hunter2"})).await.expect("runs");
    assert_eq!(shown.to_value().expect("JSON"), json!("Evidence { tool: ToolName(\"show_evidence\"), access: Read }"));
}
