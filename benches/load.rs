//! The load benchmark of issue 8: every scenario's throughput and latency
//! through the real server, beside limits measured in the same run.
//!
//! ```sh
//! cargo bench --bench load                        # 10,000 tickets per tenant, c = 1, 16, 64
//! cargo bench --bench load -- --quick             # the CI preset
//! cargo bench --bench load -- --compare benches/load-baseline.json
//! cargo bench --bench load -- --help
//! ```
//!
//! It creates a throwaway database (`deskd_bench_load_<pid>` on the test
//! PostgreSQL), migrates it and creates two tenants with an agent and a JWT
//! each through the `deskd` CLI, seeds tickets with set-based SQL, starts
//! `deskd serve` (the release binary) as a process and drives it with the
//! generated Rust client over several HTTP/2 connections. The limits: a bare
//! tonic service (this program re-executed with `--bare-server`) driven by
//! the same client code as GetTicket, and pgbench running deskd's
//! GetTicket and CreateTicket transactions as the app role. The database,
//! the processes, their Redis keys and the temporary files are removed at
//! the end, after a failure or a panic too. See BENCHMARKS.md.

#[path = "load/args.rs"]
mod args;
#[path = "load/bare.rs"]
mod bare;
#[path = "load/driver.rs"]
mod driver;
#[path = "load/pgbench.rs"]
mod pgbench;
#[path = "load/report.rs"]
mod report;
#[path = "load/scenarios.rs"]
mod scenarios;
#[path = "load/seed.rs"]
mod seed;
#[path = "load/server.rs"]
mod server;
#[path = "support.rs"]
mod support;

