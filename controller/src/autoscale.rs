//! Auto-scaling: segments split and merge by measured load (see docs/autoscaling.md).
//!
//! Segment stores measure every open segment's event and byte rates ([`LoadBoard`] keeps their
//! latest reports, in memory, on the leader that receives the heartbeats). Every tick the
//! leader runs [`decide`] for each stream with a load policy and carries the result out through
//! the ordinary scale workflow, one epoch change per decision round.
//!
//! [`decide`] is pure and deterministic: given a stream's active segments with their rates (in
//! the policy's unit: events/s, or KiB/s), the policy and what was requested recently, it says
//! which segments to split and which neighbours to merge.
//!
//! - **Hot**: the shortest window's rate and the next one's are both above the target (a single
//!   spike does not split). Split into `N = clamp(ceil(rate / target), 2, factor)` equal ranges,
//!   unless the stream would exceed `max_segments`, or the segment's key range is already at
//!   the narrowest ([`MIN_SPLIT_WIDTH`]: one hot key cannot be split further); then nothing is
//!   split and the caller records why in the stream's history.
//! - **Cold**: every window's rate is below half the target, and the store has measured the
//!   segment for at least the longest window (after a store restart a segment must first show
//!   it is cold). Two adjacent cold segments whose summed longest-window rate stays below 3/4
//!   of the target merge, never below `min_segments`. The margin keeps a merged segment clearly
//!   below the split threshold, so load near the threshold does not split and merge in turn.
//! - **Cooldown**: a segment created less than `cooldown` ago is neither split nor merged.
//! - **Mute**: after a request for a segment, no new request for it for `mute`.
//!
//! **By readers** (`readers:MIN`, [`decide_readers`]): the stream should have at least as many
//! active segments as its largest *subscriber* reader group has readers (so none of them
//! starves), and at least MIN. Below that, the widest settled segments split in two; above it
//! (readers left), settled neighbours merge back, narrowest pair first. The target follows the
//! readers only, never the segments' count, so a steady group gives a steady stream; cooldown
//! and mute damp changes of the group.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use nadi_proto::SegmentId;
use nadi_proto::raft::v1 as rpb;
use parking_lot::Mutex;

use crate::MetaError;
use crate::service::{Controller, now_ms};
use crate::state::{Command, EpochReason, Scaling, StreamState};

/// The narrowest key range the auto-scaler still splits (2^-20 of the key space). A segment
/// this narrow that is still hot carries one or a few hot keys; splitting cannot spread them.
pub const MIN_SPLIT_WIDTH: f64 = 1.0 / (1u64 << 20) as f64;

/// Two cold neighbours merge only if their summed rate is below this fraction of the target.
pub const MERGE_HEADROOM: f64 = 0.75;

/// Settings of the auto-scaler (the leader's side; the windows are the stores').
#[derive(Debug, Clone, PartialEq)]
pub struct ScalerSettings {
    /// How often the leader decides.
    pub tick: Duration,
    /// A segment younger than this is neither split nor merged.
    pub cooldown: Duration,
    /// After a request for a segment, no new one for it for this long.
    pub mute: Duration,
    /// The most active segments the auto-scaler lets a stream have.
    pub max_segments: u32,
}

impl Default for ScalerSettings {
    fn default() -> Self {
        ScalerSettings {
            tick: Duration::from_secs(5),
            cooldown: Duration::from_secs(600),
            mute: Duration::from_secs(600),
            max_segments: 1024,
        }
    }
}

/// A report older than this many ticks (of the store's heartbeat) is not used: its store is
/// not heard from, and nothing is decided for its segments.
const STALE_AFTER: Duration = Duration::from_secs(10);

/// One active segment as the decision sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct SegmentLoad {
    pub id: SegmentId,
    pub key_low: f64,
    pub key_high: f64,
    pub created_at_ms: u64,
    /// Rate per window, shortest window first, in the policy's unit.
    pub rates: Vec<f64>,
    /// The store has measured the segment for at least the longest window.
    pub warm: bool,
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
    /// A hot segment that is not split because its key range is already the narrowest.
    TooNarrow {
        segment: SegmentId,
    },
}

/// Past its cooldown and its mute: a segment the scaler may ask for.
fn settled(s: &SegmentLoad, limits: &Limits, last_request_ms: &BTreeMap<SegmentId, u64>, now_ms: u64) -> bool {
    now_ms.saturating_sub(s.created_at_ms) >= limits.cooldown_ms
        && last_request_ms.get(&s.id).is_none_or(|t| now_ms.saturating_sub(*t) >= limits.mute_ms)
}

