//! The worker: claims due jobs, runs them with a timeout and a lease
//! heartbeat in their tenant's context, and records the outcome.

use std::{
    collections::{HashMap, HashSet},
    future::Future,
    sync::{Arc, Mutex},
    time::Duration,
};

use futures_util::{FutureExt as _, future::BoxFuture};
use rand::Rng as _;
use sqlx::{PgConnection, PgPool};
use tokio::{sync::Semaphore, task::JoinSet};
use tracing::Instrument as _;
use uuid::Uuid;

use super::{Job, backoff, queue};
use crate::{
    error::AppError,
    tenancy::{TenantId, TenantTx, tx::Budget},
};

/// How a worker runs.
#[derive(Debug, Clone)]
pub struct WorkerConfig {
    /// Jobs run at once by this worker.
    pub concurrency: usize,
    /// How often an idle worker looks for due jobs.
    pub poll_interval: Duration,
    /// How long a claimed job stays ours without a heartbeat; a dead
    /// worker's jobs are claimed again after this.
    pub lease: Duration,
    /// The first retry delay; doubled per attempt, with ±20 % jitter.
    pub backoff_base: Duration,
    /// The longest retry delay.
    pub backoff_max: Duration,
    /// How long running jobs may take to finish at shutdown before they are
    /// handed back to the queue.
    pub shutdown_grace: Duration,
    /// Cap on one job-transaction's statements.
    pub statement_cap: Duration,
}

impl Default for WorkerConfig {
    fn default() -> Self {
        Self {
            concurrency: 4,
            poll_interval: Duration::from_millis(500),
            lease: Duration::from_secs(30),
            backoff_base: Duration::from_secs(2),
            backoff_max: Duration::from_secs(3600),
            shutdown_grace: Duration::from_secs(30),
            statement_cap: Duration::from_secs(30),
        }
    }
}

/// What a job's handler gets besides its payload.
#[derive(Clone)]
pub struct JobCtx {
    /// The job's tenant: its SQL runs in this tenant's context.
    pub tenant: TenantId,
    /// The job.
    pub job_id: Uuid,
    /// This attempt (1-based).
    pub attempt: i32,
    pool: PgPool,
    statement_cap: Duration,
}

impl JobCtx {
    /// A transaction in the job's tenant context (under RLS).
    pub async fn tx(&self) -> Result<TenantTx, AppError> {
        TenantTx::begin(&self.pool, self.tenant, Budget::new(None, self.statement_cap)).await
    }
}

type HandlerFn = Arc<dyn Fn(JobCtx, serde_json::Value) -> BoxFuture<'static, Result<(), String>> + Send + Sync>;

/// What to do, in the transaction that marks a job dead, about what the job
/// was for (e.g. fail the operation a dead export was running).
pub type DeadHook<J> = for<'c> fn(&'c mut PgConnection, TenantId, J) -> BoxFuture<'c, Result<(), AppError>>;

type DeadFn = Arc<
    dyn for<'c> Fn(&'c mut PgConnection, TenantId, serde_json::Value) -> BoxFuture<'c, Result<(), AppError>>
        + Send
        + Sync,
>;

struct Handler {
    run: HandlerFn,
    timeout: Duration,
    on_dead: Option<DeadFn>,
}

/// The span of one job attempt: a consumer span in the job's tenant, linked
/// to the trace of the request that enqueued the job (a link, not a parent:
/// the request finished long ago and may have been retried).
fn job_span(job: &queue::Claimed) -> tracing::Span {
    let span = tracing::info_span!(
        "job",
        otel.name = %format!("job {}", job.kind),
        otel.kind = "consumer",
        otel.status_code = tracing::field::Empty,
        job.kind = %job.kind,
        job.id = %job.id,
        job.attempt = job.attempts,
        job.outcome = tracing::field::Empty,
        tenant.id = %job.tenant_id,
    );
    if crate::telemetry::traces_enabled()
        && let Some(sc) = job
            .trace_parent
            .as_deref()
            .and_then(crate::telemetry::parse_traceparent)
    {
        use tracing_opentelemetry::OpenTelemetrySpanExt as _;
        span.add_link(sc);
    }
    span
}

/// A panic's message, for the job's error.
fn panic_message(p: &(dyn std::any::Any + Send)) -> String {
    let msg = p
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| p.downcast_ref::<String>().cloned())
        .unwrap_or_default();
    format!("the handler panicked: {msg}")
}

/// The handlers a worker runs, by job kind.
#[derive(Default)]
pub struct Registry {
    handlers: HashMap<&'static str, Handler>,
}

