//! Telemetry: logs (tracing-subscriber), traces (OpenTelemetry over OTLP,
//! through tracing-opentelemetry) and metrics (OpenTelemetry instruments,
//! exported over OTLP and rendered in Prometheus text for `/metrics`).
//!
//! Without `telemetry.otlp_endpoint` no OpenTelemetry layer is installed, so
//! spans cost what a plain tracing span costs and nothing is exported; the
//! metrics still count, for the Prometheus scrape.

pub mod metrics;
pub mod sql;

use std::sync::{
    OnceLock,
    atomic::{AtomicBool, Ordering},
};

use opentelemetry::{
    propagation::{Extractor, TextMapPropagator as _},
    trace::{TraceContextExt as _, TracerProvider as _},
};
use opentelemetry_sdk::{
    Resource,
    propagation::TraceContextPropagator,
    trace::{Sampler, SdkTracerProvider},
};
use tracing_opentelemetry::OpenTelemetrySpanExt as _;
use tracing_subscriber::{EnvFilter, Layer as _, filter::Targets, fmt, prelude::*};

use crate::config::{Config, LogFormat, TelemetryConfig};

static TRACES_ON: AtomicBool = AtomicBool::new(false);
static TRACER: OnceLock<SdkTracerProvider> = OnceLock::new();

/// Whether spans are exported (an OTLP endpoint is configured).
pub fn traces_enabled() -> bool {
    TRACES_ON.load(Ordering::Relaxed)
}

/// Flushes and stops the exporters when dropped (end of `main`).
#[must_use = "dropping the guard flushes and stops telemetry export"]
pub struct TelemetryGuard {
    tracer: Option<SdkTracerProvider>,
}

impl Drop for TelemetryGuard {
    fn drop(&mut self) {
        if let Some(t) = self.tracer.take() {
            let _ = t.shutdown();
        }
        metrics::shutdown();
    }
}

fn resource(cfg: &TelemetryConfig) -> Resource {
    Resource::builder()
        .with_service_name(cfg.service_name.clone())
        .with_attribute(opentelemetry::KeyValue::new(
            "service.version",
            env!("CARGO_PKG_VERSION"),
        ))
        .build()
}

/// Installs the global subscriber and, with an OTLP endpoint, the trace and
/// metric exporters. Must run inside the Tokio runtime (the OTLP client is
/// tonic). Logs are JSON lines or readable text on stderr, filtered by
/// `RUST_LOG` when set, else by `log.filter`, so commands printing an id or a
/// token keep stdout clean.
pub fn init(config: &Config) -> TelemetryGuard {
    let t = &config.telemetry;
    let mut errors = Vec::new();
    let tracer = if t.otlp_endpoint.is_empty() {
        None
    } else {
        match build_tracer(t) {
            Ok(p) => Some(p),
            Err(e) => {
                errors.push(format!("OTLP trace export is off: {e}"));
                None
            }
        }
    };
    if let Err(e) = metrics::install(t) {
        errors.push(format!("OTLP metric export is off: {e}"));
    }

    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(&config.log.filter))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let fmt_layer = match config.log.format {
        LogFormat::Json => fmt::layer()
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(false)
            .with_writer(std::io::stderr)
            .with_filter(filter)
            .boxed(),
        LogFormat::Text => fmt::layer().with_writer(std::io::stderr).with_filter(filter).boxed(),
    };
    let otel_layer = tracer.as_ref().map(|p| {
        tracing_opentelemetry::layer()
            .with_tracer(p.tracer("deskd"))
            .with_location(false)
            .with_threads(false)
            .with_target(false)
            .with_level(false)
            .with_filter(Targets::new().with_target("deskd", tracing::Level::INFO))
    });
    // Every layer carries its own filter: an unfiltered layer (even a `None`
    // one) would make every callsite interesting, so h2's and hyper's trace
    // spans would be built on each request only to be filtered out.
    let base = tracing_subscriber::registry()
        .with(fmt_layer)
        .with(sql::SqlLayer::default().with_filter(sql::filter()));
    let result = match otel_layer {
        Some(otel) => base.with(otel).try_init(),
        None => base.try_init(),
    };
    // Already initialised (tests): keep the first subscriber.
    if result.is_ok()
        && let Some(p) = &tracer
    {
        let _ = TRACER.set(p.clone());
        TRACES_ON.store(true, Ordering::Relaxed);
    }
    for e in errors {
        tracing::error!("{e}");
    }
    TelemetryGuard { tracer }
}

