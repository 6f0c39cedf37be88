//! API keys (`deskd::auth::apikey`): an issued key parses to its tenant and
//! key id and verifies against its digest, under its server key only; a
//! one-character change is refused (malformed, another key's ids, or a
//! secret that does not verify); an arbitrary string parses only when it
//! has the exact key format, and is otherwise refused as UNAUTHENTICATED
//! `API_KEY_MALFORMED`, in bounded memory; Debug never shows the secret.

#![no_main]

use arbitrary::Arbitrary;
use deskd::{
    auth::apikey::{self, KeyHasher},
    tenancy::TenantId,
};
use deskd_fuzz::{bounded, budget, check_unauthenticated};
use libfuzzer_sys::fuzz_target;
use secrecy::ExposeSecret as _;
use uuid::Uuid;

/// `dsk_` + two simple UUIDs + `_` + 43 base64url characters.
const KEY_LEN: usize = 4 + 64 + 1 + 43;

#[derive(Arbitrary, Debug)]
struct Input<'a> {
    pepper: &'a [u8],
    other_pepper: &'a [u8],
    tenant: [u8; 16],
    key_id: [u8; 16],
    tamper_at: usize,
    tamper_with: char,
    raw: &'a str,
}

fuzz_target!(|input: Input<'_>| {
    let hasher = KeyHasher::new(input.pepper);
    let (tenant, key_id) = (TenantId(Uuid::from_bytes(input.tenant)), Uuid::from_bytes(input.key_id));
    let issued = hasher.issue(tenant, key_id);
    let key = issued.key.expose_secret();
    assert_eq!(key.len(), KEY_LEN);
    assert!(apikey::looks_like_key(key));

    let cred = match apikey::parse(key) {
        Ok(c) => c,
        Err(e) => panic!("an issued key was refused: {e:?}"),
    };
    assert_eq!((cred.tenant_id, cred.key_id), (tenant, key_id));
    assert!(hasher.verify(&cred, &issued.digest));
    assert!(
        !format!("{cred:?}").contains(&key[key.len() - 43..]),
        "Debug shows the secret"
    );
    if input.other_pepper != input.pepper {
        assert!(!KeyHasher::new(input.other_pepper).verify(&cred, &issued.digest));
    }

    // One character changed: never the same key.
    let i = input.tamper_at % key.len();
    let mut tampered: String = key[..i].to_string();
    tampered.push(input.tamper_with);
    tampered.push_str(&key[i + 1..]);
    if tampered != key {
        match apikey::parse(&tampered) {
            Err(e) => {
                check_unauthenticated(&e, "API_KEY_MALFORMED");
            }
            Ok(t) => assert!(
                (t.tenant_id, t.key_id) != (tenant, key_id) || !hasher.verify(&t, &issued.digest),
                "a tampered key {tampered:?} verified as the original"
            ),
        }
    }

    // A client's string.
    match bounded("parse", budget(input.raw.len()), || apikey::parse(input.raw)) {
        Ok(c) => {
            assert!(apikey::looks_like_key(input.raw));
            assert_eq!(input.raw.len(), KEY_LEN);
            let prefix = apikey::prefix(c.tenant_id, c.key_id);
            assert_eq!(
                input.raw.get(..prefix.len()),
                Some(prefix.as_str()),
                "ids parsed from elsewhere"
            );
            assert_eq!(input.raw.as_bytes()[prefix.len()], b'_');
        }
        Err(e) => {
            check_unauthenticated(&e, "API_KEY_MALFORMED");
        }
    }
});
