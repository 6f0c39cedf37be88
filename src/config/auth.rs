//! The `jwt` and `api_keys` sections.

use std::{path::PathBuf, time::Duration};

use secrecy::SecretString;
use serde::{Deserialize, Serialize};

use super::serialize_secret;

/// JWT settings.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct JwtConfig {
    /// The HS256 secret (`DESKD_JWT_SECRET`), at least 32 bytes. Empty means:
    /// use (and create if missing) the development secret in `dev_secret_file`.
    #[serde(serialize_with = "serialize_secret")]
    pub secret: SecretString,
    /// Required `iss` claim (`DESKD_JWT_ISSUER`).
    pub issuer: String,
    /// Required `aud` claim (`DESKD_JWT_AUDIENCE`).
    pub audience: String,
    /// Clock skew tolerated on `exp`/`nbf`; at most 60 s.
    #[serde(with = "humantime_serde")]
    pub leeway: Duration,
    /// Where the development secret lives when no secret is configured.
    pub dev_secret_file: PathBuf,
    /// Public keys from PEM files (`[[jwt.keys]]`), each chosen by the
    /// token's `kid` and pinned to one algorithm. Configurable in the file
    /// only. With any key here or a `jwks_file`, an empty `secret` turns
    /// HS256 off instead of falling back to the development secret.
    pub keys: Vec<JwtKeyConfig>,
    /// An RFC 7517 JWK Set file (`DESKD_JWT_JWKS_FILE`) whose signing keys
    /// are chosen by `kid` like `keys`. Reloaded on SIGHUP and when the file
    /// changes, without a restart.
    pub jwks_file: Option<PathBuf>,
    /// How often the key files are checked for changes (modification time,
    /// length, inode).
    #[serde(with = "humantime_serde")]
    pub reload_interval: Duration,
}

impl Default for JwtConfig {
    fn default() -> Self {
        Self {
            secret: SecretString::from(""),
            issuer: "deskd".into(),
            audience: "deskd".into(),
            leeway: Duration::from_secs(30),
            dev_secret_file: PathBuf::from(".deskd/dev-jwt-secret"),
            keys: Vec::new(),
            jwks_file: None,
            reload_interval: Duration::from_secs(10),
        }
    }
}

/// One public key from a PEM file (`[[jwt.keys]]`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JwtKeyConfig {
    /// The `kid` a token names to be verified by this key; unique across
    /// `jwt.keys` and the JWKS file.
    pub kid: String,
    /// The one algorithm this key verifies.
    pub algorithm: JwtKeyAlgorithm,
    /// The public key: SPKI (`BEGIN PUBLIC KEY`), or PKCS#1
    /// (`BEGIN RSA PUBLIC KEY`) for RS256. Private keys are refused.
    pub pem_file: PathBuf,
}

/// The asymmetric algorithms a configured key can be pinned to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum JwtKeyAlgorithm {
    /// RSASSA-PKCS1-v1_5 with SHA-256; RSA keys of at least 2048 bits.
    RS256,
    /// ECDSA on P-256 with SHA-256.
    ES256,
    /// Ed25519.
    EdDSA,
}

/// API key settings.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ApiKeysConfig {
    /// The server-side key the stored digests of API key secrets are MAC'd
    /// with (`DESKD_API_KEYS_PEPPER`), at least 32 bytes. Every replica must
    /// share it; changing it invalidates every key. Empty: derived from the
    /// JWT HS256 secret (or the development secret file).
    #[serde(serialize_with = "serialize_secret")]
    pub pepper: SecretString,
    /// How often `last_use_time` of used keys is written (batched).
    #[serde(with = "humantime_serde")]
    pub last_use_flush_interval: Duration,
}

impl Default for ApiKeysConfig {
    fn default() -> Self {
        Self {
            pepper: SecretString::from(""),
            last_use_flush_interval: Duration::from_secs(10),
        }
    }
}
