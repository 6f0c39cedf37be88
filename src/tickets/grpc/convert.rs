//! TicketsService's wire ↔ domain conversion and request validation: every
//! violation names the request's field path. Public for the Stats service
//! and the fuzz targets in `fuzz/`.

use uuid::Uuid;

use super::super::{
    export::{ExportFormat, ExportTickets},
    model::{
        self, Field, ListFilter, NewTicket, Priority, Status as TicketStatus, Ticket, TicketPatch, parse_id,
        parse_optional_id, validate_description, validate_tags, validate_title,
    },
};
use crate::{
    error::{AppError, FieldViolation},
    grpc_util::{Violations, bad_mask_path, from_timestamp, mask_paths, to_timestamp},
    proto::tickets::v1::{self as pb, ExportTicketsRequest, ListTicketsRequest},
};

/// Model → wire (also used by the Stats service).
pub fn status_to_proto(s: TicketStatus) -> pb::TicketStatus {
    match s {
        TicketStatus::Open => pb::TicketStatus::Open,
        TicketStatus::InProgress => pb::TicketStatus::InProgress,
        TicketStatus::Waiting => pb::TicketStatus::Waiting,
        TicketStatus::Resolved => pb::TicketStatus::Resolved,
        TicketStatus::Closed => pb::TicketStatus::Closed,
    }
}

/// Model → wire (also used by the Stats service).
pub fn priority_to_proto(p: Priority) -> pb::TicketPriority {
    match p {
        Priority::Low => pb::TicketPriority::Low,
        Priority::Normal => pb::TicketPriority::Normal,
        Priority::High => pb::TicketPriority::High,
        Priority::Urgent => pb::TicketPriority::Urgent,
    }
}

/// A status from the wire: `Ok(None)` for UNSPECIFIED.
fn status_from_proto(field: &str, v: i32) -> Result<Option<TicketStatus>, FieldViolation> {
    match pb::TicketStatus::try_from(v) {
        Ok(pb::TicketStatus::Unspecified) => Ok(None),
        Ok(pb::TicketStatus::Open) => Ok(Some(TicketStatus::Open)),
        Ok(pb::TicketStatus::InProgress) => Ok(Some(TicketStatus::InProgress)),
        Ok(pb::TicketStatus::Waiting) => Ok(Some(TicketStatus::Waiting)),
        Ok(pb::TicketStatus::Resolved) => Ok(Some(TicketStatus::Resolved)),
        Ok(pb::TicketStatus::Closed) => Ok(Some(TicketStatus::Closed)),
        Err(_) => Err(FieldViolation::new(
            field,
            "INVALID_ENUM_VALUE",
            format!("unknown status {v}"),
        )),
    }
}

/// A priority from the wire: `Ok(None)` for UNSPECIFIED (also used by the
/// Stats service).
pub fn priority_from_proto(field: &str, v: i32) -> Result<Option<Priority>, FieldViolation> {
    match pb::TicketPriority::try_from(v) {
        Ok(pb::TicketPriority::Unspecified) => Ok(None),
        Ok(pb::TicketPriority::Low) => Ok(Some(Priority::Low)),
        Ok(pb::TicketPriority::Normal) => Ok(Some(Priority::Normal)),
        Ok(pb::TicketPriority::High) => Ok(Some(Priority::High)),
        Ok(pb::TicketPriority::Urgent) => Ok(Some(Priority::Urgent)),
        Err(_) => Err(FieldViolation::new(
            field,
            "INVALID_ENUM_VALUE",
            format!("unknown priority {v}"),
        )),
    }
}

/// Model → wire.
pub fn to_proto(t: Ticket) -> pb::Ticket {
    let etag = t.etag();
    let Ticket {
        id,
        title,
        description,
        status,
        priority,
        assignee_id,
        reporter_id,
        tags,
        create_time,
        update_time,
        resolve_time,
        version: _,
    } = t;
    pb::Ticket {
        id: id.to_string(),
        title,
        description,
        status: status_to_proto(status) as i32,
        priority: priority_to_proto(priority) as i32,
        assignee_id: assignee_id.map(|a| a.to_string()).unwrap_or_default(),
        reporter_id: reporter_id.to_string(),
        tags,
        create_time: Some(to_timestamp(create_time)),
        update_time: Some(to_timestamp(update_time)),
        resolve_time: resolve_time.map(to_timestamp),
        etag,
    }
}

