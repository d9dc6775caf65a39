//! The controller's metadata state machine.
//!
//! Invariants kept by [`ControllerState::apply`]:
//! - the active segments of a stream exactly cover the key space `[0, 1)`, without overlap;
//! - segment numbers are unique within a stream across all epochs, ids are `(epoch << 32) | number`;
//! - a stream in `Creating` state is invisible to list/get until its segments exist;
//! - `apply` is deterministic: commands carry their own timestamps;
//! - at most one scale is pending per stream. While it is, its successors are recorded (with
//!   predecessor/successor links, so `GetSuccessors` already answers) but the current epoch is
//!   unchanged; completing it makes the new epoch current and seals the predecessors in one step.

use std::collections::BTreeMap;

use nadi_proto::SegmentId;
use nadi_proto::routing::split_range;
use serde::{Deserialize, Serialize};

use crate::MetaError;

/// How a stream scales. Mirrors `nadi.controller.v1.ScalingPolicy`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Scaling {
    Fixed {
        segments: u32,
    },
    EventsPerSec {
        rate: u32,
        factor: u32,
        min_segments: u32,
    },
    KbytesPerSec {
        rate: u32,
        factor: u32,
        min_segments: u32,
    },
    /// At least as many segments as the largest subscriber group has readers (`readers:MIN`).
    Readers {
        min_segments: u32,
    },
}

impl Scaling {
    /// Segments of the first epoch.
    pub fn initial_segments(&self) -> u32 {
        match *self {
            Scaling::Fixed { segments } => segments,
            Scaling::EventsPerSec { min_segments, .. }
            | Scaling::KbytesPerSec { min_segments, .. }
            | Scaling::Readers { min_segments } => min_segments,
        }
    }
}

/// How long data is kept. Mirrors `nadi.controller.v1.RetentionPolicy`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Retention {
    None,
    TimeMs(u64),
    Bytes(u64),
    /// Until every subscriber group has passed the data, but at least `min_ms` and at most
    /// `max_ms` of it.
    Consumption {
        min_ms: u64,
        max_ms: u64,
    },
}

/// A stream's configuration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StreamConfig {
    pub scaling: Scaling,
    pub retention: Retention,
}

/// Largest number of segments a stream may be created with.
pub const MAX_INITIAL_SEGMENTS: u32 = 1024;

/// Lifecycle of a stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum StreamState {
    Creating,
    Active,
    Sealed,
}

/// One segment's record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SegmentRecord {
    pub id: SegmentId,
    pub key_low: f64,
    pub key_high: f64,
    pub created_at_ms: u64,
    pub sealed: bool,
    pub predecessors: Vec<SegmentId>,
    pub successors: Vec<SegmentId>,
    /// The segment's qualified name when it is not the one computed from its id: a transaction
    /// segment promoted to a stream segment by a rolling commit keeps the name it was written
    /// under (`{parent}#txn.{id}`), because its data is already stored under that name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Deleted by a truncation: it lay wholly before the stream's head.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub deleted: bool,
}

/// Why an epoch began. Reported in a stream's history.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum EpochReason {
    /// The stream's first epoch.
    #[default]
    Created,
    /// An operator's `ScaleStream` request.
    Manual,
    /// Automatic split of a hot segment (auto-scaling, later).
    SplitByLoad,
    /// Automatic merge of cold segments (auto-scaling, later).
    MergeByLoad,
    /// A transaction committed after the stream was scaled: its segments became this epoch's
    /// segments (a rolling commit, see docs/transactions.md).
    TxnCommit,
    /// Automatic split: a subscriber group has more readers than the stream has segments.
    SplitByReaders,
    /// Automatic merge: the subscriber groups have fewer readers than the stream has segments.
    MergeByReaders,
}

/// One epoch: the set of segments active between two scaling events.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Epoch {
    pub epoch: u32,
    pub created_at_ms: u64,
    pub segments: Vec<SegmentId>,
    /// What started this epoch (state written before reasons existed reads as `Created`).
    #[serde(default)]
    pub reason: EpochReason,
}

/// A scale that was started but not completed: its successors are recorded and linked, the
/// predecessors are still the current epoch's. The workflow (or `resume` after a crash) creates
/// the successors on the store, seals the predecessors and then proposes [`Command::CompleteScale`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PendingScale {
    /// The epoch the scale creates (current epoch + 1).
    pub epoch: u32,
    /// The segments being replaced, in the order given.
    pub sealed: Vec<SegmentId>,
    /// The new segments, sorted by key range.
    pub successors: Vec<SegmentId>,
    pub reason: EpochReason,
    pub started_at_ms: u64,
}

/// Boundaries closer than this are the same boundary: it absorbs f64 noise in key ranges sent
/// by clients (for example `1/3` printed and parsed back) so that it is neither a gap nor an
/// overlap. Key ranges narrower than this are refused.
pub const KEY_EPSILON: f64 = 1e-9;

/// Largest number of successors one scale may create.
pub const MAX_SCALE_SUCCESSORS: usize = 1024;

/// A stream's metadata.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StreamMeta {
    pub config: StreamConfig,
    pub state: StreamState,
    pub created_at_ms: u64,
    pub epochs: Vec<Epoch>,
    /// All segments ever, by number.
    pub segments: BTreeMap<u32, SegmentRecord>,
    /// The scale in progress, if any.
    #[serde(default)]
    pub pending_scale: Option<PendingScale>,
    /// The head set by the last truncation: segments tiling [0, 1) with their start offsets.
    /// Empty: the stream was never truncated, its head is epoch 0 at offset 0.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub head: Vec<(SegmentId, u64)>,
    /// A truncation recorded but not yet applied on the segment stores.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pending_truncation: Option<Truncation>,
    /// Scaling decisions the auto-scaler held back, newest last (at most [`MAX_SCALING_NOTES`]).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub scaling_notes: Vec<ScalingNote>,
}

/// How many scaling notes a stream keeps.
pub const MAX_SCALING_NOTES: usize = 64;

