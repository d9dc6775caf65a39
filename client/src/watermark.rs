//! A reader's watermark: the highest of its stream's watermarks whose cut it has passed
//! (docs/protocol.md, "Watermarks").
//!
//! The controller records a watermark `W` with a cut when every writer noting its time has
//! promised event times of at least `W` for what it appends later: every event below `W` of
//! those writers lies before the cut. A reader has *passed* the cut when, for each segment it
//! reads and every cut segment whose key range overlaps it, the cut segment is the same
//! segment and the reader's position is at or past the cut's offset, or the cut segment is
//! older (created in an earlier epoch: an ancestor, read to its end before this one was
//! handed out). The Java connector applies the same rule per split.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use nadi_proto::controller::v1 as pb;

use crate::client::NadiClient;
use crate::error::ClientError;

/// How often a reader asks the controller for new watermarks, at most.
pub(crate) const REFRESH: Duration = Duration::from_millis(200);
/// Watermarks a reader keeps (as many as the controller does).
const KEEP: usize = 256;

/// A segment a reader reads: its id, key range and position (the offset after the last
/// event handed out).
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Held {
    pub id: u64,
    pub low: f64,
    pub high: f64,
    pub position: u64,
}

/// Whether a reader reading `held` has passed `cut`.
pub(crate) fn passed(cut: &[pb::WatermarkSegment], held: &[Held]) -> bool {
    held.iter().all(|h| {
        // A segment whose range is unknown is checked against the whole cut.
        let (low, high) = if h.low < h.high { (h.low, h.high) } else { (0.0, 1.0) };
        cut.iter()
            .filter(|c| c.key_low < high && low < c.key_high)
            .all(|c| if c.segment_id == h.id { h.position >= c.offset } else { (c.segment_id >> 32) < (h.id >> 32) })
    })
}

/// The watermarks of one stream as a reader sees them.
#[derive(Debug)]
pub(crate) struct Tracker {
    scope: String,
    stream: String,
    /// Fetched and not yet known to be passed for good, oldest first.
    marks: VecDeque<pb::Watermark>,
    /// The highest watermark time fetched.
    fetched: u64,
    next_fetch: Instant,
    /// The reader's positions only move forward (a stream reader): a passed watermark stays
    /// passed and is dropped once counted. Otherwise (a group member, whose segments come
    /// and go) every kept watermark is checked each time.
    monotone: bool,
    best: Option<u64>,
    /// Key ranges of segments, for readers that do not know them.
    pub(crate) ranges: HashMap<u64, (f64, f64)>,
    /// A group member's view of the group: its segments and positions as the controller last
    /// reported them (empty for a stream reader).
    pub(crate) group_positions: Vec<(u64, u64)>,
}

impl Tracker {
    pub(crate) fn new(scope: &str, stream: &str, monotone: bool) -> Tracker {
        Tracker {
            scope: scope.to_owned(),
            stream: stream.to_owned(),
            marks: VecDeque::new(),
            fetched: 0,
            next_fetch: Instant::now(),
            monotone,
            best: None,
            ranges: HashMap::new(),
            group_positions: Vec::new(),
        }
    }

    /// Whether [`refresh`](Self::refresh) would ask the controller now.
    pub(crate) fn due(&self) -> bool {
        Instant::now() >= self.next_fetch
    }

    /// Fetches new watermarks if the last fetch is [`REFRESH`] old; with `ranges_of`, also the
    /// key ranges of those segments it does not know yet (from the stream's history).
    pub(crate) async fn refresh(&mut self, client: &NadiClient, ranges_of: &[u64]) -> Result<(), ClientError> {
        let now = Instant::now();
        if now < self.next_fetch {
            return Ok(());
        }
        self.next_fetch = now + REFRESH;
        if ranges_of.iter().any(|id| !self.ranges.contains_key(id)) {
            let history = client.stream_history(&self.scope, &self.stream).await?;
            for s in history.epochs.into_iter().flat_map(|e| e.segments) {
                self.ranges.insert(s.id, (s.key_low, s.key_high));
            }
        }
        let resp = client.watermarks(&self.scope, &self.stream, self.fetched).await?;
        for w in resp.watermarks {
            if w.time_ms > self.fetched {
                self.fetched = w.time_ms;
                self.marks.push_back(w);
            }
        }
        while self.marks.len() > KEEP {
            self.marks.pop_front();
        }
        Ok(())
    }

