//! Stats types and rules: the query, its filters and its window. The
//! figures and their assembly are in `figures`. Knows neither tonic nor sqlx.

use serde::{Deserialize, Serialize};
use time::{Date, Duration, OffsetDateTime, Time};
use uuid::Uuid;

use crate::{
    error::FieldViolation,
    tickets::model::{Priority, Status, TAG_MAX_CHARS},
};

mod figures;
pub use figures::*;

/// The window when the request names no start: this long before its end.
pub const WINDOW_DEFAULT: Duration = Duration::days(30);
/// The longest window.
pub const WINDOW_MAX: Duration = Duration::days(366);
/// Top-assignee list length when the request says 0.
pub const TOP_ASSIGNEES_DEFAULT: u32 = 10;
/// Longest top-assignee list.
pub const TOP_ASSIGNEES_MAX: u32 = 100;

/// Every status, in enum order.
pub const STATUSES: [Status; 5] = [
    Status::Open,
    Status::InProgress,
    Status::Waiting,
    Status::Resolved,
    Status::Closed,
];
/// The open statuses: the backlog.
pub const OPEN_STATUSES: [Status; 3] = [Status::Open, Status::InProgress, Status::Waiting];
/// Every priority, in enum order.
pub const PRIORITIES: [Priority; 4] = [Priority::Low, Priority::Normal, Priority::High, Priority::Urgent];

/// Which tickets count: the filters combine with AND and compare the
/// ticket's current assignee, tags and priority.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct StatsFilter {
    /// Only tickets assigned to this user.
    pub assignee_id: Option<Uuid>,
    /// Only tickets carrying this (trimmed) tag.
    pub tag: Option<String>,
    /// Only tickets of this priority.
    pub priority: Option<Priority>,
}

impl StatsFilter {
    /// Whether the daily rollups can answer for this filter: they are kept
    /// per priority, but not per assignee or tag.
    pub fn rollups_apply(&self) -> bool {
        self.assignee_id.is_none() && self.tag.is_none()
    }
}

/// A GetTicketStats request, validated. The window is kept as requested
/// (unset bounds stay unset), so the same query means the same thing at
/// any time ("the last 30 days") and `cache_key` is stable; `window`
/// resolves it against a clock.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct TicketStatsQuery {
    /// Inclusive start, truncated to the microsecond; `None`: end − 30 days.
    #[serde(with = "time::serde::rfc3339::option")]
    pub start_time: Option<OffsetDateTime>,
    /// Exclusive end, truncated to the microsecond; `None`: now.
    #[serde(with = "time::serde::rfc3339::option")]
    pub end_time: Option<OffsetDateTime>,
    /// The filters.
    pub filter: StatsFilter,
    /// Length of each top-assignee list, 1 to 100.
    pub top_assignees_limit: u32,
}

/// PostgreSQL keeps microseconds: drop finer digits so a bound means what
/// the stored times can be compared with.
pub fn truncate_to_micros(t: OffsetDateTime) -> OffsetDateTime {
    t.replace_nanosecond(t.nanosecond() / 1000 * 1000).unwrap_or(t)
}

impl TicketStatsQuery {
    /// A query; the bounds are truncated to the microsecond.
    pub fn new(
        start_time: Option<OffsetDateTime>,
        end_time: Option<OffsetDateTime>,
        filter: StatsFilter,
        top_assignees_limit: u32,
    ) -> Self {
        Self {
            start_time: start_time.map(truncate_to_micros),
            end_time: end_time.map(truncate_to_micros),
            filter,
            top_assignees_limit: top_assignees_limit.clamp(1, TOP_ASSIGNEES_MAX),
        }
    }

    /// The window this query means at `now`: unset bounds filled in, then
    /// checked (start before end, at most 366 days).
    pub fn window(&self, now: OffsetDateTime) -> Result<Window, FieldViolation> {
        let end = self.end_time.unwrap_or_else(|| truncate_to_micros(now));
        let start = self.start_time.unwrap_or(end - WINDOW_DEFAULT);
        if start >= end {
            return Err(FieldViolation::new(
                "end_time",
                "INVALID_RANGE",
                if self.end_time.is_some() {
                    "end_time must be after start_time"
                } else {
                    "start_time must be in the past when end_time is unset (it defaults to now)"
                },
            ));
        }
        if end - start > WINDOW_MAX {
            return Err(FieldViolation::new(
                "start_time",
                "WINDOW_TOO_LONG",
                "the window must span at most 366 days",
            ));
        }
        Ok(Window { start, end })
    }

