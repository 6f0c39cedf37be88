//! JWT public keys: RS256, ES256 and EdDSA keys from PEM files and a JWKS
//! file, each chosen by the token's `kid` and pinned to its one algorithm;
//! every way around that (alg `none`, key confusion, unknown kid, another
//! algorithm, tampering, time and audience claims) refused UNAUTHENTICATED
//! with its reason and without echoing the token; and JWKS rotation picked
//! up by the running server.
//!
//! Keys are the committed fixtures in `tests/fixtures/jwt` (test-only).

use std::{
    path::{Path, PathBuf},
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use base64::{Engine as _, engine::general_purpose::URL_SAFE_NO_PAD};
use deskd::{
    auth::Claims,
    config::{JwtKeyAlgorithm, JwtKeyConfig},
    proto::tickets::v1 as pb,
    users::model::Role,
};
use hmac::{Hmac, Mac};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::json;
use sha2::Sha256;
use tonic::{Code, Status};
use tonic_types::StatusExt as _;

use crate::helpers::*;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/jwt")
        .join(name)
}

fn pem_key(kid: &str, algorithm: JwtKeyAlgorithm, file: &str) -> JwtKeyConfig {
    JwtKeyConfig {
        kid: kid.into(),
        algorithm,
        pem_file: fixture(file),
    }
}

/// rs256-a, es256-a and ed25519-a, as PEM files.
fn pem_keys() -> Vec<JwtKeyConfig> {
    vec![
        pem_key("rs256-a", JwtKeyAlgorithm::RS256, "rs256_a_public.pem"),
        pem_key("es256-a", JwtKeyAlgorithm::ES256, "es256_a_public.pem"),
        pem_key("ed25519-a", JwtKeyAlgorithm::EdDSA, "ed25519_a_public.pem"),
    ]
}

/// The public JWK of fixture `name` (it carries kid, alg and use).
fn jwk(name: &str) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(fixture(&format!("{name}.jwk.json"))).expect("jwk fixture"))
        .expect("jwk json")
}

fn jwks(keys: &[serde_json::Value]) -> Vec<u8> {
    serde_json::to_vec_pretty(&json!({ "keys": keys })).expect("jwks json")
}

/// Replaces `path` the way deployments do: write a sibling, rename over.
fn write_atomically(path: &Path, bytes: &[u8]) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, bytes).expect("write jwks");
    std::fs::rename(&tmp, path).expect("rename jwks");
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after the epoch")
        .as_secs()
}

/// Valid claims for `caller`: iss and aud "deskd", five minutes to live.
fn claims_for(caller: &Caller) -> Claims {
    let now = now();
    Claims {
        sub: caller.user.to_string(),
        tid: caller.tenant.to_string(),
        iss: "deskd".into(),
        aud: "deskd".into(),
        exp: now + 300,
        nbf: None,
        iat: now,
    }
}

/// Signs `claims` as `alg` with fixture `key`'s test-only private key
/// (`rs256_a`, `es256_b`, `ed25519_a`, …), naming `kid` in the header.
fn sign(alg: Algorithm, kid: Option<&str>, key: &str, claims: &Claims) -> String {
    let private = std::fs::read(fixture(&format!("{key}_private_TEST_ONLY.pem"))).expect("private key fixture");
    let encoding = match alg {
        Algorithm::RS256 | Algorithm::RS384 | Algorithm::RS512 => EncodingKey::from_rsa_pem(&private),
        Algorithm::ES256 => EncodingKey::from_ec_pem(&private),
        Algorithm::EdDSA => EncodingKey::from_ed_pem(&private),
        other => panic!("no fixture signs {other:?}"),
    }
    .expect("encoding key");
    let mut header = Header::new(alg);
    header.kid = kid.map(str::to_string);
    jsonwebtoken::encode(&header, claims, &encoding).expect("sign")
}

fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// A compact JWS built by hand; `sign` maps the signing input to the raw
/// signature (empty for an unsigned token).
fn hand_token(header: &serde_json::Value, claims: &Claims, sign: impl FnOnce(&[u8]) -> Vec<u8>) -> String {
    let claims = serde_json::to_string(claims).expect("claims json");
    let input = format!("{}.{}", b64(header.to_string().as_bytes()), b64(claims.as_bytes()));
    let sig = sign(input.as_bytes());
    format!("{input}.{}", b64(&sig))
}

