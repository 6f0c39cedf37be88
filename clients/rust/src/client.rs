//! The builder, the client and its per-service handles.

use std::{
    fmt,
    future::Future,
    sync::Arc,
    time::{Duration, Instant},
};

use tonic::{
    Code, Request, Status,
    codec::CompressionEncoding,
    metadata::{AsciiMetadataValue, MetadataValue},
    service::{Interceptor, interceptor::InterceptedService},
    transport::{Channel, ClientTlsConfig, Endpoint},
};

use crate::{
    error::DeskdError,
    proto::{
        operations::v1::{self as operations_pb, operations_service_client::OperationsServiceClient},
        stats::v1::{self as stats_pb, stats_service_client::StatsServiceClient},
        tickets::v1::{self as tickets_pb, tickets_service_client::TicketsServiceClient},
        users::v1::{self as users_pb, users_service_client::UsersServiceClient},
    },
    retry::{Decision, RetryEvent, RetryPolicy, RetrySafe, decide, jitter},
};

/// The header deskd reads the tenant from (it must match the credential's).
pub const TENANT_HEADER: &str = "x-tenant-id";
/// The header an API key may be sent in.
pub const API_KEY_HEADER: &str = "x-api-key";

/// The default deadline of a call: 30 s.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

/// A callback that returns the current bearer token; called for every
/// attempt, so it can hand out refreshed tokens.
pub type TokenSource = Arc<dyn Fn() -> String + Send + Sync>;

/// A callback told about every retry (for logs or metrics).
pub type RetryObserver = Arc<dyn Fn(&RetryEvent) + Send + Sync>;

/// How request messages are compressed. Compressed responses (gzip, zstd)
/// are always accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    /// `grpc-encoding: gzip`.
    Gzip,
    /// `grpc-encoding: zstd`.
    Zstd,
}

impl From<Compression> for CompressionEncoding {
    fn from(c: Compression) -> CompressionEncoding {
        match c {
            Compression::Gzip => CompressionEncoding::Gzip,
            Compression::Zstd => CompressionEncoding::Zstd,
        }
    }
}

#[derive(Clone)]
enum Credentials {
    None,
    Bearer(TokenSource),
    ApiKey(AsciiMetadataValue),
}

/// The credential as given to the builder (checked by `connect`).
enum BuilderCredentials {
    None,
    Bearer(TokenSource),
    ApiKey(String),
}

/// Adds the credential and the tenant to every request. Part of the type of
/// the generated clients [`TicketsClient::raw`] and its siblings return.
#[derive(Clone)]
pub struct DeskdInterceptor {
    credentials: Credentials,
    tenant: Option<AsciiMetadataValue>,
}

impl fmt::Debug for DeskdInterceptor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let credentials = match self.credentials {
            Credentials::None => "none",
            Credentials::Bearer(_) => "bearer",
            Credentials::ApiKey(_) => "api key",
        };
        f.debug_struct("DeskdInterceptor")
            .field("credentials", &credentials)
            .field("tenant", &self.tenant)
            .finish()
    }
}

impl Interceptor for DeskdInterceptor {
    fn call(&mut self, mut req: Request<()>) -> Result<Request<()>, Status> {
        match &self.credentials {
            Credentials::None => {}
            Credentials::Bearer(token) => {
                let mut value = MetadataValue::try_from(format!("Bearer {}", token()))
                    .map_err(|_| Status::unauthenticated("the bearer token is not a valid header value"))?;
                value.set_sensitive(true);
                req.metadata_mut().insert("authorization", value);
            }
            Credentials::ApiKey(key) => {
                req.metadata_mut().insert(API_KEY_HEADER, key.clone());
            }
        }
        if let Some(tenant) = &self.tenant {
            req.metadata_mut().insert(TENANT_HEADER, tenant.clone());
        }
        Ok(req)
    }
}

/// The transport every generated client uses: the channel behind
/// [`DeskdInterceptor`].
pub type Transport = InterceptedService<Channel, DeskdInterceptor>;

