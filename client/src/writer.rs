//! The key-routed, batching, pipelining event writer.
//!
//! Each active segment of the stream gets one task with one append stream:
//!
//! ```text
//! write(key, payload) ─► route by key_point(key) ─► segment task queue (bounded: backpressure)
//!   segment task: drain queue into a batch (≤ max_batch_bytes) ─► number its events
//!                 ─► send, keep it in `in_flight` until acknowledged (≤ max_in_flight batches)
//!                 ◄─ cumulative acks: drop acknowledged batches, wake flush() callers
//!   on a dropped connection: reconnect, the setup handshake says what the store has, re-send
//!   only what it does not have (the store also drops duplicates by event number).
//! ```
//!
//! Events with the same key go to the same segment task, are numbered in order and stored in
//! order, so per-key order holds. `flush()` returns once every event written before it is
//! durable.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use nadi_proto::framing::{self, MAX_EVENT_SIZE};
use nadi_proto::routing::{in_range, key_point};
use nadi_proto::segment::v1 as pb;
use parking_lot::Mutex;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio_stream::StreamExt;
use tokio_stream::wrappers::ReceiverStream;

use crate::client::NadiClient;
use crate::error::{ClientError, ErrorKind};

/// Told when events become durable, with the time each was handed to `write` (for latency
/// measurement, e.g. by `nadi bench`). Called from the writer's tasks; keep it cheap.
pub trait AckObserver: Send + Sync + 'static {
    fn acked(&self, written_at: &[Instant], now: Instant);
}

/// Settings of an [`EventWriter`].
#[derive(Clone)]
pub struct WriterConfig {
    /// Stable writer id. Reusing it after a restart continues the writer's event numbering on
    /// each segment. A random id is used if `None`.
    pub writer_id: Option<String>,
    /// A batch is sent once it holds this many bytes (or nothing more is queued).
    pub max_batch_bytes: usize,
    /// Batches per segment sent but not yet acknowledged.
    pub max_in_flight: usize,
    /// Events queued per segment before `write` waits.
    pub queue_len: usize,
    /// Reconnect attempts after a connection is lost, before the writer fails.
    pub max_reconnects: u32,
    /// Optional observer of acknowledgement latency.
    pub observer: Option<std::sync::Arc<dyn AckObserver>>,
}

impl std::fmt::Debug for WriterConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WriterConfig")
            .field("writer_id", &self.writer_id)
            .field("max_batch_bytes", &self.max_batch_bytes)
            .field("max_in_flight", &self.max_in_flight)
            .field("queue_len", &self.queue_len)
            .field("max_reconnects", &self.max_reconnects)
            .field("observer", &self.observer.is_some())
            .finish()
    }
}

impl Default for WriterConfig {
    fn default() -> Self {
        Self {
            writer_id: None,
            max_batch_bytes: 1024 * 1024,
            max_in_flight: 16,
            queue_len: 8192,
            max_reconnects: 10,
            observer: None,
        }
    }
}

enum Cmd {
    Event(Bytes, Instant),
    Flush(oneshot::Sender<Result<(), ClientError>>),
}

struct Route {
    low: f64,
    high: f64,
    tx: mpsc::Sender<Cmd>,
}

/// Writes events to a stream. See the module docs.
pub struct EventWriter {
    writer_id: String,
    routes: Vec<Route>,
    tasks: Vec<JoinHandle<()>>,
    failure: Arc<Mutex<Option<ClientError>>>,
    next_unkeyed: AtomicUsize,
}

impl std::fmt::Debug for EventWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventWriter").field("writer_id", &self.writer_id).field("segments", &self.routes.len()).finish()
    }
}

fn random_id() -> String {
    format!("w-{:016x}{:016x}", rand::random::<u64>(), rand::random::<u64>())
}

