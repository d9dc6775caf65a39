//! A transaction commit in progress when the controller leader is SIGKILLed (3-node cluster):
//! the new leader finishes it, the client's commit (retrying over all controller URLs) returns
//! success or `status` shows it committed, and every event is in the stream exactly once, in
//! per-key order. The controllers pause 250 ms before each commit step on the segment stores
//! (`NADI_FAULT_TXN_COMMIT_STEP_MS`), so the kill lands in the middle of the commit.

use std::time::{Duration, Instant};

use nadi_tests::cluster::Cluster;
use nadi_tests::{check_keyed_output, ok};

fn lines(range: std::ops::Range<u64>) -> Vec<u8> {
    range.map(|i| format!("key{}\t{i}\n", i % 11)).collect::<String>().into_bytes()
}

fn state(c: &Cluster, id: &str) -> Option<String> {
    let out = c.cli(&["txn", "status", id, "--json"]);
    if !out.status.success() {
        return None;
    }
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
    v["state"].as_str().map(str::to_owned)
}

#[test]
fn a_commit_interrupted_by_a_leader_kill_is_finished_by_the_new_leader() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = Cluster::start_with_env(dir.path(), 3, &[("NADI_FAULT_TXN_COMMIT_STEP_MS", "250")]);
    ok(&c.cli(&["scope", "create", "demo"]));
    ok(&c.cli(&["stream", "create", "demo/tx", "--segments", "8"]));
    ok(&c.cli_stdin_all(&["write", "demo/tx", "--key-sep", "\t"], &lines(0..500)));
    let id = ok(&c.cli(&["txn", "begin", "demo/tx", "--lease", "5m"])).trim().to_owned();
    ok(&c.cli_stdin_all(&["txn", "write", &id, "--key-sep", "\t"], &lines(500..1500)));
    let read = ok(&c.cli(&["read", "demo/tx", "--from-start", "--max", "1500", "--idle-timeout", "2"]));
    check_keyed_output(&read, 500);

    // Start the commit (8 segments × 250 ms), wait until it is decided, kill the leader.
    let commit = c.spawn_cli(&["txn", "commit", &id]);
    let deadline = Instant::now() + Duration::from_secs(20);
    while state(&c, &id).as_deref() != Some("committing") {
        assert!(Instant::now() < deadline, "the commit never became `committing`");
        std::thread::sleep(Duration::from_millis(20));
    }
    let leader = c.leader(Duration::from_secs(10));
    c.kill_controller(leader);
    let killed_at = Instant::now();

    // The commit either returns success (the client failed over and the new leader finished
    // it) or, at worst, status shows it committed soon after.
    let out = commit.wait_with_output().unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while state(&c, &id).as_deref() != Some("committed") {
        assert!(Instant::now() < deadline, "the new leader did not finish the commit");
        std::thread::sleep(Duration::from_millis(100));
    }
    eprintln!(
        "commit client exited with {} ({:?} after the kill): {}{}",
        out.status,
        killed_at.elapsed(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "the retrying commit client should succeed: {out:?}");
    // A retried commit of the committed transaction succeeds.
    assert!(ok(&c.cli(&["txn", "commit", &id])).contains("committed"));
    let read = ok(&c.cli(&["read", "demo/tx", "--from-start", "--max", "1500", "--idle-timeout", "5"]));
    check_keyed_output(&read, 1500);

    // The killed node comes back and agrees.
    c.start_controller(leader);
    c.converged(Duration::from_secs(30));
    assert_eq!(state(&c, &id).as_deref(), Some("committed"));
}
