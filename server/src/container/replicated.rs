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

// The error types are openraft's (`RPCError`, `StorageError`), fixed by its traits.
#![allow(clippy::result_large_err)]

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
use crate::container::seam::{CommitError, Committed, ContainerLog, ContainerStateMachine};
use crate::container::state::{ChunkId, Durable, from_checkpoint, from_decoded};
use crate::log::{LogAddress, LogError, Lsn};
use crate::replica::log_store::{CheckpointError, ENVELOPE_LEN, Forget, Recovery, ReplicaLog};
use crate::replica::network::{GrpcNetwork, ask_to_elect};
use crate::replica::state_machine::{Applier, ReplicaState};
use crate::replica::{Batch, LogId, NodeId, ReplicaConfig};

/// How a replicated container runs.
#[derive(Debug, Clone)]
pub struct ReplicationOptions {
    /// This segment store's id in every group it is a member of.
    pub node_id: NodeId,
    /// This store's gRPC URL, as other replicas reach it (its address in a group's membership).
    pub advertise: String,
    /// How this store's groups talk to other stores; `None`: groups of one, with no network.
    pub network: Option<ReplicaNetwork>,
    /// The members (node id → URL) a group that was never started starts with; the member with
    /// the smallest id starts it. Empty: this store alone (unless `placed`).
    pub bootstrap: std::collections::BTreeMap<NodeId, String>,
    /// The controllers place this store's replicas: a group starts, and changes its members,
    /// only when told ([`Group::place`]); `bootstrap` is not used.
    pub placed: bool,
    /// A leader that has not heard from a majority for this long stops taking writes (they
    /// fail with `NOT_LEADER`), before another replica can have been elected (its lease, which
    /// is shorter than the election timeout).
    pub lease: Duration,
    /// How long a group commit may wait for a majority before its writers are told
    /// `NOT_LEADER` (outcome unknown; they retry).
    pub commit_timeout: Duration,
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
            advertise: String::new(),
            network: None,
            bootstrap: Default::default(),
            placed: false,
            // openraft gives an AppendEntries one heartbeat interval to complete: entries of
            // up to 4 MiB (a group commit) to a follower that fsyncs on a shared disk need
            // more than 100 ms under load.
            heartbeat: Duration::from_millis(250),
            election_min: Duration::from_millis(1000),
            election_max: Duration::from_millis(2000),
            // Shorter than the election timeout: a cut-off leader stops before a successor
            // can be elected.
            lease: Duration::from_millis(800),
            commit_timeout: Duration::from_secs(10),
        }
    }
}

