//! What `deskd serve` runs beside the gRPC server: the PostgreSQL health
//! loop, the API keys' usage flush, the stop flag they share, and the
//! shutdown signal.

use std::{future::Future, sync::Arc, time::Duration};

use sqlx::PgPool;
use tonic_health::{ServingStatus, server::HealthReporter};

use super::SERVICE_NAMES;
use crate::tenancy::key_usage::KeyUsage;

/// Writes API keys' `last_use_time` every `interval`, and once more at stop.
pub(super) async fn key_usage_loop(
    usage: Arc<KeyUsage>,
    pool: PgPool,
    interval: Duration,
    timeout: Duration,
    stop: tokio_util_like::Stop,
) {
    loop {
        tokio::select! {
            () = tokio::time::sleep(interval) => usage.flush(&pool, timeout).await,
            () = stop.stopped() => {
                usage.flush(&pool, timeout).await;
                return;
            }
        }
    }
}

/// One health probe: a trivial query through the serving pool.
pub(super) async fn probe(pool: &PgPool, timeout: Duration) -> bool {
    matches!(
        tokio::time::timeout(timeout, sqlx::query("select 1").execute(pool)).await,
        Ok(Ok(_))
    )
}

/// Probes PostgreSQL and publishes SERVING / NOT_SERVING for every service.
pub(super) async fn health_loop(
    initially_ok: bool,
    pool: PgPool,
    health: HealthReporter,
    readiness: crate::admin::Readiness,
    interval: Duration,
    timeout: Duration,
    stop: tokio_util_like::Stop,
) {
    let mut last = initially_ok;
    loop {
        let ok = probe(&pool, timeout).await;
        readiness.set(ok);
        if last != ok && !stop.is_stopped() {
            let status = if ok {
                ServingStatus::Serving
            } else {
                ServingStatus::NotServing
            };
            if ok {
                tracing::info!("postgres reachable: SERVING");
            } else {
                tracing::warn!("postgres unreachable: NOT_SERVING");
            }
            for name in SERVICE_NAMES.iter().chain(std::iter::once(&"")) {
                health.set_service_status(*name, status).await;
            }
            last = ok;
        }
        tokio::select! {
            () = tokio::time::sleep(interval) => {}
            () = stop.stopped() => return,
        }
    }
}

/// A tiny stop flag (avoids a dependency on tokio-util for one type).
pub(super) mod tokio_util_like {
    use std::sync::Arc;

    use tokio::sync::watch;

    #[derive(Clone)]
    pub struct Stop(Arc<watch::Sender<bool>>);

    impl Default for Stop {
        fn default() -> Self {
            Self(Arc::new(watch::channel(false).0))
        }
    }

    impl Stop {
        pub fn stop(&self) {
            self.0.send_replace(true);
        }
        pub fn is_stopped(&self) -> bool {
            *self.0.borrow()
        }
        pub async fn stopped(&self) {
            let mut rx = self.0.subscribe();
            let _ = rx.wait_for(|v| *v).await;
        }
    }
}

/// Resolves when SIGTERM or SIGINT arrives.
pub fn shutdown_signal() -> impl Future<Output = ()> + Send + 'static {
    // Register the handlers now, not when the future is first polled: a
    // SIGTERM that arrived in between would otherwise kill the process with
    // the default action instead of draining it.
    #[cfg(unix)]
    let (term, int) = {
        use tokio::signal::unix::{SignalKind, signal};
        (
            signal(SignalKind::terminate()).ok(),
            signal(SignalKind::interrupt()).ok(),
        )
    };
    async move {
        #[cfg(unix)]
        {
            let wait = |s: Option<tokio::signal::unix::Signal>| async move {
                match s {
                    Some(mut s) => {
                        s.recv().await;
                    }
                    None => std::future::pending::<()>().await,
                }
            };
            tokio::select! {
                () = wait(term) => {}
                () = wait(int) => {}
            }
        }
        #[cfg(not(unix))]
        {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}