/// A scaling decision the auto-scaler held back (shown in the stream's history).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScalingNote {
    pub at_ms: u64,
    pub segment: SegmentId,
    pub text: String,
}

/// A truncation in progress: the new head, and the segments wholly before it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Truncation {
    pub cut: Vec<(SegmentId, u64)>,
    pub delete: Vec<SegmentId>,
}

impl StreamMeta {
    /// The head of the stream: where a reader from the beginning starts, sorted by key range.
    /// Offsets are the truncation offsets (0 if never truncated; the store's start offset is
    /// authoritative).
    pub fn head_segments(&self) -> Vec<(&SegmentRecord, u64)> {
        let mut segs: Vec<_> = if self.head.is_empty() {
            self.epochs[0].segments.iter().filter_map(|id| self.segment(*id)).map(|s| (s, 0)).collect()
        } else {
            self.head.iter().filter_map(|(id, off)| self.segment(*id).map(|s| (s, *off))).collect()
        };
        segs.sort_by(|a, b| a.0.key_low.total_cmp(&b.0.key_low));
        segs
    }

    /// Every transitive predecessor of `ids` (not including `ids`).
    pub fn ancestors(&self, ids: &[SegmentId]) -> std::collections::BTreeSet<SegmentId> {
        let mut out = std::collections::BTreeSet::new();
        let mut todo: Vec<SegmentId> = ids.to_vec();
        while let Some(id) = todo.pop() {
            if let Some(s) = self.segment(id) {
                for p in &s.predecessors {
                    if out.insert(*p) {
                        todo.push(*p);
                    }
                }
            }
        }
        out
    }

    /// Checks that `cut` is a stream cut of this stream (existing, not deleted segments whose
    /// ranges tile [0, 1), each once) at or after the current head; returns the segments that
    /// lie wholly before it and are not deleted yet.
    pub fn check_truncation(&self, name: &str, cut: &[(SegmentId, u64)]) -> Result<Vec<SegmentId>, MetaError> {
        let mut segs = Vec::with_capacity(cut.len());
        for (id, _) in cut {
            let s = self
                .segment(*id)
                .filter(|s| !s.deleted)
                .ok_or_else(|| MetaError::SegmentNotFound(format!("{name} segment {id}")))?;
            if segs.iter().any(|x: &&SegmentRecord| x.id == *id) {
                return Err(MetaError::InvalidArgument(format!("segment {id} appears twice in the cut")));
            }
            segs.push(s);
        }
        segs.sort_by(|a, b| a.key_low.total_cmp(&b.key_low));
        let mut at = 0.0;
        for s in &segs {
            if s.key_low != at {
                return Err(MetaError::InvalidArgument(format!(
                    "the cut's segments must tile [0, 1): nothing covers [{at}, {})",
                    s.key_low.max(at)
                )));
            }
            at = s.key_high;
        }
        if at != 1.0 {
            return Err(MetaError::InvalidArgument(format!(
                "the cut's segments must tile [0, 1): [{at}, 1) is not covered"
            )));
        }
        let ids: Vec<SegmentId> = cut.iter().map(|(id, _)| *id).collect();
        let before = self.ancestors(&ids);
        // A consistent cut: no segment of it precedes another one of it (a key's events would
        // be both before and after the cut).
        if let Some(id) = ids.iter().find(|id| before.contains(id)) {
            return Err(MetaError::InvalidArgument(format!(
                "segment {id} precedes another segment of the same cut; a cut holds one segment per key range and epoch line"
            )));
        }
        // Not before the current head: every head segment is in the cut (at an offset not
        // smaller) or wholly before it.
        for (h, off) in self.head_segments().into_iter().map(|(s, o)| (s.id, o)) {
            match cut.iter().find(|(id, _)| *id == h) {
                Some((_, o)) if *o < off => {
                    return Err(MetaError::InvalidArgument(format!(
                        "segment {h} is already truncated at {off}; the cut's {o} lies before the head"
                    )));
                }
                Some(_) => {}
                None if before.contains(&h) => {}
                None => {
                    return Err(MetaError::InvalidArgument(format!(
                        "the cut lies before the stream's head (head segment {h} is not before it)"
                    )));
                }
            }
        }
        Ok(before.into_iter().filter(|id| self.segment(*id).is_some_and(|s| !s.deleted)).collect())
    }

    /// The current epoch.
    pub fn current_epoch(&self) -> &Epoch {
        self.epochs.last().expect("a stream always has its first epoch")
    }

    /// The active segments, sorted by key range.
    pub fn active_segments(&self) -> Vec<&SegmentRecord> {
        let mut segs: Vec<_> =
            self.current_epoch().segments.iter().filter_map(|id| self.segments.get(&id.number())).collect();
        segs.sort_by(|a, b| a.key_low.total_cmp(&b.key_low));
        segs
    }

    /// A segment by id.
    pub fn segment(&self, id: SegmentId) -> Option<&SegmentRecord> {
        self.segments.get(&id.number()).filter(|s| s.id == id)
    }

    /// The qualified name of segment `id` of this stream (`scope/stream`): its explicit name if
    /// it has one (a promoted transaction segment), else the one computed from the id.
    pub fn segment_name(&self, scope: &str, stream: &str, id: SegmentId) -> String {
        match self.segment(id).and_then(|s| s.name.clone()) {
            Some(name) => name,
            None => segment_name_of(scope, stream, id),
        }
    }
}

impl SegmentRecord {
    /// This segment's qualified name in stream `scope/stream`.
    pub fn qualified_name(&self, scope: &str, stream: &str) -> String {
        self.name.clone().unwrap_or_else(|| segment_name_of(scope, stream, self.id))
    }
}

/// A scope.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct ScopeMeta {
    pub created_at_ms: u64,
    pub streams: BTreeMap<String, StreamMeta>,
}

