//! Row-level security at the database, connected as the app role the server
//! uses (a superuser would pass every policy), and end to end: a server with
//! a single pooled connection, hammered by two tenants with requests that
//! are cancelled mid-flight, never hands one tenant's rows to the other.

use std::{
    collections::{BTreeMap, BTreeSet},
    time::Duration,
};

use deskd::{proto::tickets::v1 as pb, tenancy::TenantId, users::model::Role};
use futures_util::StreamExt as _;
use sqlx::{AssertSqlSafe, PgConnection, PgPool, Postgres, Transaction};
use tonic::{Code, Status};
use uuid::Uuid;

use crate::helpers::*;

const TABLES: &[&str] = &["tickets", "users", "tenants", "idempotency_keys"];

/// Two tenants with tickets created through the API (one of each tenant's
/// with a request_id, so idempotency_keys has rows too).
struct World {
    app: TestApp,
    a: Caller,
    b: Caller,
    a_tickets: Vec<pb::Ticket>,
    b_tickets: Vec<pb::Ticket>,
}

async fn world() -> World {
    let app = spawn_app().await;
    let a = app.caller(Role::Agent).await;
    let b = app.caller(Role::Agent).await;
    let mut a_tickets = Vec::new();
    let mut b_tickets = Vec::new();
    for i in 0..3 {
        a_tickets.push(create_ticket(&app, &a, new_ticket(&format!("A {i}"))).await);
    }
    for i in 0..2 {
        b_tickets.push(create_ticket(&app, &b, new_ticket(&format!("B {i}"))).await);
    }
    for (caller, list) in [(&a, &mut a_tickets), (&b, &mut b_tickets)] {
        let t = app
            .tickets()
            .create_ticket(authed(
                &caller.token,
                pb::CreateTicketRequest {
                    ticket: Some(new_ticket("idempotent")),
                    request_id: Uuid::now_v7().to_string(),
                },
            ))
            .await
            .expect("create with request_id")
            .into_inner()
            .ticket
            .expect("ticket");
        list.push(t);
    }
    World {
        app,
        a,
        b,
        a_tickets,
        b_tickets,
    }
}

/// Begins a transaction confined to `tenant` with the extended protocol (the
/// server sends the same setting with its `BEGIN`: `server_transactions_*`).
async fn begin_as(pool: &PgPool, tenant: TenantId) -> Transaction<'static, Postgres> {
    let mut tx = pool.begin().await.expect("begin");
    sqlx::query("select set_config('app.current_tenant_id', $1, true)")
        .bind(tenant.to_string())
        .execute(&mut *tx)
        .await
        .expect("set tenant context");
    tx
}

async fn count(conn: &mut PgConnection, table: &str) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar(AssertSqlSafe(format!("select count(*) from {table}")))
        .fetch_one(conn)
        .await
}

fn sqlstate(err: &sqlx::Error) -> Option<String> {
    match err {
        sqlx::Error::Database(db) => db.code().map(|c| c.into_owned()),
        _ => None,
    }
}

/// The pool really is the app role, and that role is one RLS applies to.
async fn assert_app_role(pool: &PgPool) {
    let (user, is_super, bypass): (String, bool, bool) =
        sqlx::query_as("select current_user::text, rolsuper, rolbypassrls from pg_roles where rolname = current_user")
            .fetch_one(pool)
            .await
            .expect("role");
    assert_eq!(user, APP_ROLE);
    assert!(!is_super && !bypass, "the app role must be subject to RLS");
}

