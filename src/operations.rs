//! Long-running operations (Google AIP-151): work an RPC starts and a job
//! finishes, such as ticket exports. An operation row is inserted with its
//! job in one tenant transaction; the job records progress and the outcome;
//! `OperationsService` reads and cancels operations.

pub mod grpc;
pub mod model;
pub mod service;
pub mod store;