impl EventWriter {
    /// A writer for `scope/stream`. Fails with `NotFound` if the stream does not exist.
    pub async fn new(
        client: &NadiClient,
        scope: &str,
        stream: &str,
        config: WriterConfig,
    ) -> Result<EventWriter, ClientError> {
        let mut config = config;
        // A batch stays below `max_batch_bytes` before its last event (at most 8 MiB + 4
        // framed), so this cap keeps every batch under the store's 16 MiB batch limit.
        config.max_batch_bytes = config.max_batch_bytes.clamp(1, MAX_EVENT_SIZE - 8);
        config.max_in_flight = config.max_in_flight.max(1);
        let writer_id = config.writer_id.clone().unwrap_or_else(random_id);
        if writer_id.is_empty() || writer_id.len() > 256 {
            return Err(ClientError::new(ErrorKind::Invalid, "writer id must be 1..=256 bytes"));
        }
        let active = client.active_segments(scope, stream).await?;
        let failure = Arc::new(Mutex::new(None));
        let mut routes = Vec::new();
        let mut tasks = Vec::new();
        for loc in active.segments {
            let seg =
                loc.segment.ok_or_else(|| ClientError::new(ErrorKind::Internal, "segment location without segment"))?;
            let (tx, rx) = mpsc::channel(config.queue_len);
            let task = SegmentTask {
                client: client.clone(),
                endpoint: loc.endpoint,
                segment: seg.qualified_name,
                writer_id: writer_id.clone(),
                config: config.clone(),
                failure: failure.clone(),
                next_number: None,
                in_flight: VecDeque::new(),
                waiters: Vec::new(),
                acked: -1,
            };
            tasks.push(tokio::spawn(task.run(rx)));
            routes.push(Route { low: seg.key_low, high: seg.key_high, tx });
        }
        if routes.is_empty() {
            return Err(ClientError::new(
                ErrorKind::Internal,
                format!("stream {scope}/{stream} has no active segments"),
            ));
        }
        Ok(EventWriter { writer_id, routes, tasks, failure, next_unkeyed: AtomicUsize::new(0) })
    }

    /// A writer over a fixed set of segments instead of a stream's active segments: a
    /// transaction's segments, `(qualified name, store endpoint, key_low, key_high)` tiling
    /// [0, 1). It routes keys exactly like [`EventWriter::new`] but never re-routes (a
    /// transaction's segments do not scale). Used by `TransactionalWriter`.
    pub(crate) fn for_segments(
        client: &NadiClient,
        writer_id: String,
        segments: Vec<(String, String, f64, f64)>,
        config: WriterConfig,
    ) -> Result<EventWriter, ClientError> {
        let mut config = config;
        config.max_batch_bytes = config.max_batch_bytes.clamp(1, MAX_EVENT_SIZE - 8);
        config.max_in_flight = config.max_in_flight.max(1);
        if segments.is_empty() {
            return Err(ClientError::new(ErrorKind::Internal, "a writer needs at least one segment"));
        }
        let failure = Arc::new(Mutex::new(None));
        let mut routes = Vec::new();
        let mut tasks = Vec::new();
        for (segment, endpoint, low, high) in segments {
            let (tx, rx) = mpsc::channel(config.queue_len);
            let task = SegmentTask {
                client: client.clone(),
                endpoint,
                segment,
                writer_id: writer_id.clone(),
                config: config.clone(),
                failure: failure.clone(),
                next_number: None,
                in_flight: VecDeque::new(),
                waiters: Vec::new(),
                acked: -1,
            };
            tasks.push(tokio::spawn(task.run(rx)));
            routes.push(Route { low, high, tx });
        }
        Ok(EventWriter { writer_id, routes, tasks, failure, next_unkeyed: AtomicUsize::new(0) })
    }

    /// This writer's id.
    pub fn writer_id(&self) -> &str {
        &self.writer_id
    }

    fn failed(&self) -> ClientError {
        self.failure.lock().clone().unwrap_or_else(|| ClientError::new(ErrorKind::Internal, "the writer has stopped"))
    }

    /// Queues one event. Events with the same key are stored in the order written; events
    /// without a key are spread over the segments. Returns once the event is queued (waiting
    /// if the queue is full); use [`flush`](Self::flush) to wait for durability.
    pub async fn write(&self, key: Option<&[u8]>, payload: Bytes) -> Result<(), ClientError> {
        if payload.len() > MAX_EVENT_SIZE {
            return Err(ClientError::new(
                ErrorKind::Invalid,
                format!("event of {} bytes exceeds the maximum event size of {MAX_EVENT_SIZE} bytes", payload.len()),
            ));
        }
        let route = match key {
            Some(k) => {
                let p = key_point(k);
                self.routes.iter().find(|r| in_range(p, r.low, r.high)).unwrap_or(&self.routes[self.routes.len() - 1])
            }
            None => &self.routes[self.next_unkeyed.fetch_add(1, Ordering::Relaxed) % self.routes.len()],
        };
        route.tx.send(Cmd::Event(payload, Instant::now())).await.map_err(|_| self.failed())
    }

