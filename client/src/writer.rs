//! The key-routed, batching, pipelining event writer.
//!
//! Each active segment of the stream gets one task with one append stream:
//!
//! ```text
//! write(key, payload) ─► route by key_point(key) ─► segment task queue (bounded: backpressure)
//!   segment task: drain queue into the open batch (≤ max_batch_bytes)
//!                 ─► send it when nothing is in flight, or when it is full or flushed
//!                    (adaptive batching: it fills while the previous batch is acknowledged)
//!                 ─► number its events, keep it in `in_flight` until acknowledged
//!                    (≤ max_in_flight batches)
//!                 ◄─ cumulative acks: drop acknowledged batches, wake flush() callers
//!   on a dropped connection: reconnect, the setup handshake says what the store has, re-send
//!   only what it does not have (the store also drops duplicates by event number).
//! ```
//!
//! Events with the same key go to the same segment task, are numbered in order and stored in
//! order, so per-key order holds. `flush()` returns once every event written before it is
//! durable.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use nadi_proto::controller::v1 as pb_ctl;
use nadi_proto::framing::{EVENT_HEADER_LEN, MAX_EVENT_SIZE};
use nadi_proto::routing::{in_range, key_point};
use nadi_proto::segment::v1 as pb;
use parking_lot::Mutex;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio_stream::StreamExt;
use tokio_stream::wrappers::ReceiverStream;

use crate::append_codec::{AppendCodec, Outgoing};
use crate::client::{MAX_MESSAGE, NadiClient};
use crate::error::{ClientError, ErrorKind};
use crate::tasks::WriterTaskGuard;

/// Told when events become durable, with the time each was handed to `write` (for latency
/// measurement, e.g. by `nadi bench`). Called from the writer's tasks; keep it cheap.
///
/// Set it in [`WriterConfig::observer`].
///
/// # Example
///
/// ```no_run
/// use std::sync::Arc;
/// use std::sync::atomic::{AtomicU64, Ordering};
/// use std::time::Instant;
///
/// use nadi_client::{AckObserver, ClientError, EventWriter, NadiClient, WriterConfig};
///
/// /// Counts durable events and sums their latency.
/// #[derive(Default)]
/// struct Latency {
///     events: AtomicU64,
///     total_micros: AtomicU64,
/// }
///
/// impl AckObserver for Latency {
///     fn acked(&self, written_at: &[Instant], now: Instant) {
///         let micros: u128 = written_at.iter().map(|t| now.duration_since(*t).as_micros()).sum();
///         self.events.fetch_add(written_at.len() as u64, Ordering::Relaxed);
///         self.total_micros.fetch_add(micros as u64, Ordering::Relaxed);
///     }
/// }
///
/// async fn example() -> Result<(), ClientError> {
///     let client = NadiClient::new(&["http://127.0.0.1:9090".to_owned()])?;
///     let latency = Arc::new(Latency::default());
///     let config = WriterConfig { observer: Some(latency.clone()), ..WriterConfig::default() };
///     let writer = EventWriter::new(&client, "demo", "orders", config).await?;
///     for i in 0..1000 {
///         writer.write(None, format!("event {i}").into()).await?;
///     }
///     writer.close().await?;
///     let n = latency.events.load(Ordering::Relaxed).max(1);
///     println!("mean latency {} µs", latency.total_micros.load(Ordering::Relaxed) / n);
///     Ok(())
/// }
/// ```
pub trait AckObserver: Send + Sync + 'static {
    /// Events of one acknowledged batch became durable: `written_at` holds the time each was
    /// passed to [`EventWriter::write`], in write order; `now` is when the acknowledgement was
    /// handled. An event re-routed to a successor after a seal is reported once, when the
    /// successor acknowledges it.
    fn acked(&self, written_at: &[Instant], now: Instant);
}

/// Settings of an [`EventWriter`]. Start from [`WriterConfig::default`] and set what you need.
///
/// # Example
///
/// ```no_run
/// use nadi_client::{ClientError, EventWriter, NadiClient, WriterConfig};
///
/// async fn example() -> Result<(), ClientError> {
///     let client = NadiClient::new(&["http://127.0.0.1:9090".to_owned()])?;
///     // A stable id, so that a restarted process continues this writer's numbering, and
///     // smaller batches for lower latency.
///     let config = WriterConfig {
///         writer_id: Some("orders-producer-1".into()),
///         max_batch_bytes: 64 * 1024,
///         ..WriterConfig::default()
///     };
///     let writer = EventWriter::new(&client, "demo", "orders", config).await?;
///     writer.close().await
/// }
/// ```
#[derive(Clone)]
pub struct WriterConfig {
    /// Stable writer id (1..=256 bytes). Reusing it after a restart continues the writer's
    /// event numbering on each segment. A random id is used if `None`. Default `None`.
    ///
    /// Two writers that run at the same time must not share an id: the store drops events
    /// whose numbers it has already seen for that id.
    pub writer_id: Option<String>,
    /// A batch is sent once it holds this many bytes (or nothing more is queued). Clamped to
    /// 1 ..= 8 MiB − 8 so that a batch always fits the store's batch limit. Default 1 MiB.
    pub max_batch_bytes: usize,
    /// Batches per segment sent but not yet acknowledged (at least 1). Default 16. Only full
    /// batches (and batches a flush or close waits for) go out while another is in flight; a
    /// smaller one keeps filling until the previous batch is acknowledged, so batches grow
    /// with the write rate instead of being sent an event or two at a time.
    pub max_in_flight: usize,
    /// Events (and pending flushes) queued per segment before `write` waits. Default 8192.
    /// Must be at least 1: [`EventWriter::new`] panics on 0.
    pub queue_len: usize,
    /// Reconnect attempts after a connection is lost (or re-routing a sealed segment fails
    /// with a retryable error, or the store no longer leads the segment's container), with a
    /// backoff growing from 100 ms to at most 500 ms, before the segment's task fails for good
    /// (about 18 s with the default). The count restarts after each acknowledgement. Default 40.
    pub max_reconnects: u32,
    /// Optional observer of acknowledgement latency. Default `None`.
    pub observer: Option<std::sync::Arc<dyn AckObserver>>,
    /// Number each segment's events of this writer id from 0 instead of after what the store
    /// already holds. A writer that writes the same events in the same order again under the
    /// same `writer_id` (a rerun over the same input, or a restarted process that starts over
    /// or re-sends its last batch) then stores each event once: the store acknowledges the
    /// events it already has without storing them again. This holds while the stream's
    /// segments are the same in both runs (no scaling in between). Default `false`: new
    /// events continue after the store's last event number, so nothing is mistaken for a
    /// duplicate.
    pub replay: bool,
    /// After a [`note_time`](EventWriter::note_time), how long the controller waits for the
    /// next one before it treats this writer as idle and lets the stream's watermark pass
    /// it. Note more often than this. Default 10 s.
    pub idle_timeout: Duration,
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
            .field("replay", &self.replay)
            .field("idle_timeout", &self.idle_timeout)
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
            max_reconnects: 40,
            observer: None,
            replay: false,
            idle_timeout: Duration::from_secs(10),
        }
    }
}

