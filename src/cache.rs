//! Two-tier caching: a small in-process tier (moka) over a shared Redis
//! tier, with single flight, precise invalidation and cross-replica
//! invalidation over Redis pub/sub.
//!
//! - `get_or_load`: in-process hit → done; else one loader per key per
//!   replica (concurrent misses wait for it) reads Redis, then PostgreSQL,
//!   and fills both tiers. "Not found" is never cached. The status says
//!   whether this request caused the PostgreSQL load (`Miss`) or not (`Hit`).
//! - `invalidate`: drops the in-process entry, deletes the Redis entry and
//!   publishes `<cache>|<key>` so every replica drops its in-process copy.
//! - Redis down: the Redis tier is skipped (bounded by its op timeout) and
//!   loads go to PostgreSQL; invalidation stays local until Redis returns,
//!   when every replica clears its in-process tier (it may have missed
//!   messages).

use std::{
    collections::HashMap,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use futures_util::{StreamExt as _, future::BoxFuture};
use redis::AsyncCommands as _;
use serde::{Serialize, de::DeserializeOwned};
use tracing::Instrument as _;

use crate::{error::AppError, kv::Redis};

/// Whether a cached read caused a load from the system of record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheStatus {
    /// Served without loading from PostgreSQL.
    Hit,
    /// This request loaded the value from PostgreSQL.
    Miss,
}

impl CacheStatus {
    /// The `x-cache` metadata value.
    pub fn as_str(self) -> &'static str {
        match self {
            CacheStatus::Hit => "hit",
            CacheStatus::Miss => "miss",
        }
    }
}

/// Rebuilds an error shared by moka's single-flight loader.
pub fn unshare(err: Arc<AppError>) -> AppError {
    match &*err {
        AppError::DeadlineExceeded => AppError::DeadlineExceeded,
        AppError::Unavailable { dependency, source } => AppError::Unavailable {
            dependency,
            source: anyhow::anyhow!("{source:#}"),
        },
        other => AppError::Internal(anyhow::anyhow!("{other:#}")),
    }
}

/// Something that can drop in-process entries when told over pub/sub.
pub trait LocalInvalidate: Send + Sync + 'static {
    /// Drops one in-process entry.
    fn invalidate_local<'a>(&'a self, key: &'a str) -> BoxFuture<'a, ()>;
    /// Drops every in-process entry.
    fn clear_local(&self);
}

struct Inner<V> {
    name: &'static str,
    local: moka::future::Cache<String, Option<V>>,
    redis: Option<Arc<Redis>>,
    shared_ttl: Duration,
}

/// A named two-tier cache of `V`.
pub struct TwoTier<V> {
    inner: Arc<Inner<V>>,
}

impl<V> Clone for TwoTier<V> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
        }
    }
}

