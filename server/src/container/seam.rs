//! The seam between a container's ordered, durable log of records and the state machine that
//! applies them: where replication plugs in.
//!
//! ```text
//!   requests ─► writer thread (writer.rs): validate against the *written* state, encode a group
//!                    │
//!                    ▼
//!            ContainerLog::commit(payload) ─► Committed { lsn, addr }     ◄── the log half
//!                    │  single copy today: append to the Tier-1 log + fsync (SingleCopy)
//!                    │  replicated later:  append here, replicate, wait for a majority
//!                    ▼
//!            ContainerStateMachine::apply_batch(at, payload)              ◄── the apply half
//!                    │  the *durable* state readers see (state.rs); recovery (recovery.rs)
//!                    │  drives the very same apply from the records it finds on disk
//!                    ▼
//!            answer every request of the group
//! ```
//!
//! The shape follows openraft's storage split on purpose: its log storage takes batched
//! appends and calls back once they are flushed (our group commit), and its state machine
//! applies committed entries in order and builds/installs snapshots (our metadata checkpoints).
//! A replicated container implements [`ContainerLog`] with a consensus group whose log is this
//! Tier-1 log; [`ContainerStateMachine`] stays as it is.
//!
//! Owns: the two traits and [`SingleCopy`], the single-copy log. Calls: `crate::log`. Called
//! by: `container::writer` (commit), `container::state` and `container::recovery` (apply).

use crate::container::checkpoint::ChunkId;
use crate::container::ops::{self, Op};
use crate::log::{LogAddress, LogError, LogWriter, Lsn, RecordKind};

/// Where a committed record sits in the container's log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Committed {
    /// The record's log sequence number; committed records have increasing lsns with no gap.
    pub lsn: Lsn,
    /// Where the record's payload starts in the Tier-1 log (the read index points into it).
    pub addr: LogAddress,
    /// Where the operations start in the payload: 0 for a batch record, the envelope's length
    /// for a Raft entry (`crate::replica::log_store::ENVELOPE_LEN`).
    pub body: u32,
}

/// The log half: an ordered log of container records that says when a record is committed.
///
/// Ordering: records are committed in the order `commit` is called, and a record is never
/// committed before the ones before it. Durability: when `commit` returns `Ok`, the record
/// survives what the implementation promises (single copy: a crash of this process or
/// machine; replicated: the loss of a minority of replicas), and only then may its effects be
/// applied and acknowledged. Called from the container's one writer thread (blocking calls
/// are fine there, never on a runtime worker).
pub trait ContainerLog: Send + 'static {
    /// The largest payload one record may have.
    fn max_record_payload(&self) -> usize;

    /// Makes room for a record of up to `len` payload bytes, before anything is encoded, so
    /// that a full disk fails a whole group before any state changes. `data`: the record
    /// holds appends and waits at the Tier-1 capacity (`LogError::Full`); otherwise it is the
    /// storage writer's metadata, which may go past the capacity by one file to free space.
    fn reserve(&mut self, len: usize, data: bool) -> Result<(), LogError>;

    /// Appends one batch record, whose payload is `parts` one after the other, and returns
    /// once it is committed. `CommitError::Log` means the
    /// record may or may not be in the log: the caller's written state is then ahead of the
    /// log, and the container must stop (the writer aborts the process). `CommitError::Lost`
    /// (a replicated log) means this replica stopped leading while the record was in flight:
    /// it may still be committed by the next leader, or never; nothing of it is acknowledged,
    /// and the writer takes its view afresh once this replica leads again.
    fn commit(&mut self, parts: &[&[u8]]) -> Result<Committed, CommitError>;

    /// Writes a checkpoint record (a snapshot of the state machine) after every committed
    /// record; log files before `keep_from` may then be recycled.
    fn checkpoint(&mut self, snapshot: &[u8], keep_from: u64) -> Result<Lsn, LogError>;

    /// The log file being written (the storage writer moves data out of older files first).
    fn current_file(&self) -> u64;

    /// True if `commit` returns only after the state machine applied the record (a
    /// replicated log applies on every replica itself); the writer then does not apply it.
    fn applies(&self) -> bool {
        false
    }

    /// Called by the writer thread before its first group: returns once this log is set up
    /// (a replicated log whose group it may start: started).
    fn ready(&mut self) -> Result<(), String> {
        Ok(())
    }

    /// Called by the writer thread before each group: whether this log takes commits now.
    /// `Ok(true)`: yes, and the writer's view must be taken afresh from the durable state
    /// (this replica just started leading, with every earlier entry applied); `Ok(false)`: yes,
    /// as before; `Err(leader)`: no, this replica does not lead (the leader's URL if known).
    fn leading(&mut self) -> Result<bool, Option<String>> {
        Ok(false)
    }

    /// Periodic upkeep (a replicated log): `keep_from` is the oldest Tier-1 file the durable
    /// state refers to. Nothing by default.
    fn maintain(&mut self, keep_from: u64) {
        let _ = keep_from;
    }

    /// The term this replica leads in, as of the last [`leading`](Self::leading) that
    /// returned `Ok` (`None`: a single-copy log, which has no terms).
    fn term(&self) -> Option<u64> {
        None
    }
}

