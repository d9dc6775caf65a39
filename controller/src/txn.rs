//! Transactions in the controller's replicated state: which exist, their segments, leases and
//! where each is in its life. The commit and abort workflows that act on segment stores are in
//! [`crate::txn_service`]; docs/transactions.md describes the whole protocol.
//!
//! ```text
//!            StartCommit              Committed
//!   Open ───────────────► Committing ───────────► Committed ┐
//!    │  StartAbort (client, or lease expired)                ├─ kept for FINISHED_RETENTION_MS,
//!    └───────────────────► Aborting ─────────────► Aborted  ┘   at most FINISHED_KEEP_PER_STREAM
//!                                      Aborted
//! ```
//!
//! Invariants kept by [`TxnTable::apply`]:
//! - applying is deterministic: every command carries its time; a refused command changes
//!   nothing (in the transactions or in the streams);
//! - `Committing` and `Aborting` are decisions: neither goes back, neither leads anywhere but
//!   `Committed` or `Aborted` respectively. So a transaction segment that vanishes while its
//!   transaction is `Committing` was merged (abort cannot delete it any more);
//! - a transaction begun in the stream's current epoch commits by merging each transaction
//!   segment into its parent. While such a commit is in progress the stream is not scaled or
//!   sealed (see [`TxnTable::merging`]), so the parents stay open;
//! - a transaction whose epoch is no longer current commits by a *rolling* step, applied here
//!   together with the decision: a scale (`StartScale` with promoted segments) whose successors
//!   are the transaction segments and whose predecessors are all active segments. Completing
//!   that scale (`CompleteScale`) is what `Committed` waits for.

use std::collections::BTreeMap;

use nadi_proto::SegmentId;
use serde::{Deserialize, Serialize};

use crate::MetaError;
use crate::state::{Command, ControllerState, EpochReason, StreamState};

/// Default lease when a client asks for none.
pub const DEFAULT_LEASE_MS: u64 = 60_000;
/// Shortest lease a client may ask for.
pub const MIN_LEASE_MS: u64 = 100;
/// Longest lease a client may ask for (one day).
pub const MAX_LEASE_MS: u64 = 86_400_000;
/// How long the record of a committed or aborted transaction is kept, so that a retried commit
/// (a Flink committer restoring a checkpoint, a client that lost the answer) still answers.
pub const FINISHED_RETENTION_MS: u64 = 24 * 3_600_000;
/// At most this many finished transactions are remembered per stream (the oldest go first).
pub const FINISHED_KEEP_PER_STREAM: usize = 1000;

/// Where a transaction is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum TxnState {
    Open,
    Committing,
    Committed,
    Aborting,
    Aborted,
}

impl TxnState {
    /// True once it is committed or aborted.
    pub fn is_finished(self) -> bool {
        matches!(self, TxnState::Committed | TxnState::Aborted)
    }
}

/// Why a transaction was aborted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum AbortReason {
    /// A client asked for it.
    Client,
    /// Its lease ran out; the leader's sweep aborted it.
    LeaseExpired,
}

impl AbortReason {
    /// How it reads in APIs.
    pub fn as_str(self) -> &'static str {
        match self {
            AbortReason::Client => "client",
            AbortReason::LeaseExpired => "lease expired",
        }
    }
}

/// One transaction segment: the twin of a segment of the transaction's epoch.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TxnSegment {
    /// The stream segment it belongs to (and is merged into by a same-epoch commit).
    pub parent: SegmentId,
    /// Its qualified name, `{parent name}#txn.{id}`.
    pub name: String,
    /// The parent's key range: the client routes events by it.
    pub key_low: f64,
    pub key_high: f64,
}

/// A transaction.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TxnRecord {
    pub id: String,
    pub scope: String,
    pub stream: String,
    /// The stream's epoch when it began; its segments mirror that epoch's.
    pub epoch: u32,
    /// Sorted by key range.
    pub segments: Vec<TxnSegment>,
    pub lease_ms: u64,
    /// An open transaction is aborted once the clock passes this (ms since the Unix epoch).
    pub lease_deadline_ms: u64,
    pub created_at_ms: u64,
    pub state: TxnState,
    /// When it became committed or aborted (0 before).
    pub finished_at_ms: u64,
    /// For a rolling commit: the epoch made of this transaction's segments.
    pub rolled_to: Option<u32>,
    pub abort_reason: Option<AbortReason>,
}

