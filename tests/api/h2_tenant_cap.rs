//! The per-tenant cap on RPCs in flight (`server.max_in_flight_per_tenant`):
//! one tenant's calls that never end (request bodies that never come) hold
//! at most the cap of the replica's `max_in_flight` permits, so the other
//! tenants are still served.

use std::time::Instant;

use deskd::{
    proto::users::v1::{GetCurrentUserRequest, users_service_client::UsersServiceClient},
    users::model::Role,
};
use futures_util::future::select_all;
use prost::Message as _;

use crate::{
    h2_abuse::{GET_CURRENT_USER, grpc_frame, grpc_request, grpc_status, h2_connect},
    h2_raw::EXPECT_WITHIN,
    helpers::*,
};

#[tokio::test]
async fn a_tenant_holds_at_most_its_cap_of_rpcs_in_flight_and_other_tenants_are_served() {
    // Three permits in all, two per tenant.
    let app = spawn_app_with(|c| {
        c.server.max_in_flight = 3;
        c.server.max_in_flight_per_tenant = 2;
    })
    .await;
    let noisy = app.caller(Role::Agent).await;
    let other = app.caller(Role::Agent).await;

    // The noisy tenant opens three calls and sends no request body.
    let (mut client, _conn) = h2_connect(&app, h2::client::Builder::new()).await;
    let mut bodies = Vec::new();
    let mut responses = Vec::new();
    for _ in 0..3 {
        client = client.ready().await.expect("a stream");
        let (resp, body) = client
            .send_request(grpc_request(GET_CURRENT_USER, &noisy.token), false)
            .expect("send");
        bodies.push(body);
        responses.push(Box::pin(resp));
    }

    // Exactly one of them is answered at once: TENANT_OVERLOADED. The two
    // others are running, each waiting for its body.
    let (first, refused, mut waiting) = tokio::time::timeout(EXPECT_WITHIN, select_all(responses))
        .await
        .expect("one call answered while the others still wait");
    let first = first.expect("response");
    let status = tonic::Status::from_header_map(first.headers()).expect("a trailers-only status");
    assert_eq!(status.code(), tonic::Code::ResourceExhausted, "{status:?}");
    assert_eq!(reason(&status), "TENANT_OVERLOADED", "{status:?}");

    // The third permit is the other tenant's.
    let mut users = UsersServiceClient::new(app.channel.clone());
    let call = users.get_current_user(authed(&other.token, GetCurrentUserRequest {}));
    tokio::time::timeout(EXPECT_WITHIN, call)
        .await
        .expect("an answer in time")
        .expect("another tenant is served while the noisy one is at its cap");

    // The two held calls were real: given their bodies, both answer OK.
    let message = grpc_frame(&GetCurrentUserRequest {}.encode_to_vec());
    for (i, body) in bodies.iter_mut().enumerate() {
        if i != refused {
            body.send_data(message.clone(), true).expect("send the body");
        }
    }
    let deadline = Instant::now() + EXPECT_WITHIN;
    while !waiting.is_empty() {
        let left = deadline.saturating_duration_since(Instant::now());
        let (resp, _, rest) = tokio::time::timeout(left, select_all(waiting))
            .await
            .expect("the held calls answer once their bodies came");
        assert_eq!(grpc_status(resp.expect("response")).await, tonic::Code::Ok as i32);
        waiting = rest;
    }

    // Their places came back: the noisy tenant is served again.
    let call = users.get_current_user(authed(&noisy.token, GetCurrentUserRequest {}));
    tokio::time::timeout(EXPECT_WITHIN, call)
        .await
        .expect("an answer in time")
        .expect("the tenant's places came back when its calls ended");
}
