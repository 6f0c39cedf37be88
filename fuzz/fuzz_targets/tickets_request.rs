//! Tickets and Stats requests, from wire bytes to domain values: the first
//! byte picks the RPC, the rest is decoded with prost as tonic would, then
//! validated by the handler's own function (`tickets::grpc::validate_*`,
//! `stats::grpc::validate`), and that in bounded memory.
//!
//! Asserted: validation returns a domain value that keeps the contract's
//! rules (trimmed title of 1–200 characters, sorted unique tags, a page size
//! of 1–500, exactly the masked fields patched, a window of at most 366
//! days...), or INVALID_ARGUMENT whose every violation names a field path
//! of the request with an UPPER_SNAKE reason. Never a panic, never another
//! code (an INTERNAL here would be a validation bug).

#![no_main]

use deskd::{
    proto::{
        stats::v1::GetTicketStatsRequest,
        tickets::v1::{CreateTicketRequest, ExportTicketsRequest, ListTicketsRequest, UpdateTicketRequest},
    },
    stats::grpc as stats_grpc,
    tickets::{
        grpc::{validate_create, validate_export, validate_list, validate_update},
        model::{
            DESCRIPTION_MAX_BYTES, Field, ListFilter, PAGE_SIZE_MAX, Status, TAG_MAX_CHARS, TAGS_MAX, TITLE_MAX_CHARS,
            validate_title,
        },
    },
};
use deskd_fuzz::{bounded, budget, check_invalid_argument, is_trimmed};
use libfuzzer_sys::fuzz_target;
use prost::Message;

const LIST_FIELDS: &[&str] = &[
    "page_size",
    "assignee_id",
    "statuses",
    "priority",
    "tag",
    "create_time_start",
    "create_time_end",
    "order_by",
];

fn check_tags(tags: &[String]) {
    assert!(tags.len() <= TAGS_MAX);
    assert!(
        tags.windows(2).all(|w| w[0] < w[1]),
        "tags not sorted and unique: {tags:?}"
    );
    for t in tags {
        let n = t.chars().count();
        assert!((1..=TAG_MAX_CHARS).contains(&n) && is_trimmed(t), "tag {t:?}");
        assert!(!t.chars().any(char::is_control), "tag {t:?}");
    }
}

fn check_filter(f: &ListFilter) {
    assert!(f.statuses.windows(2).all(|w| w[0] < w[1]), "statuses {:?}", f.statuses);
    if let Some(tag) = &f.tag {
        assert!(!tag.is_empty() && is_trimmed(tag) && tag.chars().count() <= TAG_MAX_CHARS);
    }
    if let (Some(s), Some(e)) = (f.create_time_start, f.create_time_end) {
        assert!(s < e);
    }
    for t in [f.create_time_start, f.create_time_end].into_iter().flatten() {
        assert!((1..=9999).contains(&t.year()));
    }
}

fn create(bytes: &[u8]) {
    let Ok(req) = CreateTicketRequest::decode(bytes) else {
        return;
    };
    let sent_request_id = req.request_id.clone();
    match validate_create(req.ticket, &req.request_id) {
        Ok((new, rid)) => {
            assert_eq!(validate_title("t", &new.title).as_ref(), Ok(&new.title));
            assert!(new.title.chars().count() <= TITLE_MAX_CHARS);
            assert!(new.description.len() <= DESCRIPTION_MAX_BYTES && !new.description.contains('\0'));
            check_tags(&new.tags);
            assert_eq!(rid.is_some(), !sent_request_id.is_empty());
            assert_eq!(new.digest(), new.clone().digest());
        }
        Err(e) => check_invalid_argument(&e, &["ticket", "request_id"]),
    }
}

fn update(bytes: &[u8]) {
    let Ok(req) = UpdateTicketRequest::decode(bytes) else {
        return;
    };
    let paths = req.update_mask.as_ref().map(|m| m.paths.clone()).unwrap_or_default();
    let etag = req.ticket.as_ref().map(|t| t.etag.clone()).unwrap_or_default();
    match validate_update(req.ticket, req.update_mask) {
        Ok((_, got_etag, patch)) => {
            assert!(!paths.is_empty(), "an update without a mask passed");
            let masked: Vec<Field> = paths.iter().filter_map(|p| Field::parse(p)).collect();
            assert_eq!(masked.len(), paths.len(), "an unknown mask path passed: {paths:?}");
            // Exactly the masked fields are patched.
            assert_eq!(patch.title.is_some(), masked.contains(&Field::Title));
            assert_eq!(patch.description.is_some(), masked.contains(&Field::Description));
            assert_eq!(patch.status.is_some(), masked.contains(&Field::Status));
            assert_eq!(patch.priority.is_some(), masked.contains(&Field::Priority));
            assert_eq!(patch.assignee_id.is_some(), masked.contains(&Field::AssigneeId));
            assert_eq!(patch.tags.is_some(), masked.contains(&Field::Tags));
            if let Some(title) = &patch.title {
                assert_eq!(validate_title("t", title).as_ref(), Ok(title));
            }
            if let Some(tags) = &patch.tags {
                check_tags(tags);
            }
            assert_eq!(got_etag.unwrap_or_default(), etag);
        }
        Err(e) => check_invalid_argument(&e, &["ticket", "update_mask"]),
    }
}

fn list(bytes: &[u8]) {
    let Ok(req) = ListTicketsRequest::decode(bytes) else {
        return;
    };
    let again = req.clone();
    match validate_list(req) {
        Ok((filter, size, token)) => {
            assert!((1..=PAGE_SIZE_MAX).contains(&size));
            check_filter(&filter);
            assert_eq!(token, again.page_token);
            // The page-token fingerprint is a function of the request.
            let Ok((twice, _, _)) = validate_list(again) else {
                panic!("validation is not deterministic")
            };
            assert_eq!(filter.canonical(), twice.canonical());
        }
        Err(e) => check_invalid_argument(&e, LIST_FIELDS),
    }
}

fn export(bytes: &[u8]) {
    let Ok(req) = ExportTicketsRequest::decode(bytes) else {
        return;
    };
    match validate_export(req) {
        Ok(job) => {
            assert!(job.statuses.windows(2).all(|w: &[Status]| w[0] < w[1]));
            if let (Some(s), Some(e)) = (job.create_time_start, job.create_time_end) {
                assert!(s < e);
            }
        }
        Err(e) => {
            let mut roots = LIST_FIELDS.to_vec();
            roots.push("format");
            check_invalid_argument(&e, &roots);
        }
    }
}

fn stats(bytes: &[u8]) {
    let Ok(req) = GetTicketStatsRequest::decode(bytes) else {
        return;
    };
    let now = time::OffsetDateTime::now_utc();
    match stats_grpc::validate(req, now) {
        Ok(q) => {
            assert!((1..=100).contains(&q.top_assignees_limit));
            let Ok(w) = q.window(now) else {
                panic!("an accepted query has no window")
            };
            assert!(w.start < w.end && w.end - w.start <= time::Duration::days(366));
        }
        Err(e) => check_invalid_argument(
            &e,
            &[
                "start_time",
                "end_time",
                "assignee_id",
                "tag",
                "priority",
                "top_assignees_limit",
            ],
        ),
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&which, bytes)) = data.split_first() else {
        return;
    };
    bounded("decode and validate", budget(data.len()), || match which % 5 {
        0 => create(bytes),
        1 => update(bytes),
        2 => list(bytes),
        3 => export(bytes),
        _ => stats(bytes),
    });
});