/// How a store's groups reach other stores and are reached.
#[derive(Debug, Clone)]
pub struct ReplicaNetwork {
    /// Where incoming replication RPCs find this store's groups.
    pub groups: Arc<crate::replica::network::Groups>,
    /// Channels to other stores, shared by all groups.
    pub channels: crate::replica::network::Channels,
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
        // `encode_checkpoint` clears its buffer; the trait appends.
        let mut state = Vec::new();
        d.encode_checkpoint(d.next_local, &mut state);
        out.extend_from_slice(&state);
    }

    fn restore(&mut self, state: &[u8]) -> Result<(), String> {
        let (durable, _) = from_checkpoint(state)?;
        *self.durable.write() = durable;
        Ok(())
    }

    fn residue(state: &[u8]) -> Result<Vec<(LogAddress, usize)>, String> {
        let cp = crate::container::checkpoint::decode(state).map_err(|e| e.to_string())?;
        Ok(cp.segments.iter().flat_map(|s| s.index.iter().map(|e| (e.addr, e.len as usize))).collect())
    }

    fn restore_with(&mut self, state: &[u8], placed: &[(LogAddress, u32)]) -> Result<(), String> {
        let mut cp = crate::container::checkpoint::decode(state).map_err(|e| e.to_string())?;
        let entries = cp.segments.iter_mut().flat_map(|s| s.index.iter_mut());
        let mut n = 0;
        for (e, &(addr, within)) in entries.zip(placed) {
            (e.addr, e.within) = (addr, within);
            n += 1;
        }
        let total: usize = cp.segments.iter().map(|s| s.index.len()).sum();
        if n != placed.len() || n != total {
            return Err(format!("the state refers to {total} Tier-1 pieces, {} were placed", placed.len()));
        }
        *self.durable.write() = from_decoded(cp).0;
        Ok(())
    }

    fn oldest_file(&self) -> Option<u64> {
        self.durable.read().segments.values().flat_map(|s| s.index.iter()).map(|e| e.addr.file).min()
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

/// A handle to a container's group, for questions about it (who leads) and for placing it.
#[derive(Clone)]
pub(super) struct Group {
    raft: Raft<ReplicaConfig>,
    node_id: NodeId,
    /// A placement is being carried out (one at a time).
    placing: Arc<std::sync::atomic::AtomicBool>,
    sizes: crate::replica::log_store::EntrySizes,
    /// Shared with the writer's [`Replicated`]: set while handing leadership over, when this
    /// replica takes no writes.
    handing_over: Arc<std::sync::atomic::AtomicBool>,
    channels: Option<crate::replica::network::Channels>,
    container: u32,
    /// The term this replica was first seen leading in, and when; the last hand-over attempt.
    led: Arc<Mutex<Led>>,
}

#[derive(Debug, Default)]
struct Led {
    since: Option<(u64, std::time::Instant)>,
    last_handover: Option<std::time::Instant>,
}

/// A group as its leader sees it (reported to the controllers).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupView {
    pub term: u64,
    pub voters: Vec<NodeId>,
    /// Each other member: (id, entries behind, body bytes behind).
    pub followers: Vec<(NodeId, u64, u64)>,
    /// A membership change to `voters` is under way.
    pub changing: bool,
}

impl std::fmt::Debug for Group {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Group").field("node_id", &self.node_id).finish_non_exhaustive()
    }
}

/// A group's metrics, as openraft publishes them.
type Metrics = openraft::RaftMetrics<NodeId, BasicNode>;

/// Whether replica `id` leads, by `m`.
fn leads(m: &Metrics, id: NodeId) -> bool {
    m.current_leader == Some(id) && m.state.is_leader()
}

/// Whether a leader, by `m`, has heard from a majority within `limit` (a group of one voter
/// is its own majority).
fn heard_from_majority(m: &Metrics, limit: Duration) -> bool {
    let alone = m.membership_config.membership().voter_ids().count() <= 1;
    alone || m.millis_since_quorum_ack.is_some_and(|ms| ms <= limit.as_millis() as u64)
}

/// The URL of the replica that leads, by `m`, if known.
fn leader_url(m: &Metrics) -> Option<String> {
    let membership = m.membership_config.membership();
    m.current_leader.and_then(|id| membership.get_node(&id)).map(|n| n.addr.clone())
}

impl Group {
    /// `Ok` if this replica leads and has applied an entry of its own term (so every entry of
    /// earlier terms too): its state is all that was ever acknowledged. Else the leader's URL,
    /// if known.
    pub(super) fn serving(&self) -> Result<(), Option<String>> {
        let m = self.raft.metrics().borrow().clone();
        let own_term_applied = m.last_applied.is_some_and(|l| l.leader_id.term == m.current_term);
        if leads(&m, self.node_id) && own_term_applied {
            return Ok(());
        }
        Err(leader_url(&m))
    }

    /// The term this replica serves in (see [`serving`](Self::serving)), if it serves.
    pub(super) fn serving_term(&self) -> Option<u64> {
        let m = self.raft.metrics().borrow().clone();
        let own_term_applied = m.last_applied.is_some_and(|l| l.leader_id.term == m.current_term);
        (leads(&m, self.node_id) && own_term_applied).then_some(m.current_term)
    }