/// A change to the metadata. Commands carry their own time so that applying is deterministic.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Command {
    CreateScope {
        scope: String,
        now_ms: u64,
    },
    DeleteScope {
        scope: String,
    },
    /// Records a new stream in `Creating` state with its first epoch.
    CreateStream {
        scope: String,
        stream: String,
        config: StreamConfig,
        now_ms: u64,
    },
    /// The stream's segments exist on the segment stores: make it visible.
    StreamCreated {
        scope: String,
        stream: String,
    },
    /// Every active segment was sealed on the segment stores.
    StreamSealed {
        scope: String,
        stream: String,
    },
    /// Every segment was deleted on the segment stores.
    DeleteStream {
        scope: String,
        stream: String,
    },
    /// Records a truncation at a stream cut (validated); the segment stores apply it next.
    TruncateStream {
        scope: String,
        stream: String,
        cut: Vec<(SegmentId, u64)>,
    },
    /// A segment store refused the truncation (an offset that is not an event boundary): it is
    /// dropped. Cut segments already truncated keep their new start (which only hides data a
    /// reader from the head would not have read).
    TruncationAborted {
        scope: String,
        stream: String,
        /// The cut of the truncation being dropped: a stale command for another one does nothing.
        cut: Vec<(SegmentId, u64)>,
    },
    /// The truncation was applied on the segment stores: the cut becomes the head, and the
    /// segments before it are marked deleted.
    TruncationDone {
        scope: String,
        stream: String,
        /// The cut of the truncation that was applied: a stale command for another one does
        /// nothing.
        cut: Vec<(SegmentId, u64)>,
    },
    /// Records a scaling decision the auto-scaler held back (kept in the stream's history).
    NoteScaling {
        scope: String,
        stream: String,
        segment: SegmentId,
        text: String,
        now_ms: u64,
    },
    /// Replaces a stream's policies. The active segments do not change.
    UpdateStreamConfig {
        scope: String,
        stream: String,
        config: StreamConfig,
    },
    /// Starts a scale: validates it and records the successors as [`PendingScale`]. `new_ranges`
    /// must exactly cover the union of the sealed segments' ranges.
    StartScale {
        scope: String,
        stream: String,
        sealed: Vec<SegmentId>,
        new_ranges: Vec<(f64, f64)>,
        reason: EpochReason,
        now_ms: u64,
        /// Existing segments that become the successors instead of new ones (a rolling
        /// transaction commit): their qualified names, in the order of `new_ranges` sorted by
        /// key. Empty for an ordinary scale.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        promoted: Vec<String>,
    },
    /// The successors exist and the predecessors are sealed on the stores: epoch `epoch` becomes
    /// current. Completing an already completed scale succeeds and changes nothing.
    CompleteScale {
        scope: String,
        stream: String,
        epoch: u32,
        now_ms: u64,
    },
}

/// The whole metadata.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct ControllerState {
    pub scopes: BTreeMap<String, ScopeMeta>,
}

impl ControllerState {
    /// A scope by name.
    pub fn scope(&self, scope: &str) -> Result<&ScopeMeta, MetaError> {
        self.scopes.get(scope).ok_or_else(|| MetaError::ScopeNotFound(scope.to_owned()))
    }

    /// A stream by name, including one still being created.
    pub fn stream_any(&self, scope: &str, stream: &str) -> Result<&StreamMeta, MetaError> {
        self.scope(scope)?.streams.get(stream).ok_or_else(|| MetaError::StreamNotFound(format!("{scope}/{stream}")))
    }

    /// A visible (created) stream by name.
    pub fn stream(&self, scope: &str, stream: &str) -> Result<&StreamMeta, MetaError> {
        let s = self.stream_any(scope, stream)?;
        if s.state == StreamState::Creating {
            return Err(MetaError::StreamNotFound(format!("{scope}/{stream}")));
        }
        Ok(s)
    }

    fn stream_mut(&mut self, scope: &str, stream: &str) -> Result<&mut StreamMeta, MetaError> {
        self.scopes
            .get_mut(scope)
            .ok_or_else(|| MetaError::ScopeNotFound(scope.to_owned()))?
            .streams
            .get_mut(stream)
            .ok_or_else(|| MetaError::StreamNotFound(format!("{scope}/{stream}")))
    }

