//! API keys: issued once, listed and revoked; and the `deskd apikey create`
//! operator command.

use base64::{Engine as _, engine::general_purpose::URL_SAFE_NO_PAD};
use deskd::{
    proto::users::v1::{self as upb, ListApiKeysRequest},
    users::model::Role,
};
use uuid::Uuid;

use crate::{apikeys_support::*, helpers::*, users_support::*};

// ---------------------------------------------------------------------------
// Private helpers
// ---------------------------------------------------------------------------

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
