//! Errors of the wire codec: what was wrong with bytes a peer sent ([`WireError`]), why one of
//! our own commands could not be encoded ([`EncodeError`]), and what a decoded field was missing
//! or broke ([`PayloadProblem`]).
//!
//! Invariants: decoding never panics and never allocates more than the bytes at hand justify;
//! every decoding error names the command type it came from, so the segment front end can log
//! it and decide between an `OperationUnsupported` reply (the request id is known) and closing
//! the connection (it is not, or the framing itself is broken). None of these errors is
//! retryable: the same bytes give the same answer.

use super::MAX_WIRE_COMMAND_SIZE;

/// Why bytes received from a peer are not a frame or not a command.
///
/// The front end's policy (docs/pravega-compat.md): a framing error ([`NegativeLength`],
/// [`FrameTooLarge`]) leaves the stream unparseable, so the connection is closed; an
/// [`UnknownCommand`] is answered by closing too (the payload is skipped by the framing, but
/// Pravega has no reply for a command it does not know); a [`Malformed`] known command may be
/// answered with `OperationUnsupported` when [`WireError::request_id`] is known.
///
/// [`NegativeLength`]: WireError::NegativeLength
/// [`FrameTooLarge`]: WireError::FrameTooLarge
/// [`UnknownCommand`]: WireError::UnknownCommand
/// [`Malformed`]: WireError::Malformed
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum WireError {
    /// The frame header declares a length below zero (Pravega lengths are `i32`).
    #[error("frame of type {type_code} declares a negative payload length {length}")]
    NegativeLength { type_code: i32, length: i32 },
    /// The frame header declares a payload over [`MAX_WIRE_COMMAND_SIZE`]; the client applies
    /// the same limit, so no well-behaved peer sends one.
    #[error("frame of type {type_code} declares {length} payload bytes, over the limit of {MAX_WIRE_COMMAND_SIZE}")]
    FrameTooLarge { type_code: i32, length: i32 },
    /// A whole frame arrived, but its type code is not a command this side decodes.
    #[error("unknown command type {type_code}")]
    UnknownCommand { type_code: i32 },
    /// A known command whose payload does not decode.
    #[error("malformed {command} (type {type_code}): field `{field}`: {problem}")]
    Malformed {
        type_code: i32,
        /// The command's name, for logs.
        command: &'static str,
        /// The first field that did not decode.
        field: &'static str,
        /// The request id, when it precedes the broken field (so a reply can echo it).
        request_id: Option<i64>,
        problem: PayloadProblem,
    },
}

impl WireError {
    /// Never: the same bytes fail the same way.
    pub fn is_retryable(&self) -> bool {
        false
    }

    /// The type code of the offending frame.
    pub fn type_code(&self) -> i32 {
        match self {
            WireError::NegativeLength { type_code, .. }
            | WireError::FrameTooLarge { type_code, .. }
            | WireError::UnknownCommand { type_code }
            | WireError::Malformed { type_code, .. } => *type_code,
        }
    }

    /// The request id of a malformed command, when it could be read; a reply to the failed
    /// command must echo it (the client drops a connection whose reply ids do not match).
    pub fn request_id(&self) -> Option<i64> {
        match self {
            WireError::Malformed { request_id, .. } => *request_id,
            _ => None,
        }
    }

    /// Whether the byte stream can no longer be split into frames (the connection must close).
    pub fn is_framing(&self) -> bool {
        matches!(self, WireError::NegativeLength { .. } | WireError::FrameTooLarge { .. })
    }
}

/// What is wrong with one field of a payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PayloadProblem {
    /// The payload ends before the field does.
    #[error("needs {needed} more bytes, {remaining} remain")]
    Truncated { needed: usize, remaining: usize },
    /// A `bool` byte other than 0 or 1 (bincode rejects it too).
    #[error("bool byte is {0}, not 0 or 1")]
    InvalidBool(u8),
    /// A string that is not UTF-8.
    #[error("string is not valid UTF-8")]
    InvalidUtf8,
    /// An embedded event (ConditionalAppend) whose header type is not 0.
    #[error("embedded event has type {0}, expected 0")]
    NotAnEvent(i32),
}

/// Why a command could not be encoded: a field or the whole payload is over a wire limit.
/// These are bugs or oversized inputs on our side (a reply too big to send), never the
/// peer's fault; nothing is written to the output when one is returned.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EncodeError {
    /// A string (u16 length) or byte array (u32 length) is longer than its length prefix allows.
    #[error("{command}.{field} is {len} bytes, over the wire limit of {max}")]
    FieldTooLong { command: &'static str, field: &'static str, len: usize, max: usize },
    /// The payload is over [`MAX_WIRE_COMMAND_SIZE`] (the client would refuse the frame).
    #[error("{command} encodes to {len} payload bytes, over the limit of {MAX_WIRE_COMMAND_SIZE}")]
    FrameTooLarge { command: &'static str, len: usize },
    /// An event payload over `MAX_EVENT_SIZE` cannot be framed for a Pravega reader.
    #[error("event of {len} bytes is over the maximum event size of {max}")]
    EventTooLarge { len: usize, max: usize },
}

impl EncodeError {
    /// Never: the same value fails the same way.
    pub fn is_retryable(&self) -> bool {
        false
    }
}
