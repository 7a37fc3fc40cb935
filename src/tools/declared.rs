//! Tools declared in the configuration (`[[tools]]`): a fixed statement, checked by the SQL
//! gate when the configuration is read, with typed params.
//!
//! A declared tool is an ordinary tool: it goes through the boundary like every other (session,
//! mode, grant, quota, audit). A read tool runs its query as `query_read` runs one (row limit,
//! time limit, byte cap, egress budgets, column masks, untrusted-data framing); a write tool
//! runs its statement in the write framework's transaction, which rolls back when it affects
//! more than `max_affected_rows` rows or fails.
//!
//! Params are only ever bound to the statement's placeholders, never spliced into its text.
//! Each is checked against its declared type and bounds before the database sees it. A param
//! bound to a claim (`from_claim`) is not in the tool's input schema: its value is the caller's
//! `identity`, `tenant` or other named claim, and a call that gives it is refused.

use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use serde_json::{Map, Number, Value};

use super::reference::{QueryReadOutput, ReadLimits, Reading};
use super::write::{Transactional, WriteTx, run};
use super::{Tool, ToolError, ToolOutput};
use crate::adapter::{Adapter, SqlValue};
use crate::denial::{Denial, DenialCode};
use crate::evidence::{Evidence, Read, Write};
use crate::policy::{Egress, SessionContext};
use crate::sql::{MaskKey, SqlDialect, ValidatedQuery, ValidatedWrite};

/// The type of a declared param.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ParamType {
    /// Text.
    String,
    /// A whole number (64-bit).
    Integer,
    /// A number.
    Number,
    /// `true` or `false`.
    Boolean,
    /// A calendar date, `YYYY-MM-DD`.
    Date,
    /// An RFC 3339 date and time with its offset (`2026-01-31T09:30:00Z`); bound in UTC.
    Timestamp,
    /// A UUID.
    Uuid,
}

impl ParamType {
    /// The type a config names: `string`, `integer`, `number`, `boolean`, `date`, `timestamp`
    /// or `uuid`.
    pub fn named(name: &str) -> Option<ParamType> {
        Some(match name {
            "string" => ParamType::String,
            "integer" => ParamType::Integer,
            "number" => ParamType::Number,
            "boolean" => ParamType::Boolean,
            "date" => ParamType::Date,
            "timestamp" => ParamType::Timestamp,
            "uuid" => ParamType::Uuid,
            _ => return None,
        })
    }

    /// Its name in the configuration.
    pub fn name(self) -> &'static str {
        match self {
            ParamType::String => "string",
            ParamType::Integer => "integer",
            ParamType::Number => "number",
            ParamType::Boolean => "boolean",
            ParamType::Date => "date",
            ParamType::Timestamp => "timestamp",
            ParamType::Uuid => "uuid",
        }
    }

    /// Whether `min` and `max` apply.
    pub fn is_numeric(self) -> bool {
        matches!(self, ParamType::Integer | ParamType::Number)
    }

    /// The JSON Schema of a value of this type, without its bounds.
    fn schema(self) -> Map<String, Value> {
        let (kind, format) = match self {
            ParamType::String => ("string", None),
            ParamType::Integer => ("integer", None),
            ParamType::Number => ("number", None),
            ParamType::Boolean => ("boolean", None),
            ParamType::Date => ("string", Some("date")),
            ParamType::Timestamp => ("string", Some("date-time")),
            ParamType::Uuid => ("string", Some("uuid")),
        };
        let mut schema = Map::new();
        schema.insert("type".into(), kind.into());
        if let Some(format) = format {
            schema.insert("format".into(), format.into());
        }
        schema
    }
}

