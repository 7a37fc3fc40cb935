//! SQL validation: the read-only gate for caller-written SQL. The only module that imports
//! sqlparser.
//!
//! A query is parsed with the target database's own dialect and accepted only if it is exactly
//! one pure query (SELECT, VALUES, set operations) that:
//! - calls only functions on the dialect's allow-list,
//! - reads only allow-listed tables, with exact CTE scoping and the dialect's identifier folding,
//! - has no data-modifying CTE, no `SELECT … INTO`, no locking clause,
//! - has as many placeholders as parameters given.
//!
//! What runs is not the caller's text. It is the validated syntax tree, printed again with
//! every table written out as `schema.table`. So comments, executable comments and the
//! session's search path cannot change what is read. That printed text must parse back to
//! exactly the tree that was checked. Anything the parser does not understand is rejected.

mod amplify;
mod columns;
mod functions;
mod walk;
mod write;

pub use amplify::ParamValue;
pub use columns::{ColumnRule, Mask, MaskKey, Masks};
pub use write::ValidatedWrite;

/// Whether the gate lets `name` be called as a table in FROM (SQLite's `json_each`, say), so
/// that an engine-side check can let the same through.
pub fn is_table_function(dialect: SqlDialect, name: &str) -> bool {
    functions::is_allowed_in_from(dialect, name)
}

use std::collections::{HashMap, HashSet};
use std::fmt;

use sha2::{Digest, Sha256};
use sqlparser::ast::{Ident, Statement, Value, ValueWithSpan, VisitMut, VisitorMut};
use sqlparser::dialect::{Dialect, MySqlDialect, PostgreSqlDialect, SQLiteDialect};
use sqlparser::parser::Parser;
use sqlparser::tokenizer::{Token, TokenWithSpan, Tokenizer};

use crate::denial::{Denial, DenialCode};

/// The SQL dialect of the target database.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SqlDialect {
    /// PostgreSQL: `$1` placeholders, unquoted names fold to lower case.
    Postgres,
    /// MySQL and MariaDB: `?` placeholders, table names compared case-insensitively.
    MySql,
    /// SQLite: `?` placeholders, names compared case-insensitively.
    Sqlite,
}

impl SqlDialect {
    fn parser(self) -> &'static dyn Dialect {
        match self {
            SqlDialect::Postgres => &PostgreSqlDialect {},
            SqlDialect::MySql => &MySqlDialect {},
            SqlDialect::Sqlite => &SQLiteDialect {},
        }
    }

    /// Folds an identifier as the database does: PostgreSQL lower-cases unquoted names and
    /// keeps quoted ones exact; MySQL and SQLite table names are compared case-insensitively.
    fn fold(self, ident: &Ident) -> String {
        match self {
            SqlDialect::Postgres if ident.quote_style.is_some() => ident.value.clone(),
            _ => ident.value.to_ascii_lowercase(),
        }
    }

    /// The key a CTE name is matched by. MySQL is matched exactly: were its CTE names
    /// case-sensitive and ours not, `FROM X` could pass as CTE `x` while MySQL reads table
    /// `X` unchecked. Matching exactly, such a reference is checked as a table instead.
    fn cte_key(self, ident: &Ident) -> String {
        match self {
            SqlDialect::MySql => ident.value.clone(),
            SqlDialect::Postgres | SqlDialect::Sqlite => self.fold(ident),
        }
    }

    /// Folds a name given in configuration, read as an unquoted identifier.
    fn fold_config(self, name: &str) -> String {
        name.to_ascii_lowercase()
    }

    fn quote(self) -> char {
        match self {
            SqlDialect::MySql => '`',
            SqlDialect::Postgres | SqlDialect::Sqlite => '"',
        }
    }

    /// Whether `schema.table` is a system catalog of this dialect.
    fn is_catalog(self, schema: &str, table: &str) -> bool {
        match self {
            SqlDialect::Postgres => schema == "information_schema" || schema.starts_with("pg_"),
            SqlDialect::MySql => {
                matches!(schema, "mysql" | "information_schema" | "performance_schema" | "sys")
            }
            SqlDialect::Sqlite => table.starts_with("sqlite_"),
        }
    }
}

impl fmt::Display for SqlDialect {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            SqlDialect::Postgres => "postgres",
            SqlDialect::MySql => "mysql",
            SqlDialect::Sqlite => "sqlite",
        })
    }
}

/// The tables a query may read: whole schemas, or single tables. Empty means nothing.
///
/// Names are read as unquoted identifiers of the dialect (so case-insensitively). A schema
/// allowed whole does not include system catalogs; a catalog is readable only when named
/// explicitly.
#[derive(Debug, Clone)]
pub struct AllowList {
    dialect: SqlDialect,
    default_schema: String,
    schemas: HashMap<String, SchemaRule>,
    /// Functions, session facts and catalog lookups allowed beyond the dialect's own list.
    functions: HashSet<String>,
    /// Denied and masked columns, by table.
    columns: HashMap<TableName, ColumnRule>,
}

#[derive(Debug, Clone)]
enum SchemaRule {
    Every,
    Tables(HashSet<String>),
}

impl AllowList {
    /// An empty allow-list; unqualified table names resolve to `default_schema` (PostgreSQL
    /// schema, MySQL database, SQLite `main`), never to the session's search path.
    pub fn new(dialect: SqlDialect, default_schema: &str) -> Self {
        AllowList {
            dialect,
            default_schema: dialect.fold_config(default_schema),
            schemas: HashMap::new(),
            functions: HashSet::new(),
            columns: HashMap::new(),
        }
    }

