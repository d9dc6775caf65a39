//! The gRPC API `nadi.controller.v1` and the stream workflows behind it.
//!
//! Workflows touch two systems (metadata and segment stores) and are written to be resumed:
//! - create: record the stream as `Creating` → create every segment on its store (idempotent)
//!   → mark it `Active`. Streams found `Creating` at start-up are finished by [`Controller::resume`].
//! - seal: seal every active segment (idempotent) → mark `Sealed`.
//! - delete (sealed streams only): delete every segment (missing ones are fine) → remove.
//! - scale: validate and record the successors (`StartScale`; from here `GetSuccessors` of a
//!   predecessor answers) → create the successors (idempotent) → seal the predecessors
//!   (idempotent) → make the new epoch current (`CompleteScale`). A scale found pending at
//!   start-up is rolled forward by [`Controller::resume`]; so is one found by a seal.

use nadi_security::acl::{Permission, Resource};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use nadi_proto::controller::v1 as pb;
use nadi_proto::names::{segment_name, validate_scope, validate_stream};
use nadi_proto::segment::v1 as seg;
use nadi_proto::segment::v1::segment_store_client::SegmentStoreClient;
use nadi_proto::{ErrorCode, SegmentId};
use nadi_security::channel::Channel;
use pb::controller_service_server::ControllerService;
use tonic::{Request, Response, Status};

use crate::MetaError;
use crate::meta::{MetaStore, RequestKey};
use crate::raft::network::Channels;
use crate::state::{Command, EpochReason, Retention, Scaling, SegmentRecord, StreamConfig, StreamMeta, StreamState};
use crate::time_cut::{OffsetAtTime, SegmentGraph, cut_at_time};

pub(crate) fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}

/// `ms` since the Unix epoch as RFC 3339, for messages.
fn rfc3339(ms: u64) -> humantime::Rfc3339Timestamp {
    humantime::format_rfc3339_millis(UNIX_EPOCH + std::time::Duration::from_millis(ms))
}

/// One async lock per stream (`scope/stream`), held by the workflows that change its segments
/// (scale, seal, transaction commit and abort) so that on one leader they run one at a time.
/// Across leaders the state machine's own checks keep them apart (see `Machine::apply`).
#[derive(Debug, Clone, Default)]
pub(crate) struct StreamLocks(Arc<parking_lot::Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>>);

impl StreamLocks {
    fn entry(&self, scope: &str, stream: &str) -> Arc<tokio::sync::Mutex<()>> {
        self.0.lock().entry(format!("{scope}/{stream}")).or_default().clone()
    }

    /// Waits for the stream's lock.
    pub(crate) async fn lock(&self, scope: &str, stream: &str) -> tokio::sync::OwnedMutexGuard<()> {
        self.entry(scope, stream).lock_owned().await
    }

    /// The stream's lock if it is free.
    pub(crate) fn try_lock(&self, scope: &str, stream: &str) -> Option<tokio::sync::OwnedMutexGuard<()>> {
        self.entry(scope, stream).try_lock_owned().ok()
    }
}

/// The controller: metadata plus the segment stores it places segments on.
#[derive(Debug, Clone)]
pub struct Controller {
    pub(crate) meta: MetaStore,
    /// Channels to segment stores, by endpoint.
    channels: Channels,
    /// This node's admin HTTP address as reported by `GetClusterInfo` (empty if none).
    http_address: String,
    pub(crate) locks: StreamLocks,
    /// Writers' notes and the streams' watermarks (soft state of the leader).
    pub(crate) watermarks: Arc<crate::watermark::Watermarks>,
}

impl Controller {
    /// A controller over `meta`; segments go to the stores registered in its cluster state.
    pub fn new(meta: MetaStore) -> Controller {
        let channels = meta.node().channels.clone();
        Controller {
            meta,
            channels,
            http_address: String::new(),
            locks: StreamLocks::default(),
            watermarks: Arc::default(),
        }
    }

    /// Sets the admin HTTP address `GetClusterInfo` reports for this node.
    pub fn with_http_address(mut self, http_address: String) -> Controller {
        self.http_address = http_address;
        self
    }

    /// A client of the segment store hosting `segment`.
    pub(crate) fn store(&self, segment: &str) -> Result<SegmentStoreClient<Channel>, MetaError> {
        let endpoint = self.meta.endpoint_for(segment)?;
        let channel = self
            .channels
            .get(&endpoint)
            .map_err(|e| MetaError::Internal(format!("segment store endpoint {endpoint:?}: {e}")))?;
        Ok(SegmentStoreClient::new(channel))
    }

    /// The cluster as the leader sees it (requests are answered by the leader): the Raft
    /// members, the leader, the registered segment stores and the container assignment. Only
    /// the answering node knows its own admin HTTP address; other members show it empty.
    fn cluster_info(&self) -> pb::GetClusterInfoResponse {
        let node = self.meta.node();
        let metrics = node.raft.metrics().borrow().clone();
        let members = metrics
            .membership_config
            .membership()
            .nodes()
            .map(|(id, n)| pb::ClusterMember {
                id: *id,
                grpc_address: n.addr.clone(),
                http_address: if *id == node.id { self.http_address.clone() } else { String::new() },
            })
            .collect();
        let (replicas, replication_factor, by_replica_id) = self.meta.read_cluster(|c| {
            let ids: std::collections::HashMap<u64, String> =
                c.stores.iter().filter_map(|(id, s)| s.replica_id.map(|r| (r, id.clone()))).collect();
            (c.replicas.clone(), c.replication_factor, ids)
        });
        let store_of = |rid: &u64| by_replica_id.get(rid).cloned().unwrap_or_else(|| format!("replica-{rid}"));
        let (segment_stores, count) = self.meta.read_cluster(|c| {
            let stores = c
                .stores
                .iter()
                .map(|(id, s)| pb::SegmentStoreInfo {
                    endpoint: s.endpoint.clone(),
                    store_id: id.clone(),
                    pravega_endpoint: self.meta.pravega_endpoint_of(id).unwrap_or_default(),
                })
                .collect();
            (stores, c.containers)
        });
        // Where clients of each container go: its leader, for a replicated container.
        let containers = (0..count)
            .map(|container| {
                let (store_id, endpoint) = self.meta.endpoint_of(container).unwrap_or_default();
                let replicas = replicas.get(&container).cloned().unwrap_or_default();
                let group = self.meta.group_of(container).unwrap_or_default();
                let lag = group
                    .followers
                    .iter()
                    .map(|f| pb::ReplicaLag {
                        store_id: store_of(&f.id),
                        entries_behind: f.entries_behind,
                        bytes_behind: f.bytes_behind,
                    })
                    .collect();
                let voters = group.voters.iter().map(store_of).collect();
                pb::ContainerAssignment {
                    container,
                    endpoint,
                    store_id,
                    replicas,
                    term: group.term,
                    voters,
                    lag,
                    changing: group.changing,
                }
            })
            .collect();
        pb::GetClusterInfoResponse {
            members,
            leader_id: metrics.current_leader.unwrap_or_default(),
            segment_stores,
            containers,
            replication_factor,
        }
    }

    /// The metadata store.
    pub fn meta(&self) -> &MetaStore {
        &self.meta
    }

