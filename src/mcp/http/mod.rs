//! MCP over Streamable HTTP (MCP revisions 2025-03-26 to 2025-11-25 with sessions; 2026-07-28
//! statelessly), as an OAuth 2.1 resource server.
//!
//! Every request, in this order:
//!
//! 1. `Host` must name this server (the listen address, `localhost` on loopback, the resource
//!    URI's host, or `[http] allowed_hosts`), and an `Origin`, when there is one, must be in
//!    `[http] allowed_origins` (DNS rebinding): else 403;
//! 2. the protected resource metadata (RFC 9728) is served without a credential;
//! 3. on the MCP endpoint, a token in the query string is refused; the `Authorization: Bearer`
//!    token is verified ([`crate::auth`]) on every request, not only at `initialize`: else 401
//!    with `WWW-Authenticate: Bearer resource_metadata=…`;
//! 4. POST: the body (at most [`MAX_MESSAGE_BYTES`]) passes the front checks every transport
//!    makes, then goes to the session's rmcp service with the verified caller attached (a plain
//!    `tools/call` of an initialized session is answered by the same handler on the request's
//!    own task: see [`exchange`]); the answer comes back as `application/json`. An
//!    `initialize` opens a session bound to the caller's identity and tenant; any other request
//!    must carry its `Mcp-Session-Id`, and a session used by another principal is refused (403)
//!    and audited. GET opens the session's event stream; DELETE ends the session.
//!
//! On SIGTERM or SIGINT the server stops accepting connections, lets the requests in flight be
//! answered, and returns.

mod exchange;
mod session;

use std::convert::Infallible;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Full, Limited, combinators::BoxBody};
use serde_json::{Value, json};

use super::front::{self, INVALID_REQUEST};
use super::{Caller, MAX_MESSAGE_BYTES};
use crate::audit::{AuditBatch, AuditDecision, AuditRecord, Origin, Stage, Transport};
use crate::auth::{Principal, Verifier};
use crate::config::{AuthConfig, HttpConfig};
use crate::denial::DenialCode;
use crate::policy::SessionContext;
use crate::service::Service;
use exchange::exchange;
use session::{Conversation, OpenError, Sessions};

type Body = BoxBody<Bytes, Infallible>;

const SESSION_HEADER: &str = "mcp-session-id";
const VERSION_HEADER: &str = "mcp-protocol-version";
const METADATA_PATH: &str = "/.well-known/oauth-protected-resource";
/// The first revision served without sessions (per-request metadata instead of `initialize`).
const STATELESS_REVISION: &str = "2026-07-28";

/// The HTTP transport, ready to serve.
pub struct HttpServer {
    service: Arc<Service>,
    config: HttpConfig,
    /// `None` when `[auth]` is `none` (loopback only): every request runs as `[session]`.
    verifier: Option<Verifier>,
    sessions: Sessions,
    metadata: Bytes,
    metadata_url: String,
    metadata_paths: [String; 2],
    /// The `Host` values this server answers to, lower case (see [`host_names`]).
    hosts: Vec<String>,
    /// `[http] allowed_hosts`, lower case.
    allowed_hosts: Vec<String>,
    /// Told of every request, to keep a timer armed (see [`keep_a_timer_armed`](super::armed::keep_a_timer_armed)).
    activity: Arc<tokio::sync::Notify>,
}

impl std::fmt::Debug for HttpServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpServer").field("listen", &self.config.listen).finish_non_exhaustive()
    }
}

/// Serves MCP over HTTP as `config` and `auth` say, until SIGTERM or SIGINT.
pub async fn serve_http(service: Arc<Service>, config: HttpConfig, auth: AuthConfig) -> std::io::Result<()> {
    let server = HttpServer::new(service, config, auth).await?;
    let listener = tokio::net::TcpListener::bind(server.config.listen).await?;
    tracing::info!(listen = %listener.local_addr()?, path = %server.config.path, "serving MCP over HTTP");
    Arc::new(server).run(listener).await
}

