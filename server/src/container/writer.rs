//! The writer thread of a container: group commit.
//!
//! One thread per container takes every queued request (up to ~4 MiB), validates each against
//! the *written* state and encodes the group into one batch payload, commits it through the
//! [`ContainerLog`] (single copy: one Tier-1 append + one fsync), applies the committed record
//! to the *durable* state through [`ContainerStateMachine`], wakes tail readers and answers
//! every request of the group. Nothing is acknowledged before its record is committed.
//!
//! Metadata requests of the storage writer come on a channel of their own and go first: they
//! are small and free Tier-1 space, so they are served even while appends wait for it.
//! Metadata checkpoints are written between groups, when the written and durable states are
//! equal (every `checkpoint_interval` bytes, on request, and when a file could be recycled).
//!
//! Owns: [`Request`], [`WriterThread`]. Calls: `container::seam`, `container::state`,
//! `container::ops`, `container::checkpoint`. Called by: `Container` (queues requests).

use std::sync::Arc;

use bytes::Bytes;
use nadi_proto::framing::EVENT_HEADER_LEN;
use tokio::sync::{mpsc, oneshot};

use crate::container::ops::{self, Op};
use crate::container::seam::{CommitError, ContainerLog, ContainerStateMachine};
use crate::container::state::{Written, WrittenSegment, apply_written};
use crate::container::{AppendAck, GROUP_COMMIT_BYTES, QUEUE_DEPTH, Queued, Shared};
use crate::error::StoreError;
use crate::log::{LogError, Lsn};

/// A mutation for the writer thread, with where to send its outcome.
#[derive(Debug)]
pub(super) enum Request {
    Create {
        name: String,
        reply: oneshot::Sender<Result<bool, StoreError>>,
    },
    Append {
        name: String,
        writer: String,
        last_event_number: i64,
        event_count: u32,
        data: Bytes,
        reply: oneshot::Sender<Result<AppendAck, StoreError>>,
    },
    Seal {
        name: String,
        reply: oneshot::Sender<Result<u64, StoreError>>,
    },
    Delete {
        name: String,
        reply: oneshot::Sender<Result<(), StoreError>>,
    },
    /// An append that succeeds only if the segment's written length is `expected_offset` (for
    /// optimistic concurrency, e.g. state synchronizers). With a writer (id, number of the last
    /// event), an append whose number is not above the writer's stored one is a retry and is
    /// acknowledged before the length is checked; numbers may skip (no gap check).
    ConditionalAppend {
        name: String,
        expected_offset: u64,
        writer: Option<(String, i64)>,
        event_count: u32,
        data: Bytes,
        reply: oneshot::Sender<Result<AppendAck, StoreError>>,
    },
    /// `local` is the local id of the incarnation of `name` whose boundary was checked; the
    /// writer refuses the truncation if `name` now is another segment (deleted and created
    /// again in between).
    Truncate {
        name: String,
        local: u64,
        offset: u64,
        reply: oneshot::Sender<Result<(), StoreError>>,
    },
    Merge {
        target: String,
        source: String,
        reply: oneshot::Sender<Result<u64, StoreError>>,
    },
    /// Sets `key` to `value` if its current value is `expected` (`None`: absent).
    UpdateAttribute {
        name: String,
        key: String,
        expected: Option<u64>,
        value: u64,
        reply: oneshot::Sender<Result<(), StoreError>>,
    },
    /// Writes a metadata checkpoint now (after everything queued before it is durable) and
    /// answers with its lsn.
    Checkpoint {
        reply: oneshot::Sender<Result<Lsn, StoreError>>,
    },
    /// Records that `[offset, offset + len)` of segment incarnation `local` is in the Tier-2
    /// chunk it wrote at `offset` with `tag` (sent by the storage writer, on the metadata
    /// channel). A replicated container's tag names the term it was uploaded in: refused
    /// unless this replica still leads in that term.
    Tiered {
        name: String,
        local: u64,
        offset: u64,
        len: u64,
        tag: u64,
        reply: oneshot::Sender<Result<(), StoreError>>,
    },
    /// Periodic upkeep of a replicated container's log (sent on the metadata channel): let
    /// the group purge entries the state no longer needs and write checkpoints, so that
    /// Tier-1 files are recycled on followers too (see `ContainerLog::maintain`).
    Maintain,
    /// A barrier: answered once everything queued before it is durable.
    WriterState {
        name: String,
        writer: String,
        reply: oneshot::Sender<Result<(i64, u64), StoreError>>,
    },
}

