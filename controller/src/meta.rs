//! Durable, replicated application of metadata commands.
//!
//! [`MetaStore::propose`] appends a command to the Raft log; it returns once the command is
//! committed (on a majority of the controller nodes' disks) and applied, with the outcome of
//! applying it. [`MetaStore::read`] reads the applied state of this node. Client requests reach
//! this only on the leader, after it confirmed its leadership (see [`crate::raft::forward`]), so
//! those reads are linearizable.
//!
//! The `*_once` proposals carry a client request's idempotency key ([`RequestKey`], from its
//! `x-nadi-request-id` header): the state machine applies the command at most once per key and
//! answers a repeated key with the reply it recorded. A workflow keys only its *deciding*
//! command (e.g. `StartScale`, transaction `Begin`), the one a retry must not repeat; its other
//! steps are idempotent already and simply run again.

use std::sync::Arc;

use openraft::error::{ClientWriteError, RaftError};
use parking_lot::RwLock;

use crate::MetaError;
use crate::cluster::{ClusterCommand, ClusterState};
use crate::raft::state_machine::Applied;
use crate::raft::{RaftNode, Reply, Request};
use crate::reader_group::{ReaderGroupCommand, ReaderGroups};
use crate::state::{Command, ControllerState};

/// A client request's idempotency key: its `x-nadi-request-id`
/// ([`nadi_proto::REQUEST_ID_HEADER`]), validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestKey(String);

impl RequestKey {
    /// The key of a gRPC request: `None` without the header (older clients) or with an empty
    /// one; `InvalidArgument` if it is longer than [`nadi_proto::MAX_REQUEST_ID_LEN`] or not
    /// visible ASCII.
    pub fn of<T>(req: &tonic::Request<T>) -> Result<Option<RequestKey>, MetaError> {
        let Some(v) = req.metadata().get(nadi_proto::REQUEST_ID_HEADER) else { return Ok(None) };
        let bad = || {
            MetaError::InvalidArgument(format!(
                "{} must be 1 to {} visible ASCII characters",
                nadi_proto::REQUEST_ID_HEADER,
                nadi_proto::MAX_REQUEST_ID_LEN
            ))
        };
        let v = v.to_str().map_err(|_| bad())?;
        if v.is_empty() {
            return Ok(None);
        }
        if v.len() > nadi_proto::MAX_REQUEST_ID_LEN || !v.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(bad());
        }
        Ok(Some(RequestKey(v.to_owned())))
    }

    /// The key as sent.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// The metadata of a controller node.
#[derive(Debug, Clone)]
pub struct MetaStore {
    node: RaftNode,
    /// Read with `read_recursive` everywhere: readers nest (a reader-group sync looks up
    /// endpoints while it reads the groups), and a plain nested `read` blocks behind a queued
    /// writer (the state machine applying an entry) that waits for the outer read: a deadlock
    /// (seen: `nadi bench --workload` hung with both runtime threads parked on this lock).
    applied: Arc<RwLock<Applied>>,
    /// The store that last reported leading each replicated container, and when: where clients
    /// of the container are sent (in memory: heartbeats refresh it every few seconds).
    leaders: Arc<RwLock<std::collections::HashMap<u32, (String, std::time::Instant)>>>,
    /// When each store that holds replicated containers last heartbeated.
    replicating: Arc<RwLock<std::collections::BTreeMap<String, std::time::Instant>>>,
    /// The latest report of each led container's group (term, voters, lag), from its leader.
    groups: Arc<RwLock<std::collections::HashMap<u32, (nadi_proto::raft::v1::LedGroup, std::time::Instant)>>>,
    /// Each store's Pravega segment endpoint (`HOST:PORT`) as its latest heartbeat reported it:
    /// where the Pravega front end sends Pravega clients (in memory, like `leaders`; a new leader
    /// learns them from the next heartbeats, within seconds).
    pravega_endpoints: Arc<RwLock<std::collections::BTreeMap<String, String>>>,
    /// Whether this node requires tokens (`--auth required`): a request that reaches a service
    /// without an identity from the auth layer is then refused rather than let through.
    auth_required: Arc<std::sync::atomic::AtomicBool>,
}

/// How long a store's report of leading a container is believed without a fresh one.
/// (Stores heartbeat every 2 s: a store that died stops being believed soon after.)
const LEADER_REPORT_TTL: std::time::Duration = std::time::Duration::from_millis(3000);

