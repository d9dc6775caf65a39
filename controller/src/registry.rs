//! `nadi.raft.v1.SegmentStoreRegistry`: segment stores announce themselves and learn their
//! containers.
//!
//! A heartbeat that changes nothing (same store, same endpoint, containers already assigned) is
//! answered from the applied state without a Raft write; only a new store or a moved endpoint is
//! proposed. When each store was last heard from, and the segment loads it reported (for the
//! auto-scaler), are kept in memory on the node that answered (the leader, since requests are
//! forwarded there).
//!
//! Placed stores (a `replica_id`): every heartbeat the leader also works out the replica sets
//! it wants ([`ClusterState::placement`](crate::cluster::ClusterState::placement)) from the
//! stores heard from within `--store-timeout`, proposes them if they changed, and answers each
//! store with the sets that include it.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use nadi_proto::raft::v1 as pb;
use parking_lot::Mutex;
use tonic::{Request, Response, Status};

use crate::MetaError;
use crate::autoscale::LoadBoard;
use crate::cluster::ClusterCommand;
use crate::meta::MetaStore;

/// How the controllers place the replicas of placed stores.
#[derive(Debug, Clone, Copy)]
pub struct Placement {
    /// Replicas per container (`--replication-factor`). The leader applies its own setting:
    /// change it on every controller (a rolling restart).
    pub replication_factor: u32,
    /// A store not heard from for this long has its replicas moved to other stores, where a
    /// store is free to take them (`--store-timeout`).
    pub store_timeout: Duration,
}

impl Default for Placement {
    fn default() -> Self {
        Placement { replication_factor: 1, store_timeout: Duration::from_secs(60) }
    }
}

/// The registry service of one controller node.
#[derive(Debug, Clone)]
pub struct Registry {
    meta: MetaStore,
    last_seen: Arc<Mutex<BTreeMap<String, Instant>>>,
    /// When this node last worked out a placement: after a gap (it was not the leader), the
    /// stores' `last_seen` are stale and restart from now.
    last_placed: Arc<Mutex<Option<Instant>>>,
    loads: LoadBoard,
    placement: Placement,
}

impl Registry {
    /// The grants' version, and the grants as JSON if a store holding `known` needs them.
    fn grants_for(&self, known: u64) -> (u64, bytes::Bytes) {
        self.meta.read_acl(|acl| {
            let json = if acl.version() != known { serde_json::to_vec(acl).unwrap_or_default() } else { Vec::new() };
            (acl.version(), json.into())
        })
    }

    /// A registry over `meta` that keeps the stores' load reports on `loads`.
    pub fn new(meta: MetaStore, loads: LoadBoard) -> Registry {
        Registry {
            meta,
            last_seen: Arc::default(),
            last_placed: Arc::default(),
            loads,
            placement: Placement::default(),
        }
    }

    /// With `placement` instead of the default.
    pub fn with_placement(mut self, placement: Placement) -> Registry {
        self.placement = placement;
        self
    }

    /// The placed stores heard from within the store timeout (all of them, for a store timeout
    /// after this node started placing).
    fn usable_stores(&self) -> BTreeSet<String> {
        let now = Instant::now();
        let mut last_placed = self.last_placed.lock();
        let mut seen = self.last_seen.lock();
        let fresh_start = last_placed.is_none_or(|t| now.duration_since(t) > Duration::from_secs(5));
        *last_placed = Some(now);
        self.meta.read_cluster(|c| {
            c.stores
                .iter()
                .filter(|(_, s)| s.replica_id.is_some())
                .filter(|(id, _)| {
                    let at = seen.entry((*id).clone()).or_insert(now);
                    if fresh_start {
                        *at = (*at).max(now);
                    }
                    now.duration_since(*at) < self.placement.store_timeout
                })
                .map(|(id, _)| id.clone())
                .collect()
        })
    }