/// Periodic checkpoints larger than [`SMALL_CHECKPOINT`] are at least this many times their
/// size beyond it apart (in bytes of batch records), so that writing them (on the writer
/// thread, between two groups) costs at most about 3 % of the log's bandwidth even when the
/// Tier-1 index is large (after a burst that Tier-2 has not drained yet); recovery replays at
/// most that much more.
const AMORTIZE: u64 = 32;
/// Checkpoints up to this size are cheap: only `checkpoint_interval` spaces them.
const SMALL_CHECKPOINT: u64 = 64 << 10;

/// The writer thread of one container.
pub(super) struct WriterThread {
    shared: Arc<Shared>,
    log: Box<dyn ContainerLog>,
    written: Written,
    rx: mpsc::Receiver<Queued>,
    /// Bytes of batch records between two checkpoints.
    checkpoint_interval: u64,
    /// Bytes of batch records written since the last checkpoint.
    since_checkpoint: u64,
    /// Size of the last checkpoint written (see [`AMORTIZE`]).
    last_checkpoint_len: u64,
    /// Metadata requests of the storage writer.
    meta_rx: mpsc::Receiver<Request>,
    /// The `keep_from` of the two newest checkpoints (newest first; 0 for ones written before
    /// this process started).
    kept_from: [u64; 2],
    /// The time of the last group (`Op::Time`): the clock, but never going back, so that no
    /// group is stamped before one committed earlier (seek by time relies on it).
    stamp: u64,
}

/// A reply to send once the batch is durable.
enum Reply {
    Created(oneshot::Sender<Result<bool, StoreError>>, Result<bool, StoreError>),
    // Lengths in replies are computed per request when it is encoded (what this request made
    // the segment), never read back after the group: another request of the same group must
    // not leak into this one's answer.
    Appended(oneshot::Sender<Result<AppendAck, StoreError>>, Result<(i64, u64), StoreError>),
    Sealed(oneshot::Sender<Result<u64, StoreError>>, Result<u64, StoreError>),
    Deleted(oneshot::Sender<Result<(), StoreError>>, Result<(), StoreError>),
    WriterState(oneshot::Sender<Result<(i64, u64), StoreError>>, Result<(i64, u64), StoreError>),
    Done(oneshot::Sender<Result<(), StoreError>>, Result<(), StoreError>),
    Merged(oneshot::Sender<Result<u64, StoreError>>, Result<u64, StoreError>),
    /// Answered with the outcome of the checkpoint written after the group.
    Checkpoint(oneshot::Sender<Result<Lsn, StoreError>>),
}

impl Reply {
    /// Answers with `e` instead of the outcome (the group was not committed).
    fn fail(self, e: StoreError) {
        match self {
            Reply::Created(tx, _) => drop(tx.send(Err(e))),
            Reply::Appended(tx, _) => drop(tx.send(Err(e))),
            Reply::Sealed(tx, _) => drop(tx.send(Err(e))),
            Reply::Deleted(tx, _) => drop(tx.send(Err(e))),
            Reply::WriterState(tx, _) => drop(tx.send(Err(e))),
            Reply::Done(tx, _) => drop(tx.send(Err(e))),
            Reply::Merged(tx, _) => drop(tx.send(Err(e))),
            Reply::Checkpoint(tx) => drop(tx.send(Err(e))),
        }
    }
}

pub(super) fn estimate(req: &Request) -> usize {
    match req {
        Request::Append { writer, data, name, .. } => ops::append_size(writer, data.len()) + name.len(),
        Request::ConditionalAppend { data, name, writer, .. } => {
            ops::append_size(writer.as_ref().map_or("", |(w, _)| w.as_str()), data.len()) + name.len()
        }
        Request::UpdateAttribute { key, .. } => 32 + key.len(),
        Request::Create { name, .. } => 16 + name.len(),
        // Seal, delete, truncate, merge and the barrier encode to at most 17 bytes.
        _ => 64,
    }
}

