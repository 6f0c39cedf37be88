//! User types and rules (no tonic, no sqlx).

use std::{fmt, str::FromStr};

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::{auth::Permission, error::FieldViolation, tenancy::UserId};

/// The resource type named in errors.
pub const RESOURCE_TYPE: &str = "deskd.users.v1.User";
/// The API key resource type named in errors.
pub const API_KEY_RESOURCE_TYPE: &str = "deskd.users.v1.ApiKey";
/// Longest display name, in characters.
pub const DISPLAY_NAME_MAX_CHARS: usize = 200;

/// What a person may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Everything, including managing users and keys.
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

/// A person or a service account.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UserKind {
    /// Authenticates with a JWT; has a role.
    Person,
    /// Authenticates with API keys; its keys carry scopes.
    ServiceAccount,
}

impl UserKind {
    /// The stored spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            UserKind::Person => "person",
            UserKind::ServiceAccount => "service_account",
        }
    }

    /// Parses the stored spelling.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "person" => Some(UserKind::Person),
            "service_account" => Some(UserKind::ServiceAccount),
            _ => None,
        }
    }
}

/// A user.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct User {
    /// Its id.
    pub id: UserId,
    /// Normalised e-mail (people); empty for service accounts.
    pub email: String,
    /// Shown in front ends.
    pub display_name: String,
    /// Person or service account.
    pub kind: UserKind,
    /// A person's role; `None` for service accounts.
    pub role: Option<Role>,
    /// Deactivated users cannot authenticate.
    pub active: bool,
    /// Created.
    #[serde(with = "time::serde::rfc3339")]
    pub create_time: OffsetDateTime,
    /// Last changed.
    #[serde(with = "time::serde::rfc3339")]
    pub update_time: OffsetDateTime,
    /// Bumped on every change; the etag derives from it.
    pub version: i64,
}

impl User {
    /// A new person, active, at `now`.
    pub fn person(id: UserId, email: String, display_name: String, role: Role, now: OffsetDateTime) -> Self {
        Self {
            id,
            email,
            display_name,
            kind: UserKind::Person,
            role: Some(role),
            active: true,
            create_time: now,
            update_time: now,
            version: 1,
        }
    }

    /// A new service account, active, at `now`.
    pub fn service_account(id: UserId, display_name: String, now: OffsetDateTime) -> Self {
        Self {
            id,
            email: String::new(),
            display_name,
            kind: UserKind::ServiceAccount,
            role: None,
            active: true,
            create_time: now,
            update_time: now,
            version: 1,
        }
    }

    /// The etag: opaque, changes with every write.
    pub fn etag(&self) -> String {
        crate::etag::etag_of(self.id.0, self.version)
    }
}

/// Normalises and checks an e-mail address.
pub fn normalize_email(field: &str, raw: &str) -> Result<String, FieldViolation> {
    let email = raw.trim().to_lowercase();
    if email.is_empty() {
        return Err(FieldViolation::new(field, "REQUIRED", "the e-mail is required"));
    }
    let valid = email.len() <= 320
        && email.split_once('@').is_some_and(|(local, domain)| {
            !local.is_empty()
                && !domain.contains('@')
                && domain.contains('.')
                && !domain.starts_with('.')
                && !domain.ends_with('.')
        })
        && !email.chars().any(|c| c.is_whitespace() || c.is_control());
    if valid {
        Ok(email)
    } else {
        Err(FieldViolation::new(field, "INVALID_EMAIL", "not an e-mail address"))
    }
}

/// Checks and trims a display name (may be empty).
pub fn validate_display_name(field: &str, raw: &str) -> Result<String, FieldViolation> {
    let name = raw.trim();
    if name.chars().count() > DISPLAY_NAME_MAX_CHARS {
        return Err(FieldViolation::new(
            field,
            "TOO_LONG",
            format!("at most {DISPLAY_NAME_MAX_CHARS} characters"),
        ));
    }
    if name.chars().any(char::is_control) {
        return Err(FieldViolation::new(
            field,
            "INVALID_CHARACTERS",
            "no control characters",
        ));
    }
    Ok(name.to_string())
}

/// A field an update may change.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Field {
    /// `display_name` (anyone, for themselves).
    DisplayName,
    /// `email` (users:write).
    Email,
    /// `role` (users:write).
    Role,
    /// `active` (users:write).
    Active,
}

impl Field {
    /// Parses a mask path.
    pub fn parse(path: &str) -> Option<Self> {
        match path {
            "display_name" => Some(Field::DisplayName),
            "email" => Some(Field::Email),
            "role" => Some(Field::Role),
            "active" => Some(Field::Active),
            _ => None,
        }
    }

    /// What changing this field requires beyond being the user.
    pub fn requires(self) -> Option<Permission> {
        match self {
            Field::DisplayName => None,
            Field::Email | Field::Role | Field::Active => Some(Permission::UsersWrite),
        }
    }
}

/// The validated changes of an update.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UserPatch {
    /// New display name.
    pub display_name: Option<String>,
    /// New e-mail.
    pub email: Option<String>,
    /// New role.
    pub role: Option<Role>,
    /// New activation.
    pub active: Option<bool>,
}

impl UserPatch {
    /// The fields this patch touches.
    pub fn fields(&self) -> Vec<Field> {
        let mut f = Vec::new();
        if self.display_name.is_some() {
            f.push(Field::DisplayName);
        }
        if self.email.is_some() {
            f.push(Field::Email);
        }
        if self.role.is_some() {
            f.push(Field::Role);
        }
        if self.active.is_some() {
            f.push(Field::Active);
        }
        f
    }

