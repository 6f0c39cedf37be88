//! Ticket exports as long-running operations (AIP-151): ExportTickets writes
//! exactly the filtered tickets, GetOperation/ListOperations report it,
//! CancelOperation stops it, and another tenant's operation is invisible.

use std::{path::Path, time::Duration};

use deskd::{
    proto::{
        operations::v1::{
            self as opb, CancelOperationRequest, GetOperationRequest, ListOperationsRequest,
            operations_service_client::OperationsServiceClient,
        },
        tickets::v1::{self as pb, ExportTicketsRequest},
    },
    tickets::export::CSV_HEADER,
    users::model::Role,
};
use sqlx::Connection as _;
use tonic::{Code, transport::Channel};
use uuid::Uuid;

use crate::helpers::*;

pub(crate) fn ops(app: &TestApp) -> OperationsServiceClient<Channel> {
    OperationsServiceClient::new(app.channel.clone())
}

pub(crate) async fn export(app: &TestApp, caller: &Caller, req: ExportTicketsRequest) -> opb::Operation {
    app.tickets()
        .export_tickets(authed(&caller.token, req))
        .await
        .expect("export tickets")
        .into_inner()
        .operation
        .expect("operation")
}

pub(crate) async fn get_op(app: &TestApp, caller: &Caller, name: &str) -> Result<opb::Operation, tonic::Status> {
    ops(app)
        .get_operation(authed(&caller.token, GetOperationRequest { name: name.to_string() }))
        .await
        .map(|r| r.into_inner().operation.expect("operation"))
}

/// Polls GetOperation until the operation is done (bounded: 30 s).
pub(crate) async fn wait_done(app: &TestApp, caller: &Caller, name: &str) -> opb::Operation {
    for _ in 0..1500 {
        let op = get_op(app, caller, name).await.expect("get operation");
        if op.done {
            return op;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("operation {name} never finished");
}

pub(crate) fn state(op: &opb::Operation) -> opb::OperationState {
    opb::OperationState::try_from(op.metadata.as_ref().expect("metadata").state).expect("state")
}

pub(crate) fn export_result(op: &opb::Operation) -> opb::ExportResult {
    match &op.result {
        Some(opb::operation::Result::Response(r)) => r.clone(),
        other => panic!("no export result: {other:?}"),
    }
}

#[tokio::test]
async fn an_export_writes_exactly_the_filtered_tickets_as_csv_and_jsonl() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().to_path_buf();
    let app = spawn_app_with(|c| {
        c.exports.dir = path;
        c.jobs.poll_interval = Duration::from_millis(20);
    })
    .await;
    let caller = app.caller(Role::Admin).await;
    let mut expected = Vec::new();
    for i in 0..50 {
        let mut t = new_ticket(&format!("ticket {i}"));
        if i % 2 == 0 {
            t.tags = vec!["hot".to_string()];
        }
        let created = create_ticket(&app, &caller, t).await;
        if i % 2 == 0 {
            expected.push(created.id);
        }
    }
    assert_eq!(expected.len(), 25);
    let filter = |format: pb::ExportFormat| ExportTicketsRequest {
        tag: "hot".to_string(),
        format: format as i32,
        ..Default::default()
    };

    // CSV: a header, then the matching tickets, oldest first.
    let op = export(&app, &caller, filter(pb::ExportFormat::Csv)).await;
    assert!(op.name.starts_with("operations/"), "{}", op.name);
    let op = wait_done(&app, &caller, &op.name).await;
    assert_eq!(state(&op), opb::OperationState::Succeeded);
    assert_eq!(op.metadata.as_ref().unwrap().rows_done, 25);
    let res = export_result(&op);
    assert_eq!(res.format, "csv");
    assert_eq!(res.row_count, 25);
    assert_eq!(
        res.path,
        format!("{}/{}.csv", caller.tenant.0, op.name.trim_start_matches("operations/"))
    );
    let text = std::fs::read_to_string(dir.path().join(&res.path)).expect("read csv");
    assert_eq!(res.size_bytes, text.len() as i64);
    let lines: Vec<&str> = text.split_terminator("\r\n").collect();
    assert_eq!(lines[0], CSV_HEADER);
    let ids: Vec<String> = lines[1..]
        .iter()
        .map(|l| l.split(',').next().unwrap().to_string())
        .collect();
    assert_eq!(ids, expected);
    assert!(lines[1..].iter().all(|l| l.split(',').nth(7) == Some("hot")));

    // JSONL: one object per matching ticket.
    let op2 = export(&app, &caller, filter(pb::ExportFormat::Jsonl)).await;
    let op2 = wait_done(&app, &caller, &op2.name).await;
    let res2 = export_result(&op2);
    assert_eq!(res2.format, "jsonl");
    assert!(res2.path.ends_with(".jsonl"));
    let text = std::fs::read_to_string(dir.path().join(&res2.path)).expect("read jsonl");
    let rows: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).expect("json line"))
        .collect();
    let ids: Vec<String> = rows.iter().map(|r| r["id"].as_str().unwrap().to_string()).collect();
    assert_eq!(ids, expected);
    assert!(rows.iter().all(|r| r["tags"] == serde_json::json!(["hot"])));

    // ListOperations shows both, newest first.
    let listed = ops(&app)
        .list_operations(authed(&caller.token, ListOperationsRequest::default()))
        .await
        .expect("list operations")
        .into_inner();
    let names: Vec<&str> = listed.operations.iter().map(|o| o.name.as_str()).collect();
    assert_eq!(names, vec![op2.name.as_str(), op.name.as_str()]);
}

