// Moving evidence into a spawned task: it borrows the admitted call, so it cannot outlive it
// (nor the quota permit that call holds).
use std::sync::Arc;
use sqlwarden::adapter::Adapter;
use sqlwarden::{Evidence, Read};

fn detach(adapter: Arc<dyn Adapter>, evidence: Evidence<'_, Read>) {
    tokio::spawn(async move {
        let _ = adapter.list_tables(evidence, None).await;
    });
}

fn main() {}
