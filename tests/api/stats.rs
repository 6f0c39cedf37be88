//! GetTicketStats: every figure checked against an independent computation
//! (plain Rust over the tickets the test made, with known statuses,
//! priorities, assignees, tags and times); the filters; the window's
//! defaults and validation; tenant isolation; the `stats:read` permission;
//! and the daily rollups staying exact through every kind of ticket write.

use std::collections::HashMap;

use deskd::{
    proto::{
        stats::v1::{
            self as spb, GetTicketStatsRequest, GetTicketStatsResponse, stats_service_client::StatsServiceClient,
        },
        tickets::v1::{self as pb, DeleteTicketRequest, TicketPriority, TicketStatus, UpdateTicketRequest},
    },
    tenancy::TenantId,
    users::model::Role,
};
use prost_types::Timestamp;
use sqlx::PgConnection;
use time::{Date, Duration, OffsetDateTime, macros::datetime};
use tonic::{Code, Status, transport::Channel};
use uuid::Uuid;

use crate::{helpers::*, users_support::*};

// ---------------------------------------------------------------------------
// Tickets with known properties
// ---------------------------------------------------------------------------

/// A ticket as the test knows it.
#[derive(Debug, Clone)]
struct Fx {
    id: Uuid,
    create: OffsetDateTime,
    status: TicketStatus,
    priority: TicketPriority,
    assignee: Option<Uuid>,
    tags: Vec<String>,
    resolve: Option<OffsetDateTime>,
}

fn is_resolved(s: TicketStatus) -> bool {
    matches!(s, TicketStatus::Resolved | TicketStatus::Closed)
}

const STATUS_CYCLE: [TicketStatus; 7] = [
    TicketStatus::Open,
    TicketStatus::InProgress,
    TicketStatus::Waiting,
    TicketStatus::Resolved,
    TicketStatus::Closed,
    TicketStatus::Resolved,
    TicketStatus::Closed,
];
const PRIORITY_CYCLE: [TicketPriority; 5] = [
    TicketPriority::Low,
    TicketPriority::Normal,
    TicketPriority::High,
    TicketPriority::Urgent,
    TicketPriority::Normal,
];

/// `n` varied tickets created every `step` from `base` (odd steps, so they
/// fall at all hours and across midnights), resolved 0 to 49 hours later
/// when RESOLVED or CLOSED. Microsecond offsets make every time distinct.
fn specs(n: usize, base: OffsetDateTime, step: Duration, agents: &[Uuid], salt: usize) -> Vec<Fx> {
    (0..n)
        .map(|k| {
            let k64 = k as i64;
            let status = STATUS_CYCLE[(k + salt) % STATUS_CYCLE.len()];
            let create = base + step * (k as i32) + Duration::microseconds(13 * k64 + salt as i64);
            Fx {
                id: Uuid::nil(),
                create,
                status,
                priority: PRIORITY_CYCLE[k % PRIORITY_CYCLE.len()],
                assignee: match k % 5 {
                    0 => None,
                    r => Some(agents[(r + k / 7) % agents.len()]),
                },
                tags: match k % 3 {
                    0 => vec![],
                    1 => vec!["vpn".to_string()],
                    _ => vec!["billing".to_string(), "vpn".to_string()],
                },
                resolve: is_resolved(status).then(|| {
                    create
                        + Duration::hours((k64 * 37) % 50)
                        + Duration::minutes((k64 * 13) % 60)
                        + Duration::microseconds(7 * k64 + 1)
                }),
            }
        })
        .collect()
}

/// Creates the tickets through the API, then gives them their create and
/// resolve times as the owner (one statement, so the rollup triggers see a
/// multi-row update). Returns them with their ids.
async fn seed(app: &TestApp, caller: &Caller, mut fx: Vec<Fx>) -> Vec<Fx> {
    for t in &mut fx {
        let created = create_ticket(
            app,
            caller,
            pb::Ticket {
                title: "stats fixture".into(),
                status: t.status as i32,
                priority: t.priority as i32,
                assignee_id: t.assignee.map(|a| a.to_string()).unwrap_or_default(),
                tags: t.tags.clone(),
                ..Default::default()
            },
        )
        .await;
        t.id = Uuid::parse_str(&created.id).expect("uuid");
    }
    place(app, &fx).await;
    fx
}

/// Sets create_time and resolve_time as the owner.
async fn place(app: &TestApp, fx: &[Fx]) {
    let mut conn = app.db.owner_conn().await;
    let ids: Vec<Uuid> = fx.iter().map(|t| t.id).collect();
    let creates: Vec<OffsetDateTime> = fx.iter().map(|t| t.create).collect();
    let resolves: Vec<Option<OffsetDateTime>> = fx.iter().map(|t| t.resolve).collect();
    let res = sqlx::query(
        "update tickets t set create_time = v.c, update_time = coalesce(v.r, v.c), resolve_time = v.r \
         from unnest($1::uuid[], $2::timestamptz[], $3::timestamptz[]) as v(id, c, r) where t.id = v.id",
    )
    .bind(&ids)
    .bind(&creates)
    .bind(&resolves)
    .execute(&mut conn)
    .await
    .expect("place tickets in time");
    assert_eq!(res.rows_affected() as usize, fx.len());
}

