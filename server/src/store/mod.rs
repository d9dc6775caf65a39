//! The segment store: a fixed set of containers, and the stable map from segment to container.
//!
//! A segment belongs to container `XXH64(stream-scoped segment name) mod container_count`; a
//! transaction segment `{parent}#txn.{id}` belongs to its parent's container. The
//! count is fixed for the life of a data directory (recorded in `tier1/containers`), because
//! changing it would move segments away from the log that holds their data.
//!
//! Owns: the container set, the segment → container map, and [`load`] (per-segment rates).
//! Calls: [`crate::container`]. Called by: [`crate::net`] (every request finds its container
//! here) and [`crate::node`] (opens the store at start-up).

use std::path::{Path, PathBuf};

use crate::container::{Container, ContainerOptions};
use crate::error::StoreError;

pub mod load;

/// Settings of a segment store.
#[derive(Debug, Clone)]
pub struct StoreConfig {
    /// Tier-1 directory: one sub-directory per container.
    pub dir: PathBuf,
    /// Number of containers (fixed once the directory exists).
    pub containers: u32,
    /// Settings of every container (log files, checkpoint interval).
    pub container: ContainerOptions,
}

impl StoreConfig {
    /// Bytes of Tier-1 log files the store may keep (all containers; 0: no limit).
    pub fn tier1_capacity(&self) -> u64 {
        self.container.log.max_files as u64 * self.container.log.file_size * self.containers as u64
    }
}

/// The containers of one segment store process.
#[derive(Debug)]
pub struct SegmentStore {
    containers: Vec<Container>,
}

/// The container of a segment, out of `count` (a transaction segment goes with its parent;
/// see [`nadi_proto::names::container_of`]).
pub fn container_of(segment: &str, count: u32) -> u32 {
    nadi_proto::names::container_of(segment, count)
}

impl SegmentStore {
    /// Opens (recovering) every container under `config.dir`.
    pub fn open(config: &StoreConfig) -> Result<SegmentStore, StoreError> {
        let count = fixed_container_count(&config.dir, config.containers)?;
        let mut containers = Vec::with_capacity(count as usize);
        for id in 0..count {
            let dir = config.dir.join(format!("container-{id}"));
            containers.push(Container::open(id, &dir, &config.container)?);
        }
        Ok(SegmentStore { containers })
    }

    /// How many containers this store has.
    pub fn container_count(&self) -> u32 {
        self.containers.len() as u32
    }

    /// The container that owns `segment`.
    pub fn container(&self, segment: &str) -> &Container {
        &self.containers[container_of(segment, self.containers.len() as u32) as usize]
    }

    /// Starts the storage writer of every container (if Tier-2 is configured). Needs a tokio
    /// runtime.
    pub fn start_tiering(&self) {
        for c in &self.containers {
            if let Some(opts) = c.tiering_options() {
                crate::container::storage_writer::spawn(c, opts);
            }
        }
    }

    /// Samples what the store's gauges show (bytes by tier, roles, follower lag, Tier-2 cache
    /// counts) into `metrics` every `every`, while the store is open. Needs a tokio runtime.
    pub fn start_metrics(
        &self,
        metrics: crate::metrics::StoreMetrics,
        tier1_capacity: u64,
        every: std::time::Duration,
    ) {
        let handles: Vec<Container> = self.containers.iter().map(Container::for_storage_writer).collect();
        tokio::spawn(async move {
            let mut seen = (0, 0);
            loop {
                if handles.iter().all(Container::storage_writer_stopped) {
                    return;
                }
                for c in &handles {
                    let role = c.leads().map(|_| match c.group_view(true) {
                        Some(v) => crate::metrics::ContainerRole { term: Some(v.term), followers: v.followers.clone() },
                        None => crate::metrics::ContainerRole::default(),
                    });
                    metrics.sample(c.id(), c.tier_bytes(), role);
                }
                let cache = handles.first().and_then(|c| c.tier2()).map(|t| t.cache_counts());
                metrics.sample_store(tier1_capacity, cache, &mut seen);
                tokio::time::sleep(every).await;
            }
        });
    }

    /// All containers.
    pub fn containers(&self) -> &[Container] {
        &self.containers
    }
}

/// Reads the container count recorded for `dir`, or records `wanted` for a new directory.
fn fixed_container_count(dir: &Path, wanted: u32) -> Result<u32, StoreError> {
    let io = |e: std::io::Error| StoreError::Internal(format!("{}: {e}", dir.display()));
    if wanted == 0 {
        return Err(StoreError::InvalidArgument("the number of containers must be at least 1".into()));
    }
    std::fs::create_dir_all(dir).map_err(io)?;
    let path = dir.join("containers");
    match std::fs::read_to_string(&path) {
        Ok(s) => {
            let n: u32 =
                s.trim().parse().map_err(|_| StoreError::Internal(format!("{} is not a number", path.display())))?;
            if n != wanted {
                tracing::warn!(
                    recorded = n,
                    configured = wanted,
                    "container count is fixed per data directory; using the recorded one"
                );
            }
            Ok(n)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            nadi_controller::fsutil::write_atomic(&path, format!("{wanted}\n").as_bytes()).map_err(io)?;
            Ok(wanted)
        }
        Err(e) => Err(io(e)),
    }
}
