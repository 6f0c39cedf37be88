//! Tickets CRUD, DeleteTicket and idempotent creates (AIP-155).

use deskd::{
    proto::tickets::v1::{self as pb, CreateTicketRequest, TicketPriority},
    users::model::Role,
};
use uuid::Uuid;

use crate::{helpers::*, tickets_support::*};

// ---------------------------------------------------------------------------
// DeleteTicket
// ---------------------------------------------------------------------------

#[tokio::test]
async fn delete_removes_ticket_and_second_delete_is_not_found() {
    let app = spawn_app().await;
    let alice = app.caller(Role::Agent).await;
    let keep = create_ticket(&app, &alice, new_ticket("keep")).await;
    let t = create_ticket(&app, &alice, new_ticket("doomed")).await;

    try_delete(&app, &alice, &t.id, "").await.expect("delete without etag");
    let err = try_get(&app, &alice, &t.id).await.expect_err("gone");
    assert_ticket_not_found(&err, &t.id);

    let err = try_delete(&app, &alice, &t.id, "").await.expect_err("second delete");
    assert_ticket_not_found(&err, &t.id);

    // Only that ticket went.
    assert_eq!(get(&app, &alice, &keep.id).await, keep);
    assert_eq!(count_tickets(&app, alice.tenant).await, 1);
}

#[tokio::test]
async fn delete_malformed_unknown_or_foreign_id() {
    let app = spawn_app().await;
    let alice = app.caller(Role::Agent).await;
    let mallory = app.caller(Role::Agent).await;

    let err = try_delete(&app, &alice, "not-a-uuid", "").await.expect_err("malformed");
    assert_only_violation(&err, "id", "INVALID_ID");
    let err = try_delete(&app, &alice, "", "").await.expect_err("empty");
    assert_only_violation(&err, "id", "REQUIRED");

    let id = Uuid::now_v7().to_string();
    let err = try_delete(&app, &alice, &id, "").await.expect_err("unknown");
    assert_ticket_not_found(&err, &id);

    let t = create_ticket(&app, &alice, new_ticket("mine")).await;
    let err = try_delete(&app, &mallory, &t.id, "").await.expect_err("foreign");
    assert_ticket_not_found(&err, &t.id);
    assert_eq!(get(&app, &alice, &t.id).await, t);
}

// ---------------------------------------------------------------------------
// Idempotent create (AIP-155)
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_creates_with_one_request_id_create_one_ticket() {
    let app = spawn_app().await;
    let alice = app.caller(Role::Agent).await;
    let request_id = Uuid::new_v4().to_string();
    let ticket = pb::Ticket {
        description: "once".into(),
        tags: vec!["idem".into()],
        ..new_ticket("exactly once")
    };

    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..50 {
        let mut client = app.tickets();
        let req = authed(
            &alice.token,
            CreateTicketRequest {
                ticket: Some(ticket.clone()),
                request_id: request_id.clone(),
            },
        );
        tasks.spawn(async move { client.create_ticket(req).await });
    }
    let mut results = Vec::new();
    while let Some(res) = tasks.join_next().await {
        let t = res
            .expect("task")
            .expect("every concurrent create succeeds")
            .into_inner()
            .ticket
            .expect("ticket");
        results.push(t);
    }
    assert_eq!(results.len(), 50);
    let first = results[0].clone();
    for t in &results {
        assert_eq!(t.id, first.id, "same ticket id");
        assert_eq!(t, &first, "identical ticket");
    }
    assert_eq!(first.title, "exactly once");
    assert_eq!(first.reporter_id, alice.user.to_string());

    assert_eq!(count_tickets(&app, alice.tenant).await, 1);
    let listed = list_all(&app, &alice).await;
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0], first);

    // A later retry returns the identical ticket and creates nothing.
    let retry = try_create(&app, &alice, Some(ticket.clone()), &request_id)
        .await
        .expect("retry");
    assert_eq!(retry, first);
    assert_eq!(count_tickets(&app, alice.tenant).await, 1);
}

#[tokio::test]
async fn request_id_reused_for_a_different_request_is_rejected() {
    let app = spawn_app().await;
    let alice = app.caller(Role::Agent).await;
    let request_id = Uuid::new_v4().to_string();
    let first = try_create(&app, &alice, Some(new_ticket("first")), &request_id)
        .await
        .expect("first create");

    let err = try_create(&app, &alice, Some(new_ticket("different")), &request_id)
        .await
        .expect_err("reused request_id");
    assert_only_violation(&err, "request_id", "REQUEST_ID_REUSED");

    let err = try_create(
        &app,
        &alice,
        Some(pb::Ticket {
            priority: TicketPriority::High as i32,
            ..new_ticket("first")
        }),
        &request_id,
    )
    .await
    .expect_err("reused request_id, other priority");
    assert_only_violation(&err, "request_id", "REQUEST_ID_REUSED");
    assert_eq!(count_tickets(&app, alice.tenant).await, 1);
    assert_eq!(get(&app, &alice, &first.id).await, first);

    // A fresh request_id creates a new ticket even with the same content.
    let other = try_create(&app, &alice, Some(new_ticket("first")), &Uuid::new_v4().to_string())
        .await
        .expect("fresh request_id");
    assert_ne!(other.id, first.id);
    // Without request_id, creates are never deduplicated.
    let a = create_ticket(&app, &alice, new_ticket("first")).await;
    let b = create_ticket(&app, &alice, new_ticket("first")).await;
    assert_ne!(a.id, b.id);
    assert_eq!(count_tickets(&app, alice.tenant).await, 4);
}

#[tokio::test]
async fn request_id_is_scoped_to_the_tenant() {
    let app = spawn_app().await;
    let alice = app.caller(Role::Agent).await;
    let bob = app.caller(Role::Agent).await;
    let request_id = Uuid::new_v4().to_string();
    let a = try_create(&app, &alice, Some(new_ticket("shared rid")), &request_id)
        .await
        .expect("tenant A");
    let b = try_create(&app, &bob, Some(new_ticket("shared rid")), &request_id)
        .await
        .expect("tenant B");
    assert_ne!(a.id, b.id);
    assert_eq!(b.reporter_id, bob.user.to_string());
    assert_eq!(count_tickets(&app, alice.tenant).await, 1);
    assert_eq!(count_tickets(&app, bob.tenant).await, 1);
    assert_eq!(get(&app, &bob, &b.id).await, b);
    assert_ticket_not_found(&try_get(&app, &bob, &a.id).await.expect_err("isolated"), &a.id);

    // A different request under the same id in tenant B is B's own business.
    let err = try_create(&app, &bob, Some(new_ticket("other")), &request_id)
        .await
        .expect_err("reused in B");
    assert_only_violation(&err, "request_id", "REQUEST_ID_REUSED");
    // And A's retry still returns A's ticket.
    let retry = try_create(&app, &alice, Some(new_ticket("shared rid")), &request_id)
        .await
        .expect("retry A");
    assert_eq!(retry, a);
}
