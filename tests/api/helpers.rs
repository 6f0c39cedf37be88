//! Test harness: a fresh database per test, the real server on port 0, and
//! helpers to create tenants, users and tokens.

#![allow(dead_code)]

use std::{
    net::SocketAddr,
    sync::atomic::{AtomicU64, Ordering},
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use deskd::{
    auth::{Claims, JwtKeys},
    config::Config,
    proto::tickets::v1::{self as pb, tickets_service_client::TicketsServiceClient},
    startup::Application,
    tenancy::{TenantId, UserId},
    users::model::{Role, User},
};
use secrecy::SecretString;
use sqlx::{AssertSqlSafe, ConnectOptions, Connection, PgConnection, PgPool, postgres::PgConnectOptions};
use tokio::{sync::oneshot, task::JoinHandle};
use tonic::{Request, transport::Channel};
use uuid::Uuid;

/// Where the test PostgreSQL listens (overridable for unusual set-ups).
pub fn pg_host_port() -> (String, u16) {
    let host = std::env::var("DESKD_TEST_PG_HOST").unwrap_or_else(|_| "127.0.0.1".into());
    let port = std::env::var("DESKD_TEST_PG_PORT")
        .ok()
        .and_then(|p| p.parse().ok())
        .unwrap_or(5432);
    (host, port)
}

/// The test PostgreSQL's socket address, for a proxy in front of it.
pub async fn pg_upstream() -> std::net::SocketAddr {
    let (host, port) = pg_host_port();
    tokio::net::lookup_host((host.as_str(), port))
        .await
        .expect("resolve")
        .next()
        .expect("an address")
}

/// Where the app role connects: PostgreSQL, or the PgBouncer named by
/// `DESKD_TEST_PGBOUNCER=host:port` (scripts/test's pass through PgBouncer).
/// The owner (migrations, test set-up) always connects to PostgreSQL itself.
pub fn app_host_port() -> (String, u16) {
    match std::env::var("DESKD_TEST_PGBOUNCER") {
        Ok(addr) if !addr.is_empty() => {
            let (host, port) = addr
                .rsplit_once(':')
                .and_then(|(h, p)| Some((h.to_string(), p.parse().ok()?)))
                .expect("DESKD_TEST_PGBOUNCER must be host:port");
            (host, port)
        }
        _ => pg_host_port(),
    }
}

/// The superuser used to create and drop test databases.
pub fn admin_options() -> PgConnectOptions {
    let (host, port) = pg_host_port();
    PgConnectOptions::new()
        .host(&host)
        .port(port)
        .username("postgres")
        .database("postgres")
}

pub const APP_ROLE: &str = "deskd_app";
pub const JWT_SECRET: &str = "test-secret-0123456789abcdef0123456789";

static COUNTER: AtomicU64 = AtomicU64::new(0);

/// A database of its own, dropped when this value is.
pub struct TestDb {
    pub name: String,
}

impl TestDb {
    pub async fn create() -> TestDb {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let rand = Uuid::new_v4().simple().to_string();
        let name = format!("deskd_t_{now}_{}_{n}_{}", std::process::id(), &rand[..8]);
        let mut conn = admin_options().connect().await.expect("connect as postgres");
        sweep_stale(&mut conn, now).await;
        sqlx::query(AssertSqlSafe(format!("create database \"{name}\"")))
            .execute(&mut conn)
            .await
            .expect("create test database");
        let _ = conn.close().await;
        TestDb { name }
    }

    pub fn owner_url(&self) -> String {
        let (host, port) = pg_host_port();
        format!("postgres://postgres@{host}:{port}/{}", self.name)
    }

    pub fn app_url(&self) -> String {
        let (host, port) = app_host_port();
        format!("postgres://{APP_ROLE}@{host}:{port}/{}", self.name)
    }

    pub fn app_url_via(&self, addr: SocketAddr) -> String {
        format!("postgres://{APP_ROLE}@{}:{}/{}", addr.ip(), addr.port(), self.name)
    }

    pub async fn owner_conn(&self) -> PgConnection {
        PgConnectOptions::new()
            .host(&pg_host_port().0)
            .port(pg_host_port().1)
            .username("postgres")
            .database(&self.name)
            .connect()
            .await
            .expect("owner connection")
    }

    /// A pool connected as the app role (subject to RLS).
    pub async fn app_pool(&self, size: u32) -> PgPool {
        sqlx::postgres::PgPoolOptions::new()
            .max_connections(size)
            .connect(&self.app_url())
            .await
            .expect("app pool")
    }
}

/// Drops test databases left behind by crashed runs more than 2 hours ago.
async fn sweep_stale(conn: &mut PgConnection, now: u64) {
    let names: Vec<String> =
        sqlx::query_scalar("select datname::text from pg_database where datname like 'deskd\\_t\\_%'")
            .fetch_all(&mut *conn)
            .await
            .unwrap_or_default();
    for name in names {
        let ts = name.split('_').nth(2).and_then(|s| s.parse::<u64>().ok());
        if ts.is_some_and(|t| t + 7200 < now) {
            let _ = sqlx::query(AssertSqlSafe(format!(
                "drop database if exists \"{name}\" with (force)"
            )))
            .execute(&mut *conn)
            .await;
        }
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let name = self.name.clone();
        let _ = std::fs::remove_dir_all(exports_dir(&name));
        // Drop runs inside the test's runtime: do the async work on a thread
        // of its own and wait for it.
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build();
            if let Ok(rt) = rt {
                rt.block_on(async move {
                    if let Ok(mut conn) = admin_options().connect().await {
                        let _ = sqlx::query(AssertSqlSafe(format!(
                            "drop database if exists \"{name}\" with (force)"
                        )))
                        .execute(&mut conn)
                        .await;
                        let _ = conn.close().await;
                    }
                });
            }
        })
        .join();
    }
}

