//! When and how long to wait before trying a failed call again, after
//! [Google AIP-194](https://google.aip.dev/194).
//!
//! A call is retried only when both hold:
//!
//! - **The code says trying again can help.** `UNAVAILABLE` means the request
//!   did not reach the server, or the server refused it before doing anything
//!   (it is shutting down, a dependency is down): the one code AIP-194 calls
//!   safe to retry. `RESOURCE_EXHAUSTED` is retried only when the server says
//!   when, with `google.rpc.RetryInfo` (deskd's rate limiter does): the client
//!   waits at least that long, and gives up at once when that is longer than
//!   [`RetryPolicy::max_backoff`] or the call's deadline, rather than hammering
//!   a server that asked it to wait. Every other code is final: the server
//!   decided (`INVALID_ARGUMENT`, `NOT_FOUND`, `ABORTED`, …), or the outcome is
//!   unknown (`DEADLINE_EXCEEDED`, `INTERNAL`, `UNKNOWN`) and a retry could do
//!   the work twice.
//! - **Doing the call twice is harmless.** Even `UNAVAILABLE` may come after
//!   the server committed (the connection dropped before the answer arrived),
//!   so only calls that are idempotent are retried: reads, updates (they set
//!   the named fields to the given values; with an `etag` a repeat of a
//!   committed update fails with `ABORTED` instead of overwriting), deletes,
//!   deactivation, reactivation, revocation and cancellation. A create is
//!   retried only when it carries a `request_id`, which makes the server
//!   answer a repeat with the first result (`CreateTicket`, `CreateUser`).
//!   `CreateApiKey` and `ExportTickets` have no `request_id` and are never
//!   retried.
//!
//! The wait before retry *n* (1, 2, …) is drawn uniformly from zero to
//! `min(max_backoff, initial_backoff × multiplier^(n-1))`: capped exponential
//! backoff with full jitter, so that clients failing together do not retry
//! together. Retries never outlive the call's deadline.

use std::{
    collections::hash_map::RandomState,
    hash::{BuildHasher, Hasher},
    sync::atomic::{AtomicU64, Ordering},
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use tonic::Code;

/// How often and how patiently a client retries a call that may be retried
/// (see the [module documentation](self) for which calls and codes).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RetryPolicy {
    /// The most attempts per call, the first included: 1 disables retries.
    pub max_attempts: u32,
    /// The upper bound of the first retry's (jittered) wait.
    pub initial_backoff: Duration,
    /// The longest wait before any retry, also the longest `RetryInfo` delay
    /// the client is willing to wait.
    pub max_backoff: Duration,
    /// How much the upper bound of the wait grows with each retry (at least 1).
    pub multiplier: f64,
}

impl Default for RetryPolicy {
    /// 4 attempts, waits bounded by 100 ms, 200 ms, 400 ms (at most 5 s).
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 4,
            initial_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(5),
            multiplier: 2.0,
        }
    }
}

impl RetryPolicy {
    /// One attempt per call: no retries.
    pub fn none() -> Self {
        RetryPolicy {
            max_attempts: 1,
            ..RetryPolicy::default()
        }
    }

    /// The upper bound of the wait before retry `retry` (1 for the first):
    /// `min(max_backoff, initial_backoff × multiplier^(retry-1))`.
    pub fn backoff_ceiling(&self, retry: u32) -> Duration {
        let multiplier = if self.multiplier.is_finite() && self.multiplier >= 1.0 {
            self.multiplier
        } else {
            1.0
        };
        let exponent = i32::try_from(retry.saturating_sub(1)).unwrap_or(i32::MAX);
        let secs = self.initial_backoff.as_secs_f64() * multiplier.powi(exponent);
        match Duration::try_from_secs_f64(secs) {
            Ok(d) => d.min(self.max_backoff),
            Err(_) => self.max_backoff,
        }
    }
}

/// Reported to [`crate::DeskdClientBuilder::on_retry`] before each retry.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct RetryEvent {
    /// The RPC, e.g. `deskd.tickets.v1.TicketsService/GetTicket`.
    pub method: &'static str,
    /// The attempt that failed (1 for the first).
    pub attempt: u32,
    /// Its status code.
    pub code: Code,
    /// How long the client waits before the next attempt.
    pub delay: Duration,
}

/// What to do after a failed attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Decision {
    /// Wait this long, then try again.
    Retry(Duration),
    /// Return the error.
    GiveUp,
}

/// Which requests may be sent twice (see the module documentation).
pub(crate) trait RetrySafe {
    /// Whether a repeat of this request does no harm.
    fn retry_safe(&self) -> bool;
}

/// The retry decision after attempt number `attempts` (1 for the first)
/// failed with `code` (and `retry_info`, the RetryInfo delay if any).
/// `remaining` is what is left of the call's deadline; `jitter` is uniform in
/// [0, 1).
pub(crate) fn decide(
    policy: &RetryPolicy,
    retry_safe: bool,
    code: Code,
    retry_info: Option<Duration>,
    attempts: u32,
    remaining: Option<Duration>,
    jitter: f64,
) -> Decision {
    if !retry_safe || attempts >= policy.max_attempts {
        return Decision::GiveUp;
    }
    let backoff = policy.backoff_ceiling(attempts).mul_f64(jitter.clamp(0.0, 1.0));
    let delay = match (code, retry_info) {
        (Code::Unavailable, _) => backoff,
        (Code::ResourceExhausted, Some(wait)) if wait <= policy.max_backoff => wait.max(backoff),
        _ => return Decision::GiveUp,
    };
    match remaining {
        Some(left) if delay >= left => Decision::GiveUp,
        _ => Decision::Retry(delay),
    }
}