/// One declared param: its type, its bounds, and where its value comes from.
#[derive(Debug, Clone)]
pub struct ParamSpec {
    /// Its name in the tool's input.
    pub name: String,
    /// Its type.
    pub kind: ParamType,
    /// What it means, for the model.
    pub description: String,
    /// The least value (`integer`, `number`).
    pub min: Option<Number>,
    /// The greatest value (`integer`, `number`).
    pub max: Option<Number>,
    /// The most characters (`string`).
    pub max_length: Option<usize>,
    /// A regular expression the value must match somewhere, as JSON Schema's `pattern` does
    /// (anchor it with `^…$` to match the whole value) (`string`).
    pub pattern: Option<regex::Regex>,
    /// The only values taken, if any.
    pub choices: Vec<Value>,
    /// The value when the call gives none; without one the param is required.
    pub default: Option<Value>,
    /// The claim of the caller's credential the value comes from (`identity`, `tenant`, or a
    /// claim's name); such a param is not in the input schema and may not be given.
    pub from_claim: Option<String>,
}

impl ParamSpec {
    /// A param of `kind` named `name`, with no bounds.
    pub fn new(name: &str, kind: ParamType) -> ParamSpec {
        ParamSpec {
            name: name.to_owned(),
            kind,
            description: String::new(),
            min: None,
            max: None,
            max_length: None,
            pattern: None,
            choices: Vec::new(),
            default: None,
            from_claim: None,
        }
    }

