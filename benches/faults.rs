//! Faults under load (issue 9, item 3): PostgreSQL restarted and Redis
//! killed while deskd serves, and an offered load of twice the measured
//! capacity. Each promise is checked; the exit status is non-zero when one
//! is broken.
//!
//! ```sh
//! cargo bench --bench faults -- all --json target/bench-faults.json
//! cargo bench --bench faults -- pg-restart      # or redis-kill, overload
//! cargo bench --bench faults -- --help
//! ```
//!
//! It never touches the shared PostgreSQL (5432) or Redis (6379): it
//! starts its own PostgreSQL 15 cluster (`initdb` into a temporary
//! directory owned by the `postgres` OS user through `runuser`, so it must
//! run as root) and its own `redis-server`, both on free ports, migrates and
//! seeds a database the way the load benchmark does (`benches/load/seed.rs`,
//! reused as is), starts the release `deskd serve` for each mode and drives
//! it with `deskd-client`. Processes and directories are removed at the
//! end, after a failure, a panic or Ctrl-C too. docs/reliability.md ("Faults
//! under load") records the figures.

#[path = "faults/cluster.rs"]
mod cluster;
#[path = "faults/deskd.rs"]
mod deskd;
#[path = "faults/overload.rs"]
mod overload;
#[path = "faults/pg_restart.rs"]
mod pg_restart;
#[path = "faults/redis_kill.rs"]
mod redis_kill;
#[path = "support.rs"]
mod support;
// The load benchmark's database setup, shared as is; this benchmark does
// not use all of it.
#[path = "load/seed.rs"]
#[allow(dead_code)]
mod seed;
#[path = "faults/tally.rs"]
mod tally;

use std::{
    path::PathBuf,
    process::ExitCode,
    sync::Arc,
    time::{Duration, Instant},
};

use futures_util::FutureExt as _;
use serde::Serialize;

use crate::{
    cluster::{Postgres, Redis},
    seed::{Db, Seeded},
};

