//! The cost of the boundary itself: a call through every stage to a no-op tool, with its five
//! audit events serialized as JSON lines (to `io::sink()`, so the disk is not measured).
//!
//! Run with `cargo bench --bench pipeline`.

use std::hint::black_box;
use std::sync::Arc;

use criterion::{Criterion, criterion_group, criterion_main};
use futures_util::FutureExt;
use serde_json::{Value, json};
use sqlwarden::ToolRegistry;
use sqlwarden::audit::JsonLinesSink;
use sqlwarden::policy::{Capabilities, Grant, Mode, QuotaEngine, QuotaPolicy, SessionContext};
use sqlwarden::{Boundary, Evidence, Read, Tool, ToolError};

struct Noop;

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct NoInput {}

impl Tool for Noop {
    type Access = Read;
    type Input = NoInput;
    type Output = ();

    fn name(&self) -> &str {
        "noop"
    }
    fn description(&self) -> &str {
        "does nothing"
    }
    async fn call(&self, _evidence: Evidence<'_, Read>, _input: NoInput) -> Result<(), ToolError> {
        Ok(())
    }
}

fn boundary() -> Boundary {
    let mut tools = ToolRegistry::new();
    tools.register(Noop).expect("register");
    // Limits far above what the bench can reach, so every call is admitted and measured whole.
    let policy = QuotaPolicy::new(u32::MAX, u32::MAX, 1024).expect("policy");
    Boundary::builder(tools)
        .mode(Mode::ReadOnly)
        .authorizer(Capabilities::from_grants([Grant::new("bench", "acme", "noop").expect("grant")]))
        .quotas(QuotaEngine::new(policy))
        .audit(JsonLinesSink::new(std::io::sink()))
        .build()
}

fn pipeline(c: &mut Criterion) {
    let boundary = boundary();
    let session = Arc::new(SessionContext::builder().identity("bench").tenant("acme").bind().expect("session"));
    let stranger = Arc::new(SessionContext::builder().identity("stranger").tenant("acme").bind().expect("session"));

    c.bench_function("pipeline/admitted_noop", |b| {
        b.iter(|| {
            let call =
                boundary.invoke(Some(Arc::clone(&session)), black_box("noop"), Value::Object(Default::default()));
            let result = call.now_or_never().expect("a no-op tool completes at once");
            black_box(result.expect("admitted"))
        })
    });

    c.bench_function("pipeline/unauthorized", |b| {
        b.iter(|| {
            let call = boundary.invoke(Some(Arc::clone(&stranger)), black_box("noop"), json!({}));
            black_box(call.now_or_never().expect("denials complete at once").expect_err("denied"))
        })
    });
}

criterion_group!(benches, pipeline);
criterion_main!(benches);
