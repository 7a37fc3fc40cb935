//! Fail closed: an error or a panic anywhere in the pipeline is a denial, never an allow.

mod common;

use std::sync::Arc;

use common::*;
use serde_json::json;
use sqlwarden::policy::{
    Admission, AdmitFuture, Authorizer, AuthzRequest, Capabilities, Decision, Grant, Mode, QuotaDenied, QuotaRequest,
};
use sqlwarden::{Boundary, DenialCode, ToolRegistry};

struct Failing;
impl Authorizer for Failing {
    fn authorize(&self, _: &AuthzRequest<'_>) -> Result<Decision, Box<dyn std::error::Error + Send + Sync>> {
        Err("policy store unreachable".into())
    }
}

struct Panicking;
impl Authorizer for Panicking {
    fn authorize(&self, _: &AuthzRequest<'_>) -> Result<Decision, Box<dyn std::error::Error + Send + Sync>> {
        panic!("authorizer bug")
    }
}
impl Admission for Panicking {
    fn admit<'a>(&'a self, _: QuotaRequest<'a>) -> AdmitFuture<'a> {
        panic!("quota bug")
    }
}

/// Panics while its admission is awaited, not when it is asked.
struct PanickingLater;
impl Admission for PanickingLater {
    fn admit<'a>(&'a self, _: QuotaRequest<'a>) -> AdmitFuture<'a> {
        Box::pin(async { panic!("quota bug, later") })
    }
}

struct Broken;
impl Admission for Broken {
    fn admit<'a>(&'a self, _: QuotaRequest<'a>) -> AdmitFuture<'a> {
        Box::pin(std::future::ready(Err(QuotaDenied::Failed("counter store unreachable".into()))))
    }
}

/// A shared quota store that does not answer.
struct Unreachable;
impl Admission for Unreachable {
    fn admit<'a>(&'a self, _: QuotaRequest<'a>) -> AdmitFuture<'a> {
        Box::pin(std::future::ready(Err(QuotaDenied::Unavailable("timed out".into()))))
    }
}

struct Allow;
impl Authorizer for Allow {
    fn authorize(&self, _: &AuthzRequest<'_>) -> Result<Decision, Box<dyn std::error::Error + Send + Sync>> {
        Ok(Decision::Allow)
    }
}

fn tools(effects: &Arc<Effects>) -> ToolRegistry {
    let adapter = Arc::new(CountingAdapter { effects: Arc::clone(effects) });
    let mut tools = ToolRegistry::new();
    tools
        .register(ReadTool { name: "list", adapter: Arc::clone(&adapter), behaviour: Behaviour::Succeed })
        .expect("ok");
    tools.register(InsertTool::new("add_customer", adapter)).expect("ok");
    tools
}

async fn call(boundary: &Boundary) -> sqlwarden::Denial {
    boundary.invoke(Some(session()), "list", json!({})).await.expect_err("must be denied")
}

#[tokio::test]
async fn an_authorizer_error_is_a_denial() {
    let effects = Arc::new(Effects::default());
    let boundary =
        Boundary::builder(tools(&effects)).authorizer(Failing).audit(Arc::new(MemorySink::default())).build();
    let denied = call(&boundary).await;
    assert_eq!(denied.code(), DenialCode::Unauthorized);
    assert!(!denied.message().contains("unreachable"), "policy internals stay in the log");
    effects.assert_untouched();
}

#[tokio::test]
async fn an_authorizer_panic_is_a_denial() {
    let effects = Arc::new(Effects::default());
    let boundary =
        Boundary::builder(tools(&effects)).authorizer(Panicking).audit(Arc::new(MemorySink::default())).build();
    assert_eq!(call(&boundary).await.code(), DenialCode::Internal);
    effects.assert_untouched();
}

#[tokio::test]
async fn a_quota_failure_or_panic_is_a_denial() {
    for quotas in [Box::new(Broken) as Box<dyn Admission>, Box::new(Panicking), Box::new(PanickingLater)] {
        let effects = Arc::new(Effects::default());
        let boundary = Boundary::builder(tools(&effects))
            .authorizer(Allow)
            .quotas(Arc::<dyn Admission>::from(quotas))
            .audit(Arc::new(MemorySink::default()))
            .build();
        assert_eq!(call(&boundary).await.code(), DenialCode::Internal);
        effects.assert_untouched();
    }
}

#[tokio::test]
async fn a_quota_store_that_does_not_answer_denies_with_quota_unavailable_and_is_audited() {
    let effects = Arc::new(Effects::default());
    let sink = Arc::new(MemorySink::default());
    let boundary =
        Boundary::builder(tools(&effects)).authorizer(Allow).quotas(Unreachable).audit(Arc::clone(&sink)).build();
    let denied = call(&boundary).await;
    assert_eq!(denied.code(), DenialCode::QuotaUnavailable);
    assert!(!denied.message().contains("timed out"), "the store's error stays in the log: {denied}");
    effects.assert_untouched();
    let events = sink.events.lock().expect("events");
    assert!(
        events
            .iter()
            .any(|event| event.stage == sqlwarden::audit::Stage::Admit
                && event.code == Some(DenialCode::QuotaUnavailable)),
        "the denial is on record: {events:?}"
    );
}

#[tokio::test]
async fn a_tool_panic_is_an_internal_denial_with_a_generic_message() {
    let h = Harness::granting(&["panicking"]);
    let denied = h.call(&session(), "panicking", json!({})).await.expect_err("panicked");
    assert_eq!(denied.code(), DenialCode::Internal);
    assert_eq!(denied.message(), "internal error");
}

