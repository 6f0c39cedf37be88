//! Credentials (JWT for now; API keys arrive with the Users service) and the
//! permission table every handler consults through `authorize`.

pub mod jwt;
pub mod permissions;

pub use jwt::{Claims, JwtKeys};
pub use permissions::{Permission, authorize};

use crate::tenancy::{TenantId, UserId};

/// A verified credential, before the tenant layer resolves it against the
/// database: inserted into request extensions by the authentication layer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Authenticated {
    /// The tenant the credential was issued for (`tid`).
    pub tenant_id: TenantId,
    /// The subject (`sub`).
    pub user_id: UserId,
}
