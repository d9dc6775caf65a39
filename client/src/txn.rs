//! Transactions: a batch of events on one stream that becomes readable all at once, or never.
//!
//! ```text
//! begin(stream, lease) ─► controller: txn id, epoch, one transaction segment per segment
//! write(key, payload)  ─► route by key over the transaction's segments (the epoch's key ranges)
//!                         ─► ordinary appends, writer id = txn id (exactly-once per segment)
//! flush()              ─► every event written so far is durable (still invisible)
//! commit()             ─► flush, then CommitTxn: the controller merges each transaction segment
//!                         into its parent (or, if the stream was scaled meanwhile, makes them the
//!                         stream's next epoch); returns once all events are part of the stream
//! abort() / lease runs out ─► the segments are deleted; nothing is ever readable
//! ```
//!
//! Guarantees: all or nothing; events with one key keep their order, and sit after the
//! stream's events of that key written before the commit and before those written after it.
//! A commit is retried safely: committing a committed transaction succeeds. Another process can
//! [`resume`](TransactionalWriter::resume) the transaction by id and continue writing (its event
//! numbers continue after what the stores have) or commit it. The lease is not renewed on its
//! own: call [`ping`](TransactionalWriter::ping) if a transaction stays open longer.

use std::time::Duration;

use bytes::Bytes;
use nadi_proto::controller::v1 as pb;

use crate::client::NadiClient;
use crate::error::{ClientError, ErrorKind};
use crate::writer::{EventWriter, WriterConfig};

/// Where a transaction is in its life. `Committing` and `Aborting` are decisions that the
/// controller always carries through.
///
/// # Example
///
/// ```no_run
/// use nadi_client::{ClientError, NadiClient, TxnState};
///
/// async fn example(txn_id: &str) -> Result<(), ClientError> {
///     let client = NadiClient::new(&["http://127.0.0.1:9090".to_owned()])?;
///     let status = client.txn_status(txn_id).await?;
///     match status.state {
///         TxnState::Open => println!("open until {} ms", status.lease_deadline_ms),
///         TxnState::Committing | TxnState::Committed => println!("committed (rolled: {})", status.rolled),
///         TxnState::Aborting | TxnState::Aborted => println!("aborted: {}", status.abort_reason),
///         _ => println!("{:?}", status.state),
///     }
///     Ok(())
/// }
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum TxnState {
    /// Accepting writes; commit or abort possible.
    Open,
    /// Commit decided and in progress; it will complete.
    Committing,
    /// All events are part of the stream.
    Committed,
    /// Abort decided (by a client or lease expiry) and in progress.
    Aborting,
    /// No event of it will ever be readable.
    Aborted,
}

/// A transaction as the controller reports it (without its segments; see
/// [`NadiClient::get_txn`] for those).
///
/// # Example
///
/// ```no_run
/// use nadi_client::{ClientError, NadiClient, TxnState};
///
/// async fn example(txn_id: &str) -> Result<(), ClientError> {
///     let client = NadiClient::new(&["http://127.0.0.1:9090".to_owned()])?;
///     let status = client.txn_status(txn_id).await?;
///     match status.state {
///         TxnState::Open => println!("open until {} ms", status.lease_deadline_ms),
///         TxnState::Committing | TxnState::Committed => println!("committed (rolled: {})", status.rolled),
///         TxnState::Aborting | TxnState::Aborted => println!("aborted: {}", status.abort_reason),
///         _ => println!("{:?}", status.state),
///     }
///     Ok(())
/// }
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct TxnStatus {
    /// The transaction id (made by the controller; safe in names and URLs).
    pub txn_id: String,
    /// The scope of its stream.
    pub scope: String,
    /// Its stream.
    pub stream: String,
    /// The stream's epoch when the transaction began.
    pub epoch: u32,
    /// Where it is in its life.
    pub state: TxnState,
    /// After this wall-clock time (ms since the Unix epoch) an open transaction is aborted.
    pub lease_deadline_ms: u64,
    /// True if the commit rolled the transaction into a new epoch (the stream had been scaled).
    pub rolled: bool,
    /// Why it was aborted (`client` or `lease expired`), empty otherwise.
    pub abort_reason: String,
}

impl TxnStatus {
    fn from_pb(t: &pb::TxnInfo) -> Result<TxnStatus, ClientError> {
        let state = match pb::TxnState::try_from(t.state) {
            Ok(pb::TxnState::Open) => TxnState::Open,
            Ok(pb::TxnState::Committing) => TxnState::Committing,
            Ok(pb::TxnState::Committed) => TxnState::Committed,
            Ok(pb::TxnState::Aborting) => TxnState::Aborting,
            Ok(pb::TxnState::Aborted) => TxnState::Aborted,
            _ => return Err(ClientError::new(ErrorKind::Internal, format!("unknown transaction state {}", t.state))),
        };
        Ok(TxnStatus {
            txn_id: t.txn_id.clone(),
            scope: t.scope.clone(),
            stream: t.stream.clone(),
            epoch: t.epoch,
            state,
            lease_deadline_ms: t.lease_deadline_ms,
            rolled: t.rolled,
            abort_reason: t.abort_reason.clone(),
        })
    }
}