#[tokio::test]
async fn a_cancelled_export_writes_no_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().to_path_buf();
    let app = spawn_app_with(|c| {
        c.exports.dir = path;
        c.jobs.run_in_serve = false;
    })
    .await;
    let caller = app.caller(Role::Agent).await;
    for i in 0..5 {
        create_ticket(&app, &caller, new_ticket(&format!("ticket {i}"))).await;
    }
    let op = export(
        &app,
        &caller,
        ExportTicketsRequest {
            format: pb::ExportFormat::Csv as i32,
            ..Default::default()
        },
    )
    .await;
    assert!(!op.done);
    assert_eq!(state(&op), opb::OperationState::Queued);

    let cancelled = ops(&app)
        .cancel_operation(authed(&caller.token, CancelOperationRequest { name: op.name.clone() }))
        .await
        .expect("cancel")
        .into_inner()
        .operation
        .expect("operation");
    assert!(cancelled.done);
    assert_eq!(state(&cancelled), opb::OperationState::Cancelled);
    match &cancelled.result {
        Some(opb::operation::Result::Error(e)) => assert_eq!(e.code, Code::Cancelled as i32),
        other => panic!("{other:?}"),
    }

    // A worker then runs the job, which writes nothing.
    let mut cfg = app.config.clone();
    cfg.database.owner_url = secrecy::SecretString::from("");
    cfg.jobs.poll_interval = Duration::from_millis(20);
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(deskd::startup::jobs::run_worker(cfg, async move {
        let _ = stopped.await;
    }));
    let mut conn = app.db.owner_conn().await;
    let mut job_state = String::new();
    for _ in 0..500 {
        job_state = sqlx::query_scalar("select state from jobs where kind = 'tickets.export'")
            .fetch_one(&mut conn)
            .await
            .expect("job state");
        if job_state == "succeeded" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let _ = conn.close().await;
    assert_eq!(job_state, "succeeded");
    let _ = stop.send(());
    task.await.expect("join").expect("worker stops");

    let after = get_op(&app, &caller, &op.name).await.expect("get");
    assert_eq!(state(&after), opb::OperationState::Cancelled);
    let id = op.name.trim_start_matches("operations/");
    let file = dir.path().join(caller.tenant.0.to_string()).join(format!("{id}.csv"));
    assert!(!Path::new(&file).exists(), "{} exists", file.display());
}

#[tokio::test]
async fn another_tenants_operation_answers_like_a_random_one() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().to_path_buf();
    let app = spawn_app_with(|c| {
        c.exports.dir = path;
        c.jobs.run_in_serve = false;
    })
    .await;
    let owner = app.caller(Role::Admin).await;
    let stranger = app.caller(Role::Admin).await;
    let op = export(
        &app,
        &owner,
        ExportTicketsRequest {
            format: pb::ExportFormat::Jsonl as i32,
            ..Default::default()
        },
    )
    .await;
    let random = format!("operations/{}", Uuid::now_v7());

    let theirs = get_op(&app, &stranger, &op.name).await.expect_err("hidden");
    let none = get_op(&app, &stranger, &random).await.expect_err("missing");
    assert_eq!(theirs.code(), Code::NotFound);
    assert_eq!((theirs.code(), theirs.message()), (none.code(), none.message()));
    assert_eq!(reason(&theirs), reason(&none));

    let cancel = |name: String| {
        let mut c = ops(&app);
        let token = stranger.token.clone();
        async move {
            c.cancel_operation(authed(&token, CancelOperationRequest { name }))
                .await
        }
    };
    let theirs = cancel(op.name.clone()).await.expect_err("hidden");
    let none = cancel(random).await.expect_err("missing");
    assert_eq!(theirs.code(), Code::NotFound);
    assert_eq!((theirs.code(), theirs.message()), (none.code(), none.message()));

    // The owner's export is untouched.
    let mine = get_op(&app, &owner, &op.name).await.expect("own operation");
    assert_eq!(state(&mine), opb::OperationState::Queued);
    let listed = ops(&app)
        .list_operations(authed(&stranger.token, ListOperationsRequest::default()))
        .await
        .expect("list")
        .into_inner();
    assert!(listed.operations.is_empty());
}

