//! A simple stream reader: reads every segment of a stream and follows the stream's scaling.
//!
//! It starts from the head of the stream (`from_start`), from the tail of the active segments,
//! or from a stream cut ([`StreamReader::from_cut`], e.g. the cut at a time), with one
//! tail-following read per segment, merged into one sequence. When a
//! segment is sealed and read to its end, the reader asks for its successors and starts each
//! one only once all of that successor's predecessors were read to their end. Events of one
//! segment arrive in segment order, a key maps to one segment per epoch, and a successor's
//! events come after all of its predecessors' events, so per-key order holds across any number
//! of splits and merges. The reader ends when every segment it reached is sealed, read to its
//! end, and has no successors (the stream was sealed).
//!
//! Reader groups (several readers sharing the segments, with checkpoints) are built on the
//! controller; see the reader-group docs.
//!
//! Owns the coordination of segment reads (which segment starts when); each segment is read by
//! a [`SegmentReader`] (`segment_reader.rs`: fetch, decode, retry). Called by applications and
//! by the `nadi read` command, through [`StreamReader::next`] or the shared read loop
//! (`read_loop.rs`: `StreamReader::read_until`).

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use bytes::Bytes;
use nadi_proto::SegmentId;
use nadi_proto::controller::v1 as pb_ctl;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::client::NadiClient;
use crate::error::{ClientError, ErrorKind};
use crate::reader_group::StreamCut;
use crate::segment_reader::SegmentReader;
use crate::watermark::{Held, Tracker};

/// One event as read by a [`StreamReader`].
///
/// # Example
///
/// ```no_run
/// use nadi_client::{ClientError, EventRead, NadiClient, StreamReader};
///
/// async fn example() -> Result<(), ClientError> {
///     let client = NadiClient::new(&["http://127.0.0.1:9090".to_owned()])?;
///     let mut reader = StreamReader::new(&client, "demo", "orders", true).await?;
///     if let Some(event) = reader.next().await {
///         let EventRead { segment, offset, payload } = event?;
///         println!("{segment}@{offset}: {} bytes", payload.len());
///     }
///     Ok(())
/// }
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventRead {
    /// Qualified name of the segment it came from (`scope/stream/number.#epoch.epoch`).
    pub segment: String,
    /// Offset of the event in its segment (its position: where its frame starts).
    pub offset: u64,
    /// The event as written.
    pub payload: Bytes,
}

/// Reads all segments of a stream, following splits and merges. See the module docs.
///
/// One reader sees every event (it does not share the work; use a
/// [`ReaderGroup`](crate::ReaderGroup) for that) and keeps no position anywhere. Events of
/// different segments interleave in no particular order; events of one key come in the
/// order they were stored. Reads follow the tail: at the end of an open segment
/// [`next`](Self::next) waits for new events, so stop with a timeout unless the stream is
/// sealed. Dropping the reader stops it; each segment's read ends the next time it has an
/// event to hand over.
///
/// # Example
///
/// ```no_run
/// use std::time::Duration;
///
/// use nadi_client::{ClientError, NadiClient, StreamReader};
///
/// async fn example() -> Result<(), ClientError> {
///     let client = NadiClient::new(&["http://127.0.0.1:9090".to_owned()])?;
///     let mut reader = StreamReader::new(&client, "demo", "orders", true).await?;
///     // Ends by itself only on a sealed stream: give up after five idle seconds.
///     while let Ok(next) = tokio::time::timeout(Duration::from_secs(5), reader.next()).await {
///         let Some(event) = next else { break }; // sealed and read to the end
///         let event = event?;
///         println!("{}@{}: {}", event.segment, event.offset, String::from_utf8_lossy(&event.payload));
///     }
///     Ok(())
/// }
/// ```
#[derive(Debug)]
pub struct StreamReader {
    rx: mpsc::Receiver<Item>,
    coordinator: JoinHandle<()>,
    client: NadiClient,
    /// The segments being read (and those read to their end until a successor takes their
    /// range), by qualified name, with the position after the last event handed out.
    frontier: HashMap<String, Held>,
    watermarks: Tracker,
}

/// What the coordinator and the segment reads send to the reader, in order.
#[derive(Debug)]
enum Item {
    /// A segment's read starts, before any of its events.
    Started {
        name: String,
        held: Held,
    },
    Read(Result<EventRead, ClientError>),
}

impl Drop for StreamReader {
    fn drop(&mut self) {
        self.coordinator.abort();
    }
}

impl StreamReader {
    /// Opens a reader over `scope/stream`. With `from_start`, it starts at the head of the
    /// stream (the head segments, from their start offsets, then their successors); otherwise
    /// at the current end of the active segments, so it sees only events written from now on.
    ///
    /// # Errors
    ///
    /// `NotFound` if the scope or stream does not exist, `Unavailable` if no controller
    /// answered or a segment store could not be reached (the store is asked once for each
    /// starting segment's offsets, without retry).
    pub async fn new(
        client: &NadiClient,
        scope: &str,
        stream: &str,
        from_start: bool,
    ) -> Result<StreamReader, ClientError> {
        let first = if from_start {
            client.head_segments(scope, stream).await?
        } else {
            client.active_segments(scope, stream).await?.segments
        };
        let mut start = Vec::new();
        for loc in first {
            let seg = segment_of(&loc)?;
            let info = client.segment_info_following(&loc.endpoint, &seg.qualified_name).await?;
            let offset = if from_start { info.start_offset } else { info.length };
            start.push((loc, offset));
        }
        Ok(StreamReader::start(client, scope, stream, start))
    }

