//! Per-segment load: event and byte rates as exponentially weighted moving averages over
//! several windows (Pravega uses 2, 5, 10 and 20 minutes with a 5 s tick).
//!
//! Appends add to the current tick's counters; every tick folds the tick's rate into each
//! window's average with weight `1 - exp(-tick / window)`, so a window's average forgets load
//! with time constant `window` whatever the tick. A segment with no appends keeps decaying,
//! which is what lets cold segments be merged.
//!
//! The store reports every open segment it hosts, not only those with appends: after a restart
//! a segment nobody writes to starts at zero and, once its longest window has passed
//! (`measured`), counts as cold, so it still merges. See docs/autoscaling.md.
//!
//! Owns: the rate windows (a leaf). Calls: nothing of this crate. Called by: `crate::store`.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use nadi_proto::raft::v1 as rpb;
use parking_lot::Mutex;

use crate::store::SegmentStore;

/// Windows and tick of the rate averages.
#[derive(Debug, Clone, PartialEq)]
pub struct LoadSettings {
    /// How often the averages are updated.
    pub tick: Duration,
    /// The averaging windows, shortest first.
    pub windows: Vec<Duration>,
}

impl Default for LoadSettings {
    fn default() -> Self {
        LoadSettings {
            tick: Duration::from_secs(5),
            windows: [2, 5, 10, 20].iter().map(|m| Duration::from_secs(m * 60)).collect(),
        }
    }
}

/// One segment's rates, per window (same order as [`LoadSettings::windows`]).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Rates {
    pub events_per_sec: Vec<f64>,
    pub bytes_per_sec: Vec<f64>,
}

#[derive(Debug, Clone, Default)]
struct Meter {
    events: u64,
    bytes: u64,
    rates: Rates,
    /// Time folded into `rates` so far.
    measured: Duration,
}

/// The load of every segment of one store.
#[derive(Debug, Default)]
pub struct LoadTracker {
    settings: LoadSettings,
    meters: HashMap<String, Meter>,
}

impl LoadTracker {
    /// A tracker with `settings`.
    pub fn new(settings: LoadSettings) -> LoadTracker {
        LoadTracker { settings, meters: HashMap::new() }
    }

    /// Counts an append of `events` events and `bytes` bytes to `segment`.
    pub fn record(&mut self, segment: &str, events: u64, bytes: u64) {
        let m = self.meters.entry(segment.to_owned()).or_default();
        m.events += events;
        m.bytes += bytes;
    }

    /// Forgets a deleted segment.
    pub fn remove(&mut self, segment: &str) {
        self.meters.remove(segment);
    }

    /// Makes the tracker measure exactly `open` from now on: segments not measured yet start
    /// (at zero until appends arrive), segments not in `open` (sealed, deleted) are forgotten.
    pub fn track_exactly<'a>(&mut self, open: impl IntoIterator<Item = &'a str>) {
        let open: std::collections::HashSet<&str> = open.into_iter().collect();
        self.meters.retain(|k, _| open.contains(k.as_str()));
        for s in open {
            if !self.meters.contains_key(s) {
                self.meters.insert(s.to_owned(), Meter::default());
            }
        }
    }

    /// The settings.
    pub fn settings(&self) -> &LoadSettings {
        &self.settings
    }

    /// Folds `elapsed` (one tick, or what really passed) of counts into every average.
    pub fn tick(&mut self, elapsed: Duration) {
        let secs = elapsed.as_secs_f64();
        if secs <= 0.0 {
            return;
        }
        let alphas: Vec<f64> =
            self.settings.windows.iter().map(|w| 1.0 - (-secs / w.as_secs_f64().max(1e-9)).exp()).collect();
        for m in self.meters.values_mut() {
            let (ev, by) = (m.events as f64 / secs, m.bytes as f64 / secs);
            m.events = 0;
            m.bytes = 0;
            m.measured += elapsed;
            if m.rates.events_per_sec.len() != alphas.len() {
                // First tick: start every window at the observed rate.
                m.rates = Rates { events_per_sec: vec![ev; alphas.len()], bytes_per_sec: vec![by; alphas.len()] };
                continue;
            }
            for (i, a) in alphas.iter().enumerate() {
                m.rates.events_per_sec[i] += a * (ev - m.rates.events_per_sec[i]);
                m.rates.bytes_per_sec[i] += a * (by - m.rates.bytes_per_sec[i]);
            }
        }
    }

    /// The rates of `segment` (none before its first tick).
    pub fn rates(&self, segment: &str) -> Option<&Rates> {
        self.meters.get(segment).map(|m| &m.rates).filter(|r| !r.events_per_sec.is_empty())
    }

    /// Every measured segment: its name, rates and how long it has been measured.
    pub fn all(&self) -> impl Iterator<Item = (&str, &Rates, Duration)> {
        self.meters
            .iter()
            .filter(|(_, m)| !m.rates.events_per_sec.is_empty())
            .map(|(k, m)| (k.as_str(), &m.rates, m.measured))
    }
}

