//! Page tokens (`deskd::pagination`): what the server encodes decodes to
//! the same cursor; a token is refused under another tenant, another query
//! or another server secret, and after any one-character change; an
//! arbitrary string is refused unless it is exactly the token the server
//! would make for the cursor it decodes to; every refusal is the precise
//! INVALID_ARGUMENT on `page_token`, in bounded memory.

#![no_main]

use arbitrary::Arbitrary;
use deskd::pagination::{Cursor, PageTokens, fingerprint};
use deskd_fuzz::{bounded, budget, check_invalid_argument};
use libfuzzer_sys::fuzz_target;
use uuid::Uuid;

#[derive(Arbitrary, Debug)]
struct Input<'a> {
    secret: &'a [u8],
    other_secret: &'a [u8],
    tenant: [u8; 16],
    other_tenant: [u8; 16],
    query: &'a str,
    other_query: &'a str,
    micros: i64,
    id: [u8; 16],
    tamper_at: usize,
    tamper_with: char,
    suffix: &'a str,
    raw: &'a str,
}

/// The fingerprint the services build: tenant, then the filter's text.
fn fp(tenant: &[u8; 16], query: &str) -> [u8; 16] {
    fingerprint(&[&Uuid::from_bytes(*tenant).to_string(), query])
}

fn refused(tokens: &PageTokens, fp: &[u8; 16], token: &str) {
    match bounded("decode", budget(token.len()), || tokens.decode(fp, token)) {
        Ok(c) => panic!("{token:?} was accepted as {c:?}"),
        Err(e) => check_invalid_argument(&e, &["page_token"]),
    }
}

fuzz_target!(|input: Input<'_>| {
    let tokens = PageTokens::new(input.secret);
    let fp = fp(&input.tenant, input.query);
    let cursor = Cursor {
        micros: input.micros,
        id: Uuid::from_bytes(input.id),
    };

    // Round trip.
    let token = tokens.encode(&fp, cursor);
    assert!(token.is_ascii());
    match tokens.decode(&fp, &token) {
        Ok(c) => assert_eq!(c, cursor),
        Err(e) => panic!("the server's own token was refused: {e:?}"),
    }

    // Bound to its tenant and query...
    if (input.other_tenant, input.other_query) != (input.tenant, input.query) {
        refused(&tokens, &self::fp(&input.other_tenant, input.other_query), &token);
    }
    // ...and to the server's secret.
    if input.other_secret != input.secret {
        refused(&PageTokens::new(input.other_secret), &fp, &token);
    }

    // Any one-character change, and anything appended, is refused.
    let i = input.tamper_at % token.len();
    let mut tampered: String = token[..i].to_string();
    tampered.push(input.tamper_with);
    tampered.push_str(&token[i + 1..]);
    if tampered != token {
        refused(&tokens, &fp, &tampered);
    }
    if !input.suffix.is_empty() {
        refused(&tokens, &fp, &format!("{token}{}", input.suffix));
    }

    // A client's string: refused precisely, or the one spelling the server
    // itself makes for that cursor (no second encoding is accepted).
    match bounded("decode", budget(input.raw.len()), || tokens.decode(&fp, input.raw)) {
        Ok(c) => assert_eq!(tokens.encode(&fp, c), input.raw, "a second spelling was accepted"),
        Err(e) => check_invalid_argument(&e, &["page_token"]),
    }
});
