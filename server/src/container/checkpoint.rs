//! Container metadata checkpoints: the payload of a `Checkpoint` log record.
//!
//! A checkpoint holds everything a container needs to resume without reading any record
//! before it: the segment table (local id, name, start offset, length, sealed flag, per-writer
//! last event numbers, attributes), the next local id to hand out, and the read index (where
//! each run of segment bytes lives in the log). Later, tiering recycles old log files; then
//! replay from the start of the log is impossible, so nothing here may refer to a record's
//! *contents* other than through the read index's log addresses.
//!
//! Layout (integers little-endian; `str` = u16 length + UTF-8; `var` = unsigned LEB128):
//!
//! ```text
//! version:u8 (=4)  next_local:u64  time_ms:u64 (version 4)  segment_count:u32
//! per segment, ascending local id:
//!   local:u64 name:str start_offset:u64 length:u64 flags:u8 (bit 0: sealed)
//!   writer_count:u32     { writer:str last_event_number:i64 }      ascending writer id
//!   attribute_count:u32  { key:str value:u64 }                      ascending key
//!   entry_count:u32      { gap:var len:var file_delta:var record_pos:var within:var }
//!   chunk_count:u32      { gap:var len:var obj_local:var obj_offset:var skip:var tag:var }
//!                        (version 2: no tag, 0; version 1: no chunks)
//!   events:var  mark_count:u32  { gap:var ms_delta:var }           (version 4; before: none)
//! ```
//!
//! `events` counts the events ever appended to the segment (merged ones included; truncation
//! does not lower it). `time_ms` is the append time of the last group applied (the `Time` operation). The marks
//! are the segment's time index (see `container::state`, "Append time"): `gap` is the mark's
//! offset minus the previous mark's (of the first: minus 0), `ms_delta` its time minus the
//! previous mark's (of the first: minus 0), modulo 2^64. Marks stay in the checkpoint when
//! their bytes move to Tier-2: one per second of appends per segment at most.
//!
//! Chunk references (version 2) say which segment bytes are in Tier-2: `len` bytes at segment
//! offset `prev_end + gap`, read from the chunk object that segment incarnation `obj_local`
//! wrote at its offset `obj_offset`, starting `skip` bytes into the chunk's data. (A merge
//! moves the source's references into the target unchanged but for the offset, so `obj_local`
//! is usually, but not always, the segment's own id.) `tag` tells uploads of the same bytes
//! apart (see [`ChunkId`]). Version 1, 2 and 3 payloads still decode.
//!
//! Read-index entries are stored in segment-offset order. `gap` is the entry's offset minus
//! the end of the previous entry (of the first: minus 0), so the usual contiguous index costs
//! one byte per entry for it; `file_delta` is the log file sequence minus the previous entry's
//! (of the first: minus 0); `record_pos` is where the payload of the record holding the bytes
//! starts in that file and `within` how far into that payload the bytes start. (The address
//! of the bytes is `record_pos + within`; the record itself is needed to verify its CRC when
//! the bytes are first read, see `Container::read`.) Differences are taken modulo 2^64, so any
//! index round-trips exactly. The encoding is deterministic: the same state gives the same
//! bytes.
//!
//! Decoding never panics and never allocates more than the payload can describe; a payload
//! that does not parse, or describes an impossible state (duplicate names or ids, an id not
//! below `next_local`, a start offset past the length), is a [`DecodeError`] and recovery falls
//! back to an earlier checkpoint.
//!
//! Owns: the checkpoint payload codec. Calls: `crate::log` (addresses), `container::ops`. Called
//! by: `container::state` (encode, restore).

use std::collections::{HashMap, HashSet};

pub use crate::tier2::ChunkId;

use bytes::BufMut;

use crate::container::ops::{Cursor, DecodeError, put_str, put_varint};
use crate::log::LogAddress;

/// Payload format version.
const VERSION: u8 = 4;

/// One contiguous run of segment bytes inside the log: a read-index entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct IndexEntry {
    /// Segment offset of the first byte.
    pub offset: u64,
    pub len: u32,
    /// How far `addr` lies into the payload of the record that holds the bytes, so that the
    /// record can be found (and its CRC checked) from the entry.
    pub within: u32,
    /// Log address of the first byte.
    pub addr: LogAddress,
}

