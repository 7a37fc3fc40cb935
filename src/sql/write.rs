//! The gate for the statement of a write tool declared in the configuration (`[[tools]]`,
//! `access = "write"`): exactly one INSERT, UPDATE or DELETE, checked when the configuration is
//! read, so that a server with a statement that fails it does not start.
//!
//! The statement is checked as a query is: every table it names or reads (the target
//! included) must be allow-listed, every function allowed, every placeholder counted; and what
//! runs is the checked tree printed again, with tables written out as `schema.table`. Besides:
//! - an UPDATE or DELETE needs a WHERE, unless the tool says `allow_unbounded`;
//! - no REPLACE (which deletes rows before it inserts), no multi-table DELETE, no INSERT into a
//!   table function;
//! - over a table with column rules, a denied or masked column may only be written (an INSERT
//!   column, a SET target), never read (in a WHERE, a value, a subquery), and nothing is
//!   returned (`RETURNING`): a write must not carry a ruled value out, nor let its row count
//!   tell one.

use sqlparser::ast::{
    Assignment, AssignmentTarget, ObjectName, OnConflictAction, OnInsert, SqliteOnConflict, Statement, TableObject,
    VisitMut,
};

use sqlparser::tokenizer::{Token, TokenWithSpan};

use super::columns::{ColumnRule, fold};
use super::{SqlDialect, SqlValidator, TableName, amplify, fingerprint, rejected, walk};
use crate::denial::{Denial, DenialCode};

/// A write statement the gate accepted: one INSERT, UPDATE or DELETE, as it will run.
#[derive(Debug)]
pub struct ValidatedWrite {
    dialect: SqlDialect,
    text: String,
    tables: Vec<TableName>,
    fingerprint: String,
    params: usize,
    amplification: amplify::Amplification,
    returns_rows: bool,
}

impl ValidatedWrite {
    /// The dialect it was validated for.
    pub fn dialect(&self) -> SqlDialect {
        self.dialect
    }

    /// The text to execute: the validated tree printed again, tables fully qualified.
    pub fn sql(&self) -> &str {
        &self.text
    }

    /// Every table it writes or reads, sorted, without duplicates.
    pub fn tables(&self) -> &[TableName] {
        &self.tables
    }

    /// A hash of the statement's shape with literals replaced, for audit.
    pub fn fingerprint(&self) -> &str {
        &self.fingerprint
    }

    /// How many parameters it takes.
    pub fn param_count(&self) -> usize {
        self.params
    }

    /// Whether it returns rows (`RETURNING`).
    pub fn returns_rows(&self) -> bool {
        self.returns_rows
    }

    /// The amplification guard with the parameters' values (see
    /// [`ValidatedQuery::check_params`](super::ValidatedQuery::check_params)).
    pub fn check_params(&self, params: &[super::ParamValue<'_>], max_bytes: usize) -> Result<(), Denial> {
        self.amplification.check(params, max_bytes).map_err(rejected)
    }
}

impl SqlValidator {
    /// Validates the statement of a declared write tool, to be run with `params` parameters.
    /// `allow_unbounded` lets an UPDATE or DELETE go without a WHERE.
    pub fn validate_write(&self, sql: &str, params: usize, allow_unbounded: bool) -> Result<ValidatedWrite, Denial> {
        let tokens = self.read_tokens(sql)?;
        let significant = tokens.iter().filter(|token| !matches!(token.token, Token::Whitespace(_))).count();
        let stack = Self::STACK_BASE + significant * Self::STACK_PER_TOKEN;
        stacker::maybe_grow(stack, stack, || self.check_write(tokens, params, allow_unbounded))
    }

