//! The Users service, ListUsers: keyset pagination, filters, page tokens
//! and tenant isolation.

use deskd::{
    proto::users::v1::{self as upb, ListApiKeysRequest, ListUsersRequest},
    users::model::Role,
};

use crate::{helpers::*, users_support::*};

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
