//! Idempotent creates (AIP-155): the first response for a `request_id` is
//! kept for 24 hours (table `idempotency_keys`) and returned to every retry.
//! Shared by every service with a create RPC.

use sqlx::PgConnection;
use uuid::Uuid;

use crate::tenancy::TenantId;

/// The outcome of claiming an idempotency key.
#[derive(Debug)]
pub enum Claim {
    /// This request is the first (or the previous one expired): go ahead.
    Claimed,
    /// A request with this id completed within 24 h: its hash and response.
    Existing {
        /// Digest of the first request.
        request_hash: Vec<u8>,
        /// The first response.
        response: serde_json::Value,
    },
}

/// The claim statement, binding `$1` tenant, `$2` operation, `$3`
/// request_id, `$4` request hash and `$5` response; returns a row when this
/// transaction claimed the key (first use, or the previous one expired).
/// A macro, so that a create can embed it in one statement with its insert.
#[macro_export]
macro_rules! claim_sql {
    () => {
        "insert into idempotency_keys (tenant_id, operation, request_id, request_hash, response) \
         values ($1, $2, $3, $4, $5) \
         on conflict (tenant_id, operation, request_id) do update \
            set request_hash = excluded.request_hash, response = excluded.response, create_time = now() \
            where idempotency_keys.create_time < now() - interval '24 hours' \
         returning true"
    };
}

/// Claims `(operation, request_id)` for this transaction, storing the
/// response it will return. A concurrent claimant of the same key waits on
/// the unique index until this transaction ends, then sees `Existing`.
pub async fn claim(
    conn: &mut PgConnection,
    tenant: TenantId,
    operation: &str,
    request_id: Uuid,
    request_hash: &[u8],
    response: &serde_json::Value,
) -> Result<Claim, sqlx::Error> {
    let claimed: Option<bool> = sqlx::query_scalar(claim_sql!())
        .bind(tenant.0)
        .bind(operation)
        .bind(request_id)
        .bind(request_hash)
        .bind(response)
        .fetch_optional(&mut *conn)
        .await?;
    if claimed.is_some() {
        return Ok(Claim::Claimed);
    }
    existing(conn, tenant, operation, request_id).await
}

/// The stored request hash and response of a key another request claimed.
pub async fn existing(
    conn: &mut PgConnection,
    tenant: TenantId,
    operation: &str,
    request_id: Uuid,
) -> Result<Claim, sqlx::Error> {
    let (request_hash, response): (Vec<u8>, serde_json::Value) = sqlx::query_as(
        "select request_hash, response from idempotency_keys \
         where tenant_id = $1 and operation = $2 and request_id = $3",
    )
    .bind(tenant.0)
    .bind(operation)
    .bind(request_id)
    .fetch_one(conn)
    .await?;
    Ok(Claim::Existing { request_hash, response })
}
