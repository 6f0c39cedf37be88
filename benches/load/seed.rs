//! The throwaway database: created, migrated and seeded here, dropped at
//! the end. Tenants, the agent and its JWT come from the `deskd` CLI, the
//! tickets from set-based SQL run as the owner.

use std::{
    path::Path,
    process::{Command, Stdio},
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use sqlx::{AssertSqlSafe, ConnectOptions, Connection, PgConnection, postgres::PgConnectOptions};
use uuid::Uuid;

const SEED_SQL: &str = include_str!("seed.sql");
/// The HS256 secret the CLI mints with and the server verifies with.
pub const JWT_SECRET: &str = "bench-load-secret-0123456789abcdef0123456789";
/// Agents per tenant (assignees and reporters of the seeded tickets).
const AGENTS: i32 = 20;
/// The seeded tickets spread over this much history.
const HISTORY_MS: i64 = 365 * 24 * 3600 * 1000;

/// Where the test PostgreSQL listens (DESKD_TEST_PG_HOST / _PORT).
pub fn pg() -> (String, u16) {
    let host = std::env::var("DESKD_TEST_PG_HOST").unwrap_or_else(|_| "127.0.0.1".into());
    let port = std::env::var("DESKD_TEST_PG_PORT")
        .ok()
        .and_then(|p| p.parse().ok())
        .unwrap_or(5432);
    (host, port)
}

/// The bench database's name and URLs.
#[derive(Debug, Clone)]
pub struct Db {
    pub name: String,
    pub host: String,
    pub port: u16,
}

impl Db {
    pub fn for_this_process() -> Db {
        let (host, port) = pg();
        Db {
            name: format!("deskd_bench_load_{}", std::process::id()),
            host,
            port,
        }
    }

    pub fn owner_url(&self) -> String {
        format!("postgres://postgres@{}:{}/{}", self.host, self.port, self.name)
    }

    pub fn app_url(&self) -> String {
        format!("postgres://deskd_app@{}:{}/{}", self.host, self.port, self.name)
    }

    fn options(&self, db: &str) -> PgConnectOptions {
        PgConnectOptions::new()
            .host(&self.host)
            .port(self.port)
            .username("postgres")
            .database(db)
    }

    pub async fn owner(&self) -> Result<PgConnection, sqlx::Error> {
        self.options(&self.name).connect().await
    }

    async fn admin(&self, sql: String) -> Result<(), sqlx::Error> {
        let mut conn = self.options("postgres").connect().await?;
        sqlx::query(AssertSqlSafe(sql)).execute(&mut conn).await?;
        let _ = conn.close().await;
        Ok(())
    }

    pub async fn create(&self) -> Result<(), sqlx::Error> {
        self.admin(format!("create database \"{}\"", self.name)).await
    }

    pub async fn drop_db(&self) -> Result<(), sqlx::Error> {
        self.admin(format!("drop database if exists \"{}\" with (force)", self.name))
            .await
    }
}

/// The `DESKD_*` settings every `deskd` process of the run gets (its
/// environment is cleared first, so the caller's never leak in).
pub fn deskd_env(db: &Db) -> Vec<(String, String)> {
    [
        ("DESKD_DATABASE_URL", db.app_url()),
        ("DESKD_DATABASE_OWNER_URL", db.owner_url()),
        ("DESKD_JWT_SECRET", JWT_SECRET.to_string()),
        ("DESKD_LOG_FILTER", "warn".to_string()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect()
}

/// Runs `deskd <args>` and returns its trimmed standard output.
pub fn deskd_cli(db: &Db, cwd: &Path, args: &[&str]) -> Result<String, String> {
    let out = Command::new(env!("CARGO_BIN_EXE_deskd"))
        .args(args)
        .env_clear()
        .envs(deskd_env(db))
        .current_dir(cwd)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run deskd {}: {e}", args.join(" ")))?;
    if !out.status.success() {
        return Err(format!(
            "deskd {} failed ({}): {}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// One seeded tenant and its agent's credential.
#[derive(Debug, Clone)]
pub struct Tenant {
    /// 1 or 2: part of every seeded ticket id.
    pub number: u32,
    pub id: String,
    pub agent_id: String,
    pub token: String,
}

/// What was seeded, and how long it took.
#[derive(Debug, Clone)]
pub struct Seeded {
    pub tenants: Vec<Tenant>,
    /// Tickets per tenant.
    pub tickets: u32,
    /// Epoch milliseconds of ticket 0.
    pub base_ms: i64,
    /// Milliseconds between consecutive tickets.
    pub step_ms: i64,
    pub migrate: Duration,
    pub seed: Duration,
    pub vacuum: Duration,
}

impl Seeded {
    /// The id of seeded ticket `n` (1..=tickets) of tenant `number`, as
    /// seed.sql derives it.
    pub fn ticket_id(&self, number: u32, n: u32) -> String {
        ticket_id(self.base_ms, self.step_ms, number, n)
    }
}

pub fn ticket_id(base_ms: i64, step_ms: i64, number: u32, n: u32) -> String {
    let ms = base_ms + i64::from(n) * step_ms;
    let hex = format!("{ms:012x}7{number:03x}8{n:015x}");
    // Always 32 hex digits, so this cannot fail; fall back to the raw text.
    Uuid::parse_str(&hex).map_or(hex, |u| u.to_string())
}

/// Migrates with `deskd migrate`, creates two tenants with an agent and a
/// JWT each through the CLI, seeds `tickets` tickets per tenant and
/// vacuums.
pub async fn seed(db: &Db, cwd: &Path, tickets: u32) -> Result<Seeded, String> {
    let t = Instant::now();
    deskd_cli(db, cwd, &["migrate"])?;
    let migrate = t.elapsed();
    let now_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_err(|e| e.to_string())?
        .as_millis() as i64;
    let step_ms = (HISTORY_MS / i64::from(tickets)).max(1);
    let base_ms = now_ms - step_ms * i64::from(tickets) - 1000;
    let mut owner = db.owner().await.map_err(|e| format!("owner connection: {e}"))?;
    let mut tenants = Vec::new();
    let mut seed = Duration::ZERO;
    for (number, name) in [(1u32, "a"), (2, "b")] {
        let id = deskd_cli(db, cwd, &["tenant", "create", &format!("Bench {name}")])?;
        let email = format!("agent@{name}.bench.example");
        let agent_id = deskd_cli(
            db,
            cwd,
            &[
                "user",
                "create",
                "--tenant",
                &id,
                "--email",
                &email,
                "--name",
                "Bench agent",
                "--role",
                "agent",
            ],
        )?;
        let token = deskd_cli(
            db,
            cwd,
            &["token", "mint", "--tenant", &id, "--user", &agent_id, "--ttl", "24h"],
        )?;
        let tenant_uuid = Uuid::parse_str(&id).map_err(|e| format!("deskd tenant create printed `{id}`: {e}"))?;
        let t = Instant::now();
        sqlx::query(
            "insert into users (tenant_id, id, email, display_name, role) \
             select $1, gen_random_uuid(), 'agent' || i || '@' || $2 || '.bench.example', 'Agent ' || i, 'agent' \
             from generate_series(1, $3) as i",
        )
        .bind(tenant_uuid)
        .bind(name)
        .bind(AGENTS)
        .execute(&mut owner)
        .await
        .map_err(|e| format!("seed agents: {e}"))?;
        sqlx::query(SEED_SQL)
            .bind(tenant_uuid)
            .bind(number as i32)
            .bind(tickets as i32)
            .bind(base_ms)
            .bind(step_ms)
            .execute(&mut owner)
            .await
            .map_err(|e| format!("seed tickets: {e}"))?;
        seed += t.elapsed();
        tenants.push(Tenant {
            number,
            id,
            agent_id,
            token,
        });
    }
    let t = Instant::now();
    for sql in ["vacuum (analyze) tickets", "vacuum (analyze) users", "analyze"] {
        sqlx::query(sql)
            .execute(&mut owner)
            .await
            .map_err(|e| format!("{sql}: {e}"))?;
    }
    let vacuum = t.elapsed();
    let seeded = Seeded {
        tenants,
        tickets,
        base_ms,
        step_ms,
        migrate,
        seed,
        vacuum,
    };
    // The derivation must agree with seed.sql: the last ticket of tenant 2.
    let last = seeded.ticket_id(2, tickets);
    let found: i64 = sqlx::query_scalar("select count(*) from tickets where id = $1::uuid")
        .bind(&last)
        .fetch_one(&mut owner)
        .await
        .map_err(|e| format!("check seeded ids: {e}"))?;
    if found != 1 {
        return Err(format!(
            "seeded ticket {last} not found: seed.sql and ticket_id disagree"
        ));
    }
    let _ = owner.close().await;
    Ok(seeded)
}

/// `select version()`, shortened to "PostgreSQL 15.20 (Debian …)".
pub async fn postgres_version(db: &Db) -> String {
    let v: Result<String, _> = async {
        let mut c = db.owner().await?;
        let v: String = sqlx::query_scalar("select version()").fetch_one(&mut c).await?;
        let _ = c.close().await;
        Ok::<_, sqlx::Error>(v)
    }
    .await;
    match v {
        Ok(v) => v.split(" on ").next().unwrap_or(&v).to_string(),
        Err(e) => format!("unknown ({e})"),
    }
}
