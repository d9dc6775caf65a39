//! Client errors: the server's stable code mapped to a coarse kind an application can act on.

use nadi_proto::ErrorCode;
use nadi_proto::errors::from_status;

/// What the application should do about an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The scope, stream or segment does not exist: create it or fix the name.
    NotFound,
    /// It exists already: use it, or pick another name.
    AlreadyExists,
    /// The stream or segment is sealed: no more writes.
    Sealed,
    /// A precondition failed (expected offset, state): re-read and decide.
    Conflict,
    /// The request is malformed (names, sizes, arguments): fix it; retrying will not help.
    Invalid,
    /// The service cannot be reached or is overloaded: retry later.
    Unavailable,
    /// A bug or damaged data: report it.
    Internal,
}

/// An error of a client operation.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct ClientError {
    pub kind: ErrorKind,
    /// The server's stable code, if the error came from a Nadi server.
    pub code: Option<ErrorCode>,
    pub message: String,
}

impl ClientError {
    pub(crate) fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Self { kind, code: None, message: message.into() }
    }

    /// True if retrying the operation later may succeed.
    pub fn is_retryable(&self) -> bool {
        self.kind == ErrorKind::Unavailable
    }
}

fn kind_of(code: ErrorCode) -> ErrorKind {
    match code {
        ErrorCode::ScopeNotFound
        | ErrorCode::StreamNotFound
        | ErrorCode::SegmentNotFound
        | ErrorCode::TxnNotFound
        | ErrorCode::ReaderGroupNotFound
        | ErrorCode::ReaderNotFound
        | ErrorCode::CheckpointNotFound => ErrorKind::NotFound,
        ErrorCode::ScopeExists
        | ErrorCode::StreamExists
        | ErrorCode::ReaderGroupExists
        | ErrorCode::CheckpointExists => ErrorKind::AlreadyExists,
        ErrorCode::Sealed => ErrorKind::Sealed,
        ErrorCode::StreamNotSealed
        | ErrorCode::ScopeNotEmpty
        | ErrorCode::ScaleInProgress
        | ErrorCode::CheckpointInProgress
        | ErrorCode::OffsetMismatch
        | ErrorCode::AttributeMismatch
        | ErrorCode::SegmentNotSealed
        | ErrorCode::EventNumberGap
        | ErrorCode::Truncated
        | ErrorCode::BadOffset
        | ErrorCode::TxnAborted
        | ErrorCode::TxnNotOpen => ErrorKind::Conflict,
        ErrorCode::InvalidName | ErrorCode::InvalidArgument | ErrorCode::EventTooLarge => ErrorKind::Invalid,
        ErrorCode::StorageFull | ErrorCode::Unavailable => ErrorKind::Unavailable,
        _ => ErrorKind::Internal,
    }
}

impl From<tonic::Status> for ClientError {
    fn from(s: tonic::Status) -> Self {
        let (code, _) = from_status(&s);
        let message = if s.message().is_empty() { format!("{:?}", s.code()) } else { s.message().to_owned() };
        ClientError { kind: kind_of(code), code: Some(code), message }
    }
}

impl From<tonic::transport::Error> for ClientError {
    fn from(e: tonic::transport::Error) -> Self {
        ClientError::new(ErrorKind::Unavailable, format!("connection failed: {e}"))
    }
}
