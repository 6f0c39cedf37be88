//! Start-up checks, deadlines, load shedding and graceful shutdown.

use std::time::Duration;

use deskd::{proto::tickets::v1 as pb, startup::Application, users::model::Role};
use secrecy::SecretString;
use sqlx::{AssertSqlSafe, ConnectOptions, Connection};
use uuid::Uuid;

use crate::helpers::*;

/// Builds a server whose serving role is `role` and expects the refusal to say `why`.
async fn assert_refused(db: &TestDb, role: &str, why: &str) {
    let (host, port) = pg_host_port();
    let mut cfg = test_config(db);
    cfg.database.url = SecretString::from(format!("postgres://{role}@{host}:{port}/{}", db.name));
    // No owner URL: nothing may "fix" the role before the check.
    cfg.database.owner_url = SecretString::from("");
    let err = match Application::build(cfg).await {
        Ok(_) => panic!("a server running as {role} must refuse to start"),
        Err(e) => format!("{e:#}"),
    };
    assert!(err.contains("refusing to serve"), "{err}");
    assert!(err.contains(why), "{err}");
    assert!(err.contains("DESKD_DATABASE_URL"), "says how to fix it: {err}");
}

#[tokio::test]
async fn refuses_to_serve_as_a_role_that_bypasses_rls() {
    // A migrated database first.
    let app = spawn_app().await;
    let db = &app.db;

    assert_refused(db, "postgres", "is a superuser").await;

    let suffix = Uuid::new_v4().simple().to_string();
    let bypass = format!("deskd_t_bypass_{}", &suffix[..12]);
    let owner = format!("deskd_t_owner_{}", &suffix[..12]);
    let mut conn = db.owner_conn().await;
    for stmt in [
        format!("create role {bypass} login bypassrls"),
        format!("grant connect on database \"{}\" to {bypass}", db.name),
        format!("create role {owner} login"),
        format!("grant connect on database \"{}\" to {owner}", db.name),
        format!("alter table tickets owner to {owner}"),
    ] {
        sqlx::query(AssertSqlSafe(stmt))
            .execute(&mut conn)
            .await
            .expect("set-up");
    }

    assert_refused(db, &bypass, "has BYPASSRLS").await;
    assert_refused(db, &owner, "owns").await;

    // The real app role passes the same check.
    let mut cfg = test_config(db);
    cfg.database.owner_url = SecretString::from("");
    sqlx::query("alter table tickets owner to postgres")
        .execute(&mut conn)
        .await
        .expect("restore owner");
    Application::build(cfg).await.expect("the app role is accepted");

    for stmt in [
        format!("revoke connect on database \"{}\" from {bypass}, {owner}", db.name),
        format!("drop role {bypass}"),
        format!("drop role {owner}"),
    ] {
        sqlx::query(AssertSqlSafe(stmt))
            .execute(&mut conn)
            .await
            .expect("clean-up");
    }
    let _ = conn.close().await;
}

#[tokio::test]
async fn refuses_an_unmigrated_database_with_a_hint() {
    let db = TestDb::create().await;
    let mut cfg = test_config(&db);
    cfg.database.owner_url = SecretString::from("");
    // The app role may not exist yet on a brand-new cluster; the check must
    // fail either way, naming the fix.
    let err = match Application::build(cfg).await {
        Ok(_) => panic!("must refuse"),
        Err(e) => format!("{e:#}"),
    };
    assert!(
        err.contains("deskd migrate") || err.contains("DESKD_DATABASE_URL"),
        "{err}"
    );
}

/// Locks a ticket row from outside the server so an UpdateTicket on it waits.
async fn lock_ticket(app: &TestApp, id: &str) -> sqlx::Transaction<'static, sqlx::Postgres> {
    let opts = sqlx::postgres::PgConnectOptions::new()
        .host(&pg_host_port().0)
        .port(pg_host_port().1)
        .username("postgres")
        .database(&app.db.name);
    let conn = opts.connect().await.expect("connect");
    let conn: &'static mut sqlx::PgConnection = Box::leak(Box::new(conn));
    let mut tx = conn.begin().await.expect("begin");
    sqlx::query("select 1 from tickets where id = $1 for update")
        .bind(Uuid::parse_str(id).expect("uuid"))
        .execute(&mut *tx)
        .await
        .expect("lock");
    tx
}

async fn wait_for_lock_waiter(app: &TestApp) {
    wait_lock_waiters(app, 1).await;
}

fn retitle(id: &str, title: &str) -> pb::UpdateTicketRequest {
    pb::UpdateTicketRequest {
        ticket: Some(pb::Ticket {
            id: id.into(),
            title: title.into(),
            ..Default::default()
        }),
        update_mask: Some(prost_types::FieldMask {
            paths: vec!["title".into()],
        }),
    }
}

