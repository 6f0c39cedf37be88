//! Telemetry end to end: a `deskd serve` process exports traces and metrics
//! over OTLP/gRPC to a real OTLP receiver (the OpenTelemetry protocol's own
//! service definitions, served here), joins its caller's trace from
//! `traceparent`, logs the trace id, and serves Prometheus text, `/livez`
//! and `/readyz` on the admin listener.

use std::{
    net::SocketAddr,
    sync::{Arc, Mutex},
    time::Duration,
};

use deskd::{proto::tickets::v1 as pb, users::model::Role};
use opentelemetry_proto::tonic::{
    collector::{
        metrics::v1::{
            ExportMetricsServiceRequest, ExportMetricsServiceResponse,
            metrics_service_server::{MetricsService, MetricsServiceServer},
        },
        trace::v1::{
            ExportTraceServiceRequest, ExportTraceServiceResponse,
            trace_service_server::{TraceService, TraceServiceServer},
        },
    },
    common::v1::{AnyValue, KeyValue, any_value::Value},
    trace::v1::{Span, span::SpanKind},
};
use tonic::{Request, Response, Status, metadata::MetadataValue};

use crate::helpers::*;

/// Metric data points received: (metric name, point attributes).
type Points = Vec<(String, Vec<KeyValue>)>;

/// What the receiver was sent.
#[derive(Default, Clone)]
struct Received {
    spans: Arc<Mutex<Vec<Span>>>,
    metric_names: Arc<Mutex<Points>>,
    service_names: Arc<Mutex<Vec<String>>>,
}

#[tonic::async_trait]
impl TraceService for Received {
    async fn export(
        &self,
        req: Request<ExportTraceServiceRequest>,
    ) -> Result<Response<ExportTraceServiceResponse>, Status> {
        for rs in req.into_inner().resource_spans {
            if let Some(r) = &rs.resource
                && let Some(name) = attr(&r.attributes, "service.name")
            {
                self.service_names.lock().expect("lock").push(name);
            }
            for ss in rs.scope_spans {
                self.spans.lock().expect("lock").extend(ss.spans);
            }
        }
        Ok(Response::new(ExportTraceServiceResponse::default()))
    }
}

#[tonic::async_trait]
impl MetricsService for Received {
    async fn export(
        &self,
        req: Request<ExportMetricsServiceRequest>,
    ) -> Result<Response<ExportMetricsServiceResponse>, Status> {
        use opentelemetry_proto::tonic::metrics::v1::metric::Data;
        for rm in req.into_inner().resource_metrics {
            for sm in rm.scope_metrics {
                for m in sm.metrics {
                    let points: Vec<Vec<KeyValue>> = match &m.data {
                        Some(Data::Histogram(h)) => h.data_points.iter().map(|p| p.attributes.clone()).collect(),
                        Some(Data::Sum(s)) => s.data_points.iter().map(|p| p.attributes.clone()).collect(),
                        Some(Data::Gauge(g)) => g.data_points.iter().map(|p| p.attributes.clone()).collect(),
                        _ => Vec::new(),
                    };
                    let mut names = self.metric_names.lock().expect("lock");
                    for attrs in points {
                        names.push((m.name.clone(), attrs));
                    }
                }
            }
        }
        Ok(Response::new(ExportMetricsServiceResponse::default()))
    }
}

fn attr(attrs: &[KeyValue], key: &str) -> Option<String> {
    attrs.iter().find(|kv| kv.key == key).and_then(|kv| match &kv.value {
        Some(AnyValue {
            value: Some(Value::StringValue(s)),
        }) => Some(s.clone()),
        Some(AnyValue {
            value: Some(Value::IntValue(i)),
        }) => Some(i.to_string()),
        Some(AnyValue {
            value: Some(Value::BoolValue(b)),
        }) => Some(b.to_string()),
        _ => None,
    })
}

async fn start_receiver() -> (SocketAddr, Received) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let received = Received::default();
    let server = tonic::transport::Server::builder()
        .add_service(TraceServiceServer::new(received.clone()))
        .add_service(MetricsServiceServer::new(received.clone()))
        .serve_with_incoming(tonic::transport::server::TcpIncoming::from(listener));
    tokio::spawn(server);
    (addr, received)
}

