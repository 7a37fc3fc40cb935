//! `[[tools]]`: tools declared in the configuration, checked when it is read. A tool whose
//! statement or params fail a check stops the server from starting, with a message that names
//! the tool and the key.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;
use serde_json::Value;

use crate::policy::{Mode, ToolName};
use crate::sql::{AllowList, SqlValidator};
use crate::tools::declared::{DeclaredStatement, DeclaredTool, ParamSpec, ParamType};
use crate::tools::reference::ReadLimits;

/// `[[tools]]`: one declared tool.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawTool {
    name: String,
    description: String,
    access: RawAccess,
    statement: String,
    #[serde(default)]
    params: Vec<RawParam>,
    max_rows: Option<usize>,
    timeout_ms: Option<u64>,
    max_affected_rows: Option<u64>,
    allow_unbounded: Option<bool>,
}

#[derive(Deserialize, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
enum RawAccess {
    Read,
    Write,
}

/// `[[tools.params]]`: one param, in the order of the placeholders it binds.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawParam {
    name: String,
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    description: String,
    min: Option<Value>,
    max: Option<Value>,
    max_length: Option<usize>,
    pattern: Option<String>,
    #[serde(rename = "enum")]
    choices: Option<Vec<Value>>,
    default: Option<Value>,
    from_claim: Option<String>,
}

/// The names a declared tool may not take: the reference tools'.
const TAKEN: [&str; 4] = ["query_read", "list_tables", "describe_table", "explain_query"];

/// The longest regular expression a `pattern` may be, in bytes.
const MAX_PATTERN_BYTES: usize = 1024;

/// Checks every `[[tools]]` entry: its statement through the SQL gate (a read as `query_read`
/// checks a query, a write as one INSERT, UPDATE or DELETE), its params against the
/// statement's placeholders and their own types.
pub(super) fn tools(
    raw: Vec<RawTool>,
    allow: &AllowList,
    limits: &ReadLimits,
    mode: Mode,
    warnings: &mut Vec<String>,
) -> Result<Vec<Arc<DeclaredTool>>, String> {
    let validator = SqlValidator::new(allow.clone()).with_budget(limits.max_result_bytes);
    let mut names = HashSet::new();
    let mut declared = Vec::with_capacity(raw.len());
    for entry in raw {
        let at = format!("[[tools]] {}", bounded(&entry.name));
        let name = ToolName::new(&entry.name).map_err(|error| format!("{at}: name: {error}"))?;
        if TAKEN.contains(&name.as_str()) {
            return Err(format!("{at}: name: a built-in tool has this name; choose another"));
        }
        if !names.insert(name.as_str().to_owned()) {
            return Err(format!("{at}: name: two tools have this name"));
        }
        if entry.description.trim().is_empty() {
            return Err(format!("{at}: description is empty; the model reads it to choose the tool"));
        }
        let mut params = Vec::with_capacity(entry.params.len());
        for param in entry.params {
            let spec = param_spec(param, allow).map_err(|error| format!("{at}: {error}"))?;
            if params.iter().any(|known: &ParamSpec| known.name == spec.name) {
                return Err(format!("{at}: params: two params are named {}", spec.name));
            }
            params.push(spec);
        }
        let millis = |duration: Duration| u64::try_from(duration.as_millis()).unwrap_or(u64::MAX);
        let timeout = match entry.timeout_ms {
            None => limits.default_timeout,
            Some(0) => return Err(format!("{at}: timeout_ms must be at least 1")),
            Some(ms) if Duration::from_millis(ms) > limits.max_timeout => {
                return Err(format!(
                    "{at}: timeout_ms ({ms}) is above [limits] max_timeout_ms ({})",
                    millis(limits.max_timeout)
                ));
            }
            Some(ms) => Duration::from_millis(ms),
        };
        let only_for = |key: &str, kind: &str| format!("{at}: {key} is only for {kind} tools");
        let statement = match entry.access {
            RawAccess::Read => {
                if entry.max_affected_rows.is_some() {
                    return Err(only_for("max_affected_rows", "write"));
                }
                if entry.allow_unbounded.is_some() {
                    return Err(only_for("allow_unbounded", "write"));
                }
                let max_rows = match entry.max_rows {
                    None => limits.default_rows,
                    Some(0) => return Err(format!("{at}: max_rows must be at least 1")),
                    Some(rows) if rows > limits.max_rows => {
                        return Err(format!(
                            "{at}: max_rows ({rows}) is above [limits] max_rows ({})",
                            limits.max_rows
                        ));
                    }
                    Some(rows) => rows,
                };
                let query = validator
                    .validate(&entry.statement, params.len())
                    .map_err(|denial| format!("{at}: statement: {}", denial.message()))?;
                DeclaredStatement::Read { query, max_rows, timeout }
            }
            RawAccess::Write => {
                if entry.max_rows.is_some() {
                    return Err(only_for("max_rows", "read"));
                }
                let max_affected_rows = match entry.max_affected_rows {
                    None => {
                        return Err(format!(
                            "{at}: max_affected_rows is missing: a write tool says how many rows one call may change"
                        ));
                    }
                    Some(0) => return Err(format!("{at}: max_affected_rows must be at least 1")),
                    Some(rows) => rows,
                };
                let statement = validator
                    .validate_write(&entry.statement, params.len(), entry.allow_unbounded.unwrap_or(false))
                    .map_err(|denial| format!("{at}: statement: {}", denial.message()))?;
                if mode == Mode::ReadOnly {
                    warnings.push(format!(
                        "{at} writes, but the server is read-only: it is hidden from tools/list and refused"
                    ));
                }
                DeclaredStatement::Write { statement, max_affected_rows, timeout }
            }
        };
        declared.push(Arc::new(DeclaredTool {
            name: name.as_str().to_owned(),
            description: entry.description,
            params,
            statement,
        }));
    }
    Ok(declared)
}