impl HttpServer {
    /// The server `config` and `auth` describe (a JWKS file is read now).
    pub async fn new(service: Arc<Service>, config: HttpConfig, auth: AuthConfig) -> std::io::Result<HttpServer> {
        let (verifier, servers, scopes) = match auth {
            AuthConfig::None => (None, Vec::new(), Vec::new()),
            AuthConfig::Bearer(bearer) => {
                let bearer = *bearer;
                let jwt = match bearer.jwt {
                    Some(settings) => Some(
                        crate::auth::JwtVerifier::new(settings)
                            .await
                            .map_err(|error| std::io::Error::other(format!("[auth] {error}")))?,
                    ),
                    None => None,
                };
                let verifier = Verifier::new(jwt, crate::auth::StaticTokens::new(bearer.tokens));
                (Some(verifier), bearer.authorization_servers, bearer.scopes_supported)
            }
        };
        let resource = url::Url::parse(&config.resource).map_err(std::io::Error::other)?;
        let suffix = if resource.path() == "/" { String::new() } else { resource.path().to_owned() };
        let metadata_url = format!("{}{METADATA_PATH}{suffix}", resource.origin().ascii_serialization());
        let metadata = json!({
            "resource": config.resource,
            "authorization_servers": servers,
            "bearer_methods_supported": ["header"],
            "scopes_supported": scopes,
            "resource_name": "sqlwarden",
        });
        let sessions = Sessions::new(config.max_sessions, config.session_idle);
        Ok(HttpServer {
            service,
            metadata: Bytes::from(metadata.to_string()),
            metadata_url,
            metadata_paths: [METADATA_PATH.to_owned(), format!("{METADATA_PATH}{}", config.path)],
            hosts: host_names(&config.listen, &resource),
            allowed_hosts: config.allowed_hosts.iter().map(|host| host.to_ascii_lowercase()).collect(),
            activity: Arc::default(),
            config,
            verifier,
            sessions,
        })
    }

