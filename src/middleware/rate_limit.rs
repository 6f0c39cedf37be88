//! Layer 8: rate limits per tenant+principal and per tenant.
//!
//! After the tenant layer, because its keys and quotas come from the
//! resolved principal and tenant (plan and per-tenant overrides). Both
//! quotas are decided in one all-or-nothing step (one Redis script when
//! replicas share Redis). Every response carries `ratelimit-limit`,
//! `ratelimit-remaining` and `ratelimit-reset` for the tighter of the two;
//! a refusal answers RESOURCE_EXHAUSTED with RetryInfo, QuotaFailure and
//! `retry-after`. When the shared store is down the request is admitted
//! (fail open, the default) or refused with UNAVAILABLE (fail closed).

use std::{sync::Arc, time::Duration};

use futures_util::future::BoxFuture;
use http::{HeaderName, HeaderValue};
use tower::Service;

use super::{Middleware, Req, RequestId, Res, error_response, is_public};
use crate::{
    config::{PlanQuotas, Quota, RateLimitConfig},
    error::AppError,
    ratelimit::{Check, Decision, RateLimiter},
    tenancy::{Principal, PrincipalKind, Tenant, TenantId, UserId},
};

/// Applies the tenant and principal quotas.
#[derive(Clone)]
pub struct RateLimitLayer {
    /// Where decisions are made.
    pub limiter: Arc<dyn RateLimiter>,
    /// The quotas.
    pub config: Arc<RateLimitConfig>,
}

fn describe(q: &Quota) -> String {
    format!("{} requests per {:?}, burst {}", q.requests, q.period, q.burst)
}

/// The (tenant, principal) quotas for a caller: the tenant's own overrides,
/// else its plan's, else the defaults.
pub fn quotas_for(cfg: &RateLimitConfig, tenant: Option<&Tenant>, principal: &Principal) -> (Quota, Quota) {
    let none = PlanQuotas::default();
    let plan = tenant.and_then(|t| cfg.plans.get(&t.plan)).unwrap_or(&none);
    let own = tenant.and_then(|t| t.rate_limits.as_ref()).unwrap_or(&none);
    let tenant_q = own.tenant.or(plan.tenant).unwrap_or(cfg.tenant);
    let principal_q = match principal.kind {
        PrincipalKind::Person { .. } => own.principal.or(plan.principal).unwrap_or(cfg.principal),
        PrincipalKind::ServiceAccount { .. } => own
            .service_principal
            .or(plan.service_principal)
            .unwrap_or(cfg.service_principal),
    };
    (tenant_q, principal_q)
}

fn secs_ceil(d: Duration) -> u64 {
    d.as_secs() + u64::from(d.subsec_nanos() > 0)
}

const RATELIMIT_LIMIT: HeaderName = HeaderName::from_static("ratelimit-limit");
const RATELIMIT_REMAINING: HeaderName = HeaderName::from_static("ratelimit-remaining");
const RATELIMIT_RESET: HeaderName = HeaderName::from_static("ratelimit-reset");

/// On every response: numbers straight into header values, no string
/// formatting or header-name parsing per request.
fn set_headers(res: &mut Res, d: &Decision) {
    let h = res.headers_mut();
    h.insert(RATELIMIT_LIMIT, HeaderValue::from(d.limit));
    h.insert(RATELIMIT_REMAINING, HeaderValue::from(d.remaining));
    h.insert(RATELIMIT_RESET, HeaderValue::from(secs_ceil(d.reset_after)));
}

/// A rate-limit key: `rl:{<tenant>}` (the Redis hash tag, so that both of a
/// request's keys live in one cluster slot) and `suffix`, then the user id
/// when given. Built from the UUIDs' bytes: this runs on every request.
fn key(tenant: &TenantId, suffix: &str, user: Option<&UserId>) -> String {
    let mut buf = [0u8; uuid::fmt::Hyphenated::LENGTH];
    let mut k = String::with_capacity(4 + 2 * buf.len() + 4);
    k.push_str("rl:{");
    k.push_str(tenant.0.hyphenated().encode_lower(&mut buf));
    k.push('}');
    k.push_str(suffix);
    if let Some(u) = user {
        k.push_str(u.0.hyphenated().encode_lower(&mut buf));
    }
    k
}

impl Middleware for RateLimitLayer {
    fn handle<S>(&self, req: Req, mut next: S) -> BoxFuture<'static, Result<Res, S::Error>>
    where
        S: Service<Req, Response = Res> + Send + 'static,
        S::Future: Send + 'static,
        S::Error: Send + 'static,
    {
        if !self.config.enabled || is_public(req.uri().path()) {
            return Box::pin(next.call(req));
        }
        let limiter = self.limiter.clone();
        let config = self.config.clone();
        Box::pin(async move {
            let Some(p) = req.extensions().get::<Principal>().cloned() else {
                return next.call(req).await;
            };
            let (tenant_q, principal_q) = quotas_for(&config, req.extensions().get::<Tenant>(), &p);
            // The tenant id is the Redis hash tag: both keys live in one slot,
            // so one script can decide them atomically on a cluster too.
            let checks = [
                Check {
                    key: key(&p.tenant_id, ":p:", Some(&p.user_id)),
                    quota: principal_q,
                },
                Check {
                    key: key(&p.tenant_id, ":t", None),
                    quota: tenant_q,
                },
            ];
            let request_id = RequestId::of(&req);
            let m = crate::telemetry::metrics::metrics();
            let decisions = match limiter.check_all(&checks).await {
                Ok(d) => d,
                Err(_) if config.fail_open => {
                    m.rate_limit("fail_open");
                    return next.call(req).await;
                }
                Err(_) => {
                    m.rate_limit("fail_closed");
                    return Ok(error_response(
                        AppError::Unavailable {
                            dependency: "redis",
                            source: anyhow::anyhow!("rate limiter unavailable and rate_limit.fail_open is false"),
                        },
                        &request_id,
                    ));
                }
            };
            if let Some(i) = decisions.iter().position(|d| !d.allowed) {
                m.rate_limit("limited");
                let d = decisions[i];
                let subject = if i == 0 {
                    format!("principal:{}", p.user_id)
                } else {
                    format!("tenant:{}", p.tenant_id)
                };
                let mut res = error_response(
                    AppError::RateLimited {
                        subject,
                        retry_after: d.retry_after,
                        description: describe(&checks[i].quota),
                    },
                    &request_id,
                );
                set_headers(&mut res, &d);
                return Ok(res);
            }
            m.rate_limit("allowed");
            let tightest = decisions.iter().min_by_key(|d| d.remaining).copied();
            let mut res = next.call(req).await?;
            if let Some(d) = tightest {
                set_headers(&mut res, &d);
            }
            Ok(res)
        })
    }
}

#[cfg(test)]
mod tests {
    use uuid::Uuid;

    use super::*;

    #[test]
    fn keys_spell_the_tenant_hash_tag_and_the_ids() {
        let t = TenantId(Uuid::parse_str("0191e5c2-7a4b-7c3d-8e2f-0123456789ab").unwrap_or_default());
        let u = UserId(Uuid::parse_str("0191e5c2-7a4b-7c3d-8e2f-ba9876543210").unwrap_or_default());
        assert_eq!(
            key(&t, ":p:", Some(&u)),
            format!("rl:{{{}}}:p:{}", t, u),
            "the principal key, as earlier releases wrote it"
        );
        assert_eq!(key(&t, ":t", None), format!("rl:{{{t}}}:t"));
        assert_eq!(key(&t, ":t", None), "rl:{0191e5c2-7a4b-7c3d-8e2f-0123456789ab}:t");
    }
}
