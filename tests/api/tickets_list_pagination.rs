//! ListTickets: keyset pagination under concurrent writes, and page sizes.

use std::{
    collections::{HashMap, HashSet},
    sync::Arc,
};

use deskd::{
    proto::tickets::v1::{self as pb, CreateTicketRequest, ListTicketsRequest},
    users::model::Role,
};
use tokio::sync::{Semaphore, watch};

use crate::{helpers::*, tickets_list_support::*};

// ---------------------------------------------------------------------------
// Private helpers
// ---------------------------------------------------------------------------

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
