//! SQL for users and API keys; every function runs inside a tenant
//! transaction and filters by `tenant_id` explicitly as well.

use sqlx::{PgConnection, Postgres, QueryBuilder};
use time::OffsetDateTime;
use uuid::Uuid;

use super::model::{ApiKey, Role, User, UserFilter, UserKind};
use crate::{
    auth::Permission,
    pagination::Cursor,
    tenancy::{TenantId, UserId},
};

const USER_COLUMNS: &str = "id, email, display_name, kind, role, active, create_time, update_time, version";

#[derive(sqlx::FromRow)]
struct UserRow {
    id: Uuid,
    email: String,
    display_name: String,
    kind: String,
    role: Option<String>,
    active: bool,
    create_time: OffsetDateTime,
    update_time: OffsetDateTime,
    version: i64,
}

fn decode_err(what: &str, v: &str) -> sqlx::Error {
    sqlx::Error::Decode(format!("unknown {what} `{v}`").into())
}

impl TryFrom<UserRow> for User {
    type Error = sqlx::Error;
    fn try_from(r: UserRow) -> Result<Self, Self::Error> {
        let role = match r.role.as_deref() {
            None => None,
            Some(s) => Some(s.parse::<Role>().map_err(|_| decode_err("role", s))?),
        };
        Ok(User {
            id: UserId(r.id),
            email: r.email,
            display_name: r.display_name,
            kind: UserKind::parse(&r.kind).ok_or_else(|| decode_err("kind", &r.kind))?,
            role,
            active: r.active,
            create_time: r.create_time,
            update_time: r.update_time,
            version: r.version,
        })
    }
}

/// The user with `id` in `tenant`, optionally locked for update.
pub async fn get_user(conn: &mut PgConnection, tenant: TenantId, id: UserId) -> Result<Option<User>, sqlx::Error> {
    get_user_opt_lock(conn, tenant, id, false).await
}

/// The user with `id`, locked for an update in this transaction.
pub async fn get_user_for_update(
    conn: &mut PgConnection,
    tenant: TenantId,
    id: UserId,
) -> Result<Option<User>, sqlx::Error> {
    get_user_opt_lock(conn, tenant, id, true).await
}

async fn get_user_opt_lock(
    conn: &mut PgConnection,
    tenant: TenantId,
    id: UserId,
    lock: bool,
) -> Result<Option<User>, sqlx::Error> {
    let mut q: QueryBuilder<Postgres> = QueryBuilder::new("select ");
    q.push(USER_COLUMNS)
        .push(" from users where tenant_id = ")
        .push_bind(tenant.0)
        .push(" and id = ")
        .push_bind(id.0);
    if lock {
        q.push(" for update");
    }
    let row: Option<UserRow> = q.build_query_as().fetch_optional(conn).await?;
    row.map(User::try_from).transpose()
}

/// Whether `id` is an active user of `tenant` (a valid ticket assignee).
pub async fn user_exists(conn: &mut PgConnection, tenant: TenantId, id: UserId) -> Result<bool, sqlx::Error> {
    let found: Option<i32> = sqlx::query_scalar("select 1 from users where tenant_id = $1 and id = $2")
        .bind(tenant.0)
        .bind(id.0)
        .fetch_optional(conn)
        .await?;
    Ok(found.is_some())
}

/// Inserts a user; `Ok(false)` when a person's e-mail is taken in the tenant.
pub async fn insert_user(conn: &mut PgConnection, tenant: TenantId, user: &User) -> Result<bool, sqlx::Error> {
    let res = sqlx::query(
        "insert into users (tenant_id, id, email, display_name, kind, role, active, create_time, update_time, version) \
         values ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) \
         on conflict (tenant_id, email) where kind = 'person' do nothing",
    )
    .bind(tenant.0)
    .bind(user.id.0)
    .bind(&user.email)
    .bind(&user.display_name)
    .bind(user.kind.as_str())
    .bind(user.role.map(Role::as_str))
    .bind(user.active)
    .bind(user.create_time)
    .bind(user.update_time)
    .bind(user.version)
    .execute(conn)
    .await?;
    Ok(res.rows_affected() == 1)
}

