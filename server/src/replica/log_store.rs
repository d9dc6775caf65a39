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
//! - `purge(i)` forgets entries `..=i` (openraft calls it once a snapshot covers them); the
//!   Tier-1 log recycles a file only when no entry still held and no segment byte the state
//!   refers to is in it (the container computes `keep_from`, see `container::replicated`).
//! - A checkpoint record may follow entries that are not applied yet (a follower appends
//!   ahead of what it applies): it then carries their ids and addresses (the *pending*
//!   entries, [`PENDING_MAGIC`]), and recovery starts its index with them, so it never misses
//!   one. Snapshot data a follower installs goes into `Data` records (read through the read
//!   index only).
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

/// The first bytes of a checkpoint payload that names pending entries:
///
/// ```text
/// | "NRPE" | count u32 LE | count × (envelope 32 B | file u64 | pos u64 | len u32) | checkpoint |
/// ```
///
/// Each pending entry is one written (not necessarily applied) after the checkpoint's own
/// entry and before the checkpoint record, with its body's address; `checkpoint` is the
/// state machine's payload as the caller gave it.
pub const PENDING_MAGIC: &[u8; 4] = b"NRPE";
const PENDING_LEN: usize = ENVELOPE_LEN + 20;

/// `payload` wrapped with the entries of `ix` after `applied` that are written (none: as is).
fn with_pending(ix: &Index, applied: Option<u64>, payload: Vec<u8>) -> Vec<u8> {
    let from = applied.map_or(0, |a| a + 1);
    let pending: Vec<&Held> =
        ix.held.iter().filter(|h| h.log_id.index >= from).take_while(|h| h.at.is_some()).collect();
    if pending.is_empty() {
        return payload;
    }
    let mut out = Vec::with_capacity(8 + pending.len() * PENDING_LEN + payload.len());
    out.extend_from_slice(PENDING_MAGIC);
    out.extend_from_slice(&(pending.len() as u32).to_le_bytes());
    for h in pending {
        let at = h.at.expect("written");
        out.extend_from_slice(&encode_envelope(&h.log_id, h.kind));
        out.extend_from_slice(&at.file.to_le_bytes());
        out.extend_from_slice(&at.pos.to_le_bytes());
        out.extend_from_slice(&(h.len as u32).to_le_bytes());
    }
    out.extend_from_slice(&payload);
    out
}

/// Splits a checkpoint payload into its pending entries and the state machine's payload.
fn split_pending(payload: &[u8]) -> Result<(Vec<Held>, &[u8]), String> {
    let Some(rest) = payload.strip_prefix(PENDING_MAGIC) else { return Ok((Vec::new(), payload)) };
    let count = rest.get(..4).ok_or("pending entries: no count")?;
    let count = u32::from_le_bytes(count.try_into().expect("4 bytes")) as usize;
    let table = rest.get(4..4 + count.checked_mul(PENDING_LEN).ok_or("pending entries: count")?);
    let table = table.ok_or("pending entries: shorter than their count")?;
    let mut held = Vec::with_capacity(count);
    for e in table.chunks_exact(PENDING_LEN) {
        let (log_id, kind) = decode_envelope(&e[..ENVELOPE_LEN]).ok_or("pending entries: a bad envelope")?;
        let word = |at: usize| u64::from_le_bytes(e[at..at + 8].try_into().expect("8 bytes"));
        let (file, pos) = (word(ENVELOPE_LEN), word(ENVELOPE_LEN + 8));
        let len = u32::from_le_bytes(e[ENVELOPE_LEN + 16..PENDING_LEN].try_into().expect("4 bytes")) as usize;
        held.push(Held { log_id, kind, at: Some(LogAddress { file, pos }), len, body: None });
    }
    Ok((held, &rest[4 + table.len()..]))
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
    /// Writes each payload as a `Data` record (segment bytes from a snapshot) and answers
    /// with their payload addresses; durable with the next checkpoint.
    Data {
        payloads: Vec<Vec<u8>>,
        reply: mpsc::SyncSender<Result<Vec<LogAddress>, LogError>>,
    },
    /// Makes room for an entry of up to `len` body bytes (`data`: one that holds appends, which
    /// waits at the Tier-1 capacity).
    Reserve {
        len: usize,
        data: bool,
        reply: mpsc::SyncSender<Result<(), LogError>>,
    },
    /// Writes a checkpoint record of the state as of entry `applied`, naming the later entries
    /// already written (recovery replays only the records after a checkpoint).
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
    /// None: a group that may have followers forgets entries only when openraft purges them
    /// (a snapshot covers them; a follower that needs one gets the snapshot).
    Nothing,
}

