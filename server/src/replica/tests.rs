//! Tests of a container group's storage: openraft's own storage suite over the Tier-1 file log
//! and the memory log, recovery of the entry index (truncations included), and real openraft
//! groups in one process (one voter; three voters with crashes and partitions, checked over
//! what the proposer was told).

// The error types are openraft's (`RPCError`, `StorageError`), fixed by its traits.
#![allow(clippy::result_large_err)]

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use openraft::error::{InstallSnapshotError, NetworkError, RPCError, RaftError, Unreachable};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse, VoteRequest,
    VoteResponse,
};
use openraft::storage::{RaftLogReader, RaftLogStorage, RaftLogStorageExt};
use openraft::testing::{StoreBuilder, Suite};
use openraft::{BasicNode, CommittedLeaderId, Entry, EntryPayload, Raft};
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};

use super::log_store::{Recovery, ReplicaLog};
use super::state_machine::{Applier, ReplicaState};
use super::*;
use crate::log::file::{FileLog, FileLogOptions};
use crate::log::mem::MemLog;
use crate::log::{LogReader, LogWriter};

/// An applier that records what it was fed, and reads each body back from the log at the
/// address it was given (so a wrong address fails the test).
#[derive(Default, Serialize, Deserialize)]
struct Recorder {
    /// (index, ops) of every applied normal entry, in order.
    applied: Vec<(u64, Vec<u8>)>,
    /// The log it is applied from, set once the log is open.
    #[serde(skip)]
    reader: Arc<std::sync::OnceLock<Arc<dyn LogReader>>>,
}

impl Applier for Recorder {
    fn apply(&mut self, log_id: &LogId, ops: &[u8], at: crate::log::LogAddress) -> Result<(), String> {
        if let Some(r) = self.reader.get() {
            let on_disk = r.read(at, ops.len()).map_err(|e| e.to_string())?;
            assert_eq!(&on_disk[..], ops, "entry {log_id}: the address does not hold the body");
        }
        self.applied.push((log_id.index, ops.to_vec()));
        Ok(())
    }

    fn apply_legacy(&mut self, ops: &[u8], _at: crate::log::LogAddress) -> Result<(), String> {
        self.applied.push((0, ops.to_vec()));
        Ok(())
    }

    fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&serde_json::to_vec(&self.applied).unwrap());
    }

    fn restore(&mut self, state: &[u8]) -> Result<(), String> {
        self.applied = serde_json::from_slice(state).map_err(|e| e.to_string())?;
        Ok(())
    }
}

fn small_file_log() -> FileLogOptions {
    FileLogOptions { file_size: crate::log::file::MIN_FILE_SIZE, ..FileLogOptions::default() }
}

/// Opens (recovering) the replica storage kept in `dir`.
fn open_file(dir: &Path) -> (ReplicaLog, ReplicaState<Recorder>) {
    let slot: Arc<std::sync::OnceLock<Arc<dyn LogReader>>> = Arc::default();
    let mut state = ReplicaState::new(Recorder { applied: Vec::new(), reader: slot.clone() });
    let mut recovery = Recovery::new(&mut state);
    let (log, report) = FileLog::recover(&dir.join("log"), small_file_log(), &mut recovery).unwrap();
    assert!(report.corruption.is_none(), "{report:?}");
    assert!(recovery.error.is_none(), "{:?}", recovery.error);
    // The recorder checks each address against the log it is applied from.
    let _ = slot.set(log.reader());
    let log = ReplicaLog::start(0, Box::new(log), recovery, &dir.join("vote"));
    let state = state.with_log(log.clone());
    (log, state)
}