impl WriterThread {
    /// Starts the writer thread of container `shared.id` over `log`, from the recovered
    /// `written` state. Returns the request channel and the storage writer's metadata channel.
    pub(super) fn spawn(
        shared: Arc<Shared>,
        log: Box<dyn ContainerLog>,
        written: Option<Written>,
        checkpoint_interval: u64,
    ) -> (mpsc::Sender<Queued>, mpsc::Sender<Request>) {
        let (tx, rx) = mpsc::channel(QUEUE_DEPTH);
        let (meta_tx, meta_rx) = mpsc::channel(64);
        let id = shared.id;
        let from_durable = written.is_none();
        let writer = WriterThread {
            shared,
            log,
            written: written.unwrap_or_default(),
            rx,
            meta_rx,
            checkpoint_interval: checkpoint_interval.max(1),
            since_checkpoint: 0,
            last_checkpoint_len: 0,
            kept_from: [0, 0],
            stamp: 0,
        };
        std::thread::Builder::new()
            .name(format!("nadi-container-{id}"))
            .spawn(move || writer.run(from_durable))
            .expect("spawn container writer thread");
        (tx, meta_tx)
    }

    fn run(mut self, from_durable: bool) {
        if let Err(e) = self.log.ready() {
            tracing::error!(container = self.shared.id, error = %e, "the container's log did not become ready; its writer stops");
            let WriterThread { shared, log, .. } = self;
            drop(log);
            shared.writer_stopped.send_replace(true);
            return;
        }
        if from_durable {
            self.written = self.shared.durable.read().written();
        }
        // Never stamp a group before what is already applied (a clock set back across a restart).
        self.stamp = self.shared.durable.read().time_ms;
        let mut payload = ops::Payload::default();
        let mut batch = Vec::new();
        // A request that did not fit into the previous group starts the next one.
        let mut carry: Option<Queued> = None;
        // The byte-budget permits of the requests in `batch`.
        let mut permits = Vec::new();
        let limit = self.log.max_record_payload();
        loop {
            // Metadata from the storage writer goes first; it is small and frees space.
            let first = match carry.take() {
                Some(q) => Some(q),
                None => {
                    let next = futures::executor::block_on(async {
                        tokio::select! {
                            biased;
                            Some(m) = self.meta_rx.recv() => Some(Err(m)),
                            d = self.rx.recv() => d.map(Ok),
                        }
                    });
                    match next {
                        Some(Err(meta)) => {
                            self.commit_meta(meta, &mut payload);
                            continue;
                        }
                        Some(Ok(q)) => Some(q),
                        None => None,
                    }
                }
            };
            let Some(first) = first else { break };
            let mut size = estimate(&first.req) + ops::TIME_SIZE;
            batch.push(first.req);
            permits.push(first._permit);
            while size < GROUP_COMMIT_BYTES {
                match self.rx.try_recv() {
                    Ok(q) if size + estimate(&q.req) > limit => {
                        carry = Some(q);
                        break;
                    }
                    Ok(q) => {
                        size += estimate(&q.req);
                        batch.push(q.req);
                        permits.push(q._permit);
                    }
                    Err(_) => break,
                }
            }
            self.commit(&mut batch, &mut payload, size);
            // The group is answered: its bytes leave the queue.
            permits.clear();
        }
        tracing::debug!(container = self.shared.id, "container writer stopped");
        let WriterThread { shared, log, .. } = self;
        drop(log);
        shared.writer_stopped.send_replace(true);
    }

    /// Validates, writes, syncs and publishes one group of requests.
    fn commit(&mut self, batch: &mut Vec<Request>, payload: &mut ops::Payload, size: usize) {
        self.commit_group(batch, payload, size, false)
    }

