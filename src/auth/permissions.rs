//! The permission table: what each role and scope grants, and what every
//! RPC of every deskd service requires. The authorization layer checks the
//! method's requirement for every call; handlers call `authorize` for the
//! finer, field-level rules (e.g. only `users:write` may change a role).
//! Nothing else checks roles.

use std::fmt;

use crate::{error::AppError, tenancy::Principal, users::model::Role};

/// Something a caller may be allowed to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
pub enum Permission {
    /// Read tickets.
    TicketsRead,
    /// Create, change and delete tickets.
    TicketsWrite,
    /// Read users.
    UsersRead,
    /// Create users; change other users, roles and activation.
    UsersWrite,
    /// Read stats.
    StatsRead,
    /// Issue, list and revoke API keys. Admins only: no scope grants it.
    ApiKeysManage,
}

/// Every permission, in display order.
pub const ALL: &[Permission] = &[
    Permission::TicketsRead,
    Permission::TicketsWrite,
    Permission::UsersRead,
    Permission::UsersWrite,
    Permission::StatsRead,
    Permission::ApiKeysManage,
];

/// The scopes an API key may carry (every permission but key management).
pub const GRANTABLE_SCOPES: &[Permission] = &[
    Permission::TicketsRead,
    Permission::TicketsWrite,
    Permission::UsersRead,
    Permission::UsersWrite,
    Permission::StatsRead,
];

impl Permission {
    /// The scope spelling (`tickets:read`), used in errors, keys and GetCurrentUser.
    pub fn as_str(self) -> &'static str {
        match self {
            Permission::TicketsRead => "tickets:read",
            Permission::TicketsWrite => "tickets:write",
            Permission::UsersRead => "users:read",
            Permission::UsersWrite => "users:write",
            Permission::StatsRead => "stats:read",
            Permission::ApiKeysManage => "apikeys:manage",
        }
    }

    /// Parses a scope an API key may carry.
    pub fn parse_scope(s: &str) -> Option<Self> {
        GRANTABLE_SCOPES.iter().copied().find(|p| p.as_str() == s)
    }

    fn bit(self) -> u32 {
        1 << (self as u32)
    }
}

impl fmt::Display for Permission {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A set of permissions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Hash)]
pub struct Permissions(u32);

impl Permissions {
    /// The empty set.
    pub const NONE: Permissions = Permissions(0);

    /// The set of `perms`.
    pub fn of(perms: &[Permission]) -> Self {
        Self(perms.iter().fold(0, |acc, p| acc | p.bit()))
    }

    /// Whether `p` is in the set.
    pub fn contains(self, p: Permission) -> bool {
        self.0 & p.bit() != 0
    }

    /// The members, in display order.
    pub fn to_vec(self) -> Vec<Permission> {
        ALL.iter().copied().filter(|p| self.contains(*p)).collect()
    }

    /// What a role grants.
    pub fn for_role(role: Role) -> Self {
        use Permission::*;
        match role {
            Role::Admin => Self::of(ALL),
            Role::Agent => Self::of(&[TicketsRead, TicketsWrite, UsersRead, StatsRead]),
            Role::Viewer => Self::of(&[TicketsRead, UsersRead, StatsRead]),
        }
    }
}

/// What a method requires.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Requirement {
    /// This permission.
    Permission(Permission),
    /// Only a verified, resolved caller; the handler applies finer rules.
    Authenticated,
}

/// Every RPC of every deskd service and what it requires. A test enumerates
/// the services' descriptors and fails when a method is missing here; a
/// method of a deskd service that is missing is refused (fail closed).
pub const METHODS: &[(&str, Requirement)] = {
    use Permission::*;
    use Requirement::{Authenticated, Permission as P};
    &[
        ("/deskd.tickets.v1.TicketsService/GetTicket", P(TicketsRead)),
        ("/deskd.tickets.v1.TicketsService/ListTickets", P(TicketsRead)),
        ("/deskd.tickets.v1.TicketsService/CreateTicket", P(TicketsWrite)),
        ("/deskd.tickets.v1.TicketsService/UpdateTicket", P(TicketsWrite)),
        ("/deskd.tickets.v1.TicketsService/DeleteTicket", P(TicketsWrite)),
        // An export reads tickets; its operation is read and cancelled with
        // the tickets permissions.
        ("/deskd.tickets.v1.TicketsService/ExportTickets", P(TicketsRead)),
        ("/deskd.operations.v1.OperationsService/GetOperation", P(TicketsRead)),
        ("/deskd.operations.v1.OperationsService/ListOperations", P(TicketsRead)),
        (
            "/deskd.operations.v1.OperationsService/CancelOperation",
            P(TicketsWrite),
        ),
        ("/deskd.users.v1.UsersService/GetUser", P(UsersRead)),
        ("/deskd.users.v1.UsersService/ListUsers", P(UsersRead)),
        ("/deskd.users.v1.UsersService/CreateUser", P(UsersWrite)),
        // Anyone may rename themselves; the handler requires users:write for
        // everything else (other users, e-mail, role, active).
        ("/deskd.users.v1.UsersService/UpdateUser", Authenticated),
        ("/deskd.users.v1.UsersService/DeactivateUser", P(UsersWrite)),
        ("/deskd.users.v1.UsersService/ReactivateUser", P(UsersWrite)),
        ("/deskd.users.v1.UsersService/GetCurrentUser", Authenticated),
        ("/deskd.users.v1.UsersService/CreateApiKey", P(ApiKeysManage)),
        ("/deskd.users.v1.UsersService/ListApiKeys", P(ApiKeysManage)),
        ("/deskd.users.v1.UsersService/RevokeApiKey", P(ApiKeysManage)),
        ("/deskd.stats.v1.StatsService/GetTicketStats", P(StatsRead)),
    ]
};