    /// Whether this replica leads the group now.
    pub(super) fn leads(&self) -> bool {
        leads(&self.raft.metrics().borrow(), self.node_id)
    }

    /// The group as this replica sees it, if it leads; the followers' lag only `with_lag`
    /// (measuring bytes walks the entries they lack).
    pub(super) fn view(&self, with_lag: bool) -> Option<GroupView> {
        let m = self.raft.metrics().borrow().clone();
        if !leads(&m, self.node_id) {
            return None;
        }
        let last = m.last_log_index.unwrap_or(0);
        let followers = m
            .replication
            .iter()
            .flatten()
            .filter(|(id, _)| with_lag && **id != self.node_id)
            .map(|(id, matched)| {
                let at = matched.map(|l| l.index);
                (*id, last.saturating_sub(at.unwrap_or(0)), self.sizes.bytes_after(at))
            })
            .collect();
        let joint = m.membership_config.membership().get_joint_config();
        let voters = joint.last().map(|c| c.iter().copied().collect()).unwrap_or_default();
        Some(GroupView { term: m.current_term, voters, followers, changing: joint.len() > 1 })
    }

    /// Carries out the controllers' placement of this container's replicas (`members`, the
    /// preferred leader first), in the background, one placement at a time:
    /// - `start` (the group was never started) and this replica is the first member: it starts
    ///   the group with `members` as its voters;
    /// - this replica leads and the voters differ from `members`: each new member is added as
    ///   a learner and caught up from this replica's log, then the voters become `members`
    ///   (joint consensus: a majority of the old and of the new set commit the change).
    ///
    /// A replica that does not lead does nothing: the leader places.
    pub(super) fn place(&self, members: Vec<(NodeId, String)>, start: bool) {
        use std::sync::atomic::Ordering;
        if members.is_empty() || self.placing.swap(true, Ordering::AcqRel) {
            return;
        }
        let (group, placing) = (self.clone(), self.placing.clone());
        tokio::spawn(async move {
            if let Err(e) = group.place_now(members, start).await {
                tracing::warn!(container = group.container, error = %e, "placing a container's replicas; retried at the next heartbeat");
            }
            placing.store(false, Ordering::Release);
        });
    }

    async fn place_now(&self, members: Vec<(NodeId, String)>, start: bool) -> Result<(), String> {
        let me = self.node_id;
        let settled = place(&self.raft, me, &members, start).await?;
        let m = self.raft.metrics().borrow().clone();
        let led_for = {
            let mut led = self.led.lock();
            if !leads(&m, me) {
                led.since = None;
                return Ok(());
            }
            let now = std::time::Instant::now();
            let (term, since) = *led.since.get_or_insert((m.current_term, now));
            if term != m.current_term {
                led.since = Some((m.current_term, now));
            }
            if led.last_handover.is_some_and(|t| t.elapsed() < HANDOVER_RETRY) {
                return Ok(());
            }
            now.duration_since(since)
        };
        let (preferred, addr) = members[0].clone();
        let voters: Vec<NodeId> = m.membership_config.membership().voter_ids().collect();
        // The successor needs a majority: its own vote and this leader's (the others still
        // hold their lease from this leader's heartbeats and refuse it). So hand over only in
        // groups of up to three, and only once this leader's own lease has run out (it then
        // grants a vote to a replica whose log is as long as its own).
        if !settled
            || preferred == me
            || !voters.contains(&preferred)
            || voters.len() > 3
            || led_for < self.lease_gone()
        {
            return Ok(());
        }
        self.led.lock().last_handover = Some(std::time::Instant::now());
        self.hand_over(preferred, &addr).await
    }

    /// How long after its election a leader grants another replica's vote (openraft's leader
    /// lease: the maximum election timeout), with a margin.
    fn lease_gone(&self) -> Duration {
        Duration::from_millis(self.raft.config().election_timeout_max) + Duration::from_millis(500)
    }

