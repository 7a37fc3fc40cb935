//! Capabilities: explicit grants to invoke a tool. Default deny, no wildcard.

use std::fmt;
use std::time::SystemTime;

use thiserror::Error;

use super::principal::{self, PrincipalError};
use super::tool_name::{ToolName, ToolNameError};

/// What an authorizer is asked.
#[derive(Debug, Clone, Copy)]
pub struct AuthzRequest<'a> {
    /// The caller's identity.
    pub identity: &'a str,
    /// The caller's tenant.
    pub tenant: &'a str,
    /// The tool to invoke.
    pub tool: &'a str,
    /// The scopes the caller's credential carries.
    pub scopes: &'a [Box<str>],
    /// The time of the decision.
    pub now: SystemTime,
}

/// An authorizer's answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// The call may proceed.
    Allow,
    /// The call is refused.
    Deny,
}

/// Decides whether a caller may invoke a tool.
///
/// The boundary treats an `Err`, and a panic, exactly like [`Decision::Deny`].
pub trait Authorizer: Send + Sync {
    /// Decides one request.
    fn authorize(&self, request: &AuthzRequest<'_>) -> Result<Decision, Box<dyn std::error::Error + Send + Sync>>;
}

impl<T: Authorizer + ?Sized> Authorizer for std::sync::Arc<T> {
    fn authorize(&self, request: &AuthzRequest<'_>) -> Result<Decision, Box<dyn std::error::Error + Send + Sync>> {
        (**self).authorize(request)
    }
}

/// A grant: callers who match it may invoke this one tool, optionally until a time.
///
/// A grant matches on the identity, the tenant and a scope the caller's credential carries,
/// each only if the grant names it: [`Grant::new`] names an identity and a tenant;
/// [`Grant::to_anyone`] names none of them, and so matches every caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    identity: Option<Box<str>>,
    tenant: Option<Box<str>>,
    scope: Option<Box<str>>,
    tool: ToolName,
    expires_at: Option<SystemTime>,
}

/// Why a grant could not be built.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum GrantError {
    /// The identity is not a valid identity.
    #[error("grant identity {0}")]
    Identity(PrincipalError),
    /// The tenant is not a valid tenant.
    #[error("grant tenant {0}")]
    Tenant(PrincipalError),
    /// The tool is not a valid tool name (`*` included: there is no wildcard).
    #[error("grant {0}")]
    Tool(ToolNameError),
    /// The scope is empty or holds white space or a control character.
    #[error("grant scope must be one scope: not empty, without white space or control characters")]
    Scope,
}

impl Grant {
    /// A grant with no expiry. Identity and tenant follow the same rules as a session's, and
    /// the tool must be a valid tool name, so `*` is refused.
    pub fn new(identity: &str, tenant: &str, tool: &str) -> Result<Self, GrantError> {
        Grant::to_anyone(tool)?.identity(identity)?.tenant(tenant)
    }

    /// A grant of `tool` to every caller, until [`identity`](Self::identity),
    /// [`tenant`](Self::tenant) or [`scope`](Self::scope) narrow it.
    pub fn to_anyone(tool: &str) -> Result<Self, GrantError> {
        let tool = ToolName::new(tool).map_err(GrantError::Tool)?;
        Ok(Grant { identity: None, tenant: None, scope: None, tool, expires_at: None })
    }

    /// Narrows the grant to callers with this identity.
    pub fn identity(mut self, identity: &str) -> Result<Self, GrantError> {
        principal::check(identity).map_err(GrantError::Identity)?;
        self.identity = Some(identity.into());
        Ok(self)
    }

    /// Narrows the grant to callers in this tenant.
    pub fn tenant(mut self, tenant: &str) -> Result<Self, GrantError> {
        principal::check(tenant).map_err(GrantError::Tenant)?;
        self.tenant = Some(tenant.into());
        Ok(self)
    }

    /// Narrows the grant to callers whose credential carries this scope.
    pub fn scope(mut self, scope: &str) -> Result<Self, GrantError> {
        if scope.is_empty() || scope.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(GrantError::Scope);
        }
        self.scope = Some(scope.into());
        Ok(self)
    }

    /// Makes the grant expire at `at`.
    #[must_use]
    pub fn expires_at(mut self, at: SystemTime) -> Self {
        self.expires_at = Some(at);
        self
    }

    /// The tool this grant allows.
    pub fn tool(&self) -> &ToolName {
        &self.tool
    }

    /// Whether this grant allows `request`: the tool matches exactly; the identity and the
    /// tenant match exactly if the grant names them; the request carries the scope if the grant
    /// names one; and, if the grant expires, `now` is strictly before the expiry.
    pub fn allows(&self, request: &AuthzRequest<'_>) -> bool {
        self.tool.as_str() == request.tool
            && self.identity.as_deref().is_none_or(|identity| identity == request.identity)
            && self.tenant.as_deref().is_none_or(|tenant| tenant == request.tenant)
            && self.scope.as_deref().is_none_or(|scope| request.scopes.iter().any(|held| **held == *scope))
            && self.expires_at.is_none_or(|expiry| request.now < expiry)
    }
}

/// A set of grants; the reference [`Authorizer`]. Empty means nobody may call anything.
#[derive(Default, Clone)]
pub struct Capabilities {
    grants: Vec<Grant>,
}

impl Capabilities {
    /// No grants: every call is denied.
    pub fn none() -> Self {
        Self::default()
    }

    /// These grants and no others.
    pub fn from_grants(grants: impl IntoIterator<Item = Grant>) -> Self {
        Capabilities { grants: grants.into_iter().collect() }
    }

    /// The grants held.
    pub fn grants(&self) -> &[Grant] {
        &self.grants
    }
}