/// A change to transactions. Time is carried in the command so that applying is deterministic.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum TxnCommand {
    /// Records a new open transaction over the stream's current epoch. Its segments are created
    /// on the stores afterwards; a transaction whose segments were never created is committed
    /// by nobody (commit checks they exist first) and expires.
    Begin { id: String, scope: String, stream: String, lease_ms: u64, now_ms: u64 },
    /// Extends an open, unexpired transaction's lease to `now_ms + lease_ms` (`None`: its
    /// current lease length).
    Ping { id: String, lease_ms: Option<u64>, now_ms: u64 },
    /// Decides to commit. See the module docs for the rolling case. Repeating it for a
    /// committing or committed transaction succeeds and changes nothing.
    StartCommit { id: String, now_ms: u64 },
    /// The commit workflow finished (every segment merged, or the rolled epoch is current).
    Committed { id: String, now_ms: u64 },
    /// Decides to abort. With [`AbortReason::LeaseExpired`] it is refused unless the lease has
    /// really run out at `now_ms` (a ping may have come in between the sweep's look and this).
    StartAbort { id: String, reason: AbortReason, now_ms: u64 },
    /// The abort workflow finished: the segments are deleted.
    Aborted { id: String, now_ms: u64 },
}

/// Every transaction the controller remembers, by id.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct TxnTable {
    pub txns: BTreeMap<String, TxnRecord>,
}

fn not_found(id: &str) -> MetaError {
    MetaError::TxnNotFound(id.to_owned())
}

impl TxnTable {
    /// A transaction by id.
    pub fn get(&self, id: &str) -> Result<&TxnRecord, MetaError> {
        self.txns.get(id).ok_or_else(|| not_found(id))
    }

    /// The transactions of a stream, oldest first.
    pub fn of_stream(&self, scope: &str, stream: &str) -> Vec<&TxnRecord> {
        let mut v: Vec<_> = self.txns.values().filter(|t| t.scope == scope && t.stream == stream).collect();
        v.sort_by(|a, b| a.created_at_ms.cmp(&b.created_at_ms).then_with(|| a.id.cmp(&b.id)));
        v
    }

    /// True while a same-epoch commit of this stream is merging segments: the stream must not
    /// be scaled or sealed until it finishes (its parents must stay open).
    pub fn merging(&self, scope: &str, stream: &str) -> bool {
        self.txns
            .values()
            .any(|t| t.scope == scope && t.stream == stream && t.state == TxnState::Committing && t.rolled_to.is_none())
    }

    /// Forgets every transaction of a deleted stream.
    pub fn remove_stream(&mut self, scope: &str, stream: &str) {
        self.txns.retain(|_, t| !(t.scope == scope && t.stream == stream));
    }

