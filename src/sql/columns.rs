//! Column rules: columns that never leave the database, and columns that leave it only masked.
//!
//! A query that reads a table with rules is checked again, after the walk, on the tree as it
//! will run. The checks are made to fail closed: where a name could mean a ruled column, it is
//! taken to mean it.
//!
//! - **Denied columns.** No word of the query (a name, quoted or not, in any position: select
//!   list, `WHERE`, `ORDER BY`, `GROUP BY`, `USING`, a function argument, a window, a CTE or a
//!   subquery) may be a denied column's name. The check reads the tokens of the printed query,
//!   not the tree, so no position the tree keeps a name in is missed.
//! - **Whole rows and `*`.** A reference to a whole row of a ruled table (`c`, `to_jsonb(c)`,
//!   `c.*`, `row_to_json(c.*)`), a `*` in a SELECT that reads a ruled table, a NATURAL join, or
//!   column aliases on a ruled table (`customers AS c(a, b, x)`, which renames its columns)
//!   is refused: each would reach a ruled column without naming it. So is the engine's row
//!   id (`rowid` in SQLite, `_rowid` in MySQL), which is a ruled integer primary key by
//!   another name.
//! - **Masked columns** may be selected only as a bare column (qualified or not, aliased or
//!   not) in the outermost SELECT of the query, which may not be DISTINCT, a set operation or
//!   use `*`. Anywhere else, in an expression, a function, a predicate, an ordering, a
//!   grouping, a join, a subquery or a CTE, a masked column could carry its value, or an
//!   oracle on it, past the mask: it is refused like a denied one. Every word of the query
//!   that names a masked column (or the alias given to one) must be one of those bare
//!   selections. The positions of the selected masked columns go with the validated query;
//!   the value is masked before it leaves the process.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::ops::ControlFlow;

use hmac::{Hmac, Mac};
use sha2::Sha256;
use sqlparser::ast::{
    Expr, FunctionArg, FunctionArgExpr, FunctionArguments, GroupByExpr, Ident, ObjectName, ObjectNamePart, OrderByKind,
    Query, Select, SelectItem, SelectItemQualifiedWildcardKind, SetExpr, Statement, TableFactor, TableWithJoins, Value,
    Visit, Visitor,
};
use sqlparser::keywords::Keyword;
use sqlparser::tokenizer::Token;

use super::{SqlDialect, TableName};

/// How a masked column's value leaves the process.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Mask {
    /// A keyed SHA-256 (HMAC) of the value, as 64 hex digits: equal values give equal hashes
    /// under one key, so a masked column can still be compared and joined on by the caller.
    Hash,
    /// The last four characters, the rest replaced (`****1234`); a value of four characters or
    /// fewer is replaced whole.
    Last4,
    /// `[redacted]`, whatever the value.
    Redact,
}

impl Mask {
    /// The mask named in configuration: `hash`, `last4` or `redact`.
    pub fn named(name: &str) -> Option<Mask> {
        match name {
            "hash" => Some(Mask::Hash),
            "last4" => Some(Mask::Last4),
            "redact" => Some(Mask::Redact),
            _ => None,
        }
    }

    /// Its name in configuration.
    pub fn name(self) -> &'static str {
        match self {
            Mask::Hash => "hash",
            Mask::Last4 => "last4",
            Mask::Redact => "redact",
        }
    }

    /// How much of the value the mask lets through: the strongest of several is the one that
    /// lets through least.
    fn strength(self) -> u8 {
        match self {
            Mask::Hash => 0,
            Mask::Last4 => 1,
            Mask::Redact => 2,
        }
    }

    /// The masked value, for one value as the text of a JSON value. `null` stays `null`; a
    /// string is masked by its characters, any other value by its JSON text.
    pub fn apply(self, json_value: &str, key: &MaskKey) -> String {
        if json_value == "null" {
            return json_value.to_owned();
        }
        let plain: String = match serde_json::from_str::<serde_json::Value>(json_value) {
            Ok(serde_json::Value::String(text)) => text,
            _ => json_value.to_owned(),
        };
        let masked = match self {
            Mask::Hash => {
                let mut mac = Hmac::<Sha256>::new_from_slice(&key.0).expect("HMAC takes a key of any length");
                mac.update(plain.as_bytes());
                hex::encode(mac.finalize().into_bytes())
            }
            Mask::Last4 => {
                let count = plain.chars().count();
                if count <= 4 {
                    "****".to_owned()
                } else {
                    let last: String = plain.chars().skip(count - 4).collect();
                    format!("****{last}")
                }
            }
            Mask::Redact => "[redacted]".to_owned(),
        };
        serde_json::Value::String(masked).to_string()
    }
}

