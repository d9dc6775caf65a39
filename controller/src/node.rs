//! One controller node, assembled: its Raft member, metadata, gRPC services and the duties it
//! has while it leads. `nadi standalone` and `nadi controller` both run this.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use nadi_proto::controller::v1::controller_service_server::ControllerServiceServer;

use crate::MetaError;
use crate::autoscale::{LoadBoard, Requests, ScalerSettings};
use crate::meta::MetaStore;
use crate::raft::{NodeId, RaftNode, RaftSettings};
use crate::reader_group_service::ReaderGroupSvc;
use crate::registry::Registry;
use crate::service::Controller;
use crate::txn_service::TxnService;

/// How often the leader sweeps transactions (expired leases, interrupted commits and aborts).
pub const TXN_SWEEP_EVERY: Duration = Duration::from_millis(500);

/// What a controller node needs to start.
#[derive(Debug, Clone)]
pub struct NodeConfig {
    /// This node's id in the group.
    pub id: NodeId,
    /// Its Raft data (`controller/` under the data dir).
    pub dir: PathBuf,
    /// Every member of the group: id → gRPC URL (`http://host:port`), this node included.
    pub members: BTreeMap<NodeId, String>,
    pub settings: RaftSettings,
    /// This node's admin HTTP URL, if it serves one (reported by cluster info).
    pub http_address: Option<String>,
    /// A reader of a reader group that has not synced for this long is declared offline (by
    /// the leader) and its segments go back to the group.
    pub reader_timeout: Duration,
    /// The auto-scaler's timing and limits.
    pub scaler: ScalerSettings,
    /// How often the leader applies retention policies (see [`crate::retention`]).
    pub retention_every: Duration,
    /// Replica placement of placed segment stores (see [`crate::registry::Placement`]).
    pub placement: crate::registry::Placement,
    /// Who callers are (`--auth`, tokens); the services check their permissions.
    pub auth: std::sync::Arc<nadi_security::auth::Authenticator>,
}

/// How often the leader measures reader groups' lag (`nadi_reader_group_lag_bytes`).
pub const LAG_EVERY: Duration = Duration::from_secs(2);

/// Default of [`NodeConfig::reader_timeout`].
pub const DEFAULT_READER_TIMEOUT: Duration = Duration::from_secs(30);

/// A running controller node.
#[derive(Debug, Clone)]
pub struct ControllerNode {
    pub meta: MetaStore,
    pub controller: Controller,
    pub registry: Registry,
    pub reader_groups: ReaderGroupSvc,
    pub auth: std::sync::Arc<nadi_security::auth::Authenticator>,
}

impl ControllerNode {
    /// Registers this node's Raft metrics (`nadi_raft_*`) on `registry`, for the admin API's
    /// `/metrics`.
    pub fn register_metrics(&self, registry: &mut prometheus_client::registry::Registry) {
        let raft = self.meta.node().raft.clone();
        registry.register_collector(Box::new(crate::raft::prom::RaftCollector::new(raft)));
        self.reader_groups.lag_gauges().register(registry);
        crate::workflow::register(registry);
    }

    /// Opens the node's storage, joins (or forms) the group, and starts its leader duties.
    pub async fn start(cfg: NodeConfig) -> Result<ControllerNode, MetaError> {
        let raft = RaftNode::start(cfg.id, &cfg.dir, &cfg.members, &cfg.settings).await?;
        let meta = MetaStore::new(raft);
        meta.set_auth_required(cfg.auth.mode() == nadi_security::auth::AuthMode::Required);
        let controller = Controller::new(meta.clone()).with_http_address(cfg.http_address.unwrap_or_default());
        let loads = LoadBoard::default();
        let registry = Registry::new(meta.clone(), loads.clone()).with_placement(cfg.placement);
        let reader_groups = ReaderGroupSvc::new(meta.clone());
        let node = ControllerNode { meta, controller, registry, reader_groups, auth: cfg.auth };
        tokio::spawn(node.clone().leader_duties());
        tokio::spawn(node.clone().txn_sweeper());
        tokio::spawn(node.clone().autoscaler(loads, cfg.scaler));
        tokio::spawn(node.reader_groups.clone().liveness_duty(cfg.reader_timeout));
        tokio::spawn(node.reader_groups.clone().lag_duty(LAG_EVERY));
        tokio::spawn(node.clone().retention_duty(cfg.retention_every));
        Ok(node)
    }

    /// The public and internal gRPC services, already wrapped so that client requests run on
    /// the leader. Add them to one tonic server.
    pub fn grpc_routes(&self) -> tonic::service::Routes {
        let mut routes = tonic::service::Routes::builder();
        routes
            .add_service(ControllerServiceServer::new(self.controller.clone()))
            .add_service(TxnService::new(self.controller.clone()).into_server())
            .add_service(self.reader_groups.clone().into_server())
            .add_service(self.registry.clone().into_server())
            .add_service(self.meta.node().raft_service());
        routes.routes()
    }

