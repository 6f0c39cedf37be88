//! GCRA state shared by every replica through Redis, with the decisions of
//! concurrent requests batched into one script call.
//!
//! One script call per request made Redis the larger part of a cached RPC's
//! cost (the round trip, the script run, the pool checkout). Here a request
//! that finds no call in flight runs its own decision at once; requests that
//! arrive while a call is in flight queue, and the next call decides all of
//! them (up to `MAX_GROUPS`), each request's quotas all-or-nothing, in
//! arrival order, exactly as separate calls would have. So a request waits at
//! most for one call ahead of its own, and under load one script run serves
//! many requests.

use std::{
    mem,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use futures_util::future::BoxFuture;
use tokio::sync::oneshot;
use tracing::Instrument as _;

use super::{Check, Decision, RateLimiter};
use crate::kv::{Redis, RedisDown};

/// GCRA over groups of keys in one atomic Lua script. ARGV holds, per group,
/// its key count followed by `(emission, tolerance)` in µs per key; KEYS
/// holds every group's keys in the same order. Each group reads its keys'
/// TATs, decides every quota, and writes the new TATs only when all admit
/// the request; a later group sees an earlier group's writes. Time comes
/// from the Redis server (`TIME`), so replicas with skewed clocks agree.
/// Returns per key `{allowed, x, reset_us}` where x is the room left
/// (allowed) or the retry delay (denied), in µs.
const GCRA_SCRIPT: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local out = {}
local a = 1
local k = 0
while a <= #ARGV do
  local n = tonumber(ARGV[a])
  local news = {}
  local all_ok = true
  for i = 1, n do
    local em = tonumber(ARGV[a + 2 * i - 1])
    local tol = tonumber(ARGV[a + 2 * i])
    local tat = tonumber(redis.call('GET', KEYS[k + i]) or '0')
    if tat < now then tat = now end
    local new_tat = tat + em
    local ahead = new_tat - now
    if ahead > tol then
      all_ok = false
      out[#out + 1] = 0
      out[#out + 1] = ahead - tol
      out[#out + 1] = tat - now
    else
      out[#out + 1] = 1
      out[#out + 1] = tol - ahead
      out[#out + 1] = ahead
      news[i] = new_tat
    end
  end
  if all_ok then
    for i = 1, n do
      redis.call('SET', KEYS[k + i], string.format('%.0f', news[i]), 'PX', math.floor((news[i] - now) / 1000) + 1)
    end
  end
  a = a + 2 * n + 1
  k = k + n
end
return out
";

/// Requests decided by one script call at most; the rest wait for the next.
const MAX_GROUPS: usize = 256;

/// One request's quotas, encoded for the script.
struct Group {
    keys: Vec<String>,
    /// `(emission, tolerance)` per key, in µs.
    args: Vec<(i64, i64)>,
}

/// What a waiting request receives: its `{allowed, x, reset}` triples and the
/// number of requests its call decided.
type Reply = Result<(Vec<i64>, usize), RedisDown>;

#[derive(Default)]
struct Queue {
    /// A script call is in flight (or about to be): newcomers queue.
    busy: bool,
    waiting: Vec<(Group, oneshot::Sender<Reply>)>,
}

struct Inner {
    redis: Arc<Redis>,
    script: redis::Script,
    queue: Mutex<Queue>,
    calls: AtomicU64,
}

/// GCRA state shared by every replica through Redis.
pub struct RedisRateLimiter {
    inner: Arc<Inner>,
}

impl RedisRateLimiter {
    /// A limiter on `redis`; the script is loaded on first use and run by SHA.
    pub fn new(redis: Arc<Redis>) -> Self {
        Self {
            inner: Arc::new(Inner {
                redis,
                script: redis::Script::new(GCRA_SCRIPT),
                queue: Mutex::new(Queue::default()),
                calls: AtomicU64::new(0),
            }),
        }
    }

    /// Script calls made since start (each decides one or more requests).
    pub fn script_calls(&self) -> u64 {
        self.inner.calls.load(Ordering::Relaxed)
    }
}

fn micros(d: Duration) -> i64 {
    i64::try_from(d.as_micros()).unwrap_or(i64::MAX)
}

fn emission_us(c: &Check) -> i64 {
    micros(c.quota.period / c.quota.requests.max(1)).max(1)
}

impl Inner {
    /// One script call deciding `groups` in order; the triples of all keys.
    async fn call(&self, groups: &[&Group]) -> Result<Vec<i64>, RedisDown> {
        let mut invocation = self.script.prepare_invoke();
        let mut keys = 0;
        for g in groups {
            invocation.arg(g.keys.len());
            for (key, (emission, tolerance)) in g.keys.iter().zip(&g.args) {
                invocation.key(key.as_str());
                invocation.arg(*emission).arg(*tolerance);
            }
            keys += g.keys.len();
        }
        self.calls.fetch_add(1, Ordering::Relaxed);
        let raw: Vec<i64> = self
            .redis
            .run_untraced("rate_limit", |mut conn| async move {
                invocation.invoke_async(&mut *conn).await
            })
            .await?;
        if raw.len() != keys * 3 {
            self.redis.note_failure("rate_limit", "unexpected script reply");
            return Err(RedisDown);
        }
        Ok(raw)
    }

    /// Decides the queued requests, a batch per call, until none wait.
    async fn drain(self: Arc<Self>) {
        loop {
            let batch = {
                let Ok(mut q) = self.queue.lock() else { return };
                if q.waiting.is_empty() {
                    q.busy = false;
                    return;
                }
                let take = q.waiting.len().min(MAX_GROUPS);
                let rest = q.waiting.split_off(take);
                mem::replace(&mut q.waiting, rest)
            };
            let groups: Vec<&Group> = batch.iter().map(|(g, _)| g).collect();
            let result = self.call(&groups).await;
            let n = batch.len();
            let mut offset = 0;
            for (group, reply) in batch {
                let len = group.keys.len() * 3;
                let own = match &result {
                    Ok(raw) => Ok((raw[offset..offset + len].to_vec(), n)),
                    Err(e) => Err(*e),
                };
                offset += len;
                // The request may have gone (cancelled): nothing to tell it.
                let _ = reply.send(own);
            }
        }
    }
}

/// Held by a request that runs its own call: when it finishes, or is
/// cancelled mid-call, the requests that queued meanwhile are handed to a
/// task, so none waits on a request that is gone.
struct Handoff(Arc<Inner>);

impl Drop for Handoff {
    fn drop(&mut self) {
        let Ok(mut q) = self.0.queue.lock() else { return };
        if q.waiting.is_empty() {
            q.busy = false;
            return;
        }
        match tokio::runtime::Handle::try_current() {
            Ok(rt) => {
                drop(q);
                rt.spawn(self.0.clone().drain());
            }
            Err(_) => {
                // No runtime (shutting down): the waiters learn it now.
                q.busy = false;
                for (_, reply) in q.waiting.drain(..) {
                    let _ = reply.send(Err(RedisDown));
                }
            }
        }
    }
}

impl RateLimiter for RedisRateLimiter {
    fn check_all<'a>(&'a self, checks: &'a [Check]) -> BoxFuture<'a, Result<Vec<Decision>, RedisDown>> {
        let group = Group {
            keys: checks.iter().map(|c| self.inner.redis.key(&c.key)).collect(),
            args: checks
                .iter()
                .map(|c| {
                    let emission = emission_us(c);
                    (emission, emission.saturating_mul(i64::from(c.quota.burst.max(1))))
                })
                .collect(),
        };
        let span = Redis::span("rate_limit");
        let decide = async move {
            let queued = {
                let mut q = self.inner.queue.lock().map_err(|_| RedisDown)?;
                if q.busy {
                    let (tx, rx) = oneshot::channel();
                    q.waiting.push((group, tx));
                    Err(rx)
                } else {
                    q.busy = true;
                    Ok(group)
                }
            };
            match queued {
                Ok(group) => {
                    let _handoff = Handoff(self.inner.clone());
                    self.inner.call(&[&group]).await.map(|raw| (raw, 1))
                }
                // A dropped sender means the batch's task died: Redis is as
                // good as down for this request.
                Err(rx) => rx.await.unwrap_or(Err(RedisDown)),
            }
        };
        Box::pin(async move {
            let result = decide.instrument(span.clone()).await;
            match &result {
                Ok((_, batch)) => {
                    span.record("db.operation.batch.size", *batch);
                }
                Err(_) => {
                    span.record("otel.status_code", "ERROR");
                }
            }
            let (raw, _) = result?;
            Ok(decisions(checks, &raw))
        })
    }
}

/// The script's triples as decisions, one per check.
fn decisions(checks: &[Check], raw: &[i64]) -> Vec<Decision> {
    let us = |v: i64| Duration::from_micros(u64::try_from(v).unwrap_or(0));
    checks
        .iter()
        .zip(raw.chunks(3))
        .map(|(c, r)| {
            if r[0] == 1 {
                Decision {
                    allowed: true,
                    limit: c.quota.burst,
                    remaining: u32::try_from(r[1] / emission_us(c)).unwrap_or(u32::MAX),
                    retry_after: Duration::ZERO,
                    reset_after: us(r[2]),
                }
            } else {
                Decision {
                    allowed: false,
                    limit: c.quota.burst,
                    remaining: 0,
                    retry_after: us(r[1]),
                    reset_after: us(r[2]),
                }
            }
        })
        .collect()
}