/// Where a test database's exports are written (removed with the database).
pub fn exports_dir(db_name: &str) -> std::path::PathBuf {
    std::env::temp_dir().join(format!("deskd-test-exports-{db_name}"))
}

/// A configuration for a test server on port 0 against `db`.
pub fn test_config(db: &TestDb) -> Config {
    let mut cfg = Config {
        listen_addr: "127.0.0.1:0".parse().expect("addr"),
        admin_addr: "127.0.0.1:0".parse().expect("addr"),
        ..Config::default()
    };
    cfg.database.url = SecretString::from(db.app_url());
    cfg.database.owner_url = SecretString::from(db.owner_url());
    cfg.jwt.secret = SecretString::from(JWT_SECRET);
    cfg.health.check_interval = Duration::from_millis(100);
    cfg.health.check_timeout = Duration::from_millis(500);
    // Exports (e.g. the permission matrix's) never land in the work tree.
    cfg.exports.dir = exports_dir(&db.name);
    cfg
}

/// A running server.
pub struct TestApp {
    pub addr: SocketAddr,
    /// The admin listener (`/metrics`, `/livez`, `/readyz`).
    pub admin_addr: SocketAddr,
    pub config: Config,
    pub keys: JwtKeys,
    pub channel: Channel,
    shutdown: Option<oneshot::Sender<()>>,
    pub server: Option<JoinHandle<anyhow::Result<()>>>,
    // Last: dropped after the server handle.
    pub db: TestDb,
}

/// Starts a server with the default test configuration.
pub async fn spawn_app() -> TestApp {
    spawn_app_with(|_| {}).await
}

/// Starts a server after `tweak` adjusts the configuration.
pub async fn spawn_app_with(tweak: impl FnOnce(&mut Config)) -> TestApp {
    let db = TestDb::create().await;
    spawn_app_on(db, tweak).await
}

