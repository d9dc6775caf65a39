//! Cluster membership kept in the controller's replicated state: the segment stores and which
//! containers each hosts.
//!
//! A store registers with a stable id (kept in its data dir). The first registration fixes the
//! cluster's container count. Two kinds of store:
//!
//! - **single-copy** (and stores replicating among static `--replica-peers`): containers not
//!   yet assigned go to the registering store and stay with it, because a container's Tier-1
//!   data lives on that store's disk;
//! - **placed** (a `replica_id`; `--container-log raft` without static peers): the controllers
//!   place each container's replica set on `replication_factor` distinct stores
//!   ([`ClusterState::placement`]), and the leader of each container's group changes its
//!   membership to match. A cluster holds one kind or the other.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::MetaError;

/// A registered segment store.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoreRecord {
    /// The gRPC endpoint clients use.
    pub endpoint: String,
    /// When it first registered.
    pub registered_at_ms: u64,
    /// Its id in its containers' consensus groups, if the controllers place its replicas.
    #[serde(default)]
    pub replica_id: Option<u64>,
}

/// Segment stores and container assignment.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct ClusterState {
    /// Containers in the cluster; 0 until the first store registers.
    pub containers: u32,
    /// Stores by id.
    pub stores: BTreeMap<String, StoreRecord>,
    /// Container → id of the store hosting it (single-copy stores).
    pub assignment: BTreeMap<u32, String>,
    /// Replicas per container (placed stores); 0 until a placed store registers.
    #[serde(default)]
    pub replication_factor: u32,
    /// Container → the stores meant to hold its replicas, the preferred leader first.
    #[serde(default)]
    pub replicas: BTreeMap<u32, Vec<String>>,
    /// Containers whose group was started (some replica reported leading it): a later
    /// placement never starts a second group.
    #[serde(default)]
    pub started: BTreeSet<u32>,
}

/// A change to cluster membership.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ClusterCommand {
    /// A store announced itself (new, restarted, or moved to another endpoint).
    RegisterStore {
        store_id: String,
        endpoint: String,
        containers: u32,
        now_ms: u64,
        #[serde(default)]
        replica_id: Option<u64>,
    },
    /// The controllers' `--replication-factor` (placed stores).
    SetReplicationFactor { factor: u32 },
    /// New replica sets (from [`ClusterState::placement`]).
    Place { replicas: BTreeMap<u32, Vec<String>> },
    /// These containers' groups were started.
    Started { containers: Vec<u32> },
}

/// The largest replication factor.
pub const MAX_REPLICATION_FACTOR: u32 = 7;

impl ClusterState {
    /// Applies one command. On error the state is unchanged.
    pub fn apply(&mut self, cmd: &ClusterCommand) -> Result<(), MetaError> {
        match cmd {
            ClusterCommand::RegisterStore { store_id, endpoint, containers, now_ms, replica_id } => {
                if *containers == 0 {
                    return Err(MetaError::InvalidArgument("a segment store must host at least one container".into()));
                }
                if self.containers != 0 && self.containers != *containers {
                    return Err(MetaError::InvalidArgument(format!(
                        "segment store {store_id} has {containers} containers but the cluster has {}",
                        self.containers
                    )));
                }
                let placed = self.stores.values().find(|s| s.replica_id.is_some() != replica_id.is_some());
                if let Some(other) = placed {
                    let (this, that) = match replica_id {
                        Some(_) => ("replicas placed by the controllers", "single-copy containers"),
                        None => ("single-copy containers", "replicas placed by the controllers"),
                    };
                    return Err(MetaError::InvalidArgument(format!(
                        "segment store {store_id} holds {this} but this cluster's stores hold {that} (store at {}): \
                         a cluster's stores all run with the same --container-log",
                        other.endpoint
                    )));
                }
                if let Some(id) = replica_id
                    && let Some((other, _)) =
                        self.stores.iter().find(|(o, s)| *o != store_id && s.replica_id == Some(*id))
                {
                    return Err(MetaError::InvalidArgument(format!(
                        "segment store {store_id} has replica id {id}, which store {other} has already"
                    )));
                }
                self.containers = *containers;
                let registered_at_ms = self.stores.get(store_id).map_or(*now_ms, |s| s.registered_at_ms);
                let record = StoreRecord { endpoint: endpoint.clone(), registered_at_ms, replica_id: *replica_id };
                self.stores.insert(store_id.clone(), record);
                if replica_id.is_none() {
                    for c in 0..*containers {
                        self.assignment.entry(c).or_insert_with(|| store_id.clone());
                    }
                }
            }
            ClusterCommand::SetReplicationFactor { factor } => {
                if !(1..=MAX_REPLICATION_FACTOR).contains(factor) {
                    return Err(MetaError::InvalidArgument(format!(
                        "the replication factor must be 1-{MAX_REPLICATION_FACTOR}, not {factor}"
                    )));
                }
                self.replication_factor = *factor;
            }
            ClusterCommand::Place { replicas } => {
                for (c, members) in replicas {
                    if *c >= self.containers {
                        return Err(MetaError::InvalidArgument(format!("no container {c}")));
                    }
                    let distinct: BTreeSet<_> = members.iter().collect();
                    if distinct.len() != members.len() || members.is_empty() {
                        return Err(MetaError::InvalidArgument(format!(
                            "container {c}: replicas {members:?} must be distinct and at least one"
                        )));
                    }
                    if let Some(s) = members.iter().find(|s| self.stores.get(*s).is_none_or(|r| r.replica_id.is_none()))
                    {
                        return Err(MetaError::InvalidArgument(format!("container {c}: {s} is not a placed store")));
                    }
                }
                self.replicas.extend(replicas.iter().map(|(c, m)| (*c, m.clone())));
            }
            ClusterCommand::Started { containers } => self.started.extend(containers.iter().copied()),
        }
        Ok(())
    }

