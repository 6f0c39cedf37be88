//! Two replicas of one deployment agree on page tokens and API keys when
//! they share `secret_key`, whatever their JWT set-up.

use deskd::{
    proto::{tickets::v1 as pb, users::v1 as upb},
    startup::Application,
    users::model::Role,
};
use secrecy::SecretString;
use tonic::transport::Channel;

use crate::helpers::*;

const SHARED: &str = "shared-server-secret-0123456789abcdef";

async fn second_replica(
    app: &TestApp,
    tweak: impl FnOnce(&mut deskd::config::Config),
) -> (Channel, tokio::sync::oneshot::Sender<()>) {
    let mut cfg = app.config.clone();
    cfg.database.owner_url = SecretString::from("");
    tweak(&mut cfg);
    let replica = Application::build(cfg).await.expect("second replica");
    let addr = replica.local_addr();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(replica.run_until(async move {
        let _ = rx.await;
    }));
    let channel = Channel::from_shared(format!("http://{addr}"))
        .expect("uri")
        .connect()
        .await
        .expect("connect");
    (channel, tx)
}

#[tokio::test]
async fn replicas_sharing_secret_key_accept_each_others_page_tokens_and_api_keys() {
    let app = spawn_app_with(|c| c.secret_key = SecretString::from(SHARED)).await;
    // The second replica has another JWT secret (as if it verified with
    // public keys only), but the same server secret.
    let (channel, _stop) = second_replica(&app, |c| {
        c.jwt.secret = SecretString::from("another-jwt-secret-0123456789abcdef0123");
    })
    .await;
    let admin = app.caller(Role::Admin).await;
    for i in 0..3 {
        create_ticket(&app, &admin, new_ticket(&format!("t{i}"))).await;
    }
    let first = app
        .tickets()
        .list_tickets(authed(
            &admin.token,
            pb::ListTicketsRequest {
                page_size: 2,
                ..Default::default()
            },
        ))
        .await
        .expect("page 1")
        .into_inner();
    assert!(!first.next_page_token.is_empty());

    let key = upb::users_service_client::UsersServiceClient::new(app.channel.clone())
        .create_api_key(authed(
            &admin.token,
            upb::CreateApiKeyRequest {
                api_key: Some(upb::ApiKey {
                    display_name: "sync".into(),
                    scopes: vec!["tickets:read".into()],
                    ..Default::default()
                }),
            },
        ))
        .await
        .expect("key")
        .into_inner()
        .key;

    // Replica 2: the key authenticates, and page 1's token continues there.
    let second = pb::tickets_service_client::TicketsServiceClient::new(channel)
        .list_tickets(authed(
            &key,
            pb::ListTicketsRequest {
                page_size: 2,
                page_token: first.next_page_token.clone(),
                ..Default::default()
            },
        ))
        .await
        .expect("replica 2 accepts replica 1's key and page token")
        .into_inner();
    assert_eq!(second.tickets.len(), 1);
    assert!(first.tickets.iter().all(|t| t.id != second.tickets[0].id));
}

#[tokio::test]
async fn replicas_with_different_secret_keys_refuse_each_others_tokens() {
    let app = spawn_app_with(|c| c.secret_key = SecretString::from(SHARED)).await;
    let (channel, _stop) = second_replica(&app, |c| {
        c.secret_key = SecretString::from("a-different-server-secret-0123456789");
    })
    .await;
    let admin = app.caller(Role::Admin).await;
    for i in 0..3 {
        create_ticket(&app, &admin, new_ticket(&format!("t{i}"))).await;
    }
    let first = app
        .tickets()
        .list_tickets(authed(
            &admin.token,
            pb::ListTicketsRequest {
                page_size: 2,
                ..Default::default()
            },
        ))
        .await
        .expect("page 1")
        .into_inner();
    let err = pb::tickets_service_client::TicketsServiceClient::new(channel)
        .list_tickets(authed(
            &admin.token,
            pb::ListTicketsRequest {
                page_size: 2,
                page_token: first.next_page_token,
                ..Default::default()
            },
        ))
        .await
        .expect_err("another deployment's token");
    assert_field_violation(&err, "page_token", "INVALID_PAGE_TOKEN");
}
