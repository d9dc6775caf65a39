//! The gRPC API `nadi.controller.v1.ReaderGroupService` over the replicated reader-group state
//! ([`crate::reader_group`]), and the leader's liveness check of readers.
//!
//! Like every client service it runs on the leader (the forwarding layer sends requests there),
//! so its reads are linearizable. A `ReaderSync` that would change nothing (a heartbeat with
//! unchanged positions) is answered without a Raft write: the command is first applied to a
//! copy of the group, and proposed only if the copy differs.
//!
//! Liveness lives in memory on the leader: the time of each reader's last sync. A reader not
//! heard from for `reader_timeout` is declared offline through the Raft log. A new leader
//! starts every reader's clock afresh when it takes over, so a leader change never declares a
//! reader dead early; it can only delay the verdict by one timeout.

use nadi_security::acl::{Permission, Resource};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use nadi_proto::SegmentId;
use nadi_proto::controller::v1 as pb;
use nadi_proto::names::{segment_name, validate_named, validate_scope};
use nadi_proto::segment::v1 as seg;
use nadi_proto::segment::v1::segment_store_client::SegmentStoreClient;
use parking_lot::Mutex;
use pb::reader_group_service_server::ReaderGroupService;
use tonic::{Request, Response, Status};

use crate::MetaError;
use crate::meta::MetaStore;
use crate::raft::network::Channels;
use crate::reader_group::{GroupState, Positions, ReaderGroupCommand, ReaderGroups, ResetTarget, SegRef};

fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}

/// A reader, by scope, group and id.
pub type ReaderKey = (String, String, String);

/// When each reader last synced, as seen by this node while it leads.
#[derive(Debug, Default)]
pub struct Liveness {
    last_seen: Mutex<HashMap<ReaderKey, Instant>>,
}

impl Liveness {
    /// Records a sync of `key` at `now`.
    pub fn touch(&self, key: ReaderKey, now: Instant) {
        self.last_seen.lock().insert(key, now);
    }

    /// Forgets everything (this node stopped leading; the next leader starts afresh).
    pub fn clear(&self) {
        self.last_seen.lock().clear();
    }

    /// The members (`readers`, from the replicated state) not heard from for `timeout` at
    /// `now`. A member seen for the first time starts its clock at `now`; entries of readers
    /// that are no longer members are dropped.
    pub fn expired(&self, readers: &[ReaderKey], now: Instant, timeout: Duration) -> Vec<ReaderKey> {
        let mut seen = self.last_seen.lock();
        seen.retain(|k, _| readers.contains(k));
        let mut out = Vec::new();
        for k in readers {
            let last = *seen.entry(k.clone()).or_insert(now);
            if now.saturating_duration_since(last) > timeout {
                out.push(k.clone());
            }
        }
        out
    }
}

/// The reader-group service of a controller node.
#[derive(Debug, Clone)]
pub struct ReaderGroupSvc {
    meta: MetaStore,
    channels: Channels,
    liveness: Arc<Liveness>,
    lag: LagGauges,
}

/// Label of a reader group's gauges: `scope/group`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, prometheus_client::encoding::EncodeLabelSet)]
pub struct GroupLabel {
    group: String,
}

/// How far each reader group is behind its streams' tails, as the leader last measured it
/// (`nadi_reader_group_*`; absent on followers).
#[derive(Debug, Clone, Default)]
pub struct LagGauges {
    /// Bytes between the group's positions and its segments' lengths.
    bytes: prometheus_client::metrics::family::Family<GroupLabel, prometheus_client::metrics::gauge::Gauge>,
    /// The same in events, estimated per segment from its mean event size.
    events: prometheus_client::metrics::family::Family<GroupLabel, prometheus_client::metrics::gauge::Gauge>,
    /// Segments with bytes the group has not read yet.
    segments: prometheus_client::metrics::family::Family<GroupLabel, prometheus_client::metrics::gauge::Gauge>,
    /// Readers in the group.
    readers: prometheus_client::metrics::family::Family<GroupLabel, prometheus_client::metrics::gauge::Gauge>,
}

