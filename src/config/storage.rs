//! The `database`, `redis`, `cache` and `tenant_cache` sections.

use std::time::Duration;

use secrecy::SecretString;
use serde::{Deserialize, Serialize};

use super::serialize_secret;

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
    /// After the pool could not give a call a connection (refused, timed
    /// out), how long every call fails at once instead of waiting out
    /// `op_timeout` again; the first call after it tries Redis again.
    #[serde(with = "humantime_serde")]
    pub retry_interval: Duration,
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
            retry_interval: Duration::from_millis(500),
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
