//! JSON views of the controller API, shared by the admin HTTP API and the CLI's `--json` output,
//! so that both print the same document for the same state. Also the text forms of policies
//! (`events:RATE,FACTOR,MIN`, `time:10s`, …) and the split/merge planner: one parser and one
//! planner, used by both front ends, is what makes the CLI and HTTP agree.
//!
//! Everything here converts from the wire types of `nadi.controller.v1`; nothing reads the
//! state machine directly (the HTTP API is a client of the gRPC API, like the CLI).

use std::time::Duration;

use crate::SegmentId;
use crate::controller::v1 as pb;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// A request parameter in text form (a scaling or retention policy, a stream cut, a scale plan)
/// that does not parse or is out of range. Servers answer it as `INVALID_ARGUMENT`; the
/// controller converts it into its `MetaError::InvalidArgument`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid request: {0}")]
pub struct InvalidInput(pub String);

impl InvalidInput {
    /// The stable error code of this error.
    pub fn code(&self) -> crate::ErrorCode {
        crate::ErrorCode::InvalidArgument
    }
}

/// One segment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct SegmentView {
    /// Packed id `(epoch << 32) | number`; what `stream scale` takes.
    pub id: u64,
    /// Number, unique within the stream.
    pub number: u32,
    /// The epoch in which the segment was created.
    pub epoch: u32,
    /// Qualified name on the segment store.
    pub name: String,
    /// `[low, high)` of the routing-key space.
    pub key_range: [f64; 2],
    /// `active` or `sealed`.
    pub state: String,
    /// Creation time, milliseconds since the Unix epoch.
    pub created_at_ms: u64,
}

impl From<&pb::Segment> for SegmentView {
    fn from(s: &pb::Segment) -> Self {
        let id = SegmentId::from_packed(s.id);
        SegmentView {
            id: s.id,
            number: id.number(),
            epoch: id.epoch(),
            name: s.qualified_name.clone(),
            key_range: [s.key_low, s.key_high],
            state: if s.state == pb::SegmentState::Sealed as i32 { "sealed" } else { "active" }.to_owned(),
            created_at_ms: s.created_at_ms,
        }
    }
}

/// A stream's policies in their text form.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct PolicyView {
    /// `fixed`, `events:RATE,FACTOR,MIN` or `bytes:RATE,FACTOR,MIN` (RATE in KiB/s).
    pub scaling: String,
    /// `none`, `time:DURATION` or `size:BYTES`.
    pub retention: String,
}

/// A stream: what `stream info --json` prints and `GET /v1/scopes/{scope}/streams/{stream}` returns.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct StreamView {
    pub scope: String,
    pub stream: String,
    /// `active` or `sealed`.
    pub state: String,
    /// The current epoch.
    pub epoch: u32,
    pub policy: PolicyView,
    /// The active segments, sorted by key range.
    pub segments: Vec<SegmentView>,
    /// Creation time, milliseconds since the Unix epoch.
    pub created_at_ms: u64,
}

impl From<&pb::StreamInfo> for StreamView {
    fn from(i: &pb::StreamInfo) -> Self {
        StreamView {
            scope: i.scope.clone(),
            stream: i.stream.clone(),
            state: state_name(i.state).to_owned(),
            epoch: i.epoch,
            policy: policy_view(&i.config.unwrap_or_default()),
            segments: i.active_segments.iter().map(SegmentView::from).collect(),
            created_at_ms: i.created_at_ms,
        }
    }
}

/// The scopes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ScopeListView {
    /// Every scope, sorted.
    pub scopes: Vec<String>,
}

/// One scope.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ScopeView {
    pub scope: String,
}

/// The streams of a scope.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct StreamListView {
    pub scope: String,
    /// Created streams, sorted.
    pub streams: Vec<String>,
}

/// One epoch of a stream's history.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct EpochView {
    pub epoch: u32,
    /// When the epoch became current, milliseconds since the Unix epoch.
    pub created_at_ms: u64,
    /// `created`, `manual`, `split-by-load` or `merge-by-load`.
    pub reason: String,
    /// The epoch's segments by key range, with their state now.
    pub segments: Vec<SegmentView>,
}

/// A scaling decision the auto-scaler held back.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ScalingNoteView {
    /// When, milliseconds since the Unix epoch.
    pub at_ms: u64,
    /// The segment concerned (packed id).
    pub segment_id: u64,
    /// What happened.
    pub text: String,
}