/// The requirement of `path`, if the table has one.
pub fn requirement(path: &str) -> Option<Requirement> {
    METHODS.iter().find(|(m, _)| *m == path).map(|(_, r)| *r)
}

/// Every method of every deskd service, from the compiled descriptors.
pub fn deskd_methods() -> &'static std::collections::BTreeSet<String> {
    use prost::Message as _;
    static METHODS_SEEN: std::sync::OnceLock<std::collections::BTreeSet<String>> = std::sync::OnceLock::new();
    METHODS_SEEN.get_or_init(|| {
        let mut out = std::collections::BTreeSet::new();
        // The descriptor set is compiled into the binary; failing to decode
        // it leaves the set empty, and every deskd method is then refused.
        if let Ok(fds) = prost_types::FileDescriptorSet::decode(crate::proto::FILE_DESCRIPTOR_SET) {
            for file in fds.file.iter().filter(|f| f.package().starts_with("deskd.")) {
                for service in &file.service {
                    for method in &service.method {
                        out.insert(format!("/{}.{}/{}", file.package(), service.name(), method.name()));
                    }
                }
            }
        }
        out
    })
}

/// Whether `path` is a method of a deskd service (which must be governed).
pub fn is_deskd_method(path: &str) -> bool {
    deskd_methods().contains(path) || (path.starts_with("/deskd.") && deskd_methods().is_empty())
}

/// Allows the call or answers PERMISSION_DENIED naming the missing permission.
pub fn authorize(principal: &Principal, permission: Permission) -> Result<(), AppError> {
    if principal.permissions.contains(permission) {
        Ok(())
    } else {
        Err(AppError::PermissionDenied {
            reason: "PERMISSION_MISSING",
            description: format!("the caller lacks the `{}` permission", permission.as_str()),
            metadata: vec![("permission", permission.as_str().to_string())],
        })
    }
}

/// Checks a method's requirement from the table.
pub fn authorize_method(principal: &Principal, path: &str) -> Result<(), AppError> {
    match requirement(path) {
        Some(Requirement::Permission(p)) => authorize(principal, p),
        Some(Requirement::Authenticated) => Ok(()),
        None if is_deskd_method(path) => Err(AppError::PermissionDenied {
            reason: "METHOD_NOT_GOVERNED",
            description: "this method has no entry in the permission table".into(),
            metadata: vec![],
        }),
        // No such method: the router answers UNIMPLEMENTED.
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;

    /// Every method of every deskd service in the descriptor set has exactly
    /// one entry, and every entry names a real method.
    #[test]
    fn every_method_is_governed() {
        let methods = deskd_methods().clone();
        assert!(methods.len() >= 15, "{methods:?}");
        let table: BTreeSet<String> = METHODS.iter().map(|(m, _)| (*m).to_string()).collect();
        assert_eq!(table.len(), METHODS.len(), "duplicate entries");
        let missing: Vec<_> = methods.difference(&table).collect();
        assert!(missing.is_empty(), "methods without a permission entry: {missing:?}");
        let stale: Vec<_> = table.difference(&methods).collect();
        assert!(stale.is_empty(), "entries for methods that do not exist: {stale:?}");
    }

    #[test]
    fn roles_grant_what_the_table_says() {
        use Permission::*;
        let admin = Permissions::for_role(Role::Admin);
        let agent = Permissions::for_role(Role::Agent);
        let viewer = Permissions::for_role(Role::Viewer);
        assert_eq!(admin.to_vec(), ALL.to_vec());
        assert_eq!(agent.to_vec(), vec![TicketsRead, TicketsWrite, UsersRead, StatsRead]);
        assert_eq!(viewer.to_vec(), vec![TicketsRead, UsersRead, StatsRead]);
    }

    #[test]
    fn key_management_is_not_a_grantable_scope() {
        assert_eq!(Permission::parse_scope("apikeys:manage"), None);
        assert_eq!(Permission::parse_scope("tickets:write"), Some(Permission::TicketsWrite));
        assert_eq!(Permission::parse_scope("tickets:*"), None);
    }
}
