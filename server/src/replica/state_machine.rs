//! A container group's state machine: openraft's [`RaftStateMachine`] over an [`Applier`] (the
//! container's state), with snapshots in one format shared with the Tier-1 checkpoints.
//!
//! Snapshot (and replicated checkpoint) format:
//!
//! ```text
//! | "NRSM" | header length u32 LE | header (JSON: last applied log id, membership, snapshot id) | state |
//! ```
//!
//! where `state` is what [`Applier::encode`] wrote. A checkpoint without the magic was written
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
}

/// The JSON header of a snapshot.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Header {
    last_applied: Option<LogId>,
    membership: StoredMembership<NodeId, BasicNode>,
    snapshot_id: String,
}

/// The first bytes of a snapshot.
const SNAPSHOT_MAGIC: &[u8; 4] = b"NRSM";

/// Encodes a snapshot of `applier` as of `header`.
fn encode_snapshot(header: &Header, applier: &dyn Applier) -> Vec<u8> {
    let mut out = snapshot_prefix(header);
    applier.encode(&mut out);
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

/// Splits a snapshot into its header and the applier's state; `None` for a payload without
/// the magic (a checkpoint from before the container was replicated).
fn decode_snapshot(bytes: &[u8]) -> Result<Option<(Header, &[u8])>, String> {
    let Some(rest) = bytes.strip_prefix(SNAPSHOT_MAGIC) else { return Ok(None) };
    let len = rest.get(..4).ok_or("a snapshot shorter than its header length")?;
    let len = u32::from_le_bytes(len.try_into().expect("4 bytes")) as usize;
    let json = rest.get(4..4 + len).ok_or("a snapshot shorter than its header")?;
    let header = serde_json::from_slice(json).map_err(|e| format!("snapshot header: {e}"))?;
    Ok(Some((header, &rest[4 + len..])))
}

struct Inner<A> {
    applier: A,
    last_applied: Option<LogId>,
    membership: StoredMembership<NodeId, BasicNode>,
    /// The newest snapshot built or installed, with its bytes.
    current: Option<(SnapshotMeta<NodeId, BasicNode>, Vec<u8>)>,
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

    /// A checkpoint of the state as of the last applied entry (the payload of a Tier-1
    /// checkpoint record; [`RecoverInto::checkpoint`] reads it back), and that entry's index.
    pub fn checkpoint(&self) -> (Vec<u8>, Option<u64>) {
        let inner = self.inner.lock();
        let header = Header {
            last_applied: inner.last_applied,
            membership: inner.membership.clone(),
            snapshot_id: String::new(),
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
        };
        let mut out = snapshot_prefix(&header);
        out.extend_from_slice(state);
        (out, inner.last_applied.map(|l| l.index))
    }
}

impl<A: Applier> RecoverInto for ReplicaState<A> {
    fn checkpoint(&mut self, payload: &[u8]) -> Result<Option<LogId>, String> {
        let Some((header, state)) = decode_snapshot(payload)? else {
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
    async fn build_snapshot(&mut self) -> Result<Snapshot<ReplicaConfig>, StorageError> {
        let mut inner = self.inner.lock();
        inner.built += 1;
        let snapshot_id = match inner.last_applied {
            Some(l) => format!("{}-{}-{}", l.leader_id.term, l.index, inner.built),
            None => format!("none-{}", inner.built),
        };
        let header = Header { last_applied: inner.last_applied, membership: inner.membership.clone(), snapshot_id };
        let bytes = encode_snapshot(&header, &inner.applier);
        let meta = SnapshotMeta {
            last_log_id: header.last_applied,
            last_membership: header.membership,
            snapshot_id: header.snapshot_id,
        };
        inner.current = Some((meta.clone(), bytes.clone()));
        Ok(Snapshot { meta, snapshot: Box::new(Cursor::new(bytes)) })
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
        let snap_err = |e: String| -> StorageError {
            StorageIOError::read_snapshot(Some(meta.signature()), &std::io::Error::other(e)).into()
        };
        let (_, state) = decode_snapshot(&bytes)
            .and_then(|s| s.ok_or_else(|| "a snapshot without its magic".to_owned()))
            .map_err(snap_err)?;
        let mut inner = self.inner.lock();
        inner.applier.restore(state).map_err(snap_err)?;
        inner.last_applied = meta.last_log_id;
        inner.membership = meta.last_membership.clone();
        inner.current = Some((meta.clone(), bytes));
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot<ReplicaConfig>>, StorageError> {
        let inner = self.inner.lock();
        Ok(inner
            .current
            .as_ref()
            .map(|(meta, bytes)| Snapshot { meta: meta.clone(), snapshot: Box::new(Cursor::new(bytes.clone())) }))
    }
}
