//! The tenant transaction (DESIGN §4 rule 4).

use std::time::{Duration, Instant};

use sqlx::{AssertSqlSafe, PgConnection, PgPool, Postgres, SqlSafeStr as _, Transaction};
use uuid::Uuid;

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
    ///
    /// `BEGIN` and both settings travel in one simple-protocol message, so
    /// this costs one round trip, not two. The values are interpolated, so
    /// only typed ones go in: a UUID's canonical text and an integer.
    pub async fn begin(pool: &PgPool, tenant: TenantId, budget: Budget) -> Result<Self, AppError> {
        let left = budget.remaining()?;
        let waiting = crate::telemetry::metrics::PendingConnection::new();
        // sqlx's acquire future is ~8.6 KB: boxed, it does not inflate (and
        // get copied with) every RPC's future that begins a transaction.
        let conn = tokio::time::timeout(left, Box::pin(pool.acquire())).await;
        drop(waiting);
        let conn = match conn {
            Ok(conn) => conn?,
            Err(_) => return Err(AppError::DeadlineExceeded),
        };
        let left = budget.remaining()?;
        let begin = begin_statement(tenant.0, left);
        let tx = match tokio::time::timeout(
            left,
            Transaction::begin(conn, Some(AssertSqlSafe(begin).into_sql_str())),
        )
        .await
        {
            Ok(tx) => tx?,
            Err(_) => return Err(AppError::DeadlineExceeded),
        };
        Ok(Self { tx, tenant })
    }

    /// Ends a transaction that only read: no `COMMIT` round trip on the
    /// request path. The `ROLLBACK` is queued on the connection and goes out
    /// with the pool's release check, before anyone else can acquire it, so
    /// the tenant setting ends with it as it would on commit.
    pub fn finish_read(self) {
        drop(self.tx);
    }

    /// The tenant this transaction is confined to.
    pub fn tenant(&self) -> TenantId {
        self.tenant
    }

    /// The connection, for store functions.
    pub fn conn(&mut self) -> &mut PgConnection {
        &mut self.tx
    }

    /// Commits (waits for PostgreSQL to confirm).
    pub async fn commit(self) -> Result<(), AppError> {
        self.tx.commit().await?;
        Ok(())
    }
}

/// `BEGIN` with the tenant context and statement timeout, as one message.
fn begin_statement(tenant: Uuid, left: Duration) -> String {
    let timeout_ms = left.as_millis().clamp(1, i32::MAX as u128);
    format!(
        "BEGIN; SELECT set_config('app.current_tenant_id', '{}', true), \
         set_config('statement_timeout', '{timeout_ms}', true)",
        tenant.hyphenated()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_begin_statement_carries_only_typed_values() {
        let id = Uuid::parse_str("01a2235a-0875-7056-b774-d2951fd8cf45").expect("uuid");
        assert_eq!(
            begin_statement(id, Duration::from_millis(2500)),
            "BEGIN; SELECT set_config('app.current_tenant_id', '01a2235a-0875-7056-b774-d2951fd8cf45', true), \
             set_config('statement_timeout', '2500', true)"
        );
        // Never 0 (which would mean no timeout at all).
        assert!(begin_statement(id, Duration::from_micros(10)).ends_with("'1', true)"));
    }
}
