//! The SQL gate's cost: parse, walk, print and parse the printed text again, for the query shapes
//! `query_read` sees.
//!
//! Run with `cargo bench --bench sql`.

use std::hint::black_box;

use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use sqlwarden::sql::{AllowList, SqlDialect, SqlValidator};

const JOIN_WITH_CTE: &str = "WITH big AS (SELECT customer_id, sum(total) AS spent FROM orders GROUP BY customer_id) \
    SELECT c.name, b.spent, count(i.id) AS items FROM customers c JOIN big b ON b.customer_id = c.id \
    JOIN order_items i ON i.customer_id = c.id WHERE c.created_at > now() - interval '30 days' \
    GROUP BY c.name, b.spent ORDER BY b.spent DESC LIMIT 20";

const POINT: &str = "SELECT id, name FROM customers WHERE id = $1";

fn sql(c: &mut Criterion) {
    let allow = AllowList::new(SqlDialect::Postgres, "public")
        .table("public", "customers")
        .table("public", "orders")
        .table("public", "order_items");
    let validator = SqlValidator::new(allow.clone());
    // A validator remembers what it accepted: each measured validation gets a new one (made
    // outside the measured time), so that these figures are for validating afresh.
    let afresh = |b: &mut criterion::Bencher<'_>, sql: &str, params: usize| {
        b.iter_batched(
            || SqlValidator::new(allow.clone()),
            |validator| black_box(validator.validate(black_box(sql), params).expect("accepted")),
            BatchSize::SmallInput,
        )
    };
    c.bench_function("sql/three_table_join_with_cte", |b| afresh(b, JOIN_WITH_CTE, 0));
    // The floor: sqlparser alone tokenizing and parsing the same text once, no checks.
    c.bench_function("sql/sqlparser_parse_only", |b| {
        b.iter(|| {
            black_box(
                sqlparser::parser::Parser::parse_sql(
                    &sqlparser::dialect::PostgreSqlDialect {},
                    black_box(JOIN_WITH_CTE),
                )
                .expect("parses"),
            )
        })
    });
    c.bench_function("sql/point_query", |b| afresh(b, POINT, 1));
    c.bench_function("sql/point_query_repeated", |b| {
        b.iter(|| black_box(validator.validate(black_box(POINT), 1).expect("accepted")))
    });
    c.bench_function("sql/rejected_function", |b| {
        b.iter(|| black_box(validator.validate(black_box("SELECT pg_sleep(10)"), 0).expect_err("refused")))
    });
}

criterion_group!(benches, sql);
criterion_main!(benches);
