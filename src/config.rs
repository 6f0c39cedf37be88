//! Configuration: defaults → optional TOML file → `DESKD_*` environment.
//!
//! Environment keys map onto the nested structure by their first segment:
//! `DESKD_DATABASE_OWNER_URL` sets `database.owner_url`, `DESKD_JWT_SECRET`
//! sets `jwt.secret`, `DESKD_LISTEN_ADDR` sets `listen_addr`. A double
//! underscore always nests (`DESKD_RATE_LIMIT__TENANT__BURST`).

use std::{net::SocketAddr, path::PathBuf, time::Duration};

use figment::{
    Figment,
    providers::{Format, Serialized, Toml},
};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};

/// The sections whose names prefix environment keys (`DESKD_<SECTION>_<KEY>`).
const SECTIONS: &[&str] = &[
    "database",
    "jwt",
    "server",
    "rate_limit",
    "tenant_cache",
    "log",
    "health",
    "api_keys",
    "redis",
    "cache",
];

/// deskd's whole configuration.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Where the gRPC server listens (`DESKD_LISTEN_ADDR`).
    pub listen_addr: SocketAddr,
    /// The deployment's server secret (`DESKD_SECRET_KEY`, at least 32
    /// bytes): page tokens and, without `api_keys.pepper`, API key digests
    /// are keyed by values derived from it, so every replica must share it.
    /// Empty: the JWT HS256 secret (or the development secret file) is used.
    #[serde(serialize_with = "serialize_secret")]
    pub secret_key: SecretString,
    /// PostgreSQL connections.
    pub database: DatabaseConfig,
    /// JWT verification (and minting by `deskd token mint`).
    pub jwt: JwtConfig,
    /// HTTP/2, message-size and concurrency limits.
    pub server: ServerConfig,
    /// Request rate limits.
    pub rate_limit: RateLimitConfig,
    /// The in-process tenant and principal cache.
    pub tenant_cache: TenantCacheConfig,
    /// Log output.
    pub log: LogConfig,
    /// Health reporting.
    pub health: HealthConfig,
    /// API keys.
    pub api_keys: ApiKeysConfig,
    /// Redis (optional).
    pub redis: RedisConfig,
    /// Response caches.
    pub cache: CacheConfig,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            listen_addr: SocketAddr::from(([127, 0, 0, 1], 50051)),
            secret_key: SecretString::from(""),
            database: DatabaseConfig::default(),
            jwt: JwtConfig::default(),
            server: ServerConfig::default(),
            rate_limit: RateLimitConfig::default(),
            tenant_cache: TenantCacheConfig::default(),
            log: LogConfig::default(),
            health: HealthConfig::default(),
            api_keys: ApiKeysConfig::default(),
            redis: RedisConfig::default(),
            cache: CacheConfig::default(),
        }
    }
}

/// PostgreSQL connection settings.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DatabaseConfig {
    /// The app role's URL, used for serving (`DESKD_DATABASE_URL`). Its user
    /// must not be a superuser, have BYPASSRLS, or own a table.
    #[serde(serialize_with = "serialize_secret")]
    pub url: SecretString,
    /// The owner's URL, used for migrations and operator commands
    /// (`DESKD_DATABASE_OWNER_URL`). Empty disables migrations on `serve`.
    #[serde(serialize_with = "serialize_secret")]
    pub owner_url: SecretString,
    /// Most pooled connections.
    pub max_connections: u32,
    /// Connections kept open while idle.
    pub min_connections: u32,
    /// How long an idle connection is kept.
    #[serde(with = "humantime_serde")]
    pub idle_timeout: Duration,
    /// How long a request waits for a free connection before UNAVAILABLE.
    #[serde(with = "humantime_serde")]
    pub acquire_timeout: Duration,
    /// Upper bound on one transaction's statements when the client sent no
    /// deadline; a shorter client deadline always wins.
    #[serde(with = "humantime_serde")]
    pub statement_timeout: Duration,
}

impl Default for DatabaseConfig {
    fn default() -> Self {
        Self {
            url: SecretString::from("postgres://deskd_app@127.0.0.1:5432/deskd"),
            owner_url: SecretString::from("postgres://postgres@127.0.0.1:5432/deskd"),
            max_connections: 20,
            min_connections: 0,
            idle_timeout: Duration::from_secs(30),
            acquire_timeout: Duration::from_secs(2),
            statement_timeout: Duration::from_secs(10),
        }
    }
}

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

