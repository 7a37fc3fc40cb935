//! The write-tool runner, on a counting fake: a write commits only when the tool succeeds
//! within its declared maximum of affected rows; every other ending rolls back or abandons
//! the transaction, and the audit records the rows affected.
mod common;

use std::sync::Arc;
use std::time::Duration;

use common::*;
use serde_json::json;
use sqlwarden::DenialCode;
use sqlwarden::audit::{AuditDecision, Stage};
use sqlwarden::policy::Mode;

fn writer(tools: &[&str]) -> Harness {
    Harness::new(Setup { mode: Mode::ReadWrite, grants: tools.iter().map(|t| grant(t)).collect(), ..Setup::default() })
}

fn execute_event(h: &Harness) -> Recorded {
    h.audit.events().into_iter().rfind(|e| e.stage == Stage::Execute).expect("an execute event")
}

#[tokio::test]
async fn a_successful_write_commits_and_audits_its_row_count() {
    let h = writer(&["add_customer"]);
    let done = h.call(&session(), "add_customer", json!({"name": "Eve", "rows": 2})).await;
    assert_eq!(done, Ok(json!({"inserted": 2, "counted": 2})), "two rows is within the declared maximum of 2");
    assert_eq!((h.effects.rows_written(), h.effects.rollbacks(), h.effects.abandoned()), (2, 0, 0));
    let event = execute_event(&h);
    assert_eq!((event.decision, event.rows_affected), (AuditDecision::Allow, Some(2)));
    // Read tools carry no row count.
    let h = Harness::granting(&["list"]);
    h.call(&session(), "list", json!({})).await.expect("lists");
    assert_eq!(execute_event(&h).rows_affected, None);
}

#[tokio::test]
async fn more_rows_than_declared_rolls_back_and_denies() {
    let h = writer(&["add_customer"]);
    let denied = h.call(&session(), "add_customer", json!({"name": "Eve", "rows": 3})).await.expect_err("too many");
    assert_eq!(denied.code(), DenialCode::QueryRejected);
    assert!(denied.message().contains("at most 2"), "{}", denied.message());
    assert_eq!((h.effects.rows_written(), h.effects.rollbacks()), (0, 1));
    let event = execute_event(&h);
    assert_eq!((event.decision, event.rows_affected), (AuditDecision::Deny, Some(3)));
}

#[tokio::test]
async fn a_tool_that_swallows_a_failed_statement_still_cannot_commit() {
    let h = writer(&["add_ignoring_errors"]);
    for args in [json!({"name": "Eve", "rows": 5}), json!({"name": "fail"})] {
        let denied = h.call(&session(), "add_ignoring_errors", args).await.expect_err("spoiled transaction");
        assert_eq!(denied.code(), DenialCode::DbError);
        assert!(denied.message().contains("nothing was changed"), "{}", denied.message());
    }
    assert_eq!((h.effects.rows_written(), h.effects.rollbacks()), (0, 2));
    // Its execute record says it was denied: nothing went on record as allowed.
    assert_eq!(h.audit.stages().last(), Some(&(Stage::Execute, AuditDecision::Deny, Some(DenialCode::DbError))));
    assert!(
        !h.audit
            .stages()
            .iter()
            .any(|(stage, decision, _)| *stage == Stage::Execute && *decision == AuditDecision::Allow)
    );
}

#[tokio::test]
async fn a_handler_error_after_a_statement_rolls_back() {
    let h = writer(&["add_then_fail"]);
    let denied = h.call(&session(), "add_then_fail", json!({"name": "Eve"})).await.expect_err("fails");
    assert_eq!(denied.code(), DenialCode::Internal);
    assert_eq!((h.effects.rows_written(), h.effects.rollbacks(), h.effects.abandoned()), (0, 1, 0));
}

#[tokio::test]
async fn a_panic_abandons_the_transaction_without_committing() {
    let h = writer(&["add_then_panic"]);
    let denied = h.call(&session(), "add_then_panic", json!({"name": "Eve"})).await.expect_err("panics");
    assert_eq!(denied.code(), DenialCode::Internal);
    assert_eq!((h.effects.rows_written(), h.effects.rollbacks(), h.effects.abandoned()), (0, 0, 1));
    assert_eq!(h.effects.permits_released(), 1);
}

#[tokio::test]
async fn a_write_past_its_time_limit_is_abandoned() {
    let h = writer(&["add_then_hang"]);
    let denied = h.call(&session(), "add_then_hang", json!({"name": "Eve"})).await.expect_err("times out");
    assert_eq!(denied.code(), DenialCode::Timeout);
    assert!(denied.message().contains("nothing was changed"), "{}", denied.message());
    assert_eq!((h.effects.rows_written(), h.effects.abandoned()), (0, 1));
}

