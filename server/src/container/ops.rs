//! Container operations as they are stored in the payload of a `Batch` log record.
//!
//! A batch payload is a sequence of operations, each starting with a one-byte tag. Integers are
//! little-endian; strings are a `u16` length and UTF-8 bytes. Segments are named by a
//! container-local id assigned when the segment is created, so the name is stored once.
//!
//! ```text
//! 1 Create  local:u64 name:str
//! 2 Append  local:u64 offset:u64 writer:str last_event_number:i64 event_count:u32 len:u32 data:[len]
//! 3 Seal      local:u64
//! 4 Delete    local:u64
//! 5 Truncate  local:u64 start_offset:u64
//! 6 Merge     target:u64 source:u64
//! 7 Attribute local:u64 key:str value:u64
//! 8 Tiered    local:u64 offset:u64 len:u64
//! 9 Tiered    local:u64 offset:u64 len:u64 tag:u64   (a tagged upload)
//! 10 Time     ms:u64                                  (the group's append time)
//! ```
//!
//! `Time` comes first in every batch the writer commits since the time index exists: the
//! store's clock when the group was made, in milliseconds since the Unix epoch. The appends
//! and merges after it get their append times from it (see `container::state`, "Append
//! time"), so the live store, recovery and every replica compute the same times. Batches
//! without it (older logs) leave the time unchanged.
//!
//! `Tiered` records that the segment's bytes `[offset, offset + len)` are in the Tier-2 chunk
//! object written by this segment at `offset` with `tag` (0 for the untagged form; see
//! `container::checkpoint::ChunkId` and `crate::tier2`); they are no longer read from the log.
//!
//! `offset` is the segment offset at which `data` (whole framed events) lands. Decoding never
//! panics: bytes that do not parse are reported as [`DecodeError`].
//!
//! Owns: the batch payload codec. Calls: nothing of this crate. Called by: the writer (encode),
//! `container::state` and recovery (decode).

use bytes::BufMut;

/// One decoded operation. `Append` data is given as its position within the payload, so that
/// recovery can index it in place without copying.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op<'a> {
    Create {
        local: u64,
        name: &'a str,
    },
    Append {
        local: u64,
        offset: u64,
        writer: &'a str,
        last_event_number: i64,
        event_count: u32,
        data_pos: usize,
        data_len: usize,
    },
    Seal {
        local: u64,
    },
    Delete {
        local: u64,
    },
    /// Moves the segment's start offset forward (to an event boundary).
    Truncate {
        local: u64,
        start_offset: u64,
    },
    /// Appends the sealed `source`'s readable bytes to `target` and deletes `source`.
    Merge {
        target: u64,
        source: u64,
    },
    /// Sets a u64 attribute.
    Attribute {
        local: u64,
        key: &'a str,
        value: u64,
    },
    /// The segment's bytes `[offset, offset + len)` are durably in Tier-2, in the chunk this
    /// segment wrote at `offset`, upload `tag`.
    Tiered {
        local: u64,
        offset: u64,
        len: u64,
        tag: u64,
    },
    /// The append time of the operations after it (milliseconds since the Unix epoch).
    Time {
        ms: u64,
    },
}

/// A batch payload that does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("malformed operation at byte {at} of a batch record: {what}")]
pub struct DecodeError {
    pub at: usize,
    pub what: &'static str,
}

const CREATE: u8 = 1;
const APPEND: u8 = 2;
const SEAL: u8 = 3;
const DELETE: u8 = 4;
const TRUNCATE: u8 = 5;
const MERGE: u8 = 6;
const ATTRIBUTE: u8 = 7;
const TIERED: u8 = 8;
const TIERED_TAGGED: u8 = 9;
const TIME: u8 = 10;

/// Encoded size of a `Time` operation.
pub const TIME_SIZE: usize = 9;

pub(crate) fn put_str(buf: &mut Vec<u8>, s: &str) {
    buf.put_u16_le(s.len() as u16);
    buf.put_slice(s.as_bytes());
}

pub fn encode_create(buf: &mut Vec<u8>, local: u64, name: &str) {
    buf.put_u8(CREATE);
    buf.put_u64_le(local);
    put_str(buf, name);
}