/// One event on its way: where it routes (`None`: no key), its payload, and when it was written.
struct Ev {
    point: Option<f64>,
    payload: Bytes,
    at: Instant,
}

enum Cmd {
    Event(Ev),
    Flush(oneshot::Sender<Result<(), ClientError>>),
}

/// A slice `[low, high)` of the key space and the segment task that takes its events. After a
/// merge, two routes may lead to the same successor task (one per former predecessor range).
struct Route {
    low: f64,
    high: f64,
    segment_id: u64,
    tx: mpsc::Sender<Cmd>,
}

/// State shared by the writer and its segment tasks.
struct Shared {
    client: NadiClient,
    scope: String,
    stream: String,
    writer_id: String,
    config: WriterConfig,
    /// A fixed set of segments (a transaction's): a sealed segment is an error, not a scale.
    fixed: bool,
    /// The routing table. `write` and `flush` send while holding the read lock; a task whose
    /// segment was sealed takes the write lock to swap itself out for its successors, so no
    /// event can overtake the ones it is still forwarding (see [`SegmentTask::reroute`]).
    routes: tokio::sync::RwLock<Vec<Route>>,
    /// The task of each segment this writer has written to, so that two predecessors of a
    /// merge hand their events to the same successor task (one event numbering per segment).
    /// Sealed segments' tasks stay until `close()`: idle, one small task and queue each.
    tasks: Mutex<HashMap<u64, mpsc::Sender<Cmd>>>,
    handles: Mutex<Vec<JoinHandle<()>>>,
    failure: Mutex<Option<ClientError>>,
    /// Per segment written to: an event boundary at or past this writer's last acknowledged
    /// event (the segment's length in the latest acknowledgement). Sent with time notes.
    positions: Mutex<HashMap<u64, u64>>,
    /// The time of the last [`EventWriter::note_time`], if any.
    noted_ms: Mutex<Option<u64>>,
}

impl Shared {
    /// The task of `seg`, started if this writer has none yet.
    fn task_for(self: &Arc<Self>, seg: &pb_ctl::SegmentLocation) -> Result<mpsc::Sender<Cmd>, ClientError> {
        let s = seg
            .segment
            .as_ref()
            .ok_or_else(|| ClientError::new(ErrorKind::Internal, "segment location without segment"))?;
        let mut tasks = self.tasks.lock();
        if let Some(tx) = tasks.get(&s.id) {
            return Ok(tx.clone());
        }
        let tx = self.spawn_task(seg.endpoint.clone(), s.qualified_name.clone(), s.id, s.key_low, s.key_high);
        tasks.insert(s.id, tx.clone());
        Ok(tx)
    }

    /// Starts the task of one segment and returns its queue.
    fn spawn_task(
        self: &Arc<Self>,
        endpoint: String,
        segment: String,
        id: u64,
        low: f64,
        high: f64,
    ) -> mpsc::Sender<Cmd> {
        let (tx, rx) = mpsc::channel(self.config.queue_len);
        let rx = Queue { rx, taken: VecDeque::new(), group: Vec::new() };
        let task = SegmentTask {
            shared: self.clone(),
            endpoint,
            segment,
            segment_id: id,
            low,
            high,
            next_number: None,
            in_flight: VecDeque::new(),
            open: Open::default(),
            waiters: Vec::new(),
            acked: -1,
            last_batch_events: 0,
        };
        let guard = WriterTaskGuard::new();
        crate::tasks::task_started(&task.segment);
        self.handles.lock().push(tokio::spawn(async move {
            let _alive = guard;
            task.run(rx).await
        }));
        tx
    }

    fn fail(&self, e: ClientError) {
        self.failure.lock().get_or_insert(e);
    }
}

/// Writes events to a stream, routed by key, batched, pipelined and acknowledged only once
/// durable.
///
/// - **Routing.** A key maps to a point in [0, 1) by the hash in `nadi_proto::routing`; the
///   event goes to the active segment whose key range holds it. Events without a key are
///   spread round-robin over the segments.
/// - **Order.** Events with the same key are stored in the order they were written, also
///   across scaling: when a segment is sealed, the writer sends the events the store did not
///   take, and everything written after them, to the successor owning each key, so no key
///   is reordered. If the whole stream is sealed, the writer fails with `Sealed`.
/// - **Exactly once.** Each segment's events are numbered per writer id; the store drops
///   numbers it already holds, so re-sending after a lost connection stores nothing twice. See
///   [`WriterConfig::writer_id`] and [`WriterConfig::replay`] for restarts.
/// - **Durability.** [`write`](Self::write) only queues; [`flush`](Self::flush) waits until
///   every event written before it is durable (fsync'd by the store).
/// - **Failure.** A segment task that cannot reconnect fails for good: its queue closes, the
///   error is kept, and every later `flush` (and `write` to that segment) returns it.
///
/// If the writer is dropped without [`close`](Self::close), its tasks still try to send what
/// they hold, but nobody learns whether it became durable.
///
/// # Example
///
/// ```no_run
/// use bytes::Bytes;
/// use nadi_client::{ClientError, EventWriter, NadiClient, WriterConfig};
///
/// async fn example() -> Result<(), ClientError> {
///     let client = NadiClient::new(&["http://127.0.0.1:9090".to_owned()])?;
///     let config = WriterConfig { writer_id: Some("orders-producer-1".into()), ..WriterConfig::default() };
///     let writer = EventWriter::new(&client, "demo", "orders", config).await?;
///     for i in 0..10 {
///         // Same key: stored in this order.
///         writer.write(Some(b"customer-42"), Bytes::from(format!("order {i}"))).await?;
///     }
///     writer.write(None, Bytes::from_static(b"heartbeat")).await?;
///     writer.flush().await?; // all eleven events are durable
///     writer.close().await?;
///     Ok(())
/// }
/// ```
pub struct EventWriter {
    shared: Arc<Shared>,
    next_unkeyed: AtomicUsize,
}

