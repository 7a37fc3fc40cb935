// Calling an adapter with an invocation that has not been admitted, at every earlier state.
use sqlwarden::adapter::Adapter;
use sqlwarden::{Authorized, Invocation, ModeChecked, Resolved, Unvalidated};

async fn reach(
    adapter: &dyn Adapter,
    unvalidated: Invocation<'_, Unvalidated>,
    resolved: Invocation<'_, Resolved>,
    checked: Invocation<'_, ModeChecked>,
    authorized: Invocation<'_, Authorized>,
) {
    let _ = adapter.list_tables(unvalidated, None).await;
    let _ = adapter.list_tables(resolved, None).await;
    let _ = adapter.list_tables(checked, None).await;
    let _ = adapter.list_tables(authorized, None).await;
}

fn main() {}