    /// Brings the replicated placement up to date (leader only: heartbeats are forwarded to
    /// it): the replication factor, containers whose group started, and the replica sets.
    async fn place(&self, req: &pb::HeartbeatRequest) -> Result<(), MetaError> {
        let factor = ClusterCommand::SetReplicationFactor { factor: self.placement.replication_factor };
        if !self.meta.read_cluster(|c| c.is_noop(&factor)) {
            tracing::info!(factor = self.placement.replication_factor, "replication factor");
            self.meta.propose_cluster(factor).await?;
        }
        let started = ClusterCommand::Started { containers: req.leading_containers.clone() };
        if !self.meta.read_cluster(|c| c.is_noop(&started)) {
            self.meta.propose_cluster(started).await?;
        }
        let usable = self.usable_stores();
        let replicas = self.meta.read_cluster(|c| c.placement(&usable));
        if !replicas.is_empty() {
            tracing::info!(?replicas, "placing container replicas");
            self.meta.propose_cluster(ClusterCommand::Place { replicas }).await?;
        }
        Ok(())
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
    if !req.pravega_endpoint.is_empty() && !is_host_port(&req.pravega_endpoint) {
        return Err(MetaError::InvalidArgument(format!(
            "segment store Pravega endpoint {:?} must be HOST:PORT",
            req.pravega_endpoint
        )));
    }
    if let Some(c) =
        req.leading_containers.iter().chain(req.led_groups.iter().map(|g| &g.container)).find(|c| **c >= req.containers)
    {
        return Err(MetaError::InvalidArgument(format!(
            "segment store {} reports leading container {c}, but it has {} containers",
            req.store_id, req.containers
        )));
    }
    Ok(())
}

/// `HOST:PORT` with a non-empty host and a port (an IPv6 host in brackets).
fn is_host_port(s: &str) -> bool {
    s.len() <= 256
        && s.rsplit_once(':').is_some_and(|(host, port)| {
            !host.is_empty()
                && !host.contains('/')
                && !host.contains(char::is_whitespace)
                && port.parse::<u16>().is_ok()
        })
}

#[tonic::async_trait]
impl pb::segment_store_registry_server::SegmentStoreRegistry for Registry {
    async fn heartbeat(&self, req: Request<pb::HeartbeatRequest>) -> Result<Response<pb::HeartbeatResponse>, Status> {
        crate::access::require_superuser(&self.meta, &req, "register a segment store")?;
        let req = req.into_inner();
        validate(&req)?;
        let now_ms = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0);
        let cmd = ClusterCommand::RegisterStore {
            store_id: req.store_id.clone(),
            endpoint: req.endpoint.clone(),
            containers: req.containers,
            now_ms,
            replica_id: (req.replica_id != 0).then_some(req.replica_id),
        };
        if !self.meta.read_cluster(|c| c.is_noop(&cmd)) {
            tracing::info!(store = %req.store_id, endpoint = %req.endpoint, containers = req.containers, "segment store registers");
            self.meta.propose_cluster(cmd).await?;
        }
        self.last_seen.lock().insert(req.store_id.clone(), Instant::now());
        self.loads.update(&req.loads, &req.load_windows_ms);
        let mut req = req;
        if req.replica_id != 0 {
            // A placed store leads only containers placed on it (a leader being removed from a
            // set leads until the change commits, and is not sent clients meanwhile).
            let (leading, stray, groups) = self.meta.read_cluster(|c| {
                let placed_here =
                    |container: &u32| c.replicas.get(container).is_some_and(|m| m.contains(&req.store_id));
                let (leading, stray): (Vec<u32>, Vec<u32>) =
                    req.leading_containers.iter().partition(|x| placed_here(x));
                let groups: Vec<_> = req.led_groups.iter().filter(|g| placed_here(&g.container)).cloned().collect();
                (leading, stray, groups)
            });
            if !stray.is_empty() {
                tracing::warn!(store = %req.store_id, containers = ?stray, "a store reports leading containers not placed on it; not sending clients there");
            }
            (req.leading_containers, req.led_groups) = (leading, groups);
        }
        self.meta.note_leaders(&req.store_id, &req.leading_containers, req.replicated);
        self.meta.note_groups(&req.led_groups);
        self.meta.note_pravega_endpoint(&req.store_id, &req.pravega_endpoint);
        if req.replica_id != 0 {
            self.place(&req).await?;
        }
        let mut response = self.meta.read_cluster(|c| {
            let member = |id: &String| {
                c.stores
                    .get(id)
                    .and_then(|s| s.replica_id.map(|rid| pb::ReplicaMember { id: rid, endpoint: s.endpoint.clone() }))
            };
            let replicas = c
                .replicas
                .iter()
                .filter(|(_, m)| m.contains(&req.store_id))
                .map(|(container, m)| pb::ContainerReplicas {
                    container: *container,
                    members: m.iter().filter_map(member).collect(),
                    start: !c.started.contains(container),
                })
                .collect();
            pb::HeartbeatResponse {
                assigned_containers: c.containers_of(&req.store_id),
                containers: c.containers,
                replicas,
                acl_version: 0,
                acl: Default::default(),
            }
        });
        // The grants go to a store whose copy is not current (segment stores check appends
        // and reads against them).
        (response.acl_version, response.acl) = self.grants_for(req.acl_version);
        Ok(Response::new(response))
    }

    async fn get_grants(&self, req: Request<pb::GetGrantsRequest>) -> Result<Response<pb::GetGrantsResponse>, Status> {
        crate::access::require_superuser(&self.meta, &req, "read the grants")?;
        let (acl_version, acl) = self.grants_for(req.get_ref().acl_version);
        Ok(Response::new(pb::GetGrantsResponse { acl_version, acl }))
    }
}

#[cfg(test)]
mod tests {
    use nadi_proto::raft::v1::segment_store_registry_server::SegmentStoreRegistry;

    use super::*;

