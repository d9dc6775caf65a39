//! Raft RPCs between the replicas of containers, over gRPC (`nadi.replica.v1.ReplicaService`):
//! one service per segment store carries every group it is a member of, routed by container.
//!
//! - Entries travel as protobuf messages with their bodies as raw bytes (a batch of events is
//!   never re-encoded); the rest of each openraft request and every reply is JSON, as between
//!   controllers.
//! - Every request names its container and the store it is for. A store that is not that store
//!   answers `FAILED_PRECONDITION`; one that holds no group for the container, `NOT_FOUND`;
//!   a malformed request, `INVALID_ARGUMENT`. None of them touches a group. Stale terms and
//!   entries a follower lacks are openraft's to answer (a higher vote, a conflict), in the
//!   reply's JSON.
//!
//! Owns: [`Groups`] (the server side), [`GrpcNetwork`] (the client side). Calls: openraft,
//! `nadi_proto::replica`. Called by: `container::replicated` (a group's network), `node`
//! (serves [`ReplicaGrpc`]).

// The error types are openraft's (`RPCError`, `StorageError`), fixed by its traits.
#![allow(clippy::result_large_err)]

use std::collections::HashMap;
use std::sync::Arc;

use bytes::Bytes;
use nadi_proto::replica::v1 as pb;
use nadi_proto::replica::v1::replica_service_client::ReplicaServiceClient;
use nadi_security::channel::Channel;
use openraft::error::{InstallSnapshotError, NetworkError, RPCError, RaftError, RemoteError, Unreachable};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse, VoteRequest,
    VoteResponse,
};
use openraft::{BasicNode, CommittedLeaderId, Entry, EntryPayload, Raft};
use parking_lot::RwLock;
use serde::Serialize;
use serde::de::DeserializeOwned;
use tonic::{Request, Status};

use super::{Batch, LogId, NodeId, ReplicaConfig};

/// The groups this store is a member of, by container: where incoming RPCs go.
pub struct Groups {
    node_id: NodeId,
    groups: RwLock<HashMap<u32, Raft<ReplicaConfig>>>,
}

impl std::fmt::Debug for Groups {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Groups").field("node_id", &self.node_id).finish_non_exhaustive()
    }
}

impl Groups {
    pub fn new(node_id: NodeId) -> Arc<Groups> {
        Arc::new(Groups { node_id, groups: RwLock::default() })
    }

    /// This store's node id.
    pub fn node_id(&self) -> NodeId {
        self.node_id
    }

    pub fn insert(&self, container: u32, raft: Raft<ReplicaConfig>) {
        self.groups.write().insert(container, raft);
    }

    pub fn remove(&self, container: u32) {
        self.groups.write().remove(&container);
    }

    fn route(&self, route: Option<&pb::Route>) -> Result<Raft<ReplicaConfig>, Status> {
        let route = route.ok_or_else(|| Status::invalid_argument("a replication request without its route"))?;
        if route.to != self.node_id {
            return Err(Status::failed_precondition(format!(
                "this segment store is node {}, not node {}: a stale or wrong replica address",
                self.node_id, route.to
            )));
        }
        self.groups.read().get(&route.container).cloned().ok_or_else(|| {
            Status::not_found(format!(
                "this segment store (node {}) holds no replica of container {}",
                self.node_id, route.container
            ))
        })
    }
}

/// The gRPC service of incoming replication RPCs.
#[derive(Debug, Clone)]
pub struct ReplicaGrpc {
    pub groups: Arc<Groups>,
    /// Refuse callers that are not superusers (other stores): `--auth required`.
    pub auth_required: bool,
}

impl ReplicaGrpc {
    /// The tonic service (large messages: an append carries up to a few batches of 16 MiB),
    /// open to any caller the server's auth layer let through.
    pub fn service(groups: Arc<Groups>) -> pb::replica_service_server::ReplicaServiceServer<ReplicaGrpc> {
        Self::service_with(groups, false)
    }

    /// The tonic service; with `auth_required`, only nodes (a TLS client certificate of the
    /// cluster's CA, or a superuser token) may call it.
    pub fn service_with(
        groups: Arc<Groups>,
        auth_required: bool,
    ) -> pb::replica_service_server::ReplicaServiceServer<ReplicaGrpc> {
        pb::replica_service_server::ReplicaServiceServer::new(ReplicaGrpc { groups, auth_required })
            .max_decoding_message_size(256 * 1024 * 1024)
            .max_encoding_message_size(256 * 1024 * 1024)
    }
}

fn decode<T: DeserializeOwned>(json: &[u8]) -> Result<T, Status> {
    serde_json::from_slice(json).map_err(|e| Status::invalid_argument(format!("malformed replication message: {e}")))
}