    /// Accepts connections until asked to stop, then lets the requests in flight finish.
    pub async fn run(self: Arc<Self>, listener: tokio::net::TcpListener) -> std::io::Result<()> {
        use hyper_util::rt::{TokioIo, TokioTimer};
        let graceful = hyper_util::server::graceful::GracefulShutdown::new();
        let mut stop = super::stop::Stop::new();
        let reaper = tokio::spawn(reap(Arc::clone(&self)));
        let armed = tokio::spawn(super::armed::keep_a_timer_armed(Arc::clone(&self.activity)));
        loop {
            let (stream, _) = tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok(accepted) => accepted,
                    Err(error) => {
                        // Out of descriptors, say: wait a little rather than spin.
                        tracing::warn!(%error, "cannot accept a connection");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                },
                () = stop.requested() => break,
            };
            let _ = stream.set_nodelay(true);
            let server = Arc::clone(&self);
            let service = hyper::service::service_fn(move |request| {
                let server = Arc::clone(&server);
                async move { Ok::<_, Infallible>(server.handle(request).await) }
            });
            let connection = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(self.config.header_read_timeout)
                .max_buf_size(64 << 10)
                .serve_connection(TokioIo::new(stream), service);
            let connection = graceful.watch(connection);
            tokio::spawn(async move {
                if let Err(error) = connection.await {
                    tracing::debug!(%error, "an HTTP connection ended with an error");
                }
            });
        }
        drop(listener);
        reaper.abort();
        armed.abort();
        // Event streams would hold their connections open: end them with their sessions.
        self.sessions.close_all();
        tracing::info!("asked to stop: finishing the requests in flight");
        graceful.shutdown().await;
        Ok(())
    }

    async fn handle(&self, request: Request<hyper::body::Incoming>) -> Response<Body> {
        self.activity.notify_one();
        if let Err(refusal) = self.guard(&request) {
            return refusal;
        }
        let path = request.uri().path();
        if self.metadata_paths.iter().any(|known| known == path) {
            return match *request.method() {
                Method::GET | Method::HEAD => respond(StatusCode::OK, "application/json", self.metadata.clone()),
                _ => not_allowed("GET"),
            };
        }
        if path != self.config.path {
            return error(StatusCode::NOT_FOUND, Value::Null, INVALID_REQUEST, "no such endpoint");
        }
        if request
            .uri()
            .query()
            .is_some_and(|query| url::form_urlencoded::parse(query.as_bytes()).any(|(name, _)| name == "access_token"))
        {
            return self.unauthorized("invalid_request", "a token is accepted only in the Authorization header");
        }
        let requester = match self.authenticate(&request).await {
            Ok(requester) => requester,
            Err(refusal) => return refusal,
        };
        match *request.method() {
            Method::POST => self.post(request, requester).await,
            Method::GET => self.stream(&request, &requester),
            Method::DELETE => self.delete(&request, &requester),
            _ => not_allowed("GET, POST, DELETE"),
        }
    }

    /// The `Host` and `Origin` checks.
    fn guard<B>(&self, request: &Request<B>) -> Result<(), Response<Body>> {
        let host = request.headers().get(header::HOST).and_then(|host| host.to_str().ok());
        let Some(host) = host else {
            return Err(error(StatusCode::BAD_REQUEST, Value::Null, INVALID_REQUEST, "the request has no Host"));
        };
        if !self.host_allowed(host) {
            return Err(error(StatusCode::FORBIDDEN, Value::Null, INVALID_REQUEST, "this Host is not served here"));
        }
        if let Some(origin) = request.headers().get(header::ORIGIN) {
            let allowed = origin.to_str().is_ok_and(|origin| {
                self.config.allowed_origins.iter().any(|allowed| allowed == "*" || allowed.eq_ignore_ascii_case(origin))
            });
            if !allowed {
                return Err(error(StatusCode::FORBIDDEN, Value::Null, INVALID_REQUEST, "this Origin is not allowed"));
            }
        }
        Ok(())
    }

    fn host_allowed(&self, host: &str) -> bool {
        let host = host.to_ascii_lowercase();
        self.hosts.contains(&host)
            || self.allowed_hosts.iter().any(|allowed| {
                *allowed == host || (!allowed.contains(':') && host.rsplit_once(':').is_some_and(|(h, _)| h == allowed))
            })
    }

    /// The verified caller, or the 401 that refuses the request.
    async fn authenticate<B>(&self, request: &Request<B>) -> Result<Requester, Response<Body>> {
        let Some(verifier) = &self.verifier else {
            return Ok(Requester::Configured(Arc::clone(self.service.session())));
        };
        let authorization = request.headers().get(header::AUTHORIZATION).map(HeaderValue::as_bytes);
        let principal = match verifier.verify_header(authorization).await {
            Ok(principal) => principal,
            Err(rejection) => {
                tracing::info!(reason = %rejection, "an HTTP request was refused: its credential");
                return Err(if rejection.token_was_given() {
                    self.unauthorized("invalid_token", "the token is not accepted")
                } else {
                    self.challenge(None)
                });
            }
        };
        Ok(Requester::Verified(principal))
    }

    /// A session context bound for `requester`, or the 401 that refuses a principal the
    /// boundary does not accept.
    fn context_of(&self, requester: &Requester) -> Result<Arc<SessionContext>, Response<Body>> {
        requester.bind().map_err(|reason| self.unacceptable(&reason))
    }

    fn unacceptable(&self, reason: &crate::policy::SessionError) -> Response<Body> {
        tracing::info!(%reason, "an HTTP request was refused: its token's principal");
        self.unauthorized("invalid_token", "the token's principal is not acceptable")
    }

    fn challenge(&self, refusal: Option<(&str, &str)>) -> Response<Body> {
        let mut value = format!("Bearer resource_metadata=\"{}\"", self.metadata_url);
        if let Some((code, description)) = refusal {
            value.push_str(&format!(", error=\"{code}\", error_description=\"{description}\""));
        }
        let mut response = error(StatusCode::UNAUTHORIZED, Value::Null, INVALID_REQUEST, "authentication is required");
        if let Ok(value) = HeaderValue::from_str(&value) {
            response.headers_mut().insert(header::WWW_AUTHENTICATE, value);
        }
        response
    }

    fn unauthorized(&self, code: &str, description: &str) -> Response<Body> {
        self.challenge(Some((code, description)))
    }

    async fn post(&self, request: Request<hyper::body::Incoming>, requester: Requester) -> Response<Body> {
        let content_type = request.headers().get(header::CONTENT_TYPE).and_then(|value| value.to_str().ok());
        if !content_type.is_some_and(|value| {
            value.split(';').next().is_some_and(|t| t.trim().eq_ignore_ascii_case("application/json"))
        }) {
            return error(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                Value::Null,
                INVALID_REQUEST,
                "the body must be application/json",
            );
        }
        if !accepts_json(request.headers()) {
            return error(StatusCode::NOT_ACCEPTABLE, Value::Null, INVALID_REQUEST, "the answer is application/json");
        }
        let session_id = header_text(request.headers(), SESSION_HEADER).map(str::to_owned);
        let version = header_text(request.headers(), VERSION_HEADER).map(str::to_owned);
        if let Some(version) = &version
            && !rmcp::model::ProtocolVersion::KNOWN_VERSIONS.iter().any(|known| known.as_str() == version)
        {
            return error(StatusCode::BAD_REQUEST, Value::Null, INVALID_REQUEST, "unsupported MCP-Protocol-Version");
        }
        let body = match read_body(request.into_body()).await {
            Ok(body) => body,
            Err(refusal) => return refusal,
        };
        let initialize = is_initialize(&body);
        match (session_id, initialize) {
            (Some(_), true) => error(
                StatusCode::BAD_REQUEST,
                Value::Null,
                INVALID_REQUEST,
                "initialize opens a session: send it without Mcp-Session-Id",
            ),
            (None, true) => match self.context_of(&requester) {
                Ok(context) => self.initialize(&body, context).await,
                Err(refusal) => refusal,
            },
            (Some(id), false) => {
                let session = match self.owned_session(&id, &requester) {
                    Ok(session) => session,
                    Err(refusal) => return refusal,
                };
                let _busy = session.begin();
                let caller = match session.caller(&requester) {
                    Ok(caller) => caller,
                    Err(reason) => return self.unacceptable(&reason),
                };
                exchange(&session.conversation, &body, &caller).await.unwrap_or_else(|refusal| refusal)
            }
            (None, false) if version.as_deref().is_some_and(|v| v >= STATELESS_REVISION) => {
                let context = match self.context_of(&requester) {
                    Ok(context) => context,
                    Err(refusal) => return refusal,
                };
                let conversation = Conversation::start_stateless(Arc::clone(&self.service));
                let caller = Caller { session: context, mcp_session: None };
                exchange(&conversation, &body, &caller).await.unwrap_or_else(|refusal| refusal)
            }
            (None, false) => error(
                StatusCode::BAD_REQUEST,
                Value::Null,
                INVALID_REQUEST,
                "Mcp-Session-Id is required: initialize first",
            ),
        }
    }

    async fn initialize(&self, body: &[u8], context: Arc<SessionContext>) -> Response<Body> {
        let session = match self.sessions.open(Arc::clone(&self.service), Arc::clone(&context)) {
            Ok(session) => session,
            Err(OpenError::Full) => {
                // Idle sessions make room before anyone is turned away.
                self.sessions.expire_idle();
                match self.sessions.open(Arc::clone(&self.service), Arc::clone(&context)) {
                    Ok(session) => session,
                    Err(_) => {
                        return error(
                            StatusCode::SERVICE_UNAVAILABLE,
                            front::readable_id(body),
                            INVALID_REQUEST,
                            "too many sessions are open; try again later",
                        );
                    }
                }
            }
            Err(OpenError::Entropy) => {
                return error(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    front::readable_id(body),
                    INVALID_REQUEST,
                    "cannot draw a session id",
                );
            }
        };
        let _busy = session.begin();
        let caller = session.caller_as_opened();
        let mut response = exchange(&session.conversation, body, &caller).await.unwrap_or_else(|refusal| refusal);
        if session.conversation.router.lifecycle.is_initialized() {
            if let Ok(value) = HeaderValue::from_str(&session.id) {
                response.headers_mut().insert(SESSION_HEADER, value);
            }
        } else {
            self.sessions.close(&session.id);
        }
        response
    }

    fn stream<B>(&self, request: &Request<B>, requester: &Requester) -> Response<Body> {
        let accepts_events = request
            .headers()
            .get_all(header::ACCEPT)
            .iter()
            .any(|value| value.to_str().is_ok_and(|value| value.contains("text/event-stream")));
        if !accepts_events {
            return error(StatusCode::NOT_ACCEPTABLE, Value::Null, INVALID_REQUEST, "GET opens a text/event-stream");
        }
        let Some(id) = header_text(request.headers(), SESSION_HEADER) else {
            return error(StatusCode::BAD_REQUEST, Value::Null, INVALID_REQUEST, "Mcp-Session-Id is required");
        };
        let session = match self.owned_session(id, requester) {
            Ok(session) => session,
            Err(refusal) => return refusal,
        };
        let Some(events) = session.conversation.router.open_stream() else {
            return error(StatusCode::CONFLICT, Value::Null, INVALID_REQUEST, "this session's stream is open already");
        };
        let keep_alive = self.sessions.idle_limit().min(Duration::from_secs(15));
        let stream = futures_util::stream::unfold((events, keep_alive), |(mut events, keep_alive)| async move {
            let frame = match tokio::time::timeout(keep_alive, events.recv()).await {
                Ok(Some(event)) => event,
                Ok(None) => return None,
                Err(_) => Bytes::from_static(b": keep-alive\n\n"),
            };
            Some((Ok::<_, Infallible>(hyper::body::Frame::data(frame)), (events, keep_alive)))
        });
        let mut response = Response::new(http_body_util::StreamBody::new(stream).boxed());
        response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/event-stream"));
        response.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
        response
    }

    fn delete<B>(&self, request: &Request<B>, requester: &Requester) -> Response<Body> {
        let Some(id) = header_text(request.headers(), SESSION_HEADER) else {
            return error(StatusCode::BAD_REQUEST, Value::Null, INVALID_REQUEST, "Mcp-Session-Id is required");
        };
        if let Err(refusal) = self.owned_session(id, requester) {
            return refusal;
        }
        self.sessions.close(id);
        respond(StatusCode::NO_CONTENT, "application/json", Bytes::new())
    }

    /// The open session `id`, if `requester` is the principal that opened it: else 404, or 403
    /// and an audit record (or 401, for a principal the boundary does not accept).
    fn owned_session(&self, id: &str, requester: &Requester) -> Result<Arc<session::Session>, Response<Body>> {
        let Some(session) = self.sessions.get(id) else {
            return Err(error(
                StatusCode::NOT_FOUND,
                Value::Null,
                INVALID_REQUEST,
                "no such session: initialize again",
            ));
        };
        if !session.is_owned_by(requester.identity(), requester.tenant()) {
            let context = self.context_of(requester)?;
            self.audit_hijack(&context, id);
            return Err(error(
                StatusCode::FORBIDDEN,
                Value::Null,
                INVALID_REQUEST,
                "this session belongs to another principal",
            ));
        }
        Ok(session)
    }

    /// Writes the audit record of a request refused because it used another principal's
    /// session: the requester's identity, the session it tried, a denial.
    fn audit_hijack(&self, context: &SessionContext, session: &str) {
        tracing::warn!(identity = context.identity(), "a request used another principal's MCP session");
        let origin = Origin::new(Transport::Http).mcp_session(session);
        let record = AuditRecord {
            timestamp: SystemTime::now(),
            stage: Stage::Resolve,
            decision: AuditDecision::Deny,
            code: Some(DenialCode::SessionContextInvalid),
            duration: Duration::ZERO,
            rows_affected: None,
        };
        let batch = AuditBatch {
            session: Some(context),
            tool: "mcp_session",
            records: &[record],
            read: None,
            origin: Some(&origin),
        };
        if let Err(error) = self.service.audit().record(&batch) {
            tracing::error!(%error, "cannot write the audit record of a session hijack");
        }
    }
}