/// One param, checked: its name, its type, and bounds that fit the type.
fn param_spec(raw: RawParam, allow: &AllowList) -> Result<ParamSpec, String> {
    let valid_name = !raw.name.is_empty()
        && raw.name.len() <= 64
        && raw.name.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
        && raw.name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    if !valid_name {
        return Err(format!(
            "params: name {} must be 1 to 64 letters, digits or _, not starting with a digit",
            bounded(&raw.name)
        ));
    }
    let at = format!("param {}", raw.name);
    let kind = ParamType::named(&raw.kind).ok_or_else(|| {
        format!(
            "{at}: type {} is not one of string, integer, number, boolean, date, timestamp, uuid",
            bounded(&raw.kind)
        )
    })?;
    let mut spec = ParamSpec::new(&raw.name, kind);
    spec.description = raw.description;
    let not_for = |key: &str| format!("{at}: {key} does not apply to a {} param", kind.name());
    for (key, bound) in [("min", &raw.min), ("max", &raw.max)] {
        let Some(bound) = bound else { continue };
        if !kind.is_numeric() {
            return Err(not_for(key));
        }
        let number = match bound {
            Value::Number(number) if kind == ParamType::Integer && !number.is_i64() => {
                return Err(format!("{at}: {key} must be an integer"));
            }
            Value::Number(number) => number.clone(),
            _ => return Err(format!("{at}: {key} must be a number")),
        };
        if key == "min" {
            spec.min = Some(number);
        } else {
            spec.max = Some(number);
        }
    }
    if let (Some(min), Some(max)) = (&spec.min, &spec.max)
        && min.as_f64() > max.as_f64()
    {
        return Err(format!("{at}: min ({min}) is above max ({max})"));
    }
    if let Some(max) = raw.max_length {
        if kind != ParamType::String {
            return Err(not_for("max_length"));
        }
        if max == 0 {
            return Err(format!("{at}: max_length must be at least 1"));
        }
        spec.max_length = Some(max);
    }
    if let Some(pattern) = raw.pattern {
        if kind != ParamType::String {
            return Err(not_for("pattern"));
        }
        if pattern.len() > MAX_PATTERN_BYTES {
            return Err(format!("{at}: pattern is longer than {MAX_PATTERN_BYTES} bytes"));
        }
        let compiled = regex::RegexBuilder::new(&pattern).size_limit(1 << 20).build().map_err(|error| {
            format!("{at}: pattern is not a regular expression: {}", first_line(&error.to_string()))
        })?;
        spec.pattern = Some(compiled);
    }
    let dialect = allow.dialect();
    if let Some(choices) = raw.choices {
        if choices.is_empty() {
            return Err(format!("{at}: enum is empty, so no value would be taken"));
        }
        // Each choice must itself be a value the param takes (without the list).
        for choice in &choices {
            spec.accept(choice, dialect).map_err(|reason| format!("{at}: enum value {choice} {reason}"))?;
        }
        spec.choices = choices;
    }
    match (raw.from_claim, raw.default) {
        (Some(_), Some(_)) => return Err(format!("{at}: a param bound to a claim takes no default")),
        (Some(claim), None) => {
            if claim.trim().is_empty() || claim.trim() != claim || claim.len() > 128 {
                return Err(format!("{at}: from_claim must name a claim: identity, tenant, or a claim's name"));
            }
            spec.from_claim = Some(claim);
        }
        (None, Some(default)) => {
            spec.accept(&default, dialect).map_err(|reason| format!("{at}: default {default} {reason}"))?;
            spec.default = Some(default);
        }
        (None, None) => {}
    }
    Ok(spec)
}

