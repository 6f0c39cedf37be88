//! Health: per-service status follows PostgreSQL's reachability.

use std::time::Duration;

use deskd::{proto::tickets::v1 as pb, users::model::Role};
use secrecy::SecretString;
use tonic_health::pb::{HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient};

use crate::{helpers::*, proxy::Proxy};

const TICKETS: &str = "deskd.tickets.v1.TicketsService";

async fn next_status(stream: &mut tonic::Streaming<tonic_health::pb::HealthCheckResponse>) -> ServingStatus {
    let msg = tokio::time::timeout(Duration::from_secs(20), stream.message())
        .await
        .expect("health status within 20 s")
        .expect("watch stream")
        .expect("a status");
    ServingStatus::try_from(msg.status).expect("known status")
}

#[tokio::test]
async fn health_flips_to_not_serving_while_postgres_is_unreachable_and_back() {
    let db = TestDb::create().await;
    let upstream = pg_upstream().await;
    let proxy = Proxy::start(upstream).await;
    let url = db.app_url_via(proxy.addr);
    let app = spawn_app_on(db, move |c| {
        c.database.url = SecretString::from(url);
        c.database.acquire_timeout = Duration::from_millis(500);
    })
    .await;
    let caller = app.caller(Role::Agent).await;
    create_ticket(&app, &caller, new_ticket("before the outage")).await;

    let mut health = HealthClient::new(app.channel.clone());
    for service in [TICKETS, ""] {
        let s = health
            .check(HealthCheckRequest {
                service: service.into(),
            })
            .await
            .expect("check")
            .into_inner();
        assert_eq!(s.status, ServingStatus::Serving as i32, "{service}");
    }
    let mut watch = health
        .watch(HealthCheckRequest {
            service: TICKETS.into(),
        })
        .await
        .expect("watch")
        .into_inner();
    assert_eq!(next_status(&mut watch).await, ServingStatus::Serving);
    let admin = app.admin_addr.to_string();
    assert_eq!(http_get(&admin, "/readyz").await.0, 200);

    proxy.cut();
    assert_eq!(next_status(&mut watch).await, ServingStatus::NotServing);
    // Orchestrators see the same through the admin listener: not ready, but alive.
    assert_eq!(http_get(&admin, "/readyz").await.0, 503);
    assert_eq!(http_get(&admin, "/livez").await.0, 200);
    // During the outage a request fails as retryable UNAVAILABLE, never INTERNAL.
    let err = app
        .tickets()
        .create_ticket(authed(
            &caller.token,
            pb::CreateTicketRequest {
                ticket: Some(new_ticket("during the outage")),
                request_id: String::new(),
            },
        ))
        .await
        .expect_err("database is unreachable");
    assert_eq!(err.code(), tonic::Code::Unavailable, "{err:?}");
    assert_eq!(reason(&err), "DEPENDENCY_UNAVAILABLE");
    assert!(
        !err.message().contains("127.0.0.1"),
        "leaks internals: {}",
        err.message()
    );

    proxy.restore();
    assert_eq!(next_status(&mut watch).await, ServingStatus::Serving);
    assert_eq!(http_get(&admin, "/readyz").await.0, 200);
    // And the server recovered without a restart.
    create_ticket(&app, &caller, new_ticket("after the outage")).await;
}

#[tokio::test]
async fn unknown_service_is_not_found() {
    let app = spawn_app().await;
    let err = HealthClient::new(app.channel.clone())
        .check(HealthCheckRequest {
            service: "deskd.nope.v1.NopeService".into(),
        })
        .await
        .expect_err("unknown service");
    assert_eq!(err.code(), tonic::Code::NotFound);
}
