//! The balancer suite's set-up (tests/api/balancer.rs): a real HAProxy in
//! front of three `deskd serve` replicas sharing one database and one Redis
//! (`Cluster`), and an aiosmtpd peer for the job test (`Smtp`).

#![allow(dead_code)]

use std::{
    collections::BTreeMap,
    net::SocketAddr,
    time::{Duration, Instant},
};

use deskd::proto::{tickets::v1 as pb, users::v1 as upb};
use tonic::transport::Channel;
use uuid::Uuid;

use crate::helpers::*;

/// HAProxy (the Debian package) in the foreground with the repository's
/// `deploy/haproxy/haproxy.cfg`, in front of three `deskd serve` replicas:
/// h2c on a free port, per-request round robin, `/readyz` health checks. Its
/// log goes to a temporary file; the process is killed when this drops.
pub struct HaProxy {
    child: std::process::Child,
    /// The frontend clients connect to.
    pub addr: SocketAddr,
    /// The stats page (`/stats;csv`).
    pub stats_addr: String,
    log: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

/// One replica as HAProxy sees it: `(gRPC port, admin port)`.
pub type Backend = (u16, u16);

impl HaProxy {
    pub const CONFIG: &'static str = concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/haproxy/haproxy.cfg");

    /// Starts HAProxy in front of `backends` (servers r1, r2, r3) and waits
    /// until its frontend accepts connections (not until the servers are UP:
    /// see `wait_status`).
    pub async fn start(backends: [Backend; 3]) -> HaProxy {
        let dir = tempfile::tempdir().expect("tempdir");
        let log = dir.path().join("haproxy.log");
        let port = free_port();
        let stats_port = free_port();
        let mut cmd = std::process::Command::new("haproxy");
        cmd.args(["-db", "-f", Self::CONFIG])
            .current_dir(dir.path())
            .env("LB_ADDR", format!("127.0.0.1:{port}"))
            .env("LB_STATS_ADDR", format!("127.0.0.1:{stats_port}"))
            .stdin(std::process::Stdio::null())
            .stdout(std::fs::File::create(&log).expect("haproxy log"))
            .stderr(std::fs::File::create(dir.path().join("haproxy.err")).expect("haproxy err"));
        for (i, (grpc, admin)) in backends.iter().enumerate() {
            cmd.env(format!("LB_R{}_ADDR", i + 1), format!("127.0.0.1:{grpc}"))
                .env(format!("LB_R{}_ADMIN_PORT", i + 1), admin.to_string());
        }
        let child = cmd
            .spawn()
            .expect("start haproxy (scripts/ensure-services installs the Debian package)");
        let lb = HaProxy {
            child,
            addr: format!("127.0.0.1:{port}").parse().expect("addr"),
            stats_addr: format!("127.0.0.1:{stats_port}"),
            log,
            _dir: dir,
        };
        wait_listening(stats_port, "haproxy stats").await;
        wait_listening(port, "haproxy").await;
        lb
    }

    /// HAProxy's own log so far (stderr and stdout), for failure messages.
    pub fn log(&self) -> String {
        let mut text = std::fs::read_to_string(&self.log).unwrap_or_default();
        text.push_str(&std::fs::read_to_string(self.log.with_extension("err")).unwrap_or_default());
        text
    }

    /// The stats CSV as rows of `column → value` (proxy `pxname`, server
    /// `svname`, `status`, `stot`, `req_tot`, `conn_tot`, …).
    pub async fn stats(&self) -> Vec<std::collections::HashMap<String, String>> {
        let (status, body) = http_get(&self.stats_addr, "/stats;csv").await;
        assert_eq!(status, 200, "{body}");
        // The stats page answers with a chunked body.
        let mut csv = String::new();
        let mut rest = body.as_str();
        while let Some((size, after)) = rest.split_once("\r\n") {
            let size = usize::from_str_radix(size.trim(), 16).expect("chunk size");
            if size == 0 || after.len() < size {
                break;
            }
            csv.push_str(&after[..size]);
            rest = after[size..].trim_start_matches("\r\n");
        }
        let mut lines = csv.lines();
        let header: Vec<String> = lines
            .next()
            .unwrap_or_default()
            .trim_start_matches("# ")
            .split(',')
            .map(str::to_string)
            .collect();
        lines
            .filter(|l| !l.is_empty())
            .map(|l| header.iter().cloned().zip(l.split(',').map(str::to_string)).collect())
            .collect()
    }

