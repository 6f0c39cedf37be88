//! pg-restart: PostgreSQL stopped and started again under a closed-loop
//! write load. Acknowledged creates must all exist afterwards, failures
//! must be UNAVAILABLE, health must say NOT_SERVING while PostgreSQL is
//! down and SERVING after, and the same deskd process must serve again.

use std::{
    collections::BTreeMap,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use deskd_client::{DeskdClient, DeskdError, RetryPolicy, code_name, proto::tickets::v1 as pb};
use serde::Serialize;
use uuid::Uuid;

use crate::{
    Ctx,
    deskd::{self, Deskd, HealthEvent, HealthWatch},
    seed::Seeded,
    tally::{Rec, Tally, ms},
};

/// Closed-loop workers.
const WORKERS: usize = 16;
/// Load before PostgreSQL is stopped.
const BEFORE: Duration = Duration::from_secs(5);
/// How long PostgreSQL stays down by default (`--down`): longer than
/// deskd's health probe interval plus its timeout (2 s + 1 s by default),
/// so that health can see the outage. A bare `pg_ctl restart` is down for
/// well under a second, which a 2-s probe may never notice.
pub const DOWN: Duration = Duration::from_secs(4);
/// deskd's default health probe interval plus its timeout: an outage
/// longer than this must show on the health stream.
const PROBE_WINDOW: Duration = Duration::from_secs(3);
/// Load after PostgreSQL is back.
const AFTER: Duration = Duration::from_secs(8);
/// A worker's pause after a failed call (no retries: a client that failed
/// does not spin).
const PAUSE_AFTER_FAILURE: Duration = Duration::from_millis(10);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Variant {
    /// `pg_ctl stop -m fast`, down, `pg_ctl start`; no client retries.
    Fast,
    /// `pg_ctl stop -m immediate` (a crash: no checkpoint, crash recovery at
    /// start); no client retries.
    Immediate,
    /// As `Fast`, with the client's default RetryPolicy.
    FastRetried,
}

impl Variant {
    pub const ALL: [Variant; 3] = [Variant::Fast, Variant::Immediate, Variant::FastRetried];

    fn name(self) -> &'static str {
        match self {
            Variant::Fast => "fast, no retries",
            Variant::Immediate => "immediate (crash), no retries",
            Variant::FastRetried => "fast, RetryPolicy::default()",
        }
    }

    fn mode(self) -> &'static str {
        match self {
            Variant::Fast | Variant::FastRetried => "fast",
            Variant::Immediate => "immediate",
        }
    }

    fn retry(self) -> RetryPolicy {
        match self {
            Variant::Fast | Variant::Immediate => RetryPolicy::none(),
            Variant::FastRetried => RetryPolicy::default(),
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Outage {
    /// When `pg_ctl stop` was started, ms since the run's start.
    pub stop_issued_ms: f64,
    /// When it returned (PostgreSQL down).
    pub stopped_ms: f64,
    /// When `pg_ctl start -w` returned (accepting connections again).
    pub back_ms: f64,
    /// back − stop issued.
    pub outage_s: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct PgRestartReport {
    pub variant: String,
    pub stop_mode: String,
    pub client_retries: String,
    pub workers: usize,
    pub outage: Outage,
    /// Every request of the run.
    pub all: Tally,
    /// Requests that ended before the stop was issued.
    pub before: Tally,
    /// Requests that ended between the stop and PostgreSQL being back.
    pub during: Tally,
    /// Requests that ended after PostgreSQL was back.
    pub after: Tally,
    pub creates_attempted: u64,
    pub creates_acknowledged: u64,
    /// Acknowledged creates found in the database afterwards.
    pub acknowledged_found: u64,
    /// acknowledged − found: must be 0.
    pub lost: u64,
    /// Creates answered with an error whose ticket exists anyway (the
    /// commit happened, the answer was lost): allowed, informational.
    pub committed_unacknowledged: u64,
    /// Titles stored more than once (a retried create done twice): the
    /// request_id must prevent this.
    pub duplicated_titles: u64,
    /// Failures by code and ErrorInfo reason.
    pub failure_reasons: BTreeMap<String, u64>,
    /// From PostgreSQL back to the first OK answer.
    pub first_ok_after_back_ms: Option<f64>,
    /// From PostgreSQL back to the end of the last failed request.
    pub last_failure_after_back_ms: Option<f64>,
    pub health: Vec<HealthEvent>,
    /// First NOT_SERVING after the stop, ms after the stop was issued.
    pub not_serving_after_stop_ms: Option<f64>,
    /// First SERVING after that, ms after PostgreSQL was back.
    pub serving_after_back_ms: Option<f64>,
    pub health_final: String,
    /// The same deskd process served before and after (never restarted).
    pub deskd_survived: bool,
    /// ERROR lines in deskd's log (the cause of every INTERNAL is one).
    pub deskd_error_lines: usize,
    pub broken: Vec<String>,
}

struct WorkerOut {
    recs: Vec<Rec>,
    /// (id, title) of every acknowledged create.
    acked: Vec<(Uuid, String)>,
    /// Titles of creates answered with an error.
    failed_titles: Vec<String>,
    /// Failures by "CODE reason" (ErrorInfo's reason: DEPENDENCY_UNAVAILABLE
    /// says deskd itself answered, "none" that it did not).
    reasons: BTreeMap<String, u64>,
}

async fn worker(
    w: usize,
    client: DeskdClient,
    tenant: u32,
    seeded: Arc<Seeded>,
    tag: Arc<str>,
    t0: Instant,
    stop: Arc<AtomicBool>,
) -> WorkerOut {
    let tickets = client.tickets();
    let mut out = WorkerOut {
        recs: Vec::new(),
        acked: Vec::new(),
        failed_titles: Vec::new(),
        reasons: BTreeMap::new(),
    };
    let mut i: u64 = 0;
    while !stop.load(Ordering::Relaxed) {
        i += 1;
        let start = t0.elapsed();
        let mut failed = |e: &DeskdError| {
            let key = format!("{} {}", code_name(e.code()), e.reason().unwrap_or("none"));
            *out.reasons.entry(key).or_insert(0) += 1;
            code_name(e.code())
        };
        let code = if i.is_multiple_of(4) {
            // One read in four: a seeded ticket.
            let n = 1 + rand::random::<u32>() % seeded.tickets;
            match tickets
                .get_ticket(pb::GetTicketRequest {
                    id: seeded.ticket_id(tenant, n),
                })
                .await
            {
                Ok(_) => "OK",
                Err(e) => failed(&e),
            }
        } else {
            let title = format!("faults {tag} w{w} n{i}");
            let r = tickets
                .create_ticket(pb::CreateTicketRequest {
                    ticket: Some(pb::Ticket {
                        title: title.clone(),
                        description: "Created by the faults benchmark while PostgreSQL restarts.".into(),
                        priority: pb::TicketPriority::Normal as i32,
                        ..Default::default()
                    }),
                    request_id: Uuid::now_v7().to_string(),
                })
                .await;
            match r {
                Ok(resp) => match resp.ticket.and_then(|t| Uuid::parse_str(&t.id).ok()) {
                    Some(id) => {
                        out.acked.push((id, title));
                        "OK"
                    }
                    // An OK without a usable id is not an acknowledgement
                    // the client could rely on.
                    None => "OK_WITHOUT_ID",
                },
                Err(e) => {
                    out.failed_titles.push(title);
                    failed(&e)
                }
            }
        };
        let end = t0.elapsed();
        out.recs.push(Rec {
            start_us: start.as_micros() as u64,
            end_us: end.as_micros() as u64,
            code,
        });
        if code != "OK" {
            tokio::time::sleep(PAUSE_AFTER_FAILURE).await;
        }
    }
    out
}

async fn ctl(ctx: &Ctx, args: &[&str]) -> Result<(), String> {
    // std::process in a blocking task: deskd's tokio has no `process`
    // feature, and adding it would rebuild tokio for the benches alone.
    let mut cmd = ctx.pg.ctl(args);
    let out = tokio::task::spawn_blocking(move || cmd.output())
        .await
        .map_err(|e| format!("pg_ctl task: {e}"))?
        .map_err(|e| format!("pg_ctl {}: {e}", args.join(" ")))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "pg_ctl {} failed ({}): {}\n{}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim(),
            ctx.pg.log_tail(20)
        ))
    }
}

