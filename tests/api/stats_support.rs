//! Helpers shared by the GetTicketStats tests (stats_figures,
//! stats_validation_and_isolation, stats_rollups): tickets with known
//! properties, the independent computation every figure is checked against,
//! calls to the service, and a shared world of two tenants.

use std::collections::HashMap;

use deskd::{
    proto::{
        stats::v1::{
            self as spb, GetTicketStatsRequest, GetTicketStatsResponse, stats_service_client::StatsServiceClient,
        },
        tickets::v1::{self as pb, TicketPriority, TicketStatus},
    },
    tenancy::TenantId,
    users::model::Role,
};
use prost_types::Timestamp;
use sqlx::PgConnection;
use time::{Date, Duration, OffsetDateTime, macros::datetime};
use tonic::{Status, transport::Channel};
use uuid::Uuid;

use crate::helpers::*;

// ---------------------------------------------------------------------------
// Tickets with known properties
// ---------------------------------------------------------------------------

/// A ticket as the test knows it.
#[derive(Debug, Clone)]
pub struct Fx {
    pub id: Uuid,
    pub create: OffsetDateTime,
    pub status: TicketStatus,
    pub priority: TicketPriority,
    pub assignee: Option<Uuid>,
    pub tags: Vec<String>,
    pub resolve: Option<OffsetDateTime>,
}

pub fn is_resolved(s: TicketStatus) -> bool {
    matches!(s, TicketStatus::Resolved | TicketStatus::Closed)
}

pub const STATUS_CYCLE: [TicketStatus; 7] = [
    TicketStatus::Open,
    TicketStatus::InProgress,
    TicketStatus::Waiting,
    TicketStatus::Resolved,
    TicketStatus::Closed,
    TicketStatus::Resolved,
    TicketStatus::Closed,
];

pub const PRIORITY_CYCLE: [TicketPriority; 5] = [
    TicketPriority::Low,
    TicketPriority::Normal,
    TicketPriority::High,
    TicketPriority::Urgent,
    TicketPriority::Normal,
];

/// `n` varied tickets created every `step` from `base` (odd steps, so they
/// fall at all hours and across midnights), resolved 0 to 49 hours later
/// when RESOLVED or CLOSED. Microsecond offsets make every time distinct.
pub fn specs(n: usize, base: OffsetDateTime, step: Duration, agents: &[Uuid], salt: usize) -> Vec<Fx> {
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
pub async fn seed(app: &TestApp, caller: &Caller, mut fx: Vec<Fx>) -> Vec<Fx> {
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
pub async fn place(app: &TestApp, fx: &[Fx]) {
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
pub async fn stored(conn: &mut PgConnection, tenant: TenantId) -> Vec<Fx> {
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
pub struct Filter {
    pub assignee: Option<Uuid>,
    pub tag: Option<String>,
    pub priority: Option<TicketPriority>,
}

impl Filter {
    fn matches(&self, t: &Fx) -> bool {
        self.assignee.is_none_or(|a| t.assignee == Some(a))
            && self.tag.as_ref().is_none_or(|g| t.tags.contains(g))
            && self.priority.is_none_or(|p| t.priority == p)
    }
}

pub fn ts(t: OffsetDateTime) -> Timestamp {
    Timestamp {
        seconds: t.unix_timestamp(),
        nanos: t.nanosecond() as i32,
    }
}

pub fn from_ts(t: &Timestamp) -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(t.seconds) * 1_000_000_000 + i128::from(t.nanos))
        .expect("timestamp")
}

pub fn duration(micros: i128) -> prost_types::Duration {
    let micros = micros.max(0);
    prost_types::Duration {
        seconds: (micros / 1_000_000) as i64,
        nanos: ((micros % 1_000_000) * 1000) as i32,
    }
}

/// Nearest rank: the value at position ceil(pct/100 * n), from 1.
pub fn nearest_rank(sorted: &[i128], pct: usize) -> Option<prost_types::Duration> {
    if sorted.is_empty() {
        return None;
    }
    let rank = (pct * sorted.len()).div_ceil(100).max(1);
    Some(duration(sorted[rank - 1]))
}

pub fn iso(d: Date) -> String {
    format!("{:04}-{:02}-{:02}", d.year(), d.month() as u8, d.day())
}

pub const STATUSES: [TicketStatus; 5] = [
    TicketStatus::Open,
    TicketStatus::InProgress,
    TicketStatus::Waiting,
    TicketStatus::Resolved,
    TicketStatus::Closed,
];

pub const PRIORITIES: [TicketPriority; 4] = [
    TicketPriority::Low,
    TicketPriority::Normal,
    TicketPriority::High,
    TicketPriority::Urgent,
];

pub fn by_status(ts: &[&Fx], statuses: &[TicketStatus]) -> Vec<spb::StatusCount> {
    statuses
        .iter()
        .map(|s| spb::StatusCount {
            status: *s as i32,
            count: ts.iter().filter(|t| t.status == *s).count() as i64,
        })
        .collect()
}

pub fn by_priority(ts: &[&Fx]) -> Vec<spb::PriorityCount> {
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
pub fn expected(
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

pub fn client(app: &TestApp) -> StatsServiceClient<Channel> {
    StatsServiceClient::new(app.channel.clone())
}

pub fn request(
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

pub async fn try_stats(
    app: &TestApp,
    bearer: &str,
    req: GetTicketStatsRequest,
) -> Result<GetTicketStatsResponse, Status> {
    client(app)
        .get_ticket_stats(authed(bearer, req))
        .await
        .map(|r| r.into_inner())
}

/// Asks for `[start, end)` with `f` and checks every figure against the
/// independent computation over `all`.
pub async fn check(
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

pub struct World {
    pub app: TestApp,
    pub a: Caller,
    pub b: Caller,
    pub a_agents: Vec<Uuid>,
    pub b_agents: Vec<Uuid>,
    pub a_tickets: Vec<Fx>,
    pub b_tickets: Vec<Fx>,
}

pub async fn world() -> World {
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
pub fn windows() -> Vec<(OffsetDateTime, OffsetDateTime)> {
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
