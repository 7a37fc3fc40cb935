//! The Streamable HTTP transport as an OAuth 2.1 resource server, over real HTTP against the
//! built binary, with tokens this test signs with real RSA and EC keys (tests/fixtures/auth:
//! keys made for these tests only).
#![cfg(feature = "sqlite")]
#![allow(clippy::unwrap_used)]

mod databases;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use jsonwebtoken::{Algorithm, EncodingKey, Header, encode};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

const ISSUER: &str = "https://idp.test";
const MACHINE_TOKEN: &str = "machine-token-for-the-http-test";

fn fixture(name: &str) -> String {
    format!("{}/tests/fixtures/auth/{name}", env!("CARGO_MANIFEST_DIR"))
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// A running `sqlwarden serve` over HTTP with its own database, audit file and config.
struct Server {
    child: Child,
    port: u16,
    audit: std::path::PathBuf,
    _config: databases::ConfigFile,
    database: std::path::PathBuf,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_file(&self.database);
        let _ = std::fs::remove_file(&self.audit);
    }
}

impl Server {
    fn start() -> Server {
        Server::start_with("")
    }

    /// A server whose `[http]` section has `http` besides its listen address and origins.
    fn start_with(http: &str) -> Server {
        Server::start_full(http, "")
    }

    /// A server as [`Server::start_with`] makes, whose configuration ends with `tools`
    /// (`[[tools]]` entries, over the table `tenant_notes` besides `notes`, and their grants).
    fn start_full(http: &str, tools: &str) -> Server {
        let suffix = databases::unique_suffix();
        let database = std::env::temp_dir().join(format!("sqlwarden-http-{suffix}.db"));
        let connection = rusqlite::Connection::open(&database).unwrap();
        connection
            .execute_batch(
                "CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT); INSERT INTO notes VALUES (1, 'one');
                 CREATE TABLE tenant_notes (id INTEGER PRIMARY KEY, tenant TEXT, region TEXT, body TEXT);
                 INSERT INTO tenant_notes VALUES (1, 'acme', 'eu', 'a-eu'), (2, 'acme', 'us', 'a-us'),
                     (3, 'globex', 'eu', 'g-eu');",
            )
            .unwrap();
        let audit = std::env::temp_dir().join(format!("sqlwarden-http-audit-{suffix}.jsonl"));
        let port = free_port();
        let token_hash = hex::encode(Sha256::digest(MACHINE_TOKEN.as_bytes()));
        let config = databases::ConfigFile::new(&format!(
            r#"[database]
url = "sqlite:{database}"
[allowlist]
schemas = ["main"]
tables = ["notes"{more_tables}]
[http]
listen = "127.0.0.1:{port}"
allowed_origins = ["https://app.example.com"]
{http}
[auth]
issuer = "{ISSUER}"
jwks_file = "{jwks}"
tenant_claim = "tenant"
scopes_supported = ["sql.read"]
[[auth.tokens]]
sha256 = "{token_hash}"
identity = "etl-bot"
tenant = "acme"
expires_at = "2099-01-01T00:00:00Z"
[[grants]]
tool = "query_read"
tenant = "acme"
[[grants]]
tool = "list_tables"
identity = "bob"
[[grants]]
tool = "describe_table"
scope = "sql.describe"
[audit]
path = "{audit}"
{tools}
"#,
            more_tables = if tools.is_empty() { "" } else { ", \"tenant_notes\"" },
            database = database.display(),
            jwks = fixture("jwks.json"),
            audit = audit.display(),
        ));
        let child = Command::new(env!("CARGO_BIN_EXE_sqlwarden"))
            .args(["serve", "--config", &config.path()])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let server = Server { child, port, audit, _config: config, database };
        let deadline = Instant::now() + Duration::from_secs(20);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "the server did not listen");
            std::thread::sleep(Duration::from_millis(50));
        }
        server
    }

    fn resource(&self) -> String {
        format!("http://127.0.0.1:{}/mcp", self.port)
    }

    /// One HTTP request; the answer's status, headers (lower-case names) and body.
    fn request(&self, method: &str, path: &str, headers: &[(&str, &str)], body: &str) -> Answer {
        let mut stream = TcpStream::connect(("127.0.0.1", self.port)).unwrap();
        stream.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        let mut text = format!("{method} {path} HTTP/1.1\r\nConnection: close\r\nContent-Length: {}\r\n", body.len());
        if !headers.iter().any(|(name, _)| name.eq_ignore_ascii_case("host")) {
            text.push_str(&format!("Host: 127.0.0.1:{}\r\n", self.port));
        }
        for (name, value) in headers {
            text.push_str(&format!("{name}: {value}\r\n"));
        }
        text.push_str("\r\n");
        text.push_str(body);
        stream.write_all(text.as_bytes()).unwrap();
        let mut raw = Vec::new();
        stream.read_to_end(&mut raw).unwrap();
        Answer::parse(&raw)
    }

    /// A JSON-RPC POST to the MCP endpoint.
    fn post(&self, token: Option<&str>, session: Option<&str>, message: &Value) -> Answer {
        let bearer = token.map(|token| format!("Bearer {token}"));
        let mut headers = vec![("Content-Type", "application/json"), ("Accept", "application/json, text/event-stream")];
        if let Some(bearer) = &bearer {
            headers.push(("Authorization", bearer));
        }
        if let Some(session) = session {
            headers.push(("Mcp-Session-Id", session));
        }
        self.request("POST", "/mcp", &headers, &message.to_string())
    }

    /// Opens a session as `token`'s principal; its id.
    fn initialize(&self, token: &str) -> String {
        let answer = self.post(Some(token), None, &initialize());
        assert_eq!(answer.status, 200, "{}", answer.body);
        let session = answer.header("mcp-session-id").expect("a session id").to_owned();
        let initialized = json!({"jsonrpc": "2.0", "method": "notifications/initialized"});
        assert_eq!(self.post(Some(token), Some(&session), &initialized).status, 202);
        session
    }

    fn tools(&self, token: &str, session: &str) -> Vec<String> {
        let answer = self.post(Some(token), Some(session), &json!({"jsonrpc": "2.0", "id": 2, "method": "tools/list"}));
        assert_eq!(answer.status, 200, "{}", answer.body);
        let mut names: Vec<String> = answer.json()["result"]["tools"]
            .as_array()
            .unwrap()
            .iter()
            .map(|tool| tool["name"].as_str().unwrap().to_owned())
            .collect();
        names.sort();
        names
    }

    fn call(&self, token: &str, session: &str, tool: &str, arguments: Value) -> Value {
        let message = json!({"jsonrpc": "2.0", "id": 3, "method": "tools/call", "params": {"name": tool, "arguments": arguments}});
        let answer = self.post(Some(token), Some(session), &message);
        assert_eq!(answer.status, 200, "{}", answer.body);
        answer.json()["result"].clone()
    }

    fn audit_lines(&self) -> Vec<Value> {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let text = std::fs::read_to_string(&self.audit).unwrap_or_default();
            let lines: Vec<Value> = text.lines().filter_map(|line| serde_json::from_str(line).ok()).collect();
            if lines.len() > 1 || Instant::now() > deadline {
                return lines;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

fn initialize() -> Value {
    json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "http-test", "version": "1"}}})
}