fn hot(s: &SegmentLoad, target: f64) -> bool {
    s.rates.len() >= 2 && s.rates[0] > target && s.rates[1] > target
}

fn cold(s: &SegmentLoad, target: f64) -> bool {
    s.warm && !s.rates.is_empty() && s.rates.iter().all(|r| *r < target / 2.0)
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
    let settled = |s: &SegmentLoad| settled(s, limits, last_request_ms, now_ms);
    let mut out = Vec::new();
    let mut count = segments.len() as u32;
    for s in segments.iter().filter(|s| settled(s) && hot(s, policy.target)) {
        let want = (s.rates[0] / policy.target).ceil() as u32;
        let into = want.clamp(2, policy.factor.max(2));
        if (s.key_high - s.key_low) / (into as f64) < MIN_SPLIT_WIDTH {
            out.push(Decision::TooNarrow { segment: s.id });
            continue;
        }
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
            && longest(a) + longest(b) < policy.target * MERGE_HEADROOM
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

/// The decisions for a `readers:MIN` stream whose largest subscriber group has `readers`
/// readers. `segments` are sorted by `key_low`.
pub fn decide_readers(
    segments: &[SegmentLoad],
    readers: u32,
    min_segments: u32,
    limits: &Limits,
    last_request_ms: &BTreeMap<SegmentId, u64>,
    now_ms: u64,
) -> Vec<Decision> {
    let settled = |s: &SegmentLoad| settled(s, limits, last_request_ms, now_ms);
    let want = readers.max(min_segments).min(limits.max_segments);
    let mut count = segments.len() as u32;
    let mut out = Vec::new();
    if count < want {
        let mut widest: Vec<&SegmentLoad> = segments.iter().filter(|s| settled(s)).collect();
        widest.sort_by(|a, b| (b.key_high - b.key_low).total_cmp(&(a.key_high - a.key_low)));
        for s in widest {
            if count >= want {
                break;
            }
            if (s.key_high - s.key_low) / 2.0 < MIN_SPLIT_WIDTH {
                continue;
            }
            out.push(Decision::Split { segment: s.id, into: 2 });
            count += 1;
        }
    } else if count > want {
        let mut pairs: Vec<usize> = (0..segments.len().saturating_sub(1))
            .filter(|&i| settled(&segments[i]) && settled(&segments[i + 1]))
            .collect();
        let width = |i: usize| segments[i + 1].key_high - segments[i].key_low;
        pairs.sort_by(|&a, &b| width(a).total_cmp(&width(b)));
        let mut used = std::collections::BTreeSet::new();
        for i in pairs {
            if count <= want {
                break;
            }
            if used.contains(&i) || used.contains(&(i + 1)) {
                continue;
            }
            used.extend([i, i + 1]);
            out.push(Decision::Merge { segments: [segments[i].id, segments[i + 1].id] });
            count -= 1;
        }
    }
    out
}

#[derive(Debug, Clone)]
struct Reported {
    events: Vec<f64>,
    bytes: Vec<f64>,
    warm: bool,
    at: Instant,
}

/// The latest load report of every segment, as sent with the segment stores' heartbeats. Held
/// in memory by the node that receives them (the leader, since heartbeats are forwarded there);
/// a new leader rebuilds it from the next heartbeats.
#[derive(Debug, Clone, Default)]
pub struct LoadBoard {
    reports: Arc<Mutex<BTreeMap<String, Reported>>>,
}

impl LoadBoard {
    /// Takes one store's report: `loads` averaged over windows `windows_ms`.
    pub fn update(&self, loads: &[rpb::SegmentLoad], windows_ms: &[u64]) {
        let longest = windows_ms.iter().copied().max().unwrap_or(0);
        let now = Instant::now();
        let mut reports = self.reports.lock();
        for l in loads {
            let r = Reported {
                events: l.events_per_sec.clone(),
                bytes: l.bytes_per_sec.clone(),
                warm: l.measured_ms >= longest,
                at: now,
            };
            reports.insert(l.segment.clone(), r);
        }
        // Sealed and deleted segments stop being reported: forget them.
        reports.retain(|_, r| now.duration_since(r.at) < 3 * STALE_AFTER);
    }

    /// The fresh rates of the segment named `name` plus those of its open transactions (in
    /// events/s, or KiB/s if `bytes`), and whether it has been measured long enough; `None` if
    /// its store has not reported it recently.
    fn rates(&self, name: &str, bytes: bool) -> Option<(Vec<f64>, bool)> {
        let reports = self.reports.lock();
        let fresh = |r: &&Reported| r.at.elapsed() < STALE_AFTER;
        let unit = |r: &Reported| -> Vec<f64> {
            if bytes { r.bytes.iter().map(|b| b / 1024.0).collect() } else { r.events.clone() }
        };
        let own = reports.get(name).filter(fresh)?;
        let mut rates = unit(own);
        let prefix = format!("{name}{}", nadi_proto::names::TXN_MARKER);
        for (_, txn) in reports.range(prefix.clone()..).take_while(|(k, _)| k.starts_with(&prefix)) {
            if fresh(&txn) {
                for (r, t) in rates.iter_mut().zip(unit(txn)) {
                    *r += t;
                }
            }
        }
        Some((rates, own.warm))
    }
}

/// When the leader last asked for each segment of each stream (`scope/stream` → id → ms).
pub type Requests = BTreeMap<String, BTreeMap<SegmentId, u64>>;

/// One stream as a decision round sees it.
struct Candidate {
    scope: String,
    stream: String,
    policy: Policy,
    bytes: bool,
    /// Active segments sorted by key: id, name, key range, creation time.
    segments: Vec<(SegmentId, String, f64, f64, u64)>,
    /// A `readers:MIN` stream (`policy.min_segments` is MIN).
    by_readers: bool,
}

impl Controller {
    /// One decision round over every active stream with a load policy: decide from the latest
    /// reports and carry the decisions out (splits first, as one epoch change; merges in a
    /// round without splits). Streams with a scale or truncation in progress, or whose
    /// segments are not all freshly reported, are left for a later round.
    pub async fn autoscale_round(
        &self,
        board: &LoadBoard,
        settings: &ScalerSettings,
        requests: &mut Requests,
    ) -> Result<(), MetaError> {
        let candidates: Vec<Candidate> = self
            .meta
            .read(|st| {
                let mut out = Vec::new();
                for (scope, sc) in &st.scopes {
                    for (stream, m) in &sc.streams {
                        let mut by_readers = false;
                        let (policy, bytes) = match m.config.scaling {
                            Scaling::Fixed { .. } => continue,
                            Scaling::Readers { min_segments } => {
                                by_readers = true;
                                (Policy { target: 0.0, factor: 2, min_segments }, false)
                            }
                            Scaling::EventsPerSec { rate, factor, min_segments } => {
                                (Policy { target: rate as f64, factor, min_segments }, false)
                            }
                            Scaling::KbytesPerSec { rate, factor, min_segments } => {
                                (Policy { target: rate as f64, factor, min_segments }, true)
                            }
                        };
                        if m.state != StreamState::Active || m.pending_scale.is_some() || m.pending_truncation.is_some()
                        {
                            continue;
                        }
                        let segments = m
                            .active_segments()
                            .into_iter()
                            .map(|s| {
                                (s.id, m.segment_name(scope, stream, s.id), s.key_low, s.key_high, s.created_at_ms)
                            })
                            .collect();
                        out.push(Candidate {
                            scope: scope.clone(),
                            stream: stream.clone(),
                            policy,
                            bytes,
                            segments,
                            by_readers,
                        });
                    }
                }
                out
            })
            .await;
        let limits = Limits {
            cooldown_ms: settings.cooldown.as_millis() as u64,
            mute_ms: settings.mute.as_millis() as u64,
            max_segments: settings.max_segments,
        };
        let live: std::collections::HashSet<String> =
            candidates.iter().map(|c| format!("{}/{}", c.scope, c.stream)).collect();
        requests.retain(|k, _| live.contains(k));
        for c in candidates {
            if c.by_readers {
                let loads: Vec<SegmentLoad> = c
                    .segments
                    .iter()
                    .map(|(id, _, low, high, created)| SegmentLoad {
                        id: *id,
                        key_low: *low,
                        key_high: *high,
                        created_at_ms: *created,
                        rates: vec![0.0],
                        warm: true,
                    })
                    .collect();
                let readers = self.meta.read_groups(|_, rg| {
                    rg.subscribers(&c.scope, &c.stream).map(|g| g.readers.len() as u32).max().unwrap_or(0)
                });
                let key = format!("{}/{}", c.scope, c.stream);
                let asked = requests.entry(key).or_default();
                let now = now_ms();
                let decisions = decide_readers(&loads, readers, c.policy.min_segments, &limits, asked, now);
                if !decisions.is_empty()
                    && let Err(e) = self.carry_out(&c, &loads, &decisions, asked, now).await
                {
                    tracing::warn!(scope = %c.scope, stream = %c.stream, error = %e, "scaling by readers failed; a later round retries");
                }
                continue;
            }
            let loads: Option<Vec<SegmentLoad>> = c
                .segments
                .iter()
                .map(|(id, name, low, high, created)| {
                    board.rates(name, c.bytes).map(|(rates, warm)| SegmentLoad {
                        id: *id,
                        key_low: *low,
                        key_high: *high,
                        created_at_ms: *created,
                        rates,
                        warm,
                    })
                })
                .collect();
            let Some(loads) = loads else { continue };
            let key = format!("{}/{}", c.scope, c.stream);
            let asked = requests.entry(key).or_default();
            let now = now_ms();
            let decisions = decide(&loads, &c.policy, &limits, asked, now);
            if decisions.is_empty() {
                continue;
            }
            if let Err(e) = self.carry_out(&c, &loads, &decisions, asked, now).await {
                tracing::warn!(scope = %c.scope, stream = %c.stream, error = %e, "auto-scaling step failed; a later round retries");
            }
        }
        Ok(())
    }

    async fn carry_out(
        &self,
        c: &Candidate,
        loads: &[SegmentLoad],
        decisions: &[Decision],
        asked: &mut BTreeMap<SegmentId, u64>,
        now: u64,
    ) -> Result<(), MetaError> {
        let unit = if c.bytes { "KiB/s" } else { "events/s" };
        let rate_of = |id: SegmentId| loads.iter().find(|l| l.id == id).map_or(0.0, |l| l.rates[0]);
        for d in decisions {
            let (segment, text) = match d {
                Decision::CappedAt { segment, max_segments } => (
                    *segment,
                    format!(
                        "segment {} is hot ({:.0} {unit}, target {}) but not split: the stream has the most segments \
                         allowed ({max_segments})",
                        segment.number(),
                        rate_of(*segment),
                        c.policy.target
                    ),
                ),
                Decision::TooNarrow { segment } => (
                    *segment,
                    format!(
                        "segment {} is hot ({:.0} {unit}, target {}) but not split: its key range is the narrowest \
                         allowed (one hot key cannot be spread)",
                        segment.number(),
                        rate_of(*segment),
                        c.policy.target
                    ),
                ),
                _ => continue,
            };
            asked.insert(segment, now);
            tracing::info!(scope = %c.scope, stream = %c.stream, "{text}");
            let note =
                Command::NoteScaling { scope: c.scope.clone(), stream: c.stream.clone(), segment, text, now_ms: now };
            self.meta.propose(note).await?;
        }
        let range = |id: SegmentId| loads.iter().find(|l| l.id == id).map(|l| (l.key_low, l.key_high));
        let mut sealed = Vec::new();
        let mut new_ranges = Vec::new();
        let mut reason = if c.by_readers { EpochReason::SplitByReaders } else { EpochReason::SplitByLoad };
        for d in decisions {
            if let Decision::Split { segment, into } = d {
                let Some((low, high)) = range(*segment) else { continue };
                sealed.push(*segment);
                new_ranges.extend(nadi_proto::routing::split_range(low, high, *into));
            }
        }
        if sealed.is_empty() {
            reason = if c.by_readers { EpochReason::MergeByReaders } else { EpochReason::MergeByLoad };
            for d in decisions {
                if let Decision::Merge { segments: [a, b] } = d {
                    let (Some((low, _)), Some((_, high))) = (range(*a), range(*b)) else { continue };
                    sealed.extend([*a, *b]);
                    new_ranges.push((low, high));
                }
            }
        }
        if sealed.is_empty() {
            return Ok(());
        }
        // One scale per stream at a time: if a manual scale or a commit holds the stream, the
        // next round decides again on what it left (nothing is muted for an attempt not made).
        let Some(_lock) = self.locks.try_lock(&c.scope, &c.stream) else { return Ok(()) };
        for id in &sealed {
            asked.insert(*id, now);
        }
        tracing::info!(scope = %c.scope, stream = %c.stream, ?reason, ?sealed, successors = new_ranges.len(), "auto-scaling");
        let cmd = Command::StartScale {
            scope: c.scope.clone(),
            stream: c.stream.clone(),
            sealed,
            new_ranges,
            reason,
            now_ms: now,
            promoted: vec![],
        };
        self.meta.propose(cmd).await?;
        self.finish_scale(&c.scope, &c.stream).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seg(n: u32, low: f64, high: f64, rates: &[f64]) -> SegmentLoad {
        SegmentLoad {
            id: SegmentId::new(0, n),
            key_low: low,
            key_high: high,
            created_at_ms: 0,
            rates: rates.to_vec(),
            warm: true,
        }
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
    fn readers_split_the_widest_segments_and_merge_back_without_oscillating() {
        let two = [seg(0, 0.0, 0.5, &[]), seg(1, 0.5, 1.0, &[])];
        let none = BTreeMap::new();
        // 6 readers on 2 segments: both split (4), then the two widest of the halves (6).
        let d = decide_readers(&two, 6, 1, &limits(), &none, 60_000);
        let split = |n| Decision::Split { segment: SegmentId::new(0, n), into: 2 };
        assert_eq!(d, vec![split(0), split(1)]);
        let four = [seg(0, 0.0, 0.25, &[]), seg(1, 0.25, 0.5, &[]), seg(2, 0.5, 0.75, &[]), seg(3, 0.75, 0.875, &[])];
        assert_eq!(decide_readers(&four[..3], 6, 1, &limits(), &none, 60_000).len(), 3);
        // As many segments as readers: nothing, whatever the time (no oscillation).
        let six: Vec<SegmentLoad> = (0..6).map(|i| seg(i, i as f64 / 6.0, (i + 1) as f64 / 6.0, &[])).collect();
        for now in [60_000, 600_000, 6_000_000] {
            assert!(decide_readers(&six, 6, 1, &limits(), &none, now).is_empty());
        }
        // Readers left: neighbours merge back down to the readers (never below MIN).
        let d = decide_readers(&six, 3, 1, &limits(), &none, 60_000);
        assert_eq!(d.len(), 3, "{d:?}");
        assert!(d.iter().all(|d| matches!(d, Decision::Merge { .. })));
        assert_eq!(decide_readers(&six, 0, 5, &limits(), &none, 60_000).len(), 1);
        // Cooldown: young segments wait; mute: a segment just asked for waits.
        assert!(decide_readers(&two, 6, 1, &limits(), &none, 5_000).is_empty());
        let asked = BTreeMap::from([(SegmentId::new(0, 0), 58_000)]);
        assert_eq!(decide_readers(&two, 3, 1, &limits(), &asked, 60_000), vec![split(1)]);
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

    #[test]
    fn cold_needs_a_full_longest_window_and_one_hot_key_is_not_split_forever() {
        let mut segs = [seg(0, 0.0, 0.5, &[0.0, 0.0]), seg(1, 0.5, 1.0, &[0.0, 0.0])];
        segs[1].warm = false; // just restarted store: not proven cold yet
        assert!(decide(&segs, &policy(), &limits(), &BTreeMap::new(), 60_000).is_empty());
        segs[1].warm = true;
        assert_eq!(decide(&segs, &policy(), &limits(), &BTreeMap::new(), 60_000).len(), 1);
        let w = MIN_SPLIT_WIDTH * 1.5;
        let narrow = [seg(0, 0.0, w, &[900.0, 900.0])];
        assert_eq!(
            decide(&narrow, &policy(), &limits(), &BTreeMap::new(), 60_000),
            vec![Decision::TooNarrow { segment: SegmentId::new(0, 0) }]
        );
    }

    #[test]
    fn the_board_adds_open_transactions_and_converts_bytes() {
        let board = LoadBoard::default();
        let load = |name: &str, ev: f64, measured_ms: u64| rpb::SegmentLoad {
            segment: name.into(),
            events_per_sec: vec![ev, ev],
            bytes_per_sec: vec![ev * 1024.0, ev * 1024.0],
            measured_ms,
        };
        board.update(
            &[
                load("s/t/0.#epoch.0", 10.0, 5_000),
                load("s/t/0.#epoch.0#txn.ab", 5.0, 1_000),
                load("s/t/1.#epoch.0", 1.0, 100),
            ],
            &[1_000, 4_000],
        );
        assert_eq!(board.rates("s/t/0.#epoch.0", false), Some((vec![15.0, 15.0], true)));
        assert_eq!(board.rates("s/t/0.#epoch.0", true), Some((vec![15.0, 15.0], true)));
        assert_eq!(board.rates("s/t/1.#epoch.0", false), Some((vec![1.0, 1.0], false)), "measured 100 ms < 4 s");
        assert_eq!(board.rates("s/t/2.#epoch.0", false), None);
    }
}
