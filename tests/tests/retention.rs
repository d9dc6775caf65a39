//! Retention against the real binary: a stream with `size:BYTES` or `time:DURATION` is truncated
//! by the controller on its own (here every 300 ms); its head moves forward, the Tier-2 chunks
//! of the removed data are deleted (fewer objects and bytes), a reader from the start reads
//! only what is retained (the newest data, every event of it), and a read of a segment before
//! its new start gets `TRUNCATED` naming the start offset, as documented.

use std::path::Path;
use std::time::{Duration, Instant};

use nadi_proto::segment::v1 as pb;
use nadi_proto::segment::v1::segment_store_client::SegmentStoreClient;
use nadi_tests::{Standalone, json_out, ok};

const FLAGS: [&str; 6] = ["--retention-interval", "300ms", "--tier2-chunk-size", "16KiB", "--tier2-max-age", "100ms"];

/// (chunk objects, their bytes) under a Tier-2 directory.
fn chunks(dir: &Path) -> (usize, u64) {
    let (mut n, mut bytes) = (0, 0);
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                let (a, b) = chunks(&p);
                n += a;
                bytes += b;
            } else if p.extension().is_some_and(|e| e == "chunk") {
                n += 1;
                bytes += e.metadata().map(|m| m.len()).unwrap_or(0);
            }
        }
    }
    (n, bytes)
}

fn write_batch(s: &Standalone, stream: &str, tag: &str, n: usize) {
    let text: String = (0..n).map(|i| format!("k{}\t{tag}-{i:05}-{}\n", i % 7, "x".repeat(200))).collect();
    let out = ok(&s.cli_stdin(&["write", stream, "--key-sep", "\t"], text.as_bytes()));
    assert!(out.starts_with(&format!("wrote {n}")), "{out}");
}

fn read_all(s: &Standalone, stream: &str) -> Vec<String> {
    let out = ok(&s.cli(&["read", stream, "--from-start", "--idle-timeout", "2"]));
    out.lines().map(str::to_owned).collect()
}

/// The head cut's offsets (segment id → start offset).
fn head(s: &Standalone, stream: &str) -> Vec<(u64, u64)> {
    let v = json_out(&s.cli(&["stream", "cut", stream, "--json"]));
    v["cut"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| (c["segment_id"].as_u64().unwrap(), c["offset"].as_u64().unwrap()))
        .collect()
}

fn wait_until(what: &str, limit: Duration, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn size_retention_truncates_and_deletes_tier2_chunks() {
    let dir = tempfile::tempdir().unwrap();
    let s = Standalone::start_with(dir.path(), &FLAGS);
    ok(&s.cli(&["scope", "create", "demo"]));
    ok(&s.cli(&["stream", "create", "demo/sized", "--segments", "2", "--retention", "size:300KiB"]));
    let tier2 = dir.path().join("tier2");
    // Watch the Tier-2 objects all along: retention works while the data is written.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let watcher = {
        let (stop, tier2) = (stop.clone(), tier2.clone());
        std::thread::spawn(move || {
            let mut peak = (0, 0);
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let now = chunks(&tier2);
                peak = (peak.0.max(now.0), peak.1.max(now.1));
                std::thread::sleep(Duration::from_millis(10));
            }
            peak
        })
    };
    // 10 batches of ~210 KiB, with pauses so that retention records cuts in between.
    for b in 0..10 {
        write_batch(&s, "demo/sized", &format!("b{b}"), 1000);
        std::thread::sleep(Duration::from_millis(400));
    }
    wait_until("size retention to truncate the stream", Duration::from_secs(30), || {
        head(&s, "demo/sized").iter().any(|(_, off)| *off > 0)
    });
    // Everything written went to Tier-2 (2 MiB), yet chunks of the truncated data are deleted.
    wait_until("Tier-2 to hold less than half of what was written", Duration::from_secs(30), || {
        chunks(&tier2).1 < 1 << 20
    });
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let peak = watcher.join().unwrap();
    assert!(
        chunks(&tier2).0 < peak.0 && chunks(&tier2).1 < peak.1,
        "fewer objects and bytes than at the peak {peak:?}"
    );
    let (n, bytes) = chunks(&tier2);
    eprintln!("retention (size): Tier-2 went from {} chunks / {} bytes to {n} / {bytes}", peak.0, peak.1);

    // A reader from the start reads what is retained: at least 300 KiB, the newest batch
    // whole, every event once.
    let events = read_all(&s, "demo/sized");
    let retained: usize = events.iter().map(|l| l.len() + nadi_proto::framing::EVENT_HEADER_LEN).sum();
    assert!(retained >= 300 << 10, "at least the policy's size is kept: {retained}");
    assert!(retained < 2 << 20, "most of the 2 MiB is gone: {retained}");
    let last: Vec<_> = events.iter().filter(|l| l.contains("b9-")).collect();
    assert_eq!(last.len(), 1000, "the newest batch is whole");
    let mut sorted = events.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(sorted.len(), events.len(), "no event twice");

    // A read before a segment's new start: TRUNCATED with the start offset.
    let (seg_id, start) = head(&s, "demo/sized").into_iter().find(|(_, off)| *off > 0).unwrap();
    let info = json_out(&s.cli(&["stream", "info", "demo/sized", "--json"]));
    let seg = info["segments"].as_array().unwrap().iter().find(|x| x["id"].as_u64() == Some(seg_id)).unwrap();
    let number = seg["number"].as_u64().unwrap();
    let name = format!("demo/sized/{number}.#epoch.0");
    let rt = tokio::runtime::Runtime::new().unwrap();
    let status = rt.block_on(async {
        let mut c = SegmentStoreClient::connect(s.segment_url.clone()).await.unwrap();
        let req = pb::ReadRequest { segment: name, offset: 0, follow: false, max_bytes_per_message: 0 };
        c.read(req).await.err()
    });
    let status = status.expect("a read before the start fails");
    assert_eq!(status.code(), tonic::Code::OutOfRange, "{status:?}");
    // "offset 0 of segment … is before its start offset N: the data was truncated" (retention
    // may have moved it further since the head was read).
    let msg = status.message();
    assert!(msg.contains("the data was truncated") && msg.contains("before its start offset"), "{status:?}");
    let named: u64 = msg.split("start offset ").nth(1).and_then(|t| t.split(':').next()).unwrap().parse().unwrap();
    assert!(named >= start, "{msg}");
    s.stop();
}

