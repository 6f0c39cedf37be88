//! Tickets: the support requests of a tenant.
//!
//! `model` holds the types and rules, `store` the SQL, `service` the
//! operations (transaction boundaries) and `grpc` the wire mapping.

pub mod export;
pub mod grpc;
pub mod model;
pub mod service;
pub mod store;
