//! JWT verification (`deskd::auth::JwtKeys`, HS256 key): tokens are built
//! from fuzzed headers (any `alg`, with or without `kid`), claims (valid,
//! expired, not yet valid, wrong issuer or audience, ids that are not
//! UUIDs, missing claims, or a raw payload) and signatures (the right
//! secret, another one, or raw bytes).
//!
//! Asserted: a token is accepted exactly when it is HS256 without `kid`,
//! signed with the server's secret, with valid claims, and then names the
//! tenant and user of its claims (also from the verified-token cache); any
//! other `alg` is refused as TOKEN_ALGORITHM_REJECTED before its signature
//! is looked at (no algorithm confusion, no `none`); a one-character change
//! of an accepted token is refused; every refusal is UNAUTHENTICATED with
//! a `TOKEN_*` reason, in bounded memory.

#![no_main]

use arbitrary::Arbitrary;
use base64::{Engine as _, engine::general_purpose::URL_SAFE_NO_PAD};
use deskd::{auth::JwtKeys, config::JwtConfig};
use deskd_fuzz::{bounded, budget, check_unauthenticated};
use hmac::{Hmac, Mac};
use libfuzzer_sys::fuzz_target;
use secrecy::SecretString;
use serde_json::{Map, Value, json};
use sha2::Sha256;
use uuid::Uuid;

/// Clear of the configured leeway (30 s), so the oracle never races the clock.
const MARGIN: i64 = 300;

#[derive(Arbitrary, Debug)]
enum Alg<'a> {
    Hs256,
    Other(u8),
    Raw(&'a str),
}

const OTHER_ALGS: &[&str] = &[
    "HS384", "HS512", "RS256", "RS384", "ES256", "ES384", "EdDSA", "PS256", "none", "None", "NONE", "hs256", "HS256 ",
    "",
];

#[derive(Arbitrary, Debug)]
enum Id<'a> {
    Valid([u8; 16]),
    Raw(&'a str),
    Missing,
}

#[derive(Arbitrary, Debug)]
enum Payload<'a> {
    Claims {
        sub: Id<'a>,
        tid: Id<'a>,
        iss_ok: bool,
        aud_ok: bool,
        /// Seconds from now; `None` leaves `exp` out.
        exp: Option<i32>,
        nbf: Option<i32>,
        iat: bool,
    },
    Raw(&'a [u8]),
}

#[derive(Arbitrary, Debug)]
enum Signature<'a> {
    ServerSecret,
    OtherSecret(&'a str),
    Raw(&'a [u8]),
}

#[derive(Arbitrary, Debug)]
struct Input<'a> {
    secret: &'a str,
    alg: Alg<'a>,
    kid: Option<&'a str>,
    payload: Payload<'a>,
    signature: Signature<'a>,
    tamper_at: usize,
    tamper_with: char,
    raw: &'a str,
}

fn id_value(id: &Id<'_>) -> Option<Value> {
    match id {
        Id::Valid(b) => Some(Value::from(Uuid::from_bytes(*b).to_string())),
        Id::Raw(s) => Some(Value::from(*s)),
        Id::Missing => None,
    }
}

fn hs256(secret: &[u8], input: &str) -> Vec<u8> {
    let mut m = match Hmac::<Sha256>::new_from_slice(secret) {
        Ok(m) => m,
        Err(_) => unreachable!("HMAC takes keys of any size"),
    };
    m.update(input.as_bytes());
    m.finalize().into_bytes().to_vec()
}

/// Some(true): must verify; Some(false): must be refused; None: on a
/// boundary the oracle does not judge.
/// `signed`: the signature is the server secret's HMAC of the token (another
/// secret can give the same one: HMAC pads short keys with zero bytes, so
/// `""` and `"\0"` are one key).
fn expectation(input: &Input<'_>, alg: &str, now: i64, signed: bool) -> Option<bool> {
    let mut ok = alg == "HS256" && input.kid.is_none() && signed;
    let Payload::Claims {
        sub,
        tid,
        iss_ok,
        aud_ok,
        exp,
        nbf,
        iat,
    } = &input.payload
    else {
        // A raw payload that happens to hold valid claims may verify.
        return if ok { None } else { Some(false) };
    };
    let uuid = |id: &Id<'_>| match id {
        Id::Valid(_) => true,
        Id::Raw(s) => Uuid::parse_str(s).is_ok(),
        Id::Missing => false,
    };
    ok &= uuid(sub) && uuid(tid) && *iss_ok && *aud_ok && *iat;
    let Some(exp) = exp else { return Some(false) };
    if !ok {
        return Some(false);
    }
    let exp = i64::from(*exp);
    let nbf = nbf.map(i64::from);
    // Times are unsigned seconds (`Claims`): one before 1970 is a malformed claim.
    if now + exp < 0 || nbf.is_some_and(|n| now + n < 0) {
        return Some(false);
    }
    if exp <= -MARGIN || nbf.is_some_and(|n| n >= MARGIN) {
        return Some(false);
    }
    if exp >= MARGIN && nbf.is_none_or(|n| n <= -MARGIN) {
        return Some(true);
    }
    None
}

