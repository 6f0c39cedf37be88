//! Tickets CRUD, CreateTicket and GetTicket: success, defaults and
//! normalisation, validation and not-found paths.

use deskd::{
    proto::tickets::v1::{self as pb, TicketPriority, TicketStatus},
    users::model::Role,
};
use prost_types::Timestamp;
use tonic::Status;
use uuid::Uuid;

use crate::{helpers::*, tickets_support::*};

// ---------------------------------------------------------------------------
// Private helpers
// ---------------------------------------------------------------------------

async fn create_err(app: &TestApp, caller: &Caller, ticket: pb::Ticket) -> Status {
    try_create(app, caller, Some(ticket), "")
        .await
        .expect_err("create should fail")
}

// ---------------------------------------------------------------------------
// CreateTicket
// ---------------------------------------------------------------------------

#[tokio::test]
async fn create_then_get_round_trips() {
    let app = spawn_app().await;
    let alice = app.caller(Role::Agent).await;
    let created = create_ticket(&app, &alice, new_ticket("  Printer on fire  ")).await;
    assert_eq!(created.title, "Printer on fire");
    let got = app
        .tickets()
        .get_ticket(authed(
            &alice.token,
            deskd::proto::tickets::v1::GetTicketRequest { id: created.id.clone() },
        ))
        .await
        .expect("get")
        .into_inner()
        .ticket
        .expect("ticket");
    assert_eq!(got, created);
    assert_eq!(got.reporter_id, alice.user.to_string());
}

#[tokio::test]
async fn create_applies_defaults_normalises_and_ignores_output_only_fields() {
    let app = spawn_app().await;
    let alice = app.caller(Role::Agent).await;
    let sent_id = Uuid::now_v7().to_string();
    let fake_reporter = Uuid::now_v7().to_string();
    let old = Timestamp {
        seconds: 1_000,
        nanos: 0,
    };
    let created = create_ticket(
        &app,
        &alice,
        pb::Ticket {
            id: sent_id.clone(),
            title: " \t Printer on fire \n".into(),
            description: "  It is literally on fire.  ".into(),
            tags: vec![
                " zeta ".into(),
                "alpha".into(),
                "zeta".into(),
                "alpha ".into(),
                "Beta".into(),
            ],
            reporter_id: fake_reporter.clone(),
            create_time: Some(old),
            update_time: Some(old),
            resolve_time: Some(old),
            etag: "\"bogus\"".into(),
            ..Default::default()
        },
    )
    .await;

    assert_ne!(created.id, sent_id, "the id is assigned by the server");
    let id = Uuid::parse_str(&created.id).expect("id is a UUID");
    assert_eq!(id.get_version_num(), 7, "ids are UUIDv7");
    assert_eq!(created.title, "Printer on fire");
    assert_eq!(
        created.description, "  It is literally on fire.  ",
        "descriptions are stored verbatim"
    );
    assert_eq!(created.status, TicketStatus::Open as i32);
    assert_eq!(created.priority, TicketPriority::Normal as i32);
    assert_eq!(created.tags, vec!["Beta", "alpha", "zeta"]);
    assert_eq!(created.assignee_id, "");
    assert_eq!(created.reporter_id, alice.user.to_string());
    assert_ne!(created.reporter_id, fake_reporter);
    assert!(created.create_time.is_some());
    assert_ne!(created.create_time, Some(old));
    assert_eq!(created.create_time, created.update_time);
    assert_eq!(created.resolve_time, None);
    assert!(!created.etag.is_empty());
    assert_ne!(created.etag, "\"bogus\"");

    // What was returned is what was stored.
    assert_eq!(get(&app, &alice, &created.id).await, created);
    assert_eq!(count_tickets(&app, alice.tenant).await, 1);
}

