//! The `server`, `log` and `health` sections.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Transport limits. tonic leaves several HTTP/2 limits unset, which removes
/// hyper's own defaults, so every one is explicit here.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// Concurrent HTTP/2 streams per connection. A stream opened beyond it is
    /// refused with RST_STREAM(REFUSED_STREAM) before any handler runs.
    pub max_concurrent_streams: u32,
    /// RPCs of one connection that run at once; the connection's other
    /// accepted streams wait, before authentication and before they take a
    /// `max_in_flight` permit, until one of them ends. This bounds what one
    /// connection can make the server do: a stream-count flood with a valid
    /// credential starts this many RPCs per connection, not
    /// `max_concurrent_streams`. Behind a proxy that multiplexes many
    /// clients onto few connections, raise it to `max_concurrent_streams`
    /// and let the proxy bound each client (docs/scaling.md).
    pub max_concurrent_rpcs_per_connection: usize,
    /// Streams the client may reset before the server accepted them (guards
    /// against rapid-reset floods: HEADERS followed at once by RST_STREAM).
    /// h2 counts the ones waiting in its accept queue; one more than this
    /// and the connection gets GOAWAY(ENHANCE_YOUR_CALM) and is closed.
    pub max_pending_accept_reset_streams: usize,
    /// Streams the server may reset on its own (protocol errors, and streams
    /// refused for exceeding `max_concurrent_streams`) before it sends
    /// GOAWAY(ENHANCE_YOUR_CALM) and closes the connection. The count never
    /// goes down over a connection's life, so this also ends a stream-count
    /// flood: a client that keeps opening streams beyond the limit loses
    /// its connection after this many refusals (h2 0.4 counts refused
    /// streams here; a well-behaved client never gets one).
    pub max_local_error_reset_streams: usize,
    /// Largest header list a client may send, in bytes.
    pub max_header_list_size: u32,
    /// Largest HTTP/2 frame, in bytes.
    pub max_frame_size: u32,
    /// Largest request message, in bytes.
    pub max_decoding_message_size: usize,
    /// Largest response message, in bytes.
    pub max_encoding_message_size: usize,
    /// Compress responses (gzip or zstd) for clients that accept it. Off by
    /// default: requests may always be compressed.
    pub compress_responses: bool,
    /// HTTP/2 PING interval on idle connections.
    #[serde(with = "humantime_serde")]
    pub keepalive_interval: Duration,
    /// How long to wait for a PING answer before closing the connection.
    #[serde(with = "humantime_serde")]
    pub keepalive_timeout: Duration,
    /// How long a new connection may take to send the HTTP/2 connection
    /// preface before it is closed. hyper has no such deadline, and
    /// keepalive PINGs only start once the preface is in, so without it a
    /// TCP connection that never speaks holds its socket for ever.
    #[serde(with = "humantime_serde")]
    pub handshake_timeout: Duration,
    /// After this long a connection is sent GOAWAY: it takes no new streams,
    /// its RPCs in flight finish, and the client reconnects (tonic's
    /// `Channel` does so by itself). This bounds what a client that never
    /// reads (zero flow-control window, PINGs still answered) can hold: its
    /// streams and their unsent responses.
    #[serde(with = "humantime_serde")]
    pub max_connection_age: Duration,
    /// How long RPCs may still take after the `max_connection_age` GOAWAY;
    /// then the connection is closed whatever it still holds. Keep it at
    /// least `max_request_duration`, so that only a client that does not
    /// read its responses loses an RPC to it.
    #[serde(with = "humantime_serde")]
    pub max_connection_age_grace: Duration,
    /// RPCs in flight across all connections; more are shed at once with
    /// RESOURCE_EXHAUSTED instead of queueing. Size it to a few times the
    /// concurrency at which the replica's throughput stops growing (about
    /// 16 on 2 cores with a 20-connection pool): beyond that, RPCs in
    /// flight only wait (docs/reliability.md, "Overload").
    pub max_in_flight: usize,
    /// RPCs of one tenant in flight on this replica; more are refused at
    /// once with RESOURCE_EXHAUSTED `TENANT_OVERLOADED`. Below
    /// `max_in_flight`, so that one tenant's slow or stuck calls leave the
    /// rest of the replica to the other tenants.
    pub max_in_flight_per_tenant: usize,
    /// The longest an RPC may run, whatever deadline the client sent.
    #[serde(with = "humantime_serde")]
    pub max_request_duration: Duration,
    /// After SIGTERM/SIGINT, how long deskd keeps serving as usual while it
    /// already reports not ready (`/readyz` 503, gRPC health NOT_SERVING),
    /// so that load balancers take it out of rotation before it stops
    /// accepting. Set it to cover the balancer's health-check interval (e.g.
    /// 2 × HAProxy's `inter`): a request a balancer sends after the GOAWAY
    /// races the connection's close, and the close can cut a response that
    /// is still on its way.
    #[serde(with = "humantime_serde")]
    pub drain_delay: Duration,
    /// How long in-flight RPCs may take to finish after the drain delay.
    #[serde(with = "humantime_serde")]
    pub shutdown_grace: Duration,
    /// An RPC slower than this logs a WARN `slow_rpc` event.
    #[serde(with = "humantime_serde")]
    pub slow_rpc_threshold: Duration,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            max_concurrent_streams: 100,
            max_concurrent_rpcs_per_connection: 32,
            max_pending_accept_reset_streams: 20,
            max_local_error_reset_streams: 1024,
            max_header_list_size: 16 * 1024,
            max_frame_size: 16 * 1024,
            max_decoding_message_size: 4 * 1024 * 1024,
            max_encoding_message_size: 4 * 1024 * 1024,
            compress_responses: false,
            keepalive_interval: Duration::from_secs(30),
            keepalive_timeout: Duration::from_secs(10),
            handshake_timeout: Duration::from_secs(10),
            max_connection_age: Duration::from_secs(30 * 60),
            max_connection_age_grace: Duration::from_secs(60),
            max_in_flight: 128,
            max_in_flight_per_tenant: 64,
            max_request_duration: Duration::from_secs(30),
            drain_delay: Duration::ZERO,
            shutdown_grace: Duration::from_secs(30),
            slow_rpc_threshold: Duration::from_secs(5),
        }
    }
}

/// Log output format.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines, for development.
    Text,
    /// One JSON object per line, for production.
    Json,
}

/// Log settings.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    /// `text` or `json`.
    pub format: LogFormat,
    /// A tracing filter such as `info` or `deskd=debug,info`.
    pub filter: String,
}

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            format: LogFormat::Text,
            filter: "info,sqlx=warn".into(),
        }
    }
}

/// Health reporting.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HealthConfig {
    /// How often PostgreSQL is probed.
    #[serde(with = "humantime_serde")]
    pub check_interval: Duration,
    /// How long one probe may take before it counts as a failure.
    #[serde(with = "humantime_serde")]
    pub check_timeout: Duration,
}

impl Default for HealthConfig {
    fn default() -> Self {
        Self {
            check_interval: Duration::from_secs(2),
            check_timeout: Duration::from_secs(1),
        }
    }
}
