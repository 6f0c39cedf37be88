//! `deskd serve` (the release binary cargo built beside this benchmark)
//! against the private PostgreSQL and Redis, its clients, and a
//! `grpc.health.v1` Watch stream that records the status timeline.

use std::{
    fs::File,
    net::SocketAddr,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use deskd_client::{DeskdClient, RetryPolicy};
use serde::Serialize;
use tonic::transport::Channel;
use tonic_health::pb::{HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient};

use crate::{
    cluster::{free_port, tail},
    seed::{Db, Tenant, deskd_env},
};

/// Every call's deadline: a call that hangs counts as DEADLINE_EXCEEDED.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(10);

/// What differs between the runs' servers.
pub struct Options<'a> {
    /// A name for the log file.
    pub name: &'a str,
    pub redis_url: &'a str,
    pub redis_prefix: &'a str,
    /// `server.max_in_flight`; deskd's default (1024) when `None`.
    pub max_in_flight: Option<usize>,
    /// Run on these CPUs only (a `taskset` list).
    pub cpus: Option<&'a str>,
}

/// A running `deskd serve`, killed (and reaped) when dropped.
pub struct Deskd {
    child: Option<Child>,
    pub addr: SocketAddr,
    pub pid: u32,
    pub log: PathBuf,
}

impl Deskd {
    /// Starts `deskd serve` and waits until health answers SERVING.
    pub async fn start(db: &Db, cwd: &Path, opts: &Options<'_>) -> Result<Deskd, String> {
        let port = free_port()?;
        let addr: SocketAddr = ([127, 0, 0, 1], port).into();
        let log = cwd.join(format!("deskd-{}.log", opts.name));
        let log_file = File::create(&log).map_err(|e| format!("log file: {e}"))?;
        let high = "1000000000";
        let mut cmd = match opts.cpus {
            // taskset execs deskd: the pid stays deskd's.
            Some(cpus) => {
                let mut c = Command::new("taskset");
                c.args(["-c", cpus, env!("CARGO_BIN_EXE_deskd")]);
                c
            }
            None => Command::new(env!("CARGO_BIN_EXE_deskd")),
        };
        cmd.arg("serve")
            .env_clear()
            .envs(deskd_env(db))
            .env("DESKD_LISTEN_ADDR", addr.to_string())
            .env("DESKD_ADMIN_ADDR", "127.0.0.1:0")
            .env("DESKD_SECRET_KEY", "bench-faults-server-secret-0123456789abcdef")
            .env("DESKD_EXPORTS_DIR", cwd.join("exports"))
            .env("DESKD_REDIS_URL", opts.redis_url)
            .env("DESKD_REDIS_KEY_PREFIX", opts.redis_prefix)
            // Quotas so generous they never refuse: the limiter still runs
            // (in Redis) on every request, which is what redis-kill needs.
            .env("DESKD_RATE_LIMIT__PRINCIPAL__REQUESTS", high)
            .env("DESKD_RATE_LIMIT__PRINCIPAL__BURST", high)
            .env("DESKD_RATE_LIMIT__TENANT__REQUESTS", high)
            .env("DESKD_RATE_LIMIT__TENANT__BURST", high)
            .current_dir(cwd)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log_file);
        if let Some(n) = opts.max_in_flight {
            cmd.env("DESKD_SERVER__MAX_IN_FLIGHT", n.to_string());
        }
        let started = Instant::now();
        let child = cmd.spawn().map_err(|e| format!("spawn deskd serve: {e}"))?;
        let mut d = Deskd {
            pid: child.id(),
            child: Some(child),
            addr,
            log,
        };
        let deadline = started + Duration::from_secs(30);
        loop {
            if !d.alive() {
                return Err(format!("deskd serve exited before serving:\n{}", tail(&d.log, 30)));
            }
            if health_check(addr).await == Some(ServingStatus::Serving) {
                return Ok(d);
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "deskd serve was not SERVING within 30 s:\n{}",
                    tail(&d.log, 30)
                ));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Whether the process is still running (it was not restarted).
    pub fn alive(&mut self) -> bool {
        matches!(self.child.as_mut().map(Child::try_wait), Some(Ok(None)))
    }

