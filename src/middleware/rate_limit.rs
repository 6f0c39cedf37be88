//! Layer 8: rate limits per tenant and per tenant+principal.
//!
//! Innermost, because its keys are the resolved tenant and principal. A
//! denied request answers RESOURCE_EXHAUSTED with RetryInfo, QuotaFailure
//! and `retry-after`.

use std::sync::Arc;

use futures_util::future::BoxFuture;
use tower::Service;

use super::{Middleware, Req, RequestId, Res, error_response, is_public};
use crate::{config::RateLimitConfig, error::AppError, ratelimit::RateLimiter, tenancy::Principal};

/// Applies the tenant and principal quotas.
#[derive(Clone)]
pub struct RateLimitLayer {
    /// Where decisions are made.
    pub limiter: Arc<dyn RateLimiter>,
    /// The quotas.
    pub config: Arc<RateLimitConfig>,
}

fn describe(q: &crate::config::Quota) -> String {
    format!("{} requests per {:?}, burst {}", q.requests, q.period, q.burst)
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
            let tenant_key = format!("t:{}", p.tenant_id);
            let principal_key = format!("p:{}:{}", p.tenant_id, p.user_id);
            // The principal's own quota first: one noisy caller that is
            // refused does not also drain its tenant's shared budget.
            let checks = [
                (principal_key, format!("principal:{}", p.user_id), config.principal),
                (tenant_key, format!("tenant:{}", p.tenant_id), config.tenant),
            ];
            for (key, subject, quota) in checks {
                let d = limiter.check(&key, &quota).await;
                if !d.allowed {
                    return Ok(error_response(
                        AppError::RateLimited {
                            subject,
                            retry_after: d.retry_after,
                            description: describe(&quota),
                        },
                        &RequestId::of(&req),
                    ));
                }
            }
            next.call(req).await
        })
    }
}
