//! Scaling decisions from measured load (issue 6). Pure and deterministic: given a stream's
//! active segments with their rates (in the policy's unit: events/s, or KiB/s), the policy and
//! what was scaled recently, it says which segments to split and which neighbours to merge.
//! Not wired to the load reports and the scale workflow yet.
//!
//! - **Hot**: the shortest window's rate and the next one's are both above the target (a single
//!   spike does not split). Split into `N = clamp(ceil(rate / target), 2, factor)` equal ranges,
//!   unless the stream would exceed `max_segments` (then nothing, and the caller records why).
//! - **Cold**: every window's rate is below half the target. Two adjacent cold segments whose
//!   summed longest-window rate stays below the target merge, never below `min_segments`.
//! - **Cooldown**: a segment created less than `cooldown` ago is neither split nor merged.
//! - **Mute**: after a request for a segment, no new request for it for `mute`.

use std::collections::BTreeMap;

use nadi_proto::SegmentId;

/// One active segment as the decision sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct SegmentLoad {
    pub id: SegmentId,
    pub key_low: f64,
    pub key_high: f64,
    pub created_at_ms: u64,
    /// Rate per window, shortest window first, in the policy's unit.
    pub rates: Vec<f64>,
}

/// The policy's numbers.
#[derive(Debug, Clone, PartialEq)]
pub struct Policy {
    pub target: f64,
    pub factor: u32,
    pub min_segments: u32,
}

/// Timing and limits.
#[derive(Debug, Clone, PartialEq)]
pub struct Limits {
    pub cooldown_ms: u64,
    pub mute_ms: u64,
    pub max_segments: u32,
}

/// What to do.
#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    Split {
        segment: SegmentId,
        into: u32,
    },
    Merge {
        segments: [SegmentId; 2],
    },
    /// A hot segment that is not split because the stream has `max_segments` already.
    CappedAt {
        segment: SegmentId,
        max_segments: u32,
    },
}

fn hot(s: &SegmentLoad, target: f64) -> bool {
    s.rates.len() >= 2 && s.rates[0] > target && s.rates[1] > target
}

fn cold(s: &SegmentLoad, target: f64) -> bool {
    !s.rates.is_empty() && s.rates.iter().all(|r| *r < target / 2.0)
}

/// The decisions for one stream. `segments` are the active segments sorted by `key_low`;
/// `last_request_ms` maps segment ids to when a request was last made for them.
pub fn decide(
    segments: &[SegmentLoad],
    policy: &Policy,
    limits: &Limits,
    last_request_ms: &BTreeMap<SegmentId, u64>,
    now_ms: u64,
) -> Vec<Decision> {
    let settled = |s: &SegmentLoad| {
        now_ms.saturating_sub(s.created_at_ms) >= limits.cooldown_ms
            && last_request_ms.get(&s.id).is_none_or(|t| now_ms.saturating_sub(*t) >= limits.mute_ms)
    };
    let mut out = Vec::new();
    let mut count = segments.len() as u32;
    for s in segments.iter().filter(|s| settled(s) && hot(s, policy.target)) {
        let want = (s.rates[0] / policy.target).ceil() as u32;
        let into = want.clamp(2, policy.factor.max(2));
        if count + into - 1 > limits.max_segments {
            out.push(Decision::CappedAt { segment: s.id, max_segments: limits.max_segments });
            continue;
        }
        count += into - 1;
        out.push(Decision::Split { segment: s.id, into });
    }
    let mut i = 0;
    while i + 1 < segments.len() {
        let (a, b) = (&segments[i], &segments[i + 1]);
        let longest = |s: &SegmentLoad| *s.rates.last().unwrap_or(&0.0);
        let mergeable = count > policy.min_segments
            && settled(a)
            && settled(b)
            && cold(a, policy.target)
            && cold(b, policy.target)
            && longest(a) + longest(b) < policy.target
            && !out
                .iter()
                .any(|d| matches!(d, Decision::Split { segment, .. } if *segment == a.id || *segment == b.id));
        if mergeable {
            out.push(Decision::Merge { segments: [a.id, b.id] });
            count -= 1;
            i += 2;
        } else {
            i += 1;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seg(n: u32, low: f64, high: f64, rates: &[f64]) -> SegmentLoad {
        SegmentLoad { id: SegmentId::new(0, n), key_low: low, key_high: high, created_at_ms: 0, rates: rates.to_vec() }
    }

    fn policy() -> Policy {
        Policy { target: 100.0, factor: 4, min_segments: 1 }
    }

    fn limits() -> Limits {
        Limits { cooldown_ms: 10_000, mute_ms: 5_000, max_segments: 16 }
    }

    #[test]
    fn hot_segments_split_by_their_rate_clamped_to_the_factor() {
        let segs = [seg(0, 0.0, 0.5, &[250.0, 220.0, 90.0]), seg(1, 0.5, 1.0, &[1000.0, 900.0, 500.0])];
        let d = decide(&segs, &policy(), &limits(), &BTreeMap::new(), 60_000);
        assert_eq!(
            d,
            vec![
                Decision::Split { segment: SegmentId::new(0, 0), into: 3 },
                Decision::Split { segment: SegmentId::new(0, 1), into: 4 }
            ]
        );
        // A spike in the shortest window alone does not split.
        let spike = [seg(0, 0.0, 1.0, &[500.0, 60.0, 50.0])];
        assert!(decide(&spike, &policy(), &limits(), &BTreeMap::new(), 60_000).is_empty());
    }

    #[test]
    fn cold_neighbours_merge_but_not_below_min() {
        let segs = [seg(0, 0.0, 0.25, &[1.0, 2.0]), seg(1, 0.25, 0.5, &[3.0, 4.0]), seg(2, 0.5, 1.0, &[80.0, 80.0])];
        let d = decide(&segs, &policy(), &limits(), &BTreeMap::new(), 60_000);
        assert_eq!(d, vec![Decision::Merge { segments: [SegmentId::new(0, 0), SegmentId::new(0, 1)] }]);
        let p = Policy { min_segments: 3, ..policy() };
        assert!(decide(&segs, &p, &limits(), &BTreeMap::new(), 60_000).is_empty());
    }

    #[test]
    fn cooldown_mute_and_the_segment_cap_hold_decisions_back() {
        let hot = [seg(0, 0.0, 1.0, &[400.0, 400.0])];
        // Created 5 s ago: cooling down.
        let mut young = hot.clone();
        young[0].created_at_ms = 55_000;
        assert!(decide(&young, &policy(), &limits(), &BTreeMap::new(), 60_000).is_empty());
        // Asked 1 s ago: muted.
        let asked = BTreeMap::from([(SegmentId::new(0, 0), 59_000)]);
        assert!(decide(&hot, &policy(), &limits(), &asked, 60_000).is_empty());
        // The cap.
        let l = Limits { max_segments: 2, ..limits() };
        assert_eq!(
            decide(&hot, &policy(), &l, &BTreeMap::new(), 60_000),
            vec![Decision::CappedAt { segment: SegmentId::new(0, 0), max_segments: 2 }]
        );
    }
}
