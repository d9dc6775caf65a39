//! Tests of a replicated container: three replicas of one container, each with its own Tier-1
//! log and its own gRPC replication server on loopback, under leader crashes, with a checker
//! over what the writer was told.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::replicated::{ReplicaNetwork, ReplicationOptions};
use super::*;
use crate::replica::NodeId;
use crate::replica::network::{Channels, Groups, ReplicaGrpc};

/// One segment store holding one replica of container 0.
struct Store {
    container: Container,
    server: tokio::task::JoinHandle<()>,
}

fn options(id: NodeId, urls: &BTreeMap<NodeId, String>, groups: Arc<Groups>) -> ContainerOptions {
    ContainerOptions {
        log: crate::log::file::FileLogOptions { file_size: crate::log::file::MIN_FILE_SIZE, ..Default::default() },
        checkpoint_interval: 64 << 10,
        replication: Some(ReplicationOptions {
            node_id: id,
            advertise: urls[&id].clone(),
            network: Some(ReplicaNetwork { groups, channels: Channels::default() }),
            bootstrap: urls.clone(),
            placed: false,
            heartbeat: Duration::from_millis(50),
            election_min: Duration::from_millis(300),
            election_max: Duration::from_millis(600),
            lease: Duration::from_millis(200),
            commit_timeout: Duration::from_secs(3),
        }),
        ..Default::default()
    }
}

/// Starts store `id`. `groups` stays the same across its restarts: connections the other
/// stores opened to its earlier server may outlive that server in this one process (its
/// connection tasks are not aborted with it), and reach the groups through it; while the
/// store is down, they find none there and fail.
async fn start(
    id: NodeId,
    addr: SocketAddr,
    dir: &Path,
    urls: &BTreeMap<NodeId, String>,
    groups: &Arc<Groups>,
) -> Store {
    let groups = groups.clone();
    let listener = tokio::net::TcpListener::bind(addr).await.unwrap();
    let service = ReplicaGrpc::service(groups.clone());
    let server = tokio::spawn(async move {
        let incoming = tokio_stream::wrappers::TcpListenerStream::new(listener);
        let _ = tonic::transport::Server::builder().add_service(service).serve_with_incoming(incoming).await;
    });
    let container = Container::open(0, dir, &options(id, urls, groups)).unwrap();
    Store { container, server }
}

/// Stops a store as a crash would, as far as one process can: its replication server goes,
/// and its container closes (what its log thread had written reaches the file).
async fn stop(store: Store) {
    store.server.abort();
    let _ = store.server.await;
    store.container.close().await;
}

