//! Operator commands: bootstrap tenants, users and tokens. They connect with
//! the owner URL (they create what the app role may not), apply migrations
//! first so they work on a fresh database, and return ids for stdout.

use std::time::Duration;

use anyhow::{Context as _, bail};
use secrecy::ExposeSecret;
use sqlx::{ConnectOptions, Connection, PgConnection};
use uuid::Uuid;

use crate::{
    auth::{JwtKeys, apikey::KeyHasher, jwt},
    config::Config,
    db,
    tenancy::{TenantId, TenantStatus, UserId, store as tenant_store},
    users::{
        model::{ApiKey, Role, User, normalize_email, parse_scopes},
        store as user_store,
    },
};

async fn owner_conn(cfg: &Config) -> anyhow::Result<PgConnection> {
    if cfg.database.owner_url.expose_secret().is_empty() {
        bail!("this command needs the owner URL: set DESKD_DATABASE_OWNER_URL");
    }
    db::migrate(&cfg.database).await.context("migrating the database")?;
    let opts = db::connect_options("database.owner_url", &cfg.database.owner_url)?;
    opts.connect().await.context("connecting with DESKD_DATABASE_OWNER_URL")
}

/// Sets the transaction-local tenant context (as `TenantTx` does).
async fn set_tenant_context(conn: &mut PgConnection, tenant: TenantId) -> Result<(), sqlx::Error> {
    sqlx::query("select set_config('app.current_tenant_id', $1, true)")
        .bind(tenant.to_string())
        .execute(conn)
        .await?;
    Ok(())
}

/// Creates a tenant; returns its id.
pub async fn create_tenant(cfg: &Config, name: &str) -> anyhow::Result<TenantId> {
    let name = name.trim();
    if name.is_empty() || name.chars().count() > 200 {
        bail!("the tenant name must be 1 to 200 characters");
    }
    let mut conn = owner_conn(cfg).await?;
    let id = TenantId(Uuid::now_v7());
    // The owner need not be a superuser: FORCE'd RLS applies to it too, so
    // the new tenant's own context is set for the insert.
    let mut tx = conn.begin().await?;
    set_tenant_context(&mut tx, id).await?;
    tenant_store::insert_tenant(&mut tx, id, name).await?;
    tx.commit().await?;
    let _ = conn.close().await;
    Ok(id)
}

/// Suspends or reactivates a tenant.
pub async fn set_tenant_status(cfg: &Config, id: TenantId, status: TenantStatus) -> anyhow::Result<()> {
    let mut conn = owner_conn(cfg).await?;
    let mut tx = conn.begin().await?;
    set_tenant_context(&mut tx, id).await?;
    let found = tenant_store::set_tenant_status(&mut tx, id, status).await?;
    tx.commit().await?;
    let _ = conn.close().await;
    if !found {
        bail!("no tenant with id {id}");
    }
    // Replicas sharing Redis drop their cached copy now instead of after
    // `tenant_cache.ttl`.
    if let Some(redis) = crate::kv::Redis::from_config(&cfg.redis)? {
        let ttl = cfg.tenant_cache.ttl;
        crate::cache::TwoTier::<crate::tenancy::Tenant>::new("tenant", 1, ttl, ttl, Some(redis))
            .invalidate(&id.to_string())
            .await;
    }
    Ok(())
}

/// Creates a user in a tenant; returns its id.
pub async fn create_user(
    cfg: &Config,
    tenant: TenantId,
    email: &str,
    display_name: &str,
    role: Role,
) -> anyhow::Result<UserId> {
    let email = normalize_email("--email", email).map_err(|v| anyhow::anyhow!("--email: {}", v.description))?;
    let mut conn = owner_conn(cfg).await?;
    let mut tx = conn.begin().await?;
    set_tenant_context(&mut tx, tenant).await?;
    let exists: bool = sqlx::query_scalar("select exists (select from tenants where id = $1)")
        .bind(tenant.0)
        .fetch_one(&mut *tx)
        .await?;
    if !exists {
        bail!("no tenant with id {tenant}");
    }
    let now = now_micros();
    let user = User::person(
        UserId(Uuid::now_v7()),
        email,
        display_name.trim().to_string(),
        role,
        now,
    );
    if !user_store::insert_user(&mut tx, tenant, &user).await? {
        bail!("a user with e-mail {} already exists in tenant {tenant}", user.email);
    }
    tx.commit().await?;
    let _ = conn.close().await;
    Ok(user.id)
}

