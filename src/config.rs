//! Configuration: defaults → optional TOML file → `DESKD_*` environment.
//!
//! Environment keys map onto the nested structure by their first segment:
//! `DESKD_DATABASE_OWNER_URL` sets `database.owner_url`, `DESKD_JWT_SECRET`
//! sets `jwt.secret`, `DESKD_LISTEN_ADDR` sets `listen_addr`. A double
//! underscore always nests (`DESKD_RATE_LIMIT__TENANT__BURST`).

mod auth;
mod exports;
mod mail;
mod rate_limit;
mod server;
mod storage;
mod telemetry;

#[cfg(test)]
mod tests;

use std::{net::SocketAddr, time::Duration};

use figment::{
    Figment,
    providers::{Format, Serialized, Toml},
};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};

pub use self::{
    auth::{ApiKeysConfig, JwtConfig, JwtKeyAlgorithm, JwtKeyConfig},
    exports::{ExportsBackend, ExportsConfig},
    mail::{JobsConfig, SmtpConfig, SmtpTls},
    rate_limit::{PlanQuotas, Quota, RateLimitConfig},
    server::{HealthConfig, LogConfig, LogFormat, ServerConfig},
    storage::{CacheConfig, DatabaseConfig, RedisConfig, TenantCacheConfig},
    telemetry::TelemetryConfig,
};

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
    "smtp",
    "jobs",
    "exports",
    "telemetry",
];

