//! Drives one run: `concurrency` workers spread over `connections` HTTP/2
//! connections (one `DeskdClient`, so one channel, each), a warm-up, then a
//! fixed measured duration. Each worker loops: send, wait, record.

use std::{
    collections::BTreeMap,
    net::SocketAddr,
    sync::Arc,
    time::{Duration, Instant},
};

use deskd_client::{DeskdClient, RetryPolicy};
use serde::{Deserialize, Serialize};

use crate::{
    scenarios::{CALL_TIMEOUT, Scenario, Shared, Worker},
    seed::Tenant,
    server,
};

/// What one worker saw inside the measured window.
#[derive(Default)]
struct Partial {
    ok_micros: Vec<u32>,
    errors: BTreeMap<String, u64>,
    warmup_errors: u64,
}

/// One run's figures.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Summary {
    /// OK responses per second of the measured window.
    pub rps: f64,
    pub ok: u64,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
    /// Non-OK outcomes in the measured window, by gRPC code name.
    pub errors: BTreeMap<String, u64>,
    /// Non-OK outcomes during the warm-up (not in `errors`).
    pub warmup_errors: u64,
    /// The server process's CPU time (user + system) in the measured
    /// window per OK response, in µs: unlike req/s it hardly depends on
    /// what else the machine runs (clock-tick resolution, 10 ms per window).
    #[serde(default)]
    pub server_cpu_us_per_ok: Option<f64>,
}

impl Summary {
    pub fn error_count(&self) -> u64 {
        self.errors.values().sum()
    }
}

/// The nearest-rank percentile of sorted values.
pub fn percentile(sorted: &[u32], p: f64) -> u32 {
    if sorted.is_empty() {
        return 0;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn summarize(parts: Vec<Partial>, measured: Duration, server_cpu: Option<Duration>) -> Summary {
    let mut all = Vec::with_capacity(parts.iter().map(|p| p.ok_micros.len()).sum());
    let mut errors = BTreeMap::new();
    let mut warmup_errors = 0;
    for p in parts {
        all.extend_from_slice(&p.ok_micros);
        for (k, v) in p.errors {
            *errors.entry(k).or_insert(0) += v;
        }
        warmup_errors += p.warmup_errors;
    }
    all.sort_unstable();
    let ms = |us: u32| f64::from(us) / 1000.0;
    Summary {
        rps: all.len() as f64 / measured.as_secs_f64(),
        ok: all.len() as u64,
        p50_ms: ms(percentile(&all, 50.0)),
        p90_ms: ms(percentile(&all, 90.0)),
        p99_ms: ms(percentile(&all, 99.0)),
        max_ms: ms(all.last().copied().unwrap_or(0)),
        server_cpu_us_per_ok: server_cpu
            .filter(|_| !all.is_empty())
            .map(|cpu| cpu.as_secs_f64() * 1e6 / all.len() as f64),
        errors,
        warmup_errors,
    }
}

/// The `grpc-encoding` of a GetCurrentUser response to the client as the
/// scenarios configure it (`deskd-client` accepts gzip and zstd
/// responses): "identity" when the server does not compress.
pub async fn response_encoding(addr: SocketAddr, tenant: &Tenant) -> Result<String, String> {
    let client = DeskdClient::builder(format!("http://{addr}"))
        .bearer_token(tenant.token.clone())
        .tenant(&tenant.id)
        .retry(RetryPolicy::none())
        .connect()
        .await
        .map_err(|e| format!("connect to {addr}: {e}"))?;
    let resp = client
        .users()
        .raw()
        .get_current_user(deskd_client::proto::users::v1::GetCurrentUserRequest {})
        .await
        .map_err(|s| format!("GetCurrentUser: {s}"))?;
    Ok(resp
        .metadata()
        .get("grpc-encoding")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("identity")
        .to_string())
}

/// How a run is shaped.
#[derive(Debug, Clone, Copy)]
pub struct Shape {
    pub concurrency: u32,
    pub connections: u32,
    pub warmup: Duration,
    pub duration: Duration,
}

/// Connects `shape.connections` clients to `addr` (alternating between
/// the tenants) and runs `scenario` on them; `server_pid` is the process
/// whose CPU time is sampled over the measured window.
pub async fn run(
    addr: SocketAddr,
    server_pid: Option<u32>,
    tenants: &[Tenant],
    scenario: Scenario,
    shape: Shape,
    shared: Arc<Shared>,
) -> Result<Summary, String> {
    let conns = shape.connections.clamp(1, shape.concurrency);
    let mut clients = Vec::new();
    for i in 0..conns as usize {
        let tenant = &tenants[i % tenants.len()];
        let client = DeskdClient::builder(format!("http://{addr}"))
            .bearer_token(tenant.token.clone())
            .tenant(&tenant.id)
            .timeout(CALL_TIMEOUT)
            .retry(RetryPolicy::none())
            .connect()
            .await
            .map_err(|e| format!("connect to {addr}: {e}"))?;
        clients.push((tenant.number, client));
    }
    let start = Instant::now();
    let measure_from = start + shape.warmup;
    let end = measure_from + shape.duration;
    let mut tasks = Vec::new();
    for i in 0..shape.concurrency as usize {
        let (tenant, client) = &clients[i % clients.len()];
        let seed = ((i as u64) << 32) ^ u64::from(std::process::id());
        let mut worker = Worker::new(scenario, *tenant, client, shared.clone(), seed);
        let capacity = (shape.duration.as_secs_f64() * 40_000.0 / f64::from(shape.concurrency)) as usize;
        tasks.push(tokio::spawn(async move {
            let mut part = Partial {
                ok_micros: Vec::with_capacity(capacity.min(4_000_000)),
                ..Partial::default()
            };
            loop {
                let t0 = Instant::now();
                if t0 >= end {
                    break;
                }
                let outcome = worker.call().await;
                let t1 = Instant::now();
                if t0 < measure_from {
                    if outcome.is_err() {
                        part.warmup_errors += 1;
                    }
                    continue;
                }
                if t1 > end {
                    // Finished after the window closed: not counted.
                    break;
                }
                match outcome {
                    Ok(()) => part
                        .ok_micros
                        .push(u32::try_from((t1 - t0).as_micros()).unwrap_or(u32::MAX)),
                    Err(code) => *part.errors.entry(code.to_string()).or_insert(0) += 1,
                }
            }
            part
        }));
    }
    tokio::time::sleep_until(measure_from.into()).await;
    let cpu_from = server_pid.and_then(server::cpu_time);
    tokio::time::sleep_until(end.into()).await;
    let cpu_to = server_pid.and_then(server::cpu_time);
    let server_cpu = cpu_from.zip(cpu_to).map(|(a, b)| b.saturating_sub(a));
    let mut parts = Vec::new();
    for t in tasks {
        parts.push(t.await.map_err(|e| format!("worker task: {e}"))?);
    }
    Ok(summarize(parts, shape.duration, server_cpu))
}
