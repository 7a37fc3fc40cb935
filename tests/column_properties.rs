//! Non-interference of the column rules, as a property: whatever query the gate accepts over a
//! table with denied and masked columns, its result (every column but the masked ones, which
//! leave masked) is the same on two databases that differ only in those columns' values. So no
//! accepted query carries a ruled value out, by its value or by an oracle on it (a condition, an
//! ordering, a grouping, DISTINCT, a join), whatever its shape.
//!
//! The queries are generated from pieces that reach the ruled columns in every way the gate
//! knows of and more, and run on SQLite, in this process.
#![cfg(feature = "sqlite")]

mod databases;

use proptest::prelude::*;
use sqlwarden::sql::{AllowList, SqlDialect, SqlValidator};

/// `people` twice: the same ids, names and teams; other denied and masked values, equal where
/// the other's differ, in another order, with a NULL where the other has none.
const FIRST: &str = "
    CREATE TABLE people (id INTEGER PRIMARY KEY, name TEXT, email TEXT, phone TEXT, ssn TEXT, password_hash TEXT, team INTEGER);
    INSERT INTO people VALUES
        (1, 'Ann', 'a@x', '5551', 'SSN-1', 'h1', 1),
        (2, 'Bob', 'a@x', '5552', 'SSN-1', 'h2', 1),
        (3, 'Cy', 'c@x', '5553', 'SSN-3', 'h3', 2);
    CREATE TABLE teams (id INTEGER PRIMARY KEY, ssn TEXT, email TEXT, title TEXT);
    INSERT INTO teams VALUES (1, 'SSN-1', 'a@x', 'Ops'), (2, 'SSN-3', 'c@x', 'Dev');
";
const SECOND: &str = "
    CREATE TABLE people (id INTEGER PRIMARY KEY, name TEXT, email TEXT, phone TEXT, ssn TEXT, password_hash TEXT, team INTEGER);
    INSERT INTO people VALUES
        (1, 'Ann', 'z@x', '9', 'zzz', NULL, 1),
        (2, 'Bob', 'b@x', '8888888', 'aaa', 'q', 1),
        (3, 'Cy', NULL, '77', 'mmm', 'r', 2);
    CREATE TABLE teams (id INTEGER PRIMARY KEY, ssn TEXT, email TEXT, title TEXT);
    INSERT INTO teams VALUES (1, 'SSN-1', 'a@x', 'Ops'), (2, 'SSN-3', 'c@x', 'Dev');
";

fn validator() -> SqlValidator {
    SqlValidator::new(AllowList::new(SqlDialect::Sqlite, "main").schema("main").columns(
        "main",
        "people",
        databases::people_rule(),
    ))
}

fn database(fixture: &str) -> rusqlite::Connection {
    let connection = rusqlite::Connection::open_in_memory().expect("opens");
    connection.execute_batch(fixture).expect("fixture");
    connection
}

/// The result, as text, with the masked columns left out; `None` if the database refused it.
fn run(connection: &rusqlite::Connection, sql: &str, masked: &[usize]) -> Option<Vec<Vec<String>>> {
    let mut statement = connection.prepare(sql).ok()?;
    let width = statement.column_count();
    let mut rows = statement.query([]).ok()?;
    let mut result = Vec::new();
    while let Some(row) = rows.next().ok()? {
        let values = (0..width)
            .filter(|index| !masked.contains(index))
            .map(|index| format!("{:?}", row.get_ref(index).map(|value| value.to_owned()).ok()))
            .collect();
        result.push(values);
    }
    Some(result)
}

fn column() -> impl Strategy<Value = &'static str> {
    let safe = prop_oneof![Just("id"), Just("name"), Just("team"), Just("p.name"), Just("t.title"), Just("p.id")];
    let ruled = prop_oneof![
        Just("email"),
        Just("phone"),
        Just("ssn"),
        Just("password_hash"),
        Just("p.email"),
        Just("p.phone"),
        Just("p.ssn"),
        Just("t.ssn"),
        Just("rowid"),
        Just("p"),
    ];
    prop_oneof![3 => safe, 2 => ruled].boxed()
}

fn expression() -> impl Strategy<Value = String> {
    (column(), 0..12usize)
        .prop_map(|(column, shape)| match shape {
            0..=5 => column.to_owned(),
            6 => format!("lower({column})"),
            7 => format!("{column} || 'x'"),
            8 => format!("max({column})"),
            9 => format!("(SELECT {column} FROM people p LIMIT 1)"),
            10 => format!("CASE WHEN {column} LIKE 'a%' THEN 1 ELSE 0 END"),
            _ => format!("length({column})"),
        })
        .boxed()
}

fn item() -> impl Strategy<Value = String> {
    prop_oneof![
        8 => (expression(), any::<bool>()).prop_map(|(expr, alias)| if alias { format!("{expr} AS a0") } else { expr }),
        1 => Just("*".to_owned()),
        1 => Just("p.*".to_owned()),
        1 => Just("t.*".to_owned()),
    ]
    .boxed()
}