/// Every epoch of a stream, oldest first, and what the auto-scaler held back.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct HistoryView {
    pub scope: String,
    pub stream: String,
    pub epochs: Vec<EpochView>,
    /// The latest scaling decisions not carried out (for example a hot segment not split
    /// because the stream has the most segments allowed), oldest first.
    pub notes: Vec<ScalingNoteView>,
}

impl HistoryView {
    pub fn new(scope: &str, stream: &str, h: &pb::GetStreamHistoryResponse) -> Self {
        let epochs = h
            .epochs
            .iter()
            .map(|e| EpochView {
                epoch: e.epoch,
                created_at_ms: e.created_at_ms,
                reason: match pb::EpochReason::try_from(e.reason) {
                    Ok(pb::EpochReason::Manual) => "manual",
                    Ok(pb::EpochReason::SplitByLoad) => "split-by-load",
                    Ok(pb::EpochReason::MergeByLoad) => "merge-by-load",
                    Ok(pb::EpochReason::TxnCommit) => "txn-commit",
                    Ok(pb::EpochReason::SplitByReaders) => "split-by-readers",
                    Ok(pb::EpochReason::MergeByReaders) => "merge-by-readers",
                    _ => "created",
                }
                .to_owned(),
                segments: e.segments.iter().map(SegmentView::from).collect(),
            })
            .collect();
        let notes = h
            .notes
            .iter()
            .map(|n| ScalingNoteView { at_ms: n.at_ms, segment_id: n.segment_id, text: n.text.clone() })
            .collect();
        HistoryView { scope: scope.to_owned(), stream: stream.to_owned(), epochs, notes }
    }
}

/// An active segment with the segment store that serves it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct LocatedSegmentView {
    pub segment: SegmentView,
    /// gRPC endpoint of its segment store.
    pub endpoint: String,
}

/// The segments writers route to now.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ActiveSegmentsView {
    pub scope: String,
    pub stream: String,
    pub epoch: u32,
    pub segments: Vec<LocatedSegmentView>,
}

impl ActiveSegmentsView {
    pub fn new(scope: &str, stream: &str, r: &pb::GetActiveSegmentsResponse) -> Self {
        let segments = r
            .segments
            .iter()
            .filter_map(|l| {
                l.segment
                    .as_ref()
                    .map(|s| LocatedSegmentView { segment: SegmentView::from(s), endpoint: l.endpoint.clone() })
            })
            .collect();
        ActiveSegmentsView { scope: scope.to_owned(), stream: stream.to_owned(), epoch: r.epoch, segments }
    }
}

/// One transaction segment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct TxnSegmentView {
    /// Qualified name on the segment store (`{parent}#txn.{id}`).
    pub name: String,
    /// Packed id of the stream segment it belongs to.
    pub parent_id: u64,
    /// `[low, high)` of the routing-key space (the parent's).
    pub key_range: [f64; 2],
    /// gRPC endpoint of its segment store.
    pub endpoint: String,
}

/// A transaction.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct TxnView {
    /// The transaction id.
    pub txn_id: String,
    pub scope: String,
    pub stream: String,
    /// The stream's epoch when it began.
    pub epoch: u32,
    /// `open`, `committing`, `committed`, `aborting` or `aborted`.
    pub state: String,
    /// Lease length in milliseconds.
    pub lease_ms: u64,
    /// An open transaction is aborted after this time (ms since the Unix epoch).
    pub lease_deadline_ms: u64,
    pub created_at_ms: u64,
    /// When it was committed or aborted (0 before).
    pub finished_at_ms: u64,
    /// True if its commit rolled it into a new epoch (the stream was scaled after it began).
    pub rolled: bool,
    /// `client` or `lease expired` for an aborted transaction, else empty.
    pub abort_reason: String,
    /// Its segments (none once aborted).
    pub segments: Vec<TxnSegmentView>,
}

/// The name of a transaction state in views.
pub fn txn_state_name(state: i32) -> &'static str {
    match pb::TxnState::try_from(state) {
        Ok(pb::TxnState::Open) => "open",
        Ok(pb::TxnState::Committing) => "committing",
        Ok(pb::TxnState::Committed) => "committed",
        Ok(pb::TxnState::Aborting) => "aborting",
        Ok(pb::TxnState::Aborted) => "aborted",
        _ => "unknown",
    }
}