/// Request → domain (public for the fuzz targets in `fuzz/`).
#[doc(hidden)]
pub fn validate_create(ticket: Option<pb::Ticket>, request_id: &str) -> Result<(NewTicket, Option<Uuid>), AppError> {
    let Some(ticket) = ticket else {
        return Err(AppError::invalid("ticket", "REQUIRED", "the ticket is required"));
    };
    // Output-only fields are ignored on create (AIP-133).
    let pb::Ticket {
        id: _,
        title,
        description,
        status,
        priority,
        assignee_id,
        reporter_id: _,
        tags,
        create_time: _,
        update_time: _,
        resolve_time: _,
        etag: _,
    } = ticket;
    let mut v = Violations::default();
    let title = v.check(validate_title("ticket.title", &title));
    let description = v.check(validate_description("ticket.description", &description));
    let status = v.check(status_from_proto("ticket.status", status));
    let priority = v.check(priority_from_proto("ticket.priority", priority));
    let assignee_id = v.check(parse_optional_id("ticket.assignee_id", &assignee_id));
    let tags = v.check_many(validate_tags("ticket.tags", &tags));
    let request_id = v.check(parse_optional_id("request_id", request_id));
    v.finish()?;
    match (title, description, status, priority, assignee_id, tags, request_id) {
        (Some(title), Some(description), Some(status), Some(priority), Some(assignee_id), Some(tags), Some(rid)) => {
            Ok((
                NewTicket {
                    title,
                    description,
                    status: status.unwrap_or(TicketStatus::Open),
                    priority: priority.unwrap_or(Priority::Normal),
                    assignee_id,
                    tags,
                },
                rid,
            ))
        }
        _ => Err(AppError::internal(anyhow::anyhow!("validation passed without values"))),
    }
}

/// Request → domain (public for the fuzz targets in `fuzz/`).
#[doc(hidden)]
pub fn validate_update(
    ticket: Option<pb::Ticket>,
    mask: Option<prost_types::FieldMask>,
) -> Result<(Uuid, Option<String>, TicketPatch), AppError> {
    let Some(ticket) = ticket else {
        return Err(AppError::invalid("ticket", "REQUIRED", "the ticket is required"));
    };
    let pb::Ticket {
        id,
        title,
        description,
        status,
        priority,
        assignee_id,
        reporter_id: _,
        tags,
        create_time: _,
        update_time: _,
        resolve_time: _,
        etag,
    } = ticket;
    let mut v = Violations::default();
    let id = v.check(parse_id("ticket.id", &id));
    let paths = mask_paths(mask, &mut v);
    let mut patch = TicketPatch::default();
    for (i, path) in paths.iter().enumerate() {
        let Some(field) = Field::parse(path) else {
            v.0.push(bad_mask_path(
                i,
                path,
                &[
                    "id",
                    "reporter_id",
                    "create_time",
                    "update_time",
                    "resolve_time",
                    "etag",
                ],
            ));
            continue;
        };
        match field {
            Field::Title => patch.title = v.check(validate_title("ticket.title", &title)),
            Field::Description => patch.description = v.check(validate_description("ticket.description", &description)),
            Field::Status => {
                patch.status = match v.check(status_from_proto("ticket.status", status)) {
                    Some(Some(s)) => Some(s),
                    Some(None) => {
                        v.0.push(FieldViolation::new(
                            "ticket.status",
                            "REQUIRED",
                            "a status must be given when masked",
                        ));
                        None
                    }
                    None => None,
                }
            }
            Field::Priority => {
                patch.priority = match v.check(priority_from_proto("ticket.priority", priority)) {
                    Some(Some(p)) => Some(p),
                    Some(None) => {
                        v.0.push(FieldViolation::new(
                            "ticket.priority",
                            "REQUIRED",
                            "a priority must be given when masked",
                        ));
                        None
                    }
                    None => None,
                }
            }
            Field::AssigneeId => patch.assignee_id = v.check(parse_optional_id("ticket.assignee_id", &assignee_id)),
            Field::Tags => patch.tags = v.check_many(validate_tags("ticket.tags", &tags)),
        }
    }
    v.finish()?;
    let id = id.ok_or_else(|| AppError::internal(anyhow::anyhow!("validation passed without an id")))?;
    Ok((id, (!etag.is_empty()).then_some(etag), patch))
}