/// deskd's whole configuration.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Where the gRPC server listens (`DESKD_LISTEN_ADDR`).
    pub listen_addr: SocketAddr,
    /// The admin HTTP listener (`DESKD_ADMIN_ADDR`): `/metrics` (Prometheus
    /// text), `/livez` and `/readyz`. Keep it off the public network.
    pub admin_addr: SocketAddr,
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
    /// The SMTP relay for outgoing e-mail.
    pub smtp: SmtpConfig,
    /// The background job worker.
    pub jobs: JobsConfig,
    /// Where ticket exports are written.
    pub exports: ExportsConfig,
    /// OpenTelemetry export.
    pub telemetry: TelemetryConfig,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            listen_addr: SocketAddr::from(([127, 0, 0, 1], 50051)),
            admin_addr: SocketAddr::from(([127, 0, 0, 1], 9090)),
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
            smtp: SmtpConfig::default(),
            jobs: JobsConfig::default(),
            exports: ExportsConfig::default(),
            telemetry: TelemetryConfig::default(),
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
        if self.server.max_in_flight_per_tenant == 0 {
            return bad("server.max_in_flight_per_tenant", "must be at least 1");
        }
        if self.server.max_concurrent_streams == 0 {
            return bad("server.max_concurrent_streams", "must be at least 1");
        }
        if self.server.max_concurrent_rpcs_per_connection == 0 {
            return bad("server.max_concurrent_rpcs_per_connection", "must be at least 1");
        }
        if !(16_384..=16_777_215).contains(&self.server.max_frame_size) {
            return bad("server.max_frame_size", "must be between 16384 and 16777215");
        }
        if self.server.max_request_duration.is_zero() {
            return bad("server.max_request_duration", "must be positive");
        }
        if self.server.handshake_timeout.is_zero() {
            return bad("server.handshake_timeout", "must be positive");
        }
        if self.server.max_connection_age.is_zero() {
            return bad("server.max_connection_age", "must be positive");
        }
        if self.server.max_connection_age_grace.is_zero() {
            return bad("server.max_connection_age_grace", "must be positive");
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
        self.validate_smtp_and_jobs()
    }

    /// The `smtp` and `jobs` sections.
    fn validate_smtp_and_jobs(&self) -> Result<(), ConfigError> {
        let bad = |key: &str, why: &str| Err(ConfigError(format!("key `{key}` ({}): {why}", env_name(key))));
        let smtp = &self.smtp;
        if smtp.host.trim().is_empty() {
            return bad("smtp.host", "must not be empty");
        }
        if smtp.port == 0 {
            return bad("smtp.port", "must be between 1 and 65535");
        }
        if smtp.from.parse::<lettre::message::Mailbox>().is_err() {
            return bad("smtp.from", "must be a mailbox such as `deskd <no-reply@example.com>`");
        }
        if smtp.timeout.is_zero() {
            return bad("smtp.timeout", "must be positive");
        }
        if smtp.username.is_some() != smtp.password.is_some() {
            return bad("smtp.password", "smtp.username and smtp.password must be set together");
        }
        let jobs = &self.jobs;
        if jobs.concurrency == 0 {
            return bad("jobs.concurrency", "must be at least 1");
        }
        for (key, d) in [
            ("jobs.poll_interval", jobs.poll_interval),
            ("jobs.lease", jobs.lease),
            ("jobs.backoff_base", jobs.backoff_base),
        ] {
            if d.is_zero() {
                return bad(key, "must be positive");
            }
        }
        if jobs.lease < Duration::from_millis(30) || jobs.lease.as_millis() > i32::MAX as u128 {
            return bad("jobs.lease", "must be between 30ms and 24 days");
        }
        if jobs.backoff_max < jobs.backoff_base {
            return bad("jobs.backoff_max", "must not be less than jobs.backoff_base");
        }
        self.validate_exports()?;
        self.validate_telemetry()
    }

    /// The `telemetry` section.
    fn validate_telemetry(&self) -> Result<(), ConfigError> {
        let bad = |key: &str, why: &str| Err(ConfigError(format!("key `{key}` ({}): {why}", env_name(key))));
        let t = &self.telemetry;
        if !t.otlp_endpoint.is_empty() {
            match url::Url::parse(&t.otlp_endpoint) {
                Ok(u) if matches!(u.scheme(), "http" | "https") && u.host().is_some() => {}
                _ => {
                    return bad(
                        "telemetry.otlp_endpoint",
                        "must be an http(s) URL such as http://collector:4317",
                    );
                }
            }
        }
        if !(0.0..=1.0).contains(&t.sampling_ratio) {
            return bad("telemetry.sampling_ratio", "must be between 0.0 and 1.0");
        }
        if t.service_name.trim().is_empty() {
            return bad("telemetry.service_name", "must not be empty");
        }
        if t.metrics_interval.is_zero() || t.export_timeout.is_zero() {
            return bad(
                "telemetry.metrics_interval",
                "metrics_interval and export_timeout must be positive",
            );
        }
        Ok(())
    }

    /// The `exports` section.
    fn validate_exports(&self) -> Result<(), ConfigError> {
        let bad = |key: &str, why: &str| Err(ConfigError(format!("key `{key}` ({}): {why}", env_name(key))));
        let e = &self.exports;
        match e.backend {
            ExportsBackend::Fs if e.dir.as_os_str().is_empty() => bad("exports.dir", "must not be empty"),
            ExportsBackend::Fs => Ok(()),
            ExportsBackend::S3 => {
                if e.s3_bucket.trim().is_empty() {
                    return bad("exports.s3_bucket", "must be set when exports.backend is s3");
                }
                if e.s3_region.trim().is_empty() {
                    return bad("exports.s3_region", "must not be empty");
                }
                if !e.s3_endpoint.is_empty() {
                    match url::Url::parse(&e.s3_endpoint) {
                        Ok(u) if u.scheme() == "https" => {}
                        Ok(u) if u.scheme() == "http" && e.s3_allow_http => {}
                        Ok(u) if u.scheme() == "http" => {
                            return bad(
                                "exports.s3_endpoint",
                                "is plain http: set exports.s3_allow_http to allow it",
                            );
                        }
                        _ => return bad("exports.s3_endpoint", "must be an http(s) URL"),
                    }
                }
                if e.s3_access_key_id.is_empty() != e.s3_secret_access_key.expose_secret().is_empty() {
                    return bad(
                        "exports.s3_secret_access_key",
                        "exports.s3_access_key_id and exports.s3_secret_access_key must be set together",
                    );
                }
                if e.s3_timeout.is_zero() {
                    return bad("exports.s3_timeout", "must be positive");
                }
                Ok(())
            }
        }
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
