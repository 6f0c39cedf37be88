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

use std::{
    collections::HashMap,
    future::Future,
    path::{Path, PathBuf},
    sync::{Arc, Mutex, PoisonError, RwLock},
    time::{Duration, SystemTime},
};

use jsonwebtoken::{
    Algorithm, DecodingKey, EncodingKey, Header, Validation,
    errors::ErrorKind,
    jwk::{AlgorithmParameters, Jwk},
};
use rand::Rng as _;
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::Authenticated;
use crate::{
    config::{JwtConfig, JwtKeyAlgorithm, JwtKeyConfig},
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

/// One public key, pinned to one algorithm.
struct PinnedKey {
    algorithm: Algorithm,
    key: DecodingKey,
    validation: Validation,
}

/// The public keys in force, by `kid`.
#[derive(Default)]
struct KeySet {
    by_kid: HashMap<String, PinnedKey>,
}

impl KeySet {
    fn kids(&self) -> Vec<&str> {
        let mut kids: Vec<&str> = self.by_kid.keys().map(String::as_str).collect();
        kids.sort_unstable();
        kids
    }

    fn insert(&mut self, kid: String, algorithm: Algorithm, key: DecodingKey, base: &Validation) -> bool {
        if self.by_kid.contains_key(&kid) {
            return false;
        }
        let mut validation = base.clone();
        validation.algorithms = vec![algorithm];
        self.by_kid.insert(
            kid,
            PinnedKey {
                algorithm,
                key,
                validation,
            },
        );
        true
    }
}

/// The files public keys are read from, and what they looked like at the
/// last load attempt.
struct KeySources {
    pem: Vec<JwtKeyConfig>,
    jwks_file: Option<PathBuf>,
    seen: Mutex<Vec<Option<FileStamp>>>,
}

/// What the watcher compares: a change in any of these means "reload".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct FileStamp {
    modified: Option<SystemTime>,
    len: u64,
    inode: u64,
}

impl KeySources {
    fn has_files(&self) -> bool {
        !self.pem.is_empty() || self.jwks_file.is_some()
    }

    fn files(&self) -> impl Iterator<Item = &Path> {
        self.pem
            .iter()
            .map(|k| k.pem_file.as_path())
            .chain(self.jwks_file.as_deref())
    }

    /// The current stamp of every key file (`None`: unreadable).
    fn stamps(&self) -> Vec<Option<FileStamp>> {
        self.files()
            .map(|path| {
                let meta = std::fs::metadata(path).ok()?;
                #[cfg(unix)]
                let inode = std::os::unix::fs::MetadataExt::ino(&meta);
                #[cfg(not(unix))]
                let inode = 0;
                Some(FileStamp {
                    modified: meta.modified().ok(),
                    len: meta.len(),
                    inode,
                })
            })
            .collect()
    }

    fn record(&self, stamps: Vec<Option<FileStamp>>) {
        *self.seen.lock().unwrap_or_else(PoisonError::into_inner) = stamps;
    }

    fn changed(&self) -> bool {
        let now = self.stamps();
        *self.seen.lock().unwrap_or_else(PoisonError::into_inner) != now
    }
}

/// Public keys that could not be loaded. The message names the key (`kid`,
/// file, position in the JWKS) and never holds key material.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct KeyLoadError(String);

fn algorithm_of(a: JwtKeyAlgorithm) -> Algorithm {
    match a {
        JwtKeyAlgorithm::RS256 => Algorithm::RS256,
        JwtKeyAlgorithm::ES256 => Algorithm::ES256,
        JwtKeyAlgorithm::EdDSA => Algorithm::EdDSA,
    }
}

/// The algorithms any key can be pinned to (HS256: the secret, without `kid`).
const ACCEPTED_ALGORITHMS: &[&str] = &["HS256", "RS256", "ES256", "EdDSA"];

/// The shortest RSA modulus accepted (RFC 7518 §3.3).
const MIN_RSA_BITS: usize = 2048;

