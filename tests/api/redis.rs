//! Redis: limits and caches shared by replicas, precise invalidation across
//! replicas, and degradation (not failure) when Redis is unreachable.

use std::time::{Duration, Instant};

use deskd::{
    config::{Config, Quota},
    proto::{tickets::v1 as pb, users::v1 as upb},
    startup::Application,
    users::model::Role,
};
use secrecy::SecretString;
use tonic::transport::Channel;

use crate::{
    helpers::*,
    proxy::Proxy,
    users_support::{change_role, deactivate_via},
};

pub fn redis_addr() -> String {
    std::env::var("DESKD_TEST_REDIS_ADDR").unwrap_or_else(|_| "127.0.0.1:6379".into())
}

/// Points `cfg` at the test Redis under a key prefix of its own.
fn use_redis(cfg: &mut Config, prefix: &str, addr: &str) {
    cfg.redis.url = SecretString::from(format!("redis://{addr}/0"));
    cfg.redis.key_prefix = prefix.to_string();
    cfg.redis.op_timeout = Duration::from_millis(200);
    cfg.redis.log_interval = Duration::from_millis(100);
}

pub fn prefix() -> String {
    format!("deskd-test-{}", uuid::Uuid::new_v4().simple())
}

/// Deletes every key under `prefix`.
pub async fn clean(prefix: &str) {
    let Ok(client) = redis::Client::open(format!("redis://{}/0", redis_addr())) else {
        return;
    };
    let Ok(mut conn) = client.get_multiplexed_async_connection().await else {
        return;
    };
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{prefix}:*"))
        .query_async(&mut conn)
        .await
        .unwrap_or_default();
    if !keys.is_empty() {
        let _: Result<(), _> = redis::cmd("DEL").arg(keys).query_async(&mut conn).await;
    }
}

async fn redis_exists(key: &str) -> bool {
    let Ok(client) = redis::Client::open(format!("redis://{}/0", redis_addr())) else {
        return false;
    };
    let Ok(mut conn) = client.get_multiplexed_async_connection().await else {
        return false;
    };
    redis::cmd("EXISTS")
        .arg(key)
        .query_async::<i64>(&mut conn)
        .await
        .unwrap_or(0)
        == 1
}

struct Replica {
    channel: Channel,
    _stop: tokio::sync::oneshot::Sender<()>,
}

/// A second server on the same database (and the same Redis settings).
async fn replica(app: &TestApp) -> Replica {
    let mut cfg = app.config.clone();
    cfg.database.owner_url = SecretString::from("");
    let server = Application::build(cfg).await.expect("replica");
    let addr = server.local_addr();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(server.run_until(async move {
        let _ = rx.await;
    }));
    let channel = Channel::from_shared(format!("http://{addr}"))
        .expect("uri")
        .connect()
        .await
        .expect("connect");
    Replica { channel, _stop: tx }
}

fn tickets(channel: &Channel) -> pb::tickets_service_client::TicketsServiceClient<Channel> {
    pb::tickets_service_client::TicketsServiceClient::new(channel.clone())
}

fn users(channel: &Channel) -> upb::users_service_client::UsersServiceClient<Channel> {
    upb::users_service_client::UsersServiceClient::new(channel.clone())
}

async fn list(channel: &Channel, token: &str) -> Result<tonic::Response<pb::ListTicketsResponse>, tonic::Status> {
    tickets(channel)
        .list_tickets(authed(token, pb::ListTicketsRequest::default()))
        .await
}

fn header_u64(md: &tonic::metadata::MetadataMap, name: &str) -> u64 {
    md.get(name)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("metadata {name} missing or not a number: {md:?}"))
}

