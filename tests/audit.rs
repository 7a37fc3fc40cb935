//! Audit: one record per decision at every stage, denials recorded as denials, and a sink that
//! cannot be written denies the call.

mod common;

use std::sync::Arc;
use std::sync::atomic::Ordering::SeqCst;
use std::time::Duration;

use common::*;
use serde_json::{Value, json};
use sqlwarden::ToolRegistry;
use sqlwarden::audit::{AuditDecision, AuditSink, AuditWriter, JsonLinesSink, Stage};
use sqlwarden::policy::{Capabilities, Mode, QuotaPolicy, SessionContext};
use sqlwarden::{Boundary, DenialCode};

use AuditDecision::{Allow, Deny};

/// The (stage, decision, code) triples a call leaves in the audit log.
type Trail = Vec<(Stage, AuditDecision, Option<DenialCode>)>;

#[tokio::test]
async fn an_admitted_call_leaves_one_record_per_stage() {
    let h = Harness::granting(&["list"]);
    let s = session();
    h.call(&s, "list", json!({})).await.expect("admitted");
    assert_eq!(h.boundary.audit_failures(), 0);

    let events = h.audit.events();
    let stages: Vec<_> = events.iter().map(|e| (e.stage, e.decision, e.code)).collect();
    assert_eq!(
        stages,
        [
            (Stage::Resolve, Allow, None),
            (Stage::Mode, Allow, None),
            (Stage::Authorize, Allow, None),
            (Stage::Admit, Allow, None),
            (Stage::Execute, Allow, None),
        ]
    );
    for event in &events {
        assert_eq!(event.session_id.as_deref(), Some(s.id().as_str()));
        assert_eq!(event.identity.as_deref(), Some(IDENTITY));
        assert_eq!(event.tenant.as_deref(), Some(TENANT));
        assert_eq!(event.tool, "list");
        assert!(event.timestamp >= start(), "timestamps come from the boundary's clock");
    }
    assert!(events.windows(2).all(|w| w[0].timestamp <= w[1].timestamp), "in order");
}

#[tokio::test]
async fn a_denial_is_recorded_as_a_denial_at_its_stage_and_nothing_after() {
    let s = session();
    let cases: Vec<(Setup, &str, Value, Trail)> = vec![
        (Setup::default(), "nope", json!({}), vec![(Stage::Resolve, Deny, Some(DenialCode::ToolNotFound))]),
        (
            Setup { grants: vec![grant("add_customer")], ..Setup::default() },
            "add_customer",
            json!({"name": "x"}),
            vec![(Stage::Resolve, Allow, None), (Stage::Mode, Deny, Some(DenialCode::ReadOnly))],
        ),
        (
            Setup::default(),
            "list",
            json!({}),
            vec![
                (Stage::Resolve, Allow, None),
                (Stage::Mode, Allow, None),
                (Stage::Authorize, Deny, Some(DenialCode::Unauthorized)),
            ],
        ),
        (
            Setup { grants: vec![grant("list")], ..Setup::default() },
            "list",
            json!({"extra": true}),
            vec![
                (Stage::Resolve, Allow, None),
                (Stage::Mode, Allow, None),
                (Stage::Authorize, Allow, None),
                (Stage::Admit, Allow, None),
                (Stage::Execute, Deny, Some(DenialCode::InvalidInput)),
            ],
        ),
        (
            Setup { grants: vec![grant("failing")], ..Setup::default() },
            "failing",
            json!({}),
            vec![
                (Stage::Resolve, Allow, None),
                (Stage::Mode, Allow, None),
                (Stage::Authorize, Allow, None),
                (Stage::Admit, Allow, None),
                (Stage::Execute, Deny, Some(DenialCode::Internal)),
            ],
        ),
    ];
    for (setup, tool, args, expected) in cases {
        let h = Harness::new(setup);
        let denial = h.call(&s, tool, args).await.expect_err(tool);
        assert_eq!(h.audit.stages(), expected, "{tool}");
        assert_eq!(expected.last().and_then(|e| e.2), Some(denial.code()));
    }

    // A rate denial at admission.
    let h = Harness::new(Setup {
        grants: vec![grant("list")],
        policy: QuotaPolicy::new(1, 1, 1).expect("valid"),
        ..Setup::default()
    });
    h.call(&s, "list", json!({})).await.expect("first call");
    h.call(&s, "list", json!({})).await.expect_err("rate limited");
    assert_eq!(h.audit.stages()[5..].last(), Some(&(Stage::Admit, Deny, Some(DenialCode::RateLimited))));
    assert_eq!(h.audit.events().len(), 5 + 4);
}

