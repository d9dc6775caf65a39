//! `deploy/` brought up for real (issue 18, acceptance 2): the image built by
//! `deploy/docker/build-image.sh`, the cluster of `deploy/compose` (3 controllers, 3 segment
//! stores replicating every container) started with `docker-compose`, keyed events written and read through
//! the `nadi` CLI inside the image, one segment-store container killed, and every acknowledged
//! event read back exactly once, in per-key order.
//!
//! Needs Docker and docker-compose (v1 or a `docker-compose` v2 binary). Without `docker info`
//! answering, the test prints `skipped: docker not available` and passes; with Docker but no
//! docker-compose it skips too, except under `CI` where that is a failure.
//!
//! The image is built from the binary under test (`target/<profile>/nadi`, see
//! [`nadi_tests::nadi_bin`]) as `nadi:test` (or `$NADI_TEST_IMAGE`, used as it is when set).
//! The script makes the debootstrap base image only if it is missing and rebuilds the image only
//! if its inputs changed, so a second run starts in seconds. Each run is its own compose project
//! on its own /24 (`NADI_NET`), removed with its volumes at the end, also on failure.
//!
//! The controllers place three replicas of every container (`--replication-factor 3`): the test kills the store that
//! leads the most containers, and while it is down a batch written must be acknowledged and a
//! read from the start must return every acknowledged event (without restarting it). It then
//! restarts the store and reads everything once more.

use std::collections::{BTreeMap, BTreeSet};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use nadi_tests::docker::{repo_root, run_bounded, run_ok, skip_or_fail, succeeds, test_image};

/// Events written, in batches of `BATCH` (one `nadi write` each), over `KEYS` keys.
const EVENTS: u64 = 2_000;
const BATCH: u64 = 250;
const KEYS: u64 = 16;

/// A compose project of `deploy/compose`, taken down with its volumes when dropped.
struct Compose {
    project: String,
    /// The first three octets of the project's /24 (`NADI_NET`).
    net: String,
    image: String,
    /// The container the `nadi` CLI runs in (controller-1's), once looked up.
    client: std::sync::OnceLock<String>,
}

impl Compose {
    fn command(&self) -> Command {
        let mut cmd = Command::new("docker-compose");
        cmd.arg("-p")
            .arg(&self.project)
            .arg("-f")
            .arg(repo_root().join("deploy/compose/docker-compose.yml"))
            .env("NADI_NET", &self.net)
            .env("NADI_IMAGE", &self.image);
        cmd
    }

    /// The container id of `service`.
    fn container(&self, service: &str) -> String {
        let id = run_ok(self.command().args(["ps", "-q", service]), b"", Duration::from_secs(30));
        let id = id.trim().to_owned();
        assert!(!id.is_empty(), "no container for service {service}");
        id
    }

    /// Every controller's gRPC URL (what clients are given).
    fn controllers(&self) -> String {
        (1..=3).map(|i| format!("http://{}.1{i}:9090", self.net)).collect::<Vec<_>>().join(",")
    }

    /// `docker exec -i CONTROLLER-1 [timeout SECS] nadi --controller URLS args…`, bounded by
    /// `secs` (inside the container too, so a stuck command does not outlive the test).
    fn nadi(&self, args: &[&str], input: &[u8], secs: u64) -> Option<Output> {
        let mut cmd = Command::new("docker");
        let client = self.client.get_or_init(|| self.container("controller-1"));
        cmd.args(["exec", "-i", client, "timeout", &secs.to_string(), "nadi"])
            .args(["--controller", &self.controllers()])
            .args(args);
        run_bounded(&mut cmd, input, Duration::from_secs(secs + 15))
    }

    fn health(&self, container: &str) -> String {
        let mut cmd = Command::new("docker");
        cmd.args(["inspect", "--format", "{{.State.Health.Status}}", container]);
        run_bounded(&mut cmd, b"", Duration::from_secs(30))
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
            .unwrap_or_default()
    }

    /// Waits (at most `timeout`) until every container of `services` is healthy (its `/ready`
    /// answers 200).
    fn wait_healthy(&self, services: &[&str], timeout: Duration) {
        let deadline = Instant::now() + timeout;
        let ids: Vec<(&str, String)> = services.iter().map(|s| (*s, self.container(s))).collect();
        loop {
            let states: Vec<(&str, String)> = ids.iter().map(|(s, id)| (*s, self.health(id))).collect();
            if states.iter().all(|(_, h)| h == "healthy") {
                return;
            }
            assert!(Instant::now() < deadline, "not healthy within {timeout:?}: {states:?}");
            std::thread::sleep(Duration::from_millis(500));
        }
    }
}

