//! The walk over a parsed query: CTE scoping, table resolution and rewriting, function and
//! construct checks, placeholders.

use std::collections::BTreeSet;
use std::ops::ControlFlow;

use sqlparser::ast::{
    BinaryOperator, Expr, Function, FunctionArguments, Ident, ObjectName, ObjectNamePart, Query, Select, SetExpr,
    Statement, TableFactor, Value, ValueWithSpan, VisitorMut,
};

use super::{AllowList, SqlDialect, TableName, functions};

type Flow = ControlFlow<String>;

/// One query's scope: the CTEs it defines and the CTE names visible from outside it.
struct Frame {
    /// This query's CTEs, by [`SqlDialect::cte_key`], with the address of each body to
    /// recognize it on entry.
    ctes: Vec<(String, *const Query)>,
    recursive: bool,
    /// CTE names visible to this query from enclosing queries.
    inherited: Vec<String>,
}

pub(super) struct Walker<'a> {
    dialect: SqlDialect,
    allow: &'a AllowList,
    frames: Vec<Frame>,
    tables: Vec<TableName>,
    /// Names in FROM that are table functions, not relations.
    functions_in_from: Vec<*const ObjectName>,
    placeholders: Placeholders,
    /// Whether the outermost statement may be one INSERT, UPDATE or DELETE (a declared write
    /// tool's statement); cleared when the walk enters it, so nothing nested may be one.
    top_write: bool,
}

/// The placeholders a query uses.
#[derive(Default)]
pub(super) struct Placeholders {
    question_marks: usize,
    numbered: BTreeSet<usize>,
    other: Option<String>,
}

impl Placeholders {
    /// How many parameters the query takes, or why its placeholders are not acceptable.
    pub(super) fn count(&self, dialect: SqlDialect) -> Result<usize, String> {
        if let Some(other) = &self.other {
            return Err(format!("placeholder {other} is not supported; use {}", placeholder_style(dialect)));
        }
        match dialect {
            SqlDialect::Postgres => {
                let highest = self.numbered.last().copied().unwrap_or(0);
                if self.numbered.len() != highest {
                    return Err(format!("placeholders must be numbered $1 to ${highest} without gaps"));
                }
                Ok(highest)
            }
            SqlDialect::MySql | SqlDialect::Sqlite => Ok(self.question_marks),
        }
    }
}

fn placeholder_style(dialect: SqlDialect) -> &'static str {
    match dialect {
        SqlDialect::Postgres => "$1, $2, …",
        SqlDialect::MySql | SqlDialect::Sqlite => "?",
    }
}

impl<'a> Walker<'a> {
    pub(super) fn new(dialect: SqlDialect, allow: &'a AllowList) -> Self {
        Walker {
            dialect,
            allow,
            frames: Vec::new(),
            tables: Vec::new(),
            functions_in_from: Vec::new(),
            placeholders: Placeholders::default(),
            top_write: false,
        }
    }

    /// A walk of a declared write statement: the outermost statement may be one INSERT,
    /// UPDATE or DELETE; everything in it is checked as in a query.
    pub(super) fn for_write(dialect: SqlDialect, allow: &'a AllowList) -> Self {
        Walker { top_write: true, ..Walker::new(dialect, allow) }
    }

    pub(super) fn finish(self) -> (Vec<TableName>, Placeholders) {
        (self.tables, self.placeholders)
    }

    /// Whether a one-part relation name (by [`SqlDialect::cte_key`]) refers to a CTE in scope.
    fn is_cte(&self, name: &str) -> bool {
        self.frames.last().is_some_and(|frame| {
            frame.inherited.iter().any(|cte| cte == name) || frame.ctes.iter().any(|(cte, _)| cte == name)
        })
    }

    fn check_function(&self, name: &ObjectName, in_from: bool) -> Flow {
        let [ObjectNamePart::Identifier(ident)] = name.0.as_slice() else {
            return ControlFlow::Break(format!("qualified function names such as {name} are not allowed"));
        };
        let folded = self.dialect.fold(ident);
        let allowed = if in_from {
            functions::is_allowed_in_from(self.dialect, &folded)
        } else {
            functions::is_allowed(self.dialect, &folded) || self.allow.allows_function(&folded)
        };
        if allowed {
            ControlFlow::Continue(())
        } else if in_from {
            ControlFlow::Break(format!("table function {folded} is not allowed"))
        } else {
            ControlFlow::Break(format!("function {folded} is not allowed"))
        }
    }