/// The tickets of `tenant` as stored (for checks after API writes).
async fn stored(conn: &mut PgConnection, tenant: TenantId) -> Vec<Fx> {
    type Row = (
        Uuid,
        OffsetDateTime,
        String,
        String,
        Option<Uuid>,
        Vec<String>,
        Option<OffsetDateTime>,
    );
    let rows: Vec<Row> = sqlx::query_as(
        "select id, create_time, status, priority, assignee_id, tags, resolve_time from tickets where tenant_id = $1",
    )
    .bind(tenant.0)
    .fetch_all(conn)
    .await
    .expect("read tickets");
    rows.into_iter()
        .map(|(id, create, status, priority, assignee, tags, resolve)| Fx {
            id,
            create,
            status: TicketStatus::from_str_name(&format!("TICKET_STATUS_{}", status.to_uppercase())).expect("status"),
            priority: TicketPriority::from_str_name(&format!("TICKET_PRIORITY_{}", priority.to_uppercase()))
                .expect("priority"),
            assignee,
            tags,
            resolve,
        })
        .collect()
}

// ---------------------------------------------------------------------------
// The independent computation
// ---------------------------------------------------------------------------

#[derive(Debug, Clone, Default)]
struct Filter {
    assignee: Option<Uuid>,
    tag: Option<String>,
    priority: Option<TicketPriority>,
}

impl Filter {
    fn matches(&self, t: &Fx) -> bool {
        self.assignee.is_none_or(|a| t.assignee == Some(a))
            && self.tag.as_ref().is_none_or(|g| t.tags.contains(g))
            && self.priority.is_none_or(|p| t.priority == p)
    }
}

fn ts(t: OffsetDateTime) -> Timestamp {
    Timestamp {
        seconds: t.unix_timestamp(),
        nanos: t.nanosecond() as i32,
    }
}

fn from_ts(t: &Timestamp) -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(t.seconds) * 1_000_000_000 + i128::from(t.nanos))
        .expect("timestamp")
}

fn duration(micros: i128) -> prost_types::Duration {
    let micros = micros.max(0);
    prost_types::Duration {
        seconds: (micros / 1_000_000) as i64,
        nanos: ((micros % 1_000_000) * 1000) as i32,
    }
}

/// Nearest rank: the value at position ceil(pct/100 * n), from 1.
fn nearest_rank(sorted: &[i128], pct: usize) -> Option<prost_types::Duration> {
    if sorted.is_empty() {
        return None;
    }
    let rank = (pct * sorted.len()).div_ceil(100).max(1);
    Some(duration(sorted[rank - 1]))
}

fn iso(d: Date) -> String {
    format!("{:04}-{:02}-{:02}", d.year(), d.month() as u8, d.day())
}

const STATUSES: [TicketStatus; 5] = [
    TicketStatus::Open,
    TicketStatus::InProgress,
    TicketStatus::Waiting,
    TicketStatus::Resolved,
    TicketStatus::Closed,
];
const PRIORITIES: [TicketPriority; 4] = [
    TicketPriority::Low,
    TicketPriority::Normal,
    TicketPriority::High,
    TicketPriority::Urgent,
];

fn by_status(ts: &[&Fx], statuses: &[TicketStatus]) -> Vec<spb::StatusCount> {
    statuses
        .iter()
        .map(|s| spb::StatusCount {
            status: *s as i32,
            count: ts.iter().filter(|t| t.status == *s).count() as i64,
        })
        .collect()
}

fn by_priority(ts: &[&Fx]) -> Vec<spb::PriorityCount> {
    PRIORITIES
        .iter()
        .map(|p| spb::PriorityCount {
            priority: *p as i32,
            count: ts.iter().filter(|t| t.priority == *p).count() as i64,
        })
        .collect()
}