#[tokio::test]
async fn a_cancelled_call_abandons_the_transaction() {
    let h = Arc::new(writer(&["add_then_hang"]));
    let call = {
        let h = Arc::clone(&h);
        tokio::spawn(async move { h.call(&session(), "add_then_hang", json!({"name": "Eve"})).await })
    };
    tokio::time::sleep(Duration::from_millis(20)).await;
    assert_eq!(h.effects.handler_runs(), 1, "the statement ran");
    call.abort();
    assert!(call.await.expect_err("aborted").is_cancelled());
    assert_eq!((h.effects.rows_written(), h.effects.abandoned()), (0, 1));
    let event = execute_event(&h);
    assert_eq!((event.decision, event.rows_affected), (AuditDecision::Cancelled, Some(1)));
}

#[tokio::test]
async fn read_only_mode_stops_write_tools_before_they_open_anything() {
    let h = Harness::new(Setup { mode: Mode::ReadOnly, grants: vec![grant("add_customer")], ..Setup::default() });
    let denied = h.call(&session(), "add_customer", json!({"name": "Eve"})).await.expect_err("read-only");
    assert_eq!(denied.code(), DenialCode::ReadOnly);
    h.effects.assert_untouched();
    assert_eq!(h.effects.authorizer_calls(), 0, "denied before authorization");
}

#[tokio::test]
async fn input_is_validated_before_a_transaction_opens() {
    let h = writer(&["add_customer"]);
    let denied = h.call(&session(), "add_customer", json!({"name": ""})).await.expect_err("invalid");
    assert_eq!(denied.code(), DenialCode::InvalidInput);
    assert_eq!(h.effects.adapter_calls(), 0, "the database was not touched");
    assert_eq!((h.effects.rows_written(), h.effects.rollbacks(), h.effects.abandoned()), (0, 0, 0));
}

#[test]
fn a_write_tool_registers_as_a_write_tool_with_its_own_name_and_description() {
    let effects = Arc::new(Effects::default());
    let mut tools = sqlwarden::tools::ToolRegistry::new();
    tools.register(InsertTool::new("add_customer", Arc::new(CountingAdapter { effects }))).expect("registers");
    let tool = tools.get("add_customer").expect("registered under its name");
    assert_eq!(tool.access, sqlwarden::policy::Access::Write);
    assert_eq!(tool.description, "adds a customer");
    let mut any_object = serde_json::Map::new();
    any_object.insert("type".into(), json!("object"));
    assert_eq!(tool.input_schema(), any_object, "without a schema of its own: any object");
}

#[tokio::test]
async fn each_statement_is_told_how_many_rows_are_left() {
    let h = writer(&["add_customer"]);
    let done = h.call(&session(), "add_customer", json!({"name": "Eve", "rows": 1, "twice": true})).await;
    assert_eq!(done, Ok(json!({"inserted": 2, "counted": 2})));
    assert_eq!(*h.effects.row_caps.lock().expect("not poisoned"), [2, 1]);
    let denied = h.call(&session(), "add_customer", json!({"name": "Eve", "rows": 2, "twice": true})).await;
    assert_eq!(denied.map_err(|d| d.code()), Err(DenialCode::QueryRejected), "four rows over two statements");
    assert_eq!(h.effects.rows_written(), 2, "only the first call committed");
}

#[tokio::test]
async fn a_commit_that_loses_its_connection_says_the_outcome_is_unknown() {
    let h = writer(&["add_customer"]);
    let denied = h.call(&session(), "add_customer", json!({"name": "lost"})).await.expect_err("commit failed");
    assert_eq!(denied.code(), DenialCode::DbError);
    assert!(denied.message().contains("may or may not have been saved"), "{}", denied.message());
    // The execute record went out before the commit; the commit's failure follows it.
    let stages = h.audit.stages();
    assert_eq!(
        stages[stages.len() - 2..],
        [(Stage::Execute, AuditDecision::Allow, None), (Stage::Commit, AuditDecision::Deny, Some(DenialCode::DbError))]
    );
}

/// A write's execute record (its decision and the rows it affected) is written before it
/// commits: should it not be written, the transaction rolls back and the call is denied.
#[tokio::test]
async fn a_write_commits_only_once_its_execute_record_is_written() {
    let h = writer(&["add_customer"]);
    h.call(&session(), "add_customer", json!({"name": "Eve", "rows": 2})).await.expect("written");
    let stages = h.audit.stages();
    assert_eq!(
        stages.last(),
        Some(&(Stage::Execute, AuditDecision::Allow, None)),
        "nothing after a commit that worked"
    );
    assert_eq!(execute_event(&h).rows_affected, Some(2));
    // From the next call's second batch on (its execute record), the audit fails.
    let batches_so_far = h.audit.batches.load(std::sync::atomic::Ordering::SeqCst);
    h.audit.fail_from.store(batches_so_far + 1, std::sync::atomic::Ordering::SeqCst);
    let denied = h.call(&session(), "add_customer", json!({"name": "Eve", "rows": 2})).await.expect_err("unaudited");
    assert_eq!((denied.code(), denied.message()), (DenialCode::Internal, "audit unavailable"));
    assert_eq!((h.effects.rows_written(), h.effects.rollbacks()), (2, 1), "rolled back, never committed");
}