    /// The `(scope, stream)` of every stream (created or not) for which `pred` holds.
    async fn streams_where(&self, pred: impl Fn(&StreamMeta) -> bool) -> Vec<(String, String)> {
        self.meta
            .read(|st| {
                st.scopes
                    .iter()
                    .flat_map(|(sc, s)| s.streams.iter().filter(|(_, m)| pred(m)).map(|(n, _)| (sc.clone(), n.clone())))
                    .collect()
            })
            .await
    }

    /// Finishes stream creations, scales and truncations interrupted by a crash (rolls them
    /// forward).
    pub async fn resume(&self) -> Result<(), MetaError> {
        for (scope, stream) in self.streams_where(|m| m.pending_scale.is_some()).await {
            tracing::info!(%scope, %stream, "resuming a scale");
            self.finish_scale(&scope, &stream).await?;
        }
        for (scope, stream) in self.streams_where(|m| m.state == StreamState::Creating).await {
            tracing::info!(%scope, %stream, "resuming stream creation");
            self.finish_create(&scope, &stream).await?;
        }
        for (scope, stream) in self.streams_where(|m| m.pending_truncation.is_some()).await {
            tracing::info!(%scope, %stream, "resuming a truncation");
            self.finish_truncation(&scope, &stream).await?;
        }
        Ok(())
    }

    /// Applies a recorded truncation on the segment stores (truncate each cut segment at its
    /// offset, delete each segment before the cut; both idempotent), then records it done.
    async fn finish_truncation(&self, scope: &str, stream: &str) -> Result<u32, MetaError> {
        let work = self
            .meta
            .read(|st| {
                let m = st.stream_any(scope, stream)?;
                Ok::<_, MetaError>(m.pending_truncation.as_ref().map(|t| {
                    let cut: Vec<(String, u64)> =
                        t.cut.iter().map(|(id, off)| (m.segment_name(scope, stream, *id), *off)).collect();
                    let delete: Vec<String> = t.delete.iter().map(|id| m.segment_name(scope, stream, *id)).collect();
                    (t.cut.clone(), cut, delete)
                }))
            })
            .await?;
        let Some((ids, cut, delete)) = work else { return Ok(0) };
        let timer = crate::workflow::Timer::start("truncate");
        for (segment, offset) in &cut {
            let req = seg::TruncateSegmentRequest { segment: segment.clone(), offset: *offset };
            if let Err(s) = self.store(segment)?.truncate_segment(req).await {
                let (code, _) = nadi_proto::errors::from_status(&s);
                if code.is_retryable() {
                    return Err(store_error(s));
                }
                // Refused for good (e.g. not an event boundary): drop the truncation.
                let abort = Command::TruncationAborted { scope: scope.into(), stream: stream.into(), cut: ids };
                self.meta.propose(abort).await?;
                return Err(MetaError::InvalidArgument(format!("segment {segment}: {}", s.message())));
            }
        }
        for segment in &delete {
            match self.store(segment)?.delete_segment(seg::DeleteSegmentRequest { segment: segment.clone() }).await {
                Ok(_) => {}
                Err(s) if nadi_proto::errors::from_status(&s).0 == ErrorCode::SegmentNotFound => {}
                Err(s) => return Err(store_error(s)),
            }
        }
        self.meta.propose(Command::TruncationDone { scope: scope.into(), stream: stream.into(), cut: ids }).await?;
        timer.ok();
        Ok(delete.len() as u32)
    }

    /// `(start_offset, length)` of a segment, from its store.
    async fn segment_bounds(&self, segment: &str) -> Result<(u64, u64), MetaError> {
        let req = seg::GetSegmentInfoRequest { segment: segment.to_owned() };
        let info = self.store(segment)?.get_segment_info(req).await.map_err(store_error)?.into_inner();
        Ok((info.start_offset, info.length))
    }

    /// Checks that `offset` (strictly between the segment's start and its length) is where an
    /// event starts, by reading one message there: the store reads only from event boundaries
    /// and refuses any other offset with BAD_OFFSET. Reads change nothing, so this is safe on
    /// any store version.
    async fn check_event_boundary(&self, segment: &str, offset: u64) -> Result<(), MetaError> {
        let req = seg::ReadRequest { segment: segment.to_owned(), offset, follow: false, max_bytes_per_message: 1 };
        let first = match self.store(segment)?.read(req).await {
            // Only the first message matters; dropping the stream ends the read.
            Ok(stream) => stream.into_inner().message().await.map(|_| ()),
            Err(s) => Err(s),
        };
        match first {
            Ok(()) => Ok(()),
            Err(s) => match nadi_proto::errors::from_status(&s).0 {
                ErrorCode::BadOffset => Err(MetaError::InvalidArgument(format!(
                    "offset {offset} of segment {segment} is not an event boundary (it falls inside an event); \
                     truncate at a stream cut (`GetStreamCut`) or at offsets a reader reached"
                ))),
                // Before the start: truncating there changes nothing on this segment.
                ErrorCode::Truncated => Ok(()),
                _ => Err(store_error(s)),
            },
        }
    }

    /// `GetStreamCut` at `time_ms`: checks the time against the clock and the stream's
    /// creation, then walks the segment graph from the head (see [`crate::time_cut`]), asking
    /// each segment's store for its offset at the time.
    pub(crate) async fn cut_at_time(
        &self,
        scope: &str,
        stream: &str,
        time_ms: u64,
    ) -> Result<Vec<pb::SegmentOffset>, MetaError> {
        let now = nadi_proto::clock::now_ms();
        if time_ms > now {
            return Err(MetaError::TimeInFuture(format!(
                "time {time_ms} ({}) is ahead of the controller's clock ({}); no event can have been appended then yet",
                rfc3339(time_ms),
                rfc3339(now)
            )));
        }
        let (graph, head, names, created_at_ms) = self
            .meta
            .read(|st| {
                let m = st.stream(scope, stream)?;
                let head: Vec<SegmentId> = m.head_segments().into_iter().map(|(s, _)| s.id).collect();
                let names: HashMap<SegmentId, String> =
                    m.segments.values().map(|s| (s.id, s.qualified_name(scope, stream))).collect();
                Ok::<_, MetaError>((SegmentGraph::of(m), head, names, m.created_at_ms))
            })
            .await?;
        // Append times are whole seconds (docs/protocol.md, "Append time"): the stream's first
        // events may carry the second it was created in, so that second is not "before" it.
        if time_ms < created_at_ms - created_at_ms % 1000 {
            return Err(MetaError::TimeBeforeStream(format!(
                "time {time_ms} ({}) is before stream {scope}/{stream} was created ({}); read from its head instead",
                rfc3339(time_ms),
                rfc3339(created_at_ms)
            )));
        }
        let names = &names;
        let cut = cut_at_time(&graph, &head, move |id| async move {
            let name = names
                .get(&id)
                .ok_or_else(|| MetaError::Internal(format!("segment {id} of {scope}/{stream} has no record")))?;
            self.offset_at_time(name, time_ms).await
        })
        .await?;
        Ok(cut.into_iter().map(|(id, offset)| pb::SegmentOffset { segment_id: id.packed(), offset }).collect())
    }

