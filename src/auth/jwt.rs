//! JWT access tokens, verified as an OAuth 2.1 resource server does (RFC 9068's profile, with
//! the audience of RFC 8707): by `jsonwebtoken`, against keys of the identity provider's JWKS.
//!
//! For every token, in this order, and any failure is a rejection:
//!
//! 1. the header names an algorithm of the pinned allow-list and a `kid`;
//! 2. the JWKS holds a key with that `kid`, of that algorithm's family (and, if the key names
//!    an algorithm, that one);
//! 3. the signature verifies with that key;
//! 4. `iss` is the configured issuer; `aud` contains the configured audience; `exp` is present
//!    and not past; `nbf`, if present, is not in the future (both with the configured leeway);
//! 5. the identity claim (and the tenant claim, if configured) are strings a session accepts.
//!
//! The allow-list can hold only asymmetric algorithms: `none` does not exist as an
//! [`Algorithm`], and HMAC algorithms are refused when the settings are made, because a JWKS
//! is public and an HMAC "public key" is the secret that signs.
//!
//! A token that passed every check is remembered, by its SHA-256, in the key set that verified
//! it: the same token again (an agent sends one token with every request) skips steps 1 to 3
//! and 5, whose answers depend only on its bytes and the keys, while `exp` and `nbf` are
//! checked against the clock on every request as before. A new key set starts with nothing
//! remembered, so a key removed from the JWKS stops vouching for tokens at once. At most
//! [`REMEMBERED`] tokens are remembered; then the memory starts over.
//!
//! Keys are kept in memory. A token naming a `kid` the set lacks makes the set be read again
//! (from the file, or fetched from the URL), at most once per `refresh_min`; a read that fails
//! keeps the keys already held. With no keys at all, every token is rejected.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant, SystemTime};

use jsonwebtoken::jwk::{AlgorithmParameters, Jwk, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::{Map, Value};

use super::fetch::Fetcher;
use super::{Credential, Principal, Rejection};

/// Where the JWKS is read from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JwksSource {
    /// A file holding the JWKS document.
    File(PathBuf),
    /// An `https` URL serving the JWKS document.
    Url(url::Url),
}

/// How JWTs are verified.
#[derive(Debug, Clone)]
pub struct JwtSettings {
    /// The `iss` every token must carry.
    pub issuer: String,
    /// The value `aud` must contain: this server's resource URI.
    pub audience: String,
    /// The signing algorithms accepted (asymmetric only).
    pub algorithms: Vec<Algorithm>,
    /// Where the keys are.
    pub jwks: JwksSource,
    /// The claim naming the caller (`sub` by default).
    pub identity_claim: String,
    /// The claim naming the caller's tenant; when unset, every caller is in `default_tenant`.
    pub tenant_claim: Option<String>,
    /// The tenant of callers when no tenant claim is configured.
    pub default_tenant: String,
    /// The claim holding the scopes (`scope`: a space-separated string, or an array).
    pub scope_claim: String,
    /// Further claims to keep in the principal (those a declared tool binds a param to): a
    /// string, number or boolean claim is kept as its text; any other is left out.
    pub claims: Vec<String>,
    /// How far `exp` and `nbf` may be off.
    pub leeway: Duration,
    /// The least time between two reads of the JWKS caused by unknown `kid`s.
    pub refresh_min: Duration,
    /// How long a fetch of `jwks_url` may take.
    pub fetch_timeout: Duration,
    /// The CA certificates (PEM) `jwks_url`'s server is checked against, instead of the
    /// system's roots.
    pub jwks_ca_file: Option<PathBuf>,
}

/// Why the JWT settings cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    /// An algorithm of the allow-list is symmetric.
    #[error("algorithm {0:?} is an HMAC algorithm, which a JWKS cannot hold safely: use RS*, PS*, ES* or EdDSA")]
    Symmetric(Algorithm),
    /// The allow-list is empty.
    #[error("algorithms is empty")]
    NoAlgorithm,
    /// The JWKS cannot be read or holds no usable key.
    #[error("the JWKS: {0}")]
    Jwks(String),
}

/// The algorithm named `name` (`RS256`, `ES256`…), if it is one `jsonwebtoken` knows. `none`
/// is not one.
pub fn algorithm(name: &str) -> Option<Algorithm> {
    name.parse().ok()
}

