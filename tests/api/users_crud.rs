//! The Users service, GetUser, CreateUser and UpdateUser: success,
//! validation and not-found paths, update masks and etags, and idempotent
//! creates.

use deskd::{
    proto::users::v1::{self as upb, ListUsersRequest, UpdateUserRequest},
    users::model::Role,
};
use tonic::Code;
use tonic_types::StatusExt as _;
use uuid::Uuid;

use crate::{helpers::*, users_support::*};

// ---------------------------------------------------------------------------
// GetUser
// ---------------------------------------------------------------------------

#[tokio::test]
async fn get_user_returns_the_user() {
    let app = spawn_app().await;
    let admin = app.caller(Role::Admin).await;
    let viewer = app.colleague(&admin, Role::Viewer).await;
    let created = try_create_user(
        &app,
        &admin.token,
        person(&unique_email("ann"), "Ann Lee", upb::Role::Agent),
        "",
    )
    .await
    .expect("create");
    // Any reader (users:read) sees the same user.
    for token in [&admin.token, &viewer.token] {
        let got = get_user(&app, token, &created.id).await;
        assert_eq!(got, created);
    }
    assert_eq!(created.display_name, "Ann Lee");
    assert_eq!(created.role, upb::Role::Agent as i32);
    assert_eq!(created.kind, upb::UserKind::Person as i32);
    assert!(created.active);
    assert!(!created.etag.is_empty());
    assert!(created.create_time.is_some() && created.update_time.is_some());
}

#[tokio::test]
async fn get_user_with_a_random_id_is_not_found() {
    let app = spawn_app().await;
    let admin = app.caller(Role::Admin).await;
    let id = random_id();
    let err = try_get_user(&app, &admin.token, &id).await.expect_err("no such user");
    assert_not_found(&err, USER_TYPE, &id);
}

#[tokio::test]
async fn get_user_with_a_malformed_id_is_invalid_argument() {
    let app = spawn_app().await;
    let admin = app.caller(Role::Admin).await;
    let err = try_get_user(&app, &admin.token, "not-a-uuid")
        .await
        .expect_err("malformed id");
    assert_only_violation(&err, "id", "INVALID_ID");
    let err = try_get_user(&app, &admin.token, "").await.expect_err("empty id");
    assert_only_violation(&err, "id", "REQUIRED");
}

// ---------------------------------------------------------------------------
// CreateUser
// ---------------------------------------------------------------------------

#[tokio::test]
async fn create_user_normalises_the_email() {
    let app = spawn_app().await;
    let admin = app.caller(Role::Admin).await;
    let created = try_create_user(
        &app,
        &admin.token,
        upb::User {
            // Output-only fields and `active` are ignored on create.
            id: random_id(),
            active: false,
            kind: upb::UserKind::ServiceAccount as i32,
            etag: "bogus".into(),
            ..person("  Mixed.Case@Example.COM \t", "  Mixed Case  ", upb::Role::Viewer)
        },
        "",
    )
    .await
    .expect("create");
    assert_eq!(created.email, "mixed.case@example.com");
    assert_eq!(created.display_name, "Mixed Case");
    assert_eq!(created.role, upb::Role::Viewer as i32);
    assert_eq!(created.kind, upb::UserKind::Person as i32);
    assert!(created.active);
    assert_ne!(created.etag, "bogus");
    Uuid::parse_str(&created.id).expect("a UUID id");
    assert_eq!(get_user(&app, &admin.token, &created.id).await, created);
}

#[tokio::test]
async fn create_user_with_a_taken_email_in_any_case_is_already_exists() {
    let app = spawn_app().await;
    let admin = app.caller(Role::Admin).await;
    create_user(&app, &admin.token, "taken@example.com", upb::Role::Agent).await;
    for email in ["taken@example.com", "TAKEN@Example.Com", "  Taken@example.com "] {
        let err = try_create_user(&app, &admin.token, person(email, "Dup", upb::Role::Viewer), "")
            .await
            .expect_err("duplicate e-mail");
        assert_error(&err, Code::AlreadyExists, "ALREADY_EXISTS");
        let details = err.get_error_details();
        assert_eq!(details.resource_info().expect("ResourceInfo").resource_type, USER_TYPE);
    }
    let all = list_all(
        &app,
        &admin.token,
        ListUsersRequest {
            email_prefix: "taken@".into(),
            ..Default::default()
        },
    )
    .await;
    assert_eq!(all.len(), 1);
    // The same address in another tenant is fine.
    let other = app.caller(Role::Admin).await;
    create_user(&app, &other.token, "taken@example.com", upb::Role::Agent).await;
}

