//! Event time and watermarks (issue 22, acceptance 2), against the real binary.
//!
//! Two writers note their time (`EventWriter::note_time`); event times are in the payloads.
//! Writer B writes a little, notes 500 ms and goes quiet (idle timeout 2 s, not closed);
//! writer A writes for about 6 s with event times rising 10 ms per event and notes its time
//! every 100 events; the stream is split in the middle. A stream reader and a reader group of
//! two readers read everything and ask for their watermark after every event. The checker:
//! - no reader ever hands out an event whose time is below a watermark it reported before
//!   (the watermark never passes an event not delivered);
//! - while B is within its idle timeout, no watermark passes B's noted 500 ms, however far
//!   A is ahead;
//! - after B's timeout the watermark moves on, and reaches A's last noted time;
//! - every acknowledged event is read exactly once by each reader (kind), in order per key.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use nadi_client::{
    ErrorKind, EventWriter, NadiClient, ReaderConfig, ReaderGroup, StartFrom, StreamReader, WriterConfig,
};
use nadi_tests::{Standalone, check_per_key_order, json_out, ok};

const B_IDLE: Duration = Duration::from_secs(2);
const B_TIME: u64 = 500;

/// An event as read: writer key, per-key sequence, event time.
#[derive(Debug, Clone)]
struct Seen {
    key: String,
    seq: u64,
    time: u64,
}

fn parse(p: &[u8]) -> Seen {
    let s = std::str::from_utf8(p).unwrap();
    let mut it = s.split(',');
    let key = it.next().unwrap().to_owned();
    let seq = it.next().unwrap().parse().unwrap();
    let time = it.next().unwrap().parse().unwrap();
    Seen { key, seq, time }
}

/// What one reader saw: events in order, each with the highest watermark reported before it,
/// and every watermark report with when it was made.
#[derive(Debug, Default)]
struct Log {
    events: Vec<(Seen, Option<u64>)>,
    reports: Vec<(Instant, Option<u64>)>,
}

impl Log {
    fn event(&mut self, seen: Seen) {
        let before = self.reports.iter().filter_map(|r| r.1).max();
        self.events.push((seen, before));
    }

    fn report(&mut self, w: Option<u64>) {
        self.reports.push((Instant::now(), w));
    }

    fn latest(&self) -> Option<u64> {
        self.reports.last().and_then(|r| r.1)
    }

    /// No event handed out below a watermark reported before it.
    fn check_never_passed(&self, what: &str) {
        for (i, (seen, before)) in self.events.iter().enumerate() {
            if let Some(w) = before {
                assert!(
                    seen.time >= *w,
                    "{what}: event {i} ({}:{} at {} ms) handed out after watermark {w} ms",
                    seen.key,
                    seen.seq,
                    seen.time
                );
            }
        }
    }
}

