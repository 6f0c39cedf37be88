//! Tickets CRUD: every RPC's success, validation and not-found paths, etags
//! (AIP-154), idempotent creates (AIP-155), roles and request ids.

use std::collections::BTreeSet;

use deskd::{
    proto::tickets::v1::{
        self as pb, CreateTicketRequest, DeleteTicketRequest, GetTicketRequest, ListTicketsRequest, TicketPriority,
        TicketStatus, UpdateTicketRequest,
    },
    tenancy::TenantId,
    users::model::Role,
};
use prost_types::{FieldMask, Timestamp};
use tonic::{Code, Request, Status};
use tonic_types::StatusExt as _;
use uuid::Uuid;

use crate::helpers::*;

const RESOURCE_TYPE: &str = "deskd.tickets.v1.Ticket";

// ---------------------------------------------------------------------------
// Private helpers
// ---------------------------------------------------------------------------

async fn try_create(
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

async fn create_err(app: &TestApp, caller: &Caller, ticket: pb::Ticket) -> Status {
    try_create(app, caller, Some(ticket), "")
        .await
        .expect_err("create should fail")
}

async fn try_get(app: &TestApp, caller: &Caller, id: &str) -> Result<pb::Ticket, Status> {
    app.tickets()
        .get_ticket(authed(&caller.token, GetTicketRequest { id: id.into() }))
        .await
        .map(|r| r.into_inner().ticket.expect("ticket in get response"))
}

async fn get(app: &TestApp, caller: &Caller, id: &str) -> pb::Ticket {
    try_get(app, caller, id).await.expect("get ticket")
}

fn mask(paths: &[&str]) -> Option<FieldMask> {
    Some(FieldMask {
        paths: paths.iter().map(|p| p.to_string()).collect(),
    })
}

async fn try_update_with(
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

async fn try_update(app: &TestApp, caller: &Caller, ticket: pb::Ticket, paths: &[&str]) -> Result<pb::Ticket, Status> {
    try_update_with(app, caller, Some(ticket), mask(paths)).await
}

async fn update(app: &TestApp, caller: &Caller, ticket: pb::Ticket, paths: &[&str]) -> pb::Ticket {
    try_update(app, caller, ticket, paths).await.expect("update ticket")
}

async fn try_delete(app: &TestApp, caller: &Caller, id: &str, etag: &str) -> Result<(), Status> {
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

async fn list_all(app: &TestApp, caller: &Caller) -> Vec<pb::Ticket> {
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
async fn count_tickets(app: &TestApp, tenant: TenantId) -> i64 {
    let mut conn = app.db.owner_conn().await;
    sqlx::query_scalar("select count(*) from tickets where tenant_id = $1")
        .bind(tenant.0)
        .fetch_one(&mut conn)
        .await
        .expect("count tickets")
}

/// Every (field, reason) of the status's BadRequest.
fn violations(status: &Status) -> BTreeSet<(String, String)> {
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
fn assert_violations(status: &Status, expected: &[(&str, &str)]) {
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    assert_eq!(reason(status), "INVALID_ARGUMENT", "{status:?}");
    let want: BTreeSet<(String, String)> = expected.iter().map(|(f, r)| (f.to_string(), r.to_string())).collect();
    assert_eq!(violations(status), want, "{status:?}");
}

/// INVALID_ARGUMENT with exactly one violation `field`/`reason`.
#[track_caller]
fn assert_only_violation(status: &Status, field: &str, reason: &str) {
    assert_field_violation(status, field, reason);
    assert_violations(status, &[(field, reason)]);
}

/// `code` with an ErrorInfo of `reason` in the `deskd` domain.
#[track_caller]
fn assert_error(status: &Status, code: Code, want_reason: &str) {
    assert_eq!(status.code(), code, "{status:?}");
    let details = status.get_error_details();
    let info = details.error_info().expect("ErrorInfo details");
    assert_eq!(info.reason, want_reason, "{status:?}");
    assert_eq!(info.domain, "deskd", "{status:?}");
}

/// NOT_FOUND naming the ticket `id` in ResourceInfo.
#[track_caller]
fn assert_ticket_not_found(status: &Status, id: &str) {
    assert_error(status, Code::NotFound, "NOT_FOUND");
    let details = status.get_error_details();
    let info = details.resource_info().expect("ResourceInfo details");
    assert_eq!(info.resource_type, RESOURCE_TYPE);
    assert_eq!(info.resource_name, id);
}

fn ts_key(t: &Option<Timestamp>) -> (i64, i32) {
    let t = t.as_ref().expect("timestamp set");
    (t.seconds, t.nanos)
}

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

// ---------------------------------------------------------------------------
// UpdateTicket (AIP-134)
// ---------------------------------------------------------------------------

async fn rich_ticket(app: &TestApp, caller: &Caller) -> pb::Ticket {
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

#[tokio::test]
async fn update_changes_only_masked_fields() {
    let app = spawn_app().await;
    let alice = app.caller(Role::Agent).await;
    let bob = app.colleague(&alice, Role::Agent).await;
    let before = rich_ticket(&app, &alice).await;

    let after = update(
        &app,
        &alice,
        pb::Ticket {
            id: before.id.clone(),
            title: "  new title ".into(),
            description: "SHOULD NOT BE STORED".into(),
            status: TicketStatus::Closed as i32,
            priority: TicketPriority::Urgent as i32,
            assignee_id: bob.user.to_string(),
            tags: vec!["ignored".into()],
            ..Default::default()
        },
        &["title"],
    )
    .await;
    assert_eq!(after.title, "new title");
    assert_eq!(after.description, "original description");
    assert_eq!(after.status, TicketStatus::Open as i32);
    assert_eq!(after.priority, TicketPriority::Low as i32);
    assert_eq!(after.assignee_id, "");
    assert_eq!(after.tags, vec!["keep"]);
    assert_eq!(after.reporter_id, before.reporter_id);
    assert_eq!(after.create_time, before.create_time);
    assert_eq!(after.resolve_time, None);
    assert_eq!(get(&app, &alice, &before.id).await, after);

    // Several fields at once, the others still untouched.
    let after2 = update(
        &app,
        &alice,
        pb::Ticket {
            id: before.id.clone(),
            title: "IGNORED".into(),
            description: "new description".into(),
            priority: TicketPriority::High as i32,
            tags: vec![" b".into(), "a".into(), "b".into()],
            ..Default::default()
        },
        &["description", "priority", "tags"],
    )
    .await;
    assert_eq!(after2.title, "new title");
    assert_eq!(after2.description, "new description");
    assert_eq!(after2.priority, TicketPriority::High as i32);
    assert_eq!(after2.tags, vec!["a", "b"]);
    assert_eq!(after2.status, TicketStatus::Open as i32);
    assert_eq!(get(&app, &alice, &before.id).await, after2);
}

#[tokio::test]
async fn update_without_mask_is_required() {
    let app = spawn_app().await;
    let alice = app.caller(Role::Agent).await;
    let t = rich_ticket(&app, &alice).await;
    let changed = pb::Ticket {
        title: "changed".into(),
        ..t.clone()
    };
    let err = try_update_with(&app, &alice, Some(changed.clone()), None)
        .await
        .expect_err("no mask");
    assert_only_violation(&err, "update_mask", "REQUIRED");
    let err = try_update_with(&app, &alice, Some(changed), mask(&[]))
        .await
        .expect_err("empty mask");
    assert_only_violation(&err, "update_mask", "REQUIRED");
    assert_eq!(get(&app, &alice, &t.id).await, t);
}

#[tokio::test]
async fn update_mask_rejects_wildcard_unknown_and_output_only_paths() {
    let app = spawn_app().await;
    let alice = app.caller(Role::Agent).await;
    let t = rich_ticket(&app, &alice).await;
    let changed = pb::Ticket {
        title: "changed".into(),
        ..t.clone()
    };

    let err = try_update(&app, &alice, changed.clone(), &["*"])
        .await
        .expect_err("wildcard");
    assert_only_violation(&err, "update_mask.paths[0]", "WILDCARD_NOT_ALLOWED");

    let err = try_update(&app, &alice, changed.clone(), &["nonsense"])
        .await
        .expect_err("unknown");
    assert_only_violation(&err, "update_mask.paths[0]", "UNKNOWN_FIELD");

    // The index names the offending path; the valid one is not applied.
    let err = try_update(&app, &alice, changed.clone(), &["title", "Title"])
        .await
        .expect_err("unknown second path");
    assert_only_violation(&err, "update_mask.paths[1]", "UNKNOWN_FIELD");

    for path in [
        "reporter_id",
        "create_time",
        "update_time",
        "resolve_time",
        "id",
        "etag",
    ] {
        let err = try_update(&app, &alice, changed.clone(), &[path])
            .await
            .expect_err("output only");
        assert_only_violation(&err, "update_mask.paths[0]", "FIELD_NOT_MUTABLE");
    }

    let err = try_update(&app, &alice, changed, &["title", "reporter_id", "bogus"])
        .await
        .expect_err("mixed");
    assert_violations(
        &err,
        &[
            ("update_mask.paths[1]", "FIELD_NOT_MUTABLE"),
            ("update_mask.paths[2]", "UNKNOWN_FIELD"),
        ],
    );
    assert_eq!(get(&app, &alice, &t.id).await, t, "nothing changed");
}

#[tokio::test]
async fn update_masked_unspecified_status_or_priority_is_required() {
    let app = spawn_app().await;
    let alice = app.caller(Role::Agent).await;
    let t = rich_ticket(&app, &alice).await;
    let err = try_update(
        &app,
        &alice,
        pb::Ticket {
            status: TicketStatus::Unspecified as i32,
            ..t.clone()
        },
        &["status"],
    )
    .await
    .expect_err("unspecified status");
    assert_only_violation(&err, "ticket.status", "REQUIRED");

    let err = try_update(
        &app,
        &alice,
        pb::Ticket {
            priority: TicketPriority::Unspecified as i32,
            ..t.clone()
        },
        &["priority"],
    )
    .await
    .expect_err("unspecified priority");
    assert_only_violation(&err, "ticket.priority", "REQUIRED");

    let err = try_update(
        &app,
        &alice,
        pb::Ticket {
            status: 77,
            ..t.clone()
        },
        &["status"],
    )
    .await
    .expect_err("unknown status");
    assert_only_violation(&err, "ticket.status", "INVALID_ENUM_VALUE");

    // Masked fields are validated like on create.
    let err = try_update(
        &app,
        &alice,
        pb::Ticket {
            title: " ".into(),
            ..t.clone()
        },
        &["title"],
    )
    .await
    .expect_err("blank title");
    assert_only_violation(&err, "ticket.title", "REQUIRED");
    assert_eq!(get(&app, &alice, &t.id).await, t);
}

#[tokio::test]
async fn update_advances_update_time_and_etag() {
    let app = spawn_app().await;
    let alice = app.caller(Role::Agent).await;
    let t = rich_ticket(&app, &alice).await;
    let after = update(
        &app,
        &alice,
        pb::Ticket {
            title: "changed".into(),
            ..t.clone()
        },
        &["title"],
    )
    .await;
    assert!(
        ts_key(&after.update_time) > ts_key(&t.update_time),
        "update_time must advance: {:?} -> {:?}",
        t.update_time,
        after.update_time
    );
    assert_eq!(after.create_time, t.create_time);
    assert!(!after.etag.is_empty());
    assert_ne!(after.etag, t.etag);
    assert_eq!(get(&app, &alice, &t.id).await, after);
}

#[tokio::test]
async fn update_with_unchanged_values_keeps_etag_and_update_time() {
    let app = spawn_app().await;
    let alice = app.caller(Role::Agent).await;
    let t = rich_ticket(&app, &alice).await;
    let same = update(
        &app,
        &alice,
        pb::Ticket {
            // Trimmed and normalised to the current values.
            title: "  original title ".into(),
            tags: vec!["keep".into(), " keep".into()],
            ..t.clone()
        },
        &["title", "description", "status", "priority", "assignee_id", "tags"],
    )
    .await;
    assert_eq!(same, t);
    assert_eq!(same.etag, t.etag);
    assert_eq!(same.update_time, t.update_time);
    assert_eq!(get(&app, &alice, &t.id).await, t);
}

#[tokio::test]
async fn update_status_sets_keeps_and_clears_resolve_time() {
    let app = spawn_app().await;
    let alice = app.caller(Role::Agent).await;
    let t = rich_ticket(&app, &alice).await;
    assert_eq!(t.resolve_time, None);

    let set_status = |t: &pb::Ticket, s: TicketStatus| pb::Ticket {
        status: s as i32,
        ..t.clone()
    };

    let in_progress = update(&app, &alice, set_status(&t, TicketStatus::InProgress), &["status"]).await;
    assert_eq!(in_progress.status, TicketStatus::InProgress as i32);
    assert_eq!(in_progress.resolve_time, None);

    let resolved = update(
        &app,
        &alice,
        set_status(&in_progress, TicketStatus::Resolved),
        &["status"],
    )
    .await;
    assert_eq!(resolved.status, TicketStatus::Resolved as i32);
    assert!(resolved.resolve_time.is_some());
    assert_eq!(resolved.resolve_time, resolved.update_time);

    let closed = update(&app, &alice, set_status(&resolved, TicketStatus::Closed), &["status"]).await;
    assert_eq!(closed.status, TicketStatus::Closed as i32);
    assert_eq!(
        closed.resolve_time, resolved.resolve_time,
        "RESOLVED -> CLOSED keeps resolve_time"
    );
    assert!(ts_key(&closed.update_time) > ts_key(&resolved.update_time));

    let reopened = update(&app, &alice, set_status(&closed, TicketStatus::Open), &["status"]).await;
    assert_eq!(reopened.status, TicketStatus::Open as i32);
    assert_eq!(reopened.resolve_time, None);
    assert_eq!(get(&app, &alice, &t.id).await, reopened);

    // Straight to CLOSED from an open state also sets it.
    let closed_again = update(&app, &alice, set_status(&reopened, TicketStatus::Closed), &["status"]).await;
    assert!(closed_again.resolve_time.is_some());
    assert_eq!(closed_again.resolve_time, closed_again.update_time);
}

#[tokio::test]
async fn update_sets_and_clears_assignee() {
    let app = spawn_app().await;
    let alice = app.caller(Role::Agent).await;
    let bob = app.colleague(&alice, Role::Agent).await;
    let stranger = app.caller(Role::Agent).await;
    let t = rich_ticket(&app, &alice).await;

    let assigned = update(
        &app,
        &alice,
        pb::Ticket {
            assignee_id: bob.user.to_string(),
            ..t.clone()
        },
        &["assignee_id"],
    )
    .await;
    assert_eq!(assigned.assignee_id, bob.user.to_string());
    assert_eq!(get(&app, &alice, &t.id).await, assigned);

    // Another tenant's user cannot be assigned; nothing changes.
    let err = try_update(
        &app,
        &alice,
        pb::Ticket {
            assignee_id: stranger.user.to_string(),
            ..assigned.clone()
        },
        &["assignee_id"],
    )
    .await
    .expect_err("foreign assignee");
    assert_only_violation(&err, "ticket.assignee_id", "ASSIGNEE_NOT_FOUND");
    let err = try_update(
        &app,
        &alice,
        pb::Ticket {
            assignee_id: "bob".into(),
            ..assigned.clone()
        },
        &["assignee_id"],
    )
    .await
    .expect_err("malformed assignee");
    assert_only_violation(&err, "ticket.assignee_id", "INVALID_ID");
    assert_eq!(get(&app, &alice, &t.id).await, assigned);

    let cleared = update(
        &app,
        &alice,
        pb::Ticket {
            assignee_id: String::new(),
            ..assigned.clone()
        },
        &["assignee_id"],
    )
    .await;
    assert_eq!(cleared.assignee_id, "");
    assert_ne!(cleared.etag, assigned.etag);
    assert_eq!(get(&app, &alice, &t.id).await, cleared);
}

#[tokio::test]
async fn update_without_ticket_or_id_is_required() {
    let app = spawn_app().await;
    let alice = app.caller(Role::Agent).await;
    let err = try_update_with(&app, &alice, None, mask(&["title"]))
        .await
        .expect_err("no ticket");
    assert_only_violation(&err, "ticket", "REQUIRED");

    let err = try_update(&app, &alice, new_ticket("no id"), &["title"])
        .await
        .expect_err("no id");
    assert_only_violation(&err, "ticket.id", "REQUIRED");

    let err = try_update(
        &app,
        &alice,
        pb::Ticket {
            id: "nope".into(),
            ..new_ticket("bad id")
        },
        &["title"],
    )
    .await
    .expect_err("bad id");
    assert_only_violation(&err, "ticket.id", "INVALID_ID");
}

#[tokio::test]
async fn update_unknown_or_foreign_id_is_not_found() {
    let app = spawn_app().await;
    let alice = app.caller(Role::Agent).await;
    let mallory = app.caller(Role::Agent).await;
    let id = Uuid::now_v7().to_string();
    let err = try_update(
        &app,
        &alice,
        pb::Ticket {
            id: id.clone(),
            ..new_ticket("ghost")
        },
        &["title"],
    )
    .await
    .expect_err("unknown id");
    assert_ticket_not_found(&err, &id);

    let t = rich_ticket(&app, &alice).await;
    let err = try_update(
        &app,
        &mallory,
        pb::Ticket {
            title: "hijacked".into(),
            ..t.clone()
        },
        &["title"],
    )
    .await
    .expect_err("foreign id");
    assert_ticket_not_found(&err, &t.id);
    assert_eq!(get(&app, &alice, &t.id).await, t);
}

// ---------------------------------------------------------------------------
// etag (AIP-154)
// ---------------------------------------------------------------------------

#[tokio::test]
async fn update_with_current_etag_succeeds_and_stale_etag_is_aborted() {
    let app = spawn_app().await;
    let alice = app.caller(Role::Agent).await;
    let v1 = rich_ticket(&app, &alice).await;

    // Current etag: succeeds.
    let v2 = update(
        &app,
        &alice,
        pb::Ticket {
            title: "second".into(),
            ..v1.clone()
        },
        &["title"],
    )
    .await;
    assert_eq!(v2.title, "second");
    assert_ne!(v2.etag, v1.etag);

    // Stale etag (v1's): ABORTED, nothing changes.
    let err = try_update(
        &app,
        &alice,
        pb::Ticket {
            title: "lost update".into(),
            description: "lost too".into(),
            ..v1.clone()
        },
        &["title", "description"],
    )
    .await
    .expect_err("stale etag");
    assert_error(&err, Code::Aborted, "ETAG_MISMATCH");
    let details = err.get_error_details();
    let pf = details.precondition_failure().expect("PreconditionFailure details");
    assert_eq!(pf.violations[0].r#type, "ETAG_MISMATCH");
    assert_eq!(get(&app, &alice, &v1.id).await, v2, "nothing changed");

    // A made-up etag is stale too.
    let err = try_update(
        &app,
        &alice,
        pb::Ticket {
            title: "lost update".into(),
            etag: "\"0000000000000000\"".into(),
            ..v2.clone()
        },
        &["title"],
    )
    .await
    .expect_err("bogus etag");
    assert_error(&err, Code::Aborted, "ETAG_MISMATCH");
    assert_eq!(get(&app, &alice, &v1.id).await, v2);

    // No etag: an unconditional update.
    let v3 = update(
        &app,
        &alice,
        pb::Ticket {
            title: "third".into(),
            etag: String::new(),
            ..v1.clone()
        },
        &["title"],
    )
    .await;
    assert_eq!(v3.title, "third");
    assert_ne!(v3.etag, v2.etag);
    assert_eq!(get(&app, &alice, &v1.id).await, v3);
}

#[tokio::test]
async fn delete_with_stale_etag_is_aborted_and_keeps_ticket() {
    let app = spawn_app().await;
    let alice = app.caller(Role::Agent).await;
    let v1 = rich_ticket(&app, &alice).await;
    let v2 = update(
        &app,
        &alice,
        pb::Ticket {
            title: "second".into(),
            ..v1.clone()
        },
        &["title"],
    )
    .await;

    let err = try_delete(&app, &alice, &v1.id, &v1.etag)
        .await
        .expect_err("stale etag");
    assert_error(&err, Code::Aborted, "ETAG_MISMATCH");
    assert_eq!(get(&app, &alice, &v1.id).await, v2, "still there");
    assert_eq!(count_tickets(&app, alice.tenant).await, 1);

    try_delete(&app, &alice, &v2.id, &v2.etag)
        .await
        .expect("delete with current etag");
    let err = try_get(&app, &alice, &v2.id).await.expect_err("deleted");
    assert_ticket_not_found(&err, &v2.id);
}

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
