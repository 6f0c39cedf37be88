//! deskd behind a real PgBouncer in transaction-pooling mode
//! (`scripts/pgbouncer`, PgBouncer >= 1.21 with `max_prepared_statements`)
//! with ONE server connection per database and user: transactions of many
//! client connections, and of two tenants, take turns on the same
//! PostgreSQL session. The tenant context must never survive from one to the
//! next, and the server must serve tickets correctly through it.

use std::{
    collections::BTreeSet,
    io::{BufRead as _, BufReader},
    net::SocketAddr,
    path::PathBuf,
    process::{Child, Command, Stdio},
    sync::Arc,
    time::{Duration, Instant},
};

use deskd::{
    proto::tickets::v1 as pb,
    tenancy::{
        TenantId, UserId,
        tx::{Budget, TenantTx},
    },
    users::model::{Role, User},
};
use futures_util::future::join_all;
use sqlx::{ConnectOptions as _, PgConnection, PgPool, postgres::PgPoolOptions};
use tonic::Code;
use uuid::Uuid;

use crate::{helpers::*, tickets_support::*};

/// A PgBouncer process of this test's own, killed when dropped.
struct PgBouncer {
    child: Child,
    addr: SocketAddr,
    dir: PathBuf,
}

impl PgBouncer {
    /// Starts `scripts/pgbouncer run` (which builds PgBouncer on first use)
    /// with `pool_size` server connections per database and user, and waits
    /// until it serves; tries again when the free port it picked was taken
    /// meanwhile.
    async fn start(pool_size: u32) -> PgBouncer {
        let mut attempt = 0;
        loop {
            attempt += 1;
            match Self::spawn(pool_size).ready().await {
                Ok(pgb) => return pgb,
                Err(log) if attempt < 3 => eprintln!("PgBouncer did not start, trying again:\n{log}"),
                Err(log) => panic!("PgBouncer did not start; its log:\n{log}"),
            }
        }
    }