    async fn registry(dir: &std::path::Path, replication_factor: u32) -> Registry {
        let meta = MetaStore::open_single_node(dir).await.unwrap();
        Registry::new(meta, LoadBoard::default())
            .with_placement(Placement { replication_factor, store_timeout: Duration::from_secs(60) })
    }

    fn beat(store: &str, replica_id: u64, leading: &[u32]) -> pb::HeartbeatRequest {
        pb::HeartbeatRequest {
            store_id: store.into(),
            endpoint: format!("http://{store}:1"),
            containers: 2,
            replicated: true,
            replica_id,
            leading_containers: leading.to_vec(),
            ..Default::default()
        }
    }

    /// Issue 20: a store's Pravega segment endpoint is checked, kept in memory and forgotten
    /// when the store stops reporting one.
    #[tokio::test]
    async fn pravega_endpoints_are_checked_and_kept() {
        let dir = tempfile::tempdir().unwrap();
        let r = registry(dir.path(), 1).await;
        let mut b = pb::HeartbeatRequest {
            store_id: "s1".into(),
            endpoint: "http://s1:1".into(),
            containers: 2,
            ..Default::default()
        };
        for bad in ["s1", "s1:", ":9", "s1:99999", "http://s1:9", "a b:9"] {
            b.pravega_endpoint = bad.into();
            let err = r.heartbeat(Request::new(b.clone())).await.unwrap_err();
            assert_eq!(err.code(), tonic::Code::InvalidArgument, "{bad:?}: {err:?}");
        }
        assert_eq!(r.meta.pravega_endpoint_of("s1"), None);
        for good in ["s1:9", "[::1]:9", "10.0.0.1:65535"] {
            b.pravega_endpoint = good.into();
            r.heartbeat(Request::new(b.clone())).await.unwrap();
            assert_eq!(r.meta.pravega_endpoint_of("s1").as_deref(), Some(good));
        }
        b.pravega_endpoint = String::new();
        r.heartbeat(Request::new(b)).await.unwrap();
        assert_eq!(r.meta.pravega_endpoint_of("s1"), None);
    }

    /// Issue 17, acceptance 7 (the registration part): a placed store is told the replica sets
    /// that include it, a report of leading a container it does not have is refused, and one
    /// of leading a container not placed on it does not send clients there.
    #[tokio::test]
    async fn placed_stores_get_their_replica_sets_and_cannot_claim_other_containers() {
        let dir = tempfile::tempdir().unwrap();
        let r = registry(dir.path(), 2).await;
        // One store: fewer than the factor, so nothing is placed yet.
        let a = r.heartbeat(Request::new(beat("a", 11, &[]))).await.unwrap().into_inner();
        assert!(a.replicas.is_empty() && a.assigned_containers.is_empty());
        let b = r.heartbeat(Request::new(beat("b", 12, &[]))).await.unwrap().into_inner();
        assert_eq!(b.replicas.len(), 2, "both containers on both stores: {b:?}");
        for c in &b.replicas {
            let ids: Vec<u64> = c.members.iter().map(|m| m.id).collect();
            assert!(ids.contains(&11) && ids.contains(&12) && c.start, "{c:?}");
        }
        // A third store receives one replica (2 + 2 + 0 is not even) and may not claim to lead
        // a container not placed on it.
        let c = r.heartbeat(Request::new(beat("c", 13, &[]))).await.unwrap().into_inner();
        assert_eq!(c.replicas.len(), 1, "{c:?}");
        let theirs = if c.replicas[0].container == 0 { 1 } else { 0 };
        let before = r.meta.read_cluster(|c| c.clone());
        r.heartbeat(Request::new(beat("c", 13, &[theirs]))).await.unwrap();
        assert_eq!(r.meta.leader_of(theirs), None, "a stray claim sends no client to c");
        let err = r.heartbeat(Request::new(beat("c", 13, &[7]))).await.unwrap_err();
        assert_eq!(err.code(), tonic::Code::InvalidArgument, "{err:?}");
        assert_eq!(r.meta.read_cluster(|c| c.clone()), before, "nothing changed");
        // A real leader's claim is recorded, and starts the container for good.
        let leader = before.replicas[&theirs][0].clone();
        let rid = before.stores[&leader].replica_id.unwrap();
        r.heartbeat(Request::new(beat(&leader, rid, &[theirs]))).await.unwrap();
        assert_eq!(r.meta.leader_of(theirs), Some(leader.clone()));
        assert!(r.meta.read_cluster(|c| c.started.contains(&theirs)));
        let again = r.heartbeat(Request::new(beat(&leader, rid, &[theirs]))).await.unwrap().into_inner();
        assert!(again.replicas.iter().any(|c| c.container == theirs && !c.start), "{again:?}");
        // A single-copy store cannot join a placed cluster.
        let err = r.heartbeat(Request::new(beat("d", 0, &[]))).await.unwrap_err();
        assert_eq!(err.code(), tonic::Code::InvalidArgument, "{err:?}");
    }
}
