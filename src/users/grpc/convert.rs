//! UsersService's wire ↔ domain conversion and request validation: every
//! violation names the request's field path. The validators are public for
//! the fuzz targets in `fuzz/`.

use super::super::{
    model::{self, ApiKey, Field, Role, User, UserFilter, UserKind, UserPatch},
    service::{NewApiKey, NewUser},
};
use crate::{
    auth::apikey,
    error::{AppError, FieldViolation},
    grpc_util::{Violations, bad_mask_path, from_timestamp, mask_paths, parse_optional_uuid, parse_uuid, to_timestamp},
    proto::users::v1::{self as pb, ListUsersRequest},
    tenancy::{TenantId, UserId},
    tickets::model::PAGE_SIZE_DEFAULT,
};

pub(super) fn role_to_proto(r: Option<Role>) -> pb::Role {
    match r {
        None => pb::Role::Unspecified,
        Some(Role::Admin) => pb::Role::Admin,
        Some(Role::Agent) => pb::Role::Agent,
        Some(Role::Viewer) => pb::Role::Viewer,
    }
}

pub(super) fn role_from_proto(field: &str, v: i32) -> Result<Option<Role>, FieldViolation> {
    match pb::Role::try_from(v) {
        Ok(pb::Role::Unspecified) => Ok(None),
        Ok(pb::Role::Admin) => Ok(Some(Role::Admin)),
        Ok(pb::Role::Agent) => Ok(Some(Role::Agent)),
        Ok(pb::Role::Viewer) => Ok(Some(Role::Viewer)),
        Err(_) => Err(FieldViolation::new(
            field,
            "INVALID_ENUM_VALUE",
            format!("unknown role {v}"),
        )),
    }
}

pub(super) fn kind_to_proto(k: UserKind) -> pb::UserKind {
    match k {
        UserKind::Person => pb::UserKind::Person,
        UserKind::ServiceAccount => pb::UserKind::ServiceAccount,
    }
}

pub(super) fn kind_from_proto(field: &str, v: i32) -> Result<Option<UserKind>, FieldViolation> {
    match pb::UserKind::try_from(v) {
        Ok(pb::UserKind::Unspecified) => Ok(None),
        Ok(pb::UserKind::Person) => Ok(Some(UserKind::Person)),
        Ok(pb::UserKind::ServiceAccount) => Ok(Some(UserKind::ServiceAccount)),
        Err(_) => Err(FieldViolation::new(
            field,
            "INVALID_ENUM_VALUE",
            format!("unknown kind {v}"),
        )),
    }
}

/// Model → wire.
pub fn user_to_proto(u: User) -> pb::User {
    let etag = u.etag();
    let User {
        id,
        email,
        display_name,
        kind,
        role,
        active,
        create_time,
        update_time,
        version: _,
    } = u;
    pb::User {
        id: id.to_string(),
        email,
        display_name,
        role: role_to_proto(role) as i32,
        active,
        kind: kind_to_proto(kind) as i32,
        create_time: Some(to_timestamp(create_time)),
        update_time: Some(to_timestamp(update_time)),
        etag,
    }
}

/// Model → wire (never with a secret: the model has none).
pub fn key_to_proto(tenant: TenantId, k: ApiKey) -> pb::ApiKey {
    let ApiKey {
        id,
        display_name,
        service_account_id,
        scopes,
        create_time,
        expire_time,
        last_use_time,
        revoke_time,
    } = k;
    pb::ApiKey {
        id: id.to_string(),
        display_name,
        service_account_id: service_account_id.to_string(),
        scopes: scopes.iter().map(|p| p.as_str().to_string()).collect(),
        key_prefix: apikey::prefix(tenant, id),
        create_time: Some(to_timestamp(create_time)),
        expire_time: expire_time.map(to_timestamp),
        last_use_time: last_use_time.map(to_timestamp),
        revoke_time: revoke_time.map(to_timestamp),
    }
}

pub(super) fn one(v: FieldViolation) -> AppError {
    AppError::InvalidArgument(vec![v])
}

pub(super) fn page_size(requested: i32) -> Result<u32, FieldViolation> {
    crate::tickets::model::page_size(requested)
}

/// Request → domain (public for the fuzz targets in `fuzz/`).
#[doc(hidden)]
pub fn validate_create(user: Option<pb::User>, request_id: &str) -> Result<(NewUser, Option<uuid::Uuid>), AppError> {
    let Some(user) = user else {
        return Err(AppError::invalid("user", "REQUIRED", "the user is required"));
    };
    let pb::User {
        id: _,
        email,
        display_name,
        role,
        active: _,
        kind: _,
        create_time: _,
        update_time: _,
        etag: _,
    } = user;
    let mut v = Violations::default();
    let email = v.check(model::normalize_email("user.email", &email));
    let display_name = v.check(model::validate_display_name("user.display_name", &display_name));
    let role = match v.check(role_from_proto("user.role", role)) {
        Some(Some(r)) => Some(r),
        Some(None) => {
            v.0.push(FieldViolation::new("user.role", "REQUIRED", "a person needs a role"));
            None
        }
        None => None,
    };
    let request_id = v.check(parse_optional_uuid("request_id", request_id));
    v.finish()?;
    match (email, display_name, role, request_id) {
        (Some(email), Some(display_name), Some(role), Some(rid)) => Ok((
            NewUser {
                email,
                display_name,
                role,
            },
            rid,
        )),
        _ => Err(AppError::internal(anyhow::anyhow!("validation passed without values"))),
    }
}

