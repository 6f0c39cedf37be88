//! ListTickets: filters, ordering and tenant isolation.

use std::collections::BTreeSet;

use deskd::{
    proto::tickets::v1::{self as pb, ListTicketsRequest, TicketPriority, TicketStatus, UpdateTicketRequest},
    users::model::Role,
};
use prost_types::{FieldMask, Timestamp};

use crate::{helpers::*, tickets_list_support::*};

// ---------------------------------------------------------------------------
// Private helpers
// ---------------------------------------------------------------------------

/// Every ticket matching `req` (whose page_token is ignored), walking all pages.
async fn list_all(app: &TestApp, caller: &Caller, req: ListTicketsRequest) -> Vec<pb::Ticket> {
    let mut out = Vec::new();
    let mut token = String::new();
    for _ in 0..10_000 {
        let page = list(
            app,
            caller,
            ListTicketsRequest {
                page_token: token.clone(),
                ..req.clone()
            },
        )
        .await;
        out.extend(page.tickets);
        if page.next_page_token.is_empty() {
            return out;
        }
        token = page.next_page_token;
    }
    panic!("pagination did not end");
}

// ---------------------------------------------------------------------------
// Filters and order
// ---------------------------------------------------------------------------

#[tokio::test]
async fn filters_return_exactly_the_matching_tickets() {
    let app = spawn_app().await;
    let alice = app.caller(Role::Agent).await;
    let bob = app.colleague(&alice, Role::Agent).await;
    let carol = app.colleague(&alice, Role::Agent).await;
    let mk = |title: &str, status: TicketStatus, priority: TicketPriority, assignee: &str, tags: &[&str]| pb::Ticket {
        status: status as i32,
        priority: priority as i32,
        assignee_id: assignee.to_string(),
        tags: tags.iter().map(|t| t.to_string()).collect(),
        ..new_ticket(title)
    };
    let b = bob.user.to_string();
    let c = carol.user.to_string();
    let t1 = create_ticket(
        &app,
        &alice,
        mk("t1", TicketStatus::Open, TicketPriority::Low, &b, &["billing"]),
    )
    .await;
    let t2 = create_ticket(
        &app,
        &alice,
        mk(
            "t2",
            TicketStatus::Waiting,
            TicketPriority::High,
            "",
            &["billing", "vip"],
        ),
    )
    .await;
    let t3 = create_ticket(
        &app,
        &alice,
        mk("t3", TicketStatus::InProgress, TicketPriority::Normal, &b, &[]),
    )
    .await;
    let t4 = create_ticket(
        &app,
        &alice,
        mk("t4", TicketStatus::Resolved, TicketPriority::Urgent, &c, &["vip"]),
    )
    .await;
    let t5 = create_ticket(
        &app,
        &alice,
        mk("t5", TicketStatus::Closed, TicketPriority::High, &b, &["billing-2"]),
    )
    .await;
    let t6 = create_ticket(
        &app,
        &alice,
        mk("t6", TicketStatus::Open, TicketPriority::Normal, "", &["VIP"]),
    )
    .await;
    // Another tenant's matching tickets never show up.
    let other = app.caller(Role::Agent).await;
    create_ticket(
        &app,
        &other,
        mk("x", TicketStatus::Open, TicketPriority::High, "", &["billing", "vip"]),
    )
    .await;

    let set = |ts: &[&pb::Ticket]| ts.iter().map(|t| t.id.clone()).collect::<BTreeSet<_>>();
    let query = |req: ListTicketsRequest| {
        let app = &app;
        let alice = &alice;
        async move {
            // Page size 2 so multi-page walks keep the filter.
            let got = list_all(app, alice, ListTicketsRequest { page_size: 2, ..req }).await;
            assert_strictly_ordered(&got, false, true);
            ids(&got)
        }
    };

    assert_eq!(
        query(ListTicketsRequest::default()).await,
        set(&[&t1, &t2, &t3, &t4, &t5, &t6])
    );
    assert_eq!(
        query(ListTicketsRequest {
            assignee_id: b.clone(),
            ..Default::default()
        })
        .await,
        set(&[&t1, &t3, &t5])
    );
    assert_eq!(
        query(ListTicketsRequest {
            assignee_id: c.clone(),
            ..Default::default()
        })
        .await,
        set(&[&t4])
    );
    // A user with nothing assigned, and a random id: empty.
    assert_eq!(
        query(ListTicketsRequest {
            assignee_id: alice.user.to_string(),
            ..Default::default()
        })
        .await,
        set(&[])
    );
    assert_eq!(
        query(ListTicketsRequest {
            statuses: vec![TicketStatus::Open as i32, TicketStatus::Waiting as i32],
            ..Default::default()
        })
        .await,
        set(&[&t1, &t2, &t6])
    );
    assert_eq!(
        query(ListTicketsRequest {
            statuses: vec![TicketStatus::Resolved as i32],
            ..Default::default()
        })
        .await,
        set(&[&t4])
    );
    assert_eq!(
        query(ListTicketsRequest {
            statuses: vec![TicketStatus::Closed as i32, TicketStatus::Closed as i32],
            ..Default::default()
        })
        .await,
        set(&[&t5])
    );
    assert_eq!(
        query(ListTicketsRequest {
            priority: TicketPriority::High as i32,
            ..Default::default()
        })
        .await,
        set(&[&t2, &t5])
    );
    assert_eq!(
        query(ListTicketsRequest {
            priority: TicketPriority::Normal as i32,
            ..Default::default()
        })
        .await,
        set(&[&t3, &t6])
    );
    // Tags match exactly (case-sensitive, no prefix match).
    assert_eq!(
        query(ListTicketsRequest {
            tag: "billing".into(),
            ..Default::default()
        })
        .await,
        set(&[&t1, &t2])
    );
    assert_eq!(
        query(ListTicketsRequest {
            tag: "vip".into(),
            ..Default::default()
        })
        .await,
        set(&[&t2, &t4])
    );
    assert_eq!(
        query(ListTicketsRequest {
            tag: "nope".into(),
            ..Default::default()
        })
        .await,
        set(&[])
    );
    // Filters combine with AND.
    assert_eq!(
        query(ListTicketsRequest {
            assignee_id: b.clone(),
            statuses: vec![TicketStatus::Open as i32, TicketStatus::Closed as i32],
            priority: TicketPriority::High as i32,
            ..Default::default()
        })
        .await,
        set(&[&t5])
    );
    assert_eq!(
        query(ListTicketsRequest {
            tag: "billing".into(),
            priority: TicketPriority::High as i32,
            ..Default::default()
        })
        .await,
        set(&[&t2])
    );
}

