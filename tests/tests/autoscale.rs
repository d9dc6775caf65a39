//! Auto-scaling against the real binary, with load windows of seconds instead of minutes:
//! hot streams split, cold ones merge back, only hot segments split, load near the threshold
//! does not make segments scale more than once per cooldown, `fixed` streams never scale (until
//! their policy is changed at run time), the segment cap is reported in the history, and cold
//! segments still merge after a segment-store restart. `nadi bench` reports latency through a
//! split. Every run also checks what the
//! writers were told against what a reader finds: each acknowledged event exactly once, each
//! key's events in order.
//!
//! The tests share the machine's two cores with the servers they start, so they run one at a
//! time (a lock), which keeps the measured rates close to the driven ones.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use nadi_client::{NadiClient, StreamSpec};
use nadi_proto::controller::v1 as pb;
use nadi_tests::cluster::Cluster;
use nadi_tests::load::{KeyedLoad, check_stream, keys};
use nadi_tests::{Standalone, http_raw, json_out, ok};

/// Seconds instead of minutes: tick 250 ms, windows 1/2/4 s, cooldown and mute 2 s.
const FAST: [(&str, &str); 4] = [
    ("NADI_LOAD_TICK", "250ms"),
    ("NADI_LOAD_WINDOWS", "1s,2s,4s"),
    ("NADI_SCALE_COOLDOWN", "2s"),
    ("NADI_SCALE_MUTE", "2s"),
];
const COOLDOWN_MS: u64 = 2_000;

static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner())
}

fn fast_flags() -> Vec<String> {
    FAST.iter()
        .flat_map(|(k, v)| {
            [format!("--{}", k.trim_start_matches("NADI_").to_lowercase().replace('_', "-")), (*v).to_owned()]
        })
        .collect()
}

/// A `nadi standalone` with fast scaling timing (and `extra` flags), a runtime, and a client
/// whose scope `demo` exists. Holds the lock that runs these tests one at a time.
struct Fast {
    client: NadiClient,
    s: Standalone,
    rt: tokio::runtime::Runtime,
    _dir: tempfile::TempDir,
    _one: std::sync::MutexGuard<'static, ()>,
}

fn fast(extra: &[&str]) -> Fast {
    let one = serial();
    let dir = tempfile::tempdir().unwrap();
    let mut flags = fast_flags();
    flags.extend(extra.iter().map(|f| (*f).to_owned()));
    let s = Standalone::start_with(dir.path(), &flags.iter().map(String::as_str).collect::<Vec<_>>());
    let rt = runtime();
    let client = rt.block_on(async {
        let client = NadiClient::new(std::slice::from_ref(&s.controller_url)).unwrap();
        client.create_scope("demo").await.unwrap();
        client
    });
    Fast { client, s, rt, _dir: dir, _one: one }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap()
}

/// `events:RATE,FACTOR,MIN`.
fn events(rate: u32, factor: u32, min: u32) -> StreamSpec {
    let scaling = pb::ScalingPolicy {
        kind: pb::scaling_policy::Kind::EventsPerSec as i32,
        target_rate: rate,
        scale_factor: factor,
        min_segments: min,
    };
    StreamSpec { config: pb::StreamConfig { scaling: Some(scaling), retention: None } }
}

async fn history(client: &NadiClient, stream: &str) -> pb::GetStreamHistoryResponse {
    client.stream_history("demo", stream).await.unwrap()
}

async fn active(client: &NadiClient, stream: &str) -> usize {
    history(client, stream).await.epochs.last().unwrap().segments.len()
}