struct Answer {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
}

impl Answer {
    fn parse(raw: &[u8]) -> Answer {
        let text = String::from_utf8_lossy(raw).into_owned();
        let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
        let mut lines = head.lines();
        let status = lines.next().unwrap_or("").split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
        let headers = lines
            .filter_map(|line| line.split_once(':'))
            .map(|(name, value)| (name.trim().to_ascii_lowercase(), value.trim().to_owned()))
            .collect();
        Answer { status, headers, body: body.to_owned() }
    }

    fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(known, _)| known == name).map(|(_, value)| value.as_str())
    }

    fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|_| panic!("not JSON: {}", self.body))
    }
}

fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs()
}

fn claims(server: &Server, subject: &str, tenant: &str) -> Value {
    json!({"iss": ISSUER, "aud": server.resource(), "sub": subject, "tenant": tenant, "exp": now() + 600, "iat": now()})
}

fn sign(algorithm: Algorithm, kid: &str, key: &str, claims: &Value) -> String {
    let pem = std::fs::read(fixture(key)).unwrap();
    let key = match algorithm {
        Algorithm::ES256 => EncodingKey::from_ec_pem(&pem).unwrap(),
        _ => EncodingKey::from_rsa_pem(&pem).unwrap(),
    };
    let mut header = Header::new(algorithm);
    header.kid = Some(kid.to_owned());
    encode(&header, claims, &key).unwrap()
}

