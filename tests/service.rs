//! The assembled service, on the built-in demo: real SQLite through the real pipeline.
#![cfg(feature = "sqlite")]

use serde_json::json;
use sqlwarden::DenialCode;
use sqlwarden::config::Config;
use sqlwarden::service::Service;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_serves_the_three_tools_read_only() {
    let demo = Service::demo().expect("the demo starts");
    assert_eq!(demo.warnings().len(), 1, "{:?}", demo.warnings());
    assert!(demo.warnings()[0].starts_with("[audit] names no path"), "only that audit goes to stderr");

    let listed = demo.call("list_tables", json!({})).await.expect("listed").to_value().expect("JSON");
    let names: Vec<&str> =
        listed["tables"].as_array().expect("tables").iter().map(|t| t["name"].as_str().expect("name")).collect();
    assert_eq!(names, ["customers", "order_items", "orders", "products"]);

    let described =
        demo.call("describe_table", json!({"table": "orders"})).await.expect("described").to_value().expect("JSON");
    assert_eq!(described["primary_key"], json!(["id"]));
    assert_eq!(described["foreign_keys"][0]["referenced_table"], json!("customers"));

    let top = demo
        .call(
            "query_read",
            json!({"query": "SELECT p.category, sum(i.quantity) AS units FROM order_items i \
                   JOIN products p ON p.id = i.product_id GROUP BY p.category ORDER BY units DESC, p.category",
                   "limit": 2}),
        )
        .await
        .expect("rows")
        .to_value()
        .expect("JSON");
    assert_eq!(top["row_count"], json!(2));
    assert_eq!(top["truncated"], json!(true));
    assert_eq!(top["columns"][1]["name"], json!("units"));

    let refused = demo.call("query_read", json!({"query": "DELETE FROM orders"})).await.expect_err("refused");
    assert_eq!(refused.code(), DenialCode::QueryRejected);
    let catalog = demo.call("query_read", json!({"query": "SELECT * FROM sqlite_schema"})).await.expect_err("refused");
    assert_eq!(catalog.code(), DenialCode::QueryRejected);
    let unknown = demo.call("drop_everything", json!({})).await.expect_err("refused");
    assert_eq!(unknown.code(), DenialCode::ToolNotFound);
    let bad = demo.call("query_read", json!({"query": 42})).await.expect_err("refused");
    assert_eq!(bad.code(), DenialCode::InvalidInput);
}

#[test]
fn a_grant_for_a_tool_the_server_lacks_is_refused() {
    let config = Config::parse(
        "[database]\nurl = \"sqlite:file:nowhere?mode=memory&cache=shared\"\n[[grants]]\ntool = \"add_customer\"\n",
        "test.toml",
        |_| None,
    )
    .expect("a valid file");
    let error = Service::from_config(config).expect_err("refused");
    assert!(error.to_string().contains("names tool add_customer, which this server does not offer"), "{error}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_config_without_grants_can_call_nothing() {
    let config =
        Config::parse("[database]\nurl = \"sqlite:file:empty?mode=memory&cache=shared\"\n", "test.toml", |_| None)
            .expect("a valid file");
    let service = Service::from_config(config).expect("starts");
    assert_eq!(service.warnings().len(), 3, "{:?}", service.warnings());
    let denied = service.call("list_tables", json!({})).await.expect_err("no grant");
    assert_eq!(denied.code(), DenialCode::Unauthorized);
}
