//! A segment store's identity and its registration with the controllers: the stable store id
//! kept in its Tier-1 directory, and the heartbeats that carry its load and tell it which
//! containers it holds.
//!
//! Owns: a store's id, registration and heartbeats. Calls: `crate::store` (load reports). Called
//! by: `node::segment_store`, `node::standalone`.

use std::path::Path;
use std::time::Duration;

use anyhow::{Context, bail};
use nadi_proto::raft::v1 as rpb;
use nadi_proto::raft::v1::segment_store_registry_client::SegmentStoreRegistryClient;

use crate::store::load::StoreLoad;

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

/// The replicated containers whose replica on this store leads now, with their groups as it
/// sees them (reported with every heartbeat, so that the controllers send clients there); the
/// followers' lag only when asked (`true`: for a heartbeat, not for the watch between them).
pub type Leading = std::sync::Arc<dyn Fn(bool) -> Vec<rpb::LedGroup> + Send + Sync>;

/// The [`Leading`] of `store`'s containers.
pub fn leading_of(store: std::sync::Arc<crate::store::SegmentStore>) -> Leading {
    std::sync::Arc::new(move |with_lag| {
        store
            .containers()
            .iter()
            .filter_map(|c| {
                let v = c.group_view(with_lag)?;
                let followers = v
                    .followers
                    .iter()
                    .map(|&(id, entries_behind, bytes_behind)| rpb::FollowerLag { id, entries_behind, bytes_behind })
                    .collect();
                Some(rpb::LedGroup {
                    container: c.id(),
                    term: v.term,
                    voters: v.voters,
                    followers,
                    changing: v.changing,
                })
            })
            .collect()
    })
}

/// What of a [`Leading`] report makes a heartbeat worth sending at once: which containers lead,
/// in which term, with which voters (not the lag, which changes all the time).
fn leadership(groups: &[rpb::LedGroup]) -> Vec<(u32, u64, Vec<u64>, bool)> {
    groups.iter().map(|g| (g.container, g.term, g.voters.clone(), g.changing)).collect()
}

/// What a store does with each heartbeat's answer (the controllers' placement of its
/// replicas).
pub type Placing = std::sync::Arc<dyn Fn(&rpb::HeartbeatResponse) + Send + Sync>;

/// How often a store heartbeats: every 2 s, or every load tick if that is shorter (so the
/// auto-scaler sees each tick's rates).
pub fn heartbeat_every(load: &crate::store::load::LoadSettings) -> Duration {
    load.tick.min(Duration::from_secs(2))
}

/// Registers the store with the controllers, then keeps heartbeating every `every`, failing
/// over between `controllers`; every heartbeat carries the latest rates of `load`. Returns after
/// the first successful registration; the heartbeats go on in the background.
#[allow(clippy::too_many_arguments)]
pub async fn register(
    controllers: Vec<String>,
    security: &nadi_security::channel::ClientSecurity,
    access: &crate::net::access::Access,
    request: rpb::HeartbeatRequest,
    load: StoreLoad,
    leading: Leading,
    placing: Placing,
    every: Duration,
    first_deadline: Duration,
) -> anyhow::Result<Vec<u32>> {
    let clients: Vec<_> = controllers
        .iter()
        .map(|url| {
            let endpoint = security.endpoint(url).with_context(|| format!("controller URL {url:?}"))?;
            let ch = security.wrap(
                endpoint.connect_timeout(Duration::from_millis(500)).timeout(Duration::from_secs(5)).connect_lazy(),
            )?;
            Ok(SegmentStoreRegistryClient::new(ch))
        })
        .collect::<anyhow::Result<_>>()?;
    if clients.is_empty() {
        bail!("no controller URL given (--controller)");
    }
    {
        // A call about to be refused first asks the controllers for the current grants.
        let clients: Vec<SegmentStoreRegistryClient<_>> = clients.clone();
        access.set_refresh(std::sync::Arc::new(move |known| {
            let clients = clients.clone();
            Box::pin(async move {
                for mut c in clients {
                    if let Ok(r) = c.get_grants(rpb::GetGrantsRequest { acl_version: known }).await {
                        let r = r.into_inner();
                        return Some((r.acl_version, r.acl));
                    }
                }
                None
            })
        }));
    }
    let watched = leading.clone();
    let beat = {
        let clients = clients.clone();
        let access = access.clone();
        let request = request.clone();
        move |start: usize| {
            let clients = clients.clone();
            let mut request = request.clone();
            request.acl_version = access.acl_version();
            (request.loads, request.load_windows_ms) = load.report();
            request.led_groups = leading(true);
            request.leading_containers = request.led_groups.iter().map(|g| g.container).collect();
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
                access.update(r.acl_version, &r.acl);
                placing(&r);
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
    // A change in which containers this store leads is reported at once, not at the next
    // beat: clients of a container whose leader moved here find it sooner.
    let changed = std::sync::Arc::new(tokio::sync::Notify::new());
    {
        let changed = changed.clone();
        tokio::spawn(async move {
            let mut last = leadership(&watched(false));
            loop {
                tokio::time::sleep(Duration::from_millis(50)).await;
                let now = leadership(&watched(false));
                if now != last {
                    last = now;
                    changed.notify_one();
                }
            }
        });
    }
    let access = access.clone();
    tokio::spawn(async move {
        let mut preferred = preferred;
        loop {
            tokio::select! {
                _ = tokio::time::sleep(every) => {}
                _ = changed.notified() => {}
            }
            match beat(preferred).await {
                Ok((idx, r)) => {
                    preferred = idx;
                    access.update(r.acl_version, &r.acl);
                    placing(&r);
                }
                Err(s) => tracing::warn!(error = %s.message(), "heartbeat to the controllers failed; retrying"),
            }
        }
    });
    Ok(assigned)
}
