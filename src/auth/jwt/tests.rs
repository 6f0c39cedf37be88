use std::path::PathBuf;

use super::{
    keys::{modulus_bits, parse_jwks},
    *,
};
use crate::config::{JwtKeyAlgorithm, JwtKeyConfig};

fn keys() -> JwtKeys {
    JwtKeys::hs256(
        &SecretString::from("0123456789abcdef0123456789abcdef"),
        &JwtConfig::default(),
    )
    .expect("keys")
}

#[test]
fn minted_tokens_verify() {
    let k = keys();
    let (t, u) = (TenantId(Uuid::now_v7()), UserId(Uuid::now_v7()));
    let token = k.mint(t, u, Duration::from_secs(60)).expect("mint");
    let a = k.verify(&token).expect("verify");
    assert_eq!((a.tenant_id, a.user_id), (t, u));
}

#[test]
fn dev_secret_is_created_once_and_reused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = JwtConfig {
        dev_secret_file: dir.path().join("sub/secret"),
        ..JwtConfig::default()
    };
    let (a, src) = load_secret(&cfg).expect("create");
    assert!(matches!(src, SecretSource::DevFile(_)));
    let (b, _) = load_secret(&cfg).expect("reuse");
    assert_eq!(a.expose_secret(), b.expose_secret());
    assert!(a.expose_secret().len() >= 64);
}

// ---- public keys: selection, pinning, JWKS, reload ----

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/jwt");
const SECRET: &str = "0123456789abcdef0123456789abcdef";

fn fixture(name: &str) -> PathBuf {
    Path::new(FIXTURES).join(name)
}

fn read(name: &str) -> Vec<u8> {
    std::fs::read(fixture(name)).expect("fixture")
}

fn jwk(name: &str) -> serde_json::Value {
    serde_json::from_slice(&read(&format!("{name}.jwk.json"))).expect("jwk json")
}

fn jwks(keys: &[serde_json::Value]) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({ "keys": keys })).expect("jwks json")
}

fn pem(kid: &str, algorithm: JwtKeyAlgorithm, file: &str) -> JwtKeyConfig {
    JwtKeyConfig {
        kid: kid.into(),
        algorithm,
        pem_file: fixture(file),
    }
}

/// rs256-a, es256-a and ed25519-a from PEM files.
fn pem_config() -> JwtConfig {
    JwtConfig {
        keys: vec![
            pem("rs256-a", JwtKeyAlgorithm::RS256, "rs256_a_public.pem"),
            pem("es256-a", JwtKeyAlgorithm::ES256, "es256_a_public.pem"),
            pem("ed25519-a", JwtKeyAlgorithm::EdDSA, "ed25519_a_public.pem"),
        ],
        ..JwtConfig::default()
    }
}

fn claims() -> Claims {
    let now = jsonwebtoken::get_current_timestamp();
    Claims {
        sub: Uuid::now_v7().to_string(),
        tid: Uuid::now_v7().to_string(),
        iss: "deskd".into(),
        aud: "deskd".into(),
        exp: now + 300,
        nbf: None,
        iat: now,
    }
}

/// Signs `claims` as `alg` with the test-only private key of fixture
/// `key` (`rs256_a`, `es256_a`, `ed25519_a`, …), naming `kid`.
fn sign(alg: Algorithm, kid: Option<&str>, key: &str, claims: &Claims) -> String {
    let private = read(&format!("{key}_private_TEST_ONLY.pem"));
    let encoding = match alg {
        Algorithm::RS256 | Algorithm::RS384 | Algorithm::RS512 | Algorithm::PS256 => {
            EncodingKey::from_rsa_pem(&private)
        }
        Algorithm::ES256 => EncodingKey::from_ec_pem(&private),
        Algorithm::EdDSA => EncodingKey::from_ed_pem(&private),
        other => panic!("no fixture signs {other:?}"),
    }
    .expect("private key");
    let mut header = Header::new(alg);
    header.kid = kid.map(str::to_string);
    jsonwebtoken::encode(&header, claims, &encoding).expect("sign")
}

