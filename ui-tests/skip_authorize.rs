// Skipping authorization: quota admission needs an Authorized invocation.
use sqlwarden::{Invocation, ModeChecked};

fn skip(checked: Invocation<'_, ModeChecked>) {
    let _ = checked.admit();
}

fn main() {}
