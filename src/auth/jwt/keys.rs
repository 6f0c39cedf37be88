//! Public keys: loading PEM files and a JWKS file into a `KeySet`,
//! checking every key before it is used, and the file stamps the watcher
//! compares.

use std::{
    collections::HashMap,
    path::{Path, PathBuf},
    sync::{Arc, Mutex, PoisonError},
    time::SystemTime,
};

use jsonwebtoken::{
    Algorithm, DecodingKey, Validation,
    jwk::{AlgorithmParameters, Jwk},
};

use super::JwtKeys;
use crate::config::{JwtKeyAlgorithm, JwtKeyConfig};

/// One public key, pinned to one algorithm.
pub(super) struct PinnedKey {
    pub(super) algorithm: Algorithm,
    pub(super) key: DecodingKey,
    pub(super) validation: Validation,
}

/// The public keys in force, by `kid`.
#[derive(Default)]
pub(super) struct KeySet {
    pub(super) by_kid: HashMap<String, PinnedKey>,
}

impl KeySet {
    pub(super) fn kids(&self) -> Vec<&str> {
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
pub(super) struct KeySources {
    pub(super) pem: Vec<JwtKeyConfig>,
    pub(super) jwks_file: Option<PathBuf>,
    pub(super) seen: Mutex<Vec<Option<FileStamp>>>,
}

/// What the watcher compares: a change in any of these means "reload".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct FileStamp {
    modified: Option<SystemTime>,
    len: u64,
    inode: u64,
}

impl KeySources {
    pub(super) fn has_files(&self) -> bool {
        !self.pem.is_empty() || self.jwks_file.is_some()
    }

    fn files(&self) -> impl Iterator<Item = &Path> {
        self.pem
            .iter()
            .map(|k| k.pem_file.as_path())
            .chain(self.jwks_file.as_deref())
    }

    /// The current stamp of every key file (`None`: unreadable).
    pub(super) fn stamps(&self) -> Vec<Option<FileStamp>> {
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

    pub(super) fn record(&self, stamps: Vec<Option<FileStamp>>) {
        *self.seen.lock().unwrap_or_else(PoisonError::into_inner) = stamps;
    }

    pub(super) fn changed(&self) -> bool {
        let now = self.stamps();
        *self.seen.lock().unwrap_or_else(PoisonError::into_inner) != now
    }
}

/// Public keys that could not be loaded. The message names the key (`kid`,
/// file, position in the JWKS) and never holds key material.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct KeyLoadError(pub(super) String);

fn algorithm_of(a: JwtKeyAlgorithm) -> Algorithm {
    match a {
        JwtKeyAlgorithm::RS256 => Algorithm::RS256,
        JwtKeyAlgorithm::ES256 => Algorithm::ES256,
        JwtKeyAlgorithm::EdDSA => Algorithm::EdDSA,
    }
}
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

pub(super) fn modulus_bits(n: &[u8]) -> usize {
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
pub(super) fn parse_jwks(bytes: &[u8]) -> Result<Vec<(String, Algorithm, DecodingKey)>, String> {
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
pub(super) fn load_key_set(sources: &KeySources, base: &Validation) -> Result<KeySet, KeyLoadError> {
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

impl JwtKeys {
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
                self.verified.keys_changed();
                Ok(())
            }
            Err(e) => {
                tracing::warn!(error = %e, "JWT key reload failed: keeping the keys in force");
                Err(e)
            }
        }
    }
}
