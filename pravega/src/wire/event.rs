//! Pravega's event framing inside segment data. An event writer sends each event with an
//! 8-byte header, an `AppendBlockEnd` carries such events back to back, and a reader parses
//! segment bytes with the same header (asserting its type is 0):
//!
//! ```text
//! +--------------------+----------------------+---------------------------+
//! | type: i32 (BE) = 0 | length: i32 (BE) = n | payload: n bytes (≤ 8 MiB) |  ... next event
//! +--------------------+----------------------+---------------------------+
//! ```
//!
//! This is also Nadi's own event framing (`nadi_proto::framing`): Nadi stores an
//! `AppendBlockEnd`'s data as it comes, after checking it, and serves Pravega readers the stored
//! bytes, so the Pravega offset of an event is its Nadi offset.
//!
//! Invariants: [`split_events`] accepts a block only if it is exactly `num_event ≥ 1`
//! well-formed events filling `size_of_whole_events == data.len()` bytes — anything else is an
//! error and nothing of the block may be stored (blocks are all-or-nothing: the client re-sends
//! every unacked event elsewhere after a failure). It never panics and allocates at most one
//! slice handle per event it has validated.

use bytes::{BufMut, Bytes, BytesMut};
use nadi_proto::framing::MAX_EVENT_SIZE;

use super::error::EncodeError;
use super::type_code;

/// Size of an event's header: type and length.
pub const EVENT_HEADER_LEN: usize = 8;

/// Why an `AppendBlockEnd`'s data is not a valid block of events. A protocol violation by the
/// writer: the front end closes the connection without storing any of the block.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EventBlockError {
    /// `num_event` is zero or negative (Java rejects these too).
    #[error("block declares {num_event} events; at least one is required")]
    InvalidCount { num_event: i32 },
    /// `size_of_whole_events` is not the length of `data`.
    #[error("block declares {declared} bytes of whole events but carries {actual}")]
    SizeMismatch { declared: i32, actual: usize },
    /// The data ends inside an event's header.
    #[error("event {index} at byte {at}: the header is cut short")]
    TruncatedHeader { index: usize, at: usize },
    /// An event header whose type is not 0.
    #[error("event {index} at byte {at} has type {type_code}, not 0")]
    NotAnEvent { index: usize, at: usize, type_code: i32 },
    /// An event header with a negative length.
    #[error("event {index} at byte {at} declares a negative length {length}")]
    NegativeLength { index: usize, at: usize, length: i32 },
    /// An event over 8 MiB.
    #[error("event {index} at byte {at} is {length} bytes, over the maximum event size of {MAX_EVENT_SIZE}")]
    TooLarge { index: usize, at: usize, length: i32 },
    /// The data ends inside an event's payload.
    #[error("event {index} at byte {at} declares {length} bytes but only {remaining} remain")]
    TruncatedPayload { index: usize, at: usize, length: i32, remaining: usize },
    /// The data holds fewer events than declared.
    #[error("block declares {declared} events but holds {found}")]
    CountMismatch { declared: i32, found: usize },
    /// Bytes remain after the declared number of events.
    #[error("{remaining} bytes follow the block's {declared} events")]
    TrailingBytes { declared: i32, remaining: usize },
}

impl EventBlockError {
    /// Never: the same block fails the same way.
    pub fn is_retryable(&self) -> bool {
        false
    }
}

/// Splits an `AppendBlockEnd`'s `data` into its event payloads (zero-copy slices, headers
/// stripped), checking that it is exactly `num_event` events of type 0, each of 0 to 8 MiB,
/// filling `size_of_whole_events` bytes.
pub fn split_events(data: &Bytes, num_event: i32, size_of_whole_events: i32) -> Result<Vec<Bytes>, EventBlockError> {
    if num_event < 1 {
        return Err(EventBlockError::InvalidCount { num_event });
    }
    if usize::try_from(size_of_whole_events).ok() != Some(data.len()) {
        return Err(EventBlockError::SizeMismatch { declared: size_of_whole_events, actual: data.len() });
    }
    let declared = num_event as usize;
    // A truthful count is bounded by the bytes: every event takes at least its header.
    let mut events = Vec::with_capacity(declared.min(data.len() / EVENT_HEADER_LEN));
    let mut at = 0usize;
    while events.len() < declared {
        let index = events.len();
        if at == data.len() {
            return Err(EventBlockError::CountMismatch { declared: num_event, found: index });
        }
        let Some(header) = data.get(at..at + EVENT_HEADER_LEN) else {
            return Err(EventBlockError::TruncatedHeader { index, at });
        };
        let type_code = i32::from_be_bytes([header[0], header[1], header[2], header[3]]);
        let length = i32::from_be_bytes([header[4], header[5], header[6], header[7]]);
        if type_code != type_code::EVENT {
            return Err(EventBlockError::NotAnEvent { index, at, type_code });
        }
        if length < 0 {
            return Err(EventBlockError::NegativeLength { index, at, length });
        }
        if length as usize > MAX_EVENT_SIZE {
            return Err(EventBlockError::TooLarge { index, at, length });
        }
        let start = at + EVENT_HEADER_LEN;
        let remaining = data.len() - start;
        if length as usize > remaining {
            return Err(EventBlockError::TruncatedPayload { index, at, length, remaining });
        }
        let end = start + length as usize;
        events.push(data.slice(start..end));
        at = end;
    }
    if at != data.len() {
        return Err(EventBlockError::TrailingBytes { declared: num_event, remaining: data.len() - at });
    }
    Ok(events)
}

/// The 8-byte header of an event of `len` bytes, for serving reads that start inside it.
pub fn event_header(len: usize) -> Result<[u8; EVENT_HEADER_LEN], EncodeError> {
    if len > MAX_EVENT_SIZE {
        return Err(EncodeError::EventTooLarge { len, max: MAX_EVENT_SIZE });
    }
    let mut header = [0u8; EVENT_HEADER_LEN];
    header[..4].copy_from_slice(&type_code::EVENT.to_be_bytes());
    header[4..].copy_from_slice(&(len as i32).to_be_bytes());
    Ok(header)
}

/// Appends one event, header and payload, to `out` (segment data as a Pravega reader sees it,
/// or a block as a Pravega writer sends it). Nothing is appended on error.
pub fn put_event(out: &mut BytesMut, payload: &[u8]) -> Result<(), EncodeError> {
    let header = event_header(payload.len())?;
    out.reserve(EVENT_HEADER_LEN + payload.len());
    out.put_slice(&header);
    out.put_slice(payload);
    Ok(())
}

/// Size of an event of `len` payload bytes as Pravega sees it in a segment.
pub const fn framed_len(len: usize) -> usize {
    EVENT_HEADER_LEN + len
}
