//! A container group's Raft log and vote: openraft's [`RaftLogStorage`] over the container's
//! Tier-1 log.
//!
//! Each Raft entry is one `Entry` record of the Tier-1 log: an [`ENVELOPE_LEN`]-byte envelope
//! (term, leader, index, body kind) and then the body (a batch of container operations, nothing
//! for a blank entry, or a membership as JSON). The records keep their own lsns; the Raft index
//! is in the envelope, so other records (checkpoints, truncations) can sit between entries.
//!
//! ```text
//!   openraft core ── append(entries, callback) ──► job channel ──► log thread
//!        ▲                                                     │ writes every queued job's
//!        │  entries readable at once (bodies held in memory    │ records, one fsync, then
//!        │  until applied, then read back from the log)        │ the callbacks
//!        └──────────────── flushed ◄───────────────────────────┘
//! ```
//!
//! - Appends return at once and are durable when their callback runs: the log thread writes
//!   every job queued so far and fsyncs once for all of them (group commit across entries).
//! - `truncate(i)` (a follower's conflicting, never-committed suffix) drops entries `i..` from
//!   the index at once and queues a `Truncate` record; entries appended after it follow it in
//!   the file. Recovery applies both in file order, so it rebuilds exactly this index. A crash
//!   before the truncation is durable brings the old suffix back, as if the truncation had not
//!   happened: the node had not acknowledged anything that relied on it.
//! - `purge(i)` forgets entries `..=i` (the state machine's checkpoint holds them); the Tier-1
//!   log recycles its files by its own rules (data must reach Tier-2 first).
//! - The vote is a JSON file beside the log, replaced atomically (write, fsync, rename, fsync
//!   the directory) before `save_vote` returns.
//!
//! Owns: [`ReplicaLog`], the entry envelope, recovery of the entry index ([`Recovery`]).
//! Calls: `crate::log`. Called by: openraft; `replica::state_machine` (bodies of applied
//! entries are dropped from memory).

// The error type is openraft's `StorageError`, fixed by its storage traits.
#![allow(clippy::result_large_err)]

use std::collections::VecDeque;
use std::fmt::Debug;
use std::io::Write;
use std::ops::RangeBounds;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::mpsc;

use bytes::Bytes;
use nadi_controller::raft::log_store::inclusive;
use openraft::storage::{LogFlushed, LogState, RaftLogReader, RaftLogStorage};
use openraft::{BasicNode, CommittedLeaderId, Entry, EntryPayload, Membership, StorageIOError, Vote};
use parking_lot::Mutex;

use super::{Batch, LogId, NodeId, ReplicaConfig, StorageError};
use crate::log::{LogAddress, LogError, LogReader, LogWriter, RecordKind, RecoveredRecord, Replayer};

/// Bytes of the envelope in front of an entry's body.
pub const ENVELOPE_LEN: usize = 32;

/// What an entry's body is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
enum BodyKind {
    Blank = 0,
    Normal = 1,
    Membership = 2,
}

/// The envelope of an `Entry` record (little-endian):
///
/// ```text
/// | term 8 B | leader node 8 B | index 8 B | body kind 1 B | reserved 7 B (zero) |
/// ```
fn encode_envelope(log_id: &LogId, kind: BodyKind) -> [u8; ENVELOPE_LEN] {
    let mut e = [0u8; ENVELOPE_LEN];
    e[0..8].copy_from_slice(&log_id.leader_id.term.to_le_bytes());
    e[8..16].copy_from_slice(&log_id.leader_id.node_id.to_le_bytes());
    e[16..24].copy_from_slice(&log_id.index.to_le_bytes());
    e[24] = kind as u8;
    e
}

