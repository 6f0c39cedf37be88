//! GetTicketStats at scale: one tenant with 1,000,000 tickets (and a second
//! one with 50,000, for isolation), measured through the real server.
//!
//! ```sh
//! cargo bench --bench stats                       # 1,000,000 tickets, 20 runs per case
//! cargo bench --bench stats -- --tickets 200000 --runs 5
//! ```
//!
//! It creates a throwaway database on the test PostgreSQL (127.0.0.1:5432 as
//! `postgres`, or DESKD_TEST_PG_HOST / DESKD_TEST_PG_PORT), seeds it with
//! set-based SQL as the owner (benches/stats_seed.sql; the rollup triggers
//! fire as for any insert), runs VACUUM ANALYZE, starts the real server on
//! port 0, and calls GetTicketStats with the generated client. Every call
//! asks for a window ending a different microsecond, so a response cache
//! (keyed by the request) can never answer: this measures the uncached
//! path. The database is dropped at the end. Results go to stdout in the
//! shape BENCHMARKS.md records.

use std::time::{Duration, Instant};

use deskd::{
    auth::JwtKeys,
    config::Config,
    proto::stats::v1::{GetTicketStatsRequest, stats_service_client::StatsServiceClient},
    startup::Application,
    tenancy::{TenantId, UserId},
};
use futures_util::FutureExt as _;
use secrecy::SecretString;
use sqlx::{AssertSqlSafe, ConnectOptions, Connection, PgConnection, postgres::PgConnectOptions};
use time::OffsetDateTime;
use tonic::transport::Channel;
use uuid::Uuid;

const SEED_SQL: &str = include_str!("stats_seed.sql");
const JWT_SECRET: &str = "bench-secret-0123456789abcdef0123456789";

struct Args {
    tickets: i32,
    runs: usize,
    /// Leave the seeded rollups in one shard row per key (`--one-shard`).
    one_shard: bool,
}

fn args() -> Args {
    let mut a = Args {
        tickets: 1_000_000,
        runs: 20,
        one_shard: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--tickets" => a.tickets = it.next().and_then(|v| v.parse().ok()).expect("--tickets N"),
            "--runs" => a.runs = it.next().and_then(|v| v.parse().ok()).expect("--runs N"),
            "--one-shard" => a.one_shard = true,
            // `cargo bench` passes --bench; ignore what is not ours.
            _ => {}
        }
    }
    a
}

fn pg() -> (String, u16) {
    let host = std::env::var("DESKD_TEST_PG_HOST").unwrap_or_else(|_| "127.0.0.1".into());
    let port = std::env::var("DESKD_TEST_PG_PORT")
        .ok()
        .and_then(|p| p.parse().ok())
        .unwrap_or(5432);
    (host, port)
}

fn options(db: &str) -> PgConnectOptions {
    let (host, port) = pg();
    PgConnectOptions::new()
        .host(&host)
        .port(port)
        .username("postgres")
        .database(db)
}

/// The seed's inserts ran in one server process, so every rollup count sits
/// in one shard row. A live tenant's writes come from many processes and fill
/// all 8 shards of a created-rollup key: spread each count over them (equal parts), as the
/// steady state the stats queries read.
async fn spread_rollups(owner: &mut PgConnection) {
    // The resolved rollup has no shards.
    for (table, key) in [("ticket_stats_created_daily", "tenant_id, day, status, priority")] {
        for sql in [
            format!("create temp table spread as select {key}, sum(n)::int8 as n from {table} group by {key}"),
            format!("delete from {table}"),
            format!(
                "insert into {table} ({key}, shard, n) \
                 select {key}, s, n / 8 + case when s < n % 8 then 1 else 0 end \
                 from spread, generate_series(0, 7) as s \
                 where n / 8 + case when s < n % 8 then 1 else 0 end <> 0"
            ),
            "drop table spread".to_string(),
        ] {
            sqlx::query(AssertSqlSafe(sql))
                .execute(&mut *owner)
                .await
                .expect("spread the rollups over their shards");
        }
    }
}
async fn admin_exec(sql: String) {
    let mut conn = options("postgres").connect().await.expect("connect as postgres");
    sqlx::query(AssertSqlSafe(sql))
        .execute(&mut conn)
        .await
        .expect("admin statement");
    let _ = conn.close().await;
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "?".into())
}

async fn seed_tenant(owner: &mut PgConnection, name: &str, agents: i32, tickets: i32, now: OffsetDateTime) -> TenantId {
    let tenant = TenantId(Uuid::now_v7());
    sqlx::query("insert into tenants (id, name) values ($1, $2)")
        .bind(tenant.0)
        .bind(name)
        .execute(&mut *owner)
        .await
        .expect("tenant");
    sqlx::query(
        "insert into users (tenant_id, id, email, display_name, role) \
         select $1, gen_random_uuid(), 'agent' || i || '@' || $2 || '.example', 'Agent ' || i, 'agent' \
         from generate_series(1, $3) as i",
    )
    .bind(tenant.0)
    .bind(name)
    .bind(agents)
    .execute(&mut *owner)
    .await
    .expect("agents");
    sqlx::query(SEED_SQL)
        .bind(tenant.0)
        .bind(tickets)
        .bind(now)
        .bind(730)
        .execute(&mut *owner)
        .await
        .expect("seed tickets");
    tenant
}