fn reply<T: Serialize>(v: &T) -> Result<tonic::Response<pb::ReplicaReply>, Status> {
    let json = serde_json::to_vec(v).map_err(|e| Status::internal(e.to_string()))?;
    Ok(tonic::Response::new(pb::ReplicaReply { json: json.into() }))
}

/// An entry as it travels.
fn entry_to_wire(e: &Entry<ReplicaConfig>) -> Result<pb::Entry, serde_json::Error> {
    let (kind, body) = match &e.payload {
        EntryPayload::Blank => (0, Bytes::new()),
        EntryPayload::Normal(b) => (1, b.ops.clone()),
        EntryPayload::Membership(m) => (2, Bytes::from(serde_json::to_vec(m)?)),
    };
    Ok(pb::Entry {
        term: e.log_id.leader_id.term,
        leader: e.log_id.leader_id.node_id,
        index: e.log_id.index,
        kind,
        body,
    })
}

fn entry_from_wire(e: pb::Entry) -> Result<Entry<ReplicaConfig>, Status> {
    let log_id = LogId::new(CommittedLeaderId::new(e.term, e.leader), e.index);
    let payload = match e.kind {
        0 => EntryPayload::Blank,
        1 => EntryPayload::Normal(Batch::new(e.body)),
        2 => EntryPayload::Membership(decode(&e.body)?),
        k => return Err(Status::invalid_argument(format!("entry {log_id}: unknown kind {k}"))),
    };
    Ok(Entry { log_id, payload })
}

impl ReplicaGrpc {
    /// Only other segment stores take part in a container's replication.
    fn check<T>(&self, request: &Request<T>) -> Result<(), Status> {
        match request.extensions().get::<nadi_security::auth::Identity>() {
            Some(id) if id.superuser => Ok(()),
            None if !self.auth_required => Ok(()),
            Some(id) => Err(nadi_security::auth::typed(
                nadi_proto::errors::ErrorCode::PermissionDenied,
                format!("{} may not take part in replication: only nodes and superusers may", id.principal),
            )),
            None => Err(nadi_security::auth::typed(
                nadi_proto::errors::ErrorCode::Unauthenticated,
                "replication calls need a node's credentials".into(),
            )),
        }
    }
}

#[tonic::async_trait]
impl pb::replica_service_server::ReplicaService for ReplicaGrpc {
    async fn append_entries(
        &self,
        request: Request<pb::AppendEntriesRequest>,
    ) -> Result<tonic::Response<pb::ReplicaReply>, Status> {
        self.check(&request)?;
        let req = request.into_inner();
        let raft = self.groups.route(req.route.as_ref())?;
        let mut rpc: AppendEntriesRequest<ReplicaConfig> = decode(&req.json)?;
        if !rpc.entries.is_empty() {
            return Err(Status::invalid_argument("entries belong in the request's entries field"));
        }
        rpc.entries = req.entries.into_iter().map(entry_from_wire).collect::<Result<_, _>>()?;
        reply(&raft.append_entries(rpc).await)
    }

    async fn vote(&self, request: Request<pb::ReplicaRequest>) -> Result<tonic::Response<pb::ReplicaReply>, Status> {
        self.check(&request)?;
        let req = request.into_inner();
        let raft = self.groups.route(req.route.as_ref())?;
        let rpc: VoteRequest<NodeId> = decode(&req.json)?;
        reply(&raft.vote(rpc).await)
    }

    async fn install_snapshot(
        &self,
        request: Request<pb::ReplicaRequest>,
    ) -> Result<tonic::Response<pb::ReplicaReply>, Status> {
        self.check(&request)?;
        let req = request.into_inner();
        let raft = self.groups.route(req.route.as_ref())?;
        let mut rpc: InstallSnapshotRequest<ReplicaConfig> = decode(&req.json)?;
        if rpc.data.is_empty() {
            rpc.data = req.data.to_vec();
        }
        reply(&raft.install_snapshot(rpc).await)
    }

    async fn elect(&self, request: Request<pb::ElectRequest>) -> Result<tonic::Response<pb::ElectReply>, Status> {
        self.check(&request)?;
        let req = request.into_inner();
        let raft = self.groups.route(req.route.as_ref())?;
        raft.trigger().elect().await.map_err(|e| Status::unavailable(e.to_string()))?;
        Ok(tonic::Response::new(pb::ElectReply {}))
    }
}

/// Asks replica `to` of `container`'s group, at `addr`, to start an election at once (a leader
/// handing over to it).
pub async fn ask_to_elect(
    channels: &Channels,
    addr: &str,
    container: u32,
    to: NodeId,
    from: NodeId,
) -> Result<(), String> {
    let channel = channels.get(addr).map_err(|e| e.to_string())?;
    let route = Some(pb::Route { container, to, from });
    ReplicaServiceClient::new(channel).elect(pb::ElectRequest { route }).await.map_err(|s| s.message().to_owned())?;
    Ok(())
}

