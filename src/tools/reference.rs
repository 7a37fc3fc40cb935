//! The reference tools: `list_tables`, `describe_table`, `query_read` and `explain_query`, over any
//! [`Adapter`]. They go through the boundary like every other tool.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::{Tool, ToolError, ToolOutput};
use crate::adapter::{
    Adapter, JsonRows, PlanLimit, QueryPlan, QueryResult, ReadOptions, ResultColumn, SqlValue, TableDescription,
    TableSummary,
};
use crate::audit::ReadFacts;
use crate::denial::{Denial, DenialCode};
use crate::evidence::{Evidence, Read};
use crate::policy::Egress;
use crate::sql::{MaskKey, SqlValidator, ValidatedQuery};

/// Defaults and hard caps for `query_read`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReadLimits {
    /// Rows returned when the call names no limit.
    pub default_rows: usize,
    /// The most rows a call may ask for; larger requests are capped.
    pub max_rows: usize,
    /// Time limit when the call names none.
    pub default_timeout: Duration,
    /// The longest time limit a call may ask for; longer requests are capped.
    pub max_timeout: Duration,
    /// The most bytes of JSON rows one result may hold; a larger result is refused.
    pub max_result_bytes: usize,
    /// The plan guard (`[limits] max_plan_cost`, `max_plan_rows`): off unless set.
    pub plan_limit: PlanLimit,
}

impl ReadLimits {
    /// A call's time limit: `timeout_ms` as asked, capped at `max_timeout`, or the default.
    fn time_limit(&self, timeout_ms: Option<u64>) -> Result<Duration, Denial> {
        match timeout_ms {
            None => Ok(self.default_timeout),
            Some(0) => Err(invalid("timeout_ms must be at least 1")),
            Some(ms) => Ok(Duration::from_millis(ms).min(self.max_timeout)),
        }
    }
}

impl Default for ReadLimits {
    fn default() -> Self {
        ReadLimits {
            default_rows: 100,
            max_rows: 1000,
            default_timeout: Duration::from_millis(5000),
            max_timeout: Duration::from_millis(30_000),
            max_result_bytes: 8_000_000,
            plan_limit: PlanLimit::default(),
        }
    }
}

/// `query_read {query, params?, limit?, timeout_ms?}`: runs one validated read-only query.
pub struct QueryRead {
    adapter: Arc<dyn Adapter>,
    validator: SqlValidator,
    limits: ReadLimits,
    /// The key of the `hash` column mask; `None` only if no randomness could be had for one,
    /// and then a result with masked columns is refused.
    mask_key: Option<MaskKey>,
}

impl QueryRead {
    /// A `query_read` over `adapter`, validating with `validator` (which must be for the
    /// adapter's dialect and the same allow-list).
    /// Masked columns are hashed with a random key until [`QueryRead::with_mask_key`] gives one.
    pub fn new(adapter: Arc<dyn Adapter>, validator: SqlValidator, limits: ReadLimits) -> Self {
        QueryRead { adapter, validator, limits, mask_key: MaskKey::random().ok() }
    }

    /// Hashes masked columns with `key`, so that their hashes are stable across restarts and
    /// replicas that share it.
    #[must_use]
    pub fn with_mask_key(mut self, key: MaskKey) -> Self {
        self.mask_key = Some(key);
        self
    }

    /// The rows a call with these (unvalidated) arguments may return: its `limit`, capped, or
    /// the default.
    fn rows_asked(&self, args: &Value) -> usize {
        match args.get("limit").and_then(Value::as_u64) {
            Some(limit) if limit > 0 => usize::try_from(limit).unwrap_or(usize::MAX).min(self.limits.max_rows),
            _ => self.limits.default_rows,
        }
    }
}

/// The input of `query_read`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QueryReadInput {
    /// One SQL query.
    pub query: String,
    /// Values for the placeholders, in order.
    #[serde(default)]
    pub params: Vec<Value>,
    /// The most rows to return.
    pub limit: Option<u64>,
    /// The time limit in milliseconds.
    pub timeout_ms: Option<u64>,
}

/// The output of `query_read`.
#[derive(Debug, Serialize)]
pub struct QueryReadOutput {
    /// The result's columns.
    pub columns: Vec<ResultColumn>,
    /// The rows, as arrays in column order.
    pub rows: JsonRows,
    /// How many rows are returned.
    pub row_count: usize,
    /// Whether the query had more rows than returned.
    pub truncated: bool,
    /// Why, when it was cut short by what is left of an egress budget rather than by the limit.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub truncated_by: Option<Truncation>,
    /// How long the database took, in milliseconds.
    pub elapsed_ms: u64,
}

