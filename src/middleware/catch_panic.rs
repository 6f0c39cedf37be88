//! Layer 3: a panic below answers INTERNAL with the request id.
//!
//! Without it the stream would be reset and the client would see CANCELLED
//! with nothing to report. Inside the request log, so the log records the
//! INTERNAL it became.

use std::panic::AssertUnwindSafe;

use futures_util::{FutureExt as _, future::BoxFuture};
use tower::Service;

use super::{Middleware, Req, RequestId, Res, error_response};
use crate::error::AppError;

/// Catches panics in the layers and handler below.
#[derive(Clone, Default)]
pub struct CatchPanicLayer;

impl Middleware for CatchPanicLayer {
    fn handle<S>(&self, req: Req, mut next: S) -> BoxFuture<'static, Result<Res, S::Error>>
    where
        S: Service<Req, Response = Res> + Send + 'static,
        S::Future: Send + 'static,
        S::Error: Send + 'static,
    {
        let request_id = RequestId::of(&req);
        Box::pin(async move {
            match AssertUnwindSafe(async move { next.call(req).await })
                .catch_unwind()
                .await
            {
                Ok(res) => res,
                Err(panic) => {
                    let what = panic
                        .downcast_ref::<&str>()
                        .map(|s| (*s).to_string())
                        .or_else(|| panic.downcast_ref::<String>().cloned())
                        .unwrap_or_else(|| "non-string panic payload".into());
                    Ok(error_response(
                        AppError::Internal(anyhow::anyhow!("handler panicked: {what}")),
                        &request_id,
                    ))
                }
            }
        })
    }
}
