//! API keys: issued once, sent as a bearer token or `x-api-key`, confined to
//! their scopes and tenant, refused at once when revoked, expired or their
//! service account is deactivated; malformed and forged keys refused with
//! precise reasons; secrets never stored or logged; `last_use_time`
//! recorded in batches; and the `deskd apikey create` operator command.

use std::{
    collections::BTreeSet,
    process::{Command, Stdio},
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use base64::{
    Engine as _,
    engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD},
};
use deskd::{
    proto::{
        tickets::v1::{
            self as tpb, CreateTicketRequest, ListTicketsRequest, tickets_service_client::TicketsServiceClient,
        },
        users::v1::{
            self as upb, CreateApiKeyRequest, DeactivateUserRequest, GetCurrentUserRequest, ListApiKeysRequest,
            ListUsersRequest, ReactivateUserRequest, RevokeApiKeyRequest, users_service_client::UsersServiceClient,
        },
    },
    tenancy::UserId,
    users::model::Role,
};
use prost_types::Timestamp;
use tonic::{Code, Request, Status, transport::Channel};
use uuid::Uuid;

use crate::{helpers::*, users_support::*};

// ---------------------------------------------------------------------------
// Private helpers
// ---------------------------------------------------------------------------

fn timestamp_in(offset_ms: i64) -> Timestamp {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).expect("clock");
    let ms = now.as_millis() as i64 + offset_ms;
    Timestamp {
        seconds: ms.div_euclid(1000),
        nanos: (ms.rem_euclid(1000) * 1_000_000) as i32,
    }
}

fn now_ts() -> Timestamp {
    timestamp_in(0)
}

fn ts_key(t: &Timestamp) -> (i64, i32) {
    (t.seconds, t.nanos)
}

async fn list_keys(app: &TestApp, token: &str, show_revoked: bool) -> Vec<upb::ApiKey> {
    users(app)
        .list_api_keys(authed(
            token,
            ListApiKeysRequest {
                page_size: 500,
                page_token: String::new(),
                show_revoked,
            },
        ))
        .await
        .expect("list API keys")
        .into_inner()
        .api_keys
}

async fn revoke(app: &TestApp, token: &str, id: &str) -> Result<upb::RevokeApiKeyResponse, Status> {
    users(app)
        .revoke_api_key(authed(token, RevokeApiKeyRequest { id: id.to_string() }))
        .await
        .map(|r| r.into_inner())
}

async fn whoami_with(
    app: &TestApp,
    req: Request<GetCurrentUserRequest>,
) -> Result<upb::GetCurrentUserResponse, Status> {
    current(app, req).await
}

async fn list_tickets_with(app: &TestApp, key: &str) -> Result<Vec<tpb::Ticket>, Status> {
    app.tickets()
        .list_tickets(authed(key, ListTicketsRequest::default()))
        .await
        .map(|r| r.into_inner().tickets)
}

async fn create_ticket_with(app: &TestApp, key: &str, title: &str) -> Result<tpb::Ticket, Status> {
    app.tickets()
        .create_ticket(authed(
            key,
            CreateTicketRequest {
                ticket: Some(new_ticket(title)),
                request_id: String::new(),
            },
        ))
        .await
        .map(|r| r.into_inner().ticket.expect("ticket"))
}

fn set_of(v: &[String]) -> BTreeSet<String> {
    v.iter().cloned().collect()
}

fn strings(v: &[&str]) -> BTreeSet<String> {
    v.iter().map(|s| (*s).to_string()).collect()
}

/// `key` with one character of its secret changed, still well formed.
fn altered_secret(key: &str) -> String {
    let secret = secret_of(key);
    let mut chars: Vec<char> = secret.chars().collect();
    chars[5] = if chars[5] == 'A' { 'B' } else { 'A' };
    let altered: String = chars.into_iter().collect();
    assert_eq!(URL_SAFE_NO_PAD.decode(&altered).map(|b| b.len()).ok(), Some(32));
    format!("{}_{altered}", prefix_of(key))
}

