//! The gRPC API `nadi.controller.v1.TransactionService` and the transaction workflows.
//!
//! Each workflow records its decision in the Raft log first and then acts on the segment
//! stores with idempotent steps, so whoever runs it again (a retrying client, the leader's
//! sweep, a new leader) finishes it:
//!
//! - begin: record `Open` (with one segment per segment of the current epoch) → create the
//!   transaction segments on their stores (idempotent) → answer.
//! - commit, same epoch: check every transaction segment exists → record `Committing` → for
//!   each segment: seal it, merge it into its parent (a segment already gone was merged: only a
//!   merge removes a transaction segment once its transaction is `Committing`) → `Committed`.
//! - commit, rolling (the stream was scaled since begin): record `Committing` together with a
//!   scale whose successors are the transaction segments → roll that scale forward (seal the
//!   active segments, make the epoch current) → `Committed`.
//! - abort (client, or the lease sweep): record `Aborting` → delete every transaction segment
//!   (missing ones are fine) → `Aborted`.
//!
//! Workflows on one stream run one at a time on the leader (a per-stream lock). The leader
//! runs [`Controller::sweep_txns`] periodically: it aborts open transactions whose lease ran out
//! and finishes commits and aborts that were interrupted.

use nadi_security::acl::{Permission, Resource};
use std::time::Duration;

use nadi_proto::ErrorCode;
use nadi_proto::controller::v1 as pb;
use nadi_proto::names::{validate_scope, validate_stream, validate_txn_id};
use nadi_proto::segment::v1 as seg;
use pb::transaction_service_server::{TransactionService, TransactionServiceServer};
use tonic::{Request, Response, Status};

use crate::MetaError;
use crate::meta::RequestKey;
use crate::raft::Reply;
use crate::service::{Controller, now_ms, store_error};
use crate::txn::{AbortReason, DEFAULT_LEASE_MS, TxnCommand, TxnRecord, TxnState};

/// How many times a commit retries its decision when a scale or another commit of the same
/// stream had to be finished first.
const COMMIT_ATTEMPTS: usize = 4;

/// A fault-injection hook for tests: with `NADI_FAULT_TXN_COMMIT_STEP_MS=N` in the
/// controller's environment, a commit pauses N ms before each of its steps on the segment
/// stores, so a test can kill the leader while a commit is half done. Never set in production.
fn commit_step_delay() -> Option<Duration> {
    static DELAY: std::sync::OnceLock<Option<Duration>> = std::sync::OnceLock::new();
    *DELAY.get_or_init(|| {
        std::env::var("NADI_FAULT_TXN_COMMIT_STEP_MS").ok().and_then(|v| v.parse().ok()).map(Duration::from_millis)
    })
}

async fn fault_pause() {
    if let Some(d) = commit_step_delay() {
        tokio::time::sleep(d).await;
    }
}

fn is_not_found(s: &Status) -> bool {
    nadi_proto::errors::from_status(s).0 == ErrorCode::SegmentNotFound
}

/// A new transaction id: 128 random bits as a lowercase UUID-like string (version 4 layout).
fn new_txn_id() -> String {
    let r: u128 = rand::random();
    let r = (r & !(0xf << 76) | (0x4 << 76)) & !(0x3 << 62) | (0x2 << 62);
    let h = format!("{r:032x}");
    format!("{}-{}-{}-{}-{}", &h[..8], &h[8..12], &h[12..16], &h[16..20], &h[20..])
}

impl Controller {
    fn txn(&self, id: &str) -> Result<TxnRecord, MetaError> {
        self.meta.read_txns(|_, t| t.get(id).cloned())
    }

