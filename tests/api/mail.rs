//! The welcome e-mail end to end: CreateUser enqueues it in its transaction,
//! the worker inside `deskd serve` sends it to a real SMTP server (aiosmtpd,
//! installed by scripts/ensure-services), failures are retried then dead,
//! and an idempotent retry of CreateUser sends nothing more.

use std::{
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::Duration,
};

use deskd::{proto::users::v1 as upb, tenancy::TenantId, users::model::Role};
use uuid::Uuid;

use crate::{helpers::*, users_support::*};

/// aiosmtpd storing every message in a Maildir; killed when dropped.
struct SmtpServer {
    child: Child,
    port: u16,
    dir: tempfile::TempDir,
}

impl SmtpServer {
    async fn start() -> SmtpServer {
        let dir = tempfile::tempdir().expect("tempdir");
        let port = free_port();
        let child = Command::new("python3")
            .args(["-m", "aiosmtpd", "-n", "-l"])
            .arg(format!("127.0.0.1:{port}"))
            .args(["-c", "aiosmtpd.handlers.Mailbox"])
            .arg(dir.path().join("maildir"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start aiosmtpd (scripts/ensure-services installs it)");
        let server = SmtpServer { child, port, dir };
        wait_listening(port, "aiosmtpd").await;
        server
    }

    fn new_dir(&self) -> PathBuf {
        self.dir.path().join("maildir").join("new")
    }

    /// The messages delivered so far, as raw text.
    fn messages(&self) -> Vec<String> {
        read_dir_texts(&self.new_dir())
    }

    /// Polls (bounded) until at least one message has arrived.
    async fn wait_for_message(&self) -> String {
        for _ in 0..400 {
            if let Some(m) = self.messages().into_iter().next() {
                return m;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("no message reached the SMTP server within 10s");
    }
}

impl Drop for SmtpServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn read_dir_texts(dir: &Path) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    entries
        .filter_map(Result::ok)
        .filter_map(|e| std::fs::read_to_string(e.path()).ok())
        .collect()
}

/// The value of header `name` (unfolded), if present.
fn header(message: &str, name: &str) -> Option<String> {
    let (head, _) = message.split_once("\n\n").unwrap_or((message, ""));
    let mut lines = head.lines().peekable();
    while let Some(line) = lines.next() {
        if let Some((k, v)) = line.split_once(':')
            && k.eq_ignore_ascii_case(name)
        {
            let mut value = v.trim().to_string();
            while let Some(next) = lines.peek()
                && next.starts_with([' ', '\t'])
            {
                value.push(' ');
                value.push_str(next.trim());
                lines.next();
            }
            return Some(value);
        }
    }
    None
}

/// The body, with quoted-printable soft line breaks undone.
fn body(message: &str) -> String {
    let normalised = message.replace("\r\n", "\n");
    let (_, body) = normalised.split_once("\n\n").unwrap_or(("", &normalised));
    body.replace("=\n", "").replace("=3D", "=")
}

/// A tenant with a recognisable name and an admin token for it.
async fn admin_of_named_tenant(app: &TestApp, name: &str) -> (TenantId, String) {
    let tenant = app.create_tenant(name).await;
    let admin = app.create_user(tenant, Role::Admin).await;
    (tenant, app.token(tenant, admin))
}

/// The welcome jobs of `user_id`: (state, attempts, last_error).
async fn welcome_jobs(app: &TestApp, user_id: &str) -> Vec<(String, i32, Option<String>)> {
    let mut conn = app.db.owner_conn().await;
    sqlx::query_as(
        "select state, attempts, last_error from jobs where kind = 'users.welcome_email' and unique_key = $1 \
         order by id",
    )
    .bind(format!("welcome:{user_id}"))
    .fetch_all(&mut conn)
    .await
    .expect("jobs")
}

/// Polls (bounded) until the user's welcome job reaches `state`.
async fn wait_job_state(app: &TestApp, user_id: &str, state: &str) -> (String, i32, Option<String>) {
    for _ in 0..1000 {
        let jobs = welcome_jobs(app, user_id).await;
        if let [job] = jobs.as_slice()
            && job.0 == state
        {
            return job.clone();
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!(
        "the welcome job never reached {state}: {:?}",
        welcome_jobs(app, user_id).await
    );
}

#[tokio::test]
async fn creating_a_user_sends_a_welcome_email_through_smtp() {
    let smtp = SmtpServer::start().await;
    let port = smtp.port;
    let app = spawn_app_with(|c| {
        c.smtp.port = port;
        c.jobs.poll_interval = Duration::from_millis(20);
        c.jobs.backoff_base = Duration::from_millis(50);
    })
    .await;
    let tenant_name = format!("Acme {}", &Uuid::new_v4().simple().to_string()[..8]);
    let (_, token) = admin_of_named_tenant(&app, &tenant_name).await;
    let email = format!("ann.{}@example.com", &Uuid::new_v4().simple().to_string()[..8]);
    let user = try_create_user(&app, &token, person(&email, "Ann Lee", upb::Role::Agent), "")
        .await
        .expect("create user");

    let message = smtp.wait_for_message().await;
    assert_eq!(
        header(&message, "X-RcptTo").as_deref(),
        Some(email.as_str()),
        "{message}"
    );
    assert_eq!(header(&message, "To").as_deref(), Some(email.as_str()), "{message}");
    assert_eq!(
        header(&message, "Subject"),
        Some(format!("Welcome to {tenant_name}")),
        "{message}"
    );
    assert_eq!(
        header(&message, "From").as_deref(),
        Some("deskd <no-reply@localhost>"),
        "{message}"
    );
    let text = body(&message);
    assert!(text.contains(&tenant_name), "body names the tenant: {text}");
    assert!(text.contains("Ann Lee"), "body names the user: {text}");
    let (_, attempts, error) = wait_job_state(&app, &user.id, "succeeded").await;
    assert_eq!((attempts, error), (1, None));
    assert_eq!(smtp.messages().len(), 1, "exactly one message");
}

#[tokio::test]
async fn an_unreachable_smtp_server_is_retried_then_the_job_is_dead_and_the_user_exists() {
    let port = free_port();
    let app = spawn_app_with(|c| {
        c.smtp.port = port;
        c.jobs.poll_interval = Duration::from_millis(20);
        c.jobs.backoff_base = Duration::from_millis(50);
    })
    .await;
    let (_, token) = admin_of_named_tenant(&app, "Nowhere Mail").await;
    let user = try_create_user(&app, &token, person("bob@example.com", "Bob", upb::Role::Viewer), "")
        .await
        .expect("the RPC succeeds whatever the mail server does");

    let (_, attempts, error) = wait_job_state(&app, &user.id, "dead").await;
    assert_eq!(attempts, 3, "three attempts, then dead");
    let error = error.expect("the last error is kept");
    assert!(error.to_lowercase().contains("connect"), "{error}");
    let got = get_user(&app, &token, &user.id).await;
    assert_eq!(got.email, "bob@example.com");
}

#[tokio::test]
async fn an_idempotent_create_user_retry_enqueues_no_second_email() {
    let port = free_port();
    let app = spawn_app_with(|c| {
        c.smtp.port = port;
        c.jobs.poll_interval = Duration::from_millis(20);
        c.jobs.backoff_base = Duration::from_millis(20);
    })
    .await;
    let (_, token) = admin_of_named_tenant(&app, "Retry Corp").await;
    let request_id = Uuid::new_v4().to_string();
    let new = person("cy@example.com", "Cy", upb::Role::Agent);
    let first = try_create_user(&app, &token, new.clone(), &request_id)
        .await
        .expect("create");
    // Let the first job finish (dead: nothing listens), so a second enqueue
    // would not be absorbed by the unique key of a live job.
    wait_job_state(&app, &first.id, "dead").await;
    let again = try_create_user(&app, &token, new, &request_id)
        .await
        .expect("retry answers the stored response");
    assert_eq!(again.id, first.id);
    tokio::time::sleep(Duration::from_millis(100)).await;
    let jobs = welcome_jobs(&app, &first.id).await;
    assert_eq!(jobs.len(), 1, "exactly one welcome job: {jobs:?}");
}

/// A `deskd worker` process whose SMTP server is `smtp_port`, with extra
/// `DESKD_*` settings; its log goes to `dir/worker.log`.
fn worker_process(app: &TestApp, dir: &Path, smtp_port: u16, extra: &[(&str, &str)]) -> Child {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_deskd"));
    cmd.arg("worker")
        .current_dir(dir)
        .env_clear()
        .env("DESKD_ADMIN_ADDR", "127.0.0.1:0")
        .env("DESKD_DATABASE_URL", app.db.app_url())
        .env("DESKD_DATABASE_OWNER_URL", "")
        .env("DESKD_JWT_SECRET", JWT_SECRET)
        .env("DESKD_SMTP_PORT", smtp_port.to_string())
        .env("DESKD_SMTP_TIMEOUT", "60s")
        .env("DESKD_JOBS_POLL_INTERVAL", "20ms")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.join("worker.log")).expect("worker log"));
    for (k, v) in extra {
        cmd.env(k, v);
    }
    cmd.spawn().expect("spawn deskd worker")
}

/// An in-process worker (the library `deskd worker` runs) sending to
/// `smtp_port`; stop it with the returned sender.
fn in_process_worker(
    app: &TestApp,
    smtp_port: u16,
    tweak: impl FnOnce(&mut deskd::config::Config),
) -> (
    tokio::sync::oneshot::Sender<()>,
    tokio::task::JoinHandle<anyhow::Result<()>>,
) {
    let mut cfg = app.config.clone();
    cfg.database.owner_url = secrecy::SecretString::from("");
    cfg.smtp.port = smtp_port;
    cfg.jobs.poll_interval = Duration::from_millis(20);
    tweak(&mut cfg);
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(deskd::startup::jobs::run_worker(cfg, async move {
        let _ = stopped.await;
    }));
    (stop, task)
}

/// An SMTP peer that accepts connections and never answers: a send to it
/// hangs until the client's timeout. Signals each accepted connection.
async fn hanging_smtp() -> (
    u16,
    tokio::sync::mpsc::UnboundedReceiver<()>,
    tokio::task::JoinHandle<()>,
) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let task = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            held.push(socket);
            let _ = tx.send(());
        }
    });
    (port, rx, task)
}

