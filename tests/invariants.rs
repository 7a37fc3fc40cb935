//! The original system's five frozen security invariants, each proven with counting fakes:
//! a denied call must leave every counter untouched.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::*;
use serde_json::json;
use sqlwarden::DenialCode;
use sqlwarden::audit::{AuditDecision, Stage};
use sqlwarden::policy::{Grant, Mode, SessionContext};

/// Invariant 1: a call without a valid session context is denied before anything else happens.
#[tokio::test]
async fn invariant_1_fail_closed_on_missing_or_invalid_session_context() {
    let h = Harness::granting(&["list"]);

    // Missing: no session at all.
    let denied = h.boundary.invoke(None, "list", json!({})).await.expect_err("no session");
    assert_eq!(denied.code(), DenialCode::SessionContextInvalid);

    // Invalid: claims that cannot be bound never become a session (no value of the type holds
    // them), so the only call they could make is the one without a session, above.
    for (identity, tenant) in [("", TENANT), ("   ", TENANT), (IDENTITY, "ac\nme"), (IDENTITY, "\u{202E}acme")] {
        let claim = SessionContext::builder().identity(identity).tenant(tenant).bind();
        assert!(claim.is_err(), "{identity:?}/{tenant:?} must not bind");
    }

    // Expired: valid strictly before its expiry, invalid from it on.
    let expiring = Arc::new(
        SessionContext::builder().identity(IDENTITY).tenant(TENANT).expires_at(start()).bind().expect("binds"),
    );
    let denied = h.call(&expiring, "list", json!({})).await.expect_err("expired");
    assert_eq!(denied.code(), DenialCode::SessionContextInvalid);
    // The session check comes before tool lookup.
    let denied = h.call(&expiring, "no_such_tool", json!({})).await.expect_err("expired");
    assert_eq!(denied.code(), DenialCode::SessionContextInvalid);

    h.effects.assert_untouched();
    assert_eq!(h.effects.authorizer_calls(), 0, "authorization was consulted");
    assert!(
        h.audit
            .stages()
            .iter()
            .all(|s| *s == (Stage::Resolve, AuditDecision::Deny, Some(DenialCode::SessionContextInvalid)))
    );
    assert_eq!(h.audit.events().len(), 3, "one audit record per denied call");

    // The same session one nanosecond earlier is valid: the denials above were for expiry.
    let h = Harness::granting(&["list"]);
    let later = Arc::new(
        SessionContext::builder()
            .identity(IDENTITY)
            .tenant(TENANT)
            .expires_at(start() + Duration::from_nanos(1))
            .bind()
            .expect("binds"),
    );
    assert!(h.call(&later, "list", json!({})).await.is_ok());
}

/// Invariant 2: without a grant the tool does not run and the database is not touched.
#[tokio::test]
async fn invariant_2_authorization_precedes_execution() {
    let other_grants = vec![
        Grant::new("someone@else", TENANT, "list").expect("valid"),
        Grant::new(IDENTITY, "globex", "list").expect("valid"),
        Grant::new(IDENTITY, TENANT, "failing").expect("valid"),
        Grant::new(IDENTITY, TENANT, "list").expect("valid").expires_at(start()),
    ];
    for grants in [Vec::new(), other_grants] {
        let h = Harness::new(Setup { mode: Mode::ReadWrite, grants, ..Setup::default() });
        let denied = h.call(&session(), "list", json!({})).await.expect_err("no matching grant");
        assert_eq!(denied.code(), DenialCode::Unauthorized);
        h.effects.assert_untouched();
        assert_eq!(h.effects.authorizer_calls(), 1);
    }

    // With the grant, the same call runs exactly once.
    let h = Harness::granting(&["list"]);
    assert_eq!(h.call(&session(), "list", json!({})).await, Ok(json!({"tables": 1})));
    assert_eq!((h.effects.handler_runs(), h.effects.adapter_calls()), (1, 1));
}

/// Invariant 3: an unknown tool is denied with zero side effects.
#[tokio::test]
async fn invariant_3_unknown_tools_produce_zero_side_effects() {
    let h = Harness::new(Setup {
        mode: Mode::ReadWrite,
        grants: ["list", "add_customer", "failing", "panicking", "hanging"].iter().map(|t| grant(t)).collect(),
        ..Setup::default()
    });
    let long_name = "x".repeat(10_000);
    for name in ["nonexistent.tool", "LIST", "list ", "", "*", long_name.as_str()] {
        let denied = h.call(&session(), name, json!({"sql": "DROP TABLE customers"})).await.expect_err(name);
        assert_eq!(denied.code(), DenialCode::ToolNotFound, "{name:?}");
    }
    h.effects.assert_untouched();
    assert_eq!(h.effects.authorizer_calls(), 0);
    assert_eq!(h.effects.permits_released(), 0);

    // Every unknown-tool call is audited, with the name as asked (bounded in length).
    let events = h.audit.events();
    assert_eq!(events.len(), 6);
    assert!(events.iter().all(
        |e| (e.stage, e.decision, e.code) == (Stage::Resolve, AuditDecision::Deny, Some(DenialCode::ToolNotFound))
    ));
    assert_eq!(events[0].tool, "nonexistent.tool");
    assert_eq!(events[5].tool.len(), 128);
    assert_eq!(events[0].identity.as_deref(), Some(IDENTITY));
}