/// The manager whose token the calls use.
async fn manager(owner: &mut PgConnection, tenant: TenantId) -> UserId {
    let id = UserId(Uuid::now_v7());
    sqlx::query(
        "insert into users (tenant_id, id, email, display_name, role) values ($1, $2, 'manager@bench.example', 'Manager', 'viewer')",
    )
    .bind(tenant.0)
    .bind(id.0)
    .execute(&mut *owner)
    .await
    .expect("manager");
    id
}

struct Case {
    label: String,
    days: i64,
    assignee: String,
    tag: String,
    priority: i32,
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

async fn run(args: Args, db: String) {
    let db = db.as_str();
    let (host, port) = pg();
    let mut owner = options(db).connect().await.expect("owner connection");

    // Migrate by building (and dropping) an application.
    let mut cfg = Config {
        listen_addr: "127.0.0.1:0".parse().expect("addr"),
        admin_addr: "127.0.0.1:0".parse().expect("addr"),
        ..Config::default()
    };
    cfg.database.url = SecretString::from(format!("postgres://deskd_app@{host}:{port}/{db}"));
    cfg.database.owner_url = SecretString::from(format!("postgres://postgres@{host}:{port}/{db}"));
    cfg.jwt.secret = SecretString::from(JWT_SECRET);
    let app = Application::build(cfg.clone()).await.expect("build (migrates)");

    let now = OffsetDateTime::now_utc();
    let t = Instant::now();
    let a = seed_tenant(&mut owner, "a", 50, args.tickets, now).await;
    let seed_a = t.elapsed();
    let t = Instant::now();
    let b = seed_tenant(&mut owner, "b", 10, (args.tickets / 20).max(1), now).await;
    let seed_b = t.elapsed();
    let user = manager(&mut owner, a).await;
    if !args.one_shard {
        spread_rollups(&mut owner).await;
    }
    let t = Instant::now();
    sqlx::query("vacuum (analyze) tickets")
        .execute(&mut owner)
        .await
        .expect("vacuum");
    sqlx::query("analyze ticket_stats_created_daily")
        .execute(&mut owner)
        .await
        .expect("analyze");
    sqlx::query("analyze ticket_stats_resolved_daily")
        .execute(&mut owner)
        .await
        .expect("analyze");
    let vacuum = t.elapsed();

    let (open, busiest, median): (i64, Uuid, Uuid) = sqlx::query_as(
        "select (select count(*) from tickets where tenant_id = $1 and status not in ('resolved', 'closed')), \
                (select assignee_id from tickets where tenant_id = $1 and assignee_id is not null \
                 group by 1 order by count(*) desc limit 1), \
                (select assignee_id from tickets where tenant_id = $1 and assignee_id is not null \
                 group by 1 order by count(*) desc offset 24 limit 1)",
    )
    .bind(a.0)
    .fetch_one(&mut owner)
    .await
    .expect("facts");
    let (busiest_n, median_n, billing_n): (i64, i64, i64) = sqlx::query_as(
        "select count(*) filter (where assignee_id = $2), count(*) filter (where assignee_id = $3), \
                count(*) filter (where tags @> array['billing']) from tickets where tenant_id = $1",
    )
    .bind(a.0)
    .bind(busiest)
    .bind(median)
    .fetch_one(&mut owner)
    .await
    .expect("filter sizes");
    println!(
        "seeded tenant A: {} tickets in {:.1} s; tenant B: {} tickets in {:.1} s; VACUUM ANALYZE {:.1} s",
        args.tickets,
        seed_a.as_secs_f64(),
        (args.tickets / 20).max(1),
        seed_b.as_secs_f64(),
        vacuum.as_secs_f64()
    );
    println!(
        "tenant A: {open} open; busiest assignee {busiest_n} tickets, median assignee {median_n}, tag `billing` {billing_n}"
    );

    let addr = app.local_addr();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(app.run_until(async move {
        let _ = stop_rx.await;
    }));
    let channel = Channel::from_shared(format!("http://{addr}"))
        .expect("uri")
        .connect()
        .await
        .expect("connect");
    let keys = JwtKeys::hs256(&cfg.jwt.secret, &cfg.jwt).expect("keys");
    let token = keys.mint(a, user, Duration::from_secs(3600)).expect("mint");
    let mut client = StatsServiceClient::new(channel);

    let mut cases = Vec::new();
    for days in [30, 366] {
        let base = |label: &str| Case {
            label: format!("{days:>3} days, {label}"),
            days,
            assignee: String::new(),
            tag: String::new(),
            priority: 0,
        };
        cases.push(base("unfiltered"));
        cases.push(Case {
            priority: 4, // TICKET_PRIORITY_URGENT
            ..base("priority URGENT")
        });
        cases.push(Case {
            assignee: median.to_string(),
            ..base("median assignee")
        });
        cases.push(Case {
            assignee: busiest.to_string(),
            ..base("busiest assignee")
        });
        cases.push(Case {
            tag: "billing".into(),
            ..base("tag `billing`")
        });
    }

    println!(
        "\nnproc {}, load average before the calls: {}",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        load_average()
    );
    println!(
        "{:<30} {:>9} {:>9} {:>9} {:>9}   (ms, {} runs each, after 2 warm-up calls)",
        "case", "min", "median", "p90", "max", args.runs
    );
    let mut microsecond = 0i64;
    for case in &cases {
        let mut times = Vec::with_capacity(args.runs);
        let mut created = 0;
        for i in 0..args.runs + 2 {
            microsecond += 1;
            // A distinct end each call: no cache can have it.
            let end = now - time::Duration::microseconds(microsecond);
            let req = GetTicketStatsRequest {
                start_time: Some(prost_types::Timestamp {
                    seconds: (end - time::Duration::days(case.days)).unix_timestamp(),
                    nanos: (end - time::Duration::days(case.days)).nanosecond() as i32,
                }),
                end_time: Some(prost_types::Timestamp {
                    seconds: end.unix_timestamp(),
                    nanos: end.nanosecond() as i32,
                }),
                assignee_id: case.assignee.clone(),
                tag: case.tag.clone(),
                priority: case.priority,
                top_assignees_limit: 10,
            };
            let mut r = tonic::Request::new(req);
            r.metadata_mut()
                .insert("authorization", format!("Bearer {token}").parse().expect("header"));
            let t = Instant::now();
            let res = client.get_ticket_stats(r).await.expect("GetTicketStats");
            let took = t.elapsed();
            if let Some(c) = res.metadata().get("x-cache") {
                assert_eq!(
                    c, "miss",
                    "{}: a cached answer would not measure the database",
                    case.label
                );
            }
            created = res.into_inner().created_count;
            if i >= 2 {
                times.push(took);
            }
        }
        times.sort_unstable();
        let pct = |p: usize| times[((p * times.len()).div_ceil(100)).max(1) - 1];
        println!(
            "{:<30} {:>9.1} {:>9.1} {:>9.1} {:>9.1}   created_count {created}",
            case.label,
            ms(times[0]),
            ms(pct(50)),
            ms(pct(90)),
            ms(times[times.len() - 1]),
        );
    }
    println!("load average after the calls: {}", load_average());

    // Isolation: B's figures are B's alone.
    let b_user = manager(&mut owner, b).await;
    let b_token = keys.mint(b, b_user, Duration::from_secs(3600)).expect("mint");
    let mut r = tonic::Request::new(GetTicketStatsRequest {
        start_time: Some(prost_types::Timestamp {
            seconds: (now - time::Duration::days(366)).unix_timestamp(),
            nanos: 0,
        }),
        end_time: Some(prost_types::Timestamp {
            seconds: now.unix_timestamp(),
            nanos: 0,
        }),
        ..Default::default()
    });
    r.metadata_mut()
        .insert("authorization", format!("Bearer {b_token}").parse().expect("header"));
    let b_stats = client.get_ticket_stats(r).await.expect("B").into_inner();
    let b_truth: i64 = sqlx::query_scalar(
        "select count(*) from tickets where tenant_id = $1 and create_time >= $2 and create_time < $3",
    )
    .bind(b.0)
    .bind(OffsetDateTime::from_unix_timestamp((now - time::Duration::days(366)).unix_timestamp()).expect("ts"))
    .bind(OffsetDateTime::from_unix_timestamp(now.unix_timestamp()).expect("ts"))
    .fetch_one(&mut owner)
    .await
    .expect("B truth");
    assert_eq!(b_stats.created_count, b_truth, "tenant B sees exactly its own tickets");
    println!(
        "tenant B, 366 days: created_count {} (= its own tickets)",
        b_stats.created_count
    );

    let _ = stop_tx.send(());
    let _ = server.await;
    let _ = owner.close().await;
}

fn main() {
    let args = args();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let db = format!("deskd_bench_stats_{}", std::process::id());
    rt.block_on(async {
        admin_exec(format!("create database \"{db}\"")).await;
        // Drop the database even when the run panics.
        let outcome = std::panic::AssertUnwindSafe(run(args, db.clone())).catch_unwind().await;
        admin_exec(format!("drop database if exists \"{db}\" with (force)")).await;
        if let Err(panic) = outcome {
            std::panic::resume_unwind(panic);
        }
    });
}
