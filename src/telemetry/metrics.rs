//! deskd's metrics: OpenTelemetry instruments named after the semantic
//! conventions (`rpc.server.*`, `db.client.*`) or under `deskd.*`, read by a
//! Prometheus exporter (rendered on `/metrics`) and, with an OTLP endpoint,
//! pushed by a periodic reader. docs/observability.md lists them.

use std::sync::{
    LazyLock, Mutex, OnceLock, RwLock,
    atomic::{AtomicI64, AtomicU64, Ordering},
};

use opentelemetry::{
    KeyValue,
    metrics::{Counter, Histogram, Meter, MeterProvider as _, UpDownCounter},
};
use opentelemetry_sdk::metrics::{PeriodicReader, SdkMeterProvider};
use sqlx::PgPool;

use crate::config::TelemetryConfig;

/// Histogram bounds in seconds, for RPCs and statements: 0.5 ms to 10 s.
const SECONDS_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

struct State {
    provider: SdkMeterProvider,
    registry: prometheus::Registry,
}

static STATE: OnceLock<State> = OnceLock::new();
static METRICS: OnceLock<Metrics> = OnceLock::new();

fn build(t: Option<&TelemetryConfig>) -> Result<State, String> {
    let registry = prometheus::Registry::new();
    let prom = opentelemetry_prometheus::exporter()
        .with_registry(registry.clone())
        .build()
        .map_err(|e| e.to_string())?;
    let mut builder = SdkMeterProvider::builder().with_reader(prom);
    if let Some(t) = t.filter(|t| !t.otlp_endpoint.is_empty()) {
        use opentelemetry_otlp::WithExportConfig as _;
        let exporter = opentelemetry_otlp::MetricExporter::builder()
            .with_tonic()
            .with_endpoint(t.otlp_endpoint.clone())
            .with_timeout(t.export_timeout)
            .build()
            .map_err(|e| e.to_string())?;
        builder = builder
            .with_reader(
                PeriodicReader::builder(exporter)
                    .with_interval(t.metrics_interval)
                    .build(),
            )
            .with_resource(super::resource(t));
    }
    Ok(State {
        provider: builder.build(),
        registry,
    })
}

/// Installs the meter provider with OTLP export as `t` says. Only the first
/// call in a process counts (tests build many servers in one process).
pub(crate) fn install(t: &TelemetryConfig) -> Result<(), String> {
    if STATE.get().is_some() {
        return Ok(());
    }
    let state = match build(Some(t)) {
        Ok(s) => s,
        Err(e) => {
            let _ = STATE.set(build(None)?);
            return Err(e);
        }
    };
    let _ = STATE.set(state);
    Ok(())
}

fn state() -> &'static State {
    STATE.get_or_init(|| match build(None) {
        Ok(s) => s,
        // The Prometheus exporter only fails on a duplicate registration,
        // which a fresh registry cannot have; fall back to no reader at all.
        Err(_) => State {
            provider: SdkMeterProvider::builder().build(),
            registry: prometheus::Registry::new(),
        },
    })
}

pub(crate) fn shutdown() {
    if let Some(s) = STATE.get() {
        let _ = s.provider.shutdown();
    }
}

/// Every metric in Prometheus text exposition format.
pub fn render() -> String {
    let families = state().registry.gather();
    prometheus::TextEncoder::new()
        .encode_to_string(&families)
        .unwrap_or_default()
}

/// The process's instruments.
pub fn metrics() -> &'static Metrics {
    METRICS.get_or_init(|| Metrics::new(&state().provider.meter("deskd")))
}

/// The instruments deskd records into.
pub struct Metrics {
    /// `rpc.server.call.duration` (s): every RPC, by service, method and status code.
    pub rpc_duration: Histogram<f64>,
    /// `db.client.operation.duration` (s): every SQL statement, by operation.
    pub db_duration: Histogram<f64>,
    /// `db.client.connection.pending_requests`: requests waiting for a pooled connection.
    pub db_pending: UpDownCounter<i64>,
    /// `deskd.jobs.attempts`: finished job attempts by kind and outcome (succeeded, retry, dead).
    pub job_attempts: Counter<u64>,
    /// `deskd.redis.fail_open`: requests served without Redis, by component.
    pub redis_fail_open: Counter<u64>,
}

fn pool_name() -> KeyValue {
    KeyValue::new("db.client.connection.pool.name", "deskd")
}