/// Opens (recovering) a replica whose log is the memory log `disk`: what was not synced on it
/// is gone, as after a power cut. Returns the new disk handle too.
fn open_mem(dir: &Path, disk: Option<&MemLog>) -> (ReplicaLog, ReplicaState<Recorder>, MemLog) {
    let slot: Arc<std::sync::OnceLock<Arc<dyn LogReader>>> = Arc::default();
    let mut state = ReplicaState::new(Recorder { applied: Vec::new(), reader: slot.clone() });
    let mut recovery = Recovery::new(&mut state);
    let log = match disk {
        Some(d) => d.recover(&mut recovery).0,
        None => MemLog::new(1 << 20),
    };
    assert!(recovery.error.is_none(), "{:?}", recovery.error);
    let _ = slot.set(log.reader());
    let disk = log.clone();
    let log = ReplicaLog::start(0, Box::new(log), recovery, &dir.join("vote"));
    let state = state.with_log(log.clone());
    (log, state, disk)
}

struct FileBuilder;

impl StoreBuilder<ReplicaConfig, ReplicaLog, ReplicaState<Recorder>, tempfile::TempDir> for FileBuilder {
    async fn build(&self) -> Result<(tempfile::TempDir, ReplicaLog, ReplicaState<Recorder>), StorageError> {
        let dir = tempfile::tempdir().unwrap();
        let (log, state) = open_file(dir.path());
        Ok((dir, log, state))
    }
}

struct MemBuilder;

impl StoreBuilder<ReplicaConfig, ReplicaLog, ReplicaState<Recorder>, tempfile::TempDir> for MemBuilder {
    async fn build(&self) -> Result<(tempfile::TempDir, ReplicaLog, ReplicaState<Recorder>), StorageError> {
        let dir = tempfile::tempdir().unwrap();
        let mut state = ReplicaState::new(Recorder::default());
        let recovery = Recovery::new(&mut state);
        let log = ReplicaLog::start(0, Box::new(MemLog::new(1 << 20)), recovery, &dir.path().join("vote"));
        let state = state.with_log(log.clone());
        Ok((dir, log, state))
    }
}

/// openraft's own storage test suite, over the Tier-1 file log.
#[test]
fn openraft_storage_suite_on_the_file_log() {
    Suite::test_all(FileBuilder).unwrap();
}

/// openraft's own storage test suite, over the memory log.
#[test]
fn openraft_storage_suite_on_the_memory_log() {
    Suite::test_all(MemBuilder).unwrap();
}

fn log_id(term: u64, index: u64) -> LogId {
    LogId::new(CommittedLeaderId::new(term, 1), index)
}

fn normal(term: u64, index: u64, body: &[u8]) -> Entry<ReplicaConfig> {
    Entry { log_id: log_id(term, index), payload: EntryPayload::Normal(Batch::new(Bytes::copy_from_slice(body))) }
}

async fn append(log: &mut ReplicaLog, entries: Vec<Entry<ReplicaConfig>>) {
    log.blocking_append(entries).await.unwrap();
}

fn indexes_and_terms(entries: &[Entry<ReplicaConfig>]) -> Vec<(u64, u64)> {
    entries.iter().map(|e| (e.log_id.index, e.log_id.leader_id.term)).collect()
}