fn decode_envelope(p: &[u8]) -> Option<(LogId, BodyKind)> {
    let word = |at: usize| p.get(at..at + 8).map(|b| u64::from_le_bytes(b.try_into().expect("8 bytes")));
    let (term, node, index) = (word(0)?, word(8)?, word(16)?);
    let kind = match *p.get(24)? {
        0 => BodyKind::Blank,
        1 => BodyKind::Normal,
        2 => BodyKind::Membership,
        _ => return None,
    };
    if p.len() < ENVELOPE_LEN || p[25..ENVELOPE_LEN].iter().any(|&b| b != 0) {
        return None;
    }
    Some((LogId::new(CommittedLeaderId::new(term, node), index), kind))
}

/// An entry the log holds.
#[derive(Debug)]
struct Held {
    log_id: LogId,
    kind: BodyKind,
    /// Where the body starts in the Tier-1 log; `None` until the log thread wrote it.
    at: Option<LogAddress>,
    len: usize,
    /// The body, kept in memory from append until the entry is applied (so that the apply and
    /// replication to followers need not read it back).
    body: Option<Bytes>,
}

/// The entries the log holds, with consecutive indexes, and what was purged before them.
#[derive(Debug, Default)]
struct Index {
    held: VecDeque<Held>,
    last_purged: Option<LogId>,
    /// Entries before this index hold no body in memory any more.
    bodies_from: u64,
}

impl Index {
    fn last(&self) -> Option<LogId> {
        self.held.back().map(|h| h.log_id).or(self.last_purged)
    }

    fn position(&self, index: u64) -> Option<usize> {
        let first = self.held.front()?.log_id.index;
        let pos = usize::try_from(index.checked_sub(first)?).ok()?;
        (pos < self.held.len()).then_some(pos)
    }

    fn get_mut(&mut self, log_id: &LogId) -> Option<&mut Held> {
        let pos = self.position(log_id.index)?;
        self.held.get_mut(pos).filter(|h| h.log_id == *log_id)
    }

    /// Forgets the entries from the front up to `upto` while `may` allows (their state is in
    /// a checkpoint); they count as purged.
    fn forget(&mut self, upto: u64, may: impl Fn(&Held) -> bool) {
        while let Some(h) = self.held.front()
            && h.log_id.index <= upto
            && may(h)
        {
            self.last_purged = Some(h.log_id);
            self.held.pop_front();
        }
    }

    /// Drops the entries at `index` and after.
    fn cut_from(&mut self, index: u64) {
        self.bodies_from = self.bodies_from.min(index);
        let keep = match self.held.front() {
            Some(f) => index.saturating_sub(f.log_id.index) as usize,
            None => 0,
        };
        self.held.truncate(keep);
    }

    /// Adds an entry after the last one; an entry at or before the last one replaces the
    /// suffix from its index (what a truncation followed by an append does). Refuses a hole.
    fn push(&mut self, held: Held) -> Result<(), String> {
        let index = held.log_id.index;
        if let Some(next) = self.last().map(|l| l.index + 1)
            && index > next
        {
            return Err(format!("entry {} follows entry {} in the log: a hole", held.log_id, next - 1));
        }
        self.cut_from(index);
        if self.held.is_empty()
            && let Some(p) = self.last_purged
            && index <= p.index
        {
            // Purged already (the state machine holds it): nothing to keep.
            return Ok(());
        }
        self.held.push_back(held);
        Ok(())
    }
}

/// What the log and its readers share.
struct Shared {
    index: Mutex<Index>,
    reader: Arc<dyn LogReader>,
    /// The Tier-1 log file being written.
    current_file: std::sync::atomic::AtomicU64,
}

impl Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared").finish_non_exhaustive()
    }
}

