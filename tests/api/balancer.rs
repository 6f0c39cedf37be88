//! deskd behind a real load balancer: three `deskd serve` processes behind
//! HAProxy (`deploy/haproxy/haproxy.cfg`, h2c on both sides), one PostgreSQL
//! database and one Redis, as `scripts/replicas` runs them. Every call goes
//! through HAProxy; what each replica did is read from its own `/metrics`.

use std::{
    collections::{BTreeMap, HashMap},
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use deskd::{
    proto::{tickets::v1 as pb, users::v1 as upb},
    users::model::Role,
};
use deskd_client::{DeskdClient, RetryEvent, RetryPolicy, proto::tickets::v1 as cpb};
use tonic::transport::Channel;
use uuid::Uuid;

use crate::{
    balancer_support::*,
    helpers::*,
    users_support::{change_role, deactivate_via},
};

/// Every replica of one deployment shares it (page tokens, API key digests).
#[tokio::test]
async fn one_client_connection_is_spread_over_every_replica_per_rpc() {
    let cluster = Cluster::start(&[]).await;
    let alice = cluster.app.caller(Role::Agent).await;
    let connections_before = frontend_connections(&cluster.lb).await;
    let channel = cluster.channel().await;

    let before = cluster.served("ListTickets").await;
    for _ in 0..30 {
        list(&channel, &alice.token).await.expect("list through haproxy");
    }
    let one_by_one = minus(&cluster.served("ListTickets").await, &before);
    // Round robin per request: the 30 calls of one connection take turns.
    assert_eq!(one_by_one, vec![10, 10, 10], "sequential calls per replica");

    // Concurrent calls multiplexed on the same connection are spread too.
    let before = cluster.served("ListTickets").await;
    let calls = (0..30).map(|_| {
        let channel = channel.clone();
        let token = alice.token.clone();
        tokio::spawn(async move { list(&channel, &token).await })
    });
    for c in calls {
        c.await.expect("join").expect("concurrent list");
    }
    let concurrent = minus(&cluster.served("ListTickets").await, &before);
    assert_eq!(concurrent.iter().sum::<u64>(), 30);
    assert!(
        concurrent.iter().all(|&n| n >= 5),
        "concurrent calls per replica: {concurrent:?}"
    );
    eprintln!("per replica: sequential {one_by_one:?}, concurrent {concurrent:?}");

    // All of it came over one client connection: HAProxy balanced requests,
    // not connections.
    assert_eq!(
        frontend_connections(&cluster.lb).await,
        connections_before + 1,
        "client connections to haproxy"
    );
}

/// The connections HAProxy's frontend has accepted so far.
async fn frontend_connections(lb: &HaProxy) -> u64 {
    lb.stats()
        .await
        .iter()
        .find(|r| r["pxname"] == "grpc" && r["svname"] == "FRONTEND")
        .and_then(|r| r["conn_tot"].parse().ok())
        .expect("the frontend's conn_tot")
}

#[tokio::test]
async fn a_tenants_rate_limit_is_one_budget_across_the_replicas() {
    let cluster = Cluster::start(&[]).await;
    let alice = cluster.app.caller(Role::Agent).await;
    let bob = cluster.app.colleague(&alice, Role::Agent).await;
    let other = cluster.app.caller(Role::Agent).await;
    // Six calls per hour for alice's tenant (set before its first call, so
    // no replica has the tenant cached without it).
    let mut conn = cluster.app.db.owner_conn().await;
    sqlx::query(
        "update tenants set rate_limits = '{\"tenant\": {\"requests\": 1, \"period\": \"1h\", \"burst\": 6}}' \
         where id = $1",
    )
    .bind(alice.tenant.0)
    .execute(&mut conn)
    .await
    .expect("override");
    let channel = cluster.channel().await;

    let before = cluster.served("ListTickets").await;
    let (mut admitted, mut limited) = (0, 0);
    for i in 0..18 {
        let who = if i % 2 == 0 { &alice } else { &bob };
        match list(&channel, &who.token).await {
            Ok(_) => admitted += 1,
            Err(e) => {
                assert_eq!(e.code(), tonic::Code::ResourceExhausted, "{e:?}");
                assert_eq!(reason(&e), "RATE_LIMITED", "{e:?}");
                limited += 1;
            }
        }
    }
    let per_replica = minus(&cluster.served("ListTickets").await, &before);
    assert_eq!(per_replica, vec![6, 6, 6], "the calls were spread over the replicas");
    // One budget, not one per replica (which would admit 18).
    assert_eq!((admitted, limited), (6, 12));
    // Each replica refused its share from the state the others wrote.
    let mut refused = Vec::new();
    for r in &cluster.replicas {
        refused.push(metric_sum(r.admin(), "deskd_rate_limit_decisions_total", &["outcome=\"limited\""]).await as u64);
    }
    assert_eq!(refused.iter().sum::<u64>(), 12, "{refused:?}");
    assert!(
        refused.iter().all(|&n| n > 0),
        "every replica refused some: {refused:?}"
    );

    // Another tenant is unaffected, on every replica.
    for _ in 0..3 {
        list(&channel, &other.token).await.expect("another tenant");
    }
}

/// Sends `n` ListTickets as `token` one after the other and returns the
/// outcome of each (Ok, or the error's reason), and how many each replica served.
async fn probe(cluster: &Cluster, channel: &Channel, token: &str, n: usize) -> (Vec<Result<(), String>>, Vec<u64>) {
    let before = cluster.served("ListTickets").await;
    let mut out = Vec::new();
    for _ in 0..n {
        out.push(list(channel, token).await.map(|_| ()).map_err(|e| reason(&e)));
    }
    (out, minus(&cluster.served("ListTickets").await, &before))
}

#[tokio::test]
async fn a_change_through_one_replica_is_seen_at_once_by_the_others() {
    let cluster = Cluster::start(&[]).await;
    let admin = cluster.app.caller(Role::Admin).await;
    let agent = cluster.app.colleague(&admin, Role::Agent).await;
    let promoted = cluster.app.colleague(&admin, Role::Agent).await;
    let suspended = cluster.app.caller(Role::Agent).await;
    let channel = cluster.channel().await;

    // Warm every replica's caches (tenant and principal; two calls each, so
    // the in-process tier holds them, not only Redis).
    for who in [&agent, &promoted, &suspended] {
        let (outcomes, per_replica) = probe(&cluster, &channel, &who.token, 6).await;
        assert!(outcomes.iter().all(Result::is_ok), "{outcomes:?}");
        assert_eq!(per_replica, vec![2, 2, 2]);
    }
    let warm: Vec<f64> = {
        let mut v = Vec::new();
        for r in &cluster.replicas {
            v.push(
                metric_sum(
                    r.admin(),
                    "deskd_cache_requests_total",
                    &["cache_name=\"user\"", "cache_result=\"hit\""],
                )
                .await,
            );
        }
        v
    };
    assert!(
        warm.iter().all(|&h| h >= 1.0),
        "every replica answers from its cache: {warm:?}"
    );

    // Deactivation through one replica: the next call on every replica refuses.
    deactivate_via(&channel, &admin.token, &agent.user.to_string()).await;
    let (outcomes, per_replica) = probe(&cluster, &channel, &agent.token, 3).await;
    assert_eq!(per_replica, vec![1, 1, 1]);
    assert!(
        outcomes
            .iter()
            .all(|o| o.as_ref().err().is_some_and(|r| r == "USER_INACTIVE")),
        "{outcomes:?}"
    );

    // A role change (agent → viewer): every replica refuses a write at once.
    change_role(&channel, &admin.token, &promoted.user.to_string(), upb::Role::Viewer).await;
    let before = cluster.served("CreateTicket").await;
    for _ in 0..3 {
        let err = Cluster::tickets(&channel)
            .create_ticket(authed(
                &promoted.token,
                pb::CreateTicketRequest {
                    ticket: Some(new_ticket("as a viewer now")),
                    request_id: String::new(),
                },
            ))
            .await
            .expect_err("a viewer cannot create");
        assert_eq!(err.code(), tonic::Code::PermissionDenied, "{err:?}");
    }
    assert_eq!(minus(&cluster.served("CreateTicket").await, &before), vec![1, 1, 1]);

    // A suspension by the operator (`deskd tenant suspend`, no replica
    // involved): every replica refuses the tenant's next call.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_deskd"))
        .args(["tenant", "suspend", &suspended.tenant.to_string()])
        .env_clear()
        .env("DESKD_DATABASE_URL", cluster.app.db.app_url())
        .env("DESKD_DATABASE_OWNER_URL", cluster.app.db.owner_url())
        .env("DESKD_JWT_SECRET", JWT_SECRET)
        .env("DESKD_REDIS_URL", format!("redis://{}/0", redis_addr()))
        .env("DESKD_REDIS_KEY_PREFIX", &cluster.prefix)
        .output()
        .expect("run deskd");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let (outcomes, per_replica) = probe(&cluster, &channel, &suspended.token, 3).await;
    assert_eq!(per_replica, vec![1, 1, 1]);
    assert!(
        outcomes
            .iter()
            .all(|o| o.as_ref().err().is_some_and(|r| r == "TENANT_SUSPENDED")),
        "{outcomes:?}"
    );

    // The admin (same tenant as the deactivated agent) is unaffected.
    let (outcomes, _) = probe(&cluster, &channel, &admin.token, 3).await;
    assert!(outcomes.iter().all(Result::is_ok), "{outcomes:?}");
}

#[tokio::test]
async fn each_committed_job_runs_once_per_attempt_with_workers_on_every_replica() {
    let smtp = Smtp::start().await;
    let port = smtp.port.to_string();
    let cluster = Cluster::start(&[("DESKD_SMTP_PORT", &port), ("DESKD_JOBS_BACKOFF_BASE", "50ms")]).await;
    let admin = cluster.app.caller(Role::Admin).await;
    let channel = cluster.channel().await;

    // 30 users through the balancer, each CreateUser enqueueing its welcome
    // e-mail in its transaction; every replica's worker competes for them.
    let mut emails = Vec::new();
    for i in 0..30 {
        let email = format!("u{i}.{}@example.com", &Uuid::new_v4().simple().to_string()[..8]);
        Cluster::users(&channel)
            .create_user(authed(
                &admin.token,
                upb::CreateUserRequest {
                    user: Some(upb::User {
                        email: email.clone(),
                        display_name: format!("User {i}"),
                        role: upb::Role::Agent as i32,
                        ..Default::default()
                    }),
                    request_id: Uuid::new_v4().to_string(),
                },
            ))
            .await
            .expect("create user");
        emails.push(email);
    }
    assert_eq!(cluster.served("CreateUser").await, vec![10, 10, 10]);

    let mut conn = cluster.app.db.owner_conn().await;
    let jobs = || async {
        let mut conn = cluster.app.db.owner_conn().await;
        sqlx::query_as::<_, (String, i32)>(
            "select state, attempts from jobs where kind = 'users.welcome_email' and tenant_id = $1",
        )
        .bind(admin.tenant.0)
        .fetch_all(&mut conn)
        .await
        .expect("jobs")
    };
    until(Duration::from_secs(30), "every welcome job succeeded", || async {
        let rows = jobs().await;
        rows.len() == 30 && rows.iter().all(|(s, _)| s == "succeeded")
    })
    .await;
    let attempts: i64 = sqlx::query_scalar(
        "select sum(attempts)::bigint from jobs where kind = 'users.welcome_email' and tenant_id = $1",
    )
    .bind(admin.tenant.0)
    .fetch_one(&mut conn)
    .await
    .expect("attempts");

    // Every attempt was made by exactly one worker: the replicas' counts of
    // finished attempts add up to the database's, and at least two replicas'
    // workers took part.
    let deadline = Instant::now() + Duration::from_secs(10);
    let per_replica = loop {
        let mut counts = Vec::new();
        for r in &cluster.replicas {
            let label = "job_kind=\"users.welcome_email\"";
            counts.push(metric_sum(r.admin(), "deskd_jobs_attempts_total", &[label]).await as i64);
        }
        if counts.iter().sum::<i64>() >= attempts || Instant::now() > deadline {
            break counts;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    eprintln!("welcome jobs: {attempts} attempts, by replica {per_replica:?}");
    assert_eq!(per_replica.iter().sum::<i64>(), attempts, "{per_replica:?}");
    assert!(
        per_replica.iter().filter(|&&n| n > 0).count() >= 2,
        "workers on several replicas ran jobs: {per_replica:?}"
    );

    // One message per user: no job ran twice, none was lost.
    let delivered = smtp.recipients();
    let want: BTreeMap<String, usize> = emails.iter().map(|e| (e.clone(), 1)).collect();
    assert_eq!(delivered, want);
}

/// What the load saw.
#[derive(Default)]
struct Tally {
    /// CreateTicket acknowledged: title → ticket id.
    acked: HashMap<String, String>,
    /// Every request_id sent (acknowledged or not).
    sent: Vec<String>,
    /// Final outcome per method and code name.
    outcomes: BTreeMap<(String, String), usize>,
    /// The first error of each kind, for the failure message.
    examples: BTreeMap<(String, String), String>,
}

impl Tally {
    fn record<T>(&mut self, method: &str, r: &Result<T, deskd_client::DeskdError>) {
        let code = match r {
            Ok(_) => "OK".to_string(),
            Err(e) => format!("{:?}", e.code()),
        };
        if let Err(e) = r {
            self.examples
                .entry((method.to_string(), code.clone()))
                .or_insert_with(|| format!("{e:?}"));
        }
        *self.outcomes.entry((method.to_string(), code)).or_insert(0) += 1;
    }
}

/// One worker of the load: creates tickets (with request_id), reads each
/// back and lists, until `stop`.
async fn load(client: DeskdClient, worker: usize, stop: Arc<AtomicBool>, tally: Arc<Mutex<Tally>>) {
    let tickets = client.tickets();
    let mut i = 0;
    while !stop.load(Ordering::Relaxed) {
        i += 1;
        let title = format!("load {worker}-{i}");
        tally.lock().expect("tally").sent.push(title.clone());
        let created = tickets
            .create_ticket(cpb::CreateTicketRequest {
                ticket: Some(cpb::Ticket {
                    title: title.clone(),
                    ..Default::default()
                }),
                request_id: Uuid::new_v4().to_string(),
            })
            .await;
        tally.lock().expect("tally").record("CreateTicket", &created);
        let Ok(created) = created else { continue };
        let id = created.ticket.map(|t| t.id).unwrap_or_default();
        tally.lock().expect("tally").acked.insert(title, id.clone());
        let got = tickets.get_ticket(cpb::GetTicketRequest { id: id.clone() }).await;
        if let Ok(got) = &got {
            assert_eq!(got.ticket.as_ref().map(|t| t.id.as_str()), Some(id.as_str()));
        }
        tally.lock().expect("tally").record("GetTicket", &got);
        let listed = tickets
            .list_tickets(cpb::ListTicketsRequest {
                page_size: 5,
                ..Default::default()
            })
            .await;
        tally.lock().expect("tally").record("ListTickets", &listed);
    }
}

// With no drain delay (server.drain_delay = 0): the replica reports not ready,
// sends GOAWAY and closes its listener in the same instant. That this loses
// nothing rests on HAProxy redispatching refused connections and on deskd's
// lingering close (src/startup/linger.rs): without it, about one run in ten
// a response in flight on the stopping replica lost its grpc-status trailer
// to the TCP reset of the closed socket (HAProxy `SD--`, the client UNKNOWN).
#[tokio::test]
async fn a_rolling_restart_under_load_loses_no_acknowledged_write() {
    // The load is not about rate limits: on a quiet machine it passes the
    // default principal limit (200/s) and RESOURCE_EXHAUSTED would be retried.
    let mut cluster = Cluster::start(&[
        ("DESKD_RATE_LIMIT__PRINCIPAL__REQUESTS", "1000000"),
        ("DESKD_RATE_LIMIT__PRINCIPAL__BURST", "1000000"),
    ])
    .await;
    let alice = cluster.app.caller(Role::Agent).await;
    let retries: Arc<Mutex<BTreeMap<String, usize>>> = Arc::default();
    let seen = retries.clone();
    // The client's own retry policy (AIP-194): UNAVAILABLE is retried for
    // reads and for creates that carry a request_id.
    let client = DeskdClient::builder(format!("http://{}", cluster.lb.addr))
        .bearer_token(alice.token.clone())
        .tenant(alice.tenant)
        .timeout(Duration::from_secs(20))
        .retry(RetryPolicy {
            max_attempts: 6,
            initial_backoff: Duration::from_millis(50),
            max_backoff: Duration::from_secs(1),
            multiplier: 2.0,
        })
        .on_retry(Arc::new(move |e: &RetryEvent| {
            *seen
                .lock()
                .expect("retries")
                .entry(format!("{} {:?}", e.method, e.code))
                .or_insert(0) += 1;
        }))
        .connect()
        .await
        .expect("connect");

    let stop = Arc::new(AtomicBool::new(false));
    let tally: Arc<Mutex<Tally>> = Arc::default();
    let workers: Vec<_> = (0..6)
        .map(|w| tokio::spawn(load(client.clone(), w, stop.clone(), tally.clone())))
        .collect();
    let acked = || tally.lock().expect("tally").acked.len();
    let wait_acked = |n: usize| {
        let tally = tally.clone();
        async move {
            until(Duration::from_secs(30), "the load makes progress", || {
                let got = tally.lock().expect("tally").acked.len();
                async move { got >= n }
            })
            .await;
        }
    };
    wait_acked(30).await;

    // Roll two replicas, one after the other, under the load.
    for (i, server) in [(0, "r1"), (1, "r2")] {
        let drained = cluster.stop(i).await;
        assert!(
            drained.iter().any(|l| l.contains("deskd stopped")),
            "graceful stop: {drained:?}"
        );
        cluster.lb.wait_status(server, "DOWN").await;
        let during = acked();
        wait_acked(during + 10).await;
        cluster.restart(i).await;
        cluster.lb.wait_status(server, "UP").await;
        // Back in rotation: the new process serves part of the load.
        until(
            Duration::from_secs(20),
            "the restarted replica serves again",
            || async {
                let admin = cluster.replicas[i].admin();
                let label = "rpc_method=\"CreateTicket\"";
                metric_sum(admin, "rpc_server_call_duration_seconds_count", &[label]).await >= 5.0
            },
        )
        .await;
    }
    let after = acked();
    wait_acked(after + 20).await;
    stop.store(true, Ordering::Relaxed);
    for w in workers {
        w.await.expect("a load worker panicked");
    }

    let tally = std::mem::take(&mut *tally.lock().expect("tally"));
    let retries = retries.lock().expect("retries").clone();
    eprintln!("outcomes: {:?}\nretries: {retries:?}", tally.outcomes);
    // Every RPC ended OK or UNAVAILABLE (what the client retries); no other code.
    for ((method, code), n) in &tally.outcomes {
        assert!(
            code == "OK" || code == "Unavailable",
            "{n} × {method} ended {code}: {:?}\nhaproxy:\n{}",
            tally.examples,
            cluster.lb.log()
        );
    }
    for what in retries.keys() {
        assert!(what.ends_with(" Unavailable"), "retried after something else: {what}");
    }
    // Every acknowledged create exists exactly once, with the acknowledged id;
    // nothing exists that was not sent, and nothing twice.
    let mut conn = cluster.app.db.owner_conn().await;
    let rows: Vec<(String, Uuid)> = sqlx::query_as("select title, id from tickets where tenant_id = $1")
        .bind(alice.tenant.0)
        .fetch_all(&mut conn)
        .await
        .expect("tickets");
    let mut stored: HashMap<String, Vec<String>> = HashMap::new();
    for (title, id) in rows {
        stored.entry(title).or_default().push(id.to_string());
    }
    for (title, id) in &tally.acked {
        assert_eq!(stored.get(title), Some(&vec![id.clone()]), "acknowledged {title}");
    }
    let sent: std::collections::HashSet<&String> = tally.sent.iter().collect();
    for (title, ids) in &stored {
        assert!(sent.contains(title), "a ticket nobody sent: {title}");
        assert_eq!(ids.len(), 1, "{title} stored {} times", ids.len());
    }
    let unacked_stored = stored.len() - tally.acked.len();
    eprintln!(
        "{} creates acknowledged, {} stored; {unacked_stored} stored without an acknowledgement",
        tally.acked.len(),
        stored.len()
    );
    assert!(tally.acked.len() >= 60, "the load ran: {}", tally.acked.len());
}