/// A number uniform in [0, 1), good enough to spread retries (not for
/// anything secret): std's randomly keyed SipHash over a counter and the time.
pub(crate) fn jitter() -> f64 {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut h = RandomState::new().build_hasher();
    h.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
    h.write_u128(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0),
    );
    (h.finish() >> 11) as f64 / (1u64 << 53) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> RetryPolicy {
        RetryPolicy {
            max_attempts: 5,
            initial_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(1),
            multiplier: 2.0,
        }
    }

    const MS: fn(u64) -> Duration = Duration::from_millis;

    #[test]
    fn backoff_ceiling_grows_exponentially_up_to_the_cap() {
        let p = policy();
        assert_eq!(p.backoff_ceiling(1), MS(100));
        assert_eq!(p.backoff_ceiling(2), MS(200));
        assert_eq!(p.backoff_ceiling(3), MS(400));
        assert_eq!(p.backoff_ceiling(4), MS(800));
        assert_eq!(p.backoff_ceiling(5), MS(1000));
        assert_eq!(p.backoff_ceiling(u32::MAX), MS(1000));
    }

    #[test]
    fn backoff_ceiling_survives_odd_multipliers() {
        for multiplier in [0.0, 0.5, -3.0, f64::NAN, f64::INFINITY] {
            let p = RetryPolicy { multiplier, ..policy() };
            for retry in [1, 2, 10, 1000] {
                assert!(p.backoff_ceiling(retry) <= p.max_backoff, "{multiplier} {retry}");
            }
        }
        let p = RetryPolicy {
            multiplier: 1e300,
            ..policy()
        };
        assert_eq!(p.backoff_ceiling(3), MS(1000));
    }

    #[test]
    fn full_jitter_stays_within_zero_and_the_ceiling() {
        let p = policy();
        for retry in 1..=6 {
            for j in [0.0, 0.25, 0.5, 0.999_999] {
                match decide(&p, true, Code::Unavailable, None, retry.min(4), None, j) {
                    Decision::Retry(d) => assert!(d <= p.backoff_ceiling(retry.min(4))),
                    Decision::GiveUp => panic!("should retry"),
                }
            }
        }
        assert_eq!(
            decide(&p, true, Code::Unavailable, None, 1, None, 0.0),
            Decision::Retry(Duration::ZERO)
        );
        assert_eq!(
            decide(&p, true, Code::Unavailable, None, 2, None, 0.5),
            Decision::Retry(MS(100))
        );
    }

    #[test]
    fn jitter_is_in_the_unit_interval_and_varies() {
        let samples: Vec<f64> = (0..1000).map(|_| jitter()).collect();
        assert!(samples.iter().all(|j| (0.0..1.0).contains(j)));
        let low = samples.iter().filter(|j| **j < 0.5).count();
        assert!((300..=700).contains(&low), "{low} of 1000 below 0.5");
    }

    #[test]
    fn decision_table() {
        let p = policy();
        let retry = |safe, code, info| decide(&p, safe, code, info, 1, None, 0.5);
        // UNAVAILABLE: retried when the call is safe to repeat.
        assert_eq!(retry(true, Code::Unavailable, None), Decision::Retry(MS(50)));
        assert_eq!(retry(false, Code::Unavailable, None), Decision::GiveUp);
        // RESOURCE_EXHAUSTED: only with RetryInfo, waiting at least its delay.
        assert_eq!(retry(true, Code::ResourceExhausted, None), Decision::GiveUp);
        assert_eq!(
            retry(true, Code::ResourceExhausted, Some(MS(300))),
            Decision::Retry(MS(300))
        );
        assert_eq!(
            retry(true, Code::ResourceExhausted, Some(MS(10))),
            Decision::Retry(MS(50))
        );
        assert_eq!(retry(false, Code::ResourceExhausted, Some(MS(10))), Decision::GiveUp);
        // A delay longer than the cap: give up rather than retry early.
        assert_eq!(retry(true, Code::ResourceExhausted, Some(MS(1001))), Decision::GiveUp);
        assert_eq!(
            retry(true, Code::ResourceExhausted, Some(MS(1000))),
            Decision::Retry(MS(1000))
        );
        // Everything else is final.
        for code in [
            Code::Ok,
            Code::Cancelled,
            Code::Unknown,
            Code::InvalidArgument,
            Code::DeadlineExceeded,
            Code::NotFound,
            Code::AlreadyExists,
            Code::PermissionDenied,
            Code::FailedPrecondition,
            Code::Aborted,
            Code::OutOfRange,
            Code::Unimplemented,
            Code::Internal,
            Code::DataLoss,
            Code::Unauthenticated,
        ] {
            assert_eq!(retry(true, code, Some(MS(10))), Decision::GiveUp, "{code:?}");
        }
    }

    #[test]
    fn attempts_and_deadline_bound_the_retries() {
        let p = policy();
        assert!(matches!(
            decide(&p, true, Code::Unavailable, None, 4, None, 0.5),
            Decision::Retry(_)
        ));
        assert_eq!(
            decide(&p, true, Code::Unavailable, None, 5, None, 0.5),
            Decision::GiveUp
        );
        assert_eq!(
            decide(&RetryPolicy::none(), true, Code::Unavailable, None, 1, None, 0.5),
            Decision::GiveUp
        );
        // The wait must end before the deadline.
        assert_eq!(
            decide(&p, true, Code::Unavailable, None, 1, Some(MS(60)), 0.5),
            Decision::Retry(MS(50))
        );
        assert_eq!(
            decide(&p, true, Code::Unavailable, None, 1, Some(MS(50)), 0.5),
            Decision::GiveUp
        );
        assert_eq!(
            decide(&p, true, Code::ResourceExhausted, Some(MS(500)), 1, Some(MS(400)), 0.5),
            Decision::GiveUp
        );
    }
}
