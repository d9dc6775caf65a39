//! The controller's Raft state on `/metrics`, read from openraft's metrics at each scrape.
//!
//! | metric | type | what |
//! | --- | --- | --- |
//! | `nadi_raft_term` | gauge | this node's current term |
//! | `nadi_raft_leader` | gauge | the leader's node id as this node sees it (0: none known) |
//! | `nadi_raft_is_leader` | gauge | 1 on the leader, else 0 |
//! | `nadi_raft_last_log_index` | gauge | index of the last entry in this node's log |
//! | `nadi_raft_applied_index` | gauge | index of the last entry applied to the state machine |
//! | `nadi_raft_millis_since_quorum_ack` | gauge | on the leader: ms since a quorum last acknowledged it (-1 elsewhere) |
//!
//! Owns: the collector. Calls: openraft's metrics. Called by: `crate::node` (registers it on
//! the admin API's `/metrics`).

use openraft::Raft;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::gauge::ConstGauge;

use super::TypeConfig;

/// Reads a Raft member's metrics at each scrape.
pub struct RaftCollector {
    raft: Raft<TypeConfig>,
}

impl std::fmt::Debug for RaftCollector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RaftCollector").finish_non_exhaustive()
    }
}

impl RaftCollector {
    pub fn new(raft: Raft<TypeConfig>) -> Self {
        Self { raft }
    }
}

impl Collector for RaftCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let m = self.raft.metrics().borrow().clone();
        let is_leader = m.current_leader == Some(m.id);
        let clamp = |v: u64| v.min(i64::MAX as u64) as i64;
        let gauges: [(&str, &str, i64); 6] = [
            ("nadi_raft_term", "This node's current Raft term", clamp(m.current_term)),
            (
                "nadi_raft_leader",
                "The leader's node id as this node sees it (0: none known)",
                clamp(m.current_leader.unwrap_or(0)),
            ),
            ("nadi_raft_is_leader", "1 on the leader, else 0", is_leader as i64),
            (
                "nadi_raft_last_log_index",
                "Index of the last entry in this node's Raft log",
                clamp(m.last_log_index.unwrap_or(0)),
            ),
            (
                "nadi_raft_applied_index",
                "Index of the last entry applied to the state machine",
                clamp(m.last_applied.map_or(0, |l| l.index)),
            ),
            (
                "nadi_raft_millis_since_quorum_ack",
                "On the leader: milliseconds since a quorum last acknowledged it (-1 elsewhere)",
                m.millis_since_quorum_ack.map_or(-1, clamp),
            ),
        ];
        for (name, help, value) in gauges {
            let gauge = ConstGauge::new(value);
            let metric = encoder.encode_descriptor(name, help, None, gauge.metric_type())?;
            gauge.encode(metric)?;
        }
        Ok(())
    }
}
