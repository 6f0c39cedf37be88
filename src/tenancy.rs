//! Tenancy: who the caller is and which tenant every query runs for.
//!
//! `TenantTx` is the only way tenant-scoped SQL runs: a transaction whose
//! first statement sets `app.current_tenant_id` (transaction-local), so RLS
//! confines every statement to that tenant and nothing survives the
//! connection's return to the pool.

pub mod directory;
pub mod key_usage;
pub mod store;
pub mod tx;

use std::fmt;

use uuid::Uuid;

pub use directory::TenantDirectory;
pub use tx::TenantTx;

/// A tenant's id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
#[serde(transparent)]
pub struct TenantId(pub Uuid);

impl fmt::Display for TenantId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// A user's id (unique within its tenant).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
#[serde(transparent)]
pub struct UserId(pub Uuid);

impl fmt::Display for UserId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// Whether a tenant may be served.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum TenantStatus {
    /// Served normally.
    Active,
    /// Every request is refused with PERMISSION_DENIED.
    Suspended,
}

/// A tenant as the request path needs it.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Tenant {
    /// Its id.
    pub id: TenantId,
    /// Its display name.
    pub name: String,
    /// Active or suspended.
    pub status: TenantStatus,
    /// The rate-limit plan (a key of `rate_limit.plans`, or `default`).
    pub plan: String,
    /// The tenant's own quotas, overriding its plan's.
    pub rate_limits: Option<crate::config::PlanQuotas>,
}

/// How the caller authenticated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PrincipalKind {
    /// A person with a JWT; its role grants its permissions.
    Person {
        /// The person's role.
        role: crate::users::model::Role,
    },
    /// A service account with an API key; the key's scopes are its permissions.
    ServiceAccount {
        /// The key used.
        api_key_id: uuid::Uuid,
    },
}

/// The authenticated caller, resolved against the database: inserted into
/// the request extensions by the tenant layer, read by every handler.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// The tenant every operation of this request is confined to.
    pub tenant_id: TenantId,
    /// The calling user (a service account for API keys).
    pub user_id: UserId,
    /// Person or service account.
    pub kind: PrincipalKind,
    /// What the caller may do.
    pub permissions: crate::auth::Permissions,
}

/// Who is calling and until when: what every service operation needs
/// besides its input.
#[derive(Debug, Clone)]
pub struct Ctx {
    /// The resolved caller.
    pub principal: Principal,
    /// The RPC's deadline.
    pub deadline: Option<std::time::Instant>,
}
