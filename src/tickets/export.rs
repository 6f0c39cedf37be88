//! Ticket exports: the `ExportTickets` job, which streams the tickets that
//! match a filter into a CSV or JSONL file through `object_store` (a local
//! directory or an S3-compatible bucket: `storage`), in keyset pages of `PAGE_SIZE` tickets — one tenant
//! transaction per page, bounded memory — recording progress on the export's
//! operation and stopping when it is cancelled.

mod storage;

use std::{sync::Arc, time::Duration};

use object_store::{ObjectStore, ObjectStoreExt as _, buffered::BufWriter, path::Path};
use serde::{Deserialize, Serialize};
use time::{OffsetDateTime, format_description::well_known::Rfc3339};
use tokio::io::AsyncWriteExt as _;
use uuid::Uuid;

use super::{
    model::{ListFilter, Order, OrderField, Priority, Status, Ticket},
    store,
};
use crate::{
    jobs::{Job, worker::JobCtx},
    operations::{
        model::{ExportResult, OperationError, State},
        store as ops,
    },
    pagination::Cursor,
    tenancy::TenantId,
};

pub use self::storage::ExportStore;

/// The operation kind of an export.
pub const KIND: &str = "tickets.export";

/// Tickets read per page (and per transaction).
pub const PAGE_SIZE: i64 = 1000;

/// The CSV columns, in order.
pub const CSV_HEADER: &str =
    "id,title,description,status,priority,assignee_id,reporter_id,tags,create_time,update_time,resolve_time";

/// An export file's format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ExportFormat {
    /// RFC 4180 CSV with a header row; tags joined by `;`.
    Csv,
    /// One JSON object per line.
    Jsonl,
}

impl ExportFormat {
    /// The file extension and result spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            ExportFormat::Csv => "csv",
            ExportFormat::Jsonl => "jsonl",
        }
    }
}

/// Exports the tickets matching the filter (oldest first) for operation
/// `operation_id`. Enqueued by ExportTickets with the operation, in its
/// transaction.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ExportTickets {
    /// The export's operation.
    pub operation_id: Uuid,
    /// The file format.
    pub format: ExportFormat,
    /// Only tickets assigned to this user.
    pub assignee_id: Option<Uuid>,
    /// Only tickets in these states (empty: all).
    pub statuses: Vec<Status>,
    /// Only tickets of this priority.
    pub priority: Option<Priority>,
    /// Only tickets carrying this tag.
    pub tag: Option<String>,
    /// Only tickets created at or after this.
    #[serde(with = "time::serde::rfc3339::option")]
    pub create_time_start: Option<OffsetDateTime>,
    /// Only tickets created before this.
    #[serde(with = "time::serde::rfc3339::option")]
    pub create_time_end: Option<OffsetDateTime>,
}

impl Job for ExportTickets {
    const KIND: &'static str = "tickets.export";
    const MAX_ATTEMPTS: i32 = 3;
    const TIMEOUT: Duration = Duration::from_secs(3600);
}

impl ExportTickets {
    /// The job's filter: the ListTickets filters, oldest first.
    pub fn filter(&self) -> ListFilter {
        ListFilter {
            assignee_id: self.assignee_id,
            statuses: self.statuses.clone(),
            priority: self.priority,
            tag: self.tag.clone(),
            create_time_start: self.create_time_start,
            create_time_end: self.create_time_end,
            order: Order {
                field: OrderField::CreateTime,
                desc: false,
            },
        }
    }
}

/// The path of an export inside the store: `<tenant>/<operation id>.<ext>`.
pub fn export_path(tenant: TenantId, operation_id: Uuid, format: ExportFormat) -> Path {
    Path::from(format!("{}/{}.{}", tenant.0, operation_id, format.as_str()))
}

fn rfc3339(t: OffsetDateTime) -> String {
    t.format(&Rfc3339).unwrap_or_default()
}

