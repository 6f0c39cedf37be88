//! The Users service: tenant isolation of user and key ids (BOLA).

use deskd::{
    proto::users::v1::{self as upb, ListApiKeysRequest, RevokeApiKeyRequest},
    users::model::Role,
};

use crate::{helpers::*, users_support::*};

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