/// A key of the set, ready to verify with.
struct Key {
    decoding: DecodingKey,
    /// The algorithm the key is pinned to by its JWK, if any.
    algorithm: Option<Algorithm>,
    family: Family,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Family {
    Rsa,
    Ec,
    Ed,
}

fn family(algorithm: Algorithm) -> Option<Family> {
    use Algorithm::*;
    match algorithm {
        RS256 | RS384 | RS512 | PS256 | PS384 | PS512 => Some(Family::Rsa),
        ES256 | ES384 => Some(Family::Ec),
        EdDSA => Some(Family::Ed),
        HS256 | HS384 | HS512 => None,
    }
}

/// The most tokens a key set remembers as verified.
pub const REMEMBERED: usize = 10_000;

/// The keys of one read of the JWKS, by `kid`, and the tokens they verified.
#[derive(Default)]
struct KeySet(HashMap<String, Key>, Mutex<HashMap<[u8; 32], Verified>>);

/// A token that passed every check: what it stands for, and its time bounds.
struct Verified {
    principal: Principal,
    exp: u64,
    nbf: Option<u64>,
}

impl KeySet {
    fn remembered(&self, digest: &[u8; 32]) -> Option<Verified> {
        let remembered = self.1.lock().ok()?;
        remembered.get(digest).map(|known| Verified { principal: known.principal.clone(), ..*known })
    }

    fn remember(&self, digest: [u8; 32], verified: Verified) {
        if let Ok(mut remembered) = self.1.lock() {
            if remembered.len() >= REMEMBERED {
                remembered.clear();
            }
            remembered.insert(digest, verified);
        }
    }

    /// The usable keys of a JWKS document: signing keys with a `kid`, of an asymmetric type.
    /// Keys of other types (HMAC's `oct` among them) and keys for encryption are left out.
    fn parse(document: &[u8]) -> Result<KeySet, String> {
        let set: JwksDocument =
            serde_json::from_slice(document).map_err(|error| format!("not a JWKS document ({error})"))?;
        let mut keys = HashMap::new();
        for value in set.keys {
            // A key this crate cannot read (an unknown kty or curve) is skipped, not fatal.
            let Ok(jwk) = serde_json::from_value::<Jwk>(value) else { continue };
            let Some(kid) = jwk.common.key_id.clone() else { continue };
            if matches!(jwk.common.public_key_use, Some(ref usage) if *usage != PublicKeyUse::Signature) {
                continue;
            }
            let family = match jwk.algorithm {
                AlgorithmParameters::RSA(_) => Family::Rsa,
                AlgorithmParameters::EllipticCurve(_) => Family::Ec,
                AlgorithmParameters::OctetKeyPair(_) => Family::Ed,
                AlgorithmParameters::OctetKey(_) => continue,
            };
            let algorithm = match jwk.common.key_algorithm {
                None => None,
                Some(named) => match named.to_string().parse::<Algorithm>() {
                    Ok(algorithm) if self::family(algorithm) == Some(family) => Some(algorithm),
                    // A key pinned to an algorithm it cannot verify (or an encryption one).
                    _ => continue,
                },
            };
            let Ok(decoding) = DecodingKey::from_jwk(&jwk) else { continue };
            keys.insert(kid, Key { decoding, algorithm, family });
        }
        if keys.is_empty() {
            return Err("it holds no signing key with a kid of type RSA, EC or OKP".into());
        }
        Ok(KeySet(keys, Mutex::default()))
    }
}

#[derive(serde::Deserialize)]
struct JwksDocument {
    keys: Vec<Value>,
}

/// Verifies JWTs (see the module documentation).
pub struct JwtVerifier {
    settings: JwtSettings,
    /// One validation per allowed algorithm, made once.
    validations: HashMap<Algorithm, Validation>,
    keys: RwLock<Arc<KeySet>>,
    fetcher: Option<Fetcher>,
    /// When the set was last read because of an unknown `kid`; one reader at a time.
    refreshed: tokio::sync::Mutex<Option<Instant>>,
}

impl std::fmt::Debug for JwtVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let keys = self.keys.read().map_or(0, |keys| keys.0.len());
        f.debug_struct("JwtVerifier").field("issuer", &self.settings.issuer).field("keys", &keys).finish()
    }
}

