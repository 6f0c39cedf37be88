//! The Rust client (`clients/rust`, crate `deskd-client`) against the real
//! server: credentials, tenant, rich errors, deadlines, compression and the
//! AIP-194 retry rules.

use std::{
    sync::{
        Arc, Mutex,
        atomic::{AtomicU32, Ordering},
    },
    time::{Duration, Instant},
};

use deskd::{config::Quota, users::model::Role};
use deskd_client::{
    Code, Compression, DeskdClient, DeskdError, RetryEvent, RetryPolicy,
    proto::{
        stats::v1 as stats,
        tickets::v1 as tickets,
        users::v1::{self as users, ApiKey, CreateApiKeyRequest, GetCurrentUserRequest},
    },
};
use uuid::Uuid;

use crate::{helpers::*, proxy::Proxy};

/// A client of `app` authenticated as `caller`, with its tenant.
async fn client_for(app: &TestApp, caller: &Caller) -> DeskdClient {
    DeskdClient::builder(format!("http://{}", app.addr))
        .bearer_token(caller.token.clone())
        .tenant(caller.tenant)
        .connect()
        .await
        .expect("connect")
}

fn create_request(title: &str, request_id: &str) -> tickets::CreateTicketRequest {
    tickets::CreateTicketRequest {
        ticket: Some(tickets::Ticket {
            title: title.into(),
            ..Default::default()
        }),
        request_id: request_id.into(),
    }
}

/// Fast retries, so that the tests do not wait.
fn quick_retries(max_attempts: u32) -> RetryPolicy {
    RetryPolicy {
        max_attempts,
        initial_backoff: Duration::from_millis(20),
        max_backoff: Duration::from_millis(200),
        multiplier: 2.0,
    }
}

#[tokio::test]
async fn client_creates_gets_and_lists_tickets_with_a_jwt() {
    let app = spawn_app().await;
    let alice = app.caller(Role::Agent).await;
    let client = client_for(&app, &alice).await;

    let created = client
        .tickets()
        .create_ticket(create_request("  Printer on fire  ", ""))
        .await
        .expect("create")
        .ticket
        .expect("ticket");
    assert_eq!(created.title, "Printer on fire");
    assert_eq!(created.reporter_id, alice.user.to_string());

    let got = client
        .tickets()
        .get_ticket(tickets::GetTicketRequest { id: created.id.clone() })
        .await
        .expect("get")
        .ticket;
    assert_eq!(got.as_ref(), Some(&created));

    let listed = client
        .tickets()
        .list_tickets(tickets::ListTicketsRequest::default())
        .await
        .expect("list")
        .tickets;
    assert_eq!(listed, vec![created]);

    let me = client
        .users()
        .get_current_user(GetCurrentUserRequest {})
        .await
        .expect("whoami");
    assert_eq!(me.tenant_id, alice.tenant.to_string());
    assert!(me.api_key_id.is_empty());
}

