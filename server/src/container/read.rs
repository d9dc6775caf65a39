//! Reads of a container's durable bytes, from wherever they are: a run of the Tier-1 log
//! (CRC-checked on first read if recovery did not read it) or a Tier-2 chunk (fetched whole,
//! with the next ones read ahead).
//!
//! Reads look only at the durable state and always return whole events, starting at an event
//! boundary. Owns: read planning and serving. Calls: `crate::log` (reader side), `crate::tier2`.
//! Called by: `Container`'s users (`crate::store`, the network services).

use bytes::Bytes;
use nadi_proto::framing::{self, EVENT_HEADER_LEN};

use crate::container::checkpoint::{ChunkRef, IndexEntry};
use crate::container::state::ChunkId;
use crate::container::{Container, ReadChunk};
use crate::error::StoreError;
use crate::log::LogError;
use crate::tier2::Tier2Error;

impl Container {
    /// Reads whole events of `name` from `offset`, up to about `max_bytes` (at least one event
    /// if any is available), from the Tier-1 log only: bytes that moved to Tier-2 fail with
    /// `Internal` (use [`read_any`](Self::read_any)). Returns an empty chunk at the tail of an
    /// unsealed segment.
    pub fn read(&self, name: &str, offset: u64, max_bytes: usize) -> Result<ReadChunk, StoreError> {
        match self.plan(name, offset, max_bytes)? {
            Plan::Done(chunk) => Ok(chunk),
            Plan::Tier1 { pieces, length, sealed } => {
                self.serve_tier1(name, offset, max_bytes, pieces, length, sealed, Cut::Events)
            }
            Plan::Tier2 { .. } => Err(StoreError::Internal(format!(
                "segment {name}: offset {offset} is in Tier-2; read it with read_any"
            ))),
        }
    }

    /// Reads like [`read`](Self::read), from Tier-1 or Tier-2, wherever the bytes are. Reading
    /// from Tier-2 starts fetching the next chunks of the segment in the background.
    pub async fn read_any(&self, name: &str, offset: u64, max_bytes: usize) -> Result<ReadChunk, StoreError> {
        self.read_holding(name, offset, max_bytes, &mut None).await
    }

    /// Like [`read_any`](Self::read_any), for a reader that goes on reading: `held` keeps the
    /// Tier-2 chunk last read from, so the next reads of the same chunk need neither the cache
    /// nor a fetch, even if the cache evicted it meanwhile (one chunk per reader at most).
    pub async fn read_holding(
        &self,
        name: &str,
        offset: u64,
        max_bytes: usize,
        held: &mut Option<HeldChunk>,
    ) -> Result<ReadChunk, StoreError> {
        self.read_cut(name, offset, max_bytes, held, Cut::Events).await
    }

    /// Reads up to `max_bytes` of `name` from any `offset` within it, as bytes: not cut at event
    /// boundaries and not checked to be events (the Pravega front end serves segments so,
    /// Pravega readers re-assemble events themselves, and a Pravega byte stream holds no
    /// events). Returns an empty chunk at the tail of an unsealed segment.
    pub async fn read_bytes(
        &self,
        name: &str,
        offset: u64,
        max_bytes: usize,
        held: &mut Option<HeldChunk>,
    ) -> Result<ReadChunk, StoreError> {
        self.read_cut(name, offset, max_bytes.max(1), held, Cut::Bytes).await
    }

    async fn read_cut(
        &self,
        name: &str,
        offset: u64,
        max_bytes: usize,
        held: &mut Option<HeldChunk>,
        cut: Cut,
    ) -> Result<ReadChunk, StoreError> {
        let mut tries = 0;
        loop {
            tries += 1;
            let res = match self.plan(name, offset, max_bytes)? {
                Plan::Done(chunk) => return Ok(chunk),
                Plan::Tier1 { pieces, length, sealed } => {
                    self.serve_tier1(name, offset, max_bytes, pieces, length, sealed, cut)
                }
                Plan::Tier2 { chunk, next, length, sealed } => {
                    return self.serve_tier2(name, offset, max_bytes, chunk, next, length, sealed, held, cut).await;
                }
            };
            match res {
                // The bytes moved to Tier-2 and their log file was recycled while we copied:
                // look again.
                Err(StoreError::Internal(_)) if tries < 3 => continue,
                r => return r,
            }
        }
    }

