// Spending admitted evidence twice: adapter methods take it by value.
use sqlwarden::adapter::Adapter;
use sqlwarden::{Evidence, Read};

async fn twice(adapter: &dyn Adapter, evidence: Evidence<'_, Read>) {
    let _ = adapter.list_tables(evidence, None).await;
    let _ = adapter.list_tables(evidence, None).await;
}

fn main() {}
