//! Writers' event time and the streams' watermarks (docs/protocol.md, "Watermarks").
//!
//! Pravega's approach: a writer *notes* its time, a promise that every event it appends after
//! the note has an event time at or above it, together with the position its acknowledged
//! appends reached in each segment. The leader keeps each writer's latest note and, whenever
//! the minimum time over the writers that are neither idle (no note within their idle
//! timeout) nor closed rises, records a watermark: that minimum, with the cut of every
//! segment's highest noted position. Every event with an event time below the watermark that
//! a noting writer appended lies before that cut, so a reader that has passed the cut has
//! seen all of them.
//!
//! Soft state, on the leader only: after a leader change writers note again (each note
//! carries every segment the writer appended to, so the first note rebuilds its part of the
//! cut) and readers keep the watermark they had until a new one comes.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::time::{Duration, Instant};

use nadi_proto::controller::v1 as pb;
use parking_lot::Mutex;

/// Watermarks a stream keeps, newest last.
pub(crate) const KEEP: usize = 256;
/// A writer's idle timeout when its note names none.
pub(crate) const DEFAULT_IDLE: Duration = Duration::from_secs(10);
/// A writer idle (or closed) this long is forgotten; its positions stay in the cut.
const FORGET: Duration = Duration::from_secs(3600);
/// The longest idle timeout a writer may ask for.
pub(crate) const MAX_IDLE: Duration = Duration::from_secs(24 * 3600);

/// One writer's note, checked against the stream's segments.
#[derive(Debug, Clone)]
pub(crate) struct Note {
    pub writer_id: String,
    pub time_ms: u64,
    /// `(segment id, key low, key high, offset)` of the live segments it names.
    pub position: Vec<(u64, f64, f64, u64)>,
    pub closed: bool,
    pub idle: Duration,
}

/// A note whose time is lower than the writer's previous one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct TimeWentBack {
    pub previous_ms: u64,
}

#[derive(Debug, Clone)]
struct Writer {
    time_ms: u64,
    noted_at: Instant,
    idle: Duration,
    closed: bool,
}

impl Writer {
    fn active(&self, now: Instant) -> bool {
        !self.closed && now.saturating_duration_since(self.noted_at) <= self.idle
    }
}

/// One stream's writers and watermarks.
#[derive(Debug, Default)]
pub(crate) struct StreamMarks {
    /// The stream's creation time: a stream deleted and created again starts afresh.
    created_at_ms: u64,
    writers: HashMap<String, Writer>,
    /// Per segment: key range and the highest position any writer noted.
    upper: BTreeMap<u64, (f64, f64, u64)>,
    marks: VecDeque<pb::Watermark>,
    last_ms: u64,
}

impl StreamMarks {
    /// Applies `note`, then records a watermark if the minimum over active writers rose.
    pub(crate) fn note(&mut self, note: Note, now: Instant) -> Result<u64, TimeWentBack> {
        if let Some(w) = self.writers.get(&note.writer_id)
            && note.time_ms < w.time_ms
        {
            return Err(TimeWentBack { previous_ms: w.time_ms });
        }
        for (id, low, high, offset) in note.position {
            let e = self.upper.entry(id).or_insert((low, high, 0));
            e.2 = e.2.max(offset);
        }
        let writer = Writer { time_ms: note.time_ms, noted_at: now, idle: note.idle, closed: note.closed };
        self.writers.insert(note.writer_id, writer);
        self.advance(now);
        Ok(self.last_ms)
    }

    /// Forgets long-idle writers and records a watermark if the minimum rose (an idle timeout
    /// may have passed since the last note).
    pub(crate) fn advance(&mut self, now: Instant) {
        self.writers.retain(|_, w| now.saturating_duration_since(w.noted_at) <= w.idle.max(FORGET));
        let Some(min) = self.writers.values().filter(|w| w.active(now)).map(|w| w.time_ms).min() else {
            return;
        };
        if min <= self.last_ms {
            return;
        }
        let cut = self
            .upper
            .iter()
            .map(|(&segment_id, &(key_low, key_high, offset))| pb::WatermarkSegment {
                segment_id,
                key_low,
                key_high,
                offset,
            })
            .collect();
        self.marks.push_back(pb::Watermark { time_ms: min, cut });
        while self.marks.len() > KEEP {
            self.marks.pop_front();
        }
        self.last_ms = min;
    }

    /// Drops the cut entries of segments that no longer exist (deleted by a truncation).
    pub(crate) fn prune(&mut self, live: impl Fn(u64) -> bool) {
        self.upper.retain(|id, _| live(*id));
    }

    /// The watermarks above `after_ms`, oldest first, and the writer counts.
    pub(crate) fn answer(&self, after_ms: u64, now: Instant) -> pb::GetWatermarksResponse {
        let active = self.writers.values().filter(|w| w.active(now)).count() as u32;
        let idle = self.writers.values().filter(|w| !w.closed).count() as u32 - active;
        pb::GetWatermarksResponse {
            watermarks: self.marks.iter().filter(|m| m.time_ms > after_ms).cloned().collect(),
            active_writers: active,
            idle_writers: idle,
        }
    }
}

/// The watermarks of every stream a leader was told about.
#[derive(Debug, Default)]
pub(crate) struct Watermarks {
    streams: Mutex<HashMap<(String, String), StreamMarks>>,
}

impl Watermarks {
    /// Runs `f` on the stream's marks (created afresh if the stream was created again).
    pub(crate) fn with<R>(
        &self,
        scope: &str,
        stream: &str,
        created_at_ms: u64,
        f: impl FnOnce(&mut StreamMarks) -> R,
    ) -> R {
        let mut streams = self.streams.lock();
        let marks = streams.entry((scope.to_owned(), stream.to_owned())).or_default();
        if marks.created_at_ms != created_at_ms {
            *marks = StreamMarks { created_at_ms, ..StreamMarks::default() };
        }
        f(marks)
    }

