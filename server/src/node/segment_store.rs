//! `nadi segment-store`: a segment store that registers with the controllers and serves its
//! containers. `nadi standalone` opens its store with the same [`store_config`]. Its settings
//! are [`super::config::SegmentStoreSettings`].
//!
//! Owns: running `nadi segment-store`. Calls: `crate::store`, `crate::net`, `node::config`,
//! `node::registration`, `node::pravega`. Called by: `main`, `node::standalone`.

use std::sync::Arc;
use std::time::Duration;

use anyhow::bail;
use nadi_proto::raft::v1 as rpb;

use super::config::{SegmentStoreConfig, StoreNodeConfig};
use super::registration::{heartbeat_every, register, store_id};
use super::{bind, grpc_server, http_incoming, incoming, scheme, server_tls, shutdown_signal, stopped};
use crate::container::ContainerOptions;
use crate::log::file::FileLogOptions;
use crate::net::service::SegmentService;
use crate::store::load::StoreLoad;
use crate::store::{SegmentStore, StoreConfig};

/// The segment store's settings (Tier-1 under DATA_DIR/tier1, Tier-2 as configured).
pub fn store_config(cfg: &StoreNodeConfig) -> anyhow::Result<StoreConfig> {
    let tier1 = cfg.data_dir.join("tier1");
    let tier2 = match &cfg.tier.url {
        Some(url) => {
            let backend = crate::tier2::open_url(url, cfg.tier.endpoint.as_deref())?;
            // Single-copy: each store's objects under its own id. Replicated: one folder the
            // replicas of a container share (whichever leads moves its data there).
            let folder = match cfg.container_log {
                super::config::ContainerLogMode::SingleCopy => store_id(&tier1)?,
                super::config::ContainerLogMode::Raft => crate::tier2::REPLICATED_FOLDER.to_owned(),
            };
            Some(Arc::new(crate::tier2::Tier2::new(backend, &folder, cfg.tier.cache_bytes)))
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
            metrics: crate::metrics::StoreMetrics::default(),
            replication: match cfg.container_log {
                super::config::ContainerLogMode::SingleCopy => None,
                super::config::ContainerLogMode::Raft => Some(Default::default()),
            },
        },
    })
}

