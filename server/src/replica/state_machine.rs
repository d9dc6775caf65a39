//! A container group's state machine: openraft's [`RaftStateMachine`] over an [`Applier`] (the
//! container's state), with snapshots in one format shared with the Tier-1 checkpoints.
//!
//! Snapshot (and replicated checkpoint) format:
//!
//! ```text
//! | "NRSM" | header length u32 LE | header (JSON: last applied log id, membership, snapshot id) | state |
//! ```
//!
//! where `state` is what [`Applier::encode`] wrote. A snapshot sent to a follower also carries,
//! after the state, the bytes of every Tier-1 read-index entry the state refers to, in the
//! order [`Applier::residue`] lists them (`state_len` in the header says where the state ends):
//! what the leader had not moved to Tier-2 yet, which the follower writes into `Data` records
//! of its own log ([`Applier::restore_with`]). A checkpoint without the magic was written
//! before the container was replicated: all of it is the applier's state, as of no entry. The state machine is rebuilt at start-up
//! from the newest checkpoint in the Tier-1 log, and openraft applies the committed entries
//! after it again ("persistent snapshot", in openraft's terms).
//!
//! Owns: [`ReplicaState`], [`Applier`]. Calls: `replica::log_store` (drops applied bodies).
//! Called by: openraft; `replica::log_store::Recovery` (checkpoints, legacy records).

// The error type is openraft's `StorageError`, fixed by its storage traits.
#![allow(clippy::result_large_err)]

use std::io::Cursor;
use std::sync::Arc;

use openraft::storage::{RaftStateMachine, Snapshot, SnapshotMeta};
use openraft::{BasicNode, EntryPayload, RaftSnapshotBuilder, StorageIOError, StoredMembership};
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};

use super::log_store::{RecoverInto, ReplicaLog};
use super::{Applied, LogId, NodeId, ReplicaConfig, StorageError};
use crate::log::{LogAddress, RecoveredRecord};

/// The state a group replicates, fed committed entries in index order.
pub trait Applier: Send + 'static {
    /// Applies the operations of committed entry `log_id`, whose body sits at `at` in this
    /// replica's Tier-1 log. An error means `ops` does not decode: nothing of it was applied.
    fn apply(&mut self, log_id: &LogId, ops: &[u8], at: LogAddress) -> Result<(), String>;
    /// Applies a `Batch` record written before the container was replicated.
    fn apply_legacy(&mut self, ops: &[u8], at: LogAddress) -> Result<(), String>;
    /// Appends the whole state to `out`.
    fn encode(&self, out: &mut Vec<u8>);
    /// Replaces the whole state with an encoded one; an error leaves it as it was.
    fn restore(&mut self, state: &[u8]) -> Result<(), String>;
    /// The Tier-1 log bytes an encoded state refers to (its read index), in a fixed order.
    fn residue(state: &[u8]) -> Result<Vec<(LogAddress, usize)>, String>
    where
        Self: Sized,
    {
        let _ = state;
        Ok(Vec::new())
    }
    /// Like [`restore`](Self::restore), but the bytes of the `i`-th piece [`residue`](Self::residue)
    /// lists are now at `placed[i]`: (the payload address of the record holding them, how far
    /// into it they start).
    fn restore_with(&mut self, state: &[u8], placed: &[(LogAddress, u32)]) -> Result<(), String> {
        if !placed.is_empty() {
            return Err("this state machine keeps no Tier-1 bytes".into());
        }
        self.restore(state)
    }
    /// The oldest Tier-1 log file the state refers to, if any.
    fn oldest_file(&self) -> Option<u64> {
        None
    }
}

/// The JSON header of a snapshot.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Header {
    last_applied: Option<LogId>,
    membership: StoredMembership<NodeId, BasicNode>,
    snapshot_id: String,
    /// Bytes of the state; the Tier-1 bytes it refers to follow. `None`: all of the rest is
    /// state (a checkpoint).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    state_len: Option<u64>,
}

