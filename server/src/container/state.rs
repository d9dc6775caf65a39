//! A container's state: the segment table with each segment's read index, in two views, and
//! the functions that apply log operations to them.
//!
//! - [`Durable`]: what readers see, changed only by committed records (behind the container's
//!   lock, see `Shared::durable`). Each segment's read index says where each of its bytes is:
//!   a run of a Tier-1 log record ([`IndexEntry`]) or a Tier-2 chunk ([`ChunkRef`]).
//! - [`Written`]: the writer thread's private view, ahead of `Durable` by the group being
//!   committed; requests are validated against it.
//!
//! ```text
//!   segment offsets:  start_offset            tiered | in Tier-1          length
//!                     |<-- chunks (Tier-2) ------->|<-- index (Tier-1) ---->|
//!   bytes before start_offset were truncated; each byte in [start_offset, length) is in
//!   exactly one of `chunks` and `index`.
//! ```
//!
//! Both views change only through [`apply_written`] and [`apply_durable`], which the live
//! writer and recovery share. `Durable` is the state machine of the replication seam
//! ([`ContainerStateMachine`]).
//!
//! ## Append time
//!
//! Every group the writer commits starts with a `Time` operation: the store's clock (see
//! `nadi_proto::clock`). The events of an append or merge get that time rounded down to
//! [`TIME_RESOLUTION_MS`], but never less than the segment's previous append time, so times
//! are non-decreasing per segment. Each segment's time index (`SegmentMeta::times`) holds a
//! mark wherever its append time changes: the events from a mark's offset up to the next
//! mark have the mark's time. Marks are metadata (in checkpoints, kept when the bytes move to
//! Tier-2, trimmed by truncation to the last one at or before the start), at most one per
//! second of appends per segment. Data written before the time index exists has time 0.
//!
//! Owns: the state types and apply functions. Calls: `container::ops` (decode),
//! `container::checkpoint` (restore). Called by: the writer, recovery, reads, the storage writer.

use std::collections::HashMap;

pub use crate::container::checkpoint::ChunkId;
pub(crate) use crate::container::checkpoint::TimeMark;
use crate::container::checkpoint::{self, ChunkRef, IndexEntry};
use crate::container::ops::Op;
use crate::container::seam::{Committed, ContainerStateMachine};

/// Append times are kept to this resolution (milliseconds): an event's time is the start of
/// the second in which its group was committed (or the segment's previous time, if later).
pub(crate) const TIME_RESOLUTION_MS: u64 = 1000;

/// Durable per-segment metadata and read index.
#[derive(Debug, Default, PartialEq, Eq)]
pub(super) struct SegmentMeta {
    /// Container-local id of this incarnation of the name (ids are never reused), so that a
    /// check made against it can be tied to the same segment later.
    pub(super) local: u64,
    pub(super) start_offset: u64,
    pub(super) length: u64,
    pub(super) sealed: bool,
    pub(super) writers: HashMap<String, i64>,
    pub(super) attributes: HashMap<String, u64>,
    /// Bytes still in the Tier-1 log, in offset order.
    pub(super) index: Vec<IndexEntry>,
    /// Bytes in Tier-2, in offset order. Each byte of `[start_offset, length)` is in exactly
    /// one of `index` and `chunks` (an entry straddling the start offset stays whole).
    pub(super) chunks: Vec<ChunkRef>,
    /// The time index: where the append time changes, in offset (and time) order.
    pub(super) times: Vec<TimeMark>,
    /// Events ever appended (merged ones included; truncation does not lower it).
    pub(super) events: u64,
}

impl SegmentMeta {
    /// Adds a mark for bytes appended at `offset` in a group of time `now_ms`.
    fn stamp(&mut self, offset: u64, now_ms: u64) {
        let ms = now_ms / TIME_RESOLUTION_MS * TIME_RESOLUTION_MS;
        if ms > self.times.last().map_or(0, |m| m.ms) {
            self.times.push(TimeMark { offset, ms });
        }
    }

    /// The append time of the event at `offset` (0 before the first mark).
    pub(super) fn time_at(&self, offset: u64) -> u64 {
        let i = self.times.partition_point(|m| m.offset <= offset);
        if i == 0 { 0 } else { self.times[i - 1].ms }
    }

    /// The first readable event appended at or after `ms`: its offset and time, or `None` if
    /// every event is older.
    pub(super) fn first_at_or_after(&self, ms: u64) -> Option<(u64, u64)> {
        let m = self.times.get(self.times.partition_point(|m| m.ms < ms))?;
        if m.offset >= self.length {
            return None;
        }
        if m.offset < self.start_offset {
            return Some((self.start_offset, self.time_at(self.start_offset)));
        }
        Some((m.offset, m.ms))
    }
}

