//! The stream cut at a time (`GetStreamCut` with `WHICH_TIME`): a walk over the segment graph.
//!
//! Every event a segment store keeps has an append time (non-decreasing within a segment), and
//! the store answers `GetOffsetAtTime`: the first event of a segment appended at or after a
//! time `T`, or "past the end" when every event so far is older. The cut at `T` starts at the
//! stream's head and walks forward through scales until every segment of the cut holds the
//! first event at or after `T`, or is still open:
//!
//! ```text
//!   epoch 0          epoch 1 (split of A)          T = 12:00
//!   A [0, .5) ────┬─ A1 [0, .25)    A: sealed, last event 11:58   → done before T: walk on
//!                 └─ A2 [.25, .5)   A1, A2: first event ≥ T at 40, 0
//!   B [.5, 1) ───────────────────── B: open, first event ≥ T at 90
//!
//!   cut at T = { A1@40, A2@0, B@90 }
//! ```
//!
//! Rules, repeated until nothing moves:
//! - a segment whose answer is past its end *and* sealed is done before `T`; any other answer
//!   keeps the segment in the cut at the answered offset (an open segment past its end stays
//!   at its length: whatever comes next is at or after `T`);
//! - successors replace their predecessors only all at once: a scale's sealed segments and the
//!   segments that replaced them form groups (linked by overlapping key ranges), and a group
//!   moves only when every sealed segment of it is in the cut and done. So a merge waits for
//!   every predecessor, and a 2 → 3 scale whose middle successor straddles both predecessors
//!   moves only when both are done. A done segment that cannot move (its group waits, or it
//!   has no successors: a sealed stream) stays in the cut at its answer, its length.
//!
//! Invariants: the cut always tiles `[0, 1)` (a group's successors cover exactly its sealed
//! segments' ranges), holds no segment together with one of its ancestors (a group moves as a
//! whole), and never goes past an event at or after `T`. It is exact (reading from it returns
//! exactly the events appended at or after `T`) except across a scale that was only partly
//! done at `T`: when a merge's (or an uneven scale's) predecessors were sealed at different
//! moments and `T` falls between, the cut stays before the successor, which may then hold a
//! few events appended before `T` (from the keys of the predecessor sealed first). It never
//! misses one appended at or after `T`.
//!
//! The walk ([`cut_at_time`]) is pure apart from the lookups it is given, so the tests drive it
//! with a fake segment store.

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;

use nadi_proto::SegmentId;

use crate::state::StreamMeta;

/// One segment of a [`SegmentGraph`]: its key range and links.
#[derive(Debug, Clone, PartialEq)]
pub struct GraphNode {
    /// Low end of the key range (sorts the cut).
    pub key_low: f64,
    /// The segments it replaced (empty in epoch 0).
    pub predecessors: Vec<SegmentId>,
    /// The segments that replaced it (empty while it is active, or once the stream is sealed).
    pub successors: Vec<SegmentId>,
}

/// The segments of one stream and their predecessor/successor links: a copy of the metadata,
/// so that the walk can wait for segment stores without holding the state.
#[derive(Debug, Clone, Default)]
pub struct SegmentGraph {
    nodes: BTreeMap<SegmentId, GraphNode>,
}

impl SegmentGraph {
    /// The graph of a stream's segments that are not deleted.
    pub fn of(m: &StreamMeta) -> SegmentGraph {
        let nodes = m
            .segments
            .values()
            .filter(|s| !s.deleted)
            .map(|s| {
                let node = GraphNode {
                    key_low: s.key_low,
                    predecessors: s.predecessors.clone(),
                    successors: s.successors.clone(),
                };
                (s.id, node)
            })
            .collect();
        SegmentGraph { nodes }
    }

    /// Adds (or replaces) one segment.
    pub fn insert(&mut self, id: SegmentId, node: GraphNode) {
        self.nodes.insert(id, node);
    }

    fn successors(&self, id: SegmentId) -> &[SegmentId] {
        self.nodes.get(&id).map_or(&[], |n| &n.successors)
    }

    fn predecessors(&self, id: SegmentId) -> &[SegmentId] {
        self.nodes.get(&id).map_or(&[], |n| &n.predecessors)
    }

    fn key_low(&self, id: SegmentId) -> f64 {
        self.nodes.get(&id).map_or(0.0, |n| n.key_low)
    }