#[tokio::test]
async fn create_time_range_is_start_inclusive_end_exclusive() {
    let app = spawn_app().await;
    let alice = app.caller(Role::Agent).await;
    let mut tickets = Vec::new();
    for i in 0..6 {
        tickets.push(create_ticket(&app, &alice, new_ticket(&format!("t{i}"))).await);
    }
    let in_range = |start: Option<&Timestamp>, end: Option<&Timestamp>| {
        tickets
            .iter()
            .filter(|t| {
                let k = key(t, false);
                start.is_none_or(|s| (k.0, k.1) >= (s.seconds, s.nanos))
                    && end.is_none_or(|e| (k.0, k.1) < (e.seconds, e.nanos))
            })
            .map(|t| t.id.clone())
            .collect::<BTreeSet<_>>()
    };
    let start = ts(&tickets[1].create_time);
    let end = ts(&tickets[4].create_time);

    let both = ids(&list_all(
        &app,
        &alice,
        ListTicketsRequest {
            create_time_start: Some(start),
            create_time_end: Some(end),
            ..Default::default()
        },
    )
    .await);
    assert_eq!(both, in_range(Some(&start), Some(&end)));
    assert!(both.contains(&tickets[1].id), "start is inclusive");
    assert!(!both.contains(&tickets[4].id), "end is exclusive");
    assert!(!both.contains(&tickets[0].id));

    let from = ids(&list_all(
        &app,
        &alice,
        ListTicketsRequest {
            create_time_start: Some(start),
            page_size: 2,
            ..Default::default()
        },
    )
    .await);
    assert_eq!(from, in_range(Some(&start), None));
    assert!(from.contains(&tickets[1].id) && from.contains(&tickets[5].id));

    let until = ids(&list_all(
        &app,
        &alice,
        ListTicketsRequest {
            create_time_end: Some(end),
            ..Default::default()
        },
    )
    .await);
    assert_eq!(until, in_range(None, Some(&end)));
    assert!(until.contains(&tickets[0].id) && !until.contains(&tickets[4].id));

    // A one-microsecond window around one ticket holds just that ticket (and
    // any sharing its microsecond).
    let t2 = ts(&tickets[2].create_time);
    let mut t2_end = t2;
    t2_end.nanos += 1_000;
    if t2_end.nanos >= 1_000_000_000 {
        t2_end.nanos -= 1_000_000_000;
        t2_end.seconds += 1;
    }
    let window = ids(&list_all(
        &app,
        &alice,
        ListTicketsRequest {
            create_time_start: Some(t2),
            create_time_end: Some(t2_end),
            ..Default::default()
        },
    )
    .await);
    assert_eq!(window, in_range(Some(&t2), Some(&t2_end)));
    assert!(window.contains(&tickets[2].id));
}