/// Configures and connects a [`DeskdClient`]; see [`DeskdClient::builder`].
#[must_use]
pub struct DeskdClientBuilder {
    endpoint: String,
    credentials: BuilderCredentials,
    tenant: Option<String>,
    timeout: Option<Duration>,
    connect_timeout: Option<Duration>,
    compression: Option<Compression>,
    tls: Option<ClientTlsConfig>,
    retry: RetryPolicy,
    on_retry: Option<RetryObserver>,
}

impl fmt::Debug for DeskdClientBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DeskdClientBuilder")
            .field("endpoint", &self.endpoint)
            .field("tenant", &self.tenant)
            .field("timeout", &self.timeout)
            .field("compression", &self.compression)
            .field("tls", &self.tls.is_some())
            .field("retry", &self.retry)
            .finish_non_exhaustive()
    }
}

impl DeskdClientBuilder {
    /// Sends `authorization: Bearer <token>` (a JWT, or an API key).
    pub fn bearer_token(self, token: impl Into<String>) -> Self {
        let token = token.into();
        self.bearer_token_fn(Arc::new(move || token.clone()))
    }

    /// Sends `authorization: Bearer <source()>`, asking `source` anew for
    /// every attempt: give it a function that returns a fresh JWT.
    pub fn bearer_token_fn(mut self, source: TokenSource) -> Self {
        self.credentials = BuilderCredentials::Bearer(source);
        self
    }

    /// Sends the API key in `x-api-key`.
    pub fn api_key(mut self, key: impl Into<String>) -> Self {
        self.credentials = BuilderCredentials::ApiKey(key.into());
        self
    }

    /// Sends `x-tenant-id: <tenant>` (a UUID, or anything that displays as
    /// one); deskd refuses a call whose tenant differs from its credential's
    /// with `PERMISSION_DENIED`, reason `TENANT_MISMATCH`.
    pub fn tenant(mut self, tenant: impl fmt::Display) -> Self {
        self.tenant = Some(tenant.to_string());
        self
    }

    /// The deadline of every call, retries included, sent as `grpc-timeout`
    /// (default [`DEFAULT_TIMEOUT`]). A handle's `with_timeout` overrides it.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// Calls have no deadline unless a handle's `with_timeout` sets one.
    pub fn no_timeout(mut self) -> Self {
        self.timeout = None;
        self
    }