    fn check_write(
        &self,
        tokens: Vec<TokenWithSpan>,
        params: usize,
        allow_unbounded: bool,
    ) -> Result<ValidatedWrite, Denial> {
        let mut statement = self.parse(tokens)?;
        let shape = shape(&statement, allow_unbounded)?;
        let mut walker = walk::Walker::for_write(self.dialect, &self.allow);
        if let std::ops::ControlFlow::Break(reason) = statement.visit(&mut walker) {
            return Err(rejected(reason));
        }
        let (mut tables, placeholders) = walker.finish();
        tables.sort();
        tables.dedup();
        let amplification = amplify::examine(&statement, self.dialect).map_err(rejected)?;
        if !amplification.uses_params() {
            amplification.check(&[], self.budget).map_err(rejected)?;
        }
        let expected = placeholders.count(self.dialect).map_err(rejected)?;
        if expected != params {
            return Err(rejected(format!(
                "the statement has {expected} placeholder(s) but the tool declares {params} param(s); \
                 each param binds one placeholder"
            )));
        }
        let text = statement.to_string();
        self.check_write_columns(&text, &tables, &shape)?;
        let reparsed = self.parse(self.tokenize(&text)?)?;
        if reparsed != statement {
            return Err(rejected("the statement does not have a stable form; simplify it"));
        }
        Ok(ValidatedWrite {
            dialect: self.dialect,
            text,
            tables,
            fingerprint: fingerprint(reparsed),
            params,
            amplification,
            returns_rows: shape.returning,
        })
    }