    /// The wire form of a transaction, with the endpoint of each of its segments.
    pub(crate) fn txn_info(&self, t: &TxnRecord) -> pb::TxnInfo {
        let segments = if t.state == TxnState::Aborted {
            vec![]
        } else {
            t.segments
                .iter()
                .map(|s| pb::TxnSegment {
                    qualified_name: s.name.clone(),
                    parent_id: s.parent.packed(),
                    key_low: s.key_low,
                    key_high: s.key_high,
                    endpoint: self.meta.endpoint_for(&s.name).unwrap_or_default(),
                })
                .collect()
        };
        pb::TxnInfo {
            txn_id: t.id.clone(),
            scope: t.scope.clone(),
            stream: t.stream.clone(),
            epoch: t.epoch,
            state: match t.state {
                TxnState::Open => pb::TxnState::Open,
                TxnState::Committing => pb::TxnState::Committing,
                TxnState::Committed => pb::TxnState::Committed,
                TxnState::Aborting => pb::TxnState::Aborting,
                TxnState::Aborted => pb::TxnState::Aborted,
            } as i32,
            lease_ms: t.lease_ms,
            lease_deadline_ms: t.lease_deadline_ms,
            created_at_ms: t.created_at_ms,
            finished_at_ms: t.finished_at_ms,
            segments,
            rolled: t.rolled_to.is_some(),
            abort_reason: t.abort_reason.map(|r| r.as_str().to_owned()).unwrap_or_default(),
        }
    }

    /// Opens a transaction on `scope/stream` and creates its segments. With a client's
    /// idempotency `key`, a retry of a begin that was applied returns the transaction that
    /// begin opened (creating its segments again is a no-op) instead of opening another.
    /// `proposed` is the caller's id for it (checked against the id rules; the state machine
    /// refuses one that is taken); `None` makes a random one.
    pub async fn begin_txn(
        &self,
        key: Option<&RequestKey>,
        scope: &str,
        stream: &str,
        lease_ms: u64,
        proposed: Option<&str>,
    ) -> Result<TxnRecord, MetaError> {
        validate_scope(scope)?;
        validate_stream(stream)?;
        if let Some(id) = proposed {
            validate_txn_id(id)?;
        }
        if self.meta.read_cluster(|c| c.containers) == 0 {
            return Err(MetaError::Unavailable("no segment store has registered with the controller yet".into()));
        }
        let lease_ms = if lease_ms == 0 { DEFAULT_LEASE_MS } else { lease_ms };
        let cmd = TxnCommand::Begin {
            id: proposed.map_or_else(new_txn_id, str::to_owned),
            scope: scope.into(),
            stream: stream.into(),
            lease_ms,
            now_ms: now_ms(),
        };
        let id = match self.meta.propose_txn_once(key, cmd).await? {
            Reply::TxnBegun { id } => id,
            other => return Err(MetaError::Internal(format!("a transaction begin was answered {other:?}"))),
        };
        let t = self.txn(&id)?;
        for s in &t.segments {
            let created = match self.store(&s.name) {
                Ok(mut store) => store
                    .create_segment(seg::CreateSegmentRequest { segment: s.name.clone() })
                    .await
                    .map_err(store_error),
                Err(e) => Err(e),
            };
            if let Err(e) = created {
                // Nobody learns this id; abort it now (the lease sweep would, later).
                tracing::warn!(txn = %id, error = %e, "creating a transaction segment failed; aborting the transaction");
                if let Err(e2) = self.abort_txn(&id, AbortReason::Client).await {
                    tracing::warn!(txn = %id, error = %e2, "aborting it failed too; its lease will expire");
                }
                return Err(e);
            }
        }
        Ok(t)
    }

    /// Commits transaction `id` (see the module docs); returns it committed.
    pub async fn commit_txn(&self, id: &str) -> Result<TxnRecord, MetaError> {
        let timer = crate::workflow::Timer::start("txn_commit");
        timer.finish(self.commit_txn_now(id).await)
    }