impl Metrics {
    fn new(m: &Meter) -> Metrics {
        m.i64_observable_gauge("db.client.connection.count")
            .with_description("Pooled PostgreSQL connections by state (idle, used)")
            .with_unit("{connection}")
            .with_callback(|o| {
                let (size, idle, _) = pool_totals();
                o.observe(
                    idle,
                    &[pool_name(), KeyValue::new("db.client.connection.state", "idle")],
                );
                o.observe(
                    size - idle,
                    &[pool_name(), KeyValue::new("db.client.connection.state", "used")],
                );
            })
            .build();
        m.i64_observable_gauge("db.client.connection.max")
            .with_description("The most connections the pool opens")
            .with_unit("{connection}")
            .with_callback(|o| o.observe(pool_totals().2, &[pool_name()]))
            .build();
        m.i64_observable_gauge("deskd.jobs.queue.depth")
            .with_description("Jobs by kind and state (queued, running, dead), all tenants")
            .with_unit("{job}")
            .with_callback(|o| {
                if let Ok(q) = QUEUE.lock() {
                    for (kind, state, n) in q.iter() {
                        o.observe(
                            *n,
                            &[
                                KeyValue::new("job.kind", kind.clone()),
                                KeyValue::new("job.state", state.clone()),
                            ],
                        );
                    }
                }
            })
            .build();
        // Counted on every request: plain atomics, read when metrics are
        // collected, cost less than an SDK measurement (which hashes its
        // attributes each time).
        m.i64_observable_up_down_counter("rpc.server.active_requests")
            .with_description("RPCs in flight")
            .with_unit("{request}")
            .with_callback(|o| {
                for (i, (service, method)) in rpc_methods().iter().enumerate() {
                    let n = ACTIVE.get(i).map_or(0, |a| a.load(Ordering::Relaxed));
                    o.observe(
                        n,
                        &[
                            KeyValue::new("rpc.system", "grpc"),
                            KeyValue::new("rpc.service", *service),
                            KeyValue::new("rpc.method", *method),
                        ],
                    );
                }
            })
            .build();
        m.u64_observable_counter("deskd.cache.requests")
            .with_description("Cache look-ups by cache and result (hit, miss)")
            .with_unit("{request}")
            .with_callback(|o| {
                if let Ok(caches) = CACHES.read() {
                    for (name, hits, misses) in caches.iter() {
                        for (result, n) in [("hit", hits), ("miss", misses)] {
                            o.observe(
                                n.load(Ordering::Relaxed),
                                &[
                                    KeyValue::new("cache.name", *name),
                                    KeyValue::new("cache.result", result),
                                ],
                            );
                        }
                    }
                }
            })
            .build();
        m.u64_observable_counter("deskd.rate_limit.decisions")
            .with_description("Rate-limit decisions by outcome")
            .with_unit("{decision}")
            .with_callback(|o| {
                for (outcome, n) in RATE_OUTCOMES.iter().zip(RATE_LIMIT.iter()) {
                    let v = n.load(Ordering::Relaxed);
                    if v > 0 {
                        o.observe(v, &[KeyValue::new("outcome", *outcome)]);
                    }
                }
            })
            .build();
        Metrics {
            rpc_duration: m
                .f64_histogram("rpc.server.call.duration")
                .with_description("Duration of RPCs received, by service, method and gRPC status code")
                .with_unit("s")
                .with_boundaries(SECONDS_BUCKETS.to_vec())
                .build(),
            db_duration: m
                .f64_histogram("db.client.operation.duration")
                .with_description("Duration of SQL statements, by operation")
                .with_unit("s")
                .with_boundaries(SECONDS_BUCKETS.to_vec())
                .build(),
            db_pending: m
                .i64_up_down_counter("db.client.connection.pending_requests")
                .with_description("Requests waiting for a pooled connection")
                .with_unit("{request}")
                .build(),
            job_attempts: m
                .u64_counter("deskd.jobs.attempts")
                .with_description("Finished job attempts by kind and outcome (succeeded, retry, dead)")
                .with_unit("{attempt}")
                .build(),
            redis_fail_open: m
                .u64_counter("deskd.redis.fail_open")
                .with_description("Operations that went on without Redis after it failed, by component")
                .with_unit("{event}")
                .build(),
        }
    }

