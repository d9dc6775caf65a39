//! `nadi standalone`: controller, segment store and admin HTTP in one process.
//!
//! Start-up order: recover the segment store (every container replays its log), bind all
//! listeners (so a port in use fails fast with a clear message), start the controller as a
//! Raft group of one (the same code as `nadi controller`; as leader it resumes interrupted
//! workflows), serve, and register the store with the controller as any segment store does.
//! "ready" is printed only after that registration. Ctrl-C or SIGTERM stops accepting new work
//! and exits; everything acknowledged is already durable, so no flush is needed on the way out.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use nadi_controller::node::{ControllerNode, NodeConfig};
use nadi_controller::raft::RaftSettings;
use nadi_proto::raft::v1::HeartbeatRequest;
use tokio::net::TcpListener;
use tonic::transport::Server;
use tower::layer::util::{Identity, Stack};

use crate::wire::TypedDecodeErrorsLayer;

use crate::cluster::{heartbeat_every, register, serve_controller, stopped, store_id};
use crate::config::StandaloneConfig;
use crate::container::ContainerOptions;
use crate::load::StoreLoad;
use crate::log::file::FileLogOptions;
use crate::service::SegmentService;
use crate::store::{SegmentStore, StoreConfig};

pub async fn bind(addr: std::net::SocketAddr, what: &str) -> anyhow::Result<TcpListener> {
    TcpListener::bind(addr).await.with_context(|| format!("cannot listen for the {what} on {addr}"))
}

/// Accepted connections of `listener` with Nagle's algorithm off. (`Server::tcp_nodelay`
/// applies only to listeners tonic binds itself; without this, a small acknowledgement that
/// follows another one waits for the client's delayed TCP ACK, up to 40 ms, whenever the
/// client has nothing more to send, e.g. for the last events before a flush.)
pub fn incoming(listener: TcpListener) -> tonic::transport::server::TcpIncoming {
    tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true))
}

/// A gRPC server builder with the transport tuned for large batches (see MACHINE-LIMITS), whose
/// malformed-request errors are typed (see [`crate::wire`]).
pub fn grpc_server() -> Server<Stack<TypedDecodeErrorsLayer, Identity>> {
    Server::builder()
        .tcp_nodelay(true)
        .max_frame_size(Some(1024 * 1024 - 1))
        .initial_stream_window_size(Some(8 * 1024 * 1024))
        .initial_connection_window_size(Some(32 * 1024 * 1024))
        .layer(TypedDecodeErrorsLayer)
}

/// The segment store's settings (Tier-1 under DATA_DIR/tier1, Tier-2 as configured).
pub fn store_config(cfg: &StandaloneConfig) -> anyhow::Result<StoreConfig> {
    let tier1 = cfg.data_dir.join("tier1");
    let tier2 = match &cfg.tier.url {
        Some(url) => {
            let backend = crate::tier2::open_url(url, cfg.tier.endpoint.as_deref())?;
            let id = store_id(&tier1)?;
            Some(Arc::new(crate::tier2::Tier2::new(backend, &id, cfg.tier.cache_bytes)))
        }
        None => None,
    };
    Ok(StoreConfig {
        dir: tier1,
        containers: cfg.containers,
        container: ContainerOptions {
            log: FileLogOptions {
                file_size: cfg.log_file_size,
                max_files: cfg.tier.max_files,
                cached_files: crate::log::file::cached_files_for(cfg.containers, cfg.log_file_size),
                ..Default::default()
            },
            checkpoint_interval: cfg.checkpoint_interval,
            queue_bytes: cfg.container_queue_bytes,
            tier2,
            tiering: crate::tiering::TieringOptions {
                chunk_bytes: cfg.tier.chunk_bytes,
                max_age: cfg.tier.max_age,
                eager: cfg.tier.max_files > 0,
            },
        },
    })
}

/// Runs until Ctrl-C / SIGTERM.
pub async fn run(cfg: StandaloneConfig) -> anyhow::Result<()> {
    std::fs::create_dir_all(&cfg.data_dir).with_context(|| format!("creating data dir {}", cfg.data_dir.display()))?;
    let store_cfg = store_config(&cfg)?;
    let store = tokio::task::spawn_blocking(move || SegmentStore::open(&store_cfg)).await??;
    let store = Arc::new(store);
    store.start_tiering();

    let seg_listener = bind(cfg.segment_listen, "segment store").await?;
    let ctl_listener = bind(cfg.controller_listen, "controller").await?;
    let http_listener = bind(cfg.http_listen, "admin HTTP API").await?;
    let seg_addr = seg_listener.local_addr()?;
    let ctl_addr = ctl_listener.local_addr()?;
    let http_addr = http_listener.local_addr()?;
    // The same controller code as a cluster, as a Raft group of one.
    let node = ControllerNode::start(NodeConfig {
        id: 1,
        dir: cfg.data_dir.join("controller"),
        members: BTreeMap::from([(1, format!("http://{ctl_addr}"))]),
        settings: RaftSettings::default(),
        http_address: Some(format!("http://{http_addr}")),
        reader_timeout: cfg.reader_timeout,
        scaler: cfg.scaler.clone(),
        retention_every: cfg.retention_interval,
    })
    .await?;

    let load = StoreLoad::new(cfg.load.clone());
    load.spawn_ticker(store.clone());
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let seg_server = grpc_server()
        .add_service(SegmentService::new(store.clone()).with_load(load.clone()).into_server())
        .serve_with_incoming_shutdown(incoming(seg_listener), stopped(stop_rx.clone()));
    let seg_task = tokio::spawn(seg_server);
    let ctl_task = serve_controller(&node, ctl_listener, stopped(stop_rx.clone()));
    // The admin HTTP API is a client of this node's own controller gRPC endpoint.
    let http_router = nadi_controller::http::router(&format!("http://{ctl_addr}"))?;
    let http_server = axum::serve(http_listener, http_router).with_graceful_shutdown(stopped(stop_rx.clone()));
    let http_task = tokio::spawn(async move { http_server.await });

    // The store registers with its controller like any segment store of a cluster.
    let tier1 = cfg.data_dir.join("tier1");
    let request = HeartbeatRequest {
        store_id: store_id(&tier1)?,
        endpoint: format!("http://{seg_addr}"),
        containers: store.containers().len() as u32,
        ..Default::default()
    };
    let every = heartbeat_every(&cfg.load);
    register(vec![format!("http://{ctl_addr}")], request, load, every, Duration::from_secs(60)).await?;

    tracing::info!(controller = %ctl_addr, segment_store = %seg_addr, http = %http_addr, data_dir = %cfg.data_dir.display(), "nadi standalone ready");
    eprintln!(
        "nadi standalone ready: controller http://{ctl_addr}, segment store http://{seg_addr}, admin http://{http_addr}"
    );

    shutdown_signal().await;
    eprintln!("nadi standalone: shutting down");
    let _ = stop_tx.send(true);
    // Open tail reads would keep a graceful shutdown waiting forever: give it a few seconds.
    let all = async {
        let _ = seg_task.await;
        let _ = ctl_task.await;
        let _ = http_task.await;
    };
    if tokio::time::timeout(Duration::from_secs(3), all).await.is_err() {
        tracing::info!("closing remaining client streams");
    }
    Ok(())
}

pub async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).expect("install SIGTERM handler");
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}
