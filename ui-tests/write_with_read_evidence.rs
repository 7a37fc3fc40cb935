// Opening a write transaction with a read tool's evidence.
use sqlwarden::adapter::Adapter;
use sqlwarden::{Evidence, Read};

async fn escalate(adapter: &dyn Adapter, evidence: Evidence<'_, Read>) {
    let _ = adapter.begin_write(evidence).await;
}

fn main() {}
