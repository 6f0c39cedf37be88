//! Durable background jobs on PostgreSQL.
//!
//! A job is a row of `jobs`, inserted by `queue::enqueue` inside the tenant
//! transaction of the write that causes it, so it commits or rolls back with
//! that write. Workers (`worker::Worker`, inside `deskd serve` or alone as
//! `deskd worker`) claim due jobs with `claim_jobs` (`FOR UPDATE SKIP LOCKED`,
//! a lease per job), run them with a timeout in the job's tenant context,
//! extend the lease while they run, and then mark them succeeded, schedule a
//! retry (exponential backoff with jitter), or — after `max_attempts` — keep
//! them `dead` with their last error. A worker that dies loses its leases:
//! the jobs are claimed again when the leases expire.

pub mod queue;
pub mod worker;

use std::time::Duration;

use serde::{Serialize, de::DeserializeOwned};

/// A typed job payload.
pub trait Job: Serialize + DeserializeOwned + Send + Sync + 'static {
    /// The job's kind, stored with it and used to find its handler.
    const KIND: &'static str;
    /// Attempts before the job is dead.
    const MAX_ATTEMPTS: i32 = 3;
    /// The longest one attempt may run.
    const TIMEOUT: Duration = Duration::from_secs(60);
}

/// The retry delay after failed attempt `attempt` (1-based): `base · 2^(attempt−1)`,
/// capped at `max`, then scaled by a random factor in [0.8, 1.2] (jitter, so
/// jobs that failed together do not retry together).
pub fn backoff(base: Duration, max: Duration, attempt: i32, jitter: f64) -> Duration {
    let exp = u32::try_from(attempt.saturating_sub(1)).unwrap_or(0).min(30);
    let raw = base.saturating_mul(1u32 << exp).min(max);
    raw.mul_f64(0.8 + 0.4 * jitter.clamp(0.0, 1.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_from_the_base_within_the_jitter_band() {
        let base = Duration::from_secs(2);
        let max = Duration::from_secs(3600);
        assert_eq!(backoff(base, max, 1, 0.5), Duration::from_secs(2));
        assert_eq!(backoff(base, max, 2, 0.5), Duration::from_secs(4));
        assert_eq!(backoff(base, max, 3, 0.5), Duration::from_secs(8));
        assert_eq!(backoff(base, max, 1, 0.0), Duration::from_millis(1600));
        assert_eq!(backoff(base, max, 1, 1.0), Duration::from_millis(2400));
        assert_eq!(backoff(base, max, 40, 0.5), max);
    }
}