    /// Allows every table of `schema`, except system catalogs.
    #[must_use]
    pub fn schema(mut self, schema: &str) -> Self {
        self.schemas.insert(self.dialect.fold_config(schema), SchemaRule::Every);
        self
    }

    /// Allows one table.
    #[must_use]
    pub fn table(mut self, schema: &str, table: &str) -> Self {
        let table = self.dialect.fold_config(table);
        match self.schemas.entry(self.dialect.fold_config(schema)).or_insert_with(|| SchemaRule::Tables(HashSet::new()))
        {
            SchemaRule::Every => {}
            SchemaRule::Tables(tables) => {
                tables.insert(table);
            }
        }
        self
    }

    /// Allows, beyond the dialect's own list, a function (`current_setting`), a value function
    /// that names the session (`current_user`, `current_role`, `current_schema`) or a
    /// PostgreSQL catalog lookup type (`regclass`, for `'t'::regclass`), by its lower-case
    /// name. What the gate refuses by default tells who the session is or what the catalog
    /// holds: allow only what the agent needs. A function that sleeps, locks, reads files,
    /// touches sequences or settings or reaches another server (`pg_sleep`, `set_config`,
    /// `dblink`…) cannot be allowed: an error names it.
    pub fn function(mut self, name: &str) -> Result<Self, String> {
        let name = name.trim().to_ascii_lowercase();
        if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return Err(format!("{name:?} is not a function name"));
        }
        if functions::NEVER.contains(&name.as_str()) {
            return Err(format!("{name} can never be allowed: it has effects beyond reading"));
        }
        self.functions.insert(name);
        Ok(self)
    }

    /// Denies or masks columns of one table (see [`ColumnRule`]): a query that reads it may
    /// not reach a denied column in any way, and a masked column only as a bare selection,
    /// whose values are masked on their way out. A table given rules again has only the last.
    #[must_use]
    pub fn columns(mut self, schema: &str, table: &str, rule: ColumnRule) -> Self {
        let name = TableName { schema: self.dialect.fold_config(schema), table: self.dialect.fold_config(table) };
        self.columns.insert(name, rule);
        self
    }

    /// The column rules of a table, as the catalog or a query names it. Compared
    /// case-insensitively in every dialect, so that a rule also holds for a PostgreSQL table
    /// whose quoted name differs from it only by case: where a table could be the ruled one, it
    /// is taken to be.
    pub fn column_rule(&self, schema: &str, table: &str) -> Option<&ColumnRule> {
        self.columns.get(&TableName { schema: schema.to_ascii_lowercase(), table: table.to_ascii_lowercase() })
    }

    /// Every table's column rules, by table (folded as configuration names are).
    pub fn column_rules(&self) -> impl Iterator<Item = (&TableName, &ColumnRule)> {
        self.columns.iter()
    }

    /// The same allow-list without its column rules: for `sqlwarden check`, which looks at
    /// whether the ruled columns exist, and so must see them.
    pub fn without_column_rules(&self) -> AllowList {
        AllowList { columns: HashMap::new(), ..self.clone() }
    }

    /// Whether any table has column rules.
    pub fn has_column_rules(&self) -> bool {
        !self.columns.is_empty()
    }

    /// Whether `name` (lower case) was allowed by [`AllowList::function`].
    pub(crate) fn allows_function(&self, name: &str) -> bool {
        self.functions.contains(name)
    }

    /// The schema unqualified names resolve to.
    pub fn default_schema(&self) -> &str {
        &self.default_schema
    }

    /// The dialect the names are folded for.
    pub fn dialect(&self) -> SqlDialect {
        self.dialect
    }

    /// The schemas with at least one allowed table, folded.
    pub fn schemas(&self) -> impl Iterator<Item = &str> {
        self.schemas.keys().map(String::as_str)
    }

    /// Whether a table named as the database's catalog names it may be read. PostgreSQL
    /// names are compared exactly; MySQL and SQLite names case-insensitively.
    pub fn permits(&self, schema: &str, table: &str) -> bool {
        match self.dialect {
            SqlDialect::Postgres => self.allows(&TableName { schema: schema.to_owned(), table: table.to_owned() }),
            SqlDialect::MySql | SqlDialect::Sqlite => {
                self.allows(&TableName { schema: schema.to_ascii_lowercase(), table: table.to_ascii_lowercase() })
            }
        }
    }

    /// Resolves a table name a caller gave as text (not SQL): unquoted-identifier folding,
    /// the default schema when none is given.
    pub fn resolve(&self, schema: Option<&str>, table: &str) -> TableName {
        TableName {
            schema: schema.map_or_else(|| self.default_schema.clone(), |schema| self.dialect.fold_config(schema)),
            table: self.dialect.fold_config(table),
        }
    }

    pub(crate) fn allows(&self, name: &TableName) -> bool {
        let catalog = self.dialect.is_catalog(&name.schema, &name.table);
        match self.schemas.get(&name.schema) {
            Some(SchemaRule::Every) => !catalog || self.dialect.is_catalog(&name.schema, ""),
            Some(SchemaRule::Tables(tables)) => tables.contains(&name.table),
            None => false,
        }
    }
}

/// A table a query reads, after folding and resolution.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TableName {
    /// Schema (PostgreSQL), database (MySQL) or `main` (SQLite).
    pub schema: String,
    /// Table name.
    pub table: String,
}

impl fmt::Display for TableName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.schema, self.table)
    }
}

