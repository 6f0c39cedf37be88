//! Helpers shared by the Users, API key and permission tests: the Users
//! client, API-key requests, and precise error assertions (`mask` and
//! `assert_error` serve the Tickets tests too, through `tickets_support`).

#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet};

use deskd::{
    proto::users::v1::{
        self as upb, CreateApiKeyRequest, CreateApiKeyResponse, CreateUserRequest, DeactivateUserRequest,
        GetCurrentUserRequest, GetCurrentUserResponse, GetUserRequest, ListUsersRequest, ReactivateUserRequest,
        UpdateUserRequest, users_service_client::UsersServiceClient,
    },
    users::model::Role,
};
use prost_types::FieldMask;
use tonic::{Code, Request, Status, transport::Channel};
use tonic_types::{ErrorDetail, StatusExt as _};
use uuid::Uuid;

use crate::helpers::*;

/// The `ResourceInfo.resource_type` of users.
pub const USER_TYPE: &str = "deskd.users.v1.User";
/// The `ResourceInfo.resource_type` of API keys.
pub const API_KEY_TYPE: &str = "deskd.users.v1.ApiKey";

/// The generated Users client on the app's channel.
pub fn users(app: &TestApp) -> UsersServiceClient<Channel> {
    UsersServiceClient::new(app.channel.clone())
}

/// A request carrying `key` in `x-api-key`.
pub fn with_api_key<T>(key: &str, msg: T) -> Request<T> {
    let mut req = Request::new(msg);
    req.metadata_mut()
        .insert("x-api-key", key.parse().expect("metadata value"));
    req
}

/// An update mask of `paths`.
pub fn mask(paths: &[&str]) -> Option<FieldMask> {
    Some(FieldMask {
        paths: paths.iter().map(|p| (*p).to_string()).collect(),
    })
}

/// Asserts `status` has `code` and the ErrorInfo `reason` (domain deskd).
#[track_caller]
pub fn assert_error(status: &Status, code: Code, expected_reason: &str) {
    assert_eq!(status.code(), code, "{status:?}");
    let details = status.get_error_details();
    let info = details
        .error_info()
        .unwrap_or_else(|| panic!("no ErrorInfo in {status:?}"));
    assert_eq!(info.reason, expected_reason, "{status:?}");
    assert_eq!(info.domain, "deskd", "{status:?}");
}

/// Asserts PERMISSION_DENIED / PERMISSION_MISSING naming `permission`.
#[track_caller]
pub fn assert_permission_missing(status: &Status, permission: &str) {
    assert_error(status, Code::PermissionDenied, "PERMISSION_MISSING");
    let details = status.get_error_details();
    let info = details.error_info().expect("ErrorInfo");
    assert_eq!(
        info.metadata.get("permission").map(String::as_str),
        Some(permission),
        "{status:?}"
    );
}

/// Asserts INVALID_ARGUMENT with exactly one violation, `field`/`reason`.
#[track_caller]
pub fn assert_only_violation(status: &Status, field: &str, violation_reason: &str) {
    assert_field_violation(status, field, violation_reason);
    let details = status.get_error_details();
    let violations: Vec<(String, String)> = details
        .bad_request()
        .expect("BadRequest")
        .field_violations
        .iter()
        .map(|v| (v.field.clone(), v.reason.clone()))
        .collect();
    assert_eq!(
        violations,
        vec![(field.to_string(), violation_reason.to_string())],
        "{status:?}"
    );
}

/// Asserts NOT_FOUND naming `resource_type`/`name` in ResourceInfo.
#[track_caller]
pub fn assert_not_found(status: &Status, resource_type: &str, name: &str) {
    assert_error(status, Code::NotFound, "NOT_FOUND");
    let details = status.get_error_details();
    let info = details.resource_info().expect("ResourceInfo");
    assert_eq!(info.resource_type, resource_type, "{status:?}");
    assert_eq!(info.resource_name, name, "{status:?}");
}