#[tokio::test]
async fn tenant_context_confines_unfiltered_reads() {
    let w = world().await;
    let pool = w.app.db.app_pool(2).await;
    assert_app_role(&pool).await;

    for (caller, mine, theirs) in [(&w.a, &w.a_tickets, &w.b_tickets), (&w.b, &w.b_tickets, &w.a_tickets)] {
        let mut tx = begin_as(&pool, caller.tenant).await;
        assert_eq!(count(&mut tx, "tickets").await.expect("count"), mine.len() as i64);
        let seen: BTreeSet<Uuid> = sqlx::query_scalar("select id from tickets")
            .fetch_all(&mut *tx)
            .await
            .expect("ids")
            .into_iter()
            .collect();
        let expected: BTreeSet<Uuid> = mine.iter().map(|t| t.id.parse().expect("uuid")).collect();
        assert_eq!(seen, expected);
        // Naming the other tenant's rows explicitly finds nothing either.
        let other_ids: Vec<Uuid> = theirs.iter().map(|t| t.id.parse().expect("uuid")).collect();
        let n: i64 = sqlx::query_scalar("select count(*) from tickets where id = any($1)")
            .bind(&other_ids)
            .fetch_one(&mut *tx)
            .await
            .expect("count");
        assert_eq!(n, 0);
        // Only its own tenant row, its own user, its own idempotency key.
        let tenants: Vec<Uuid> = sqlx::query_scalar("select id from tenants")
            .fetch_all(&mut *tx)
            .await
            .expect("tenants");
        assert_eq!(tenants, vec![caller.tenant.0]);
        let users: Vec<Uuid> = sqlx::query_scalar("select id from users")
            .fetch_all(&mut *tx)
            .await
            .expect("users");
        assert_eq!(users, vec![caller.user.0]);
        assert_eq!(count(&mut tx, "idempotency_keys").await.expect("count"), 1);
        tx.commit().await.expect("commit");
    }
}

#[tokio::test]
async fn no_tenant_context_sees_no_rows_and_no_error() {
    let w = world().await;
    let pool = w.app.db.app_pool(1).await;
    assert_app_role(&pool).await;

    // Outside any transaction, and inside one that never set the context.
    let mut conn = pool.acquire().await.expect("acquire");
    for table in TABLES {
        assert_eq!(count(&mut conn, table).await.expect(table), 0, "{table}");
    }
    drop(conn);
    let mut tx = pool.begin().await.expect("begin");
    for table in TABLES {
        assert_eq!(count(&mut tx, table).await.expect(table), 0, "{table}");
    }
    tx.rollback().await.expect("rollback");

    // An explicitly empty context is no context.
    let mut tx = pool.begin().await.expect("begin");
    sqlx::query("select set_config('app.current_tenant_id', '', true)")
        .execute(&mut *tx)
        .await
        .expect("empty context");
    for table in TABLES {
        assert_eq!(count(&mut tx, table).await.expect(table), 0, "{table}");
    }
    tx.rollback().await.expect("rollback");

    // The rows are there: the owner sees them all.
    let mut owner = w.app.db.owner_conn().await;
    assert_eq!(
        count(&mut owner, "tickets").await.expect("owner count"),
        (w.a_tickets.len() + w.b_tickets.len()) as i64
    );
}

#[tokio::test]
async fn tenant_context_does_not_outlive_its_transaction() {
    let w = world().await;
    // One connection: whatever runs next runs on the very same session.
    let pool = w.app.db.app_pool(1).await;

    let mut tx = begin_as(&pool, w.a.tenant).await;
    let pid: i32 = sqlx::query_scalar("select pg_backend_pid()")
        .fetch_one(&mut *tx)
        .await
        .expect("pid");
    assert_eq!(
        count(&mut tx, "tickets").await.expect("count"),
        w.a_tickets.len() as i64
    );
    tx.commit().await.expect("commit");

    let mut conn = pool.acquire().await.expect("acquire");
    let same_pid: i32 = sqlx::query_scalar("select pg_backend_pid()")
        .fetch_one(&mut *conn)
        .await
        .expect("pid");
    assert_eq!(pid, same_pid, "the pool of one must reuse the connection");
    let setting: Option<String> = sqlx::query_scalar("select current_setting('app.current_tenant_id', true)")
        .fetch_one(&mut *conn)
        .await
        .expect("setting");
    assert!(
        setting.as_deref().unwrap_or("").is_empty(),
        "context survived the commit: {setting:?}"
    );
    for table in TABLES {
        assert_eq!(count(&mut conn, table).await.expect(table), 0, "{table}");
    }
    drop(conn);

    // The same after a rollback, and after a transaction dropped unfinished.
    let mut tx = begin_as(&pool, w.b.tenant).await;
    assert_eq!(
        count(&mut tx, "tickets").await.expect("count"),
        w.b_tickets.len() as i64
    );
    tx.rollback().await.expect("rollback");
    assert_eq!(
        count(&mut pool.acquire().await.expect("acquire"), "tickets")
            .await
            .expect("count"),
        0
    );
    let tx = begin_as(&pool, w.b.tenant).await;
    drop(tx);
    let mut conn = pool.acquire().await.expect("acquire");
    assert_eq!(count(&mut conn, "tickets").await.expect("count"), 0);
}

