//! A replicated container's consensus group: one openraft group per container, whose log is
//! the container's Tier-1 log and whose state machine is the container's state.
//!
//! ```text
//!   leader: proposer ─► Raft::client_write(Batch) ─► openraft core
//!                                                      │ append(entries, flushed-callback)
//!                                                      ▼
//!                 ReplicaLog (log_store.rs) ─► log thread: one Entry record per entry into
//!                                              the Tier-1 log, one fsync per group of jobs,
//!                                              then the callbacks
//!                                                      │ committed on a majority
//!                                                      ▼
//!                 ReplicaState (state_machine.rs) ─► Applier::apply(ops, where they sit)
//! ```
//!
//! - [`log_store`]: [`ReplicaLog`](log_store::ReplicaLog), openraft's log storage over a
//!   [`LogWriter`](crate::log::LogWriter): entries are `Entry` records (an envelope with term,
//!   leader and index, then the body), a conflicting suffix is cut by a `Truncate` record, the
//!   vote is a small file beside the log. Recovery rebuilds the entry index from the records.
//! - [`state_machine`]: [`ReplicaState`](state_machine::ReplicaState), openraft's state machine
//!   over an [`Applier`](state_machine::Applier) (the container's state) with snapshots.
//!
//! Why openraft and this shape: `docs/replication.md`.
//!
//! Owns: the group's types. Calls: `crate::log`. Called by: `container` (a replicated
//! container's log and state machine).

pub mod log_store;
pub mod network;
pub mod state_machine;

#[cfg(test)]
mod tests;

use std::io::Cursor;

use bytes::Bytes;
use openraft::BasicNode;
use serde::{Deserialize, Serialize};

use crate::log::LogAddress;

/// A segment store's id in a container's group.
pub type NodeId = u64;

/// A Raft log id of a container group.
pub type LogId = openraft::LogId<NodeId>;

/// One group commit of container operations: the payload of a normal Raft entry.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Batch {
    /// The encoded operations (`container::ops`).
    pub ops: Bytes,
    /// Where `ops` sits in this replica's Tier-1 log, once it is there. Local: never sent to
    /// other replicas (each has its own log, with its own addresses).
    #[serde(skip)]
    pub at: Option<LogAddress>,
}

impl Batch {
    pub fn new(ops: Bytes) -> Self {
        Batch { ops, at: None }
    }
}

/// What applying an entry answers: the entry's index (the proposer already knows each
/// request's outcome; it validated them against its written state before proposing).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Applied {
    pub index: u64,
}

openraft::declare_raft_types!(
    /// The Raft types of a container group.
    pub ReplicaConfig:
        D = Batch,
        R = Applied,
        NodeId = NodeId,
        Node = BasicNode,
        Entry = openraft::Entry<ReplicaConfig>,
        SnapshotData = Cursor<Vec<u8>>,
        AsyncRuntime = openraft::TokioRuntime,
);

/// openraft's storage error for this group.
pub type StorageError = openraft::StorageError<NodeId>;
