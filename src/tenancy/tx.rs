//! The tenant transaction (DESIGN §4 rule 4).

use std::time::{Duration, Instant};

use sqlx::{PgConnection, PgPool, Postgres, Transaction};

use super::TenantId;
use crate::error::AppError;

/// How long a piece of work may take: the client's deadline, capped by the
/// configured statement timeout.
#[derive(Debug, Clone, Copy)]
pub struct Budget {
    deadline: Instant,
}

impl Budget {
    /// A budget ending at the earlier of `deadline` and now + `cap`.
    pub fn new(deadline: Option<Instant>, cap: Duration) -> Self {
        let capped = Instant::now() + cap;
        Self {
            deadline: deadline.map_or(capped, |d| d.min(capped)),
        }
    }

    /// Time left, or DEADLINE_EXCEEDED when none is.
    pub fn remaining(&self) -> Result<Duration, AppError> {
        let left = self.deadline.saturating_duration_since(Instant::now());
        if left < Duration::from_millis(1) {
            Err(AppError::DeadlineExceeded)
        } else {
            Ok(left)
        }
    }
}

/// A transaction confined to one tenant by RLS.
pub struct TenantTx {
    tx: Transaction<'static, Postgres>,
    tenant: TenantId,
}

impl TenantTx {
    /// Begins a transaction for `tenant`: waits for a connection no longer
    /// than the budget allows, then sets the tenant context and a
    /// statement timeout equal to the time left, both transaction-local.
    pub async fn begin(pool: &PgPool, tenant: TenantId, budget: Budget) -> Result<Self, AppError> {
        let left = budget.remaining()?;
        let waiting = crate::telemetry::metrics::PendingConnection::new();
        let begun = tokio::time::timeout(left, pool.begin()).await;
        drop(waiting);
        let mut tx = match begun {
            Ok(tx) => tx?,
            Err(_) => return Err(AppError::DeadlineExceeded),
        };
        let left = budget.remaining()?;
        let timeout_ms = left.as_millis().clamp(1, i32::MAX as u128).to_string();
        sqlx::query(
            "select set_config('app.current_tenant_id', $1, true), \
                    set_config('statement_timeout', $2, true)",
        )
        .bind(tenant.to_string())
        .bind(timeout_ms)
        .execute(&mut *tx)
        .await?;
        Ok(Self { tx, tenant })
    }

    /// The tenant this transaction is confined to.
    pub fn tenant(&self) -> TenantId {
        self.tenant
    }

    /// The connection, for store functions.
    pub fn conn(&mut self) -> &mut PgConnection {
        &mut self.tx
    }

    /// Commits.
    pub async fn commit(self) -> Result<(), AppError> {
        self.tx.commit().await?;
        Ok(())
    }
}