/// Reads what a session has set: the tenant context and statement timeout,
/// and whether it is inside a transaction block (SAVEPOINT fails outside
/// one with 25P01).
async fn session_settings(conn: &mut PgConnection) -> (Option<String>, String, bool) {
    let (tenant, timeout): (Option<String>, String) = sqlx::query_as(
        "select nullif(current_setting('app.current_tenant_id', true), ''), current_setting('statement_timeout')",
    )
    .fetch_one(&mut *conn)
    .await
    .expect("settings");
    let in_tx = match sqlx::query("savepoint probe").execute(&mut *conn).await {
        Ok(_) => true,
        Err(e) if sqlstate(&e).as_deref() == Some("25P01") => false,
        Err(e) => panic!("savepoint probe: {e}"),
    };
    (tenant, timeout, in_tx)
}

/// The server's own transaction: `BEGIN` with the tenant and statement
/// timeout in one message, and read-only work ended without a `COMMIT`
/// round trip (a queued `ROLLBACK`). Neither leaves the tenant on the
/// connection for the next user of a pool of one.
#[tokio::test]
async fn server_transactions_confine_and_leave_nothing_behind() {
    use deskd::tenancy::tx::{Budget, TenantTx};
    let w = world().await;
    let pool = w.app.db.app_pool(1).await;

    let mut tx = TenantTx::begin(&pool, w.a.tenant, Budget::new(None, Duration::from_secs(7)))
        .await
        .expect("begin");
    let (tenant, timeout, in_tx) = session_settings(tx.conn()).await;
    assert_eq!(tenant, Some(w.a.tenant.to_string()));
    assert!(in_tx, "BEGIN must have opened a transaction");
    let ms: u64 = timeout.trim_end_matches("ms").parse().unwrap_or(u64::MAX);
    assert!(
        timeout.ends_with('s') && (6_000..=7_000).contains(&ms) || timeout == "7s",
        "statement_timeout is the time left: {timeout}"
    );
    assert_eq!(
        count(tx.conn(), "tickets").await.expect("count"),
        w.a_tickets.len() as i64
    );
    tx.finish_read();

    // The next user of the only connection: no tenant, default timeout, no
    // open transaction, and no rows.
    let mut conn = pool.acquire().await.expect("acquire");
    let (tenant, timeout, in_tx) = session_settings(&mut conn).await;
    assert_eq!(tenant, None, "tenant context survived finish_read");
    assert_eq!(timeout, "0", "statement_timeout survived finish_read");
    assert!(!in_tx, "the read-only transaction is still open");
    for table in TABLES {
        assert_eq!(count(&mut conn, table).await.expect(table), 0, "{table}");
    }
    drop(conn);

    // Then tenant B on the same session sees only B's rows, after a commit
    // the next session is clean as well.
    let mut tx = TenantTx::begin(&pool, w.b.tenant, Budget::new(None, Duration::from_secs(5)))
        .await
        .expect("begin");
    assert_eq!(
        count(tx.conn(), "tickets").await.expect("count"),
        w.b_tickets.len() as i64
    );
    tx.commit().await.expect("commit");
    let mut conn = pool.acquire().await.expect("acquire");
    assert_eq!(session_settings(&mut conn).await.0, None);
    assert_eq!(count(&mut conn, "tickets").await.expect("count"), 0);
}

