//! A read's plan on SQLite: `EXPLAIN QUERY PLAN`, and the row estimate SQLite's planner does
//! not give.

use super::*;

/// A read's plan, the read not being run: `EXPLAIN QUERY PLAN`'s steps. SQLite's planner gives
/// no row estimates, so the estimate is the row count of the largest table the query reads,
/// raised to the number of steps that go through a table's rows (see [`QueryPlan::rows`]);
/// counted only when some step does.
pub(super) fn plan(
    connection: &Connection,
    sql: &str,
    params: &[SqlValue],
    tables: &[TableName],
) -> Result<QueryPlan, AdapterError> {
    let mut statement = connection.prepare(&format!("EXPLAIN QUERY PLAN {sql}")).map_err(|error| classify(&error))?;
    if statement.parameter_count() != params.len() {
        return Err(AdapterError::invalid("the query's placeholders do not match the parameters given"));
    }
    bind(&mut statement, params).map_err(|error| classify(&error))?;
    let mut steps = Vec::new();
    let mut details = Vec::new();
    let mut cursor = statement.raw_query();
    while let Some(row) = cursor.next().map_err(|error| classify(&error))? {
        let id: i64 = row.get(0).map_err(|error| classify(&error))?;
        let parent: i64 = row.get(1).map_err(|error| classify(&error))?;
        let detail: String = row.get(3).map_err(|error| classify(&error))?;
        steps.push(serde_json::json!({"id": id, "parent": parent, "detail": detail}));
        details.push(detail);
    }
    let scans = sqlite_scans(&details);
    let rows = if scans == 0 {
        1.0
    } else {
        let mut largest = 0_i64;
        for table in tables {
            let count = format!(
                "SELECT count(*) FROM \"{}\".\"{}\"",
                table.schema.replace('"', "\"\""),
                table.table.replace('"', "\"\"")
            );
            let rows: i64 = connection.query_row(&count, [], |row| row.get(0)).map_err(|error| classify(&error))?;
            largest = largest.max(rows);
        }
        (largest.max(1) as f64).powi(scans)
    };
    Ok(QueryPlan { plan: serde_json::Value::Array(steps), cost: None, rows: Some(rows) })
}