    /// The store's answer to `GetOffsetAtTime` for `segment`, checked.
    async fn offset_at_time(&self, segment: &str, time_ms: u64) -> Result<OffsetAtTime, MetaError> {
        let req = seg::GetOffsetAtTimeRequest { segment: segment.to_owned(), time_ms };
        let r = match self.store(segment)?.get_offset_at_time(req).await {
            Ok(r) => r.into_inner(),
            // A store of a version before seek by time (during a rolling upgrade).
            Err(s) if s.code() == tonic::Code::Unimplemented => {
                return Err(MetaError::Unavailable(format!(
                    "the segment store of {segment} cannot look up offsets by time (an older version?): {}",
                    s.message()
                )));
            }
            Err(s) => {
                return Err(match nadi_proto::errors::from_status(&s).0 {
                    // The store's clock is behind the controller's.
                    ErrorCode::TimeInFuture => MetaError::TimeInFuture(format!("segment {segment}: {}", s.message())),
                    // Deleted by a truncation since the walk began: a new walk starts at the new head.
                    ErrorCode::SegmentNotFound => MetaError::Unavailable(format!(
                        "segment {segment} was deleted (truncated) while the cut was computed; ask again"
                    )),
                    _ => store_error(s),
                });
            }
        };
        if r.offset < r.start_offset || r.offset > r.length {
            return Err(MetaError::Internal(format!(
                "segment store answered offset {} for segment {segment}, outside [{}, {}]",
                r.offset, r.start_offset, r.length
            )));
        }
        Ok(OffsetAtTime { offset: r.offset, past_end: r.past_end, sealed: r.sealed })
    }

    async fn finish_create(&self, scope: &str, stream: &str) -> Result<(), MetaError> {
        let segments: Vec<String> = self
            .meta
            .read(|st| {
                st.stream_any(scope, stream)
                    .map(|m| m.current_epoch().segments.iter().map(|id| m.segment_name(scope, stream, *id)).collect())
            })
            .await?;
        for name in segments {
            self.store(&name)?
                .create_segment(seg::CreateSegmentRequest { segment: name })
                .await
                .map_err(store_error)?;
        }
        self.meta.propose(Command::StreamCreated { scope: scope.into(), stream: stream.into() }).await
    }

    /// Rolls a pending scale forward: creates the successors, seals the predecessors (both
    /// idempotent) and makes the new epoch current. Does nothing if no scale is pending.
    /// Successors that are promoted transaction segments exist already; creating them again
    /// is a no-op.
    pub(crate) async fn finish_scale(&self, scope: &str, stream: &str) -> Result<(), MetaError> {
        let Some((pending, successors, sealed)) = self
            .meta
            .read(|st| {
                st.stream_any(scope, stream).map(|m| {
                    m.pending_scale.clone().map(|p| {
                        let name = |id: &SegmentId| m.segment_name(scope, stream, *id);
                        let successors: Vec<String> = p.successors.iter().map(name).collect();
                        let sealed: Vec<String> = p.sealed.iter().map(name).collect();
                        (p, successors, sealed)
                    })
                })
            })
            .await?
        else {
            return Ok(());
        };
        let timer = crate::workflow::Timer::start("scale");
        for segment in successors {
            self.store(&segment)?.create_segment(seg::CreateSegmentRequest { segment }).await.map_err(store_error)?;
        }
        for segment in sealed {
            self.store(&segment)?.seal_segment(seg::SealSegmentRequest { segment }).await.map_err(store_error)?;
        }
        let done = self
            .meta
            .propose(Command::CompleteScale {
                scope: scope.into(),
                stream: stream.into(),
                epoch: pending.epoch,
                now_ms: now_ms(),
            })
            .await;
        timer.finish(done)
    }

    async fn info(&self, scope: &str, stream: &str) -> Result<pb::StreamInfo, MetaError> {
        self.meta.read(|st| st.stream(scope, stream).map(|m| stream_info(scope, stream, m))).await
    }

    /// A segment and the endpoint of its store (empty if no store hosts its container; callers
    /// check [`Controller::require_stores`] first).
    fn location(&self, scope: &str, stream: &str, s: &SegmentRecord) -> pb::SegmentLocation {
        let segment = segment_pb(scope, stream, s);
        let endpoint = self.meta.endpoint_for(&segment.qualified_name).unwrap_or_default();
        pb::SegmentLocation { segment: Some(segment), endpoint }
    }

    /// Fails with UNAVAILABLE while no segment store has registered.
    fn require_stores(&self) -> Result<(), MetaError> {
        if self.meta.read_cluster(|c| c.containers) == 0 {
            return Err(MetaError::Unavailable("no segment store has registered with the controller yet".into()));
        }
        Ok(())
    }
}

impl Controller {
    /// Gives (`give`) or takes back a grant, if the caller of `req` administers its resource;
    /// true if that changed anything.
    async fn change_grant<T>(
        &self,
        req: &Request<T>,
        grant: Option<&pb::PermissionGrant>,
        give: bool,
    ) -> Result<bool, Status> {
        let grant = grant_from_pb(grant)?;
        crate::access::require(&self.meta, req, &grant.resource, Permission::Admin)?;
        let exists = self.meta.read_acl(|acl| acl.grants().any(|g| g == &grant));
        if exists == give {
            return Ok(false);
        }
        tracing::info!(%grant, give, "changing a grant");
        let cmd = if give { crate::raft::AclCommand::Grant(grant) } else { crate::raft::AclCommand::Revoke(grant) };
        self.meta.propose_acl(cmd).await?;
        Ok(true)
    }
}

/// A grant from the wire, checked.
fn grant_from_pb(g: Option<&pb::PermissionGrant>) -> Result<nadi_security::acl::Grant, MetaError> {
    let g = g.ok_or_else(|| MetaError::InvalidArgument("the request carries no grant".into()))?;
    let bad = |e: nadi_security::acl::AclError| MetaError::InvalidArgument(e.to_string());
    nadi_security::acl::check_principal(&g.principal).map_err(bad)?;
    let resource: Resource = g.resource.parse().map_err(bad)?;
    match &resource {
        Resource::Cluster => {}
        Resource::Scope(s) => validate_scope(s)?,
        Resource::Stream { scope, stream } => names(scope, stream)?,
        Resource::ReaderGroup { scope, group } => {
            validate_scope(scope)?;
            nadi_proto::names::validate_named("reader group", group)?;
        }
    }
    Ok(nadi_security::acl::Grant {
        principal: g.principal.clone(),
        resource,
        permission: g.permission.parse().map_err(bad)?,
    })
}

/// Maps a segment store failure to a controller error.
pub(crate) fn store_error(s: Status) -> MetaError {
    let (code, _) = nadi_proto::errors::from_status(&s);
    match code {
        // Retryable store conditions stay retryable for the controller's caller (a replica
        // that does not lead: the next try goes to the leader its heartbeats report).
        ErrorCode::Unavailable | ErrorCode::StorageFull | ErrorCode::NotLeader => {
            MetaError::Unavailable(format!("segment store: {}", s.message()))
        }
        // The store refused this controller's own credentials: a set-up error an operator
        // must see as such (docs/security.md: nodes present a superuser token or a TLS
        // client certificate).
        ErrorCode::Unauthenticated | ErrorCode::PermissionDenied => {
            MetaError::Unavailable(format!("segment store refused the controller's credentials: {}", s.message()))
        }
        _ => MetaError::Internal(format!("segment store: {}", s.message())),
    }
}

