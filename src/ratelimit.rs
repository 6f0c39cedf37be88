//! Rate limiting with GCRA (generic cell rate algorithm).
//!
//! One theoretical-arrival-time per key; a request is allowed while it does
//! not push that time more than the burst tolerance into the future. The
//! middleware uses the `RateLimiter` trait: `InProcessRateLimiter` for a
//! single replica, `RedisRateLimiter` (one atomic Lua script, run by SHA)
//! when replicas share Redis.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use futures_util::future::BoxFuture;

use crate::{
    config::Quota,
    kv::{Redis, RedisDown},
};

/// The outcome of one check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision {
    /// Whether the request may proceed.
    pub allowed: bool,
    /// The burst size of the quota.
    pub limit: u32,
    /// Requests that could still be made right now.
    pub remaining: u32,
    /// When denied: how long until a retry can succeed.
    pub retry_after: Duration,
    /// How long until the bucket is full again.
    pub reset_after: Duration,
}

/// One quota to check, under its key.
#[derive(Debug, Clone)]
pub struct Check {
    /// The state key (without the deployment prefix).
    pub key: String,
    /// The quota.
    pub quota: Quota,
}

/// Decides whether a request fits every quota. All-or-nothing: the request
/// is counted against each quota only when every one admits it, so a
/// refusal by one limit does not drain the others.
pub trait RateLimiter: Send + Sync + 'static {
    /// One decision per check, in order; `Err` when the shared store is down.
    fn check_all<'a>(&'a self, checks: &'a [Check]) -> BoxFuture<'a, Result<Vec<Decision>, RedisDown>>;
}

/// The pure GCRA step: given the stored TAT (if any), returns the decision
/// and the TAT to store (unchanged when denied).
pub fn gcra(tat: Option<Instant>, now: Instant, quota: &Quota) -> (Decision, Option<Instant>) {
    let emission = quota.period / quota.requests.max(1);
    let tolerance = emission * quota.burst.max(1);
    let tat = tat.map_or(now, |t| t.max(now));
    let new_tat = tat + emission;
    let ahead = new_tat - now;
    if ahead > tolerance {
        let retry_after = ahead - tolerance;
        let reset_after = tat - now;
        (
            Decision {
                allowed: false,
                limit: quota.burst,
                remaining: 0,
                retry_after,
                reset_after,
            },
            None,
        )
    } else {
        let room = tolerance - ahead;
        let remaining = if emission.is_zero() {
            quota.burst
        } else {
            (room.as_nanos() / emission.as_nanos()) as u32
        };
        (
            Decision {
                allowed: true,
                limit: quota.burst,
                remaining,
                retry_after: Duration::ZERO,
                reset_after: ahead,
            },
            Some(new_tat),
        )
    }
}

/// GCRA state in this process (one replica).
#[derive(Default)]
pub struct InProcessRateLimiter {
    state: Mutex<HashMap<String, Instant>>,
}

impl InProcessRateLimiter {
    /// Synchronous check of every quota at `now` (all-or-nothing).
    pub fn check_all_at(&self, checks: &[Check], now: Instant) -> Vec<Decision> {
        let Ok(mut map) = self.state.lock() else {
            // A poisoned lock means a panic mid-update: fail open.
            return checks
                .iter()
                .map(|c| Decision {
                    allowed: true,
                    limit: c.quota.burst,
                    remaining: 0,
                    retry_after: Duration::ZERO,
                    reset_after: Duration::ZERO,
                })
                .collect();
        };
        // Keep memory bounded: entries whose TAT has passed hold no state.
        if map.len() > 100_000 {
            map.retain(|_, tat| *tat > now);
        }
        let results: Vec<(Decision, Option<Instant>)> = checks
            .iter()
            .map(|c| gcra(map.get(&c.key).copied(), now, &c.quota))
            .collect();
        if results.iter().all(|(d, _)| d.allowed) {
            for (c, (_, tat)) in checks.iter().zip(&results) {
                if let Some(tat) = tat {
                    map.insert(c.key.clone(), *tat);
                }
            }
        }
        results.into_iter().map(|(d, _)| d).collect()
    }

    /// Synchronous check of one quota at `now`.
    pub fn check_at(&self, key: &str, quota: &Quota, now: Instant) -> Decision {
        let checks = [Check {
            key: key.to_string(),
            quota: *quota,
        }];
        self.check_all_at(&checks, now)[0]
    }
}

impl RateLimiter for InProcessRateLimiter {
    fn check_all<'a>(&'a self, checks: &'a [Check]) -> BoxFuture<'a, Result<Vec<Decision>, RedisDown>> {
        let d = self.check_all_at(checks, Instant::now());
        Box::pin(async move { Ok(d) })
    }
}