fn rs256(claims: &Value) -> String {
    sign(Algorithm::RS256, "rsa-1", "rsa.pem", claims)
}

fn base64url(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// A valid token is accepted; each principal sees and may call only its granted tools; the
/// audit names the verified identity and tenant.
#[test]
fn a_valid_token_is_accepted_and_each_principal_sees_only_its_grants() {
    let server = Server::start();
    let alice = rs256(&claims(&server, "alice", "acme"));
    let session = server.initialize(&alice);
    assert_eq!(server.tools(&alice, &session), ["query_read"]);
    let result = server.call(&alice, &session, "query_read", json!({"query": "SELECT body FROM notes"}));
    assert_eq!(result["structuredContent"]["rows"], json!([["one"]]), "{result}");
    let refused = server.call(&alice, &session, "list_tables", json!({}));
    assert_eq!(
        (refused["isError"].clone(), refused["structuredContent"]["code"].clone()),
        (json!(true), json!("UNAUTHORIZED"))
    );

    let bob = sign(Algorithm::ES256, "ec-1", "ec.pem", &claims(&server, "bob", "globex"));
    let bobs = server.initialize(&bob);
    assert_eq!(server.tools(&bob, &bobs), ["list_tables"], "an EC token works, and bob's grants are his");
    let refused = server.call(&bob, &bobs, "query_read", json!({"query": "SELECT 1"}));
    assert_eq!(refused["structuredContent"]["code"], json!("UNAUTHORIZED"), "query_read is granted to acme only");

    let mut scoped = claims(&server, "carol", "globex");
    scoped["scope"] = json!("openid sql.describe");
    let carol = rs256(&scoped);
    let carols = server.initialize(&carol);
    assert_eq!(server.tools(&carol, &carols), ["describe_table"], "a grant naming a scope needs it in the token");

    let machine = server.initialize(MACHINE_TOKEN);
    assert_eq!(server.tools(MACHINE_TOKEN, &machine), ["query_read"], "a static token stands for etl-bot in acme");

    let audit = server.audit_lines();
    let executed = audit
        .iter()
        .find(|line| line["tool"] == "query_read" && line["stage"] == "execute" && line["decision"] == "allow")
        .expect("an execute record");
    assert_eq!((executed["identity"].clone(), executed["tenant"].clone()), (json!("alice"), json!("acme")));
    assert_eq!((executed["transport"].clone(), executed["mcp_session"].clone()), (json!("http"), json!(session)));
}

/// Every kind of invalid credential gets 401 with a `WWW-Authenticate` challenge naming the
/// resource metadata, `error="invalid_token"` when a token was given, and never the token.
#[test]
fn every_invalid_credential_is_refused_with_a_challenge() {
    let server = Server::start();
    let good = claims(&server, "alice", "acme");
    let with = |change: &dyn Fn(&mut Value)| {
        let mut claims = good.clone();
        change(&mut claims);
        claims
    };
    let header = |json: Value| base64url(json.to_string().as_bytes());
    let unsigned = format!("{}.{}.", header(json!({"alg": "none", "kid": "rsa-1"})), header(good.clone()));
    let hmac_with_public_key = {
        let public = std::fs::read(fixture("rsa.pub.pem")).unwrap();
        let mut header = Header::new(Algorithm::HS256);
        header.kid = Some("rsa-1".into());
        encode(&header, &good, &EncodingKey::from_secret(&public)).unwrap()
    };
    let invalid = [
        ("a wrong signature", sign(Algorithm::RS256, "rsa-1", "rsa-other.pem", &good)),
        ("a kid not in the JWKS", sign(Algorithm::RS256, "rsa-9", "rsa.pem", &good)),
        ("alg none", unsigned),
        ("HS256 signed with the public key", hmac_with_public_key),
        ("the EC key named for an RSA signature", sign(Algorithm::RS256, "ec-1", "rsa.pem", &good)),
        ("a wrong issuer", rs256(&with(&|c| c["iss"] = json!("https://evil.test")))),
        ("a wrong audience", rs256(&with(&|c| c["aud"] = json!("https://other.test/mcp")))),
        ("no audience", rs256(&with(&|c| drop(c.as_object_mut().unwrap().remove("aud"))))),
        ("expired", rs256(&with(&|c| c["exp"] = json!(now() - 3600)))),
        ("not yet valid", rs256(&with(&|c| c["nbf"] = json!(now() + 3600)))),
        ("no exp", rs256(&with(&|c| drop(c.as_object_mut().unwrap().remove("exp"))))),
        ("no tenant claim", rs256(&with(&|c| drop(c.as_object_mut().unwrap().remove("tenant"))))),
        ("a static token's hash", hex::encode(Sha256::digest(MACHINE_TOKEN.as_bytes()))),
        ("garbage", "not-a-token".to_owned()),
    ];
    let metadata =
        format!("resource_metadata=\"http://127.0.0.1:{}/.well-known/oauth-protected-resource/mcp\"", server.port);
    for (kind, token) in &invalid {
        let answer = server.post(Some(token), None, &initialize());
        assert_eq!(answer.status, 401, "{kind}: {}", answer.body);
        let challenge = answer.header("www-authenticate").unwrap_or_default();
        assert!(challenge.starts_with("Bearer ") && challenge.contains(&metadata), "{kind}: {challenge}");
        assert!(challenge.contains("error=\"invalid_token\""), "{kind}: {challenge}");
        assert!(
            !answer.body.contains(token.as_str()) && !challenge.contains(token.as_str()),
            "{kind}: the token is echoed"
        );
        assert!(!answer.body.contains("rsa-") && !challenge.contains("rsa-"), "{kind}: a key is named");
    }
    let missing = server.post(None, None, &initialize());
    assert_eq!(missing.status, 401);
    let challenge = missing.header("www-authenticate").unwrap_or_default();
    assert!(challenge.contains(&metadata) && !challenge.contains("error="), "{challenge}");
    let basic =
        server.request("POST", "/mcp", &[("Authorization", "Basic YTpi"), ("Content-Type", "application/json")], "{}");
    assert_eq!(basic.status, 401, "only Bearer");
    let valid = rs256(&good);
    let in_query = server.request(
        "POST",
        &format!("/mcp?access_token={valid}"),
        &[("Content-Type", "application/json")],
        &initialize().to_string(),
    );
    assert_eq!(in_query.status, 401, "a token in the query string is never accepted");
    assert!(in_query.header("www-authenticate").unwrap_or_default().contains("error=\"invalid_request\""));
    // The credential is checked on every request, not only at initialize.
    let session = server.initialize(&valid);
    let expired = rs256(&with(&|c| c["exp"] = json!(now() - 3600)));
    let later =
        server.post(Some(&expired), Some(&session), &json!({"jsonrpc": "2.0", "id": 9, "method": "tools/list"}));
    assert_eq!(later.status, 401);
}

/// The protected resource metadata names the resource, its authorization servers, the header
/// as the only bearer method and the scopes.
#[test]
fn the_protected_resource_metadata_is_served() {
    let server = Server::start();
    for path in ["/.well-known/oauth-protected-resource", "/.well-known/oauth-protected-resource/mcp"] {
        let answer = server.request("GET", path, &[], "");
        assert_eq!(answer.status, 200, "{path}");
        let metadata = answer.json();
        assert_eq!(metadata["resource"], json!(server.resource()));
        assert_eq!(metadata["authorization_servers"], json!([ISSUER]));
        assert_eq!(metadata["bearer_methods_supported"], json!(["header"]));
        assert_eq!(metadata["scopes_supported"], json!(["sql.read"]));
    }
}

/// A session belongs to the principal that opened it: another principal's request on it is
/// refused (403) and audited, and so are its GET and DELETE.
#[test]
fn a_session_used_by_another_principal_is_refused_and_audited() {
    let server = Server::start();
    let alice = rs256(&claims(&server, "alice", "acme"));
    let mallory = rs256(&claims(&server, "mallory", "acme"));
    let session = server.initialize(&alice);
    let list = json!({"jsonrpc": "2.0", "id": 2, "method": "tools/list"});
    assert_eq!(server.post(Some(&mallory), Some(&session), &list).status, 403);
    let bearer = format!("Bearer {mallory}");
    let delete = server.request("DELETE", "/mcp", &[("Authorization", &bearer), ("Mcp-Session-Id", &session)], "");
    assert_eq!(delete.status, 403);
    assert_eq!(server.tools(&alice, &session), ["query_read"], "the owner's session is untouched");
    let audit = server.audit_lines();
    let refusals: Vec<&Value> = audit.iter().filter(|line| line["tool"] == "mcp_session").collect();
    assert_eq!(refusals.len(), 2, "{audit:?}");
    for refusal in refusals {
        assert_eq!((refusal["identity"].clone(), refusal["decision"].clone()), (json!("mallory"), json!("deny")));
        assert_eq!(refusal["mcp_session"], json!(session));
    }
    let bearer = format!("Bearer {alice}");
    let delete = server.request("DELETE", "/mcp", &[("Authorization", &bearer), ("Mcp-Session-Id", &session)], "");
    assert_eq!(delete.status, 204);
    assert_eq!(server.post(Some(&alice), Some(&session), &list).status, 404, "a deleted session is gone");
}

/// A foreign `Origin` gets 403 before anything else; an allowed one, or none, passes. A `Host`
/// that is not this server's gets 403.
#[test]
fn origin_and_host_are_checked() {
    let server = Server::start();
    let token = rs256(&claims(&server, "alice", "acme"));
    let bearer = format!("Bearer {token}");
    let body = initialize().to_string();
    let post = |extra: &[(&str, &str)]| {
        let mut headers = vec![("Content-Type", "application/json"), ("Authorization", bearer.as_str())];
        headers.extend_from_slice(extra);
        server.request("POST", "/mcp", &headers, &body)
    };
    assert_eq!(post(&[("Origin", "https://evil.example")]).status, 403);
    assert_eq!(post(&[("Origin", "null")]).status, 403);
    assert_eq!(post(&[("Origin", "https://app.example.com")]).status, 200);
    assert_eq!(post(&[]).status, 200);
    assert_eq!(post(&[("Host", "evil.example")]).status, 403);
    assert_eq!(post(&[("Host", &format!("localhost:{}", server.port))]).status, 200);
    let unauthenticated = server.request("POST", "/mcp", &[("Origin", "https://evil.example")], &body);
    assert_eq!(unauthenticated.status, 403, "the Origin is checked before the token");
}

/// Malformed requests get a clear status, and the server goes on serving.
#[test]
fn bad_requests_get_clear_statuses() {
    let server = Server::start();
    let token = rs256(&claims(&server, "alice", "acme"));
    let bearer = format!("Bearer {token}");
    let json_headers = [("Content-Type", "application/json"), ("Authorization", bearer.as_str())];
    assert_eq!(server.request("POST", "/mcp", &json_headers, "{not json").status, 400);
    assert_eq!(server.request("POST", "/mcp", &[("Authorization", bearer.as_str())], "{}").status, 415);
    let tools = json!({"jsonrpc": "2.0", "id": 1, "method": "tools/list"});
    assert_eq!(server.post(Some(&token), None, &tools).status, 400, "no session");
    assert_eq!(server.post(Some(&token), Some("0123"), &tools).status, 404, "an unknown session");
    let huge = format!("{{\"x\": \"{}\"}}", "a".repeat(5 << 20));
    assert_eq!(server.request("POST", "/mcp", &json_headers, &huge).status, 413);
    assert_eq!(server.request("PUT", "/mcp", &json_headers, "{}").status, 405);
    assert_eq!(server.request("GET", "/elsewhere", &[], "").status, 404);
    let session = server.initialize(&token);
    assert_eq!(server.tools(&token, &session), ["query_read"], "still serving");
}

/// A listen address that is not loopback, without `[auth]`, does not start.
#[test]
fn an_unauthenticated_server_will_not_listen_beyond_loopback() {
    let config = databases::ConfigFile::new("[database]\nurl = \"sqlite::memory:\"\n[http]\nlisten = \"0.0.0.0:0\"\n");
    let output = Command::new(env!("CARGO_BIN_EXE_sqlwarden"))
        .args(["serve", "--config", &config.path()])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("not a loopback address"));
    let demo = Command::new(env!("CARGO_BIN_EXE_sqlwarden")).args(["serve", "--http", "0.0.0.0:0"]).output().unwrap();
    assert_eq!(demo.status.code(), Some(2), "{}", String::from_utf8_lossy(&demo.stderr));
}

