// Cloning admitted evidence: it is not Clone.
use sqlwarden::{Evidence, Read};

fn duplicate<'a>(evidence: Evidence<'a, Read>) -> (Evidence<'a, Read>, Evidence<'a, Read>) {
    let copy: Evidence<'a, Read> = evidence.clone();
    (evidence, copy)
}

fn main() {}