/// What readers see: only durable state.
#[derive(Debug, Default, PartialEq, Eq)]
pub(super) struct Durable {
    pub(super) segments: HashMap<String, SegmentMeta>,
    pub(super) names: HashMap<u64, String>,
    /// Above every local id ever handed out (ids are never reused, also not after a delete:
    /// Tier-2 chunk objects are named by them).
    pub(super) next_local: u64,
    /// The time of the group being applied (its `Time` operation).
    pub(super) time_ms: u64,
}

/// The writer's view, including written-but-not-yet-durable operations.
#[derive(Debug, Default, PartialEq, Eq)]
pub(super) struct Written {
    pub(super) segments: HashMap<String, WrittenSegment>,
    /// Local id -> name, so operations from the log find their segment in O(1).
    pub(super) names: HashMap<u64, String>,
    pub(super) next_local: u64,
}

#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(super) struct WrittenSegment {
    pub(super) local: u64,
    pub(super) start_offset: u64,
    pub(super) length: u64,
    pub(super) sealed: bool,
    pub(super) writers: HashMap<String, i64>,
    pub(super) attributes: HashMap<String, u64>,
}

pub(super) fn apply_written(w: &mut Written, op: &Op<'_>) {
    let Written { segments, names, next_local } = w;
    fn by_local<'a>(
        names: &HashMap<u64, String>,
        segments: &'a mut HashMap<String, WrittenSegment>,
        local: u64,
    ) -> Option<&'a mut WrittenSegment> {
        names.get(&local).and_then(|n| segments.get_mut(n))
    }
    match *op {
        Op::Create { local, name } => {
            segments.insert(name.to_owned(), WrittenSegment { local, ..Default::default() });
            names.insert(local, name.to_owned());
            *next_local = (*next_local).max(local + 1);
        }
        Op::Append { local, offset, writer, last_event_number, data_len, .. } => {
            if let Some(s) = by_local(names, segments, local) {
                s.length = offset + data_len as u64;
                if !writer.is_empty() {
                    s.writers.insert(writer.to_owned(), last_event_number);
                }
            }
        }
        Op::Seal { local } => {
            if let Some(s) = by_local(names, segments, local) {
                s.sealed = true;
            }
        }
        Op::Delete { local } => {
            if let Some(name) = names.remove(&local) {
                segments.remove(&name);
            }
        }
        Op::Truncate { local, start_offset } => {
            if let Some(s) = by_local(names, segments, local) {
                s.start_offset = start_offset;
            }
        }
        Op::Merge { target, source } => {
            let Some(src) = names.remove(&source).and_then(|n| segments.remove(&n)) else { return };
            if let Some(t) = by_local(names, segments, target) {
                t.length += src.length - src.start_offset;
            }
        }
        Op::Attribute { local, key, value } => {
            if let Some(s) = by_local(names, segments, local) {
                s.attributes.insert(key.to_owned(), value);
            }
        }
        Op::Tiered { .. } | Op::Time { .. } => {}
    }
}

