//! A network partition of a container's leader (issue 17, acceptance 4), with real hosts: one
//! controller and three segment stores (`--replication-factor 3`) in Docker containers on a
//! network of their own, the test on the host as the client.
//!
//! The store leading stream `demo/d`'s only segment is cut off from the other stores and the
//! controller (iptables DROP rules in its network namespace, entered from the host; the host
//! still reaches it), while a writer appends to that segment *on the cut-off store directly*
//! and a keyed writer goes on through the controller. Then:
//! - the cut-off leader acknowledges nothing sent after the cut (its lease runs out; nothing
//!   can commit without a majority), and its append stream fails;
//! - another replica leads and the keyed writer's appends are acknowledged again;
//! - after the partition heals, the old leader rejoins, is handed the leadership back (it is
//!   the segment's preferred replica), and a read of `demo/d`, served by it, holds every acknowledged direct event once,
//!   in order, and none of those sent after the cut (the old leader held them, never
//!   acknowledged, and dropped them as a follower); `demo/k` holds every acknowledged keyed
//!   event once, in per-key order.
//!
//! Needs Docker, nsenter and iptables (and root for them). Without `docker info` answering it
//! prints `skipped: docker not available` and passes; without nsenter/iptables it skips too,
//! except under `CI` where that is a failure. About a minute (the image is shared with
//! `deploy_compose`, built once).

use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use nadi_client::{NadiClient, StreamSpec, WriterConfig};
use nadi_proto::segment::v1 as spb;
use nadi_tests::docker::{run_bounded, run_ok, skip_or_fail, succeeds, test_image};
use nadi_tests::load::{KeyedLoad, check_stream, keys};
use tokio_stream::StreamExt;

/// The Docker network and containers of one run, removed (with their volumes) when dropped.
struct Net {
    name: String,
    /// First three octets of its /24.
    prefix: String,
    containers: Vec<String>,
}

impl Net {
    fn ip(&self, host: u8) -> String {
        format!("{}.{host}", self.prefix)
    }

    /// `docker run -d` of `nadi ARGS…` at `.host`.
    fn run(&mut self, name: &str, host: u8, image: &str, args: &[&str]) {
        let container = format!("{}-{name}", self.name);
        let ip = self.ip(host);
        let mut cmd = Command::new("docker");
        cmd.args(["run", "-d", "--name", &container, "--network", &self.name, "--ip", &ip]);
        cmd.args(["-e", "NADI_LOG=info,openraft=warn", image]).args(args);
        run_ok(&mut cmd, b"", Duration::from_secs(60));
        self.containers.push(container);
    }

    fn pid(&self, name: &str) -> String {
        let container = format!("{}-{name}", self.name);
        run_ok(
            Command::new("docker").args(["inspect", "-f", "{{.State.Pid}}", &container]),
            b"",
            Duration::from_secs(30),
        )
        .trim()
        .to_owned()
    }

    /// Adds (`-A`) or deletes (`-D`) rules in `name`'s network namespace that drop every packet
    /// to and from `peers`.
    fn cut(&self, name: &str, peers: &[String], op: &str) {
        let pid = self.pid(name);
        for peer in peers {
            for (chain, dir) in [("INPUT", "-s"), ("OUTPUT", "-d")] {
                let mut cmd = Command::new("nsenter");
                cmd.args(["-t", &pid, "-n", "iptables", op, chain, dir, peer, "-j", "DROP"]);
                run_ok(&mut cmd, b"", Duration::from_secs(30));
            }
        }
    }

    fn logs(&self) -> String {
        let mut out = String::new();
        for c in &self.containers {
            if let Some(o) =
                run_bounded(Command::new("docker").args(["logs", "--tail", "60", c]), b"", Duration::from_secs(30))
            {
                out += &format!(
                    "---- {c} ----\n{}{}\n",
                    String::from_utf8_lossy(&o.stdout),
                    String::from_utf8_lossy(&o.stderr)
                );
            }
        }
        out
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("{}", self.logs());
        }
        for c in &self.containers {
            let _ = run_bounded(Command::new("docker").args(["rm", "-f", "-v", c]), b"", Duration::from_secs(60));
        }
        let _ = run_bounded(Command::new("docker").args(["network", "rm", &self.name]), b"", Duration::from_secs(60));
    }
}