#[tokio::test]
async fn create_resolved_sets_resolve_time() {
    let app = spawn_app().await;
    let alice = app.caller(Role::Agent).await;
    let created = create_ticket(
        &app,
        &alice,
        pb::Ticket {
            status: TicketStatus::Resolved as i32,
            priority: TicketPriority::Urgent as i32,
            ..new_ticket("already solved")
        },
    )
    .await;
    assert_eq!(created.status, TicketStatus::Resolved as i32);
    assert_eq!(created.priority, TicketPriority::Urgent as i32);
    assert!(created.resolve_time.is_some());
    assert_eq!(created.resolve_time, created.create_time);
    assert_eq!(get(&app, &alice, &created.id).await, created);

    let waiting = create_ticket(
        &app,
        &alice,
        pb::Ticket {
            status: TicketStatus::Waiting as i32,
            ..new_ticket("waiting")
        },
    )
    .await;
    assert_eq!(waiting.status, TicketStatus::Waiting as i32);
    assert_eq!(waiting.resolve_time, None);
}

#[tokio::test]
async fn create_stores_assignee_of_same_tenant() {
    let app = spawn_app().await;
    let alice = app.caller(Role::Agent).await;
    let bob = app.colleague(&alice, Role::Agent).await;
    let created = create_ticket(
        &app,
        &alice,
        pb::Ticket {
            assignee_id: bob.user.to_string(),
            ..new_ticket("for bob")
        },
    )
    .await;
    assert_eq!(created.assignee_id, bob.user.to_string());
    assert_eq!(created.reporter_id, alice.user.to_string());
    // Bob, a colleague, sees the same ticket.
    assert_eq!(get(&app, &bob, &created.id).await, created);
}

#[tokio::test]
async fn create_without_ticket_is_required() {
    let app = spawn_app().await;
    let alice = app.caller(Role::Agent).await;
    let err = try_create(&app, &alice, None, "").await.expect_err("no ticket");
    assert_only_violation(&err, "ticket", "REQUIRED");
    assert_eq!(count_tickets(&app, alice.tenant).await, 0);
}

#[tokio::test]
async fn create_with_empty_or_blank_title_is_required() {
    let app = spawn_app().await;
    let alice = app.caller(Role::Agent).await;
    for title in ["", "   ", " \t\n "] {
        let err = create_err(&app, &alice, new_ticket(title)).await;
        assert_only_violation(&err, "ticket.title", "REQUIRED");
    }
    assert_eq!(count_tickets(&app, alice.tenant).await, 0);
}

#[tokio::test]
async fn create_title_length_limit_is_200_characters() {
    let app = spawn_app().await;
    let alice = app.caller(Role::Agent).await;
    let err = create_err(&app, &alice, new_ticket(&"x".repeat(201))).await;
    assert_only_violation(&err, "ticket.title", "TOO_LONG");
    // Multi-byte characters count as one each.
    let err = create_err(&app, &alice, new_ticket(&"é".repeat(201))).await;
    assert_only_violation(&err, "ticket.title", "TOO_LONG");
    assert_eq!(count_tickets(&app, alice.tenant).await, 0);

    let ok = create_ticket(&app, &alice, new_ticket(&"x".repeat(200))).await;
    assert_eq!(ok.title, "x".repeat(200));
    let ok = create_ticket(&app, &alice, new_ticket(&"é".repeat(200))).await;
    assert_eq!(ok.title, "é".repeat(200));
    // Surrounding white space does not count.
    let padded = format!("   {}   ", "y".repeat(200));
    let ok = create_ticket(&app, &alice, new_ticket(&padded)).await;
    assert_eq!(ok.title, "y".repeat(200));
}

#[tokio::test]
async fn create_description_limit_is_65536_bytes() {
    let app = spawn_app().await;
    let alice = app.caller(Role::Agent).await;
    let err = create_err(
        &app,
        &alice,
        pb::Ticket {
            description: "d".repeat(65_537),
            ..new_ticket("too long")
        },
    )
    .await;
    assert_only_violation(&err, "ticket.description", "TOO_LONG");
    // Bytes, not characters: 32769 two-byte characters are 65538 bytes.
    let err = create_err(
        &app,
        &alice,
        pb::Ticket {
            description: "é".repeat(32_769),
            ..new_ticket("too long")
        },
    )
    .await;
    assert_only_violation(&err, "ticket.description", "TOO_LONG");
    assert_eq!(count_tickets(&app, alice.tenant).await, 0);

    let ok = create_ticket(
        &app,
        &alice,
        pb::Ticket {
            description: "d".repeat(65_536),
            ..new_ticket("just fits")
        },
    )
    .await;
    assert_eq!(ok.description.len(), 65_536);
    assert_eq!(get(&app, &alice, &ok.id).await.description, "d".repeat(65_536));
}