/// Encodes an append and returns the position of its data within `buf`.
pub fn encode_append(
    buf: &mut Vec<u8>,
    local: u64,
    offset: u64,
    writer: &str,
    last_event_number: i64,
    event_count: u32,
    data: &[u8],
) -> usize {
    encode_append_head(buf, local, offset, writer, last_event_number, event_count, data.len());
    let pos = buf.len();
    buf.put_slice(data);
    pos
}

/// Encodes an append up to (not including) its `data_len` bytes of data.
fn encode_append_head(
    buf: &mut Vec<u8>,
    local: u64,
    offset: u64,
    writer: &str,
    last_event_number: i64,
    event_count: u32,
    data_len: usize,
) {
    buf.put_u8(APPEND);
    buf.put_u64_le(local);
    buf.put_u64_le(offset);
    put_str(buf, writer);
    buf.put_i64_le(last_event_number);
    buf.put_u32_le(event_count);
    buf.put_u32_le(data_len as u32);
}

/// A batch payload as the container's writer builds it: the operations' own bytes in `ops`,
/// and each append's data left in the buffer it arrived in, not copied in. The log writes the
/// pieces in order ([`parts`](Self::parts)), so the record holds exactly the bytes that
/// [`encode_append`] into one buffer makes; [`decode`](Self::decode) gives the operations that
/// [`decode`] of that record gives. (Copying every appended byte once more into one buffer
/// cost the store about 3.5 % of two cores at the maximum rate; docs/performance.md.)
#[derive(Debug, Default)]
pub struct Payload {
    /// The operations without their append data; the other `encode_*` functions write here.
    pub ops: Vec<u8>,
    /// Each append's data, after the byte of `ops` it follows.
    data: Vec<(usize, bytes::Bytes)>,
    data_len: usize,
}

impl Payload {
    /// Encodes an append whose data stays in `data` until the record is written.
    #[allow(clippy::too_many_arguments)]
    pub fn append(
        &mut self,
        local: u64,
        offset: u64,
        writer: &str,
        last_event_number: i64,
        event_count: u32,
        data: bytes::Bytes,
    ) {
        encode_append_head(&mut self.ops, local, offset, writer, last_event_number, event_count, data.len());
        self.data_len += data.len();
        if !data.is_empty() {
            self.data.push((self.ops.len(), data));
        }
    }

    /// Bytes of the record payload.
    pub fn len(&self) -> usize {
        self.ops.len() + self.data_len
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn clear(&mut self) {
        self.ops.clear();
        self.data.clear();
        self.data_len = 0;
    }

    /// The record payload, in pieces to be written one after the other.
    pub fn parts(&self) -> Vec<&[u8]> {
        let mut parts = Vec::with_capacity(2 * self.data.len() + 1);
        let mut from = 0;
        for (at, data) in &self.data {
            parts.push(&self.ops[from..*at]);
            parts.push(&data[..]);
            from = *at;
        }
        parts.push(&self.ops[from..]);
        parts
    }

    /// The operations, with append data positions within the whole record payload.
    pub fn decode(&self) -> Result<Vec<Op<'_>>, DecodeError> {
        decode_inner(&self.ops, false)
    }
}

pub fn encode_seal(buf: &mut Vec<u8>, local: u64) {
    buf.put_u8(SEAL);
    buf.put_u64_le(local);
}

pub fn encode_delete(buf: &mut Vec<u8>, local: u64) {
    buf.put_u8(DELETE);
    buf.put_u64_le(local);
}

pub fn encode_truncate(buf: &mut Vec<u8>, local: u64, start_offset: u64) {
    buf.put_u8(TRUNCATE);
    buf.put_u64_le(local);
    buf.put_u64_le(start_offset);
}

pub fn encode_merge(buf: &mut Vec<u8>, target: u64, source: u64) {
    buf.put_u8(MERGE);
    buf.put_u64_le(target);
    buf.put_u64_le(source);
}

pub fn encode_attribute(buf: &mut Vec<u8>, local: u64, key: &str, value: u64) {
    buf.put_u8(ATTRIBUTE);
    buf.put_u64_le(local);
    put_str(buf, key);
    buf.put_u64_le(value);
}

pub fn encode_tiered(buf: &mut Vec<u8>, local: u64, offset: u64, len: u64, tag: u64) {
    buf.put_u8(if tag == 0 { TIERED } else { TIERED_TAGGED });
    buf.put_u64_le(local);
    buf.put_u64_le(offset);
    buf.put_u64_le(len);
    if tag != 0 {
        buf.put_u64_le(tag);
    }
}

