//! Retention: the leader truncates streams whose policy is `time:DURATION`, `size:BYTES` or
//! `consumption:MIN,MAX`.
//!
//! Every `every` the leader records, for each stream with a policy, its *tail stream cut* (the
//! current length of every active segment), the time, and the stream's write position (bytes
//! appended so far, summed over the segments the leader has seen). It then truncates the stream
//! at the newest recorded cut that the policy no longer needs:
//!
//! ```text
//!  recorded cuts:   c1 (t=0s, pos 0)   c2 (t=30s, pos 10M)   c3 (t=60s, pos 25M)   now (t=70s, pos 30M)
//!  time:45s   → newest cut at least 45 s old is c1 (0 s) … at t=75 s it is c2: truncate at c2
//!  size:15MiB → newest cut with at least 15 MiB after it: c2 (30M - 10M = 20M ≥ 15M)
//! ```
//!
//! So a stream keeps at least what its policy asks (time: everything younger than DURATION;
//! size: at least BYTES), and at most one recording interval more. Truncation goes through the
//! same workflow as `TruncateStream` (segments wholly before the cut are deleted, the others
//! truncated; the segment stores then delete their Tier-2 chunks). The recorded cuts live in
//! the leader's memory: after a change of leader, retention restarts its history and truncates
//! again once enough time (or data) has passed.
//!
//! **Consumption** (`consumption:MIN,MAX`, Pravega's subscriber-based retention) needs no
//! history: each pass computes the stream cut to truncate at from the *subscriber* reader
//! groups reading the stream and the stream's time index (cuts at a time, see `time_cut`):
//!
//! ```text
//!   held   = the lowest of every subscriber's last checkpoint and the cut at now - MIN
//!            (none while a subscriber has no checkpoint yet, or there is no subscriber)
//!   forced = the cut at now - MAX
//!   truncate at the highest of held and forced
//! ```
//!
//! "Lowest" and "highest" are taken key range by key range: where the two cuts hold the same
//! segment, the smaller (larger) offset; where one holds an ancestor of the other's segment,
//! the ancestor's (descendant's) position. So data is kept until every subscriber has passed
//! it and it is MIN old, and never longer than MAX. Groups that are not subscribers hold
//! nothing.

use std::collections::{HashMap, VecDeque};
use std::time::Duration;

use nadi_proto::controller::v1 as pb;
use nadi_proto::controller::v1::controller_service_server::ControllerService;
use tonic::Request;

use nadi_proto::SegmentId;

use crate::service::Controller;
use crate::state::{Retention, StreamMeta, StreamState};

/// Default time between two retention passes.
pub const DEFAULT_RETENTION_EVERY: Duration = Duration::from_secs(30);

/// One recorded tail cut.
#[derive(Debug, Clone)]
struct Recorded {
    at_ms: u64,
    /// The stream's write position when the cut was taken.
    position: u64,
    cut: Vec<pb::SegmentOffset>,
}

/// What the leader remembers of one stream.
#[derive(Debug, Default)]
struct StreamHistory {
    cuts: VecDeque<Recorded>,
    /// Bytes appended so far, as far as seen.
    position: u64,
    /// Last seen length of each segment (by packed id).
    seen: HashMap<u64, u64>,
}

/// The leader's retention history of every stream with a policy.
#[derive(Debug, Default)]
pub struct RetentionHistory {
    streams: HashMap<(String, String), StreamHistory>,
}

impl RetentionHistory {
    /// Forgets everything (this node stopped leading).
    pub fn clear(&mut self) {
        self.streams.clear();
    }
}

/// Picks the newest recorded cut the policy no longer needs, and drops it and every older one.
fn due(h: &mut StreamHistory, policy: &Retention, now_ms: u64) -> Option<Recorded> {
    let needed = |r: &Recorded| match *policy {
        Retention::None => true,
        Retention::TimeMs(ms) => now_ms.saturating_sub(r.at_ms) < ms,
        Retention::Bytes(b) => h.position.saturating_sub(r.position) < b,
        Retention::Consumption { .. } => true,
    };
    let n = h.cuts.iter().take_while(|r| !needed(r)).count();
    if n == 0 {
        return None;
    }
    let mut dropped = h.cuts.drain(..n);
    dropped.next_back()
}