#[tokio::test]
async fn invalid_create_time_range_is_rejected() {
    let app = spawn_app().await;
    let alice = app.caller(Role::Agent).await;
    let t = Timestamp {
        seconds: 1_800_000_000,
        nanos: 0,
    };
    let earlier = Timestamp {
        seconds: 1_700_000_000,
        nanos: 0,
    };
    // Equal: an empty half-open range.
    let err = list_err(
        &app,
        &alice,
        ListTicketsRequest {
            create_time_start: Some(t),
            create_time_end: Some(t),
            ..Default::default()
        },
    )
    .await;
    assert_only_violation(&err, "create_time_end", "INVALID_RANGE");
    // Reversed.
    let err = list_err(
        &app,
        &alice,
        ListTicketsRequest {
            create_time_start: Some(t),
            create_time_end: Some(earlier),
            ..Default::default()
        },
    )
    .await;
    assert_only_violation(&err, "create_time_end", "INVALID_RANGE");
}

#[tokio::test]
async fn invalid_filter_values_are_rejected() {
    let app = spawn_app().await;
    let alice = app.caller(Role::Agent).await;

    let err = list_err(
        &app,
        &alice,
        ListTicketsRequest {
            statuses: vec![TicketStatus::Unspecified as i32],
            ..Default::default()
        },
    )
    .await;
    assert_only_violation(&err, "statuses[0]", "INVALID_ENUM_VALUE");

    let err = list_err(
        &app,
        &alice,
        ListTicketsRequest {
            statuses: vec![TicketStatus::Open as i32, 99],
            ..Default::default()
        },
    )
    .await;
    assert_only_violation(&err, "statuses[1]", "INVALID_ENUM_VALUE");

    let err = list_err(
        &app,
        &alice,
        ListTicketsRequest {
            priority: 99,
            ..Default::default()
        },
    )
    .await;
    assert_only_violation(&err, "priority", "INVALID_ENUM_VALUE");

    let err = list_err(
        &app,
        &alice,
        ListTicketsRequest {
            assignee_id: "bob".into(),
            ..Default::default()
        },
    )
    .await;
    assert_only_violation(&err, "assignee_id", "INVALID_ID");

    for bad in [
        "title",
        "create_time sideways",
        "create_time desc id",
        "update_time,create_time",
        "-create_time",
    ] {
        let err = list_err(
            &app,
            &alice,
            ListTicketsRequest {
                order_by: bad.into(),
                ..Default::default()
            },
        )
        .await;
        assert_only_violation(&err, "order_by", "INVALID_ORDER_BY");
    }
}