impl MetaStore {
    /// The metadata kept by `node`.
    pub fn new(node: RaftNode) -> MetaStore {
        let applied = node.state.applied().clone();
        MetaStore {
            node,
            applied,
            leaders: Arc::default(),
            replicating: Arc::default(),
            groups: Arc::default(),
            pravega_endpoints: Arc::default(),
            auth_required: Arc::default(),
        }
    }

    /// Records whether this node requires tokens (set once, at start).
    pub fn set_auth_required(&self, required: bool) {
        self.auth_required.store(required, std::sync::atomic::Ordering::Release);
    }

    /// Whether this node requires tokens.
    pub fn auth_required(&self) -> bool {
        self.auth_required.load(std::sync::atomic::Ordering::Acquire)
    }

    /// A Raft group of one in `dir` (id 1), waiting until it leads. For embedding and tests; the
    /// address is only used by other members, of which there are none.
    pub async fn open_single_node(dir: &std::path::Path) -> Result<MetaStore, MetaError> {
        let members = std::collections::BTreeMap::from([(1, "http://127.0.0.1:1".to_owned())]);
        let node = RaftNode::start(1, dir, &members, &crate::raft::RaftSettings::default()).await?;
        let store = MetaStore::new(node);
        if !store.wait_for_leadership(std::time::Duration::from_secs(30)).await {
            return Err(MetaError::Unavailable("a single-node controller group did not elect itself".into()));
        }
        Ok(store)
    }

    /// The Raft node behind this store.
    pub fn node(&self) -> &RaftNode {
        &self.node
    }

    /// Applies `cmd` through the Raft log and returns its outcome.
    pub async fn propose(&self, cmd: Command) -> Result<(), MetaError> {
        self.write(Request::Meta(cmd)).await
    }

    /// Applies a cluster-membership command through the Raft log.
    pub async fn propose_cluster(&self, cmd: ClusterCommand) -> Result<(), MetaError> {
        self.write(Request::Cluster(cmd)).await
    }

    /// Applies a transaction command through the Raft log.
    pub async fn propose_txn(&self, cmd: crate::txn::TxnCommand) -> Result<(), MetaError> {
        self.write(Request::Txn(cmd)).await
    }

    /// Applies a reader-group command through the Raft log.
    pub async fn propose_reader_group(&self, cmd: ReaderGroupCommand) -> Result<(), MetaError> {
        self.write(Request::ReaderGroup(cmd)).await
    }

    /// Applies `cmd` at most once per `key` (without a key: like [`Self::propose`]).
    pub async fn propose_once(&self, key: Option<&RequestKey>, cmd: Command) -> Result<(), MetaError> {
        self.write_once(key, Request::Meta(cmd)).await.map(|_| ())
    }

    /// Applies transaction command `cmd` at most once per `key`; returns the reply recorded
    /// for the key (for `Begin`, the id of the transaction it opened, which on a retry is not
    /// the id in `cmd`).
    pub async fn propose_txn_once(
        &self,
        key: Option<&RequestKey>,
        cmd: crate::txn::TxnCommand,
    ) -> Result<Reply, MetaError> {
        self.write_once(key, Request::Txn(cmd)).await
    }

    /// True if a request with `key` was applied (and is still remembered). On the leader,
    /// after the forward layer confirmed its leadership, this is linearizable.
    pub fn applied_key(&self, key: Option<&RequestKey>) -> bool {
        key.is_some_and(|k| self.applied.read_recursive().machine.replies.get(k.as_str()).is_some())
    }

    async fn write_once(&self, key: Option<&RequestKey>, req: Request) -> Result<Reply, MetaError> {
        let req = match key {
            Some(k) => Request::Once { key: k.0.clone(), request: Box::new(req) },
            None => req,
        };
        self.submit(req).await
    }

    /// Runs `f` on this node's applied metadata and reader groups together.
    pub fn read_groups<T>(&self, f: impl FnOnce(&ControllerState, &ReaderGroups) -> T) -> T {
        let a = self.applied.read_recursive();
        f(&a.machine.meta, &a.machine.reader_groups)
    }

    async fn write(&self, req: Request) -> Result<(), MetaError> {
        self.submit(req).await.map(|_| ())
    }

    async fn submit(&self, req: Request) -> Result<Reply, MetaError> {
        match self.node.raft.client_write(req).await {
            Ok(r) => r.data.0,
            Err(RaftError::APIError(ClientWriteError::ForwardToLeader(f))) => Err(MetaError::Unavailable(format!(
                "this controller is no longer the leader (leader: {}); retry",
                f.leader_id.map_or("unknown".to_owned(), |l| l.to_string())
            ))),
            Err(e) => Err(MetaError::Unavailable(format!("metadata change not committed: {e}"))),
        }
    }