/// Why a record was not committed.
#[derive(Debug, thiserror::Error)]
pub enum CommitError {
    /// The log failed: the record may or may not be in it.
    #[error(transparent)]
    Log(#[from] LogError),
    /// This replica stopped leading while the record was in flight (its outcome is unknown).
    #[error("leadership was lost while the record was in flight")]
    Lost { leader: Option<String> },
}

/// The apply half: the container's state machine, fed committed records in log order.
///
/// `apply_batch` is called exactly once per committed batch record, in lsn order, and never
/// for a record that is not committed; `restore` replaces the whole state with a checkpoint's.
/// The live writer and recovery call the same functions, so a running store and one recovered
/// from its log cannot differ.
pub trait ContainerStateMachine {
    /// Applies the operations of one committed batch record, decoded. Returns the Tier-2
    /// chunks that no segment refers to any more (for the storage writer to delete).
    fn apply_ops(&mut self, at: Committed, ops: &[Op<'_>]) -> Vec<ChunkId>;

    /// Applies one committed batch record: decodes it, then [`apply_ops`](Self::apply_ops).
    /// An error means the payload does not decode: nothing of it was applied. (The live
    /// writer decodes first and calls `apply_ops` under the state's lock, so readers wait
    /// only for the apply.)
    fn apply_batch(&mut self, at: Committed, payload: &[u8]) -> Result<Vec<ChunkId>, String> {
        let ops = ops::decode(payload).map_err(|e| format!("record lsn {} at {}: {e}", at.lsn, at.addr))?;
        Ok(self.apply_ops(at, &ops))
    }

    /// Replaces the state with the one a checkpoint record holds. An error leaves the state
    /// as it was.
    fn restore(&mut self, checkpoint: &[u8]) -> Result<(), String>;
}

/// The single-copy log: one Tier-1 log on this machine; committed means fsync'd here.
pub struct SingleCopy {
    log: Box<dyn LogWriter>,
    container: u32,
}

impl std::fmt::Debug for SingleCopy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SingleCopy").field("container", &self.container).finish_non_exhaustive()
    }
}

impl SingleCopy {
    pub fn new(container: u32, log: Box<dyn LogWriter>) -> Self {
        Self { log, container }
    }
}

impl ContainerLog for SingleCopy {
    fn max_record_payload(&self) -> usize {
        self.log.max_record_payload()
    }

    fn reserve(&mut self, len: usize, data: bool) -> Result<(), LogError> {
        if data { self.log.reserve_data(len) } else { self.log.reserve(len) }
    }

    fn commit(&mut self, parts: &[&[u8]]) -> Result<Committed, CommitError> {
        let (lsn, addr) = self.log.append_parts(RecordKind::Batch, parts)?;
        if let Err(e) = self.log.sync() {
            // After a failed fsync the kernel may have dropped the dirty pages: the log's
            // contents are unknown, and going on could acknowledge lost data.
            tracing::error!(container = self.container, error = %e, "fsync of the Tier-1 log failed; aborting (see docs/operations.md)");
            std::process::abort();
        }
        Ok(Committed { lsn, addr, body: 0 })
    }

    fn checkpoint(&mut self, snapshot: &[u8], keep_from: u64) -> Result<Lsn, LogError> {
        self.log.checkpoint_keeping(snapshot, keep_from)
    }

    fn current_file(&self) -> u64 {
        self.log.current_file()
    }
}
