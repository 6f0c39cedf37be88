//! The `deskd.stats.v1.StatsService` handlers: decode and validate, call the
//! service once, encode (the authorize layer checks `stats:read`). Proto
//! messages are destructured without `..`, so a new field fails the build
//! until it is handled here.

use std::{sync::Arc, time::Duration};

use time::OffsetDateTime;
use tonic::{Request, Response, Status};

use super::{
    model::{
        AssigneeStats, Backlog, DailyCount, PriorityCount, Resolution, StatsFilter, StatusCount, TicketStats,
        TicketStatsQuery, tag_filter, top_assignees_limit,
    },
    service::StatsService,
};
use crate::{
    error::AppError,
    grpc_util::{Violations, context, from_timestamp, parse_optional_uuid, to_timestamp, with_cache_status},
    proto::stats::v1::{self as pb, GetTicketStatsRequest, GetTicketStatsResponse, stats_service_server},
    tickets::grpc::{priority_from_proto, priority_to_proto, status_to_proto},
};

/// The gRPC face of `StatsService`.
#[derive(Clone)]
pub struct StatsGrpc {
    svc: Arc<StatsService>,
}

impl StatsGrpc {
    /// Wraps the service.
    pub fn new(svc: StatsService) -> Self {
        Self { svc: Arc::new(svc) }
    }

    /// The tonic server for this service.
    pub fn into_server(self, cfg: &crate::config::ServerConfig) -> stats_service_server::StatsServiceServer<Self> {
        crate::grpc_util::configure_codec!(stats_service_server::StatsServiceServer::new(self), cfg)
    }
}

/// Wire → query, with every violation at once. `now` resolves the default
/// window so that an impossible one is refused before any database work.
pub fn validate(r: GetTicketStatsRequest, now: OffsetDateTime) -> Result<TicketStatsQuery, AppError> {
    let GetTicketStatsRequest {
        start_time,
        end_time,
        assignee_id,
        tag,
        priority,
        top_assignees_limit: limit,
    } = r;
    let mut v = Violations::default();
    let start = v.check(start_time.map(|t| from_timestamp("start_time", t)).transpose());
    let end = v.check(end_time.map(|t| from_timestamp("end_time", t)).transpose());
    let assignee_id = v.check(parse_optional_uuid("assignee_id", &assignee_id));
    let tag = v.check(tag_filter(&tag));
    let priority = v.check(priority_from_proto("priority", priority));
    let limit = v.check(top_assignees_limit(limit));
    // The window is checked as soon as both bounds parse, whatever else is wrong.
    if let (Some(start), Some(end)) = (start, end) {
        v.check(TicketStatsQuery::new(start, end, StatsFilter::default(), 1).window(now));
    }
    let query = match (start, end, assignee_id, tag, priority, limit) {
        (Some(start), Some(end), Some(assignee_id), Some(tag), Some(priority), Some(limit)) => {
            Some(TicketStatsQuery::new(
                start,
                end,
                StatsFilter {
                    assignee_id,
                    tag,
                    priority,
                },
                limit,
            ))
        }
        _ => None,
    };
    v.finish()?;
    query.ok_or_else(|| AppError::internal(anyhow::anyhow!("validation passed without a query")))
}

fn duration(d: Duration) -> prost_types::Duration {
    prost_types::Duration {
        seconds: d.as_secs().min(i64::MAX as u64) as i64,
        nanos: d.subsec_nanos() as i32,
    }
}

fn status_count(c: StatusCount) -> pb::StatusCount {
    let StatusCount { status, count } = c;
    pb::StatusCount {
        status: status_to_proto(status) as i32,
        count,
    }
}

fn priority_count(c: PriorityCount) -> pb::PriorityCount {
    let PriorityCount { priority, count } = c;
    pb::PriorityCount {
        priority: priority_to_proto(priority) as i32,
        count,
    }
}

fn assignee(a: AssigneeStats) -> pb::AssigneeStats {
    let AssigneeStats {
        assignee_id,
        open_count,
        resolved_count,
    } = a;
    pb::AssigneeStats {
        assignee_id: assignee_id.to_string(),
        open_count,
        resolved_count,
    }
}

fn daily(d: DailyCount) -> pb::DailyCount {
    let DailyCount {
        date,
        created_count,
        resolved_count,
    } = d;
    pb::DailyCount {
        // ISO 8601 calendar date; years outside 1..=9999 cannot occur
        // (timestamps are refused outside that range).
        date: format!("{:04}-{:02}-{:02}", date.year(), u8::from(date.month()), date.day()),
        created_count,
        resolved_count,
    }
}

/// Model → wire.
pub fn to_proto(s: TicketStats) -> GetTicketStatsResponse {
    let TicketStats {
        start_time,
        end_time,
        compute_time,
        created_count,
        created_by_status,
        created_by_priority,
        backlog,
        resolution,
        top_assignees_by_open,
        top_assignees_by_resolved,
        daily_counts,
    } = s;
    let Backlog {
        open_count,
        unassigned_count,
        by_status,
        by_priority,
        age_p50,
        age_p90,
        age_p99,
    } = backlog;
    let Resolution {
        resolved_count,
        time_to_resolve_p50,
        time_to_resolve_p90,
    } = resolution;
    GetTicketStatsResponse {
        start_time: Some(to_timestamp(start_time)),
        end_time: Some(to_timestamp(end_time)),
        compute_time: Some(to_timestamp(compute_time)),
        created_count,
        created_by_status: created_by_status.into_iter().map(status_count).collect(),
        created_by_priority: created_by_priority.into_iter().map(priority_count).collect(),
        backlog: Some(pb::Backlog {
            open_count,
            unassigned_count,
            by_status: by_status.into_iter().map(status_count).collect(),
            by_priority: by_priority.into_iter().map(priority_count).collect(),
            age_p50: age_p50.map(duration),
            age_p90: age_p90.map(duration),
            age_p99: age_p99.map(duration),
        }),
        resolution: Some(pb::Resolution {
            resolved_count,
            time_to_resolve_p50: time_to_resolve_p50.map(duration),
            time_to_resolve_p90: time_to_resolve_p90.map(duration),
        }),
        top_assignees_by_open: top_assignees_by_open.into_iter().map(assignee).collect(),
        top_assignees_by_resolved: top_assignees_by_resolved.into_iter().map(assignee).collect(),
        daily_counts: daily_counts.into_iter().map(daily).collect(),
    }
}

#[tonic::async_trait]
impl stats_service_server::StatsService for StatsGrpc {
    async fn get_ticket_stats(
        &self,
        req: Request<GetTicketStatsRequest>,
    ) -> Result<Response<GetTicketStatsResponse>, Status> {
        let (ctx, rid) = context(&req)?;
        let r = req.into_inner();
        let answer = async {
            let query = validate(r, OffsetDateTime::now_utc())?;
            self.svc.get_ticket_stats_cached(&ctx, &query).await
        }
        .await;
        let (stats, status) = answer.map_err(|e| e.into_status(&rid))?;
        let mut res = Response::new(to_proto(stats));
        with_cache_status(&mut res, status);
        Ok(res)
    }
}
