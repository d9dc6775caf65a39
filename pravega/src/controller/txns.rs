//! Transactions: create, ping, commit, abort, state — Nadi transactions under Pravega ids.
//!
//! A Pravega id is proposed to Nadi as the transaction's own id (its UUID text,
//! [`PravegaTxnId::to_nadi`]), so every later call finds the Nadi transaction by parsing the
//! id it carries: nothing is stored on the side. The id holds the epoch the transaction
//! began in; if the stream scaled between reading its epoch and the begin, the transaction
//! (recorded in the newer epoch) is aborted and begun again under an id with that epoch.
//!
//! The Pravega client's pinger panics on any error, so `pingTransaction` answers a status for
//! every transaction: OK while open, COMMITTED once committing or committed, ABORTED once
//! aborting, aborted, expired, or no longer known (a finished transaction's record is kept
//! 24 hours). Commit and abort return when Nadi has finished them (Nadi's commit is
//! synchronous), so the events are readable as soon as the client's `commit()` returns.

use std::time::Duration;

use nadi_client::nadi_proto::ErrorCode;
use nadi_client::nadi_proto::controller::v1 as npb;
use nadi_client::{NadiClient, TxnState};
use tonic::{Request, Response, Status};

use super::convert::{self, code_of, segment_range, stream_of};
use super::{PravegaController, Reply, pb};
use crate::txn_id::PravegaTxnId;

/// How many times a begin is tried again because the stream's epoch moved under it.
const BEGIN_ATTEMPTS: usize = 5;

/// Nadi's bounds on a lease: 100 ms ..= one day.
const MIN_LEASE_MS: u64 = 100;
const MAX_LEASE_MS: u64 = 86_400_000;

/// A Pravega lease in Nadi's bounds (`None`: zero or negative, Nadi's default or current one).
/// Pravega's controller refuses leases above its configured maximum; Nadi clamps instead, so a
/// client's pinger never sees LEASE_TOO_LARGE.
fn lease_of(ms: i64) -> Option<Duration> {
    let ms = u64::try_from(ms).ok().filter(|&ms| ms > 0)?;
    Some(Duration::from_millis(ms.clamp(MIN_LEASE_MS, MAX_LEASE_MS)))
}

/// The Nadi transaction id of a request's Pravega id.
fn nadi_id(id: Option<&pb::TxnId>) -> Result<String, Status> {
    let id = id.ok_or_else(|| Status::invalid_argument("the request carries no txnId"))?;
    Ok(PravegaTxnId::from_bits(id.high_bits, id.low_bits).to_nadi())
}

/// Transaction `id` if it exists and belongs to `scope/stream`; `None` if not (unknown to
/// this stream, or its record expired).
async fn txn_of(nadi: &NadiClient, id: &str, scope: &str, stream: &str) -> Result<Option<npb::TxnInfo>, Status> {
    match nadi.get_txn(id).await {
        Ok(t) if t.scope == scope && t.stream == stream => Ok(Some(t)),
        Ok(_) => Ok(None),
        Err(e) if code_of(&e) == ErrorCode::TxnNotFound => Ok(None),
        Err(e) => Err(convert::status(e)),
    }
}

pub async fn create_transaction(
    c: &PravegaController,
    req: Request<pb::CreateTxnRequest>,
) -> Reply<pb::CreateTxnResponse> {
    let nadi = c.caller(&req);
    let req = req.into_inner();
    let (scope, stream) = stream_of(req.stream_info.as_ref())?;
    let lease = lease_of(req.lease).unwrap_or(Duration::ZERO);
    let mut epoch = nadi.stream_info(&scope, &stream).await.map_err(convert::status)?.epoch;
    for _ in 0..BEGIN_ATTEMPTS {
        let proposed = PravegaTxnId::new(epoch);
        let t =
            nadi.begin_txn_with_id(&scope, &stream, lease, Some(&proposed.to_nadi())).await.map_err(convert::status)?;
        let id = PravegaTxnId::from_nadi(&t.txn_id)
            .ok_or_else(|| Status::internal(format!("transaction {} has no Pravega-shaped id", t.txn_id)))?;
        if t.epoch == id.epoch() {
            let active_segments =
                t.segments.iter().map(|s| segment_range(&scope, &stream, s.parent_id, s.key_low, s.key_high)).collect();
            return Ok(Response::new(pb::CreateTxnResponse {
                txn_id: Some(pb::TxnId { high_bits: id.high_bits(), low_bits: id.low_bits() }),
                active_segments,
                delegation_token: String::new(),
            }));
        }
        // The stream scaled in between: the id names the wrong epoch. Drop this one (nobody
        // learnt its id) and begin again in the epoch it was recorded in.
        tracing::debug!(txn = %t.txn_id, epoch, now = t.epoch, "stream scaled while a transaction began; beginning again");
        if let Err(e) = nadi.abort_txn(&t.txn_id).await {
            tracing::warn!(txn = %t.txn_id, error = %e, "aborting a transaction begun in a moving epoch failed; its lease will expire");
        }
        epoch = t.epoch;
    }
    Err(Status::unavailable(format!("{scope}/{stream} kept scaling while a transaction began; retry")))
}