impl From<&pb::TxnInfo> for TxnView {
    fn from(t: &pb::TxnInfo) -> Self {
        TxnView {
            txn_id: t.txn_id.clone(),
            scope: t.scope.clone(),
            stream: t.stream.clone(),
            epoch: t.epoch,
            state: txn_state_name(t.state).to_owned(),
            lease_ms: t.lease_ms,
            lease_deadline_ms: t.lease_deadline_ms,
            created_at_ms: t.created_at_ms,
            finished_at_ms: t.finished_at_ms,
            rolled: t.rolled,
            abort_reason: t.abort_reason.clone(),
            segments: t
                .segments
                .iter()
                .map(|s| TxnSegmentView {
                    name: s.qualified_name.clone(),
                    parent_id: s.parent_id,
                    key_range: [s.key_low, s.key_high],
                    endpoint: s.endpoint.clone(),
                })
                .collect(),
        }
    }
}

/// The transactions of a stream the controller remembers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct TxnListView {
    pub scope: String,
    pub stream: String,
    /// Oldest first: every open, committing and aborting one, and recently finished ones.
    pub transactions: Vec<TxnView>,
}

/// One segment of a reader group with the group's position in it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct SegmentPositionView {
    /// The stream (in the group's scope).
    pub stream: String,
    /// Packed segment id `(epoch << 32) | number`.
    pub segment_id: u64,
    /// Offset of the next event to read.
    pub offset: u64,
    /// The segment's durable length, if its store answered.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub length: Option<u64>,
    /// Bytes still to read in this segment (`length - offset`), if the length is known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lag: Option<u64>,
}

impl From<&pb::SegmentProgress> for SegmentPositionView {
    fn from(p: &pb::SegmentProgress) -> Self {
        let pos = p.position.clone().unwrap_or_default();
        SegmentPositionView {
            stream: pos.stream,
            segment_id: pos.segment_id,
            offset: pos.offset,
            length: p.segment_length,
            lag: p.segment_length.map(|l| l.saturating_sub(pos.offset)),
        }
    }
}

impl From<&pb::SegmentPosition> for SegmentPositionView {
    fn from(p: &pb::SegmentPosition) -> Self {
        SegmentPositionView {
            stream: p.stream.clone(),
            segment_id: p.segment_id,
            offset: p.offset,
            length: None,
            lag: None,
        }
    }
}

/// A member of a reader group.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ReaderView {
    pub reader_id: String,
    /// When it joined, milliseconds since the Unix epoch.
    pub joined_at_ms: u64,
    /// The segments it owns, with its last reported positions.
    pub segments: Vec<SegmentPositionView>,
}

/// A reader group: what `reader-group info --json` prints and
/// `GET /v1/scopes/{scope}/reader-groups/{group}` returns.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ReaderGroupView {
    pub scope: String,
    pub group: String,
    /// The streams it reads.
    pub streams: Vec<String>,
    /// Bumped by every reset.
    pub generation: u64,
    pub readers: Vec<ReaderView>,
    /// Segments ready to be read that no reader owns.
    pub unassigned: Vec<SegmentPositionView>,
    /// The checkpoint in progress, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pending_checkpoint: Option<String>,
    /// Readers the pending checkpoint still waits for.
    pub checkpoint_waiting_for: Vec<String>,
    /// Completed checkpoints, oldest first.
    pub checkpoints: Vec<String>,
    /// Total lag over the segments whose length is known, in bytes.
    pub lag: u64,
    /// Creation time, milliseconds since the Unix epoch.
    pub created_at_ms: u64,
    /// Holds its streams' data (consumption-based retention).
    pub subscriber: bool,
}

impl From<&pb::ReaderGroupInfo> for ReaderGroupView {
    fn from(g: &pb::ReaderGroupInfo) -> Self {
        let readers: Vec<ReaderView> = g
            .readers
            .iter()
            .map(|r| ReaderView {
                reader_id: r.reader_id.clone(),
                joined_at_ms: r.joined_at_ms,
                segments: r.segments.iter().map(SegmentPositionView::from).collect(),
            })
            .collect();
        let unassigned: Vec<SegmentPositionView> = g.unassigned.iter().map(SegmentPositionView::from).collect();
        let lag = readers.iter().flat_map(|r| &r.segments).chain(&unassigned).filter_map(|s| s.lag).sum();
        ReaderGroupView {
            scope: g.scope.clone(),
            group: g.group.clone(),
            streams: g.streams.clone(),
            generation: g.generation,
            readers,
            unassigned,
            pending_checkpoint: Some(g.pending_checkpoint.clone()).filter(|c| !c.is_empty()),
            checkpoint_waiting_for: g.checkpoint_waiting_for.clone(),
            checkpoints: g.checkpoints.clone(),
            lag,
            created_at_ms: g.created_at_ms,
            subscriber: g.subscriber,
        }
    }
}

