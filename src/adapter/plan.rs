//! Query plans: what a database says a read would do, without running it (`explain_query`),
//! and the guard that refuses a read whose plan is estimated over `[limits] max_plan_cost` or
//! `max_plan_rows` before it runs.

use serde::Serialize;
use serde_json::Value;

use super::{AdapterError, AdapterErrorKind};

/// What a query's plan says, the query not having run.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct QueryPlan {
    /// The plan as the database gives it: PostgreSQL's and MySQL's `EXPLAIN` JSON; SQLite's
    /// `EXPLAIN QUERY PLAN` steps, each `{"id", "parent", "detail"}`.
    pub plan: Value,
    /// The planner's estimated total cost, where it gives one (PostgreSQL, MySQL 8), in the
    /// planner's own units.
    pub cost: Option<f64>,
    /// The most rows the plan is estimated to go through: PostgreSQL's largest row estimate of
    /// any step; MySQL's largest product of the row estimates of the tables one nested loop
    /// joins; on SQLite, whose planner gives no estimates, the row count of the largest table
    /// the query reads, once for each step that scans (a full scan, or a search over a range),
    /// multiplied.
    pub rows: Option<f64>,
}

/// `[limits] max_plan_cost` and `max_plan_rows`: a read whose plan is estimated over either is
/// refused with `TOO_EXPENSIVE` before it runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PlanLimit {
    /// The highest estimated cost (PostgreSQL's units) a read may have.
    pub max_cost: Option<u64>,
    /// The most rows a read's plan may be estimated to go through.
    pub max_rows: Option<u64>,
}

impl PlanLimit {
    /// Whether a read's plan must be checked before it runs.
    pub fn is_set(&self) -> bool {
        self.max_cost.is_some() || self.max_rows.is_some()
    }

    /// Refuses a plan estimated over the limit; a plan that gives no estimate for a limit that
    /// is set is refused too (fail closed).
    pub fn check(&self, plan: &QueryPlan) -> Result<(), AdapterError> {
        let over = |what: &str, estimate: Option<f64>, limit: u64, key: &str| match estimate {
            Some(estimate) if estimate.is_finite() && estimate <= limit as f64 => Ok(()),
            Some(estimate) => Err(too_expensive(format!(
                "the query's plan is estimated at {estimate:.0} {what}, above [limits] {key} ({limit}); \
                 narrow it (a WHERE on an indexed column, fewer joins) and try again"
            ))),
            None => Err(too_expensive(format!("the query's plan gives no {what} estimate to hold to [limits] {key}"))),
        };
        if let Some(limit) = self.max_cost {
            over("cost", plan.cost, limit, "max_plan_cost")?;
        }
        if let Some(limit) = self.max_rows {
            over("rows", plan.rows, limit, "max_plan_rows")?;
        }
        Ok(())
    }
}

fn too_expensive(message: String) -> AdapterError {
    AdapterError::of_kind(AdapterErrorKind::TooExpensive).with_message(message)
}

/// A number, or a string holding one (MySQL writes some estimates as strings).
fn number(value: &Value) -> Option<f64> {
    value.as_f64().or_else(|| value.as_str()?.parse().ok())
}

/// PostgreSQL's `EXPLAIN (FORMAT JSON)`: the top node's total cost, and the largest row
/// estimate of any node.
pub(crate) fn postgres_estimates(plan: &Value) -> (Option<f64>, Option<f64>) {
    fn largest_rows(value: &Value, largest: &mut Option<f64>) {
        match value {
            Value::Object(object) => {
                if let Some(rows) = object.get("Plan Rows").and_then(number) {
                    *largest = Some(largest.map_or(rows, |known| known.max(rows)));
                }
                object.values().for_each(|value| largest_rows(value, largest));
            }
            Value::Array(values) => values.iter().for_each(|value| largest_rows(value, largest)),
            _ => {}
        }
    }
    let cost = plan.get(0).and_then(|top| top.get("Plan")).and_then(|node| node.get("Total Cost")).and_then(number);
    let mut rows = None;
    largest_rows(plan, &mut rows);
    (cost, rows)
}

