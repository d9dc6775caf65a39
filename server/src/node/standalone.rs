//! `nadi standalone`: controller, segment store and admin HTTP in one process.
//!
//! Start-up order: recover the segment store (every container replays its log), bind all
//! listeners (so a port in use fails fast with a clear message), start the controller as a
//! Raft group of one (the same code as `nadi controller`; as leader it resumes interrupted
//! workflows), serve, and register the store with the controller as any segment store does.
//! "ready" is printed only after that registration. Ctrl-C or SIGTERM stops accepting new work
//! and exits; everything acknowledged is already durable, so no flush is needed on the way out.
//!
//! Owns: running `nadi standalone`. Calls: `node::controller`, `node::segment_store`,
//! `node::registration`, `node::pravega`. Called by: `main`.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use nadi_controller::node::{ControllerNode, NodeConfig};
use nadi_controller::raft::RaftSettings;
use nadi_proto::raft::v1::HeartbeatRequest;

use super::controller::{serve_admin_http, serve_controller};
use super::registration::{heartbeat_every, register, store_id};
use super::segment_store::store_config;
use super::{bind, grpc_server, incoming, scheme, server_tls, shutdown_signal, stopped};
use crate::net::service::SegmentService;
use crate::node::config::StandaloneConfig;
use crate::store::SegmentStore;
use crate::store::load::StoreLoad;