fn txn_of(t: Option<pb::TxnInfo>) -> Result<pb::TxnInfo, ClientError> {
    t.ok_or_else(|| ClientError::new(ErrorKind::Internal, "the controller returned no transaction"))
}

impl NadiClient {
    /// Opens a transaction on `scope/stream` (see [`TransactionalWriter::begin`], which also
    /// gives you a writer) and returns it in wire form, with its segments. A `lease` of zero
    /// means the controller's default (60 s).
    ///
    /// # Errors
    ///
    /// `NotFound` if the stream does not exist, `Sealed` if it is sealed, `Invalid` if
    /// `lease` is outside 100 ms ..= 1 day, `Unavailable` if no controller (or segment store)
    /// could serve it.
    #[tracing::instrument(level = "debug", name = "client.begin_txn", skip_all, fields(scope = %scope, stream = %stream))]
    pub async fn begin_txn(&self, scope: &str, stream: &str, lease: Duration) -> Result<pb::TxnInfo, ClientError> {
        self.begin(scope, stream, lease, None).await
    }

    /// Like [`begin_txn`](Self::begin_txn), giving the transaction the id `txn_id` (1..=64
    /// characters of `[0-9a-f-]`) instead of a random one: for front ends whose transaction ids
    /// carry meaning (the Pravega front end). `None` is `begin_txn`.
    ///
    /// # Errors
    ///
    /// As [`begin_txn`](Self::begin_txn); also `Invalid` if `txn_id` breaks the id rules or is
    /// taken by another transaction.
    #[tracing::instrument(level = "debug", name = "client.begin_txn", skip_all, fields(scope = %scope, stream = %stream))]
    pub async fn begin_txn_with_id(
        &self,
        scope: &str,
        stream: &str,
        lease: Duration,
        txn_id: Option<&str>,
    ) -> Result<pb::TxnInfo, ClientError> {
        self.begin(scope, stream, lease, txn_id).await
    }

    async fn begin(
        &self,
        scope: &str,
        stream: &str,
        lease: Duration,
        txn_id: Option<&str>,
    ) -> Result<pb::TxnInfo, ClientError> {
        let lease_ms = lease.as_millis().min(u64::MAX as u128) as u64;
        let req = pb::BeginTxnRequest {
            scope: scope.to_owned(),
            stream: stream.to_owned(),
            lease_ms,
            txn_id: txn_id.unwrap_or_default().to_owned(),
        };
        txn_of(
            self.transactions(|mut c| {
                let req = req.clone();
                async move { c.begin_txn(req).await }
            })
            .await?
            .txn,
        )
    }

    /// A transaction's state, lease and outcome.
    ///
    /// # Errors
    ///
    /// `NotFound` if the controller does not know (or no longer remembers) the id,
    /// `Unavailable` if no controller answered.
    pub async fn txn_status(&self, txn_id: &str) -> Result<TxnStatus, ClientError> {
        TxnStatus::from_pb(&self.get_txn(txn_id).await?)
    }

    /// A transaction as the controller reports it, in wire form (with its segments).
    ///
    /// # Errors
    ///
    /// As [`txn_status`](Self::txn_status).
    pub async fn get_txn(&self, txn_id: &str) -> Result<pb::TxnInfo, ClientError> {
        let req = pb::GetTxnRequest { txn_id: txn_id.to_owned() };
        txn_of(
            self.transactions(|mut c| {
                let req = req.clone();
                async move { c.get_txn(req).await }
            })
            .await?
            .txn,
        )
    }

    /// Extends an open transaction's lease to now + `lease` (`None`: its current length).
    ///
    /// # Errors
    ///
    /// `NotFound` for an unknown id, `Conflict` if the transaction is not open (`TXN_ABORTED`
    /// if it was aborted or its lease ran out already, `TXN_NOT_OPEN` if it is committing or
    /// committed), `Invalid` if `lease` is outside 100 ms ..= 1 day, `Unavailable` if no
    /// controller answered.
    pub async fn ping_txn(&self, txn_id: &str, lease: Option<Duration>) -> Result<TxnStatus, ClientError> {
        let lease_ms = lease.map_or(0, |l| l.as_millis().clamp(1, u64::MAX as u128) as u64);
        let req = pb::PingTxnRequest { txn_id: txn_id.to_owned(), lease_ms };
        TxnStatus::from_pb(&txn_of(
            self.transactions(|mut c| {
                let req = req.clone();
                async move { c.ping_txn(req).await }
            })
            .await?
            .txn,
        )?)
    }