/// Checks that `key` is usable for `alg` now, so a bad key fails the load
/// and not every later verification.
fn check_key(alg: Algorithm, key: &DecodingKey) -> Result<(), String> {
    match alg {
        Algorithm::RS256 => {
            // Parses the PKCS#1 DER of a PEM key; passes n through for a JWK.
            let jwk = Jwk::from_decoding_key(key, None).map_err(|_| "is not a valid RSA public key".to_string())?;
            let AlgorithmParameters::RSA(rsa) = &jwk.algorithm else {
                return Err("is not an RSA public key".into());
            };
            let n = base64::Engine::decode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, &rsa.n)
                .map_err(|_| "is not a valid RSA public key".to_string())?;
            let bits = modulus_bits(&n);
            if bits < MIN_RSA_BITS {
                return Err(format!(
                    "is a {bits}-bit RSA key; RS256 needs at least {MIN_RSA_BITS} bits"
                ));
            }
            Ok(())
        }
        Algorithm::ES256 | Algorithm::EdDSA => {
            // The Ed25519 verifier slices the first 32 bytes: check the
            // length first rather than panic on a short key.
            if alg == Algorithm::EdDSA && key.try_get_as_bytes().map(<[u8]>::len).ok() != Some(32) {
                return Err("is not an Ed25519 public key".into());
            }
            // Building the verifier parses the point; the (empty) signature
            // then simply fails to verify.
            jsonwebtoken::crypto::verify("", b"", key, alg).map_err(|_| {
                if alg == Algorithm::ES256 {
                    "is not a P-256 public key".to_string()
                } else {
                    "is not an Ed25519 public key".to_string()
                }
            })?;
            Ok(())
        }
        _ => Err(format!("uses {alg:?}, which deskd does not accept")),
    }
}

fn modulus_bits(n: &[u8]) -> usize {
    match n.iter().position(|b| *b != 0) {
        Some(i) => (n.len() - i) * 8 - n[i].leading_zeros() as usize,
        None => 0,
    }
}

/// A PEM public key for `algorithm`, checked.
fn pem_key(algorithm: JwtKeyAlgorithm, pem: &[u8]) -> Result<DecodingKey, String> {
    if pem.windows(16).any(|w| w == b"PRIVATE KEY-----") {
        return Err("holds a private key: give the public key (`openssl pkey -in KEY -pubout`)".into());
    }
    let (parsed, what) = match algorithm {
        JwtKeyAlgorithm::RS256 => (DecodingKey::from_rsa_pem(pem), "an RSA public key"),
        JwtKeyAlgorithm::ES256 => (DecodingKey::from_ec_pem(pem), "a P-256 public key"),
        JwtKeyAlgorithm::EdDSA => (DecodingKey::from_ed_pem(pem), "an Ed25519 public key"),
    };
    let key = parsed.map_err(|_| format!("is not {what} in PEM (algorithm {algorithm:?})"))?;
    check_key(algorithm_of(algorithm), &key)?;
    Ok(key)
}

/// The algorithm of a JWK: its `alg`, or what `kty`/`crv` leave no doubt
/// about (an EC P-256 key is ES256, an OKP Ed25519 key is EdDSA; an RSA key
/// alone could be RS256, RS384, PS256, …, so it needs `alg`).
fn jwk_algorithm(kty: &str, crv: Option<&str>, alg: Option<&str>) -> Result<Algorithm, String> {
    match (kty, crv, alg) {
        ("RSA", _, Some("RS256")) => Ok(Algorithm::RS256),
        ("EC", Some("P-256"), None | Some("ES256")) => Ok(Algorithm::ES256),
        ("OKP", Some("Ed25519"), None | Some("EdDSA")) => Ok(Algorithm::EdDSA),
        ("oct", _, _) => Err("is a symmetric (`oct`) key: deskd takes no shared secrets from a JWKS file".into()),
        ("RSA", _, None) => {
            Err("is an RSA key without `alg`, so its algorithm is ambiguous: set \"alg\": \"RS256\"".into())
        }
        (_, _, Some(a)) if ["RS256", "ES256", "EdDSA"].contains(&a) => Err(format!(
            "has alg `{a}`, which does not fit kty `{kty}`{}",
            crv.map(|c| format!(" crv `{c}`")).unwrap_or_default()
        )),
        (_, _, Some(a)) => Err(format!("has alg `{a}`; deskd accepts RS256, ES256 and EdDSA")),
        (_, _, None) => Err(format!(
            "has no `alg`, and kty `{kty}`{} does not determine one deskd accepts (RS256, ES256, EdDSA)",
            crv.map(|c| format!(" crv `{c}`")).unwrap_or_default()
        )),
    }
}

