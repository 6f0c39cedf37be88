//! GetTicketStats: the window's and filters' validation; the `stats:read`
//! permission; tenant isolation.

use deskd::{
    proto::{stats::v1::GetTicketStatsRequest, tickets::v1::TicketPriority},
    users::model::Role,
};
use prost_types::Timestamp;
use time::{Duration, OffsetDateTime, macros::datetime};
use tonic::Code;
use uuid::Uuid;

use crate::{helpers::*, stats_support::*, users_support::*};

// ---------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------

#[tokio::test]
async fn invalid_windows_and_filters_are_refused_with_field_paths() {
    let app = spawn_app().await;
    let c = app.caller(Role::Viewer).await;
    let t = datetime!(2025-06-15 08:00 UTC);
    let none = Filter::default();
    let cases: Vec<(GetTicketStatsRequest, &str, &str)> = vec![
        (request(Some(t), Some(t), &none, 0), "end_time", "INVALID_RANGE"),
        (
            request(Some(t), Some(t - Duration::seconds(1)), &none, 0),
            "end_time",
            "INVALID_RANGE",
        ),
        // A start in the future with the end left to default to now.
        (
            request(Some(OffsetDateTime::now_utc() + Duration::hours(1)), None, &none, 0),
            "end_time",
            "INVALID_RANGE",
        ),
        (
            request(Some(t - Duration::days(366) - Duration::MICROSECOND), Some(t), &none, 0),
            "start_time",
            "WINDOW_TOO_LONG",
        ),
        (
            request(None, None, &none, 0).tap(|r| {
                r.start_time = Some(Timestamp {
                    seconds: 0,
                    nanos: 1_000_000_000,
                })
            }),
            "start_time",
            "INVALID_TIMESTAMP",
        ),
        (
            request(None, None, &none, 0).tap(|r| {
                r.end_time = Some(Timestamp {
                    seconds: 300_000_000_000,
                    nanos: 0,
                })
            }),
            "end_time",
            "INVALID_TIMESTAMP",
        ),
        (
            request(None, None, &none, 0).tap(|r| r.assignee_id = "not-a-uuid".into()),
            "assignee_id",
            "INVALID_ID",
        ),
        (
            request(None, None, &none, 0).tap(|r| r.tag = "x".repeat(51)),
            "tag",
            "INVALID_TAG",
        ),
        (
            request(None, None, &none, 0).tap(|r| r.priority = 99),
            "priority",
            "INVALID_ENUM_VALUE",
        ),
        (request(None, None, &none, -1), "top_assignees_limit", "INVALID_LIMIT"),
    ];
    for (req, field, why) in cases {
        let err = try_stats(&app, &c.token, req.clone())
            .await
            .expect_err(&format!("{field}/{why} accepted: {req:?}"));
        assert_only_violation(&err, field, why);
    }

    // Exactly 366 days is allowed.
    try_stats(
        &app,
        &c.token,
        request(Some(t - Duration::days(366)), Some(t), &none, 0),
    )
    .await
    .expect("366 days");

    // Every violation at once.
    let err = try_stats(
        &app,
        &c.token,
        GetTicketStatsRequest {
            start_time: Some(ts(t)),
            end_time: Some(ts(t - Duration::days(1))),
            assignee_id: "nope".into(),
            tag: "y".repeat(60),
            priority: -3,
            top_assignees_limit: -5,
        },
    )
    .await
    .expect_err("many violations");
    for (field, why) in [
        ("end_time", "INVALID_RANGE"),
        ("assignee_id", "INVALID_ID"),
        ("tag", "INVALID_TAG"),
        ("priority", "INVALID_ENUM_VALUE"),
        ("top_assignees_limit", "INVALID_LIMIT"),
    ] {
        assert_field_violation(&err, field, why);
    }
}

/// A tiny builder helper for request variants.
trait Tap: Sized {
    fn tap(mut self, f: impl FnOnce(&mut Self)) -> Self {
        f(&mut self);
        self
    }
}

impl Tap for GetTicketStatsRequest {}

#[tokio::test]
async fn stats_read_is_required() {
    let w = world().await;
    let window = windows()[0];
    let req = request(Some(window.0), Some(window.1), &Filter::default(), 0);

    let without = create_key(&w.app, &w.a.token, "no stats", &["tickets:read", "users:read"]).await;
    let err = try_stats(&w.app, &without.key, req.clone())
        .await
        .expect_err("a key without stats:read");
    assert_permission_missing(&err, "stats:read");

    // With the scope, a key sees its own tenant's figures; so do viewers.
    let with = create_key(&w.app, &w.a.token, "stats", &["stats:read"]).await;
    let by_key = try_stats(&w.app, &with.key, req.clone())
        .await
        .expect("key with stats:read");
    let viewer = w.app.colleague(&w.a, Role::Viewer).await;
    let by_viewer = try_stats(&w.app, &viewer.token, req.clone()).await.expect("viewer");
    let now = from_ts(by_key.compute_time.as_ref().expect("compute_time"));
    assert_eq!(
        by_key,
        expected(&w.a_tickets, &Filter::default(), window.0, window.1, now, 10)
    );
    assert_eq!(by_viewer.created_count, by_key.created_count);

    // No credential at all.
    let err = client(&w.app)
        .get_ticket_stats(tonic::Request::new(req))
        .await
        .expect_err("anonymous");
    assert_eq!(err.code(), Code::Unauthenticated);
}

#[tokio::test]
async fn tenants_never_see_each_others_tickets_in_any_figure() {
    let w = world().await;
    // Each tenant's figures are exactly those of its own tickets (the
    // independent computation never looks at the other's).
    for window in windows() {
        for f in [
            Filter::default(),
            Filter {
                priority: Some(TicketPriority::Normal),
                ..Default::default()
            },
            Filter {
                tag: Some("vpn".into()),
                ..Default::default()
            },
        ] {
            check(&w.app, &w.a, &w.a_tickets, &f, window, 0).await;
            check(&w.app, &w.b, &w.b_tickets, &f, window, 0).await;
        }
    }
    // B's agents never appear in A's lists, whatever the filter.
    let window = windows()[4];
    let got = check(&w.app, &w.a, &w.a_tickets, &Filter::default(), window, 100).await;
    for a in got.top_assignees_by_open.iter().chain(&got.top_assignees_by_resolved) {
        let id = Uuid::parse_str(&a.assignee_id).expect("uuid");
        assert!(w.a_agents.contains(&id), "{id} is not A's");
    }

    // The rollup tables are confined by RLS like every tenant table.
    let pool = w.app.db.app_pool(1).await;
    for table in ["ticket_stats_created_daily", "ticket_stats_resolved_daily"] {
        let mut tx = pool.begin().await.expect("begin");
        let n: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(format!("select count(*) from {table}")))
            .fetch_one(&mut *tx)
            .await
            .expect("count without context");
        assert_eq!(n, 0, "{table} without a tenant context");
        sqlx::query("select set_config('app.current_tenant_id', $1, true)")
            .bind(w.b.tenant.to_string())
            .execute(&mut *tx)
            .await
            .expect("context");
        let tenants: Vec<Uuid> =
            sqlx::query_scalar(sqlx::AssertSqlSafe(format!("select distinct tenant_id from {table}")))
                .fetch_all(&mut *tx)
                .await
                .expect("tenants");
        assert_eq!(tenants, vec![w.b.tenant.0], "{table} as B");
        tx.rollback().await.expect("rollback");
    }
}
