//! SQL for operations. Every function runs inside a tenant transaction and
//! also filters by `tenant_id` explicitly.

use sqlx::PgConnection;
use time::OffsetDateTime;
use uuid::Uuid;

use super::model::{ExportResult, Operation, OperationError, State};
use crate::{pagination::Cursor, tenancy::TenantId};

const COLUMNS: &str = "id, kind, state, rows_done, result, error, create_time, update_time";

#[derive(sqlx::FromRow)]
struct Row {
    id: Uuid,
    kind: String,
    state: String,
    rows_done: i64,
    result: Option<serde_json::Value>,
    error: Option<serde_json::Value>,
    create_time: OffsetDateTime,
    update_time: OffsetDateTime,
}

impl TryFrom<Row> for Operation {
    type Error = sqlx::Error;
    fn try_from(r: Row) -> Result<Self, Self::Error> {
        let decode = |e: String| sqlx::Error::Decode(e.into());
        Ok(Operation {
            id: r.id,
            state: State::parse(&r.state).ok_or_else(|| decode(format!("unknown operation state `{}`", r.state)))?,
            kind: r.kind,
            rows_done: r.rows_done,
            result: r
                .result
                .map(serde_json::from_value::<ExportResult>)
                .transpose()
                .map_err(|e| decode(e.to_string()))?,
            error: r
                .error
                .map(serde_json::from_value::<OperationError>)
                .transpose()
                .map_err(|e| decode(e.to_string()))?,
            create_time: r.create_time,
            update_time: r.update_time,
        })
    }
}

/// Inserts a queued operation.
pub async fn insert(conn: &mut PgConnection, tenant: TenantId, id: Uuid, kind: &str) -> Result<Operation, sqlx::Error> {
    let row: Row = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "insert into operations (tenant_id, id, kind) values ($1, $2, $3) returning {COLUMNS}"
    )))
    .bind(tenant.0)
    .bind(id)
    .bind(kind)
    .fetch_one(conn)
    .await?;
    row.try_into()
}

/// One operation, optionally locked.
pub async fn get(
    conn: &mut PgConnection,
    tenant: TenantId,
    id: Uuid,
    lock: bool,
) -> Result<Option<Operation>, sqlx::Error> {
    let lock = if lock { " for update" } else { "" };
    let row: Option<Row> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "select {COLUMNS} from operations where tenant_id = $1 and id = $2{lock}"
    )))
    .bind(tenant.0)
    .bind(id)
    .fetch_optional(conn)
    .await?;
    row.map(Operation::try_from).transpose()
}

/// Up to `limit` operations after `after`, newest first.
pub async fn list(
    conn: &mut PgConnection,
    tenant: TenantId,
    after: Option<Cursor>,
    limit: i64,
) -> Result<Vec<Operation>, sqlx::Error> {
    let rows: Vec<Row> = match after {
        None => {
            sqlx::query_as(sqlx::AssertSqlSafe(format!(
                "select {COLUMNS} from operations where tenant_id = $1 \
                 order by create_time desc, id desc limit $2"
            )))
            .bind(tenant.0)
            .bind(limit)
            .fetch_all(conn)
            .await?
        }
        Some(c) => {
            let ts = OffsetDateTime::from_unix_timestamp_nanos(i128::from(c.micros) * 1000)
                .map_err(|e| sqlx::Error::Encode(e.into()))?;
            sqlx::query_as(sqlx::AssertSqlSafe(format!(
                "select {COLUMNS} from operations where tenant_id = $1 and (create_time, id) < ($2, $3) \
                 order by create_time desc, id desc limit $4"
            )))
            .bind(tenant.0)
            .bind(ts)
            .bind(c.id)
            .bind(limit)
            .fetch_all(conn)
            .await?
        }
    };
    rows.into_iter().map(Operation::try_from).collect()
}

/// Asks for cancellation: a queued operation is cancelled at once, a running
/// one is flagged for its job to stop; a finished one is left alone.
pub async fn request_cancel(conn: &mut PgConnection, tenant: TenantId, id: Uuid) -> Result<(), sqlx::Error> {
    sqlx::query(
        "update operations set \
             cancel_requested = true, \
             state = case when state = 'queued' then 'cancelled' else state end, \
             error = case when state = 'queued' then $3 else error end, \
             finish_time = case when state = 'queued' then now() else finish_time end, \
             update_time = now() \
         where tenant_id = $1 and id = $2 and state in ('queued', 'running')",
    )
    .bind(tenant.0)
    .bind(id)
    .bind(serde_json::to_value(OperationError::cancelled()).map_err(|e| sqlx::Error::Encode(e.into()))?)
    .execute(conn)
    .await?;
    Ok(())
}

/// Marks a queued operation running; false when it is not queued (e.g.
/// cancelled before a worker got to it) or when cancellation was requested.
pub async fn start(conn: &mut PgConnection, tenant: TenantId, id: Uuid) -> Result<bool, sqlx::Error> {
    let res = sqlx::query(
        "update operations set state = 'running', update_time = now() \
         where tenant_id = $1 and id = $2 and state in ('queued', 'running') and not cancel_requested",
    )
    .bind(tenant.0)
    .bind(id)
    .execute(conn)
    .await?;
    Ok(res.rows_affected() == 1)
}

/// Records progress; returns whether cancellation was requested.
pub async fn progress(
    conn: &mut PgConnection,
    tenant: TenantId,
    id: Uuid,
    rows_done: i64,
) -> Result<bool, sqlx::Error> {
    let cancel: Option<bool> = sqlx::query_scalar(
        "update operations set rows_done = $3, update_time = now() \
         where tenant_id = $1 and id = $2 and state = 'running' returning cancel_requested",
    )
    .bind(tenant.0)
    .bind(id)
    .bind(rows_done)
    .fetch_optional(conn)
    .await?;
    Ok(cancel.unwrap_or(true))
}

/// Finishes a running operation in `state` with its result or error.
pub async fn finish(
    conn: &mut PgConnection,
    tenant: TenantId,
    id: Uuid,
    state: State,
    result: Option<&ExportResult>,
    error: Option<&OperationError>,
) -> Result<(), sqlx::Error> {
    let enc = |e: serde_json::Error| sqlx::Error::Encode(e.into());
    let result = result.map(serde_json::to_value).transpose().map_err(enc)?;
    let error = error.map(serde_json::to_value).transpose().map_err(enc)?;
    sqlx::query(
        "update operations set state = $3, result = $4, error = $5, finish_time = now(), update_time = now() \
         where tenant_id = $1 and id = $2 and state in ('queued', 'running')",
    )
    .bind(tenant.0)
    .bind(id)
    .bind(state.as_str())
    .bind(result)
    .bind(error)
    .execute(conn)
    .await?;
    Ok(())
}