    /// The reader's watermark now, for the segments it reads: `None` until it passed one.
    pub(crate) fn current(&mut self, held: &[Held]) -> Option<u64> {
        if self.monotone {
            // Times rise along the queue, but a later cut may be passed before an earlier one
            // (cuts are not ordered segment by segment): the newest passed one counts.
            if let Some(i) = self.marks.iter().rposition(|w| passed(&w.cut, held)) {
                self.best = Some(self.marks[i].time_ms.max(self.best.unwrap_or(0)));
                self.marks.drain(..=i);
            }
            self.best
        } else {
            if held.is_empty() {
                return None;
            }
            self.marks.iter().rev().find(|w| passed(&w.cut, held)).map(|w| w.time_ms)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seg(epoch: u64, number: u64, low: f64, high: f64, offset: u64) -> pb::WatermarkSegment {
        pb::WatermarkSegment { segment_id: (epoch << 32) | number, key_low: low, key_high: high, offset }
    }

    fn held(epoch: u64, number: u64, low: f64, high: f64, position: u64) -> Held {
        Held { id: (epoch << 32) | number, low, high, position }
    }

    #[test]
    fn a_reader_passes_a_cut_at_or_after_each_offset_in_its_ranges() {
        let cut = [seg(0, 0, 0.0, 0.5, 100), seg(0, 1, 0.5, 1.0, 200)];
        assert!(!passed(&cut, &[held(0, 0, 0.0, 0.5, 150), held(0, 1, 0.5, 1.0, 199)]));
        assert!(passed(&cut, &[held(0, 0, 0.0, 0.5, 100), held(0, 1, 0.5, 1.0, 200)]));
        // A group member reading only the first segment.
        assert!(passed(&cut, &[held(0, 0, 0.0, 0.5, 100)]));
        assert!(!passed(&cut, &[held(0, 1, 0.5, 1.0, 0)]));
    }

    #[test]
    fn older_cut_segments_are_passed_and_newer_ones_are_not() {
        // Segment 0 split into 2 and 3 in epoch 1; the cut names 0 and successor 2.
        let cut = [seg(0, 0, 0.0, 0.5, 100), seg(1, 2, 0.0, 0.25, 40), seg(0, 1, 0.5, 1.0, 0)];
        // Still reading segment 0 (past its offset): successor 2 is ahead of it.
        assert!(!passed(&cut, &[held(0, 0, 0.0, 0.5, 500), held(0, 1, 0.5, 1.0, 0)]));
        // Reading the successors: 0 is an ancestor, 2 must be at 40, 3 has nothing in the cut.
        let r = |p2| [held(1, 2, 0.0, 0.25, p2), held(1, 3, 0.25, 0.5, 0), held(0, 1, 0.5, 1.0, 0)];
        assert!(!passed(&cut, &r(39)));
        assert!(passed(&cut, &r(40)));
    }

    #[test]
    fn a_segment_of_unknown_range_is_checked_against_the_whole_cut() {
        let cut = [seg(0, 1, 0.5, 1.0, 10)];
        assert!(!passed(&cut, &[held(0, 0, 0.0, 0.0, 0)]));
    }

    #[test]
    fn a_stream_reader_keeps_the_highest_passed_and_a_group_member_recomputes() {
        let w = |t, off| pb::Watermark { time_ms: t, cut: vec![seg(0, 0, 0.0, 1.0, off)] };
        let mut t = Tracker::new("s", "x", true);
        t.marks.extend([w(10, 100), w(20, 200), w(30, 300)]);
        assert_eq!(t.current(&[held(0, 0, 0.0, 1.0, 50)]), None);
        assert_eq!(t.current(&[held(0, 0, 0.0, 1.0, 250)]), Some(20));
        assert_eq!(t.marks.len(), 1);
        assert_eq!(t.current(&[held(0, 0, 0.0, 1.0, 300)]), Some(30));

        let mut g = Tracker::new("s", "x", false);
        g.marks.extend([w(10, 100), w(20, 200)]);
        assert_eq!(g.current(&[held(0, 0, 0.0, 1.0, 250)]), Some(20));
        // Taking over a segment behind the cut lowers it: the events ahead are not delivered.
        assert_eq!(g.current(&[held(0, 0, 0.0, 1.0, 150)]), Some(10));
        assert_eq!(g.current(&[]), None);
    }
}
