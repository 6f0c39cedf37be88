//! SQL for tenants (the only table outside a tenant's own rows).

use sqlx::PgConnection;
use uuid::Uuid;

use super::{Tenant, TenantId, TenantStatus};

fn status_from_db(s: &str) -> TenantStatus {
    match s {
        "active" => TenantStatus::Active,
        // Anything but "active" is refused: fail closed.
        _ => TenantStatus::Suspended,
    }
}

/// The tenant of the current tenant transaction (RLS shows no other).
pub async fn get_tenant(conn: &mut PgConnection, id: TenantId) -> Result<Option<Tenant>, sqlx::Error> {
    let row: Option<(Uuid, String, String, String, Option<serde_json::Value>)> =
        sqlx::query_as("select id, name, status, plan, rate_limits from tenants where id = $1")
            .bind(id.0)
            .fetch_optional(conn)
            .await?;
    row.map(|(id, name, status, plan, rate_limits)| {
        let rate_limits = rate_limits
            .map(serde_json::from_value)
            .transpose()
            .map_err(|e| sqlx::Error::Decode(format!("tenants.rate_limits: {e}").into()))?;
        Ok(Tenant {
            id: TenantId(id),
            name,
            status: status_from_db(&status),
            plan,
            rate_limits,
        })
    })
    .transpose()
}

/// Creates a tenant. Runs as the owner (operator command).
pub async fn insert_tenant(conn: &mut PgConnection, id: TenantId, name: &str) -> Result<(), sqlx::Error> {
    sqlx::query("insert into tenants (id, name) values ($1, $2)")
        .bind(id.0)
        .bind(name)
        .execute(conn)
        .await?;
    Ok(())
}

/// Suspends or reactivates a tenant. Runs as the owner (operator command).
pub async fn set_tenant_status(
    conn: &mut PgConnection,
    id: TenantId,
    status: TenantStatus,
) -> Result<bool, sqlx::Error> {
    let s = match status {
        TenantStatus::Active => "active",
        TenantStatus::Suspended => "suspended",
    };
    let res = sqlx::query("update tenants set status = $2, update_time = now() where id = $1")
        .bind(id.0)
        .bind(s)
        .execute(conn)
        .await?;
    Ok(res.rows_affected() == 1)
}