/// Applies one durable operation of the record `at` (where its payload starts, and its
/// operations in it). Tier-2 chunks that no segment refers to any more are added to `garbage`.
pub(super) fn apply_durable(d: &mut Durable, op: &Op<'_>, at: Committed, garbage: &mut Vec<ChunkId>) {
    match *op {
        Op::Create { local, name } => {
            d.segments.insert(name.to_owned(), SegmentMeta { local, ..Default::default() });
            d.names.insert(local, name.to_owned());
            d.next_local = d.next_local.max(local + 1);
        }
        Op::Append { local, offset, writer, last_event_number, event_count, data_pos, data_len } => {
            let Some(s) = d.names.get(&local).and_then(|n| d.segments.get_mut(n)) else { return };
            s.events += event_count as u64;
            if data_len > 0 {
                s.stamp(offset, d.time_ms);
                let within = at.body as u64 + data_pos as u64;
                s.index.push(IndexEntry {
                    offset,
                    len: data_len as u32,
                    within: within as u32,
                    addr: at.addr.offset(within),
                });
            }
            s.length = offset + data_len as u64;
            if !writer.is_empty() {
                s.writers.insert(writer.to_owned(), last_event_number);
            }
        }
        Op::Seal { local } => {
            if let Some(s) = d.names.get(&local).and_then(|n| d.segments.get_mut(n)) {
                s.sealed = true;
            }
        }
        Op::Delete { local } => {
            if let Some(name) = d.names.remove(&local)
                && let Some(s) = d.segments.remove(&name)
            {
                garbage.extend(s.chunks.iter().map(|c| c.obj));
            }
        }
        Op::Truncate { local, start_offset } => {
            if let Some(s) = d.names.get(&local).and_then(|n| d.segments.get_mut(n)) {
                s.start_offset = start_offset;
                // Entries wholly before the new start are unreachable; the one straddling it
                // stays (reads start inside it, at an event boundary).
                s.index.retain(|e| e.offset + e.len as u64 > start_offset);
                // The mark at or before the new start gives the first event's time.
                let before = s.times.partition_point(|m| m.offset <= start_offset);
                s.times.drain(..before.saturating_sub(1));
                s.chunks.retain(|c| {
                    let keep = c.end() > start_offset;
                    if !keep {
                        garbage.push(c.obj);
                    }
                    keep
                });
            }
        }
        Op::Tiered { local, offset, len, tag } => {
            let Some(s) = d.names.get(&local).and_then(|n| d.segments.get_mut(n)) else { return };
            let end = offset + len;
            // The entries of [offset, end) leave the Tier-1 index: reads now go to Tier-2.
            s.index.retain(|e| e.offset < offset || e.offset + e.len as u64 > end);
            let chunk = ChunkRef { offset, len, obj: ChunkId { local, offset, tag }, skip: 0 };
            if chunk.end() <= s.start_offset {
                garbage.push(chunk.obj);
            } else {
                let at = s.chunks.partition_point(|c| c.offset < offset);
                s.chunks.insert(at, chunk);
            }
        }
        Op::Merge { target, source } => {
            let Some(src) = d.names.remove(&source).and_then(|n| d.segments.remove(&n)) else { return };
            let Some(t) = d.names.get(&target).and_then(|n| d.segments.get_mut(n)) else { return };
            // The merged events are appended now: they get this group's time, not the source's.
            if src.length > src.start_offset {
                t.stamp(t.length, d.time_ms);
            }
            // Truncated events are not told apart from readable ones: the count is the total.
            t.events += src.events;
            // The source's readable bytes [start, length) become target bytes
            // [t.length, t.length + length - start), pointing at the same log bytes: no copy.
            for e in src.index {
                if e.offset + e.len as u64 <= src.start_offset {
                    continue;
                }
                let skip = src.start_offset.saturating_sub(e.offset);
                t.index.push(IndexEntry {
                    offset: t.length + (e.offset + skip - src.start_offset),
                    len: (e.len as u64 - skip) as u32,
                    within: e.within + skip as u32,
                    addr: e.addr.offset(skip),
                });
            }
            for c in src.chunks {
                if c.end() <= src.start_offset {
                    garbage.push(c.obj);
                    continue;
                }
                let skip = src.start_offset.saturating_sub(c.offset);
                t.chunks.push(ChunkRef {
                    offset: t.length + (c.offset + skip - src.start_offset),
                    len: c.len - skip,
                    obj: c.obj,
                    skip: c.skip + skip,
                });
            }
            t.length += src.length - src.start_offset;
        }
        Op::Attribute { local, key, value } => {
            if let Some(s) = d.names.get(&local).and_then(|n| d.segments.get_mut(n)) {
                s.attributes.insert(key.to_owned(), value);
            }
        }
        Op::Time { ms } => d.time_ms = ms,
    }
}

/// Builds both views from a checkpoint record's payload.
pub(super) fn from_checkpoint(payload: &[u8]) -> Result<(Durable, Written), String> {
    let cp = checkpoint::decode(payload).map_err(|e| e.to_string())?;
    Ok(from_decoded(cp))
}

/// Builds both views from a decoded checkpoint.
pub(super) fn from_decoded(cp: checkpoint::Checkpoint) -> (Durable, Written) {
    let mut durable = Durable { next_local: cp.next_local, time_ms: cp.time_ms, ..Default::default() };
    for s in cp.segments {
        durable.names.insert(s.local, s.name.clone());
        durable.segments.insert(
            s.name,
            SegmentMeta {
                local: s.local,
                start_offset: s.start_offset,
                length: s.length,
                sealed: s.sealed,
                writers: s.writers,
                attributes: s.attributes,
                index: s.index,
                chunks: s.chunks,
                times: s.times,
                events: s.events,
            },
        );
    }
    // Nothing is in flight at a checkpoint: the writer's view is the durable state.
    let written = durable.written();
    (durable, written)
}