    /// Decides where a read is served from, under the durable lock.
    fn plan(&self, name: &str, offset: u64, max_bytes: usize) -> Result<Plan, StoreError> {
        self.serving()?;
        let d = self.shared.durable.read();
        let s = d.segments.get(name).ok_or_else(|| StoreError::SegmentNotFound(name.to_owned()))?;
        if offset < s.start_offset {
            return Err(StoreError::Truncated { segment: name.to_owned(), offset, start: s.start_offset });
        }
        if offset > s.length {
            return Err(StoreError::BadOffset { segment: name.to_owned(), offset, length: s.length });
        }
        if offset == s.length {
            if !s.sealed && self.shared.damage.is_some() {
                return Err(self.damaged());
            }
            return Ok(Plan::Done(ReadChunk {
                offset,
                data: Bytes::new(),
                end_of_segment: s.sealed,
                segment_length: s.length,
            }));
        }
        let c = s.chunks.partition_point(|c| c.end() <= offset);
        if let Some(chunk) = s.chunks.get(c).filter(|c| c.offset <= offset) {
            let next = s.chunks[c + 1..].iter().take(READ_AHEAD_CHUNKS).copied().collect();
            return Ok(Plan::Tier2 { chunk: *chunk, next, length: s.length, sealed: s.sealed });
        }
        let first = s.index.partition_point(|e| e.offset + e.len as u64 <= offset);
        let mut pieces: Vec<IndexEntry> = Vec::new();
        let mut total = 0usize;
        for e in &s.index[first..] {
            // Stop where the bytes continue in Tier-2 (after a merge).
            if pieces.last().is_some_and(|p| p.offset + p.len as u64 != e.offset) {
                break;
            }
            pieces.push(*e);
            total += e.len as usize;
            if total >= max_bytes {
                break;
            }
        }
        Ok(Plan::Tier1 { pieces, length: s.length, sealed: s.sealed })
    }

    #[allow(clippy::too_many_arguments)]
    fn serve_tier1(
        &self,
        name: &str,
        offset: u64,
        max_bytes: usize,
        pieces: Vec<IndexEntry>,
        length: u64,
        sealed: bool,
        cut: Cut,
    ) -> Result<ReadChunk, StoreError> {
        let Some(first) = pieces.first().copied() else {
            return Err(StoreError::Internal(format!("segment {name}: no index entry for offset {offset}")));
        };
        // A read stops before a damaged record and fails only if it starts in one.
        let mut pieces = pieces;
        if let Err((bad, e)) = self.verify_pieces(name, &pieces) {
            if bad == 0 {
                return Err(e);
            }
            pieces.truncate(bad);
        }
        let mut buf = Vec::with_capacity(pieces.iter().map(|p| p.len as usize).sum());
        for p in &pieces {
            self.shared
                .log
                .read_into(p.addr, p.len as usize, &mut buf)
                .map_err(|e| StoreError::Internal(e.to_string()))?;
        }
        let data = self.cut(cut, name, Bytes::from(buf), first.offset, offset, max_bytes, length)?;
        let end = offset + data.len() as u64;
        self.shared.metrics.read(1, data.len());
        Ok(ReadChunk { offset, end_of_segment: sealed && end == length, data, segment_length: length })
    }

    #[allow(clippy::too_many_arguments)]
    async fn serve_tier2(
        &self,
        name: &str,
        offset: u64,
        max_bytes: usize,
        chunk: ChunkRef,
        next: Vec<ChunkRef>,
        length: u64,
        sealed: bool,
        held: &mut Option<HeldChunk>,
        cut: Cut,
    ) -> Result<ReadChunk, StoreError> {
        let id = self.shared.id;
        let Some(t2) = &self.shared.tier2 else {
            return Err(StoreError::Internal(format!("segment {name}: data is in Tier-2, which is not configured")));
        };
        for n in &next {
            t2.prefetch(t2.chunk_key(id, n.obj), n.skip + n.len);
        }
        let key = t2.chunk_key(id, chunk.obj);
        let chunk_id = chunk.obj;
        let (data, boundary) = match held {
            Some(h) if h.id == chunk_id => (h.data.clone(), h.next),
            _ => {
                let data = t2.get(&key).await.map_err(|e| tier2_error(id, name, e))?;
                *held = Some(HeldChunk { id: chunk_id, data: data.clone(), next: u64::MAX });
                (data, u64::MAX)
            }
        };
        let end = chunk.skip + chunk.len;
        if (data.len() as u64) < end {
            return Err(StoreError::Corrupt {
                container: id,
                detail: format!("segment {name}: Tier-2 chunk {key} holds {} bytes, the index needs {end}", data.len()),
            });
        }
        let mut bytes = data.slice(chunk.skip as usize..end as usize);
        let mut from = chunk.offset;
        if offset == boundary || cut == Cut::Bytes {
            // Where this reader's last read ended (an event boundary, no need to walk the events
            // before it again), or a read of bytes (no events to walk).
            bytes = bytes.slice((offset - chunk.offset) as usize..);
            from = offset;
        }
        let data = self.cut(cut, name, bytes, from, offset, max_bytes, length)?;
        let end = offset + data.len() as u64;
        if let Some(h) = held {
            h.next = end;
        }
        self.shared.metrics.read(2, data.len());
        Ok(ReadChunk { offset, end_of_segment: sealed && end == length, data, segment_length: length })
    }

