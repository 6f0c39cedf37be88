//! Ticket operations: one function per RPC, each one transaction.

use std::time::Duration;

use sqlx::PgPool;
use uuid::Uuid;

use super::{
    export::{self, ExportTickets},
    model::{ListFilter, NewTicket, OrderField, RESOURCE_TYPE, Ticket, TicketPatch},
    store,
};
use crate::{
    error::{AppError, FieldViolation},
    idempotency::{self, Claim},
    jobs::queue::{self, EnqueueOptions},
    operations::{model::Operation, store as operations},
    pagination::{Cursor, PageTokens, fingerprint},
    tenancy::{Ctx, TenantTx, UserId, tx::Budget},
    users,
};

/// A page of tickets.
#[derive(Debug)]
pub struct Page {
    /// The tickets.
    pub tickets: Vec<Ticket>,
    /// The next page's token, when there is one.
    pub next_page_token: Option<String>,
}

/// The Tickets operations.
#[derive(Clone)]
pub struct TicketsService {
    pool: PgPool,
    tokens: PageTokens,
    statement_cap: Duration,
}

const CREATE_OPERATION: &str = "tickets.create";

use crate::etag::now_micros as now;

fn not_found(id: Uuid) -> AppError {
    AppError::NotFound {
        resource_type: RESOURCE_TYPE,
        name: id.to_string(),
    }
}

impl TicketsService {
    /// The service over `pool`, signing page tokens with `tokens`.
    pub fn new(pool: PgPool, tokens: PageTokens, statement_cap: Duration) -> Self {
        Self {
            pool,
            tokens,
            statement_cap,
        }
    }

    async fn begin(&self, ctx: &Ctx) -> Result<TenantTx, AppError> {
        TenantTx::begin(
            &self.pool,
            ctx.principal.tenant_id,
            Budget::new(ctx.deadline, self.statement_cap),
        )
        .await
    }

    async fn check_assignee(tx: &mut TenantTx, field: &str, assignee: Option<Uuid>) -> Result<(), AppError> {
        if let Some(a) = assignee {
            let tenant = tx.tenant();
            if !users::store::user_exists(tx.conn(), tenant, UserId(a)).await? {
                // Another tenant's user is indistinguishable from no user.
                return Err(AppError::InvalidArgument(vec![FieldViolation::new(
                    field,
                    "ASSIGNEE_NOT_FOUND",
                    "no user with this id exists in the tenant",
                )]));
            }
        }
        Ok(())
    }

    /// GetTicket.
    pub async fn get(&self, ctx: &Ctx, id: Uuid) -> Result<Ticket, AppError> {
        let mut tx = self.begin(ctx).await?;
        let tenant = tx.tenant();
        let t = store::get(tx.conn(), tenant, id, false).await?;
        tx.finish_read();
        t.ok_or_else(|| not_found(id))
    }

    /// ListTickets.
    pub async fn list(
        &self,
        ctx: &Ctx,
        filter: &ListFilter,
        page_size: u32,
        page_token: &str,
    ) -> Result<Page, AppError> {
        let fp = fingerprint(&[&ctx.principal.tenant_id.to_string(), &filter.canonical()]);
        let after = if page_token.is_empty() {
            None
        } else {
            Some(self.tokens.decode(&fp, page_token)?)
        };
        let mut tx = self.begin(ctx).await?;
        let tenant = tx.tenant();
        let mut tickets = store::list(tx.conn(), tenant, filter, after, i64::from(page_size) + 1).await?;
        tx.finish_read();
        let next_page_token = if tickets.len() > page_size as usize {
            tickets.truncate(page_size as usize);
            tickets.last().map(|last| {
                let at = match filter.order.field {
                    OrderField::CreateTime => last.create_time,
                    OrderField::UpdateTime => last.update_time,
                };
                let micros = (at.unix_timestamp_nanos() / 1000) as i64;
                self.tokens.encode(&fp, Cursor { micros, id: last.id })
            })
        } else {
            None
        };
        Ok(Page {
            tickets,
            next_page_token,
        })
    }