#[tokio::test]
async fn client_refreshes_its_token_and_compresses_both_ways() {
    let app = spawn_app().await;
    let alice = app.caller(Role::Agent).await;
    let asked = Arc::new(AtomicU32::new(0));
    for compression in [Compression::Gzip, Compression::Zstd] {
        let (token, counter) = (alice.token.clone(), asked.clone());
        let client = DeskdClient::builder(app.addr.to_string())
            .bearer_token_fn(Arc::new(move || {
                counter.fetch_add(1, Ordering::SeqCst);
                token.clone()
            }))
            .compression(compression)
            .connect()
            .await
            .expect("connect");
        let long = "x".repeat(10_000);
        let created = client
            .tickets()
            .create_ticket(tickets::CreateTicketRequest {
                ticket: Some(tickets::Ticket {
                    title: format!("{compression:?}"),
                    description: long.clone(),
                    ..Default::default()
                }),
                request_id: String::new(),
            })
            .await
            .expect("create")
            .ticket
            .expect("ticket");
        assert_eq!(created.description, long);
    }
    // The token source is asked for every call.
    assert_eq!(asked.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn client_authenticates_with_an_api_key() {
    let app = spawn_app().await;
    let admin = app.caller(Role::Admin).await;
    let issued = client_for(&app, &admin)
        .await
        .users()
        .create_api_key(CreateApiKeyRequest {
            api_key: Some(ApiKey {
                display_name: "integration".into(),
                scopes: vec!["tickets:read".into(), "tickets:write".into()],
                ..Default::default()
            }),
        })
        .await
        .expect("create API key");
    let key_id = issued.api_key.as_ref().map(|k| k.id.clone()).expect("key");

    let client = DeskdClient::builder(format!("http://{}", app.addr))
        .api_key(issued.key.clone())
        .tenant(admin.tenant)
        .connect()
        .await
        .expect("connect");
    let me = client
        .users()
        .get_current_user(GetCurrentUserRequest {})
        .await
        .expect("whoami");
    assert_eq!(me.api_key_id, key_id);
    assert_eq!(me.tenant_id, admin.tenant.to_string());
    client
        .tickets()
        .create_ticket(create_request("by a service", ""))
        .await
        .expect("create with the key");
    // The key's scopes do not include users:read.
    let err = client
        .users()
        .list_users(users::ListUsersRequest::default())
        .await
        .expect_err("out of scope");
    assert_eq!(err.code(), Code::PermissionDenied, "{err}");
    assert_eq!(err.attempts(), 1);
}

#[tokio::test]
async fn client_reports_tenant_mismatch_as_a_typed_error() {
    let app = spawn_app().await;
    let alice = app.caller(Role::Agent).await;
    let other = app.caller(Role::Agent).await;
    let client = DeskdClient::builder(format!("http://{}", app.addr))
        .bearer_token(alice.token.clone())
        .tenant(other.tenant)
        .connect()
        .await
        .expect("connect");
    let err: DeskdError = client
        .tickets()
        .list_tickets(tickets::ListTicketsRequest::default())
        .await
        .expect_err("tenant mismatch");
    assert_eq!(err.code(), Code::PermissionDenied, "{err}");
    assert_eq!(err.reason(), Some("TENANT_MISMATCH"));
    assert!(err.domain().is_some_and(|d| !d.is_empty()), "{err:?}");
    assert!(err.request_id().is_some(), "{err:?}");
    assert_eq!(err.attempts(), 1);
    assert!(
        err.to_string().starts_with("PERMISSION_DENIED (TENANT_MISMATCH): "),
        "{err}"
    );
}

#[tokio::test]
async fn client_exposes_field_violations() {
    let app = spawn_app().await;
    let alice = app.caller(Role::Agent).await;
    let client = client_for(&app, &alice).await;
    let err = client
        .tickets()
        .create_ticket(create_request("   ", ""))
        .await
        .expect_err("blank title");
    assert_eq!(err.code(), Code::InvalidArgument, "{err}");
    let v = err
        .field_violation("ticket.title")
        .expect("a violation of ticket.title");
    assert_eq!(v.reason, "REQUIRED");
    assert!(!v.description.is_empty());
    assert_eq!(err.field_violations().len(), 1, "{:?}", err.field_violations());
    assert!(err.request_id().is_some());
}

#[tokio::test]
async fn client_does_not_retry_a_rate_limit_longer_than_its_cap() {
    let app = spawn_app_with(|c| {
        c.rate_limit.principal = Quota {
            requests: 1,
            period: Duration::from_secs(3600),
            burst: 1,
        };
    })
    .await;
    let alice = app.caller(Role::Agent).await;
    let retries = Arc::new(AtomicU32::new(0));
    let seen = retries.clone();
    let cap = Duration::from_millis(200);
    let client = DeskdClient::builder(format!("http://{}", app.addr))
        .bearer_token(alice.token.clone())
        .retry(RetryPolicy {
            max_backoff: cap,
            ..quick_retries(5)
        })
        .on_retry(Arc::new(move |_| {
            seen.fetch_add(1, Ordering::SeqCst);
        }))
        .connect()
        .await
        .expect("connect");
    let handle = client.tickets();
    let list = || handle.list_tickets(tickets::ListTicketsRequest::default());
    list().await.expect("the one request of the hour");

    let started = Instant::now();
    let err = list().await.expect_err("rate limited");
    assert_eq!(err.code(), Code::ResourceExhausted, "{err}");
    let delay = err.retry_delay().expect("RetryInfo");
    assert!(
        delay > Duration::from_secs(1000) && delay <= Duration::from_secs(3600),
        "{delay:?}"
    );
    // Waiting less than the server asked would only hammer it: no retry.
    assert_eq!(err.attempts(), 1);
    assert_eq!(retries.load(Ordering::SeqCst), 0);
    assert!(started.elapsed() < cap, "{:?}", started.elapsed());
}

#[tokio::test]
async fn client_waits_out_a_short_rate_limit_and_retries() {
    let app = spawn_app_with(|c| {
        c.rate_limit.principal = Quota {
            requests: 1,
            period: Duration::from_millis(500),
            burst: 1,
        };
    })
    .await;
    let alice = app.caller(Role::Agent).await;
    let events = Arc::new(Mutex::new(Vec::<RetryEvent>::new()));
    let seen = events.clone();
    let client = DeskdClient::builder(format!("http://{}", app.addr))
        .bearer_token(alice.token.clone())
        .retry(RetryPolicy {
            max_backoff: Duration::from_secs(5),
            ..quick_retries(3)
        })
        .on_retry(Arc::new(move |e| seen.lock().expect("events").push(e.clone())))
        .connect()
        .await
        .expect("connect");
    let handle = client.tickets();
    let list = || handle.list_tickets(tickets::ListTicketsRequest::default());
    list().await.expect("first");
    list().await.expect("second, after waiting as told");
    let events = events.lock().expect("events").clone();
    assert!(!events.is_empty());
    for e in &events {
        assert_eq!(e.code, Code::ResourceExhausted);
        assert_eq!(e.method, "deskd.tickets.v1.TicketsService/ListTickets");
        assert!(e.delay > Duration::ZERO, "{e:?}");
    }
}

#[tokio::test]
async fn client_retries_unavailable_only_when_safe() {
    let app = spawn_app().await;
    let alice = app.caller(Role::Agent).await;
    let ticket = create_ticket(&app, &alice, new_ticket("before the outage")).await;
    let proxy = Arc::new(Proxy::start(app.addr).await);

    // A client whose every retry first brings the path back: the retry is
    // then the attempt that gets through.
    let events = Arc::new(Mutex::new(Vec::<RetryEvent>::new()));
    let lazy_client = || {
        let (seen, proxy) = (events.clone(), proxy.clone());
        DeskdClient::builder(format!("http://{}", proxy.addr))
            .bearer_token(alice.token.clone())
            .tenant(alice.tenant)
            .retry(quick_retries(4))
            .on_retry(Arc::new(move |e| {
                seen.lock().expect("events").push(e.clone());
                proxy.restore();
            }))
            .connect_lazy()
            .expect("client")
    };

    // Cut: a create without a request_id may have been applied, so it fails
    // at once.
    proxy.cut();
    let client = lazy_client();
    let err = client
        .tickets()
        .create_ticket(create_request("not retried", ""))
        .await
        .expect_err("path is cut");
    assert_eq!(err.code(), Code::Unavailable, "{err}");
    assert_eq!(err.attempts(), 1);
    assert!(events.lock().expect("events").is_empty());

    // A read is retried, and the retry gets through.
    let got = client
        .tickets()
        .get_ticket(tickets::GetTicketRequest { id: ticket.id.clone() })
        .await
        .expect("get after a retry")
        .ticket;
    assert_eq!(got.map(|t| t.id), Some(ticket.id.clone()));
    {
        let events = events.lock().expect("events");
        assert!(!events.is_empty());
        assert!(events.iter().all(|e| e.code == Code::Unavailable), "{events:?}");
        assert_eq!(events[0].method, "deskd.tickets.v1.TicketsService/GetTicket");
        assert_eq!(events[0].attempt, 1);
    }

    // A create with a request_id is retried too, and creates once.
    events.lock().expect("events").clear();
    proxy.cut();
    let request_id = Uuid::now_v7().to_string();
    let created = lazy_client()
        .tickets()
        .create_ticket(create_request("retried safely", &request_id))
        .await
        .expect("create after a retry")
        .ticket
        .expect("ticket");
    assert!(!events.lock().expect("events").is_empty());
    let again = client_for(&app, &alice)
        .await
        .tickets()
        .create_ticket(create_request("retried safely", &request_id))
        .await
        .expect("same request again")
        .ticket
        .expect("ticket");
    assert_eq!(again.id, created.id);
    let titles: Vec<String> = client_for(&app, &alice)
        .await
        .tickets()
        .list_tickets(tickets::ListTicketsRequest::default())
        .await
        .expect("list")
        .tickets
        .into_iter()
        .map(|t| t.title)
        .collect();
    assert_eq!(
        titles.iter().filter(|t| *t == "retried safely").count(),
        1,
        "{titles:?}"
    );
    assert!(!titles.iter().any(|t| t == "not retried"), "{titles:?}");
}

#[tokio::test]
async fn client_deadline_gives_deadline_exceeded() {
    let app = spawn_app().await;
    let alice = app.caller(Role::Agent).await;
    let client = client_for(&app, &alice).await;
    // Warm up the connection, so that only the call is timed.
    client
        .tickets()
        .list_tickets(tickets::ListTicketsRequest::default())
        .await
        .expect("list");
    let err = client
        .stats()
        .with_timeout(Duration::from_millis(1))
        .get_ticket_stats(stats::GetTicketStatsRequest::default())
        .await
        .expect_err("1 ms is too short");
    assert_eq!(err.code(), Code::DeadlineExceeded, "{err}");
    assert_eq!(err.attempts(), 1);
}