/// Polls (bounded: 20 s) until `f` finds what it looks for.
async fn eventually<T>(what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    for _ in 0..400 {
        if let Some(v) = f() {
            return v;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("never received: {what}");
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn with_traceparent<T>(token: &str, traceparent: &str, msg: T) -> Request<T> {
    let mut req = authed(token, msg);
    req.metadata_mut()
        .insert("traceparent", MetadataValue::try_from(traceparent).expect("ascii"));
    req
}

#[tokio::test]
async fn rpcs_are_traced_into_the_callers_trace_and_measured_over_otlp_and_prometheus() {
    let (otlp, received) = start_receiver().await;
    // Only the process under test runs jobs.
    let app = spawn_app_with(|c| c.jobs.run_in_serve = false).await;
    let caller = app.caller(Role::Agent).await;
    let endpoint = format!("http://{otlp}");
    let prefix = format!("deskd-test-{}", uuid::Uuid::new_v4().simple());
    let server = ServeProcess::start(
        &app,
        &[
            ("DESKD_TELEMETRY_OTLP_ENDPOINT", endpoint.as_str()),
            ("DESKD_TELEMETRY_SERVICE_NAME", "deskd-under-test"),
            ("DESKD_REDIS_URL", "redis://127.0.0.1:6379/0"),
            ("DESKD_REDIS_KEY_PREFIX", prefix.as_str()),
            ("DESKD_TELEMETRY_METRICS_INTERVAL", "200ms"),
            ("OTEL_BSP_SCHEDULE_DELAY", "100"),
        ],
    )
    .await;
    let mut tickets = pb::tickets_service_client::TicketsServiceClient::new(server.channel().await);

    // A caller's trace: deskd's server span must join it.
    let trace_id = "4bf92f3577b34da6a3ce929d0e0e4736";
    let parent_span = "00f067aa0ba902b7";
    let traceparent = format!("00-{trace_id}-{parent_span}-01");
    let secret_title = "title-that-must-not-reach-telemetry-7731";
    let created = tickets
        .create_ticket(authed(
            &caller.token,
            pb::CreateTicketRequest {
                ticket: Some(new_ticket(secret_title)),
                request_id: String::new(),
            },
        ))
        .await
        .expect("create")
        .into_inner()
        .ticket
        .expect("ticket");
    tickets
        .get_ticket(with_traceparent(
            &caller.token,
            &traceparent,
            pb::GetTicketRequest { id: created.id.clone() },
        ))
        .await
        .expect("get");
    // A write that enqueues a job (the welcome e-mail), in another trace:
    // the job's span links to it.
    let admin = app.caller(Role::Admin).await;
    let job_trace = "5ce0e9a56015fec5aadfa328ae398115";
    deskd::proto::users::v1::users_service_client::UsersServiceClient::new(server.channel().await)
        .create_user(with_traceparent(
            &admin.token,
            &format!("00-{job_trace}-ab42124a3c573678-01"),
            deskd::proto::users::v1::CreateUserRequest {
                user: Some(crate::users_support::person(
                    "traced@example.com",
                    "Traced",
                    deskd::proto::users::v1::Role::Agent,
                )),
                request_id: String::new(),
            },
        ))
        .await
        .expect("create user");
    let err = tickets
        .get_ticket(authed(
            &caller.token,
            pb::GetTicketRequest {
                id: "not-a-uuid".into(),
            },
        ))
        .await
        .expect_err("invalid name");
    assert_eq!(err.code(), tonic::Code::InvalidArgument);

    // The server span: named and attributed after the RPC conventions, a
    // child of the caller's span, with the tenant.
    let server_span = eventually("the GetTicket server span", || {
        received
            .spans
            .lock()
            .expect("lock")
            .iter()
            .find(|s| hex(&s.trace_id) == trace_id && s.kind == SpanKind::Server as i32)
            .cloned()
    })
    .await;
    assert_eq!(server_span.name, "deskd.tickets.v1.TicketsService/GetTicket");
    assert_eq!(hex(&server_span.parent_span_id), parent_span);
    let a = &server_span.attributes;
    assert_eq!(attr(a, "rpc.system").as_deref(), Some("grpc"));
    assert_eq!(
        attr(a, "rpc.service").as_deref(),
        Some("deskd.tickets.v1.TicketsService")
    );
    assert_eq!(attr(a, "rpc.method").as_deref(), Some("GetTicket"));
    assert_eq!(attr(a, "rpc.grpc.status_code").as_deref(), Some("0"));
    assert_eq!(attr(a, "tenant.id"), Some(caller.tenant.0.to_string()));

    // Its database statements are child spans in the same trace.
    let server_span_id = server_span.span_id.clone();
    let db_spans = eventually("the GetTicket statement spans", || {
        let spans = received.spans.lock().expect("lock");
        let db: Vec<Span> = spans
            .iter()
            .filter(|s| hex(&s.trace_id) == trace_id && s.kind == SpanKind::Client as i32)
            .cloned()
            .collect();
        db.iter().any(|s| s.name == "SELECT").then_some(db)
    })
    .await;
    assert!(
        db_spans.iter().all(|s| s.parent_span_id == server_span_id),
        "direct children of the RPC span"
    );
    let select = db_spans.iter().find(|s| s.name == "SELECT").expect("select span");
    assert_eq!(
        attr(&select.attributes, "db.system.name").as_deref(),
        Some("postgresql")
    );
    assert!(attr(&select.attributes, "db.query.summary").is_some_and(|q| q.to_lowercase().starts_with("select")));
    assert!(select.start_time_unix_nano >= server_span.start_time_unix_nano);
    assert!(select.end_time_unix_nano <= server_span.end_time_unix_nano);

    // The tenant layer's look-ups: cache spans (the caller's user was
    // cached by CreateTicket, so a hit), and Redis calls as client spans.
    let in_trace: Vec<Span> = received
        .spans
        .lock()
        .expect("lock")
        .iter()
        .filter(|s| hex(&s.trace_id) == trace_id)
        .cloned()
        .collect();
    let user_cache = in_trace.iter().find(|s| s.name == "cache user").unwrap_or_else(|| {
        panic!(
            "no cache span: {:?}",
            in_trace.iter().map(|s| &s.name).collect::<Vec<_>>()
        )
    });
    assert_eq!(attr(&user_cache.attributes, "cache.result").as_deref(), Some("hit"));
    let (_, text) = http_get(&server.admin_addr, "/metrics").await;
    assert!(text.contains("deskd_cache_requests_total{"), "{text}");
    // Rate limiting went through Redis within the trace.
    let redis_span = in_trace
        .iter()
        .find(|s| s.name == "rate_limit")
        .expect("a Redis span for the rate limit");
    assert_eq!(redis_span.kind, SpanKind::Client as i32);
    assert_eq!(attr(&redis_span.attributes, "db.system.name").as_deref(), Some("redis"));

    // The failed call is its own trace, with its status code.
    let failed = eventually("the failed GetTicket span", || {
        received
            .spans
            .lock()
            .expect("lock")
            .iter()
            .find(|s| {
                s.kind == SpanKind::Server as i32 && attr(&s.attributes, "rpc.grpc.status_code").as_deref() == Some("3")
            })
            .cloned()
    })
    .await;
    assert_ne!(hex(&failed.trace_id), trace_id);

    // The job's span: its own trace, a consumer span linked to the request's.
    let job_span = eventually("the welcome e-mail job span", || {
        received
            .spans
            .lock()
            .expect("lock")
            .iter()
            .find(|s| s.name == "job users.welcome_email")
            .cloned()
    })
    .await;
    assert_eq!(job_span.kind, SpanKind::Consumer as i32);
    assert_ne!(hex(&job_span.trace_id), job_trace, "a link, not a parent");
    assert!(
        job_span.links.iter().any(|l| hex(&l.trace_id) == job_trace),
        "{:?}",
        job_span.links
    );
    assert_eq!(
        attr(&job_span.attributes, "job.kind").as_deref(),
        Some("users.welcome_email")
    );
    assert_eq!(
        attr(&job_span.attributes, "tenant.id"),
        Some(admin.tenant.0.to_string())
    );

    // Metrics over OTLP: RPC durations by method and code, statement durations.
    eventually("rpc.server.call.duration for GetTicket over OTLP", || {
        received
            .metric_names
            .lock()
            .expect("lock")
            .iter()
            .any(|(n, attrs)| {
                n == "rpc.server.call.duration"
                    && attr(attrs, "rpc.method").as_deref() == Some("GetTicket")
                    && attr(attrs, "rpc.grpc.status_code").as_deref() == Some("3")
            })
            .then_some(())
    })
    .await;
    eventually("db.client.operation.duration over OTLP", || {
        received
            .metric_names
            .lock()
            .expect("lock")
            .iter()
            .any(|(n, attrs)| {
                n == "db.client.operation.duration" && attr(attrs, "db.operation.name").as_deref() == Some("SELECT")
            })
            .then_some(())
    })
    .await;
    let names = received.service_names.lock().expect("lock").clone();
    assert!(
        !names.is_empty() && names.iter().all(|n| n == "deskd-under-test"),
        "{names:?}"
    );

    // The same metrics in Prometheus text on the admin listener, and the probes.
    let (status, text) = http_get(&server.admin_addr, "/metrics").await;
    assert_eq!(status, 200);
    assert!(
        text.lines()
            .any(|l| l.starts_with("rpc_server_call_duration_seconds_count{")
                && l.contains("rpc_method=\"GetTicket\"")
                && l.contains("rpc_grpc_status_code=\"0\"")),
        "{text}"
    );
    assert!(text.contains("db_client_connection_max{"), "{text}");
    assert!(text.contains("db_client_connection_count{"), "{text}");
    let has = |prefix: &str, labels: &[&str]| {
        text.lines()
            .any(|l| l.starts_with(prefix) && labels.iter().all(|want| l.contains(want)))
    };
    assert!(
        has("deskd_rate_limit_decisions_total{", &["outcome=\"allowed\""]),
        "{text}"
    );
    assert!(has("deskd_cache_requests_total{", &["cache_result=\""]), "{text}");
    assert!(
        has(
            "deskd_jobs_attempts_total{",
            &["job_kind=\"users.welcome_email\"", "outcome=\"retry\""]
        ),
        "{text}"
    );
    assert!(
        has(
            "db_client_operation_duration_seconds_count{",
            &["db_operation_name=\"SELECT\""]
        ),
        "{text}"
    );
    assert!(text.contains("rpc_server_active_requests{"), "{text}");
    assert_eq!(http_get(&server.admin_addr, "/livez").await.0, 200);
    assert_eq!(http_get(&server.admin_addr, "/readyz").await.0, 200);

    let (ok, logs, _) = server.stop().await;
    assert!(ok, "clean exit");
    // The request log names the caller's trace; nothing secret reached a span or a log.
    let get_log = logs
        .iter()
        .filter(|l| l.contains("request_completed") && l.contains("GetTicket"))
        .map(|l| serde_json::from_str::<serde_json::Value>(l).expect("json"))
        .find(|v| v["code"] == "Ok")
        .expect("a GetTicket request_completed line");
    assert_eq!(get_log["trace_id"], trace_id);
    let spans = received.spans.lock().expect("lock");
    for s in spans.iter() {
        for kv in &s.attributes {
            let v = attr(std::slice::from_ref(kv), &kv.key).unwrap_or_default();
            assert!(
                !v.contains(secret_title) && !v.contains(&caller.token),
                "{}: {v}",
                kv.key
            );
        }
    }
    assert!(logs.iter().all(|l| !l.contains(&caller.token)));
}

#[tokio::test]
async fn without_an_otlp_endpoint_nothing_is_exported_but_prometheus_still_counts() {
    let app = spawn_app().await;
    let caller = app.caller(Role::Agent).await;
    let server = ServeProcess::start(&app, &[]).await;
    let mut tickets = pb::tickets_service_client::TicketsServiceClient::new(server.channel().await);
    let traceparent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
    tickets
        .list_tickets(with_traceparent(
            &caller.token,
            traceparent,
            pb::ListTicketsRequest::default(),
        ))
        .await
        .expect("list");
    let (_, text) = http_get(&server.admin_addr, "/metrics").await;
    assert!(
        text.lines()
            .any(|l| l.starts_with("rpc_server_call_duration_seconds_count{")
                && l.contains("rpc_method=\"ListTickets\"")),
        "{text}"
    );
    assert_documented(&text);
    let (ok, logs, _) = server.stop().await;
    assert!(ok);
    // The caller's trace id is still logged, from its traceparent.
    assert!(
        logs.iter()
            .any(|l| l.contains("request_completed") && l.contains("0af7651916cd43dd8448eb211c80319c")),
        "{logs:#?}"
    );
}

/// Every series the server exports is in deploy/metrics.txt, with only the
/// labels listed there, so the dashboard and alert rules (checked against
/// that file by scripts/check-deploy) match what deskd really exports.
fn assert_documented(exposition: &str) {
    let listed: std::collections::HashMap<&str, Vec<&str>> = include_str!("../../deploy/metrics.txt")
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
        .filter_map(|l| {
            let mut cols = l.split_whitespace();
            let name = cols.next()?;
            let _kind = cols.next();
            let labels = cols.next().map(|c| c.split(',').collect()).unwrap_or_default();
            Some((name, labels))
        })
        .collect();
    let mut seen = 0;
    for line in exposition.lines().filter(|l| !l.starts_with('#') && !l.is_empty()) {
        let (series, _) = line.rsplit_once(' ').expect("sample value");
        let (name, labels) = series.split_once('{').unwrap_or((series, ""));
        if name == "target_info" {
            continue;
        }
        let base = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|suffix| name.strip_suffix(suffix).filter(|b| listed.contains_key(b)))
            .unwrap_or(name);
        let allowed = listed
            .get(base)
            .unwrap_or_else(|| panic!("{name} is exported but not in deploy/metrics.txt"));
        for pair in labels.trim_end_matches('}').split("\",").filter(|p| !p.is_empty()) {
            let key = pair.split('=').next().unwrap_or_default();
            assert!(
                allowed.contains(&key) || matches!(key, "le" | "otel_scope_name" | "otel_scope_version"),
                "{name} has label {key}, not listed in deploy/metrics.txt"
            );
        }
        seen += 1;
    }
    assert!(seen > 0, "no series exported");
}

#[tokio::test]
async fn sampling_follows_the_caller_and_the_ratio_and_slow_rpcs_are_flagged() {
    let (otlp, received) = start_receiver().await;
    let app = spawn_app_with(|c| c.jobs.run_in_serve = false).await;
    let caller = app.caller(Role::Agent).await;
    let endpoint = format!("http://{otlp}");
    let server = ServeProcess::start(
        &app,
        &[
            ("DESKD_TELEMETRY_OTLP_ENDPOINT", endpoint.as_str()),
            // No new traces: only callers' sampled traces are recorded.
            ("DESKD_TELEMETRY_SAMPLING_RATIO", "0"),
            // Every RPC is "slow".
            ("DESKD_SERVER_SLOW_RPC_THRESHOLD", "1us"),
            ("OTEL_BSP_SCHEDULE_DELAY", "100"),
        ],
    )
    .await;
    let mut tickets = pb::tickets_service_client::TicketsServiceClient::new(server.channel().await);
    // Not recorded: a new trace at ratio 0, and a caller's unsampled trace.
    tickets
        .list_tickets(authed(&caller.token, pb::ListTicketsRequest::default()))
        .await
        .expect("list");
    let unsampled = "11111111111111111111111111111111";
    tickets
        .list_tickets(with_traceparent(
            &caller.token,
            &format!("00-{unsampled}-2222222222222222-00"),
            pb::ListTicketsRequest::default(),
        ))
        .await
        .expect("list");
    // Recorded: the caller's sampled trace, whatever the ratio.
    let sampled = "33333333333333333333333333333333";
    tickets
        .create_ticket(with_traceparent(
            &caller.token,
            &format!("00-{sampled}-4444444444444444-01"),
            pb::CreateTicketRequest {
                ticket: Some(new_ticket("sampled")),
                request_id: String::new(),
            },
        ))
        .await
        .expect("create");
    let span = eventually("the sampled CreateTicket span", || {
        received
            .spans
            .lock()
            .expect("lock")
            .iter()
            .find(|s| hex(&s.trace_id) == sampled && s.kind == SpanKind::Server as i32)
            .cloned()
    })
    .await;
    assert_eq!(attr(&span.attributes, "deskd.slow").as_deref(), Some("true"));
    // The spans end in order and are exported in order: by now the two
    // ListTickets spans would have arrived had they been recorded.
    let spans = received.spans.lock().expect("lock").clone();
    assert!(
        spans
            .iter()
            .all(|s| attr(&s.attributes, "rpc.method").as_deref() != Some("ListTickets")),
        "unsampled RPCs were exported"
    );
    assert!(spans.iter().all(|s| hex(&s.trace_id) != unsampled));

    let (ok, logs, _) = server.stop().await;
    assert!(ok);
    let slow: Vec<serde_json::Value> = logs
        .iter()
        .filter(|l| l.contains("\"slow_rpc\""))
        .map(|l| serde_json::from_str(l).expect("json"))
        .collect();
    assert_eq!(slow.len(), 3, "{slow:#?}");
    assert!(slow.iter().all(|v| v["level"] == "WARN"));
    assert!(slow.iter().any(|v| v["trace_id"] == sampled));
}
