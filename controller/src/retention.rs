//! Retention: the leader truncates streams whose policy is `time:DURATION` or `size:BYTES`.
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

use std::collections::{HashMap, VecDeque};
use std::time::Duration;

use nadi_proto::controller::v1 as pb;
use nadi_proto::controller::v1::controller_service_server::ControllerService;
use tonic::Request;

use crate::service::Controller;
use crate::state::{Retention, StreamState};

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
            let req = pb::TruncateStreamRequest { scope: scope.clone(), stream: stream.clone(), cut: target.cut };
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
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(at_ms: u64, position: u64) -> Recorded {
        Recorded { at_ms, position, cut: vec![pb::SegmentOffset { segment_id: 0, offset: position }] }
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
