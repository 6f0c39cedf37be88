//! Ticket types and rules. Knows neither tonic nor sqlx.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::{error::FieldViolation, tenancy::UserId};

/// The resource type named in errors.
pub const RESOURCE_TYPE: &str = "deskd.tickets.v1.Ticket";

/// Limits from the contract.
pub const TITLE_MAX_CHARS: usize = 200;
/// Description limit in bytes of UTF-8.
pub const DESCRIPTION_MAX_BYTES: usize = 64 * 1024;
/// Most tags per ticket.
pub const TAGS_MAX: usize = 20;
/// Most entries a request's tag list may have, repeats included: a longer
/// list is refused with one violation instead of one per entry.
pub const TAG_ENTRIES_MAX: usize = 2 * TAGS_MAX;
/// Longest tag, in characters.
pub const TAG_MAX_CHARS: usize = 50;
/// Most values in a listing's `statuses` filter (there are five statuses;
/// repeats are tolerated up to this): a larger list is refused with one
/// violation instead of one per value, so a request cannot make the server
/// build a violation per two bytes it sent.
pub const STATUSES_FILTER_MAX: usize = 32;
/// Default page size.
pub const PAGE_SIZE_DEFAULT: u32 = 50;
/// Largest page size.
pub const PAGE_SIZE_MAX: u32 = 500;

/// Where a ticket is in its workflow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// New.
    Open,
    /// Being worked on.
    InProgress,
    /// Waiting for someone else.
    Waiting,
    /// Solved.
    Resolved,
    /// Finished.
    Closed,
}

impl Status {
    /// The stored spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Open => "open",
            Status::InProgress => "in_progress",
            Status::Waiting => "waiting",
            Status::Resolved => "resolved",
            Status::Closed => "closed",
        }
    }

    /// Parses the stored spelling.
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "open" => Status::Open,
            "in_progress" => Status::InProgress,
            "waiting" => Status::Waiting,
            "resolved" => Status::Resolved,
            "closed" => Status::Closed,
            _ => return None,
        })
    }

    /// RESOLVED and CLOSED carry a resolve time.
    pub fn is_resolved(self) -> bool {
        matches!(self, Status::Resolved | Status::Closed)
    }
}

/// How urgent a ticket is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Priority {
    /// Can wait.
    Low,
    /// Usual.
    Normal,
    /// Before normal.
    High,
    /// Now.
    Urgent,
}

impl Priority {
    /// The stored spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Priority::Low => "low",
            Priority::Normal => "normal",
            Priority::High => "high",
            Priority::Urgent => "urgent",
        }
    }

    /// Parses the stored spelling.
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "low" => Priority::Low,
            "normal" => Priority::Normal,
            "high" => Priority::High,
            "urgent" => Priority::Urgent,
            _ => return None,
        })
    }
}

/// A stored ticket.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ticket {
    /// UUIDv7.
    pub id: Uuid,
    /// 1–200 characters, trimmed.
    pub title: String,
    /// At most 64 KiB.
    pub description: String,
    /// Workflow state.
    pub status: Status,
    /// Urgency.
    pub priority: Priority,
    /// Assigned user of the same tenant.
    pub assignee_id: Option<Uuid>,
    /// Who created it.
    pub reporter_id: Uuid,
    /// Sorted, unique labels.
    pub tags: Vec<String>,
    /// Created.
    #[serde(with = "time::serde::rfc3339")]
    pub create_time: OffsetDateTime,
    /// Last changed.
    #[serde(with = "time::serde::rfc3339")]
    pub update_time: OffsetDateTime,
    /// Last became RESOLVED/CLOSED.
    #[serde(with = "time::serde::rfc3339::option")]
    pub resolve_time: Option<OffsetDateTime>,
    /// Bumped on every change; the etag is derived from it.
    pub version: i64,
}

impl Ticket {
    /// The etag: opaque, changes with every write.
    pub fn etag(&self) -> String {
        crate::etag::etag_of(self.id, self.version)
    }
}

/// Validated fields of a new ticket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewTicket {
    /// Trimmed title.
    pub title: String,
    /// Description.
    pub description: String,
    /// Initial state (default OPEN).
    pub status: Status,
    /// Priority (default NORMAL).
    pub priority: Priority,
    /// Assignee, to be checked against the tenant's users.
    pub assignee_id: Option<Uuid>,
    /// Normalised tags.
    pub tags: Vec<String>,
}

impl NewTicket {
    /// A stable digest of the request, to detect a request_id reused for a
    /// different request.
    pub fn digest(&self) -> Vec<u8> {
        let mut h = Sha256::new();
        for part in [
            self.title.as_str(),
            self.description.as_str(),
            self.status.as_str(),
            self.priority.as_str(),
            &self.assignee_id.map(|a| a.to_string()).unwrap_or_default(),
            &self.tags.join("\u{1f}"),
        ] {
            h.update((part.len() as u64).to_be_bytes());
            h.update(part.as_bytes());
        }
        h.finalize().to_vec()
    }

