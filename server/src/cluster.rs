//! The cluster processes: `nadi controller` (one member of the Raft group of controllers) and
//! `nadi segment-store` (a segment store that registers with the controllers). `nadi
//! standalone` runs the same pieces in one process, with a group of one.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use nadi_controller::node::{ControllerNode, NodeConfig};
use nadi_controller::raft::RaftSettings;
use nadi_proto::raft::v1 as rpb;
use nadi_proto::raft::v1::segment_store_registry_client::SegmentStoreRegistryClient;
use serde::Deserialize;
use tokio::net::TcpListener;

use crate::config::{ScalerArgs, StandaloneArgs, TierArgs};
use crate::load::StoreLoad;
use crate::service::SegmentService;
use crate::standalone::{bind, grpc_server, incoming, shutdown_signal};
use crate::store::SegmentStore;

/// Flags of `nadi controller`.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct ControllerArgs {
    /// This node's id (a member of --peers).
    #[arg(long, env = "NADI_ID")]
    pub id: Option<u64>,
    /// gRPC address to listen on (clients, segment stores and the other controllers).
    #[arg(long, env = "NADI_LISTEN")]
    pub listen: Option<SocketAddr>,
    /// Every member of the group, this node included: `1=HOST:PORT,2=HOST:PORT,3=HOST:PORT`.
    #[arg(long, env = "NADI_PEERS")]
    pub peers: Option<String>,
    /// Directory for this node's Raft data. Default ./nadi-data.
    #[arg(long, env = "NADI_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// Admin HTTP address. Default: none.
    #[arg(long, env = "NADI_HTTP_LISTEN")]
    pub http_listen: Option<SocketAddr>,
    /// A reader-group reader that has not synced for this long is declared offline. Default 30s.
    #[arg(long, env = "NADI_READER_TIMEOUT")]
    pub reader_timeout: Option<String>,
    #[command(flatten)]
    pub scaler: ScalerArgs,
    /// How often the leader applies retention policies, e.g. 30s. Default 30s.
    #[arg(long, env = "NADI_RETENTION_INTERVAL")]
    pub retention_interval: Option<String>,
    /// A TOML file with any of the settings above (keys like `data-dir`).
    #[arg(long, env = "NADI_CONFIG")]
    pub config: Option<PathBuf>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct ControllerFile {
    retention_interval: Option<String>,
    id: Option<u64>,
    listen: Option<SocketAddr>,
    peers: Option<String>,
    data_dir: Option<PathBuf>,
    http_listen: Option<SocketAddr>,
    reader_timeout: Option<String>,
    load_tick: Option<String>,
    scale_cooldown: Option<String>,
    scale_mute: Option<String>,
    max_segments: Option<u32>,
}

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

fn read_toml<T: for<'de> Deserialize<'de> + Default>(path: Option<&Path>) -> anyhow::Result<T> {
    let Some(path) = path else { return Ok(T::default()) };
    let text = std::fs::read_to_string(path).with_context(|| format!("reading config file {}", path.display()))?;
    toml::from_str(&text).with_context(|| format!("config file {}", path.display()))
}

/// Parses `1=HOST:PORT,2=HOST:PORT` into id → gRPC URL.
pub fn parse_peers(s: &str) -> anyhow::Result<BTreeMap<u64, String>> {
    let mut out = BTreeMap::new();
    for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let Some((id, addr)) = part.split_once('=') else {
            bail!("peer {part:?} must look like ID=HOST:PORT");
        };
        let id: u64 = id.trim().parse().with_context(|| format!("peer id {id:?} is not a number"))?;
        let addr = addr.trim();
        let url = if addr.starts_with("http://") || addr.starts_with("https://") {
            addr.to_owned()
        } else {
            format!("http://{addr}")
        };
        if url.parse::<http::Uri>().ok().and_then(|u| u.port_u16()).is_none() {
            bail!("peer {id} address {addr:?} must be HOST:PORT");
        }
        if out.insert(id, url).is_some() {
            bail!("peer id {id} is given twice");
        }
    }
    if out.is_empty() {
        bail!("--peers lists no controller");
    }
    Ok(out)
}