    /// Applies one command; `meta` is changed only by a rolling commit. On error neither
    /// changes.
    pub fn apply(&mut self, meta: &mut ControllerState, cmd: &TxnCommand) -> Result<(), MetaError> {
        match cmd {
            TxnCommand::Begin { id, scope, stream, lease_ms, now_ms } => {
                nadi_proto::names::validate_txn_id(id)?;
                check_lease(*lease_ms)?;
                if self.txns.contains_key(id) {
                    return Err(MetaError::InvalidArgument(format!("transaction id {id} is taken")));
                }
                let m = meta.stream(scope, stream)?;
                if m.state == StreamState::Sealed {
                    return Err(MetaError::StreamSealed(format!("{scope}/{stream}")));
                }
                let segments = m
                    .active_segments()
                    .into_iter()
                    .map(|s| TxnSegment {
                        parent: s.id,
                        name: nadi_proto::names::txn_segment_name(&s.qualified_name(scope, stream), id),
                        key_low: s.key_low,
                        key_high: s.key_high,
                    })
                    .collect();
                let rec = TxnRecord {
                    id: id.clone(),
                    scope: scope.clone(),
                    stream: stream.clone(),
                    epoch: m.current_epoch().epoch,
                    segments,
                    lease_ms: *lease_ms,
                    lease_deadline_ms: now_ms.saturating_add(*lease_ms),
                    created_at_ms: *now_ms,
                    state: TxnState::Open,
                    finished_at_ms: 0,
                    rolled_to: None,
                    abort_reason: None,
                };
                self.txns.insert(id.clone(), rec);
                self.prune(*now_ms);
            }
            TxnCommand::Ping { id, lease_ms, now_ms } => {
                let t = self.get(id)?;
                let lease = lease_ms.unwrap_or(t.lease_ms);
                check_lease(lease)?;
                check_open(t, *now_ms)?;
                let t = self.txns.get_mut(id).ok_or_else(|| not_found(id))?;
                t.lease_ms = lease;
                t.lease_deadline_ms = now_ms.saturating_add(lease);
            }
            TxnCommand::StartCommit { id, now_ms } => {
                let t = self.get(id)?;
                match t.state {
                    TxnState::Committing | TxnState::Committed => return Ok(()),
                    _ => check_open(t, *now_ms)?,
                }
                let name = format!("{}/{}", t.scope, t.stream);
                let m = meta.stream(&t.scope, &t.stream)?;
                if m.state == StreamState::Sealed {
                    return Err(MetaError::StreamSealed(name));
                }
                if m.pending_scale.is_some() {
                    return Err(MetaError::ScaleInProgress(name));
                }
                let rolled_to = if m.current_epoch().epoch == t.epoch {
                    None
                } else {
                    // Rolling commit: the transaction's segments become the next epoch. They
                    // tile [0, 1) (they mirror an epoch), as do the active segments they seal.
                    if self.merging(&t.scope, &t.stream) {
                        return Err(MetaError::ScaleInProgress(name));
                    }
                    let scale = Command::StartScale {
                        scope: t.scope.clone(),
                        stream: t.stream.clone(),
                        sealed: m.current_epoch().segments.clone(),
                        new_ranges: t.segments.iter().map(|s| (s.key_low, s.key_high)).collect(),
                        reason: EpochReason::TxnCommit,
                        now_ms: *now_ms,
                        promoted: t.segments.iter().map(|s| s.name.clone()).collect(),
                    };
                    meta.apply(&scale)?;
                    Some(meta.stream(&t.scope, &t.stream)?.pending_scale.as_ref().map_or(0, |p| p.epoch))
                };
                let t = self.txns.get_mut(id).ok_or_else(|| not_found(id))?;
                t.state = TxnState::Committing;
                t.rolled_to = rolled_to;
            }
            TxnCommand::Committed { id, now_ms } => {
                let t = self.get(id)?;
                match t.state {
                    TxnState::Committed => return Ok(()),
                    TxnState::Committing => {}
                    other => return Err(MetaError::TxnNotOpen(format!("{id} is {other:?}, not committing"))),
                }
                if let Some(epoch) = t.rolled_to {
                    let m = meta.stream(&t.scope, &t.stream)?;
                    if m.current_epoch().epoch < epoch || m.pending_scale.as_ref().is_some_and(|p| p.epoch == epoch) {
                        return Err(MetaError::InvalidArgument(format!(
                            "transaction {id} rolls into epoch {epoch}, which is not current yet"
                        )));
                    }
                }
                let t = self.txns.get_mut(id).ok_or_else(|| not_found(id))?;
                t.state = TxnState::Committed;
                t.finished_at_ms = *now_ms;
                self.prune(*now_ms);
            }
            TxnCommand::StartAbort { id, reason, now_ms } => {
                let t = self.get(id)?;
                match t.state {
                    TxnState::Aborting | TxnState::Aborted => return Ok(()),
                    TxnState::Committing | TxnState::Committed => {
                        return Err(MetaError::TxnNotOpen(format!("{id} is {:?}; it cannot be aborted", t.state)));
                    }
                    TxnState::Open => {}
                }
                if *reason == AbortReason::LeaseExpired && *now_ms <= t.lease_deadline_ms {
                    return Err(MetaError::InvalidArgument(format!("transaction {id}'s lease has not expired")));
                }
                let t = self.txns.get_mut(id).ok_or_else(|| not_found(id))?;
                t.state = TxnState::Aborting;
                t.abort_reason = Some(*reason);
            }
            TxnCommand::Aborted { id, now_ms } => {
                let t = self.get(id)?;
                match t.state {
                    TxnState::Aborted => return Ok(()),
                    TxnState::Aborting => {}
                    other => return Err(MetaError::TxnNotOpen(format!("{id} is {other:?}, not aborting"))),
                }
                let t = self.txns.get_mut(id).ok_or_else(|| not_found(id))?;
                t.state = TxnState::Aborted;
                t.finished_at_ms = *now_ms;
                self.prune(*now_ms);
            }
        }
        Ok(())
    }