    /// Runs `f` on this node's applied metadata.
    pub async fn read<T>(&self, f: impl FnOnce(&ControllerState) -> T) -> T {
        f(&self.applied.read_recursive().machine.meta)
    }

    /// Runs `f` on this node's applied metadata and transactions.
    pub fn read_txns<T>(&self, f: impl FnOnce(&ControllerState, &crate::txn::TxnTable) -> T) -> T {
        let a = self.applied.read_recursive();
        f(&a.machine.meta, &a.machine.txns)
    }

    /// Applies a change to the grants through the Raft log.
    pub async fn propose_acl(&self, cmd: crate::raft::AclCommand) -> Result<(), MetaError> {
        self.write(Request::Acl(cmd)).await
    }

    /// Runs `f` on this node's applied grants.
    pub fn read_acl<T>(&self, f: impl FnOnce(&nadi_security::acl::Acl) -> T) -> T {
        f(&self.applied.read_recursive().machine.acl)
    }

    /// Runs `f` on this node's applied cluster membership.
    pub fn read_cluster<T>(&self, f: impl FnOnce(&ClusterState) -> T) -> T {
        f(&self.applied.read_recursive().machine.cluster)
    }

    /// Records that `store_id` leads exactly `containers` among the replicated containers it
    /// holds (from its heartbeat).
    pub fn note_leaders(&self, store_id: &str, containers: &[u32], replicated: bool) {
        let now = std::time::Instant::now();
        if replicated {
            self.replicating.write().insert(store_id.to_owned(), now);
        }
        let mut leaders = self.leaders.write();
        leaders.retain(|c, (s, _)| s != store_id || containers.contains(c));
        for c in containers {
            leaders.insert(*c, (store_id.to_owned(), now));
        }
    }

    /// Records the Pravega segment endpoint `store_id` reported (empty: it serves none).
    pub fn note_pravega_endpoint(&self, store_id: &str, endpoint: &str) {
        let mut map = self.pravega_endpoints.write();
        if endpoint.is_empty() {
            map.remove(store_id);
        } else if map.get(store_id).is_none_or(|e| e != endpoint) {
            map.insert(store_id.to_owned(), endpoint.to_owned());
        }
    }

    /// The Pravega segment endpoint `store_id` last reported to this node, if any.
    pub fn pravega_endpoint_of(&self, store_id: &str) -> Option<String> {
        self.pravega_endpoints.read().get(store_id).cloned()
    }

    /// Records the groups a leading store reported (see [`Self::group_of`]).
    pub fn note_groups(&self, groups: &[nadi_proto::raft::v1::LedGroup]) {
        let now = std::time::Instant::now();
        let mut map = self.groups.write();
        for g in groups {
            map.insert(g.container, (g.clone(), now));
        }
    }

    /// `container`'s group as its leader last reported it within the last few seconds.
    pub fn group_of(&self, container: u32) -> Option<nadi_proto::raft::v1::LedGroup> {
        let map = self.groups.read();
        map.get(&container).filter(|(_, at)| at.elapsed() < LEADER_REPORT_TTL).map(|(g, _)| g.clone())
    }

    /// The store that leads `container`, as last reported within the last few seconds.
    pub fn leader_of(&self, container: u32) -> Option<String> {
        let leaders = self.leaders.read();
        leaders.get(&container).filter(|(_, at)| at.elapsed() < LEADER_REPORT_TTL).map(|(s, _)| s.clone())
    }

    /// The endpoint of the store clients of `segment` go to: the store leading its container
    /// (replicated containers), else the store it is assigned to.
    pub fn endpoint_for(&self, segment: &str) -> Result<String, MetaError> {
        let count = self.read_cluster(|c| c.containers);
        if count == 0 {
            return self.read_cluster(|c| c.endpoint_for(segment).map(str::to_owned));
        }
        self.endpoint_of(nadi_proto::names::container_of(segment, count)).map(|(_, endpoint)| endpoint)
    }