fn segment_pb(scope: &str, stream: &str, s: &SegmentRecord) -> pb::Segment {
    pb::Segment {
        id: s.id.packed(),
        qualified_name: s.qualified_name(scope, stream),
        key_low: s.key_low,
        key_high: s.key_high,
        state: if s.sealed { pb::SegmentState::Sealed } else { pb::SegmentState::Active } as i32,
        created_at_ms: s.created_at_ms,
    }
}

/// Converts a wire config to the state machine's form, validating it.
pub fn config_from_pb(c: Option<pb::StreamConfig>) -> Result<StreamConfig, MetaError> {
    let c = c.unwrap_or_default();
    let sp = c.scaling.unwrap_or_default();
    let scaling = match pb::scaling_policy::Kind::try_from(sp.kind) {
        Ok(pb::scaling_policy::Kind::FixedUnspecified) => Scaling::Fixed { segments: sp.min_segments.max(1) },
        Ok(pb::scaling_policy::Kind::Readers) => {
            if sp.min_segments == 0 {
                return Err(MetaError::InvalidArgument("a readers scaling policy needs at least 1 segment".into()));
            }
            Scaling::Readers { min_segments: sp.min_segments }
        }
        Ok(kind) => {
            if sp.target_rate == 0 || sp.scale_factor < 2 || sp.min_segments == 0 {
                return Err(MetaError::InvalidArgument(
                    "a scaling policy needs a target rate > 0, a scale factor >= 2 and at least 1 segment".into(),
                ));
            }
            let (rate, factor, min_segments) = (sp.target_rate, sp.scale_factor, sp.min_segments);
            if kind == pb::scaling_policy::Kind::EventsPerSec {
                Scaling::EventsPerSec { rate, factor, min_segments }
            } else {
                Scaling::KbytesPerSec { rate, factor, min_segments }
            }
        }
        Err(_) => return Err(MetaError::InvalidArgument(format!("unknown scaling kind {}", sp.kind))),
    };
    let rp = c.retention.unwrap_or_default();
    let retention = match pb::retention_policy::Kind::try_from(rp.kind) {
        Ok(pb::retention_policy::Kind::NoneUnspecified) => Retention::None,
        Ok(pb::retention_policy::Kind::Time) => Retention::TimeMs(rp.value),
        Ok(pb::retention_policy::Kind::Size) => Retention::Bytes(rp.value),
        Ok(pb::retention_policy::Kind::Consumption) => {
            if rp.value > rp.max_value || rp.max_value == 0 {
                return Err(MetaError::InvalidArgument(format!(
                    "consumption retention needs 0 <= MIN <= MAX and MAX > 0 (MIN {} ms, MAX {} ms)",
                    rp.value, rp.max_value
                )));
            }
            Retention::Consumption { min_ms: rp.value, max_ms: rp.max_value }
        }
        Err(_) => return Err(MetaError::InvalidArgument(format!("unknown retention kind {}", rp.kind))),
    };
    Ok(StreamConfig { scaling, retention })
}

/// Converts the state machine's config to the wire form.
pub fn config_to_pb(c: &StreamConfig) -> pb::StreamConfig {
    use pb::retention_policy::Kind as R;
    use pb::scaling_policy::Kind as K;
    let scaling = match c.scaling {
        Scaling::Fixed { segments } => pb::ScalingPolicy {
            kind: K::FixedUnspecified as i32,
            target_rate: 0,
            scale_factor: 0,
            min_segments: segments,
        },
        Scaling::EventsPerSec { rate, factor, min_segments } => {
            pb::ScalingPolicy { kind: K::EventsPerSec as i32, target_rate: rate, scale_factor: factor, min_segments }
        }
        Scaling::KbytesPerSec { rate, factor, min_segments } => {
            pb::ScalingPolicy { kind: K::KbytesPerSec as i32, target_rate: rate, scale_factor: factor, min_segments }
        }
        Scaling::Readers { min_segments } => {
            pb::ScalingPolicy { kind: K::Readers as i32, target_rate: 0, scale_factor: 0, min_segments }
        }
    };
    let retention = match c.retention {
        Retention::None => pb::RetentionPolicy { kind: R::NoneUnspecified as i32, value: 0, max_value: 0 },
        Retention::TimeMs(v) => pb::RetentionPolicy { kind: R::Time as i32, value: v, max_value: 0 },
        Retention::Bytes(v) => pb::RetentionPolicy { kind: R::Size as i32, value: v, max_value: 0 },
        Retention::Consumption { min_ms, max_ms } => {
            pb::RetentionPolicy { kind: R::Consumption as i32, value: min_ms, max_value: max_ms }
        }
    };
    pb::StreamConfig { scaling: Some(scaling), retention: Some(retention) }
}

fn stream_info(scope: &str, stream: &str, m: &StreamMeta) -> pb::StreamInfo {
    pb::StreamInfo {
        scope: scope.to_owned(),
        stream: stream.to_owned(),
        config: Some(config_to_pb(&m.config)),
        state: match m.state {
            StreamState::Creating => pb::StreamState::Creating,
            StreamState::Active => pb::StreamState::Active,
            StreamState::Sealed => pb::StreamState::Sealed,
        } as i32,
        epoch: m.current_epoch().epoch,
        active_segments: m.active_segments().into_iter().map(|s| segment_pb(scope, stream, s)).collect(),
        created_at_ms: m.created_at_ms,
    }
}

fn reason_pb(r: EpochReason) -> pb::EpochReason {
    match r {
        EpochReason::Created => pb::EpochReason::Created,
        EpochReason::Manual => pb::EpochReason::Manual,
        EpochReason::SplitByLoad => pb::EpochReason::SplitByLoad,
        EpochReason::MergeByLoad => pb::EpochReason::MergeByLoad,
        EpochReason::TxnCommit => pb::EpochReason::TxnCommit,
        EpochReason::SplitByReaders => pb::EpochReason::SplitByReaders,
        EpochReason::MergeByReaders => pb::EpochReason::MergeByReaders,
    }
}

fn history(scope: &str, stream: &str, m: &StreamMeta) -> pb::GetStreamHistoryResponse {
    let epochs = m
        .epochs
        .iter()
        .map(|e| {
            let mut segments: Vec<&SegmentRecord> = e.segments.iter().filter_map(|id| m.segment(*id)).collect();
            segments.sort_by(|a, b| a.key_low.total_cmp(&b.key_low));
            pb::EpochInfo {
                epoch: e.epoch,
                created_at_ms: e.created_at_ms,
                reason: reason_pb(e.reason) as i32,
                segments: segments.into_iter().map(|s| segment_pb(scope, stream, s)).collect(),
            }
        })
        .collect();
    let notes = m
        .scaling_notes
        .iter()
        .map(|n| pb::ScalingNote { at_ms: n.at_ms, segment_id: n.segment.packed(), text: n.text.clone() })
        .collect();
    pb::GetStreamHistoryResponse { epochs, notes }
}

fn names(scope: &str, stream: &str) -> Result<(), MetaError> {
    validate_scope(scope)?;
    validate_stream(stream)?;
    Ok(())
}

#[tonic::async_trait]
impl ControllerService for Controller {
    #[tracing::instrument(level = "debug", name = "controller.create_scope", skip_all, fields(scope = %req.get_ref().scope))]
    async fn create_scope(
        &self,
        req: Request<pb::CreateScopeRequest>,
    ) -> Result<Response<pb::CreateScopeResponse>, Status> {
        crate::access::require(&self.meta, &req, &Resource::Cluster, Permission::Admin)?;
        let key = RequestKey::of(&req)?;
        let scope = req.into_inner().scope;
        validate_scope(&scope).map_err(MetaError::from)?;
        self.meta.propose_once(key.as_ref(), Command::CreateScope { scope, now_ms: now_ms() }).await?;
        Ok(Response::new(pb::CreateScopeResponse {}))
    }