#[tokio::test]
async fn client_deadline_bounds_database_work() {
    let app = spawn_app().await;
    let caller = app.caller(Role::Agent).await;
    let t = create_ticket(&app, &caller, new_ticket("original")).await;
    let lock = lock_ticket(&app, &t.id).await;

    let mut req = authed(&caller.token, retitle(&t.id, "changed"));
    req.set_timeout(Duration::from_millis(300));
    let err = app
        .tickets()
        .update_ticket(req)
        .await
        .expect_err("blocked past the deadline");
    // tonic's client enforces the same deadline itself and reports its own
    // expiry as CANCELLED; the server's answer (DEADLINE_EXCEEDED) is checked
    // without a client timer in `server_maximum_duration_answers_deadline_exceeded`.
    assert!(
        matches!(err.code(), tonic::Code::DeadlineExceeded | tonic::Code::Cancelled),
        "{err:?}"
    );
    // The server abandoned the database work while the lock is still held:
    // its statement timeout (derived from the deadline) ended the wait.
    wait_lock_waiters(&app, 0).await;

    lock.rollback().await.expect("release");
    let got = app
        .tickets()
        .get_ticket(authed(&caller.token, pb::GetTicketRequest { id: t.id.clone() }))
        .await
        .expect("get")
        .into_inner()
        .ticket
        .expect("ticket");
    assert_eq!(got.title, "original", "the timed-out update must not have been applied");
}

#[tokio::test]
async fn server_maximum_duration_answers_deadline_exceeded() {
    let app = spawn_app_with(|c| c.server.max_request_duration = Duration::from_millis(300)).await;
    let caller = app.caller(Role::Agent).await;
    let t = create_ticket(&app, &caller, new_ticket("original")).await;
    let lock = lock_ticket(&app, &t.id).await;
    // No client deadline at all: the server's cap applies.
    let err = app
        .tickets()
        .update_ticket(authed(&caller.token, retitle(&t.id, "changed")))
        .await
        .expect_err("capped by the server");
    assert_eq!(err.code(), tonic::Code::DeadlineExceeded, "{err:?}");
    lock.rollback().await.expect("release");
}

#[tokio::test]
async fn graceful_shutdown_lets_an_in_flight_rpc_finish() {
    let mut app = spawn_app().await;
    let caller = app.caller(Role::Agent).await;
    let t = create_ticket(&app, &caller, new_ticket("original")).await;
    let lock = lock_ticket(&app, &t.id).await;

    let mut client = app.tickets();
    let token = caller.token.clone();
    let id = t.id.clone();
    let in_flight = tokio::spawn(async move { client.update_ticket(authed(&token, retitle(&id, "finished"))).await });
    wait_for_lock_waiter(&app).await;

    // SIGTERM equivalent while the RPC is blocked inside its transaction.
    app.signal_shutdown();
    let server = app.server.take().expect("server task");
    // The server must not stop while the RPC is in flight...
    let server = tokio::spawn(server);
    lock.commit().await.expect("release");
    // ...and the RPC completes normally.
    let res = in_flight.await.expect("join").expect("the in-flight RPC succeeds");
    assert_eq!(res.into_inner().ticket.expect("ticket").title, "finished");
    server
        .await
        .expect("join")
        .expect("server task")
        .expect("server stops cleanly");
    // Nothing listens any more.
    assert!(tokio::net::TcpStream::connect(app.addr).await.is_err());
}

#[tokio::test]
async fn during_the_drain_delay_it_reports_not_ready_and_still_serves() {
    let drain = Duration::from_secs(5);
    let mut app = spawn_app_with(|c| c.server.drain_delay = drain).await;
    let caller = app.caller(Role::Agent).await;
    let mut health = tonic_health::pb::health_client::HealthClient::new(app.channel.clone());
    let mut watch = health
        .watch(tonic_health::pb::HealthCheckRequest { service: String::new() })
        .await
        .expect("watch")
        .into_inner();
    let serving = tonic_health::pb::health_check_response::ServingStatus::Serving as i32;
    assert_eq!(watch.message().await.expect("watch").expect("status").status, serving);

    app.signal_shutdown();
    let started = std::time::Instant::now();
    let server = tokio::spawn(app.server.take().expect("server task"));
    let status = watch.message().await.expect("watch").expect("status").status;
    assert_ne!(status, serving, "health turns NOT_SERVING first thing");
    let admin = app.admin_addr.to_string();
    assert_eq!(http_get(&admin, "/readyz").await.0, 503, "not ready for balancers");
    // A balancer that has not noticed yet still gets its RPCs served, on an
    // existing connection and on a new one.
    create_ticket(&app, &caller, new_ticket("during the drain")).await;
    let fresh = tonic::transport::Channel::from_shared(format!("http://{}", app.addr))
        .expect("uri")
        .connect()
        .await
        .expect("the listener still accepts during the drain delay");
    let got = pb::tickets_service_client::TicketsServiceClient::new(fresh)
        .list_tickets(authed(&caller.token, pb::ListTicketsRequest::default()))
        .await
        .expect("served on a new connection");
    assert_eq!(got.into_inner().tickets.len(), 1);
    assert!(started.elapsed() < drain, "the checks above ran within the delay");
    server
        .await
        .expect("join")
        .expect("server task")
        .expect("server stops cleanly");
    assert!(started.elapsed() >= drain, "it stopped only after the drain delay");
    assert!(tokio::net::TcpStream::connect(app.addr).await.is_err());
}

