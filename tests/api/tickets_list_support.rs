//! Helpers shared by the ListTickets tests (tickets_list_pagination,
//! tickets_list_page_tokens, tickets_list_filters): list calls, keyset order
//! and precise error assertions.

use std::collections::BTreeSet;

use deskd::proto::tickets::v1::{self as pb, ListTicketsRequest, ListTicketsResponse};
use prost_types::Timestamp;
use tonic::Status;
use tonic_types::StatusExt as _;
use uuid::Uuid;

use crate::helpers::*;

pub async fn try_list(app: &TestApp, caller: &Caller, req: ListTicketsRequest) -> Result<ListTicketsResponse, Status> {
    app.tickets()
        .list_tickets(authed(&caller.token, req))
        .await
        .map(|r| r.into_inner())
}

pub async fn list(app: &TestApp, caller: &Caller, req: ListTicketsRequest) -> ListTicketsResponse {
    try_list(app, caller, req).await.expect("list tickets")
}

pub async fn list_err(app: &TestApp, caller: &Caller, req: ListTicketsRequest) -> Status {
    try_list(app, caller, req).await.expect_err("list should fail")
}

pub fn ids(tickets: &[pb::Ticket]) -> BTreeSet<String> {
    tickets.iter().map(|t| t.id.clone()).collect()
}

/// INVALID_ARGUMENT with exactly one violation `field`/`reason`.
#[track_caller]
pub fn assert_only_violation(status: &Status, field: &str, want: &str) {
    assert_field_violation(status, field, want);
    assert_eq!(reason(status), "INVALID_ARGUMENT", "{status:?}");
    let details = status.get_error_details();
    let got: Vec<(String, String)> = details
        .bad_request()
        .expect("BadRequest details")
        .field_violations
        .iter()
        .map(|v| (v.field.clone(), v.reason.clone()))
        .collect();
    assert_eq!(got, vec![(field.to_string(), want.to_string())], "{status:?}");
}

/// (seconds, nanos, id) — the keyset sort key of a ticket.
pub fn key(t: &pb::Ticket, update_time: bool) -> (i64, i32, Uuid) {
    let ts = if update_time { &t.update_time } else { &t.create_time };
    let ts = ts.as_ref().expect("timestamp");
    (ts.seconds, ts.nanos, Uuid::parse_str(&t.id).expect("uuid id"))
}

#[track_caller]
pub fn assert_strictly_ordered(tickets: &[pb::Ticket], update_time: bool, desc: bool) {
    for w in tickets.windows(2) {
        let (a, b) = (key(&w[0], update_time), key(&w[1], update_time));
        if desc {
            assert!(a > b, "not strictly descending: {a:?} then {b:?}");
        } else {
            assert!(a < b, "not strictly ascending: {a:?} then {b:?}");
        }
    }
}

pub fn ts(t: &Option<Timestamp>) -> Timestamp {
    t.expect("timestamp")
}
