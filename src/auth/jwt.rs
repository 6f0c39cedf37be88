//! JWT verification and minting.
//!
//! Two kinds of key verify tokens, and each is pinned to one algorithm:
//!
//! - the HS256 secret (`jwt.secret`, or the development secret) verifies only
//!   tokens *without* a `kid`, and only as HS256;
//! - public keys from PEM files (`jwt.keys`) and a JWKS file (`jwt.jwks_file`)
//!   each carry a `kid` and one algorithm (RS256, ES256 or EdDSA). A token
//!   *with* a `kid` is verified only by the key of that `kid`, only with that
//!   key's algorithm.
//!
//! A header naming any other algorithm (`none` included) is refused before a
//! signature is looked at, so no key ever verifies a token of another
//! algorithm: an RS256 public key used as an HMAC secret gets nowhere.
//!
//! The public keys sit behind an `RwLock<Arc<KeySet>>`: a verification clones
//! the `Arc` and lets go of the lock. [`JwtKeys::reload`] re-reads the files
//! and swaps the whole set, or keeps the old one when the new files are
//! invalid; [`watch_jwks`] calls it on SIGHUP and when a key file changes.

mod keys;
mod verified;
mod watch;

#[cfg(test)]
mod tests;

use std::{
    path::Path,
    sync::{Arc, Mutex, PoisonError, RwLock},
    time::Duration,
};

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation, errors::ErrorKind};
use rand::Rng as _;
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

pub use self::{keys::KeyLoadError, watch::watch_jwks};
use self::{
    keys::{KeySet, KeySources, load_key_set},
    verified::VerifiedTokens,
};
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

/// The key material and rules for tokens. Clones share one key set, so a
/// reload through any clone is seen by all.
#[derive(Clone)]
pub struct JwtKeys {
    /// Verifies (and signs) tokens without `kid`; `None` turns HS256 off.
    hs256: Option<Arc<Hs256Key>>,
    /// The public keys by `kid`, swapped whole on reload.
    kid_keys: Arc<RwLock<Arc<KeySet>>>,
    /// Where the public keys come from, for reloads.
    sources: Arc<KeySources>,
    /// Issuer, audience, required claims and leeway; each key's validation
    /// is this with its one algorithm.
    base: Validation,
    issuer: String,
    audience: String,
    /// Tokens that verified, until they expire or the keys change.
    verified: Arc<VerifiedTokens>,
}

impl std::fmt::Debug for JwtKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JwtKeys")
            .field("issuer", &self.issuer)
            .field("audience", &self.audience)
            .field("hs256", &self.hs256.is_some())
            .field("kids", &self.current().kids())
            .finish_non_exhaustive()
    }
}

struct Hs256Key {
    decoding: DecodingKey,
    encoding: EncodingKey,
    validation: Validation,
}

/// The algorithms any key can be pinned to (HS256: the secret, without `kid`).
const ACCEPTED_ALGORITHMS: &[&str] = &["HS256", "RS256", "ES256", "EdDSA"];

/// The HS256 secret that verifies tokens without `kid`: the configured
/// secret always; the development secret only while no public key is
/// configured (with `jwt.keys` or `jwt.jwks_file`, an empty `jwt.secret`
/// turns HS256 off).
pub fn verification_secret<'a>(
    cfg: &JwtConfig,
    secret: &'a SecretString,
    source: &SecretSource,
) -> Option<&'a SecretString> {
    let public_keys = !cfg.keys.is_empty() || cfg.jwks_file.is_some();
    (*source == SecretSource::Configured || !public_keys).then_some(secret)
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

fn algorithm_rejected() -> AppError {
    unauthenticated("TOKEN_ALGORITHM_REJECTED", "the token's algorithm is not accepted")
}

fn key_unknown() -> AppError {
    unauthenticated(
        "TOKEN_KEY_UNKNOWN",
        "no configured key verifies this token (unknown `kid`)",
    )
}

