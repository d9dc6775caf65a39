//! Seek by time (issue 22, acceptance 1), against the real binary on a controlled clock.
//!
//! The store's clock is the test's (`NADI_FAULT_CLOCK_FILE`): events are written in nine
//! phases 20 s apart (three minutes of stream time), with a split after the third phase and a
//! merge after the sixth. Every event of phase k was acknowledged while the clock read
//! `T0 + 20 s × k`, so its append time is exactly that. For 20 random times T,
//! `nadi read --from-time T` must return exactly the events of the phases at or after T (none
//! earlier, none missed, each once, per-key order kept), first once everything has moved to
//! Tier-2 and again after a `kill -9` and a restart. Bad times get typed errors.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use nadi_tests::{Standalone, cli_code, json_out, ok};
use rand::Rng;

const PHASES: u64 = 9;
const STEP_MS: u64 = 20_000;
const PER_PHASE: u64 = 60;
const KEYS: u64 = 12;

/// What was acknowledged: per phase, the `key:seq` payloads written in it.
struct Written {
    t0: u64,
    phases: Vec<Vec<String>>,
}

impl Written {
    /// The multiset of payloads appended at or after `t` (every phase's time is exact).
    fn expected_from(&self, t: u64) -> HashMap<String, u32> {
        let mut m = HashMap::new();
        for (k, phase) in self.phases.iter().enumerate() {
            if self.t0 + STEP_MS * k as u64 >= t {
                for p in phase {
                    *m.entry(p.clone()).or_default() += 1;
                }
            }
        }
        m
    }
}

fn segment_ids(v: &serde_json::Value) -> Vec<u64> {
    v["segments"].as_array().unwrap().iter().map(|s| s["id"].as_u64().unwrap()).collect()
}

/// Reads from `t` with the CLI and checks the events against what was acknowledged.
fn check_read_from(s: &Standalone, w: &Written, t: u64, what: &str) {
    let out = ok(&s.cli(&["read", "demo/times", "--from-time", &t.to_string(), "--idle-timeout", "1.5"]));
    let mut got: HashMap<String, u32> = HashMap::new();
    let mut last: HashMap<&str, u64> = HashMap::new();
    for line in out.lines() {
        let (key, seq) = line.split_once(':').unwrap_or_else(|| panic!("{what}: odd line {line:?}"));
        let seq: u64 = seq.parse().unwrap();
        if let Some(prev) = last.insert(key, seq) {
            assert!(prev < seq, "{what}: from {t}: key {key}: {seq} read after {prev}");
        }
        *got.entry(line.to_owned()).or_default() += 1;
    }
    let want = w.expected_from(t);
    if got != want {
        let extra: Vec<_> = got.iter().filter(|(k, n)| want.get(*k) != Some(n)).map(|(k, _)| k).take(5).collect();
        let missed: Vec<_> = want.iter().filter(|(k, n)| got.get(*k) != Some(n)).map(|(k, _)| k).take(5).collect();
        panic!(
            "{what}: from {t} (T0 + {} ms): read {} events, expected {}; wrong or extra {extra:?}, missed {missed:?}",
            t as i64 - w.t0 as i64,
            got.values().sum::<u32>(),
            want.values().sum::<u32>()
        );
    }
}

fn random_times(w: &Written, n: usize) -> Vec<u64> {
    // The clock stands at the last phase: later times are in the future.
    let last = w.t0 + STEP_MS * (PHASES - 1);
    let mut rng = rand::rng();
    // The edges (the first phase, a phase's exact time, just after one, the last phase) and
    // random times in between.
    let mut ts = vec![w.t0, w.t0 + 3 * STEP_MS, w.t0 + 3 * STEP_MS + 1, last];
    while ts.len() < n {
        ts.push(rng.random_range(w.t0..=last));
    }
    ts
}