/// Serves a controller node's gRPC services on `listener` until `stop` fires.
pub fn serve_controller(
    node: &ControllerNode,
    listener: TcpListener,
    stop: impl std::future::Future<Output = ()> + Send + 'static,
) -> tokio::task::JoinHandle<Result<(), tonic::transport::Error>> {
    let server = grpc_server()
        .layer(node.forward_layer())
        .add_routes(node.grpc_routes())
        .serve_with_incoming_shutdown(incoming(listener), stop);
    tokio::spawn(server)
}

/// Runs `nadi controller` until Ctrl-C / SIGTERM.
pub async fn run_controller(args: ControllerArgs) -> anyhow::Result<()> {
    let file: ControllerFile = read_toml(args.config.as_deref())?;
    let id = args.id.or(file.id).context("--id is required")?;
    let listen = args.listen.or(file.listen).context("--listen is required")?;
    let peers = parse_peers(&args.peers.or(file.peers).context("--peers is required")?)?;
    if !peers.contains_key(&id) {
        bail!("--id {id} is not one of --peers");
    }
    let data_dir = args.data_dir.or(file.data_dir).unwrap_or_else(|| PathBuf::from("nadi-data"));
    let http_listen = args.http_listen.or(file.http_listen);
    let reader_timeout = match args.reader_timeout.or(file.reader_timeout) {
        Some(s) => crate::config::parse_duration(&s)?,
        None => nadi_controller::node::DEFAULT_READER_TIMEOUT,
    };
    let scaler = args
        .scaler
        .or(ScalerArgs {
            load_tick: file.load_tick,
            scale_cooldown: file.scale_cooldown,
            scale_mute: file.scale_mute,
            max_segments: file.max_segments,
        })
        .settings()?;
    let retention_every = match args.retention_interval.or(file.retention_interval) {
        Some(s) => crate::config::parse_duration(&s)?,
        None => nadi_controller::retention::DEFAULT_RETENTION_EVERY,
    };

    let listener = bind(listen, "controller").await?;
    let http_listener = match http_listen {
        Some(a) => Some(bind(a, "admin HTTP API").await?),
        None => None,
    };
    let node = ControllerNode::start(NodeConfig {
        id,
        dir: data_dir.join("controller"),
        members: peers,
        settings: RaftSettings::default(),
        http_address: match &http_listener {
            Some(l) => Some(format!("http://{}", l.local_addr()?)),
            None => None,
        },
        reader_timeout,
        scaler,
        retention_every,
    })
    .await?;
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let grpc = serve_controller(&node, listener, stopped(stop_rx.clone()));
    let mut http_addr = String::new();
    let http = match http_listener {
        Some(l) => {
            http_addr = format!(", admin http://{}", l.local_addr()?);
            // The admin HTTP API is a client of this node's own gRPC endpoint (so it is
            // forwarded to the leader like any client request).
            let router = nadi_controller::http::router(&format!("http://{listen}"))?;
            let server = axum::serve(l, router).with_graceful_shutdown(stopped(stop_rx));
            Some(tokio::spawn(async move { server.await }))
        }
        None => None,
    };
    eprintln!("nadi controller {id} ready: grpc http://{listen}{http_addr}, data {}", data_dir.display());
    shutdown_signal().await;
    eprintln!("nadi controller {id}: shutting down");
    let _ = stop_tx.send(true);
    let _ = tokio::time::timeout(Duration::from_secs(3), async {
        let _ = grpc.await;
        if let Some(h) = http {
            let _ = h.await;
        }
    })
    .await;
    let _ = node.meta.node().raft.shutdown().await;
    Ok(())
}

/// Resolves when `rx` says stop.
pub async fn stopped(mut rx: tokio::sync::watch::Receiver<bool>) {
    let _ = rx.wait_for(|s| *s).await;
}