/// Which egress budget cut a result short.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Truncation {
    /// What was left of `[quotas] rows_per_hour`.
    #[serde(rename = "rows_per_hour")]
    RowsPerHour,
    /// What was left of `[quotas] bytes_per_hour`.
    #[serde(rename = "bytes_per_hour")]
    BytesPerHour,
}

impl Truncation {
    fn as_str(self) -> &'static str {
        match self {
            Truncation::RowsPerHour => "rows_per_hour",
            Truncation::BytesPerHour => "bytes_per_hour",
        }
    }
}

impl Tool for QueryRead {
    type Access = Read;
    type Input = QueryReadInput;
    type Output = QueryReadOutput;

    fn name(&self) -> &str {
        "query_read"
    }

    /// The rows are JSON text already: they are copied in, not serialized again.
    fn output_json(output: QueryReadOutput) -> Result<ToolOutput, ToolError> {
        let QueryReadOutput { columns, rows, row_count, truncated, truncated_by, elapsed_ms } = output;
        let columns = serde_json::to_string(&columns).map_err(ToolError::internal)?;
        let mut text = String::with_capacity(columns.len() + rows.as_json().len() + 80);
        text.push_str("{\"columns\":");
        text.push_str(&columns);
        text.push_str(",\"rows\":");
        text.push_str(rows.as_json());
        text.push_str(",\"row_count\":");
        text.push_str(itoa::Buffer::new().format(row_count));
        text.push_str(",\"truncated\":");
        text.push_str(if truncated { "true" } else { "false" });
        if let Some(by) = truncated_by {
            text.push_str(",\"truncated_by\":\"");
            text.push_str(by.as_str());
            text.push('"');
        }
        text.push_str(",\"elapsed_ms\":");
        text.push_str(itoa::Buffer::new().format(elapsed_ms));
        text.push('}');
        Ok(ToolOutput::written(text).with_rows())
    }

    fn description(&self) -> &str {
        "Runs one read-only SQL query on allow-listed tables and returns its rows. Use placeholders \
         for values and pass them in params."
    }

    fn input_schema(&self) -> serde_json::Map<String, Value> {
        let millis = |duration: Duration| u64::try_from(duration.as_millis()).unwrap_or(u64::MAX);
        object_schema(
            json!({
                "query": {
                    "type": "string",
                    "maxLength": SqlValidator::MAX_QUERY_BYTES,
                    "description": format!("One SELECT, VALUES or set operation in the {} dialect; \
                        placeholders are {}", self.validator.dialect(), match self.validator.dialect() {
                            crate::sql::SqlDialect::Postgres => "$1, $2, …",
                            _ => "?",
                        }),
                },
                "params": {
                    "type": "array",
                    "items": {"type": ["string", "number", "boolean", "null"]},
                    "description": "Values for the placeholders, in order",
                },
                "limit": {
                    "type": "integer", "minimum": 1, "maximum": self.limits.max_rows,
                    "default": self.limits.default_rows,
                    "description": "The most rows to return; larger values are capped",
                },
                "timeout_ms": {
                    "type": "integer", "minimum": 1, "maximum": millis(self.limits.max_timeout),
                    "default": millis(self.limits.default_timeout),
                    "description": "The time limit in milliseconds; larger values are capped",
                },
            }),
            &["query"],
        )
    }

    /// One unit per 100 rows the call may return (rounded up): a call for 1,000 rows costs 10.
    fn cost(&self, args: &Value) -> u32 {
        u32::try_from(self.rows_asked(args).div_ceil(100)).unwrap_or(u32::MAX)
    }

    fn egress(&self, args: &Value) -> Option<Egress> {
        let rows = u64::try_from(self.rows_asked(args)).unwrap_or(u64::MAX);
        Some(Egress { rows, bytes: u64::try_from(self.limits.max_result_bytes).unwrap_or(u64::MAX) })
    }