    /// Opens a reader over `scope/stream` that starts at `cut` (its positions for `stream`;
    /// those of other streams are ignored): each segment of the cut from its offset, then
    /// their successors, as [`new`](Self::new) goes on from the head. With the cut at a time
    /// ([`StreamManager::cut_at`](crate::StreamManager::cut_at)) it reads the events appended
    /// from that time on.
    ///
    /// # Errors
    ///
    /// `Invalid` if the cut holds no segment of `stream`, `NotFound` if the scope or stream
    /// does not exist, `Unavailable` if no controller answered. A position before a segment's
    /// start (truncated since) is reported by [`next`](Self::next) (`Conflict`, code
    /// `Truncated`).
    pub async fn from_cut(
        client: &NadiClient,
        scope: &str,
        stream: &str,
        cut: &StreamCut,
    ) -> Result<StreamReader, ClientError> {
        let positions: Vec<(SegmentId, u64)> =
            cut.positions.iter().filter(|((s, _), _)| s == stream).map(|((_, id), off)| (*id, *off)).collect();
        if positions.is_empty() {
            return Err(ClientError::new(
                ErrorKind::Invalid,
                format!("the stream cut holds no segment of {scope}/{stream}"),
            ));
        }
        let start = locate(client, scope, stream, positions).await?;
        Ok(StreamReader::start(client, scope, stream, start))
    }

    fn start(
        client: &NadiClient,
        scope: &str,
        stream: &str,
        start: Vec<(pb_ctl::SegmentLocation, u64)>,
    ) -> StreamReader {
        let (tx, rx) = mpsc::channel(1024);
        let coordinator = tokio::spawn(coordinate(client.clone(), scope.to_owned(), stream.to_owned(), start, tx));
        StreamReader {
            rx,
            coordinator,
            client: client.clone(),
            frontier: HashMap::new(),
            watermarks: Tracker::new(scope, stream, true),
        }
    }

    /// The next event, `None` once every segment is sealed and read to its end and the stream
    /// has no successors left. Waits while there is nothing new to read. Cancel-safe: an event
    /// not returned stays for the next call.
    ///
    /// # Errors
    ///
    /// `Some(Err(_))` when reading a segment failed for good (a store unreachable for 20
    /// attempts in a row, about 9 s; damaged data: `Internal`) or the controller refused to name a
    /// finished segment's successors. The failed segment is not read any further, but
    /// other segments go on: later calls may still return their events, and the reader then
    /// never returns `None`, so stop at the first error.
    pub async fn next(&mut self) -> Option<Result<EventRead, ClientError>> {
        loop {
            match self.rx.recv().await? {
                Item::Started { name, held } => {
                    // Its predecessors were read to their end: it takes over their range.
                    self.frontier
                        .retain(|_, h| !(h.low < held.high && held.low < h.high && h.id >> 32 < held.id >> 32));
                    self.frontier.insert(name, held);
                }
                Item::Read(Ok(ev)) => {
                    if let Some(h) = self.frontier.get_mut(&ev.segment) {
                        h.position = ev.offset + nadi_proto::framing::framed_len(ev.payload.len()) as u64;
                    }
                    return Some(Ok(ev));
                }
                Item::Read(Err(e)) => return Some(Err(e)),
            }
        }
    }

    /// The reader's watermark (docs/protocol.md, "Watermarks"): every event that writers
    /// noting their time ([`EventWriter::note_time`](crate::EventWriter::note_time)) wrote
    /// with an event time below it was already returned by [`next`](Self::next). `None`
    /// until the stream has a watermark whose cut this reader has passed. Never goes down.
    /// Asks the controller for new watermarks at most every 200 ms; otherwise local.
    ///
    /// # Errors
    ///
    /// `NotFound` if the stream was deleted, `Unavailable` if no controller answered.
    pub async fn watermark(&mut self) -> Result<Option<u64>, ClientError> {
        self.watermarks.refresh(&self.client, &[]).await?;
        let held: Vec<Held> = self.frontier.values().copied().collect();
        Ok(self.watermarks.current(&held))
    }
}

