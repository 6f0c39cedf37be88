//! ListTickets: keyset pagination under concurrent writes, page sizes, page
//! tokens, filters, ordering and tenant isolation.

use std::{
    collections::{BTreeSet, HashMap, HashSet},
    sync::Arc,
};

use deskd::{
    proto::tickets::v1::{
        self as pb, CreateTicketRequest, ListTicketsRequest, ListTicketsResponse, TicketPriority, TicketStatus,
        UpdateTicketRequest,
    },
    users::model::Role,
};
use prost_types::{FieldMask, Timestamp};
use tokio::sync::{Semaphore, watch};
use tonic::{Code, Status};
use tonic_types::StatusExt as _;
use uuid::Uuid;

use crate::helpers::*;

// ---------------------------------------------------------------------------
// Private helpers
// ---------------------------------------------------------------------------

async fn try_list(app: &TestApp, caller: &Caller, req: ListTicketsRequest) -> Result<ListTicketsResponse, Status> {
    app.tickets()
        .list_tickets(authed(&caller.token, req))
        .await
        .map(|r| r.into_inner())
}

async fn list(app: &TestApp, caller: &Caller, req: ListTicketsRequest) -> ListTicketsResponse {
    try_list(app, caller, req).await.expect("list tickets")
}

async fn list_err(app: &TestApp, caller: &Caller, req: ListTicketsRequest) -> Status {
    try_list(app, caller, req).await.expect_err("list should fail")
}

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

fn ids(tickets: &[pb::Ticket]) -> BTreeSet<String> {
    tickets.iter().map(|t| t.id.clone()).collect()
}