fn csv_field(out: &mut String, v: &str) {
    if v.contains([',', '"', '\n', '\r']) {
        out.push('"');
        out.push_str(&v.replace('"', "\"\""));
        out.push('"');
    } else {
        out.push_str(v);
    }
}

/// One ticket as a line of `format`, with its line ending.
pub fn encode(format: ExportFormat, t: &Ticket) -> String {
    let assignee = t.assignee_id.map(|a| a.to_string());
    match format {
        ExportFormat::Csv => {
            let fields = [
                t.id.to_string(),
                t.title.clone(),
                t.description.clone(),
                t.status.as_str().to_string(),
                t.priority.as_str().to_string(),
                assignee.unwrap_or_default(),
                t.reporter_id.to_string(),
                t.tags.join(";"),
                rfc3339(t.create_time),
                rfc3339(t.update_time),
                t.resolve_time.map(rfc3339).unwrap_or_default(),
            ];
            let mut line = String::new();
            for (i, f) in fields.iter().enumerate() {
                if i > 0 {
                    line.push(',');
                }
                csv_field(&mut line, f);
            }
            line.push_str("\r\n");
            line
        }
        ExportFormat::Jsonl => {
            let mut line = serde_json::json!({
                "id": t.id,
                "title": t.title,
                "description": t.description,
                "status": t.status.as_str(),
                "priority": t.priority.as_str(),
                "assignee_id": assignee,
                "reporter_id": t.reporter_id,
                "tags": t.tags,
                "create_time": rfc3339(t.create_time),
                "update_time": rfc3339(t.update_time),
                "resolve_time": t.resolve_time.map(rfc3339),
            })
            .to_string();
            line.push('\n');
            line
        }
    }
}

enum Outcome {
    Done { rows: i64, bytes: i64 },
    Cancelled,
}

/// Runs an `ExportTickets` job, writing to `exports`.
pub async fn run_export(ctx: JobCtx, job: ExportTickets, exports: ExportStore) -> Result<(), String> {
    let tenant = ctx.tenant;
    let op = job.operation_id;
    let mut tx = ctx.tx().await.map_err(|e| format!("beginning: {e}"))?;
    let started = ops::start(tx.conn(), tenant, op)
        .await
        .map_err(|e| format!("starting operation {op}: {e}"))?;
    tx.commit().await.map_err(|e| format!("committing: {e}"))?;
    if !started {
        // Cancelled (or finished) before this attempt: nothing to write.
        return finish(&ctx, op, State::Cancelled, None, Some(OperationError::cancelled())).await;
    }
    let store = exports.open()?;
    let path = export_path(tenant, op, job.format);
    match write(&ctx, &job, store.clone(), &path).await {
        Ok(Outcome::Done { rows, bytes }) => {
            let result = ExportResult {
                uri: exports.uri(&path),
                path: path.to_string(),
                row_count: rows,
                size_bytes: bytes,
                format: job.format.as_str().to_string(),
            };
            finish(&ctx, op, State::Succeeded, Some(result), None).await
        }
        Ok(Outcome::Cancelled) => {
            let _ = store.delete(&path).await;
            finish(&ctx, op, State::Cancelled, None, Some(OperationError::cancelled())).await
        }
        Err(e) => {
            let _ = store.delete(&path).await;
            Err(e)
        }
    }
}

/// The worker's hook for a dead export job (its last attempt failed, or
/// the worker running it died): the operation fails with a generic INTERNAL
/// error, in the transaction that marks the job dead. The job keeps the
/// real error for the operator (`deskd jobs list`).
pub fn fail_dead_export(
    conn: &mut sqlx::PgConnection,
    tenant: TenantId,
    job: ExportTickets,
) -> futures_util::future::BoxFuture<'_, Result<(), crate::error::AppError>> {
    Box::pin(async move {
        ops::finish(
            conn,
            tenant,
            job.operation_id,
            State::Failed,
            None,
            Some(&OperationError::internal()),
        )
        .await?;
        Ok(())
    })
}