/// The first bytes of a snapshot.
const SNAPSHOT_MAGIC: &[u8; 4] = b"NRSM";

/// Encodes a snapshot of `applier` as of `header`.
fn encode_snapshot(header: &Header, applier: &dyn Applier) -> Vec<u8> {
    let mut out = snapshot_prefix(header);
    // Into a buffer of its own: an applier's encoder may start by clearing it.
    let mut state = Vec::new();
    applier.encode(&mut state);
    out.extend_from_slice(&state);
    out
}

/// The magic and header of a snapshot, to which the state is appended.
fn snapshot_prefix(header: &Header) -> Vec<u8> {
    let json = serde_json::to_vec(header).expect("a snapshot header encodes");
    let mut out = Vec::with_capacity(8 + json.len());
    out.extend_from_slice(SNAPSHOT_MAGIC);
    out.extend_from_slice(&(json.len() as u32).to_le_bytes());
    out.extend_from_slice(&json);
    out
}

/// A snapshot's header, the applier's state, and the Tier-1 bytes after it.
type Decoded<'a> = (Header, &'a [u8], &'a [u8]);

/// Splits a snapshot into its header, the applier's state and the Tier-1 bytes after it;
/// `None` for a payload without the magic (a checkpoint from before the container was
/// replicated).
fn decode_snapshot(bytes: &[u8]) -> Result<Option<Decoded<'_>>, String> {
    let Some(rest) = bytes.strip_prefix(SNAPSHOT_MAGIC) else { return Ok(None) };
    let len = rest.get(..4).ok_or("a snapshot shorter than its header length")?;
    let len = u32::from_le_bytes(len.try_into().expect("4 bytes")) as usize;
    let json = rest.get(4..4 + len).ok_or("a snapshot shorter than its header")?;
    let header: Header = serde_json::from_slice(json).map_err(|e| format!("snapshot header: {e}"))?;
    let body = &rest[4 + len..];
    let (state, data) = match header.state_len {
        None => (body, &body[body.len()..]),
        Some(n) => {
            let n = usize::try_from(n).ok().filter(|&n| n <= body.len()).ok_or("a snapshot shorter than its state")?;
            body.split_at(n)
        }
    };
    Ok(Some((header, state, data)))
}

/// Packs `pieces` (lengths, in order) into `Data` record payloads of at most `max` bytes each
/// (a piece is never split; one larger than `max` gets a record of its own) and says, for each
/// piece, which record holds it and where in it.
fn pack(pieces: &[usize], max: usize) -> (Vec<usize>, Vec<(usize, u32)>) {
    let (mut records, mut at) = (Vec::new(), Vec::with_capacity(pieces.len()));
    for &len in pieces {
        let n = records.len();
        match records.last_mut() {
            Some(size) if *size + len <= max => {
                at.push((n - 1, *size as u32));
                *size += len;
            }
            _ => {
                at.push((records.len(), 0));
                records.push(len);
            }
        }
    }
    (records, at)
}

struct Current {
    meta: SnapshotMeta<NodeId, BasicNode>,
    bytes: Vec<u8>,
    oldest_file: Option<u64>,
}

struct Inner<A> {
    applier: A,
    last_applied: Option<LogId>,
    membership: StoredMembership<NodeId, BasicNode>,
    /// The newest snapshot built or installed: its header and state, without the Tier-1 bytes
    /// (read when it is sent), and the oldest log file those are in (kept until a newer one).
    current: Option<Current>,
    built: u64,
}

/// A container group's state machine. Clones share the state (the snapshot builder is one).
pub struct ReplicaState<A> {
    inner: Arc<Mutex<Inner<A>>>,
    log: Option<ReplicaLog>,
}

impl<A> Clone for ReplicaState<A> {
    fn clone(&self) -> Self {
        ReplicaState { inner: self.inner.clone(), log: self.log.clone() }
    }
}

impl<A> std::fmt::Debug for ReplicaState<A> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReplicaState").finish_non_exhaustive()
    }
}