#[test]
fn read_from_a_time_returns_exactly_the_events_appended_at_or_after_it() {
    let dir = tempfile::tempdir().unwrap();
    let clock = dir.path().join("clock");
    // Whole seconds, a little ahead of the real clock (the stream is created before T0).
    let t0 = (nadi_proto::clock::system_ms() / 1000 + 2) * 1000;
    nadi_tests::set_clock(&clock, t0);
    let env = [(nadi_proto::clock::FAULT_CLOCK_ENV, clock.to_str().unwrap())];
    let flags = ["--tier2-max-age", "1s", "--tier2-chunk-size", "1MiB"];
    let s = Standalone::start_with_env(dir.path(), &flags, &env);
    ok(&s.cli(&["scope", "create", "demo"]));
    ok(&s.cli(&["stream", "create", "demo/times", "--segments", "2"]));

    let mut w = Written { t0, phases: Vec::new() };
    let mut seq: HashMap<u64, u64> = HashMap::new();
    for k in 0..PHASES {
        nadi_tests::set_clock(&clock, t0 + STEP_MS * k);
        let mut lines = String::new();
        let mut phase = Vec::new();
        for i in 0..PER_PHASE {
            let key = (i * 7 + k) % KEYS;
            let n = seq.entry(key).or_default();
            // `--key-sep` routes by the key; the whole line is the payload.
            lines.push_str(&format!("k{key}\tk{key}:{n}\n"));
            phase.push(format!("k{key}\tk{key}:{n}"));
            *n += 1;
        }
        let out = ok(&s.cli_stdin(&["write", "demo/times", "--key-sep", "\t"], lines.as_bytes()));
        assert!(out.contains(&format!("wrote {PER_PHASE} events")), "{out}");
        w.phases.push(phase);
        let info = json_out(&s.cli(&["stream", "info", "demo/times", "--json"]));
        let ids = segment_ids(&info);
        if k == 2 {
            ok(&s.cli(&["stream", "scale", "demo/times", "--split", &ids[0].to_string()]));
        }
        if k == 5 {
            // The right half of the split and the old second segment.
            let merge = format!("{},{}", ids[1], ids[2]);
            ok(&s.cli(&["stream", "scale", "demo/times", "--merge", &merge]));
        }
    }
    let history = json_out(&s.cli(&["stream", "history", "demo/times", "--json"]));
    assert_eq!(history["epochs"].as_array().map(Vec::len), Some(3), "a split and a merge: {history}");

    // Bad times are refused with typed errors, and change nothing.
    let future = (t0 + STEP_MS * PHASES + 60_000).to_string();
    assert_eq!(cli_code(&s.cli(&["read", "demo/times", "--from-time", &future])), "TIME_IN_FUTURE");
    assert_eq!(cli_code(&s.cli(&["stream", "cut", "demo/times", "--at", &future])), "TIME_IN_FUTURE");
    assert_eq!(cli_code(&s.cli(&["stream", "cut", "demo/times", "--at", "1000"])), "TIME_BEFORE_STREAM");
    let bad = s.cli(&["read", "demo/times", "--from-time", "yesterday-ish"]);
    assert!(!bad.status.success() && String::from_utf8_lossy(&bad.stderr).contains("yesterday-ish"), "{bad:?}");

    // Everything moves to Tier-2 (the clock stands still: move by age uses the real one).
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let stats = json_out(&s.cli(&["stream", "stats", "demo/times", "--json"]));
        let total = &stats["total"];
        if total["tier1_bytes"] == 0 && total["tier2_bytes"].as_u64() > Some(0) {
            break;
        }
        assert!(Instant::now() < deadline, "data did not move to Tier-2: {total}");
        std::thread::sleep(Duration::from_millis(300));
    }
    let times = random_times(&w, 20);
    for &t in &times {
        check_read_from(&s, &w, t, "from Tier-2");
    }

    // After a crash and a restart the time index is recovered.
    s.kill9();
    let s = Standalone::start_with_env(dir.path(), &flags, &env);
    for &t in &random_times(&w, 20) {
        check_read_from(&s, &w, t, "after a restart");
    }
    s.stop();
}