/// The `Host` values a server listening on `listen` for `resource` answers to, lower case: the
/// listen address (with `localhost`, `127.0.0.1` and `[::1]` on loopback) and the resource's
/// host.
fn host_names(listen: &std::net::SocketAddr, resource: &url::Url) -> Vec<String> {
    let port = listen.port();
    let mut names = vec![listen.to_string()];
    if listen.ip().is_loopback() {
        names.extend([format!("localhost:{port}"), format!("127.0.0.1:{port}"), format!("[::1]:{port}")]);
    }
    if let Some(name) = resource.host_str() {
        names.push(match resource.port() {
            Some(port) => format!("{name}:{port}"),
            None => name.to_owned(),
        });
    }
    names.iter().map(|name| name.to_ascii_lowercase()).collect()
}

/// Who a request comes from, its credential verified.
pub(super) enum Requester {
    /// The principal a token stands for.
    Verified(Principal),
    /// `[session]`, when `[auth]` is `none` (loopback only).
    Configured(Arc<SessionContext>),
}

impl Requester {
    fn identity(&self) -> &str {
        match self {
            Requester::Verified(principal) => &principal.identity,
            Requester::Configured(context) => context.identity(),
        }
    }

    fn tenant(&self) -> &str {
        match self {
            Requester::Verified(principal) => &principal.tenant,
            Requester::Configured(context) => context.tenant(),
        }
    }

