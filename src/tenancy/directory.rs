//! Resolves a credential to a `Principal`, through two-tier caches (see
//! `crate::cache`) so the hot path skips PostgreSQL: tenants (`tenant:{id}`,
//! 60 s), users (`user:{tenant}:{id}`) and API keys (`key:{tenant}:{id}`),
//! 5 minutes by default. Writes that change a user or revoke a key
//! invalidate their entry here, in Redis and (by pub/sub) on every replica.

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use sqlx::PgPool;
use time::OffsetDateTime;
use uuid::Uuid;

use super::{
    Principal, PrincipalKind, Tenant, TenantId, TenantStatus, TenantTx, UserId, key_usage::KeyUsage, store, tx::Budget,
};
use crate::{
    auth::{Credential, Permissions, apikey::KeyHasher},
    cache::{CacheStatus, InvalidationRegistry, TwoTier},
    error::AppError,
    kv::Redis,
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
    /// Most time an entry stays in the in-process tier.
    pub local_ttl: Duration,
}

/// An API key's metadata and its secret's stored digest.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
struct StoredKey {
    key: ApiKey,
    digest: Vec<u8>,
}

/// Tenant, user and API key lookups, cached.
#[derive(Clone)]
pub struct TenantDirectory {
    pool: PgPool,
    tenants: TwoTier<Tenant>,
    users: TwoTier<User>,
    keys: TwoTier<StoredKey>,
    statement_cap: Duration,
    hasher: KeyHasher,
    usage: Arc<KeyUsage>,
}

fn unauthenticated(reason: &'static str, description: &'static str) -> AppError {
    AppError::Unauthenticated { reason, description }
}

impl TenantDirectory {
    /// A directory over `pool`; with `redis`, the caches are shared.
    pub fn new(
        pool: PgPool,
        cfg: DirectoryConfig,
        hasher: KeyHasher,
        usage: Arc<KeyUsage>,
        redis: Option<Arc<Redis>>,
    ) -> Self {
        let local = |ttl: Duration| ttl.min(cfg.local_ttl);
        Self {
            pool,
            tenants: TwoTier::new(
                "tenant",
                cfg.capacity,
                local(cfg.tenant_ttl),
                cfg.tenant_ttl,
                redis.clone(),
            ),
            users: TwoTier::new(
                "user",
                cfg.capacity,
                local(cfg.principal_ttl),
                cfg.principal_ttl,
                redis.clone(),
            ),
            keys: TwoTier::new("key", cfg.capacity, local(cfg.principal_ttl), cfg.principal_ttl, redis),
            statement_cap: cfg.statement_cap,
            hasher,
            usage,
        }
    }

    /// Registers the directory's caches for pub/sub invalidation.
    pub fn register(&self, registry: &mut InvalidationRegistry) {
        self.tenants.register(registry);
        self.users.register(registry);
        self.keys.register(registry);
    }

    /// Runs one lookup in its own tenant transaction.
    async fn load<V, F, Fut>(
        &self,
        cache: &TwoTier<V>,
        key: String,
        tenant: TenantId,
        deadline: Option<Instant>,
        query: F,
    ) -> Result<(Option<V>, CacheStatus), AppError>
    where
        V: Clone + serde::Serialize + serde::de::DeserializeOwned + Send + Sync + 'static,
        F: FnOnce(TenantTx) -> Fut + Send,
        Fut: std::future::Future<Output = Result<(TenantTx, Option<V>), AppError>> + Send,
    {
        let pool = self.pool.clone();
        let cap = self.statement_cap;
        cache
            .get_or_load(&key, || async move {
                let tx = TenantTx::begin(&pool, tenant, Budget::new(deadline, cap)).await?;
                let (tx, value) = query(tx).await?;
                tx.finish_read();
                Ok(value)
            })
            .await
    }

    /// The tenant, from cache or PostgreSQL.
    pub async fn tenant(&self, id: TenantId, deadline: Option<Instant>) -> Result<Option<Tenant>, AppError> {
        self.load(&self.tenants, id.to_string(), id, deadline, |mut tx| async move {
            let t = store::get_tenant(tx.conn(), id).await?;
            Ok((tx, t))
        })
        .await
        .map(|(t, _)| t)
    }

