//! A container whose log is a consensus group (`crate::replica`): the commit half of the seam
//! proposes each group as one Raft entry, and the container's state is the group's state
//! machine, applied on every replica.
//!
//! ```text
//!   writer thread ── Replicated::commit(group) ── Raft::client_write ──► committed on a
//!        ▲                                                               majority, applied
//!        └──────────── returns once applied ◄── ContainerApplier::apply ─┘ (durable state)
//! ```
//!
//! With one replica (`nadi standalone`, `--replication-factor 1`) the group has one voter: an
//! entry is committed once it is fsync'd here, exactly the single-copy promise, through the
//! same code a replicated container runs.
//!
//! Owns: [`ContainerApplier`], [`Replicated`], [`ReplicationOptions`], opening a replicated
//! container. Calls: `replica`, `container::state`, `container::ops`, `log`. Called by:
//! `Container::open`.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use openraft::error::{InstallSnapshotError, RPCError, RaftError, Unreachable};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse, VoteRequest,
    VoteResponse,
};
use openraft::{BasicNode, Raft};
use parking_lot::{Mutex, RwLock};
use tokio::sync::watch;

use crate::container::ops;
use crate::container::seam::{Committed, ContainerLog, ContainerStateMachine};
use crate::container::state::{ChunkId, Durable, from_checkpoint};
use crate::log::{LogAddress, LogError, Lsn};
use crate::replica::log_store::{CheckpointError, ENVELOPE_LEN, Recovery, ReplicaLog};
use crate::replica::state_machine::{Applier, ReplicaState};
use crate::replica::{Batch, LogId, NodeId, ReplicaConfig};

/// How a replicated container runs.
#[derive(Debug, Clone)]
pub struct ReplicationOptions {
    /// This segment store's id in every group it is a member of.
    pub node_id: NodeId,
    /// Leader heartbeat interval.
    pub heartbeat: Duration,
    /// A follower that hears no leader for a random time in `[election_min, election_max]`
    /// starts an election.
    pub election_min: Duration,
    pub election_max: Duration,
}

impl Default for ReplicationOptions {
    fn default() -> Self {
        ReplicationOptions {
            node_id: 1,
            heartbeat: Duration::from_millis(100),
            election_min: Duration::from_millis(400),
            election_max: Duration::from_millis(800),
        }
    }
}

/// The container's state as a group's state machine: applies committed entries to the durable
/// state readers see.
pub(super) struct ContainerApplier {
    pub(super) durable: Arc<RwLock<Durable>>,
    pub(super) garbage: Arc<Mutex<Vec<ChunkId>>>,
    pub(super) durable_lsn: Arc<watch::Sender<Lsn>>,
}

impl ContainerApplier {
    fn apply_at(&mut self, at: Committed, payload: &[u8]) -> Result<(), String> {
        let ops = ops::decode(payload).map_err(|e| format!("entry {} at {}: {e}", at.lsn, at.addr))?;
        let garbage = self.durable.write().apply_ops(at, &ops);
        if !garbage.is_empty() {
            self.garbage.lock().extend(garbage);
        }
        Ok(())
    }
}

impl Applier for ContainerApplier {
    fn apply(&mut self, log_id: &LogId, ops: &[u8], at: LogAddress) -> Result<(), String> {
        // `at` is where the body starts; the record's payload starts at its envelope.
        let payload = LogAddress { file: at.file, pos: at.pos - ENVELOPE_LEN as u64 };
        self.apply_at(Committed { lsn: log_id.index, addr: payload, body: ENVELOPE_LEN as u32 }, ops)?;
        self.durable_lsn.send_replace(log_id.index);
        Ok(())
    }

    fn apply_legacy(&mut self, ops: &[u8], at: LogAddress) -> Result<(), String> {
        self.apply_at(Committed { lsn: 0, addr: at, body: 0 }, ops)
    }

    fn encode(&self, out: &mut Vec<u8>) {
        let d = self.durable.read();
        d.encode_checkpoint(d.next_local, out);
    }

    fn restore(&mut self, state: &[u8]) -> Result<(), String> {
        let (durable, _) = from_checkpoint(state)?;
        *self.durable.write() = durable;
        Ok(())
    }
}

/// The network of a group with no other members (one replica): nothing is ever sent.
#[derive(Debug, Clone, Default)]
pub(super) struct NoPeers;

#[derive(Debug)]
pub(super) struct NoPeer;

impl RaftNetworkFactory<ReplicaConfig> for NoPeers {
    type Network = NoPeer;

    async fn new_client(&mut self, _target: NodeId, _node: &BasicNode) -> NoPeer {
        NoPeer
    }
}