impl Controller {
    /// One retention pass over every stream with a policy (the leader calls this).
    pub async fn apply_retention(&self, history: &mut RetentionHistory, now_ms: u64) {
        let streams: Vec<(String, String, Retention)> = match self
            .meta
            .read(|st| {
                let mut out = Vec::new();
                for (scope, sm) in &st.scopes {
                    for (name, m) in &sm.streams {
                        if m.state == StreamState::Active && m.config.retention != Retention::None {
                            out.push((scope.clone(), name.clone(), m.config.retention.clone()));
                        }
                    }
                }
                Ok::<_, crate::MetaError>(out)
            })
            .await
        {
            Ok(s) => s,
            Err(e) => {
                tracing::debug!(error = %e, "retention: cannot read the streams");
                return;
            }
        };
        history.streams.retain(|(s, n), _| streams.iter().any(|(sc, st, _)| sc == s && st == n));
        for (scope, stream, policy) in streams {
            if let Retention::Consumption { min_ms, max_ms } = policy {
                match self.consumption_cut(&scope, &stream, min_ms, max_ms, now_ms).await {
                    Ok(Some(cut)) => self.truncate_for_retention(&scope, &stream, cut, &policy).await,
                    Ok(None) => {}
                    Err(e) => tracing::debug!(scope, stream, error = %e, "retention: no consumption cut this time"),
                }
                continue;
            }
            let h = history.streams.entry((scope.clone(), stream.clone())).or_default();
            let req = pb::GetStreamCutRequest {
                scope: scope.clone(),
                stream: stream.clone(),
                which: pb::get_stream_cut_request::Which::Tail as i32,
                time_ms: 0,
            };
            let cut = match self.get_stream_cut(Request::new(req)).await {
                Ok(r) => r.into_inner().cut,
                Err(e) => {
                    tracing::debug!(scope, stream, error = %e.message(), "retention: no tail cut this time");
                    continue;
                }
            };
            for so in &cut {
                let prev = h.seen.insert(so.segment_id, so.offset).unwrap_or(0);
                h.position += so.offset.saturating_sub(prev);
            }
            h.cuts.push_back(Recorded { at_ms: now_ms, position: h.position, cut });
            let Some(target) = due(h, &policy, now_ms) else { continue };
            self.truncate_for_retention(&scope, &stream, target.cut, &policy).await;
        }
    }

    async fn truncate_for_retention(&self, scope: &str, stream: &str, cut: Vec<pb::SegmentOffset>, policy: &Retention) {
        let req = pb::TruncateStreamRequest { scope: scope.to_owned(), stream: stream.to_owned(), cut };
        match self.truncate_stream(Request::new(req)).await {
            Ok(r) => {
                let r = r.into_inner();
                tracing::info!(scope, stream, deleted_segments = r.deleted_segments, policy = ?policy,
                    "retention truncated the stream");
            }
            // A cut at or behind the head (a manual truncation went further), or a scale in
            // progress: nothing to do now, later cuts will be due in turn.
            Err(e) => tracing::debug!(scope, stream, error = %e.message(), "retention: truncation refused"),
        }
    }