impl LagGauges {
    /// Registers the gauges on `registry`.
    pub fn register(&self, registry: &mut prometheus_client::registry::Registry) {
        registry.register(
            "nadi_reader_group_lag_bytes",
            "Bytes a reader group has not read yet: its segments' lengths minus its positions (leader only)",
            self.bytes.clone(),
        );
        registry.register(
            "nadi_reader_group_lag_events",
            "Events a reader group has not read yet, per segment its unread bytes divided by the segment's mean event size (exact for events of one size; leader only)",
            self.events.clone(),
        );
        registry.register(
            "nadi_reader_group_lag_segments",
            "Segments with bytes a reader group has not read yet (leader only)",
            self.segments.clone(),
        );
        registry.register("nadi_reader_group_readers", "Readers in a reader group (leader only)", self.readers.clone());
    }

    fn clear(&self) {
        self.bytes.clear();
        self.events.clear();
        self.segments.clear();
        self.readers.clear();
    }
}

/// Events in `bytes` unread bytes of a segment of `length` bytes holding `events` events in
/// all: by its mean event size (exact when every event has the same size), rounded.
fn events_in(bytes: u64, length: u64, events: u64) -> u64 {
    if length == 0 {
        return 0;
    }
    ((bytes as u128 * events as u128 + length as u128 / 2) / length as u128) as u64
}

fn names(scope: &str, group: &str) -> Result<(), MetaError> {
    validate_scope(scope)?;
    validate_named("reader group", group)?;
    Ok(())
}

fn positions_from(list: &[pb::SegmentPosition]) -> Positions {
    list.iter().map(|p| (SegRef::new(p.stream.clone(), SegmentId::from_packed(p.segment_id)), p.offset)).collect()
}

fn position_pb(seg: &SegRef, offset: u64) -> pb::SegmentPosition {
    pb::SegmentPosition { stream: seg.stream.clone(), segment_id: seg.id.packed(), offset }
}

fn progress(seg: &SegRef, offset: u64, lengths: &HashMap<SegRef, u64>) -> pb::SegmentProgress {
    pb::SegmentProgress { position: Some(position_pb(seg, offset)), segment_length: lengths.get(seg).copied() }
}

/// The wire form of a group; `lengths` are the segment lengths the stores reported.
pub fn group_info(scope: &str, name: &str, g: &GroupState, lengths: &HashMap<SegRef, u64>) -> pb::ReaderGroupInfo {
    pb::ReaderGroupInfo {
        scope: scope.to_owned(),
        group: name.to_owned(),
        streams: g.streams.clone(),
        generation: g.generation,
        readers: g
            .readers
            .iter()
            .map(|(id, r)| pb::ReaderInfo {
                reader_id: id.clone(),
                segments: r.segments.iter().map(|(s, o)| progress(s, *o, lengths)).collect(),
                joined_at_ms: r.joined_at_ms,
            })
            .collect(),
        unassigned: g.unassigned.iter().map(|(s, o)| progress(s, *o, lengths)).collect(),
        pending_checkpoint: g.pending_checkpoint.as_ref().map(|p| p.name.clone()).unwrap_or_default(),
        checkpoint_waiting_for: g
            .pending_checkpoint
            .as_ref()
            .map(|p| p.waiting.iter().cloned().collect())
            .unwrap_or_default(),
        checkpoints: g.checkpoints.iter().map(|c| c.name.clone()).collect(),
        created_at_ms: g.created_at_ms,
        subscriber: g.subscriber,
    }
}

fn checkpoint_info(g: &GroupState, name: &str) -> Option<pb::CheckpointInfo> {
    if let Some(c) = g.checkpoint(name) {
        return Some(pb::CheckpointInfo {
            name: name.to_owned(),
            complete: true,
            positions: c.positions.iter().map(|(s, o)| position_pb(s, *o)).collect(),
            waiting_for: vec![],
        });
    }
    g.pending_checkpoint.as_ref().filter(|p| p.name == name).map(|p| pb::CheckpointInfo {
        name: name.to_owned(),
        complete: false,
        positions: vec![],
        waiting_for: p.waiting.iter().cloned().collect(),
    })
}

impl ReaderGroupSvc {
    /// The service over `meta`.
    pub fn new(meta: MetaStore) -> ReaderGroupSvc {
        let channels = meta.node().channels.clone();
        ReaderGroupSvc { meta, channels, liveness: Arc::default(), lag: LagGauges::default() }
    }