impl<V> TwoTier<V>
where
    V: Clone + Serialize + DeserializeOwned + Send + Sync + 'static,
{
    /// A cache named `name` (also its Redis key space and pub/sub tag).
    pub fn new(
        name: &'static str,
        capacity: u64,
        local_ttl: Duration,
        shared_ttl: Duration,
        redis: Option<Arc<Redis>>,
    ) -> Self {
        Self {
            inner: Arc::new(Inner {
                name,
                local: moka::future::Cache::builder()
                    .time_to_live(local_ttl)
                    .max_capacity(capacity)
                    .build(),
                redis,
                shared_ttl,
            }),
        }
    }

    fn shared_key(&self, redis: &Redis, key: &str) -> String {
        redis.key(&format!("cache:{}:{key}", self.inner.name))
    }

    async fn shared_get(&self, key: &str) -> Option<V> {
        let redis = self.inner.redis.as_ref()?;
        let k = self.shared_key(redis, key);
        let raw: Option<Vec<u8>> = redis
            .run("cache_get", |mut c| async move { c.get(k).await })
            .await
            .ok()
            .flatten();
        raw.and_then(|b| serde_json::from_slice(&b).ok())
    }

    async fn shared_set(&self, key: &str, value: &V) {
        let Some(redis) = self.inner.redis.as_ref() else { return };
        let Ok(bytes) = serde_json::to_vec(value) else { return };
        let k = self.shared_key(redis, key);
        let ttl = self.inner.shared_ttl.as_secs().max(1);
        let _ = redis
            .run(
                "cache_set",
                |mut c| async move { c.set_ex::<_, _, ()>(k, bytes, ttl).await },
            )
            .await;
    }

    /// The value under `key`, loading it with `load` on a miss.
    ///
    /// An in-process hit returns before the loader's future is even built:
    /// that future holds a whole tenant transaction and is large, and
    /// building and moving it on every hit was half of a cached RPC's CPU
    /// (BENCHMARKS.md, "Profile of a cached RPC"). The miss path is boxed so
    /// its size does not inflate every caller's future either.
    pub async fn get_or_load<F, Fut>(&self, key: &str, load: F) -> Result<(Option<V>, CacheStatus), AppError>
    where
        F: FnOnce() -> Fut + Send,
        Fut: std::future::Future<Output = Result<Option<V>, AppError>> + Send,
    {
        let span = if crate::telemetry::traces_enabled() {
            tracing::info_span!(
                "cache",
                otel.name = %format!("cache {}", self.inner.name),
                cache.name = self.inner.name,
                cache.result = tracing::field::Empty,
            )
        } else {
            tracing::Span::none()
        };
        if let Some(Some(v)) = self.inner.local.get(key).instrument(span.clone()).await {
            self.record(&span, CacheStatus::Hit);
            return Ok((Some(v), CacheStatus::Hit));
        }
        Box::pin(self.load_through(key, load, span)).await
    }

    /// The miss path of `get_or_load`: single flight per key, Redis, then
    /// the loader.
    async fn load_through<F, Fut>(
        &self,
        key: &str,
        load: F,
        span: tracing::Span,
    ) -> Result<(Option<V>, CacheStatus), AppError>
    where
        F: FnOnce() -> Fut + Send,
        Fut: std::future::Future<Output = Result<Option<V>, AppError>> + Send,
    {
        let loaded = Arc::new(AtomicBool::new(false));
        let flag = loaded.clone();
        let this = self.clone();
        let k = key.to_string();
        let found = self
            .inner
            .local
            .try_get_with(key.to_string(), async move {
                if let Some(v) = this.shared_get(&k).await {
                    return Ok(Some(v));
                }
                flag.store(true, Ordering::Relaxed);
                let v = load().await?;
                if let Some(v) = &v {
                    this.shared_set(&k, v).await;
                }
                Ok::<_, AppError>(v)
            })
            .instrument(span.clone())
            .await
            .map_err(unshare)?;
        if found.is_none() {
            self.inner.local.invalidate(key).await;
        }
        let status = if loaded.load(Ordering::Relaxed) {
            CacheStatus::Miss
        } else {
            CacheStatus::Hit
        };
        self.record(&span, status);
        Ok((found, status))
    }

    fn record(&self, span: &tracing::Span, status: CacheStatus) {
        crate::telemetry::metrics::metrics().cache(self.inner.name, status == CacheStatus::Hit);
        span.record("cache.result", status.as_str());
    }

    /// Drops `key` everywhere: here, in Redis, and (by pub/sub) on every replica.
    pub async fn invalidate(&self, key: &str) {
        self.inner.local.invalidate(key).await;
        if let Some(redis) = &self.inner.redis {
            let k = self.shared_key(redis, key);
            let channel = redis.channel();
            let message = format!("{}|{key}", self.inner.name);
            let _ = redis
                .run("cache_invalidate", |mut c| async move {
                    redis::pipe()
                        .del(k)
                        .ignore()
                        .publish(channel, message)
                        .ignore()
                        .query_async::<()>(&mut *c)
                        .await
                })
                .await;
        }
    }

    /// Registers this cache for pub/sub invalidation.
    pub fn register(&self, registry: &mut InvalidationRegistry) {
        registry.caches.insert(self.inner.name, Arc::new(self.clone()));
    }
}

impl<V> LocalInvalidate for TwoTier<V>
where
    V: Clone + Serialize + DeserializeOwned + Send + Sync + 'static,
{
    fn invalidate_local<'a>(&'a self, key: &'a str) -> BoxFuture<'a, ()> {
        Box::pin(async move { self.inner.local.invalidate(key).await })
    }

    fn clear_local(&self) {
        self.inner.local.invalidate_all();
    }
}

/// The caches pub/sub messages are dispatched to, by name.
#[derive(Default)]
pub struct InvalidationRegistry {
    caches: HashMap<&'static str, Arc<dyn LocalInvalidate>>,
}

impl InvalidationRegistry {
    async fn dispatch(&self, message: &str) {
        if let Some((name, key)) = message.split_once('|')
            && let Some(cache) = self.caches.get(name)
        {
            cache.invalidate_local(key).await;
        }
    }

    fn clear_all(&self) {
        for cache in self.caches.values() {
            cache.clear_local();
        }
    }
}