    /// The ticket this creates, reported by `reporter` at `now`.
    pub fn into_ticket(self, id: Uuid, reporter: UserId, now: OffsetDateTime) -> Ticket {
        Ticket {
            id,
            title: self.title,
            description: self.description,
            status: self.status,
            priority: self.priority,
            assignee_id: self.assignee_id,
            reporter_id: reporter.0,
            tags: self.tags,
            create_time: now,
            update_time: now,
            resolve_time: self.status.is_resolved().then_some(now),
            version: 1,
        }
    }
}

/// Checks and trims a title.
pub fn validate_title(field: &str, raw: &str) -> Result<String, FieldViolation> {
    let t = raw.trim();
    if t.is_empty() {
        return Err(FieldViolation::new(field, "REQUIRED", "the title is required"));
    }
    if t.chars().count() > TITLE_MAX_CHARS {
        return Err(FieldViolation::new(
            field,
            "TOO_LONG",
            format!("the title must be at most {TITLE_MAX_CHARS} characters"),
        ));
    }
    if t.chars().any(|c| c.is_control()) {
        return Err(FieldViolation::new(
            field,
            "INVALID_CHARACTERS",
            "the title must not contain control characters",
        ));
    }
    Ok(t.to_string())
}

/// Checks a description.
pub fn validate_description(field: &str, raw: &str) -> Result<String, FieldViolation> {
    if raw.len() > DESCRIPTION_MAX_BYTES {
        return Err(FieldViolation::new(
            field,
            "TOO_LONG",
            format!("the description must be at most {DESCRIPTION_MAX_BYTES} bytes"),
        ));
    }
    if raw.contains('\0') {
        return Err(FieldViolation::new(
            field,
            "INVALID_CHARACTERS",
            "the description must not contain NUL",
        ));
    }
    Ok(raw.to_string())
}

/// Checks and normalises tags: trimmed, de-duplicated, sorted.
pub fn validate_tags(field: &str, raw: &[String]) -> Result<Vec<String>, Vec<FieldViolation>> {
    if raw.len() > TAG_ENTRIES_MAX {
        return Err(vec![FieldViolation::new(
            field,
            "TOO_MANY",
            format!("at most {TAGS_MAX} tags"),
        )]);
    }
    let mut violations = Vec::new();
    let mut set = BTreeSet::new();
    for (i, tag) in raw.iter().enumerate() {
        let t = tag.trim();
        let n = t.chars().count();
        if n == 0 || n > TAG_MAX_CHARS {
            violations.push(FieldViolation::new(
                format!("{field}[{i}]"),
                "INVALID_TAG",
                format!("each tag must be 1 to {TAG_MAX_CHARS} characters"),
            ));
        } else if t.chars().any(|c| c.is_control()) {
            violations.push(FieldViolation::new(
                format!("{field}[{i}]"),
                "INVALID_CHARACTERS",
                "tags must not contain control characters",
            ));
        } else {
            set.insert(t.to_string());
        }
    }
    if set.len() > TAGS_MAX {
        violations.push(FieldViolation::new(
            field,
            "TOO_MANY",
            format!("at most {TAGS_MAX} tags"),
        ));
    }
    if violations.is_empty() {
        Ok(set.into_iter().collect())
    } else {
        Err(violations)
    }
}

/// Parses an id field: a UUID.
pub fn parse_id(field: &str, raw: &str) -> Result<Uuid, FieldViolation> {
    if raw.is_empty() {
        return Err(FieldViolation::new(field, "REQUIRED", "the id is required"));
    }
    Uuid::parse_str(raw).map_err(|_| FieldViolation::new(field, "INVALID_ID", "not a UUID"))
}

/// Parses an optional id field: empty means none.
pub fn parse_optional_id(field: &str, raw: &str) -> Result<Option<Uuid>, FieldViolation> {
    if raw.is_empty() {
        Ok(None)
    } else {
        parse_id(field, raw).map(Some)
    }
}

/// A ticket field an update may change.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Field {
    /// `title`
    Title,
    /// `description`
    Description,
    /// `status`
    Status,
    /// `priority`
    Priority,
    /// `assignee_id`
    AssigneeId,
    /// `tags`
    Tags,
}

impl Field {
    /// Parses a mask path.
    pub fn parse(path: &str) -> Option<Self> {
        Some(match path {
            "title" => Field::Title,
            "description" => Field::Description,
            "status" => Field::Status,
            "priority" => Field::Priority,
            "assignee_id" => Field::AssigneeId,
            "tags" => Field::Tags,
            _ => return None,
        })
    }
}