#[tokio::test]
async fn order_by_update_time_desc_lists_recently_updated_first() {
    let app = spawn_app().await;
    let alice = app.caller(Role::Agent).await;
    let mut tickets = Vec::new();
    for i in 0..5 {
        tickets.push(create_ticket(&app, &alice, new_ticket(&format!("t{i}"))).await);
    }
    // Update the oldest one.
    let updated = app
        .tickets()
        .update_ticket(authed(
            &alice.token,
            UpdateTicketRequest {
                ticket: Some(pb::Ticket {
                    title: "bumped".into(),
                    ..tickets[0].clone()
                }),
                update_mask: Some(FieldMask {
                    paths: vec!["title".into()],
                }),
            },
        ))
        .await
        .expect("update")
        .into_inner()
        .ticket
        .expect("ticket");

    let by_update = list(
        &app,
        &alice,
        ListTicketsRequest {
            order_by: "update_time desc".into(),
            ..Default::default()
        },
    )
    .await
    .tickets;
    assert_eq!(by_update.len(), 5);
    assert_eq!(by_update[0], updated, "the updated ticket comes first");
    assert_strictly_ordered(&by_update, true, true);

    // Still the oldest by create_time.
    let by_create = list(&app, &alice, ListTicketsRequest::default()).await.tickets;
    assert_eq!(by_create.last(), Some(&updated));
    assert_strictly_ordered(&by_create, false, true);

    // Ascending update_time: it comes last; paging keeps the order.
    let asc = list_all(
        &app,
        &alice,
        ListTicketsRequest {
            order_by: "update_time".into(),
            page_size: 2,
            ..Default::default()
        },
    )
    .await;
    assert_eq!(asc.len(), 5);
    assert_eq!(asc.last(), Some(&updated));
    assert_strictly_ordered(&asc, true, false);
}

// ---------------------------------------------------------------------------
// Isolation
// ---------------------------------------------------------------------------

#[tokio::test]
async fn list_never_returns_another_tenants_tickets() {
    let app = spawn_app().await;
    let alice = app.caller(Role::Agent).await;
    let bob = app.caller(Role::Agent).await;
    let a: Vec<pb::Ticket> = {
        let mut v = Vec::new();
        for i in 0..4 {
            v.push(
                create_ticket(
                    &app,
                    &alice,
                    pb::Ticket {
                        tags: vec!["shared".into()],
                        ..new_ticket(&format!("a{i}"))
                    },
                )
                .await,
            );
        }
        v
    };
    let b: Vec<pb::Ticket> = {
        let mut v = Vec::new();
        for i in 0..2 {
            v.push(
                create_ticket(
                    &app,
                    &bob,
                    pb::Ticket {
                        tags: vec!["shared".into()],
                        ..new_ticket(&format!("b{i}"))
                    },
                )
                .await,
            );
        }
        v
    };

    let for_b = list_all(&app, &bob, ListTicketsRequest::default()).await;
    assert_eq!(ids(&for_b), ids(&b));
    let for_b = list_all(
        &app,
        &bob,
        ListTicketsRequest {
            tag: "shared".into(),
            page_size: 1,
            ..Default::default()
        },
    )
    .await;
    assert_eq!(ids(&for_b), ids(&b));
    // Filtering B's list by A's user as assignee finds nothing either.
    let for_b = list_all(
        &app,
        &bob,
        ListTicketsRequest {
            assignee_id: alice.user.to_string(),
            ..Default::default()
        },
    )
    .await;
    assert!(for_b.is_empty());

    let for_a = list_all(&app, &alice, ListTicketsRequest::default()).await;
    assert_eq!(ids(&for_a), ids(&a));

    // A third tenant sees nothing at all.
    let carol = app.caller(Role::Viewer).await;
    let page = list(&app, &carol, ListTicketsRequest::default()).await;
    assert!(page.tickets.is_empty());
    assert_eq!(page.next_page_token, "");
}