    /// Over ruled tables, a ruled column may be named only as often as it is written.
    fn check_write_columns(&self, text: &str, tables: &[TableName], shape: &Shape) -> Result<(), Denial> {
        let ruled: Vec<(&TableName, &ColumnRule)> = tables
            .iter()
            .filter_map(|table| self.allow.column_rule(&table.schema, &table.table).map(|rule| (table, rule)))
            .filter(|(_, rule)| !rule.is_empty())
            .collect();
        if ruled.is_empty() {
            return Ok(());
        }
        let denied = |message: String| Denial::new(DenialCode::ColumnDenied, message);
        if shape.returning {
            return Err(denied(format!(
                "RETURNING is not allowed on {}, which has column rules",
                ruled.iter().map(|(table, _)| table.to_string()).collect::<Vec<_>>().join(", ")
            )));
        }
        let words: Vec<String> = self
            .tokenize(text)?
            .into_iter()
            .filter_map(|token| match token.token {
                Token::Word(word) => Some(fold(&word.value)),
                _ => None,
            })
            .collect();
        for (table, rule) in ruled {
            for column in rule.columns() {
                let named = words.iter().filter(|word| *word == column).count();
                let written = shape.targets.iter().filter(|target| *target == column).count();
                if named > written {
                    let how = if rule.is_denied(column) { "denied" } else { "masked" };
                    return Err(denied(format!(
                        "column {column} of {table} is {how}: a write tool may write it, never read it"
                    )));
                }
            }
        }
        Ok(())
    }
}

/// What the statement's kind tells: the columns it writes, and whether it returns rows.
struct Shape {
    targets: Vec<String>,
    returning: bool,
}

/// Checks the statement's kind and clauses; returns its shape.
fn shape(statement: &Statement, allow_unbounded: bool) -> Result<Shape, Denial> {
    let unbounded = |kind: &str| {
        rejected(format!(
            "{kind} without WHERE changes every row; add a WHERE, or set allow_unbounded = true if that is meant"
        ))
    };
    let mut targets = Vec::new();
    let returning = match statement {
        Statement::Insert(insert) => {
            if insert.replace_into || matches!(insert.or, Some(SqliteOnConflict::Replace)) {
                return Err(rejected("REPLACE deletes rows before it inserts; write an INSERT or an UPDATE"));
            }
            if !matches!(insert.table, TableObject::TableName(_)) {
                return Err(rejected("INSERT into a table function is not allowed"));
            }
            if insert.overwrite || insert.partitioned.is_some() || insert.output.is_some() {
                return Err(rejected("this INSERT clause is not supported"));
            }
            targets.extend(insert.columns.iter().map(last_part));
            assigned(&insert.assignments, &mut targets);
            match &insert.on {
                Some(OnInsert::DuplicateKeyUpdate(assignments)) => assigned(assignments, &mut targets),
                Some(OnInsert::OnConflict(conflict)) => {
                    if let OnConflictAction::DoUpdate(update) = &conflict.action {
                        assigned(&update.assignments, &mut targets);
                    }
                }
                Some(_) => return Err(rejected("this ON clause of INSERT is not supported")),
                None => {}
            }
            insert.returning.is_some()
        }
        Statement::Update(update) => {
            if update.selection.is_none() && !allow_unbounded {
                return Err(unbounded("UPDATE"));
            }
            if update.output.is_some() {
                return Err(rejected("this UPDATE clause is not supported"));
            }
            assigned(&update.assignments, &mut targets);
            update.returning.is_some()
        }
        Statement::Delete(delete) => {
            if !delete.tables.is_empty() {
                return Err(rejected("a DELETE from several tables is not allowed; delete from one"));
            }
            if delete.selection.is_none() && !allow_unbounded {
                return Err(unbounded("DELETE"));
            }
            if delete.output.is_some() {
                return Err(rejected("this DELETE clause is not supported"));
            }
            delete.returning.is_some()
        }
        other => {
            return Err(rejected(format!(
                "a write tool's statement is one INSERT, UPDATE or DELETE, not {}",
                walk::statement_kind(other)
            )));
        }
    };
    Ok(Shape { targets, returning })
}

fn assigned(assignments: &[Assignment], targets: &mut Vec<String>) {
    for assignment in assignments {
        match &assignment.target {
            AssignmentTarget::ColumnName(name) => targets.push(last_part(name)),
            AssignmentTarget::Tuple(names) => targets.extend(names.iter().map(last_part)),
        }
    }
}

/// A column name's last part, folded as the column rules fold.
fn last_part(name: &ObjectName) -> String {
    name.0.last().and_then(|part| part.as_ident()).map(|ident| fold(&ident.value)).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sql::{AllowList, Mask};

    fn validator(dialect: SqlDialect) -> SqlValidator {
        let schema = match dialect {
            SqlDialect::Postgres => "public",
            SqlDialect::MySql => "shop",
            SqlDialect::Sqlite => "main",
        };
        let rule = ColumnRule::new().deny("ssn").expect("rule").mask("card", Mask::Last4).expect("rule");
        SqlValidator::new(
            AllowList::new(dialect, schema)
                .table(schema, "notes")
                .table(schema, "people")
                .columns(schema, "people", rule),
        )
    }

    fn refusal(dialect: SqlDialect, sql: &str, params: usize) -> String {
        validator(dialect).validate_write(sql, params, false).expect_err(sql).message().to_owned()
    }

    #[test]
    fn one_bounded_insert_update_or_delete_on_allowed_tables_passes() {
        let pg = validator(SqlDialect::Postgres);
        let insert = pg.validate_write("INSERT INTO notes (body, tenant) VALUES ($1, $2)", 2, false).expect("insert");
        assert_eq!(insert.sql(), r#"INSERT INTO "public"."notes" (body, tenant) VALUES ($1, $2)"#);
        assert_eq!(insert.tables().len(), 1);
        assert_eq!(insert.param_count(), 2);
        assert!(!insert.returns_rows());
        let update = pg.validate_write("UPDATE notes SET body = $1 WHERE id = $2 RETURNING id", 2, false).expect("ok");
        assert!(update.returns_rows());
        pg.validate_write("DELETE FROM notes WHERE id = $1", 1, false).expect("delete");
        pg.validate_write("DELETE FROM notes", 0, true).expect("unbounded, when allowed");
        let mysql = validator(SqlDialect::MySql);
        let update = mysql.validate_write("UPDATE notes SET body = ? WHERE id = ?", 2, false).expect("mysql");
        assert_eq!(update.dialect(), SqlDialect::MySql);
        let sqlite = validator(SqlDialect::Sqlite);
        sqlite
            .validate_write("INSERT INTO notes (body) SELECT name FROM people WHERE id = ?", 1, false)
            .expect("sqlite");
    }

    #[test]
    fn everything_else_is_refused_with_its_reason() {
        let pg = SqlDialect::Postgres;
        for (sql, params, reason) in [
            ("DELETE FROM notes", 0, "DELETE without WHERE"),
            ("UPDATE notes SET body = $1", 1, "UPDATE without WHERE"),
            ("SELECT 1", 0, "not SELECT"),
            ("DROP TABLE notes", 0, "not DROP TABLE"),
            ("INSERT INTO secrets (a) VALUES ($1)", 1, "secrets is not in the allow-list"),
            ("INSERT INTO notes (a) SELECT a FROM secrets", 0, "secrets is not in the allow-list"),
            ("UPDATE notes SET body = $1 WHERE id IN (SELECT id FROM pg_user)", 1, "not in the allow-list"),
            ("DELETE FROM notes WHERE id = $1", 2, "1 placeholder(s) but the tool declares 2"),
            ("INSERT INTO notes (a) VALUES ($1); DELETE FROM notes WHERE id = 1", 1, "exactly one statement"),
            ("UPDATE notes SET body = pg_read_file('/etc/passwd') WHERE id = 1", 0, "function pg_read_file"),
            ("WITH d AS (DELETE FROM notes RETURNING id) INSERT INTO notes (a) SELECT id FROM d", 0, "not WITH"),
        ] {
            let message = refusal(pg, sql, params);
            assert!(message.contains(reason), "{sql}: {message}");
        }
        assert!(refusal(SqlDialect::MySql, "REPLACE INTO notes (a) VALUES (?)", 1).contains("REPLACE"));
        assert!(refusal(SqlDialect::Sqlite, "INSERT OR REPLACE INTO notes (a) VALUES (?)", 1).contains("REPLACE"));
        assert!(
            refusal(SqlDialect::MySql, "DELETE notes, people FROM notes JOIN people WHERE 1", 0).contains("several")
        );
    }

    #[test]
    fn ruled_columns_may_be_written_but_never_read() {
        let pg = validator(SqlDialect::Postgres);
        pg.validate_write("INSERT INTO people (name, ssn, card) VALUES ($1, $2, $3)", 3, false).expect("written");
        pg.validate_write("UPDATE people SET ssn = $1, card = $2 WHERE id = $3", 3, false).expect("written");
        for sql in [
            "UPDATE people SET name = ssn WHERE id = 1",
            "UPDATE people SET name = $1 WHERE ssn = '123'",
            "DELETE FROM people WHERE card LIKE '4%'",
            "INSERT INTO notes (body) SELECT ssn FROM people",
            "UPDATE people SET ssn = ssn WHERE id = 1",
            "UPDATE people SET name = $1 WHERE id = 1 RETURNING name",
        ] {
            let params = sql.matches('$').count();
            let denial = pg.validate_write(sql, params, false).expect_err(sql);
            assert_eq!(denial.code(), DenialCode::ColumnDenied, "{sql}: {}", denial.message());
        }
    }

    #[test]
    fn upserts_and_tuple_assignments_count_their_targets_as_written() {
        let pg = validator(SqlDialect::Postgres);
        for sql in [
            "UPDATE people SET (ssn, card) = ($1, $2) WHERE id = $3",
            "INSERT INTO people (name, ssn) VALUES ($1, $2) ON CONFLICT (id) DO UPDATE SET ssn = $3",
        ] {
            pg.validate_write(sql, 3, false).unwrap_or_else(|denial| panic!("{sql}: {}", denial.message()));
        }
        let mysql = validator(SqlDialect::MySql);
        mysql
            .validate_write("INSERT INTO people (name, ssn) VALUES (?, ?) ON DUPLICATE KEY UPDATE ssn = ?", 3, false)
            .expect("a ruled column written on a duplicate key");
        // A conflict target is a read of the column: which rows already hold a value shows.
        let denial = pg
            .validate_write("INSERT INTO people (ssn) VALUES ($1) ON CONFLICT (ssn) DO NOTHING", 1, false)
            .expect_err("the conflict target reads ssn");
        assert_eq!(denial.code(), DenialCode::ColumnDenied);
        let denial = mysql
            .validate_write("INSERT INTO people (name) VALUES (?) ON DUPLICATE KEY UPDATE name = card", 1, false)
            .expect_err("the update reads card");
        assert_eq!(denial.message(), "column card of shop.people is masked: a write tool may write it, never read it");
        let denial = pg.validate_write("UPDATE people SET name = ssn WHERE id = 1", 0, false).expect_err("reads ssn");
        assert_eq!(denial.message(), "column ssn of public.people is denied: a write tool may write it, never read it");
    }

    #[test]
    fn an_unbounded_update_is_accepted_only_when_allowed() {
        let pg = validator(SqlDialect::Postgres);
        let update = pg.validate_write("UPDATE notes SET body = $1", 1, true).expect("allowed");
        assert_eq!(update.sql(), r#"UPDATE "public"."notes" SET body = $1"#);
        assert!(pg.validate_write("UPDATE notes SET body = $1", 1, false).is_err());
    }

    #[test]
    fn a_write_names_each_table_once_and_has_a_fingerprint_of_its_shape() {
        let pg = validator(SqlDialect::Postgres);
        let write = pg
            .validate_write(
                "INSERT INTO notes (body) SELECT body FROM notes WHERE id IN (SELECT id FROM notes)",
                0,
                false,
            )
            .expect("accepted");
        assert_eq!(write.tables().len(), 1, "{:?}", write.tables());
        assert_eq!(write.tables()[0].to_string(), "public.notes");
        assert_eq!(write.dialect(), SqlDialect::Postgres);
        let first = pg.validate_write("UPDATE notes SET body = 'a' WHERE id = 1", 0, false).expect("accepted");
        let second = pg.validate_write("UPDATE notes SET body = 'b' WHERE id = 2", 0, false).expect("accepted");
        let other = pg.validate_write("DELETE FROM notes WHERE id = 1", 0, false).expect("accepted");
        assert_eq!(first.fingerprint(), second.fingerprint(), "literals do not change the shape");
        assert_ne!(first.fingerprint(), other.fingerprint());
        assert_eq!(first.fingerprint().len(), 64, "{}", first.fingerprint());
    }

    #[test]
    fn clauses_the_gate_does_not_know_are_refused() {
        let mysql = validator(SqlDialect::MySql);
        let denial = mysql
            .validate_write("INSERT INTO notes PARTITION (p0) VALUES (?)", 1, false)
            .expect_err("a partition clause");
        assert!(denial.message().contains("not supported"), "{}", denial.message());
    }

    /// On a thread with a small stack the gate moves to a stack of its own, as a query's does.
    #[test]
    fn a_deep_write_is_validated_on_a_small_stack() {
        let deep = format!("UPDATE notes SET body = {}1 WHERE id = 1", "1+".repeat(SqlValidator::MAX_TOKENS / 2 - 10));
        std::thread::Builder::new()
            .stack_size(128 << 10)
            .spawn(move || {
                let write = validator(SqlDialect::Postgres).validate_write(&deep, 0, false);
                assert!(write.is_ok(), "{:?}", write.map(|_| ()).map_err(|denial| denial.message().to_owned()));
            })
            .expect("spawn")
            .join()
            .expect("no overflow on a 128 KiB stack");
    }

    #[test]
    fn the_amplification_guard_holds_for_writes() {
        let pg = validator(SqlDialect::Postgres);
        let denial = pg
            .validate_write("UPDATE notes SET body = repeat('x', 100000000) WHERE id = 1", 0, false)
            .expect_err("a constant amplification over the budget is refused when the config is read");
        assert_eq!(denial.code(), DenialCode::QueryRejected);
        pg.validate_write("UPDATE notes SET body = repeat('x', 10) WHERE id = 1", 0, false).expect("small");
        let write = pg.validate_write("UPDATE notes SET body = repeat('x', $1) WHERE id = $2", 2, false).expect("ok");
        let params = |count: f64| [super::super::ParamValue::Number(count), super::super::ParamValue::Number(1.0)];
        assert!(write.check_params(&params(10.0), 8_000_000).is_ok());
        assert!(write.check_params(&params(1e8), 8_000_000).is_err());
    }
}
