//! The tower layers every RPC passes through, outermost first (DESIGN §1):
//!
//! 1. `request_id`  — id + span first, so everything after logs with it.
//! 2. `request_log` — one `request_completed` per RPC; outside everything
//!    that can refuse a request, so refusals are logged and timed too.
//! 3. `catch_panic` — turns a panic below into INTERNAL + request id
//!    instead of a reset stream; inside the log so the log sees INTERNAL.
//! 4. `load_shed`   — refuses at once when too much is in flight, before
//!    any work (auth, database) is spent on the request.
//! 5. `deadline`    — reads `grpc-timeout`, bounds everything below (auth's
//!    lookups included) and answers DEADLINE_EXCEEDED itself.
//! 6. `authn`       — verifies the credential (no I/O).
//! 7. `tenant`      — resolves tenant and user (cached), checks
//!    `x-tenant-id`, refuses suspended tenants.
//! 8. `rate_limit`  — needs the resolved tenant and principal for its keys.
//! 9. `authorize`   — the permission table's requirement for the method,
//!    checked for every RPC right before its handler.
//!
//! Health and reflection skip 6–9 (`is_public`) and are never shed.

pub mod authn;
pub mod authorize;
pub mod catch_panic;
pub mod deadline;
pub mod load_shed;
pub mod rate_limit;
pub mod request_id;
pub mod request_log;
pub mod tenant;

use std::{
    sync::Arc,
    task::{Context, Poll},
};

use futures_util::future::BoxFuture;
use tower::{Layer, Service};

use crate::error::AppError;

/// The HTTP request every layer sees.
pub type Req = http::Request<tonic::body::Body>;
/// The HTTP response every layer returns.
pub type Res = http::Response<tonic::body::Body>;

/// The request's id (extension), set by the request-id layer.
#[derive(Debug, Clone)]
pub struct RequestId(pub Arc<str>);

impl RequestId {
    /// The id of `req`, or `-` before the request-id layer ran.
    pub fn of<B>(req: &http::Request<B>) -> Arc<str> {
        req.extensions()
            .get::<RequestId>()
            .map(|r| r.0.clone())
            .unwrap_or_else(|| Arc::from("-"))
    }
}

/// Paths that need no credential: health checks and reflection.
pub fn is_public(path: &str) -> bool {
    path.starts_with("/grpc.health.v1.") || path.starts_with("/grpc.reflection.")
}

/// An error answered by a layer, as a trailers-only gRPC response.
pub fn error_response(err: AppError, request_id: &str) -> Res {
    err.into_status(request_id).into_http()
}

/// A layer written as one async function of the request and the next service.
pub trait Middleware: Clone + Send + Sync + 'static {
    /// Handles `req`, calling `next` to continue down the stack.
    fn handle<S>(&self, req: Req, next: S) -> BoxFuture<'static, Result<Res, S::Error>>
    where
        S: Service<Req, Response = Res> + Send + 'static,
        S::Future: Send + 'static,
        S::Error: Send + 'static;
}

/// Adapts a `Middleware` to a tower `Layer`.
#[derive(Clone)]
pub struct MiddlewareLayer<M>(pub M);

impl<M: Clone, S> Layer<S> for MiddlewareLayer<M> {
    type Service = MiddlewareService<M, S>;
    fn layer(&self, inner: S) -> Self::Service {
        MiddlewareService {
            mw: self.0.clone(),
            inner,
        }
    }
}

/// The service a `MiddlewareLayer` produces.
#[derive(Clone)]
pub struct MiddlewareService<M, S> {
    mw: M,
    inner: S,
}

impl<M, S> Service<Req> for MiddlewareService<M, S>
where
    M: Middleware,
    S: Service<Req, Response = Res> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
{
    type Response = Res;
    type Error = S::Error;
    type Future = BoxFuture<'static, Result<Res, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Req) -> Self::Future {
        // The service that was polled ready is the one that must be called;
        // leave a fresh clone behind for the next request.
        let clone = self.inner.clone();
        let ready = std::mem::replace(&mut self.inner, clone);
        self.mw.handle(req, ready)
    }
}
