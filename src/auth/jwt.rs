//! HS256 JWT verification and minting.
//!
//! The algorithm is pinned: a token whose header names any other algorithm
//! (including `none`) is refused before its signature is looked at.

use std::{path::Path, time::Duration};

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation, errors::ErrorKind};
use rand::Rng as _;
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::Authenticated;
use crate::{
    config::JwtConfig,
    error::AppError,
    tenancy::{TenantId, UserId},
};

/// The claims deskd issues and requires.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Claims {
    /// The user id.
    pub sub: String,
    /// The tenant id.
    pub tid: String,
    /// Issuer; must equal the configured issuer.
    pub iss: String,
    /// Audience; must equal the configured audience.
    pub aud: String,
    /// Expiry (seconds since the epoch). Defaulted only so that a missing
    /// `exp` is reported by the required-claims check, never accepted.
    #[serde(default)]
    pub exp: u64,
    /// Not before (seconds since the epoch).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nbf: Option<u64>,
    /// Issued at (seconds since the epoch).
    pub iat: u64,
}

/// The key material and rules for tokens.
#[derive(Clone)]
pub struct JwtKeys {
    decoding: DecodingKey,
    encoding: EncodingKey,
    validation: Validation,
    issuer: String,
    audience: String,
}

impl std::fmt::Debug for JwtKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JwtKeys")
            .field("issuer", &self.issuer)
            .field("audience", &self.audience)
            .finish_non_exhaustive()
    }
}

/// Where the HS256 secret came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecretSource {
    /// `jwt.secret` / `DESKD_JWT_SECRET`.
    Configured,
    /// The development secret file (created when missing).
    DevFile(std::path::PathBuf),
}

/// Loads the configured secret or the development secret file, creating the
/// file (mode 0600) with 48 random bytes when it does not exist.
pub fn load_secret(cfg: &JwtConfig) -> std::io::Result<(SecretString, SecretSource)> {
    let configured = cfg.secret.expose_secret();
    if !configured.is_empty() {
        return Ok((cfg.secret.clone(), SecretSource::Configured));
    }
    let path = &cfg.dev_secret_file;
    if let Ok(existing) = std::fs::read_to_string(path) {
        let s = existing.trim().to_string();
        if s.len() >= 32 {
            return Ok((SecretString::from(s), SecretSource::DevFile(path.clone())));
        }
    }
    write_dev_secret(path)?;
    let s = std::fs::read_to_string(path)?.trim().to_string();
    if s.len() < 32 {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!(
                "the development secret in {} is shorter than 32 bytes: delete the file to have a new one made",
                path.display()
            ),
        ));
    }
    Ok((SecretString::from(s), SecretSource::DevFile(path.clone())))
}

fn write_dev_secret(path: &Path) -> std::io::Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    let bytes: [u8; 48] = rand::rng().random();
    let secret: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    match opts.open(path) {
        Ok(mut f) => {
            use std::io::Write;
            f.write_all(secret.as_bytes())?;
            f.sync_all()
        }
        // Another process created it first: use theirs.
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(e),
    }
}

/// The `alg` of a compact JWS header, read without the JWT library.
fn header_alg(token: &str) -> Option<String> {
    use base64::Engine as _;
    let first = token.split('.').next()?;
    let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(first.trim_end_matches('='))
        .ok()?;
    let v: serde_json::Value = serde_json::from_slice(&raw).ok()?;
    v.get("alg")?.as_str().map(str::to_string)
}

fn unauthenticated(reason: &'static str, description: &'static str) -> AppError {
    AppError::Unauthenticated { reason, description }
}

impl JwtKeys {
    /// Keys for HS256 with `secret`, requiring `cfg`'s issuer and audience.
    pub fn hs256(secret: &SecretString, cfg: &JwtConfig) -> Result<Self, jsonwebtoken::errors::Error> {
        let bytes = secret.expose_secret().as_bytes();
        let mut validation = Validation::new(Algorithm::HS256);
        validation.set_issuer(&[&cfg.issuer]);
        validation.set_audience(&[&cfg.audience]);
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        validation.leeway = cfg.leeway.as_secs();
        validation.validate_exp = true;
        validation.validate_nbf = true;
        Ok(Self {
            decoding: DecodingKey::from_secret(bytes)?,
            encoding: EncodingKey::from_secret(bytes)?,
            validation,
            issuer: cfg.issuer.clone(),
            audience: cfg.audience.clone(),
        })
    }