    /// Waits until every event written before this call is durable.
    pub async fn flush(&self) -> Result<(), ClientError> {
        let mut waits = Vec::with_capacity(self.routes.len());
        for r in &self.routes {
            let (tx, rx) = oneshot::channel();
            r.tx.send(Cmd::Flush(tx)).await.map_err(|_| self.failed())?;
            waits.push(rx);
        }
        for w in waits {
            w.await.map_err(|_| self.failed())??;
        }
        Ok(())
    }

    /// Flushes and stops the writer.
    pub async fn close(mut self) -> Result<(), ClientError> {
        let res = self.flush().await;
        self.routes.clear();
        for t in self.tasks.drain(..) {
            let _ = t.await;
        }
        res
    }
}

struct Batch {
    last: i64,
    count: u32,
    data: Bytes,
    /// When each event was written (kept only when an observer wants it).
    written_at: Vec<Instant>,
}

struct SegmentTask {
    client: NadiClient,
    endpoint: String,
    segment: String,
    writer_id: String,
    config: WriterConfig,
    failure: Arc<Mutex<Option<ClientError>>>,
    /// Number of the next new event; known after the first handshake.
    next_number: Option<i64>,
    in_flight: VecDeque<Batch>,
    /// flush() callers waiting for an event number to be acknowledged.
    waiters: Vec<(i64, oneshot::Sender<Result<(), ClientError>>)>,
    acked: i64,
}

/// How one connection ended.
enum End {
    /// The queue closed and everything was acknowledged.
    Done,
    /// The connection failed with this error.
    Failed(ClientError),
}

impl SegmentTask {
    async fn run(mut self, mut rx: mpsc::Receiver<Cmd>) {
        let mut attempts = 0u32;
        loop {
            match self.connection(&mut rx, &mut attempts).await {
                End::Done => return,
                End::Failed(e) if e.is_retryable() && attempts < self.config.max_reconnects => {
                    attempts += 1;
                    let backoff = Duration::from_millis(50 * (1 << attempts.min(6)));
                    tracing::warn!(segment = %self.segment, error = %e, attempt = attempts, "append stream lost; reconnecting");
                    tokio::time::sleep(backoff).await;
                }
                End::Failed(e) => {
                    let e = ClientError { message: format!("writing to segment {}: {}", self.segment, e.message), ..e };
                    self.failure.lock().get_or_insert(e.clone());
                    for (_, w) in self.waiters.drain(..) {
                        let _ = w.send(Err(e.clone()));
                    }
                    rx.close();
                    while let Some(cmd) = rx.recv().await {
                        if let Cmd::Flush(w) = cmd {
                            let _ = w.send(Err(e.clone()));
                        }
                    }
                    return;
                }
            }
        }
    }

    fn on_ack(&mut self, last: i64) {
        self.acked = self.acked.max(last);
        let now = Instant::now();
        while self.in_flight.front().is_some_and(|b| b.last <= self.acked) {
            let done = self.in_flight.pop_front().expect("front exists");
            if let Some(o) = &self.config.observer {
                o.acked(&done.written_at, now);
            }
        }
        let acked = self.acked;
        let mut i = 0;
        while i < self.waiters.len() {
            if self.waiters[i].0 <= acked {
                let (_, w) = self.waiters.swap_remove(i);
                let _ = w.send(Ok(()));
            } else {
                i += 1;
            }
        }
    }

    fn add_waiter(&mut self, w: oneshot::Sender<Result<(), ClientError>>) {
        let target = self.next_number.unwrap_or(0) - 1;
        if target <= self.acked {
            let _ = w.send(Ok(()));
        } else {
            self.waiters.push((target, w));
        }
    }

