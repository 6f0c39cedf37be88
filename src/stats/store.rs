//! SQL for the ticket stats: one statement, so every figure comes from the
//! same snapshot, made of tagged branches that each count one thing with an
//! index (or a rollup) behind it. Runs inside the tenant transaction and
//! names `tenant_id` in every branch: RLS is the second line of defence.
//!
//! Where each figure comes from (migrations/20261128000003_stats.sql):
//! - created per day/status/priority and resolved per day/assignee: the
//!   daily rollups for the whole UTC days of the window plus `tickets` for
//!   the partial days at its edges, or `tickets` alone when an assignee or
//!   tag filter is set (the rollups are not kept per assignee or tag);
//! - time to resolve: `tickets_by_resolve_time`;
//! - the backlog: `tickets_open_by_create_time` (open tickets only).

use sqlx::{PgConnection, Postgres, QueryBuilder};
use time::{Date, OffsetDateTime};
use uuid::Uuid;

use super::model::{CreatedGroup, OpenGroup, StatsFacts, StatsFilter, Window};
use crate::{
    tenancy::TenantId,
    tickets::model::{Priority, Status},
};

/// The rollups' stand-in for "no assignee" (a key column cannot be null).
const NO_ASSIGNEE: Uuid = Uuid::nil();

/// One tagged row of the statement; which columns are set depends on `kind`.
#[derive(sqlx::FromRow)]
struct FactRow {
    kind: String,
    day: Option<Date>,
    status: Option<String>,
    priority: Option<String>,
    assignee_id: Option<Uuid>,
    n: Option<i64>,
    seconds: Option<Vec<f64>>,
    times: Option<Vec<OffsetDateTime>>,
}

/// Every branch yields the same columns, typed by the first; the others
/// use these casts for what they leave empty.
const NO_DAY: &str = "null::date";
const NO_TEXT: &str = "null::text";
const NO_UUID: &str = "null::uuid";
const NO_SECONDS: &str = "null::float8[]";
const NO_TIMES: &str = "null::timestamptz[]";

/// Appends the filters that apply to rows of `tickets`.
fn ticket_filters(q: &mut QueryBuilder<Postgres>, f: &StatsFilter) {
    if let Some(a) = f.assignee_id {
        q.push(" and assignee_id = ").push_bind(a);
    }
    if let Some(tag) = &f.tag {
        q.push(" and tags @> array[").push_bind(tag.clone()).push("]::text[]");
    }
    if let Some(p) = f.priority {
        q.push(" and priority = ").push_bind(p.as_str());
    }
}

/// Appends the filters that apply to rollup rows (priority only: the
/// caller uses the rollups only without assignee and tag filters).
fn rollup_filters(q: &mut QueryBuilder<Postgres>, f: &StatsFilter) {
    if let Some(p) = f.priority {
        q.push(" and priority = ").push_bind(p.as_str());
    }
}

fn union(q: &mut QueryBuilder<Postgres>, first: &mut bool) {
    if !std::mem::take(first) {
        q.push("\nunion all\n");
    }
}

