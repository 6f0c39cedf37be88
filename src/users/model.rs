//! User types and rules (no tonic, no sqlx).

use std::{fmt, str::FromStr};

use crate::{error::FieldViolation, tenancy::UserId};

/// What a user may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    /// Everything, including managing users.
    Admin,
    /// Reads and writes tickets.
    Agent,
    /// Reads only.
    Viewer,
}

impl Role {
    /// The database/CLI spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Agent => "agent",
            Role::Viewer => "viewer",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Role {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "admin" => Ok(Role::Admin),
            "agent" => Ok(Role::Agent),
            "viewer" => Ok(Role::Viewer),
            other => Err(format!("unknown role `{other}` (expected admin, agent or viewer)")),
        }
    }
}

/// A user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    /// Its id.
    pub id: UserId,
    /// Normalised (trimmed, lower-case) e-mail, unique within the tenant.
    pub email: String,
    /// Shown in front ends.
    pub display_name: String,
    /// What it may do.
    pub role: Role,
    /// Deactivated users cannot authenticate.
    pub active: bool,
}

/// Normalises and checks an e-mail address.
pub fn normalize_email(raw: &str) -> Result<String, FieldViolation> {
    let email = raw.trim().to_lowercase();
    let valid = email.len() <= 320
        && email.split_once('@').is_some_and(|(local, domain)| {
            !local.is_empty() && domain.contains('.') && !domain.starts_with('.') && !domain.ends_with('.')
        })
        && !email.chars().any(char::is_whitespace);
    if valid {
        Ok(email)
    } else {
        Err(FieldViolation::new("email", "INVALID_EMAIL", "not an e-mail address"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emails_are_normalised_and_checked() {
        assert_eq!(normalize_email("  Ann@Example.COM ").as_deref(), Ok("ann@example.com"));
        assert!(normalize_email("ann").is_err());
        assert!(normalize_email("@example.com").is_err());
        assert!(normalize_email("ann@localhost").is_err());
        assert!(normalize_email("a nn@example.com").is_err());
    }

    #[test]
    fn roles_round_trip() {
        for r in [Role::Admin, Role::Agent, Role::Viewer] {
            assert_eq!(r.as_str().parse::<Role>(), Ok(r));
        }
        assert!("root".parse::<Role>().is_err());
    }
}