/// Transport limits. tonic leaves several HTTP/2 limits unset, which removes
/// hyper's own defaults, so every one is explicit here.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// Concurrent HTTP/2 streams per connection.
    pub max_concurrent_streams: u32,
    /// Streams reset by the client before the server accepted them (guards
    /// against rapid-reset floods).
    pub max_pending_accept_reset_streams: usize,
    /// Streams the server may reset for protocol errors before it closes the
    /// connection.
    pub max_local_error_reset_streams: usize,
    /// Largest header list a client may send, in bytes.
    pub max_header_list_size: u32,
    /// Largest HTTP/2 frame, in bytes.
    pub max_frame_size: u32,
    /// Largest request message, in bytes.
    pub max_decoding_message_size: usize,
    /// Largest response message, in bytes.
    pub max_encoding_message_size: usize,
    /// HTTP/2 PING interval on idle connections.
    #[serde(with = "humantime_serde")]
    pub keepalive_interval: Duration,
    /// How long to wait for a PING answer before closing the connection.
    #[serde(with = "humantime_serde")]
    pub keepalive_timeout: Duration,
    /// RPCs in flight across all connections; more are shed at once with
    /// RESOURCE_EXHAUSTED instead of queueing.
    pub max_in_flight: usize,
    /// The longest an RPC may run, whatever deadline the client sent.
    #[serde(with = "humantime_serde")]
    pub max_request_duration: Duration,
    /// How long in-flight RPCs may take to finish after SIGTERM/SIGINT.
    #[serde(with = "humantime_serde")]
    pub shutdown_grace: Duration,
    /// An RPC slower than this logs a WARN `slow_rpc` event.
    #[serde(with = "humantime_serde")]
    pub slow_rpc_threshold: Duration,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            max_concurrent_streams: 256,
            max_pending_accept_reset_streams: 20,
            max_local_error_reset_streams: 1024,
            max_header_list_size: 16 * 1024,
            max_frame_size: 16 * 1024,
            max_decoding_message_size: 4 * 1024 * 1024,
            max_encoding_message_size: 4 * 1024 * 1024,
            keepalive_interval: Duration::from_secs(30),
            keepalive_timeout: Duration::from_secs(10),
            max_in_flight: 1024,
            max_request_duration: Duration::from_secs(30),
            shutdown_grace: Duration::from_secs(30),
            slow_rpc_threshold: Duration::from_secs(5),
        }
    }
}

/// One GCRA quota: a sustained rate and a burst.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Quota {
    /// Requests allowed per `period` on average.
    pub requests: u32,
    /// The period `requests` are spread over.
    #[serde(with = "humantime_serde")]
    pub period: Duration,
    /// Requests that may arrive at once after a quiet spell.
    pub burst: u32,
}

/// The quotas of one plan; unset fields fall back to the top-level quotas.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct PlanQuotas {
    /// Shared by all callers of one tenant.
    pub tenant: Option<Quota>,
    /// One person within a tenant.
    pub principal: Option<Quota>,
    /// One service account (API key caller) within a tenant.
    pub service_principal: Option<Quota>,
}

/// Rate limits (GCRA): in-process without Redis, shared through Redis with it.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RateLimitConfig {
    /// Off disables every limit.
    pub enabled: bool,
    /// The limit shared by all callers of one tenant (default plan).
    pub tenant: Quota,
    /// The limit of one person within a tenant (default plan).
    pub principal: Quota,
    /// The limit of one service account within a tenant (default plan);
    /// higher than a person's, for service-to-service traffic.
    pub service_principal: Quota,
    /// Named plans (`tenants.plan`), e.g. `[rate_limit.plans.reference]`
    /// with `tenant = { requests = 100, period = "15m", burst = 100 }`.
    /// A tenant's own `rate_limits` column overrides its plan.
    pub plans: std::collections::BTreeMap<String, PlanQuotas>,
    /// When the shared store (Redis) is unreachable: admit (true, the
    /// default) or refuse with UNAVAILABLE (false).
    pub fail_open: bool,
}

impl Default for RateLimitConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            tenant: Quota {
                requests: 1000,
                period: Duration::from_secs(1),
                burst: 2000,
            },
            principal: Quota {
                requests: 200,
                period: Duration::from_secs(1),
                burst: 400,
            },
            service_principal: Quota {
                requests: 1000,
                period: Duration::from_secs(1),
                burst: 2000,
            },
            plans: std::collections::BTreeMap::new(),
            fail_open: true,
        }
    }
}

