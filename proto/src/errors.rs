//! Stable error codes carried in gRPC statuses.
//!
//! Every error a Nadi server returns is a `tonic::Status` whose details hold a
//! `google.rpc.ErrorInfo` with domain [`ERROR_DOMAIN`], `reason` = [`ErrorCode::reason`] and
//! optional metadata (for example `actual_length` on a conflict). The reason strings are part of
//! the protocol: clients in every language branch on them, never on message text.

use std::collections::HashMap;

use tonic::{Code, Status};
use tonic_types::{ErrorDetails, StatusExt};

/// The `ErrorInfo.domain` of every Nadi error.
pub const ERROR_DOMAIN: &str = "nadi";

macro_rules! codes {
    ($($variant:ident => $reason:literal, $grpc:ident, $retry:literal;)*) => {
        /// A stable, documented error code.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        #[non_exhaustive]
        pub enum ErrorCode { $($variant,)* }

        impl ErrorCode {
            /// All codes, for documentation and tests.
            pub const ALL: &'static [ErrorCode] = &[$(ErrorCode::$variant,)*];

            /// The stable `ErrorInfo.reason` string.
            pub const fn reason(self) -> &'static str {
                match self { $(ErrorCode::$variant => $reason,)* }
            }

            /// The gRPC status code used with this error.
            pub const fn grpc_code(self) -> Code {
                match self { $(ErrorCode::$variant => Code::$grpc,)* }
            }

            /// True if retrying the same request later may succeed.
            pub const fn is_retryable(self) -> bool {
                match self { $(ErrorCode::$variant => $retry,)* }
            }

            /// Looks a reason string up.
            pub fn from_reason(reason: &str) -> Option<Self> {
                match reason { $($reason => Some(ErrorCode::$variant),)* _ => None }
            }
        }
    };
}

codes! {
    ScopeNotFound => "NOT_FOUND_SCOPE", NotFound, false;
    StreamNotFound => "NOT_FOUND_STREAM", NotFound, false;
    SegmentNotFound => "NOT_FOUND_SEGMENT", NotFound, false;
    ScopeExists => "ALREADY_EXISTS_SCOPE", AlreadyExists, false;
    StreamExists => "ALREADY_EXISTS_STREAM", AlreadyExists, false;
    InvalidName => "INVALID_NAME", InvalidArgument, false;
    InvalidArgument => "INVALID_ARGUMENT", InvalidArgument, false;
    EventTooLarge => "EVENT_TOO_LARGE", InvalidArgument, false;
    Sealed => "SEALED", FailedPrecondition, false;
    StreamNotSealed => "STREAM_NOT_SEALED", FailedPrecondition, false;
    ScopeNotEmpty => "SCOPE_NOT_EMPTY", FailedPrecondition, false;
    ScaleInProgress => "SCALE_IN_PROGRESS", FailedPrecondition, true;
    OffsetMismatch => "OFFSET_MISMATCH", Aborted, false;
    AttributeMismatch => "ATTRIBUTE_MISMATCH", Aborted, false;
    SegmentNotSealed => "SEGMENT_NOT_SEALED", FailedPrecondition, false;
    EventNumberGap => "EVENT_NUMBER_GAP", FailedPrecondition, false;
    Truncated => "TRUNCATED", OutOfRange, false;
    BadOffset => "BAD_OFFSET", OutOfRange, false;
    TimeInFuture => "TIME_IN_FUTURE", OutOfRange, false;
    TimeBeforeStream => "TIME_BEFORE_STREAM", OutOfRange, false;
    NoSubscriber => "NO_SUBSCRIBER", FailedPrecondition, false;
    Corrupt => "DATA_CORRUPT", DataLoss, false;
    StorageFull => "STORAGE_FULL", ResourceExhausted, true;
    TxnNotFound => "TXN_NOT_FOUND", NotFound, false;
    TxnAborted => "TXN_ABORTED", FailedPrecondition, false;
    TxnNotOpen => "TXN_NOT_OPEN", FailedPrecondition, false;
    ReaderGroupNotFound => "NOT_FOUND_READER_GROUP", NotFound, false;
    ReaderGroupExists => "ALREADY_EXISTS_READER_GROUP", AlreadyExists, false;
    ReaderNotFound => "NOT_FOUND_READER", NotFound, false;
    CheckpointNotFound => "NOT_FOUND_CHECKPOINT", NotFound, false;
    CheckpointExists => "ALREADY_EXISTS_CHECKPOINT", AlreadyExists, false;
    CheckpointInProgress => "CHECKPOINT_IN_PROGRESS", FailedPrecondition, true;
    Unauthenticated => "UNAUTHENTICATED", Unauthenticated, false;
    PermissionDenied => "PERMISSION_DENIED", PermissionDenied, false;
    Unavailable => "UNAVAILABLE", Unavailable, true;
    NotLeader => "NOT_LEADER", Unavailable, true;
    Internal => "INTERNAL", Internal, false;
}

/// Builds the status for an error, with its code and metadata in the details.
pub fn to_status(code: ErrorCode, message: impl Into<String>, metadata: HashMap<String, String>) -> Status {
    let details = ErrorDetails::with_error_info(code.reason(), ERROR_DOMAIN, metadata);
    Status::with_error_details(code.grpc_code(), message, details)
}

/// Reads the Nadi error code and metadata back out of a status. Statuses that did not come from
/// a Nadi server (transport errors, proxies) map by their gRPC code.
pub fn from_status(status: &Status) -> (ErrorCode, HashMap<String, String>) {
    if let Some(info) = status.get_details_error_info()
        && info.domain == ERROR_DOMAIN
        && let Some(code) = ErrorCode::from_reason(&info.reason)
    {
        return (code, info.metadata);
    }
    let code = match status.code() {
        Code::Unavailable | Code::DeadlineExceeded | Code::Cancelled | Code::Unknown => ErrorCode::Unavailable,
        Code::ResourceExhausted => ErrorCode::StorageFull,
        Code::InvalidArgument => ErrorCode::InvalidArgument,
        Code::Unauthenticated => ErrorCode::Unauthenticated,
        Code::PermissionDenied => ErrorCode::PermissionDenied,
        _ => ErrorCode::Internal,
    };
    (code, HashMap::new())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_round_trip() {
        for &code in ErrorCode::ALL {
            let meta = HashMap::from([("actual_length".to_owned(), "42".to_owned())]);
            let status = to_status(code, "boom", meta.clone());
            assert_eq!(status.code(), code.grpc_code());
            let (back, back_meta) = from_status(&status);
            assert_eq!(back, code);
            assert_eq!(back_meta, meta);
            assert_eq!(ErrorCode::from_reason(code.reason()), Some(code));
        }
    }

    #[test]
    fn foreign_status_maps_by_code() {
        assert_eq!(from_status(&Status::unavailable("down")).0, ErrorCode::Unavailable);
        assert_eq!(from_status(&Status::internal("x")).0, ErrorCode::Internal);
    }
}
