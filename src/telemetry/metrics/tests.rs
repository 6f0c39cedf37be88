use super::*;

#[test]
fn rpc_labels_come_only_from_served_methods() {
    let (s, m, i) = rpc_labels("/deskd.tickets.v1.TicketsService/GetTicket");
    assert_eq!((s, m), ("deskd.tickets.v1.TicketsService", "GetTicket"));
    assert!(i.is_some());
    let (s, m, _) = rpc_labels("/grpc.health.v1.Health/Check");
    assert_eq!((s, m), ("grpc.health.v1.Health", "Check"));
    assert_eq!(rpc_labels("/evil/x\"y"), ("_OTHER", "_OTHER", None));
    assert_eq!(rpc_labels("no-slash"), ("_OTHER", "_OTHER", None));
}

#[test]
fn per_request_counters_render_as_prometheus_counters() {
    let m = metrics();
    m.rate_limit("limited");
    m.rate_limit("not-an-outcome");
    m.cache("counter_test", false);
    m.cache("counter_test", false);
    let active = m.rpc_started(rpc_labels("/deskd.stats.v1.StatsService/GetTicketStats").2);
    let text = render();
    assert!(
        text.lines().any(|l| l.starts_with("deskd_cache_requests_total{")
            && l.contains("cache_name=\"counter_test\"")
            && l.contains("cache_result=\"miss\"")
            && l.ends_with(" 2")),
        "{text}"
    );
    assert!(text.contains("deskd_rate_limit_decisions_total{"), "{text}");
    assert!(!text.contains("not-an-outcome"));
    assert!(
        text.lines().any(|l| l.starts_with("rpc_server_active_requests{")
            && l.contains("rpc_method=\"GetTicketStats\"")
            && !l.ends_with(" 0")),
        "{text}"
    );
    drop(active);
}

#[test]
fn recorded_metrics_render_in_prometheus_text_with_units() {
    metrics().rpc_duration.record(
        0.003,
        &[
            KeyValue::new("rpc.system", "grpc"),
            KeyValue::new("rpc.service", "test.Svc"),
            KeyValue::new("rpc.method", "Render"),
            KeyValue::new("rpc.grpc.status_code", 0i64),
        ],
    );
    metrics().cache("render_test", true);
    let text = render();
    assert!(
        text.contains("# TYPE rpc_server_call_duration_seconds histogram"),
        "{text}"
    );
    assert!(
        text.lines()
            .any(|l| l.starts_with("rpc_server_call_duration_seconds_bucket{")
                && l.contains("rpc_method=\"Render\"")
                && l.contains("le=\"0.005\"")
                && l.ends_with(" 1")),
        "{text}"
    );
    assert!(
        text.lines().any(|l| l.starts_with("deskd_cache_requests_total{")
            && l.contains("cache_name=\"render_test\"")
            && l.contains("cache_result=\"hit\"")),
        "{text}"
    );
}