    /// Checks `value` against the type and the bounds, and returns it as the statement
    /// parameter bound for it. `dialect` decides how a timestamp is written.
    pub fn accept(&self, value: &Value, dialect: SqlDialect) -> Result<SqlValue, String> {
        let wrong = || format!("must be {}", self.expected());
        let bound = match (self.kind, value) {
            (ParamType::String, Value::String(text)) => {
                if let Some(max) = self.max_length
                    && text.chars().count() > max
                {
                    return Err(format!("is longer than {max} characters"));
                }
                if let Some(pattern) = &self.pattern
                    && !pattern.is_match(text)
                {
                    return Err(format!("does not match the pattern {}", pattern.as_str()));
                }
                SqlValue::Text(text.clone())
            }
            (ParamType::Integer, Value::Number(number)) => {
                let integer = number.as_i64().ok_or_else(wrong)?;
                self.within(|bound| match bound.as_i64() {
                    Some(bound) => integer.cmp(&bound),
                    None => (integer as f64).total_cmp(&bound.as_f64().unwrap_or(f64::NAN)),
                })?;
                SqlValue::Int(integer)
            }
            (ParamType::Number, Value::Number(number)) => {
                let float = number.as_f64().filter(|float| float.is_finite()).ok_or_else(wrong)?;
                self.within(|bound| float.total_cmp(&bound.as_f64().unwrap_or(f64::NAN)))?;
                match number.as_i64() {
                    Some(integer) => SqlValue::Int(integer),
                    None => SqlValue::Float(float),
                }
            }
            (ParamType::Boolean, Value::Bool(flag)) => SqlValue::Bool(*flag),
            (ParamType::Date, Value::String(text)) => {
                let format = time::macros::format_description!("[year]-[month]-[day]");
                let date = time::Date::parse(text, &format).map_err(|_| wrong())?;
                SqlValue::Text(date.format(&format).map_err(|_| wrong())?)
            }
            (ParamType::Timestamp, Value::String(text)) => {
                let at = time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339)
                    .map_err(|_| wrong())?
                    .to_offset(time::UtcOffset::UTC);
                let written = match dialect {
                    // MySQL's DATETIME and TIMESTAMP take no offset: the value is in UTC.
                    SqlDialect::MySql => at.format(time::macros::format_description!(
                        "[year]-[month]-[day] [hour]:[minute]:[second].[subsecond digits:6]"
                    )),
                    SqlDialect::Postgres | SqlDialect::Sqlite => {
                        at.format(&time::format_description::well_known::Rfc3339)
                    }
                };
                SqlValue::Text(written.map_err(|_| wrong())?)
            }
            (ParamType::Uuid, Value::String(text)) => {
                SqlValue::Text(uuid::Uuid::parse_str(text).map_err(|_| wrong())?.hyphenated().to_string())
            }
            _ => return Err(wrong()),
        };
        if !self.choices.is_empty() && !self.choices.iter().any(|choice| same(choice, value)) {
            let choices: Vec<String> = self.choices.iter().map(Value::to_string).collect();
            return Err(format!("must be one of {}", choices.join(", ")));
        }
        Ok(bound)
    }

    /// Refuses a number below `min` or above `max`; `compare` orders the value against a bound.
    fn within(&self, compare: impl Fn(&Number) -> std::cmp::Ordering) -> Result<(), String> {
        if let Some(min) = &self.min
            && compare(min).is_lt()
        {
            return Err(format!("is below the least value, {min}"));
        }
        if let Some(max) = &self.max
            && compare(max).is_gt()
        {
            return Err(format!("is above the greatest value, {max}"));
        }
        Ok(())
    }

    fn expected(&self) -> &'static str {
        match self.kind {
            ParamType::String => "a string",
            ParamType::Integer => "an integer",
            ParamType::Number => "a finite number",
            ParamType::Boolean => "true or false",
            ParamType::Date => "a date, YYYY-MM-DD",
            ParamType::Timestamp => "an RFC 3339 timestamp with an offset, such as 2026-01-31T09:30:00Z",
            ParamType::Uuid => "a UUID",
        }
    }

    /// The value of a claim-bound param: the caller's claim, as the param's type.
    fn claimed(&self, claim: &str, session: &SessionContext) -> Result<Value, Denial> {
        let text = match claim {
            "identity" => Some(session.identity()),
            "tenant" => Some(session.tenant()),
            other => session.claim(other),
        }
        .ok_or_else(|| {
            Denial::new(
                DenialCode::ClaimMissing,
                format!("this tool needs the caller's {claim} claim, which the credential does not carry"),
            )
        })?;
        let value = match self.kind {
            ParamType::Integer => text.parse::<i64>().ok().map(Value::from),
            ParamType::Number => text.parse::<f64>().ok().and_then(Number::from_f64).map(Value::Number),
            ParamType::Boolean => text.parse::<bool>().ok().map(Value::Bool),
            _ => Some(Value::String(text.to_owned())),
        };
        value.ok_or_else(|| {
            Denial::new(DenialCode::ClaimMissing, format!("the caller's {claim} claim is not {}", self.expected()))
        })
    }

    /// The param's JSON Schema.
    fn schema(&self) -> Value {
        let mut schema = self.kind.schema();
        if !self.description.is_empty() {
            schema.insert("description".into(), self.description.clone().into());
        }
        if let Some(min) = &self.min {
            schema.insert("minimum".into(), Value::Number(min.clone()));
        }
        if let Some(max) = &self.max {
            schema.insert("maximum".into(), Value::Number(max.clone()));
        }
        if let Some(max) = self.max_length {
            schema.insert("maxLength".into(), max.into());
        }
        if let Some(pattern) = &self.pattern {
            schema.insert("pattern".into(), pattern.as_str().into());
        }
        if !self.choices.is_empty() {
            schema.insert("enum".into(), Value::Array(self.choices.clone()));
        }
        if let Some(default) = &self.default {
            schema.insert("default".into(), default.clone());
        }
        Value::Object(schema)
    }
}

/// Whether two JSON values are the same value (numbers by value: `2` and `2.0` are the same).
fn same(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(a), Value::Number(b)) => a.as_f64() == b.as_f64(),
        _ => a == b,
    }
}

/// What a declared tool runs.
#[derive(Debug)]
pub enum DeclaredStatement {
    /// A query, returning at most `max_rows` rows within `timeout`.
    Read {
        /// The checked query.
        query: ValidatedQuery,
        /// The most rows a call returns.
        max_rows: usize,
        /// The time limit of a call.
        timeout: Duration,
    },
    /// An INSERT, UPDATE or DELETE, in a transaction that rolls back past `max_affected_rows`.
    Write {
        /// The checked statement.
        statement: ValidatedWrite,
        /// The most rows a call may affect.
        max_affected_rows: u64,
        /// The time limit of a call, transaction included.
        timeout: Duration,
    },
}

