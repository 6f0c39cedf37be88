//! The error model: one `AppError` for everything a request can fail with,
//! mapped to a `tonic::Status` with rich details by one exhaustive `match`.
//!
//! Internal causes never reach the client: `Internal` and `Unavailable`
//! answer a fixed message plus the request id, and the cause chain is logged.

use std::{collections::HashMap, time::Duration};

use tonic::Code;
use tonic_types::{ErrorDetails, FieldViolation as PbFieldViolation, StatusExt};

/// The `ErrorInfo.domain` of every deskd error.
pub const DOMAIN: &str = "deskd";

/// One invalid field of a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldViolation {
    /// The field's path in the request message, e.g. `ticket.title`.
    pub field: String,
    /// An UPPER_SNAKE reason, e.g. `REQUIRED`, `TOO_LONG`.
    pub reason: &'static str,
    /// A sentence for people.
    pub description: String,
}

impl FieldViolation {
    /// A violation of `field` for `reason`.
    pub fn new(field: impl Into<String>, reason: &'static str, description: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            reason,
            description: description.into(),
        }
    }
}

/// Everything a request can fail with.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    /// One or more request fields are invalid.
    #[error("invalid argument: {}", describe_violations(.0))]
    InvalidArgument(Vec<FieldViolation>),
    /// The named resource does not exist (or belongs to another tenant).
    #[error("{resource_type} not found")]
    NotFound {
        /// e.g. `deskd.tickets.v1.Ticket`.
        resource_type: &'static str,
        /// The id the caller sent.
        name: String,
    },
    /// The resource to create exists already.
    #[error("{resource_type} already exists")]
    AlreadyExists {
        /// e.g. `deskd.users.v1.User`.
        resource_type: &'static str,
        /// The conflicting key.
        name: String,
    },
    /// The system is not in the state the operation needs.
    #[error("failed precondition: {description}")]
    FailedPrecondition {
        /// UPPER_SNAKE reason.
        reason: &'static str,
        /// The thing whose state is wrong.
        subject: String,
        /// A sentence for people.
        description: String,
    },
    /// The etag did not match: the resource changed since it was read.
    #[error("etag mismatch on {resource_type} {name}")]
    EtagMismatch {
        /// e.g. `deskd.tickets.v1.Ticket`.
        resource_type: &'static str,
        /// The resource id.
        name: String,
    },
    /// No credential, or one that is not valid.
    #[error("unauthenticated: {reason}")]
    Unauthenticated {
        /// UPPER_SNAKE reason, e.g. `TOKEN_EXPIRED`.
        reason: &'static str,
        /// A sentence for people.
        description: &'static str,
    },
    /// A valid credential that may not do this.
    #[error("permission denied: {reason}")]
    PermissionDenied {
        /// UPPER_SNAKE reason, e.g. `TENANT_SUSPENDED`.
        reason: &'static str,
        /// A sentence for people.
        description: String,
        /// ErrorInfo metadata, e.g. the missing permission.
        metadata: Vec<(&'static str, String)>,
    },
    /// A rate limit was exceeded.
    #[error("rate limited ({subject})")]
    RateLimited {
        /// Which limit: `tenant:<id>` or `principal:<id>`.
        subject: String,
        /// When a retry can succeed.
        retry_after: Duration,
        /// e.g. `1000 requests per 1s, burst 2000`.
        description: String,
    },
    /// Too many requests in flight on this replica: shed before any work.
    #[error("server overloaded")]
    Overloaded,
    /// Too many of the caller's tenant's requests in flight on this replica
    /// (`server.max_in_flight_per_tenant`).
    #[error("tenant overloaded")]
    TenantOverloaded {
        /// The cap.
        limit: usize,
    },
    /// A dependency (PostgreSQL, ...) is unreachable; retrying can succeed.
    #[error("{dependency} unavailable")]
    Unavailable {
        /// `postgres`, ...
        dependency: &'static str,
        /// The cause, logged only.
        #[source]
        source: anyhow::Error,
    },
    /// The client's deadline (or the server's maximum) passed.
    #[error("deadline exceeded")]
    DeadlineExceeded,
    /// A bug or an unexpected failure; the cause is logged only.
    #[error("internal error")]
    Internal(#[source] anyhow::Error),
}

fn describe_violations(v: &[FieldViolation]) -> String {
    v.iter()
        .map(|f| format!("{}: {}", f.field, f.reason))
        .collect::<Vec<_>>()
        .join(", ")
}

impl AppError {
    /// A single-field INVALID_ARGUMENT.
    pub fn invalid(field: impl Into<String>, reason: &'static str, description: impl Into<String>) -> Self {
        Self::InvalidArgument(vec![FieldViolation::new(field, reason, description)])
    }

    /// An unexpected failure.
    pub fn internal(err: impl Into<anyhow::Error>) -> Self {
        Self::Internal(err.into())
    }

    /// The gRPC code this error answers with.
    pub fn code(&self) -> Code {
        self.parts().0
    }

    /// The ErrorInfo reason this error answers with.
    pub fn reason(&self) -> &'static str {
        self.parts().1
    }

    /// (code, ErrorInfo reason, client-visible message) — the mapping table,
    /// restated by a unit test and by `docs/errors.md`.
    fn parts(&self) -> (Code, &'static str, String) {
        match self {
            AppError::InvalidArgument(v) => (
                Code::InvalidArgument,
                "INVALID_ARGUMENT",
                format!("invalid request: {}", describe_violations(v)),
            ),
            AppError::NotFound { resource_type, .. } => {
                (Code::NotFound, "NOT_FOUND", format!("{resource_type} not found"))
            }
            AppError::AlreadyExists { resource_type, .. } => (
                Code::AlreadyExists,
                "ALREADY_EXISTS",
                format!("{resource_type} already exists"),
            ),
            AppError::FailedPrecondition {
                reason, description, ..
            } => (Code::FailedPrecondition, reason, description.clone()),
            AppError::EtagMismatch { resource_type, .. } => (
                Code::Aborted,
                "ETAG_MISMATCH",
                format!("{resource_type} was changed since it was read; read it again"),
            ),
            AppError::Unauthenticated { reason, description } => {
                (Code::Unauthenticated, reason, (*description).to_string())
            }
            AppError::PermissionDenied {
                reason, description, ..
            } => (Code::PermissionDenied, reason, description.clone()),
            AppError::RateLimited { .. } => (
                Code::ResourceExhausted,
                "RATE_LIMITED",
                "rate limit exceeded; retry after the delay in RetryInfo".to_string(),
            ),
            AppError::Overloaded => (
                Code::ResourceExhausted,
                "OVERLOADED",
                "server overloaded; retry with backoff".to_string(),
            ),
            AppError::TenantOverloaded { .. } => (
                Code::ResourceExhausted,
                "TENANT_OVERLOADED",
                "too many of this tenant's requests in flight; retry with backoff".to_string(),
            ),
            AppError::Unavailable { dependency, .. } => (
                Code::Unavailable,
                "DEPENDENCY_UNAVAILABLE",
                format!("service temporarily unavailable ({dependency}); retry with backoff"),
            ),
            AppError::DeadlineExceeded => (
                Code::DeadlineExceeded,
                "DEADLINE_EXCEEDED",
                "deadline exceeded".to_string(),
            ),
            AppError::Internal(_) => (Code::Internal, "INTERNAL", "internal error".to_string()),
        }
    }

    /// Converts to the status sent to the client, logging server-side causes.
    pub fn into_status(self, request_id: &str) -> tonic::Status {
        let (code, reason, message) = self.parts();
        let mut details = ErrorDetails::new();
        let mut info_meta: HashMap<String, String> = HashMap::new();
        match &self {
            AppError::InvalidArgument(violations) => {
                let pb: Vec<PbFieldViolation> = violations
                    .iter()
                    .map(|v| {
                        let mut f = PbFieldViolation::new(v.field.clone(), v.description.clone());
                        f.reason = v.reason.to_string();
                        f
                    })
                    .collect();
                details.set_bad_request(pb);
            }
            AppError::NotFound { resource_type, name } => {
                details.set_resource_info(*resource_type, name.clone(), "", "not found");
                info_meta.insert("resource_type".into(), (*resource_type).into());
            }
            AppError::AlreadyExists { resource_type, name } => {
                details.set_resource_info(*resource_type, name.clone(), "", "already exists");
                info_meta.insert("resource_type".into(), (*resource_type).into());
            }
            AppError::FailedPrecondition {
                reason,
                subject,
                description,
            } => {
                details.add_precondition_failure_violation(*reason, subject.clone(), description.clone());
            }
            AppError::EtagMismatch { resource_type, name } => {
                details.add_precondition_failure_violation(
                    "ETAG_MISMATCH",
                    format!("{resource_type}/{name}"),
                    "the etag sent is not the resource's current etag",
                );
                details.set_resource_info(*resource_type, name.clone(), "", "changed since read");
            }
            AppError::Unauthenticated { .. } => {}
            AppError::PermissionDenied { metadata, .. } => {
                for (k, v) in metadata {
                    info_meta.insert((*k).to_string(), v.clone());
                }
            }
            AppError::RateLimited {
                subject,
                retry_after,
                description,
            } => {
                details.set_retry_info(Some(*retry_after));
                details.add_quota_failure_violation(subject.clone(), description.clone());
                info_meta.insert("retry_after_ms".into(), retry_after.as_millis().to_string());
            }
            AppError::Overloaded => {
                details.set_retry_info(Some(Duration::from_millis(100)));
            }
            AppError::TenantOverloaded { limit } => {
                details.set_retry_info(Some(Duration::from_millis(100)));
                details.add_quota_failure_violation(
                    "tenant",
                    format!("at most {limit} requests of one tenant in flight on a replica"),
                );
                info_meta.insert("limit".into(), limit.to_string());
            }
            AppError::Unavailable { dependency, source } => {
                tracing::warn!(
                    request_id,
                    dependency,
                    error = format!("{source:#}"),
                    "dependency unavailable"
                );
                details.set_retry_info(Some(Duration::from_millis(200)));
                info_meta.insert("dependency".into(), (*dependency).into());
            }
            AppError::DeadlineExceeded => {}
            AppError::Internal(source) => {
                tracing::error!(request_id, error = format!("{source:#}"), "internal error");
            }
        }
        details.set_error_info(reason, DOMAIN, info_meta);
        details.set_request_info(request_id, "");
        let mut status = tonic::Status::with_error_details(code, message, details);
        if let AppError::RateLimited { retry_after, .. } = &self {
            let secs = retry_after.as_secs() + u64::from(retry_after.subsec_nanos() > 0);
            if let Ok(v) = secs.to_string().parse() {
                status.metadata_mut().insert("retry-after", v);
            }
        }
        status
    }
}

