//! Helpers shared by every `grpc.rs`: the request context and the
//! AppError → Status boundary.

use std::{sync::Arc, time::Instant};

use time::OffsetDateTime;
use tonic::{Request, Response, Status};

use crate::{
    error::{AppError, FieldViolation},
    middleware::{RequestId, deadline::Deadline},
    tenancy::Principal,
};

/// The principal, deadline and request id the layers attached to `req`.
pub fn context<T>(req: &Request<T>) -> Result<(Principal, Option<Instant>, Arc<str>), Status> {
    let rid = req
        .extensions()
        .get::<RequestId>()
        .map(|r| r.0.clone())
        .unwrap_or_else(|| Arc::from("-"));
    let deadline = req.extensions().get::<Deadline>().map(|d| d.0);
    match req.extensions().get::<Principal>() {
        Some(p) => Ok((p.clone(), deadline, rid)),
        // Only reachable if the auth layers were not installed: fail closed.
        None => Err(AppError::Unauthenticated {
            reason: "CREDENTIAL_MISSING",
            description: "no authenticated principal",
        }
        .into_status(&rid)),
    }
}

/// Runs a handler body, converting its error at the boundary.
pub async fn run<T>(
    request_id: &str,
    body: impl std::future::Future<Output = Result<T, AppError>>,
) -> Result<Response<T>, Status> {
    body.await.map(Response::new).map_err(|e| e.into_status(request_id))
}

/// Model time → wire.
pub fn to_timestamp(t: OffsetDateTime) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: t.unix_timestamp(),
        nanos: t.nanosecond() as i32,
    }
}

/// Wire time → model, refusing out-of-range values.
pub fn from_timestamp(field: &str, t: prost_types::Timestamp) -> Result<OffsetDateTime, FieldViolation> {
    let bad = || FieldViolation::new(field, "INVALID_TIMESTAMP", "not a valid timestamp");
    if !(0..1_000_000_000).contains(&t.nanos) {
        return Err(bad());
    }
    let nanos = i128::from(t.seconds) * 1_000_000_000 + i128::from(t.nanos);
    let ts = OffsetDateTime::from_unix_timestamp_nanos(nanos).map_err(|_| bad())?;
    // PostgreSQL's timestamptz range is narrower than `time`'s.
    if ts.year() < 1 || ts.year() > 9999 {
        return Err(bad());
    }
    Ok(ts)
}