impl fmt::Display for Mask {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The key of the `hash` mask. Shown nowhere.
#[derive(Clone)]
pub struct MaskKey(Vec<u8>);

impl MaskKey {
    /// A key of these bytes.
    pub fn new(bytes: Vec<u8>) -> Self {
        MaskKey(bytes)
    }

    /// A random key of 32 bytes: hashes are then stable only for this key's lifetime.
    pub fn random() -> Result<Self, String> {
        let mut bytes = vec![0u8; 32];
        getrandom::fill(&mut bytes).map_err(|error| format!("no randomness for the mask key: {error}"))?;
        Ok(MaskKey(bytes))
    }
}

impl fmt::Debug for MaskKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("MaskKey(…)")
    }
}

/// The rules of one table: its denied and its masked columns, by lower-case name.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ColumnRule {
    deny: HashSet<String>,
    mask: HashMap<String, Mask>,
    show_denied: bool,
}

impl ColumnRule {
    /// No rules yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Denies a column.
    pub fn deny(mut self, column: &str) -> Result<Self, String> {
        let column = fold(column);
        if self.mask.contains_key(&column) {
            return Err(format!("column {column} is both denied and masked"));
        }
        self.deny.insert(column);
        Ok(self)
    }

    /// Masks a column.
    pub fn mask(mut self, column: &str, mask: Mask) -> Result<Self, String> {
        let column = fold(column);
        if self.deny.contains(&column) {
            return Err(format!("column {column} is both denied and masked"));
        }
        self.mask.insert(column, mask);
        Ok(self)
    }

    /// Lets `describe_table` name the denied columns (and show that they are denied).
    #[must_use]
    pub fn show_denied(mut self, show: bool) -> Self {
        self.show_denied = show;
        self
    }

    /// Whether a column (as the catalog names it) is denied.
    pub fn is_denied(&self, column: &str) -> bool {
        self.deny.contains(&fold(column))
    }

    /// The mask of a column (as the catalog names it), if it is masked.
    pub fn mask_of(&self, column: &str) -> Option<Mask> {
        self.mask.get(&fold(column)).copied()
    }

    /// The columns the rule names, denied and masked, sorted.
    pub fn columns(&self) -> Vec<&str> {
        let mut columns: Vec<&str> = self.deny.iter().chain(self.mask.keys()).map(String::as_str).collect();
        columns.sort_unstable();
        columns
    }

    /// Whether `describe_table` may name the denied columns.
    pub fn shows_denied(&self) -> bool {
        self.show_denied
    }

    /// Whether the rule denies or masks nothing.
    pub fn is_empty(&self) -> bool {
        self.deny.is_empty() && self.mask.is_empty()
    }
}

/// Column names are compared case-insensitively, whatever the dialect: a name that could be a
/// ruled column is taken to be one.
pub(super) fn fold(name: &str) -> String {
    name.to_lowercase()
}

/// The masks to apply to a result: (column position, mask), by position.
pub type Masks = Vec<(usize, Mask)>;

/// Why a query was refused by the column rules: the column (or the table, for a whole-row
/// reference) and what was done with it.
pub(super) struct ColumnRefusal(pub(super) String);

/// What the query reads that has rules.
struct Ruled<'a> {
    dialect: SqlDialect,
    /// Denied column → the table it is denied in.
    denied: HashMap<&'a str, &'a TableName>,
    /// Masked column → the strongest of its masks.
    masked: HashMap<&'a str, Mask>,
    /// The names a ruled table goes by in the query (its name, its aliases), lower case.
    row_names: HashMap<String, &'a TableName>,
    tables: Vec<(&'a TableName, &'a ColumnRule)>,
}

/// Checks `statement` (as it will run, printed as `text`) against the rules of the tables it
/// reads; `rule` gives a table's rule. Returns where the masked columns are in the result.
pub(super) fn check<'a>(
    dialect: SqlDialect,
    statement: &Statement,
    text: &str,
    tables: &'a [TableName],
    rule: impl Fn(&TableName) -> Option<&'a ColumnRule>,
) -> Result<Masks, ColumnRefusal> {
    let ruled_tables: Vec<(&TableName, &ColumnRule)> = tables
        .iter()
        .filter_map(|table| rule(table).filter(|rule| !rule.is_empty()).map(|rule| (table, rule)))
        .collect();
    if ruled_tables.is_empty() {
        return Ok(Vec::new());
    }
    let mut ruled = Ruled {
        dialect,
        denied: HashMap::new(),
        masked: HashMap::new(),
        row_names: HashMap::new(),
        tables: ruled_tables,
    };
    for (table, rule) in &ruled.tables {
        for column in &rule.deny {
            ruled.denied.entry(column.as_str()).or_insert(table);
        }
        for (column, mask) in &rule.mask {
            let strongest = ruled.masked.entry(column.as_str()).or_insert(*mask);
            if mask.strength() > strongest.strength() {
                *strongest = *mask;
            }
        }
    }
    let Statement::Query(query) = statement else {
        return Err(ColumnRefusal("only queries are checked for column rules".into()));
    };

    // The tables' names and aliases; column aliases on a ruled table are refused here.
    let mut names = Names { ruled: &ruled, found: HashMap::new(), refusal: None };
    let _ = statement.visit(&mut names);
    if let Some(refusal) = names.refusal {
        return Err(refusal);
    }
    ruled.row_names = names.found;

    let selected = outermost_masked(&ruled, query)?;
    words(&ruled, text, &selected)?;
    let mut shapes = Shapes { ruled: &ruled, refusal: None };
    let _ = statement.visit(&mut shapes);
    if let Some(refusal) = shapes.refusal {
        return Err(refusal);
    }
    Ok(selected.masks)
}