/// Why a checkpoint was not written.
#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
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
        let (pending, payload) = match split_pending(rec.payload) {
            Ok(split) => split,
            Err(e) => {
                tracing::warn!(lsn = rec.lsn, at = %rec.addr, error = %e, "checkpoint does not decode");
                return false;
            }
        };
        match self.into.checkpoint(payload) {
            Ok(applied) => {
                let mut index = Index { held: VecDeque::new(), last_purged: applied, bodies_from: 0 };
                // The entries written before the checkpoint record but not covered by it.
                for h in pending {
                    if applied.is_some_and(|a| h.log_id.index <= a.index) {
                        continue;
                    }
                    if index.push(h).is_err() {
                        break;
                    }
                }
                self.index = index;
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
            RecordKind::Checkpoint | RecordKind::Data => Ok(()),
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
    /// record, keeping log files from `keep_from` on (the caller includes
    /// [`first_held_file`](Self::first_held_file)), with the entries after `applied` already in
    /// the log named in it.
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

    /// Writes `payloads` as `Data` records (segment bytes a snapshot brought) and returns
    /// where each payload starts. They are durable once a later checkpoint is.
    pub fn write_data(&self, payloads: Vec<Vec<u8>>) -> Result<Vec<LogAddress>, LogError> {
        let (reply, rx) = mpsc::sync_channel(1);
        let stopped = || LogError::io("replica log", std::io::Error::other("the replica log thread stopped"));
        self.jobs.send(Job::Data { payloads, reply }).map_err(|_| stopped())?;
        rx.recv().map_err(|_| stopped())?
    }

    /// The log file of the first entry held (not purged), if any: files from it on must stay.
    pub fn first_held_file(&self) -> Option<u64> {
        let ix = self.shared.index.lock();
        ix.held.iter().find_map(|h| h.at).map(|a| a.file)
    }

    /// The log file the entry after `index` is in, if it is held and written.
    pub fn file_after(&self, index: u64) -> Option<u64> {
        let ix = self.shared.index.lock();
        let pos = ix.position(index + 1)?;
        ix.held.get(pos).and_then(|h| h.at).map(|a| a.file)
    }

    fn send(&self, job: Job) -> Result<(), StorageError> {
        self.jobs.send(job).map_err(|_| write_err(&std::io::Error::other("the replica log thread stopped")))
    }
}

/// The log thread: writes each queued job's records, then one fsync, then the callbacks.
fn log_thread(container: u32, mut log: Box<dyn LogWriter>, rx: mpsc::Receiver<Job>, shared: Arc<Shared>) {
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
                    let payload = with_pending(&shared.index.lock(), applied, payload);
                    // Makes everything before it durable too (its own fsync).
                    let result = log.checkpoint_keeping(&payload, keep_from).map_err(CheckpointError::from);
                    if result.is_ok()
                        && let Some(applied) = applied
                        && forget == Forget::Applied
                    {
                        shared.index.lock().forget(applied, |_| true);
                    }
                    let _ = reply.send(result);
                }
                Job::Data { payloads, reply } => {
                    let mut out = Vec::with_capacity(payloads.len());
                    let mut failed = None;
                    for p in &payloads {
                        match log.append(RecordKind::Data, p) {
                            Ok((_, addr)) => out.push(addr),
                            Err(e) => {
                                failed = Some(e);
                                break;
                            }
                        }
                    }
                    let _ = reply.send(match failed {
                        None => Ok(out),
                        Some(e) => Err(e),
                    });
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
