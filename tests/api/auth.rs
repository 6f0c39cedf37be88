//! Authentication: every way a credential can be missing, malformed, forged,
//! expired or name someone who may not call, each answered UNAUTHENTICATED
//! with its own ErrorInfo reason and without echoing the token; and the
//! public services (health, reflection) that need no credential at all.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::{Engine as _, engine::general_purpose::URL_SAFE_NO_PAD};
use deskd::{
    auth::{Claims, JwtKeys},
    proto::tickets::v1 as pb,
    users::model::Role,
};
use hmac::{Hmac, Mac};
use secrecy::SecretString;
use serde_json::json;
use sha2::{Sha256, Sha512};
use tonic::{Code, Request, Status};
use tonic_types::StatusExt as _;
use uuid::Uuid;

use crate::helpers::*;

const TICKETS_SERVICE: &str = "deskd.tickets.v1.TicketsService";

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after the epoch")
        .as_secs()
}

/// Valid claims for `caller`, expiring in five minutes.
fn claims_for(app: &TestApp, caller: &Caller) -> Claims {
    let now = now();
    Claims {
        sub: caller.user.to_string(),
        tid: caller.tenant.to_string(),
        iss: app.config.jwt.issuer.clone(),
        aud: app.config.jwt.audience.clone(),
        exp: now + 300,
        nbf: None,
        iat: now,
    }
}

fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

fn hmac_sha256(key: &[u8], msg: &[u8]) -> Vec<u8> {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("hmac key");
    mac.update(msg);
    mac.finalize().into_bytes().to_vec()
}

fn hmac_sha512(key: &[u8], msg: &[u8]) -> Vec<u8> {
    let mut mac = Hmac::<Sha512>::new_from_slice(key).expect("hmac key");
    mac.update(msg);
    mac.finalize().into_bytes().to_vec()
}

/// A compact JWS built by hand: `sign` gets the signing input and returns the
/// raw signature (empty for an unsigned token).
fn hand_token(header: &serde_json::Value, claims: &serde_json::Value, sign: impl FnOnce(&[u8]) -> Vec<u8>) -> String {
    let input = format!(
        "{}.{}",
        b64(header.to_string().as_bytes()),
        b64(claims.to_string().as_bytes())
    );
    let sig = sign(input.as_bytes());
    format!("{input}.{}", b64(&sig))
}

/// A hand-built token signed HS256 with the server's secret.
fn hand_hs256(claims: &serde_json::Value) -> String {
    hand_token(&json!({"alg": "HS256", "typ": "JWT"}), claims, |input| {
        hmac_sha256(JWT_SECRET.as_bytes(), input)
    })
}

/// ListTickets with `authorization` set to exactly `value` (or absent).
async fn list_with(app: &TestApp, authorization: Option<&str>) -> Result<pb::ListTicketsResponse, Status> {
    let mut req = Request::new(pb::ListTicketsRequest::default());
    if let Some(v) = authorization {
        req.metadata_mut()
            .insert("authorization", v.parse().expect("metadata value"));
    }
    app.tickets().list_tickets(req).await.map(|r| r.into_inner())
}

/// ListTickets with a bearer token.
async fn list_as(app: &TestApp, token: &str) -> Result<pb::ListTicketsResponse, Status> {
    list_with(app, Some(&format!("Bearer {token}"))).await
}

/// Asserts UNAUTHENTICATED with `expected` as the ErrorInfo reason (domain
/// deskd, a request id attached) and that none of `secrets` — the token and
/// each of its segments — appears in the message, details or metadata.
#[track_caller]
fn assert_unauthenticated(status: &Status, expected: &str, secrets: &[&str]) {
    assert_eq!(status.code(), Code::Unauthenticated, "{status:?}");
    assert_eq!(reason(status), expected, "{status:?}");
    let details = status.get_error_details();
    let info = details.error_info().expect("ErrorInfo");
    assert_eq!(info.domain, "deskd");
    let request_info = details.request_info().expect("RequestInfo");
    assert!(!request_info.request_id.is_empty(), "{status:?}");
    assert!(!status.message().is_empty(), "{status:?}");
    let details_text = String::from_utf8_lossy(status.details()).into_owned();
    let metadata_text = format!("{:?}", status.metadata());
    for secret in secrets {
        let mut parts: Vec<&str> = secret.split('.').filter(|s| s.len() >= 8).collect();
        parts.push(secret);
        for part in parts.into_iter().filter(|p| !p.is_empty()) {
            assert!(
                !status.message().contains(part),
                "message echoes the credential: {status:?}"
            );
            assert!(!details_text.contains(part), "details echo the credential: {status:?}");
            assert!(
                !metadata_text.contains(part),
                "metadata echoes the credential: {status:?}"
            );
        }
    }
}

