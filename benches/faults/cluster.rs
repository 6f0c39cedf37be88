//! The run's own PostgreSQL cluster and Redis server. The shared ones
//! (5432, 6379) serve other tests and are never touched: this benchmark
//! restarts and kills its dependencies, so it owns them. Both are stopped
//! and their directories removed when the values drop, after a failure or
//! a panic too.

use std::{
    collections::BTreeMap,
    fs::OpenOptions,
    io::Write as _,
    net::TcpListener,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use tempfile::TempDir;

/// Debian's PostgreSQL 15 binaries.
const PG_BIN: &str = "/usr/lib/postgresql/15/bin";
/// PostgreSQL refuses to run as root: its commands run as this OS user.
const PG_OS_USER: &str = "postgres";

/// A port that was free a moment ago.
pub fn free_port() -> Result<u16, String> {
    let l = TcpListener::bind("127.0.0.1:0").map_err(|e| format!("bind a free port: {e}"))?;
    l.local_addr().map(|a| a.port()).map_err(|e| e.to_string())
}

fn run(mut cmd: Command, what: &str) -> Result<(), String> {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("{what}: cannot run: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{what} failed ({}): {}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout).trim(),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// A private PostgreSQL 15 cluster: `initdb` into a temporary directory
/// owned by the `postgres` OS user, trust authentication, TCP on
/// 127.0.0.1:`port` only (no Unix socket), fsync and synchronous commit
/// left on (the durability of acknowledged writes is what is measured).
pub struct Postgres {
    dir: TempDir,
    pub port: u16,
}

impl Postgres {
    fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    pub fn log_path(&self) -> PathBuf {
        self.dir.path().join("postgres.log")
    }

    /// `initdb`, then `pg_ctl start`.
    pub fn start_new() -> Result<Postgres, String> {
        let dir = tempfile::Builder::new()
            .prefix("deskd-faults-pg-")
            .tempdir()
            .map_err(|e| format!("temporary directory: {e}"))?;
        let mut chown = Command::new("chown");
        chown.arg(format!("{PG_OS_USER}:")).arg(dir.path());
        run(chown, "chown the cluster directory to postgres")?;
        let pg = Postgres {
            dir,
            port: free_port()?,
        };
        let mut initdb = Self::as_postgres(&format!("{PG_BIN}/initdb"));
        initdb.arg("-D").arg(pg.data()).args([
            "-U",
            "postgres",
            "--auth=trust",
            "--no-sync",
            "-E",
            "UTF8",
            "--locale=C.UTF-8",
        ]);
        run(initdb, "initdb")?;
        let conf = [
            format!("port = {}", pg.port),
            "listen_addresses = '127.0.0.1'".into(),
            "unix_socket_directories = ''".into(),
            "max_connections = 200".into(),
            // The defaults, stated: what makes an acknowledged commit durable.
            "fsync = on".into(),
            "synchronous_commit = on".into(),
            "log_min_messages = warning".into(),
        ];
        let mut f = OpenOptions::new()
            .append(true)
            .open(pg.data().join("postgresql.conf"))
            .map_err(|e| format!("postgresql.conf: {e}"))?;
        writeln!(f, "\n# deskd faults bench\n{}", conf.join("\n")).map_err(|e| format!("postgresql.conf: {e}"))?;
        drop(f);
        run(pg.ctl(&["start", "-w", "-t", "60"]), "pg_ctl start")?;
        Ok(pg)
    }

    fn as_postgres(program: &str) -> Command {
        let mut cmd = Command::new("runuser");
        cmd.args(["-u", PG_OS_USER, "--", program]);
        cmd
    }

    /// `pg_ctl <args>` on this cluster, as the postgres OS user. `start`
    /// gets the log file.
    pub fn ctl(&self, args: &[&str]) -> Command {
        let mut cmd = Self::as_postgres(&format!("{PG_BIN}/pg_ctl"));
        cmd.arg("-D").arg(self.data()).args(args);
        if args.first() == Some(&"start") {
            cmd.arg("-l").arg(self.log_path());
        }
        cmd.stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::piped());
        cmd
    }

    /// The postmaster's pid (first line of postmaster.pid).
    pub fn postmaster_pid(&self) -> Option<u32> {
        std::fs::read_to_string(self.data().join("postmaster.pid"))
            .ok()?
            .lines()
            .next()?
            .trim()
            .parse()
            .ok()
    }

    /// The last `n` lines of the server log.
    pub fn log_tail(&self, n: usize) -> String {
        tail(&self.log_path(), n)
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        // Immediate: nothing here is worth a checkpoint; the directory goes.
        let _ = self.ctl(&["stop", "-m", "immediate", "-w", "-t", "30"]).output();
    }
}

/// A private `redis-server --save '' --appendonly no` on 127.0.0.1:`port`,
/// which can be killed and started again on the same port.
pub struct Redis {
    dir: TempDir,
    pub port: u16,
    child: Option<Child>,
    starts: u32,
}

impl Redis {
    pub async fn start_new() -> Result<Redis, String> {
        let dir = tempfile::Builder::new()
            .prefix("deskd-faults-redis-")
            .tempdir()
            .map_err(|e| format!("temporary directory: {e}"))?;
        let mut r = Redis {
            dir,
            port: free_port()?,
            child: None,
            starts: 0,
        };
        r.start().await?;
        Ok(r)
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    /// Starts the server (again) and waits until it answers PING.
    pub async fn start(&mut self) -> Result<(), String> {
        if self.child.is_some() {
            return Err("redis-server is already running".into());
        }
        self.starts += 1;
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no", "--daemonize", "no"])
            .arg("--dir")
            .arg(self.dir.path())
            .arg("--logfile")
            .arg(self.dir.path().join(format!("redis-{}.log", self.starts)))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("spawn redis-server: {e}"))?;
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if self.ping().await.is_ok() {
                return Ok(());
            }
            if let Some(c) = self.child.as_mut()
                && let Ok(Some(status)) = c.try_wait()
            {
                self.child = None;
                return Err(format!("redis-server exited ({status}) at start"));
            }
            if Instant::now() > deadline {
                return Err("redis-server did not answer PING within 10 s".into());
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// SIGKILL: no shutdown, no goodbye to the clients.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    async fn conn(&self) -> Result<redis::aio::MultiplexedConnection, String> {
        let client = redis::Client::open(self.url()).map_err(|e| e.to_string())?;
        tokio::time::timeout(Duration::from_secs(1), client.get_multiplexed_async_connection())
            .await
            .map_err(|_| "connect timed out".to_string())?
            .map_err(|e| e.to_string())
    }

    async fn ping(&self) -> Result<(), String> {
        let mut c = self.conn().await?;
        redis::cmd("PING")
            .query_async::<String>(&mut c)
            .await
            .map(drop)
            .map_err(|e| e.to_string())
    }

    /// `INFO commandstats` as command → calls.
    pub async fn command_calls(&self) -> Result<BTreeMap<String, u64>, String> {
        let mut c = self.conn().await?;
        let info: String = redis::cmd("INFO")
            .arg("commandstats")
            .query_async(&mut c)
            .await
            .map_err(|e| e.to_string())?;
        Ok(parse_commandstats(&info))
    }

    /// How many keys start with `prefix:`.
    pub async fn keys_under(&self, prefix: &str) -> Result<u64, String> {
        let mut c = self.conn().await?;
        let mut cursor: u64 = 0;
        let mut n = 0;
        loop {
            let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
                .arg(cursor)
                .arg("MATCH")
                .arg(format!("{prefix}:*"))
                .arg("COUNT")
                .arg(1000)
                .query_async(&mut c)
                .await
                .map_err(|e| e.to_string())?;
            n += keys.len() as u64;
            if next == 0 {
                return Ok(n);
            }
            cursor = next;
        }
    }

    /// `redis_version` from `INFO server`.
    pub async fn version(&self) -> String {
        let info: Result<String, String> = async {
            let mut c = self.conn().await?;
            redis::cmd("INFO")
                .arg("server")
                .query_async(&mut c)
                .await
                .map_err(|e| e.to_string())
        }
        .await;
        info.ok()
            .and_then(|i| {
                i.lines()
                    .find_map(|l| l.strip_prefix("redis_version:").map(|v| v.trim().to_string()))
            })
            .unwrap_or_else(|| "unknown".into())
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.kill();
    }
}

/// `cmdstat_get:calls=12,usec=…` lines → {"get": 12}.
pub fn parse_commandstats(info: &str) -> BTreeMap<String, u64> {
    info.lines()
        .filter_map(|l| {
            let (name, rest) = l.strip_prefix("cmdstat_")?.split_once(':')?;
            let calls = rest.split(',').find_map(|kv| kv.strip_prefix("calls="))?.parse().ok()?;
            Some((name.to_string(), calls))
        })
        .collect()
}

/// Calls of the commands deskd sends (everything but this benchmark's own
/// INFO/SCAN probes and the connection handshake).
pub fn deskd_calls(stats: &BTreeMap<String, u64>) -> u64 {
    stats
        .iter()
        .filter(|(name, _)| {
            !matches!(name.as_str(), "info" | "scan" | "ping" | "hello" | "command") && !name.starts_with("client")
        })
        .map(|(_, calls)| calls)
        .sum()
}

/// Binds `pid`, every thread of it and every process below it to `cpus`
/// (a `taskset` CPU list); processes they start later inherit it.
/// Binds `pid` and all its threads (not its children) to `cpus`.
pub fn pin(pid: u32, cpus: &str) -> Result<(), String> {
    let mut cmd = Command::new("taskset");
    cmd.args(["-a", "-cp", cpus, &pid.to_string()]).stdout(Stdio::null());
    run(cmd, "taskset")
}

pub fn pin_tree(pid: u32, cpus: &str) -> Result<(), String> {
    let mut pids = vec![pid];
    let mut i = 0;
    while i < pids.len() {
        if let Ok(out) = Command::new("pgrep").args(["-P", &pids[i].to_string()]).output() {
            pids.extend(
                String::from_utf8_lossy(&out.stdout)
                    .split_whitespace()
                    .filter_map(|p| p.parse::<u32>().ok()),
            );
        }
        i += 1;
    }
    for p in pids {
        // A backend may exit between pgrep and taskset: only the root must exist.
        if let Err(e) = pin(p, cpus)
            && p == pid
        {
            return Err(e);
        }
    }
    Ok(())
}

/// The CPU time (user + system) a process has used so far.
pub fn cpu_time(pid: u32) -> Option<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may contain spaces: fields count from after ")".
    let rest = &stat[stat.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?;
    // USER_HZ is 100 on Linux.
    Some(Duration::from_millis(ticks * 10))
}

/// The last `n` lines of a file.
pub fn tail(path: &Path, n: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}