/// The stable id of the segment store whose Tier-1 data is in `dir` (created on first start).
pub fn store_id(dir: &Path) -> anyhow::Result<String> {
    let path = dir.join("store-id");
    match std::fs::read_to_string(&path) {
        Ok(s) => Ok(s.trim().to_owned()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            std::fs::create_dir_all(dir)?;
            let id = format!("store-{:016x}", rand::random::<u64>());
            nadi_controller::fsutil::write_atomic(&path, format!("{id}\n").as_bytes())
                .with_context(|| format!("writing {}", path.display()))?;
            Ok(id)
        }
        Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
    }
}

/// How often a store heartbeats: every 2 s, or every load tick if that is shorter (so the
/// auto-scaler sees each tick's rates).
pub fn heartbeat_every(load: &crate::load::LoadSettings) -> Duration {
    load.tick.min(Duration::from_secs(2))
}

/// Registers the store with the controllers, then keeps heartbeating every `every`, failing
/// over between `controllers`; every heartbeat carries the latest rates of `load`. Returns after
/// the first successful registration; the heartbeats go on in the background.
pub async fn register(
    controllers: Vec<String>,
    request: rpb::HeartbeatRequest,
    load: StoreLoad,
    every: Duration,
    first_deadline: Duration,
) -> anyhow::Result<Vec<u32>> {
    let clients: Vec<_> = controllers
        .iter()
        .map(|url| {
            let ch = tonic::transport::Endpoint::from_shared(url.clone())
                .with_context(|| format!("controller URL {url:?}"))?
                .connect_timeout(Duration::from_millis(500))
                .timeout(Duration::from_secs(5))
                .connect_lazy();
            Ok(SegmentStoreRegistryClient::new(ch))
        })
        .collect::<anyhow::Result<_>>()?;
    if clients.is_empty() {
        bail!("no controller URL given (--controller)");
    }
    let beat = {
        let clients = clients.clone();
        let request = request.clone();
        move |start: usize| {
            let clients = clients.clone();
            let mut request = request.clone();
            (request.loads, request.load_windows_ms) = load.report();
            async move {
                let mut last = None;
                for i in 0..clients.len() {
                    let idx = (start + i) % clients.len();
                    match clients[idx].clone().heartbeat(request.clone()).await {
                        Ok(r) => return Ok((idx, r.into_inner())),
                        Err(s) => last = Some(s),
                    }
                }
                Err(last.expect("at least one controller"))
            }
        }
    };
    let deadline = tokio::time::Instant::now() + first_deadline;
    let mut preferred = 0;
    let assigned = loop {
        match beat(preferred).await {
            Ok((idx, r)) => {
                preferred = idx;
                break r.assigned_containers;
            }
            Err(s) if nadi_proto::errors::from_status(&s).0.is_retryable() || s.code() == tonic::Code::Unavailable => {
                if tokio::time::Instant::now() >= deadline {
                    bail!("could not register with the controller: {}", s.message());
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(s) => bail!("the controller refused this segment store: {}", s.message()),
        }
    };
    tokio::spawn(async move {
        let mut preferred = preferred;
        loop {
            tokio::time::sleep(every).await;
            match beat(preferred).await {
                Ok((idx, _)) => preferred = idx,
                Err(s) => tracing::warn!(error = %s.message(), "heartbeat to the controllers failed; retrying"),
            }
        }
    });
    Ok(assigned)
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
    let store_cfg = crate::standalone::store_config(&cfg)?;
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peers_parse_and_bad_ones_are_refused() {
        let p = parse_peers("1=127.0.0.1:9001, 2=localhost:9002,3=http://h:9003").unwrap();
        assert_eq!(p[&1], "http://127.0.0.1:9001");
        assert_eq!(p[&2], "http://localhost:9002");
        assert_eq!(p[&3], "http://h:9003");
        for bad in ["", "1", "x=h:1", "1=h", "1=h:1,1=h:2"] {
            assert!(parse_peers(bad).is_err(), "{bad:?} must be refused");
        }
    }
}