fn decode_error(e: &jsonwebtoken::errors::Error) -> AppError {
    match e.kind() {
        ErrorKind::ExpiredSignature => unauthenticated("TOKEN_EXPIRED", "the token has expired"),
        ErrorKind::ImmatureSignature => unauthenticated("TOKEN_NOT_YET_VALID", "the token is not valid yet (nbf)"),
        ErrorKind::InvalidSignature => {
            unauthenticated("TOKEN_SIGNATURE_INVALID", "the token's signature does not verify")
        }
        ErrorKind::InvalidIssuer => unauthenticated("TOKEN_ISSUER_INVALID", "the token's issuer is not accepted"),
        ErrorKind::InvalidAudience => unauthenticated("TOKEN_AUDIENCE_INVALID", "the token's audience is not accepted"),
        ErrorKind::InvalidAlgorithm => algorithm_rejected(),
        ErrorKind::MissingRequiredClaim(_) | ErrorKind::InvalidClaimFormat(_) | ErrorKind::Json(_) => unauthenticated(
            "TOKEN_CLAIMS_INVALID",
            "the token lacks a required claim or has a malformed one",
        ),
        _ => unauthenticated("TOKEN_MALFORMED", "the bearer token is not a well-formed JWT"),
    }
}

/// The one place a verified token becomes an `Authenticated`.
fn authenticated(tenant_id: TenantId, user_id: UserId) -> Authenticated {
    Authenticated { tenant_id, user_id }
}

/// Issuer, audience, required claims and leeway; HS256 until a key pins
/// its own algorithm.
fn base_validation(cfg: &JwtConfig) -> Validation {
    let mut validation = Validation::new(Algorithm::HS256);
    validation.set_issuer(&[&cfg.issuer]);
    validation.set_audience(&[&cfg.audience]);
    validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
    validation.leeway = cfg.leeway.as_secs();
    validation.validate_exp = true;
    validation.validate_nbf = true;
    validation
}

impl Hs256Key {
    fn new(secret: &SecretString, base: &Validation) -> Result<Self, jsonwebtoken::errors::Error> {
        let bytes = secret.expose_secret().as_bytes();
        Ok(Self {
            decoding: DecodingKey::from_secret(bytes)?,
            encoding: EncodingKey::from_secret(bytes)?,
            validation: base.clone(),
        })
    }
}

impl JwtKeys {
    /// Keys for HS256 with `secret` only, requiring `cfg`'s issuer and
    /// audience (public keys in `cfg` are not loaded: see `from_config`).
    pub fn hs256(secret: &SecretString, cfg: &JwtConfig) -> Result<Self, jsonwebtoken::errors::Error> {
        let base = base_validation(cfg);
        Ok(Self {
            hs256: Some(Arc::new(Hs256Key::new(secret, &base)?)),
            kid_keys: Arc::default(),
            sources: Arc::new(KeySources {
                pem: Vec::new(),
                jwks_file: None,
                seen: Mutex::default(),
            }),
            base,
            issuer: cfg.issuer.clone(),
            audience: cfg.audience.clone(),
            verified: Arc::default(),
        })
    }

    /// Keys from configuration: `hs_secret` for tokens without `kid` (see
    /// [`verification_secret`]; `None` turns HS256 off), and the public keys
    /// of `jwt.keys` and `jwt.jwks_file`. Fails, naming the key, when a file
    /// is unreadable or holds no valid key for its algorithm, a kid repeats,
    /// or no key at all is configured.
    pub fn from_config(cfg: &JwtConfig, hs_secret: Option<&SecretString>) -> Result<Self, KeyLoadError> {
        let base = base_validation(cfg);
        let hs256 = hs_secret
            .map(|s| Hs256Key::new(s, &base).map(Arc::new))
            .transpose()
            .map_err(|_| KeyLoadError("key `jwt.secret`: not usable as an HS256 secret".into()))?;
        let sources = KeySources {
            pem: cfg.keys.clone(),
            jwks_file: cfg.jwks_file.clone(),
            seen: Mutex::default(),
        };
        if hs256.is_none() && !sources.has_files() {
            return Err(KeyLoadError(
                "no JWT key is configured: set `jwt.secret`, `jwt.keys` or `jwt.jwks_file`".into(),
            ));
        }
        let stamps = sources.stamps();
        let set = load_key_set(&sources, &base)?;
        sources.record(stamps);
        tracing::info!(hs256 = hs256.is_some(), kids = ?set.kids(), "JWT keys loaded");
        Ok(Self {
            hs256,
            kid_keys: Arc::new(RwLock::new(Arc::new(set))),
            sources: Arc::new(sources),
            base,
            issuer: cfg.issuer.clone(),
            audience: cfg.audience.clone(),
            verified: Arc::default(),
        })
    }