fn hmac_sha256(key: &[u8], msg: &[u8]) -> Vec<u8> {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("hmac key");
    mac.update(msg);
    mac.finalize().into_bytes().to_vec()
}

/// Replaces the payload of `token` after signing, keeping header and signature.
fn with_payload(token: &str, edit: impl FnOnce(&mut serde_json::Value)) -> String {
    let parts: Vec<&str> = token.split('.').collect();
    assert_eq!(parts.len(), 3, "compact JWS");
    let mut claims: serde_json::Value =
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[1]).expect("payload b64")).expect("payload json");
    edit(&mut claims);
    format!("{}.{}.{}", parts[0], b64(claims.to_string().as_bytes()), parts[2])
}

async fn list_as(app: &TestApp, token: &str) -> Result<pb::ListTicketsResponse, Status> {
    app.tickets()
        .list_tickets(authed(token, pb::ListTicketsRequest::default()))
        .await
        .map(|r| r.into_inner())
}

/// Sends `token` and asserts UNAUTHENTICATED with ErrorInfo reason
/// `expected` (domain deskd), with neither the token nor any of its
/// segments in the message, details or metadata.
async fn assert_refused(app: &TestApp, token: &str, expected: &str) {
    assert_refused_as(app, token, expected, "").await;
}

/// `assert_refused`, naming the case `what` when it fails.
async fn assert_refused_as(app: &TestApp, token: &str, expected: &str, what: &str) {
    let status = list_as(app, token)
        .await
        .expect_err(&format!("{what}: the token must be refused with {expected}"));
    assert_eq!(status.code(), Code::Unauthenticated, "{what}: {status:?}");
    assert_eq!(reason(&status), expected, "{what}: {status:?}");
    let details = status.get_error_details();
    assert_eq!(details.error_info().expect("ErrorInfo").domain, "deskd");
    let details_text = String::from_utf8_lossy(status.details()).into_owned();
    let metadata_text = format!("{:?}", status.metadata());
    let mut parts: Vec<&str> = token.split('.').filter(|s| s.len() >= 8).collect();
    parts.push(token);
    for part in parts {
        assert!(!status.message().contains(part), "message echoes the token: {status:?}");
        assert!(!details_text.contains(part), "details echo the token: {status:?}");
        assert!(!metadata_text.contains(part), "metadata echoes the token: {status:?}");
    }
}

/// A server with the three PEM keys (and the test HS256 secret).
async fn spawn_with_pem_keys() -> TestApp {
    spawn_app_with(|c| c.jwt.keys = pem_keys()).await
}

#[tokio::test]
async fn rs256_es256_and_eddsa_tokens_verify_with_pem_keys() {
    let app = spawn_with_pem_keys().await;
    let alice = app.caller(Role::Agent).await;
    for (alg, kid, key) in [
        (Algorithm::RS256, "rs256-a", "rs256_a"),
        (Algorithm::ES256, "es256-a", "es256_a"),
        (Algorithm::EdDSA, "ed25519-a", "ed25519_a"),
    ] {
        let token = sign(alg, Some(kid), key, &claims_for(&alice));
        list_as(&app, &token)
            .await
            .unwrap_or_else(|s| panic!("{alg:?} token via PEM: {s:?}"));
    }
    // The created ticket belongs to the token's tenant and user.
    let token = sign(Algorithm::EdDSA, Some("ed25519-a"), "ed25519_a", &claims_for(&alice));
    let created = create_ticket(&app, &Caller { token, ..alice.clone() }, new_ticket("via EdDSA")).await;
    let listed = list_as(&app, &alice.token).await.expect("HS256 token still works");
    assert!(listed.tickets.iter().any(|t| t.id == created.id), "{listed:?}");
}

#[tokio::test]
async fn rs256_es256_and_eddsa_tokens_verify_with_a_jwks_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("jwks.json");
    write_atomically(&path, &jwks(&[jwk("rs256_a"), jwk("es256_a"), jwk("ed25519_a")]));
    let app = spawn_app_with(|c| c.jwt.jwks_file = Some(path.clone())).await;
    let alice = app.caller(Role::Agent).await;
    for (alg, kid, key) in [
        (Algorithm::RS256, "rs256-a", "rs256_a"),
        (Algorithm::ES256, "es256-a", "es256_a"),
        (Algorithm::EdDSA, "ed25519-a", "ed25519_a"),
    ] {
        let token = sign(alg, Some(kid), key, &claims_for(&alice));
        list_as(&app, &token)
            .await
            .unwrap_or_else(|s| panic!("{alg:?} token via JWKS: {s:?}"));
    }
    // Pinned from the JWKS too: the same RSA key, another RSA algorithm.
    let rs512 = sign(Algorithm::RS512, Some("rs256-a"), "rs256_a", &claims_for(&alice));
    assert_refused(&app, &rs512, "TOKEN_ALGORITHM_REJECTED").await;
}

