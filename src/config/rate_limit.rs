//! The `rate_limit` section.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// One GCRA quota: a sustained rate and a burst.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Quota {
    /// Requests allowed per `period` on average.
    pub requests: u32,
    /// The period `requests` are spread over.
    #[serde(with = "humantime_serde")]
    pub period: Duration,
    /// Requests that may arrive at once after a quiet spell.
    pub burst: u32,
}

/// The quotas of one plan; unset fields fall back to the top-level quotas.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct PlanQuotas {
    /// Shared by all callers of one tenant.
    pub tenant: Option<Quota>,
    /// One person within a tenant.
    pub principal: Option<Quota>,
    /// One service account (API key caller) within a tenant.
    pub service_principal: Option<Quota>,
}

/// Rate limits (GCRA): in-process without Redis, shared through Redis with it.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RateLimitConfig {
    /// Off disables every limit.
    pub enabled: bool,
    /// The limit shared by all callers of one tenant (default plan).
    pub tenant: Quota,
    /// The limit of one person within a tenant (default plan).
    pub principal: Quota,
    /// The limit of one service account within a tenant (default plan);
    /// higher than a person's, for service-to-service traffic.
    pub service_principal: Quota,
    /// Named plans (`tenants.plan`), e.g. `[rate_limit.plans.reference]`
    /// with `tenant = { requests = 100, period = "15m", burst = 100 }`.
    /// A tenant's own `rate_limits` column overrides its plan.
    pub plans: std::collections::BTreeMap<String, PlanQuotas>,
    /// When the shared store (Redis) is unreachable: admit (true, the
    /// default) or refuse with UNAVAILABLE (false).
    pub fail_open: bool,
}

impl Default for RateLimitConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            tenant: Quota {
                requests: 1000,
                period: Duration::from_secs(1),
                burst: 2000,
            },
            principal: Quota {
                requests: 200,
                period: Duration::from_secs(1),
                burst: 400,
            },
            service_principal: Quota {
                requests: 1000,
                period: Duration::from_secs(1),
                burst: 2000,
            },
            plans: std::collections::BTreeMap::new(),
            fail_open: true,
        }
    }
}
