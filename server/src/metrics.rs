//! The segment store's Prometheus metrics (OpenMetrics text through `prometheus-client`).
//!
//! One [`StoreMetrics`] per store, shared by its containers (cheap handles: every family is an
//! `Arc` inside). Names, all prefixed `nadi_` where registered:
//!
//! | metric | type | labels | what |
//! | --- | --- | --- | --- |
//! | `nadi_stream_appended_events_total` | counter | `stream` | events stored (retried duplicates not counted) |
//! | `nadi_stream_appended_bytes_total` | counter | `stream` | payload bytes of those events |
//! | `nadi_container_commits_total` | counter | `container` | group commits (one log record + fsync each) |
//! | `nadi_container_commit_seconds` | histogram | `container` | time of one commit (append + fsync) |
//! | `nadi_container_group_requests` | histogram | `container` | requests in one group commit |
//! | `nadi_container_queued_bytes` | gauge | `container` | bytes of requests accepted and not yet answered |
//! | `nadi_open_streams` | gauge | `kind` (`append`, `read`) | append (writer) and read streams open now |
//! | `nadi_log_fsync_seconds` | histogram | — | one fsync of a Tier-1 log (every container's) |
//! | `nadi_read_bytes` | counter | `tier` (`1`, `2`) | bytes served to readers, by where they were read from |
//! | `nadi_tier2_moved_bytes` | counter | `container` | segment bytes moved to Tier-2 |
//! | `nadi_tier2_move_seconds` | histogram | `container` | time to move one chunk (read, upload, record) |
//! | `nadi_tier2_yielded_seconds` | counter | — | time background Tier-2 moves paused to leave the disk to appends (process-wide) |
//! | `nadi_tier2_cache_requests` | counter | `result` (`hit`, `miss`) | chunk reads served from the Tier-2 cache, or fetched |
//! | `nadi_container_tier1_bytes` | gauge | `container` | segment bytes in the Tier-1 log (not yet in Tier-2: the Tier-2 backlog when a Tier-2 is set) |
//! | `nadi_container_tier2_bytes` | gauge | `container` | segment bytes in Tier-2 |
//! | `nadi_store_tier1_capacity_bytes` | gauge | — | `--tier1-capacity` (0: none) |
//! | `nadi_container_leader` | gauge | `container` | 1 where this replica leads its group, else 0 (replicated containers) |
//! | `nadi_container_term` | gauge | `container` | the group's term, where this replica leads |
//! | `nadi_container_follower_lag_entries` | gauge | `container`, `follower` | entries a follower lacks, where this replica leads |
//! | `nadi_container_follower_lag_bytes` | gauge | `container`, `follower` | body bytes of those entries |
//!
//! Counting happens once per request or group on the writer thread, never per event. Built
//! without the `metrics` feature (on by default), the recording calls do nothing. Per
//! segment labels are left out on purpose (cardinality); per stream is what operators ask for.
//!
//! Owns: the metric families. Calls: nothing of this crate (a leaf). Called by: `container`
//! (the writer thread records), `node` (serves `/metrics`).

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StreamLabel {
    stream: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ContainerLabel {
    container: u32,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TierLabel {
    tier: u8,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabel {
    kind: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabel {
    result: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct FollowerLabel {
    container: u32,
    follower: String,
}

/// Fsyncs of Tier-1 logs, process-wide (the log layer has no handle on a store's metrics).
fn fsync_seconds() -> &'static Histogram {
    static FSYNC: std::sync::OnceLock<Histogram> = std::sync::OnceLock::new();
    FSYNC.get_or_init(|| Histogram::new(exponential_buckets(0.000_05, 2.0, 16)))
}

/// Records one fsync of a Tier-1 log that took `seconds`.
pub fn fsync_observed(seconds: f64) {
    if cfg!(feature = "metrics") {
        fsync_seconds().observe(seconds);
    }
}

/// Seconds background Tier-2 I/O paused for appends, process-wide (the storage writer's pacing).
fn yielded_seconds() -> &'static Counter<f64, std::sync::atomic::AtomicU64> {
    static YIELDED: std::sync::OnceLock<Counter<f64, std::sync::atomic::AtomicU64>> = std::sync::OnceLock::new();
    YIELDED.get_or_init(Counter::default)
}

/// Records that background Tier-2 I/O paused `seconds` to leave the disk to appends.
pub fn tier2_yielded(seconds: f64) {
    if cfg!(feature = "metrics") {
        yielded_seconds().inc_by(seconds);
    }
}

type HistogramFamily = Family<ContainerLabel, Histogram, fn() -> Histogram>;

/// The metrics of one segment store.
#[derive(Debug, Clone)]
pub struct StoreMetrics {
    appended_events: Family<StreamLabel, Counter>,
    appended_bytes: Family<StreamLabel, Counter>,
    commits: Family<ContainerLabel, Counter>,
    commit_seconds: HistogramFamily,
    group_requests: HistogramFamily,
    queued_bytes: Family<ContainerLabel, Gauge>,
    read_bytes: Family<TierLabel, Counter>,
    open_streams: Family<KindLabel, Gauge>,
    moved_bytes: Family<ContainerLabel, Counter>,
    move_seconds: HistogramFamily,
    cache_requests: Family<ResultLabel, Counter>,
    tier1_bytes: Family<ContainerLabel, Gauge>,
    tier2_bytes: Family<ContainerLabel, Gauge>,
    tier1_capacity: Gauge,
    leader: Family<ContainerLabel, Gauge>,
    term: Family<ContainerLabel, Gauge>,
    lag_entries: Family<FollowerLabel, Gauge>,
    lag_bytes: Family<FollowerLabel, Gauge>,
    /// The follower series set last, to drop those of followers gone (or of a replica that
    /// stopped leading).
    followers: std::sync::Arc<parking_lot::Mutex<std::collections::HashSet<FollowerLabel>>>,
}

impl Default for StoreMetrics {
    fn default() -> Self {
        fn latency() -> Histogram {
            // 50 µs .. ~1.6 s
            Histogram::new(exponential_buckets(0.000_05, 2.0, 16))
        }
        fn requests() -> Histogram {
            // 1 .. 2048 requests
            Histogram::new(exponential_buckets(1.0, 2.0, 12))
        }
        fn moves() -> Histogram {
            // 1 ms .. ~65 s
            Histogram::new(exponential_buckets(0.001, 2.0, 17))
        }
        Self {
            appended_events: Family::default(),
            appended_bytes: Family::default(),
            commits: Family::default(),
            commit_seconds: Family::new_with_constructor(latency),
            group_requests: Family::new_with_constructor(requests),
            queued_bytes: Family::default(),
            read_bytes: Family::default(),
            open_streams: Family::default(),
            moved_bytes: Family::default(),
            move_seconds: Family::new_with_constructor(moves),
            cache_requests: Family::default(),
            tier1_bytes: Family::default(),
            tier2_bytes: Family::default(),
            tier1_capacity: Gauge::default(),
            leader: Family::default(),
            term: Family::default(),
            lag_entries: Family::default(),
            lag_bytes: Family::default(),
            followers: Default::default(),
        }
    }
}

impl StoreMetrics {
    /// Registers every family under `registry` (with the `nadi` prefix added here), so that
    /// the segment store's `/metrics` and standalone's admin `/metrics` show the same names.
    pub fn register(&self, registry: &mut Registry) {
        let r = registry.sub_registry_with_prefix("nadi");
        r.register("stream_appended_events", "Events stored, by stream", self.appended_events.clone());
        r.register(
            "stream_appended_bytes",
            "Payload bytes of the events stored, by stream",
            self.appended_bytes.clone(),
        );
        r.register("container_commits", "Group commits (one log record and one fsync each)", self.commits.clone());
        r.register(
            "container_commit_seconds",
            "Time of one group commit (append and fsync)",
            self.commit_seconds.clone(),
        );
        r.register("container_group_requests", "Requests in one group commit", self.group_requests.clone());
        r.register(
            "container_queued_bytes",
            "Bytes of requests accepted and not yet answered",
            self.queued_bytes.clone(),
        );
        r.register("log_fsync_seconds", "Time of one fsync of a Tier-1 log", fsync_seconds().clone());
        r.register(
            "tier2_yielded_seconds",
            "Time background Tier-2 moves paused to leave the disk to appends",
            yielded_seconds().clone(),
        );
        r.register("read_bytes", "Bytes served to readers, by the tier read from", self.read_bytes.clone());
        r.register("open_streams", "Append (writer) and read streams open now", self.open_streams.clone());
        r.register("tier2_moved_bytes", "Segment bytes moved to Tier-2", self.moved_bytes.clone());
        r.register(
            "tier2_move_seconds",
            "Time to move one chunk to Tier-2 (read, upload, record)",
            self.move_seconds.clone(),
        );
        r.register(
            "tier2_cache_requests",
            "Chunk reads served from the Tier-2 cache (hit) or fetched (miss)",
            self.cache_requests.clone(),
        );
        r.register(
            "container_tier1_bytes",
            "Segment bytes in the Tier-1 log (the Tier-2 backlog when a Tier-2 is set)",
            self.tier1_bytes.clone(),
        );
        r.register("container_tier2_bytes", "Segment bytes in Tier-2", self.tier2_bytes.clone());
        r.register("store_tier1_capacity_bytes", "The Tier-1 capacity (0: none)", self.tier1_capacity.clone());
        r.register("container_leader", "1 where this replica leads its container's group", self.leader.clone());
        r.register("container_term", "The group's term, where this replica leads", self.term.clone());
        r.register(
            "container_follower_lag_entries",
            "Entries a follower lacks, where this replica leads",
            self.lag_entries.clone(),
        );
        r.register(
            "container_follower_lag_bytes",
            "Body bytes of the entries a follower lacks, where this replica leads",
            self.lag_bytes.clone(),
        );
    }

    /// Counts one open stream of `kind` (`append`, `read`) until the guard is dropped.
    pub fn stream_opened(&self, kind: &'static str) -> OpenStream {
        let gauge = self.open_streams.get_or_create_owned(&KindLabel { kind });
        if cfg!(feature = "metrics") {
            gauge.inc();
        }
        OpenStream(gauge)
    }

    /// `bytes` were served to a reader from Tier-`tier` (1 or 2).
    pub fn read(&self, tier: u8, bytes: usize) {
        if cfg!(feature = "metrics") {
            self.read_bytes.get_or_create(&TierLabel { tier }).inc_by(bytes as u64);
        }
    }

    /// A chunk of `bytes` moved to Tier-2 in `seconds`.
    pub fn moved(&self, container: u32, bytes: u64, seconds: f64) {
        if cfg!(feature = "metrics") {
            let label = ContainerLabel { container };
            self.moved_bytes.get_or_create(&label).inc_by(bytes);
            self.move_seconds.get_or_create(&label).observe(seconds);
        }
    }

    /// Sets what [`crate::store::SegmentStore::start_metrics`] samples: a container's bytes in
    /// each tier and its role.
    pub fn sample(&self, container: u32, tiers: (u64, u64), group: Option<ContainerRole>) {
        if !cfg!(feature = "metrics") {
            return;
        }
        let label = ContainerLabel { container };
        let gauge = |v: u64| v.min(i64::MAX as u64) as i64;
        self.tier1_bytes.get_or_create(&label).set(gauge(tiers.0));
        self.tier2_bytes.get_or_create(&label).set(gauge(tiers.1));
        let Some(role) = group else { return };
        self.leader.get_or_create(&label).set(role.term.is_some() as i64);
        self.term.get_or_create(&label).set(gauge(role.term.unwrap_or(0)));
        let mut now = std::collections::HashSet::new();
        for (follower, entries, bytes) in role.followers {
            let l = FollowerLabel { container, follower: format!("{follower:016x}") };
            self.lag_entries.get_or_create(&l).set(gauge(entries));
            self.lag_bytes.get_or_create(&l).set(gauge(bytes));
            now.insert(l);
        }
        // Followers that left, or all of them once this replica no longer leads, drop out.
        let mut seen = self.followers.lock();
        seen.retain(|l| {
            let keep = l.container != container || now.contains(l);
            if !keep {
                self.lag_entries.remove(l);
                self.lag_bytes.remove(l);
            }
            keep
        });
        seen.extend(now);
    }

    /// The store's Tier-1 capacity (0: none) and its Tier-2 cache's counts so far (chunk reads,
    /// fetches).
    pub fn sample_store(&self, tier1_capacity: u64, cache: Option<(u64, u64)>, seen: &mut (u64, u64)) {
        if !cfg!(feature = "metrics") {
            return;
        }
        self.tier1_capacity.set(tier1_capacity.min(i64::MAX as u64) as i64);
        if let Some((gets, fetches)) = cache {
            let hits = gets.saturating_sub(fetches);
            self.cache_requests.get_or_create(&ResultLabel { result: "hit" }).inc_by(hits.saturating_sub(seen.0));
            self.cache_requests.get_or_create(&ResultLabel { result: "miss" }).inc_by(fetches.saturating_sub(seen.1));
            *seen = (hits.max(seen.0), fetches.max(seen.1));
        }
    }

    /// `events` events of `payload_bytes` bytes were stored in `segment` (a qualified segment
    /// name `scope/stream/N.#epoch.E`; other names count under themselves).
    pub fn appended(&self, segment: &str, events: u32, payload_bytes: u64) {
        if !cfg!(feature = "metrics") {
            return;
        }
        let stream = match segment.rsplit_once('/') {
            Some((stream, _)) => stream,
            None => segment,
        };
        let label = StreamLabel { stream: stream.to_owned() };
        self.appended_events.get_or_create(&label).inc_by(events as u64);
        self.appended_bytes.get_or_create(&label).inc_by(payload_bytes);
    }

    /// One group commit of `requests` requests took `seconds`; `queued` bytes wait now.
    pub fn committed(&self, container: u32, requests: usize, seconds: f64, queued: u64) {
        if !cfg!(feature = "metrics") {
            return;
        }
        let label = ContainerLabel { container };
        self.commits.get_or_create(&label).inc();
        self.commit_seconds.get_or_create(&label).observe(seconds);
        self.group_requests.get_or_create(&label).observe(requests as f64);
        self.queued_bytes.get_or_create(&label).set(queued.min(i64::MAX as u64) as i64);
    }
}

/// An open append or read stream, counted in `nadi_open_streams` while held.
#[derive(Debug)]
pub struct OpenStream(Gauge);

impl Drop for OpenStream {
    fn drop(&mut self) {
        if cfg!(feature = "metrics") {
            self.0.dec();
        }
    }
}

/// A replicated container's role, as [`StoreMetrics::sample`] records it.
#[derive(Debug, Default)]
pub struct ContainerRole {
    /// The term, where this replica leads.
    pub term: Option<u64>,
    /// Each follower: (replica id, entries behind, body bytes behind).
    pub followers: Vec<(u64, u64, u64)>,
}

/// The OpenMetrics text of `registry`.
pub fn encode(registry: &Registry) -> Result<String, std::fmt::Error> {
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, registry)?;
    Ok(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[cfg(feature = "metrics")]
    fn appends_count_by_stream_and_commits_by_container() {
        let m = StoreMetrics::default();
        let mut registry = Registry::default();
        m.register(&mut registry);
        m.appended("s/t/0.#epoch.0", 3, 300);
        m.appended("s/t/1.#epoch.1", 2, 20);
        m.appended("s/u/0.#epoch.0", 1, 7);
        m.committed(2, 5, 0.001, 64);
        let text = encode(&registry).unwrap();
        assert!(text.contains(r#"nadi_stream_appended_events_total{stream="s/t"} 5"#), "{text}");
        assert!(text.contains(r#"nadi_stream_appended_bytes_total{stream="s/t"} 320"#), "{text}");
        assert!(text.contains(r#"nadi_stream_appended_events_total{stream="s/u"} 1"#), "{text}");
        assert!(text.contains(r#"nadi_container_commits_total{container="2"} 1"#), "{text}");
        assert!(text.contains(r#"nadi_container_queued_bytes{container="2"} 64"#), "{text}");
        assert!(text.contains(r#"nadi_container_group_requests_count{container="2"} 1"#), "{text}");
    }

    #[test]
    #[cfg(feature = "metrics")]
    fn roles_and_follower_lag_follow_the_last_sample() {
        let m = StoreMetrics::default();
        let mut registry = Registry::default();
        m.register(&mut registry);
        let leading = ContainerRole { term: Some(7), followers: vec![(0xa, 3, 300), (0xb, 0, 0)] };
        m.sample(1, (100, 900), Some(leading));
        m.sample(2, (5, 0), Some(ContainerRole::default()));
        m.sample(3, (1, 2), None);
        let text = encode(&registry).unwrap();
        for line in [
            r#"nadi_container_leader{container="1"} 1"#,
            r#"nadi_container_term{container="1"} 7"#,
            r#"nadi_container_follower_lag_entries{container="1",follower="000000000000000a"} 3"#,
            r#"nadi_container_follower_lag_bytes{container="1",follower="000000000000000a"} 300"#,
            r#"nadi_container_tier1_bytes{container="1"} 100"#,
            r#"nadi_container_tier2_bytes{container="1"} 900"#,
            r#"nadi_container_leader{container="2"} 0"#,
        ] {
            assert!(text.contains(line), "{line} in {text}");
        }
        assert!(!text.contains(r#"nadi_container_leader{container="3"}"#), "a single-copy container has no role");
        // Container 1's replica no longer leads: its followers' series go.
        m.sample(1, (100, 900), Some(ContainerRole::default()));
        let text = encode(&registry).unwrap();
        assert!(text.contains(r#"nadi_container_leader{container="1"} 0"#), "{text}");
        assert!(!text.contains("follower=\"000000000000000a\""), "{text}");
        // Cache counts turn into hit and miss counters.
        let mut seen = (0, 0);
        m.sample_store(1 << 30, Some((10, 4)), &mut seen);
        m.sample_store(1 << 30, Some((12, 4)), &mut seen);
        let text = encode(&registry).unwrap();
        assert!(text.contains(r#"nadi_tier2_cache_requests_total{result="hit"} 8"#), "{text}");
        assert!(text.contains(r#"nadi_tier2_cache_requests_total{result="miss"} 4"#), "{text}");
        assert!(text.contains("nadi_store_tier1_capacity_bytes 1073741824"), "{text}");
        // Open streams count while their guards live.
        let (a, b, r) = (m.stream_opened("append"), m.stream_opened("append"), m.stream_opened("read"));
        let text = encode(&registry).unwrap();
        assert!(text.contains(r#"nadi_open_streams{kind="append"} 2"#), "{text}");
        assert!(text.contains(r#"nadi_open_streams{kind="read"} 1"#), "{text}");
        drop((a, r));
        let text = encode(&registry).unwrap();
        assert!(text.contains(r#"nadi_open_streams{kind="append"} 1"#), "{text}");
        assert!(text.contains(r#"nadi_open_streams{kind="read"} 0"#), "{text}");
        drop(b);
    }
}
