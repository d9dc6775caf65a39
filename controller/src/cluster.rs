//! Cluster membership kept in the controller's replicated state: the segment stores and which
//! containers each hosts.
//!
//! A store registers with a stable id (kept in its data dir). The first registration fixes the
//! cluster's container count; containers not yet assigned go to the registering store and stay
//! with it, because a container's Tier-1 data lives on that store's disk. (Moving containers
//! between stores needs replicated Tier-1, a later roadmap item.)

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::MetaError;

/// A registered segment store.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoreRecord {
    /// The gRPC endpoint clients use.
    pub endpoint: String,
    /// When it first registered.
    pub registered_at_ms: u64,
}

/// Segment stores and container assignment.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct ClusterState {
    /// Containers in the cluster; 0 until the first store registers.
    pub containers: u32,
    /// Stores by id.
    pub stores: BTreeMap<String, StoreRecord>,
    /// Container → id of the store hosting it.
    pub assignment: BTreeMap<u32, String>,
}

/// A change to cluster membership.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ClusterCommand {
    /// A store announced itself (new, restarted, or moved to another endpoint).
    RegisterStore { store_id: String, endpoint: String, containers: u32, now_ms: u64 },
}

impl ClusterState {
    /// Applies one command. On error the state is unchanged.
    pub fn apply(&mut self, cmd: &ClusterCommand) -> Result<(), MetaError> {
        match cmd {
            ClusterCommand::RegisterStore { store_id, endpoint, containers, now_ms } => {
                if *containers == 0 {
                    return Err(MetaError::InvalidArgument("a segment store must host at least one container".into()));
                }
                if self.containers != 0 && self.containers != *containers {
                    return Err(MetaError::InvalidArgument(format!(
                        "segment store {store_id} has {containers} containers but the cluster has {}",
                        self.containers
                    )));
                }
                self.containers = *containers;
                let registered_at_ms = self.stores.get(store_id).map_or(*now_ms, |s| s.registered_at_ms);
                self.stores.insert(store_id.clone(), StoreRecord { endpoint: endpoint.clone(), registered_at_ms });
                for c in 0..*containers {
                    self.assignment.entry(c).or_insert_with(|| store_id.clone());
                }
            }
        }
        Ok(())
    }

    /// True if `cmd` would change nothing (lets a heartbeat skip a Raft write).
    pub fn is_noop(&self, cmd: &ClusterCommand) -> bool {
        match cmd {
            ClusterCommand::RegisterStore { store_id, endpoint, containers, .. } => {
                self.containers == *containers
                    && self.stores.get(store_id).is_some_and(|s| &s.endpoint == endpoint)
                    && (0..*containers).all(|c| self.assignment.contains_key(&c))
            }
        }
    }

    /// The containers assigned to `store_id`.
    pub fn containers_of(&self, store_id: &str) -> Vec<u32> {
        self.assignment.iter().filter(|(_, s)| s.as_str() == store_id).map(|(c, _)| *c).collect()
    }

    /// The endpoint of the store hosting the segment named `segment`.
    pub fn endpoint_for(&self, segment: &str) -> Result<&str, MetaError> {
        if self.containers == 0 {
            return Err(MetaError::Unavailable("no segment store has registered yet".into()));
        }
        let container = nadi_proto::names::container_of(segment, self.containers);
        let store = self
            .assignment
            .get(&container)
            .ok_or_else(|| MetaError::Unavailable(format!("container {container} has no segment store")))?;
        self.stores
            .get(store)
            .map(|s| s.endpoint.as_str())
            .ok_or_else(|| MetaError::Internal(format!("container {container} is assigned to unknown store {store}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reg(id: &str, ep: &str, containers: u32) -> ClusterCommand {
        ClusterCommand::RegisterStore { store_id: id.into(), endpoint: ep.into(), containers, now_ms: 1 }
    }

    #[test]
    fn first_store_takes_every_container_and_keeps_them() {
        let mut st = ClusterState::default();
        assert!(matches!(st.endpoint_for("a/b/0.#epoch.0"), Err(MetaError::Unavailable(_))));
        st.apply(&reg("s1", "http://a", 4)).unwrap();
        assert_eq!(st.containers_of("s1"), vec![0, 1, 2, 3]);
        assert!(st.is_noop(&reg("s1", "http://a", 4)));
        assert!(!st.is_noop(&reg("s1", "http://b", 4)));
        st.apply(&reg("s2", "http://c", 4)).unwrap();
        assert!(st.containers_of("s2").is_empty());
        st.apply(&reg("s1", "http://b", 4)).unwrap();
        assert_eq!(st.endpoint_for("a/b/0.#epoch.0").unwrap(), "http://b");
        let before = st.clone();
        assert!(matches!(st.apply(&reg("s3", "http://d", 8)), Err(MetaError::InvalidArgument(_))));
        assert!(matches!(st.apply(&reg("s3", "http://d", 0)), Err(MetaError::InvalidArgument(_))));
        assert_eq!(st, before);
    }
}
