//! Rate limiting with GCRA (generic cell rate algorithm).
//!
//! One theoretical-arrival-time per key; a request is allowed while it does
//! not push that time more than the burst tolerance into the future. The
//! middleware uses the `RateLimiter` trait: `InProcessRateLimiter` for a
//! single replica, `RedisRateLimiter` (one atomic Lua script, run by SHA,
//! deciding every request that is waiting at that moment) when replicas
//! share Redis.

use std::{
    collections::HashMap,
    sync::Mutex,
    time::{Duration, Instant},
};

use futures_util::future::BoxFuture;

use crate::{config::Quota, kv::RedisDown};

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

mod shared;

pub use shared::RedisRateLimiter;

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