    /// The check status of backend server `server` (r1, r2, r3): "UP", "DOWN", …
    pub async fn status(&self, server: &str) -> String {
        self.stats()
            .await
            .into_iter()
            .find(|r| r.get("pxname").is_some_and(|p| p == "deskd") && r.get("svname").is_some_and(|s| s == server))
            .and_then(|r| r.get("status").cloned())
            .unwrap_or_default()
    }

    /// Polls (bounded, 20 s) until `server`'s status is exactly `want`:
    /// "UP" is in rotation; a server on its way up reads "DOWN 1/2".
    pub async fn wait_status(&self, server: &str, want: &str) {
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        loop {
            let status = self.status(server).await;
            if status == want {
                return;
            }
            if std::time::Instant::now() > deadline {
                panic!(
                    "haproxy: {server} is {status:?}, not {want:?}, after 20s\n{}",
                    self.log()
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for HaProxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub const SECRET_KEY: &str = "balancer-suite-shared-secret-0123456789abcdef";

pub fn redis_addr() -> String {
    std::env::var("DESKD_TEST_REDIS_ADDR").unwrap_or_else(|_| "127.0.0.1:6379".into())
}

/// Polls `f` (a condition) until it holds, for at most `limit`.
pub async fn until<F, Fut>(limit: Duration, what: &str, mut f: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + limit;
    while !f().await {
        assert!(Instant::now() < deadline, "{what}: not within {limit:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

pub struct Replica {
    pub ports: Backend,
    /// None while it is stopped.
    pub process: Option<ServeProcess>,
}

impl Replica {
    pub fn admin(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.ports.1))
    }
}

/// Three replicas behind HAProxy. Fields drop in order: the balancer, the
/// replicas, then the database.
pub struct Cluster {
    pub lb: HaProxy,
    pub replicas: Vec<Replica>,
    pub env: Vec<(String, String)>,
    pub prefix: String,
    /// The database and the helpers that make tenants and tokens. Its
    /// in-process server takes no traffic and runs no jobs.
    pub app: TestApp,
}

impl Cluster {
    /// Starts three replicas (workers on, one Redis key prefix, the same
    /// secret key; `extra` settings for all) and HAProxy in front, and waits
    /// until HAProxy has all three in rotation.
    pub async fn start(extra: &[(&str, &str)]) -> Cluster {
        let app = spawn_app_with(|c| c.jobs.run_in_serve = false).await;
        let prefix = format!("deskd-test-lb-{}", Uuid::new_v4().simple());
        let mut env: Vec<(String, String)> = [
            ("DESKD_REDIS_URL", format!("redis://{}/0", redis_addr())),
            ("DESKD_REDIS_KEY_PREFIX", prefix.clone()),
            ("DESKD_SECRET_KEY", SECRET_KEY.into()),
            // Migrated once already (by the in-process app).
            ("DESKD_DATABASE_OWNER_URL", String::new()),
            ("DESKD_HEALTH_CHECK_INTERVAL", "100ms".into()),
            ("DESKD_JOBS_POLL_INTERVAL", "20ms".into()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
        env.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        let ports: [Backend; 3] = std::array::from_fn(|_| (free_port(), free_port()));
        let mut replicas: Vec<Replica> = ports.iter().map(|&ports| Replica { ports, process: None }).collect();
        let (a, b, c) = tokio::join!(
            start_replica(&app, &env, ports[0]),
            start_replica(&app, &env, ports[1]),
            start_replica(&app, &env, ports[2]),
        );
        for (r, p) in replicas.iter_mut().zip([a, b, c]) {
            r.process = Some(p);
        }
        let lb = HaProxy::start(ports).await;
        for server in ["r1", "r2", "r3"] {
            lb.wait_status(server, "UP").await;
        }
        Cluster {
            lb,
            replicas,
            env,
            prefix,
            app,
        }
    }

    /// One HTTP/2 connection to HAProxy.
    pub async fn channel(&self) -> Channel {
        Channel::from_shared(format!("http://{}", self.lb.addr))
            .expect("uri")
            .connect()
            .await
            .expect("connect to haproxy")
    }

    pub fn tickets(channel: &Channel) -> pb::tickets_service_client::TicketsServiceClient<Channel> {
        pb::tickets_service_client::TicketsServiceClient::new(channel.clone())
    }

    pub fn users(channel: &Channel) -> upb::users_service_client::UsersServiceClient<Channel> {
        upb::users_service_client::UsersServiceClient::new(channel.clone())
    }

    /// How many `method` RPCs each replica has answered (its own /metrics;
    /// a restarted replica counts from zero).
    pub async fn served(&self, method: &str) -> Vec<u64> {
        let label = format!("rpc_method=\"{method}\"");
        let mut counts = Vec::new();
        for r in &self.replicas {
            let n = metric_sum(r.admin(), "rpc_server_call_duration_seconds_count", &[&label]).await;
            counts.push(n as u64);
        }
        counts
    }

    /// SIGTERM to replica `i`; waits for its exit, which must be clean.
    pub async fn stop(&mut self, i: usize) -> Vec<String> {
        let p = self.replicas[i].process.take().expect("running");
        let (clean, stderr, _) = p.stop().await;
        assert!(clean, "replica r{} did not stop cleanly:\n{}", i + 1, stderr.join("\n"));
        stderr
    }

    /// Starts replica `i` again on its ports.
    pub async fn restart(&mut self, i: usize) {
        let p = start_replica(&self.app, &self.env, self.replicas[i].ports).await;
        self.replicas[i].process = Some(p);
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        // Deletes this cluster's Redis keys (the shared Redis is never flushed).
        let Ok(client) = redis::Client::open(format!("redis://{}/0", redis_addr())) else {
            return;
        };
        let Ok(mut conn) = client.get_connection() else {
            return;
        };
        let keys: Vec<String> = redis::cmd("KEYS")
            .arg(format!("{}:*", self.prefix))
            .query(&mut conn)
            .unwrap_or_default();
        if !keys.is_empty() {
            let _: Result<(), _> = redis::cmd("DEL").arg(keys).query(&mut conn);
        }
    }
}

pub async fn start_replica(app: &TestApp, env: &[(String, String)], (grpc, admin): Backend) -> ServeProcess {
    let listen = format!("127.0.0.1:{grpc}");
    let admin = format!("127.0.0.1:{admin}");
    let mut vars: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    vars.push(("DESKD_LISTEN_ADDR", &listen));
    vars.push(("DESKD_ADMIN_ADDR", &admin));
    ServeProcess::start(app, &vars).await
}

pub fn minus(after: &[u64], before: &[u64]) -> Vec<u64> {
    after.iter().zip(before).map(|(a, b)| a - b).collect()
}

pub async fn list(channel: &Channel, token: &str) -> Result<pb::ListTicketsResponse, tonic::Status> {
    Cluster::tickets(channel)
        .list_tickets(authed(token, pb::ListTicketsRequest::default()))
        .await
        .map(tonic::Response::into_inner)
}

/// aiosmtpd storing every message in a Maildir; killed when dropped.
pub struct Smtp {
    pub child: std::process::Child,
    pub port: u16,
    pub dir: tempfile::TempDir,
}

impl Smtp {
    pub async fn start() -> Smtp {
        let dir = tempfile::tempdir().expect("tempdir");
        let port = free_port();
        let child = std::process::Command::new("python3")
            .args(["-m", "aiosmtpd", "-n", "-l"])
            .arg(format!("127.0.0.1:{port}"))
            .args(["-c", "aiosmtpd.handlers.Mailbox"])
            .arg(dir.path().join("maildir"))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("start aiosmtpd (scripts/ensure-services installs it)");
        let smtp = Smtp { child, port, dir };
        wait_listening(port, "aiosmtpd").await;
        smtp
    }

    /// How many messages each recipient has received.
    pub fn recipients(&self) -> BTreeMap<String, usize> {
        let mut seen = BTreeMap::new();
        let Ok(entries) = std::fs::read_dir(self.dir.path().join("maildir").join("new")) else {
            return seen;
        };
        for text in entries
            .filter_map(Result::ok)
            .filter_map(|e| std::fs::read_to_string(e.path()).ok())
        {
            let to = text
                .lines()
                .find_map(|l| l.strip_prefix("X-RcptTo:"))
                .map(|v| v.trim().to_string())
                .unwrap_or_default();
            *seen.entry(to).or_insert(0) += 1;
        }
        seen
    }
}

impl Drop for Smtp {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