/// The lower-case value of a name.
fn lower(ident: &Ident) -> String {
    fold(&ident.value)
}

/// The table a rewritten two-part relation name stands for (the walk wrote every table out as
/// `schema.table`, folded).
fn table_of(name: &ObjectName) -> Option<TableName> {
    match name.0.as_slice() {
        [ObjectNamePart::Identifier(schema), ObjectNamePart::Identifier(table)] => {
            Some(TableName { schema: schema.value.clone(), table: table.value.clone() })
        }
        _ => None,
    }
}

impl Ruled<'_> {
    fn rule_of(&self, table: &TableName) -> Option<&ColumnRule> {
        self.tables.iter().find(|(ruled, _)| *ruled == table).map(|(_, rule)| *rule)
    }

    fn refuse_denied(&self, column: &str) -> ColumnRefusal {
        let table = self.denied.get(column).map_or_else(String::new, |table| format!(" of {table}"));
        ColumnRefusal(format!("column {column}{table} is denied: it may not appear anywhere in a query"))
    }

    fn refuse_masked(&self, column: &str, why: &str) -> ColumnRefusal {
        let tables: Vec<String> = self
            .tables
            .iter()
            .filter(|(_, rule)| rule.mask.contains_key(column))
            .map(|(table, _)| table.to_string())
            .collect();
        ColumnRefusal(format!(
            "column {column} of {} is masked: it may only be selected as it is, in the outermost SELECT \
             ({why})",
            tables.join(", ")
        ))
    }

    fn refuse_row(&self, table: &TableName, what: &str) -> ColumnRefusal {
        ColumnRefusal(format!(
            "{what} reads every column of {table}, which has denied or masked columns{}: name the columns you need",
            self.rule_of(table).filter(|rule| rule.show_denied).map_or_else(String::new, |rule| {
                let mut denied: Vec<&str> = rule.deny.iter().map(String::as_str).collect();
                denied.sort_unstable();
                format!(" (denied: {})", denied.join(", "))
            })
        ))
    }

    /// Whether a FROM (its tables, joins and nested joins; not its subqueries) reads a ruled
    /// table, and which.
    fn ruled_in_from(&self, from: &[TableWithJoins]) -> Option<TableName> {
        fn factor(ruled: &Ruled<'_>, factor: &TableFactor) -> Option<TableName> {
            match factor {
                TableFactor::Table { name, args: None, .. } => {
                    table_of(name).filter(|table| ruled.rule_of(table).is_some())
                }
                TableFactor::NestedJoin { table_with_joins, .. } => {
                    ruled.ruled_in_from(std::slice::from_ref(table_with_joins))
                }
                _ => None,
            }
        }
        from.iter().find_map(|item| {
            factor(self, &item.relation).or_else(|| item.joins.iter().find_map(|join| factor(self, &join.relation)))
        })
    }
}

/// Collects the names ruled tables go by; refuses column aliases on them.
struct Names<'r, 'a> {
    ruled: &'r Ruled<'a>,
    found: HashMap<String, &'a TableName>,
    refusal: Option<ColumnRefusal>,
}

impl Visitor for Names<'_, '_> {
    type Break = ();

    fn pre_visit_table_factor(&mut self, factor: &TableFactor) -> ControlFlow<()> {
        let TableFactor::Table { name, alias, args: None, .. } = factor else { return ControlFlow::Continue(()) };
        let Some(table) = table_of(name) else { return ControlFlow::Continue(()) };
        let Some(ruled) = self.ruled.tables.iter().find(|(ruled, _)| **ruled == table).map(|(table, _)| *table) else {
            return ControlFlow::Continue(());
        };
        self.found.insert(fold(&table.table), ruled);
        if let Some(alias) = alias {
            if !alias.columns.is_empty() {
                self.refusal = Some(ColumnRefusal(format!(
                    "column aliases on {table} rename its columns, and it has denied or masked columns"
                )));
                return ControlFlow::Break(());
            }
            self.found.insert(lower(&alias.name), ruled);
        }
        ControlFlow::Continue(())
    }
}

