//! Raft RPCs between controller nodes over gRPC (`nadi.raft.v1.RaftService`), each message one
//! JSON-encoded openraft value.

use std::collections::HashMap;
use std::sync::Arc;

use nadi_proto::raft::v1 as pb;
use nadi_proto::raft::v1::raft_service_client::RaftServiceClient;
use nadi_security::channel::{Channel, ClientSecurity};
use openraft::error::{InstallSnapshotError, NetworkError, RPCError, RaftError, RemoteError, Unreachable};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse, VoteRequest,
    VoteResponse,
};
use openraft::{BasicNode, Raft};
use parking_lot::Mutex;
use serde::Serialize;
use serde::de::DeserializeOwned;
use tonic::{Request, Status};

use super::{NodeId, TypeConfig};

/// Lazily connected channels to other nodes, by address. Shared by Raft replication and by the
/// forwarding of client requests to the leader. Every channel presents this node's
/// credentials (its token, its TLS client certificate).
#[derive(Debug, Clone, Default)]
pub struct Channels {
    inner: Arc<Mutex<HashMap<String, Channel>>>,
    security: ClientSecurity,
}

impl Channels {
    /// Channels that present `security`.
    pub fn new(security: ClientSecurity) -> Channels {
        Channels { inner: Arc::default(), security }
    }

    /// What these channels present.
    pub fn security(&self) -> &ClientSecurity {
        &self.security
    }

    /// A channel to `addr` (`http://host:port` or `https://host:port`).
    pub fn get(&self, addr: &str) -> Result<Channel, nadi_security::channel::ChannelError> {
        let mut map = self.inner.lock();
        if let Some(c) = map.get(addr) {
            return Ok(c.clone());
        }
        let channel = self.security.wrap(
            self.security.endpoint(addr)?.connect_timeout(std::time::Duration::from_millis(500)).connect_lazy(),
        )?;
        map.insert(addr.to_owned(), channel.clone());
        Ok(channel)
    }
}

/// Creates clients to other controller nodes.
#[derive(Debug, Clone, Default)]
pub struct NetworkFactory {
    pub channels: Channels,
}

impl RaftNetworkFactory<TypeConfig> for NetworkFactory {
    type Network = NetworkClient;

    async fn new_client(&mut self, target: NodeId, node: &BasicNode) -> NetworkClient {
        NetworkClient { target, addr: node.addr.clone(), channels: self.channels.clone() }
    }
}

/// The client side of Raft RPCs to one node.
#[derive(Debug)]
pub struct NetworkClient {
    target: NodeId,
    addr: String,
    channels: Channels,
}

/// One method of the generated Raft client.
type RpcMethod = fn(
    RaftServiceClient<Channel>,
    Request<pb::RaftMessage>,
) -> futures::future::BoxFuture<'static, Result<tonic::Response<pb::RaftMessage>, Status>>;

impl NetworkClient {
    async fn call<Req, Resp, E>(
        &self,
        req: &Req,
        option: &RPCOption,
        method: RpcMethod,
    ) -> Result<Resp, RPCError<NodeId, BasicNode, RaftError<NodeId, E>>>
    where
        Req: Serialize,
        Resp: DeserializeOwned,
        E: std::error::Error + DeserializeOwned,
    {
        let json = serde_json::to_vec(req).map_err(|e| RPCError::Network(NetworkError::new(&e)))?;
        let channel = self.channels.get(&self.addr).map_err(|e| RPCError::Unreachable(Unreachable::new(&e)))?;
        let mut request = Request::new(pb::RaftMessage { json: json.into() });
        request.set_timeout(option.hard_ttl());
        let reply = match method(RaftServiceClient::new(channel), request).await {
            Ok(r) => r.into_inner(),
            Err(s) if s.code() == tonic::Code::Unavailable => return Err(RPCError::Unreachable(Unreachable::new(&s))),
            Err(s) => return Err(RPCError::Network(NetworkError::new(&s))),
        };
        let result: Result<Resp, RaftError<NodeId, E>> =
            serde_json::from_slice(&reply.json).map_err(|e| RPCError::Network(NetworkError::new(&e)))?;
        result.map_err(|e| RPCError::RemoteError(RemoteError::new(self.target, e)))
    }
}