fn build_tracer(t: &TelemetryConfig) -> Result<SdkTracerProvider, String> {
    use opentelemetry_otlp::WithExportConfig as _;
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_tonic()
        .with_endpoint(t.otlp_endpoint.clone())
        .with_timeout(t.export_timeout)
        .build()
        .map_err(|e| e.to_string())?;
    Ok(SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_sampler(Sampler::ParentBased(Box::new(Sampler::TraceIdRatioBased(
            t.sampling_ratio,
        ))))
        .with_resource(resource(t))
        .build())
}

/// The tracer for spans built by hand (database statements), when on.
pub(crate) fn tracer() -> Option<opentelemetry_sdk::trace::SdkTracer> {
    TRACER.get().map(|p| p.tracer("deskd"))
}

struct Headers<'a>(&'a http::HeaderMap);

impl Extractor for Headers<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }
    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(|k| k.as_str()).collect()
    }
}

/// Joins `span` to the caller's trace (W3C `traceparent`/`tracestate` in
/// the request metadata), when traces are on.
pub fn set_remote_parent(span: &tracing::Span, headers: &http::HeaderMap) {
    if !traces_enabled() || !headers.contains_key("traceparent") {
        return;
    }
    let cx = TraceContextPropagator::new().extract(&Headers(headers));
    let _ = span.set_parent(cx);
}

/// The trace id to log for a request: its span's when traces are on, else
/// the caller's `traceparent`'s, else empty.
pub fn trace_id(span: &tracing::Span, headers_trace: Option<&str>) -> String {
    if traces_enabled() {
        let id = span.context().span().span_context().trace_id();
        if id != opentelemetry::trace::TraceId::INVALID {
            return id.to_string();
        }
    }
    headers_trace.unwrap_or_default().to_string()
}

/// The trace id in a `traceparent` value (`00-<32 hex>-<16 hex>-<2 hex>`).
pub fn traceparent_trace_id(value: &str) -> Option<&str> {
    let mut parts = value.split('-');
    let (_, trace, span, _) = (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    (trace.len() == 32
        && span.len() == 16
        && trace.bytes().all(|b| b.is_ascii_hexdigit())
        && trace != "00000000000000000000000000000000")
        .then_some(trace)
}

/// The current span's context as a `traceparent` value, when it is sampled
/// (stored with a job so the job's span can link to the request).
pub fn current_traceparent() -> Option<String> {
    if !traces_enabled() {
        return None;
    }
    let cx = tracing::Span::current().context();
    let span = cx.span();
    let sc = span.span_context();
    (sc.is_valid() && sc.is_sampled()).then(|| format!("00-{}-{}-01", sc.trace_id(), sc.span_id()))
}

/// A span context from a stored `traceparent`, for a link.
pub fn parse_traceparent(value: &str) -> Option<opentelemetry::trace::SpanContext> {
    let mut map = std::collections::HashMap::new();
    map.insert("traceparent".to_string(), value.to_string());
    let cx = TraceContextPropagator::new().extract(&map);
    let sc = cx.span().span_context().clone();
    sc.is_valid().then_some(sc)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn traceparent_trace_ids_are_taken_only_when_well_formed() {
        let tid = "4bf92f3577b34da6a3ce929d0e0e4736";
        assert_eq!(
            traceparent_trace_id(&format!("00-{tid}-00f067aa0ba902b7-01")),
            Some(tid)
        );
        assert_eq!(traceparent_trace_id("00-zz-00f067aa0ba902b7-01"), None);
        assert_eq!(traceparent_trace_id("garbage"), None);
        assert_eq!(
            traceparent_trace_id("00-00000000000000000000000000000000-00f067aa0ba902b7-01"),
            None
        );
        assert!(parse_traceparent(&format!("00-{tid}-00f067aa0ba902b7-01")).is_some());
        assert!(parse_traceparent("00-xyz").is_none());
    }
}