    async fn call(&self, evidence: Evidence<'_, Read>, input: QueryReadInput) -> Result<QueryReadOutput, ToolError> {
        let asked = match input.limit {
            None => self.limits.default_rows,
            Some(0) => return Err(invalid("limit must be at least 1").into()),
            Some(limit) => usize::try_from(limit).unwrap_or(usize::MAX).min(self.limits.max_rows),
        };
        let timeout = self.limits.time_limit(input.timeout_ms)?;
        let params = input.params.iter().enumerate().map(param).collect::<Result<Vec<_>, _>>()?;
        let query = self.validator.validate(&input.query, params.len())?;
        let read = Reading { adapter: &*self.adapter, limits: &self.limits, mask_key: self.mask_key.as_ref() };
        read.run(evidence, &query, &params, asked, timeout).await
    }
}

/// One read of a validated query, as `query_read` and the read tools declared in the
/// configuration run it: within the egress allowance, the row limit, the time limit and the
/// byte cap, masked columns masked, and the audit told what ran and what it returned.
pub(crate) struct Reading<'a> {
    pub(crate) adapter: &'a dyn Adapter,
    pub(crate) limits: &'a ReadLimits,
    /// `None`: a result with masked columns is refused.
    pub(crate) mask_key: Option<&'a MaskKey>,
}

impl Reading<'_> {
    /// Runs `query` with `params`, returning at most `asked` rows (fewer if the egress
    /// allowance is lower).
    pub(crate) async fn run(
        &self,
        evidence: Evidence<'_, Read>,
        query: &ValidatedQuery,
        params: &[SqlValue],
        asked: usize,
        timeout: Duration,
    ) -> Result<QueryReadOutput, ToolError> {
        // No call returns more than what is left of the egress budgets.
        let allowance = evidence.allowance();
        let to_usize = |left: u64| usize::try_from(left).unwrap_or(usize::MAX);
        let limit = allowance.rows.map_or(asked, |left| asked.min(to_usize(left)));
        let options = ReadOptions {
            limit,
            timeout,
            max_bytes: self.limits.max_result_bytes,
            budget_bytes: allowance.bytes.map(to_usize).filter(|left| *left < self.limits.max_result_bytes),
            plan_limit: self.limits.plan_limit,
        };
        let started = Instant::now();
        // The audit's execute record names the query's shape and what it returned.
        let admitted = evidence.admitted();
        note_query(admitted, query);
        let QueryResult { columns, rows, truncated } =
            self.adapter.query_read(evidence, query, params, options).await?;
        // Masked columns' values leave masked, and within the byte cap and budget all the same.
        let (rows, truncated) = if query.masks().is_empty() {
            (rows, truncated)
        } else {
            let key = self.mask_key.ok_or_else(|| ToolError::internal("no key for the hash mask"))?;
            let (rows, cut) = rows.masked(query.masks(), key, options.budget_bytes).map_err(ToolError::internal)?;
            if rows.as_json().len() > self.limits.max_result_bytes {
                return Err(Denial::new(
                    DenialCode::ResultTooLarge,
                    format!(
                        "the result exceeds {} bytes once masked; select fewer columns or rows",
                        self.limits.max_result_bytes
                    ),
                )
                .into());
            }
            (rows, truncated || cut)
        };
        admitted.note_read(|read| {
            if let Some(read) = read {
                read.rows = rows.len() as u64;
                read.bytes = rows.as_json().len() as u64;
                read.truncated = truncated;
            }
        });
        let elapsed_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
        // Cut short before the limit: only the byte budget does that (the byte cap refuses).
        let truncated_by = match truncated {
            false => None,
            true if rows.len() < limit => Some(Truncation::BytesPerHour),
            true if limit < asked => Some(Truncation::RowsPerHour),
            true => None,
        };
        Ok(QueryReadOutput { columns, row_count: rows.len(), rows, truncated, truncated_by, elapsed_ms })
    }
}

/// `explain_query {query, params?, timeout_ms?}`: the plan of a query `query_read` would run,
/// the query never being run.
pub struct ExplainQuery {
    adapter: Arc<dyn Adapter>,
    validator: SqlValidator,
    limits: ReadLimits,
}

impl ExplainQuery {
    /// An `explain_query` over `adapter`, validating with `validator` as `query_read` does.
    pub fn new(adapter: Arc<dyn Adapter>, validator: SqlValidator, limits: ReadLimits) -> Self {
        ExplainQuery { adapter, validator, limits }
    }
}