#[tokio::test]
async fn create_user_without_an_email_is_required() {
    let app = spawn_app().await;
    let admin = app.caller(Role::Admin).await;
    for email in ["", "   "] {
        let err = try_create_user(&app, &admin.token, person(email, "No mail", upb::Role::Agent), "")
            .await
            .expect_err("no e-mail");
        assert_only_violation(&err, "user.email", "REQUIRED");
    }
    let err = users(&app)
        .create_user(authed(
            &admin.token,
            upb::CreateUserRequest {
                user: None,
                request_id: String::new(),
            },
        ))
        .await
        .expect_err("no user");
    assert_only_violation(&err, "user", "REQUIRED");
}

#[tokio::test]
async fn create_user_with_an_invalid_email_is_invalid_email() {
    let app = spawn_app().await;
    let admin = app.caller(Role::Admin).await;
    for email in [
        "ann",
        "@example.com",
        "ann@",
        "ann@localhost",
        "a nn@example.com",
        "a@b@example.com",
        "ann@.example.com",
        "ann@example.com.",
    ] {
        let err = try_create_user(&app, &admin.token, person(email, "Bad", upb::Role::Agent), "")
            .await
            .expect_err("invalid e-mail");
        assert_only_violation(&err, "user.email", "INVALID_EMAIL");
    }
}

#[tokio::test]
async fn create_user_without_a_role_is_required() {
    let app = spawn_app().await;
    let admin = app.caller(Role::Admin).await;
    let err = try_create_user(
        &app,
        &admin.token,
        person(&unique_email("norole"), "No role", upb::Role::Unspecified),
        "",
    )
    .await
    .expect_err("no role");
    assert_only_violation(&err, "user.role", "REQUIRED");
    // Both problems at once are both reported.
    let err = try_create_user(&app, &admin.token, person("", "", upb::Role::Unspecified), "")
        .await
        .expect_err("nothing");
    assert_field_violation(&err, "user.email", "REQUIRED");
    assert_field_violation(&err, "user.role", "REQUIRED");
}

#[tokio::test]
async fn concurrent_creates_with_one_request_id_create_one_user() {
    let app = spawn_app().await;
    let admin = app.caller(Role::Admin).await;
    // Warm the principal cache so the creates race each other, not the lookup.
    whoami(&app, &admin.token).await.expect("whoami");
    let request_id = Uuid::new_v4().to_string();
    let email = unique_email("once");
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..20 {
        let mut client = users(&app);
        let req = authed(
            &admin.token,
            upb::CreateUserRequest {
                user: Some(person(&email, "Exactly Once", upb::Role::Agent)),
                request_id: request_id.clone(),
            },
        );
        tasks.spawn(async move { client.create_user(req).await });
    }
    let mut results = Vec::new();
    while let Some(res) = tasks.join_next().await {
        let user = res
            .expect("task")
            .expect("every concurrent create succeeds")
            .into_inner()
            .user
            .expect("user");
        results.push(user);
    }
    assert_eq!(results.len(), 20);
    for u in &results {
        assert_eq!(u, &results[0], "identical user");
    }
    let listed = list_all(
        &app,
        &admin.token,
        ListUsersRequest {
            email_prefix: email.clone(),
            ..Default::default()
        },
    )
    .await;
    assert_eq!(listed, vec![results[0].clone()], "exactly one user");
    // A later retry returns the identical user and creates nothing.
    let retry = try_create_user(
        &app,
        &admin.token,
        person(&email, "Exactly Once", upb::Role::Agent),
        &request_id,
    )
    .await
    .expect("retry");
    assert_eq!(retry, results[0]);
}