/// A tool declared in the configuration, checked.
#[derive(Debug)]
pub struct DeclaredTool {
    /// Its name.
    pub name: String,
    /// What it does, for the model.
    pub description: String,
    /// Its params, in the order of the placeholders they bind.
    pub params: Vec<ParamSpec>,
    /// What it runs.
    pub statement: DeclaredStatement,
}

impl DeclaredTool {
    /// The claims its params are bound to, other than `identity` and `tenant`.
    pub fn claims(&self) -> impl Iterator<Item = &str> {
        self.params
            .iter()
            .filter_map(|param| param.from_claim.as_deref())
            .filter(|claim| !matches!(*claim, "identity" | "tenant"))
    }

    /// The tool's JSON Schema: its params other than the claim-bound ones.
    fn input_schema(&self) -> Map<String, Value> {
        let mut properties = Map::new();
        let mut required = Vec::new();
        for param in self.params.iter().filter(|param| param.from_claim.is_none()) {
            properties.insert(param.name.clone(), param.schema());
            if param.default.is_none() {
                required.push(Value::String(param.name.clone()));
            }
        }
        let mut schema = Map::new();
        schema.insert("type".into(), "object".into());
        schema.insert("properties".into(), Value::Object(properties));
        if !required.is_empty() {
            schema.insert("required".into(), Value::Array(required));
        }
        schema.insert("additionalProperties".into(), false.into());
        schema
    }

    /// The statement parameters of one call, in placeholder order: each given argument checked,
    /// each default filled in, each claim-bound param taken from the session.
    fn bind(
        &self,
        session: &SessionContext,
        args: &Map<String, Value>,
        dialect: SqlDialect,
    ) -> Result<Vec<SqlValue>, Denial> {
        let invalid = |message: String| Denial::new(DenialCode::InvalidInput, message);
        for name in args.keys() {
            match self.params.iter().find(|param| param.name == *name) {
                None => return Err(invalid(format!("unknown argument {}", bounded(name)))),
                Some(ParamSpec { from_claim: Some(claim), .. }) => {
                    return Err(invalid(format!(
                        "argument {name} is bound to the caller's {claim} claim and cannot be given"
                    )));
                }
                Some(_) => {}
            }
        }
        let mut bound = Vec::with_capacity(self.params.len());
        for param in &self.params {
            let value = match &param.from_claim {
                Some(claim) => {
                    let value = param.claimed(claim, session)?;
                    let accepted = param.accept(&value, dialect).map_err(|reason| {
                        Denial::new(DenialCode::ClaimMissing, format!("the caller's {claim} claim {reason}"))
                    })?;
                    bound.push(accepted);
                    continue;
                }
                None => match args.get(&param.name).or(param.default.as_ref()) {
                    Some(value) => value,
                    None => return Err(invalid(format!("argument {} is missing", param.name))),
                },
            };
            bound.push(
                param.accept(value, dialect).map_err(|reason| invalid(format!("argument {} {reason}", param.name)))?,
            );
        }
        Ok(bound)
    }
}

/// A name from the caller, cut short for a message.
fn bounded(name: &str) -> String {
    let cut: String = name.chars().take(64).collect();
    serde_json::to_string(&cut).unwrap_or_default()
}

/// A declared read tool, over one database.
pub struct DeclaredRead {
    tool: Arc<DeclaredTool>,
    adapter: Arc<dyn Adapter>,
    limits: ReadLimits,
    mask_key: MaskKey,
}

impl DeclaredRead {
    /// The read tool `tool` declares, over `adapter`; `None` if it declares a write.
    pub fn new(
        tool: Arc<DeclaredTool>,
        adapter: Arc<dyn Adapter>,
        limits: ReadLimits,
        mask_key: MaskKey,
    ) -> Option<Self> {
        matches!(tool.statement, DeclaredStatement::Read { .. }).then_some(DeclaredRead {
            tool,
            adapter,
            limits,
            mask_key,
        })
    }