impl Shared {
    fn entry(&self, h: &Held) -> Result<Entry<ReplicaConfig>, StorageError> {
        let body = match (&h.body, h.at) {
            (Some(b), _) => b.clone(),
            (None, Some(at)) => self.reader.read(at, h.len).map_err(|e| read_err(&e))?,
            (None, None) => return Err(read_err(&std::io::Error::other(format!("entry {} has no body", h.log_id)))),
        };
        let payload = match h.kind {
            BodyKind::Blank => EntryPayload::Blank,
            BodyKind::Normal => EntryPayload::Normal(Batch { ops: body, at: h.at }),
            BodyKind::Membership => {
                let m: Membership<NodeId, BasicNode> = serde_json::from_slice(&body).map_err(|e| read_err(&e))?;
                EntryPayload::Membership(m)
            }
        };
        Ok(Entry { log_id: h.log_id, payload })
    }
}

fn read_err<E: std::error::Error + 'static>(e: &E) -> StorageError {
    StorageIOError::read_logs(e).into()
}

fn write_err<E: std::error::Error + 'static>(e: &E) -> StorageError {
    StorageIOError::write_logs(e).into()
}

/// Work for the log thread, in the order openraft asked for it.
enum Job {
    Append {
        entries: Vec<(LogId, BodyKind, Bytes)>,
        done: LogFlushed<ReplicaConfig>,
    },
    Truncate {
        index: u64,
    },
    /// Answered once everything queued before it is durable.
    Barrier(mpsc::SyncSender<()>),
    /// Makes room for an entry of up to `len` body bytes (`data`: one that holds appends, which
    /// waits at the Tier-1 capacity).
    Reserve {
        len: usize,
        data: bool,
        reply: mpsc::SyncSender<Result<(), LogError>>,
    },
    /// Writes a checkpoint record of the state as of entry `applied`, if no later entry was
    /// written before it (recovery replays only the records after a checkpoint).
    Checkpoint {
        payload: Vec<u8>,
        applied: Option<u64>,
        keep_from: u64,
        forget: Forget,
        reply: mpsc::SyncSender<Result<crate::log::Lsn, CheckpointError>>,
    },
}

/// Which entries a written checkpoint lets the log forget (they are in the checkpoint).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Forget {
    /// Every entry up to the checkpoint's: a group of one, which no follower reads from.
    Applied,
    /// Only entries up to the checkpoint's whose records are in log files the Tier-1 log
    /// recycles now (their bytes are gone). A follower that still needs one needs a snapshot.
    Recycled,
}

/// Why a checkpoint was not written.
#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    /// Entries after the checkpoint's were already in the log: it is tried again later.
    #[error("entries up to {written} are in the log, the checkpoint is of entry {applied:?}; not written")]
    NotQuiet { applied: Option<u64>, written: u64 },
    #[error(transparent)]
    Log(#[from] LogError),
    #[error("the replica log thread stopped")]
    Stopped,
}

/// A container group's Raft log (and vote). Clones share the log; the Tier-1 log itself is
/// written by one thread, which stops when the last clone is dropped.
#[derive(Clone)]
pub struct ReplicaLog {
    shared: Arc<Shared>,
    jobs: mpsc::Sender<Job>,
    vote_path: Arc<PathBuf>,
    container: u32,
    thread: LogThread,
    max_payload: usize,
}

/// The log thread of a [`ReplicaLog`], to wait for: it stops (and closes the Tier-1 log) once
/// every clone of the log is dropped. Holding this does not keep it running.
#[derive(Clone, Debug)]
pub struct LogThread(Arc<Mutex<Option<std::thread::JoinHandle<()>>>>);

impl LogThread {
    /// Waits up to `timeout` for the thread to stop; true if it did.
    pub fn stopped_within(&self, timeout: std::time::Duration) -> bool {
        let deadline = std::time::Instant::now() + timeout;
        loop {
            let mut slot = self.0.lock();
            match slot.as_ref() {
                None => return true,
                Some(h) if h.is_finished() => {
                    let _ = slot.take().map(|h| h.join());
                    return true;
                }
                Some(_) if std::time::Instant::now() >= deadline => return false,
                Some(_) => {}
            }
            drop(slot);
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
    }
}

impl Debug for ReplicaLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReplicaLog").field("container", &self.container).finish_non_exhaustive()
    }
}

