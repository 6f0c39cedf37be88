//! The permission table: what each role may do. Handlers call `authorize`
//! and nothing else checks roles.

use crate::{error::AppError, tenancy::Principal, users::model::Role};

/// Something a caller may be allowed to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Permission {
    /// Read tickets.
    TicketsRead,
    /// Create, change and delete tickets.
    TicketsWrite,
}

impl Permission {
    /// The scope spelling (`tickets:read`), used in errors and API-key scopes.
    pub fn as_str(self) -> &'static str {
        match self {
            Permission::TicketsRead => "tickets:read",
            Permission::TicketsWrite => "tickets:write",
        }
    }
}

fn role_allows(role: Role, p: Permission) -> bool {
    match (role, p) {
        (Role::Admin, _) => true,
        (Role::Agent, Permission::TicketsRead | Permission::TicketsWrite) => true,
        (Role::Viewer, Permission::TicketsRead) => true,
        (Role::Viewer, Permission::TicketsWrite) => false,
    }
}

/// Allows the call or answers PERMISSION_DENIED naming the missing permission.
pub fn authorize(principal: &Principal, permission: Permission) -> Result<(), AppError> {
    if role_allows(principal.role, permission) {
        Ok(())
    } else {
        Err(AppError::PermissionDenied {
            reason: "PERMISSION_MISSING",
            description: format!("the caller lacks the `{}` permission", permission.as_str()),
            metadata: vec![("permission", permission.as_str().to_string())],
        })
    }
}