/// Redis: shared rate limits, the second cache tier and cross-replica
/// invalidation. Without a URL deskd runs as a single replica with
/// in-process implementations.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RedisConfig {
    /// `redis://host:port/db` (`DESKD_REDIS_URL`); empty disables Redis.
    #[serde(serialize_with = "serialize_secret")]
    pub url: SecretString,
    /// Prefix of every key and channel, so deployments (and tests) can share a Redis.
    pub key_prefix: String,
    /// Most pooled connections.
    pub max_connections: u32,
    /// How long to wait for a pooled connection.
    #[serde(with = "humantime_serde")]
    pub connect_timeout: Duration,
    /// Bound on every Redis call: past it the call counts as failed and
    /// deskd goes on without Redis for that request.
    #[serde(with = "humantime_serde")]
    pub op_timeout: Duration,
    /// How often a Redis outage is logged (once per interval, not per request).
    #[serde(with = "humantime_serde")]
    pub log_interval: Duration,
}

impl Default for RedisConfig {
    fn default() -> Self {
        Self {
            url: SecretString::from(""),
            key_prefix: "deskd".into(),
            max_connections: 32,
            connect_timeout: Duration::from_millis(500),
            op_timeout: Duration::from_millis(100),
            log_interval: Duration::from_secs(10),
        }
    }
}

/// Response caches.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CacheConfig {
    /// How long a Stats response is served from cache (per tenant and caller).
    #[serde(with = "humantime_serde")]
    pub stats_ttl: Duration,
    /// How long the in-process tier keeps an entry at most (the Redis tier
    /// keeps it for the full TTL).
    #[serde(with = "humantime_serde")]
    pub local_ttl: Duration,
}

impl Default for CacheConfig {
    fn default() -> Self {
        Self {
            stats_ttl: Duration::from_secs(60),
            local_ttl: Duration::from_secs(30),
        }
    }
}

/// The in-process cache of tenants and principals.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TenantCacheConfig {
    /// How long a looked-up tenant is trusted (suspensions take this long).
    #[serde(with = "humantime_serde")]
    pub ttl: Duration,
    /// How long a looked-up user or API key is trusted when nothing on this
    /// replica changed it (changes made here invalidate at once).
    #[serde(with = "humantime_serde")]
    pub principal_ttl: Duration,
    /// Most entries kept.
    pub capacity: u64,
}

impl Default for TenantCacheConfig {
    fn default() -> Self {
        Self {
            ttl: Duration::from_secs(60),
            principal_ttl: Duration::from_secs(300),
            capacity: 100_000,
        }
    }
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

/// Log output format.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines, for development.
    Text,
    /// One JSON object per line, for production.
    Json,
}

/// Log settings.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    /// `text` or `json`.
    pub format: LogFormat,
    /// A tracing filter such as `info` or `deskd=debug,info`.
    pub filter: String,
}

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            format: LogFormat::Text,
            filter: "info,sqlx=warn".into(),
        }
    }
}

/// Health reporting.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HealthConfig {
    /// How often PostgreSQL is probed.
    #[serde(with = "humantime_serde")]
    pub check_interval: Duration,
    /// How long one probe may take before it counts as a failure.
    #[serde(with = "humantime_serde")]
    pub check_timeout: Duration,
}

impl Default for HealthConfig {
    fn default() -> Self {
        Self {
            check_interval: Duration::from_secs(2),
            check_timeout: Duration::from_secs(1),
        }
    }
}

fn serialize_secret<S: serde::Serializer>(s: &SecretString, ser: S) -> Result<S::Ok, S::Error> {
    // Serialising is only used to seed figment with defaults; a configured
    // secret never passes through here on its way to a log.
    ser.serialize_str(s.expose_secret())
}

/// A configuration that could not be loaded; the message names the key.
#[derive(Debug, thiserror::Error)]
#[error("invalid configuration: {0}")]
pub struct ConfigError(String);

