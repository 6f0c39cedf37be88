//! SQL for users; every function runs inside a tenant transaction.

use sqlx::PgConnection;
use uuid::Uuid;

use super::model::{Role, User};
use crate::tenancy::{TenantId, UserId};

fn row_to_user(
    (id, email, display_name, role, active): (Uuid, String, String, String, bool),
) -> Result<User, sqlx::Error> {
    let role = role.parse::<Role>().map_err(|e| sqlx::Error::Decode(e.into()))?;
    Ok(User {
        id: UserId(id),
        email,
        display_name,
        role,
        active,
    })
}

/// The user with `id` in the transaction's tenant.
pub async fn get_user(conn: &mut PgConnection, tenant: TenantId, id: UserId) -> Result<Option<User>, sqlx::Error> {
    let row: Option<(Uuid, String, String, String, bool)> =
        sqlx::query_as("select id, email, display_name, role, active from users where tenant_id = $1 and id = $2")
            .bind(tenant.0)
            .bind(id.0)
            .fetch_optional(conn)
            .await?;
    row.map(row_to_user).transpose()
}

/// Whether `id` is a user of `tenant`.
pub async fn user_exists(conn: &mut PgConnection, tenant: TenantId, id: UserId) -> Result<bool, sqlx::Error> {
    let found: Option<i32> = sqlx::query_scalar("select 1 from users where tenant_id = $1 and id = $2")
        .bind(tenant.0)
        .bind(id.0)
        .fetch_optional(conn)
        .await?;
    Ok(found.is_some())
}

/// Inserts a user; `Ok(false)` when the e-mail is taken in the tenant.
pub async fn insert_user(conn: &mut PgConnection, tenant: TenantId, user: &User) -> Result<bool, sqlx::Error> {
    let res = sqlx::query(
        "insert into users (tenant_id, id, email, display_name, role, active) \
         values ($1, $2, $3, $4, $5, $6) on conflict (tenant_id, email) do nothing",
    )
    .bind(tenant.0)
    .bind(user.id.0)
    .bind(&user.email)
    .bind(&user.display_name)
    .bind(user.role.as_str())
    .bind(user.active)
    .execute(conn)
    .await?;
    Ok(res.rows_affected() == 1)
}
