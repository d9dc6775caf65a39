//! Replicated containers across processes: three controllers with `--replication-factor 3`,
//! three segment stores whose replicas they place (`--container-log raft`), a keyed writer with a stable writer id and a
//! tail-following reader. Ten times, the store leading the most containers is SIGKILLed (a
//! probe writer measures the time until every container takes writes again) and restarted;
//! then every store and controller is SIGKILLed at once and started again. The checker compares
//! what the writer was told with what a read from the head returns: every acknowledged event
//! exactly once, each key in order, nothing that was never written. About two minutes.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use nadi_client::{NadiClient, StreamReader, StreamSpec, WriterConfig};
use nadi_tests::cluster::{Proc, free_port};
use nadi_tests::load::{KeyedLoad, check_stream, keys, writes_resume};
use nadi_tests::{check_per_key_order, parse_keyed_event};

/// Prints every store's log if the test fails.
impl Drop for Stores {
    fn drop(&mut self) {
        if std::thread::panicking() {
            for (id, p) in &self.procs {
                eprintln!("---- store {id} log ----\n{}", p.log.lock().unwrap());
            }
        }
    }
}

struct Stores {
    dir: std::path::PathBuf,
    controller: String,
    ports: BTreeMap<u64, u16>,
    procs: BTreeMap<u64, Proc>,
}