fn no_peer<E: std::error::Error>() -> RPCError<NodeId, BasicNode, E> {
    RPCError::Unreachable(Unreachable::new(&std::io::Error::other("this container has no other replicas")))
}

impl RaftNetwork<ReplicaConfig> for NoPeer {
    async fn append_entries(
        &mut self,
        _rpc: AppendEntriesRequest<ReplicaConfig>,
        _option: RPCOption,
    ) -> Result<AppendEntriesResponse<NodeId>, RPCError<NodeId, BasicNode, RaftError<NodeId>>> {
        Err(no_peer())
    }

    async fn install_snapshot(
        &mut self,
        _rpc: InstallSnapshotRequest<ReplicaConfig>,
        _option: RPCOption,
    ) -> Result<InstallSnapshotResponse<NodeId>, RPCError<NodeId, BasicNode, RaftError<NodeId, InstallSnapshotError>>>
    {
        Err(no_peer())
    }

    async fn vote(
        &mut self,
        _rpc: VoteRequest<NodeId>,
        _option: RPCOption,
    ) -> Result<VoteResponse<NodeId>, RPCError<NodeId, BasicNode, RaftError<NodeId>>> {
        Err(no_peer())
    }
}

/// The commit half of a replicated container: one Raft entry per group.
pub(super) struct Replicated {
    id: u32,
    node_id: NodeId,
    raft: Raft<ReplicaConfig>,
    /// `None` only while dropping.
    log: Option<ReplicaLog>,
    state: Option<ReplicaState<ContainerApplier>>,
    rt: tokio::runtime::Handle,
}

impl Replicated {
    fn log(&self) -> &ReplicaLog {
        self.log.as_ref().expect("the log until dropped")
    }
}

impl std::fmt::Debug for Replicated {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Replicated").field("container", &self.id).finish_non_exhaustive()
    }
}

fn raft_error(e: impl std::fmt::Display) -> LogError {
    LogError::Io { path: "container group".into(), source: std::io::Error::other(e.to_string()) }
}

impl ContainerLog for Replicated {
    fn max_record_payload(&self) -> usize {
        self.log().max_body()
    }

    fn reserve(&mut self, len: usize, data: bool) -> Result<(), LogError> {
        self.log().reserve(len, data)
    }

    fn commit(&mut self, payload: &[u8]) -> Result<Committed, LogError> {
        let batch = Batch::new(Bytes::copy_from_slice(payload));
        let resp = self.rt.block_on(self.raft.client_write(batch)).map_err(raft_error)?;
        let body = self.log().address(&resp.log_id).unwrap_or(LogAddress { file: 0, pos: ENVELOPE_LEN as u64 });
        let addr = LogAddress { file: body.file, pos: body.pos - ENVELOPE_LEN as u64 };
        Ok(Committed { lsn: resp.log_id.index, addr, body: ENVELOPE_LEN as u32 })
    }

    fn checkpoint(&mut self, snapshot: &[u8], keep_from: u64) -> Result<Lsn, LogError> {
        let (payload, applied) = self.state.as_ref().expect("the state until dropped").checkpoint_of(snapshot);
        match self.log().checkpoint(payload, applied, keep_from) {
            Ok(lsn) => Ok(lsn),
            Err(CheckpointError::Log(e)) => Err(e),
            Err(e) => Err(raft_error(e)),
        }
    }

    fn current_file(&self) -> u64 {
        self.log().current_file()
    }

    fn applies(&self) -> bool {
        true
    }

    fn ready(&mut self) -> Result<(), String> {
        let (raft, node_id) = (self.raft.clone(), self.node_id);
        self.rt.block_on(async move {
            if !raft.is_initialized().await.map_err(|e| e.to_string())? {
                let members = std::collections::BTreeMap::from([(node_id, BasicNode::default())]);
                raft.initialize(members).await.map_err(|e| e.to_string())?;
            }
            // Leading, with every entry of earlier terms applied (a new leader commits a blank
            // entry of its own term first, which commits everything before it).
            let m = raft
                .wait(Some(Duration::from_secs(60)))
                .metrics(|m| m.state.is_leader() && m.current_leader == Some(node_id), "leading")
                .await
                .map_err(|e| e.to_string())?;
            let last = m.last_log_index;
            raft.wait(Some(Duration::from_secs(60)))
                .applied_index_at_least(last, "applied")
                .await
                .map_err(|e| e.to_string())?;
            Ok(())
        })
    }
}

