//! `[http]` and `[auth]`: where the Streamable HTTP transport listens, and who may call it.
//!
//! ```toml
//! [http]
//! listen = "127.0.0.1:8080"
//! resource = "https://db.example.com/mcp"
//! [auth]
//! issuer = "https://idp.example.com"
//! jwks_file = "jwks.json"
//! ```
//!
//! A listen address that is not loopback needs `[auth]`: without it the server does not start.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use crate::auth::jwt::{JwksSource, JwtSettings, algorithm};
use crate::auth::tokens::StaticToken;

/// The HTTP transport's settings.
#[derive(Debug, Clone)]
pub struct HttpConfig {
    /// The address to listen on.
    pub listen: SocketAddr,
    /// The MCP endpoint's path (`/mcp`).
    pub path: String,
    /// This server's canonical resource URI: the audience tokens must name.
    pub resource: String,
    /// The `Origin`s browsers may call from; a request with another `Origin` is refused.
    pub allowed_origins: Vec<String>,
    /// Host names accepted in `Host` besides the listen address's and the resource's.
    pub allowed_hosts: Vec<String>,
    /// The most MCP sessions open at once.
    pub max_sessions: usize,
    /// How long a session may stay idle before it is closed.
    pub session_idle: Duration,
    /// How long a client may take to send a request's headers.
    pub header_read_timeout: Duration,
}

/// Who may call the HTTP transport.
#[derive(Debug, Clone)]
pub enum AuthConfig {
    /// No credential: every request runs as `[session]`. Loopback only.
    None,
    /// Bearer tokens: JWTs, static tokens, or both.
    Bearer(Box<BearerConfig>),
}