fn sa_of(created: &upb::CreateApiKeyResponse) -> String {
    created.api_key.as_ref().expect("api key").service_account_id.clone()
}

fn id_of(created: &upb::CreateApiKeyResponse) -> String {
    created.api_key.as_ref().expect("api key").id.clone()
}

async fn set_active(app: &TestApp, token: &str, id: &str, active: bool) {
    let mut c = users(app);
    if active {
        c.reactivate_user(authed(
            token,
            ReactivateUserRequest {
                id: id.into(),
                etag: String::new(),
            },
        ))
        .await
        .expect("reactivate");
    } else {
        c.deactivate_user(authed(
            token,
            DeactivateUserRequest {
                id: id.into(),
                etag: String::new(),
            },
        ))
        .await
        .expect("deactivate");
    }
}

/// Runs the real binary with the app's database and JWT secret.
fn deskd_cli(app: &TestApp, args: &[&str]) -> std::process::Output {
    let dir = tempfile::tempdir().expect("tempdir");
    Command::new(env!("CARGO_BIN_EXE_deskd"))
        .args(args)
        .current_dir(dir.path())
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("DESKD_DATABASE_URL", app.db.app_url())
        .env("DESKD_DATABASE_OWNER_URL", app.db.owner_url())
        .env("DESKD_JWT_SECRET", JWT_SECRET)
        .output()
        .expect("run deskd")
}

// ---------------------------------------------------------------------------
// Issuing, listing, revoking
// ---------------------------------------------------------------------------

#[tokio::test]
async fn create_api_key_returns_the_secret_exactly_once() {
    let app = spawn_app().await;
    let admin = app.caller(Role::Admin).await;
    let created = create_key(&app, &admin.token, "  ci pipeline ", &["tickets:write", "tickets:read"]).await;
    let key = created.key.clone();
    let meta = created.api_key.clone().expect("api key");
    assert!(key.starts_with("dsk_"), "{key}");
    let secret = secret_of(&key).to_string();
    assert_eq!(URL_SAFE_NO_PAD.decode(&secret).expect("base64url").len(), 32);
    assert_eq!(prefix_of(&key), meta.key_prefix);
    assert_eq!(
        meta.key_prefix,
        format!(
            "dsk_{}{}",
            admin.tenant.0.simple(),
            Uuid::parse_str(&meta.id).expect("uuid").simple()
        )
    );
    assert_eq!(meta.display_name, "ci pipeline");
    assert_eq!(set_of(&meta.scopes), strings(&["tickets:read", "tickets:write"]));
    Uuid::parse_str(&meta.service_account_id).expect("service account id");
    assert!(meta.create_time.is_some());
    assert_eq!(
        (meta.expire_time, meta.last_use_time, meta.revoke_time),
        (None, None, None)
    );
    // The metadata alone never carries the secret.
    assert!(!format!("{meta:?}").contains(&secret));

    let listed = users(&app)
        .list_api_keys(authed(&admin.token, ListApiKeysRequest::default()))
        .await
        .expect("list")
        .into_inner();
    assert_eq!(listed.api_keys.len(), 1);
    assert_eq!(listed.api_keys[0].id, meta.id);
    assert_eq!(listed.api_keys[0].key_prefix, meta.key_prefix);
    let revoked = revoke(&app, &admin.token, &meta.id).await.expect("revoke");
    let listed_all = users(&app)
        .list_api_keys(authed(
            &admin.token,
            ListApiKeysRequest {
                show_revoked: true,
                ..Default::default()
            },
        ))
        .await
        .expect("list revoked")
        .into_inner();
    for text in [format!("{listed:?}"), format!("{revoked:?}"), format!("{listed_all:?}")] {
        assert!(!text.contains(&key), "full key in {text}");
        assert!(!text.contains(&secret), "secret in {text}");
    }
    assert_eq!(listed_all.api_keys.len(), 1);
    assert!(revoked.api_key.expect("key").revoke_time.is_some());
}