impl Config {
    /// Loads defaults, then `file` (when given), then the `DESKD_*` variables
    /// of `env`, and validates the result.
    pub fn load(
        file: Option<&std::path::Path>,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Self, ConfigError> {
        let mut fig = Figment::from(Serialized::defaults(Config::default()));
        if let Some(path) = file {
            if !path.exists() {
                return Err(ConfigError(format!("config file {} does not exist", path.display())));
            }
            fig = fig.merge(Toml::file_exact(path));
        }
        let env = env_dict(env);
        if !env.is_empty() {
            fig = fig.merge(Serialized::defaults(env));
        }
        let cfg: Config = fig.extract().map_err(|e| {
            let key = e.path.join(".");
            let mut msg = e.kind.to_string();
            if !key.is_empty() {
                msg = format!("key `{key}` ({}): {msg}", env_name(&key));
            }
            ConfigError(msg)
        })?;
        cfg.validate()?;
        Ok(cfg)
    }

    /// Loads from the process environment.
    pub fn from_process_env(file: Option<&std::path::Path>) -> Result<Self, ConfigError> {
        Self::load(file, std::env::vars())
    }

    /// Checks cross-field rules that serde cannot.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let bad = |key: &str, why: &str| Err(ConfigError(format!("key `{key}` ({}): {why}", env_name(key))));
        if self.database.url.expose_secret().trim().is_empty() {
            return bad("database.url", "must not be empty");
        }
        if self.database.max_connections == 0 {
            return bad("database.max_connections", "must be at least 1");
        }
        if self.database.min_connections > self.database.max_connections {
            return bad("database.min_connections", "must not exceed database.max_connections");
        }
        if self.database.acquire_timeout.is_zero() {
            return bad("database.acquire_timeout", "must be positive");
        }
        if self.database.statement_timeout.is_zero() {
            return bad("database.statement_timeout", "must be positive");
        }
        let secret = self.jwt.secret.expose_secret();
        if !secret.is_empty() && secret.len() < 32 {
            return bad("jwt.secret", "must be at least 32 bytes");
        }
        if self.jwt.leeway > Duration::from_secs(60) {
            return bad("jwt.leeway", "must be at most 60s");
        }
        if self.jwt.issuer.is_empty() {
            return bad("jwt.issuer", "must not be empty");
        }
        if self.jwt.audience.is_empty() {
            return bad("jwt.audience", "must not be empty");
        }
        self.validate_jwt_keys()?;
        if self.server.max_in_flight == 0 {
            return bad("server.max_in_flight", "must be at least 1");
        }
        if self.server.max_concurrent_streams == 0 {
            return bad("server.max_concurrent_streams", "must be at least 1");
        }
        if !(16_384..=16_777_215).contains(&self.server.max_frame_size) {
            return bad("server.max_frame_size", "must be between 16384 and 16777215");
        }
        if self.server.max_request_duration.is_zero() {
            return bad("server.max_request_duration", "must be positive");
        }
        let mut quotas = vec![
            ("rate_limit.tenant".to_string(), self.rate_limit.tenant),
            ("rate_limit.principal".to_string(), self.rate_limit.principal),
            (
                "rate_limit.service_principal".to_string(),
                self.rate_limit.service_principal,
            ),
        ];
        for (name, plan) in &self.rate_limit.plans {
            for (part, q) in [
                ("tenant", plan.tenant),
                ("principal", plan.principal),
                ("service_principal", plan.service_principal),
            ] {
                if let Some(q) = q {
                    quotas.push((format!("rate_limit.plans.{name}.{part}"), q));
                }
            }
        }
        for (key, q) in quotas {
            if q.requests == 0 || q.period.is_zero() || q.burst == 0 {
                return Err(ConfigError(format!(
                    "key `{key}`: requests, period and burst must all be positive"
                )));
            }
        }
        if !self
            .redis
            .key_prefix
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | ':'))
            || self.redis.key_prefix.is_empty()
        {
            return bad("redis.key_prefix", "must be non-empty [A-Za-z0-9_.:-]");
        }
        if self.redis.op_timeout.is_zero() || self.redis.connect_timeout.is_zero() || self.redis.max_connections == 0 {
            return bad(
                "redis",
                "op_timeout, connect_timeout and max_connections must be positive",
            );
        }
        if self.cache.stats_ttl.is_zero() || self.cache.local_ttl.is_zero() {
            return bad("cache", "stats_ttl and local_ttl must be positive");
        }
        let key = self.secret_key.expose_secret();
        if !key.is_empty() && key.len() < 32 {
            return bad("secret_key", "must be at least 32 bytes");
        }
        let pepper = self.api_keys.pepper.expose_secret();
        if !pepper.is_empty() && pepper.len() < 32 {
            return bad("api_keys.pepper", "must be at least 32 bytes");
        }
        if self.api_keys.last_use_flush_interval.is_zero() {
            return bad("api_keys.last_use_flush_interval", "must be positive");
        }
        if self.tenant_cache.ttl.is_zero() || self.tenant_cache.principal_ttl.is_zero() {
            return bad("tenant_cache", "ttl and principal_ttl must be positive");
        }
        if self.health.check_interval.is_zero() || self.health.check_timeout.is_zero() {
            return bad("health", "check_interval and check_timeout must be positive");
        }
        Ok(())
    }
}