/// The load meter of one segment store, shared by the segment service (which counts
/// acknowledged appends) and the heartbeat (which reports the rates to the controller).
#[derive(Debug, Clone, Default)]
pub struct StoreLoad {
    tracker: Arc<Mutex<LoadTracker>>,
}

impl StoreLoad {
    /// A meter with `settings`.
    pub fn new(settings: LoadSettings) -> StoreLoad {
        StoreLoad { tracker: Arc::new(Mutex::new(LoadTracker::new(settings))) }
    }

    /// Counts acknowledged appends. (A transaction segment is measured under its own name;
    /// the controller adds its rates to its parent's.)
    pub fn record(&self, segment: &str, events: u64, bytes: u64) {
        self.tracker.lock().record(segment, events, bytes);
    }

    /// Every tick: measure exactly the store's open segments and fold the tick into the
    /// averages. Runs until the runtime stops.
    pub fn spawn_ticker(&self, store: Arc<SegmentStore>) -> tokio::task::JoinHandle<()> {
        let tracker = self.tracker.clone();
        let every = tracker.lock().settings().tick;
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            tick.tick().await;
            let mut last = tokio::time::Instant::now();
            loop {
                tick.tick().await;
                let open: Vec<String> = store.containers().iter().flat_map(|c| c.open_segments()).collect();
                let now = tokio::time::Instant::now();
                let mut t = tracker.lock();
                t.track_exactly(open.iter().map(String::as_str));
                t.tick(now - last);
                last = now;
            }
        })
    }

    /// The rates to send with a heartbeat, and the windows they are averaged over (ms).
    pub fn report(&self) -> (Vec<rpb::SegmentLoad>, Vec<u64>) {
        let t = self.tracker.lock();
        let loads = t
            .all()
            .map(|(segment, r, measured)| rpb::SegmentLoad {
                segment: segment.to_owned(),
                events_per_sec: r.events_per_sec.clone(),
                bytes_per_sec: r.bytes_per_sec.clone(),
                measured_ms: measured.as_millis() as u64,
            })
            .collect();
        (loads, t.settings().windows.iter().map(|w| w.as_millis() as u64).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> LoadSettings {
        LoadSettings { tick: Duration::from_secs(1), windows: vec![Duration::from_secs(2), Duration::from_secs(10)] }
    }

    #[test]
    fn steady_load_converges_and_silence_decays() {
        let mut t = LoadTracker::new(settings());
        for _ in 0..60 {
            t.record("s", 100, 10_000);
            t.tick(Duration::from_secs(1));
        }
        let r = t.rates("s").unwrap().clone();
        assert!((r.events_per_sec[0] - 100.0).abs() < 1.0, "{r:?}");
        assert!((r.events_per_sec[1] - 100.0).abs() < 1.0, "{r:?}");
        assert!((r.bytes_per_sec[0] - 10_000.0).abs() < 100.0, "{r:?}");
        // Silence: the short window forgets faster than the long one.
        for _ in 0..5 {
            t.tick(Duration::from_secs(1));
        }
        let r = t.rates("s").unwrap();
        assert!(r.events_per_sec[0] < 10.0, "{r:?}");
        assert!(r.events_per_sec[1] > 50.0, "{r:?}");
    }

    #[test]
    fn a_spike_moves_the_short_window_more_than_the_long_one() {
        let mut t = LoadTracker::new(settings());
        for _ in 0..30 {
            t.record("s", 10, 0);
            t.tick(Duration::from_secs(1));
        }
        t.record("s", 1000, 0);
        t.tick(Duration::from_secs(1));
        let r = t.rates("s").unwrap();
        assert!(r.events_per_sec[0] > 300.0 && r.events_per_sec[1] < 150.0, "{r:?}");
        assert!(t.rates("other").is_none());
        t.remove("s");
        assert!(t.rates("s").is_none());
    }

    #[test]
    fn tracked_segments_without_appends_are_measured_at_zero() {
        let mut t = LoadTracker::new(settings());
        t.record("gone", 5, 5);
        t.track_exactly(["idle", "busy"]);
        t.record("busy", 50, 500);
        t.tick(Duration::from_secs(1));
        t.tick(Duration::from_secs(1));
        let all: std::collections::BTreeMap<_, _> = t.all().map(|(k, r, m)| (k.to_owned(), (r.clone(), m))).collect();
        assert_eq!(all.keys().collect::<Vec<_>>(), ["busy", "idle"], "the sealed segment is forgotten");
        assert_eq!(all["idle"].0.events_per_sec, vec![0.0, 0.0]);
        assert_eq!(all["idle"].1, Duration::from_secs(2));
        assert!(all["busy"].0.events_per_sec[0] > 10.0);
    }
}