/// The reader groups of a scope.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ReaderGroupListView {
    pub scope: String,
    /// Group names, sorted.
    pub groups: Vec<String>,
}

/// A checkpoint of a reader group.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct CheckpointView {
    pub name: String,
    /// True once every reader recorded its position.
    pub complete: bool,
    /// For a complete checkpoint: where a reset to it resumes.
    pub positions: Vec<SegmentPositionView>,
    /// For a pending checkpoint: the readers it waits for.
    pub waiting_for: Vec<String>,
}

impl From<&pb::CheckpointInfo> for CheckpointView {
    fn from(c: &pb::CheckpointInfo) -> Self {
        CheckpointView {
            name: c.name.clone(),
            complete: c.complete,
            positions: c.positions.iter().map(SegmentPositionView::from).collect(),
            waiting_for: c.waiting_for.clone(),
        }
    }
}

/// Parses a stream cut written as `STREAM/SEGMENT_ID=OFFSET,…` (the CLI's and HTTP's form).
pub fn parse_stream_cut(text: &str) -> Result<Vec<pb::SegmentPosition>, InvalidInput> {
    let bad = || InvalidInput(format!("stream cut {text:?} is not STREAM/SEGMENT_ID=OFFSET,…"));
    text.split(',')
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (seg, off) = p.split_once('=').ok_or_else(bad)?;
            let (stream, id) = seg.rsplit_once('/').ok_or_else(bad)?;
            Ok(pb::SegmentPosition {
                stream: stream.to_owned(),
                segment_id: id.parse().map_err(|_| bad())?,
                offset: off.parse().map_err(|_| bad())?,
            })
        })
        .collect()
}

/// One controller node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct MemberView {
    pub id: u64,
    pub grpc_address: String,
    pub http_address: String,
}

/// One segment store.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct StoreView {
    pub endpoint: String,
    #[serde(default)]
    pub store_id: String,
}

/// How far one replica is behind its container's leader.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct LagView {
    pub store_id: String,
    pub entries_behind: u64,
    pub bytes_behind: u64,
}

/// Which store serves a container and, for replicated containers placed by the controllers,
/// where its replicas are meant to be and its group as its leader reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ContainerView {
    pub container: u32,
    /// The store clients go to (the leader, for a replicated container).
    pub endpoint: String,
    #[serde(default)]
    pub store_id: String,
    /// Placed replicas (store ids), the preferred leader first.
    #[serde(default)]
    pub replicas: Vec<String>,
    /// The leader's term (0: none reported).
    #[serde(default)]
    pub term: u64,
    /// The group's voters (store ids), as its leader reports them.
    #[serde(default)]
    pub voters: Vec<String>,
    #[serde(default)]
    pub lag: Vec<LagView>,
    /// A change of the voters to `voters` is under way.
    #[serde(default)]
    pub changing: bool,
}

/// The cluster: controller members, leader, segment stores and container assignment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ClusterView {
    pub members: Vec<MemberView>,
    /// Id of the leader; 0 while there is none.
    pub leader_id: u64,
    pub segment_stores: Vec<StoreView>,
    pub containers: Vec<ContainerView>,
    /// Replicas per container of placed stores (0: no placed store yet).
    #[serde(default)]
    pub replication_factor: u32,
}

impl From<&pb::GetClusterInfoResponse> for ClusterView {
    fn from(c: &pb::GetClusterInfoResponse) -> Self {
        ClusterView {
            members: c
                .members
                .iter()
                .map(|m| MemberView {
                    id: m.id,
                    grpc_address: m.grpc_address.clone(),
                    http_address: m.http_address.clone(),
                })
                .collect(),
            leader_id: c.leader_id,
            segment_stores: c
                .segment_stores
                .iter()
                .map(|s| StoreView { endpoint: s.endpoint.clone(), store_id: s.store_id.clone() })
                .collect(),
            containers: c
                .containers
                .iter()
                .map(|a| ContainerView {
                    container: a.container,
                    endpoint: a.endpoint.clone(),
                    store_id: a.store_id.clone(),
                    replicas: a.replicas.clone(),
                    term: a.term,
                    voters: a.voters.clone(),
                    lag: a
                        .lag
                        .iter()
                        .map(|l| LagView {
                            store_id: l.store_id.clone(),
                            entries_behind: l.entries_behind,
                            bytes_behind: l.bytes_behind,
                        })
                        .collect(),
                    changing: a.changing,
                })
                .collect(),
            replication_factor: c.replication_factor,
        }
    }
}