/// A truncated suffix stays truncated across a restart, entries appended after the
/// truncation come back with their bodies, and the vote survives.
#[tokio::test]
async fn recovery_rebuilds_the_index_truncations_included() {
    let dir = tempfile::tempdir().unwrap();
    {
        let (mut log, _state) = open_file(dir.path());
        append(&mut log, (1..=5).map(|i| normal(1, i, format!("t1-{i}").as_bytes())).collect()).await;
        // A new leader of term 2 disagrees from index 4 on.
        log.truncate(log_id(1, 4)).await.unwrap();
        append(&mut log, vec![normal(2, 4, b"t2-4"), normal(2, 5, b"t2-5"), normal(2, 6, b"t2-6")]).await;
        log.save_vote(&openraft::Vote::new(2, 1)).await.unwrap();
        let before = log.try_get_log_entries(0..100).await.unwrap();
        assert_eq!(indexes_and_terms(&before), vec![(1, 1), (2, 1), (3, 1), (4, 2), (5, 2), (6, 2)]);
        let thread = log.thread();
        drop((log, _state));
        assert!(thread.stopped_within(Duration::from_secs(10)));
    }
    let (mut log, _state) = open_file(dir.path());
    let after = log.try_get_log_entries(0..100).await.unwrap();
    assert_eq!(indexes_and_terms(&after), vec![(1, 1), (2, 1), (3, 1), (4, 2), (5, 2), (6, 2)]);
    let bodies: Vec<Vec<u8>> = after
        .iter()
        .map(|e| match &e.payload {
            EntryPayload::Normal(b) => b.ops.to_vec(),
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(bodies[3], b"t2-4");
    assert_eq!(bodies[5], b"t2-6");
    assert_eq!(log.read_vote().await.unwrap(), Some(openraft::Vote::new(2, 1)));
    let state = log.get_log_state().await.unwrap();
    assert_eq!(state.last_log_id, Some(log_id(2, 6)));
}

/// An entry that would leave a hole is refused, and the log is unchanged.
#[tokio::test]
async fn an_entry_after_a_hole_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (mut log, _state) = open_file(dir.path());
    append(&mut log, vec![normal(1, 1, b"a"), normal(1, 2, b"b")]).await;
    let err = log.blocking_append(vec![normal(1, 4, b"d")]).await;
    assert!(err.is_err(), "an entry at 4 after 2 must be refused");
    let entries = log.try_get_log_entries(0..10).await.unwrap();
    assert_eq!(indexes_and_terms(&entries), vec![(1, 1), (2, 1)]);
}

// ---- real openraft groups in one process ----

/// An in-process network: messages go through JSON (as over the wire, so nothing local like
/// a log address crosses), and links can be cut.
#[derive(Clone, Default)]
struct Net {
    nodes: Arc<Mutex<HashMap<NodeId, Raft<ReplicaConfig>>>>,
    /// Nodes cut off from everyone.
    isolated: Arc<Mutex<HashSet<NodeId>>>,
}

struct Client {
    from: NodeId,
    to: NodeId,
    net: Net,
}

impl RaftNetworkFactory<ReplicaConfig> for (Net, NodeId) {
    type Network = Client;

    async fn new_client(&mut self, target: NodeId, _node: &BasicNode) -> Client {
        Client { from: self.1, to: target, net: self.0.clone() }
    }
}

fn via_wire<T: Serialize + serde::de::DeserializeOwned>(v: &T) -> T {
    serde_json::from_slice(&serde_json::to_vec(v).unwrap()).unwrap()
}

impl Client {
    fn target<E: std::error::Error>(&self) -> Result<Raft<ReplicaConfig>, RPCError<NodeId, BasicNode, E>> {
        let iso = self.net.isolated.lock();
        let unreachable = || RPCError::Unreachable(Unreachable::new(&std::io::Error::other("cut off")));
        if iso.contains(&self.from) || iso.contains(&self.to) {
            return Err(unreachable());
        }
        self.net.nodes.lock().get(&self.to).cloned().ok_or_else(unreachable)
    }
}

fn remote<E: std::error::Error + 'static>(e: impl std::error::Error + 'static) -> RPCError<NodeId, BasicNode, E> {
    RPCError::Network(NetworkError::new(&e))
}

impl RaftNetwork<ReplicaConfig> for Client {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<ReplicaConfig>,
        _option: RPCOption,
    ) -> Result<AppendEntriesResponse<NodeId>, RPCError<NodeId, BasicNode, RaftError<NodeId>>> {
        let raft = self.target()?;
        let resp = raft.append_entries(via_wire(&rpc)).await.map_err(remote)?;
        // The answer crosses the link back: a cut in between loses it.
        self.target::<RaftError<NodeId>>()?;
        Ok(via_wire(&resp))
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<ReplicaConfig>,
        _option: RPCOption,
    ) -> Result<InstallSnapshotResponse<NodeId>, RPCError<NodeId, BasicNode, RaftError<NodeId, InstallSnapshotError>>>
    {
        let raft = self.target()?;
        let resp = raft.install_snapshot(via_wire(&rpc)).await.map_err(remote)?;
        Ok(via_wire(&resp))
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<NodeId>,
        _option: RPCOption,
    ) -> Result<VoteResponse<NodeId>, RPCError<NodeId, BasicNode, RaftError<NodeId>>> {
        let raft = self.target()?;
        let resp = raft.vote(via_wire(&rpc)).await.map_err(remote)?;
        Ok(via_wire(&resp))
    }
}