/// SIGTERM: the server stops accepting and exits 0.
#[test]
fn sigterm_stops_the_server_cleanly() {
    let mut server = Server::start();
    let pid = server.child.id();
    Command::new("kill").args(["-TERM", &pid.to_string()]).status().unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(status) = server.child.try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < deadline, "the server did not stop");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(status.code(), Some(0));
}

/// At most `max_sessions` are open; an idle session is closed after `session_idle_s`, which
/// makes room for a new one.
#[test]
fn sessions_are_capped_and_idle_ones_expire() {
    let server = Server::start_with("max_sessions = 2\nsession_idle_s = 1");
    let token = rs256(&claims(&server, "alice", "acme"));
    let first = server.initialize(&token);
    let _second = server.initialize(&token);
    let third = server.post(Some(&token), None, &initialize());
    assert_eq!(third.status, 503, "{}", third.body);
    assert_eq!(third.json()["id"], json!(1), "the refusal answers the initialize by its id");
    std::thread::sleep(Duration::from_millis(2500));
    let list = json!({"jsonrpc": "2.0", "id": 2, "method": "tools/list"});
    assert_eq!(server.post(Some(&token), Some(&first), &list).status, 404, "an idle session is closed");
    let again = server.initialize(&token);
    assert_eq!(server.tools(&token, &again), ["query_read"]);
}

