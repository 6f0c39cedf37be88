//! The figures GetTicketStats answers with, and their assembly from what the
//! store counted: sums, per-day rows with zeros, percentiles as durations,
//! and the top-assignee rankings.

use std::{collections::HashMap, time::Duration as StdDuration};

use serde::{Deserialize, Serialize};
use time::{Date, Duration, OffsetDateTime};
use uuid::Uuid;

use super::{OPEN_STATUSES, PRIORITIES, STATUSES, Window};
use crate::tickets::model::{Priority, Status};

/// Tickets created on one day, in one current status and priority.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CreatedGroup {
    /// UTC day of create_time.
    pub day: Date,
    /// Current status.
    pub status: Status,
    /// Current priority.
    pub priority: Priority,
    /// How many.
    pub n: i64,
}

/// Open tickets in one status, priority and assignee.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OpenGroup {
    /// Current status (open, in progress or waiting).
    pub status: Status,
    /// Current priority.
    pub priority: Priority,
    /// Current assignee.
    pub assignee_id: Option<Uuid>,
    /// How many.
    pub n: i64,
}

/// What the store counted for one query. Groups may repeat a key (the
/// rollups and the partial days report separately); assembly adds them up.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct StatsFacts {
    /// Tickets created in the window.
    pub created: Vec<CreatedGroup>,
    /// Tickets resolved in the window, by UTC day of resolve_time.
    pub resolved_by_day: Vec<(Date, i64)>,
    /// Tickets resolved in the window, by current assignee.
    pub resolved_by_assignee: Vec<(Option<Uuid>, i64)>,
    /// The backlog (currently open tickets), grouped.
    pub open: Vec<OpenGroup>,
    /// Time to resolve of the tickets resolved in the window, in seconds:
    /// the nearest-rank 50th and 90th percentiles (`None` when there are none).
    pub time_to_resolve_seconds: Option<[f64; 2]>,
    /// The create_time of the open tickets at the nearest-rank 50th, 90th
    /// and 99th percentiles of age (`None` when nothing is open).
    pub backlog_age_create_times: Option<[OffsetDateTime; 3]>,
}

/// A count per status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusCount {
    /// The status.
    pub status: Status,
    /// How many tickets.
    pub count: i64,
}

/// A count per priority.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PriorityCount {
    /// The priority.
    pub priority: Priority,
    /// How many tickets.
    pub count: i64,
}

/// The currently open tickets.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Backlog {
    /// How many.
    pub open_count: i64,
    /// How many without an assignee.
    pub unassigned_count: i64,
    /// By status: OPEN, IN_PROGRESS, WAITING.
    pub by_status: Vec<StatusCount>,
    /// By priority, every priority.
    pub by_priority: Vec<PriorityCount>,
    /// Age percentiles (nearest-rank).
    pub age_p50: Option<StdDuration>,
    /// 90th.
    pub age_p90: Option<StdDuration>,
    /// 99th.
    pub age_p99: Option<StdDuration>,
}

/// The tickets resolved in the window.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Resolution {
    /// How many.
    pub resolved_count: i64,
    /// Time to resolve, 50th percentile (nearest-rank).
    pub time_to_resolve_p50: Option<StdDuration>,
    /// 90th.
    pub time_to_resolve_p90: Option<StdDuration>,
}

/// One assignee's counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct AssigneeStats {
    /// The user.
    pub assignee_id: Uuid,
    /// Open tickets assigned to them.
    pub open_count: i64,
    /// Tickets resolved in the window assigned to them.
    pub resolved_count: i64,
}

/// One UTC day's counts within the window.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct DailyCount {
    /// The day.
    pub date: Date,
    /// Created that day.
    pub created_count: i64,
    /// Resolved that day.
    pub resolved_count: i64,
}

/// The answer to GetTicketStats (see stats.proto for each figure).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TicketStats {
    /// Window start.
    #[serde(with = "time::serde::rfc3339")]
    pub start_time: OffsetDateTime,
    /// Window end.
    #[serde(with = "time::serde::rfc3339")]
    pub end_time: OffsetDateTime,
    /// The "now" the figures describe.
    #[serde(with = "time::serde::rfc3339")]
    pub compute_time: OffsetDateTime,
    /// Created in the window.
    pub created_count: i64,
    /// Created in the window, by current status (every status).
    pub created_by_status: Vec<StatusCount>,
    /// Created in the window, by current priority (every priority).
    pub created_by_priority: Vec<PriorityCount>,
    /// Currently open.
    pub backlog: Backlog,
    /// Resolved in the window.
    pub resolution: Resolution,
    /// Most open tickets first.
    pub top_assignees_by_open: Vec<AssigneeStats>,
    /// Most resolved tickets first.
    pub top_assignees_by_resolved: Vec<AssigneeStats>,
    /// Every day of the window.
    pub daily_counts: Vec<DailyCount>,
}