    /// The store (id, endpoint) clients of `container` go to: the store that last reported
    /// leading it, else a live store holding replicas if the assigned one stopped
    /// heartbeating, else the assigned store.
    pub fn endpoint_of(&self, container: u32) -> Result<(String, String), MetaError> {
        self.read_cluster(|c| {
            if let Some(store) = self.leader_of(container)
                && let Some(rec) = c.stores.get(&store)
            {
                return Ok((store, rec.endpoint.clone()));
            }
            let replicating = self.replicating.read();
            let live = |id: &String| replicating.get(id).is_some_and(|at| at.elapsed() < LEADER_REPORT_TTL);
            if let Some(members) = c.replicas.get(&container) {
                // Placed replicas and no leader known: a live member answers NOT_LEADER with
                // the leader's address if it knows it, and the client asks again.
                let id = members.iter().find(|m| live(m)).or(members.first());
                if let Some((id, rec)) = id.and_then(|id| c.stores.get(id).map(|r| (id, r))) {
                    return Ok((id.clone(), rec.endpoint.clone()));
                }
            }
            let assigned = c
                .assignment
                .get(&container)
                .ok_or_else(|| MetaError::Unavailable(format!("container {container} has no segment store")))?;
            let rec = c.stores.get(assigned).ok_or_else(|| {
                MetaError::Internal(format!("container {container} is assigned to unknown store {assigned}"))
            })?;
            // No leader known (an election, or its report is not in yet): a live store that
            // holds replicas rather than an assigned store that stopped heartbeating. It
            // answers NOT_LEADER if it does not lead, and the client asks again.
            if replicating.contains_key(assigned)
                && !live(assigned)
                && let Some((id, other)) =
                    replicating.keys().filter(|id| live(id)).find_map(|id| c.stores.get(id).map(|r| (id, r)))
            {
                return Ok((id.clone(), other.endpoint.clone()));
            }
            Ok((assigned.clone(), rec.endpoint.clone()))
        })
    }

    /// Waits until this node is the leader or `timeout` passes; true if it is the leader.
    pub async fn wait_for_leadership(&self, timeout: std::time::Duration) -> bool {
        let id = self.node.id;
        let mut rx = self.node.raft.metrics();
        tokio::time::timeout(timeout, rx.wait_for(|m| m.current_leader == Some(id))).await.is_ok_and(|r| r.is_ok())
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::time::Duration;

    use super::*;
    use crate::raft::RaftSettings;

    async fn single(dir: &std::path::Path) -> MetaStore {
        let members = BTreeMap::from([(1, "http://127.0.0.1:1".to_owned())]);
        let node = RaftNode::start(1, dir, &members, &RaftSettings::default()).await.unwrap();
        let store = MetaStore::new(node);
        assert!(store.wait_for_leadership(Duration::from_secs(10)).await, "a group of one elects itself");
        store
    }

    #[tokio::test]
    async fn state_survives_restart_and_refused_commands_change_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let store = single(dir.path()).await;
        store.propose(Command::CreateScope { scope: "a".into(), now_ms: 5 }).await.unwrap();
        assert!(matches!(
            store.propose(Command::CreateScope { scope: "a".into(), now_ms: 6 }).await,
            Err(MetaError::ScopeExists(_))
        ));
        store.node().raft.shutdown().await.unwrap();
        drop(store);
        let store = single(dir.path()).await;
        // Applied again from the log (no snapshot yet) up to the durable committed index.
        let scopes = store.read(|s| s.scopes.keys().cloned().collect::<Vec<_>>()).await;
        assert_eq!(scopes, vec!["a".to_owned()]);
        assert_eq!(store.read(|s| s.scopes["a"].created_at_ms).await, 5);
    }

    #[tokio::test]
    async fn state_survives_restart_from_a_snapshot_and_purged_log() {
        let dir = tempfile::tempdir().unwrap();
        let store = single(dir.path()).await;
        for i in 0..50 {
            store.propose(Command::CreateScope { scope: format!("s{i}"), now_ms: i }).await.unwrap();
        }
        store.node().raft.trigger().snapshot().await.unwrap();
        let mut rx = store.node().raft.metrics();
        rx.wait_for(|m| m.snapshot.is_some_and(|s| s.index >= 50)).await.unwrap();
        store.node().raft.trigger().purge_log(50).await.unwrap();
        rx.wait_for(|m| m.purged.is_some_and(|p| p.index >= 50)).await.unwrap();
        store.propose(Command::CreateScope { scope: "after".into(), now_ms: 99 }).await.unwrap();
        store.node().raft.shutdown().await.unwrap();
        drop(store);
        let store = single(dir.path()).await;
        let n = store.read(|s| s.scopes.len()).await;
        assert_eq!(n, 51);
        assert!(store.read(|s| s.scopes.contains_key("after")).await);
    }
}