/// GET opens the session's event stream (one at a time); it needs the session's owner.
#[test]
fn get_opens_one_event_stream_per_session() {
    let server = Server::start();
    let token = rs256(&claims(&server, "alice", "acme"));
    let session = server.initialize(&token);
    let bearer = format!("Bearer {token}");
    let mut stream = TcpStream::connect(("127.0.0.1", server.port)).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let request = format!(
        "GET /mcp HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nAuthorization: {bearer}\r\nAccept: text/event-stream\r\n\
         Mcp-Session-Id: {session}\r\n\r\n",
        server.port
    );
    stream.write_all(request.as_bytes()).unwrap();
    let mut head = [0u8; 512];
    let read = stream.read(&mut head).unwrap();
    let head = String::from_utf8_lossy(&head[..read]).to_ascii_lowercase();
    assert!(head.starts_with("http/1.1 200") && head.contains("content-type: text/event-stream"), "{head}");
    let accept =
        [("Authorization", bearer.as_str()), ("Accept", "text/event-stream"), ("Mcp-Session-Id", session.as_str())];
    assert_eq!(server.request("GET", "/mcp", &accept, "").status, 409, "one stream per session");
    let plain = [("Authorization", bearer.as_str()), ("Mcp-Session-Id", session.as_str())];
    assert_eq!(server.request("GET", "/mcp", &plain, "").status, 406);
    let mallory = format!("Bearer {}", rs256(&claims(&server, "mallory", "acme")));
    let foreign =
        [("Authorization", mallory.as_str()), ("Accept", "text/event-stream"), ("Mcp-Session-Id", session.as_str())];
    assert_eq!(server.request("GET", "/mcp", &foreign, "").status, 403);
}

