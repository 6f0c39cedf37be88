//! Layer 7: tenant and principal.
//!
//! The tenant comes from the credential, never from the request: an
//! `x-tenant-id` header may only confirm it (a mismatch is
//! PERMISSION_DENIED). The tenant and user are looked up through the cached
//! `TenantDirectory`; unknown or suspended tenants are refused here, so no
//! handler ever runs for them. After authentication (it needs the verified
//! credential) and before the rate limit (whose keys are tenant and principal).
//!
//! Once the principal is known, the tenant's RPC takes a place under the
//! per-tenant cap on RPCs in flight (`in_flight.rs`) for as long as it runs;
//! over the cap it is refused at once with RESOURCE_EXHAUSTED
//! `TENANT_OVERLOADED`. The cap counts only verified tenants: an API key's
//! tenant id is trusted only after the directory has checked the key.

pub mod in_flight;

use futures_util::future::BoxFuture;
use tower::Service;
use uuid::Uuid;

use self::in_flight::TenantInFlight;
use super::{Middleware, Req, RequestId, Res, deadline::Deadline, error_response, is_public, request_log::LogSlot};
use crate::{auth::Credential, error::AppError, tenancy::TenantDirectory};

/// The metadata key a caller may use to state the tenant it expects.
pub const TENANT_HEADER: &str = "x-tenant-id";

/// Resolves the principal of every non-public RPC.
#[derive(Clone)]
pub struct TenantLayer {
    /// Cached tenant and user lookups.
    pub directory: TenantDirectory,
    /// Each tenant's RPCs in flight, capped.
    pub in_flight: TenantInFlight,
}

impl Middleware for TenantLayer {
    fn handle<S>(&self, mut req: Req, mut next: S) -> BoxFuture<'static, Result<Res, S::Error>>
    where
        S: Service<Req, Response = Res> + Send + 'static,
        S::Future: Send + 'static,
        S::Error: Send + 'static,
    {
        if is_public(req.uri().path()) {
            return Box::pin(next.call(req));
        }
        let directory = self.directory.clone();
        let in_flight = self.in_flight.clone();
        Box::pin(async move {
            let request_id = RequestId::of(&req);
            let Some(credential) = req.extensions().get::<Credential>().cloned() else {
                // Unreachable while the authn layer sits above: fail closed.
                return Ok(error_response(
                    AppError::Unauthenticated {
                        reason: "CREDENTIAL_MISSING",
                        description: "no verified credential",
                    },
                    &request_id,
                ));
            };
            let tenant_id = credential.tenant_id();
            tracing::Span::current().record("tenant.id", tracing::field::display(tenant_id));
            if let Some(slot) = req.extensions().get::<LogSlot>() {
                let caller = match &credential {
                    Credential::Jwt(a) => format!("user:{}", a.user_id),
                    Credential::ApiKey(k) => format!("key:{}", k.key_id),
                };
                slot.set_caller(tenant_id.to_string(), caller);
            }
            if let Some(v) = req.headers().get(TENANT_HEADER) {
                let matches = v
                    .to_str()
                    .ok()
                    .and_then(|s| Uuid::parse_str(s.trim()).ok())
                    .is_some_and(|t| t == tenant_id.0);
                if !matches {
                    return Ok(error_response(
                        AppError::PermissionDenied {
                            reason: "TENANT_MISMATCH",
                            description: "x-tenant-id does not match the credential's tenant".into(),
                            metadata: vec![],
                        },
                        &request_id,
                    ));
                }
            }
            let deadline = req.extensions().get::<Deadline>().map(|d| d.0);
            match directory.resolve(&credential, deadline).await {
                Ok((principal, tenant)) => {
                    let Some(_place) = in_flight.try_enter(principal.tenant_id) else {
                        return Ok(error_response(
                            AppError::TenantOverloaded {
                                limit: in_flight.limit(),
                            },
                            &request_id,
                        ));
                    };
                    req.extensions_mut().insert(principal);
                    req.extensions_mut().insert(tenant);
                    next.call(req).await
                }
                Err(e) => Ok(error_response(e, &request_id)),
            }
        })
    }
}