#[test]
fn the_watermark_never_passes_an_undelivered_event_and_moves_on_when_a_writer_goes_idle() {
    let dir = tempfile::tempdir().unwrap();
    let s = Standalone::start(dir.path());
    ok(&s.cli(&["scope", "create", "demo"]));
    ok(&s.cli(&["stream", "create", "demo/w", "--segments", "2"]));

    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let _enter = rt.enter();
    let client = NadiClient::new(std::slice::from_ref(&s.controller_url)).unwrap();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));

    // The readers, started before anything is written.
    let stream_log: Arc<Mutex<Log>> = Arc::default();
    let stream_reader = {
        let (client, log, stop) = (client.clone(), stream_log.clone(), stop.clone());
        rt.spawn(async move {
            let mut r = StreamReader::new(&client, "demo", "w", true).await.unwrap();
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                if let Ok(next) = tokio::time::timeout(Duration::from_millis(100), r.next()).await {
                    let ev = next.expect("the stream is not sealed").unwrap();
                    log.lock().unwrap().event(parse(&ev.payload));
                }
                let w = r.watermark().await.unwrap();
                log.lock().unwrap().report(w);
            }
        })
    };
    let group = rt.block_on(ReaderGroup::create(&client, "demo", "g", &["w"], StartFrom::Head)).unwrap();
    let group_logs: Vec<Arc<Mutex<Log>>> = (0..2).map(|_| Arc::default()).collect();
    let group_readers: Vec<_> = group_logs
        .iter()
        .enumerate()
        .map(|(i, log)| {
            let (group, log, stop) = (group.clone(), log.clone(), stop.clone());
            rt.spawn(async move {
                let config =
                    ReaderConfig { reader_id: Some(format!("reader-{i}")), sync_interval: Duration::from_millis(200) };
                let mut r = group.reader(config).await.unwrap();
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    if let Ok(next) = tokio::time::timeout(Duration::from_millis(100), r.read_next()).await
                        && let Some(ev) = next.unwrap()
                    {
                        log.lock().unwrap().event(parse(&ev.payload));
                    }
                    let w = r.watermark("w").await.unwrap();
                    log.lock().unwrap().report(w);
                }
                r.close().await.unwrap();
            })
        })
        .collect();

    // Both writers start at time 0 (a writer that joins later, below the stream's watermark,
    // would write late events). B writes 50 events (0 .. 490 ms), notes 500 and goes quiet.
    let config = |id: &str, idle| WriterConfig { writer_id: Some(id.into()), idle_timeout: idle, ..Default::default() };
    let a = rt.block_on(EventWriter::new(&client, "demo", "w", config("a", Duration::from_secs(10)))).unwrap();
    let b = rt.block_on(EventWriter::new(&client, "demo", "w", config("b", B_IDLE))).unwrap();
    assert_eq!(rt.block_on(a.note_time(0)).unwrap(), 0);
    let mut expected: HashMap<String, u64> = HashMap::new();
    rt.block_on(async {
        assert_eq!(b.note_time(0).await.unwrap(), 0, "the watermark is the lowest writer's time");
        for i in 0..50u64 {
            let key = format!("b{}", i % 4);
            let seq = expected.entry(key.clone()).or_default();
            b.write(Some(key.as_bytes()), Bytes::from(format!("{key},{seq},{}", i * 10))).await.unwrap();
            *seq += 1;
        }
    });
    let b_noted_before = Instant::now();
    // A's note of 0 holds the watermark there.
    assert_eq!(rt.block_on(b.note_time(B_TIME)).unwrap(), 0);
    // Its time never goes back: a lower note is refused.
    let err = rt.block_on(b.note_time(B_TIME - 1)).unwrap_err();
    assert_eq!(err.kind, ErrorKind::Invalid, "{err}");

    // Writer A: 6000 events, 1 ms apart, times 0, 10, 20, ... ms; a note every 100 events;
    // the stream split after 2000.
    let mut a_last_note = 0;
    let mut tick = Instant::now();
    for i in 0..6_000u64 {
        if i == 2_000 {
            let info = json_out(&s.cli(&["stream", "info", "demo/w", "--json"]));
            let first = info["segments"][0]["id"].as_u64().unwrap().to_string();
            ok(&s.cli(&["stream", "scale", "demo/w", "--split", &first]));
        }
        let key = format!("a{}", i % 8);
        let seq = expected.entry(key.clone()).or_default();
        rt.block_on(a.write(Some(key.as_bytes()), Bytes::from(format!("{key},{seq},{}", i * 10)))).unwrap();
        *seq += 1;
        if (i + 1) % 100 == 0 {
            a_last_note = (i + 1) * 10;
            rt.block_on(a.note_time(a_last_note)).unwrap();
        }
        tick += Duration::from_millis(1);
        if let Some(wait) = tick.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
    }
    assert!(b_noted_before.elapsed() > B_IDLE * 2, "A wrote for longer than B's idle timeout");

    // Everything read, and every watermark reaches A's last note (B idle, A active).
    let total: u64 = expected.values().sum();
    let deadline = Instant::now() + Duration::from_secs(30);
    let logs: Vec<(&str, &Arc<Mutex<Log>>)> =
        vec![("stream reader", &stream_log), ("group reader 0", &group_logs[0]), ("group reader 1", &group_logs[1])];
    loop {
        let stream_done = {
            let l = stream_log.lock().unwrap();
            l.events.len() as u64 == total && l.latest() == Some(a_last_note)
        };
        let group_read: u64 = group_logs.iter().map(|l| l.lock().unwrap().events.len() as u64).sum();
        let group_marks = group_logs.iter().all(|l| l.lock().unwrap().latest() == Some(a_last_note));
        if stream_done && group_read == total && group_marks {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "after 30 s: stream reader {} of {total} events, watermark {:?}; group {group_read} events, \
             watermarks {:?}; A's last note {a_last_note}",
            stream_log.lock().unwrap().events.len(),
            stream_log.lock().unwrap().latest(),
            group_logs.iter().map(|l| l.lock().unwrap().latest()).collect::<Vec<_>>(),
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    rt.block_on(stream_reader).unwrap();
    for r in group_readers {
        rt.block_on(r).unwrap();
    }
    // The CLI's view before and after A closes: A active and B idle, then only B (idle).
    let view = json_out(&s.cli(&["stream", "watermarks", "demo/w", "--json"]));
    assert_eq!(view["watermark_ms"], a_last_note, "{view}");
    assert_eq!((view["active_writers"].as_u64(), view["idle_writers"].as_u64()), (Some(1), Some(1)), "{view}");
    rt.block_on(a.close()).unwrap();
    let view = json_out(&s.cli(&["stream", "watermarks", "demo/w", "--json"]));
    assert_eq!((view["active_writers"].as_u64(), view["idle_writers"].as_u64()), (Some(0), Some(1)), "{view}");
    assert_eq!(view["watermark_ms"], a_last_note, "no active writer: it stays");
    assert_eq!(nadi_tests::cli_code(&s.cli(&["stream", "watermarks", "demo/none"])), "NOT_FOUND_STREAM");

    for (what, log) in &logs {
        let log = log.lock().unwrap();
        log.check_never_passed(what);
        // Within B's idle timeout of its last note, nothing passed B's time.
        let held_until = b_noted_before + B_IDLE;
        let early: Vec<u64> = log.reports.iter().filter(|r| r.0 < held_until).filter_map(|r| r.1).collect();
        assert!(early.iter().all(|w| *w <= B_TIME), "{what}: watermarks before B went idle: {early:?}");
        let highest = log.reports.iter().filter_map(|r| r.1).max();
        assert!(highest > Some(B_TIME), "{what}: the watermark never moved past idle B's {B_TIME} ms");
    }
    let seen = |log: &Log| log.events.iter().map(|(s, _)| (s.key.clone(), s.seq)).collect::<Vec<_>>();
    check_per_key_order(&seen(&stream_log.lock().unwrap()), &expected, "stream reader");
    // The group's two readers together: exactly once, and per key in order within each reader
    // (a key moves between readers only at a segment's end).
    let mut all = Vec::new();
    for log in &group_logs {
        all.extend(seen(&log.lock().unwrap()));
    }
    let mut counts: HashMap<String, u64> = HashMap::new();
    for (k, _) in &all {
        *counts.entry(k.clone()).or_default() += 1;
    }
    assert_eq!(counts, expected, "the group read every event once");
    let b_alive = b;
    drop(b_alive);
}