    /// The reader-group lag gauges ([`Self::lag_duty`] keeps them current on the leader).
    pub fn lag_gauges(&self) -> LagGauges {
        self.lag.clone()
    }

    /// Runs while this node is up: whenever it leads, measures every reader group's lag every
    /// `every` (asking the stores for its segments' lengths); a follower shows none.
    pub async fn lag_duty(self, every: Duration) {
        let id = self.meta.node().id;
        let metrics = self.meta.node().raft.metrics();
        let mut shown: Vec<GroupLabel> = Vec::new();
        loop {
            tokio::time::sleep(every).await;
            if metrics.borrow().current_leader != Some(id) {
                self.lag.clear();
                shown.clear();
                continue;
            }
            let groups: Vec<(String, String, GroupState)> = self.meta.read_groups(|_, rg| {
                rg.scopes
                    .iter()
                    .flat_map(|(scope, groups)| {
                        groups.iter().map(move |(name, g)| (scope.clone(), name.clone(), g.clone()))
                    })
                    .collect()
            });
            let mut seen = Vec::new();
            for (scope, name, g) in groups {
                let tails = self.tails(&scope, &g).await;
                let behind: Vec<(u64, u64)> = g
                    .frontier()
                    .iter()
                    .filter_map(|(seg, at)| {
                        tails.get(seg).map(|&(len, events)| {
                            let bytes = len.saturating_sub(*at);
                            (bytes, events_in(bytes, len, events))
                        })
                    })
                    .collect();
                let label = GroupLabel { group: format!("{scope}/{name}") };
                self.lag.bytes.get_or_create(&label).set(behind.iter().map(|b| b.0).sum::<u64>() as i64);
                self.lag.events.get_or_create(&label).set(behind.iter().map(|b| b.1).sum::<u64>() as i64);
                let behind: Vec<u64> = behind.iter().map(|b| b.0).collect();
                self.lag.segments.get_or_create(&label).set(behind.iter().filter(|b| **b > 0).count() as i64);
                self.lag.readers.get_or_create(&label).set(g.readers.len() as i64);
                seen.push(label);
            }
            // Groups deleted since the last pass.
            for label in shown.iter().filter(|l| !seen.contains(l)) {
                self.lag.bytes.remove(label);
                self.lag.events.remove(label);
                self.lag.segments.remove(label);
                self.lag.readers.remove(label);
            }
            shown = seen;
        }
    }

    /// The gRPC server of this service.
    pub fn into_server(self) -> pb::reader_group_service_server::ReaderGroupServiceServer<ReaderGroupSvc> {
        pb::reader_group_service_server::ReaderGroupServiceServer::new(self)
    }

    /// The segment store's view of a segment: `(start_offset, length)`.
    async fn segment_info(&self, scope: &str, s: &SegRef) -> Result<(u64, u64), MetaError> {
        self.segment_counts(scope, s).await.map(|(start, length, _)| (start, length))
    }

    /// `(start_offset, length, event_count)` of a segment, from its store.
    async fn segment_counts(&self, scope: &str, s: &SegRef) -> Result<(u64, u64, u64), MetaError> {
        let name = segment_name(scope, &s.stream, s.id);
        let endpoint = self.meta.endpoint_for(&name)?;
        let channel = self
            .channels
            .get(&endpoint)
            .map_err(|e| MetaError::Internal(format!("segment store endpoint {endpoint:?}: {e}")))?;
        let mut client = SegmentStoreClient::new(channel);
        let call = client.get_segment_info(seg::GetSegmentInfoRequest { segment: name });
        match tokio::time::timeout(Duration::from_secs(5), call).await {
            Ok(Ok(r)) => {
                let r = r.into_inner();
                Ok((r.start_offset, r.length, r.event_count))
            }
            Ok(Err(s)) => Err(MetaError::Unavailable(format!("segment store: {}", s.message()))),
            Err(_) => Err(MetaError::Unavailable(format!("segment store {endpoint} did not answer in 5 s"))),
        }
    }

    fn group<T>(&self, scope: &str, group: &str, f: impl FnOnce(&GroupState) -> T) -> Result<T, MetaError> {
        self.meta.read_groups(|_, rg| rg.group(scope, group).map(f))
    }

