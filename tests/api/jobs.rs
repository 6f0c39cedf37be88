//! The job system against real PostgreSQL: transactional enqueue, one run per
//! committed job, retries on the stated schedule then dead, unique keys,
//! lease expiry after a worker dies, hand-back at shutdown, tenant context.

use std::{
    sync::{
        Arc, Mutex,
        atomic::{AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use deskd::{
    jobs::{
        Job,
        queue::{self, EnqueueOptions},
        worker::{self, Registry, WorkerConfig},
    },
    tenancy::{TenantId, TenantTx, tx::Budget},
    users::model::Role,
};
use serde::{Deserialize, Serialize};
use sqlx::PgPool;
use uuid::Uuid;

use crate::helpers::*;

#[derive(Serialize, Deserialize)]
struct Ping {
    n: u32,
}
impl Job for Ping {
    const KIND: &'static str = "test.ping";
}

#[derive(Serialize, Deserialize)]
struct AlwaysFails;
impl Job for AlwaysFails {
    const KIND: &'static str = "test.always_fails";
    const MAX_ATTEMPTS: i32 = 3;
}

#[derive(Serialize, Deserialize)]
struct Blocks;
impl Job for Blocks {
    const KIND: &'static str = "test.blocks";
}

fn fast() -> WorkerConfig {
    WorkerConfig {
        concurrency: 4,
        poll_interval: Duration::from_millis(10),
        lease: Duration::from_millis(600),
        backoff_base: Duration::from_millis(50),
        backoff_max: Duration::from_secs(5),
        shutdown_grace: Duration::from_secs(5),
        statement_cap: Duration::from_secs(5),
    }
}

async fn enqueue<J: Job>(pool: &PgPool, tenant: TenantId, job: &J, opts: EnqueueOptions, commit: bool) -> Uuid {
    let mut tx = TenantTx::begin(pool, tenant, Budget::new(None, Duration::from_secs(5)))
        .await
        .expect("begin");
    let id = queue::enqueue(tx.conn(), tenant, job, opts).await.expect("enqueue");
    if commit {
        tx.commit().await.expect("commit");
    }
    id
}

async fn job_row(app: &TestApp, id: Uuid) -> Option<(String, i32, Option<String>)> {
    let mut conn = app.db.owner_conn().await;
    sqlx::query_as("select state, attempts, last_error from jobs where id = $1")
        .bind(id)
        .fetch_optional(&mut conn)
        .await
        .expect("job row")
}

/// Polls (a condition, bounded) until the job reaches `state`.
async fn wait_state(app: &TestApp, id: Uuid, state: &str) -> (String, i32, Option<String>) {
    for _ in 0..2000 {
        if let Some(row) = job_row(app, id).await
            && row.0 == state
        {
            return row;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    panic!("job {id} never reached {state}: {:?}", job_row(app, id).await);
}

struct RunningWorker {
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
}

impl RunningWorker {
    fn start(pool: PgPool, registry: Registry, cfg: WorkerConfig) -> Self {
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(worker::run(pool, Arc::new(registry), cfg, async move {
            let _ = rx.await;
        }));
        Self { stop: Some(tx), task }
    }

    async fn stop(mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        let _ = self.task.await;
    }
}

#[tokio::test]
async fn a_rolled_back_write_never_runs_its_job_and_a_committed_one_runs_once() {
    let app = spawn_app().await;
    let caller = app.caller(Role::Agent).await;
    let pool = app.db.app_pool(4).await;
    let rolled_back = enqueue(&pool, caller.tenant, &Ping { n: 1 }, EnqueueOptions::default(), false).await;
    let committed = enqueue(&pool, caller.tenant, &Ping { n: 2 }, EnqueueOptions::default(), true).await;
    assert!(
        job_row(&app, rolled_back).await.is_none(),
        "rolled back with its transaction"
    );

    let runs = Arc::new(Mutex::new(Vec::new()));
    let mut registry = Registry::default();
    let seen = runs.clone();
    registry.register(move |ctx, job: Ping| {
        let seen = seen.clone();
        async move {
            // The job's SQL runs in its tenant's context, under RLS.
            let mut tx = ctx.tx().await.map_err(|e| e.to_string())?;
            let visible: i64 = sqlx::query_scalar("select count(*) from tenants")
                .fetch_one(tx.conn())
                .await
                .map_err(|e| e.to_string())?;
            tx.commit().await.map_err(|e| e.to_string())?;
            seen.lock()
                .expect("lock")
                .push((ctx.tenant, job.n, ctx.attempt, visible));
            Ok(())
        }
    });
    let w = RunningWorker::start(pool.clone(), registry, fast());
    let (_, attempts, _) = wait_state(&app, committed, "succeeded").await;
    w.stop().await;
    assert_eq!(attempts, 1);
    let runs = runs.lock().expect("lock").clone();
    assert_eq!(
        runs,
        vec![(caller.tenant, 2, 1, 1)],
        "one run, in the tenant's context (sees one tenant)"
    );
}

#[tokio::test]
async fn a_failing_job_retries_on_the_schedule_then_is_dead_with_its_error() {
    let app = spawn_app().await;
    let caller = app.caller(Role::Agent).await;
    let pool = app.db.app_pool(4).await;
    let id = enqueue(&pool, caller.tenant, &AlwaysFails, EnqueueOptions::default(), true).await;
    let times = Arc::new(Mutex::new(Vec::new()));
    let mut registry = Registry::default();
    let t = times.clone();
    registry.register(move |ctx, _: AlwaysFails| {
        let t = t.clone();
        async move {
            t.lock().expect("lock").push((ctx.attempt, Instant::now()));
            Err(format!("smtp refused on attempt {}", ctx.attempt))
        }
    });
    let w = RunningWorker::start(pool, registry, fast());
    let (_, attempts, last_error) = wait_state(&app, id, "dead").await;
    w.stop().await;
    assert_eq!(attempts, 3);
    assert_eq!(last_error.as_deref(), Some("smtp refused on attempt 3"));
    let times = times.lock().expect("lock").clone();
    assert_eq!(times.iter().map(|(a, _)| *a).collect::<Vec<_>>(), vec![1, 2, 3]);
    // Exponential backoff from 50 ms with ±20 % jitter: at least 40 ms, then 80 ms.
    let gap1 = times[1].1 - times[0].1;
    let gap2 = times[2].1 - times[1].1;
    assert!(gap1 >= Duration::from_millis(40), "{gap1:?}");
    assert!(gap2 >= Duration::from_millis(80), "{gap2:?}");

    // An admin can put a dead job back with a fresh budget.
    let mut tx = TenantTx::begin(
        &app.db.app_pool(1).await,
        caller.tenant,
        Budget::new(None, Duration::from_secs(5)),
    )
    .await
    .expect("begin");
    assert!(queue::retry_dead(tx.conn(), caller.tenant, id).await.expect("retry"));
    tx.commit().await.expect("commit");
    assert_eq!(job_row(&app, id).await.map(|r| (r.0, r.1)), Some(("queued".into(), 0)));
}

#[tokio::test]
async fn concurrent_enqueues_of_one_unique_key_make_one_job() {
    let app = spawn_app().await;
    let caller = app.caller(Role::Agent).await;
    let pool = app.db.app_pool(20).await;
    let mut set = tokio::task::JoinSet::new();
    for i in 0..100 {
        let pool = pool.clone();
        let tenant = caller.tenant;
        set.spawn(async move {
            let opts = EnqueueOptions {
                unique_key: Some("welcome:alice".into()),
                run_at: None,
            };
            enqueue(&pool, tenant, &Ping { n: i }, opts, true).await
        });
    }
    let mut ids = std::collections::HashSet::new();
    while let Some(id) = set.join_next().await {
        ids.insert(id.expect("join"));
    }
    assert_eq!(ids.len(), 1, "every enqueue names the one job");
    let mut conn = app.db.owner_conn().await;
    let n: i64 = sqlx::query_scalar("select count(*) from jobs where tenant_id = $1")
        .bind(caller.tenant.0)
        .fetch_one(&mut conn)
        .await
        .expect("count");
    assert_eq!(n, 1);
}

#[tokio::test]
async fn a_job_whose_worker_died_runs_again_after_its_lease() {
    let app = spawn_app().await;
    let caller = app.caller(Role::Agent).await;
    let pool = app.db.app_pool(4).await;
    let id = enqueue(&pool, caller.tenant, &Ping { n: 7 }, EnqueueOptions::default(), true).await;
    // A worker claims it and dies (never heartbeats or finishes).
    let claimed = queue::claim(&pool, "crashed-worker", 10, 200, &[Ping::KIND])
        .await
        .expect("claim");
    assert_eq!(claimed.len(), 1);
    assert_eq!(job_row(&app, id).await.map(|r| r.0), Some("running".into()));

    let runs = Arc::new(AtomicUsize::new(0));
    let mut registry = Registry::default();
    let r = runs.clone();
    registry.register(move |_, _: Ping| {
        let r = r.clone();
        async move {
            r.fetch_add(1, Ordering::SeqCst);
            Ok(())
        }
    });
    let w = RunningWorker::start(pool, registry, fast());
    let (_, attempts, _) = wait_state(&app, id, "succeeded").await;
    w.stop().await;
    assert_eq!(attempts, 2, "the crashed attempt counts");
    assert_eq!(runs.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn shutdown_hands_unfinished_jobs_back() {
    let app = spawn_app().await;
    let caller = app.caller(Role::Agent).await;
    let pool = app.db.app_pool(4).await;
    let id = enqueue(&pool, caller.tenant, &Blocks, EnqueueOptions::default(), true).await;
    let started = Arc::new(tokio::sync::Notify::new());
    let mut registry = Registry::default();
    let s = started.clone();
    registry.register(move |_, _: Blocks| {
        let s = s.clone();
        async move {
            s.notify_one();
            std::future::pending::<()>().await;
            Ok(())
        }
    });
    let cfg = WorkerConfig {
        shutdown_grace: Duration::from_millis(100),
        ..fast()
    };
    let w = RunningWorker::start(pool, registry, cfg);
    started.notified().await;
    w.stop().await;
    let (state, attempts, _) = job_row(&app, id).await.expect("row");
    assert_eq!(
        (state.as_str(), attempts),
        ("queued", 0),
        "handed back, attempt not counted"
    );
}

#[tokio::test]
async fn tenants_see_only_their_own_jobs() {
    let app = spawn_app().await;
    let a = app.caller(Role::Agent).await;
    let b = app.caller(Role::Agent).await;
    let pool = app.db.app_pool(2).await;
    enqueue(&pool, a.tenant, &Ping { n: 1 }, EnqueueOptions::default(), true).await;
    enqueue(&pool, b.tenant, &Ping { n: 2 }, EnqueueOptions::default(), true).await;
    let mut tx = TenantTx::begin(&pool, a.tenant, Budget::new(None, Duration::from_secs(5)))
        .await
        .expect("begin");
    let n: i64 = sqlx::query_scalar("select count(*) from jobs")
        .fetch_one(tx.conn())
        .await
        .expect("count");
    assert_eq!(n, 1);
    // Inserting a job for B under A's context is refused by RLS.
    let err = queue::enqueue(tx.conn(), b.tenant, &Ping { n: 3 }, EnqueueOptions::default())
        .await
        .expect_err("WITH CHECK");
    assert_eq!(err.code(), tonic::Code::Internal);
}

#[derive(Serialize, Deserialize)]
struct Panics;
impl Job for Panics {
    const KIND: &'static str = "test.panics";
    const MAX_ATTEMPTS: i32 = 2;
}

#[tokio::test]
async fn a_panicking_handler_fails_the_attempt_with_the_panic_as_its_error() {
    let app = spawn_app().await;
    let caller = app.caller(Role::Agent).await;
    let pool = app.db.app_pool(4).await;
    let id = enqueue(&pool, caller.tenant, &Panics, EnqueueOptions::default(), true).await;
    let mut registry = Registry::default();
    registry.register(|ctx, _: Panics| async move {
        if ctx.attempt > 0 {
            panic!("boom on attempt {}", ctx.attempt);
        }
        Ok(())
    });
    let w = RunningWorker::start(pool.clone(), registry, fast());
    // Each panic is recorded as that attempt's failure (a panic that killed
    // the task would instead leave the job to its lease, and end as
    // "lease expired").
    let (_, attempts, last_error) = wait_state(&app, id, "dead").await;
    w.stop().await;
    assert_eq!(attempts, 2);
    assert_eq!(last_error.as_deref(), Some("the handler panicked: boom on attempt 2"));
}

/// The dead hook: enqueues a `Ping { n: 99 }` in the tenant's transaction.
fn enqueue_ping(
    conn: &mut sqlx::PgConnection,
    tenant: TenantId,
    _: AlwaysFails,
) -> futures_util::future::BoxFuture<'_, Result<(), deskd::error::AppError>> {
    Box::pin(async move {
        queue::enqueue(conn, tenant, &Ping { n: 99 }, EnqueueOptions::default())
            .await
            .map(|_| ())
    })
}

async fn pings(app: &TestApp) -> Vec<serde_json::Value> {
    let mut conn = app.db.owner_conn().await;
    sqlx::query_scalar("select payload from jobs where kind = 'test.ping' order by create_time")
        .fetch_all(&mut conn)
        .await
        .expect("pings")
}

#[tokio::test]
async fn the_dead_hook_runs_once_when_the_last_attempt_fails_or_its_worker_died() {
    let app = spawn_app().await;
    let caller = app.caller(Role::Agent).await;
    let pool = app.db.app_pool(4).await;
    let registry = || {
        let mut r = Registry::default();
        r.register(|_, _: AlwaysFails| async { Err("refused".to_string()) });
        r.on_dead::<AlwaysFails>(enqueue_ping);
        r
    };

    // Failing attempts: nothing until the third, then the hook once.
    let id = enqueue(&pool, caller.tenant, &AlwaysFails, EnqueueOptions::default(), true).await;
    let w = RunningWorker::start(pool.clone(), registry(), fast());
    wait_state(&app, id, "dead").await;
    w.stop().await;
    assert_eq!(pings(&app).await, vec![serde_json::json!({ "n": 99 })]);

    // A worker that died during the last attempt: the job is claimed again
    // when the lease expires, found out of attempts, and marked dead.
    let id = enqueue(&pool, caller.tenant, &AlwaysFails, EnqueueOptions::default(), true).await;
    let mut owner = app.db.owner_conn().await;
    sqlx::query(
        "update jobs set state = 'running', attempts = max_attempts, locked_by = 'crashed-worker', \
         locked_until = now() - interval '1 second' where id = $1",
    )
    .bind(id)
    .execute(&mut owner)
    .await
    .expect("simulate a crash");
    let w = RunningWorker::start(pool, registry(), fast());
    let (_, _, last_error) = wait_state(&app, id, "dead").await;
    w.stop().await;
    assert!(last_error.unwrap_or_default().contains("lease expired"));
    assert_eq!(pings(&app).await.len(), 2, "the hook ran for the crashed job too");
}

#[derive(Serialize, Deserialize)]
struct Unhandled;
impl Job for Unhandled {
    const KIND: &'static str = "test.unhandled";
}

#[tokio::test]
async fn the_queue_depth_counts_every_tenants_jobs_by_kind_and_state_as_the_app_role() {
    let app = spawn_app_with(|c| c.jobs.run_in_serve = false).await;
    let a = app.caller(Role::Agent).await;
    let b = app.caller(Role::Agent).await;
    // The app role, under RLS: the depth still spans tenants (and nothing else).
    let pool = app.db.app_pool(2).await;
    for tenant in [a.tenant, b.tenant, b.tenant] {
        enqueue(&pool, tenant, &Unhandled, EnqueueOptions::default(), true).await;
    }
    let id = enqueue(&pool, a.tenant, &AlwaysFails, EnqueueOptions::default(), true).await;
    let mut owner = app.db.owner_conn().await;
    sqlx::query("update jobs set state = 'dead' where id = $1")
        .bind(id)
        .execute(&mut owner)
        .await
        .expect("mark dead");
    let mut depth = queue::depth(&pool).await.expect("depth as the app role");
    depth.sort();
    assert_eq!(
        depth,
        vec![
            ("test.always_fails".to_string(), "dead".to_string(), 1),
            ("test.unhandled".to_string(), "queued".to_string(), 3),
        ]
    );
}
