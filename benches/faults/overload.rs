//! overload: capacity measured closed-loop, and an open-loop generator
//! offering twice that rate, in alternating slices (C O C O C O C). The load shedder must answer the
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
/// Capacity slices alternate with open-loop slices: SLICES + 1 of these…
const CAPACITY_SLICE: Duration = Duration::from_secs(5);
/// …around SLICES of these.
const OPEN_SLICE: Duration = Duration::from_secs(7);
const SLICES: usize = 3;
/// HTTP/2 connections of both runs: many clients, as an overload usually
/// comes from. deskd runs at most `max_concurrent_rpcs_per_connection` (32)
/// RPCs of each at once, so with fewer connections than
/// `max_in_flight / 32` the excess waits per connection instead of
/// reaching the load shedder (docs/reliability.md).
const CONNECTIONS: usize = 16;
/// The open-loop run offers this multiple of the measured capacity.
const OVERLOAD_FACTOR: f64 = 2.0;
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
    /// Seconds of closed-loop capacity slices.
    pub capacity_window_s: f64,
    pub capacity: Tally,
    /// The mean offered rate of the open-loop slices.
    pub offered_rps: f64,
    /// offered ÷ capacity (should be about 2).
    pub offered_x_capacity: f64,
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
    pub rss_after_warmup_kib: Option<u64>,
    /// The largest VmRSS sampled every 100 ms over all slices.
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

