//! The catalog queries of introspection and posture.

/// What a `SHOW GRANTS` line allows beyond reading, or `None` when it only reads.
pub(super) fn grant_finding(grant: &str) -> Option<String> {
    const READING: [&str; 4] = ["SELECT", "USAGE", "SHOW VIEW", "SHOW DATABASES"];
    let rest = grant.strip_prefix("GRANT ")?;
    let (privileges, rest) = rest.split_once(" ON ")?;
    let scope = rest.split_once(" TO ").map_or(rest, |(scope, _)| scope);
    let beyond: Vec<&str> =
        privileges.split(", ").map(str::trim).filter(|privilege| !READING.contains(privilege)).collect();
    let mut finding =
        if beyond.is_empty() { String::new() } else { format!("it has {} on {scope}", beyond.join(", ")) };
    if grant.contains("WITH GRANT OPTION") {
        if !finding.is_empty() {
            finding.push_str("; ");
        }
        finding.push_str(&format!("it can grant its privileges on {scope}"));
    }
    (!finding.is_empty()).then_some(finding)
}

pub(super) const LIST_TABLES: &str = "SELECT TABLE_SCHEMA, TABLE_NAME, TABLE_TYPE FROM information_schema.TABLES \
     WHERE TABLE_SCHEMA = ? ORDER BY TABLE_NAME";

pub(super) const DESCRIBE_COLUMNS: &str = "SELECT TABLE_SCHEMA, TABLE_NAME, COLUMN_NAME, COLUMN_TYPE, IS_NULLABLE, COLUMN_DEFAULT, \
     COLUMN_COMMENT FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ? ORDER BY ORDINAL_POSITION";

pub(super) const DESCRIBE_KEYS: &str = "SELECT CONSTRAINT_NAME, COLUMN_NAME, REFERENCED_TABLE_SCHEMA, REFERENCED_TABLE_NAME, \
     REFERENCED_COLUMN_NAME FROM information_schema.KEY_COLUMN_USAGE WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ? \
     ORDER BY CONSTRAINT_NAME = 'PRIMARY' DESC, CONSTRAINT_NAME, ORDINAL_POSITION";

pub(super) const DESCRIBE_INDEXES: &str = "SELECT INDEX_NAME, COLUMN_NAME, NON_UNIQUE FROM information_schema.STATISTICS \
     WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ? ORDER BY INDEX_NAME, SEQ_IN_INDEX";