pub fn encode_time(buf: &mut Vec<u8>, ms: u64) {
    buf.put_u8(TIME);
    buf.put_u64_le(ms);
}

/// Appends `v` as an unsigned LEB128 varint (1 to 10 bytes).
pub(crate) fn put_varint(buf: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        buf.put_u8(v as u8 | 0x80);
        v >>= 7;
    }
    buf.put_u8(v as u8);
}

/// Upper bound of the encoded size of an append.
pub fn append_size(writer: &str, data_len: usize) -> usize {
    1 + 8 + 8 + 2 + writer.len() + 8 + 4 + 4 + data_len
}

/// Reads little-endian fields off a byte slice; every read is bounds-checked (never panics).
pub(crate) struct Cursor<'a> {
    pub(crate) buf: &'a [u8],
    pub(crate) at: usize,
}

impl<'a> Cursor<'a> {
    pub(crate) fn new(buf: &'a [u8]) -> Self {
        Self { buf, at: 0 }
    }
    /// An unsigned LEB128 varint of at most 10 bytes that fits in a u64.
    pub(crate) fn varint(&mut self, what: &'static str) -> Result<u64, DecodeError> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let at = self.at;
            let b = self.u8(what)?;
            let bits = (b & 0x7f) as u64;
            if shift == 63 && bits > 1 {
                return Err(DecodeError { at, what });
            }
            v |= bits << shift;
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err(DecodeError { at: self.at, what })
    }
    pub(crate) fn take(&mut self, n: usize, what: &'static str) -> Result<&'a [u8], DecodeError> {
        let end = self.at.checked_add(n).filter(|&e| e <= self.buf.len()).ok_or(DecodeError { at: self.at, what })?;
        let s = &self.buf[self.at..end];
        self.at = end;
        Ok(s)
    }
    pub(crate) fn u8(&mut self, what: &'static str) -> Result<u8, DecodeError> {
        Ok(self.take(1, what)?[0])
    }
    pub(crate) fn u16(&mut self, what: &'static str) -> Result<u16, DecodeError> {
        Ok(u16::from_le_bytes(self.take(2, what)?.try_into().map_err(|_| DecodeError { at: self.at, what })?))
    }
    pub(crate) fn u32(&mut self, what: &'static str) -> Result<u32, DecodeError> {
        Ok(u32::from_le_bytes(self.take(4, what)?.try_into().map_err(|_| DecodeError { at: self.at, what })?))
    }
    pub(crate) fn u64(&mut self, what: &'static str) -> Result<u64, DecodeError> {
        Ok(u64::from_le_bytes(self.take(8, what)?.try_into().map_err(|_| DecodeError { at: self.at, what })?))
    }
    pub(crate) fn str(&mut self, what: &'static str) -> Result<&'a str, DecodeError> {
        let len = self.u16(what)? as usize;
        let at = self.at;
        std::str::from_utf8(self.take(len, what)?).map_err(|_| DecodeError { at, what })
    }
}

/// Decodes every operation of a batch payload.
pub fn decode(payload: &[u8]) -> Result<Vec<Op<'_>>, DecodeError> {
    decode_inner(payload, true)
}

/// Decodes `payload`; without `data_inline`, appends' data is not in it (see [`Payload`]), and
/// their `data_pos` is where the data is in the whole record.
fn decode_inner(payload: &[u8], data_inline: bool) -> Result<Vec<Op<'_>>, DecodeError> {
    let mut c = Cursor::new(payload);
    let mut ops = Vec::new();
    // Bytes of append data before the cursor that are not in `payload`.
    let mut outside = 0;
    while c.at < payload.len() {
        let tag_at = c.at;
        let op = match c.u8("tag")? {
            CREATE => Op::Create { local: c.u64("local id")?, name: c.str("segment name")? },
            APPEND => {
                let local = c.u64("local id")?;
                let offset = c.u64("offset")?;
                let writer = c.str("writer id")?;
                let last_event_number = c.u64("event number")? as i64;
                let event_count = c.u32("event count")?;
                let data_len = c.u32("data length")? as usize;
                let data_pos = c.at + outside;
                if data_inline {
                    c.take(data_len, "data")?;
                } else {
                    outside += data_len;
                }
                Op::Append { local, offset, writer, last_event_number, event_count, data_pos, data_len }
            }
            SEAL => Op::Seal { local: c.u64("local id")? },
            DELETE => Op::Delete { local: c.u64("local id")? },
            TRUNCATE => Op::Truncate { local: c.u64("local id")?, start_offset: c.u64("start offset")? },
            MERGE => Op::Merge { target: c.u64("target id")?, source: c.u64("source id")? },
            ATTRIBUTE => {
                Op::Attribute { local: c.u64("local id")?, key: c.str("attribute key")?, value: c.u64("value")? }
            }
            TIERED => Op::Tiered { local: c.u64("local id")?, offset: c.u64("offset")?, len: c.u64("length")?, tag: 0 },
            TIERED_TAGGED => Op::Tiered {
                local: c.u64("local id")?,
                offset: c.u64("offset")?,
                len: c.u64("length")?,
                tag: c.u64("tag")?,
            },
            TIME => Op::Time { ms: c.u64("time")? },
            _ => return Err(DecodeError { at: tag_at, what: "unknown operation tag" }),
        };
        ops.push(op);
    }
    Ok(ops)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn round_trip() {
        let mut buf = Vec::new();
        encode_create(&mut buf, 7, "demo/orders/0.#epoch.0");
        let pos = encode_append(&mut buf, 7, 100, "w-1", 41, 2, b"\x01\0\0\0a\x01\0\0\0b");
        encode_seal(&mut buf, 7);
        encode_delete(&mut buf, 7);
        encode_truncate(&mut buf, 8, 99);
        encode_merge(&mut buf, 8, 9);
        encode_attribute(&mut buf, 8, "state", u64::MAX);
        encode_time(&mut buf, 1_765_000_000_123);
        let ops = decode(&buf).unwrap();
        assert_eq!(ops[7], Op::Time { ms: 1_765_000_000_123 });
        assert_eq!(ops[4], Op::Truncate { local: 8, start_offset: 99 });
        assert_eq!(ops[5], Op::Merge { target: 8, source: 9 });
        assert_eq!(ops[6], Op::Attribute { local: 8, key: "state", value: u64::MAX });
        assert_eq!(ops[0], Op::Create { local: 7, name: "demo/orders/0.#epoch.0" });
        assert_eq!(
            ops[1],
            Op::Append {
                local: 7,
                offset: 100,
                writer: "w-1",
                last_event_number: 41,
                event_count: 2,
                data_pos: pos,
                data_len: 10
            }
        );
        assert_eq!(&buf[pos..pos + 10], b"\x01\0\0\0a\x01\0\0\0b");
        assert_eq!(ops[2], Op::Seal { local: 7 });
        assert_eq!(ops[3], Op::Delete { local: 7 });
        assert!(append_size("w-1", 10) >= buf.len() - (buf.len() - pos - 10) - pos + 10);
    }

