//! API keys: sent as a bearer token or `x-api-key`, confined to their scopes
//! and tenant.

use deskd::{
    proto::{
        tickets::v1::ListTicketsRequest,
        users::v1::{
            self as upb, CreateApiKeyRequest, GetCurrentUserRequest, ListApiKeysRequest, ListUsersRequest,
            RevokeApiKeyRequest,
        },
    },
    tenancy::UserId,
    users::model::Role,
};
use tonic::Code;
use uuid::Uuid;

use crate::{apikeys_support::*, helpers::*, users_support::*};

// ---------------------------------------------------------------------------
// Using a key
// ---------------------------------------------------------------------------

#[tokio::test]
async fn a_key_works_as_a_bearer_token() {
    let app = spawn_app().await;
    let admin = app.caller(Role::Admin).await;
    let created = create_key(&app, &admin.token, "bearer", &["tickets:read"]).await;
    let me = whoami(&app, &created.key).await.expect("bearer key");
    assert_eq!(me.api_key_id, id_of(&created));
    list_tickets_with(&app, &created.key).await.expect("bearer key");
}

#[tokio::test]
async fn a_key_works_in_x_api_key() {
    let app = spawn_app().await;
    let admin = app.caller(Role::Admin).await;
    let created = create_key(&app, &admin.token, "header", &["tickets:read"]).await;
    let me = whoami_with(&app, with_api_key(&created.key, GetCurrentUserRequest {}))
        .await
        .expect("x-api-key");
    assert_eq!(me.api_key_id, id_of(&created));
    app.tickets()
        .list_tickets(with_api_key(&created.key, ListTicketsRequest::default()))
        .await
        .expect("x-api-key");
}

#[tokio::test]
async fn both_credentials_at_once_are_ambiguous() {
    let app = spawn_app().await;
    let admin = app.caller(Role::Admin).await;
    let created = create_key(&app, &admin.token, "twice", &["tickets:read"]).await;
    for bearer in [&created.key, &admin.token] {
        let mut req = authed(bearer, GetCurrentUserRequest {});
        req.metadata_mut()
            .insert("x-api-key", created.key.parse().expect("metadata value"));
        let err = whoami_with(&app, req).await.expect_err("two credentials");
        assert_error(&err, Code::Unauthenticated, "CREDENTIAL_AMBIGUOUS");
    }
}

#[tokio::test]
async fn get_current_user_with_a_key_is_the_service_account() {
    let app = spawn_app().await;
    let admin = app.caller(Role::Admin).await;
    let created = create_key(&app, &admin.token, "reporter bot", &["stats:read", "users:read"]).await;
    let meta = created.api_key.clone().expect("api key");
    let me = whoami(&app, &created.key).await.expect("whoami");
    let user = me.user.expect("user");
    assert_eq!(user.id, meta.service_account_id);
    assert_eq!(user.kind, upb::UserKind::ServiceAccount as i32);
    assert_eq!(user.role, upb::Role::Unspecified as i32);
    assert_eq!(user.email, "");
    assert_eq!(user.display_name, "reporter bot");
    assert!(user.active);
    assert_eq!(me.tenant_id, admin.tenant.to_string());
    assert_eq!(me.api_key_id, meta.id);
    assert_eq!(me.permissions.len(), 2, "{:?}", me.permissions);
    assert_eq!(set_of(&me.permissions), strings(&["stats:read", "users:read"]));
    // The same user as the admin sees it.
    assert_eq!(user, get_user(&app, &admin.token, &meta.service_account_id).await);
}

#[tokio::test]
async fn scopes_are_enforced() {
    let app = spawn_app().await;
    let admin = app.caller(Role::Admin).await;
    let reader = create_key(&app, &admin.token, "reader", &["tickets:read"]).await;
    list_tickets_with(&app, &reader.key)
        .await
        .expect("tickets:read may list");
    let err = create_ticket_with(&app, &reader.key, "denied")
        .await
        .expect_err("tickets:read may not create");
    assert_permission_missing(&err, "tickets:write");
    let err = users(&app)
        .list_users(authed(&reader.key, ListUsersRequest::default()))
        .await
        .expect_err("no users:read");
    assert_permission_missing(&err, "users:read");
    assert!(list_tickets_with(&app, &admin.token).await.expect("list").is_empty());
}

