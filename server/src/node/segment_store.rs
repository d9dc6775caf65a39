//! `nadi segment-store`: a segment store that registers with the controllers and serves its
//! containers. `nadi standalone` opens its store with the same [`store_config`].

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::bail;
use nadi_proto::raft::v1 as rpb;
use serde::Deserialize;

use super::config::{ScalerArgs, StandaloneArgs, StandaloneConfig, TierArgs};
use super::controller::read_toml;
use super::registration::{heartbeat_every, register, store_id};
use super::{bind, grpc_server, incoming, shutdown_signal, stopped};
use crate::container::ContainerOptions;
use crate::log::file::FileLogOptions;
use crate::net::service::SegmentService;
use crate::store::load::StoreLoad;
use crate::store::{SegmentStore, StoreConfig};

/// Flags of `nadi segment-store` (the controllers come from the global `--controller`).
#[derive(Debug, Clone, Default, clap::Args)]
pub struct SegmentStoreArgs {
    /// gRPC address to listen on. Default 127.0.0.1:12345.
    #[arg(long, env = "NADI_LISTEN")]
    pub listen: Option<SocketAddr>,
    /// The URL clients reach this store at. Default: http:// plus the listen address (which
    /// must then not be a wildcard address such as 0.0.0.0).
    #[arg(long, env = "NADI_ADVERTISE")]
    pub advertise: Option<String>,
    /// Directory for all state (tier1/). Default ./nadi-data.
    #[arg(long, env = "NADI_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// Segment containers (fixed once the data directory exists; all stores of a cluster
    /// must agree). Default 4.
    #[arg(long, env = "NADI_CONTAINERS")]
    pub containers: Option<u32>,
    /// Size of each Tier-1 log file, e.g. 64MiB (at least 20MiB). Default 64MiB.
    #[arg(long, env = "NADI_LOG_FILE_SIZE")]
    pub log_file_size: Option<String>,
    /// Bytes of log records between two metadata checkpoints per container. Default 64MiB.
    #[arg(long, env = "NADI_CHECKPOINT_INTERVAL")]
    pub checkpoint_interval: Option<String>,
    /// Bytes of requests each container accepts before writers wait for the disk. Default 64MiB.
    #[arg(long, env = "NADI_CONTAINER_QUEUE_BYTES")]
    pub container_queue_bytes: Option<String>,
    /// How often segment load is measured and reported, e.g. `5s` (the default).
    #[arg(long, env = "NADI_LOAD_TICK")]
    pub load_tick: Option<String>,
    /// The windows segment rates are averaged over, shortest first. Default 2m,5m,10m,20m.
    #[arg(long, env = "NADI_LOAD_WINDOWS")]
    pub load_windows: Option<String>,
    #[command(flatten)]
    pub tier: TierArgs,
    /// A TOML file with any of the settings above (keys like `data-dir`).
    #[arg(long, env = "NADI_CONFIG")]
    pub config: Option<PathBuf>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct SegmentStoreFile {
    listen: Option<SocketAddr>,
    advertise: Option<String>,
    data_dir: Option<PathBuf>,
    containers: Option<u32>,
    log_file_size: Option<String>,
    checkpoint_interval: Option<String>,
    container_queue_bytes: Option<String>,
    load_tick: Option<String>,
    load_windows: Option<String>,
    tier2: Option<String>,
    tier2_endpoint: Option<String>,
    tier1_capacity: Option<String>,
    tier2_chunk_size: Option<String>,
    tier2_max_age: Option<String>,
    tier2_cache_size: Option<String>,
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
            tiering: crate::container::storage_writer::TieringOptions {
                chunk_bytes: cfg.tier.chunk_bytes,
                max_age: cfg.tier.max_age,
                eager: cfg.tier.max_files > 0,
            },
        },
    })
}

/// Runs `nadi segment-store` until Ctrl-C / SIGTERM.
pub async fn run_segment_store(controllers: Vec<String>, args: SegmentStoreArgs) -> anyhow::Result<()> {
    let file: SegmentStoreFile = read_toml(args.config.as_deref())?;
    // The store settings are the same as standalone's: resolve (defaults, validation) there.
    let cfg = StandaloneArgs {
        data_dir: args.data_dir.or(file.data_dir),
        segment_listen: args.listen.or(file.listen),
        containers: args.containers.or(file.containers),
        log_file_size: args.log_file_size.or(file.log_file_size),
        checkpoint_interval: args.checkpoint_interval.or(file.checkpoint_interval),
        container_queue_bytes: args.container_queue_bytes.or(file.container_queue_bytes),
        scaler: ScalerArgs { load_tick: args.load_tick.or(file.load_tick), ..ScalerArgs::default() },
        load_windows: args.load_windows.or(file.load_windows),
        tier: args.tier.or(TierArgs {
            tier2: file.tier2,
            tier2_endpoint: file.tier2_endpoint,
            tier1_capacity: file.tier1_capacity,
            tier2_chunk_size: file.tier2_chunk_size,
            tier2_max_age: file.tier2_max_age,
            tier2_cache_size: file.tier2_cache_size,
        }),
        ..StandaloneArgs::default()
    }
    .resolve()?;
    let (listen, data_dir) = (cfg.segment_listen, cfg.data_dir.clone());
    let listener = bind(listen, "segment store").await?;
    let bound = listener.local_addr()?;
    let advertise = match args.advertise.or(file.advertise) {
        Some(a) => a,
        None if bound.ip().is_unspecified() => {
            bail!("--listen {bound} is a wildcard address: give --advertise with the URL clients should use")
        }
        None => format!("http://{bound}"),
    };
    let tier1 = data_dir.join("tier1");
    let store_cfg = store_config(&cfg)?;
    let store = Arc::new(tokio::task::spawn_blocking(move || SegmentStore::open(&store_cfg)).await??);
    store.start_tiering();
    let id = store_id(&tier1)?;
    let load = StoreLoad::new(cfg.load.clone());
    load.spawn_ticker(store.clone());
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let server = grpc_server()
        .add_service(SegmentService::new(store.clone()).with_load(load.clone()).into_server())
        .serve_with_incoming_shutdown(incoming(listener), stopped(stop_rx));
    let task = tokio::spawn(server);
    let request = rpb::HeartbeatRequest {
        store_id: id.clone(),
        endpoint: advertise.clone(),
        containers: store.containers().len() as u32,
        ..Default::default()
    };
    let every = heartbeat_every(&cfg.load);
    let assigned = register(controllers, request, load, every, Duration::from_secs(60)).await?;
    eprintln!("nadi segment-store ready: {advertise} (store {id}, containers {assigned:?})");
    shutdown_signal().await;
    eprintln!("nadi segment-store: shutting down");
    let _ = stop_tx.send(true);
    let _ = tokio::time::timeout(Duration::from_secs(3), task).await;
    Ok(())
}
