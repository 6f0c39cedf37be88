//! Tickets CRUD, UpdateTicket: update masks (AIP-134), validation and
//! not-found paths, resolve time and assignee, and etags (AIP-154).

use deskd::{
    proto::tickets::v1::{self as pb, TicketPriority, TicketStatus},
    users::model::Role,
};
use prost_types::Timestamp;
use tonic::Code;
use tonic_types::StatusExt as _;
use uuid::Uuid;

use crate::{helpers::*, tickets_support::*};

// ---------------------------------------------------------------------------
// Private helpers
// ---------------------------------------------------------------------------

fn ts_key(t: &Option<Timestamp>) -> (i64, i32) {
    let t = t.as_ref().expect("timestamp set");
    (t.seconds, t.nanos)
}

// ---------------------------------------------------------------------------
// UpdateTicket (AIP-134)
// ---------------------------------------------------------------------------

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