impl Drop for Compose {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let logs =
                run_bounded(self.command().args(["logs", "--no-color", "--tail", "40"]), b"", Duration::from_secs(30));
            if let Some(o) = logs {
                eprintln!("docker-compose logs:\n{}", String::from_utf8_lossy(&o.stdout));
            }
        }
        let down = run_bounded(self.command().args(["down", "-v", "--timeout", "5"]), b"", Duration::from_secs(120));
        match down {
            Some(o) if o.status.success() => {}
            other => eprintln!(
                "warning: `docker-compose -p {} down -v` failed ({other:?}): remove the project by hand",
                self.project
            ),
        }
    }
}

/// Lines `key<i mod KEYS>\t<i>` for the events of batch `b`.
fn batch_lines(b: u64) -> Vec<u8> {
    (b * BATCH..(b + 1) * BATCH).map(|i| format!("key{}\t{i}\n", i % KEYS)).collect::<String>().into_bytes()
}

/// Writes batch `b` with a writer id of its own (so a rerun stores each event once); true if
/// `nadi write` acknowledged all of it within `secs`.
fn write_batch(c: &Compose, b: u64, secs: u64) -> bool {
    let id = format!("batch-{b}");
    let out = c.nadi(&["write", "d/events", "--key-sep", "\t", "--writer-id", &id], &batch_lines(b), secs);
    match out {
        Some(o) if o.status.success() => true,
        Some(o) => {
            let stderr = String::from_utf8_lossy(&o.stderr);
            eprintln!("batch {b} not acknowledged ({}): {}", o.status, stderr.lines().last().unwrap_or_default());
            false
        }
        None => {
            eprintln!("batch {b} not acknowledged: timed out");
            false
        }
    }
}

/// Checks what was read (`key\tnumber` lines in read order): every event of an acknowledged
/// batch exactly once, any other event at most once, and each key's numbers increasing.
fn check(read: &str, acked: &BTreeSet<u64>) {
    let mut seen = BTreeSet::new();
    let mut last: BTreeMap<&str, u64> = BTreeMap::new();
    for line in read.lines() {
        let (key, n) = line.split_once('\t').unwrap_or_else(|| panic!("malformed event {line:?}"));
        let n: u64 = n.parse().unwrap_or_else(|_| panic!("malformed event {line:?}"));
        assert!(n < EVENTS && key == format!("key{}", n % KEYS), "an event nobody wrote: {line:?}");
        assert!(seen.insert(n), "event {n} read twice");
        if let Some(prev) = last.insert(key, n) {
            assert!(prev < n, "{key}: event {n} read after {prev}");
        }
    }
    let lost: Vec<u64> = acked.iter().flat_map(|b| b * BATCH..(b + 1) * BATCH).filter(|n| !seen.contains(n)).collect();
    assert!(
        lost.is_empty(),
        "{} acknowledged events not read back, e.g. {:?}",
        lost.len(),
        &lost[..lost.len().min(10)]
    );
}

