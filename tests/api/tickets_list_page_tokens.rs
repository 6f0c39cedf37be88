//! ListTickets: page tokens, refused when tampered with, garbage, reused
//! with other filters or order, or from another tenant.

use deskd::{
    proto::tickets::v1::{ListTicketsRequest, TicketPriority, TicketStatus},
    users::model::Role,
};
use prost_types::Timestamp;
use tonic::{Code, Status};

use crate::{helpers::*, tickets_list_support::*};

// ---------------------------------------------------------------------------
// Private helpers
// ---------------------------------------------------------------------------

#[track_caller]
fn assert_invalid_token(status: &Status) {
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    assert_only_violation(status, "page_token", "INVALID_PAGE_TOKEN");
}

// ---------------------------------------------------------------------------
// Page tokens
// ---------------------------------------------------------------------------

/// Three tickets and the token after the first of them (page_size 1).
async fn first_token(app: &TestApp, caller: &Caller, req: &ListTicketsRequest) -> String {
    for i in 0..3 {
        create_ticket(app, caller, new_ticket(&format!("t{i}"))).await;
    }
    let page = list(
        app,
        caller,
        ListTicketsRequest {
            page_size: 1,
            ..req.clone()
        },
    )
    .await;
    assert_eq!(page.tickets.len(), 1);
    assert!(!page.next_page_token.is_empty());
    page.next_page_token
}

#[tokio::test]
async fn tampered_page_token_is_invalid() {
    let app = spawn_app().await;
    let alice = app.caller(Role::Agent).await;
    let token = first_token(&app, &alice, &ListTicketsRequest::default()).await;

    // The untouched token works.
    let ok = list(
        &app,
        &alice,
        ListTicketsRequest {
            page_size: 1,
            page_token: token.clone(),
            ..Default::default()
        },
    )
    .await;
    assert_eq!(ok.tickets.len(), 1);

    // Flip one character at several positions (version, fingerprint, cursor, MAC).
    let bytes = token.as_bytes();
    for i in [0, 5, bytes.len() / 2, bytes.len() - 5, bytes.len() - 1] {
        let mut changed = bytes.to_vec();
        changed[i] = if changed[i] == b'A' { b'B' } else { b'A' };
        let tampered = String::from_utf8(changed).expect("ascii");
        assert_ne!(tampered, token);
        let err = list_err(
            &app,
            &alice,
            ListTicketsRequest {
                page_size: 1,
                page_token: tampered,
                ..Default::default()
            },
        )
        .await;
        assert_invalid_token(&err);
    }
    // Truncated and extended.
    for bad in [
        token[..token.len() - 2].to_string(),
        format!("{token}AA"),
        token[1..].to_string(),
    ] {
        let err = list_err(
            &app,
            &alice,
            ListTicketsRequest {
                page_size: 1,
                page_token: bad,
                ..Default::default()
            },
        )
        .await;
        assert_invalid_token(&err);
    }
}

#[tokio::test]
async fn garbage_page_token_is_invalid() {
    let app = spawn_app().await;
    let alice = app.caller(Role::Agent).await;
    create_ticket(&app, &alice, new_ticket("t")).await;
    for garbage in [
        "garbage",
        "!!!not base64!!!",
        "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
        " ",
    ] {
        let err = list_err(
            &app,
            &alice,
            ListTicketsRequest {
                page_token: garbage.into(),
                ..Default::default()
            },
        )
        .await;
        assert_invalid_token(&err);
    }
}

#[tokio::test]
async fn page_token_reused_with_other_filters_or_order_is_invalid() {
    let app = spawn_app().await;
    let alice = app.caller(Role::Agent).await;
    let bob = app.colleague(&alice, Role::Agent).await;
    let token = first_token(&app, &alice, &ListTicketsRequest::default()).await;

    let variants = [
        ListTicketsRequest {
            statuses: vec![TicketStatus::Open as i32],
            ..Default::default()
        },
        ListTicketsRequest {
            order_by: "create_time asc".into(),
            ..Default::default()
        },
        ListTicketsRequest {
            order_by: "update_time desc".into(),
            ..Default::default()
        },
        ListTicketsRequest {
            priority: TicketPriority::Normal as i32,
            ..Default::default()
        },
        ListTicketsRequest {
            tag: "x".into(),
            ..Default::default()
        },
        ListTicketsRequest {
            assignee_id: bob.user.to_string(),
            ..Default::default()
        },
        ListTicketsRequest {
            create_time_start: Some(Timestamp { seconds: 0, nanos: 0 }),
            ..Default::default()
        },
    ];
    for v in variants {
        let err = list_err(
            &app,
            &alice,
            ListTicketsRequest {
                page_size: 1,
                page_token: token.clone(),
                ..v.clone()
            },
        )
        .await;
        assert_invalid_token(&err);
    }

    // The same query spelled differently is the same query; page_size is not
    // part of it.
    for same in ["", "create_time desc", "create_time DESC", "  create_time   desc "] {
        let page = list(
            &app,
            &alice,
            ListTicketsRequest {
                page_size: 5,
                page_token: token.clone(),
                order_by: same.into(),
                ..Default::default()
            },
        )
        .await;
        assert_eq!(page.tickets.len(), 2, "order_by {same:?}");
    }

    // A token issued for a filtered query is refused without the filter.
    let filtered = ListTicketsRequest {
        statuses: vec![TicketStatus::Open as i32, TicketStatus::Waiting as i32],
        ..Default::default()
    };
    let ftoken = list(
        &app,
        &alice,
        ListTicketsRequest {
            page_size: 1,
            ..filtered.clone()
        },
    )
    .await
    .next_page_token;
    assert!(!ftoken.is_empty());
    let err = list_err(
        &app,
        &alice,
        ListTicketsRequest {
            page_token: ftoken.clone(),
            ..Default::default()
        },
    )
    .await;
    assert_invalid_token(&err);
    // ... but accepted with the same statuses in another order.
    let page = list(
        &app,
        &alice,
        ListTicketsRequest {
            page_token: ftoken,
            statuses: vec![TicketStatus::Waiting as i32, TicketStatus::Open as i32],
            ..Default::default()
        },
    )
    .await;
    assert_eq!(page.tickets.len(), 2);
}

#[tokio::test]
async fn page_token_of_another_tenant_is_invalid() {
    let app = spawn_app().await;
    let alice = app.caller(Role::Agent).await;
    let bob = app.caller(Role::Agent).await;
    let token = first_token(&app, &alice, &ListTicketsRequest::default()).await;
    for i in 0..3 {
        create_ticket(&app, &bob, new_ticket(&format!("b{i}"))).await;
    }
    let err = list_err(
        &app,
        &bob,
        ListTicketsRequest {
            page_size: 1,
            page_token: token.clone(),
            ..Default::default()
        },
    )
    .await;
    assert_invalid_token(&err);

    // A colleague of alice (same tenant) may continue her walk.
    let carol = app.colleague(&alice, Role::Viewer).await;
    let page = list(
        &app,
        &carol,
        ListTicketsRequest {
            page_size: 10,
            page_token: token,
            ..Default::default()
        },
    )
    .await;
    assert_eq!(page.tickets.len(), 2);
}
