//! Redis: a bb8 pool of multiplexed connections (a bare multiplexed
//! connection never reconnects; the pool replaces broken ones), key
//! namespacing, a short bound on every call, and outage bookkeeping.
//!
//! A connection is not PINGed on every checkout (that was a second round
//! trip per rate-limit decision): it marks itself broken when a call fails
//! at the connection level (I/O, dropped, timed out: its response timeout is
//! the op timeout), and the pool drops it when it comes back.
//!
//! Redis is never the system of record here: every caller has a way to go
//! on without it (rate limits fail open or closed by config, caches fall
//! through to PostgreSQL), so every call returns `Err(RedisDown)` rather
//! than waiting. bb8's `get` does not return a failed connect's error: a
//! caller waits out the whole op timeout. So once the pool could not give a
//! connection, every call fails at once for `redis.retry_interval`, and the
//! first call after it tries Redis again. (A dead pooled connection fails
//! fast and is replaced; it does not count.)

use std::{
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use bb8_redis::bb8;
use redis::{RedisError, RedisFuture, Value, aio::MultiplexedConnection};
use secrecy::ExposeSecret as _;

use crate::config::RedisConfig;

/// A Redis call failed or timed out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RedisDown;

/// A pooled connection.
pub type Conn = bb8::PooledConnection<'static, Manager>;

/// A multiplexed connection that remembers a connection-level failure.
pub struct Tracked {
    conn: MultiplexedConnection,
    broken: bool,
}

impl Tracked {
    fn note<T>(&mut self, result: &Result<T, RedisError>) {
        if let Err(e) = result
            && (e.is_io_error()
                || e.is_timeout()
                || e.is_connection_dropped()
                || e.is_connection_refusal()
                || e.is_unrecoverable_error())
        {
            self.broken = true;
        }
    }
}

impl redis::aio::ConnectionLike for Tracked {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a redis::Cmd) -> RedisFuture<'a, Value> {
        Box::pin(async move {
            let result = self.conn.req_packed_command(cmd).await;
            self.note(&result);
            result
        })
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a redis::Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        Box::pin(async move {
            let result = self.conn.req_packed_commands(pipeline, offset, count).await;
            self.note(&result);
            result
        })
    }

    fn get_db(&self) -> i64 {
        self.conn.get_db()
    }
}

/// Makes `Tracked` connections; a broken one is not put back.
pub struct Manager {
    client: redis::Client,
    config: redis::AsyncConnectionConfig,
}

impl bb8::ManageConnection for Manager {
    type Connection = Tracked;
    type Error = RedisError;

    async fn connect(&self) -> Result<Tracked, RedisError> {
        let conn = self
            .client
            .get_multiplexed_async_connection_with_config(&self.config)
            .await?;
        Ok(Tracked { conn, broken: false })
    }

    async fn is_valid(&self, conn: &mut Tracked) -> Result<(), RedisError> {
        redis::cmd("PING").query_async::<()>(conn).await
    }

    fn has_broken(&self, conn: &mut Tracked) -> bool {
        conn.broken
    }
}

/// The shared Redis handle.
pub struct Redis {
    pool: bb8::Pool<Manager>,
    client: redis::Client,
    prefix: String,
    op_timeout: Duration,
    log_interval: Duration,
    failures: AtomicU64,
    last_log: Mutex<Option<Instant>>,
    retry_interval: Duration,
    /// When this handle was made: `down_until` counts from it.
    born: Instant,
    /// Until when (ns after `born`) calls fail at once; 0: not down. An
    /// atomic, not a lock: every Redis call reads it.
    down_until: AtomicU64,
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
        let manager = Manager {
            client: client.clone(),
            config: redis::AsyncConnectionConfig::new()
                .set_connection_timeout(Some(cfg.connect_timeout))
                .set_response_timeout(Some(cfg.op_timeout)),
        };
        let pool = bb8::Pool::builder()
            .max_size(cfg.max_connections)
            .connection_timeout(cfg.connect_timeout)
            // No PING per checkout: a connection that failed at the
            // connection level marks itself broken and is not put back.
            .test_on_check_out(false)
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
            retry_interval: cfg.retry_interval,
            born: Instant::now(),
            down_until: AtomicU64::new(0),
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