#[tokio::test]
async fn create_with_21_distinct_tags_is_too_many() {
    let app = spawn_app().await;
    let alice = app.caller(Role::Agent).await;
    let tags: Vec<String> = (0..21).map(|i| format!("tag{i:02}")).collect();
    let err = create_err(
        &app,
        &alice,
        pb::Ticket {
            tags: tags.clone(),
            ..new_ticket("tags")
        },
    )
    .await;
    assert_only_violation(&err, "ticket.tags", "TOO_MANY");
    assert_eq!(count_tickets(&app, alice.tenant).await, 0);

    // 20 distinct tags are fine, and duplicates do not count towards the limit.
    let mut twenty: Vec<String> = tags[..20].to_vec();
    twenty.push(" tag00 ".into());
    twenty.push("tag05".into());
    let ok = create_ticket(
        &app,
        &alice,
        pb::Ticket {
            tags: twenty,
            ..new_ticket("tags")
        },
    )
    .await;
    assert_eq!(ok.tags, tags[..20].to_vec());
}

#[tokio::test]
async fn create_with_invalid_tag_names_its_index() {
    let app = spawn_app().await;
    let alice = app.caller(Role::Agent).await;
    let err = create_err(
        &app,
        &alice,
        pb::Ticket {
            tags: vec!["ok".into(), String::new()],
            ..new_ticket("tags")
        },
    )
    .await;
    assert_only_violation(&err, "ticket.tags[1]", "INVALID_TAG");

    let err = create_err(
        &app,
        &alice,
        pb::Ticket {
            tags: vec!["   ".into(), "ok".into()],
            ..new_ticket("tags")
        },
    )
    .await;
    assert_only_violation(&err, "ticket.tags[0]", "INVALID_TAG");

    let err = create_err(
        &app,
        &alice,
        pb::Ticket {
            tags: vec!["a".into(), "b".into(), "t".repeat(51)],
            ..new_ticket("tags")
        },
    )
    .await;
    assert_only_violation(&err, "ticket.tags[2]", "INVALID_TAG");

    // Two bad tags: both reported.
    let err = create_err(
        &app,
        &alice,
        pb::Ticket {
            tags: vec![String::new(), "ok".into(), "t".repeat(51)],
            ..new_ticket("tags")
        },
    )
    .await;
    assert_violations(
        &err,
        &[("ticket.tags[0]", "INVALID_TAG"), ("ticket.tags[2]", "INVALID_TAG")],
    );
    assert_eq!(count_tickets(&app, alice.tenant).await, 0);

    // 50 characters is the limit.
    let ok = create_ticket(
        &app,
        &alice,
        pb::Ticket {
            tags: vec!["t".repeat(50)],
            ..new_ticket("tags")
        },
    )
    .await;
    assert_eq!(ok.tags, vec!["t".repeat(50)]);
}

#[tokio::test]
async fn create_with_unknown_enum_values_is_invalid() {
    let app = spawn_app().await;
    let alice = app.caller(Role::Agent).await;
    let err = create_err(
        &app,
        &alice,
        pb::Ticket {
            status: 99,
            ..new_ticket("bad status")
        },
    )
    .await;
    assert_only_violation(&err, "ticket.status", "INVALID_ENUM_VALUE");

    let err = create_err(
        &app,
        &alice,
        pb::Ticket {
            priority: -1,
            ..new_ticket("bad priority")
        },
    )
    .await;
    assert_only_violation(&err, "ticket.priority", "INVALID_ENUM_VALUE");
    assert_eq!(count_tickets(&app, alice.tenant).await, 0);
}

#[tokio::test]
async fn create_with_malformed_assignee_is_invalid_id() {
    let app = spawn_app().await;
    let alice = app.caller(Role::Agent).await;
    for bad in ["not-a-uuid", "12345", " "] {
        let err = create_err(
            &app,
            &alice,
            pb::Ticket {
                assignee_id: bad.into(),
                ..new_ticket("assignee")
            },
        )
        .await;
        assert_only_violation(&err, "ticket.assignee_id", "INVALID_ID");
    }
    assert_eq!(count_tickets(&app, alice.tenant).await, 0);
}

