//! Helpers shared by every `grpc.rs`: the request context and the
//! AppError → Status boundary.

use std::sync::Arc;

use time::OffsetDateTime;
use tonic::{Request, Response, Status};

use crate::{
    error::{AppError, FieldViolation},
    middleware::{RequestId, deadline::Deadline},
    tenancy::{Ctx, Principal},
};

/// Applies the `[server]` codec settings to a generated tonic server: gzip
/// and zstd requests are always accepted; responses are compressed (when the
/// client accepts it) only with `server.compress_responses`, because
/// compressing a message of a few hundred bytes costs more CPU than it saves
/// on a data-centre network. Message size limits from the same section.
macro_rules! configure_codec {
    ($server:expr, $cfg:expr) => {{
        use tonic::codec::CompressionEncoding::{Gzip, Zstd};
        let cfg: &$crate::config::ServerConfig = $cfg;
        let server = $server
            .accept_compressed(Gzip)
            .accept_compressed(Zstd)
            .max_decoding_message_size(cfg.max_decoding_message_size)
            .max_encoding_message_size(cfg.max_encoding_message_size);
        if cfg.compress_responses {
            server.send_compressed(Gzip).send_compressed(Zstd)
        } else {
            server
        }
    }};
}
pub(crate) use configure_codec;

/// The caller context and request id the layers attached to `req`.
pub fn context<T>(req: &Request<T>) -> Result<(Ctx, Arc<str>), Status> {
    let rid = req
        .extensions()
        .get::<RequestId>()
        .map(|r| r.0.clone())
        .unwrap_or_else(|| Arc::from("-"));
    let deadline = req.extensions().get::<Deadline>().map(|d| d.0);
    match req.extensions().get::<Principal>() {
        Some(p) => Ok((
            Ctx {
                principal: p.clone(),
                deadline,
            },
            rid,
        )),
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

/// Collects violations; `finish` turns them into INVALID_ARGUMENT.
#[derive(Default)]
pub struct Violations(pub Vec<FieldViolation>);

impl Violations {
    /// Keeps the value or records the violation.
    pub fn check<T>(&mut self, r: Result<T, FieldViolation>) -> Option<T> {
        r.map_err(|v| self.0.push(v)).ok()
    }
    /// Keeps the value or records the violations.
    pub fn check_many<T>(&mut self, r: Result<T, Vec<FieldViolation>>) -> Option<T> {
        r.map_err(|v| self.0.extend(v)).ok()
    }
    /// INVALID_ARGUMENT with every violation, or Ok.
    pub fn finish(self) -> Result<(), AppError> {
        if self.0.is_empty() {
            Ok(())
        } else {
            Err(AppError::InvalidArgument(self.0))
        }
    }
}

/// Parses an id field: a UUID.
pub fn parse_uuid(field: &str, raw: &str) -> Result<uuid::Uuid, FieldViolation> {
    if raw.is_empty() {
        return Err(FieldViolation::new(field, "REQUIRED", "the id is required"));
    }
    uuid::Uuid::parse_str(raw).map_err(|_| FieldViolation::new(field, "INVALID_ID", "not a UUID"))
}

/// Parses an optional id field: empty means none.
pub fn parse_optional_uuid(field: &str, raw: &str) -> Result<Option<uuid::Uuid>, FieldViolation> {
    if raw.is_empty() {
        Ok(None)
    } else {
        parse_uuid(field, raw).map(Some)
    }
}

/// Most paths an update mask may name, repeats included: a longer mask is
/// refused with one violation instead of one per path.
pub const MASK_PATHS_MAX: usize = 32;

/// Checks an update mask is present, not a wildcard and not too long;
/// returns its paths (none when it is too long).
pub fn mask_paths(mask: Option<prost_types::FieldMask>, v: &mut Violations) -> Vec<String> {
    let paths = mask.map(|m| m.paths).unwrap_or_default();
    if paths.len() > MASK_PATHS_MAX {
        v.0.push(FieldViolation::new(
            "update_mask.paths",
            "TOO_MANY",
            format!("at most {MASK_PATHS_MAX} paths"),
        ));
        return Vec::new();
    }
    if paths.is_empty() {
        v.0.push(FieldViolation::new(
            "update_mask",
            "REQUIRED",
            "name the fields to change in update_mask; an update never changes every field implicitly",
        ));
    }
    paths
}

/// The violation for a mask path that names no updatable field.
pub fn bad_mask_path(i: usize, path: &str, output_only: &[&str]) -> FieldViolation {
    let (reason, why) = if path == "*" {
        (
            "WILDCARD_NOT_ALLOWED",
            "name each field; `*` is not accepted".to_string(),
        )
    } else if output_only.contains(&path) {
        ("FIELD_NOT_MUTABLE", format!("`{path}` is output only"))
    } else {
        ("UNKNOWN_FIELD", format!("`{path}` is not a field of the resource"))
    };
    FieldViolation::new(format!("update_mask.paths[{i}]"), reason, why)
}

/// Adds `x-cache: hit|miss` to a response of a cached RPC.
pub fn with_cache_status<T>(res: &mut Response<T>, status: crate::cache::CacheStatus) {
    res.metadata_mut()
        .insert("x-cache", tonic::metadata::MetadataValue::from_static(status.as_str()));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_long_update_mask_is_one_violation() {
        let mut v = Violations::default();
        let mask = prost_types::FieldMask {
            paths: vec!["*".to_string(); 100_000],
        };
        assert!(mask_paths(Some(mask), &mut v).is_empty());
        assert_eq!(v.0.len(), 1);
        assert_eq!(
            (v.0[0].field.as_str(), v.0[0].reason),
            ("update_mask.paths", "TOO_MANY")
        );
        let mut v = Violations::default();
        let mask = prost_types::FieldMask {
            paths: vec!["title".to_string(); MASK_PATHS_MAX],
        };
        assert_eq!(mask_paths(Some(mask), &mut v).len(), MASK_PATHS_MAX);
        assert!(v.0.is_empty());
    }
}