/// What GetTicketStats must answer, computed from `all` (the caller's
/// tenant's tickets) alone.
fn expected(
    all: &[Fx],
    f: &Filter,
    start: OffsetDateTime,
    end: OffsetDateTime,
    now: OffsetDateTime,
    limit: usize,
) -> GetTicketStatsResponse {
    let matching: Vec<&Fx> = all.iter().filter(|t| f.matches(t)).collect();
    let in_window = |t: OffsetDateTime| start <= t && t < end;
    let created: Vec<&Fx> = matching.iter().copied().filter(|t| in_window(t.create)).collect();
    let open: Vec<&Fx> = matching.iter().copied().filter(|t| !is_resolved(t.status)).collect();
    let resolved: Vec<&Fx> = matching
        .iter()
        .copied()
        .filter(|t| is_resolved(t.status) && t.resolve.is_some_and(in_window))
        .collect();

    let mut ages: Vec<i128> = open.iter().map(|t| (now - t.create).whole_microseconds()).collect();
    ages.sort_unstable();
    let mut ttr: Vec<i128> = resolved
        .iter()
        .map(|t| (t.resolve.expect("resolved") - t.create).whole_microseconds())
        .collect();
    ttr.sort_unstable();

    let mut open_per: HashMap<Uuid, i64> = HashMap::new();
    for t in &open {
        if let Some(a) = t.assignee {
            *open_per.entry(a).or_default() += 1;
        }
    }
    let mut resolved_per: HashMap<Uuid, i64> = HashMap::new();
    for t in &resolved {
        if let Some(a) = t.assignee {
            *resolved_per.entry(a).or_default() += 1;
        }
    }
    let top = |primary: &HashMap<Uuid, i64>| {
        let mut v: Vec<(Uuid, i64)> = primary.iter().map(|(a, n)| (*a, *n)).collect();
        v.sort_by(|x, y| y.1.cmp(&x.1).then(x.0.to_string().cmp(&y.0.to_string())));
        v.into_iter()
            .take(limit)
            .map(|(a, _)| spb::AssigneeStats {
                assignee_id: a.to_string(),
                open_count: open_per.get(&a).copied().unwrap_or(0),
                resolved_count: resolved_per.get(&a).copied().unwrap_or(0),
            })
            .collect::<Vec<_>>()
    };

    let mut daily = Vec::new();
    let mut day = start.date();
    let last = (end - Duration::MICROSECOND).date();
    while day <= last {
        daily.push(spb::DailyCount {
            date: iso(day),
            created_count: created.iter().filter(|t| t.create.date() == day).count() as i64,
            resolved_count: resolved
                .iter()
                .filter(|t| t.resolve.is_some_and(|r| r.date() == day))
                .count() as i64,
        });
        day = day.next_day().expect("next day");
    }

    GetTicketStatsResponse {
        start_time: Some(ts(start)),
        end_time: Some(ts(end)),
        compute_time: Some(ts(now)),
        created_count: created.len() as i64,
        created_by_status: by_status(&created, &STATUSES),
        created_by_priority: by_priority(&created),
        backlog: Some(spb::Backlog {
            open_count: open.len() as i64,
            unassigned_count: open.iter().filter(|t| t.assignee.is_none()).count() as i64,
            by_status: by_status(&open, &STATUSES[..3]),
            by_priority: by_priority(&open),
            age_p50: nearest_rank(&ages, 50),
            age_p90: nearest_rank(&ages, 90),
            age_p99: nearest_rank(&ages, 99),
        }),
        resolution: Some(spb::Resolution {
            resolved_count: resolved.len() as i64,
            time_to_resolve_p50: nearest_rank(&ttr, 50),
            time_to_resolve_p90: nearest_rank(&ttr, 90),
        }),
        top_assignees_by_open: top(&open_per),
        top_assignees_by_resolved: top(&resolved_per),
        daily_counts: daily,
    }
}

// ---------------------------------------------------------------------------
// Calling the service
// ---------------------------------------------------------------------------

fn client(app: &TestApp) -> StatsServiceClient<Channel> {
    StatsServiceClient::new(app.channel.clone())
}

fn request(
    start: Option<OffsetDateTime>,
    end: Option<OffsetDateTime>,
    f: &Filter,
    limit: i32,
) -> GetTicketStatsRequest {
    GetTicketStatsRequest {
        start_time: start.map(ts),
        end_time: end.map(ts),
        assignee_id: f.assignee.map(|a| a.to_string()).unwrap_or_default(),
        tag: f.tag.clone().unwrap_or_default(),
        priority: f.priority.map_or(0, |p| p as i32),
        top_assignees_limit: limit,
    }
}

async fn try_stats(app: &TestApp, bearer: &str, req: GetTicketStatsRequest) -> Result<GetTicketStatsResponse, Status> {
    client(app)
        .get_ticket_stats(authed(bearer, req))
        .await
        .map(|r| r.into_inner())
}

/// Asks for `[start, end)` with `f` and checks every figure against the
/// independent computation over `all`.
async fn check(
    app: &TestApp,
    caller: &Caller,
    all: &[Fx],
    f: &Filter,
    (start, end): (OffsetDateTime, OffsetDateTime),
    limit: i32,
) -> GetTicketStatsResponse {
    let before = OffsetDateTime::now_utc();
    let res = client(app)
        .get_ticket_stats(authed(&caller.token, request(Some(start), Some(end), f, limit)))
        .await
        .unwrap_or_else(|s| panic!("stats for {start}..{end} {f:?}: {s:?}"));
    let cache = res
        .metadata()
        .get("x-cache")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let got = res.into_inner();
    let after = OffsetDateTime::now_utc();
    let now = from_ts(got.compute_time.as_ref().expect("compute_time"));
    match cache.as_deref() {
        // Computed for this call.
        Some("miss") => assert!(
            before - Duration::milliseconds(1) <= now && now <= after,
            "compute_time {now} not within the call ({before} .. {after})"
        ),
        // Served from the cache: computed earlier, for the same query.
        Some("hit") => assert!(now <= after, "cached compute_time {now} after the call"),
        other => panic!("x-cache must be hit or miss, got {other:?}"),
    }
    let effective_limit = match limit {
        0 => 10,
        n => n.min(100) as usize,
    };
    let want = expected(all, f, start, end, now, effective_limit);
    assert_eq!(got, want, "window {start} .. {end}, filter {f:?}, limit {limit}");
    got
}