/// A token signed HS256 with `secret`, naming `kid`.
fn sign_hs256(kid: Option<&str>, secret: &[u8], claims: &Claims) -> String {
    let mut header = Header::new(Algorithm::HS256);
    header.kid = kid.map(str::to_string);
    jsonwebtoken::encode(&header, claims, &EncodingKey::from_secret(secret).expect("hmac key")).expect("sign")
}

#[track_caller]
fn refused(result: Result<Authenticated, AppError>) -> &'static str {
    match result {
        Err(AppError::Unauthenticated { reason, .. }) => reason,
        other => panic!("expected UNAUTHENTICATED, got {other:?}"),
    }
}

#[track_caller]
fn load_error(cfg: &JwtConfig, hs: Option<&SecretString>) -> String {
    JwtKeys::from_config(cfg, hs).expect_err("must be refused").to_string()
}

#[test]
fn each_pem_key_verifies_its_own_algorithm_by_kid() {
    let secret = SecretString::from(SECRET);
    let keys = JwtKeys::from_config(&pem_config(), Some(&secret)).expect("keys");
    for (alg, kid, key) in [
        (Algorithm::RS256, "rs256-a", "rs256_a"),
        (Algorithm::ES256, "es256-a", "es256_a"),
        (Algorithm::EdDSA, "ed25519-a", "ed25519_a"),
    ] {
        let c = claims();
        let a = keys.verify(&sign(alg, Some(kid), key, &c)).expect("verifies");
        assert_eq!(a.tenant_id.to_string(), c.tid);
        assert_eq!(a.user_id.to_string(), c.sub);
    }
    // HS256 without kid still works next to them.
    let (t, u) = (TenantId(Uuid::now_v7()), UserId(Uuid::now_v7()));
    let a = keys
        .verify(&keys.mint(t, u, Duration::from_secs(60)).expect("mint"))
        .expect("hs256");
    assert_eq!((a.tenant_id, a.user_id), (t, u));
}

#[test]
fn a_key_never_verifies_another_algorithm() {
    let secret = SecretString::from(SECRET);
    let keys = JwtKeys::from_config(&pem_config(), Some(&secret)).expect("keys");
    let c = claims();
    // The same RSA key, another RSA algorithm: a valid RS512 signature.
    let rs512 = sign(Algorithm::RS512, Some("rs256-a"), "rs256_a", &c);
    assert_eq!(refused(keys.verify(&rs512)), "TOKEN_ALGORITHM_REJECTED");
    // Another key type under the RSA key's kid.
    let es = sign(Algorithm::ES256, Some("rs256-a"), "es256_a", &c);
    assert_eq!(refused(keys.verify(&es)), "TOKEN_ALGORITHM_REJECTED");
    let ed = sign(Algorithm::EdDSA, Some("es256-a"), "ed25519_a", &c);
    assert_eq!(refused(keys.verify(&ed)), "TOKEN_ALGORITHM_REJECTED");
    // Key confusion: HS256 with the RSA public PEM as the HMAC secret.
    let public_pem = read("rs256_a_public.pem");
    let confused = sign_hs256(Some("rs256-a"), &public_pem, &c);
    assert_eq!(refused(keys.verify(&confused)), "TOKEN_ALGORITHM_REJECTED");
    // … and without kid it meets only the HS256 secret, which it is not.
    let confused = sign_hs256(None, &public_pem, &c);
    assert_eq!(refused(keys.verify(&confused)), "TOKEN_SIGNATURE_INVALID");
    // An asymmetric token without kid never reaches a public key.
    let no_kid = sign(Algorithm::RS256, None, "rs256_a", &c);
    assert_eq!(refused(keys.verify(&no_kid)), "TOKEN_ALGORITHM_REJECTED");
    // HS256 with the right secret but a kid: kids select public keys only.
    let hs_kid = sign_hs256(Some("rs256-a"), SECRET.as_bytes(), &c);
    assert_eq!(refused(keys.verify(&hs_kid)), "TOKEN_ALGORITHM_REJECTED");
}