    async fn list_scopes(
        &self,
        req: Request<pb::ListScopesRequest>,
    ) -> Result<Response<pb::ListScopesResponse>, Status> {
        let who = crate::access::caller(&self.meta, &req)?;
        let scopes: Vec<String> = self.meta.read(|st| st.scopes.keys().cloned().collect()).await;
        // A caller sees the scopes it holds a grant in (or on the cluster).
        let scopes = self.meta.read_acl(|acl| scopes.into_iter().filter(|s| acl.sees_scope(&who, s)).collect());
        Ok(Response::new(pb::ListScopesResponse { scopes }))
    }

    #[tracing::instrument(level = "debug", name = "controller.delete_scope", skip_all, fields(scope = %req.get_ref().scope))]
    async fn delete_scope(
        &self,
        req: Request<pb::DeleteScopeRequest>,
    ) -> Result<Response<pb::DeleteScopeResponse>, Status> {
        crate::access::require(&self.meta, &req, &Resource::scope(&req.get_ref().scope), Permission::Admin)?;
        let key = RequestKey::of(&req)?;
        let scope = req.into_inner().scope;
        validate_scope(&scope).map_err(MetaError::from)?;
        self.meta.propose_once(key.as_ref(), Command::DeleteScope { scope }).await?;
        Ok(Response::new(pb::DeleteScopeResponse {}))
    }

    #[tracing::instrument(level = "debug", name = "controller.create_stream", skip_all, fields(scope = %req.get_ref().scope, stream = %req.get_ref().stream))]
    async fn create_stream(
        &self,
        req: Request<pb::CreateStreamRequest>,
    ) -> Result<Response<pb::CreateStreamResponse>, Status> {
        crate::access::require(&self.meta, &req, &Resource::scope(&req.get_ref().scope), Permission::Write)?;
        let key = RequestKey::of(&req)?;
        let req = req.into_inner();
        names(&req.scope, &req.stream)?;
        self.require_stores()?;
        let config = config_from_pb(req.config)?;
        // Stamped by the clock of append times (the same as `now_ms` but for the test hook's
        // clock), as seek by time compares times with the stream's creation.
        let now_ms = nadi_proto::clock::now_ms();
        let cmd = Command::CreateStream { scope: req.scope.clone(), stream: req.stream.clone(), config, now_ms };
        match self.meta.propose_once(key.as_ref(), cmd).await {
            // (A retry of a creation already applied is answered "done" and finishes it.)
            Ok(()) => {}
            // A creation interrupted earlier (crash, store down) is finished by a retry.
            Err(MetaError::StreamExists(name)) => {
                let creating = self
                    .meta
                    .read(|st| st.stream_any(&req.scope, &req.stream).map(|m| m.state == StreamState::Creating))
                    .await?;
                if !creating {
                    return Err(MetaError::StreamExists(name).into());
                }
            }
            Err(e) => return Err(e.into()),
        }
        self.finish_create(&req.scope, &req.stream).await?;
        let info = self
            .meta
            .read(|st| st.stream(&req.scope, &req.stream).map(|m| stream_info(&req.scope, &req.stream, m)))
            .await?;
        Ok(Response::new(pb::CreateStreamResponse { stream: Some(info) }))
    }

    async fn list_streams(
        &self,
        req: Request<pb::ListStreamsRequest>,
    ) -> Result<Response<pb::ListStreamsResponse>, Status> {
        let who = crate::access::caller(&self.meta, &req)?;
        let scope = req.into_inner().scope;
        if !self.meta.read_acl(|acl| acl.sees_scope(&who, &scope)) {
            return Err(crate::access::denied(&who, &Resource::scope(&scope), Permission::Read).into());
        }
        validate_scope(&scope).map_err(MetaError::from)?;
        let streams: Vec<String> = self
            .meta
            .read(|st| {
                st.scope(&scope).map(|s| {
                    s.streams.iter().filter(|(_, m)| m.state != StreamState::Creating).map(|(n, _)| n.clone()).collect()
                })
            })
            .await?;
        // Within a scope it holds only some grants in, a caller sees those streams.
        let streams = self
            .meta
            .read_acl(|acl| streams.into_iter().filter(|t| acl.sees(&who, &Resource::stream(&scope, t))).collect());
        Ok(Response::new(pb::ListStreamsResponse { streams }))
    }

    async fn get_stream(&self, req: Request<pb::GetStreamRequest>) -> Result<Response<pb::GetStreamResponse>, Status> {
        crate::access::require(
            &self.meta,
            &req,
            &Resource::stream(&req.get_ref().scope, &req.get_ref().stream),
            Permission::Read,
        )?;
        let req = req.into_inner();
        names(&req.scope, &req.stream)?;
        let info = self
            .meta
            .read(|st| st.stream(&req.scope, &req.stream).map(|m| stream_info(&req.scope, &req.stream, m)))
            .await?;
        Ok(Response::new(pb::GetStreamResponse { stream: Some(info) }))
    }

    #[tracing::instrument(level = "debug", name = "controller.seal_stream", skip_all, fields(scope = %req.get_ref().scope, stream = %req.get_ref().stream))]
    async fn seal_stream(
        &self,
        req: Request<pb::SealStreamRequest>,
    ) -> Result<Response<pb::SealStreamResponse>, Status> {
        crate::access::require(
            &self.meta,
            &req,
            &Resource::stream(&req.get_ref().scope, &req.get_ref().stream),
            Permission::Admin,
        )?;
        let key = RequestKey::of(&req)?;
        let req = req.into_inner();
        names(&req.scope, &req.stream)?;
        let _lock = self.locks.lock(&req.scope, &req.stream).await;
        // A scale in progress is finished first, so that its successors are sealed too, and so
        // are transaction commits (a same-epoch commit needs its parents open).
        self.finish_scale(&req.scope, &req.stream).await?;
        self.finish_stream_txns(&req.scope, &req.stream).await?;
        let active = self
            .meta
            .read(|st| {
                st.stream(&req.scope, &req.stream).map(|m| {
                    let ids = &m.current_epoch().segments;
                    ids.iter().map(|id| m.segment_name(&req.scope, &req.stream, *id)).collect::<Vec<_>>()
                })
            })
            .await?;
        for segment in active {
            self.store(&segment)?.seal_segment(seg::SealSegmentRequest { segment }).await.map_err(store_error)?;
        }
        self.meta.propose_once(key.as_ref(), Command::StreamSealed { scope: req.scope, stream: req.stream }).await?;
        Ok(Response::new(pb::SealStreamResponse {}))
    }