impl<A: Applier> ReplicaState<A> {
    pub fn new(applier: A) -> Self {
        let inner =
            Inner { applier, last_applied: None, membership: StoredMembership::default(), current: None, built: 0 };
        ReplicaState { inner: Arc::new(Mutex::new(inner)), log: None }
    }

    /// Connects the log whose applied bodies this state machine lets go of.
    pub fn with_log(mut self, log: ReplicaLog) -> Self {
        self.log = Some(log);
        self
    }

    /// Runs `f` on the applier (e.g. to read the state).
    pub fn with<T>(&self, f: impl FnOnce(&A) -> T) -> T {
        f(&self.inner.lock().applier)
    }

    /// The last applied entry.
    pub fn last_applied(&self) -> Option<LogId> {
        self.inner.lock().last_applied
    }

    /// The entry the newest snapshot was taken at, and the oldest Tier-1 file it needs (to be
    /// kept while it is the newest: a follower may be sent it).
    pub fn snapshot(&self) -> Option<(Option<LogId>, Option<u64>)> {
        self.inner.lock().current.as_ref().map(|c| (c.meta.last_log_id, c.oldest_file))
    }

    /// A checkpoint of the state as of the last applied entry (the payload of a Tier-1
    /// checkpoint record; [`RecoverInto::checkpoint`] reads it back), and that entry's index.
    pub fn checkpoint(&self) -> (Vec<u8>, Option<u64>) {
        let inner = self.inner.lock();
        let header = Header {
            last_applied: inner.last_applied,
            membership: inner.membership.clone(),
            snapshot_id: String::new(),
            state_len: None,
        };
        (encode_snapshot(&header, &inner.applier), inner.last_applied.map(|l| l.index))
    }

    /// A checkpoint whose state the caller encoded (with nothing applied since), as
    /// [`checkpoint`](Self::checkpoint) would have; and the index of the last applied entry.
    pub fn checkpoint_of(&self, state: &[u8]) -> (Vec<u8>, Option<u64>) {
        let inner = self.inner.lock();
        let header = Header {
            last_applied: inner.last_applied,
            membership: inner.membership.clone(),
            snapshot_id: String::new(),
            state_len: None,
        };
        let mut out = snapshot_prefix(&header);
        out.extend_from_slice(state);
        (out, inner.last_applied.map(|l| l.index))
    }
}

impl<A: Applier> RecoverInto for ReplicaState<A> {
    fn checkpoint(&mut self, payload: &[u8]) -> Result<Option<LogId>, String> {
        let Some((header, state, _)) = decode_snapshot(payload)? else {
            // From before the container was replicated: the state as of no entry.
            let mut inner = self.inner.lock();
            inner.applier.restore(payload)?;
            inner.last_applied = None;
            inner.membership = StoredMembership::default();
            return Ok(None);
        };
        let mut inner = self.inner.lock();
        inner.applier.restore(state)?;
        inner.last_applied = header.last_applied;
        inner.membership = header.membership;
        Ok(header.last_applied)
    }

    fn legacy_batch(&mut self, rec: &RecoveredRecord<'_>) -> Result<(), String> {
        self.inner.lock().applier.apply_legacy(rec.payload, rec.addr)
    }
}

fn sm_err(log_id: LogId, e: impl std::fmt::Display) -> StorageError {
    StorageIOError::apply(log_id, &std::io::Error::other(e.to_string())).into()
}