impl Drop for Replicated {
    fn drop(&mut self) {
        // Stop the group, then wait for the log thread to close the Tier-1 log, so that the
        // container can be opened again at once.
        if let Err(e) = self.rt.block_on(self.raft.shutdown()) {
            tracing::warn!(container = self.id, error = %e, "stopping the container group");
        }
        // Every handle to the log must go for its thread to stop: ours and the state's (the
        // group's own went with it).
        let thread = self.log.as_ref().map(|l| l.thread());
        self.state = None;
        self.log = None;
        if let Some(t) = thread
            && !t.stopped_within(Duration::from_secs(10))
        {
            tracing::warn!(container = self.id, "the container's log thread did not stop within 10 s");
        }
    }
}

/// What opening a replicated container gives `Container::open`.
pub(super) struct Opened {
    pub(super) log: Box<Replicated>,
    pub(super) parts: super::Parts,
    pub(super) damage: Option<crate::log::Corruption>,
    pub(super) checkpoint: Option<LogAddress>,
}

/// Opens container `id` in `dir` as a member of its group and starts the group.
pub(super) fn open(
    id: u32,
    dir: &Path,
    opts: &super::ContainerOptions,
    repl: &ReplicationOptions,
) -> Result<Opened, crate::error::StoreError> {
    let internal = |e: &dyn std::fmt::Display| crate::error::StoreError::Internal(format!("container {id}: {e}"));
    let rt = tokio::runtime::Handle::try_current()
        .map_err(|_| internal(&"a replicated container needs a Tokio runtime"))?;
    let durable = Arc::new(RwLock::new(Durable::default()));
    let garbage: Arc<Mutex<Vec<ChunkId>>> = Arc::default();
    let durable_lsn = Arc::new(watch::channel(0).0);
    let applier = ContainerApplier { durable: durable.clone(), garbage: garbage.clone(), durable_lsn: durable_lsn.clone() };
    let mut state = ReplicaState::new(applier);
    let mut recovery = Recovery::new(&mut state);
    let (file_log, report) =
        crate::log::file::FileLog::recover(dir, opts.log.clone(), &mut recovery).map_err(|e| internal(&e))?;
    let mut damage = report.corruption.clone();
    if let Some(err) = recovery.error.take() {
        tracing::error!(container = id, error = %err, "container log holds a record that does not fit");
        damage.get_or_insert(crate::log::Corruption {
            file: dir.to_owned(),
            offset: 0,
            after_lsn: report.last_lsn,
            next_valid_lsn: report.last_lsn,
        });
    }
    use crate::log::LogWriter;
    let reader = file_log.reader();
    let current_file = file_log.current_file();
    let log = ReplicaLog::start(id, Box::new(file_log), recovery, &dir.join("vote"));
    let state = state.with_log(log.clone());
    let config = openraft::Config {
        cluster_name: format!("nadi-container-{id}"),
        heartbeat_interval: repl.heartbeat.as_millis() as u64,
        election_timeout_min: repl.election_min.as_millis() as u64,
        election_timeout_max: repl.election_max.as_millis() as u64,
        // Snapshots do not carry segment data yet, so none is taken and no entry is purged
        // (docs/replication.md); the Tier-1 log recycles its files by its own checkpoints.
        snapshot_policy: openraft::SnapshotPolicy::Never,
        ..Default::default()
    }
    .validate()
    .map_err(|e| internal(&e))?;
    // `Raft::new` only reads the storage and spawns the group's tasks; run it off this thread,
    // which may be a runtime worker that must not block on the runtime.
    let raft = std::thread::scope(|s| {
        s.spawn(|| rt.block_on(Raft::new(repl.node_id, Arc::new(config), NoPeers, log.clone(), state.clone())))
            .join()
            .expect("starting the container group")
    })
    .map_err(|e| internal(&e))?;
    tracing::info!(
        container = id,
        last_lsn = report.last_lsn,
        checkpoint_lsn = report.checkpoint.map(|(lsn, _)| lsn),
        torn_tail = report.torn_tail.is_some(),
        "container recovered (replicated)"
    );
    let parts = super::Parts { durable, durable_lsn, garbage, reader, current_file };
    let checkpoint = report.checkpoint.map(|(_, addr)| addr);
    let mut log = Box::new(Replicated { id, node_id: repl.node_id, raft, log: Some(log), state: Some(state), rt });
    // Readers must not see less than was acknowledged: the entries after the checkpoint are
    // applied again before the container serves anything. (With one voter this replica
    // leads at once; a follower of a larger group will refuse reads instead.)
    std::thread::scope(|s| s.spawn(|| log.ready()).join().expect("waiting for the container group"))
        .map_err(|e| internal(&e))?;
    Ok(Opened { log, parts, damage, checkpoint })
}