    /// Applies one command. On error the state is unchanged.
    pub fn apply(&mut self, cmd: &Command) -> Result<(), MetaError> {
        match cmd {
            Command::CreateScope { scope, now_ms } => {
                if self.scopes.contains_key(scope) {
                    return Err(MetaError::ScopeExists(scope.clone()));
                }
                self.scopes.insert(scope.clone(), ScopeMeta { created_at_ms: *now_ms, streams: BTreeMap::new() });
            }
            Command::DeleteScope { scope } => {
                if !self.scope(scope)?.streams.is_empty() {
                    return Err(MetaError::ScopeNotEmpty(scope.clone()));
                }
                self.scopes.remove(scope);
            }
            Command::CreateStream { scope, stream, config, now_ms } => {
                let n = config.scaling.initial_segments();
                if n == 0 || n > MAX_INITIAL_SEGMENTS {
                    return Err(MetaError::InvalidArgument(format!(
                        "a stream needs 1..={MAX_INITIAL_SEGMENTS} segments, not {n}"
                    )));
                }
                let s = self.scopes.get_mut(scope).ok_or_else(|| MetaError::ScopeNotFound(scope.clone()))?;
                if s.streams.contains_key(stream) {
                    return Err(MetaError::StreamExists(format!("{scope}/{stream}")));
                }
                let mut segments = BTreeMap::new();
                let mut ids = Vec::new();
                for (i, (low, high)) in split_range(0.0, 1.0, n).into_iter().enumerate() {
                    let id = SegmentId::new(0, i as u32);
                    ids.push(id);
                    segments.insert(
                        i as u32,
                        SegmentRecord {
                            id,
                            key_low: low,
                            key_high: high,
                            created_at_ms: *now_ms,
                            sealed: false,
                            predecessors: vec![],
                            successors: vec![],
                            name: None,
                            deleted: false,
                        },
                    );
                }
                s.streams.insert(
                    stream.clone(),
                    StreamMeta {
                        config: config.clone(),
                        state: StreamState::Creating,
                        created_at_ms: *now_ms,
                        epochs: vec![Epoch {
                            epoch: 0,
                            created_at_ms: *now_ms,
                            segments: ids,
                            reason: EpochReason::Created,
                        }],
                        segments,
                        pending_scale: None,
                        head: Vec::new(),
                        scaling_notes: Vec::new(),
                        pending_truncation: None,
                    },
                );
            }
            Command::StreamCreated { scope, stream } => {
                let s = self.stream_mut(scope, stream)?;
                if s.state == StreamState::Creating {
                    s.state = StreamState::Active;
                }
            }
            Command::StreamSealed { scope, stream } => {
                let s = self.stream_mut(scope, stream)?;
                if s.pending_scale.is_some() {
                    return Err(MetaError::ScaleInProgress(format!("{scope}/{stream}")));
                }
                s.state = StreamState::Sealed;
                let active: Vec<_> = s.current_epoch().segments.clone();
                for id in active {
                    if let Some(seg) = s.segments.get_mut(&id.number()) {
                        seg.sealed = true;
                    }
                }
            }
            Command::DeleteStream { scope, stream } => {
                if self.stream_any(scope, stream)?.state != StreamState::Sealed {
                    return Err(MetaError::StreamNotSealed(format!("{scope}/{stream}")));
                }
                if let Some(s) = self.scopes.get_mut(scope) {
                    s.streams.remove(stream);
                }
            }
            Command::TruncateStream { scope, stream, cut } => {
                let name = format!("{scope}/{stream}");
                let m = self.stream(scope, stream)?;
                if m.pending_truncation.is_some() {
                    return Err(MetaError::ScaleInProgress(format!("{name} (a truncation is being applied)")));
                }
                // While a scale is in progress its successors exist but the segments they replace
                // still take writes: no cut may name them (their predecessors would be deleted).
                if m.pending_scale.is_some() {
                    return Err(MetaError::ScaleInProgress(format!("{name} (truncate after the scale completes)")));
                }
                let delete = m.check_truncation(&name, cut)?;
                let m = self.stream_mut(scope, stream)?;
                m.pending_truncation = Some(Truncation { cut: cut.clone(), delete });
            }
            Command::TruncationAborted { scope, stream, cut } => {
                let m = self.stream_mut(scope, stream)?;
                if m.pending_truncation.as_ref().is_some_and(|t| &t.cut == cut) {
                    m.pending_truncation = None;
                }
            }
            Command::TruncationDone { scope, stream, cut } => {
                let m = self.stream_mut(scope, stream)?;
                if m.pending_truncation.as_ref().is_some_and(|t| &t.cut == cut) {
                    let t = m.pending_truncation.take().expect("checked");
                    for id in &t.delete {
                        if let Some(s) = m.segments.get_mut(&id.number()).filter(|s| s.id == *id) {
                            s.deleted = true;
                        }
                    }
                    m.head = t.cut;
                }
            }
            Command::NoteScaling { scope, stream, segment, text, now_ms } => {
                let s = self.stream_mut(scope, stream)?;
                s.scaling_notes.push(ScalingNote { at_ms: *now_ms, segment: *segment, text: text.clone() });
                let excess = s.scaling_notes.len().saturating_sub(MAX_SCALING_NOTES);
                s.scaling_notes.drain(..excess);
            }
            Command::UpdateStreamConfig { scope, stream, config } => {
                let n = config.scaling.initial_segments();
                if n == 0 || n > MAX_INITIAL_SEGMENTS {
                    return Err(MetaError::InvalidArgument(format!(
                        "a scaling policy needs 1..={MAX_INITIAL_SEGMENTS} segments, not {n}"
                    )));
                }
                let name = format!("{scope}/{stream}");
                let s = self.stream(scope, stream)?;
                if s.state == StreamState::Sealed {
                    return Err(MetaError::StreamSealed(name));
                }
                self.stream_mut(scope, stream)?.config = config.clone();
            }
            Command::StartScale { scope, stream, sealed, new_ranges, reason, now_ms, promoted } => {
                if !promoted.is_empty() && promoted.len() != new_ranges.len() {
                    return Err(MetaError::InvalidArgument(format!(
                        "{} promoted segments for {} new key ranges",
                        promoted.len(),
                        new_ranges.len()
                    )));
                }
                let (pending, ranges) = self.plan_scale(scope, stream, sealed, new_ranges, *reason, *now_ms)?;
                let s = self.stream_mut(scope, stream)?;
                for (i, (id, &(low, high))) in pending.successors.iter().zip(&ranges).enumerate() {
                    let predecessors: Vec<SegmentId> = sealed
                        .iter()
                        .filter_map(|p| s.segment(*p))
                        .filter(|p| overlaps(p.key_low, p.key_high, low, high))
                        .map(|p| p.id)
                        .collect();
                    for p in &predecessors {
                        if let Some(rec) = s.segments.get_mut(&p.number()) {
                            rec.successors.push(*id);
                        }
                    }
                    s.segments.insert(
                        id.number(),
                        SegmentRecord {
                            id: *id,
                            key_low: low,
                            key_high: high,
                            created_at_ms: *now_ms,
                            sealed: false,
                            predecessors,
                            successors: vec![],
                            name: promoted.get(i).cloned(),
                            deleted: false,
                        },
                    );
                }
                s.pending_scale = Some(pending);
            }
            Command::CompleteScale { scope, stream, epoch, now_ms } => {
                let name = format!("{scope}/{stream}");
                let s = self.stream_mut(scope, stream)?;
                let Some(pending) = s.pending_scale.clone() else {
                    if s.current_epoch().epoch >= *epoch {
                        return Ok(()); // completed before: a retry
                    }
                    return Err(MetaError::InvalidArgument(format!("stream {name} has no scale to epoch {epoch}")));
                };
                if pending.epoch != *epoch {
                    return Err(MetaError::InvalidArgument(format!(
                        "stream {name} is scaling to epoch {}, not {epoch}",
                        pending.epoch
                    )));
                }
                let mut segments: Vec<SegmentId> =
                    s.current_epoch().segments.iter().copied().filter(|id| !pending.sealed.contains(id)).collect();
                segments.extend(pending.successors.iter().copied());
                for id in &pending.sealed {
                    if let Some(rec) = s.segments.get_mut(&id.number()) {
                        rec.sealed = true;
                    }
                }
                s.epochs.push(Epoch { epoch: *epoch, created_at_ms: *now_ms, segments, reason: pending.reason });
                s.pending_scale = None;
            }
        }
        Ok(())
    }