    fn quoted(&self, value: &str) -> Ident {
        Ident::with_quote(self.dialect.quote(), value)
    }
}

impl VisitorMut for Walker<'_> {
    type Break = String;

    fn pre_visit_statement(&mut self, statement: &mut Statement) -> Flow {
        let top_write = std::mem::take(&mut self.top_write);
        match statement {
            Statement::Query(_) => ControlFlow::Continue(()),
            Statement::Insert(_) | Statement::Update(_) | Statement::Delete(_) if top_write => {
                ControlFlow::Continue(())
            }
            // Reached inside a query only through a data-modifying CTE or subquery.
            other => ControlFlow::Break(format!("{} is not allowed inside a query", statement_kind(other))),
        }
    }

    fn pre_visit_query(&mut self, query: &mut Query) -> Flow {
        let address: *const Query = query;
        let inherited = match self.frames.last() {
            None => Vec::new(),
            Some(parent) => {
                let mut visible = parent.inherited.clone();
                // A CTE body sees the CTEs defined before it; in WITH RECURSIVE also itself and,
                // on PostgreSQL and SQLite, the ones after it. MySQL 8 resolves a name of a later
                // CTE to the table of that name (MariaDB to the CTE): the strictest reading of the
                // two checks it as a table. Any other nested query sees all of its parent's CTEs.
                let own = match parent.ctes.iter().position(|(_, body)| std::ptr::eq(*body, address)) {
                    Some(index) if !parent.recursive => &parent.ctes[..index],
                    Some(index) if self.dialect == SqlDialect::MySql => &parent.ctes[..=index],
                    _ => &parent.ctes[..],
                };
                visible.extend(own.iter().map(|(name, _)| name.clone()));
                visible
            }
        };
        let (ctes, recursive) = match &query.with {
            Some(with) => (
                with.cte_tables
                    .iter()
                    .map(|cte| (self.dialect.cte_key(&cte.alias.name), &*cte.query as *const Query))
                    .collect(),
                with.recursive,
            ),
            None => (Vec::new(), false),
        };
        self.frames.push(Frame { ctes, recursive, inherited });

        if !query.locks.is_empty() {
            return ControlFlow::Break("locking clauses (FOR UPDATE, FOR SHARE, …) are not allowed".into());
        }
        if query.for_clause.is_some() || query.settings.is_some() || query.format_clause.is_some() {
            return ControlFlow::Break("this query clause is not supported".into());
        }
        if !query.pipe_operators.is_empty() {
            return ControlFlow::Break("pipe syntax is not supported".into());
        }
        check_body(&query.body)
    }

    fn post_visit_query(&mut self, _query: &mut Query) -> Flow {
        self.frames.pop();
        ControlFlow::Continue(())
    }

    fn pre_visit_select(&mut self, select: &mut Select) -> Flow {
        if select.into.is_some() {
            return ControlFlow::Break("SELECT … INTO is not allowed".into());
        }
        if !select.lateral_views.is_empty() || select.prewhere.is_some() {
            return ControlFlow::Break("this SELECT clause is not supported".into());
        }
        ControlFlow::Continue(())
    }

    fn pre_visit_table_factor(&mut self, factor: &mut TableFactor) -> Flow {
        match factor {
            TableFactor::Table { name, args: Some(_), .. } => {
                self.functions_in_from.push(&*name);
                self.check_function(name, true)
            }
            TableFactor::Table { .. }
            | TableFactor::Derived { .. }
            | TableFactor::NestedJoin { .. }
            | TableFactor::UNNEST { .. } => ControlFlow::Continue(()),
            TableFactor::JsonTable { .. } if self.dialect == SqlDialect::MySql => ControlFlow::Continue(()),
            TableFactor::Function { name, .. } => self.check_function(name, true),
            _ => ControlFlow::Break("this kind of FROM item is not supported".into()),
        }
    }

    fn pre_visit_relation(&mut self, name: &mut ObjectName) -> Flow {
        let address: *const ObjectName = name;
        if self.functions_in_from.contains(&address) {
            return ControlFlow::Continue(());
        }
        let mut idents = Vec::with_capacity(name.0.len());
        for part in &name.0 {
            match part {
                ObjectNamePart::Identifier(ident) => idents.push(ident),
                ObjectNamePart::Function(_) => {
                    return ControlFlow::Break("computed table names are not allowed".into());
                }
            }
        }
        if let [only] = idents.as_slice()
            && self.is_cte(&self.dialect.cte_key(only))
        {
            return ControlFlow::Continue(());
        }
        // MySQL's `FROM DUAL` names no table: `DUAL` is a reserved word there (a table of that
        // name must be quoted), and the server reads nothing for it.
        if let [only] = idents.as_slice()
            && self.dialect == SqlDialect::MySql
            && only.quote_style.is_none()
            && only.value.eq_ignore_ascii_case("dual")
        {
            return ControlFlow::Continue(());
        }
        let mut parts: Vec<String> = idents.into_iter().map(|ident| self.dialect.fold(ident)).collect();
        let resolved = match parts.as_mut_slice() {
            [table] => TableName { schema: self.allow.default_schema().to_owned(), table: std::mem::take(table) },
            [schema, table] => TableName { schema: std::mem::take(schema), table: std::mem::take(table) },
            _ => return ControlFlow::Break(format!("table names with more than two parts ({name}) are not supported")),
        };
        if !self.allow.allows(&resolved) {
            return ControlFlow::Break(if self.dialect.is_catalog(&resolved.schema, &resolved.table) {
                format!("system catalog {resolved} is not allowed")
            } else {
                format!("table {resolved} is not in the allow-list")
            });
        }
        // Run exactly what was checked: the resolved schema and folded name, quoted.
        *name = ObjectName::from(vec![self.quoted(&resolved.schema), self.quoted(&resolved.table)]);
        self.tables.push(resolved);
        ControlFlow::Continue(())
    }

    fn pre_visit_expr(&mut self, expr: &mut Expr) -> Flow {
        match expr {
            Expr::Function(function) if is_constructor(self.dialect, function) => ControlFlow::Continue(()),
            Expr::Function(function) => self.check_function(&function.name, false),
            Expr::Identifier(ident) if is_variable(ident) => variable(),
            Expr::Identifier(ident)
                if is_session_value(self.dialect, ident)
                    && !self.allow.allows_function(&ident.value.to_ascii_lowercase()) =>
            {
                ControlFlow::Break(format!(
                    "{} is not allowed: it tells who the database session is",
                    ident.value.to_ascii_lowercase()
                ))
            }
            Expr::Cast { data_type, .. } | Expr::TypedString(sqlparser::ast::TypedString { data_type, .. })
                if self.dialect == SqlDialect::Postgres
                    && is_catalog_lookup(data_type).is_some_and(|lookup| !self.allow.allows_function(lookup)) =>
            {
                ControlFlow::Break(format!(
                    "casts to {} are not allowed: they look names up in the system catalogs",
                    data_type.to_string().to_ascii_lowercase()
                ))
            }
            Expr::CompoundIdentifier(idents) if idents.first().is_some_and(is_variable) => variable(),
            Expr::BinaryOp { op: BinaryOperator::Assignment, .. } => {
                ControlFlow::Break("assignments (:=) are not allowed".into())
            }
            // `OPERATOR(schema.op)` names an operator by its schema, where anyone who may
            // create objects could have put one; the operators a read needs are written plainly.
            Expr::BinaryOp { op: BinaryOperator::PGCustomBinaryOperator(_), .. } => {
                ControlFlow::Break("OPERATOR(…) is not allowed; write the operator itself".into())
            }
            Expr::Lambda(_) | Expr::OuterJoin(_) | Expr::Prior(_) => {
                ControlFlow::Break("this expression is not supported".into())
            }
            _ => ControlFlow::Continue(()),
        }
    }

    fn pre_visit_value(&mut self, value: &mut ValueWithSpan) -> Flow {
        if let Value::Placeholder(text) = &value.value {
            match text.as_str() {
                "?" => self.placeholders.question_marks += 1,
                numbered if self.dialect == SqlDialect::Postgres => {
                    match numbered.strip_prefix('$').and_then(|n| n.parse::<usize>().ok()).filter(|n| *n >= 1) {
                        Some(n) if n <= 65_535 => {
                            self.placeholders.numbered.insert(n);
                        }
                        _ => self.placeholders.other = Some(bounded(numbered)),
                    }
                }
                other => self.placeholders.other = Some(bounded(other)),
            }
        }
        ControlFlow::Continue(())
    }
}

