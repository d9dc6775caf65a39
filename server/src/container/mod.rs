//! A segment container: a set of segments sharing one Tier-1 log and one writer thread.
//!
//! ```text
//!   Container (this file: the API; cheap to clone)
//!      │ create/append/seal/... ──► [byte budget] ──► [bounded channel]
//!      ▼
//!   writer.rs   group commit: validate against the written state, encode one batch
//!      │
//!      ▼
//!   seam.rs     ContainerLog::commit ── SingleCopy: Tier-1 append + fsync   (the log half)
//!      │        ContainerStateMachine::apply_batch ── state.rs Durable      (the apply half)
//!      ▼
//!   answer the group; wake tail readers
//!
//!   read.rs     reads of durable bytes, from the Tier-1 log or Tier-2 chunks
//!   recovery.rs start-up: the newest checkpoint + the records after it, through the same apply
//!   checkpoint.rs, ops.rs  the two record payload codecs (snapshot, batch of operations)
//!   storage_writer.rs      moves Tier-1 bytes to Tier-2 and records it as an operation
//! ```
//!
//! The queue is bounded by count and by bytes: a sender first takes one permit per byte of its
//! request from a semaphore ([`ContainerOptions::queue_bytes`]), and the writer gives them back
//! once the request's group has been answered, so a writer faster than the disk waits instead
//! of piling up memory.
//!
//! Two views are kept apart on purpose (see [`state`]): the writer's private *written* state
//! (including records not yet committed), used only to validate and order new requests, and
//! the shared *durable* state behind a lock, updated only after commit. Readers and `info` look
//! only at the durable state, so nothing is ever served or acknowledged before it is durable.
//!
//! Metadata checkpoints: after every `checkpoint_interval` bytes of batch records (and on
//! request), the writer writes a `Checkpoint` record holding the whole durable state, read
//! index included (see [`checkpoint`]). Recovery starts from the newest valid checkpoint and
//! replays only the records after it, so start-up time is bounded by the interval. The records
//! before that checkpoint were not read at start, so [`Container::read`] checks the CRC of each
//! such record the first time it serves bytes from it, and refuses the range with `Corrupt`
//! (naming file and offset) if it fails.
//!
//! A failed `sync` aborts the process: after a failed fsync the kernel may have dropped the
//! dirty pages, so the log's contents are unknown and continuing could acknowledge lost data
//! (the PostgreSQL "fsyncgate" lesson; Neon's safekeeper does the same).
//!
//! Owns: the container API and its shared state. Calls: `crate::log` (storage), `crate::tier2`
//! (chunks). Called by: `crate::store` (which routes segments to containers).

pub mod checkpoint;
pub mod ops;
mod read;
mod recovery;
pub mod replicated;
pub mod seam;
pub mod state;
pub mod storage_writer;
mod writer;

use std::collections::HashSet;
use std::path::Path;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use parking_lot::{Mutex, RwLock};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc, oneshot, watch};

use crate::error::StoreError;
use crate::log::file::{FileLog, FileLogOptions};
use crate::log::{Corruption, LogAddress, LogReader, LogWriter, Lsn};
use crate::metrics::StoreMetrics;
use crate::tier2::Tier2;
pub use read::HeldChunk;
use recovery::Replay;
pub use state::ChunkId;
use state::Durable;
use writer::{Request, WriterThread, estimate};

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
    /// Where the writer thread counts appends and commits (the store's, shared by all its
    /// containers; by default a set nobody reads).
    pub metrics: StoreMetrics,
    /// Run the container as a member of its consensus group (`crate::replica`); `None`: a
    /// single-copy container.
    pub replication: Option<replicated::ReplicationOptions>,
}