    /// Lengths of every ready segment of a group; segments whose store does not answer are left out.
    async fn lengths(&self, scope: &str, g: &GroupState) -> HashMap<SegRef, u64> {
        self.tails(scope, g).await.into_iter().map(|(s, (len, _))| (s, len)).collect()
    }

    /// `(length, event_count)` of every ready segment of a group, as [`Self::lengths`].
    async fn tails(&self, scope: &str, g: &GroupState) -> HashMap<SegRef, (u64, u64)> {
        let mut out = HashMap::new();
        for s in g.frontier().keys() {
            if let Ok((_, len, events)) = self.segment_counts(scope, s).await {
                out.insert(s.clone(), (len, events));
            }
        }
        out
    }

    async fn info(&self, scope: &str, group: &str) -> Result<pb::ReaderGroupInfo, MetaError> {
        let g = self.group(scope, group, GroupState::clone)?;
        let lengths = self.lengths(scope, &g).await;
        Ok(group_info(scope, group, &g, &lengths))
    }

    /// Proposes `cmd` unless applying it to a copy of its group changes nothing (or fails:
    /// then the error is returned without a Raft write, as every node would refuse it alike).
    async fn propose_if_changed(&self, scope: &str, group: &str, cmd: ReaderGroupCommand) -> Result<(), MetaError> {
        let changed = self.meta.read_groups(|meta, rg| {
            let g = rg.group(scope, group)?;
            let mut copy = ReaderGroups::default();
            copy.scopes.entry(scope.to_owned()).or_default().insert(group.to_owned(), g.clone());
            copy.apply(meta, &cmd)?;
            Ok::<_, MetaError>(copy.group(scope, group)? != g)
        })?;
        if changed { self.meta.propose_reader_group(cmd).await } else { Ok(()) }
    }

    /// Runs while this node is up: whenever it leads, declares offline every reader that has not
    /// synced for `timeout`.
    pub async fn liveness_duty(self, timeout: Duration) {
        let id = self.meta.node().id;
        let metrics = self.meta.node().raft.metrics();
        let tick = (timeout / 4).clamp(Duration::from_millis(50), Duration::from_secs(1));
        let mut was_leader = false;
        loop {
            tokio::time::sleep(tick).await;
            let is_leader = metrics.borrow().current_leader == Some(id);
            if !is_leader {
                if was_leader {
                    self.liveness.clear();
                }
                was_leader = false;
                continue;
            }
            if !was_leader {
                // Re-armed: every reader's clock starts now.
                self.liveness.clear();
                was_leader = true;
            }
            let readers: Vec<ReaderKey> = self.meta.read_groups(|_, rg| {
                rg.scopes
                    .iter()
                    .flat_map(|(scope, groups)| {
                        groups.iter().flat_map(move |(group, g)| {
                            g.readers.keys().map(move |r| (scope.clone(), group.clone(), r.clone()))
                        })
                    })
                    .collect()
            });
            for (scope, group, reader) in self.liveness.expired(&readers, Instant::now(), timeout) {
                tracing::info!(%scope, %group, %reader, ?timeout, "reader did not sync in time; declaring it offline");
                let cmd =
                    ReaderGroupCommand::Offline { scope: scope.clone(), group: group.clone(), reader: reader.clone() };
                match self.meta.propose_reader_group(cmd).await {
                    Ok(()) | Err(MetaError::ReaderNotFound(_)) | Err(MetaError::ReaderGroupNotFound(_)) => {}
                    Err(e) => tracing::warn!(error = %e, %reader, "declaring a reader offline failed; will retry"),
                }
            }
        }
    }
}