// ---------------------------------------------------------------------------
// A shared world: two tenants with tickets on the same days
// ---------------------------------------------------------------------------

struct World {
    app: TestApp,
    a: Caller,
    b: Caller,
    a_agents: Vec<Uuid>,
    b_agents: Vec<Uuid>,
    a_tickets: Vec<Fx>,
    b_tickets: Vec<Fx>,
}

async fn world() -> World {
    let app = spawn_app().await;
    let a = app.caller(Role::Admin).await;
    let b = app.caller(Role::Admin).await;
    let mut a_agents = Vec::new();
    for _ in 0..3 {
        a_agents.push(app.colleague(&a, Role::Agent).await.user.0);
    }
    let mut b_agents = Vec::new();
    for _ in 0..2 {
        b_agents.push(app.colleague(&b, Role::Agent).await.user.0);
    }
    let a_specs = specs(
        60,
        datetime!(2025-03-08 00:00 UTC),
        Duration::hours(3) + Duration::minutes(7) + Duration::seconds(11),
        &a_agents,
        0,
    );
    // B's tickets fall on the same days, with other statuses and agents.
    let b_specs = specs(
        25,
        datetime!(2025-03-09 06:00 UTC),
        Duration::hours(5) + Duration::minutes(3),
        &b_agents,
        3,
    );
    let a_tickets = seed(&app, &a, a_specs).await;
    let b_tickets = seed(&app, &b, b_specs).await;
    World {
        app,
        a,
        b,
        a_agents,
        b_agents,
        a_tickets,
        b_tickets,
    }
}

/// Windows that exercise every way the rollups and the partial days combine.
fn windows() -> Vec<(OffsetDateTime, OffsetDateTime)> {
    vec![
        // Partial days at both edges around whole days.
        (
            datetime!(2025-03-09 13:17:05.123456 UTC),
            datetime!(2025-03-14 19:02:00 UTC),
        ),
        // Aligned to midnight: whole days only.
        (datetime!(2025-03-09 00:00 UTC), datetime!(2025-03-13 00:00 UTC)),
        // Inside one day; and across one midnight without a whole day.
        (datetime!(2025-03-11 02:00 UTC), datetime!(2025-03-11 23:00 UTC)),
        (datetime!(2025-03-10 20:00 UTC), datetime!(2025-03-11 07:30 UTC)),
        // Everything.
        (datetime!(2025-03-01 00:00 UTC), datetime!(2025-04-01 00:00 UTC)),
        // The longest window, ending mid-day.
        (
            datetime!(2025-12-31 12:00 UTC) - Duration::days(366),
            datetime!(2025-12-31 12:00 UTC),
        ),
        // Nothing created or resolved (the backlog is still there).
        (datetime!(2024-03-01 00:00 UTC), datetime!(2024-03-20 00:00 UTC)),
    ]
}

// ---------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------

#[tokio::test]
async fn every_figure_matches_an_independent_computation() {
    let w = world().await;
    for window in windows() {
        let got = check(&w.app, &w.a, &w.a_tickets, &Filter::default(), window, 0).await;
        check(&w.app, &w.b, &w.b_tickets, &Filter::default(), window, 0).await;
        // The figures are consistent with each other.
        let daily_created: i64 = got.daily_counts.iter().map(|d| d.created_count).sum();
        assert_eq!(daily_created, got.created_count);
        let daily_resolved: i64 = got.daily_counts.iter().map(|d| d.resolved_count).sum();
        assert_eq!(
            daily_resolved,
            got.resolution.as_ref().expect("resolution").resolved_count
        );
    }
    // The fixture is not degenerate: the main window has something of each.
    let got = check(&w.app, &w.a, &w.a_tickets, &Filter::default(), windows()[0], 0).await;
    let backlog = got.backlog.expect("backlog");
    let resolution = got.resolution.expect("resolution");
    assert!(got.created_count >= 30, "{}", got.created_count);
    assert!(
        got.created_by_status.iter().all(|c| c.count > 0),
        "{:?}",
        got.created_by_status
    );
    assert!(backlog.open_count >= 20 && backlog.unassigned_count > 0, "{backlog:?}");
    assert!(resolution.resolved_count >= 10, "{resolution:?}");
    assert_ne!(resolution.time_to_resolve_p50, resolution.time_to_resolve_p90);
    assert_eq!(got.top_assignees_by_open.len(), 3);
    assert_eq!(got.daily_counts.len(), 6);
}