#[tokio::test]
async fn shutdown_grace_period_bounds_the_drain() {
    let mut app = spawn_app_with(|c| c.server.shutdown_grace = Duration::from_millis(200)).await;
    let caller = app.caller(Role::Agent).await;
    let t = create_ticket(&app, &caller, new_ticket("original")).await;
    let lock = lock_ticket(&app, &t.id).await;
    let mut client = app.tickets();
    let token = caller.token.clone();
    let id = t.id.clone();
    let in_flight = tokio::spawn(async move { client.update_ticket(authed(&token, retitle(&id, "never"))).await });
    wait_for_lock_waiter(&app).await;
    // The RPC stays blocked; shutdown still completes after the grace period.
    tokio::time::timeout(Duration::from_secs(10), app.shutdown())
        .await
        .expect("shutdown finishes within the grace period")
        .expect("clean stop");
    let res = in_flight.await.expect("join");
    assert!(res.is_err(), "the RPC was cut off: {res:?}");
    lock.rollback().await.expect("release");
}

#[tokio::test]
async fn load_shed_answers_resource_exhausted_at_once() {
    let app = spawn_app_with(|c| c.server.max_in_flight = 1).await;
    let caller = app.caller(Role::Agent).await;
    let t = create_ticket(&app, &caller, new_ticket("original")).await;
    let lock = lock_ticket(&app, &t.id).await;
    let mut client = app.tickets();
    let token = caller.token.clone();
    let id = t.id.clone();
    let blocked = tokio::spawn(async move { client.update_ticket(authed(&token, retitle(&id, "later"))).await });
    wait_for_lock_waiter(&app).await;

    let err = app
        .tickets()
        .get_ticket(authed(&caller.token, pb::GetTicketRequest { id: t.id.clone() }))
        .await
        .expect_err("shed");
    assert_eq!(err.code(), tonic::Code::ResourceExhausted);
    assert_eq!(reason(&err), "OVERLOADED");
    use tonic_types::StatusExt as _;
    assert!(
        err.get_error_details().retry_info().is_some(),
        "RetryInfo tells clients to back off"
    );

    // Health checks are never shed: a busy replica is not a dead one.
    let health = tonic_health::pb::health_client::HealthClient::new(app.channel.clone())
        .check(tonic_health::pb::HealthCheckRequest::default())
        .await
        .expect("health answers under overload")
        .into_inner();
    assert_eq!(
        health.status,
        tonic_health::pb::health_check_response::ServingStatus::Serving as i32
    );

    lock.commit().await.expect("release");
    blocked.await.expect("join").expect("admitted request completes");
    // Capacity is back.
    app.tickets()
        .get_ticket(authed(&caller.token, pb::GetTicketRequest { id: t.id }))
        .await
        .expect("served again");
}

#[tokio::test]
async fn pool_exhaustion_answers_unavailable_quickly() {
    let app = spawn_app_with(|c| {
        c.database.max_connections = 1;
        c.database.acquire_timeout = Duration::from_millis(300);
    })
    .await;
    let caller = app.caller(Role::Agent).await;
    let t = create_ticket(&app, &caller, new_ticket("original")).await;
    let lock = lock_ticket(&app, &t.id).await;
    // This RPC holds the only pooled connection while it waits on the lock.
    let mut client = app.tickets();
    let token = caller.token.clone();
    let id = t.id.clone();
    let holder = tokio::spawn(async move { client.update_ticket(authed(&token, retitle(&id, "held"))).await });
    wait_for_lock_waiter(&app).await;

    let started = std::time::Instant::now();
    let err = app
        .tickets()
        .get_ticket(authed(&caller.token, pb::GetTicketRequest { id: t.id.clone() }))
        .await
        .expect_err("no connection free");
    assert_eq!(err.code(), tonic::Code::Unavailable, "{err:?}");
    assert_eq!(reason(&err), "DEPENDENCY_UNAVAILABLE");
    // Bounded by the acquire timeout, not by the 30 s request maximum.
    assert!(started.elapsed() < Duration::from_secs(10), "{:?}", started.elapsed());

    lock.commit().await.expect("release");
    holder.await.expect("join").expect("the holder completes");
}
