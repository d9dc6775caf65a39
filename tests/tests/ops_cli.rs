//! The operator's command line against the real binary: `nadi stream stats --json` counts
//! exactly the bytes and events written (framed: an 8-byte header per event), `nadi
//! reader-group stats --json` shows every byte as lag until a reader drains the group, unknown
//! names fail with a typed error, `--watch` without a terminal prints one sample per interval
//! and no escape codes; `nadi write` prints nothing extra when stderr is not a terminal and a
//! progress line and summary when it is, and `stats --watch` redraws in place there (both
//! driven through a pty by `script`); `--log-format json` makes every log line of a server and
//! of a client a JSON object, with the control-plane spans named in them; `nadi bench
//! --consumers` measures every event end to end.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use nadi_tests::{Standalone, cli_code, json_out, nadi_bin, ok};
use serde_json::Value;

const EVENTS: u64 = 3_000;
/// Payload bytes of every event (the line without its newline).
const SIZE: u64 = 100;
/// What the store counts per event: an 8-byte header, then the payload.
const FRAMED: u64 = nadi_proto::framing::EVENT_HEADER_LEN as u64 + SIZE;

/// `EVENTS` lines of exactly `SIZE` bytes each.
fn lines() -> Vec<u8> {
    let mut s = String::new();
    for i in 0..EVENTS {
        let head = format!("event-{i:08}-");
        s.push_str(&head);
        s.push_str(&"x".repeat(SIZE as usize - head.len()));
        s.push('\n');
    }
    s.into_bytes()
}

