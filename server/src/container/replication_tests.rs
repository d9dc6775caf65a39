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

/// Three replicas; the leader's store crashes and comes back, round after round, while a writer
/// appends. Every acknowledged batch is stored exactly once, in order, on every replica, and
/// writes resume on another replica within seconds of each crash.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_replicas_keep_every_acknowledged_append_through_leader_crashes() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new(
            std::env::var("RUST_LOG").unwrap_or_else(|_| "warn".into()),
        ))
        .with_test_writer()
        .try_init();
    let dirs: Vec<tempfile::TempDir> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    // Fixed ports, chosen free now, so that a restarted store is found where it was.
    let addrs: BTreeMap<NodeId, SocketAddr> =
        (1..=3).map(|id| (id, std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap())).collect();
    let urls: BTreeMap<NodeId, String> = addrs.iter().map(|(id, a)| (*id, format!("http://{a}"))).collect();
    let groups: BTreeMap<NodeId, Arc<Groups>> = (1..=3).map(|id| (id, Groups::new(id))).collect();
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