/// A stream's lifecycle state as text.
pub fn state_name(state: i32) -> &'static str {
    match pb::StreamState::try_from(state) {
        Ok(pb::StreamState::Active) => "active",
        Ok(pb::StreamState::Sealed) => "sealed",
        Ok(pb::StreamState::Creating) => "creating",
        _ => "unknown",
    }
}

/// The text form of a stream's policies.
pub fn policy_view(c: &pb::StreamConfig) -> PolicyView {
    let s = c.scaling.unwrap_or_default();
    let scaling = match pb::scaling_policy::Kind::try_from(s.kind) {
        Ok(pb::scaling_policy::Kind::EventsPerSec) => {
            format!("events:{},{},{}", s.target_rate, s.scale_factor, s.min_segments)
        }
        Ok(pb::scaling_policy::Kind::Readers) => format!("readers:{}", s.min_segments),
        Ok(pb::scaling_policy::Kind::KbytesPerSec) => {
            format!("bytes:{},{},{}", s.target_rate, s.scale_factor, s.min_segments)
        }
        _ => "fixed".to_owned(),
    };
    let r = c.retention.unwrap_or_default();
    let retention = match pb::retention_policy::Kind::try_from(r.kind) {
        Ok(pb::retention_policy::Kind::Time) => {
            format!("time:{}", humantime::format_duration(Duration::from_millis(r.value)))
        }
        Ok(pb::retention_policy::Kind::Size) => format!("size:{}", r.value),
        Ok(pb::retention_policy::Kind::Consumption) => format!(
            "consumption:{},{}",
            humantime::format_duration(Duration::from_millis(r.value)),
            humantime::format_duration(Duration::from_millis(r.max_value))
        ),
        _ => "none".to_owned(),
    };
    PolicyView { scaling, retention }
}

fn invalid(m: String) -> InvalidInput {
    InvalidInput(m)
}

/// Parses `fixed`, `events:RATE,FACTOR,MIN`, `bytes:RATE,FACTOR,MIN` or `readers:MIN`. `fixed` keeps
/// `fixed_segments` segments.
pub fn parse_scaling(text: &str, fixed_segments: u32) -> Result<pb::ScalingPolicy, InvalidInput> {
    use pb::scaling_policy::Kind;
    let text = text.trim();
    if text == "fixed" {
        return Ok(pb::ScalingPolicy {
            kind: Kind::FixedUnspecified as i32,
            min_segments: fixed_segments,
            ..Default::default()
        });
    }
    let bad = || {
        invalid(format!("scaling {text:?} is not fixed, events:RATE,FACTOR,MIN, bytes:RATE,FACTOR,MIN or readers:MIN"))
    };
    let (kind, args) = text.split_once(':').ok_or_else(bad)?;
    if kind == "readers" {
        let min = args.trim().parse::<u32>().ok().filter(|n| (1..=1024).contains(n)).ok_or_else(bad)?;
        return Ok(pb::ScalingPolicy { kind: Kind::Readers as i32, min_segments: min, ..Default::default() });
    }
    let kind = match kind {
        "events" => Kind::EventsPerSec,
        "bytes" => Kind::KbytesPerSec,
        _ => return Err(bad()),
    };
    let nums: Vec<u32> =
        args.split(',').map(|n| n.trim().parse::<u32>()).collect::<Result<_, _>>().map_err(|_| bad())?;
    let [rate, factor, min] = nums[..] else { return Err(bad()) };
    Ok(pb::ScalingPolicy { kind: kind as i32, target_rate: rate, scale_factor: factor, min_segments: min })
}