/// The masked columns selected as they are in the outermost SELECT: where they are in the
/// result, and how many times each name may appear in the query because of them.
struct Selected {
    masks: Masks,
    /// Lower-case name → how many words of the query these selections account for.
    allowed: HashMap<String, usize>,
    /// The alias given to a selected masked column → the column.
    aliases: HashMap<String, String>,
}

/// A bare column: its name's parts, lower case.
fn bare_column(expr: &Expr) -> Option<Vec<String>> {
    match expr {
        Expr::Identifier(ident) => Some(vec![lower(ident)]),
        Expr::CompoundIdentifier(parts) => Some(parts.iter().map(lower).collect()),
        _ => None,
    }
}

fn outermost_masked(ruled: &Ruled<'_>, query: &Query) -> Result<Selected, ColumnRefusal> {
    let mut selected = Selected { masks: Vec::new(), allowed: HashMap::new(), aliases: HashMap::new() };
    if ruled.masked.is_empty() {
        return Ok(selected);
    }
    let SetExpr::Select(select) = query.body.as_ref() else { return Ok(selected) };
    let mut positions = Vec::new();
    for (position, item) in select.projection.iter().enumerate() {
        let (expr, alias) = match item {
            SelectItem::UnnamedExpr(expr) => (expr, None),
            SelectItem::ExprWithAlias { expr, alias } => (expr, Some(alias)),
            _ => continue,
        };
        let Some(parts) = bare_column(expr) else { continue };
        let Some(mask) = parts.last().and_then(|column| ruled.masked.get(column.as_str())) else { continue };
        let column = parts.last().cloned().unwrap_or_default();
        if select
            .projection
            .iter()
            .any(|item| matches!(item, SelectItem::Wildcard(_) | SelectItem::QualifiedWildcard(..)))
        {
            return Err(ruled.refuse_masked(&column, "not beside a *"));
        }
        if select.distinct.is_some() {
            return Err(ruled.refuse_masked(&column, "not under DISTINCT"));
        }
        *selected.allowed.entry(column.clone()).or_default() += 1;
        if let Some(alias) = alias {
            *selected.allowed.entry(lower(alias)).or_default() += 1;
            selected.aliases.insert(lower(alias), column.clone());
        }
        selected.masks.push((position, *mask));
        positions.push((position, column));
    }
    // An ordering or grouping by a masked column's position is an oracle on its value.
    let by_position = |expr: &Expr| -> Option<&String> {
        let Expr::Value(value) = expr else { return None };
        let Value::Number(number, _) = &value.value else { return None };
        let index = number.parse::<usize>().ok()?.checked_sub(1)?;
        positions.iter().find(|(position, _)| *position == index).map(|(_, column)| column)
    };
    if let Some(order) = &query.order_by
        && let OrderByKind::Expressions(exprs) = &order.kind
        && let Some(column) = exprs.iter().find_map(|order| by_position(&order.expr))
    {
        return Err(ruled.refuse_masked(column, "not as an ordering"));
    }
    match &select.group_by {
        GroupByExpr::Expressions(exprs, _) => {
            if let Some(column) = exprs.iter().find_map(by_position) {
                return Err(ruled.refuse_masked(column, "not as a grouping"));
            }
        }
        GroupByExpr::All(_) => {
            if let Some((_, column)) = positions.first() {
                return Err(ruled.refuse_masked(column, "not as a grouping"));
            }
        }
    }
    Ok(selected)
}

/// The checks on the words of the printed query: no denied column, no row id, no NATURAL join,
/// and masked columns (and the aliases given to them) only where they were selected as they
/// are.
fn words(ruled: &Ruled<'_>, text: &str, selected: &Selected) -> Result<(), ColumnRefusal> {
    let tokens = sqlparser::tokenizer::Tokenizer::new(ruled.dialect.parser(), text)
        .tokenize()
        .map_err(|_| ColumnRefusal("the query could not be read again for its column rules".into()))?;
    let row_ids: &[&str] = match ruled.dialect {
        SqlDialect::Sqlite => &["rowid", "oid", "_rowid_"],
        SqlDialect::MySql => &["_rowid"],
        SqlDialect::Postgres => &[],
    };
    let mut seen: HashMap<String, usize> = HashMap::new();
    for token in tokens {
        let Token::Word(word) = token else { continue };
        if word.quote_style.is_none() && word.keyword == Keyword::NATURAL {
            let (table, _) = ruled.tables[0];
            return Err(ruled.refuse_row(table, "a NATURAL join"));
        }
        let name = fold(&word.value);
        if ruled.denied.contains_key(name.as_str()) {
            return Err(ruled.refuse_denied(&name));
        }
        if row_ids.contains(&name.as_str()) {
            return Err(ColumnRefusal(format!(
                "{name} is the row id, which may be a denied or masked column by another name"
            )));
        }
        if ruled.masked.contains_key(name.as_str()) || selected.allowed.contains_key(&name) {
            let count = seen.entry(name).or_default();
            *count += 1;
        }
    }
    for (name, count) in seen {
        if count > selected.allowed.get(&name).copied().unwrap_or(0) {
            let column = match ruled.masked.contains_key(name.as_str()) {
                true => name,
                // An alias of a selected masked column, used again.
                false => selected.aliases.get(&name).cloned().unwrap_or(name),
            };
            return Err(ruled.refuse_masked(&column, "not in an expression, a condition, an ordering or a subquery"));
        }
    }
    Ok(())
}