/// Writes every mutable field; `Ok(false)` when the new e-mail is taken.
pub async fn update_user(conn: &mut PgConnection, tenant: TenantId, user: &User) -> Result<bool, sqlx::Error> {
    let res = sqlx::query(
        "update users set email = $3, display_name = $4, role = $5, active = $6, update_time = $7, version = $8 \
         where tenant_id = $1 and id = $2",
    )
    .bind(tenant.0)
    .bind(user.id.0)
    .bind(&user.email)
    .bind(&user.display_name)
    .bind(user.role.map(Role::as_str))
    .bind(user.active)
    .bind(user.update_time)
    .bind(user.version)
    .execute(conn)
    .await;
    match res {
        Ok(r) => Ok(r.rows_affected() == 1),
        Err(sqlx::Error::Database(db)) if db.code().as_deref() == Some("23505") => Ok(false),
        Err(e) => Err(e),
    }
}

/// Up to `limit` users after `after`, oldest first.
pub async fn list_users(
    conn: &mut PgConnection,
    tenant: TenantId,
    filter: &UserFilter,
    after: Option<Cursor>,
    limit: i64,
) -> Result<Vec<User>, sqlx::Error> {
    let mut q: QueryBuilder<Postgres> = QueryBuilder::new("select ");
    q.push(USER_COLUMNS)
        .push(" from users where tenant_id = ")
        .push_bind(tenant.0);
    if let Some(r) = filter.role {
        q.push(" and role = ").push_bind(r.as_str());
    }
    if let Some(a) = filter.active {
        q.push(" and active = ").push_bind(a);
    }
    if let Some(k) = filter.kind {
        q.push(" and kind = ").push_bind(k.as_str());
    }
    if let Some(prefix) = &filter.email_prefix {
        // A prefix match with LIKE's metacharacters escaped.
        let escaped = prefix.replace('\\', "\\\\").replace('%', "\\%").replace('_', "\\_");
        q.push(" and email like ").push_bind(format!("{escaped}%"));
    }
    if let Some(c) = after {
        let ts = cursor_time(c)?;
        q.push(" and (create_time, id) > (")
            .push_bind(ts)
            .push(", ")
            .push_bind(c.id)
            .push(")");
    }
    q.push(" order by create_time, id limit ").push_bind(limit);
    let rows: Vec<UserRow> = q.build_query_as().fetch_all(conn).await?;
    rows.into_iter().map(User::try_from).collect()
}

fn cursor_time(c: Cursor) -> Result<OffsetDateTime, sqlx::Error> {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(c.micros) * 1000).map_err(|e| sqlx::Error::Encode(e.into()))
}

const KEY_COLUMNS: &str =
    "id, display_name, service_account_id, scopes, create_time, expire_time, last_use_time, revoke_time";

#[derive(sqlx::FromRow)]
struct KeyRow {
    id: Uuid,
    display_name: String,
    service_account_id: Uuid,
    scopes: Vec<String>,
    create_time: OffsetDateTime,
    expire_time: Option<OffsetDateTime>,
    last_use_time: Option<OffsetDateTime>,
    revoke_time: Option<OffsetDateTime>,
}

impl TryFrom<KeyRow> for ApiKey {
    type Error = sqlx::Error;
    fn try_from(r: KeyRow) -> Result<Self, Self::Error> {
        let scopes = r
            .scopes
            .iter()
            .map(|s| Permission::parse_scope(s).ok_or_else(|| decode_err("scope", s)))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(ApiKey {
            id: r.id,
            display_name: r.display_name,
            service_account_id: UserId(r.service_account_id),
            scopes,
            create_time: r.create_time,
            expire_time: r.expire_time,
            last_use_time: r.last_use_time,
            revoke_time: r.revoke_time,
        })
    }
}

/// Stores a new key with its secret's digest.
pub async fn insert_api_key(
    conn: &mut PgConnection,
    tenant: TenantId,
    key: &ApiKey,
    digest: &[u8],
) -> Result<(), sqlx::Error> {
    let scopes: Vec<&str> = key.scopes.iter().map(|p| p.as_str()).collect();
    sqlx::query(
        "insert into api_keys (tenant_id, id, service_account_id, display_name, scopes, secret_digest, \
                               create_time, expire_time) values ($1, $2, $3, $4, $5, $6, $7, $8)",
    )
    .bind(tenant.0)
    .bind(key.id)
    .bind(key.service_account_id.0)
    .bind(&key.display_name)
    .bind(scopes)
    .bind(digest)
    .bind(key.create_time)
    .bind(key.expire_time)
    .execute(conn)
    .await?;
    Ok(())
}