/// Request → domain (public for the fuzz targets in `fuzz/`).
#[doc(hidden)]
pub fn validate_list(r: ListTicketsRequest) -> Result<(ListFilter, u32, String), AppError> {
    let ListTicketsRequest {
        page_size,
        page_token,
        assignee_id,
        statuses,
        priority,
        tag,
        create_time_start,
        create_time_end,
        order_by,
    } = r;
    let mut v = Violations::default();
    let size = v.check(model::page_size(page_size));
    let assignee_id = v.check(parse_optional_id("assignee_id", &assignee_id)).flatten();
    let mut parsed_statuses = Vec::new();
    if statuses.len() > model::STATUSES_FILTER_MAX {
        v.0.push(FieldViolation::new(
            "statuses",
            "TOO_MANY",
            format!("at most {} statuses", model::STATUSES_FILTER_MAX),
        ));
    }
    for (i, s) in statuses.iter().take(model::STATUSES_FILTER_MAX).enumerate() {
        match v.check(status_from_proto(&format!("statuses[{i}]"), *s)) {
            Some(Some(s)) => parsed_statuses.push(s),
            Some(None) => v.0.push(FieldViolation::new(
                format!("statuses[{i}]"),
                "INVALID_ENUM_VALUE",
                "TICKET_STATUS_UNSPECIFIED is not a filter value",
            )),
            None => {}
        }
    }
    let priority = v.check(priority_from_proto("priority", priority)).flatten();
    let tag = tag.trim().to_string();
    if tag.chars().count() > model::TAG_MAX_CHARS {
        v.0.push(FieldViolation::new(
            "tag",
            "INVALID_TAG",
            "tags are at most 50 characters",
        ));
    }
    let start = v.check(
        create_time_start
            .map(|t| from_timestamp("create_time_start", t))
            .transpose(),
    );
    let end = v.check(
        create_time_end
            .map(|t| from_timestamp("create_time_end", t))
            .transpose(),
    );
    if let (Some(Some(s)), Some(Some(e))) = (start, end)
        && s >= e
    {
        v.0.push(FieldViolation::new(
            "create_time_end",
            "INVALID_RANGE",
            "create_time_end must be after create_time_start",
        ));
    }
    let order = v.check(model::parse_order_by(&order_by));
    v.finish()?;
    parsed_statuses.sort_unstable();
    parsed_statuses.dedup();
    Ok((
        ListFilter {
            assignee_id,
            statuses: parsed_statuses,
            priority,
            tag: (!tag.is_empty()).then_some(tag),
            create_time_start: start.flatten(),
            create_time_end: end.flatten(),
            order: order.unwrap_or_default(),
        },
        size.unwrap_or(model::PAGE_SIZE_DEFAULT),
        page_token,
    ))
}

/// Validates ExportTickets: the filters exactly as ListTickets checks them
/// (same field paths), plus a required format. Public for the fuzz
/// targets in `fuzz/`.
#[doc(hidden)]
pub fn validate_export(r: ExportTicketsRequest) -> Result<ExportTickets, AppError> {
    let ExportTicketsRequest {
        assignee_id,
        statuses,
        priority,
        tag,
        create_time_start,
        create_time_end,
        format,
    } = r;
    let format = match pb::ExportFormat::try_from(format) {
        Ok(pb::ExportFormat::Csv) => Ok(ExportFormat::Csv),
        Ok(pb::ExportFormat::Jsonl) => Ok(ExportFormat::Jsonl),
        Ok(pb::ExportFormat::Unspecified) => Err(FieldViolation::new(
            "format",
            "EXPORT_FORMAT_REQUIRED",
            "choose EXPORT_FORMAT_CSV or EXPORT_FORMAT_JSONL",
        )),
        Err(_) => Err(FieldViolation::new(
            "format",
            "INVALID_ENUM_VALUE",
            format!("unknown format {format}"),
        )),
    };
    let listed = validate_list(ListTicketsRequest {
        page_size: 0,
        page_token: String::new(),
        assignee_id,
        statuses,
        priority,
        tag,
        create_time_start,
        create_time_end,
        order_by: String::new(),
    });
    let (filter, format) = match (listed, format) {
        (Ok((filter, _, _)), Ok(format)) => (filter, format),
        (Err(AppError::InvalidArgument(mut v)), Err(f)) => {
            v.push(f);
            return Err(AppError::InvalidArgument(v));
        }
        (Err(e), _) => return Err(e),
        (Ok(_), Err(f)) => return Err(AppError::InvalidArgument(vec![f])),
    };
    let ListFilter {
        assignee_id,
        statuses,
        priority,
        tag,
        create_time_start,
        create_time_end,
        order: _,
    } = filter;
    Ok(ExportTickets {
        operation_id: Uuid::nil(),
        format,
        assignee_id,
        statuses,
        priority,
        tag,
        create_time_start,
        create_time_end,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Found by the `tickets_request` fuzz target: 1,500 invalid statuses in
    /// a 3 KB ExportTickets request became 1,500 violations (a 128 KiB
    /// vector, ~150 KB in all): 50 bytes of memory, and of error details,
    /// per byte received.
    #[test]
    fn a_long_statuses_filter_is_one_violation() {
        let list = |statuses: Vec<i32>| {
            validate_list(ListTicketsRequest {
                statuses,
                ..Default::default()
            })
        };
        let Err(AppError::InvalidArgument(v)) = list(vec![67; 1500]) else {
            panic!("accepted")
        };
        assert_eq!(v.len(), 1 + model::STATUSES_FILTER_MAX);
        assert_eq!((v[0].field.as_str(), v[0].reason), ("statuses", "TOO_MANY"));
        // Up to the limit, repeats are still accepted and de-duplicated.
        let (filter, _, _) = list(vec![1; model::STATUSES_FILTER_MAX]).expect("valid");
        assert_eq!(filter.statuses, vec![TicketStatus::Open]);
        let Err(AppError::InvalidArgument(v)) = list(vec![1; model::STATUSES_FILTER_MAX + 1]) else {
            panic!("accepted")
        };
        assert_eq!(v.len(), 1);
    }
}