/// Parses `none`, `time:DURATION` (like `10s`, `5m`, `7days`), `size:BYTES` (like `512MiB`) or
/// `consumption:MIN,MAX` (two durations, MIN <= MAX).
pub fn parse_retention(text: &str) -> Result<pb::RetentionPolicy, InvalidInput> {
    use pb::retention_policy::Kind;
    let text = text.trim();
    if text == "none" {
        return Ok(pb::RetentionPolicy { kind: Kind::NoneUnspecified as i32, value: 0, max_value: 0 });
    }
    let bad = |why: String| {
        invalid(format!("retention {text:?} is not none, time:DURATION, size:BYTES or consumption:MIN,MAX ({why})"))
    };
    let ms = |d: &str| -> Result<u64, InvalidInput> {
        let d = humantime::parse_duration(d.trim()).map_err(|e| bad(e.to_string()))?;
        u64::try_from(d.as_millis()).map_err(|_| bad("too long".into()))
    };
    let (kind, arg) = text.split_once(':').ok_or_else(|| bad("no kind".into()))?;
    let (kind, value) = match kind {
        "time" => (Kind::Time, ms(arg)?),
        "consumption" => {
            let (min, max) = arg.split_once(',').ok_or_else(|| bad("give MIN,MAX".into()))?;
            let (min, max) = (ms(min)?, ms(max)?);
            if min > max {
                return Err(bad("MIN is greater than MAX".into()));
            }
            if max == 0 {
                return Err(bad("MAX must be greater than zero".into()));
            }
            return Ok(pb::RetentionPolicy { kind: Kind::Consumption as i32, value: min, max_value: max });
        }
        "size" => {
            let b: bytesize::ByteSize = arg.trim().parse().map_err(|e: String| bad(e))?;
            (Kind::Size, b.as_u64())
        }
        _ => return Err(bad(format!("unknown kind {kind:?}"))),
    };
    if value == 0 {
        return Err(bad("the limit must be greater than zero".into()));
    }
    Ok(pb::RetentionPolicy { kind: kind as i32, value, max_value: 0 })
}

/// The config of a new stream from `--segments`, `--scaling` and `--retention` (or the same
/// fields of the HTTP body). `segments` (default 1, at most 1024) goes with `fixed` scaling;
/// `events`/`bytes` streams start with their MIN segments.
pub fn create_config(
    segments: Option<u32>,
    scaling: Option<&str>,
    retention: Option<&str>,
) -> Result<pb::StreamConfig, InvalidInput> {
    let n = segments.unwrap_or(1);
    if !(1..=1024).contains(&n) {
        return Err(invalid(format!("a stream needs 1..=1024 segments, not {n}")));
    }
    let scaling = parse_scaling(scaling.unwrap_or("fixed"), n)?;
    if segments.is_some() && scaling.kind != pb::scaling_policy::Kind::FixedUnspecified as i32 {
        return Err(invalid("segments goes with fixed scaling; events/bytes streams start with MIN segments".into()));
    }
    let retention = parse_retention(retention.unwrap_or("none"))?;
    Ok(pb::StreamConfig { scaling: Some(scaling), retention: Some(retention) })
}

/// The config change of `stream update`: only the parts given. `fixed` keeps the stream's
/// current number of active segments.
pub fn update_config(
    info: &pb::StreamInfo,
    scaling: Option<&str>,
    retention: Option<&str>,
) -> Result<pb::StreamConfig, InvalidInput> {
    if scaling.is_none() && retention.is_none() {
        return Err(invalid("nothing to update: give scaling and/or retention".into()));
    }
    let fixed = info.active_segments.len().max(1) as u32;
    Ok(pb::StreamConfig {
        scaling: scaling.map(|s| parse_scaling(s, fixed)).transpose()?,
        retention: retention.map(parse_retention).transpose()?,
    })
}

/// One segment's position in a stream cut.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SegmentOffsetView {
    /// Packed segment id `(epoch << 32) | number`.
    pub segment_id: u64,
    /// Offset of the next event (an event boundary).
    pub offset: u64,
}

/// A stream's event-time watermark (`nadi stream watermarks`): writers' time notes as the
/// controller leader holds them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct WatermarksView {
    pub scope: String,
    pub stream: String,
    /// The newest watermark (ms), `None` while the stream has none.
    pub watermark_ms: Option<u64>,
    /// Watermarks the leader keeps (at most 256).
    pub kept: usize,
    /// Writers holding the watermark now (noted within their idle timeout, not closed).
    pub active_writers: u32,
    /// Writers whose idle timeout passed since their last note.
    pub idle_writers: u32,
    /// Segments in the newest watermark's cut.
    pub cut_segments: usize,
}

impl WatermarksView {
    /// The view of a `GetWatermarks` answer.
    pub fn new(scope: &str, stream: &str, w: &pb::GetWatermarksResponse) -> WatermarksView {
        let last = w.watermarks.last();
        WatermarksView {
            scope: scope.to_owned(),
            stream: stream.to_owned(),
            watermark_ms: last.map(|m| m.time_ms),
            kept: w.watermarks.len(),
            active_writers: w.active_writers,
            idle_writers: w.idle_writers,
            cut_segments: last.map_or(0, |m| m.cut.len()),
        }
    }
}

/// A stream cut: one position per segment, the segments tiling [0, 1).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct StreamCutView {
    pub scope: String,
    pub stream: String,
    /// Sorted by the segments' key ranges.
    pub cut: Vec<SegmentOffsetView>,
}

