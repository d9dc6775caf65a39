//! `nadi controller`: one member of the Raft group of controllers, with its optional admin
//! HTTP API. `nadi standalone` runs the same node as a group of one (and serves it with
//! [`serve_controller`]). Its settings are [`super::config::ControllerSettings`].
//!
//! Owns: running `nadi controller`. Calls: `nadi_controller`, `node::config`. Called by: `main`,
//! `node::standalone`, `node::segment_store`.

use std::time::Duration;

use nadi_controller::node::{ControllerNode, NodeConfig};
use nadi_controller::raft::RaftSettings;
use tokio::net::TcpListener;

use super::config::ControllerConfig;
use super::{bind, grpc_server, incoming, shutdown_signal, stopped};

/// Serves a controller node's gRPC services on `listener` until `stop` fires.
pub fn serve_controller(
    node: &ControllerNode,
    listener: TcpListener,
    stop: impl std::future::Future<Output = ()> + Send + 'static,
) -> tokio::task::JoinHandle<Result<(), tonic::transport::Error>> {
    let server = grpc_server()
        .layer(node.auth_layer())
        .layer(node.forward_layer())
        .add_routes(node.grpc_routes())
        .serve_with_incoming_shutdown(incoming(listener), stop);
    tokio::spawn(server)
}

/// Runs `nadi controller` until Ctrl-C / SIGTERM.
pub async fn run_controller(cfg: ControllerConfig) -> anyhow::Result<()> {
    let ControllerConfig { id, listen, peers, http_listen, data_dir, control, security } = cfg;
    let auth = super::authenticator(&security)?;
    let listener = bind(listen, "controller").await?;
    let http_listener = match http_listen {
        Some(a) => Some(bind(a, "admin HTTP API").await?),
        None => None,
    };
    let node = ControllerNode::start(NodeConfig {
        id,
        dir: data_dir.join("controller"),
        members: peers,
        settings: RaftSettings {
            client: security.client.clone(),
            auth_required: security.auth.mode == nadi_security::auth::AuthMode::Required,
            ..RaftSettings::default()
        },
        http_address: match &http_listener {
            Some(l) => Some(format!("http://{}", l.local_addr()?)),
            None => None,
        },
        reader_timeout: control.reader_timeout,
        scaler: control.scaler,
        retention_every: control.retention_interval,
        placement: control.placement,
        auth: auth.clone(),
    })
    .await?;
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let grpc = serve_controller(&node, listener, stopped(stop_rx.clone()));
    let mut http_addr = String::new();
    let http = match http_listener {
        Some(l) => {
            http_addr = format!(", admin {}://{}", security.scheme(), l.local_addr()?);
            // The admin HTTP API is a client of this node's own gRPC endpoint (so it is
            // forwarded to the leader like any client request).
            let http_security = nadi_controller::http::HttpSecurity {
                client: security.client.clone(),
                metrics_auth: security.metrics_auth,
                auth: Some(auth.clone()),
            };
            let router = nadi_controller::http::router_with_metrics(
                &format!("{}://{listen}", security.scheme()),
                &http_security,
                |r| node.register_metrics(r),
            )?;
            let server = axum::serve(l, router).with_graceful_shutdown(stopped(stop_rx));
            Some(tokio::spawn(async move { server.await }))
        }
        None => None,
    };
    let mut addrs = vec![listen];
    addrs.extend(http_listen);
    let notice = super::security_notice(&security, &addrs);
    super::logging::banner(&format!(
        "nadi controller {id} ready: grpc {}://{listen}{http_addr}, data {} ({notice})",
        security.scheme(),
        data_dir.display()
    ));
    shutdown_signal().await;
    super::logging::banner(&format!("nadi controller {id}: shutting down"));
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