    /// The canonical text of the query, for a cache key. It does not name
    /// the tenant or the caller: a cache must add both.
    pub fn cache_key(&self) -> String {
        let micros = |t: Option<OffsetDateTime>| {
            t.map_or_else(|| "-".to_string(), |t| (t.unix_timestamp_nanos() / 1000).to_string())
        };
        // JSON-quoting makes any tag unambiguous.
        let tag = self
            .filter
            .tag
            .as_deref()
            .map_or_else(|| "-".to_string(), |t| serde_json::Value::from(t).to_string());
        format!(
            "ticket_stats/v1;start={};end={};assignee={};tag={};priority={};top={}",
            micros(self.start_time),
            micros(self.end_time),
            self.filter
                .assignee_id
                .map_or_else(|| "-".to_string(), |a| a.to_string()),
            tag,
            self.filter.priority.map_or("-", Priority::as_str),
            self.top_assignees_limit
        )
    }
}

/// Parses `top_assignees_limit`: 0 means the default, more than 100 means 100.
pub fn top_assignees_limit(raw: i32) -> Result<u32, FieldViolation> {
    match raw {
        0 => Ok(TOP_ASSIGNEES_DEFAULT),
        n if n < 0 => Err(FieldViolation::new(
            "top_assignees_limit",
            "INVALID_LIMIT",
            "top_assignees_limit must not be negative",
        )),
        n => Ok((n as u32).min(TOP_ASSIGNEES_MAX)),
    }
}

/// Parses the tag filter: trimmed; empty means none.
pub fn tag_filter(raw: &str) -> Result<Option<String>, FieldViolation> {
    let tag = raw.trim();
    if tag.chars().count() > TAG_MAX_CHARS {
        return Err(FieldViolation::new(
            "tag",
            "INVALID_TAG",
            format!("tags are at most {TAG_MAX_CHARS} characters"),
        ));
    }
    Ok((!tag.is_empty()).then(|| tag.to_string()))
}

/// A resolved window: [start, end), at most 366 days.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    /// Inclusive.
    pub start: OffsetDateTime,
    /// Exclusive.
    pub end: OffsetDateTime,
}

/// How a window splits into whole UTC days and the partial days at its edges.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DaySplit {
    /// Whole UTC days inside the window, `[first, last)`; `None` when there
    /// is none.
    pub whole_days: Option<(Date, Date)>,
    /// The parts of the window outside the whole days, as `[start, end)`
    /// ranges (none, one or two).
    pub partial: Vec<(OffsetDateTime, OffsetDateTime)>,
}

fn midnight(d: Date) -> OffsetDateTime {
    d.with_time(Time::MIDNIGHT).assume_utc()
}

impl Window {
    /// Every UTC day that overlaps the window, oldest first.
    pub fn days(&self) -> Vec<Date> {
        let first = self.start.to_offset(time::UtcOffset::UTC).date();
        // The day of the window's last microsecond.
        let last = (self.end - Duration::MICROSECOND)
            .to_offset(time::UtcOffset::UTC)
            .date();
        let mut out = Vec::new();
        let mut d = first;
        while d <= last {
            out.push(d);
            match d.next_day() {
                Some(n) => d = n,
                None => break,
            }
        }
        out
    }

