//! The controller's metadata is a Raft group (openraft): every change is a log entry applied in
//! the same order on every node.
//!
//! - [`log_store`]: the Raft log, vote and committed index on disk (redb).
//! - [`state_machine`]: the applied state ([`ControllerState`](crate::state::ControllerState) and
//!   [`ClusterState`](crate::cluster::ClusterState)) with snapshots on disk.
//! - [`network`]: Raft RPCs over gRPC (`nadi.raft.v1`).
//! - [`forward`]: any node accepts any client request; it runs on the leader.
//!
//! `nadi standalone` runs a group of one; `nadi controller` runs one member of a larger group.

pub mod forward;
pub mod log_store;
pub mod network;
pub mod prom;
pub mod state_machine;

use std::collections::BTreeMap;
use std::io::Cursor;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use openraft::error::{InitializeError, RaftError};
use openraft::{BasicNode, Raft, SnapshotPolicy};
use serde::{Deserialize, Serialize};

use crate::MetaError;
use crate::cluster::ClusterCommand;
use crate::reader_group::ReaderGroupCommand;
use crate::state::Command;
use crate::txn::TxnCommand;

/// A controller node's id in the Raft group.
pub type NodeId = u64;

/// What the Raft log carries.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Request {
    /// A change to scopes, streams and segments.
    Meta(Command),
    /// A change to segment-store membership.
    Cluster(ClusterCommand),
    /// A change to transactions (a rolling commit also changes the stream's epochs).
    Txn(TxnCommand),
    /// A change to reader groups (membership, positions, checkpoints).
    ReaderGroup(ReaderGroupCommand),
    /// A change to the grants (docs/security.md).
    Acl(AclCommand),
    /// `request` on behalf of a client request with idempotency key `key` (its
    /// `x-nadi-request-id`): applied at most once per key. A repeated key is answered from
    /// the replicated reply table ([`state_machine::Replies`]) without applying `request`
    /// again, so a client retrying after a lost answer does not scale twice or open two
    /// transactions.
    Once { key: String, request: Box<Request> },
}

/// A change to the grants of principals on resources.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum AclCommand {
    /// Gives the grant (applying it again changes nothing).
    Grant(nadi_security::acl::Grant),
    /// Takes the grant back (revoking one that is not there changes nothing).
    Revoke(nadi_security::acl::Grant),
}

/// What applying a request produced, beyond "done": the part of the answer a retry must get
/// back unchanged.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Reply {
    /// Applied.
    Done,
    /// A transaction was opened with this id (a retried begin must learn the same one).
    TxnBegun { id: String },
}

/// The outcome of applying one [`Request`]: a refused command leaves the state unchanged.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Response(pub Result<Reply, MetaError>);

openraft::declare_raft_types!(
    /// The Raft types of the controller group.
    pub TypeConfig:
        D = Request,
        R = Response,
        NodeId = NodeId,
        Node = BasicNode,
        Entry = openraft::Entry<TypeConfig>,
        SnapshotData = Cursor<Vec<u8>>,
        AsyncRuntime = openraft::TokioRuntime,
);

/// Timing and retention settings of the Raft group, and how this node calls the others.
#[derive(Debug, Clone)]
pub struct RaftSettings {
    /// What this node presents to the other controllers (and to segment stores, through the
    /// same channels): its node token, its TLS client certificate.
    pub client: nadi_security::channel::ClientSecurity,
    /// Whether Raft RPCs must come from a superuser (a node): `--auth required`.
    pub auth_required: bool,
    /// Leader heartbeat interval.
    pub heartbeat: Duration,
    /// A follower that hears no leader for a random time in `[election_min, election_max]`
    /// starts an election.
    pub election_min: Duration,
    pub election_max: Duration,
    /// A snapshot is taken every this many log entries; the log before it is purged.
    pub snapshot_every: u64,
}

impl Default for RaftSettings {
    fn default() -> Self {
        RaftSettings {
            client: Default::default(),
            auth_required: false,
            heartbeat: Duration::from_millis(150),
            election_min: Duration::from_millis(600),
            election_max: Duration::from_millis(1200),
            snapshot_every: 1000,
        }
    }
}

/// Where a node keeps its Raft data (`controller/` under the data dir).
#[derive(Debug, Clone)]
pub struct RaftPaths {
    pub dir: PathBuf,
}

impl RaftPaths {
    /// The redb file of the log.
    pub fn log(&self) -> PathBuf {
        self.dir.join("raft.redb")
    }
}

/// A running member of the controller group.
#[derive(Clone)]
pub struct RaftNode {
    pub id: NodeId,
    pub raft: Raft<TypeConfig>,
    pub state: state_machine::StateMachine,
    pub channels: network::Channels,
    /// Whether Raft RPCs must come from a superuser (a node).
    pub auth_required: bool,
    /// Injected losses on the forward path (armed from the environment; see
    /// [`forward::ForwardFaults`]).
    pub forward_faults: forward::ForwardFaults,
}