#[tokio::test]
async fn alg_none_is_algorithm_rejected_with_or_without_kid() {
    let app = spawn_with_pem_keys().await;
    let alice = app.caller(Role::Admin).await;
    let claims = claims_for(&alice);
    for header in [
        json!({"alg": "none", "typ": "JWT", "kid": "rs256-a"}),
        json!({"alg": "none", "typ": "JWT", "kid": "ed25519-a"}),
        json!({"alg": "none", "typ": "JWT"}),
    ] {
        let unsigned = hand_token(&header, &claims, |_| Vec::new());
        assert_refused(&app, &unsigned, "TOKEN_ALGORITHM_REJECTED").await;
    }
}

#[tokio::test]
async fn rs256_public_pem_as_hs256_secret_is_refused() {
    // The classic key-confusion attack: the attacker knows the public key
    // and MACs a token with it, header alg HS256.
    let app = spawn_with_pem_keys().await;
    let alice = app.caller(Role::Admin).await;
    let claims = claims_for(&alice);
    let public_pem = std::fs::read(fixture("rs256_a_public.pem")).expect("public pem");

    // Naming the RSA key's kid: that key is RS256 only.
    let with_kid = hand_token(
        &json!({"alg": "HS256", "typ": "JWT", "kid": "rs256-a"}),
        &claims,
        |input| hmac_sha256(&public_pem, input),
    );
    assert_refused(&app, &with_kid, "TOKEN_ALGORITHM_REJECTED").await;

    // Without kid only the HS256 secret is tried, and the PEM is not it.
    let without_kid = hand_token(&json!({"alg": "HS256", "typ": "JWT"}), &claims, |input| {
        hmac_sha256(&public_pem, input)
    });
    assert_refused(&app, &without_kid, "TOKEN_SIGNATURE_INVALID").await;

    // The same through a JWKS (the PEM bytes, or the JWK text, as the secret).
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("jwks.json");
    write_atomically(&path, &jwks(&[jwk("rs256_a")]));
    let app = spawn_app_with(|c| c.jwt.jwks_file = Some(path.clone())).await;
    let bob = app.caller(Role::Admin).await;
    let jwk_text = std::fs::read(fixture("rs256_a.jwk.json")).expect("jwk");
    for secret in [&public_pem, &jwk_text] {
        let token = hand_token(
            &json!({"alg": "HS256", "typ": "JWT", "kid": "rs256-a"}),
            &claims_for(&bob),
            |input| hmac_sha256(secret, input),
        );
        assert_refused(&app, &token, "TOKEN_ALGORITHM_REJECTED").await;
    }
}

#[tokio::test]
async fn unknown_kid_is_key_unknown() {
    let app = spawn_with_pem_keys().await;
    let alice = app.caller(Role::Agent).await;
    // A well-signed token from a key the server does not have.
    let unknown = sign(Algorithm::RS256, Some("rs256-b"), "rs256_b", &claims_for(&alice));
    assert_refused(&app, &unknown, "TOKEN_KEY_UNKNOWN").await;
    // An HS256 token (right secret) naming a kid: kids select public keys only.
    let mut header = Header::new(Algorithm::HS256);
    header.kid = Some("no-such-key".into());
    let hs = jsonwebtoken::encode(
        &header,
        &claims_for(&alice),
        &EncodingKey::from_secret(JWT_SECRET.as_bytes()).expect("hmac key"),
    )
    .expect("sign");
    assert_refused(&app, &hs, "TOKEN_KEY_UNKNOWN").await;
}

