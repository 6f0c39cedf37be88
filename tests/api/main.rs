//! deskd's integration tests: one binary, one module per area. Every test
//! starts the real server on port 0 against its own PostgreSQL database and
//! talks to it with the generated client.

mod apikeys_support;
mod balancer_support;
mod h2_raw;
mod helpers;
mod jobs;
mod processes;
mod proxy;
mod stats_support;
mod tickets_list_support;
mod tickets_support;
mod users_support;

mod apikeys_auth;
mod apikeys_issue;
mod apikeys_refusals;
mod apikeys_secrets;
mod auth;
mod balancer;
mod cli;
mod client;
mod exports;
mod exports_s3;
mod grpcurl_walkthrough;
mod h2_abuse;
mod health;
mod jwt_keys;
mod lifecycle;
mod mail;
mod permissions;
mod pgbouncer;
mod protocol;
mod rate_limit;
mod rate_limit_batch;
mod redis;
mod replicas;
mod rls;
mod round_trips;
mod stats_figures;
mod stats_rollups;
mod stats_validation_and_isolation;
mod telemetry;
mod tenancy;
mod tickets_create;
mod tickets_delete_and_idempotency;
mod tickets_list_filters;
mod tickets_list_page_tokens;
mod tickets_list_pagination;
mod tickets_roles_and_request_ids;
mod tickets_update;
mod users_bola;
mod users_crud;
mod users_deactivation;
mod users_list;
mod users_self_service;
