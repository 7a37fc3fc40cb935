// Opening a write transaction with a read tool's evidence.
use sqlwarden::adapter::{Adapter, WriteOptions};
use sqlwarden::{Evidence, Read};

async fn escalate(adapter: &dyn Adapter, evidence: Evidence<'_, Read>, options: WriteOptions) {
    let _ = adapter.begin_write(evidence, options).await;
}

fn main() {}
