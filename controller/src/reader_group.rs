//! Reader groups: which reader reads which segment, from where, kept in the controller's Raft
//! state (see docs/reader-groups.md for why here and not in a segment).
//!
//! A group's *frontier* is the set of segments that are ready to be read: each is owned by one
//! reader or waits in `unassigned`, always with the group's recorded position (the offset of
//! the next event to hand out). Segments that are not ready yet (successors of segments still
//! being read) are not stored: they are found from the stream metadata (successor links) when
//! their last predecessor is finished. Invariants kept by [`ReaderGroups::apply`]:
//!
//! - a segment is in the frontier at most once: owned by one reader, or unassigned;
//! - the frontier never holds a segment together with one of its ancestors (a successor is
//!   added only when none of its predecessors is in the frontier or still to come after it),
//!   which is what keeps per-key order across splits and merges;
//! - a position only moves forward, except by an explicit reset;
//! - while a checkpoint is pending, no segment changes owner (except that readers leaving or
//!   declared offline give theirs back), so every reader's recorded boundary is consistent;
//! - applying is deterministic (commands carry their own time) and a refused command changes
//!   nothing.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::fmt;

use nadi_proto::SegmentId;
use nadi_proto::names::validate_named;
use serde::{Deserialize, Serialize};

use crate::MetaError;
use crate::state::{ControllerState, StreamMeta};

/// How many completed checkpoints a group keeps (oldest dropped first).
pub const MAX_CHECKPOINTS: usize = 16;

/// One segment of one of a group's streams (a group reads streams of one scope).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SegRef {
    /// The stream's name within the group's scope.
    pub stream: String,
    /// The segment.
    pub id: SegmentId,
}

impl SegRef {
    /// A segment of `stream`.
    pub fn new(stream: impl Into<String>, id: SegmentId) -> SegRef {
        SegRef { stream: stream.into(), id }
    }
}

impl fmt::Display for SegRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.stream, self.id.packed())
    }
}

// As a string `stream/packed-id`, so that it can be a JSON map key (snapshots are JSON).
impl Serialize for SegRef {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for SegRef {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<SegRef, D::Error> {
        let s = String::deserialize(d)?;
        let (stream, id) = s.rsplit_once('/').ok_or_else(|| serde::de::Error::custom(format!("bad segment {s:?}")))?;
        let id: u64 = id.parse().map_err(|_| serde::de::Error::custom(format!("bad segment id in {s:?}")))?;
        Ok(SegRef::new(stream, SegmentId::from_packed(id)))
    }
}

/// Segment → offset of the next event to read.
pub type Positions = BTreeMap<SegRef, u64>;

/// A member of a group.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReaderRecord {
    /// The segments it owns, at the positions it last reported.
    pub segments: Positions,
    /// When it joined (ms since the Unix epoch).
    pub joined_at_ms: u64,
}

/// A checkpoint waiting for readers to record their positions.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PendingCheckpoint {
    pub name: String,
    /// Readers (members at initiation) that have not recorded their position yet.
    pub waiting: BTreeSet<String>,
    /// Positions recorded so far.
    pub positions: Positions,
}

/// A completed checkpoint: resetting to it resumes exactly at these positions.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checkpoint {
    pub name: String,
    pub completed_at_ms: u64,
    pub positions: Positions,
}

/// One reader group.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupState {
    /// The streams it reads (in the group's scope), sorted.
    pub streams: Vec<String>,
    pub created_at_ms: u64,
    /// Bumped by every reset.
    pub generation: u64,
    /// Members by id.
    pub readers: BTreeMap<String, ReaderRecord>,
    /// Ready segments no reader owns, at their positions.
    pub unassigned: Positions,
    pub pending_checkpoint: Option<PendingCheckpoint>,
    /// Completed checkpoints, oldest first, at most [`MAX_CHECKPOINTS`].
    pub checkpoints: Vec<Checkpoint>,
    /// Holds its streams' data: consumption-based retention truncates only what its last
    /// checkpoint has passed.
    #[serde(default)]
    pub subscriber: bool,
}

/// Where a reset moves a group.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ResetTarget {
    /// A completed checkpoint by name.
    Checkpoint(String),
    /// A stream cut (validated like a group's start).
    Cut(Positions),
}

/// A change to reader groups.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ReaderGroupCommand {
    /// Creates a group whose frontier is `cut` (the leader resolved head/tail into a cut).
    Create {
        scope: String,
        group: String,
        streams: Vec<String>,
        cut: Positions,
        now_ms: u64,
        /// Holds its streams' data (consumption-based retention).
        #[serde(default)]
        subscriber: bool,
    },
    Delete {
        scope: String,
        group: String,
    },
    /// A reader's position report and heartbeat; see `ReaderSyncRequest` in the proto.
    Sync {
        scope: String,
        group: String,
        reader: String,
        join: bool,
        positions: Positions,
        finished: Positions,
        checkpoint: Option<String>,
        now_ms: u64,
    },
    /// A reader leaves after reporting its final positions.
    Leave {
        scope: String,
        group: String,
        reader: String,
        positions: Positions,
    },
    /// A reader is declared dead: its segments go back at its last reported positions.
    Offline {
        scope: String,
        group: String,
        reader: String,
    },
    InitiateCheckpoint {
        scope: String,
        group: String,
        name: String,
        now_ms: u64,
    },
    Reset {
        scope: String,
        group: String,
        target: ResetTarget,
        now_ms: u64,
    },
}

