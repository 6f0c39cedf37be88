//! The `telemetry` section: OpenTelemetry export over OTLP.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Traces and metrics over OTLP/gRPC (`[telemetry]`). Without an endpoint
/// nothing is exported and no OpenTelemetry spans are built; metrics are
/// still served in Prometheus format on the admin listener.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TelemetryConfig {
    /// The OTLP/gRPC receiver, e.g. `http://otel-collector:4317`
    /// (`DESKD_TELEMETRY_OTLP_ENDPOINT`); empty turns OTLP export off.
    pub otlp_endpoint: String,
    /// `service.name` of the exported resource (`DESKD_TELEMETRY_SERVICE_NAME`).
    pub service_name: String,
    /// The share of new traces (requests without a sampled caller) recorded,
    /// 0.0–1.0 (`DESKD_TELEMETRY_SAMPLING_RATIO`). A caller's sampling
    /// decision in `traceparent` is always followed (parent-based).
    pub sampling_ratio: f64,
    /// How often metrics are pushed over OTLP (`DESKD_TELEMETRY_METRICS_INTERVAL`).
    #[serde(with = "humantime_serde")]
    pub metrics_interval: Duration,
    /// The bound on one OTLP export call (`DESKD_TELEMETRY_EXPORT_TIMEOUT`).
    #[serde(with = "humantime_serde")]
    pub export_timeout: Duration,
}

impl Default for TelemetryConfig {
    fn default() -> Self {
        Self {
            otlp_endpoint: String::new(),
            service_name: "deskd".to_string(),
            sampling_ratio: 1.0,
            metrics_interval: Duration::from_secs(30),
            export_timeout: Duration::from_secs(10),
        }
    }
}