/// `[session] claims`: the further claims of the stdio session, for params bound to them.
pub(super) fn session_claims(raw: BTreeMap<String, String>) -> Result<Vec<(String, String)>, String> {
    let mut claims = Vec::with_capacity(raw.len());
    for (name, value) in raw {
        if matches!(name.as_str(), "identity" | "tenant") {
            return Err(format!("[session] claims: {name} is set by [session] {name}"));
        }
        crate::policy::SessionContext::builder().identity(value.as_str()).tenant("t").bind().map_err(|_| {
            format!("[session] claims: the value of {name} is empty, too long or has control characters")
        })?;
        claims.push((name, value));
    }
    Ok(claims)
}

fn first_line(text: &str) -> &str {
    text.lines().find(|line| !line.trim().is_empty()).unwrap_or(text)
}

/// A name from the file, quoted and cut short for a message.
fn bounded(name: &str) -> String {
    let cut: String = name.chars().take(64).collect();
    format!("{cut:?}")
}

#[cfg(test)]
mod tests {
    use crate::config::Config;
    use crate::tools::declared::DeclaredStatement;

    /// A configuration over each engine with one `[[tools]]` entry, `tool` (placeholders
    /// written `$1`, `$2` … and turned into `?` for MySQL and SQLite).
    fn config(url: &str, tool: &str) -> Result<Config, String> {
        let tool = if url.starts_with("postgres") {
            tool.to_owned()
        } else {
            (1..=4).rev().fold(tool.to_owned(), |text, n| text.replace(&format!("${n}"), "?"))
        };
        let text = format!(
            "[database]\nurl = \"{url}\"\n[mode]\nread_only = false\n[allowlist]\ntables = [\"tickets\", \"people\"]\n\
             [[columns]]\ntable = \"people\"\ndeny = [\"ssn\"]\n[output]\nmask_key_env = \"KEY\"\n\
             [audit]\npath = \"/dev/null\"\n{tool}"
        );
        Config::parse(&text, "test.toml", |_| Some("k".repeat(32))).map_err(|error| error.to_string())
    }

    const URLS: [&str; 3] = ["postgres://db/app", "mysql://db/app", "sqlite:/tmp/app.db"];

