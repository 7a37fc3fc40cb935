// Skipping the read-only mode check: authorization needs a ModeChecked invocation.
use sqlwarden::{Invocation, Resolved};

fn skip(resolved: Invocation<'_, Resolved>) {
    let _ = resolved.authorize();
}

fn main() {}