#[tokio::test]
async fn header_algorithm_other_than_the_keys_is_algorithm_rejected() {
    let app = spawn_with_pem_keys().await;
    let alice = app.caller(Role::Agent).await;
    let claims = claims_for(&alice);
    for (token, what) in [
        // Same key material, other algorithm of its family: valid signatures.
        (
            sign(Algorithm::RS512, Some("rs256-a"), "rs256_a", &claims),
            "RS512 under an RS256 key",
        ),
        (
            sign(Algorithm::RS384, Some("rs256-a"), "rs256_a", &claims),
            "RS384 under an RS256 key",
        ),
        // Another key type under a kid.
        (
            sign(Algorithm::ES256, Some("rs256-a"), "es256_a", &claims),
            "ES256 under an RS256 key",
        ),
        (
            sign(Algorithm::EdDSA, Some("es256-a"), "ed25519_a", &claims),
            "EdDSA under an ES256 key",
        ),
        (
            sign(Algorithm::RS256, Some("ed25519-a"), "rs256_a", &claims),
            "RS256 under an EdDSA key",
        ),
        // An asymmetric algorithm without kid never reaches a public key.
        (sign(Algorithm::RS256, None, "rs256_a", &claims), "RS256 without kid"),
    ] {
        assert_refused_as(&app, &token, "TOKEN_ALGORITHM_REJECTED", what).await;
    }
}

#[tokio::test]
async fn tampered_payload_or_foreign_signature_is_signature_invalid() {
    let app = spawn_with_pem_keys().await;
    let viewer = app.caller(Role::Viewer).await;
    let admin = app.colleague(&viewer, Role::Admin).await;
    for (alg, kid, key) in [
        (Algorithm::RS256, "rs256-a", "rs256_a"),
        (Algorithm::ES256, "es256-a", "es256_a"),
        (Algorithm::EdDSA, "ed25519-a", "ed25519_a"),
    ] {
        let token = sign(alg, Some(kid), key, &claims_for(&viewer));
        list_as(&app, &token).await.expect("the genuine token");
        let elevated = with_payload(&token, |c| c["sub"] = json!(admin.user.to_string()));
        assert_refused(&app, &elevated, "TOKEN_SIGNATURE_INVALID").await;
        let extended = with_payload(&token, |c| c["exp"] = json!(now() + 10 * 365 * 24 * 3600));
        assert_refused(&app, &extended, "TOKEN_SIGNATURE_INVALID").await;
    }
    // A known kid, signed by another key of the same type.
    let foreign = sign(Algorithm::RS256, Some("rs256-a"), "rs256_b", &claims_for(&viewer));
    assert_refused(&app, &foreign, "TOKEN_SIGNATURE_INVALID").await;
    let foreign = sign(Algorithm::ES256, Some("es256-a"), "es256_b", &claims_for(&viewer));
    assert_refused(&app, &foreign, "TOKEN_SIGNATURE_INVALID").await;
}

#[tokio::test]
async fn expiry_nbf_issuer_and_audience_are_checked_for_public_keys() {
    let app = spawn_with_pem_keys().await;
    assert_eq!(app.config.jwt.leeway, Duration::from_secs(30));
    let alice = app.caller(Role::Agent).await;
    let es = |c: &Claims| sign(Algorithm::ES256, Some("es256-a"), "es256_a", c);

    let mut expired = claims_for(&alice);
    expired.exp = now() - 120;
    expired.iat = now() - 3600;
    assert_refused(&app, &es(&expired), "TOKEN_EXPIRED").await;
    let mut within_leeway = claims_for(&alice);
    within_leeway.exp = now() - 10;
    list_as(&app, &es(&within_leeway))
        .await
        .expect("expired 10 s ago is within the 30 s leeway");

    let mut future = claims_for(&alice);
    future.nbf = Some(now() + 120);
    assert_refused(&app, &es(&future), "TOKEN_NOT_YET_VALID").await;

    let mut wrong_iss = claims_for(&alice);
    wrong_iss.iss = "someone-else".into();
    assert_refused(&app, &es(&wrong_iss), "TOKEN_ISSUER_INVALID").await;
    let mut wrong_aud = claims_for(&alice);
    wrong_aud.aud = "another-service".into();
    let ed = sign(Algorithm::EdDSA, Some("ed25519-a"), "ed25519_a", &wrong_aud);
    assert_refused(&app, &ed, "TOKEN_AUDIENCE_INVALID").await;
    let rs = sign(Algorithm::RS256, Some("rs256-a"), "rs256_a", &wrong_iss);
    assert_refused(&app, &rs, "TOKEN_ISSUER_INVALID").await;
}

