//! The session: who is calling and for which tenant, bound once and immutable.

use std::fmt;
use std::time::SystemTime;

use thiserror::Error;

use super::principal::{self, PrincipalError};

/// A bound session: identity, tenant, a random session id and an optional expiry.
///
/// It can only be built by [`SessionContext::builder`], which validates every field, and it has
/// no setters: once bound, nothing about it changes. Share it with `Arc`.
#[derive(Debug)]
pub struct SessionContext {
    identity: Box<str>,
    tenant: Box<str>,
    scopes: Box<[Box<str>]>,
    /// Further claims of the credential, by name: those a declared tool binds a param to.
    claims: Box<[(Box<str>, Box<str>)]>,
    id: SessionId,
    bound_at: SystemTime,
    expires_at: Option<SystemTime>,
    /// `"session_id":…,"identity":…,"tenant":…`, escaped once so audit lines need not redo it.
    audit_json: Box<str>,
}

/// A random 128-bit session identifier, as 32 lowercase hex digits.
#[derive(Debug, PartialEq, Eq)]
pub struct SessionId(Box<str>);

/// Collects the claim for a session; [`SessionBuilder::bind`] validates it.
#[derive(Debug, Default)]
#[must_use]
pub struct SessionBuilder {
    identity: Option<String>,
    tenant: Option<String>,
    scopes: Vec<Box<str>>,
    claims: Vec<(Box<str>, Box<str>)>,
    expires_at: Option<SystemTime>,
}

/// Which session field a [`SessionError`] is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionField {
    /// The caller's identity.
    Identity,
    /// The caller's tenant.
    Tenant,
    /// A scope of the caller's credential.
    Scope,
}

impl fmt::Display for SessionField {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            SessionField::Identity => "identity",
            SessionField::Tenant => "tenant",
            SessionField::Scope => "scope",
        })
    }
}

/// Why a session could not be bound.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum SessionError {
    /// The identity or tenant was not given.
    #[error("session {0} is missing")]
    Missing(SessionField),
    /// The identity or tenant was given but is not acceptable.
    #[error("session {field} {reason}")]
    Invalid {
        /// The offending field.
        field: SessionField,
        /// What is wrong with it.
        reason: PrincipalError,
    },
    /// The operating system could not supply randomness for the session id.
    #[error("cannot draw a random session id")]
    Entropy(#[source] getrandom::Error),
}

impl SessionContext {
    /// Starts a session claim.
    pub fn builder() -> SessionBuilder {
        SessionBuilder::default()
    }

    /// Who is calling.
    pub fn identity(&self) -> &str {
        &self.identity
    }

    /// On behalf of which tenant.
    pub fn tenant(&self) -> &str {
        &self.tenant
    }

    /// The scopes the caller's credential carries (none over stdio).
    pub fn scopes(&self) -> &[Box<str>] {
        &self.scopes
    }

    /// A further claim of the caller's credential (over stdio, of `[session] claims`), by name:
    /// only those a declared tool binds a param to are kept.
    pub fn claim(&self, name: &str) -> Option<&str> {
        self.claims.iter().find(|(claim, _)| &**claim == name).map(|(_, value)| &**value)
    }

    /// Every further claim kept (see [`SessionContext::claim`]), by name, in the order given.
    pub fn claims(&self) -> impl Iterator<Item = (&str, &str)> {
        self.claims.iter().map(|(name, value)| (&**name, &**value))
    }

    /// The random id drawn when the session was bound.
    pub fn id(&self) -> &SessionId {
        &self.id
    }

    /// When the session was bound.
    pub fn bound_at(&self) -> SystemTime {
        self.bound_at
    }

    /// When the session stops being valid, if ever.
    pub fn expires_at(&self) -> Option<SystemTime> {
        self.expires_at
    }

    /// The session's audit fields as a JSON object body (no braces).
    pub(crate) fn audit_json(&self) -> &str {
        &self.audit_json
    }

    /// Whether the session has expired at `now`; it is valid strictly before its expiry.
    pub fn is_expired_at(&self, now: SystemTime) -> bool {
        self.expires_at.is_some_and(|expiry| now >= expiry)
    }
}

impl SessionBuilder {
    /// Sets the caller's identity.
    pub fn identity(mut self, identity: impl Into<String>) -> Self {
        self.identity = Some(identity.into());
        self
    }

    /// Sets the caller's tenant.
    pub fn tenant(mut self, tenant: impl Into<String>) -> Self {
        self.tenant = Some(tenant.into());
        self
    }

    /// Sets the scopes the caller's credential carries.
    pub fn scopes(mut self, scopes: impl IntoIterator<Item = impl Into<Box<str>>>) -> Self {
        self.scopes = scopes.into_iter().map(Into::into).collect();
        self
    }

    /// Adds a further claim of the caller's credential. A value a session would not take as
    /// an identity (empty, too long, with control characters) is left out: a tool that needs
    /// the claim then finds it missing.
    pub fn claim(mut self, name: impl Into<Box<str>>, value: impl Into<Box<str>>) -> Self {
        let value = value.into();
        if principal::check(&value).is_ok() {
            self.claims.push((name.into(), value));
        }
        self
    }