#[tonic::async_trait]
impl ReaderGroupService for ReaderGroupSvc {
    #[tracing::instrument(level = "debug", name = "controller.create_reader_group", skip_all, fields(scope = %req.get_ref().scope, group = %req.get_ref().group))]
    async fn create_reader_group(
        &self,
        req: Request<pb::CreateReaderGroupRequest>,
    ) -> Result<Response<pb::CreateReaderGroupResponse>, Status> {
        crate::access::require(
            &self.meta,
            &req,
            &Resource::reader_group(&req.get_ref().scope, &req.get_ref().group),
            Permission::Read,
        )?;
        for s in &req.get_ref().streams {
            crate::access::require(&self.meta, &req, &Resource::stream(&req.get_ref().scope, s), Permission::Read)?;
        }
        let req = req.into_inner();
        names(&req.scope, &req.group)?;
        for s in &req.streams {
            nadi_proto::names::validate_stream(s).map_err(MetaError::from)?;
        }
        let start = req.start.unwrap_or_default();
        let kind = pb::reader_group_start::Kind::try_from(start.kind)
            .map_err(|_| MetaError::InvalidArgument(format!("unknown start kind {}", start.kind)))?;
        let cut = match kind {
            pb::reader_group_start::Kind::StreamCut => positions_from(&start.stream_cut),
            head_or_tail => {
                let head = head_or_tail == pb::reader_group_start::Kind::HeadUnspecified;
                let segments: Vec<SegRef> = self
                    .meta
                    .read(|st| {
                        let mut out = Vec::new();
                        for s in &req.streams {
                            let m = st.stream(&req.scope, s)?;
                            let ids: Vec<_> = if head {
                                m.head_segments().into_iter().map(|(seg, _)| seg.id).collect()
                            } else {
                                m.current_epoch().segments.clone()
                            };
                            out.extend(ids.into_iter().map(|id| SegRef::new(s.clone(), id)));
                        }
                        Ok::<_, MetaError>(out)
                    })
                    .await?;
                let mut cut = Positions::new();
                for s in segments {
                    let (start, length) = self.segment_info(&req.scope, &s).await?;
                    cut.insert(s, if head { start } else { length });
                }
                cut
            }
        };
        let cmd = ReaderGroupCommand::Create {
            scope: req.scope.clone(),
            group: req.group.clone(),
            streams: req.streams,
            cut,
            now_ms: now_ms(),
            subscriber: req.subscriber,
        };
        self.meta.propose_reader_group(cmd).await?;
        Ok(Response::new(pb::CreateReaderGroupResponse { group: Some(self.info(&req.scope, &req.group).await?) }))
    }

    async fn get_reader_group(
        &self,
        req: Request<pb::GetReaderGroupRequest>,
    ) -> Result<Response<pb::GetReaderGroupResponse>, Status> {
        crate::access::require(
            &self.meta,
            &req,
            &Resource::reader_group(&req.get_ref().scope, &req.get_ref().group),
            Permission::Read,
        )?;
        let req = req.into_inner();
        names(&req.scope, &req.group)?;
        Ok(Response::new(pb::GetReaderGroupResponse { group: Some(self.info(&req.scope, &req.group).await?) }))
    }

    async fn list_reader_groups(
        &self,
        req: Request<pb::ListReaderGroupsRequest>,
    ) -> Result<Response<pb::ListReaderGroupsResponse>, Status> {
        let who = crate::access::caller(&self.meta, &req)?;
        let scope = req.into_inner().scope;
        if !self.meta.read_acl(|acl| acl.sees_scope(&who, &scope)) {
            return Err(crate::access::denied(&who, &Resource::scope(&scope), Permission::Read).into());
        }
        validate_scope(&scope).map_err(MetaError::from)?;
        let groups: Vec<String> = self.meta.read_groups(|meta, rg| {
            meta.scope(&scope)?;
            Ok::<_, MetaError>(rg.scopes.get(&scope).map(|g| g.keys().cloned().collect()).unwrap_or_default())
        })?;
        let groups = self.meta.read_acl(|acl| {
            groups.into_iter().filter(|g| acl.sees(&who, &Resource::reader_group(&scope, g))).collect()
        });
        Ok(Response::new(pb::ListReaderGroupsResponse { groups }))
    }

    #[tracing::instrument(level = "debug", name = "controller.delete_reader_group", skip_all, fields(scope = %req.get_ref().scope, group = %req.get_ref().group))]
    async fn delete_reader_group(
        &self,
        req: Request<pb::DeleteReaderGroupRequest>,
    ) -> Result<Response<pb::DeleteReaderGroupResponse>, Status> {
        crate::access::require(
            &self.meta,
            &req,
            &Resource::reader_group(&req.get_ref().scope, &req.get_ref().group),
            Permission::Admin,
        )?;
        let req = req.into_inner();
        names(&req.scope, &req.group)?;
        self.meta.propose_reader_group(ReaderGroupCommand::Delete { scope: req.scope, group: req.group }).await?;
        Ok(Response::new(pb::DeleteReaderGroupResponse {}))
    }