    fn max_rows(&self) -> usize {
        match &self.tool.statement {
            DeclaredStatement::Read { max_rows, .. } => *max_rows,
            DeclaredStatement::Write { .. } => 0,
        }
    }
}

impl Tool for DeclaredRead {
    type Access = Read;
    type Input = Map<String, Value>;
    type Output = QueryReadOutput;

    fn name(&self) -> &str {
        &self.tool.name
    }

    fn description(&self) -> &str {
        &self.tool.description
    }

    fn input_schema(&self) -> Map<String, Value> {
        self.tool.input_schema()
    }

    /// As `query_read`'s: one unit per 100 rows it may return.
    fn cost(&self, _args: &Value) -> u32 {
        u32::try_from(self.max_rows().div_ceil(100)).unwrap_or(u32::MAX)
    }

    fn egress(&self, _args: &Value) -> Option<Egress> {
        let rows = u64::try_from(self.max_rows()).unwrap_or(u64::MAX);
        Some(Egress { rows, bytes: u64::try_from(self.limits.max_result_bytes).unwrap_or(u64::MAX) })
    }

    async fn call(&self, evidence: Evidence<'_, Read>, args: Map<String, Value>) -> Result<QueryReadOutput, ToolError> {
        let DeclaredStatement::Read { query, max_rows, timeout } = &self.tool.statement else {
            return Err(ToolError::internal("a declared read tool holds a write statement"));
        };
        let params = self.tool.bind(evidence.session(), &args, self.adapter.dialect())?;
        let reading = Reading { adapter: &*self.adapter, limits: &self.limits, mask_key: Some(&self.mask_key) };
        reading.run(evidence, query, &params, *max_rows, *timeout).await
    }

    fn output_json(output: QueryReadOutput) -> Result<ToolOutput, ToolError> {
        <super::reference::QueryRead as Tool>::output_json(output)
    }
}

/// A declared write tool, over one database.
pub struct DeclaredWrite {
    tool: Arc<DeclaredTool>,
    adapter: Arc<dyn Adapter>,
    /// The checked statement's text, for the transaction (which runs only text that lives as
    /// long as the process: a declared statement is read once, at startup).
    text: &'static str,
    max_bytes: usize,
}

impl DeclaredWrite {
    /// The write tool `tool` declares, over `adapter`; `None` if it declares a read.
    /// `max_bytes` bounds what the statement's size-amplifying calls may make with a call's
    /// params (the result cap).
    pub fn new(tool: Arc<DeclaredTool>, adapter: Arc<dyn Adapter>, max_bytes: usize) -> Option<Self> {
        let DeclaredStatement::Write { statement, .. } = &tool.statement else { return None };
        let text: &'static str = Box::leak(statement.sql().to_owned().into_boxed_str());
        Some(DeclaredWrite { tool, adapter, text, max_bytes })
    }

    fn bounds(&self) -> (&ValidatedWrite, u64, Duration) {
        match &self.tool.statement {
            DeclaredStatement::Write { statement, max_affected_rows, timeout } => {
                (statement, *max_affected_rows, *timeout)
            }
            // `new` takes only a write.
            DeclaredStatement::Read { .. } => unreachable!("a declared write tool holds a write statement"),
        }
    }
}

/// What a declared write returns.
#[derive(Debug, Serialize)]
pub struct WriteOutput {
    /// The rows the statement inserted, updated or deleted.
    pub rows_affected: u64,
    /// The id the statement generated (MySQL, SQLite), if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_insert_id: Option<u64>,
    /// The rows its `RETURNING` clause returned, if it has one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rows: Option<Vec<Vec<Value>>>,
}

impl Tool for DeclaredWrite {
    type Access = Write;
    type Input = Map<String, Value>;
    type Output = WriteOutput;

    fn name(&self) -> &str {
        &self.tool.name
    }

    fn description(&self) -> &str {
        &self.tool.description
    }

    fn input_schema(&self) -> Map<String, Value> {
        self.tool.input_schema()
    }