/// The id of the store whose replica leads, by asking each (a non-leader answers NOT_LEADER).
async fn leader(stores: &BTreeMap<NodeId, Store>, within: Duration) -> NodeId {
    let deadline = Instant::now() + within;
    loop {
        for (id, s) in stores {
            match s.container.writer_state("s", "probe").await {
                Ok(_) | Err(StoreError::SegmentNotFound(_)) => return *id,
                Err(_) => {}
            }
        }
        assert!(Instant::now() < deadline, "no replica leads within {within:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Appends batch `n` (events `n*4 .. n*4+4` of writer `w`) through whichever replica leads,
/// retrying with the same event numbers until it is acknowledged, as a client does.
async fn append_batch(stores: &tokio::sync::Mutex<BTreeMap<NodeId, Store>>, n: i64) -> Duration {
    let started = Instant::now();
    let events: Vec<Vec<u8>> = (0..4).map(|k| format!("event-{:08}", n * 4 + k).into_bytes()).collect();
    let refs: Vec<&[u8]> = events.iter().map(|e| e.as_slice()).collect();
    let mut last_errors = BTreeMap::new();
    loop {
        {
            let stores = stores.lock().await;
            for (id, s) in stores.iter() {
                let rx = match s.container.append("s", "w", n * 4 + 3, 4, frame(&refs)).await {
                    Ok(rx) => rx,
                    Err(e) => {
                        last_errors.insert(*id, e.to_string());
                        continue;
                    }
                };
                match rx.await {
                    Ok(Ok(_)) => return started.elapsed(),
                    Ok(Err(e @ (StoreError::NotLeader { .. } | StoreError::ShuttingDown))) => {
                        last_errors.insert(*id, e.to_string());
                    }
                    Err(_) => {
                        last_errors.insert(*id, "no answer".to_owned());
                    }
                    Ok(Err(e)) => panic!("batch {n}: {e}"),
                }
            }
        }
        assert!(started.elapsed() < Duration::from_secs(30), "batch {n} not acknowledged within 30 s: {last_errors:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Three stores' data directories, fixed addresses (chosen free now, so that a restarted store
/// is found where it was), URLs and group tables; logs to the test output at `RUST_LOG`.
struct Three {
    dirs: Vec<tempfile::TempDir>,
    addrs: BTreeMap<NodeId, SocketAddr>,
    urls: BTreeMap<NodeId, String>,
    groups: BTreeMap<NodeId, Arc<Groups>>,
}

fn three() -> Three {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new(
            std::env::var("RUST_LOG").unwrap_or_else(|_| "warn".into()),
        ))
        .with_test_writer()
        .try_init();
    let dirs = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let addrs: BTreeMap<NodeId, SocketAddr> =
        (1..=3).map(|id| (id, std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap())).collect();
    let urls = addrs.iter().map(|(id, a)| (*id, format!("http://{a}"))).collect();
    let groups = (1..=3).map(|id| (id, Groups::new(id))).collect();
    Three { dirs, addrs, urls, groups }
}

/// Three replicas; the leader's store crashes and comes back, round after round, while a writer
/// appends. Every acknowledged batch is stored exactly once, in order, on every replica, and
/// writes resume on another replica within seconds of each crash.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_replicas_keep_every_acknowledged_append_through_leader_crashes() {
    let Three { dirs, addrs, urls, groups } = three();
    let mut stores = BTreeMap::new();
    for id in 1..=3 {
        stores.insert(id, start(id, addrs[&id], dirs[id as usize - 1].path(), &urls, &groups[&id]).await);
    }
    let first = leader(&stores, Duration::from_secs(15)).await;
    stores[&first].container.create("s").await.unwrap();
    let stores = Arc::new(tokio::sync::Mutex::new(stores));

    let mut next = 0i64;
    let mut resumed = Vec::new();
    for round in 0..4 {
        for _ in 0..25 {
            append_batch(&stores, next).await;
            next += 1;
        }
        // Crash the leader's store; the next append waits for a new leader.
        let lead = {
            let s = stores.lock().await;
            leader(&s, Duration::from_secs(15)).await
        };
        let crashed = stores.lock().await.remove(&lead).unwrap();
        stop(crashed).await;
        let took = append_batch(&stores, next).await;
        next += 1;
        resumed.push((round, lead, took));
        assert!(took < Duration::from_secs(15), "round {round}: writes resumed after {took:?}");
        let back = start(lead, addrs[&lead], dirs[lead as usize - 1].path(), &urls, &groups[&lead]).await;
        stores.lock().await.insert(lead, back);
    }
    for _ in 0..10 {
        append_batch(&stores, next).await;
        next += 1;
    }
    eprintln!("time from each leader crash to the next acknowledged append: {resumed:?}");

    // Every replica catches up and holds the same bytes: events 0.. exactly once, in order.
    let expected: Vec<String> = (0..next * 4).map(|i| format!("event-{i:08}")).collect();
    let deadline = Instant::now() + Duration::from_secs(15);
    let stores = stores.lock().await;
    for (id, s) in stores.iter() {
        loop {
            let got = read_all(&s.container.observer());
            if got == expected {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "replica {id}: {} events, expected {} (first difference at {:?})",
                got.len(),
                expected.len(),
                got.iter().zip(&expected).position(|(a, b)| a != b)
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

fn read_all(c: &Container) -> Vec<String> {
    let Ok(info) = c.info("s") else { return Vec::new() };
    let mut out = Vec::new();
    let mut at = info.start_offset;
    while at < info.length {
        let chunk = c.read("s", at, 1 << 20).unwrap();
        at += chunk.data.len() as u64;
        for e in nadi_proto::framing::events(&chunk.data) {
            out.push(String::from_utf8(e.unwrap().1.to_vec()).unwrap());
        }
    }
    out
}

/// Log files of a Tier-1 log directory (in use, recycled or prepared).
fn log_files(dir: &Path) -> usize {
    std::fs::read_dir(dir)
        .unwrap()
        .filter(|e| e.as_ref().unwrap().file_name().to_string_lossy().starts_with("log-"))
        .count()
}

/// Every event of segment "s" as this replica reads it (Tier-1 and Tier-2), whether it leads
/// or not.
async fn read_everything(c: &Container) -> Result<Vec<Vec<u8>>, StoreError> {
    let info = c.info("s")?;
    let mut out = Vec::new();
    let mut at = info.start_offset;
    while at < info.length {
        let chunk = c.read_any("s", at, 4 << 20).await?;
        at += chunk.data.len() as u64;
        for e in nadi_proto::framing::events(&chunk.data) {
            out.push(e.unwrap().1.to_vec());
        }
    }
    Ok(out)
}

/// Tier-2 with three replicas sharing one Tier-2: only the leader moves data, the move goes
/// through the group's log so every replica recycles its Tier-1 files (each stays under its
/// capacity), a replica that was down while the leader recycled catches up from a snapshot
/// (state plus the bytes not yet in Tier-2), and after the leader crashes its successor serves
/// every acknowledged event (most from chunks the old leader moved) and keeps moving without
/// moving the same bytes again. A stale upload of an earlier term, at the key of the same
/// bytes, neither changes what is read nor survives the next leader's sweep.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tier2_moves_are_replicated_and_a_lagging_replica_catches_up_from_a_snapshot() {
    use crate::container::storage_writer::{self, TieringOptions};
    use crate::tier2::{REPLICATED_FOLDER, Tier2, Urgency, encode_chunk, open_url};
    let Three { dirs, addrs, urls, groups } = three();
    let t2 = Arc::new(Tier2::new(open_url("memory://", None).unwrap(), REPLICATED_FOLDER, 64 << 20));
    let tiering = TieringOptions { chunk_bytes: 2 << 20, max_age: Duration::from_millis(200), eager: true };
    const MAX_FILES: usize = 3;
    let open = |id: NodeId| {
        let mut o = options(id, &urls, groups[&id].clone());
        o.log.max_files = MAX_FILES;
        o.checkpoint_interval = 4 << 20;
        o.tier2 = Some(t2.clone());
        o.tiering = tiering.clone();
        o
    };
    let start_store = |id: NodeId| {
        let (addr, dir, o) = (addrs[&id], dirs[id as usize - 1].path().to_owned(), open(id));
        async move {
            let listener = tokio::net::TcpListener::bind(addr).await.unwrap();
            let service =
                ReplicaGrpc::service(o.replication.as_ref().unwrap().network.as_ref().unwrap().groups.clone());
            let server = tokio::spawn(async move {
                let incoming = tokio_stream::wrappers::TcpListenerStream::new(listener);
                let _ = tonic::transport::Server::builder().add_service(service).serve_with_incoming(incoming).await;
            });
            let container = Container::open(0, &dir, &o).unwrap();
            storage_writer::spawn(&container, o.tiering.clone());
            Store { container, server }
        }
    };
    let mut stores = BTreeMap::new();
    for id in 1..=3 {
        stores.insert(id, start_store(id).await);
    }
    let first = leader(&stores, Duration::from_secs(15)).await;
    stores[&first].container.create("s").await.unwrap();
    // 64 KiB events, four to a batch.
    let event = |i: i64| -> Vec<u8> {
        let mut e = format!("event-{i:08}-").into_bytes();
        e.resize(64 << 10, (i % 251) as u8);
        e
    };
    let mut next = 0i64;
    let mut max_files = [0usize; 3];
    async fn write(
        stores: &BTreeMap<NodeId, Store>,
        next: &mut i64,
        batches: i64,
        event: &impl Fn(i64) -> Vec<u8>,
        dirs: &[tempfile::TempDir],
        max_files: &mut [usize; 3],
    ) {
        for _ in 0..batches {
            let events: Vec<Vec<u8>> = (0..4).map(|k| event(*next * 4 + k)).collect();
            let refs: Vec<&[u8]> = events.iter().map(|e| e.as_slice()).collect();
            let deadline = Instant::now() + Duration::from_secs(30);
            'acked: loop {
                for s in stores.values() {
                    if let Ok(rx) = s.container.append("s", "w", *next * 4 + 3, 4, frame(&refs)).await
                        && let Ok(Ok(_)) = rx.await
                    {
                        break 'acked;
                    }
                }
                assert!(Instant::now() < deadline, "batch {next} not acknowledged within 30 s");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            *next += 1;
            for (i, d) in dirs.iter().enumerate() {
                max_files[i] = max_files[i].max(log_files(d.path()));
            }
        }
    }
    // A follower goes down early; 100 MiB go through the other two, whose logs hold 60 MiB.
    let down = *stores.keys().find(|&&id| id != first).unwrap();
    write(&stores, &mut next, 8, &event, &dirs, &mut max_files).await;
    stop(stores.remove(&down).unwrap()).await;
    write(&stores, &mut next, 400, &event, &dirs, &mut max_files).await;
    for (i, m) in max_files.iter().enumerate() {
        assert!(*m <= MAX_FILES + 1, "replica {}: {m} log files, more than its capacity allows", i + 1);
    }
    let lead = leader(&stores, Duration::from_secs(15)).await;
    let (t1, t2_bytes) = stores[&lead].container.tier_bytes();
    assert!(t2_bytes > 40 << 20, "most data is in Tier-2: {t1} B in Tier-1, {t2_bytes} B in Tier-2");
    // The follower that stayed recycled its files too: its Tier-1 index moved like the leader's.
    let other = *stores.keys().find(|&&id| id != lead).unwrap();
    assert!(max_files[other as usize - 1] <= MAX_FILES + 1);

    // A stale upload of term 1 at the key of the segment's first chunk's bytes.
    let local = stores[&lead].container.shared.durable.read().segments["s"].local;
    let stale = ChunkId { local, offset: 0, tag: (1 << 32) | 7 };
    t2.put(&t2.chunk_key(0, stale), encode_chunk("s", 0, b"not what was written"), Urgency::Urgent).await.unwrap();

    // The replica that was down comes back: the entries it lacks are purged, so it is sent a
    // snapshot, and then holds every event.
    stores.insert(down, start_store(down).await);
    let expected: Vec<Vec<u8>> = (0..next * 4).map(event).collect();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        match read_everything(&stores[&down].container.observer()).await {
            Ok(got) if got == expected => break,
            other => {
                let n = other.map(|g| g.len());
                assert!(
                    Instant::now() < deadline,
                    "replica {down} did not catch up: {n:?} of {} events",
                    expected.len()
                );
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // The leader crashes; its successor serves everything and keeps moving data.
    stop(stores.remove(&lead).unwrap()).await;
    write(&stores, &mut next, 40, &event, &dirs, &mut max_files).await;
    let successor = leader(&stores, Duration::from_secs(15)).await;
    let expected: Vec<Vec<u8>> = (0..next * 4).map(event).collect();
    let got = read_everything(&stores[&successor].container).await.unwrap();
    assert!(
        got == expected,
        "the new leader serves every acknowledged event once, in order ({} of {})",
        got.len(),
        expected.len()
    );
    let c = &stores[&successor].container;
    let deadline = Instant::now() + Duration::from_secs(30);
    while c.tier_bytes().0 > 8 << 20 {
        assert!(Instant::now() < deadline, "the new leader does not move data: {:?}", c.tier_bytes());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // No byte is in two chunks, every chunk referred to exists, and the stale upload is gone
    // (the new leader swept it: its term is older and nothing refers to it).
    let chunks: Vec<checkpoint::ChunkRef> = c.shared.durable.read().segments["s"].chunks.clone();
    for w in chunks.windows(2) {
        assert!(w[0].end() <= w[1].offset, "overlapping chunks {:?} and {:?}", w[0], w[1]);
    }
    let listed: std::collections::HashSet<ChunkId> =
        t2.list(0).await.unwrap().into_iter().filter_map(|(k, _)| t2.parse_key(0, &k)).collect();
    for ch in &chunks {
        assert!(listed.contains(&ch.obj), "chunk {:?} is referred to but not in Tier-2", ch.obj);
    }
    assert!(!listed.contains(&stale), "the stale upload of term 1 was swept");
    assert!(chunks.iter().all(|ch| ch.obj.tag != 0), "replicated chunks are tagged");
}
