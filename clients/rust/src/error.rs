//! [`DeskdError`]: a failed call with deskd's rich error details decoded
//! (`google.rpc.ErrorInfo`, `BadRequest`, `RetryInfo`, `RequestInfo`).

use std::{collections::HashMap, fmt, time::Duration};

use tonic::{Code, Status};
use tonic_types::StatusExt as _;

/// One invalid field of a request (`google.rpc.BadRequest.FieldViolation`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldViolation {
    /// The field's path in the request, e.g. `ticket.title`.
    pub field: String,
    /// Why it is invalid, for developers.
    pub description: String,
    /// A SCREAMING_SNAKE_CASE identifier of the problem, e.g. `REQUIRED`.
    pub reason: String,
}

/// A failed call: the gRPC status and the details deskd attached to it.
///
/// Errors that never reached the server have codes too: a connection that
/// cannot be made is `UNAVAILABLE`, an invalid endpoint or credential
/// `INVALID_ARGUMENT`, and a call that outlived its deadline
/// `DEADLINE_EXCEEDED`.
#[derive(Debug, thiserror::Error)]
#[error("{}", Summary(self))]
pub struct DeskdError {
    // Boxed: errors travel in every `Result` and should be small.
    inner: Box<Inner>,
    #[source]
    source: Option<Box<dyn std::error::Error + Send + Sync + 'static>>,
}

#[derive(Debug)]
struct Inner {
    status: Status,
    reason: Option<String>,
    domain: Option<String>,
    metadata: HashMap<String, String>,
    field_violations: Vec<FieldViolation>,
    retry_delay: Option<Duration>,
    request_id: Option<String>,
    attempts: u32,
}

impl DeskdError {
    /// Decodes `status` and its `grpc-status-details-bin` details.
    pub fn from_status(status: Status) -> DeskdError {
        let details = status.get_error_details();
        let (reason, domain, metadata) = match details.error_info() {
            Some(info) => (
                Some(info.reason.clone()),
                Some(info.domain.clone()),
                info.metadata.clone(),
            ),
            None => (None, None, HashMap::new()),
        };
        let field_violations = details
            .bad_request()
            .map(|br| {
                br.field_violations
                    .iter()
                    .map(|v| FieldViolation {
                        field: v.field.clone(),
                        description: v.description.clone(),
                        reason: v.reason.clone(),
                    })
                    .collect()
            })
            .unwrap_or_default();
        let retry_delay = details.retry_info().and_then(|r| r.retry_delay);
        let request_id = details
            .request_info()
            .map(|r| r.request_id.clone())
            .filter(|id| !id.is_empty());
        DeskdError {
            inner: Box::new(Inner {
                status,
                reason,
                domain,
                metadata,
                field_violations,
                retry_delay,
                request_id,
                attempts: 1,
            }),
            source: None,
        }
    }

    /// An error made on the client's side, with its cause.
    pub(crate) fn local(
        code: Code,
        message: impl Into<String>,
        source: impl Into<Box<dyn std::error::Error + Send + Sync + 'static>>,
    ) -> DeskdError {
        DeskdError {
            source: Some(source.into()),
            ..DeskdError::from_status(Status::new(code, message))
        }
    }

    pub(crate) fn with_attempts(mut self, attempts: u32) -> DeskdError {
        self.inner.attempts = attempts;
        self
    }

    /// The gRPC status code.
    pub fn code(&self) -> Code {
        self.inner.status.code()
    }

    /// The developer-facing message.
    pub fn message(&self) -> &str {
        self.inner.status.message()
    }

    /// `ErrorInfo.reason`: what went wrong, as a stable SCREAMING_SNAKE_CASE
    /// identifier (e.g. `TENANT_MISMATCH`); `None` without ErrorInfo.
    pub fn reason(&self) -> Option<&str> {
        self.inner.reason.as_deref()
    }

    /// `ErrorInfo.domain`: who defines the reason (deskd's domain); `None`
    /// without ErrorInfo.
    pub fn domain(&self) -> Option<&str> {
        self.inner.domain.as_deref()
    }

    /// `ErrorInfo.metadata`: the reason's structured context (empty without
    /// ErrorInfo).
    pub fn metadata(&self) -> &HashMap<String, String> {
        &self.inner.metadata
    }

    /// `BadRequest.field_violations`: the invalid fields of the request.
    pub fn field_violations(&self) -> &[FieldViolation] {
        &self.inner.field_violations
    }