/// A point of a segment's time index: the events from `offset` on (up to the next mark) were
/// appended at `ms` (milliseconds since the Unix epoch, a multiple of the resolution but for
/// clamping; see `container::state`, "Append time").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct TimeMark {
    pub offset: u64,
    pub ms: u64,
}

/// A run of segment bytes in Tier-2: part of one chunk object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ChunkRef {
    /// Segment offset of the first byte served from this chunk.
    pub offset: u64,
    pub len: u64,
    /// The chunk object.
    pub obj: ChunkId,
    /// Bytes of the chunk's data before the first byte served.
    pub skip: u64,
}

impl ChunkRef {
    pub fn end(&self) -> u64 {
        self.offset + self.len
    }
}

impl IndexEntry {
    /// Address of the first payload byte of the record holding these bytes.
    pub fn record(&self) -> LogAddress {
        LogAddress { file: self.addr.file, pos: self.addr.pos - self.within as u64 }
    }
}

/// A borrowed view of one segment, to encode.
#[derive(Debug)]
pub(crate) struct SegmentView<'a> {
    pub local: u64,
    pub name: &'a str,
    pub start_offset: u64,
    pub length: u64,
    pub sealed: bool,
    pub writers: &'a HashMap<String, i64>,
    pub attributes: &'a HashMap<String, u64>,
    pub index: &'a [IndexEntry],
    pub chunks: &'a [ChunkRef],
    pub events: u64,
    pub times: &'a [TimeMark],
}

/// One decoded segment.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct SegmentState {
    pub local: u64,
    pub name: String,
    pub start_offset: u64,
    pub length: u64,
    pub sealed: bool,
    pub writers: HashMap<String, i64>,
    pub attributes: HashMap<String, u64>,
    pub index: Vec<IndexEntry>,
    pub chunks: Vec<ChunkRef>,
    pub events: u64,
    pub times: Vec<TimeMark>,
}

/// A decoded checkpoint.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Checkpoint {
    pub next_local: u64,
    pub time_ms: u64,
    pub segments: Vec<SegmentState>,
}

/// Encodes a checkpoint of `segments` into `buf` (cleared first).
pub(crate) fn encode<'a>(
    buf: &mut Vec<u8>,
    next_local: u64,
    time_ms: u64,
    segments: impl Iterator<Item = SegmentView<'a>>,
) {
    let mut segments: Vec<_> = segments.collect();
    segments.sort_unstable_by_key(|s| s.local);
    buf.clear();
    buf.put_u8(VERSION);
    buf.put_u64_le(next_local);
    buf.put_u64_le(time_ms);
    buf.put_u32_le(segments.len() as u32);
    for s in segments {
        buf.put_u64_le(s.local);
        put_str(buf, s.name);
        buf.put_u64_le(s.start_offset);
        buf.put_u64_le(s.length);
        buf.put_u8(s.sealed as u8);
        let mut writers: Vec<_> = s.writers.iter().collect();
        writers.sort_unstable();
        buf.put_u32_le(writers.len() as u32);
        for (w, n) in writers {
            put_str(buf, w);
            buf.put_i64_le(*n);
        }
        let mut attributes: Vec<_> = s.attributes.iter().collect();
        attributes.sort_unstable();
        buf.put_u32_le(attributes.len() as u32);
        for (k, v) in attributes {
            put_str(buf, k);
            buf.put_u64_le(*v);
        }
        buf.put_u32_le(s.index.len() as u32);
        let (mut prev_end, mut prev_file) = (0u64, 0u64);
        for e in s.index {
            let record = e.record();
            put_varint(buf, e.offset.wrapping_sub(prev_end));
            put_varint(buf, e.len as u64);
            put_varint(buf, record.file.wrapping_sub(prev_file));
            put_varint(buf, record.pos);
            put_varint(buf, e.within as u64);
            prev_end = e.offset.wrapping_add(e.len as u64);
            prev_file = record.file;
        }
        buf.put_u32_le(s.chunks.len() as u32);
        let mut prev_end = 0u64;
        for c in s.chunks {
            put_varint(buf, c.offset.wrapping_sub(prev_end));
            put_varint(buf, c.len);
            put_varint(buf, c.obj.local);
            put_varint(buf, c.obj.offset);
            put_varint(buf, c.skip);
            put_varint(buf, c.obj.tag);
            prev_end = c.offset.wrapping_add(c.len);
        }
        put_varint(buf, s.events);
        buf.put_u32_le(s.times.len() as u32);
        let (mut prev_offset, mut prev_ms) = (0u64, 0u64);
        for m in s.times {
            put_varint(buf, m.offset.wrapping_sub(prev_offset));
            put_varint(buf, m.ms.wrapping_sub(prev_ms));
            (prev_offset, prev_ms) = (m.offset, m.ms);
        }
    }
}