pub async fn ping_transaction(c: &PravegaController, req: Request<pb::PingTxnRequest>) -> Reply<pb::PingTxnStatus> {
    use pb::ping_txn_status::Status as S;
    let nadi = c.caller(&req);
    let req = req.into_inner();
    let id = nadi_id(req.txn_id.as_ref())?;
    let of_state = |state: TxnState| match state {
        TxnState::Open => S::Ok,
        TxnState::Committing | TxnState::Committed => S::Committed,
        _ => S::Aborted,
    };
    let status = match nadi.ping_txn(&id, lease_of(req.lease)).await {
        Ok(t) => of_state(t.state),
        Err(e) => match code_of(&e) {
            ErrorCode::TxnAborted | ErrorCode::TxnNotFound => S::Aborted,
            // Committing or committed (or aborting): say which.
            ErrorCode::TxnNotOpen => match nadi.txn_status(&id).await {
                Ok(t) => of_state(t.state),
                Err(e) if code_of(&e) == ErrorCode::TxnNotFound => S::Aborted,
                Err(e) => return Err(convert::status(e)),
            },
            _ => return Err(convert::status(e)),
        },
    };
    Ok(Response::new(pb::PingTxnStatus { status: status as i32 }))
}

pub async fn commit_transaction(c: &PravegaController, req: Request<pb::TxnRequest>) -> Reply<pb::TxnStatus> {
    finish_transaction(c, req, true).await
}

pub async fn abort_transaction(c: &PravegaController, req: Request<pb::TxnRequest>) -> Reply<pb::TxnStatus> {
    finish_transaction(c, req, false).await
}

/// Commits (`commit`) or aborts the transaction, answering in Pravega's `TxnStatus`.
async fn finish_transaction(c: &PravegaController, req: Request<pb::TxnRequest>, commit: bool) -> Reply<pb::TxnStatus> {
    use pb::txn_status::Status as S;
    let nadi = c.caller(&req);
    let req = req.into_inner();
    let (scope, stream) = stream_of(req.stream_info.as_ref())?;
    let id = nadi_id(req.txn_id.as_ref())?;
    let status = match txn_of(&nadi, &id, &scope, &stream).await? {
        None => S::TransactionNotFound,
        Some(_) => {
            let done = if commit { nadi.commit_txn(&id).await.map(drop) } else { nadi.abort_txn(&id).await.map(drop) };
            match done {
                Ok(()) => S::Success,
                Err(e) => match code_of(&e) {
                    ErrorCode::TxnNotFound => S::TransactionNotFound,
                    ErrorCode::StreamNotFound | ErrorCode::ScopeNotFound => S::StreamNotFound,
                    _ => return Err(convert::status(e)),
                },
            }
        }
    };
    Ok(Response::new(pb::TxnStatus { status: status as i32 }))
}

pub async fn check_transaction_state(c: &PravegaController, req: Request<pb::TxnRequest>) -> Reply<pb::TxnState> {
    use npb::TxnState as N;
    use pb::txn_state::State as S;
    let nadi = c.caller(&req);
    let req = req.into_inner();
    let (scope, stream) = stream_of(req.stream_info.as_ref())?;
    let id = nadi_id(req.txn_id.as_ref())?;
    let state = match txn_of(&nadi, &id, &scope, &stream).await? {
        None => S::Unknown,
        Some(t) => match N::try_from(t.state) {
            Ok(N::Open) => S::Open,
            Ok(N::Committing) => S::Committing,
            Ok(N::Committed) => S::Committed,
            Ok(N::Aborting) => S::Aborting,
            Ok(N::Aborted) => S::Aborted,
            _ => S::Unknown,
        },
    };
    Ok(Response::new(pb::TxnState { state: state as i32 }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn leases_are_clamped_to_nadis_bounds() {
        assert_eq!(lease_of(0), None);
        assert_eq!(lease_of(-5), None);
        assert_eq!(lease_of(1), Some(Duration::from_millis(100)));
        assert_eq!(lease_of(90_000), Some(Duration::from_secs(90)));
        assert_eq!(lease_of(i64::MAX), Some(Duration::from_secs(86_400)));
    }

    #[test]
    fn request_ids_map_to_nadi_ids() {
        let id = PravegaTxnId::new(3);
        let wire = pb::TxnId { high_bits: id.high_bits(), low_bits: id.low_bits() };
        assert_eq!(nadi_id(Some(&wire)).unwrap(), id.to_nadi());
        assert_eq!(nadi_id(None).unwrap_err().code(), tonic::Code::InvalidArgument);
    }
}