    const READ: &str = "[[tools]]\nname = \"t\"\ndescription = \"d\"\naccess = \"read\"\n\
        statement = \"SELECT id FROM tickets WHERE tenant = $1\"\n";
    const PARAM: &str = "[[tools.params]]\nname = \"tenant\"\ntype = \"string\"\n";

    #[test]
    fn a_checked_tool_is_kept_with_its_statement_as_it_will_run() {
        for url in URLS {
            let config = config(url, &format!("{READ}max_rows = 7\n{PARAM}")).expect("valid");
            let [tool] = config.tools.as_slice() else { panic!("one tool") };
            assert_eq!((tool.name.as_str(), tool.params.len()), ("t", 1));
            let DeclaredStatement::Read { query, max_rows, .. } = &tool.statement else { panic!("a read") };
            assert_eq!(*max_rows, 7);
            assert!(query.sql().contains("tickets") && query.param_count() == 1, "{}", query.sql());
        }
    }

    /// Every entry that fails a check stops the configuration, naming the tool and the key.
    #[test]
    fn a_tool_that_fails_a_check_stops_the_server_naming_the_tool() {
        let write = "[[tools]]\nname = \"t\"\ndescription = \"d\"\naccess = \"write\"\nmax_affected_rows = 1\n";
        let cases: Vec<(String, &str)> = vec![
            (format!("{write}statement = \"DELETE FROM tickets\"\n"), "statement: DELETE without WHERE"),
            (format!("{write}statement = \"UPDATE tickets SET title = 'x'\"\n"), "statement: UPDATE without WHERE"),
            (
                format!("{write}statement = \"DELETE FROM tickets WHERE id IN (SELECT id FROM secrets)\"\n"),
                "is not in the allow-list",
            ),
            (format!("{write}statement = \"INSERT INTO secrets (a) VALUES (1)\"\n"), "is not in the allow-list"),
            (format!("{write}statement = \"SELECT 1\"\n"), "not SELECT"),
            (format!("{write}statement = \"DELETE FROM tickets WHERE id = $1\"\n"), "1 placeholder(s) but the tool declares 0"),
            (format!("{write}statement = \"UPDATE people SET name = ssn WHERE id = 1\"\n"), "column ssn of"),
            (
                "[[tools]]\nname = \"t\"\ndescription = \"d\"\naccess = \"write\"\nstatement = \"DELETE FROM tickets WHERE id = 1\"\n".into(),
                "max_affected_rows is missing",
            ),
            (format!("{write}statement = \"DELETE FROM tickets WHERE id = 1\"\nmax_rows = 3\n"), "max_rows is only for read"),
            (READ.to_owned(), "the query has 1 placeholder but 0 parameters were given"),
            (format!("{READ}{PARAM}{PARAM}"), "two params are named tenant"),
            (READ.replace("FROM tickets", "FROM secrets") + PARAM, "statement: table"),
            (READ.replace("SELECT id FROM tickets", "DELETE FROM tickets") + PARAM, "only queries are allowed"),
            (READ.replace("SELECT id", "SELECT ssn").replace("tickets", "people") + PARAM, "column ssn of"),
            (format!("{READ}max_affected_rows = 1\n{PARAM}"), "max_affected_rows is only for write"),
            (format!("{READ}allow_unbounded = true\n{PARAM}"), "allow_unbounded is only for write"),
            (format!("{READ}max_rows = 5000\n{PARAM}"), "max_rows (5000) is above [limits] max_rows"),
            (format!("{READ}timeout_ms = 999999999\n{PARAM}"), "timeout_ms (999999999) is above"),
            (READ.replace("name = \"t\"", "name = \"query_read\"") + PARAM, "a built-in tool has this name"),
            (READ.replace("name = \"t\"", "name = \"a b\"") + PARAM, "name:"),
            (format!("{READ}{PARAM}{READ}{PARAM}"), "two tools have this name"),
            (READ.replace("description = \"d\"", "description = \" \"") + PARAM, "description is empty"),
            (READ.replace("access = \"read\"", "access = \"delete\""), "expected `read` or `write`"),
            (format!("{READ}colour = 1\n{PARAM}"), "colour"),
            (READ.to_owned() + &PARAM.replace("string", "text"), "type \"text\" is not one of"),
            (READ.to_owned() + &PARAM.replace("tenant", "1x"), "name \"1x\" must be"),
            (format!("{READ}{PARAM}min = 1\n"), "min does not apply to a string param"),
            (format!("{READ}{PARAM}max_length = 0\n"), "max_length must be at least 1"),
            (format!("{READ}{PARAM}pattern = \"(\"\n"), "pattern is not a regular expression"),
            (format!("{READ}{PARAM}enum = []\n"), "enum is empty"),
            (format!("{READ}{PARAM}enum = [\"a\", 2]\n"), "enum value 2 must be a string"),
            (format!("{READ}{PARAM}max_length = 2\ndefault = \"abc\"\n"), "default \"abc\" is longer than 2"),
            (format!("{READ}{PARAM}from_claim = \"tenant\"\ndefault = \"a\"\n"), "takes no default"),
            (format!("{READ}{PARAM}from_claim = \"\"\n"), "from_claim must name a claim"),
            (READ.to_owned() + &PARAM.replace("string", "integer") + "min = 1.5\n", "min must be an integer"),
            (READ.to_owned() + &PARAM.replace("string", "integer") + "min = 5\nmax = 1\n", "min (5) is above max (1)"),
            (READ.to_owned() + &PARAM.replace("string", "date") + "default = \"2026-13-01\"\n", "must be a date"),
        ];
        for url in URLS {
            for (tool, expected) in &cases {
                let message = config(url, tool).expect_err(tool);
                assert!(message.contains(expected), "{url}\n{tool}\n→ {message}\n(expected {expected:?})");
                // A TOML error (a wrong access, an unknown key) names its line and column instead.
                if !expected.contains("expected `read`") && !expected.contains("colour") {
                    assert!(message.contains("[[tools]] \""), "the message names the tool: {message}");
                }
            }
        }
    }