/// Stops PostgreSQL at BEFORE, starts it again after DOWN; returns the
/// timeline.
async fn restart(ctx: &Ctx, variant: Variant, down: Duration, t0: Instant) -> Result<Outage, String> {
    tokio::time::sleep_until((t0 + BEFORE).into()).await;
    let stop_issued = t0.elapsed();
    ctl(ctx, &["stop", "-m", variant.mode(), "-w", "-t", "60"]).await?;
    let stopped = t0.elapsed();
    tokio::time::sleep(down).await;
    ctl(ctx, &["start", "-w", "-t", "120"]).await?;
    let back = t0.elapsed();
    Ok(Outage {
        stop_issued_ms: stop_issued.as_secs_f64() * 1000.0,
        stopped_ms: stopped.as_secs_f64() * 1000.0,
        back_ms: back.as_secs_f64() * 1000.0,
        outage_s: (back - stop_issued).as_secs_f64(),
    })
}

pub async fn run(ctx: &Ctx, variant: Variant, down: Duration, index: usize) -> Result<PgRestartReport, String> {
    let name = format!("pg-restart-{}", index + 1);
    let mut server = Deskd::start(
        &ctx.db,
        &ctx.dir,
        &deskd::Options {
            name: &name,
            redis_url: &ctx.redis_url,
            redis_prefix: &ctx.redis_prefix,
            max_in_flight: None,
            cpus: None,
        },
    )
    .await?;
    let tag: Arc<str> = Arc::from(format!("{}-{}", ctx.run_tag, index + 1).as_str());
    let t0 = Instant::now();
    let watch = HealthWatch::start(server.addr, t0);
    let stop = Arc::new(AtomicBool::new(false));
    let mut tasks = Vec::new();
    for w in 0..WORKERS {
        let tenant = &ctx.seeded.tenants[w % ctx.seeded.tenants.len()];
        // One connection per worker: a worker's failures do not share a
        // connection's fate with the others'.
        let client = deskd::client(server.addr, tenant, variant.retry()).await?;
        tasks.push(tokio::spawn(worker(
            w,
            client,
            tenant.number,
            ctx.seeded.clone(),
            tag.clone(),
            t0,
            stop.clone(),
        )));
    }
    let outage = restart(ctx, variant, down, t0).await;
    if outage.is_ok() {
        tokio::time::sleep(AFTER).await;
    }
    stop.store(true, Ordering::Relaxed);
    let mut outs = Vec::new();
    for t in tasks {
        outs.push(t.await.map_err(|e| format!("worker: {e}"))?);
    }
    // Health settles within one probe interval of the last change.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let health = watch.finish();
    let outage = outage?;
    let deskd_survived = server.alive();
    let deskd_error_lines = server.error_lines().len();
    server.stop();

    let recs: Vec<Rec> = outs.iter().flat_map(|o| o.recs.iter().copied()).collect();
    let mut failure_reasons = BTreeMap::new();
    for (k, n) in outs.iter().flat_map(|o| o.reasons.iter()) {
        *failure_reasons.entry(k.clone()).or_insert(0) += n;
    }
    let stop_us = (outage.stop_issued_ms * 1000.0) as u64;
    let back_us = (outage.back_ms * 1000.0) as u64;
    let before = Tally::of(recs.iter().filter(|r| r.end_us < stop_us));
    let during = Tally::of(recs.iter().filter(|r| r.end_us >= stop_us && r.end_us <= back_us));
    let after = Tally::of(recs.iter().filter(|r| r.end_us > back_us));
    let all = Tally::of(&recs);
    let first_ok_after_back_ms = recs
        .iter()
        .filter(|r| r.ok() && r.end_us > back_us)
        .map(|r| r.end_us)
        .min()
        .map(|e| ms(e - back_us));
    let last_failure_after_back_ms = recs
        .iter()
        .filter(|r| !r.ok() && r.end_us > back_us)
        .map(|r| r.end_us)
        .max()
        .map(|e| ms(e - back_us));

    // Every acknowledged create must be in the database.
    let acked_ids: Vec<Uuid> = outs.iter().flat_map(|o| o.acked.iter().map(|(id, _)| *id)).collect();
    let failed_titles: Vec<String> = outs.iter().flat_map(|o| o.failed_titles.iter().cloned()).collect();
    let creates_attempted = acked_ids.len() as u64 + failed_titles.len() as u64;
    let mut owner = ctx.db.owner().await.map_err(|e| format!("owner connection: {e}"))?;
    let found: i64 = sqlx::query_scalar("select count(*) from tickets where id = any($1)")
        .bind(&acked_ids)
        .fetch_one(&mut owner)
        .await
        .map_err(|e| format!("count acknowledged tickets: {e}"))?;
    let committed_unacknowledged: i64 = sqlx::query_scalar("select count(*) from tickets where title = any($1)")
        .bind(&failed_titles)
        .fetch_one(&mut owner)
        .await
        .map_err(|e| format!("count unacknowledged tickets: {e}"))?;
    let duplicated: i64 = sqlx::query_scalar(
        "select count(*) from (select title from tickets where title like $1 group by title having count(*) > 1) d",
    )
    .bind(format!("faults {tag} %"))
    .fetch_one(&mut owner)
    .await
    .map_err(|e| format!("count duplicated titles: {e}"))?;
    drop(owner);
    let found = found as u64;
    let lost = (acked_ids.len() as u64).saturating_sub(found);

    let not_serving = health
        .iter()
        .find(|e| e.status == "NOT_SERVING" && e.t_ms >= outage.stop_issued_ms);
    let serving_after = not_serving.and_then(|ns| {
        health
            .iter()
            .find(|e| e.status == "SERVING" && e.t_ms > ns.t_ms)
            .map(|e| e.t_ms - outage.back_ms)
    });
    let health_final = health.last().map_or_else(|| "none".into(), |e| e.status.clone());

    let mut broken = Vec::new();
    if lost > 0 {
        broken.push(format!("{lost} acknowledged creates lost"));
    }
    let others = all.others(&["UNAVAILABLE"]);
    if others > 0 {
        broken.push(format!(
            "{others} answers other than OK and UNAVAILABLE ({})",
            all.codes_line()
        ));
    }
    if duplicated > 0 {
        broken.push(format!("{duplicated} titles stored twice"));
    }
    if not_serving.is_none() && outage.outage_s > PROBE_WINDOW.as_secs_f64() {
        broken.push(format!(
            "health never said NOT_SERVING during an outage of {:.1} s",
            outage.outage_s
        ));
    }
    if health_final != "SERVING" {
        broken.push(format!("health ended {health_final}, not SERVING"));
    }
    if !deskd_survived {
        broken.push("deskd exited".into());
    }
    if after.count("OK") == 0 {
        broken.push("no OK after PostgreSQL came back".into());
    }
    Ok(PgRestartReport {
        variant: variant.name().into(),
        stop_mode: variant.mode().into(),
        client_retries: format!("{:?}", variant.retry()),
        workers: WORKERS,
        not_serving_after_stop_ms: not_serving.map(|e| e.t_ms - outage.stop_issued_ms),
        serving_after_back_ms: serving_after,
        outage,
        all,
        before,
        during,
        after,
        creates_attempted,
        creates_acknowledged: acked_ids.len() as u64,
        acknowledged_found: found,
        lost,
        committed_unacknowledged: committed_unacknowledged as u64,
        duplicated_titles: duplicated as u64,
        failure_reasons,
        first_ok_after_back_ms,
        last_failure_after_back_ms,
        health,
        health_final,
        deskd_survived,
        deskd_error_lines,
        broken,
    })
}