    /// Forgets a deleted stream.
    pub(crate) fn forget(&self, scope: &str, stream: &str) {
        self.streams.lock().remove(&(scope.to_owned(), stream.to_owned()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn note(writer: &str, time_ms: u64, position: &[(u64, u64)]) -> Note {
        Note {
            writer_id: writer.into(),
            time_ms,
            position: position.iter().map(|&(id, off)| (id, 0.0, 1.0, off)).collect(),
            closed: false,
            idle: Duration::from_secs(2),
        }
    }

    fn times(m: &StreamMarks) -> Vec<u64> {
        m.marks.iter().map(|w| w.time_ms).collect()
    }

    fn cut(w: &pb::Watermark) -> Vec<(u64, u64)> {
        w.cut.iter().map(|s| (s.segment_id, s.offset)).collect()
    }

    #[test]
    fn the_watermark_is_the_lowest_active_writer_and_the_cut_the_highest_positions() {
        let t0 = Instant::now();
        let mut m = StreamMarks::default();
        assert_eq!(m.note(note("a", 100, &[(1, 50)]), t0), Ok(100));
        assert_eq!(m.note(note("b", 40, &[(1, 80), (2, 10)]), t0), Ok(100), "never goes back");
        assert_eq!(times(&m), vec![100]);
        assert_eq!(m.note(note("a", 300, &[(1, 120)]), t0), Ok(100), "b holds it at 40 < 100");
        assert_eq!(m.note(note("b", 200, &[(2, 30)]), t0), Ok(200));
        assert_eq!(times(&m), vec![100, 200]);
        assert_eq!(cut(m.marks.back().unwrap()), vec![(1, 120), (2, 30)]);
        // A lower offset noted later does not lower the cut.
        m.note(note("b", 250, &[(1, 5)]), t0).unwrap();
        assert_eq!(cut(m.marks.back().unwrap()), vec![(1, 120), (2, 30)]);
    }

    #[test]
    fn an_idle_writer_stops_holding_the_watermark_and_a_closed_one_at_once() {
        let t0 = Instant::now();
        let mut m = StreamMarks::default();
        m.note(note("a", 1_000, &[(1, 10)]), t0).unwrap();
        m.note(note("idle", 500, &[(2, 10)]), t0).unwrap();
        assert_eq!(m.last_ms, 1_000, "the first note alone made a watermark");
        m.note(note("a", 5_000, &[(1, 20)]), t0 + Duration::from_secs(1)).unwrap();
        assert_eq!(m.last_ms, 1_000, "idle writer's 500 still holds it");
        assert_eq!(m.answer(0, t0 + Duration::from_secs(1)).active_writers, 2);
        m.advance(t0 + Duration::from_millis(2_001));
        assert_eq!(m.last_ms, 5_000, "its 2 s timeout passed");
        let a = m.answer(1_000, t0 + Duration::from_millis(2_001));
        assert_eq!((a.active_writers, a.idle_writers), (1, 1));
        assert_eq!(a.watermarks.iter().map(|w| w.time_ms).collect::<Vec<_>>(), vec![5_000]);
        // The idle writer's positions stay in the cut.
        assert_eq!(cut(&a.watermarks[0]), vec![(1, 20), (2, 10)]);

        let mut m = StreamMarks::default();
        m.note(note("a", 1_000, &[]), t0).unwrap();
        m.note(note("b", 2_000, &[]), t0).unwrap();
        m.note(Note { closed: true, ..note("a", 1_500, &[]) }, t0).unwrap();
        assert_eq!(m.last_ms, 2_000);
    }

    #[test]
    fn a_note_going_back_in_time_is_refused_and_changes_nothing() {
        let t0 = Instant::now();
        let mut m = StreamMarks::default();
        m.note(note("a", 1_000, &[(1, 10)]), t0).unwrap();
        assert_eq!(m.note(note("a", 999, &[(1, 99)]), t0), Err(TimeWentBack { previous_ms: 1_000 }));
        assert_eq!(m.upper[&1].2, 10);
        assert_eq!(m.note(note("a", 1_000, &[(1, 12)]), t0), Ok(1_000), "the same time again is a retry");
    }

    #[test]
    fn only_the_newest_marks_are_kept_and_deleted_segments_leave_the_cut() {
        let t0 = Instant::now();
        let mut m = StreamMarks::default();
        for t in 1..=(KEEP as u64 + 10) {
            m.note(note("a", t, &[(1, t), (2, 1)]), t0).unwrap();
        }
        assert_eq!(m.marks.len(), KEEP);
        assert_eq!(m.marks.front().unwrap().time_ms, 11);
        m.prune(|id| id != 2);
        m.note(note("a", 1_000, &[]), t0).unwrap();
        assert_eq!(cut(m.marks.back().unwrap()), vec![(1, KEEP as u64 + 10)]);
    }

    #[test]
    fn a_stream_created_again_starts_without_marks() {
        let t0 = Instant::now();
        let all = Watermarks::default();
        all.with("s", "x", 1, |m| m.note(note("a", 10, &[(1, 1)]), t0)).unwrap();
        assert_eq!(all.with("s", "x", 1, |m| m.answer(0, t0)).watermarks.len(), 1);
        assert_eq!(all.with("s", "x", 2, |m| m.answer(0, t0)).watermarks.len(), 0);
        all.forget("s", "x");
        assert!(all.streams.lock().is_empty());
    }
}