#[tokio::test]
async fn apikeys_manage_is_not_a_grantable_scope() {
    let app = spawn_app().await;
    let admin = app.caller(Role::Admin).await;
    let err = try_create_key(&app, &admin.token, new_key("manager", &["apikeys:manage"]))
        .await
        .expect_err("not grantable");
    assert_only_violation(&err, "api_key.scopes[0]", "UNKNOWN_SCOPE");
    let err = try_create_key(
        &app,
        &admin.token,
        new_key("manager", &["tickets:read", "apikeys:manage", "tickets:*"]),
    )
    .await
    .expect_err("not grantable");
    assert_field_violation(&err, "api_key.scopes[1]", "UNKNOWN_SCOPE");
    assert_field_violation(&err, "api_key.scopes[2]", "UNKNOWN_SCOPE");
    assert!(list_keys(&app, &admin.token, true).await.is_empty(), "nothing issued");
}

#[tokio::test]
async fn no_key_may_manage_keys() {
    let app = spawn_app().await;
    let admin = app.caller(Role::Admin).await;
    let all = create_key(
        &app,
        &admin.token,
        "everything",
        &[
            "tickets:read",
            "tickets:write",
            "users:read",
            "users:write",
            "stats:read",
        ],
    )
    .await;
    let mut client = users(&app);
    let err = client
        .create_api_key(authed(
            &all.key,
            CreateApiKeyRequest {
                api_key: Some(new_key("child", &["tickets:read"])),
            },
        ))
        .await
        .expect_err("create");
    assert_permission_missing(&err, "apikeys:manage");
    let err = client
        .list_api_keys(authed(&all.key, ListApiKeysRequest::default()))
        .await
        .expect_err("list");
    assert_permission_missing(&err, "apikeys:manage");
    let err = client
        .revoke_api_key(authed(&all.key, RevokeApiKeyRequest { id: id_of(&all) }))
        .await
        .expect_err("revoke");
    assert_permission_missing(&err, "apikeys:manage");
    // And through x-api-key the same.
    let err = client
        .list_api_keys(with_api_key(&all.key, ListApiKeysRequest::default()))
        .await
        .expect_err("list");
    assert_permission_missing(&err, "apikeys:manage");
    assert_eq!(list_keys(&app, &admin.token, true).await.len(), 1);
    whoami(&app, &all.key).await.expect("still valid");
}

#[tokio::test]
async fn empty_scopes_are_required() {
    let app = spawn_app().await;
    let admin = app.caller(Role::Admin).await;
    let err = try_create_key(&app, &admin.token, new_key("nothing", &[]))
        .await
        .expect_err("no scopes");
    assert_only_violation(&err, "api_key.scopes", "REQUIRED");
    let err = try_create_key(&app, &admin.token, new_key("  ", &["tickets:read"]))
        .await
        .expect_err("no name");
    assert_only_violation(&err, "api_key.display_name", "REQUIRED");
    let err = users(&app)
        .create_api_key(authed(&admin.token, CreateApiKeyRequest { api_key: None }))
        .await
        .expect_err("no key");
    assert_only_violation(&err, "api_key", "REQUIRED");
}

#[tokio::test]
async fn expire_time_in_the_past_is_refused() {
    let app = spawn_app().await;
    let admin = app.caller(Role::Admin).await;
    for offset in [-1_000, -86_400_000] {
        let err = try_create_key(
            &app,
            &admin.token,
            upb::ApiKey {
                expire_time: Some(timestamp_in(offset)),
                ..new_key("stale", &["tickets:read"])
            },
        )
        .await
        .expect_err("past expiry");
        assert_only_violation(&err, "api_key.expire_time", "IN_THE_PAST");
    }
    assert!(list_keys(&app, &admin.token, true).await.is_empty());
    // A future one is accepted and returned.
    let future = timestamp_in(3_600_000);
    let ok = try_create_key(
        &app,
        &admin.token,
        upb::ApiKey {
            expire_time: Some(future),
            ..new_key("fresh", &["tickets:read"])
        },
    )
    .await
    .expect("future expiry");
    let got = ok.api_key.expect("key").expire_time.expect("expire_time");
    assert_eq!(got.seconds, future.seconds);
}

