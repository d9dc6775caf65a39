//! Replicas placed by the controllers (`--container-log raft` without static peers), across
//! processes: issue 17's elasticity and disk-loss acceptance.
//!
//! One controller, one store, replication factor 1, a keyed writer with a stable writer id.
//! Two stores join and the controller comes back with `--replication-factor 3`: every
//! container's group grows to three voters (each new replica caught up from its leader's log).
//! The store that led everything is SIGKILLed: writes go on through the two new replicas. Then
//! a store's disk is lost (its data dir deleted): it comes back with a new id, the controller
//! puts it in the lost replica's place after `--store-timeout`, its leader catches it up, and a
//! later loss of a third store still loses nothing. The checker compares what the writer was
//! told with a read from the head. About a minute and a half.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use nadi_client::{NadiClient, StreamSpec, WriterConfig};
use nadi_tests::cluster::{Proc, free_port};
use nadi_tests::load::{KeyedLoad, check_stream, keys, writes_resume};

/// The stores by name; their logs are printed if the test fails.
struct Stores(BTreeMap<&'static str, Proc>);

impl Drop for Stores {
    fn drop(&mut self) {
        if std::thread::panicking() {
            for (name, p) in &self.0 {
                eprintln!("---- store {name} log ----\n{}", p.log.lock().unwrap());
            }
        }
    }
}

/// A store's command line (replicas placed by the controllers).
fn store(dir: &Path, controller: &str, name: &str, port: u16) -> Proc {
    let args: Vec<String> = [
        "--controller",
        controller,
        "segment-store",
        "--listen",
        &format!("127.0.0.1:{port}"),
        "--data-dir",
        &dir.join(name).display().to_string(),
        "--containers",
        "4",
        "--container-log",
        "raft",
        // One Tier-2 all stores share (a wiped store reads what others moved).
        "--tier2",
        &format!("file://{}", dir.join("tier2").display()),
        "--tier2-max-age",
        "1s",
        "--tier2-chunk-size",
        "1MiB",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    Proc::start(&args, "nadi segment-store ready", Duration::from_secs(60))
}

/// The store id in a store's ready line (`... (store ID, containers [...])`).
fn store_id(p: &Proc) -> String {
    let at = p.ready_line.find("(store ").expect("a store id in the ready line") + "(store ".len();
    p.ready_line[at..].split(',').next().unwrap().to_owned()
}

fn controller(dir: &Path, port: u16, replication_factor: u32) -> Proc {
    let args: Vec<String> = [
        "controller",
        "--id",
        "1",
        "--listen",
        &format!("127.0.0.1:{port}"),
        "--peers",
        &format!("1=127.0.0.1:{port}"),
        "--data-dir",
        &dir.join("controller").display().to_string(),
        "--replication-factor",
        &replication_factor.to_string(),
        "--store-timeout",
        "4s",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    Proc::start(&args, "nadi controller 1 ready", Duration::from_secs(30))
}

/// Waits (at most `limit`) until every container's group, as its leader reports it, has
/// exactly the voters `want` (store ids); returns how long that took.
async fn voters_become(client: &NadiClient, want: &[&str], limit: Duration) -> Duration {
    let started = Instant::now();
    let mut want: Vec<String> = want.iter().map(|s| s.to_string()).collect();
    want.sort();
    loop {
        let info = client.cluster_info().await.ok();
        let settled = info.as_ref().is_some_and(|i| {
            !i.containers.is_empty()
                && i.containers.iter().all(|c| {
                    let mut v = if c.changing { vec![] } else { c.voters.clone() };
                    v.sort();
                    v == want
                })
        });
        if settled {
            return started.elapsed();
        }
        assert!(
            started.elapsed() < limit,
            "the groups did not reach voters {want:?} within {limit:?}: {:#?}",
            info.map(|i| i.containers)
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Waits (at most `limit`) until every container's leader is the preferred replica its
/// placement names (the first), and those leaders are on `stores` different stores; returns how
/// long that took.
async fn leaders_spread(client: &NadiClient, stores: usize, limit: Duration) -> Duration {
    let started = Instant::now();
    loop {
        let info = client.cluster_info().await.ok();
        let spread = info.as_ref().is_some_and(|i| {
            let preferred = i.containers.iter().all(|c| c.term > 0 && c.replicas.first() == Some(&c.store_id));
            let leaders: std::collections::BTreeSet<&str> = i.containers.iter().map(|c| c.store_id.as_str()).collect();
            preferred && leaders.len() == stores
        });
        if spread {
            return started.elapsed();
        }
        assert!(
            started.elapsed() < limit,
            "leaders did not spread within {limit:?}: {:#?}",
            info.map(|i| i.containers)
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Issue 17 acceptance 5 (1 store, RF 1 → 3 stores, RF 3, with data and a live writer) and
/// acceptance 2 (a store's disk lost, it rejoins empty and catches up; a later store loss
/// loses nothing).
#[test]
fn replicas_grow_onto_new_stores_and_a_wiped_store_rejoins_as_a_new_replica() {
    let dir = tempfile::tempdir().unwrap();
    let ctl_port = free_port();
    let url = format!("http://127.0.0.1:{ctl_port}");
    let mut ctl = controller(dir.path(), ctl_port, 1);
    let ports: BTreeMap<&str, u16> = ["a", "b", "c"].iter().map(|n| (*n, free_port())).collect();
    eprintln!("stores' ports: {ports:?}");
    let mut stores = Stores(BTreeMap::new());
    let procs = &mut stores.0;
    procs.insert("a", store(dir.path(), &url, "a", ports["a"]));
    let a = store_id(&procs["a"]);

    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let _enter = rt.enter();
    let client = NadiClient::new(std::slice::from_ref(&url)).unwrap();
    let probe_keys = keys(64);
    let (load, probe) = rt.block_on(async {
        voters_become(&client, &[&a], Duration::from_secs(30)).await;
        client.create_scope("demo").await.unwrap();
        client.create_stream("demo", "e", StreamSpec::fixed(8)).await.unwrap();
        client.create_stream("demo", "probe", StreamSpec::fixed(8)).await.unwrap();
        let load = KeyedLoad::start(&client, "demo", "e", keys(64), 300.0);
        let config = WriterConfig { writer_id: Some("probe".into()), ..WriterConfig::default() };
        let probe = nadi_client::EventWriter::new(&client, "demo", "probe", config).await.unwrap();
        tokio::time::sleep(Duration::from_secs(3)).await;
        (load, probe)
    });

    // Elasticity: two stores join, and the controllers' replication factor goes to 3.
    procs.insert("b", store(dir.path(), &url, "b", ports["b"]));
    procs.insert("c", store(dir.path(), &url, "c", ports["c"]));
    let (b, c) = (store_id(&procs["b"]), store_id(&procs["c"]));
    ctl.kill9();
    ctl = controller(dir.path(), ctl_port, 3);
    let grew = rt.block_on(voters_become(&client, &[&a, &b, &c], Duration::from_secs(90)));
    let spread = rt.block_on(leaders_spread(&client, 3, Duration::from_secs(60)));
    let info = rt.block_on(client.cluster_info()).unwrap();
    assert_eq!(info.replication_factor, 3);
    eprintln!(
        "RF 1 → 3: every group had three voters {grew:?} after the controller restarted; leaders on all three \
         stores {spread:?} later"
    );

    // The store that held everything alone is killed: the new replicas have it all.
    let killed = Instant::now();
    procs.remove("a").unwrap().kill9();
    let took = rt.block_on(writes_resume(&probe, &probe_keys, killed));
    eprintln!("store a killed: every container took writes again after {took:?}");
    assert!(took < Duration::from_secs(15), "writes resumed {took:?} after store a was killed");
    procs.insert("a", store(dir.path(), &url, "a", ports["a"]));
    // Back, a catches up and its preferred containers are handed back to it.
    let back = rt.block_on(leaders_spread(&client, 3, Duration::from_secs(60)));
    eprintln!("store a restarted: the preferred leaders lead again after {back:?}");

    // Disk loss: b stops, its data dir is deleted, it comes back as a new store.
    procs.remove("b").unwrap().kill9();
    std::fs::remove_dir_all(dir.path().join("b")).unwrap();
    procs.insert("b", store(dir.path(), &url, "b", ports["b"]));
    let b2 = store_id(&procs["b"]);
    assert_ne!(b, b2, "a wiped store comes back with a new id");
    let replaced = rt.block_on(voters_become(&client, &[&a, &b2, &c], Duration::from_secs(90)));
    eprintln!("store b wiped: its new replica replaced the lost one in every group after {replaced:?}");

    // A later loss of another store loses nothing: a and the rebuilt b hold everything.
    let killed = Instant::now();
    procs.remove("c").unwrap().kill9();
    let took = rt.block_on(writes_resume(&probe, &probe_keys, killed));
    eprintln!("store c killed: every container took writes again after {took:?}");
    assert!(took < Duration::from_secs(15), "writes resumed {took:?} after store c was killed");

    let expected = rt.block_on(load.stop());
    rt.block_on(probe.close()).unwrap();
    let total: u64 = expected.values().sum();
    assert!(total > 3000, "the writer kept writing through the changes ({total} events)");
    rt.block_on(check_stream(&client, "demo", "e", &expected));
    let chunks = nadi_tests::tier2_chunks(&dir.path().join("tier2"));
    assert!(chunks > 0, "data moved to the shared Tier-2 ({chunks} chunks)");
    drop(ctl);
}