impl RaftNetwork<TypeConfig> for NetworkClient {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<NodeId>, RPCError<NodeId, BasicNode, RaftError<NodeId>>> {
        self.call(&rpc, &option, |mut c, r| Box::pin(async move { c.append_entries(r).await })).await
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<InstallSnapshotResponse<NodeId>, RPCError<NodeId, BasicNode, RaftError<NodeId, InstallSnapshotError>>>
    {
        self.call(&rpc, &option, |mut c, r| Box::pin(async move { c.install_snapshot(r).await })).await
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<NodeId>,
        option: RPCOption,
    ) -> Result<VoteResponse<NodeId>, RPCError<NodeId, BasicNode, RaftError<NodeId>>> {
        self.call(&rpc, &option, |mut c, r| Box::pin(async move { c.vote(r).await })).await
    }
}

/// The server side of `nadi.raft.v1.RaftService`: hands each message to the local Raft node.
#[derive(Clone)]
pub struct RaftGrpc {
    pub raft: Raft<TypeConfig>,
    pub state: super::state_machine::StateMachine,
    /// Refuse callers that are not superusers (nodes): `--auth required`.
    pub auth_required: bool,
}

impl RaftGrpc {
    /// Only other controllers (a node certificate or a superuser token) take part in the
    /// group's Raft.
    fn check<T>(&self, request: &Request<T>) -> Result<(), Status> {
        let id = request.extensions().get::<nadi_security::auth::Identity>();
        match id {
            Some(id) if id.superuser => Ok(()),
            None if !self.auth_required => Ok(()),
            Some(id) => Err(nadi_security::auth::typed(
                nadi_proto::errors::ErrorCode::PermissionDenied,
                format!(
                    "{} may not take part in the controllers' Raft group: only nodes and superusers may",
                    id.principal
                ),
            )),
            None => Err(nadi_security::auth::typed(
                nadi_proto::errors::ErrorCode::Unauthenticated,
                "Raft calls need a node's credentials".into(),
            )),
        }
    }
}

impl std::fmt::Debug for RaftGrpc {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RaftGrpc").finish_non_exhaustive()
    }
}

fn decode<T: DeserializeOwned>(m: &pb::RaftMessage) -> Result<T, Status> {
    serde_json::from_slice(&m.json).map_err(|e| Status::invalid_argument(format!("malformed Raft message: {e}")))
}

fn encode<T: Serialize>(v: &T) -> Result<tonic::Response<pb::RaftMessage>, Status> {
    let json = serde_json::to_vec(v).map_err(|e| Status::internal(e.to_string()))?;
    Ok(tonic::Response::new(pb::RaftMessage { json: json.into() }))
}

#[tonic::async_trait]
impl pb::raft_service_server::RaftService for RaftGrpc {
    async fn append_entries(
        &self,
        request: Request<pb::RaftMessage>,
    ) -> Result<tonic::Response<pb::RaftMessage>, Status> {
        self.check(&request)?;
        let req: AppendEntriesRequest<TypeConfig> = decode(request.get_ref())?;
        encode(&self.raft.append_entries(req).await)
    }

    async fn vote(&self, request: Request<pb::RaftMessage>) -> Result<tonic::Response<pb::RaftMessage>, Status> {
        self.check(&request)?;
        let req: VoteRequest<NodeId> = decode(request.get_ref())?;
        encode(&self.raft.vote(req).await)
    }

    async fn install_snapshot(
        &self,
        request: Request<pb::RaftMessage>,
    ) -> Result<tonic::Response<pb::RaftMessage>, Status> {
        self.check(&request)?;
        let req: InstallSnapshotRequest<TypeConfig> = decode(request.get_ref())?;
        encode(&self.raft.install_snapshot(req).await)
    }

    async fn node_status(
        &self,
        _request: Request<pb::NodeStatusRequest>,
    ) -> Result<tonic::Response<pb::NodeStatusResponse>, Status> {
        self.check(&_request)?;
        let m = self.raft.metrics().borrow().clone();
        let (last_applied, state_digest) = {
            let a = self.state.applied().read();
            let json = serde_json::to_vec(&a.machine).map_err(|e| Status::internal(e.to_string()))?;
            (a.last_applied.map_or(0, |l| l.index), xxhash_rust::xxh64::xxh64(&json, 0))
        };
        let members = m.membership_config.membership().nodes().map(|(id, n)| (*id, n.addr.clone())).collect();
        Ok(tonic::Response::new(pb::NodeStatusResponse {
            id: m.id,
            leader: m.current_leader,
            term: m.current_term,
            last_applied,
            state_digest,
            members,
        }))
    }
}
