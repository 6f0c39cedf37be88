//! Resolves a credential's tenant and subject to a `Principal`, with an
//! in-process cache (TTL from config) so the hot path skips PostgreSQL.

use std::{sync::Arc, time::Duration};

use moka::future::Cache;
use sqlx::PgPool;

use super::{Principal, Tenant, TenantId, TenantStatus, TenantTx, UserId, store, tx::Budget};
use crate::{error::AppError, users};

/// Tenant and user lookups, cached.
#[derive(Clone)]
pub struct TenantDirectory {
    pool: PgPool,
    tenants: Cache<TenantId, Option<Tenant>>,
    users: Cache<(TenantId, UserId), Option<users::model::User>>,
    statement_cap: Duration,
}

/// Rebuilds an error shared by moka's single-flight loader.
fn unshare(err: Arc<AppError>) -> AppError {
    match &*err {
        AppError::DeadlineExceeded => AppError::DeadlineExceeded,
        AppError::Unavailable { dependency, source } => AppError::Unavailable {
            dependency,
            source: anyhow::anyhow!("{source:#}"),
        },
        other => AppError::Internal(anyhow::anyhow!("{other:#}")),
    }
}

impl TenantDirectory {
    /// A directory over `pool` whose entries live for `ttl`.
    pub fn new(pool: PgPool, ttl: Duration, capacity: u64, statement_cap: Duration) -> Self {
        Self {
            pool,
            tenants: Cache::builder().time_to_live(ttl).max_capacity(capacity).build(),
            users: Cache::builder().time_to_live(ttl).max_capacity(capacity).build(),
            statement_cap,
        }
    }

    /// The tenant, from cache or PostgreSQL (concurrent misses make one load).
    pub async fn tenant(&self, id: TenantId, deadline: Option<std::time::Instant>) -> Result<Option<Tenant>, AppError> {
        let pool = self.pool.clone();
        let cap = self.statement_cap;
        let found = self
            .tenants
            .try_get_with(id, async move {
                let mut tx = TenantTx::begin(&pool, id, Budget::new(deadline, cap)).await?;
                let t = store::get_tenant(tx.conn(), id).await?;
                tx.commit().await?;
                Ok::<_, AppError>(t)
            })
            .await
            .map_err(unshare)?;
        if found.is_none() {
            // Misses are not remembered: a tenant created a moment later is
            // served at once. (Only a validly signed token gets this far.)
            self.tenants.invalidate(&id).await;
        }
        Ok(found)
    }

    /// The user, from cache or PostgreSQL.
    pub async fn user(
        &self,
        tenant: TenantId,
        id: UserId,
        deadline: Option<std::time::Instant>,
    ) -> Result<Option<users::model::User>, AppError> {
        let pool = self.pool.clone();
        let cap = self.statement_cap;
        let found = self
            .users
            .try_get_with((tenant, id), async move {
                let mut tx = TenantTx::begin(&pool, tenant, Budget::new(deadline, cap)).await?;
                let u = users::store::get_user(tx.conn(), tenant, id).await?;
                tx.commit().await?;
                Ok::<_, AppError>(u)
            })
            .await
            .map_err(unshare)?;
        if found.is_none() {
            self.users.invalidate(&(tenant, id)).await;
        }
        Ok(found)
    }

    /// Resolves a verified credential to a principal, or refuses it.
    pub async fn resolve(
        &self,
        tenant_id: TenantId,
        user_id: UserId,
        deadline: Option<std::time::Instant>,
    ) -> Result<Principal, AppError> {
        let tenant = self.tenant(tenant_id, deadline).await?;
        match tenant {
            None => {
                return Err(AppError::PermissionDenied {
                    reason: "TENANT_UNKNOWN",
                    description: "the credential's tenant does not exist".into(),
                    metadata: vec![],
                });
            }
            Some(t) if t.status == TenantStatus::Suspended => {
                return Err(AppError::PermissionDenied {
                    reason: "TENANT_SUSPENDED",
                    description: "the tenant is suspended".into(),
                    metadata: vec![],
                });
            }
            Some(_) => {}
        }
        match self.user(tenant_id, user_id, deadline).await? {
            Some(u) if u.active => Ok(Principal {
                tenant_id,
                user_id,
                role: u.role,
            }),
            Some(_) => Err(AppError::Unauthenticated {
                reason: "USER_INACTIVE",
                description: "the credential's user is deactivated",
            }),
            None => Err(AppError::Unauthenticated {
                reason: "USER_UNKNOWN",
                description: "the credential's user does not exist",
            }),
        }
    }

    /// Drops a cached tenant (after an operator changes it).
    pub async fn invalidate_tenant(&self, id: TenantId) {
        self.tenants.invalidate(&id).await;
    }
}