impl Registry {
    /// Runs jobs of type `J` with `f`; an `Err` is the attempt's error text.
    pub fn register<J, F, Fut>(&mut self, f: F)
    where
        J: Job,
        F: Fn(JobCtx, J) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), String>> + Send + 'static,
    {
        let f = Arc::new(f);
        let run: HandlerFn = Arc::new(move |ctx, payload| {
            let f = f.clone();
            Box::pin(async move {
                let job: J = serde_json::from_value(payload).map_err(|e| format!("undecodable payload: {e}"))?;
                // A panic fails the attempt (retried like any error) instead
                // of killing the task and leaving the job to its lease.
                std::panic::AssertUnwindSafe(f(ctx, job))
                    .catch_unwind()
                    .await
                    .unwrap_or_else(|p| Err(panic_message(p.as_ref())))
            })
        });
        self.handlers.insert(
            J::KIND,
            Handler {
                run,
                timeout: J::TIMEOUT,
                on_dead: None,
            },
        );
    }

    /// Runs `hook` in the transaction that marks a job of type `J` dead (its
    /// last attempt failed, or the worker running it died). `J` must be registered.
    pub fn on_dead<J: Job>(&mut self, hook: DeadHook<J>) {
        let f: DeadFn = Arc::new(
            move |conn, tenant, payload| match serde_json::from_value::<J>(payload) {
                Ok(job) => hook(conn, tenant, job),
                Err(_) => Box::pin(async { Ok(()) }),
            },
        );
        if let Some(h) = self.handlers.get_mut(J::KIND) {
            h.on_dead = Some(f);
        }
    }

    fn kinds(&self) -> Vec<&'static str> {
        self.handlers.keys().copied().collect()
    }
}

type Running = Arc<Mutex<HashSet<(TenantId, Uuid)>>>;

/// How often a worker refreshes the `deskd.jobs.queue.depth` reading.
const QUEUE_DEPTH_EVERY: Duration = Duration::from_secs(10);

/// Runs jobs until `stop` resolves, then lets running jobs finish for
/// `shutdown_grace` and hands the rest back to the queue.
pub async fn run(pool: PgPool, registry: Arc<Registry>, cfg: WorkerConfig, stop: impl Future<Output = ()> + Send) {
    let worker_id = format!("{}-{}", std::process::id(), &Uuid::new_v4().simple().to_string()[..8]);
    let kinds = registry.kinds();
    if kinds.is_empty() {
        stop.await;
        return;
    }
    let lease_ms = i32::try_from(cfg.lease.as_millis()).unwrap_or(i32::MAX);
    let slots = Arc::new(Semaphore::new(cfg.concurrency.max(1)));
    let running: Running = Arc::default();
    let mut tasks = JoinSet::new();
    tokio::pin!(stop);
    tracing::info!(worker = %worker_id, kinds = ?kinds, "job worker started");
    let mut next_depth = tokio::time::Instant::now();
    loop {
        while tasks.try_join_next().is_some() {}
        if tokio::time::Instant::now() >= next_depth {
            next_depth = tokio::time::Instant::now() + QUEUE_DEPTH_EVERY;
            match queue::depth(&pool).await {
                Ok(rows) => crate::telemetry::metrics::set_queue_depth(rows),
                Err(e) => tracing::debug!(error = %e, "reading the queue depth failed"),
            }
        }
        let free = slots.available_permits();
        let claimed = if free == 0 {
            Vec::new()
        } else {
            let limit = i32::try_from(free).unwrap_or(1);
            match queue::claim(&pool, &worker_id, limit, lease_ms, &kinds).await {
                Ok(c) => c,
                Err(e) => {
                    tracing::warn!(error = %e, "claiming jobs failed");
                    Vec::new()
                }
            }
        };
        let idle = claimed.is_empty();
        for job in claimed {
            let Ok(permit) = slots.clone().acquire_owned().await else {
                break;
            };
            let ctx = RunCtx {
                pool: pool.clone(),
                registry: registry.clone(),
                cfg: cfg.clone(),
                worker: worker_id.clone(),
                lease_ms,
                running: running.clone(),
            };
            let span = job_span(&job);
            tasks.spawn(
                async move {
                    ctx.run_one(job).await;
                    drop(permit);
                }
                .instrument(span),
            );
        }
        if idle {
            tokio::select! {
                () = tokio::time::sleep(cfg.poll_interval) => {}
                Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
                () = &mut stop => break,
            }
        } else if tokio::time::timeout(Duration::ZERO, &mut stop).await.is_ok() {
            break;
        }
    }
    // Let running jobs finish, then hand back the ones that did not.
    let drained = tokio::time::timeout(cfg.shutdown_grace, async { while tasks.join_next().await.is_some() {} }).await;
    if drained.is_err() {
        tasks.abort_all();
        while tasks.join_next().await.is_some() {}
        let left: Vec<(TenantId, Uuid)> = running.lock().map(|r| r.iter().copied().collect()).unwrap_or_default();
        for (tenant, id) in left {
            let released = async {
                let mut tx = TenantTx::begin(&pool, tenant, Budget::new(None, cfg.statement_cap)).await?;
                queue::release(tx.conn(), tenant, id, &worker_id).await?;
                tx.commit().await
            }
            .await;
            match released {
                Ok(()) => tracing::info!(job_id = %id, "job handed back at shutdown"),
                Err(e) => tracing::warn!(job_id = %id, error = %e, "could not hand a job back; its lease will expire"),
            }
        }
    }
    tracing::info!(worker = %worker_id, "job worker stopped");
}