    /// Counts a cache look-up.
    pub fn cache(&self, cache: &'static str, hit: bool) {
        let bump = |caches: &[(&'static str, AtomicU64, AtomicU64)]| {
            caches.iter().find(|(n, _, _)| *n == cache).map(|(_, h, m)| {
                if hit { h } else { m }.fetch_add(1, Ordering::Relaxed);
            })
        };
        if CACHES.read().ok().and_then(|c| bump(&c)).is_some() {
            return;
        }
        if let Ok(mut caches) = CACHES.write() {
            if !caches.iter().any(|(n, _, _)| *n == cache) {
                caches.push((cache, AtomicU64::new(0), AtomicU64::new(0)));
            }
            let _ = bump(&caches);
        }
    }

    /// Counts a rate-limit decision: `allowed`, `limited`, `fail_open` or `fail_closed`.
    pub fn rate_limit(&self, outcome: &'static str) {
        if let Some(i) = RATE_OUTCOMES.iter().position(|o| *o == outcome) {
            RATE_LIMIT[i].fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Counts an RPC in flight until the guard drops (also when the client
    /// goes away and the request's future is dropped).
    pub fn rpc_started(&self, method_index: Option<usize>) -> ActiveRpc {
        let slot = method_index.and_then(|i| ACTIVE.get(i));
        if let Some(a) = slot {
            a.fetch_add(1, Ordering::Relaxed);
        }
        ActiveRpc(slot)
    }

    /// Counts an operation that went on without Redis.
    pub fn redis_fail_open(&self, component: &'static str) {
        self.redis_fail_open.add(1, &[KeyValue::new("component", component)]);
    }
}

/// Counts a request in `db.client.connection.pending_requests` while it
/// waits for a pooled connection (and its BEGIN), also when the wait is
/// abandoned.
pub struct PendingConnection(());

impl PendingConnection {
    /// Starts waiting.
    #[allow(clippy::new_without_default)]
    pub fn new() -> Self {
        metrics().db_pending.add(1, &[pool_name()]);
        PendingConnection(())
    }
}

impl Drop for PendingConnection {
    fn drop(&mut self) {
        metrics().db_pending.add(-1, &[pool_name()]);
    }
}

/// An RPC counted in `rpc.server.active_requests`.
pub struct ActiveRpc(Option<&'static AtomicI64>);

impl Drop for ActiveRpc {
    fn drop(&mut self) {
        if let Some(a) = self.0 {
            a.fetch_sub(1, Ordering::Relaxed);
        }
    }
}

const RATE_OUTCOMES: [&str; 4] = ["allowed", "limited", "fail_open", "fail_closed"];
static RATE_LIMIT: [AtomicU64; 4] = [const { AtomicU64::new(0) }; 4];
/// Per cache: (name, hits, misses).
type CacheCounts = Vec<(&'static str, AtomicU64, AtomicU64)>;
static CACHES: RwLock<CacheCounts> = RwLock::new(Vec::new());
/// In-flight RPCs per served method (indexes of `rpc_methods()`).
static ACTIVE: LazyLock<Vec<AtomicI64>> = LazyLock::new(|| rpc_methods().iter().map(|_| AtomicI64::new(0)).collect());

/// Pools whose connections the gauges report (one per server; tests run several).
static POOLS: Mutex<Vec<(u64, PgPool, u32)>> = Mutex::new(Vec::new());
static NEXT_POOL: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);

fn pool_totals() -> (i64, i64, i64) {
    let Ok(pools) = POOLS.lock() else { return (0, 0, 0) };
    pools.iter().fold((0, 0, 0), |(s, i, m), (_, p, max)| {
        (s + i64::from(p.size()), i + p.num_idle() as i64, m + i64::from(*max))
    })
}

/// Reports `pool` in the connection gauges until dropped.
pub struct PoolRegistration(u64);

/// Reports `pool` (of at most `max` connections) in the connection gauges.
pub fn register_pool(pool: &PgPool, max: u32) -> PoolRegistration {
    let id = NEXT_POOL.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let _ = metrics();
    if let Ok(mut p) = POOLS.lock() {
        p.push((id, pool.clone(), max));
    }
    PoolRegistration(id)
}

impl Drop for PoolRegistration {
    fn drop(&mut self) {
        if let Ok(mut p) = POOLS.lock() {
            p.retain(|(id, _, _)| *id != self.0);
        }
    }
}

/// The last queue-depth reading: (kind, state, jobs).
static QUEUE: Mutex<Vec<(String, String, i64)>> = Mutex::new(Vec::new());

/// Replaces the queue-depth reading.
pub fn set_queue_depth(rows: Vec<(String, String, i64)>) {
    if let Ok(mut q) = QUEUE.lock() {
        *q = rows;
    }
}

/// Every method deskd serves, as (service, method).
fn rpc_methods() -> &'static [(&'static str, &'static str)] {
    static METHODS: LazyLock<Vec<(&'static str, &'static str)>> = LazyLock::new(|| {
        let extra = [
            "/grpc.health.v1.Health/Check",
            "/grpc.health.v1.Health/Watch",
            "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
            "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
        ];
        crate::auth::permissions::METHODS
            .iter()
            .map(|(p, _)| *p)
            .chain(extra)
            .filter_map(|p| p.trim_start_matches('/').split_once('/'))
            .collect()
    });
    &METHODS
}

/// The `rpc.*` attributes of a request path: `(service, method, index)`,
/// static. A path deskd does not serve is `("_OTHER", "_OTHER", None)`, so
/// a caller cannot create label values.
pub fn rpc_labels(path: &str) -> (&'static str, &'static str, Option<usize>) {
    let Some((svc, method)) = path.trim_start_matches('/').split_once('/') else {
        return ("_OTHER", "_OTHER", None);
    };
    rpc_methods()
        .iter()
        .position(|(s, m)| *m == method && *s == svc)
        .map_or(("_OTHER", "_OTHER", None), |i| {
            let (s, m) = rpc_methods()[i];
            (s, m, Some(i))
        })
}

#[cfg(test)]
mod tests;