async fn finish(
    ctx: &JobCtx,
    op: Uuid,
    state: State,
    result: Option<ExportResult>,
    error: Option<OperationError>,
) -> Result<(), String> {
    let mut tx = ctx.tx().await.map_err(|e| format!("beginning: {e}"))?;
    let tenant = tx.tenant();
    ops::finish(tx.conn(), tenant, op, state, result.as_ref(), error.as_ref())
        .await
        .map_err(|e| format!("finishing operation {op}: {e}"))?;
    tx.commit().await.map_err(|e| format!("committing: {e}"))
}

async fn write(ctx: &JobCtx, job: &ExportTickets, store: Arc<dyn ObjectStore>, path: &Path) -> Result<Outcome, String> {
    let filter = job.filter();
    let mut out = BufWriter::new(store, path.clone());
    let mut bytes: i64 = 0;
    let mut rows: i64 = 0;
    if job.format == ExportFormat::Csv {
        let header = format!("{CSV_HEADER}\r\n");
        bytes += header.len() as i64;
        if let Err(e) = out.write_all(header.as_bytes()).await {
            let _ = out.abort().await;
            return Err(format!("writing: {e}"));
        }
    }
    let mut after: Option<Cursor> = None;
    loop {
        let page = async {
            let mut tx = ctx.tx().await.map_err(|e| format!("beginning: {e}"))?;
            let tenant = tx.tenant();
            let cancel = ops::progress(tx.conn(), tenant, job.operation_id, rows)
                .await
                .map_err(|e| format!("recording progress: {e}"))?;
            if cancel {
                return Ok(None);
            }
            let tickets = store::list(tx.conn(), tenant, &filter, after, PAGE_SIZE)
                .await
                .map_err(|e| format!("reading tickets: {e}"))?;
            tx.commit().await.map_err(|e| format!("committing: {e}"))?;
            Ok::<_, String>(Some(tickets))
        }
        .await;
        let tickets = match page {
            Ok(Some(t)) => t,
            Ok(None) => {
                let _ = out.abort().await;
                return Ok(Outcome::Cancelled);
            }
            Err(e) => {
                let _ = out.abort().await;
                return Err(e);
            }
        };
        let mut chunk = String::new();
        for t in &tickets {
            chunk.push_str(&encode(job.format, t));
        }
        if let Err(e) = out.write_all(chunk.as_bytes()).await {
            let _ = out.abort().await;
            return Err(format!("writing: {e}"));
        }
        bytes += chunk.len() as i64;
        rows += tickets.len() as i64;
        if (tickets.len() as i64) < PAGE_SIZE {
            break;
        }
        after = tickets.last().map(|t| Cursor {
            micros: (t.create_time.unix_timestamp_nanos() / 1000) as i64,
            id: t.id,
        });
    }
    // A last look for a cancellation, and the final count.
    let cancelled = async {
        let mut tx = ctx.tx().await.map_err(|e| format!("beginning: {e}"))?;
        let tenant = tx.tenant();
        let c = ops::progress(tx.conn(), tenant, job.operation_id, rows)
            .await
            .map_err(|e| format!("recording progress: {e}"))?;
        tx.commit().await.map_err(|e| format!("committing: {e}"))?;
        Ok::<_, String>(c)
    }
    .await;
    match cancelled {
        Ok(false) => {}
        Ok(true) => {
            let _ = out.abort().await;
            return Ok(Outcome::Cancelled);
        }
        Err(e) => {
            let _ = out.abort().await;
            return Err(e);
        }
    }
    // A failed shutdown has already aborted its multipart upload (and
    // `abort` after `shutdown` would panic).
    if let Err(e) = out.shutdown().await {
        return Err(format!("completing the file: {e}"));
    }
    Ok(Outcome::Done { rows, bytes })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_fields_are_quoted_only_when_needed() {
        let mut s = String::new();
        csv_field(&mut s, "plain");
        s.push(',');
        csv_field(&mut s, "a,\"b\"\nc");
        assert_eq!(s, "plain,\"a,\"\"b\"\"\nc\"");
    }
}