/// Runs `nadi segment-store` until Ctrl-C / SIGTERM.
pub async fn run_segment_store(controllers: Vec<String>, cfg: SegmentStoreConfig) -> anyhow::Result<()> {
    let SegmentStoreConfig { listen, advertise, http_listen, replicas, pravega_segment, store: cfg, security } = cfg;
    let tls = server_tls(&security.tls)?;
    let scheme = scheme(tls.as_ref());
    // With TLS on, the controllers are called over TLS too.
    let controllers: Vec<String> = controllers.iter().map(|c| nadi_security::tls::node_url(c, tls.is_some())).collect();
    let auth = super::authenticator(&security)?;
    let auth_required = auth.mode() == nadi_security::auth::AuthMode::Required;
    let access = crate::net::access::Access::new(auth.clone());
    let data_dir = cfg.data_dir.clone();
    let listener = bind(listen, "segment store").await?;
    let bound = listener.local_addr()?;
    let pravega_segments = match &pravega_segment {
        Some(p) => Some(super::pravega::bind_segments(p).await?),
        None => None,
    };
    let advertise = match advertise {
        Some(a) => a,
        None if bound.ip().is_unspecified() => {
            bail!("--listen {bound} is a wildcard address: give --advertise with the URL clients should use")
        }
        None => format!("{scheme}://{bound}"),
    };
    let tier1 = data_dir.join("tier1");
    let mut store_cfg = store_config(&cfg)?;
    // Replicated containers: their groups are reached through this store's gRPC server.
    let groups = replicas.as_ref().map(|(id, _)| crate::replica::network::Groups::new(*id));
    if let (Some((id, peers)), Some(groups)) = (&replicas, &groups) {
        store_cfg.container.replication = Some(crate::container::replicated::ReplicationOptions {
            node_id: *id,
            advertise: peers[id].clone(),
            network: Some(crate::container::replicated::ReplicaNetwork {
                groups: groups.clone(),
                channels: crate::replica::network::Channels::new(security.client.clone()),
            }),
            bootstrap: peers.clone(),
            ..Default::default()
        });
    }
    // `raft` without static peers: the controllers place this store's replicas.
    let placed = replicas.is_none() && cfg.container_log == super::config::ContainerLogMode::Raft;
    let replica_id = placed.then(|| replica_id_of(&store_id(&tier1)?)).transpose()?;
    let placed_groups = replica_id.map(crate::replica::network::Groups::new);
    if let (Some(id), Some(groups)) = (replica_id, &placed_groups) {
        store_cfg.container.replication = Some(crate::container::replicated::ReplicationOptions {
            node_id: id,
            advertise: advertise.clone(),
            network: Some(crate::container::replicated::ReplicaNetwork {
                groups: groups.clone(),
                channels: crate::replica::network::Channels::new(security.client.clone()),
            }),
            placed: true,
            ..Default::default()
        });
    }
    let groups = groups.or(placed_groups);
    let metrics = store_cfg.container.metrics.clone();
    let capacity = store_cfg.tier1_capacity();
    let store = Arc::new(tokio::task::spawn_blocking(move || SegmentStore::open(&store_cfg)).await??);
    store.start_tiering();
    store.start_metrics(metrics.clone(), capacity, Duration::from_secs(2));
    let id = store_id(&tier1)?;
    let load = StoreLoad::new(cfg.load.clone());
    load.spawn_ticker(store.clone());
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let server = grpc_server(tls.as_ref())
        .layer(nadi_security::auth::AuthLayer::new(auth.clone()))
        .add_service(
            SegmentService::new(store.clone()).with_load(load.clone()).with_access(access.clone()).into_server(),
        )
        .add_optional_service(groups.map(|g| crate::replica::network::ReplicaGrpc::service_with(g, auth_required)))
        .serve_with_incoming_shutdown(incoming(listener, tls.as_ref())?, stopped(stop_rx.clone()));
    let task = tokio::spawn(server);
    let mut pravega_line = String::new();
    let mut pravega_advertised = String::new();
    let mut pravega_addrs = Vec::new();
    let pravega_task = match pravega_segments {
        Some((l, advertised)) => {
            pravega_line = format!(", pravega segments {advertised}");
            pravega_addrs.push(l.local_addr()?);
            pravega_advertised = advertised;
            Some(super::pravega::serve_segments(
                l,
                tls.as_ref(),
                crate::net::pravega::PravegaWire::new(store.clone(), load.clone(), access.clone()),
                stopped(stop_rx),
            )?)
        }
        None => None,
    };
    let ready = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let http_task = match http_listen {
        Some(addr) => {
            let listener = bind(addr, "segment store HTTP").await?;
            super::logging::banner(&format!(
                "nadi segment-store: metrics on {scheme}://{}/metrics",
                listener.local_addr()?
            ));
            let guard = (auth_required && security.metrics_auth).then(|| access.clone());
            let app = super::ops_http::router(&metrics, ready.clone(), guard)
                .into_make_service_with_connect_info::<nadi_security::listen::ConnInfo>();
            let listener = http_incoming(listener, tls.as_ref())?;
            Some(tokio::spawn(async move { axum::serve(listener, app).await }))
        }
        None => None,
    };
    let request = rpb::HeartbeatRequest {
        store_id: id.clone(),
        endpoint: advertise.clone(),
        containers: store.containers().len() as u32,
        replicated: replicas.is_some() || placed,
        replica_id: replica_id.unwrap_or(0),
        pravega_endpoint: pravega_advertised,
        ..Default::default()
    };
    let every = heartbeat_every(&cfg.load);
    let leading = super::registration::leading_of(store.clone());
    let placing = placing_of(store.clone());
    let assigned = register(
        controllers,
        &security.client,
        &access,
        request,
        load,
        leading,
        placing,
        every,
        Duration::from_secs(60),
    )
    .await?;
    ready.store(true, std::sync::atomic::Ordering::Release);
    let mut addrs = vec![bound];
    addrs.extend(http_listen);
    addrs.extend(pravega_addrs);
    let notice = super::security_notice(&security, &addrs);
    super::logging::banner(&format!(
        "nadi segment-store ready: {advertise}{pravega_line} (store {id}, containers {assigned:?}; {notice})"
    ));
    shutdown_signal().await;
    super::logging::banner("nadi segment-store: shutting down");
    let _ = stop_tx.send(true);
    if let Some(t) = http_task {
        t.abort();
    }
    let _ = tokio::time::timeout(Duration::from_secs(3), async {
        let _ = task.await;
        if let Some(t) = pravega_task {
            let _ = t.await;
        }
    })
    .await;
    Ok(())
}

/// This store's id in its containers' groups when the controllers place them: the random
/// number in its store id (a wiped data dir gets a new store id, hence a new replica id: it
/// rejoins as a new, empty replica, never with a vote it has forgotten).
pub fn replica_id_of(store_id: &str) -> anyhow::Result<u64> {
    let id = store_id
        .strip_prefix("store-")
        .and_then(|hex| u64::from_str_radix(hex, 16).ok())
        .filter(|&id| id != 0)
        .ok_or_else(|| anyhow::anyhow!("store id {store_id:?} has no replica id (store-<16 hex digits>)"))?;
    Ok(id)
}

/// What a store does with the controllers' placement in each heartbeat answer.
fn placing_of(store: Arc<SegmentStore>) -> super::registration::Placing {
    Arc::new(move |r: &rpb::HeartbeatResponse| {
        for placed in &r.replicas {
            let Some(container) = store.containers().get(placed.container as usize) else {
                tracing::warn!(container = placed.container, "placed a container this store does not have");
                continue;
            };
            let members = placed.members.iter().map(|m| (m.id, m.endpoint.clone())).collect();
            container.place(members, placed.start);
        }
    })
}