impl std::fmt::Debug for EventWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventWriter").field("writer_id", &self.shared.writer_id).finish_non_exhaustive()
    }
}

impl Drop for EventWriter {
    /// Segment tasks hold the shared state, which holds their queues: clearing the routing
    /// table and the task map closes the queues, so the tasks finish what they hold and end.
    fn drop(&mut self) {
        self.shared.tasks.lock().clear();
        if let Ok(mut routes) = self.shared.routes.try_write() {
            routes.clear();
        } else if let Ok(handle) = tokio::runtime::Handle::try_current() {
            let shared = self.shared.clone();
            handle.spawn(async move { shared.routes.write().await.clear() });
        }
    }
}

fn random_id() -> String {
    format!("w-{:016x}{:016x}", rand::random::<u64>(), rand::random::<u64>())
}

/// The route for `point` in `routes` sorted by `low` (see [`sort_routes`]): the last one that
/// starts at or below it, found by bisection (a linear scan was 4 % of the client's
/// instructions per small event over 16 segments). The last route if rounding puts it past
/// every range.
fn pick(routes: &[Route], point: Option<f64>, unkeyed: &AtomicUsize) -> usize {
    match point {
        Some(p) => {
            let i = routes.partition_point(|r| r.low <= p).saturating_sub(1);
            if in_range(p, routes[i].low, routes[i].high) { i } else { routes.len() - 1 }
        }
        None => unkeyed.fetch_add(1, Ordering::Relaxed) % routes.len(),
    }
}

/// Orders a routing table by the start of each range, as [`pick`] needs. The ranges do not
/// overlap: they tile the key space.
fn sort_routes(routes: &mut [Route]) {
    routes.sort_by(|a, b| a.low.total_cmp(&b.low));
}

