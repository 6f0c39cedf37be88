//! SQL for jobs. `enqueue` runs in the caller's tenant transaction;
//! `claim` is the one cross-tenant call (a SECURITY DEFINER function);
//! finishing a job runs in the job's tenant transaction.

use sqlx::{PgConnection, PgPool};
use time::OffsetDateTime;
use uuid::Uuid;

use super::Job;
use crate::{error::AppError, tenancy::TenantId};

/// Enqueue options.
#[derive(Debug, Clone, Default)]
pub struct EnqueueOptions {
    /// At most one live (queued or running) job per key and kind.
    pub unique_key: Option<String>,
    /// Run no earlier than this.
    pub run_at: Option<OffsetDateTime>,
}

/// Adds `job` in the current (tenant) transaction. With a unique key that
/// already has a live job, nothing is added and that job's id is returned.
pub async fn enqueue<J: Job>(
    conn: &mut PgConnection,
    tenant: TenantId,
    job: &J,
    opts: EnqueueOptions,
) -> Result<Uuid, AppError> {
    let payload = serde_json::to_value(job).map_err(AppError::internal)?;
    let id = Uuid::now_v7();
    let inserted: Option<Uuid> = sqlx::query_scalar(
        "insert into jobs (tenant_id, id, kind, payload, unique_key, max_attempts, run_at, trace_parent) \
         values ($1, $2, $3, $4, $5, $6, coalesce($7, now()), $8) \
         on conflict (tenant_id, kind, unique_key) where unique_key is not null and state in ('queued', 'running') \
         do nothing returning id",
    )
    .bind(tenant.0)
    .bind(id)
    .bind(J::KIND)
    .bind(&payload)
    .bind(&opts.unique_key)
    .bind(J::MAX_ATTEMPTS)
    .bind(opts.run_at)
    .bind(crate::telemetry::current_traceparent())
    .fetch_optional(&mut *conn)
    .await?;
    if let Some(id) = inserted {
        return Ok(id);
    }
    let existing: Uuid = sqlx::query_scalar(
        "select id from jobs where tenant_id = $1 and kind = $2 and unique_key = $3 \
         and state in ('queued', 'running')",
    )
    .bind(tenant.0)
    .bind(J::KIND)
    .bind(&opts.unique_key)
    .fetch_one(conn)
    .await?;
    Ok(existing)
}

/// A claimed job.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Claimed {
    /// The job's tenant.
    pub tenant_id: Uuid,
    /// The job.
    pub id: Uuid,
    /// Its kind.
    pub kind: String,
    /// Its payload.
    pub payload: serde_json::Value,
    /// This attempt's number (1-based).
    pub attempts: i32,
    /// Attempts allowed.
    pub max_attempts: i32,
    /// The enqueuing request's `traceparent`, when it was sampled.
    pub trace_parent: Option<String>,
}

/// Jobs by (kind, state) over every tenant: queued, running and dead.
pub async fn depth(pool: &PgPool) -> Result<Vec<(String, String, i64)>, sqlx::Error> {
    sqlx::query_as("select kind, state, jobs from job_queue_depth()")
        .fetch_all(pool)
        .await
}

/// Claims up to `limit` due jobs of `kinds` for `worker`, leased for `lease_ms`.
pub async fn claim(
    pool: &PgPool,
    worker: &str,
    limit: i32,
    lease_ms: i32,
    kinds: &[&str],
) -> Result<Vec<Claimed>, sqlx::Error> {
    sqlx::query_as("select * from claim_jobs($1, $2, $3, $4)")
        .bind(worker)
        .bind(limit)
        .bind(lease_ms)
        .bind(kinds)
        .fetch_all(pool)
        .await
}

/// Extends a running job's lease (heartbeat); false when the job is no longer ours.
pub async fn extend_lease(
    conn: &mut PgConnection,
    tenant: TenantId,
    id: Uuid,
    worker: &str,
    lease_ms: i32,
) -> Result<bool, sqlx::Error> {
    let res = sqlx::query(
        "update jobs set locked_until = now() + make_interval(secs => $4 / 1000.0), update_time = now() \
         where tenant_id = $1 and id = $2 and state = 'running' and locked_by = $3",
    )
    .bind(tenant.0)
    .bind(id)
    .bind(worker)
    .bind(lease_ms)
    .execute(conn)
    .await?;
    Ok(res.rows_affected() == 1)
}

/// Marks a job succeeded.
pub async fn succeed(conn: &mut PgConnection, tenant: TenantId, id: Uuid, worker: &str) -> Result<(), sqlx::Error> {
    sqlx::query(
        "update jobs set state = 'succeeded', locked_by = null, locked_until = null, last_error = null, \
         finish_time = now(), update_time = now() \
         where tenant_id = $1 and id = $2 and state = 'running' and locked_by = $3",
    )
    .bind(tenant.0)
    .bind(id)
    .bind(worker)
    .execute(conn)
    .await?;
    Ok(())
}

/// Schedules another attempt after `delay_ms`, or marks the job dead.
/// True when this call marked it dead (the caller still held it).
pub async fn fail(
    conn: &mut PgConnection,
    tenant: TenantId,
    id: Uuid,
    worker: &str,
    error: &str,
    retry_in_ms: Option<i64>,
) -> Result<bool, sqlx::Error> {
    let error: String = error.chars().take(2000).collect();
    match retry_in_ms {
        Some(ms) => {
            sqlx::query(
                "update jobs set state = 'queued', locked_by = null, locked_until = null, last_error = $4, \
                 run_at = now() + make_interval(secs => $5 / 1000.0), update_time = now() \
                 where tenant_id = $1 and id = $2 and state = 'running' and locked_by = $3",
            )
            .bind(tenant.0)
            .bind(id)
            .bind(worker)
            .bind(&error)
            .bind(ms as f64)
            .execute(conn)
            .await?;
            Ok(false)
        }
        None => {
            let done = sqlx::query(
                "update jobs set state = 'dead', locked_by = null, locked_until = null, last_error = $4, \
                 finish_time = now(), update_time = now() \
                 where tenant_id = $1 and id = $2 and state = 'running' and locked_by = $3",
            )
            .bind(tenant.0)
            .bind(id)
            .bind(worker)
            .bind(&error)
            .execute(conn)
            .await?;
            Ok(done.rows_affected() == 1)
        }
    }
}

/// Hands a running job back without counting the attempt (graceful stop).
pub async fn release(conn: &mut PgConnection, tenant: TenantId, id: Uuid, worker: &str) -> Result<(), sqlx::Error> {
    sqlx::query(
        "update jobs set state = 'queued', attempts = greatest(attempts - 1, 0), locked_by = null, \
         locked_until = null, run_at = now(), update_time = now() \
         where tenant_id = $1 and id = $2 and state = 'running' and locked_by = $3",
    )
    .bind(tenant.0)
    .bind(id)
    .bind(worker)
    .execute(conn)
    .await?;
    Ok(())
}

/// Puts a dead job back in the queue with a fresh attempt budget (admin).
pub async fn retry_dead(conn: &mut PgConnection, tenant: TenantId, id: Uuid) -> Result<bool, sqlx::Error> {
    let res = sqlx::query(
        "update jobs set state = 'queued', attempts = 0, run_at = now(), finish_time = null, update_time = now() \
         where tenant_id = $1 and id = $2 and state = 'dead'",
    )
    .bind(tenant.0)
    .bind(id)
    .execute(conn)
    .await?;
    Ok(res.rows_affected() == 1)
}