/// Polls `f` until it is true, for at most `limit`; returns how long it took.
async fn eventually<F, Fut>(limit: Duration, mut f: F) -> Duration
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let start = Instant::now();
    while start.elapsed() < limit {
        if f().await {
            return start.elapsed();
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    panic!("condition not met within {limit:?}");
}

#[tokio::test]
async fn a_tenants_limit_is_shared_by_two_replicas() {
    let p = prefix();
    let addr = redis_addr();
    let app = spawn_app_with(|c| {
        use_redis(c, &p, &addr);
        c.rate_limit.tenant = Quota {
            requests: 1,
            period: Duration::from_secs(3600),
            burst: 6,
        };
    })
    .await;
    let b = replica(&app).await;
    let alice = app.caller(Role::Agent).await;
    let bob = app.colleague(&alice, Role::Agent).await;
    let other = app.caller(Role::Agent).await;

    let mut admitted = 0;
    for i in 0..20 {
        let (channel, who) = if i % 2 == 0 {
            (&app.channel, &alice)
        } else {
            (&b.channel, &bob)
        };
        match list(channel, &who.token).await {
            Ok(_) => admitted += 1,
            Err(e) => {
                assert_eq!(e.code(), tonic::Code::ResourceExhausted, "{e:?}");
                assert_eq!(reason(&e), "RATE_LIMITED");
            }
        }
    }
    // One budget for the tenant across both replicas, not one per replica.
    assert_eq!(admitted, 6);
    // Another tenant is unaffected, on either replica.
    list(&app.channel, &other.token).await.expect("tenant B on replica A");
    list(&b.channel, &other.token).await.expect("tenant B on replica B");
    clean(&p).await;
}

#[tokio::test]
async fn rate_limit_metadata_and_retry_info_are_exact() {
    let p = prefix();
    let addr = redis_addr();
    let app = spawn_app_with(|c| {
        use_redis(c, &p, &addr);
        c.rate_limit.principal = Quota {
            requests: 3,
            period: Duration::from_secs(60),
            burst: 3,
        };
    })
    .await;
    let alice = app.caller(Role::Agent).await;
    for expected_remaining in [2u64, 1, 0] {
        let res = list(&app.channel, &alice.token).await.expect("admitted");
        let md = res.metadata();
        assert_eq!(header_u64(md, "ratelimit-limit"), 3);
        assert_eq!(header_u64(md, "ratelimit-remaining"), expected_remaining);
        let reset = header_u64(md, "ratelimit-reset");
        assert!((1..=60).contains(&reset), "reset {reset}");
    }
    let err = list(&app.channel, &alice.token).await.expect_err("over the limit");
    assert_eq!(err.code(), tonic::Code::ResourceExhausted);
    use tonic_types::StatusExt as _;
    let delay = err
        .get_error_details()
        .retry_info()
        .and_then(|r| r.retry_delay)
        .expect("RetryInfo");
    // One request every 20 s: the next slot opens at most 20 s from now.
    assert!(delay > Duration::ZERO && delay <= Duration::from_secs(20), "{delay:?}");
    assert_eq!(header_u64(err.metadata(), "ratelimit-remaining"), 0);
    assert_eq!(
        header_u64(err.metadata(), "retry-after"),
        delay.as_secs() + u64::from(delay.subsec_nanos() > 0)
    );
    clean(&p).await;
}

#[tokio::test]
async fn plans_and_per_tenant_overrides_choose_the_quota() {
    let p = prefix();
    let addr = redis_addr();
    let app = spawn_app_with(|c| {
        use_redis(c, &p, &addr);
        // The reference design's numbers, as a plan.
        c.rate_limit.plans.insert(
            "reference".into(),
            deskd::config::PlanQuotas {
                tenant: Some(Quota {
                    requests: 100,
                    period: Duration::from_secs(900),
                    burst: 100,
                }),
                principal: Some(Quota {
                    requests: 60,
                    period: Duration::from_secs(60),
                    burst: 60,
                }),
                service_principal: None,
            },
        );
    })
    .await;
    let on_plan = app.caller(Role::Agent).await;
    let overridden = app.caller(Role::Agent).await;
    let mut conn = app.db.owner_conn().await;
    sqlx::query("update tenants set plan = 'reference' where id = $1")
        .bind(on_plan.tenant.0)
        .execute(&mut conn)
        .await
        .expect("plan");
    sqlx::query(
        "update tenants set rate_limits = '{\"principal\": {\"requests\": 2, \"period\": \"1h\", \"burst\": 2}}' \
         where id = $1",
    )
    .bind(overridden.tenant.0)
    .execute(&mut conn)
    .await
    .expect("override");

    let res = list(&app.channel, &on_plan.token).await.expect("admitted");
    // The tighter of tenant (100) and principal (60) is reported.
    assert_eq!(header_u64(res.metadata(), "ratelimit-limit"), 60);
    assert_eq!(header_u64(res.metadata(), "ratelimit-remaining"), 59);

    list(&app.channel, &overridden.token).await.expect("1");
    list(&app.channel, &overridden.token).await.expect("2");
    let err = list(&app.channel, &overridden.token).await.expect_err("override of 2");
    assert_eq!(err.code(), tonic::Code::ResourceExhausted);
    clean(&p).await;
}

#[tokio::test]
async fn changes_through_one_replica_are_seen_by_the_other_at_once() {
    let p = prefix();
    let addr = redis_addr();
    let app = spawn_app_with(|c| use_redis(c, &p, &addr)).await;
    let b = replica(&app).await;
    let admin = app.caller(Role::Admin).await;
    let agent = app.colleague(&admin, Role::Agent).await;

    // Both replicas have the agent cached (in-process and in Redis).
    list(&app.channel, &agent.token).await.expect("A");
    list(&b.channel, &agent.token).await.expect("B");
    assert!(redis_exists(&format!("{p}:cache:user:{}:{}", agent.tenant, agent.user)).await);
    // GetCurrentUser is answered from the principal cache.
    let me = users(&b.channel)
        .get_current_user(authed(&agent.token, upb::GetCurrentUserRequest {}))
        .await
        .expect("me");
    assert_eq!(me.metadata().get("x-cache").and_then(|v| v.to_str().ok()), Some("hit"));

    // A role change through A: B refuses a write at once (pub/sub).
    change_role(&app.channel, &admin.token, &agent.user.to_string(), upb::Role::Viewer).await;
    let token = agent.token.clone();
    let channel = b.channel.clone();
    let took = eventually(Duration::from_secs(2), || {
        let token = token.clone();
        let channel = channel.clone();
        async move {
            let r = tickets(&channel)
                .create_ticket(authed(
                    &token,
                    pb::CreateTicketRequest {
                        ticket: Some(new_ticket("as a viewer now")),
                        request_id: String::new(),
                    },
                ))
                .await;
            matches!(r, Err(e) if e.code() == tonic::Code::PermissionDenied)
        }
    })
    .await;
    eprintln!("role change visible on replica B after {took:?}");

    // Deactivation through B: both replicas refuse the next request.
    deactivate_via(&b.channel, &admin.token, &agent.user.to_string()).await;
    let err = list(&b.channel, &agent.token).await.expect_err("B: at once");
    assert_eq!(reason(&err), "USER_INACTIVE");
    let token = agent.token.clone();
    let channel = app.channel.clone();
    eventually(Duration::from_secs(2), || {
        let token = token.clone();
        let channel = channel.clone();
        async move { matches!(list(&channel, &token).await, Err(e) if reason(&e) == "USER_INACTIVE") }
    })
    .await;
    clean(&p).await;
}

#[tokio::test]
async fn redis_outage_degrades_and_recovers() {
    let p = prefix();
    let upstream: std::net::SocketAddr = redis_addr().parse().expect("redis addr");
    let proxy = Proxy::start(upstream).await;
    let via = proxy.addr.to_string();
    let app = spawn_app_with(|c| {
        use_redis(c, &p, &via);
        c.rate_limit.principal = Quota {
            requests: 1,
            period: Duration::from_secs(3600),
            burst: 3,
        };
    })
    .await;
    let alice = app.caller(Role::Agent).await;
    list(&app.channel, &alice.token).await.expect("1 (Redis up)");
    let decisions = |outcome: &'static str| {
        let admin = app.admin_addr;
        async move {
            metric_sum(
                admin,
                "deskd_rate_limit_decisions_total",
                &[&format!("outcome=\"{outcome}\"")],
            )
            .await
        }
    };
    let fail_open_before = decisions("fail_open").await;
    let redis_failures_before = metric_sum(
        app.admin_addr,
        "deskd_redis_fail_open_total",
        &["component=\"rate_limit\""],
    )
    .await;

    proxy.cut();
    // Fail open: requests keep succeeding beyond the limit, and fast.
    for _ in 0..6 {
        let started = Instant::now();
        list(&app.channel, &alice.token)
            .await
            .expect("served while Redis is down");
        assert!(started.elapsed() < Duration::from_secs(5));
    }
    // Each was counted as a fail-open decision after a failed Redis call.
    assert!(decisions("fail_open").await >= fail_open_before + 6.0);
    assert!(
        metric_sum(
            app.admin_addr,
            "deskd_redis_fail_open_total",
            &["component=\"rate_limit\""]
        )
        .await
            >= redis_failures_before + 6.0
    );
    let mut health = tonic_health::pb::health_client::HealthClient::new(app.channel.clone());
    let h = health
        .check(tonic_health::pb::HealthCheckRequest::default())
        .await
        .expect("health")
        .into_inner();
    assert_eq!(
        h.status,
        tonic_health::pb::health_check_response::ServingStatus::Serving as i32
    );

    // Caching went on in process; a new caller during the outage is loaded
    // from PostgreSQL and served.
    let bob = app.colleague(&alice, Role::Agent).await;
    list(&app.channel, &bob.token)
        .await
        .expect("new caller while Redis is down");

    proxy.restore();
    // deskd goes back to Redis within redis.retry_interval of its return
    // (until then every call still goes on without it, at once).
    let limited_before = decisions("limited").await;
    // Limits resume: alice used 1 of 3 before the outage; the uncounted
    // requests during it do not count, so two more pass, then the limit holds.
    let token = alice.token.clone();
    let channel = app.channel.clone();
    eventually(Duration::from_secs(10), || {
        let token = token.clone();
        let channel = channel.clone();
        async move { matches!(list(&channel, &token).await, Err(e) if e.code() == tonic::Code::ResourceExhausted) }
    })
    .await;
    assert!(decisions("limited").await >= limited_before + 1.0);
    // The shared tier resumed too: a new caller's principal lands in Redis.
    let carol = app.colleague(&alice, Role::Agent).await;
    let key = format!("{p}:cache:user:{}:{}", carol.tenant, carol.user);
    let token = carol.token.clone();
    let channel = app.channel.clone();
    eventually(Duration::from_secs(10), || {
        let token = token.clone();
        let channel = channel.clone();
        let key = key.clone();
        async move {
            let _ = list(&channel, &token).await;
            redis_exists(&key).await
        }
    })
    .await;
    clean(&p).await;
}