    /// The violation of `field`, if the request had one.
    pub fn field_violation(&self, field: &str) -> Option<&FieldViolation> {
        self.inner.field_violations.iter().find(|v| v.field == field)
    }

    /// `RetryInfo.retry_delay`: how long the server asks the client to wait
    /// before trying again (rate limits).
    pub fn retry_delay(&self) -> Option<Duration> {
        self.inner.retry_delay
    }

    /// `RequestInfo.request_id`: the server's id of the failed request, for
    /// its logs and traces.
    pub fn request_id(&self) -> Option<&str> {
        self.inner.request_id.as_deref()
    }

    /// How many attempts the call made before giving up (1 without retries).
    pub fn attempts(&self) -> u32 {
        self.inner.attempts
    }

    /// The underlying status, with its raw metadata and details.
    pub fn status(&self) -> &Status {
        &self.inner.status
    }
}

impl From<Status> for DeskdError {
    fn from(status: Status) -> DeskdError {
        DeskdError::from_status(status)
    }
}

/// `NOT_FOUND (REASON): message`.
struct Summary<'a>(&'a DeskdError);

impl fmt::Display for Summary<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let e = self.0;
        f.write_str(code_name(e.code()))?;
        if let Some(reason) = e.reason().filter(|r| !r.is_empty()) {
            write!(f, " ({reason})")?;
        }
        write!(f, ": {}", e.message())
    }
}

/// The canonical name of a code, as in the gRPC specification.
pub fn code_name(code: Code) -> &'static str {
    match code {
        Code::Ok => "OK",
        Code::Cancelled => "CANCELLED",
        Code::Unknown => "UNKNOWN",
        Code::InvalidArgument => "INVALID_ARGUMENT",
        Code::DeadlineExceeded => "DEADLINE_EXCEEDED",
        Code::NotFound => "NOT_FOUND",
        Code::AlreadyExists => "ALREADY_EXISTS",
        Code::PermissionDenied => "PERMISSION_DENIED",
        Code::ResourceExhausted => "RESOURCE_EXHAUSTED",
        Code::FailedPrecondition => "FAILED_PRECONDITION",
        Code::Aborted => "ABORTED",
        Code::OutOfRange => "OUT_OF_RANGE",
        Code::Unimplemented => "UNIMPLEMENTED",
        Code::Internal => "INTERNAL",
        Code::Unavailable => "UNAVAILABLE",
        Code::DataLoss => "DATA_LOSS",
        Code::Unauthenticated => "UNAUTHENTICATED",
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use tonic_types::{ErrorDetails, StatusExt as _};

    use super::*;

    #[test]
    fn decodes_rich_details() {
        let mut details = ErrorDetails::with_error_info(
            "TENANT_MISMATCH",
            "deskd.dev",
            HashMap::from([("tenant".to_string(), "t1".to_string())]),
        );
        details.add_bad_request_violation("ticket.title", "required");
        details.set_retry_info(Some(Duration::from_secs(3)));
        details.set_request_info("req-1", "");
        let status = Status::with_error_details(Code::InvalidArgument, "bad", details);
        let e = DeskdError::from(status);
        assert_eq!(e.code(), Code::InvalidArgument);
        assert_eq!(e.message(), "bad");
        assert_eq!(e.reason(), Some("TENANT_MISMATCH"));
        assert_eq!(e.domain(), Some("deskd.dev"));
        assert_eq!(e.metadata().get("tenant").map(String::as_str), Some("t1"));
        assert_eq!(e.field_violations().len(), 1);
        assert_eq!(
            e.field_violation("ticket.title").map(|v| v.description.as_str()),
            Some("required")
        );
        assert_eq!(e.retry_delay(), Some(Duration::from_secs(3)));
        assert_eq!(e.request_id(), Some("req-1"));
        assert_eq!(e.attempts(), 1);
        assert_eq!(e.to_string(), "INVALID_ARGUMENT (TENANT_MISMATCH): bad");
    }

    #[test]
    fn plain_status_has_no_details() {
        let e = DeskdError::from(Status::unavailable("down"));
        assert_eq!(e.code(), Code::Unavailable);
        assert_eq!(e.reason(), None);
        assert!(e.metadata().is_empty());
        assert!(e.field_violations().is_empty());
        assert_eq!(e.retry_delay(), None);
        assert_eq!(e.request_id(), None);
        assert_eq!(e.to_string(), "UNAVAILABLE: down");
    }
}