impl Stores {
    /// Starts every store at once (a group needs a majority to elect).
    fn start_all(&mut self) {
        let started: Vec<(u64, Proc)> = std::thread::scope(|s| {
            let handles: Vec<_> = self
                .ports
                .iter()
                .map(|(&id, &port)| {
                    let args = store_args(&self.dir, &self.controller, port, id);
                    s.spawn(move || (id, Proc::start(&args, "nadi segment-store ready", Duration::from_secs(60))))
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        self.procs.extend(started);
    }

    /// Starts (or restarts) store `id` on its port and data dir.
    fn start(&mut self, id: u64) {
        let args = store_args(&self.dir, &self.controller, self.ports[&id], id);
        self.procs.insert(id, Proc::start(&args, "nadi segment-store ready", Duration::from_secs(60)));
    }
}

/// The command line of store `id` (the controllers place its replicas).
fn store_args(dir: &Path, controller: &str, port: u16, id: u64) -> Vec<String> {
    [
        "--controller",
        controller,
        "segment-store",
        "--listen",
        &format!("127.0.0.1:{port}"),
        "--data-dir",
        &dir.join(format!("store-{id}")).display().to_string(),
        "--containers",
        "4",
        // One Tier-2 all stores share; data moves within a second, so a new leader serves
        // chunks its predecessor moved.
        "--tier2",
        &format!("file://{}", dir.join("tier2").display()),
        "--tier2-max-age",
        "1s",
        "--tier2-chunk-size",
        "1MiB",
        "--container-log",
        "raft",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

/// Starts (or restarts) controller `id` of the group on `ports`.
fn controller(dir: &Path, ports: &BTreeMap<u64, u16>, id: u64) -> Proc {
    let peers = ports.iter().map(|(id, p)| format!("{id}=127.0.0.1:{p}")).collect::<Vec<_>>().join(",");
    let args: Vec<String> = [
        "controller",
        "--id",
        &id.to_string(),
        "--listen",
        &format!("127.0.0.1:{}", ports[&id]),
        "--peers",
        &peers,
        "--data-dir",
        &dir.join(format!("controller-{id}")).display().to_string(),
        "--replication-factor",
        "3",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    Proc::start(&args, &format!("nadi controller {id} ready"), Duration::from_secs(30))
}

/// Starts the three controllers at once (a new group needs a majority).
fn start_controllers(dir: &Path, ports: &BTreeMap<u64, u16>) -> BTreeMap<u64, Proc> {
    std::thread::scope(|s| {
        let handles: Vec<_> = ports.keys().map(|&id| s.spawn(move || (id, controller(dir, ports, id)))).collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    })
}

/// The replica id of the store that leads the most containers, as the controllers see it.
async fn busiest_leader(client: &NadiClient, ports: &BTreeMap<u64, u16>) -> u64 {
    let info = client.cluster_info().await.unwrap();
    let mut led: BTreeMap<u64, usize> = BTreeMap::new();
    for c in &info.containers {
        if let Some((id, _)) = ports.iter().find(|(_, p)| c.endpoint == format!("http://127.0.0.1:{p}")) {
            *led.entry(*id).or_default() += 1;
        }
    }
    led.into_iter().max_by_key(|(id, n)| (*n, std::cmp::Reverse(*id))).map(|(id, _)| id).unwrap_or(1)
}

/// Acceptance 1 and 3 of issue 17 across processes: 3 controllers, 3 replicated stores, 10 rounds
/// of SIGKILLing the store that leads the most containers (and restarting it after a while),
/// then every store and controller at once; the checker runs over what the writer was told.
#[test]
fn acknowledged_events_survive_store_kills_with_three_replicas() {
    let dir = tempfile::tempdir().unwrap();
    let controller_ports: BTreeMap<u64, u16> = (1..=3).map(|id| (id, free_port())).collect();
    let mut controllers = start_controllers(dir.path(), &controller_ports);
    let url = controller_ports.values().map(|p| format!("http://127.0.0.1:{p}")).collect::<Vec<_>>().join(",");
    let mut stores = Stores {
        dir: dir.path().to_owned(),
        controller: url.clone(),
        ports: (1..=3).map(|id| (id, free_port())).collect(),
        procs: BTreeMap::new(),
    };
    // The stores come up together: each container's group needs a majority to elect.
    stores.start_all();

    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let _enter = rt.enter();
    let urls: Vec<String> = url.split(',').map(str::to_owned).collect();
    let client = NadiClient::new(&urls).unwrap();
    let probe_keys = keys(64);
    let (load, live, probe) = rt.block_on(async {
        client.create_scope("demo").await.unwrap();
        client.create_stream("demo", "r", StreamSpec::fixed(8)).await.unwrap();
        client.create_stream("demo", "probe", StreamSpec::fixed(8)).await.unwrap();
        let load = KeyedLoad::start(&client, "demo", "r", keys(64), 300.0);
        let reader_client = client.clone();
        let live = tokio::spawn(async move {
            let mut r = StreamReader::new(&reader_client, "demo", "r", true).await.unwrap();
            let mut out = Vec::new();
            // Until nothing new for 8 s (the load has stopped by then).
            while let Ok(Some(ev)) = tokio::time::timeout(Duration::from_secs(8), r.next()).await {
                out.push(parse_keyed_event(&ev.unwrap().payload));
            }
            out
        });
        let config = WriterConfig { writer_id: Some("probe".into()), ..WriterConfig::default() };
        let probe = nadi_client::EventWriter::new(&client, "demo", "probe", config).await.unwrap();
        tokio::time::sleep(Duration::from_secs(3)).await;
        (load, live, probe)
    });
    let mut resumed = Vec::new();
    for round in 1..=10 {
        let victim = rt.block_on(busiest_leader(&client, &stores.ports));
        let killed = Instant::now();
        stores.procs.remove(&victim).unwrap().kill9();
        // Writes go on through the other two: time until every container takes them again.
        let took = rt.block_on(writes_resume(&probe, &probe_keys, killed));
        resumed.push((round, victim, took));
        assert!(took < Duration::from_secs(15), "round {round}: writes resumed {took:?} after killing store {victim}");
        rt.block_on(tokio::time::sleep(Duration::from_secs(2)));
        stores.start(victim);
        rt.block_on(tokio::time::sleep(Duration::from_secs(2)));
    }
    eprintln!("(round, store killed, time from the kill until every container took writes again): {resumed:?}");
    let expected = rt.block_on(load.stop());
    rt.block_on(probe.close()).unwrap();
    let total: u64 = expected.values().sum();
    assert!(total > 6000, "the writer kept writing through the kills ({total} events)");
    let live = rt.block_on(live).unwrap();
    check_per_key_order(&live, &expected, "tail reader through the kills");
    rt.block_on(check_stream(&client, "demo", "r", &expected));
    // Much of it was read from Tier-2 chunks that earlier leaders moved.
    let chunks = nadi_tests::tier2_chunks(&dir.path().join("tier2"));
    assert!(chunks > 0, "data moved to the shared Tier-2 ({chunks} chunks)");

    // Everything at once: every store and every controller SIGKILLed, then started again.
    for (_, p) in std::mem::take(&mut stores.procs) {
        p.kill9();
    }
    for (_, p) in std::mem::take(&mut controllers) {
        p.kill9();
    }
    controllers.extend(start_controllers(dir.path(), &controller_ports));
    stores.start_all();
    // Once every container has a leader the controllers know of (a probe write to every
    // segment is acknowledged), everything acknowledged before the crash is there.
    let restarted = Instant::now();
    let took = rt.block_on(async {
        let config = WriterConfig { writer_id: Some("probe-2".into()), ..WriterConfig::default() };
        let probe = nadi_client::EventWriter::new(&client, "demo", "probe", config).await.unwrap();
        let took = writes_resume(&probe, &probe_keys, restarted).await;
        probe.close().await.unwrap();
        took
    });
    eprintln!("after the whole-cluster crash, writes resumed {took:?} after the stores were up");
    rt.block_on(check_stream(&client, "demo", "r", &expected));
}