#[test]
fn unknown_kid_and_foreign_signatures() {
    let secret = SecretString::from(SECRET);
    let keys = JwtKeys::from_config(&pem_config(), Some(&secret)).expect("keys");
    let c = claims();
    let unknown = sign(Algorithm::RS256, Some("rs256-b"), "rs256_b", &c);
    assert_eq!(refused(keys.verify(&unknown)), "TOKEN_KEY_UNKNOWN");
    let hs_unknown = sign_hs256(Some("nope"), SECRET.as_bytes(), &c);
    assert_eq!(refused(keys.verify(&hs_unknown)), "TOKEN_KEY_UNKNOWN");
    // A known kid, signed by another key of the same type.
    let foreign = sign(Algorithm::RS256, Some("rs256-a"), "rs256_b", &c);
    assert_eq!(refused(keys.verify(&foreign)), "TOKEN_SIGNATURE_INVALID");
    let foreign = sign(Algorithm::EdDSA, Some("ed25519-a"), "ed25519_b", &c);
    assert_eq!(refused(keys.verify(&foreign)), "TOKEN_SIGNATURE_INVALID");
}

#[test]
fn alg_none_is_refused_with_or_without_kid() {
    use base64::Engine as _;
    let secret = SecretString::from(SECRET);
    let keys = JwtKeys::from_config(&pem_config(), Some(&secret)).expect("keys");
    let b64 = |v: &serde_json::Value| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string());
    let payload = b64(&serde_json::to_value(claims()).expect("claims"));
    for header in [
        serde_json::json!({"alg": "none", "kid": "rs256-a"}),
        serde_json::json!({"alg": "none"}),
        serde_json::json!({"alg": "None", "kid": "es256-a"}),
    ] {
        let token = format!("{}.{payload}.", b64(&header));
        assert_eq!(refused(keys.verify(&token)), "TOKEN_ALGORITHM_REJECTED", "{header}");
    }
}

#[test]
fn claims_are_checked_for_public_keys_too() {
    let secret = SecretString::from(SECRET);
    let keys = JwtKeys::from_config(&pem_config(), Some(&secret)).expect("keys");
    let now = jsonwebtoken::get_current_timestamp();
    type Change = fn(&mut Claims, u64);
    let cases: [(Change, &str); 4] = [
        (|c, now| c.exp = now - 120, "TOKEN_EXPIRED"),
        (|c, now| c.nbf = Some(now + 120), "TOKEN_NOT_YET_VALID"),
        (|c, _| c.iss = "someone-else".into(), "TOKEN_ISSUER_INVALID"),
        (|c, _| c.aud = "another-service".into(), "TOKEN_AUDIENCE_INVALID"),
    ];
    for (change, reason) in cases {
        let mut c = claims();
        change(&mut c, now);
        let token = sign(Algorithm::ES256, Some("es256-a"), "es256_a", &c);
        assert_eq!(refused(keys.verify(&token)), reason);
    }
}

#[test]
fn without_a_secret_only_tokens_with_a_kid_verify() {
    let keys = JwtKeys::from_config(&pem_config(), None).expect("keys");
    let c = claims();
    let hs = sign_hs256(None, SECRET.as_bytes(), &c);
    assert_eq!(refused(keys.verify(&hs)), "TOKEN_KEY_UNKNOWN");
    keys.verify(&sign(Algorithm::RS256, Some("rs256-a"), "rs256_a", &c))
        .expect("public key still verifies");
    assert!(keys.sign(&c).is_err(), "nothing to sign HS256 with");
}

#[test]
fn no_key_at_all_is_refused() {
    let err = load_error(&JwtConfig::default(), None);
    assert!(err.contains("no JWT key is configured"), "{err}");
}

#[test]
fn the_development_secret_verifies_only_while_no_public_key_is_configured() {
    let s = SecretString::from(SECRET);
    let dev = SecretSource::DevFile(PathBuf::from("x"));
    let plain = JwtConfig::default();
    let with_keys = pem_config();
    let with_jwks = JwtConfig {
        jwks_file: Some(fixture("es256_a.jwk.json")),
        ..JwtConfig::default()
    };
    assert!(verification_secret(&plain, &s, &dev).is_some());
    assert!(verification_secret(&with_keys, &s, &dev).is_none());
    assert!(verification_secret(&with_jwks, &s, &dev).is_none());
    assert!(verification_secret(&with_keys, &s, &SecretSource::Configured).is_some());
}

