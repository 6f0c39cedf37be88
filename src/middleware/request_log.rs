//! Layer 2: one `request_completed` event per RPC.
//!
//! Sits right inside the request id (so the event carries it) and outside
//! every layer that can refuse a request, so refusals are counted and timed
//! like any other outcome. Inner layers fill in tenant and user through the
//! shared `LogFields` slot.

use std::{
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use futures_util::future::BoxFuture;
use opentelemetry::KeyValue;
use tonic::Code;
use tower::Service;

use super::{Middleware, Req, RequestId, Res};

/// What inner layers learn about the caller, for the log event.
#[derive(Debug, Default, Clone)]
pub struct LogFields {
    /// The tenant, once known.
    pub tenant_id: Option<String>,
    /// The user, once known.
    pub user_id: Option<String>,
}

/// Shared slot for `LogFields` (request extension).
#[derive(Debug, Clone, Default)]
pub struct LogSlot(pub Arc<Mutex<LogFields>>);

impl LogSlot {
    /// Records the caller.
    pub fn set_caller(&self, tenant_id: String, user_id: String) {
        if let Ok(mut f) = self.0.lock() {
            f.tenant_id = Some(tenant_id);
            f.user_id = Some(user_id);
        }
    }
}

/// Emits `request_completed` (and `slow_rpc` above the threshold).
#[derive(Clone)]
pub struct RequestLogLayer {
    /// RPCs slower than this also log a WARN `slow_rpc` event.
    pub slow_threshold: Duration,
}

/// The gRPC status of a response: trailers-only responses (every error
/// answered before a message) carry it in the headers; a response without
/// one in its headers is a unary success whose OK status follows in trailers.
pub fn response_code(res: &Res) -> Code {
    res.headers()
        .get("grpc-status")
        .and_then(|v| v.to_str().ok())
        .and_then(|s| s.parse::<i32>().ok())
        .map_or(Code::Ok, Code::from_i32)
}

/// Codes that mean the server (or a dependency) failed, not the caller.
pub fn is_server_error(code: Code) -> bool {
    matches!(
        code,
        Code::Internal | Code::Unknown | Code::DataLoss | Code::Unavailable | Code::Unimplemented
    )
}

impl Middleware for RequestLogLayer {
    fn handle<S>(&self, mut req: Req, mut next: S) -> BoxFuture<'static, Result<Res, S::Error>>
    where
        S: Service<Req, Response = Res> + Send + 'static,
        S::Future: Send + 'static,
        S::Error: Send + 'static,
    {
        let slot = LogSlot::default();
        req.extensions_mut().insert(slot.clone());
        let method = req.uri().path().to_string();
        let (rpc_service, rpc_method, method_index) = crate::telemetry::metrics::rpc_labels(&method);
        let request_id = RequestId::of(&req);
        let caller_trace = req
            .headers()
            .get("traceparent")
            .and_then(|v| v.to_str().ok())
            .and_then(crate::telemetry::traceparent_trace_id)
            .map(str::to_string);
        let m = crate::telemetry::metrics::metrics();
        let rpc_attrs = [
            KeyValue::new("rpc.system", "grpc"),
            KeyValue::new("rpc.service", rpc_service),
            KeyValue::new("rpc.method", rpc_method),
        ];
        let active = m.rpc_started(method_index);
        let slow = self.slow_threshold;
        let start = Instant::now();
        Box::pin(async move {
            let res = next.call(req).await;
            drop(active);
            let elapsed = start.elapsed();
            let code = match &res {
                Ok(r) => response_code(r),
                Err(_) => Code::Unknown,
            };
            let [a, b, c] = rpc_attrs;
            m.rpc_duration.record(
                elapsed.as_secs_f64(),
                &[a, b, c, KeyValue::new("rpc.grpc.status_code", code as i64)],
            );
            let span = tracing::Span::current();
            span.record("rpc.grpc.status_code", code as i64);
            if is_server_error(code) {
                span.record("otel.status_code", "ERROR");
            }
            let trace_id = crate::telemetry::trace_id(&span, caller_trace.as_deref());
            let fields = slot.0.lock().map(|f| f.clone()).unwrap_or_default();
            let tenant = fields.tenant_id.as_deref().unwrap_or("");
            let user = fields.user_id.as_deref().unwrap_or("");
            let duration_ms = elapsed.as_secs_f64() * 1000.0;
            let code_name = format!("{code:?}");
            if is_server_error(code) {
                tracing::error!(
                    event = "request_completed", method = %method, code = %code_name, grpc_code = code as i32,
                    duration_ms, tenant_id = tenant, user_id = user, request_id = %request_id, trace_id = %trace_id,
                    "request_completed"
                );
            } else {
                tracing::info!(
                    event = "request_completed", method = %method, code = %code_name, grpc_code = code as i32,
                    duration_ms, tenant_id = tenant, user_id = user, request_id = %request_id, trace_id = %trace_id,
                    "request_completed"
                );
            }
            if elapsed > slow {
                span.record("deskd.slow", true);
                tracing::warn!(
                    event = "slow_rpc", method = %method, code = %code_name, duration_ms,
                    threshold_ms = slow.as_millis() as u64, tenant_id = tenant, request_id = %request_id, trace_id = %trace_id,
                    "slow_rpc"
                );
            }
            res
        })
    }
}