#[tokio::test]
async fn a_worker_killed_mid_job_leaves_the_job_to_run_again() {
    let smtp = SmtpServer::start().await;
    let (hang_port, mut accepted, hang_task) = hanging_smtp().await;
    // The server itself runs no jobs here: two separate workers do.
    let app = spawn_app_with(|c| c.jobs.run_in_serve = false).await;
    let (_, token) = admin_of_named_tenant(&app, "Crashy Inc").await;
    let email = format!("bo.{}@example.com", &Uuid::new_v4().simple().to_string()[..8]);
    let user = try_create_user(&app, &token, person(&email, "Bo", upb::Role::Agent), "")
        .await
        .expect("create user");

    // Worker 1, a real `deskd worker` process, takes the job and hangs in
    // the SMTP conversation...
    let dir = tempfile::tempdir().expect("tempdir");
    let mut worker1 = worker_process(&app, dir.path(), hang_port, &[("DESKD_JOBS_LEASE", "1s")]);
    tokio::time::timeout(Duration::from_secs(30), accepted.recv())
        .await
        .expect("worker 1 reached the SMTP server")
        .expect("accepted");
    let (state, attempts, _) = welcome_jobs(&app, &user.id).await.into_iter().next().expect("the job");
    assert_eq!((state.as_str(), attempts), ("running", 1));
    // ...and dies without a chance to clean up.
    worker1.kill().expect("SIGKILL worker 1");
    worker1.wait().expect("reap worker 1");

    // Worker 2 (same binary's library, in process) claims the job once the
    // dead worker's lease expires, and delivers it.
    let (stop, worker2) = in_process_worker(&app, smtp.port, |c| c.jobs.lease = Duration::from_secs(1));
    let (_, attempts, error) = wait_job_state(&app, &user.id, "succeeded").await;
    assert_eq!(
        (attempts, error),
        (2, None),
        "the killed attempt counts; the second succeeds"
    );
    let message = smtp.wait_for_message().await;
    assert_eq!(header(&message, "To").as_deref(), Some(email.as_str()));
    let _ = stop.send(());
    worker2.await.expect("join").expect("worker 2 stops cleanly");
    hang_task.abort();
}