#[test]
fn compose_cluster_keeps_every_acknowledged_event_when_a_store_is_killed() {
    let started = Instant::now();
    let lap = |what: &str| eprintln!("[{:6.1} s] {what}", started.elapsed().as_secs_f64());
    if !succeeds("docker", &["info"]) {
        return skip_or_fail("docker not available");
    }
    if !succeeds("docker-compose", &["version"]) {
        return skip_or_fail("docker-compose not available");
    }

    // The image: the binary under test on the locally made base.
    let image = test_image();
    lap(&format!("image {image} ready"));

    // A project of its own on a /24 nobody uses (another one is tried if the pool overlaps).
    let mut compose = None;
    for attempt in 0..5 {
        let c = Compose {
            project: format!("naditest{}x{attempt}", std::process::id()),
            net: format!("172.29.{}", rand::random::<u8>()),
            image: image.clone(),
            client: std::sync::OnceLock::new(),
        };
        let out = run_bounded(c.command().args(["up", "-d"]), b"", Duration::from_secs(180))
            .unwrap_or_else(|| panic!("docker-compose up did not finish in 180 s"));
        if out.status.success() {
            compose = Some(c);
            break;
        }
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(stderr.contains("overlaps"), "docker-compose up failed:\n{stderr}");
        drop(c);
    }
    let c = compose.expect("no free /24 for the compose network in 5 tries");
    let all = ["controller-1", "controller-2", "controller-3", "store-1", "store-2", "store-3"];
    c.wait_healthy(&all, Duration::from_secs(90));
    lap("cluster up and healthy");

    // Every target of deploy/compose/prometheus.yml serves /metrics.
    let prometheus = std::fs::read_to_string(repo_root().join("deploy/compose/prometheus.yml")).unwrap();
    let targets: Vec<String> = prometheus
        .lines()
        .filter_map(|l| l.trim().strip_prefix("- targets: ["))
        .flat_map(|l| l.trim_end_matches(']').split(", ").map(|t| t.replace("172.28.50", &c.net)).collect::<Vec<_>>())
        .collect();
    assert_eq!(targets.len(), 6, "prometheus.yml scrapes every process: {targets:?}");
    for t in &targets {
        let mut cmd = Command::new("docker");
        cmd.args(["exec", "-e", "NADI_READY_PATH=/metrics", &c.container("controller-1"), "nadi-ready", t]);
        run_ok(&mut cmd, b"", Duration::from_secs(20));
    }

    c.nadi(&["scope", "create", "d"], b"", 30).filter(|o| o.status.success()).expect("scope create");
    c.nadi(&["stream", "create", "d/events", "--segments", "4"], b"", 30)
        .filter(|o| o.status.success())
        .expect("stream create");
    let batches = EVENTS / BATCH;
    let mut acked = BTreeSet::new();
    for b in 0..batches - 1 {
        if write_batch(&c, b, 60) {
            acked.insert(b);
        }
    }
    assert!(!acked.is_empty(), "no batch was acknowledged");
    lap(&format!("{} of {} batches acknowledged", acked.len(), batches - 1));

    // Kill the store that leads the most containers (clients are sent to leaders).
    let info = c.nadi(&["cluster", "info", "--json"], b"", 30).filter(|o| o.status.success()).expect("cluster info");
    let info: serde_json::Value = serde_json::from_slice(&info.stdout).expect("cluster info JSON");
    let mut hosts: BTreeMap<String, usize> = BTreeMap::new();
    for ct in info["containers"].as_array().expect("containers") {
        *hosts.entry(ct["endpoint"].as_str().expect("endpoint").to_owned()).or_default() += 1;
    }
    let (endpoint, _) = hosts.iter().max_by_key(|(_, n)| **n).expect("a store hosts containers");
    let n = (1..=3).find(|i| endpoint == &format!("http://{}.2{i}:12345", c.net)).expect("a store of the project");
    let victim = c.container(&format!("store-{n}"));
    run_ok(Command::new("docker").args(["kill", &victim]), b"", Duration::from_secs(30));
    lap(&format!("killed store-{n} ({endpoint})"));

    // While it is down, nothing stops: one more batch is acknowledged (its containers' other
    // replicas elect leaders and the controller sends the client there), and a read from the
    // start returns every acknowledged event, each once, in key order.
    let last = batches - 1;
    assert!(write_batch(&c, last, 60), "batch {last} with store-{n} down");
    acked.insert(last);
    let during = c
        .nadi(&["read", "d/events", "--from-start", "--idle-timeout", "5"], b"", 90)
        .filter(|o| o.status.success())
        .expect("read with the store down");
    check(&String::from_utf8_lossy(&during.stdout), &acked);
    lap(&format!("store-{n} down: batch {last} acknowledged, every acknowledged event read once"));

    run_ok(Command::new("docker").args(["start", &victim]), b"", Duration::from_secs(30));
    c.wait_healthy(&[&format!("store-{n}")], Duration::from_secs(60));
    lap(&format!("store-{n} restarted and ready"));

    let out = c
        .nadi(&["read", "d/events", "--from-start", "--idle-timeout", "5"], b"", 90)
        .filter(|o| o.status.success())
        .expect("read after the store returned");
    // (The restarted store caught up; whichever replicas lead now, the stream is the same.)
    let read = String::from_utf8_lossy(&out.stdout);
    check(&read, &acked);
    lap(&format!(
        "read back {} events; all {} acknowledged ones once, in key order",
        read.lines().count(),
        acked.len() as u64 * BATCH
    ));
    drop(c);
    lap("wall time (docker-compose down -v included)");
}