/// Every reader group, by scope and name.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct ReaderGroups {
    pub scopes: BTreeMap<String, BTreeMap<String, GroupState>>,
}

fn name_error(kind: &'static str, name: &str) -> Result<(), MetaError> {
    validate_named(kind, name).map_err(MetaError::from)
}

impl ReaderGroups {
    /// The subscriber groups (consumption retention, scaling by readers) that read
    /// `scope/stream`.
    pub fn subscribers<'a>(&'a self, scope: &str, stream: &'a str) -> impl Iterator<Item = &'a GroupState> + 'a {
        self.scopes
            .get(scope)
            .into_iter()
            .flat_map(|groups| groups.values())
            .filter(move |g| g.subscriber && g.streams.iter().any(|s| s == stream))
    }

    /// A group by scope and name.
    pub fn group(&self, scope: &str, group: &str) -> Result<&GroupState, MetaError> {
        self.scopes
            .get(scope)
            .and_then(|g| g.get(group))
            .ok_or_else(|| MetaError::ReaderGroupNotFound(format!("{scope}/{group}")))
    }

    /// Drops every group of a scope (the scope was deleted).
    pub fn remove_scope(&mut self, scope: &str) {
        self.scopes.remove(scope);
    }

    /// Applies one command, reading stream metadata from `meta`. On error nothing changes.
    pub fn apply(&mut self, meta: &ControllerState, cmd: &ReaderGroupCommand) -> Result<(), MetaError> {
        match cmd {
            ReaderGroupCommand::Create { scope, group, streams, cut, now_ms, subscriber } => {
                name_error("reader group", group)?;
                meta.scope(scope)?;
                if self.group(scope, group).is_ok() {
                    return Err(MetaError::ReaderGroupExists(format!("{scope}/{group}")));
                }
                let mut sorted = streams.clone();
                sorted.sort();
                sorted.dedup();
                if sorted.is_empty() || sorted.len() != streams.len() {
                    return Err(MetaError::InvalidArgument(
                        "a reader group needs at least one stream, each named once".into(),
                    ));
                }
                for s in &sorted {
                    meta.stream(scope, s)?;
                }
                validate_cut(meta, scope, &sorted, cut)?;
                let g = GroupState {
                    streams: sorted,
                    created_at_ms: *now_ms,
                    generation: 0,
                    readers: BTreeMap::new(),
                    unassigned: cut.clone(),
                    pending_checkpoint: None,
                    checkpoints: Vec::new(),
                    subscriber: *subscriber,
                };
                self.scopes.entry(scope.clone()).or_default().insert(group.clone(), g);
                Ok(())
            }
            ReaderGroupCommand::Delete { scope, group } => {
                self.group(scope, group)?;
                if let Some(groups) = self.scopes.get_mut(scope) {
                    groups.remove(group);
                    if groups.is_empty() {
                        self.scopes.remove(scope);
                    }
                }
                Ok(())
            }
            ReaderGroupCommand::Sync { scope, group, .. }
            | ReaderGroupCommand::Leave { scope, group, .. }
            | ReaderGroupCommand::Offline { scope, group, .. }
            | ReaderGroupCommand::InitiateCheckpoint { scope, group, .. }
            | ReaderGroupCommand::Reset { scope, group, .. } => {
                // Work on a copy: a refused command leaves the group as it was.
                let mut g = self.group(scope, group)?.clone();
                g.apply(meta, scope, group, cmd)?;
                if let Some(slot) = self.scopes.get_mut(scope).and_then(|m| m.get_mut(group)) {
                    *slot = g;
                }
                Ok(())
            }
        }
    }
}

/// Checks a stream cut: every segment belongs to one of `streams` and exists, every stream has
/// a segment in it, and no segment of the cut is an ancestor of another.
fn validate_cut(meta: &ControllerState, scope: &str, streams: &[String], cut: &Positions) -> Result<(), MetaError> {
    for s in streams {
        if !cut.keys().any(|r| &r.stream == s) {
            return Err(MetaError::InvalidArgument(format!("the stream cut has no segment of stream {s}")));
        }
    }
    for r in cut.keys() {
        if !streams.contains(&r.stream) {
            return Err(MetaError::InvalidArgument(format!("segment {r} is not in one of the group's streams")));
        }
        let m = meta.stream(scope, &r.stream)?;
        if m.segment(r.id).is_none() {
            return Err(MetaError::SegmentNotFound(nadi_proto::names::segment_name(scope, &r.stream, r.id)));
        }
    }
    let cut_ids: BTreeSet<SegRef> = cut.keys().cloned().collect();
    for r in cut.keys() {
        let m = meta.stream(scope, &r.stream)?;
        let below = descendants(m, &r.stream, [r.id]);
        if let Some(d) = below.iter().find(|d| *d != r && cut_ids.contains(*d)) {
            return Err(MetaError::InvalidArgument(format!(
                "the stream cut holds segment {r} and its successor {d}; a cut names each key range once"
            )));
        }
    }
    Ok(())
}