    /// Validates a scale and returns what [`Command::StartScale`] records, with the successors'
    /// snapped key ranges (in the order of `successors`). Does not change state.
    fn plan_scale(
        &self,
        scope: &str,
        stream: &str,
        sealed: &[SegmentId],
        new_ranges: &[(f64, f64)],
        reason: EpochReason,
        now_ms: u64,
    ) -> Result<(PendingScale, Vec<(f64, f64)>), MetaError> {
        let name = format!("{scope}/{stream}");
        let s = self.stream(scope, stream)?;
        if s.state == StreamState::Sealed {
            return Err(MetaError::StreamSealed(name));
        }
        if s.pending_scale.is_some() {
            return Err(MetaError::ScaleInProgress(name));
        }
        if sealed.is_empty() {
            return Err(MetaError::InvalidArgument("a scale must seal at least one segment".into()));
        }
        if new_ranges.is_empty() || new_ranges.len() > MAX_SCALE_SUCCESSORS {
            return Err(MetaError::InvalidArgument(format!(
                "a scale creates 1..={MAX_SCALE_SUCCESSORS} segments, not {}",
                new_ranges.len()
            )));
        }
        let current = s.current_epoch();
        let mut old: Vec<(f64, f64)> = Vec::with_capacity(sealed.len());
        for (i, id) in sealed.iter().enumerate() {
            if sealed[..i].contains(id) {
                return Err(MetaError::InvalidArgument(format!("segment id {} is listed twice", id.packed())));
            }
            let Some(rec) = s.segment(*id) else {
                return Err(MetaError::SegmentNotFound(format!(
                    "{} (id {}) of stream {name}",
                    segment_name_of(scope, stream, *id),
                    id.packed()
                )));
            };
            if !current.segments.contains(id) {
                return Err(MetaError::SegmentSealed(format!(
                    "{} (id {}) is not active in epoch {}",
                    segment_name_of(scope, stream, *id),
                    id.packed(),
                    current.epoch
                )));
            }
            old.push((rec.key_low, rec.key_high));
        }
        let ranges = snap_ranges(&old, new_ranges)?;
        let first_number = s.segments.keys().next_back().map_or(0, |n| n + 1);
        let epoch = current.epoch + 1;
        let successors = (0..new_ranges.len()).map(|i| SegmentId::new(epoch, first_number + i as u32)).collect();
        Ok((PendingScale { epoch, sealed: sealed.to_vec(), successors, reason, started_at_ms: now_ms }, ranges))
    }
}

fn segment_name_of(scope: &str, stream: &str, id: SegmentId) -> String {
    nadi_proto::names::segment_name(scope, stream, id)
}

fn overlaps(a_low: f64, a_high: f64, b_low: f64, b_high: f64) -> bool {
    a_low < b_high && b_low < a_high
}

