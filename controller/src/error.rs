//! Controller errors and their mapping to gRPC statuses.

use std::collections::HashMap;

use nadi_proto::ErrorCode;
use nadi_proto::errors::to_status;
use nadi_proto::names::NameError;

/// Errors of controller operations.
#[derive(Debug, Clone, thiserror::Error, serde::Serialize, serde::Deserialize)]
#[non_exhaustive]
pub enum MetaError {
    #[error("scope {0} does not exist")]
    ScopeNotFound(String),
    #[error("stream {0} does not exist")]
    StreamNotFound(String),
    #[error("scope {0} already exists")]
    ScopeExists(String),
    #[error("stream {0} already exists")]
    StreamExists(String),
    #[error("{0}")]
    InvalidName(String),
    #[error("invalid request: {0}")]
    InvalidArgument(String),
    #[error("scope {0} still holds streams; delete them first")]
    ScopeNotEmpty(String),
    #[error("stream {0} must be sealed before it is deleted")]
    StreamNotSealed(String),
    #[error("stream {0} is sealed")]
    StreamSealed(String),
    #[error("segment {0} does not exist")]
    SegmentNotFound(String),
    #[error("segment {0}")]
    SegmentSealed(String),
    #[error("stream {0} is being scaled; retry when that scale has completed")]
    ScaleInProgress(String),
    #[error("transaction {0} does not exist (or its record has expired)")]
    TxnNotFound(String),
    #[error("transaction {0}")]
    TxnAborted(String),
    #[error("transaction {0}")]
    TxnNotOpen(String),
    #[error("reader group {0} does not exist")]
    ReaderGroupNotFound(String),
    #[error("reader group {0} already exists")]
    ReaderGroupExists(String),
    #[error("reader {0} is not a member of its group (declared offline, or the group was reset); join again")]
    ReaderNotFound(String),
    #[error("checkpoint {0} does not exist")]
    CheckpointNotFound(String),
    #[error("checkpoint {0} already exists")]
    CheckpointExists(String),
    #[error("checkpoint {0} is in progress; retry when it has completed")]
    CheckpointInProgress(String),
    /// A time given to seek by (`GetStreamCut` at a time) lies ahead of the clock.
    #[error("{0}")]
    TimeInFuture(String),
    /// A time given to seek by lies before the stream was created.
    #[error("{0}")]
    TimeBeforeStream(String),
    /// A policy that follows subscriber reader groups set on a stream none reads.
    #[error("{0}")]
    NoSubscriber(String),
    #[error("{0}")]
    Unauthenticated(String),
    #[error("{0}")]
    PermissionDenied(String),
    #[error("unavailable: {0}")]
    Unavailable(String),
    #[error("internal error: {0}")]
    Internal(String),
}

impl From<nadi_proto::views::InvalidInput> for MetaError {
    fn from(e: nadi_proto::views::InvalidInput) -> Self {
        MetaError::InvalidArgument(e.0)
    }
}

impl From<NameError> for MetaError {
    fn from(e: NameError) -> Self {
        MetaError::InvalidName(e.to_string())
    }
}

impl MetaError {
    /// The stable code of this error.
    pub fn code(&self) -> ErrorCode {
        match self {
            MetaError::ScopeNotFound(_) => ErrorCode::ScopeNotFound,
            MetaError::StreamNotFound(_) => ErrorCode::StreamNotFound,
            MetaError::ScopeExists(_) => ErrorCode::ScopeExists,
            MetaError::StreamExists(_) => ErrorCode::StreamExists,
            MetaError::InvalidName(_) => ErrorCode::InvalidName,
            MetaError::InvalidArgument(_) => ErrorCode::InvalidArgument,
            MetaError::ScopeNotEmpty(_) => ErrorCode::ScopeNotEmpty,
            MetaError::StreamNotSealed(_) => ErrorCode::StreamNotSealed,
            MetaError::StreamSealed(_) => ErrorCode::Sealed,
            MetaError::SegmentNotFound(_) => ErrorCode::SegmentNotFound,
            MetaError::SegmentSealed(_) => ErrorCode::Sealed,
            MetaError::ScaleInProgress(_) => ErrorCode::ScaleInProgress,
            MetaError::TxnNotFound(_) => ErrorCode::TxnNotFound,
            MetaError::TxnAborted(_) => ErrorCode::TxnAborted,
            MetaError::TxnNotOpen(_) => ErrorCode::TxnNotOpen,
            MetaError::ReaderGroupNotFound(_) => ErrorCode::ReaderGroupNotFound,
            MetaError::ReaderGroupExists(_) => ErrorCode::ReaderGroupExists,
            MetaError::ReaderNotFound(_) => ErrorCode::ReaderNotFound,
            MetaError::CheckpointNotFound(_) => ErrorCode::CheckpointNotFound,
            MetaError::CheckpointExists(_) => ErrorCode::CheckpointExists,
            MetaError::CheckpointInProgress(_) => ErrorCode::CheckpointInProgress,
            MetaError::TimeInFuture(_) => ErrorCode::TimeInFuture,
            MetaError::TimeBeforeStream(_) => ErrorCode::TimeBeforeStream,
            MetaError::NoSubscriber(_) => ErrorCode::NoSubscriber,
            MetaError::Unauthenticated(_) => ErrorCode::Unauthenticated,
            MetaError::PermissionDenied(_) => ErrorCode::PermissionDenied,
            MetaError::Unavailable(_) => ErrorCode::Unavailable,
            MetaError::Internal(_) => ErrorCode::Internal,
        }
    }

    /// True if retrying later may succeed.
    pub fn is_retryable(&self) -> bool {
        self.code().is_retryable()
    }
}

impl From<MetaError> for tonic::Status {
    fn from(e: MetaError) -> Self {
        to_status(e.code(), e.to_string(), HashMap::new())
    }
}