/// A query the validator accepted. Only [`SqlValidator::validate`] makes one, and executing
/// caller SQL requires one.
#[derive(Debug)]
pub struct ValidatedQuery {
    dialect: SqlDialect,
    text: String,
    tables: Vec<TableName>,
    fingerprint: String,
    params: usize,
    amplification: amplify::Amplification,
    masks: Masks,
}

impl ValidatedQuery {
    /// The dialect it was validated for.
    pub fn dialect(&self) -> SqlDialect {
        self.dialect
    }

    /// The text to execute: the validated tree printed again, tables fully qualified.
    pub fn sql(&self) -> &str {
        &self.text
    }

    /// Every table it reads, sorted, without duplicates.
    pub fn tables(&self) -> &[TableName] {
        &self.tables
    }

    /// A hash of the query's shape with literals replaced: stable across white space and
    /// literal values, different when the tables differ. For audit.
    pub fn fingerprint(&self) -> &str {
        &self.fingerprint
    }

    /// How many parameters it takes.
    pub fn param_count(&self) -> usize {
        self.params
    }

    /// The result's masked columns: (position, mask), by position. Each is a bare selection of
    /// a masked column; its values must be masked before they leave the process.
    pub fn masks(&self) -> &[(usize, Mask)] {
        &self.masks
    }

    /// The amplification guard, with the parameters' values: what the query's size-amplifying
    /// calls (`repeat`, `lpad`, format widths …) make together may not exceed `max_bytes`, the
    /// result cap. The validator checked the parts that are constant; parameters count too,
    /// since the database folds them as constants (see the module documentation of `sql`).
    /// Every adapter checks this before it runs the query.
    pub fn check_params(&self, params: &[ParamValue<'_>], max_bytes: usize) -> Result<(), Denial> {
        self.amplification.check(params, max_bytes).map_err(rejected)
    }

    /// A copy, for the validator's memory of accepted queries only (the type is not `Clone`:
    /// a validated query comes from validation).
    fn duplicate(&self) -> Self {
        ValidatedQuery {
            dialect: self.dialect,
            text: self.text.clone(),
            tables: self.tables.clone(),
            fingerprint: self.fingerprint.clone(),
            params: self.params,
            amplification: self.amplification.clone(),
            masks: self.masks.clone(),
        }
    }
}

/// Validates caller SQL for one dialect against one allow-list.
#[derive(Debug, Clone)]
pub struct SqlValidator {
    dialect: SqlDialect,
    allow: AllowList,
    /// What a query's size-amplifying calls may make, in bytes: the result cap.
    budget: usize,
    accepted: std::sync::Arc<Accepted>,
}

/// The queries a validator accepted, by their exact text: validation is a function of the text,
/// the parameter count and the validator's own (fixed) dialect and allow-list, so a repeated
/// query skips the parses and gets what validating it again would give. Only acceptances are
/// kept, only of short texts, and at most [`Accepted::CAPACITY`] of them: when full, the
/// memory is cleared and fills again.
#[derive(Default)]
struct Accepted(std::sync::Mutex<HashMap<Box<str>, ValidatedQuery>>);

impl Accepted {
    const CAPACITY: usize = 256;
    const MAX_TEXT_BYTES: usize = 2048;

    fn get(&self, sql: &str, params: usize) -> Option<ValidatedQuery> {
        let entries = self.0.lock().ok()?;
        entries.get(sql).filter(|query| query.params == params).map(ValidatedQuery::duplicate)
    }

    fn keep(&self, sql: &str, query: &ValidatedQuery) {
        if sql.len() > Self::MAX_TEXT_BYTES {
            return;
        }
        let Ok(mut entries) = self.0.lock() else { return };
        if entries.len() >= Self::CAPACITY {
            entries.clear();
        }
        entries.insert(sql.into(), query.duplicate());
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.0.lock().map_or(0, |entries| entries.len())
    }
}

impl fmt::Debug for Accepted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Accepted")
    }
}

impl SqlValidator {
    /// The longest query accepted, in bytes.
    pub const MAX_QUERY_BYTES: usize = 64 * 1024;
    /// The most tokens (words, literals, operators) a query may have. Every level of the
    /// syntax tree takes at least one token, so this also bounds how deep any tree can be,
    /// including operator chains the parser builds without recursing.
    pub const MAX_TOKENS: usize = 10_000;
    /// How deeply queries and expressions may nest, as the parser counts it.
    pub const MAX_NESTING: usize = 64;
    /// The stack a validation needs: a base, and a share per token, since a tree is at most
    /// as deep as its text has tokens. With less left, it runs on a fresh stack that large.
    const STACK_BASE: usize = 1 << 20;
    const STACK_PER_TOKEN: usize = 2 << 10;

    /// What a query's size-amplifying calls may make when nothing else is set: the default
    /// result cap.
    pub const DEFAULT_BUDGET: usize = 8_000_000;

    /// A validator for `allow.dialect`.
    pub fn new(allow: AllowList) -> Self {
        SqlValidator { dialect: allow.dialect, allow, budget: Self::DEFAULT_BUDGET, accepted: Default::default() }
    }

    /// Sets the amplification guard's budget: what a query's size-amplifying calls (`repeat`,
    /// `lpad`, format widths …) may make together, in bytes. Give it the result cap
    /// (`max_result_bytes`).
    #[must_use]
    pub fn with_budget(mut self, bytes: usize) -> Self {
        self.budget = bytes;
        self.accepted = Default::default();
        self
    }