impl JwtVerifier {
    /// A verifier with these settings. A JWKS file is read now, and must hold a usable key; a
    /// JWKS URL is fetched on the first token (until it answers, every token is rejected).
    pub async fn new(settings: JwtSettings) -> Result<JwtVerifier, SettingsError> {
        if settings.algorithms.is_empty() {
            return Err(SettingsError::NoAlgorithm);
        }
        let mut validations = HashMap::new();
        for &algorithm in &settings.algorithms {
            if family(algorithm).is_none() {
                return Err(SettingsError::Symmetric(algorithm));
            }
            let mut validation = Validation::new(algorithm);
            validation.set_issuer(&[&settings.issuer]);
            validation.set_audience(&[&settings.audience]);
            validation.set_required_spec_claims(&["exp", "iss", "aud"]);
            validation.validate_exp = true;
            validation.validate_nbf = true;
            validation.validate_aud = true;
            validation.leeway = settings.leeway.as_secs();
            validations.insert(algorithm, validation);
        }
        let (keys, fetcher) = match &settings.jwks {
            JwksSource::File(path) => {
                let document = std::fs::read(path)
                    .map_err(|error| SettingsError::Jwks(format!("{} cannot be read: {error}", path.display())))?;
                let keys = KeySet::parse(&document)
                    .map_err(|error| SettingsError::Jwks(format!("{}: {error}", path.display())))?;
                (keys, None)
            }
            JwksSource::Url(url) => {
                let fetcher = Fetcher::new(settings.jwks_ca_file.as_deref()).map_err(SettingsError::Jwks)?;
                if url.scheme() != "https" {
                    return Err(SettingsError::Jwks("jwks_url must be an https URL".into()));
                }
                (KeySet::default(), Some(fetcher))
            }
        };
        let verifier = JwtVerifier {
            settings,
            validations,
            keys: RwLock::new(Arc::new(keys)),
            fetcher,
            refreshed: tokio::sync::Mutex::new(None),
        };
        if verifier.fetcher.is_some() {
            // A provider that does not answer yet does not stop the server: every token is
            // refused until the set is fetched.
            match verifier.read_set().await {
                Ok(set) => {
                    verifier.replace(set);
                }
                Err(error) => {
                    tracing::warn!(%error, "the JWKS could not be fetched: every token is refused until it is")
                }
            }
        }
        Ok(verifier)
    }

    /// The settings.
    pub fn settings(&self) -> &JwtSettings {
        &self.settings
    }

    /// Forgets the tokens remembered as verified: the next use of each is verified in full.
    pub fn forget_verified(&self) {
        if let Ok(mut remembered) = self.held().1.lock() {
            remembered.clear();
        }
    }

    /// How many keys are held.
    pub fn key_count(&self) -> usize {
        self.keys.read().map_or(0, |keys| keys.0.len())
    }

    /// Verifies one token (see the module documentation).
    pub async fn verify(&self, token: &str) -> Result<Principal, Rejection> {
        use sha2::Digest;
        let digest: [u8; 32] = sha2::Sha256::digest(token.as_bytes()).into();
        if let Some(verified) = self.held().remembered(&digest) {
            return self.in_time(verified);
        }
        let header = jsonwebtoken::decode_header(token).map_err(|_| Rejection::Invalid("the token's header"))?;
        let validation = self.validations.get(&header.alg).ok_or(Rejection::Invalid("the token's algorithm"))?;
        let kid = header.kid.as_deref().ok_or(Rejection::Invalid("the token names no key"))?;
        let keys = self.keys_with(kid).await;
        let key = keys.0.get(kid).ok_or(Rejection::Invalid("the token's key is not in the JWKS"))?;
        if family(header.alg) != Some(key.family) || key.algorithm.is_some_and(|pinned| pinned != header.alg) {
            return Err(Rejection::Invalid("the token's algorithm does not fit its key"));
        }
        let data = jsonwebtoken::decode::<Map<String, Value>>(token, &key.decoding, validation)
            .map_err(|error| Rejection::Invalid(reason(&error)))?;
        let principal = self.principal(&data.claims)?;
        // Only a whole-second exp is remembered (any other was accepted by jsonwebtoken's rules,
        // and is checked by them again next time).
        if let Some(exp) = data.claims.get("exp").and_then(Value::as_u64) {
            let nbf = match data.claims.get("nbf") {
                None => None,
                Some(nbf) => match nbf.as_u64() {
                    Some(nbf) => Some(nbf),
                    None => return Ok(principal),
                },
            };
            keys.remember(digest, Verified { principal: principal.clone(), exp, nbf });
        }
        Ok(principal)
    }