/// Checks that `new` exactly covers the union of `old` (no gap, no overlap, nothing outside)
/// and returns `new` sorted by key, with every boundary within [`KEY_EPSILON`] of an old
/// boundary or of its neighbour's snapped to it, so the result tiles the union exactly.
pub fn snap_ranges(old: &[(f64, f64)], new: &[(f64, f64)]) -> Result<Vec<(f64, f64)>, MetaError> {
    let invalid = |m: String| Err(MetaError::InvalidArgument(m));
    for &(low, high) in new {
        if !(low.is_finite() && high.is_finite()) || low < -KEY_EPSILON || high > 1.0 + KEY_EPSILON {
            return invalid(format!("key range [{low}, {high}) is not within [0, 1)"));
        }
        if high - low <= KEY_EPSILON {
            return invalid(format!("key range [{low}, {high}) is empty or reversed"));
        }
    }
    // The union of the old ranges as disjoint intervals, in key order.
    let mut old = old.to_vec();
    old.sort_by(|a, b| a.0.total_cmp(&b.0));
    let mut union: Vec<(f64, f64)> = Vec::new();
    for (low, high) in old {
        match union.last_mut() {
            Some(last) if (low - last.1).abs() <= KEY_EPSILON => last.1 = high,
            _ => union.push((low, high)),
        }
    }
    let mut sorted = new.to_vec();
    sorted.sort_by(|a, b| a.0.total_cmp(&b.0));
    let mut out = Vec::with_capacity(sorted.len());
    let mut next = sorted.into_iter().peekable();
    for (u_low, u_high) in union {
        let mut at = u_low;
        while at < u_high - KEY_EPSILON {
            let Some(&(low, high)) = next.peek() else {
                return invalid(format!("the new key ranges leave [{at}, {u_high}) uncovered (a gap)"));
            };
            if low > at + KEY_EPSILON {
                return invalid(format!("the new key ranges leave a gap [{at}, {low})"));
            }
            if low < at - KEY_EPSILON {
                return invalid(format!(
                    "the new key range [{low}, {high}) overlaps another one or a segment that is not being sealed"
                ));
            }
            if high > u_high + KEY_EPSILON {
                return invalid(format!(
                    "the new key range [{low}, {high}) reaches beyond the sealed segments' ranges (up to {u_high})"
                ));
            }
            let high = if (high - u_high).abs() <= KEY_EPSILON { u_high } else { high };
            if high - at <= KEY_EPSILON {
                return invalid(format!("key range [{low}, {high}) is empty after snapping to {at}"));
            }
            out.push((at, high));
            at = high;
            next.next();
        }
    }
    if let Some((low, high)) = next.next() {
        return invalid(format!(
            "the new key range [{low}, {high}) overlaps another one or lies outside the sealed segments' ranges"
        ));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(n: u32) -> StreamConfig {
        StreamConfig { scaling: Scaling::Fixed { segments: n }, retention: Retention::None }
    }

    #[test]
    fn truncation_cuts_must_be_consistent_and_move_forward() {
        let mut st = ControllerState::default();
        st.apply(&Command::CreateScope { scope: "s".into(), now_ms: 1 }).unwrap();
        st.apply(&Command::CreateStream { scope: "s".into(), stream: "t".into(), config: cfg(2), now_ms: 1 }).unwrap();
        st.apply(&Command::StreamCreated { scope: "s".into(), stream: "t".into() }).unwrap();
        let scale = |st: &mut ControllerState, sealed: Vec<SegmentId>, ranges: Vec<(f64, f64)>| {
            let start = Command::StartScale {
                scope: "s".into(),
                stream: "t".into(),
                sealed,
                new_ranges: ranges,
                reason: EpochReason::Manual,
                now_ms: 2,
                promoted: vec![],
            };
            st.apply(&start).unwrap();
            let epoch = st.stream("s", "t").unwrap().pending_scale.as_ref().unwrap().epoch;
            st.apply(&Command::CompleteScale { scope: "s".into(), stream: "t".into(), epoch, now_ms: 3 }).unwrap();
        };
        let (h, p) = (SegmentId::new(0, 0), SegmentId::new(0, 1));
        scale(&mut st, vec![h, p], vec![(0.0, 1.0)]); // merge into S
        let s_id = st.stream("s", "t").unwrap().active_segments()[0].id;
        scale(&mut st, vec![s_id], vec![(0.0, 0.5), (0.5, 1.0)]); // split S
        let act: Vec<SegmentId> = st.stream("s", "t").unwrap().active_segments().iter().map(|x| x.id).collect();
        let m = st.stream("s", "t").unwrap();
        // H and R2 tile [0, 1) but H precedes R2.
        assert!(matches!(m.check_truncation("s/t", &[(h, 0), (act[1], 0)]), Err(MetaError::InvalidArgument(_))));
        // A gap, an unknown segment, a duplicate.
        assert!(matches!(m.check_truncation("s/t", &[(act[0], 0)]), Err(MetaError::InvalidArgument(_))));
        assert!(matches!(
            m.check_truncation("s/t", &[(act[0], 0), (SegmentId::new(9, 9), 0)]),
            Err(MetaError::SegmentNotFound(_))
        ));
        assert!(matches!(m.check_truncation("s/t", &[(h, 0), (h, 0)]), Err(MetaError::InvalidArgument(_))));
        // The head itself deletes nothing; the active segments delete S, H and P.
        assert!(m.check_truncation("s/t", &[(h, 0), (p, 0)]).unwrap().is_empty());
        let cut = vec![(act[0], 10), (act[1], 20)];
        let mut before = m.check_truncation("s/t", &cut).unwrap();
        before.sort();
        let mut want = vec![h, p, s_id];
        want.sort();
        assert_eq!(before, want);
        st.apply(&Command::TruncateStream { scope: "s".into(), stream: "t".into(), cut: cut.clone() }).unwrap();
        // A stale completion of another truncation changes nothing.
        let stale =
            Command::TruncationDone { scope: "s".into(), stream: "t".into(), cut: vec![(act[0], 1), (act[1], 1)] };
        st.apply(&stale).unwrap();
        assert!(st.stream("s", "t").unwrap().pending_truncation.is_some());
        st.apply(&Command::TruncationDone { scope: "s".into(), stream: "t".into(), cut: cut.clone() }).unwrap();
        let m = st.stream("s", "t").unwrap();
        assert_eq!(m.head, cut);
        assert!(m.segment(h).unwrap().deleted && m.segment(s_id).unwrap().deleted);
        // Going back is refused: a deleted segment, or an offset before the head's.
        let before_state = st.clone();
        let back = Command::TruncateStream { scope: "s".into(), stream: "t".into(), cut: vec![(h, 0), (p, 0)] };
        assert!(matches!(st.apply(&back), Err(MetaError::SegmentNotFound(_))));
        let back =
            Command::TruncateStream { scope: "s".into(), stream: "t".into(), cut: vec![(act[0], 5), (act[1], 20)] };
        assert!(matches!(st.apply(&back), Err(MetaError::InvalidArgument(_))));
        assert_eq!(st, before_state);
        // No truncation while a scale is in progress (its successors exist, its predecessors
        // still take writes).
        let start = Command::StartScale {
            scope: "s".into(),
            stream: "t".into(),
            sealed: vec![act[0]],
            new_ranges: vec![(0.0, 0.25), (0.25, 0.5)],
            reason: EpochReason::Manual,
            now_ms: 9,
            promoted: vec![],
        };
        st.apply(&start).unwrap();
        let succ: Vec<SegmentId> = st.stream("s", "t").unwrap().pending_scale.as_ref().unwrap().successors.clone();
        let during = st.clone();
        let cut = vec![(succ[0], 0), (succ[1], 0), (act[1], 20)];
        let t = Command::TruncateStream { scope: "s".into(), stream: "t".into(), cut };
        assert!(matches!(st.apply(&t), Err(MetaError::ScaleInProgress(_))));
        assert_eq!(st, during);
    }

    #[test]
    fn create_stream_covers_the_key_space() {
        let mut st = ControllerState::default();
        st.apply(&Command::CreateScope { scope: "s".into(), now_ms: 1 }).unwrap();
        let create = Command::CreateStream { scope: "s".into(), stream: "t".into(), config: cfg(7), now_ms: 2 };
        st.apply(&create).unwrap();
        assert!(matches!(st.stream("s", "t"), Err(MetaError::StreamNotFound(_))), "invisible while creating");
        st.apply(&Command::StreamCreated { scope: "s".into(), stream: "t".into() }).unwrap();
        let segs = st.stream("s", "t").unwrap().active_segments();
        assert_eq!(segs.len(), 7);
        assert_eq!(segs[0].key_low, 0.0);
        assert_eq!(segs[6].key_high, 1.0);
        for w in segs.windows(2) {
            assert_eq!(w[0].key_high, w[1].key_low);
        }
        assert!(matches!(st.apply(&create), Err(MetaError::StreamExists(_))));
    }

    #[test]
    fn errors_leave_state_unchanged() {
        let mut st = ControllerState::default();
        let before = st.clone();
        assert!(
            st.apply(&Command::CreateStream { scope: "nope".into(), stream: "t".into(), config: cfg(1), now_ms: 0 })
                .is_err()
        );
        st.apply(&Command::CreateScope { scope: "s".into(), now_ms: 0 }).unwrap();
        let with_scope = st.clone();
        assert!(
            st.apply(&Command::CreateStream { scope: "s".into(), stream: "t".into(), config: cfg(0), now_ms: 0 })
                .is_err()
        );
        assert_eq!(st, with_scope);
        assert_ne!(st, before);
        st.apply(&Command::CreateStream { scope: "s".into(), stream: "t".into(), config: cfg(2), now_ms: 0 }).unwrap();
        assert!(matches!(st.apply(&Command::DeleteScope { scope: "s".into() }), Err(MetaError::ScopeNotEmpty(_))));
        assert!(matches!(
            st.apply(&Command::DeleteStream { scope: "s".into(), stream: "t".into() }),
            Err(MetaError::StreamNotSealed(_))
        ));
        st.apply(&Command::StreamSealed { scope: "s".into(), stream: "t".into() }).unwrap();
        st.apply(&Command::DeleteStream { scope: "s".into(), stream: "t".into() }).unwrap();
        st.apply(&Command::DeleteScope { scope: "s".into() }).unwrap();
        assert_eq!(st, before);
    }

    fn two_segment_stream() -> ControllerState {
        let mut st = ControllerState::default();
        st.apply(&Command::CreateScope { scope: "s".into(), now_ms: 1 }).unwrap();
        st.apply(&Command::CreateStream { scope: "s".into(), stream: "t".into(), config: cfg(2), now_ms: 2 }).unwrap();
        st.apply(&Command::StreamCreated { scope: "s".into(), stream: "t".into() }).unwrap();
        st
    }

    fn start(sealed: &[SegmentId], ranges: &[(f64, f64)]) -> Command {
        Command::StartScale {
            scope: "s".into(),
            stream: "t".into(),
            sealed: sealed.to_vec(),
            new_ranges: ranges.to_vec(),
            reason: EpochReason::Manual,
            now_ms: 10,
            promoted: vec![],
        }
    }

    fn complete(epoch: u32) -> Command {
        Command::CompleteScale { scope: "s".into(), stream: "t".into(), epoch, now_ms: 11 }
    }

    /// Applies `cmd`, expects it to fail, and checks that the state did not change.
    fn refused(st: &mut ControllerState, cmd: &Command) -> MetaError {
        let before = st.clone();
        let err = st.apply(cmd).expect_err("command should be refused");
        assert_eq!(*st, before, "a refused command changed the state");
        err
    }

    fn assert_tiles_key_space(m: &StreamMeta) {
        let segs = m.active_segments();
        assert_eq!(segs[0].key_low, 0.0);
        assert_eq!(segs.last().unwrap().key_high, 1.0);
        for w in segs.windows(2) {
            assert_eq!(w[0].key_high, w[1].key_low, "active segments must tile [0, 1) exactly");
        }
    }

    #[test]
    fn split_then_merge_links_segments_and_moves_epochs() {
        let mut st = two_segment_stream();
        let (s0, s1) = (SegmentId::new(0, 0), SegmentId::new(0, 1));
        st.apply(&start(&[s0], &[(0.25, 0.5), (0.0, 0.25)])).unwrap();
        let m = st.stream("s", "t").unwrap();
        let pending = m.pending_scale.clone().unwrap();
        assert_eq!(pending.epoch, 1);
        assert_eq!(pending.successors, vec![SegmentId::new(1, 2), SegmentId::new(1, 3)]);
        // Pending: the current epoch is unchanged, but the successors are already linked.
        assert_eq!(m.current_epoch().epoch, 0);
        assert_eq!(m.active_segments().len(), 2);
        assert_eq!(m.segment(s0).unwrap().successors, pending.successors);
        assert!(!m.segment(s0).unwrap().sealed);
        assert_eq!(m.segment(SegmentId::new(1, 2)).unwrap().key_high, 0.25);
        assert_eq!(m.segment(SegmentId::new(1, 3)).unwrap().predecessors, vec![s0]);
        assert!(matches!(refused(&mut st, &start(&[s1], &[(0.5, 1.0)])), MetaError::ScaleInProgress(_)));
        assert!(matches!(
            refused(&mut st, &Command::StreamSealed { scope: "s".into(), stream: "t".into() }),
            MetaError::ScaleInProgress(_)
        ));
        assert!(matches!(refused(&mut st, &complete(2)), MetaError::InvalidArgument(_)));

        st.apply(&complete(1)).unwrap();
        let after = st.clone();
        st.apply(&complete(1)).unwrap();
        assert_eq!(st, after, "completing twice is a no-op");
        let m = st.stream("s", "t").unwrap();
        assert!(m.pending_scale.is_none());
        assert_eq!(m.current_epoch().epoch, 1);
        assert_eq!(m.current_epoch().reason, EpochReason::Manual);
        assert_eq!(m.current_epoch().created_at_ms, 11);
        assert!(m.segment(s0).unwrap().sealed);
        assert_eq!(m.active_segments().len(), 3);
        assert_tiles_key_space(m);

        // Merge the two right-hand segments; f64 noise at the boundaries is snapped away.
        let (a, b) = (SegmentId::new(1, 3), s1);
        st.apply(&start(&[a, b], &[(0.25 + 1e-12, 1.0 - 1e-12)])).unwrap();
        st.apply(&complete(2)).unwrap();
        let m = st.stream("s", "t").unwrap();
        assert_eq!(m.current_epoch().segments.len(), 2);
        assert_tiles_key_space(m);
        let merged = m.segment(SegmentId::new(2, 4)).unwrap();
        assert_eq!((merged.key_low, merged.key_high), (0.25, 1.0));
        assert_eq!(merged.predecessors, vec![a, b]);
        assert_eq!(m.epochs.iter().map(|e| e.epoch).collect::<Vec<_>>(), vec![0, 1, 2]);
        assert_eq!(m.epochs[0].reason, EpochReason::Created);
    }

    #[test]
    fn bad_scales_are_refused_and_change_nothing() {
        let mut st = two_segment_stream();
        let (s0, s1) = (SegmentId::new(0, 0), SegmentId::new(0, 1));
        let invalid = |e: MetaError| assert!(matches!(e, MetaError::InvalidArgument(_)), "{e:?}");
        // Gap, overlap, beyond the sealed range, empty/reversed/NaN ranges.
        invalid(refused(&mut st, &start(&[s0], &[(0.0, 0.2), (0.3, 0.5)])));
        invalid(refused(&mut st, &start(&[s0], &[(0.0, 0.3), (0.2, 0.5)])));
        invalid(refused(&mut st, &start(&[s0], &[(0.0, 0.3)])));
        invalid(refused(&mut st, &start(&[s0], &[(0.0, 0.6)])));
        invalid(refused(&mut st, &start(&[s0], &[(0.1, 0.5)])));
        invalid(refused(&mut st, &start(&[s0], &[(0.0, 0.5), (0.5, 0.5)])));
        invalid(refused(&mut st, &start(&[s0], &[(0.5, 0.0)])));
        invalid(refused(&mut st, &start(&[s0], &[(f64::NAN, 0.5)])));
        invalid(refused(&mut st, &start(&[s0], &[(0.0, 0.5), (0.0, 0.5)])));
        invalid(refused(&mut st, &start(&[s0], &[])));
        invalid(refused(&mut st, &start(&[], &[(0.0, 0.5)])));
        invalid(refused(&mut st, &start(&[s0, s0], &[(0.0, 0.5)])));
        // Unknown segment, unknown stream.
        assert!(matches!(
            refused(&mut st, &start(&[SegmentId::new(0, 9)], &[(0.0, 0.5)])),
            MetaError::SegmentNotFound(_)
        ));
        let mut other = start(&[s0], &[(0.0, 0.5)]);
        if let Command::StartScale { stream, .. } = &mut other {
            *stream = "nope".into();
        }
        assert!(matches!(refused(&mut st, &other), MetaError::StreamNotFound(_)));
        // A segment sealed by an earlier scale is no longer active.
        st.apply(&start(&[s0], &[(0.0, 0.5)])).unwrap();
        st.apply(&complete(1)).unwrap();
        assert!(matches!(refused(&mut st, &start(&[s0], &[(0.0, 0.5)])), MetaError::SegmentSealed(_)));
        // Non-adjacent segments cannot merge: their union has a hole another segment owns.
        let mut three = ControllerState::default();
        three.apply(&Command::CreateScope { scope: "s".into(), now_ms: 1 }).unwrap();
        three
            .apply(&Command::CreateStream { scope: "s".into(), stream: "t".into(), config: cfg(3), now_ms: 2 })
            .unwrap();
        three.apply(&Command::StreamCreated { scope: "s".into(), stream: "t".into() }).unwrap();
        let ends = three.stream("s", "t").unwrap().active_segments().iter().map(|s| s.id).collect::<Vec<_>>();
        invalid(refused(&mut three, &start(&[ends[0], ends[2]], &[(0.0, 1.0)])));
        // A sealed stream cannot scale.
        st.apply(&Command::StreamSealed { scope: "s".into(), stream: "t".into() }).unwrap();
        assert!(matches!(refused(&mut st, &start(&[s1], &[(0.5, 1.0)])), MetaError::StreamSealed(_)));
    }

    #[test]
    fn update_config_validates_and_refuses_sealed_streams() {
        let mut st = two_segment_stream();
        let update = |config| Command::UpdateStreamConfig { scope: "s".into(), stream: "t".into(), config };
        let new = StreamConfig {
            scaling: Scaling::EventsPerSec { rate: 100, factor: 2, min_segments: 1 },
            retention: Retention::TimeMs(60_000),
        };
        st.apply(&update(new.clone())).unwrap();
        assert_eq!(st.stream("s", "t").unwrap().config, new);
        assert_eq!(st.stream("s", "t").unwrap().active_segments().len(), 2, "policies do not rescale");
        assert!(matches!(refused(&mut st, &update(cfg(0))), MetaError::InvalidArgument(_)));
        let mut missing = update(cfg(1));
        if let Command::UpdateStreamConfig { stream, .. } = &mut missing {
            *stream = "nope".into();
        }
        assert!(matches!(refused(&mut st, &missing), MetaError::StreamNotFound(_)));
        st.apply(&Command::StreamSealed { scope: "s".into(), stream: "t".into() }).unwrap();
        assert!(matches!(refused(&mut st, &update(cfg(1))), MetaError::StreamSealed(_)));
    }

    #[test]
    fn old_state_without_reasons_or_pending_scales_still_loads() {
        let st = two_segment_stream();
        let mut v = serde_json::to_value(&st).unwrap();
        let m = &mut v["scopes"]["s"]["streams"]["t"];
        m.as_object_mut().unwrap().remove("pending_scale");
        m["epochs"][0].as_object_mut().unwrap().remove("reason");
        let back: ControllerState = serde_json::from_value(v).unwrap();
        assert_eq!(back, st);
    }
}
