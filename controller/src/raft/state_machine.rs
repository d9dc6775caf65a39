//! The replicated state machine: stream metadata ([`ControllerState`]), cluster membership
//! ([`ClusterState`]) and transactions ([`TxnTable`]), applied from the Raft log, with
//! snapshots on disk.
//!
//! The applied state lives in memory. It is rebuilt at start from the latest snapshot
//! (`controller/snapshot.json`, written with temp file + fsync + rename + fsync of the directory)
//! plus the log entries after it, which openraft re-applies up to the durable committed index.
//! Snapshots let openraft purge the log, so disk stays bounded.
//!
//! Requests carrying a client's idempotency key ([`Request::Once`]) are applied at most once
//! per key: [`Machine::replies`] remembers the reply to the last [`REPLY_TABLE_CAPACITY`] keys
//! applied, replicated and in snapshots like everything else, so any leader answers a retry
//! the same way.

// The error type is openraft's `StorageError`, fixed by its storage traits.
#![allow(clippy::result_large_err)]

use std::collections::{BTreeMap, VecDeque};
use std::io::Cursor;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use openraft::storage::{RaftStateMachine, Snapshot, SnapshotMeta};
use openraft::{
    BasicNode, Entry, EntryPayload, LogId, RaftSnapshotBuilder, StorageError, StorageIOError, StoredMembership,
};
use parking_lot::RwLock;
use serde::{Deserialize, Serialize};

use super::{NodeId, Reply, Request, Response, TypeConfig};
use crate::MetaError;
use crate::cluster::ClusterState;
use crate::reader_group::ReaderGroups;
use crate::state::{Command, ControllerState};
use crate::txn::{TxnCommand, TxnTable};

/// How many idempotency keys the reply table remembers. A client retries a request for
/// seconds (10 s by default); a retry that arrives after this many other keyed requests were
/// applied is applied again.
pub const REPLY_TABLE_CAPACITY: usize = 10_000;

/// The replies to the most recently applied keyed requests, oldest first. Bounded by
/// [`REPLY_TABLE_CAPACITY`]; only requests that were applied are recorded (a refused request
/// changed nothing, so applying its retry again is harmless and gives the current answer).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Replies {
    /// Keys in the order they were applied (the oldest is forgotten first).
    order: VecDeque<String>,
    /// Key → what applying its request produced.
    replies: BTreeMap<String, Reply>,
}

impl Replies {
    /// The recorded reply to `key`, if it was applied and is still remembered.
    pub fn get(&self, key: &str) -> Option<&Reply> {
        self.replies.get(key)
    }

    /// How many keys are remembered.
    pub fn len(&self) -> usize {
        self.order.len()
    }

    /// True if no key is remembered.
    pub fn is_empty(&self) -> bool {
        self.order.is_empty()
    }

    fn record(&mut self, key: String, reply: Reply) {
        while self.order.len() >= REPLY_TABLE_CAPACITY {
            if let Some(old) = self.order.pop_front() {
                self.replies.remove(&old);
            }
        }
        self.order.push_back(key.clone());
        self.replies.insert(key, reply);
    }
}

/// Everything the Raft log builds.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Machine {
    /// Scopes, streams, epochs and segments.
    pub meta: ControllerState,
    /// Segment stores and container assignment.
    pub cluster: ClusterState,
    /// Transactions (state written before transactions existed reads as none).
    #[serde(default)]
    pub txns: TxnTable,
    /// Reader groups (state written before they existed reads as none).
    #[serde(default)]
    pub reader_groups: ReaderGroups,
    /// Replies to recently applied keyed requests (state written before keys existed reads as
    /// none).
    #[serde(default)]
    pub replies: Replies,
    /// Grants of principals on resources (state written before they existed reads as none).
    #[serde(default)]
    pub acl: nadi_security::acl::Acl,
}

impl Machine {
    /// Applies one request. A refused request changes nothing and its error goes to the
    /// proposer; every node refuses it alike.
    ///
    /// Streams and transactions meet here: a stream with a same-epoch commit in progress is
    /// neither scaled nor sealed until that commit has merged its segments (their parents must
    /// stay open), and deleting a stream forgets its transactions.
    pub fn apply(&mut self, req: &Request) -> Result<Reply, MetaError> {
        match req {
            Request::Once { key, request } => {
                if let Some(reply) = self.replies.get(key) {
                    return Ok(reply.clone());
                }
                if matches!(**request, Request::Once { .. }) {
                    return Err(MetaError::InvalidArgument(format!("request {key} nests another keyed request")));
                }
                let reply = self.apply(request)?;
                self.replies.record(key.clone(), reply.clone());
                Ok(reply)
            }
            Request::Txn(cmd @ TxnCommand::Begin { id, .. }) => {
                self.txns.apply(&mut self.meta, cmd)?;
                Ok(Reply::TxnBegun { id: id.clone() })
            }
            other => self.apply_plain(other).map(|()| Reply::Done),
        }
    }