/// The signing keys of an RFC 7517 JWK Set: `(kid, algorithm, key)`. Keys
/// whose `use` is not `sig`, or whose `key_ops` lack `verify`, are skipped;
/// every other key must carry a `kid`, a determinable, accepted algorithm
/// and no private part, or the whole set is refused.
fn parse_jwks(bytes: &[u8]) -> Result<Vec<(String, Algorithm, DecodingKey)>, String> {
    // Parsing into a `Value` reports only syntax (line and column), never content.
    let doc: serde_json::Value = serde_json::from_slice(bytes).map_err(|e| format!("is not JSON: {e}"))?;
    let entries = doc
        .get("keys")
        .and_then(serde_json::Value::as_array)
        .ok_or("has no `keys` array")?;
    let mut out = Vec::new();
    for (i, entry) in entries.iter().enumerate() {
        let obj = entry.as_object().ok_or(format!("key #{i} is not a JSON object"))?;
        let field = |name: &str| -> Result<Option<&str>, String> {
            match obj.get(name) {
                None => Ok(None),
                Some(serde_json::Value::String(s)) => Ok(Some(s.as_str())),
                Some(_) => Err(format!("key #{i}: `{name}` is not a string")),
            }
        };
        let kid = field("kid")?.filter(|k| !k.trim().is_empty());
        let label = match kid {
            Some(k) => format!("key #{i} (kid `{k}`)"),
            None => format!("key #{i}"),
        };
        if obj.contains_key("use") && field("use")? != Some("sig") {
            continue;
        }
        // `key_ops` (RFC 7517 §4.3), when present, must allow "verify".
        if let Some(ops) = obj.get("key_ops") {
            let ops = ops.as_array().ok_or(format!("{label}: `key_ops` is not an array"))?;
            if !ops.iter().any(|op| op.as_str() == Some("verify")) {
                continue;
            }
        }
        let kid = kid.ok_or(format!("{label} has no `kid`: every signing key must carry one"))?;
        let kty = field("kty")?.ok_or(format!("{label} has no `kty`"))?;
        let algorithm = jwk_algorithm(kty, field("crv")?, field("alg")?).map_err(|why| format!("{label} {why}"))?;
        // Like a private PEM: a verifier has no business holding signing keys.
        if ["d", "p", "q", "dp", "dq", "qi"].iter().any(|f| obj.contains_key(*f)) {
            return Err(format!("{label} holds private key material: give the public JWK Set"));
        }
        // Only now the library's parser; its messages could quote values,
        // so they are not passed on.
        let jwk: Jwk =
            serde_json::from_value(entry.clone()).map_err(|_| format!("{label} is not a valid {algorithm:?} JWK"))?;
        let key = DecodingKey::from_jwk(&jwk).map_err(|_| format!("{label} is not a valid {algorithm:?} JWK"))?;
        check_key(algorithm, &key).map_err(|why| format!("{label} {why}"))?;
        if out.iter().any(|(k, _, _)| k == kid) {
            return Err(format!("{label}: duplicate kid"));
        }
        out.push((kid.to_string(), algorithm, key));
    }
    if out.is_empty() {
        return Err("has no signing keys".into());
    }
    Ok(out)
}