    /// Where consumption retention truncates `scope/stream` now (see the module docs), if
    /// anywhere beyond the head.
    async fn consumption_cut(
        &self,
        scope: &str,
        stream: &str,
        min_ms: u64,
        max_ms: u64,
        now_ms: u64,
    ) -> Result<Option<Vec<pb::SegmentOffset>>, crate::MetaError> {
        // Every subscriber's last checkpoint on this stream; `None` for one without any.
        let (meta, subscribers) = self.meta.read_groups(|st, rg| {
            let m = st.stream(scope, stream).cloned();
            let subs: Vec<Option<Cut>> = rg
                .subscribers(scope, stream)
                .map(|g| {
                    g.checkpoints.last().map(|c| {
                        c.positions.iter().filter(|(s, _)| s.stream == stream).map(|(s, o)| (s.id, *o)).collect()
                    })
                })
                .collect();
            (m, subs)
        });
        let meta = meta?;
        let at = |ms: u64| async move {
            match self.cut_at_time(scope, stream, ms).await {
                Ok(cut) => Ok(Some(cut.iter().map(|c| (SegmentId::from_packed(c.segment_id), c.offset)).collect())),
                // Nothing is that old.
                Err(crate::MetaError::TimeBeforeStream(_)) => Ok(None),
                Err(e) => Err(e),
            }
        };
        let mut held: Option<Cut> = None;
        if !subscribers.is_empty() && subscribers.iter().all(Option::is_some) {
            let mut lowest = at(now_ms.saturating_sub(min_ms)).await?;
            for c in subscribers.into_iter().flatten() {
                lowest = lowest.and_then(|l| combine(&meta, &l, &c, Side::Lower));
            }
            held = lowest;
        }
        let forced = if now_ms > max_ms { at(now_ms - max_ms).await? } else { None };
        let target = match (held, forced) {
            (Some(h), Some(f)) => combine(&meta, &h, &f, Side::Upper),
            (h, f) => h.or(f),
        };
        Ok(target
            .map(|t| t.into_iter().map(|(id, offset)| pb::SegmentOffset { segment_id: id.packed(), offset }).collect()))
    }
}

/// A stream cut: segments tiling the key space, each with an offset.
type Cut = Vec<(SegmentId, u64)>;

/// Which bound [`combine`] takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Side {
    /// The lower: data either cut still needs is kept.
    Lower,
    /// The upper: data either cut drops is dropped.
    Upper,
}

/// True if `a` is an ancestor of `b` (a transitive predecessor).
fn is_ancestor(m: &StreamMeta, a: SegmentId, b: SegmentId) -> bool {
    let mut todo = vec![b];
    let mut seen = std::collections::HashSet::new();
    while let Some(s) = todo.pop() {
        for &p in m.segment(s).map(|r| r.predecessors.as_slice()).unwrap_or_default() {
            if p == a {
                return true;
            }
            if seen.insert(p) {
                todo.push(p);
            }
        }
    }
    false
}

