//! Round trips to PostgreSQL per RPC, counted on the wire: a proxy between
//! the server and PostgreSQL reads the frontend protocol and counts the
//! flushes that end with a message after which the client waits for
//! `ReadyForQuery` (`Sync` or simple `Query`): one per round trip, however
//! many messages are pipelined in it. This pins what issue 8's speed work
//! bought (BENCHMARKS.md, "Round trips per RPC"): a change that adds one
//! fails here, not only in a benchmark.

use std::{
    net::SocketAddr,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use deskd::{proto::tickets::v1 as pb, users::model::Role};
use secrecy::SecretString;
use tokio::{
    io::{AsyncReadExt as _, AsyncWriteExt as _},
    net::{TcpListener, TcpStream},
};

use crate::helpers::*;

/// Counts round trips (reads holding a `Sync` or `Query`) across all
/// connections through it.
struct CountingProxy {
    addr: SocketAddr,
    round_trips: Arc<AtomicU64>,
}

impl CountingProxy {
    async fn start(upstream: SocketAddr) -> CountingProxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let round_trips = Arc::new(AtomicU64::new(0));
        let counter = round_trips.clone();
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let Ok(server) = TcpStream::connect(upstream).await else {
                    return;
                };
                let (mut client_read, client_write) = client.into_split();
                let (server_read, mut server_write) = server.into_split();
                let counter = counter.clone();
                tokio::spawn(async move {
                    let mut parser = Frontend::default();
                    let mut buf = vec![0u8; 64 * 1024];
                    while let Ok(n) = client_read.read(&mut buf).await {
                        if n == 0 || server_write.write_all(&buf[..n]).await.is_err() {
                            break;
                        }
                        // What one flush sends arrives in one read on
                        // loopback: messages pipelined together are one
                        // round trip.
                        if parser.feed(&buf[..n]) > 0 {
                            counter.fetch_add(1, Ordering::SeqCst);
                        }
                    }
                });
                tokio::spawn(async move {
                    let (mut r, mut w) = (server_read, client_write);
                    let _ = tokio::io::copy(&mut r, &mut w).await;
                });
            }
        });
        CountingProxy { addr, round_trips }
    }

    fn count(&self) -> u64 {
        self.round_trips.load(Ordering::SeqCst)
    }
}

/// A frontend message stream: the startup packet (no type byte), then
/// typed, length-prefixed messages.
#[derive(Default)]
struct Frontend {
    started: bool,
    pending: Vec<u8>,
}

impl Frontend {
    /// Feeds bytes; returns how many round-trip-ending messages completed.
    fn feed(&mut self, bytes: &[u8]) -> u64 {
        self.pending.extend_from_slice(bytes);
        let mut ends = 0;
        loop {
            let header = if self.started { 5 } else { 4 };
            if self.pending.len() < header {
                return ends;
            }
            let at = header - 4;
            let len = u32::from_be_bytes(self.pending[at..at + 4].try_into().expect("4 bytes")) as usize;
            let total = at + len;
            if self.pending.len() < total {
                return ends;
            }
            if self.started {
                if matches!(self.pending[0], b'S' | b'Q') {
                    ends += 1;
                }
            } else {
                // The startup packet (an SSLRequest would be answered 'N'
                // and followed by the real one, also untyped).
                let code = u32::from_be_bytes(self.pending[4..8].try_into().expect("4 bytes"));
                self.started = code != 80_877_103;
            }
            self.pending.drain(..total);
        }
    }
}

#[test]
fn the_parser_counts_syncs_and_queries() {
    let mut f = Frontend::default();
    // Startup: length 8 + protocol 3.0.
    let mut bytes = vec![0, 0, 0, 8, 0, 3, 0, 0];
    // Parse ('P', len 4+2), Sync, Query "x\0", split mid-message.
    bytes.extend_from_slice(&[b'P', 0, 0, 0, 6, 1, 2, b'S', 0, 0, 0, 4, b'Q', 0, 0, 0, 6, b'x', 0]);
    assert_eq!(f.feed(&bytes[..10]), 0);
    assert_eq!(f.feed(&bytes[10..]), 2);
}

#[tokio::test]
async fn rpcs_spend_the_round_trips_they_should() {
    let db = TestDb::create().await;
    let upstream = pg_upstream().await;
    let proxy = CountingProxy::start(upstream).await;
    let url = db.app_url_via(proxy.addr);
    // One pooled connection, and nothing else on it: no health probes in
    // the window, no job polling.
    let app = spawn_app_on(db, move |c| {
        c.database.url = SecretString::from(url);
        c.database.max_connections = 1;
        c.database.min_connections = 1;
        c.health.check_interval = Duration::from_secs(3600);
        c.jobs.run_in_serve = false;
    })
    .await;
    let caller = app.caller(Role::Agent).await;
    let mut client = app.tickets();

    // Warm: the tenant and principal caches, and sqlx's prepared statements.
    let first = create_ticket(&app, &caller, new_ticket("warm")).await;
    let get = |id: &str| authed(&caller.token, pb::GetTicketRequest { id: id.to_string() });
    for _ in 0..2 {
        client.get_ticket(get(&first.id)).await.expect("get");
    }
    let create = |title: &str| {
        authed(
            &caller.token,
            pb::CreateTicketRequest {
                ticket: Some(new_ticket(title)),
                request_id: uuid::Uuid::new_v4().to_string(),
            },
        )
    };
    client.create_ticket(create("warm 2")).await.expect("create");

    // With one connection, an RPC's BEGIN waits for the previous RPC's
    // release check, so after N + 1 sequential RPCs the count is N full
    // RPCs plus the last one's request path, plus its release check or not.
    const N: u64 = 10;
    let measure = |total: u64, full: u64, request_path: u64| {
        let floor = N * full + request_path;
        assert!(
            (floor..=floor + 1).contains(&total),
            "{total} round trips for {} RPCs: expected {full} per RPC ({request_path} on the request path)",
            N + 1
        );
    };

    // GetTicket: BEGIN + tenant (1), SELECT (1); the ROLLBACK goes with the
    // release check (1).
    let before = proxy.count();
    for _ in 0..=N {
        client.get_ticket(get(&first.id)).await.expect("get");
    }
    measure(proxy.count() - before, 3, 2);

    // CreateTicket with a request_id: BEGIN + tenant (1), claim + insert
    // (1), COMMIT (1), release check (1).
    let before = proxy.count();
    for i in 0..=N {
        client.create_ticket(create(&format!("t{i}"))).await.expect("create");
    }
    measure(proxy.count() - before, 4, 3);
}