    /// Makes the session expire at `at`.
    pub fn expires_at(mut self, at: SystemTime) -> Self {
        self.expires_at = Some(at);
        self
    }

    /// Validates the claim and binds the session, drawing a fresh random session id.
    pub fn bind(self) -> Result<SessionContext, SessionError> {
        let identity = field(self.identity, SessionField::Identity)?;
        let tenant = field(self.tenant, SessionField::Tenant)?;
        for scope in &self.scopes {
            principal::check(scope).map_err(|reason| SessionError::Invalid { field: SessionField::Scope, reason })?;
        }
        let mut random = [0u8; 16];
        getrandom::fill(&mut random).map_err(SessionError::Entropy)?;
        let id = hex::encode(random);
        let audit_json = format!(
            r#""session_id":"{id}","identity":{},"tenant":{}"#,
            serde_json::Value::from(&*identity),
            serde_json::Value::from(&*tenant),
        );
        Ok(SessionContext {
            identity,
            tenant,
            scopes: self.scopes.into_boxed_slice(),
            claims: self.claims.into_boxed_slice(),
            id: SessionId(id.into_boxed_str()),
            bound_at: SystemTime::now(),
            expires_at: self.expires_at,
            audit_json: audit_json.into_boxed_str(),
        })
    }
}

fn field(value: Option<String>, which: SessionField) -> Result<Box<str>, SessionError> {
    let value = value.ok_or(SessionError::Missing(which))?;
    principal::check(&value).map_err(|reason| SessionError::Invalid { field: which, reason })?;
    Ok(value.into_boxed_str())
}

impl SessionId {
    /// The id as 32 lowercase hex digits.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for SessionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn bind(identity: Option<&str>, tenant: Option<&str>) -> Result<SessionContext, SessionError> {
        let mut builder = SessionContext::builder();
        if let Some(identity) = identity {
            builder = builder.identity(identity);
        }
        if let Some(tenant) = tenant {
            builder = builder.tenant(tenant);
        }
        builder.bind()
    }

    #[test]
    fn binds_a_valid_claim_with_a_fresh_random_id() {
        let a = bind(Some("alice"), Some("acme")).expect("valid claim");
        let b = bind(Some("alice"), Some("acme")).expect("valid claim");
        assert_eq!((a.identity(), a.tenant()), ("alice", "acme"));
        assert_eq!(a.id().to_string().len(), 32);
        assert!(a.id().to_string().chars().all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase()));
        assert_ne!(a.id(), b.id(), "each binding draws its own id");
        assert_eq!(a.expires_at(), None);
    }

    #[test]
    fn refuses_a_missing_field() {
        assert!(matches!(bind(None, Some("acme")), Err(SessionError::Missing(SessionField::Identity))));
        assert!(matches!(bind(Some("alice"), None), Err(SessionError::Missing(SessionField::Tenant))));
    }

    #[test]
    fn errors_name_the_field_and_the_reason() {
        let message = |identity, tenant| bind(identity, tenant).expect_err("invalid").to_string();
        assert_eq!(message(None, Some("acme")), "session identity is missing");
        assert_eq!(message(Some("alice"), None), "session tenant is missing");
        assert_eq!(message(Some(" alice"), Some("acme")), "session identity starts or ends with white space");
        assert_eq!(message(Some("alice"), Some("a\tb")), "session tenant contains a control or invisible character");
    }

    #[test]
    fn refuses_an_invalid_identity_or_tenant() {
        for bad in ["", "  ", "a\u{1b}[2J", &"x".repeat(257)] {
            assert!(
                matches!(
                    bind(Some(bad), Some("acme")),
                    Err(SessionError::Invalid { field: SessionField::Identity, .. })
                ),
                "identity {bad:?}"
            );
            assert!(
                matches!(
                    bind(Some("alice"), Some(bad)),
                    Err(SessionError::Invalid { field: SessionField::Tenant, .. })
                ),
                "tenant {bad:?}"
            );
        }
    }

    #[test]
    fn claims_are_kept_by_name_and_unacceptable_values_left_out() {
        let session = SessionContext::builder()
            .identity("a")
            .tenant("t")
            .claim("region", "eu")
            .claim("bad", "x\u{0}y")
            .claim("empty", "")
            .bind()
            .expect("valid");
        assert_eq!(session.claim("region"), Some("eu"));
        assert_eq!((session.claim("bad"), session.claim("empty"), session.claim("other")), (None, None, None));
    }

    #[test]
    fn expiry_is_exclusive() {
        let expiry = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000);
        let session = SessionContext::builder().identity("a").tenant("t").expires_at(expiry).bind().expect("valid");
        assert_eq!(session.expires_at(), Some(expiry));
        assert!(!session.is_expired_at(expiry - Duration::from_nanos(1)));
        assert!(session.is_expired_at(expiry));
        assert!(session.is_expired_at(expiry + Duration::from_secs(1)));
        let forever = bind(Some("a"), Some("t")).expect("valid");
        assert!(!forever.is_expired_at(SystemTime::UNIX_EPOCH + Duration::from_secs(u32::MAX.into())));
    }
}