/// Polls until `stream` has a number of active segments for which `ok` holds.
async fn wait_for_segments(
    client: &NadiClient,
    stream: &str,
    ok: impl Fn(usize) -> bool,
    within: Duration,
    what: &str,
) -> Duration {
    let start = Instant::now();
    loop {
        let n = active(client, stream).await;
        if ok(n) {
            return start.elapsed();
        }
        assert!(
            start.elapsed() < within,
            "{what}: still {n} segments after {within:?}: {:#?}",
            history(client, stream).await
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn reason(e: &pb::EpochInfo) -> pb::EpochReason {
    pb::EpochReason::try_from(e.reason).unwrap()
}

/// For each epoch begun by load: the segments it sealed (those of the epoch before that are
/// not in it).
fn load_scales(h: &pb::GetStreamHistoryResponse) -> Vec<(&pb::EpochInfo, Vec<&pb::Segment>)> {
    h.epochs
        .windows(2)
        .filter(|w| matches!(reason(&w[1]), pb::EpochReason::SplitByLoad | pb::EpochReason::MergeByLoad))
        .map(|w| (&w[1], w[0].segments.iter().filter(|s| !w[1].segments.iter().any(|n| n.id == s.id)).collect()))
        .collect()
}

#[test]
fn uniform_load_splits_to_four_and_merges_back_to_one() {
    let f = fast(&[]);
    let (s, client) = (&f.s, &f.client);
    f.rt.block_on(async {
        client.create_stream("demo", "u", events(100, 2, 1)).await.unwrap();
        let load = KeyedLoad::start(client, "demo", "u", keys(400), 1000.0);
        let split = wait_for_segments(client, "u", |n| n >= 4, Duration::from_secs(40), "splitting").await;
        let expected = load.stop().await;
        let merged = wait_for_segments(client, "u", |n| n == 1, Duration::from_secs(90), "merging").await;
        let h = history(client, "u").await;
        eprintln!(
            "uniform: >= 4 segments after {split:?} of 1000 events/s; back to 1 segment {merged:?} after the load stopped; {} epochs",
            h.epochs.len()
        );
        let reasons: Vec<_> = h.epochs.iter().skip(1).map(reason).collect();
        assert!(reasons.iter().all(|r| matches!(r, pb::EpochReason::SplitByLoad | pb::EpochReason::MergeByLoad)), "{reasons:?}");
        assert!(reasons.iter().filter(|r| **r == pb::EpochReason::SplitByLoad).count() >= 2, "{reasons:?}");
        assert_eq!(reasons.last(), Some(&pb::EpochReason::MergeByLoad));
        // The picture has one box per segment that ever existed.
        let (code, svg) = http_raw(&s.http_addr, "GET", "/v1/scopes/demo/streams/u/history.svg", None);
        assert_eq!(code, 200, "{svg}");
        let segments: std::collections::HashSet<u64> = h.epochs.iter().flat_map(|e| e.segments.iter().map(|s| s.id)).collect();
        assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"), "{svg}");
        assert_eq!(svg.matches("<title>segment ").count(), segments.len(), "{svg}");
        assert_eq!(http_raw(&s.http_addr, "GET", "/v1/scopes/demo/streams/nope/history.svg", None).0, 404);
        check_stream(client, "demo", "u", &expected).await;
    });
}

#[test]
fn skewed_load_splits_only_the_hot_segments() {
    let f = fast(&[]);
    let client = &f.client;
    // Keys that all route into the first quarter of the key space.
    let hot: Vec<String> = (0..)
        .map(|i| format!("h{i}"))
        .filter(|k| nadi_proto::routing::key_point(k.as_bytes()) < 0.25)
        .take(100)
        .collect();
    f.rt.block_on(async {
        client.create_stream("demo", "skew", events(100, 2, 4)).await.unwrap();
        let load = KeyedLoad::start(client, "demo", "skew", hot, 800.0);
        // Until the hot quarter is split at least twice over, then a while longer.
        wait_for_segments(client, "skew", |n| n >= 6, Duration::from_secs(40), "splitting the hot quarter").await;
        tokio::time::sleep(Duration::from_secs(3)).await;
        let expected = load.stop().await;
        let h = history(client, "skew").await;
        let scales = load_scales(&h);
        let splits: Vec<_> = scales.iter().filter(|(e, _)| reason(e) == pb::EpochReason::SplitByLoad).collect();
        assert!(splits.len() >= 2, "{h:#?}");
        for (e, sealed) in &splits {
            for seg in sealed {
                assert!(seg.key_high <= 0.25 + 1e-9, "epoch {} split cold segment {seg:?}", e.epoch);
            }
        }
        // The cold three quarters were never split: each of their keys is still served by a
        // segment at least as wide as a quarter.
        let now = &h.epochs.last().unwrap().segments;
        for seg in now.iter().filter(|s| s.key_low >= 0.25 - 1e-9) {
            assert!(seg.key_high - seg.key_low >= 0.25 - 1e-9, "cold segment narrowed: {seg:?}");
        }
        eprintln!("skewed: {} splits, all inside [0, 0.25); active now: {}", splits.len(), now.len());
        check_stream(client, "demo", "skew", &expected).await;
    });
}

#[test]
fn steady_load_near_the_threshold_scales_at_most_once_per_cooldown() {
    let f = fast(&[]);
    let client = &f.client;
    f.rt.block_on(async {
        client.create_stream("demo", "steady", events(100, 2, 1)).await.unwrap();
        // Just above the target, for the longest window plus 5 cooldown periods: one split
        // (into two segments at about half the target each), and then no flapping.
        let load = KeyedLoad::start(client, "demo", "steady", keys(200), 110.0);
        tokio::time::sleep(Duration::from_millis(4_000 + 5 * COOLDOWN_MS)).await;
        let expected = load.stop().await;
        let h = history(client, "steady").await;
        let scales = load_scales(&h);
        for (e, sealed) in &scales {
            for seg in sealed {
                let lived = e.created_at_ms - seg.created_at_ms;
                assert!(
                    lived + 100 >= COOLDOWN_MS,
                    "segment {} scaled {lived} ms after it was created: {h:#?}",
                    seg.id
                );
            }
        }
        // No flapping: at most one scale per cooldown period over the run.
        assert!(!scales.is_empty() && scales.len() <= 7, "{} scales in 14 s: {h:#?}", scales.len());
        eprintln!("steady just above the target: {} scales by load in 14 s", scales.len());
        check_stream(client, "demo", "steady", &expected).await;
    });
}

#[test]
fn bench_reports_stall_and_tail_latency_through_a_split() {
    let f = fast(&[]);
    let s = &f.s;
    let started_ms = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis() as u64;
    let out = s.cli(&[
        "bench",
        "--stream",
        "demo/b",
        "--scaling",
        "events:200,2,1",
        "--rate",
        "1000",
        "--duration",
        "8",
        "--keys",
        "500",
        "--event-size",
        "100",
        "--report-every",
        "1",
    ]);
    let r = json_out(&out);
    let events = r["events"].as_u64().unwrap();
    // About the rate asked for (a busy machine may fall a little behind); every event written
    // was acknowledged, or bench would have failed.
    assert!((7000..=8000).contains(&events), "{r}");
    assert!(r["segments_after"].as_u64().unwrap() >= 2, "the stream split during the run: {r}");
    let intervals = r["intervals"].as_array().unwrap();
    assert!(intervals.len() >= 8, "{r}");
    assert_eq!(
        intervals.iter().map(|i| i["events"].as_u64().unwrap()).sum::<u64>(),
        events,
        "every ack in one interval"
    );
    let h = json_out(&s.cli(&["stream", "history", "demo/b", "--json"]));
    let first_split = h["epochs"].as_array().unwrap().iter().find(|e| e["reason"] == "split-by-load").expect("a split");
    let at = (first_split["created_at_ms"].as_u64().unwrap().saturating_sub(started_ms) / 1000) as usize;
    let p999 = |i: usize| intervals.get(i).map_or(f64::NAN, |x| x["latency_ms"]["p999"].as_f64().unwrap());
    eprintln!(
        "bench through a split (second {at} of the run): longest stall {} ms; p99.9 {} ms in the split's second vs {} ms the second before; whole run {}",
        r["max_stall_ms"],
        p999(at),
        p999(at.saturating_sub(1)),
        r["latency_ms"]
    );
    ok(&out);
}

#[test]
fn fixed_streams_never_scale_by_load_until_their_policy_changes() {
    let f = fast(&[]);
    let (s, client) = (&f.s, &f.client);
    f.rt.block_on(async {
        client.create_stream("demo", "fixed", StreamSpec::fixed(1)).await.unwrap();
        client.create_stream("demo", "auto", events(100, 2, 1)).await.unwrap();
        let a = KeyedLoad::start(client, "demo", "fixed", keys(100), 600.0);
        let b = KeyedLoad::start(client, "demo", "auto", keys(100), 600.0);
        // The same load splits the stream with a load policy (so the scaler was at work) ...
        wait_for_segments(client, "auto", |n| n >= 2, Duration::from_secs(30), "auto splitting").await;
        tokio::time::sleep(Duration::from_secs(4)).await;
        // ... and never the fixed one.
        let h = history(client, "fixed").await;
        assert_eq!(h.epochs.len(), 1, "{h:#?}");
        b.stop().await;
        // The policy changes at run time (CLI): from then on the loaded stream splits.
        ok(&s.cli(&["stream", "update", "demo/fixed", "--scaling", "events:100,2,1"]));
        wait_for_segments(client, "fixed", |n| n >= 2, Duration::from_secs(30), "splitting after the update").await;
        let fixed = a.stop().await;
        check_stream(client, "demo", "fixed", &fixed).await;
    });
}

#[test]
fn a_capped_stream_says_so_in_its_history_instead_of_splitting() {
    let f = fast(&["--max-segments", "2"]);
    let (s, client) = (&f.s, &f.client);
    f.rt.block_on(async {
        client.create_stream("demo", "capped", events(100, 2, 1)).await.unwrap();
        let load = KeyedLoad::start(client, "demo", "capped", keys(100), 800.0);
        wait_for_segments(client, "capped", |n| n == 2, Duration::from_secs(30), "first split").await;
        // Both halves stay hot (400 events/s each) but the stream may not have more than 2.
        let start = Instant::now();
        let h = loop {
            let h = history(client, "capped").await;
            if !h.notes.is_empty() {
                break h;
            }
            assert!(start.elapsed() < Duration::from_secs(30), "no note: {h:#?}");
            tokio::time::sleep(Duration::from_millis(200)).await;
        };
        let expected = load.stop().await;
        assert_eq!(h.epochs.last().unwrap().segments.len(), 2, "{h:#?}");
        assert!(h.notes[0].text.contains("the most segments allowed (2)"), "{:?}", h.notes);
        let text = ok(&s.cli(&["stream", "history", "demo/capped"]));
        assert!(text.contains("note at ") && text.contains("not split"), "{text}");
        check_stream(client, "demo", "capped", &expected).await;
    });
}

#[test]
fn cold_segments_still_merge_after_a_segment_store_restart_under_load() {
    let _one = serial();
    let dir = tempfile::tempdir().unwrap();
    let mut c = Cluster::start_with_env(dir.path(), 1, &FAST);
    let rt = runtime();
    let _enter = rt.enter();
    let client = NadiClient::new(&[c.controller_urls()]).unwrap();
    let load = rt.block_on(async {
        client.create_scope("demo").await.unwrap();
        client.create_stream("demo", "r", events(100, 2, 1)).await.unwrap();
        let load = KeyedLoad::start(&client, "demo", "r", keys(300), 800.0);
        wait_for_segments(&client, "r", |n| n >= 4, Duration::from_secs(40), "splitting").await;
        load
    });
    // SIGKILL the store under load and start it again: its rates are gone.
    c.store.take().unwrap().kill9();
    c.start_store();
    let expected = rt.block_on(async {
        tokio::time::sleep(Duration::from_secs(2)).await;
        let expected = load.stop().await;
        let merged =
            wait_for_segments(&client, "r", |n| n == 1, Duration::from_secs(90), "merging after the restart").await;
        eprintln!("store restart: back to 1 segment {merged:?} after the load stopped");
        expected
    });
    rt.block_on(check_stream(&client, "demo", "r", &expected));
}