impl EventWriter {
    /// A writer for `scope/stream`: asks the controller for the active segments and starts one
    /// task per segment (connections are opened by the tasks, in the background).
    ///
    /// # Errors
    ///
    /// `NotFound` if the scope or stream does not exist, `Invalid` if `config.writer_id` is
    /// empty or longer than 256 bytes, `Unavailable` if no controller answered. A sealed
    /// stream is only noticed when writing (the first `flush` fails with `Sealed`).
    ///
    /// # Panics
    ///
    /// If `config.queue_len` is 0.
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
        config.queue_len = config.queue_len.max(1);
        let writer_id = config.writer_id.clone().unwrap_or_else(random_id);
        if writer_id.is_empty() || writer_id.len() > 256 {
            return Err(ClientError::new(ErrorKind::Invalid, "writer id must be 1..=256 bytes"));
        }
        let active = client.active_segments(scope, stream).await?;
        if active.segments.is_empty() {
            return Err(ClientError::new(
                ErrorKind::Internal,
                format!("stream {scope}/{stream} has no active segments"),
            ));
        }
        let shared = Arc::new(Shared {
            client: client.clone(),
            scope: scope.to_owned(),
            stream: stream.to_owned(),
            writer_id,
            config,
            fixed: false,
            routes: tokio::sync::RwLock::new(Vec::new()),
            tasks: Mutex::default(),
            handles: Mutex::default(),
            failure: Mutex::default(),
            positions: Mutex::default(),
            noted_ms: Mutex::default(),
        });
        let mut routes = Vec::new();
        for loc in &active.segments {
            let tx = shared.task_for(loc)?;
            let seg = loc.segment.as_ref().expect("checked by task_for");
            routes.push(Route { low: seg.key_low, high: seg.key_high, segment_id: seg.id, tx });
        }
        sort_routes(&mut routes);
        *shared.routes.write().await = routes;
        Ok(EventWriter { shared, next_unkeyed: AtomicUsize::new(0) })
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
        config.queue_len = config.queue_len.max(1);
        if segments.is_empty() {
            return Err(ClientError::new(ErrorKind::Internal, "a writer needs at least one segment"));
        }
        let shared = Arc::new(Shared {
            client: client.clone(),
            scope: String::new(),
            stream: String::new(),
            writer_id,
            config,
            fixed: true,
            routes: tokio::sync::RwLock::new(Vec::new()),
            tasks: Mutex::default(),
            handles: Mutex::default(),
            failure: Mutex::default(),
            positions: Mutex::default(),
            noted_ms: Mutex::default(),
        });
        let mut routes = Vec::new();
        for (i, (segment, endpoint, low, high)) in segments.into_iter().enumerate() {
            // Synthetic ids: these segments are only told apart within this writer.
            let tx = shared.spawn_task(endpoint, segment, i as u64, low, high);
            routes.push(Route { low, high, segment_id: i as u64, tx });
        }
        sort_routes(&mut routes);
        match shared.routes.try_write() {
            Ok(mut r) => *r = routes,
            Err(_) => unreachable!("nobody else holds a new writer's routing table"),
        }
        Ok(EventWriter { shared, next_unkeyed: AtomicUsize::new(0) })
    }

    /// This writer's id: [`WriterConfig::writer_id`], or the random one chosen if that was
    /// `None`.
    pub fn writer_id(&self) -> &str {
        &self.shared.writer_id
    }

    fn failed(&self) -> ClientError {
        self.shared
            .failure
            .lock()
            .clone()
            .unwrap_or_else(|| ClientError::new(ErrorKind::Internal, "the writer has stopped"))
    }

    /// Queues one event. Events with the same key are stored in the order written, also across
    /// scaling (when a segment is sealed, its events go to the successor that owns their key,
    /// after everything written before them); events without a key are spread over the
    /// segments. Returns once the event is queued (waiting if the queue is full); use
    /// [`flush`](Self::flush) to wait for durability.
    ///
    /// # Errors
    ///
    /// `Invalid` if `payload` is larger than the maximum event size (8 MiB); the error that
    /// stopped the writer if the event's segment task has failed. Errors of the append
    /// itself surface in [`flush`](Self::flush).
    pub async fn write(&self, key: Option<&[u8]>, payload: Bytes) -> Result<(), ClientError> {
        if payload.len() > MAX_EVENT_SIZE {
            return Err(ClientError::new(
                ErrorKind::Invalid,
                format!("event of {} bytes exceeds the maximum event size of {MAX_EVENT_SIZE} bytes", payload.len()),
            ));
        }
        let point = key.map(key_point);
        // The lock is only contended while a sealed segment hands its range to its successors,
        // and the queue is rarely full: the synchronous attempts spare most events the cost of
        // the futures below (measured: about 5 % of the client's CPU at 1.3 M events/s).
        let routes = match self.shared.routes.try_read() {
            Ok(r) => r,
            Err(_) => self.shared.routes.read().await,
        };
        if routes.is_empty() {
            return Err(self.failed());
        }
        let i = pick(&routes, point, &self.next_unkeyed);
        let cmd = Cmd::Event(Ev { point, payload, at: Instant::now() });
        match routes[i].tx.try_send(cmd) {
            Ok(()) => {
                // What `send` would have done: count against the task's budget, so a writer in a
                // tight loop still yields to the segment tasks sharing its thread.
                tokio::task::consume_budget().await;
                Ok(())
            }
            Err(mpsc::error::TrySendError::Full(cmd)) => routes[i].tx.send(cmd).await.map_err(|_| self.failed()),
            Err(mpsc::error::TrySendError::Closed(_)) => Err(self.failed()),
        }
    }

    /// Waits until every event written before this call is durable. Events written
    /// concurrently, after the call started, may or may not be included.
    ///
    /// # Errors
    ///
    /// The first error that stopped any of the writer's segment tasks (sticky: every later
    /// flush returns it too), e.g. `Sealed` if the stream was sealed, `Unavailable` if a store
    /// stayed unreachable for [`WriterConfig::max_reconnects`] attempts.
    pub async fn flush(&self) -> Result<(), ClientError> {
        let waits = {
            let routes = self.shared.routes.read().await;
            flush_all(&routes).await.map_err(|_| self.failed())?
        };
        for w in waits {
            w.await.map_err(|_| self.failed())??;
        }
        if let Some(e) = self.shared.failure.lock().clone() {
            return Err(e);
        }
        Ok(())
    }

    /// Notes this writer's time for the stream's watermark (docs/protocol.md, "Watermarks"):
    /// a promise that every event written after this call has an event time of at least
    /// `time_ms` (in the payload, where readers and the Flink source find it; any clock the
    /// stream's writers share, usually milliseconds since the Unix epoch). Flushes first, then
    /// tells the controller the time and how far this writer's events reached in each segment.
    /// Call it between writes (events written concurrently may fall on either side), and
    /// more often than [`WriterConfig::idle_timeout`] while the writer is active. Returns the
    /// stream's watermark after the note (0 while it has none).
    ///
    /// # Errors
    ///
    /// Those of [`flush`](Self::flush); `Invalid` if `time_ms` is below this writer's previous
    /// note; `Unavailable` if no controller answered.
    pub async fn note_time(&self, time_ms: u64) -> Result<u64, ClientError> {
        self.flush().await?;
        let watermark = self.send_note(time_ms, false).await?;
        *self.shared.noted_ms.lock() = Some(time_ms);
        Ok(watermark)
    }

    async fn send_note(&self, time_ms: u64, closed: bool) -> Result<u64, ClientError> {
        let position = self
            .shared
            .positions
            .lock()
            .iter()
            .map(|(&segment_id, &offset)| pb_ctl::SegmentOffset { segment_id, offset })
            .collect();
        let req = pb_ctl::NoteWriterTimeRequest {
            scope: self.shared.scope.clone(),
            stream: self.shared.stream.clone(),
            writer_id: self.shared.writer_id.clone(),
            time_ms,
            position,
            closed,
            idle_timeout_ms: self.shared.config.idle_timeout.as_millis().clamp(1, u64::MAX as u128) as u64,
        };
        self.shared.client.note_writer_time(req).await
    }

    /// Flushes, then stops the writer and waits for its tasks to end. A writer that noted its
    /// time ([`note_time`](Self::note_time)) tells the controller it is done, so it no longer
    /// holds the stream's watermark back (if that fails, it does so after its idle timeout).
    ///
    /// # Errors
    ///
    /// Those of [`flush`](Self::flush); the writer is stopped in any case.
    pub async fn close(self) -> Result<(), ClientError> {
        let res = self.flush().await;
        let noted = *self.shared.noted_ms.lock();
        if let (Ok(()), Some(time_ms)) = (&res, noted) {
            let _ = self.send_note(time_ms, true).await;
        }
        self.shared.tasks.lock().clear();
        self.shared.routes.write().await.clear();
        // A task re-routing a sealed segment may still start successor tasks while the ones
        // seen so far end: wait until no task is left, not only for those started before now.
        loop {
            let handles: Vec<_> = self.shared.handles.lock().drain(..).collect();
            if handles.is_empty() {
                break;
            }
            for t in handles {
                let _ = t.await;
            }
        }
        res
    }
}

/// Waits for all `waits`, then answers `reply` (the first error wins).
fn answer_after(
    waits: Vec<oneshot::Receiver<Result<(), ClientError>>>,
    reply: oneshot::Sender<Result<(), ClientError>>,
) {
    let guard = WriterTaskGuard::new();
    tokio::spawn(async move {
        let _alive = guard;
        let mut result = Ok(());
        for w in waits {
            let r = w.await.unwrap_or_else(|_| Err(ClientError::new(ErrorKind::Internal, "the writer has stopped")));
            if result.is_ok() {
                result = r;
            }
        }
        let _ = reply.send(result);
    });
}

