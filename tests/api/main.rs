//! deskd's integration tests: one binary, one module per area. Every test
//! starts the real server on port 0 against its own PostgreSQL database and
//! talks to it with the generated client.

mod helpers;
mod jobs;
mod proxy;
mod users_support;

mod apikeys;
mod auth;
mod cli;
mod health;
mod jwt_keys;
mod lifecycle;
mod permissions;
mod protocol;
mod rate_limit;
mod redis;
mod replicas;
mod rls;
mod stats;
mod tenancy;
mod tickets;
mod tickets_list;
mod users;