/// Data-modifying statements nested in a query surface as statements and are refused there;
/// `TABLE name` is refused here because it names a table without a relation node.
fn check_body(body: &SetExpr) -> Flow {
    match body {
        SetExpr::Select(_) | SetExpr::Query(_) | SetExpr::Values(_) => ControlFlow::Continue(()),
        SetExpr::SetOperation { left, right, .. } => {
            check_body(left)?;
            check_body(right)
        }
        SetExpr::Table(_) => ControlFlow::Break("TABLE is not supported; use SELECT * FROM".into()),
        SetExpr::Insert(_) | SetExpr::Update(_) | SetExpr::Delete(_) | SetExpr::Merge(_) => {
            ControlFlow::Break("data-modifying statements are not allowed inside a query".into())
        }
    }
}

/// `ARRAY(subquery)` (PostgreSQL) and `ROW(…)` (PostgreSQL, MySQL): syntax that builds an
/// array or a row from what is inside, read as a call by sqlparser. The subquery and the
/// values inside are walked like any other. Quoted (`"row"(…)`), the name is a function's.
fn is_constructor(dialect: SqlDialect, function: &Function) -> bool {
    let [ObjectNamePart::Identifier(ident)] = function.name.0.as_slice() else { return false };
    let plain = ident.quote_style.is_none()
        && function.filter.is_none()
        && function.over.is_none()
        && function.within_group.is_empty()
        && matches!(function.parameters, FunctionArguments::None);
    plain
        && match (dialect, &function.args) {
            (SqlDialect::Postgres, FunctionArguments::Subquery(_)) => ident.value.eq_ignore_ascii_case("array"),
            (SqlDialect::Postgres | SqlDialect::MySql, FunctionArguments::List(list)) => {
                ident.value.eq_ignore_ascii_case("row") && list.duplicate_treatment.is_none() && list.clauses.is_empty()
            }
            _ => false,
        }
}