/// GCRA over several keys in one atomic Lua script: reads each key's TAT,
/// decides every quota, and writes the new TATs only when all admit the
/// request. Time comes from the Redis server (`TIME`), so replicas with
/// skewed clocks still agree. Returns per key `{allowed, x, reset_us}` where
/// x is the room left (allowed) or the retry delay (denied), in µs.
const GCRA_SCRIPT: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local out = {}
local news = {}
local all_ok = true
for i = 1, #KEYS do
  local em = tonumber(ARGV[2 * i - 1])
  local tol = tonumber(ARGV[2 * i])
  local tat = tonumber(redis.call('GET', KEYS[i]) or '0')
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
  for i = 1, #KEYS do
    redis.call('SET', KEYS[i], string.format('%.0f', news[i]), 'PX', math.floor((news[i] - now) / 1000) + 1)
  end
end
return out
";

/// GCRA state shared by every replica through Redis.
pub struct RedisRateLimiter {
    redis: Arc<Redis>,
    script: redis::Script,
}

impl RedisRateLimiter {
    /// A limiter on `redis`; the script is loaded on first use and run by SHA.
    pub fn new(redis: Arc<Redis>) -> Self {
        Self {
            redis,
            script: redis::Script::new(GCRA_SCRIPT),
        }
    }
}

fn micros(d: Duration) -> i64 {
    i64::try_from(d.as_micros()).unwrap_or(i64::MAX)
}

impl RateLimiter for RedisRateLimiter {
    fn check_all<'a>(&'a self, checks: &'a [Check]) -> BoxFuture<'a, Result<Vec<Decision>, RedisDown>> {
        Box::pin(async move {
            let mut invocation = self.script.prepare_invoke();
            for c in checks {
                let emission = c.quota.period / c.quota.requests.max(1);
                invocation.key(self.redis.key(&c.key));
                invocation.arg(micros(emission).max(1));
                invocation.arg(micros(emission * c.quota.burst.max(1)));
            }
            let raw: Vec<i64> = self
                .redis
                .run("rate_limit", |mut conn| async move {
                    invocation.invoke_async(&mut *conn).await
                })
                .await?;
            if raw.len() != checks.len() * 3 {
                self.redis.note_failure("rate_limit", "unexpected script reply");
                return Err(RedisDown);
            }
            let us = |v: i64| Duration::from_micros(u64::try_from(v).unwrap_or(0));
            Ok(checks
                .iter()
                .zip(raw.chunks(3))
                .map(|(c, r)| {
                    let emission = micros(c.quota.period / c.quota.requests.max(1)).max(1);
                    if r[0] == 1 {
                        Decision {
                            allowed: true,
                            limit: c.quota.burst,
                            remaining: u32::try_from(r[1] / emission).unwrap_or(u32::MAX),
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
                .collect())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn quota(requests: u32, period_ms: u64, burst: u32) -> Quota {
        Quota {
            requests,
            period: Duration::from_millis(period_ms),
            burst,
        }
    }

    #[test]
    fn allows_the_burst_then_denies_with_retry_after() {
        let l = InProcessRateLimiter::default();
        let q = quota(10, 1000, 3); // one per 100 ms, burst 3
        let now = Instant::now();
        for expected_remaining in [2, 1, 0] {
            let d = l.check_at("k", &q, now);
            assert!(d.allowed);
            assert_eq!(d.remaining, expected_remaining);
        }
        let d = l.check_at("k", &q, now);
        assert!(!d.allowed);
        assert_eq!(d.retry_after, Duration::from_millis(100));
        // After the retry delay exactly one more fits.
        let later = now + Duration::from_millis(100);
        assert!(l.check_at("k", &q, later).allowed);
        assert!(!l.check_at("k", &q, later).allowed);
    }

    #[test]
    fn keys_are_independent() {
        let l = InProcessRateLimiter::default();
        let q = quota(1, 1000, 1);
        let now = Instant::now();
        assert!(l.check_at("a", &q, now).allowed);
        assert!(!l.check_at("a", &q, now).allowed);
        assert!(l.check_at("b", &q, now).allowed);
    }

    #[test]
    fn sustained_rate_matches_quota() {
        let l = InProcessRateLimiter::default();
        let q = quota(100, 1000, 1);
        let start = Instant::now();
        let allowed = (0..1000)
            .filter(|i| l.check_at("k", &q, start + Duration::from_millis(*i)).allowed)
            .count();
        assert_eq!(allowed, 100);
    }
}