    /// The scale group of sealed segment `id`: the segments sealed with it whose successors
    /// overlap (transitively), and those successors. Empty successors: `id` was never replaced.
    fn group(&self, id: SegmentId) -> (BTreeSet<SegmentId>, BTreeSet<SegmentId>) {
        let mut sealed = BTreeSet::from([id]);
        let mut successors = BTreeSet::new();
        let mut todo = vec![id];
        while let Some(p) = todo.pop() {
            for &s in self.successors(p) {
                if successors.insert(s) {
                    for &q in self.predecessors(s) {
                        if sealed.insert(q) {
                            todo.push(q);
                        }
                    }
                }
            }
        }
        (sealed, successors)
    }
}

/// A segment store's answer to `GetOffsetAtTime`, as far as the walk needs it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OffsetAtTime {
    /// The first event at or after the time; the length when `past_end`; the start offset
    /// when the events before the time were truncated.
    pub offset: u64,
    /// No event of the segment was appended at or after the time (yet).
    pub past_end: bool,
    /// The segment is sealed: no event can come.
    pub sealed: bool,
}

impl OffsetAtTime {
    /// Every event of the segment is older than the time, and no other can come.
    fn done_before(&self) -> bool {
        self.past_end && self.sealed
    }
}

/// The cut at a time: starts at `head` (the stream's head segments) and asks `ask` for the
/// segments it reaches (each at most once, those of one round concurrently), moving past
/// segments done before the time as the module docs say. Returns `(segment, offset)` sorted by
/// key range.
///
/// # Errors
///
/// The first error `ask` returns.
pub async fn cut_at_time<E, F, Fut>(
    graph: &SegmentGraph,
    head: &[SegmentId],
    mut ask: F,
) -> Result<Vec<(SegmentId, u64)>, E>
where
    F: FnMut(SegmentId) -> Fut,
    Fut: Future<Output = Result<OffsetAtTime, E>>,
{
    let mut answered: BTreeMap<SegmentId, OffsetAtTime> = BTreeMap::new();
    let mut pending: Vec<SegmentId> = head.to_vec();
    while !pending.is_empty() {
        let asks: Vec<Fut> = pending.iter().map(|id| ask(*id)).collect();
        let answers = futures::future::try_join_all(asks).await?;
        answered.extend(pending.drain(..).zip(answers));
        // Move every group whose sealed segments are all in the cut and done.
        let done: Vec<SegmentId> = answered.iter().filter(|(_, a)| a.done_before()).map(|(id, _)| *id).collect();
        let mut looked_at = BTreeSet::new();
        for id in done {
            if looked_at.contains(&id) || !answered.contains_key(&id) {
                continue;
            }
            let (sealed, successors) = graph.group(id);
            looked_at.extend(sealed.iter().copied());
            let movable = !successors.is_empty()
                && sealed.iter().all(|s| answered.get(s).is_some_and(OffsetAtTime::done_before))
                && successors.iter().all(|s| !answered.contains_key(s));
            if movable {
                for s in &sealed {
                    answered.remove(s);
                }
                pending.extend(successors);
            }
        }
    }
    let mut cut: Vec<(SegmentId, u64)> = answered.into_iter().map(|(id, a)| (id, a.offset)).collect();
    cut.sort_by(|a, b| graph.key_low(a.0).total_cmp(&graph.key_low(b.0)));
    Ok(cut)
}

#[cfg(test)]
mod tests {
    use std::cell::RefCell;
    use std::collections::HashMap;

    use super::*;

    /// A stream's segment graph built scale by scale, with the key ranges the tests check the
    /// tiling with.
    #[derive(Default)]
    struct Stream {
        graph: SegmentGraph,
        ranges: HashMap<SegmentId, (f64, f64)>,
        next: u32,
    }

    impl Stream {
        /// A stream of epoch 0 with these ranges.
        fn new(ranges: &[(f64, f64)]) -> (Stream, Vec<SegmentId>) {
            let mut s = Stream::default();
            let ids = s.add(0, ranges, &[]);
            (s, ids)
        }

        fn add(&mut self, epoch: u32, ranges: &[(f64, f64)], sealed: &[SegmentId]) -> Vec<SegmentId> {
            let mut ids = Vec::new();
            for &(low, high) in ranges {
                let id = SegmentId::new(epoch, self.next);
                self.next += 1;
                let predecessors: Vec<SegmentId> = sealed
                    .iter()
                    .copied()
                    .filter(|p| {
                        let (pl, ph) = self.ranges[p];
                        pl < high && low < ph
                    })
                    .collect();
                for p in &predecessors {
                    self.graph.nodes.get_mut(p).expect("known").successors.push(id);
                }
                self.graph.insert(id, GraphNode { key_low: low, predecessors, successors: vec![] });
                self.ranges.insert(id, (low, high));
                ids.push(id);
            }
            ids
        }