/// `from` and every segment reachable from it by successor links.
fn descendants(m: &StreamMeta, stream: &str, from: impl IntoIterator<Item = SegmentId>) -> BTreeSet<SegRef> {
    let mut seen = BTreeSet::new();
    let mut queue: VecDeque<SegmentId> = from.into_iter().collect();
    while let Some(id) = queue.pop_front() {
        if !seen.insert(SegRef::new(stream, id)) {
            continue;
        }
        if let Some(rec) = m.segment(id) {
            queue.extend(rec.successors.iter().copied());
        }
    }
    seen
}

/// Removes from `positions` every segment that has an ancestor in it: such a segment is not
/// ready yet (and was not read), and it comes back when its predecessors are finished.
fn prune_descendants(meta: &ControllerState, scope: &str, positions: &mut Positions) {
    let mut drop = BTreeSet::new();
    for r in positions.keys() {
        if let Ok(m) = meta.stream_any(scope, &r.stream) {
            let rec_successors = m.segment(r.id).map(|s| s.successors.clone()).unwrap_or_default();
            drop.extend(descendants(m, &r.stream, rec_successors));
        }
    }
    positions.retain(|r, _| !drop.contains(r));
}

impl GroupState {
    /// Every segment that is ready (owned or unassigned), with its position.
    pub fn frontier(&self) -> Positions {
        let mut all = self.unassigned.clone();
        for r in self.readers.values() {
            all.extend(r.segments.iter().map(|(k, v)| (k.clone(), *v)));
        }
        all
    }

    /// The reader owning `seg`, if any.
    pub fn owner(&self, seg: &SegRef) -> Option<&str> {
        self.readers.iter().find(|(_, r)| r.segments.contains_key(seg)).map(|(id, _)| id.as_str())
    }

    /// True once nothing is left to read: every segment was finished and none follows.
    pub fn is_finished(&self) -> bool {
        self.unassigned.is_empty() && self.readers.values().all(|r| r.segments.is_empty())
    }

    /// The checkpoint `reader` still has to record, if any.
    pub fn checkpoint_for(&self, reader: &str) -> Option<&str> {
        self.pending_checkpoint.as_ref().filter(|c| c.waiting.contains(reader)).map(|c| c.name.as_str())
    }

    /// A completed checkpoint by name.
    pub fn checkpoint(&self, name: &str) -> Option<&Checkpoint> {
        self.checkpoints.iter().find(|c| c.name == name)
    }

    fn apply(
        &mut self,
        meta: &ControllerState,
        scope: &str,
        group: &str,
        cmd: &ReaderGroupCommand,
    ) -> Result<(), MetaError> {
        match cmd {
            ReaderGroupCommand::Sync { reader, join, positions, finished, checkpoint, now_ms, .. } => {
                name_error("reader", reader)?;
                if !self.readers.contains_key(reader) {
                    if !join {
                        return Err(MetaError::ReaderNotFound(format!("{reader} in {scope}/{group}")));
                    }
                    self.readers
                        .insert(reader.clone(), ReaderRecord { segments: Positions::new(), joined_at_ms: *now_ms });
                }
                self.record_positions(reader, positions)?;
                for (seg, end) in finished {
                    self.finish(meta, scope, reader, seg, *end)?;
                }
                if let Some(name) = checkpoint {
                    self.record_checkpoint(meta, scope, reader, name, *now_ms);
                }
                if self.pending_checkpoint.is_none() {
                    self.rebalance(reader);
                }
                Ok(())
            }
            ReaderGroupCommand::Leave { reader, positions, .. } => {
                name_error("reader", reader)?;
                if !self.readers.contains_key(reader) {
                    return Err(MetaError::ReaderNotFound(format!("{reader} in {scope}/{group}")));
                }
                self.record_positions(reader, positions)?;
                self.remove_reader(meta, scope, reader, 0);
                Ok(())
            }
            ReaderGroupCommand::Offline { reader, .. } => {
                name_error("reader", reader)?;
                if !self.readers.contains_key(reader) {
                    return Err(MetaError::ReaderNotFound(format!("{reader} in {scope}/{group}")));
                }
                self.remove_reader(meta, scope, reader, 0);
                Ok(())
            }
            ReaderGroupCommand::InitiateCheckpoint { name, now_ms, .. } => {
                name_error("checkpoint", name)?;
                if let Some(p) = &self.pending_checkpoint {
                    return Err(MetaError::CheckpointInProgress(format!("{} of {scope}/{group}", p.name)));
                }
                if self.checkpoint(name).is_some() {
                    return Err(MetaError::CheckpointExists(format!("{name} of {scope}/{group}")));
                }
                self.pending_checkpoint = Some(PendingCheckpoint {
                    name: name.clone(),
                    waiting: self.readers.keys().cloned().collect(),
                    positions: Positions::new(),
                });
                self.maybe_complete_checkpoint(meta, scope, *now_ms);
                Ok(())
            }
            ReaderGroupCommand::Reset { target, .. } => {
                let mut cut = match target {
                    ResetTarget::Checkpoint(name) => self
                        .checkpoint(name)
                        .map(|c| c.positions.clone())
                        .ok_or_else(|| MetaError::CheckpointNotFound(format!("{name} of {scope}/{group}")))?,
                    ResetTarget::Cut(cut) => {
                        validate_cut(meta, scope, &self.streams, cut)?;
                        cut.clone()
                    }
                };
                prune_descendants(meta, scope, &mut cut);
                self.readers.clear();
                self.pending_checkpoint = None;
                self.unassigned = cut;
                self.generation += 1;
                Ok(())
            }
            ReaderGroupCommand::Create { .. } | ReaderGroupCommand::Delete { .. } => {
                Err(MetaError::Internal("group-level command applied to a group".into()))
            }
        }
    }

