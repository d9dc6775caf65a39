//! Reader groups against the real binary: several `nadi read --group` processes share a stream
//! and together print every event exactly once; checkpoint, kill every reader, reset, and
//! reading resumes exactly at the checkpoint positions; a reader that stops syncing is declared
//! offline by the liveness timeout and its segments move on.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use nadi_tests::{Standalone, json_out, keyed_lines, nadi_bin, ok};
use serde_json::Value;

/// A background `nadi read --group …` whose stdout lines are collected as they come.
struct GroupReader {
    child: Child,
    lines: Arc<Mutex<Vec<String>>>,
    stderr: Arc<Mutex<String>>,
}

impl GroupReader {
    fn start(s: &Standalone, args: &[&str]) -> GroupReader {
        let mut child = Command::new(nadi_bin())
            .arg("--controller")
            .arg(&s.controller_url)
            .arg("read")
            .args(args)
            .env("NADI_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn nadi read");
        let lines = Arc::new(Mutex::new(Vec::new()));
        let stderr = Arc::new(Mutex::new(String::new()));
        let (out, err) = (child.stdout.take().unwrap(), child.stderr.take().unwrap());
        let l2 = lines.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines() {
                let Ok(line) = line else { break };
                l2.lock().unwrap().push(line);
            }
        });
        let e2 = stderr.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(err).lines() {
                let Ok(line) = line else { break };
                e2.lock().unwrap().push_str(&line);
            }
        });
        GroupReader { child, lines, stderr }
    }

    fn lines(&self) -> Vec<String> {
        self.lines.lock().unwrap().clone()
    }

    /// Waits (at most `timeout`) for the process to exit on its own; asserts success.
    fn wait(mut self, timeout: Duration) -> Vec<String> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                // Let the stdout thread drain.
                std::thread::sleep(Duration::from_millis(100));
                assert!(status.success(), "nadi read failed: {}", self.stderr.lock().unwrap());
                return self.lines();
            }
            assert!(Instant::now() < deadline, "nadi read did not exit in {timeout:?}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn kill9(mut self) -> Vec<String> {
        let _ = self.child.kill();
        let _ = self.child.wait();
        std::thread::sleep(Duration::from_millis(100));
        self.lines()
    }
}