#[tokio::test]
async fn create_user_request_id_reused_with_other_input_is_refused() {
    let app = spawn_app().await;
    let admin = app.caller(Role::Admin).await;
    let request_id = Uuid::new_v4().to_string();
    let email = unique_email("first");
    let first = try_create_user(
        &app,
        &admin.token,
        person(&email, "First", upb::Role::Agent),
        &request_id,
    )
    .await
    .expect("first");
    let other_email = unique_email("second");
    for other in [
        person(&other_email, "First", upb::Role::Agent),
        person(&email, "Renamed", upb::Role::Agent),
        person(&email, "First", upb::Role::Viewer),
    ] {
        let err = try_create_user(&app, &admin.token, other, &request_id)
            .await
            .expect_err("reused request_id");
        assert_only_violation(&err, "request_id", "REQUEST_ID_REUSED");
    }
    let all = list_all(&app, &admin.token, ListUsersRequest::default()).await;
    assert_eq!(ids(&all), vec![admin.user.to_string(), first.id]);
    // A request_id that is not a UUID is refused.
    let err = try_create_user(
        &app,
        &admin.token,
        person(&unique_email("x"), "X", upb::Role::Agent),
        "not-a-uuid",
    )
    .await
    .expect_err("bad request_id");
    assert_only_violation(&err, "request_id", "INVALID_ID");
}

// ---------------------------------------------------------------------------
// UpdateUser
// ---------------------------------------------------------------------------

#[tokio::test]
async fn update_user_changes_only_masked_fields() {
    let app = spawn_app().await;
    let admin = app.caller(Role::Admin).await;
    let before = try_create_user(
        &app,
        &admin.token,
        person(&unique_email("masked"), "Before", upb::Role::Agent),
        "",
    )
    .await
    .expect("create");
    let updated = try_update_user(
        &app,
        &admin.token,
        upb::User {
            display_name: "  After  ".into(),
            etag: before.etag.clone(),
            ..hostile_update(&before.id)
        },
        &["display_name"],
    )
    .await
    .expect("update");
    assert_eq!(updated.display_name, "After");
    assert_eq!(updated.email, before.email);
    assert_eq!(updated.role, before.role);
    assert_eq!(updated.active, before.active);
    assert_eq!(updated.kind, before.kind);
    assert_eq!(updated.create_time, before.create_time);
    assert_ne!(updated.etag, before.etag);
    assert_eq!(get_user(&app, &admin.token, &before.id).await, updated);

    // Two fields at once change just those two.
    let new_email = unique_email("moved");
    let both = try_update_user(
        &app,
        &admin.token,
        upb::User {
            email: new_email.to_uppercase(),
            role: upb::Role::Viewer as i32,
            ..hostile_update(&before.id)
        },
        &["email", "role"],
    )
    .await
    .expect("update two");
    assert_eq!(both.email, new_email);
    assert_eq!(both.role, upb::Role::Viewer as i32);
    assert_eq!(both.display_name, "After");
    assert!(both.active);
    assert_eq!(get_user(&app, &admin.token, &before.id).await, both);
}

#[tokio::test]
async fn update_user_with_a_stale_etag_is_aborted() {
    let app = spawn_app().await;
    let admin = app.caller(Role::Admin).await;
    let v1 = create_user(&app, &admin.token, &unique_email("etag"), upb::Role::Agent).await;
    let v2 = try_update_user(
        &app,
        &admin.token,
        upb::User {
            id: v1.id.clone(),
            display_name: "Second".into(),
            etag: v1.etag.clone(),
            ..Default::default()
        },
        &["display_name"],
    )
    .await
    .expect("update with the current etag");
    let err = try_update_user(
        &app,
        &admin.token,
        upb::User {
            id: v1.id.clone(),
            display_name: "Lost update".into(),
            etag: v1.etag.clone(),
            ..Default::default()
        },
        &["display_name"],
    )
    .await
    .expect_err("stale etag");
    assert_error(&err, Code::Aborted, "ETAG_MISMATCH");
    assert_eq!(get_user(&app, &admin.token, &v1.id).await, v2);
    // Deactivation honours the etag too.
    let err = deactivate(&app, &admin.token, &v1.id, &v1.etag)
        .await
        .expect_err("stale etag");
    assert_error(&err, Code::Aborted, "ETAG_MISMATCH");
    assert!(get_user(&app, &admin.token, &v1.id).await.active);
}