#[tokio::test]
async fn a_second_key_for_an_existing_service_account_works() {
    let app = spawn_app().await;
    let admin = app.caller(Role::Admin).await;
    let first = create_key(&app, &admin.token, "robot", &["tickets:read"]).await;
    let sa = sa_of(&first);
    let second = try_create_key(
        &app,
        &admin.token,
        upb::ApiKey {
            service_account_id: sa.clone(),
            ..new_key("robot, rotated", &["users:read"])
        },
    )
    .await
    .expect("second key");
    assert_eq!(sa_of(&second), sa);
    assert_ne!(id_of(&second), id_of(&first));
    assert_ne!(second.key, first.key);

    let me1 = whoami(&app, &first.key).await.expect("first key");
    let me2 = whoami(&app, &second.key).await.expect("second key");
    assert_eq!(me1.user.as_ref().expect("user").id, sa);
    assert_eq!(me2.user.as_ref().expect("user").id, sa);
    assert_eq!(me1.api_key_id, id_of(&first));
    assert_eq!(me2.api_key_id, id_of(&second));
    assert_eq!(me1.permissions, vec!["tickets:read".to_string()]);
    assert_eq!(me2.permissions, vec!["users:read".to_string()]);
    // No second service account was made.
    let accounts = users(&app)
        .list_users(authed(
            &admin.token,
            ListUsersRequest {
                kind: upb::UserKind::ServiceAccount as i32,
                ..Default::default()
            },
        ))
        .await
        .expect("list")
        .into_inner()
        .users;
    assert_eq!(accounts.len(), 1);
    assert_eq!(accounts[0].id, sa);
}

#[tokio::test]
async fn a_person_cannot_hold_api_keys() {
    let app = spawn_app().await;
    let admin = app.caller(Role::Admin).await;
    let agent = app.colleague(&admin, Role::Agent).await;
    for person_id in [admin.user.to_string(), agent.user.to_string()] {
        let err = try_create_key(
            &app,
            &admin.token,
            upb::ApiKey {
                service_account_id: person_id,
                ..new_key("for a person", &["tickets:read"])
            },
        )
        .await
        .expect_err("a person");
        assert_only_violation(&err, "api_key.service_account_id", "NOT_A_SERVICE_ACCOUNT");
    }
    // Unknown ids, and another tenant's service account, are not found alike.
    let other = app.caller(Role::Admin).await;
    let foreign_sa = sa_of(&create_key(&app, &other.token, "theirs", &["tickets:read"]).await);
    for id in [Uuid::now_v7().to_string(), foreign_sa] {
        let err = try_create_key(
            &app,
            &admin.token,
            upb::ApiKey {
                service_account_id: id,
                ..new_key("elsewhere", &["tickets:read"])
            },
        )
        .await
        .expect_err("unknown service account");
        assert_only_violation(&err, "api_key.service_account_id", "SERVICE_ACCOUNT_NOT_FOUND");
    }
    let err = try_create_key(
        &app,
        &admin.token,
        upb::ApiKey {
            service_account_id: "nope".into(),
            ..new_key("malformed", &["tickets:read"])
        },
    )
    .await
    .expect_err("malformed id");
    assert_only_violation(&err, "api_key.service_account_id", "INVALID_ID");
    assert!(list_keys(&app, &admin.token, true).await.is_empty());
}

#[tokio::test]
async fn a_service_account_cannot_use_a_jwt() {
    let app = spawn_app().await;
    let admin = app.caller(Role::Admin).await;
    let created = create_key(&app, &admin.token, "robot", &["tickets:read"]).await;
    let sa = UserId(Uuid::parse_str(&sa_of(&created)).expect("uuid"));
    let token = app.token(admin.tenant, sa);
    let err = whoami(&app, &token).await.expect_err("JWT for a service account");
    assert_error(&err, Code::Unauthenticated, "CREDENTIAL_KIND_MISMATCH");
}