#[tokio::test]
async fn a_tool_error_reaches_the_caller_without_its_details() {
    let h = Harness::granting(&["failing"]);
    let denied = h.call(&session(), "failing", json!({})).await.expect_err("failed");
    assert_eq!(denied.code(), DenialCode::Internal);
    assert!(!denied.message().contains("the tool failed"));
}

#[tokio::test]
async fn adapter_errors_become_their_denial_codes() {
    // `describe_table` on the counting adapter answers "not visible".
    use sqlwarden::adapter::{Adapter, AdapterError, AdapterErrorKind};
    struct Describe(Arc<CountingAdapter>);
    impl sqlwarden::Tool for Describe {
        type Access = sqlwarden::Read;
        type Input = NoInput;
        type Output = ();
        fn name(&self) -> &str {
            "describe"
        }
        fn description(&self) -> &str {
            "describes a table"
        }
        async fn call(
            &self,
            evidence: sqlwarden::Evidence<'_, sqlwarden::Read>,
            _: NoInput,
        ) -> Result<(), sqlwarden::ToolError> {
            self.0.describe_table(evidence, None, "secrets").await?;
            Ok(())
        }
    }
    let effects = Arc::new(Effects::default());
    let mut registry = ToolRegistry::new();
    registry.register(Describe(Arc::new(CountingAdapter { effects }))).expect("ok");
    let boundary = Boundary::builder(registry)
        .authorizer(Capabilities::from_grants([grant("describe")]))
        .audit(Arc::new(MemorySink::default()))
        .build();
    let denied = boundary.invoke(Some(session()), "describe", json!({})).await.expect_err("not visible");
    assert_eq!(denied.code(), DenialCode::QueryRejected);

    let expected = [
        (AdapterErrorKind::Timeout, DenialCode::Timeout),
        (AdapterErrorKind::ResultTooLarge, DenialCode::ResultTooLarge),
        (AdapterErrorKind::NotVisible, DenialCode::QueryRejected),
        (AdapterErrorKind::InvalidInput, DenialCode::InvalidInput),
        (AdapterErrorKind::Database, DenialCode::DbError),
        (AdapterErrorKind::Connection, DenialCode::DbError),
        (AdapterErrorKind::TooManyRows, DenialCode::QueryRejected),
        (AdapterErrorKind::Refused, DenialCode::QueryRejected),
        // A value that does not decode is a fault of ours, not the database's.
        (AdapterErrorKind::Internal, DenialCode::Internal),
    ];
    for (kind, code) in expected {
        let error = AdapterError::new(kind, "password=hunter2 host=db.internal");
        assert_eq!(error.denial().code(), code, "{kind:?}");
        assert!(!error.to_string().contains("hunter2"), "Display never shows the cause");
        assert!(!error.denial().message().contains("hunter2"));
    }
}

#[test]
fn visible_tools_are_only_those_granted_and_allowed_by_the_mode() {
    let effects = Arc::new(Effects::default());
    let grants = [grant("list"), grant("add_customer"), Grant::new("someone@else", TENANT, "list").expect("ok")];
    let read_only = Boundary::builder(tools(&effects)).authorizer(Capabilities::from_grants(grants.clone())).build();
    let names = |b: &Boundary, s| b.visible_tools(s).iter().map(|t| t.name.to_string()).collect::<Vec<_>>();
    let s = session();
    assert_eq!(names(&read_only, &s), ["list"], "write tools are hidden in read-only mode");

    let read_write =
        Boundary::builder(tools(&effects)).mode(Mode::ReadWrite).authorizer(Capabilities::from_grants(grants)).build();
    assert_eq!(read_write.mode(), Mode::ReadWrite);
    assert_eq!(read_write.registry().len(), 2);
    assert_eq!(names(&read_write, &s), ["add_customer", "list"]);
    let nobody = session_of("nobody", TENANT);
    assert!(names(&read_write, &nobody).is_empty());

    let panicky = Boundary::builder(tools(&effects)).mode(Mode::ReadWrite).authorizer(Panicking).build();
    assert!(names(&panicky, &s).is_empty(), "an authorizer panic hides the tool");
    let failing = Boundary::builder(tools(&effects)).mode(Mode::ReadWrite).authorizer(Failing).build();
    assert!(names(&failing, &s).is_empty(), "an authorizer error hides the tool");
}

#[test]
fn the_defaults_are_read_only_and_deny_all() {
    let effects = Arc::new(Effects::default());
    let boundary = Boundary::builder(tools(&effects)).build();
    assert_eq!(boundary.mode(), Mode::ReadOnly);
    assert!(boundary.visible_tools(&session()).is_empty(), "no grants unless given");
}

#[test]
fn registering_a_duplicate_name_is_an_error() {
    let effects = Arc::new(Effects::default());
    let mut registry = tools(&effects);
    let adapter = Arc::new(CountingAdapter { effects });
    let duplicate = ReadTool { name: "add_customer", adapter: Arc::clone(&adapter), behaviour: Behaviour::Succeed };
    let error = registry.register(duplicate).expect_err("the name is taken");
    assert_eq!(error.to_string(), "a tool named `add_customer` is already registered");
    assert_eq!(
        registry.get("add_customer").map(|t| t.access),
        Some(sqlwarden::policy::Access::Write),
        "the first registration stands"
    );
    let invalid = ReadTool { name: "drop *", adapter, behaviour: Behaviour::Succeed };
    assert!(matches!(registry.register(invalid), Err(sqlwarden::tools::RegistryError::InvalidName { .. })));
    assert_eq!(registry.len(), 2);
    assert!(!registry.is_empty());
    assert!(ToolRegistry::new().is_empty());
}
