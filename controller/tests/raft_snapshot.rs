//! Three Raft nodes in one process over real gRPC on loopback, with snapshots every 20 entries:
//! a node that was down while the log was compacted past its position catches up by receiving
//! a snapshot (install_snapshot over the network), and ends with identical state.

use std::collections::BTreeMap;
use std::time::Duration;

use nadi_controller::meta::MetaStore;
use nadi_controller::raft::{RaftNode, RaftSettings};
use nadi_controller::state::Command;
use tokio::net::TcpListener;
use tokio_stream::wrappers::TcpListenerStream;

struct Running {
    meta: MetaStore,
    stop: tokio::sync::oneshot::Sender<()>,
    server: tokio::task::JoinHandle<()>,
}

async fn start(id: u64, dir: &std::path::Path, listener: TcpListener, members: &BTreeMap<u64, String>) -> Running {
    let settings = RaftSettings { snapshot_every: 20, ..RaftSettings::default() };
    let node = RaftNode::start(id, dir, members, &settings).await.unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let svc = node.raft_service();
    let server = tokio::spawn(async move {
        let _ = tonic::transport::Server::builder()
            .add_service(svc)
            .serve_with_incoming_shutdown(TcpListenerStream::new(listener), async {
                let _ = stopped.await;
            })
            .await;
    });
    Running { meta: MetaStore::new(node), stop, server }
}

async fn stop(r: Running) {
    r.meta.node().raft.shutdown().await.unwrap();
    let _ = r.stop.send(());
    let _ = r.server.await;
}

async fn leader_of(nodes: &BTreeMap<u64, Running>) -> u64 {
    let any = nodes.values().next().unwrap();
    let mut rx = any.meta.node().raft.metrics();
    let m = tokio::time::timeout(Duration::from_secs(20), rx.wait_for(|m| m.current_leader.is_some()))
        .await
        .expect("a leader within 20 s")
        .unwrap()
        .clone();
    m.current_leader.unwrap()
}

/// Proposes `cmd` on whichever node leads now, retrying while leadership moves (elections
/// may happen under load), for at most 30 s.
async fn propose(nodes: &BTreeMap<u64, Running>, cmd: Command) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let leader = nodes.iter().find(|(id, n)| n.meta.node().raft.metrics().borrow().current_leader == Some(**id));
        if let Some((_, n)) = leader {
            match n.meta.propose(cmd.clone()).await {
                Ok(()) => return,
                Err(e) if e.is_retryable() => {}
                Err(e) => panic!("{cmd:?}: {e}"),
            }
        }
        assert!(tokio::time::Instant::now() < deadline, "no leader took {cmd:?} within 30 s");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_behind_the_compacted_log_catches_up_from_a_snapshot() {
    let dirs: Vec<_> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let mut listeners = Vec::new();
    let mut members = BTreeMap::new();
    for id in 1..=3u64 {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        members.insert(id, format!("http://{}", l.local_addr().unwrap()));
        listeners.push(l);
    }
    let mut nodes = BTreeMap::new();
    for (i, l) in listeners.into_iter().enumerate() {
        let id = i as u64 + 1;
        nodes.insert(id, start(id, dirs[i].path(), l, &members).await);
    }
    let leader = leader_of(&nodes).await;
    let follower = *members.keys().find(|id| **id != leader).unwrap();
    let follower_addr: std::net::SocketAddr = members[&follower].trim_start_matches("http://").parse().unwrap();
    stop(nodes.remove(&follower).unwrap()).await;

    // 100 changes while the follower is down: several snapshots, the log purged behind them
    // on both remaining nodes.
    for i in 0..100 {
        propose(&nodes, Command::CreateScope { scope: format!("s{i}"), now_ms: i }).await;
    }
    for n in nodes.values() {
        let mut rx = n.meta.node().raft.metrics();
        tokio::time::timeout(Duration::from_secs(20), rx.wait_for(|m| m.purged.is_some_and(|p| p.index > 20)))
            .await
            .expect("the remaining nodes purge their logs behind a snapshot")
            .unwrap();
    }
    let lead = &nodes.values().next().unwrap().meta;
    let listener = TcpListener::bind(follower_addr).await.unwrap();
    let back = start(follower, dirs[(follower - 1) as usize].path(), listener, &members).await;
    let mut rx = back.meta.node().raft.metrics();
    tokio::time::timeout(Duration::from_secs(20), rx.wait_for(|m| m.snapshot.is_some_and(|s| s.index >= 20)))
        .await
        .expect("the follower receives a snapshot")
        .unwrap();
    // All three nodes reach the same applied index (bounded wait), then hold the same state.
    let applied = |m: &MetaStore| m.node().raft.metrics().borrow().last_applied.map_or(0, |l| l.index);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while nodes.values().any(|n| applied(&n.meta) != applied(&back.meta)) {
        assert!(tokio::time::Instant::now() < deadline, "the follower did not catch up");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let want = lead.read(|s| s.clone()).await;
    assert_eq!(back.meta.read(|s| s.clone()).await, want, "identical metadata after catching up");
    assert_eq!(want.scopes.len(), 100);
    stop(back).await;
    for (_, n) in nodes {
        stop(n).await;
    }
}
