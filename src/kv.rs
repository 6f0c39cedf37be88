//! Redis: a bb8 pool of multiplexed connections (a bare multiplexed
//! connection never reconnects; the pool replaces broken ones), key
//! namespacing, a short bound on every call, and outage bookkeeping.
//!
//! Redis is never the system of record here: every caller has a way to go
//! on without it (rate limits fail open or closed by config, caches fall
//! through to PostgreSQL), so every call returns `Err(RedisDown)` rather
//! than waiting.

use std::{
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use bb8_redis::{RedisConnectionManager, bb8};
use secrecy::ExposeSecret as _;

use crate::config::RedisConfig;

/// A Redis call failed or timed out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RedisDown;

/// A pooled connection.
pub type Conn = bb8::PooledConnection<'static, RedisConnectionManager>;

/// The shared Redis handle.
pub struct Redis {
    pool: bb8::Pool<RedisConnectionManager>,
    client: redis::Client,
    prefix: String,
    op_timeout: Duration,
    log_interval: Duration,
    failures: AtomicU64,
    last_log: Mutex<Option<Instant>>,
}

impl std::fmt::Debug for Redis {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Redis")
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

/// The configuration could not be used.
#[derive(Debug, thiserror::Error)]
#[error("redis.url is not a valid Redis URL: {0}")]
pub struct BadRedisUrl(String);

impl Redis {
    /// A handle for `cfg`, or `None` when no URL is configured. Connects
    /// lazily: a Redis that is down at start does not stop deskd.
    pub fn from_config(cfg: &RedisConfig) -> Result<Option<Arc<Self>>, BadRedisUrl> {
        let url = cfg.url.expose_secret();
        if url.is_empty() {
            return Ok(None);
        }
        let client = redis::Client::open(url).map_err(|e| BadRedisUrl(e.to_string()))?;
        let manager = RedisConnectionManager::new(url).map_err(|e| BadRedisUrl(e.to_string()))?;
        let pool = bb8::Pool::builder()
            .max_size(cfg.max_connections)
            .connection_timeout(cfg.connect_timeout)
            // A checked-out connection is PINGed: a multiplexed connection
            // broken by a Redis restart is replaced instead of failing forever.
            .test_on_check_out(true)
            .retry_connection(false)
            .build_unchecked(manager);
        Ok(Some(Arc::new(Self {
            pool,
            client,
            prefix: cfg.key_prefix.clone(),
            op_timeout: cfg.op_timeout,
            log_interval: cfg.log_interval,
            failures: AtomicU64::new(0),
            last_log: Mutex::new(None),
        })))
    }

    /// `<prefix>:<rest>`.
    pub fn key(&self, rest: &str) -> String {
        format!("{}:{rest}", self.prefix)
    }

    /// The invalidation channel of this deployment.
    pub fn channel(&self) -> String {
        self.key("invalidate")
    }

    /// A client for dedicated (pub/sub) connections.
    pub fn client(&self) -> &redis::Client {
        &self.client
    }

    /// Runs `op` on a pooled connection, bounded by the op timeout; a failure
    /// is counted and logged at most once per log interval.
    pub async fn run<T, F, Fut>(&self, what: &'static str, op: F) -> Result<T, RedisDown>
    where
        F: FnOnce(Conn) -> Fut,
        Fut: std::future::Future<Output = redis::RedisResult<T>>,
    {
        let attempt = async {
            let conn = self.pool.get_owned().await.map_err(|e| e.to_string())?;
            op(conn).await.map_err(|e| e.to_string())
        };
        let span = if crate::telemetry::traces_enabled() {
            tracing::info_span!(
                "redis",
                otel.name = what,
                otel.kind = "client",
                otel.status_code = tracing::field::Empty,
                db.system.name = "redis",
                db.operation.name = what,
            )
        } else {
            tracing::Span::none()
        };
        let attempt = tracing::Instrument::instrument(attempt, span.clone());
        let result = tokio::time::timeout(self.op_timeout, attempt).await;
        if !matches!(result, Ok(Ok(_))) {
            span.record("otel.status_code", "ERROR");
        }
        match result {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => {
                self.note_failure(what, &e);
                Err(RedisDown)
            }
            Err(_) => {
                self.note_failure(what, "timed out");
                Err(RedisDown)
            }
        }
    }

    /// Counts a failure; logs once per interval.
    pub fn note_failure(&self, what: &'static str, err: &str) {
        let n = self.failures.fetch_add(1, Ordering::Relaxed) + 1;
        let component = if what.starts_with("cache") { "cache" } else { what };
        crate::telemetry::metrics::metrics().redis_fail_open(component);
        let due = match self.last_log.lock() {
            Ok(mut last) => {
                let due = last.is_none_or(|t| t.elapsed() >= self.log_interval);
                if due {
                    *last = Some(Instant::now());
                }
                due
            }
            Err(_) => false,
        };
        if due {
            tracing::warn!(
                operation = what,
                error = err,
                failures_total = n,
                "redis unavailable; degrading"
            );
        }
    }

    /// Redis calls that failed or timed out since start.
    pub fn failures(&self) -> u64 {
        self.failures.load(Ordering::Relaxed)
    }
}
