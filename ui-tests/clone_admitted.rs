// Cloning an admitted invocation to run its tool twice on one reservation: it is not Clone.
use sqlwarden::{Admitted, Invocation};

fn needs_clone<T: Clone>(_: &T) {}

fn duplicate(admitted: Invocation<'_, Admitted>) {
    needs_clone(&admitted);
}

fn main() {}