/// `[auth]` with credentials.
#[derive(Debug, Clone)]
pub struct BearerConfig {
    /// How JWTs are verified, if they are accepted.
    pub jwt: Option<JwtSettings>,
    /// The static tokens.
    pub tokens: Vec<StaticToken>,
    /// The authorization servers named in the protected resource metadata.
    pub authorization_servers: Vec<String>,
    /// The scopes named in the protected resource metadata.
    pub scopes_supported: Vec<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawHttp {
    listen: Option<String>,
    path: Option<String>,
    resource: Option<String>,
    #[serde(default)]
    allowed_origins: Vec<String>,
    #[serde(default)]
    allowed_hosts: Vec<String>,
    max_sessions: Option<usize>,
    session_idle_s: Option<u64>,
    header_read_timeout_ms: Option<u64>,
}

/// `auth = "none"`, or an `[auth]` table.
#[derive(Deserialize)]
#[serde(untagged)]
pub(super) enum RawAuthChoice {
    Word(String),
    Table(Box<RawAuth>),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawAuth {
    issuer: Option<String>,
    audience: Option<String>,
    jwks_file: Option<PathBuf>,
    jwks_url: Option<String>,
    jwks_ca_file: Option<PathBuf>,
    jwks_refresh_min_s: Option<u64>,
    jwks_timeout_ms: Option<u64>,
    algorithms: Option<Vec<String>>,
    authorization_servers: Option<Vec<String>>,
    #[serde(default)]
    scopes_supported: Vec<String>,
    identity_claim: Option<String>,
    tenant_claim: Option<String>,
    default_tenant: Option<String>,
    scope_claim: Option<String>,
    leeway_s: Option<u64>,
    #[serde(default)]
    tokens: Vec<RawToken>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawToken {
    sha256: String,
    identity: String,
    tenant: String,
    #[serde(default)]
    scopes: Vec<String>,
    expires_at: Option<String>,
}

impl HttpConfig {
    /// HTTP on `listen` with every default and no `[auth]` (as the demo serves it): refused on
    /// an address that is not loopback.
    pub fn without_auth(listen: &str, warnings: &mut Vec<String>) -> Result<(HttpConfig, AuthConfig), String> {
        let http = http(None, Some(listen))?.ok_or("no HTTP address")?;
        let auth = auth(None, Some(&http), warnings)?;
        Ok((http, auth))
    }
}

/// What `sqlwarden check` reports about the HTTP transport: settings that are allowed but
/// weaken it, one sentence each.
pub fn http_posture(http: &HttpConfig, auth: &AuthConfig, now: std::time::SystemTime) -> Vec<String> {
    let mut findings = Vec::new();
    let plain = http.resource.starts_with("http://");
    if plain && !http.listen.ip().is_loopback() {
        findings.push(format!(
            "no TLS in front: {} is reachable from other machines and the resource URI is plain http; terminate \
             TLS in front of it and set [http] resource to the https URI",
            http.listen
        ));
    }
    if http.allowed_origins.iter().any(|origin| origin == "*") {
        findings.push("[http] allowed_origins holds \"*\": a web page on any site may call this server".into());
    }
    match auth {
        AuthConfig::None => findings.push(format!(
            "no [auth]: every request runs as [session], and anyone on this machine can call {}",
            http.listen
        )),
        AuthConfig::Bearer(bearer) => {
            for token in &bearer.tokens {
                match token.expiry() {
                    None => findings.push(format!("the static token of {} never expires", token.identity())),
                    Some(at) => {
                        let days = at.duration_since(now).map_or(0, |left| left.as_secs() / 86_400);
                        if days > 90 {
                            findings.push(format!(
                                "the static token of {} is valid for {days} more days: rotate it at least every 90",
                                token.identity()
                            ));
                        }
                    }
                }
            }
        }
    }
    findings
}

/// The default MCP path.
pub const DEFAULT_PATH: &str = "/mcp";

/// The HTTP settings from `[http]` (and `--http ADDR`, which overrides `listen`): `None` when
/// neither asks for HTTP.
pub(super) fn http(raw: Option<RawHttp>, listen_override: Option<&str>) -> Result<Option<HttpConfig>, String> {
    let raw = match (raw, listen_override) {
        (None, None) => return Ok(None),
        (raw, _) => raw.unwrap_or_default(),
    };
    let listen = listen_override.map(str::to_owned).or(raw.listen).unwrap_or_else(|| "127.0.0.1:8080".into());
    let listen: SocketAddr =
        listen.parse().map_err(|_| format!("[http] listen {listen:?} is not an address such as 127.0.0.1:8080"))?;
    let path = raw.path.unwrap_or_else(|| DEFAULT_PATH.into());
    if !path.starts_with('/') || path.contains(['?', '#', ' ']) || path.starts_with("/.well-known/") {
        return Err(format!("[http] path {path:?} must be an absolute path such as /mcp"));
    }
    let resource = match raw.resource {
        Some(resource) => {
            let parsed =
                url::Url::parse(&resource).map_err(|_| format!("[http] resource {resource:?} is not a URL"))?;
            if !matches!(parsed.scheme(), "https" | "http") || parsed.fragment().is_some() {
                return Err(format!("[http] resource {resource:?} must be an http(s) URL without a fragment"));
            }
            resource
        }
        None => format!("http://{listen}{path}"),
    };
    for origin in &raw.allowed_origins {
        if origin == "*" {
            continue;
        }
        let parsed =
            url::Url::parse(origin).map_err(|_| format!("[http] allowed_origins: {origin:?} is not an origin"))?;
        if parsed.path() != "/" || origin.ends_with('/') || parsed.query().is_some() {
            return Err(format!("[http] allowed_origins: {origin:?} is not an origin (scheme://host[:port])"));
        }
    }
    let max_sessions = raw.max_sessions.unwrap_or(1000);
    if max_sessions == 0 {
        return Err("[http] max_sessions must be at least 1".into());
    }
    let session_idle = Duration::from_secs(raw.session_idle_s.unwrap_or(900));
    if session_idle.is_zero() {
        return Err("[http] session_idle_s must be at least 1".into());
    }
    let header_read_timeout = Duration::from_millis(raw.header_read_timeout_ms.unwrap_or(10_000));
    if header_read_timeout.is_zero() {
        return Err("[http] header_read_timeout_ms must be at least 1".into());
    }
    Ok(Some(HttpConfig {
        listen,
        path,
        resource,
        allowed_origins: raw.allowed_origins,
        allowed_hosts: raw.allowed_hosts,
        max_sessions,
        session_idle,
        header_read_timeout,
    }))
}

/// The `[auth]` settings. `http` is the HTTP configuration they protect (its resource is the
/// default audience, its listen address decides whether no authentication is allowed).
pub(super) fn auth(
    raw: Option<RawAuthChoice>,
    http: Option<&HttpConfig>,
    warnings: &mut Vec<String>,
) -> Result<AuthConfig, String> {
    let raw = match raw {
        None | Some(RawAuthChoice::Word(_)) if http.is_none() => return Ok(AuthConfig::None),
        Some(RawAuthChoice::Word(word)) if word == "none" => None,
        Some(RawAuthChoice::Word(word)) => {
            return Err(format!("auth = {word:?}: the only word is \"none\"; otherwise write an [auth] table"));
        }
        Some(RawAuthChoice::Table(raw)) => Some(*raw),
        None => None,
    };
    let Some(raw) = raw else {
        if let Some(http) = http {
            if !http.listen.ip().is_loopback() {
                return Err(format!(
                    "[http] listen {} is not a loopback address, and no [auth] is set: every caller would be \
                     anonymous. Set [auth] (issuer and jwks_file or jwks_url, or [[auth.tokens]]), or listen on \
                     127.0.0.1",
                    http.listen
                ));
            }
            warnings.push(format!(
                "HTTP on {} without [auth]: every request runs as [session]; only this machine can connect",
                http.listen
            ));
        }
        return Ok(AuthConfig::None);
    };
    let resource = http.map(|http| http.resource.clone());
    let jwt = match (&raw.issuer, &raw.jwks_file, &raw.jwks_url) {
        (None, None, None) => None,
        (None, _, _) => return Err("[auth] jwks_file or jwks_url is set without issuer".into()),
        (Some(_), None, None) => return Err("[auth] issuer is set: set jwks_file or jwks_url too".into()),
        (Some(_), Some(_), Some(_)) => return Err("[auth] has both jwks_file and jwks_url; keep one".into()),
        (Some(issuer), Some(file), None) => Some(jwt_settings(&raw, issuer, JwksSource::File(file.clone()), resource)?),
        (Some(issuer), None, Some(url)) => {
            let parsed = url::Url::parse(url).map_err(|_| format!("[auth] jwks_url {url:?} is not a URL"))?;
            if parsed.scheme() != "https" {
                return Err(format!("[auth] jwks_url {url:?} must be https"));
            }
            Some(jwt_settings(&raw, issuer, JwksSource::Url(parsed), resource)?)
        }
    };
    let mut tokens = Vec::with_capacity(raw.tokens.len());
    for token in raw.tokens {
        crate::policy::SessionContext::builder()
            .identity(&token.identity)
            .tenant(&token.tenant)
            .scopes(token.scopes.iter().map(String::as_str))
            .bind()
            .map_err(|error| format!("[[auth.tokens]] {error}"))?;
        let mut entry = StaticToken::new(&token.sha256, &token.identity, &token.tenant, token.scopes)
            .map_err(|error| format!("[[auth.tokens]] for {}: {error}", token.identity))?;
        match token.expires_at {
            Some(text) => {
                let at = humantime::parse_rfc3339(&text)
                    .map_err(|_| format!("[[auth.tokens]] expires_at {text:?} is not an RFC 3339 time"))?;
                entry = entry.expires_at(at);
            }
            None => warnings.push(format!(
                "[[auth.tokens]] the token of {} never expires: set expires_at, and rotate it",
                token.identity
            )),
        }
        tokens.push(entry);
    }
    if jwt.is_none() && tokens.is_empty() {
        return Err("[auth] accepts no credential: set issuer with jwks_file or jwks_url, or [[auth.tokens]]".into());
    }
    let authorization_servers =
        raw.authorization_servers.clone().unwrap_or_else(|| raw.issuer.iter().cloned().collect());
    Ok(AuthConfig::Bearer(Box::new(BearerConfig {
        jwt,
        tokens,
        authorization_servers,
        scopes_supported: raw.scopes_supported,
    })))
}

/// How JWTs are verified, from `[auth]`.
fn jwt_settings(
    raw: &RawAuth,
    issuer: &str,
    jwks: JwksSource,
    resource: Option<String>,
) -> Result<JwtSettings, String> {
    let names = raw.algorithms.clone().unwrap_or_else(|| vec!["RS256".into(), "ES256".into()]);
    if names.is_empty() {
        return Err("[auth] algorithms is empty".into());
    }
    let mut algorithms = Vec::with_capacity(names.len());
    for name in &names {
        let parsed = algorithm(name)
            .ok_or_else(|| format!("[auth] algorithms: {name:?} is not a signing algorithm (\"none\" never is)"))?;
        if name.starts_with("HS") {
            return Err(format!(
                "[auth] algorithms: {name} is an HMAC algorithm; a JWKS is public, so it cannot hold an HMAC key \
                 safely: use RS256, ES256, PS256 or EdDSA"
            ));
        }
        algorithms.push(parsed);
    }
    let audience = match (&raw.audience, resource) {
        (Some(audience), _) => audience.clone(),
        (None, Some(resource)) => resource,
        (None, None) => return Err("[auth] audience is needed when [http] is not set".into()),
    };
    let leeway = raw.leeway_s.unwrap_or(60);
    if leeway > 300 {
        return Err(format!("[auth] leeway_s ({leeway}) is above 300: a leeway is for clock skew"));
    }
    Ok(JwtSettings {
        issuer: issuer.to_owned(),
        audience,
        algorithms,
        jwks,
        identity_claim: raw.identity_claim.clone().unwrap_or_else(|| "sub".into()),
        tenant_claim: raw.tenant_claim.clone(),
        default_tenant: raw.default_tenant.clone().unwrap_or_else(|| "default".into()),
        scope_claim: raw.scope_claim.clone().unwrap_or_else(|| "scope".into()),
        claims: Vec::new(),
        leeway: Duration::from_secs(leeway),
        refresh_min: Duration::from_secs(raw.jwks_refresh_min_s.unwrap_or(60)),
        fetch_timeout: Duration::from_millis(raw.jwks_timeout_ms.unwrap_or(5_000)),
        jwks_ca_file: raw.jwks_ca_file.clone(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, SystemTime};

    fn raw(text: &str) -> RawHttp {
        toml::from_str(text).expect("an [http] table")
    }

    #[test]
    fn the_posture_names_what_weakens_the_transport() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(2_000_000_000);
        let open =
            http(Some(raw("listen = \"0.0.0.0:8080\"\nallowed_origins = [\"*\"]")), None).expect("valid").expect("on");
        let token = |days: Option<u64>| {
            let entry = StaticToken::new(&"a".repeat(64), "etl-bot", "acme", Vec::new()).expect("a hash");
            match days {
                Some(days) => entry.expires_at(now + Duration::from_secs(days * 86_400)),
                None => entry,
            }
        };
        let bearer = |tokens| {
            AuthConfig::Bearer(Box::new(BearerConfig {
                jwt: None,
                tokens,
                authorization_servers: Vec::new(),
                scopes_supported: Vec::new(),
            }))
        };
        let findings = http_posture(&open, &bearer(vec![token(None), token(Some(400)), token(Some(30))]), now);
        assert_eq!(findings.len(), 4, "{findings:?}");
        assert!(findings[0].starts_with("no TLS in front"), "{findings:?}");
        assert!(findings[1].contains("allowed_origins"), "{findings:?}");
        assert!(findings[2].contains("never expires") && findings[3].contains("400 more days"), "{findings:?}");
        let behind_tls = http(Some(raw("listen = \"0.0.0.0:8080\"\nresource = \"https://db.example.com/mcp\"")), None)
            .expect("valid")
            .expect("on");
        assert!(http_posture(&behind_tls, &bearer(vec![token(Some(30))]), now).is_empty());
        let local = http(None, Some("127.0.0.1:8080")).expect("valid").expect("on");
        let findings = http_posture(&local, &AuthConfig::None, now);
        assert!(findings.len() == 1 && findings[0].starts_with("no [auth]"), "{findings:?}");
    }

    #[test]
    fn unsafe_settings_are_refused() {
        let mut warnings = Vec::new();
        let public = http(None, Some("0.0.0.0:8080")).expect("valid");
        let refused = auth(None, public.as_ref(), &mut warnings).expect_err("no auth beyond loopback");
        assert!(refused.contains("not a loopback address"), "{refused}");
        let none: RawAuthChoice = RawAuthChoice::Word("none".into());
        assert!(auth(Some(none), public.as_ref(), &mut warnings).is_err(), "auth = \"none\" is loopback only");
        let local = http(None, Some("127.0.0.1:8080")).expect("valid");
        assert!(matches!(
            auth(Some(RawAuthChoice::Word("none".into())), local.as_ref(), &mut warnings),
            Ok(AuthConfig::None)
        ));
        let table = |text: &str| RawAuthChoice::Table(Box::new(toml::from_str(text).expect("an [auth] table")));
        for (text, reason) in [
            ("issuer = \"i\"\njwks_file = \"k\"\nalgorithms = [\"HS256\"]", "HMAC"),
            ("issuer = \"i\"\njwks_file = \"k\"\nalgorithms = [\"none\"]", "not a signing algorithm"),
            ("issuer = \"i\"\njwks_file = \"k\"\nalgorithms = []", "empty"),
            ("issuer = \"i\"\njwks_url = \"http://idp/jwks\"", "https"),
            ("issuer = \"i\"", "jwks_file or jwks_url"),
            ("jwks_file = \"k\"", "without issuer"),
            ("issuer = \"i\"\njwks_file = \"k\"\nleeway_s = 3600", "clock skew"),
            ("", "accepts no credential"),
        ] {
            let refused = auth(Some(table(text)), public.as_ref(), &mut warnings).expect_err(text);
            assert!(refused.contains(reason), "{text}: {refused}");
        }
        for bad in ["listen = \"nowhere\"", "path = \"mcp\"", "max_sessions = 0", "resource = \"ftp://x/mcp\""] {
            assert!(http(Some(raw(bad)), None).is_err(), "{bad}");
        }
    }
}
