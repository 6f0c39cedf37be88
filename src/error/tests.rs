use super::*;

fn sample(code: Code) -> AppError {
    match code {
        Code::InvalidArgument => AppError::invalid("ticket.title", "REQUIRED", "title is required"),
        Code::NotFound => AppError::NotFound {
            resource_type: "t",
            name: "x".into(),
        },
        Code::AlreadyExists => AppError::AlreadyExists {
            resource_type: "t",
            name: "x".into(),
        },
        Code::FailedPrecondition => AppError::FailedPrecondition {
            reason: "STATE",
            subject: "s".into(),
            description: "d".into(),
        },
        Code::Aborted => AppError::EtagMismatch {
            resource_type: "t",
            name: "x".into(),
        },
        Code::Unauthenticated => AppError::Unauthenticated {
            reason: "TOKEN_MISSING",
            description: "d",
        },
        Code::PermissionDenied => AppError::PermissionDenied {
            reason: "TENANT_SUSPENDED",
            description: "d".into(),
            metadata: vec![],
        },
        Code::ResourceExhausted => AppError::RateLimited {
            subject: "tenant:x".into(),
            retry_after: Duration::from_millis(1500),
            description: "d".into(),
        },
        Code::Unavailable => AppError::Unavailable {
            dependency: "postgres",
            source: anyhow::anyhow!("connection refused to 10.0.0.1: password=secret"),
        },
        Code::DeadlineExceeded => AppError::DeadlineExceeded,
        _ => AppError::internal(anyhow::anyhow!("SELECT * FROM secret_table failed at /src/x.rs")),
    }
}

/// The mapping table of docs/errors.md, restated.
#[test]
fn mapping_table() {
    let table: &[(AppError, Code, &str)] = &[
        (sample(Code::InvalidArgument), Code::InvalidArgument, "INVALID_ARGUMENT"),
        (sample(Code::NotFound), Code::NotFound, "NOT_FOUND"),
        (sample(Code::AlreadyExists), Code::AlreadyExists, "ALREADY_EXISTS"),
        (sample(Code::FailedPrecondition), Code::FailedPrecondition, "STATE"),
        (sample(Code::Aborted), Code::Aborted, "ETAG_MISMATCH"),
        (sample(Code::Unauthenticated), Code::Unauthenticated, "TOKEN_MISSING"),
        (
            sample(Code::PermissionDenied),
            Code::PermissionDenied,
            "TENANT_SUSPENDED",
        ),
        (sample(Code::ResourceExhausted), Code::ResourceExhausted, "RATE_LIMITED"),
        (AppError::Overloaded, Code::ResourceExhausted, "OVERLOADED"),
        (
            AppError::TenantOverloaded { limit: 64 },
            Code::ResourceExhausted,
            "TENANT_OVERLOADED",
        ),
        (sample(Code::Unavailable), Code::Unavailable, "DEPENDENCY_UNAVAILABLE"),
        (
            sample(Code::DeadlineExceeded),
            Code::DeadlineExceeded,
            "DEADLINE_EXCEEDED",
        ),
        (sample(Code::Internal), Code::Internal, "INTERNAL"),
    ];
    for (err, code, reason) in table {
        assert_eq!(err.code(), *code, "{err:?}");
        assert_eq!(err.reason(), *reason, "{err:?}");
    }
}

#[test]
fn every_status_carries_error_info_and_request_id() {
    for code in [
        Code::InvalidArgument,
        Code::NotFound,
        Code::Aborted,
        Code::ResourceExhausted,
        Code::Unavailable,
        Code::Internal,
    ] {
        let status = sample(code).into_status("req-1");
        assert_eq!(status.code(), code);
        let d = status.get_error_details();
        let info = d.error_info().expect("error info");
        assert_eq!(info.domain, DOMAIN);
        assert_eq!(d.request_info().expect("request info").request_id, "req-1");
    }
}

#[test]
fn internal_causes_never_reach_the_client() {
    for code in [Code::Internal, Code::Unavailable] {
        let status = sample(code).into_status("req-2");
        let text = format!("{} {:?}", status.message(), status.details());
        for secret in ["secret", "SELECT", "/src/", "10.0.0.1", "password"] {
            assert!(!text.contains(secret), "{code:?} leaked {secret}: {text}");
        }
    }
}

#[test]
fn bad_request_carries_field_path_and_reason() {
    let status = sample(Code::InvalidArgument).into_status("r");
    let d = status.get_error_details();
    let v = &d.bad_request().expect("bad request").field_violations[0];
    assert_eq!(v.field, "ticket.title");
    assert_eq!(v.reason, "REQUIRED");
}

#[test]
fn rate_limited_carries_retry_info_quota_and_retry_after() {
    let status = sample(Code::ResourceExhausted).into_status("r");
    let d = status.get_error_details();
    assert_eq!(
        d.retry_info().and_then(|r| r.retry_delay),
        Some(Duration::from_millis(1500))
    );
    assert_eq!(d.quota_failure().expect("quota").violations[0].subject, "tenant:x");
    assert_eq!(
        status.metadata().get("retry-after").and_then(|v| v.to_str().ok()),
        Some("2")
    );
}