/// Runs `args` until `done` holds for its JSON output, for at most 20 s.
fn poll_json(s: &Standalone, args: &[&str], what: &str, done: impl Fn(&Value) -> bool) -> Value {
    let started = Instant::now();
    loop {
        let v = json_out(&s.cli(args));
        if done(&v) {
            return v;
        }
        assert!(started.elapsed() < Duration::from_secs(20), "{what}: still {v}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn sum(v: &Value, field: &str) -> u64 {
    v["segments"].as_array().expect("segments").iter().map(|s| s[field].as_u64().expect(field)).sum()
}

#[test]
fn stats_count_what_was_written_and_group_lag_drains() {
    let dir = tempfile::tempdir().unwrap();
    let s = Standalone::start(dir.path());
    ok(&s.cli(&["scope", "create", "ops"]));
    ok(&s.cli(&["stream", "create", "ops/s", "--segments", "3"]));

    // Not a terminal: stdout says what it always said, stderr stays empty (no progress line,
    // no summary, no escape codes).
    let out = s.cli_stdin(&["write", "ops/s"], &lines());
    assert_eq!(ok(&out), format!("wrote {EVENTS} events to ops/s\n"));
    assert!(out.stderr.is_empty(), "nothing on stderr without a terminal: {:?}", String::from_utf8_lossy(&out.stderr));

    // Every written byte and event is in the stats: sums over the segments.
    let v = json_out(&s.cli(&["stream", "stats", "ops/s", "--json", "--interval", "0.2"]));
    let segs = v["segments"].as_array().unwrap();
    assert_eq!(segs.len(), 3, "{v}");
    assert_eq!(sum(&v, "length"), EVENTS * FRAMED, "{v}");
    assert_eq!(sum(&v, "size_bytes"), EVENTS * FRAMED, "{v}");
    assert_eq!(sum(&v, "writer_events"), EVENTS, "{v}");
    assert_eq!(v["total"]["length"].as_u64(), Some(EVENTS * FRAMED));
    assert_eq!(v["total"]["writer_events"].as_u64(), Some(EVENTS));
    assert!(segs.iter().all(|g| g["state"] == "open" && g["head_offset"] == 0), "{v}");
    // Each segment's bytes are in Tier-1 or Tier-2, never both, never neither.
    for g in segs {
        let tiers = g["tier1_bytes"].as_u64().unwrap() + g["tier2_bytes"].as_u64().unwrap();
        assert_eq!(Some(tiers), g["size_bytes"].as_u64(), "{g}");
    }
    // Nothing was written between the two samples.
    assert_eq!(v["total"]["bytes_per_sec"].as_f64(), Some(0.0), "{v}");
    let mut ranges: Vec<(f64, f64)> =
        segs.iter().map(|g| (g["key_range"][0].as_f64().unwrap(), g["key_range"][1].as_f64().unwrap())).collect();
    ranges.sort_by(|a, b| a.0.total_cmp(&b.0));
    assert_eq!((ranges[0].0, ranges[2].1), (0.0, 1.0), "the key ranges cover [0, 1): {ranges:?}");

    // The table names every segment; unknown names are typed errors.
    let table = ok(&s.cli(&["stream", "stats", "ops/s", "--interval", "0"]));
    assert!(table.contains("SEGMENT") && table.lines().count() == 5, "{table}");
    assert_eq!(cli_code(&s.cli(&["stream", "stats", "ops/nope"])), "NOT_FOUND_STREAM");
    assert_eq!(cli_code(&s.cli(&["reader-group", "stats", "ops/nope"])), "NOT_FOUND_READER_GROUP");

    // --watch without a terminal: one sample per interval, one JSON document per line, no
    // escape codes; the table likewise.
    let out = s.cli(&["stream", "stats", "ops/s", "--watch", "0.1", "--count", "3", "--json"]);
    let text = ok(&out);
    assert!(!text.contains('\x1b'), "no escape codes off a terminal: {text:?}");
    let samples: Vec<Value> = text.lines().map(|l| serde_json::from_str(l).expect("one JSON object a line")).collect();
    assert_eq!(samples.len(), 3, "{text}");
    assert!(samples.iter().all(|v| v["total"]["length"].as_u64() == Some(EVENTS * FRAMED)));
    let text = ok(&s.cli(&["stream", "stats", "ops/s", "--watch", "0.1", "--count", "2"]));
    assert!(!text.contains('\x1b'), "{text:?}");
    assert_eq!(text.matches("SEGMENT").count(), 2, "{text}");

    // A group from the head lags by everything written, then by nothing once drained.
    ok(&s.cli(&["reader-group", "create", "ops/g", "--stream", "s"]));
    let v = poll_json(&s, &["reader-group", "stats", "ops/g", "--json"], "lag of a new group", |v| {
        v["lag_bytes"].as_u64() == Some(EVENTS * FRAMED)
    });
    assert_eq!(v["unassigned"].as_array().map(Vec::len), Some(3), "{v}");
    assert_eq!(v["unknown_lag_segments"].as_u64(), Some(0), "{v}");
    let max = EVENTS.to_string();
    let read = ok(&s.cli(&["read", "ops/s", "--group", "g", "--max", &max, "--idle-timeout", "10"]));
    assert_eq!(read.lines().count() as u64, EVENTS);
    let v = poll_json(&s, &["reader-group", "stats", "ops/g", "--json"], "lag after draining", |v| {
        v["lag_bytes"].as_u64() == Some(0)
    });
    let segments: Vec<&Value> = v["readers"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|r| r["segments"].as_array().unwrap())
        .chain(v["unassigned"].as_array().unwrap())
        .collect();
    assert_eq!(segments.iter().map(|g| g["position"].as_u64().unwrap()).sum::<u64>(), EVENTS * FRAMED, "{v}");
    assert!(ok(&s.cli(&["reader-group", "stats", "ops/g"])).contains("lag 0 B"));
}

/// `script` from util-linux runs a command on a pty and copies what it prints.
fn script_available() -> bool {
    Command::new("script").arg("--version").output().is_ok_and(|o| o.status.success())
}

#[test]
fn write_shows_progress_and_a_summary_on_a_terminal() {
    if !script_available() {
        eprintln!("skipped: no `script` (util-linux) to run nadi write on a pty");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let s = Standalone::start(dir.path());
    ok(&s.cli(&["scope", "create", "tty"]));
    ok(&s.cli(&["stream", "create", "tty/s"]));
    let input = dir.path().join("lines");
    std::fs::write(&input, lines()).unwrap();
    let cmd = format!("{} --controller {} write tty/s < {}", nadi_bin().display(), s.controller_url, input.display());
    let out = Command::new("script")
        .args(["-qec", &cmd, "/dev/null"])
        .env("NADI_LOG", "error")
        .stdin(Stdio::null())
        .output()
        .expect("run script");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    // The first progress line comes after 64 events, redrawn in place.
    assert!(text.contains("\r\x1b[2Kwrote 64 events, "), "a progress line: {text:?}");
    assert!(text.contains(&format!("wrote {EVENTS} events, {} bytes in ", EVENTS * SIZE)), "a summary line: {text:?}");
    assert!(text.contains(&format!("wrote {EVENTS} events to tty/s")), "{text:?}");

    // `stream stats --watch` on a terminal redraws its table in place: up over its 3 lines
    // (summary, header, one segment), clear, draw again.
    let cmd =
        format!("{} --controller {} stream stats tty/s --watch 0.1 --count 2", nadi_bin().display(), s.controller_url);
    let out = Command::new("script").args(["-qec", &cmd, "/dev/null"]).stdin(Stdio::null()).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert_eq!(text.matches("\x1b[3A\r\x1b[J").count(), 1, "one redraw of the table: {text:?}");
    assert_eq!(text.matches("SEGMENT").count(), 2, "{text:?}");
}

/// Every line of `text` parses as a JSON object with a level and a message; returns them.
fn json_lines(text: &str) -> Vec<Value> {
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let v: Value = serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l:?}"));
            assert!(v["level"].is_string() && v["message"].is_string(), "level and message: {l}");
            v
        })
        .collect()
}