/// Invariant 4: in read-only mode a write tool is stopped before authorization is consulted.
#[tokio::test]
async fn invariant_4_read_only_mode_blocks_writes_before_authorization() {
    for grants in [vec![grant("add_customer")], Vec::new()] {
        let h = Harness::new(Setup { mode: Mode::ReadOnly, grants, ..Setup::default() });
        let denied = h.call(&session(), "add_customer", json!({"name": "Eve"})).await.expect_err("read-only");
        assert_eq!(denied.code(), DenialCode::ReadOnly, "READ_ONLY, not UNAUTHORIZED, with or without a grant");
        h.effects.assert_untouched();
        assert_eq!(h.effects.authorizer_calls(), 0, "authorization must not be reached");
        assert_eq!(
            h.audit.stages(),
            [
                (Stage::Resolve, AuditDecision::Allow, None),
                (Stage::Mode, AuditDecision::Deny, Some(DenialCode::ReadOnly))
            ]
        );
    }

    // Read tools still run in read-only mode.
    let h = Harness::granting(&["list"]);
    assert!(h.call(&session(), "list", json!({})).await.is_ok());
}

/// Invariant 5: a write tool runs only when the mode allows writes and a grant allows the call.
#[tokio::test]
async fn invariant_5_write_tools_run_only_when_mode_and_grant_allow() {
    let cases = [
        (Mode::ReadOnly, vec![grant("add_customer")], DenialCode::ReadOnly),
        (Mode::ReadWrite, vec![], DenialCode::Unauthorized),
        (Mode::ReadWrite, vec![grant("list")], DenialCode::Unauthorized),
    ];
    for (mode, grants, code) in cases {
        let h = Harness::new(Setup { mode, grants, ..Setup::default() });
        let denied = h.call(&session(), "add_customer", json!({"name": "Eve"})).await.expect_err("denied");
        assert_eq!(denied.code(), code);
        h.effects.assert_untouched();
    }

    let h = Harness::new(Setup { mode: Mode::ReadWrite, grants: vec![grant("add_customer")], ..Setup::default() });
    assert_eq!(
        h.call(&session(), "add_customer", json!({"name": "Eve"})).await,
        Ok(json!({"inserted": 1, "counted": 1}))
    );
    assert_eq!(h.effects.handler_runs(), 1);
    assert_eq!(h.effects.adapter_calls(), 1);
    assert_eq!(h.effects.rows_written(), 1);
    assert_eq!((h.effects.quota_admits(), h.effects.permits_released()), (1, 1));
}

/// A name longer than any tool name is unknown, even when it starts with a real tool's name:
/// the audit log keeps a truncated copy, but the lookup never uses it.
#[tokio::test]
async fn an_over_long_name_never_resolves_to_the_tool_it_starts_with() {
    let longest: &'static str = "t".repeat(128).leak();
    let effects = Arc::new(Effects::default());
    let adapter = Arc::new(CountingAdapter { effects: Arc::clone(&effects) });
    let mut tools = sqlwarden::tools::ToolRegistry::new();
    tools.register(ReadTool { name: longest, adapter, behaviour: Behaviour::Succeed }).expect("128 is allowed");
    let boundary = sqlwarden::Boundary::builder(tools)
        .authorizer(sqlwarden::policy::Capabilities::from_grants([grant(longest)]))
        .audit(Arc::new(MemorySink::default()))
        .build();
    for suffix in ["x", "t", "é"] {
        let asked = format!("{longest}{suffix}");
        let denied = boundary.invoke(Some(session()), &asked, json!({})).await.expect_err("not a tool");
        assert_eq!(denied.code(), DenialCode::ToolNotFound, "{suffix:?}");
    }
    effects.assert_untouched();
    assert!(boundary.invoke(Some(session()), longest, json!({})).await.is_ok(), "the real name still works");
}

/// Expiries are judged when each stage decides, not when the call was created.
#[tokio::test]
async fn stages_judge_expiry_at_the_time_they_run() {
    let h = Harness::granting(&["list"]);
    let session = Arc::new(
        SessionContext::builder()
            .identity(IDENTITY)
            .tenant(TENANT)
            .expires_at(start() + Duration::from_secs(10))
            .bind()
            .expect("binds"),
    );
    let pending = h.boundary.invocation(Some(session), "list", json!({}));
    h.clock.advance(Duration::from_secs(10));
    let denied = pending.resolve().expect_err("expired while waiting to be resolved");
    assert_eq!(denied.code(), DenialCode::SessionContextInvalid);

    let grants = vec![grant("list").expires_at(start() + Duration::from_secs(10))];
    let h = Harness::new(Setup { grants, ..Setup::default() });
    let checked =
        h.boundary.invocation(Some(common::session()), "list", json!({})).resolve().and_then(|r| r.check_mode());
    h.clock.advance(Duration::from_secs(10));
    let denied = checked.expect("resolved before the grant expired").authorize().expect_err("grant expired");
    assert_eq!(denied.code(), DenialCode::Unauthorized);
    h.effects.assert_untouched();
}