/// Lazily connected channels to other stores, by address; shared by all groups of a store
/// (the controller's kind, reused).
pub use nadi_controller::raft::network::Channels;

/// The network of one container's group: clients to the other replicas, at the addresses the
/// group's membership gives them (`BasicNode::addr`, the stores' gRPC URLs).
#[derive(Debug, Clone)]
pub struct GrpcNetwork {
    pub container: u32,
    pub from: NodeId,
    pub channels: Channels,
}

impl RaftNetworkFactory<ReplicaConfig> for GrpcNetwork {
    type Network = GrpcClient;

    async fn new_client(&mut self, target: NodeId, node: &BasicNode) -> GrpcClient {
        GrpcClient {
            route: pb::Route { container: self.container, to: target, from: self.from },
            addr: node.addr.clone(),
            channels: self.channels.clone(),
        }
    }
}

/// The client side of one group's RPCs to one replica.
#[derive(Debug)]
pub struct GrpcClient {
    route: pb::Route,
    addr: String,
    channels: Channels,
}

type Rpc<E> = RPCError<NodeId, BasicNode, RaftError<NodeId, E>>;

impl GrpcClient {
    fn client<E: std::error::Error>(&self) -> Result<ReplicaServiceClient<Channel>, Rpc<E>> {
        let channel = self.channels.get(&self.addr).map_err(|e| RPCError::Unreachable(Unreachable::new(&e)))?;
        Ok(ReplicaServiceClient::new(channel)
            .max_decoding_message_size(256 * 1024 * 1024)
            .max_encoding_message_size(256 * 1024 * 1024))
    }

    fn finish<Resp, E>(&self, result: Result<tonic::Response<pb::ReplicaReply>, Status>) -> Result<Resp, Rpc<E>>
    where
        Resp: DeserializeOwned,
        E: std::error::Error + DeserializeOwned,
    {
        let reply = match result {
            Ok(r) => r.into_inner(),
            Err(s) if s.code() == tonic::Code::Unavailable => return Err(RPCError::Unreachable(Unreachable::new(&s))),
            Err(s) => return Err(RPCError::Network(NetworkError::new(&s))),
        };
        let result: Result<Resp, RaftError<NodeId, E>> =
            serde_json::from_slice(&reply.json).map_err(|e| RPCError::Network(NetworkError::new(&e)))?;
        result.map_err(|e| RPCError::RemoteError(RemoteError::new(self.route.to, e)))
    }

    fn json<T: Serialize, E: std::error::Error>(v: &T) -> Result<Bytes, Rpc<E>> {
        serde_json::to_vec(v).map(Bytes::from).map_err(|e| RPCError::Network(NetworkError::new(&e)))
    }
}

impl RaftNetwork<ReplicaConfig> for GrpcClient {
    async fn append_entries(
        &mut self,
        mut rpc: AppendEntriesRequest<ReplicaConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<NodeId>, Rpc<openraft::error::Infallible>> {
        let entries = std::mem::take(&mut rpc.entries);
        let entries = entries
            .iter()
            .map(entry_to_wire)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| RPCError::Network(NetworkError::new(&e)))?;
        let json = Self::json(&rpc)?;
        let mut request = Request::new(pb::AppendEntriesRequest { route: Some(self.route), json, entries });
        request.set_timeout(option.hard_ttl());
        let result = self.client()?.append_entries(request).await;
        self.finish(result)
    }

    async fn install_snapshot(
        &mut self,
        mut rpc: InstallSnapshotRequest<ReplicaConfig>,
        option: RPCOption,
    ) -> Result<InstallSnapshotResponse<NodeId>, Rpc<InstallSnapshotError>> {
        // The chunk's bytes go raw, not as a JSON array of numbers.
        let data = std::mem::take(&mut rpc.data).into();
        let mut request = Request::new(pb::ReplicaRequest { route: Some(self.route), json: Self::json(&rpc)?, data });
        request.set_timeout(option.hard_ttl());
        let result = self.client()?.install_snapshot(request).await;
        self.finish(result)
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<NodeId>,
        option: RPCOption,
    ) -> Result<VoteResponse<NodeId>, Rpc<openraft::error::Infallible>> {
        let mut request = Request::new(pb::ReplicaRequest {
            route: Some(self.route),
            json: Self::json(&rpc)?,
            data: Default::default(),
        });
        request.set_timeout(option.hard_ttl());
        let result = self.client()?.vote(request).await;
        self.finish(result)
    }
}