#[tokio::test]
async fn create_with_assignee_outside_tenant_is_not_found() {
    let app = spawn_app().await;
    let alice = app.caller(Role::Agent).await;
    let stranger = app.caller(Role::Agent).await;
    // A random id and another tenant's user answer alike.
    for assignee in [Uuid::now_v7(), stranger.user.0] {
        let err = create_err(
            &app,
            &alice,
            pb::Ticket {
                assignee_id: assignee.to_string(),
                ..new_ticket("assignee")
            },
        )
        .await;
        assert_only_violation(&err, "ticket.assignee_id", "ASSIGNEE_NOT_FOUND");
    }
    assert_eq!(count_tickets(&app, alice.tenant).await, 0);
    assert_eq!(count_tickets(&app, stranger.tenant).await, 0);
}

#[tokio::test]
async fn create_with_malformed_request_id_is_invalid_id() {
    let app = spawn_app().await;
    let alice = app.caller(Role::Agent).await;
    for bad in ["retry-1", "1234", "zzzzzzzz-zzzz-zzzz-zzzz-zzzzzzzzzzzz"] {
        let err = try_create(&app, &alice, Some(new_ticket("rid")), bad)
            .await
            .expect_err("malformed request_id");
        assert_only_violation(&err, "request_id", "INVALID_ID");
    }
    assert_eq!(count_tickets(&app, alice.tenant).await, 0);
}

#[tokio::test]
async fn create_reports_every_violation_at_once() {
    let app = spawn_app().await;
    let alice = app.caller(Role::Agent).await;
    let err = try_create(
        &app,
        &alice,
        Some(pb::Ticket {
            title: "  ".into(),
            description: "d".repeat(65_537),
            status: 42,
            priority: 42,
            assignee_id: "nobody".into(),
            tags: vec!["fine".into(), String::new()],
            ..Default::default()
        }),
        "not-a-uuid",
    )
    .await
    .expect_err("many violations");
    assert_violations(
        &err,
        &[
            ("ticket.title", "REQUIRED"),
            ("ticket.description", "TOO_LONG"),
            ("ticket.status", "INVALID_ENUM_VALUE"),
            ("ticket.priority", "INVALID_ENUM_VALUE"),
            ("ticket.assignee_id", "INVALID_ID"),
            ("ticket.tags[1]", "INVALID_TAG"),
            ("request_id", "INVALID_ID"),
        ],
    );
    assert_eq!(count_tickets(&app, alice.tenant).await, 0);
}

// ---------------------------------------------------------------------------
// GetTicket
// ---------------------------------------------------------------------------

#[tokio::test]
async fn get_unknown_id_is_not_found_with_resource_info() {
    let app = spawn_app().await;
    let alice = app.caller(Role::Agent).await;
    create_ticket(&app, &alice, new_ticket("exists")).await;
    let id = Uuid::now_v7().to_string();
    let err = try_get(&app, &alice, &id).await.expect_err("unknown id");
    assert_ticket_not_found(&err, &id);
}

#[tokio::test]
async fn get_another_tenants_ticket_is_not_found() {
    let app = spawn_app().await;
    let alice = app.caller(Role::Agent).await;
    let mallory = app.caller(Role::Admin).await;
    let t = create_ticket(&app, &alice, new_ticket("private")).await;
    let err = try_get(&app, &mallory, &t.id).await.expect_err("other tenant");
    assert_ticket_not_found(&err, &t.id);
}

#[tokio::test]
async fn get_malformed_or_empty_id_is_invalid_argument() {
    let app = spawn_app().await;
    let alice = app.caller(Role::Agent).await;
    for bad in ["not-a-uuid", "123", "../tickets"] {
        let err = try_get(&app, &alice, bad).await.expect_err("malformed id");
        assert_only_violation(&err, "id", "INVALID_ID");
    }
    let err = try_get(&app, &alice, "").await.expect_err("empty id");
    assert_only_violation(&err, "id", "REQUIRED");
}