    /// Records `reader`'s positions of the segments it owns; others are ignored (stale).
    fn record_positions(&mut self, reader: &str, positions: &Positions) -> Result<(), MetaError> {
        let Some(r) = self.readers.get_mut(reader) else { return Ok(()) };
        for (seg, &offset) in positions {
            if let Some(at) = r.segments.get(seg)
                && offset < *at
            {
                return Err(MetaError::InvalidArgument(format!(
                    "position {offset} of segment {seg} is before the recorded position {at}"
                )));
            }
        }
        for (seg, &offset) in positions {
            if let Some(at) = r.segments.get_mut(seg) {
                *at = offset;
            }
        }
        Ok(())
    }

    /// `reader` read `seg` to its end: drop it, and make ready every successor whose
    /// predecessors are now all finished. Ignored if the reader does not own `seg` (stale).
    fn finish(
        &mut self,
        meta: &ControllerState,
        scope: &str,
        reader: &str,
        seg: &SegRef,
        end: u64,
    ) -> Result<(), MetaError> {
        let Some(r) = self.readers.get_mut(reader) else { return Ok(()) };
        let Some(&at) = r.segments.get(seg) else { return Ok(()) };
        if end < at {
            return Err(MetaError::InvalidArgument(format!(
                "segment {seg} cannot end at {end}, before the recorded position {at}"
            )));
        }
        r.segments.remove(seg);
        let Ok(m) = meta.stream_any(scope, &seg.stream) else { return Ok(()) };
        let successors = m.segment(seg.id).map(|s| s.successors.clone()).unwrap_or_default();
        if successors.is_empty() {
            return Ok(());
        }
        // Segments still to be read: the frontier and everything after it.
        let frontier = self.frontier();
        let pending = descendants(m, &seg.stream, frontier.keys().filter(|r| r.stream == seg.stream).map(|r| r.id));
        for succ in successors {
            let succ_ref = SegRef::new(seg.stream.clone(), succ);
            if frontier.contains_key(&succ_ref) {
                continue;
            }
            let ready = m.segment(succ).is_some_and(|s| {
                s.predecessors.iter().all(|p| !pending.contains(&SegRef::new(seg.stream.clone(), *p)))
            });
            if ready {
                self.unassigned.insert(succ_ref, 0);
            }
        }
        Ok(())
    }

    /// Records `reader`'s owned positions for checkpoint `name` if it is the pending one and the
    /// reader still owes it (otherwise the acknowledgement is stale and ignored).
    fn record_checkpoint(&mut self, meta: &ControllerState, scope: &str, reader: &str, name: &str, now_ms: u64) {
        let owned = self.readers.get(reader).map(|r| r.segments.clone()).unwrap_or_default();
        let Some(p) = self.pending_checkpoint.as_mut() else { return };
        if p.name != name || !p.waiting.remove(reader) {
            return;
        }
        p.positions.extend(owned);
        self.maybe_complete_checkpoint(meta, scope, now_ms);
    }

    /// Completes the pending checkpoint once no reader is owed: the recorded positions, plus the
    /// unassigned segments (nobody read them since the checkpoint began, as no segment changes
    /// owner meanwhile), minus segments that are not ready after the positions.
    fn maybe_complete_checkpoint(&mut self, meta: &ControllerState, scope: &str, now_ms: u64) {
        if !self.pending_checkpoint.as_ref().is_some_and(|p| p.waiting.is_empty()) {
            return;
        }
        let Some(p) = self.pending_checkpoint.take() else { return };
        let mut positions = p.positions;
        for (seg, off) in &self.unassigned {
            positions.entry(seg.clone()).or_insert(*off);
        }
        prune_descendants(meta, scope, &mut positions);
        self.checkpoints.push(Checkpoint { name: p.name, completed_at_ms: now_ms, positions });
        if self.checkpoints.len() > MAX_CHECKPOINTS {
            self.checkpoints.remove(0);
        }
    }

    /// Gives `reader`'s segments back (at their recorded positions) and removes it.
    fn remove_reader(&mut self, meta: &ControllerState, scope: &str, reader: &str, now_ms: u64) {
        if let Some(r) = self.readers.remove(reader) {
            self.unassigned.extend(r.segments);
        }
        if let Some(p) = self.pending_checkpoint.as_mut() {
            p.waiting.remove(reader);
        }
        self.maybe_complete_checkpoint(meta, scope, now_ms);
    }

