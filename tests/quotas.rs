//! Quotas: rate, burst, concurrency, release on every way a call can end, atomic admission,
//! isolation between tenants and identities, and bounded key state.

mod common;

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use common::*;
use serde_json::json;
use sqlwarden::DenialCode;
use sqlwarden::audit::{AuditDecision, Stage};
use sqlwarden::policy::{
    Allowance, Egress, ManualClock, Mode, QuotaConfigError, QuotaDenied, QuotaEngine, QuotaKey, QuotaPolicy,
    QuotaRequest,
};

fn policy(rate_per_minute: u32, burst: u32, max_concurrent: u32) -> QuotaPolicy {
    QuotaPolicy::new(rate_per_minute, burst, max_concurrent).expect("valid policy")
}

fn engine(policy: QuotaPolicy) -> (QuotaEngine, Arc<ManualClock>) {
    let clock = Arc::new(ManualClock::starting_at(SystemTime::UNIX_EPOCH));
    (QuotaEngine::with_clock(policy, clock.clone()), clock)
}

const KEY: QuotaKey<'static> = QuotaKey { tenant: "acme", identity: "ada", tool: "query_read" };

fn harness(policy: QuotaPolicy, tools: &[&str]) -> Harness {
    Harness::new(Setup {
        mode: Mode::ReadOnly,
        grants: tools.iter().map(|t| grant(t)).collect(),
        policy,
        ..Setup::default()
    })
}

#[test]
fn the_default_policy_is_documented_and_neither_unlimited_nor_deny_all() {
    let default = QuotaPolicy::default();
    assert_eq!(default.rate_per_minute(), 600);
    assert_eq!(default.burst(), 60);
    assert_eq!(default.max_concurrent(), 4);
    assert_eq!(default.max_keys(), 10_000);
    let (engine, _clock) = engine(default);
    assert_eq!(engine.policy(), &default);
    assert_eq!(
        format!("{engine:?}"),
        "QuotaEngine { policy: QuotaPolicy { rate_per_minute: 600, burst: 60, max_concurrent: 4, max_keys: 10000, \
         cost_per_minute: None, rows_per_hour: None, bytes_per_hour: None }, keys: 0 }"
    );
    let held: Vec<_> = (0..100).filter_map(|_| engine.try_admit(&KEY.into()).ok()).collect();
    assert_eq!(held.len(), 4, "the default concurrency limit holds while permits are held");
    drop(held);
    let mut admitted = 4;
    while engine.try_admit(&KEY.into()).is_ok() {
        admitted += 1;
    }
    assert_eq!(admitted, 60, "then the default burst");
}

#[test]
fn zero_limits_are_configuration_errors() {
    assert_eq!(QuotaPolicy::new(0, 1, 1), Err(QuotaConfigError::Zero("rate_per_minute")));
    assert_eq!(QuotaPolicy::new(1, 0, 1), Err(QuotaConfigError::Zero("burst")));
    assert_eq!(QuotaPolicy::new(1, 1, 0), Err(QuotaConfigError::Zero("max_concurrent")));
    assert_eq!(policy(1, 1, 1).with_max_keys(0), Err(QuotaConfigError::Zero("max_keys")));
    assert_eq!(QuotaPolicy::new(1, 1, 1_000_001), Err(QuotaConfigError::TooManyConcurrent));
    assert_eq!(policy(1, 1, 1_000_000).max_concurrent(), 1_000_000);
}

#[test]
fn rate_allows_a_burst_then_refills_one_call_per_interval() {
    let (engine, clock) = engine(policy(60, 3, 100));
    assert_eq!(engine.policy(), &policy(60, 3, 100));
    for _ in 0..3 {
        drop(engine.try_admit(&KEY.into()).expect("within the burst"));
    }
    let Err(QuotaDenied::Rate { retry_after }) = engine.try_admit(&KEY.into()) else { panic!("the burst is spent") };
    assert_eq!(retry_after, Duration::from_secs(1), "60 a minute is one a second");

    clock.advance(Duration::from_millis(999));
    assert!(matches!(engine.try_admit(&KEY.into()), Err(QuotaDenied::Rate { .. })), "not yet refilled");
    clock.advance(Duration::from_millis(1));
    drop(engine.try_admit(&KEY.into()).expect("one call refilled"));
    assert!(matches!(engine.try_admit(&KEY.into()), Err(QuotaDenied::Rate { .. })), "only one");
}