impl<A: Applier> RaftSnapshotBuilder<ReplicaConfig> for ReplicaState<A> {
    /// Cheap: the state's encoding (like a checkpoint). Its Tier-1 bytes are read only when a
    /// follower is sent it ([`get_current_snapshot`](RaftStateMachine::get_current_snapshot)).
    async fn build_snapshot(&mut self) -> Result<Snapshot<ReplicaConfig>, StorageError> {
        let mut inner = self.inner.lock();
        inner.built += 1;
        let snapshot_id = match inner.last_applied {
            Some(l) => format!("{}-{}-{}", l.leader_id.term, l.index, inner.built),
            None => format!("none-{}", inner.built),
        };
        let header = Header {
            last_applied: inner.last_applied,
            membership: inner.membership.clone(),
            snapshot_id,
            state_len: None,
        };
        let bytes = encode_snapshot(&header, &inner.applier);
        let meta = SnapshotMeta {
            last_log_id: header.last_applied,
            last_membership: header.membership,
            snapshot_id: header.snapshot_id,
        };
        let oldest_file = inner.applier.oldest_file();
        inner.current = Some(Current { meta: meta.clone(), bytes: bytes.clone(), oldest_file });
        Ok(Snapshot { meta, snapshot: Box::new(Cursor::new(bytes)) })
    }
}

fn snap_err(meta: &SnapshotMeta<NodeId, BasicNode>, e: impl std::fmt::Display) -> StorageError {
    StorageIOError::read_snapshot(Some(meta.signature()), &std::io::Error::other(e.to_string())).into()
}

impl<A: Applier> ReplicaState<A> {
    /// The newest snapshot with the Tier-1 bytes its state refers to, read from this
    /// replica's log (kept while the snapshot is the newest: see [`snapshot`](Self::snapshot)).
    fn materialize(&self, current: &Current) -> Result<Vec<u8>, String> {
        let Some((mut header, state, _)) = decode_snapshot(&current.bytes)? else {
            return Err("a snapshot without its magic".into());
        };
        let pieces = A::residue(state)?;
        if pieces.is_empty() {
            return Ok(current.bytes.clone());
        }
        let log = self.log.as_ref().ok_or("no log to read the snapshot's Tier-1 bytes from")?;
        let mut data = Vec::with_capacity(pieces.iter().map(|p| p.1).sum());
        log.reader().read_once(&pieces, &mut data).map_err(|e| e.to_string())?;
        header.state_len = Some(state.len() as u64);
        let mut out = snapshot_prefix(&header);
        out.extend_from_slice(state);
        out.extend_from_slice(&data);
        Ok(out)
    }
}

impl<A: Applier> RaftStateMachine<ReplicaConfig> for ReplicaState<A> {
    type SnapshotBuilder = Self;

