// Forging an admitted invocation with a struct literal: its fields are private.
#![allow(unreachable_code)] // the placeholders below stand for values no caller could make
use sqlwarden::{Admitted, Boundary, Invocation};

fn forge(boundary: &Boundary) -> Invocation<'_, Admitted> {
    Invocation { boundary, call: todo!(), proof: todo!() }
}

fn main() {}
