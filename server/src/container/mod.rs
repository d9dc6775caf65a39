//! A segment container: a set of segments sharing one Tier-1 log and one writer thread.
//!
//! Every mutation (create, append, seal, delete) is a [`Request`] sent over a bounded channel to
//! the container's writer thread, which does group commit. The queue is bounded by count and by
//! bytes: a sender first takes one permit per byte of its request from a semaphore
//! ([`ContainerOptions::queue_bytes`]), and the writer gives them back once the request's group
//! has been answered, so a writer faster than the disk waits instead of piling up memory.
//!
//! ```text
//!  requests ──► [byte budget] ──► [bounded channel] ──► writer thread:
//!                                       1. take every queued request (up to ~4 MiB)
//!                                       2. validate against the *written* state, encode into
//!                                          one batch payload
//!                                       3. log.append(batch) + log.sync()   (one msync)
//!                                       4. apply to the *durable* state (what readers see),
//!                                          wake tail readers, answer every request
//! ```
//!
//! Two views are kept apart on purpose:
//! - the writer's private [`Written`] state (lengths, sealed flags, writer event numbers including
//!   records not yet synced), used only to validate and order new requests;
//! - the shared [`Durable`] state behind a lock: lengths, sealed flags, writer event numbers and
//!   the read index, updated only after `sync`. Readers and `info` look only at this, so nothing
//!   is ever served or acknowledged before it is durable.
//!
//! Metadata checkpoints: after every `checkpoint_interval` bytes of batch records (and on
//! request), the writer thread writes a `Checkpoint` record holding the whole durable state,
//! read index included (see [`crate::container::checkpoint`]), between two groups, when the written and
//! durable states are equal. Recovery starts from the newest valid checkpoint and replays only
//! the records after it, so start-up time is bounded by the interval. The records before that
//! checkpoint were not read at start, so [`Container::read`] checks the CRC of each such record
//! the first time it serves bytes from it, and refuses the range with `Corrupt` (naming file
//! and offset) if it fails.
//!
//! A failed `sync` aborts the process: after a failed fsync the kernel may have dropped the
//! dirty pages, so the log's contents are unknown and continuing could acknowledge lost data
//! (the PostgreSQL "fsyncgate" lesson; Neon's safekeeper does the same).

pub mod checkpoint;
pub mod ops;
pub mod storage_writer;

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use nadi_proto::framing::{EVENT_HEADER_LEN, MAX_EVENT_SIZE};
use parking_lot::{Mutex, RwLock};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc, oneshot, watch};

use crate::error::StoreError;
use crate::log::file::{FileLog, FileLogOptions};
use crate::log::{Corruption, LogAddress, LogError, LogReader, LogWriter, Lsn, RecordKind, RecoveredRecord, Replayer};
use crate::tier2::{Tier2, Tier2Error};
use checkpoint::{ChunkRef, IndexEntry, SegmentView};
use ops::Op;

/// Largest payload of one append batch (many events), in bytes.
pub const MAX_BATCH_BYTES: usize = 16 * 1024 * 1024;
/// The writer thread stops gathering requests into one record past this many bytes.
const GROUP_COMMIT_BYTES: usize = 4 * 1024 * 1024;
/// Requests queued per container before senders wait (backpressure).
const QUEUE_DEPTH: usize = 1024;
/// Default bytes of requests a container accepts before senders wait (backpressure).
pub const DEFAULT_QUEUE_BYTES: u64 = 64 * 1024 * 1024;

/// Default bytes of batch records between two metadata checkpoints.
pub const DEFAULT_CHECKPOINT_INTERVAL: u64 = 64 * 1024 * 1024;

/// Settings of a container.
#[derive(Debug, Clone)]
pub struct ContainerOptions {
    pub log: FileLogOptions,
    /// A metadata checkpoint is written once this many bytes of batch records were written
    /// since the last one. Recovery replays at most about this much log (plus one group).
    pub checkpoint_interval: u64,
    /// Bytes of requests (mostly append data) accepted but not yet answered, at most. A sender
    /// waits for room before its request is queued, so a writer faster than the disk is slowed
    /// to its pace and the memory held is bounded. A single request larger than this waits for
    /// an empty queue instead. At most 4 GiB.
    pub queue_bytes: u64,
    /// Where segment data moves once it leaves the Tier-1 log; `None`: it stays in Tier-1.
    pub tier2: Option<Arc<Tier2>>,
    /// When the storage writer moves data to Tier-2.
    pub tiering: crate::container::storage_writer::TieringOptions,
}

impl Default for ContainerOptions {
    fn default() -> Self {
        Self {
            log: FileLogOptions::default(),
            checkpoint_interval: DEFAULT_CHECKPOINT_INTERVAL,
            queue_bytes: DEFAULT_QUEUE_BYTES,
            tier2: None,
            tiering: Default::default(),
        }
    }
}

/// Result of a durable append.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AppendAck {
    /// Every event of the writer numbered up to this is durable.
    pub last_event_number: i64,
    /// The durable length of the segment after this append.
    pub segment_length: u64,
}

/// A point-in-time view of a segment, as durable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SegmentInfo {
    pub name: String,
    pub start_offset: u64,
    pub length: u64,
    pub sealed: bool,
    pub writers: Vec<(String, i64)>,
    pub attributes: Vec<(String, u64)>,
}

/// A chunk of a segment returned by a read.
#[derive(Debug, Clone)]
pub struct ReadChunk {
    pub offset: u64,
    /// Whole framed events starting at `offset`. Empty at the tail.
    pub data: Bytes,
    /// The segment is sealed and this chunk reaches its end.
    pub end_of_segment: bool,
    pub segment_length: u64,
}

/// A mutation for the writer thread, with where to send its outcome.
#[derive(Debug)]
enum Request {
    Create {
        name: String,
        reply: oneshot::Sender<Result<bool, StoreError>>,
    },
    Append {
        name: String,
        writer: String,
        last_event_number: i64,
        event_count: u32,
        data: Bytes,
        reply: oneshot::Sender<Result<AppendAck, StoreError>>,
    },
    Seal {
        name: String,
        reply: oneshot::Sender<Result<u64, StoreError>>,
    },
    Delete {
        name: String,
        reply: oneshot::Sender<Result<(), StoreError>>,
    },
    /// An append without a writer id that succeeds only if the segment's written length is
    /// `expected_offset` (for optimistic concurrency, e.g. state synchronizers).
    ConditionalAppend {
        name: String,
        expected_offset: u64,
        event_count: u32,
        data: Bytes,
        reply: oneshot::Sender<Result<AppendAck, StoreError>>,
    },
    /// `local` is the local id of the incarnation of `name` whose boundary was checked; the
    /// writer refuses the truncation if `name` now is another segment (deleted and created
    /// again in between).
    Truncate {
        name: String,
        local: u64,
        offset: u64,
        reply: oneshot::Sender<Result<(), StoreError>>,
    },
    Merge {
        target: String,
        source: String,
        reply: oneshot::Sender<Result<u64, StoreError>>,
    },
    /// Sets `key` to `value` if its current value is `expected` (`None`: absent).
    UpdateAttribute {
        name: String,
        key: String,
        expected: Option<u64>,
        value: u64,
        reply: oneshot::Sender<Result<(), StoreError>>,
    },
    /// Writes a metadata checkpoint now (after everything queued before it is durable) and
    /// answers with its lsn.
    Checkpoint {
        reply: oneshot::Sender<Result<Lsn, StoreError>>,
    },
    /// Records that `[offset, offset + len)` of segment incarnation `local` is in the Tier-2
    /// chunk it wrote at `offset` (sent by the storage writer, on the metadata channel).
    Tiered {
        name: String,
        local: u64,
        offset: u64,
        len: u64,
        reply: oneshot::Sender<Result<(), StoreError>>,
    },
    /// A barrier: answered once everything queued before it is durable.
    WriterState {
        name: String,
        writer: String,
        reply: oneshot::Sender<Result<(i64, u64), StoreError>>,
    },
}

/// Durable per-segment metadata and read index.
#[derive(Debug, Default, PartialEq, Eq)]
struct SegmentMeta {
    /// Container-local id of this incarnation of the name (ids are never reused), so that a
    /// check made against it can be tied to the same segment later.
    local: u64,
    start_offset: u64,
    length: u64,
    sealed: bool,
    writers: HashMap<String, i64>,
    attributes: HashMap<String, u64>,
    /// Bytes still in the Tier-1 log, in offset order.
    index: Vec<IndexEntry>,
    /// Bytes in Tier-2, in offset order. Each byte of `[start_offset, length)` is in exactly
    /// one of `index` and `chunks` (an entry straddling the start offset stays whole).
    chunks: Vec<ChunkRef>,
}

/// A Tier-2 chunk object of a container: (segment incarnation that wrote it, its offset).
pub type ChunkId = (u64, u64);

/// What readers see: only durable state.
#[derive(Debug, Default, PartialEq, Eq)]
struct Durable {
    segments: HashMap<String, SegmentMeta>,
    names: HashMap<u64, String>,
}

/// The writer's view, including written-but-not-yet-durable operations.
#[derive(Debug, Default, PartialEq, Eq)]
struct Written {
    segments: HashMap<String, WrittenSegment>,
    /// Local id -> name, so operations from the log find their segment in O(1).
    names: HashMap<u64, String>,
    next_local: u64,
}

#[derive(Debug, Default, Clone, PartialEq, Eq)]
struct WrittenSegment {
    local: u64,
    start_offset: u64,
    length: u64,
    sealed: bool,
    writers: HashMap<String, i64>,
    attributes: HashMap<String, u64>,
}

/// State shared between the writer thread, readers and the container handle.
#[derive(Debug)]
struct Shared {
    id: u32,
    durable: RwLock<Durable>,
    log: Arc<dyn LogReader>,
    /// The durable lsn; tail readers wait for it to change.
    durable_lsn: watch::Sender<Lsn>,
    damage: Option<Corruption>,
    /// Records whose payload starts before this address were not read by recovery (they
    /// precede the checkpoint it started from): their CRCs are checked on first read.
    unverified_below: LogAddress,
    /// Such records whose CRC was checked since.
    verified: Mutex<HashSet<LogAddress>>,
    /// One permit per byte of requests queued or being committed (see
    /// [`ContainerOptions::queue_bytes`]). Taken before a request is queued, given back when
    /// its group has been answered.
    queue: Arc<Semaphore>,
    /// Permits of `queue` in all.
    queue_limit: u32,
    /// Tier-2, if configured.
    tier2: Option<Arc<Tier2>>,
    /// When the storage writer moves data to Tier-2.
    tiering: crate::container::storage_writer::TieringOptions,
    /// Earlier log files the log keeps in memory (see `FileLogOptions::cached_files`).
    cached_files: u64,
    /// Tier-2 chunks no segment refers to any more, for the storage writer to delete.
    garbage: Mutex<Vec<ChunkId>>,
    /// The Tier-1 log file being written (the storage writer moves older files' data first).
    current_file: std::sync::atomic::AtomicU64,
    /// True while appends wait for Tier-1 space (at `--tier1-capacity`): the storage writer
    /// then moves everything in older files to Tier-2 at once.
    stalled: std::sync::atomic::AtomicBool,
}