/// Sends `token` and asserts it is refused with `expected`.
async fn assert_token_refused(app: &TestApp, token: &str, expected: &str) {
    let status = list_as(app, token)
        .await
        .expect_err(&format!("token must be refused with {expected}"));
    assert_unauthenticated(&status, expected, &[token]);
}

#[tokio::test]
async fn missing_authorization_is_credential_missing() {
    let app = spawn_app().await;
    let status = list_with(&app, None).await.expect_err("no credential");
    assert_unauthenticated(&status, "CREDENTIAL_MISSING", &[]);

    // Every RPC of the service is guarded, not only ListTickets.
    let status = app
        .tickets()
        .get_ticket(Request::new(pb::GetTicketRequest {
            id: Uuid::now_v7().to_string(),
        }))
        .await
        .expect_err("no credential");
    assert_unauthenticated(&status, "CREDENTIAL_MISSING", &[]);
    let status = app
        .tickets()
        .create_ticket(Request::new(pb::CreateTicketRequest {
            ticket: Some(new_ticket("anonymous")),
            request_id: String::new(),
        }))
        .await
        .expect_err("no credential");
    assert_unauthenticated(&status, "CREDENTIAL_MISSING", &[]);
}

#[tokio::test]
async fn non_bearer_or_empty_bearer_is_credential_malformed() {
    let app = spawn_app().await;
    for value in ["Basic abc", "Bearer", "Bearer    ", "Token abc.def.ghi"] {
        let status = list_with(&app, Some(value))
            .await
            .expect_err(&format!("`{value}` must be refused"));
        assert_unauthenticated(&status, "CREDENTIAL_MALFORMED", &[]);
    }
}

#[tokio::test]
async fn garbage_token_is_token_malformed() {
    let app = spawn_app().await;
    for token in [
        "garbage",
        "not.a.jwt",
        "a.b",
        "%%%.%%%.%%%",
        "bm90IGpzb24.bm90IGpzb24.c2ln",
    ] {
        assert_token_refused(&app, token, "TOKEN_MALFORMED").await;
    }
}

#[tokio::test]
async fn expired_beyond_leeway_is_refused_within_leeway_accepted() {
    let app = spawn_app().await;
    assert_eq!(app.config.jwt.leeway, Duration::from_secs(30));
    let alice = app.caller(Role::Agent).await;

    let mut expired = claims_for(&app, &alice);
    expired.exp = now() - 120;
    expired.iat = now() - 3600;
    assert_token_refused(&app, &app.sign(&expired), "TOKEN_EXPIRED").await;

    let mut within_leeway = claims_for(&app, &alice);
    within_leeway.exp = now() - 10;
    within_leeway.iat = now() - 3600;
    list_as(&app, &app.sign(&within_leeway))
        .await
        .expect("a token expired 10 s ago is within the 30 s leeway");
}

#[tokio::test]
async fn not_yet_valid_is_refused() {
    let app = spawn_app().await;
    let alice = app.caller(Role::Agent).await;

    let mut future = claims_for(&app, &alice);
    future.nbf = Some(now() + 120);
    assert_token_refused(&app, &app.sign(&future), "TOKEN_NOT_YET_VALID").await;

    let mut within_leeway = claims_for(&app, &alice);
    within_leeway.nbf = Some(now() + 10);
    list_as(&app, &app.sign(&within_leeway))
        .await
        .expect("nbf 10 s ahead is within the 30 s leeway");
}

#[tokio::test]
async fn token_signed_with_another_secret_is_signature_invalid() {
    let app = spawn_app().await;
    let alice = app.caller(Role::Agent).await;
    let other = JwtKeys::hs256(
        &SecretString::from("another-secret-0123456789abcdef01234567"),
        &app.config.jwt,
    )
    .expect("other keys");
    let forged = other.sign(&claims_for(&app, &alice)).expect("sign");
    assert_token_refused(&app, &forged, "TOKEN_SIGNATURE_INVALID").await;
}

