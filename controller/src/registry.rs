//! `nadi.raft.v1.SegmentStoreRegistry`: segment stores announce themselves and learn their
//! containers.
//!
//! A heartbeat that changes nothing (same store, same endpoint, containers already assigned) is
//! answered from the applied state without a Raft write; only a new store or a moved endpoint is
//! proposed. When each store was last heard from, and the segment loads it reported (for the
//! auto-scaler), are kept in memory on the node that answered (the leader, since requests are
//! forwarded there).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use nadi_proto::raft::v1 as pb;
use parking_lot::Mutex;
use tonic::{Request, Response, Status};

use crate::MetaError;
use crate::autoscale::LoadBoard;
use crate::cluster::ClusterCommand;
use crate::meta::MetaStore;

/// The registry service of one controller node.
#[derive(Debug, Clone)]
pub struct Registry {
    meta: MetaStore,
    last_seen: Arc<Mutex<BTreeMap<String, Instant>>>,
    loads: LoadBoard,
}

impl Registry {
    /// A registry over `meta` that keeps the stores' load reports on `loads`.
    pub fn new(meta: MetaStore, loads: LoadBoard) -> Registry {
        Registry { meta, last_seen: Arc::default(), loads }
    }

    /// Seconds since each store was last heard from by this node.
    pub fn last_seen_secs(&self) -> BTreeMap<String, f64> {
        self.last_seen.lock().iter().map(|(k, v)| (k.clone(), v.elapsed().as_secs_f64())).collect()
    }

    /// The gRPC server of this registry.
    pub fn into_server(self) -> pb::segment_store_registry_server::SegmentStoreRegistryServer<Registry> {
        pb::segment_store_registry_server::SegmentStoreRegistryServer::new(self)
    }
}

fn validate(req: &pb::HeartbeatRequest) -> Result<(), MetaError> {
    let id_ok = !req.store_id.is_empty()
        && req.store_id.len() <= 128
        && req.store_id.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.');
    if !id_ok {
        return Err(MetaError::InvalidArgument(format!(
            "segment store id {:?} must be 1-128 characters of [A-Za-z0-9._-]",
            req.store_id
        )));
    }
    let endpoint_ok = (req.endpoint.starts_with("http://") || req.endpoint.starts_with("https://"))
        && req.endpoint.parse::<http::Uri>().is_ok_and(|u| u.authority().is_some());
    if !endpoint_ok {
        return Err(MetaError::InvalidArgument(format!(
            "segment store endpoint {:?} must be a URL like http://host:port",
            req.endpoint
        )));
    }
    Ok(())
}

#[tonic::async_trait]
impl pb::segment_store_registry_server::SegmentStoreRegistry for Registry {
    async fn heartbeat(&self, req: Request<pb::HeartbeatRequest>) -> Result<Response<pb::HeartbeatResponse>, Status> {
        let req = req.into_inner();
        validate(&req)?;
        let now_ms = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0);
        let cmd = ClusterCommand::RegisterStore {
            store_id: req.store_id.clone(),
            endpoint: req.endpoint.clone(),
            containers: req.containers,
            now_ms,
        };
        if !self.meta.read_cluster(|c| c.is_noop(&cmd)) {
            tracing::info!(store = %req.store_id, endpoint = %req.endpoint, containers = req.containers, "segment store registers");
            self.meta.propose_cluster(cmd).await?;
        }
        self.last_seen.lock().insert(req.store_id.clone(), Instant::now());
        self.loads.update(&req.loads, &req.load_windows_ms);
        self.meta.note_leaders(&req.store_id, &req.leading_containers, req.replicated);
        let (assigned_containers, containers) =
            self.meta.read_cluster(|c| (c.containers_of(&req.store_id), c.containers));
        Ok(Response::new(pb::HeartbeatResponse { assigned_containers, containers }))
    }
}
