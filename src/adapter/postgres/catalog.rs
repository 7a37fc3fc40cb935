//! The catalog queries of introspection and posture, and identifier quoting.

/// Quotes an identifier for PostgreSQL.
pub(super) fn quote(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

pub(super) fn relation_kind(kind: u8) -> &'static str {
    match kind {
        b'v' => "view",
        b'm' => "materialized view",
        b'f' => "foreign table",
        _ => "table",
    }
}

/// The plain tables of the allow-listed schemas: no view, no row-level security. It runs after
/// a read's transaction has ended, with the session's search path: every operator is named
/// with its schema, so none planted in another schema can stand in.
pub(super) const PLAIN_TABLES: &str = "SELECT n.nspname::pg_catalog.text, c.relname::pg_catalog.text \
     FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid OPERATOR(pg_catalog.=) c.relnamespace \
     WHERE n.nspname OPERATOR(pg_catalog.=) ANY ($1::pg_catalog.text[]) \
     AND c.relkind OPERATOR(pg_catalog.=) ANY ('{r,p}'::pg_catalog.\"char\"[]) AND NOT c.relrowsecurity";

pub(super) const POSTURE_ROLE: &str = "SELECT current_user::text, r.rolsuper, r.rolcreaterole, r.rolcreatedb, r.rolbypassrls, \
     pg_catalog.has_database_privilege(pg_catalog.current_database(), 'CREATE'), \
     pg_catalog.pg_has_role(current_user, 'pg_read_server_files', 'MEMBER') \
     OR pg_catalog.pg_has_role(current_user, 'pg_write_server_files', 'MEMBER') \
     OR pg_catalog.pg_has_role(current_user, 'pg_execute_server_program', 'MEMBER') \
     FROM pg_catalog.pg_roles r WHERE r.rolname = current_user";

/// Allow-listed schemas the role can create in, schemas where others than their owner can
/// (PUBLIC included, as before PostgreSQL 15), and tables the role can change.
pub(super) const POSTURE_WRITABLE: &str = "SELECT n.nspname::text, '', 'CREATE' FROM pg_catalog.pg_namespace n \
     WHERE n.nspname = ANY($1) AND pg_catalog.has_schema_privilege(n.oid, 'CREATE') \
     UNION ALL SELECT n.nspname::text, CASE WHEN a.grantee = 0 THEN 'PUBLIC' \
     ELSE pg_catalog.pg_get_userbyid(a.grantee)::text END, 'SHARED' FROM pg_catalog.pg_namespace n \
     CROSS JOIN LATERAL pg_catalog.aclexplode(COALESCE(n.nspacl, pg_catalog.acldefault('n', n.nspowner))) a \
     WHERE n.nspname = ANY($1) AND a.privilege_type = 'CREATE' AND a.grantee <> n.nspowner \
     UNION ALL SELECT n.nspname::text, c.relname::text, 'WRITE' FROM pg_catalog.pg_class c \
     JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
     WHERE c.relkind IN ('r', 'p') AND n.nspname = ANY($1) \
     AND pg_catalog.has_table_privilege(c.oid, 'INSERT, UPDATE, DELETE, TRUNCATE') \
     ORDER BY 1, 2";

pub(super) const LIST_TABLES: &str = "SELECT n.nspname::text, c.relname::text, c.relkind \
     FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
     WHERE c.relkind IN ('r', 'p', 'v', 'm', 'f') AND n.nspname = ANY($1) \
     ORDER BY 1, 2";

pub(super) const DESCRIBE_COLUMNS: &str = "SELECT a.attname::text, pg_catalog.format_type(a.atttypid, a.atttypmod), \
     NOT a.attnotnull, pg_catalog.pg_get_expr(d.adbin, d.adrelid), pg_catalog.col_description(c.oid, a.attnum::int) \
     FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
     JOIN pg_catalog.pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped \
     LEFT JOIN pg_catalog.pg_attrdef d ON d.adrelid = c.oid AND d.adnum = a.attnum \
     WHERE n.nspname = $1 AND c.relname = $2 AND c.relkind IN ('r', 'p', 'v', 'm', 'f') \
     ORDER BY a.attnum";

pub(super) const DESCRIBE_PRIMARY_KEY: &str = "SELECT a.attname::text \
     FROM pg_catalog.pg_index i JOIN pg_catalog.pg_class c ON c.oid = i.indrelid \
     JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
     CROSS JOIN LATERAL pg_catalog.unnest(i.indkey::int2[]) WITH ORDINALITY AS k(attnum, ord) \
     JOIN pg_catalog.pg_attribute a ON a.attrelid = c.oid AND a.attnum = k.attnum \
     WHERE n.nspname = $1 AND c.relname = $2 AND i.indisprimary \
     ORDER BY k.ord";

pub(super) const DESCRIBE_FOREIGN_KEYS: &str = "SELECT con.conname::text, \
     ARRAY(SELECT a.attname::text FROM pg_catalog.unnest(con.conkey) WITH ORDINALITY AS k(attnum, ord) \
           JOIN pg_catalog.pg_attribute a ON a.attrelid = con.conrelid AND a.attnum = k.attnum ORDER BY k.ord), \
     rn.nspname::text, rc.relname::text, \
     ARRAY(SELECT a.attname::text FROM pg_catalog.unnest(con.confkey) WITH ORDINALITY AS k(attnum, ord) \
           JOIN pg_catalog.pg_attribute a ON a.attrelid = con.confrelid AND a.attnum = k.attnum ORDER BY k.ord) \
     FROM pg_catalog.pg_constraint con JOIN pg_catalog.pg_class c ON c.oid = con.conrelid \
     JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
     JOIN pg_catalog.pg_class rc ON rc.oid = con.confrelid JOIN pg_catalog.pg_namespace rn ON rn.oid = rc.relnamespace \
     WHERE con.contype = 'f' AND n.nspname = $1 AND c.relname = $2 \
     ORDER BY con.conname";

pub(super) const DESCRIBE_INDEXES: &str = "SELECT ic.relname::text, i.indisunique, \
     ARRAY(SELECT pg_catalog.pg_get_indexdef(i.indexrelid, k.ord, true) \
           FROM pg_catalog.generate_series(1, i.indnkeyatts::int) AS k(ord) ORDER BY k.ord) \
     FROM pg_catalog.pg_index i JOIN pg_catalog.pg_class ic ON ic.oid = i.indexrelid \
     JOIN pg_catalog.pg_class c ON c.oid = i.indrelid JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
     WHERE n.nspname = $1 AND c.relname = $2 \
     ORDER BY ic.relname";
