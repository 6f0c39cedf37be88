//! The operator commands, run as the real binary: stdout carries only the
//! id or token, and what they create works against the server.

use std::process::Command;

use deskd::proto::tickets::v1 as pb;
use sqlx::Connection as _;

use crate::helpers::*;

fn stdout_line(out: &std::process::Output) -> String {
    assert!(
        out.status.success(),
        "exit {:?}: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let s = String::from_utf8(out.stdout.clone()).expect("utf-8");
    let lines: Vec<&str> = s.lines().collect();
    assert_eq!(lines.len(), 1, "stdout is exactly one line: {s:?}");
    lines[0].to_string()
}

#[tokio::test]
async fn bootstrap_commands_create_a_working_caller() {
    let app = spawn_app().await;
    let tenant = stdout_line(&deskd_cli(&app, &["tenant", "create", "Acme Corp"]));
    uuid::Uuid::parse_str(&tenant).expect("tenant id is a UUID");
    let user = stdout_line(&deskd_cli(
        &app,
        &[
            "user",
            "create",
            "--tenant",
            &tenant,
            "--email",
            "Ops@Acme.io",
            "--role",
            "agent",
        ],
    ));
    uuid::Uuid::parse_str(&user).expect("user id is a UUID");
    let token = stdout_line(&deskd_cli(
        &app,
        &["token", "mint", "--tenant", &tenant, "--user", &user, "--ttl", "10m"],
    ));
    assert_eq!(token.split('.').count(), 3, "a compact JWT");

    let created = app
        .tickets()
        .create_ticket(authed(
            &token,
            pb::CreateTicketRequest {
                ticket: Some(new_ticket("from the CLI")),
                request_id: String::new(),
            },
        ))
        .await
        .expect("the minted token works")
        .into_inner()
        .ticket
        .expect("ticket");
    assert_eq!(created.reporter_id, user);

    // The same e-mail (normalised) cannot be created twice in a tenant.
    let dup = deskd_cli(
        &app,
        &[
            "user",
            "create",
            "--tenant",
            &tenant,
            "--email",
            "ops@acme.io",
            "--role",
            "viewer",
        ],
    );
    assert!(!dup.status.success());
    assert!(dup.stdout.is_empty());
    assert!(String::from_utf8_lossy(&dup.stderr).contains("already exists"));

    // Suspend and reactivate change the stored status the tenant layer reads.
    let status = |app: &TestApp| {
        let tenant = tenant.clone();
        let db = app.db.owner_url();
        async move {
            let mut conn = sqlx::postgres::PgConnection::connect(&db).await.expect("connect");
            let s: String = sqlx::query_scalar("select status from tenants where id = $1::uuid")
                .bind(&tenant)
                .fetch_one(&mut conn)
                .await
                .expect("status");
            s
        }
    };
    stdout_line_empty(&deskd_cli(&app, &["tenant", "suspend", &tenant]));
    assert_eq!(status(&app).await, "suspended");
    stdout_line_empty(&deskd_cli(&app, &["tenant", "activate", &tenant]));
    assert_eq!(status(&app).await, "active");
    let missing = deskd_cli(&app, &["tenant", "suspend", &uuid::Uuid::now_v7().to_string()]);
    assert!(!missing.status.success());
}

fn stdout_line_empty(out: &std::process::Output) {
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(out.stdout.is_empty());
}

#[tokio::test]
async fn bad_input_fails_with_a_message_and_no_stdout() {
    let app = spawn_app().await;
    let out = deskd_cli(
        &app,
        &[
            "user",
            "create",
            "--tenant",
            "not-a-uuid",
            "--email",
            "a@b.io",
            "--role",
            "agent",
        ],
    );
    assert!(!out.status.success());
    assert!(out.stdout.is_empty());

    let out = deskd_cli(
        &app,
        &[
            "user",
            "create",
            "--tenant",
            &uuid::Uuid::now_v7().to_string(),
            "--email",
            "a@b.io",
            "--role",
            "agent",
        ],
    );
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no tenant"));

    let out = deskd_cli(
        &app,
        &[
            "user",
            "create",
            "--tenant",
            &uuid::Uuid::now_v7().to_string(),
            "--email",
            "a@b.io",
            "--role",
            "root",
        ],
    );
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown role"));
}

#[test]
fn invalid_configuration_names_the_key() {
    let out = Command::new(env!("CARGO_BIN_EXE_deskd"))
        .args([
            "token",
            "mint",
            "--tenant",
            "00000000-0000-0000-0000-000000000000",
            "--user",
            "00000000-0000-0000-0000-000000000000",
        ])
        .env("DESKD_DATABASE_MAX_CONNECTIONS", "lots")
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("database.max_connections") && err.contains("DESKD_DATABASE_MAX_CONNECTIONS"),
        "{err}"
    );
}

