//! Stats operations: one function per RPC, each one tenant transaction,
//! behind a two-tier response cache (per tenant and caller, `cache.stats_ttl`).

use std::time::Duration;

use sqlx::PgPool;
use time::OffsetDateTime;

use super::{
    model::{TicketStats, TicketStatsQuery, truncate_to_micros},
    store,
};
use crate::{
    cache::{CacheStatus, TwoTier},
    error::AppError,
    tenancy::{Ctx, TenantTx, tx::Budget},
};

/// The Stats operations.
#[derive(Clone)]
pub struct StatsService {
    pool: PgPool,
    statement_cap: Duration,
    cache: TwoTier<TicketStats>,
}

impl StatsService {
    /// The service over `pool`; `statement_cap` bounds each transaction.
    pub fn new(pool: PgPool, statement_cap: Duration, cache: TwoTier<TicketStats>) -> Self {
        Self {
            pool,
            statement_cap,
            cache,
        }
    }

    /// GetTicketStats through the cache: the same tenant, caller and query
    /// within the TTL is answered without PostgreSQL; concurrent misses make
    /// one computation. The status feeds `x-cache`.
    pub async fn get_ticket_stats_cached(
        &self,
        ctx: &Ctx,
        query: &TicketStatsQuery,
    ) -> Result<(TicketStats, CacheStatus), AppError> {
        // Validate before the cache: a loader's error is shared with every
        // waiter and could not keep its field violations.
        query
            .window(truncate_to_micros(OffsetDateTime::now_utc()))
            .map_err(|v| AppError::InvalidArgument(vec![v]))?;
        let key = format!(
            "{}:{}:{}",
            ctx.principal.tenant_id,
            ctx.principal.user_id,
            query.cache_key()
        );
        let (stats, status) = self
            .cache
            .get_or_load(&key, || async { self.get_ticket_stats(ctx, query).await.map(Some) })
            .await?;
        let stats = stats.ok_or_else(|| AppError::internal(anyhow::anyhow!("stats loader returned nothing")))?;
        Ok((stats, status))
    }

    /// GetTicketStats: the figures of `query` for the caller's tenant,
    /// computed now from the database (no cache here; a cache can wrap this
    /// call, keyed by tenant, caller and `query.cache_key()`).
    pub async fn get_ticket_stats(&self, ctx: &Ctx, query: &TicketStatsQuery) -> Result<TicketStats, AppError> {
        // One instant for the default window's end and the backlog's ages.
        let now = truncate_to_micros(OffsetDateTime::now_utc());
        let window = query.window(now).map_err(|v| AppError::InvalidArgument(vec![v]))?;
        let mut tx = TenantTx::begin(
            &self.pool,
            ctx.principal.tenant_id,
            Budget::new(ctx.deadline, self.statement_cap),
        )
        .await?;
        let tenant = tx.tenant();
        let facts = store::ticket_facts(tx.conn(), tenant, &window, &query.filter).await?;
        tx.finish_read();
        Ok(TicketStats::assemble(window, now, facts, query.top_assignees_limit))
    }
}