#[tokio::test]
async fn list_api_keys_pages_newest_first_and_hides_revoked_keys() {
    let app = spawn_app().await;
    let admin = app.caller(Role::Admin).await;
    let mut ids = Vec::new();
    for i in 0..5 {
        ids.push(id_of(
            &create_key(&app, &admin.token, &format!("k{i}"), &["stats:read"]).await,
        ));
    }
    revoke(&app, &admin.token, &ids[2]).await.expect("revoke");
    let page = |token: String, show_revoked: bool| {
        let mut c = users(&app);
        let t = admin.token.clone();
        async move {
            c.list_api_keys(authed(
                &t,
                ListApiKeysRequest {
                    page_size: 2,
                    page_token: token,
                    show_revoked,
                },
            ))
            .await
            .expect("page")
            .into_inner()
        }
    };
    for (show_revoked, expected) in [
        (false, vec![&ids[4], &ids[3], &ids[1], &ids[0]]),
        (true, vec![&ids[4], &ids[3], &ids[2], &ids[1], &ids[0]]),
    ] {
        let mut seen = Vec::new();
        let mut token = String::new();
        for _ in 0..10 {
            let p = page(token.clone(), show_revoked).await;
            assert!(p.api_keys.len() <= 2);
            seen.extend(p.api_keys.into_iter().map(|k| k.id));
            if p.next_page_token.is_empty() {
                break;
            }
            token = p.next_page_token;
        }
        let expected: Vec<String> = expected.into_iter().cloned().collect();
        assert_eq!(seen, expected, "show_revoked={show_revoked}");
    }
    // A token of one listing is refused by the other.
    let token = page(String::new(), false).await.next_page_token;
    let err = users(&app)
        .list_api_keys(authed(
            &admin.token,
            ListApiKeysRequest {
                page_size: 2,
                page_token: token,
                show_revoked: true,
            },
        ))
        .await
        .expect_err("token of another listing");
    assert_only_violation(&err, "page_token", "INVALID_PAGE_TOKEN");
}

#[tokio::test]
async fn revoking_a_random_or_malformed_id_fails() {
    let app = spawn_app().await;
    let admin = app.caller(Role::Admin).await;
    let id = Uuid::now_v7().to_string();
    let err = revoke(&app, &admin.token, &id).await.expect_err("missing");
    assert_not_found(&err, API_KEY_TYPE, &id);
    let err = revoke(&app, &admin.token, "nope").await.expect_err("malformed");
    assert_only_violation(&err, "id", "INVALID_ID");
}

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

// ---------------------------------------------------------------------------
// Refusals
// ---------------------------------------------------------------------------

#[tokio::test]
async fn revocation_takes_effect_on_the_next_request() {
    let app = spawn_app().await;
    let admin = app.caller(Role::Admin).await;
    let created = create_key(&app, &admin.token, "short-lived", &["tickets:read"]).await;
    let other = create_key(&app, &admin.token, "bystander", &["tickets:read"]).await;
    list_tickets_with(&app, &created.key).await.expect("before");
    let revoked = revoke(&app, &admin.token, &id_of(&created)).await.expect("revoke");
    let revoke_time = revoked.api_key.expect("key").revoke_time.expect("revoke_time");
    for res in [
        list_tickets_with(&app, &created.key).await.map(drop),
        whoami_with(&app, with_api_key(&created.key, GetCurrentUserRequest {}))
            .await
            .map(drop),
    ] {
        assert_error(&res.expect_err("revoked"), Code::Unauthenticated, "API_KEY_REVOKED");
    }
    // Revoking again keeps the first time.
    let again = revoke(&app, &admin.token, &id_of(&created))
        .await
        .expect("revoke again");
    assert_eq!(again.api_key.expect("key").revoke_time, Some(revoke_time));
    // Listing hides it unless asked; the other key is unaffected.
    let valid: Vec<String> = list_keys(&app, &admin.token, false)
        .await
        .into_iter()
        .map(|k| k.id)
        .collect();
    assert_eq!(valid, vec![id_of(&other)]);
    assert_eq!(list_keys(&app, &admin.token, true).await.len(), 2);
    list_tickets_with(&app, &other.key).await.expect("other key");
}