    /// Fair share for `reader`, applied at its own sync (when its positions are exact): it gives
    /// up segments above its share and takes unassigned ones up to it. With `total` ready
    /// segments and `n` readers everyone holds `floor(total/n)` or `ceil(total/n)`; a reader
    /// above the floor gives up segments while readers below the floor would otherwise wait.
    fn rebalance(&mut self, reader: &str) {
        let n = self.readers.len();
        if n == 0 {
            return;
        }
        let total = self.frontier().len();
        let (floor, ceil) = (total / n, total.div_ceil(n));
        let held = self.readers.get(reader).map_or(0, |r| r.segments.len());
        let others_need: usize = self
            .readers
            .iter()
            .filter(|(id, _)| id.as_str() != reader)
            .map(|(_, r)| floor.saturating_sub(r.segments.len()))
            .sum();
        let release = if held > ceil {
            held - ceil
        } else if held > floor && self.unassigned.len() < others_need {
            (held - floor).min(others_need - self.unassigned.len())
        } else {
            0
        };
        if release > 0 {
            if let Some(r) = self.readers.get_mut(reader) {
                for _ in 0..release {
                    if let Some((seg, off)) = r.segments.pop_last() {
                        self.unassigned.insert(seg, off);
                    }
                }
            }
            return;
        }
        let at_least = floor.saturating_sub(held).min(self.unassigned.len());
        let left = self.unassigned.len() - at_least;
        let room = ceil.saturating_sub(held + at_least);
        let take = at_least + room.min(left.saturating_sub(others_need));
        for _ in 0..take {
            if let Some((seg, off)) = self.unassigned.pop_first()
                && let Some(r) = self.readers.get_mut(reader)
            {
                r.segments.insert(seg, off);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::{Command, EpochReason, Retention, Scaling, StreamConfig};

    fn meta_with(segments: u32) -> ControllerState {
        let mut st = ControllerState::default();
        st.apply(&Command::CreateScope { scope: "s".into(), now_ms: 1 }).unwrap();
        let config = StreamConfig { scaling: Scaling::Fixed { segments }, retention: Retention::None };
        st.apply(&Command::CreateStream { scope: "s".into(), stream: "t".into(), config, now_ms: 2 }).unwrap();
        st.apply(&Command::StreamCreated { scope: "s".into(), stream: "t".into() }).unwrap();
        st
    }

    fn scale(meta: &mut ControllerState, sealed: &[SegmentId], ranges: &[(f64, f64)]) {
        meta.apply(&Command::StartScale {
            scope: "s".into(),
            stream: "t".into(),
            sealed: sealed.to_vec(),
            new_ranges: ranges.to_vec(),
            reason: EpochReason::Manual,
            now_ms: 3,
            promoted: vec![],
        })
        .unwrap();
        let epoch = meta.stream("s", "t").unwrap().pending_scale.as_ref().unwrap().epoch;
        meta.apply(&Command::CompleteScale { scope: "s".into(), stream: "t".into(), epoch, now_ms: 4 }).unwrap();
    }

    fn seg(epoch: u32, number: u32) -> SegRef {
        SegRef::new("t", SegmentId::new(epoch, number))
    }

    fn head(meta: &ControllerState) -> Positions {
        meta.stream("s", "t").unwrap().epochs[0].segments.iter().map(|id| (SegRef::new("t", *id), 0)).collect()
    }

    fn create(meta: &ControllerState, rg: &mut ReaderGroups) {
        rg.apply(
            meta,
            &ReaderGroupCommand::Create {
                scope: "s".into(),
                group: "g".into(),
                streams: vec!["t".into()],
                cut: head(meta),
                now_ms: 5,
                subscriber: false,
            },
        )
        .unwrap();
    }

    fn sync_cmd(
        reader: &str,
        positions: &[(SegRef, u64)],
        finished: &[(SegRef, u64)],
        cp: Option<&str>,
    ) -> ReaderGroupCommand {
        ReaderGroupCommand::Sync {
            scope: "s".into(),
            group: "g".into(),
            reader: reader.into(),
            join: true,
            positions: positions.iter().cloned().collect(),
            finished: finished.iter().cloned().collect(),
            checkpoint: cp.map(str::to_owned),
            now_ms: 6,
        }
    }

    fn sync(meta: &ControllerState, rg: &mut ReaderGroups, reader: &str) {
        rg.apply(meta, &sync_cmd(reader, &[], &[], None)).unwrap();
    }

    fn g(rg: &ReaderGroups) -> &GroupState {
        rg.group("s", "g").unwrap()
    }

    fn held(rg: &ReaderGroups, reader: &str) -> Vec<SegRef> {
        g(rg).readers[reader].segments.keys().cloned().collect()
    }

    fn refused(meta: &ControllerState, rg: &mut ReaderGroups, cmd: &ReaderGroupCommand) -> MetaError {
        let before = rg.clone();
        let e = rg.apply(meta, cmd).expect_err("command should be refused");
        assert_eq!(*rg, before, "a refused command changed the state");
        e
    }

    /// Every ready segment is held once; the shares differ by at most one.
    fn assert_fair(rg: &ReaderGroups, total: usize) {
        let g = g(rg);
        let counts: Vec<usize> = g.readers.values().map(|r| r.segments.len()).collect();
        assert_eq!(counts.iter().sum::<usize>() + g.unassigned.len(), total);
        assert_eq!(g.frontier().len(), total, "a segment is held twice");
        let (min, max) = (counts.iter().min().unwrap(), counts.iter().max().unwrap());
        assert!(max - min <= 1, "unfair shares {counts:?}");
        assert!(g.unassigned.is_empty(), "segments left unassigned: {:?}", g.unassigned);
    }

    #[test]
    fn segments_are_spread_fairly_as_readers_join_and_leave() {
        let meta = meta_with(4);
        let mut rg = ReaderGroups::default();
        create(&meta, &mut rg);
        sync(&meta, &mut rg, "a");
        assert_eq!(held(&rg, "a").len(), 4);
        for reader in ["b", "c"] {
            // Converges after every reader synced a couple of times.
            for _ in 0..3 {
                for r in ["a", "b", "c"].iter().filter(|r| **r <= reader) {
                    sync(&meta, &mut rg, r);
                }
            }
            assert_fair(&rg, 4);
        }
        // A leaving reader gives its segments back at the positions it reports.
        let b_segs = held(&rg, "b");
        let positions: Positions = b_segs.iter().map(|s| (s.clone(), 42)).collect();
        rg.apply(
            &meta,
            &ReaderGroupCommand::Leave { scope: "s".into(), group: "g".into(), reader: "b".into(), positions },
        )
        .unwrap();
        for s in &b_segs {
            assert_eq!(g(&rg).unassigned[s], 42);
        }
        for _ in 0..2 {
            sync(&meta, &mut rg, "a");
            sync(&meta, &mut rg, "c");
        }
        assert_fair(&rg, 4);
        assert_eq!(held(&rg, "a").len(), 2);
    }

    #[test]
    fn offline_reader_gives_segments_back_at_its_last_synced_position() {
        let meta = meta_with(2);
        let mut rg = ReaderGroups::default();
        create(&meta, &mut rg);
        sync(&meta, &mut rg, "a");
        rg.apply(&meta, &sync_cmd("a", &[(seg(0, 0), 10), (seg(0, 1), 20)], &[], None)).unwrap();
        rg.apply(&meta, &ReaderGroupCommand::Offline { scope: "s".into(), group: "g".into(), reader: "a".into() })
            .unwrap();
        assert!(g(&rg).readers.is_empty());
        assert_eq!(g(&rg).unassigned, Positions::from([(seg(0, 0), 10), (seg(0, 1), 20)]));
        // The dead reader comes back without joining: refused; with join it starts over.
        let mut stale = sync_cmd("a", &[(seg(0, 0), 30)], &[], None);
        if let ReaderGroupCommand::Sync { join, .. } = &mut stale {
            *join = false;
        }
        assert!(matches!(refused(&meta, &mut rg, &stale), MetaError::ReaderNotFound(_)));
        sync(&meta, &mut rg, "b");
        assert_eq!(g(&rg).readers["b"].segments, Positions::from([(seg(0, 0), 10), (seg(0, 1), 20)]));
    }

    #[test]
    fn a_successor_is_handed_out_only_after_all_its_predecessors_finished() {
        let mut meta = meta_with(2);
        let mut rg = ReaderGroups::default();
        create(&meta, &mut rg);
        // Split 0 into 2 and 3 (epoch 1), then merge 3 and 1 into 4 (epoch 2).
        scale(&mut meta, &[SegmentId::new(0, 0)], &[(0.0, 0.25), (0.25, 0.5)]);
        scale(&mut meta, &[SegmentId::new(1, 3), SegmentId::new(0, 1)], &[(0.25, 1.0)]);
        for r in ["a", "b", "a", "b"] {
            sync(&meta, &mut rg, r);
        }
        let (a, b) = (held(&rg, "a"), held(&rg, "b"));
        assert_eq!((a.len(), b.len()), (1, 1));
        let (owner1, owner0) = if a.contains(&seg(0, 1)) { ("a", "b") } else { ("b", "a") };
        // Segment 1 finishes first: 4 also needs 3, which is not even ready yet (0 is unfinished).
        rg.apply(&meta, &sync_cmd(owner1, &[], &[(seg(0, 1), 100)], None)).unwrap();
        assert!(g(&rg).owner(&seg(2, 4)).is_none() && !g(&rg).unassigned.contains_key(&seg(2, 4)));
        // 0 finishes: 2 and 3 are ready, 4 still waits for 3.
        rg.apply(&meta, &sync_cmd(owner0, &[], &[(seg(0, 0), 100)], None)).unwrap();
        let f = g(&rg).frontier();
        assert!(f.contains_key(&seg(1, 2)) && f.contains_key(&seg(1, 3)));
        assert!(!f.contains_key(&seg(2, 4)));
        // 3 finishes: now 4 is ready, at offset 0.
        sync(&meta, &mut rg, owner1);
        sync(&meta, &mut rg, owner0);
        let owner3 = g(&rg).owner(&seg(1, 3)).unwrap().to_owned();
        rg.apply(&meta, &sync_cmd(&owner3, &[], &[(seg(1, 3), 7)], None)).unwrap();
        assert_eq!(g(&rg).frontier().get(&seg(2, 4)), Some(&0));
        // Finishing a segment one does not own is ignored; finishing before the position is refused.
        let before = rg.clone();
        rg.apply(&meta, &sync_cmd("zzz", &[], &[(seg(1, 2), 5)], None)).unwrap();
        assert_eq!(g(&rg).frontier(), g(&before).frontier());
        let owner2 = g(&rg).owner(&seg(1, 2)).unwrap().to_owned();
        rg.apply(&meta, &sync_cmd(&owner2, &[(seg(1, 2), 50)], &[], None)).unwrap();
        let e = refused(&meta, &mut rg, &sync_cmd(&owner2, &[], &[(seg(1, 2), 10)], None));
        assert!(matches!(e, MetaError::InvalidArgument(_)), "{e:?}");
        let e = refused(&meta, &mut rg, &sync_cmd(&owner2, &[(seg(1, 2), 10)], &[], None));
        assert!(matches!(e, MetaError::InvalidArgument(_)), "{e:?}");
    }

    #[test]
    fn checkpoint_records_every_readers_boundary_and_reset_resumes_there() {
        let mut meta = meta_with(2);
        let mut rg = ReaderGroups::default();
        create(&meta, &mut rg);
        sync(&meta, &mut rg, "a");
        sync(&meta, &mut rg, "b");
        sync(&meta, &mut rg, "a");
        sync(&meta, &mut rg, "b");
        let (sa, sb) = (held(&rg, "a")[0].clone(), held(&rg, "b")[0].clone());
        let init = |name: &str| ReaderGroupCommand::InitiateCheckpoint {
            scope: "s".into(),
            group: "g".into(),
            name: name.into(),
            now_ms: 7,
        };
        rg.apply(&meta, &init("cp1")).unwrap();
        assert!(matches!(refused(&meta, &mut rg, &init("cp2")), MetaError::CheckpointInProgress(_)));
        assert_eq!(g(&rg).checkpoint_for("a"), Some("cp1"));
        // a records at 10; then reads on to 15 (after its boundary).
        rg.apply(&meta, &sync_cmd("a", &[(sa.clone(), 10)], &[], Some("cp1"))).unwrap();
        rg.apply(&meta, &sync_cmd("a", &[(sa.clone(), 15)], &[], None)).unwrap();
        assert_eq!(g(&rg).checkpoint_for("a"), None);
        // A new reader joining meanwhile gets nothing (no segment changes owner).
        sync(&meta, &mut rg, "c");
        assert!(held(&rg, "c").is_empty());
        // b's segment is split and b finishes it before recording: the successors are ready
        // (unread) and belong in the checkpoint at offset 0.
        let low = sb_low(&meta, &sb);
        scale(&mut meta, &[sb.id], &[(low, 0.75), (0.75, 1.0)]);
        rg.apply(&meta, &sync_cmd("b", &[], &[(sb.clone(), 30)], None)).unwrap();
        rg.apply(&meta, &sync_cmd("b", &[], &[], Some("cp1"))).unwrap();
        let cp = g(&rg).checkpoint("cp1").unwrap().clone();
        assert!(g(&rg).pending_checkpoint.is_none());
        assert_eq!(cp.positions, Positions::from([(sa.clone(), 10), (seg(1, 2), 0), (seg(1, 3), 0)]));
        assert!(matches!(refused(&meta, &mut rg, &init("cp1")), MetaError::CheckpointExists(_)));
        // Reset: every reader is gone, the segments restart at the checkpoint.
        let reset =
            |t: ResetTarget| ReaderGroupCommand::Reset { scope: "s".into(), group: "g".into(), target: t, now_ms: 8 };
        assert!(matches!(
            refused(&meta, &mut rg, &reset(ResetTarget::Checkpoint("nope".into()))),
            MetaError::CheckpointNotFound(_)
        ));
        rg.apply(&meta, &reset(ResetTarget::Checkpoint("cp1".into()))).unwrap();
        assert!(g(&rg).readers.is_empty());
        assert_eq!(g(&rg).generation, 1);
        assert_eq!(g(&rg).unassigned, cp.positions);
        // A reset to a cut that holds a segment and its successor is refused.
        let bad = Positions::from([(sb.clone(), 0), (seg(1, 2), 0), (sa.clone(), 0)]);
        assert!(matches!(refused(&meta, &mut rg, &reset(ResetTarget::Cut(bad))), MetaError::InvalidArgument(_)));
        rg.apply(&meta, &reset(ResetTarget::Cut(head(&meta)))).unwrap();
        assert_eq!(g(&rg).unassigned, head(&meta));
    }

    fn sb_low(meta: &ControllerState, s: &SegRef) -> f64 {
        meta.stream("s", "t").unwrap().segment(s.id).unwrap().key_low
    }

    #[test]
    fn checkpoint_leaves_out_successors_of_segments_read_after_it() {
        let mut meta = meta_with(1);
        let mut rg = ReaderGroups::default();
        create(&meta, &mut rg);
        sync(&meta, &mut rg, "a");
        sync(&meta, &mut rg, "b");
        rg.apply(
            &meta,
            &ReaderGroupCommand::InitiateCheckpoint {
                scope: "s".into(),
                group: "g".into(),
                name: "c".into(),
                now_ms: 1,
            },
        )
        .unwrap();
        rg.apply(&meta, &sync_cmd("a", &[(seg(0, 0), 5)], &[], Some("c"))).unwrap();
        // After its boundary, a finishes 0; the successor becomes ready but must not be in the
        // checkpoint, which still reads 0 from 5.
        scale(&mut meta, &[SegmentId::new(0, 0)], &[(0.0, 1.0)]);
        rg.apply(&meta, &sync_cmd("a", &[], &[(seg(0, 0), 9)], None)).unwrap();
        rg.apply(&meta, &sync_cmd("b", &[], &[], Some("c"))).unwrap();
        assert_eq!(g(&rg).checkpoint("c").unwrap().positions, Positions::from([(seg(0, 0), 5)]));
    }

    #[test]
    fn offline_reader_completes_a_pending_checkpoint() {
        let meta = meta_with(2);
        let mut rg = ReaderGroups::default();
        create(&meta, &mut rg);
        sync(&meta, &mut rg, "a");
        rg.apply(&meta, &sync_cmd("a", &[(seg(0, 0), 3), (seg(0, 1), 4)], &[], None)).unwrap();
        rg.apply(
            &meta,
            &ReaderGroupCommand::InitiateCheckpoint {
                scope: "s".into(),
                group: "g".into(),
                name: "c".into(),
                now_ms: 1,
            },
        )
        .unwrap();
        rg.apply(&meta, &ReaderGroupCommand::Offline { scope: "s".into(), group: "g".into(), reader: "a".into() })
            .unwrap();
        assert_eq!(g(&rg).checkpoint("c").unwrap().positions, Positions::from([(seg(0, 0), 3), (seg(0, 1), 4)]));
    }

    #[test]
    fn bad_input_gets_typed_errors_and_changes_nothing() {
        let meta = meta_with(2);
        let mut rg = ReaderGroups::default();
        let create_cmd = |group: &str, streams: Vec<String>, cut: Positions| ReaderGroupCommand::Create {
            scope: "s".into(),
            group: group.into(),
            streams,
            cut,
            now_ms: 1,
            subscriber: false,
        };
        let t = || vec!["t".to_owned()];
        assert!(matches!(
            refused(&meta, &mut rg, &create_cmd("bad name", t(), head(&meta))),
            MetaError::InvalidName(_)
        ));
        assert!(matches!(
            refused(&meta, &mut rg, &create_cmd("g", vec!["nope".into()], head(&meta))),
            MetaError::StreamNotFound(_)
        ));
        assert!(matches!(
            refused(&meta, &mut rg, &create_cmd("g", vec![], head(&meta))),
            MetaError::InvalidArgument(_)
        ));
        assert!(matches!(
            refused(&meta, &mut rg, &create_cmd("g", t(), Positions::new())),
            MetaError::InvalidArgument(_)
        ));
        assert!(matches!(
            refused(&meta, &mut rg, &create_cmd("g", t(), Positions::from([(seg(0, 9), 0)]))),
            MetaError::SegmentNotFound(_)
        ));
        let mut other_scope = create_cmd("g", t(), head(&meta));
        if let ReaderGroupCommand::Create { scope, .. } = &mut other_scope {
            *scope = "nope".into();
        }
        assert!(matches!(refused(&meta, &mut rg, &other_scope), MetaError::ScopeNotFound(_)));
        rg.apply(&meta, &create_cmd("g", t(), head(&meta))).unwrap();
        assert!(matches!(refused(&meta, &mut rg, &create_cmd("g", t(), head(&meta))), MetaError::ReaderGroupExists(_)));
        assert!(matches!(refused(&meta, &mut rg, &sync_cmd("bad/id", &[], &[], None)), MetaError::InvalidName(_)));
        let off = |r: &str| ReaderGroupCommand::Offline { scope: "s".into(), group: "g".into(), reader: r.into() };
        assert!(matches!(refused(&meta, &mut rg, &off("ghost")), MetaError::ReaderNotFound(_)));
        let mut missing = off("a");
        if let ReaderGroupCommand::Offline { group, .. } = &mut missing {
            *group = "nope".into();
        }
        assert!(matches!(refused(&meta, &mut rg, &missing), MetaError::ReaderGroupNotFound(_)));
        let cp =
            ReaderGroupCommand::InitiateCheckpoint { scope: "s".into(), group: "g".into(), name: "".into(), now_ms: 1 };
        assert!(matches!(refused(&meta, &mut rg, &cp), MetaError::InvalidName(_)));
        // Delete, and the state is back to empty.
        rg.apply(&meta, &ReaderGroupCommand::Delete { scope: "s".into(), group: "g".into() }).unwrap();
        assert_eq!(rg, ReaderGroups::default());
    }

    #[test]
    fn state_round_trips_through_json() {
        let meta = meta_with(3);
        let mut rg = ReaderGroups::default();
        create(&meta, &mut rg);
        sync(&meta, &mut rg, "a");
        let json = serde_json::to_string(&rg).unwrap();
        assert_eq!(serde_json::from_str::<ReaderGroups>(&json).unwrap(), rg);
    }
}