/// Whether a log line happened in (or closes) the span `name`, with `field` = `value`.
fn in_span(v: &Value, name: &str, field: &str, value: &str) -> bool {
    v["span"]["name"] == name && v["span"][field] == value
}

#[test]
fn log_format_json_makes_every_line_json_with_control_plane_spans() {
    let dir = tempfile::tempdir().unwrap();
    let filter = "info,nadi_controller=debug,nadi_client=debug,nadi_server=debug,openraft=warn";
    let mut server = Standalone::command(dir.path(), &["--log-format", "json"])
        .env("NADI_LOG", filter)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn nadi standalone");
    let mut stderr = BufReader::new(server.stderr.take().unwrap());
    let mut log = String::new();
    // The ready line is a JSON object too; its message is the usual line.
    let ready = loop {
        let mut line = String::new();
        assert!(stderr.read_line(&mut line).unwrap() > 0, "exited before ready: {log}");
        log.push_str(&line);
        let v: Value = serde_json::from_str(&line).unwrap_or_else(|e| panic!("not JSON ({e}): {line:?}"));
        if let Some(m) = v["message"].as_str().filter(|m| m.starts_with("nadi standalone ready:")) {
            break m.to_owned();
        }
    };
    let controller = ready.split_whitespace().find(|w| w.starts_with("http://")).unwrap().trim_end_matches(',');
    // The client: a global flag, after the command's name.
    let out = Command::new(nadi_bin())
        .args(["--controller", controller, "scope", "create", "logs", "--log-format", "json"])
        .env("NADI_LOG", filter)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let client = json_lines(&String::from_utf8_lossy(&out.stderr));
    assert!(
        client.iter().any(|v| in_span(v, "client.create_scope", "scope", "logs")),
        "the client's control-plane span: {client:?}"
    );
    // The server: stop it, then every line it printed is JSON, its own lines too.
    // SAFETY: sending a signal to our own child process by pid.
    unsafe { libc::kill(server.id() as i32, libc::SIGINT) };
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut stderr, &mut rest).unwrap();
    assert!(server.wait().unwrap().success());
    log.push_str(&rest);
    let lines = json_lines(&log);
    assert!(lines.len() > 2, "{log}");
    assert!(
        lines.iter().any(|v| in_span(v, "controller.create_scope", "scope", "logs")),
        "the controller's span for the call: {log}"
    );
    assert!(lines.iter().any(|v| v["message"] == "nadi standalone: shutting down"), "{log}");
}