    /// Applies the patch at `now`; whether anything changed.
    pub fn apply(&self, u: &mut User, now: OffsetDateTime) -> bool {
        let before = u.clone();
        if let Some(v) = &self.display_name {
            u.display_name.clone_from(v);
        }
        if let Some(v) = &self.email {
            u.email.clone_from(v);
        }
        if let Some(v) = self.role {
            u.role = Some(v);
        }
        if let Some(v) = self.active {
            u.active = v;
        }
        let changed = *u != before;
        if changed {
            u.update_time = now;
            u.version += 1;
        }
        changed
    }
}

/// Filters of a user listing.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UserFilter {
    /// Only this role.
    pub role: Option<Role>,
    /// Only active / inactive.
    pub active: Option<bool>,
    /// E-mail prefix (lower-cased).
    pub email_prefix: Option<String>,
    /// Only this kind.
    pub kind: Option<UserKind>,
}

impl UserFilter {
    /// Canonical text for the page-token fingerprint.
    pub fn canonical(&self) -> String {
        format!(
            "r={:?};a={:?};e={:?};k={:?}",
            self.role.map(Role::as_str),
            self.active,
            self.email_prefix,
            self.kind.map(UserKind::as_str)
        )
    }
}

/// A service account's API key (never with its secret).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiKey {
    /// Its id.
    pub id: Uuid,
    /// What it is for.
    pub display_name: String,
    /// The service account it authenticates as.
    pub service_account_id: UserId,
    /// What it may do.
    pub scopes: Vec<Permission>,
    /// Issued.
    #[serde(with = "time::serde::rfc3339")]
    pub create_time: OffsetDateTime,
    /// Stops working at.
    #[serde(with = "time::serde::rfc3339::option")]
    pub expire_time: Option<OffsetDateTime>,
    /// Last used (batched, approximate).
    #[serde(with = "time::serde::rfc3339::option")]
    pub last_use_time: Option<OffsetDateTime>,
    /// Revoked at.
    #[serde(with = "time::serde::rfc3339::option")]
    pub revoke_time: Option<OffsetDateTime>,
}

/// Most entries an API key's scope list may have, repeats included (there
/// are five scopes): a longer list is refused with one violation instead of
/// one per entry.
pub const SCOPE_ENTRIES_MAX: usize = 32;

/// Parses API key scopes: at least one, each grantable, duplicates removed.
pub fn parse_scopes(field: &str, raw: &[String]) -> Result<Vec<Permission>, Vec<FieldViolation>> {
    if raw.is_empty() {
        return Err(vec![FieldViolation::new(
            field,
            "REQUIRED",
            "at least one scope is required",
        )]);
    }
    if raw.len() > SCOPE_ENTRIES_MAX {
        return Err(vec![FieldViolation::new(
            field,
            "TOO_MANY",
            format!("at most {SCOPE_ENTRIES_MAX} scopes"),
        )]);
    }
    let mut out = Vec::new();
    let mut violations = Vec::new();
    for (i, s) in raw.iter().enumerate() {
        match Permission::parse_scope(s.trim()) {
            Some(p) => {
                if !out.contains(&p) {
                    out.push(p);
                }
            }
            None => violations.push(FieldViolation::new(
                format!("{field}[{i}]"),
                "UNKNOWN_SCOPE",
                "expected one of tickets:read, tickets:write, users:read, users:write, stats:read",
            )),
        }
    }
    if violations.is_empty() {
        out.sort();
        Ok(out)
    } else {
        Err(violations)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emails_are_normalised_and_checked() {
        assert_eq!(
            normalize_email("e", "  Ann@Example.COM ").as_deref(),
            Ok("ann@example.com")
        );
        for bad in ["ann", "@example.com", "ann@localhost", "a nn@example.com", "a@b@c.io"] {
            assert!(normalize_email("e", bad).is_err(), "{bad}");
        }
        assert_eq!(normalize_email("e", " ").map_err(|v| v.reason), Err("REQUIRED"));
    }

    #[test]
    fn roles_round_trip() {
        for r in [Role::Admin, Role::Agent, Role::Viewer] {
            assert_eq!(r.as_str().parse::<Role>(), Ok(r));
        }
        assert!("root".parse::<Role>().is_err());
    }

    #[test]
    fn only_display_name_is_self_service() {
        assert_eq!(Field::DisplayName.requires(), None);
        for f in [Field::Email, Field::Role, Field::Active] {
            assert_eq!(f.requires(), Some(Permission::UsersWrite));
        }
    }

    #[test]
    fn scopes_are_checked() {
        let ok = parse_scopes(
            "s",
            &["tickets:write".into(), "tickets:read".into(), "tickets:write".into()],
        );
        assert_eq!(ok, Ok(vec![Permission::TicketsRead, Permission::TicketsWrite]));
        assert!(parse_scopes("s", &[]).is_err());
        let bad = parse_scopes("s", &["apikeys:manage".into()]).expect_err("not grantable");
        assert_eq!(bad[0].field, "s[0]");
    }

    #[test]
    fn a_long_scope_list_is_one_violation() {
        let v = parse_scopes("api_key.scopes", &vec![String::new(); 100_000]).expect_err("refused");
        assert_eq!(v.len(), 1);
        assert_eq!((v[0].field.as_str(), v[0].reason), ("api_key.scopes", "TOO_MANY"));
        let repeats = vec!["tickets:read".to_string(); SCOPE_ENTRIES_MAX];
        assert_eq!(parse_scopes("s", &repeats), Ok(vec![Permission::TicketsRead]));
    }
}