#[tokio::test]
async fn inserting_another_tenants_rows_violates_with_check() {
    let w = world().await;
    let pool = w.app.db.app_pool(1).await;
    assert_app_role(&pool).await;

    // A ticket for B (with B's real user as reporter) under A's context.
    let mut tx = begin_as(&pool, w.a.tenant).await;
    let err = insert_open_ticket_row(&mut tx, w.b.tenant.0, w.b.user.0, "planted")
        .await
        .expect_err("insert for another tenant");
    assert_eq!(sqlstate(&err).as_deref(), Some("42501"), "{err}");
    tx.rollback().await.expect("rollback");

    // A user for B under A's context.
    let mut tx = begin_as(&pool, w.a.tenant).await;
    let err =
        sqlx::query("insert into users (tenant_id, id, email, role) values ($1, $2, 'mole@example.com', 'admin')")
            .bind(w.b.tenant.0)
            .bind(Uuid::now_v7())
            .execute(&mut *tx)
            .await
            .expect_err("insert user for another tenant");
    assert_eq!(sqlstate(&err).as_deref(), Some("42501"), "{err}");
    tx.rollback().await.expect("rollback");

    // Moving one of A's own tickets into B is refused too.
    let mut tx = begin_as(&pool, w.a.tenant).await;
    let err = sqlx::query("update tickets set tenant_id = $1 where id = $2")
        .bind(w.b.tenant.0)
        .bind(w.a_tickets[0].id.parse::<Uuid>().expect("uuid"))
        .execute(&mut *tx)
        .await
        .expect_err("move a row to another tenant");
    assert_eq!(sqlstate(&err).as_deref(), Some("42501"), "{err}");
    tx.rollback().await.expect("rollback");

    // Without any context nothing can be inserted at all.
    let mut tx = pool.begin().await.expect("begin");
    let err = insert_open_ticket_row(&mut tx, w.a.tenant.0, w.a.user.0, "planted")
        .await
        .expect_err("insert without context");
    assert_eq!(sqlstate(&err).as_deref(), Some("42501"), "{err}");
    tx.rollback().await.expect("rollback");

    // Positive control: the same insert for A under A's context works.
    let mut tx = begin_as(&pool, w.a.tenant).await;
    insert_open_ticket_row(&mut tx, w.a.tenant.0, w.a.user.0, "legit")
        .await
        .expect("insert for own tenant");
    tx.rollback().await.expect("rollback");

    let mut owner = w.app.db.owner_conn().await;
    let planted: i64 = sqlx::query_scalar("select count(*) from tickets where title = 'planted'")
        .fetch_one(&mut owner)
        .await
        .expect("count");
    assert_eq!(planted, 0);
}

#[tokio::test]
async fn updating_or_deleting_another_tenants_rows_affects_nothing() {
    let w = world().await;
    let pool = w.app.db.app_pool(1).await;
    let b_ids: Vec<Uuid> = w.b_tickets.iter().map(|t| t.id.parse().expect("uuid")).collect();

    let mut tx = begin_as(&pool, w.a.tenant).await;
    let updated = sqlx::query("update tickets set title = 'hijacked' where tenant_id = $1")
        .bind(w.b.tenant.0)
        .execute(&mut *tx)
        .await
        .expect("update by tenant");
    assert_eq!(updated.rows_affected(), 0);
    let updated = sqlx::query("update tickets set title = 'hijacked' where id = any($1)")
        .bind(&b_ids)
        .execute(&mut *tx)
        .await
        .expect("update by id");
    assert_eq!(updated.rows_affected(), 0);
    let updated = sqlx::query("update users set active = false where tenant_id = $1")
        .bind(w.b.tenant.0)
        .execute(&mut *tx)
        .await
        .expect("update users");
    assert_eq!(updated.rows_affected(), 0);
    let deleted = sqlx::query("delete from tickets where id = any($1)")
        .bind(&b_ids)
        .execute(&mut *tx)
        .await
        .expect("delete by id");
    assert_eq!(deleted.rows_affected(), 0);
    let deleted = sqlx::query("delete from idempotency_keys where tenant_id = $1")
        .bind(w.b.tenant.0)
        .execute(&mut *tx)
        .await
        .expect("delete keys");
    assert_eq!(deleted.rows_affected(), 0);
    tx.commit().await.expect("commit");

    // B's data is intact, seen both by the owner and through the API.
    let mut owner = w.app.db.owner_conn().await;
    let titles: Vec<String> = sqlx::query_scalar("select title from tickets where tenant_id = $1 order by title")
        .bind(w.b.tenant.0)
        .fetch_all(&mut owner)
        .await
        .expect("titles");
    let mut expected: Vec<String> = w.b_tickets.iter().map(|t| t.title.clone()).collect();
    expected.sort();
    assert_eq!(titles, expected);
    for t in &w.b_tickets {
        let got = w
            .app
            .tickets()
            .get_ticket(authed(&w.b.token, pb::GetTicketRequest { id: t.id.clone() }))
            .await
            .expect("B's ticket")
            .into_inner()
            .ticket
            .expect("ticket");
        assert_eq!(&got, t);
    }
    w.app
        .tickets()
        .list_tickets(authed(&w.b.token, pb::ListTicketsRequest::default()))
        .await
        .expect("B's user is still active");
}

