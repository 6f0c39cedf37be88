//! overload: capacity measured closed-loop first, then an open-loop
//! generator offers twice that rate. The load shedder must answer the
//! excess at once (RESOURCE_EXHAUSTED), the admitted requests must keep a
//! bounded latency, goodput must stay at ≥ 80 % of capacity and deskd's
//! memory bounded.

use std::{
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use deskd_client::{RetryPolicy, TicketsClient, code_name, proto::tickets::v1 as pb};
use serde::Serialize;

use crate::{
    Ctx,
    cluster::{cpu_time, pin, pin_tree},
    deskd::{self, Deskd},
    tally::{Rec, Tally, percentile_ms},
};

/// Closed-loop workers of the capacity run.
const CAPACITY_WORKERS: usize = 16;
const CAPACITY_WARMUP: Duration = Duration::from_secs(2);
const CAPACITY_RUN: Duration = Duration::from_secs(10);
/// HTTP/2 connections of both runs (deskd allows 256 streams on each).
const CONNECTIONS: usize = 4;
/// The open-loop run offers this multiple of the measured capacity.
const OVERLOAD_FACTOR: f64 = 2.0;
const OPEN_LOOP_RUN: Duration = Duration::from_secs(20);
/// The generator's own bound: past this many unanswered requests it skips
/// (and counts) launches instead of piling up tasks.
const GENERATOR_CAP: usize = 4096;
/// The goodput the issue asks for, in percent of capacity.
pub const REQUIRED_GOODPUT_PCT: f64 = 80.0;
/// "Admitted requests keep a bounded p99": far below any client deadline;
/// a queue that lets p99 pass this is the unbounded kind.
const ADMITTED_P99_BOUND_MS: f64 = 1000.0;
/// A loose ceiling on deskd's resident memory under overload.
const RSS_BOUND_KIB: u64 = 256 * 1024;

/// Which CPUs the server side (deskd, PostgreSQL, Redis) and the load
/// generator (this process) run on.
#[derive(Debug, Clone, Serialize)]
pub struct Placement {
    pub server_cpus: String,
    pub generator_cpus: String,
}

/// The split of `nproc` CPUs: the first half serves, the rest generates.
pub fn placement(nproc: usize) -> Option<Placement> {
    (nproc >= 2).then(|| {
        let half = nproc / 2;
        Placement {
            server_cpus: if half == 1 {
                "0".into()
            } else {
                format!("0-{}", half - 1)
            },
            generator_cpus: if nproc - half == 1 {
                format!("{half}")
            } else {
                format!("{half}-{}", nproc - 1)
            },
        }
    })
}

#[derive(Debug, Clone, Serialize)]
pub struct OverloadReport {
    /// `None`: every process could use every CPU.
    pub placement: Option<Placement>,
    pub max_in_flight: usize,
    pub scenario: String,
    pub capacity_workers: usize,
    pub capacity_rps: f64,
    pub capacity: Tally,
    pub offered_rps: f64,
    pub open_loop_s: f64,
    pub generator_cap: usize,
    pub launched: u64,
    /// Launches skipped because the generator's cap was reached.
    pub skipped_at_generator_cap: u64,
    /// How late the generator launched requests (p99, ms).
    pub launch_lag_p99_ms: f64,
    /// Every open-loop answer; latencies from the scheduled send time.
    pub open_loop: Tally,
    /// OK answers per second of the open-loop run.
    pub goodput_rps: f64,
    pub goodput_pct_of_capacity: f64,
    /// The worst one-second window of OK answers (by completion time).
    pub goodput_min_1s_rps: f64,
    pub admitted: Tally,
    /// RESOURCE_EXHAUSTED and UNAVAILABLE answers.
    pub shed: Tally,
    pub rss_idle_kib: Option<u64>,
    pub rss_after_capacity_kib: Option<u64>,
    /// The largest VmRSS sampled every 100 ms during the open-loop run.
    pub rss_peak_open_loop_kib: u64,
    pub rss_end_kib: Option<u64>,
    /// deskd's VmHWM at the end (its peak over the whole mode).
    pub hwm_kib: Option<u64>,
    /// deskd's CPU time per answer (OK or shed) in the capacity run and
    /// in the open loop, µs.
    pub deskd_cpu_us_per_answer_capacity: Option<f64>,
    pub deskd_cpu_us_per_answer_open_loop: Option<f64>,
    /// deskd's CPU use in the open loop, in CPUs (1.0 = one core busy).
    pub deskd_cpus_open_loop: Option<f64>,
    /// This process's (the generator's) CPU use in the open loop, in CPUs.
    pub generator_cpus_open_loop: Option<f64>,
    pub deskd_error_lines: usize,
    pub broken: Vec<String>,
}

fn record(start: Instant, t0: Instant, code: &'static str) -> Rec {
    Rec {
        start_us: start.saturating_duration_since(t0).as_micros() as u64,
        end_us: t0.elapsed().as_micros() as u64,
        code,
    }
}

async fn get(tickets: &TicketsClient, id: String) -> &'static str {
    match tickets.get_ticket(pb::GetTicketRequest { id }).await {
        Ok(_) => "OK",
        Err(e) => code_name(e.code()),
    }
}

