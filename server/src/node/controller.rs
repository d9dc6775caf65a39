//! `nadi controller`: one member of the Raft group of controllers, with its optional admin
//! HTTP API. `nadi standalone` runs the same node as a group of one.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail};
use nadi_controller::node::{ControllerNode, NodeConfig};
use nadi_controller::raft::RaftSettings;
use serde::Deserialize;
use tokio::net::TcpListener;

use super::config::ScalerArgs;
use super::{bind, grpc_server, incoming, shutdown_signal, stopped};

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

/// Reads a TOML settings file (none: every key unset).
pub(super) fn read_toml<T: for<'de> Deserialize<'de> + Default>(path: Option<&Path>) -> anyhow::Result<T> {
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
        Some(s) => crate::node::config::parse_duration(&s)?,
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
        Some(s) => crate::node::config::parse_duration(&s)?,
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
