//! Layer 4: a cap on RPCs in flight across all connections.
//!
//! Over the cap a request is refused at once with RESOURCE_EXHAUSTED
//! (reason OVERLOADED, RetryInfo) — never queued without bound. It sits
//! before authentication so an overloaded replica spends nothing on the
//! requests it refuses.

use std::sync::Arc;

use futures_util::future::BoxFuture;
use tokio::sync::Semaphore;
use tower::Service;

use super::{Middleware, Req, RequestId, Res, error_response, is_public};
use crate::error::AppError;

/// Sheds load above `max_in_flight` concurrent RPCs.
#[derive(Clone)]
pub struct LoadShedLayer {
    permits: Arc<Semaphore>,
}

impl LoadShedLayer {
    /// At most `max_in_flight` RPCs at once.
    pub fn new(max_in_flight: usize) -> Self {
        Self {
            permits: Arc::new(Semaphore::new(max_in_flight)),
        }
    }
}

impl Middleware for LoadShedLayer {
    fn handle<S>(&self, req: Req, mut next: S) -> BoxFuture<'static, Result<Res, S::Error>>
    where
        S: Service<Req, Response = Res> + Send + 'static,
        S::Future: Send + 'static,
        S::Error: Send + 'static,
    {
        // Health and reflection are never shed: an orchestrator must not
        // mistake a busy replica for a dead one and restart it.
        if is_public(req.uri().path()) {
            return Box::pin(next.call(req));
        }
        let permit = self.permits.clone().try_acquire_owned();
        Box::pin(async move {
            match permit {
                Ok(_permit) => next.call(req).await,
                Err(_) => Ok(error_response(AppError::Overloaded, &RequestId::of(&req))),
            }
        })
    }
}
