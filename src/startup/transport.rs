//! The HTTP/2 transport and gRPC reflection that `Application::run_until`
//! serves its layers and services with.

use tonic::transport::Server;

use crate::{config::ServerConfig, proto};

/// The tonic server with every HTTP/2 limit set explicitly (tonic leaves
/// some unset, which removes hyper's own defaults). What bounds each kind
/// of abuse, and the tests that show it: docs/reliability.md, "HTTP/2 abuse".
pub fn server(s: &ServerConfig) -> Server {
    Server::builder()
        .max_concurrent_streams(s.max_concurrent_streams)
        // Outside every layer: a waiting stream is not yet authenticated
        // and holds no max_in_flight permit.
        .concurrency_limit_per_connection(s.max_concurrent_rpcs_per_connection)
        .http2_max_pending_accept_reset_streams(Some(s.max_pending_accept_reset_streams))
        .http2_max_local_error_reset_streams(Some(s.max_local_error_reset_streams))
        .http2_max_header_list_size(s.max_header_list_size)
        .max_frame_size(s.max_frame_size)
        .http2_keepalive_interval(Some(s.keepalive_interval))
        .http2_keepalive_timeout(Some(s.keepalive_timeout))
        .max_connection_age(s.max_connection_age)
        .max_connection_age_grace(s.max_connection_age_grace)
        .tcp_nodelay(true)
}

/// A reflection builder with deskd's, the error details' and health's
/// descriptors, so that grpcurl can decode every message and status detail.
/// deskd serves it as v1 and as v1alpha (grpcurl 1.8 speaks only v1alpha).
pub fn reflection() -> tonic_reflection::server::Builder<'static> {
    tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_types::pb::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
}