    /// Validates, writes, syncs and publishes one group of requests; `meta` groups (from the
    /// storage writer) never wait for Tier-1 capacity.
    fn commit_group(&mut self, batch: &mut Vec<Request>, payload: &mut ops::Payload, size: usize, meta: bool) {
        let mut phases = Phases::start(batch.len());
        // A replica that does not lead its container's group takes nothing; one that just
        // started leading takes its view afresh from what is applied.
        match self.log.leading() {
            Ok(true) => {
                let d = self.shared.durable.read();
                self.written = d.written();
                self.stamp = self.stamp.max(d.time_ms);
            }
            Ok(false) => {}
            Err(leader) => {
                for req in batch.drain(..) {
                    fail(req, StoreError::NotLeader { container: self.shared.id, leader: leader.clone() });
                }
                return;
            }
        }
        // Make room first: a full disk fails the whole group before any state changes. At the
        // Tier-1 capacity, wait (serving the storage writer's metadata) until a file is freed.
        let size = size.min(self.log.max_record_payload());
        let mut reserved = self.log.reserve(size, !meta);
        while let Err(LogError::Full { .. }) = reserved {
            use std::sync::atomic::Ordering;
            self.shared.stalled.store(true, Ordering::Relaxed);
            tracing::debug!(container = self.shared.id, "Tier-1 at capacity: appends wait for data to move to Tier-2");
            let Some(meta) = self.meta_rx.blocking_recv() else {
                for req in batch.drain(..) {
                    fail(req, StoreError::ShuttingDown);
                }
                return;
            };
            self.commit_meta(meta, payload);
            reserved = self.log.reserve(size, true);
        }
        self.shared.stalled.store(false, std::sync::atomic::Ordering::Relaxed);
        phases.reserved();
        if let Err(e) = reserved {
            let err = || {
                if e.is_retryable() {
                    StoreError::StorageFull(e.to_string())
                } else {
                    StoreError::Internal(e.to_string())
                }
            };
            tracing::error!(container = self.shared.id, error = %e, "cannot write to the Tier-1 log");
            for req in batch.drain(..) {
                fail(req, err());
            }
            return;
        }
        payload.clear();
        // Every group carries its append time first (see `container::state`, "Append time").
        self.stamp = self.stamp.max(nadi_proto::clock::now_ms());
        ops::encode_time(&mut payload.ops, self.stamp);
        let mut replies = Vec::with_capacity(batch.len());
        for req in batch.drain(..) {
            replies.push(self.encode(req, payload));
        }
        if payload.len() == ops::TIME_SIZE {
            payload.clear();
        }
        if !payload.is_empty() {
            self.since_checkpoint += crate::log::record_len(payload.len()) as u64;
            let started = phases.encoded();
            let at = match self.log.commit(&payload.parts()) {
                Ok(at) => at,
                Err(CommitError::Lost { leader }) => {
                    // Not acknowledged: the writers retry (with their ids, so nothing is stored
                    // twice). The view is ahead of what is known committed; `leading` renews it.
                    tracing::info!(container = self.shared.id, "leadership lost while a group was in flight");
                    for r in replies {
                        r.fail(StoreError::NotLeader { container: self.shared.id, leader: leader.clone() });
                    }
                    return;
                }
                Err(CommitError::Log(e)) => {
                    // `reserve` succeeded, so this cannot happen; if it does, the written state
                    // is ahead of the log and the only safe move is to stop.
                    tracing::error!(container = self.shared.id, error = %e, "log append failed after reserve; aborting");
                    std::process::abort();
                }
            };
            phases.committed();
            if !self.log.applies() {
                // Applying what we just encoded through the state machine is deliberate: the
                // durable state is built by exactly the code recovery runs (decode + apply), so
                // a live store and a recovered one cannot differ. (The payload's appended data
                // was not copied into it, so this decodes the operations around it, which a
                // property test holds equal to decoding the whole record; the codec decodes
                // at ~75 GiB/s by criterion, far off the hot path's cost.)
                let ops = match payload.decode() {
                    Ok(ops) => ops,
                    Err(e) => {
                        tracing::error!(container = self.shared.id, error = %e, "a batch just encoded does not decode; aborting");
                        std::process::abort();
                    }
                };
                let garbage = self.shared.durable.write().apply_ops(at, &ops);
                if !garbage.is_empty() {
                    self.shared.garbage.lock().extend(garbage);
                }
                self.shared.durable_lsn.send_replace(at.lsn);
            }
            self.shared.current_file.store(self.log.current_file(), std::sync::atomic::Ordering::Relaxed);
            let queued = (self.shared.queue_limit as u64).saturating_sub(self.shared.queue.available_permits() as u64);
            self.shared.metrics.committed(self.shared.id, replies.len(), started.elapsed().as_secs_f64(), queued);
        }
        // The appended data is in the log now: its receive buffers go back.
        payload.clear();
        phases.applied();
        // A requested checkpoint follows the group, so it covers everything queued before it.
        let checkpoint = replies.iter().any(|r| matches!(r, Reply::Checkpoint(_))).then(|| self.write_checkpoint());
        for r in replies {
            match r {
                Reply::Created(tx, res) => drop(tx.send(res)),
                Reply::Appended(tx, res) => {
                    drop(tx.send(res.map(|(n, length)| AppendAck { last_event_number: n, segment_length: length })))
                }
                Reply::Sealed(tx, res) => drop(tx.send(res)),
                Reply::Deleted(tx, res) => drop(tx.send(res)),
                Reply::WriterState(tx, res) => drop(tx.send(res)),
                Reply::Done(tx, res) => drop(tx.send(res)),
                Reply::Merged(tx, res) => drop(tx.send(res)),
                Reply::Checkpoint(tx) => {
                    let res = match &checkpoint {
                        Some(Ok(lsn)) => Ok(*lsn),
                        Some(Err(e)) if e.is_retryable() => Err(StoreError::StorageFull(e.to_string())),
                        Some(Err(e)) => Err(StoreError::Internal(e.to_string())),
                        None => Err(StoreError::Internal("checkpoint not written".into())),
                    };
                    drop(tx.send(res));
                }
            }
        }
        let spacing = AMORTIZE * self.last_checkpoint_len.saturating_sub(SMALL_CHECKPOINT);
        if self.since_checkpoint >= self.checkpoint_interval.max(spacing) {
            // Errors are logged inside; the next one is tried after another interval.
            let _ = self.write_checkpoint();
        }
        phases.done(self.shared.id);
    }

