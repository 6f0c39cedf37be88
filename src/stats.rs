//! Stats: figures about a tenant's tickets over a time window.
//!
//! `model` holds the query, the window arithmetic and the assembly of the
//! figures, `store` the SQL (raw aggregates and the daily rollups kept by
//! triggers), `service` the operation (one tenant transaction) and `grpc`
//! the wire mapping. See ARCHITECTURE.md, "Stats".

pub mod grpc;
pub mod model;
pub mod service;
pub mod store;