struct Batch {
    last: i64,
    /// The events' payloads, framed only when the batch is encoded (`append_codec`); kept
    /// with the rest of the events until acknowledged: if the segment is sealed first, they
    /// are re-routed to its successors.
    payloads: Arc<Vec<Bytes>>,
    /// The rest of each event.
    meta: Vec<Meta>,
}

impl Batch {
    fn into_events(self) -> impl Iterator<Item = Ev> {
        events(Arc::unwrap_or_clone(self.payloads), self.meta)
    }
}

/// The events whose payloads and the rest are kept apart (in a batch, or the open one).
fn events(payloads: Vec<Bytes>, meta: Vec<Meta>) -> impl Iterator<Item = Ev> {
    payloads.into_iter().zip(meta).map(|(payload, m)| Ev { point: m.point, payload, at: m.at })
}

/// An event without its payload.
struct Meta {
    point: Option<f64>,
    at: Instant,
}

/// The batch being filled: events taken from a segment's queue, not numbered or sent yet.
#[derive(Default)]
struct Open {
    /// Bytes of the events framed.
    bytes: usize,
    payloads: Vec<Bytes>,
    meta: Vec<Meta>,
    /// flush() callers met while filling it: they wait for its last event.
    flushes: Vec<oneshot::Sender<Result<(), ClientError>>>,
}

struct SegmentTask {
    shared: Arc<Shared>,
    endpoint: String,
    segment: String,
    segment_id: u64,
    /// The segment's key range.
    low: f64,
    high: f64,
    /// Number of the next new event; known after the first handshake.
    next_number: Option<i64>,
    in_flight: VecDeque<Batch>,
    /// Events taken from the queue but not sent yet.
    open: Open,
    /// flush() callers waiting for an event number to be acknowledged.
    waiters: Vec<(i64, oneshot::Sender<Result<(), ClientError>>)>,
    acked: i64,
    /// Events of the last batch sent: the next one's lists are sized from it.
    last_batch_events: usize,
}

/// Commands received from the channel at once, at most (see [`Queue`]).
const RECV_GROUP: usize = 256;

/// A segment task's queue: the channel, received from in groups of up to [`RECV_GROUP`]. The
/// channel gives a group's room back to the writers in one step instead of one per command
/// (each step locks its semaphore: 7 % of the client's instructions per small event).
struct Queue {
    rx: mpsc::Receiver<Cmd>,
    /// Received and not taken yet, in order: taken before anything still in the channel.
    taken: VecDeque<Cmd>,
    group: Vec<Cmd>,
}

impl Queue {
    /// The next command, waiting for one; `None` once the channel is closed and empty.
    /// Cancel-safe: nothing is received unless it is kept.
    async fn recv(&mut self) -> Option<Cmd> {
        if self.taken.is_empty() {
            if self.rx.recv_many(&mut self.group, RECV_GROUP).await == 0 {
                return None;
            }
            self.taken.extend(self.group.drain(..));
        }
        self.taken.pop_front()
    }

    /// The next command if one is there now.
    fn try_recv(&mut self) -> Option<Cmd> {
        if self.taken.is_empty() {
            // One poll with a waker that does nothing: whatever is in the channel now (unless
            // the task's scheduling budget is spent, which only ends a batch early). The next
            // `recv` registers the task's own waker again before it waits.
            let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
            let _ = std::pin::pin!(self.rx.recv_many(&mut self.group, RECV_GROUP)).poll(&mut cx);
            self.taken.extend(self.group.drain(..));
        }
        self.taken.pop_front()
    }

    fn close(&mut self) {
        self.rx.close();
    }
}

/// How one connection ended.
enum End {
    /// The queue closed and everything was acknowledged.
    Done,
    /// The segment is sealed (the stream scaled): re-route to its successors.
    Sealed,
    /// The connection failed with this error.
    Failed(ClientError),
}

impl SegmentTask {
    async fn run(mut self, mut rx: Queue) {
        let mut attempts = 0u32;
        loop {
            match self.connection(&mut rx, &mut attempts).await {
                End::Done => return,
                End::Sealed if self.shared.fixed => {
                    let e = ClientError::new(ErrorKind::Sealed, format!("segment {} is sealed", self.segment));
                    return self.fail(e, rx).await;
                }
                End::Sealed => match self.reroute(&mut rx).await {
                    Ok(()) => return,
                    Err(e) if e.is_retryable() && attempts < self.shared.config.max_reconnects => {
                        attempts += 1;
                        tracing::warn!(segment = %self.segment, error = %e, "re-routing a sealed segment failed; retrying");
                        tokio::time::sleep(Duration::from_millis((50 * (1u64 << attempts.min(6))).min(1000))).await;
                    }
                    Err(e) => return self.fail(e, rx).await,
                },
                End::Failed(e) if e.is_retryable() && attempts < self.shared.config.max_reconnects => {
                    attempts += 1;
                    // Capped at 500 ms: a replicated container's new leader is known to the
                    // controller within a few seconds, and the writer should find it soon after.
                    let backoff = Duration::from_millis((50 * (1u64 << attempts.min(6))).min(500));
                    tracing::warn!(segment = %self.segment, error = %e, attempt = attempts, "append stream lost; reconnecting");
                    tokio::time::sleep(backoff).await;
                    self.relocate().await;
                }
                End::Failed(e) => return self.fail(e, rx).await,
            }
        }
    }

    /// After a lost connection: asks the controller where the segment is served now (its
    /// store may have restarted at another address). Keeps the old endpoint if the controller
    /// cannot say.
    async fn relocate(&mut self) {
        if let Ok(endpoint) = self.shared.client.segment_endpoint(&self.segment).await
            && endpoint != self.endpoint
        {
            tracing::info!(segment = %self.segment, from = %self.endpoint, to = %endpoint, "segment store moved");
            self.endpoint = endpoint;
        }
    }