        /// Seals `sealed` and replaces them by segments with `ranges` (as `StartScale` links them).
        fn scale(&mut self, epoch: u32, sealed: &[SegmentId], ranges: &[(f64, f64)]) -> Vec<SegmentId> {
            self.add(epoch, ranges, sealed)
        }

        /// Runs the walk against `answers`; also checks the cut tiles [0, 1) and returns which
        /// segments were asked, in order.
        fn cut(
            &self,
            head: &[SegmentId],
            answers: &HashMap<SegmentId, OffsetAtTime>,
        ) -> (Vec<(SegmentId, u64)>, Vec<SegmentId>) {
            let asked = RefCell::new(Vec::new());
            let cut = futures::executor::block_on(cut_at_time(&self.graph, head, |id| {
                asked.borrow_mut().push(id);
                let a = answers.get(&id).copied().ok_or(format!("segment {id} was asked but has no answer"));
                std::future::ready(a)
            }))
            .expect("every asked segment has an answer");
            let mut at = 0.0;
            for (id, _) in &cut {
                let (low, high) = self.ranges[id];
                assert_eq!(low, at, "the cut {cut:?} must tile [0, 1)");
                at = high;
            }
            assert_eq!(at, 1.0, "the cut {cut:?} must tile [0, 1)");
            (cut, asked.into_inner())
        }
    }

    /// Holds an event at or after the time at `offset`.
    fn at(offset: u64, sealed: bool) -> OffsetAtTime {
        OffsetAtTime { offset, past_end: false, sealed }
    }

    /// Sealed, every event older than the time.
    fn done(length: u64) -> OffsetAtTime {
        OffsetAtTime { offset: length, past_end: true, sealed: true }
    }

    /// Open, every event so far older than the time.
    fn open_end(length: u64) -> OffsetAtTime {
        OffsetAtTime { offset: length, past_end: true, sealed: false }
    }

    #[test]
    fn without_scaling_each_segment_is_cut_at_its_answer() {
        let (s, head) = Stream::new(&[(0.0, 0.5), (0.5, 1.0)]);
        let answers = HashMap::from([(head[0], at(40, false)), (head[1], open_end(70))]);
        let (cut, asked) = s.cut(&head, &answers);
        assert_eq!(cut, vec![(head[0], 40), (head[1], 70)]);
        assert_eq!(asked, head);
    }

    #[test]
    fn a_split_is_followed_when_its_predecessor_is_done() {
        let (mut s, head) = Stream::new(&[(0.0, 0.5), (0.5, 1.0)]);
        let split = s.scale(1, &[head[0]], &[(0.0, 0.25), (0.25, 0.5)]);
        let answers = HashMap::from([
            (head[0], done(100)),
            (head[1], at(90, false)),
            (split[0], at(40, false)),
            (split[1], open_end(0)),
        ]);
        let (cut, _) = s.cut(&head, &answers);
        assert_eq!(cut, vec![(split[0], 40), (split[1], 0), (head[1], 90)]);
        // The time falls inside the predecessor: the successors are never asked.
        let answers = HashMap::from([(head[0], at(60, true)), (head[1], at(90, false))]);
        let (cut, asked) = s.cut(&head, &answers);
        assert_eq!(cut, vec![(head[0], 60), (head[1], 90)]);
        assert_eq!(asked, head);
    }

    #[test]
    fn a_merge_waits_for_every_predecessor() {
        let (mut s, head) = Stream::new(&[(0.0, 0.5), (0.5, 1.0)]);
        let merged = s.scale(1, &head, &[(0.0, 1.0)]);
        // One predecessor still holds events at or after the time: the merge does not enter,
        // the done one stays at its end.
        let answers = HashMap::from([(head[0], done(100)), (head[1], at(30, true))]);
        let (cut, asked) = s.cut(&head, &answers);
        assert_eq!(cut, vec![(head[0], 100), (head[1], 30)]);
        assert!(!asked.contains(&merged[0]), "the merged segment is not asked: {asked:?}");
        // Both done: the merged segment replaces them.
        let answers = HashMap::from([(head[0], done(100)), (head[1], done(80)), (merged[0], at(12, false))]);
        let (cut, _) = s.cut(&head, &answers);
        assert_eq!(cut, vec![(merged[0], 12)]);
    }

