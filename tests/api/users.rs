//! The Users service: every RPC's success, validation and not-found paths,
//! keyset pagination and filters, update masks and etags, idempotent
//! creates, self-service limits, immediate deactivation, and tenant
//! isolation of user and key ids (BOLA).

use std::collections::BTreeSet;

use deskd::{
    auth::Permissions,
    proto::{
        tickets::v1::{self as tpb, GetTicketRequest, ListTicketsRequest},
        users::v1::{
            self as upb, DeactivateUserRequest, GetCurrentUserResponse, ListApiKeysRequest, ListUsersRequest,
            ReactivateUserRequest, RevokeApiKeyRequest, UpdateUserRequest,
        },
    },
    users::model::Role,
};
use tonic::{Code, Status};
use tonic_types::StatusExt as _;
use uuid::Uuid;

use crate::{helpers::*, users_support::*};

// ---------------------------------------------------------------------------
// Private helpers
// ---------------------------------------------------------------------------

fn random_id() -> String {
    Uuid::now_v7().to_string()
}

async fn list_page(app: &TestApp, token: &str, req: ListUsersRequest) -> Result<upb::ListUsersResponse, Status> {
    users(app).list_users(authed(token, req)).await.map(|r| r.into_inner())
}

/// Every user matching `req`'s filters, following page tokens.
async fn list_all(app: &TestApp, token: &str, req: ListUsersRequest) -> Vec<upb::User> {
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

fn ids(users: &[upb::User]) -> Vec<String> {
    users.iter().map(|u| u.id.clone()).collect()
}

async fn deactivate(app: &TestApp, token: &str, id: &str, etag: &str) -> Result<upb::User, Status> {
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

async fn reactivate(app: &TestApp, token: &str, id: &str, etag: &str) -> Result<upb::User, Status> {
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

fn pb_role(r: Role) -> upb::Role {
    match r {
        Role::Admin => upb::Role::Admin,
        Role::Agent => upb::Role::Agent,
        Role::Viewer => upb::Role::Viewer,
    }
}

/// An update of `id` carrying every field at a hostile value, so a mask
/// that is not honoured shows.
fn hostile_update(id: &str) -> upb::User {
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

/// ListTickets as `token` (a cheap authenticated call).
async fn list_tickets(app: &TestApp, token: &str) -> Result<Vec<tpb::Ticket>, Status> {
    app.tickets()
        .list_tickets(authed(token, ListTicketsRequest::default()))
        .await
        .map(|r| r.into_inner().tickets)
}

fn permission_names(p: Permissions) -> Vec<String> {
    p.to_vec().iter().map(|p| p.as_str().to_string()).collect()
}

async fn assert_current_user_for_role(role: Role) {
    let app = spawn_app().await;
    let admin = app.caller(Role::Admin).await;
    let me = if role == Role::Admin {
        admin.clone()
    } else {
        app.colleague(&admin, role).await
    };
    let GetCurrentUserResponse {
        user,
        tenant_id,
        permissions,
        api_key_id,
    } = whoami(&app, &me.token).await.expect("GetCurrentUser");
    let user = user.expect("user");
    assert_eq!(user, get_user(&app, &admin.token, &me.user.to_string()).await);
    assert_eq!(user.id, me.user.to_string());
    assert_eq!(user.role, pb_role(role) as i32);
    assert_eq!(user.kind, upb::UserKind::Person as i32);
    assert!(user.active);
    assert_eq!(tenant_id, me.tenant.to_string());
    assert_eq!(api_key_id, "");
    let expected = permission_names(Permissions::for_role(role));
    let got: BTreeSet<&String> = permissions.iter().collect();
    assert_eq!(got.len(), permissions.len(), "duplicates in {permissions:?}");
    assert_eq!(
        got,
        expected.iter().collect::<BTreeSet<_>>(),
        "permissions of a {role:?}"
    );
}

/// Tenant A (admin and an agent it created), tenant B (an admin: the most
/// privileged caller, so nothing B gets is a permission refusal).
async fn two_tenants(app: &TestApp) -> (Caller, upb::User, Caller) {
    let a = app.caller(Role::Admin).await;
    let victim = create_user(app, &a.token, &unique_email("victim"), upb::Role::Agent).await;
    let b = app.caller(Role::Admin).await;
    (a, victim, b)
}

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
// ListUsers
// ---------------------------------------------------------------------------

#[tokio::test]
async fn list_users_pages_of_two_see_every_user_once_in_create_order() {
    let app = spawn_app().await;
    let admin = app.caller(Role::Admin).await;
    let mut expected = vec![admin.user.to_string()];
    for i in 0..6 {
        let role = [upb::Role::Agent, upb::Role::Viewer][i % 2];
        expected.push(
            create_user(&app, &admin.token, &unique_email(&format!("p{i}")), role)
                .await
                .id,
        );
    }
    let mut seen = Vec::new();
    let mut sizes = Vec::new();
    let mut token = String::new();
    loop {
        let page = list_page(
            &app,
            &admin.token,
            ListUsersRequest {
                page_size: 2,
                page_token: token.clone(),
                ..Default::default()
            },
        )
        .await
        .expect("page");
        sizes.push(page.users.len());
        seen.extend(ids(&page.users));
        if page.next_page_token.is_empty() {
            break;
        }
        assert!(sizes.len() < 10, "pagination does not end");
        token = page.next_page_token;
    }
    assert_eq!(sizes, vec![2, 2, 2, 1]);
    assert_eq!(seen, expected, "every user once, oldest first");
}

#[tokio::test]
async fn list_users_filters_by_role() {
    let app = spawn_app().await;
    let admin = app.caller(Role::Admin).await;
    let a1 = create_user(&app, &admin.token, &unique_email("a1"), upb::Role::Agent).await;
    let v1 = create_user(&app, &admin.token, &unique_email("v1"), upb::Role::Viewer).await;
    let a2 = create_user(&app, &admin.token, &unique_email("a2"), upb::Role::Agent).await;
    let by_role = |role: upb::Role| ListUsersRequest {
        role: role as i32,
        ..Default::default()
    };
    assert_eq!(
        ids(&list_all(&app, &admin.token, by_role(upb::Role::Agent)).await),
        vec![a1.id.clone(), a2.id.clone()]
    );
    assert_eq!(
        ids(&list_all(&app, &admin.token, by_role(upb::Role::Viewer)).await),
        vec![v1.id.clone()]
    );
    assert_eq!(
        ids(&list_all(&app, &admin.token, by_role(upb::Role::Admin)).await),
        vec![admin.user.to_string()]
    );
    assert_eq!(
        ids(&list_all(&app, &admin.token, by_role(upb::Role::Unspecified)).await),
        vec![admin.user.to_string(), a1.id, v1.id, a2.id]
    );
}

#[tokio::test]
async fn list_users_filters_by_active() {
    let app = spawn_app().await;
    let admin = app.caller(Role::Admin).await;
    let u1 = create_user(&app, &admin.token, &unique_email("u1"), upb::Role::Agent).await;
    let u2 = create_user(&app, &admin.token, &unique_email("u2"), upb::Role::Viewer).await;
    deactivate(&app, &admin.token, &u2.id, "").await.expect("deactivate");
    let u3 = create_user(&app, &admin.token, &unique_email("u3"), upb::Role::Agent).await;
    let by_active = |active: Option<bool>| ListUsersRequest {
        active,
        ..Default::default()
    };
    assert_eq!(
        ids(&list_all(&app, &admin.token, by_active(None)).await),
        vec![admin.user.to_string(), u1.id.clone(), u2.id.clone(), u3.id.clone()]
    );
    assert_eq!(
        ids(&list_all(&app, &admin.token, by_active(Some(true))).await),
        vec![admin.user.to_string(), u1.id, u3.id]
    );
    let inactive = list_all(&app, &admin.token, by_active(Some(false))).await;
    assert_eq!(ids(&inactive), vec![u2.id]);
    assert!(!inactive[0].active);
}

#[tokio::test]
async fn list_users_email_prefix_is_case_insensitive() {
    let app = spawn_app().await;
    let admin = app.caller(Role::Admin).await;
    let ann = create_user(&app, &admin.token, "Ann.Lee@Example.com", upb::Role::Agent).await;
    let anna = create_user(&app, &admin.token, "anna@example.com", upb::Role::Viewer).await;
    create_user(&app, &admin.token, "bob@example.com", upb::Role::Viewer).await;
    for prefix in ["ANN", "ann", "AnN", "  ann"] {
        let got = list_all(
            &app,
            &admin.token,
            ListUsersRequest {
                email_prefix: prefix.into(),
                ..Default::default()
            },
        )
        .await;
        assert_eq!(ids(&got), vec![ann.id.clone(), anna.id.clone()], "prefix {prefix:?}");
    }
    let got = list_all(
        &app,
        &admin.token,
        ListUsersRequest {
            email_prefix: "ANN.".into(),
            ..Default::default()
        },
    )
    .await;
    assert_eq!(ids(&got), vec![ann.id]);
    let none = list_all(
        &app,
        &admin.token,
        ListUsersRequest {
            email_prefix: "zz".into(),
            ..Default::default()
        },
    )
    .await;
    assert!(none.is_empty());
}

#[tokio::test]
async fn list_users_email_prefix_treats_underscore_and_percent_literally() {
    let app = spawn_app().await;
    let admin = app.caller(Role::Admin).await;
    let underscore = create_user(&app, &admin.token, "lit_x@example.com", upb::Role::Agent).await;
    let letter = create_user(&app, &admin.token, "litax@example.com", upb::Role::Agent).await;
    let percent = create_user(&app, &admin.token, "lit%y@example.com", upb::Role::Agent).await;
    let other = create_user(&app, &admin.token, "litby@example.com", upb::Role::Agent).await;
    let backslash = create_user(&app, &admin.token, "lit\\z@example.com", upb::Role::Agent).await;
    let by_prefix = |p: &str| ListUsersRequest {
        email_prefix: p.into(),
        ..Default::default()
    };
    assert_eq!(
        ids(&list_all(&app, &admin.token, by_prefix("lit_")).await),
        vec![underscore.id.clone()]
    );
    assert_eq!(
        ids(&list_all(&app, &admin.token, by_prefix("LIT%")).await),
        vec![percent.id.clone()]
    );
    assert_eq!(
        ids(&list_all(&app, &admin.token, by_prefix("lit\\")).await),
        vec![backslash.id.clone()]
    );
    assert!(list_all(&app, &admin.token, by_prefix("%")).await.is_empty());
    assert!(list_all(&app, &admin.token, by_prefix("_")).await.is_empty());
    assert_eq!(
        ids(&list_all(&app, &admin.token, by_prefix("Lit")).await),
        vec![underscore.id, letter.id, percent.id, other.id, backslash.id]
    );
}

#[tokio::test]
async fn list_users_filters_by_kind() {
    let app = spawn_app().await;
    let admin = app.caller(Role::Admin).await;
    let agent = create_user(&app, &admin.token, &unique_email("k"), upb::Role::Agent).await;
    let key = create_key(&app, &admin.token, "robot", &["tickets:read"]).await;
    let sa = key.api_key.expect("api key").service_account_id;
    let by_kind = |kind: upb::UserKind| ListUsersRequest {
        kind: kind as i32,
        ..Default::default()
    };
    let accounts = list_all(&app, &admin.token, by_kind(upb::UserKind::ServiceAccount)).await;
    assert_eq!(ids(&accounts), vec![sa.clone()]);
    assert_eq!(accounts[0].kind, upb::UserKind::ServiceAccount as i32);
    assert_eq!(accounts[0].role, upb::Role::Unspecified as i32);
    assert_eq!(accounts[0].email, "");
    assert_eq!(accounts[0].display_name, "robot");
    assert_eq!(
        ids(&list_all(&app, &admin.token, by_kind(upb::UserKind::Person)).await),
        vec![admin.user.to_string(), agent.id.clone()]
    );
    assert_eq!(
        ids(&list_all(&app, &admin.token, by_kind(upb::UserKind::Unspecified)).await),
        vec![admin.user.to_string(), agent.id, sa]
    );
}

#[tokio::test]
async fn list_users_refuses_a_tampered_page_token() {
    let app = spawn_app().await;
    let admin = app.caller(Role::Admin).await;
    for i in 0..2 {
        create_user(&app, &admin.token, &unique_email(&format!("t{i}")), upb::Role::Agent).await;
    }
    let first = list_page(
        &app,
        &admin.token,
        ListUsersRequest {
            page_size: 1,
            ..Default::default()
        },
    )
    .await
    .expect("first page");
    let token = first.next_page_token;
    assert!(!token.is_empty());
    let mut bad_tokens = vec!["garbage!".to_string(), format!("{token}A"), token[1..].to_string()];
    for i in [0, token.len() / 2, token.len() - 2] {
        let mut bytes = token.clone().into_bytes();
        bytes[i] = if bytes[i] == b'A' { b'B' } else { b'A' };
        bad_tokens.push(String::from_utf8(bytes).expect("ascii"));
    }
    for bad in bad_tokens {
        let err = list_page(
            &app,
            &admin.token,
            ListUsersRequest {
                page_size: 1,
                page_token: bad.clone(),
                ..Default::default()
            },
        )
        .await
        .expect_err("tampered token");
        assert_only_violation(&err, "page_token", "INVALID_PAGE_TOKEN");
    }
    // The untouched token still works.
    let second = list_page(
        &app,
        &admin.token,
        ListUsersRequest {
            page_size: 1,
            page_token: token,
            ..Default::default()
        },
    )
    .await
    .expect("second page");
    assert_eq!(second.users.len(), 1);
    assert_ne!(second.users[0].id, first.users[0].id);
}

#[tokio::test]
async fn list_users_refuses_a_page_token_of_other_filters() {
    let app = spawn_app().await;
    let admin = app.caller(Role::Admin).await;
    for i in 0..3 {
        create_user(&app, &admin.token, &unique_email(&format!("f{i}")), upb::Role::Agent).await;
    }
    let agents = ListUsersRequest {
        page_size: 1,
        role: upb::Role::Agent as i32,
        ..Default::default()
    };
    let token = list_page(&app, &admin.token, agents.clone())
        .await
        .expect("first page")
        .next_page_token;
    assert!(!token.is_empty());
    let others = [
        ListUsersRequest {
            role: upb::Role::Viewer as i32,
            ..agents.clone()
        },
        ListUsersRequest {
            role: upb::Role::Unspecified as i32,
            ..agents.clone()
        },
        ListUsersRequest {
            active: Some(true),
            ..agents.clone()
        },
        ListUsersRequest {
            email_prefix: "f".into(),
            ..agents.clone()
        },
        ListUsersRequest {
            kind: upb::UserKind::Person as i32,
            ..agents.clone()
        },
    ];
    for other in others {
        let err = list_page(
            &app,
            &admin.token,
            ListUsersRequest {
                page_token: token.clone(),
                ..other.clone()
            },
        )
        .await
        .expect_err("token of another query");
        assert_only_violation(&err, "page_token", "INVALID_PAGE_TOKEN");
    }
    // Nor is it accepted by ListApiKeys, nor by another tenant.
    let err = users(&app)
        .list_api_keys(authed(
            &admin.token,
            ListApiKeysRequest {
                page_size: 1,
                page_token: token.clone(),
                show_revoked: false,
            },
        ))
        .await
        .expect_err("a users token for keys");
    assert_only_violation(&err, "page_token", "INVALID_PAGE_TOKEN");
    let stranger = app.caller(Role::Admin).await;
    let err = list_page(
        &app,
        &stranger.token,
        ListUsersRequest {
            page_token: token.clone(),
            ..agents.clone()
        },
    )
    .await
    .expect_err("another tenant's token");
    assert_only_violation(&err, "page_token", "INVALID_PAGE_TOKEN");
    // With its own filters it works.
    list_page(
        &app,
        &admin.token,
        ListUsersRequest {
            page_token: token,
            ..agents
        },
    )
    .await
    .expect("same query");
}

#[tokio::test]
async fn list_users_never_shows_another_tenants_users() {
    let app = spawn_app().await;
    let (a, victim, b) = two_tenants(&app).await;
    let seen = ids(&list_all(&app, &b.token, ListUsersRequest::default()).await);
    assert_eq!(seen, vec![b.user.to_string()]);
    assert!(!seen.contains(&victim.id) && !seen.contains(&a.user.to_string()));
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

// ---------------------------------------------------------------------------
// Self-service and its limits
// ---------------------------------------------------------------------------

#[tokio::test]
async fn agents_and_viewers_may_rename_themselves() {
    let app = spawn_app().await;
    let admin = app.caller(Role::Admin).await;
    for role in [Role::Agent, Role::Viewer] {
        let me = app.colleague(&admin, role).await;
        let before = get_user(&app, &admin.token, &me.user.to_string()).await;
        let name = format!("Renamed {role:?}");
        let after = try_update_user(
            &app,
            &me.token,
            upb::User {
                id: me.user.to_string(),
                display_name: name.clone(),
                etag: before.etag.clone(),
                ..Default::default()
            },
            &["display_name"],
        )
        .await
        .expect("self rename");
        assert_eq!(after.display_name, name);
        assert_eq!(after.role, before.role);
        assert_eq!(after.email, before.email);
        assert_eq!(get_user(&app, &admin.token, &me.user.to_string()).await, after);
    }
}

#[tokio::test]
async fn agents_and_viewers_may_not_change_their_own_email_role_or_active() {
    let app = spawn_app().await;
    let admin = app.caller(Role::Admin).await;
    for role in [Role::Agent, Role::Viewer] {
        let me = app.colleague(&admin, role).await;
        let before = get_user(&app, &admin.token, &me.user.to_string()).await;
        for (path, user) in [
            (
                "email",
                upb::User {
                    email: unique_email("mine"),
                    ..before.clone()
                },
            ),
            (
                "role",
                upb::User {
                    role: upb::Role::Admin as i32,
                    ..before.clone()
                },
            ),
            (
                "active",
                upb::User {
                    active: false,
                    ..before.clone()
                },
            ),
        ] {
            let err = try_update_user(&app, &me.token, user, &[path])
                .await
                .expect_err("self-service limit");
            assert_permission_missing(&err, "users:write");
        }
        assert_eq!(get_user(&app, &admin.token, &me.user.to_string()).await, before);
    }
}

#[tokio::test]
async fn agents_and_viewers_may_not_rename_anyone_else() {
    let app = spawn_app().await;
    let admin = app.caller(Role::Admin).await;
    let agent = app.colleague(&admin, Role::Agent).await;
    let viewer = app.colleague(&admin, Role::Viewer).await;
    for (caller, target) in [
        (&agent, &viewer),
        (&viewer, &agent),
        (&agent, &admin),
        (&viewer, &admin),
    ] {
        let before = get_user(&app, &admin.token, &target.user.to_string()).await;
        let err = try_update_user(
            &app,
            &caller.token,
            upb::User {
                display_name: "Renamed by a colleague".into(),
                ..before.clone()
            },
            &["display_name"],
        )
        .await
        .expect_err("renaming another user");
        assert_permission_missing(&err, "users:write");
        assert_eq!(get_user(&app, &admin.token, &target.user.to_string()).await, before);
    }
}

#[tokio::test]
async fn mass_assignment_of_role_or_active_is_denied_to_non_admins() {
    let app = spawn_app().await;
    let admin = app.caller(Role::Admin).await;
    let bystander = app.colleague(&admin, Role::Agent).await;
    let masks: &[&[&str]] = &[
        &["role"],
        &["active"],
        &["role", "active"],
        &["display_name", "role"],
        &["display_name", "active"],
        &["display_name", "role", "active"],
        &["active", "display_name"],
    ];
    for role in [Role::Agent, Role::Viewer] {
        let me = app.colleague(&admin, role).await;
        for target in [&me, &bystander, &admin] {
            let id = target.user.to_string();
            let before = get_user(&app, &admin.token, &id).await;
            for paths in masks {
                for (new_role, active) in [(upb::Role::Admin, false), (upb::Role::Viewer, true)] {
                    let err = try_update_user(
                        &app,
                        &me.token,
                        upb::User {
                            display_name: "Escalated".into(),
                            role: new_role as i32,
                            active,
                            ..before.clone()
                        },
                        paths,
                    )
                    .await
                    .expect_err("mass assignment");
                    assert_permission_missing(&err, "users:write");
                }
            }
            assert_eq!(get_user(&app, &admin.token, &id).await, before, "{role:?} changed {id}");
        }
        // Still only what the role grants.
        let now = whoami(&app, &me.token).await.expect("whoami");
        assert_eq!(now.user.expect("user").role, pb_role(role) as i32);
        assert_eq!(now.permissions.len(), Permissions::for_role(role).to_vec().len());
    }
}

#[tokio::test]
async fn admins_cannot_change_their_own_role() {
    let app = spawn_app().await;
    let admin = app.caller(Role::Admin).await;
    let id = admin.user.to_string();
    let before = get_user(&app, &admin.token, &id).await;
    for paths in [&["role"][..], &["display_name", "role"][..]] {
        for role in [upb::Role::Agent, upb::Role::Viewer] {
            let err = try_update_user(
                &app,
                &admin.token,
                upb::User {
                    display_name: "Demoted".into(),
                    role: role as i32,
                    ..before.clone()
                },
                paths,
            )
            .await
            .expect_err("own role");
            assert_error(&err, Code::FailedPrecondition, "SELF_LOCKOUT");
            let details = err.get_error_details();
            let pf = details.precondition_failure().expect("PreconditionFailure");
            assert_eq!(pf.violations[0].r#type, "SELF_LOCKOUT");
        }
    }
    assert_eq!(get_user(&app, &admin.token, &id).await, before);
    // Renaming oneself stays possible.
    try_update_user(
        &app,
        &admin.token,
        upb::User {
            display_name: "Still admin".into(),
            ..before
        },
        &["display_name"],
    )
    .await
    .expect("self rename");
}

#[tokio::test]
async fn admins_cannot_deactivate_themselves() {
    let app = spawn_app().await;
    let admin = app.caller(Role::Admin).await;
    let id = admin.user.to_string();
    let before = get_user(&app, &admin.token, &id).await;
    let err = try_update_user(
        &app,
        &admin.token,
        upb::User {
            active: false,
            ..before.clone()
        },
        &["active"],
    )
    .await
    .expect_err("self deactivation via update");
    assert_error(&err, Code::FailedPrecondition, "SELF_LOCKOUT");
    let err = deactivate(&app, &admin.token, &id, "")
        .await
        .expect_err("self deactivation");
    assert_error(&err, Code::FailedPrecondition, "SELF_LOCKOUT");
    assert_eq!(get_user(&app, &admin.token, &id).await, before);
    whoami(&app, &admin.token).await.expect("the admin still works");
}

// ---------------------------------------------------------------------------
// DeactivateUser / ReactivateUser
// ---------------------------------------------------------------------------

#[tokio::test]
async fn deactivation_is_soft_and_keeps_ticket_references() {
    let app = spawn_app().await;
    let admin = app.caller(Role::Admin).await;
    let agent = app.colleague(&admin, Role::Agent).await;
    let agent_id = agent.user.to_string();
    // A ticket the agent reported and one assigned to them.
    let reported = create_ticket(&app, &agent, new_ticket("reported by the agent")).await;
    let assigned = create_ticket(
        &app,
        &admin,
        tpb::Ticket {
            assignee_id: agent_id.clone(),
            ..new_ticket("assigned to the agent")
        },
    )
    .await;
    let before = get_user(&app, &admin.token, &agent_id).await;

    let off = deactivate(&app, &admin.token, &agent_id, &before.etag)
        .await
        .expect("deactivate");
    assert!(!off.active);
    assert_ne!(off.etag, before.etag);
    assert_eq!(
        (&off.email, &off.display_name, off.role),
        (&before.email, &before.display_name, before.role)
    );
    assert_eq!(get_user(&app, &admin.token, &agent_id).await, off);

    for t in [&reported, &assigned] {
        let got = app
            .tickets()
            .get_ticket(authed(&admin.token, GetTicketRequest { id: t.id.clone() }))
            .await
            .expect("the ticket stays readable")
            .into_inner()
            .ticket
            .expect("ticket");
        assert_eq!(&got, t);
    }
    assert_eq!(reported.reporter_id, agent_id);
    assert_eq!(assigned.assignee_id, agent_id);
    let by_assignee = app
        .tickets()
        .list_tickets(authed(
            &admin.token,
            ListTicketsRequest {
                assignee_id: agent_id.clone(),
                ..Default::default()
            },
        ))
        .await
        .expect("list by assignee")
        .into_inner()
        .tickets;
    assert_eq!(ids_of_tickets(&by_assignee), vec![assigned.id.clone()]);

    let on = reactivate(&app, &admin.token, &agent_id, &off.etag)
        .await
        .expect("reactivate");
    assert!(on.active);
    assert_eq!(get_user(&app, &admin.token, &agent_id).await, on);
    // Reactivating needs users:write too.
    let err = reactivate(&app, &agent.token, &agent_id, "")
        .await
        .expect_err("agent reactivating");
    assert_permission_missing(&err, "users:write");
}

fn ids_of_tickets(tickets: &[tpb::Ticket]) -> Vec<String> {
    tickets.iter().map(|t| t.id.clone()).collect()
}

#[tokio::test]
async fn deactivate_and_reactivate_with_random_or_malformed_ids() {
    let app = spawn_app().await;
    let admin = app.caller(Role::Admin).await;
    let id = random_id();
    let err = deactivate(&app, &admin.token, &id, "").await.expect_err("missing");
    assert_not_found(&err, USER_TYPE, &id);
    let err = reactivate(&app, &admin.token, &id, "").await.expect_err("missing");
    assert_not_found(&err, USER_TYPE, &id);
    let err = deactivate(&app, &admin.token, "x", "").await.expect_err("malformed");
    assert_only_violation(&err, "id", "INVALID_ID");
    let err = reactivate(&app, &admin.token, "", "").await.expect_err("empty");
    assert_only_violation(&err, "id", "REQUIRED");
}

#[tokio::test]
async fn deactivation_takes_effect_on_the_next_request() {
    let app = spawn_app().await;
    let admin = app.caller(Role::Admin).await;
    let agent = app.colleague(&admin, Role::Agent).await;
    // The JWT works (and the principal is now cached).
    list_tickets(&app, &agent.token).await.expect("before");
    whoami(&app, &agent.token).await.expect("before");

    deactivate(&app, &admin.token, &agent.user.to_string(), "")
        .await
        .expect("deactivate");
    let err = list_tickets(&app, &agent.token).await.expect_err("deactivated");
    assert_error(&err, Code::Unauthenticated, "USER_INACTIVE");
    let err = whoami(&app, &agent.token).await.expect_err("deactivated");
    assert_error(&err, Code::Unauthenticated, "USER_INACTIVE");

    reactivate(&app, &admin.token, &agent.user.to_string(), "")
        .await
        .expect("reactivate");
    list_tickets(&app, &agent.token).await.expect("after reactivation");
}

#[tokio::test]
async fn deactivation_through_update_user_takes_effect_on_the_next_request() {
    let app = spawn_app().await;
    let admin = app.caller(Role::Admin).await;
    let viewer = app.colleague(&admin, Role::Viewer).await;
    let id = viewer.user.to_string();
    whoami(&app, &viewer.token).await.expect("before");
    let off = try_update_user(
        &app,
        &admin.token,
        upb::User {
            id: id.clone(),
            active: false,
            ..Default::default()
        },
        &["active"],
    )
    .await
    .expect("deactivate via update");
    assert!(!off.active);
    let err = whoami(&app, &viewer.token).await.expect_err("deactivated");
    assert_error(&err, Code::Unauthenticated, "USER_INACTIVE");
    try_update_user(
        &app,
        &admin.token,
        upb::User {
            id,
            active: true,
            ..Default::default()
        },
        &["active"],
    )
    .await
    .expect("reactivate via update");
    whoami(&app, &viewer.token).await.expect("after");
}

#[tokio::test]
async fn a_role_change_takes_effect_on_the_next_request() {
    let app = spawn_app().await;
    let admin = app.caller(Role::Admin).await;
    let agent = app.colleague(&admin, Role::Agent).await;
    create_ticket(&app, &agent, new_ticket("as an agent")).await;
    try_update_user(
        &app,
        &admin.token,
        upb::User {
            id: agent.user.to_string(),
            role: upb::Role::Viewer as i32,
            ..Default::default()
        },
        &["role"],
    )
    .await
    .expect("demote");
    let err = app
        .tickets()
        .create_ticket(authed(
            &agent.token,
            tpb::CreateTicketRequest {
                ticket: Some(new_ticket("as a viewer")),
                request_id: String::new(),
            },
        ))
        .await
        .expect_err("a viewer now");
    assert_permission_missing(&err, "tickets:write");
}

// ---------------------------------------------------------------------------
// GetCurrentUser
// ---------------------------------------------------------------------------

#[tokio::test]
async fn get_current_user_for_an_admin() {
    assert_current_user_for_role(Role::Admin).await;
}

#[tokio::test]
async fn get_current_user_for_an_agent() {
    assert_current_user_for_role(Role::Agent).await;
}

#[tokio::test]
async fn get_current_user_for_a_viewer() {
    assert_current_user_for_role(Role::Viewer).await;
}

// ---------------------------------------------------------------------------
// BOLA: another tenant's ids answer exactly like ids that do not exist
// ---------------------------------------------------------------------------

#[tokio::test]
async fn cross_tenant_get_user_answers_like_a_random_id() {
    let app = spawn_app().await;
    let (a, victim, b) = two_tenants(&app).await;
    let missing = random_id();
    let foreign = try_get_user(&app, &b.token, &victim.id).await.expect_err("foreign");
    let absent = try_get_user(&app, &b.token, &missing).await.expect_err("missing");
    assert_not_found(&foreign, USER_TYPE, &victim.id);
    assert_same_answer(&foreign, &victim.id, &absent, &missing);
    assert_eq!(get_user(&app, &a.token, &victim.id).await, victim);
}

#[tokio::test]
async fn cross_tenant_update_user_answers_like_a_random_id_and_changes_nothing() {
    let app = spawn_app().await;
    let (a, victim, b) = two_tenants(&app).await;
    let missing = random_id();
    for paths in [&["display_name"][..], &["email", "role", "active"][..]] {
        let foreign = try_update_user(&app, &b.token, hostile_update(&victim.id), paths)
            .await
            .expect_err("foreign");
        let absent = try_update_user(&app, &b.token, hostile_update(&missing), paths)
            .await
            .expect_err("missing");
        assert_not_found(&foreign, USER_TYPE, &victim.id);
        assert_same_answer(&foreign, &victim.id, &absent, &missing);
        // With the victim's real etag, too.
        let foreign = try_update_user(
            &app,
            &b.token,
            upb::User {
                etag: victim.etag.clone(),
                ..hostile_update(&victim.id)
            },
            paths,
        )
        .await
        .expect_err("foreign with etag");
        assert_same_answer(&foreign, &victim.id, &absent, &missing);
    }
    assert_eq!(get_user(&app, &a.token, &victim.id).await, victim);
}

#[tokio::test]
async fn cross_tenant_deactivate_user_answers_like_a_random_id_and_changes_nothing() {
    let app = spawn_app().await;
    let (a, _, b) = two_tenants(&app).await;
    let victim = app.colleague(&a, Role::Agent).await;
    let victim_id = victim.user.to_string();
    let snapshot = get_user(&app, &a.token, &victim_id).await;
    let missing = random_id();
    let foreign = deactivate(&app, &b.token, &victim_id, "").await.expect_err("foreign");
    let absent = deactivate(&app, &b.token, &missing, "").await.expect_err("missing");
    assert_not_found(&foreign, USER_TYPE, &victim_id);
    assert_same_answer(&foreign, &victim_id, &absent, &missing);
    assert_eq!(get_user(&app, &a.token, &victim_id).await, snapshot);
    whoami(&app, &victim.token).await.expect("the victim still works");
}

#[tokio::test]
async fn cross_tenant_reactivate_user_answers_like_a_random_id_and_changes_nothing() {
    let app = spawn_app().await;
    let (a, victim, b) = two_tenants(&app).await;
    let off = deactivate(&app, &a.token, &victim.id, "").await.expect("deactivate");
    let missing = random_id();
    let foreign = reactivate(&app, &b.token, &victim.id, "").await.expect_err("foreign");
    let absent = reactivate(&app, &b.token, &missing, "").await.expect_err("missing");
    assert_not_found(&foreign, USER_TYPE, &victim.id);
    assert_same_answer(&foreign, &victim.id, &absent, &missing);
    let now = get_user(&app, &a.token, &victim.id).await;
    assert_eq!(now, off);
    assert!(!now.active);
}

#[tokio::test]
async fn cross_tenant_revoke_api_key_answers_like_a_random_id_and_revokes_nothing() {
    let app = spawn_app().await;
    let (a, _, b) = two_tenants(&app).await;
    let created = create_key(&app, &a.token, "a's robot", &["tickets:read"]).await;
    let key_id = created.api_key.as_ref().expect("api key").id.clone();
    let missing = random_id();
    let revoke = |id: String| {
        let mut client = users(&app);
        let token = b.token.clone();
        async move {
            client
                .revoke_api_key(authed(&token, RevokeApiKeyRequest { id }))
                .await
                .expect_err("refused")
        }
    };
    let foreign = revoke(key_id.clone()).await;
    let absent = revoke(missing.clone()).await;
    assert_not_found(&foreign, API_KEY_TYPE, &key_id);
    assert_same_answer(&foreign, &key_id, &absent, &missing);
    // A's key still works and is not revoked.
    whoami(&app, &created.key).await.expect("a's key still works");
    let listed = users(&app)
        .list_api_keys(authed(&a.token, ListApiKeysRequest::default()))
        .await
        .expect("list")
        .into_inner()
        .api_keys;
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].id, key_id);
    assert_eq!(listed[0].revoke_time, None);
    // B sees none of A's keys.
    let b_keys = users(&app)
        .list_api_keys(authed(
            &b.token,
            ListApiKeysRequest {
                show_revoked: true,
                ..Default::default()
            },
        ))
        .await
        .expect("list")
        .into_inner()
        .api_keys;
    assert!(b_keys.is_empty());
}