    /// How long connecting may take.
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = Some(timeout);
        self
    }

    /// Compresses request messages (default: uncompressed).
    pub fn compression(mut self, compression: Compression) -> Self {
        self.compression = Some(compression);
        self
    }

    /// Connects with TLS configured like this. An `https://` endpoint without
    /// it uses TLS with the webpki root certificates.
    pub fn tls(mut self, tls: ClientTlsConfig) -> Self {
        self.tls = Some(tls);
        self
    }

    /// How calls are retried (default [`RetryPolicy::default`];
    /// [`RetryPolicy::none`] disables retries).
    pub fn retry(mut self, policy: RetryPolicy) -> Self {
        self.retry = policy;
        self
    }

    /// Calls `observer` before every retry.
    pub fn on_retry(mut self, observer: RetryObserver) -> Self {
        self.on_retry = Some(observer);
        self
    }

    fn parts(self) -> Result<(Endpoint, DeskdInterceptor, CallOptions), DeskdError> {
        let invalid = |what: &str, e: Box<dyn std::error::Error + Send + Sync>| {
            DeskdError::local(Code::InvalidArgument, format!("invalid {what}"), e)
        };
        let uri = if self.endpoint.contains("://") {
            self.endpoint.clone()
        } else {
            format!("http://{}", self.endpoint)
        };
        let https = uri.starts_with("https://");
        let mut endpoint = Endpoint::from_shared(uri)
            .map_err(|e| invalid("endpoint", e.into()))?
            .user_agent(concat!("deskd-client-rust/", env!("CARGO_PKG_VERSION")))
            .map_err(|e| invalid("user agent", e.into()))?;
        if let Some(t) = self.connect_timeout {
            endpoint = endpoint.connect_timeout(t);
        }
        let tls = match self.tls {
            Some(tls) => Some(tls),
            None if https => Some(ClientTlsConfig::new().with_webpki_roots()),
            None => None,
        };
        if let Some(tls) = tls {
            endpoint = endpoint
                .tls_config(tls)
                .map_err(|e| invalid("TLS configuration", e.into()))?;
        }
        let credentials = match self.credentials {
            BuilderCredentials::None => Credentials::None,
            BuilderCredentials::Bearer(source) => Credentials::Bearer(source),
            BuilderCredentials::ApiKey(key) => {
                let mut value = AsciiMetadataValue::try_from(key.as_str()).map_err(|e| invalid("API key", e.into()))?;
                value.set_sensitive(true);
                Credentials::ApiKey(value)
            }
        };
        let tenant = match self.tenant {
            Some(t) => Some(AsciiMetadataValue::try_from(t.as_str()).map_err(|e| invalid("tenant", e.into()))?),
            None => None,
        };
        let interceptor = DeskdInterceptor { credentials, tenant };
        let options = CallOptions {
            timeout: self.timeout,
            retry: self.retry,
            compression: self.compression,
            on_retry: self.on_retry,
        };
        Ok((endpoint, interceptor, options))
    }

    /// Connects now: fails with `UNAVAILABLE` when the server cannot be
    /// reached. Later connection losses are repaired on the next call.
    pub async fn connect(self) -> Result<DeskdClient, DeskdError> {
        let (endpoint, interceptor, options) = self.parts()?;
        let channel = endpoint.connect().await.map_err(|e| {
            DeskdError::local(
                Code::Unavailable,
                format!("cannot connect to {}: {e}", endpoint.uri()),
                e,
            )
        })?;
        Ok(DeskdClient {
            channel,
            interceptor,
            options,
        })
    }

    /// Connects on the first call instead (which fails with `UNAVAILABLE`,
    /// and may be retried, while the server cannot be reached).
    pub fn connect_lazy(self) -> Result<DeskdClient, DeskdError> {
        let (endpoint, interceptor, options) = self.parts()?;
        Ok(DeskdClient {
            channel: endpoint.connect_lazy(),
            interceptor,
            options,
        })
    }
}

/// What every call of a handle uses: deadline, retries, compression.
#[derive(Clone)]
struct CallOptions {
    timeout: Option<Duration>,
    retry: RetryPolicy,
    compression: Option<Compression>,
    on_retry: Option<RetryObserver>,
}

impl fmt::Debug for CallOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CallOptions")
            .field("timeout", &self.timeout)
            .field("retry", &self.retry)
            .field("compression", &self.compression)
            .finish_non_exhaustive()
    }
}

/// A connection to deskd, cheap to clone (clones share the connection).
#[derive(Clone, Debug)]
pub struct DeskdClient {
    channel: Channel,
    interceptor: DeskdInterceptor,
    options: CallOptions,
}

impl DeskdClient {
    /// Starts configuring a client of the server at `endpoint`: a URI
    /// (`http://host:port`, `https://host`) or `host:port` for plaintext.
    pub fn builder(endpoint: impl Into<String>) -> DeskdClientBuilder {
        DeskdClientBuilder {
            endpoint: endpoint.into(),
            credentials: BuilderCredentials::None,
            tenant: None,
            timeout: Some(DEFAULT_TIMEOUT),
            connect_timeout: None,
            compression: None,
            tls: None,
            retry: RetryPolicy::default(),
            on_retry: None,
        }
    }

    fn transport(&self) -> Transport {
        InterceptedService::new(self.channel.clone(), self.interceptor.clone())
    }

    /// `deskd.tickets.v1.TicketsService`.
    pub fn tickets(&self) -> TicketsClient {
        TicketsClient::new(self.transport(), self.options.clone())
    }

