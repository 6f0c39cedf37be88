//! The Users service, DeactivateUser and ReactivateUser: soft deactivation,
//! and deactivations and role changes taking effect on the next request.

use deskd::{
    proto::{
        tickets::v1::{self as tpb, GetTicketRequest, ListTicketsRequest},
        users::v1::{self as upb},
    },
    users::model::Role,
};
use tonic::{Code, Status};

use crate::{helpers::*, users_support::*};

// ---------------------------------------------------------------------------
// Private helpers
// ---------------------------------------------------------------------------

/// ListTickets as `token` (a cheap authenticated call).
async fn list_tickets(app: &TestApp, token: &str) -> Result<Vec<tpb::Ticket>, Status> {
    app.tickets()
        .list_tickets(authed(token, ListTicketsRequest::default()))
        .await
        .map(|r| r.into_inner().tickets)
}

// ---------------------------------------------------------------------------
// DeactivateUser / ReactivateUser
// ---------------------------------------------------------------------------

#[tokio::test]
async fn deactivation_is_soft_and_keeps_ticket_references() {
    let app = spawn_app().await;
    let admin = app.caller(Role::Admin).await;
    let agent = app.colleague(&admin, Role::Agent).await;
    let agent_id = agent.user.to_string();
    // A ticket the agent reported and one assigned to them.
    let reported = create_ticket(&app, &agent, new_ticket("reported by the agent")).await;
    let assigned = create_ticket(
        &app,
        &admin,
        tpb::Ticket {
            assignee_id: agent_id.clone(),
            ..new_ticket("assigned to the agent")
        },
    )
    .await;
    let before = get_user(&app, &admin.token, &agent_id).await;

    let off = deactivate(&app, &admin.token, &agent_id, &before.etag)
        .await
        .expect("deactivate");
    assert!(!off.active);
    assert_ne!(off.etag, before.etag);
    assert_eq!(
        (&off.email, &off.display_name, off.role),
        (&before.email, &before.display_name, before.role)
    );
    assert_eq!(get_user(&app, &admin.token, &agent_id).await, off);

    for t in [&reported, &assigned] {
        let got = app
            .tickets()
            .get_ticket(authed(&admin.token, GetTicketRequest { id: t.id.clone() }))
            .await
            .expect("the ticket stays readable")
            .into_inner()
            .ticket
            .expect("ticket");
        assert_eq!(&got, t);
    }
    assert_eq!(reported.reporter_id, agent_id);
    assert_eq!(assigned.assignee_id, agent_id);
    let by_assignee = app
        .tickets()
        .list_tickets(authed(
            &admin.token,
            ListTicketsRequest {
                assignee_id: agent_id.clone(),
                ..Default::default()
            },
        ))
        .await
        .expect("list by assignee")
        .into_inner()
        .tickets;
    assert_eq!(ids_of_tickets(&by_assignee), vec![assigned.id.clone()]);

    let on = reactivate(&app, &admin.token, &agent_id, &off.etag)
        .await
        .expect("reactivate");
    assert!(on.active);
    assert_eq!(get_user(&app, &admin.token, &agent_id).await, on);
    // Reactivating needs users:write too.
    let err = reactivate(&app, &agent.token, &agent_id, "")
        .await
        .expect_err("agent reactivating");
    assert_permission_missing(&err, "users:write");
}

fn ids_of_tickets(tickets: &[tpb::Ticket]) -> Vec<String> {
    tickets.iter().map(|t| t.id.clone()).collect()
}

#[tokio::test]
async fn deactivate_and_reactivate_with_random_or_malformed_ids() {
    let app = spawn_app().await;
    let admin = app.caller(Role::Admin).await;
    let id = random_id();
    let err = deactivate(&app, &admin.token, &id, "").await.expect_err("missing");
    assert_not_found(&err, USER_TYPE, &id);
    let err = reactivate(&app, &admin.token, &id, "").await.expect_err("missing");
    assert_not_found(&err, USER_TYPE, &id);
    let err = deactivate(&app, &admin.token, "x", "").await.expect_err("malformed");
    assert_only_violation(&err, "id", "INVALID_ID");
    let err = reactivate(&app, &admin.token, "", "").await.expect_err("empty");
    assert_only_violation(&err, "id", "REQUIRED");
}

#[tokio::test]
async fn deactivation_takes_effect_on_the_next_request() {
    let app = spawn_app().await;
    let admin = app.caller(Role::Admin).await;
    let agent = app.colleague(&admin, Role::Agent).await;
    // The JWT works (and the principal is now cached).
    list_tickets(&app, &agent.token).await.expect("before");
    whoami(&app, &agent.token).await.expect("before");

    deactivate(&app, &admin.token, &agent.user.to_string(), "")
        .await
        .expect("deactivate");
    let err = list_tickets(&app, &agent.token).await.expect_err("deactivated");
    assert_error(&err, Code::Unauthenticated, "USER_INACTIVE");
    let err = whoami(&app, &agent.token).await.expect_err("deactivated");
    assert_error(&err, Code::Unauthenticated, "USER_INACTIVE");

    reactivate(&app, &admin.token, &agent.user.to_string(), "")
        .await
        .expect("reactivate");
    list_tickets(&app, &agent.token).await.expect("after reactivation");
}

#[tokio::test]
async fn deactivation_through_update_user_takes_effect_on_the_next_request() {
    let app = spawn_app().await;
    let admin = app.caller(Role::Admin).await;
    let viewer = app.colleague(&admin, Role::Viewer).await;
    let id = viewer.user.to_string();
    whoami(&app, &viewer.token).await.expect("before");
    let off = try_update_user(
        &app,
        &admin.token,
        upb::User {
            id: id.clone(),
            active: false,
            ..Default::default()
        },
        &["active"],
    )
    .await
    .expect("deactivate via update");
    assert!(!off.active);
    let err = whoami(&app, &viewer.token).await.expect_err("deactivated");
    assert_error(&err, Code::Unauthenticated, "USER_INACTIVE");
    try_update_user(
        &app,
        &admin.token,
        upb::User {
            id,
            active: true,
            ..Default::default()
        },
        &["active"],
    )
    .await
    .expect("reactivate via update");
    whoami(&app, &viewer.token).await.expect("after");
}

#[tokio::test]
async fn a_role_change_takes_effect_on_the_next_request() {
    let app = spawn_app().await;
    let admin = app.caller(Role::Admin).await;
    let agent = app.colleague(&admin, Role::Agent).await;
    create_ticket(&app, &agent, new_ticket("as an agent")).await;
    try_update_user(
        &app,
        &admin.token,
        upb::User {
            id: agent.user.to_string(),
            role: upb::Role::Viewer as i32,
            ..Default::default()
        },
        &["role"],
    )
    .await
    .expect("demote");
    let err = app
        .tickets()
        .create_ticket(authed(
            &agent.token,
            tpb::CreateTicketRequest {
                ticket: Some(new_ticket("as a viewer")),
                request_id: String::new(),
            },
        ))
        .await
        .expect_err("a viewer now");
    assert_permission_missing(&err, "tickets:write");
}