/// MySQL's and MariaDB's `EXPLAIN FORMAT=JSON`: the query's cost where it is given (MySQL 8's
/// `cost_info.query_cost`, MariaDB 11's `cost`), and the largest product of the row estimates
/// of the tables of one nested loop (or of one table alone).
pub(crate) fn mysql_estimates(plan: &Value) -> (Option<f64>, Option<f64>) {
    fn table_rows(table: &Value) -> Option<f64> {
        ["rows_examined_per_scan", "rows"].iter().find_map(|key| table.get(*key).and_then(number))
    }
    fn walk(value: &Value, largest: &mut Option<f64>) {
        let mut note = |rows: f64| *largest = Some(largest.map_or(rows, |known| known.max(rows)));
        match value {
            Value::Object(object) => {
                if let Some(rows) = object.get("table").and_then(table_rows) {
                    note(rows);
                }
                if let Some(Value::Array(steps)) = object.get("nested_loop") {
                    let product = steps
                        .iter()
                        .filter_map(|step| {
                            // MariaDB wraps a table joined by a join buffer: `{"block-nl-join": {"table": …}}`.
                            let table = step
                                .get("table")
                                .or_else(|| step.as_object()?.values().find_map(|wrapper| wrapper.get("table")));
                            table.and_then(table_rows)
                        })
                        .fold(1.0_f64, |product, rows| product * rows.max(1.0));
                    note(product);
                }
                object.values().for_each(|value| walk(value, largest));
            }
            Value::Array(values) => values.iter().for_each(|value| walk(value, largest)),
            _ => {}
        }
    }
    let block = plan.get("query_block");
    let cost = block.and_then(|block| {
        block
            .get("cost_info")
            .and_then(|info| info.get("query_cost"))
            .and_then(number)
            .or_else(|| block.get("cost").and_then(number))
    });
    let mut rows = None;
    walk(plan, &mut rows);
    (cost, rows)
}

/// SQLite's `EXPLAIN QUERY PLAN` steps: how many of them go through a table's rows (a `SCAN`
/// other than of a constant row, or a `SEARCH` over a range); each counts as the largest table.
pub(crate) fn sqlite_scans(details: &[String]) -> i32 {
    let scans = details.iter().filter(|detail| {
        if detail.starts_with("SCAN ") {
            detail.as_str() != "SCAN CONSTANT ROW"
        } else if detail.starts_with("SEARCH ") {
            detail.contains('<') || detail.contains('>')
        } else {
            false
        }
    });
    i32::try_from(scans.count()).unwrap_or(i32::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn estimates_are_read_from_each_engines_plan() {
        let postgres = json!([{"Plan": {"Node Type": "Nested Loop", "Total Cost": 1234.5, "Plan Rows": 10,
            "Plans": [{"Plan Rows": 100000, "Total Cost": 5.0}, {"Plan Rows": 3}]}}]);
        assert_eq!(postgres_estimates(&postgres), (Some(1234.5), Some(100000.0)));
        let mysql = json!({"query_block": {"cost_info": {"query_cost": "20.50"}, "nested_loop": [
            {"table": {"table_name": "a", "rows_examined_per_scan": 100}},
            {"table": {"table_name": "b", "rows_examined_per_scan": 30}}]}});
        assert_eq!(mysql_estimates(&mysql), (Some(20.5), Some(3000.0)));
        let buffered = json!({"query_block": {"nested_loop": [{"table": {"rows": 1000}},
            {"block-nl-join": {"table": {"rows": 200}, "buffer_type": "flat"}}]}});
        assert_eq!(mysql_estimates(&buffered), (None, Some(200_000.0)));
        let mariadb = json!({"query_block": {"select_id": 1, "table": {"table_name": "t", "rows": 42}}});
        assert_eq!(mysql_estimates(&mariadb), (None, Some(42.0)));
        let details = [
            "SCAN o",
            "SEARCH n USING INTEGER PRIMARY KEY (rowid=?)",
            "SEARCH t USING INDEX i (a>?)",
            "SCAN CONSTANT ROW",
            "USE TEMP B-TREE FOR ORDER BY",
        ]
        .map(str::to_owned);
        assert_eq!(sqlite_scans(&details), 2);
    }

    #[test]
    fn a_plan_over_a_limit_or_without_its_estimate_is_refused() {
        let plan = QueryPlan { plan: Value::Null, cost: Some(100.0), rows: Some(1000.0) };
        assert!(PlanLimit::default().check(&plan).is_ok() && !PlanLimit::default().is_set());
        assert!(PlanLimit { max_cost: Some(100), max_rows: Some(1000) }.check(&plan).is_ok(), "inclusive");
        for limit in
            [PlanLimit { max_cost: Some(99), max_rows: None }, PlanLimit { max_cost: None, max_rows: Some(999) }]
        {
            let refused = limit.check(&plan).expect_err("over");
            assert_eq!(refused.denial().code(), crate::denial::DenialCode::TooExpensive);
        }
        let blind = QueryPlan { cost: None, ..plan };
        assert!(PlanLimit { max_cost: Some(1_000_000), max_rows: None }.check(&blind).is_err(), "fail closed");
        let infinite = QueryPlan { plan: Value::Null, cost: None, rows: Some(f64::INFINITY) };
        assert!(PlanLimit { max_cost: None, max_rows: Some(u64::MAX) }.check(&infinite).is_err());
    }
}