/// `nadi bench --consumers N` measures end to end (write → delivery to a tail reader) for every
/// event it wrote, once per consumer, and reports it apart from the append latency.
#[test]
fn bench_with_consumers_measures_every_event_end_to_end() {
    let dir = tempfile::tempdir().unwrap();
    let s = Standalone::start(dir.path());
    let args = ["bench", "--stream", "b/e2e", "--segments", "4", "--consumers", "2", "--rate", "2000"];
    let r = json_out(&s.cli(&[&args[..], &["--duration", "3", "--event-size", "64"]].concat()));
    let events = r["events"].as_u64().unwrap();
    assert!(events > 0, "{r}");
    assert_eq!(r["consumed_events"].as_u64(), Some(2 * events), "each consumer read every event: {r}");
    assert_eq!(r["end_to_end_events"].as_u64(), Some(2 * events), "each delivery measured: {r}");
    let (e2e, append) = (&r["end_to_end_ms"], &r["latency_ms"]);
    assert!(e2e["p50"].as_f64().unwrap() > 0.0 && e2e["max"].as_f64().unwrap() < 10_000.0, "{r}");
    assert!(append["p50"].as_f64().is_some(), "{r}");
    // Events shorter than the 8-byte stamp: no end-to-end figures, and no error.
    let r = json_out(&s.cli(&[&args[..], &["--duration", "1", "--event-size", "4"]].concat()));
    assert!(r.get("end_to_end_ms").is_none(), "{r}");
    s.stop();
}

/// `nadi bench --workload FILE` runs an OpenMessaging Benchmark workload: its topics as
/// streams, a subscription shared by several readers (a reader group), a backlog built before
/// they read and then drained; OMB's result fields, every message delivered.
#[test]
fn bench_runs_an_omb_workload_and_prints_its_fields() {
    let dir = tempfile::tempdir().unwrap();
    let s = Standalone::start(&dir.path().join("data"));
    let file = dir.path().join("w.yaml");
    std::fs::write(
        &file,
        "name: small test / 2 topics\ntopics: 2\npartitionsPerTopic: 2\nmessageSize: 64\n\
         subscriptionsPerTopic: 1\nconsumerPerSubscription: 2\nproducersPerTopic: 1\nproducerRate: 1000\n\
         consumerBacklogSizeGB: 0.00005\ntestDurationMinutes: 10\n",
    )
    .unwrap();
    let r = json_out(&s.cli(&["bench", "--workload", file.to_str().unwrap(), "--scale-to", "3"]));
    let messages = r["messages"].as_u64().unwrap();
    assert!(messages >= 2000, "about 1,000/s for 3 s: {r}");
    assert_eq!(r["workload"], "small test / 2 topics");
    assert_eq!(
        (r["topics"].as_u64(), r["partitions"].as_u64(), r["consumersPerTopic"].as_u64()),
        (Some(2), Some(2), Some(2))
    );
    for field in ["publishRate", "consumeRate", "aggregatedPublishLatency99pct", "aggregatedEndToEndLatency99pct"] {
        assert!(r[field].as_f64().is_some_and(|v| v > 0.0), "{field}: {r}");
    }
    // Scaled to 3 s of its 10 minutes: a 250-byte backlog per topic... at least one message.
    assert!(r["backlogDrainSeconds"].as_f64().is_some(), "the backlog was drained: {r}");
    let listed = ok(&s.cli(&["stream", "list", "omb"]));
    assert!(listed.contains("small-test---2-topics-0") && listed.contains("small-test---2-topics-1"), "{listed}");
    s.stop();
}