#[test]
fn jwks_algorithm_comes_from_alg_or_an_unambiguous_curve() {
    let mut es = jwk("es256_a");
    let mut ed = jwk("ed25519_a");
    es.as_object_mut().expect("object").remove("alg");
    ed.as_object_mut().expect("object").remove("alg");
    ed.as_object_mut().expect("object").remove("use");
    let parsed = parse_jwks(&jwks(&[jwk("rs256_a"), es, ed])).expect("parses");
    let got: Vec<(&str, Algorithm)> = parsed.iter().map(|(k, a, _)| (k.as_str(), *a)).collect();
    assert_eq!(
        got,
        [
            ("rs256-a", Algorithm::RS256),
            ("es256-a", Algorithm::ES256),
            ("ed25519-a", Algorithm::EdDSA)
        ]
    );

    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("jwks.json");
    std::fs::write(&path, jwks(&[jwk("rs256_a"), jwk("es256_a"), jwk("ed25519_a")])).expect("write");
    let cfg = JwtConfig {
        jwks_file: Some(path),
        ..JwtConfig::default()
    };
    let keys = JwtKeys::from_config(&cfg, None).expect("keys");
    for (alg, kid, key) in [
        (Algorithm::RS256, "rs256-a", "rs256_a"),
        (Algorithm::ES256, "es256-a", "es256_a"),
        (Algorithm::EdDSA, "ed25519-a", "ed25519_a"),
    ] {
        keys.verify(&sign(alg, Some(kid), key, &claims())).expect("verifies");
    }
    // Pinned from the JWKS as from PEM.
    let rs512 = sign(Algorithm::RS512, Some("rs256-a"), "rs256_a", &claims());
    assert_eq!(refused(keys.verify(&rs512)), "TOKEN_ALGORITHM_REJECTED");
}

#[test]
fn jwks_skips_keys_not_for_signatures() {
    let mut enc = jwk("rs256_b");
    enc["use"] = serde_json::json!("enc");
    enc["alg"] = serde_json::json!("RSA-OAEP");
    let mut encrypt_only = jwk("es256_b");
    encrypt_only.as_object_mut().expect("object").remove("use");
    encrypt_only["key_ops"] = serde_json::json!(["encrypt", "wrapKey"]);
    let mut verify = jwk("ed25519_a");
    verify.as_object_mut().expect("object").remove("use");
    verify["key_ops"] = serde_json::json!(["verify"]);
    let parsed = parse_jwks(&jwks(&[enc, jwk("es256_a"), encrypt_only, verify])).expect("parses");
    let kids: Vec<&str> = parsed.iter().map(|(k, _, _)| k.as_str()).collect();
    assert_eq!(kids, ["es256-a", "ed25519-a"]);
}