/// Measures a [`ReplicaLog`]'s entries (for replication lag) without keeping it open.
#[derive(Clone, Debug)]
pub struct EntrySizes(std::sync::Weak<Shared>);

impl EntrySizes {
    /// Body bytes of the entries held after index `after` (all of them for `None`); 0 once the
    /// log is closed. Entries already forgotten count nothing.
    pub fn bytes_after(&self, after: Option<u64>) -> u64 {
        let Some(shared) = self.0.upgrade() else { return 0 };
        let ix = shared.index.lock();
        let from = after.map_or(0, |a| a + 1);
        let start = ix.held.front().map_or(0, |h| from.saturating_sub(h.log_id.index) as usize);
        ix.held.range(start.min(ix.held.len())..).map(|h| h.len as u64).sum()
    }
}

/// Receives a checkpoint found by recovery, and records written before the container was
/// replicated (implemented by the state machine).
pub trait RecoverInto {
    /// A checkpoint record's payload: the state machine as of some applied entry. Returns the
    /// entry it was taken at, or `Err` if it does not decode (the state is then unchanged).
    fn checkpoint(&mut self, payload: &[u8]) -> Result<Option<LogId>, String>;
    /// A `Batch` record of a single-copy container: committed by definition, applied at once.
    fn legacy_batch(&mut self, rec: &RecoveredRecord<'_>) -> Result<(), String>;
}

/// Rebuilds the entry index from the records recovery finds (a [`Replayer`] for
/// `FileLog::recover`): the newest checkpoint goes to the state machine, then every `Entry` and
/// `Truncate` record after it, in file order, into the index.
pub struct Recovery<'a> {
    into: &'a mut dyn RecoverInto,
    index: Index,
    /// The first record that did not fit (bad envelope, a hole, a legacy batch that does not
    /// apply): nothing after it was used.
    pub error: Option<String>,
}

impl Debug for Recovery<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Recovery").field("error", &self.error).finish_non_exhaustive()
    }
}

impl<'a> Recovery<'a> {
    pub fn new(into: &'a mut dyn RecoverInto) -> Self {
        Recovery { into, index: Index::default(), error: None }
    }
}

impl Replayer for Recovery<'_> {
    fn checkpoint(&mut self, rec: &RecoveredRecord<'_>) -> bool {
        match self.into.checkpoint(rec.payload) {
            Ok(applied) => {
                self.index = Index { held: VecDeque::new(), last_purged: applied, bodies_from: 0 };
                true
            }
            Err(e) => {
                tracing::warn!(lsn = rec.lsn, at = %rec.addr, error = %e, "checkpoint does not decode");
                false
            }
        }
    }

    fn record(&mut self, rec: &RecoveredRecord<'_>) {
        if self.error.is_some() {
            return;
        }
        let result = match rec.kind {
            RecordKind::Entry => match decode_envelope(rec.payload) {
                Some((log_id, kind)) => self.index.push(Held {
                    log_id,
                    kind,
                    at: Some(rec.addr.offset(ENVELOPE_LEN as u64)),
                    len: rec.payload.len() - ENVELOPE_LEN,
                    body: None,
                }),
                None => Err("an entry record with a bad envelope".to_owned()),
            },
            RecordKind::Truncate => match rec.payload.get(..8) {
                Some(b) => {
                    self.index.cut_from(u64::from_le_bytes(b.try_into().expect("8 bytes")));
                    Ok(())
                }
                None => Err("a truncate record without an index".to_owned()),
            },
            RecordKind::Batch => self.into.legacy_batch(rec),
            RecordKind::Checkpoint => Ok(()),
        };
        if let Err(e) = result {
            self.error = Some(format!("record lsn {} at {}: {e}", rec.lsn, rec.addr));
        }
    }
}