impl StreamCutView {
    /// The view of a cut as the controller returns it.
    pub fn new(scope: &str, stream: &str, cut: &[pb::SegmentOffset]) -> StreamCutView {
        StreamCutView {
            scope: scope.to_owned(),
            stream: stream.to_owned(),
            cut: cut.iter().map(|c| SegmentOffsetView { segment_id: c.segment_id, offset: c.offset }).collect(),
        }
    }
}

/// Body of a truncation: where to cut, as a stream cut or a time (exactly one of the two).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TruncateBody {
    /// Segments tiling [0, 1), each with an event-boundary offset (e.g. a cut from `…/cut`).
    #[serde(default)]
    pub cut: Vec<SegmentOffsetView>,
    /// Truncate before this time instead: every event appended before it goes (the cut at
    /// the time, as `GET …/cut?at=`). RFC 3339 or milliseconds since the Unix epoch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub before: Option<String>,
}

/// The result of a truncation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct TruncatedView {
    pub scope: String,
    pub stream: String,
    /// The new head.
    pub head: Vec<SegmentOffsetView>,
    /// Segments deleted because they lay wholly before the cut.
    pub deleted_segments: u32,
}

/// Parses `ID:OFFSET,ID:OFFSET…` (the CLI's form of a cut).
pub fn parse_cut(s: &str) -> Result<Vec<SegmentOffsetView>, InvalidInput> {
    s.split(',')
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (id, off) = p
                .split_once(':')
                .ok_or_else(|| InvalidInput(format!("cut position {p:?} must be SEGMENT_ID:OFFSET")))?;
            let segment_id = id.parse().map_err(|_| InvalidInput(format!("segment id {id:?} is not a number")))?;
            let offset = off.parse().map_err(|_| InvalidInput(format!("offset {off:?} is not a number")))?;
            Ok(SegmentOffsetView { segment_id, offset })
        })
        .collect()
}

/// A scale request in the form both front ends take: exactly one of `split` (with optional
/// `into`, default 2), `merge`, or `sealed` with `new_ranges`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ScaleBody {
    /// Id of an active segment to split into `into` equal parts.
    pub split: Option<u64>,
    /// Parts of a split, 2..=1024 (default 2).
    pub into: Option<u32>,
    /// Ids of two or more adjacent active segments to merge into one.
    pub merge: Option<Vec<u64>>,
    /// Raw form: ids of the segments to seal ...
    pub sealed: Option<Vec<u64>>,
    /// ... and the `[low, high)` ranges of their successors.
    pub new_ranges: Option<Vec<[f64; 2]>>,
}

