//! Rate limits per tenant and per principal.

use std::time::Duration;

use deskd::{config::Quota, proto::tickets::v1 as pb, users::model::Role};
use tonic_types::StatusExt as _;

use crate::helpers::*;

async fn list(app: &TestApp, caller: &Caller) -> Result<(), tonic::Status> {
    app.tickets()
        .list_tickets(authed(&caller.token, pb::ListTicketsRequest::default()))
        .await
        .map(|_| ())
}

#[tokio::test]
async fn principal_limit_answers_resource_exhausted_with_retry_info() {
    let app = spawn_app_with(|c| {
        c.rate_limit.principal = Quota {
            requests: 1,
            period: Duration::from_secs(3600),
            burst: 2,
        };
    })
    .await;
    let alice = app.caller(Role::Agent).await;
    let bob = app.colleague(&alice, Role::Agent).await;

    list(&app, &alice).await.expect("1st");
    list(&app, &alice).await.expect("2nd");
    let err = list(&app, &alice).await.expect_err("3rd is over the burst");
    assert_eq!(err.code(), tonic::Code::ResourceExhausted);
    assert_eq!(reason(&err), "RATE_LIMITED");
    let d = err.get_error_details();
    let delay = d.retry_info().and_then(|r| r.retry_delay).expect("RetryInfo");
    assert!(
        delay > Duration::from_secs(1000) && delay <= Duration::from_secs(3600),
        "{delay:?}"
    );
    let q = d.quota_failure().expect("QuotaFailure");
    assert_eq!(q.violations[0].subject, format!("principal:{}", alice.user));
    let retry_after: u64 = err
        .metadata()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .expect("retry-after metadata");
    assert_eq!(retry_after, delay.as_secs() + u64::from(delay.subsec_nanos() > 0));

    // Another principal of the same tenant has its own budget.
    list(&app, &bob).await.expect("bob is not limited by alice");
}

#[tokio::test]
async fn tenant_limit_is_shared_by_its_principals() {
    let app = spawn_app_with(|c| {
        c.rate_limit.tenant = Quota {
            requests: 1,
            period: Duration::from_secs(3600),
            burst: 3,
        };
    })
    .await;
    let alice = app.caller(Role::Agent).await;
    let bob = app.colleague(&alice, Role::Agent).await;
    let other = app.caller(Role::Agent).await;

    list(&app, &alice).await.expect("1");
    list(&app, &bob).await.expect("2");
    list(&app, &alice).await.expect("3");
    let err = list(&app, &bob).await.expect_err("tenant budget spent");
    assert_eq!(err.code(), tonic::Code::ResourceExhausted);
    let q = err.get_error_details().quota_failure().cloned().expect("QuotaFailure");
    assert_eq!(q.violations[0].subject, format!("tenant:{}", alice.tenant));
    // Another tenant is unaffected.
    list(&app, &other).await.expect("other tenant");
}

#[tokio::test]
async fn health_is_never_rate_limited() {
    let app = spawn_app_with(|c| {
        c.rate_limit.tenant = Quota {
            requests: 1,
            period: Duration::from_secs(3600),
            burst: 1,
        };
    })
    .await;
    let mut health = tonic_health::pb::health_client::HealthClient::new(app.channel.clone());
    for _ in 0..20 {
        health
            .check(tonic_health::pb::HealthCheckRequest::default())
            .await
            .expect("health is public and unlimited");
    }
}
