//! Operation reads and cancellation: one function per RPC, each one
//! transaction.

use std::time::Duration;

use sqlx::PgPool;
use uuid::Uuid;

use super::{
    model::{Operation, RESOURCE_TYPE},
    store,
};
use crate::{
    error::AppError,
    pagination::{Cursor, PageTokens, fingerprint},
    tenancy::{Ctx, TenantTx, tx::Budget},
};

/// A page of operations.
#[derive(Debug)]
pub struct Page {
    /// The operations.
    pub operations: Vec<Operation>,
    /// The next page's token, when there is one.
    pub next_page_token: Option<String>,
}

/// The Operations service.
#[derive(Clone)]
pub struct OperationsService {
    pool: PgPool,
    tokens: PageTokens,
    statement_cap: Duration,
}

fn not_found(id: Uuid) -> AppError {
    AppError::NotFound {
        resource_type: RESOURCE_TYPE,
        name: format!("operations/{id}"),
    }
}

impl OperationsService {
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

    /// GetOperation.
    pub async fn get(&self, ctx: &Ctx, id: Uuid) -> Result<Operation, AppError> {
        let mut tx = self.begin(ctx).await?;
        let tenant = tx.tenant();
        let op = store::get(tx.conn(), tenant, id, false).await?;
        tx.finish_read();
        op.ok_or_else(|| not_found(id))
    }

    /// ListOperations, newest first.
    pub async fn list(&self, ctx: &Ctx, page_size: u32, page_token: &str) -> Result<Page, AppError> {
        let fp = fingerprint(&[&ctx.principal.tenant_id.to_string(), "operations"]);
        let after = if page_token.is_empty() {
            None
        } else {
            Some(self.tokens.decode(&fp, page_token)?)
        };
        let mut tx = self.begin(ctx).await?;
        let tenant = tx.tenant();
        let mut operations = store::list(tx.conn(), tenant, after, i64::from(page_size) + 1).await?;
        tx.finish_read();
        let next_page_token = if operations.len() > page_size as usize {
            operations.truncate(page_size as usize);
            operations.last().map(|last| {
                let micros = (last.create_time.unix_timestamp_nanos() / 1000) as i64;
                self.tokens.encode(&fp, Cursor { micros, id: last.id })
            })
        } else {
            None
        };
        Ok(Page {
            operations,
            next_page_token,
        })
    }

    /// CancelOperation: best effort; returns the operation afterwards.
    pub async fn cancel(&self, ctx: &Ctx, id: Uuid) -> Result<Operation, AppError> {
        let mut tx = self.begin(ctx).await?;
        let tenant = tx.tenant();
        if store::get(tx.conn(), tenant, id, true).await?.is_none() {
            return Err(not_found(id));
        }
        store::request_cancel(tx.conn(), tenant, id).await?;
        let op = store::get(tx.conn(), tenant, id, false).await?;
        tx.commit().await?;
        op.ok_or_else(|| not_found(id))
    }
}