    #[tracing::instrument(level = "debug", name = "controller.delete_stream", skip_all, fields(scope = %req.get_ref().scope, stream = %req.get_ref().stream))]
    async fn delete_stream(
        &self,
        req: Request<pb::DeleteStreamRequest>,
    ) -> Result<Response<pb::DeleteStreamResponse>, Status> {
        crate::access::require(
            &self.meta,
            &req,
            &Resource::stream(&req.get_ref().scope, &req.get_ref().stream),
            Permission::Admin,
        )?;
        let key = RequestKey::of(&req)?;
        let req = req.into_inner();
        names(&req.scope, &req.stream)?;
        let _lock = self.locks.lock(&req.scope, &req.stream).await;
        // A retry of a deletion that was applied: the stream is gone, as the first answer said.
        if self.meta.applied_key(key.as_ref()) {
            return Ok(Response::new(pb::DeleteStreamResponse {}));
        }
        let all: Vec<String> = self.meta.read_txns(|st, txns| {
            st.stream(&req.scope, &req.stream).and_then(|m| {
                if m.state != StreamState::Sealed {
                    return Err(MetaError::StreamNotSealed(format!("{}/{}", req.scope, req.stream)));
                }
                let mut all: Vec<String> =
                    m.segments.values().map(|s| s.qualified_name(&req.scope, &req.stream)).collect();
                // Transaction segments of unfinished transactions (committed ones are merged or
                // promoted, aborted ones deleted).
                for t in txns.of_stream(&req.scope, &req.stream) {
                    if !t.state.is_finished() {
                        all.extend(t.segments.iter().map(|s| s.name.clone()));
                    }
                }
                Ok(all)
            })
        })?;
        for segment in all {
            match self.store(&segment)?.delete_segment(seg::DeleteSegmentRequest { segment }).await {
                Ok(_) => {}
                Err(s) if nadi_proto::errors::from_status(&s).0 == ErrorCode::SegmentNotFound => {}
                Err(s) => return Err(store_error(s).into()),
            }
        }
        self.watermarks.forget(&req.scope, &req.stream);
        self.meta.propose_once(key.as_ref(), Command::DeleteStream { scope: req.scope, stream: req.stream }).await?;
        Ok(Response::new(pb::DeleteStreamResponse {}))
    }

    async fn get_active_segments(
        &self,
        req: Request<pb::GetActiveSegmentsRequest>,
    ) -> Result<Response<pb::GetActiveSegmentsResponse>, Status> {
        crate::access::require(
            &self.meta,
            &req,
            &Resource::stream(&req.get_ref().scope, &req.get_ref().stream),
            Permission::Read,
        )?;
        let req = req.into_inner();
        names(&req.scope, &req.stream)?;
        self.require_stores()?;
        let resp = self
            .meta
            .read(|st| {
                st.stream(&req.scope, &req.stream).map(|m| pb::GetActiveSegmentsResponse {
                    epoch: m.current_epoch().epoch,
                    segments: m
                        .active_segments()
                        .into_iter()
                        .map(|s| self.location(&req.scope, &req.stream, s))
                        .collect(),
                })
            })
            .await?;
        Ok(Response::new(resp))
    }

    async fn get_successors(
        &self,
        req: Request<pb::GetSuccessorsRequest>,
    ) -> Result<Response<pb::GetSuccessorsResponse>, Status> {
        crate::access::require(
            &self.meta,
            &req,
            &Resource::stream(&req.get_ref().scope, &req.get_ref().stream),
            Permission::Read,
        )?;
        let req = req.into_inner();
        names(&req.scope, &req.stream)?;
        self.require_stores()?;
        let id = SegmentId::from_packed(req.segment_id);
        let resp = self
            .meta
            .read(|st| {
                let m = st.stream(&req.scope, &req.stream)?;
                let s = m
                    .segment(id)
                    .ok_or_else(|| MetaError::SegmentNotFound(segment_name(&req.scope, &req.stream, id)))?;
                let successors = s
                    .successors
                    .iter()
                    .filter_map(|sid| m.segment(*sid))
                    .map(|succ| pb::SuccessorSegment {
                        segment: Some(self.location(&req.scope, &req.stream, succ)),
                        predecessor_ids: succ.predecessors.iter().map(|p| p.packed()).collect(),
                    })
                    .collect();
                Ok::<_, MetaError>(pb::GetSuccessorsResponse { successors })
            })
            .await?;
        Ok(Response::new(resp))
    }

    async fn get_head_segments(
        &self,
        req: Request<pb::GetHeadSegmentsRequest>,
    ) -> Result<Response<pb::GetHeadSegmentsResponse>, Status> {
        crate::access::require(
            &self.meta,
            &req,
            &Resource::stream(&req.get_ref().scope, &req.get_ref().stream),
            Permission::Read,
        )?;
        let req = req.into_inner();
        names(&req.scope, &req.stream)?;
        self.require_stores()?;
        let resp = self
            .meta
            .read(|st| {
                let m = st.stream(&req.scope, &req.stream)?;
                let segments =
                    m.head_segments().into_iter().map(|(s, _)| self.location(&req.scope, &req.stream, s)).collect();
                Ok::<_, MetaError>(pb::GetHeadSegmentsResponse { segments })
            })
            .await?;
        Ok(Response::new(resp))
    }

    #[tracing::instrument(level = "debug", name = "controller.note_writer_time", skip_all, fields(scope = %req.get_ref().scope, stream = %req.get_ref().stream))]
    async fn note_writer_time(
        &self,
        req: Request<pb::NoteWriterTimeRequest>,
    ) -> Result<Response<pb::NoteWriterTimeResponse>, Status> {
        crate::access::require(
            &self.meta,
            &req,
            &Resource::stream(&req.get_ref().scope, &req.get_ref().stream),
            Permission::Write,
        )?;
        let req = req.into_inner();
        names(&req.scope, &req.stream)?;
        if req.writer_id.is_empty() || req.writer_id.len() > 256 {
            return Err(MetaError::InvalidArgument(format!(
                "writer id must be 1 to 256 bytes, got {}",
                req.writer_id.len()
            ))
            .into());
        }
        let idle = match req.idle_timeout_ms {
            0 => crate::watermark::DEFAULT_IDLE,
            ms => Duration::from_millis(ms),
        };
        if idle > crate::watermark::MAX_IDLE {
            return Err(MetaError::InvalidArgument(format!(
                "idle timeout {} ms is above the most allowed, {} ms",
                req.idle_timeout_ms,
                crate::watermark::MAX_IDLE.as_millis()
            ))
            .into());
        }
        let (created_at_ms, position, live) = self
            .meta
            .read(|st| {
                let m = st.stream(&req.scope, &req.stream)?;
                let mut position = Vec::with_capacity(req.position.len());
                for p in &req.position {
                    let id = SegmentId::from_packed(p.segment_id);
                    let seg = m.segment(id).ok_or_else(|| {
                        MetaError::SegmentNotFound(format!("{} of stream {}/{}", id, req.scope, req.stream))
                    })?;
                    // A segment truncated away since: no reader reads it any more.
                    if !seg.deleted {
                        position.push((p.segment_id, seg.key_low, seg.key_high, p.offset));
                    }
                }
                let live: std::collections::HashSet<u64> =
                    m.segments.values().filter(|s| !s.deleted).map(|s| s.id.packed()).collect();
                Ok::<_, MetaError>((m.created_at_ms, position, live))
            })
            .await?;
        let note = crate::watermark::Note {
            writer_id: req.writer_id.clone(),
            time_ms: req.time_ms,
            position,
            closed: req.closed,
            idle,
        };
        let now = Instant::now();
        let watermark_ms = self
            .watermarks
            .with(&req.scope, &req.stream, created_at_ms, |m| {
                m.prune(|id| live.contains(&id));
                m.note(note, now)
            })
            .map_err(|e| {
                MetaError::InvalidArgument(format!(
                    "writer {} noted time {} ms, lower than its previous note, {} ms: a writer's time never goes back",
                    req.writer_id, req.time_ms, e.previous_ms
                ))
            })?;
        Ok(Response::new(pb::NoteWriterTimeResponse { watermark_ms }))
    }