    /// Whether the controllers place this cluster's replicas.
    pub fn placed(&self) -> bool {
        self.stores.values().any(|s| s.replica_id.is_some())
    }

    /// The replica sets the controllers want now, given the stores that heard from the
    /// controllers within `--store-timeout` (`usable`); only the containers whose set changes.
    ///
    /// - Every container gets `replication_factor` replicas on distinct usable stores, each
    ///   added to the store holding fewest replicas. A container never placed waits until
    ///   that many stores are usable; a running one keeps fewer if fewer are left.
    /// - A store past its timeout is replaced only if a usable store can take its place (a
    ///   smaller replica set would not make the container more available).
    /// - A factor lowered drops the members holding most replicas (never the first).
    /// - Then at most one replica moves from the store holding most to the one holding fewest,
    ///   while they differ by more than one (a store added to a running cluster fills up over a
    ///   few heartbeats, one membership change at a time).
    /// - Finally each set's first member (its preferred leader and the replica that starts
    ///   it) is chosen among its usable members so that each store comes first about equally.
    pub fn placement(&self, usable: &BTreeSet<String>) -> BTreeMap<u32, Vec<String>> {
        let rf = self.replication_factor.max(1) as usize;
        let candidates: Vec<&String> = self
            .stores
            .iter()
            .filter(|(id, s)| s.replica_id.is_some() && usable.contains(*id))
            .map(|(id, _)| id)
            .collect();
        if candidates.is_empty() {
            return BTreeMap::new();
        }
        let mut sets: BTreeMap<u32, Vec<String>> =
            (0..self.containers).map(|c| (c, self.replicas.get(&c).cloned().unwrap_or_default())).collect();
        let mut load: BTreeMap<&String, usize> = candidates.iter().map(|s| (*s, 0)).collect();
        for members in sets.values() {
            for m in members {
                if let Some(n) = load.get_mut(m) {
                    *n += 1;
                }
            }
        }
        let least = |load: &BTreeMap<&String, usize>, not_in: &[String]| -> Option<String> {
            load.iter().filter(|(s, _)| !not_in.contains(s)).min_by_key(|(s, n)| (**n, **s)).map(|(s, _)| (*s).clone())
        };
        for (c, members) in sets.iter_mut() {
            // A container's first replica set waits for `rf` usable stores: no acknowledged
            // write ever has fewer copies than asked for.
            if members.is_empty() && !self.started.contains(c) && candidates.len() < rf {
                continue;
            }
            // Replace members past their timeout while a usable store is free.
            let gone: Vec<String> = members.iter().filter(|m| !usable.contains(*m)).cloned().collect();
            for g in gone {
                if let Some(s) = least(&load, members) {
                    let at = members.iter().position(|m| *m == g).expect("a member");
                    members[at] = s.clone();
                    *load.get_mut(&s).expect("a candidate") += 1;
                }
            }
            while members.len() > rf {
                // Drop the busiest member after the first.
                let (at, _) = members
                    .iter()
                    .enumerate()
                    .skip(1)
                    .max_by_key(|(_, m)| (load.get(m).copied().unwrap_or(usize::MAX), (*m).clone()))
                    .expect("more than one member");
                let m = members.remove(at);
                if let Some(n) = load.get_mut(&m) {
                    *n -= 1;
                }
            }
            while members.len() < rf {
                let Some(s) = least(&load, members) else { break };
                members.push(s.clone());
                *load.get_mut(&s).expect("a candidate") += 1;
            }
        }
        // One move toward an even spread.
        let busiest = load.iter().max_by_key(|(s, n)| (**n, std::cmp::Reverse(**s))).map(|(s, n)| ((*s).clone(), *n));
        let idlest = load.iter().min_by_key(|(s, n)| (**n, **s)).map(|(s, n)| ((*s).clone(), *n));
        if let (Some((from, most)), Some((to, fewest))) = (busiest, idlest)
            && most > fewest + 1
            && let Some(members) = sets.values_mut().find(|m| m.contains(&from) && !m.contains(&to))
        {
            let at = members.iter().position(|m| *m == from).expect("a member");
            members[at] = to;
        }
        // Preferred leaders: each store first about equally often.
        let mut firsts: BTreeMap<String, usize> = BTreeMap::new();
        for members in sets.values_mut() {
            if let Some(at) = (0..members.len())
                .filter(|&i| usable.contains(&members[i]))
                .min_by_key(|&i| (firsts.get(&members[i]).copied().unwrap_or(0), i))
            {
                members.swap(0, at);
                *firsts.entry(members[0].clone()).or_default() += 1;
            }
        }
        sets.into_iter().filter(|(c, m)| !m.is_empty() && self.replicas.get(c) != Some(m)).collect()
    }