    /// Forgets finished transactions older than [`FINISHED_RETENTION_MS`] and, per stream, all
    /// but the [`FINISHED_KEEP_PER_STREAM`] most recently finished.
    fn prune(&mut self, now_ms: u64) {
        self.txns
            .retain(|_, t| !t.state.is_finished() || t.finished_at_ms.saturating_add(FINISHED_RETENTION_MS) >= now_ms);
        let mut finished: BTreeMap<(&str, &str), Vec<(u64, &str)>> = BTreeMap::new();
        for t in self.txns.values().filter(|t| t.state.is_finished()) {
            finished.entry((&t.scope, &t.stream)).or_default().push((t.finished_at_ms, &t.id));
        }
        let mut drop = Vec::new();
        for (_, mut v) in finished {
            if v.len() > FINISHED_KEEP_PER_STREAM {
                v.sort();
                let excess = v.len() - FINISHED_KEEP_PER_STREAM;
                drop.extend(v.into_iter().take(excess).map(|(_, id)| id.to_owned()));
            }
        }
        for id in drop {
            self.txns.remove(&id);
        }
    }
}

fn check_lease(lease_ms: u64) -> Result<(), MetaError> {
    if !(MIN_LEASE_MS..=MAX_LEASE_MS).contains(&lease_ms) {
        return Err(MetaError::InvalidArgument(format!(
            "a transaction lease must be {MIN_LEASE_MS}..={MAX_LEASE_MS} ms, not {lease_ms}"
        )));
    }
    Ok(())
}