const USAGE: &str = "\
cargo bench --bench faults -- <pg-restart|redis-kill|overload|all> [options]

  pg-restart   PostgreSQL stopped (-m fast, then -m immediate) and started again
               under CreateTicket/GetTicket load; a third run with client retries
  redis-kill   redis-server SIGKILLed under read load, started again 4 s later
  overload     capacity closed-loop at c=16 in slices alternating with an open loop
               at twice it (C O C O C O C)
  all          the three, in that order (about 2-3 minutes)

  --json FILE          write the report as JSON
  --max-in-flight N    deskd's server.max_in_flight in the overload mode (default 128, deskd's own)
  --down SECONDS       how long PostgreSQL stays down in pg-restart (default 4; 0 is a
                       bare restart, shorter than deskd's health probe can see)
  --no-pin             overload: let every process use every CPU (by default deskd,
                       PostgreSQL and Redis get the first half, the generator the rest)
  --tickets N          seeded tickets per tenant (default 10000)
  -h, --help           this text
";

/// Seeded tickets per tenant (two tenants).
const TICKETS: u32 = 10_000;
/// `server.max_in_flight` for the overload mode: deskd's default; see
/// docs/reliability.md.
const MAX_IN_FLIGHT: usize = 128;

struct Args {
    pg_restart: bool,
    redis_kill: bool,
    overload: bool,
    json: Option<PathBuf>,
    max_in_flight: usize,
    tickets: u32,
    down: Duration,
    pin: bool,
}

fn parse(argv: impl IntoIterator<Item = String>) -> Result<Option<Args>, String> {
    let mut a = Args {
        pg_restart: false,
        redis_kill: false,
        overload: false,
        json: None,
        max_in_flight: MAX_IN_FLIGHT,
        tickets: TICKETS,
        down: pg_restart::DOWN,
        pin: true,
    };
    let mut mode = false;
    let mut it = argv.into_iter();
    while let Some(arg) = it.next() {
        let mut value = |flag: &str| it.next().ok_or_else(|| format!("{flag} needs a value"));
        match arg.as_str() {
            "-h" | "--help" => return Ok(None),
            // `cargo bench` passes this to every bench target.
            "--bench" => {}
            "pg-restart" => (a.pg_restart, mode) = (true, true),
            "redis-kill" => (a.redis_kill, mode) = (true, true),
            "overload" => (a.overload, mode) = (true, true),
            "all" => {
                (a.pg_restart, a.redis_kill, a.overload, mode) = (true, true, true, true);
            }
            "--json" => a.json = Some(PathBuf::from(value("--json")?)),
            "--max-in-flight" => {
                let v = value("--max-in-flight")?;
                a.max_in_flight = match v.parse::<usize>() {
                    Ok(n) if (1..=100_000).contains(&n) => n,
                    _ => return Err(format!("--max-in-flight: `{v}` is not a number between 1 and 100000")),
                };
            }
            "--no-pin" => a.pin = false,
            "--down" => {
                let v = value("--down")?;
                a.down = match v.parse::<f64>() {
                    Ok(s) if (0.0..=60.0).contains(&s) => Duration::from_secs_f64(s),
                    _ => return Err(format!("--down: `{v}` is not a number of seconds between 0 and 60")),
                };
            }
            "--tickets" => {
                let v = value("--tickets")?;
                a.tickets = match v.parse::<u32>() {
                    Ok(n) if (100..=1_000_000).contains(&n) => n,
                    _ => return Err(format!("--tickets: `{v}` is not a number between 100 and 1000000")),
                };
            }
            other => return Err(format!("unknown argument `{other}`")),
        }
    }
    if !mode {
        return Err("name a mode: pg-restart, redis-kill, overload or all".into());
    }
    Ok(Some(a))
}

/// What every mode runs against.
pub struct Ctx {
    pub db: Db,
    /// deskd's working directory (logs, exports).
    pub dir: PathBuf,
    pub pg: Postgres,
    pub redis: Redis,
    pub redis_url: String,
    pub redis_prefix: String,
    pub seeded: Arc<Seeded>,
    /// Part of every created ticket's title.
    pub run_tag: String,
}

#[derive(Serialize)]
struct Machine {
    nproc: usize,
    loadavg_before: String,
    loadavg_after: String,
    postgres: String,
    redis: String,
    git_commit: Option<String>,
    date_utc: String,
    command: String,
}

#[derive(Serialize)]
struct Report {
    version: u32,
    machine: Machine,
    tickets_per_tenant: u32,
    setup_s: f64,
    total_s: f64,
    pg_restart: Vec<pg_restart::PgRestartReport>,
    redis_kill: Option<redis_kill::RedisKillReport>,
    overload: Option<overload::OverloadReport>,
    /// Every broken promise; empty when all held.
    broken: Vec<String>,
}

async fn bench(args: &Args) -> Result<Report, String> {
    let started = Instant::now();
    let loadavg_before = support::load_average();
    let dir = tempfile::Builder::new()
        .prefix("deskd-faults-")
        .tempdir()
        .map_err(|e| format!("temporary directory: {e}"))?;
    let pg = tokio::task::spawn_blocking(Postgres::start_new)
        .await
        .map_err(|e| format!("initdb task: {e}"))??;
    let redis = Redis::start_new().await?;
    println!(
        "faults: own PostgreSQL on 127.0.0.1:{}, own Redis on 127.0.0.1:{}; deskd {}",
        pg.port,
        redis.port,
        env!("CARGO_BIN_EXE_deskd")
    );
    let db = Db {
        name: "deskd_faults".into(),
        host: "127.0.0.1".into(),
        port: pg.port,
    };
    db.create().await.map_err(|e| format!("create database: {e}"))?;
    let seeded = seed::seed(&db, dir.path(), args.tickets).await?;
    let postgres = seed::postgres_version(&db).await;
    let redis_version = redis.version().await;
    let setup = started.elapsed();
    println!(
        "seeded 2 tenants with {} tickets each; setup took {:.1} s",
        args.tickets,
        setup.as_secs_f64()
    );
    let mut ctx = Ctx {
        db,
        dir: dir.path().to_path_buf(),
        redis_url: redis.url(),
        pg,
        redis,
        redis_prefix: "deskd-faults".into(),
        seeded: Arc::new(seeded),
        run_tag: format!("{:x}", uuid::Uuid::now_v7().as_u128() as u32),
    };

    let mut report = Report {
        version: 1,
        machine: Machine {
            nproc: std::thread::available_parallelism().map_or(0, |n| n.get()),
            loadavg_before,
            loadavg_after: String::new(),
            postgres,
            redis: redis_version,
            git_commit: support::git_commit(),
            date_utc: support::now_utc(),
            command: std::env::args().skip(1).collect::<Vec<_>>().join(" "),
        },
        tickets_per_tenant: args.tickets,
        setup_s: setup.as_secs_f64(),
        total_s: 0.0,
        pg_restart: Vec::new(),
        redis_kill: None,
        overload: None,
        broken: Vec::new(),
    };
    if args.pg_restart {
        for (i, v) in pg_restart::Variant::ALL.into_iter().enumerate() {
            let r = pg_restart::run(&ctx, v, args.down, i).await?;
            pg_restart::print(&r);
            report
                .broken
                .extend(r.broken.iter().map(|b| format!("pg-restart [{}]: {b}", r.variant)));
            report.pg_restart.push(r);
        }
    }
    if args.redis_kill {
        let r = redis_kill::run(&mut ctx).await?;
        redis_kill::print(&r);
        report
            .broken
            .extend(r.broken.iter().map(|b| format!("redis-kill: {b}")));
        report.redis_kill = Some(r);
    }
    if args.overload {
        let placement = if args.pin {
            overload::placement(report.machine.nproc)
        } else {
            None
        };
        match &placement {
            Some(p) => println!(
                "overload: server.max_in_flight = {}; deskd, PostgreSQL and Redis on CPU {}, the generator on CPU {}",
                args.max_in_flight, p.server_cpus, p.generator_cpus
            ),
            None => println!(
                "overload: server.max_in_flight = {}; no CPU pinning",
                args.max_in_flight
            ),
        }
        let r = overload::run(&ctx, args.max_in_flight, placement).await?;
        overload::print(&r);
        report.broken.extend(r.broken.iter().map(|b| format!("overload: {b}")));
        report.overload = Some(r);
    }
    report.machine.loadavg_after = support::load_average();
    report.total_s = started.elapsed().as_secs_f64();
    // The guards (deskd in each mode, then Redis, PostgreSQL and the
    // directories here) stop everything as they drop.
    drop(ctx);
    drop(dir);
    Ok(report)
}

fn run(args: Args) -> ExitCode {
    let rt = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("faults: runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let outcome = rt.block_on(async {
        // Dropping the run's future (Ctrl-C) drops the guards, which stop
        // the processes and remove the directories.
        tokio::select! {
            r = std::panic::AssertUnwindSafe(bench(&args)).catch_unwind() => r,
            _ = tokio::signal::ctrl_c() => Ok(Err("interrupted".to_string())),
        }
    });
    rt.shutdown_timeout(Duration::from_secs(2));
    let report = match outcome {
        Ok(Ok(r)) => r,
        Ok(Err(e)) => {
            eprintln!("faults: {e}");
            return ExitCode::FAILURE;
        }
        Err(panic) => std::panic::resume_unwind(panic),
    };
    println!(
        "faults: {:.0} s in all; load average {} before, {} after; {}",
        report.total_s, report.machine.loadavg_before, report.machine.loadavg_after, report.machine.date_utc
    );
    if let Some(path) = &args.json {
        let written = serde_json::to_string_pretty(&report)
            .map_err(|e| e.to_string())
            .and_then(|s| std::fs::write(path, s + "\n").map_err(|e| e.to_string()));
        match written {
            Ok(()) => println!("JSON: {}", path.display()),
            Err(e) => {
                eprintln!("faults: cannot write {}: {e}", path.display());
                return ExitCode::FAILURE;
            }
        }
    }
    if report.broken.is_empty() {
        println!("faults: every promise held");
        ExitCode::SUCCESS
    } else {
        for b in &report.broken {
            eprintln!("BROKEN: {b}");
        }
        ExitCode::FAILURE
    }
}

fn main() -> ExitCode {
    match parse(std::env::args().skip(1)) {
        Err(e) => {
            eprintln!("faults: {e}\n\n{USAGE}");
            ExitCode::from(2)
        }
        Ok(None) => {
            print!("{USAGE}");
            ExitCode::SUCCESS
        }
        Ok(Some(a)) => run(a),
    }
}