    /// Fails this task for good: the error goes to every waiter and to later flushes.
    async fn fail(mut self, e: ClientError, mut rx: Queue) {
        let e = ClientError { message: format!("writing to segment {}: {}", self.segment, e.message), ..e };
        self.shared.fail(e.clone());
        for (_, w) in self.waiters.drain(..) {
            let _ = w.send(Err(e.clone()));
        }
        for w in std::mem::take(&mut self.open.flushes) {
            let _ = w.send(Err(e.clone()));
        }
        rx.close();
        while let Some(cmd) = rx.recv().await {
            if let Cmd::Flush(w) = cmd {
                let _ = w.send(Err(e.clone()));
            }
        }
    }

    /// The segment was sealed by a scale. What the store did not store goes to the successors
    /// in order, then this task hands its key range over to them:
    ///
    /// 1. The store's last event number of this writer on the sealed segment says which
    ///    in-flight events are durable (acknowledged now) and which are not.
    /// 2. The rest, in order, go to the successor owning each event's key (a successor shared
    ///    with another predecessor, after a merge, is the same task).
    /// 3. Events still arriving in this task's queue are forwarded the same way, until the
    ///    routing-table write lock is granted: from then on no `write` is sending, the queue
    ///    is drained for the last time, and the table gets the successors in this task's
    ///    place (clipped to its range). Later events go straight to the successors, after
    ///    every forwarded one, so no key is reordered.
    async fn reroute(&mut self, rx: &mut Queue) -> Result<(), ClientError> {
        let shared = self.shared.clone();
        let info = shared.client.segment_info(&self.endpoint, &self.segment).await?;
        let stored = info.writers.iter().find(|w| w.writer_id == shared.writer_id).map_or(-1, |w| w.last_event_number);
        self.on_ack_at(stored, info.length);
        let successors = shared.client.successors(&shared.scope, &shared.stream, self.segment_id).await?;
        if successors.is_empty() {
            return Err(ClientError::new(
                ErrorKind::Sealed,
                format!("stream {}/{} is sealed", shared.scope, shared.stream),
            ));
        }
        let mut next: Vec<Route> = Vec::new();
        for succ in &successors {
            let loc = succ
                .segment
                .as_ref()
                .ok_or_else(|| ClientError::new(ErrorKind::Internal, "successor without segment"))?;
            let seg = loc
                .segment
                .as_ref()
                .ok_or_else(|| ClientError::new(ErrorKind::Internal, "successor without segment"))?;
            let (low, high) = (seg.key_low.max(self.low), seg.key_high.min(self.high));
            if low < high {
                next.push(Route { low, high, segment_id: seg.id, tx: shared.task_for(loc)? });
            }
        }
        if next.is_empty() {
            return Err(ClientError::new(
                ErrorKind::Internal,
                format!("no successor of {} covers its key range", self.segment),
            ));
        }
        sort_routes(&mut next);
        tracing::debug!(segment = %self.segment, successors = next.len(), "segment sealed; re-routing to its successors");
        let unkeyed = AtomicUsize::new(0);
        let failed = || ClientError::new(ErrorKind::Internal, "a successor's writer task stopped");
        // 1–2: what the store does not have, in order.
        let open = std::mem::take(&mut self.open);
        let pending: Vec<Ev> =
            self.in_flight.drain(..).flat_map(Batch::into_events).chain(events(open.payloads, open.meta)).collect();
        for ev in pending {
            let i = pick(&next, ev.point, &unkeyed);
            next[i].tx.send(Cmd::Event(ev)).await.map_err(|_| failed())?;
        }
        // Flushes waiting on this segment now wait on the successors.
        for w in std::mem::take(&mut self.waiters).into_iter().map(|(_, w)| w).chain(open.flushes) {
            answer_after(flush_all(&next).await?, w);
        }
        // 3: forward until the table can be swapped. The write-lock request stays queued
        // (pinned) while this task drains, so no new reader slips in ahead of it.
        let write = shared.routes.write();
        tokio::pin!(write);
        let mut table = loop {
            tokio::select! {
                biased;
                t = &mut write => break t,
                cmd = rx.recv() => match cmd {
                    Some(cmd) => forward(cmd, &next, &unkeyed).await?,
                    None => return Ok(()), // the writer closed
                },
            }
        };
        while let Some(cmd) = rx.try_recv() {
            forward(cmd, &next, &unkeyed).await?;
        }
        // Every table entry of this segment (two after a merge made it) gives way to the
        // successors, clipped to that entry's range.
        let mut swapped = Vec::with_capacity(table.len() + next.len());
        for r in table.drain(..) {
            if r.segment_id != self.segment_id {
                swapped.push(r);
                continue;
            }
            for n in &next {
                let (low, high) = (n.low.max(r.low), n.high.min(r.high));
                if low < high {
                    swapped.push(Route { low, high, segment_id: n.segment_id, tx: n.tx.clone() });
                }
            }
        }
        sort_routes(&mut swapped);
        *table = swapped;
        drop(table);
        // This task stays in the task map: a predecessor of a merge still re-routing (it
        // swaps later, possibly after this segment was split again) finds it there and sends
        // here, and its swap may even point the table at this task. Forward, in order, until
        // every sender is gone (`close()` clears the map). Forgetting this task instead made
        // that predecessor start a second task for this segment (tests/writer_reroute_once.rs).
        while let Some(cmd) = rx.recv().await {
            forward(cmd, &next, &unkeyed).await?;
        }
        Ok(())
    }

