// Handing an adapter the admitted invocation itself: adapters take the evidence the boundary
// gives the tool when it runs, so the permit-holding invocation cannot skip `run`.
use sqlwarden::adapter::Adapter;
use sqlwarden::{Admitted, Invocation};

async fn reach(adapter: &dyn Adapter, admitted: Invocation<'_, Admitted>) {
    let _ = adapter.list_tables(admitted, None).await;
}

fn main() {}