    /// Commits a transaction whose events are durable. Succeeds if it is committed already.
    /// Retried by the client while the controller is unavailable (a leader change); the
    /// controller finishes a commit it started in any case. Does not flush anything: use
    /// [`TransactionalWriter::commit`] to flush and commit.
    ///
    /// # Errors
    ///
    /// `NotFound` for an unknown id, `Conflict` (`TXN_ABORTED`) if it was aborted or its
    /// lease ran out, `Unavailable` if no controller answered within the retry period (the
    /// commit may or may not have been decided: call again or ask [`txn_status`](Self::txn_status)).
    #[tracing::instrument(level = "debug", name = "client.commit_txn", skip_all, fields(txn = %txn_id))]
    pub async fn commit_txn(&self, txn_id: &str) -> Result<TxnStatus, ClientError> {
        let req = pb::CommitTxnRequest { txn_id: txn_id.to_owned() };
        TxnStatus::from_pb(&txn_of(
            self.transactions(|mut c| {
                let req = req.clone();
                async move { c.commit_txn(req).await }
            })
            .await?
            .txn,
        )?)
    }

    /// Aborts a transaction: none of its events will ever be readable. Succeeds if it is
    /// aborted (or aborting) already.
    ///
    /// # Errors
    ///
    /// `NotFound` for an unknown id, `Conflict` (`TXN_NOT_OPEN`) if it is committing or
    /// committed, `Unavailable` if no controller answered.
    #[tracing::instrument(level = "debug", name = "client.abort_txn", skip_all, fields(txn = %txn_id))]
    pub async fn abort_txn(&self, txn_id: &str) -> Result<TxnStatus, ClientError> {
        let req = pb::AbortTxnRequest { txn_id: txn_id.to_owned() };
        TxnStatus::from_pb(&txn_of(
            self.transactions(|mut c| {
                let req = req.clone();
                async move { c.abort_txn(req).await }
            })
            .await?
            .txn,
        )?)
    }

    /// The transactions of a stream the controller remembers, oldest first (finished ones are
    /// forgotten after a while).
    ///
    /// # Errors
    ///
    /// `NotFound` if the stream does not exist, `Unavailable` if no controller answered.
    pub async fn list_txns(&self, scope: &str, stream: &str) -> Result<Vec<pb::TxnInfo>, ClientError> {
        let req = pb::ListTxnsRequest { scope: scope.to_owned(), stream: stream.to_owned() };
        Ok(self
            .transactions(|mut c| {
                let req = req.clone();
                async move { c.list_txns(req).await }
            })
            .await?
            .txns)
    }
}

/// Writes events in one transaction. See the module docs.
///
/// Events are routed by key over the transaction's segments (one per segment of the epoch in
/// which it began) exactly like [`EventWriter`] does, but are invisible to readers until the
/// commit. The transaction's segments never scale: a transaction writer does not re-route.
///
/// # Example
///
/// ```no_run
/// # async fn example() -> Result<(), nadi_client::ClientError> {
/// use std::time::Duration;
/// use nadi_client::{NadiClient, TransactionalWriter};
///
/// let client = NadiClient::new(&["http://127.0.0.1:9090".to_owned()])?;
/// let mut txn = TransactionalWriter::begin(&client, "demo", "orders", Duration::from_secs(60)).await?;
/// txn.write(Some(b"customer-7"), "order 1".into()).await?;
/// txn.write(Some(b"customer-7"), "order 2".into()).await?;
/// // Another process could continue it: TransactionalWriter::resume(&client, txn.txn_id()).
/// txn.commit().await?; // both events become readable together, in order
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct TransactionalWriter {
    client: NadiClient,
    info: pb::TxnInfo,
    /// `None` once the transaction is no longer open (committed or aborted through this handle,
    /// or resumed in another state).
    writer: Option<EventWriter>,
    /// `abort` was called: a later `commit` through this handle is refused, since what was
    /// written may not all be durable (the writer stopped without a flush).
    abort_requested: bool,
}

impl TransactionalWriter {
    /// Opens a transaction on `scope/stream`. An open transaction that is neither committed,
    /// aborted nor pinged within `lease` is aborted by the controller (100 ms ..= 1 day; zero
    /// means the default, 60 s).
    ///
    /// # Errors
    ///
    /// As [`NadiClient::begin_txn`].
    pub async fn begin(
        client: &NadiClient,
        scope: &str,
        stream: &str,
        lease: Duration,
    ) -> Result<TransactionalWriter, ClientError> {
        let info = client.begin_txn(scope, stream, lease).await?;
        Self::with_info(client, info)
    }

