//! Static bearer tokens for machines: the configuration holds each token's SHA-256, never the
//! token, and the principal it stands for.
//!
//! A presented token is hashed once and compared with every configured hash in constant time,
//! all of them each time, so neither the time taken nor an early exit tells which hash (or how
//! much of one) matched.

use std::time::SystemTime;

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::{Credential, Principal};

/// One static token: the SHA-256 of the token, and the principal it stands for.
#[derive(Clone)]
pub struct StaticToken {
    sha256: [u8; 32],
    identity: String,
    tenant: String,
    scopes: Vec<String>,
    expires_at: Option<SystemTime>,
}

impl std::fmt::Debug for StaticToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The hash is not a secret, but it is no one's business either.
        f.debug_struct("StaticToken").field("identity", &self.identity).field("tenant", &self.tenant).finish()
    }
}

/// Why a static token's entry is refused.
#[derive(Debug, thiserror::Error)]
#[error("sha256 must be 64 hexadecimal digits (the SHA-256 of the token, never the token)")]
pub struct NotAHash;

impl StaticToken {
    /// The token whose SHA-256 is `sha256_hex` (64 hex digits), standing for `identity` in
    /// `tenant` with `scopes`.
    pub fn new(sha256_hex: &str, identity: &str, tenant: &str, scopes: Vec<String>) -> Result<Self, NotAHash> {
        let mut sha256 = [0u8; 32];
        hex::decode_to_slice(sha256_hex, &mut sha256).map_err(|_| NotAHash)?;
        Ok(StaticToken { sha256, identity: identity.to_owned(), tenant: tenant.to_owned(), scopes, expires_at: None })
    }

    /// Makes the token stop being accepted at `at`.
    #[must_use]
    pub fn expires_at(mut self, at: SystemTime) -> Self {
        self.expires_at = Some(at);
        self
    }

    /// Who the token stands for.
    pub fn identity(&self) -> &str {
        &self.identity
    }

    /// When the token stops being accepted, if ever.
    pub fn expiry(&self) -> Option<SystemTime> {
        self.expires_at
    }
}

/// The configured static tokens.
#[derive(Debug, Default, Clone)]
pub struct StaticTokens(Vec<StaticToken>);

impl StaticTokens {
    /// These tokens.
    pub fn new(tokens: Vec<StaticToken>) -> Self {
        StaticTokens(tokens)
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The tokens, for the posture report.
    pub fn iter(&self) -> impl Iterator<Item = &StaticToken> {
        self.0.iter()
    }

    /// The principal `token` stands for, if it is one of these and has not expired.
    pub(super) fn find(&self, token: &str) -> Option<Principal> {
        if self.0.is_empty() {
            return None;
        }
        let presented: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        let mut found = None;
        for entry in &self.0 {
            if bool::from(entry.sha256.ct_eq(&presented)) {
                found = Some(entry);
            }
        }
        let entry = found?;
        let now = SystemTime::now();
        if entry.expires_at.is_some_and(|at| now >= at) {
            return None;
        }
        Some(Principal {
            identity: entry.identity.clone(),
            tenant: entry.tenant.clone(),
            scopes: entry.scopes.clone(),
            claims: Vec::new(),
            expires_at: entry.expires_at,
            credential: Credential::StaticToken,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn hash(token: &str) -> String {
        hex::encode(Sha256::digest(token.as_bytes()))
    }

    #[test]
    fn a_token_is_found_by_its_hash_only() {
        let tokens = StaticTokens::new(vec![
            StaticToken::new(&hash("first-secret"), "etl-bot", "acme", vec!["read".into()]).expect("hash"),
            StaticToken::new(&hash("second-secret").to_uppercase(), "ci", "globex", Vec::new()).expect("hash"),
        ]);
        let first = tokens.find("first-secret").expect("known");
        assert_eq!((first.identity.as_str(), first.tenant.as_str()), ("etl-bot", "acme"));
        assert_eq!((first.scopes.clone(), first.credential), (vec!["read".to_owned()], Credential::StaticToken));
        assert_eq!(tokens.find("second-secret").map(|p| p.identity), Some("ci".to_owned()));
        assert_eq!(tokens.find("first-secreT"), None);
        assert_eq!(tokens.find(&hash("first-secret")), None, "the hash is not the token");
        assert_eq!(StaticTokens::default().find("first-secret"), None);
    }

    #[test]
    fn an_expired_token_is_not_accepted() {
        let past = SystemTime::now() - Duration::from_secs(1);
        let future = SystemTime::now() + Duration::from_secs(3600);
        let expired =
            StaticTokens::new(vec![StaticToken::new(&hash("t"), "a", "b", Vec::new()).expect("hash").expires_at(past)]);
        assert_eq!(expired.find("t"), None);
        let valid = StaticTokens::new(vec![
            StaticToken::new(&hash("t"), "a", "b", Vec::new()).expect("hash").expires_at(future),
        ]);
        assert_eq!(valid.find("t").and_then(|p| p.expires_at), Some(future));
    }

    #[test]
    fn only_a_full_hash_is_accepted_in_the_configuration() {
        for refused in ["", "abc", &"g".repeat(64), &"a".repeat(63), &"a".repeat(65), "secret-token"] {
            assert!(StaticToken::new(refused, "a", "b", Vec::new()).is_err(), "{refused}");
        }
        let debug = format!("{:?}", StaticToken::new(&hash("t"), "a", "b", Vec::new()).expect("hash"));
        assert!(!debug.contains(&hash("t")), "{debug}");
    }
}