/// Closed loop: `CAPACITY_WORKERS` workers, OK answers per second of the
/// measured window.
async fn capacity(ctx: &Ctx, clients: &[(u32, TicketsClient)]) -> Tally {
    let t0 = Instant::now();
    let measure_from = t0 + CAPACITY_WARMUP;
    let end = measure_from + CAPACITY_RUN;
    let mut tasks = Vec::new();
    for w in 0..CAPACITY_WORKERS {
        let (tenant, tickets) = clients[w % clients.len()].clone();
        let seeded = ctx.seeded.clone();
        tasks.push(tokio::spawn(async move {
            let mut recs = Vec::new();
            loop {
                let start = Instant::now();
                if start >= end {
                    break;
                }
                let id = seeded.ticket_id(tenant, 1 + rand::random::<u32>() % seeded.tickets);
                let code = get(&tickets, id).await;
                if start >= measure_from && Instant::now() <= end {
                    recs.push(record(start, t0, code));
                }
            }
            recs
        }));
    }
    let mut recs = Vec::new();
    for t in tasks {
        if let Ok(r) = t.await {
            recs.extend(r);
        }
    }
    Tally::of(&recs)
}

pub async fn run(ctx: &Ctx, max_in_flight: usize, placement: Option<Placement>) -> Result<OverloadReport, String> {
    if let Some(p) = &placement {
        // The generator's extra work at twice the rate must not take CPU
        // from the server it measures, as on separate machines.
        pin(std::process::id(), &p.generator_cpus)?;
        let postmaster = ctx.pg.postmaster_pid().ok_or("no postmaster.pid")?;
        pin_tree(postmaster, &p.server_cpus)?;
        pin(ctx.redis.pid().ok_or("redis-server is not running")?, &p.server_cpus)?;
    }
    let mut server = Deskd::start(
        &ctx.db,
        &ctx.dir,
        &deskd::Options {
            name: "overload",
            redis_url: &ctx.redis_url,
            redis_prefix: &ctx.redis_prefix,
            max_in_flight: Some(max_in_flight),
            cpus: placement.as_ref().map(|p| p.server_cpus.as_str()),
        },
    )
    .await?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (rss_idle_kib, _) = server.memory_kib();
    let mut clients = Vec::new();
    for i in 0..CONNECTIONS {
        let tenant = &ctx.seeded.tenants[i % ctx.seeded.tenants.len()];
        let c = deskd::client(server.addr, tenant, RetryPolicy::none()).await?;
        clients.push((tenant.number, c.tickets()));
    }

    let cpu0 = cpu_time(server.pid);
    let cap = capacity(ctx, &clients).await;
    let cpu1 = cpu_time(server.pid);
    let capacity_rps = cap.count("OK") as f64 / CAPACITY_RUN.as_secs_f64();
    let (rss_after_capacity_kib, _) = server.memory_kib();
    println!(
        "  capacity: {capacity_rps:.0} OK/s closed-loop at c={CAPACITY_WORKERS} (p99 {:.2} ms; {})",
        cap.p99_ms,
        cap.codes_line()
    );
    if capacity_rps < 1.0 {
        return Err(format!("capacity run answered no OK ({})", cap.codes_line()));
    }

    // Open loop: request i is due at t0 + i / rate, whether or not earlier
    // ones were answered.
    let rate = OVERLOAD_FACTOR * capacity_rps;
    let total = (rate * OPEN_LOOP_RUN.as_secs_f64()) as u64;
    let recs: Arc<Mutex<Vec<Rec>>> = Arc::new(Mutex::new(Vec::with_capacity(total as usize)));
    let lags: Arc<Mutex<Vec<u64>>> = Arc::new(Mutex::new(Vec::with_capacity(total as usize)));
    let outstanding = Arc::new(AtomicUsize::new(0));
    let peak_rss = Arc::new(AtomicU64::new(0));
    let sampling = Arc::new(AtomicBool::new(true));
    let sampler = {
        let (pid, peak, on) = (server.pid, peak_rss.clone(), sampling.clone());
        tokio::spawn(async move {
            while on.load(Ordering::Relaxed) {
                let rss = std::fs::read_to_string(format!("/proc/{pid}/status"))
                    .unwrap_or_default()
                    .lines()
                    .find(|l| l.starts_with("VmRSS:"))
                    .and_then(|l| l.split_whitespace().nth(1))
                    .and_then(|v| v.parse::<u64>().ok())
                    .unwrap_or(0);
                peak.fetch_max(rss, Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
    };
    let me = std::process::id();
    let (deskd_cpu_start, own_cpu_start) = (cpu_time(server.pid), cpu_time(me));
    let t0 = Instant::now();
    let mut launched = 0u64;
    let mut skipped = 0u64;
    let mut i = 0u64;
    while i < total {
        let due = ((t0.elapsed().as_secs_f64() * rate) as u64 + 1).min(total);
        while i < due {
            let scheduled = t0 + Duration::from_secs_f64(i as f64 / rate);
            if outstanding.load(Ordering::Relaxed) >= GENERATOR_CAP {
                skipped += 1;
            } else {
                launched += 1;
                outstanding.fetch_add(1, Ordering::Relaxed);
                let (tenant, tickets) = clients[(i as usize) % clients.len()].clone();
                let id = ctx
                    .seeded
                    .ticket_id(tenant, 1 + rand::random::<u32>() % ctx.seeded.tickets);
                let (recs, lags, outstanding) = (recs.clone(), lags.clone(), outstanding.clone());
                tokio::spawn(async move {
                    let lag = Instant::now().saturating_duration_since(scheduled);
                    let code = get(&tickets, id).await;
                    let rec = record(scheduled, t0, code);
                    if let Ok(mut v) = recs.lock() {
                        v.push(rec);
                    }
                    if let Ok(mut v) = lags.lock() {
                        v.push(lag.as_micros() as u64);
                    }
                    outstanding.fetch_sub(1, Ordering::Relaxed);
                });
            }
            i += 1;
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    // Let the last requests finish (each has a 10 s deadline).
    let drain_until = Instant::now() + deskd::CALL_TIMEOUT + Duration::from_secs(1);
    while outstanding.load(Ordering::Relaxed) > 0 && Instant::now() < drain_until {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let open_wall = t0.elapsed().as_secs_f64();
    let (deskd_cpu_end, own_cpu_end) = (cpu_time(server.pid), cpu_time(me));
    sampling.store(false, Ordering::Relaxed);
    let _ = sampler.await;
    let (rss_end_kib, hwm_kib) = server.memory_kib();
    let deskd_error_lines = server.error_lines().len();
    server.stop();

    let recs = recs.lock().map(|v| v.clone()).unwrap_or_default();
    let mut lags = lags.lock().map(|v| v.clone()).unwrap_or_default();
    lags.sort_unstable();
    let open_loop = Tally::of(&recs);
    let admitted = Tally::of(recs.iter().filter(|r| r.ok()));
    let shed = Tally::of(
        recs.iter()
            .filter(|r| matches!(r.code, "RESOURCE_EXHAUSTED" | "UNAVAILABLE")),
    );
    let window = OPEN_LOOP_RUN.as_secs_f64();
    let goodput_rps = admitted.requests as f64 / window;
    let goodput_pct = 100.0 * goodput_rps / capacity_rps;
    // OK answers per completion second, over the whole seconds of the run.
    let seconds = OPEN_LOOP_RUN.as_secs() as usize;
    let mut per_second = vec![0u64; seconds];
    for r in recs.iter().filter(|r| r.ok()) {
        if let Some(slot) = per_second.get_mut((r.end_us / 1_000_000) as usize) {
            *slot += 1;
        }
    }
    let goodput_min_1s = per_second.iter().copied().min().unwrap_or(0) as f64;
    let per_answer = |a: Option<Duration>, b: Option<Duration>, answers: u64| {
        a.zip(b)
            .filter(|_| answers > 0)
            .map(|(a, b)| b.saturating_sub(a).as_secs_f64() * 1e6 / answers as f64)
    };
    let busy =
        |a: Option<Duration>, b: Option<Duration>| a.zip(b).map(|(a, b)| b.saturating_sub(a).as_secs_f64() / open_wall);

    let mut broken = Vec::new();
    if goodput_pct < REQUIRED_GOODPUT_PCT {
        broken.push(format!(
            "goodput {goodput_rps:.0} OK/s is {goodput_pct:.1} % of capacity {capacity_rps:.0}/s (< {REQUIRED_GOODPUT_PCT} %)"
        ));
    }
    if admitted.p99_ms > ADMITTED_P99_BOUND_MS {
        broken.push(format!(
            "admitted p99 {:.0} ms > {ADMITTED_P99_BOUND_MS} ms",
            admitted.p99_ms
        ));
    }
    if shed.requests > 0 && shed.p99_ms > admitted.p99_ms {
        broken.push(format!(
            "shed answers (p99 {:.1} ms) slower than admitted ones (p99 {:.1} ms)",
            shed.p99_ms, admitted.p99_ms
        ));
    }
    if skipped > 0 {
        broken.push(format!(
            "{skipped} launches skipped: {GENERATOR_CAP} requests were outstanding (queued, not shed)"
        ));
    }
    let rss_peak = peak_rss.load(Ordering::Relaxed).max(hwm_kib.unwrap_or(0));
    if rss_peak > RSS_BOUND_KIB {
        broken.push(format!("deskd's RSS reached {} MiB", rss_peak / 1024));
    }
    let internal =
        open_loop.count("INTERNAL") + open_loop.count("UNKNOWN") + cap.count("INTERNAL") + cap.count("UNKNOWN");
    if internal > 0 {
        broken.push(format!("{internal} INTERNAL/UNKNOWN answers"));
    }
    // The CPU samples of the capacity run include its warm-up: scale the
    // answers counted in the measured window to the whole run.
    let deskd_cpu_us_per_answer_capacity = per_answer(
        cpu0,
        cpu1,
        (cap.requests as f64 * (CAPACITY_WARMUP + CAPACITY_RUN).as_secs_f64() / CAPACITY_RUN.as_secs_f64()) as u64,
    );
    let deskd_cpu_us_per_answer_open_loop = per_answer(deskd_cpu_start, deskd_cpu_end, open_loop.requests);
    Ok(OverloadReport {
        max_in_flight,
        scenario: "GetTicket of a random seeded ticket".into(),
        capacity_workers: CAPACITY_WORKERS,
        capacity_rps,
        capacity: cap,
        offered_rps: rate,
        open_loop_s: window,
        generator_cap: GENERATOR_CAP,
        launched,
        skipped_at_generator_cap: skipped,
        launch_lag_p99_ms: percentile_ms(&lags, 99.0),
        open_loop,
        goodput_rps,
        goodput_pct_of_capacity: goodput_pct,
        goodput_min_1s_rps: goodput_min_1s,
        admitted,
        shed,
        rss_idle_kib,
        rss_after_capacity_kib,
        rss_peak_open_loop_kib: peak_rss.load(Ordering::Relaxed),
        rss_end_kib,
        hwm_kib,
        deskd_cpu_us_per_answer_capacity,
        deskd_cpu_us_per_answer_open_loop,
        deskd_cpus_open_loop: busy(deskd_cpu_start, deskd_cpu_end),
        generator_cpus_open_loop: busy(own_cpu_start, own_cpu_end),
        placement,
        deskd_error_lines,
        broken,
    })
}

pub fn print(r: &OverloadReport) {
    let f = |v: Option<f64>, d: usize| v.map_or("?".into(), |v| format!("{v:.d$}"));
    println!(
        "  deskd CPU: {} µs per answer at capacity, {} µs per answer (OK or shed) in the open loop; busy CPUs in the open loop: deskd {}, generator {}",
        f(r.deskd_cpu_us_per_answer_capacity, 0),
        f(r.deskd_cpu_us_per_answer_open_loop, 0),
        f(r.deskd_cpus_open_loop, 2),
        f(r.generator_cpus_open_loop, 2)
    );
    println!(
        "  open loop: {:.0} req/s offered for {:.0} s ({} launched, {} skipped at the generator's cap of {}; launch lag p99 {:.2} ms)",
        r.offered_rps, r.open_loop_s, r.launched, r.skipped_at_generator_cap, r.generator_cap, r.launch_lag_p99_ms
    );
    println!("  answers: {}", r.open_loop.codes_line());
    println!(
        "  goodput {:.0} OK/s = {:.1} % of capacity (worst second {:.0}); admitted p50 {:.2} ms, p99 {:.2} ms, max {:.0} ms",
        r.goodput_rps,
        r.goodput_pct_of_capacity,
        r.goodput_min_1s_rps,
        r.admitted.p50_ms,
        r.admitted.p99_ms,
        r.admitted.max_ms
    );
    println!(
        "  shed {} (RESOURCE_EXHAUSTED/UNAVAILABLE): p50 {:.2} ms, p99 {:.2} ms, max {:.0} ms",
        r.shed.requests, r.shed.p50_ms, r.shed.p99_ms, r.shed.max_ms
    );
    let kib = |v: Option<u64>| v.map_or("?".into(), |v| format!("{:.1} MiB", v as f64 / 1024.0));
    println!(
        "  deskd RSS: idle {}, after the capacity run {}, peak sampled in the open loop {}, at the end {}, VmHWM {}",
        kib(r.rss_idle_kib),
        kib(r.rss_after_capacity_kib),
        kib(Some(r.rss_peak_open_loop_kib)),
        kib(r.rss_end_kib),
        kib(r.hwm_kib)
    );
}
