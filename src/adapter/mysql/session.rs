//! What a connection knows about its server and the tables it reads: which allow-listed names
//! are base tables (asked of the catalog at most once a second), and whether the server's
//! global `sql_mode` reads text as the SQL gate does.

use super::*;

/// What the MySQL adapter needs to ask its catalog which tables are base tables.
pub(super) struct TableKinds {
    /// The allow-list's schemas, as the catalog query's parameters.
    pub(super) schemas: Vec<String>,
    pub(super) known: crate::adapter::TableKinds,
}

impl TableKinds {
    pub(super) fn new(allow: &AllowList) -> Self {
        TableKinds { schemas: allow.schemas().map(str::to_owned).collect(), known: crate::adapter::TableKinds::new() }
    }

    /// Whether every one of `tables` is a base table; the catalog is asked, on `conn`, when
    /// what it said is older than [`crate::adapter::TableKinds::FRESH`]. A name it does not list as a
    /// base table (a view, a table created since), or any doubt, is a no.
    pub(super) async fn all_base(&self, conn: &mut Conn, tables: &[TableName]) -> bool {
        if let Some(answer) = self.known.fresh(tables) {
            return answer;
        }
        if self.schemas.is_empty() {
            return false;
        }
        let marks = vec!["?"; self.schemas.len()].join(", ");
        let query = format!(
            "SELECT LOWER(TABLE_SCHEMA), LOWER(TABLE_NAME) FROM information_schema.TABLES \
             WHERE TABLE_TYPE = 'BASE TABLE' AND TABLE_SCHEMA IN ({marks})"
        );
        let Ok(rows) = conn.exec::<(String, String), _, _>(query, self.schemas.clone()).await else { return false };
        self.known.learn(rows.into_iter().map(|(schema, table)| TableName { schema, table }).collect());
        self.known.fresh(tables).unwrap_or(false)
    }
}

/// What kind of server the adapter talks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct ServerKind {
    /// MariaDB (`max_statement_time`), or MySQL (`max_execution_time`).
    pub(super) mariadb: bool,
    /// The server's own `sql_mode` reads statements as the session's does (it holds no mode
    /// that changes how text is read: quotes, escapes, `||`, spaces after names…), so that a
    /// statement prepared on a connection just reset, before the session's settings, is read
    /// as it will run.
    pub(super) prepares_as_we_read: bool,
}

impl ServerKind {
    pub(super) async fn probe(conn: &mut Conn) -> Result<ServerKind, mysql_async::Error> {
        let answer: Option<(String, String)> = conn.query_first("SELECT VERSION(), @@GLOBAL.sql_mode").await?;
        let (version, mode) = answer.unwrap_or_default();
        Ok(ServerKind { mariadb: version.contains("MariaDB"), prepares_as_we_read: reads_as_we_do(&mode) })
    }
}

/// Whether every mode in `sql_mode` leaves how statement text is read alone.
pub(super) fn reads_as_we_do(sql_mode: &str) -> bool {
    const TEXT_NEUTRAL: &[&str] = &[
        "STRICT_TRANS_TABLES",
        "STRICT_ALL_TABLES",
        "ERROR_FOR_DIVISION_BY_ZERO",
        "NO_AUTO_CREATE_USER",
        "NO_ENGINE_SUBSTITUTION",
        "ONLY_FULL_GROUP_BY",
        "NO_ZERO_IN_DATE",
        "NO_ZERO_DATE",
        "NO_AUTO_VALUE_ON_ZERO",
        "NO_DIR_IN_CREATE",
        "ALLOW_INVALID_DATES",
        "TRADITIONAL",
    ];
    sql_mode.split(',').filter(|mode| !mode.is_empty()).all(|mode| TEXT_NEUTRAL.contains(&mode))
}

/// What `probe` answers, kept in `known` only once it has answered.
pub(super) async fn remember<T: Copy, E>(
    known: &tokio::sync::OnceCell<T>,
    probe: impl Future<Output = Result<T, E>>,
) -> Result<T, E> {
    known.get_or_try_init(|| probe).await.copied()
}
