//! redis-kill: Redis SIGKILLed under a closed-loop read load and started
//! again on the same port a few seconds later. Rate limits and caches fail
//! open, so at least 99.9 % of the requests must succeed, during the
//! outage too; and deskd must use the new Redis once it is back.

use std::{
    collections::BTreeMap,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use deskd_client::{
    DeskdClient, RetryPolicy, code_name,
    proto::{stats::v1 as stats_pb, tickets::v1 as pb, users::v1 as users_pb},
};
use serde::Serialize;

use crate::{
    Ctx,
    cluster::deskd_calls,
    deskd::{self, Deskd},
    tally::{Rec, Tally, ms},
};

const WORKERS: usize = 16;
/// Load before Redis is killed.
const BEFORE: Duration = Duration::from_secs(6);
/// How long Redis stays dead.
const DOWN: Duration = Duration::from_secs(4);
/// Load after Redis is back.
const AFTER: Duration = Duration::from_secs(8);
/// The success rate the issue asks for, in percent.
pub const REQUIRED_SUCCESS_PCT: f64 = 99.9;

#[derive(Debug, Clone, Serialize)]
pub struct RedisKillReport {
    pub workers: usize,
    pub mix: String,
    pub killed_ms: f64,
    pub restarted_ms: f64,
    pub all: Tally,
    pub before: Tally,
    /// Requests that ended between the SIGKILL and the new server answering.
    pub during: Tally,
    pub after: Tally,
    /// deskd's commands on the first server just before the kill.
    pub calls_before_kill: u64,
    /// From the new server answering PING to the first command from deskd
    /// on it (polled every 50 ms).
    pub first_deskd_call_after_restart_ms: Option<f64>,
    /// The new server's `INFO commandstats` (command → calls) at the end.
    pub new_server_commandstats: BTreeMap<String, u64>,
    /// deskd's keys on the new server at the end.
    pub new_server_keys: u64,
    pub deskd_survived: bool,
    pub deskd_error_lines: usize,
    pub broken: Vec<String>,
}

/// GetTicket 50 %, GetCurrentUser 25 %, ListTickets 15 %, GetTicketStats
/// (one fixed 30-day window: a cached answer) 10 %.
async fn worker(
    client: DeskdClient,
    ticket_id: impl Fn(u32) -> String,
    stats_end_s: i64,
    t0: Instant,
    stop: Arc<AtomicBool>,
) -> Vec<Rec> {
    let tickets = client.tickets();
    let users = client.users();
    let stats = client.stats();
    let mut recs = Vec::new();
    while !stop.load(Ordering::Relaxed) {
        let start = t0.elapsed();
        let roll = rand::random::<u32>() % 100;
        let r = match roll {
            0..50 => tickets
                .get_ticket(pb::GetTicketRequest {
                    id: ticket_id(rand::random::<u32>()),
                })
                .await
                .map(drop),
            50..75 => users
                .get_current_user(users_pb::GetCurrentUserRequest {})
                .await
                .map(drop),
            75..90 => tickets
                .list_tickets(pb::ListTicketsRequest {
                    page_size: 20,
                    ..Default::default()
                })
                .await
                .map(drop),
            _ => stats
                .get_ticket_stats(stats_pb::GetTicketStatsRequest {
                    start_time: Some(prost_types::Timestamp {
                        seconds: stats_end_s - 30 * 86_400,
                        nanos: 0,
                    }),
                    end_time: Some(prost_types::Timestamp {
                        seconds: stats_end_s,
                        nanos: 0,
                    }),
                    top_assignees_limit: 10,
                    ..Default::default()
                })
                .await
                .map(drop),
        };
        let code = match r {
            Ok(()) => "OK",
            Err(e) => code_name(e.code()),
        };
        recs.push(Rec {
            start_us: start.as_micros() as u64,
            end_us: t0.elapsed().as_micros() as u64,
            code,
        });
    }
    recs
}

pub async fn run(ctx: &mut Ctx) -> Result<RedisKillReport, String> {
    let mut server = Deskd::start(
        &ctx.db,
        &ctx.dir,
        &deskd::Options {
            name: "redis-kill",
            redis_url: &ctx.redis_url,
            redis_prefix: &ctx.redis_prefix,
            max_in_flight: None,
            cpus: None,
        },
    )
    .await?;
    let stats_end_s = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_err(|e| e.to_string())?
        .as_secs() as i64
        - 60;
    let t0 = Instant::now();
    let stop = Arc::new(AtomicBool::new(false));
    let mut tasks = Vec::new();
    for w in 0..WORKERS {
        let tenant = &ctx.seeded.tenants[w % ctx.seeded.tenants.len()];
        let client = deskd::client(server.addr, tenant, RetryPolicy::none()).await?;
        let seeded = ctx.seeded.clone();
        let number = tenant.number;
        tasks.push(tokio::spawn(worker(
            client,
            move |r| seeded.ticket_id(number, 1 + r % seeded.tickets),
            stats_end_s,
            t0,
            stop.clone(),
        )));
    }

    let outcome = async {
        tokio::time::sleep_until((t0 + BEFORE).into()).await;
        let calls_before_kill = deskd_calls(&ctx.redis.command_calls().await?);
        let killed = t0.elapsed();
        ctx.redis.kill();
        tokio::time::sleep(DOWN).await;
        ctx.redis.start().await?;
        let restarted = t0.elapsed();
        // The new server starts with empty statistics: the first command
        // deskd sends shows up there.
        let mut first_call = None;
        let poll_until = Instant::now() + AFTER;
        while Instant::now() < poll_until {
            if deskd_calls(&ctx.redis.command_calls().await?) > 0 {
                first_call = Some(t0.elapsed() - restarted);
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        tokio::time::sleep_until((t0 + restarted + AFTER).into()).await;
        Ok::<_, String>((calls_before_kill, killed, restarted, first_call))
    }
    .await;
    stop.store(true, Ordering::Relaxed);
    let mut recs = Vec::new();
    for t in tasks {
        recs.extend(t.await.map_err(|e| format!("worker: {e}"))?);
    }
    let (calls_before_kill, killed, restarted, first_call) = outcome?;
    let commandstats = ctx.redis.command_calls().await?;
    let keys = ctx.redis.keys_under(&ctx.redis_prefix).await?;
    let deskd_survived = server.alive();
    let deskd_error_lines = server.error_lines().len();
    server.stop();

    let kill_us = killed.as_micros() as u64;
    let back_us = restarted.as_micros() as u64;
    let before = Tally::of(recs.iter().filter(|r| r.end_us < kill_us));
    let during = Tally::of(recs.iter().filter(|r| r.end_us >= kill_us && r.end_us <= back_us));
    let after = Tally::of(recs.iter().filter(|r| r.end_us > back_us));
    let all = Tally::of(&recs);

    let mut broken = Vec::new();
    for (name, t) in [("overall", &all), ("during the outage", &during)] {
        if t.success_pct < REQUIRED_SUCCESS_PCT {
            broken.push(format!(
                "success {name} {:.3} % < {REQUIRED_SUCCESS_PCT} % ({})",
                t.success_pct,
                t.codes_line()
            ));
        }
    }
    if during.requests == 0 {
        broken.push("no request ended during the outage".into());
    }
    let internal = all.count("INTERNAL") + all.count("UNKNOWN");
    if internal > 0 {
        broken.push(format!("{internal} INTERNAL/UNKNOWN answers"));
    }
    if first_call.is_none() {
        broken.push("deskd sent nothing to the restarted Redis".into());
    }
    if !deskd_survived {
        broken.push("deskd exited".into());
    }
    Ok(RedisKillReport {
        workers: WORKERS,
        mix: "GetTicket 50 %, GetCurrentUser 25 %, ListTickets 15 %, GetTicketStats (cached window) 10 %".into(),
        killed_ms: ms(kill_us),
        restarted_ms: ms(back_us),
        all,
        before,
        during,
        after,
        calls_before_kill,
        first_deskd_call_after_restart_ms: first_call.map(|d| d.as_secs_f64() * 1000.0),
        new_server_commandstats: commandstats,
        new_server_keys: keys,
        deskd_survived,
        deskd_error_lines,
        broken,
    })
}

pub fn print(r: &RedisKillReport) {
    println!("redis-kill: {} workers, {}, no client retries", r.workers, r.mix);
    println!(
        "  Redis SIGKILL at {:.1} s, started again at {:.1} s (down {:.2} s)",
        r.killed_ms / 1000.0,
        r.restarted_ms / 1000.0,
        (r.restarted_ms - r.killed_ms) / 1000.0
    );
    crate::tally::print_phases(
        [
            ("before", &r.before),
            ("during", &r.during),
            ("after", &r.after),
            ("all", &r.all),
        ],
        true,
    );
    let stats: Vec<String> = r
        .new_server_commandstats
        .iter()
        .map(|(c, n)| format!("{c}={n}"))
        .collect();
    println!(
        "  deskd calls on the first Redis before the kill: {}; on the new one: first after {}, at the end {} ({} keys under the prefix)",
        r.calls_before_kill,
        r.first_deskd_call_after_restart_ms
            .map_or("never".into(), |v| format!("{v:.0} ms")),
        stats.join(" "),
        r.new_server_keys
    );
}