#[tokio::test]
async fn a_sink_that_cannot_be_written_denies_the_call_before_the_tool_runs() {
    let h = Harness::new(Setup { mode: Mode::ReadWrite, grants: vec![grant("add_customer")], ..Setup::default() });
    h.audit.fail_from.store(0, SeqCst);
    let denied = h.call(&session(), "add_customer", json!({"name": "Eve"})).await.expect_err("audit down");
    assert_eq!(denied.code(), DenialCode::Internal);
    assert_eq!(denied.message(), "audit unavailable", "the caller learns nothing more about the sink");
    assert_eq!(h.effects.handler_runs(), 0);
    assert_eq!(h.effects.adapter_calls(), 0);
    assert_eq!(h.effects.rows_written(), 0);
    assert_eq!(h.effects.permits_released(), h.effects.quota_admits(), "the reservation was returned");
    assert_eq!(h.boundary.audit_failures(), 1, "the failure is counted for operators");
}

/// A pipe that nobody reads, filled to the brim: the next write blocks, as on a client's stderr
/// that it never drains. `drain` starts reading it, returning what will have been read.
fn unread_pipe() -> (std::io::PipeWriter, impl FnOnce() -> std::thread::JoinHandle<Vec<u8>>) {
    use std::io::{Read, Write};
    let (mut reader, mut writer) = std::io::pipe().expect("pipe");
    // Linux pipes hold 64 KiB.
    writer.write_all(&[b'\n'; 65536]).expect("fills the pipe");
    let drain = move || {
        std::thread::spawn(move || {
            let mut read = Vec::new();
            reader.read_to_end(&mut read).expect("reads");
            read
        })
    };
    (writer, drain)
}

#[tokio::test]
async fn a_stalled_audit_writer_denies_within_its_deadline_and_the_tool_never_runs() {
    let (pipe, drain) = unread_pipe();
    let deadline = Duration::from_millis(200);
    let writer = Arc::new(AuditWriter::spawn(pipe, 8, deadline).expect("spawns"));
    let h = Harness::new(Setup { grants: vec![grant("list")], sink: Some(writer.clone()), ..Setup::default() });
    for _ in 0..3 {
        let started = std::time::Instant::now();
        let denied = h.call(&session(), "list", json!({})).await.expect_err("audit stalled");
        assert!(
            started.elapsed() < deadline + Duration::from_millis(500),
            "denied by the deadline: {:?}",
            started.elapsed()
        );
        assert_eq!((denied.code(), denied.message()), (DenialCode::Internal, "audit unavailable"));
    }
    assert_eq!(h.effects.handler_runs(), 0, "no tool ran without its admission on record");
    assert_eq!(h.effects.permits_released(), h.effects.quota_admits());
    assert_eq!(h.boundary.audit_failures(), 3);
    // Once the pipe drains, what was queued is written, and calls run again.
    let reading = drain();
    h.call(&session(), "list", json!({})).await.expect("audit flows again");
    assert_eq!(h.effects.handler_runs(), 1);
    writer.flush(Duration::from_secs(5)).expect("flushed");
    drop(h);
    drop(writer);
    let read = reading.join().expect("the reader ends when the writer is gone");
    let lines: Vec<Value> = String::from_utf8(read)
        .expect("utf-8")
        .lines()
        .filter(|line| !line.is_empty())
        .map(|line| serde_json::from_str(line).expect("JSON"))
        .collect();
    let admitted = lines.iter().filter(|line| line["stage"] == "admit" && line["decision"] == "allow").count();
    let ran = lines.iter().filter(|line| line["stage"] == "execute" && line["decision"] == "allow").count();
    assert_eq!((admitted, ran), (4, 1), "every admission is on record, and only the last call ran");
}

#[tokio::test]
async fn a_sink_that_fails_after_the_tool_ran_withholds_the_result() {
    let h = Harness::granting(&["list"]);
    h.audit.fail_from.store(1, SeqCst);
    let denied = h.call(&session(), "list", json!({})).await.expect_err("the outcome could not be recorded");
    assert_eq!(denied.code(), DenialCode::Internal);
    assert_eq!(h.effects.handler_runs(), 1);
}