/// PostgreSQL SQLSTATEs that mean "the server is going away or not there".
fn is_unavailable_sqlstate(code: &str) -> bool {
    code.starts_with("08") // connection exceptions
        || code == "57P01" // admin_shutdown
        || code == "57P02" // crash_shutdown
        || code == "57P03" // cannot_connect_now
        || code == "53300" // too_many_connections
}

impl From<sqlx::Error> for AppError {
    fn from(err: sqlx::Error) -> Self {
        match &err {
            sqlx::Error::PoolTimedOut
            | sqlx::Error::PoolClosed
            | sqlx::Error::Io(_)
            | sqlx::Error::Tls(_)
            | sqlx::Error::WorkerCrashed => AppError::Unavailable {
                dependency: "postgres",
                source: err.into(),
            },
            sqlx::Error::Database(db) => {
                let code = db.code().map(|c| c.to_string()).unwrap_or_default();
                if code == "57014" {
                    // query_canceled: our statement_timeout, derived from the deadline.
                    AppError::DeadlineExceeded
                } else if is_unavailable_sqlstate(&code) {
                    AppError::Unavailable {
                        dependency: "postgres",
                        source: err.into(),
                    }
                } else {
                    AppError::Internal(err.into())
                }
            }
            _ => AppError::Internal(err.into()),
        }
    }
}

#[cfg(test)]
mod tests;