/// The stateless revision (2026-07-28): no session, each request carries its own metadata and
/// its own token, and runs as that token's principal.
#[test]
fn a_stateless_request_runs_as_its_own_token() {
    let server = Server::start();
    let meta = json!({"io.modelcontextprotocol/protocolVersion": "2026-07-28", "io.modelcontextprotocol/clientCapabilities": {}});
    let stateless = |token: &str, message: &Value| {
        let bearer = format!("Bearer {token}");
        let headers = [
            ("Content-Type", "application/json"),
            ("Accept", "application/json, text/event-stream"),
            ("Authorization", bearer.as_str()),
            ("MCP-Protocol-Version", "2026-07-28"),
        ];
        server.request("POST", "/mcp", &headers, &message.to_string())
    };
    let list = json!({"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": {"_meta": meta}});
    let alice = rs256(&claims(&server, "alice", "acme"));
    let answer = stateless(&alice, &list);
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert_eq!(answer.json()["result"]["tools"][0]["name"], json!("query_read"), "{}", answer.body);
    let bob = sign(Algorithm::ES256, "ec-1", "ec.pem", &claims(&server, "bob", "globex"));
    assert_eq!(stateless(&bob, &list).json()["result"]["tools"][0]["name"], json!("list_tables"));
    let call = json!({"jsonrpc": "2.0", "id": 2, "method": "tools/call",
        "params": {"name": "query_read", "arguments": {"query": "SELECT id FROM notes"}, "_meta": meta}});
    assert_eq!(stateless(&alice, &call).json()["result"]["structuredContent"]["rows"], json!([[1]]));
    assert_eq!(stateless(&bob, &call).json()["result"]["structuredContent"]["code"], json!("UNAUTHORIZED"));
    assert_eq!(stateless("not-a-token", &call).status, 401);
}