#[tokio::test]
async fn app_role_cannot_write_tenants() {
    let w = world().await;
    let pool = w.app.db.app_pool(1).await;
    assert_app_role(&pool).await;

    // Without a context, and with the context of the very row it inserts
    // (so no policy stands in the way): the role lacks the privilege.
    for with_context in [false, true] {
        let id = Uuid::now_v7();
        let mut tx = if with_context {
            begin_as(&pool, TenantId(id)).await
        } else {
            pool.begin().await.expect("begin")
        };
        let err = sqlx::query("insert into tenants (id, name) values ($1, 'rogue')")
            .bind(id)
            .execute(&mut *tx)
            .await
            .expect_err("app role inserting a tenant");
        assert_eq!(sqlstate(&err).as_deref(), Some("42501"), "{err}");
        tx.rollback().await.expect("rollback");
    }

    // Nor change its own tenant row, nor delete it.
    for stmt in [
        "update tenants set status = 'active' where id = $1",
        "delete from tenants where id = $1",
    ] {
        let mut tx = begin_as(&pool, w.a.tenant).await;
        let err = sqlx::query(stmt)
            .bind(w.a.tenant.0)
            .execute(&mut *tx)
            .await
            .expect_err(stmt);
        assert_eq!(sqlstate(&err).as_deref(), Some("42501"), "{stmt}: {err}");
        tx.rollback().await.expect("rollback");
    }

    let mut owner = w.app.db.owner_conn().await;
    let rogue: i64 = sqlx::query_scalar("select count(*) from tenants where name = 'rogue'")
        .fetch_one(&mut owner)
        .await
        .expect("count");
    assert_eq!(rogue, 0);
}

