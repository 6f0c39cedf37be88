//! A typed Rust client for deskd's gRPC API.
//!
//! One [`DeskdClient`] holds a connection and hands out a handle per service
//! ([`tickets`](DeskdClient::tickets), [`users`](DeskdClient::users),
//! [`stats`](DeskdClient::stats), [`operations`](DeskdClient::operations)).
//! Every call through a handle:
//!
//! - sends the credential — a JWT or an API key as `authorization: Bearer …`
//!   (a [token source](DeskdClientBuilder::bearer_token_fn) is asked anew for
//!   every attempt, so tokens can be refreshed), or an API key as `x-api-key` —
//!   and the tenant as `x-tenant-id`;
//! - has a deadline ([`DEFAULT_TIMEOUT`] unless configured), retries included,
//!   sent to the server as `grpc-timeout`;
//! - is compressed as configured (responses in gzip or zstd are accepted);
//! - is retried only where that is safe, after Google AIP-194: see [`retry`];
//! - fails with a [`DeskdError`] carrying the code and deskd's error details
//!   (ErrorInfo reason and metadata, field violations, retry delay, request id).
//!
//! The messages and tonic clients are generated at build time from the
//! server's `proto/` and re-exported under [`proto`].
//!
//! ```no_run
//! use std::time::Duration;
//!
//! use deskd_client::{Compression, DeskdClient, RetryPolicy, proto::tickets::v1 as tickets};
//!
//! # async fn example(jwt: String, tenant_id: String) -> Result<(), deskd_client::DeskdError> {
//! let client = DeskdClient::builder("http://127.0.0.1:50051")
//!     .bearer_token(jwt)
//!     .tenant(tenant_id)
//!     .timeout(Duration::from_secs(10))
//!     .compression(Compression::Zstd)
//!     .retry(RetryPolicy::default())
//!     .connect()
//!     .await?;
//!
//! let ticket = client
//!     .tickets()
//!     .create_ticket(tickets::CreateTicketRequest {
//!         ticket: Some(tickets::Ticket {
//!             title: "Printer on fire".into(),
//!             ..Default::default()
//!         }),
//!         // An idempotency key: with it the create may be retried.
//!         request_id: "0196f5f0-5a5e-7c2e-9b1e-1d2f3a4b5c6d".into(),
//!     })
//!     .await?
//!     .ticket;
//!
//! match client
//!     .tickets()
//!     .create_ticket(tickets::CreateTicketRequest::default())
//!     .await
//! {
//!     Ok(_) => {}
//!     Err(e) => {
//!         eprintln!("{} {:?} {:?}", e.code(), e.reason(), e.request_id());
//!         for v in e.field_violations() {
//!             eprintln!("{}: {} ({})", v.field, v.description, v.reason);
//!         }
//!     }
//! }
//! # let _ = ticket;
//! # Ok(())
//! # }
//! ```

#![warn(missing_docs)]

mod client;
mod error;
pub mod retry;

pub use client::{
    API_KEY_HEADER, Compression, DEFAULT_TIMEOUT, DeskdClient, DeskdClientBuilder, DeskdInterceptor, OperationsClient,
    RetryObserver, StatsClient, TENANT_HEADER, TicketsClient, TokenSource, Transport, UsersClient,
};
pub use error::{DeskdError, FieldViolation, code_name};
pub use retry::{RetryEvent, RetryPolicy};
pub use tonic::{
    Code,
    transport::{Certificate, ClientTlsConfig, Identity},
};

/// The generated messages and tonic clients, one module per proto package.
#[allow(missing_docs, clippy::all)]
pub mod proto {
    /// `deskd.tickets.v1`: the Tickets API.
    pub mod tickets {
        /// Version 1.
        pub mod v1 {
            tonic::include_proto!("deskd.tickets.v1");
        }
    }

    /// `deskd.operations.v1`: long-running operations (AIP-151).
    pub mod operations {
        /// Version 1.
        pub mod v1 {
            tonic::include_proto!("deskd.operations.v1");
        }
    }

    /// `deskd.stats.v1`: the Stats API.
    pub mod stats {
        /// Version 1.
        pub mod v1 {
            tonic::include_proto!("deskd.stats.v1");
        }
    }

    /// `deskd.users.v1`: the Users API.
    pub mod users {
        /// Version 1.
        pub mod v1 {
            tonic::include_proto!("deskd.users.v1");
        }
    }
}