/// A session outlives the token that opened it: a request bringing a fresh token (a refreshed
/// one) goes on in the same session, past the first token's `exp`.
#[test]
fn a_session_outlives_the_token_that_opened_it() {
    let server = Server::start();
    let mut short = claims(&server, "alice", "acme");
    short["exp"] = json!(now() + 1);
    let first = rs256(&short);
    let session = server.initialize(&first);
    std::thread::sleep(Duration::from_millis(2100));
    let refreshed = rs256(&claims(&server, "alice", "acme"));
    let result = server.call(&refreshed, &session, "query_read", json!({"query": "SELECT id FROM notes"}));
    assert_eq!(result["structuredContent"]["rows"], json!([[1]]), "{result}");
}

/// On one session, each call runs as the token it came with: a refreshed token that gained a
/// scope gets the grant that needs it, and one without it is refused again. Calls made with the
/// same token run as one session context: they are audited under one session id.
#[test]
fn a_refreshed_tokens_scopes_apply_on_the_same_session() {
    let server = Server::start();
    let plain = rs256(&claims(&server, "alice", "acme"));
    let session = server.initialize(&plain);
    let refused = server.call(&plain, &session, "describe_table", json!({"table": "notes"}));
    assert_eq!(refused["structuredContent"]["code"], json!("UNAUTHORIZED"), "{refused}");
    let mut wider = claims(&server, "alice", "acme");
    wider["scope"] = json!("sql.describe");
    let wider = rs256(&wider);
    let described = server.call(&wider, &session, "describe_table", json!({"table": "notes"}));
    assert_ne!(described["isError"], json!(true), "{described}");
    let refused = server.call(&plain, &session, "describe_table", json!({"table": "notes"}));
    assert_eq!(refused["structuredContent"]["code"], json!("UNAUTHORIZED"), "{refused}");
    let first = server.call(&plain, &session, "query_read", json!({"query": "SELECT id FROM notes"}));
    let second = server.call(&plain, &session, "query_read", json!({"query": "SELECT id FROM notes"}));
    assert_eq!(
        (&first["structuredContent"]["rows"], &second["structuredContent"]["rows"]),
        (&json!([[1]]), &json!([[1]]))
    );
    let reads: Vec<Value> = server
        .audit_lines()
        .into_iter()
        .filter(|line| line["tool"] == "query_read" && line["stage"] == "execute" && line["decision"] == "allow")
        .map(|line| line["session_id"].clone())
        .collect();
    assert_eq!(reads.len(), 2, "{reads:?}");
    assert!(reads[0].is_string() && reads[0] == reads[1], "one session context for one token: {reads:?}");
}

