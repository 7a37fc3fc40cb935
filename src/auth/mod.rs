//! Who is calling, from what an identity provider signed: bearer tokens in, a verified
//! [`Principal`] out. This module knows nothing of MCP or HTTP; the HTTP transport asks it about
//! the `Authorization` header of every request and binds what it answers to the call.
//!
//! Two kinds of credential are accepted, each optional:
//!
//! - **JWTs** ([`jwt`]): signed by a key of the identity provider's JWKS, found by the token's
//!   `kid`; the algorithm from a pinned allow-list (`none` and HMAC can never be on it); `iss`,
//!   `aud` (it must contain this server's resource URI), `exp` and `nbf` with a small leeway.
//! - **Static tokens** ([`tokens`]) for machines: the configuration holds only each token's
//!   SHA-256, compared in constant time, with the principal it stands for.
//!
//! sqlwarden issues no tokens and keeps no secret that could mint one.

pub mod fetch;
pub mod jwt;
pub mod tokens;

use std::time::SystemTime;

pub use jwt::{JwksSource, JwtSettings, JwtVerifier};
pub use tokens::{StaticToken, StaticTokens};

/// A caller whose credential was verified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// Who: the token's identity claim (`sub` unless configured otherwise), or a static token's
    /// identity.
    pub identity: String,
    /// On behalf of which tenant.
    pub tenant: String,
    /// The scopes the token carries (its `scope` claim, split on spaces).
    pub scopes: Vec<String>,
    /// The further claims the configuration asks for, by name, as text (none for a static token).
    pub claims: Vec<(String, String)>,
    /// When the credential stops being valid, if it says.
    pub expires_at: Option<SystemTime>,
    /// Which kind of credential it was.
    pub credential: Credential,
}

/// The kind of credential a [`Principal`] came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Credential {
    /// A JWT signed by a key of the JWKS.
    Jwt,
    /// A static bearer token from the configuration.
    StaticToken,
}

/// Why a request's credential was not accepted. The reason is for the server's log; the client
/// is told only that the token is invalid, and never which key or which check.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Rejection {
    /// No credential was given.
    #[error("no bearer token was given")]
    Missing,
    /// A credential was given and is not accepted.
    #[error("the token is not accepted: {0}")]
    Invalid(&'static str),
}

impl Rejection {
    /// Whether a token was given (and so the answer carries `error="invalid_token"`).
    pub fn token_was_given(&self) -> bool {
        matches!(self, Rejection::Invalid(_))
    }
}

/// Everything that may vouch for a caller: a JWT verifier, static tokens, or both.
#[derive(Debug, Default)]
pub struct Verifier {
    jwt: Option<JwtVerifier>,
    tokens: StaticTokens,
}

impl Verifier {
    /// A verifier accepting JWTs as `jwt` says (if given) and the static `tokens`.
    pub fn new(jwt: Option<JwtVerifier>, tokens: StaticTokens) -> Self {
        Verifier { jwt, tokens }
    }

    /// Verifies the value of an `Authorization` header (`None` when the request had none).
    /// Only the `Bearer` scheme is accepted.
    pub async fn verify_header(&self, authorization: Option<&[u8]>) -> Result<Principal, Rejection> {
        let Some(value) = authorization else { return Err(Rejection::Missing) };
        let token = bearer_token(value).ok_or(Rejection::Invalid("the Authorization header is not a Bearer token"))?;
        self.verify(token).await
    }

    /// Verifies one bearer token: a static token if it is one, else a JWT.
    pub async fn verify(&self, token: &str) -> Result<Principal, Rejection> {
        if let Some(principal) = self.tokens.find(token) {
            return Ok(principal);
        }
        match &self.jwt {
            Some(jwt) => jwt.verify(token).await,
            None => Err(Rejection::Invalid("the token is not one this server accepts")),
        }
    }
}

/// The token of an `Authorization: Bearer TOKEN` header value (the scheme's case does not
/// matter; exactly one space or more before the token; the token is RFC 6750's `b64token`).
pub fn bearer_token(value: &[u8]) -> Option<&str> {
    let value = std::str::from_utf8(value).ok()?;
    let (scheme, token) = value.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return None;
    }
    let token = token.trim_start_matches(' ');
    // Bytes, not chars: every byte of a non-ASCII character fails the test as the character would.
    let b64token = |c: u8| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'.' | b'_' | b'~' | b'+' | b'/' | b'=');
    (!token.is_empty() && token.bytes().all(b64token)).then_some(token)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_bearer_header_yields_a_token() {
        assert_eq!(bearer_token(b"Bearer abc.def-ghi_~+/="), Some("abc.def-ghi_~+/="));
        assert_eq!(bearer_token(b"bearer  abc"), Some("abc"));
        for refused in [
            &b"Basic YWxhZGRpbjpvcGVuc2VzYW1l"[..],
            b"Bearer",
            b"Bearer ",
            b"Bearerabc",
            b"Bearer abc def",
            b"Bearer abc\"",
            b"Bearer \xff",
            b"Token abc",
        ] {
            assert_eq!(bearer_token(refused), None, "{}", String::from_utf8_lossy(refused));
        }
    }

    #[tokio::test]
    async fn no_credential_and_a_wrong_scheme_are_told_apart() {
        let verifier = Verifier::default();
        let missing = verifier.verify_header(None).await;
        assert_eq!(missing, Err(Rejection::Missing));
        assert!(!missing.is_err_and(|rejection| rejection.token_was_given()), "no token, no invalid_token");
        let basic = verifier.verify_header(Some(b"Basic eDp5")).await;
        assert!(basic.as_ref().is_err_and(Rejection::token_was_given), "{basic:?}");
        let unknown = verifier.verify_header(Some(b"Bearer a.b.c")).await;
        assert!(unknown.is_err_and(|rejection| rejection.token_was_given()));
    }
}
