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

#[cfg(test)]
mod tests {
    use std::convert::Infallible;

    use tonic_types::StatusExt as _;
    use tower::{Layer as _, ServiceExt as _};

    use super::*;
    use crate::middleware::{MiddlewareLayer, request_id::RequestIdLayer};

    #[tokio::test]
    async fn a_panicking_handler_answers_internal_with_the_request_id() {
        let handler = tower::service_fn(|_req: Req| async move {
            if true {
                panic!("boom: SELECT secret FROM somewhere");
            }
            Ok::<Res, Infallible>(Res::default())
        });
        let svc = MiddlewareLayer(RequestIdLayer).layer(MiddlewareLayer(CatchPanicLayer).layer(handler));
        let req = http::Request::builder()
            .uri("/deskd.tickets.v1.TicketsService/GetTicket")
            .header("x-request-id", "req-42")
            .body(tonic::body::Body::default())
            .expect("request");
        let res = svc.oneshot(req).await.expect("a response, not a reset stream");
        assert_eq!(
            res.headers().get("x-request-id").and_then(|v| v.to_str().ok()),
            Some("req-42")
        );
        let status = tonic::Status::from_header_map(res.headers()).expect("grpc status in headers");
        assert_eq!(status.code(), tonic::Code::Internal);
        assert_eq!(status.message(), "internal error");
        let details = status.get_error_details();
        assert_eq!(details.request_info().map(|r| r.request_id.as_str()), Some("req-42"));
        assert!(!format!("{status:?}").contains("secret"));
    }
}