#[tokio::test]
async fn an_expired_key_is_refused() {
    let app = spawn_app().await;
    let admin = app.caller(Role::Admin).await;
    let expire_time = timestamp_in(1_000);
    let created = try_create_key(
        &app,
        &admin.token,
        upb::ApiKey {
            expire_time: Some(expire_time),
            ..new_key("ephemeral", &["tickets:read"])
        },
    )
    .await
    .expect("create");
    let deadline = Instant::now() + Duration::from_secs(20);
    let refused = loop {
        match list_tickets_with(&app, &created.key).await {
            Ok(_) => {
                assert!(Instant::now() < deadline, "the key never expired");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(e) => break e,
        }
    };
    assert_error(&refused, Code::Unauthenticated, "API_KEY_EXPIRED");
    assert!(ts_key(&now_ts()) >= ts_key(&expire_time), "refused before its expiry");
    // And it stays refused.
    let err = whoami(&app, &created.key).await.expect_err("expired");
    assert_error(&err, Code::Unauthenticated, "API_KEY_EXPIRED");
}

#[tokio::test]
async fn malformed_keys_are_api_key_malformed() {
    let app = spawn_app().await;
    let admin = app.caller(Role::Admin).await;
    let created = create_key(&app, &admin.token, "template", &["tickets:read"]).await;
    let key = created.key.clone();
    let ids = &key[4..KEY_PREFIX_LEN];
    assert!(
        ids.bytes().any(|b| b.is_ascii_alphabetic()),
        "ids without a letter: {ids}"
    );
    let secret = secret_of(&key);
    let bad = [
        "dsk_garbage".to_string(),
        "dsk_".to_string(),
        key[..key.len() - 1].to_string(),
        format!("{key}A"),
        format!("dsk_{}_{secret}", ids.to_uppercase()),
        format!("dsk_{}-{secret}", ids),
        format!("dsk_{}_{}", &ids[..63], &key[KEY_PREFIX_LEN..]),
        format!("dsk_{}_{}!", ids, &secret[..42]),
    ];
    for raw in &bad {
        for via_header in [false, true] {
            let req = if via_header {
                with_api_key(raw, GetCurrentUserRequest {})
            } else {
                authed(raw, GetCurrentUserRequest {})
            };
            let err = whoami_with(&app, req).await.expect_err("malformed");
            assert_error(&err, Code::Unauthenticated, "API_KEY_MALFORMED");
            // (`dsk_` alone is part of the fixed message, so only longer values.)
            if raw.len() > 16 {
                assert!(!err.message().contains(raw.as_str()), "echoes the key: {err:?}");
            }
        }
    }
    // A JWT in x-api-key is not a key either.
    let err = whoami_with(&app, with_api_key(&admin.token, GetCurrentUserRequest {}))
        .await
        .expect_err("JWT as x-api-key");
    assert_error(&err, Code::Unauthenticated, "API_KEY_MALFORMED");
    whoami(&app, &key).await.expect("the real key still works");
}

#[tokio::test]
async fn an_altered_secret_is_api_key_invalid() {
    let app = spawn_app().await;
    let admin = app.caller(Role::Admin).await;
    let created = create_key(&app, &admin.token, "target", &["tickets:read"]).await;
    // Cached or not, a wrong secret is refused.
    whoami(&app, &created.key).await.expect("real key");
    let forged = altered_secret(&created.key);
    for req in [
        authed(&forged, GetCurrentUserRequest {}),
        with_api_key(&forged, GetCurrentUserRequest {}),
    ] {
        let err = whoami_with(&app, req).await.expect_err("forged");
        assert_error(&err, Code::Unauthenticated, "API_KEY_INVALID");
        assert!(!err.message().contains(&forged));
    }
    // Even once the key is revoked, a wrong secret learns nothing more.
    revoke(&app, &admin.token, &id_of(&created)).await.expect("revoke");
    let err = whoami(&app, &forged).await.expect_err("forged");
    assert_error(&err, Code::Unauthenticated, "API_KEY_INVALID");
}

#[tokio::test]
async fn a_well_formed_key_with_an_unknown_id_is_api_key_invalid() {
    let app = spawn_app().await;
    let admin = app.caller(Role::Admin).await;
    let created = create_key(&app, &admin.token, "template", &["tickets:read"]).await;
    let unknown = format!(
        "dsk_{}{}_{}",
        admin.tenant.0.simple(),
        Uuid::now_v7().simple(),
        secret_of(&created.key)
    );
    let err = whoami(&app, &unknown).await.expect_err("unknown id");
    assert_error(&err, Code::Unauthenticated, "API_KEY_INVALID");
    // Exactly like a wrong secret for a real id.
    let forged = whoami(&app, &altered_secret(&created.key))
        .await
        .expect_err("wrong secret");
    assert_eq!(
        (err.code(), err.message()),
        (forged.code(), forged.message()),
        "unknown ids and wrong secrets answer alike"
    );
    // Another tenant's key id under this tenant is unknown too.
    let other = app.caller(Role::Admin).await;
    let theirs = create_key(&app, &other.token, "theirs", &["tickets:read"]).await;
    let spliced = format!(
        "dsk_{}{}_{}",
        admin.tenant.0.simple(),
        Uuid::parse_str(&id_of(&theirs)).expect("uuid").simple(),
        secret_of(&theirs.key)
    );
    let err = whoami(&app, &spliced).await.expect_err("spliced");
    assert_error(&err, Code::Unauthenticated, "API_KEY_INVALID");
}

#[tokio::test]
async fn a_key_with_another_tenants_x_tenant_id_is_tenant_mismatch() {
    let app = spawn_app().await;
    let a = app.caller(Role::Admin).await;
    let b = app.caller(Role::Admin).await;
    let created = create_key(&app, &a.token, "a's robot", &["tickets:read"]).await;
    for via_header in [false, true] {
        let mut req = if via_header {
            with_api_key(&created.key, GetCurrentUserRequest {})
        } else {
            authed(&created.key, GetCurrentUserRequest {})
        };
        req.metadata_mut()
            .insert("x-tenant-id", b.tenant.to_string().parse().expect("metadata value"));
        let err = whoami_with(&app, req).await.expect_err("other tenant");
        assert_error(&err, Code::PermissionDenied, "TENANT_MISMATCH");
    }
    let mut req = authed(&created.key, GetCurrentUserRequest {});
    req.metadata_mut()
        .insert("x-tenant-id", a.tenant.to_string().parse().expect("metadata value"));
    let me = whoami_with(&app, req).await.expect("own tenant");
    assert_eq!(me.tenant_id, a.tenant.to_string());
}

#[tokio::test]
async fn deactivating_the_service_account_refuses_its_keys() {
    let app = spawn_app().await;
    let admin = app.caller(Role::Admin).await;
    let first = create_key(&app, &admin.token, "robot", &["tickets:read"]).await;
    let sa = sa_of(&first);
    let second = try_create_key(
        &app,
        &admin.token,
        upb::ApiKey {
            service_account_id: sa.clone(),
            ..new_key("robot 2", &["tickets:read"])
        },
    )
    .await
    .expect("second key");
    for k in [&first.key, &second.key] {
        list_tickets_with(&app, k).await.expect("before");
    }
    set_active(&app, &admin.token, &sa, false).await;
    for k in [&first.key, &second.key] {
        let err = list_tickets_with(&app, k).await.expect_err("deactivated");
        assert_error(&err, Code::Unauthenticated, "USER_INACTIVE");
    }
    set_active(&app, &admin.token, &sa, true).await;
    for k in [&first.key, &second.key] {
        list_tickets_with(&app, k).await.expect("after reactivation");
    }
}

#[tokio::test]
async fn a_ticket_created_with_a_key_is_reported_by_the_service_account() {
    let app = spawn_app().await;
    let admin = app.caller(Role::Admin).await;
    let created = create_key(&app, &admin.token, "importer", &["tickets:write"]).await;
    let ticket = create_ticket_with(&app, &created.key, "imported")
        .await
        .expect("create");
    assert_eq!(ticket.reporter_id, sa_of(&created));
    let listed = list_tickets_with(&app, &admin.token).await.expect("list");
    assert_eq!(listed, vec![ticket]);
}

// ---------------------------------------------------------------------------
// last_use_time
// ---------------------------------------------------------------------------

#[tokio::test]
async fn last_use_time_is_recorded_in_batches() {
    let app = spawn_app_with(|c| c.api_keys.last_use_flush_interval = Duration::from_millis(50)).await;
    let admin = app.caller(Role::Admin).await;
    let created = create_key(&app, &admin.token, "used", &["tickets:read"]).await;
    let unused = create_key(&app, &admin.token, "unused", &["tickets:read"]).await;
    let create_time = created.api_key.clone().expect("key").create_time.expect("create_time");
    let listed = list_keys(&app, &admin.token, false).await;
    assert!(listed.iter().all(|k| k.last_use_time.is_none()), "{listed:?}");

    list_tickets_with(&app, &created.key).await.expect("use");
    let deadline = Instant::now() + Duration::from_secs(10);
    let last_use = loop {
        let keys = list_keys(&app, &admin.token, false).await;
        let k = keys.iter().find(|k| k.id == id_of(&created)).expect("listed");
        if let Some(t) = k.last_use_time {
            break t;
        }
        assert!(Instant::now() < deadline, "last_use_time never recorded");
        tokio::time::sleep(Duration::from_millis(25)).await;
    };
    assert!(ts_key(&last_use) >= ts_key(&create_time));
    assert!(ts_key(&last_use) <= ts_key(&now_ts()));
    let keys = list_keys(&app, &admin.token, false).await;
    let u = keys.iter().find(|k| k.id == id_of(&unused)).expect("listed");
    assert_eq!(u.last_use_time, None, "an unused key has no last use");
}

// ---------------------------------------------------------------------------
// The secret is never stored or logged
// ---------------------------------------------------------------------------

#[tokio::test]
async fn the_secret_is_never_stored_in_plaintext() {
    let app = spawn_app().await;
    let admin = app.caller(Role::Admin).await;
    let created = create_key(&app, &admin.token, "stored", &["tickets:read", "users:read"]).await;
    list_tickets_with(&app, &created.key).await.expect("use");
    let failed = altered_secret(&created.key);
    whoami(&app, &failed).await.expect_err("forged");
    let secret = secret_of(&created.key).to_string();
    let raw = URL_SAFE_NO_PAD.decode(&secret).expect("base64url");
    let needles = [
        created.key.clone(),
        secret.clone(),
        hex(&raw),
        STANDARD.encode(&raw),
        secret_of(&failed).to_string(),
    ];

    let mut conn = app.db.owner_conn().await;
    let tables: Vec<String> =
        sqlx::query_scalar("select tablename::text from pg_tables where schemaname = 'public' order by 1")
            .fetch_all(&mut conn)
            .await
            .expect("tables");
    assert!(tables.contains(&"api_keys".to_string()) && tables.contains(&"users".to_string()));
    let mut rows_seen = 0;
    for table in &tables {
        let rows: Vec<String> = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
            "select row_to_json(t)::text from \"{table}\" t"
        )))
        .fetch_all(&mut conn)
        .await
        .expect("dump");
        if table == "api_keys" {
            assert_eq!(rows.len(), 1, "{rows:?}");
            assert!(rows[0].contains(&id_of(&created)));
        }
        for row in &rows {
            rows_seen += 1;
            for needle in &needles {
                assert!(!row.contains(needle.as_str()), "{table} stores the secret: {row}");
            }
        }
    }
    assert!(rows_seen >= 3);
    // The stored digest is 32 bytes and not the secret's bytes.
    let digest: Vec<u8> = sqlx::query_scalar("select secret_digest from api_keys")
        .fetch_one(&mut conn)
        .await
        .expect("digest");
    assert_eq!(digest.len(), 32);
    assert_ne!(digest, raw);
}

