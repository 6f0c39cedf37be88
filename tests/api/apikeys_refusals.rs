//! API keys: refused at once when revoked, expired or their service account
//! is deactivated; malformed and forged keys refused with precise reasons.

use std::time::{Duration, Instant};

use deskd::{
    proto::users::v1::{self as upb, DeactivateUserRequest, GetCurrentUserRequest, ReactivateUserRequest},
    users::model::Role,
};
use tonic::Code;
use uuid::Uuid;

use crate::{apikeys_support::*, helpers::*, users_support::*};

// ---------------------------------------------------------------------------
// Private helpers
// ---------------------------------------------------------------------------

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