    /// Splits the window into whole UTC days and the partial days around them.
    pub fn split_days(&self) -> DaySplit {
        let start_day = self.start.to_offset(time::UtcOffset::UTC).date();
        // The first midnight at or after start, and the last at or before end.
        let first = if midnight(start_day) == self.start {
            Some(start_day)
        } else {
            start_day.next_day()
        };
        let last = self.end.to_offset(time::UtcOffset::UTC).date();
        match first {
            Some(first) if first < last => {
                let mut partial = Vec::new();
                if self.start < midnight(first) {
                    partial.push((self.start, midnight(first)));
                }
                if midnight(last) < self.end {
                    partial.push((midnight(last), self.end));
                }
                DaySplit {
                    whole_days: Some((first, last)),
                    partial,
                }
            }
            _ => DaySplit {
                whole_days: None,
                partial: vec![(self.start, self.end)],
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use time::macros::{date, datetime};

    use super::*;

    fn query(start: Option<OffsetDateTime>, end: Option<OffsetDateTime>) -> TicketStatsQuery {
        TicketStatsQuery::new(start, end, StatsFilter::default(), TOP_ASSIGNEES_DEFAULT)
    }

    #[test]
    fn window_defaults_and_limits() {
        let now = datetime!(2026-11-28 12:00:00.123456789 UTC);
        let w = query(None, None).window(now).expect("default window");
        assert_eq!(w.end, datetime!(2026-11-28 12:00:00.123456 UTC), "truncated to µs");
        assert_eq!(w.end - w.start, Duration::days(30));

        let end = datetime!(2026-06-01 0:00 UTC);
        let w = query(None, Some(end)).window(now).expect("end only");
        assert_eq!(w.start, datetime!(2026-05-02 0:00 UTC));

        let start = datetime!(2026-11-01 0:00 UTC);
        let w = query(Some(start), None).window(now).expect("start only");
        assert_eq!((w.start, w.end), (start, datetime!(2026-11-28 12:00:00.123456 UTC)));

        let err = query(Some(end), Some(end)).window(now).expect_err("empty");
        assert_eq!((err.field.as_str(), err.reason), ("end_time", "INVALID_RANGE"));
        let err = query(Some(now + Duration::hours(1)), None)
            .window(now)
            .expect_err("start in the future, end defaulted");
        assert_eq!((err.field.as_str(), err.reason), ("end_time", "INVALID_RANGE"));

        assert!(query(Some(end - Duration::days(366)), Some(end)).window(now).is_ok());
        let err = query(Some(end - Duration::days(366) - Duration::MICROSECOND), Some(end))
            .window(now)
            .expect_err("too long");
        assert_eq!((err.field.as_str(), err.reason), ("start_time", "WINDOW_TOO_LONG"));
    }

    #[test]
    fn limits_and_tags() {
        assert_eq!(top_assignees_limit(0), Ok(10));
        assert_eq!(top_assignees_limit(7), Ok(7));
        assert_eq!(top_assignees_limit(1000), Ok(100));
        assert_eq!(top_assignees_limit(-1).map_err(|v| v.reason), Err("INVALID_LIMIT"));
        assert_eq!(tag_filter("  vpn "), Ok(Some("vpn".to_string())));
        assert_eq!(tag_filter("   "), Ok(None));
        assert_eq!(tag_filter(&"x".repeat(51)).map_err(|v| v.reason), Err("INVALID_TAG"));
    }

    #[test]
    fn days_and_split() {
        // Partial days at both ends.
        let w = Window {
            start: datetime!(2026-01-01 18:00 UTC),
            end: datetime!(2026-01-04 06:00 UTC),
        };
        assert_eq!(
            w.days(),
            vec![
                date!(2026 - 01 - 01),
                date!(2026 - 01 - 02),
                date!(2026 - 01 - 03),
                date!(2026 - 01 - 04)
            ]
        );
        assert_eq!(
            w.split_days(),
            DaySplit {
                whole_days: Some((date!(2026 - 01 - 02), date!(2026 - 01 - 04))),
                partial: vec![
                    (datetime!(2026-01-01 18:00 UTC), datetime!(2026-01-02 0:00 UTC)),
                    (datetime!(2026-01-04 0:00 UTC), datetime!(2026-01-04 06:00 UTC)),
                ],
            }
        );
        // Aligned to midnight: whole days only; the end day is not in the window.
        let w = Window {
            start: datetime!(2026-01-01 0:00 UTC),
            end: datetime!(2026-01-03 0:00 UTC),
        };
        assert_eq!(w.days(), vec![date!(2026 - 01 - 01), date!(2026 - 01 - 02)]);
        assert_eq!(
            w.split_days(),
            DaySplit {
                whole_days: Some((date!(2026 - 01 - 01), date!(2026 - 01 - 03))),
                partial: vec![],
            }
        );
        // No whole day: one partial range, even across midnight.
        let w = Window {
            start: datetime!(2026-01-01 12:00 UTC),
            end: datetime!(2026-01-02 12:00 UTC),
        };
        assert_eq!(w.days().len(), 2);
        assert_eq!(
            w.split_days(),
            DaySplit {
                whole_days: None,
                partial: vec![(w.start, w.end)],
            }
        );
        // A non-UTC offset on the bounds changes nothing.
        let w2 = Window {
            start: datetime!(2026-01-01 13:00 +01:00),
            end: datetime!(2026-01-02 13:00 +01:00),
        };
        assert_eq!(w2.days(), w.days());
    }

    #[test]
    fn cache_key_is_canonical() {
        let now = datetime!(2026-11-28 12:00 UTC);
        let a = TicketStatsQuery::new(
            Some(now + Duration::nanoseconds(1)),
            None,
            StatsFilter {
                tag: Some("a;b".into()),
                ..Default::default()
            },
            10,
        );
        let b = TicketStatsQuery::new(
            Some(now),
            None,
            StatsFilter {
                tag: Some("a;b".into()),
                ..Default::default()
            },
            10,
        );
        assert_eq!(a.cache_key(), b.cache_key(), "sub-microsecond digits do not matter");
        let c = TicketStatsQuery {
            top_assignees_limit: 11,
            ..b.clone()
        };
        assert_ne!(b.cache_key(), c.cache_key());
        let d = TicketStatsQuery {
            filter: StatsFilter {
                priority: Some(Priority::High),
                ..b.filter.clone()
            },
            ..b.clone()
        };
        assert_ne!(b.cache_key(), d.cache_key());
        assert!(b.cache_key().contains("tag=\"a;b\""), "{}", b.cache_key());
    }
}