/// Counts everything GetTicketStats reports for `window` (and the backlog
/// as of now) in one statement.
pub async fn ticket_facts(
    conn: &mut PgConnection,
    tenant: TenantId,
    window: &Window,
    filter: &StatsFilter,
) -> Result<StatsFacts, sqlx::Error> {
    // The percentile sorts stay in memory up to a few million values, and
    // JIT compilation would cost more than this statement saves by it.
    sqlx::query("select set_config('work_mem', '64MB', true), set_config('jit', 'off', true)")
        .execute(&mut *conn)
        .await?;

    let (whole_days, partial) = if filter.rollups_apply() {
        let split = window.split_days();
        (split.whole_days, split.partial)
    } else {
        (None, vec![(window.start, window.end)])
    };

    let mut q: QueryBuilder<Postgres> = QueryBuilder::new("");
    let mut first = true;

    // Tickets created in the window, by UTC day, current status and priority.
    if let Some((from, to)) = whole_days {
        union(&mut q, &mut first);
        q.push(format_args!(
            "select 'created' as kind, day, status, priority, {NO_UUID} as assignee_id, sum(n)::int8 as n, \
                    {NO_SECONDS} as seconds, {NO_TIMES} as times \
             from ticket_stats_created_daily where tenant_id = "
        ))
        .push_bind(tenant.0)
        .push(" and day >= ")
        .push_bind(from)
        .push(" and day < ")
        .push_bind(to);
        rollup_filters(&mut q, filter);
        q.push(" group by day, status, priority having sum(n) > 0");
    }
    for (from, to) in &partial {
        union(&mut q, &mut first);
        q.push(format_args!(
            "select 'created' as kind, (create_time at time zone 'UTC')::date as day, status, priority, \
                    {NO_UUID} as assignee_id, count(*) as n, {NO_SECONDS} as seconds, {NO_TIMES} as times \
             from tickets where tenant_id = "
        ))
        .push_bind(tenant.0)
        .push(" and create_time >= ")
        .push_bind(*from)
        .push(" and create_time < ")
        .push_bind(*to);
        ticket_filters(&mut q, filter);
        q.push(" group by 2, 3, 4");
    }

    // Tickets resolved in the window, by UTC day and by current assignee
    // (one grouping set each).
    if let Some((from, to)) = whole_days {
        union(&mut q, &mut first);
        q.push(format_args!(
            "select case when grouping(day) = 0 then 'resolved_day' else 'resolved_assignee' end, day, \
                    {NO_TEXT}, {NO_TEXT}, nullif(assignee_id, "
        ))
        .push_bind(NO_ASSIGNEE)
        .push(format_args!(
            "), sum(n)::int8, {NO_SECONDS}, {NO_TIMES} from ticket_stats_resolved_daily where tenant_id = "
        ))
        .push_bind(tenant.0)
        .push(" and day >= ")
        .push_bind(from)
        .push(" and day < ")
        .push_bind(to);
        rollup_filters(&mut q, filter);
        q.push(" group by grouping sets ((day), (assignee_id)) having sum(n) > 0");
    }
    for (from, to) in &partial {
        union(&mut q, &mut first);
        q.push(format_args!(
            "select case when grouping((resolve_time at time zone 'UTC')::date) = 0 \
                         then 'resolved_day' else 'resolved_assignee' end, \
                    (resolve_time at time zone 'UTC')::date, {NO_TEXT}, {NO_TEXT}, assignee_id, count(*), \
                    {NO_SECONDS}, {NO_TIMES} \
             from tickets where tenant_id = "
        ))
        .push_bind(tenant.0)
        .push(" and resolve_time >= ")
        .push_bind(*from)
        .push(" and resolve_time < ")
        .push_bind(*to);
        ticket_filters(&mut q, filter);
        q.push(" group by grouping sets (((resolve_time at time zone 'UTC')::date), (assignee_id))");
    }

    // Time to resolve of the tickets resolved in the window: nearest-rank
    // percentiles (percentile_disc), in seconds.
    union(&mut q, &mut first);
    q.push(format_args!(
        "select 'time_to_resolve', {NO_DAY}, {NO_TEXT}, {NO_TEXT}, {NO_UUID}, count(*), \
                percentile_disc(array[0.5, 0.9]) within group (order by date_part('epoch', resolve_time - create_time)), \
                {NO_TIMES} \
         from tickets where tenant_id = "
    ))
    .push_bind(tenant.0)
    .push(" and resolve_time >= ")
    .push_bind(window.start)
    .push(" and resolve_time < ")
    .push_bind(window.end);
    ticket_filters(&mut q, filter);

    // The backlog: every open ticket, by status, priority and assignee ...
    // (`status not in (...)` is spelled as in the partial index's predicate.)
    union(&mut q, &mut first);
    q.push(format_args!(
        "select 'open', {NO_DAY}, status, priority, assignee_id, count(*), {NO_SECONDS}, {NO_TIMES} \
         from tickets where tenant_id = "
    ))
    .push_bind(tenant.0)
    .push(" and status not in ('resolved', 'closed')");
    ticket_filters(&mut q, filter);
    q.push(" group by status, priority, assignee_id");

    // ... and its ages: ordering by create_time descending orders by age
    // ascending, so these are the create times at the age percentiles.
    union(&mut q, &mut first);
    q.push(format_args!(
        "select 'age', {NO_DAY}, {NO_TEXT}, {NO_TEXT}, {NO_UUID}, count(*), {NO_SECONDS}, \
                percentile_disc(array[0.5, 0.9, 0.99]) within group (order by create_time desc) \
         from tickets where tenant_id = "
    ))
    .push_bind(tenant.0)
    .push(" and status not in ('resolved', 'closed')");
    ticket_filters(&mut q, filter);

    let rows: Vec<FactRow> = q.build_query_as().fetch_all(conn).await?;
    fold(rows)
}

fn decode_err(what: &str, v: &str) -> sqlx::Error {
    sqlx::Error::Decode(format!("unexpected stats {what} `{v}`").into())
}

fn status(v: Option<String>) -> Result<Status, sqlx::Error> {
    let v = v.unwrap_or_default();
    Status::parse(&v).ok_or_else(|| decode_err("status", &v))
}

fn priority(v: Option<String>) -> Result<Priority, sqlx::Error> {
    let v = v.unwrap_or_default();
    Priority::parse(&v).ok_or_else(|| decode_err("priority", &v))
}

fn day(v: Option<Date>) -> Result<Date, sqlx::Error> {
    v.ok_or_else(|| decode_err("day", "null"))
}

/// Sorts the tagged rows into facts.
fn fold(rows: Vec<FactRow>) -> Result<StatsFacts, sqlx::Error> {
    let mut facts = StatsFacts::default();
    for r in rows {
        let n = r.n.unwrap_or(0);
        match r.kind.as_str() {
            "created" => facts.created.push(CreatedGroup {
                day: day(r.day)?,
                status: status(r.status)?,
                priority: priority(r.priority)?,
                n,
            }),
            "resolved_day" => facts.resolved_by_day.push((day(r.day)?, n)),
            "resolved_assignee" => facts.resolved_by_assignee.push((r.assignee_id, n)),
            "time_to_resolve" => {
                facts.time_to_resolve_seconds = match r.seconds.as_deref() {
                    Some([p50, p90]) if n > 0 => Some([*p50, *p90]),
                    None | Some(_) if n == 0 => None,
                    _ => return Err(decode_err("time to resolve", &format!("{:?}", r.seconds))),
                }
            }
            "open" => facts.open.push(OpenGroup {
                status: status(r.status)?,
                priority: priority(r.priority)?,
                assignee_id: r.assignee_id,
                n,
            }),
            "age" => {
                facts.backlog_age_create_times = match r.times.as_deref() {
                    Some([p50, p90, p99]) if n > 0 => Some([*p50, *p90, *p99]),
                    None | Some(_) if n == 0 => None,
                    _ => return Err(decode_err("backlog ages", &format!("{:?}", r.times))),
                }
            }
            other => return Err(decode_err("row kind", other)),
        }
    }
    Ok(facts)
}