/// A network of its own on a /24 nobody uses (another is tried if the pool overlaps).
fn network() -> Net {
    for attempt in 0..5 {
        let name = format!("nadipart{}x{attempt}", std::process::id());
        let prefix = format!("172.30.{}", rand::random::<u8>());
        let out = run_bounded(
            Command::new("docker").args(["network", "create", "--subnet", &format!("{prefix}.0/24"), &name]),
            b"",
            Duration::from_secs(60),
        )
        .expect("docker network create finishes");
        if out.status.success() {
            return Net { name, prefix, containers: Vec::new() };
        }
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains("overlap"), "docker network create failed: {stderr}");
    }
    panic!("no free /24 for the test network in 5 tries");
}

/// Waits until every container has a leader reporting three voters and no change under way.
async fn groups_ready(client: &NadiClient, limit: Duration) {
    let started = Instant::now();
    loop {
        if let Ok(i) = client.cluster_info().await
            && !i.containers.is_empty()
            && i.containers.iter().all(|c| c.term > 0 && c.voters.len() == 3 && !c.changing)
        {
            return;
        }
        assert!(started.elapsed() < limit, "the container groups did not form within {limit:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// What the direct writer saw: per event number, when it was sent, and when it was
/// acknowledged (if it was).
#[derive(Default)]
struct Direct {
    sent: Vec<Instant>,
    acked: Vec<Option<Instant>>,
    /// When and how the append stream failed.
    failed: Option<(Instant, String)>,
}

/// Appends `direct:N` to `segment` on the store at `endpoint` (never elsewhere), one event every
/// 20 ms, until the stream fails or `stop` is set.
async fn direct_writer(
    client: NadiClient,
    endpoint: String,
    segment: String,
    seen: Arc<Mutex<Direct>>,
    stop: Arc<std::sync::atomic::AtomicBool>,
) {
    let mut store = client.segment_store(&endpoint).unwrap();
    let (tx, rx) = tokio::sync::mpsc::channel(1024);
    let setup = spb::AppendSetup { segment, writer_id: "direct".into() };
    tx.send(spb::AppendRequest { kind: Some(spb::append_request::Kind::Setup(setup)) }).await.unwrap();
    let mut responses = store.append(tokio_stream::wrappers::ReceiverStream::new(rx)).await.unwrap().into_inner();
    match responses.next().await {
        Some(Ok(spb::AppendResponse { kind: Some(spb::append_response::Kind::SetupAck(a)) })) => {
            assert_eq!(a.last_event_number, -1, "a fresh writer id")
        }
        other => panic!("append setup on the leader: {other:?}"),
    }
    let mut tick = tokio::time::interval(Duration::from_millis(20));
    let mut n: i64 = 0;
    loop {
        tokio::select! {
            _ = tick.tick(), if !stop.load(std::sync::atomic::Ordering::Relaxed) => {
                let payload = format!("direct:{n}");
                let mut data = BytesMut::new();
                nadi_proto::framing::put_event(&mut data, payload.as_bytes()).expect("a small event");
                let batch = spb::AppendBatch { last_event_number: n, event_count: 1, data: Bytes::from(data) };
                {
                    let mut s = seen.lock().unwrap();
                    s.sent.push(Instant::now());
                    s.acked.push(None);
                }
                if tx.send(spb::AppendRequest { kind: Some(spb::append_request::Kind::Batch(batch)) }).await.is_err() {
                    return;
                }
                n += 1;
            }
            resp = responses.next() => {
                let mut s = seen.lock().unwrap();
                match resp {
                    Some(Ok(spb::AppendResponse { kind: Some(spb::append_response::Kind::Ack(a)) })) => {
                        let now = Instant::now();
                        for slot in s.acked.iter_mut().take((a.last_event_number + 1) as usize) {
                            slot.get_or_insert(now);
                        }
                    }
                    Some(Err(status)) => {
                        s.failed = Some((Instant::now(), format!("{:?}: {}", status.code(), status.message())));
                        return;
                    }
                    other => {
                        s.failed = Some((Instant::now(), format!("{other:?}")));
                        return;
                    }
                }
            }
        }
    }
}

#[test]
fn a_partitioned_leader_stops_acknowledging_and_its_unacknowledged_appends_are_never_served() {
    if !succeeds("docker", &["info"]) {
        return skip_or_fail("docker not available");
    }
    if !succeeds("nsenter", &["--version"]) || !succeeds("iptables", &["--version"]) {
        return skip_or_fail("nsenter or iptables not available");
    }
    let image = test_image();
    let mut net = network();
    let ctl = net.ip(10);
    let ctl_url = format!("http://{ctl}:9090");
    net.run(
        "controller",
        10,
        &image,
        &[
            "controller",
            "--id",
            "1",
            "--listen",
            &format!("{ctl}:9090"),
            "--peers",
            &format!("1={ctl}:9090"),
            "--replication-factor",
            "3",
        ],
    );
    let stores: Vec<String> = (21..=23).map(|h| net.ip(h)).collect();
    for (i, ip) in stores.iter().enumerate() {
        let listen = format!("{ip}:12345");
        let args = [
            "--controller",
            &ctl_url,
            "segment-store",
            "--listen",
            &listen,
            "--containers",
            "4",
            "--container-log",
            "raft",
            "--tier2",
            "none",
        ];
        net.run(&format!("store-{}", i + 1), 21 + i as u8, &image, &args);
    }

    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let _enter = rt.enter();
    let client = NadiClient::new(std::slice::from_ref(&ctl_url)).unwrap();
    let (segment, leader) = rt.block_on(async {
        let started = Instant::now();
        while client.cluster_info().await.is_err() {
            assert!(started.elapsed() < Duration::from_secs(60), "the controller did not answer within 60 s");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        groups_ready(&client, Duration::from_secs(90)).await;
        client.create_scope("demo").await.unwrap();
        let info = client.create_stream("demo", "d", StreamSpec::fixed(1)).await.unwrap();
        client.create_stream("demo", "k", StreamSpec::fixed(8)).await.unwrap();
        client.create_stream("demo", "p", StreamSpec::fixed(1)).await.unwrap();
        let segment = nadi_proto::names::segment_name(
            "demo",
            "d",
            nadi_proto::ids::SegmentId::from_packed(info.active_segments[0].id),
        );
        (segment.clone(), client.segment_endpoint(&segment).await.unwrap())
    });
    let victim = stores.iter().position(|ip| leader == format!("http://{ip}:12345")).expect("a store leads demo/d");
    let victim_name = format!("store-{}", victim + 1);
    eprintln!("demo/d ({segment}) is led by {victim_name} at {leader}");

    let load = rt.block_on(async { KeyedLoad::start(&client, "demo", "k", keys(32), 200.0) });
    let seen = Arc::new(Mutex::new(Direct::default()));
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let direct = rt.spawn(direct_writer(client.clone(), leader.clone(), segment.clone(), seen.clone(), stop.clone()));
    rt.block_on(tokio::time::sleep(Duration::from_secs(3)));

    // The cut: the leader loses the other stores and the controller; the host still reaches it.
    let others: Vec<String> = stores
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != victim)
        .map(|(_, ip)| ip.clone())
        .chain([ctl.clone()])
        .collect();
    net.cut(&victim_name, &others, "-A");
    let cut = Instant::now();
    let probe_cfg = WriterConfig { writer_id: Some("probe".into()), ..WriterConfig::default() };
    let resumed = rt.block_on(async {
        let probe = nadi_client::EventWriter::new(&client, "demo", "p", probe_cfg).await.unwrap();
        // Another replica leads demo/d's container, as the controller tells clients.
        loop {
            let now = client.segment_endpoint(&segment).await;
            if now.as_ref().is_ok_and(|e| *e != leader) {
                break;
            }
            assert!(cut.elapsed() < Duration::from_secs(20), "no other replica leads within 20 s: {now:?}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let moved = cut.elapsed();
        probe.write(None, Bytes::from_static(b"probe")).await.unwrap();
        probe.flush().await.unwrap();
        probe.close().await.unwrap();
        (moved, cut.elapsed())
    });
    eprintln!(
        "{victim_name} cut off: the controller sends clients of demo/d elsewhere after {:?}, a write was acknowledged after {:?}",
        resumed.0, resumed.1
    );
    // The direct writer's stream on the old leader fails; it acknowledged nothing sent after
    // the cut.
    let started = Instant::now();
    while seen.lock().unwrap().failed.is_none() {
        if started.elapsed() >= Duration::from_secs(20) {
            // What the stream did meanwhile tells a hang (nothing answered) from acknowledging.
            let s = seen.lock().unwrap();
            let acked = s.acked.iter().filter(|a| a.is_some()).count();
            let acked_after_cut = s.acked.iter().filter(|a| a.is_some_and(|t| t > cut)).count();
            let last_ack = s.acked.iter().flatten().max().map(|t| t.saturating_duration_since(cut));
            panic!(
                "the cut-off leader's append stream did not fail within 20 s: {} sent, {acked} acknowledged, \
                 {acked_after_cut} of them after the cut (last {last_ack:?} after it)",
                s.sent.len()
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    rt.block_on(tokio::time::sleep(Duration::from_secs(2)));
    net.cut(&victim_name, &others, "-D");
    let healed = Instant::now();
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    rt.block_on(direct).unwrap();
    // The old leader rejoins as a follower (and drops its unacknowledged suffix); as demo/d's
    // preferred replica it is handed the leadership back, so the read below is served by it.
    let back = rt.block_on(async {
        loop {
            if client.segment_endpoint(&segment).await.is_ok_and(|e| e == leader) {
                return healed.elapsed();
            }
            assert!(healed.elapsed() < Duration::from_secs(60), "{victim_name} did not lead demo/d again within 60 s");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    });
    eprintln!("healed: {victim_name} leads demo/d again after {back:?}");

    let expected = rt.block_on(load.stop());
    rt.block_on(check_stream(&client, "demo", "k", &expected));

    let s = seen.lock().unwrap();
    let (failed_at, why) = s.failed.clone().unwrap();
    eprintln!(
        "direct writer: {} sent, {} acknowledged; its stream failed {:?} after the cut: {why}",
        s.sent.len(),
        s.acked.iter().flatten().count(),
        failed_at.duration_since(cut)
    );
    let last_ack = s.acked.iter().flatten().max().copied();
    if let Some(t) = last_ack
        && t > cut
    {
        // Only appends already on their way to a majority when the cut came.
        assert!(
            t.duration_since(cut) < Duration::from_millis(500),
            "an acknowledgement {:?} after the cut",
            t.duration_since(cut)
        );
    }
    let after_cut: Vec<usize> = (0..s.sent.len()).filter(|&i| s.sent[i] > cut + Duration::from_millis(500)).collect();
    assert!(!after_cut.is_empty(), "the direct writer sent during the partition");
    assert!(after_cut.iter().all(|&i| s.acked[i].is_none()), "an append sent during the partition was acknowledged");
    // What a reader of demo/d gets: the acknowledged events, each once, in order, maybe a few
    // sent just before the cut whose acknowledgement was lost, and none sent after it.
    let read: Vec<i64> = rt.block_on(async {
        let mut r = nadi_client::StreamReader::new(&client, "demo", "d", true).await.unwrap();
        let mut out = Vec::new();
        while let Ok(Some(ev)) = tokio::time::timeout(Duration::from_secs(3), r.next()).await {
            let text = String::from_utf8(ev.unwrap().payload.to_vec()).unwrap();
            out.push(text.strip_prefix("direct:").unwrap().parse().unwrap());
        }
        out
    });
    let acked: Vec<i64> = (0..s.acked.len()).filter(|&i| s.acked[i].is_some()).map(|i| i as i64).collect();
    assert!(!acked.is_empty(), "the direct writer was acknowledged before the cut");
    assert!(
        read.windows(2).all(|w| w[1] == w[0] + 1) && read.first() == Some(&0),
        "demo/d read back in order, once each: {read:?}"
    );
    assert!(
        read.len() >= acked.len(),
        "every acknowledged direct event is read back ({} of {})",
        read.len(),
        acked.len()
    );
    for &n in &read {
        assert!(
            s.sent[n as usize] <= cut + Duration::from_millis(500),
            "event {n}, sent during the partition and never acknowledged, was served"
        );
    }
    eprintln!(
        "demo/d read back: {} events ({} acknowledged; none of the {} sent during the partition)",
        read.len(),
        acked.len(),
        after_cut.len()
    );
}