#[tokio::test]
async fn sigterm_during_a_job_hands_it_back_and_it_is_not_lost() {
    let smtp = SmtpServer::start().await;
    let (hang_port, mut accepted, hang_task) = hanging_smtp().await;
    let app = spawn_app_with(|c| c.jobs.run_in_serve = false).await;
    let (_, token) = admin_of_named_tenant(&app, "Graceful Ltd").await;
    let email = format!("cy.{}@example.com", &Uuid::new_v4().simple().to_string()[..8]);
    let user = try_create_user(&app, &token, person(&email, "Cy", upb::Role::Agent), "")
        .await
        .expect("create user");

    let dir = tempfile::tempdir().expect("tempdir");
    let mut worker1 = worker_process(&app, dir.path(), hang_port, &[("DESKD_SERVER_SHUTDOWN_GRACE", "200ms")]);
    tokio::time::timeout(Duration::from_secs(30), accepted.recv())
        .await
        .expect("worker 1 reached the SMTP server")
        .expect("accepted");
    let pid = worker1.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .expect("kill")
            .success()
    );
    let status = tokio::task::spawn_blocking(move || worker1.wait())
        .await
        .expect("join")
        .expect("wait");
    assert!(
        status.success(),
        "worker exits cleanly on SIGTERM: {status:?}\n{}",
        std::fs::read_to_string(dir.path().join("worker.log")).unwrap_or_default()
    );
    // The unfinished job went back to the queue, its attempt not counted.
    let (state, attempts, _) = welcome_jobs(&app, &user.id).await.into_iter().next().expect("the job");
    assert_eq!((state.as_str(), attempts), ("queued", 0));

    let (stop, worker2) = in_process_worker(&app, smtp.port, |_| {});
    let (_, attempts, _) = wait_job_state(&app, &user.id, "succeeded").await;
    assert_eq!(attempts, 1);
    smtp.wait_for_message().await;
    let _ = stop.send(());
    worker2.await.expect("join").expect("worker 2 stops cleanly");
    hang_task.abort();
}