fn config() -> Arc<openraft::Config> {
    Arc::new(
        openraft::Config {
            cluster_name: "nadi-container-test".into(),
            heartbeat_interval: 50,
            election_timeout_min: 200,
            election_timeout_max: 400,
            // Snapshots are not shipped yet (they carry no segment data): keep every entry.
            snapshot_policy: openraft::SnapshotPolicy::Never,
            ..Default::default()
        }
        .validate()
        .unwrap(),
    )
}

/// One replica: its Raft handle and what is needed to stop it.
struct Replica {
    raft: Raft<ReplicaConfig>,
    state: ReplicaState<Recorder>,
    thread: super::log_store::LogThread,
    /// Its memory log, if it has one instead of a file log.
    disk: Option<MemLog>,
}

async fn start(net: &Net, id: NodeId, dir: &Path) -> Replica {
    let (log, state) = open_file(dir);
    run(net, id, log, state, None).await
}

/// Starts a replica on a memory log that loses what was not synced at each crash.
async fn start_mem(net: &Net, id: NodeId, dir: &Path, disk: Option<&MemLog>) -> Replica {
    let (log, state, disk) = open_mem(dir, disk);
    run(net, id, log, state, Some(disk)).await
}

async fn run(net: &Net, id: NodeId, log: ReplicaLog, state: ReplicaState<Recorder>, disk: Option<MemLog>) -> Replica {
    let thread = log.thread();
    let raft = Raft::new(id, config(), (net.clone(), id), log, state.clone()).await.unwrap();
    net.nodes.lock().insert(id, raft.clone());
    Replica { raft, state, thread, disk }
}

/// Stops a replica as a crash would, as far as this process can: Raft stops, and the log is
/// closed without another fsync. A file log keeps what was not synced (the page cache has it:
/// one of the allowed outcomes); a memory log loses it when it is recovered. Returns the
/// memory log, if any, to restart from.
async fn stop(net: &Net, id: NodeId, r: Replica) -> Option<MemLog> {
    net.nodes.lock().remove(&id);
    r.raft.shutdown().await.unwrap();
    let Replica { raft, state, thread, disk } = r;
    drop((raft, state));
    assert!(thread.stopped_within(Duration::from_secs(10)), "replica {id}: log thread did not stop");
    disk
}

/// The payload of attempt `n`: what the checker identifies it by.
fn body(n: u64) -> Bytes {
    Bytes::from(format!("attempt-{n:08}").into_bytes())
}

fn attempt_of(ops: &[u8]) -> u64 {
    std::str::from_utf8(ops).unwrap().strip_prefix("attempt-").unwrap().parse().unwrap()
}