    fn current(&self) -> Arc<KeySet> {
        Arc::clone(&self.kid_keys.read().unwrap_or_else(PoisonError::into_inner))
    }

    /// Verifies a compact JWS and returns who it names. A token that
    /// verified before answers from the verified-token cache until its
    /// `exp` or the next key reload (`verified.rs`).
    pub fn verify(&self, token: &str) -> Result<Authenticated, AppError> {
        let now = jsonwebtoken::get_current_timestamp();
        if let Some(who) = self.verified.get(token, now) {
            return Ok(who);
        }
        // The generation before verifying: a reload meanwhile makes the
        // entry stale at once.
        let generation = self.verified.generation();
        let (who, claims) = self.verify_uncached(token)?;
        if claims.nbf.is_none_or(|nbf| nbf <= now) {
            self.verified.insert(token, who, claims.exp, generation, now);
        }
        Ok(who)
    }

    fn verify_uncached(&self, token: &str) -> Result<(Authenticated, Claims), AppError> {
        // Pin the algorithm before anything else: `none` or a malformed
        // header never reaches signature verification.
        let header = jsonwebtoken::decode_header(token).map_err(|_| {
            // The library has no `none` (or unknown) algorithm: read the
            // header's `alg` ourselves to name the refusal precisely.
            if header_alg(token).is_some_and(|alg| !ACCEPTED_ALGORITHMS.contains(&alg.as_str())) {
                algorithm_rejected()
            } else {
                unauthenticated("TOKEN_MALFORMED", "the bearer token is not a well-formed JWT")
            }
        })?;
        let set: Arc<KeySet>;
        let (key, validation) = match header.kid.as_deref() {
            // A kid selects one key, and the key's algorithm is the only one.
            Some(kid) => {
                set = self.current();
                let pinned = set.by_kid.get(kid).ok_or_else(key_unknown)?;
                if header.alg != pinned.algorithm {
                    return Err(algorithm_rejected());
                }
                (&pinned.key, &pinned.validation)
            }
            // No kid: the HS256 secret, as HS256, or nothing.
            None => {
                if header.alg != Algorithm::HS256 {
                    return Err(algorithm_rejected());
                }
                let hs = self.hs256.as_ref().ok_or_else(key_unknown)?;
                (&hs.decoding, &hs.validation)
            }
        };
        let claims = jsonwebtoken::decode::<Claims>(token, key, validation)
            .map_err(|e| decode_error(&e))?
            .claims;
        let tenant = Uuid::parse_str(&claims.tid)
            .map_err(|_| unauthenticated("TOKEN_CLAIMS_INVALID", "the token's `tid` claim is not a UUID"))?;
        let user = Uuid::parse_str(&claims.sub)
            .map_err(|_| unauthenticated("TOKEN_CLAIMS_INVALID", "the token's `sub` claim is not a UUID"))?;
        Ok((authenticated(TenantId(tenant), UserId(user)), claims))
    }

    /// Signs a token for `user` of `tenant`, valid for `ttl` (HS256).
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

    /// Signs arbitrary claims with the HS256 secret (tests and tools). Fails
    /// with `InvalidKeyFormat` when HS256 is off.
    pub fn sign(&self, claims: &Claims) -> Result<String, jsonwebtoken::errors::Error> {
        let hs = self.hs256.as_ref().ok_or(ErrorKind::InvalidKeyFormat)?;
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), claims, &hs.encoding)
    }
}