    /// Whether `context` stands for this requester exactly: the same identity, tenant, scopes
    /// and claims, so that a request may run as it rather than as a context of its own.
    pub(super) fn is_bound_to(&self, context: &SessionContext) -> bool {
        match self {
            Requester::Configured(configured) => std::ptr::eq(&**configured, context),
            Requester::Verified(principal) => {
                principal.identity == context.identity()
                    && principal.tenant == context.tenant()
                    && principal.scopes.iter().map(String::as_str).eq(context.scopes().iter().map(|scope| &**scope))
                    && principal.claims.iter().map(|(name, value)| (name.as_str(), value.as_str())).eq(context.claims())
            }
        }
    }

    /// The session context a request runs as: `[session]`'s, or one bound for the principal.
    /// The latter has no expiry of its own: the token is verified on every request, and an MCP
    /// session outlives the token that opened it as long as each request brings a valid one (a
    /// refreshed token, say).
    pub(super) fn bind(&self) -> Result<Arc<SessionContext>, crate::policy::SessionError> {
        let principal = match self {
            Requester::Configured(context) => return Ok(Arc::clone(context)),
            Requester::Verified(principal) => principal,
        };
        let mut builder = SessionContext::builder()
            .identity(&principal.identity)
            .tenant(&principal.tenant)
            .scopes(principal.scopes.iter().map(String::as_str));
        for (name, value) in &principal.claims {
            builder = builder.claim(name.as_str(), value.as_str());
        }
        builder.bind().map(Arc::new)
    }
}