/// A status with what may legitimately differ between two requests removed
/// (the id each sent and the request id): code, message, every detail and
/// the metadata keys must match between a foreign id and a missing one.
pub fn normalized(status: &Status, sent_id: &str) -> (Code, String, Vec<String>, BTreeSet<String>) {
    let details = status
        .get_error_details_vec()
        .into_iter()
        .map(|d| match d {
            ErrorDetail::ErrorInfo(i) => format!(
                "ErrorInfo reason={} domain={} metadata={:?}",
                i.reason,
                i.domain,
                i.metadata.into_iter().collect::<BTreeMap<_, _>>()
            ),
            ErrorDetail::ResourceInfo(r) => format!(
                "ResourceInfo type={} name_is_sent_id={} owner={} description={}",
                r.resource_type,
                r.resource_name == sent_id,
                r.owner,
                r.description
            ),
            ErrorDetail::RequestInfo(r) => {
                assert!(!r.request_id.is_empty(), "empty request id");
                format!("RequestInfo serving_data={}", r.serving_data)
            }
            other => format!("{other:?}").replace(sent_id, "<id>"),
        })
        .collect();
    let keys = status
        .metadata()
        .keys()
        .map(|k| match k {
            tonic::metadata::KeyRef::Ascii(k) => k.as_str().to_string(),
            tonic::metadata::KeyRef::Binary(k) => k.as_str().to_string(),
        })
        .collect();
    (status.code(), status.message().replace(sent_id, "<id>"), details, keys)
}

/// Asserts two refusals are indistinguishable but for the ids they name.
#[track_caller]
pub fn assert_same_answer(foreign: &Status, foreign_id: &str, missing: &Status, missing_id: &str) {
    assert_eq!(
        normalized(foreign, foreign_id),
        normalized(missing, missing_id),
        "a foreign id must answer exactly like a missing one:\nforeign: {foreign:?}\nmissing: {missing:?}"
    );
}

/// A unique e-mail address.
pub fn unique_email(tag: &str) -> String {
    format!("{tag}.{}@example.com", Uuid::new_v4().simple())
}

/// A person to create.
pub fn person(email: &str, name: &str, role: upb::Role) -> upb::User {
    upb::User {
        email: email.to_string(),
        display_name: name.to_string(),
        role: role as i32,
        ..Default::default()
    }
}

/// CreateUser as `token`.
pub async fn try_create_user(
    app: &TestApp,
    token: &str,
    user: upb::User,
    request_id: &str,
) -> Result<upb::User, Status> {
    users(app)
        .create_user(authed(
            token,
            CreateUserRequest {
                user: Some(user),
                request_id: request_id.to_string(),
            },
        ))
        .await
        .map(|r| r.into_inner().user.expect("user in create response"))
}

/// CreateUser as `token`, which must succeed.
pub async fn create_user(app: &TestApp, token: &str, email: &str, role: upb::Role) -> upb::User {
    try_create_user(app, token, person(email, "Created", role), "")
        .await
        .expect("create user")
}

/// GetUser as `token`.
pub async fn try_get_user(app: &TestApp, token: &str, id: &str) -> Result<upb::User, Status> {
    users(app)
        .get_user(authed(token, GetUserRequest { id: id.to_string() }))
        .await
        .map(|r| r.into_inner().user.expect("user in get response"))
}

/// GetUser as `token`, which must succeed.
pub async fn get_user(app: &TestApp, token: &str, id: &str) -> upb::User {
    try_get_user(app, token, id).await.expect("get user")
}

/// UpdateUser as `token`.
pub async fn try_update_user(app: &TestApp, token: &str, user: upb::User, paths: &[&str]) -> Result<upb::User, Status> {
    users(app)
        .update_user(authed(
            token,
            UpdateUserRequest {
                user: Some(user),
                update_mask: mask(paths),
            },
        ))
        .await
        .map(|r| r.into_inner().user.expect("user in update response"))
}

/// GetCurrentUser with an arbitrary request (credential already attached).
pub async fn current(app: &TestApp, req: Request<GetCurrentUserRequest>) -> Result<GetCurrentUserResponse, Status> {
    users(app).get_current_user(req).await.map(|r| r.into_inner())
}

/// GetCurrentUser with a bearer credential (JWT or API key).
pub async fn whoami(app: &TestApp, bearer: &str) -> Result<GetCurrentUserResponse, Status> {
    current(app, authed(bearer, GetCurrentUserRequest {})).await
}

/// An API key to create.
pub fn new_key(name: &str, scopes: &[&str]) -> upb::ApiKey {
    upb::ApiKey {
        display_name: name.to_string(),
        scopes: scopes.iter().map(|s| (*s).to_string()).collect(),
        ..Default::default()
    }
}

/// CreateApiKey as `token`.
pub async fn try_create_key(app: &TestApp, token: &str, key: upb::ApiKey) -> Result<CreateApiKeyResponse, Status> {
    users(app)
        .create_api_key(authed(token, CreateApiKeyRequest { api_key: Some(key) }))
        .await
        .map(|r| r.into_inner())
}

/// CreateApiKey as `token` with `scopes`, which must succeed.
pub async fn create_key(app: &TestApp, token: &str, name: &str, scopes: &[&str]) -> CreateApiKeyResponse {
    try_create_key(app, token, new_key(name, scopes))
        .await
        .expect("create API key")
}