    /// True if `cmd` would change nothing (lets a heartbeat skip a Raft write).
    pub fn is_noop(&self, cmd: &ClusterCommand) -> bool {
        match cmd {
            ClusterCommand::RegisterStore { store_id, endpoint, containers, replica_id, .. } => {
                self.containers == *containers
                    && self.stores.get(store_id).is_some_and(|s| &s.endpoint == endpoint && s.replica_id == *replica_id)
                    && (replica_id.is_some() || (0..*containers).all(|c| self.assignment.contains_key(&c)))
            }
            ClusterCommand::SetReplicationFactor { factor } => self.replication_factor == *factor,
            ClusterCommand::Place { replicas } => replicas.iter().all(|(c, m)| self.replicas.get(c) == Some(m)),
            ClusterCommand::Started { containers } => containers.iter().all(|c| self.started.contains(c)),
        }
    }

    /// The containers assigned to `store_id`, or whose replicas it is meant to hold.
    pub fn containers_of(&self, store_id: &str) -> Vec<u32> {
        let assigned = self.assignment.iter().filter(|(_, s)| s.as_str() == store_id).map(|(c, _)| *c);
        let placed = self.replicas.iter().filter(|(_, m)| m.iter().any(|s| s == store_id)).map(|(c, _)| *c);
        assigned.chain(placed).collect()
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
            .or_else(|| self.replicas.get(&container).and_then(|m| m.first()))
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
        ClusterCommand::RegisterStore {
            store_id: id.into(),
            endpoint: ep.into(),
            containers,
            now_ms: 1,
            replica_id: None,
        }
    }

    fn placed(id: &str, replica_id: u64, containers: u32) -> ClusterCommand {
        ClusterCommand::RegisterStore {
            store_id: id.into(),
            endpoint: format!("http://{id}"),
            containers,
            now_ms: 1,
            replica_id: Some(replica_id),
        }
    }

    fn usable(ids: &[&str]) -> BTreeSet<String> {
        ids.iter().map(|s| s.to_string()).collect()
    }

    /// Applies placements until nothing changes (as heartbeats would); returns how many rounds.
    fn settle(st: &mut ClusterState, live: &BTreeSet<String>) -> usize {
        for round in 0..100 {
            let p = st.placement(live);
            if p.is_empty() {
                return round;
            }
            st.apply(&ClusterCommand::Place { replicas: p }).unwrap();
        }
        panic!("placement does not settle");
    }

    fn counts(st: &ClusterState) -> (BTreeMap<String, usize>, BTreeMap<String, usize>) {
        let (mut replicas, mut firsts) = (BTreeMap::new(), BTreeMap::new());
        for m in st.replicas.values() {
            for s in m {
                *replicas.entry(s.clone()).or_default() += 1;
            }
            *firsts.entry(m[0].clone()).or_default() += 1;
        }
        (replicas, firsts)
    }