#[tokio::test]
async fn fail_closed_refuses_with_unavailable() {
    let p = prefix();
    let upstream: std::net::SocketAddr = redis_addr().parse().expect("redis addr");
    let proxy = Proxy::start(upstream).await;
    let via = proxy.addr.to_string();
    let app = spawn_app_with(|c| {
        use_redis(c, &p, &via);
        c.rate_limit.fail_open = false;
    })
    .await;
    let alice = app.caller(Role::Agent).await;
    list(&app.channel, &alice.token).await.expect("Redis up");
    let closed = ["outcome=\"fail_closed\""];
    let before = metric_sum(app.admin_addr, "deskd_rate_limit_decisions_total", &closed).await;
    proxy.cut();
    let err = list(&app.channel, &alice.token).await.expect_err("fail closed");
    assert!(metric_sum(app.admin_addr, "deskd_rate_limit_decisions_total", &closed).await >= before + 1.0);
    assert_eq!(err.code(), tonic::Code::Unavailable);
    assert_eq!(reason(&err), "DEPENDENCY_UNAVAILABLE");
    proxy.restore();
    let token = alice.token.clone();
    let channel = app.channel.clone();
    eventually(Duration::from_secs(10), || {
        let token = token.clone();
        let channel = channel.clone();
        async move { list(&channel, &token).await.is_ok() }
    })
    .await;
    clean(&p).await;
}