fn select() -> BoxedStrategy<String> {
    let from = prop_oneof![
        3 => Just("people p JOIN teams t ON t.id = p.team"),
        1 => Just("people p LEFT JOIN teams t USING (ssn)"),
        1 => Just("people p NATURAL JOIN teams t"),
        1 => Just("(SELECT id, name, team, email, phone FROM people) p JOIN teams t ON t.id = p.team"),
    ];
    let filter = prop_oneof![
        4 => Just(String::new()),
        1 => column().prop_map(|column| format!(" WHERE {column} = 'a@x'")),
        1 => column().prop_map(|column| format!(" WHERE {column} LIKE 'S%'")),
        1 => column().prop_map(|column| format!(" WHERE {column} IS NULL")),
        1 => column().prop_map(|column| format!(" WHERE EXISTS (SELECT 1 FROM people q WHERE q.{column} = p.{column})")),
    ];
    let order = prop_oneof![
        4 => Just(String::new()),
        1 => Just(" ORDER BY 1".to_owned()),
        1 => Just(" ORDER BY a0".to_owned()),
        1 => column().prop_map(|column| format!(" ORDER BY {column}")),
        1 => column().prop_map(|column| format!(" GROUP BY {column}")),
    ];
    (prop::collection::vec(item(), 1..4), 0..5u8, from, filter, order)
        .prop_map(|(items, distinct, from, filter, order)| {
            let distinct = if distinct == 0 { "DISTINCT " } else { "" };
            format!("SELECT {distinct}{} FROM {from}{filter}{order}", items.join(", "))
        })
        .boxed()
}

/// A SELECT that selects masked columns as they are, beside others, ordered and filtered by
/// columns without rules: the shape that passes with masks.
fn masked_select() -> BoxedStrategy<String> {
    let item = prop_oneof![
        Just("email"),
        Just("p.phone"),
        Just("p.email AS contact"),
        Just("id"),
        Just("name"),
        Just("t.title"),
    ];
    let filter = prop_oneof![Just(""), Just(" WHERE p.id > 1"), Just(" WHERE t.title = 'Ops'")];
    // Orderings, groupings and DISTINCT by position or alias, which must not pass on a
    // masked column.
    let order = prop_oneof![
        3 => Just(""),
        2 => Just(" ORDER BY p.id DESC"),
        1 => Just(" ORDER BY name"),
        1 => Just(" ORDER BY 1"),
        1 => Just(" ORDER BY 2 DESC"),
        1 => Just(" ORDER BY contact"),
        1 => Just(" GROUP BY 1"),
    ];
    let distinct = prop_oneof![4 => Just(""), 1 => Just("DISTINCT ")];
    (prop::collection::vec(item, 1..4), distinct, filter, order)
        .prop_map(|(items, distinct, filter, order)| {
            format!("SELECT {distinct}{} FROM people p JOIN teams t ON t.id = p.team{filter}{order}", items.join(", "))
        })
        .boxed()
}

fn query() -> impl Strategy<Value = String> {
    (select(), select(), masked_select(), 0..8usize).prop_map(|(first, second, masked, wrap)| match wrap {
        0..=2 => first,
        3 => masked,
        4 => format!("WITH w AS ({first}) SELECT * FROM w"),
        5 => format!("{first} UNION ALL {second}"),
        6 => format!("{masked} UNION ALL {second}"),
        _ => format!("SELECT * FROM ({first}) z"),
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 3000, ..ProptestConfig::default() })]

    #[test]
    fn no_accepted_query_depends_on_a_ruled_value(sql in query()) {
        let (first, second) = (database(FIRST), database(SECOND));
        if let Ok(accepted) = validator().validate(&sql, 0) {
            let masked: Vec<usize> = accepted.masks().iter().map(|(position, _)| *position).collect();
            let one = run(&first, accepted.sql(), &masked);
            let other = run(&second, accepted.sql(), &masked);
            prop_assert_eq!(one, other, "{} ran as {} with masks at {:?}", sql, accepted.sql(), masked);
        }
    }
}

/// The generator reaches both sides: queries the gate accepts and runs, and queries it refuses
/// for the rules.
#[test]
fn the_generated_queries_are_accepted_and_refused_alike() {
    use proptest::strategy::ValueTree;
    let mut runner = proptest::test_runner::TestRunner::deterministic();
    let (mut accepted, mut masked, mut refused) = (0, 0, 0);
    for _ in 0..2000 {
        let sql = query().new_tree(&mut runner).expect("a query").current();
        match validator().validate(&sql, 0) {
            Ok(query) if query.masks().is_empty() => accepted += 1,
            Ok(_) => masked += 1,
            Err(denial) if denial.code() == sqlwarden::DenialCode::ColumnDenied => refused += 1,
            Err(_) => {}
        }
    }
    assert!(
        accepted >= 100 && masked >= 20 && refused >= 500,
        "accepted {accepted}, masked {masked}, refused {refused}"
    );
}