#[tokio::test]
async fn bad_operation_names_and_formats_are_invalid_arguments() {
    let app = spawn_app_with(|c| c.jobs.run_in_serve = false).await;
    let caller = app.caller(Role::Admin).await;
    let id = Uuid::now_v7();
    for bad in [
        String::new(),
        "operations/".to_string(),
        "operations/not-a-uuid".to_string(),
        id.to_string(),
        format!("tickets/{id}"),
    ] {
        let err = get_op(&app, &caller, &bad).await.expect_err("invalid");
        assert_field_violation(&err, "name", "INVALID_OPERATION_NAME");
        let err = ops(&app)
            .cancel_operation(authed(&caller.token, CancelOperationRequest { name: bad.clone() }))
            .await
            .expect_err("invalid");
        assert_field_violation(&err, "name", "INVALID_OPERATION_NAME");
    }
    let err = app
        .tickets()
        .export_tickets(authed(&caller.token, ExportTicketsRequest::default()))
        .await
        .expect_err("no format");
    assert_field_violation(&err, "format", "EXPORT_FORMAT_REQUIRED");
    let err = app
        .tickets()
        .export_tickets(authed(
            &caller.token,
            ExportTicketsRequest {
                format: pb::ExportFormat::Csv as i32,
                assignee_id: "nope".to_string(),
                ..Default::default()
            },
        ))
        .await
        .expect_err("bad assignee");
    assert_eq!(err.code(), Code::InvalidArgument);
    let err = ops(&app)
        .list_operations(authed(
            &caller.token,
            ListOperationsRequest {
                page_size: -1,
                page_token: String::new(),
            },
        ))
        .await
        .expect_err("negative page size");
    assert_field_violation(&err, "page_size", "INVALID_PAGE_SIZE");
}

#[tokio::test]
async fn a_running_export_stops_when_cancelled_and_leaves_no_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().to_path_buf();
    let app = spawn_app_with(|c| {
        c.exports.dir = path;
        c.jobs.run_in_serve = false;
    })
    .await;
    let caller = app.caller(Role::Agent).await;
    // More than one page (1,000 rows) of tickets, inserted as the owner.
    let mut owner = app.db.owner_conn().await;
    sqlx::query(
        "insert into tickets (tenant_id, id, title, status, priority, reporter_id, create_time, update_time) \
         select $1, gen_random_uuid(), 'bulk ' || i, 'open', 'normal', $2, \
                now() - (i || ' seconds')::interval, now() - (i || ' seconds')::interval \
         from generate_series(1, 1500) as i",
    )
    .bind(caller.tenant.0)
    .bind(caller.user.0)
    .execute(&mut owner)
    .await
    .expect("seed");
    let op = export(
        &app,
        &caller,
        ExportTicketsRequest {
            format: pb::ExportFormat::Jsonl as i32,
            ..Default::default()
        },
    )
    .await;

    // Hold the tickets table so the export blocks inside its first page.
    let mut blocker = owner.begin().await.expect("begin");
    sqlx::query("lock table tickets in access exclusive mode")
        .execute(&mut *blocker)
        .await
        .expect("lock");
    let mut cfg = app.config.clone();
    cfg.database.owner_url = secrecy::SecretString::from("");
    cfg.jobs.poll_interval = Duration::from_millis(20);
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let worker = tokio::spawn(deskd::startup::jobs::run_worker(cfg, async move {
        let _ = stopped.await;
    }));
    wait_lock_waiters(&app, 1).await;
    let running = get_op(&app, &caller, &op.name).await.expect("get");
    assert_eq!(state(&running), opb::OperationState::Running);

    // Cancel while it runs (the request waits behind the page's transaction).
    let mut client = ops(&app);
    let token = caller.token.clone();
    let name = op.name.clone();
    let cancel = tokio::spawn(async move {
        client
            .cancel_operation(authed(&token, CancelOperationRequest { name }))
            .await
    });
    wait_lock_waiters(&app, 2).await;
    blocker.rollback().await.expect("release");
    cancel.await.expect("join").expect("cancel");

    let done = wait_done(&app, &caller, &op.name).await;
    assert_eq!(state(&done), opb::OperationState::Cancelled);
    let _ = stop.send(());
    worker.await.expect("join").expect("worker stops");
    let id = op.name.trim_start_matches("operations/");
    let file = dir.path().join(caller.tenant.0.to_string()).join(format!("{id}.jsonl"));
    assert!(
        !Path::new(&file).exists(),
        "the partial file is removed: {}",
        file.display()
    );
}
