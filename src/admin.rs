//! The admin HTTP listener (`admin_addr`, default `127.0.0.1:9090`):
//! `/metrics` in Prometheus text format, `/livez` (the process answers) and
//! `/readyz` (PostgreSQL answers and the process is not shutting down), for
//! scrapers and orchestrators. It serves no tenant data and takes no input.

use std::{
    net::SocketAddr,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
};

use axum::{Router, http::StatusCode, response::IntoResponse, routing::get};
use tokio::net::TcpListener;

/// Whether this process should receive traffic: PostgreSQL answers (set by
/// the health loop) and it is not shutting down (set once, first thing on
/// SIGTERM, so load balancers stop sending before the listener closes).
#[derive(Clone, Debug, Default)]
pub struct Readiness(Arc<(AtomicBool, AtomicBool)>);

impl Readiness {
    /// Records whether PostgreSQL answers.
    pub fn set(&self, db_ok: bool) {
        self.0.0.store(db_ok, Ordering::Relaxed);
    }

    /// Marks the process as shutting down, for good.
    pub fn stopping(&self) {
        self.0.1.store(true, Ordering::Relaxed);
    }

    /// Current readiness.
    pub fn is_ready(&self) -> bool {
        self.0.0.load(Ordering::Relaxed) && !self.0.1.load(Ordering::Relaxed)
    }
}

/// A bound admin listener.
pub struct AdminServer {
    listener: TcpListener,
    addr: SocketAddr,
}

impl AdminServer {
    /// Binds `addr`.
    pub async fn bind(addr: SocketAddr) -> anyhow::Result<Self> {
        use anyhow::Context as _;
        let listener = TcpListener::bind(addr)
            .await
            .with_context(|| format!("binding the admin listener {addr} (admin_addr / DESKD_ADMIN_ADDR)"))?;
        let addr = listener.local_addr()?;
        Ok(Self { listener, addr })
    }

    /// The bound address.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Serves until `stop` resolves.
    pub async fn serve(self, readiness: Readiness, stop: impl Future<Output = ()> + Send + 'static) {
        let app = Router::new()
            .route("/metrics", get(metrics))
            .route("/livez", get(|| async { "ok\n" }))
            .route(
                "/readyz",
                get(move || {
                    let ready = readiness.is_ready();
                    async move {
                        if ready {
                            (StatusCode::OK, "ready\n")
                        } else {
                            (StatusCode::SERVICE_UNAVAILABLE, "not ready\n")
                        }
                    }
                }),
            );
        tracing::info!(addr = %self.addr, "deskd admin listener (/metrics, /livez, /readyz)");
        if let Err(e) = axum::serve(self.listener, app).with_graceful_shutdown(stop).await {
            tracing::error!(error = %e, "admin listener failed");
        }
    }
}

async fn metrics() -> impl IntoResponse {
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        crate::telemetry::metrics::render(),
    )
}