#[tokio::test]
async fn filters_give_exact_answers() {
    let w = world().await;
    let (u1, u2) = (w.a_agents[0], w.a_agents[1]);
    let filters = vec![
        Filter {
            assignee: Some(u1),
            ..Default::default()
        },
        Filter {
            assignee: Some(u2),
            ..Default::default()
        },
        Filter {
            tag: Some("vpn".into()),
            ..Default::default()
        },
        Filter {
            tag: Some("billing".into()),
            ..Default::default()
        },
        Filter {
            tag: Some("no-such-tag".into()),
            ..Default::default()
        },
        Filter {
            priority: Some(TicketPriority::High),
            ..Default::default()
        },
        Filter {
            priority: Some(TicketPriority::Normal),
            tag: Some("billing".into()),
            ..Default::default()
        },
        Filter {
            assignee: Some(u1),
            priority: Some(TicketPriority::Normal),
            tag: Some("vpn".into()),
        },
        // Another tenant's user, and nobody: nothing of A matches either.
        Filter {
            assignee: Some(w.b_agents[0]),
            ..Default::default()
        },
        Filter {
            assignee: Some(Uuid::now_v7()),
            ..Default::default()
        },
    ];
    for f in &filters {
        for window in [windows()[0], windows()[3], windows()[4]] {
            check(&w.app, &w.a, &w.a_tickets, f, window, 0).await;
        }
    }

    // The tag is compared after trimming.
    let window = windows()[0];
    let spaced = Filter {
        tag: Some("  vpn ".into()),
        ..Default::default()
    };
    let trimmed = Filter {
        tag: Some("vpn".into()),
        ..Default::default()
    };
    let got = try_stats(&w.app, &w.a.token, request(Some(window.0), Some(window.1), &spaced, 0))
        .await
        .expect("spaced tag");
    let now = from_ts(got.compute_time.as_ref().expect("compute_time"));
    assert_eq!(got, expected(&w.a_tickets, &trimmed, window.0, window.1, now, 10));

    // A foreign assignee answers exactly like one that does not exist.
    let foreign = try_stats(
        &w.app,
        &w.a.token,
        request(Some(window.0), Some(window.1), &filters[8], 0),
    )
    .await
    .expect("foreign");
    let missing = try_stats(
        &w.app,
        &w.a.token,
        request(Some(window.0), Some(window.1), &filters[9], 0),
    )
    .await
    .expect("missing");
    assert_eq!(
        GetTicketStatsResponse {
            compute_time: None,
            ..foreign
        },
        GetTicketStatsResponse {
            compute_time: None,
            ..missing
        }
    );
}

#[tokio::test]
async fn top_assignee_lists_honour_the_limit() {
    let w = world().await;
    let window = windows()[4];
    for limit in [1, 2, 3, 0, 1000] {
        let got = check(&w.app, &w.a, &w.a_tickets, &Filter::default(), window, limit).await;
        let n = match limit {
            0 | 1000 => 3,
            n => n as usize,
        };
        assert_eq!(got.top_assignees_by_open.len(), n, "limit {limit}");
        assert_eq!(got.top_assignees_by_resolved.len(), n, "limit {limit}");
    }
    // Over 100 assignees: 0 means 10, more than 100 means 100.
    let app = &w.app;
    let c = app.caller(Role::Admin).await;
    let mut agents = Vec::new();
    for _ in 0..102 {
        agents.push(app.create_user(c.tenant, Role::Agent).await.0);
    }
    let mut fx = Vec::new();
    for (i, a) in agents.iter().enumerate() {
        // Agent i gets i % 4 + 1 open tickets: plenty of ties.
        for j in 0..(i % 4 + 1) {
            fx.push(Fx {
                id: Uuid::nil(),
                create: datetime!(2025-03-10 00:00 UTC) + Duration::minutes((i * 4 + j) as i64),
                status: TicketStatus::Open,
                priority: TicketPriority::Normal,
                assignee: Some(*a),
                tags: vec![],
                resolve: None,
            });
        }
    }
    let fx = seed(app, &c, fx).await;
    let window = (datetime!(2025-03-01 00:00 UTC), datetime!(2025-04-01 00:00 UTC));
    for (limit, n) in [(0, 10), (100, 100), (1000, 100), (7, 7)] {
        let got = check(app, &c, &fx, &Filter::default(), window, limit).await;
        assert_eq!(got.top_assignees_by_open.len(), n, "limit {limit}");
        assert!(got.top_assignees_by_resolved.is_empty());
    }
}

