// Calling the evidence constructor: only the boundary can, when it runs an admitted call.
#![allow(unreachable_code)] // the placeholders below stand for values no caller could make
use sqlwarden::{Evidence, Read};

fn make<'a>() -> Option<Evidence<'a, Read>> {
    Evidence::new(todo!())
}

fn main() {}