    /// Continues transaction `txn_id`, begun by this or another process. If it is open, writes
    /// continue the event numbering after what the segment stores hold for it (nothing is
    /// written twice); in any state it can be committed (or the commit retried) or aborted.
    /// A handle on a transaction that is not open cannot write.
    ///
    /// # Errors
    ///
    /// As [`NadiClient::get_txn`].
    pub async fn resume(client: &NadiClient, txn_id: &str) -> Result<TransactionalWriter, ClientError> {
        let info = client.get_txn(txn_id).await?;
        Self::with_info(client, info)
    }

    fn with_info(client: &NadiClient, info: pb::TxnInfo) -> Result<TransactionalWriter, ClientError> {
        let writer = if info.state == pb::TxnState::Open as i32 {
            let segments =
                info.segments.iter().map(|s| (s.qualified_name.clone(), s.endpoint.clone(), s.key_low, s.key_high));
            let config = WriterConfig { writer_id: Some(info.txn_id.clone()), ..Default::default() };
            Some(EventWriter::for_segments(client, info.txn_id.clone(), segments.collect(), config)?)
        } else {
            None
        };
        Ok(TransactionalWriter { client: client.clone(), info, writer, abort_requested: false })
    }

    /// The transaction id (give it to another process to resume or commit).
    pub fn txn_id(&self) -> &str {
        &self.info.txn_id
    }

    /// The stream's epoch when the transaction began.
    pub fn epoch(&self) -> u32 {
        self.info.epoch
    }

    fn writer(&self) -> Result<&EventWriter, ClientError> {
        self.writer.as_ref().ok_or_else(|| {
            ClientError::new(ErrorKind::Conflict, format!("transaction {} is no longer open", self.info.txn_id))
        })
    }

    /// Queues one event of the transaction (routed by key like [`EventWriter::write`]).
    ///
    /// # Errors
    ///
    /// `Conflict` if this handle no longer writes (committed or aborted through it, or resumed
    /// while not open); otherwise as [`EventWriter::write`].
    pub async fn write(&self, key: Option<&[u8]>, payload: Bytes) -> Result<(), ClientError> {
        self.writer()?.write(key, payload).await
    }

    /// Waits until every event written so far is durable (still invisible until the commit).
    ///
    /// # Errors
    ///
    /// `Conflict` if this handle no longer writes; otherwise as [`EventWriter::flush`] (which
    /// fails if another process committed or aborted the transaction meanwhile).
    pub async fn flush(&self) -> Result<(), ClientError> {
        self.writer()?.flush().await
    }

    /// Extends the lease to now + `lease` (`None`: the current lease length).
    ///
    /// # Errors
    ///
    /// As [`NadiClient::ping_txn`].
    pub async fn ping(&self, lease: Option<Duration>) -> Result<TxnStatus, ClientError> {
        self.client.ping_txn(&self.info.txn_id, lease).await
    }

    /// The transaction's state now, from the controller.
    ///
    /// # Errors
    ///
    /// As [`NadiClient::txn_status`].
    pub async fn status(&self) -> Result<TxnStatus, ClientError> {
        self.client.txn_status(&self.info.txn_id).await
    }

    /// Flushes, then commits. Returns once every event is part of the stream. Safe to call
    /// again after an error: a transaction whose commit was decided is always finished, and
    /// committing a committed one succeeds.
    ///
    /// # Errors
    ///
    /// A flush error (the commit was not asked for; retry or abort), or those of
    /// [`NadiClient::commit_txn`]: `Conflict` (`TXN_ABORTED`) if it was aborted or expired.
    pub async fn commit(&mut self) -> Result<TxnStatus, ClientError> {
        if self.abort_requested {
            return Err(ClientError::new(
                ErrorKind::Conflict,
                format!("transaction {} was asked to abort through this handle; it cannot commit", self.info.txn_id),
            ));
        }
        if let Some(w) = self.writer.take() {
            if let Err(e) = w.flush().await {
                // Not decided: the caller may retry the commit (writes are unaffected).
                self.writer = Some(w);
                return Err(e);
            }
            // Every event is acknowledged; stop the segment tasks.
            w.close().await?;
        }
        self.client.commit_txn(&self.info.txn_id).await
    }

    /// Aborts: none of the transaction's events will ever be readable. The handle stops
    /// writing at once, even if the call fails (retry `abort`; `commit` through this handle is
    /// refused from now on).
    ///
    /// # Errors
    ///
    /// As [`NadiClient::abort_txn`].
    pub async fn abort(&mut self) -> Result<TxnStatus, ClientError> {
        self.abort_requested = true;
        self.writer = None;
        self.client.abort_txn(&self.info.txn_id).await
    }
}
