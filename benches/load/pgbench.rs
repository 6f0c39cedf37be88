//! The PostgreSQL limit: pgbench running deskd's own transactions as the
//! app role (not the owner, so RLS is in force), at the same concurrency,
//! against the same database.
//!
//! `-M prepared`: sqlx prepares each statement once per connection and then
//! sends Bind/Execute/Sync, one round trip per statement; pgbench's prepared
//! mode is that same protocol. `simple` would re-plan every statement and
//! `extended` would re-parse it, both costs deskd does not pay.

use std::{
    path::Path,
    process::{Command, Stdio},
    time::Duration,
};

use serde::{Deserialize, Serialize};

use crate::{
    scenarios::CREATE_DESCRIPTION,
    seed::{Db, Seeded},
};

/// Which of deskd's transactions.
#[derive(Debug, Clone, Copy)]
pub enum Txn {
    /// GetTicket: BEGIN; set_config; SELECT by key; COMMIT.
    GetTicket,
    /// CreateTicket without idempotency: BEGIN; set_config; INSERT; COMMIT.
    CreateTicket,
}

impl Txn {
    pub fn limit_name(self) -> &'static str {
        match self {
            Txn::GetTicket => "pg_get_ticket",
            Txn::CreateTicket => "pg_create_ticket",
        }
    }
}

/// pgbench's figures.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PgFigures {
    /// `tps = … (without initial connection time)`.
    pub tps: f64,
    /// `latency average = … ms`.
    pub latency_avg_ms: f64,
    pub transactions: u64,
    pub failed: u64,
}

/// The tenant transaction's first statement, as `TenantTx::begin` sends it.
const SET_TENANT: &str = "select set_config('app.current_tenant_id', :tenant, true), \
                          set_config('statement_timeout', '10000', true);";

/// One script per tenant (pgbench picks one per transaction, equally
/// often), as deskd's workers alternate between the two tenants.
fn script(txn: Txn, number: u32) -> String {
    let body = match txn {
        // The id is computed in the statement from n, exactly as seed.sql
        // derives it: a few string functions, no extra lookup or round trip.
        Txn::GetTicket => format!(
            "select id, title, description, status, priority, assignee_id, reporter_id, tags, \
                    create_time, update_time, resolve_time, version \
             from tickets where tenant_id = :tenant and id = \
             (lpad(to_hex(:base_ms::bigint + :n::bigint * :step_ms::bigint), 12, '0') || '7' \
              || lpad(to_hex({number}), 3, '0') || '8' || lpad(to_hex(:n::bigint), 15, '0'))::uuid;"
        ),
        // deskd's insert (src/tickets/store.rs) with a UUIDv7-like id.
        Txn::CreateTicket => "insert into tickets (tenant_id, id, title, description, status, priority, \
                    assignee_id, reporter_id, tags, create_time, update_time, resolve_time, version) \
             values (:tenant, \
             (lpad(to_hex((extract(epoch from clock_timestamp()) * 1000)::bigint), 12, '0') || '7' \
              || substr(md5(random()::text), 1, 3) || '8' || substr(md5(random()::text), 1, 15))::uuid, \
             'Invoice shows the wrong VAT rate (pgbench)', :descr, 'open', 'normal', null, :agent, \
             '{}'::text[], now(), now(), null, 1);"
            .to_string(),
    };
    // pgbench variables are per client: each script sets its tenant.
    let (tenant, agent) = (format!(":tenant_{number}"), format!(":agent_{number}"));
    let body = body.replace(":tenant", &tenant).replace(":agent", &agent);
    let set = SET_TENANT.replace(":tenant", &tenant);
    format!("\\set n random(1, :tickets)\nBEGIN;\n{set}\n{body}\nCOMMIT;\n")
}

fn field<'a>(out: &'a str, prefix: &str) -> Option<&'a str> {
    out.lines()
        .find_map(|l| l.trim().strip_prefix(prefix))
        .map(|rest| rest.split_whitespace().next().unwrap_or(""))
}

fn parse(out: &str) -> Result<PgFigures, String> {
    let tps = out
        .lines()
        .find(|l| l.starts_with("tps = ") && l.contains("without initial connection time"))
        .and_then(|l| l.split_whitespace().nth(2))
        .and_then(|v| v.parse().ok())
        .ok_or("no `tps = … (without initial connection time)` line")?;
    let latency_avg_ms = field(out, "latency average = ")
        .and_then(|v| v.parse().ok())
        .ok_or("no `latency average` line")?;
    let transactions = field(out, "number of transactions actually processed: ")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let failed = field(out, "number of failed transactions: ")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    Ok(PgFigures {
        tps,
        latency_avg_ms,
        transactions,
        failed,
    })
}

/// Runs `txn` at `concurrency` for `duration` (whole seconds, at least 1).
pub fn run(
    db: &Db,
    seeded: &Seeded,
    dir: &Path,
    txn: Txn,
    concurrency: u32,
    duration: Duration,
) -> Result<PgFigures, String> {
    let mut cmd = Command::new("pgbench");
    cmd.args([
        "-h",
        &db.host,
        "-p",
        &db.port.to_string(),
        "-U",
        "deskd_app",
        "-n",
        "-M",
        "prepared",
    ])
    .args(["-c", &concurrency.to_string(), "-j", &concurrency.min(2).to_string()])
    .args(["-T", &duration.as_secs_f64().ceil().max(1.0).to_string()])
    .args(["-D", &format!("tickets={}", seeded.tickets)])
    .args(["-D", &format!("base_ms={}", seeded.base_ms)])
    .args(["-D", &format!("step_ms={}", seeded.step_ms)])
    .args(["-D", &format!("descr={CREATE_DESCRIPTION}")]);
    for t in &seeded.tenants {
        let file = dir.join(format!("{}_{}.sql", txn.limit_name(), t.number));
        std::fs::write(&file, script(txn, t.number)).map_err(|e| format!("write {}: {e}", file.display()))?;
        cmd.args(["-D", &format!("tenant_{}={}", t.number, t.id)])
            .args(["-D", &format!("agent_{}={}", t.number, t.agent_id)])
            .arg("-f")
            .arg(format!("{}@1", file.display()));
    }
    cmd.arg(&db.name).stdin(Stdio::null()).env("PGCONNECT_TIMEOUT", "10");
    let out = cmd.output().map_err(|e| format!("cannot run pgbench: {e}"))?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    if !out.status.success() {
        let tail: Vec<&str> = stderr.lines().rev().take(5).collect();
        return Err(format!(
            "pgbench {} -c {concurrency} failed ({}): {}",
            txn.limit_name(),
            out.status,
            tail.into_iter().rev().collect::<Vec<_>>().join(" | ")
        ));
    }
    parse(&stdout).map_err(|e| format!("pgbench {}: {e}:\n{stdout}", txn.limit_name()))
}