/// For a query the gate refused for another reason: why it is refused for a ruled column, if
/// its words name a ruled table and one of that table's denied columns, or read the table
/// whole with `TABLE`.
pub(super) fn named_in(
    tokens: &[sqlparser::tokenizer::TokenWithSpan],
    rules: &HashMap<TableName, ColumnRule>,
) -> Option<String> {
    let words: Vec<(String, bool)> = tokens
        .iter()
        .filter_map(|token| match &token.token {
            Token::Word(word) => {
                Some((fold(&word.value), word.quote_style.is_none() && word.keyword == Keyword::TABLE))
            }
            _ => None,
        })
        .collect();
    let whole = words.first().is_some_and(|(_, table)| *table);
    for (table, rule) in rules {
        if !words.iter().any(|(word, _)| *word == fold(&table.table)) {
            continue;
        }
        if let Some(column) = words.iter().find(|(word, _)| rule.deny.contains(word)) {
            return Some(format!("column {} of {table} is denied: it may not appear anywhere in a query", column.0));
        }
        if whole && !rule.is_empty() {
            return Some(format!(
                "TABLE reads every column of {table}, which has denied or masked columns: name the columns you need"
            ));
        }
    }
    None
}

/// The checks on the tree: whole-row references and `*` over ruled tables.
struct Shapes<'r, 'a> {
    ruled: &'r Ruled<'a>,
    refusal: Option<ColumnRefusal>,
}

impl Shapes<'_, '_> {
    fn refuse(&mut self, refusal: ColumnRefusal) -> ControlFlow<()> {
        self.refusal = Some(refusal);
        ControlFlow::Break(())
    }

    /// The ruled table a name's last part stands for as a whole row.
    fn row_of(&self, name: &str) -> Option<TableName> {
        self.ruled.row_names.get(name).map(|table| (*table).clone())
    }

    fn wildcard_of(&self, name: &ObjectName) -> Option<TableName> {
        match name.0.last() {
            Some(ObjectNamePart::Identifier(last)) => self.row_of(&lower(last)),
            _ => self.ruled.tables.first().map(|(table, _)| (*table).clone()),
        }
    }
}

impl Visitor for Shapes<'_, '_> {
    type Break = ();

    fn pre_visit_select(&mut self, select: &Select) -> ControlFlow<()> {
        for item in &select.projection {
            match item {
                SelectItem::Wildcard(_) => {
                    if let Some(table) = self.ruled.ruled_in_from(&select.from) {
                        return self.refuse(self.ruled.refuse_row(&table, "SELECT *"));
                    }
                }
                SelectItem::QualifiedWildcard(SelectItemQualifiedWildcardKind::ObjectName(name), _) => {
                    if let Some(table) = self.wildcard_of(name) {
                        return self.refuse(self.ruled.refuse_row(&table, &format!("{name}.*")));
                    }
                }
                _ => {}
            }
        }
        ControlFlow::Continue(())
    }