#[test]
fn the_bucket_never_holds_more_than_the_burst() {
    let (engine, clock) = engine(policy(60, 3, 100));
    clock.advance(Duration::from_secs(3600));
    let admitted = (0..10).filter_map(|_| engine.try_admit(&KEY.into()).ok()).count();
    assert_eq!(admitted, 3);
}

#[test]
fn concurrency_is_limited_while_permits_are_held() {
    let (engine, _clock) = engine(policy(6000, 100, 2));
    let first = engine.try_admit(&KEY.into()).expect("1 of 2");
    let second = engine.try_admit(&KEY.into()).expect("2 of 2");
    assert_eq!(engine.in_flight(&KEY), 2);
    assert_eq!(engine.try_admit(&KEY.into()).err(), Some(QuotaDenied::Concurrency));
    drop(first);
    assert_eq!(engine.in_flight(&KEY), 1);
    let third = engine.try_admit(&KEY.into()).expect("a slot was released");
    drop((second, third));
    assert_eq!(engine.in_flight(&KEY), 0);
}

#[test]
fn admission_is_atomic_across_dimensions() {
    let (engine, clock) = engine(policy(1, 2, 1));
    let held = engine.try_admit(&KEY.into()).expect("token 1 of 2, slot 1 of 1");
    // A concurrency denial must not spend a token…
    for _ in 0..5 {
        assert_eq!(engine.try_admit(&KEY.into()).err(), Some(QuotaDenied::Concurrency));
    }
    drop(held);
    drop(engine.try_admit(&KEY.into()).expect("token 2 of 2 is still there"));
    // …and a rate denial must not keep a slot.
    assert!(matches!(engine.try_admit(&KEY.into()), Err(QuotaDenied::Rate { .. })));
    assert_eq!(engine.in_flight(&KEY), 0);
    clock.advance(Duration::from_secs(60));
    drop(engine.try_admit(&KEY.into()).expect("a token refilled and the slot is free"));
}

#[test]
fn keys_are_isolated_between_tenants_identities_and_tools() {
    let (engine, _clock) = engine(policy(1, 1, 1));
    let spent = engine.try_admit(&KEY.into()).expect("the first call");
    assert!(engine.try_admit(&KEY.into()).is_err(), "this key is exhausted in both dimensions");
    let neighbours = [
        QuotaKey { tenant: "globex", ..KEY },
        QuotaKey { identity: "bob", ..KEY },
        QuotaKey { tool: "list_tables", ..KEY },
        // Names that would collide if keys were joined with a separator.
        QuotaKey { tenant: "acme:ada", identity: "", tool: "query_read" },
        QuotaKey { tenant: "acme", identity: "ada:query_read", tool: "" },
    ];
    let _held: Vec<_> = neighbours
        .iter()
        .map(|key| engine.try_admit(&(*key).into()).unwrap_or_else(|e| panic!("{key:?}: {e}")))
        .collect();
    drop(spent);
}

#[test]
fn a_thousand_keys_never_share_state() {
    let (engine, _clock) = engine(policy(1, 1, 1));
    let identities: Vec<String> = (0..1000).map(|i| format!("user-{i}")).collect();
    let held: Vec<_> = identities
        .iter()
        .map(|identity| {
            let key = QuotaKey { identity, ..KEY };
            engine.try_admit(&key.into()).unwrap_or_else(|e| panic!("{identity} shares another key's state: {e}"))
        })
        .collect();
    assert_eq!(engine.tracked_keys(), 1000);
    for identity in &identities {
        assert_eq!(engine.in_flight(&QuotaKey { identity, ..KEY }), 1);
    }
    drop(held);
}

#[test]
fn key_state_is_bounded_and_eviction_never_drops_a_held_permit() {
    let (engine, clock) = engine(policy(60, 1, 1).with_max_keys(2).expect("valid"));
    let a = QuotaKey { identity: "a", ..KEY };
    let b = QuotaKey { identity: "b", ..KEY };
    let c = QuotaKey { identity: "c", ..KEY };

    let held_a = engine.try_admit(&a.into()).expect("a");
    drop(engine.try_admit(&b.into()).expect("b"));
    assert_eq!(engine.try_admit(&c.into()).err(), Some(QuotaDenied::KeyTableFull), "b's bucket has not refilled");
    assert_eq!(engine.tracked_keys(), 2);

    clock.advance(Duration::from_secs(1));
    drop(engine.try_admit(&c.into()).expect("b is idle and refilled, so it is forgotten"));
    assert_eq!(engine.tracked_keys(), 2);
    assert_eq!(engine.in_flight(&a), 1, "a's held permit survived the eviction");
    assert_eq!(engine.try_admit(&a.into()).err(), Some(QuotaDenied::Concurrency), "and still counts");
    drop(held_a);
}

