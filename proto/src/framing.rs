//! Event framing inside a segment.
//!
//! A segment's bytes are a sequence of framed events:
//!
//! ```text
//! +----------------------+-------------------------+
//! | length: u32 (LE)     | payload: `length` bytes |   ... next event
//! +----------------------+-------------------------+
//! ```
//!
//! The payload is at most [`MAX_EVENT_SIZE`] bytes (8 MiB, as in Pravega). An event's position
//! is the segment offset of its length field.

use bytes::{Buf, BufMut, Bytes, BytesMut};

/// Largest event payload accepted, in bytes (8 MiB).
pub const MAX_EVENT_SIZE: usize = 8 * 1024 * 1024;

/// Size of the length prefix of every event.
pub const EVENT_HEADER_LEN: usize = 4;

/// Why framed bytes could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FramingError {
    #[error("event of {len} bytes exceeds the maximum event size of {MAX_EVENT_SIZE} bytes")]
    TooLarge { len: usize },
    #[error("framed events are cut short at byte {at} of {total}")]
    Truncated { at: usize, total: usize },
    #[error("batch declares {declared} events but holds {found}")]
    CountMismatch { declared: u32, found: u32 },
}

/// Appends one framed event to `buf`.
pub fn put_event(buf: &mut BytesMut, payload: &[u8]) -> Result<(), FramingError> {
    if payload.len() > MAX_EVENT_SIZE {
        return Err(FramingError::TooLarge { len: payload.len() });
    }
    buf.reserve(EVENT_HEADER_LEN + payload.len());
    buf.put_u32_le(payload.len() as u32);
    buf.put_slice(payload);
    Ok(())
}

/// Framed size of a payload of `len` bytes.
pub const fn framed_len(len: usize) -> usize {
    EVENT_HEADER_LEN + len
}

/// Iterates over the events in `data`, yielding `(offset within data, payload)`; the payload
/// is a zero-copy slice of `data`.
pub fn events(data: &Bytes) -> impl Iterator<Item = Result<(usize, Bytes), FramingError>> + '_ {
    let mut at = 0usize;
    std::iter::from_fn(move || {
        if at >= data.len() {
            return None;
        }
        let total = data.len();
        if total - at < EVENT_HEADER_LEN {
            at = total;
            return Some(Err(FramingError::Truncated { at, total }));
        }
        let len = (&data[at..at + EVENT_HEADER_LEN]).get_u32_le() as usize;
        if len > MAX_EVENT_SIZE {
            at = total;
            return Some(Err(FramingError::TooLarge { len }));
        }
        let start = at + EVENT_HEADER_LEN;
        if total - start < len {
            let err = FramingError::Truncated { at, total };
            at = total;
            return Some(Err(err));
        }
        let item = (at, data.slice(start..start + len));
        at = start + len;
        Some(Ok(item))
    })
}

/// Checks that `data` holds exactly `count` well-formed events, and returns the byte offsets
/// (within `data`) at which each event starts.
pub fn validate_batch(data: &Bytes, count: u32) -> Result<Vec<usize>, FramingError> {
    // Every event takes at least its 4-byte header: a larger count is a lie, refused below
    // without allocating for it.
    if count as usize > data.len() / EVENT_HEADER_LEN {
        return Err(FramingError::CountMismatch { declared: count, found: (data.len() / EVENT_HEADER_LEN) as u32 });
    }
    let mut starts = Vec::with_capacity(count as usize);
    for ev in events(data) {
        starts.push(ev?.0);
    }
    if starts.len() != count as usize {
        return Err(FramingError::CountMismatch { declared: count, found: starts.len() as u32 });
    }
    Ok(starts)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn round_trip(payloads in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..300), 0..40)) {
            let mut buf = BytesMut::new();
            for p in &payloads {
                put_event(&mut buf, p).unwrap();
            }
            let data = buf.freeze();
            let starts = validate_batch(&data, payloads.len() as u32).unwrap();
            let decoded: Vec<_> = events(&data).map(|e| e.unwrap().1.to_vec()).collect();
            prop_assert_eq!(&decoded, &payloads);
            prop_assert_eq!(starts.len(), payloads.len());
        }

        #[test]
        fn garbage_never_panics(data in proptest::collection::vec(any::<u8>(), 0..200)) {
            let data = Bytes::from(data);
            for (at, p) in events(&data).flatten() {
                prop_assert!(at + EVENT_HEADER_LEN + p.len() <= data.len());
            }
        }
    }

    #[test]
    fn rejects_oversized_and_short() {
        let mut buf = BytesMut::new();
        assert!(matches!(put_event(&mut buf, &vec![0; MAX_EVENT_SIZE + 1]), Err(FramingError::TooLarge { .. })));
        put_event(&mut buf, b"hello").unwrap();
        let data = buf.freeze();
        assert!(validate_batch(&data.slice(..7), 1).is_err());
        assert!(matches!(validate_batch(&data, 2), Err(FramingError::CountMismatch { .. })));
        // A count no payload could hold is refused before anything is allocated for it.
        assert!(matches!(validate_batch(&data, u32::MAX), Err(FramingError::CountMismatch { .. })));
    }
}