    proptest! {
        #[test]
        fn garbage_never_panics(data in proptest::collection::vec(any::<u8>(), 0..300)) {
            let _ = decode(&data);
        }

        /// The writer's payload in pieces is the record one buffer would hold, and decodes to
        /// the same operations as that record does in recovery.
        #[test]
        fn payload_in_pieces_is_the_record(
            ops in proptest::collection::vec((0u8..4, 0u64..1000, proptest::collection::vec(any::<u8>(), 0..40)), 0..12),
        ) {
            let (mut whole, mut pieces) = (Vec::new(), Payload::default());
            for (i, (kind, n, data)) in ops.iter().enumerate() {
                match kind {
                    0 => {
                        let writer = format!("w{i}");
                        encode_append(&mut whole, *n, n * 7, &writer, i as i64, data.len() as u32, data);
                        pieces.append(*n, n * 7, &writer, i as i64, data.len() as u32, bytes::Bytes::from(data.clone()));
                    }
                    1 => {
                        encode_time(&mut whole, *n);
                        encode_time(&mut pieces.ops, *n);
                    }
                    2 => {
                        encode_seal(&mut whole, *n);
                        encode_seal(&mut pieces.ops, *n);
                    }
                    _ => {
                        encode_attribute(&mut whole, *n, "k", n + 1);
                        encode_attribute(&mut pieces.ops, *n, "k", n + 1);
                    }
                }
            }
            prop_assert_eq!(pieces.len(), whole.len());
            prop_assert_eq!(pieces.parts().concat(), whole.clone());
            prop_assert_eq!(pieces.decode().unwrap(), decode(&whole).unwrap());
        }
    }
}