    /// `VmRSS` and `VmHWM` in KiB.
    pub fn memory_kib(&self) -> (Option<u64>, Option<u64>) {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid)).unwrap_or_default();
        let field = |name: &str| {
            status
                .lines()
                .find(|l| l.starts_with(name))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        };
        (field("VmRSS:"), field("VmHWM:"))
    }

    /// Log lines at ERROR level (deskd logs every INTERNAL's cause there).
    pub fn error_lines(&self) -> Vec<String> {
        std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .filter(|l| l.contains("ERROR"))
            .map(str::to_string)
            .collect()
    }

    /// SIGTERM (deskd drains), then SIGKILL after 10 s.
    pub fn stop(&mut self) {
        crate::support::terminate(self.child.take(), Duration::from_secs(10));
    }
}

impl Drop for Deskd {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A client for `tenant` (one HTTP/2 connection), with `retry`.
pub async fn client(addr: SocketAddr, tenant: &Tenant, retry: RetryPolicy) -> Result<DeskdClient, String> {
    DeskdClient::builder(format!("http://{addr}"))
        .bearer_token(tenant.token.clone())
        .tenant(&tenant.id)
        .timeout(CALL_TIMEOUT)
        .retry(retry)
        .connect()
        .await
        .map_err(|e| format!("connect to {addr}: {e}"))
}

async fn health_check(addr: SocketAddr) -> Option<ServingStatus> {
    let ep = Channel::from_shared(format!("http://{addr}")).ok()?;
    let channel = ep.connect_timeout(Duration::from_millis(200)).connect().await.ok()?;
    let r = HealthClient::new(channel)
        .check(HealthCheckRequest { service: String::new() })
        .await
        .ok()?;
    ServingStatus::try_from(r.get_ref().status).ok()
}

/// One change seen on the Watch stream.
#[derive(Debug, Clone, Serialize)]
pub struct HealthEvent {
    /// Milliseconds since the run's start.
    pub t_ms: f64,
    /// SERVING, NOT_SERVING, …, or STREAM_ERROR <code> when the stream broke.
    pub status: String,
}

/// A `Watch` on the overall service ("") kept open for the whole run
/// (reopened if it breaks, which is recorded).
pub struct HealthWatch {
    events: Arc<Mutex<Vec<HealthEvent>>>,
    task: tokio::task::JoinHandle<()>,
}

impl HealthWatch {
    pub fn start(addr: SocketAddr, t0: Instant) -> HealthWatch {
        let events = Arc::new(Mutex::new(Vec::new()));
        let ev = events.clone();
        let push = move |status: String| {
            if let Ok(mut v) = ev.lock() {
                v.push(HealthEvent {
                    t_ms: t0.elapsed().as_secs_f64() * 1000.0,
                    status,
                });
            }
        };
        let task = tokio::spawn(async move {
            loop {
                let stream = async {
                    let channel = Channel::from_shared(format!("http://{addr}"))
                        .map_err(|e| e.to_string())?
                        .connect()
                        .await
                        .map_err(|e| e.to_string())?;
                    HealthClient::new(channel)
                        .watch(HealthCheckRequest { service: String::new() })
                        .await
                        .map(tonic::Response::into_inner)
                        .map_err(|s| format!("{:?}", s.code()))
                }
                .await;
                match stream {
                    Ok(mut s) => loop {
                        match s.message().await {
                            Ok(Some(m)) => push(
                                ServingStatus::try_from(m.status)
                                    .map_or_else(|_| format!("STATUS {}", m.status), |st| st.as_str_name().to_string()),
                            ),
                            Ok(None) => {
                                push("STREAM_ERROR end of stream".into());
                                break;
                            }
                            Err(st) => {
                                push(format!("STREAM_ERROR {:?}", st.code()));
                                break;
                            }
                        }
                    },
                    Err(e) => push(format!("STREAM_ERROR {e}")),
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        });
        HealthWatch { events, task }
    }

    /// Stops watching and returns the timeline.
    pub fn finish(self) -> Vec<HealthEvent> {
        self.task.abort();
        self.events.lock().map(|v| v.clone()).unwrap_or_default()
    }
}