    /// Hands leadership to `to`: stops taking writes, waits until `to` holds every entry,
    /// asks it to elect itself, and waits for it to lead. Writes resume here if it fails.
    async fn hand_over(&self, to: NodeId, addr: &str) -> Result<(), String> {
        use std::sync::atomic::Ordering;
        let Some(channels) = &self.channels else { return Ok(()) };
        tracing::info!(container = self.container, to, "handing leadership to the preferred replica");
        self.handing_over.store(true, Ordering::Release);
        let result = async {
            let caught_up = |m: &Metrics| {
                let matched = m.replication.as_ref().and_then(|r| r.get(&to).copied().flatten()).map(|l| l.index);
                matched.is_some() && matched == m.last_log_index
            };
            self.raft
                .wait(Some(Duration::from_secs(2)))
                .metrics(caught_up, "the successor holds every entry")
                .await
                .map_err(|e| format!("replica {to} did not catch up: {e}"))?;
            ask_to_elect(channels, addr, self.container, to, self.node_id).await?;
            self.raft
                .wait(Some(Duration::from_secs(3)))
                .metrics(|m| m.current_leader == Some(to), "the successor leads")
                .await
                .map_err(|e| format!("replica {to} was not elected: {e}"))?;
            Ok(())
        }
        .await;
        self.handing_over.store(false, Ordering::Release);
        result
    }
}

/// After a hand-over attempt, the next one waits this long.
const HANDOVER_RETRY: Duration = Duration::from_secs(20);

/// How long a new replica may take to catch up before a placement gives up (and is retried).
const CATCH_UP_TIMEOUT: Duration = Duration::from_secs(120);

/// Starts the group or changes its voters toward `members`; true if the voters are `members`
/// already (nothing to change).
async fn place(
    raft: &Raft<ReplicaConfig>,
    me: NodeId,
    members: &[(NodeId, String)],
    start: bool,
) -> Result<bool, String> {
    use std::collections::{BTreeMap, BTreeSet};
    if start && members[0].0 == me && !raft.is_initialized().await.map_err(|e| e.to_string())? {
        let nodes: BTreeMap<_, _> = members.iter().map(|(id, addr)| (*id, BasicNode { addr: addr.clone() })).collect();
        tracing::info!(?nodes, "starting a container group");
        return match raft.initialize(nodes).await {
            Ok(()) | Err(RaftError::APIError(openraft::error::InitializeError::NotAllowed(_))) => Ok(false),
            Err(e) => Err(e.to_string()),
        };
    }
    let m = raft.metrics().borrow().clone();
    if !leads(&m, me) {
        return Ok(false);
    }
    let membership = m.membership_config.membership().clone();
    let desired: BTreeSet<NodeId> = members.iter().map(|(id, _)| *id).collect();
    let voters: BTreeSet<NodeId> = membership.voter_ids().collect();
    // A joint configuration is being committed: wait for it.
    if membership.get_joint_config().len() > 1 || voters == desired {
        return Ok(voters == desired);
    }
    for (id, addr) in members {
        if membership.get_node(id).is_none() {
            tracing::info!(replica = id, addr, "adding a replica; catching it up");
            let add = raft.add_learner(*id, BasicNode { addr: addr.clone() }, true);
            match tokio::time::timeout(CATCH_UP_TIMEOUT, add).await {
                Ok(r) => r.map_err(|e| format!("adding replica {id}: {e}"))?,
                Err(_) => return Err(format!("replica {id} did not catch up within {CATCH_UP_TIMEOUT:?}")),
            };
        }
    }
    tracing::info!(from = ?voters, to = ?desired, "changing a container group's replicas");
    raft.change_membership(desired, false).await.map_err(|e| e.to_string())?;
    Ok(false)
}