/// Request → domain (public for the fuzz targets in `fuzz/`).
#[doc(hidden)]
pub fn validate_update(
    user: Option<pb::User>,
    mask: Option<prost_types::FieldMask>,
) -> Result<(UserId, Option<String>, UserPatch), AppError> {
    let Some(user) = user else {
        return Err(AppError::invalid("user", "REQUIRED", "the user is required"));
    };
    let pb::User {
        id,
        email,
        display_name,
        role,
        active,
        kind: _,
        create_time: _,
        update_time: _,
        etag,
    } = user;
    let mut v = Violations::default();
    let id = v.check(parse_uuid("user.id", &id));
    let paths = mask_paths(mask, &mut v);
    let mut patch = UserPatch::default();
    for (i, path) in paths.iter().enumerate() {
        let Some(field) = Field::parse(path) else {
            v.0.push(bad_mask_path(
                i,
                path,
                &["id", "kind", "create_time", "update_time", "etag"],
            ));
            continue;
        };
        match field {
            Field::DisplayName => {
                patch.display_name = v.check(model::validate_display_name("user.display_name", &display_name))
            }
            Field::Email => patch.email = v.check(model::normalize_email("user.email", &email)),
            Field::Role => {
                patch.role = match v.check(role_from_proto("user.role", role)) {
                    Some(Some(r)) => Some(r),
                    Some(None) => {
                        v.0.push(FieldViolation::new(
                            "user.role",
                            "REQUIRED",
                            "a role must be given when masked",
                        ));
                        None
                    }
                    None => None,
                }
            }
            Field::Active => patch.active = Some(active),
        }
    }
    v.finish()?;
    let id = id.ok_or_else(|| AppError::internal(anyhow::anyhow!("validation passed without an id")))?;
    Ok((UserId(id), (!etag.is_empty()).then_some(etag), patch))
}

/// Request → domain (public for the fuzz targets in `fuzz/`).
#[doc(hidden)]
pub fn validate_list(r: ListUsersRequest) -> Result<(UserFilter, u32, String), AppError> {
    let ListUsersRequest {
        page_size: size,
        page_token,
        role,
        active,
        email_prefix,
        kind,
    } = r;
    let mut v = Violations::default();
    let size = v.check(page_size(size));
    let role = v.check(role_from_proto("role", role)).flatten();
    let kind = v.check(kind_from_proto("kind", kind)).flatten();
    let email_prefix = email_prefix.trim().to_lowercase();
    if email_prefix.len() > 320 {
        v.0.push(FieldViolation::new(
            "email_prefix",
            "TOO_LONG",
            "at most 320 characters",
        ));
    }
    v.finish()?;
    Ok((
        UserFilter {
            role,
            active,
            email_prefix: (!email_prefix.is_empty()).then_some(email_prefix),
            kind,
        },
        size.unwrap_or(PAGE_SIZE_DEFAULT),
        page_token,
    ))
}

/// Request → domain (public for the fuzz targets in `fuzz/`).
#[doc(hidden)]
pub fn validate_new_key(key: Option<pb::ApiKey>) -> Result<NewApiKey, AppError> {
    let Some(key) = key else {
        return Err(AppError::invalid("api_key", "REQUIRED", "the API key is required"));
    };
    let pb::ApiKey {
        id: _,
        display_name,
        service_account_id,
        scopes,
        key_prefix: _,
        create_time: _,
        expire_time,
        last_use_time: _,
        revoke_time: _,
    } = key;
    let mut v = Violations::default();
    let name = display_name.trim().to_string();
    if name.is_empty() {
        v.0.push(FieldViolation::new(
            "api_key.display_name",
            "REQUIRED",
            "say what the key is for",
        ));
    }
    let name = v.check(model::validate_display_name("api_key.display_name", &name));
    let sa = v.check(parse_optional_uuid("api_key.service_account_id", &service_account_id));
    let scopes = v.check_many(model::parse_scopes("api_key.scopes", &scopes));
    let expire_time = v.check(
        expire_time
            .map(|t| from_timestamp("api_key.expire_time", t))
            .transpose(),
    );
    v.finish()?;
    match (name, sa, scopes, expire_time) {
        (Some(display_name), Some(sa), Some(scopes), Some(expire_time)) => Ok(NewApiKey {
            display_name,
            service_account_id: sa.map(UserId),
            scopes,
            expire_time,
        }),
        _ => Err(AppError::internal(anyhow::anyhow!("validation passed without values"))),
    }
}
