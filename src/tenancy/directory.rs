//! Resolves a credential to a `Principal`, through in-process caches so the
//! hot path skips PostgreSQL: tenants (short TTL), users and API keys
//! (`user:{id}`-style entries, 5 minutes by default). Writes that change a
//! user or revoke a key invalidate their entry at once, so the very next
//! request on this replica sees the change.

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use moka::future::Cache;
use sqlx::PgPool;
use time::OffsetDateTime;
use uuid::Uuid;

use super::{
    Principal, PrincipalKind, Tenant, TenantId, TenantStatus, TenantTx, UserId, key_usage::KeyUsage, store, tx::Budget,
};
use crate::{
    auth::{Credential, Permissions, apikey::KeyHasher},
    error::AppError,
    users::{
        self,
        model::{ApiKey, User, UserKind},
    },
};

/// Cache sizes and lifetimes.
#[derive(Debug, Clone, Copy)]
pub struct DirectoryConfig {
    /// How long a tenant is trusted.
    pub tenant_ttl: Duration,
    /// How long a user or API key is trusted (absent an invalidation).
    pub principal_ttl: Duration,
    /// Most entries per cache.
    pub capacity: u64,
    /// Cap on one lookup's statements.
    pub statement_cap: Duration,
}

/// An API key's metadata and its secret's stored digest.
type StoredKey = (ApiKey, Arc<Vec<u8>>);

/// Tenant, user and API key lookups, cached.
#[derive(Clone)]
pub struct TenantDirectory {
    pool: PgPool,
    tenants: Cache<TenantId, Option<Tenant>>,
    users: Cache<(TenantId, UserId), Option<User>>,
    keys: Cache<(TenantId, Uuid), Option<StoredKey>>,
    statement_cap: Duration,
    hasher: KeyHasher,
    usage: Arc<KeyUsage>,
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

fn unauthenticated(reason: &'static str, description: &'static str) -> AppError {
    AppError::Unauthenticated { reason, description }
}

impl TenantDirectory {
    /// A directory over `pool`.
    pub fn new(pool: PgPool, cfg: DirectoryConfig, hasher: KeyHasher, usage: Arc<KeyUsage>) -> Self {
        Self {
            pool,
            tenants: Cache::builder()
                .time_to_live(cfg.tenant_ttl)
                .max_capacity(cfg.capacity)
                .build(),
            users: Cache::builder()
                .time_to_live(cfg.principal_ttl)
                .max_capacity(cfg.capacity)
                .build(),
            keys: Cache::builder()
                .time_to_live(cfg.principal_ttl)
                .max_capacity(cfg.capacity)
                .build(),
            statement_cap: cfg.statement_cap,
            hasher,
            usage,
        }
    }

    /// Runs one lookup in its own tenant transaction (single flight per key
    /// through moka); "not found" is not remembered.
    async fn load<K, V, F, Fut>(
        &self,
        cache: &Cache<K, Option<V>>,
        key: K,
        tenant: TenantId,
        deadline: Option<Instant>,
        query: F,
    ) -> Result<Option<V>, AppError>
    where
        K: std::hash::Hash + Eq + Clone + Send + Sync + 'static,
        V: Clone + Send + Sync + 'static,
        F: FnOnce(TenantTx) -> Fut + Send,
        Fut: std::future::Future<Output = Result<(TenantTx, Option<V>), AppError>> + Send,
    {
        let pool = self.pool.clone();
        let cap = self.statement_cap;
        let found = cache
            .try_get_with(key.clone(), async move {
                let tx = TenantTx::begin(&pool, tenant, Budget::new(deadline, cap)).await?;
                let (tx, value) = query(tx).await?;
                tx.commit().await?;
                Ok::<_, AppError>(value)
            })
            .await
            .map_err(unshare)?;
        if found.is_none() {
            // Misses are not remembered: a tenant, user or key created a
            // moment later is served at once.
            cache.invalidate(&key).await;
        }
        Ok(found)
    }

    /// The tenant, from cache or PostgreSQL.
    pub async fn tenant(&self, id: TenantId, deadline: Option<Instant>) -> Result<Option<Tenant>, AppError> {
        self.load(&self.tenants, id, id, deadline, |mut tx| async move {
            let t = store::get_tenant(tx.conn(), id).await?;
            Ok((tx, t))
        })
        .await
    }

    /// The user, from cache or PostgreSQL.
    pub async fn user(
        &self,
        tenant: TenantId,
        id: UserId,
        deadline: Option<Instant>,
    ) -> Result<Option<User>, AppError> {
        self.load(&self.users, (tenant, id), tenant, deadline, |mut tx| async move {
            let u = users::store::get_user(tx.conn(), tenant, id).await?;
            Ok((tx, u))
        })
        .await
    }