    /// The dialect validated for.
    pub fn dialect(&self) -> SqlDialect {
        self.dialect
    }

    /// Validates `sql`, to be run with `params` parameters.
    pub fn validate(&self, sql: &str, params: usize) -> Result<ValidatedQuery, Denial> {
        if let Some(query) = self.accepted.get(sql, params) {
            return Ok(query);
        }
        let query = self.validate_afresh(sql, params)?;
        self.accepted.keep(sql, &query);
        Ok(query)
    }

    fn validate_afresh(&self, sql: &str, params: usize) -> Result<ValidatedQuery, Denial> {
        let tokens = self.read_tokens(sql)?;
        let significant = tokens.iter().filter(|token| !matches!(token.token, Token::Whitespace(_))).count();
        let stack = Self::STACK_BASE + significant * Self::STACK_PER_TOKEN;
        stacker::maybe_grow(stack, stack, || {
            let (query, checked) = self.check(tokens, params)?;
            // What runs is the printed tree. It must parse back to exactly the tree that was
            // checked (tables already rewritten), or the printer said something else.
            let reparsed = self.parse(self.tokenize(&query.text)?)?;
            if reparsed != checked {
                return Err(rejected("the query does not have a stable form; simplify it"));
            }
            Ok(ValidatedQuery { fingerprint: fingerprint(reparsed), ..query })
        })
    }

    /// The text's tokens, within the size bounds, with no word the database would lex
    /// differently.
    fn read_tokens(&self, sql: &str) -> Result<Vec<TokenWithSpan>, Denial> {
        if sql.len() > Self::MAX_QUERY_BYTES {
            return Err(rejected(format!("the query is longer than {} bytes", Self::MAX_QUERY_BYTES)));
        }
        if sql.contains('\0') {
            return Err(rejected("the query contains a NUL character"));
        }
        let tokens = self.tokenize(sql)?;
        let significant = tokens.iter().filter(|token| !matches!(token.token, Token::Whitespace(_))).count();
        if significant > Self::MAX_TOKENS {
            return Err(rejected(format!("the query has more than {} tokens", Self::MAX_TOKENS)));
        }
        if let Some(refusal) = self.misread_word(&tokens) {
            return Err(rejected(refusal));
        }
        Ok(tokens)
    }

    /// An unquoted word the database would lex differently from sqlparser, and why: in MySQL
    /// and MariaDB, an `@` inside one (`DISTINCT@@version`, `INTO@x`) is one name to sqlparser
    /// but a keyword and a variable to the server (a word that starts with `@` is a variable to
    /// both, and the walk refuses it); and `0b101` is a name to sqlparser but a bit literal to
    /// the server. The differential test (`tests/differential.rs`) looks for more.
    fn misread_word(&self, tokens: &[TokenWithSpan]) -> Option<String> {
        if self.dialect != SqlDialect::MySql {
            return None;
        }
        tokens.iter().find_map(|token| match &token.token {
            Token::Word(word) if word.quote_style.is_none() => {
                let value = word.value.as_str();
                if !value.starts_with('@') && value.contains('@') {
                    Some(format!(
                        "the name {} holds an @, which MySQL reads as the start of a variable; quote the name",
                        walk::bounded(value)
                    ))
                } else if value
                    .strip_prefix("0b")
                    .is_some_and(|bits| !bits.is_empty() && bits.bytes().all(|b| b == b'0' || b == b'1'))
                {
                    Some(format!(
                        "{} is a bit literal to MySQL but a name to this gate; write b'…' (or quote a name)",
                        walk::bounded(value)
                    ))
                } else {
                    None
                }
            }
            _ => None,
        })
    }

    /// MySQL strings are kept as written, escapes included (`'a\\b'`, `'it\'s'`): sqlparser
    /// prints a string it has unescaped with its quotes doubled but its backslashes bare, so
    /// `'\\'` would come out as `'\'`, which MySQL reads as an unterminated string. Kept as
    /// written, a string prints back as it came in.
    fn tokenize(&self, sql: &str) -> Result<Vec<TokenWithSpan>, Denial> {
        Tokenizer::new(self.dialect.parser(), sql)
            .with_unescape(self.dialect != SqlDialect::MySql)
            .tokenize_with_location()
            .map_err(|error| unparsable(&error))
    }

    /// Parses tokens as exactly one statement, within the nesting bound.
    fn parse(&self, tokens: Vec<TokenWithSpan>) -> Result<Statement, Denial> {
        let mut statements = Parser::new(self.dialect.parser())
            .with_recursion_limit(Self::MAX_NESTING)
            .with_tokens_with_locations(tokens)
            .parse_statements()
            .map_err(|error| unparsable(&error))?;
        match statements.len() {
            1 => Ok(statements.remove(0)),
            0 => Err(rejected("the query is empty")),
            _ => Err(rejected("exactly one statement is allowed")),
        }
    }

