//! The segment store's error type and its one mapping to gRPC statuses.
//!
//! Owns: `StoreError` and its mapping to gRPC status codes (a leaf). Calls: nothing of this crate.
//! Called by: every room above it.

use std::collections::HashMap;

use nadi_proto::ErrorCode;
use nadi_proto::errors::to_status;

/// Errors of segment store operations. Each maps to a stable [`ErrorCode`].
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    #[error("segment {0} does not exist")]
    SegmentNotFound(String),
    /// The segment an operation was checked against was deleted, and the name created again,
    /// before the operation reached the writer; the new segment was left alone.
    #[error("segment {0} was deleted and created again while the request was being checked; nothing was changed")]
    SegmentReplaced(String),
    #[error("segment {0} is sealed: no more appends are accepted")]
    Sealed(String),
    #[error("event of {len} bytes exceeds the maximum event size of {max} bytes")]
    EventTooLarge { len: usize, max: usize },
    #[error("invalid request: {0}")]
    InvalidArgument(String),
    #[error("offset {offset} of segment {segment} is before its start offset {start}: the data was truncated")]
    Truncated { segment: String, offset: u64, start: u64 },
    #[error("offset {offset} of segment {segment} is not an event boundary within its length {length}")]
    BadOffset { segment: String, offset: u64, length: u64 },
    #[error(
        "time {time_ms} ms is ahead of the store's clock ({now_ms} ms): no event can have been appended at or after it"
    )]
    TimeInFuture { time_ms: u64, now_ms: u64 },
    #[error(
        "writer {writer} on segment {segment}: next event number must be {expected}, not {got}; an earlier batch was not stored, re-send it"
    )]
    EventNumberGap { segment: String, writer: String, expected: i64, got: i64 },
    #[error("segment {segment} has length {actual}, not the expected {expected}")]
    OffsetMismatch { segment: String, expected: u64, actual: u64 },
    #[error("attribute {key} of segment {segment} is {actual:?}, not the expected {expected:?}")]
    AttributeMismatch { segment: String, key: String, expected: Option<u64>, actual: Option<u64> },
    #[error("segment {0} must be sealed first")]
    NotSealed(String),
    #[error("container {container} cannot serve this: {detail}")]
    Corrupt { container: u32, detail: String },
    #[error("Tier-1 storage is full: {0}")]
    StorageFull(String),
    /// Tier-2 cannot be reached (or refused) while reading data that moved there. Retry.
    #[error("Tier-2 is unavailable: {0}")]
    Unavailable(String),
    #[error("the segment store is shutting down")]
    ShuttingDown,
    /// This replica of a replicated container does not lead its group (any more). A request in
    /// flight when leadership was lost may or may not have been stored: retry (writers with
    /// their writer id, so it is stored once).
    #[error("this segment store does not lead container {container}{}", leader.as_ref().map(|l| format!(" (its leader is at {l})")).unwrap_or_default())]
    NotLeader { container: u32, leader: Option<String> },
    #[error("{0}")]
    Unauthenticated(String),
    #[error("{0}")]
    PermissionDenied(String),
    #[error("internal error: {0}")]
    Internal(String),
}

impl StoreError {
    /// The stable code of this error.
    pub fn code(&self) -> ErrorCode {
        match self {
            StoreError::SegmentNotFound(_) | StoreError::SegmentReplaced(_) => ErrorCode::SegmentNotFound,
            StoreError::Sealed(_) => ErrorCode::Sealed,
            StoreError::EventTooLarge { .. } => ErrorCode::EventTooLarge,
            StoreError::InvalidArgument(_) => ErrorCode::InvalidArgument,
            StoreError::Truncated { .. } => ErrorCode::Truncated,
            StoreError::BadOffset { .. } => ErrorCode::BadOffset,
            StoreError::TimeInFuture { .. } => ErrorCode::TimeInFuture,
            StoreError::EventNumberGap { .. } => ErrorCode::EventNumberGap,
            StoreError::OffsetMismatch { .. } => ErrorCode::OffsetMismatch,
            StoreError::AttributeMismatch { .. } => ErrorCode::AttributeMismatch,
            StoreError::NotSealed(_) => ErrorCode::SegmentNotSealed,
            StoreError::Corrupt { .. } => ErrorCode::Corrupt,
            StoreError::StorageFull(_) => ErrorCode::StorageFull,
            StoreError::ShuttingDown | StoreError::Unavailable(_) => ErrorCode::Unavailable,
            StoreError::NotLeader { .. } => ErrorCode::NotLeader,
            StoreError::Unauthenticated(_) => ErrorCode::Unauthenticated,
            StoreError::PermissionDenied(_) => ErrorCode::PermissionDenied,
            StoreError::Internal(_) => ErrorCode::Internal,
        }
    }

    /// True if retrying later may succeed.
    pub fn is_retryable(&self) -> bool {
        self.code().is_retryable()
    }
}

impl From<StoreError> for tonic::Status {
    fn from(e: StoreError) -> Self {
        let mut meta = HashMap::new();
        match &e {
            StoreError::Truncated { start, .. } => {
                meta.insert("start_offset".to_owned(), start.to_string());
            }
            StoreError::BadOffset { length, .. } => {
                meta.insert("length".to_owned(), length.to_string());
            }
            StoreError::TimeInFuture { now_ms, .. } => {
                meta.insert("now_ms".to_owned(), now_ms.to_string());
            }
            StoreError::OffsetMismatch { actual, .. } => {
                meta.insert("actual_length".to_owned(), actual.to_string());
            }
            StoreError::AttributeMismatch { actual, .. } => {
                meta.insert("actual_value".to_owned(), actual.map(|v| v.to_string()).unwrap_or_default());
            }
            StoreError::EventNumberGap { expected, .. } => {
                meta.insert("expected_event_number".to_owned(), expected.to_string());
            }
            StoreError::NotLeader { leader: Some(leader), .. } => {
                meta.insert("leader".to_owned(), leader.clone());
            }
            _ => {}
        }
        to_status(e.code(), e.to_string(), meta)
    }
}
