//! GetTicketStats: every figure checked against an independent computation
//! (plain Rust over the tickets the test made, with known statuses,
//! priorities, assignees, tags and times); the filters; the window's
//! defaults.

use deskd::{
    proto::{
        stats::v1::{GetTicketStatsRequest, GetTicketStatsResponse},
        tickets::v1::{TicketPriority, TicketStatus},
    },
    users::model::Role,
};
use time::{Duration, OffsetDateTime, macros::datetime};
use uuid::Uuid;

use crate::{helpers::*, stats_support::*};

// ---------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------

#[tokio::test]
async fn every_figure_matches_an_independent_computation() {
    let w = world().await;
    for window in windows() {
        let got = check(&w.app, &w.a, &w.a_tickets, &Filter::default(), window, 0).await;
        check(&w.app, &w.b, &w.b_tickets, &Filter::default(), window, 0).await;
        // The figures are consistent with each other.
        let daily_created: i64 = got.daily_counts.iter().map(|d| d.created_count).sum();
        assert_eq!(daily_created, got.created_count);
        let daily_resolved: i64 = got.daily_counts.iter().map(|d| d.resolved_count).sum();
        assert_eq!(
            daily_resolved,
            got.resolution.as_ref().expect("resolution").resolved_count
        );
    }
    // The fixture is not degenerate: the main window has something of each.
    let got = check(&w.app, &w.a, &w.a_tickets, &Filter::default(), windows()[0], 0).await;
    let backlog = got.backlog.expect("backlog");
    let resolution = got.resolution.expect("resolution");
    assert!(got.created_count >= 30, "{}", got.created_count);
    assert!(
        got.created_by_status.iter().all(|c| c.count > 0),
        "{:?}",
        got.created_by_status
    );
    assert!(backlog.open_count >= 20 && backlog.unassigned_count > 0, "{backlog:?}");
    assert!(resolution.resolved_count >= 10, "{resolution:?}");
    assert_ne!(resolution.time_to_resolve_p50, resolution.time_to_resolve_p90);
    assert_eq!(got.top_assignees_by_open.len(), 3);
    assert_eq!(got.daily_counts.len(), 6);
}

#[tokio::test]
async fn filters_give_exact_answers() {
    let w = world().await;
    let (u1, u2) = (w.a_agents[0], w.a_agents[1]);
    let filters = vec![
        Filter {
            assignee: Some(u1),
            ..Default::default()
        },
        Filter {
            assignee: Some(u2),
            ..Default::default()
        },
        Filter {
            tag: Some("vpn".into()),
            ..Default::default()
        },
        Filter {
            tag: Some("billing".into()),
            ..Default::default()
        },
        Filter {
            tag: Some("no-such-tag".into()),
            ..Default::default()
        },
        Filter {
            priority: Some(TicketPriority::High),
            ..Default::default()
        },
        Filter {
            priority: Some(TicketPriority::Normal),
            tag: Some("billing".into()),
            ..Default::default()
        },
        Filter {
            assignee: Some(u1),
            priority: Some(TicketPriority::Normal),
            tag: Some("vpn".into()),
        },
        // Another tenant's user, and nobody: nothing of A matches either.
        Filter {
            assignee: Some(w.b_agents[0]),
            ..Default::default()
        },
        Filter {
            assignee: Some(Uuid::now_v7()),
            ..Default::default()
        },
    ];
    for f in &filters {
        for window in [windows()[0], windows()[3], windows()[4]] {
            check(&w.app, &w.a, &w.a_tickets, f, window, 0).await;
        }
    }

    // The tag is compared after trimming.
    let window = windows()[0];
    let spaced = Filter {
        tag: Some("  vpn ".into()),
        ..Default::default()
    };
    let trimmed = Filter {
        tag: Some("vpn".into()),
        ..Default::default()
    };
    let got = try_stats(&w.app, &w.a.token, request(Some(window.0), Some(window.1), &spaced, 0))
        .await
        .expect("spaced tag");
    let now = from_ts(got.compute_time.as_ref().expect("compute_time"));
    assert_eq!(got, expected(&w.a_tickets, &trimmed, window.0, window.1, now, 10));

    // A foreign assignee answers exactly like one that does not exist.
    let foreign = try_stats(
        &w.app,
        &w.a.token,
        request(Some(window.0), Some(window.1), &filters[8], 0),
    )
    .await
    .expect("foreign");
    let missing = try_stats(
        &w.app,
        &w.a.token,
        request(Some(window.0), Some(window.1), &filters[9], 0),
    )
    .await
    .expect("missing");
    assert_eq!(
        GetTicketStatsResponse {
            compute_time: None,
            ..foreign
        },
        GetTicketStatsResponse {
            compute_time: None,
            ..missing
        }
    );
}