    /// `deskd.users.v1.UsersService`.
    pub fn users(&self) -> UsersClient {
        UsersClient::new(self.transport(), self.options.clone())
    }

    /// `deskd.stats.v1.StatsService`.
    pub fn stats(&self) -> StatsClient {
        StatsClient::new(self.transport(), self.options.clone())
    }

    /// `deskd.operations.v1.OperationsService`.
    pub fn operations(&self) -> OperationsClient {
        OperationsClient::new(self.transport(), self.options.clone())
    }
}

/// Sends `msg` with `rpc`, retrying as `options.retry` and the message's
/// retry safety allow, within the call's deadline.
async fn call_with_retry<C, Req, Resp, F, Fut>(
    client: &C,
    options: &CallOptions,
    method: &'static str,
    msg: Req,
    rpc: F,
) -> Result<Resp, DeskdError>
where
    C: Clone,
    Req: Clone + RetrySafe,
    F: Fn(C, Request<Req>) -> Fut,
    Fut: Future<Output = Result<tonic::Response<Resp>, Status>>,
{
    let retry_safe = msg.retry_safe();
    let deadline = options.timeout.map(|t| Instant::now() + t);
    let mut attempt = 0;
    loop {
        attempt += 1;
        let mut req = Request::new(msg.clone());
        if let Some(deadline) = deadline {
            req.set_timeout(deadline.saturating_duration_since(Instant::now()));
        }
        let status = match rpc(client.clone(), req).await {
            Ok(resp) => return Ok(resp.into_inner()),
            Err(status) => status,
        };
        let now = Instant::now();
        let status = normalize(status, deadline.is_some_and(|d| now >= d));
        let err = DeskdError::from_status(status).with_attempts(attempt);
        let remaining = deadline.map(|d| d.saturating_duration_since(now));
        let decision = decide(
            &options.retry,
            retry_safe,
            err.code(),
            err.retry_delay(),
            attempt,
            remaining,
            jitter(),
        );
        match decision {
            Decision::GiveUp => return Err(err),
            Decision::Retry(delay) => {
                if let Some(observer) = &options.on_retry {
                    observer(&RetryEvent {
                        method,
                        attempt,
                        code: err.code(),
                        delay,
                    });
                }
                tokio::time::sleep(delay).await;
            }
        }
    }
}

/// Gives CANCELLED from the client's own transport the code the gRPC
/// specification asks for: the call was not cancelled by its caller (who
/// would not see the result), so it either outlived its deadline
/// (DEADLINE_EXCEEDED: tonic reports its expiry of `grpc-timeout` as
/// CANCELLED) or lost its connection (UNAVAILABLE: hyper cancels requests
/// queued on a connection that closes). A CANCELLED sent by the server has
/// no local source and is kept.
fn normalize(status: Status, deadline_passed: bool) -> Status {
    if status.code() != Code::Cancelled {
        return status;
    }
    if deadline_passed {
        Status::deadline_exceeded(format!("deadline exceeded: {}", status.message()))
    } else if std::error::Error::source(&status).is_some() {
        Status::unavailable(format!("connection lost: {}", status.message()))
    } else {
        status
    }
}

macro_rules! retry_safe {
    ($pb:ident: $($req:ident => |$r:pat_param| $safe:expr;)*) => {
        $(
            impl RetrySafe for $pb::$req {
                fn retry_safe(&self) -> bool {
                    let $r = self;
                    $safe
                }
            }
        )*
    };
}

retry_safe! { tickets_pb:
    GetTicketRequest => |_| true;
    ListTicketsRequest => |_| true;
    CreateTicketRequest => |r| !r.request_id.is_empty();
    UpdateTicketRequest => |_| true;
    DeleteTicketRequest => |_| true;
    ExportTicketsRequest => |_| false;
}

