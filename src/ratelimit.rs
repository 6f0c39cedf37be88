//! Rate limiting with GCRA (generic cell rate algorithm).
//!
//! One theoretical-arrival-time per key; a request is allowed while it does
//! not push that time more than the burst tolerance into the future. The
//! `RateLimiter` trait is what the middleware uses, so a shared (Redis)
//! implementation can replace the in-process one without touching it.

use std::{
    collections::HashMap,
    hash::{Hash, Hasher},
    sync::Mutex,
    time::{Duration, Instant},
};

use futures_util::future::BoxFuture;

use crate::config::Quota;

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

/// Decides whether a request under `key` fits `quota`.
pub trait RateLimiter: Send + Sync + 'static {
    /// Checks and (when allowed) consumes one request.
    fn check<'a>(&'a self, key: &'a str, quota: &'a Quota) -> BoxFuture<'a, Decision>;
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

const SHARDS: usize = 16;

/// GCRA state in this process (one replica).
pub struct InProcessRateLimiter {
    shards: Vec<Mutex<HashMap<String, Instant>>>,
}

impl Default for InProcessRateLimiter {
    fn default() -> Self {
        Self {
            shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
        }
    }
}

impl InProcessRateLimiter {
    fn shard(&self, key: &str) -> &Mutex<HashMap<String, Instant>> {
        let mut h = std::collections::hash_map::DefaultHasher::new();
        key.hash(&mut h);
        &self.shards[(h.finish() as usize) % SHARDS]
    }

    /// Synchronous check, at `now`.
    pub fn check_at(&self, key: &str, quota: &Quota, now: Instant) -> Decision {
        let Ok(mut map) = self.shard(key).lock() else {
            // A poisoned shard means a panic mid-update: fail open.
            return Decision {
                allowed: true,
                limit: quota.burst,
                remaining: 0,
                retry_after: Duration::ZERO,
                reset_after: Duration::ZERO,
            };
        };
        // Keep memory bounded: entries whose TAT has passed hold no state.
        if map.len() > 10_000 {
            map.retain(|_, tat| *tat > now);
        }
        let (decision, store) = gcra(map.get(key).copied(), now, quota);
        if let Some(tat) = store {
            map.insert(key.to_string(), tat);
        }
        decision
    }
}

impl RateLimiter for InProcessRateLimiter {
    fn check<'a>(&'a self, key: &'a str, quota: &'a Quota) -> BoxFuture<'a, Decision> {
        let d = self.check_at(key, quota, Instant::now());
        Box::pin(async move { d })
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