#[tokio::test]
async fn the_window_defaults_to_the_last_30_days_with_every_day_present() {
    let app = spawn_app().await;
    let c = app.caller(Role::Agent).await;
    for i in 0..3 {
        create_ticket(&app, &c, new_ticket(&format!("recent {i}"))).await;
    }
    let got = try_stats(&app, &c.token, GetTicketStatsRequest::default())
        .await
        .expect("default window");
    let start = from_ts(got.start_time.as_ref().expect("start"));
    let end = from_ts(got.end_time.as_ref().expect("end"));
    let now = from_ts(got.compute_time.as_ref().expect("compute_time"));
    assert_eq!(end, now, "the default end is now");
    assert_eq!(end - start, Duration::days(30));
    assert!((OffsetDateTime::now_utc() - now).abs() < Duration::seconds(30));
    assert_eq!(got.created_count, 3);
    assert_eq!(got.backlog.as_ref().expect("backlog").open_count, 3);
    // 30 days not aligned to midnight touch 31 UTC days; all but today are
    // zeros, and every one is there, consecutive.
    assert_eq!(got.daily_counts.len(), 31);
    let mut day = start.date();
    for (i, d) in got.daily_counts.iter().enumerate() {
        assert_eq!(d.date, iso(day), "day {i}");
        let want = if day == now.date() { 3 } else { 0 };
        assert_eq!((d.created_count, d.resolved_count), (want, 0), "day {}", d.date);
        day = day.next_day().expect("next");
    }
    let all = stored(&mut app.db.owner_conn().await, c.tenant).await;
    assert_eq!(got, expected(&all, &Filter::default(), start, end, now, 10));

    // Only an end: 30 days before it.
    let end = datetime!(2025-06-15 08:00 UTC);
    let got = try_stats(&app, &c.token, request(None, Some(end), &Filter::default(), 0))
        .await
        .expect("end only");
    assert_eq!(got.start_time, Some(ts(end - Duration::days(30))));
    assert_eq!(got.end_time, Some(ts(end)));
    assert_eq!(got.created_count, 0);
    assert_eq!(got.daily_counts.len(), 31);
    assert!(
        got.daily_counts
            .iter()
            .all(|d| d.created_count == 0 && d.resolved_count == 0)
    );

    // Only a start: up to now.
    let start = OffsetDateTime::now_utc() - Duration::days(2);
    let got = try_stats(&app, &c.token, request(Some(start), None, &Filter::default(), 0))
        .await
        .expect("start only");
    assert_eq!(got.end_time, got.compute_time);
    assert_eq!(got.created_count, 3);
    assert_eq!(got.daily_counts.len(), 3);
}

#[tokio::test]
async fn invalid_windows_and_filters_are_refused_with_field_paths() {
    let app = spawn_app().await;
    let c = app.caller(Role::Viewer).await;
    let t = datetime!(2025-06-15 08:00 UTC);
    let none = Filter::default();
    let cases: Vec<(GetTicketStatsRequest, &str, &str)> = vec![
        (request(Some(t), Some(t), &none, 0), "end_time", "INVALID_RANGE"),
        (
            request(Some(t), Some(t - Duration::seconds(1)), &none, 0),
            "end_time",
            "INVALID_RANGE",
        ),
        // A start in the future with the end left to default to now.
        (
            request(Some(OffsetDateTime::now_utc() + Duration::hours(1)), None, &none, 0),
            "end_time",
            "INVALID_RANGE",
        ),
        (
            request(Some(t - Duration::days(366) - Duration::MICROSECOND), Some(t), &none, 0),
            "start_time",
            "WINDOW_TOO_LONG",
        ),
        (
            request(None, None, &none, 0).tap(|r| {
                r.start_time = Some(Timestamp {
                    seconds: 0,
                    nanos: 1_000_000_000,
                })
            }),
            "start_time",
            "INVALID_TIMESTAMP",
        ),
        (
            request(None, None, &none, 0).tap(|r| {
                r.end_time = Some(Timestamp {
                    seconds: 300_000_000_000,
                    nanos: 0,
                })
            }),
            "end_time",
            "INVALID_TIMESTAMP",
        ),
        (
            request(None, None, &none, 0).tap(|r| r.assignee_id = "not-a-uuid".into()),
            "assignee_id",
            "INVALID_ID",
        ),
        (
            request(None, None, &none, 0).tap(|r| r.tag = "x".repeat(51)),
            "tag",
            "INVALID_TAG",
        ),
        (
            request(None, None, &none, 0).tap(|r| r.priority = 99),
            "priority",
            "INVALID_ENUM_VALUE",
        ),
        (request(None, None, &none, -1), "top_assignees_limit", "INVALID_LIMIT"),
    ];
    for (req, field, why) in cases {
        let err = try_stats(&app, &c.token, req.clone())
            .await
            .expect_err(&format!("{field}/{why} accepted: {req:?}"));
        assert_only_violation(&err, field, why);
    }

    // Exactly 366 days is allowed.
    try_stats(
        &app,
        &c.token,
        request(Some(t - Duration::days(366)), Some(t), &none, 0),
    )
    .await
    .expect("366 days");

    // Every violation at once.
    let err = try_stats(
        &app,
        &c.token,
        GetTicketStatsRequest {
            start_time: Some(ts(t)),
            end_time: Some(ts(t - Duration::days(1))),
            assignee_id: "nope".into(),
            tag: "y".repeat(60),
            priority: -3,
            top_assignees_limit: -5,
        },
    )
    .await
    .expect_err("many violations");
    for (field, why) in [
        ("end_time", "INVALID_RANGE"),
        ("assignee_id", "INVALID_ID"),
        ("tag", "INVALID_TAG"),
        ("priority", "INVALID_ENUM_VALUE"),
        ("top_assignees_limit", "INVALID_LIMIT"),
    ] {
        assert_field_violation(&err, field, why);
    }
}

