//! The report: a table on stdout, the same figures as JSON, and the
//! comparison with a baseline by ratio to the same-run limits.

use std::{collections::BTreeMap, path::Path};

use serde::{Deserialize, Serialize};

use crate::driver::Summary;

pub const BARE: &str = "bare_tonic";
pub const PG_GET: &str = "pg_get_ticket";
pub const PG_CREATE: &str = "pg_create_ticket";
/// A ratio that moved more than this (either way) is reported.
pub const THRESHOLD: f64 = 0.20;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Machine {
    pub nproc: usize,
    pub loadavg_before: String,
    pub loadavg_after: String,
    pub postgres: String,
    pub git_commit: Option<String>,
    pub date_utc: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunConfig {
    pub tickets_per_tenant: u32,
    pub tenants: u32,
    pub duration_s: f64,
    pub warmup_s: f64,
    pub connections: u32,
    pub concurrency: Vec<u32>,
    /// Whether deskd had Redis (rate limits and caches through it).
    #[serde(default)]
    pub redis: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ServerFacts {
    /// From spawning `deskd serve` to health SERVING (migrations applied).
    pub startup_ms: f64,
    /// VmRSS one second after SERVING, before any load.
    pub rss_idle_kib: Option<u64>,
    /// VmHWM after the last run (the highest concurrency ran last).
    pub rss_peak_kib: Option<u64>,
    /// `grpc-encoding` of deskd's responses to the benchmark's client.
    #[serde(default)]
    pub response_encoding: String,
    pub migrate_s: f64,
    pub seed_s: f64,
    pub vacuum_s: f64,
}

/// One limit at one concurrency.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LimitRow {
    pub name: String,
    pub concurrency: u32,
    /// Requests (bare) or transactions (pgbench) per second; 0 on failure.
    pub rps: f64,
    /// The bare service's client-side figures.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub summary: Option<Summary>,
    /// pgbench's `latency average`.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub latency_avg_ms: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub failed: Option<u64>,
    /// Why the limit could not be measured.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub failure: Option<String>,
}

/// One scenario at one concurrency.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ScenarioRow {
    pub name: String,
    pub concurrency: u32,
    #[serde(flatten)]
    pub summary: Summary,
    /// req/s divided by each limit's rate at the same concurrency.
    pub ratios: BTreeMap<String, f64>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Report {
    pub version: u32,
    pub machine: Machine,
    pub config: RunConfig,
    pub server: ServerFacts,
    pub limits: Vec<LimitRow>,
    pub scenarios: Vec<ScenarioRow>,
}

/// The limit a scenario's ratio is compared by: the one whose work it
/// repeats (the database transaction, or the bare network stack).
pub fn primary_limit(scenario: &str) -> &'static str {
    match scenario {
        "GetCurrentUser" | "GetTicketStats.cached" => BARE,
        "CreateTicket" | "UpdateTicket" => PG_CREATE,
        _ => PG_GET,
    }
}

/// The limits the table shows a ratio to.
fn shown_limits(scenario: &str) -> (&'static [&'static str], &'static [&'static str]) {
    match scenario {
        "GetTicket" => (&[BARE], &[PG_GET]),
        "GetCurrentUser" => (&[BARE], &[]),
        "CreateTicket" => (&[], &[PG_CREATE]),
        _ => (&[], &[]),
    }
}

/// Fills every scenario's ratios from the limits of its concurrency.
pub fn add_ratios(limits: &[LimitRow], rows: &mut [ScenarioRow]) {
    for row in rows {
        for l in limits {
            if l.concurrency == row.concurrency && l.rps > 0.0 {
                row.ratios.insert(l.name.clone(), row.summary.rps / l.rps);
            }
        }
    }
}

fn errors_text(s: &Summary) -> String {
    if s.errors.is_empty() {
        return "0".into();
    }
    s.errors
        .iter()
        .map(|(k, v)| format!("{k}×{v}"))
        .collect::<Vec<_>>()
        .join(" ")
}

