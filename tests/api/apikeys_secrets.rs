//! API keys: `last_use_time` recorded in batches; secrets never stored or
//! logged.

use std::time::{Duration, Instant};

use base64::{
    Engine as _,
    engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD},
};
use deskd::{
    proto::{
        tickets::v1::{CreateTicketRequest, ListTicketsRequest, tickets_service_client::TicketsServiceClient},
        users::v1::{CreateApiKeyRequest, GetCurrentUserRequest, users_service_client::UsersServiceClient},
    },
    users::model::Role,
};
use tonic::Code;

use crate::{apikeys_support::*, helpers::*, users_support::*};

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
    let app = spawn_app().await;
    let admin = app.caller(Role::Admin).await;
    let server = ServeProcess::start(&app, &[("DESKD_LOG_FILTER", "debug")]).await;
    let channel = server.channel().await;
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

    let (ok, mut lines, out) = server.stop().await;
    assert!(ok, "clean exit after SIGTERM");
    lines.extend(out);
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
