//! Event framing inside a segment.
//!
//! A segment's bytes are a sequence of framed events, in Pravega's event framing (so a
//! Pravega client reads Nadi's segments byte for byte, and offsets are the same for both):
//!
//! ```text
//! +------------------------+------------------------+-------------------------+
//! | type: u32 (BE) = 0     | length: u32 (BE)       | payload: `length` bytes |   ... next event
//! +------------------------+------------------------+-------------------------+
//! ```
//!
//! The type is always 0 (Pravega's `EVENT`); anything else is not an event. The payload is at
//! most [`MAX_EVENT_SIZE`] bytes (8 MiB, as in Pravega). An event's position is the segment
//! offset of its header.

use bytes::{BufMut, Bytes, BytesMut};

/// Largest event payload accepted, in bytes (8 MiB).
pub const MAX_EVENT_SIZE: usize = 8 * 1024 * 1024;

/// Size of the header of every event: type and length.
pub const EVENT_HEADER_LEN: usize = 8;

/// The type field of an event's header (Pravega's `WireCommandType.EVENT`).
pub const EVENT_TYPE: u32 = 0;

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
    #[error("the event header at byte {at} has type {type_code}, not 0: these bytes are not framed events")]
    NotAnEvent { at: usize, type_code: u32 },
}

/// The payload length an event header declares, or why the header is not an event's. `header`
/// is at least [`EVENT_HEADER_LEN`] bytes; `at` names its position in errors.
pub fn header_len(header: &[u8], at: usize) -> Result<usize, FramingError> {
    let type_code = u32::from_be_bytes([header[0], header[1], header[2], header[3]]);
    if type_code != EVENT_TYPE {
        return Err(FramingError::NotAnEvent { at, type_code });
    }
    let len = u32::from_be_bytes([header[4], header[5], header[6], header[7]]) as usize;
    if len > MAX_EVENT_SIZE {
        return Err(FramingError::TooLarge { len });
    }
    Ok(len)
}

/// Appends one framed event to `buf`.
pub fn put_event(buf: &mut BytesMut, payload: &[u8]) -> Result<(), FramingError> {
    if payload.len() > MAX_EVENT_SIZE {
        return Err(FramingError::TooLarge { len: payload.len() });
    }
    buf.reserve(EVENT_HEADER_LEN + payload.len());
    buf.put_u32(EVENT_TYPE);
    buf.put_u32(payload.len() as u32);
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
        let len = match header_len(&data[at..at + EVENT_HEADER_LEN], at) {
            Ok(len) => len,
            Err(e) => {
                at = total;
                return Some(Err(e));
            }
        };
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
pub fn validate_batch(data: &[u8], count: u32) -> Result<Vec<usize>, FramingError> {
    let mut starts = Vec::with_capacity(plausible(data, count)?);
    walk(data, |at| starts.push(at))?;
    if starts.len() != count as usize {
        return Err(FramingError::CountMismatch { declared: count, found: starts.len() as u32 });
    }
    Ok(starts)
}

/// Checks that `data` holds exactly `count` well-formed events, as [`validate_batch`] does,
/// without collecting where they start (the append path's check: no allocation, no slicing).
pub fn check_batch(data: &[u8], count: u32) -> Result<(), FramingError> {
    plausible(data, count)?;
    let mut found = 0u32;
    walk(data, |_| found += 1)?;
    if found != count {
        return Err(FramingError::CountMismatch { declared: count, found });
    }
    Ok(())
}

/// `count`, if `data` can hold that many events: every event takes at least its 8-byte
/// header, so a larger count is a lie, refused without allocating for it.
fn plausible(data: &[u8], count: u32) -> Result<usize, FramingError> {
    if count as usize > data.len() / EVENT_HEADER_LEN {
        return Err(FramingError::CountMismatch { declared: count, found: (data.len() / EVENT_HEADER_LEN) as u32 });
    }
    Ok(count as usize)
}

/// Calls `start` with the offset of each event in `data`, in order; fails at the first bytes
/// that are not a whole event.
fn walk(data: &[u8], mut start: impl FnMut(usize)) -> Result<(), FramingError> {
    let total = data.len();
    let mut at = 0usize;
    while at < total {
        if total - at < EVENT_HEADER_LEN {
            return Err(FramingError::Truncated { at: total, total });
        }
        let len = header_len(&data[at..at + EVENT_HEADER_LEN], at)?;
        if total - at - EVENT_HEADER_LEN < len {
            return Err(FramingError::Truncated { at, total });
        }
        start(at);
        at += EVENT_HEADER_LEN + len;
    }
    Ok(())
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
            check_batch(&data, payloads.len() as u32).unwrap();
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
            // The two batch checks agree with each other and with the event iterator.
            let whole = events(&data).collect::<Result<Vec<_>, _>>();
            for count in 0..4u32 {
                let checked = check_batch(&data, count);
                prop_assert_eq!(checked.clone(), validate_batch(&data, count).map(|_| ()));
                let expected = whole.as_ref().map_err(|_| ()).and_then(|v| if v.len() == count as usize { Ok(()) } else { Err(()) });
                prop_assert_eq!(checked.is_ok(), expected.is_ok());
            }
        }
    }

    #[test]
    fn rejects_oversized_and_short() {
        let mut buf = BytesMut::new();
        assert!(matches!(put_event(&mut buf, &vec![0; MAX_EVENT_SIZE + 1]), Err(FramingError::TooLarge { .. })));
        put_event(&mut buf, b"hello").unwrap();
        let data = buf.freeze();
        assert!(validate_batch(&data.slice(..11), 1).is_err());
        assert!(matches!(validate_batch(&data, 2), Err(FramingError::CountMismatch { .. })));
        // Pravega's framing, byte for byte.
        assert_eq!(&data[..8], &[0, 0, 0, 0, 0, 0, 0, 5]);
        // A header whose type is not 0 is not an event.
        let mut other = data.to_vec();
        other[3] = 1;
        assert!(matches!(
            validate_batch(&Bytes::from(other), 1),
            Err(FramingError::NotAnEvent { at: 0, type_code: 1 })
        ));
        // A count no payload could hold is refused before anything is allocated for it.
        assert!(matches!(validate_batch(&data, u32::MAX), Err(FramingError::CountMismatch { .. })));
    }
}
