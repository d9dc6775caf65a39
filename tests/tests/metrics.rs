//! The segment store's metrics against what clients wrote: 20 000 events of 1 KiB into one
//! stream, then `/metrics` must count exactly those events and payload bytes for that stream
//! (and nothing for another), through standalone's admin HTTP API and through a cluster
//! segment store's own `--http-listen`, whose `/health` and `/ready` answer too. The
//! controllers' `nadi_raft_*` gauges agree on one leader. A reader group over the stream shows
//! every written byte as lag on the controller's `/metrics`, and none once its reader drained it.

use std::collections::HashMap;

use bytes::Bytes;
use nadi_client::{EventWriter, NadiClient, StreamSpec, WriterConfig};
use nadi_proto::framing;
use nadi_tests::cluster::Cluster;
use nadi_tests::{Standalone, http_raw};

const EVENTS: u64 = 20_000;
const SIZE: usize = 1024;

/// Writes `EVENTS` keyed events of `SIZE` bytes into `scope/stream` (4 segments) and flushes.
fn write(controllers: &[String], scope: &str, stream: &str) {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    rt.block_on(async {
        let client = NadiClient::new(controllers).unwrap();
        client.create_scope(scope).await.unwrap();
        client.create_stream(scope, stream, StreamSpec::fixed(4)).await.unwrap();
        let writer = EventWriter::new(&client, scope, stream, WriterConfig::default()).await.unwrap();
        let payload = Bytes::from(vec![b'x'; SIZE]);
        for i in 0..EVENTS {
            writer.write(Some(format!("k{}", i % 64).as_bytes()), payload.clone()).await.unwrap();
        }
        writer.close().await.unwrap();
    });
}

/// The samples of `/metrics` at `addr`: `name{labels}` → value.
fn scrape(addr: &str) -> HashMap<String, f64> {
    let (status, text) = http_raw(addr, "GET", "/metrics", None);
    assert_eq!(status, 200, "GET /metrics: {text}");
    assert!(text.trim_end().ends_with("# EOF"), "OpenMetrics text ends with # EOF: {text}");
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .filter_map(|l| l.rsplit_once(' ').map(|(k, v)| (k.to_owned(), v.parse().expect("sample value"))))
        .collect()
}

fn check(samples: &HashMap<String, f64>, stream: &str) {
    let events = samples.get(&format!("nadi_stream_appended_events_total{{stream=\"{stream}\"}}"));
    let bytes = samples.get(&format!("nadi_stream_appended_bytes_total{{stream=\"{stream}\"}}"));
    assert_eq!(events, Some(&(EVENTS as f64)), "events of {stream}");
    assert_eq!(bytes, Some(&((EVENTS * SIZE as u64) as f64)), "payload bytes of {stream}");
    let commits: f64 =
        samples.iter().filter(|(k, _)| k.starts_with("nadi_container_commits_total{")).map(|(_, v)| v).sum();
    let groups: f64 =
        samples.iter().filter(|(k, _)| k.starts_with("nadi_container_commit_seconds_count{")).map(|(_, v)| v).sum();
    assert!(commits >= 1.0 && commits == groups, "one latency sample per commit: {commits} vs {groups}");
    assert!(!samples.keys().any(|k| k.contains("stream=\"m/other\"")), "no samples for a stream never written");
}

#[test]
fn standalone_metrics_count_what_was_written() {
    let dir = tempfile::tempdir().unwrap();
    let s = Standalone::start(dir.path());
    write(std::slice::from_ref(&s.controller_url), "m", "s");
    check(&scrape(&s.http_addr), "m/s");
    // The admin API's own metrics and the controller's Raft state are on the same page.
    let m = scrape(&s.http_addr);
    assert!(m.keys().any(|k| k.starts_with("nadi_http_requests_total{")));
    assert_eq!(m.get("nadi_raft_is_leader"), Some(&1.0), "standalone's controller leads its group of one");
    reader_group_lag_drains(&s.controller_url, &s.http_addr);
    store_gauges_add_up(&s.http_addr);
}

/// The store's own gauges and counters after [`write`] and a reader that read it all: every
/// stored byte (8 bytes of framing per event) is in Tier-1 or Tier-2, readers were served at
/// least all of it, and each commit had its fsync.
fn store_gauges_add_up(http_addr: &str) {
    let stored = (EVENTS * framing::framed_len(SIZE) as u64) as f64;
    let sum = |m: &HashMap<String, f64>, prefix: &str| -> f64 {
        m.iter().filter(|(k, _)| k.starts_with(prefix)).map(|(_, v)| v).sum()
    };
    let started = std::time::Instant::now();
    let m = loop {
        // Sampled every 2 s.
        let m = scrape(http_addr);
        let tiers = sum(&m, "nadi_container_tier1_bytes{") + sum(&m, "nadi_container_tier2_bytes{");
        if tiers == stored {
            break m;
        }
        assert!(
            started.elapsed() < std::time::Duration::from_secs(20),
            "bytes by tier add up to {tiers}, not {stored}"
        );
        std::thread::sleep(std::time::Duration::from_millis(250));
    };
    let read = sum(&m, "nadi_read_bytes_total{");
    assert!(read >= stored, "readers were served {read} bytes of {stored}");
    let commits = sum(&m, "nadi_container_commits_total{");
    let fsyncs = m["nadi_log_fsync_seconds_count"];
    assert!(fsyncs >= commits, "{fsyncs} fsyncs for {commits} commits");
    assert_eq!(m.get("nadi_store_tier1_capacity_bytes"), Some(&0.0), "no --tier1-capacity");
}

