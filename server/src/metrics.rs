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
        Self {
            appended_events: Family::default(),
            appended_bytes: Family::default(),
            commits: Family::default(),
            commit_seconds: Family::new_with_constructor(latency),
            group_requests: Family::new_with_constructor(requests),
            queued_bytes: Family::default(),
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
}