    async fn reader_sync(
        &self,
        req: Request<pb::ReaderSyncRequest>,
    ) -> Result<Response<pb::ReaderSyncResponse>, Status> {
        crate::access::require(
            &self.meta,
            &req,
            &Resource::reader_group(&req.get_ref().scope, &req.get_ref().group),
            Permission::Read,
        )?;
        let req = req.into_inner();
        names(&req.scope, &req.group)?;
        validate_named("reader", &req.reader_id).map_err(MetaError::from)?;
        let cmd = ReaderGroupCommand::Sync {
            scope: req.scope.clone(),
            group: req.group.clone(),
            reader: req.reader_id.clone(),
            join: req.join,
            positions: positions_from(&req.positions),
            finished: positions_from(&req.finished),
            checkpoint: Some(req.checkpoint.clone()).filter(|c| !c.is_empty()),
            now_ms: now_ms(),
        };
        self.propose_if_changed(&req.scope, &req.group, cmd).await?;
        self.liveness.touch((req.scope.clone(), req.group.clone(), req.reader_id.clone()), Instant::now());
        let resp = self.meta.read_groups(|_, rg| {
            let g = rg.group(&req.scope, &req.group)?;
            let r = g.readers.get(&req.reader_id).ok_or_else(|| {
                MetaError::ReaderNotFound(format!("{} in {}/{}", req.reader_id, req.scope, req.group))
            })?;
            let segments = r
                .segments
                .iter()
                .map(|(s, o)| {
                    let qualified_name = segment_name(&req.scope, &s.stream, s.id);
                    let endpoint = self.meta.endpoint_for(&qualified_name).unwrap_or_default();
                    pb::AssignedSegment { position: Some(position_pb(s, *o)), qualified_name, endpoint }
                })
                .collect();
            Ok::<_, MetaError>(pb::ReaderSyncResponse {
                generation: g.generation,
                segments,
                checkpoint: g.checkpoint_for(&req.reader_id).unwrap_or_default().to_owned(),
                end_of_group: g.is_finished(),
            })
        })?;
        Ok(Response::new(resp))
    }

    async fn reader_leave(
        &self,
        req: Request<pb::ReaderLeaveRequest>,
    ) -> Result<Response<pb::ReaderLeaveResponse>, Status> {
        crate::access::require(
            &self.meta,
            &req,
            &Resource::reader_group(&req.get_ref().scope, &req.get_ref().group),
            Permission::Read,
        )?;
        let req = req.into_inner();
        names(&req.scope, &req.group)?;
        let cmd = ReaderGroupCommand::Leave {
            scope: req.scope,
            group: req.group,
            reader: req.reader_id,
            positions: positions_from(&req.positions),
        };
        self.meta.propose_reader_group(cmd).await?;
        Ok(Response::new(pb::ReaderLeaveResponse {}))
    }

    #[tracing::instrument(level = "debug", name = "controller.reader_offline", skip_all, fields(scope = %req.get_ref().scope, group = %req.get_ref().group, reader = %req.get_ref().reader_id))]
    async fn reader_offline(
        &self,
        req: Request<pb::ReaderOfflineRequest>,
    ) -> Result<Response<pb::ReaderOfflineResponse>, Status> {
        crate::access::require(
            &self.meta,
            &req,
            &Resource::reader_group(&req.get_ref().scope, &req.get_ref().group),
            Permission::Read,
        )?;
        let req = req.into_inner();
        names(&req.scope, &req.group)?;
        let cmd = ReaderGroupCommand::Offline { scope: req.scope, group: req.group, reader: req.reader_id };
        self.meta.propose_reader_group(cmd).await?;
        Ok(Response::new(pb::ReaderOfflineResponse {}))
    }