impl Config {
    /// `jwt.keys`, `jwt.jwks_file` and `jwt.reload_interval`. The files are
    /// only checked to be readable here; their keys are parsed when the
    /// server builds its key set (`JwtKeys::from_config`), with messages that
    /// name the key the same way.
    fn validate_jwt_keys(&self) -> Result<(), ConfigError> {
        let jwt = &self.jwt;
        let mut kids = std::collections::HashSet::new();
        for (i, key) in jwt.keys.iter().enumerate() {
            let at = format!("key `jwt.keys[{i}]` (kid `{}`)", key.kid);
            if key.kid.trim().is_empty() {
                return Err(ConfigError(format!("key `jwt.keys[{i}].kid`: must not be empty")));
            }
            if !kids.insert(key.kid.as_str()) {
                return Err(ConfigError(format!(
                    "{at}: duplicate kid; every kid in `jwt.keys` must be unique"
                )));
            }
            if let Err(e) = std::fs::File::open(&key.pem_file) {
                return Err(ConfigError(format!(
                    "{at}: pem_file {} cannot be read: {e}",
                    key.pem_file.display()
                )));
            }
        }
        if let Some(path) = &jwt.jwks_file
            && let Err(e) = std::fs::File::open(path)
        {
            return Err(ConfigError(format!(
                "key `jwt.jwks_file` (DESKD_JWT_JWKS_FILE): {} cannot be read: {e}",
                path.display()
            )));
        }
        if jwt.reload_interval.is_zero() {
            return Err(ConfigError(
                "key `jwt.reload_interval` (DESKD_JWT_RELOAD_INTERVAL): must be positive".into(),
            ));
        }
        Ok(())
    }
}

/// `database.owner_url` → `DESKD_DATABASE_OWNER_URL`.
fn env_name(key: &str) -> String {
    let mut parts = key.split('.');
    let first = parts.next().unwrap_or_default().to_uppercase();
    let rest: Vec<String> = parts.map(|p| p.to_uppercase()).collect();
    match rest.len() {
        0 => format!("DESKD_{first}"),
        1 => format!("DESKD_{first}_{}", rest[0]),
        _ => format!("DESKD_{first}__{}", rest.join("__")),
    }
}

/// Turns `DESKD_*` variables into a nested figment dictionary. A value whose
/// key holds a string by default stays a string (`DESKD_JWT_ISSUER=12345`);
/// any other value is parsed by figment's rules (numbers, booleans).
fn env_dict(env: impl IntoIterator<Item = (String, String)>) -> figment::value::Dict {
    use figment::value::{Dict, Value};
    let defaults = Value::serialize(Config::default()).ok();
    let mut root = Dict::new();
    let mut vars: Vec<(String, String)> = env
        .into_iter()
        .filter_map(|(k, v)| k.strip_prefix("DESKD_").map(|rest| (rest.to_lowercase(), v)))
        // DESKD_CONFIG names the file; DESKD_TEST_* belong to the test suite.
        .filter(|(k, _)| !k.is_empty() && k != "config" && !k.starts_with("test_"))
        .collect();
    vars.sort();
    for (key, raw) in vars {
        let path = env_key_path(&key);
        let default_is_string = defaults
            .as_ref()
            .and_then(|d| d.find_ref(&path.join(".")))
            .is_some_and(|v| matches!(v, Value::String(..)));
        let value: Value = if default_is_string {
            Value::from(raw.clone())
        } else {
            raw.parse().unwrap_or_else(|_| Value::from(raw.clone()))
        };
        let mut dict = &mut root;
        for (i, part) in path.iter().enumerate() {
            if i + 1 == path.len() {
                dict.insert(part.clone(), value.clone());
            } else {
                let entry = dict.entry(part.clone()).or_insert_with(|| Value::from(Dict::new()));
                if !matches!(entry, Value::Dict(..)) {
                    *entry = Value::from(Dict::new());
                }
                let Value::Dict(_, inner) = entry else { break };
                dict = inner;
            }
        }
    }
    root
}