fn is_initialize(body: &[u8]) -> bool {
    #[derive(serde::Deserialize)]
    struct Method<'a> {
        #[serde(borrow)]
        method: Option<std::borrow::Cow<'a, str>>,
    }
    // JSON cannot name the method without these letters (an escape would need a backslash):
    // most bodies need no parse here.
    let named = memchr::memmem::find(body, b"initialize").is_some() || memchr::memchr(b'\\', body).is_some();
    named
        && serde_json::from_slice::<Method<'_>>(body)
            .is_ok_and(|message| message.method.as_deref() == Some("initialize"))
}

fn accepts_json(headers: &http::HeaderMap) -> bool {
    let mut values = headers.get_all(header::ACCEPT).iter().peekable();
    if values.peek().is_none() {
        return true;
    }
    values.any(|value| {
        value.to_str().is_ok_and(|value| {
            value.split(',').any(|range| {
                let range = range.split(';').next().unwrap_or("").trim();
                range == "*/*"
                    || range.eq_ignore_ascii_case("application/json")
                    || range.eq_ignore_ascii_case("application/*")
            })
        })
    })
}

fn header_text<'a>(headers: &'a http::HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|value| value.to_str().ok())
}

async fn read_body(body: hyper::body::Incoming) -> Result<Vec<u8>, Response<Body>> {
    let limited = Limited::new(body, MAX_MESSAGE_BYTES);
    match tokio::time::timeout(Duration::from_secs(30), limited.collect()).await {
        Ok(Ok(collected)) => Ok(collected.to_bytes().to_vec()),
        Ok(Err(cause)) if cause.is::<http_body_util::LengthLimitError>() => Err(error(
            StatusCode::PAYLOAD_TOO_LARGE,
            Value::Null,
            INVALID_REQUEST,
            &format!("the message is longer than {MAX_MESSAGE_BYTES} bytes"),
        )),
        Ok(Err(_)) => Err(error(StatusCode::BAD_REQUEST, Value::Null, INVALID_REQUEST, "the body could not be read")),
        Err(_) => {
            Err(error(StatusCode::REQUEST_TIMEOUT, Value::Null, INVALID_REQUEST, "the body was not sent in time"))
        }
    }
}