    async fn call(&self, evidence: Evidence<'_, Write>, args: Map<String, Value>) -> Result<WriteOutput, ToolError> {
        let params = self.tool.bind(evidence.session(), &args, self.adapter.dialect())?;
        let values = crate::adapter::param_values(&params);
        self.bounds().0.check_params(&values, self.max_bytes)?;
        run(self, evidence, params).await
    }

    /// Rows a `RETURNING` clause returned came from the database: framed as untrusted data.
    fn output_json(output: WriteOutput) -> Result<ToolOutput, ToolError> {
        let rows = output.rows.is_some();
        let text = ToolOutput::of(&output)?;
        Ok(if rows { text.with_rows() } else { text })
    }
}

impl Transactional for DeclaredWrite {
    type Input = Vec<SqlValue>;
    type Output = WriteOutput;

    fn max_rows(&self) -> u64 {
        self.bounds().1
    }

    /// The gate printed the statement with every table qualified.
    fn names_qualified(&self) -> bool {
        true
    }

    fn timeout(&self) -> Duration {
        self.bounds().2
    }

    fn database(&self) -> &dyn Adapter {
        &*self.adapter
    }

    fn validate(&self, _params: &Vec<SqlValue>) -> Result<(), Denial> {
        Ok(())
    }

    async fn work(&self, tx: &mut WriteTx<'_>, params: Vec<SqlValue>) -> Result<WriteOutput, ToolError> {
        let executed = tx.execute_declared(self.text, &params).await?;
        let rows = self.bounds().0.returns_rows().then_some(executed.rows);
        Ok(WriteOutput { rows_affected: tx.rows_affected(), last_insert_id: executed.last_insert_id, rows })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn param(kind: ParamType) -> ParamSpec {
        ParamSpec::new("p", kind)
    }

    #[test]
    fn each_type_takes_its_values_and_refuses_others() {
        let pg = SqlDialect::Postgres;
        let ok = |spec: &ParamSpec, value: Value| spec.accept(&value, pg).expect("accepted");
        let no = |spec: &ParamSpec, value: Value| spec.accept(&value, pg).expect_err("refused");
        assert_eq!(ok(&param(ParamType::String), json!("x")), SqlValue::Text("x".into()));
        assert_eq!(ok(&param(ParamType::Integer), json!(-3)), SqlValue::Int(-3));
        assert_eq!(ok(&param(ParamType::Number), json!(1.5)), SqlValue::Float(1.5));
        assert_eq!(ok(&param(ParamType::Boolean), json!(true)), SqlValue::Bool(true));
        assert_eq!(ok(&param(ParamType::Date), json!("2026-02-28")), SqlValue::Text("2026-02-28".into()));
        assert_eq!(
            ok(&param(ParamType::Timestamp), json!("2026-01-31T10:30:00+01:00")),
            SqlValue::Text("2026-01-31T09:30:00Z".into())
        );
        assert_eq!(
            param(ParamType::Timestamp).accept(&json!("2026-01-31T10:30:00.5+01:00"), SqlDialect::MySql),
            Ok(SqlValue::Text("2026-01-31 09:30:00.500000".into()))
        );
        assert_eq!(
            ok(&param(ParamType::Uuid), json!("67E55044-10B1-426F-9247-BB680E5FE0C8")),
            SqlValue::Text("67e55044-10b1-426f-9247-bb680e5fe0c8".into())
        );
        for (kind, value) in [
            (ParamType::String, json!(1)),
            (ParamType::String, Value::Null),
            (ParamType::Integer, json!(1.5)),
            (ParamType::Integer, json!("1")),
            (ParamType::Integer, json!(u64::MAX)),
            (ParamType::Number, json!("1")),
            (ParamType::Boolean, json!("true")),
            (ParamType::Date, json!("2026-02-30")),
            (ParamType::Date, json!("2026-2-3")),
            (ParamType::Date, json!("2026-02-03' OR '1")),
            (ParamType::Timestamp, json!("2026-01-31T09:30:00")),
            (ParamType::Timestamp, json!("yesterday")),
            (ParamType::Uuid, json!("not-a-uuid")),
            (ParamType::Uuid, json!([1])),
        ] {
            no(&param(kind), value);
        }
    }

    #[test]
    fn bounds_are_inclusive_and_checked() {
        let pg = SqlDialect::Postgres;
        let integer = ParamSpec { min: Some(1.into()), max: Some(10.into()), ..param(ParamType::Integer) };
        assert!(integer.accept(&json!(1), pg).is_ok() && integer.accept(&json!(10), pg).is_ok());
        assert_eq!(integer.accept(&json!(0), pg), Err("is below the least value, 1".into()));
        assert_eq!(integer.accept(&json!(11), pg), Err("is above the greatest value, 10".into()));
        let number = ParamSpec { min: Number::from_f64(0.5), max: Number::from_f64(1.5), ..param(ParamType::Number) };
        assert!(number.accept(&json!(0.5), pg).is_ok() && number.accept(&json!(1), pg).is_ok());
        assert!(number.accept(&json!(0.49), pg).is_err() && number.accept(&json!(1.51), pg).is_err());
        let text = ParamSpec {
            max_length: Some(3),
            pattern: Some(regex::Regex::new("^[a-zé]+$").expect("regex")),
            ..param(ParamType::String)
        };
        assert!(text.accept(&json!("éé"), pg).is_ok(), "characters, not bytes");
        assert!(text.accept(&json!("abcd"), pg).is_err());
        assert!(text.accept(&json!("AB"), pg).is_err());
        let choice = ParamSpec { choices: vec![json!("open"), json!("closed")], ..param(ParamType::String) };
        assert!(choice.accept(&json!("open"), pg).is_ok());
        assert_eq!(choice.accept(&json!("gone"), pg), Err(r#"must be one of "open", "closed""#.into()));
        let numbers = ParamSpec { choices: vec![json!(1), json!(2)], ..param(ParamType::Integer) };
        assert!(numbers.accept(&json!(2), pg).is_ok() && numbers.accept(&json!(3), pg).is_err());
        let floats = ParamSpec { choices: vec![json!(2.0)], ..param(ParamType::Number) };
        assert!(floats.accept(&json!(2), pg).is_ok(), "numbers compare by value");
        for (kind, schema) in [
            (ParamType::Date, json!({"type": "string", "format": "date"})),
            (ParamType::Timestamp, json!({"type": "string", "format": "date-time"})),
            (ParamType::Uuid, json!({"type": "string", "format": "uuid"})),
            (ParamType::Boolean, json!({"type": "boolean"})),
            (ParamType::Number, json!({"type": "number"})),
        ] {
            assert_eq!(param(kind).schema(), schema, "{kind:?}");
            assert_eq!(ParamType::named(kind.name()), Some(kind));
            assert_eq!(kind.is_numeric(), matches!(kind, ParamType::Number));
        }
        let full = ParamSpec {
            description: "d".into(),
            max_length: Some(3),
            pattern: Some(regex::Regex::new("^a").expect("regex")),
            choices: vec![json!("ab")],
            default: Some(json!("ab")),
            ..param(ParamType::String)
        };
        assert_eq!(
            full.schema(),
            json!({"type": "string", "description": "d", "maxLength": 3, "pattern": "^a", "enum": ["ab"], "default": "ab"})
        );
    }

    fn tool(params: Vec<ParamSpec>) -> DeclaredTool {
        let query = crate::sql::SqlValidator::new(crate::sql::AllowList::new(SqlDialect::Sqlite, "main"))
            .validate("SELECT 1", 0)
            .expect("valid");
        DeclaredTool {
            name: "t".into(),
            description: "d".into(),
            params,
            statement: DeclaredStatement::Read { query, max_rows: 1, timeout: Duration::from_secs(1) },
        }
    }

    fn claimed(name: &str, kind: ParamType, claim: &str) -> ParamSpec {
        ParamSpec { from_claim: Some(claim.into()), ..ParamSpec::new(name, kind) }
    }

    /// Arguments bind in the params' order, defaults fill in, claims come from the session;
    /// an unknown, claim-bound or missing argument is refused, and so is a missing or unfit claim.
    #[test]
    fn arguments_defaults_and_claims_bind_in_order() {
        let session = SessionContext::builder()
            .identity("ada")
            .tenant("acme")
            .claim("level", "7")
            .claim("region", "eu")
            .bind()
            .expect("valid");
        let sqlite = SqlDialect::Sqlite;
        let params = vec![
            ParamSpec { default: Some(json!(5)), ..ParamSpec::new("size", ParamType::Integer) },
            claimed("who", ParamType::String, "identity"),
            ParamSpec::new("name", ParamType::String),
            claimed("tenant", ParamType::String, "tenant"),
            claimed("level", ParamType::Integer, "level"),
            claimed("region", ParamType::String, "region"),
        ];
        let declared = tool(params);
        let args = |value: Value| value.as_object().cloned().expect("an object");
        assert_eq!(
            declared.bind(&session, &args(json!({"name": "x"})), sqlite),
            Ok(vec![
                SqlValue::Int(5),
                SqlValue::Text("ada".into()),
                SqlValue::Text("x".into()),
                SqlValue::Text("acme".into()),
                SqlValue::Int(7),
                SqlValue::Text("eu".into()),
            ])
        );
        assert_eq!(
            declared.bind(&session, &args(json!({"name": "x", "size": 2})), sqlite).expect("binds")[0],
            SqlValue::Int(2)
        );
        let refused = |value: Value| declared.bind(&session, &args(value), sqlite).expect_err("refused");
        let unknown = refused(json!({"name": "x", "other": 1}));
        assert_eq!((unknown.code(), unknown.message()), (DenialCode::InvalidInput, "unknown argument \"other\""));
        let given = refused(json!({"name": "x", "tenant": "globex"}));
        assert_eq!(given.code(), DenialCode::InvalidInput);
        assert!(given.message().contains("bound to the caller's tenant claim"), "{}", given.message());
        assert_eq!(refused(json!({})).message(), "argument name is missing");
        assert_eq!(refused(json!({"name": 1})).message(), "argument name must be a string");
        assert_eq!(declared.input_schema()["required"], json!(["name"]), "claims and defaults are not required");
        assert_eq!(
            declared.input_schema()["properties"].as_object().map(|p| p.keys().cloned().collect::<Vec<_>>()),
            Some(vec!["name".to_owned(), "size".to_owned()])
        );
        assert_eq!(declared.claims().collect::<Vec<_>>(), ["level", "region"]);

        let without =
            SessionContext::builder().identity("ada").tenant("acme").claim("level", "high").bind().expect("ok");
        let missing = tool(vec![claimed("region", ParamType::String, "region")]).bind(&without, &Map::new(), sqlite);
        assert_eq!(missing.expect_err("missing").code(), DenialCode::ClaimMissing);
        let unfit = tool(vec![claimed("level", ParamType::Integer, "level")]).bind(&without, &Map::new(), sqlite);
        let unfit = unfit.expect_err("not an integer");
        assert_eq!(
            (unfit.code(), unfit.message()),
            (DenialCode::ClaimMissing, "the caller's level claim is not an integer")
        );
        let bounded = ParamSpec { max: Some(6.into()), ..claimed("level", ParamType::Integer, "level") };
        let over = tool(vec![bounded]).bind(&session, &Map::new(), sqlite).expect_err("over its max");
        assert_eq!(over.code(), DenialCode::ClaimMissing);
        let number = tool(vec![claimed("level", ParamType::Number, "level"), claimed("b", ParamType::Boolean, "flag")]);
        let flagged = SessionContext::builder()
            .identity("a")
            .tenant("t")
            .claim("level", "2.5")
            .claim("flag", "true")
            .bind()
            .expect("ok");
        assert_eq!(number.bind(&flagged, &Map::new(), sqlite), Ok(vec![SqlValue::Float(2.5), SqlValue::Bool(true)]));
    }
}