#[test]
fn evicting_a_refilled_key_costs_it_nothing() {
    let (engine, clock) = engine(policy(60, 2, 1).with_max_keys(1).expect("valid"));
    let a = QuotaKey { identity: "a", ..KEY };
    let b = QuotaKey { identity: "b", ..KEY };
    drop(engine.try_admit(&a.into()).expect("a"));
    drop(engine.try_admit(&a.into()).expect("a's whole burst"));
    clock.advance(Duration::from_secs(1));
    assert_eq!(
        engine.try_admit(&b.into()).err(),
        Some(QuotaDenied::KeyTableFull),
        "a's burst of 2 takes 2 s to refill"
    );
    clock.advance(Duration::from_secs(1));
    drop(engine.try_admit(&b.into()).expect("a is now indistinguishable from a fresh key"));
    drop(engine.try_admit(&b.into()).expect("b has its own burst"));
}

#[tokio::test]
async fn through_the_boundary_a_rate_denial_runs_nothing_and_says_when_to_retry() {
    let h = harness(policy(60, 2, 10), &["list"]);
    let s = session();
    assert!(h.call(&s, "list", json!({})).await.is_ok());
    assert!(h.call(&s, "list", json!({})).await.is_ok());
    let denied = h.call(&s, "list", json!({})).await.expect_err("rate");
    assert_eq!(denied.code(), DenialCode::RateLimited);
    assert_eq!(denied.message(), "rate limit reached; retry in 1000 ms");
    assert_eq!(h.effects.handler_runs(), 2);
    assert_eq!(h.audit.stages().last(), Some(&(Stage::Admit, AuditDecision::Deny, Some(DenialCode::RateLimited))));
}

#[tokio::test]
async fn one_tenant_cannot_exhaust_another() {
    let grants = vec![
        sqlwarden::policy::Grant::new(IDENTITY, TENANT, "list").expect("valid"),
        sqlwarden::policy::Grant::new(IDENTITY, "globex", "list").expect("valid"),
        sqlwarden::policy::Grant::new("bob", TENANT, "list").expect("valid"),
    ];
    let h = Harness::new(Setup { mode: Mode::ReadOnly, grants, policy: policy(1, 1, 1), ..Setup::default() });
    let noisy = session();
    assert!(h.call(&noisy, "list", json!({})).await.is_ok());
    for _ in 0..10 {
        assert_eq!(h.call(&noisy, "list", json!({})).await.expect_err("spent").code(), DenialCode::RateLimited);
    }
    assert!(h.call(&session_of(IDENTITY, "globex"), "list", json!({})).await.is_ok(), "another tenant");
    assert!(h.call(&session_of("bob", TENANT), "list", json!({})).await.is_ok(), "another identity");
}

/// With one slot, a second call can only be admitted if the first call's permit came back.
async fn assert_slot_released(h: &Harness, tool: &str, expected: DenialCode) {
    let s = session();
    for round in 0..3 {
        let denied = h.call(&s, tool, json!({})).await.expect_err("the tool fails");
        assert_eq!(denied.code(), expected, "round {round}: a leaked slot would show as RATE_LIMITED");
    }
    assert_eq!(h.effects.quota_admits(), 3);
    assert_eq!(h.effects.permits_released(), 3);
}

#[tokio::test]
async fn the_permit_is_released_when_the_tool_fails() {
    let h = harness(policy(6000, 100, 1), &["failing"]);
    assert_slot_released(&h, "failing", DenialCode::Internal).await;
}

#[tokio::test]
async fn the_permit_is_released_when_the_tool_panics() {
    let h = harness(policy(6000, 100, 1), &["panicking"]);
    assert_slot_released(&h, "panicking", DenialCode::Internal).await;
    assert_eq!(h.effects.handler_runs(), 3);
}