retry_safe! { users_pb:
    GetUserRequest => |_| true;
    ListUsersRequest => |_| true;
    CreateUserRequest => |r| !r.request_id.is_empty();
    UpdateUserRequest => |_| true;
    DeactivateUserRequest => |_| true;
    ReactivateUserRequest => |_| true;
    GetCurrentUserRequest => |_| true;
    CreateApiKeyRequest => |_| false;
    ListApiKeysRequest => |_| true;
    RevokeApiKeyRequest => |_| true;
}

retry_safe! { stats_pb:
    GetTicketStatsRequest => |_| true;
}

retry_safe! { operations_pb:
    GetOperationRequest => |_| true;
    ListOperationsRequest => |_| true;
    CancelOperationRequest => |_| true;
}

macro_rules! service {
    (
        $(#[$doc:meta])*
        $name:ident($raw:ident, $pb:ident, $service:literal) {
            $( $(#[$mdoc:meta])* $rpc:literal fn $method:ident($req:ident) -> $resp:ident; )*
        }
    ) => {
        $(#[$doc])*
        ///
        /// Every method sends the credential and tenant, applies the deadline
        /// and compression, and retries as [`crate::retry`] explains; it
        /// returns the response message or a [`DeskdError`].
        #[derive(Clone, Debug)]
        pub struct $name {
            raw: $raw<Transport>,
            options: CallOptions,
        }

        impl $name {
            fn new(transport: Transport, options: CallOptions) -> Self {
                let mut raw = $raw::new(transport)
                    .accept_compressed(CompressionEncoding::Gzip)
                    .accept_compressed(CompressionEncoding::Zstd);
                if let Some(c) = options.compression {
                    raw = raw.send_compressed(c.into());
                }
                $name { raw, options }
            }

            /// This handle with another deadline for each of its calls.
            pub fn with_timeout(mut self, timeout: Duration) -> Self {
                self.options.timeout = Some(timeout);
                self
            }

            /// This handle with another retry policy.
            pub fn with_retry(mut self, policy: RetryPolicy) -> Self {
                self.options.retry = policy;
                self
            }

            /// The generated tonic client (credential, tenant and
            /// compression included; no deadline or retries), for what the
            /// methods do not cover, such as response metadata.
            pub fn raw(&self) -> $raw<Transport> {
                self.raw.clone()
            }

            $(
                $(#[$mdoc])*
                pub async fn $method(&self, request: $pb::$req) -> Result<$pb::$resp, DeskdError> {
                    call_with_retry(
                        &self.raw,
                        &self.options,
                        concat!($service, "/", $rpc),
                        request,
                        |mut c, r| async move { c.$method(r).await },
                    )
                    .await
                }
            )*
        }
    };
}

service! {
    /// `deskd.tickets.v1.TicketsService`: the tenant's support tickets.
    TicketsClient(TicketsServiceClient, tickets_pb, "deskd.tickets.v1.TicketsService") {
        /// One ticket by id. Retried.
        "GetTicket" fn get_ticket(GetTicketRequest) -> GetTicketResponse;
        /// A page of tickets. Retried.
        "ListTickets" fn list_tickets(ListTicketsRequest) -> ListTicketsResponse;
        /// Creates a ticket. Retried only with a `request_id`.
        "CreateTicket" fn create_ticket(CreateTicketRequest) -> CreateTicketResponse;
        /// Changes the fields named in `update_mask`. Retried.
        "UpdateTicket" fn update_ticket(UpdateTicketRequest) -> UpdateTicketResponse;
        /// Deletes a ticket. Retried.
        "DeleteTicket" fn delete_ticket(DeleteTicketRequest) -> DeleteTicketResponse;
        /// Starts an export (a long-running operation). Never retried.
        "ExportTickets" fn export_tickets(ExportTicketsRequest) -> ExportTicketsResponse;
    }
}

service! {
    /// `deskd.users.v1.UsersService`: the tenant's users and API keys.
    UsersClient(UsersServiceClient, users_pb, "deskd.users.v1.UsersService") {
        /// One user by id. Retried.
        "GetUser" fn get_user(GetUserRequest) -> GetUserResponse;
        /// A page of users. Retried.
        "ListUsers" fn list_users(ListUsersRequest) -> ListUsersResponse;
        /// Creates a person. Retried only with a `request_id`.
        "CreateUser" fn create_user(CreateUserRequest) -> CreateUserResponse;
        /// Changes the fields named in `update_mask`. Retried.
        "UpdateUser" fn update_user(UpdateUserRequest) -> UpdateUserResponse;
        /// Stops a user from authenticating. Retried.
        "DeactivateUser" fn deactivate_user(DeactivateUserRequest) -> DeactivateUserResponse;
        /// Lets a deactivated user authenticate again. Retried.
        "ReactivateUser" fn reactivate_user(ReactivateUserRequest) -> ReactivateUserResponse;
        /// The caller and its permissions. Retried.
        "GetCurrentUser" fn get_current_user(GetCurrentUserRequest) -> GetCurrentUserResponse;
        /// Issues an API key and returns its secret once. Never retried.
        "CreateApiKey" fn create_api_key(CreateApiKeyRequest) -> CreateApiKeyResponse;
        /// A page of API keys (without secrets). Retried.
        "ListApiKeys" fn list_api_keys(ListApiKeysRequest) -> ListApiKeysResponse;
        /// Revokes an API key. Retried.
        "RevokeApiKey" fn revoke_api_key(RevokeApiKeyRequest) -> RevokeApiKeyResponse;
    }
}

service! {
    /// `deskd.stats.v1.StatsService`: ticket figures.
    StatsClient(StatsServiceClient, stats_pb, "deskd.stats.v1.StatsService") {
        /// The figures of one time window. Retried.
        "GetTicketStats" fn get_ticket_stats(GetTicketStatsRequest) -> GetTicketStatsResponse;
    }
}

service! {
    /// `deskd.operations.v1.OperationsService`: long-running operations.
    OperationsClient(OperationsServiceClient, operations_pb, "deskd.operations.v1.OperationsService") {
        /// One operation by name. Retried.
        "GetOperation" fn get_operation(GetOperationRequest) -> GetOperationResponse;
        /// A page of operations. Retried.
        "ListOperations" fn list_operations(ListOperationsRequest) -> ListOperationsResponse;
        /// Asks for an operation to stop. Retried.
        "CancelOperation" fn cancel_operation(CancelOperationRequest) -> CancelOperationResponse;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn creates_are_retried_only_with_a_request_id() {
        let mut t = tickets_pb::CreateTicketRequest::default();
        assert!(!t.retry_safe());
        t.request_id = "0196f5f0-0000-7000-8000-000000000000".into();
        assert!(t.retry_safe());
        let mut u = users_pb::CreateUserRequest::default();
        assert!(!u.retry_safe());
        u.request_id = "x".into();
        assert!(u.retry_safe());
        assert!(!users_pb::CreateApiKeyRequest::default().retry_safe());
        assert!(!tickets_pb::ExportTicketsRequest::default().retry_safe());
    }

    #[test]
    fn reads_updates_and_deletes_are_retry_safe() {
        assert!(tickets_pb::GetTicketRequest::default().retry_safe());
        assert!(tickets_pb::ListTicketsRequest::default().retry_safe());
        assert!(tickets_pb::UpdateTicketRequest::default().retry_safe());
        assert!(tickets_pb::DeleteTicketRequest::default().retry_safe());
        assert!(users_pb::GetCurrentUserRequest::default().retry_safe());
        assert!(users_pb::DeactivateUserRequest::default().retry_safe());
        assert!(users_pb::RevokeApiKeyRequest::default().retry_safe());
        assert!(stats_pb::GetTicketStatsRequest::default().retry_safe());
        assert!(operations_pb::CancelOperationRequest::default().retry_safe());
    }

    #[test]
    fn local_cancellations_get_the_specified_codes() {
        // A transport error tonic turned into a status keeps it as source.
        let local = || {
            let mut s = Status::cancelled("operation was canceled");
            s.set_source(Arc::new(std::io::Error::other("connection closed")));
            s
        };
        assert_eq!(local().code(), Code::Cancelled);
        assert_eq!(normalize(local(), true).code(), Code::DeadlineExceeded);
        assert_eq!(normalize(local(), false).code(), Code::Unavailable);
        assert_eq!(
            normalize(Status::cancelled("by the server"), false).code(),
            Code::Cancelled
        );
        assert_eq!(
            normalize(Status::cancelled("by the server"), true).code(),
            Code::DeadlineExceeded
        );
        assert_eq!(normalize(Status::not_found("x"), true).code(), Code::NotFound);
    }

    #[test]
    fn builder_rejects_invalid_values() {
        let err = DeskdClient::builder("not a uri\n")
            .connect_lazy()
            .map(|_| ())
            .unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument);
        let err = DeskdClient::builder("127.0.0.1:1")
            .api_key("bad\nkey")
            .connect_lazy()
            .map(|_| ())
            .unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument);
        let err = DeskdClient::builder("127.0.0.1:1")
            .tenant("bad\ntenant")
            .connect_lazy()
            .map(|_| ())
            .unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument);
    }

    #[test]
    fn interceptor_adds_credentials_and_tenant() {
        let calls = Arc::new(std::sync::atomic::AtomicU32::new(0));
        let counter = calls.clone();
        let mut i = DeskdInterceptor {
            credentials: Credentials::Bearer(Arc::new(move || {
                let n = counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                format!("token-{n}")
            })),
            tenant: Some(AsciiMetadataValue::from_static("t1")),
        };
        for n in 0..2 {
            let req = i.call(Request::new(())).map_err(|s| s.to_string()).unwrap();
            let auth = req.metadata().get("authorization").and_then(|v| v.to_str().ok());
            assert_eq!(auth, Some(format!("Bearer token-{n}").as_str()));
            assert_eq!(
                req.metadata().get(TENANT_HEADER).and_then(|v| v.to_str().ok()),
                Some("t1")
            );
        }
        let mut i = DeskdInterceptor {
            credentials: Credentials::ApiKey(AsciiMetadataValue::from_static("dsk_x_y")),
            tenant: None,
        };
        let req = i.call(Request::new(())).map_err(|s| s.to_string()).unwrap();
        assert_eq!(
            req.metadata().get(API_KEY_HEADER).and_then(|v| v.to_str().ok()),
            Some("dsk_x_y")
        );
        assert!(req.metadata().get("authorization").is_none());
        assert!(req.metadata().get(TENANT_HEADER).is_none());
    }

    #[tokio::test]
    async fn unreachable_server_is_unavailable_and_unsafe_calls_are_not_retried() {
        // Port 1 on loopback refuses connections.
        let retries = Arc::new(std::sync::atomic::AtomicU32::new(0));
        let seen = retries.clone();
        let client = DeskdClient::builder("127.0.0.1:1")
            .retry(RetryPolicy {
                max_attempts: 3,
                initial_backoff: Duration::from_millis(1),
                max_backoff: Duration::from_millis(5),
                multiplier: 2.0,
            })
            .on_retry(Arc::new(move |_| {
                seen.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            }))
            .connect_lazy()
            .map_err(|e| e.to_string())
            .unwrap();
        let err = client
            .tickets()
            .create_ticket(tickets_pb::CreateTicketRequest::default())
            .await
            .map(|_| ())
            .unwrap_err();
        assert_eq!(err.code(), Code::Unavailable, "{err}");
        assert_eq!(err.attempts(), 1);
        assert_eq!(retries.load(std::sync::atomic::Ordering::SeqCst), 0);
        let err = client
            .tickets()
            .get_ticket(tickets_pb::GetTicketRequest::default())
            .await
            .map(|_| ())
            .unwrap_err();
        assert_eq!(err.code(), Code::Unavailable, "{err}");
        assert_eq!(err.attempts(), 3);
        assert_eq!(retries.load(std::sync::atomic::Ordering::SeqCst), 2);
    }
}
