//! GetTicketStats: the daily rollups staying exact through every kind of
//! ticket write.

use deskd::proto::tickets::v1::{self as pb, DeleteTicketRequest, TicketPriority, TicketStatus, UpdateTicketRequest};
use sqlx::PgConnection;
use uuid::Uuid;

use crate::{helpers::*, stats_support::*, users_support::*};

// ---------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------

/// The rollups as they are, and as a recount of `tickets` says they must be.
async fn assert_rollups_exact(conn: &mut PgConnection) {
    let created_diff: i64 = sqlx::query_scalar(
        "with truth as (
             select tenant_id, (create_time at time zone 'UTC')::date as day, status, priority, count(*) as n
             from tickets group by 1, 2, 3, 4),
         kept as (select tenant_id, day, status, priority, sum(n) as n from ticket_stats_created_daily
                   group by 1, 2, 3, 4 having sum(n) > 0)
         select count(*) from ((table truth except table kept) union all (table kept except table truth)) d",
    )
    .fetch_one(&mut *conn)
    .await
    .expect("compare created rollup");
    assert_eq!(created_diff, 0, "ticket_stats_created_daily differs from a recount");
    let resolved_diff: i64 = sqlx::query_scalar(
        "with truth as (
             select tenant_id, (resolve_time at time zone 'UTC')::date as day, priority,
                    coalesce(assignee_id, '00000000-0000-0000-0000-000000000000') as assignee_id, count(*) as n
             from tickets where resolve_time is not null group by 1, 2, 3, 4),
         kept as (select tenant_id, day, priority, assignee_id, sum(n) as n from ticket_stats_resolved_daily
                   group by 1, 2, 3, 4 having sum(n) > 0)
         select count(*) from ((table truth except table kept) union all (table kept except table truth)) d",
    )
    .fetch_one(&mut *conn)
    .await
    .expect("compare resolved rollup");
    assert_eq!(resolved_diff, 0, "ticket_stats_resolved_daily differs from a recount");
}

#[tokio::test]
async fn rollups_stay_exact_through_every_kind_of_write() {
    let w = world().await;
    let mut conn = w.app.db.owner_conn().await;
    assert_rollups_exact(&mut conn).await;

    let update = |id: Uuid, t: pb::Ticket, paths: &[&str]| {
        let mut c = w.app.tickets();
        let token = w.a.token.clone();
        let update_mask = mask(paths);
        async move {
            c.update_ticket(authed(
                &token,
                UpdateTicketRequest {
                    ticket: Some(pb::Ticket {
                        id: id.to_string(),
                        ..t
                    }),
                    update_mask,
                },
            ))
            .await
            .expect("update")
        }
    };
    let open: Vec<&Fx> = w.a_tickets.iter().filter(|t| !is_resolved(t.status)).collect();
    let done: Vec<&Fx> = w.a_tickets.iter().filter(|t| is_resolved(t.status)).collect();
    // Resolve, close, reopen, reprioritise, reassign, unassign, retag, delete.
    update(
        open[0].id,
        pb::Ticket {
            status: TicketStatus::Resolved as i32,
            ..Default::default()
        },
        &["status"],
    )
    .await;
    update(
        done[0].id,
        pb::Ticket {
            status: TicketStatus::Open as i32,
            ..Default::default()
        },
        &["status"],
    )
    .await;
    update(
        done[1].id,
        pb::Ticket {
            status: if done[1].status == TicketStatus::Closed {
                TicketStatus::Resolved as i32
            } else {
                TicketStatus::Closed as i32
            },
            ..Default::default()
        },
        &["status"],
    )
    .await;
    update(
        done[2].id,
        pb::Ticket {
            priority: TicketPriority::Urgent as i32,
            assignee_id: w.a_agents[2].to_string(),
            ..Default::default()
        },
        &["priority", "assignee_id"],
    )
    .await;
    update(
        open[1].id,
        pb::Ticket {
            priority: TicketPriority::Low as i32,
            assignee_id: String::new(),
            tags: vec!["moved".into()],
            ..Default::default()
        },
        &["priority", "assignee_id", "tags"],
    )
    .await;
    update(
        open[2].id,
        pb::Ticket {
            title: "only the title".into(),
            ..Default::default()
        },
        &["title"],
    )
    .await;
    for t in [open[3], done[3]] {
        w.app
            .tickets()
            .delete_ticket(authed(
                &w.a.token,
                DeleteTicketRequest {
                    id: t.id.to_string(),
                    etag: String::new(),
                },
            ))
            .await
            .expect("delete");
    }
    // The owner moves tickets across days (one statement, several rows).
    sqlx::query(
        "update tickets set create_time = create_time - interval '26 hours', \
                resolve_time = resolve_time + interval '30 hours' \
         where tenant_id = $1 and id = any($2)",
    )
    .bind(w.a.tenant.0)
    .bind(vec![open[4].id, done[4].id, done[5].id])
    .execute(&mut conn)
    .await
    .expect("move in time");
    assert_rollups_exact(&mut conn).await;

    let now_state = stored(&mut conn, w.a.tenant).await;
    assert_eq!(now_state.len(), w.a_tickets.len() - 2);
    for window in windows() {
        for f in [
            Filter::default(),
            Filter {
                priority: Some(TicketPriority::Urgent),
                ..Default::default()
            },
            Filter {
                assignee: Some(w.a_agents[2]),
                ..Default::default()
            },
        ] {
            check(&w.app, &w.a, &now_state, &f, window, 0).await;
        }
        // B is untouched by A's writes.
        check(&w.app, &w.b, &w.b_tickets, &Filter::default(), window, 0).await;
    }

    // Deleting a tenant (as the owner) cascades through the triggers.
    sqlx::query("delete from tenants where id = $1")
        .bind(w.b.tenant.0)
        .execute(&mut conn)
        .await
        .expect("delete tenant B");
    let left: i64 = sqlx::query_scalar(
        "select (select count(*) from ticket_stats_created_daily where tenant_id = $1) \
              + (select count(*) from ticket_stats_resolved_daily where tenant_id = $1)",
    )
    .bind(w.b.tenant.0)
    .fetch_one(&mut conn)
    .await
    .expect("count");
    assert_eq!(left, 0);
    assert_rollups_exact(&mut conn).await;

    // So does an operator's TRUNCATE.
    sqlx::query("truncate tickets")
        .execute(&mut conn)
        .await
        .expect("truncate");
    let left: i64 = sqlx::query_scalar(
        "select (select count(*) from ticket_stats_created_daily) + (select count(*) from ticket_stats_resolved_daily)",
    )
    .fetch_one(&mut conn)
    .await
    .expect("count");
    assert_eq!(left, 0);
}

