//! Peak memory of a ticket export: one tenant with 100,000 tickets, exported
//! as CSV and then as JSONL through the real server and its in-process job
//! worker.
//!
//! ```sh
//! cargo bench --bench export                      # 100,000 tickets
//! cargo bench --bench export -- --tickets 1000000
//! ```
//!
//! It creates a throwaway database on the test PostgreSQL (127.0.0.1:5432 as
//! `postgres`, or DESKD_TEST_PG_HOST / DESKD_TEST_PG_PORT), seeds it with
//! set-based SQL as the owner (benches/stats_seed.sql), runs VACUUM ANALYZE,
//! starts the real server on port 0 with the job worker in the process
//! (`jobs.run_in_serve`) and `exports.dir` in a temporary directory, and
//! calls ExportTickets with an admin's JWT. It then polls GetOperation every
//! 50 ms until the operation is done, reading this process's VmRSS from
//! /proc/self/status at each poll. The seed runs in PostgreSQL (another
//! process), so the RSS before an export is the server's own; the export's
//! working set is the largest RSS during it minus the RSS before. VmHWM (the
//! peak RSS since the process started) cannot be reset, so it is reported
//! after each export as an upper bound. The database is dropped at the end.

use std::time::{Duration, Instant};

use deskd::{
    auth::JwtKeys,
    config::Config,
    proto::{
        operations::v1::{self as opb, GetOperationRequest, operations_service_client::OperationsServiceClient},
        tickets::v1::{self as pb, ExportTicketsRequest, tickets_service_client::TicketsServiceClient},
    },
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
const POLL: Duration = Duration::from_millis(50);

fn tickets_arg() -> i32 {
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        // `cargo bench` passes --bench; ignore what is not ours.
        if arg == "--tickets" {
            return it.next().and_then(|v| v.parse().ok()).expect("--tickets N");
        }
    }
    100_000
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

/// A `/proc/self/status` field in KiB (`VmRSS`, `VmHWM`).
fn status_kib(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or_else(|| panic!("no {field} in /proc/self/status"))
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

/// Seeds the tenant (50 agents, `tickets` tickets) and its admin.
async fn seed(owner: &mut PgConnection, tickets: i32) -> (TenantId, UserId) {
    let tenant = TenantId(Uuid::now_v7());
    sqlx::query("insert into tenants (id, name) values ($1, 'export-bench')")
        .bind(tenant.0)
        .execute(&mut *owner)
        .await
        .expect("tenant");
    sqlx::query(
        "insert into users (tenant_id, id, email, display_name, role) \
         select $1, gen_random_uuid(), 'agent' || i || '@bench.example', 'Agent ' || i, 'agent' \
         from generate_series(1, 50) as i",
    )
    .bind(tenant.0)
    .execute(&mut *owner)
    .await
    .expect("agents");
    sqlx::query(SEED_SQL)
        .bind(tenant.0)
        .bind(tickets)
        .bind(OffsetDateTime::now_utc())
        .bind(730)
        .execute(&mut *owner)
        .await
        .expect("seed tickets");
    let admin = UserId(Uuid::now_v7());
    sqlx::query(
        "insert into users (tenant_id, id, email, display_name, role) values ($1, $2, 'admin@bench.example', 'Admin', 'admin')",
    )
    .bind(tenant.0)
    .bind(admin.0)
    .execute(&mut *owner)
    .await
    .expect("admin");
    (tenant, admin)
}

fn authed<T>(token: &str, msg: T) -> tonic::Request<T> {
    let mut r = tonic::Request::new(msg);
    r.metadata_mut()
        .insert("authorization", format!("Bearer {token}").parse().expect("header"));
    r
}

async fn export(channel: &Channel, token: &str, format: pb::ExportFormat, expected: i32) {
    let mut tickets = TicketsServiceClient::new(channel.clone());
    let mut ops = OperationsServiceClient::new(channel.clone());
    let rss_before = status_kib("VmRSS");
    let hwm_before = status_kib("VmHWM");
    let t = Instant::now();
    let op = tickets
        .export_tickets(authed(
            token,
            ExportTicketsRequest {
                format: format as i32,
                ..Default::default()
            },
        ))
        .await
        .expect("ExportTickets")
        .into_inner()
        .operation
        .expect("operation");
    let mut max_rss = rss_before.max(status_kib("VmRSS"));
    let mut polls = 0usize;
    let done = loop {
        tokio::time::sleep(POLL).await;
        let op = ops
            .get_operation(authed(token, GetOperationRequest { name: op.name.clone() }))
            .await
            .expect("GetOperation")
            .into_inner()
            .operation
            .expect("operation");
        polls += 1;
        max_rss = max_rss.max(status_kib("VmRSS"));
        if op.done {
            break op;
        }
    };
    let wall = t.elapsed();
    let hwm_after = status_kib("VmHWM");
    let res = match done.result {
        Some(opb::operation::Result::Response(r)) => r,
        other => panic!("export did not succeed: {other:?}"),
    };
    assert_eq!(res.row_count, i64::from(expected), "every ticket exported");
    let on_disk = std::fs::metadata(res.uri.trim_start_matches("file://"))
        .expect("export file")
        .len();
    assert_eq!(on_disk, res.size_bytes as u64, "reported size is the file's");
    println!(
        "{:<5}  rows {:>9}  file {:>8.1} MiB  wall {:>6.2} s ({polls} polls)  \
         RSS before {:>6.1} MiB  max RSS during {:>6.1} MiB  (+{:.1} MiB)  VmHWM {:.1} -> {:.1} MiB",
        res.format,
        res.row_count,
        res.size_bytes as f64 / (1024.0 * 1024.0),
        wall.as_secs_f64(),
        mib(rss_before),
        mib(max_rss),
        mib(max_rss.saturating_sub(rss_before)),
        mib(hwm_before),
        mib(hwm_after),
    );
}

async fn run(tickets: i32, db: String) {
    let db = db.as_str();
    let (host, port) = pg();
    let mut owner = options(db).connect().await.expect("owner connection");
    let dir = tempfile::tempdir().expect("temp dir");

    let mut cfg = Config {
        listen_addr: "127.0.0.1:0".parse().expect("addr"),
        admin_addr: "127.0.0.1:0".parse().expect("addr"),
        ..Config::default()
    };
    cfg.database.url = SecretString::from(format!("postgres://deskd_app@{host}:{port}/{db}"));
    cfg.database.owner_url = SecretString::from(format!("postgres://postgres@{host}:{port}/{db}"));
    cfg.jwt.secret = SecretString::from(JWT_SECRET);
    cfg.jobs.run_in_serve = true;
    cfg.exports.dir = dir.path().to_path_buf();
    // Building the application migrates the database.
    let app = Application::build(cfg.clone()).await.expect("build (migrates)");

    let t = Instant::now();
    let (tenant, admin) = seed(&mut owner, tickets).await;
    let seeded = t.elapsed();
    let t = Instant::now();
    sqlx::query("vacuum (analyze) tickets")
        .execute(&mut owner)
        .await
        .expect("vacuum");
    println!(
        "seeded {tickets} tickets in {:.1} s; VACUUM ANALYZE {:.1} s",
        seeded.as_secs_f64(),
        t.elapsed().as_secs_f64()
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
    let token = keys.mint(tenant, admin, Duration::from_secs(3600)).expect("mint");

    println!(
        "\nnproc {}, load average before the exports: {}",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        load_average()
    );
    export(&channel, &token, pb::ExportFormat::Csv, tickets).await;
    export(&channel, &token, pb::ExportFormat::Jsonl, tickets).await;
    println!("load average after the exports: {}", load_average());

    let _ = stop_tx.send(());
    let _ = server.await;
    let _ = owner.close().await;
}

fn main() {
    let tickets = tickets_arg();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let db = format!("deskd_bench_export_{}", std::process::id());
    rt.block_on(async {
        admin_exec(format!("create database \"{db}\"")).await;
        // Drop the database even when the run panics.
        let outcome = std::panic::AssertUnwindSafe(run(tickets, db.clone()))
            .catch_unwind()
            .await;
        admin_exec(format!("drop database if exists \"{db}\" with (force)")).await;
        if let Err(panic) = outcome {
            std::panic::resume_unwind(panic);
        }
    });
}
