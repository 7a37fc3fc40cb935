//! The amplification guard: a query may not make, from its own text and parameters, values
//! larger than a result may hold.
//!
//! Some work cannot be stopped once it has begun. PostgreSQL folds constant expressions while
//! planning, and no cancel, statement timeout or terminated backend interrupts that; MySQL,
//! MariaDB and SQLite notice a kill only between steps of their work. A short query can ask for
//! a great deal of such work: `md5(lpad('', 100000000, 'a'))`, a hundred times over, keeps a
//! backend busy for minutes after the caller was told `TIMEOUT`. The guard refuses it before it
//! runs.
//!
//! The rule, for each dialect's size-amplifying functions (`repeat`, `lpad`, `rpad`, `space`,
//! widths and precisions in `format` and `printf`, `replace` and `regexp_replace`, and the
//! functions whose output is a fixed multiple of their input: `hex`, `quote`, `json_quote` …):
//!
//! - a count (`repeat`'s, `lpad`'s, `space`'s, a `*` width) must be a constant: literals,
//!   parameters, and arithmetic, casts and `abs`/`greatest`/`least`/… over them. A count read
//!   from the rows is refused: rows can be made by the query itself (`VALUES`,
//!   `generate_series`), so a count from them is no bound;
//! - a format string must be a literal;
//! - what `repeat` repeats must be a constant or a parameter too;
//! - everything the query's amplifying calls make together, each estimated from above, may not
//!   exceed the result cap (`max_result_bytes`). With parameters, the sum is checked again with
//!   their values before the query runs (PostgreSQL folds parameters as constants too).
//!
//! And in a recursive query, no value may be built from two of the query's own columns (`s ||
//! s`, `concat(a, b)`), which could double a value at every step.

use std::collections::HashSet;
use std::ops::ControlFlow;

use sqlparser::ast::{
    BinaryOperator, CastKind, Expr, Function, FunctionArg, FunctionArgExpr, FunctionArguments, Ident, Query,
    SelectItem, SetExpr, Statement, TableFactor, UnaryOperator, Value, ValueWithSpan, Visit, Visitor,
};

use super::SqlDialect;

mod format;
mod num;
mod recursion;

use format::*;
use num::*;
use recursion::*;

/// A statement parameter as the amplification guard sees it (see
/// [`ValidatedQuery::check_params`](super::ValidatedQuery::check_params)).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum ParamValue<'a> {
    /// NULL.
    Null,
    /// A number (a boolean is 0 or 1).
    Number(f64),
    /// Text.
    Text(&'a str),
    /// Bytes, of this length.
    Bytes(usize),
}

/// What a query's amplifying calls make, each estimated from above; see the module docs.
#[derive(Debug, Clone, Default, PartialEq)]
pub(super) struct Amplification {
    /// One estimate per amplifying call.
    sites: Vec<Num>,
    /// The names of the functions, for the refusal's message.
    names: Vec<String>,
}

impl Amplification {
    /// Whether the total depends on parameters.
    pub(super) fn uses_params(&self) -> bool {
        self.sites.iter().any(Num::uses_params)
    }