    async fn api_key(
        &self,
        tenant: TenantId,
        id: Uuid,
        deadline: Option<Instant>,
    ) -> Result<Option<StoredKey>, AppError> {
        self.load(&self.keys, (tenant, id), tenant, deadline, |mut tx| async move {
            let k = users::store::get_api_key_with_digest(tx.conn(), tenant, id).await?;
            Ok((tx, k.map(|(k, d)| (k, Arc::new(d)))))
        })
        .await
    }

    async fn check_tenant(&self, tenant_id: TenantId, deadline: Option<Instant>) -> Result<(), AppError> {
        match self.tenant(tenant_id, deadline).await? {
            None => Err(AppError::PermissionDenied {
                reason: "TENANT_UNKNOWN",
                description: "the credential's tenant does not exist".into(),
                metadata: vec![],
            }),
            Some(t) if t.status == TenantStatus::Suspended => Err(AppError::PermissionDenied {
                reason: "TENANT_SUSPENDED",
                description: "the tenant is suspended".into(),
                metadata: vec![],
            }),
            Some(_) => Ok(()),
        }
    }

    async fn active_user(&self, tenant: TenantId, id: UserId, deadline: Option<Instant>) -> Result<User, AppError> {
        match self.user(tenant, id, deadline).await? {
            Some(u) if u.active => Ok(u),
            Some(_) => Err(unauthenticated("USER_INACTIVE", "the credential's user is deactivated")),
            None => Err(unauthenticated("USER_UNKNOWN", "the credential's user does not exist")),
        }
    }

    /// Resolves a credential to a principal, or refuses it.
    pub async fn resolve(&self, credential: &Credential, deadline: Option<Instant>) -> Result<Principal, AppError> {
        let tenant_id = credential.tenant_id();
        match credential {
            Credential::Jwt(auth) => {
                // The JWT is verified already: its tenant may be named.
                self.check_tenant(tenant_id, deadline).await?;
                let user = self.active_user(tenant_id, auth.user_id, deadline).await?;
                let (UserKind::Person, Some(role)) = (user.kind, user.role) else {
                    // Service accounts authenticate with keys only.
                    return Err(unauthenticated(
                        "CREDENTIAL_KIND_MISMATCH",
                        "service accounts authenticate with API keys",
                    ));
                };
                Ok(Principal {
                    tenant_id,
                    user_id: user.id,
                    kind: PrincipalKind::Person { role },
                    permissions: Permissions::for_role(role),
                })
            }
            Credential::ApiKey(cred) => {
                let invalid = || unauthenticated("API_KEY_INVALID", "the API key is not valid");
                let (key, digest) = self
                    .api_key(tenant_id, cred.key_id, deadline)
                    .await?
                    .ok_or_else(invalid)?;
                // Unknown and wrong secrets answer alike; state is only
                // revealed to the holder of the real secret.
                if !self.hasher.verify(cred, &digest) {
                    return Err(invalid());
                }
                if key.revoke_time.is_some() {
                    return Err(unauthenticated("API_KEY_REVOKED", "the API key was revoked"));
                }
                if key.expire_time.is_some_and(|t| t <= OffsetDateTime::now_utc()) {
                    return Err(unauthenticated("API_KEY_EXPIRED", "the API key has expired"));
                }
                // Only now, with the secret proven, is the tenant's state
                // revealed: a forged key learns nothing about the tenant.
                self.check_tenant(tenant_id, deadline).await?;
                let user = self.active_user(tenant_id, key.service_account_id, deadline).await?;
                self.usage.record(tenant_id, key.id);
                Ok(Principal {
                    tenant_id,
                    user_id: user.id,
                    kind: PrincipalKind::ServiceAccount { api_key_id: key.id },
                    permissions: Permissions::of(&key.scopes),
                })
            }
        }
    }

    /// Drops a cached user after it changed (update, deactivation).
    pub async fn invalidate_user(&self, tenant: TenantId, id: UserId) {
        self.users.invalidate(&(tenant, id)).await;
    }

    /// Drops a cached API key after it changed (revocation).
    pub async fn invalidate_key(&self, tenant: TenantId, id: Uuid) {
        self.keys.invalidate(&(tenant, id)).await;
    }

    /// Drops a cached tenant (after an operator changes it).
    pub async fn invalidate_tenant(&self, id: TenantId) {
        self.tenants.invalidate(&id).await;
    }
}