/// Starts a server against an existing test database.
pub async fn spawn_app_on(db: TestDb, tweak: impl FnOnce(&mut Config)) -> TestApp {
    let mut config = test_config(&db);
    tweak(&mut config);
    let app = Application::build(config.clone()).await.expect("build application");
    let addr = app.local_addr();
    let admin_addr = app.admin_addr();
    let (tx, rx) = oneshot::channel::<()>();
    let server = tokio::spawn(app.run_until(async move {
        let _ = rx.await;
    }));
    let channel = Channel::from_shared(format!("http://{addr}"))
        .expect("uri")
        .connect()
        .await
        .expect("connect to test server");
    let keys = JwtKeys::hs256(&config.jwt.secret, &config.jwt).expect("keys");
    TestApp {
        addr,
        admin_addr,
        config,
        keys,
        channel,
        shutdown: Some(tx),
        server: Some(server),
        db,
    }
}

/// A tenant with one user and a token for it.
#[derive(Clone, Debug)]
pub struct Caller {
    pub tenant: TenantId,
    pub user: UserId,
    pub token: String,
}

impl TestApp {
    pub fn tickets(&self) -> TicketsServiceClient<Channel> {
        TicketsServiceClient::new(self.channel.clone())
    }

    /// Creates a tenant (as the owner, like `deskd tenant create`).
    pub async fn create_tenant(&self, name: &str) -> TenantId {
        let mut conn = self.db.owner_conn().await;
        let id = TenantId(Uuid::now_v7());
        deskd::tenancy::store::insert_tenant(&mut conn, id, name)
            .await
            .expect("insert tenant");
        let _ = conn.close().await;
        id
    }

    /// Creates a user (as the owner, like `deskd user create`).
    pub async fn create_user(&self, tenant: TenantId, role: Role) -> UserId {
        let mut conn = self.db.owner_conn().await;
        let id = UserId(Uuid::now_v7());
        let user = User::person(
            id,
            format!("{}@example.com", id.0.simple()),
            format!("user {id}"),
            role,
            time::OffsetDateTime::now_utc().replace_nanosecond(0).expect("now"),
        );
        assert!(
            deskd::users::store::insert_user(&mut conn, tenant, &user)
                .await
                .expect("insert user")
        );
        let _ = conn.close().await;
        id
    }

    pub fn token(&self, tenant: TenantId, user: UserId) -> String {
        self.keys.mint(tenant, user, Duration::from_secs(3600)).expect("mint")
    }

    /// Signs arbitrary claims with the server's secret.
    pub fn sign(&self, claims: &Claims) -> String {
        self.keys.sign(claims).expect("sign")
    }

    /// A new tenant with one user of `role`.
    pub async fn caller(&self, role: Role) -> Caller {
        let tenant = self.create_tenant(&format!("tenant {}", Uuid::new_v4())).await;
        let user = self.create_user(tenant, role).await;
        Caller {
            tenant,
            user,
            token: self.token(tenant, user),
        }
    }

    /// Another user of `role` in the caller's tenant.
    pub async fn colleague(&self, of: &Caller, role: Role) -> Caller {
        let user = self.create_user(of.tenant, role).await;
        Caller {
            tenant: of.tenant,
            user,
            token: self.token(of.tenant, user),
        }
    }

    /// Stops the server as SIGTERM would and waits for it to finish.
    pub async fn shutdown(&mut self) -> anyhow::Result<()> {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        match self.server.take() {
            Some(h) => h.await.expect("server task"),
            None => Ok(()),
        }
    }

    /// Sends the shutdown signal without waiting.
    pub fn signal_shutdown(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(h) = self.server.take() {
            h.abort();
        }
    }
}

/// A request carrying `token` as a bearer credential.
pub fn authed<T>(token: &str, msg: T) -> Request<T> {
    let mut req = Request::new(msg);
    let value = format!("Bearer {token}").parse().expect("metadata value");
    req.metadata_mut().insert("authorization", value);
    req
}

/// A minimal valid ticket for create.
pub fn new_ticket(title: &str) -> pb::Ticket {
    pb::Ticket {
        title: title.to_string(),
        ..Default::default()
    }
}

