//! Recursive queries: no value may be built from two of the query's own columns, which could
//! double it at every step.

use super::*;

/// In a recursive CTE, refuses a value built from two of the CTE's own columns (by a growing
/// construct: a concatenation, a string or array function, an array or row constructor):
/// such a value can double at every step of the recursion.
pub(super) fn check_recursion(
    name: &Ident,
    columns: &[sqlparser::ast::TableAliasColumnDef],
    query: &Query,
    dialect: SqlDialect,
) -> ControlFlow<String> {
    let key = |ident: &Ident| dialect_key(dialect, ident);
    let cte = key(name);
    let mut own: HashSet<String> = columns.iter().map(|column| key(&column.name)).collect();
    let mut members = Vec::new();
    collect_selects(&query.body, &mut members);
    if own.is_empty()
        && let Some(anchor) = members.first()
    {
        for item in &anchor.projection {
            match item {
                SelectItem::ExprWithAlias { alias, .. } => {
                    own.insert(key(alias));
                }
                SelectItem::UnnamedExpr(Expr::Identifier(ident)) => {
                    own.insert(key(ident));
                }
                SelectItem::UnnamedExpr(Expr::CompoundIdentifier(parts)) => {
                    if let Some(last) = parts.last() {
                        own.insert(key(last));
                    }
                }
                _ => {}
            }
        }
    }
    for select in members {
        // Only a member that reads the CTE itself recurses; the names it reads it by.
        let mut names = HashSet::new();
        for table in &select.from {
            for factor in std::iter::once(&table.relation).chain(table.joins.iter().map(|join| &join.relation)) {
                if let TableFactor::Table { name: relation, alias, .. } = factor
                    && let [sqlparser::ast::ObjectNamePart::Identifier(ident)] = relation.0.as_slice()
                    && key(ident) == cte
                {
                    names.insert(alias.as_ref().map_or_else(|| cte.clone(), |alias| key(&alias.name)));
                }
            }
        }
        if names.is_empty() {
            continue;
        }
        let refs = Refs { own: &own, names: &names, dialect };
        for item in &select.projection {
            let expr = match item {
                SelectItem::UnnamedExpr(expr) | SelectItem::ExprWithAlias { expr, .. } => expr,
                _ => continue,
            };
            if let Some(reason) = refs.doubling(expr) {
                return ControlFlow::Break(reason);
            }
        }
    }
    ControlFlow::Continue(())
}

/// The SELECTs of a query body, the anchor first.
pub(super) fn collect_selects<'q>(body: &'q SetExpr, out: &mut Vec<&'q sqlparser::ast::Select>) {
    match body {
        SetExpr::Select(select) => out.push(select),
        SetExpr::SetOperation { left, right, .. } => {
            collect_selects(left, out);
            collect_selects(right, out);
        }
        SetExpr::Query(query) => collect_selects(&query.body, out),
        _ => {}
    }
}

pub(super) fn dialect_key(dialect: SqlDialect, ident: &Ident) -> String {
    match dialect {
        SqlDialect::Postgres if ident.quote_style.is_some() => ident.value.clone(),
        _ => ident.value.to_ascii_lowercase(),
    }
}

/// References to a recursive CTE's own columns.
pub(super) struct Refs<'a> {
    pub(super) own: &'a HashSet<String>,
    /// The names the member reads the CTE by (its name, or an alias).
    pub(super) names: &'a HashSet<String>,
    pub(super) dialect: SqlDialect,
}

impl Refs<'_> {
    /// How many references to the CTE's own columns `expr` holds.
    pub(super) fn count(&self, expr: &Expr) -> usize {
        struct Counter<'r, 'a>(&'r Refs<'a>, usize);
        impl Visitor for Counter<'_, '_> {
            type Break = ();
            fn pre_visit_expr(&mut self, expr: &Expr) -> ControlFlow<()> {
                let refs = self.0;
                let key = |ident: &Ident| dialect_key(refs.dialect, ident);
                match expr {
                    Expr::Identifier(ident) if refs.own.contains(&key(ident)) => self.1 += 1,
                    Expr::CompoundIdentifier(parts) => {
                        if let [qualifier, column] = parts.as_slice()
                            && refs.names.contains(&key(qualifier))
                        {
                            let _ = column;
                            self.1 += 1;
                        }
                    }
                    _ => {}
                }
                ControlFlow::Continue(())
            }
        }
        let mut counter = Counter(self, 0);
        let _ = expr.visit(&mut counter);
        counter.1
    }

    /// Why `expr` could double a value at each step, if it could.
    pub(super) fn doubling(&self, expr: &Expr) -> Option<String> {
        struct Finder<'r, 'a>(&'r Refs<'a>, Option<String>);
        impl Visitor for Finder<'_, '_> {
            type Break = ();
            fn pre_visit_expr(&mut self, expr: &Expr) -> ControlFlow<()> {
                if growing(expr) && self.0.count(expr) >= 2 {
                    self.1 = Some(
                        "a recursive query may not build a value from two of its own columns: the value could \
                         double at every step"
                            .to_owned(),
                    );
                    return ControlFlow::Break(());
                }
                ControlFlow::Continue(())
            }
        }
        let mut finder = Finder(self, None);
        let _ = expr.visit(&mut finder);
        finder.1
    }
}

/// Whether an expression builds a value whose size is the sum (or more) of its parts.
pub(super) fn growing(expr: &Expr) -> bool {
    match expr {
        Expr::BinaryOp { op: BinaryOperator::StringConcat, .. } | Expr::Array(_) | Expr::Tuple(_) => true,
        Expr::Function(function) => matches!(
            function.name.to_string().to_ascii_lowercase().as_str(),
            "concat"
                | "concat_ws"
                | "format"
                | "printf"
                | "repeat"
                | "lpad"
                | "rpad"
                | "replace"
                | "regexp_replace"
                | "insert"
                | "array_cat"
                | "array_append"
                | "array_prepend"
                | "json_build_array"
                | "json_build_object"
                | "jsonb_build_array"
                | "jsonb_build_object"
                | "json_array"
                | "json_object"
                | "json_insert"
                | "json_set"
                | "json_replace"
                | "json_patch"
                | "row"
                | "to_json"
                | "to_jsonb"
                | "row_to_json"
        ),
        _ => false,
    }
}