/// The same on the real clock: bursts of events about a second apart, with a split and a
/// merge in between. An event's append time
/// lies between the start of the second its write began in and its acknowledgement, so for a
/// time T every burst acknowledged before T must be absent and every burst begun in a second
/// at or after T present; a burst that straddles T may go either way, but whole or as a suffix
/// of each key's events, never with a gap.
#[test]
fn read_from_a_time_on_the_real_clock() {
    let dir = tempfile::tempdir().unwrap();
    let s = Standalone::start(dir.path());
    ok(&s.cli(&["scope", "create", "demo"]));
    ok(&s.cli(&["stream", "create", "demo/times", "--segments", "3"]));
    let now = nadi_proto::clock::system_ms;
    // Per burst: (began, acknowledged, payloads).
    let mut bursts: Vec<(u64, u64, Vec<String>)> = Vec::new();
    let mut seq: HashMap<u64, u64> = HashMap::new();
    for b in 0..6u64 {
        let mut lines = String::new();
        let mut payloads = Vec::new();
        for i in 0..40u64 {
            let key = (i + b) % KEYS;
            let n = seq.entry(key).or_default();
            lines.push_str(&format!("k{key}\tk{key}:{n}\n"));
            payloads.push(format!("k{key}\tk{key}:{n}"));
            *n += 1;
        }
        let began = now();
        ok(&s.cli_stdin(&["write", "demo/times", "--key-sep", "\t"], lines.as_bytes()));
        bursts.push((began, now(), payloads));
        // A split after the second burst and a merge after the fourth.
        let ids = segment_ids(&json_out(&s.cli(&["stream", "info", "demo/times", "--json"])));
        if b == 1 {
            ok(&s.cli(&["stream", "scale", "demo/times", "--split", &ids[0].to_string()]));
        }
        if b == 3 {
            ok(&s.cli(&["stream", "scale", "demo/times", "--merge", &format!("{},{}", ids[1], ids[2])]));
        }
        // Spaces the bursts out in time (what is checked does not depend on how long).
        std::thread::sleep(Duration::from_millis(1100));
    }
    let (first, last) = (bursts[0].0, bursts.last().unwrap().1);
    let mut rng = rand::rng();
    for _ in 0..10 {
        let t = rng.random_range(first..=last);
        let out = ok(&s.cli(&["read", "demo/times", "--from-time", &t.to_string(), "--idle-timeout", "1.5"]));
        let got: Vec<&str> = out.lines().collect();
        let mut count: HashMap<&str, u32> = HashMap::new();
        for p in &got {
            *count.entry(p).or_default() += 1;
        }
        assert!(count.values().all(|&n| n == 1), "from {t}: an event read twice");
        for (began, acked, payloads) in &bursts {
            let read = payloads.iter().filter(|p| count.contains_key(p.as_str())).count();
            if *acked < t {
                assert_eq!(read, 0, "from {t}: events acknowledged at {acked}, before it, were read");
            } else if began / 1000 * 1000 >= t {
                assert_eq!(read, payloads.len(), "from {t}: events written from {began} on were missed");
            }
        }
        // Whatever was read of each key is a suffix of what was written to it.
        let mut by_key: HashMap<&str, Vec<u64>> = HashMap::new();
        for p in &got {
            let (k, n) = p.split_once('\t').and_then(|(_, p)| p.split_once(':')).unwrap();
            by_key.entry(k).or_default().push(n.parse().unwrap());
        }
        for (k, ns) in by_key {
            let total = seq[&k[1..].parse::<u64>().unwrap()];
            let want: Vec<u64> = (total - ns.len() as u64..total).collect();
            assert_eq!(ns, want, "from {t}: key {k} read out of order or with a gap");
        }
    }
    s.stop();
}