fn u32_of(v: u64, at: usize, what: &'static str) -> Result<u32, DecodeError> {
    u32::try_from(v).map_err(|_| DecodeError { at, what })
}

/// Decodes a checkpoint payload.
pub(crate) fn decode(payload: &[u8]) -> Result<Checkpoint, DecodeError> {
    let mut c = Cursor::new(payload);
    let version = c.u8("checkpoint version")?;
    if !(1..=VERSION).contains(&version) {
        return Err(DecodeError { at: 0, what: "unknown checkpoint version" });
    }
    let next_local = c.u64("next local id")?;
    let time_ms = if version >= 4 { c.u64("time")? } else { 0 };
    let count = c.u32("segment count")? as usize;
    // Every count is checked against the bytes left before anything is allocated for it.
    let bounded = |c: &Cursor<'_>, n: usize, min_size: usize| n.min((c.buf.len() - c.at) / min_size);
    let mut segments = Vec::with_capacity(bounded(&c, count, 39));
    let (mut names, mut locals) = (HashSet::new(), HashSet::new());
    for _ in 0..count {
        let at = c.at;
        let local = c.u64("local id")?;
        let name = c.str("segment name")?.to_owned();
        if local >= next_local || !locals.insert(local) || !names.insert(name.clone()) {
            return Err(DecodeError { at, what: "duplicate or out-of-range segment" });
        }
        let start_offset = c.u64("start offset")?;
        let length = c.u64("length")?;
        if start_offset > length {
            return Err(DecodeError { at, what: "start offset past the length" });
        }
        let sealed = c.u8("flags")? & 1 == 1;
        let n = c.u32("writer count")? as usize;
        let mut writers = HashMap::with_capacity(bounded(&c, n, 10));
        for _ in 0..n {
            let w = c.str("writer id")?.to_owned();
            writers.insert(w, c.u64("event number")? as i64);
        }
        let n = c.u32("attribute count")? as usize;
        let mut attributes = HashMap::with_capacity(bounded(&c, n, 10));
        for _ in 0..n {
            let k = c.str("attribute key")?.to_owned();
            attributes.insert(k, c.u64("attribute value")?);
        }
        let n = c.u32("index entry count")? as usize;
        let mut index = Vec::with_capacity(bounded(&c, n, 5));
        let (mut prev_end, mut prev_file) = (0u64, 0u64);
        for _ in 0..n {
            let at = c.at;
            let offset = prev_end.wrapping_add(c.varint("index gap")?);
            let len = u32_of(c.varint("index length")?, at, "index length")?;
            let file = prev_file.wrapping_add(c.varint("index file")?);
            let record_pos = c.varint("index record position")?;
            let within = u32_of(c.varint("index position in record")?, at, "index position in record")?;
            let pos = record_pos.checked_add(within as u64).ok_or(DecodeError { at, what: "index position" })?;
            index.push(IndexEntry { offset, len, within, addr: LogAddress { file, pos } });
            prev_end = offset.wrapping_add(len as u64);
            prev_file = file;
        }
        let mut chunks = Vec::new();
        if version >= 2 {
            let n = c.u32("chunk count")? as usize;
            chunks.reserve(bounded(&c, n, 5));
            let mut prev_end = 0u64;
            for _ in 0..n {
                let offset = prev_end.wrapping_add(c.varint("chunk gap")?);
                let len = c.varint("chunk length")?;
                let obj_local = c.varint("chunk object id")?;
                let obj_offset = c.varint("chunk object offset")?;
                let skip = c.varint("chunk skip")?;
                let tag = if version >= 3 { c.varint("chunk tag")? } else { 0 };
                let obj = ChunkId { local: obj_local, offset: obj_offset, tag };
                chunks.push(ChunkRef { offset, len, obj, skip });
                prev_end = offset.wrapping_add(len);
            }
        }
        let (mut events, mut times) = (0, Vec::new());
        if version >= 4 {
            events = c.varint("event count")?;
            let n = c.u32("time mark count")? as usize;
            times.reserve(bounded(&c, n, 2));
            let (mut offset, mut ms) = (0u64, 0u64);
            for _ in 0..n {
                offset = offset.wrapping_add(c.varint("time mark gap")?);
                ms = ms.wrapping_add(c.varint("time mark delta")?);
                times.push(TimeMark { offset, ms });
            }
        }
        segments.push(SegmentState {
            local,
            name,
            start_offset,
            length,
            sealed,
            writers,
            attributes,
            index,
            chunks,
            events,
            times,
        });
    }
    if c.at != payload.len() {
        return Err(DecodeError { at: c.at, what: "trailing bytes after the checkpoint" });
    }
    Ok(Checkpoint { next_local, time_ms, segments })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn sample() -> Checkpoint {
        let entry = |offset, len, file, rec, within| IndexEntry {
            offset,
            len,
            within,
            addr: LogAddress { file, pos: rec + within as u64 },
        };
        Checkpoint {
            next_local: 9,
            time_ms: 1_765_000_001_000,
            segments: vec![
                SegmentState {
                    local: 3,
                    name: "demo/orders/0.#epoch.0".into(),
                    start_offset: 10,
                    length: 4000,
                    sealed: true,
                    writers: [("w-1".to_owned(), 41), ("w-2".to_owned(), -1)].into(),
                    attributes: [("k".to_owned(), u64::MAX)].into(),
                    index: vec![
                        entry(0, 100, 1, 24, 33),
                        entry(100, 3900, 2, 1 << 30, 0),
                        // Not contiguous, and an earlier file: still exact.
                        entry(5, 1, 1, 0, 7),
                    ],
                    chunks: vec![
                        ChunkRef { offset: 0, len: 100, obj: ChunkId { local: 3, offset: 0, tag: 0 }, skip: 0 },
                        ChunkRef { offset: 5000, len: 7, obj: ChunkId { local: 2, offset: 90, tag: 77 }, skip: 3 },
                    ],
                    events: 1234,
                    times: vec![
                        TimeMark { offset: 0, ms: 1_765_000_000_000 },
                        TimeMark { offset: 100, ms: 1_765_000_001_000 },
                        TimeMark { offset: 100, ms: 1_765_000_002_000 },
                    ],
                },
                SegmentState { local: 8, name: "x".into(), ..Default::default() },
            ],
        }
    }

    fn encode_state(cp: &Checkpoint) -> Vec<u8> {
        let mut buf = Vec::new();
        let views = cp.segments.iter().rev().map(|s| SegmentView {
            local: s.local,
            name: &s.name,
            start_offset: s.start_offset,
            length: s.length,
            sealed: s.sealed,
            writers: &s.writers,
            attributes: &s.attributes,
            index: &s.index,
            chunks: &s.chunks,
            events: s.events,
            times: &s.times,
        });
        encode(&mut buf, cp.next_local, cp.time_ms, views);
        buf
    }

    #[test]
    fn round_trip_is_exact_and_deterministic() {
        let cp = sample();
        let bytes = encode_state(&cp);
        assert_eq!(decode(&bytes).unwrap(), cp);
        assert_eq!(encode_state(&decode(&bytes).unwrap()), bytes);
    }

    #[test]
    fn impossible_states_are_refused() {
        let mut cp = sample();
        cp.segments[1].name = cp.segments[0].name.clone();
        assert!(decode(&encode_state(&cp)).is_err(), "duplicate names");
        let mut cp = sample();
        cp.next_local = 8;
        assert!(decode(&encode_state(&cp)).is_err(), "id not below next_local");
        let mut bytes = encode_state(&sample());
        bytes.push(0);
        assert!(decode(&bytes).is_err(), "trailing bytes");
    }

    proptest! {
        #[test]
        fn garbage_and_cuts_never_panic(data in proptest::collection::vec(any::<u8>(), 0..400), cut in 0usize..400) {
            let _ = decode(&data);
            let bytes = encode_state(&sample());
            let _ = decode(&bytes[..cut.min(bytes.len())]);
        }
    }
}