    async fn commit_txn_now(&self, id: &str) -> Result<TxnRecord, MetaError> {
        let t = self.txn(id)?;
        let _lock = self.locks.lock(&t.scope, &t.stream).await;
        let t = self.txn(id)?;
        if matches!(t.state, TxnState::Aborting | TxnState::Aborted) {
            // Refused by the state machine with the reason (TXN_ABORTED).
            self.meta.propose_txn(TxnCommand::StartCommit { id: id.into(), now_ms: now_ms() }).await?;
        }
        if t.state == TxnState::Open {
            // Before deciding: every segment must exist. A segment missing now was never
            // created (begin failed); after the decision, a missing segment means "merged".
            for s in &t.segments {
                let info =
                    self.store(&s.name)?.get_segment_info(seg::GetSegmentInfoRequest { segment: s.name.clone() }).await;
                match info {
                    Ok(_) => {}
                    Err(st) if is_not_found(&st) => {
                        return Err(MetaError::Internal(format!(
                            "transaction segment {} does not exist; the transaction cannot commit",
                            s.name
                        )));
                    }
                    Err(st) => return Err(store_error(st)),
                }
            }
            let mut attempt = 0;
            loop {
                attempt += 1;
                match self.meta.propose_txn(TxnCommand::StartCommit { id: id.into(), now_ms: now_ms() }).await {
                    Ok(()) => break,
                    // A scale, or a same-epoch commit that blocks a rolling one, is in the
                    // way: finish it and decide again.
                    Err(MetaError::ScaleInProgress(_)) if attempt < COMMIT_ATTEMPTS => {
                        self.finish_scale(&t.scope, &t.stream).await?;
                        self.finish_stream_txns(&t.scope, &t.stream).await?;
                    }
                    Err(e) => return Err(e),
                }
            }
        }
        let t = self.finish_txn(id).await?;
        if t.state != TxnState::Committed {
            return Err(MetaError::Internal(format!("transaction {id} is {:?} after its commit", t.state)));
        }
        Ok(t)
    }

    /// Aborts transaction `id`; returns it aborted.
    pub async fn abort_txn(&self, id: &str, reason: AbortReason) -> Result<TxnRecord, MetaError> {
        let timer = crate::workflow::Timer::start("txn_abort");
        let t = self.txn(id)?;
        let _lock = self.locks.lock(&t.scope, &t.stream).await;
        self.meta.propose_txn(TxnCommand::StartAbort { id: id.into(), reason, now_ms: now_ms() }).await?;
        timer.finish(self.finish_txn(id).await)
    }

    /// Finishes a decided commit or abort of `id` (idempotent); returns the transaction as it
    /// then is. Open and finished transactions are returned unchanged. The caller holds the
    /// stream's lock.
    async fn finish_txn(&self, id: &str) -> Result<TxnRecord, MetaError> {
        let t = self.txn(id)?;
        match t.state {
            TxnState::Committing => {
                if t.rolled_to.is_some() {
                    // The decision recorded a scale to the transaction's segments: roll it forward
                    // (it may already be done, by a scale, seal or resume).
                    fault_pause().await;
                    self.finish_scale(&t.scope, &t.stream).await?;
                } else {
                    self.merge_txn_segments(&t).await?;
                }
                self.meta.propose_txn(TxnCommand::Committed { id: id.into(), now_ms: now_ms() }).await?;
            }
            TxnState::Aborting => {
                for s in &t.segments {
                    match self
                        .store(&s.name)?
                        .delete_segment(seg::DeleteSegmentRequest { segment: s.name.clone() })
                        .await
                    {
                        Ok(_) => {}
                        Err(st) if is_not_found(&st) => {}
                        Err(st) => return Err(store_error(st)),
                    }
                }
                self.meta.propose_txn(TxnCommand::Aborted { id: id.into(), now_ms: now_ms() }).await?;
            }
            TxnState::Open | TxnState::Committed | TxnState::Aborted => return Ok(t),
        }
        self.txn(id)
    }

    /// Seals each transaction segment and merges it into its parent. A segment that is gone
    /// was merged by an earlier run (its parent still exists: checked).
    async fn merge_txn_segments(&self, t: &TxnRecord) -> Result<(), MetaError> {
        for s in &t.segments {
            fault_pause().await;
            let parent = self
                .meta
                .read(|st| st.stream_any(&t.scope, &t.stream).map(|m| m.segment_name(&t.scope, &t.stream, s.parent)))
                .await?;
            let mut store = self.store(&s.name)?;
            match store.seal_segment(seg::SealSegmentRequest { segment: s.name.clone() }).await {
                Ok(_) => {}
                Err(st) if is_not_found(&st) => continue, // merged before
                Err(st) => return Err(store_error(st)),
            }
            let merged = store
                .merge_segments(seg::MergeSegmentsRequest { target: parent.clone(), source: s.name.clone() })
                .await;
            match merged {
                Ok(_) => {}
                Err(st) if is_not_found(&st) => {
                    // Either the source was merged in between, or the target is missing.
                    store.get_segment_info(seg::GetSegmentInfoRequest { segment: parent.clone() }).await.map_err(
                        |e| {
                            MetaError::Internal(format!(
                                "parent segment {parent} of transaction {}: {}",
                                t.id,
                                e.message()
                            ))
                        },
                    )?;
                }
                Err(st) => return Err(store_error(st)),
            }
        }
        Ok(())
    }