    #[test]
    fn placement_spreads_replicas_and_preferred_leaders_and_grows_with_the_cluster() {
        let mut st = ClusterState::default();
        st.apply(&placed("a", 1, 6)).unwrap();
        st.apply(&ClusterCommand::SetReplicationFactor { factor: 1 }).unwrap();
        settle(&mut st, &usable(&["a"]));
        assert!(st.replicas.values().all(|m| m == &vec!["a".to_string()]));
        assert!(st.assignment.is_empty(), "placed stores are not assigned containers");
        // Two more stores and RF 3: every container on all three, each store first twice.
        st.apply(&placed("b", 2, 6)).unwrap();
        st.apply(&placed("c", 3, 6)).unwrap();
        st.apply(&ClusterCommand::SetReplicationFactor { factor: 3 }).unwrap();
        let live = usable(&["a", "b", "c"]);
        settle(&mut st, &live);
        let (replicas, firsts) = counts(&st);
        assert_eq!(replicas.values().copied().collect::<Vec<_>>(), vec![6, 6, 6]);
        assert_eq!(firsts.values().copied().collect::<Vec<_>>(), vec![2, 2, 2]);
        // A fourth store with RF 3: it fills up until the spread is even (6 × 3 / 4 = 4.5).
        st.apply(&placed("d", 4, 6)).unwrap();
        let live = usable(&["a", "b", "c", "d"]);
        let rounds = settle(&mut st, &live);
        assert!(rounds >= 4, "one move per round: {rounds}");
        let (replicas, _) = counts(&st);
        assert!(replicas.values().all(|&n| n == 4 || n == 5), "{replicas:?}");
        for m in st.replicas.values() {
            assert_eq!(m.len(), 3);
            assert_eq!(m.iter().collect::<BTreeSet<_>>().len(), 3, "distinct stores: {m:?}");
        }
    }

    #[test]
    fn a_store_past_its_timeout_is_replaced_only_by_a_free_one() {
        let mut st = ClusterState::default();
        st.apply(&ClusterCommand::SetReplicationFactor { factor: 3 }).unwrap();
        st.apply(&placed("a", 1, 4)).unwrap();
        st.apply(&placed("b", 2, 4)).unwrap();
        // Fewer stores than the factor: nothing starts with fewer copies.
        assert!(st.placement(&usable(&["a", "b"])).is_empty());
        st.apply(&placed("c", 3, 4)).unwrap();
        settle(&mut st, &usable(&["a", "b", "c"]));
        // c is gone and nothing can replace it: the sets stay as they are (c is no longer
        // anyone's preferred leader).
        let before: Vec<BTreeSet<String>> = st.replicas.values().map(|m| m.iter().cloned().collect()).collect();
        settle(&mut st, &usable(&["a", "b"]));
        let after: Vec<BTreeSet<String>> = st.replicas.values().map(|m| m.iter().cloned().collect()).collect();
        assert_eq!(before, after);
        assert!(st.replicas.values().all(|m| m[0] != "c"));
        // A new store (c's disk was wiped: a new id) takes c's place everywhere.
        st.apply(&placed("c2", 9, 4)).unwrap();
        settle(&mut st, &usable(&["a", "b", "c2"]));
        assert!(st.replicas.values().all(|m| m.contains(&"c2".to_string()) && !m.contains(&"c".to_string())));
        // Lowering the factor keeps three distinct members down to one, never empty.
        st.apply(&ClusterCommand::SetReplicationFactor { factor: 1 }).unwrap();
        settle(&mut st, &usable(&["a", "b", "c2"]));
        assert!(st.replicas.values().all(|m| m.len() == 1));
    }

    #[test]
    fn bad_placement_commands_change_nothing() {
        let mut st = ClusterState::default();
        st.apply(&placed("a", 1, 2)).unwrap();
        let before = st.clone();
        let refused = [
            ClusterCommand::SetReplicationFactor { factor: 0 },
            ClusterCommand::SetReplicationFactor { factor: MAX_REPLICATION_FACTOR + 1 },
            ClusterCommand::Place { replicas: [(0, vec!["a".into(), "a".into()])].into() },
            ClusterCommand::Place { replicas: [(0, vec!["nobody".into()])].into() },
            ClusterCommand::Place { replicas: [(5, vec!["a".into()])].into() },
            ClusterCommand::Place { replicas: [(0, vec![])].into() },
            // A single-copy store cannot join a placed cluster, nor take another's replica id.
            reg("s", "http://s", 2),
            placed("b", 1, 2),
        ];
        for cmd in refused {
            assert!(matches!(st.apply(&cmd), Err(MetaError::InvalidArgument(_))), "{cmd:?}");
            assert_eq!(st, before);
        }
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