#[tokio::test]
async fn the_secret_never_reaches_the_logs() {
    use std::io::BufRead as _;

    let app = spawn_app().await;
    let admin = app.caller(Role::Admin).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let mut child = Command::new(env!("CARGO_BIN_EXE_deskd"))
        .arg("serve")
        .current_dir(dir.path())
        .env_clear()
        .env("DESKD_LISTEN_ADDR", "127.0.0.1:0")
        .env("DESKD_DATABASE_URL", app.db.app_url())
        .env("DESKD_DATABASE_OWNER_URL", app.db.owner_url())
        .env("DESKD_JWT_SECRET", JWT_SECRET)
        .env("DESKD_LOG_FORMAT", "json")
        .env("DESKD_LOG_FILTER", "debug")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn deskd serve");
    let stdout = child.stdout.take().expect("stdout");
    let stderr = child.stderr.take().expect("stderr");
    let out_reader = std::thread::spawn(move || {
        std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
            .collect::<Vec<_>>()
    });
    let (addr_tx, addr_rx) = std::sync::mpsc::channel::<String>();
    let err_reader = std::thread::spawn(move || {
        let mut lines = Vec::new();
        for line in std::io::BufReader::new(stderr).lines().map_while(Result::ok) {
            if line.contains("deskd serving gRPC") {
                let v: serde_json::Value = serde_json::from_str(&line).expect("json log line");
                let _ = addr_tx.send(v["addr"].as_str().expect("addr field").to_string());
            }
            lines.push(line);
        }
        lines
    });
    let addr = tokio::task::spawn_blocking(move || addr_rx.recv_timeout(Duration::from_secs(30)))
        .await
        .expect("join")
        .expect("the server announces its address");
    let channel = Channel::from_shared(format!("http://{addr}"))
        .expect("uri")
        .connect()
        .await
        .expect("connect");
    let mut users_client = UsersServiceClient::new(channel.clone());
    let mut tickets_client = TicketsServiceClient::new(channel);

    let created = users_client
        .create_api_key(authed(
            &admin.token,
            CreateApiKeyRequest {
                api_key: Some(new_key("logged?", &["tickets:read", "tickets:write"])),
            },
        ))
        .await
        .expect("create through the binary")
        .into_inner();
    let key = created.key.clone();
    let secret = secret_of(&key).to_string();
    users_client
        .get_current_user(authed(&key, GetCurrentUserRequest {}))
        .await
        .expect("bearer");
    users_client
        .get_current_user(with_api_key(&key, GetCurrentUserRequest {}))
        .await
        .expect("x-api-key");
    tickets_client
        .create_ticket(authed(
            &key,
            CreateTicketRequest {
                ticket: Some(new_ticket("logged")),
                request_id: String::new(),
            },
        ))
        .await
        .expect("create ticket");
    tickets_client
        .list_tickets(with_api_key(&key, ListTicketsRequest::default()))
        .await
        .expect("list tickets");
    let forged = altered_secret(&key);
    let err = users_client
        .get_current_user(authed(&forged, GetCurrentUserRequest {}))
        .await
        .expect_err("forged");
    assert_error(&err, Code::Unauthenticated, "API_KEY_INVALID");
    let err = users_client
        .get_current_user(with_api_key(&format!("{key}x"), GetCurrentUserRequest {}))
        .await
        .expect_err("malformed");
    assert_error(&err, Code::Unauthenticated, "API_KEY_MALFORMED");

    let pid = child.id().to_string();
    let killed = Command::new("kill").args(["-TERM", &pid]).status().expect("kill");
    assert!(killed.success());
    let status = tokio::task::spawn_blocking(move || child.wait())
        .await
        .expect("join")
        .expect("wait");
    assert!(status.success(), "exit status after SIGTERM: {status:?}");
    let mut lines = err_reader.join().expect("stderr reader");
    lines.extend(out_reader.join().expect("stdout reader"));
    assert!(lines.iter().any(|l| l.contains("deskd stopped")), "{lines:#?}");
    assert!(
        lines.iter().any(|l| l.contains("\"DEBUG\"")),
        "the debug filter took effect"
    );
    let completed = lines.iter().filter(|l| l.contains("request_completed")).count();
    assert_eq!(completed, 7, "one request_completed per RPC");
    for needle in [&key, &secret, &forged, &secret_of(&forged).to_string()] {
        let leaks: Vec<&String> = lines.iter().filter(|l| l.contains(needle.as_str())).collect();
        assert!(leaks.is_empty(), "the log carries a key secret: {leaks:#?}");
    }
}