/// Length of a key's public prefix: `dsk_`, tenant id and key id in hex.
pub const KEY_PREFIX_LEN: usize = 4 + 32 + 32;

/// The secret part of a full key (it may itself contain `_`).
pub fn secret_of(key: &str) -> &str {
    assert_eq!(key.len(), KEY_PREFIX_LEN + 1 + 43, "unexpected key length: {key:?}");
    assert_eq!(&key[KEY_PREFIX_LEN..=KEY_PREFIX_LEN], "_");
    &key[KEY_PREFIX_LEN + 1..]
}

/// The public prefix of a full key.
pub fn prefix_of(key: &str) -> &str {
    &key[..KEY_PREFIX_LEN]
}

/// Lower-case hex.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

// ---------------------------------------------------------------------------
// Shared by the Users service tests (users_crud, users_list, …)
// ---------------------------------------------------------------------------

pub fn random_id() -> String {
    Uuid::now_v7().to_string()
}

pub async fn list_page(app: &TestApp, token: &str, req: ListUsersRequest) -> Result<upb::ListUsersResponse, Status> {
    users(app).list_users(authed(token, req)).await.map(|r| r.into_inner())
}

/// Every user matching `req`'s filters, following page tokens.
pub async fn list_all(app: &TestApp, token: &str, req: ListUsersRequest) -> Vec<upb::User> {
    let mut out = Vec::new();
    let mut page_token = String::new();
    for _ in 0..100 {
        let page = list_page(
            app,
            token,
            ListUsersRequest {
                page_token: page_token.clone(),
                ..req.clone()
            },
        )
        .await
        .expect("list users");
        out.extend(page.users);
        if page.next_page_token.is_empty() {
            return out;
        }
        page_token = page.next_page_token;
    }
    panic!("more than 100 pages");
}

pub fn ids(users: &[upb::User]) -> Vec<String> {
    users.iter().map(|u| u.id.clone()).collect()
}

pub async fn deactivate(app: &TestApp, token: &str, id: &str, etag: &str) -> Result<upb::User, Status> {
    users(app)
        .deactivate_user(authed(
            token,
            DeactivateUserRequest {
                id: id.to_string(),
                etag: etag.to_string(),
            },
        ))
        .await
        .map(|r| r.into_inner().user.expect("user in deactivate response"))
}

pub async fn reactivate(app: &TestApp, token: &str, id: &str, etag: &str) -> Result<upb::User, Status> {
    users(app)
        .reactivate_user(authed(
            token,
            ReactivateUserRequest {
                id: id.to_string(),
                etag: etag.to_string(),
            },
        ))
        .await
        .map(|r| r.into_inner().user.expect("user in reactivate response"))
}

/// An update of `id` carrying every field at a hostile value, so a mask
/// that is not honoured shows.
pub fn hostile_update(id: &str) -> upb::User {
    upb::User {
        id: id.to_string(),
        email: unique_email("hostile"),
        display_name: "Hostile".into(),
        role: upb::Role::Admin as i32,
        active: false,
        kind: upb::UserKind::ServiceAccount as i32,
        ..Default::default()
    }
}

/// Tenant A (admin and an agent it created), tenant B (an admin: the most
/// privileged caller, so nothing B gets is a permission refusal).
pub async fn two_tenants(app: &TestApp) -> (Caller, upb::User, Caller) {
    let a = app.caller(Role::Admin).await;
    let victim = create_user(app, &a.token, &unique_email("victim"), upb::Role::Agent).await;
    let b = app.caller(Role::Admin).await;
    (a, victim, b)
}

/// Changes a user's role through `channel`, as `admin_token`: GetUser, then
/// UpdateUser with the mask `role`.
pub async fn change_role(channel: &Channel, admin_token: &str, user_id: &str, role: upb::Role) {
    let mut users = UsersServiceClient::new(channel.clone());
    let user = users
        .get_user(authed(admin_token, GetUserRequest { id: user_id.into() }))
        .await
        .expect("get")
        .into_inner()
        .user
        .expect("user");
    users
        .update_user(authed(
            admin_token,
            UpdateUserRequest {
                user: Some(upb::User {
                    role: role as i32,
                    ..user
                }),
                update_mask: mask(&["role"]),
            },
        ))
        .await
        .expect("change role");
}

/// Deactivates a user through `channel`, as `admin_token`.
pub async fn deactivate_via(channel: &Channel, admin_token: &str, user_id: &str) {
    UsersServiceClient::new(channel.clone())
        .deactivate_user(authed(
            admin_token,
            DeactivateUserRequest {
                id: user_id.into(),
                etag: String::new(),
            },
        ))
        .await
        .expect("deactivate");
}