/// Creates a ticket and returns it.
pub async fn create_ticket(app: &TestApp, caller: &Caller, ticket: pb::Ticket) -> pb::Ticket {
    app.tickets()
        .create_ticket(authed(
            &caller.token,
            pb::CreateTicketRequest {
                ticket: Some(ticket),
                request_id: String::new(),
            },
        ))
        .await
        .expect("create ticket")
        .into_inner()
        .ticket
        .expect("ticket in response")
}

/// Asserts an INVALID_ARGUMENT naming `field` with `reason`.
#[track_caller]
pub fn assert_field_violation(status: &tonic::Status, field: &str, reason: &str) {
    use tonic_types::StatusExt as _;
    assert_eq!(status.code(), tonic::Code::InvalidArgument, "{status:?}");
    let details = status.get_error_details();
    let br = details.bad_request().expect("BadRequest details");
    assert!(
        br.field_violations
            .iter()
            .any(|v| v.field == field && v.reason == reason),
        "no violation {field}/{reason} in {:?}",
        br.field_violations
    );
}

/// The ErrorInfo reason of a status.
pub fn reason(status: &tonic::Status) -> String {
    use tonic_types::StatusExt as _;
    status
        .get_error_details()
        .error_info()
        .map(|i| i.reason.clone())
        .unwrap_or_default()
}

/// Runs the real `deskd` binary with `args` against the app's database and
/// JWT secret, in an empty working directory.
pub fn deskd_cli(app: &TestApp, args: &[&str]) -> std::process::Output {
    let dir = tempfile::tempdir().expect("tempdir");
    std::process::Command::new(env!("CARGO_BIN_EXE_deskd"))
        .args(args)
        .current_dir(dir.path())
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("DESKD_DATABASE_URL", app.db.app_url())
        .env("DESKD_DATABASE_OWNER_URL", app.db.owner_url())
        .env("DESKD_JWT_SECRET", JWT_SECRET)
        .output()
        .expect("run deskd")
}