#[test]
fn every_command_explains_itself() {
    for args in [
        vec!["--help"],
        vec!["serve", "--help"],
        vec!["migrate", "--help"],
        vec!["tenant", "create", "--help"],
        vec!["user", "create", "--help"],
        vec!["token", "mint", "--help"],
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_deskd"))
            .args(&args)
            .output()
            .expect("run");
        assert!(out.status.success(), "{args:?}");
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(text.contains("Usage:"), "{args:?}: {text}");
    }
}

#[tokio::test]
async fn operator_commands_work_with_a_non_superuser_owner() {
    let db = TestDb::create().await;
    let role = format!("deskd_t_own_{}", &uuid::Uuid::new_v4().simple().to_string()[..12]);
    let mut admin = sqlx::postgres::PgConnection::connect_with(&admin_options())
        .await
        .expect("admin");
    for stmt in [
        format!("create role {role} login createrole"),
        format!("alter database \"{}\" owner to {role}", db.name),
    ] {
        sqlx::query(sqlx::AssertSqlSafe(stmt))
            .execute(&mut admin)
            .await
            .expect("set-up");
    }
    let mut owner = db.owner_conn().await;
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "grant create, usage on schema public to {role}"
    )))
    .execute(&mut owner)
    .await
    .expect("schema grant");

    let (host, port) = pg_host_port();
    let run = |args: &[&str]| {
        let dir = tempfile::tempdir().expect("tempdir");
        Command::new(env!("CARGO_BIN_EXE_deskd"))
            .args(args)
            .current_dir(dir.path())
            .env_clear()
            .env("DESKD_DATABASE_URL", db.app_url())
            .env(
                "DESKD_DATABASE_OWNER_URL",
                format!("postgres://{role}@{host}:{port}/{}", db.name),
            )
            .env("DESKD_JWT_SECRET", JWT_SECRET)
            .output()
            .expect("run deskd")
    };
    // FORCE'd RLS binds this owner too: the commands must set the context.
    let tenant = stdout_line(&run(&["tenant", "create", "Owned by a plain role"]));
    let user = stdout_line(&run(&[
        "user", "create", "--tenant", &tenant, "--email", "a@b.io", "--role", "admin",
    ]));
    uuid::Uuid::parse_str(&user).expect("user id");
    stdout_line_empty(&run(&["tenant", "suspend", &tenant]));

    for stmt in [
        format!("reassign owned by {role} to postgres"),
        format!("drop owned by {role}"),
    ] {
        sqlx::query(sqlx::AssertSqlSafe(stmt))
            .execute(&mut owner)
            .await
            .expect("clean-up");
    }
    let _ = owner.close().await;
    sqlx::query(sqlx::AssertSqlSafe(format!("drop role {role}")))
        .execute(&mut admin)
        .await
        .expect("drop role");
    let _ = admin.close().await;
}

#[tokio::test]
async fn serve_drains_and_exits_cleanly_on_sigterm() {
    let app = spawn_app().await;
    let caller = app.caller(deskd::users::model::Role::Agent).await;
    let server = ServeProcess::start(&app, &[]).await;
    let channel = server.channel().await;
    pb::tickets_service_client::TicketsServiceClient::new(channel)
        .create_ticket(authed(
            &caller.token,
            pb::CreateTicketRequest {
                ticket: Some(new_ticket("via the binary")),
                request_id: String::new(),
            },
        ))
        .await
        .expect("served by the binary");

    let (ok, lines, _) = server.stop().await;
    assert!(ok, "clean exit after SIGTERM");
    assert!(lines.iter().any(|l| l.contains("deskd stopped")), "{lines:#?}");
    // One request_completed line per RPC, as JSON, naming tenant and method.
    let completed: Vec<serde_json::Value> = lines
        .iter()
        .filter(|l| l.contains("request_completed"))
        .map(|l| serde_json::from_str(l).expect("json"))
        .collect();
    assert_eq!(completed.len(), 1, "{completed:#?}");
    assert_eq!(completed[0]["method"], "/deskd.tickets.v1.TicketsService/CreateTicket");
    assert_eq!(completed[0]["code"], "Ok");
    assert_eq!(completed[0]["tenant_id"], caller.tenant.to_string());
    // The credential never reaches the log.
    assert!(!lines.iter().any(|l| l.contains(&caller.token)));
}