#[tokio::test]
async fn a_suspension_by_the_operator_reaches_every_replica() {
    let p = prefix();
    let addr = redis_addr();
    let app = spawn_app_with(|c| use_redis(c, &p, &addr)).await;
    let b = replica(&app).await;
    let alice = app.caller(Role::Agent).await;
    list(&app.channel, &alice.token).await.expect("A, cached");
    list(&b.channel, &alice.token).await.expect("B, cached");

    let out = std::process::Command::new(env!("CARGO_BIN_EXE_deskd"))
        .args(["tenant", "suspend", &alice.tenant.to_string()])
        .env_clear()
        .env("DESKD_DATABASE_URL", app.db.app_url())
        .env("DESKD_DATABASE_OWNER_URL", app.db.owner_url())
        .env("DESKD_JWT_SECRET", JWT_SECRET)
        .env("DESKD_REDIS_URL", format!("redis://{addr}/0"))
        .env("DESKD_REDIS_KEY_PREFIX", &p)
        .output()
        .expect("run deskd");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    for channel in [&app.channel, &b.channel] {
        let token = alice.token.clone();
        let channel = channel.clone();
        eventually(Duration::from_secs(2), || {
            let token = token.clone();
            let channel = channel.clone();
            async move { matches!(list(&channel, &token).await, Err(e) if reason(&e) == "TENANT_SUSPENDED") }
        })
        .await;
    }
    clean(&p).await;
}