#[tokio::test]
async fn the_permit_is_released_when_the_input_is_invalid() {
    let h = harness(policy(6000, 100, 1), &["list"]);
    let s = session();
    for args in [json!({"unexpected": 1}), json!([1, 2]), json!("text"), json!({"unexpected": 2})] {
        let denied = h.call(&s, "list", args).await.expect_err("bad input");
        assert_eq!(denied.code(), DenialCode::InvalidInput);
    }
    assert_eq!(h.effects.permits_released(), 4);
    assert_eq!(h.effects.adapter_calls(), 0, "invalid input never reaches the adapter");
}

#[tokio::test]
async fn the_permit_is_released_when_the_call_is_cancelled() {
    let h = harness(policy(6000, 100, 1), &["hanging"]);
    let s = session();
    let mut first = Box::pin(h.call(&s, "hanging", json!({})));
    assert!(tokio::time::timeout(Duration::from_millis(20), &mut first).await.is_err(), "the tool hangs");
    assert_eq!(h.effects.handler_runs(), 1);
    let busy = tokio::time::timeout(Duration::from_secs(5), h.call(&s, "hanging", json!({})))
        .await
        .expect("refused at once, not admitted to hang")
        .expect_err("the only slot is held");
    assert_eq!(busy.code(), DenialCode::RateLimited);

    drop(first);
    assert_eq!(h.effects.permits_released(), 1);
    assert_eq!(h.audit.stages().last(), Some(&(Stage::Execute, AuditDecision::Cancelled, None)));
    let second = tokio::time::timeout(Duration::from_millis(20), h.call(&s, "hanging", json!({}))).await;
    assert!(second.is_err(), "admitted again: it hangs rather than being refused");
    assert_eq!(h.effects.handler_runs(), 2);
    assert_eq!(h.effects.permits_released(), 2);
}

#[tokio::test]
async fn a_successful_call_releases_its_permit() {
    let h = harness(policy(6000, 100, 1), &["list"]);
    let s = session();
    for _ in 0..3 {
        assert!(h.call(&s, "list", json!({})).await.is_ok());
    }
    assert_eq!(h.effects.permits_released(), 3);
}

/// A read tool whose statement outlives the call on the database (as one the database cannot
/// stop at once does): it answers TIMEOUT but keeps the call's slot until the statement ends.
struct Lingering {
    ended: Arc<tokio::sync::Notify>,
}

impl sqlwarden::Tool for Lingering {
    type Access = sqlwarden::Read;
    type Input = NoInput;
    type Output = ();

    fn name(&self) -> &str {
        "lingering"
    }
    fn description(&self) -> &str {
        "times out while its statement goes on"
    }
    async fn call(
        &self,
        evidence: sqlwarden::Evidence<'_, sqlwarden::Read>,
        _: NoInput,
    ) -> Result<(), sqlwarden::ToolError> {
        let hold = evidence.hold_slot();
        let ended = Arc::clone(&self.ended);
        tokio::spawn(async move {
            ended.notified().await;
            drop(hold);
        });
        Err(sqlwarden::Denial::new(DenialCode::Timeout, "the statement exceeded its time limit").into())
    }
}