fn env_key_path(key: &str) -> Vec<String> {
    if key.contains("__") {
        return key.split("__").map(str::to_string).collect();
    }
    for section in SECTIONS {
        if let Some(rest) = key.strip_prefix(section).and_then(|r| r.strip_prefix('_'))
            && !rest.is_empty()
        {
            return vec![(*section).to_string(), rest.to_string()];
        }
    }
    vec![key.to_string()]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn defaults_are_valid() {
        let cfg = Config::load(None, env(&[])).expect("defaults load");
        assert_eq!(cfg.listen_addr.to_string(), "127.0.0.1:50051");
        assert_eq!(cfg.database.max_connections, 20);
        assert_eq!(cfg.database.idle_timeout, Duration::from_secs(30));
        assert_eq!(cfg.database.acquire_timeout, Duration::from_secs(2));
    }

    #[test]
    fn environment_overrides_nested_keys() {
        let cfg = Config::load(
            None,
            env(&[
                ("DESKD_LISTEN_ADDR", "0.0.0.0:6000"),
                ("DESKD_DATABASE_OWNER_URL", "postgres://o@h/db"),
                ("DESKD_DATABASE_MAX_CONNECTIONS", "7"),
                ("DESKD_JWT_SECRET", "0123456789abcdef0123456789abcdef"),
                ("DESKD_JWT_ISSUER", "me"),
                ("DESKD_RATE_LIMIT__TENANT__BURST", "9"),
                ("DESKD_SERVER_SHUTDOWN_GRACE", "3s"),
                ("DESKD_JWT_AUDIENCE", "12345"),
                ("DESKD_TEST_PG_HOST", "ignored: belongs to the test suite"),
                ("OTHER", "ignored"),
            ]),
        )
        .expect("loads");
        assert_eq!(cfg.listen_addr.to_string(), "0.0.0.0:6000");
        assert_eq!(cfg.database.owner_url.expose_secret(), "postgres://o@h/db");
        assert_eq!(cfg.database.max_connections, 7);
        assert_eq!(cfg.jwt.issuer, "me");
        assert_eq!(cfg.jwt.audience, "12345", "numeric-looking strings stay strings");
        assert_eq!(cfg.rate_limit.tenant.burst, 9);
        assert_eq!(cfg.server.shutdown_grace, Duration::from_secs(3));
    }

    #[test]
    fn bad_values_name_the_key() {
        let err = Config::load(None, env(&[("DESKD_DATABASE_MAX_CONNECTIONS", "many")])).expect_err("must fail");
        assert!(err.to_string().contains("database.max_connections"), "{err}");
        assert!(err.to_string().contains("DESKD_DATABASE_MAX_CONNECTIONS"), "{err}");

        let err = Config::load(None, env(&[("DESKD_JWT_SECRET", "short")])).expect_err("must fail");
        assert!(err.to_string().contains("jwt.secret"), "{err}");

        let err = Config::load(None, env(&[("DESKD_JWT_LEEWAY", "2m")])).expect_err("must fail");
        assert!(err.to_string().contains("jwt.leeway"), "{err}");

        let err = Config::load(None, env(&[("DESKD_NO_SUCH_KEY", "1")])).expect_err("must fail");
        assert!(err.to_string().contains("no_such_key"), "{err}");
    }

    #[test]
    fn the_reference_designs_limits_are_expressible() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("deskd.toml");
        std::fs::write(
            &path,
            "[rate_limit.plans.reference]\n\
             tenant = { requests = 100, period = \"15m\", burst = 100 }\n\
             principal = { requests = 60, period = \"1m\", burst = 60 }\n",
        )
        .expect("write");
        let cfg = Config::load(Some(&path), env(&[])).expect("loads");
        let plan = cfg.rate_limit.plans["reference"];
        assert_eq!(
            plan.tenant,
            Some(Quota {
                requests: 100,
                period: Duration::from_secs(900),
                burst: 100
            })
        );
        assert_eq!(plan.principal.map(|q| q.period), Some(Duration::from_secs(60)));
        assert_eq!(plan.service_principal, None);
        assert!(cfg.rate_limit.service_principal.requests > cfg.rate_limit.principal.requests);
    }

    #[test]
    fn file_then_environment() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("deskd.toml");
        std::fs::write(
            &path,
            "listen_addr = \"127.0.0.1:7000\"\n[database]\nmax_connections = 3\nurl = \"postgres://a@b/c\"\n",
        )
        .expect("write");
        let cfg = Config::load(Some(&path), env(&[("DESKD_DATABASE_MAX_CONNECTIONS", "4")])).expect("loads");
        assert_eq!(cfg.listen_addr.to_string(), "127.0.0.1:7000");
        assert_eq!(cfg.database.max_connections, 4);
        assert_eq!(cfg.database.url.expose_secret(), "postgres://a@b/c");
    }

    #[test]
    fn jwt_keys_load_from_the_file_and_are_validated_naming_the_key() {
        let dir = tempfile::tempdir().expect("tempdir");
        let pem = dir.path().join("a.pem");
        std::fs::write(&pem, "parsed later, by JwtKeys::from_config").expect("write pem");
        let jwks = dir.path().join("jwks.json");
        std::fs::write(&jwks, "{}").expect("write jwks");
        let path = dir.path().join("deskd.toml");
        let load = |keys: &str, env_pairs: &[(&str, &str)]| {
            std::fs::write(&path, format!("[jwt]\nreload_interval = \"2s\"\n{keys}")).expect("write toml");
            Config::load(Some(&path), env(env_pairs))
        };
        let key = |kid: &str, alg: &str, file: &std::path::Path| {
            format!(
                "[[jwt.keys]]\nkid = \"{kid}\"\nalgorithm = \"{alg}\"\npem_file = {:?}\n",
                file.display().to_string()
            )
        };
        let jwks_str = jwks.display().to_string();

        let cfg = load(
            &format!("{}{}", key("a", "ES256", &pem), key("b", "EdDSA", &pem)),
            &[("DESKD_JWT_JWKS_FILE", &jwks_str)],
        )
        .expect("loads");
        assert_eq!(cfg.jwt.keys.len(), 2);
        assert_eq!(
            cfg.jwt.keys[0],
            JwtKeyConfig {
                kid: "a".into(),
                algorithm: JwtKeyAlgorithm::ES256,
                pem_file: pem.clone(),
            }
        );
        assert_eq!(cfg.jwt.keys[1].algorithm, JwtKeyAlgorithm::EdDSA);
        assert_eq!(cfg.jwt.jwks_file.as_deref(), Some(jwks.as_path()));
        assert_eq!(cfg.jwt.reload_interval, Duration::from_secs(2));
        let defaults = Config::load(None, env(&[])).expect("defaults");
        assert!(defaults.jwt.keys.is_empty() && defaults.jwt.jwks_file.is_none());
        assert_eq!(defaults.jwt.reload_interval, Duration::from_secs(10));

        let missing = dir.path().join("missing.pem");
        for (keys, env_pairs, expected) in [
            (key("a", "HS512", &pem), vec![], "HS512"),
            (
                key("a", "RS256", &missing),
                vec![],
                "key `jwt.keys[0]` (kid `a`): pem_file",
            ),
            (
                format!("{}{}", key("a", "RS256", &pem), key("a", "ES256", &pem)),
                vec![],
                "key `jwt.keys[1]` (kid `a`): duplicate kid",
            ),
            (
                key(" ", "RS256", &pem),
                vec![],
                "key `jwt.keys[0].kid`: must not be empty",
            ),
            (
                String::new(),
                vec![("DESKD_JWT_JWKS_FILE", "/no/such/jwks.json")],
                "key `jwt.jwks_file` (DESKD_JWT_JWKS_FILE)",
            ),
            (
                String::new(),
                vec![("DESKD_JWT_RELOAD_INTERVAL", "0s")],
                "key `jwt.reload_interval` (DESKD_JWT_RELOAD_INTERVAL): must be positive",
            ),
        ] {
            let err = load(&keys, &env_pairs).expect_err(expected);
            assert!(err.to_string().contains(expected), "`{err}` lacks `{expected}`");
        }
        let err = load(&key("a", "HS512", &pem), &[]).expect_err("unknown algorithm");
        assert!(err.to_string().contains("jwt.keys"), "{err}");
    }
}