    async fn applied_state(&mut self) -> Result<(Option<LogId>, StoredMembership<NodeId, BasicNode>), StorageError> {
        let inner = self.inner.lock();
        Ok((inner.last_applied, inner.membership.clone()))
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<Applied>, StorageError>
    where
        I: IntoIterator<Item = openraft::Entry<ReplicaConfig>> + Send,
        I::IntoIter: Send,
    {
        let mut out = Vec::new();
        let mut last = None;
        {
            let mut inner = self.inner.lock();
            for e in entries {
                match e.payload {
                    EntryPayload::Blank => {}
                    EntryPayload::Normal(batch) => {
                        // This replica's own address of the entry; `batch.at` only where no log
                        // is connected (an entry that came over the wire never carries one).
                        let at = match self.log.as_ref().and_then(|l| l.address(&e.log_id)).or(batch.at) {
                            Some(at) => at,
                            None => return Err(sm_err(e.log_id, "the entry is applied before it is written")),
                        };
                        inner.applier.apply(&e.log_id, &batch.ops, at).map_err(|m| sm_err(e.log_id, m))?;
                    }
                    EntryPayload::Membership(m) => inner.membership = StoredMembership::new(Some(e.log_id), m),
                }
                inner.last_applied = Some(e.log_id);
                last = Some(e.log_id.index);
                out.push(Applied { index: e.log_id.index });
            }
        }
        if let (Some(log), Some(last)) = (&self.log, last) {
            log.applied(last);
        }
        Ok(out)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        self.clone()
    }

    async fn begin_receiving_snapshot(&mut self) -> Result<Box<Cursor<Vec<u8>>>, StorageError> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta<NodeId, BasicNode>,
        snapshot: Box<Cursor<Vec<u8>>>,
    ) -> Result<(), StorageError> {
        let bytes = snapshot.into_inner();
        let (_, state, data) = decode_snapshot(&bytes)
            .and_then(|s| s.ok_or_else(|| "a snapshot without its magic".to_owned()))
            .map_err(|e| snap_err(meta, e))?;
        // The leader's Tier-1 bytes go into `Data` records of this replica's log; the state's
        // read index is pointed at them.
        let pieces = A::residue(state).map_err(|e| snap_err(meta, e))?;
        let lens: Vec<usize> = pieces.iter().map(|p| p.1).collect();
        if lens.iter().sum::<usize>() != data.len() {
            return Err(snap_err(
                meta,
                format!(
                    "the snapshot carries {} Tier-1 bytes, its state refers to {}",
                    data.len(),
                    lens.iter().sum::<usize>()
                ),
            ));
        }
        let mut placed = Vec::new();
        if !pieces.is_empty() {
            let log = self.log.clone().ok_or_else(|| snap_err(meta, "no log to write the snapshot's bytes to"))?;
            let (records, at) = pack(&lens, log.max_body());
            let mut payloads = Vec::with_capacity(records.len());
            let mut rest = data;
            for size in records {
                let (head, tail) = rest.split_at(size);
                payloads.push(head.to_vec());
                rest = tail;
            }
            let addrs = tokio::task::spawn_blocking(move || log.write_data(payloads))
                .await
                .map_err(|e| snap_err(meta, e))?
                .map_err(|e| snap_err(meta, e))?;
            placed = at.into_iter().map(|(r, within)| (addrs[r].offset(within as u64), within)).collect();
        }
        let (checkpoint, applied) = {
            let mut inner = self.inner.lock();
            inner.applier.restore_with(state, &placed).map_err(|e| snap_err(meta, e))?;
            inner.last_applied = meta.last_log_id;
            inner.membership = meta.last_membership.clone();
            let header = Header {
                last_applied: meta.last_log_id,
                membership: meta.last_membership.clone(),
                snapshot_id: meta.snapshot_id.clone(),
                state_len: None,
            };
            // Kept as this replica's own: its read index now points into this log.
            let own = encode_snapshot(&header, &inner.applier);
            let oldest_file = inner.applier.oldest_file();
            inner.current = Some(Current { meta: meta.clone(), bytes: own.clone(), oldest_file });
            (own, meta.last_log_id.map(|l| l.index))
        };
        // A checkpoint at once, so that a restart starts from the installed state (the
        // entries it replaces are purged by openraft next).
        if let Some(log) = self.log.clone() {
            let keep_from =
                placed.iter().map(|p| p.0.file).chain(log.first_held_file()).min().unwrap_or(log.current_file());
            tokio::task::spawn_blocking(move || {
                log.checkpoint(checkpoint, applied, keep_from, super::log_store::Forget::Nothing)
            })
            .await
            .map_err(|e| snap_err(meta, e))?
            .map_err(|e| snap_err(meta, e))?;
        }
        if let (Some(log), Some(a)) = (&self.log, applied) {
            log.applied(a);
        }
        tracing::info!(snapshot = %meta.snapshot_id, tier1_bytes = data.len(), "installed a snapshot from the leader");
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot<ReplicaConfig>>, StorageError> {
        let current = {
            let inner = self.inner.lock();
            match &inner.current {
                None => return Ok(None),
                Some(c) => Current { meta: c.meta.clone(), bytes: c.bytes.clone(), oldest_file: c.oldest_file },
            }
        };
        let this = self.clone();
        let meta = current.meta.clone();
        let bytes = tokio::task::spawn_blocking(move || this.materialize(&current))
            .await
            .map_err(|e| snap_err(&meta, e))?
            .map_err(|e| snap_err(&meta, e))?;
        Ok(Some(Snapshot { meta, snapshot: Box::new(Cursor::new(bytes)) }))
    }
}
