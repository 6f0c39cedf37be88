//! HTTP/2 abuse against a release `deskd serve` (issue #9): a normal
//! client's latency alone, then while attacker connections flood the server
//! continuously (reconnecting whenever it ends their connection), then alone
//! again. docs/reliability.md ("HTTP/2 abuse") records the figures.
//!
//! ```sh
//! cargo bench --bench h2abuse                      # ~1.5 minutes
//! cargo bench --bench h2abuse -- --reset-attackers 2 --flood-attackers 2 --shared-runtime
//! ```
//!
//! The normal client is the load benchmark's GetCurrentUser scenario at
//! c = 8 over 2 connections (`benches/load/*`, included here unchanged).
//! The attackers speak raw frames (`tests/api/h2_raw.rs`):
//!
//! - rapid reset: HEADERS then RST_STREAM(CANCEL) for 200 streams per
//!   write, no credential;
//! - stream flood: 1,400 HEADERS without END_STREAM per write with the
//!   second tenant's valid token (so the first `max_concurrent_streams` stay
//!   open, waiting for request bodies, and the rest are refused).
//!
//! By default one attacker of each kind, on a thread of their own with a
//! single-threaded runtime (at most one core; this bench, deskd and the
//! attackers share the machine). Each attacker records how the server ended
//! its connection. The run writes JSON (default `target/h2abuse.json`).

#[path = "load/driver.rs"]
#[allow(dead_code)]
mod driver;
#[path = "../tests/api/h2_raw.rs"]
mod h2_raw;
#[path = "load/scenarios.rs"]
#[allow(dead_code)]
mod scenarios;
#[path = "load/seed.rs"]
#[allow(dead_code)]
mod seed;
#[path = "load/server.rs"]
#[allow(dead_code)]
mod server;
#[path = "support.rs"]
mod support;

use std::{
    collections::BTreeMap,
    net::SocketAddr,
    path::PathBuf,
    process::ExitCode,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering},
    },
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use futures_util::FutureExt as _;
use serde::Serialize;

use crate::{
    driver::{Shape, Summary},
    h2_raw::{CANCEL, RawH2, grpc_headers, rst_stream, wait_until_ended},
    scenarios::{Scenario, Shared},
    seed::Db,
};

const PATH: &str = "/deskd.users.v1.UsersService/GetCurrentUser";

struct Args {
    duration: Duration,
    warmup: Duration,
    concurrency: u32,
    connections: u32,
    reset_attackers: u32,
    flood_attackers: u32,
    shared_runtime: bool,
    json: PathBuf,
}

fn parse(mut it: impl Iterator<Item = String>) -> Result<Args, String> {
    let mut a = Args {
        duration: Duration::from_secs(20),
        warmup: Duration::from_secs(3),
        concurrency: 8,
        connections: 2,
        reset_attackers: 1,
        flood_attackers: 1,
        shared_runtime: false,
        json: PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/h2abuse.json"),
    };
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or_else(|| format!("{flag} needs a value"));
        let num = |v: String| v.parse::<u32>().map_err(|e| format!("{flag}: {e}"));
        match flag.as_str() {
            // cargo bench passes --bench to the program.
            "--bench" => {}
            "--duration" => a.duration = Duration::from_secs(u64::from(num(value()?)?)),
            "--warmup" => a.warmup = Duration::from_secs(u64::from(num(value()?)?)),
            "--concurrency" => a.concurrency = num(value()?)?.max(1),
            "--connections" => a.connections = num(value()?)?.max(1),
            "--reset-attackers" => a.reset_attackers = num(value()?)?,
            "--flood-attackers" => a.flood_attackers = num(value()?)?,
            "--shared-runtime" => a.shared_runtime = true,
            "--json" => a.json = PathBuf::from(value()?),
            other => return Err(format!("unknown option {other}")),
        }
    }
    Ok(a)
}

/// What the attackers saw.
#[derive(Default)]
struct Tally {
    connections: AtomicU64,
    streams: AtomicU64,
    refused: AtomicU64,
    /// How each connection ended, e.g. "GOAWAY ENHANCE_YOUR_CALM too_many_resets".
    endings: Mutex<BTreeMap<String, u64>>,
}

impl Tally {
    fn ended(&self, how: String) {
        if let Ok(mut m) = self.endings.lock() {
            *m.entry(how).or_insert(0) += 1;
        }
    }
}

#[derive(Serialize)]
struct AttackReport {
    kind: &'static str,
    attackers: u32,
    /// Connections opened during the attack window.
    connections: u64,
    connections_per_s: f64,
    /// Streams opened (HEADERS sent).
    streams: u64,
    /// RST_STREAM(REFUSED_STREAM) received.
    refused_streams: u64,
    /// How the server ended the connections.
    endings: BTreeMap<String, u64>,
}

fn code_name(code: u32) -> String {
    match code {
        0x0 => "NO_ERROR".into(),
        0x1 => "PROTOCOL_ERROR".into(),
        0x2 => "INTERNAL_ERROR".into(),
        0xb => "ENHANCE_YOUR_CALM".into(),
        c => format!("0x{c:x}"),
    }
}