#[test]
fn time_retention_truncates_data_older_than_the_policy() {
    let dir = tempfile::tempdir().unwrap();
    let s = Standalone::start_with(dir.path(), &FLAGS);
    ok(&s.cli(&["scope", "create", "demo"]));
    ok(&s.cli(&["stream", "create", "demo/timed", "--segments", "2", "--retention", "time:3s"]));
    write_batch(&s, "demo/timed", "old", 500);
    // Write newer data for a while: the old batch ages past 3 s and is removed.
    let started = Instant::now();
    let mut b = 0;
    wait_until("time retention to remove the old batch", Duration::from_secs(40), || {
        write_batch(&s, "demo/timed", &format!("new{b}"), 50);
        b += 1;
        std::thread::sleep(Duration::from_millis(300));
        !read_all(&s, "demo/timed").iter().any(|l| l.contains("old-"))
    });
    assert!(started.elapsed() >= Duration::from_secs(3), "nothing younger than the policy is removed");
    let events = read_all(&s, "demo/timed");
    let newest = format!("new{}-", b - 1);
    assert_eq!(events.iter().filter(|l| l.contains(&newest)).count(), 50, "the newest batch is whole");
    s.stop();
}

/// Issue 22, acceptance 3: `consumption:MIN,MAX` on a controlled clock. A subscriber group
/// holds the data until its checkpoint has passed it, but only data at least MIN old goes, and
/// data MAX old goes whatever the subscriber did; a group that is not a subscriber (and never
/// reads) holds nothing. Each step waits until a control stream (consumption with no
/// subscriber, so its MAX of 10 s applies) was truncated after the clock moved: retention
/// passes take the streams in name order, so `demo/c` was looked at in that same pass, and
/// "nothing was truncated" is not a sleep-and-hope.
#[test]
fn consumption_retention_follows_subscriber_checkpoints_within_min_and_max() {
    let dir = tempfile::tempdir().unwrap();
    let clock = dir.path().join("clock");
    let t0 = (nadi_proto::clock::system_ms() / 1000 + 2) * 1000;
    nadi_tests::set_clock(&clock, t0);
    let env = [(nadi_proto::clock::FAULT_CLOCK_ENV, clock.to_str().unwrap())];
    let s = Standalone::start_with_env(dir.path(), &FLAGS, &env);
    ok(&s.cli(&["scope", "create", "demo"]));
    let created = s.cli(&["stream", "create", "demo/c", "--retention", "consumption:40s,120s"]);
    ok(&created);
    let note = String::from_utf8_lossy(&created.stderr);
    assert!(note.contains("no subscriber reader group reads demo/c yet, so it keeps data up to MAX"), "{note}");
    ok(&s.cli(&["stream", "create", "demo/ctl", "--retention", "consumption:0s,10s"]));
    let info = json_out(&s.cli(&["stream", "info", "demo/c", "--json"]));
    assert_eq!(info["policy"]["retention"], "consumption:40s,2m", "{info}");
    // Bad policies are refused with typed errors and change nothing.
    for bad in ["consumption:2h,1h", "consumption:1h", "consumption:1h,soon", "consumption:0s,0s"] {
        let out = s.cli(&["stream", "create", "demo/bad", "--retention", bad]);
        assert_eq!(nadi_tests::cli_code(&out), "INVALID_ARGUMENT", "{bad}");
        let out = s.cli(&["stream", "update", "demo/c", "--retention", bad]);
        assert_eq!(nadi_tests::cli_code(&out), "INVALID_ARGUMENT", "{bad}");
    }
    let info = json_out(&s.cli(&["stream", "info", "demo/c", "--json"]));
    assert_eq!(info["policy"]["retention"], "consumption:40s,2m", "{info}");
    // Setting it on an existing stream no subscriber reads is refused (at creation no group can
    // exist yet: the note above); a non-subscriber group does not count; nothing changes.
    ok(&s.cli(&["reader-group", "create", "demo/other", "--stream", "c"]));
    for (flag, policy) in [("--retention", "consumption:50s,120s"), ("--scaling", "readers:2")] {
        let out = s.cli(&["stream", "update", "demo/c", flag, policy]);
        assert_eq!(nadi_tests::cli_code(&out), "NO_SUBSCRIBER", "{policy}");
        assert!(String::from_utf8_lossy(&out.stderr).contains("--subscriber"), "names the fix: {out:?}");
    }
    let info = json_out(&s.cli(&["stream", "info", "demo/c", "--json"]));
    assert_eq!(info["policy"]["retention"], "consumption:40s,2m", "{info}");
    ok(&s.cli(&["reader-group", "create", "demo/sub", "--stream", "c", "--subscriber"]));
    let group = json_out(&s.cli(&["reader-group", "info", "demo/sub", "--json"]));
    assert_eq!(group["subscriber"], true, "{group}");
    let updated = s.cli(&["stream", "update", "demo/c", "--retention", "consumption:40s,120s"]);
    ok(&updated);
    assert!(!String::from_utf8_lossy(&updated.stderr).contains("note:"), "{updated:?}");

    let write = |tag: &str| write_batch(&s, "demo/c", tag, 20);
    let head_of = |stream: &str| head(&s, stream)[0].1;
    // Writes to the control stream at the current clock, moves the clock to `to` (at least
    // 10 s later) and waits until retention truncated the control stream.
    let mut ctl_n = 0;
    let mut pass_at = |to: u64| {
        ctl_n += 1;
        write_batch(&s, "demo/ctl", &format!("ctl{ctl_n}"), 5);
        let before = head_of("demo/ctl");
        nadi_tests::set_clock(&clock, to);
        wait_until("a retention pass", Duration::from_secs(20), || head_of("demo/ctl") > before);
    };
    let tags = |stream: &str| -> Vec<String> {
        let lines = read_all(&s, stream);
        lines.iter().map(|l| l.split('\t').nth(1).unwrap().split('-').next().unwrap().to_owned()).collect()
    };
    let read_group = |n: usize| {
        let out = ok(&s.cli(&["read", "demo/c", "--group", "sub", "--max", &n.to_string(), "--idle-timeout", "5"]));
        assert_eq!(out.lines().count(), n, "{out}");
    };

    write("a");
    nadi_tests::set_clock(&clock, t0 + 40_000);
    write("b");
    nadi_tests::set_clock(&clock, t0 + 70_000);
    write("c");
    // The subscriber has no checkpoint yet: it holds everything (the other group holds
    // nothing either way).
    pass_at(t0 + 81_000);
    assert_eq!(head_of("demo/c"), 0, "a subscriber without a checkpoint holds the data");
    assert_eq!(tags("demo/c").len(), 60);

    // The subscriber reads a and b and checkpoints: a and b (older than MIN) go.
    read_group(40);
    ok(&s.cli(&["reader-group", "checkpoint", "demo/sub", "cp1", "--wait", "10"]));
    pass_at(t0 + 92_000);
    assert_eq!(tags("demo/c"), vec!["c".to_owned(); 20], "truncated at the subscriber's checkpoint");

    // It reads c and checkpoints, but c stays while it is younger than MIN (40 s).
    read_group(20);
    ok(&s.cli(&["reader-group", "checkpoint", "demo/sub", "cp2", "--wait", "10"]));
    pass_at(t0 + 103_000);
    assert_eq!(tags("demo/c").len(), 20, "data younger than MIN stays");
    pass_at(t0 + 114_000);
    assert!(tags("demo/c").is_empty(), "data MIN old that the subscriber passed goes");

    // New data the subscriber never reads stays until it is MAX (120 s) old, then goes.
    write("d");
    pass_at(t0 + 200_000);
    assert_eq!(tags("demo/c"), vec!["d".to_owned(); 20], "the subscriber holds unread data until MAX");
    pass_at(t0 + 240_000);
    assert!(tags("demo/c").is_empty(), "data MAX old goes whatever the subscriber did");
    s.stop();
}