/// A tiny builder helper for request variants.
trait Tap: Sized {
    fn tap(mut self, f: impl FnOnce(&mut Self)) -> Self {
        f(&mut self);
        self
    }
}
impl Tap for GetTicketStatsRequest {}

#[tokio::test]
async fn stats_read_is_required() {
    let w = world().await;
    let window = windows()[0];
    let req = request(Some(window.0), Some(window.1), &Filter::default(), 0);

    let without = create_key(&w.app, &w.a.token, "no stats", &["tickets:read", "users:read"]).await;
    let err = try_stats(&w.app, &without.key, req.clone())
        .await
        .expect_err("a key without stats:read");
    assert_permission_missing(&err, "stats:read");

    // With the scope, a key sees its own tenant's figures; so do viewers.
    let with = create_key(&w.app, &w.a.token, "stats", &["stats:read"]).await;
    let by_key = try_stats(&w.app, &with.key, req.clone())
        .await
        .expect("key with stats:read");
    let viewer = w.app.colleague(&w.a, Role::Viewer).await;
    let by_viewer = try_stats(&w.app, &viewer.token, req.clone()).await.expect("viewer");
    let now = from_ts(by_key.compute_time.as_ref().expect("compute_time"));
    assert_eq!(
        by_key,
        expected(&w.a_tickets, &Filter::default(), window.0, window.1, now, 10)
    );
    assert_eq!(by_viewer.created_count, by_key.created_count);

    // No credential at all.
    let err = client(&w.app)
        .get_ticket_stats(tonic::Request::new(req))
        .await
        .expect_err("anonymous");
    assert_eq!(err.code(), Code::Unauthenticated);
}

#[tokio::test]
async fn tenants_never_see_each_others_tickets_in_any_figure() {
    let w = world().await;
    // Each tenant's figures are exactly those of its own tickets (the
    // independent computation never looks at the other's).
    for window in windows() {
        for f in [
            Filter::default(),
            Filter {
                priority: Some(TicketPriority::Normal),
                ..Default::default()
            },
            Filter {
                tag: Some("vpn".into()),
                ..Default::default()
            },
        ] {
            check(&w.app, &w.a, &w.a_tickets, &f, window, 0).await;
            check(&w.app, &w.b, &w.b_tickets, &f, window, 0).await;
        }
    }
    // B's agents never appear in A's lists, whatever the filter.
    let window = windows()[4];
    let got = check(&w.app, &w.a, &w.a_tickets, &Filter::default(), window, 100).await;
    for a in got.top_assignees_by_open.iter().chain(&got.top_assignees_by_resolved) {
        let id = Uuid::parse_str(&a.assignee_id).expect("uuid");
        assert!(w.a_agents.contains(&id), "{id} is not A's");
    }

    // The rollup tables are confined by RLS like every tenant table.
    let pool = w.app.db.app_pool(1).await;
    for table in ["ticket_stats_created_daily", "ticket_stats_resolved_daily"] {
        let mut tx = pool.begin().await.expect("begin");
        let n: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(format!("select count(*) from {table}")))
            .fetch_one(&mut *tx)
            .await
            .expect("count without context");
        assert_eq!(n, 0, "{table} without a tenant context");
        sqlx::query("select set_config('app.current_tenant_id', $1, true)")
            .bind(w.b.tenant.to_string())
            .execute(&mut *tx)
            .await
            .expect("context");
        let tenants: Vec<Uuid> =
            sqlx::query_scalar(sqlx::AssertSqlSafe(format!("select distinct tenant_id from {table}")))
                .fetch_all(&mut *tx)
                .await
                .expect("tenants");
        assert_eq!(tenants, vec![w.b.tenant.0], "{table} as B");
        tx.rollback().await.expect("rollback");
    }
}

/// The rollups as they are, and as a recount of `tickets` says they must be.
async fn assert_rollups_exact(conn: &mut PgConnection) {
    let created_diff: i64 = sqlx::query_scalar(
        "with truth as (
             select tenant_id, (create_time at time zone 'UTC')::date as day, status, priority, count(*) as n
             from tickets group by 1, 2, 3, 4),
         kept as (select tenant_id, day, status, priority, n from ticket_stats_created_daily where n > 0)
         select count(*) from ((table truth except table kept) union all (table kept except table truth)) d",
    )
    .fetch_one(&mut *conn)
    .await
    .expect("compare created rollup");
    assert_eq!(created_diff, 0, "ticket_stats_created_daily differs from a recount");
    let resolved_diff: i64 = sqlx::query_scalar(
        "with truth as (
             select tenant_id, (resolve_time at time zone 'UTC')::date as day, priority,
                    coalesce(assignee_id, '00000000-0000-0000-0000-000000000000') as assignee_id, count(*) as n
             from tickets where resolve_time is not null group by 1, 2, 3, 4),
         kept as (select tenant_id, day, priority, assignee_id, n from ticket_stats_resolved_daily where n > 0)
         select count(*) from ((table truth except table kept) union all (table kept except table truth)) d",
    )
    .fetch_one(&mut *conn)
    .await
    .expect("compare resolved rollup");
    assert_eq!(resolved_diff, 0, "ticket_stats_resolved_daily differs from a recount");
}

