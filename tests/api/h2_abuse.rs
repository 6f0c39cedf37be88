//! HTTP/2 abuse (issue #9): floods end the abusive connection while other
//! clients carry on, oversized and deeply nested messages are refused
//! cheaply, and slow clients are cut off by a timeout. The floods use the
//! frame-level client of `h2_raw.rs`; the rest use the `h2` crate's client,
//! which can leave a request body open or grant no flow-control window.
//! docs/reliability.md ("HTTP/2 abuse") maps each case to its setting.

use std::{
    alloc::{GlobalAlloc, Layout, System},
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use bytes::Bytes;
use deskd::{
    proto::{
        tickets::v1::GetTicketRequest,
        users::v1::{GetCurrentUserRequest, users_service_client::UsersServiceClient},
    },
    users::model::Role,
};
use h2::client::SendRequest;
use prost::Message as _;
use tokio::{io::AsyncReadExt as _, net::TcpStream};

use crate::{
    h2_raw::{self, CANCEL, ENHANCE_YOUR_CALM, EXPECT_WITHIN, RawH2, grpc_headers, rst_stream, wait_until_ended},
    helpers::*,
};

/// Records the largest single allocation of the test process, to show
/// that an announced 2 GiB message is never allocated. One relaxed atomic
/// per allocation; otherwise the system allocator.
struct LargestAllocation;

static LARGEST: AtomicUsize = AtomicUsize::new(0);

// SAFETY: every call is forwarded unchanged to the system allocator.
unsafe impl GlobalAlloc for LargestAllocation {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LARGEST.fetch_max(layout.size(), Ordering::Relaxed);
        // SAFETY: the caller's contract is System's.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: as above.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        LARGEST.fetch_max(layout.size(), Ordering::Relaxed);
        // SAFETY: as above.
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LARGEST.fetch_max(new_size, Ordering::Relaxed);
        // SAFETY: as above.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: LargestAllocation = LargestAllocation;

pub(crate) const GET_CURRENT_USER: &str = "/deskd.users.v1.UsersService/GetCurrentUser";
const GET_TICKET: &str = "/deskd.tickets.v1.TicketsService/GetTicket";
const CREATE_TICKET: &str = "/deskd.tickets.v1.TicketsService/CreateTicket";

/// A gRPC message frame: uncompressed flag, big-endian length, bytes.
pub(crate) fn grpc_frame(message: &[u8]) -> Bytes {
    let mut f = vec![0u8];
    f.extend_from_slice(&(message.len() as u32).to_be_bytes());
    f.extend_from_slice(message);
    Bytes::from(f)
}

/// An `h2` client connection (its connection task spawned); the task's
/// handle resolves when the server ends the connection.
pub(crate) async fn h2_connect(
    app: &TestApp,
    builder: h2::client::Builder,
) -> (SendRequest<Bytes>, tokio::task::JoinHandle<Result<(), h2::Error>>) {
    let tcp = TcpStream::connect(app.addr).await.expect("connect");
    let (client, conn) = builder.handshake(tcp).await.expect("h2 handshake");
    (client, tokio::spawn(conn))
}

pub(crate) fn grpc_request(path: &str, token: &str) -> http::Request<()> {
    http::Request::builder()
        .method("POST")
        .uri(format!("http://deskd{path}"))
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .header("authorization", format!("Bearer {token}"))
        .body(())
        .expect("request")
}

/// The grpc-status of a response: from its headers (trailers-only) or its
/// trailers, after reading the body.
pub(crate) async fn grpc_status(resp: http::Response<h2::RecvStream>) -> i32 {
    let parse = |v: Option<&http::HeaderValue>| v.and_then(|v| v.to_str().ok()?.parse::<i32>().ok());
    if let Some(code) = parse(resp.headers().get("grpc-status")) {
        return code;
    }
    let mut body = resp.into_body();
    while let Some(chunk) = body.data().await {
        let chunk = chunk.expect("response body");
        let _ = body.flow_control().release_capacity(chunk.len());
    }
    let trailers = body.trailers().await.expect("trailers").expect("some trailers");
    parse(trailers.get("grpc-status")).expect("grpc-status in the trailers")
}

/// A whole unary call on `client`, within EXPECT_WITHIN.
async fn h2_unary(client: &mut SendRequest<Bytes>, path: &str, token: &str, message: &[u8]) -> i32 {
    let call = async {
        let mut ready = client.clone().ready().await.expect("ready");
        let (resp, mut body) = ready.send_request(grpc_request(path, token), false).expect("send");
        body.send_data(grpc_frame(message), true).expect("send body");
        grpc_status(resp.await.expect("response")).await
    };
    tokio::time::timeout(EXPECT_WITHIN, call)
        .await
        .expect("an answer in time")
}

/// Calls GetCurrentUser on the app's own channel (a connection of its own)
/// until `stop`, counting successes and failures.
fn well_behaved_client(app: &TestApp, token: String, stop: Arc<AtomicBool>) -> tokio::task::JoinHandle<(u64, u64)> {
    let mut users = UsersServiceClient::new(app.channel.clone());
    tokio::spawn(async move {
        let (mut ok, mut failed) = (0, 0);
        while !stop.load(Ordering::Relaxed) {
            let call = users.get_current_user(authed(&token, GetCurrentUserRequest {}));
            match tokio::time::timeout(EXPECT_WITHIN, call).await {
                Ok(Ok(_)) => ok += 1,
                _ => failed += 1,
            }
        }
        (ok, failed)
    })
}

/// One GetCurrentUser call on the app's own channel, which must succeed in
/// time.
async fn served_again(app: &TestApp, token: &str) {
    let mut users = UsersServiceClient::new(app.channel.clone());
    let call = users.get_current_user(authed(token, GetCurrentUserRequest {}));
    tokio::time::timeout(EXPECT_WITHIN, call)
        .await
        .expect("an answer in time")
        .expect("the server still serves other clients");
}

#[tokio::test]
async fn rapid_reset_flood_gets_goaway_while_another_connection_keeps_working() {
    let app = spawn_app().await;
    let caller = app.caller(Role::Agent).await;
    let limit = app.config.server.max_pending_accept_reset_streams;
    let stop = Arc::new(AtomicBool::new(false));
    let good = well_behaved_client(&app, caller.token.clone(), stop.clone());
    served_again(&app, &caller.token).await;

    // Several attacking connections in turn, each sending HEADERS then
    // RST_STREAM(CANCEL) for ten times the limit's streams in one write.
    for round in 0..5 {
        let mut attacker = RawH2::connect(app.addr).await.expect("connect");
        let mut burst = Vec::new();
        for _ in 0..limit * 10 {
            let id = attacker.next_stream();
            burst.extend(grpc_headers(id, GET_CURRENT_USER, None, false));
            burst.extend(rst_stream(id, CANCEL));
        }
        // The server may close while this is still being written.
        let _ = attacker.send(&burst).await;
        let ended = wait_until_ended(&mut attacker, Instant::now() + EXPECT_WITHIN)
            .await
            .unwrap_or_else(|e| panic!("round {round}: the flooding connection was not ended: {e:?}"));
        assert_eq!(
            ended.goaway,
            Some((ENHANCE_YOUR_CALM, "too_many_resets".into())),
            "round {round}: {ended:?}"
        );
    }

    served_again(&app, &caller.token).await;
    stop.store(true, Ordering::Relaxed);
    let (ok, failed) = good.await.expect("client task");
    assert_eq!(failed, 0, "the well-behaved connection failed {failed} calls ({ok} ok)");
    assert!(ok >= 2, "{ok} calls");
}

#[tokio::test]
async fn stream_count_flood_is_refused_then_the_connection_is_ended() {
    let app = spawn_app_with(|c| {
        c.server.max_concurrent_streams = 8;
        c.server.max_local_error_reset_streams = 64;
    })
    .await;
    let caller = app.caller(Role::Agent).await;
    let mut attacker = RawH2::connect(app.addr).await.expect("connect");

    // 8 streams that stay open (HEADERS without END_STREAM: each handler
    // waits for a request body that never comes), then 200 more at once.
    let mut burst = Vec::new();
    let mut ids = Vec::new();
    for _ in 0..208 {
        let id = attacker.next_stream();
        ids.push(id);
        burst.extend(grpc_headers(id, GET_CURRENT_USER, Some(&caller.token), false));
    }
    let _ = attacker.send(&burst).await;
    let ended = wait_until_ended(&mut attacker, Instant::now() + EXPECT_WITHIN)
        .await
        .unwrap_or_else(|e| panic!("the flooding connection was not ended: {e:?}"));

    // The first 8 were taken; the ninth was the first refused.
    assert_eq!(ended.first_refused, Some(ids[8]), "{ended:?}");
    assert!(
        (1..=64).contains(&ended.refused),
        "refused {} streams before the end",
        ended.refused
    );
    assert_eq!(
        ended.goaway,
        Some((ENHANCE_YOUR_CALM, "too_many_internal_resets".into())),
        "{ended:?}"
    );
    served_again(&app, &caller.token).await;
}

/// A connection's streams beyond `max_concurrent_rpcs_per_connection` are
/// accepted but wait, unauthenticated, until one of its running RPCs ends:
/// a flood with a valid credential starts that many RPCs per connection,
/// not `max_concurrent_streams`.
#[tokio::test]
async fn a_connection_runs_at_most_its_per_connection_rpcs_and_the_rest_wait_before_authentication() {
    let app = spawn_app_with(|c| c.server.max_concurrent_rpcs_per_connection = 2).await;
    let caller = app.caller(Role::Agent).await;
    let mut conn = RawH2::connect(app.addr).await.expect("connect");

    // Two authenticated calls whose bodies have not come yet fill the
    // connection's two slots. A third without a credential would be
    // answered UNAUTHENTICATED at once if it ran.
    let (first, second, third) = (conn.next_stream(), conn.next_stream(), conn.next_stream());
    let mut burst = grpc_headers(first, GET_CURRENT_USER, Some(&caller.token), false);
    burst.extend(grpc_headers(second, GET_CURRENT_USER, Some(&caller.token), false));
    burst.extend(grpc_headers(third, GET_CURRENT_USER, None, true));
    conn.send(&burst).await.expect("send the streams");
    // The first call's body: it answers, and only then may the third run.
    let body = grpc_frame(&GetCurrentUserRequest {}.encode_to_vec());
    conn.send(&h2_raw::data(first, &body, true)).await.expect("send a body");

    let mut order = Vec::new();
    let seen = conn
        .wait_for(Instant::now() + EXPECT_WITHIN, |ev| {
            match ev {
                h2_raw::Event::Headers { stream, .. } if !order.contains(stream) => order.push(*stream),
                h2_raw::Event::Reset { stream, code } => panic!("stream {stream} was reset ({code:#x})"),
                h2_raw::Event::GoAway { .. } | h2_raw::Event::Closed => panic!("the connection ended: {ev:?}"),
                _ => {}
            }
            (order.contains(&first) && order.contains(&third)).then_some(())
        })
        .await;
    assert!(seen.is_some(), "answers seen in time: {order:?}");
    assert_eq!(
        order,
        [first, third],
        "the third stream waited for the first to end; the second still holds its slot"
    );
    served_again(&app, &caller.token).await;
}

#[tokio::test]
async fn a_2_gib_message_header_is_refused_before_its_body_arrives() {
    // A long request budget: the answer below cannot be the deadline's.
    let app = spawn_app_with(|c| c.server.max_request_duration = Duration::from_secs(600)).await;
    let caller = app.caller(Role::Agent).await;
    let (mut client, _conn) = h2_connect(&app, h2::client::Builder::new()).await;
    let before = LARGEST.load(Ordering::Relaxed);

    let (resp, mut body) = client
        .send_request(grpc_request(CREATE_TICKET, &caller.token), false)
        .expect("send");
    // A frame header announcing 2 GiB - 1, then three bytes; the request
    // stays open and the rest never comes.
    body.send_data(Bytes::from_static(&[0, 0x7f, 0xff, 0xff, 0xff, 1, 2, 3]), false)
        .expect("send the header");
    let resp = tokio::time::timeout(EXPECT_WITHIN, resp)
        .await
        .expect("an answer while the body is still open")
        .expect("response");
    let code = grpc_status(resp).await;
    assert_eq!(code, tonic::Code::OutOfRange as i32);

    let largest = LARGEST.load(Ordering::Relaxed);
    assert!(
        largest < 256 << 20,
        "largest allocation {largest} bytes (before the call: {before})"
    );
    drop(body);
    served_again(&app, &caller.token).await;
}

#[tokio::test]
async fn deeply_nested_messages_are_refused_and_the_server_keeps_serving() {
    let app = spawn_app().await;
    let caller = app.caller(Role::Agent).await;
    let ticket = create_ticket(&app, &caller, new_ticket("nested")).await;
    let (mut client, _conn) = h2_connect(&app, h2::client::Builder::new()).await;
    let get = GetTicketRequest { id: ticket.id.clone() }.encode_to_vec();
    assert_eq!(
        h2_unary(&mut client, GET_TICKET, &caller.token, &get).await,
        0,
        "the plain request"
    );
    const DEPTH: usize = 100_000;

    // Then unknown field 15 as groups nested 100,000 deep (200 KB): prost
    // descends into groups to skip them, up to its recursion limit (100).
    let mut groups = get.clone();
    groups.extend(std::iter::repeat_n(0x7b_u8, DEPTH)); // field 15, START_GROUP
    groups.extend(std::iter::repeat_n(0x7c_u8, DEPTH)); // field 15, END_GROUP
    let code = h2_unary(&mut client, GET_TICKET, &caller.token, &groups).await;
    assert_eq!(code, tonic::Code::InvalidArgument as i32, "nested groups");

    // Unknown field 15 as length-delimited messages nested 10,000 deep:
    // prost skips an unknown length-delimited field without parsing it, so
    // there is no recursion to limit; the request is answered as without it.
    let mut nested = Vec::new();
    for _ in 0..10_000 {
        let mut outer = vec![0x7a_u8]; // field 15, LEN
        let mut n = nested.len();
        while n >= 0x80 {
            outer.push((n as u8 & 0x7f) | 0x80);
            n >>= 7;
        }
        outer.push(n as u8);
        outer.extend_from_slice(&nested);
        nested = outer;
    }
    let mut message = get.clone();
    message.extend_from_slice(&nested);
    let code = h2_unary(&mut client, GET_TICKET, &caller.token, &message).await;
    assert_eq!(
        code,
        tonic::Code::Ok as i32,
        "nested length-delimited fields are skipped"
    );

    // Same connection, then another: both still served.
    assert_eq!(h2_unary(&mut client, GET_TICKET, &caller.token, &get).await, 0);
    served_again(&app, &caller.token).await;
}

#[tokio::test]
async fn a_connection_without_the_http2_preface_is_closed_at_the_handshake_timeout() {
    let timeout = Duration::from_millis(300);
    let app = spawn_app_with(|c| c.server.handshake_timeout = timeout).await;
    let caller = app.caller(Role::Agent).await;

    // One connection sends nothing, one half the preface.
    let silent = TcpStream::connect(app.addr).await.expect("connect");
    let mut partial = TcpStream::connect(app.addr).await.expect("connect");
    tokio::io::AsyncWriteExt::write_all(&mut partial, &h2_raw::PREFACE[..12])
        .await
        .expect("write");
    let started = Instant::now();
    for (name, mut conn) in [("silent", silent), ("half a preface", partial)] {
        // The server's SETTINGS may come first; then end of file.
        let closed = tokio::time::timeout(EXPECT_WITHIN, async {
            let mut buf = [0u8; 1024];
            loop {
                match conn.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(_) => {}
                }
            }
        })
        .await;
        assert!(closed.is_ok(), "{name}: the connection is still open");
    }
    assert!(started.elapsed() >= timeout - Duration::from_millis(50));
    served_again(&app, &caller.token).await;
}

#[tokio::test]
async fn a_request_body_that_never_ends_is_answered_at_the_deadline_and_frees_its_stream() {
    let app = spawn_app_with(|c| {
        c.server.max_request_duration = Duration::from_millis(500);
        c.server.max_concurrent_streams = 1;
    })
    .await;
    let caller = app.caller(Role::Agent).await;
    let (mut client, _conn) = h2_connect(&app, h2::client::Builder::new()).await;

    // HEADERS only: the handler waits for a body that never comes.
    let (resp, body) = client
        .send_request(grpc_request(GET_CURRENT_USER, &caller.token), false)
        .expect("send");
    let resp = tokio::time::timeout(EXPECT_WITHIN, resp)
        .await
        .expect("an answer in time")
        .expect("response");
    assert_eq!(grpc_status(resp).await, tonic::Code::DeadlineExceeded as i32);

    // The only stream this connection may have is free again, though the
    // client never ended its side of the first.
    let ok = h2_unary(&mut client, GET_CURRENT_USER, &caller.token, &[]).await;
    assert_eq!(ok, tonic::Code::Ok as i32);
    drop(body);
}

#[tokio::test]
async fn a_client_that_never_reads_is_disconnected_after_max_connection_age() {
    let app = spawn_app_with(|c| {
        c.server.max_connection_age = Duration::from_millis(500);
        c.server.max_connection_age_grace = Duration::from_millis(500);
    })
    .await;
    let caller = app.caller(Role::Agent).await;
    // No flow-control window for response bodies: the server can send
    // HEADERS but no DATA. The connection task still answers PINGs.
    let mut builder = h2::client::Builder::new();
    builder.initial_window_size(0);
    let (client, conn) = h2_connect(&app, builder).await;
    let started = Instant::now();

    let mut ready = client.clone().ready().await.expect("ready");
    let (resp, mut body) = ready
        .send_request(grpc_request(GET_CURRENT_USER, &caller.token), false)
        .expect("send");
    body.send_data(grpc_frame(&[]), true).expect("send body");
    let resp = tokio::time::timeout(EXPECT_WITHIN, resp)
        .await
        .expect("response headers in time")
        .expect("response");
    assert_eq!(resp.status(), 200);

    // The server gives up on the stuck response and the connection ends.
    let ended = tokio::time::timeout(EXPECT_WITHIN, conn).await;
    assert!(ended.is_ok(), "the connection is still open");
    assert!(started.elapsed() >= Duration::from_millis(500));
    let mut resp_body = resp.into_body();
    if let Some(Ok(chunk)) = resp_body.data().await {
        panic!("{} response bytes arrived through a zero window", chunk.len());
    }
    served_again(&app, &caller.token).await;
}

#[tokio::test]
async fn a_peer_that_stops_answering_pings_is_disconnected_by_keepalive() {
    let app = spawn_app_with(|c| {
        c.server.keepalive_interval = Duration::from_millis(200);
        c.server.keepalive_timeout = Duration::from_millis(200);
    })
    .await;
    let caller = app.caller(Role::Agent).await;
    // Preface and SETTINGS, then silence: the server's PINGs go unanswered.
    let mut peer = RawH2::connect_ignoring_pings(app.addr).await.expect("connect");
    let started = Instant::now();
    let ended = wait_until_ended(&mut peer, Instant::now() + EXPECT_WITHIN)
        .await
        .unwrap_or_else(|e| panic!("the silent connection was not ended: {e:?}"));
    assert!(started.elapsed() >= Duration::from_millis(200), "{ended:?}");
    // The app's own channel answers PINGs, so it is still served.
    served_again(&app, &caller.token).await;
}