impl Authorizer for Capabilities {
    fn authorize(&self, request: &AuthzRequest<'_>) -> Result<Decision, Box<dyn std::error::Error + Send + Sync>> {
        Ok(if self.grants.iter().any(|grant| grant.allows(request)) { Decision::Allow } else { Decision::Deny })
    }
}

impl fmt::Debug for Capabilities {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Capabilities").field("grants", &self.grants.len()).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    const T0: SystemTime = SystemTime::UNIX_EPOCH;

    fn request<'a>(identity: &'a str, tenant: &'a str, tool: &'a str) -> AuthzRequest<'a> {
        AuthzRequest { identity, tenant, tool, scopes: &[], now: T0 + Duration::from_secs(100) }
    }

    fn decide(caps: &Capabilities, req: &AuthzRequest<'_>) -> Decision {
        caps.authorize(req).expect("capabilities never fail")
    }

    #[test]
    fn default_is_deny() {
        assert_eq!(decide(&Capabilities::none(), &request("alice", "acme", "query_read")), Decision::Deny);
    }

    #[test]
    fn a_grant_matches_identity_tenant_and_tool_exactly() {
        let caps = Capabilities::from_grants([Grant::new("alice", "acme", "query_read").expect("valid")]);
        assert_eq!(caps.grants().len(), 1);
        assert_eq!(caps.grants()[0].tool().as_str(), "query_read");
        assert_eq!(decide(&caps, &request("alice", "acme", "query_read")), Decision::Allow);
        assert_eq!(decide(&caps, &request("bob", "acme", "query_read")), Decision::Deny);
        assert_eq!(decide(&caps, &request("alice", "globex", "query_read")), Decision::Deny);
        assert_eq!(decide(&caps, &request("alice", "acme", "list_tables")), Decision::Deny);
        assert_eq!(decide(&caps, &request("Alice", "acme", "query_read")), Decision::Deny);
        assert_eq!(decide(&caps, &request("alice", "acme", "query_read_all")), Decision::Deny);
    }

    #[test]
    fn there_is_no_wildcard() {
        assert!(matches!(Grant::new("alice", "acme", "*"), Err(GrantError::Tool(_))));
        assert!(Grant::new("*", "acme", "query_read").is_ok(), "a literal '*' identity is just a name");
        let caps = Capabilities::from_grants([Grant::new("*", "*", "query_read").expect("valid")]);
        assert_eq!(decide(&caps, &request("alice", "acme", "query_read")), Decision::Deny);
    }

    #[test]
    fn grant_fields_are_validated() {
        assert!(matches!(Grant::new("", "acme", "t"), Err(GrantError::Identity(_))));
        assert!(matches!(Grant::new("alice", " ", "t"), Err(GrantError::Tenant(_))));
    }

    #[test]
    fn expiry_is_exclusive() {
        let expiry = T0 + Duration::from_secs(100);
        let caps = Capabilities::from_grants([Grant::new("alice", "acme", "t").expect("valid").expires_at(expiry)]);
        let at = |now| AuthzRequest { now, ..request("alice", "acme", "t") };
        assert_eq!(decide(&caps, &at(expiry - Duration::from_nanos(1))), Decision::Allow);
        assert_eq!(decide(&caps, &at(expiry)), Decision::Deny);
        assert_eq!(decide(&caps, &at(expiry + Duration::from_secs(1))), Decision::Deny);
    }

    #[test]
    fn an_expired_grant_does_not_hide_a_live_one() {
        let caps = Capabilities::from_grants([
            Grant::new("alice", "acme", "t").expect("valid").expires_at(T0),
            Grant::new("alice", "acme", "t").expect("valid"),
        ]);
        assert_eq!(decide(&caps, &request("alice", "acme", "t")), Decision::Allow);
    }

    #[test]
    fn a_grant_matches_only_on_what_it_names() {
        let scoped = |scopes: &'static [Box<str>]| AuthzRequest { scopes, ..request("alice", "acme", "t") };
        let read: &'static [Box<str>] = Box::leak(Box::new(["read".into(), "other".into()]));
        let anyone = Capabilities::from_grants([Grant::to_anyone("t").expect("valid")]);
        assert_eq!(decide(&anyone, &request("bob", "globex", "t")), Decision::Allow);
        assert_eq!(decide(&anyone, &request("bob", "globex", "u")), Decision::Deny, "the tool always matters");
        let tenant = Capabilities::from_grants([Grant::to_anyone("t").and_then(|g| g.tenant("acme")).expect("valid")]);
        assert_eq!(decide(&tenant, &request("bob", "acme", "t")), Decision::Allow);
        assert_eq!(decide(&tenant, &request("bob", "globex", "t")), Decision::Deny);
        let identity =
            Capabilities::from_grants([Grant::to_anyone("t").and_then(|g| g.identity("bob")).expect("valid")]);
        assert_eq!(decide(&identity, &request("bob", "globex", "t")), Decision::Allow);
        assert_eq!(decide(&identity, &request("alice", "globex", "t")), Decision::Deny);
        let scope = Capabilities::from_grants([Grant::to_anyone("t").and_then(|g| g.scope("read")).expect("valid")]);
        assert_eq!(decide(&scope, &request("alice", "acme", "t")), Decision::Deny, "no scope held");
        assert_eq!(decide(&scope, &scoped(read)), Decision::Allow);
        let other = Capabilities::from_grants([Grant::to_anyone("t").and_then(|g| g.scope("rea")).expect("valid")]);
        assert_eq!(decide(&other, &scoped(read)), Decision::Deny, "a scope matches whole");
        for refused in ["", "a b", "a\tb", "x\u{7}"] {
            assert!(
                matches!(Grant::to_anyone("t").and_then(|g| g.scope(refused)), Err(GrantError::Scope)),
                "{refused:?}"
            );
        }
    }
}
