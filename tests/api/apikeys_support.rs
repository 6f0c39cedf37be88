//! Helpers shared by the API key tests (apikeys_issue, apikeys_auth,
//! apikeys_refusals, apikeys_secrets): timestamps, key and ticket calls with a
//! key, and key fiddling.

use std::{
    collections::BTreeSet,
    time::{SystemTime, UNIX_EPOCH},
};

use base64::{Engine as _, engine::general_purpose::URL_SAFE_NO_PAD};
use deskd::proto::{
    tickets::v1::{self as tpb, CreateTicketRequest, ListTicketsRequest},
    users::v1::{self as upb, GetCurrentUserRequest, ListApiKeysRequest, RevokeApiKeyRequest},
};
use prost_types::Timestamp;
use tonic::{Request, Status};

use crate::{helpers::*, users_support::*};

pub fn timestamp_in(offset_ms: i64) -> Timestamp {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).expect("clock");
    let ms = now.as_millis() as i64 + offset_ms;
    Timestamp {
        seconds: ms.div_euclid(1000),
        nanos: (ms.rem_euclid(1000) * 1_000_000) as i32,
    }
}

pub fn now_ts() -> Timestamp {
    timestamp_in(0)
}

pub fn ts_key(t: &Timestamp) -> (i64, i32) {
    (t.seconds, t.nanos)
}

pub async fn list_keys(app: &TestApp, token: &str, show_revoked: bool) -> Vec<upb::ApiKey> {
    users(app)
        .list_api_keys(authed(
            token,
            ListApiKeysRequest {
                page_size: 500,
                page_token: String::new(),
                show_revoked,
            },
        ))
        .await
        .expect("list API keys")
        .into_inner()
        .api_keys
}

pub async fn revoke(app: &TestApp, token: &str, id: &str) -> Result<upb::RevokeApiKeyResponse, Status> {
    users(app)
        .revoke_api_key(authed(token, RevokeApiKeyRequest { id: id.to_string() }))
        .await
        .map(|r| r.into_inner())
}

pub async fn whoami_with(
    app: &TestApp,
    req: Request<GetCurrentUserRequest>,
) -> Result<upb::GetCurrentUserResponse, Status> {
    current(app, req).await
}

pub async fn list_tickets_with(app: &TestApp, key: &str) -> Result<Vec<tpb::Ticket>, Status> {
    app.tickets()
        .list_tickets(authed(key, ListTicketsRequest::default()))
        .await
        .map(|r| r.into_inner().tickets)
}

pub async fn create_ticket_with(app: &TestApp, key: &str, title: &str) -> Result<tpb::Ticket, Status> {
    app.tickets()
        .create_ticket(authed(
            key,
            CreateTicketRequest {
                ticket: Some(new_ticket(title)),
                request_id: String::new(),
            },
        ))
        .await
        .map(|r| r.into_inner().ticket.expect("ticket"))
}

pub fn set_of(v: &[String]) -> BTreeSet<String> {
    v.iter().cloned().collect()
}

pub fn strings(v: &[&str]) -> BTreeSet<String> {
    v.iter().map(|s| (*s).to_string()).collect()
}

/// `key` with one character of its secret changed, still well formed.
pub fn altered_secret(key: &str) -> String {
    let secret = secret_of(key);
    let mut chars: Vec<char> = secret.chars().collect();
    chars[5] = if chars[5] == 'A' { 'B' } else { 'A' };
    let altered: String = chars.into_iter().collect();
    assert_eq!(URL_SAFE_NO_PAD.decode(&altered).map(|b| b.len()).ok(), Some(32));
    format!("{}_{altered}", prefix_of(key))
}

pub fn sa_of(created: &upb::CreateApiKeyResponse) -> String {
    created.api_key.as_ref().expect("api key").service_account_id.clone()
}

pub fn id_of(created: &upb::CreateApiKeyResponse) -> String {
    created.api_key.as_ref().expect("api key").id.clone()
}
