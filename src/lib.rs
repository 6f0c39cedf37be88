//! deskd: a multi-tenant helpdesk backend served over gRPC.
//!
//! See ARCHITECTURE.md for the map. The request path: `startup` builds the
//! tonic server and the tower layers of `middleware`; handlers live in each
//! feature folder (`tickets/grpc.rs`), call one service function
//! (`tickets/service.rs`) which runs SQL (`tickets/store.rs`) inside a
//! `tenancy::TenantTx`.

#![warn(missing_docs)]

pub mod admin;
pub mod auth;
pub mod cache;
pub mod codec;
pub mod config;
pub mod db;
pub mod error;
pub mod etag;
pub mod grpc_util;
pub mod idempotency;
pub mod jobs;
pub mod kv;
pub mod mail;
pub mod middleware;
pub mod operations;
pub mod ops;
pub mod pagination;
pub mod proto;
pub mod ratelimit;
pub mod startup;
pub mod stats;
pub mod telemetry;
pub mod tenancy;
pub mod tickets;
pub mod users;
