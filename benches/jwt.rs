//! What verifying one bearer token costs the HTTP transport, with the key already held: an
//! RS256 and an ES256 JWT against the test JWKS (tests/fixtures/auth), the first time (every
//! check, the signature included) and again (the token remembered as verified: `exp` and `nbf`
//! against the clock), and a static token.
//!
//! Run with `cargo bench --bench jwt`.

use std::hint::black_box;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use criterion::{Criterion, criterion_group, criterion_main};
use jsonwebtoken::{Algorithm, EncodingKey, Header, encode};
use sqlwarden::auth::{JwksSource, JwtSettings, JwtVerifier, StaticToken, StaticTokens, Verifier};

const AUDIENCE: &str = "https://db.example.com/mcp";
const ISSUER: &str = "https://idp.example.com";

fn fixture(name: &str) -> String {
    format!("{}/tests/fixtures/auth/{name}", env!("CARGO_MANIFEST_DIR"))
}

fn token(algorithm: Algorithm, kid: &str, key: &str) -> String {
    let pem = std::fs::read(fixture(key)).expect("the test key");
    let key = match algorithm {
        Algorithm::ES256 => EncodingKey::from_ec_pem(&pem),
        _ => EncodingKey::from_rsa_pem(&pem),
    }
    .expect("a PEM key");
    let exp = SystemTime::now().duration_since(UNIX_EPOCH).expect("after 1970").as_secs() + 3600;
    let claims = serde_json::json!({"iss": ISSUER, "aud": AUDIENCE, "sub": "bench", "tenant": "acme", "scope": "sql.read", "exp": exp});
    let mut header = Header::new(algorithm);
    header.kid = Some(kid.to_owned());
    encode(&header, &claims, &key).expect("signed")
}

fn jwt(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread().build().expect("a runtime");
    let settings = JwtSettings {
        issuer: ISSUER.into(),
        audience: AUDIENCE.into(),
        algorithms: vec![Algorithm::RS256, Algorithm::ES256],
        jwks: JwksSource::File(fixture("jwks.json").into()),
        identity_claim: "sub".into(),
        tenant_claim: Some("tenant".into()),
        default_tenant: "default".into(),
        scope_claim: "scope".into(),
        claims: Vec::new(),
        leeway: Duration::from_secs(60),
        refresh_min: Duration::from_secs(60),
        fetch_timeout: Duration::from_secs(5),
        jwks_ca_file: None,
    };
    let jwt = runtime.block_on(JwtVerifier::new(settings)).expect("the JWKS");
    let hash = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(b"a-static-machine-token"));
    let tokens = StaticTokens::new(vec![StaticToken::new(&hash, "etl-bot", "acme", Vec::new()).expect("a hash")]);
    let rs256 = token(Algorithm::RS256, "rsa-1", "rsa.pem");
    let es256 = token(Algorithm::ES256, "ec-1", "ec.pem");
    for (name, token) in [("jwt/rs256_first", &rs256), ("jwt/es256_first", &es256)] {
        c.bench_function(name, |b| {
            b.iter_batched(
                || jwt.forget_verified(),
                |()| runtime.block_on(jwt.verify(black_box(token))).expect("accepted"),
                criterion::BatchSize::PerIteration,
            )
        });
    }
    let verifier = Verifier::new(Some(jwt), tokens);
    for (name, token) in [
        ("jwt/rs256_again", rs256),
        ("jwt/es256_again", es256),
        ("jwt/static_token", "a-static-machine-token".to_owned()),
    ] {
        let header = format!("Bearer {token}");
        runtime.block_on(verifier.verify_header(Some(header.as_bytes()))).expect("accepted");
        c.bench_function(name, |b| {
            b.iter(|| runtime.block_on(verifier.verify_header(Some(black_box(header.as_bytes())))).expect("accepted"))
        });
    }
}

criterion_group!(benches, jwt);
criterion_main!(benches);