/// A request on its way to the writer thread, holding its share of the queue's byte budget.
#[derive(Debug)]
struct Queued {
    req: Request,
    _permit: OwnedSemaphorePermit,
}

/// A handle to one container. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Container {
    shared: Arc<Shared>,
    tx: Option<mpsc::Sender<Queued>>,
    /// Metadata requests from the storage writer: served even while appends wait for space.
    meta_tx: Option<mpsc::Sender<Request>>,
}

/// Replays recovered log records into both views.
#[derive(Debug, Default)]
struct Replay {
    durable: Durable,
    written: Written,
    error: Option<String>,
}

impl Replayer for Replay {
    fn checkpoint(&mut self, rec: &RecoveredRecord<'_>) -> bool {
        let cp = match checkpoint::decode(rec.payload) {
            Ok(cp) => cp,
            Err(e) => {
                tracing::warn!(lsn = rec.lsn, at = %rec.addr, error = %e, "checkpoint does not decode");
                return false;
            }
        };
        let (mut durable, mut written) = (Durable::default(), Written::default());
        written.next_local = cp.next_local;
        for s in cp.segments {
            written.names.insert(s.local, s.name.clone());
            written.segments.insert(
                s.name.clone(),
                WrittenSegment {
                    local: s.local,
                    start_offset: s.start_offset,
                    length: s.length,
                    sealed: s.sealed,
                    writers: s.writers.clone(),
                    attributes: s.attributes.clone(),
                },
            );
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
                },
            );
        }
        self.durable = durable;
        self.written = written;
        true
    }

    fn record(&mut self, rec: &RecoveredRecord<'_>) {
        if self.error.is_some() || rec.kind != RecordKind::Batch {
            return;
        }
        match ops::decode(rec.payload) {
            Ok(list) => {
                for op in &list {
                    apply_written(&mut self.written, op);
                    // Chunks dropped here were deleted or are found by the storage writer's
                    // sweep at start-up.
                    apply_durable(&mut self.durable, op, rec.addr, &mut Vec::new());
                }
            }
            Err(e) => self.error = Some(format!("record lsn {} at {}: {e}", rec.lsn, rec.addr)),
        }
    }
}

fn apply_written(w: &mut Written, op: &Op<'_>) {
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
        Op::Tiered { .. } => {}
    }
}

