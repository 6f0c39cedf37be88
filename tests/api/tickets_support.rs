//! Helpers shared by the Tickets CRUD tests (tickets_create, tickets_update,
//! tickets_delete_and_idempotency, tickets_roles_and_request_ids): calls that
//! unwrap the ticket, and precise error assertions.

use std::collections::BTreeSet;

use deskd::{
    proto::tickets::v1::{
        self as pb, CreateTicketRequest, DeleteTicketRequest, GetTicketRequest, ListTicketsRequest, TicketPriority,
        UpdateTicketRequest,
    },
    tenancy::TenantId,
};
use prost_types::FieldMask;
use tonic::{Code, Status};
use tonic_types::StatusExt as _;

use crate::helpers::*;
pub use crate::users_support::{assert_error, mask};

pub const RESOURCE_TYPE: &str = "deskd.tickets.v1.Ticket";

pub async fn try_create(
    app: &TestApp,
    caller: &Caller,
    ticket: Option<pb::Ticket>,
    request_id: &str,
) -> Result<pb::Ticket, Status> {
    app.tickets()
        .create_ticket(authed(
            &caller.token,
            CreateTicketRequest {
                ticket,
                request_id: request_id.to_string(),
            },
        ))
        .await
        .map(|r| r.into_inner().ticket.expect("ticket in create response"))
}

pub async fn try_get(app: &TestApp, caller: &Caller, id: &str) -> Result<pb::Ticket, Status> {
    app.tickets()
        .get_ticket(authed(&caller.token, GetTicketRequest { id: id.into() }))
        .await
        .map(|r| r.into_inner().ticket.expect("ticket in get response"))
}

pub async fn get(app: &TestApp, caller: &Caller, id: &str) -> pb::Ticket {
    try_get(app, caller, id).await.expect("get ticket")
}

pub async fn try_update_with(
    app: &TestApp,
    caller: &Caller,
    ticket: Option<pb::Ticket>,
    update_mask: Option<FieldMask>,
) -> Result<pb::Ticket, Status> {
    app.tickets()
        .update_ticket(authed(&caller.token, UpdateTicketRequest { ticket, update_mask }))
        .await
        .map(|r| r.into_inner().ticket.expect("ticket in update response"))
}

pub async fn try_update(
    app: &TestApp,
    caller: &Caller,
    ticket: pb::Ticket,
    paths: &[&str],
) -> Result<pb::Ticket, Status> {
    try_update_with(app, caller, Some(ticket), mask(paths)).await
}

pub async fn update(app: &TestApp, caller: &Caller, ticket: pb::Ticket, paths: &[&str]) -> pb::Ticket {
    try_update(app, caller, ticket, paths).await.expect("update ticket")
}

pub async fn try_delete(app: &TestApp, caller: &Caller, id: &str, etag: &str) -> Result<(), Status> {
    app.tickets()
        .delete_ticket(authed(
            &caller.token,
            DeleteTicketRequest {
                id: id.into(),
                etag: etag.into(),
            },
        ))
        .await
        .map(|_| ())
}

pub async fn list_all(app: &TestApp, caller: &Caller) -> Vec<pb::Ticket> {
    app.tickets()
        .list_tickets(authed(
            &caller.token,
            ListTicketsRequest {
                page_size: 500,
                ..Default::default()
            },
        ))
        .await
        .expect("list tickets")
        .into_inner()
        .tickets
}

/// Rows in `tickets` for `tenant`, counted as the owner (bypassing the API).
pub async fn count_tickets(app: &TestApp, tenant: TenantId) -> i64 {
    let mut conn = app.db.owner_conn().await;
    sqlx::query_scalar("select count(*) from tickets where tenant_id = $1")
        .bind(tenant.0)
        .fetch_one(&mut conn)
        .await
        .expect("count tickets")
}

/// Every (field, reason) of the status's BadRequest.
pub fn violations(status: &Status) -> BTreeSet<(String, String)> {
    status
        .get_error_details()
        .bad_request()
        .expect("BadRequest details")
        .field_violations
        .iter()
        .map(|v| (v.field.clone(), v.reason.clone()))
        .collect()
}

/// INVALID_ARGUMENT (ErrorInfo INVALID_ARGUMENT) with exactly these violations.
#[track_caller]
pub fn assert_violations(status: &Status, expected: &[(&str, &str)]) {
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    assert_eq!(reason(status), "INVALID_ARGUMENT", "{status:?}");
    let want: BTreeSet<(String, String)> = expected.iter().map(|(f, r)| (f.to_string(), r.to_string())).collect();
    assert_eq!(violations(status), want, "{status:?}");
}

/// INVALID_ARGUMENT with exactly one violation `field`/`reason`.
#[track_caller]
pub fn assert_only_violation(status: &Status, field: &str, reason: &str) {
    assert_field_violation(status, field, reason);
    assert_violations(status, &[(field, reason)]);
}

/// NOT_FOUND naming the ticket `id` in ResourceInfo.
#[track_caller]
pub fn assert_ticket_not_found(status: &Status, id: &str) {
    assert_error(status, Code::NotFound, "NOT_FOUND");
    let details = status.get_error_details();
    let info = details.resource_info().expect("ResourceInfo details");
    assert_eq!(info.resource_type, RESOURCE_TYPE);
    assert_eq!(info.resource_name, id);
}

pub async fn rich_ticket(app: &TestApp, caller: &Caller) -> pb::Ticket {
    create_ticket(
        app,
        caller,
        pb::Ticket {
            description: "original description".into(),
            priority: TicketPriority::Low as i32,
            tags: vec!["keep".into()],
            ..new_ticket("original title")
        },
    )
    .await
}