/// One attacker: connect, send one burst, wait until the server ends the
/// connection (at most 10 s), record how, again until `stop`.
async fn attacker(
    addr: SocketAddr,
    burst: impl Fn(&mut RawH2) -> (Vec<u8>, u64),
    tally: Arc<Tally>,
    stop: Arc<AtomicBool>,
) {
    while !stop.load(Ordering::Relaxed) {
        let mut conn = match RawH2::connect(addr).await {
            Ok(c) => c,
            Err(e) => {
                tally.ended(format!("connect error: {}", e.kind()));
                // Back off a little rather than spin.
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        tally.connections.fetch_add(1, Ordering::Relaxed);
        let (bytes, streams) = burst(&mut conn);
        let _ = conn.send(&bytes).await;
        tally.streams.fetch_add(streams, Ordering::Relaxed);
        let how = match wait_until_ended(&mut conn, Instant::now() + Duration::from_secs(10)).await {
            Ok(e) | Err(e) => {
                tally.refused.fetch_add(u64::from(e.refused), Ordering::Relaxed);
                match (e.goaway, e.closed) {
                    (Some((code, debug)), _) => format!("GOAWAY {} {debug}", code_name(code)),
                    (None, true) => "closed without GOAWAY".into(),
                    (None, false) => "not ended within 10 s".into(),
                }
            }
        };
        tally.ended(how);
    }
}

fn rapid_reset_burst(conn: &mut RawH2) -> (Vec<u8>, u64) {
    let mut b = Vec::new();
    for _ in 0..200 {
        let id = conn.next_stream();
        b.extend(grpc_headers(id, PATH, None, false));
        b.extend(rst_stream(id, CANCEL));
    }
    (b, 200)
}

fn stream_flood_burst(conn: &mut RawH2, token: &str) -> (Vec<u8>, u64) {
    let mut b = Vec::new();
    for _ in 0..1400 {
        let id = conn.next_stream();
        b.extend(grpc_headers(id, PATH, Some(token), false));
    }
    (b, 1400)
}

#[derive(Serialize)]
struct Phase {
    name: &'static str,
    summary: Summary,
}

#[derive(Serialize)]
struct Report {
    date_utc: String,
    nproc: usize,
    loadavg_before: String,
    loadavg_after: String,
    scenario: &'static str,
    concurrency: u32,
    connections: u32,
    duration_s: f64,
    phases: Vec<Phase>,
    p99_normal_ms: f64,
    p99_under_attack_ms: f64,
    /// p99 under attack / p99 of the first normal phase.
    p99_ratio: f64,
    /// Whether the attackers shared the normal client's runtime.
    shared_runtime: bool,
    attacks: Vec<AttackReport>,
    deskd_rss_peak_kib: Option<u64>,
}

fn print_phase(name: &str, s: &Summary) {
    println!(
        "  {name:<14} {:>7.0} req/s  p50 {:.2} ms  p90 {:.2} ms  p99 {:.2} ms  max {:.2} ms  errors {:?}",
        s.rps, s.p50_ms, s.p90_ms, s.p99_ms, s.max_ms, s.errors
    );
}

async fn bench(args: &Args, db: &Db) -> Result<bool, String> {
    let dir = tempfile::tempdir().map_err(|e| format!("temporary directory: {e}"))?;
    let loadavg_before = support::load_average();
    let seeded = Arc::new(seed::seed(db, dir.path(), 1000).await?);
    let mut deskd = server::start_deskd(db, dir.path(), false).await?;
    let pid = deskd.proc.pid();
    let addr = deskd.addr;
    let now_micros = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_err(|e| e.to_string())?
        .as_micros() as i64;
    let shared = Arc::new(Shared {
        seeded: seeded.clone(),
        stats_end_micros: now_micros - 1_000_000,
        stats_offset: AtomicI64::new(0),
    });
    let shape = Shape {
        concurrency: args.concurrency,
        connections: args.connections,
        warmup: args.warmup,
        duration: args.duration,
    };
    // The normal client is tenant 1; the flooding credential is tenant 2's.
    let normal = &seeded.tenants[..1];
    let flood_token = seeded.tenants[1].token.clone();
    let run = |name: &'static str| {
        let shared = shared.clone();
        async move {
            let s = driver::run(addr, pid, normal, Scenario::GetCurrentUser, shape, shared).await?;
            print_phase(name, &s);
            Ok::<_, String>(Phase { name, summary: s })
        }
    };
    println!(
        "h2abuse: GetCurrentUser at c={} over {} connections, {} s per phase",
        args.concurrency,
        args.connections,
        args.duration.as_secs()
    );
    let mut phases = vec![run("normal").await?];

    let stop = Arc::new(AtomicBool::new(false));
    let resets = Arc::new(Tally::default());
    let floods = Arc::new(Tally::default());
    // The attackers run on a thread of their own with a single-threaded
    // runtime (`--shared-runtime`: on the normal client's runtime instead),
    // so they never delay the normal client's tasks in its own scheduler
    // and use at most one core.
    let attackers = {
        let (stop, resets, floods, token) = (stop.clone(), resets.clone(), floods.clone(), flood_token.clone());
        let (n_reset, n_flood) = (args.reset_attackers, args.flood_attackers);
        async move {
            let mut tasks = Vec::new();
            for _ in 0..n_reset {
                tasks.push(tokio::spawn(attacker(
                    addr,
                    rapid_reset_burst,
                    resets.clone(),
                    stop.clone(),
                )));
            }
            for _ in 0..n_flood {
                let token = token.clone();
                tasks.push(tokio::spawn(attacker(
                    addr,
                    move |c| stream_flood_burst(c, &token),
                    floods.clone(),
                    stop.clone(),
                )));
            }
            for t in tasks {
                let _ = t.await;
            }
        }
    };
    let attack_started = Instant::now();
    let attack_thread = if args.shared_runtime {
        tokio::spawn(attackers);
        None
    } else {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| format!("attackers' runtime: {e}"))?;
        Some(std::thread::spawn(move || rt.block_on(attackers)))
    };
    phases.push(run("under attack").await?);
    stop.store(true, Ordering::Relaxed);
    let attack_s = attack_started.elapsed().as_secs_f64();
    if let Some(t) = attack_thread {
        let _ = tokio::task::spawn_blocking(move || t.join()).await;
    }
    phases.push(run("normal again").await?);
    let rss_peak = pid.and_then(|p| server::memory_kib(p).1);
    deskd.proc.stop();

    let report_of = |kind: &'static str, attackers: u32, t: &Tally| AttackReport {
        kind,
        attackers,
        connections: t.connections.load(Ordering::Relaxed),
        connections_per_s: t.connections.load(Ordering::Relaxed) as f64 / attack_s,
        streams: t.streams.load(Ordering::Relaxed),
        refused_streams: t.refused.load(Ordering::Relaxed),
        endings: t.endings.lock().map(|m| m.clone()).unwrap_or_default(),
    };
    let attacks = vec![
        report_of("rapid_reset", args.reset_attackers, &resets),
        report_of("stream_flood", args.flood_attackers, &floods),
    ];
    let p99_normal_ms = phases[0].summary.p99_ms;
    let p99_under_attack_ms = phases[1].summary.p99_ms;
    let report = Report {
        date_utc: time::OffsetDateTime::now_utc()
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap_or_default(),
        nproc: std::thread::available_parallelism().map_or(0, |n| n.get()),
        loadavg_before,
        loadavg_after: support::load_average(),
        scenario: "GetCurrentUser",
        concurrency: args.concurrency,
        connections: args.connections,
        duration_s: args.duration.as_secs_f64(),
        p99_normal_ms,
        p99_under_attack_ms,
        p99_ratio: if p99_normal_ms > 0.0 {
            p99_under_attack_ms / p99_normal_ms
        } else {
            0.0
        },
        phases,
        shared_runtime: args.shared_runtime,
        attacks,
        deskd_rss_peak_kib: rss_peak,
    };
    for a in &report.attacks {
        println!(
            "  {}: {} attackers, {} connections ({:.0}/s), {} streams, {} refused; endings {:?}",
            a.kind, a.attackers, a.connections, a.connections_per_s, a.streams, a.refused_streams, a.endings
        );
    }
    println!(
        "p99 normal {:.2} ms, under attack {:.2} ms: ratio {:.2}; load average {} -> {}",
        report.p99_normal_ms, report.p99_under_attack_ms, report.p99_ratio, report.loadavg_before, report.loadavg_after
    );
    let json = serde_json::to_string_pretty(&report).map_err(|e| e.to_string())?;
    std::fs::write(&args.json, json).map_err(|e| format!("{}: {e}", args.json.display()))?;
    println!("JSON: {}", args.json.display());
    let all_ok = report.phases.iter().all(|p| p.summary.error_count() == 0);
    Ok(all_ok)
}