/// The commit half of a replicated container: one Raft entry per group.
pub(super) struct Replicated {
    id: u32,
    node_id: NodeId,
    repl: ReplicationOptions,
    raft: Raft<ReplicaConfig>,
    /// The term this replica last led in with a fresh writer view; `None` while not leading
    /// (or after a commit whose outcome is unknown).
    led_term: Option<u64>,
    /// The group was started (`ready` done): opening does it, the writer's call then returns.
    started: bool,
    /// Set while this replica hands its leadership over ([`Group::hand_over`]).
    handing_over: Arc<std::sync::atomic::AtomicBool>,
    /// `None` only while dropping.
    log: Option<ReplicaLog>,
    state: Option<ReplicaState<ContainerApplier>>,
    rt: tokio::runtime::Handle,
    /// A leader holds back purging entries a follower has not received yet (so that it
    /// catches up from the log, not a snapshot) while they span at most this many log files.
    hold_files: u64,
    /// Upkeep (see `maintain`): the last checkpoint's (current file, kept-from file, applied
    /// index), and when a snapshot was last asked for.
    upkeep: Upkeep,
}

#[derive(Debug, Default)]
struct Upkeep {
    checkpoint: Option<(u64, u64, Option<u64>)>,
    snapshot_asked: Option<std::time::Instant>,
}

/// The shortest time between two snapshots asked for by upkeep.
const SNAPSHOT_EVERY: Duration = Duration::from_secs(5);

impl Replicated {
    fn log(&self) -> &ReplicaLog {
        self.log.as_ref().expect("the log until dropped")
    }

    fn replica_state(&self) -> &ReplicaState<ContainerApplier> {
        self.state.as_ref().expect("the state until dropped")
    }

    /// The oldest log file that must stay: the state's (`keep_from`), the first entry still
    /// held, the newest snapshot's Tier-1 bytes (a follower may be sent it).
    fn keep_from(&self, keep_from: u64) -> u64 {
        let snapshot = self.replica_state().snapshot().and_then(|(_, f)| f);
        [Some(keep_from), self.log().first_held_file(), snapshot].into_iter().flatten().min().unwrap_or(keep_from)
    }