/// Waits (at most 20 s) until the sample `name` at `addr` is `want`.
fn wait_for_sample(addr: &str, name: &str, want: f64) {
    let started = std::time::Instant::now();
    loop {
        let got = scrape(addr).get(name).copied();
        if got == Some(want) {
            return;
        }
        assert!(started.elapsed() < std::time::Duration::from_secs(20), "{name} is {got:?}, not {want}");
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
}

/// Issue 18, acceptance 1 (lag): a reader group over `m/s` (written by [`write`]) lags by every
/// byte and every event of it (8 bytes of framing per event) until its reader has read every event, then by 0.
fn reader_group_lag_drains(controller: &str, http_addr: &str) {
    let controller = controller.to_owned();
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let _enter = rt.enter();
    let client = NadiClient::new(&[controller]).unwrap();
    let group = rt.block_on(async {
        nadi_client::ReaderGroup::create(&client, "m", "g", &["s"], nadi_client::StartFrom::Head).await.unwrap()
    });
    let lag = "nadi_reader_group_lag_bytes{group=\"m/g\"}";
    let lag_events = "nadi_reader_group_lag_events{group=\"m/g\"}";
    wait_for_sample(http_addr, lag, (EVENTS * framing::framed_len(SIZE) as u64) as f64);
    wait_for_sample(http_addr, lag_events, EVENTS as f64);
    rt.block_on(async {
        let config =
            nadi_client::ReaderConfig { sync_interval: std::time::Duration::from_millis(200), ..Default::default() };
        let mut reader = group.reader(config).await.unwrap();
        let (mut n, started) = (0, std::time::Instant::now());
        while n < EVENTS {
            assert!(started.elapsed() < std::time::Duration::from_secs(60), "read {n} of {EVENTS} events in 60 s");
            let ev = tokio::time::timeout(std::time::Duration::from_secs(30), reader.read_next()).await;
            if let Ok(Ok(Some(_))) = ev {
                n += 1;
            }
        }
        // The reader syncs its positions from inside `read_next` (which waits at the tail);
        // the gauge follows.
        let started = std::time::Instant::now();
        loop {
            if let Ok(Ok(Some(ev))) =
                tokio::time::timeout(std::time::Duration::from_millis(300), reader.read_next()).await
            {
                panic!("an event nobody wrote: {ev:?}");
            }
            let got = scrape(http_addr).get(lag).copied();
            if got == Some(0.0) {
                break;
            }
            assert!(
                started.elapsed() < std::time::Duration::from_secs(20),
                "{lag} is {got:?} after the reader drained the stream"
            );
        }
        wait_for_sample(http_addr, lag_events, 0.0);
        assert_eq!(scrape(http_addr).get("nadi_reader_group_readers{group=\"m/g\"}"), Some(&1.0));
        drop(reader);
    });
}

#[test]
fn a_cluster_segment_store_serves_metrics_health_and_ready() {
    let dir = tempfile::tempdir().unwrap();
    let c = Cluster::start(dir.path(), 3);
    let store = c.store_http_addr();
    assert_eq!(http_raw(&store, "GET", "/health", None).0, 200);
    assert_eq!(http_raw(&store, "GET", "/ready", None).0, 200, "ready once registered");
    let (status, body) = http_raw(&store, "GET", "/nope", None);
    assert_eq!(status, 404, "{body}");
    let urls: Vec<String> = c.controller_urls().split(',').map(str::to_owned).collect();
    write(&urls, "m", "s");
    check(&scrape(&store), "m/s");

    // The controllers' Raft state: one leader, seen by all, every member applied the writes'
    // metadata (scope, stream, registration). The three pages are read one after another, so
    // an election in between (a loaded machine) makes a mixed view: read them again, for at
    // most 20 s, until they agree.
    let started = std::time::Instant::now();
    let leaders = loop {
        let pages: Vec<HashMap<String, f64>> = (1..=3).map(|id| scrape(&c.http_addr(id))).collect();
        let leaders: Vec<u64> = (1..=3).filter(|&id| pages[id as usize - 1]["nadi_raft_is_leader"] == 1.0).collect();
        let seen: Vec<f64> = pages.iter().map(|m| m["nadi_raft_leader"]).collect();
        let applied = pages.iter().all(|m| m["nadi_raft_applied_index"] >= 3.0);
        if leaders.len() == 1 && applied && seen.iter().all(|&l| l == leaders[0] as f64) {
            for (i, m) in pages.iter().enumerate() {
                let id = i + 1;
                assert!(m["nadi_raft_term"] >= 1.0, "controller {id} term");
                assert!(
                    m["nadi_raft_applied_index"] <= m["nadi_raft_last_log_index"],
                    "controller {id}: applied ≤ last log"
                );
            }
            assert!(
                pages[leaders[0] as usize - 1]["nadi_raft_millis_since_quorum_ack"] >= 0.0,
                "the leader hears from a quorum"
            );
            break leaders;
        }
        assert!(
            started.elapsed() < std::time::Duration::from_secs(20),
            "the controllers do not agree on one leader that every member follows: leaders {leaders:?}, seen {seen:?}, applied ≥ 3: {applied}"
        );
        std::thread::sleep(std::time::Duration::from_millis(200));
    };
    // Reader-group lag is measured by the leader.
    reader_group_lag_drains(&urls[0], &c.http_addr(leaders[0]));
    let follower = (1..=3).find(|id| *id != leaders[0]).unwrap();
    assert!(
        !scrape(&c.http_addr(follower)).keys().any(|k| k.starts_with("nadi_reader_group_lag_bytes")),
        "a follower shows no lag of its own"
    );
}
