// Forging evidence with a struct literal: its fields are private.
#![allow(unreachable_code)] // the placeholders below stand for values no caller could make
use std::marker::PhantomData;
use sqlwarden::{Evidence, Read};

fn forge<'a>() -> Evidence<'a, Read> {
    Evidence { call: todo!(), _access: PhantomData }
}

fn main() {}