#[test]
fn jwks_refusals_name_the_key_and_quote_no_key_material() {
    let with = |name: &str, edit: &dyn Fn(&mut serde_json::Value)| {
        let mut v = jwk(name);
        edit(&mut v);
        v
    };
    let rsa_no_alg = with("rs256_a", &|v| {
        v.as_object_mut().expect("object").remove("alg");
    });
    let no_kid = with("es256_a", &|v| {
        v.as_object_mut().expect("object").remove("kid");
    });
    let mismatch = with("rs256_a", &|v| v["alg"] = serde_json::json!("ES256"));
    let rs384 = with("rs256_a", &|v| v["alg"] = serde_json::json!("RS384"));
    let p384 = with("es256_a", &|v| {
        v["crv"] = serde_json::json!("P-384");
        v.as_object_mut().expect("object").remove("alg");
    });
    let short_ed = with("ed25519_a", &|v| v["x"] = serde_json::json!("AAAA"));
    let off_curve = with("es256_a", &|v| v["y"] = v["x"].clone());
    let private = with("es256_a", &|v| v["d"] = serde_json::json!("cHJpdmF0ZQ"));
    let oct = serde_json::json!({"kty": "oct", "kid": "shared", "k": "c2VjcmV0c2VjcmV0c2VjcmV0", "alg": "HS256"});
    let cases: Vec<(Vec<u8>, &str)> = vec![
        (b"{ not json".to_vec(), "is not JSON"),
        (b"{}".to_vec(), "no `keys` array"),
        (jwks(&[]), "no signing keys"),
        (
            jwks(&[rsa_no_alg]),
            "key #0 (kid `rs256-a`) is an RSA key without `alg`",
        ),
        (jwks(&[jwk("rs256_a"), no_kid]), "key #1 has no `kid`"),
        (
            jwks(&[jwk("es256_a"), jwk("es256_a")]),
            "key #1 (kid `es256-a`): duplicate kid",
        ),
        (
            jwks(&[mismatch]),
            "key #0 (kid `rs256-a`) has alg `ES256`, which does not fit kty `RSA`",
        ),
        (jwks(&[rs384]), "key #0 (kid `rs256-a`) has alg `RS384`"),
        (jwks(&[p384]), "kty `EC` crv `P-384` does not determine"),
        (
            jwks(&[short_ed]),
            "key #0 (kid `ed25519-a`) is not an Ed25519 public key",
        ),
        (jwks(&[off_curve]), "key #0 (kid `es256-a`) is not a P-256 public key"),
        (jwks(&[oct]), "key #0 (kid `shared`) is a symmetric (`oct`) key"),
        (jwks(&[private]), "key #0 (kid `es256-a`) holds private key material"),
    ];
    let material: Vec<String> = ["rs256_a", "es256_a", "ed25519_a"]
        .iter()
        .flat_map(|n| {
            let v = jwk(n);
            ["n", "x", "y"]
                .into_iter()
                .filter_map(move |f| v[f].as_str().map(str::to_string))
        })
        .collect();
    for (doc, expected) in cases {
        let err = parse_jwks(&doc).expect_err(expected);
        assert!(err.contains(expected), "`{err}` lacks `{expected}`");
        for m in &material {
            assert!(!err.contains(m.as_str()), "`{err}` quotes key material");
        }
    }
}

#[test]
fn pem_refusals_name_the_key_and_file() {
    let cases = [
        (
            pem("k1", JwtKeyAlgorithm::ES256, "rs256_a_public.pem"),
            "is not a P-256 public key in PEM",
        ),
        (
            pem("k1", JwtKeyAlgorithm::RS256, "es256_a_public.pem"),
            "is not an RSA public key in PEM",
        ),
        (
            pem("k1", JwtKeyAlgorithm::EdDSA, "es256_a_public.pem"),
            "is not an Ed25519 public key",
        ),
        (
            pem("k1", JwtKeyAlgorithm::ES256, "es384_unsupported_public.pem"),
            "is not a P-256 public key",
        ),
        (
            pem("k1", JwtKeyAlgorithm::RS256, "rsa1024_weak_public.pem"),
            "is a 1024-bit RSA key",
        ),
        (
            pem("k1", JwtKeyAlgorithm::RS256, "rs256_a_private_TEST_ONLY.pem"),
            "holds a private key",
        ),
        (pem("k1", JwtKeyAlgorithm::RS256, "no_such_file.pem"), "cannot be read"),
    ];
    for (key, expected) in cases {
        let file = key.pem_file.display().to_string();
        let cfg = JwtConfig {
            keys: vec![key],
            ..JwtConfig::default()
        };
        let err = load_error(&cfg, None);
        assert!(err.contains("key `jwt.keys[0]` (kid `k1`"), "{err}");
        assert!(err.contains(&file), "{err}");
        assert!(err.contains(expected), "`{err}` lacks `{expected}`");
        assert!(!err.contains("MII"), "{err}");
    }

    // A kid in both `jwt.keys` and the JWKS file.
    let cfg = JwtConfig {
        keys: vec![pem("es256-a", JwtKeyAlgorithm::ES256, "es256_a_public.pem")],
        jwks_file: Some(fixture("es256_a.jwk.json")),
        ..JwtConfig::default()
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("jwks.json");
    std::fs::write(&path, jwks(&[jwk("es256_a")])).expect("write");
    let cfg = JwtConfig {
        jwks_file: Some(path),
        ..cfg
    };
    let err = load_error(&cfg, None);
    assert!(err.contains("kid `es256-a` is also in `jwt.keys`"), "{err}");
}

#[test]
fn rsa_modulus_bits() {
    assert_eq!(modulus_bits(&[0, 0, 0x80, 0]), 16);
    assert_eq!(modulus_bits(&[0x01, 0xff]), 9);
    assert_eq!(modulus_bits(&[0, 0]), 0);
}

fn write_atomically(path: &Path, bytes: &[u8]) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, bytes).expect("write");
    std::fs::rename(&tmp, path).expect("rename");
}

