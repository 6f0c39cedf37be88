//! The processes under test: `deskd serve` (the release binary cargo built
//! beside this benchmark) and the bare tonic service (this benchmark
//! re-executed with `--bare-server`). Both are killed when dropped.

use std::{
    fs::File,
    io::{BufRead as _, BufReader},
    net::{SocketAddr, TcpListener},
    path::Path,
    process::{Child, ChildStdin, Command, Stdio},
    time::{Duration, Instant},
};

use tonic::transport::Channel;
use tonic_health::pb::{HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient};

use crate::seed::{Db, deskd_env};

/// A child process that is killed (and reaped) when this value drops.
pub struct Proc {
    child: Option<Child>,
    // Held open: the bare server exits when it reads end of file here.
    _stdin: Option<ChildStdin>,
}

impl Proc {
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// SIGTERM (a graceful drain for deskd), then SIGKILL after 5 s.
    pub fn stop(&mut self) {
        crate::support::terminate(self.child.take(), Duration::from_secs(5));
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// `VmRSS` and `VmHWM` of a process, in KiB.
pub fn memory_kib(pid: u32) -> (Option<u64>, Option<u64>) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
    };
    (field("VmRSS:"), field("VmHWM:"))
}

/// CPU time (user + system) a process has used so far.
pub fn cpu_time(pid: u32) -> Option<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may contain spaces: fields count from after ")".
    let rest = &stat[stat.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?;
    Some(Duration::from_secs_f64(ticks as f64 / clock_ticks() as f64))
}

fn clock_ticks() -> u64 {
    static TICKS: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    *TICKS.get_or_init(|| {
        Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
            .filter(|&t| t > 0)
            .unwrap_or(100)
    })
}

/// A port that was free a moment ago (deskd is given a fixed port: with
/// `DESKD_LOG_FILTER=warn` it does not log the one it picked for port 0).
fn free_port() -> Result<u16, String> {
    let l = TcpListener::bind("127.0.0.1:0").map_err(|e| format!("bind a free port: {e}"))?;
    l.local_addr().map(|a| a.port()).map_err(|e| e.to_string())
}

/// A running `deskd serve`.
pub struct Deskd {
    pub proc: Proc,
    pub addr: SocketAddr,
    /// From spawn to the first health check answering SERVING.
    pub startup: Duration,
}