#[tokio::test]
async fn update_user_without_a_mask_is_required() {
    let app = spawn_app().await;
    let admin = app.caller(Role::Admin).await;
    let target = create_user(&app, &admin.token, &unique_email("nomask"), upb::Role::Agent).await;
    for update_mask in [None, mask(&[])] {
        let err = users(&app)
            .update_user(authed(
                &admin.token,
                UpdateUserRequest {
                    user: Some(hostile_update(&target.id)),
                    update_mask,
                },
            ))
            .await
            .expect_err("no mask");
        assert_only_violation(&err, "update_mask", "REQUIRED");
    }
    assert_eq!(get_user(&app, &admin.token, &target.id).await, target);
}

#[tokio::test]
async fn update_user_with_an_unknown_mask_path_is_unknown_field() {
    let app = spawn_app().await;
    let admin = app.caller(Role::Admin).await;
    let target = create_user(&app, &admin.token, &unique_email("unknown"), upb::Role::Agent).await;
    let err = try_update_user(&app, &admin.token, hostile_update(&target.id), &["nickname"])
        .await
        .expect_err("unknown path");
    assert_only_violation(&err, "update_mask.paths[0]", "UNKNOWN_FIELD");
    let err = try_update_user(
        &app,
        &admin.token,
        hostile_update(&target.id),
        &["display_name", "password"],
    )
    .await
    .expect_err("unknown second path");
    assert_only_violation(&err, "update_mask.paths[1]", "UNKNOWN_FIELD");
    assert_eq!(get_user(&app, &admin.token, &target.id).await, target);
}

#[tokio::test]
async fn update_user_output_only_paths_are_not_mutable() {
    let app = spawn_app().await;
    let admin = app.caller(Role::Admin).await;
    let target = create_user(&app, &admin.token, &unique_email("outonly"), upb::Role::Agent).await;
    for path in ["kind", "create_time", "update_time", "id", "etag"] {
        let err = try_update_user(&app, &admin.token, hostile_update(&target.id), &[path])
            .await
            .expect_err("output-only path");
        assert_only_violation(&err, "update_mask.paths[0]", "FIELD_NOT_MUTABLE");
    }
    assert_eq!(get_user(&app, &admin.token, &target.id).await, target);
}

#[tokio::test]
async fn update_user_email_to_a_taken_email_is_already_exists() {
    let app = spawn_app().await;
    let admin = app.caller(Role::Admin).await;
    create_user(&app, &admin.token, "holder@example.com", upb::Role::Agent).await;
    let mover = create_user(&app, &admin.token, &unique_email("mover"), upb::Role::Agent).await;
    for email in ["holder@example.com", "HOLDER@example.com"] {
        let err = try_update_user(
            &app,
            &admin.token,
            upb::User {
                id: mover.id.clone(),
                email: email.into(),
                ..Default::default()
            },
            &["email"],
        )
        .await
        .expect_err("taken e-mail");
        assert_error(&err, Code::AlreadyExists, "ALREADY_EXISTS");
    }
    assert_eq!(get_user(&app, &admin.token, &mover.id).await, mover);
    // An invalid address is INVALID_EMAIL on the user's field.
    let err = try_update_user(
        &app,
        &admin.token,
        upb::User {
            id: mover.id.clone(),
            email: "nope".into(),
            ..Default::default()
        },
        &["email"],
    )
    .await
    .expect_err("invalid e-mail");
    assert_only_violation(&err, "user.email", "INVALID_EMAIL");
}

#[tokio::test]
async fn update_user_with_a_random_or_malformed_id_fails() {
    let app = spawn_app().await;
    let admin = app.caller(Role::Admin).await;
    let id = random_id();
    let err = try_update_user(
        &app,
        &admin.token,
        upb::User {
            id: id.clone(),
            display_name: "x".into(),
            ..Default::default()
        },
        &["display_name"],
    )
    .await
    .expect_err("no such user");
    assert_not_found(&err, USER_TYPE, &id);
    let err = try_update_user(
        &app,
        &admin.token,
        upb::User {
            id: "nope".into(),
            display_name: "x".into(),
            ..Default::default()
        },
        &["display_name"],
    )
    .await
    .expect_err("malformed id");
    assert_only_violation(&err, "user.id", "INVALID_ID");
}
