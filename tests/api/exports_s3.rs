//! Ticket exports to S3-compatible storage: with `exports.backend = "s3"` the
//! worker writes through `object_store`'s S3 client to a real S3 peer (moto's
//! server, installed by scripts/ensure-services); the file is read back with
//! an independent client (boto3). A bucket that does not exist fails the
//! export after its retries, with a generic error.

use std::{
    process::{Child, Command, Stdio},
    time::Duration,
};

use deskd::{
    config::ExportsBackend,
    proto::{operations::v1 as opb, tickets::v1 as pb, tickets::v1::ExportTicketsRequest},
    tickets::export::CSV_HEADER,
    users::model::Role,
};
use secrecy::SecretString;

use crate::{exports::*, helpers::*};

const BUCKET: &str = "deskd-exports";
const PREFIX: &str = "helpdesk/exports";

/// boto3 against the moto server: `create-bucket`, `get <key>` (the body on
/// stdout), `uploads` (the number of unfinished multipart uploads).
const S3_CLIENT: &str = r#"
import sys, boto3
endpoint, bucket, cmd = sys.argv[1], sys.argv[2], sys.argv[3]
s3 = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1",
                  aws_access_key_id="test-key", aws_secret_access_key="test-secret")
if cmd == "create-bucket":
    s3.create_bucket(Bucket=bucket)
elif cmd == "get":
    sys.stdout.buffer.write(s3.get_object(Bucket=bucket, Key=sys.argv[4])["Body"].read())
elif cmd == "uploads":
    print(len(s3.list_multipart_uploads(Bucket=bucket).get("Uploads", [])))
"#;

/// moto's S3 server on its own port; killed when dropped.
struct S3Server {
    child: Child,
    endpoint: String,
}