async fn leader_of(replicas: &BTreeMap<NodeId, Replica>, within: Duration) -> Option<NodeId> {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        for (id, r) in replicas {
            let m = r.raft.metrics().borrow().clone();
            if m.current_leader == Some(*id) && m.state.is_leader() {
                return Some(*id);
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    None
}

/// A group of one voter: every acknowledged batch is applied once, in order, at the address
/// it has in the log; after a restart the state is rebuilt from the log and equal.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_voter_group_commits_and_recovers() {
    let dir = tempfile::tempdir().unwrap();
    let net = Net::default();
    let r = start(&net, 1, dir.path()).await;
    r.raft.initialize(BTreeMap::from([(1, BasicNode::default())])).await.unwrap();
    r.raft.wait(Some(Duration::from_secs(10))).state(openraft::ServerState::Leader, "leading").await.unwrap();
    let mut acked = Vec::new();
    for n in 0..200 {
        let resp = r.raft.client_write(Batch::new(body(n))).await.unwrap();
        acked.push((resp.log_id.index, n));
    }
    let applied: Vec<(u64, u64)> = r.state.with(|a| a.applied.iter().map(|(i, o)| (*i, attempt_of(o))).collect());
    assert_eq!(applied, acked);
    let last = r.raft.metrics().borrow().last_applied;
    stop(&net, 1, r).await;

    let r = start(&net, 1, dir.path()).await;
    // No checkpoint was written: the state machine starts empty and openraft applies the
    // committed entries again once the group has a leader.
    r.raft
        .wait(Some(Duration::from_secs(10)))
        .applied_index_at_least(last.map(|l| l.index), "re-applied")
        .await
        .unwrap();
    let again: Vec<(u64, u64)> = r.state.with(|a| a.applied.iter().map(|(i, o)| (*i, attempt_of(o))).collect());
    assert_eq!(again, acked);
    stop(&net, 1, r).await;
}

/// Three replicas under crashes (memory logs: what was not synced is lost) and partitions of
/// the leader while a proposer writes, then a crash of all three at once: a checker over what
/// the proposer was told. Every acknowledged batch is applied exactly once,
/// all replicas apply the same sequence, and nothing is applied that was never proposed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_replicas_lose_no_acknowledged_batch_under_crashes_and_partitions() {
    let dirs: Vec<tempfile::TempDir> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let dir_of = |id: NodeId| -> PathBuf { dirs[id as usize - 1].path().to_path_buf() };
    let net = Net::default();
    let mut replicas = BTreeMap::new();
    for id in 1..=3 {
        replicas.insert(id, start_mem(&net, id, &dir_of(id), None).await);
    }
    let members: BTreeMap<NodeId, BasicNode> = (1..=3).map(|id| (id, BasicNode::default())).collect();
    replicas[&1].raft.initialize(members).await.unwrap();

    let acked: Arc<Mutex<BTreeSet<u64>>> = Arc::default();
    let proposed: Arc<Mutex<u64>> = Arc::default();
    let stop_writer = Arc::new(std::sync::atomic::AtomicBool::new(false));
    // The proposer asks whichever node it believes leads; a write that times out or fails
    // is unknown (it may still be applied), never acknowledged.
    let writer = {
        let (net, acked, proposed, stop_writer) = (net.clone(), acked.clone(), proposed.clone(), stop_writer.clone());
        tokio::spawn(async move {
            let mut target: NodeId = 1;
            while !stop_writer.load(std::sync::atomic::Ordering::Relaxed) {
                let raft = net.nodes.lock().get(&target).cloned();
                let Some(raft) = raft else {
                    target = target % 3 + 1;
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                };
                let n = {
                    let mut p = proposed.lock();
                    *p += 1;
                    *p
                };
                match tokio::time::timeout(Duration::from_millis(500), raft.client_write(Batch::new(body(n)))).await {
                    Ok(Ok(_)) => {
                        acked.lock().insert(n);
                    }
                    Ok(Err(e)) => {
                        if let Some(fwd) = e.forward_to_leader() {
                            target = fwd.leader_id.unwrap_or(target % 3 + 1);
                        } else {
                            target = target % 3 + 1;
                        }
                        tokio::time::sleep(Duration::from_millis(5)).await;
                    }
                    Err(_) => target = target % 3 + 1,
                }
            }
        })
    };

    let mut rounds = Vec::new();
    for round in 0..6 {
        tokio::time::sleep(Duration::from_millis(300)).await;
        let leader = leader_of(&replicas, Duration::from_secs(10)).await.expect("a leader within 10 s");
        let before = acked.lock().len();
        let cut = Instant::now();
        if round % 2 == 0 {
            // Crash the leader, let the others go on, bring it back from its disk.
            let r = replicas.remove(&leader).unwrap();
            let disk = stop(&net, leader, r).await;
            wait_for_progress(&acked, before, Duration::from_secs(15)).await;
            rounds.push(("crash", leader, cut.elapsed()));
            replicas.insert(leader, start_mem(&net, leader, &dir_of(leader), disk.as_ref()).await);
        } else {
            // Cut the leader off while the proposer may still be talking to it.
            net.isolated.lock().insert(leader);
            wait_for_progress(&acked, before, Duration::from_secs(15)).await;
            rounds.push(("partition", leader, cut.elapsed()));
            net.isolated.lock().remove(&leader);
        }
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop_writer.store(true, std::sync::atomic::Ordering::Relaxed);
    writer.await.unwrap();
    eprintln!("rounds (fault, node, time to the next acknowledged write): {rounds:?}");

    // Then all three crash at once (what was not synced anywhere is gone) and come back.
    let mut disks = BTreeMap::new();
    for (id, r) in std::mem::take(&mut replicas) {
        disks.insert(id, stop(&net, id, r).await);
    }
    for (id, disk) in disks {
        replicas.insert(id, start_mem(&net, id, &dir_of(id), disk.as_ref()).await);
    }

    // Let every replica catch up with the last leader, then compare.
    let leader = leader_of(&replicas, Duration::from_secs(10)).await.expect("a leader at the end");
    // A write in the final term commits everything before it.
    let n = *proposed.lock() + 1;
    let resp = replicas[&leader].raft.client_write(Batch::new(body(n))).await.unwrap();
    acked.lock().insert(n);
    // The entry's own index (the metrics may not show it applied yet when the write returns).
    let last = Some(resp.log_id.index);
    for r in replicas.values() {
        r.raft.wait(Some(Duration::from_secs(15))).applied_index_at_least(last, "caught up").await.unwrap();
    }
    let sequences: Vec<Vec<u64>> =
        replicas.values().map(|r| r.state.with(|a| a.applied.iter().map(|(_, o)| attempt_of(o)).collect())).collect();
    for (i, s) in sequences.iter().enumerate().skip(1) {
        if s != &sequences[0] {
            let at = s.iter().zip(&sequences[0]).position(|(a, b)| a != b);
            panic!(
                "replicas applied different sequences: replica 0 has {}, replica {i} has {}, first difference at {at:?}: {:?} vs {:?}",
                sequences[0].len(),
                s.len(),
                at.map(|p| &sequences[0][p.saturating_sub(2)..(p + 3).min(sequences[0].len())]),
                at.map(|p| &s[p.saturating_sub(2)..(p + 3).min(s.len())]),
            );
        }
    }
    let applied = &sequences[0];
    let unique: BTreeSet<u64> = applied.iter().copied().collect();
    assert_eq!(unique.len(), applied.len(), "a batch applied twice");
    let acked = acked.lock().clone();
    let lost: Vec<u64> = acked.difference(&unique).copied().collect();
    assert!(lost.is_empty(), "acknowledged but not applied: {lost:?}");
    let proposed = *proposed.lock() + 1;
    assert!(unique.iter().all(|&n| n >= 1 && n <= proposed), "applied a batch that was never proposed");
    assert!(acked.len() > 50, "too few acknowledged writes to mean anything: {}", acked.len());
    for (id, r) in std::mem::take(&mut replicas) {
        stop(&net, id, r).await;
    }
}

async fn wait_for_progress(acked: &Arc<Mutex<BTreeSet<u64>>>, before: usize, within: Duration) {
    let deadline = Instant::now() + within;
    while acked.lock().len() <= before + 5 {
        assert!(Instant::now() < deadline, "no acknowledged write within {within:?} after the fault");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

// ---- bad input on the replication service ----

/// Garbage and misaddressed replication requests are refused with typed errors and change
/// nothing; a stale term and an append after entries the replica lacks are refused by openraft
/// in its reply (a higher vote, a conflict), and change nothing either.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_replication_requests_are_refused_and_change_nothing() {
    use nadi_proto::replica::v1 as pb;
    use nadi_proto::replica::v1::replica_service_server::ReplicaService;
    use openraft::raft::AppendEntriesResponse;

    use super::network::{Groups, ReplicaGrpc};

    let dir = tempfile::tempdir().unwrap();
    let net = Net::default();
    let r = start(&net, 1, dir.path()).await;
    r.raft.initialize(BTreeMap::from([(1, BasicNode::default())])).await.unwrap();
    r.raft.wait(Some(Duration::from_secs(10))).state(openraft::ServerState::Leader, "leading").await.unwrap();
    let mut last = 0;
    for n in 0..5 {
        last = r.raft.client_write(Batch::new(body(n))).await.unwrap().log_id.index;
    }
    // The metrics may lag the writes' answers: compare only once they show all of them.
    r.raft.wait(Some(Duration::from_secs(10))).applied_index_at_least(Some(last), "applied").await.unwrap();
    let groups = Groups::new(1);
    groups.insert(0, r.raft.clone());
    let svc = ReplicaGrpc { groups, auth_required: false };
    let route = |container, to| Some(pb::Route { container, to, from: 2 });
    let snapshot = || async {
        let m = r.raft.metrics().borrow().clone();
        (m.last_log_index, m.last_applied, r.state.with(|a| a.applied.clone()))
    };
    let before = snapshot().await;
    let vote_json = |term: u64| {
        serde_json::to_vec(&openraft::raft::VoteRequest::<NodeId> {
            vote: openraft::Vote::new(term, 2),
            last_log_id: None,
        })
        .unwrap()
    };

    // Misaddressed: another store, a container this store does not hold, no route at all.
    let e = svc
        .vote(tonic::Request::new(pb::ReplicaRequest {
            route: route(0, 7),
            json: vote_json(9).into(),
            data: Default::default(),
        }))
        .await;
    assert_eq!(e.unwrap_err().code(), tonic::Code::FailedPrecondition);
    let e = svc
        .vote(tonic::Request::new(pb::ReplicaRequest {
            route: route(9, 1),
            json: vote_json(9).into(),
            data: Default::default(),
        }))
        .await;
    assert_eq!(e.unwrap_err().code(), tonic::Code::NotFound);
    let e = svc
        .vote(tonic::Request::new(pb::ReplicaRequest {
            route: None,
            json: vote_json(9).into(),
            data: Default::default(),
        }))
        .await;
    assert_eq!(e.unwrap_err().code(), tonic::Code::InvalidArgument);
    // Garbage bytes, an unknown entry kind, entries inside the JSON.
    let e = svc
        .vote(tonic::Request::new(pb::ReplicaRequest {
            route: route(0, 1),
            json: b"\xff\x00garbage".to_vec().into(),
            data: Default::default(),
        }))
        .await;
    assert_eq!(e.unwrap_err().code(), tonic::Code::InvalidArgument);
    let stale = AppendEntriesRequest::<ReplicaConfig> {
        vote: openraft::Vote::new_committed(0, 2),
        prev_log_id: None,
        entries: vec![],
        leader_commit: None,
    };
    let bad_kind = pb::Entry { term: 0, leader: 2, index: 1, kind: 7, body: Bytes::from_static(b"x") };
    let e = svc
        .append_entries(tonic::Request::new(pb::AppendEntriesRequest {
            route: route(0, 1),
            json: serde_json::to_vec(&stale).unwrap().into(),
            entries: vec![bad_kind],
        }))
        .await;
    assert_eq!(e.unwrap_err().code(), tonic::Code::InvalidArgument);
    let with_entries = AppendEntriesRequest::<ReplicaConfig> { entries: vec![normal(0, 1, b"x")], ..stale.clone() };
    let e = svc
        .append_entries(tonic::Request::new(pb::AppendEntriesRequest {
            route: route(0, 1),
            json: serde_json::to_vec(&with_entries).unwrap().into(),
            entries: vec![],
        }))
        .await;
    assert_eq!(e.unwrap_err().code(), tonic::Code::InvalidArgument);
    assert_eq!(snapshot().await, before, "refused requests changed nothing");

    // A stale term: openraft answers with its higher vote and takes nothing.
    let entry = pb::Entry { term: 0, leader: 2, index: 1, kind: 1, body: Bytes::from_static(b"attempt-99999999") };
    let reply = svc
        .append_entries(tonic::Request::new(pb::AppendEntriesRequest {
            route: route(0, 1),
            json: serde_json::to_vec(&stale).unwrap().into(),
            entries: vec![entry.clone()],
        }))
        .await
        .unwrap()
        .into_inner();
    let resp: Result<AppendEntriesResponse<NodeId>, RaftError<NodeId>> = serde_json::from_slice(&reply.json).unwrap();
    assert!(matches!(resp, Ok(AppendEntriesResponse::HigherVote(_))), "{resp:?}");
    assert_eq!(snapshot().await, before, "a stale term changed nothing");

    // A newer leader asks to append after an entry this replica does not have: a conflict.
    let ahead = AppendEntriesRequest::<ReplicaConfig> {
        vote: openraft::Vote::new_committed(50, 2),
        prev_log_id: Some(log_id(50, 1000)),
        entries: vec![],
        leader_commit: Some(log_id(50, 1001)),
    };
    let mut far = entry;
    (far.term, far.index) = (50, 1001);
    let reply = svc
        .append_entries(tonic::Request::new(pb::AppendEntriesRequest {
            route: route(0, 1),
            json: serde_json::to_vec(&ahead).unwrap().into(),
            entries: vec![far],
        }))
        .await
        .unwrap()
        .into_inner();
    let resp: Result<AppendEntriesResponse<NodeId>, RaftError<NodeId>> = serde_json::from_slice(&reply.json).unwrap();
    assert!(matches!(resp, Ok(AppendEntriesResponse::Conflict)), "{resp:?}");
    let (last_log, applied, state) = snapshot().await;
    assert_eq!((last_log, applied, state), before, "no entry was taken, nothing applied");
    stop(&net, 1, r).await;
}

/// A checkpoint may follow entries it does not cover (a follower appends ahead of what it
/// applies): it names them, and recovery from it still finds every one, bodies included; a group
/// of one forgets what a checkpoint covers, a larger group's member nothing (openraft purges).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_checkpoint_names_the_entries_written_before_it_that_it_does_not_cover() {
    use super::log_store::Forget;
    use openraft::storage::RaftStateMachine;
    let dir = tempfile::tempdir().unwrap();
    {
        let (mut log, mut state) = open_file(dir.path());
        let entries: Vec<_> = (1..=6).map(|i| normal(1, i, format!("e{i}").as_bytes())).collect();
        append(&mut log, entries.clone()).await;
        // Entries 1..=4 applied, 5 and 6 only written: a checkpoint of entry 4.
        state.apply(entries.into_iter().take(4)).await.unwrap();
        let (payload, applied) = state.checkpoint();
        assert_eq!(applied, Some(4));
        log.checkpoint(payload.clone(), applied, 0, Forget::Nothing).unwrap();
        assert_eq!(log.try_get_log_entries(0..100).await.unwrap().len(), 6, "a larger group forgets nothing");
        append(&mut log, vec![normal(1, 7, b"e7")]).await;
        log.barrier();
        let thread = log.thread();
        drop((log, state));
        assert!(thread.stopped_within(Duration::from_secs(10)));
    }
    let (mut log, state) = open_file(dir.path());
    let st = log.get_log_state().await.unwrap();
    assert_eq!((st.last_purged_log_id, st.last_log_id), (Some(log_id(1, 4)), Some(log_id(1, 7))));
    let held = log.try_get_log_entries(0..100).await.unwrap();
    assert_eq!(indexes_and_terms(&held), vec![(5, 1), (6, 1), (7, 1)], "5 and 6 came from the checkpoint, 7 after it");
    for e in &held {
        match &e.payload {
            EntryPayload::Normal(b) => assert_eq!(&b.ops[..], format!("e{}", e.log_id.index).as_bytes()),
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(state.with(|r| r.applied.iter().map(|(i, _)| *i).collect::<Vec<_>>()), vec![1, 2, 3, 4]);
    // A group of one forgets what its checkpoint covers.
    let (payload, _) = state.checkpoint();
    log.checkpoint(payload, Some(6), 1, Forget::Applied).unwrap();
    let left = log.try_get_log_entries(0..100).await.unwrap();
    assert_eq!(indexes_and_terms(&left), vec![(7, 1)]);
}
