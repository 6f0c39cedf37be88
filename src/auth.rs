//! Credentials (JWT, API keys) and the permission table every RPC is
//! governed by.

pub mod apikey;
pub mod jwt;
pub mod permissions;

pub use jwt::{Claims, JwtKeys};
pub use permissions::{Permission, Permissions, authorize};

use crate::tenancy::{TenantId, UserId};

/// A verified JWT: who it names. Resolved against the database by the
/// tenant layer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Authenticated {
    /// The tenant the credential was issued for (`tid`).
    pub tenant_id: TenantId,
    /// The subject (`sub`).
    pub user_id: UserId,
}

/// The credential of a request, as the authentication layer found it
/// (request extension). A JWT is verified already; an API key is only
/// parsed: its secret is checked against the stored digest by the tenant
/// layer, which has the database.
#[derive(Debug, Clone)]
pub enum Credential {
    /// A verified JWT.
    Jwt(Authenticated),
    /// A well-formed, not yet verified API key.
    ApiKey(apikey::ApiKeyCredential),
}

impl Credential {
    /// The tenant the credential names.
    pub fn tenant_id(&self) -> TenantId {
        match self {
            Credential::Jwt(a) => a.tenant_id,
            Credential::ApiKey(k) => k.tenant_id,
        }
    }
}
