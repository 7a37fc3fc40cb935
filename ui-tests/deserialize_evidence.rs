// Deserializing evidence from JSON: it is not Deserialize.
use sqlwarden::{Evidence, Write};

fn from_the_wire(json: &str) -> Evidence<'static, Write> {
    serde_json::from_str(json).unwrap()
}

fn main() {}