impl ReplicaLog {
    /// Starts the log of container `container` over `log`, with the entries `recovery` found,
    /// and its vote in `vote_path`.
    pub fn start(container: u32, log: Box<dyn LogWriter>, recovery: Recovery<'_>, vote_path: &Path) -> Self {
        let current_file = log.current_file().into();
        let max_payload = log.max_record_payload() - ENVELOPE_LEN;
        let shared = Arc::new(Shared { index: Mutex::new(recovery.index), reader: log.reader(), current_file });
        let (jobs, rx) = mpsc::channel();
        let thread_shared = shared.clone();
        let handle = std::thread::Builder::new()
            .name(format!("nadi-replica-log-{container}"))
            .spawn(move || log_thread(container, log, rx, thread_shared))
            .expect("spawn replica log thread");
        let thread = LogThread(Arc::new(Mutex::new(Some(handle))));
        ReplicaLog { shared, jobs, vote_path: Arc::new(vote_path.to_path_buf()), container, thread, max_payload }
    }

    /// A handle that measures entries without keeping the log open.
    pub fn sizes(&self) -> EntrySizes {
        EntrySizes(Arc::downgrade(&self.shared))
    }

    /// The log thread, to wait for after the last clone is dropped.
    pub fn thread(&self) -> LogThread {
        self.thread.clone()
    }

    /// Drops the bodies of entries up to `index` from memory (they are applied; a reader reads
    /// them back from the log).
    pub(crate) fn applied(&self, index: u64) {
        let mut ix = self.shared.index.lock();
        // From the first entry that may still hold its body: each entry is visited about once.
        let from = ix.bodies_from.max(ix.held.front().map_or(0, |h| h.log_id.index));
        let Some(start) = ix.position(from) else { return };
        let mut next = from;
        for h in ix.held.range_mut(start..).take_while(|h| h.log_id.index <= index) {
            if h.at.is_none() {
                // Not written yet (cannot be: applied entries are flushed); keep it.
                break;
            }
            h.body = None;
            next = h.log_id.index + 1;
        }
        ix.bodies_from = next;
    }

    /// Where the body of entry `log_id` starts in the Tier-1 log, once it is written.
    pub fn address(&self, log_id: &LogId) -> Option<LogAddress> {
        self.shared.index.lock().get_mut(log_id).and_then(|h| h.at)
    }

    /// Waits until everything queued so far is durable (or the log thread stopped).
    pub fn barrier(&self) {
        let (tx, rx) = mpsc::sync_channel(1);
        if self.jobs.send(Job::Barrier(tx)).is_ok() {
            let _ = rx.recv();
        }
    }

    /// The largest body an entry may have.
    pub fn max_body(&self) -> usize {
        self.max_payload
    }