fuzz_target!(|input: Input<'_>| {
    let cfg = JwtConfig::default();
    let Ok(keys) = JwtKeys::hs256(&SecretString::from(input.secret), &cfg) else {
        return;
    };
    let now = i64::try_from(jsonwebtoken_now()).unwrap_or(i64::MAX);

    let mut header = Map::new();
    let alg = match &input.alg {
        Alg::Hs256 => "HS256",
        Alg::Other(i) => OTHER_ALGS[usize::from(*i) % OTHER_ALGS.len()],
        Alg::Raw(s) => s,
    };
    header.insert("alg".into(), alg.into());
    header.insert("typ".into(), "JWT".into());
    if let Some(kid) = input.kid {
        header.insert("kid".into(), kid.into());
    }
    let payload = match &input.payload {
        Payload::Claims {
            sub,
            tid,
            iss_ok,
            aud_ok,
            exp,
            nbf,
            iat,
        } => {
            let mut c = Map::new();
            if let Some(v) = id_value(sub) {
                c.insert("sub".into(), v);
            }
            if let Some(v) = id_value(tid) {
                c.insert("tid".into(), v);
            }
            c.insert("iss".into(), if *iss_ok { cfg.issuer.as_str() } else { "other" }.into());
            c.insert(
                "aud".into(),
                if *aud_ok { cfg.audience.as_str() } else { "other" }.into(),
            );
            if let Some(exp) = exp {
                c.insert("exp".into(), json!(now + i64::from(*exp)));
            }
            if let Some(nbf) = nbf {
                c.insert("nbf".into(), json!(now + i64::from(*nbf)));
            }
            if *iat {
                c.insert("iat".into(), json!(now));
            }
            Value::Object(c).to_string().into_bytes()
        }
        Payload::Raw(b) => b.to_vec(),
    };
    let signing_input = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(Value::Object(header).to_string()),
        URL_SAFE_NO_PAD.encode(payload)
    );
    let signature = match &input.signature {
        Signature::ServerSecret => hs256(input.secret.as_bytes(), &signing_input),
        Signature::OtherSecret(s) => hs256(s.as_bytes(), &signing_input),
        Signature::Raw(b) => b.to_vec(),
    };
    let signed = signature == hs256(input.secret.as_bytes(), &signing_input);
    let token = format!("{signing_input}.{}", URL_SAFE_NO_PAD.encode(signature));

    let expect = expectation(&input, alg, now, signed);
    let verdict = bounded("verify", budget(token.len()), || keys.verify(&token));
    match (&verdict, expect) {
        (Ok(who), Some(true) | None) => {
            // It names the ids of its claims, again from the cache.
            if let Payload::Claims { sub, tid, .. } = &input.payload {
                let same = |id: &Id<'_>, got: Uuid| match id {
                    Id::Valid(b) => Uuid::from_bytes(*b) == got,
                    Id::Raw(s) => Uuid::parse_str(s).ok() == Some(got),
                    Id::Missing => false,
                };
                assert!(same(sub, who.user_id.0) && same(tid, who.tenant_id.0), "{who:?}");
            }
            assert_eq!(keys.verify(&token).ok(), Some(*who));

            // Any one-character change is refused.
            let i = input.tamper_at % token.len();
            let mut tampered: String = token[..i].to_string();
            tampered.push(input.tamper_with);
            tampered.push_str(&token[i + 1..]);
            if tampered != token {
                match keys.verify(&tampered) {
                    Ok(w) => panic!("tampered token {tampered:?} verified as {w:?}"),
                    Err(e) => {
                        check_unauthenticated(&e, "TOKEN_");
                    }
                }
            }
        }
        (Ok(who), Some(false)) => panic!("{token:?} should be refused, verified as {who:?}"),
        (Err(e), Some(true)) => panic!("{token:?} should verify, refused: {e:?}"),
        (Err(e), Some(false) | None) => {
            let reason = check_unauthenticated(e, "TOKEN_");
            // The algorithm is pinned before anything else.
            if input.kid.is_none() && alg != "HS256" {
                assert_eq!(reason, "TOKEN_ALGORITHM_REJECTED", "alg {alg:?}");
            }
            if input.kid.is_some() {
                assert!(
                    matches!(reason, "TOKEN_KEY_UNKNOWN" | "TOKEN_ALGORITHM_REJECTED"),
                    "a kid no key has: {reason}"
                );
            }
        }
    }

    // A client's string: nothing forged verifies.
    match bounded("verify", budget(input.raw.len()), || keys.verify(input.raw)) {
        Ok(who) => panic!("{:?} verified as {who:?}", input.raw),
        Err(e) => {
            check_unauthenticated(&e, "TOKEN_");
        }
    }
});

/// Seconds since the epoch, as the JWT library counts them.
fn jsonwebtoken_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}