/// Turns a split/merge/raw request into the `ScaleStream` request, using the stream's active
/// segments. Ids that are not active are passed on as they are, so the controller answers with
/// the precise error (`NOT_FOUND_SEGMENT` or `SEALED`) for them.
pub fn plan_scale(info: &pb::StreamInfo, body: &ScaleBody) -> Result<pb::ScaleStreamRequest, InvalidInput> {
    let active = |id: u64| info.active_segments.iter().find(|s| s.id == id);
    let range = |low, high| pb::KeyRange { low, high };
    let (sealed, new_ranges) = match (body.split, &body.merge, &body.sealed) {
        (Some(id), None, None) => {
            let n = body.into.unwrap_or(2);
            if !(2..=1024).contains(&n) {
                return Err(invalid(format!("a split makes 2..=1024 segments, not {n}")));
            }
            match active(id) {
                Some(s) => {
                    let ranges = crate::routing::split_range(s.key_low, s.key_high, n);
                    (vec![id], ranges.into_iter().map(|(l, h)| range(l, h)).collect())
                }
                None => (vec![id], vec![range(0.0, 1.0)]),
            }
        }
        (None, Some(ids), None) if body.into.is_none() => {
            if ids.len() < 2 {
                return Err(invalid("a merge needs at least two segment ids".into()));
            }
            let mut segs = Vec::with_capacity(ids.len());
            for (i, id) in ids.iter().enumerate() {
                if ids[..i].contains(id) {
                    return Err(invalid(format!("segment id {id} is listed twice")));
                }
                match active(*id) {
                    Some(s) => segs.push(s),
                    None => {
                        return Ok(pb::ScaleStreamRequest {
                            scope: info.scope.clone(),
                            stream: info.stream.clone(),
                            sealed_segment_ids: vec![*id],
                            new_ranges: vec![range(0.0, 1.0)],
                        });
                    }
                }
            }
            segs.sort_by(|a, b| a.key_low.total_cmp(&b.key_low));
            for w in segs.windows(2) {
                if w[0].key_high != w[1].key_low {
                    return Err(invalid(format!(
                        "segments {} and {} are not adjacent; only neighbouring segments can merge",
                        w[0].id, w[1].id
                    )));
                }
            }
            let (low, high) = (segs[0].key_low, segs[segs.len() - 1].key_high);
            (ids.clone(), vec![range(low, high)])
        }
        (None, None, Some(ids)) if body.into.is_none() => {
            let Some(ranges) = &body.new_ranges else {
                return Err(invalid("`sealed` needs `new_ranges`".into()));
            };
            (ids.clone(), ranges.iter().map(|[l, h]| range(*l, *h)).collect())
        }
        _ => {
            return Err(invalid(
                "give exactly one of `split` (with optional `into`), `merge`, or `sealed` with `new_ranges`".into(),
            ));
        }
    };
    if body.new_ranges.is_some() && body.sealed.is_none() {
        return Err(invalid("`new_ranges` goes only with `sealed`".into()));
    }
    Ok(pb::ScaleStreamRequest {
        scope: info.scope.clone(),
        stream: info.stream.clone(),
        sealed_segment_ids: sealed,
        new_ranges,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policies_round_trip_through_text() {
        for text in ["events:100,2,3", "bytes:1024,4,1"] {
            let p = pb::StreamConfig { scaling: Some(parse_scaling(text, 1).unwrap()), retention: None };
            assert_eq!(policy_view(&p).scaling, text);
        }
        for text in ["time:10s", "time:5m", "size:536870912", "none"] {
            let p = pb::StreamConfig { scaling: None, retention: Some(parse_retention(text).unwrap()) };
            assert_eq!(policy_view(&p).retention, text);
        }
        assert_eq!(parse_retention("size:512MiB").unwrap().value, 512 << 20);
        assert_eq!(parse_retention("time:1h").unwrap().value, 3_600_000);
        for bad in ["time:", "time:0s", "size:lots", "forever", "time:-1s"] {
            assert!(parse_retention(bad).is_err(), "{bad}");
        }
        for bad in ["events:1,2", "events:a,b,c", "bytes", "linear:1,2,3", "events:1,2,3,4"] {
            assert!(parse_scaling(bad, 1).is_err(), "{bad}");
        }
    }

    fn info(bounds: &[f64]) -> pb::StreamInfo {
        pb::StreamInfo {
            scope: "s".into(),
            stream: "t".into(),
            active_segments: bounds
                .windows(2)
                .enumerate()
                .map(|(i, w)| pb::Segment { id: i as u64, key_low: w[0], key_high: w[1], ..Default::default() })
                .collect(),
            ..Default::default()
        }
    }

    #[test]
    fn split_and_merge_plans() {
        let i = info(&[0.0, 0.5, 0.75, 1.0]);
        let split = plan_scale(&i, &ScaleBody { split: Some(1), into: Some(5), ..Default::default() }).unwrap();
        assert_eq!(split.sealed_segment_ids, vec![1]);
        assert_eq!(split.new_ranges.len(), 5);
        assert_eq!(split.new_ranges[0].low, 0.5);
        assert_eq!(split.new_ranges[4].high, 0.75);
        let merge = plan_scale(&i, &ScaleBody { merge: Some(vec![2, 1]), ..Default::default() }).unwrap();
        assert_eq!(merge.new_ranges, vec![pb::KeyRange { low: 0.5, high: 1.0 }]);
        let invalid = |b: ScaleBody| assert!(plan_scale(&i, &b).is_err(), "{b:?}");
        invalid(ScaleBody { merge: Some(vec![0, 2]), ..Default::default() });
        invalid(ScaleBody { merge: Some(vec![0]), ..Default::default() });
        invalid(ScaleBody { merge: Some(vec![0, 0]), ..Default::default() });
        invalid(ScaleBody { split: Some(0), into: Some(1), ..Default::default() });
        invalid(ScaleBody { split: Some(0), merge: Some(vec![0, 1]), ..Default::default() });
        invalid(ScaleBody::default());
        invalid(ScaleBody { sealed: Some(vec![0]), ..Default::default() });
        invalid(ScaleBody { merge: Some(vec![0, 1]), new_ranges: Some(vec![[0.0, 0.75]]), ..Default::default() });
        // Unknown ids go to the controller as they are, for its precise error.
        let unknown = plan_scale(&i, &ScaleBody { split: Some(99), ..Default::default() }).unwrap();
        assert_eq!(unknown.sealed_segment_ids, vec![99]);
    }
}
