//! Operation types and rules: names, states, results. Knows neither tonic
//! nor sqlx.

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::error::FieldViolation;

/// The resource type in NOT_FOUND details.
pub const RESOURCE_TYPE: &str = "deskd.operations.v1.Operation";

/// Where an operation is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// Waiting for a worker.
    Queued,
    /// A worker runs it.
    Running,
    /// Finished with a result.
    Succeeded,
    /// Finished with an error.
    Failed,
    /// Cancelled on request.
    Cancelled,
}

impl State {
    /// The stored spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            State::Queued => "queued",
            State::Running => "running",
            State::Succeeded => "succeeded",
            State::Failed => "failed",
            State::Cancelled => "cancelled",
        }
    }

    /// Parses the stored spelling.
    pub fn parse(s: &str) -> Option<Self> {
        [
            State::Queued,
            State::Running,
            State::Succeeded,
            State::Failed,
            State::Cancelled,
        ]
        .into_iter()
        .find(|st| st.as_str() == s)
    }

    /// Whether the operation is finished.
    pub fn is_done(self) -> bool {
        matches!(self, State::Succeeded | State::Failed | State::Cancelled)
    }
}

/// The result of a finished export.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExportResult {
    /// A `file://` or `s3://` URI of the file.
    pub uri: String,
    /// The path inside the export store.
    pub path: String,
    /// Tickets written.
    pub row_count: i64,
    /// File size in bytes.
    pub size_bytes: i64,
    /// `csv` or `jsonl`.
    pub format: String,
}

/// Why an operation did not succeed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OperationError {
    /// A gRPC status code.
    pub code: i32,
    /// A developer-facing message.
    pub message: String,
}

impl OperationError {
    /// The error of a cancelled operation (gRPC CANCELLED).
    pub fn cancelled() -> Self {
        Self {
            code: 1,
            message: "the operation was cancelled".to_string(),
        }
    }

    /// The error of a failed operation (gRPC INTERNAL; the cause is logged).
    pub fn internal() -> Self {
        Self {
            code: 13,
            message: "internal error".to_string(),
        }
    }
}

/// One operation.
#[derive(Debug, Clone, PartialEq)]
pub struct Operation {
    /// Its id.
    pub id: Uuid,
    /// Its kind, e.g. `tickets.export`.
    pub kind: String,
    /// Its state.
    pub state: State,
    /// Rows processed so far.
    pub rows_done: i64,
    /// The result, once succeeded.
    pub result: Option<ExportResult>,
    /// The error, once failed or cancelled.
    pub error: Option<OperationError>,
    /// Created.
    pub create_time: OffsetDateTime,
    /// Last changed.
    pub update_time: OffsetDateTime,
}

impl Operation {
    /// `operations/<uuid>`.
    pub fn name(&self) -> String {
        format!("operations/{}", self.id)
    }
}

/// Parses `operations/<uuid>` in `field`.
pub fn parse_name(field: &str, name: &str) -> Result<Uuid, FieldViolation> {
    name.strip_prefix("operations/")
        .and_then(|id| Uuid::parse_str(id).ok())
        .ok_or_else(|| FieldViolation::new(field, "INVALID_OPERATION_NAME", "must be `operations/<uuid>`"))
}

/// The page size of ListOperations: 0 means 50; larger than 100 means 100.
pub fn page_size(v: i32) -> Result<u32, FieldViolation> {
    match v {
        0 => Ok(50),
        n if n < 0 => Err(FieldViolation::new(
            "page_size",
            "INVALID_PAGE_SIZE",
            "page_size must not be negative",
        )),
        n => Ok((n as u32).min(100)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_parse_only_as_operations_slash_uuid() {
        let id = Uuid::now_v7();
        assert_eq!(parse_name("name", &format!("operations/{id}")).unwrap(), id);
        for bad in ["", "operations/", "operations/x", &id.to_string(), &format!("ops/{id}")] {
            assert!(parse_name("name", bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn states_round_trip() {
        for s in ["queued", "running", "succeeded", "failed", "cancelled"] {
            assert_eq!(State::parse(s).unwrap().as_str(), s);
        }
    }
}
