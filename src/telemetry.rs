//! Logging set-up (tracing). OpenTelemetry export arrives with the
//! observability work; the `request_completed` events are already structured.

use tracing_subscriber::{EnvFilter, fmt, prelude::*};

use crate::config::{LogConfig, LogFormat};

/// Installs the global subscriber: JSON lines or readable text, filtered by
/// `RUST_LOG` when set, else by `log.filter`. Logs go to stderr so that
/// commands printing an id or token keep stdout clean.
pub fn init(cfg: &LogConfig) {
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(&cfg.filter))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let registry = tracing_subscriber::registry().with(filter);
    let result = match cfg.format {
        LogFormat::Json => registry
            .with(
                fmt::layer()
                    .json()
                    .flatten_event(true)
                    .with_current_span(true)
                    .with_writer(std::io::stderr),
            )
            .try_init(),
        LogFormat::Text => registry.with(fmt::layer().with_writer(std::io::stderr)).try_init(),
    };
    // Already initialised (tests): keep the first subscriber.
    let _ = result;
}