    /// Finishes every decided commit and abort of one stream. The caller holds its lock.
    pub(crate) async fn finish_stream_txns(&self, scope: &str, stream: &str) -> Result<(), MetaError> {
        let ids: Vec<String> = self.meta.read_txns(|_, txns| {
            txns.of_stream(scope, stream)
                .into_iter()
                .filter(|t| matches!(t.state, TxnState::Committing | TxnState::Aborting))
                .map(|t| t.id.clone())
                .collect()
        });
        for id in ids {
            self.finish_txn(&id).await?;
        }
        Ok(())
    }

    /// One pass of the leader's transaction sweep: aborts open transactions whose lease ran out
    /// at `now` and finishes decided commits and aborts (also what a new leader does first).
    /// Streams whose lock is taken (a workflow is running there) are left for the next pass.
    pub async fn sweep_txns(&self) -> Result<(), MetaError> {
        let now = now_ms();
        let work: Vec<(String, String, String, TxnState)> = self.meta.read_txns(|_, txns| {
            txns.txns
                .values()
                .filter(|t| match t.state {
                    TxnState::Open => t.lease_deadline_ms < now,
                    TxnState::Committing | TxnState::Aborting => true,
                    TxnState::Committed | TxnState::Aborted => false,
                })
                .map(|t| (t.id.clone(), t.scope.clone(), t.stream.clone(), t.state))
                .collect()
        });
        let mut first_error = None;
        for (id, scope, stream, state) in work {
            let Some(_lock) = self.locks.try_lock(&scope, &stream) else { continue };
            let result = async {
                if state == TxnState::Open {
                    let cmd =
                        TxnCommand::StartAbort { id: id.clone(), reason: AbortReason::LeaseExpired, now_ms: now_ms() };
                    match self.meta.propose_txn(cmd).await {
                        Ok(()) => tracing::info!(txn = %id, %scope, %stream, "transaction lease expired; aborting"),
                        // Pinged or decided in between: nothing to do now.
                        Err(MetaError::InvalidArgument(_) | MetaError::TxnNotOpen(_) | MetaError::TxnNotFound(_)) => {
                            return Ok(());
                        }
                        Err(e) => return Err(e),
                    }
                }
                self.finish_txn(&id).await.map(|_| ())
            }
            .await;
            if let Err(e) = result {
                tracing::warn!(txn = %id, error = %e, "finishing a transaction failed; retrying on the next sweep");
                first_error.get_or_insert(e);
            }
        }
        first_error.map_or(Ok(()), Err)
    }
}

/// `nadi.controller.v1.TransactionService` over a [`Controller`].
#[derive(Debug, Clone)]
pub struct TxnService {
    controller: Controller,
}

impl TxnService {
    pub fn new(controller: Controller) -> TxnService {
        TxnService { controller }
    }

    /// The tonic server for this service.
    pub fn into_server(self) -> TransactionServiceServer<TxnService> {
        TransactionServiceServer::new(self)
    }
}

fn check_id(id: &str) -> Result<(), MetaError> {
    Ok(validate_txn_id(id)?)
}

impl TxnService {
    /// The caller of `req` may do `needed` to transaction `id`'s stream. An unknown id is
    /// NotFound for anyone (ids are random: knowing one is no leak).
    fn require_on_txn<T>(&self, req: &Request<T>, id: &str, needed: Permission) -> Result<(), Status> {
        check_id(id)?;
        let t = self.controller.txn(id)?;
        crate::access::require(&self.controller.meta, req, &Resource::stream(&t.scope, &t.stream), needed)?;
        Ok(())
    }
}

