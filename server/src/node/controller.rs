//! `nadi controller`: one member of the Raft group of controllers, with its optional admin
//! HTTP API. `nadi standalone` runs the same node as a group of one (and serves it with
//! [`serve_controller`]). Its settings are [`super::config::ControllerSettings`].
//!
//! Owns: running `nadi controller`. Calls: `nadi_controller`, `node::config`, `node::pravega`. Called by: `main`,
//! `node::standalone`, `node::segment_store`.

use std::sync::Arc;
use std::time::Duration;

use nadi_controller::node::{ControllerNode, NodeConfig};
use nadi_controller::raft::RaftSettings;
use nadi_security::listen::ConnInfo;
use nadi_security::tls::ServerTls;
use tokio::net::TcpListener;

use super::config::ControllerConfig;
use super::{bind, grpc_server, http_incoming, incoming, scheme, server_tls, shutdown_signal, stopped};

/// Serves a controller node's gRPC services on `listener` (TLS with `tls`) until `stop` fires.
pub fn serve_controller(
    node: &ControllerNode,
    listener: TcpListener,
    tls: Option<&Arc<ServerTls>>,
    stop: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<tokio::task::JoinHandle<Result<(), tonic::transport::Error>>> {
    let server = grpc_server(tls)
        .layer(node.auth_layer())
        .layer(node.forward_layer())
        .add_routes(node.grpc_routes())
        .serve_with_incoming_shutdown(incoming(listener, tls)?, stop);
    Ok(tokio::spawn(server))
}

/// Serves the admin HTTP API `router` on `listener` (TLS with `tls`) until `stop` fires.
pub fn serve_admin_http(
    router: axum::Router,
    listener: TcpListener,
    tls: Option<&Arc<ServerTls>>,
    stop: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<tokio::task::JoinHandle<std::io::Result<()>>> {
    let server = axum::serve(http_incoming(listener, tls)?, router.into_make_service_with_connect_info::<ConnInfo>())
        .with_graceful_shutdown(stop);
    Ok(tokio::spawn(async move { server.await }))
}

/// Runs `nadi controller` until Ctrl-C / SIGTERM.
pub async fn run_controller(cfg: ControllerConfig) -> anyhow::Result<()> {
    let ControllerConfig { id, listen, peers, http_listen, pravega_controller_listen, data_dir, control, security } =
        cfg;
    let tls = server_tls(&security.tls)?;
    let scheme = scheme(tls.as_ref());
    let auth = super::authenticator(&security)?;
    let listener = bind(listen, "controller").await?;
    let http_listener = match http_listen {
        Some(a) => Some(bind(a, "admin HTTP API").await?),
        None => None,
    };
    let pravega_listener = match pravega_controller_listen {
        Some(a) => Some(bind(a, "Pravega controller API").await?),
        None => None,
    };
    // The admin HTTP API is a client of this node's own gRPC endpoint. Over TLS it calls the
    // URL the other members use, the name its certificate is made out to.
    let own_url = match &tls {
        Some(_) => peers.get(&id).cloned().unwrap_or_else(|| format!("https://{listen}")),
        None => format!("http://{listen}"),
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
            Some(l) => Some(format!("{scheme}://{}", l.local_addr()?)),
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
    let grpc = serve_controller(&node, listener, tls.as_ref(), stopped(stop_rx.clone()))?;
    let mut http_addr = String::new();
    let http = match http_listener {
        Some(l) => {
            http_addr = format!(", admin {scheme}://{}", l.local_addr()?);
            // Through its own gRPC endpoint, the admin HTTP API's requests are forwarded to the
            // leader like any client's.
            let http_security = nadi_controller::http::HttpSecurity {
                client: security.client.clone(),
                metrics_auth: security.metrics_auth,
                auth: Some(auth.clone()),
            };
            let router =
                nadi_controller::http::router_with_metrics(&own_url, &http_security, |r| node.register_metrics(r))?;
            Some(serve_admin_http(router, l, tls.as_ref(), stopped(stop_rx.clone()))?)
        }
        None => None,
    };
    // Pravega's controller API, a client of this node's gRPC endpoint like the admin HTTP API;
    // it sends Pravega clients to the stores that report a Pravega segment endpoint.
    let mut pravega_line = String::new();
    let pravega = match pravega_listener {
        Some(l) => {
            pravega_line =
                format!(", pravega controller {}", super::pravega::controller_uri(l.local_addr()?, tls.is_some()));
            let auth = auth.clone();
            Some(super::pravega::serve_controller(
                &own_url,
                &security.client,
                auth,
                l,
                tls.as_ref(),
                stopped(stop_rx.clone()),
            )?)
        }
        None => None,
    };
    let mut addrs = vec![listen];
    addrs.extend(http_listen);
    addrs.extend(pravega_controller_listen);
    let notice = super::security_notice(&security, &addrs);
    super::logging::banner(&format!(
        "nadi controller {id} ready: grpc {scheme}://{listen}{http_addr}{pravega_line}, data {} ({notice})",
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
        if let Some(h) = pravega {
            let _ = h.await;
        }
    })
    .await;
    let _ = node.meta.node().raft.shutdown().await;
    Ok(())
}