    /// The user, from cache or PostgreSQL.
    pub async fn user(
        &self,
        tenant: TenantId,
        id: UserId,
        deadline: Option<Instant>,
    ) -> Result<Option<User>, AppError> {
        self.user_with_status(tenant, id, deadline).await.map(|(u, _)| u)
    }

    /// The user, and whether reading it loaded PostgreSQL.
    pub async fn user_with_status(
        &self,
        tenant: TenantId,
        id: UserId,
        deadline: Option<Instant>,
    ) -> Result<(Option<User>, CacheStatus), AppError> {
        self.load(
            &self.users,
            format!("{tenant}:{id}"),
            tenant,
            deadline,
            |mut tx| async move {
                let u = users::store::get_user(tx.conn(), tenant, id).await?;
                Ok((tx, u))
            },
        )
        .await
    }

    async fn api_key(
        &self,
        tenant: TenantId,
        id: Uuid,
        deadline: Option<Instant>,
    ) -> Result<Option<StoredKey>, AppError> {
        self.load(
            &self.keys,
            format!("{tenant}:{id}"),
            tenant,
            deadline,
            |mut tx| async move {
                let k = users::store::get_api_key_with_digest(tx.conn(), tenant, id).await?;
                Ok((tx, k.map(|(key, digest)| StoredKey { key, digest })))
            },
        )
        .await
        .map(|(k, _)| k)
    }

    async fn check_tenant(&self, tenant_id: TenantId, deadline: Option<Instant>) -> Result<Tenant, AppError> {
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
            Some(t) => Ok(t),
        }
    }

    async fn active_user(&self, tenant: TenantId, id: UserId, deadline: Option<Instant>) -> Result<User, AppError> {
        match self.user(tenant, id, deadline).await? {
            Some(u) if u.active => Ok(u),
            Some(_) => Err(unauthenticated("USER_INACTIVE", "the credential's user is deactivated")),
            None => Err(unauthenticated("USER_UNKNOWN", "the credential's user does not exist")),
        }
    }

    /// Resolves a credential to a principal (and its tenant), or refuses it.
    pub async fn resolve(
        &self,
        credential: &Credential,
        deadline: Option<Instant>,
    ) -> Result<(Principal, Tenant), AppError> {
        let tenant_id = credential.tenant_id();
        match credential {
            Credential::Jwt(auth) => {
                // The JWT is verified already: its tenant may be named.
                let tenant = self.check_tenant(tenant_id, deadline).await?;
                let user = self.active_user(tenant_id, auth.user_id, deadline).await?;
                let (UserKind::Person, Some(role)) = (user.kind, user.role) else {
                    // Service accounts authenticate with keys only.
                    return Err(unauthenticated(
                        "CREDENTIAL_KIND_MISMATCH",
                        "service accounts authenticate with API keys",
                    ));
                };
                Ok((
                    Principal {
                        tenant_id,
                        user_id: user.id,
                        kind: PrincipalKind::Person { role },
                        permissions: Permissions::for_role(role),
                    },
                    tenant,
                ))
            }
            Credential::ApiKey(cred) => {
                let invalid = || unauthenticated("API_KEY_INVALID", "the API key is not valid");
                let StoredKey { key, digest } = self
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
                let tenant = self.check_tenant(tenant_id, deadline).await?;
                let user = self.active_user(tenant_id, key.service_account_id, deadline).await?;
                self.usage.record(tenant_id, key.id);
                Ok((
                    Principal {
                        tenant_id,
                        user_id: user.id,
                        kind: PrincipalKind::ServiceAccount { api_key_id: key.id },
                        permissions: Permissions::of(&key.scopes),
                    },
                    tenant,
                ))
            }
        }
    }

    /// Drops a cached user after it changed (update, deactivation), on
    /// every replica.
    pub async fn invalidate_user(&self, tenant: TenantId, id: UserId) {
        self.users.invalidate(&format!("{tenant}:{id}")).await;
    }

    /// Drops a cached API key after it changed (revocation), on every replica.
    pub async fn invalidate_key(&self, tenant: TenantId, id: Uuid) {
        self.keys.invalidate(&format!("{tenant}:{id}")).await;
    }

    /// Drops a cached tenant (after an operator changes it), on every replica.
    pub async fn invalidate_tenant(&self, id: TenantId) {
        self.tenants.invalidate(&id.to_string()).await;
    }
}