#[tokio::test]
async fn rollups_stay_exact_through_every_kind_of_write() {
    let w = world().await;
    let mut conn = w.app.db.owner_conn().await;
    assert_rollups_exact(&mut conn).await;

    let update = |id: Uuid, t: pb::Ticket, paths: &[&str]| {
        let mut c = w.app.tickets();
        let token = w.a.token.clone();
        let update_mask = mask(paths);
        async move {
            c.update_ticket(authed(
                &token,
                UpdateTicketRequest {
                    ticket: Some(pb::Ticket {
                        id: id.to_string(),
                        ..t
                    }),
                    update_mask,
                },
            ))
            .await
            .expect("update")
        }
    };
    let open: Vec<&Fx> = w.a_tickets.iter().filter(|t| !is_resolved(t.status)).collect();
    let done: Vec<&Fx> = w.a_tickets.iter().filter(|t| is_resolved(t.status)).collect();
    // Resolve, close, reopen, reprioritise, reassign, unassign, retag, delete.
    update(
        open[0].id,
        pb::Ticket {
            status: TicketStatus::Resolved as i32,
            ..Default::default()
        },
        &["status"],
    )
    .await;
    update(
        done[0].id,
        pb::Ticket {
            status: TicketStatus::Open as i32,
            ..Default::default()
        },
        &["status"],
    )
    .await;
    update(
        done[1].id,
        pb::Ticket {
            status: if done[1].status == TicketStatus::Closed {
                TicketStatus::Resolved as i32
            } else {
                TicketStatus::Closed as i32
            },
            ..Default::default()
        },
        &["status"],
    )
    .await;
    update(
        done[2].id,
        pb::Ticket {
            priority: TicketPriority::Urgent as i32,
            assignee_id: w.a_agents[2].to_string(),
            ..Default::default()
        },
        &["priority", "assignee_id"],
    )
    .await;
    update(
        open[1].id,
        pb::Ticket {
            priority: TicketPriority::Low as i32,
            assignee_id: String::new(),
            tags: vec!["moved".into()],
            ..Default::default()
        },
        &["priority", "assignee_id", "tags"],
    )
    .await;
    update(
        open[2].id,
        pb::Ticket {
            title: "only the title".into(),
            ..Default::default()
        },
        &["title"],
    )
    .await;
    for t in [open[3], done[3]] {
        w.app
            .tickets()
            .delete_ticket(authed(
                &w.a.token,
                DeleteTicketRequest {
                    id: t.id.to_string(),
                    etag: String::new(),
                },
            ))
            .await
            .expect("delete");
    }
    // The owner moves tickets across days (one statement, several rows).
    sqlx::query(
        "update tickets set create_time = create_time - interval '26 hours', \
                resolve_time = resolve_time + interval '30 hours' \
         where tenant_id = $1 and id = any($2)",
    )
    .bind(w.a.tenant.0)
    .bind(vec![open[4].id, done[4].id, done[5].id])
    .execute(&mut conn)
    .await
    .expect("move in time");
    assert_rollups_exact(&mut conn).await;

    let now_state = stored(&mut conn, w.a.tenant).await;
    assert_eq!(now_state.len(), w.a_tickets.len() - 2);
    for window in windows() {
        for f in [
            Filter::default(),
            Filter {
                priority: Some(TicketPriority::Urgent),
                ..Default::default()
            },
            Filter {
                assignee: Some(w.a_agents[2]),
                ..Default::default()
            },
        ] {
            check(&w.app, &w.a, &now_state, &f, window, 0).await;
        }
        // B is untouched by A's writes.
        check(&w.app, &w.b, &w.b_tickets, &Filter::default(), window, 0).await;
    }

    // Deleting a tenant (as the owner) cascades through the triggers.
    sqlx::query("delete from tenants where id = $1")
        .bind(w.b.tenant.0)
        .execute(&mut conn)
        .await
        .expect("delete tenant B");
    let left: i64 = sqlx::query_scalar(
        "select (select count(*) from ticket_stats_created_daily where tenant_id = $1) \
              + (select count(*) from ticket_stats_resolved_daily where tenant_id = $1)",
    )
    .bind(w.b.tenant.0)
    .fetch_one(&mut conn)
    .await
    .expect("count");
    assert_eq!(left, 0);
    assert_rollups_exact(&mut conn).await;

    // So does an operator's TRUNCATE.
    sqlx::query("truncate tickets")
        .execute(&mut conn)
        .await
        .expect("truncate");
    let left: i64 = sqlx::query_scalar(
        "select (select count(*) from ticket_stats_created_daily) + (select count(*) from ticket_stats_resolved_daily)",
    )
    .fetch_one(&mut conn)
    .await
    .expect("count");
    assert_eq!(left, 0);
}