#[derive(sqlx::FromRow)]
struct KeyRowWithDigest {
    #[sqlx(flatten)]
    key: KeyRow,
    secret_digest: Vec<u8>,
}

/// A key and its stored digest (for authentication).
pub async fn get_api_key_with_digest(
    conn: &mut PgConnection,
    tenant: TenantId,
    id: Uuid,
) -> Result<Option<(ApiKey, Vec<u8>)>, sqlx::Error> {
    let mut q: QueryBuilder<Postgres> = QueryBuilder::new("select ");
    q.push(KEY_COLUMNS)
        .push(", secret_digest from api_keys where tenant_id = ")
        .push_bind(tenant.0)
        .push(" and id = ")
        .push_bind(id);
    let row: Option<KeyRowWithDigest> = q.build_query_as().fetch_optional(conn).await?;
    row.map(|r| Ok((ApiKey::try_from(r.key)?, r.secret_digest))).transpose()
}

/// A key's metadata.
pub async fn get_api_key(conn: &mut PgConnection, tenant: TenantId, id: Uuid) -> Result<Option<ApiKey>, sqlx::Error> {
    let mut q: QueryBuilder<Postgres> = QueryBuilder::new("select ");
    q.push(KEY_COLUMNS)
        .push(" from api_keys where tenant_id = ")
        .push_bind(tenant.0)
        .push(" and id = ")
        .push_bind(id);
    let row: Option<KeyRow> = q.build_query_as().fetch_optional(conn).await?;
    row.map(ApiKey::try_from).transpose()
}

/// Up to `limit` keys after `after`, newest first.
pub async fn list_api_keys(
    conn: &mut PgConnection,
    tenant: TenantId,
    show_revoked: bool,
    after: Option<Cursor>,
    limit: i64,
) -> Result<Vec<ApiKey>, sqlx::Error> {
    let mut q: QueryBuilder<Postgres> = QueryBuilder::new("select ");
    q.push(KEY_COLUMNS)
        .push(" from api_keys where tenant_id = ")
        .push_bind(tenant.0);
    if !show_revoked {
        q.push(" and revoke_time is null");
    }
    if let Some(c) = after {
        let ts = cursor_time(c)?;
        q.push(" and (create_time, id) < (")
            .push_bind(ts)
            .push(", ")
            .push_bind(c.id)
            .push(")");
    }
    q.push(" order by create_time desc, id desc limit ").push_bind(limit);
    let rows: Vec<KeyRow> = q.build_query_as().fetch_all(conn).await?;
    rows.into_iter().map(ApiKey::try_from).collect()
}

/// Revokes a key (idempotent: an already revoked key keeps its first time).
pub async fn revoke_api_key(
    conn: &mut PgConnection,
    tenant: TenantId,
    id: Uuid,
    now: OffsetDateTime,
) -> Result<Option<ApiKey>, sqlx::Error> {
    sqlx::query("update api_keys set revoke_time = coalesce(revoke_time, $3) where tenant_id = $1 and id = $2")
        .bind(tenant.0)
        .bind(id)
        .bind(now)
        .execute(&mut *conn)
        .await?;
    get_api_key(conn, tenant, id).await
}

/// Records when keys were last used (one statement for a batch).
pub async fn record_key_use(
    conn: &mut PgConnection,
    tenant: TenantId,
    uses: &[(Uuid, OffsetDateTime)],
) -> Result<(), sqlx::Error> {
    let ids: Vec<Uuid> = uses.iter().map(|(id, _)| *id).collect();
    let times: Vec<OffsetDateTime> = uses.iter().map(|(_, t)| *t).collect();
    sqlx::query(
        "update api_keys k set last_use_time = greatest(coalesce(k.last_use_time, u.t), u.t) \
         from unnest($2::uuid[], $3::timestamptz[]) as u(id, t) \
         where k.tenant_id = $1 and k.id = u.id",
    )
    .bind(tenant.0)
    .bind(ids)
    .bind(times)
    .execute(conn)
    .await?;
    Ok(())
}