/// Reads every PEM file and the JWKS file into one key set.
fn load_key_set(sources: &KeySources, base: &Validation) -> Result<KeySet, KeyLoadError> {
    let mut set = KeySet::default();
    for (i, key) in sources.pem.iter().enumerate() {
        let at = || {
            format!(
                "key `jwt.keys[{i}]` (kid `{}`, pem_file {})",
                key.kid,
                key.pem_file.display()
            )
        };
        if key.kid.trim().is_empty() {
            return Err(KeyLoadError(format!("key `jwt.keys[{i}].kid`: must not be empty")));
        }
        let pem = std::fs::read(&key.pem_file).map_err(|e| KeyLoadError(format!("{}: cannot be read: {e}", at())))?;
        let decoding = pem_key(key.algorithm, &pem).map_err(|why| KeyLoadError(format!("{}: {why}", at())))?;
        if !set.insert(key.kid.clone(), algorithm_of(key.algorithm), decoding, base) {
            return Err(KeyLoadError(format!("{}: duplicate kid", at())));
        }
    }
    if let Some(path) = &sources.jwks_file {
        let at = || format!("key `jwt.jwks_file` ({})", path.display());
        let bytes = std::fs::read(path).map_err(|e| KeyLoadError(format!("{}: cannot be read: {e}", at())))?;
        for (kid, algorithm, decoding) in parse_jwks(&bytes).map_err(|why| KeyLoadError(format!("{}: {why}", at())))? {
            if !set.insert(kid.clone(), algorithm, decoding, base) {
                return Err(KeyLoadError(format!(
                    "{}: kid `{kid}` is also in `jwt.keys`; every kid must be unique",
                    at()
                )));
            }
        }
    }
    Ok(set)
}

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
        })
    }

    fn current(&self) -> Arc<KeySet> {
        Arc::clone(&self.kid_keys.read().unwrap_or_else(PoisonError::into_inner))
    }

    /// Re-reads the PEM files and the JWKS file and swaps the public keys
    /// in one step. When the files do not load, the keys in force stay and
    /// a warning (naming the file, never key material) is logged. The HS256
    /// secret is not re-read.
    pub fn reload(&self) -> Result<(), KeyLoadError> {
        // Stamp before reading: a change during the read is seen next time,
        // and a failed load is not retried until the files change again.
        self.sources.record(self.sources.stamps());
        match load_key_set(&self.sources, &self.base) {
            Ok(set) => {
                tracing::info!(kids = ?set.kids(), "JWT keys reloaded");
                *self.kid_keys.write().unwrap_or_else(PoisonError::into_inner) = Arc::new(set);
                Ok(())
            }
            Err(e) => {
                tracing::warn!(error = %e, "JWT key reload failed: keeping the keys in force");
                Err(e)
            }
        }
    }

    /// Verifies a compact JWS and returns who it names.
    pub fn verify(&self, token: &str) -> Result<Authenticated, AppError> {
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
        Ok(authenticated(TenantId(tenant), UserId(user)))
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

/// Reloads `keys` on SIGHUP and whenever a key file's modification time,
/// length or inode changes (checked every `interval`), until `stop`
/// completes. Returns at once when no key file is configured, leaving
/// SIGHUP alone.
pub async fn watch_jwks(keys: Arc<JwtKeys>, interval: Duration, stop: impl Future<Output = ()>) {
    if !keys.sources.has_files() {
        return;
    }
    #[cfg(unix)]
    let mut hangup = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) {
        Ok(s) => Some(s),
        Err(e) => {
            tracing::warn!(error = %e, "cannot listen for SIGHUP: JWT keys reload on file changes only");
            None
        }
    };
    #[cfg(not(unix))]
    let mut hangup: Option<()> = None;
    tokio::pin!(stop);
    loop {
        tokio::select! {
            () = &mut stop => return,
            () = next_hangup(&mut hangup) => {
                tracing::info!("SIGHUP: reloading JWT keys");
                let _ = keys.reload();
            }
            () = tokio::time::sleep(interval) => {
                if keys.sources.changed() {
                    tracing::info!("a JWT key file changed: reloading");
                    let _ = keys.reload();
                }
            }
        }
    }
}

#[cfg(unix)]
async fn next_hangup(signal: &mut Option<tokio::signal::unix::Signal>) {
    if let Some(s) = signal.as_mut()
        && s.recv().await.is_some()
    {
        return;
    }
    std::future::pending().await
}

#[cfg(not(unix))]
async fn next_hangup(_: &mut Option<()>) {
    std::future::pending().await
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
}
