//! Tickets CRUD: roles (what a viewer may do) and request ids.

use deskd::{
    proto::tickets::v1::{self as pb, CreateTicketRequest, GetTicketRequest, ListTicketsRequest},
    users::model::Role,
};
use tonic::{Code, Request, Status};
use tonic_types::StatusExt as _;
use uuid::Uuid;

use crate::{helpers::*, tickets_support::*};

// ---------------------------------------------------------------------------
// Private helpers
// ---------------------------------------------------------------------------

fn x_request_id(md: &tonic::metadata::MetadataMap) -> String {
    md.get("x-request-id")
        .expect("x-request-id in response metadata")
        .to_str()
        .expect("ascii x-request-id")
        .to_string()
}

fn with_request_id<T>(token: &str, rid: &str, msg: T) -> Request<T> {
    let mut req = authed(token, msg);
    req.metadata_mut()
        .insert("x-request-id", rid.parse().expect("metadata value"));
    req
}

// ---------------------------------------------------------------------------
// Roles
// ---------------------------------------------------------------------------

#[track_caller]
fn assert_permission_missing(status: &Status) {
    assert_error(status, Code::PermissionDenied, "PERMISSION_MISSING");
    let details = status.get_error_details();
    let info = details.error_info().expect("ErrorInfo");
    assert_eq!(
        info.metadata.get("permission").map(String::as_str),
        Some("tickets:write"),
        "{status:?}"
    );
}

#[tokio::test]
async fn viewer_can_read_but_not_write() {
    let app = spawn_app().await;
    let agent = app.caller(Role::Agent).await;
    let viewer = app.colleague(&agent, Role::Viewer).await;
    let t = rich_ticket(&app, &agent).await;

    assert_eq!(get(&app, &viewer, &t.id).await, t);
    assert_eq!(list_all(&app, &viewer).await, vec![t.clone()]);

    let err = try_create(&app, &viewer, Some(new_ticket("nope")), "")
        .await
        .expect_err("viewer create");
    assert_permission_missing(&err);

    let err = try_update(
        &app,
        &viewer,
        pb::Ticket {
            title: "nope".into(),
            ..t.clone()
        },
        &["title"],
    )
    .await
    .expect_err("viewer update");
    assert_permission_missing(&err);

    let err = try_delete(&app, &viewer, &t.id, "").await.expect_err("viewer delete");
    assert_permission_missing(&err);

    assert_eq!(get(&app, &agent, &t.id).await, t, "nothing changed");
    assert_eq!(count_tickets(&app, agent.tenant).await, 1);
}

// ---------------------------------------------------------------------------
// Request ids
// ---------------------------------------------------------------------------

#[tokio::test]
async fn responses_carry_a_generated_request_id() {
    let app = spawn_app().await;
    let alice = app.caller(Role::Agent).await;
    let res = app
        .tickets()
        .create_ticket(authed(
            &alice.token,
            CreateTicketRequest {
                ticket: Some(new_ticket("rid")),
                request_id: String::new(),
            },
        ))
        .await
        .expect("create");
    let rid1 = x_request_id(res.metadata());
    Uuid::parse_str(&rid1).expect("generated request ids are UUIDs");

    let err = try_get(&app, &alice, &Uuid::now_v7().to_string())
        .await
        .expect_err("not found");
    let rid2 = x_request_id(err.metadata());
    Uuid::parse_str(&rid2).expect("generated request ids are UUIDs");
    assert_ne!(rid1, rid2, "one id per request");
    let details = err.get_error_details();
    assert_eq!(details.request_info().expect("RequestInfo").request_id, rid2);
}

#[tokio::test]
async fn well_formed_client_request_id_is_echoed() {
    let app = spawn_app().await;
    let alice = app.caller(Role::Agent).await;
    let t = create_ticket(&app, &alice, new_ticket("rid")).await;

    let rid = "client-req_42.attempt:1";
    let res = app
        .tickets()
        .get_ticket(with_request_id(
            &alice.token,
            rid,
            GetTicketRequest { id: t.id.clone() },
        ))
        .await
        .expect("get");
    assert_eq!(x_request_id(res.metadata()), rid);

    let rid = "A".repeat(128);
    let err = app
        .tickets()
        .get_ticket(with_request_id(
            &alice.token,
            &rid,
            GetTicketRequest {
                id: Uuid::now_v7().to_string(),
            },
        ))
        .await
        .expect_err("not found");
    assert_eq!(err.code(), Code::NotFound);
    assert_eq!(x_request_id(err.metadata()), rid);
    let details = err.get_error_details();
    assert_eq!(details.request_info().expect("RequestInfo").request_id, rid);

    // Validation errors carry it too.
    let rid = "validation-1";
    let err = app
        .tickets()
        .get_ticket(with_request_id(
            &alice.token,
            rid,
            GetTicketRequest { id: "bad".into() },
        ))
        .await
        .expect_err("invalid");
    assert_eq!(err.code(), Code::InvalidArgument);
    assert_eq!(x_request_id(err.metadata()), rid);
    assert_eq!(
        err.get_error_details().request_info().expect("RequestInfo").request_id,
        rid
    );
}

#[tokio::test]
async fn malformed_client_request_id_is_replaced() {
    let app = spawn_app().await;
    let alice = app.caller(Role::Agent).await;
    let too_long = "a".repeat(200);
    let just_over = "b".repeat(129);
    for bad in [
        "has space",
        "semi;colon",
        "quote\"d",
        too_long.as_str(),
        just_over.as_str(),
    ] {
        let res = app
            .tickets()
            .list_tickets(with_request_id(&alice.token, bad, ListTicketsRequest::default()))
            .await
            .expect("list");
        let got = x_request_id(res.metadata());
        assert_ne!(got, bad);
        Uuid::parse_str(&got).expect("replaced by a generated UUID");

        let err = app
            .tickets()
            .get_ticket(with_request_id(
                &alice.token,
                bad,
                GetTicketRequest {
                    id: Uuid::now_v7().to_string(),
                },
            ))
            .await
            .expect_err("not found");
        let got = x_request_id(err.metadata());
        assert_ne!(got, bad);
        Uuid::parse_str(&got).expect("replaced by a generated UUID");
        assert_eq!(
            err.get_error_details().request_info().expect("RequestInfo").request_id,
            got,
            "RequestInfo carries the id actually used"
        );
    }
}
