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

// Unused where helpers.rs is included without the suite (benches/invalidation.rs).
#[allow(unused_imports)]
pub use crate::processes::*;

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

/// Inserts one open, normal ticket row with plain SQL on `conn` (whatever
/// tenant context, or none, its transaction has): for the tests that check
/// what the database itself allows.
pub async fn insert_open_ticket_row(
    conn: &mut PgConnection,
    tenant: Uuid,
    reporter: Uuid,
    title: &str,
) -> Result<sqlx::postgres::PgQueryResult, sqlx::Error> {
    sqlx::query(
        "insert into tickets (tenant_id, id, title, status, priority, reporter_id, create_time, update_time) \
         values ($1, $2, $3, 'open', 'normal', $4, now(), now())",
    )
    .bind(tenant)
    .bind(Uuid::now_v7())
    .bind(title)
    .bind(reporter)
    .execute(conn)
    .await
}