impl Durable {
    /// The writer's view of this state, for a writer that starts with nothing in flight (a
    /// replica that just became the leader of its container).
    pub(super) fn written(&self) -> Written {
        let segments = self
            .segments
            .iter()
            .map(|(name, s)| {
                let w = WrittenSegment {
                    local: s.local,
                    start_offset: s.start_offset,
                    length: s.length,
                    sealed: s.sealed,
                    writers: s.writers.clone(),
                    attributes: s.attributes.clone(),
                };
                (name.clone(), w)
            })
            .collect();
        Written { segments, names: self.names.clone(), next_local: self.next_local }
    }

    /// Encodes this state as a checkpoint record's payload (the state machine's snapshot);
    /// `next_local` is the next segment id the writer hands out.
    pub(super) fn encode_checkpoint(&self, next_local: u64, buf: &mut Vec<u8>) {
        let views = self.segments.iter().map(|(name, s)| checkpoint::SegmentView {
            local: s.local,
            name,
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
        checkpoint::encode(buf, next_local, self.time_ms, views);
    }
}

/// The live state machine: the writer applies each committed group to the durable view.
impl ContainerStateMachine for Durable {
    fn apply_ops(&mut self, at: Committed, ops: &[Op<'_>]) -> Vec<ChunkId> {
        let mut garbage = Vec::new();
        for op in ops {
            apply_durable(self, op, at, &mut garbage);
        }
        garbage
    }

    fn restore(&mut self, checkpoint: &[u8]) -> Result<(), String> {
        *self = from_checkpoint(checkpoint)?.0;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::log::LogAddress;

    fn apply(d: &mut Durable, ops: &[Op<'_>]) {
        let at = Committed { lsn: 1, addr: LogAddress { file: 1, pos: 0 }, body: 0 };
        d.apply_ops(at, ops);
    }

    fn append(local: u64, offset: u64, len: usize) -> Op<'static> {
        Op::Append { local, offset, writer: "", last_event_number: 0, event_count: 1, data_pos: 0, data_len: len }
    }

    #[test]
    fn append_times_are_per_second_marks_that_never_go_back() {
        let mut d = Durable::default();
        apply(&mut d, &[Op::Create { local: 1, name: "a" }, Op::Time { ms: 1_000_500 }, append(1, 0, 10)]);
        apply(&mut d, &[Op::Time { ms: 1_000_900 }, append(1, 10, 10)]);
        apply(&mut d, &[Op::Time { ms: 1_002_100 }, append(1, 20, 10)]);
        // The clock went back: the segment keeps its time.
        apply(&mut d, &[Op::Time { ms: 999_000 }, append(1, 30, 10)]);
        let s = &d.segments["a"];
        assert_eq!(s.times, [TimeMark { offset: 0, ms: 1_000_000 }, TimeMark { offset: 20, ms: 1_002_000 }]);
        assert_eq!((s.time_at(15), s.time_at(35)), (1_000_000, 1_002_000));
        assert_eq!(s.first_at_or_after(1_000_000), Some((0, 1_000_000)));
        assert_eq!(s.first_at_or_after(1_001_000), Some((20, 1_002_000)));
        assert_eq!(s.first_at_or_after(1_003_000), None);

        // Truncation keeps the mark that gives the first readable event its time.
        apply(&mut d, &[Op::Truncate { local: 1, start_offset: 25 }]);
        let s = &d.segments["a"];
        assert_eq!(s.times, [TimeMark { offset: 20, ms: 1_002_000 }]);
        assert_eq!(s.first_at_or_after(1_000_000), Some((25, 1_002_000)));

        // Merged events are appended when merged: the target's time, not the source's.
        apply(&mut d, &[Op::Create { local: 2, name: "b" }, Op::Time { ms: 1_001_000 }, append(2, 0, 5)]);
        apply(&mut d, &[Op::Seal { local: 2 }, Op::Time { ms: 1_005_000 }, Op::Merge { target: 1, source: 2 }]);
        let s = &d.segments["a"];
        assert_eq!(s.times.last(), Some(&TimeMark { offset: 40, ms: 1_005_000 }));
        assert_eq!(s.first_at_or_after(1_004_000), Some((40, 1_005_000)));

        // A checkpoint keeps the index and the group time.
        let mut buf = Vec::new();
        d.encode_checkpoint(d.next_local, &mut buf);
        assert_eq!(from_checkpoint(&buf).unwrap().0, d);
    }
}