/// Applies one durable operation. `payload_addr` is the address of the record's payload.
/// Tier-2 chunks that no segment refers to any more are added to `garbage`.
fn apply_durable(d: &mut Durable, op: &Op<'_>, payload_addr: LogAddress, garbage: &mut Vec<ChunkId>) {
    match *op {
        Op::Create { local, name } => {
            d.segments.insert(name.to_owned(), SegmentMeta { local, ..Default::default() });
            d.names.insert(local, name.to_owned());
        }
        Op::Append { local, offset, writer, last_event_number, data_pos, data_len, .. } => {
            let Some(s) = d.names.get(&local).and_then(|n| d.segments.get_mut(n)) else { return };
            if data_len > 0 {
                s.index.push(IndexEntry {
                    offset,
                    len: data_len as u32,
                    within: data_pos as u32,
                    addr: payload_addr.offset(data_pos as u64),
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
                garbage.extend(s.chunks.iter().map(|c| (c.obj_local, c.obj_offset)));
            }
        }
        Op::Truncate { local, start_offset } => {
            if let Some(s) = d.names.get(&local).and_then(|n| d.segments.get_mut(n)) {
                s.start_offset = start_offset;
                // Entries wholly before the new start are unreachable; the one straddling it
                // stays (reads start inside it, at an event boundary).
                s.index.retain(|e| e.offset + e.len as u64 > start_offset);
                s.chunks.retain(|c| {
                    let keep = c.end() > start_offset;
                    if !keep {
                        garbage.push((c.obj_local, c.obj_offset));
                    }
                    keep
                });
            }
        }
        Op::Tiered { local, offset, len } => {
            let Some(s) = d.names.get(&local).and_then(|n| d.segments.get_mut(n)) else { return };
            let end = offset + len;
            // The entries of [offset, end) leave the Tier-1 index: reads now go to Tier-2.
            s.index.retain(|e| e.offset < offset || e.offset + e.len as u64 > end);
            let chunk = ChunkRef { offset, len, obj_local: local, obj_offset: offset, skip: 0 };
            if chunk.end() <= s.start_offset {
                garbage.push((local, offset));
            } else {
                let at = s.chunks.partition_point(|c| c.offset < offset);
                s.chunks.insert(at, chunk);
            }
        }
        Op::Merge { target, source } => {
            let Some(src) = d.names.remove(&source).and_then(|n| d.segments.remove(&n)) else { return };
            let Some(t) = d.names.get(&target).and_then(|n| d.segments.get_mut(n)) else { return };
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
                    garbage.push((c.obj_local, c.obj_offset));
                    continue;
                }
                let skip = src.start_offset.saturating_sub(c.offset);
                t.chunks.push(ChunkRef {
                    offset: t.length + (c.offset + skip - src.start_offset),
                    len: c.len - skip,
                    obj_local: c.obj_local,
                    obj_offset: c.obj_offset,
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
    }
}

impl Container {
    /// Opens container `id` with its log in `dir`, recovering its state, and starts its writer
    /// thread. A damaged log opens read-only: data before the damage is served, everything else
    /// fails with a `Corrupt` error naming the file and offset.
    pub fn open(id: u32, dir: &Path, opts: &ContainerOptions) -> Result<Container, StoreError> {
        let mut replay = Replay::default();
        let (log, report) = FileLog::recover(dir, opts.log.clone(), &mut replay)
            .map_err(|e| StoreError::Internal(format!("container {id}: {e}")))?;
        let mut damage = report.corruption.clone();
        if let Some(err) = replay.error.take() {
            tracing::error!(container = id, error = %err, "container log holds a record that does not decode");
            damage.get_or_insert(Corruption {
                file: dir.to_owned(),
                offset: 0,
                after_lsn: report.last_lsn,
                next_valid_lsn: report.last_lsn,
            });
        }
        let segments = replay.durable.segments.len();
        tracing::info!(
            container = id,
            segments,
            last_lsn = report.last_lsn,
            checkpoint_lsn = report.checkpoint.map(|(lsn, _)| lsn),
            torn_tail = report.torn_tail.is_some(),
            "container recovered"
        );
        Ok(Self::start(id, Box::new(log), replay, damage, report.checkpoint.map(|(_, addr)| addr), opts))
    }

    /// Starts a container over any log (the in-memory double in tests). `checkpoint` is the
    /// payload address of the checkpoint recovery started from, if any.
    fn start(
        id: u32,
        log: Box<dyn LogWriter>,
        replay: Replay,
        damage: Option<Corruption>,
        checkpoint: Option<LogAddress>,
        opts: &ContainerOptions,
    ) -> Container {
        let queue_limit = opts.queue_bytes.clamp(1, u32::MAX as u64) as u32;
        let (lsn_tx, _) = watch::channel(log.durable_lsn());
        let shared = Arc::new(Shared {
            id,
            durable: RwLock::new(replay.durable),
            log: log.reader(),
            durable_lsn: lsn_tx,
            damage,
            unverified_below: checkpoint.unwrap_or(LogAddress { file: 0, pos: 0 }),
            verified: Mutex::default(),
            queue: Arc::new(Semaphore::new(queue_limit as usize)),
            queue_limit,
            tier2: opts.tier2.clone(),
            tiering: opts.tiering.clone(),
            cached_files: opts.log.cached_files as u64,
            garbage: Mutex::default(),
            current_file: log.current_file().into(),
            stalled: false.into(),
        });
        let (tx, meta_tx) = if shared.damage.is_none() {
            let (tx, rx) = mpsc::channel(QUEUE_DEPTH);
            let (meta_tx, meta_rx) = mpsc::channel(64);
            let writer = WriterThread {
                shared: shared.clone(),
                log,
                written: replay.written,
                rx,
                meta_rx,
                checkpoint_interval: opts.checkpoint_interval.max(1),
                since_checkpoint: 0,
                kept_from: [0, 0],
            };
            std::thread::Builder::new()
                .name(format!("nadi-container-{id}"))
                .spawn(move || writer.run())
                .expect("spawn container writer thread");
            (Some(tx), Some(meta_tx))
        } else {
            (None, None)
        };
        Container { shared, tx, meta_tx }
    }

    /// This container's id.
    pub fn id(&self) -> u32 {
        self.shared.id
    }

    fn damaged(&self) -> StoreError {
        let detail = match &self.shared.damage {
            Some(c) => format!("its Tier-1 log is damaged ({c}); only data before the damage is served"),
            None => "its Tier-1 log is damaged".to_owned(),
        };
        StoreError::Corrupt { container: self.shared.id, detail }
    }

    async fn submit<T>(
        &self,
        make: impl FnOnce(oneshot::Sender<Result<T, StoreError>>) -> Request,
    ) -> Result<oneshot::Receiver<Result<T, StoreError>>, StoreError> {
        let Some(tx) = &self.tx else { return Err(self.damaged()) };
        let (reply, rx) = oneshot::channel();
        let req = make(reply);
        // Wait for room in the byte budget first; a request larger than the whole budget
        // waits for all of it.
        let cost = (estimate(&req) as u64).min(self.shared.queue_limit as u64) as u32;
        let permit = self.shared.queue.clone().acquire_many_owned(cost).await.map_err(|_| StoreError::ShuttingDown)?;
        tx.send(Queued { req, _permit: permit }).await.map_err(|_| StoreError::ShuttingDown)?;
        Ok(rx)
    }

    /// Bytes of requests accepted and not yet answered (at most
    /// [`ContainerOptions::queue_bytes`]).
    pub fn queued_bytes(&self) -> u64 {
        (self.shared.queue_limit as u64).saturating_sub(self.shared.queue.available_permits() as u64)
    }

    async fn call<T>(
        &self,
        make: impl FnOnce(oneshot::Sender<Result<T, StoreError>>) -> Request,
    ) -> Result<T, StoreError> {
        self.submit(make).await?.await.map_err(|_| StoreError::ShuttingDown)?
    }

    /// Creates a segment; `Ok(false)` if it already existed.
    pub async fn create(&self, name: &str) -> Result<bool, StoreError> {
        self.call(|reply| Request::Create { name: name.to_owned(), reply }).await
    }

    /// Queues an append and returns a receiver for its durable outcome. Appends queued in
    /// order are stored in that order; the caller may queue more before the first is durable
    /// (pipelining). `data` must hold `event_count` valid framed events.
    pub async fn append(
        &self,
        name: &str,
        writer: &str,
        last_event_number: i64,
        event_count: u32,
        data: Bytes,
    ) -> Result<oneshot::Receiver<Result<AppendAck, StoreError>>, StoreError> {
        self.submit(|reply| Request::Append {
            name: name.to_owned(),
            writer: writer.to_owned(),
            last_event_number,
            event_count,
            data,
            reply,
        })
        .await
    }

    /// Appends `data` (`event_count` framed events, no writer id) only if the segment's length
    /// is `expected_offset`; otherwise fails with `OffsetMismatch` carrying the actual length.
    pub async fn conditional_append(
        &self,
        name: &str,
        expected_offset: u64,
        event_count: u32,
        data: Bytes,
    ) -> Result<AppendAck, StoreError> {
        self.call(|reply| Request::ConditionalAppend {
            name: name.to_owned(),
            expected_offset,
            event_count,
            data,
            reply,
        })
        .await
    }

    /// Moves the start offset of `name` forward to `offset`, which must be an event boundary
    /// within the durable data. Earlier bytes can no longer be read (`Truncated`).
    pub async fn truncate(&self, name: &str, offset: u64) -> Result<(), StoreError> {
        let local = self.check_truncate(name, offset).await?;
        self.truncate_checked(name, local, offset).await
    }

    /// Checks that `offset` is an event boundary of `name` against the durable index (offsets
    /// below the durable length never change) and returns the local id of the segment checked.
    async fn check_truncate(&self, name: &str, offset: u64) -> Result<u64, StoreError> {
        // The id is taken before the check: if the name is deleted and created again at any
        // point after this, the writer sees another id and refuses.
        let local = {
            let d = self.shared.durable.read();
            d.segments.get(name).map(|s| s.local).ok_or_else(|| StoreError::SegmentNotFound(name.to_owned()))?
        };
        match self.read_any(name, offset, 1).await {
            Ok(_) | Err(StoreError::Truncated { .. }) => Ok(local),
            Err(e) => Err(e),
        }
    }

    /// Orders a checked truncation with other writes; refused if `name` is no longer segment
    /// `local`.
    async fn truncate_checked(&self, name: &str, local: u64, offset: u64) -> Result<(), StoreError> {
        self.call(|reply| Request::Truncate { name: name.to_owned(), local, offset, reply }).await
    }

    /// Appends the sealed segment `source` to `target` atomically and deletes `source`; the
    /// data is not copied (the target's index points at the source's log bytes). Both must be
    /// in this container. Returns the target's new length.
    pub async fn merge(&self, target: &str, source: &str) -> Result<u64, StoreError> {
        self.call(|reply| Request::Merge { target: target.to_owned(), source: source.to_owned(), reply }).await
    }

    /// Sets attribute `key` of `name` to `value` if it currently is `expected` (`None`: not set).
    pub async fn update_attribute(
        &self,
        name: &str,
        key: &str,
        expected: Option<u64>,
        value: u64,
    ) -> Result<(), StoreError> {
        self.call(|reply| Request::UpdateAttribute {
            name: name.to_owned(),
            key: key.to_owned(),
            expected,
            value,
            reply,
        })
        .await
    }

    /// Seals a segment (idempotent) and returns its final length.
    pub async fn seal(&self, name: &str) -> Result<u64, StoreError> {
        self.call(|reply| Request::Seal { name: name.to_owned(), reply }).await
    }

    /// Writes a metadata checkpoint once everything queued before this call is durable, and
    /// returns its lsn. (Checkpoints are also written on their own, every
    /// `checkpoint_interval` bytes.)
    pub async fn checkpoint(&self) -> Result<Lsn, StoreError> {
        self.call(|reply| Request::Checkpoint { reply }).await
    }

    /// Deletes a segment.
    pub async fn delete(&self, name: &str) -> Result<(), StoreError> {
        self.call(|reply| Request::Delete { name: name.to_owned(), reply }).await
    }

    /// The last durable event number of `writer` on `name` (-1 if none) and the segment's
    /// durable length, once every operation queued before this call is durable.
    pub async fn writer_state(&self, name: &str, writer: &str) -> Result<(i64, u64), StoreError> {
        self.call(|reply| Request::WriterState { name: name.to_owned(), writer: writer.to_owned(), reply }).await
    }

    /// Durable information about a segment.
    pub fn info(&self, name: &str) -> Result<SegmentInfo, StoreError> {
        let d = self.shared.durable.read();
        let s = d.segments.get(name).ok_or_else(|| StoreError::SegmentNotFound(name.to_owned()))?;
        let mut writers: Vec<_> = s.writers.iter().map(|(w, n)| (w.clone(), *n)).collect();
        writers.sort();
        let mut attributes: Vec<_> = s.attributes.iter().map(|(k, v)| (k.clone(), *v)).collect();
        attributes.sort();
        Ok(SegmentInfo {
            attributes,
            name: name.to_owned(),
            start_offset: s.start_offset,
            length: s.length,
            sealed: s.sealed,
            writers,
        })
    }

    /// The names of this container's unsealed segments (whose load the auto-scaler measures).
    pub fn open_segments(&self) -> Vec<String> {
        let d = self.shared.durable.read();
        d.segments.iter().filter(|(_, s)| !s.sealed).map(|(name, _)| name.clone()).collect()
    }

    /// A receiver that changes whenever more data becomes durable in this container.
    pub fn subscribe(&self) -> watch::Receiver<Lsn> {
        self.shared.durable_lsn.subscribe()
    }

    /// Reads whole events of `name` from `offset`, up to about `max_bytes` (at least one event
    /// if any is available), from the Tier-1 log only: bytes that moved to Tier-2 fail with
    /// `Internal` (use [`read_any`](Self::read_any)). Returns an empty chunk at the tail of an
    /// unsealed segment.
    pub fn read(&self, name: &str, offset: u64, max_bytes: usize) -> Result<ReadChunk, StoreError> {
        match self.plan(name, offset, max_bytes)? {
            Plan::Done(chunk) => Ok(chunk),
            Plan::Tier1 { pieces, length, sealed } => self.serve_tier1(name, offset, max_bytes, pieces, length, sealed),
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
        let mut tries = 0;
        loop {
            tries += 1;
            let res = match self.plan(name, offset, max_bytes)? {
                Plan::Done(chunk) => return Ok(chunk),
                Plan::Tier1 { pieces, length, sealed } => {
                    self.serve_tier1(name, offset, max_bytes, pieces, length, sealed)
                }
                Plan::Tier2 { chunk, next, length, sealed } => {
                    return self.serve_tier2(name, offset, max_bytes, chunk, next, length, sealed, held).await;
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

    fn serve_tier1(
        &self,
        name: &str,
        offset: u64,
        max_bytes: usize,
        pieces: Vec<IndexEntry>,
        length: u64,
        sealed: bool,
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
        let data = self.cut_events(name, Bytes::from(buf), first.offset, offset, max_bytes, length)?;
        let end = offset + data.len() as u64;
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
    ) -> Result<ReadChunk, StoreError> {
        let id = self.shared.id;
        let Some(t2) = &self.shared.tier2 else {
            return Err(StoreError::Internal(format!("segment {name}: data is in Tier-2, which is not configured")));
        };
        for n in &next {
            t2.prefetch(t2.chunk_key(id, n.obj_local, n.obj_offset), n.skip + n.len);
        }
        let key = t2.chunk_key(id, chunk.obj_local, chunk.obj_offset);
        let chunk_id = (chunk.obj_local, chunk.obj_offset);
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
        if offset == boundary {
            // Where this reader's last read ended: an event boundary, no need to walk the events
            // before it again.
            bytes = bytes.slice((offset - chunk.offset) as usize..);
            from = offset;
        }
        let data = self.cut_events(name, bytes, from, offset, max_bytes, length)?;
        let end = offset + data.len() as u64;
        if let Some(h) = held {
            h.next = end;
        }
        Ok(ReadChunk { offset, end_of_segment: sealed && end == length, data, segment_length: length })
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
            let len = u32::from_le_bytes(buf[at..at + EVENT_HEADER_LEN].try_into().expect("4 bytes")) as usize;
            if len > MAX_EVENT_SIZE {
                return Err(StoreError::Corrupt {
                    container: self.shared.id,
                    detail: format!("segment {name}: bad event length at offset {}", buf_offset + at as u64),
                });
            }
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

/// A run of a segment's Tier-1 bytes that the storage writer may move to Tier-2.
#[derive(Debug, Clone)]
pub(crate) struct Candidate {
    pub name: String,
    pub local: u64,
    pub offset: u64,
    pub len: u64,
    /// The oldest log file the run's bytes are in.
    pub oldest_file: u64,
    /// The segment has more Tier-1 bytes after this run.
    pub more: bool,
}

/// The storage writer's view of a container (see [`crate::container::storage_writer`]).
impl Container {
    pub(crate) fn tier2(&self) -> Option<&Arc<Tier2>> {
        self.shared.tier2.as_ref()
    }

    /// The storage writer's settings, if there is a Tier-2.
    pub(crate) fn tiering_options(&self) -> Option<crate::container::storage_writer::TieringOptions> {
        self.shared.tier2.as_ref().map(|_| self.shared.tiering.clone())
    }

    /// A handle without the append channel: the writer thread stops when every other handle
    /// is dropped, even while the storage writer runs.
    pub(crate) fn for_storage_writer(&self) -> Container {
        Container { shared: self.shared.clone(), tx: None, meta_tx: self.meta_tx.clone() }
    }

    /// True once the writer thread has stopped (or never ran: a damaged container).
    pub(crate) fn storage_writer_stopped(&self) -> bool {
        self.meta_tx.as_ref().is_none_or(|t| t.is_closed())
    }

    /// For every segment with bytes in the Tier-1 log: its first run of contiguous entries,
    /// up to about `max_len` bytes (at least one entry).
    pub(crate) fn tier_candidates(&self, max_len: u64) -> Vec<Candidate> {
        let d = self.shared.durable.read();
        let mut out = Vec::new();
        for (name, s) in &d.segments {
            let Some(first) = s.index.first() else { continue };
            let (mut len, mut oldest, mut n) = (0u64, u64::MAX, 0usize);
            for e in &s.index {
                if first.offset + len != e.offset || (n > 0 && len + e.len as u64 > max_len) {
                    break;
                }
                len += e.len as u64;
                oldest = oldest.min(e.addr.file);
                n += 1;
            }
            out.push(Candidate {
                name: name.clone(),
                local: s.local,
                offset: first.offset,
                len,
                oldest_file: oldest,
                more: n < s.index.len(),
            });
        }
        out
    }

    /// Copies a run of Tier-1 bytes (checking the CRC of records recovery did not read).
    pub(crate) fn read_tier1_run(&self, c: &Candidate, buf: &mut Vec<u8>) -> Result<(), StoreError> {
        let pieces: Vec<IndexEntry> = {
            let d = self.shared.durable.read();
            let s = d
                .segments
                .get(&c.name)
                .filter(|s| s.local == c.local)
                .ok_or_else(|| StoreError::SegmentNotFound(c.name.clone()))?;
            let first = s.index.partition_point(|e| e.offset < c.offset);
            s.index[first..].iter().take_while(|e| e.offset < c.offset + c.len).copied().collect()
        };
        let covered: u64 = pieces.iter().map(|p| p.len as u64).sum();
        if pieces.first().map(|p| p.offset) != Some(c.offset) || covered != c.len {
            return Err(StoreError::InvalidArgument(format!("segment {}: the run moved", c.name)));
        }
        self.verify_pieces(&c.name, &pieces).map_err(|(_, e)| e)?;
        buf.clear();
        let pieces: Vec<(LogAddress, usize)> = pieces.iter().map(|p| (p.addr, p.len as usize)).collect();
        self.shared.log.read_once(&pieces, buf).map_err(|e| StoreError::Internal(e.to_string()))
    }

    /// Records, durably, that a run is in Tier-2 (its chunk uploaded).
    pub(crate) async fn tiered(&self, c: &Candidate) -> Result<(), StoreError> {
        let Some(tx) = &self.meta_tx else { return Err(self.damaged()) };
        let (reply, rx) = oneshot::channel();
        let req = Request::Tiered { name: c.name.clone(), local: c.local, offset: c.offset, len: c.len, reply };
        tx.send(req).await.map_err(|_| StoreError::ShuttingDown)?;
        rx.await.map_err(|_| StoreError::ShuttingDown)?
    }

    /// Chunks no segment refers to any more (taken: the caller deletes them).
    pub(crate) fn take_garbage(&self) -> Vec<ChunkId> {
        std::mem::take(&mut *self.shared.garbage.lock())
    }

    /// Gives back chunks whose deletion failed, to try again later.
    pub(crate) fn return_garbage(&self, ids: Vec<ChunkId>) {
        self.shared.garbage.lock().extend(ids);
    }

    /// Every chunk the durable state refers to.
    pub(crate) fn chunk_ids(&self) -> HashSet<ChunkId> {
        let d = self.shared.durable.read();
        d.segments.values().flat_map(|s| s.chunks.iter().map(|c| (c.obj_local, c.obj_offset))).collect()
    }

    /// The Tier-1 log file being written, and whether appends wait for Tier-1 space.
    /// Earlier log files kept in memory: bytes in older files are read from the disk.
    pub(crate) fn cached_files(&self) -> u64 {
        self.shared.cached_files
    }

    pub(crate) fn tier1_state(&self) -> (u64, bool) {
        use std::sync::atomic::Ordering;
        (self.shared.current_file.load(Ordering::Relaxed), self.shared.stalled.load(Ordering::Relaxed))
    }

    /// Bytes of segment data in Tier-1 and in Tier-2 (for tests and metrics).
    pub fn tier_bytes(&self) -> (u64, u64) {
        let d = self.shared.durable.read();
        let t1 = d.segments.values().flat_map(|s| s.index.iter()).map(|e| e.len as u64).sum();
        let t2 = d.segments.values().flat_map(|s| s.chunks.iter()).map(|c| c.len).sum();
        (t1, t2)
    }
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
    fn verify_pieces(&self, name: &str, pieces: &[IndexEntry]) -> Result<(), (usize, StoreError)> {
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

/// The writer thread of one container.
struct WriterThread {
    shared: Arc<Shared>,
    log: Box<dyn LogWriter>,
    written: Written,
    rx: mpsc::Receiver<Queued>,
    /// Bytes of batch records between two checkpoints.
    checkpoint_interval: u64,
    /// Bytes of batch records written since the last checkpoint.
    since_checkpoint: u64,
    /// Metadata requests of the storage writer.
    meta_rx: mpsc::Receiver<Request>,
    /// The `keep_from` of the two newest checkpoints (newest first; 0 for ones written before
    /// this process started).
    kept_from: [u64; 2],
}

/// A reply to send once the batch is durable.
enum Reply {
    Created(oneshot::Sender<Result<bool, StoreError>>, Result<bool, StoreError>),
    // Lengths in replies are computed per request when it is encoded (what this request made
    // the segment), never read back after the group: another request of the same group must
    // not leak into this one's answer.
    Appended(oneshot::Sender<Result<AppendAck, StoreError>>, Result<(i64, u64), StoreError>),
    Sealed(oneshot::Sender<Result<u64, StoreError>>, Result<u64, StoreError>),
    Deleted(oneshot::Sender<Result<(), StoreError>>, Result<(), StoreError>),
    WriterState(oneshot::Sender<Result<(i64, u64), StoreError>>, Result<(i64, u64), StoreError>),
    Done(oneshot::Sender<Result<(), StoreError>>, Result<(), StoreError>),
    Merged(oneshot::Sender<Result<u64, StoreError>>, Result<u64, StoreError>),
    /// Answered with the outcome of the checkpoint written after the group.
    Checkpoint(oneshot::Sender<Result<Lsn, StoreError>>),
}

fn estimate(req: &Request) -> usize {
    match req {
        Request::Append { writer, data, name, .. } => ops::append_size(writer, data.len()) + name.len(),
        Request::ConditionalAppend { data, name, .. } => ops::append_size("", data.len()) + name.len(),
        Request::UpdateAttribute { key, .. } => 32 + key.len(),
        Request::Create { name, .. } => 16 + name.len(),
        // Seal, delete, truncate, merge and the barrier encode to at most 17 bytes.
        _ => 64,
    }
}

impl WriterThread {
    fn run(mut self) {
        let mut payload = Vec::with_capacity(GROUP_COMMIT_BYTES);
        let mut batch = Vec::new();
        // A request that did not fit into the previous group starts the next one.
        let mut carry: Option<Queued> = None;
        // The byte-budget permits of the requests in `batch`.
        let mut permits = Vec::new();
        let limit = self.log.max_record_payload();
        loop {
            // Metadata from the storage writer goes first; it is small and frees space.
            let first = match carry.take() {
                Some(q) => Some(q),
                None => {
                    let next = futures::executor::block_on(async {
                        tokio::select! {
                            biased;
                            Some(m) = self.meta_rx.recv() => Some(Err(m)),
                            d = self.rx.recv() => d.map(Ok),
                        }
                    });
                    match next {
                        Some(Err(meta)) => {
                            self.commit_meta(meta, &mut payload);
                            continue;
                        }
                        Some(Ok(q)) => Some(q),
                        None => None,
                    }
                }
            };
            let Some(first) = first else { break };
            let mut size = estimate(&first.req);
            batch.push(first.req);
            permits.push(first._permit);
            while size < GROUP_COMMIT_BYTES {
                match self.rx.try_recv() {
                    Ok(q) if size + estimate(&q.req) > limit => {
                        carry = Some(q);
                        break;
                    }
                    Ok(q) => {
                        size += estimate(&q.req);
                        batch.push(q.req);
                        permits.push(q._permit);
                    }
                    Err(_) => break,
                }
            }
            self.commit(&mut batch, &mut payload, size);
            // The group is answered: its bytes leave the queue.
            permits.clear();
        }
        tracing::debug!(container = self.shared.id, "container writer stopped");
    }

    /// Validates, writes, syncs and publishes one group of requests.
    fn commit(&mut self, batch: &mut Vec<Request>, payload: &mut Vec<u8>, size: usize) {
        self.commit_group(batch, payload, size, false)
    }

    /// Validates, writes, syncs and publishes one group of requests; `meta` groups (from the
    /// storage writer) never wait for Tier-1 capacity.
    fn commit_group(&mut self, batch: &mut Vec<Request>, payload: &mut Vec<u8>, size: usize, meta: bool) {
        // Make room first: a full disk fails the whole group before any state changes. At the
        // Tier-1 capacity, wait (serving the storage writer's metadata) until a file is freed.
        let size = size.min(self.log.max_record_payload());
        let mut reserved = if meta { self.log.reserve(size) } else { self.log.reserve_data(size) };
        while let Err(LogError::Full { .. }) = reserved {
            use std::sync::atomic::Ordering;
            self.shared.stalled.store(true, Ordering::Relaxed);
            tracing::debug!(container = self.shared.id, "Tier-1 at capacity: appends wait for data to move to Tier-2");
            let Some(meta) = self.meta_rx.blocking_recv() else {
                for req in batch.drain(..) {
                    fail(req, StoreError::ShuttingDown);
                }
                return;
            };
            self.commit_meta(meta, payload);
            reserved = self.log.reserve_data(size);
        }
        self.shared.stalled.store(false, std::sync::atomic::Ordering::Relaxed);
        if let Err(e) = reserved {
            let err = || {
                if e.is_retryable() {
                    StoreError::StorageFull(e.to_string())
                } else {
                    StoreError::Internal(e.to_string())
                }
            };
            tracing::error!(container = self.shared.id, error = %e, "cannot write to the Tier-1 log");
            for req in batch.drain(..) {
                fail(req, err());
            }
            return;
        }
        payload.clear();
        let mut replies = Vec::with_capacity(batch.len());
        for req in batch.drain(..) {
            replies.push(self.encode(req, payload));
        }
        if !payload.is_empty() {
            self.since_checkpoint += crate::log::record_len(payload.len()) as u64;
            let (lsn, addr) = match self.log.append(RecordKind::Batch, payload) {
                Ok(r) => r,
                Err(e) => {
                    // `reserve` succeeded, so this cannot happen; if it does, the written state
                    // is ahead of the log and the only safe move is to stop.
                    tracing::error!(container = self.shared.id, error = %e, "log append failed after reserve; aborting");
                    std::process::abort();
                }
            };
            if let Err(e) = self.log.sync() {
                tracing::error!(container = self.shared.id, error = %e, "fsync of the Tier-1 log failed; aborting (see docs/operations.md)");
                std::process::abort();
            }
            // Decoding what we just encoded is deliberate: the durable state is built by exactly
            // the code recovery runs (decode + apply_durable), so a live store and a recovered one
            // cannot differ. The codec decodes at ~75 GiB/s (criterion), far off the hot path's cost.
            let ops = ops::decode(payload).expect("a batch we just encoded decodes");
            let mut garbage = Vec::new();
            {
                let mut d = self.shared.durable.write();
                for op in &ops {
                    apply_durable(&mut d, op, addr, &mut garbage);
                }
            }
            if !garbage.is_empty() {
                self.shared.garbage.lock().extend(garbage);
            }
            self.shared.current_file.store(self.log.current_file(), std::sync::atomic::Ordering::Relaxed);
            self.shared.durable_lsn.send_replace(lsn);
        }
        // A requested checkpoint follows the group, so it covers everything queued before it.
        let checkpoint = replies.iter().any(|r| matches!(r, Reply::Checkpoint(_))).then(|| self.write_checkpoint());
        for r in replies {
            match r {
                Reply::Created(tx, res) => drop(tx.send(res)),
                Reply::Appended(tx, res) => {
                    drop(tx.send(res.map(|(n, length)| AppendAck { last_event_number: n, segment_length: length })))
                }
                Reply::Sealed(tx, res) => drop(tx.send(res)),
                Reply::Deleted(tx, res) => drop(tx.send(res)),
                Reply::WriterState(tx, res) => drop(tx.send(res)),
                Reply::Done(tx, res) => drop(tx.send(res)),
                Reply::Merged(tx, res) => drop(tx.send(res)),
                Reply::Checkpoint(tx) => {
                    let res = match &checkpoint {
                        Some(Ok(lsn)) => Ok(*lsn),
                        Some(Err(e)) if e.is_retryable() => Err(StoreError::StorageFull(e.to_string())),
                        Some(Err(e)) => Err(StoreError::Internal(e.to_string())),
                        None => Err(StoreError::Internal("checkpoint not written".into())),
                    };
                    drop(tx.send(res));
                }
            }
        }
        if self.since_checkpoint >= self.checkpoint_interval {
            // Errors are logged inside; the next one is tried after another interval.
            let _ = self.write_checkpoint();
        }
    }

    /// Writes a checkpoint of the durable state. Called between groups only, when every
    /// written record is durable, so the written and durable states are the same.
    fn write_checkpoint(&mut self) -> Result<Lsn, LogError> {
        let mut buf = Vec::new();
        {
            let d = self.shared.durable.read();
            let views = d.segments.iter().map(|(name, s)| SegmentView {
                local: s.local,
                name,
                start_offset: s.start_offset,
                length: s.length,
                sealed: s.sealed,
                writers: &s.writers,
                attributes: &s.attributes,
                index: &s.index,
                chunks: &s.chunks,
            });
            checkpoint::encode(&mut buf, self.written.next_local, views);
        }
        self.since_checkpoint = 0;
        let keep_from = self.keep_from();
        self.kept_from = [keep_from, self.kept_from[0]];
        match self.log.checkpoint_keeping(&buf, keep_from) {
            Ok(lsn) => {
                tracing::debug!(container = self.shared.id, lsn, bytes = buf.len(), "metadata checkpoint written");
                Ok(lsn)
            }
            Err(e) => {
                tracing::warn!(container = self.shared.id, bytes = buf.len(), error = %e,
                    "cannot write a metadata checkpoint; recovery replays from the previous one");
                Err(e)
            }
        }
    }

    /// The oldest Tier-1 log file the durable state refers to (the current file if none).
    fn keep_from(&self) -> u64 {
        let d = self.shared.durable.read();
        let current = self.log.current_file();
        d.segments.values().flat_map(|s| s.index.iter()).map(|e| e.addr.file).fold(current, u64::min)
    }

    /// Commits one metadata request of the storage writer as a group of its own (it may go
    /// beyond the Tier-1 capacity by one file), then writes checkpoints if that lets old log
    /// files be recycled: two, because recovery may fall back to the older of the two newest.
    fn commit_meta(&mut self, first: Request, payload: &mut Vec<u8>) {
        let mut batch = vec![first];
        while let Ok(m) = self.meta_rx.try_recv() {
            batch.push(m);
        }
        let size: usize = batch.iter().map(estimate).sum();
        self.commit_group(&mut batch, payload, size, true);
        for _ in 0..2 {
            if self.keep_from() > self.kept_from.iter().copied().min().unwrap_or(0) {
                let _ = self.write_checkpoint();
            }
        }
    }

    /// Validates one request against the written state, encodes it, and applies it to the
    /// written state.
    fn encode(&mut self, req: Request, buf: &mut Vec<u8>) -> Reply {
        let w = &mut self.written;
        match req {
            Request::Create { name, reply } => {
                let res = match w.segments.get(&name) {
                    Some(_) => Ok(false),
                    None => {
                        let local = w.next_local;
                        ops::encode_create(buf, local, &name);
                        apply_written(w, &Op::Create { local, name: &name });
                        Ok(true)
                    }
                };
                Reply::Created(reply, res)
            }
            Request::Append { name, writer, last_event_number, event_count, data, reply } => {
                let res = (|| {
                    let s = live(w, &name)?;
                    if s.sealed {
                        return Err(StoreError::Sealed(name.clone()));
                    }
                    let prev = s.writers.get(&writer).copied().unwrap_or(-1);
                    if last_event_number <= prev {
                        // Every event of this batch was stored before: a retry. Acknowledge.
                        return Ok((prev, s.length));
                    }
                    let first = last_event_number - event_count as i64 + 1;
                    if first > prev + 1 {
                        // A gap means an earlier batch of this writer was not stored (it failed,
                        // e.g. on a full disk). Storing this one would let the writer believe the
                        // missing events were acknowledged.
                        return Err(StoreError::EventNumberGap {
                            segment: name.clone(),
                            writer: writer.clone(),
                            expected: prev + 1,
                            got: first,
                        });
                    }
                    let (data, count) = if first <= prev {
                        // Partly stored before: keep the events after `prev` only.
                        let skip = (prev - first + 1) as usize;
                        let starts = nadi_proto::framing::validate_batch(&data, event_count)
                            .map_err(|e| StoreError::InvalidArgument(e.to_string()))?;
                        (data.slice(starts[skip]..), event_count - skip as u32)
                    } else {
                        (data, event_count)
                    };
                    let local = s.local;
                    let offset = s.length;
                    ops::encode_append(buf, local, offset, &writer, last_event_number, count, &data);
                    apply_written(
                        w,
                        &Op::Append {
                            local,
                            offset,
                            writer: &writer,
                            last_event_number,
                            event_count: count,
                            data_pos: 0,
                            data_len: data.len(),
                        },
                    );
                    Ok((last_event_number, offset + data.len() as u64))
                })();
                Reply::Appended(reply, res)
            }
            Request::Seal { name, reply } => {
                let res = live(w, &name).map(|s| (s.local, s.sealed, s.length)).map(|(local, sealed, length)| {
                    if !sealed {
                        ops::encode_seal(buf, local);
                        apply_written(w, &Op::Seal { local });
                    }
                    length
                });
                Reply::Sealed(reply, res)
            }
            Request::Delete { name, reply } => {
                // Later requests in the same batch already see the segment as gone (a create
                // of the same name makes a new, empty segment), exactly as replay will.
                let res = live(w, &name).map(|s| s.local).map(|local| {
                    ops::encode_delete(buf, local);
                    apply_written(w, &Op::Delete { local });
                });
                Reply::Deleted(reply, res)
            }
            Request::ConditionalAppend { name, expected_offset, event_count, data, reply } => {
                let res = live(w, &name).and_then(|s| {
                    if s.sealed {
                        return Err(StoreError::Sealed(name.clone()));
                    }
                    if s.length != expected_offset {
                        return Err(StoreError::OffsetMismatch {
                            segment: name.clone(),
                            expected: expected_offset,
                            actual: s.length,
                        });
                    }
                    Ok((s.local, s.length))
                });
                let res = res.map(|(local, offset)| {
                    ops::encode_append(buf, local, offset, "", -1, event_count, &data);
                    let op = Op::Append {
                        local,
                        offset,
                        writer: "",
                        last_event_number: -1,
                        event_count,
                        data_pos: 0,
                        data_len: data.len(),
                    };
                    apply_written(w, &op);
                    (-1, offset + data.len() as u64)
                });
                Reply::Appended(reply, res)
            }
            Request::Truncate { name, local, offset, reply } => {
                let res = live(w, &name).and_then(|s| {
                    if s.local != local {
                        // Deleted and created again since the boundary was checked: the check
                        // says nothing about this segment.
                        return Err(StoreError::SegmentReplaced(name.clone()));
                    }
                    if offset > s.length {
                        return Err(StoreError::BadOffset { segment: name.clone(), offset, length: s.length });
                    }
                    // Truncating to or before the current start changes nothing.
                    Ok((offset > s.start_offset).then_some(s.local))
                });
                let res = res.map(|local| {
                    if let Some(local) = local {
                        ops::encode_truncate(buf, local, offset);
                        apply_written(w, &Op::Truncate { local, start_offset: offset });
                    }
                });
                Reply::Done(reply, res)
            }
            Request::Merge { target, source, reply } => {
                let res = (|| {
                    if target == source {
                        return Err(StoreError::InvalidArgument(format!("cannot merge segment {target} into itself")));
                    }
                    let src = live(w, &source)?;
                    if !src.sealed {
                        return Err(StoreError::NotSealed(source.clone()));
                    }
                    let (src_local, src_bytes) = (src.local, src.length - src.start_offset);
                    let t = live(w, &target)?;
                    if t.sealed {
                        return Err(StoreError::Sealed(target.clone()));
                    }
                    let (t_local, t_length) = (t.local, t.length + src_bytes);
                    ops::encode_merge(buf, t_local, src_local);
                    apply_written(w, &Op::Merge { target: t_local, source: src_local });
                    Ok(t_length)
                })();
                Reply::Merged(reply, res)
            }
            Request::UpdateAttribute { name, key, expected, value, reply } => {
                let res = live(w, &name).and_then(|s| {
                    let actual = s.attributes.get(&key).copied();
                    if actual != expected {
                        return Err(StoreError::AttributeMismatch {
                            segment: name.clone(),
                            key: key.clone(),
                            expected,
                            actual,
                        });
                    }
                    Ok(s.local)
                });
                let res = res.map(|local| {
                    ops::encode_attribute(buf, local, &key, value);
                    apply_written(w, &Op::Attribute { local, key: &key, value });
                });
                Reply::Done(reply, res)
            }
            Request::Checkpoint { reply } => Reply::Checkpoint(reply),
            Request::Tiered { name, local, offset, len, reply } => {
                let res = live(w, &name).and_then(|s| {
                    if s.local != local {
                        return Err(StoreError::SegmentReplaced(name.clone()));
                    }
                    // The bytes must still be a run of whole Tier-1 entries (a truncation or
                    // merge since the upload may have moved them).
                    let d = self.shared.durable.read();
                    let seg = d.segments.get(&name).filter(|m| m.local == local);
                    let whole = seg.is_some_and(|m| {
                        let first = m.index.partition_point(|e| e.offset < offset);
                        let mut at = offset;
                        for e in &m.index[first..] {
                            if e.offset != at || at >= offset + len {
                                break;
                            }
                            at += e.len as u64;
                        }
                        at == offset + len && m.index.get(first).is_some_and(|e| e.offset == offset)
                    });
                    if !whole {
                        return Err(StoreError::InvalidArgument(format!(
                            "segment {name}: bytes {offset}..{} are no longer in the Tier-1 log",
                            offset + len
                        )));
                    }
                    Ok(())
                });
                if res.is_ok() {
                    ops::encode_tiered(buf, local, offset, len);
                }
                Reply::Done(reply, res)
            }
            Request::WriterState { name, writer, reply } => {
                let res = live(w, &name).map(|s| (s.writers.get(&writer).copied().unwrap_or(-1), s.length));
                Reply::WriterState(reply, res)
            }
        }
    }
}

/// The written state of a segment that exists.
fn live<'a>(w: &'a mut Written, name: &str) -> Result<&'a mut WrittenSegment, StoreError> {
    w.segments.get_mut(name).ok_or_else(|| StoreError::SegmentNotFound(name.to_owned()))
}

fn fail(req: Request, e: StoreError) {
    match req {
        Request::Create { reply, .. } => drop(reply.send(Err(e))),
        Request::Append { reply, .. } => drop(reply.send(Err(e))),
        Request::Seal { reply, .. } => drop(reply.send(Err(e))),
        Request::Delete { reply, .. } => drop(reply.send(Err(e))),
        Request::WriterState { reply, .. } => drop(reply.send(Err(e))),
        Request::ConditionalAppend { reply, .. } => drop(reply.send(Err(e))),
        Request::Truncate { reply, .. } => drop(reply.send(Err(e))),
        Request::Merge { reply, .. } => drop(reply.send(Err(e))),
        Request::UpdateAttribute { reply, .. } => drop(reply.send(Err(e))),
        Request::Checkpoint { reply } => drop(reply.send(Err(e))),
        Request::Tiered { reply, .. } => drop(reply.send(Err(e))),
    }
}

/// Frames payloads into one batch (a helper for tests and benchmarks).
pub fn frame(payloads: &[&[u8]]) -> Bytes {
    let mut buf = BytesMut::new();
    for p in payloads {
        nadi_proto::framing::put_event(&mut buf, p).expect("event within the size limit");
    }
    buf.freeze()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::log::RECORD_HEADER_LEN;
    use crate::log::mem::MemLog;

    /// Recovers a container from `log` as after a crash; `log` then follows the new writer.
    fn mem_container(log: &mut MemLog) -> Container {
        mem_container_with(log, &ContainerOptions::default())
    }

    fn mem_container_with(log: &mut MemLog, opts: &ContainerOptions) -> Container {
        let mut replay = Replay::default();
        let (new_log, report) = log.recover(&mut replay);
        *log = new_log.clone();
        let checkpoint = report.checkpoint.map(|(_, addr)| addr);
        Container::start(0, Box::new(new_log), replay, None, checkpoint, opts)
    }

    async fn append(
        c: &Container,
        seg: &str,
        writer: &str,
        last: i64,
        events: &[&[u8]],
    ) -> Result<AppendAck, StoreError> {
        c.append(seg, writer, last, events.len() as u32, frame(events)).await?.await.unwrap()
    }

    fn payloads(chunk: &ReadChunk) -> Vec<Vec<u8>> {
        nadi_proto::framing::events(&chunk.data).map(|e| e.unwrap().1.to_vec()).collect()
    }

    #[tokio::test]
    async fn create_append_read_seal() {
        let mut log = MemLog::new(32 << 20);
        let c = mem_container(&mut log);
        assert!(c.create("s/t/0.#epoch.0").await.unwrap());
        assert!(!c.create("s/t/0.#epoch.0").await.unwrap());
        let ack = append(&c, "s/t/0.#epoch.0", "w", 1, &[b"a", b"bb"]).await.unwrap();
        assert_eq!(ack, AppendAck { last_event_number: 1, segment_length: 11 });
        let chunk = c.read("s/t/0.#epoch.0", 0, 1 << 20).unwrap();
        assert_eq!(payloads(&chunk), vec![b"a".to_vec(), b"bb".to_vec()]);
        assert!(!chunk.end_of_segment);
        // Reading from the second event's boundary works; from inside an event does not.
        assert_eq!(payloads(&c.read("s/t/0.#epoch.0", 5, 1 << 20).unwrap()), vec![b"bb".to_vec()]);
        assert!(matches!(c.read("s/t/0.#epoch.0", 3, 1 << 20), Err(StoreError::BadOffset { .. })));
        assert!(matches!(c.read("s/t/0.#epoch.0", 99, 1 << 20), Err(StoreError::BadOffset { .. })));
        assert_eq!(c.seal("s/t/0.#epoch.0").await.unwrap(), 11);
        assert!(matches!(append(&c, "s/t/0.#epoch.0", "w", 2, &[b"c"]).await, Err(StoreError::Sealed(_))));
        assert!(c.read("s/t/0.#epoch.0", 11, 1 << 20).unwrap().end_of_segment);
        assert!(matches!(append(&c, "nope", "w", 0, &[b"c"]).await, Err(StoreError::SegmentNotFound(_))));
    }

    #[tokio::test]
    async fn retries_are_not_stored_twice_even_after_a_crash() {
        let mut log = MemLog::new(32 << 20);
        let c = mem_container(&mut log);
        c.create("x").await.unwrap();
        append(&c, "x", "w", 2, &[b"e0", b"e1", b"e2"]).await.unwrap();
        // The same batch again, and a batch overlapping it: only new events are stored.
        assert_eq!(append(&c, "x", "w", 2, &[b"e0", b"e1", b"e2"]).await.unwrap().last_event_number, 2);
        append(&c, "x", "w", 4, &[b"e2", b"e3", b"e4"]).await.unwrap();
        drop(c);
        let c = mem_container(&mut log);
        assert_eq!(c.writer_state("x", "w").await.unwrap().0, 4);
        assert_eq!(append(&c, "x", "w", 4, &[b"e3", b"e4"]).await.unwrap().last_event_number, 4);
        let all = payloads(&c.read("x", 0, 1 << 20).unwrap());
        assert_eq!(all, ["e0", "e1", "e2", "e3", "e4"].map(|s| s.as_bytes().to_vec()));
        assert_eq!(c.writer_state("x", "other").await.unwrap().0, -1);
    }

    #[tokio::test]
    async fn a_gap_in_event_numbers_is_refused_so_a_lost_batch_is_never_acknowledged() {
        let mut log = MemLog::new(32 << 20);
        let c = mem_container(&mut log);
        c.create("x").await.unwrap();
        append(&c, "x", "w", 1, &[b"e0", b"e1"]).await.unwrap();
        // Events 2..=3 were never stored (say their batch failed); 4..=5 must not be stored
        // either, or a reconnecting writer would take 2..=3 as acknowledged.
        let err = append(&c, "x", "w", 5, &[b"e4", b"e5"]).await.unwrap_err();
        assert!(matches!(err, StoreError::EventNumberGap { expected: 2, got: 4, .. }), "{err}");
        assert_eq!(c.writer_state("x", "w").await.unwrap().0, 1);
        append(&c, "x", "w", 3, &[b"e2", b"e3"]).await.unwrap();
        append(&c, "x", "w", 5, &[b"e4", b"e5"]).await.unwrap();
        let all = payloads(&c.read("x", 0, 1 << 20).unwrap());
        assert_eq!(all.len(), 6);
    }

    #[tokio::test]
    async fn conditional_append_truncate_merge_and_attributes_survive_a_crash() {
        let mut log = MemLog::new(32 << 20);
        let c = mem_container(&mut log);
        c.create("t").await.unwrap();
        c.create("src").await.unwrap();
        // Conditional append: only at the expected length; a mismatch reports the actual one.
        let ack = c.conditional_append("t", 0, 2, frame(&[b"a0", b"a1"])).await.unwrap();
        assert_eq!(ack.segment_length, 12);
        let err = c.conditional_append("t", 0, 1, frame(&[b"x"])).await.unwrap_err();
        assert!(matches!(err, StoreError::OffsetMismatch { expected: 0, actual: 12, .. }), "{err}");
        // Truncate: to an event boundary only; earlier offsets then fail with Truncated.
        assert!(matches!(c.truncate("t", 3).await, Err(StoreError::BadOffset { .. })));
        c.truncate("t", 6).await.unwrap();
        assert!(matches!(c.read("t", 0, 100), Err(StoreError::Truncated { start: 6, .. })));
        assert_eq!(payloads(&c.read("t", 6, 100).unwrap()), vec![b"a1".to_vec()]);
        c.truncate("t", 0).await.unwrap(); // moving backwards changes nothing
        assert_eq!(c.info("t").unwrap().start_offset, 6);
        // Merge: the source must be sealed; its readable bytes follow the target's.
        append(&c, "src", "w", 2, &[b"s0", b"s1", b"s2"]).await.unwrap();
        assert!(matches!(c.merge("t", "src").await, Err(StoreError::NotSealed(_))));
        c.seal("src").await.unwrap();
        c.truncate("src", 6).await.unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(c.merge("t", "src").await.unwrap(), 12 + 12);
        assert!(matches!(c.info("src"), Err(StoreError::SegmentNotFound(_))));
        // Attributes: compare-and-set.
        c.update_attribute("t", "checkpoint", None, 7).await.unwrap();
        let err = c.update_attribute("t", "checkpoint", None, 8).await.unwrap_err();
        assert!(matches!(err, StoreError::AttributeMismatch { actual: Some(7), .. }), "{err}");
        c.update_attribute("t", "checkpoint", Some(7), 9).await.unwrap();

        let check = |c: &Container| {
            let info = c.info("t").unwrap();
            assert_eq!((info.start_offset, info.length), (6, 24));
            assert_eq!(info.attributes, vec![("checkpoint".to_owned(), 9)]);
            let all = payloads(&c.read("t", 6, 1 << 20).unwrap());
            assert_eq!(all, ["a1", "s1", "s2"].map(|s| s.as_bytes().to_vec()));
        };
        check(&c);
        drop(c);
        let c = mem_container(&mut log);
        check(&c);
        assert!(matches!(c.info("src"), Err(StoreError::SegmentNotFound(_))));
    }

    #[tokio::test]
    async fn truncate_refuses_a_segment_deleted_and_created_again_after_the_check() {
        let mut log = MemLog::new(32 << 20);
        let c = mem_container(&mut log);
        c.create("x").await.unwrap();
        append(&c, "x", "w", 1, &[b"old-0", b"old-1"]).await.unwrap();
        // The check passes for the first incarnation (9 is the boundary after "old-0") ...
        let checked = c.check_truncate("x", 9).await.unwrap();
        // ... then the name is deleted and created again, with other events, before the writer
        // gets the truncation.
        c.delete("x").await.unwrap();
        c.create("x").await.unwrap();
        append(&c, "x", "w", 0, &[b"new-event-0"]).await.unwrap();
        let err = c.truncate_checked("x", checked, 9).await.unwrap_err();
        assert!(matches!(err, StoreError::SegmentReplaced(_)), "{err}");
        assert_eq!(err.code(), nadi_proto::ErrorCode::SegmentNotFound);
        // The new segment was not touched, here or after a restart.
        assert_eq!(c.info("x").unwrap().start_offset, 0);
        drop(c);
        let c = mem_container(&mut log);
        assert_eq!(c.info("x").unwrap().start_offset, 0);
        assert_eq!(payloads(&c.read("x", 0, 100).unwrap()), vec![b"new-event-0".to_vec()]);
        // A truncation checked against the current incarnation goes through.
        c.truncate("x", 15).await.unwrap();
        assert_eq!(c.info("x").unwrap().start_offset, 15);
    }

    #[tokio::test]
    async fn queued_bytes_stay_within_the_limit_while_the_disk_stalls() {
        let mut log = MemLog::new(32 << 20);
        let limit = 1u64 << 20;
        let c = mem_container_with(&mut log, &ContainerOptions { queue_bytes: limit, ..Default::default() });
        c.create("x").await.unwrap();
        // The disk stalls: the writer thread takes the first group and waits in `sync`.
        log.hold_syncs();
        let body = vec![7u8; 100 << 10];
        let batch = frame(&[&body]);
        let cost = ops::append_size("w", batch.len()) as u64 + 1;
        let mut acks = Vec::new();
        let mut stalled = None;
        for i in 0..1000i64 {
            // Polled once: an append either is queued at once or waits for room.
            let mut queued = Box::pin(c.append("x", "w", i, 1, batch.clone()));
            match futures::poll!(queued.as_mut()) {
                std::task::Poll::Ready(ack) => acks.push(ack.unwrap()),
                std::task::Poll::Pending => {
                    stalled = Some(queued);
                    break;
                }
            }
            assert!(c.queued_bytes() <= limit, "{} bytes queued", c.queued_bytes());
        }
        let mut stalled = stalled.expect("appends stall once the limit is reached");
        // Exactly as many appends were accepted as fit in the limit, and none is answered.
        // (The create's permit, 17 bytes, may still be held a moment after its answer.)
        assert_eq!(acks.len() as u64, limit / cost);
        assert!(c.queued_bytes() >= acks.len() as u64 * cost && c.queued_bytes() <= limit);
        for ack in &mut acks {
            assert!(matches!(ack.try_recv(), Err(oneshot::error::TryRecvError::Empty)));
        }
        assert!(futures::poll!(stalled.as_mut()).is_pending(), "still no room while the disk stalls");
        // The disk catches up: the stalled append is queued, and everything is acknowledged in
        // order and readable.
        log.release_syncs();
        acks.push(stalled.await.unwrap());
        for (i, ack) in acks.into_iter().enumerate() {
            assert_eq!(ack.await.unwrap().unwrap().last_event_number, i as i64);
        }
        let n = c.info("x").unwrap().length / batch.len() as u64;
        assert_eq!(n, limit / cost + 1);
        // A single request larger than the whole limit waits for an empty queue, not forever.
        let big = vec![1u8; 2 << 20];
        append(&c, "x", "w", n as i64, &[&big]).await.unwrap();
    }

    #[tokio::test]
    async fn reads_are_cut_at_event_boundaries_and_deleted_segments_vanish() {
        let mut log = MemLog::new(32 << 20);
        let c = mem_container(&mut log);
        c.create("x").await.unwrap();
        let big = vec![7u8; 1000];
        for i in 0..10 {
            append(&c, "x", "w", i, &[&big]).await.unwrap();
        }
        let chunk = c.read("x", 0, 2500).unwrap();
        assert_eq!(payloads(&chunk).len(), 2, "two 1004-byte events fit in 2500 bytes");
        let chunk = c.read("x", 0, 10).unwrap();
        assert_eq!(payloads(&chunk).len(), 1, "at least one event even if it exceeds the limit");
        c.delete("x").await.unwrap();
        assert!(matches!(c.read("x", 0, 10), Err(StoreError::SegmentNotFound(_))));
        drop(c);
        let c = mem_container(&mut log);
        assert!(matches!(c.info("x"), Err(StoreError::SegmentNotFound(_))));
        assert!(c.create("x").await.unwrap(), "a deleted name can be created again");
    }

    // ---- Checkpoints, on the real file log ----

    use crate::log::file::MIN_FILE_SIZE;
    use crate::log::{Header, RecoveryReport, decode_header, record_len};

    fn file_opts(checkpoint_interval: u64) -> ContainerOptions {
        ContainerOptions {
            log: FileLogOptions { file_size: MIN_FILE_SIZE, ..Default::default() },
            checkpoint_interval,
            ..Default::default()
        }
    }

    /// Waits until the writer thread has finished everything queued (including a checkpoint
    /// that the last group triggered), then drops the container.
    async fn close(c: Container) {
        let _ = c.writer_state("", "").await;
        drop(c);
    }

    /// Recovers the log in `dir` twice, without starting a container: by full replay, and
    /// from the newest checkpoint.
    fn replay_both(dir: &Path) -> ((Replay, RecoveryReport), (Replay, RecoveryReport)) {
        let opts = file_opts(u64::MAX).log;
        let mut full = Replay::default();
        let (log, full_report) = FileLog::open(dir, opts.clone(), &mut |r| full.record(r)).unwrap();
        drop(log);
        let mut from_cp = Replay::default();
        let (log, cp_report) = FileLog::recover(dir, opts, &mut from_cp).unwrap();
        drop(log);
        ((full, full_report), (from_cp, cp_report))
    }

    /// Every record in log file 1: (header offset, header).
    fn records_in(dir: &Path) -> Vec<(u64, Header)> {
        let bytes = std::fs::read(dir.join(format!("log-{:020}.log", 1))).unwrap();
        let mut out = Vec::new();
        let mut pos = 0usize;
        while let Some(h) = bytes.get(pos..).and_then(decode_header) {
            out.push((pos as u64, h));
            pos += record_len(h.len);
        }
        out
    }

    fn flip_byte(dir: &Path, at: u64) {
        use std::os::unix::fs::FileExt;
        let f =
            std::fs::OpenOptions::new().read(true).write(true).open(dir.join(format!("log-{:020}.log", 1))).unwrap();
        let mut b = [0u8; 1];
        f.read_exact_at(&mut b, at).unwrap();
        f.write_all_at(&[b[0] ^ 0x10], at).unwrap();
    }

    /// What a client can observe of every segment: info and all readable events.
    fn observe(c: &Container, names: &[&str]) -> Vec<Option<(SegmentInfo, Vec<Vec<u8>>)>> {
        names
            .iter()
            .map(|n| {
                let info = c.info(n).ok()?;
                let mut events = Vec::new();
                let mut at = info.start_offset;
                while at < info.length {
                    let chunk = c.read(n, at, 1 << 20).unwrap();
                    at += chunk.data.len() as u64;
                    events.extend(payloads(&chunk));
                }
                Some((info, events))
            })
            .collect()
    }

    const NAMES: [&str; 5] = ["s/a", "s/b", "s/c", "s/src", "s/gone"];

    /// A mix of every kind of operation, over several groups: `round` makes each call differ.
    async fn workload(c: &Container, round: i64) {
        for n in NAMES {
            c.create(n).await.unwrap();
        }
        for i in 0..40i64 {
            let seg = NAMES[(i % 3) as usize];
            let writer = format!("w{}", i % 4);
            let last = c.writer_state(seg, &writer).await.unwrap().0;
            let body = vec![b'a' + (i % 26) as u8; 10 + (i as usize * 37 + round as usize) % 900];
            append(c, seg, &writer, last + 2, &[&body, format!("r{round}-{i}").as_bytes()]).await.unwrap();
        }
        let len = c.info("s/c").unwrap().length;
        c.conditional_append("s/c", len, 1, frame(&[b"conditional"])).await.unwrap();
        c.update_attribute("s/a", &format!("k{round}"), None, round as u64).await.unwrap();
        append(c, "s/src", "m", 0, &[format!("to-merge-{round}").as_bytes()]).await.unwrap();
        c.seal("s/src").await.unwrap();
        c.merge("s/b", "s/src").await.unwrap();
        // Truncate "s/a" at its second event.
        let first = c.read("s/a", c.info("s/a").unwrap().start_offset, 1).unwrap();
        c.truncate("s/a", first.offset + first.data.len() as u64).await.unwrap();
        c.delete("s/gone").await.unwrap();
    }

    #[tokio::test]
    async fn recovery_from_a_checkpoint_gives_the_same_state_as_a_full_replay() {
        let dir = tempfile::tempdir().unwrap();
        // Small interval: checkpoints are written on their own, many times.
        let c = Container::open(0, dir.path(), &file_opts(16 << 10)).unwrap();
        workload(&c, 1).await;
        // Later rounds re-create deleted names, so local ids and merges cross checkpoints.
        workload(&c, 2).await;
        c.checkpoint().await.unwrap();
        workload(&c, 3).await;
        let before = observe(&c, &NAMES);
        close(c).await;

        let records = records_in(dir.path());
        let checkpoints = records.iter().filter(|(_, h)| h.kind == RecordKind::Checkpoint).count();
        assert!(checkpoints > 3, "periodic checkpoints were written ({checkpoints})");
        let ((full, full_report), (from_cp, cp_report)) = replay_both(dir.path());
        let (cp_lsn, _) = cp_report.checkpoint.expect("recovery started from a checkpoint");
        assert!(cp_lsn > records.len() as u64 / 2, "from a recent checkpoint: lsn {cp_lsn} of {}", records.len());
        assert_eq!(full_report.last_lsn, cp_report.last_lsn);
        assert!(full.error.is_none() && from_cp.error.is_none());
        assert_eq!(from_cp.durable, full.durable, "segments, writers, attributes and read index");
        assert_eq!(from_cp.written, full.written, "the writer's view, including the next local id");

        let c = Container::open(0, dir.path(), &file_opts(16 << 10)).unwrap();
        assert_eq!(observe(&c, &NAMES), before, "what clients see is unchanged");
        // Exactly-once state survived: a retry is acknowledged without being stored again.
        let (last, len) = c.writer_state("s/a", "w0").await.unwrap();
        append(&c, "s/a", "w0", last, &[b"retry"]).await.unwrap();
        assert_eq!(c.info("s/a").unwrap().length, len);
        close(c).await;
    }

    #[tokio::test]
    async fn damage_before_the_checkpoint_is_reported_on_read_and_never_served() {
        let dir = tempfile::tempdir().unwrap();
        let c = Container::open(0, dir.path(), &file_opts(u64::MAX)).unwrap();
        c.create("a").await.unwrap();
        c.create("b").await.unwrap();
        for i in 0..4 {
            append(&c, "a", "w", i, &[format!("a{i}").as_bytes()]).await.unwrap();
        }
        append(&c, "b", "w", 0, &[b"b0"]).await.unwrap();
        c.checkpoint().await.unwrap();
        append(&c, "a", "w", 4, &[b"a4"]).await.unwrap();
        // The bytes of the second append to "a" (a1), and the record holding them.
        let victim = c.shared.durable.read().segments["a"].index[1];
        close(c).await;
        let header = victim.record().pos - RECORD_HEADER_LEN as u64;
        flip_byte(dir.path(), victim.addr.pos + 5);

        // The damage is before the checkpoint: start-up does not read it ...
        let c = Container::open(0, dir.path(), &file_opts(u64::MAX)).unwrap();
        assert!(c.shared.damage.is_none());
        // ... but no read returns those bytes, now or later.
        let file = format!("log-{:020}.log", 1);
        for _ in 0..2 {
            let err = c.read("a", victim.offset, 1 << 20).unwrap_err();
            assert_eq!(err.code(), nadi_proto::ErrorCode::Corrupt);
            let msg = err.to_string();
            assert!(msg.contains(&file) && msg.contains(&format!("offset {header}")), "names file and offset: {msg}");
            // A read that starts before the damage stops right before it.
            let chunk = c.read("a", 0, 1 << 20).unwrap();
            assert_eq!(payloads(&chunk), vec![b"a0".to_vec()]);
            assert_eq!(chunk.offset + chunk.data.len() as u64, victim.offset);
        }
        // Undamaged records, before and after the checkpoint, are served.
        assert_eq!(payloads(&c.read("a", 0, 1).unwrap()), vec![b"a0".to_vec()]);
        let after = victim.offset + victim.len as u64;
        assert_eq!(payloads(&c.read("a", after, 1 << 20).unwrap()), ["a2", "a3", "a4"].map(|s| s.as_bytes().to_vec()));
        assert_eq!(payloads(&c.read("b", 0, 1 << 20).unwrap()), vec![b"b0".to_vec()]);
        // The container keeps taking writes.
        append(&c, "a", "w", 5, &[b"a5"]).await.unwrap();
        close(c).await;
    }

    #[tokio::test]
    async fn a_damaged_or_torn_checkpoint_falls_back_without_losing_acknowledged_data() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().to_owned();
        let c = Container::open(0, &path, &file_opts(u64::MAX)).unwrap();
        workload(&c, 1).await;
        let cp1 = c.checkpoint().await.unwrap();
        workload(&c, 2).await;
        let cp2 = c.checkpoint().await.unwrap();
        workload(&c, 3).await;
        let acknowledged = observe(&c, &NAMES);
        close(c).await;
        let ((full, _), _) = replay_both(&path);
        let log_file = path.join(format!("log-{:020}.log", 1));
        let pristine = std::fs::read(&log_file).unwrap();
        let pointer = std::fs::read(path.join("checkpoint")).unwrap();
        let (cp2_pos, cp2_header) = *records_in(&path).iter().find(|(_, h)| h.lsn == cp2).unwrap();
        assert_eq!(cp2_header.kind, RecordKind::Checkpoint);

        // 1. The newest checkpoint is damaged: recovery starts from the one before, steps
        //    over the damaged record and replays everything after it.
        flip_byte(&path, cp2_pos + RECORD_HEADER_LEN as u64 + 3);
        let mut replay = Replay::default();
        let (log, report) = FileLog::recover(&path, file_opts(u64::MAX).log, &mut replay).unwrap();
        drop(log);
        assert_eq!(report.checkpoint.map(|(lsn, _)| lsn), Some(cp1));
        assert_eq!(report.bad_checkpoints.iter().map(|b| (b.lsn, b.offset)).collect::<Vec<_>>(), vec![(cp2, cp2_pos)]);
        assert!(report.corruption.is_none() && report.torn_tail.is_none());
        assert_eq!((replay.durable, replay.written), (full.durable, full.written));
        let c = Container::open(0, &path, &file_opts(u64::MAX)).unwrap();
        assert_eq!(observe(&c, &NAMES), acknowledged);
        // Writes go on after the damaged checkpoint, and survive another restart.
        append(&c, "s/b", "late", 0, &[b"late"]).await.unwrap();
        let later = observe(&c, &NAMES);
        close(c).await;
        let c = Container::open(0, &path, &file_opts(u64::MAX)).unwrap();
        assert_eq!(observe(&c, &NAMES), later);
        // A newer checkpoint that gets damaged too: recovery goes back to the first one and
        // steps over both damaged ones (the pointer file remembers the older one).
        let cp4 = c.checkpoint().await.unwrap();
        append(&c, "s/b", "late", 1, &[b"later"]).await.unwrap();
        let latest = observe(&c, &NAMES);
        close(c).await;
        let (cp4_pos, _) = *records_in(&path).iter().find(|(_, h)| h.lsn == cp4).unwrap();
        flip_byte(&path, cp4_pos + RECORD_HEADER_LEN as u64 + 3);
        let mut replay = Replay::default();
        let (log, report) = FileLog::recover(&path, file_opts(u64::MAX).log, &mut replay).unwrap();
        drop(log);
        assert_eq!(report.checkpoint.map(|(lsn, _)| lsn), Some(cp1));
        assert!(report.corruption.is_none() && report.torn_tail.is_none());
        let c = Container::open(0, &path, &file_opts(u64::MAX)).unwrap();
        assert_eq!(observe(&c, &NAMES), latest);
        close(c).await;

        // 2. A checkpoint torn by a crash: written but not durable, so the pointer file still
        //    names the earlier ones. Recovery cuts it as a torn tail.
        std::fs::write(&log_file, &pristine).unwrap();
        std::fs::write(path.join("checkpoint"), &pointer).unwrap();
        let c = Container::open(0, &path, &file_opts(u64::MAX)).unwrap();
        let cp3 = c.checkpoint().await.unwrap();
        close(c).await;
        std::fs::write(path.join("checkpoint"), &pointer).unwrap();
        let (cp3_pos, cp3_header) = *records_in(&path).iter().find(|(_, h)| h.lsn == cp3).unwrap();
        let mut torn = std::fs::read(&log_file).unwrap();
        let cut = (cp3_pos as usize) + (RECORD_HEADER_LEN + cp3_header.len) / 2;
        torn[cut..cut + 64].fill(0xEE);
        torn.truncate(cut + 64);
        std::fs::write(&log_file, &torn).unwrap();
        let mut replay = Replay::default();
        let (log, report) = FileLog::recover(&path, file_opts(u64::MAX).log, &mut replay).unwrap();
        drop(log);
        assert_eq!(report.checkpoint.map(|(lsn, _)| lsn), Some(cp2));
        assert_eq!(report.torn_tail.map(|t| t.offset), Some(cp3_pos));
        assert!(report.corruption.is_none());
        let c = Container::open(0, &path, &file_opts(u64::MAX)).unwrap();
        assert_eq!(observe(&c, &NAMES), acknowledged);
        close(c).await;

        // 3. No usable pointer file: the newest checkpoint is found by walking the headers.
        std::fs::write(path.join("checkpoint"), b"garbage").unwrap();
        let ((full, _), (from_cp, report)) = replay_both(&path);
        assert_eq!(report.checkpoint.map(|(lsn, _)| lsn), Some(cp2));
        assert_eq!((from_cp.durable, from_cp.written), (full.durable, full.written));
        std::fs::remove_file(path.join("checkpoint")).unwrap();
        let c = Container::open(0, &path, &file_opts(u64::MAX)).unwrap();
        assert_eq!(observe(&c, &NAMES), acknowledged);
        close(c).await;
    }
}
