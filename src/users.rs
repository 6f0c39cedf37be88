//! Users: the people and service accounts of a tenant, and the API keys
//! service accounts authenticate with.
//!
//! `model` holds the types and rules, `store` the SQL, `service` the
//! operations (transaction boundaries, cache invalidation) and `grpc` the
//! wire mapping; `jobs` the background jobs (the welcome e-mail).

pub mod grpc;
pub mod jobs;
pub mod model;
pub mod service;
pub mod store;