#[test]
fn reload_swaps_the_keys_and_keeps_them_when_the_files_are_invalid() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("jwks.json");
    write_atomically(&path, &jwks(&[jwk("rs256_a")]));
    let cfg = JwtConfig {
        jwks_file: Some(path.clone()),
        ..JwtConfig::default()
    };
    let secret = SecretString::from(SECRET);
    let keys = JwtKeys::from_config(&cfg, Some(&secret)).expect("keys");
    let clone = keys.clone();
    let a = sign(Algorithm::RS256, Some("rs256-a"), "rs256_a", &claims());
    let b = sign(Algorithm::RS256, Some("rs256-b"), "rs256_b", &claims());
    keys.verify(&a).expect("a");
    assert_eq!(refused(keys.verify(&b)), "TOKEN_KEY_UNKNOWN");

    write_atomically(&path, &jwks(&[jwk("rs256_b")]));
    keys.reload().expect("reload");
    for k in [&keys, &clone] {
        k.verify(&b).expect("b after rotation");
        assert_eq!(refused(k.verify(&a)), "TOKEN_KEY_UNKNOWN");
    }

    for bad in [b"{ not json".to_vec(), jwks(&[]), b"".to_vec()] {
        std::fs::write(&path, bad).expect("write");
        let err = keys.reload().expect_err("invalid file");
        assert!(err.to_string().contains("key `jwt.jwks_file`"), "{err}");
        clone.verify(&b).expect("b kept");
        assert_eq!(refused(keys.verify(&a)), "TOKEN_KEY_UNKNOWN");
    }
    std::fs::remove_file(&path).expect("remove");
    keys.reload().expect_err("missing file");
    keys.verify(&b).expect("b kept");
    // The HS256 secret was never part of the reload.
    keys.verify(
        &keys
            .mint(
                TenantId(Uuid::now_v7()),
                UserId(Uuid::now_v7()),
                Duration::from_secs(60),
            )
            .expect("mint"),
    )
    .expect("hs256");
}

#[tokio::test]
async fn the_watcher_reloads_a_changed_file_and_stops_when_told() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("jwks.json");
    write_atomically(&path, &jwks(&[jwk("es256_a")]));
    let cfg = JwtConfig {
        jwks_file: Some(path.clone()),
        ..JwtConfig::default()
    };
    let keys = Arc::new(JwtKeys::from_config(&cfg, None).expect("keys"));
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(watch_jwks(keys.clone(), Duration::from_millis(10), async move {
        let _ = stop_rx.await;
    }));
    assert!(!keys.sources.changed(), "nothing changed since the load");

    // In place, not renamed: the length differs.
    std::fs::write(&path, jwks(&[jwk("es256_a"), jwk("ed25519_b")])).expect("write");
    let b = sign(Algorithm::EdDSA, Some("ed25519-b"), "ed25519_b", &claims());
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while keys.verify(&b).is_err() {
        assert!(tokio::time::Instant::now() < deadline, "the change was never picked up");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    stop_tx.send(()).expect("watcher alive");
    tokio::time::timeout(Duration::from_secs(5), task)
        .await
        .expect("the watcher stops")
        .expect("no panic");
}

#[tokio::test]
async fn the_watcher_returns_at_once_without_key_files() {
    let keys = Arc::new(keys());
    tokio::time::timeout(
        Duration::from_secs(5),
        watch_jwks(keys, Duration::from_millis(10), std::future::pending()),
    )
    .await
    .expect("returns without waiting for stop");
}