    /// Up to which entry this replica may purge its log: what it applied, but a leader keeps
    /// what a follower still lacks, unless that spans more than `hold_files` files (the
    /// follower then gets a snapshot).
    fn purge_limit(&self, applied: u64) -> u64 {
        let m = self.raft.metrics().borrow().clone();
        let Some(replication) = m.replication.as_ref().filter(|_| leads(&m, self.node_id)) else { return applied };
        let behind = replication
            .iter()
            .filter(|(id, _)| **id != self.node_id)
            .map(|(_, matched)| matched.map_or(0, |l| l.index))
            .min();
        match behind {
            Some(b) if b < applied => match self.log().file_after(b) {
                Some(f) if self.log().current_file().saturating_sub(f) <= self.hold_files => b,
                // Too far behind, or it needs entries purged already: a snapshot.
                _ => applied,
            },
            _ => applied,
        }
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

    fn commit(&mut self, parts: &[&[u8]]) -> Result<Committed, CommitError> {
        use openraft::error::{ClientWriteError, RaftError};
        let batch = Batch::new(Bytes::from(parts.concat()));
        let (raft, timeout) = (self.raft.clone(), self.repl.commit_timeout);
        // A leader cut off from its majority cannot commit: once it has heard from none for
        // an election timeout (another replica may lead by then), the writers waiting on this
        // commit are told at once instead of after the whole commit timeout.
        let (watch, cut_off) = (self.raft.clone(), self.repl.election_max);
        let lost_majority = async move {
            loop {
                tokio::time::sleep(Duration::from_millis(50)).await;
                if !heard_from_majority(&watch.metrics().borrow(), cut_off) {
                    return;
                }
            }
        };
        // The timer is created inside the runtime (this is the writer's own thread).
        let write = async move {
            tokio::select! {
                r = tokio::time::timeout(timeout, raft.client_write(batch)) => r.ok(),
                _ = lost_majority => None,
            }
        };
        let resp = match self.rt.block_on(write) {
            Some(Ok(resp)) => resp,
            Some(Err(RaftError::APIError(ClientWriteError::ForwardToLeader(f)))) => {
                self.led_term = None;
                return Err(CommitError::Lost { leader: f.leader_node.map(|n| n.addr) });
            }
            Some(Err(e)) => return Err(CommitError::Log(raft_error(e))),
            None => {
                // No majority within the timeout, or none heard from (cut off?): the entry
                // may still commit later.
                self.led_term = None;
                return Err(CommitError::Lost { leader: None });
            }
        };
        let body = self.log().address(&resp.log_id).unwrap_or(LogAddress { file: 0, pos: ENVELOPE_LEN as u64 });
        let addr = LogAddress { file: body.file, pos: body.pos - ENVELOPE_LEN as u64 };
        Ok(Committed { lsn: resp.log_id.index, addr, body: ENVELOPE_LEN as u32 })
    }

    fn checkpoint(&mut self, snapshot: &[u8], keep_from: u64) -> Result<Lsn, LogError> {
        let (payload, applied) = self.replica_state().checkpoint_of(snapshot);
        // A group without a network is one voter forever and forgets what a checkpoint holds;
        // one with a network forgets entries only when openraft purges them (see `maintain`).
        let forget = if self.repl.network.is_none() { Forget::Applied } else { Forget::Nothing };
        let keep_from = self.keep_from(keep_from);
        let result = match self.log().checkpoint(payload, applied, keep_from, forget) {
            Ok(lsn) => Ok(lsn),
            Err(CheckpointError::Log(e)) => Err(e),
            Err(e) => Err(raft_error(e)),
        };
        if result.is_ok() {
            self.upkeep.checkpoint = Some((self.log().current_file(), keep_from, applied));
        }
        result
    }

    /// A group with a network (one without checkpoints on its writer thread's commits only):
    /// - entries whose files the state no longer needs are purged once a snapshot covers them
    ///   (a snapshot is asked for at most every [`SNAPSHOT_EVERY`]), so the files can go;
    /// - a checkpoint is written when the log moved to another file or more files could be
    ///   recycled since the last one (a follower's writer thread writes none otherwise), so
    ///   that recovery replays a bounded log and Tier-1 space is reclaimed on every replica.
    fn maintain(&mut self, keep_from: u64) {
        if self.repl.network.is_none() {
            return;
        }
        let state = self.replica_state().clone();
        let applied = state.last_applied().map(|l| l.index);
        let keep = self.keep_from(keep_from);
        let first_held = self.log().first_held_file();
        let snapshot = state.snapshot();
        let pinned = snapshot.and_then(|(_, f)| f).is_some_and(|f| f < keep_from);
        if let Some(applied) = applied
            && (first_held.is_some_and(|f| f < keep_from) || pinned)
        {
            let covered = snapshot.and_then(|(l, _)| l).map(|l| l.index);
            let asked_long_ago = self.upkeep.snapshot_asked.is_none_or(|t| t.elapsed() >= SNAPSHOT_EVERY);
            if covered.is_none_or(|c| c < applied) && asked_long_ago {
                self.upkeep.snapshot_asked = Some(std::time::Instant::now());
                let raft = self.raft.clone();
                if let Err(e) = self.rt.block_on(async move { raft.trigger().snapshot().await }) {
                    tracing::debug!(container = self.id, error = %e, "asking for a snapshot");
                }
            }
            if let Some(covered) = covered {
                let upto = covered.min(self.purge_limit(applied));
                let raft = self.raft.clone();
                if let Err(e) = self.rt.block_on(async move { raft.trigger().purge_log(upto).await }) {
                    tracing::debug!(container = self.id, error = %e, "asking to purge the log");
                }
            }
        }
        let current = self.log().current_file();
        let due = match self.upkeep.checkpoint {
            None => applied.is_some(),
            Some((file, kept, at)) => at != applied && (file != current || keep > kept),
        };
        if due {
            let (payload, applied) = state.checkpoint();
            match self.log().checkpoint(payload, applied, keep, Forget::Nothing) {
                Ok(_) => self.upkeep.checkpoint = Some((current, keep, applied)),
                Err(e) => tracing::warn!(container = self.id, error = %e, "cannot write a checkpoint"),
            }
        }
    }

    fn current_file(&self) -> u64 {
        self.log().current_file()
    }

    fn applies(&self) -> bool {
        true
    }

    fn ready(&mut self) -> Result<(), String> {
        if self.started || self.repl.placed {
            self.started = true;
            return Ok(());
        }
        let (raft, node_id) = (self.raft.clone(), self.node_id);
        let mut members = self.repl.bootstrap.clone();
        if members.is_empty() {
            members.insert(node_id, self.repl.advertise.clone());
        }
        self.rt.block_on(async move {
            if !raft.is_initialized().await.map_err(|e| e.to_string())? && members.keys().next() == Some(&node_id) {
                let nodes = members
                    .into_iter()
                    .map(|(id, addr)| (id, BasicNode { addr }))
                    .collect::<std::collections::BTreeMap<_, _>>();
                match raft.initialize(nodes).await {
                    Ok(()) => {}
                    // Another start of this group got there first.
                    Err(openraft::error::RaftError::APIError(openraft::error::InitializeError::NotAllowed(_))) => {}
                    Err(e) => return Err(e.to_string()),
                }
            }
            Ok(())
        })?;
        self.started = true;
        Ok(())
    }

    fn term(&self) -> Option<u64> {
        self.led_term
    }

    fn leading(&mut self) -> Result<bool, Option<String>> {
        let m = self.raft.metrics().borrow().clone();
        if !leads(&m, self.node_id) || self.handing_over.load(std::sync::atomic::Ordering::Acquire) {
            self.led_term = None;
            return Err(leader_url(&m));
        }
        // A leader cut off from the majority stops taking writes within its lease, before
        // another replica can be elected (the lease is shorter than the election timeout).
        if !heard_from_majority(&m, self.repl.lease) {
            self.led_term = None;
            return Err(None);
        }
        if self.led_term == Some(m.current_term) {
            return Ok(false);
        }
        // Newly leading: everything before this term's first entry must be applied before the
        // writer's view is taken from the durable state.
        let (raft, timeout) = (self.raft.clone(), self.repl.commit_timeout);
        let wait = async move { raft.wait(Some(timeout)).applied_index_at_least(m.last_log_index, "caught up").await };
        if self.rt.block_on(wait).is_err() {
            return Err(None);
        }
        self.led_term = Some(m.current_term);
        Ok(true)
    }
}

impl Drop for Replicated {
    fn drop(&mut self) {
        // Stop the group, then wait for the log thread to close the Tier-1 log, so that the
        // container can be opened again at once.
        if let Some(net) = &self.repl.network {
            net.groups.remove(self.id);
        }
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
    let rt =
        tokio::runtime::Handle::try_current().map_err(|_| internal(&"a replicated container needs a Tokio runtime"))?;
    let durable = Arc::new(RwLock::new(Durable::default()));
    let garbage: Arc<Mutex<Vec<ChunkId>>> = Arc::default();
    let durable_lsn = Arc::new(watch::channel(0).0);
    let applier =
        ContainerApplier { durable: durable.clone(), garbage: garbage.clone(), durable_lsn: durable_lsn.clone() };
    let mut state = ReplicaState::new(applier);
    let mut recovery = Recovery::new(&mut state);
    let (file_log, report) =
        crate::log::file::FileLog::recover(dir, opts.log.clone(), &mut recovery).map_err(|e| internal(&e))?;
    // Chunks of a replicated container are tagged and live in the folder its replicas share;
    // untagged ones were moved by a single-copy container into its store's own folder.
    if durable.read().segments.values().any(|s| s.chunks.iter().any(|c| c.obj.tag == 0)) {
        return Err(internal(
            &"its state refers to Tier-2 chunks moved while it was a single-copy container (in its store's \
              own Tier-2 folder); a container with data in Tier-2 cannot become replicated (start the store \
              with --container-log single-copy)",
        ));
    }
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
        // Snapshots are asked for, and entries purged, by the container's upkeep
        // (`Replicated::maintain`), when Tier-1 files could be recycled; never on their own.
        snapshot_policy: openraft::SnapshotPolicy::Never,
        max_in_snapshot_log_to_keep: u64::MAX,
        // A snapshot carries the Tier-1 bytes not yet in Tier-2 (up to the Tier-1 capacity),
        // sent in chunks of 3 MiB; installing the last writes them and a checkpoint.
        install_snapshot_timeout: 30_000,
        // Entries are group commits of up to 4 MiB: at most 8 per AppendEntries (32 MiB), so
        // one completes within a heartbeat interval even for a follower far behind.
        max_payload_entries: 8,
        ..Default::default()
    }
    .validate()
    .map_err(|e| internal(&e))?;
    // `Raft::new` only reads the storage and spawns the group's tasks; run it off this thread,
    // which may be a runtime worker that must not block on the runtime.
    let config = Arc::new(config);
    let raft = std::thread::scope(|s| {
        s.spawn(|| match &repl.network {
            Some(net) => {
                let network = GrpcNetwork { container: id, from: repl.node_id, channels: net.channels.clone() };
                rt.block_on(Raft::new(repl.node_id, config, network, log.clone(), state.clone()))
            }
            None => rt.block_on(Raft::new(repl.node_id, config, NoPeers, log.clone(), state.clone())),
        })
        .join()
        .expect("starting the container group")
    })
    .map_err(|e| internal(&e))?;
    if let Some(net) = &repl.network {
        net.groups.insert(id, raft.clone());
    }
    tracing::info!(
        container = id,
        last_lsn = report.last_lsn,
        checkpoint_lsn = report.checkpoint.map(|(lsn, _)| lsn),
        torn_tail = report.torn_tail.is_some(),
        "container recovered (replicated)"
    );
    let handing_over: Arc<std::sync::atomic::AtomicBool> = Default::default();
    let group = Some(Group {
        raft: raft.clone(),
        node_id: repl.node_id,
        placing: Default::default(),
        sizes: log.sizes(),
        handing_over: handing_over.clone(),
        channels: repl.network.as_ref().map(|n| n.channels.clone()),
        container: id,
        led: Default::default(),
    });
    let parts = super::Parts { durable, durable_lsn, garbage, reader, current_file, group };
    let checkpoint = report.checkpoint.map(|(_, addr)| addr);
    let mut log = Box::new(Replicated {
        id,
        node_id: repl.node_id,
        repl: repl.clone(),
        raft,
        led_term: None,
        started: false,
        handing_over,
        log: Some(log),
        state: Some(state),
        rt,
        hold_files: if opts.log.max_files > 0 { (opts.log.max_files as u64 / 2).max(1) } else { 16 },
        upkeep: Upkeep::default(),
    });
    std::thread::scope(|s| s.spawn(|| log.ready()).join().expect("starting the container group"))
        .map_err(|e| internal(&e))?;
    // A group of one: readers must not see less than was acknowledged, so the entries after
    // the checkpoint are applied again before the container serves anything (this replica
    // leads at once). A member of a larger group serves once it leads (see `leading`).
    if !repl.placed && repl.bootstrap.len() <= 1 {
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        while std::thread::scope(|s| s.spawn(|| log.leading()).join().expect("waiting for the container group"))
            .is_err()
        {
            if std::time::Instant::now() > deadline {
                return Err(internal(&"the container's group of one did not elect itself within 60 s"));
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        // The writer must take its view afresh, as after any election.
        log.led_term = None;
    }
    Ok(Opened { log, parts, damage, checkpoint })
}