    fn pre_visit_expr(&mut self, expr: &Expr) -> ControlFlow<()> {
        match expr {
            Expr::Identifier(ident) => {
                if let Some(table) = self.row_of(&lower(ident)) {
                    return self.refuse(self.ruled.refuse_row(&table, &format!("the whole-row reference {ident}")));
                }
            }
            Expr::CompoundIdentifier(parts) => {
                if let Some(table) = parts.last().and_then(|last| self.row_of(&lower(last))) {
                    let name = parts.iter().map(|part| part.value.as_str()).collect::<Vec<_>>().join(".");
                    return self.refuse(self.ruled.refuse_row(&table, &format!("the whole-row reference {name}")));
                }
            }
            Expr::QualifiedWildcard(name, _) => {
                if let Some(table) = self.wildcard_of(name) {
                    return self.refuse(self.ruled.refuse_row(&table, &format!("{name}.*")));
                }
            }
            Expr::Wildcard(_) => {
                if let Some((table, _)) = self.ruled.tables.first() {
                    let table = (*table).clone();
                    return self.refuse(self.ruled.refuse_row(&table, "*"));
                }
            }
            Expr::Function(function) => {
                let FunctionArguments::List(list) = &function.args else { return ControlFlow::Continue(()) };
                let is_count = function.name.0.len() == 1
                    && matches!(&function.name.0[0], ObjectNamePart::Identifier(ident) if ident.value.eq_ignore_ascii_case("count"));
                for arg in &list.args {
                    let arg = match arg {
                        FunctionArg::Named { arg, .. }
                        | FunctionArg::ExprNamed { arg, .. }
                        | FunctionArg::Unnamed(arg) => arg,
                    };
                    match arg {
                        FunctionArgExpr::QualifiedWildcard(name) => {
                            if let Some(table) = self.wildcard_of(name) {
                                return self.refuse(self.ruled.refuse_row(&table, &format!("{name}.*")));
                            }
                        }
                        FunctionArgExpr::Wildcard | FunctionArgExpr::WildcardWithOptions(_) if !is_count => {
                            if let Some((table, _)) = self.ruled.tables.first() {
                                let table = (*table).clone();
                                return self.refuse(self.ruled.refuse_row(&table, &format!("{}(*)", function.name)));
                            }
                        }
                        _ => {}
                    }
                }
            }
            _ => {}
        }
        ControlFlow::Continue(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_keep_null_and_hide_the_rest() {
        let key = MaskKey::new(b"key".to_vec());
        assert_eq!(Mask::Hash.apply("null", &key), "null");
        let hashed = Mask::Hash.apply("\"ann@example.com\"", &key);
        assert_eq!(hashed.len(), 66, "{hashed}");
        assert_eq!(hashed, Mask::Hash.apply("\"ann@example.com\"", &key), "stable under one key");
        assert_ne!(hashed, Mask::Hash.apply("\"bob@example.com\"", &key));
        assert_ne!(hashed, Mask::Hash.apply("\"ann@example.com\"", &MaskKey::new(b"other".to_vec())));
        assert_eq!(Mask::Last4.apply("\"4111111111111234\"", &key), "\"****1234\"");
        assert_eq!(Mask::Last4.apply("\"1234\"", &key), "\"****\"");
        assert_eq!(Mask::Last4.apply("987654321", &key), "\"****4321\"");
        assert_eq!(Mask::Last4.apply("\"ünïcödé\"", &key), "\"****cödé\"");
        assert_eq!(Mask::Redact.apply("\"secret\"", &key), "\"[redacted]\"");
        assert_eq!(Mask::Redact.apply("42", &key), "\"[redacted]\"");
    }

    #[test]
    fn a_column_is_denied_or_masked_never_both() {
        assert!(ColumnRule::new().deny("ssn").and_then(|rule| rule.mask("SSN", Mask::Hash)).is_err());
        assert!(ColumnRule::new().mask("email", Mask::Hash).and_then(|rule| rule.deny("Email")).is_err());
        let rule = ColumnRule::new().deny("SSN").and_then(|rule| rule.mask("Email", Mask::Last4)).expect("valid");
        assert!(rule.is_denied("ssn") && rule.is_denied("Ssn") && !rule.is_denied("email"));
        assert_eq!(rule.mask_of("EMAIL"), Some(Mask::Last4));
        assert_eq!(rule.mask_of("ssn"), None);
    }
}

#[cfg(test)]
mod gate {
    use super::super::{AllowList, SqlDialect, SqlValidator};
    use super::*;
    use crate::denial::DenialCode;

    fn validator(dialect: SqlDialect) -> SqlValidator {
        let schema = match dialect {
            SqlDialect::Postgres => "public",
            SqlDialect::MySql => "shop",
            SqlDialect::Sqlite => "main",
        };
        let rule = ColumnRule::new()
            .deny("ssn")
            .and_then(|rule| rule.deny("password_hash"))
            .and_then(|rule| rule.mask("email", Mask::Hash))
            .and_then(|rule| rule.mask("phone", Mask::Last4))
            .expect("rule");
        SqlValidator::new(AllowList::new(dialect, schema).schema(schema).columns(schema, "customers", rule))
    }

    const DIALECTS: [SqlDialect; 3] = [SqlDialect::Postgres, SqlDialect::MySql, SqlDialect::Sqlite];

    /// The masks of an accepted query, or the refusal's message.
    fn gate(dialect: SqlDialect, sql: &str) -> Result<Masks, String> {
        match validator(dialect).validate(sql, 0) {
            Ok(query) => Ok(query.masks().to_vec()),
            Err(denial) if denial.code() == DenialCode::ColumnDenied => Err(denial.message().to_owned()),
            Err(denial) => Err(format!("{}: {}", denial.code(), denial.message())),
        }
    }

    #[test]
    fn denied_columns_are_refused_wherever_they_are_named() {
        let cases = [
            "SELECT ssn FROM customers",
            "SELECT SSN FROM customers",
            "SELECT c.ssn FROM customers c",
            "SELECT id FROM customers WHERE ssn = '1'",
            "SELECT id FROM customers ORDER BY ssn",
            "SELECT count(*) FROM customers GROUP BY ssn",
            "SELECT id FROM customers GROUP BY id HAVING max(ssn) > '1'",
            "SELECT lower(ssn) AS x FROM customers",
            "SELECT x FROM (SELECT ssn AS x FROM customers) AS d",
            "WITH d AS (SELECT ssn FROM customers) SELECT 1 FROM d",
            "SELECT id FROM customers WHERE EXISTS (SELECT 1 FROM customers c2 WHERE c2.ssn LIKE '1%')",
            "SELECT a.id FROM customers a JOIN customers b USING (ssn)",
            "SELECT a.id FROM customers a JOIN customers b ON a.ssn = b.ssn",
            "SELECT row_number() OVER (ORDER BY ssn) AS n FROM customers",
            "SELECT id FROM customers WHERE password_hash IS NULL",
        ];
        for dialect in DIALECTS {
            let quoted = match dialect {
                SqlDialect::MySql => "SELECT `SSN` FROM customers",
                SqlDialect::Postgres | SqlDialect::Sqlite => "SELECT \"ssn\" FROM customers",
            };
            for sql in cases.iter().chain([&quoted]) {
                let refusal = gate(dialect, sql).expect_err(sql);
                assert!(refusal.contains("is denied"), "{dialect} {sql}: {refusal}");
            }
        }
    }

    #[test]
    fn whole_rows_and_stars_over_a_ruled_table_are_refused() {
        let cases = [
            "SELECT * FROM customers",
            "SELECT c.* FROM customers c",
            "SELECT customers.* FROM customers",
            "SELECT o.*, 1 FROM customers o",
            "SELECT * FROM customers NATURAL JOIN customers",
            "SELECT id FROM customers NATURAL JOIN customers",
            "SELECT * FROM (SELECT * FROM customers) d",
            "SELECT * FROM customers JOIN customers c2 USING (id)",
            "SELECT * FROM (customers c JOIN orders o ON o.id = c.id)",
            "SELECT * FROM orders o JOIN (orders p JOIN customers c ON c.id = p.id) ON o.id = p.id",
        ];
        for dialect in DIALECTS {
            for sql in cases {
                assert!(gate(dialect, sql).is_err(), "{dialect} {sql}");
            }
        }
        let postgres = [
            "SELECT c FROM customers c",
            "SELECT customers FROM customers",
            "SELECT row_to_json(c) FROM customers c",
            "SELECT to_jsonb(c) AS j FROM customers AS c",
            "SELECT row_to_json(c.*) FROM customers c",
            "SELECT (c).id FROM customers c",
            "SELECT c::text FROM customers c",
            "SELECT id FROM customers c WHERE c::text LIKE '%1%'",
            "SELECT json_agg(c) FROM customers c",
            "SELECT x.z FROM customers AS x(a, b, z)",
            "SELECT ROW(c.*) FROM customers c",
            "SELECT public.customers FROM public.customers",
            "SELECT id FROM customers c WHERE (c.*)::text LIKE '%1%'",
            "SELECT (customers.*)::text AS t FROM customers",
            "SELECT json_agg(public.customers) FROM public.customers",
        ];
        for sql in postgres {
            assert!(gate(SqlDialect::Postgres, sql).is_err(), "{sql}");
        }
        assert!(gate(SqlDialect::Sqlite, "SELECT rowid FROM customers").is_err());
        assert!(gate(SqlDialect::Sqlite, "SELECT _ROWID_ FROM customers").is_err());
        assert!(gate(SqlDialect::MySql, "SELECT _rowid FROM customers").is_err());
        for dialect in DIALECTS {
            assert_eq!(gate(dialect, "SELECT count(*) FROM customers"), Ok(vec![]), "{dialect}");
            assert_eq!(gate(dialect, "SELECT id, name FROM customers WHERE id > 1 ORDER BY name"), Ok(vec![]));
            assert_eq!(gate(dialect, "SELECT * FROM orders"), Ok(vec![]), "no rules on orders");
            // `*` as an argument passes only to count: to another function it would be the row.
            let refusal = gate(dialect, "SELECT max(*) AS m FROM customers").expect_err("refused");
            assert!(refusal.contains("max(*) reads every column"), "{dialect}: {refusal}");
            let beside = "SELECT o.*, c.id FROM customers c JOIN orders o ON o.id = c.id";
            assert_eq!(gate(dialect, beside), Ok(vec![]), "{dialect}: a * over a table without rules");
        }
    }

    #[test]
    fn masked_columns_pass_only_as_bare_outermost_selections() {
        for dialect in DIALECTS {
            let ok = [
                ("SELECT email FROM customers", vec![(0, Mask::Hash)]),
                ("SELECT id, c.email AS e, phone FROM customers c", vec![(1, Mask::Hash), (2, Mask::Last4)]),
                ("SELECT id, EMAIL FROM customers WHERE id = 1 ORDER BY id", vec![(1, Mask::Hash)]),
                (
                    "WITH x AS (SELECT id FROM customers) SELECT x.id, c.email FROM x JOIN customers c ON c.id = x.id",
                    vec![(1, Mask::Hash)],
                ),
            ];
            for (sql, masks) in ok {
                assert_eq!(gate(dialect, sql), Ok(masks), "{dialect} {sql}");
            }
            let refused = [
                "SELECT lower(email) AS e FROM customers",
                "SELECT id FROM customers WHERE email = 'a@b.c'",
                "SELECT email FROM customers ORDER BY email",
                "SELECT email AS e FROM customers ORDER BY e",
                "SELECT email FROM customers ORDER BY 1",
                "SELECT id, email FROM customers GROUP BY 2, id",
                "SELECT DISTINCT email FROM customers",
                "SELECT email FROM customers UNION SELECT 'x'",
                "SELECT email FROM customers UNION ALL SELECT 'x'",
                "SELECT max(email) AS m FROM customers",
                "SELECT email || '' AS m FROM customers",
                "SELECT (SELECT email FROM customers LIMIT 1) AS e",
                "SELECT e FROM (SELECT email AS e FROM customers) d",
                "WITH d AS (SELECT email FROM customers) SELECT email FROM d",
                "SELECT a.id FROM customers a JOIN customers b ON a.email = b.email",
                "SELECT a.id FROM customers a JOIN customers b USING (email)",
                "SELECT count(DISTINCT email) AS n FROM customers",
                "SELECT email, phone FROM customers WHERE phone LIKE '%1'",
                "SELECT id FROM customers WHERE id IN (SELECT id FROM customers WHERE email LIKE 'a%')",
            ];
            for sql in refused {
                let refusal = gate(dialect, sql).expect_err(sql);
                assert!(refusal.contains("is masked"), "{dialect} {sql}: {refusal}");
            }
        }
    }

    /// A query the walk refuses for another reason, which names a ruled table and a denied
    /// column of it, or reads it with `TABLE`, is refused for the column.
    #[test]
    fn a_query_refused_for_another_reason_is_refused_for_its_denied_column() {
        for dialect in DIALECTS {
            let refusal = gate(dialect, "SELECT pg_sleep(1), ssn FROM customers").expect_err("refused");
            assert!(refusal.starts_with("column ssn of") && refusal.contains("customers"), "{dialect}: {refusal}");
            let refusal = gate(dialect, "TABLE customers").expect_err("refused");
            assert!(refusal.starts_with("TABLE reads every column of"), "{dialect}: {refusal}");
            // Other refusals keep their reason.
            let refusal = gate(dialect, "SELECT pg_sleep(1), id FROM customers").expect_err("refused");
            assert!(refusal.starts_with("QUERY_REJECTED"), "{dialect}: {refusal}");
            let refusal = gate(dialect, "TABLE orders").expect_err("refused");
            assert!(refusal.starts_with("QUERY_REJECTED"), "{dialect}: {refusal}");
        }
    }

    /// A PostgreSQL table whose quoted name differs from the rule's only by case is ruled too.
    #[test]
    fn a_rule_holds_for_every_spelling_of_its_table() {
        let validator = SqlValidator::new(AllowList::new(SqlDialect::Postgres, "public").schema("public").columns(
            "public",
            "customers",
            ColumnRule::new().deny("ssn").expect("rule"),
        ));
        for sql in
            ["SELECT ssn FROM \"Customers\"", "SELECT \"ssn\" FROM PUBLIC.\"CUSTOMERS\"", "SELECT * FROM \"cusTomers\""]
        {
            let denial = validator.validate(sql, 0).expect_err(sql);
            assert_eq!(denial.code(), DenialCode::ColumnDenied, "{sql}");
        }
    }

    #[test]
    fn a_refusal_names_the_column_and_its_table() {
        let refusal = gate(SqlDialect::Postgres, "SELECT ssn FROM customers").expect_err("refused");
        assert!(refusal.contains("ssn") && refusal.contains("public.customers"), "{refusal}");
        let refusal = gate(SqlDialect::Postgres, "SELECT upper(email) AS e FROM customers").expect_err("refused");
        assert!(refusal.contains("email") && refusal.contains("public.customers"), "{refusal}");
        let refusal = gate(SqlDialect::Postgres, "SELECT * FROM customers").expect_err("refused");
        assert!(refusal.contains("public.customers") && !refusal.contains("ssn"), "{refusal}");
    }
}