#[tokio::test]
async fn a_panicking_sink_denies_the_call() {
    let h = Harness::granting(&["list"]);
    h.audit.panic.store(true, SeqCst);
    let denied = h.call(&session(), "list", json!({})).await.expect_err("audit panicked");
    assert_eq!(denied.code(), DenialCode::Internal);
    assert_eq!(h.effects.handler_runs(), 0);
    assert_eq!(h.boundary.audit_failures(), 1);
}

#[tokio::test]
async fn a_lost_cancellation_record_is_counted() {
    let h = Harness::granting(&["hanging"]);
    let s = session();
    let mut call = Box::pin(h.call(&s, "hanging", json!({})));
    assert!(tokio::time::timeout(std::time::Duration::from_millis(20), &mut call).await.is_err());
    assert_eq!(h.boundary.audit_failures(), 0);
    h.audit.fail_from.store(1, SeqCst);
    drop(call);
    assert_eq!(h.boundary.audit_failures(), 1);
    assert_eq!(h.effects.permits_released(), 1, "the permit is released all the same");
}

#[tokio::test]
async fn a_failing_sink_keeps_denials_denied() {
    let h = Harness::new(Setup::default());
    h.audit.fail_from.store(0, SeqCst);
    let denied = h.call(&session(), "list", json!({})).await.expect_err("no grant");
    assert_eq!(denied.code(), DenialCode::Unauthorized, "the original reason stands");
}

#[tokio::test]
async fn the_json_lines_file_holds_every_decision_and_no_argument_values() {
    let dir = std::env::temp_dir().join(format!("sqlwarden-audit-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let path = dir.join("audit.jsonl");
    let _ = std::fs::remove_file(&path);

    let mut tools = ToolRegistry::new();
    let effects = Arc::new(Effects::default());
    let adapter = Arc::new(CountingAdapter { effects });
    tools.register(InsertTool::new("add_customer", adapter)).expect("register");
    let boundary = Boundary::builder(tools)
        .mode(Mode::ReadWrite)
        .authorizer(Capabilities::from_grants([grant("add_customer")]))
        .audit(JsonLinesSink::append_to(&path).expect("open"))
        .build();
    let s = session();
    let secret = "Mallory-7c1e-secret-value";
    boundary.invoke(Some(s.clone()), "add_customer", json!({ "name": secret })).await.expect("admitted");
    boundary.invoke(None, "add_customer", json!({ "name": secret })).await.expect_err("no session");

    let text = std::fs::read_to_string(&path).expect("audit file");
    let _ = std::fs::remove_dir_all(&dir);
    assert!(!text.contains(secret), "argument values never reach the audit log");
    let lines: Vec<Value> = text.lines().map(|l| serde_json::from_str(l).expect("JSON line")).collect();
    assert_eq!(lines.len(), 6);
    for line in &lines[..5] {
        assert_eq!(line["session_id"], s.id().as_str());
        assert_eq!(line["identity"], IDENTITY);
        assert_eq!(line["tenant"], TENANT);
        assert_eq!(line["tool"], "add_customer");
        assert!(line["duration_us"].is_u64());
        assert!(humantime::parse_rfc3339(line["timestamp"].as_str().expect("timestamp")).is_ok());
    }
    assert_eq!(lines[4]["stage"], "execute");
    assert_eq!(lines[4]["decision"], "allow");
    assert_eq!(lines[5]["stage"], "resolve");
    assert_eq!(lines[5]["decision"], "deny");
    assert_eq!(lines[5]["code"], "SESSION_CONTEXT_INVALID");
    assert_eq!(lines[5]["identity"], Value::Null);
}

#[tokio::test]
async fn expired_sessions_are_audited_with_who_they_claimed_to_be() {
    let h = Harness::granting(&["list"]);
    let expired =
        Arc::new(SessionContext::builder().identity(IDENTITY).tenant(TENANT).expires_at(start()).bind().expect("bind"));
    h.call(&expired, "list", json!({})).await.expect_err("expired");
    let events = h.audit.events();
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].identity.as_deref(), Some(IDENTITY));
    assert_eq!(events[0].code, Some(DenialCode::SessionContextInvalid));
}