#[tonic::async_trait]
impl TransactionService for TxnService {
    #[tracing::instrument(level = "debug", name = "controller.begin_txn", skip_all, fields(scope = %req.get_ref().scope, stream = %req.get_ref().stream))]
    async fn begin_txn(&self, req: Request<pb::BeginTxnRequest>) -> Result<Response<pb::BeginTxnResponse>, Status> {
        let stream = Resource::stream(&req.get_ref().scope, &req.get_ref().stream);
        crate::access::require(&self.controller.meta, &req, &stream, Permission::Write)?;
        let key = RequestKey::of(&req)?;
        let req = req.into_inner();
        let proposed = (!req.txn_id.is_empty()).then_some(req.txn_id.as_str());
        let t = self.controller.begin_txn(key.as_ref(), &req.scope, &req.stream, req.lease_ms, proposed).await?;
        Ok(Response::new(pb::BeginTxnResponse { txn: Some(self.controller.txn_info(&t)) }))
    }

    async fn get_txn(&self, req: Request<pb::GetTxnRequest>) -> Result<Response<pb::GetTxnResponse>, Status> {
        self.require_on_txn(&req, &req.get_ref().txn_id, Permission::Read)?;
        let id = req.into_inner().txn_id;
        check_id(&id)?;
        let t = self.controller.txn(&id)?;
        Ok(Response::new(pb::GetTxnResponse { txn: Some(self.controller.txn_info(&t)) }))
    }

    async fn ping_txn(&self, req: Request<pb::PingTxnRequest>) -> Result<Response<pb::PingTxnResponse>, Status> {
        self.require_on_txn(&req, &req.get_ref().txn_id, Permission::Write)?;
        let req = req.into_inner();
        check_id(&req.txn_id)?;
        let lease_ms = (req.lease_ms != 0).then_some(req.lease_ms);
        let cmd = TxnCommand::Ping { id: req.txn_id.clone(), lease_ms, now_ms: now_ms() };
        self.controller.meta.propose_txn(cmd).await?;
        let t = self.controller.txn(&req.txn_id)?;
        Ok(Response::new(pb::PingTxnResponse { txn: Some(self.controller.txn_info(&t)) }))
    }

    #[tracing::instrument(level = "debug", name = "controller.commit_txn", skip_all, fields(txn = %req.get_ref().txn_id))]
    async fn commit_txn(&self, req: Request<pb::CommitTxnRequest>) -> Result<Response<pb::CommitTxnResponse>, Status> {
        self.require_on_txn(&req, &req.get_ref().txn_id, Permission::Write)?;
        let id = req.into_inner().txn_id;
        check_id(&id)?;
        let t = self.controller.commit_txn(&id).await?;
        Ok(Response::new(pb::CommitTxnResponse { txn: Some(self.controller.txn_info(&t)) }))
    }

    #[tracing::instrument(level = "debug", name = "controller.abort_txn", skip_all, fields(txn = %req.get_ref().txn_id))]
    async fn abort_txn(&self, req: Request<pb::AbortTxnRequest>) -> Result<Response<pb::AbortTxnResponse>, Status> {
        self.require_on_txn(&req, &req.get_ref().txn_id, Permission::Write)?;
        let id = req.into_inner().txn_id;
        check_id(&id)?;
        let t = self.controller.abort_txn(&id, AbortReason::Client).await?;
        Ok(Response::new(pb::AbortTxnResponse { txn: Some(self.controller.txn_info(&t)) }))
    }

    async fn list_txns(&self, req: Request<pb::ListTxnsRequest>) -> Result<Response<pb::ListTxnsResponse>, Status> {
        let stream = Resource::stream(&req.get_ref().scope, &req.get_ref().stream);
        crate::access::require(&self.controller.meta, &req, &stream, Permission::Read)?;
        let req = req.into_inner();
        validate_scope(&req.scope).map_err(MetaError::from)?;
        validate_stream(&req.stream).map_err(MetaError::from)?;
        let txns = self.controller.meta.read_txns(|st, txns| {
            st.stream(&req.scope, &req.stream)?;
            Ok::<_, MetaError>(txns.of_stream(&req.scope, &req.stream).into_iter().cloned().collect::<Vec<_>>())
        })?;
        let txns = txns.iter().map(|t| self.controller.txn_info(t)).collect();
        Ok(Response::new(pb::ListTxnsResponse { txns }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn txn_ids_are_valid_and_distinct() {
        let a = new_txn_id();
        let b = new_txn_id();
        assert_ne!(a, b);
        validate_txn_id(&a).unwrap();
        assert_eq!(a.len(), 36);
        assert_eq!(&a[14..15], "4");
    }
}