/// Closed loop: `CAPACITY_WORKERS` workers for `run`; the answers that
/// started and ended inside it.
async fn closed_loop(ctx: &Ctx, clients: &[(u32, TicketsClient)], run: Duration) -> Vec<Rec> {
    let t0 = Instant::now();
    let end = t0 + run;
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
                if Instant::now() <= end {
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
    recs
}

/// What one open-loop slice did.
#[derive(Default)]
struct OpenSlice {
    /// Latencies from the scheduled send time; times since the slice's start.
    recs: Vec<Rec>,
    /// Launch lag behind schedule, µs.
    lags: Vec<u64>,
    launched: u64,
    skipped: u64,
}

/// Open loop: request i is due at t0 + i / rate, whether or not earlier
/// ones were answered; returns once every launched request is answered
/// (each has a 10-s deadline).
async fn open_loop(ctx: &Ctx, clients: &[(u32, TicketsClient)], rate: f64, run: Duration) -> OpenSlice {
    let total = (rate * run.as_secs_f64()) as u64;
    let recs: Arc<Mutex<Vec<Rec>>> = Arc::new(Mutex::new(Vec::with_capacity(total as usize)));
    let lags: Arc<Mutex<Vec<u64>>> = Arc::new(Mutex::new(Vec::with_capacity(total as usize)));
    let outstanding = Arc::new(AtomicUsize::new(0));
    let t0 = Instant::now();
    let (mut launched, mut skipped, mut i) = (0u64, 0u64, 0u64);
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
    let drain_until = Instant::now() + deskd::CALL_TIMEOUT + Duration::from_secs(1);
    while outstanding.load(Ordering::Relaxed) > 0 && Instant::now() < drain_until {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let recs = recs.lock().map(|v| v.clone()).unwrap_or_default();
    let lags = lags.lock().map(|v| v.clone()).unwrap_or_default();
    OpenSlice {
        recs,
        lags,
        launched,
        skipped,
    }
}

fn cpu_delta(a: Option<Duration>, b: Option<Duration>) -> Option<Duration> {
    a.zip(b).map(|(a, b)| b.saturating_sub(a))
}

fn add(total: &mut Option<Duration>, d: Option<Duration>) {
    *total = total.zip(d).map(|(t, d)| t + d);
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
    let _ = closed_loop(ctx, &clients, CAPACITY_WARMUP).await;
    let (rss_after_warmup_kib, _) = server.memory_kib();

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

    // Capacity and overload slices alternate (C O C O C O C), so that a
    // change in what else the machine runs weighs on both alike. Each
    // open-loop slice offers twice the best capacity slice so far, so that
    // one slow slice does not leave the server under-loaded.
    let me = std::process::id();
    let mut cap_recs = Vec::new();
    let mut open = OpenSlice::default();
    let mut per_second: Vec<u64> = Vec::new();
    let (mut cap_cpu, mut open_cpu, mut own_cpu) = (Some(Duration::ZERO), Some(Duration::ZERO), Some(Duration::ZERO));
    let mut open_wall = Duration::ZERO;
    let mut best = 0.0f64;
    let mut offered = Vec::new();
    for slice in 0..=SLICES {
        let c0 = cpu_time(server.pid);
        let recs = closed_loop(ctx, &clients, CAPACITY_SLICE).await;
        add(&mut cap_cpu, cpu_delta(c0, cpu_time(server.pid)));
        let ok = recs.iter().filter(|r| r.ok()).count() as f64 / CAPACITY_SLICE.as_secs_f64();
        println!("  capacity slice {}: {ok:.0} OK/s at c={CAPACITY_WORKERS}", slice + 1);
        cap_recs.extend(recs);
        best = best.max(ok);
        if best < 1.0 {
            return Err("the capacity run answered no OK".into());
        }
        let rate = OVERLOAD_FACTOR * best;
        if slice == SLICES {
            break;
        }
        let (d0, m0, w0) = (cpu_time(server.pid), cpu_time(me), Instant::now());
        let s = open_loop(ctx, &clients, rate, OPEN_SLICE).await;
        add(&mut open_cpu, cpu_delta(d0, cpu_time(server.pid)));
        add(&mut own_cpu, cpu_delta(m0, cpu_time(me)));
        open_wall += w0.elapsed();
        let mut seconds = vec![0u64; OPEN_SLICE.as_secs() as usize];
        for r in s.recs.iter().filter(|r| r.ok()) {
            if let Some(slot) = seconds.get_mut((r.end_us / 1_000_000) as usize) {
                *slot += 1;
            }
        }
        let good = s.recs.iter().filter(|r| r.ok()).count() as f64 / OPEN_SLICE.as_secs_f64();
        println!(
            "  open-loop slice {}: {rate:.0} req/s offered, {good:.0} OK/s",
            slice + 1
        );
        per_second.extend(seconds);
        offered.push(rate);
        open.recs.extend(s.recs);
        open.lags.extend(s.lags);
        open.launched += s.launched;
        open.skipped += s.skipped;
    }
    sampling.store(false, Ordering::Relaxed);
    let _ = sampler.await;
    let (rss_end_kib, hwm_kib) = server.memory_kib();
    let deskd_error_lines = server.error_lines().len();
    server.stop();

    let cap = Tally::of(&cap_recs);
    let capacity_window = CAPACITY_SLICE.as_secs_f64() * (SLICES + 1) as f64;
    let capacity_rps = cap.count("OK") as f64 / capacity_window;
    let mut lags = open.lags;
    lags.sort_unstable();
    let recs = open.recs;
    let (launched, skipped) = (open.launched, open.skipped);
    let open_loop = Tally::of(&recs);
    let admitted = Tally::of(recs.iter().filter(|r| r.ok()));
    let shed = Tally::of(
        recs.iter()
            .filter(|r| matches!(r.code, "RESOURCE_EXHAUSTED" | "UNAVAILABLE")),
    );
    let window = OPEN_SLICE.as_secs_f64() * SLICES as f64;
    let offered_rps = offered.iter().sum::<f64>() / offered.len().max(1) as f64;
    let goodput_rps = admitted.requests as f64 / window;
    let goodput_pct = 100.0 * goodput_rps / capacity_rps;
    let goodput_min_1s = per_second.iter().copied().min().unwrap_or(0) as f64;
    let per_answer = |cpu: Option<Duration>, answers: u64| {
        cpu.filter(|_| answers > 0)
            .map(|c| c.as_secs_f64() * 1e6 / answers as f64)
    };
    let busy = |cpu: Option<Duration>| cpu.map(|c| c.as_secs_f64() / open_wall.as_secs_f64().max(1e-9));

    let mut broken = Vec::new();
    if goodput_pct < REQUIRED_GOODPUT_PCT {
        broken.push(format!(
            "goodput {goodput_rps:.0} OK/s is {goodput_pct:.1} % of capacity {capacity_rps:.0}/s (< {REQUIRED_GOODPUT_PCT} %)"
        ));
    }
    if offered_rps < 0.9 * OVERLOAD_FACTOR * capacity_rps {
        broken.push(format!(
            "not overloaded: {offered_rps:.0} req/s offered is {:.2} × capacity {capacity_rps:.0}/s",
            offered_rps / capacity_rps
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
    let deskd_cpu_us_per_answer_capacity = per_answer(cap_cpu, cap.requests);
    let deskd_cpu_us_per_answer_open_loop = per_answer(open_cpu, open_loop.requests);
    Ok(OverloadReport {
        max_in_flight,
        scenario: "GetTicket of a random seeded ticket".into(),
        capacity_workers: CAPACITY_WORKERS,
        capacity_rps,
        capacity_window_s: capacity_window,
        capacity: cap,
        offered_rps,
        offered_x_capacity: offered_rps / capacity_rps,
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
        rss_after_warmup_kib,
        rss_peak_open_loop_kib: peak_rss.load(Ordering::Relaxed),
        rss_end_kib,
        hwm_kib,
        deskd_cpu_us_per_answer_capacity,
        deskd_cpu_us_per_answer_open_loop,
        deskd_cpus_open_loop: busy(open_cpu),
        generator_cpus_open_loop: busy(own_cpu),
        placement,
        deskd_error_lines,
        broken,
    })
}

pub fn print(r: &OverloadReport) {
    println!(
        "  capacity: {:.0} OK/s closed-loop at c={} ({} s in slices; p99 {:.2} ms; {})",
        r.capacity_rps,
        r.capacity_workers,
        r.capacity_window_s,
        r.capacity.p99_ms,
        r.capacity.codes_line()
    );
    let f = |v: Option<f64>, d: usize| v.map_or("?".into(), |v| format!("{v:.d$}"));
    println!(
        "  deskd CPU: {} µs per answer at capacity, {} µs per answer (OK or shed) in the open loop; busy CPUs in the open loop: deskd {}, generator {}",
        f(r.deskd_cpu_us_per_answer_capacity, 0),
        f(r.deskd_cpu_us_per_answer_open_loop, 0),
        f(r.deskd_cpus_open_loop, 2),
        f(r.generator_cpus_open_loop, 2)
    );
    println!(
        "  open loop: {:.0} req/s offered ({:.2} × capacity) for {:.0} s ({} launched, {} skipped at the generator's cap of {}; launch lag p99 {:.2} ms)",
        r.offered_rps,
        r.offered_x_capacity,
        r.open_loop_s,
        r.launched,
        r.skipped_at_generator_cap,
        r.generator_cap,
        r.launch_lag_p99_ms
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
        "  deskd RSS: idle {}, after the warm-up {}, peak sampled {}, at the end {}, VmHWM {}",
        kib(r.rss_idle_kib),
        kib(r.rss_after_warmup_kib),
        kib(Some(r.rss_peak_open_loop_kib)),
        kib(r.rss_end_kib),
        kib(r.hwm_kib)
    );
}
