//! The SQL gate against an adversarial corpus and a benign one (`tests/corpus/*.jsonl`, in the
//! format `mcp_probe.py attack` reads). Every attack must be refused in every dialect it names;
//! every benign query must be accepted, and what it runs must pass the gate again.

use serde_json::Value;
use sqlwarden::DenialCode;
use sqlwarden::sql::{AllowList, SqlDialect, SqlValidator};

const DIALECTS: [SqlDialect; 3] = [SqlDialect::Postgres, SqlDialect::MySql, SqlDialect::Sqlite];
const ALLOWED: [&str; 3] = ["customers", "orders", "order_items"];

fn validator(dialect: SqlDialect) -> SqlValidator {
    let schema = default_schema(dialect);
    let allow = ALLOWED.iter().fold(AllowList::new(dialect, schema), |list, table| list.table(schema, table));
    SqlValidator::new(allow)
}

fn default_schema(dialect: SqlDialect) -> &'static str {
    match dialect {
        SqlDialect::Postgres => "public",
        SqlDialect::MySql => "test",
        SqlDialect::Sqlite => "main",
    }
}

struct Case {
    id: String,
    dialects: Vec<SqlDialect>,
    category: String,
    sql: String,
    params: usize,
}

fn load(file: &str) -> Vec<Case> {
    let path = format!("{}/tests/corpus/{file}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    text.lines()
        .enumerate()
        .map(|(n, line)| {
            let row: Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("{file}:{}: {e}", n + 1));
            let dialects = match row["dialect"].as_str() {
                Some("any") => DIALECTS.to_vec(),
                Some("postgres") => vec![SqlDialect::Postgres],
                Some("mysql") => vec![SqlDialect::MySql],
                Some("sqlite") => vec![SqlDialect::Sqlite],
                other => panic!("{file}:{}: unknown dialect {other:?}", n + 1),
            };
            Case {
                id: row["id"].as_str().map_or_else(|| format!("{file}:{}", n + 1), str::to_owned),
                dialects,
                category: row["category"].as_str().unwrap_or("benign").to_owned(),
                sql: row["sql"].as_str().expect("sql").to_owned(),
                params: row["params"].as_u64().unwrap_or(0) as usize,
            }
        })
        .collect()
}

#[test]
fn every_attack_is_refused_in_every_dialect_it_names() {
    let cases = load("attacks.jsonl");
    assert!(cases.len() >= 150, "the corpus keeps at least 150 cases");
    let mut failures = Vec::new();
    let mut checked = 0;
    for case in &cases {
        for &dialect in &case.dialects {
            checked += 1;
            match validator(dialect).validate(&case.sql, case.params) {
                Ok(query) => {
                    failures.push(format!("{} [{dialect}] {} ACCEPTED as {}", case.id, case.category, query.sql()))
                }
                Err(denial) => {
                    if denial.code() != DenialCode::QueryRejected {
                        failures.push(format!("{} [{dialect}] code {}", case.id, denial.code()));
                    }
                    let lowered = case.sql.to_lowercase();
                    for table in ALLOWED {
                        if denial.message().contains(table) && !lowered.contains(table) {
                            failures.push(format!(
                                "{} [{dialect}] echoes the allow-list: {}",
                                case.id,
                                denial.message()
                            ));
                        }
                    }
                }
            }
        }
    }
    assert!(failures.is_empty(), "{} of {checked} checks failed:\n{}", failures.len(), failures.join("\n"));
}

#[test]
fn every_benign_query_is_accepted_and_runs_what_was_checked() {
    let cases = load("benign.jsonl");
    assert!(cases.len() >= 40, "the benign set keeps at least 40 queries");
    let mut failures = Vec::new();
    for case in &cases {
        for &dialect in &case.dialects {
            let validator = validator(dialect);
            match validator.validate(&case.sql, case.params) {
                Err(denial) => {
                    failures.push(format!("{} [{dialect}] REJECTED: {} — {}", case.id, denial.message(), case.sql))
                }
                Ok(query) => {
                    let again = validator.validate(query.sql(), case.params);
                    match again {
                        Ok(second) if second.sql() == query.sql() && second.tables() == query.tables() => {}
                        other => failures.push(format!(
                            "{} [{dialect}] unstable: {:?}",
                            case.id,
                            other.map(|q| q.sql().to_owned())
                        )),
                    }
                    for table in query.tables() {
                        let allowed =
                            table.schema == default_schema(dialect) && ALLOWED.contains(&table.table.as_str());
                        if !allowed {
                            failures.push(format!("{} [{dialect}] reads {table}", case.id));
                        }
                    }
                }
            }
        }
    }
    assert!(failures.is_empty(), "{} benign checks failed:\n{}", failures.len(), failures.join("\n"));
}