    /// Runs `op` on a pooled connection, bounded by the op timeout, inside a
    /// client span named `what` when traces are on; a failure is counted and
    /// logged at most once per log interval.
    pub async fn run<T, F, Fut>(&self, what: &'static str, op: F) -> Result<T, RedisDown>
    where
        F: FnOnce(Conn) -> Fut,
        Fut: std::future::Future<Output = redis::RedisResult<T>>,
    {
        let span = Self::span(what);
        let result = tracing::Instrument::instrument(self.run_untraced(what, op), span.clone()).await;
        if result.is_err() {
            span.record("otel.status_code", "ERROR");
        }
        result
    }

    /// A client span for a Redis operation `what` (disabled when traces are
    /// off). For callers whose Redis work is shared by several requests: each
    /// request waits inside its own span.
    pub fn span(what: &'static str) -> tracing::Span {
        if crate::telemetry::traces_enabled() {
            tracing::info_span!(
                "redis",
                otel.name = what,
                otel.kind = "client",
                otel.status_code = tracing::field::Empty,
                db.system.name = "redis",
                db.operation.name = what,
                db.operation.batch.size = tracing::field::Empty,
            )
        } else {
            tracing::Span::none()
        }
    }

    /// [`Redis::run`] without a span of its own.
    pub async fn run_untraced<T, F, Fut>(&self, what: &'static str, op: F) -> Result<T, RedisDown>
    where
        F: FnOnce(Conn) -> Fut,
        Fut: std::future::Future<Output = redis::RedisResult<T>>,
    {
        if self.known_down() {
            self.note_failure(what, "down (retrying after redis.retry_interval)");
            return Err(RedisDown);
        }
        // Whether the pool gave a connection: a dead pooled connection fails
        // fast and is replaced, but a pool that cannot connect makes every
        // caller wait out the op timeout.
        let mut got_connection = false;
        let attempt = async {
            let conn = self.pool.get_owned().await.map_err(|e| e.to_string())?;
            got_connection = true;
            op(conn).await.map_err(|e| e.to_string())
        };
        let result = tokio::time::timeout(self.op_timeout, attempt).await;
        if !got_connection && !matches!(result, Ok(Ok(_))) {
            self.mark_down();
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

    /// Whether the pool failed to give a connection less than
    /// `retry_interval` ago.
    fn known_down(&self) -> bool {
        let until = self.down_until.load(Ordering::Relaxed);
        until != 0 && self.nanos_since_born() < until
    }

    fn mark_down(&self) {
        let until = self
            .nanos_since_born()
            .saturating_add(self.retry_interval.as_nanos() as u64);
        self.down_until.store(until.max(1), Ordering::Relaxed);
    }

    fn nanos_since_born(&self) -> u64 {
        u64::try_from(self.born.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }

    /// Connections requested from the pool since start (each call that
    /// tried Redis asked for one).
    pub fn pool_gets(&self) -> u64 {
        self.pool.state().statistics.get_started
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

#[cfg(test)]
mod tests {
    use super::*;

    fn unreachable(retry_interval: Duration) -> Arc<Redis> {
        // A port nothing listens on: every connect is refused.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("a free port");
        let cfg = RedisConfig {
            url: secrecy::SecretString::from(format!("redis://127.0.0.1:{port}/0")),
            retry_interval,
            ..RedisConfig::default()
        };
        Redis::from_config(&cfg).expect("valid").expect("configured")
    }

    async fn ping(redis: &Redis) -> Result<(), RedisDown> {
        redis
            .run("ping", |mut c| async move {
                redis::cmd("PING").query_async::<()>(&mut *c).await
            })
            .await
    }

    /// The pool hands a refused connect to a waiting `get` only as its own
    /// timeout: each call would wait out the op timeout. After one failure,
    /// calls within `retry_interval` do not ask the pool at all.
    #[tokio::test]
    async fn after_a_connection_failure_calls_fail_at_once_until_the_retry_interval() {
        let redis = unreachable(Duration::from_secs(3600));
        for _ in 0..20 {
            assert_eq!(ping(&redis).await, Err(RedisDown));
        }
        assert_eq!(redis.pool_gets(), 1, "only the first call tried Redis");
        assert_eq!(redis.failures(), 20, "every call counts as degraded");

        // With no interval every call tries again: the window is what saves them.
        let redis = unreachable(Duration::ZERO);
        for _ in 0..5 {
            assert_eq!(ping(&redis).await, Err(RedisDown));
        }
        assert_eq!(redis.pool_gets(), 5);
    }
}