    /// The Tier-1 log file being written.
    pub fn current_file(&self) -> u64 {
        self.shared.current_file.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// A reader of the Tier-1 log.
    pub fn reader(&self) -> Arc<dyn LogReader> {
        self.shared.reader.clone()
    }

    /// Makes room for an entry of up to `len` body bytes before it is proposed, so that a full
    /// disk fails a request before anything changes (see `LogWriter::reserve_data`).
    pub fn reserve(&self, len: usize, data: bool) -> Result<(), LogError> {
        let (reply, rx) = mpsc::sync_channel(1);
        let stopped = || LogError::io("replica log", std::io::Error::other("the replica log thread stopped"));
        self.jobs.send(Job::Reserve { len: len + ENVELOPE_LEN, data, reply }).map_err(|_| stopped())?;
        rx.recv().map_err(|_| stopped())?
    }

    /// Writes `payload` (a checkpoint of the state as of entry `applied`) as a checkpoint
    /// record, keeping log files from `keep_from` on, unless an entry after `applied` is in the
    /// log already ([`CheckpointError::NotQuiet`]).
    pub fn checkpoint(
        &self,
        payload: Vec<u8>,
        applied: Option<u64>,
        keep_from: u64,
        forget: Forget,
    ) -> Result<crate::log::Lsn, CheckpointError> {
        let (reply, rx) = mpsc::sync_channel(1);
        let job = Job::Checkpoint { payload, applied, keep_from, forget, reply };
        self.jobs.send(job).map_err(|_| CheckpointError::Stopped)?;
        rx.recv().map_err(|_| CheckpointError::Stopped)?
    }

    fn send(&self, job: Job) -> Result<(), StorageError> {
        self.jobs.send(job).map_err(|_| write_err(&std::io::Error::other("the replica log thread stopped")))
    }
}

/// The log thread: writes each queued job's records, then one fsync, then the callbacks.
fn log_thread(container: u32, mut log: Box<dyn LogWriter>, rx: mpsc::Receiver<Job>, shared: Arc<Shared>) {
    // The index of the last entry record written (a checkpoint may follow only entries it
    // covers).
    let mut last_written: Option<u64> = shared.index.lock().held.back().map(|h| h.log_id.index);
    // The `keep_from` of the previous checkpoint: the Tier-1 log recycles the files before
    // the smaller of the two newest.
    let mut kept_before: u64 = 0;
    while let Ok(first) = rx.recv() {
        let mut jobs = vec![first];
        jobs.extend(rx.try_iter());
        let mut flushed = Vec::new();
        let mut barriers = Vec::new();
        for job in jobs {
            match job {
                Job::Append { entries, done } => {
                    let mut failed = None;
                    for (log_id, kind, body) in entries {
                        let env = encode_envelope(&log_id, kind);
                        match log.append_parts(RecordKind::Entry, &[&env, &body]) {
                            Ok((_, addr)) => {
                                last_written = Some(log_id.index);
                                let at = addr.offset(ENVELOPE_LEN as u64);
                                if let Some(h) = shared.index.lock().get_mut(&log_id) {
                                    h.at = Some(at);
                                }
                            }
                            Err(e) => {
                                failed = Some(e);
                                break;
                            }
                        }
                    }
                    flushed.push((done, failed));
                }
                Job::Truncate { index } => {
                    last_written = last_written.filter(|&w| w < index).or(index.checked_sub(1));
                    if let Err(e) = log.append(RecordKind::Truncate, &index.to_le_bytes()) {
                        // The index already dropped the entries; without the record, a restart
                        // brings back a suffix this node never acknowledged (see the module docs).
                        tracing::warn!(container, index, error = %e, "cannot write a truncate record");
                    }
                }
                Job::Barrier(tx) => barriers.push(tx),
                Job::Reserve { len, data, reply } => {
                    let _ = reply.send(if data { log.reserve_data(len) } else { log.reserve(len) });
                }
                Job::Checkpoint { payload, applied, keep_from, forget, reply } => {
                    let result = match last_written {
                        Some(w) if applied.is_none_or(|a| a < w) => {
                            Err(CheckpointError::NotQuiet { applied, written: w })
                        }
                        // Makes everything before it durable too (its own fsync).
                        _ => log.checkpoint_keeping(&payload, keep_from).map_err(CheckpointError::from),
                    };
                    if result.is_ok()
                        && let Some(applied) = applied
                    {
                        let recycled_before = keep_from.min(kept_before);
                        shared.index.lock().forget(applied, |h| {
                            forget == Forget::Applied || h.at.is_some_and(|a| a.file < recycled_before)
                        });
                        kept_before = keep_from;
                    }
                    let _ = reply.send(result);
                }
            }
        }
        shared.current_file.store(log.current_file(), std::sync::atomic::Ordering::Relaxed);
        if let Err(e) = log.sync() {
            // After a failed fsync the kernel may have dropped the dirty pages: the log's
            // contents are unknown, and going on could acknowledge lost data.
            tracing::error!(container, error = %e, "fsync of the Tier-1 log failed; aborting (see docs/operations.md)");
            std::process::abort();
        }
        for (done, failed) in flushed {
            done.log_io_completed(match failed {
                None => Ok(()),
                Some(e) => Err(log_io_error(e)),
            });
        }
        for b in barriers {
            let _ = b.send(());
        }
    }
    tracing::debug!(container, "replica log thread stopped");
}

fn log_io_error(e: LogError) -> std::io::Error {
    std::io::Error::other(e.to_string())
}

impl RaftLogReader<ReplicaConfig> for ReplicaLog {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + Send>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry<ReplicaConfig>>, StorageError> {
        let Some((first, last)) = inclusive(&range) else { return Ok(vec![]) };
        let ix = self.shared.index.lock();
        let Some(front) = ix.held.front().map(|h| h.log_id.index) else { return Ok(vec![]) };
        let from = first.max(front);
        let mut out = Vec::new();
        if let Some(start) = ix.position(from) {
            for h in ix.held.range(start..).take_while(|h| h.log_id.index <= last) {
                out.push(self.shared.entry(h)?);
            }
        }
        Ok(out)
    }
}

impl RaftLogStorage<ReplicaConfig> for ReplicaLog {
    type LogReader = ReplicaLog;