impl S3Server {
    async fn start() -> S3Server {
        let port = free_port();
        let child = Command::new("python3")
            .args(["-m", "moto.server", "-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start moto's server (scripts/ensure-services installs moto[server])");
        let server = S3Server {
            child,
            endpoint: format!("http://127.0.0.1:{port}"),
        };
        wait_listening(port, "moto's S3 server").await;
        server
    }

    fn client(&self, args: &[&str]) -> Vec<u8> {
        let out = Command::new("python3")
            .args(["-c", S3_CLIENT, &self.endpoint, BUCKET])
            .args(args)
            .output()
            .expect("run boto3");
        assert!(
            out.status.success(),
            "boto3 {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        out.stdout
    }

    fn create_bucket(&self) {
        self.client(&["create-bucket"]);
    }

    fn get(&self, key: &str) -> Vec<u8> {
        self.client(&["get", key])
    }

    fn unfinished_uploads(&self) -> usize {
        let out = String::from_utf8(self.client(&["uploads"])).expect("utf-8");
        out.trim().parse().expect("a count")
    }

    /// Points `c`'s exports at this server's bucket.
    fn configure(&self, c: &mut deskd::config::Config) {
        let e = &mut c.exports;
        e.backend = ExportsBackend::S3;
        e.s3_bucket = BUCKET.to_string();
        e.s3_endpoint = self.endpoint.clone();
        e.s3_allow_http = true;
        e.s3_prefix = PREFIX.to_string();
        e.s3_access_key_id = "test-key".to_string();
        e.s3_secret_access_key = SecretString::from("test-secret");
        c.jobs.poll_interval = Duration::from_millis(20);
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test]
async fn a_large_export_streams_to_an_s3_bucket_in_parts_under_the_tenant_prefix() {
    let s3 = S3Server::start().await;
    s3.create_bucket();
    let app = spawn_app_with(|c| s3.configure(c)).await;
    let caller = app.caller(Role::Agent).await;
    // About 13 MB of CSV: more than object_store's 10 MiB buffer, so the
    // file goes up as a multipart upload rather than one PUT.
    const ROWS: i64 = 12_000;
    let mut owner = app.db.owner_conn().await;
    sqlx::query(
        "insert into tickets (tenant_id, id, title, description, status, priority, reporter_id, create_time, update_time) \
         select $1, gen_random_uuid(), 'bulk ' || i, repeat('lorem ipsum ', 90), 'open', 'normal', $2, \
                now() - ((20000 - i) || ' seconds')::interval, now() \
         from generate_series(1, $3::int) as i",
    )
    .bind(caller.tenant.0)
    .bind(caller.user.0)
    .bind(ROWS as i32)
    .execute(&mut owner)
    .await
    .expect("seed");

    let op = export(
        &app,
        &caller,
        ExportTicketsRequest {
            format: pb::ExportFormat::Csv as i32,
            ..Default::default()
        },
    )
    .await;
    let op = wait_done(&app, &caller, &op.name).await;
    assert_eq!(state(&op), opb::OperationState::Succeeded, "{op:?}");
    let res = export_result(&op);
    let op_id = op.name.trim_start_matches("operations/");
    assert_eq!(res.path, format!("{}/{op_id}.csv", caller.tenant.0));
    assert_eq!(res.uri, format!("s3://{BUCKET}/{PREFIX}/{}", res.path));
    assert_eq!(res.row_count, ROWS);
    assert!(res.size_bytes > 10 * 1024 * 1024, "{} bytes", res.size_bytes);

    let body = s3.get(&format!("{PREFIX}/{}", res.path));
    assert_eq!(body.len() as i64, res.size_bytes);
    let text = String::from_utf8(body).expect("utf-8");
    let lines: Vec<&str> = text.split_terminator("\r\n").collect();
    assert_eq!(lines.len() as i64, ROWS + 1);
    assert_eq!(lines[0], CSV_HEADER);
    // Oldest first: `bulk 1` was created first.
    assert_eq!(lines[1].split(',').nth(1), Some("bulk 1"));
    assert_eq!(
        lines[ROWS as usize].split(',').nth(1),
        Some(format!("bulk {ROWS}").as_str())
    );
    assert_eq!(s3.unfinished_uploads(), 0, "the multipart upload was completed");
}

#[tokio::test]
async fn an_export_to_a_missing_bucket_fails_after_its_retries_without_leaking_why() {
    let s3 = S3Server::start().await;
    // No bucket created.
    let app = spawn_app_with(|c| {
        s3.configure(c);
        c.jobs.backoff_base = Duration::from_millis(10);
        c.jobs.backoff_max = Duration::from_millis(50);
    })
    .await;
    let caller = app.caller(Role::Agent).await;
    create_ticket(&app, &caller, new_ticket("one ticket")).await;

    let op = export(
        &app,
        &caller,
        ExportTicketsRequest {
            format: pb::ExportFormat::Jsonl as i32,
            ..Default::default()
        },
    )
    .await;
    let op = wait_done(&app, &caller, &op.name).await;
    assert_eq!(state(&op), opb::OperationState::Failed, "{op:?}");
    let Some(opb::operation::Result::Error(err)) = &op.result else {
        panic!("no error: {op:?}");
    };
    assert_eq!(err.code, tonic::Code::Internal as i32);
    assert!(
        !err.message.contains(BUCKET) && !err.message.contains("127.0.0.1"),
        "the store's error stays in the job record: {}",
        err.message
    );

    // The job is dead after its three attempts, with the store's error kept for the operator.
    let mut owner = app.db.owner_conn().await;
    let (attempts, state, last_error): (i32, String, String) = sqlx::query_as(
        "select attempts, state::text, coalesce(last_error, '') from jobs where kind = 'tickets.export'",
    )
    .fetch_one(&mut owner)
    .await
    .expect("job");
    assert_eq!((attempts, state.as_str()), (3, "dead"));
    assert!(
        last_error.contains("NoSuchBucket") || last_error.contains("bucket"),
        "{last_error}"
    );
}