fn respond(status: StatusCode, content_type: &'static str, body: Bytes) -> Response<Body> {
    let mut response = Response::new(Full::new(body).boxed());
    *response.status_mut() = status;
    if status != StatusCode::NO_CONTENT && status != StatusCode::ACCEPTED {
        response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    }
    response
}

fn jsonrpc_error(line: Vec<u8>) -> Response<Body> {
    let status = match serde_json::from_slice::<Value>(&line).ok().and_then(|v| v["error"]["code"].as_i64()) {
        Some(front::PARSE_ERROR | INVALID_REQUEST | front::INVALID_PARAMS) => StatusCode::BAD_REQUEST,
        _ => StatusCode::OK,
    };
    respond(status, "application/json", Bytes::from(line))
}

fn error(status: StatusCode, id: Value, code: i64, message: &str) -> Response<Body> {
    let body = json!({"jsonrpc": "2.0", "id": id, "error": {"code": code, "message": message}});
    respond(status, "application/json", Bytes::from(body.to_string()))
}

fn not_allowed(allow: &'static str) -> Response<Body> {
    let mut response = error(StatusCode::METHOD_NOT_ALLOWED, Value::Null, INVALID_REQUEST, "method not allowed");
    response.headers_mut().insert(header::ALLOW, HeaderValue::from_static(allow));
    response
}

/// Closes idle sessions, a few times per idle period.
async fn reap(server: Arc<HttpServer>) {
    let every = (server.config.session_idle / 4).clamp(Duration::from_millis(100), Duration::from_secs(30));
    loop {
        tokio::time::sleep(every).await;
        let closed = server.sessions.expire_idle();
        if closed > 0 {
            tracing::info!(closed, open = server.sessions.len(), "idle MCP sessions were closed");
        }
    }
}