    async fn get_log_state(&mut self) -> Result<LogState<ReplicaConfig>, StorageError> {
        let ix = self.shared.index.lock();
        Ok(LogState { last_purged_log_id: ix.last_purged, last_log_id: ix.last() })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote<NodeId>) -> Result<(), StorageError> {
        let bytes = serde_json::to_vec(vote).map_err(|e| StorageIOError::write_vote(&e))?;
        write_atomically(&self.vote_path, &bytes).map_err(|e| StorageIOError::write_vote(&e).into())
    }

    async fn read_vote(&mut self) -> Result<Option<Vote<NodeId>>, StorageError> {
        match std::fs::read(&*self.vote_path) {
            Ok(bytes) => Ok(Some(serde_json::from_slice(&bytes).map_err(|e| StorageIOError::read_vote(&e))?)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(StorageIOError::read_vote(&e).into()),
        }
    }

    async fn append<I>(&mut self, entries: I, callback: LogFlushed<ReplicaConfig>) -> Result<(), StorageError>
    where
        I: IntoIterator<Item = Entry<ReplicaConfig>> + Send,
        I::IntoIter: Send,
    {
        let mut jobs = Vec::new();
        {
            let mut ix = self.shared.index.lock();
            for e in entries {
                let (kind, body) = match e.payload {
                    EntryPayload::Blank => (BodyKind::Blank, Bytes::new()),
                    EntryPayload::Normal(b) => (BodyKind::Normal, b.ops),
                    EntryPayload::Membership(m) => {
                        (BodyKind::Membership, Bytes::from(serde_json::to_vec(&m).map_err(|e| write_err(&e))?))
                    }
                };
                let held = Held { log_id: e.log_id, kind, at: None, len: body.len(), body: Some(body.clone()) };
                ix.push(held).map_err(|e| write_err(&std::io::Error::other(e)))?;
                jobs.push((e.log_id, kind, body));
            }
        }
        self.send(Job::Append { entries: jobs, done: callback })
    }

    async fn truncate(&mut self, log_id: LogId) -> Result<(), StorageError> {
        self.shared.index.lock().cut_from(log_id.index);
        self.send(Job::Truncate { index: log_id.index })
    }

    async fn purge(&mut self, log_id: LogId) -> Result<(), StorageError> {
        let mut ix = self.shared.index.lock();
        while ix.held.front().is_some_and(|h| h.log_id.index <= log_id.index) {
            ix.held.pop_front();
        }
        if ix.last_purged.is_none_or(|p| p.index < log_id.index) {
            ix.last_purged = Some(log_id);
        }
        Ok(())
    }
}

/// Replaces `path` with `bytes` so that a crash leaves the old or the new content, never a mix.
fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::File::create(&tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)?;
    if let Some(dir) = path.parent() {
        std::fs::File::open(dir)?.sync_all()?;
    }
    Ok(())
}
