// Skipping session validation and tool lookup: the mode check needs a Resolved invocation.
use sqlwarden::{Invocation, Unvalidated};

fn skip(raw: Invocation<'_, Unvalidated>) {
    let _ = raw.check_mode();
}

fn main() {}