    fn apply_plain(&mut self, req: &Request) -> Result<(), MetaError> {
        match req {
            Request::Once { .. } => Err(MetaError::Internal("keyed request applied without its key".into())),
            Request::Meta(cmd) => {
                match cmd {
                    Command::StartScale { scope, stream, .. } | Command::StreamSealed { scope, stream }
                        if self.txns.merging(scope, stream) =>
                    {
                        return Err(MetaError::ScaleInProgress(format!(
                            "{scope}/{stream} (a transaction commit is merging into it)"
                        )));
                    }
                    _ => {}
                }
                self.meta.apply(cmd)?;
                match cmd {
                    // A deleted stream or scope takes its grants along: a new one of the same
                    // name starts with none.
                    Command::DeleteStream { scope, stream } => {
                        self.txns.remove_stream(scope, stream);
                        self.acl.forget(&nadi_security::acl::Resource::stream(scope, stream));
                    }
                    // A deleted scope takes its reader groups with it.
                    Command::DeleteScope { scope } => {
                        self.reader_groups.remove_scope(scope);
                        self.acl.forget(&nadi_security::acl::Resource::scope(scope));
                    }
                    _ => {}
                }
                Ok(())
            }
            Request::Cluster(cmd) => self.cluster.apply(cmd),
            Request::Txn(cmd) => self.txns.apply(&mut self.meta, cmd),
            Request::ReaderGroup(cmd) => self.reader_groups.apply(&self.meta, cmd),
            Request::Acl(super::AclCommand::Grant(g)) => {
                self.acl.grant(g.clone());
                Ok(())
            }
            Request::Acl(super::AclCommand::Revoke(g)) => {
                self.acl.revoke(g);
                Ok(())
            }
        }
    }
}

/// The applied state and where in the log it stands.
#[derive(Debug, Default)]
pub struct Applied {
    pub last_applied: Option<LogId<NodeId>>,
    pub last_membership: StoredMembership<NodeId, BasicNode>,
    pub machine: Machine,
}

/// A snapshot as stored on disk.
#[derive(Debug, Serialize, Deserialize)]
struct StoredSnapshot {
    meta: SnapshotMeta<NodeId, BasicNode>,
    machine: Machine,
}

/// The state machine of one controller node. Clones share the state.
#[derive(Debug, Clone)]
pub struct StateMachine {
    applied: Arc<RwLock<Applied>>,
    snapshot_path: PathBuf,
}

type StorageResult<T> = Result<T, StorageError<NodeId>>;

impl StateMachine {
    /// Opens the state machine in `dir`, restoring the latest snapshot if there is one.
    pub fn open(dir: &Path) -> std::io::Result<StateMachine> {
        let snapshot_path = dir.join("snapshot.json");
        let applied = match std::fs::read(&snapshot_path) {
            Ok(bytes) => {
                let s: StoredSnapshot = serde_json::from_slice(&bytes).map_err(|e| {
                    std::io::Error::new(
                        std::io::ErrorKind::InvalidData,
                        format!("{} is not a valid snapshot: {e}", snapshot_path.display()),
                    )
                })?;
                Applied {
                    last_applied: s.meta.last_log_id,
                    last_membership: s.meta.last_membership,
                    machine: s.machine,
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Applied::default(),
            Err(e) => return Err(e),
        };
        Ok(StateMachine { applied: Arc::new(RwLock::new(applied)), snapshot_path })
    }

    /// The applied state, shared with readers.
    pub fn applied(&self) -> &Arc<RwLock<Applied>> {
        &self.applied
    }

    async fn persist(&self, snapshot: StoredSnapshot) -> StorageResult<()> {
        let sig = snapshot.meta.signature();
        let bytes = serde_json::to_vec(&snapshot).map_err(|e| StorageIOError::write_snapshot(Some(sig.clone()), &e))?;
        let path = self.snapshot_path.clone();
        tokio::task::spawn_blocking(move || crate::fsutil::write_atomic(&path, &bytes))
            .await
            .map_err(|e| StorageIOError::write_snapshot(Some(sig.clone()), &e))?
            .map_err(|e| StorageIOError::write_snapshot(Some(sig), &e).into())
    }
}

impl RaftSnapshotBuilder<TypeConfig> for StateMachine {
    async fn build_snapshot(&mut self) -> StorageResult<Snapshot<TypeConfig>> {
        let (meta, machine) = {
            let a = self.applied.read();
            let snapshot_id = match a.last_applied {
                Some(l) => format!("{}-{}-{}", l.leader_id, l.index, now_nanos()),
                None => format!("empty-{}", now_nanos()),
            };
            let meta =
                SnapshotMeta { last_log_id: a.last_applied, last_membership: a.last_membership.clone(), snapshot_id };
            (meta, a.machine.clone())
        };
        let data = serde_json::to_vec(&machine).map_err(|e| StorageIOError::read_state_machine(&e))?;
        self.persist(StoredSnapshot { meta: meta.clone(), machine }).await?;
        Ok(Snapshot { meta, snapshot: Box::new(Cursor::new(data)) })
    }
}

fn now_nanos() -> u128 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0)
}