impl Default for ContainerOptions {
    fn default() -> Self {
        Self {
            log: FileLogOptions::default(),
            checkpoint_interval: DEFAULT_CHECKPOINT_INTERVAL,
            queue_bytes: DEFAULT_QUEUE_BYTES,
            tier2: None,
            tiering: Default::default(),
            metrics: StoreMetrics::default(),
            replication: None,
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
    /// Bytes of the segment's Tier-1 read-index entries and of its Tier-2 chunk references.
    pub tier1_bytes: u64,
    pub tier2_bytes: u64,
    /// Events ever appended (merged ones included, truncated ones not subtracted).
    pub event_count: u64,
}

/// Where a segment stands at a time: see [`Container::offset_at_time`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimeAnswer {
    /// The first event appended at or after the time, or `length` if none (`past_end`).
    pub offset: u64,
    pub past_end: bool,
    /// The append time of the event at `offset` (0 if `past_end`).
    pub event_time_ms: u64,
    pub start_offset: u64,
    pub length: u64,
    pub sealed: bool,
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

/// State shared between the writer thread, readers and the container handle.
#[derive(Debug)]
struct Shared {
    id: u32,
    /// Shared with a replicated container's state machine, which applies to it.
    durable: Arc<RwLock<Durable>>,
    log: Arc<dyn LogReader>,
    /// The durable lsn (a replicated container: the applied entry index); tail readers wait
    /// for it to change.
    durable_lsn: Arc<watch::Sender<Lsn>>,
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
    garbage: Arc<Mutex<Vec<ChunkId>>>,
    /// Appends and commits are counted here.
    metrics: StoreMetrics,
    /// The Tier-1 log file being written (the storage writer moves older files' data first).
    current_file: std::sync::atomic::AtomicU64,
    /// True while appends wait for Tier-1 space (at `--tier1-capacity`): the storage writer
    /// then moves everything in older files to Tier-2 at once.
    stalled: std::sync::atomic::AtomicBool,
    /// Set once the writer thread has stopped and closed its log.
    writer_stopped: watch::Sender<bool>,
    /// A replicated container's group.
    group: Option<replicated::Group>,
}

/// The state a container starts with, shared with whatever applies to it.
struct Parts {
    durable: Arc<RwLock<Durable>>,
    durable_lsn: Arc<watch::Sender<Lsn>>,
    garbage: Arc<Mutex<Vec<ChunkId>>>,
    reader: Arc<dyn LogReader>,
    current_file: u64,
    group: Option<replicated::Group>,
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
    /// Reads the replica's applied state even where it does not serve (tests that compare
    /// replicas).
    observer: bool,
}

impl Container {
    /// Opens container `id` with its log in `dir`, recovering its state, and starts its writer
    /// thread. A damaged log opens read-only: data before the damage is served, everything else
    /// fails with a `Corrupt` error naming the file and offset.
    pub fn open(id: u32, dir: &Path, opts: &ContainerOptions) -> Result<Container, StoreError> {
        if let Some(repl) = &opts.replication {
            let o = replicated::open(id, dir, opts, repl)?;
            return Ok(Self::start_with(id, o.log, o.parts, None, o.damage, o.checkpoint, opts));
        }
        let mut replay = Replay::default();
        let (log, report) = FileLog::recover(dir, opts.log.clone(), &mut replay)
            .map_err(|e| StoreError::Internal(format!("container {id}: {e}")))?;
        if replay.raft_records {
            return Err(StoreError::Internal(format!(
                "container {id}: its Tier-1 log in {} was written by a replicated container \
                 (--container-log raft); start the store with --container-log raft",
                dir.display()
            )));
        }
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
        let parts = Parts {
            durable: Arc::new(RwLock::new(replay.durable)),
            durable_lsn: Arc::new(watch::channel(log.durable_lsn()).0),
            garbage: Arc::default(),
            reader: log.reader(),
            current_file: log.current_file(),
            group: None,
        };
        let log = Box::new(seam::SingleCopy::new(id, log));
        Self::start_with(id, log, parts, Some(replay.written), damage, checkpoint, opts)
    }

    /// Starts a container whose state is `parts` over the commit half `log`; `written` is the
    /// writer's view, or `None` to take it from the durable state once the log is ready.
    fn start_with(
        id: u32,
        log: Box<dyn seam::ContainerLog>,
        parts: Parts,
        written: Option<state::Written>,
        damage: Option<Corruption>,
        checkpoint: Option<LogAddress>,
        opts: &ContainerOptions,
    ) -> Container {
        let queue_limit = opts.queue_bytes.clamp(1, u32::MAX as u64) as u32;
        let shared = Arc::new(Shared {
            id,
            durable: parts.durable,
            log: parts.reader,
            durable_lsn: parts.durable_lsn,
            damage,
            unverified_below: checkpoint.unwrap_or(LogAddress { file: 0, pos: 0 }),
            verified: Mutex::default(),
            queue: Arc::new(Semaphore::new(queue_limit as usize)),
            queue_limit,
            tier2: opts.tier2.clone(),
            tiering: opts.tiering.clone(),
            cached_files: opts.log.cached_files as u64,
            garbage: parts.garbage,
            metrics: opts.metrics.clone(),
            current_file: parts.current_file.into(),
            stalled: false.into(),
            writer_stopped: watch::channel(false).0,
            group: parts.group,
        });
        let (tx, meta_tx) = if shared.damage.is_none() {
            let (tx, meta_tx) = WriterThread::spawn(shared.clone(), log, written, opts.checkpoint_interval);
            if opts.replication.as_ref().is_some_and(|r| r.network.is_some())
                && let Ok(rt) = tokio::runtime::Handle::try_current()
            {
                rt.spawn(upkeep(meta_tx.clone()));
            }
            (Some(tx), Some(meta_tx))
        } else {
            (None, None)
        };
        Container { shared, tx, meta_tx, observer: false }
    }

    /// A handle that reads this replica's applied state whether or not it leads (to compare
    /// replicas in tests); it takes no requests.
    #[cfg(test)]
    pub(crate) fn observer(&self) -> Container {
        Container { shared: self.shared.clone(), tx: None, meta_tx: None, observer: true }
    }

    /// This container's id.
    pub fn id(&self) -> u32 {
        self.shared.id
    }

    /// The store's metrics this container counts into.
    pub fn metrics(&self) -> &StoreMetrics {
        &self.shared.metrics
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
        self.conditional(name, expected_offset, None, event_count, data).await
    }

    /// Moves the start offset of `name` forward to `offset`, which must be an event boundary
    /// within the durable data. Earlier bytes can no longer be read (`Truncated`).
    pub async fn truncate(&self, name: &str, offset: u64) -> Result<(), StoreError> {
        let local = self.check_truncate(name, offset).await?;
        self.truncate_checked(name, local, offset).await
    }

    /// Like [`conditional_append`](Self::conditional_append), as `writer` with the number of
    /// the last event in `data` (`event_count` framed events, or raw bytes with a count of 0):
    /// a retry (`last_event_number` not above the writer's stored one) is acknowledged with the
    /// stored number before the length is checked. Numbers may skip.
    pub async fn conditional_append_as(
        &self,
        name: &str,
        writer: &str,
        last_event_number: i64,
        expected_offset: u64,
        event_count: u32,
        data: Bytes,
    ) -> Result<AppendAck, StoreError> {
        self.conditional(name, expected_offset, Some((writer.to_owned(), last_event_number)), event_count, data).await
    }

    async fn conditional(
        &self,
        name: &str,
        expected_offset: u64,
        writer: Option<(String, i64)>,
        event_count: u32,
        data: Bytes,
    ) -> Result<AppendAck, StoreError> {
        let name = name.to_owned();
        self.call(|reply| Request::ConditionalAppend { name, expected_offset, writer, event_count, data, reply }).await
    }

    /// Moves the start offset of `name` forward to any `offset` within its durable data, event
    /// boundary or not (a Pravega byte stream's truncation; Nadi readers of the segment then
    /// fail with `Corrupt` if `offset` was inside an event).
    pub async fn truncate_bytes(&self, name: &str, offset: u64) -> Result<(), StoreError> {
        let local = {
            let d = self.shared.durable.read();
            let s = d.segments.get(name).ok_or_else(|| StoreError::SegmentNotFound(name.to_owned()))?;
            if offset > s.length {
                return Err(StoreError::BadOffset { segment: name.to_owned(), offset, length: s.length });
            }
            s.local
        };
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

    /// The first readable event of `name` appended at or after `time_ms` (see
    /// `container::state`, "Append time"): exact, because it first waits until every group
    /// stamped before the time is applied (the clock has passed the time rounded up to the
    /// resolution, at most a second from now, and a barrier has gone through the writer), so
    /// later events cannot get an earlier time.
    pub async fn offset_at_time(&self, name: &str, time_ms: u64) -> Result<TimeAnswer, StoreError> {
        use state::TIME_RESOLUTION_MS as RES;
        self.serving()?;
        let now = nadi_proto::clock::now_ms();
        if time_ms > now {
            return Err(StoreError::TimeInFuture { time_ms, now_ms: now });
        }
        // Times are multiples of the resolution (but for clamping): "at or after time_ms" is
        // "at or after the next multiple".
        let aligned = time_ms.div_ceil(RES).saturating_mul(RES);
        loop {
            let now = nadi_proto::clock::now_ms();
            if now >= aligned {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis((aligned - now).min(50))).await;
        }
        self.writer_state(name, "").await?;
        self.serving()?;
        let d = self.shared.durable.read();
        let s = d.segments.get(name).ok_or_else(|| StoreError::SegmentNotFound(name.to_owned()))?;
        let (offset, event_time_ms) = s.first_at_or_after(aligned).unwrap_or((s.length, 0));
        Ok(TimeAnswer {
            offset,
            past_end: offset == s.length,
            event_time_ms,
            start_offset: s.start_offset,
            length: s.length,
            sealed: s.sealed,
        })
    }

    /// Fails with `NotLeader` where this replica of a replicated container does not serve
    /// reads: it does not lead, or leads but has not applied every entry of earlier terms yet
    /// (its state could be behind what a reader already read elsewhere).
    fn serving(&self) -> Result<(), StoreError> {
        match &self.shared.group {
            _ if self.observer => Ok(()),
            None => Ok(()),
            Some(g) => g.serving().map_err(|leader| StoreError::NotLeader { container: self.shared.id, leader }),
        }
    }

    /// Durable information about a segment.
    pub fn info(&self, name: &str) -> Result<SegmentInfo, StoreError> {
        self.serving()?;
        let d = self.shared.durable.read();
        let s = d.segments.get(name).ok_or_else(|| StoreError::SegmentNotFound(name.to_owned()))?;
        let mut writers: Vec<_> = s.writers.iter().map(|(w, n)| (w.clone(), *n)).collect();
        writers.sort();
        let mut attributes: Vec<_> = s.attributes.iter().map(|(k, v)| (k.clone(), *v)).collect();
        attributes.sort();
        Ok(SegmentInfo {
            tier1_bytes: s.index.iter().map(|e| e.len as u64).sum(),
            tier2_bytes: s.chunks.iter().map(|c| c.len).sum(),
            event_count: s.events,
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

    /// Drops this handle and waits until the container's writer thread has stopped and closed
    /// its log (once every other handle is gone too), so that the container may be opened
    /// again.
    pub async fn close(self) {
        let mut stopped = self.shared.writer_stopped.subscribe();
        drop(self);
        let _ = stopped.wait_for(|s| *s).await;
    }

    /// For a replicated container, whether this replica leads its group now (`None`: a
    /// single-copy container).
    pub fn leads(&self) -> Option<bool> {
        self.shared.group.as_ref().map(replicated::Group::leads)
    }

    /// For a replicated container whose replica here leads: its group as it sees it (the
    /// followers' lag only `with_lag`).
    pub fn group_view(&self, with_lag: bool) -> Option<replicated::GroupView> {
        self.shared.group.as_ref().and_then(|g| g.view(with_lag))
    }

    /// Carries out the controllers' placement of this container's replicas (see
    /// `replicated::Group::place`); nothing for a single-copy container.
    pub fn place(&self, members: Vec<(crate::replica::NodeId, String)>, start: bool) {
        if let Some(g) = &self.shared.group {
            g.place(members, start);
        }
    }

    /// A receiver that changes whenever more data becomes durable in this container.
    pub fn subscribe(&self) -> watch::Receiver<Lsn> {
        self.shared.durable_lsn.subscribe()
    }
}

/// How often a replicated container's log is kept up (see `ContainerLog::maintain`).
const UPKEEP_EVERY: std::time::Duration = std::time::Duration::from_secs(1);

/// Asks the writer thread of a replicated container for upkeep every [`UPKEEP_EVERY`], until it
/// stops.
async fn upkeep(meta: mpsc::Sender<Request>) {
    loop {
        tokio::time::sleep(UPKEEP_EVERY).await;
        match meta.try_send(Request::Maintain) {
            Ok(()) | Err(mpsc::error::TrySendError::Full(_)) => {}
            Err(mpsc::error::TrySendError::Closed(_)) => return,
        }
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
mod tests;

#[cfg(test)]
mod replication_tests;