    /// Writes a checkpoint of the durable state. Called between groups only, when every
    /// written record is durable, so the written and durable states are the same.
    fn write_checkpoint(&mut self) -> Result<Lsn, LogError> {
        let mut buf = Vec::new();
        self.shared.durable.read().encode_checkpoint(self.written.next_local, &mut buf);
        self.since_checkpoint = 0;
        self.last_checkpoint_len = buf.len() as u64;
        let keep_from = self.keep_from();
        self.kept_from = [keep_from, self.kept_from[0]];
        match self.log.checkpoint(&buf, keep_from) {
            Ok(lsn) => {
                tracing::debug!(container = self.shared.id, lsn, bytes = buf.len(), "metadata checkpoint written");
                Ok(lsn)
            }
            Err(e) => {
                tracing::warn!(container = self.shared.id, bytes = buf.len(), error = %e,
                    "cannot write a metadata checkpoint; recovery replays from the previous one");
                Err(e)
            }
        }
    }

    /// The oldest Tier-1 log file the durable state refers to (the current file if none).
    fn keep_from(&self) -> u64 {
        let d = self.shared.durable.read();
        let current = self.log.current_file();
        d.segments.values().flat_map(|s| s.index.iter()).map(|e| e.addr.file).fold(current, u64::min)
    }

    /// Commits one metadata request of the storage writer as a group of its own (it may go
    /// beyond the Tier-1 capacity by one file), then writes checkpoints if that lets old log
    /// files be recycled: two, because recovery may fall back to the older of the two newest.
    fn commit_meta(&mut self, first: Request, payload: &mut ops::Payload) {
        let mut batch = vec![first];
        while let Ok(m) = self.meta_rx.try_recv() {
            batch.push(m);
        }
        let before = batch.len();
        batch.retain(|r| !matches!(r, Request::Maintain));
        if batch.len() < before {
            let keep_from = self.keep_from();
            self.log.maintain(keep_from);
        }
        if batch.is_empty() {
            return;
        }
        let size: usize = batch.iter().map(estimate).sum::<usize>() + ops::TIME_SIZE;
        self.commit_group(&mut batch, payload, size, true);
        for _ in 0..2 {
            if self.keep_from() > self.kept_from.iter().copied().min().unwrap_or(0) {
                let _ = self.write_checkpoint();
            }
        }
    }