    fn spawn(pool_size: u32) -> PgBouncer {
        let (host, port) = pg_host_port();
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/pgbouncer");
        let mut child = Command::new(script)
            .args([
                "run",
                "--pool-size",
                &pool_size.to_string(),
                "--upstream",
                &format!("{host}:{port}"),
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("run scripts/pgbouncer");
        // KEY=VALUE lines; then the script exec's PgBouncer with its output
        // going to its log files, which closes this pipe.
        let stdout = child.stdout.take().expect("stdout");
        let (mut addr, mut dir) = (None, None);
        for line in BufReader::new(stdout).lines() {
            let line = line.expect("read scripts/pgbouncer output");
            if let Some(v) = line.strip_prefix("PGBOUNCER_ADDR=") {
                addr = Some(v.parse::<SocketAddr>().expect("PGBOUNCER_ADDR"));
            } else if let Some(v) = line.strip_prefix("PGBOUNCER_DIR=") {
                dir = Some(PathBuf::from(v));
            }
        }
        PgBouncer {
            child,
            addr: addr.expect("scripts/pgbouncer printed PGBOUNCER_ADDR"),
            dir: dir.expect("scripts/pgbouncer printed PGBOUNCER_DIR"),
        }
    }

    /// Polls until PgBouncer serves a query through to PostgreSQL; its log
    /// when it exits or the deadline passes.
    async fn ready(mut self) -> Result<PgBouncer, String> {
        let deadline = Instant::now() + Duration::from_secs(30);
        let opts = sqlx::postgres::PgConnectOptions::new()
            .host(&self.addr.ip().to_string())
            .port(self.addr.port())
            .username("postgres")
            .database("postgres");
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(format!("exited ({status})\n{}", self.log()));
            }
            if let Ok(mut conn) = opts.connect().await {
                let one: i32 = sqlx::query_scalar("select 1")
                    .fetch_one(&mut conn)
                    .await
                    .expect("query through PgBouncer");
                assert_eq!(one, 1);
                return Ok(self);
            }
            if Instant::now() > deadline {
                return Err(format!("not ready after 30 s\n{}", self.log()));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn log(&self) -> String {
        ["pgbouncer.log", "stderr.log"]
            .iter()
            .map(|f| std::fs::read_to_string(self.dir.join(f)).unwrap_or_default())
            .collect()
    }
}

impl Drop for PgBouncer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A migrated test database with PgBouncer (one server connection) in front.
async fn setup() -> (TestDb, PgBouncer) {
    let db = TestDb::create().await;
    deskd::db::migrate(&test_config(&db).database).await.expect("migrate");
    let pgb = PgBouncer::start(1).await;
    (db, pgb)
}

/// A pool of `size` client connections as the app role, through PgBouncer,
/// all opened up front (so concurrent work really uses several clients).
async fn app_pool_via(db: &TestDb, pgb: &PgBouncer, size: u32) -> PgPool {
    let pool = PgPoolOptions::new()
        .max_connections(size)
        .connect(&db.app_url_via(pgb.addr))
        .await
        .expect("app pool through PgBouncer");
    let mut held = Vec::new();
    for _ in 0..size {
        held.push(pool.acquire().await.expect("client connection"));
    }
    drop(held);
    assert_eq!(pool.size(), size);
    pool
}

/// A tenant with `users` users, inserted as the owner.
async fn tenant_with_users(owner: &mut PgConnection, users: usize) -> TenantId {
    let tenant = TenantId(Uuid::now_v7());
    deskd::tenancy::store::insert_tenant(owner, tenant, "tenant")
        .await
        .expect("insert tenant");
    for _ in 0..users {
        assert!(
            deskd::users::store::insert_user(owner, tenant, &person())
                .await
                .expect("insert user")
        );
    }
    tenant
}

fn person() -> User {
    let id = UserId(Uuid::now_v7());
    User::person(
        id,
        format!("{}@example.com", id.0.simple()),
        "someone".into(),
        Role::Agent,
        time::OffsetDateTime::now_utc().replace_nanosecond(0).expect("now"),
    )
}

/// The server session's pid, the tenant context (NULL when unset) and the
/// users visible: what a transaction sees.
async fn observe(conn: &mut PgConnection) -> (i32, Option<String>, i64) {
    sqlx::query_as(
        "select pg_backend_pid(), nullif(current_setting('app.current_tenant_id', true), ''), \
         (select count(*) from users)",
    )
    .fetch_one(conn)
    .await
    .expect("observe")
}

/// Rows of another tenant than `tenant` visible (with a bound parameter, so
/// a named prepared statement of each client goes through PgBouncer).
async fn foreign_users(conn: &mut PgConnection, tenant: TenantId) -> i64 {
    sqlx::query_scalar("select count(*) from users where tenant_id <> $1")
        .bind(tenant.0)
        .fetch_one(conn)
        .await
        .expect("foreign users")
}

fn budget() -> Budget {
    Budget::new(None, Duration::from_secs(10))
}

#[tokio::test]
async fn tenant_context_never_leaks_between_transactions_sharing_one_server_connection() {
    let (db, pgb) = setup().await;
    let mut owner = db.owner_conn().await;
    // Different user counts, so a transaction seeing the other tenant's rows
    // shows in the count as well as in the filter.
    let a = tenant_with_users(&mut owner, 2).await;
    let b = tenant_with_users(&mut owner, 3).await;
    let expected = move |t: TenantId| if t == a { 2 } else { 3 };

    // Six client connections, one server connection: two tenants
    // alternating, each deskd tenant transaction preceded by a transaction
    // without any tenant context.
    let pool = app_pool_via(&db, &pgb, 6).await;
    let tasks = (0..6).map(|task| {
        let pool = pool.clone();
        tokio::spawn(async move {
            let mut pids = BTreeSet::new();
            for i in 0..12 {
                let tenant = if (task + i) % 2 == 0 { a } else { b };

                let mut plain = pool.begin().await.expect("begin");
                let (pid, context, users) = observe(&mut plain).await;
                assert_eq!(context, None, "a new transaction found a tenant context left behind");
                assert_eq!(users, 0, "no context must see no rows");
                plain.commit().await.expect("commit");
                pids.insert(pid);

                let mut tx = TenantTx::begin(&pool, tenant, budget()).await.expect("tenant tx");
                let (pid, context, users) = observe(tx.conn()).await;
                assert_eq!(context, Some(tenant.to_string()));
                assert_eq!(users, expected(tenant), "tenant {tenant} sees another's rows");
                assert_eq!(foreign_users(tx.conn(), tenant).await, 0);
                pids.insert(pid);
                if i % 2 == 0 {
                    tx.commit().await.expect("commit");
                } else {
                    tx.finish_read();
                }
            }
            pids
        })
    });
    let mut pids = BTreeSet::new();
    for task in join_all(tasks).await {
        pids.extend(task.expect("task"));
    }
    assert_eq!(
        pids.len(),
        1,
        "every transaction ran on PgBouncer's one server connection: {pids:?}"
    );
    let server_pid = *pids.first().expect("a pid");

    // A failed transaction, then one rolled back after a session-level
    // setting and a write: the next transaction on the same server
    // connection finds neither the context nor the row.
    let mut tx = TenantTx::begin(&pool, a, budget()).await.expect("tenant tx");
    let err = sqlx::query("select 1 / 0")
        .execute(tx.conn())
        .await
        .expect_err("division by zero");
    assert!(err.to_string().contains("division by zero"), "{err}");
    drop(tx);
    let mut plain = pool.begin().await.expect("begin");
    assert_eq!(observe(&mut plain).await, (server_pid, None, 0));
    plain.commit().await.expect("commit");

    let mut tx = TenantTx::begin(&pool, a, budget()).await.expect("tenant tx");
    let ghost = person();
    assert!(
        deskd::users::store::insert_user(tx.conn(), a, &ghost)
            .await
            .expect("insert as tenant a")
    );
    sqlx::query("select set_config('app.current_tenant_id', $1, false)")
        .bind(b.to_string())
        .execute(tx.conn())
        .await
        .expect("session-level setting");
    assert_eq!(observe(tx.conn()).await, (server_pid, Some(b.to_string()), 3));
    tx.finish_read(); // rolls back
    let mut plain = pool.begin().await.expect("begin");
    assert_eq!(
        observe(&mut plain).await,
        (server_pid, None, 0),
        "a rolled-back transaction left its setting on the server connection"
    );
    plain.commit().await.expect("commit");
    let ghosts: i64 = sqlx::query_scalar("select count(*) from users where id = $1")
        .bind(ghost.id.0)
        .fetch_one(&mut owner)
        .await
        .expect("count as owner");
    assert_eq!(ghosts, 0, "the rolled-back insert was kept");

    // Outside any transaction too (PgBouncer hands out the server connection
    // per statement then): no context, no rows.
    let mut conn = pool.acquire().await.expect("acquire");
    assert_eq!(observe(&mut conn).await, (server_pid, None, 0));
    assert_eq!(foreign_users(&mut conn, a).await, 0);
}

#[tokio::test]
async fn a_server_behind_pgbouncer_serves_tickets_under_concurrency() {
    let (db, pgb) = setup().await;
    let name = db.name.clone();
    let url = db.app_url_via(pgb.addr);
    // Eight client connections per replica, one server connection.
    let app = spawn_app_on(db, |cfg| {
        cfg.database.url = url.into();
        cfg.database.max_connections = 8;
    })
    .await;
    let app = Arc::new(app);
    let alice = app.caller(Role::Agent).await;
    let bob = app.caller(Role::Agent).await;

    // 16 creates per tenant at once, interleaved.
    let creates = (0..32).map(|i| {
        let app = app.clone();
        let caller = if i % 2 == 0 { alice.clone() } else { bob.clone() };
        async move {
            let ticket = create_ticket(&app, &caller, new_ticket(&format!("ticket {i}"))).await;
            (caller.tenant, ticket)
        }
    });
    let created = join_all(creates).await;
    let ids_of = |tenant: TenantId| -> BTreeSet<String> {
        created
            .iter()
            .filter(|(t, _)| *t == tenant)
            .map(|(_, ticket)| ticket.id.clone())
            .collect()
    };
    let (alice_ids, bob_ids) = (ids_of(alice.tenant), ids_of(bob.tenant));
    assert_eq!((alice_ids.len(), bob_ids.len()), (16, 16));

    // Gets and lists at once: each tenant sees exactly its own tickets, the
    // other tenant's ids answer NOT_FOUND.
    let reads = created.iter().map(|(tenant, ticket)| {
        let app = app.clone();
        let (own, other) = if *tenant == alice.tenant {
            (alice.clone(), bob.clone())
        } else {
            (bob.clone(), alice.clone())
        };
        let ticket = ticket.clone();
        async move {
            assert_eq!(get(&app, &own, &ticket.id).await, ticket);
            let err = try_get(&app, &other, &ticket.id).await.expect_err("cross-tenant get");
            assert_eq!(err.code(), Code::NotFound, "{err:?}");
            let listed: BTreeSet<String> = list_all(&app, &own).await.into_iter().map(|t| t.id).collect();
            listed
        }
    });
    for (listed, (tenant, _)) in join_all(reads).await.into_iter().zip(&created) {
        let own_ids = if *tenant == alice.tenant { &alice_ids } else { &bob_ids };
        // Creates all finished before: every list shows all of them.
        assert_eq!(&listed, own_ids);
    }

    // Updates at once (title masked, with the etag), then reads back.
    let updates = created.iter().map(|(tenant, ticket)| {
        let app = app.clone();
        let caller = if *tenant == alice.tenant {
            alice.clone()
        } else {
            bob.clone()
        };
        let ticket = ticket.clone();
        async move {
            let updated = update(
                &app,
                &caller,
                pb::Ticket {
                    id: ticket.id.clone(),
                    title: format!("{} (updated)", ticket.title),
                    etag: ticket.etag.clone(),
                    ..Default::default()
                },
                &["title"],
            )
            .await;
            assert_eq!(updated.title, format!("{} (updated)", ticket.title));
            assert_ne!(updated.etag, ticket.etag);
            assert_eq!(get(&app, &caller, &ticket.id).await, updated);
            // The old etag is stale now.
            let stale = try_update(
                &app,
                &caller,
                pb::Ticket {
                    id: ticket.id.clone(),
                    title: "stale".into(),
                    etag: ticket.etag.clone(),
                    ..Default::default()
                },
                &["title"],
            )
            .await
            .expect_err("stale etag");
            assert_eq!(stale.code(), Code::Aborted, "{stale:?}");
        }
    });
    join_all(updates).await;
    for caller in [&alice, &bob] {
        let titles: Vec<String> = list_all(&app, caller).await.into_iter().map(|t| t.title).collect();
        assert_eq!(titles.len(), 16);
        assert!(titles.iter().all(|t| t.ends_with(" (updated)")), "{titles:?}");
    }

    // All of that went through PgBouncer's single server connection for the
    // app role: PostgreSQL has one app-role session for this database.
    let mut owner = app.db.owner_conn().await;
    let sessions: i64 = sqlx::query_scalar("select count(*) from pg_stat_activity where datname = $1 and usename = $2")
        .bind(&name)
        .bind(APP_ROLE)
        .fetch_one(&mut owner)
        .await
        .expect("pg_stat_activity");
    assert_eq!(sessions, 1, "app-role sessions behind PgBouncer");
}