/// SQL's value functions that describe the session and are written without parentheses, so
/// that sqlparser reads them as names (PostgreSQL's `current_user`, `session_user`, `user` and
/// `current_catalog` it reads as functions, which the function allow-list decides).
fn is_session_value(dialect: SqlDialect, ident: &Ident) -> bool {
    const POSTGRES: [&str; 7] =
        ["current_role", "current_schema", "current_user", "session_user", "user", "current_catalog", "system_user"];
    const MYSQL: [&str; 2] = ["current_user", "current_role"];
    let names: &[&str] = match dialect {
        SqlDialect::Postgres => &POSTGRES,
        SqlDialect::MySql => &MYSQL,
        SqlDialect::Sqlite => &[],
    };
    ident.quote_style.is_none() && names.iter().any(|name| ident.value.eq_ignore_ascii_case(name))
}

/// PostgreSQL's object identifier types, whose input looks a name up in the catalogs (and
/// whose output prints one): `'secrets'::regclass` says whether a table exists, and a cast of
/// numbers lists every relation, role or function.
fn is_catalog_lookup(data_type: &sqlparser::ast::DataType) -> Option<&'static str> {
    const LOOKUPS: [&str; 11] = [
        "regclass",
        "regcollation",
        "regconfig",
        "regdictionary",
        "regnamespace",
        "regoper",
        "regoperator",
        "regproc",
        "regprocedure",
        "regrole",
        "regtype",
    ];
    let printed = data_type.to_string().to_ascii_lowercase();
    let base = printed.trim_end_matches("[]").rsplit('.').next().unwrap_or_default().trim_matches('"');
    LOOKUPS.iter().find(|lookup| **lookup == base).copied()
}

/// MySQL user and system variables (`@x`, `@@version`) are session state, not data.
fn is_variable(ident: &Ident) -> bool {
    ident.quote_style.is_none() && ident.value.starts_with('@')
}

fn variable() -> Flow {
    ControlFlow::Break("session variables are not allowed".into())
}

pub(super) fn bounded(text: &str) -> String {
    text.chars().take(32).collect()
}

