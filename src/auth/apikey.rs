//! API keys: `dsk_<tenant id><key id>_<secret>`.
//!
//! The prefix makes keys recognisable (secret scanners, logs); the ids are
//! public (hex UUIDs) and locate the key's row inside its tenant, so the
//! lookup runs under that tenant's RLS context like every other query. The
//! secret is 32 random bytes (base64url); only an HMAC-SHA256 of it, keyed by
//! a server-side key, is stored, and it is compared in constant time.

use base64::{Engine as _, engine::general_purpose::URL_SAFE_NO_PAD};
use hmac::{Hmac, Mac};
use rand::Rng as _;
use secrecy::{ExposeSecret, SecretString};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::{error::AppError, tenancy::TenantId};

/// Every key starts with this.
pub const PREFIX: &str = "dsk_";
const SECRET_BYTES: usize = 32;
const SECRET_CHARS: usize = 43; // base64url of 32 bytes, unpadded

type HmacSha256 = Hmac<Sha256>;

/// A parsed key; `secret` is unverified.
#[derive(Clone)]
pub struct ApiKeyCredential {
    /// The tenant the key belongs to.
    pub tenant_id: TenantId,
    /// The key's id.
    pub key_id: Uuid,
    secret: SecretString,
}

impl std::fmt::Debug for ApiKeyCredential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ApiKeyCredential({})", prefix(self.tenant_id, self.key_id))
    }
}

/// The public part of a key: safe to show and log.
pub fn prefix(tenant: TenantId, key_id: Uuid) -> String {
    format!("{PREFIX}{}{}", tenant.0.simple(), key_id.simple())
}

/// Whether a bearer value looks like an API key (rather than a JWT).
pub fn looks_like_key(raw: &str) -> bool {
    raw.starts_with(PREFIX)
}

fn malformed() -> AppError {
    AppError::Unauthenticated {
        reason: "API_KEY_MALFORMED",
        description: "the API key is not of the form dsk_<ids>_<secret>",
    }
}

/// Parses a key without verifying it.
pub fn parse(raw: &str) -> Result<ApiKeyCredential, AppError> {
    let rest = raw.strip_prefix(PREFIX).ok_or_else(malformed)?;
    if rest.len() != 64 + 1 + SECRET_CHARS || !rest.is_char_boundary(64) || !rest.is_char_boundary(65) {
        return Err(malformed());
    }
    let (ids, tail) = rest.split_at(64);
    let secret = tail.strip_prefix('_').ok_or_else(malformed)?;
    if !ids.bytes().all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()) {
        return Err(malformed());
    }
    let tenant = Uuid::try_parse(&ids[..32]).map_err(|_| malformed())?;
    let key_id = Uuid::try_parse(&ids[32..]).map_err(|_| malformed())?;
    if URL_SAFE_NO_PAD.decode(secret).map(|b| b.len()) != Ok(SECRET_BYTES) {
        return Err(malformed());
    }
    Ok(ApiKeyCredential {
        tenant_id: TenantId(tenant),
        key_id,
        secret: SecretString::from(secret.to_string()),
    })
}

/// Computes and checks key digests under the server's key.
#[derive(Clone)]
pub struct KeyHasher {
    key: Vec<u8>,
}

impl std::fmt::Debug for KeyHasher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("KeyHasher(..)")
    }
}

/// A newly issued key: the full key (shown once) and what to store.
pub struct IssuedKey {
    /// The complete key, for the client.
    pub key: SecretString,
    /// The digest to store.
    pub digest: Vec<u8>,
}

impl KeyHasher {
    /// A hasher keyed by `pepper` (derived, so the raw pepper is never the MAC key).
    pub fn new(pepper: &[u8]) -> Self {
        let mut h = Sha256::new();
        h.update(b"deskd api key digest v1");
        h.update(pepper);
        Self {
            key: h.finalize().to_vec(),
        }
    }

    /// The hasher a deployment uses: keyed by `pepper` when one is
    /// configured, else by `fallback` (the JWT secret or development file).
    pub fn from_pepper_or(pepper: &SecretString, fallback: &SecretString) -> Self {
        let p = pepper.expose_secret();
        Self::new(if p.is_empty() { fallback.expose_secret() } else { p }.as_bytes())
    }

    fn mac(&self, secret: &str) -> HmacSha256 {
        let mut m = match HmacSha256::new_from_slice(&self.key) {
            Ok(m) => m,
            Err(_) => unreachable!("HMAC takes keys of any size"),
        };
        m.update(secret.as_bytes());
        m
    }

    /// Whether the credential's secret matches `stored`, in constant time.
    pub fn verify(&self, cred: &ApiKeyCredential, stored: &[u8]) -> bool {
        self.mac(cred.secret.expose_secret()).verify_slice(stored).is_ok()
    }

    /// Issues a key for `key_id` of `tenant`.
    pub fn issue(&self, tenant: TenantId, key_id: Uuid) -> IssuedKey {
        let bytes: [u8; SECRET_BYTES] = rand::rng().random();
        let secret = URL_SAFE_NO_PAD.encode(bytes);
        let digest = self.mac(&secret).finalize().into_bytes().to_vec();
        IssuedKey {
            key: SecretString::from(format!("{}_{secret}", prefix(tenant, key_id))),
            digest,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn issued_keys_parse_and_verify() {
        let h = KeyHasher::new(b"pepper");
        let (t, k) = (TenantId(Uuid::now_v7()), Uuid::now_v7());
        let issued = h.issue(t, k);
        let raw = issued.key.expose_secret();
        assert!(raw.starts_with("dsk_"));
        let cred = parse(raw).expect("parse");
        assert_eq!((cred.tenant_id, cred.key_id), (t, k));
        assert!(h.verify(&cred, &issued.digest));
        // Another server key, or another key's digest, does not verify.
        assert!(!KeyHasher::new(b"other").verify(&cred, &issued.digest));
        assert!(!h.verify(&cred, &h.issue(t, k).digest));
        // Debug never shows the secret.
        // The secret is the fixed-length tail (it may itself contain `_`).
        let secret = &raw[raw.len() - SECRET_CHARS..];
        assert!(!format!("{cred:?}").contains(secret));
    }

    #[test]
    fn malformed_keys_are_refused() {
        let h = KeyHasher::new(b"pepper");
        let good = h
            .issue(TenantId(Uuid::now_v7()), Uuid::now_v7())
            .key
            .expose_secret()
            .to_string();
        for bad in [
            String::new(),
            "dsk_".into(),
            good.replace("dsk_", "dsx_"),
            good[..good.len() - 1].to_string(),
            format!("{good}A"),
            good.to_uppercase(),
            good.replacen('_', "-", 2),
            format!("{}é{}", &good[..10], &good[12..]),
        ] {
            assert!(parse(&bad).is_err(), "accepted {bad:?}");
        }
    }
}