/// What one stress request saw.
enum Outcome {
    Ok,
    /// A successful response with rows that are not the caller's.
    Leak(String),
    Failed(Status),
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn single_connection_pool_under_cancellation_never_mixes_tenants() {
    const REQUESTS: usize = 1_000;
    const CONCURRENCY: usize = 8;
    const USERS_PER_TENANT: usize = 4;

    let app = spawn_app_with(|c| c.database.max_connections = 1).await;
    assert_eq!(app.config.database.max_connections, 1);

    // Two tenants, each with several users (so no principal comes near its
    // rate-limit burst: 1,000 requests spread over 8 principals) and tickets.
    let mut tenants = Vec::new();
    for name in ["A", "B"] {
        let first = app.caller(Role::Agent).await;
        let mut callers = vec![first.clone()];
        for _ in 1..USERS_PER_TENANT {
            callers.push(app.colleague(&first, Role::Agent).await);
        }
        let mut tickets = Vec::new();
        for i in 0..3 {
            tickets.push(create_ticket(&app, &first, new_ticket(&format!("{name} {i}"))).await);
        }
        let ids: BTreeSet<String> = tickets.iter().map(|t| t.id.clone()).collect();
        let users: BTreeSet<String> = callers.iter().map(|c| c.user.to_string()).collect();
        tenants.push((callers, ids, users));
    }
    let tenants = std::sync::Arc::new(tenants);

    let outcomes: Vec<(usize, Outcome)> = futures_util::stream::iter(0..REQUESTS)
        .map(|i| {
            let tenants = tenants.clone();
            let client = app.tickets();
            async move {
                let (callers, ids, users) = &tenants[i % 2];
                let caller = &callers[(i / 2) % callers.len()];
                // Every 10th request gets a 1–5 ms deadline: most are cut
                // off mid-flight, in whichever layer or query they are in.
                let timeout = (i % 10 == 9).then(|| Duration::from_millis(1 + (i / 10 % 5) as u64));
                let outcome = if (i / 2) % 2 == 0 {
                    let mut req = authed(
                        &caller.token,
                        pb::ListTicketsRequest {
                            page_size: 100,
                            ..Default::default()
                        },
                    );
                    if let Some(t) = timeout {
                        req.set_timeout(t);
                    }
                    match client.clone().list_tickets(req).await {
                        Ok(r) => {
                            let r = r.into_inner();
                            let seen: BTreeSet<String> = r.tickets.iter().map(|t| t.id.clone()).collect();
                            if &seen == ids && r.next_page_token.is_empty() {
                                Outcome::Ok
                            } else {
                                Outcome::Leak(format!("list saw {seen:?}, expected {ids:?}"))
                            }
                        }
                        Err(s) => Outcome::Failed(s),
                    }
                } else {
                    let id = ids.iter().nth(i / 4 % ids.len()).expect("id").clone();
                    let mut req = authed(&caller.token, pb::GetTicketRequest { id: id.clone() });
                    if let Some(t) = timeout {
                        req.set_timeout(t);
                    }
                    match client.clone().get_ticket(req).await {
                        Ok(r) => match r.into_inner().ticket {
                            Some(t) if t.id == id && users.contains(&t.reporter_id) => Outcome::Ok,
                            other => Outcome::Leak(format!("get {id} returned {other:?}")),
                        },
                        Err(s) => Outcome::Failed(s),
                    }
                };
                (i, outcome)
            }
        })
        .buffer_unordered(CONCURRENCY)
        .collect()
        .await;

    assert_eq!(outcomes.len(), REQUESTS);
    let mut ok = 0usize;
    let mut ok_with_short_deadline = 0usize;
    let mut leaks = Vec::new();
    let mut unexpected = Vec::new();
    let mut failures: BTreeMap<String, usize> = BTreeMap::new();
    for (i, outcome) in &outcomes {
        match outcome {
            Outcome::Ok => {
                ok += 1;
                if i % 10 == 9 {
                    ok_with_short_deadline += 1;
                }
            }
            Outcome::Leak(what) => leaks.push(format!("request {i}: {what}")),
            Outcome::Failed(s) => {
                *failures.entry(format!("{:?}", s.code())).or_default() += 1;
                if !matches!(s.code(), Code::DeadlineExceeded | Code::Cancelled | Code::Unavailable) {
                    unexpected.push(format!("request {i}: {s:?}"));
                }
            }
        }
    }
    eprintln!("stress: {ok} ok ({ok_with_short_deadline} despite a short deadline), failures {failures:?}");
    assert!(leaks.is_empty(), "cross-tenant rows returned: {leaks:#?}");
    assert!(
        unexpected.is_empty(),
        "failures other than DEADLINE_EXCEEDED/CANCELLED/UNAVAILABLE: {unexpected:#?}"
    );
    assert!(ok >= 800, "only {ok} of {REQUESTS} succeeded; failures {failures:?}");

    // Afterwards the single connection is healthy and still confined:
    // each tenant sees exactly its own tickets.
    for (callers, ids, _) in tenants.iter() {
        for caller in callers {
            let seen: BTreeSet<String> = app
                .tickets()
                .list_tickets(authed(&caller.token, pb::ListTicketsRequest::default()))
                .await
                .expect("list after the storm")
                .into_inner()
                .tickets
                .into_iter()
                .map(|t| t.id)
                .collect();
            assert_eq!(&seen, ids);
        }
    }
}