    /// The gate: the query as it will run, and its checked tree with tables rewritten.
    fn check(&self, tokens: Vec<TokenWithSpan>, params: usize) -> Result<(ValidatedQuery, Statement), Denial> {
        // A query refused for another reason that names a ruled table and one of its denied
        // columns (or reads it whole with `TABLE`) is refused for the column, which is the
        // caller's to know.
        let words = self.allow.has_column_rules().then(|| tokens.clone());
        let refused =
            |denial: Denial| match words.as_deref().and_then(|words| columns::named_in(words, &self.allow.columns)) {
                Some(column) => Denial::new(DenialCode::ColumnDenied, column),
                None => denial,
            };
        let mut statement = self.parse(tokens).map_err(refused)?;
        if !matches!(statement, Statement::Query(_)) {
            let kind = walk::statement_kind(&statement);
            return Err(refused(rejected(format!("only queries are allowed, not {kind}"))));
        }
        let mut walker = walk::Walker::new(self.dialect, &self.allow);
        if let std::ops::ControlFlow::Break(reason) = statement.visit(&mut walker) {
            return Err(refused(rejected(reason)));
        }
        let (mut tables, placeholders) = walker.finish();
        let amplification = amplify::examine(&statement, self.dialect).map_err(rejected)?;
        if !amplification.uses_params() {
            amplification.check(&[], self.budget).map_err(rejected)?;
        }
        let expected = placeholders.count(self.dialect).map_err(rejected)?;
        if expected != params {
            let noun = |n: usize, word: &str| format!("{n} {word}{}", if n == 1 { "" } else { "s" });
            return Err(rejected(format!(
                "the query has {} but {} {} given",
                noun(expected, "placeholder"),
                noun(params, "parameter"),
                if params == 1 { "was" } else { "were" }
            )));
        }
        tables.sort();
        tables.dedup();
        let text = statement.to_string();
        let masks = if self.allow.has_column_rules() {
            columns::check(self.dialect, &statement, &text, &tables, |table| {
                self.allow.column_rule(&table.schema, &table.table)
            })
            .map_err(|columns::ColumnRefusal(reason)| Denial::new(DenialCode::ColumnDenied, reason))?
        } else {
            Vec::new()
        };
        let query = ValidatedQuery {
            dialect: self.dialect,
            text,
            tables,
            fingerprint: String::new(),
            params,
            amplification,
            masks,
        };
        Ok((query, statement))
    }
}

/// Hashes the tree with every literal replaced, so that only the shape and names count.
fn fingerprint(mut statement: Statement) -> String {
    struct Blank;
    impl VisitorMut for Blank {
        type Break = ();
        fn pre_visit_value(&mut self, value: &mut ValueWithSpan) -> std::ops::ControlFlow<()> {
            if !matches!(value.value, Value::Placeholder(_)) {
                value.value = Value::Placeholder("?".into());
            }
            std::ops::ControlFlow::Continue(())
        }
    }
    /// Feeds printed text straight into the hash.
    struct Hashing(Sha256);
    impl fmt::Write for Hashing {
        fn write_str(&mut self, text: &str) -> fmt::Result {
            self.0.update(text.as_bytes());
            Ok(())
        }
    }
    let _ = statement.visit(&mut Blank);
    let mut hashing = Hashing(Sha256::new());
    // Writing to a hash cannot fail, and the tree's printer only fails on a failed write.
    let _ = fmt::Write::write_fmt(&mut hashing, format_args!("{statement}"));
    hex::encode(hashing.0.finalize())
}

fn unparsable(error: &dyn fmt::Display) -> Denial {
    rejected(format!("the query does not parse: {}", parse_message(&error.to_string())))
}

fn rejected(reason: impl Into<std::borrow::Cow<'static, str>>) -> Denial {
    Denial::new(DenialCode::QueryRejected, reason)
}