    /// Validates one request against the written state, encodes it, and applies it to the
    /// written state.
    fn encode(&mut self, req: Request, buf: &mut ops::Payload) -> Reply {
        let w = &mut self.written;
        match req {
            Request::Create { name, reply } => {
                let res = match w.segments.get(&name) {
                    Some(_) => Ok(false),
                    None => {
                        let local = w.next_local;
                        ops::encode_create(&mut buf.ops, local, &name);
                        apply_written(w, &Op::Create { local, name: &name });
                        Ok(true)
                    }
                };
                Reply::Created(reply, res)
            }
            Request::Append { name, writer, last_event_number, event_count, data, reply } => {
                let res = (|| {
                    let s = live(w, &name)?;
                    if s.sealed {
                        return Err(StoreError::Sealed(name.clone()));
                    }
                    let prev = s.writers.get(&writer).copied().unwrap_or(-1);
                    if last_event_number <= prev {
                        // Every event of this batch was stored before: a retry. Acknowledge.
                        return Ok((prev, s.length));
                    }
                    let first = last_event_number - event_count as i64 + 1;
                    if first > prev + 1 {
                        // A gap means an earlier batch of this writer was not stored (it failed,
                        // e.g. on a full disk). Storing this one would let the writer believe the
                        // missing events were acknowledged.
                        return Err(StoreError::EventNumberGap {
                            segment: name.clone(),
                            writer: writer.clone(),
                            expected: prev + 1,
                            got: first,
                        });
                    }
                    let (data, count) = if first <= prev {
                        // Partly stored before: keep the events after `prev` only.
                        let skip = (prev - first + 1) as usize;
                        let starts = nadi_proto::framing::validate_batch(&data, event_count)
                            .map_err(|e| StoreError::InvalidArgument(e.to_string()))?;
                        (data.slice(starts[skip]..), event_count - skip as u32)
                    } else {
                        (data, event_count)
                    };
                    let local = s.local;
                    let offset = s.length;
                    let data_len = data.len();
                    buf.append(local, offset, &writer, last_event_number, count, data);
                    let payload = data_len as u64 - count as u64 * EVENT_HEADER_LEN as u64;
                    self.shared.metrics.appended(&name, count, payload);
                    apply_written(
                        w,
                        &Op::Append {
                            local,
                            offset,
                            writer: &writer,
                            last_event_number,
                            event_count: count,
                            data_pos: 0,
                            data_len,
                        },
                    );
                    Ok((last_event_number, offset + data_len as u64))
                })();
                Reply::Appended(reply, res)
            }
            Request::Seal { name, reply } => {
                let res = live(w, &name).map(|s| (s.local, s.sealed, s.length)).map(|(local, sealed, length)| {
                    if !sealed {
                        ops::encode_seal(&mut buf.ops, local);
                        apply_written(w, &Op::Seal { local });
                    }
                    length
                });
                Reply::Sealed(reply, res)
            }
            Request::Delete { name, reply } => {
                // Later requests in the same batch already see the segment as gone (a create
                // of the same name makes a new, empty segment), exactly as replay will.
                let res = live(w, &name).map(|s| s.local).map(|local| {
                    ops::encode_delete(&mut buf.ops, local);
                    apply_written(w, &Op::Delete { local });
                });
                Reply::Deleted(reply, res)
            }
            Request::ConditionalAppend { name, expected_offset, writer, event_count, data, reply } => {
                let (writer, last_event_number) = writer.unwrap_or_default();
                let last_event_number = if writer.is_empty() { -1 } else { last_event_number };
                let mut retry = None;
                let res = live(w, &name).and_then(|s| {
                    if s.sealed {
                        return Err(StoreError::Sealed(name.clone()));
                    }
                    if !writer.is_empty() {
                        let prev = s.writers.get(&writer).copied().unwrap_or(-1);
                        if last_event_number <= prev {
                            retry = Some(AppendAck { last_event_number: prev, segment_length: s.length });
                            return Ok((s.local, s.length));
                        }
                    }
                    if s.length != expected_offset {
                        return Err(StoreError::OffsetMismatch {
                            segment: name.clone(),
                            expected: expected_offset,
                            actual: s.length,
                        });
                    }
                    Ok((s.local, s.length))
                });
                let res = res.map(|(local, offset)| {
                    if let Some(ack) = retry {
                        return (ack.last_event_number, ack.segment_length);
                    }
                    let data_len = data.len();
                    buf.append(local, offset, &writer, last_event_number, event_count, data);
                    let payload = (data_len as u64).saturating_sub(event_count as u64 * EVENT_HEADER_LEN as u64);
                    self.shared.metrics.appended(&name, event_count, payload);
                    let op = Op::Append {
                        local,
                        offset,
                        writer: &writer,
                        last_event_number,
                        event_count,
                        data_pos: 0,
                        data_len,
                    };
                    apply_written(w, &op);
                    (last_event_number, offset + data_len as u64)
                });
                Reply::Appended(reply, res)
            }
            Request::Truncate { name, local, offset, reply } => {
                let res = live(w, &name).and_then(|s| {
                    if s.local != local {
                        // Deleted and created again since the boundary was checked: the check
                        // says nothing about this segment.
                        return Err(StoreError::SegmentReplaced(name.clone()));
                    }
                    if offset > s.length {
                        return Err(StoreError::BadOffset { segment: name.clone(), offset, length: s.length });
                    }
                    // Truncating to or before the current start changes nothing.
                    Ok((offset > s.start_offset).then_some(s.local))
                });
                let res = res.map(|local| {
                    if let Some(local) = local {
                        ops::encode_truncate(&mut buf.ops, local, offset);
                        apply_written(w, &Op::Truncate { local, start_offset: offset });
                    }
                });
                Reply::Done(reply, res)
            }
            Request::Merge { target, source, reply } => {
                let res = (|| {
                    if target == source {
                        return Err(StoreError::InvalidArgument(format!("cannot merge segment {target} into itself")));
                    }
                    let src = live(w, &source)?;
                    if !src.sealed {
                        return Err(StoreError::NotSealed(source.clone()));
                    }
                    let (src_local, src_bytes) = (src.local, src.length - src.start_offset);
                    let t = live(w, &target)?;
                    if t.sealed {
                        return Err(StoreError::Sealed(target.clone()));
                    }
                    let (t_local, t_length) = (t.local, t.length + src_bytes);
                    ops::encode_merge(&mut buf.ops, t_local, src_local);
                    apply_written(w, &Op::Merge { target: t_local, source: src_local });
                    Ok(t_length)
                })();
                Reply::Merged(reply, res)
            }
            Request::UpdateAttribute { name, key, expected, value, reply } => {
                let res = live(w, &name).and_then(|s| {
                    let actual = s.attributes.get(&key).copied();
                    if actual != expected {
                        return Err(StoreError::AttributeMismatch {
                            segment: name.clone(),
                            key: key.clone(),
                            expected,
                            actual,
                        });
                    }
                    Ok(s.local)
                });
                let res = res.map(|local| {
                    ops::encode_attribute(&mut buf.ops, local, &key, value);
                    apply_written(w, &Op::Attribute { local, key: &key, value });
                });
                Reply::Done(reply, res)
            }
            Request::Checkpoint { reply } => Reply::Checkpoint(reply),
            Request::Maintain => unreachable!("commit_meta takes upkeep requests out of a group"),
            Request::Tiered { name, local, offset, len, tag, reply } => {
                let term = self.log.term();
                let res = live(w, &name).and_then(|s| {
                    if s.local != local {
                        return Err(StoreError::SegmentReplaced(name.clone()));
                    }
                    if let Some(term) = term
                        && crate::tier2::tag_term(tag) != term
                    {
                        return Err(StoreError::NotLeader { container: self.shared.id, leader: None });
                    }
                    // The bytes must still be a run of whole Tier-1 entries (a truncation or
                    // merge since the upload may have moved them).
                    let d = self.shared.durable.read();
                    let seg = d.segments.get(&name).filter(|m| m.local == local);
                    let whole = seg.is_some_and(|m| {
                        let first = m.index.partition_point(|e| e.offset < offset);
                        let mut at = offset;
                        for e in &m.index[first..] {
                            if e.offset != at || at >= offset + len {
                                break;
                            }
                            at += e.len as u64;
                        }
                        at == offset + len && m.index.get(first).is_some_and(|e| e.offset == offset)
                    });
                    if !whole {
                        return Err(StoreError::InvalidArgument(format!(
                            "segment {name}: bytes {offset}..{} are no longer in the Tier-1 log",
                            offset + len
                        )));
                    }
                    Ok(())
                });
                if res.is_ok() {
                    ops::encode_tiered(&mut buf.ops, local, offset, len, tag);
                }
                Reply::Done(reply, res)
            }
            Request::WriterState { name, writer, reply } => {
                let res = live(w, &name).map(|s| (s.writers.get(&writer).copied().unwrap_or(-1), s.length));
                Reply::WriterState(reply, res)
            }
        }
    }
}