/// Issues an API key (and its service account) in a tenant; returns the key.
pub async fn create_api_key(
    cfg: &Config,
    tenant: TenantId,
    name: &str,
    scopes: &[String],
    ttl: Option<Duration>,
) -> anyhow::Result<String> {
    let name = name.trim();
    if name.is_empty() || name.chars().count() > 200 {
        bail!("--name must be 1 to 200 characters");
    }
    let scopes = parse_scopes("--scopes", scopes).map_err(|v| {
        anyhow::anyhow!(
            "--scopes: {} (expected any of tickets:read, tickets:write, users:read, users:write, stats:read)",
            v.iter().map(|f| f.description.as_str()).collect::<Vec<_>>().join("; ")
        )
    })?;
    let server = crate::startup::server_secret(cfg).context("loading the server secret")?;
    let hasher = KeyHasher::from_pepper_or(&cfg.api_keys.pepper, &server.secret);
    let now = now_micros();
    let mut conn = owner_conn(cfg).await?;
    let mut tx = conn.begin().await?;
    set_tenant_context(&mut tx, tenant).await?;
    if tenant_store::get_tenant(&mut tx, tenant).await?.is_none() {
        bail!("no tenant with id {tenant}");
    }
    let sa = User::service_account(UserId(Uuid::now_v7()), name.to_string(), now);
    user_store::insert_user(&mut tx, tenant, &sa).await?;
    let key = ApiKey {
        id: Uuid::now_v7(),
        display_name: name.to_string(),
        service_account_id: sa.id,
        scopes,
        create_time: now,
        expire_time: ttl.map(|t| now + t),
        last_use_time: None,
        revoke_time: None,
    };
    let issued = hasher.issue(tenant, key.id);
    user_store::insert_api_key(&mut tx, tenant, &key, &issued.digest).await?;
    tx.commit().await?;
    let _ = conn.close().await;
    Ok(issued.key.expose_secret().to_string())
}

use crate::etag::now_micros;

/// Jobs as JSON lines, newest first (operators: sees every tenant as the owner).
pub async fn list_jobs(
    cfg: &Config,
    tenant: Option<TenantId>,
    state: Option<&str>,
    limit: i64,
) -> anyhow::Result<Vec<String>> {
    if let Some(s) = state
        && !["queued", "running", "succeeded", "dead"].contains(&s)
    {
        bail!("--state must be queued, running, succeeded or dead");
    }
    let mut conn = owner_conn(cfg).await?;
    let rows: Vec<(serde_json::Value,)> = sqlx::query_as(
        "select json_build_object('id', id, 'tenant_id', tenant_id, 'kind', kind, 'state', state, \
                'attempts', attempts, 'max_attempts', max_attempts, 'last_error', last_error, \
                'run_at', run_at, 'create_time', create_time, 'update_time', update_time, \
                'finish_time', finish_time)::jsonb \
         from jobs where ($1::uuid is null or tenant_id = $1) and ($2::text is null or state = $2) \
         order by create_time desc limit $3",
    )
    .bind(tenant.map(|t| t.0))
    .bind(state)
    .bind(limit.clamp(1, 10_000))
    .fetch_all(&mut conn)
    .await?;
    let _ = conn.close().await;
    Ok(rows.into_iter().map(|(v,)| v.to_string()).collect())
}

/// Puts a dead job back in the queue (in its tenant's context).
pub async fn retry_job(cfg: &Config, tenant: TenantId, id: Uuid) -> anyhow::Result<()> {
    let mut conn = owner_conn(cfg).await?;
    let mut tx = conn.begin().await?;
    set_tenant_context(&mut tx, tenant).await?;
    let retried = crate::jobs::queue::retry_dead(&mut tx, tenant, id).await?;
    tx.commit().await?;
    let _ = conn.close().await;
    if !retried {
        bail!("no dead job {id} in tenant {tenant}");
    }
    Ok(())
}

/// Mints a JWT for a user with the configured (or development) secret.
pub fn mint_token(cfg: &Config, tenant: TenantId, user: UserId, ttl: Duration) -> anyhow::Result<String> {
    let (secret, _) = jwt::load_secret(&cfg.jwt).context("loading the JWT secret")?;
    let keys = JwtKeys::hs256(&secret, &cfg.jwt)?;
    Ok(keys.mint(tenant, user, ttl)?)
}