/// A non-negative std duration from a signed one (negative: clock skew).
fn non_negative(d: Duration) -> StdDuration {
    StdDuration::try_from(d).unwrap_or(StdDuration::ZERO)
}

/// Seconds (a float from PostgreSQL) to a duration, exact to the
/// microsecond: a double holds every microsecond count below 2^53.
fn from_seconds(s: f64) -> StdDuration {
    let micros = (s * 1e6).round();
    if micros.is_finite() && micros > 0.0 {
        StdDuration::from_micros(micros as u64)
    } else {
        StdDuration::ZERO
    }
}

/// The `limit` assignees with the highest count (open or resolved), ties
/// by id; zeros left out.
fn top(open: &HashMap<Uuid, i64>, resolved: &HashMap<Uuid, i64>, by_open: bool, limit: u32) -> Vec<AssigneeStats> {
    let primary = if by_open { open } else { resolved };
    let mut ranked: Vec<(Uuid, i64)> = primary
        .iter()
        .filter(|(_, n)| **n > 0)
        .map(|(id, n)| (*id, *n))
        .collect();
    ranked.sort_unstable_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    ranked
        .into_iter()
        .take(limit as usize)
        .map(|(id, _)| AssigneeStats {
            assignee_id: id,
            open_count: open.get(&id).copied().unwrap_or(0),
            resolved_count: resolved.get(&id).copied().unwrap_or(0),
        })
        .collect()
}

impl TicketStats {
    /// The figures of `window` at `now` from what the store counted.
    pub fn assemble(window: Window, now: OffsetDateTime, facts: StatsFacts, top_assignees_limit: u32) -> Self {
        let StatsFacts {
            created,
            resolved_by_day,
            resolved_by_assignee,
            open,
            time_to_resolve_seconds,
            backlog_age_create_times,
        } = facts;

        let mut by_status: HashMap<Status, i64> = HashMap::new();
        let mut by_priority: HashMap<Priority, i64> = HashMap::new();
        let mut created_per_day: HashMap<Date, i64> = HashMap::new();
        for g in &created {
            *by_status.entry(g.status).or_default() += g.n;
            *by_priority.entry(g.priority).or_default() += g.n;
            *created_per_day.entry(g.day).or_default() += g.n;
        }
        let mut resolved_per_day: HashMap<Date, i64> = HashMap::new();
        for (day, n) in resolved_by_day {
            *resolved_per_day.entry(day).or_default() += n;
        }
        let mut resolved_per_assignee: HashMap<Uuid, i64> = HashMap::new();
        for (assignee, n) in resolved_by_assignee {
            if let Some(a) = assignee {
                *resolved_per_assignee.entry(a).or_default() += n;
            }
        }

        let mut open_by_status: HashMap<Status, i64> = HashMap::new();
        let mut open_by_priority: HashMap<Priority, i64> = HashMap::new();
        let mut open_per_assignee: HashMap<Uuid, i64> = HashMap::new();
        let mut unassigned = 0;
        for g in &open {
            *open_by_status.entry(g.status).or_default() += g.n;
            *open_by_priority.entry(g.priority).or_default() += g.n;
            match g.assignee_id {
                Some(a) => *open_per_assignee.entry(a).or_default() += g.n,
                None => unassigned += g.n,
            }
        }

        let daily_counts: Vec<DailyCount> = window
            .days()
            .into_iter()
            .map(|date| DailyCount {
                date,
                created_count: created_per_day.get(&date).copied().unwrap_or(0),
                resolved_count: resolved_per_day.get(&date).copied().unwrap_or(0),
            })
            .collect();
        let ages = backlog_age_create_times.map(|ts| ts.map(|t| non_negative(now - t)));
        let ttr = time_to_resolve_seconds.map(|s| s.map(from_seconds));
        let status_counts = |statuses: &[Status], counts: &HashMap<Status, i64>| {
            statuses
                .iter()
                .map(|s| StatusCount {
                    status: *s,
                    count: counts.get(s).copied().unwrap_or(0),
                })
                .collect()
        };
        let priority_counts = |counts: &HashMap<Priority, i64>| {
            PRIORITIES
                .iter()
                .map(|p| PriorityCount {
                    priority: *p,
                    count: counts.get(p).copied().unwrap_or(0),
                })
                .collect()
        };

        TicketStats {
            start_time: window.start,
            end_time: window.end,
            compute_time: now,
            created_count: created.iter().map(|g| g.n).sum(),
            created_by_status: status_counts(&STATUSES, &by_status),
            created_by_priority: priority_counts(&by_priority),
            backlog: Backlog {
                open_count: open.iter().map(|g| g.n).sum(),
                unassigned_count: unassigned,
                by_status: status_counts(&OPEN_STATUSES, &open_by_status),
                by_priority: priority_counts(&open_by_priority),
                age_p50: ages.map(|a| a[0]),
                age_p90: ages.map(|a| a[1]),
                age_p99: ages.map(|a| a[2]),
            },
            resolution: Resolution {
                resolved_count: resolved_per_day.values().sum(),
                time_to_resolve_p50: ttr.map(|t| t[0]),
                time_to_resolve_p90: ttr.map(|t| t[1]),
            },
            top_assignees_by_open: top(&open_per_assignee, &resolved_per_assignee, true, top_assignees_limit),
            top_assignees_by_resolved: top(&open_per_assignee, &resolved_per_assignee, false, top_assignees_limit),
            daily_counts,
        }
    }
}