    async fn get_watermarks(
        &self,
        req: Request<pb::GetWatermarksRequest>,
    ) -> Result<Response<pb::GetWatermarksResponse>, Status> {
        crate::access::require(
            &self.meta,
            &req,
            &Resource::stream(&req.get_ref().scope, &req.get_ref().stream),
            Permission::Read,
        )?;
        let req = req.into_inner();
        names(&req.scope, &req.stream)?;
        let created_at_ms =
            self.meta.read(|st| st.stream_any(&req.scope, &req.stream).map(|m| m.created_at_ms)).await?;
        let now = Instant::now();
        let resp = self.watermarks.with(&req.scope, &req.stream, created_at_ms, |m| {
            m.advance(now);
            m.answer(req.after_ms, now)
        });
        Ok(Response::new(resp))
    }

    async fn get_stream_cut(
        &self,
        req: Request<pb::GetStreamCutRequest>,
    ) -> Result<Response<pb::GetStreamCutResponse>, Status> {
        crate::access::require(
            &self.meta,
            &req,
            &Resource::stream(&req.get_ref().scope, &req.get_ref().stream),
            Permission::Read,
        )?;
        let req = req.into_inner();
        names(&req.scope, &req.stream)?;
        self.require_stores()?;
        let which = pb::get_stream_cut_request::Which::try_from(req.which)
            .map_err(|_| MetaError::InvalidArgument(format!("unknown stream cut kind {}", req.which)))?;
        if which == pb::get_stream_cut_request::Which::Time {
            let cut = self.cut_at_time(&req.scope, &req.stream, req.time_ms).await?;
            return Ok(Response::new(pb::GetStreamCutResponse { cut }));
        }
        let tail = which == pb::get_stream_cut_request::Which::Tail;
        let segs: Vec<(u64, String)> = self
            .meta
            .read(|st| {
                let m = st.stream(&req.scope, &req.stream)?;
                let list: Vec<&SegmentRecord> =
                    if tail { m.active_segments() } else { m.head_segments().into_iter().map(|(s, _)| s).collect() };
                Ok::<_, MetaError>(
                    list.into_iter().map(|s| (s.id.packed(), s.qualified_name(&req.scope, &req.stream))).collect(),
                )
            })
            .await?;
        let mut cut = Vec::with_capacity(segs.len());
        for (segment_id, name) in segs {
            let (start, length) = self.segment_bounds(&name).await?;
            cut.push(pb::SegmentOffset { segment_id, offset: if tail { length } else { start } });
        }
        Ok(Response::new(pb::GetStreamCutResponse { cut }))
    }

    #[tracing::instrument(level = "debug", name = "controller.truncate_stream", skip_all, fields(scope = %req.get_ref().scope, stream = %req.get_ref().stream))]
    async fn truncate_stream(
        &self,
        req: Request<pb::TruncateStreamRequest>,
    ) -> Result<Response<pb::TruncateStreamResponse>, Status> {
        crate::access::require(
            &self.meta,
            &req,
            &Resource::stream(&req.get_ref().scope, &req.get_ref().stream),
            Permission::Admin,
        )?;
        let key = RequestKey::of(&req)?;
        let req = req.into_inner();
        names(&req.scope, &req.stream)?;
        self.require_stores()?;
        let cut: Vec<(SegmentId, u64)> =
            req.cut.iter().map(|c| (SegmentId::from_packed(c.segment_id), c.offset)).collect();
        // A truncation left half applied (a crash) is finished first.
        self.finish_truncation(&req.scope, &req.stream).await?;
        // Offsets past a segment's end are refused before anything is recorded.
        let names_of: Vec<(String, u64)> = self
            .meta
            .read(|st| {
                let m = st.stream(&req.scope, &req.stream)?;
                m.check_truncation(&format!("{}/{}", req.scope, req.stream), &cut)?;
                Ok::<_, MetaError>(
                    cut.iter().map(|(id, off)| (m.segment_name(&req.scope, &req.stream, *id), *off)).collect(),
                )
            })
            .await?;
        // So are offsets inside an event: checked on every segment before any is truncated, so
        // a refused cut changes nothing (the store would refuse such an offset too, but only
        // after the cut's earlier segments were truncated).
        for (name, off) in &names_of {
            let (start, length) = self.segment_bounds(name).await?;
            if *off > length {
                return Err(MetaError::InvalidArgument(format!(
                    "offset {off} is past the end of segment {name} (length {length})"
                ))
                .into());
            }
            if *off > start && *off < length {
                self.check_event_boundary(name, *off).await?;
            }
        }
        let cmd = Command::TruncateStream { scope: req.scope.clone(), stream: req.stream.clone(), cut: cut.clone() };
        self.meta.propose_once(key.as_ref(), cmd).await?;
        let deleted_segments = self.finish_truncation(&req.scope, &req.stream).await?;
        let head = cut.iter().map(|(id, off)| pb::SegmentOffset { segment_id: id.packed(), offset: *off }).collect();
        Ok(Response::new(pb::TruncateStreamResponse { head, deleted_segments }))
    }

    #[tracing::instrument(level = "debug", name = "controller.update_stream", skip_all, fields(scope = %req.get_ref().scope, stream = %req.get_ref().stream))]
    async fn update_stream(
        &self,
        req: Request<pb::UpdateStreamRequest>,
    ) -> Result<Response<pb::UpdateStreamResponse>, Status> {
        crate::access::require(
            &self.meta,
            &req,
            &Resource::stream(&req.get_ref().scope, &req.get_ref().stream),
            Permission::Admin,
        )?;
        let key = RequestKey::of(&req)?;
        let req = req.into_inner();
        names(&req.scope, &req.stream)?;
        let current = self.meta.read(|st| st.stream(&req.scope, &req.stream).map(|m| m.config.clone())).await?;
        let given = req.config.unwrap_or_default();
        let current = config_to_pb(&current);
        let merged = pb::StreamConfig {
            scaling: given.scaling.or(current.scaling),
            retention: given.retention.or(current.retention),
        };
        let config = config_from_pb(Some(merged))?;
        // A policy that follows subscriber groups, set now on a stream no subscriber reads,
        // would not do what it says (at creation no group can exist yet: allowed there).
        let sets_consumption = given.retention.is_some() && matches!(config.retention, Retention::Consumption { .. });
        let sets_readers = given.scaling.is_some() && matches!(config.scaling, Scaling::Readers { .. });
        if sets_consumption || sets_readers {
            let subscribed = self.meta.read_groups(|_, rg| rg.subscribers(&req.scope, &req.stream).next().is_some());
            if !subscribed {
                let what = if sets_consumption { "consumption retention" } else { "scaling by readers" };
                return Err(MetaError::NoSubscriber(format!(
                    "no subscriber reader group reads {}/{}, so {what} would follow nobody; create one first \
                     (`nadi reader-group create {}/GROUP --stream {} --subscriber`)",
                    req.scope, req.stream, req.scope, req.stream
                ))
                .into());
            }
        }
        let cmd = Command::UpdateStreamConfig { scope: req.scope.clone(), stream: req.stream.clone(), config };
        self.meta.propose_once(key.as_ref(), cmd).await?;
        Ok(Response::new(pb::UpdateStreamResponse { stream: Some(self.info(&req.scope, &req.stream).await?) }))
    }