/// `nadi stream truncate --before TIME` and `POST …/truncate {"before": TIME}` drop exactly the
/// events appended before TIME, across a split; bad times are refused and change nothing.
#[test]
fn truncate_before_a_time_drops_exactly_the_events_appended_before_it() {
    let dir = tempfile::tempdir().unwrap();
    let clock = dir.path().join("clock");
    let t0 = (nadi_proto::clock::system_ms() / 1000 + 2) * 1000;
    nadi_tests::set_clock(&clock, t0);
    let env = [(nadi_proto::clock::FAULT_CLOCK_ENV, clock.to_str().unwrap())];
    let s = Standalone::start_with_env(dir.path(), &[], &env);
    ok(&s.cli(&["scope", "create", "demo"]));
    let names = ["demo/a", "demo/b"];
    for name in names {
        ok(&s.cli(&["stream", "create", name, "--segments", "2"]));
    }
    // Three phases 20 s apart on both streams, a split after the first.
    let mut phases: Vec<Vec<String>> = Vec::new();
    for k in 0..3u64 {
        nadi_tests::set_clock(&clock, t0 + STEP_MS * k);
        let phase: Vec<String> = (0..40).map(|i| format!("k{}\tp{k}:{i}", i % 6)).collect();
        let input = phase.iter().map(|l| format!("{l}\n")).collect::<String>();
        for name in names {
            ok(&s.cli_stdin(&["write", name, "--key-sep", "\t"], input.as_bytes()));
            if k == 0 {
                let first = segment_ids(&json_out(&s.cli(&["stream", "info", name, "--json"])))[0];
                ok(&s.cli(&["stream", "scale", name, "--split", &first.to_string()]));
            }
        }
        phases.push(phase);
    }
    let read_all = |name: &str| -> Vec<String> {
        let out = ok(&s.cli(&["read", name, "--from-start", "--idle-timeout", "1"]));
        let mut lines: Vec<String> = out.lines().map(str::to_owned).collect();
        lines.sort();
        lines
    };
    let expect = |from: usize| -> Vec<String> {
        let mut lines: Vec<String> = phases[from..].iter().flatten().cloned().collect();
        lines.sort();
        lines
    };
    assert_eq!(read_all("demo/a"), expect(0));

    // Refused, and nothing changes: a time ahead of the clock, a malformed one, two kinds of cut.
    let future = (t0 + STEP_MS * 2 + 60_000).to_string();
    assert_eq!(cli_code(&s.cli(&["stream", "truncate", "demo/a", "--before", &future])), "TIME_IN_FUTURE");
    let bad = s.cli(&["stream", "truncate", "demo/a", "--before", "yesterday-ish"]);
    assert!(!bad.status.success() && String::from_utf8_lossy(&bad.stderr).contains("yesterday-ish"));
    let both = s.cli(&["stream", "truncate", "demo/a", "--at-tail", "--before", &t0.to_string()]);
    assert!(!both.status.success(), "--at-tail with --before is refused");
    assert_eq!(read_all("demo/a"), expect(0));

    // The CLI: before phase 1's time drops phase 0 (in the split segment's predecessor too).
    let out = json_out(&s.cli(&["stream", "truncate", "demo/a", "--before", &(t0 + STEP_MS).to_string(), "--json"]));
    assert!(out["deleted_segments"].as_u64().unwrap() >= 1, "{out}");
    assert_eq!(read_all("demo/a"), expect(1));

    // The HTTP API: bad bodies are 400 and change nothing; before phase 2 leaves phase 2.
    let path = "/v1/scopes/demo/streams/b/truncate";
    let (code, body) = nadi_tests::http(&s.http_addr, "POST", path, Some(r#"{"before": "soon"}"#));
    assert_eq!((code, body["code"].as_str()), (400, Some("INVALID_ARGUMENT")), "{body}");
    let (code, _) = nadi_tests::http(&s.http_addr, "POST", path, Some(&format!(r#"{{"before": "{future}"}}"#)));
    assert_eq!(code, 400);
    let (code, _) = nadi_tests::http(&s.http_addr, "POST", path, Some(r#"{"cut": [], "before": null}"#));
    assert_eq!(code, 400, "neither a cut nor a time");
    assert_eq!(read_all("demo/b"), expect(0));
    let rfc = {
        let secs = (t0 + STEP_MS * 2) / 1000;
        let out = std::process::Command::new("date").args(["-u", "-d", &format!("@{secs}"), "+%Y-%m-%dT%H:%M:%SZ"]).output();
        String::from_utf8(out.unwrap().stdout).unwrap().trim().to_owned()
    };
    let (code, body) = nadi_tests::http(&s.http_addr, "POST", path, Some(&format!(r#"{{"before": "{rfc}"}}"#)));
    assert_eq!(code, 200, "{body}");
    assert_eq!(read_all("demo/b"), expect(2));
}
