//! Client errors: the server's stable code mapped to a coarse kind an application can act on.

use nadi_proto::ErrorCode;
use nadi_proto::errors::from_status;

/// What the application should do about an error.
///
/// A coarse grouping of the server's stable [`ErrorCode`]s (and of local failures, such as a
/// bad URL or a lost connection). New kinds may be added, so match with a wildcard arm.
///
/// # Example
///
/// ```no_run
/// use nadi_client::{ClientError, ErrorKind, NadiClient};
///
/// async fn example() -> Result<(), ClientError> {
///     let client = NadiClient::new(&["http://127.0.0.1:9090".to_owned()])?;
///     match client.create_scope("demo").await {
///         Ok(()) => println!("created demo"),
///         Err(e) if e.kind == ErrorKind::AlreadyExists => println!("demo exists already"),
///         Err(e) => return Err(e),
///     }
///     Ok(())
/// }
/// ```
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
    /// The request is malformed (names, sizes, arguments), or a time to seek by lies ahead of
    /// the clock or before the stream (codes `TimeInFuture`, `TimeBeforeStream`): fix it;
    /// retrying will not help.
    Invalid,
    /// The service cannot be reached, is overloaded or out of storage: retry later.
    ///
    /// Also what a gRPC status without Nadi error details maps to when its code is
    /// `UNAVAILABLE`, `DEADLINE_EXCEEDED`, `CANCELLED` or `UNKNOWN`.
    Unavailable,
    /// The call carried no token, or one that is unknown, malformed or expired: give a valid
    /// token (`ClientSecurity::token`, `--token`, `NADI_TOKEN`).
    Unauthenticated,
    /// The caller's principal lacks the permission: ask an admin for a grant (`nadi acl`).
    PermissionDenied,
    /// A bug or damaged data: report it.
    Internal,
}

/// An error of a client operation.
///
/// Displays as its `message`. `kind` says what to do about it; `code` keeps the server's
/// precise reason when there is one.
///
/// # Example
///
/// ```no_run
/// use std::time::Duration;
///
/// use nadi_client::{ClientError, NadiClient};
///
/// async fn example() -> Result<(), ClientError> {
///     let client = NadiClient::new(&["http://127.0.0.1:9090".to_owned()])?;
///     loop {
///         match client.list_scopes().await {
///             Ok(scopes) => {
///                 println!("{scopes:?}");
///                 return Ok(());
///             }
///             // The client already retried for a while; an application may wait longer.
///             Err(e) if e.is_retryable() => {
///                 eprintln!("{e} ({:?}, code {:?}); retrying", e.kind, e.code);
///                 tokio::time::sleep(Duration::from_secs(5)).await;
///             }
///             Err(e) => return Err(e),
///         }
///     }
/// }
/// ```
#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct ClientError {
    /// What the application should do about it.
    pub kind: ErrorKind,
    /// The server's stable code, if the error came from a Nadi server (or from a gRPC status:
    /// see [`ErrorKind::Unavailable`]); `None` for errors raised by the client itself.
    pub code: Option<ErrorCode>,
    /// What went wrong, for humans (the server's message, or the client's, with context).
    pub message: String,
}

impl ClientError {
    pub(crate) fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Self { kind, code: None, message: message.into() }
    }

    /// True if retrying the operation later may succeed: exactly when `kind` is
    /// [`ErrorKind::Unavailable`].
    ///
    /// Controller calls have already been retried over every controller URL for up to 10 s
    /// before such an error is returned, and writers and readers retry lost connections
    /// themselves, so a retryable error that reaches the application means a longer outage.
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
        | ErrorCode::TxnNotOpen
        | ErrorCode::NoSubscriber => ErrorKind::Conflict,
        // A time to seek by that is ahead of the clock or before the stream: ask for another
        // time (or the head); the same request will not succeed by retrying it at once.
        ErrorCode::InvalidName
        | ErrorCode::InvalidArgument
        | ErrorCode::EventTooLarge
        | ErrorCode::TimeInFuture
        | ErrorCode::TimeBeforeStream => ErrorKind::Invalid,
        ErrorCode::StorageFull | ErrorCode::Unavailable | ErrorCode::NotLeader => ErrorKind::Unavailable,
        ErrorCode::Unauthenticated => ErrorKind::Unauthenticated,
        ErrorCode::PermissionDenied => ErrorKind::PermissionDenied,
        _ => ErrorKind::Internal,
    }
}

/// Maps a gRPC status to its Nadi [`ErrorCode`] (from the status details, or from the gRPC
/// code if there are none) and that code to an [`ErrorKind`].
impl From<tonic::Status> for ClientError {
    fn from(s: tonic::Status) -> Self {
        let (code, _) = from_status(&s);
        let mut message = if s.message().is_empty() { format!("{:?}", s.code()) } else { s.message().to_owned() };
        message.push_str(tls_hint(&message));
        ClientError { kind: kind_of(code), code: Some(code), message }
    }
}

/// What to check when a connection failed the way TLS mistakes make it fail: a server
/// certificate the client's CA did not sign, or a plaintext client talking to a TLS port (its
/// HTTP/2 preface is not a TLS handshake, and the server answers with bytes HTTP/2 cannot read).
fn tls_hint(message: &str) -> &'static str {
    if message.contains("invalid peer certificate") {
        " (the server's certificate is not signed by a CA this client trusts: check --tls-ca / NADI_TLS_CA)"
    } else if message.contains("h2 protocol error") {
        " (if the server serves TLS, use an https:// URL)"
    } else {
        ""
    }
}

/// A failed connection is [`ErrorKind::Unavailable`], without a code.
impl From<tonic::transport::Error> for ClientError {
    fn from(e: tonic::transport::Error) -> Self {
        ClientError::new(ErrorKind::Unavailable, format!("connection failed: {e}"))
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    #[test]
    fn seek_by_time_refusals_are_invalid_and_not_retryable() {
        for code in [ErrorCode::TimeInFuture, ErrorCode::TimeBeforeStream] {
            let e = ClientError::from(nadi_proto::errors::to_status(code, "the time", HashMap::new()));
            assert_eq!((e.kind, e.code), (ErrorKind::Invalid, Some(code)));
            assert!(!e.is_retryable());
        }
    }
}