fn main() -> ExitCode {
    let args = match parse(std::env::args().skip(1)) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("h2abuse: {e}");
            return ExitCode::from(2);
        }
    };
    let rt = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("h2abuse: runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let db = Db::for_this_process();
    rt.block_on(async {
        if let Err(e) = db.create().await {
            eprintln!("h2abuse: cannot create database {}: {e}", db.name);
            return ExitCode::FAILURE;
        }
        // Drop the database even when the run fails or panics; dropping the
        // run's future kills the deskd it started.
        let outcome = tokio::select! {
            r = std::panic::AssertUnwindSafe(bench(&args, &db)).catch_unwind() => r,
            _ = tokio::signal::ctrl_c() => Ok(Err("interrupted".to_string())),
        };
        if let Err(e) = db.drop_db().await {
            eprintln!("warning: could not drop database {}: {e}", db.name);
        }
        match outcome {
            Ok(Ok(true)) => ExitCode::SUCCESS,
            Ok(Ok(false)) => {
                eprintln!("h2abuse: some of the normal client's requests failed");
                ExitCode::FAILURE
            }
            Ok(Err(e)) => {
                eprintln!("h2abuse: {e}");
                ExitCode::FAILURE
            }
            Err(panic) => std::panic::resume_unwind(panic),
        }
    })
}
