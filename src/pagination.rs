//! Opaque keyset page tokens.
//!
//! A token carries the sort key of the last row returned (timestamp in
//! microseconds and id) and a fingerprint of the query it belongs to
//! (tenant, filters, order). It is MAC'd with a server key, so a tampered
//! token, or one reused with other filters or by another tenant, is refused
//! with INVALID_ARGUMENT instead of silently returning a wrong page.

use base64::{Engine as _, engine::general_purpose::URL_SAFE_NO_PAD};
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::error::AppError;

type HmacSha256 = Hmac<Sha256>;

const VERSION: u8 = 1;
const FINGERPRINT_LEN: usize = 16;
const MAC_LEN: usize = 16;
const BODY_LEN: usize = 1 + FINGERPRINT_LEN + 8 + 16;

/// The position after which the next page starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cursor {
    /// The sort column's value, in microseconds since the epoch.
    pub micros: i64,
    /// The tie-breaking id.
    pub id: Uuid,
}

/// Signs and verifies page tokens.
#[derive(Clone)]
pub struct PageTokens {
    key: Vec<u8>,
}

impl std::fmt::Debug for PageTokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PageTokens(..)")
    }
}

/// A fingerprint of a query: any change of tenant, filter or order changes it.
pub fn fingerprint(parts: &[&str]) -> [u8; FINGERPRINT_LEN] {
    let mut h = Sha256::new();
    for p in parts {
        h.update((p.len() as u64).to_be_bytes());
        h.update(p.as_bytes());
    }
    let digest = h.finalize();
    let mut out = [0u8; FINGERPRINT_LEN];
    out.copy_from_slice(&digest[..FINGERPRINT_LEN]);
    out
}

fn invalid_token() -> AppError {
    AppError::invalid(
        "page_token",
        "INVALID_PAGE_TOKEN",
        "the page token is malformed, was tampered with, or belongs to a query with other filters or order",
    )
}

impl PageTokens {
    /// Tokens keyed by `secret` (derived: the raw secret is never the MAC key).
    pub fn new(secret: &[u8]) -> Self {
        let mut h = Sha256::new();
        h.update(b"deskd page token key v1");
        h.update(secret);
        Self {
            key: h.finalize().to_vec(),
        }
    }

    fn mac(&self, body: &[u8]) -> HmacSha256 {
        // HMAC accepts keys of any length; this cannot fail.
        let mut m = match HmacSha256::new_from_slice(&self.key) {
            Ok(m) => m,
            Err(_) => unreachable!("HMAC takes keys of any size"),
        };
        m.update(body);
        m
    }

    /// Encodes the cursor for a query with fingerprint `fp`.
    pub fn encode(&self, fp: &[u8; FINGERPRINT_LEN], cursor: Cursor) -> String {
        let mut body = Vec::with_capacity(BODY_LEN + MAC_LEN);
        body.push(VERSION);
        body.extend_from_slice(fp);
        body.extend_from_slice(&cursor.micros.to_be_bytes());
        body.extend_from_slice(cursor.id.as_bytes());
        let tag = self.mac(&body).finalize().into_bytes();
        body.extend_from_slice(&tag[..MAC_LEN]);
        URL_SAFE_NO_PAD.encode(body)
    }

    /// Decodes a token, checking its MAC and that it belongs to `fp`.
    pub fn decode(&self, fp: &[u8; FINGERPRINT_LEN], token: &str) -> Result<Cursor, AppError> {
        let raw = URL_SAFE_NO_PAD.decode(token.as_bytes()).map_err(|_| invalid_token())?;
        if raw.len() != BODY_LEN + MAC_LEN || raw[0] != VERSION {
            return Err(invalid_token());
        }
        let (body, tag) = raw.split_at(BODY_LEN);
        // verify_truncated_left compares in constant time.
        self.mac(body).verify_truncated_left(tag).map_err(|_| invalid_token())?;
        if &body[1..1 + FINGERPRINT_LEN] != fp {
            return Err(invalid_token());
        }
        let mut micros = [0u8; 8];
        micros.copy_from_slice(&body[1 + FINGERPRINT_LEN..1 + FINGERPRINT_LEN + 8]);
        let id = Uuid::from_slice(&body[1 + FINGERPRINT_LEN + 8..]).map_err(|_| invalid_token())?;
        Ok(Cursor {
            micros: i64::from_be_bytes(micros),
            id,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_rejections() {
        let t = PageTokens::new(b"secret");
        let fp = fingerprint(&["tenant", "status=open"]);
        let c = Cursor {
            micros: 1_700_000_000_000_000,
            id: Uuid::now_v7(),
        };
        let token = t.encode(&fp, c);
        assert_eq!(t.decode(&fp, &token).expect("valid"), c);

        // Another query's fingerprint.
        let other = fingerprint(&["tenant", "status=closed"]);
        assert!(t.decode(&other, &token).is_err());
        // Another key.
        assert!(PageTokens::new(b"other").decode(&fp, &token).is_err());
        // Every single-character change.
        let bytes = token.as_bytes();
        for i in 0..bytes.len() {
            let mut changed = bytes.to_vec();
            changed[i] = if changed[i] == b'A' { b'B' } else { b'A' };
            let s = String::from_utf8(changed).expect("ascii");
            assert!(t.decode(&fp, &s).is_err(), "tampered at {i} accepted");
        }
        assert!(t.decode(&fp, "").is_err());
        assert!(t.decode(&fp, "!!!").is_err());
    }

    #[test]
    fn fingerprint_separates_parts() {
        assert_ne!(fingerprint(&["ab", "c"]), fingerprint(&["a", "bc"]));
    }
}