    /// A remembered token, if `exp` and `nbf` still hold now (with the leeway), as
    /// `jsonwebtoken` checks them.
    fn in_time(&self, verified: Verified) -> Result<Principal, Rejection> {
        let now = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).map_or(0, |since| since.as_secs());
        let leeway = self.settings.leeway.as_secs();
        if verified.exp < now.saturating_sub(leeway) {
            return Err(Rejection::Invalid("exp: the token has expired"));
        }
        if verified.nbf.is_some_and(|nbf| nbf > now.saturating_add(leeway)) {
            return Err(Rejection::Invalid("nbf: the token is not valid yet"));
        }
        Ok(verified.principal)
    }

    /// The key set, read again first if it lacks `kid` and was not read too recently.
    async fn keys_with(&self, kid: &str) -> Arc<KeySet> {
        let held = self.held();
        if held.0.contains_key(kid) {
            return held;
        }
        let mut refreshed = self.refreshed.lock().await;
        // Another request may have read the set while this one waited.
        let held = self.held();
        if held.0.contains_key(kid) || refreshed.is_some_and(|at| at.elapsed() < self.settings.refresh_min) {
            return held;
        }
        *refreshed = Some(Instant::now());
        match self.read_set().await {
            Ok(set) => {
                tracing::info!(keys = set.0.len(), "the JWKS was read again");
                self.replace(set)
            }
            Err(error) => {
                tracing::warn!(%error, "the JWKS could not be read again; the keys held are kept");
                held
            }
        }
    }

    fn replace(&self, set: KeySet) -> Arc<KeySet> {
        let set = Arc::new(set);
        if let Ok(mut keys) = self.keys.write() {
            *keys = Arc::clone(&set);
        }
        set
    }

    fn held(&self) -> Arc<KeySet> {
        self.keys.read().map_or_else(|_| Arc::new(KeySet::default()), |keys| Arc::clone(&keys))
    }

    async fn read_set(&self) -> Result<KeySet, String> {
        let document = match &self.settings.jwks {
            JwksSource::File(path) => std::fs::read(path).map_err(|error| error.to_string())?,
            JwksSource::Url(url) => match &self.fetcher {
                Some(fetcher) => fetcher.get(url, self.settings.fetch_timeout).await?,
                None => return Err("no fetcher for the JWKS URL".into()),
            },
        };
        KeySet::parse(&document)
    }

    fn principal(&self, claims: &Map<String, Value>) -> Result<Principal, Rejection> {
        let identity = claims
            .get(&self.settings.identity_claim)
            .and_then(Value::as_str)
            .ok_or(Rejection::Invalid("the token has no identity claim"))?;
        let tenant = match &self.settings.tenant_claim {
            Some(claim) => {
                claims.get(claim).and_then(Value::as_str).ok_or(Rejection::Invalid("the token has no tenant claim"))?
            }
            None => &self.settings.default_tenant,
        };
        let scopes = match claims.get(&self.settings.scope_claim) {
            None => Vec::new(),
            Some(Value::String(scopes)) => scopes.split(' ').filter(|s| !s.is_empty()).map(str::to_owned).collect(),
            Some(Value::Array(scopes)) => scopes.iter().filter_map(Value::as_str).map(str::to_owned).collect(),
            Some(_) => return Err(Rejection::Invalid("the token's scope claim")),
        };
        let kept = self
            .settings
            .claims
            .iter()
            .filter_map(|name| {
                let value = match claims.get(name)? {
                    Value::String(text) => text.clone(),
                    Value::Number(number) => number.to_string(),
                    Value::Bool(flag) => flag.to_string(),
                    _ => return None,
                };
                Some((name.clone(), value))
            })
            .collect();
        let expires_at =
            claims.get("exp").and_then(Value::as_u64).map(|exp| SystemTime::UNIX_EPOCH + Duration::from_secs(exp));
        Ok(Principal {
            identity: identity.to_owned(),
            tenant: tenant.to_owned(),
            scopes,
            claims: kept,
            expires_at,
            credential: Credential::Jwt,
        })
    }
}

