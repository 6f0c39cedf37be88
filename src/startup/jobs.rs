//! The job worker as deskd runs it: the registry of handlers, the worker's
//! settings from `[jobs]`, and `deskd worker`.

use std::{future::Future, sync::Arc};

use anyhow::Context as _;

use crate::{
    admin::{AdminServer, Readiness},
    config::Config,
    db,
    jobs::worker::{self, Registry, WorkerConfig},
    mail::Mailer,
    tickets::export::{ExportStore, ExportTickets, fail_dead_export, run_export},
    users::jobs::{WelcomeEmail, send_welcome_email},
};

/// Every job kind deskd runs, with its handler.
pub fn registry(config: &Config) -> anyhow::Result<Registry> {
    let mailer = Mailer::from_config(&config.smtp).context("building the SMTP transport")?;
    let mut registry = Registry::default();
    registry.register(move |ctx, job: WelcomeEmail| send_welcome_email(ctx, job, mailer.clone()));
    let exports = ExportStore::from_config(&config.exports).map_err(anyhow::Error::msg)?;
    registry.register(move |ctx, job: ExportTickets| run_export(ctx, job, exports.clone()));
    registry.on_dead::<ExportTickets>(fail_dead_export);
    Ok(registry)
}

/// The worker's settings: `[jobs]`, the server's shutdown grace and the
/// database statement cap.
pub fn worker_config(config: &Config) -> WorkerConfig {
    let j = &config.jobs;
    WorkerConfig {
        concurrency: j.concurrency,
        poll_interval: j.poll_interval,
        lease: j.lease,
        backoff_base: j.backoff_base,
        backoff_max: j.backoff_max,
        shutdown_grace: config.server.shutdown_grace,
        statement_cap: config.database.statement_timeout,
    }
}

/// `deskd worker`: connects as the app role (refusing a role that bypasses
/// RLS), then runs jobs until `stop` resolves and the running ones drain.
/// It also serves the admin listener (`/metrics` with the job and database
/// metrics; `/readyz` answers 503 once shutdown begins).
pub async fn run_worker(config: Config, stop: impl Future<Output = ()> + Send) -> anyhow::Result<()> {
    let pool = db::app_pool(&config.database)?;
    db::check_app_role(&pool).await?;
    let registry = Arc::new(registry(&config)?);
    let admin = AdminServer::bind(config.admin_addr).await?;
    let readiness = Readiness::default();
    readiness.set(true);
    let _pool_gauges = crate::telemetry::metrics::register_pool(&pool, config.database.max_connections);
    let (admin_stop, admin_stopped) = tokio::sync::oneshot::channel::<()>();
    let admin_task = tokio::spawn(admin.serve(readiness.clone(), async move {
        let _ = admin_stopped.await;
    }));
    let stop = async move {
        stop.await;
        readiness.stopping();
    };
    worker::run(pool.clone(), registry, worker_config(&config), stop).await;
    pool.close().await;
    let _ = admin_stop.send(());
    let _ = admin_task.await;
    Ok(())
}