/// Listens for invalidations on a dedicated pub/sub connection until `stop`,
/// reconnecting with backoff. After every (re)subscription except the first
/// the in-process tiers are cleared: messages may have been missed.
pub async fn listen(
    redis: Arc<Redis>,
    registry: Arc<InvalidationRegistry>,
    stop: impl std::future::Future<Output = ()> + Send,
    subscribed: tokio::sync::watch::Sender<bool>,
) {
    tokio::pin!(stop);
    let mut first = true;
    let mut backoff = Duration::from_millis(100);
    loop {
        let session = async {
            let mut pubsub = redis.client().get_async_pubsub().await?;
            pubsub.subscribe(redis.channel()).await?;
            Ok::<_, redis::RedisError>(pubsub)
        };
        match tokio::time::timeout(Duration::from_secs(2), session).await {
            Ok(Ok(mut pubsub)) => {
                if !first {
                    registry.clear_all();
                }
                first = false;
                backoff = Duration::from_millis(100);
                subscribed.send_replace(true);
                let mut messages = pubsub.on_message();
                loop {
                    tokio::select! {
                        msg = messages.next() => match msg {
                            Some(m) => {
                                if let Ok(text) = m.get_payload::<String>() {
                                    registry.dispatch(&text).await;
                                }
                            }
                            None => break,
                        },
                        () = &mut stop => return,
                    }
                }
                subscribed.send_replace(false);
                redis.note_failure("pubsub", "subscription connection lost");
            }
            Ok(Err(e)) => redis.note_failure("pubsub", &e.to_string()),
            Err(_) => redis.note_failure("pubsub", "subscribe timed out"),
        }
        tokio::select! {
            () = tokio::time::sleep(backoff) => {}
            () = &mut stop => return,
        }
        backoff = (backoff * 2).min(Duration::from_secs(5));
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicUsize;

    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn concurrent_misses_make_one_load() {
        let cache: TwoTier<String> = TwoTier::new("t", 100, Duration::from_secs(60), Duration::from_secs(60), None);
        let loads = Arc::new(AtomicUsize::new(0));
        let (release, gate) = tokio::sync::watch::channel(false);
        let mut tasks = Vec::new();
        for _ in 0..100 {
            let cache = cache.clone();
            let loads = loads.clone();
            let mut gate = gate.clone();
            tasks.push(tokio::spawn(async move {
                cache
                    .get_or_load("k", || async move {
                        loads.fetch_add(1, Ordering::SeqCst);
                        // Hold the load open until every caller has queued up.
                        let _ = gate.wait_for(|open| *open).await;
                        Ok(Some("v".to_string()))
                    })
                    .await
            }));
        }
        // Let the 100 calls reach the cache before the load finishes.
        while cache.inner.local.entry_count() == 0 && loads.load(Ordering::SeqCst) == 0 {
            tokio::task::yield_now().await;
        }
        for _ in 0..50 {
            tokio::task::yield_now().await;
        }
        release.send_replace(true);
        let mut misses = 0;
        for t in tasks {
            let (v, status) = t.await.expect("join").expect("load");
            assert_eq!(v.as_deref(), Some("v"));
            if status == CacheStatus::Miss {
                misses += 1;
            }
        }
        assert_eq!(loads.load(Ordering::SeqCst), 1, "one load for 100 concurrent misses");
        assert_eq!(misses, 1, "only the loading request reports a miss");
        let (_, status) = cache
            .get_or_load("k", || async { Ok(Some("other".to_string())) })
            .await
            .expect("hit");
        assert_eq!(status, CacheStatus::Hit);
    }

    #[tokio::test]
    async fn not_found_is_not_cached_and_invalidation_reloads() {
        let cache: TwoTier<u32> = TwoTier::new("t", 100, Duration::from_secs(60), Duration::from_secs(60), None);
        let (v, s) = cache.get_or_load("k", || async { Ok(None) }).await.expect("load");
        assert_eq!((v, s), (None, CacheStatus::Miss));
        let (v, s) = cache.get_or_load("k", || async { Ok(Some(1)) }).await.expect("load");
        assert_eq!((v, s), (Some(1), CacheStatus::Miss));
        let (v, _) = cache.get_or_load("k", || async { Ok(Some(2)) }).await.expect("hit");
        assert_eq!(v, Some(1));
        cache.invalidate("k").await;
        let (v, s) = cache.get_or_load("k", || async { Ok(Some(3)) }).await.expect("reload");
        assert_eq!((v, s), (Some(3), CacheStatus::Miss));
    }
}
