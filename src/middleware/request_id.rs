//! Layer 1: request id and the per-RPC server span.
//!
//! Outermost so that every later layer, the handler and every log line run
//! inside a span carrying the id, and every response (errors included)
//! echoes it in `x-request-id`. The span follows the OpenTelemetry RPC
//! conventions (named `<service>/<method>`, kind server, `rpc.system`,
//! `rpc.service`, `rpc.method`; `rpc.grpc.status_code` and `tenant.id` are
//! recorded by inner layers) and, when traces are on, joins the caller's
//! trace from `traceparent`.

use std::sync::Arc;

use futures_util::future::BoxFuture;
use tower::Service;
use tracing::Instrument as _;

use super::{Middleware, Req, RequestId, Res};

/// The metadata key carrying the request id both ways.
pub const HEADER: &str = "x-request-id";

/// Honours a well-formed `x-request-id`, else generates one.
#[derive(Clone, Default)]
pub struct RequestIdLayer;

/// A caller's id is kept when it is 1–128 characters of `[A-Za-z0-9._:-]`,
/// so it can't inject anything into logs.
pub fn well_formed(id: &str) -> bool {
    (1..=128).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'-'))
}

impl Middleware for RequestIdLayer {
    fn handle<S>(&self, mut req: Req, mut next: S) -> BoxFuture<'static, Result<Res, S::Error>>
    where
        S: Service<Req, Response = Res> + Send + 'static,
        S::Future: Send + 'static,
        S::Error: Send + 'static,
    {
        let id: Arc<str> = match req.headers().get(HEADER).and_then(|v| v.to_str().ok()) {
            Some(v) if well_formed(v) => Arc::from(v),
            _ => Arc::from(uuid::Uuid::now_v7().to_string()),
        };
        req.extensions_mut().insert(RequestId(id.clone()));
        let path = req.uri().path();
        let span = if crate::telemetry::traces_enabled() {
            server_span(path, &id)
        } else {
            // Without export only the logs read the span: keep it as small
            // as it was before telemetry (recording absent fields is a no-op).
            tracing::info_span!("rpc", request_id = %id, method = %path)
        };
        crate::telemetry::set_remote_parent(&span, req.headers());
        Box::pin(
            async move {
                let mut res = next.call(req).await?;
                if let Ok(v) = http::HeaderValue::from_str(&id) {
                    res.headers_mut().insert(HEADER, v);
                }
                Ok(res)
            }
            .instrument(span),
        )
    }
}

/// The RPC's server span after the OpenTelemetry RPC conventions (traces on).
fn server_span(path: &str, id: &str) -> tracing::Span {
    let (service, method, _) = crate::telemetry::metrics::rpc_labels(path);
    tracing::info_span!(
        "rpc",
        otel.name = %path.trim_start_matches('/'),
        otel.kind = "server",
        otel.status_code = tracing::field::Empty,
        rpc.system = "grpc",
        rpc.service = service,
        rpc.method = method,
        rpc.grpc.status_code = tracing::field::Empty,
        tenant.id = tracing::field::Empty,
        request_id = %id,
        deskd.slow = tracing::field::Empty,
    )
}