/// Opens a transaction as tenant `tenant` on `conn`, which waits at most
/// `lock_timeout` for a row lock, and inserts one open, normal ticket.
async fn insert_open_ticket(conn: &mut PgConnection, w: &World, lock_timeout: &str) -> Result<(), sqlx::Error> {
    sqlx::query("begin").execute(&mut *conn).await?;
    sqlx::query("select set_config('app.current_tenant_id', $1, true), set_config('lock_timeout', $2, true)")
        .bind(w.a.tenant.0.to_string())
        .bind(lock_timeout)
        .execute(&mut *conn)
        .await?;
    insert_open_ticket_row(&mut *conn, w.a.tenant.0, w.a.user.0, "concurrent").await?;
    Ok(())
}

/// The rollup shard this connection's server process writes.
async fn shard_of(conn: &mut PgConnection) -> i32 {
    sqlx::query_scalar("select pg_backend_pid() % 8")
        .fetch_one(conn)
        .await
        .expect("pid")
}

#[tokio::test]
async fn one_tenants_concurrent_inserts_do_not_queue_on_one_rollup_row() {
    let w = world().await;
    let pool = w.app.db.app_pool(8).await;
    // Two app connections whose server processes write different shards.
    let mut first = pool.acquire().await.expect("acquire");
    let first_shard = shard_of(&mut first).await;
    let mut held = Vec::new();
    let second = loop {
        let mut c = pool.acquire().await.expect("a connection with another shard");
        if shard_of(&mut c).await != first_shard {
            break c;
        }
        held.push(c);
    };
    let mut second = second;
    // The first transaction has added its ticket to today's (open, normal)
    // count and holds that rollup row until it ends…
    insert_open_ticket(&mut first, &w, "5s").await.expect("first insert");
    // …and a second of the same tenant, same day and key, does not wait for
    // it: with one row per key this insert would block until lock_timeout.
    insert_open_ticket(&mut second, &w, "2s")
        .await
        .expect("the second insert must not wait for the first's rollup row");
    for c in [&mut first, &mut second] {
        sqlx::query("commit").execute(&mut **c).await.expect("commit");
    }
    drop(held);
    let mut conn = w.app.db.owner_conn().await;
    assert_rollups_exact(&mut conn).await;
}