    async fn connection(&mut self, rx: &mut mpsc::Receiver<Cmd>, attempts: &mut u32) -> End {
        let mut store = match self.client.segment_store(&self.endpoint) {
            Ok(s) => s,
            Err(e) => return End::Failed(e),
        };
        let (req_tx, req_rx) = mpsc::channel(self.config.max_in_flight + 2);
        let setup = pb::AppendSetup { segment: self.segment.clone(), writer_id: self.writer_id.clone() };
        let _ = req_tx.send(pb::AppendRequest { kind: Some(pb::append_request::Kind::Setup(setup)) }).await;
        let mut responses = match store.append(ReceiverStream::new(req_rx)).await {
            Ok(r) => r.into_inner(),
            Err(s) => return End::Failed(s.into()),
        };
        let last = match responses.next().await {
            Some(Ok(pb::AppendResponse { kind: Some(pb::append_response::Kind::SetupAck(a)) })) => a.last_event_number,
            Some(Err(s)) => return End::Failed(s.into()),
            _ => return End::Failed(ClientError::new(ErrorKind::Unavailable, "append stream closed during setup")),
        };
        // Continue numbering after what the store has; drop what it already stored.
        if self.next_number.is_none_or(|n| n <= last) {
            self.next_number = Some(last + 1);
        }
        self.on_ack(last);
        for b in &self.in_flight {
            let msg = batch_msg(b);
            if req_tx.send(msg).await.is_err() {
                return End::Failed(ClientError::new(ErrorKind::Unavailable, "append stream closed"));
            }
        }
        let mut queue_open = true;
        loop {
            if !queue_open && self.in_flight.is_empty() {
                return End::Done;
            }
            tokio::select! {
                cmd = rx.recv(), if queue_open && self.in_flight.len() < self.config.max_in_flight => {
                    let Some(cmd) = cmd else { queue_open = false; continue };
                    let first = match cmd {
                        Cmd::Flush(w) => { self.add_waiter(w); continue; }
                        Cmd::Event(p, t) => (p, t),
                    };
                    let batch = self.gather(first, rx);
                    let msg = batch_msg(&batch);
                    self.in_flight.push_back(batch);
                    if req_tx.send(msg).await.is_err() {
                        return End::Failed(ClientError::new(ErrorKind::Unavailable, "append stream closed"));
                    }
                }
                resp = responses.next() => match resp {
                    Some(Ok(pb::AppendResponse { kind: Some(pb::append_response::Kind::Ack(a)) })) => {
                        *attempts = 0;
                        self.on_ack(a.last_event_number);
                    }
                    Some(Ok(_)) => return End::Failed(ClientError::new(ErrorKind::Internal, "unexpected append response")),
                    Some(Err(s)) => return End::Failed(s.into()),
                    None => return End::Failed(ClientError::new(ErrorKind::Unavailable, "append stream ended")),
                }
            }
        }
    }

    /// Builds one batch from `first` and whatever else is queued, up to the batch size. Flush
    /// requests met on the way wait for this batch.
    fn gather(&mut self, first: (Bytes, Instant), rx: &mut mpsc::Receiver<Cmd>) -> Batch {
        let mut data = BytesMut::with_capacity(self.config.max_batch_bytes.min(first.0.len() * 64) + 64);
        let mut count = 0u32;
        let mut flushes = Vec::new();
        let mut written_at = Vec::new();
        let observe = self.config.observer.is_some();
        let mut next = Some(first);
        while let Some((p, t)) = next.take() {
            framing::put_event(&mut data, &p).expect("size checked in write()");
            count += 1;
            if observe {
                written_at.push(t);
            }
            if data.len() >= self.config.max_batch_bytes {
                break;
            }
            // Below `max_batch_bytes` (at most 8 MiB - 8) plus one framed event of at most
            // 8 MiB + 4, a batch always fits the store's 16 MiB batch limit.
            match rx.try_recv() {
                Ok(Cmd::Event(p, t)) => next = Some((p, t)),
                Ok(Cmd::Flush(w)) => flushes.push(w),
                Err(_) => break,
            }
        }
        let start = self.next_number.unwrap_or(0);
        let last = start + count as i64 - 1;
        self.next_number = Some(last + 1);
        for w in flushes {
            self.add_waiter(w);
        }
        Batch { last, count, data: data.freeze(), written_at }
    }
}

fn batch_msg(b: &Batch) -> pb::AppendRequest {
    pb::AppendRequest {
        kind: Some(pb::append_request::Kind::Batch(pb::AppendBatch {
            last_event_number: b.last,
            event_count: b.count,
            data: b.data.clone(),
        })),
    }
}