    fn on_ack(&mut self, last: i64) {
        self.acked = self.acked.max(last);
        let now = Instant::now();
        while self.in_flight.front().is_some_and(|b| b.last <= self.acked) {
            let done = self.in_flight.pop_front().expect("front exists");
            if let Some(o) = &self.shared.config.observer {
                let at: Vec<Instant> = done.meta.iter().map(|m| m.at).collect();
                o.acked(&at, now);
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

    /// Every event numbered up to `last` is durable and ends at or before `len` (the segment's
    /// length when the store said so). The position is recorded before flushes are woken: a
    /// time note reads the positions right after its flush.
    fn on_ack_at(&mut self, last: i64, len: u64) {
        if last > self.acked && !self.shared.fixed {
            let mut positions = self.shared.positions.lock();
            let p = positions.entry(self.segment_id).or_insert(0);
            *p = (*p).max(len);
        }
        self.on_ack(last);
    }

    fn add_waiter(&mut self, w: oneshot::Sender<Result<(), ClientError>>) {
        let target = self.next_number.unwrap_or(0) - 1;
        if target <= self.acked {
            let _ = w.send(Ok(()));
        } else {
            self.waiters.push((target, w));
        }
    }

    async fn connection(&mut self, rx: &mut Queue, attempts: &mut u32) -> End {
        let config = self.shared.config.clone();
        let channel = match self.shared.client.store_channel(&self.endpoint) {
            Ok(c) => c,
            Err(e) => return End::Failed(e),
        };
        let (req_tx, req_rx) = mpsc::channel(config.max_in_flight + 2);
        let setup = pb::AppendSetup { segment: self.segment.clone(), writer_id: self.shared.writer_id.clone() };
        let _ = req_tx.send(Outgoing::Setup(setup)).await;
        let mut responses = match append_stream(channel, ReceiverStream::new(req_rx)).await {
            Ok(r) => r,
            Err(s) => return ended(s.into()),
        };
        let (last, length) = match responses.next().await {
            Some(Ok(pb::AppendResponse { kind: Some(pb::append_response::Kind::SetupAck(a)) })) => {
                (a.last_event_number, a.segment_length)
            }
            Some(Err(s)) => return ended(s.into()),
            _ => return End::Failed(ClientError::new(ErrorKind::Unavailable, "append stream closed during setup")),
        };
        // Continue numbering after what the store has (or, replaying, from 0: the store then
        // acknowledges what it already holds without storing it twice); drop what it stored.
        match self.next_number {
            None if config.replay => self.next_number = Some(0),
            Some(n) if n <= last && !config.replay => self.next_number = Some(last + 1),
            None => self.next_number = Some(last + 1),
            Some(_) => {}
        }
        // Events acknowledged by the handshake (their acks were lost with the connection) end
        // before the segment's length now.
        self.on_ack_at(last, length);
        for b in &self.in_flight {
            let msg = batch_msg(b);
            if req_tx.send(msg).await.is_err() {
                return End::Failed(ClientError::new(ErrorKind::Unavailable, "append stream closed"));
            }
        }
        let mut queue_open = true;
        let max_batch = config.max_batch_bytes;
        loop {
            // The open batch is sent when it is full, when a flush or the end of the queue
            // asks for it, or while fewer than `LINGER_IN_FLIGHT` batches are in flight.
            // Otherwise it keeps filling until an acknowledgement arrives, so a batch grows
            // with the rate times the round trip (adaptive batching, like Nagle's algorithm
            // and the store's own group commit) instead of a batch per event or two.
            if !self.open.meta.is_empty() && self.in_flight.len() < config.max_in_flight {
                let urgent = !queue_open || !self.open.flushes.is_empty() || self.open.bytes >= max_batch;
                if urgent || self.in_flight.len() < LINGER_IN_FLIGHT {
                    let batch = self.seal_open();
                    let msg = batch_msg(&batch);
                    self.in_flight.push_back(batch);
                    if req_tx.send(msg).await.is_err() {
                        return End::Failed(ClientError::new(ErrorKind::Unavailable, "append stream closed"));
                    }
                    continue;
                }
            }
            if !queue_open && self.open.meta.is_empty() && self.in_flight.is_empty() {
                return End::Done;
            }
            let room = queue_open && self.open.bytes < max_batch;
            tokio::select! {
                // Acknowledgements first: they free in-flight room and wake flushes.
                biased;
                resp = responses.next() => match resp {
                    Some(Ok(pb::AppendResponse { kind: Some(pb::append_response::Kind::Ack(a)) })) => {
                        *attempts = 0;
                        self.on_ack_at(a.last_event_number, a.segment_length);
                    }
                    Some(Ok(_)) => return End::Failed(ClientError::new(ErrorKind::Internal, "unexpected append response")),
                    Some(Err(s)) => return ended(s.into()),
                    None => return End::Failed(ClientError::new(ErrorKind::Unavailable, "append stream ended")),
                },
                cmd = rx.recv(), if room => match cmd {
                    Some(cmd) => self.fill(cmd, rx),
                    None => queue_open = false,
                },
            }
        }
    }

    /// Adds `cmd`, and whatever else is queued, to the open batch, up to the batch size. A
    /// flush met on the way waits for the open batch (and makes it go out at once); a flush
    /// while nothing is open waits for what was sent before it.
    fn fill(&mut self, cmd: Cmd, rx: &mut Queue) {
        let max = self.shared.config.max_batch_bytes;
        let mut next = Some(cmd);
        while let Some(cmd) = next.take() {
            match cmd {
                Cmd::Flush(w) if self.open.meta.is_empty() => self.add_waiter(w),
                Cmd::Flush(w) => self.open.flushes.push(w),
                Cmd::Event(ev) => {
                    if self.open.meta.is_empty() {
                        // Room for a batch like the last one (and a quarter more): growing the
                        // lists as they fill copied them about twice.
                        let guess = 64.max(self.last_batch_events + self.last_batch_events / 4);
                        self.open.payloads.reserve(guess);
                        self.open.meta.reserve(guess);
                    }
                    // Below `max_batch_bytes` (at most 8 MiB - 8) plus one framed event of at
                    // most 8 MiB + 8 (its size checked in `write`), a batch always fits the
                    // store's 16 MiB batch limit.
                    self.open.bytes += EVENT_HEADER_LEN + ev.payload.len();
                    self.open.payloads.push(ev.payload);
                    self.open.meta.push(Meta { point: ev.point, at: ev.at });
                }
            }
            if self.open.bytes >= max {
                break;
            }
            next = rx.try_recv();
        }
    }

    /// Numbers the open batch's events and turns it into a batch to send; its flushes now
    /// wait for its last event.
    fn seal_open(&mut self) -> Batch {
        let open = std::mem::take(&mut self.open);
        self.last_batch_events = open.meta.len();
        let count = open.meta.len() as u32;
        let start = self.next_number.unwrap_or(0);
        let last = start + count as i64 - 1;
        self.next_number = Some(last + 1);
        for w in open.flushes {
            self.add_waiter(w);
        }
        Batch { last, payloads: Arc::new(open.payloads), meta: open.meta }
    }
}

/// Batches in flight per segment below which the open batch goes out whatever its size; at or
/// above it, only a full (or flushed) batch goes out, up to `max_in_flight`. One means: a batch
/// that is not full waits for the acknowledgement of the previous one. Measured with `nadi
/// bench` at 375 k events/s over 16 segments: 7.5 events per batch sent at once, 28 with one,
/// 21 with two, and p99 latency fell from 22–67 ms to 6–8 ms (docs/performance.md).
const LINGER_IN_FLIGHT: usize = 1;

/// A failed append stream: sealed segments are re-routed, anything else is an error.
fn ended(e: ClientError) -> End {
    if e.kind == ErrorKind::Sealed { End::Sealed } else { End::Failed(e) }
}

/// Sends a flush to every (distinct) route and returns the receivers.
async fn flush_all(routes: &[Route]) -> Result<Vec<oneshot::Receiver<Result<(), ClientError>>>, ClientError> {
    let mut waits = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for r in routes.iter().filter(|r| seen.insert(r.segment_id)) {
        let (tx, rx) = oneshot::channel();
        r.tx.send(Cmd::Flush(tx))
            .await
            .map_err(|_| ClientError::new(ErrorKind::Internal, "a successor's writer task stopped"))?;
        waits.push(rx);
    }
    Ok(waits)
}

/// Forwards one command of a sealed segment's queue to its successors.
async fn forward(cmd: Cmd, next: &[Route], unkeyed: &AtomicUsize) -> Result<(), ClientError> {
    match cmd {
        Cmd::Event(ev) => {
            let i = pick(next, ev.point, unkeyed);
            next[i]
                .tx
                .send(Cmd::Event(ev))
                .await
                .map_err(|_| ClientError::new(ErrorKind::Internal, "a successor's writer task stopped"))
        }
        Cmd::Flush(w) => {
            answer_after(flush_all(next).await?, w);
            Ok(())
        }
    }
}

/// Opens an append stream to the store behind `channel`: `SegmentStore/Append`, with the
/// requests encoded by [`AppendCodec`] (the generated client would encode them with prost).
async fn append_stream(
    channel: nadi_security::channel::Channel,
    requests: ReceiverStream<Outgoing>,
) -> Result<tonic::Streaming<pb::AppendResponse>, tonic::Status> {
    let mut grpc =
        tonic::client::Grpc::new(channel).max_decoding_message_size(MAX_MESSAGE).max_encoding_message_size(MAX_MESSAGE);
    grpc.ready().await.map_err(|e| tonic::Status::unavailable(format!("the segment store is not ready: {e}")))?;
    let mut req = tonic::Request::new(requests);
    req.extensions_mut().insert(tonic::GrpcMethod::new("nadi.segment.v1.SegmentStore", "Append"));
    let path = http::uri::PathAndQuery::from_static("/nadi.segment.v1.SegmentStore/Append");
    Ok(grpc.streaming(req, path, AppendCodec).await?.into_inner())
}

fn batch_msg(b: &Batch) -> Outgoing {
    Outgoing::Batch { last: b.last, payloads: b.payloads.clone() }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn routes(bounds: &[(f64, f64)]) -> Vec<Route> {
        let (tx, _rx) = mpsc::channel(1);
        bounds
            .iter()
            .enumerate()
            .map(|(i, &(low, high))| Route { low, high, segment_id: i as u64, tx: tx.clone() })
            .collect()
    }

    /// Bisection finds the same route as a scan of every range, at and between boundaries,
    /// whatever order the table was built in.
    #[test]
    fn pick_matches_a_scan() {
        let parts = nadi_proto::routing::split_range(0.0, 1.0, 7);
        let mut table = routes(&parts.iter().rev().copied().collect::<Vec<_>>());
        sort_routes(&mut table);
        let unkeyed = AtomicUsize::new(0);
        let mut points: Vec<f64> = parts.iter().flat_map(|&(l, h)| [l, (l + h) / 2.0, h]).collect();
        points.extend([0.0, 0.999_999_999, 1.0, f64::MIN_POSITIVE]);
        for p in points {
            let scan = table.iter().position(|r| in_range(p, r.low, r.high)).unwrap_or(table.len() - 1);
            assert_eq!(pick(&table, Some(p), &unkeyed), scan, "point {p}");
        }
        // Unkeyed events go round the table.
        let picks: Vec<usize> = (0..14).map(|_| pick(&table, None, &unkeyed)).collect();
        assert_eq!(picks, (0..14).map(|i| i % 7).collect::<Vec<_>>());
    }

    fn payload(cmd: Option<Cmd>) -> Option<Bytes> {
        match cmd {
            Some(Cmd::Event(ev)) => Some(ev.payload),
            Some(Cmd::Flush(_)) => panic!("unexpected flush"),
            None => None,
        }
    }

    /// Commands come out of the queue in the order they went in, across groups, whether taken
    /// by `try_recv` or `recv`, and `recv` ends once the channel is closed and empty.
    #[tokio::test]
    async fn queue_keeps_order_across_groups() {
        let (tx, rx) = mpsc::channel(4 * RECV_GROUP);
        let mut q = Queue { rx, taken: VecDeque::new(), group: Vec::new() };
        assert!(q.try_recv().is_none());
        let n = 3 * RECV_GROUP + 5;
        for i in 0..n {
            let ev = Ev { point: None, payload: Bytes::from(i.to_string()), at: Instant::now() };
            tx.send(Cmd::Event(ev)).await.unwrap();
        }
        let mut got = Vec::new();
        for i in 0..n {
            let p = if i % 3 == 0 { payload(q.recv().await) } else { payload(q.try_recv()) };
            got.push(String::from_utf8(p.unwrap().to_vec()).unwrap());
        }
        assert_eq!(got, (0..n).map(|i| i.to_string()).collect::<Vec<_>>());
        drop(tx);
        assert!(q.recv().await.is_none());
    }
}