    #[tracing::instrument(level = "debug", name = "controller.initiate_checkpoint", skip_all, fields(scope = %req.get_ref().scope, group = %req.get_ref().group, checkpoint = %req.get_ref().checkpoint))]
    async fn initiate_checkpoint(
        &self,
        req: Request<pb::InitiateCheckpointRequest>,
    ) -> Result<Response<pb::InitiateCheckpointResponse>, Status> {
        crate::access::require(
            &self.meta,
            &req,
            &Resource::reader_group(&req.get_ref().scope, &req.get_ref().group),
            Permission::Read,
        )?;
        let req = req.into_inner();
        names(&req.scope, &req.group)?;
        let cmd = ReaderGroupCommand::InitiateCheckpoint {
            scope: req.scope.clone(),
            group: req.group.clone(),
            name: req.checkpoint.clone(),
            now_ms: now_ms(),
        };
        self.meta.propose_reader_group(cmd).await?;
        let checkpoint = self.group(&req.scope, &req.group, |g| checkpoint_info(g, &req.checkpoint))?;
        Ok(Response::new(pb::InitiateCheckpointResponse { checkpoint }))
    }

    async fn get_checkpoint(
        &self,
        req: Request<pb::GetCheckpointRequest>,
    ) -> Result<Response<pb::GetCheckpointResponse>, Status> {
        crate::access::require(
            &self.meta,
            &req,
            &Resource::reader_group(&req.get_ref().scope, &req.get_ref().group),
            Permission::Read,
        )?;
        let req = req.into_inner();
        names(&req.scope, &req.group)?;
        validate_named("checkpoint", &req.checkpoint).map_err(MetaError::from)?;
        let checkpoint =
            self.group(&req.scope, &req.group, |g| checkpoint_info(g, &req.checkpoint))?.ok_or_else(|| {
                MetaError::CheckpointNotFound(format!("{} of {}/{}", req.checkpoint, req.scope, req.group))
            })?;
        Ok(Response::new(pb::GetCheckpointResponse { checkpoint: Some(checkpoint) }))
    }

    #[tracing::instrument(level = "debug", name = "controller.reset_reader_group", skip_all, fields(scope = %req.get_ref().scope, group = %req.get_ref().group))]
    async fn reset_reader_group(
        &self,
        req: Request<pb::ResetReaderGroupRequest>,
    ) -> Result<Response<pb::ResetReaderGroupResponse>, Status> {
        crate::access::require(
            &self.meta,
            &req,
            &Resource::reader_group(&req.get_ref().scope, &req.get_ref().group),
            Permission::Read,
        )?;
        let req = req.into_inner();
        names(&req.scope, &req.group)?;
        let target = if req.checkpoint.is_empty() {
            ResetTarget::Cut(positions_from(&req.stream_cut))
        } else {
            validate_named("checkpoint", &req.checkpoint).map_err(MetaError::from)?;
            ResetTarget::Checkpoint(req.checkpoint.clone())
        };
        let cmd =
            ReaderGroupCommand::Reset { scope: req.scope.clone(), group: req.group.clone(), target, now_ms: now_ms() };
        self.meta.propose_reader_group(cmd).await?;
        Ok(Response::new(pb::ResetReaderGroupResponse { group: Some(self.info(&req.scope, &req.group).await?) }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(r: &str) -> ReaderKey {
        ("s".into(), "g".into(), r.into())
    }

    #[test]
    fn liveness_declares_only_readers_silent_for_longer_than_the_timeout() {
        let l = Liveness::default();
        let t0 = Instant::now();
        let timeout = Duration::from_secs(10);
        let readers = vec![key("a"), key("b")];
        // First sight starts the clock (a new leader never declares anyone dead early).
        assert!(l.expired(&readers, t0, timeout).is_empty());
        l.touch(key("a"), t0 + Duration::from_secs(8));
        assert_eq!(l.expired(&readers, t0 + Duration::from_secs(11), timeout), vec![key("b")]);
        assert_eq!(l.expired(&readers, t0 + Duration::from_secs(19), timeout), vec![key("a"), key("b")]);
        // A reader that left is forgotten; a cleared map (leadership change) starts over.
        assert_eq!(l.expired(&[key("a")], t0 + Duration::from_secs(19), timeout), vec![key("a")]);
        l.clear();
        assert!(l.expired(&readers, t0 + Duration::from_secs(30), timeout).is_empty());
    }
}