#[cfg(test)]
mod tests {
    use time::macros::{date, datetime};

    use super::*;

    #[test]
    fn assemble_adds_up_ranks_and_fills_days() {
        let (a, b, c) = (Uuid::from_u128(1), Uuid::from_u128(2), Uuid::from_u128(3));
        let window = Window {
            start: datetime!(2026-01-01 12:00 UTC),
            end: datetime!(2026-01-04 12:00 UTC),
        };
        let now = datetime!(2026-01-10 0:00 UTC);
        let d1 = date!(2026 - 01 - 01);
        let d3 = date!(2026 - 01 - 03);
        let facts = StatsFacts {
            created: vec![
                CreatedGroup {
                    day: d1,
                    status: Status::Open,
                    priority: Priority::High,
                    n: 2,
                },
                // The same key again (rollup and partial day): added.
                CreatedGroup {
                    day: d1,
                    status: Status::Open,
                    priority: Priority::High,
                    n: 1,
                },
                CreatedGroup {
                    day: d3,
                    status: Status::Closed,
                    priority: Priority::Low,
                    n: 4,
                },
            ],
            resolved_by_day: vec![(d3, 3), (d3, 1)],
            resolved_by_assignee: vec![(Some(a), 1), (Some(b), 2), (None, 1)],
            open: vec![
                OpenGroup {
                    status: Status::Open,
                    priority: Priority::High,
                    assignee_id: Some(c),
                    n: 2,
                },
                OpenGroup {
                    status: Status::Waiting,
                    priority: Priority::Urgent,
                    assignee_id: Some(a),
                    n: 2,
                },
                OpenGroup {
                    status: Status::Open,
                    priority: Priority::Normal,
                    assignee_id: None,
                    n: 5,
                },
            ],
            time_to_resolve_seconds: Some([1.5, 3600.000001]),
            backlog_age_create_times: Some([
                datetime!(2026-01-09 0:00 UTC),
                datetime!(2026-01-01 0:00 UTC),
                datetime!(2026-01-11 0:00 UTC),
            ]),
        };
        let s = TicketStats::assemble(window, now, facts, 2);
        assert_eq!(s.created_count, 7);
        let status = |st: Status| s.created_by_status.iter().find(|c| c.status == st).map(|c| c.count);
        assert_eq!(status(Status::Open), Some(3));
        assert_eq!(status(Status::Closed), Some(4));
        assert_eq!(status(Status::Waiting), Some(0));
        assert_eq!(s.created_by_status.len(), 5);
        assert_eq!(s.created_by_priority.len(), 4);
        assert_eq!(
            s.daily_counts
                .iter()
                .map(|d| (d.created_count, d.resolved_count))
                .collect::<Vec<_>>(),
            vec![(3, 0), (0, 0), (4, 4), (0, 0)]
        );
        assert_eq!(s.resolution.resolved_count, 4);
        assert_eq!(
            s.resolution.time_to_resolve_p50,
            Some(StdDuration::from_micros(1_500_000))
        );
        assert_eq!(
            s.resolution.time_to_resolve_p90,
            Some(StdDuration::from_micros(3_600_000_001))
        );
        assert_eq!(s.backlog.open_count, 9);
        assert_eq!(s.backlog.unassigned_count, 5);
        assert_eq!(
            s.backlog.by_status.iter().map(|c| c.count).collect::<Vec<_>>(),
            vec![7, 0, 2]
        );
        assert_eq!(s.backlog.age_p50, Some(StdDuration::from_secs(86_400)));
        assert_eq!(
            s.backlog.age_p99,
            Some(StdDuration::ZERO),
            "a future create_time is age 0"
        );
        // By open: a and c tie at 2, a's id is smaller.
        assert_eq!(
            s.top_assignees_by_open,
            vec![
                AssigneeStats {
                    assignee_id: a,
                    open_count: 2,
                    resolved_count: 1
                },
                AssigneeStats {
                    assignee_id: c,
                    open_count: 2,
                    resolved_count: 0
                },
            ]
        );
        assert_eq!(
            s.top_assignees_by_resolved
                .iter()
                .map(|x| x.assignee_id)
                .collect::<Vec<_>>(),
            vec![b, a]
        );
        // Cacheable as JSON.
        let json = serde_json::to_string(&s).expect("serialize");
        let back: TicketStats = serde_json::from_str(&json).expect("deserialize");
        assert_eq!(back, s);
    }
}