fn stats_req() -> deskd::proto::stats::v1::GetTicketStatsRequest {
    deskd::proto::stats::v1::GetTicketStatsRequest::default()
}

async fn stats_cache(channel: &Channel, token: &str) -> String {
    deskd::proto::stats::v1::stats_service_client::StatsServiceClient::new(channel.clone())
        .get_ticket_stats(authed(token, stats_req()))
        .await
        .expect("stats")
        .metadata()
        .get("x-cache")
        .and_then(|v| v.to_str().ok())
        .expect("x-cache on a cached RPC")
        .to_string()
}

#[tokio::test]
async fn stats_are_cached_per_tenant_and_caller_across_replicas() {
    let p = prefix();
    let addr = redis_addr();
    let app = spawn_app_with(|c| use_redis(c, &p, &addr)).await;
    let b = replica(&app).await;
    let admin = app.caller(Role::Admin).await;
    let viewer = app.colleague(&admin, Role::Viewer).await;
    create_ticket(&app, &admin, new_ticket("counted")).await;

    assert_eq!(stats_cache(&app.channel, &admin.token).await, "miss");
    assert_eq!(stats_cache(&app.channel, &admin.token).await, "hit");
    // The other replica finds it in Redis.
    assert_eq!(stats_cache(&b.channel, &admin.token).await, "hit");
    // Another caller of the same tenant has an entry of its own.
    assert_eq!(stats_cache(&b.channel, &viewer.token).await, "miss");
    // The shared entry is keyed by tenant, caller and the query's canonical form.
    let client = redis::Client::open(format!("redis://{addr}/0")).expect("client");
    let mut conn = client.get_multiplexed_async_connection().await.expect("conn");
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{p}:cache:stats:{}:{}:*", admin.tenant, admin.user))
        .query_async(&mut conn)
        .await
        .expect("keys");
    assert_eq!(keys.len(), 1, "{keys:?}");
    clean(&p).await;
}

#[tokio::test]
async fn a_hundred_concurrent_misses_make_one_computation() {
    let app = spawn_app().await;
    let admin = app.caller(Role::Admin).await;
    create_ticket(&app, &admin, new_ticket("counted")).await;
    let mut set = tokio::task::JoinSet::new();
    for _ in 0..100 {
        let channel = app.channel.clone();
        let token = admin.token.clone();
        set.spawn(async move { stats_cache(&channel, &token).await });
    }
    let mut misses = 0;
    let mut hits = 0;
    while let Some(r) = set.join_next().await {
        match r.expect("join").as_str() {
            "miss" => misses += 1,
            "hit" => hits += 1,
            other => panic!("x-cache {other}"),
        }
    }
    assert_eq!(
        (misses, hits),
        (1, 99),
        "one PostgreSQL computation for 100 concurrent requests"
    );
}
