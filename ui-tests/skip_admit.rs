// Skipping quota admission: only an Admitted invocation can run its tool.
use sqlwarden::{Authorized, Invocation};

async fn skip(authorized: Invocation<'_, Authorized>) {
    let _ = authorized.run().await;
}

fn main() {}
