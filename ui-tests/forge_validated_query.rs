// Building validated SQL without the validator: its fields are private and it has no
// constructor, so caller text cannot reach query execution unchecked.
use sqlwarden::sql::{SqlDialect, ValidatedQuery};

fn forge(text: String) -> ValidatedQuery {
    ValidatedQuery { dialect: SqlDialect::Postgres, text, tables: Vec::new(), fingerprint: String::new(), params: 0 }
}

fn main() {}
