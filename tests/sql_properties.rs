//! Properties of the SQL gate: it never panics or overflows on any input, and whatever it
//! accepts validates again to itself and reads only allowed tables.

use proptest::prelude::*;
use sqlwarden::DenialCode;
use sqlwarden::sql::{AllowList, SqlDialect, SqlValidator};

fn validator(dialect: SqlDialect) -> SqlValidator {
    let schema = schema_of(dialect);
    SqlValidator::new(AllowList::new(dialect, schema).table(schema, "customers").table(schema, "orders"))
}

fn dialect() -> impl Strategy<Value = SqlDialect> {
    prop_oneof![Just(SqlDialect::Postgres), Just(SqlDialect::MySql), Just(SqlDialect::Sqlite)]
}

/// Token soup close enough to SQL to reach deep into the parser and the walk.
fn sqlish() -> impl Strategy<Value = String> {
    let token = prop_oneof![
        Just("SELECT"),
        Just("FROM"),
        Just("WHERE"),
        Just("WITH"),
        Just("RECURSIVE"),
        Just("AS"),
        Just("JOIN"),
        Just("ON"),
        Just("UNION"),
        Just("ALL"),
        Just("("),
        Just(")"),
        Just(","),
        Just(";"),
        Just("*"),
        Just("="),
        Just("+"),
        Just("customers"),
        Just("orders"),
        Just("secrets"),
        Just("pg_catalog.pg_user"),
        Just("mysql.user"),
        Just("sqlite_master"),
        Just("count(*)"),
        Just("pg_sleep(1)"),
        Just("sleep(1)"),
        Just("1"),
        Just("'x'"),
        Just("\"q\""),
        Just("`b`"),
        Just("/*"),
        Just("*/"),
        Just("--"),
        Just("\n"),
        Just("$1"),
        Just("?"),
        Just("DELETE"),
        Just("INSERT INTO"),
        Just("UPDATE"),
        Just("SET"),
        Just("RETURNING"),
        Just("FOR UPDATE"),
        Just("INTO"),
        Just("LATERAL"),
        Just("EXISTS"),
        Just("IN"),
        Just("ORDER BY"),
        Just("GROUP BY"),
        Just("LIMIT"),
        Just("x"),
        Just("c"),
        Just("c.id"),
        Just("VALUES"),
        Just("@a"),
        Just(":="),
        Just("/*!"),
        Just("$$"),
    ];
    prop::collection::vec(token, 0..40).prop_map(|tokens| tokens.join(" "))
}

/// Queries of the shapes the gate must get right, over allowed and forbidden tables alike:
/// CTEs, joins, subqueries in every clause, set operations, qualified names.
fn query() -> impl Strategy<Value = String> {
    let table = prop_oneof![
        4 => Just("customers"),
        4 => Just("orders"),
        1 => Just("secrets"),
        1 => Just("public.customers"),
        1 => Just("test.orders"),
        1 => Just("main.customers"),
        1 => Just("other.customers"),
        1 => Just("pg_catalog.pg_user"),
        1 => Just("mysql.user"),
        1 => Just("sqlite_master"),
        1 => Just("\"Customers\""),
        1 => Just("`orders`"),
    ];
    let column = prop_oneof![Just("c.id"), Just("id"), Just("count(*)"), Just("1"), Just("'x'"), Just("upper(c.name)")];
    let tables = prop::collection::vec(table, 5);
    let shape = (0usize..3, 0usize..4, 0usize..5, 0usize..4, column);
    (tables, shape).prop_map(|(t, (with, join, filter, tail, column))| {
        let with_clause = match with {
            1 => format!("WITH w AS (SELECT id FROM {}) ", t[1]),
            2 => "WITH RECURSIVE w(id) AS (SELECT 1 UNION ALL SELECT id + 1 FROM w WHERE id < 3) ".to_owned(),
            _ => String::new(),
        };
        let from = if with > 0 { "w" } else { t[0] };
        let join = match join {
            1 => format!(" JOIN {} AS j ON j.id = c.id", t[2]),
            2 => format!(" LEFT JOIN (SELECT id FROM {}) AS j ON j.id = c.id", t[2]),
            3 => format!(", {} AS k", t[2]),
            _ => String::new(),
        };
        let filter = match filter {
            1 => " WHERE c.id = 1".to_owned(),
            2 => format!(" WHERE c.id IN (SELECT id FROM {})", t[3]),
            3 => format!(" WHERE EXISTS (SELECT 1 FROM {} AS e WHERE e.id = c.id)", t[3]),
            4 => format!(" WHERE c.id = (SELECT max(id) FROM {})", t[3]),
            _ => String::new(),
        };
        let tail = match tail {
            1 => " ORDER BY 1 LIMIT 5".to_owned(),
            2 => format!(" UNION SELECT id FROM {}", t[4]),
            3 => " GROUP BY c.id".to_owned(),
            _ => String::new(),
        };
        let column = if with > 0 && column.contains("name") { "c.id" } else { column };
        format!("{with_clause}SELECT {column} FROM {from} AS c{join}{filter}{tail}")
    })
}

/// The allow-list's schema in each dialect.
fn schema_of(dialect: SqlDialect) -> &'static str {
    match dialect {
        SqlDialect::Postgres => "public",
        SqlDialect::MySql => "test",
        SqlDialect::Sqlite => "main",
    }
}