    #[tracing::instrument(level = "debug", name = "controller.scale_stream", skip_all, fields(scope = %req.get_ref().scope, stream = %req.get_ref().stream))]
    async fn scale_stream(
        &self,
        req: Request<pb::ScaleStreamRequest>,
    ) -> Result<Response<pb::ScaleStreamResponse>, Status> {
        crate::access::require(
            &self.meta,
            &req,
            &Resource::stream(&req.get_ref().scope, &req.get_ref().stream),
            Permission::Admin,
        )?;
        let key = RequestKey::of(&req)?;
        let req = req.into_inner();
        names(&req.scope, &req.stream)?;
        let cmd = Command::StartScale {
            scope: req.scope.clone(),
            stream: req.stream.clone(),
            sealed: req.sealed_segment_ids.iter().map(|id| SegmentId::from_packed(*id)).collect(),
            new_ranges: req.new_ranges.iter().map(|r| (r.low, r.high)).collect(),
            reason: EpochReason::Manual,
            now_ms: now_ms(),
            promoted: vec![],
        };
        let _lock = self.locks.lock(&req.scope, &req.stream).await;
        // Keyed: a retry of a scale already decided is answered "done" (and rolls it forward
        // below) instead of being validated again against the scaled stream.
        match self.meta.propose_once(key.as_ref(), cmd.clone()).await {
            Ok(()) => {}
            // A scale left pending by an earlier failure (store down), or a transaction commit
            // left merging, is rolled forward first; then this one is validated against the
            // result.
            Err(MetaError::ScaleInProgress(_)) => {
                self.finish_scale(&req.scope, &req.stream).await?;
                self.finish_stream_txns(&req.scope, &req.stream).await?;
                self.meta.propose_once(key.as_ref(), cmd).await?;
            }
            Err(e) => return Err(e.into()),
        }
        self.finish_scale(&req.scope, &req.stream).await?;
        Ok(Response::new(pb::ScaleStreamResponse { stream: Some(self.info(&req.scope, &req.stream).await?) }))
    }

    async fn get_stream_history(
        &self,
        req: Request<pb::GetStreamHistoryRequest>,
    ) -> Result<Response<pb::GetStreamHistoryResponse>, Status> {
        crate::access::require(
            &self.meta,
            &req,
            &Resource::stream(&req.get_ref().scope, &req.get_ref().stream),
            Permission::Read,
        )?;
        let req = req.into_inner();
        names(&req.scope, &req.stream)?;
        let resp = self
            .meta
            .read(|st| st.stream(&req.scope, &req.stream).map(|m| history(&req.scope, &req.stream, m)))
            .await?;
        Ok(Response::new(resp))
    }

    async fn get_cluster_info(
        &self,
        _req: Request<pb::GetClusterInfoRequest>,
    ) -> Result<Response<pb::GetClusterInfoResponse>, Status> {
        crate::access::require(&self.meta, &_req, &Resource::Cluster, Permission::Read)?;
        Ok(Response::new(self.cluster_info()))
    }

    async fn grant_permission(
        &self,
        req: Request<pb::GrantPermissionRequest>,
    ) -> Result<Response<pb::GrantPermissionResponse>, Status> {
        let added = self.change_grant(&req, req.get_ref().grant.as_ref(), true).await?;
        Ok(Response::new(pb::GrantPermissionResponse { added }))
    }

    async fn revoke_permission(
        &self,
        req: Request<pb::RevokePermissionRequest>,
    ) -> Result<Response<pb::RevokePermissionResponse>, Status> {
        let removed = self.change_grant(&req, req.get_ref().grant.as_ref(), false).await?;
        Ok(Response::new(pb::RevokePermissionResponse { removed }))
    }

    async fn list_permissions(
        &self,
        req: Request<pb::ListPermissionsRequest>,
    ) -> Result<Response<pb::ListPermissionsResponse>, Status> {
        let who = crate::access::caller(&self.meta, &req)?;
        let only = &req.get_ref().principal;
        let grants = self.meta.read_acl(|acl| {
            acl.grants()
                .filter(|g| only.is_empty() || &g.principal == only)
                .filter(|g| g.principal == who.principal || acl.allows(&who, &g.resource, Permission::Admin))
                .map(|g| pb::PermissionGrant {
                    principal: g.principal.clone(),
                    resource: g.resource.to_string(),
                    permission: g.permission.to_string(),
                })
                .collect()
        });
        Ok(Response::new(pb::ListPermissionsResponse { grants }))
    }

    async fn who_am_i(&self, req: Request<pb::WhoAmIRequest>) -> Result<Response<pb::WhoAmIResponse>, Status> {
        let who = crate::access::caller(&self.meta, &req)?;
        Ok(Response::new(pb::WhoAmIResponse {
            principal: who.principal,
            superuser: who.superuser,
            auth_required: self.meta.auth_required(),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Seek by time refuses a time ahead of the clock and one before the stream was created,
    /// with their own codes, before any segment store is asked (none exists here).
    #[tokio::test]
    async fn a_cut_at_a_time_checks_the_time_first() {
        let dir = tempfile::tempdir().unwrap();
        let meta = MetaStore::open_single_node(dir.path()).await.unwrap();
        let created = nadi_proto::clock::now_ms() - 60_000;
        meta.propose(Command::CreateScope { scope: "s".into(), now_ms: created }).await.unwrap();
        let config = StreamConfig { scaling: Scaling::Fixed { segments: 2 }, retention: Retention::None };
        meta.propose(Command::CreateStream { scope: "s".into(), stream: "t".into(), config, now_ms: created })
            .await
            .unwrap();
        meta.propose(Command::StreamCreated { scope: "s".into(), stream: "t".into() }).await.unwrap();
        let c = Controller::new(meta);

        let ahead = nadi_proto::clock::now_ms() + 3_600_000;
        let e = c.cut_at_time("s", "t", ahead).await.unwrap_err();
        assert!(matches!(e, MetaError::TimeInFuture(_)), "{e:?}");
        let (code, _) = nadi_proto::errors::from_status(&Status::from(e.clone()));
        assert_eq!(code, ErrorCode::TimeInFuture, "{e}");
        assert!(!e.is_retryable());

        let e = c.cut_at_time("s", "t", created - created % 1000 - 1).await.unwrap_err();
        assert!(matches!(e, MetaError::TimeBeforeStream(_)), "{e:?}");
        assert!(e.to_string().contains("before stream s/t was created"), "{e}");
        let (code, _) = nadi_proto::errors::from_status(&Status::from(e));
        assert_eq!(code, ErrorCode::TimeBeforeStream);

        // The second the stream was created in is not before it (append times are whole
        // seconds); with no segment store here, the walk then fails asking for the head.
        let e = c.cut_at_time("s", "t", created - created % 1000).await.unwrap_err();
        assert!(!matches!(e, MetaError::TimeBeforeStream(_) | MetaError::TimeInFuture(_)), "{e:?}");

        let e = c.cut_at_time("s", "missing", created).await.unwrap_err();
        assert!(matches!(e, MetaError::StreamNotFound(_)), "{e:?}");
    }
}