/// A client that sends its headers too slowly is cut off, and the server goes on serving.
#[test]
fn a_slow_client_is_cut_off_at_the_header_read_timeout() {
    let server = Server::start_with("header_read_timeout_ms = 300");
    let mut slow = TcpStream::connect(("127.0.0.1", server.port)).unwrap();
    slow.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    slow.write_all(b"POST /mcp HTTP/1.1\r\nHost: 127.0.0.1\r\n").unwrap();
    let began = Instant::now();
    let mut answer = Vec::new();
    let _ = slow.read_to_end(&mut answer);
    assert!(began.elapsed() < Duration::from_secs(3), "the connection was held {:?}", began.elapsed());
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.is_empty() || answer.starts_with("HTTP/1.1 408"), "{answer}");
    let token = rs256(&claims(&server, "alice", "acme"));
    let session = server.initialize(&token);
    assert_eq!(server.tools(&token, &session), ["query_read"]);
}

/// A declared tool's claim-bound params take the verified token's claims: the tenant, and a
/// claim of the token's own (`region`). They are not in the tool's schema, may not be given,
/// and a token without the claim (a static token carries none) is refused with CLAIM_MISSING.
#[test]
fn declared_tools_bind_params_to_the_tokens_claims() {
    let server = Server::start_full(
        "",
        r#"[[tools]]
name = "my_notes"
description = "The notes of your tenant and region."
access = "read"
statement = "SELECT id, body FROM tenant_notes WHERE tenant = ? AND region = ? ORDER BY id"
[[tools.params]]
name = "tenant"
type = "string"
from_claim = "tenant"
[[tools.params]]
name = "region"
type = "string"
from_claim = "region"
[[grants]]
tool = "my_notes"
"#,
    );
    let mut own = claims(&server, "alice", "acme");
    own["region"] = json!("us");
    let alice = rs256(&own);
    let session = server.initialize(&alice);
    let list = server.post(Some(&alice), Some(&session), &json!({"jsonrpc": "2.0", "id": 2, "method": "tools/list"}));
    let tools = list.json()["result"]["tools"].clone();
    let mine = tools.as_array().unwrap().iter().find(|tool| tool["name"] == "my_notes").expect("listed").clone();
    assert_eq!(mine["inputSchema"]["properties"], json!({}), "claim-bound params are not in the schema: {mine}");
    let rows = server.call(&alice, &session, "my_notes", json!({}));
    assert_eq!(rows["structuredContent"]["rows"], json!([[2, "a-us"]]), "{rows}");
    let given = server.call(&alice, &session, "my_notes", json!({"tenant": "globex"}));
    assert_eq!(given["structuredContent"]["code"], json!("INVALID_INPUT"), "{given}");
    // A refreshed token whose claim changed, on the same session: the call binds the new claim.
    own["region"] = json!("eu");
    let moved = rs256(&own);
    let rows = server.call(&moved, &session, "my_notes", json!({}));
    assert_eq!(rows["structuredContent"]["rows"], json!([[1, "a-eu"]]), "{rows}");
    let rows = server.call(&alice, &session, "my_notes", json!({}));
    assert_eq!(rows["structuredContent"]["rows"], json!([[2, "a-us"]]), "{rows}");

    let mut other = claims(&server, "gina", "globex");
    other["region"] = json!("eu");
    let gina = rs256(&other);
    let ginas = server.initialize(&gina);
    assert_eq!(server.call(&gina, &ginas, "my_notes", json!({}))["structuredContent"]["rows"], json!([[3, "g-eu"]]));

    let plain = rs256(&claims(&server, "bob", "acme"));
    let bobs = server.initialize(&plain);
    let missing = server.call(&plain, &bobs, "my_notes", json!({}));
    assert_eq!(missing["structuredContent"]["code"], json!("CLAIM_MISSING"), "{missing}");
    let machine = server.initialize(MACHINE_TOKEN);
    let missing = server.call(MACHINE_TOKEN, &machine, "my_notes", json!({}));
    assert_eq!(missing["structuredContent"]["code"], json!("CLAIM_MISSING"), "{missing}");
}