fn check_accepted(dialect: SqlDialect, sql: &str, params: usize) -> Result<(), TestCaseError> {
    let validator = validator(dialect);
    match validator.validate(sql, params) {
        Err(denial) => prop_assert_eq!(denial.code(), DenialCode::QueryRejected),
        Ok(query) => {
            for table in query.tables() {
                let allowed =
                    table.schema == schema_of(dialect) && (table.table == "customers" || table.table == "orders");
                prop_assert!(allowed, "reads {}", table);
            }
            let again = validator.validate(query.sql(), params);
            prop_assert!(again.is_ok(), "what runs must pass the gate: {} -> {:?}", query.sql(), again.err());
            let again = again.map_err(|d| TestCaseError::fail(d.to_string()))?;
            prop_assert_eq!(again.sql(), query.sql());
            prop_assert_eq!(again.tables(), query.tables());
        }
    }
    Ok(())
}

/// The gate's properties over generated queries, a fixed number of them, of which enough
/// must be accepted for the properties of accepted queries to have been tested at all.
#[test]
fn generated_queries_read_only_allowed_tables_and_enough_are_accepted() {
    use proptest::strategy::ValueTree;
    use proptest::test_runner::TestRunner;
    let mut runner = TestRunner::deterministic();
    let strategy = (dialect(), query());
    let (mut accepted, mut total) = (0, 0);
    for _ in 0..1500 {
        let (dialect, sql) = strategy.new_tree(&mut runner).expect("a case").current();
        if let Err(failure) = check_accepted(dialect, &sql, 0) {
            panic!("{dialect}: {sql}: {failure}");
        }
        total += 1;
        accepted += usize::from(validator(dialect).validate(&sql, 0).is_ok());
    }
    eprintln!("{accepted} of {total} generated queries accepted");
    assert!(accepted * 5 >= total, "only {accepted} of {total} generated queries were accepted");
    assert!(accepted < total, "every generated query was accepted: forbidden tables never reached the gate");
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 600, ..ProptestConfig::default() })]

    #[test]
    fn generated_queries_are_answered_and_accepted_ones_are_stable(dialect in dialect(), sql in query()) {
        check_accepted(dialect, &sql, 0)?;
    }

    #[test]
    fn any_text_is_answered_without_panic(dialect in dialect(), sql in any::<String>(), params in 0usize..3) {
        check_accepted(dialect, &sql, params)?;
    }

    #[test]
    fn sql_like_text_is_answered_and_accepted_text_is_stable(dialect in dialect(), sql in sqlish(), params in 0usize..3) {
        check_accepted(dialect, &sql, params)?;
    }
}

/// The deepest trees the token cap lets through, and far deeper ones, validated on a thread
/// with tokio's default 2 MiB stack: refused or accepted, never a stack overflow.
#[test]
fn deep_input_never_overflows_the_stack() {
    let inputs = vec![
        format!("SELECT {}1", "1+".repeat(32_000)),
        format!("SELECT {}1", "1+".repeat(SqlValidator::MAX_TOKENS / 2 - 2)),
        format!("SELECT {}1 FROM customers", "- ".repeat(SqlValidator::MAX_TOKENS - 5)),
        format!("SELECT 1 FROM customers WHERE {}", "NOT ".repeat(SqlValidator::MAX_TOKENS - 10) + "true"),
        format!("SELECT 1 FROM customers WHERE {}", "id = 1 AND ".repeat(5_900) + "true"),
        format!("SELECT {}1{}", "(".repeat(30_000), ")".repeat(30_000)),
        format!("SELECT 1{}", "::int".repeat(13_000)),
        format!("SELECT * FROM customers WHERE id IN ({})", "SELECT 1 UNION ".repeat(4_000) + "SELECT 1"),
        format!("SELECT {}1", "-".repeat(60_000)),
    ];
    std::thread::Builder::new()
        .stack_size(2 << 20)
        .spawn(move || {
            for (n, sql) in inputs.iter().enumerate() {
                assert!(sql.len() <= SqlValidator::MAX_QUERY_BYTES, "{} bytes", sql.len());
                // The deepest shape in every dialect; the others in one, to keep the suite quick.
                let dialects: &[SqlDialect] = if n <= 1 {
                    &[SqlDialect::Postgres, SqlDialect::MySql, SqlDialect::Sqlite]
                } else {
                    &[SqlDialect::Postgres]
                };
                for &dialect in dialects {
                    let _answer = validator(dialect).validate(sql, 0);
                }
            }
        })
        .expect("spawn")
        .join()
        .expect("no panic, no overflow");
}

#[test]
fn over_long_and_nul_queries_are_refused() {
    let long = format!("SELECT 1 FROM customers WHERE name = '{}'", "x".repeat(SqlValidator::MAX_QUERY_BYTES));
    let denial = validator(SqlDialect::Postgres).validate(&long, 0).expect_err("too long");
    assert_eq!(denial.message(), "the query is longer than 65536 bytes");
    let denial = validator(SqlDialect::Sqlite).validate("SELECT 1\0", 0).expect_err("NUL");
    assert_eq!(denial.message(), "the query contains a NUL character");
    let many = format!("SELECT 1 FROM customers WHERE id IN ({}1)", "1, ".repeat(5_000));
    let denial = validator(SqlDialect::MySql).validate(&many, 0).expect_err("too many tokens");
    assert_eq!(denial.message(), "the query has more than 10000 tokens");
    let enough = format!("SELECT 1 FROM customers WHERE id IN ({}1)", "1, ".repeat(4_990));
    assert!(validator(SqlDialect::MySql).validate(&enough, 0).is_ok(), "a 10,000-token IN list is fine");
}