/// Polls `list_as(token)` until it succeeds; panics after `limit`.
async fn until_accepted(app: &TestApp, token: &str, limit: Duration, what: &str) {
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        match list_as(app, token).await {
            Ok(_) => return,
            Err(s) if tokio::time::Instant::now() < deadline => {
                assert_eq!(s.code(), Code::Unauthenticated, "{what}: {s:?}");
            }
            Err(s) => panic!("{what}: still refused after {limit:?}: {s:?}"),
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn jwks_rotation_is_picked_up_without_restart() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("jwks.json");
    write_atomically(&path, &jwks(&[jwk("rs256_a")]));
    let reload_interval = Duration::from_millis(50);
    let app = spawn_app_with(|c| {
        c.jwt.jwks_file = Some(path.clone());
        c.jwt.reload_interval = reload_interval;
    })
    .await;
    let alice = app.caller(Role::Agent).await;
    let a = sign(Algorithm::RS256, Some("rs256-a"), "rs256_a", &claims_for(&alice));
    let b = sign(Algorithm::RS256, Some("rs256-b"), "rs256_b", &claims_for(&alice));
    let c = sign(Algorithm::ES256, Some("es256-b"), "es256_b", &claims_for(&alice));
    list_as(&app, &a).await.expect("key A before rotation");
    assert_refused(&app, &b, "TOKEN_KEY_UNKNOWN").await;

    // Rotate: B only.
    write_atomically(&path, &jwks(&[jwk("rs256_b")]));
    until_accepted(&app, &b, Duration::from_secs(10), "key B after rotation").await;
    assert_refused(&app, &a, "TOKEN_KEY_UNKNOWN").await;

    // An invalid file (in place; its second key has no determinable
    // algorithm) is refused whole: B keeps working and C, the valid key next
    // to the bad one, is never taken. There is no outside signal for "the
    // server has looked": watch for twenty reload intervals.
    let mut ambiguous = jwk("rs256_a");
    ambiguous.as_object_mut().expect("object").remove("alg");
    std::fs::write(&path, jwks(&[jwk("es256_b"), ambiguous])).expect("write invalid jwks");
    let watch_until = tokio::time::Instant::now() + 20 * reload_interval;
    while tokio::time::Instant::now() < watch_until {
        list_as(&app, &b).await.expect("key B kept after an invalid JWKS");
        assert_refused(&app, &c, "TOKEN_KEY_UNKNOWN").await;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    std::fs::write(&path, b"{ this is not json").expect("write garbage");
    let watch_until = tokio::time::Instant::now() + 20 * reload_interval;
    while tokio::time::Instant::now() < watch_until {
        list_as(&app, &b).await.expect("key B kept after a garbage JWKS");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // The watcher survived the failures: a valid file later is picked up.
    write_atomically(&path, &jwks(&[jwk("rs256_b"), jwk("es256_b")]));
    until_accepted(&app, &c, Duration::from_secs(10), "key C after a valid JWKS").await;
    list_as(&app, &b).await.expect("key B still in the set");
    assert_refused(&app, &a, "TOKEN_KEY_UNKNOWN").await;
}

#[tokio::test]
async fn pem_and_jwks_keys_serve_side_by_side() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("jwks.json");
    write_atomically(&path, &jwks(&[jwk("rs256_b"), jwk("ed25519_b")]));
    let app = spawn_app_with(|c| {
        c.jwt.keys = pem_keys();
        c.jwt.jwks_file = Some(path.clone());
    })
    .await;
    let alice = app.caller(Role::Agent).await;
    for (alg, kid, key) in [
        (Algorithm::RS256, "rs256-a", "rs256_a"),
        (Algorithm::RS256, "rs256-b", "rs256_b"),
        (Algorithm::EdDSA, "ed25519-a", "ed25519_a"),
        (Algorithm::EdDSA, "ed25519-b", "ed25519_b"),
    ] {
        let token = sign(alg, Some(kid), key, &claims_for(&alice));
        list_as(&app, &token).await.unwrap_or_else(|s| panic!("{kid}: {s:?}"));
    }
    // Each kid is its own key: B's signature under A's kid does not verify.
    let crossed = sign(Algorithm::EdDSA, Some("ed25519-a"), "ed25519_b", &claims_for(&alice));
    assert_refused(&app, &crossed, "TOKEN_SIGNATURE_INVALID").await;
}
