//! Multi-process controller test: 3 `nadi controller` nodes and 1 `nadi segment-store` on
//! loopback. Ten times: SIGKILL the leader, check a new leader serves within a few seconds,
//! change metadata through it, restart the killed node and check every node converges to the
//! same applied state. Then SIGKILL all three at once and restart them: nothing acknowledged is
//! lost. Clients are given all three URLs and fail over; the admin HTTP API of a follower answers
//! like the leader's (it is forwarded).

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use nadi_tests::cluster::Cluster;
use nadi_tests::{check_keyed_output, http, keyed_lines, ok};

const CYCLES: u32 = 10;

fn streams(c: &Cluster) -> BTreeSet<String> {
    ok(&c.cli(&["stream", "list", "demo"])).lines().map(|l| l.trim().to_owned()).filter(|l| !l.is_empty()).collect()
}

#[test]
fn controllers_survive_leader_kills_and_a_full_restart() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = Cluster::start(dir.path(), 3);
    ok(&c.cli(&["scope", "create", "demo"]));
    let mut acknowledged = BTreeSet::new();
    for i in 0..3 {
        let name = format!("demo/base{i}");
        ok(&c.cli(&["stream", "create", &name, "--segments", "2"]));
        acknowledged.insert(format!("base{i}"));
    }
    ok(&c.cli_stdin_all(&["write", "demo/base0", "--key-sep", "\t"], &keyed_lines(2_000, 17)));

    let mut failover_ms = Vec::new();
    let mut scaled_segments = 2;
    for cycle in 0..CYCLES {
        let old = c.leader(Duration::from_secs(15));
        c.kill_controller(old);
        let killed_at = Instant::now();
        // The first metadata change after the kill: the client fails over and waits out the
        // election; it must be served within a few seconds.
        let name = format!("c{cycle}");
        let out = c.cli(&["stream", "create", &format!("demo/{name}"), "--segments", "3"]);
        let took = killed_at.elapsed();
        ok(&out);
        acknowledged.insert(name);
        failover_ms.push(took.as_millis());
        assert!(took < Duration::from_secs(8), "cycle {cycle}: a new leader took {took:?} to serve");
        let new = c.leader(Duration::from_secs(15));
        assert_ne!(new, old, "the killed node cannot still lead");
        // More changes while the old leader is down.
        ok(&c.cli(&["stream", "seal", &format!("demo/c{cycle}")]));
        // Scale one stream: split its first active segment in two.
        let info: serde_json::Value =
            serde_json::from_str(&ok(&c.cli(&["stream", "info", "demo/base1", "--json"]))).expect("stream info --json");
        let first = info["segments"][0]["id"].as_u64().expect("a segment id");
        ok(&c.cli(&["stream", "scale", "demo/base1", "--split", &first.to_string(), "--into", "2"]));
        scaled_segments += 1;
        if cycle % 2 == 1 {
            ok(&c.cli(&["stream", "delete", &format!("demo/c{}", cycle - 1)]));
            acknowledged.remove(&format!("c{}", cycle - 1));
        }
        c.start_controller(old);
        let (applied, _) = c.converged(Duration::from_secs(30));
        assert!(applied > 0);
        assert_eq!(streams(&c), acknowledged, "cycle {cycle}: acknowledged metadata after the restart");
        let info: serde_json::Value =
            serde_json::from_str(&ok(&c.cli(&["stream", "info", "demo/base1", "--json"]))).unwrap();
        assert_eq!(info["segments"].as_array().unwrap().len(), scaled_segments, "cycle {cycle}: every scale kept");
        // Every node's admin HTTP API tells the same leader and members (followers forward).
        for id in [1, 2, 3] {
            let (status, body) = http(&c.http_addr(id), "GET", "/v1/cluster", None);
            assert_eq!(status, 200, "node {id}: {body}");
            assert_eq!(body["leader_id"], new, "node {id}: {body}");
            assert_eq!(body["members"].as_array().unwrap().len(), 3);
        }
    }
    eprintln!("time from SIGKILL of the leader to a served change (ms): {failover_ms:?}");

    // Kill all three at once, then restart them.
    for id in [1, 2, 3] {
        c.kill_controller(id);
    }
    for id in [1, 2, 3] {
        c.start_controller(id);
    }
    c.leader(Duration::from_secs(20));
    c.converged(Duration::from_secs(30));
    assert_eq!(streams(&c), acknowledged, "metadata after all controllers were killed");
    let read = ok(&c.cli(&["read", "demo/base0", "--from-start", "--max", "2000", "--idle-timeout", "10"]));
    check_keyed_output(&read, 2_000);
}