#[tokio::test]
async fn an_operator_sees_a_dead_job_and_retries_it() {
    let smtp = SmtpServer::start().await;
    let app = spawn_app_with(|c| c.jobs.run_in_serve = false).await;
    let (tenant, token) = admin_of_named_tenant(&app, "Retry Co").await;
    let email = format!("di.{}@example.com", &Uuid::new_v4().simple().to_string()[..8]);
    let user = try_create_user(&app, &token, person(&email, "Di", upb::Role::Agent), "")
        .await
        .expect("create user");

    // A worker whose SMTP server is unreachable exhausts the attempts.
    let run_worker = |port: u16| in_process_worker(&app, port, |c| c.jobs.backoff_base = Duration::from_millis(20));
    let (stop, task) = run_worker(free_port());
    wait_job_state(&app, &user.id, "dead").await;
    let _ = stop.send(());
    task.await.expect("join").expect("worker stops");

    let out = deskd_cli(
        &app,
        &["jobs", "list", "--tenant", &tenant.to_string(), "--state", "dead"],
    );
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let lines: Vec<serde_json::Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect();
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert_eq!(lines[0]["kind"], "users.welcome_email");
    assert_eq!(lines[0]["attempts"], 3);
    assert!(lines[0]["last_error"].as_str().is_some_and(|e| !e.is_empty()));
    let job_id = lines[0]["id"].as_str().expect("id").to_string();

    let out = deskd_cli(&app, &["jobs", "retry", "--tenant", &tenant.to_string(), &job_id]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let (state, attempts, _) = welcome_jobs(&app, &user.id).await.into_iter().next().expect("job");
    assert_eq!((state.as_str(), attempts), ("queued", 0));
    // Retrying a job that is not dead is refused.
    let again = deskd_cli(&app, &["jobs", "retry", "--tenant", &tenant.to_string(), &job_id]);
    assert!(!again.status.success());

    // With the SMTP server reachable, the retried job is delivered.
    let (stop, task) = run_worker(smtp.port);
    wait_job_state(&app, &user.id, "succeeded").await;
    smtp.wait_for_message().await;
    let _ = stop.send(());
    task.await.expect("join").expect("worker stops");
}