    #[test]
    fn session_claims_are_read_and_identity_and_tenant_are_not_among_them() {
        let text = |claims: &str| {
            format!(
                "[database]\nurl = \"sqlite:/tmp/a.db\"\n[session]\nidentity = \"a\"\ntenant = \"t\"\nclaims = {claims}\n"
            )
        };
        let config = Config::parse(&text("{ region = \"eu\" }"), "t", |_| None).expect("valid");
        assert_eq!(config.session_claims, [("region".to_owned(), "eu".to_owned())]);
        for bad in ["{ tenant = \"x\" }", "{ region = \"\" }", "{ region = \" eu\" }"] {
            assert!(Config::parse(&text(bad), "t", |_| None).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_plan_guard_is_refused_where_it_cannot_hold() {
        let text = |url: &str, limits: &str| format!("[database]\nurl = \"{url}\"\n[limits]\n{limits}\n");
        let parse =
            |url: &str, limits: &str| Config::parse(&text(url, limits), "t", |_| None).map_err(|e| e.to_string());
        let guarded = parse("postgres://db/app", "max_plan_cost = 500\nmax_plan_rows = 10").expect("PostgreSQL");
        assert_eq!((guarded.limits.plan_limit.max_cost, guarded.limits.plan_limit.max_rows), (Some(500), Some(10)));
        for url in ["mysql://db/app", "sqlite:/tmp/a.db"] {
            assert!(parse(url, "max_plan_rows = 10").is_ok(), "{url}");
            let refused = parse(url, "max_plan_cost = 500").expect_err(url);
            assert!(refused.contains("max_plan_cost is for PostgreSQL"), "{refused}");
        }
        assert!(parse("postgres://db/app", "max_plan_rows = 0").expect_err("zero").contains("at least 1"));
    }
}