/// Where each segment of a cut is served: its record from the stream's history (a segment
/// promoted from a transaction keeps its own name) and the store of its container now.
async fn locate(
    client: &NadiClient,
    scope: &str,
    stream: &str,
    positions: Vec<(SegmentId, u64)>,
) -> Result<Vec<(pb_ctl::SegmentLocation, u64)>, ClientError> {
    let history = client.stream_history(scope, stream).await?;
    let known: HashMap<u64, pb_ctl::Segment> =
        history.epochs.into_iter().flat_map(|e| e.segments).map(|s| (s.id, s)).collect();
    let cluster = client.cluster_info().await?;
    let containers = cluster.containers.len() as u32;
    let mut out = Vec::with_capacity(positions.len());
    for (id, offset) in positions {
        // Not in any epoch yet: a successor of a scale still completing, named by its id.
        let segment = known.get(&id.packed()).cloned().unwrap_or_else(|| pb_ctl::Segment {
            id: id.packed(),
            qualified_name: nadi_proto::names::segment_name(scope, stream, id),
            ..Default::default()
        });
        let container = nadi_proto::names::container_of(&segment.qualified_name, containers);
        let endpoint = cluster
            .containers
            .iter()
            .find(|a| a.container == container && !a.endpoint.is_empty())
            .map(|a| a.endpoint.clone())
            .ok_or_else(|| {
                ClientError::new(
                    ErrorKind::Unavailable,
                    format!("no segment store hosts {} now", segment.qualified_name),
                )
            })?;
        out.push((pb_ctl::SegmentLocation { segment: Some(segment), endpoint }, offset));
    }
    Ok(out)
}

fn segment_of(loc: &pb_ctl::SegmentLocation) -> Result<&pb_ctl::Segment, ClientError> {
    loc.segment.as_ref().ok_or_else(|| ClientError::new(ErrorKind::Internal, "segment location without segment"))
}

/// Starts the segment reads and hands out successors once their predecessors are done.
async fn coordinate(
    client: NadiClient,
    scope: String,
    stream: String,
    start: Vec<(pb_ctl::SegmentLocation, u64)>,
    tx: mpsc::Sender<Item>,
) {
    let (done_tx, mut done_rx) = mpsc::unbounded_channel::<Option<u64>>();
    let mut tasks = Vec::new();
    let mut started = HashSet::new();
    let mut finished = HashSet::new();
    // Each read reports `Some(id)` when its segment is done, `None` when it failed (its error
    // went to the reader): the reader then ends instead of waiting for ever.
    let spawn = |loc: pb_ctl::SegmentLocation, offset: u64, tasks: &mut Vec<JoinHandle<()>>| {
        let id = loc.segment.as_ref().map_or(0, |s| s.id);
        let name = loc.segment.as_ref().map(|s| s.qualified_name.clone()).unwrap_or_default();
        let (low, high) = loc.segment.as_ref().map_or((0.0, 0.0), |s| (s.key_low, s.key_high));
        let held = Held { id, low, high, position: offset };
        let (client, tx, done) = (client.clone(), tx.clone(), done_tx.clone());
        tasks.push(tokio::spawn(async move {
            let finished = tx.send(Item::Started { name: name.clone(), held }).await.is_ok()
                && read_segment(client, loc.endpoint, name, offset, tx).await;
            let _ = done.send(finished.then_some(id));
        }));
    };
    for (loc, offset) in start {
        started.insert(loc.segment.as_ref().map_or(0, |s| s.id));
        spawn(loc, offset, &mut tasks);
    }
    while finished.len() < started.len() {
        let Some(done) = done_rx.recv().await else { break };
        let Some(id) = done else {
            // A segment read failed (or the reader was dropped): stop every read.
            for t in &tasks {
                t.abort();
            }
            return;
        };
        finished.insert(id);
        let successors = loop {
            match client.successors(&scope, &stream, id).await {
                Ok(s) => break s,
                Err(e) if e.is_retryable() => tokio::time::sleep(Duration::from_millis(200)).await,
                Err(e) => {
                    let _ = tx.send(Item::Read(Err(e))).await;
                    return;
                }
            }
        };
        for succ in successors {
            let Some(loc) = succ.segment else { continue };
            let Some(sid) = loc.segment.as_ref().map(|s| s.id) else { continue };
            if started.contains(&sid) || !succ.predecessor_ids.iter().all(|p| finished.contains(p)) {
                continue;
            }
            started.insert(sid);
            spawn(loc, 0, &mut tasks);
        }
    }
    for t in tasks {
        let _ = t.await;
    }
}

/// Reads one segment from `offset` to its end (following its tail until it is sealed), through
/// a [`SegmentReader`]. Returns true once the segment's end was read and every event handed
/// over.
async fn read_segment(
    client: NadiClient,
    endpoint: String,
    segment: String,
    offset: u64,
    tx: mpsc::Sender<Item>,
) -> bool {
    let mut r = SegmentReader::new(&client, &endpoint, &segment, offset);
    loop {
        match r.next_chunk().await {
            Ok(Some(chunk)) => {
                for ev in chunk.events {
                    let ev = EventRead { segment: segment.clone(), offset: ev.offset, payload: ev.payload };
                    if tx.send(Item::Read(Ok(ev))).await.is_err() {
                        return false;
                    }
                }
            }
            Ok(None) => return true,
            Err(e) => {
                let _ = tx.send(Item::Read(Err(e))).await;
                return false;
            }
        }
    }
}