// ---------------------------------------------------------------------------
// The operator command
// ---------------------------------------------------------------------------

#[tokio::test]
async fn cli_apikey_create_prints_one_working_key() {
    let app = spawn_app().await;
    let admin = app.caller(Role::Admin).await;
    let tenant = admin.tenant.to_string();
    let out = deskd_cli(
        &app,
        &[
            "apikey",
            "create",
            "--tenant",
            &tenant,
            "--name",
            "nightly import",
            "--scopes",
            "tickets:read,tickets:write",
        ],
    );
    assert!(
        out.status.success(),
        "exit {:?}: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8(out.stdout).expect("utf-8");
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 1, "exactly one line: {stdout:?}");
    let key = lines[0].to_string();
    assert!(key.starts_with(&format!("dsk_{}", admin.tenant.0.simple())), "{key}");
    secret_of(&key);
    assert!(
        !String::from_utf8_lossy(&out.stderr).contains(secret_of(&key)),
        "the secret goes to stdout only"
    );

    let me = whoami(&app, &key).await.expect("the printed key works");
    assert_eq!(set_of(&me.permissions), strings(&["tickets:read", "tickets:write"]));
    let user = me.user.expect("user");
    assert_eq!(user.kind, upb::UserKind::ServiceAccount as i32);
    assert_eq!(user.display_name, "nightly import");
    let ticket = create_ticket_with(&app, &key, "from a CLI key").await.expect("create");
    assert_eq!(ticket.reporter_id, user.id);
    list_tickets_with(&app, &key).await.expect("list");
    // The admin sees it like any other key.
    let listed = list_keys(&app, &admin.token, false).await;
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].key_prefix, prefix_of(&key));
}

#[tokio::test]
async fn cli_apikey_create_with_bad_scopes_fails_without_stdout() {
    let app = spawn_app().await;
    let admin = app.caller(Role::Admin).await;
    let tenant = admin.tenant.to_string();
    for scopes in ["tickets:read,apikeys:manage", "root", "tickets:*"] {
        let out = deskd_cli(
            &app,
            &[
                "apikey", "create", "--tenant", &tenant, "--name", "bad", "--scopes", scopes,
            ],
        );
        assert!(!out.status.success(), "{scopes}: accepted");
        assert!(out.stdout.is_empty(), "{scopes}: stdout {:?}", out.stdout);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("--scopes"), "{scopes}: {err}");
    }
    // An unknown tenant fails the same way.
    let out = deskd_cli(
        &app,
        &[
            "apikey",
            "create",
            "--tenant",
            &Uuid::now_v7().to_string(),
            "--name",
            "orphan",
            "--scopes",
            "tickets:read",
        ],
    );
    assert!(!out.status.success());
    assert!(out.stdout.is_empty());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no tenant"));
    assert!(list_keys(&app, &admin.token, true).await.is_empty(), "nothing issued");
}