    /// Checks the total against `budget` bytes, with these parameters.
    pub(super) fn check(&self, params: &[ParamValue<'_>], budget: usize) -> Result<(), String> {
        let mut total = 0.0;
        for site in &self.sites {
            total += site.eval(params)?.max(0.0);
        }
        if total > budget as f64 {
            let mut names = self.names.clone();
            names.sort();
            names.dedup();
            let made = if total.is_finite() && total < 1e18 {
                format!("up to {} bytes", total as u64)
            } else {
                "more bytes than can be counted".to_owned()
            };
            return Err(format!(
                "the query would make {made} with {}, more than a result may hold ({budget} bytes); \
                 use smaller counts",
                names.join(", ")
            ));
        }
        Ok(())
    }
}

/// The size of a value, when the query alone decides it: `None` when it comes from the rows.
type Size = Option<Num>;

/// How a function makes its output, for the guard.
enum Amplifier {
    /// `repeat(text, count)`: the text, count times.
    Repeat,
    /// `lpad`/`rpad(text, length[, fill])`: `length` characters.
    Pad,
    /// MySQL `space(count)`.
    Space,
    /// PostgreSQL `format`, with widths; SQLite `printf`/`format`, with widths and precisions.
    Format { precision: bool },
    /// `replace(text, from, to)`, `regexp_replace(text, pattern, to, …)`.
    Replace,
    /// An output at most `n` times the input's size (`hex`, `quote` …).
    Ratio(f64),
    /// PostgreSQL `jsonb_pretty`: indentation grows with nesting.
    Pretty,
}

fn amplifier(dialect: SqlDialect, name: &str) -> Option<Amplifier> {
    use Amplifier::*;
    let common = match name {
        "replace" => Some(Replace),
        "json_quote" => Some(Ratio(6.0)),
        _ => None,
    };
    common.or(match (dialect, name) {
        (SqlDialect::Postgres | SqlDialect::MySql, "repeat") => Some(Repeat),
        (SqlDialect::Postgres | SqlDialect::MySql, "lpad" | "rpad") => Some(Pad),
        (SqlDialect::Postgres | SqlDialect::MySql, "regexp_replace") => Some(Replace),
        (SqlDialect::Postgres, "format") => Some(Format { precision: false }),
        (SqlDialect::Postgres, "quote_literal" | "quote_ident" | "quote_nullable") => Some(Ratio(2.0)),
        (SqlDialect::Postgres, "jsonb_pretty") => Some(Pretty),
        (SqlDialect::MySql, "space") => Some(Space),
        (SqlDialect::MySql | SqlDialect::Sqlite, "hex") => Some(Ratio(2.0)),
        (SqlDialect::Sqlite, "printf" | "format") => Some(Format { precision: true }),
        (SqlDialect::Sqlite, "quote") => Some(Ratio(2.0)),
        _ => None,
    })
}

/// Applies the guard to a checked query: refuses counts and format strings that are not
/// constant, and values built from two of a recursive query's own columns; returns what the
/// amplifying calls make, for the caller to check against the budget.
pub(super) fn examine(statement: &Statement, dialect: SqlDialect) -> Result<Amplification, String> {
    let mut guard = Guard { dialect, amplification: Amplification::default(), params: Params::default() };
    match statement.visit(&mut guard) {
        ControlFlow::Break(reason) => Err(reason),
        ControlFlow::Continue(()) => Ok(guard.amplification),
    }
}

struct Guard {
    dialect: SqlDialect,
    amplification: Amplification,
    params: Params,
}

/// Numbers placeholders in the order the walker counts them: `?` by position, `$n` by `n`.
#[derive(Default)]
struct Params {
    question_marks: usize,
}

impl Visitor for Guard {
    type Break = String;

    fn pre_visit_query(&mut self, query: &Query) -> ControlFlow<String> {
        if let Some(with) = &query.with
            && with.recursive
        {
            for cte in &with.cte_tables {
                check_recursion(&cte.alias.name, &cte.alias.columns, &cte.query, self.dialect)?;
            }
        }
        ControlFlow::Continue(())
    }

    fn pre_visit_value(&mut self, value: &ValueWithSpan) -> ControlFlow<String> {
        // `?` placeholders are numbered in the order they are visited, as the walker does.
        if let Value::Placeholder(text) = &value.value
            && text == "?"
        {
            self.params.question_marks += 1;
        }
        ControlFlow::Continue(())
    }

