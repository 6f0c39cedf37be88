//! Wire-level behaviour: undecodable and oversized messages, unknown methods,
//! compression.

use bytes::{Buf as _, BufMut as _};
use deskd::{proto::tickets::v1 as pb, users::model::Role};
use tonic::{
    Status,
    codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder},
    codegen::http::uri::PathAndQuery,
};

use crate::helpers::*;

/// Sends raw bytes as a message, whatever the method expects.
#[derive(Default, Clone)]
struct RawCodec;
#[derive(Default, Clone)]
struct RawEncoder;
#[derive(Default, Clone)]
struct RawDecoder;

impl Codec for RawCodec {
    type Encode = Vec<u8>;
    type Decode = Vec<u8>;
    type Encoder = RawEncoder;
    type Decoder = RawDecoder;
    fn encoder(&mut self) -> RawEncoder {
        RawEncoder
    }
    fn decoder(&mut self) -> RawDecoder {
        RawDecoder
    }
}

impl Encoder for RawEncoder {
    type Item = Vec<u8>;
    type Error = Status;
    fn encode(&mut self, item: Vec<u8>, buf: &mut EncodeBuf<'_>) -> Result<(), Status> {
        buf.put_slice(&item);
        Ok(())
    }
}

impl Decoder for RawDecoder {
    type Item = Vec<u8>;
    type Error = Status;
    fn decode(&mut self, buf: &mut DecodeBuf<'_>) -> Result<Option<Vec<u8>>, Status> {
        Ok(Some(buf.copy_to_bytes(buf.remaining()).to_vec()))
    }
}

async fn raw_call(app: &TestApp, token: &str, path: &'static str, body: Vec<u8>) -> Result<Vec<u8>, Status> {
    let mut grpc = tonic::client::Grpc::new(app.channel.clone());
    grpc.ready().await.expect("ready");
    grpc.unary(authed(token, body), PathAndQuery::from_static(path), RawCodec)
        .await
        .map(|r| r.into_inner())
}

#[tokio::test]
async fn undecodable_request_is_invalid_argument() {
    let app = spawn_app().await;
    let caller = app.caller(Role::Agent).await;
    // 0xff... is not a valid protobuf varint tag.
    let err = raw_call(
        &app,
        &caller.token,
        "/deskd.tickets.v1.TicketsService/GetTicket",
        vec![0xff, 0xff, 0xff, 0xff],
    )
    .await
    .expect_err("garbage");
    assert_eq!(err.code(), tonic::Code::InvalidArgument, "{err:?}");
    assert!(
        !err.message().contains("prost"),
        "no decoder internals: {}",
        err.message()
    );
}

#[tokio::test]
async fn unknown_method_is_unimplemented() {
    let app = spawn_app().await;
    let caller = app.caller(Role::Agent).await;
    let err = raw_call(&app, &caller.token, "/deskd.tickets.v1.TicketsService/Explode", vec![])
        .await
        .expect_err("no such method");
    assert_eq!(err.code(), tonic::Code::Unimplemented, "{err:?}");
}

#[tokio::test]
async fn oversized_request_is_refused() {
    let app = spawn_app_with(|c| c.server.max_decoding_message_size = 4096).await;
    let caller = app.caller(Role::Agent).await;
    let err = app
        .tickets()
        .create_ticket(authed(
            &caller.token,
            pb::CreateTicketRequest {
                ticket: Some(pb::Ticket {
                    title: "big".into(),
                    description: "x".repeat(10_000),
                    ..Default::default()
                }),
                request_id: String::new(),
            },
        ))
        .await
        .expect_err("over the message limit");
    assert_eq!(err.code(), tonic::Code::OutOfRange, "{err:?}");
}

#[tokio::test]
async fn gzip_requests_are_accepted_and_responses_compressed_only_when_configured() {
    for compress_responses in [false, true] {
        let app = spawn_app_with(|c| c.server.compress_responses = compress_responses).await;
        let caller = app.caller(Role::Agent).await;
        let mut client = app
            .tickets()
            .send_compressed(tonic::codec::CompressionEncoding::Gzip)
            .accept_compressed(tonic::codec::CompressionEncoding::Gzip);
        let res = client
            .create_ticket(authed(
                &caller.token,
                pb::CreateTicketRequest {
                    ticket: Some(pb::Ticket {
                        title: "compressed".into(),
                        description: "y".repeat(50_000),
                        ..Default::default()
                    }),
                    request_id: String::new(),
                },
            ))
            .await
            .expect("gzip create");
        let encoding = res
            .metadata()
            .get("grpc-encoding")
            .map(|v| v.to_str().unwrap_or("?").to_owned());
        let want = compress_responses.then(|| "gzip".to_owned());
        assert_eq!(encoding, want, "compress_responses = {compress_responses}");
        let ticket = res.into_inner().ticket.expect("ticket");
        assert_eq!(ticket.description.len(), 50_000);
    }
}