pub fn print(r: &PgRestartReport) {
    let o = &r.outage;
    println!(
        "pg-restart [{}]: {} workers (3 CreateTicket with request_id : 1 GetTicket)",
        r.variant, r.workers
    );
    println!(
        "  PostgreSQL stop -m {} at {:.1} s (down after {:.0} ms), back at {:.1} s: outage {:.2} s",
        r.stop_mode,
        o.stop_issued_ms / 1000.0,
        o.stopped_ms - o.stop_issued_ms,
        o.back_ms / 1000.0,
        o.outage_s
    );
    crate::tally::print_phases(
        [
            ("before", &r.before),
            ("during", &r.during),
            ("after", &r.after),
            ("all", &r.all),
        ],
        false,
    );
    println!(
        "  creates: {} attempted, {} acknowledged, {} of them found, lost {}; {} failed but committed; {} titles duplicated",
        r.creates_attempted,
        r.creates_acknowledged,
        r.acknowledged_found,
        r.lost,
        r.committed_unacknowledged,
        r.duplicated_titles
    );
    let reasons: Vec<String> = r.failure_reasons.iter().map(|(k, n)| format!("{k}: {n}")).collect();
    println!(
        "  failures by code and reason: {}",
        if reasons.is_empty() {
            "none".into()
        } else {
            reasons.join(", ")
        }
    );
    let opt = |v: Option<f64>| v.map_or("never".into(), |v| format!("{v:.0} ms"));
    println!(
        "  first OK {} after PostgreSQL was back; last failure {} after",
        opt(r.first_ok_after_back_ms),
        opt(r.last_failure_after_back_ms)
    );
    println!(
        "  health: NOT_SERVING {} after the stop, SERVING again {} after PostgreSQL was back, final {}; deskd {}",
        opt(r.not_serving_after_stop_ms),
        opt(r.serving_after_back_ms),
        r.health_final,
        if r.deskd_survived { "never restarted" } else { "EXITED" }
    );
    let timeline: Vec<String> = r
        .health
        .iter()
        .map(|e| format!("{:.1}s {}", e.t_ms / 1000.0, e.status))
        .collect();
    println!("  health timeline: {}", timeline.join(" → "));
}
