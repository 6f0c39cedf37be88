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
mod validate;

#[cfg(test)]
mod tests;

use std::net::SocketAddr;

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