#[tokio::test]
async fn payload_altered_after_signing_is_signature_invalid() {
    let app = spawn_app().await;
    let viewer = app.caller(Role::Viewer).await;
    let admin = app.colleague(&viewer, Role::Admin).await;
    let token = viewer.token.clone();
    // The genuine token works.
    list_as(&app, &token).await.expect("genuine token");

    // Swap the subject for the admin's id, keep header and signature.
    let parts: Vec<&str> = token.split('.').collect();
    assert_eq!(parts.len(), 3);
    let payload = URL_SAFE_NO_PAD.decode(parts[1]).expect("payload b64");
    let mut claims: serde_json::Value = serde_json::from_slice(&payload).expect("payload json");
    claims["sub"] = json!(admin.user.to_string());
    let tampered = format!("{}.{}.{}", parts[0], b64(claims.to_string().as_bytes()), parts[2]);
    assert_token_refused(&app, &tampered, "TOKEN_SIGNATURE_INVALID").await;

    // Extending the expiry is caught the same way.
    let mut claims: serde_json::Value = serde_json::from_slice(&payload).expect("payload json");
    claims["exp"] = json!(now() + 10 * 365 * 24 * 3600);
    let extended = format!("{}.{}.{}", parts[0], b64(claims.to_string().as_bytes()), parts[2]);
    assert_token_refused(&app, &extended, "TOKEN_SIGNATURE_INVALID").await;
}

#[tokio::test]
async fn hand_signed_hs256_token_is_accepted() {
    // Guards the hand-built tokens below: a well-formed hand-signed token
    // passes, so their refusals are for the reason each test names.
    let app = spawn_app().await;
    let alice = app.caller(Role::Agent).await;
    let claims = serde_json::to_value(claims_for(&app, &alice)).expect("claims json");
    list_as(&app, &hand_hs256(&claims))
        .await
        .expect("hand-signed HS256 token");
}

#[tokio::test]
async fn alg_none_is_algorithm_rejected() {
    let app = spawn_app().await;
    let alice = app.caller(Role::Admin).await;
    let claims = serde_json::to_value(claims_for(&app, &alice)).expect("claims json");
    let unsigned = hand_token(&json!({"alg": "none", "typ": "JWT"}), &claims, |_| Vec::new());
    assert!(unsigned.ends_with('.'), "empty signature: {unsigned}");
    assert_token_refused(&app, &unsigned, "TOKEN_ALGORITHM_REJECTED").await;
}

#[tokio::test]
async fn other_algorithms_are_algorithm_rejected() {
    let app = spawn_app().await;
    let alice = app.caller(Role::Agent).await;
    let claims = serde_json::to_value(claims_for(&app, &alice)).expect("claims json");

    // HS512 with the right secret: a valid signature, but not the pinned algorithm.
    let hs512 = hand_token(&json!({"alg": "HS512", "typ": "JWT"}), &claims, |input| {
        hmac_sha512(JWT_SECRET.as_bytes(), input)
    });
    assert_token_refused(&app, &hs512, "TOKEN_ALGORITHM_REJECTED").await;

    // RS256 header over an HMAC signature: the classic key-confusion attack.
    let rs256 = hand_token(&json!({"alg": "RS256", "typ": "JWT"}), &claims, |input| {
        hmac_sha256(JWT_SECRET.as_bytes(), input)
    });
    assert_token_refused(&app, &rs256, "TOKEN_ALGORITHM_REJECTED").await;

    // An RS256 header with an RSA-sized garbage signature.
    let rs256_junk = hand_token(&json!({"alg": "RS256", "typ": "JWT"}), &claims, |_| vec![7u8; 256]);
    assert_token_refused(&app, &rs256_junk, "TOKEN_ALGORITHM_REJECTED").await;
}

#[tokio::test]
async fn wrong_issuer_is_issuer_invalid() {
    let app = spawn_app().await;
    let alice = app.caller(Role::Agent).await;
    let mut claims = claims_for(&app, &alice);
    claims.iss = "someone-else".into();
    assert_token_refused(&app, &app.sign(&claims), "TOKEN_ISSUER_INVALID").await;
}

#[tokio::test]
async fn wrong_audience_is_audience_invalid() {
    let app = spawn_app().await;
    let alice = app.caller(Role::Agent).await;
    let mut claims = claims_for(&app, &alice);
    claims.aud = "another-service".into();
    assert_token_refused(&app, &app.sign(&claims), "TOKEN_AUDIENCE_INVALID").await;
}