/// The written state of a segment that exists.
fn live<'a>(w: &'a mut Written, name: &str) -> Result<&'a mut WrittenSegment, StoreError> {
    w.segments.get_mut(name).ok_or_else(|| StoreError::SegmentNotFound(name.to_owned()))
}

fn fail(req: Request, e: StoreError) {
    match req {
        Request::Create { reply, .. } => drop(reply.send(Err(e))),
        Request::Append { reply, .. } => drop(reply.send(Err(e))),
        Request::Seal { reply, .. } => drop(reply.send(Err(e))),
        Request::Delete { reply, .. } => drop(reply.send(Err(e))),
        Request::WriterState { reply, .. } => drop(reply.send(Err(e))),
        Request::ConditionalAppend { reply, .. } => drop(reply.send(Err(e))),
        Request::Truncate { reply, .. } => drop(reply.send(Err(e))),
        Request::Merge { reply, .. } => drop(reply.send(Err(e))),
        Request::UpdateAttribute { reply, .. } => drop(reply.send(Err(e))),
        Request::Checkpoint { reply } => drop(reply.send(Err(e))),
        Request::Maintain => {}
        Request::Tiered { reply, .. } => drop(reply.send(Err(e))),
    }
}

/// A group commit slower than this is logged with the time of each of its phases.
const SLOW_GROUP: std::time::Duration = std::time::Duration::from_millis(50);