impl RaftStateMachine<TypeConfig> for StateMachine {
    type SnapshotBuilder = StateMachine;

    async fn applied_state(&mut self) -> StorageResult<(Option<LogId<NodeId>>, StoredMembership<NodeId, BasicNode>)> {
        let a = self.applied.read();
        Ok((a.last_applied, a.last_membership.clone()))
    }

    async fn apply<I>(&mut self, entries: I) -> StorageResult<Vec<Response>>
    where
        I: IntoIterator<Item = Entry<TypeConfig>> + Send,
        I::IntoIter: Send,
    {
        let mut a = self.applied.write();
        let mut out = Vec::new();
        for entry in entries {
            a.last_applied = Some(entry.log_id);
            let result = match entry.payload {
                EntryPayload::Blank => Ok(Reply::Done),
                EntryPayload::Membership(m) => {
                    a.last_membership = StoredMembership::new(Some(entry.log_id), m);
                    Ok(Reply::Done)
                }
                // A refused command is a deterministic outcome: every node refuses it alike and
                // the state stays unchanged; the proposer gets the error.
                EntryPayload::Normal(req) => a.machine.apply(&req),
            };
            out.push(Response(result));
        }
        Ok(out)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        self.clone()
    }

    async fn begin_receiving_snapshot(&mut self) -> StorageResult<Box<Cursor<Vec<u8>>>> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta<NodeId, BasicNode>,
        snapshot: Box<Cursor<Vec<u8>>>,
    ) -> StorageResult<()> {
        let machine: Machine = serde_json::from_slice(snapshot.get_ref())
            .map_err(|e| StorageIOError::read_snapshot(Some(meta.signature()), &e))?;
        self.persist(StoredSnapshot { meta: meta.clone(), machine: machine.clone() }).await?;
        let mut a = self.applied.write();
        a.last_applied = meta.last_log_id;
        a.last_membership = meta.last_membership.clone();
        a.machine = machine;
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> StorageResult<Option<Snapshot<TypeConfig>>> {
        let bytes = match std::fs::read(&self.snapshot_path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(StorageIOError::read_snapshot(None, &e).into()),
        };
        let s: StoredSnapshot = serde_json::from_slice(&bytes).map_err(|e| StorageIOError::read_snapshot(None, &e))?;
        let data = serde_json::to_vec(&s.machine).map_err(|e| StorageIOError::read_snapshot(None, &e))?;
        Ok(Some(Snapshot { meta: s.meta, snapshot: Box::new(Cursor::new(data)) }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn once(key: &str, scope: &str) -> Request {
        Request::Once {
            key: key.into(),
            request: Box::new(Request::Meta(Command::CreateScope { scope: scope.into(), now_ms: 1 })),
        }
    }

    #[test]
    fn a_keyed_request_is_applied_once_and_its_reply_survives_a_snapshot() {
        let mut m = Machine::default();
        assert_eq!(m.apply(&once("k1", "a")).unwrap(), Reply::Done);
        // The same key again: answered from the table, not refused as "scope exists".
        assert_eq!(m.apply(&once("k1", "a")).unwrap(), Reply::Done);
        // Another key for the same change is applied (and refused): refusals are not recorded.
        assert!(matches!(m.apply(&once("k2", "a")), Err(MetaError::ScopeExists(_))));
        assert!(m.replies.get("k2").is_none());
        // A begin records the transaction id it opened; a retry learns that id, not its own.
        m.apply(&once("k3", "s")).unwrap();
        let begin = |id: &str| Request::Once {
            key: "k4".into(),
            request: Box::new(Request::Txn(TxnCommand::Begin {
                id: id.into(),
                scope: "s".into(),
                stream: "t".into(),
                lease_ms: 10_000,
                now_ms: 1,
            })),
        };
        let snapshot: Machine = serde_json::from_slice(&serde_json::to_vec(&m).unwrap()).unwrap();
        assert_eq!(snapshot, m, "the reply table is part of the snapshot");
        let mut m = snapshot;
        assert_eq!(m.apply(&once("k1", "a")).unwrap(), Reply::Done);
        // (No stream s/t: the begin is refused, and its key stays free.)
        assert!(m.apply(&begin("00000000-0000-4000-8000-000000000001")).is_err());
        assert!(m.replies.get("k4").is_none());
    }

    #[test]
    fn the_reply_table_forgets_its_oldest_keys_first() {
        let mut r = Replies::default();
        for i in 0..REPLY_TABLE_CAPACITY + 5 {
            r.record(format!("k{i}"), Reply::Done);
        }
        assert_eq!(r.len(), REPLY_TABLE_CAPACITY);
        assert!(r.get("k4").is_none());
        assert!(r.get("k5").is_some());
        assert!(r.get(&format!("k{}", REPLY_TABLE_CAPACITY + 4)).is_some());
    }
}