#[tokio::test]
async fn missing_exp_is_claims_invalid() {
    let app = spawn_app().await;
    let alice = app.caller(Role::Agent).await;
    let now = now();
    let claims = json!({
        "sub": alice.user.to_string(),
        "tid": alice.tenant.to_string(),
        "iss": app.config.jwt.issuer,
        "aud": app.config.jwt.audience,
        "iat": now,
    });
    assert_token_refused(&app, &hand_hs256(&claims), "TOKEN_CLAIMS_INVALID").await;

    // The same claims with `exp` are accepted: only the missing claim is at fault.
    let mut with_exp = claims.clone();
    with_exp["exp"] = json!(now + 300);
    list_as(&app, &hand_hs256(&with_exp))
        .await
        .expect("the same token with exp");
}

#[tokio::test]
async fn non_uuid_tid_or_sub_is_claims_invalid() {
    let app = spawn_app().await;
    let alice = app.caller(Role::Agent).await;

    let mut bad_tid = claims_for(&app, &alice);
    bad_tid.tid = "tenant-1".into();
    assert_token_refused(&app, &app.sign(&bad_tid), "TOKEN_CLAIMS_INVALID").await;

    let mut bad_sub = claims_for(&app, &alice);
    bad_sub.sub = "alice@example.com".into();
    assert_token_refused(&app, &app.sign(&bad_sub), "TOKEN_CLAIMS_INVALID").await;

    let mut empty = claims_for(&app, &alice);
    empty.tid = String::new();
    assert_token_refused(&app, &app.sign(&empty), "TOKEN_CLAIMS_INVALID").await;
}

#[tokio::test]
async fn unknown_user_is_user_unknown() {
    let app = spawn_app().await;
    let alice = app.caller(Role::Agent).await;
    let bob = app.caller(Role::Admin).await;

    // A user id that exists nowhere.
    let ghost = app.token(alice.tenant, deskd::tenancy::UserId(Uuid::now_v7()));
    assert_token_refused(&app, &ghost, "USER_UNKNOWN").await;

    // A user that exists, but in another tenant.
    let crossed = app.token(alice.tenant, bob.user);
    assert_token_refused(&app, &crossed, "USER_UNKNOWN").await;

    // Both real credentials still work.
    list_as(&app, &alice.token).await.expect("alice");
    list_as(&app, &bob.token).await.expect("bob");
}

#[tokio::test]
async fn deactivated_user_is_user_inactive() {
    // A fresh app: the user was never looked up, so the cache is cold.
    let app = spawn_app().await;
    let alice = app.caller(Role::Agent).await;
    let colleague = app.colleague(&alice, Role::Agent).await;
    let mut owner = app.db.owner_conn().await;
    let updated = sqlx::query("update users set active = false where tenant_id = $1 and id = $2")
        .bind(alice.tenant.0)
        .bind(alice.user.0)
        .execute(&mut owner)
        .await
        .expect("deactivate");
    assert_eq!(updated.rows_affected(), 1);

    assert_token_refused(&app, &alice.token, "USER_INACTIVE").await;
    // The tenant itself is fine: an active colleague is served.
    list_as(&app, &colleague.token).await.expect("active colleague");
}