/// Runs until Ctrl-C / SIGTERM.
pub async fn run(cfg: StandaloneConfig) -> anyhow::Result<()> {
    // TLS files are checked before the store is opened: a wrong file fails fast.
    let tls = server_tls(&cfg.security.tls)?;
    let scheme = scheme(tls.as_ref());
    let data_dir = cfg.store.data_dir.clone();
    let mut security = cfg.security.clone();
    // The store and the admin API call this process's controller: with tokens required they
    // present a random token only this process knows (a node's), unless given one.
    let own_token = format!("nadi_self_{:032x}", rand::random::<u128>());
    let auth = std::sync::Arc::new(nadi_security::auth::Authenticator::new(&security.auth)?.with_own_token(&own_token));
    if security.client.token.is_none() {
        security.client.token = Some(own_token);
    }
    std::fs::create_dir_all(&data_dir).with_context(|| format!("creating data dir {}", data_dir.display()))?;
    let store_cfg = store_config(&cfg.store)?;
    let metrics = store_cfg.container.metrics.clone();
    let capacity = store_cfg.tier1_capacity();
    let store = tokio::task::spawn_blocking(move || SegmentStore::open(&store_cfg)).await??;
    let store = Arc::new(store);
    store.start_tiering();
    store.start_metrics(metrics.clone(), capacity, std::time::Duration::from_secs(2));

    let seg_listener = bind(cfg.segment_listen, "segment store").await?;
    let ctl_listener = bind(cfg.controller_listen, "controller").await?;
    let http_listener = bind(cfg.http_listen, "admin HTTP API").await?;
    let pravega_ctl_listener = match cfg.pravega_controller_listen {
        Some(a) => Some(bind(a, "Pravega controller API").await?),
        None => None,
    };
    let pravega_segments = match &cfg.pravega_segment {
        Some(p) => Some(super::pravega::bind_segments(p).await?),
        None => None,
    };
    let seg_addr = seg_listener.local_addr()?;
    let ctl_addr = ctl_listener.local_addr()?;
    let http_addr = http_listener.local_addr()?;
    // What this process calls itself at (its admin HTTP API and its store call its controller):
    // loopback when it listens on a wildcard address.
    let own = |a: std::net::SocketAddr| {
        if a.ip().is_unspecified() { std::net::SocketAddr::from(([127, 0, 0, 1], a.port())) } else { a }
    };
    let ctl_url = format!("{scheme}://{}", own(ctl_addr));
    // The same controller code as a cluster, as a Raft group of one.
    let node = ControllerNode::start(NodeConfig {
        id: 1,
        dir: data_dir.join("controller"),
        members: BTreeMap::from([(1, ctl_url.clone())]),
        settings: RaftSettings {
            client: security.client.clone(),
            auth_required: security.auth.mode == nadi_security::auth::AuthMode::Required,
            ..RaftSettings::default()
        },
        http_address: Some(format!("{scheme}://{http_addr}")),
        reader_timeout: cfg.control.reader_timeout,
        scaler: cfg.control.scaler.clone(),
        retention_every: cfg.control.retention_interval,
        placement: cfg.control.placement,
        auth: auth.clone(),
    })
    .await?;

    let load = StoreLoad::new(cfg.store.load.clone());
    load.spawn_ticker(store.clone());
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let access = crate::net::access::Access::new(auth.clone());
    let seg_server = grpc_server(tls.as_ref())
        .layer(nadi_security::auth::AuthLayer::new(auth.clone()))
        .add_service(
            SegmentService::new(store.clone()).with_load(load.clone()).with_access(access.clone()).into_server(),
        )
        .serve_with_incoming_shutdown(incoming(seg_listener, tls.as_ref())?, stopped(stop_rx.clone()));
    let seg_task = tokio::spawn(seg_server);
    let ctl_task = serve_controller(&node, ctl_listener, tls.as_ref(), stopped(stop_rx.clone()))?;
    // The admin HTTP API is a client of this node's own controller gRPC endpoint.
    let http_security = nadi_controller::http::HttpSecurity {
        client: security.client.clone(),
        metrics_auth: security.metrics_auth,
        auth: Some(auth.clone()),
    };
    let http_router = nadi_controller::http::router_with_metrics(&ctl_url, &http_security, |r| {
        metrics.register(r);
        node.register_metrics(r);
    })?;
    let http_task = serve_admin_http(http_router, http_listener, tls.as_ref(), stopped(stop_rx.clone()))?;
    // The Pravega front end, if asked for: its controller API is a client of this node's own
    // controller, and this process's store is where it sends Pravega clients for segments.
    let mut pravega_line = String::new();
    let mut pravega_addrs = Vec::new();
    let mut pravega_tasks: Vec<tokio::task::JoinHandle<()>> = Vec::new();
    if let Some(listener) = pravega_ctl_listener {
        pravega_addrs.push(listener.local_addr()?);
        let uri = super::pravega::controller_uri(listener.local_addr()?, tls.is_some());
        pravega_line.push_str(&format!(", pravega controller {uri}"));
        let task = super::pravega::serve_controller(
            &ctl_url,
            &security.client,
            auth.clone(),
            listener,
            tls.as_ref(),
            stopped(stop_rx.clone()),
        )?;
        pravega_tasks.push(tokio::spawn(async move {
            let _ = task.await;
        }));
    }
    let mut pravega_advertised = String::new();
    if let Some((listener, advertised)) = pravega_segments {
        pravega_addrs.push(listener.local_addr()?);
        pravega_line.push_str(&format!(", pravega segments {advertised}"));
        pravega_tasks.push(super::pravega::serve_segments(
            listener,
            tls.as_ref(),
            crate::net::pravega::PravegaWire::new(store.clone(), load.clone(), access.clone()),
            stopped(stop_rx.clone()),
        )?);
        pravega_advertised = advertised;
    }

    // The store registers with its controller like any segment store of a cluster.
    let tier1 = data_dir.join("tier1");
    let request = HeartbeatRequest {
        store_id: store_id(&tier1)?,
        endpoint: format!("{scheme}://{seg_addr}"),
        containers: store.containers().len() as u32,
        pravega_endpoint: pravega_advertised,
        ..Default::default()
    };
    let every = heartbeat_every(&cfg.store.load);
    let leading = super::registration::leading_of(store.clone());
    register(
        vec![ctl_url.clone()],
        &security.client,
        &access,
        request,
        load,
        leading,
        std::sync::Arc::new(|_| {}),
        every,
        Duration::from_secs(60),
    )
    .await?;

    tracing::info!(controller = %ctl_addr, segment_store = %seg_addr, http = %http_addr, data_dir = %data_dir.display(), "nadi standalone ready");
    let mut addrs = vec![ctl_addr, seg_addr, http_addr];
    addrs.extend(pravega_addrs);
    let notice = super::security_notice(&security, &addrs);
    super::logging::banner(&format!(
        "nadi standalone ready: controller {scheme}://{ctl_addr}, segment store {scheme}://{seg_addr}, admin {scheme}://{http_addr}{pravega_line} ({notice})"
    ));

    shutdown_signal().await;
    super::logging::banner("nadi standalone: shutting down");
    let _ = stop_tx.send(true);
    // Open tail reads would keep a graceful shutdown waiting forever: give it a few seconds.
    let all = async {
        let _ = seg_task.await;
        let _ = ctl_task.await;
        let _ = http_task.await;
        for t in pravega_tasks {
            let _ = t.await;
        }
    };
    if tokio::time::timeout(Duration::from_secs(3), all).await.is_err() {
        tracing::info!("closing remaining client streams");
    }
    Ok(())
}