/// The input of `explain_query`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExplainQueryInput {
    /// One SQL query, as `query_read` takes it.
    pub query: String,
    /// Values for the placeholders, in order.
    #[serde(default)]
    pub params: Vec<Value>,
    /// The time limit in milliseconds.
    pub timeout_ms: Option<u64>,
}

impl Tool for ExplainQuery {
    type Access = Read;
    type Input = ExplainQueryInput;
    type Output = QueryPlan;

    fn name(&self) -> &str {
        "explain_query"
    }

    fn description(&self) -> &str {
        "Returns the database's plan for one read-only SQL query, without running it: how it would \
         read the tables, and its estimated cost and rows. The query must be one query_read accepts."
    }

    fn input_schema(&self) -> serde_json::Map<String, Value> {
        let millis = |duration: Duration| u64::try_from(duration.as_millis()).unwrap_or(u64::MAX);
        object_schema(
            json!({
                "query": {"type": "string", "maxLength": SqlValidator::MAX_QUERY_BYTES,
                          "description": "One query, as query_read takes it"},
                "params": {"type": "array", "items": {"type": ["string", "number", "boolean", "null"]},
                           "description": "Values for the placeholders, in order"},
                "timeout_ms": {"type": "integer", "minimum": 1, "maximum": millis(self.limits.max_timeout),
                               "default": millis(self.limits.default_timeout),
                               "description": "The time limit in milliseconds; larger values are capped"},
            }),
            &["query"],
        )
    }

    async fn call(&self, evidence: Evidence<'_, Read>, input: ExplainQueryInput) -> Result<QueryPlan, ToolError> {
        let timeout = self.limits.time_limit(input.timeout_ms)?;
        let params = input.params.iter().enumerate().map(param).collect::<Result<Vec<_>, _>>()?;
        let query = self.validator.validate(&input.query, params.len())?;
        note_query(evidence.admitted(), &query);
        let options = ReadOptions {
            limit: 1,
            timeout,
            max_bytes: self.limits.max_result_bytes,
            budget_bytes: None,
            plan_limit: PlanLimit::default(),
        };
        Ok(self.adapter.explain(evidence, &query, &params, options).await?)
    }
}

/// Notes a read's query on its call, for the audit's execute record: its shape and tables.
fn note_query(call: &crate::evidence::AdmittedCall, query: &ValidatedQuery) {
    call.note_read(|read| {
        *read = Some(ReadFacts {
            fingerprint: query.fingerprint().to_owned(),
            tables: query.tables().iter().map(ToString::to_string).collect(),
            rows: 0,
            bytes: 0,
            truncated: false,
        });
    });
}

/// One JSON parameter as a statement parameter.
fn param((index, value): (usize, &Value)) -> Result<SqlValue, Denial> {
    Ok(match value {
        Value::Null => SqlValue::Null,
        Value::Bool(value) => SqlValue::Bool(*value),
        Value::Number(number) => match (number.as_i64(), number.as_f64()) {
            (Some(integer), _) => SqlValue::Int(integer),
            // Integers beyond i64 go as their digits, for the database to parse exactly.
            (None, _) if number.is_u64() => SqlValue::Text(number.to_string()),
            (None, Some(float)) => SqlValue::Float(float),
            (None, None) => SqlValue::Text(number.to_string()),
        },
        Value::String(text) => SqlValue::Text(text.clone()),
        Value::Array(_) | Value::Object(_) => {
            return Err(invalid(format!(
                "parameter {} is a JSON array or object; pass it as a string (for example JSON text)",
                index + 1
            )));
        }
    })
}

/// `list_tables {schema?}`: the allow-listed tables.
pub struct ListTables {
    adapter: Arc<dyn Adapter>,
}

impl ListTables {
    /// A `list_tables` over `adapter`.
    pub fn new(adapter: Arc<dyn Adapter>) -> Self {
        ListTables { adapter }
    }
}

/// The input of `list_tables`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListTablesInput {
    /// Only this schema.
    pub schema: Option<String>,
}

/// The output of `list_tables`.
#[derive(Debug, Serialize)]
pub struct ListTablesOutput {
    /// The tables, by schema and name.
    pub tables: Vec<TableSummary>,
}

impl Tool for ListTables {
    type Access = Read;
    type Input = ListTablesInput;
    type Output = ListTablesOutput;

    fn name(&self) -> &str {
        "list_tables"
    }

    fn description(&self) -> &str {
        "Lists the tables and views this session may read."
    }

