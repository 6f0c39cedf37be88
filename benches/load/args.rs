//! Command-line options of the load benchmark.

use std::{path::PathBuf, time::Duration};

use crate::scenarios::Scenario;

/// Everything a run is told.
#[derive(Debug, Clone)]
pub struct Args {
    /// Tickets seeded per tenant.
    pub tickets: u32,
    /// Measured time per run.
    pub duration: Duration,
    /// Unmeasured time before each run.
    pub warmup: Duration,
    /// In-flight requests per run, one run per value.
    pub concurrency: Vec<u32>,
    /// HTTP/2 connections per run (never more than the concurrency).
    pub connections: u32,
    /// The scenarios to run, in this order.
    pub scenarios: Vec<Scenario>,
    /// Measure the limits (bare tonic service, pgbench).
    pub limits: bool,
    /// Give deskd Redis (rate limits and caches shared through it).
    pub redis: bool,
    /// Where the JSON report goes.
    pub json: PathBuf,
    /// A baseline report to compare with.
    pub compare: Option<PathBuf>,
}

/// What the process was asked to do.
pub enum Mode {
    /// The benchmark itself.
    Run(Box<Args>),
    /// Serve the bare tonic service (the benchmark re-executes itself so).
    BareServer,
    /// Print the usage.
    Help,
}

pub const USAGE: &str = "\
cargo bench --bench load -- [options]

  --tickets N          tickets seeded per tenant (default 10000, at most 1000000)
  --duration D         measured time per run, e.g. 10s, 1500ms (default 10s)
  --warmup D           unmeasured time before each run (default 2s)
  --concurrency LIST   in-flight requests, one run each (default 1,16,64)
  --connections N      HTTP/2 connections per run, at most the concurrency (default 4)
  --scenarios LIST     any of get,list,create,update,me,stats-cached,stats-uncached,mixed
                       (default: all)
  --no-limits          skip the bare tonic service and pgbench (ratios are then absent)
  --no-redis           serve without Redis (in-process rate limits and caches only)
  --json PATH          the JSON report (default target/bench-load.json)
  --compare PATH       compare with a baseline JSON report by ratio to the same-run
                       limits; prints a warning per scenario that moved more than 20 %
  --quick              CI preset: --tickets 2000 --duration 3s --warmup 1s
                       --concurrency 16 (later options still override it)
";

impl Default for Args {
    fn default() -> Self {
        Args {
            tickets: 10_000,
            duration: Duration::from_secs(10),
            warmup: Duration::from_secs(2),
            concurrency: vec![1, 16, 64],
            connections: 4,
            scenarios: Scenario::ALL.to_vec(),
            limits: true,
            redis: true,
            json: PathBuf::from("target/bench-load.json"),
            compare: None,
        }
    }
}

/// Parses `500ms`, `10s`, `2m` or a plain number of seconds.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let bad = || format!("`{s}` is not a duration (e.g. 10s, 500ms, 2m)");
    let (num, unit) = match s.find(|c: char| !c.is_ascii_digit() && c != '.') {
        Some(i) => s.split_at(i),
        None => (s, "s"),
    };
    let n: f64 = num.parse().map_err(|_| bad())?;
    let secs = match unit {
        "ms" => n / 1000.0,
        "s" => n,
        "m" => n * 60.0,
        _ => return Err(bad()),
    };
    if !secs.is_finite() || secs <= 0.0 || secs > 86_400.0 {
        return Err(format!("`{s}` must be positive and at most a day"));
    }
    Ok(Duration::from_secs_f64(secs))
}

fn parse_list(s: &str) -> Result<Vec<u32>, String> {
    let list: Result<Vec<u32>, String> = s
        .split(',')
        .map(|v| match v.trim().parse::<u32>() {
            Ok(n) if (1..=4096).contains(&n) => Ok(n),
            _ => Err(format!("`{v}` is not a concurrency between 1 and 4096")),
        })
        .collect();
    list
}

/// Parses the process arguments (those after `--`; cargo's own `--bench`
/// is ignored).
pub fn parse(argv: impl IntoIterator<Item = String>) -> Result<Mode, String> {
    let mut a = Args::default();
    let mut it = argv.into_iter();
    fn value(it: &mut impl Iterator<Item = String>, flag: &str) -> Result<String, String> {
        it.next().ok_or_else(|| format!("{flag} needs a value"))
    }
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--bare-server" => return Ok(Mode::BareServer),
            "-h" | "--help" => return Ok(Mode::Help),
            // `cargo bench` passes this to every bench target.
            "--bench" => {}
            "--tickets" => {
                let v = value(&mut it, &arg)?;
                a.tickets = match v.parse::<u32>() {
                    Ok(n) if (1..=1_000_000).contains(&n) => n,
                    _ => return Err(format!("--tickets: `{v}` is not a number between 1 and 1000000")),
                };
            }
            "--duration" => {
                a.duration = parse_duration(&value(&mut it, &arg)?).map_err(|e| format!("--duration: {e}"))?
            }
            "--warmup" => a.warmup = parse_duration(&value(&mut it, &arg)?).map_err(|e| format!("--warmup: {e}"))?,
            "--concurrency" => {
                a.concurrency = parse_list(&value(&mut it, &arg)?).map_err(|e| format!("--concurrency: {e}"))?
            }
            "--connections" => {
                let v = value(&mut it, &arg)?;
                a.connections = match v.parse::<u32>() {
                    Ok(n) if (1..=256).contains(&n) => n,
                    _ => return Err(format!("--connections: `{v}` is not a number between 1 and 256")),
                };
            }
            "--scenarios" => {
                let v = value(&mut it, &arg)?;
                a.scenarios = v
                    .split(',')
                    .map(|s| Scenario::parse(s.trim()).ok_or_else(|| format!("--scenarios: unknown scenario `{s}`")))
                    .collect::<Result<_, _>>()?;
            }
            "--no-limits" => a.limits = false,
            "--no-redis" => a.redis = false,
            "--json" => a.json = PathBuf::from(value(&mut it, &arg)?),
            "--compare" => a.compare = Some(PathBuf::from(value(&mut it, &arg)?)),
            "--quick" => {
                a.tickets = 2_000;
                a.duration = Duration::from_secs(3);
                a.warmup = Duration::from_secs(1);
                a.concurrency = vec![16];
            }
            other => return Err(format!("unknown option `{other}` (see --help)")),
        }
    }
    if a.scenarios.is_empty() {
        return Err("--scenarios: name at least one".into());
    }
    Ok(Mode::Run(Box::new(a)))
}