/// Fails unless `t` is open and its lease has not run out at `now_ms`.
fn check_open(t: &TxnRecord, now_ms: u64) -> Result<(), MetaError> {
    match t.state {
        TxnState::Open if now_ms > t.lease_deadline_ms => Err(MetaError::TxnAborted(format!(
            "{} expired: its lease of {} ms ran out at {} ms",
            t.id, t.lease_ms, t.lease_deadline_ms
        ))),
        TxnState::Open => Ok(()),
        TxnState::Aborting | TxnState::Aborted => Err(MetaError::TxnAborted(format!(
            "{} was aborted ({})",
            t.id,
            t.abort_reason.map_or("client", AbortReason::as_str)
        ))),
        TxnState::Committing | TxnState::Committed => {
            Err(MetaError::TxnNotOpen(format!("{} is {:?}, no longer open", t.id, t.state)))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::{Retention, Scaling, StreamConfig};

    fn stream(n: u32) -> ControllerState {
        let mut st = ControllerState::default();
        st.apply(&Command::CreateScope { scope: "s".into(), now_ms: 1 }).unwrap();
        let config = StreamConfig { scaling: Scaling::Fixed { segments: n }, retention: Retention::None };
        st.apply(&Command::CreateStream { scope: "s".into(), stream: "t".into(), config, now_ms: 1 }).unwrap();
        st.apply(&Command::StreamCreated { scope: "s".into(), stream: "t".into() }).unwrap();
        st
    }

    fn begin(id: &str, now_ms: u64) -> TxnCommand {
        TxnCommand::Begin { id: id.into(), scope: "s".into(), stream: "t".into(), lease_ms: 1000, now_ms }
    }

    /// Applies `cmd`, expects a refusal, and checks that nothing changed.
    fn refused(t: &mut TxnTable, meta: &mut ControllerState, cmd: &TxnCommand) -> MetaError {
        let before = (t.clone(), meta.clone());
        let err = t.apply(meta, cmd).expect_err("command should be refused");
        assert_eq!((t.clone(), meta.clone()), before, "a refused command changed the state");
        err
    }

    #[test]
    fn begin_mirrors_the_current_epoch() {
        let mut meta = stream(3);
        let mut t = TxnTable::default();
        t.apply(&mut meta, &begin("ab-01", 10)).unwrap();
        let r = t.get("ab-01").unwrap();
        assert_eq!(r.state, TxnState::Open);
        assert_eq!(r.epoch, 0);
        assert_eq!(r.lease_deadline_ms, 1010);
        assert_eq!(r.segments.len(), 3);
        assert_eq!(r.segments[0].name, "s/t/0.#epoch.0#txn.ab-01");
        assert_eq!((r.segments[0].key_low, r.segments[2].key_high), (0.0, 1.0));
        // Bad input changes nothing.
        assert!(matches!(refused(&mut t, &mut meta, &begin("ab-01", 11)), MetaError::InvalidArgument(_)));
        assert!(matches!(refused(&mut t, &mut meta, &begin("AB", 11)), MetaError::InvalidName(_)));
        let mut short = begin("ab-02", 11);
        if let TxnCommand::Begin { lease_ms, .. } = &mut short {
            *lease_ms = 5;
        }
        assert!(matches!(refused(&mut t, &mut meta, &short), MetaError::InvalidArgument(_)));
        let mut other = begin("ab-02", 11);
        if let TxnCommand::Begin { stream, .. } = &mut other {
            *stream = "nope".into();
        }
        assert!(matches!(refused(&mut t, &mut meta, &other), MetaError::StreamNotFound(_)));
        assert!(matches!(
            refused(&mut t, &mut meta, &TxnCommand::Ping { id: "ff".into(), lease_ms: None, now_ms: 12 }),
            MetaError::TxnNotFound(_)
        ));
    }

    #[test]
    fn same_epoch_commit_blocks_scales_until_committed_and_repeats_are_no_ops() {
        let mut meta = stream(2);
        let mut t = TxnTable::default();
        t.apply(&mut meta, &begin("a1", 10)).unwrap();
        t.apply(&mut meta, &TxnCommand::Ping { id: "a1".into(), lease_ms: Some(5000), now_ms: 900 }).unwrap();
        assert_eq!(t.get("a1").unwrap().lease_deadline_ms, 5900);
        t.apply(&mut meta, &TxnCommand::StartCommit { id: "a1".into(), now_ms: 1000 }).unwrap();
        assert_eq!(t.get("a1").unwrap().state, TxnState::Committing);
        assert_eq!(t.get("a1").unwrap().rolled_to, None);
        assert!(t.merging("s", "t"));
        let snapshot = (t.clone(), meta.clone());
        t.apply(&mut meta, &TxnCommand::StartCommit { id: "a1".into(), now_ms: 1001 }).unwrap();
        assert_eq!((t.clone(), meta.clone()), snapshot, "a repeated commit changes nothing");
        assert!(matches!(
            refused(
                &mut t,
                &mut meta,
                &TxnCommand::StartAbort { id: "a1".into(), reason: AbortReason::Client, now_ms: 1002 }
            ),
            MetaError::TxnNotOpen(_)
        ));
        assert!(matches!(
            refused(&mut t, &mut meta, &TxnCommand::Ping { id: "a1".into(), lease_ms: None, now_ms: 1002 }),
            MetaError::TxnNotOpen(_)
        ));
        t.apply(&mut meta, &TxnCommand::Committed { id: "a1".into(), now_ms: 1100 }).unwrap();
        t.apply(&mut meta, &TxnCommand::Committed { id: "a1".into(), now_ms: 1101 }).unwrap();
        t.apply(&mut meta, &TxnCommand::StartCommit { id: "a1".into(), now_ms: 1102 }).unwrap();
        let r = t.get("a1").unwrap();
        assert_eq!((r.state, r.finished_at_ms), (TxnState::Committed, 1100));
        assert!(!t.merging("s", "t"));
        assert_eq!(meta.stream("s", "t").unwrap().epochs.len(), 1, "a same-epoch commit adds no epoch");
    }

    #[test]
    fn expiry_and_abort() {
        let mut meta = stream(1);
        let mut t = TxnTable::default();
        t.apply(&mut meta, &begin("e1", 10)).unwrap();
        // The sweep may look early (a ping came in): refused.
        let early = TxnCommand::StartAbort { id: "e1".into(), reason: AbortReason::LeaseExpired, now_ms: 1010 };
        assert!(matches!(refused(&mut t, &mut meta, &early), MetaError::InvalidArgument(_)));
        // Past the lease, commit and ping fail with TXN_ABORTED even before the sweep ran.
        let late_commit = TxnCommand::StartCommit { id: "e1".into(), now_ms: 1011 };
        assert!(matches!(refused(&mut t, &mut meta, &late_commit), MetaError::TxnAborted(_)));
        let late_ping = TxnCommand::Ping { id: "e1".into(), lease_ms: None, now_ms: 1011 };
        assert!(matches!(refused(&mut t, &mut meta, &late_ping), MetaError::TxnAborted(_)));
        t.apply(
            &mut meta,
            &TxnCommand::StartAbort { id: "e1".into(), reason: AbortReason::LeaseExpired, now_ms: 1011 },
        )
        .unwrap();
        assert!(matches!(
            refused(&mut t, &mut meta, &TxnCommand::Committed { id: "e1".into(), now_ms: 1012 }),
            MetaError::TxnNotOpen(_)
        ));
        t.apply(&mut meta, &TxnCommand::Aborted { id: "e1".into(), now_ms: 1012 }).unwrap();
        t.apply(&mut meta, &TxnCommand::StartAbort { id: "e1".into(), reason: AbortReason::Client, now_ms: 1013 })
            .unwrap();
        let r = t.get("e1").unwrap();
        assert_eq!((r.state, r.abort_reason), (TxnState::Aborted, Some(AbortReason::LeaseExpired)));
        assert!(matches!(
            refused(&mut t, &mut meta, &TxnCommand::StartCommit { id: "e1".into(), now_ms: 1014 }),
            MetaError::TxnAborted(_)
        ));
    }

    #[test]
    fn commit_after_a_scale_rolls_the_transaction_into_a_new_epoch() {
        let mut meta = stream(2);
        let mut t = TxnTable::default();
        t.apply(&mut meta, &begin("d1", 10)).unwrap();
        // Split segment 0 of epoch 0: the stream moves to epoch 1 with three segments.
        let s0 = SegmentId::new(0, 0);
        meta.apply(&Command::StartScale {
            scope: "s".into(),
            stream: "t".into(),
            sealed: vec![s0],
            new_ranges: vec![(0.0, 0.25), (0.25, 0.5)],
            reason: EpochReason::Manual,
            now_ms: 20,
            promoted: vec![],
        })
        .unwrap();
        // A pending scale must finish first (retryable).
        let commit = TxnCommand::StartCommit { id: "d1".into(), now_ms: 30 };
        assert!(matches!(refused(&mut t, &mut meta, &commit), MetaError::ScaleInProgress(_)));
        meta.apply(&Command::CompleteScale { scope: "s".into(), stream: "t".into(), epoch: 1, now_ms: 25 }).unwrap();
        let old_active: Vec<SegmentId> = meta.stream("s", "t").unwrap().current_epoch().segments.clone();
        t.apply(&mut meta, &commit).unwrap();
        let r = t.get("d1").unwrap().clone();
        assert_eq!((r.state, r.rolled_to), (TxnState::Committing, Some(2)));
        assert!(!t.merging("s", "t"), "a rolling commit merges nothing");
        // Not committed before the rolled epoch is current.
        let done = TxnCommand::Committed { id: "d1".into(), now_ms: 40 };
        assert!(matches!(refused(&mut t, &mut meta, &done), MetaError::InvalidArgument(_)));
        meta.apply(&Command::CompleteScale { scope: "s".into(), stream: "t".into(), epoch: 2, now_ms: 35 }).unwrap();
        t.apply(&mut meta, &done).unwrap();
        let m = meta.stream("s", "t").unwrap();
        assert_eq!(m.current_epoch().epoch, 2);
        assert_eq!(m.current_epoch().reason, EpochReason::TxnCommit);
        let active = m.active_segments();
        let names: Vec<_> = active.iter().map(|s| s.qualified_name("s", "t")).collect();
        assert_eq!(names, vec!["s/t/0.#epoch.0#txn.d1".to_owned(), "s/t/1.#epoch.0#txn.d1".to_owned()]);
        assert_eq!((active[0].key_low, active[0].key_high, active[1].key_high), (0.0, 0.5, 1.0));
        // Predecessors: every segment of epoch 1 overlapping each range; all of them sealed.
        assert_eq!(active[0].predecessors.len(), 2);
        assert_eq!(active[1].predecessors, vec![SegmentId::new(0, 1)]);
        for id in old_active {
            assert!(m.segment(id).unwrap().sealed);
        }
    }

    #[test]
    fn a_merging_commit_blocks_scale_and_seal_and_a_deleted_stream_forgets_its_txns() {
        use crate::raft::Request;
        use crate::raft::state_machine::Machine;
        let mut m = Machine { meta: stream(2), ..Default::default() };
        m.apply(&Request::Txn(begin("c1", 10))).unwrap();
        m.apply(&Request::Txn(TxnCommand::StartCommit { id: "c1".into(), now_ms: 20 })).unwrap();
        let scale = Request::Meta(Command::StartScale {
            scope: "s".into(),
            stream: "t".into(),
            sealed: vec![SegmentId::new(0, 0)],
            new_ranges: vec![(0.0, 0.5)],
            reason: EpochReason::Manual,
            now_ms: 30,
            promoted: vec![],
        });
        let seal = Request::Meta(Command::StreamSealed { scope: "s".into(), stream: "t".into() });
        for req in [&scale, &seal] {
            let before = m.clone();
            assert!(matches!(m.apply(req), Err(MetaError::ScaleInProgress(_))));
            assert_eq!(m, before);
        }
        m.apply(&Request::Txn(TxnCommand::Committed { id: "c1".into(), now_ms: 40 })).unwrap();
        m.apply(&scale).unwrap();
        m.apply(&Request::Meta(Command::CompleteScale { scope: "s".into(), stream: "t".into(), epoch: 1, now_ms: 50 }))
            .unwrap();
        m.apply(&seal).unwrap();
        m.apply(&Request::Meta(Command::DeleteStream { scope: "s".into(), stream: "t".into() })).unwrap();
        assert!(m.txns.txns.is_empty());
    }

    #[test]
    fn finished_records_are_bounded() {
        let mut meta = stream(1);
        let mut t = TxnTable::default();
        for i in 0..(FINISHED_KEEP_PER_STREAM as u64 + 5) {
            let id = format!("{i:x}");
            t.apply(&mut meta, &begin(&id, i)).unwrap();
            t.apply(&mut meta, &TxnCommand::StartAbort { id: id.clone(), reason: AbortReason::Client, now_ms: i })
                .unwrap();
            t.apply(&mut meta, &TxnCommand::Aborted { id, now_ms: i }).unwrap();
        }
        assert_eq!(t.txns.len(), FINISHED_KEEP_PER_STREAM);
        assert!(t.get("0").is_err(), "the oldest finished ones go first");
        // An open one is never pruned, however old.
        t.apply(&mut meta, &begin("aaaa", 1)).unwrap();
        t.apply(&mut meta, &begin("bbbb", FINISHED_RETENTION_MS * 3)).unwrap();
        assert!(t.get("aaaa").is_ok());
        assert_eq!(t.txns.len(), 2, "finished records older than the retention are gone");
    }
}