/// The parser's message without its prefix, cut short: it may quote the query back.
fn parse_message(message: &str) -> String {
    let message = message.strip_prefix("sql parser error: ").unwrap_or(message);
    match message.char_indices().nth(200) {
        Some((cut, _)) => format!("{}…", &message[..cut]),
        None => message.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_repeated_query_gets_what_validating_it_afresh_gives() {
        let allow = AllowList::new(SqlDialect::Postgres, "public").table("public", "customers");
        let validator = SqlValidator::new(allow.clone());
        let sql = "SELECT id FROM customers WHERE id = $1";
        let same = |query: &ValidatedQuery| {
            let fresh = SqlValidator::new(allow.clone()).validate(sql, 1).expect("accepted");
            assert_eq!(
                (query.sql(), query.tables(), query.fingerprint(), query.param_count(), query.dialect()),
                (fresh.sql(), fresh.tables(), fresh.fingerprint(), fresh.param_count(), fresh.dialect())
            );
        };
        same(&validator.validate(sql, 1).expect("accepted"));
        assert_eq!(validator.accepted.len(), 1, "an accepted query is kept");
        same(&validator.validate(sql, 1).expect("accepted again"));
        // The parameter count is part of the question.
        assert!(validator.validate(sql, 0).is_err());
        assert!(validator.validate(sql, 2).is_err());
        // Refusals are not kept, and stay refusals.
        for _ in 0..2 {
            assert!(validator.validate("SELECT * FROM secrets", 0).is_err());
        }
        assert_eq!(validator.accepted.len(), 1);
        // Texts up to the size kept, and no longer.
        let padded = |bytes: usize| format!("{sql}{}", " ".repeat(bytes - sql.len()));
        assert!(validator.validate(&padded(Accepted::MAX_TEXT_BYTES), 1).is_ok());
        assert_eq!(validator.accepted.len(), 2);
        assert!(validator.validate(&padded(Accepted::MAX_TEXT_BYTES + 1), 1).is_ok());
        assert_eq!(validator.accepted.len(), 2, "a longer text is validated, not kept");
        // Bounded: a full memory starts again.
        for n in 0..Accepted::CAPACITY {
            assert!(validator.validate(&format!("SELECT {n} FROM customers"), 0).is_ok());
            assert!(validator.accepted.len() <= Accepted::CAPACITY);
        }
        assert!(validator.accepted.len() < Accepted::CAPACITY, "it was cleared once full");
        same(&validator.validate(sql, 1).expect("accepted after clearing"));
    }

    #[test]
    fn a_mysql_name_with_an_at_inside_is_refused_and_a_quoted_one_is_not() {
        let allow = AllowList::new(SqlDialect::MySql, "app").table("app", "customers");
        let validator = SqlValidator::new(allow);
        for sql in [
            "SELECT max(email) FROM customers INTO@x",
            "SELECT DISTINCT@@version",
            "SELECT BINARY@@datadir FROM customers",
            "SELECT id FROM customers WHERE id = 1 OR@@port",
        ] {
            let denial = validator.validate(sql, 0).expect_err(sql);
            assert!(denial.message().contains("holds an @"), "{sql}: {}", denial.message());
        }
        assert!(validator.validate("SELECT id AS `a@b`, 'x@y' FROM customers", 0).is_ok());
        for sql in ["SELECT 0b1", "SELECT id FROM customers WHERE id = 0b101"] {
            let denial = validator.validate(sql, 0).expect_err(sql);
            assert!(denial.message().contains("bit literal"), "{sql}: {}", denial.message());
        }
        assert!(validator.validate("SELECT b'101', `0b1` FROM customers AS `0b1`", 0).is_ok());
        let denial = validator.validate("SELECT @@version", 0).expect_err("a variable");
        assert_eq!(denial.message(), "session variables are not allowed");
        // Elsewhere `@` is an operator, which sqlparser reads as such.
        let pg = SqlValidator::new(AllowList::new(SqlDialect::Postgres, "public").table("public", "customers"));
        assert!(pg.validate("SELECT @ -5 FROM customers", 0).is_ok());
    }

    fn name(schema: &str, table: &str) -> TableName {
        TableName { schema: schema.into(), table: table.into() }
    }

    #[test]
    fn dialects_have_names() {
        let names: Vec<String> =
            [SqlDialect::Postgres, SqlDialect::MySql, SqlDialect::Sqlite].iter().map(ToString::to_string).collect();
        assert_eq!(names, ["postgres", "mysql", "sqlite"]);
    }

    #[test]
    fn a_query_of_exactly_the_maximum_length_is_read() {
        let prefix = "SELECT '";
        let sql = format!("{prefix}{}'", "x".repeat(SqlValidator::MAX_QUERY_BYTES - prefix.len() - 1));
        assert_eq!(sql.len(), SqlValidator::MAX_QUERY_BYTES);
        let validator = SqlValidator::new(AllowList::new(SqlDialect::Sqlite, "main"));
        assert!(validator.validate(&sql, 0).is_ok());
        assert!(validator.validate(&format!("{sql} "), 0).is_err(), "one byte more is refused");
    }

    /// On a thread with a small stack the validator moves to a stack of its own.
    #[test]
    fn a_small_stack_is_enough_to_call_the_validator() {
        let deep = format!("SELECT {}1", "1+".repeat(SqlValidator::MAX_TOKENS / 2 - 2));
        std::thread::Builder::new()
            .stack_size(128 << 10)
            .spawn(move || {
                let validator = SqlValidator::new(AllowList::new(SqlDialect::Postgres, "public"));
                assert!(validator.validate(&deep, 0).is_ok());
            })
            .expect("spawn")
            .join()
            .expect("no overflow on a 128 KiB stack");
    }

    /// A short query costs more stack than its tokens alone account for (the parser's and the
    /// printer's own frames); the base share covers it on a thread with a small stack.
    #[test]
    fn a_short_query_on_a_small_stack_is_validated() {
        let join = "WITH big AS (SELECT customer_id, sum(total) AS spent FROM orders GROUP BY customer_id) \
            SELECT c.name, b.spent FROM customers c JOIN big b ON b.customer_id = c.id \
            WHERE c.created_at > now() - interval '30 days' ORDER BY b.spent DESC LIMIT 20";
        std::thread::Builder::new()
            .stack_size(256 << 10)
            .spawn(move || {
                let allow = AllowList::new(SqlDialect::Postgres, "public").schema("public");
                assert!(SqlValidator::new(allow).validate(join, 0).is_ok());
            })
            .expect("spawn")
            .join()
            .expect("no overflow on a 256 KiB stack");
    }

    #[test]
    fn an_empty_allow_list_allows_nothing() {
        let allow = AllowList::new(SqlDialect::Postgres, "public");
        assert!(!allow.allows(&name("public", "customers")));
    }

    #[test]
    fn a_whole_schema_allows_its_tables_but_never_a_catalog() {
        let sqlite = AllowList::new(SqlDialect::Sqlite, "main").schema("main");
        assert!(sqlite.allows(&name("main", "customers")));
        assert!(!sqlite.allows(&name("main", "sqlite_master")));
        assert!(!sqlite.allows(&name("temp", "customers")));
        let pg = AllowList::new(SqlDialect::Postgres, "public").schema("public").table("public", "extra");
        assert!(pg.allows(&name("public", "anything")), "a later table() keeps the whole schema");
    }

    #[test]
    fn a_catalog_named_explicitly_is_allowed() {
        let pg =
            AllowList::new(SqlDialect::Postgres, "public").schema("information_schema").table("pg_catalog", "pg_class");
        assert!(pg.allows(&name("information_schema", "tables")));
        assert!(pg.allows(&name("pg_catalog", "pg_class")));
        assert!(!pg.allows(&name("pg_catalog", "pg_authid")));
        let sqlite = AllowList::new(SqlDialect::Sqlite, "main").table("main", "sqlite_master");
        assert!(sqlite.allows(&name("main", "sqlite_master")));
        let mysql = AllowList::new(SqlDialect::MySql, "app").schema("INFORMATION_SCHEMA");
        assert!(mysql.allows(&name("information_schema", "columns")), "configuration names fold too");
    }

    #[test]
    fn catalogs_are_recognized_per_dialect() {
        assert!(SqlDialect::Postgres.is_catalog("pg_catalog", "x"));
        assert!(SqlDialect::Postgres.is_catalog("pg_toast", "x"));
        assert!(SqlDialect::Postgres.is_catalog("information_schema", "x"));
        assert!(!SqlDialect::Postgres.is_catalog("public", "pg_class"), "qualified names are exact");
        for schema in ["mysql", "information_schema", "performance_schema", "sys"] {
            assert!(SqlDialect::MySql.is_catalog(schema, "x"), "{schema}");
        }
        assert!(!SqlDialect::MySql.is_catalog("app", "user"));
        assert!(SqlDialect::Sqlite.is_catalog("main", "sqlite_schema"));
        assert!(!SqlDialect::Sqlite.is_catalog("main", "customers"));
    }

    #[test]
    fn a_validated_query_reports_what_it_checked() {
        let allow =
            AllowList::new(SqlDialect::Postgres, "public").table("public", "customers").table("public", "orders");
        let validator = SqlValidator::new(allow);
        assert_eq!(validator.dialect(), SqlDialect::Postgres);
        let query = validator
            .validate("SELECT c.id FROM customers c JOIN orders o ON o.id = c.id WHERE c.id = $1 AND o.id = $2", 2)
            .expect("accepted");
        assert_eq!(query.dialect(), SqlDialect::Postgres);
        assert_eq!(query.param_count(), 2);
        assert_eq!(query.tables(), [name("public", "customers"), name("public", "orders")]);
        assert_eq!(
            query.sql(),
            r#"SELECT c.id FROM "public"."customers" c JOIN "public"."orders" o ON o.id = c.id WHERE c.id = $1 AND o.id = $2"#
        );
        assert_eq!(query.fingerprint().len(), 64);
    }

    #[test]
    fn fingerprints_ignore_literals_and_layout_but_not_tables() {
        let allow = AllowList::new(SqlDialect::MySql, "app").table("app", "customers").table("app", "orders");
        let validator = SqlValidator::new(allow);
        let fingerprint = |sql: &str| validator.validate(sql, 0).expect("accepted").fingerprint().to_owned();
        let base = fingerprint("SELECT name FROM customers WHERE id = 1 AND name = 'a'");
        assert_eq!(base, fingerprint("select  name\n from CUSTOMERS where id = 42 and name = 'zzz' -- note"));
        assert_ne!(base, fingerprint("SELECT name FROM orders WHERE id = 1 AND name = 'a'"));
        assert_ne!(base, fingerprint("SELECT name FROM customers WHERE id = 1 OR name = 'a'"));
    }

    #[test]
    fn rejections_are_specific() {
        let allow = AllowList::new(SqlDialect::Postgres, "public").table("public", "customers");
        let validator = SqlValidator::new(allow);
        let reason = |sql: &str, params| validator.validate(sql, params).expect_err("refused").message().to_owned();
        assert_eq!(reason("SELECT pg_sleep(1)", 0), "function pg_sleep is not allowed");
        assert_eq!(reason("SELECT * FROM secrets", 0), "table public.secrets is not in the allow-list");
        assert_eq!(reason("SELECT * FROM pg_catalog.pg_user", 0), "system catalog pg_catalog.pg_user is not allowed");
        assert_eq!(reason("DELETE FROM customers", 0), "only queries are allowed, not DELETE");
        assert_eq!(reason("INSERT INTO customers VALUES (1)", 0), "only queries are allowed, not INSERT INTO");
        assert_eq!(reason("SELECT 1; SELECT 2", 0), "exactly one statement is allowed");
        assert_eq!(reason("", 0), "the query is empty");
        assert_eq!(
            reason("SELECT * FROM customers WHERE id = $1", 0),
            "the query has 1 placeholder but 0 parameters were given"
        );
        assert_eq!(reason("SELECT $1, $2", 1), "the query has 2 placeholders but 1 parameter was given");
        assert_eq!(reason("SELECT $2", 2), "placeholders must be numbered $1 to $2 without gaps");
        assert!(reason("SELECT ?", 1).starts_with("the query does not parse: "), "PostgreSQL has no ? placeholder");
        assert!(reason("SELEC 1", 0).starts_with("the query does not parse: "));
        assert_eq!(reason("SELECT $70000", 70000), "placeholder $70000 is not supported; use $1, $2, …");
        let long = format!("SELECT ${}", "9".repeat(40));
        assert_eq!(reason(&long, 1), format!("placeholder ${} is not supported; use $1, $2, …", "9".repeat(31)));
    }

    /// sqlparser reads `SELECT NOT EXISTS` as column `not` aliased `exists` and prints it as
    /// `SELECT NOT AS EXISTS`, which it reads as something else: the printed text is not the
    /// checked query, so it is refused. MySQL strings are kept as written, escapes included,
    /// so adjacent literals (`'\'' '\''`, two quotes) join and print as the server reads them.
    #[test]
    fn a_query_whose_printed_form_parses_differently_is_refused() {
        for dialect in [SqlDialect::Postgres, SqlDialect::MySql, SqlDialect::Sqlite] {
            let validator = SqlValidator::new(AllowList::new(dialect, "main"));
            let denial = validator.validate("SELECT NOT EXISTS", 0).expect_err("refused");
            assert_eq!(denial.message(), "the query does not have a stable form; simplify it", "{dialect}");
        }
        let mysql = SqlValidator::new(AllowList::new(SqlDialect::MySql, "app"));
        let joined = mysql.validate(r"SELECT '\'' '\''", 0).expect("accepted");
        assert_eq!(joined.sql(), r"SELECT '\'\''");
        for (written, printed) in
            [(r"SELECT '\\'", r"SELECT '\\'"), (r"SELECT 'a''b', 'c\'d'", r"SELECT 'a''b', 'c\'d'")]
        {
            assert_eq!(mysql.validate(written, 0).expect("accepted").sql(), printed);
        }
    }

    #[test]
    fn parse_errors_pass_on_the_parsers_words_cut_short() {
        let validator = SqlValidator::new(AllowList::new(SqlDialect::Postgres, "public"));
        let reason = |sql: &str| validator.validate(sql, 0).expect_err("refused").message().to_owned();
        assert_eq!(
            reason("SELEC 1"),
            "the query does not parse: Expected: an SQL statement, found: SELEC at Line: 1, Column: 1"
        );
        let long = format!("SELECT 1 \"{0}\" \"{0}\"", "y".repeat(300));
        let message = reason(&long);
        let parser_part = message.strip_prefix("the query does not parse: ").expect("prefixed");
        assert_eq!(parser_part.chars().count(), 201, "200 characters and an ellipsis: {message}");
        assert!(parser_part.starts_with("Expected: end of statement, found: ") && parser_part.ends_with("y…"));
    }

    #[test]
    fn the_token_bound_is_exact() {
        let validator = SqlValidator::new(AllowList::new(SqlDialect::Sqlite, "main"));
        // `SELECT` and `1`, then `+ 1` pairs.
        let with_tokens = |n: usize| format!("SELECT 1{}", " + 1".repeat((n - 2) / 2));
        assert!(validator.validate(&with_tokens(SqlValidator::MAX_TOKENS), 0).is_ok());
        let denial = validator.validate(&with_tokens(SqlValidator::MAX_TOKENS + 2), 0).expect_err("refused");
        assert_eq!(denial.message(), "the query has more than 10000 tokens");
    }

    #[test]
    fn placeholders_of_other_styles_are_refused_with_their_name() {
        let sqlite = SqlValidator::new(AllowList::new(SqlDialect::Sqlite, "main"));
        for (sql, shown) in [("SELECT $1", "$1"), ("SELECT :id", ":id"), ("SELECT @id", "@id"), ("SELECT $id", "$id")] {
            let denial = sqlite.validate(sql, 0).expect_err("refused");
            assert_eq!(denial.message(), format!("placeholder {shown} is not supported; use ?"), "{sql}");
        }
        let mysql = SqlValidator::new(AllowList::new(SqlDialect::MySql, "app").table("app", "t"));
        let denial = mysql.validate("SELECT a := 1 FROM t", 0).expect_err("refused");
        assert_eq!(denial.message(), "assignments (:=) are not allowed");
    }

    #[test]
    fn a_lateral_table_function_is_checked_like_any_function() {
        let validator = SqlValidator::new(AllowList::new(SqlDialect::Postgres, "public").table("public", "customers"));
        let query = validator
            .validate("SELECT g FROM customers c, LATERAL generate_series(1, c.id) AS g", 0)
            .expect("an allowed table function");
        assert_eq!(query.tables(), [name("public", "customers")]);
        let denial = validator.validate("SELECT * FROM customers, LATERAL pg_ls_dir('.')", 0).expect_err("refused");
        assert_eq!(denial.message(), "table function pg_ls_dir is not allowed");
    }

    #[test]
    fn catalog_names_are_checked_with_the_dialects_case_rules() {
        let pg = AllowList::new(SqlDialect::Postgres, "public").table("public", "customers").schema("sales");
        assert!(pg.permits("public", "customers"));
        assert!(!pg.permits("public", "Customers"), "PostgreSQL catalog names are exact");
        assert!(!pg.permits("public", "orders"));
        assert!(pg.permits("sales", "anything"));
        let mut schemas: Vec<&str> = pg.schemas().collect();
        schemas.sort_unstable();
        assert_eq!(schemas, ["public", "sales"]);
        let mysql = AllowList::new(SqlDialect::MySql, "app").table("app", "customers");
        assert!(mysql.permits("APP", "Customers"), "MySQL names compare case-insensitively");
        assert!(!mysql.permits("app", "orders"));
        assert_eq!(mysql.dialect(), SqlDialect::MySql);
    }

    #[test]
    fn caller_names_resolve_to_the_default_schema_and_fold() {
        let pg = AllowList::new(SqlDialect::Postgres, "Public");
        assert_eq!(pg.resolve(None, "Customers"), name("public", "customers"));
        assert_eq!(pg.resolve(Some("Sales"), "orders"), name("sales", "orders"));
    }

    #[test]
    fn an_explicitly_allowed_catalog_is_read() {
        let allow = AllowList::new(SqlDialect::MySql, "app").schema("information_schema");
        let query = SqlValidator::new(allow).validate("SELECT table_name FROM information_schema.tables", 0);
        assert_eq!(query.expect("explicitly allowed").sql(), "SELECT table_name FROM `information_schema`.`tables`");
    }
}