impl std::fmt::Debug for RaftNode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RaftNode").field("id", &self.id).finish_non_exhaustive()
    }
}

impl RaftNode {
    /// Opens the node's storage in `dir` and starts it. A pristine group is initialized with
    /// `members` (id → gRPC URL); every member may do so with the same list, which is safe.
    pub async fn start(
        id: NodeId,
        dir: &Path,
        members: &BTreeMap<NodeId, String>,
        settings: &RaftSettings,
    ) -> Result<RaftNode, MetaError> {
        let internal = |what: &str, e: &dyn std::fmt::Display| MetaError::Internal(format!("{what}: {e}"));
        if !members.contains_key(&id) {
            return Err(MetaError::InvalidArgument(format!("controller id {id} is not among the peers {members:?}")));
        }
        std::fs::create_dir_all(dir).map_err(|e| internal(&format!("creating {}", dir.display()), &e))?;
        let paths = RaftPaths { dir: dir.to_path_buf() };
        let log = log_store::LogStore::open(&paths.log())
            .map_err(|e| internal(&format!("opening the Raft log {}", paths.log().display()), &e))?;
        let state = state_machine::StateMachine::open(dir).map_err(|e| internal("opening the Raft snapshot", &e))?;
        let config = openraft::Config {
            cluster_name: "nadi-controller".into(),
            heartbeat_interval: settings.heartbeat.as_millis() as u64,
            election_timeout_min: settings.election_min.as_millis() as u64,
            election_timeout_max: settings.election_max.as_millis() as u64,
            snapshot_policy: SnapshotPolicy::LogsSinceLast(settings.snapshot_every),
            max_in_snapshot_log_to_keep: settings.snapshot_every / 10,
            ..Default::default()
        }
        .validate()
        .map_err(|e| MetaError::InvalidArgument(format!("Raft settings: {e}")))?;
        let network = network::NetworkFactory { channels: network::Channels::new(settings.client.clone()) };
        let channels = network.channels.clone();
        let raft = Raft::new(id, Arc::new(config), network, log, state.clone())
            .await
            .map_err(|e| internal("starting Raft", &e))?;
        let nodes: BTreeMap<NodeId, BasicNode> =
            members.iter().map(|(id, addr)| (*id, BasicNode { addr: addr.clone() })).collect();
        // Asking an initialized group to initialize again makes openraft log an error on every
        // restart: only a node with nothing in its log proposes the membership.
        if raft.is_initialized().await.map_err(|e| internal("reading the Raft state", &e))? {
            tracing::info!(id, "controller group already initialized; rejoining");
            return Ok(RaftNode {
                id,
                raft,
                state,
                channels,
                auth_required: settings.auth_required,
                forward_faults: forward::ForwardFaults::from_env(),
            });
        }
        match raft.initialize(nodes).await {
            Ok(()) => tracing::info!(id, ?members, "initialized a new controller group"),
            Err(RaftError::APIError(InitializeError::NotAllowed(_))) => {
                tracing::info!(id, "controller group already initialized; rejoining")
            }
            Err(e) => return Err(internal("initializing the controller group", &e)),
        }
        Ok(RaftNode {
            id,
            raft,
            state,
            channels,
            auth_required: settings.auth_required,
            forward_faults: forward::ForwardFaults::from_env(),
        })
    }

    /// The layer that sends client requests to the leader.
    pub fn forward_layer(&self) -> forward::ForwardToLeaderLayer {
        forward::ForwardToLeaderLayer {
            id: self.id,
            raft: self.raft.clone(),
            channels: self.channels.clone(),
            faults: self.forward_faults.clone(),
        }
    }

    /// The gRPC server of the Raft RPCs.
    pub fn raft_service(&self) -> nadi_proto::raft::v1::raft_service_server::RaftServiceServer<network::RaftGrpc> {
        nadi_proto::raft::v1::raft_service_server::RaftServiceServer::new(network::RaftGrpc {
            raft: self.raft.clone(),
            state: self.state.clone(),
            auth_required: self.auth_required,
        })
        .max_decoding_message_size(64 * 1024 * 1024)
    }
}

#[cfg(test)]
mod tests {
    use openraft::StorageError;
    use openraft::testing::{StoreBuilder, Suite};

    use super::*;

    struct Builder;

    impl StoreBuilder<TypeConfig, log_store::LogStore, state_machine::StateMachine, tempfile::TempDir> for Builder {
        async fn build(
            &self,
        ) -> Result<(tempfile::TempDir, log_store::LogStore, state_machine::StateMachine), StorageError<NodeId>>
        {
            let dir = tempfile::tempdir().unwrap();
            let log = log_store::LogStore::open(&dir.path().join("raft.redb")).unwrap();
            let sm = state_machine::StateMachine::open(dir.path()).unwrap();
            Ok((dir, log, sm))
        }
    }

    /// openraft's own storage test suite, run against the persistent log and state machine.
    #[test]
    fn openraft_storage_suite() {
        Suite::test_all(Builder).unwrap();
    }
}