impl Drop for GroupReader {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Polls `cond` every 100 ms for at most `timeout`; panics with `what` if it never holds.
fn wait_until(timeout: Duration, what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out after {timeout:?} waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn group_info(s: &Standalone, group: &str) -> Value {
    json_out(&s.cli(&["reader-group", "info", group, "--json"]))
}

/// Like [`group_info`], `None` while the group does not exist yet.
fn try_group_info(s: &Standalone, group: &str) -> Option<Value> {
    let out = s.cli(&["reader-group", "info", group, "--json"]);
    out.status.success().then(|| json_out(&out))
}

/// Segments held per reader id.
fn holdings(info: &Value) -> BTreeMap<String, usize> {
    info["readers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (r["reader_id"].as_str().unwrap().to_owned(), r["segments"].as_array().unwrap().len()))
        .collect()
}

#[test]
fn two_group_readers_print_every_event_exactly_once() {
    let dir = tempfile::tempdir().unwrap();
    let s = Standalone::start(dir.path());
    ok(&s.cli(&["scope", "create", "rg"]));
    ok(&s.cli(&["stream", "create", "rg/four", "--segments", "4"]));
    let args = ["rg/four", "--group", "g", "--from-start", "--idle-timeout", "4"];
    let a = GroupReader::start(&s, &args);
    let b = GroupReader::start(&s, &args);
    // Both are members with two segments each before anything is written.
    wait_until(Duration::from_secs(20), "two readers with two segments each", || {
        try_group_info(&s, "rg/g").is_some_and(|i| holdings(&i).values().cloned().collect::<Vec<_>>() == vec![2, 2])
    });
    let n = 4000;
    ok(&s.cli_stdin(&["write", "rg/four", "--key-sep", "\t"], &keyed_lines(n, 37)));
    let (a, b) = (a.wait(Duration::from_secs(60)), b.wait(Duration::from_secs(60)));
    assert!(!a.is_empty() && !b.is_empty(), "both readers got work: {} and {}", a.len(), b.len());
    let all = [a, b].concat().join("\n");
    nadi_tests::check_keyed_output(&all, n);
    // Both left: their segments are back, unassigned, at the end of what they printed.
    let info = group_info(&s, "rg/g");
    assert!(info["readers"].as_array().unwrap().is_empty(), "{info}");
    assert_eq!(info["lag"], 0, "{info}");
}

/// `STREAM/SEGMENT_ID@OFFSET<TAB>payload` → ((stream, segment), offset, payload).
fn parse_positioned(line: &str) -> ((String, u64), u64, String) {
    let (pos, payload) = line.split_once('\t').unwrap_or_else(|| panic!("malformed line {line:?}"));
    let (seg, off) = pos.split_once('@').unwrap();
    let (stream, id) = seg.rsplit_once('/').unwrap();
    ((stream.to_owned(), id.parse().unwrap()), off.parse().unwrap(), payload.to_owned())
}

#[test]
fn reset_to_a_checkpoint_resumes_exactly_at_its_positions() {
    let dir = tempfile::tempdir().unwrap();
    let s = Standalone::start(dir.path());
    ok(&s.cli(&["scope", "create", "rg"]));
    ok(&s.cli(&["stream", "create", "rg/cp", "--segments", "3"]));
    ok(&s.cli(&["reader-group", "create", "rg/g", "--stream", "cp", "--from", "head"]));
    let args = ["rg/cp", "--group", "g", "--with-position"];
    let readers = [GroupReader::start(&s, &args), GroupReader::start(&s, &args)];
    wait_until(Duration::from_secs(20), "two readers sharing three segments", || {
        let h = holdings(&group_info(&s, "rg/g"));
        h.len() == 2 && h.values().sum::<usize>() == 3
    });
    // A first batch, all of it read; then the checkpoint; then a second batch, read after it.
    let n1 = 3000;
    ok(&s.cli_stdin(&["write", "rg/cp", "--key-sep", "\t"], &keyed_lines(n1, 11)));
    let count =
        |rs: &[GroupReader]| rs.iter().map(|r| r.lines().iter().filter(|l| !l.starts_with('#')).count()).sum::<usize>();
    wait_until(Duration::from_secs(30), "the first batch to be read", || count(&readers) == n1 as usize);
    let cp = json_out(&s.cli(&["reader-group", "checkpoint", "rg/g", "cp1", "--wait", "30", "--json"]));
    assert_eq!(cp["complete"], true, "{cp}");
    let positions: BTreeMap<(String, u64), u64> = cp["positions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                (p["stream"].as_str().unwrap().to_owned(), p["segment_id"].as_u64().unwrap()),
                p["offset"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(positions.len(), 3, "{cp}");
    let more: Vec<u8> = (n1..n1 + 2000).map(|i| format!("key{}\t{i}\n", i % 11)).collect::<String>().into_bytes();
    ok(&s.cli_stdin(&["write", "rg/cp", "--key-sep", "\t"], &more));
    wait_until(Duration::from_secs(30), "part of the second batch to be read", || count(&readers) > n1 as usize + 500);
    // Kill every reader, mid-stream.
    let mut first_round: Vec<Vec<String>> = Vec::new();
    for r in readers {
        first_round.push(r.kill9());
    }
    // Every event printed before a reader's checkpoint marker is before the checkpoint position
    // of its segment, and every one after it at or after it.
    let mut all_events: BTreeMap<(String, u64), BTreeMap<u64, String>> = BTreeMap::new();
    for lines in &first_round {
        let mut after = false;
        for line in lines {
            if line == "#checkpoint cp1" {
                after = true;
                continue;
            }
            let (seg, off, payload) = parse_positioned(line);
            let cp_at = positions[&seg];
            assert_eq!(off >= cp_at, after, "event {payload} at {seg:?}@{off} vs checkpoint at {cp_at}");
            all_events.entry(seg).or_default().insert(off, payload);
        }
    }
    // Reset to the checkpoint and read again with fresh readers until idle.
    ok(&s.cli(&["reader-group", "reset", "rg/g", "--checkpoint", "cp1"]));
    let args = ["rg/cp", "--group", "g", "--with-position", "--idle-timeout", "4"];
    let again = [GroupReader::start(&s, &args), GroupReader::start(&s, &args)];
    let mut second: BTreeMap<(String, u64), Vec<(u64, String)>> = BTreeMap::new();
    for r in again {
        for line in r.wait(Duration::from_secs(60)) {
            if line.starts_with('#') {
                continue;
            }
            let (seg, off, payload) = parse_positioned(&line);
            second.entry(seg).or_default().push((off, payload));
        }
    }
    // Exactly the events from the checkpoint positions on: nothing before, nothing missing,
    // nothing twice; each segment's first event is exactly at its checkpoint position.
    let mut got = BTreeSet::new();
    for (seg, events) in &mut second {
        events.sort();
        assert_eq!(events[0].0, positions[seg], "segment {seg:?} resumed elsewhere");
        for (off, payload) in events.iter() {
            assert!(got.insert(payload.clone()), "{payload} read twice after the reset");
            assert!(*off >= positions[seg]);
        }
    }
    let expected: BTreeSet<String> = (n1..n1 + 2000).map(|i| format!("key{}\t{i}", i % 11)).collect();
    assert_eq!(got, expected, "after the reset the group reads exactly the events after the checkpoint");
    // And the first round read exactly the events before it (plus some after it).
    for (seg, events) in &all_events {
        for (off, payload) in events {
            if *off >= positions[seg] {
                assert!(expected.contains(payload));
            }
        }
    }
}

#[test]
fn a_reader_that_stops_syncing_is_declared_offline_and_its_segments_move_on() {
    let dir = tempfile::tempdir().unwrap();
    let s = Standalone::start_with(dir.path(), &["--reader-timeout", "2s"]);
    ok(&s.cli(&["scope", "create", "rg"]));
    ok(&s.cli(&["stream", "create", "rg/live", "--segments", "2"]));
    ok(&s.cli(&["reader-group", "create", "rg/g", "--stream", "live"]));
    let victim = GroupReader::start(&s, &["rg/live", "--group", "g", "--reader-id", "victim"]);
    wait_until(Duration::from_secs(20), "the victim to own both segments", || {
        holdings(&group_info(&s, "rg/g")).get("victim") == Some(&2)
    });
    ok(&s.cli_stdin(&["write", "rg/live", "--key-sep", "\t"], &keyed_lines(500, 5)));
    wait_until(Duration::from_secs(20), "the victim to read and sync everything", || {
        victim.lines().len() == 500 && group_info(&s, "rg/g")["lag"] == 0
    });
    let first = victim.kill9();
    // Nobody declares it offline by hand: the leader's liveness timeout does.
    wait_until(Duration::from_secs(20), "the dead reader to be declared offline", || {
        group_info(&s, "rg/g")["readers"].as_array().unwrap().is_empty()
    });
    ok(&s.cli_stdin(
        &["write", "rg/live", "--key-sep", "\t"],
        &(500..800).map(|i| format!("key{}\t{i}\n", i % 5)).collect::<String>().into_bytes(),
    ));
    let next =
        GroupReader::start(&s, &["rg/live", "--group", "g", "--idle-timeout", "3"]).wait(Duration::from_secs(60));
    nadi_tests::check_keyed_output(&[first, next].concat().join("\n"), 800);
}

/// A CLI command, its HTTP twin (method, path, body), the HTTP status and the stable code.
type Refusal<'a> = (&'a [&'a str], (&'a str, &'a str, Option<&'a str>), u16, &'a str);

#[test]
fn reader_group_cli_and_http_twins_agree_and_bad_input_changes_nothing() {
    use nadi_tests::{cli_code, http};
    let dir = tempfile::tempdir().unwrap();
    let s = Standalone::start(dir.path());
    let h = s.http_addr.clone();
    ok(&s.cli(&["scope", "create", "rg"]));
    ok(&s.cli(&["stream", "create", "rg/a", "--segments", "2"]));
    ok(&s.cli(&["stream", "create", "rg/b"]));
    ok(&s.cli_stdin(&["write", "rg/a"], b"one\ntwo\nthree\n"));
    // Created via CLI (from the head) and via HTTP (from the tail): each side sees the same.
    let cli = json_out(&s.cli(&["reader-group", "create", "rg/g1", "--stream", "a", "--stream", "b", "--json"]));
    assert_eq!(http(&h, "GET", "/v1/scopes/rg/reader-groups/g1", None), (200, cli.clone()));
    assert_eq!(cli["unassigned"].as_array().unwrap().len(), 3, "{cli}");
    assert!(cli["lag"].as_u64().unwrap() > 0, "from the head, the written events are lag: {cli}");
    let (status, created) =
        http(&h, "POST", "/v1/scopes/rg/reader-groups", Some(r#"{"group":"g2","streams":["a"],"from":"tail"}"#));
    assert_eq!(status, 201, "{created}");
    assert_eq!(created["lag"], 0, "from the tail nothing is behind: {created}");
    assert_eq!(json_out(&s.cli(&["reader-group", "info", "rg/g2", "--json"])), created);
    let list = json_out(&s.cli(&["reader-group", "list", "rg", "--json"]));
    assert_eq!(list, serde_json::json!({"scope": "rg", "groups": ["g1", "g2"]}));
    assert_eq!(http(&h, "GET", "/v1/scopes/rg/reader-groups", None), (200, list));
    // A checkpoint of a group without readers completes at once, at the group's positions.
    let (status, cp) = http(&h, "POST", "/v1/scopes/rg/reader-groups/g2/checkpoints", Some(r#"{"name":"c1"}"#));
    assert_eq!((status, cp["complete"].clone()), (201, serde_json::json!(true)), "{cp}");
    assert_eq!(http(&h, "GET", "/v1/scopes/rg/reader-groups/g2/checkpoints/c1", None), (200, cp.clone()));
    // Reset via HTTP to a cut, then via CLI to the checkpoint.
    let seg = cp["positions"][0]["segment_id"].as_u64().unwrap();
    let other = cp["positions"][1]["segment_id"].as_u64().unwrap();
    let body = format!(r#"{{"cut":"a/{seg}=0,a/{other}=0"}}"#);
    let (status, reset) = http(&h, "POST", "/v1/scopes/rg/reader-groups/g2/reset", Some(&body));
    assert_eq!(status, 200, "{reset}");
    assert_eq!(reset["generation"], 1);
    let back = json_out(&s.cli(&["reader-group", "reset", "rg/g2", "--checkpoint", "c1", "--json"]));
    assert_eq!(back["generation"], 2);
    assert_eq!(back["lag"], 0);

    // Bad input: the same code on both sides, and nothing changes.
    let before = (
        http(&h, "GET", "/v1/scopes/rg/reader-groups/g1", None),
        http(&h, "GET", "/v1/scopes/rg/reader-groups/g2", None),
    );
    let cases: [Refusal; 6] = [
        (
            &["reader-group", "info", "rg/nope"],
            ("GET", "/v1/scopes/rg/reader-groups/nope", None),
            404,
            "NOT_FOUND_READER_GROUP",
        ),
        (
            &["reader-group", "create", "rg/g1", "--stream", "a"],
            ("POST", "/v1/scopes/rg/reader-groups", Some(r#"{"group":"g1","streams":["a"]}"#)),
            409,
            "ALREADY_EXISTS_READER_GROUP",
        ),
        (
            &["reader-group", "create", "rg/g3", "--stream", "zz"],
            ("POST", "/v1/scopes/rg/reader-groups", Some(r#"{"group":"g3","streams":["zz"]}"#)),
            404,
            "NOT_FOUND_STREAM",
        ),
        (
            &["reader-group", "reset", "rg/g2", "--checkpoint", "nope"],
            ("POST", "/v1/scopes/rg/reader-groups/g2/reset", Some(r#"{"checkpoint":"nope"}"#)),
            404,
            "NOT_FOUND_CHECKPOINT",
        ),
        (
            &["reader-group", "checkpoint", "rg/g2", "c1"],
            ("POST", "/v1/scopes/rg/reader-groups/g2/checkpoints", Some(r#"{"name":"c1"}"#)),
            409,
            "ALREADY_EXISTS_CHECKPOINT",
        ),
        (
            &["reader-group", "offline", "rg/g1", "ghost"],
            ("POST", "/v1/scopes/rg/reader-groups/g1/readers/ghost/offline", None),
            404,
            "NOT_FOUND_READER",
        ),
    ];
    for (cli_args, (method, path, body), status, code) in cases {
        assert_eq!(cli_code(&s.cli(cli_args)), code, "CLI {cli_args:?}");
        let (got, body) = http(&h, method, path, body);
        assert_eq!((got, body["code"].as_str().unwrap_or_default()), (status, code), "HTTP {path}: {body}");
    }
    let after = (
        http(&h, "GET", "/v1/scopes/rg/reader-groups/g1", None),
        http(&h, "GET", "/v1/scopes/rg/reader-groups/g2", None),
    );
    assert_eq!(before, after, "refused requests changed a group");
    assert_eq!(http(&h, "DELETE", "/v1/scopes/rg/reader-groups/g1", None).0, 204);
    ok(&s.cli(&["reader-group", "delete", "rg/g2"]));
    assert_eq!(http(&h, "GET", "/v1/scopes/rg/reader-groups", None).1["groups"], serde_json::json!([]));
}