pub fn print(r: &Report) {
    let m = &r.machine;
    println!();
    println!(
        "machine: nproc {}, load average before {} / after {}, {}, commit {}, {}",
        m.nproc,
        m.loadavg_before,
        m.loadavg_after,
        m.postgres,
        m.git_commit.as_deref().unwrap_or("?"),
        m.date_utc
    );
    let c = &r.config;
    println!(
        "run: {} tickets per tenant × {} tenants; {} s measured after {} s warm-up; {} connections (at most c); {}",
        c.tickets_per_tenant,
        c.tenants,
        c.duration_s,
        c.warmup_s,
        c.connections,
        if c.redis { "with Redis" } else { "without Redis" }
    );
    let s = &r.server;
    let mib = |k: Option<u64>| k.map_or("?".into(), |k| format!("{:.1} MiB", k as f64 / 1024.0));
    println!(
        "deskd serve: start to SERVING {:.0} ms; RSS idle {}; peak RSS (VmHWM) after the runs {}; responses {}",
        s.startup_ms,
        mib(s.rss_idle_kib),
        mib(s.rss_peak_kib),
        s.response_encoding
    );
    println!(
        "seed: migrate {:.1} s, tickets {:.1} s, VACUUM ANALYZE {:.1} s",
        s.migrate_s, s.seed_s, s.vacuum_s
    );
    println!();
    println!(
        "{:<24} {:>4} {:>9} {:>10} {:>10} {:>7} {:>7} {:>7} {:>8} {:>9}  errors",
        "scenario", "c", "req/s", "vs bare", "vs pg", "p50 ms", "p90 ms", "p99 ms", "max ms", "CPU µs/r"
    );
    let cpu = |s: &Summary| s.server_cpu_us_per_ok.map_or("?".into(), |v| format!("{v:.0}"));
    let mut concurrencies: Vec<u32> = r.scenarios.iter().map(|s| s.concurrency).collect();
    concurrencies.extend(r.limits.iter().map(|l| l.concurrency));
    concurrencies.sort_unstable();
    concurrencies.dedup();
    for conc in concurrencies {
        for l in r.limits.iter().filter(|l| l.concurrency == conc) {
            let name = format!("limit.{}", l.name);
            if let Some(f) = &l.failure {
                println!("{name:<24} {conc:>4} failed: {f}");
            } else if let Some(s) = &l.summary {
                println!(
                    "{name:<24} {conc:>4} {:>9.0} {:>10} {:>10} {:>7.2} {:>7.2} {:>7.2} {:>8.2} {:>9}  {}",
                    l.rps,
                    "",
                    "",
                    s.p50_ms,
                    s.p90_ms,
                    s.p99_ms,
                    s.max_ms,
                    cpu(s),
                    errors_text(s)
                );
            } else {
                println!(
                    "{name:<24} {conc:>4} {:>9.0} {:>10} {:>10} {:>7} avg {:.2} ms  failed {}",
                    l.rps,
                    "",
                    "",
                    "",
                    l.latency_avg_ms.unwrap_or(0.0),
                    l.failed.unwrap_or(0)
                );
            }
        }
        for row in r.scenarios.iter().filter(|s| s.concurrency == conc) {
            let (bare, pg) = shown_limits(&row.name);
            let ratio = |names: &[&str]| {
                names
                    .iter()
                    .filter_map(|n| row.ratios.get(*n).map(|v| format!("{:.0} %", v * 100.0)))
                    .next()
                    .unwrap_or_default()
            };
            let s = &row.summary;
            println!(
                "{:<24} {conc:>4} {:>9.0} {:>10} {:>10} {:>7.2} {:>7.2} {:>7.2} {:>8.2} {:>9}  {}",
                row.name,
                s.rps,
                ratio(bare),
                ratio(pg),
                s.p50_ms,
                s.p90_ms,
                s.p99_ms,
                s.max_ms,
                cpu(s),
                errors_text(s)
            );
        }
    }
    println!();
    println!("vs bare: req/s ÷ limit.bare_tonic; vs pg: ÷ limit.pg_get_ticket (GetTicket) or");
    println!("limit.pg_create_ticket (CreateTicket), each at the same concurrency. Every ratio is in the JSON.");
    println!("CPU µs/r: the server process's CPU time in the measured window per OK response.");
}

pub fn write_json(r: &Report, path: &Path) -> Result<(), String> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|e| format!("create {}: {e}", dir.display()))?;
    }
    let text = serde_json::to_string_pretty(r).map_err(|e| e.to_string())?;
    std::fs::write(path, text + "\n").map_err(|e| format!("write {}: {e}", path.display()))
}

/// Reads a baseline report (before the run, so a bad path fails at once).
pub fn load_baseline(path: &Path) -> Result<Report, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("read baseline {}: {e}", path.display()))?;
    serde_json::from_str(&text).map_err(|e| format!("baseline {} is not a report: {e}", path.display()))
}

/// Compares by ratio to the same-run limit and prints a `warning:` line for
/// every scenario whose ratio moved more than [`THRESHOLD`]. Never fails
/// for a slowdown.
pub fn compare(current: &Report, base: &Report, baseline_path: &Path) {
    println!();
    println!(
        "compare with {} (commit {}, {}), by ratio to the same-run limit:",
        baseline_path.display(),
        base.machine.git_commit.as_deref().unwrap_or("?"),
        base.machine.date_utc
    );
    if base.config.redis != current.config.redis || base.config.tickets_per_tenant != current.config.tickets_per_tenant
    {
        println!("  note: the baseline ran with other settings (Redis, tickets); ratios may differ for that reason");
    }
    let (mut compared, mut moved, mut missing) = (0, 0, 0);
    for row in &current.scenarios {
        let limit = primary_limit(&row.name);
        let old = base
            .scenarios
            .iter()
            .find(|b| b.name == row.name && b.concurrency == row.concurrency);
        let (Some(now), Some(then)) = (row.ratios.get(limit), old.and_then(|b| b.ratios.get(limit))) else {
            missing += 1;
            println!(
                "  {} c={}: no ratio to {limit} in both reports",
                row.name, row.concurrency
            );
            continue;
        };
        compared += 1;
        let change = now / then - 1.0;
        let cpu = match (
            old.and_then(|b| b.summary.server_cpu_us_per_ok),
            row.summary.server_cpu_us_per_ok,
        ) {
            (Some(a), Some(b)) => format!("; server CPU {a:.0} → {b:.0} µs/req"),
            _ => String::new(),
        };
        let line = format!(
            "{} c={}: ratio to {limit} {then:.3} → {now:.3} ({:+.0} %; {:.0} → {:.0} req/s{cpu})",
            row.name,
            row.concurrency,
            change * 100.0,
            old.map_or(0.0, |b| b.summary.rps),
            row.summary.rps
        );
        if change.abs() > THRESHOLD {
            moved += 1;
            println!("warning: {line}");
        } else {
            println!("  {line}");
        }
    }
    for l in &current.limits {
        if let Some(b) = base
            .limits
            .iter()
            .find(|b| b.name == l.name && b.concurrency == l.concurrency && b.rps > 0.0)
        {
            println!(
                "  limit.{} c={}: {:.0} → {:.0} /s (machine speed; cancels out of the ratios)",
                l.name, l.concurrency, b.rps, l.rps
            );
        }
    }
    println!(
        "compare: {compared} scenario runs compared, {moved} moved more than {:.0} %, {missing} without a baseline figure",
        THRESHOLD * 100.0
    );
}