    fn pre_visit_expr(&mut self, expr: &Expr) -> ControlFlow<String> {
        match expr {
            Expr::Function(function) => self.function(function),
            _ => ControlFlow::Continue(()),
        }
    }
}

impl Guard {
    fn function(&mut self, function: &Function) -> ControlFlow<String> {
        let name = function.name.to_string().to_ascii_lowercase();
        let Some(amplifier) = amplifier(self.dialect, &name) else { return ControlFlow::Continue(()) };
        let args = arguments(function);
        // `?` placeholders inside this call come after those counted so far.
        let numbering = Numbering { dialect: self.dialect, first: self.params.question_marks };
        let estimate = match amplifier.estimate(&name, &args, &numbering) {
            Ok(estimate) => estimate,
            Err(reason) => return ControlFlow::Break(reason),
        };
        if let Some(estimate) = estimate {
            self.amplification.sites.push(estimate);
            self.amplification.names.push(name);
        }
        ControlFlow::Continue(())
    }
}

/// A call's arguments, as expressions (`*` and the like are none).
fn arguments(function: &Function) -> Vec<&Expr> {
    let FunctionArguments::List(list) = &function.args else { return Vec::new() };
    list.args
        .iter()
        .filter_map(|arg| match arg {
            FunctionArg::Unnamed(FunctionArgExpr::Expr(expr))
            | FunctionArg::Named { arg: FunctionArgExpr::Expr(expr), .. }
            | FunctionArg::ExprNamed { arg: FunctionArgExpr::Expr(expr), .. } => Some(expr),
            _ => None,
        })
        .collect()
}

/// How placeholders inside one call are numbered.
struct Numbering {
    dialect: SqlDialect,
    /// How many `?` came before the call.
    first: usize,
}

impl Numbering {
    /// The parameter a placeholder stands for, and how many `?` a subtree holds before it.
    fn param(&self, text: &str, seen: &mut usize) -> Option<usize> {
        match (self.dialect, text) {
            (SqlDialect::Postgres, numbered) => numbered.strip_prefix('$')?.parse::<usize>().ok()?.checked_sub(1),
            (_, "?") => {
                let index = self.first + *seen;
                *seen += 1;
                Some(index)
            }
            _ => None,
        }
    }
}

impl Amplifier {
    /// What the call makes, from above; `None` when it makes nothing beyond what it was given.
    fn estimate(&self, name: &str, args: &[&Expr], numbering: &Numbering) -> Result<Option<Num>, String> {
        let mut seen = 0;
        let arg = |index: usize| args.get(index).copied();
        // Arguments are looked at in order, so that `?` placeholders are numbered as written.
        let mut sizes = Vec::with_capacity(args.len());
        let mut counts = Vec::with_capacity(args.len());
        for expr in args {
            let mut mark = seen;
            counts.push(count(expr, numbering, &mut mark));
            sizes.push(size(expr, numbering, &mut seen));
        }
        let count_of = |index: usize, what: &str| -> Result<Num, String> {
            match counts.get(index).cloned().flatten() {
                Some(count) => Ok(count.count()),
                None if arg(index).is_none() => Err(format!("{name} needs its {what}")),
                None => Err(format!(
                    "the {what} of {name} must be a constant or a parameter (a count read from the rows is no \
                     bound on what it makes)"
                )),
            }
        };
        let size_of = |index: usize| sizes.get(index).cloned().flatten();
        Ok(match self {
            Amplifier::Repeat => {
                let times = count_of(1, "count")?;
                let text = size_of(0).ok_or_else(|| {
                    format!("the text {name} repeats must be a constant or a parameter, not a value read from the rows")
                })?;
                Some(text.mul(times))
            }
            Amplifier::Pad => {
                let length = count_of(1, "length")?;
                // A character of the fill takes at most four bytes.
                let width = match arg(2) {
                    Some(Expr::Value(value)) => string_of(&value.value).map_or(4.0, widest_char),
                    Some(_) => 4.0,
                    None => 1.0,
                };
                Some(length.mul(Num::Const(width)))
            }
            Amplifier::Space => Some(count_of(0, "count")?),
            Amplifier::Format { precision } => {
                let Some(Expr::Value(value)) = arg(0) else {
                    return Err(format!("the format string of {name} must be a literal"));
                };
                let Some(format) = string_of(&value.value) else {
                    return Err(format!("the format string of {name} must be a literal"));
                };
                let widths = format_widths(format, *precision);
                let mut total = Num::Const(format.len() as f64);
                let mut next = 1;
                for width in widths {
                    total = match width {
                        Width::Fixed(width) => total.add(Num::Const(width as f64)),
                        Width::FromArgument => {
                            let width = count_of(next, "width")?;
                            next += 1;
                            total.add(width)
                        }
                        Width::Value => {
                            // The value printed: its own size when the query decides it (a value from
                            // the rows is as large as it is, whatever the format).
                            let value = size_of(next).unwrap_or(Num::Const(0.0));
                            next += 1;
                            total.add(value)
                        }
                    };
                }
                Some(total)
            }
            Amplifier::Replace => {
                let replacement = if args.len() > 2 { size_of(2) } else { Some(Num::Const(0.0)) };
                match (size_of(0), replacement) {
                    // Every character may become the replacement (an empty pattern matches
                    // everywhere).
                    (Some(text), Some(with)) => Some(text.clone().add(text.add(Num::Const(1.0)).mul(with))),
                    // A value from the rows, with a short constant in: it grows in proportion to
                    // itself, as the rows hold it.
                    (None, Some(with)) if !with.uses_params() && with.eval(&[]).is_ok_and(|size| size <= 32.0) => None,
                    (None, Some(with)) if !with.uses_params() => {
                        return Err(format!(
                            "{name} may not put more than 32 bytes in place of a match within a value read from \
                             the rows"
                        ));
                    }
                    _ => {
                        return Err(format!(
                            "the replacement of {name} must be a constant (or, within a constant, a parameter)"
                        ));
                    }
                }
            }
            Amplifier::Ratio(ratio) => size_of(0).map(|input| input.mul(Num::Const(*ratio))),
            Amplifier::Pretty => match arg(0) {
                Some(Expr::Value(value)) => string_of(&value.value).map(|json| {
                    let depth = nesting(json) as f64;
                    Num::Const(json.len() as f64 * (1.0 + 4.0 * depth))
                }),
                // Anything else from the query: as deep as it is long.
                _ => size_of(0).map(|input| input.clone().mul(input.mul(Num::Const(4.0)))),
            },
        })
    }
}

/// A count the query alone decides: numbers, parameters, and arithmetic, casts and a few
/// numeric functions over them. `None` for anything read from the rows (or not understood).
fn count(expr: &Expr, numbering: &Numbering, seen: &mut usize) -> Option<Num> {
    let binary = |left: &Expr, right: &Expr, seen: &mut usize| {
        Some((count(left, numbering, seen)?, count(right, numbering, seen)?))
    };
    match expr {
        Expr::Value(value) => match &value.value {
            Value::Number(text, _) => text.parse().ok().map(Num::Const),
            Value::Boolean(value) => Some(Num::Const(f64::from(u8::from(*value)))),
            Value::Null => Some(Num::Const(0.0)),
            Value::Placeholder(text) => numbering.param(text, seen).map(Num::Param),
            other => string_of(other).and_then(number_of).map(Num::Const),
        },
        Expr::Nested(inner) => count(inner, numbering, seen),
        Expr::Cast {
            expr,
            kind: CastKind::Cast | CastKind::DoubleColon | CastKind::TryCast | CastKind::SafeCast,
            ..
        } => count(expr, numbering, seen),
        Expr::UnaryOp { op: UnaryOperator::Minus, expr } => count(expr, numbering, seen).map(|n| Num::Neg(Box::new(n))),
        Expr::UnaryOp { op: UnaryOperator::Plus, expr } => count(expr, numbering, seen),
        Expr::BinaryOp { left, op, right } => {
            let boxed = |(a, b): (Num, Num)| (Box::new(a), Box::new(b));
            match op {
                BinaryOperator::Plus => binary(left, right, seen).map(boxed).map(|(a, b)| Num::Add(a, b)),
                BinaryOperator::Minus => binary(left, right, seen).map(boxed).map(|(a, b)| Num::Sub(a, b)),
                BinaryOperator::Multiply => binary(left, right, seen).map(boxed).map(|(a, b)| Num::Mul(a, b)),
                BinaryOperator::Divide | BinaryOperator::DuckIntegerDivide | BinaryOperator::MyIntegerDivide => {
                    binary(left, right, seen).map(boxed).map(|(a, b)| Num::Div(a, b))
                }
                // At most the left side's size.
                BinaryOperator::Modulo => binary(left, right, seen).map(|(a, _)| Num::Abs(Box::new(a))),
                BinaryOperator::PGExp => binary(left, right, seen).map(boxed).map(|(a, b)| Num::Pow(a, b)),
                _ => None,
            }
        }
        Expr::Function(function) => {
            let name = function.name.to_string().to_ascii_lowercase();
            let args: Option<Vec<Num>> =
                arguments(function).into_iter().map(|arg| count(arg, numbering, seen)).collect();
            let args = args?;
            match (name.as_str(), args.as_slice()) {
                ("abs", [a]) => Some(Num::Abs(Box::new(a.clone()))),
                ("ceil" | "ceiling" | "floor" | "round" | "trunc" | "truncate", [a, ..]) => {
                    Some(Num::Abs(Box::new(a.clone())).add(Num::Const(1.0)))
                }
                ("greatest", all) if !all.is_empty() => Some(Num::Max(all.to_vec())),
                ("least", all) if !all.is_empty() => Some(Num::Min(all.to_vec())),
                ("power" | "pow", [a, b]) => Some(Num::Pow(Box::new(a.clone()), Box::new(b.clone()))),
                ("coalesce" | "ifnull", all) if !all.is_empty() => Some(Num::Max(all.to_vec())),
                _ => None,
            }
        }
        _ => None,
    }
}

/// The size of a value the query alone decides, from above; `None` for a value read from the
/// rows (or not understood).
fn size(expr: &Expr, numbering: &Numbering, seen: &mut usize) -> Size {
    match expr {
        Expr::Value(value) => match &value.value {
            Value::Number(text, _) => Some(Num::Const(text.len() as f64)),
            Value::Null | Value::Boolean(_) => Some(Num::Const(5.0)),
            Value::Placeholder(text) => numbering.param(text, seen).map(Num::ParamLen),
            Value::HexStringLiteral(hex) => Some(Num::Const(hex.len() as f64 / 2.0)),
            other => string_of(other).map(|text| Num::Const(text.len() as f64)),
        },
        Expr::Nested(inner) | Expr::Cast { expr: inner, .. } | Expr::Collate { expr: inner, .. } => {
            // A number cast to text takes a few bytes more than its digits at most.
            size(inner, numbering, seen).map(|n| n.add(Num::Const(24.0)))
        }
        Expr::BinaryOp { left, op: BinaryOperator::StringConcat, right } => {
            let left = size(left, numbering, seen);
            let right = size(right, numbering, seen);
            Some(left?.add(right?))
        }
        Expr::Function(function) => {
            let name = function.name.to_string().to_ascii_lowercase();
            let args = arguments(function);
            let dialect = numbering.dialect;
            let inner = Numbering { dialect, first: numbering.first + *seen };
            if let Some(amplifier) = amplifier(dialect, &name) {
                let estimate = amplifier.estimate(&name, &args, &inner).ok().flatten();
                // Its placeholders are counted as the walk goes on.
                for arg in &args {
                    let _ = size(arg, numbering, seen);
                }
                return estimate;
            }
            let mut total = Num::Const(0.0);
            for arg in &args {
                total = total.add(size(arg, numbering, seen)?);
            }
            Some(match name.as_str() {
                // Functions whose output's size is known whatever they are given.
                // A character: as wide as its code point needs, four bytes when not known.
                "chr" | "char" => Num::Const(
                    args.iter()
                        .map(|arg| match count(arg, numbering, &mut 0) {
                            Some(Num::Const(point)) if point < 128.0 => 1.0,
                            Some(Num::Const(point)) if point < 2048.0 => 2.0,
                            Some(Num::Const(point)) if point < 65536.0 => 3.0,
                            _ => 4.0,
                        })
                        .sum::<f64>()
                        .max(1.0),
                ),
                "md5" | "to_hex" => Num::Const(32.0),
                "sha1" => Num::Const(40.0),
                "sha2" => Num::Const(128.0),
                "unhex" => total.mul(Num::Const(0.5)),
                // A value of its own: a number, a date, the time.
                _ if args.is_empty() => Num::Const(32.0),
                // Any other makes no more than it is given, and a little between its parts.
                _ => total.add(Num::Const(8.0 * args.len() as f64)),
            })
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sql::{AllowList, SqlValidator};

    fn validator(dialect: SqlDialect) -> SqlValidator {
        let schema = if dialect == SqlDialect::Postgres { "public" } else { "main" };
        SqlValidator::new(AllowList::new(dialect, schema).table(schema, "customers"))
    }

    fn refusal(dialect: SqlDialect, sql: &str, params: usize) -> Option<String> {
        validator(dialect).validate(sql, params).err().map(|denial| denial.message().to_owned())
    }

    #[test]
    fn amplifying_shapes_are_refused_before_they_run() {
        use SqlDialect::*;
        let lpads = format!("SELECT {}", ["md5(lpad('', 3000000, 'a'))"; 3].join(" || "));
        let deep = format!("SELECT jsonb_pretty('{}1{}')", "[".repeat(2000), "]".repeat(2000));
        let cases: &[(SqlDialect, &str, &str)] = &[
            (Postgres, "SELECT repeat('a', 100000000)", "repeat"),
            (Postgres, "SELECT md5(lpad('', 100000000, 'a')) || md5(lpad('', 100000000, 'b'))", "lpad"),
            (Postgres, "SELECT rpad('x', 10000 * 10000, 'y')", "rpad"),
            (Postgres, "SELECT repeat('ab', 5000000)", "repeat"),
            (Postgres, "SELECT lpad('', 3000000, '😀')", "lpad"),
            (Postgres, "SELECT format('%100000000s', 'x')", "format"),
            (Postgres, "SELECT format('%*s', 100000000, 'x')", "format"),
            (Postgres, "SELECT repeat('a', '100000000'::int)", "repeat"),
            (Postgres, "SELECT repeat('a', 10 ^ 9)", "repeat"),
            (Postgres, "SELECT repeat(repeat('a', 4000), 4000)", "repeat"),
            (Postgres, &lpads, "lpad"),
            (Postgres, "SELECT replace(repeat('a', 1000000), 'a', repeat('b', 100))", "replace"),
            (Postgres, "SELECT quote_literal(repeat('a', 5000000))", "quote_literal"),
            (Postgres, &deep, "jsonb_pretty"),
            (MySql, "SELECT repeat('a', 16000000)", "repeat"),
            (MySql, "SELECT space(100000000)", "space"),
            (MySql, "SELECT concat(md5(repeat('a', 5000000)), md5(repeat('b', 5000000)))", "repeat"),
            (MySql, "SELECT hex(repeat('a', 5000000))", "hex"),
            (Sqlite, "SELECT printf('%.*c', 900000000, char(1))", "printf"),
            (Sqlite, "SELECT printf('%900000000d', 1)", "printf"),
            (Sqlite, "SELECT printf('%.100000000f', 1.0)", "printf"),
            (Sqlite, "SELECT hex(printf('%.*c', 5000000, 'x'))", "hex"),
        ];
        for (dialect, sql, named) in cases {
            let reason = refusal(*dialect, sql, 0).unwrap_or_else(|| panic!("{dialect}: {sql} was accepted"));
            assert!(reason.contains("more than a result may hold (8000000 bytes)"), "{sql}: {reason}");
            assert!(reason.contains(named), "{sql}: {reason}");
        }
    }

    #[test]
    fn counts_and_formats_must_be_constants() {
        use SqlDialect::*;
        let cases: &[(SqlDialect, &str, &str)] = &[
            (Postgres, "SELECT repeat('a', id) FROM customers", "the count of repeat must be a constant"),
            (Postgres, "SELECT repeat('a', (SELECT 100000000))", "the count of repeat must be a constant"),
            (Postgres, "SELECT lpad('', n) FROM (VALUES (100000000)) AS v(n)", "the length of lpad must be a constant"),
            (Postgres, "SELECT repeat(name, 2) FROM customers", "the text repeat repeats must be a constant"),
            (Postgres, "SELECT format(name, 1) FROM customers", "the format string of format must be a literal"),
            (MySql, "SELECT space(id) FROM customers", "the count of space must be a constant"),
            (Sqlite, "SELECT printf('%.*c', id, 'x') FROM customers", "the width of printf must be a constant"),
            (Postgres, "SELECT replace(name, 'a', repeat('b', 100)) FROM customers", "more than 32 bytes"),
            (Postgres, "SELECT replace(name, 'a', name) FROM customers", "the replacement of replace must be"),
        ];
        for (dialect, sql, expected) in cases {
            let reason = refusal(*dialect, sql, 0).unwrap_or_else(|| panic!("{dialect}: {sql} was accepted"));
            assert!(reason.contains(expected), "{sql}: {reason}");
        }
    }

    #[test]
    fn a_value_built_from_two_of_a_recursive_querys_columns_is_refused() {
        for dialect in [SqlDialect::Postgres, SqlDialect::Sqlite] {
            for sql in [
                "WITH RECURSIVE r(s, n) AS (SELECT 'a', 1 UNION ALL SELECT s || s, n + 1 FROM r WHERE n < 30) SELECT length(s) FROM r",
                "WITH RECURSIVE r AS (SELECT 'a' AS s, 1 AS n UNION ALL SELECT r.s || 'x' || r.s, n + 1 FROM r WHERE n < 30) SELECT 1 FROM r",
                "WITH RECURSIVE r(a, b) AS (SELECT 'a', 'b' UNION ALL SELECT a || b, a FROM r) SELECT 1 FROM r LIMIT 40",
            ] {
                let reason = refusal(dialect, sql, 0).unwrap_or_else(|| panic!("{dialect}: {sql} was accepted"));
                assert!(reason.contains("could double at every step"), "{sql}: {reason}");
            }
        }
        let mysql = "WITH RECURSIVE r(s, n) AS (SELECT 'a', 1 UNION ALL SELECT concat(s, s), n + 1 FROM r WHERE n < 30) SELECT 1 FROM r";
        assert!(refusal(SqlDialect::MySql, mysql, 0).is_some_and(|reason| reason.contains("double")));
    }

    #[test]
    fn everyday_uses_of_the_same_functions_are_accepted() {
        use SqlDialect::*;
        let cases: &[(SqlDialect, &str)] = &[
            (Postgres, "SELECT lpad(id::text, 8, '0'), rpad(name, 20) FROM customers"),
            (Postgres, "SELECT repeat('-', 40), repeat('ab', 3000000)"),
            (Postgres, "SELECT format('%s has %s', name, id), format('%-10s|', name) FROM customers"),
            (Postgres, "SELECT replace(name, ' ', '_'), regexp_replace(name, '[aeiou]', '*', 'g') FROM customers"),
            (Postgres, "SELECT jsonb_pretty('{\"a\": [1, 2]}'), quote_literal(name) FROM customers"),
            (
                Postgres,
                "WITH RECURSIVE fib(a, b, n) AS (SELECT 0, 1, 1 UNION ALL SELECT b, a + b, n + 1 FROM fib WHERE n < 10) SELECT a FROM fib",
            ),
            (
                Postgres,
                "WITH RECURSIVE t(id, path) AS (SELECT id, name FROM customers WHERE id = 1 UNION ALL SELECT c.id, t.path || '/' || c.name FROM customers c JOIN t ON c.id = t.id + 1) SELECT path FROM t",
            ),
            (MySql, "SELECT lpad(id, 8, '0'), space(4), hex(name), repeat('=', 20) FROM customers"),
            (Sqlite, "SELECT printf('%5.2f|%-10s|%d', id, name, id), hex(name), quote(name) FROM customers"),
        ];
        for (dialect, sql) in cases {
            assert_eq!(refusal(*dialect, sql, 0), None, "{dialect}: {sql}");
        }
    }

    #[test]
    fn parameters_count_with_their_values() {
        let postgres = validator(SqlDialect::Postgres);
        let query =
            postgres.validate("SELECT repeat('a', $1), lpad('', $2 * 2)", 2).expect("constant up to its parameters");
        let check = |first: ParamValue<'_>, second: ParamValue<'_>| query.check_params(&[first, second], 8_000_000);
        assert!(check(ParamValue::Number(10.0), ParamValue::Number(20.0)).is_ok());
        assert!(check(ParamValue::Text(" 1000 "), ParamValue::Null).is_ok());
        assert!(check(ParamValue::Number(100_000_000.0), ParamValue::Number(1.0)).is_err());
        assert!(check(ParamValue::Number(1.0), ParamValue::Text("5000000")).is_err(), "twice the parameter");
        let denial = check(ParamValue::Text("0x5F5E100"), ParamValue::Null).expect_err("not a plain number");
        assert_eq!(denial.message(), "parameter 1 is used as a count and must be a number");
        assert!(check(ParamValue::Bytes(4), ParamValue::Null).is_err());
        // What repeat repeats may be a parameter: its length counts.
        let text = postgres.validate("SELECT repeat($1, 1000)", 1).expect("accepted");
        assert!(text.check_params(&[ParamValue::Text("abc")], 8_000_000).is_ok());
        assert!(text.check_params(&[ParamValue::Text(&"x".repeat(10_000))], 8_000_000).is_err());
        assert!(text.check_params(&[ParamValue::Bytes(10_000)], 8_000_000).is_err());
        // MySQL's ? are numbered in order, inside and outside the call.
        let mysql = validator(SqlDialect::MySql);
        let query = mysql.validate("SELECT ?, repeat('a', ?), ?", 3).expect("accepted");
        let values = |count: f64| [ParamValue::Text("x"), ParamValue::Number(count), ParamValue::Number(1e12)];
        assert!(query.check_params(&values(10.0), 8_000_000).is_ok(), "only the second parameter is a count");
        assert!(query.check_params(&values(1e8), 8_000_000).is_err());
        // The budget is the read's result cap.
        assert!(query.check_params(&values(10.0), 5).is_err());
    }

    /// The guard's walk is as deep as the tree; the validator gives it the stack it needs.
    #[test]
    fn a_deep_count_is_examined_without_running_out_of_stack() {
        let sum = vec!["1"; 2400].join(" + ");
        let deep = format!("SELECT repeat('a', {sum}), repeat('b', {sum})");
        std::thread::Builder::new()
            .stack_size(256 << 10)
            .spawn(move || {
                let result = validator(SqlDialect::Postgres).validate(&deep, 0);
                assert!(result.is_ok(), "{:?}", result.err());
            })
            .expect("spawn")
            .join()
            .expect("no overflow on a 256 KiB stack");
    }

    #[test]
    fn the_budget_is_the_validators() {
        let small = SqlValidator::new(AllowList::new(SqlDialect::Postgres, "public")).with_budget(100);
        assert!(small.validate("SELECT repeat('a', 100)", 0).is_ok());
        assert!(small.validate("SELECT repeat('a', 101)", 0).is_err());
    }

    #[test]
    fn format_strings_give_their_widths_in_argument_order() {
        use Width::*;
        assert_eq!(format_widths("%s and %10s", false), [Value, Fixed(10), Value]);
        assert_eq!(format_widths("%*s|%-5s|%%|%1$s", false), [FromArgument, Value, Fixed(5), Value, Value]);
        assert_eq!(format_widths("%.*c%08.3f%s", true), [FromArgument, Value, Fixed(8), Fixed(3), Value, Value]);
        assert_eq!(format_widths("%.100000000c", true), [Fixed(100_000_000), Value]);
        assert_eq!(format_widths("%", true), []);
    }

    #[test]
    fn numbers_of_text_are_plain_decimals_only() {
        assert_eq!(number_of(" 100000000 "), Some(1e8));
        assert_eq!(number_of("-5"), Some(-5.0));
        assert_eq!(number_of("1e3"), Some(1000.0));
        for text in ["0x10", "1_000", "abc", "", " ", "+", "NaN"] {
            assert_eq!(number_of(text), None, "{text}");
        }
    }

    #[test]
    fn nesting_is_the_deepest_bracket() {
        assert_eq!(nesting("[1, [2, {\"a\": [3]}]]"), 4);
        assert_eq!(nesting("{}"), 1);
        assert_eq!(nesting("1"), 0);
    }
}