/// A short name for a statement's kind, for messages.
pub(super) fn statement_kind(statement: &Statement) -> String {
    let text = statement.to_string();
    let words: Vec<&str> = text.split_whitespace().take(2).collect();
    match words.as_slice() {
        [first, second] if matches!(first.to_ascii_uppercase().as_str(), "CREATE" | "DROP" | "ALTER" | "INSERT") => {
            format!("{} {}", first.to_ascii_uppercase(), second.to_ascii_uppercase())
        }
        [first, ..] => first.to_ascii_uppercase(),
        [] => "an empty statement".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sqlparser::ast::VisitMut;
    use sqlparser::dialect::{
        BigQueryDialect, ClickHouseDialect, Dialect, DuckDbDialect, HiveDialect, MsSqlDialect, MySqlDialect,
        SnowflakeDialect,
    };
    use sqlparser::parser::Parser;

    /// Walks a tree parsed by another dialect with our rules for `ours`.
    fn refusal(parser: &dyn Dialect, sql: &str, ours: SqlDialect) -> Option<String> {
        let mut statements = Parser::parse_sql(parser, sql).unwrap_or_else(|e| panic!("{sql}: {e}"));
        let allow = AllowList::new(ours, "public").schema("public");
        match statements[0].visit(&mut Walker::new(ours, &allow)) {
            ControlFlow::Break(reason) => Some(reason),
            ControlFlow::Continue(()) => None,
        }
    }

    /// Constructs our three dialects do not parse today are refused if a parser upgrade ever
    /// lets them through.
    #[test]
    fn constructs_from_other_dialects_are_refused() {
        let cases: [(&dyn Dialect, &str); 10] = [
            (&ClickHouseDialect {}, "SELECT * FROM t SETTINGS max_threads = 1"),
            (&ClickHouseDialect {}, "SELECT * FROM t FORMAT JSON"),
            (&ClickHouseDialect {}, "SELECT * FROM t PREWHERE a = 1"),
            (&MsSqlDialect {}, "SELECT id FROM t FOR JSON AUTO"),
            (&HiveDialect {}, "SELECT * FROM t LATERAL VIEW explode(x) v AS y"),
            (&SnowflakeDialect {}, "SELECT * FROM a, b WHERE a.id = b.id (+)"),
            (&SnowflakeDialect {}, "SELECT id FROM t START WITH id = 1 CONNECT BY PRIOR id = parent"),
            (&DuckDbDialect {}, "SELECT list_transform(x, e -> e + 1) FROM t"),
            (&BigQueryDialect {}, "SELECT * FROM t |> WHERE x = 1"),
            (&MySqlDialect {}, "SELECT * FROM JSON_TABLE('[1]', '$[*]' COLUMNS (x INT PATH '$')) AS j"),
        ];
        for (parser, sql) in cases {
            assert!(refusal(parser, sql, SqlDialect::Postgres).is_some(), "{sql}");
        }
        // JSON_TABLE is MySQL's own, and allowed there.
        let json_table = "SELECT * FROM JSON_TABLE('[1]', '$[*]' COLUMNS (x INT PATH '$')) AS j";
        assert_eq!(refusal(&MySqlDialect {}, json_table, SqlDialect::MySql), None);
    }

    #[test]
    fn placeholders_are_counted_per_dialect() {
        let count = |numbered: &[usize], question_marks, other: Option<&str>, dialect| {
            Placeholders { question_marks, numbered: numbered.iter().copied().collect(), other: other.map(Into::into) }
                .count(dialect)
        };
        assert_eq!(count(&[1, 2, 3], 0, None, SqlDialect::Postgres), Ok(3));
        assert_eq!(count(&[], 0, None, SqlDialect::Postgres), Ok(0));
        assert_eq!(
            count(&[1, 3], 0, None, SqlDialect::Postgres),
            Err("placeholders must be numbered $1 to $3 without gaps".into())
        );
        assert_eq!(count(&[], 2, None, SqlDialect::MySql), Ok(2));
        assert_eq!(count(&[], 1, None, SqlDialect::Sqlite), Ok(1));
        assert_eq!(
            count(&[], 1, Some(":id"), SqlDialect::Sqlite),
            Err("placeholder :id is not supported; use ?".into())
        );
        assert_eq!(
            count(&[1], 0, Some("$name"), SqlDialect::Postgres),
            Err("placeholder $name is not supported; use $1, $2, …".into())
        );
    }
}