struct RunCtx {
    pool: PgPool,
    registry: Arc<Registry>,
    cfg: WorkerConfig,
    worker: String,
    lease_ms: i32,
    running: Running,
}

impl RunCtx {
    async fn finish(&self, tenant: TenantId, job: &queue::Claimed, outcome: Result<(), String>) {
        let retry_in_ms = |attempts: i32| {
            (attempts < job.max_attempts).then(|| {
                let jitter: f64 = rand::rng().random();
                backoff(self.cfg.backoff_base, self.cfg.backoff_max, attempts, jitter).as_millis() as i64
            })
        };
        let retry = outcome.is_err() && retry_in_ms(job.attempts).is_some();
        let result = async {
            let mut tx = TenantTx::begin(&self.pool, tenant, Budget::new(None, self.cfg.statement_cap)).await?;
            match &outcome {
                Ok(()) => queue::succeed(tx.conn(), tenant, job.id, &self.worker).await?,
                Err(e) => {
                    let dead =
                        queue::fail(tx.conn(), tenant, job.id, &self.worker, e, retry_in_ms(job.attempts)).await?;
                    let hook = self
                        .registry
                        .handlers
                        .get(job.kind.as_str())
                        .and_then(|h| h.on_dead.clone());
                    if let (true, Some(hook)) = (dead, hook) {
                        hook(tx.conn(), tenant, job.payload.clone()).await?;
                    }
                }
            }
            tx.commit().await
        }
        .await;
        if result.is_ok() {
            let label = match (&outcome, retry) {
                (Ok(()), _) => "succeeded",
                (Err(_), true) => "retry",
                (Err(_), false) => "dead",
            };
            crate::telemetry::metrics::metrics().job_attempts.add(
                1,
                &[
                    opentelemetry::KeyValue::new("job.kind", job.kind.clone()),
                    opentelemetry::KeyValue::new("outcome", label),
                ],
            );
            let span = tracing::Span::current();
            span.record("job.outcome", label);
            if label != "succeeded" {
                span.record("otel.status_code", "ERROR");
            }
        }
        match (&outcome, result) {
            (_, Err(e)) => tracing::warn!(job_id = %job.id, error = %e, "could not record a job's outcome"),
            (Ok(()), Ok(())) => {
                tracing::info!(job_id = %job.id, kind = %job.kind, attempt = job.attempts, "job succeeded")
            }
            (Err(e), Ok(())) => tracing::warn!(
                job_id = %job.id, kind = %job.kind, attempt = job.attempts, max_attempts = job.max_attempts,
                error = %e, "job attempt failed"
            ),
        }
    }

    async fn run_one(self, job: queue::Claimed) {
        let tenant = TenantId(job.tenant_id);
        if let Ok(mut r) = self.running.lock() {
            r.insert((tenant, job.id));
        }
        let outcome = if job.attempts > job.max_attempts {
            // Claimed again after its worker died on the last attempt.
            Err("the worker running the last attempt stopped (lease expired)".to_string())
        } else {
            match self.registry.handlers.get(job.kind.as_str()) {
                None => Err(format!("no handler for job kind {}", job.kind)),
                Some(handler) => {
                    let ctx = JobCtx {
                        tenant,
                        job_id: job.id,
                        attempt: job.attempts,
                        pool: self.pool.clone(),
                        statement_cap: self.cfg.statement_cap,
                    };
                    let heartbeat = self.heartbeat(tenant, job.id);
                    let run = (handler.run)(ctx, job.payload.clone());
                    let result = tokio::select! {
                        r = tokio::time::timeout(handler.timeout, run) => r,
                        () = heartbeat => Ok(Err("lost the job's lease".to_string())),
                    };
                    match result {
                        Ok(r) => r,
                        Err(_) => Err(format!("timed out after {:?}", handler.timeout)),
                    }
                }
            }
        };
        self.finish(tenant, &job, outcome).await;
        if let Ok(mut r) = self.running.lock() {
            r.remove(&(tenant, job.id));
        }
    }

    /// Extends the lease every third of it; resolves only if the lease is lost.
    async fn heartbeat(&self, tenant: TenantId, id: Uuid) {
        let every = Duration::from_millis(u64::try_from(self.lease_ms / 3).unwrap_or(1000).max(10));
        loop {
            tokio::time::sleep(every).await;
            let kept = async {
                let mut tx = TenantTx::begin(&self.pool, tenant, Budget::new(None, self.cfg.statement_cap)).await?;
                let kept = queue::extend_lease(tx.conn(), tenant, id, &self.worker, self.lease_ms).await?;
                tx.commit().await?;
                Ok::<_, AppError>(kept)
            }
            .await;
            if matches!(kept, Ok(false)) {
                return;
            }
        }
    }
}