#[tokio::test]
async fn a_slot_held_for_a_statement_still_running_is_released_only_when_it_ends() {
    let ended = Arc::new(tokio::sync::Notify::new());
    let mut tools = sqlwarden::tools::ToolRegistry::new();
    tools.register(Lingering { ended: Arc::clone(&ended) }).expect("registers");
    let engine = Arc::new(QuotaEngine::new(policy(6000, 100, 1)));
    let boundary = sqlwarden::Boundary::builder(tools)
        .authorizer(sqlwarden::policy::Capabilities::from_grants([grant("lingering")]))
        .quotas(Arc::clone(&engine))
        .audit(sqlwarden::audit::JsonLinesSink::new(std::io::sink()))
        .build();
    let s = session();
    let key = QuotaKey { tenant: TENANT, identity: IDENTITY, tool: "lingering" };
    let first = boundary.invoke(Some(Arc::clone(&s)), "lingering", json!({})).await.expect_err("times out");
    assert_eq!(first.code(), DenialCode::Timeout);
    assert_eq!(engine.in_flight(&key), 1, "the answer came, the statement did not end: the slot is held");
    let busy = boundary.invoke(Some(Arc::clone(&s)), "lingering", json!({})).await.expect_err("no slot");
    assert_eq!(busy.code(), DenialCode::RateLimited);
    ended.notify_one();
    for _ in 0..100 {
        if engine.in_flight(&key) == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(engine.in_flight(&key), 0, "released once the statement ended");
    let again = boundary.invoke(Some(s), "lingering", json!({})).await.expect_err("admitted, then times out");
    assert_eq!(again.code(), DenialCode::Timeout);
}

fn spending(policy: QuotaPolicy) -> (QuotaEngine, Arc<ManualClock>) {
    engine(policy)
}

fn ask(tool: &'static str, cost: u32, rows: Option<u64>) -> QuotaRequest<'static> {
    QuotaRequest { key: QuotaKey { tool, ..KEY }, cost, egress: rows.map(|rows| Egress { rows, bytes: 1_000_000 }) }
}

#[test]
fn the_cost_quota_bounds_the_sum_of_a_principals_costs_across_its_tools() {
    let (engine, clock) = spending(policy(6000, 100, 100).with_cost_per_minute(20).expect("valid"));
    let first = engine.try_admit(&ask("query_read", 10, None)).expect("10 of 20");
    let second = engine.try_admit(&ask("list_tables", 10, None)).expect("20 of 20, on another tool");
    let Err(QuotaDenied::Cost { retry_after }) = engine.try_admit(&ask("describe_table", 1, None)) else {
        panic!("the minute's cost is spent")
    };
    assert_eq!(retry_after, Duration::from_secs(3), "20 a minute: one unit every 3 s");
    let other = QuotaRequest { key: QuotaKey { identity: "grace", ..KEY }, cost: 10, egress: None };
    drop(engine.try_admit(&other).expect("another identity has its own cost quota"));
    assert_eq!(engine.try_admit(&ask("query_read", 21, None)).err(), Some(QuotaDenied::CostTooHigh { cost: 21 }));
    drop((first, second));
    clock.advance(Duration::from_secs(29));
    assert!(matches!(engine.try_admit(&ask("query_read", 10, None)), Err(QuotaDenied::Cost { .. })), "9 units back");
    clock.advance(Duration::from_secs(1));
    drop(engine.try_admit(&ask("query_read", 10, None)).expect("10 units back after 30 s"));
}

#[test]
fn a_denial_in_any_dimension_consumes_nothing_in_the_others() {
    let (engine, clock) =
        spending(policy(60, 2, 100).with_cost_per_minute(10).and_then(|p| p.with_rows_per_hour(50)).expect("valid"));
    drop(engine.try_admit(&ask("query_read", 10, Some(50))).expect("everything at once"));
    // Cost denied: the rate's second token and the budget stay; budget denied: likewise.
    assert!(matches!(engine.try_admit(&ask("query_read", 1, Some(1))), Err(QuotaDenied::Cost { .. })));
    clock.advance(Duration::from_secs(60));
    let denied = engine.try_admit(&ask("query_read", 1, Some(1)));
    assert!(matches!(denied, Err(QuotaDenied::Budget { budget: "rows", .. })), "{denied:?}");
    assert_eq!(engine.egress_used(&KEY).rows, 50);
    drop(engine.try_admit(&ask("list_tables", 1, None)).expect("a call that reads no rows is not charged"));
    // The rate: 2 at once, one a second; the denials above took none.
    drop(engine.try_admit(&ask("query_read", 1, None)).expect("the rate's token is still there"));
}

#[test]
fn a_budget_reserves_what_a_read_may_return_and_gives_back_what_it_did_not() {
    let (engine, clock) = spending(policy(6000, 100, 100).with_rows_per_hour(100).expect("valid"));
    let first = engine.try_admit(&ask("query_read", 1, Some(60))).expect("60 of 100");
    assert_eq!(first.allowance(), Allowance { rows: Some(60), bytes: None });
    let second = engine.try_admit(&ask("query_read", 1, Some(60))).expect("what is left");
    assert_eq!(second.allowance().rows, Some(40), "capped to what is left, never more");
    let Err(QuotaDenied::Budget { budget: "rows", refills_in }) = engine.try_admit(&ask("query_read", 1, Some(1)))
    else {
        panic!("all 100 rows are reserved by calls in flight")
    };
    assert_eq!(refills_in, QuotaPolicy::BUDGET_WINDOW);
    first.charge(Egress { rows: 10, bytes: 200 });
    drop(first);
    assert_eq!(engine.egress_used(&KEY).rows, 50, "the first call returned 10 of its 60: 50 come back");
    // A call that never says what it returned (it panicked, say) keeps its whole reservation.
    drop(second);
    assert_eq!(engine.egress_used(&KEY).rows, 50);
    let third = engine.try_admit(&ask("query_read", 1, Some(100))).expect("50 left");
    assert_eq!(third.allowance().rows, Some(50));
    third.charge(Egress { rows: 50, bytes: 0 });
    drop(third);
    clock.advance(Duration::from_secs(1800));
    let Err(QuotaDenied::Budget { refills_in, .. }) = engine.try_admit(&ask("query_read", 1, Some(1))) else {
        panic!("spent")
    };
    assert_eq!(refills_in, Duration::from_secs(1800), "the window ends an hour after it began");
    clock.advance(Duration::from_secs(1800));
    assert_eq!(engine.egress_used(&KEY), Egress::default(), "the window is over at its end");
    let refilled = engine.try_admit(&ask("query_read", 1, Some(100))).expect("a new window");
    assert_eq!(refilled.allowance().rows, Some(100));
}

#[test]
fn a_reservation_settled_after_its_window_ended_gives_nothing_to_the_next() {
    let (engine, clock) = spending(policy(6000, 100, 100).with_bytes_per_hour(1000).expect("valid"));
    let late = engine.try_admit(&ask("query_read", 1, Some(10))).expect("the whole budget");
    assert_eq!(late.allowance(), Allowance { rows: None, bytes: Some(1000) });
    clock.advance(QuotaPolicy::BUDGET_WINDOW);
    let fresh =
        engine.try_admit(&QuotaRequest { egress: Some(Egress { rows: 1, bytes: 400 }), ..ask("query_read", 1, None) });
    let fresh = fresh.expect("a new window");
    late.charge(Egress::default());
    drop(late);
    assert_eq!(engine.egress_used(&KEY).bytes, 400, "the old window's refund does not land in the new one");
    drop(fresh);
}

#[test]
fn a_thousand_principals_never_share_a_cost_quota_or_a_budget() {
    let (engine, _clock) =
        spending(policy(6000, 100, 100).with_cost_per_minute(5).and_then(|p| p.with_rows_per_hour(7)).expect("valid"));
    let identities: Vec<String> = (0..1000).map(|i| format!("user-{i}")).collect();
    for identity in &identities {
        let ask =
            QuotaRequest { key: QuotaKey { identity, ..KEY }, cost: 5, egress: Some(Egress { rows: 7, bytes: 1 }) };
        let permit = engine.try_admit(&ask).unwrap_or_else(|e| panic!("{identity} shares another's spending: {e}"));
        assert_eq!(permit.allowance().rows, Some(7), "{identity} has a budget of its own");
        permit.charge(Egress { rows: 7, bytes: 1 });
    }
    for identity in &identities {
        assert_eq!(engine.egress_used(&QuotaKey { identity, ..KEY }).rows, 7);
    }
}

#[test]
fn a_principal_is_forgotten_only_once_its_cost_bucket_is_full_and_its_budget_window_over() {
    let (engine, clock) = spending(
        policy(6000, 100, 100)
            .with_max_keys(2)
            .and_then(|p| p.with_cost_per_minute(60))
            .and_then(|p| p.with_rows_per_hour(10))
            .expect("valid"),
    );
    let whole = |identity: &'static str| QuotaRequest {
        key: QuotaKey { identity, ..KEY },
        cost: 60,
        egress: Some(Egress { rows: 10, bytes: 1 }),
    };
    for identity in ["a", "b"] {
        let permit = engine.try_admit(&whole(identity)).expect("a minute's cost and the hour's rows");
        permit.charge(Egress { rows: 10, bytes: 1 });
    }
    // The rate has refilled (the slots could go), but the spending of a and b has not.
    clock.advance(Duration::from_secs(1));
    assert_eq!(engine.try_admit(&whole("c")).err(), Some(QuotaDenied::KeyTableFull), "cost not refilled");
    clock.advance(Duration::from_secs(60));
    assert_eq!(engine.try_admit(&whole("c")).err(), Some(QuotaDenied::KeyTableFull), "the windows still run");
    clock.advance(QuotaPolicy::BUDGET_WINDOW);
    drop(engine.try_admit(&whole("c")).expect("a and b are spent out and forgotten: forgetting changes nothing"));
}
