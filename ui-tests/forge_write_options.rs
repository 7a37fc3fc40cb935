// A tool opening a write transaction of its own, with bounds it made up: only sqlwarden's
// write runner makes WriteOptions, so only it opens (and commits) write transactions.
use std::time::Duration;
use sqlwarden::adapter::{Adapter, WriteOptions};
use sqlwarden::{Evidence, Write};

async fn open_unbounded(adapter: &dyn Adapter, evidence: Evidence<'_, Write>) {
    let options = WriteOptions { timeout: Duration::MAX, max_rows: u64::MAX };
    let _ = adapter.begin_write(evidence, options).await;
}

fn main() {}