    /// Verifies a compact JWS and returns who it names.
    pub fn verify(&self, token: &str) -> Result<Authenticated, AppError> {
        // Pin the algorithm before anything else: `none`, RS*/ES* or a
        // malformed header never reaches signature verification.
        let header = jsonwebtoken::decode_header(token).map_err(|_| {
            // The library has no `none` (or unknown) algorithm: read the
            // header's `alg` ourselves to name the refusal precisely.
            if header_alg(token).is_some_and(|alg| alg != "HS256") {
                unauthenticated("TOKEN_ALGORITHM_REJECTED", "the token's algorithm is not accepted")
            } else {
                unauthenticated("TOKEN_MALFORMED", "the bearer token is not a well-formed JWT")
            }
        })?;
        if header.alg != Algorithm::HS256 {
            return Err(unauthenticated(
                "TOKEN_ALGORITHM_REJECTED",
                "the token's algorithm is not accepted",
            ));
        }
        let data =
            jsonwebtoken::decode::<Claims>(token, &self.decoding, &self.validation).map_err(|e| match e.kind() {
                ErrorKind::ExpiredSignature => unauthenticated("TOKEN_EXPIRED", "the token has expired"),
                ErrorKind::ImmatureSignature => {
                    unauthenticated("TOKEN_NOT_YET_VALID", "the token is not valid yet (nbf)")
                }
                ErrorKind::InvalidSignature => {
                    unauthenticated("TOKEN_SIGNATURE_INVALID", "the token's signature does not verify")
                }
                ErrorKind::InvalidIssuer => {
                    unauthenticated("TOKEN_ISSUER_INVALID", "the token's issuer is not accepted")
                }
                ErrorKind::InvalidAudience => {
                    unauthenticated("TOKEN_AUDIENCE_INVALID", "the token's audience is not accepted")
                }
                ErrorKind::InvalidAlgorithm => {
                    unauthenticated("TOKEN_ALGORITHM_REJECTED", "the token's algorithm is not accepted")
                }
                ErrorKind::MissingRequiredClaim(_) | ErrorKind::InvalidClaimFormat(_) | ErrorKind::Json(_) => {
                    unauthenticated(
                        "TOKEN_CLAIMS_INVALID",
                        "the token lacks a required claim or has a malformed one",
                    )
                }
                _ => unauthenticated("TOKEN_MALFORMED", "the bearer token is not a well-formed JWT"),
            })?;
        let claims = data.claims;
        let tenant = Uuid::parse_str(&claims.tid)
            .map_err(|_| unauthenticated("TOKEN_CLAIMS_INVALID", "the token's `tid` claim is not a UUID"))?;
        let user = Uuid::parse_str(&claims.sub)
            .map_err(|_| unauthenticated("TOKEN_CLAIMS_INVALID", "the token's `sub` claim is not a UUID"))?;
        Ok(Authenticated {
            tenant_id: TenantId(tenant),
            user_id: UserId(user),
        })
    }

    /// Signs a token for `user` of `tenant`, valid for `ttl`.
    pub fn mint(&self, tenant: TenantId, user: UserId, ttl: Duration) -> Result<String, jsonwebtoken::errors::Error> {
        let now = jsonwebtoken::get_current_timestamp();
        let claims = Claims {
            sub: user.to_string(),
            tid: tenant.to_string(),
            iss: self.issuer.clone(),
            aud: self.audience.clone(),
            exp: now + ttl.as_secs(),
            nbf: None,
            iat: now,
        };
        self.sign(&claims)
    }

    /// Signs arbitrary claims (tests and tools).
    pub fn sign(&self, claims: &Claims) -> Result<String, jsonwebtoken::errors::Error> {
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), claims, &self.encoding)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
