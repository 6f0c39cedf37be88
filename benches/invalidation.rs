//! Cross-replica invalidation latency: two deskd replicas on one PostgreSQL
//! and one Redis; a user is deactivated through replica A, and replica B is
//! polled until it refuses that user's (cached) credential. The figure is
//! the time from A's answer to B's first refusal (target: 100 ms).
//!
//! ```sh
//! cargo bench --bench invalidation                # 50 users
//! cargo bench --bench invalidation -- --users 200
//! ```
//!
//! Needs PostgreSQL and Redis on localhost (`scripts/ensure-services`); uses
//! a throwaway database and a key prefix of its own, and removes both.

#[path = "../tests/api/helpers.rs"]
mod helpers;
#[path = "../tests/api/processes.rs"]
mod processes;

use std::time::{Duration, Instant};

use deskd::{
    proto::{tickets::v1 as pb, users::v1 as upb},
    startup::Application,
    users::model::Role,
};
use helpers::{TestDb, authed, spawn_app_on};
use secrecy::SecretString;
use tonic::transport::Channel;

fn users_arg() -> usize {
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        if a == "--users" {
            return it.next().and_then(|v| v.parse().ok()).unwrap_or(50);
        }
    }
    50
}

async fn list(channel: &Channel, token: &str) -> Result<(), tonic::Status> {
    pb::tickets_service_client::TicketsServiceClient::new(channel.clone())
        .list_tickets(authed(token, pb::ListTicketsRequest::default()))
        .await
        .map(|_| ())
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

#[tokio::main]
async fn main() {
    let n = users_arg();
    let prefix = format!("deskd-bench-{}", uuid::Uuid::new_v4().simple());
    let db = TestDb::create().await;
    let p = prefix.clone();
    let app = spawn_app_on(db, move |c| {
        c.redis.url = SecretString::from("redis://127.0.0.1:6379/0");
        c.redis.key_prefix = p;
        c.rate_limit.enabled = false;
    })
    .await;
    let mut cfg = app.config.clone();
    cfg.database.owner_url = SecretString::from("");
    let b = Application::build(cfg).await.expect("replica B");
    let b_addr = b.local_addr();
    let (stop_b, rx) = tokio::sync::oneshot::channel::<()>();
    let b_task = tokio::spawn(b.run_until(async move {
        let _ = rx.await;
    }));
    let b_channel = Channel::from_shared(format!("http://{b_addr}"))
        .expect("uri")
        .connect()
        .await
        .expect("connect B");

    let admin = app.caller(Role::Admin).await;
    let mut samples = Vec::with_capacity(n);
    let mut polls_total = 0usize;
    for _ in 0..n {
        let target = app.colleague(&admin, Role::Agent).await;
        // Both replicas hold the target in their caches.
        list(&app.channel, &target.token).await.expect("warm A");
        list(&b_channel, &target.token).await.expect("warm B");
        upb::users_service_client::UsersServiceClient::new(app.channel.clone())
            .deactivate_user(authed(
                &admin.token,
                upb::DeactivateUserRequest {
                    id: target.user.to_string(),
                    etag: String::new(),
                },
            ))
            .await
            .expect("deactivate through A");
        let answered = Instant::now();
        let mut polls = 0;
        loop {
            polls += 1;
            if list(&b_channel, &target.token).await.is_err() {
                break;
            }
            assert!(
                answered.elapsed() < Duration::from_secs(30),
                "B never saw the deactivation"
            );
        }
        samples.push(answered.elapsed());
        polls_total += polls;
    }
    samples.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!("cross-replica invalidation (deactivate on A → refused on B), {n} users");
    println!(
        "min {:.2} ms | median {:.2} ms | p90 {:.2} ms | max {:.2} ms | polls of B per sample {:.1}",
        ms(samples[0]),
        ms(percentile(&samples, 0.5)),
        ms(percentile(&samples, 0.9)),
        ms(samples[samples.len() - 1]),
        polls_total as f64 / n as f64
    );
    let _ = stop_b.send(());
    let _ = b_task.await;
    if let Ok(client) = redis::Client::open("redis://127.0.0.1:6379/0")
        && let Ok(mut conn) = client.get_multiplexed_async_connection().await
    {
        let keys: Vec<String> = redis::cmd("KEYS")
            .arg(format!("{prefix}:*"))
            .query_async(&mut conn)
            .await
            .unwrap_or_default();
        if !keys.is_empty() {
            let _: Result<(), _> = redis::cmd("DEL").arg(keys).query_async(&mut conn).await;
        }
    }
}