/// The validated changes of an update: `Some` for every masked field.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TicketPatch {
    /// New title.
    pub title: Option<String>,
    /// New description.
    pub description: Option<String>,
    /// New status.
    pub status: Option<Status>,
    /// New priority.
    pub priority: Option<Priority>,
    /// New assignee (`Some(None)` unassigns).
    pub assignee_id: Option<Option<Uuid>>,
    /// New tags.
    pub tags: Option<Vec<String>>,
}

impl TicketPatch {
    /// Applies the patch at `now`; returns whether anything changed.
    pub fn apply(&self, t: &mut Ticket, now: OffsetDateTime) -> bool {
        let before = t.clone();
        if let Some(v) = &self.title {
            t.title.clone_from(v);
        }
        if let Some(v) = &self.description {
            t.description.clone_from(v);
        }
        if let Some(v) = self.priority {
            t.priority = v;
        }
        if let Some(v) = self.assignee_id {
            t.assignee_id = v;
        }
        if let Some(v) = &self.tags {
            t.tags.clone_from(v);
        }
        if let Some(v) = self.status
            && v != t.status
        {
            // resolve_time: set on entering RESOLVED/CLOSED from an open
            // state, kept between them, cleared on reopening.
            t.resolve_time = match (t.status.is_resolved(), v.is_resolved()) {
                (false, true) => Some(now),
                (true, true) => t.resolve_time,
                (_, false) => None,
            };
            t.status = v;
        }
        let changed = *t != before;
        if changed {
            t.update_time = now;
            t.version += 1;
        }
        changed
    }
}

/// Sort column of a listing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OrderField {
    /// `create_time`
    CreateTime,
    /// `update_time`
    UpdateTime,
}

/// A listing's order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Order {
    /// The column.
    pub field: OrderField,
    /// Descending?
    pub desc: bool,
}

impl Default for Order {
    fn default() -> Self {
        Self {
            field: OrderField::CreateTime,
            desc: true,
        }
    }
}

/// Parses `order_by` (AIP-132): `create_time|update_time [asc|desc]`.
pub fn parse_order_by(raw: &str) -> Result<Order, FieldViolation> {
    let words: Vec<&str> = raw.split_whitespace().collect();
    let bad = || {
        FieldViolation::new(
            "order_by",
            "INVALID_ORDER_BY",
            "expected `create_time` or `update_time`, optionally followed by `asc` or `desc`",
        )
    };
    let (field, dir) = match words.as_slice() {
        [] => return Ok(Order::default()),
        [f] => (*f, None),
        [f, d] => (*f, Some(*d)),
        _ => return Err(bad()),
    };
    let field = match field {
        "create_time" => OrderField::CreateTime,
        "update_time" => OrderField::UpdateTime,
        _ => return Err(bad()),
    };
    let desc = match dir.map(str::to_ascii_lowercase).as_deref() {
        None | Some("asc") => false,
        Some("desc") => true,
        Some(_) => return Err(bad()),
    };
    Ok(Order { field, desc })
}

/// The filters and order of a listing.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ListFilter {
    /// Assigned to this user.
    pub assignee_id: Option<Uuid>,
    /// In any of these states (empty: all).
    pub statuses: Vec<Status>,
    /// Of this priority.
    pub priority: Option<Priority>,
    /// Carrying this tag.
    pub tag: Option<String>,
    /// Created at or after.
    pub create_time_start: Option<OffsetDateTime>,
    /// Created before.
    pub create_time_end: Option<OffsetDateTime>,
    /// Order.
    pub order: Order,
}

impl ListFilter {
    /// Canonical text of the filter, for the page-token fingerprint.
    pub fn canonical(&self) -> String {
        let mut statuses: Vec<&str> = self.statuses.iter().map(|s| s.as_str()).collect();
        statuses.sort_unstable();
        statuses.dedup();
        format!(
            "a={:?};s={};p={:?};t={:?};cs={:?};ce={:?};o={:?}/{}",
            self.assignee_id,
            statuses.join(","),
            self.priority.map(Priority::as_str),
            self.tag,
            self.create_time_start.map(|t| t.unix_timestamp_nanos() / 1000),
            self.create_time_end.map(|t| t.unix_timestamp_nanos() / 1000),
            self.order.field,
            self.order.desc
        )
    }
}

/// Clamps a requested page size.
pub fn page_size(requested: i32) -> Result<u32, FieldViolation> {
    match requested {
        0 => Ok(PAGE_SIZE_DEFAULT),
        n if n < 0 => Err(FieldViolation::new(
            "page_size",
            "INVALID_PAGE_SIZE",
            "page_size must not be negative",
        )),
        n => Ok((n as u32).min(PAGE_SIZE_MAX)),
    }
}

#[cfg(test)]
mod tests;