    /// The layer that sends client requests to the leader (wrap [`Self::grpc_routes`] in it).
    /// The layer that authenticates every call (put it outside [`Self::forward_layer`], so a
    /// follower refuses a bad token before forwarding anything).
    pub fn auth_layer(&self) -> nadi_security::auth::AuthLayer {
        nadi_security::auth::AuthLayer::new(self.auth.clone())
    }

    pub fn forward_layer(&self) -> crate::raft::forward::ForwardToLeaderLayer {
        self.meta.node().forward_layer()
    }

    /// Whenever this node becomes the leader, it finishes the workflows a previous leader left
    /// half done (retrying until they succeed or leadership moves on).
    async fn leader_duties(self) {
        let id = self.meta.node().id;
        let mut metrics = self.meta.node().raft.metrics();
        let mut was_leader = false;
        loop {
            let is_leader = metrics.borrow_and_update().current_leader == Some(id);
            if is_leader && !was_leader {
                tracing::info!(id, "this controller is now the leader; resuming unfinished workflows");
                loop {
                    // Read only after confirming leadership and applying everything committed.
                    let ready = self.meta.node().raft.ensure_linearizable().await;
                    let resumed = match ready {
                        Ok(_) => match self.controller.resume().await {
                            // Then commits and aborts a previous leader left half done.
                            Ok(()) => self.controller.sweep_txns().await,
                            Err(e) => Err(e),
                        },
                        Err(e) => Err(MetaError::Unavailable(e.to_string())),
                    };
                    match resumed {
                        Ok(()) => break,
                        Err(e) => {
                            tracing::warn!(error = %e, "resuming workflows failed; retrying");
                            tokio::time::sleep(Duration::from_secs(1)).await;
                            if metrics.borrow().current_leader != Some(id) {
                                break;
                            }
                        }
                    }
                }
            }
            was_leader = is_leader;
            if metrics.changed().await.is_err() {
                return; // Raft stopped.
            }
        }
    }

    /// Waits for `tick`'s next tick; true if this node then leads and has confirmed it, so
    /// that it acts on everything committed before (the periodic leader duties below).
    async fn tick_as_leader(&self, tick: &mut tokio::time::Interval) -> bool {
        tick.tick().await;
        let node = self.meta.node();
        node.raft.metrics().borrow().current_leader == Some(node.id) && node.raft.ensure_linearizable().await.is_ok()
    }

    /// While this node leads: every tick, split hot segments and merge cold ones of streams
    /// with a load policy (see [`crate::autoscale`]). What was requested when is this leader's
    /// memory; a new leader starts afresh (segments' cooldowns are in the metadata).
    async fn autoscaler(self, loads: LoadBoard, settings: ScalerSettings) {
        let mut tick = ticker(settings.tick);
        let mut requests = Requests::new();
        loop {
            if !self.tick_as_leader(&mut tick).await {
                requests.clear();
                continue;
            }
            if let Err(e) = self.controller.autoscale_round(&loads, &settings, &mut requests).await {
                tracing::debug!(error = %e, "auto-scaling round incomplete; the next one retries");
            }
        }
    }

    /// While this node leads: every `every`, record the tail cuts of streams with a retention
    /// policy and truncate those that hold more than the policy keeps.
    async fn retention_duty(self, every: Duration) {
        let mut history = crate::retention::RetentionHistory::default();
        let mut tick = ticker(every.max(Duration::from_millis(10)));
        loop {
            if !self.tick_as_leader(&mut tick).await {
                history.clear();
                continue;
            }
            // The clock of append times (a test may set it), as retention compares with them.
            self.controller.apply_retention(&mut history, nadi_proto::clock::now_ms()).await;
        }
    }

    /// While this node leads: every [`TXN_SWEEP_EVERY`], abort open transactions whose lease
    /// ran out and finish interrupted commits and aborts. Followers do nothing (their state is
    /// the leader's, applied from the log).
    async fn txn_sweeper(self) {
        let mut tick = ticker(TXN_SWEEP_EVERY);
        loop {
            if !self.tick_as_leader(&mut tick).await {
                continue;
            }
            if let Err(e) = self.controller.sweep_txns().await {
                tracing::debug!(error = %e, "transaction sweep incomplete; next pass retries");
            }
        }
    }
}

/// An interval that, when a duty overruns, waits a whole period before the next tick.
fn ticker(every: Duration) -> tokio::time::Interval {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick
}
