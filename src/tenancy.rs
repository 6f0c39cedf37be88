//! Tenancy: who the caller is and which tenant every query runs for.
//!
//! `TenantTx` is the only way tenant-scoped SQL runs: a transaction whose
//! first statement sets `app.current_tenant_id` (transaction-local), so RLS
//! confines every statement to that tenant and nothing survives the
//! connection's return to the pool.

pub mod directory;
pub mod store;
pub mod tx;

use std::fmt;

use uuid::Uuid;

pub use directory::TenantDirectory;
pub use tx::TenantTx;

/// A tenant's id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TenantId(pub Uuid);

impl fmt::Display for TenantId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// A user's id (unique within its tenant).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct UserId(pub Uuid);

impl fmt::Display for UserId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// Whether a tenant may be served.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TenantStatus {
    /// Served normally.
    Active,
    /// Every request is refused with PERMISSION_DENIED.
    Suspended,
}

/// A tenant as the request path needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tenant {
    /// Its id.
    pub id: TenantId,
    /// Its display name.
    pub name: String,
    /// Active or suspended.
    pub status: TenantStatus,
}

/// The authenticated caller, resolved against the database: inserted into
/// the request extensions by the tenant layer, read by every handler.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// The tenant every operation of this request is confined to.
    pub tenant_id: TenantId,
    /// The calling user.
    pub user_id: UserId,
    /// The user's role, which decides what it may do.
    pub role: crate::users::model::Role,
}
