//! Recovery: rebuilding a container's state from its Tier-1 log at start-up.
//!
//! The log's recovery (`FileLog::recover`) finds the newest valid checkpoint and hands it and
//! every valid record after it to a [`Replay`], which applies them to both views of the state
//! through the same functions the live writer uses ([`ContainerStateMachine`]): a recovered
//! container is the state machine fed the committed log again.
//!
//! Owns: [`Replay`]. Calls: `container::state`. Called by: `Container::open` and the tests.

use crate::container::ops::Op;
use crate::container::seam::{Committed, ContainerStateMachine};
use crate::container::state::{ChunkId, Durable, Written, apply_durable, apply_written, from_checkpoint};
use crate::log::{RecordKind, RecoveredRecord, Replayer};

/// Replays recovered log records into both views.
#[derive(Debug, Default)]
pub(super) struct Replay {
    pub(super) durable: Durable,
    pub(super) written: Written,
    /// The first record that did not decode; nothing after it is applied.
    pub(super) error: Option<String>,
    /// The log holds records of a replicated container (Raft entries): a single-copy
    /// container must not open it (it would not see their data).
    pub(super) raft_records: bool,
}

/// Recovery's state machine: both views follow every committed record.
impl ContainerStateMachine for Replay {
    fn apply_ops(&mut self, at: Committed, ops: &[Op<'_>]) -> Vec<ChunkId> {
        let mut garbage = Vec::new();
        for op in ops {
            apply_written(&mut self.written, op);
            apply_durable(&mut self.durable, op, at, &mut garbage);
        }
        garbage
    }

    fn restore(&mut self, checkpoint: &[u8]) -> Result<(), String> {
        (self.durable, self.written) = from_checkpoint(checkpoint)?;
        Ok(())
    }
}

impl Replayer for Replay {
    fn checkpoint(&mut self, rec: &RecoveredRecord<'_>) -> bool {
        match self.restore(rec.payload) {
            Ok(()) => true,
            Err(e) => {
                tracing::warn!(lsn = rec.lsn, at = %rec.addr, error = %e, "checkpoint does not decode");
                false
            }
        }
    }

    fn record(&mut self, rec: &RecoveredRecord<'_>) {
        if matches!(rec.kind, RecordKind::Entry | RecordKind::Truncate | RecordKind::Data) {
            self.raft_records = true;
        }
        if self.error.is_some() || rec.kind != RecordKind::Batch {
            return;
        }
        // Chunks dropped here were deleted or are found by the storage writer's sweep at
        // start-up.
        if let Err(e) = self.apply_batch(Committed { lsn: rec.lsn, addr: rec.addr, body: 0 }, rec.payload) {
            self.error = Some(e);
        }
    }
}