#[tokio::test]
async fn rejections_never_echo_the_token() {
    let app = spawn_app().await;
    let alice = app.caller(Role::Agent).await;
    let marker = format!("MARKER{}", Uuid::new_v4().simple());

    let mut wrong_iss = claims_for(&app, &alice);
    wrong_iss.iss = marker.clone();
    let mut wrong_aud = claims_for(&app, &alice);
    wrong_aud.aud = marker.clone();
    let mut bad_sub = claims_for(&app, &alice);
    bad_sub.sub = marker.clone();
    let mut expired = claims_for(&app, &alice);
    expired.exp = now() - 3600;
    expired.sub = alice.user.to_string();
    let other = JwtKeys::hs256(
        &SecretString::from("yet-another-secret-0123456789abcdef0123"),
        &app.config.jwt,
    )
    .expect("keys");
    let cases = [
        (app.sign(&wrong_iss), "TOKEN_ISSUER_INVALID"),
        (app.sign(&wrong_aud), "TOKEN_AUDIENCE_INVALID"),
        (app.sign(&bad_sub), "TOKEN_CLAIMS_INVALID"),
        (app.sign(&expired), "TOKEN_EXPIRED"),
        (
            other.sign(&claims_for(&app, &alice)).expect("sign"),
            "TOKEN_SIGNATURE_INVALID",
        ),
        (format!("{marker}.{marker}.{marker}"), "TOKEN_MALFORMED"),
        (
            app.token(alice.tenant, deskd::tenancy::UserId(Uuid::now_v7())),
            "USER_UNKNOWN",
        ),
    ];
    for (token, expected) in &cases {
        let status = list_as(&app, token).await.expect_err("refused");
        assert_unauthenticated(&status, expected, &[token.as_str(), marker.as_str()]);
        // Nor does the `Debug` rendering a client might log.
        assert!(!format!("{status:?}").contains(token.as_str()));
    }
    // A malformed scheme carrying a secret-looking value is not echoed either.
    let value = format!("Basic {marker}");
    let status = list_with(&app, Some(&value)).await.expect_err("refused");
    assert_unauthenticated(&status, "CREDENTIAL_MALFORMED", &[marker.as_str()]);
}

#[tokio::test]
async fn health_check_needs_no_credential() {
    use tonic_health::pb::{HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient};
    let app = spawn_app().await;
    let mut health = HealthClient::new(app.channel.clone());

    let overall = health
        .check(Request::new(HealthCheckRequest { service: String::new() }))
        .await
        .expect("health check without credential")
        .into_inner();
    assert_eq!(overall.status(), ServingStatus::Serving);

    // A garbage credential does not matter on a public path either.
    let mut req = Request::new(HealthCheckRequest { service: String::new() });
    req.metadata_mut()
        .insert("authorization", "Bearer garbage".parse().expect("value"));
    health.check(req).await.expect("health check ignores credentials");

    // Watch streams without a credential too.
    let mut stream = health
        .watch(Request::new(HealthCheckRequest { service: String::new() }))
        .await
        .expect("watch without credential")
        .into_inner();
    let first = stream.message().await.expect("watch stream").expect("a first status");
    assert_eq!(first.status(), ServingStatus::Serving);
}

#[tokio::test]
async fn reflection_v1_lists_services_without_credential() {
    use tonic_reflection::pb::v1::{
        ServerReflectionRequest, server_reflection_client::ServerReflectionClient,
        server_reflection_request::MessageRequest, server_reflection_response::MessageResponse,
    };
    let app = spawn_app().await;
    let mut client = ServerReflectionClient::new(app.channel.clone());
    let request = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut stream = client
        .server_reflection_info(Request::new(futures_util::stream::iter(vec![request])))
        .await
        .expect("reflection v1 without credential")
        .into_inner();
    let response = stream
        .message()
        .await
        .expect("reflection stream")
        .expect("one response");
    let Some(MessageResponse::ListServicesResponse(list)) = response.message_response else {
        panic!("expected a list of services, got {response:?}");
    };
    let names: Vec<String> = list.service.into_iter().map(|s| s.name).collect();
    assert!(
        names.iter().any(|n| n == TICKETS_SERVICE),
        "v1 reflection lists {names:?}"
    );
    assert!(
        names.iter().any(|n| n == "grpc.health.v1.Health"),
        "v1 reflection lists {names:?}"
    );
}

#[tokio::test]
async fn reflection_v1alpha_lists_services_without_credential() {
    use tonic_reflection::pb::v1alpha::{
        ServerReflectionRequest, server_reflection_client::ServerReflectionClient,
        server_reflection_request::MessageRequest, server_reflection_response::MessageResponse,
    };
    let app = spawn_app().await;
    let mut client = ServerReflectionClient::new(app.channel.clone());
    let request = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut stream = client
        .server_reflection_info(Request::new(futures_util::stream::iter(vec![request])))
        .await
        .expect("reflection v1alpha without credential")
        .into_inner();
    let response = stream
        .message()
        .await
        .expect("reflection stream")
        .expect("one response");
    let Some(MessageResponse::ListServicesResponse(list)) = response.message_response else {
        panic!("expected a list of services, got {response:?}");
    };
    let names: Vec<String> = list.service.into_iter().map(|s| s.name).collect();
    assert!(
        names.iter().any(|n| n == TICKETS_SERVICE),
        "v1alpha reflection lists {names:?}"
    );
}