#[tokio::test]
async fn top_assignee_lists_honour_the_limit() {
    let w = world().await;
    let window = windows()[4];
    for limit in [1, 2, 3, 0, 1000] {
        let got = check(&w.app, &w.a, &w.a_tickets, &Filter::default(), window, limit).await;
        let n = match limit {
            0 | 1000 => 3,
            n => n as usize,
        };
        assert_eq!(got.top_assignees_by_open.len(), n, "limit {limit}");
        assert_eq!(got.top_assignees_by_resolved.len(), n, "limit {limit}");
    }
    // Over 100 assignees: 0 means 10, more than 100 means 100.
    let app = &w.app;
    let c = app.caller(Role::Admin).await;
    let mut agents = Vec::new();
    for _ in 0..102 {
        agents.push(app.create_user(c.tenant, Role::Agent).await.0);
    }
    let mut fx = Vec::new();
    for (i, a) in agents.iter().enumerate() {
        // Agent i gets i % 4 + 1 open tickets: plenty of ties.
        for j in 0..(i % 4 + 1) {
            fx.push(Fx {
                id: Uuid::nil(),
                create: datetime!(2025-03-10 00:00 UTC) + Duration::minutes((i * 4 + j) as i64),
                status: TicketStatus::Open,
                priority: TicketPriority::Normal,
                assignee: Some(*a),
                tags: vec![],
                resolve: None,
            });
        }
    }
    let fx = seed(app, &c, fx).await;
    let window = (datetime!(2025-03-01 00:00 UTC), datetime!(2025-04-01 00:00 UTC));
    for (limit, n) in [(0, 10), (100, 100), (1000, 100), (7, 7)] {
        let got = check(app, &c, &fx, &Filter::default(), window, limit).await;
        assert_eq!(got.top_assignees_by_open.len(), n, "limit {limit}");
        assert!(got.top_assignees_by_resolved.is_empty());
    }
}

#[tokio::test]
async fn the_window_defaults_to_the_last_30_days_with_every_day_present() {
    let app = spawn_app().await;
    let c = app.caller(Role::Agent).await;
    for i in 0..3 {
        create_ticket(&app, &c, new_ticket(&format!("recent {i}"))).await;
    }
    let got = try_stats(&app, &c.token, GetTicketStatsRequest::default())
        .await
        .expect("default window");
    let start = from_ts(got.start_time.as_ref().expect("start"));
    let end = from_ts(got.end_time.as_ref().expect("end"));
    let now = from_ts(got.compute_time.as_ref().expect("compute_time"));
    assert_eq!(end, now, "the default end is now");
    assert_eq!(end - start, Duration::days(30));
    assert!((OffsetDateTime::now_utc() - now).abs() < Duration::seconds(30));
    assert_eq!(got.created_count, 3);
    assert_eq!(got.backlog.as_ref().expect("backlog").open_count, 3);
    // 30 days not aligned to midnight touch 31 UTC days; all but today are
    // zeros, and every one is there, consecutive.
    assert_eq!(got.daily_counts.len(), 31);
    let mut day = start.date();
    for (i, d) in got.daily_counts.iter().enumerate() {
        assert_eq!(d.date, iso(day), "day {i}");
        let want = if day == now.date() { 3 } else { 0 };
        assert_eq!((d.created_count, d.resolved_count), (want, 0), "day {}", d.date);
        day = day.next_day().expect("next");
    }
    let all = stored(&mut app.db.owner_conn().await, c.tenant).await;
    assert_eq!(got, expected(&all, &Filter::default(), start, end, now, 10));

    // Only an end: 30 days before it.
    let end = datetime!(2025-06-15 08:00 UTC);
    let got = try_stats(&app, &c.token, request(None, Some(end), &Filter::default(), 0))
        .await
        .expect("end only");
    assert_eq!(got.start_time, Some(ts(end - Duration::days(30))));
    assert_eq!(got.end_time, Some(ts(end)));
    assert_eq!(got.created_count, 0);
    assert_eq!(got.daily_counts.len(), 31);
    assert!(
        got.daily_counts
            .iter()
            .all(|d| d.created_count == 0 && d.resolved_count == 0)
    );

    // Only a start: up to now.
    let start = OffsetDateTime::now_utc() - Duration::days(2);
    let got = try_stats(&app, &c.token, request(Some(start), None, &Filter::default(), 0))
        .await
        .expect("start only");
    assert_eq!(got.end_time, got.compute_time);
    assert_eq!(got.created_count, 3);
    assert_eq!(got.daily_counts.len(), 3);
}