    fn input_schema(&self) -> serde_json::Map<String, Value> {
        object_schema(json!({"schema": {"type": "string", "description": "Only this schema"}}), &[])
    }

    async fn call(&self, evidence: Evidence<'_, Read>, input: ListTablesInput) -> Result<ListTablesOutput, ToolError> {
        let tables = self.adapter.list_tables(evidence, input.schema.as_deref()).await?;
        Ok(ListTablesOutput { tables })
    }
}

/// `describe_table {schema?, table}`: one allow-listed table's columns, keys and indexes.
pub struct DescribeTable {
    adapter: Arc<dyn Adapter>,
}

impl DescribeTable {
    /// A `describe_table` over `adapter`.
    pub fn new(adapter: Arc<dyn Adapter>) -> Self {
        DescribeTable { adapter }
    }
}

/// The input of `describe_table`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DescribeTableInput {
    /// The schema; the configured default when absent.
    pub schema: Option<String>,
    /// The table.
    pub table: String,
}

impl Tool for DescribeTable {
    type Access = Read;
    type Input = DescribeTableInput;
    type Output = TableDescription;

    fn name(&self) -> &str {
        "describe_table"
    }

    fn description(&self) -> &str {
        "Describes one table: columns with types, nullability, defaults and comments; primary key; \
         foreign keys; indexes."
    }

    fn input_schema(&self) -> serde_json::Map<String, Value> {
        object_schema(
            json!({
                "schema": {"type": "string", "description": "The schema; the configured default when absent"},
                "table": {"type": "string", "description": "The table"},
            }),
            &["table"],
        )
    }

    async fn call(
        &self,
        evidence: Evidence<'_, Read>,
        input: DescribeTableInput,
    ) -> Result<TableDescription, ToolError> {
        Ok(self.adapter.describe_table(evidence, input.schema.as_deref(), &input.table).await?)
    }
}

/// An object schema with these properties, these required, and no others.
fn object_schema(properties: Value, required: &[&str]) -> serde_json::Map<String, Value> {
    let mut schema = serde_json::Map::new();
    schema.insert("type".into(), json!("object"));
    schema.insert("properties".into(), properties);
    if !required.is_empty() {
        schema.insert("required".into(), json!(required));
    }
    schema.insert("additionalProperties".into(), json!(false));
    schema
}

fn invalid(message: impl Into<std::borrow::Cow<'static, str>>) -> Denial {
    Denial::new(DenialCode::InvalidInput, message)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_output_is_the_json_it_serializes_to() {
        let output = || QueryReadOutput {
            columns: vec![ResultColumn { name: "a".into(), data_type: "int4".into() }],
            rows: JsonRows::from_values(&[vec![json!(1), json!("x")], vec![Value::Null, json!({"k": [1.5, null]})]]),
            row_count: 2,
            truncated: true,
            truncated_by: Some(Truncation::RowsPerHour),
            elapsed_ms: 7,
        };
        let written = QueryRead::output_json(output()).expect("json");
        let serialized = ToolOutput::of(&output()).expect("serializes");
        assert_eq!(written.as_json(), serialized.as_json(), "the same text, keys in the same order");
        assert_eq!(
            written.to_value().expect("parses"),
            json!({"columns": [{"name": "a", "type": "int4"}], "rows": [[1, "x"], [null, {"k": [1.5, null]}]],
                   "row_count": 2, "truncated": true, "truncated_by": "rows_per_hour", "elapsed_ms": 7})
        );
    }

    #[test]
    fn json_parameters_map_to_statement_parameters() {
        let values = [json!(null), json!(true), json!(-7), json!(1.5), json!("x"), json!(u64::MAX)];
        let mapped: Vec<SqlValue> = values.iter().enumerate().map(param).collect::<Result<_, _>>().expect("mapped");
        assert_eq!(
            mapped,
            [
                SqlValue::Null,
                SqlValue::Bool(true),
                SqlValue::Int(-7),
                SqlValue::Float(1.5),
                SqlValue::Text("x".into()),
                SqlValue::Text(u64::MAX.to_string()),
            ]
        );
        let denial = param((2, &json!({"a": 1}))).expect_err("objects are refused");
        assert_eq!(denial.code(), DenialCode::InvalidInput);
        assert!(denial.message().starts_with("parameter 3 is"), "{}", denial.message());
        assert!(param((0, &json!([1]))).is_err());
    }
}