/// INVALID_ARGUMENT with exactly one violation `field`/`reason`.
#[track_caller]
fn assert_only_violation(status: &Status, field: &str, want: &str) {
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

#[track_caller]
fn assert_invalid_token(status: &Status) {
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    assert_only_violation(status, "page_token", "INVALID_PAGE_TOKEN");
}

/// (seconds, nanos, id) — the keyset sort key of a ticket.
fn key(t: &pb::Ticket, update_time: bool) -> (i64, i32, Uuid) {
    let ts = if update_time { &t.update_time } else { &t.create_time };
    let ts = ts.as_ref().expect("timestamp");
    (ts.seconds, ts.nanos, Uuid::parse_str(&t.id).expect("uuid id"))
}

#[track_caller]
fn assert_strictly_ordered(tickets: &[pb::Ticket], update_time: bool, desc: bool) {
    for w in tickets.windows(2) {
        let (a, b) = (key(&w[0], update_time), key(&w[1], update_time));
        if desc {
            assert!(a > b, "not strictly descending: {a:?} then {b:?}");
        } else {
            assert!(a < b, "not strictly ascending: {a:?} then {b:?}");
        }
    }
}

/// Creates `n` tickets titled `{prefix} {i}` with up to `parallel` in flight.
async fn create_many(app: &TestApp, caller: &Caller, prefix: &str, n: usize, parallel: usize) -> Vec<pb::Ticket> {
    let mut tasks = tokio::task::JoinSet::new();
    for w in 0..parallel {
        let mut client = app.tickets();
        let token = caller.token.clone();
        let prefix = prefix.to_string();
        tasks.spawn(async move {
            let mut made = Vec::new();
            for i in (w..n).step_by(parallel) {
                let t = client
                    .create_ticket(authed(
                        &token,
                        CreateTicketRequest {
                            ticket: Some(new_ticket(&format!("{prefix} {i}"))),
                            request_id: String::new(),
                        },
                    ))
                    .await
                    .expect("create ticket")
                    .into_inner()
                    .ticket
                    .expect("ticket");
                made.push(t);
            }
            made
        });
    }
    let mut all = Vec::with_capacity(n);
    while let Some(made) = tasks.join_next().await {
        all.extend(made.expect("create task"));
    }
    assert_eq!(all.len(), n);
    all
}

/// The result of one pagination walk with concurrent inserts.
struct Walk {
    /// Every ticket returned, in order.
    seen: Vec<pb::Ticket>,
    /// Pages requested.
    pages: usize,
    /// Ids the concurrent writer created during the walk.
    created_during: Vec<String>,
}

/// Walks every page of `order_by` with `page_size` while a concurrent task
/// creates tickets for the same tenant. The writer may create one ticket per
/// page requested (so an ascending walk, which sees the new tickets at its
/// end, always finishes), and before requesting page k+1 the walker waits
/// until the writer has committed k tickets: every page boundary has at
/// least one insert behind it, and each insert overlaps list requests.
async fn walk_with_concurrent_inserts(
    app: &TestApp,
    walker: &Caller,
    writer: &Caller,
    order_by: &str,
    page_size: i32,
) -> Walk {
    let permits = Arc::new(Semaphore::new(0));
    let (stop_tx, mut stop_rx) = watch::channel(false);
    let (count_tx, mut count_rx) = watch::channel(0usize);
    let writer_task = {
        let permits = permits.clone();
        let mut client = app.tickets();
        let token = writer.token.clone();
        tokio::spawn(async move {
            let mut created = Vec::new();
            loop {
                let permit = tokio::select! {
                    biased;
                    _ = stop_rx.wait_for(|stop| *stop) => break,
                    p = permits.acquire() => p.expect("semaphore open"),
                };
                permit.forget();
                let t = client
                    .create_ticket(authed(
                        &token,
                        CreateTicketRequest {
                            ticket: Some(new_ticket(&format!("concurrent {}", created.len()))),
                            request_id: String::new(),
                        },
                    ))
                    .await
                    .expect("concurrent create")
                    .into_inner()
                    .ticket
                    .expect("ticket");
                created.push(t.id);
                count_tx.send_replace(created.len());
            }
            created
        })
    };

    let mut seen = Vec::new();
    let mut token = String::new();
    let mut pages = 0usize;
    loop {
        assert!(pages < 10_000, "pagination did not end");
        if pages > 0 {
            // At least `pages` inserts committed since the walk began.
            count_rx.wait_for(|n| *n >= pages).await.expect("writer alive");
        }
        // Allow one more insert, overlapping the list request below.
        permits.add_permits(1);
        let page = list(
            app,
            walker,
            ListTicketsRequest {
                page_size,
                page_token: token.clone(),
                order_by: order_by.to_string(),
                ..Default::default()
            },
        )
        .await;
        pages += 1;
        assert!(
            page.tickets.len() <= page_size as usize,
            "page of {} > {page_size}",
            page.tickets.len()
        );
        if !page.next_page_token.is_empty() {
            assert_eq!(
                page.tickets.len(),
                page_size as usize,
                "only the last page may be short"
            );
        }
        seen.extend(page.tickets);
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    stop_tx.send_replace(true);
    let created_during = writer_task.await.expect("writer task");
    assert!(
        created_during.len() + 1 >= pages,
        "the writer created {} tickets over {pages} pages",
        created_during.len()
    );
    Walk {
        seen,
        pages,
        created_during,
    }
}

/// Every id in `expected` appears exactly once in `seen`, no id appears twice,
/// and every seen id is either expected or `extra`.
#[track_caller]
fn assert_each_once(seen: &[pb::Ticket], expected: &HashSet<String>, extra: &HashSet<String>) {
    let mut counts: HashMap<&str, usize> = HashMap::new();
    for t in seen {
        *counts.entry(t.id.as_str()).or_default() += 1;
    }
    let dupes: Vec<_> = counts.iter().filter(|(_, n)| **n > 1).collect();
    assert!(dupes.is_empty(), "ids seen more than once: {dupes:?}");
    let missing: Vec<_> = expected.iter().filter(|id| !counts.contains_key(id.as_str())).collect();
    assert!(missing.is_empty(), "{} ids never seen: {missing:?}", missing.len());
    let foreign: Vec<_> = counts
        .keys()
        .filter(|id| !expected.contains(**id) && !extra.contains(**id))
        .collect();
    assert!(foreign.is_empty(), "unexpected ids: {foreign:?}");
}

fn ts(t: &Option<Timestamp>) -> Timestamp {
    t.expect("timestamp")
}

// ---------------------------------------------------------------------------
// Pagination
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn pagination_walk_sees_each_ticket_once_while_tickets_are_created() {
    // This test measures pagination, not the rate limiter: ~1,500 RPCs from
    // one tenant in a few seconds would exceed the default per-principal burst.
    let app = spawn_app_with(|c| c.rate_limit.enabled = false).await;
    let alice = app.caller(Role::Agent).await;
    let writer = app.colleague(&alice, Role::Agent).await;

    let originals = create_many(&app, &alice, "original", 1_000, 16).await;
    let original_ids: HashSet<String> = originals.iter().map(|t| t.id.clone()).collect();
    assert_eq!(original_ids.len(), 1_000);

    // Newest first (the default order).
    let desc = walk_with_concurrent_inserts(&app, &alice, &writer, "", 7).await;
    assert!(desc.pages >= 1_000 / 7);
    assert_strictly_ordered(&desc.seen, false, true);
    let during_desc: HashSet<String> = desc.created_during.iter().cloned().collect();
    assert_each_once(&desc.seen, &original_ids, &during_desc);

    // Oldest first: the walk must see everything that existed when it began
    // (the originals and the first walk's inserts) exactly once; tickets
    // inserted during this walk may show up at its end.
    let existing: HashSet<String> = original_ids.union(&during_desc).cloned().collect();
    let asc = walk_with_concurrent_inserts(&app, &alice, &writer, "create_time asc", 7).await;
    assert_strictly_ordered(&asc.seen, false, false);
    let during_asc: HashSet<String> = asc.created_during.iter().cloned().collect();
    assert_each_once(&asc.seen, &existing, &during_asc);
    // Anything new that appeared comes after every pre-existing ticket.
    if let Some(first_new) = asc.seen.iter().position(|t| during_asc.contains(&t.id)) {
        assert!(
            asc.seen[first_new..].iter().all(|t| during_asc.contains(&t.id)),
            "tickets created during the ascending walk appear only at its end"
        );
    }

    let mut conn = app.db.owner_conn().await;
    let rows: i64 = sqlx::query_scalar("select count(*) from tickets where tenant_id = $1")
        .bind(alice.tenant.0)
        .fetch_one(&mut conn)
        .await
        .expect("count");
    assert_eq!(
        rows as usize,
        1_000 + desc.created_during.len() + asc.created_during.len()
    );
}

#[tokio::test]
async fn page_size_defaults_to_50_and_is_capped_at_500() {
    let app = spawn_app_with(|c| c.rate_limit.enabled = false).await;
    let alice = app.caller(Role::Agent).await;
    let all = create_many(&app, &alice, "t", 510, 16).await;
    let all_ids = ids(&all);

    let page = list(&app, &alice, ListTicketsRequest::default()).await;
    assert_eq!(page.tickets.len(), 50, "page_size 0 means 50");
    assert!(!page.next_page_token.is_empty());

    let page = list(
        &app,
        &alice,
        ListTicketsRequest {
            page_size: 1_000,
            ..Default::default()
        },
    )
    .await;
    assert_eq!(page.tickets.len(), 500, "page_size is capped at 500");
    assert!(!page.next_page_token.is_empty());
    assert_strictly_ordered(&page.tickets, false, true);
    let rest = list(
        &app,
        &alice,
        ListTicketsRequest {
            page_size: 1_000,
            page_token: page.next_page_token.clone(),
            ..Default::default()
        },
    )
    .await;
    assert_eq!(rest.tickets.len(), 10);
    assert_eq!(rest.next_page_token, "", "the last page has no token");
    let mut seen = ids(&page.tickets);
    seen.extend(ids(&rest.tickets));
    assert_eq!(seen, all_ids);

    let page = list(
        &app,
        &alice,
        ListTicketsRequest {
            page_size: i32::MAX,
            ..Default::default()
        },
    )
    .await;
    assert_eq!(page.tickets.len(), 500);

    // A page exactly as big as what remains is the last one.
    let page = list(
        &app,
        &alice,
        ListTicketsRequest {
            page_size: 500,
            ..Default::default()
        },
    )
    .await;
    let rest = list(
        &app,
        &alice,
        ListTicketsRequest {
            page_size: 10,
            page_token: page.next_page_token,
            ..Default::default()
        },
    )
    .await;
    assert_eq!(rest.tickets.len(), 10);
    assert_eq!(rest.next_page_token, "");

    let page = list(
        &app,
        &alice,
        ListTicketsRequest {
            page_size: 1,
            ..Default::default()
        },
    )
    .await;
    assert_eq!(page.tickets.len(), 1);
    assert_eq!(
        page.tickets[0],
        *all.iter().max_by_key(|t| key(t, false)).expect("some")
    );
}

#[tokio::test]
async fn negative_page_size_is_invalid() {
    let app = spawn_app().await;
    let alice = app.caller(Role::Agent).await;
    for size in [-1, i32::MIN] {
        let err = list_err(
            &app,
            &alice,
            ListTicketsRequest {
                page_size: size,
                ..Default::default()
            },
        )
        .await;
        assert_only_violation(&err, "page_size", "INVALID_PAGE_SIZE");
    }
}

#[tokio::test]
async fn small_listings_end_with_an_empty_token() {
    let app = spawn_app().await;
    let alice = app.caller(Role::Agent).await;
    let empty = list(&app, &alice, ListTicketsRequest::default()).await;
    assert!(empty.tickets.is_empty());
    assert_eq!(empty.next_page_token, "");

    let a = create_ticket(&app, &alice, new_ticket("a")).await;
    let b = create_ticket(&app, &alice, new_ticket("b")).await;
    let c = create_ticket(&app, &alice, new_ticket("c")).await;
    let page = list(&app, &alice, ListTicketsRequest::default()).await;
    assert_eq!(page.tickets, vec![c.clone(), b.clone(), a.clone()]);
    assert_eq!(page.next_page_token, "");

    // Pages of 2: [c, b] then [a].
    let first = list(
        &app,
        &alice,
        ListTicketsRequest {
            page_size: 2,
            ..Default::default()
        },
    )
    .await;
    assert_eq!(first.tickets, vec![c, b]);
    assert!(!first.next_page_token.is_empty());
    let second = list(
        &app,
        &alice,
        ListTicketsRequest {
            page_size: 2,
            page_token: first.next_page_token,
            ..Default::default()
        },
    )
    .await;
    assert_eq!(second.tickets, vec![a]);
    assert_eq!(second.next_page_token, "");
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