/// The check a token failed, for the log (never for the client).
fn reason(error: &jsonwebtoken::errors::Error) -> &'static str {
    use jsonwebtoken::errors::ErrorKind::*;
    match error.kind() {
        InvalidSignature => "the signature",
        ExpiredSignature => "exp: the token has expired",
        ImmatureSignature => "nbf: the token is not valid yet",
        InvalidIssuer => "iss",
        InvalidAudience => "aud",
        MissingRequiredClaim(_) => "a required claim (exp, iss or aud) is missing",
        InvalidAlgorithm | InvalidAlgorithmName => "the algorithm",
        InvalidKeyFormat | InvalidRsaKey(_) | InvalidEcdsaKey => "the key",
        _ => "the token is malformed",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use jsonwebtoken::{EncodingKey, Header};

    const AUDIENCE: &str = "https://db.test/mcp";

    fn fixture(name: &str) -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/auth").join(name)
    }

    fn settings(jwks: JwksSource, refresh_min: Duration) -> JwtSettings {
        JwtSettings {
            issuer: "https://idp.test".into(),
            audience: AUDIENCE.into(),
            algorithms: vec![Algorithm::RS256, Algorithm::ES256],
            jwks,
            identity_claim: "sub".into(),
            tenant_claim: None,
            default_tenant: "default".into(),
            scope_claim: "scope".into(),
            claims: Vec::new(),
            leeway: Duration::from_secs(5),
            refresh_min,
            fetch_timeout: Duration::from_secs(2),
            jwks_ca_file: None,
        }
    }

    fn token(kid: &str, key: &str) -> String {
        let pem = std::fs::read(fixture(key)).expect("the test key");
        let exp = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).expect("after 1970").as_secs() + 600;
        let claims = serde_json::json!({"iss": "https://idp.test", "aud": [AUDIENCE, "other"], "sub": "alice",
            "scope": "a b", "exp": exp});
        let mut header = Header::new(Algorithm::RS256);
        header.kid = Some(kid.to_owned());
        jsonwebtoken::encode(&header, &claims, &EncodingKey::from_rsa_pem(&pem).expect("PEM")).expect("signed")
    }

    /// A JWKS file of the test's own, starting as `initial`.
    struct KeyFile(PathBuf);

    impl KeyFile {
        fn new(initial: &str) -> KeyFile {
            let mut random = [0u8; 6];
            getrandom::fill(&mut random).expect("random");
            let path = std::env::temp_dir().join(format!("sqlwarden-jwks-{}.json", hex::encode(random)));
            std::fs::copy(fixture(initial), &path).expect("copy");
            KeyFile(path)
        }

        fn holds(&self, document: &str) {
            std::fs::copy(fixture(document), &self.0).expect("copy");
        }
    }

    impl Drop for KeyFile {
        fn drop(&mut self) {
            let _ = std::fs::remove_file(&self.0);
        }
    }

    #[tokio::test]
    async fn an_unknown_kid_reads_the_keys_again_and_a_failed_read_keeps_them() {
        let file = KeyFile::new("jwks.json");
        let verifier =
            JwtVerifier::new(settings(JwksSource::File(file.0.clone()), Duration::ZERO)).await.expect("the JWKS");
        assert_eq!(verifier.key_count(), 2);
        let first = token("rsa-1", "rsa.pem");
        let principal = verifier.verify(&first).await.expect("valid");
        assert_eq!((principal.identity.as_str(), principal.tenant.as_str()), ("alice", "default"));
        assert_eq!(principal.scopes, ["a", "b"]);
        let rotated = token("rsa-2", "rsa-other.pem");
        assert!(verifier.verify(&rotated).await.is_err(), "not in the set yet");
        file.holds("jwks-other.json");
        verifier.verify(&rotated).await.expect("read again on the unknown kid");
        assert!(verifier.verify(&first).await.is_err(), "the rotated-out key is gone");
        std::fs::remove_file(&file.0).expect("remove");
        assert!(verifier.verify(&token("ec-9", "rsa.pem")).await.is_err());
        verifier.verify(&rotated).await.expect("a failed read keeps the keys held");
        std::fs::write(&file.0, b"{not json").expect("write");
        assert!(verifier.verify(&first).await.is_err());
        verifier.verify(&rotated).await.expect("an unreadable set keeps the keys held");
    }

    /// A token remembered as verified is still refused once its `exp` has passed.
    #[tokio::test]
    async fn a_remembered_token_expires_on_time() {
        let mut short = settings(JwksSource::File(fixture("jwks.json")), Duration::ZERO);
        short.leeway = Duration::ZERO;
        let verifier = JwtVerifier::new(short).await.expect("the JWKS");
        let pem = std::fs::read(fixture("rsa.pem")).expect("the test key");
        let now = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).expect("after 1970").as_secs();
        let claims = serde_json::json!({"iss": "https://idp.test", "aud": AUDIENCE, "sub": "alice", "exp": now + 1});
        let mut header = Header::new(Algorithm::RS256);
        header.kid = Some("rsa-1".into());
        let token =
            jsonwebtoken::encode(&header, &claims, &EncodingKey::from_rsa_pem(&pem).expect("PEM")).expect("signed");
        verifier.verify(&token).await.expect("valid");
        verifier.verify(&token).await.expect("remembered, still valid");
        tokio::time::sleep(Duration::from_millis(2100)).await;
        assert_eq!(verifier.verify(&token).await, Err(Rejection::Invalid("exp: the token has expired")));
    }

    /// Seconds since 1970 now.
    fn now() -> u64 {
        SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).expect("after 1970").as_secs()
    }

    /// A token with this header algorithm and `kid`, signed with the test key `key`.
    fn signed(algorithm: Algorithm, kid: &str, key: &str, claims: &Value) -> String {
        let pem = std::fs::read(fixture(key)).expect("the test key");
        let encoding = match family(algorithm) {
            Some(Family::Ec) => EncodingKey::from_ec_pem(&pem).expect("PEM"),
            _ => EncodingKey::from_rsa_pem(&pem).expect("PEM"),
        };
        let mut header = Header::new(algorithm);
        header.kid = Some(kid.to_owned());
        jsonwebtoken::encode(&header, claims, &encoding).expect("signed")
    }

    fn valid_claims() -> Value {
        serde_json::json!({"iss": "https://idp.test", "aud": AUDIENCE, "sub": "alice", "exp": now() + 600})
    }

    /// A remembered token is held to `exp` and `nbf` exactly as `jsonwebtoken` holds a new one:
    /// expired once `exp < now - leeway`, not valid yet while `nbf > now + leeway`.
    #[tokio::test]
    async fn a_remembered_token_is_held_to_exp_and_nbf_with_the_leeway() {
        let verifier =
            JwtVerifier::new(settings(JwksSource::File(fixture("jwks.json")), Duration::ZERO)).await.expect("the JWKS");
        let principal = verifier.verify(&token("rsa-1", "rsa.pem")).await.expect("valid");
        let leeway = verifier.settings().leeway.as_secs();
        let check = |exp: i64, nbf: Option<i64>| loop {
            // Within one second of the clock, so that `now` is the verifier's too.
            let at = now();
            let from_now = |offset: i64| at.checked_add_signed(offset).expect("a time after 1970");
            let verified = Verified { principal: principal.clone(), exp: from_now(exp), nbf: nbf.map(from_now) };
            let outcome = verifier.in_time(verified).map(|_| ());
            if now() == at {
                break outcome;
            }
        };
        let (expired, early) = (
            Err(Rejection::Invalid("exp: the token has expired")),
            Err(Rejection::Invalid("nbf: the token is not valid yet")),
        );
        let leeway = i64::try_from(leeway).expect("a small leeway");
        assert_eq!(check(600, None), Ok(()));
        assert_eq!(check(-leeway, None), Ok(()), "exp within the leeway");
        assert_eq!(check(-leeway - 1, None), expired);
        assert_eq!(check(-3600, None), expired);
        assert_eq!(check(600, Some(-3600)), Ok(()));
        assert_eq!(check(600, Some(leeway)), Ok(()), "nbf within the leeway");
        assert_eq!(check(600, Some(leeway + 1)), early);
        assert_eq!(check(600, Some(3600)), early);
    }

    /// A JWK pinned to an algorithm of another family than its key is left out of the set, and
    /// a token whose header names an algorithm its key is not pinned to is refused, even when
    /// its signature holds for that algorithm.
    #[tokio::test]
    async fn a_key_and_a_token_must_agree_on_the_algorithm() {
        let misfit = std::fs::read_to_string(fixture("jwks.json")).expect("JWKS").replacen("\"RS256\"", "\"ES256\"", 1);
        let set = KeySet::parse(misfit.as_bytes()).expect("the EC key is kept");
        assert!(
            !set.0.contains_key("rsa-1") && set.0.contains_key("ec-1"),
            "only the RSA key pinned to ES256 is left out"
        );

        let mut all = settings(JwksSource::File(fixture("jwks.json")), Duration::ZERO);
        all.algorithms = vec![Algorithm::RS256, Algorithm::PS256, Algorithm::ES256];
        let verifier = JwtVerifier::new(all).await.expect("the JWKS");
        let claims = valid_claims();
        verifier.verify(&signed(Algorithm::RS256, "rsa-1", "rsa.pem", &claims)).await.expect("RS256 by rsa-1");
        verifier.verify(&signed(Algorithm::ES256, "ec-1", "ec.pem", &claims)).await.expect("ES256 by ec-1");
        let misfit = Err(Rejection::Invalid("the token's algorithm does not fit its key"));
        // rsa-1 signs PS256 as well as RS256, but its JWK pins it to RS256.
        assert_eq!(verifier.verify(&signed(Algorithm::PS256, "rsa-1", "rsa.pem", &claims)).await.map(|_| ()), misfit);
        assert_eq!(verifier.verify(&signed(Algorithm::ES256, "rsa-1", "ec.pem", &claims)).await.map(|_| ()), misfit);
        assert_eq!(verifier.verify(&signed(Algorithm::RS256, "ec-1", "rsa.pem", &claims)).await.map(|_| ()), misfit);
    }

    /// Each failed check is named, for the log: the signature, `iss`, `aud`, `exp`, `nbf`, a
    /// missing claim.
    #[tokio::test]
    async fn each_refusal_names_the_check_that_failed() {
        let verifier =
            JwtVerifier::new(settings(JwksSource::File(fixture("jwks.json")), Duration::ZERO)).await.expect("the JWKS");
        let with = |change: &dyn Fn(&mut Value)| {
            let mut claims = valid_claims();
            change(&mut claims);
            signed(Algorithm::RS256, "rsa-1", "rsa.pem", &claims)
        };
        let forged = signed(Algorithm::RS256, "rsa-1", "rsa-other.pem", &valid_claims());
        let cases = [
            (forged, "the signature"),
            (with(&|c| c["iss"] = "https://other.test".into()), "iss"),
            (with(&|c| c["aud"] = "https://other.test/mcp".into()), "aud"),
            (with(&|c| c["exp"] = (now() - 3600).into()), "exp: the token has expired"),
            (with(&|c| c["nbf"] = (now() + 3600).into()), "nbf: the token is not valid yet"),
            (
                with(&|c| drop(c.as_object_mut().map(|c| c.remove("exp")))),
                "a required claim (exp, iss or aud) is missing",
            ),
            ("not.a.token".to_owned(), "the token's header"),
        ];
        for (token, named) in cases {
            assert_eq!(verifier.verify(&token).await.map(|_| ()), Err(Rejection::Invalid(named)), "{named}");
        }
        use jsonwebtoken::errors::ErrorKind;
        assert_eq!(reason(&ErrorKind::InvalidAlgorithm.into()), "the algorithm");
        assert_eq!(reason(&ErrorKind::InvalidEcdsaKey.into()), "the key");
        assert_eq!(reason(&ErrorKind::InvalidToken.into()), "the token is malformed");
    }

    /// The claims declared tools bind params to are kept as text (strings, numbers, booleans;
    /// any other kind is as if absent), and `exp` becomes the principal's expiry.
    #[tokio::test]
    async fn the_principal_keeps_the_claims_asked_for_and_the_expiry() {
        let mut asking = settings(JwksSource::File(fixture("jwks.json")), Duration::ZERO);
        asking.claims = ["team", "level", "admin", "groups", "absent"].map(str::to_owned).to_vec();
        let verifier = JwtVerifier::new(asking).await.expect("the JWKS");
        let mut claims = valid_claims();
        claims["team"] = "blue".into();
        claims["level"] = 3.into();
        claims["admin"] = true.into();
        claims["groups"] = serde_json::json!(["a"]);
        let exp = claims["exp"].as_u64().expect("exp");
        let principal = verifier.verify(&signed(Algorithm::RS256, "rsa-1", "rsa.pem", &claims)).await.expect("valid");
        let kept: Vec<(&str, &str)> = principal.claims.iter().map(|(n, v)| (n.as_str(), v.as_str())).collect();
        assert_eq!(kept, [("team", "blue"), ("level", "3"), ("admin", "true")]);
        assert_eq!(principal.expires_at, Some(SystemTime::UNIX_EPOCH + Duration::from_secs(exp)));
        assert_eq!(principal.credential, Credential::Jwt);
    }

    #[tokio::test]
    async fn the_keys_are_read_again_at_most_once_per_interval() {
        let file = KeyFile::new("jwks.json");
        let verifier = JwtVerifier::new(settings(JwksSource::File(file.0.clone()), Duration::from_secs(3600)))
            .await
            .expect("the JWKS");
        let rotated = token("rsa-2", "rsa-other.pem");
        assert!(verifier.verify(&rotated).await.is_err(), "unknown: the set is read again, unchanged");
        file.holds("jwks-other.json");
        assert!(verifier.verify(&rotated).await.is_err(), "not read again within the interval");
        verifier.verify(&token("rsa-1", "rsa.pem")).await.expect("the held keys still verify");
    }

    #[tokio::test]
    async fn with_no_keys_every_token_is_refused() {
        let unreachable = url::Url::parse("https://127.0.0.1:1/jwks.json").expect("URL");
        let verifier =
            JwtVerifier::new(settings(JwksSource::Url(unreachable), Duration::ZERO)).await.expect("starts anyway");
        assert_eq!(verifier.key_count(), 0);
        assert!(verifier.verify(&token("rsa-1", "rsa.pem")).await.is_err());
        let plain = url::Url::parse("http://127.0.0.1:1/jwks.json").expect("URL");
        assert!(JwtVerifier::new(settings(JwksSource::Url(plain), Duration::ZERO)).await.is_err(), "https only");
    }

    #[tokio::test]
    async fn unsafe_settings_and_sets_are_refused() {
        let file = JwksSource::File(fixture("jwks.json"));
        let mut hmac = settings(file.clone(), Duration::ZERO);
        hmac.algorithms = vec![Algorithm::RS256, Algorithm::HS256];
        assert!(matches!(JwtVerifier::new(hmac).await, Err(SettingsError::Symmetric(Algorithm::HS256))));
        let mut none = settings(file, Duration::ZERO);
        none.algorithms.clear();
        assert!(matches!(JwtVerifier::new(none).await, Err(SettingsError::NoAlgorithm)));
        assert!(algorithm("none").is_none());
        let only_hmac = br#"{"keys": [{"kty": "oct", "kid": "h", "k": "c2VjcmV0"}]}"#;
        assert!(KeySet::parse(only_hmac).is_err(), "an HMAC key is never used");
        let encryption = std::fs::read_to_string(fixture("jwks.json")).expect("JWKS").replace("\"sig\"", "\"enc\"");
        assert!(KeySet::parse(encryption.as_bytes()).is_err(), "encryption keys are not signing keys");
        let no_kid = std::fs::read_to_string(fixture("jwks.json")).expect("JWKS").replace("\"kid\"", "\"x-kid\"");
        assert!(KeySet::parse(no_kid.as_bytes()).is_err(), "a key without a kid cannot be chosen");
    }

    /// Serves `document` over https (with the test certificate for 127.0.0.1) to every
    /// connection; the URL of it.
    async fn serve_over_tls(document: Vec<u8>) -> url::Url {
        use rustls::pki_types::pem::PemObject;
        use rustls::pki_types::{CertificateDer, PrivateKeyDer};
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let certificates: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(fixture("idp.pem"))
            .expect("the certificate")
            .collect::<Result<_, _>>()
            .expect("PEM");
        let key = PrivateKeyDer::from_pem_file(fixture("idp.key")).expect("the key");
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("versions")
            .with_no_client_auth()
            .with_single_cert(certificates, key)
            .expect("a server config");
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = listener.local_addr().expect("address").port();
        tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let (acceptor, document) = (acceptor.clone(), document.clone());
                tokio::spawn(async move {
                    let Ok(mut tls) = acceptor.accept(tcp).await else { return };
                    let mut request = Vec::new();
                    let mut buffer = [0u8; 1024];
                    while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                        match tls.read(&mut buffer).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => request.extend_from_slice(&buffer[..n]),
                        }
                    }
                    let head = format!(
                        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
                        document.len()
                    );
                    let _ = tls.write_all(head.as_bytes()).await;
                    let _ = tls.write_all(&document).await;
                    let _ = tls.shutdown().await;
                });
            }
        });
        url::Url::parse(&format!("https://127.0.0.1:{port}/jwks.json")).expect("URL")
    }

    #[tokio::test]
    async fn a_jwks_url_is_fetched_over_https_against_the_given_ca() {
        let url = serve_over_tls(std::fs::read(fixture("jwks.json")).expect("JWKS")).await;
        let mut trusted = settings(JwksSource::Url(url.clone()), Duration::ZERO);
        trusted.jwks_ca_file = Some(fixture("ca.pem"));
        let verifier = JwtVerifier::new(trusted).await.expect("starts");
        assert_eq!(verifier.key_count(), 2, "fetched at startup");
        verifier.verify(&token("rsa-1", "rsa.pem")).await.expect("valid");
        // The system's roots do not know the test CA: nothing is fetched, every token refused.
        let untrusted = JwtVerifier::new(settings(JwksSource::Url(url), Duration::ZERO)).await.expect("starts");
        assert_eq!(untrusted.key_count(), 0);
        assert!(untrusted.verify(&token("rsa-1", "rsa.pem")).await.is_err());
    }
}