    /// Cuts what a read returns out of `buf` (segment bytes from `buf_offset` on).
    #[allow(clippy::too_many_arguments)]
    fn cut(
        &self,
        cut: Cut,
        name: &str,
        buf: Bytes,
        buf_offset: u64,
        offset: u64,
        max_bytes: usize,
        length: u64,
    ) -> Result<Bytes, StoreError> {
        match cut {
            Cut::Events => self.cut_events(name, buf, buf_offset, offset, max_bytes, length),
            Cut::Bytes => {
                let skip = (offset - buf_offset) as usize;
                if skip >= buf.len() {
                    return Err(StoreError::Internal(format!("segment {name}: no bytes at offset {offset}")));
                }
                Ok(buf.slice(skip..buf.len().min(skip + max_bytes)))
            }
        }
    }

    /// `buf` holds segment bytes from `buf_offset` on (whole events, ending on an event
    /// boundary); returns the events from `offset` (which must be a boundary) up to about
    /// `max_bytes`, at least one.
    fn cut_events(
        &self,
        name: &str,
        buf: Bytes,
        buf_offset: u64,
        offset: u64,
        max_bytes: usize,
        length: u64,
    ) -> Result<Bytes, StoreError> {
        let skip = (offset - buf_offset) as usize;
        let mut at = 0usize;
        let mut cut = None;
        let mut stop = buf.len();
        while at + EVENT_HEADER_LEN <= buf.len() {
            if at >= skip && cut.is_none() {
                cut = Some(at);
            }
            let len = framing::header_len(&buf[at..at + EVENT_HEADER_LEN], at).map_err(|e| StoreError::Corrupt {
                container: self.shared.id,
                detail: format!("segment {name}: bad event header at offset {}: {e}", buf_offset + at as u64),
            })?;
            let next = at + EVENT_HEADER_LEN + len;
            if let Some(start) = cut
                && next - start > max_bytes
                && at > start
            {
                stop = at;
                break;
            }
            at = next;
        }
        if cut != Some(skip) {
            return Err(StoreError::BadOffset { segment: name.to_owned(), offset, length });
        }
        Ok(buf.slice(skip..stop.min(buf.len())))
    }
}

/// How a read cuts the bytes it returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Cut {
    /// Whole events from an event boundary (Nadi's reads).
    Events,
    /// Bytes as they are, from any offset (the Pravega front end's reads).
    Bytes,
}

/// The Tier-2 chunk a reader is in (see [`Container::read_holding`]).
#[derive(Debug, Clone)]
pub struct HeldChunk {
    id: ChunkId,
    data: Bytes,
    /// Where the reader's last read from it ended: an event boundary.
    next: u64,
}

/// Chunks fetched ahead of a read from Tier-2.
const READ_AHEAD_CHUNKS: usize = 2;

/// Where a read is served from.
enum Plan {
    /// Nothing to fetch (the tail).
    Done(ReadChunk),
    Tier1 {
        pieces: Vec<IndexEntry>,
        length: u64,
        sealed: bool,
    },
    Tier2 {
        chunk: ChunkRef,
        next: Vec<ChunkRef>,
        length: u64,
        sealed: bool,
    },
}

fn tier2_error(container: u32, name: &str, e: Tier2Error) -> StoreError {
    match e {
        Tier2Error::Corrupt { .. } | Tier2Error::Missing { .. } => {
            tracing::error!(container, segment = name, error = %e, "Tier-2 chunk fails its checks; not serving it");
            StoreError::Corrupt { container, detail: format!("segment {name}: {e}") }
        }
        e => StoreError::Unavailable(format!("segment {name}: {e}")),
    }
}

impl Container {
    /// Checks the CRC of every record the pieces come from that recovery did not read, once
    /// per record. Damage is reported, never served and never skipped: the error comes with
    /// the index of the first piece that must not be served.
    pub(super) fn verify_pieces(&self, name: &str, pieces: &[IndexEntry]) -> Result<(), (usize, StoreError)> {
        let shared = &self.shared;
        for (i, p) in pieces.iter().enumerate() {
            let record = p.record();
            if record >= shared.unverified_below || shared.verified.lock().contains(&record) {
                continue;
            }
            match shared.log.verify_record(record) {
                Ok(()) => {
                    shared.verified.lock().insert(record);
                }
                Err(e @ LogError::Corrupt { .. }) => {
                    let (from, to) = (p.offset, p.offset + p.len as u64);
                    tracing::error!(container = shared.id, segment = name, from, to, error = %e,
                        "Tier-1 log is damaged before the last checkpoint; refusing to serve the damaged range");
                    return Err((
                        i,
                        StoreError::Corrupt {
                            container: shared.id,
                            detail: format!("bytes {from}..{to} of segment {name} are damaged: {e}"),
                        },
                    ));
                }
                Err(e) => return Err((i, StoreError::Internal(e.to_string()))),
            }
        }
        Ok(())
    }
}