/// Polls (a condition, bounded) until `want` backends of the app's database
/// wait on a lock.
pub async fn wait_lock_waiters(app: &TestApp, want: i64) {
    let mut conn = app.db.owner_conn().await;
    for _ in 0..1000 {
        let waiting: i64 =
            sqlx::query_scalar("select count(*) from pg_stat_activity where datname = $1 and wait_event_type = 'Lock'")
                .bind(&app.db.name)
                .fetch_one(&mut conn)
                .await
                .expect("pg_stat_activity");
        if waiting == want {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("the number of lock waiters never became {want}");
}

/// A port nothing listens on (bound, then released), for a peer process
/// that must be told its port.
pub fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr").port()
}

/// Waits (bounded, 10 s) until something accepts connections on `port`.
pub async fn wait_listening(port: u16, what: &str) {
    for _ in 0..200 {
        if tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_ok() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{what} did not listen on port {port} within 10s");
}

/// A `deskd serve` process against `app`'s database (JSON logs), with
/// extra `DESKD_*` settings; its stderr and stdout lines are collected.
pub struct ServeProcess {
    /// Taken by `stop`; a process still here when the value drops (a test
    /// failed first) is killed, so no server outlives its test.
    child: Option<std::process::Child>,
    pub addr: String,
    pub admin_addr: String,
    pub cwd: tempfile::TempDir,
    stderr: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
    stdout: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
    readers: Vec<std::thread::JoinHandle<()>>,
}

impl ServeProcess {
    pub async fn start(app: &TestApp, extra: &[(&str, &str)]) -> ServeProcess {
        use std::{
            io::BufRead as _,
            process::{Command, Stdio},
            sync::{Arc, Mutex},
        };
        let cwd = tempfile::tempdir().expect("tempdir");
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_deskd"));
        cmd.arg("serve")
            .current_dir(cwd.path())
            .env_clear()
            .env("DESKD_LISTEN_ADDR", "127.0.0.1:0")
            .env("DESKD_ADMIN_ADDR", "127.0.0.1:0")
            .env("DESKD_DATABASE_URL", app.db.app_url())
            .env("DESKD_DATABASE_OWNER_URL", app.db.owner_url())
            .env("DESKD_JWT_SECRET", JWT_SECRET)
            .env("DESKD_LOG_FORMAT", "json")
            .env("DESKD_EXPORTS_DIR", exports_dir(&app.db.name))
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for (k, v) in extra {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("spawn deskd serve");
        let stderr_pipe = child.stderr.take().expect("stderr");
        let stdout_pipe = child.stdout.take().expect("stdout");
        let stderr = Arc::new(Mutex::new(Vec::new()));
        let stdout = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = std::sync::mpsc::channel::<(&'static str, String)>();
        let err_lines = stderr.clone();
        let err_reader = std::thread::spawn(move || {
            for line in std::io::BufReader::new(stderr_pipe).lines().map_while(Result::ok) {
                for (needle, key) in [("deskd serving gRPC", "grpc"), ("deskd admin listener", "admin")] {
                    if line.contains(needle)
                        && let Ok(v) = serde_json::from_str::<serde_json::Value>(&line)
                        && let Some(a) = v["addr"].as_str()
                    {
                        let _ = tx.send((key, a.to_string()));
                    }
                }
                err_lines.lock().expect("lines").push(line);
            }
        });
        let out_lines = stdout.clone();
        let out_reader = std::thread::spawn(move || {
            for line in std::io::BufReader::new(stdout_pipe).lines().map_while(Result::ok) {
                out_lines.lock().expect("lines").push(line);
            }
        });
        let (addr, admin_addr) = tokio::task::spawn_blocking(move || {
            let (mut grpc, mut admin) = (None, None);
            while grpc.is_none() || admin.is_none() {
                let (k, a) = rx
                    .recv_timeout(Duration::from_secs(30))
                    .expect("the server announces its addresses");
                if k == "grpc" { grpc = Some(a) } else { admin = Some(a) }
            }
            (grpc.unwrap_or_default(), admin.unwrap_or_default())
        })
        .await
        .expect("join");
        ServeProcess {
            child: Some(child),
            addr,
            admin_addr,
            cwd,
            stderr,
            stdout,
            readers: vec![err_reader, out_reader],
        }
    }

    pub async fn channel(&self) -> Channel {
        Channel::from_shared(format!("http://{}", self.addr))
            .expect("uri")
            .connect()
            .await
            .expect("connect")
    }

    /// Sends SIGTERM and waits for the exit; returns (success, stderr lines, stdout lines).
    pub async fn stop(mut self) -> (bool, Vec<String>, Vec<String>) {
        let mut child = self.child.take().expect("running");
        let pid = child.id().to_string();
        let killed = std::process::Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .expect("kill");
        assert!(killed.success());
        let status = tokio::task::spawn_blocking(move || child.wait())
            .await
            .expect("join")
            .expect("wait");
        for r in self.readers.drain(..) {
            let _ = r.join();
        }
        let err = self.stderr.lock().expect("lines").clone();
        let out = self.stdout.lock().expect("lines").clone();
        (status.success(), err, out)
    }
}

impl Drop for ServeProcess {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A plain HTTP/1.1 GET (the admin listener): (status, body).
pub async fn http_get(addr: &str, path: &str) -> (u16, String) {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect admin");
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").as_bytes())
        .await
        .expect("write");
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).await.expect("read");
    let text = String::from_utf8_lossy(&buf).to_string();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .expect("status line");
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (status, body)
}

/// The sum of the `/metrics` samples of `name` carrying every one of
/// `labels` (e.g. `outcome="limited"`). Metrics are process-wide and tests
/// run in parallel, so compare a reading with an earlier one (it can only
/// grow by at least what the test caused).
pub async fn metric_sum(admin: SocketAddr, name: &str, labels: &[&str]) -> f64 {
    let (status, text) = http_get(&admin.to_string(), "/metrics").await;
    assert_eq!(status, 200);
    text.lines()
        .filter(|l| l.starts_with(&format!("{name}{{")) && labels.iter().all(|want| l.contains(want)))
        .filter_map(|l| l.rsplit_once(' ').and_then(|(_, v)| v.parse::<f64>().ok()))
        .sum()
}

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