/// The lower or upper bound of two cuts of one stream, key range by key range; `None` if
/// they hold unrelated segments over the same keys (not cuts of this stream) or the result
/// is not a cut.
fn combine(m: &StreamMeta, a: &Cut, b: &Cut, side: Side) -> Option<Cut> {
    let range = |id: SegmentId| m.segment(id).map(|r| (r.key_low, r.key_high));
    let mut bounds: Vec<f64> = Vec::new();
    for (id, _) in a.iter().chain(b) {
        let (lo, hi) = range(*id)?;
        bounds.extend([lo, hi]);
    }
    bounds.sort_by(f64::total_cmp);
    bounds.dedup();
    let covering =
        |c: &Cut, x: f64| c.iter().copied().find(|(id, _)| range(*id).is_some_and(|(lo, hi)| lo <= x && x < hi));
    let mut out: std::collections::BTreeMap<SegmentId, u64> = std::collections::BTreeMap::new();
    for w in bounds.windows(2) {
        let mid = (w[0] + w[1]) / 2.0;
        let ((sa, oa), (sb, ob)) = (covering(a, mid)?, covering(b, mid)?);
        let pick = if sa == sb {
            (sa, if side == Side::Lower { oa.min(ob) } else { oa.max(ob) })
        } else if is_ancestor(m, sa, sb) {
            if side == Side::Lower { (sa, oa) } else { (sb, ob) }
        } else if is_ancestor(m, sb, sa) {
            if side == Side::Lower { (sb, ob) } else { (sa, oa) }
        } else {
            return None;
        };
        let e = out.entry(pick.0).or_insert(pick.1);
        *e = if side == Side::Lower { (*e).min(pick.1) } else { (*e).max(pick.1) };
    }
    let cut: Cut = out.into_iter().collect();
    // A segment together with its ancestor is not a cut.
    let consistent = cut.iter().all(|(x, _)| cut.iter().all(|(y, _)| !is_ancestor(m, *x, *y)));
    consistent.then_some(cut)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(at_ms: u64, position: u64) -> Recorded {
        Recorded { at_ms, position, cut: vec![pb::SegmentOffset { segment_id: 0, offset: position }] }
    }

    /// A stream of 2 segments; segment 0 split into 2 and 3 (epoch 1), then 3 and 1 merged
    /// into 4 (epoch 2).
    fn scaled() -> StreamMeta {
        use crate::state::{Command, ControllerState, EpochReason, Scaling, StreamConfig};
        let mut st = ControllerState::default();
        st.apply(&Command::CreateScope { scope: "s".into(), now_ms: 1 }).unwrap();
        let config = StreamConfig { scaling: Scaling::Fixed { segments: 2 }, retention: Retention::None };
        st.apply(&Command::CreateStream { scope: "s".into(), stream: "t".into(), config, now_ms: 2 }).unwrap();
        st.apply(&Command::StreamCreated { scope: "s".into(), stream: "t".into() }).unwrap();
        let mut scale = |sealed: Vec<SegmentId>, new_ranges: Vec<(f64, f64)>| {
            st.apply(&Command::StartScale {
                scope: "s".into(),
                stream: "t".into(),
                sealed,
                new_ranges,
                reason: EpochReason::Manual,
                now_ms: 3,
                promoted: vec![],
            })
            .unwrap();
            let epoch = st.stream("s", "t").unwrap().pending_scale.as_ref().unwrap().epoch;
            st.apply(&Command::CompleteScale { scope: "s".into(), stream: "t".into(), epoch, now_ms: 4 }).unwrap();
        };
        scale(vec![SegmentId::new(0, 0)], vec![(0.0, 0.25), (0.25, 0.5)]);
        scale(vec![SegmentId::new(1, 3), SegmentId::new(0, 1)], vec![(0.25, 1.0)]);
        st.stream("s", "t").unwrap().clone()
    }

    #[test]
    fn cuts_combine_key_range_by_key_range() {
        let m = scaled();
        let (s0, s1, s2, s3, s4) = (
            SegmentId::new(0, 0),
            SegmentId::new(0, 1),
            SegmentId::new(1, 2),
            SegmentId::new(1, 3),
            SegmentId::new(2, 4),
        );
        let head: Cut = vec![(s0, 10), (s1, 20)];
        let later: Cut = vec![(s2, 5), (s4, 7)];
        assert_eq!(combine(&m, &head, &later, Side::Lower), Some(head.clone()));
        assert_eq!(combine(&m, &head, &later, Side::Upper), Some(later.clone()));
        // Mixed: one cut is ahead on some keys, the other on the rest.
        let a: Cut = vec![(s2, 5), (s3, 9), (s1, 20)];
        let b: Cut = vec![(s0, 10), (s1, 30)];
        assert_eq!(combine(&m, &a, &b, Side::Lower), Some(vec![(s0, 10), (s1, 20)]));
        assert_eq!(combine(&m, &a, &b, Side::Upper), Some(vec![(s1, 30), (s2, 5), (s3, 9)]));
        // The same segments: offsets by offset.
        assert_eq!(combine(&m, &later, &vec![(s2, 8), (s4, 1)], Side::Lower), Some(vec![(s2, 5), (s4, 1)]));
        // A cut of unknown segments combines with nothing.
        assert_eq!(combine(&m, &head, &vec![(SegmentId::new(9, 9), 0)], Side::Lower), None);
    }

    #[test]
    fn the_newest_cut_the_policy_no_longer_needs_is_due() {
        let mut h = StreamHistory { position: 30, ..Default::default() };
        h.cuts.extend([rec(0, 0), rec(30_000, 10), rec(60_000, 25)]);
        assert!(due(&mut h, &Retention::TimeMs(45_000), 40_000).is_none(), "nothing is 45 s old yet");
        assert_eq!(due(&mut h, &Retention::TimeMs(45_000), 75_000).map(|r| r.at_ms), Some(30_000));
        assert_eq!(h.cuts.len(), 1, "the cut used and older ones are dropped");
        let mut h = StreamHistory { position: 30, ..Default::default() };
        h.cuts.extend([rec(0, 0), rec(30_000, 10), rec(60_000, 25)]);
        assert_eq!(due(&mut h, &Retention::Bytes(15), 0).map(|r| r.position), Some(10), "keeps at least 15 bytes");
        assert!(due(&mut h, &Retention::Bytes(15), 0).is_none());
        assert!(due(&mut h, &Retention::None, 1 << 60).is_none());
    }
}