use std::{
    process::ExitCode,
    sync::{Arc, atomic::AtomicI64},
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use futures_util::FutureExt as _;

use crate::{
    args::{Args, Mode},
    driver::Shape,
    pgbench::Txn,
    report::{LimitRow, Report, ScenarioRow},
    scenarios::{Scenario, Shared},
    seed::Db,
};

fn limit_row(name: &str, concurrency: u32, result: Result<driver::Summary, String>) -> LimitRow {
    match result {
        Ok(s) => LimitRow {
            name: name.into(),
            concurrency,
            rps: s.rps,
            summary: Some(s),
            latency_avg_ms: None,
            failed: None,
            failure: None,
        },
        Err(e) => failed_limit(name, concurrency, e),
    }
}

fn failed_limit(name: &str, concurrency: u32, e: String) -> LimitRow {
    eprintln!("warning: limit {name} at c={concurrency} not measured: {e}");
    LimitRow {
        name: name.into(),
        concurrency,
        rps: 0.0,
        summary: None,
        latency_avg_ms: None,
        failed: None,
        failure: Some(e),
    }
}

fn progress(what: &str, c: u32, s: &driver::Summary) {
    println!(
        "  c={c:<3} {what:<24} {:>8.0} req/s  p50 {:.2} ms  p99 {:.2} ms  server CPU {} µs/req  errors {}",
        s.rps,
        s.p50_ms,
        s.p99_ms,
        s.server_cpu_us_per_ok.map_or("?".into(), |v| format!("{v:.0}")),
        s.error_count()
    );
}

/// The whole run; returns whether every request succeeded.
async fn bench(args: &Args, db: &Db) -> Result<bool, String> {
    let baseline = args.compare.as_deref().map(report::load_baseline).transpose()?;
    let dir = tempfile::tempdir().map_err(|e| format!("temporary directory: {e}"))?;
    let loadavg_before = support::load_average();
    println!(
        "load: database {}, {} tickets per tenant; deskd {}",
        db.name,
        args.tickets,
        env!("CARGO_BIN_EXE_deskd")
    );
    let seeded = Arc::new(seed::seed(db, dir.path(), args.tickets).await?);
    println!(
        "seeded 2 tenants in {:.1} s (VACUUM ANALYZE {:.1} s)",
        seeded.seed.as_secs_f64(),
        seeded.vacuum.as_secs_f64()
    );
    let postgres = seed::postgres_version(db).await;

    let mut deskd = server::start_deskd(db, dir.path(), args.redis).await?;
    let pid = deskd.proc.pid().unwrap_or(0);
    tokio::time::sleep(Duration::from_secs(1)).await;
    let (rss_idle_kib, _) = server::memory_kib(pid);
    println!(
        "deskd serve: SERVING after {:.0} ms, RSS idle {} KiB",
        deskd.startup.as_secs_f64() * 1000.0,
        rss_idle_kib.unwrap_or(0)
    );
    let response_encoding = driver::response_encoding(deskd.addr, &seeded.tenants[0])
        .await
        .unwrap_or_else(|e| format!("unknown ({e})"));
    println!("deskd's responses to this client are compressed with: {response_encoding}");
    let mut bare = if args.limits { Some(server::start_bare()?) } else { None };
    let bare_pid = bare.as_ref().and_then(|(p, _)| p.pid());

    let now_micros = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_err(|e| e.to_string())?
        .as_micros() as i64;
    let shared = Arc::new(Shared {
        seeded: seeded.clone(),
        stats_end_micros: now_micros - 1_000_000,
        stats_offset: AtomicI64::new(0),
    });
    let mut limits = Vec::new();
    let mut rows = Vec::new();
    for &c in &args.concurrency {
        let shape = Shape {
            concurrency: c,
            connections: args.connections,
            warmup: args.warmup,
            duration: args.duration,
        };
        if let Some((_, addr)) = &bare {
            let r = driver::run(
                *addr,
                bare_pid,
                &seeded.tenants,
                Scenario::GetTicket,
                shape,
                shared.clone(),
            )
            .await;
            if let Ok(s) = &r {
                progress("limit.bare_tonic", c, s);
            }
            limits.push(limit_row(report::BARE, c, r));
            for txn in [Txn::GetTicket, Txn::CreateTicket] {
                // A warm-up run first, as the scenarios have one.
                let _ = pgbench::run(db, &seeded, dir.path(), txn, c, args.warmup);
                match pgbench::run(db, &seeded, dir.path(), txn, c, args.duration) {
                    Ok(f) => {
                        println!(
                            "  c={c:<3} limit.{:<18} {:>8.0} tx/s   avg {:.2} ms  failed {}",
                            txn.limit_name(),
                            f.tps,
                            f.latency_avg_ms,
                            f.failed
                        );
                        limits.push(LimitRow {
                            name: txn.limit_name().into(),
                            concurrency: c,
                            rps: f.tps,
                            summary: None,
                            latency_avg_ms: Some(f.latency_avg_ms),
                            failed: Some(f.failed),
                            failure: None,
                        });
                    }
                    Err(e) => limits.push(failed_limit(txn.limit_name(), c, e)),
                }
            }
        }
        for &scenario in &args.scenarios {
            let s = driver::run(deskd.addr, Some(pid), &seeded.tenants, scenario, shape, shared.clone()).await?;
            progress(scenario.name(), c, &s);
            rows.push(ScenarioRow {
                name: scenario.name().into(),
                concurrency: c,
                summary: s,
                ratios: Default::default(),
            });
        }
    }
    let (_, rss_peak_kib) = server::memory_kib(pid);
    let loadavg_after = support::load_average();
    deskd.proc.stop();
    if let Some((mut p, _)) = bare.take() {
        p.stop();
    }

    report::add_ratios(&limits, &mut rows);
    let all_ok = rows.iter().all(|r| r.summary.error_count() == 0);
    let report = Report {
        version: 1,
        machine: report::Machine {
            nproc: std::thread::available_parallelism().map_or(0, |n| n.get()),
            loadavg_before,
            loadavg_after,
            postgres,
            git_commit: support::git_commit(),
            date_utc: support::now_utc(),
        },
        config: report::RunConfig {
            tickets_per_tenant: args.tickets,
            tenants: seeded.tenants.len() as u32,
            duration_s: args.duration.as_secs_f64(),
            warmup_s: args.warmup.as_secs_f64(),
            connections: args.connections,
            concurrency: args.concurrency.clone(),
            redis: args.redis,
        },
        server: report::ServerFacts {
            startup_ms: deskd.startup.as_secs_f64() * 1000.0,
            rss_idle_kib,
            rss_peak_kib,
            response_encoding,
            migrate_s: seeded.migrate.as_secs_f64(),
            seed_s: seeded.seed.as_secs_f64(),
            vacuum_s: seeded.vacuum.as_secs_f64(),
        },
        limits,
        scenarios: rows,
    };
    report::print(&report);
    report::write_json(&report, &args.json)?;
    println!("JSON: {}", args.json.display());
    if let (Some(base), Some(path)) = (&baseline, &args.compare) {
        report::compare(&report, base, path);
    }
    if !all_ok {
        eprintln!("load: some requests failed (see the errors column)");
    }
    Ok(all_ok)
}

fn run(args: Args) -> ExitCode {
    let rt = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("load: runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let db = Db::for_this_process();
    rt.block_on(async {
        if let Err(e) = db.create().await {
            eprintln!(
                "load: cannot create database {} (is PostgreSQL up? scripts/ensure-services): {e}",
                db.name
            );
            return ExitCode::FAILURE;
        }
        // Drop the database even when the run fails, panics or is interrupted;
        // dropping the run's future kills the processes it started.
        let outcome = tokio::select! {
            r = std::panic::AssertUnwindSafe(bench(&args, &db)).catch_unwind() => r,
            _ = tokio::signal::ctrl_c() => Ok(Err("interrupted".to_string())),
        };
        if let Err(e) = db.drop_db().await {
            eprintln!("warning: could not drop database {}: {e}", db.name);
        }
        // deskd's keys (rate limits, caches) under this run's prefix.
        let prefix = server::redis_prefix();
        if let Err(e) = server::clean_redis(&prefix).await {
            eprintln!("warning: could not delete the Redis keys under {prefix}: {e}");
        }
        match outcome {
            Ok(Ok(true)) => ExitCode::SUCCESS,
            Ok(Ok(false)) => ExitCode::FAILURE,
            Ok(Err(e)) => {
                eprintln!("load: {e}");
                ExitCode::FAILURE
            }
            Err(panic) => std::panic::resume_unwind(panic),
        }
    })
}

fn main() -> ExitCode {
    match args::parse(std::env::args().skip(1)) {
        Err(e) => {
            eprintln!("load: {e} (--help lists the options)");
            ExitCode::from(2)
        }
        Ok(Mode::Help) => {
            print!("{}", args::USAGE);
            ExitCode::SUCCESS
        }
        Ok(Mode::BareServer) => match bare::serve() {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("bare server: {e}");
                ExitCode::FAILURE
            }
        },
        Ok(Mode::Run(a)) => run(*a),
    }
}