    /// CreateTicket, idempotent per `request_id` for 24 hours.
    pub async fn create(&self, ctx: &Ctx, new: NewTicket, request_id: Option<Uuid>) -> Result<Ticket, AppError> {
        let mut tx = self.begin(ctx).await?;
        let tenant = tx.tenant();
        Self::check_assignee(&mut tx, "ticket.assignee_id", new.assignee_id).await?;
        let digest = new.digest();
        let ticket = new.into_ticket(Uuid::now_v7(), ctx.principal.user_id, now());
        let Some(rid) = request_id else {
            store::insert(tx.conn(), tenant, &ticket).await?;
            tx.commit().await?;
            return Ok(ticket);
        };
        let response = serde_json::to_value(&ticket).map_err(AppError::internal)?;
        if store::insert_claimed(tx.conn(), tenant, &ticket, CREATE_OPERATION, rid, &digest, &response).await? {
            tx.commit().await?;
            return Ok(ticket);
        }
        let Claim::Existing { request_hash, response } =
            idempotency::existing(tx.conn(), tenant, CREATE_OPERATION, rid).await?
        else {
            return Err(AppError::internal(anyhow::anyhow!(
                "idempotency key neither claimed nor stored"
            )));
        };
        tx.finish_read();
        if request_hash != digest {
            return Err(AppError::invalid(
                "request_id",
                "REQUEST_ID_REUSED",
                "this request_id was used within 24 hours for a different request",
            ));
        }
        serde_json::from_value(response).map_err(AppError::internal)
    }

    /// UpdateTicket: applies `patch` when `etag` (if any) is current.
    pub async fn update(
        &self,
        ctx: &Ctx,
        id: Uuid,
        etag: Option<&str>,
        patch: &TicketPatch,
    ) -> Result<Ticket, AppError> {
        let mut tx = self.begin(ctx).await?;
        let tenant = tx.tenant();
        let mut ticket = store::get(tx.conn(), tenant, id, true)
            .await?
            .ok_or_else(|| not_found(id))?;
        if etag.is_some_and(|e| e != ticket.etag()) {
            return Err(AppError::EtagMismatch {
                resource_type: RESOURCE_TYPE,
                name: id.to_string(),
            });
        }
        if let Some(assignee) = patch.assignee_id {
            Self::check_assignee(&mut tx, "ticket.assignee_id", assignee).await?;
        }
        if patch.apply(&mut ticket, now()) {
            store::update(tx.conn(), tenant, &ticket).await?;
        }
        tx.commit().await?;
        Ok(ticket)
    }

    /// DeleteTicket.
    pub async fn delete(&self, ctx: &Ctx, id: Uuid, etag: Option<&str>) -> Result<(), AppError> {
        let mut tx = self.begin(ctx).await?;
        let tenant = tx.tenant();
        let ticket = store::get(tx.conn(), tenant, id, true)
            .await?
            .ok_or_else(|| not_found(id))?;
        if etag.is_some_and(|e| e != ticket.etag()) {
            return Err(AppError::EtagMismatch {
                resource_type: RESOURCE_TYPE,
                name: id.to_string(),
            });
        }
        store::delete(tx.conn(), tenant, id).await?;
        tx.commit().await?;
        Ok(())
    }

    /// ExportTickets: records a queued export operation and enqueues its
    /// job in one transaction, and returns the operation at once. The
    /// job's `operation_id` is replaced by the new operation's id.
    pub async fn export(&self, ctx: &Ctx, mut job: ExportTickets) -> Result<Operation, AppError> {
        let mut tx = self.begin(ctx).await?;
        let tenant = tx.tenant();
        let id = Uuid::now_v7();
        job.operation_id = id;
        let op = operations::insert(tx.conn(), tenant, id, export::KIND).await?;
        queue::enqueue(
            tx.conn(),
            tenant,
            &job,
            EnqueueOptions {
                unique_key: Some(format!("export:{id}")),
                run_at: None,
            },
        )
        .await?;
        tx.commit().await?;
        Ok(op)
    }
}
