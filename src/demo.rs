//! The built-in demo: a small shop in an in-memory SQLite database, served read-only through
//! the same adapter, validator and boundary as any other database. Nothing about it is
//! special-cased; only the data is made up.

use rusqlite::{Connection, OpenFlags};

use crate::adapter::AdapterError;
use crate::adapter::AdapterErrorKind;
use crate::sql::{AllowList, SqlDialect};

/// The demo's tables, all readable.
pub const TABLES: [&str; 4] = ["customers", "products", "orders", "order_items"];

/// A populated in-memory database. It lives as long as this value: SQLite keeps a shared
/// in-memory database while a connection to it is open.
pub struct DemoDatabase {
    /// Never used again; behind a mutex only so that the demo can be shared across threads.
    _keeper: std::sync::Mutex<Connection>,
    url: String,
}

impl std::fmt::Debug for DemoDatabase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DemoDatabase").field("url", &self.url).finish()
    }
}

impl DemoDatabase {
    /// Creates and fills the demo database.
    pub fn create() -> Result<Self, AdapterError> {
        let mut id = [0u8; 8];
        getrandom::fill(&mut id).map_err(|error| AdapterError::new(AdapterErrorKind::Database, error.to_string()))?;
        let name = hex::encode(id);
        let uri = format!("file:sqlwarden-demo-{name}?mode=memory&cache=shared");
        let flags = OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_CREATE
            | OpenFlags::SQLITE_OPEN_URI
            | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let failed = |error: rusqlite::Error| AdapterError::new(AdapterErrorKind::Database, error.to_string());
        let keeper = Connection::open_with_flags(&uri, flags).map_err(failed)?;
        keeper.execute_batch(SCHEMA_AND_DATA).map_err(failed)?;
        Ok(DemoDatabase { _keeper: std::sync::Mutex::new(keeper), url: format!("sqlite:{uri}") })
    }

    /// The URL the SQLite adapter opens it by.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Every demo table, and nothing else.
    pub fn allow_list() -> AllowList {
        TABLES.iter().fold(AllowList::new(SqlDialect::Sqlite, "main"), |allow, table| allow.table("main", table))
    }
}

/// A small shop: 50 customers, 12 products, 300 orders and their items, made up by formula so
/// that every run has the same rows.
const SCHEMA_AND_DATA: &str = "
CREATE TABLE customers (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL,
    email TEXT NOT NULL UNIQUE,
    country TEXT NOT NULL,
    created_at TEXT NOT NULL
);
CREATE TABLE products (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    category TEXT NOT NULL,
    price NUMERIC NOT NULL
);
CREATE TABLE orders (
    id INTEGER PRIMARY KEY,
    customer_id INTEGER NOT NULL REFERENCES customers (id),
    ordered_at TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('pending', 'shipped', 'delivered', 'cancelled'))
);
CREATE INDEX orders_by_customer ON orders (customer_id);
CREATE TABLE order_items (
    order_id INTEGER NOT NULL REFERENCES orders (id),
    product_id INTEGER NOT NULL REFERENCES products (id),
    quantity INTEGER NOT NULL CHECK (quantity > 0),
    PRIMARY KEY (order_id, product_id)
);
INSERT INTO products (id, name, category, price) VALUES
    (1, 'Espresso beans 1 kg', 'coffee', 24.50), (2, 'Filter beans 500 g', 'coffee', 12.90),
    (3, 'Decaf beans 500 g', 'coffee', 13.40), (4, 'Green tea 100 g', 'tea', 8.75),
    (5, 'Black tea 250 g', 'tea', 9.95), (6, 'Hand grinder', 'equipment', 59.00),
    (7, 'Pour-over kettle', 'equipment', 42.00), (8, 'Paper filters (100)', 'equipment', 4.20),
    (9, 'Ceramic mug', 'merchandise', 11.00), (10, 'Travel tumbler', 'merchandise', 19.50),
    (11, 'Gift card 25', 'gift', 25.00), (12, 'Gift card 50', 'gift', 50.00);
WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 50)
INSERT INTO customers (id, name, email, country, created_at)
SELECT i,
       (SELECT value FROM json_each('[\"Ada\",\"Grace\",\"Alan\",\"Edsger\",\"Barbara\",\"Donald\",\"Frances\",\"John\",\"Radia\",\"Ken\"]') WHERE key = i % 10)
           || ' ' ||
       (SELECT value FROM json_each('[\"Lovelace\",\"Hopper\",\"Turing\",\"Dijkstra\",\"Liskov\"]') WHERE key = i % 5),
       'customer' || i || '@example.com',
       (SELECT value FROM json_each('[\"GB\",\"US\",\"NL\",\"DE\",\"FR\",\"JP\"]') WHERE key = i % 6),
       date('2024-01-01', '+' || (i * 5) || ' days')
FROM n;
WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 300)
INSERT INTO orders (id, customer_id, ordered_at, status)
SELECT i, 1 + (i * 7) % 50, datetime('2024-03-01', '+' || (i * 29) || ' hours'),
       (SELECT value FROM json_each('[\"delivered\",\"delivered\",\"shipped\",\"pending\",\"cancelled\"]') WHERE key = i % 5)
FROM n;
WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 300),
     line(k) AS (SELECT 0 UNION ALL SELECT 1 UNION ALL SELECT 2)
INSERT INTO order_items (order_id, product_id, quantity)
SELECT i, 1 + (i * 5 + k * 4) % 12, 1 + (i + k) % 3 FROM n, line WHERE k <= i % 3;
";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_demo_has_related_tables_with_a_few_hundred_rows() {
        let demo = DemoDatabase::create().expect("created");
        let uri = demo.url().strip_prefix("sqlite:").expect("sqlite URL");
        let reader = Connection::open_with_flags(uri, OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_URI)
            .expect("opens read-only");
        let count = |table: &str| -> i64 {
            reader.query_row(&format!("SELECT count(*) FROM {table}"), [], |row| row.get(0)).expect("count")
        };
        assert_eq!([count("customers"), count("products"), count("orders")], [50, 12, 300]);
        assert_eq!(count("order_items"), 600);
        let orphans: i64 = reader
            .query_row(
                "SELECT count(*) FROM order_items i LEFT JOIN orders o ON o.id = i.order_id \
                 LEFT JOIN products p ON p.id = i.product_id WHERE o.id IS NULL OR p.id IS NULL",
                [],
                |row| row.get(0),
            )
            .expect("orphans");
        assert_eq!(orphans, 0, "every item belongs to an order and a product");
        let first: String =
            reader.query_row("SELECT name FROM customers WHERE id = 1", [], |row| row.get(0)).expect("name");
        assert_eq!(first, "Grace Hopper");
        let other = DemoDatabase::create().expect("a second demo");
        assert_ne!(demo.url(), other.url(), "each demo is its own database");
        let allow = DemoDatabase::allow_list();
        assert!(TABLES.iter().all(|table| allow.permits("main", table)));
        assert!(!allow.permits("main", "sqlite_schema"));
    }
}
