// Running a stage out of order: the mode check cannot come after authorization.
use sqlwarden::{Denial, Invocation, Resolved};

fn reorder(resolved: Invocation<'_, Resolved>) -> Result<(), Denial> {
    let _ = resolved.check_mode()?.authorize()?.check_mode()?;
    Ok(())
}

fn main() {}