/// Starts `deskd serve` against the bench database (the owner URL is set,
/// so it checks the migrations, which are all applied already), with Redis
/// at 127.0.0.1:6379 under a key prefix of its own when `redis` is set, and
/// waits until `grpc.health.v1` answers SERVING.
pub async fn start_deskd(db: &Db, cwd: &Path, redis: bool) -> Result<Deskd, String> {
    let port = free_port()?;
    let addr: SocketAddr = ([127, 0, 0, 1], port).into();
    let redis_prefix = redis_prefix();
    let log = File::create(cwd.join("deskd-serve.log")).map_err(|e| format!("log file: {e}"))?;
    let high = "1000000000".to_string();
    // DESKD_BENCH_SERVER_BIN: another build of deskd to measure (an A/B
    // comparison of two binaries with one benchmark build).
    let bin = std::env::var_os("DESKD_BENCH_SERVER_BIN").unwrap_or_else(|| env!("CARGO_BIN_EXE_deskd").into());
    let mut cmd = Command::new(bin);
    cmd.arg("serve")
        .env_clear()
        .envs(deskd_env(db))
        .env("DESKD_LISTEN_ADDR", addr.to_string())
        .env("DESKD_ADMIN_ADDR", "127.0.0.1:0")
        .env("DESKD_SECRET_KEY", "bench-load-server-secret-0123456789abcdef")
        .env("DESKD_EXPORTS_DIR", cwd.join("exports"))
        // Generous quotas: this measures the request path, not refusals.
        .env("DESKD_RATE_LIMIT__PRINCIPAL__REQUESTS", &high)
        .env("DESKD_RATE_LIMIT__PRINCIPAL__BURST", &high)
        .env("DESKD_RATE_LIMIT__TENANT__REQUESTS", &high)
        .env("DESKD_RATE_LIMIT__TENANT__BURST", &high)
        // Transport settings under study, e.g. DESKD_SERVER_MAX_CONCURRENT_STREAMS,
        // pass through from the benchmark's own environment.
        .envs(std::env::vars().filter(|(k, _)| k.starts_with("DESKD_SERVER_")))
        .current_dir(cwd)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log);
    if redis {
        cmd.env("DESKD_REDIS_URL", "redis://127.0.0.1:6379/0")
            .env("DESKD_REDIS_KEY_PREFIX", &redis_prefix);
    }
    let started = Instant::now();
    let child = cmd.spawn().map_err(|e| format!("spawn deskd serve: {e}"))?;
    let mut proc = Proc {
        child: Some(child),
        _stdin: None,
    };
    let endpoint = format!("http://{addr}");
    let deadline = started + Duration::from_secs(30);
    loop {
        if let Some(child) = proc.child.as_mut()
            && let Ok(Some(status)) = child.try_wait()
        {
            let log = std::fs::read_to_string(cwd.join("deskd-serve.log")).unwrap_or_default();
            return Err(format!("deskd serve exited ({status}) before serving:\n{log}"));
        }
        if serving(&endpoint).await {
            break;
        }
        if Instant::now() > deadline {
            proc.stop();
            let log = std::fs::read_to_string(cwd.join("deskd-serve.log")).unwrap_or_default();
            return Err(format!("deskd serve was not SERVING within 30 s:\n{log}"));
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    Ok(Deskd {
        startup: started.elapsed(),
        proc,
        addr,
    })
}

async fn serving(endpoint: &str) -> bool {
    let Ok(ep) = Channel::from_shared(endpoint.to_string()) else {
        return false;
    };
    let Ok(channel) = ep.connect_timeout(Duration::from_millis(200)).connect().await else {
        return false;
    };
    let mut health = HealthClient::new(channel);
    matches!(
        health.check(HealthCheckRequest { service: String::new() }).await,
        Ok(r) if r.get_ref().status == ServingStatus::Serving as i32
    )
}

/// The Redis key prefix of this run's deskd.
pub fn redis_prefix() -> String {
    format!("deskd-bench-load-{}", std::process::id())
}

/// Deletes the Redis keys deskd wrote under `prefix`.
pub async fn clean_redis(prefix: &str) -> Result<u64, String> {
    let client = redis::Client::open("redis://127.0.0.1:6379/0").map_err(|e| e.to_string())?;
    let mut conn = client
        .get_multiplexed_async_connection()
        .await
        .map_err(|e| e.to_string())?;
    let mut cursor: u64 = 0;
    let mut deleted = 0;
    loop {
        let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(format!("{prefix}:*"))
            .arg("COUNT")
            .arg(1000)
            .query_async(&mut conn)
            .await
            .map_err(|e| e.to_string())?;
        if !keys.is_empty() {
            let n: u64 = redis::cmd("DEL")
                .arg(&keys)
                .query_async(&mut conn)
                .await
                .map_err(|e| e.to_string())?;
            deleted += n;
        }
        if next == 0 {
            return Ok(deleted);
        }
        cursor = next;
    }
}

/// Starts this benchmark again as the bare tonic service and reads the
/// port it prints.
pub fn start_bare() -> Result<(Proc, SocketAddr), String> {
    let exe = std::env::current_exe().map_err(|e| format!("current_exe: {e}"))?;
    let mut child = Command::new(exe)
        .arg("--bare-server")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .map_err(|e| format!("spawn the bare server: {e}"))?;
    let stdin = child.stdin.take();
    let stdout = child.stdout.take();
    let proc = Proc {
        child: Some(child),
        _stdin: stdin,
    };
    let mut line = String::new();
    if let Some(out) = stdout {
        let _ = BufReader::new(out).read_line(&mut line);
    }
    let addr = line
        .trim()
        .strip_prefix("listening on ")
        .and_then(|a| a.parse::<SocketAddr>().ok())
        .ok_or_else(|| format!("the bare server printed `{}`, not its address", line.trim()))?;
    Ok((proc, addr))
}