/// When each phase of one group commit ended, to name the slow one when a group is slow.
struct Phases {
    requests: usize,
    start: std::time::Instant,
    marks: [Option<std::time::Instant>; 4],
}

impl Phases {
    fn start(requests: usize) -> Phases {
        Phases { requests, start: std::time::Instant::now(), marks: [None; 4] }
    }

    fn mark(&mut self, i: usize) -> std::time::Instant {
        let now = std::time::Instant::now();
        self.marks[i] = Some(now);
        now
    }

    /// Room in the log was reserved (a new log file prepared, or a wait at Tier-1 capacity).
    fn reserved(&mut self) {
        self.mark(0);
    }

    /// The requests were encoded; returns when the commit starts.
    fn encoded(&mut self) -> std::time::Instant {
        self.mark(1)
    }

    /// The record was written and synced (or replicated).
    fn committed(&mut self) {
        self.mark(2);
    }

    /// The durable state was updated.
    fn applied(&mut self) {
        self.mark(3);
    }

    /// Logs the group if it took [`SLOW_GROUP`] or more: milliseconds per phase (reserve,
    /// encode, commit, apply, then replies and any checkpoint), so that a stall of appends can
    /// be told apart from a slow disk without tracing the process.
    fn done(&self, container: u32) {
        let total = self.start.elapsed();
        if total < SLOW_GROUP {
            return;
        }
        let mut last = self.start;
        let mut ms = [0.0f64; 5];
        for (i, m) in self.marks.iter().enumerate() {
            if let Some(m) = m {
                ms[i] = m.duration_since(last).as_secs_f64() * 1e3;
                last = *m;
            }
        }
        ms[4] = last.elapsed().as_secs_f64() * 1e3;
        tracing::warn!(
            container,
            requests = self.requests,
            total_ms = total.as_secs_f64() * 1e3,
            reserve_ms = ms[0],
            encode_ms = ms[1],
            commit_ms = ms[2],
            apply_ms = ms[3],
            after_ms = ms[4],
            "slow group commit"
        );
    }
}