    #[test]
    fn an_uneven_scale_moves_as_one_group() {
        // [0, .5) [.5, 1) → [0, 1/3) [1/3, 2/3) [2/3, 1): the middle successor has both
        // predecessors, so all three successors enter together or not at all.
        let (mut s, head) = Stream::new(&[(0.0, 0.5), (0.5, 1.0)]);
        let three = s.scale(1, &head, &[(0.0, 1.0 / 3.0), (1.0 / 3.0, 2.0 / 3.0), (2.0 / 3.0, 1.0)]);
        let answers = HashMap::from([(head[0], done(100)), (head[1], at(5, true))]);
        let (cut, asked) = s.cut(&head, &answers);
        assert_eq!(cut, vec![(head[0], 100), (head[1], 5)], "the first successor must not enter alone");
        assert_eq!(asked, head);
        let answers = HashMap::from([
            (head[0], done(100)),
            (head[1], done(80)),
            (three[0], open_end(7)),
            (three[1], at(3, false)),
            (three[2], at(0, false)),
        ]);
        let (cut, _) = s.cut(&head, &answers);
        assert_eq!(cut, vec![(three[0], 7), (three[1], 3), (three[2], 0)]);
    }

    #[test]
    fn the_walk_goes_through_several_scales() {
        // split A, then merge A2 with B; the time falls in the merged segment.
        let (mut s, head) = Stream::new(&[(0.0, 0.5), (0.5, 1.0)]);
        let split = s.scale(1, &[head[0]], &[(0.0, 0.25), (0.25, 0.5)]);
        let merged = s.scale(2, &[split[1], head[1]], &[(0.25, 1.0)]);
        let answers = HashMap::from([
            (head[0], done(100)),
            (head[1], done(200)),
            (split[0], at(10, false)),
            (split[1], done(50)),
            (merged[0], at(20, false)),
        ]);
        let (cut, asked) = s.cut(&head, &answers);
        assert_eq!(cut, vec![(split[0], 10), (merged[0], 20)]);
        assert_eq!(asked.iter().filter(|id| **id == head[1]).count(), 1, "each segment is asked once: {asked:?}");
    }

    #[test]
    fn a_time_before_all_data_is_the_head() {
        let (mut s, head) = Stream::new(&[(0.0, 0.5), (0.5, 1.0)]);
        s.scale(1, &head, &[(0.0, 1.0)]);
        // The first events (or, after a truncation, the start offsets) of the head segments.
        let answers = HashMap::from([(head[0], at(0, true)), (head[1], at(64, true))]);
        let (cut, asked) = s.cut(&head, &answers);
        assert_eq!(cut, vec![(head[0], 0), (head[1], 64)]);
        assert_eq!(asked, head);
    }

    #[test]
    fn a_time_after_all_data_is_the_active_segments_at_their_ends() {
        let (mut s, head) = Stream::new(&[(0.0, 0.5), (0.5, 1.0)]);
        let split = s.scale(1, &[head[1]], &[(0.5, 0.75), (0.75, 1.0)]);
        let answers = HashMap::from([
            (head[0], open_end(10)),
            (head[1], done(20)),
            (split[0], open_end(30)),
            (split[1], open_end(40)),
        ]);
        let (cut, _) = s.cut(&head, &answers);
        assert_eq!(cut, vec![(head[0], 10), (split[0], 30), (split[1], 40)]);
        // A sealed stream: its last segments are done but have no successors, so they stay
        // at their ends.
        let answers =
            HashMap::from([(head[0], done(10)), (head[1], done(20)), (split[0], done(30)), (split[1], done(40))]);
        let (cut, _) = s.cut(&head, &answers);
        assert_eq!(cut, vec![(head[0], 10), (split[0], 30), (split[1], 40)]);
    }

    #[test]
    fn a_head_after_a_truncation_starts_the_walk() {
        // Truncated at the split: the head is the successors, the predecessor is gone.
        let (mut s, first) = Stream::new(&[(0.0, 1.0)]);
        let split = s.scale(1, &first, &[(0.0, 0.5), (0.5, 1.0)]);
        s.graph.nodes.remove(&first[0]);
        let answers = HashMap::from([(split[0], at(8, false)), (split[1], at(16, false))]);
        let (cut, asked) = s.cut(&split, &answers);
        assert_eq!(cut, vec![(split[0], 8), (split[1], 16)]);
        assert_eq!(asked, split);
    }

    #[test]
    fn the_first_error_is_returned() {
        let (s, head) = Stream::new(&[(0.0, 1.0)]);
        let r: Result<_, &str> =
            futures::executor::block_on(cut_at_time(&s.graph, &head, |_| std::future::ready(Err("store down"))));
        assert_eq!(r, Err("store down"));
    }
}
