//! Reader groups: several readers share the segments of one or more streams, follow splits and
//! merges in per-key order, and record positions and checkpoints in the controller.
//!
//! ```text
//!  Reader::read_next ──(every sync_interval, on a finished segment, on a checkpoint)──► ReaderSync
//!     │  positions = offset after the last event handed to the application, per owned segment
//!     │  ◄── the segments it owns now (start offsets, stores), a checkpoint to record
//!     ▼
//!  one read task per owned segment (segment store Read, follow) ──► one channel ──► read_next
//! ```
//!
//! The sync runs inside `read_next`, between two events, so the positions it reports are exactly
//! what the application has received. That is why the controller may take a segment away from
//! a reader in the reader's own sync: the next owner starts exactly after the last event this
//! reader handed out. Delivery guarantee (docs/reader-groups.md): within a group every event is
//! handed out once while readers join, leave (`close`), are rebalanced, take checkpoints or the
//! group is reset; a reader that dies (or is declared offline while still running) loses the
//! positions it had not synced yet, so the events it handed out after its last sync are handed
//! out again to the next owner (at least once).
//!
//! Owns group membership, assignment and positions; each owned segment is read by a
//! [`SegmentReader`] (`segment_reader.rs`: fetch, decode, retry). Called by applications and by
//! `nadi read --group`, through [`Reader::read_next`] or the shared read loop (`read_loop.rs`:
//! `Reader::read_until`).

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use bytes::Bytes;
use futures::Stream;
use nadi_proto::SegmentId;
use nadi_proto::controller::v1 as pb;
use nadi_proto::controller::v1::reader_group_service_client::ReaderGroupServiceClient;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::client::{ControllerChannel, MAX_MESSAGE, NadiClient};
use crate::error::{ClientError, ErrorKind};
use crate::segment_reader::SegmentReader;
use crate::watermark::{Held, Tracker};

fn svc(ch: ControllerChannel) -> ReaderGroupServiceClient<ControllerChannel> {
    ReaderGroupServiceClient::new(ch).max_decoding_message_size(MAX_MESSAGE).max_encoding_message_size(MAX_MESSAGE)
}

/// Where a new group starts reading (see [`ReaderGroup::create`]).
///
/// # Example
///
/// ```no_run
/// use nadi_client::{ClientError, NadiClient, ReaderGroup, StartFrom};
///
/// async fn example() -> Result<(), ClientError> {
///     let client = NadiClient::new(&["http://127.0.0.1:9090".to_owned()])?;
///     // Everything ever written to "orders":
///     ReaderGroup::create(&client, "demo", "billing", &["orders"], StartFrom::Head).await?;
///     // Only what is written from now on:
///     ReaderGroup::create(&client, "demo", "alerts", &["orders"], StartFrom::Tail).await?;
///     // Where another group's checkpoint left off:
///     let billing = ReaderGroup::open(&client, "demo", "billing").await?;
///     let cut = billing.wait_for_checkpoint("nightly", std::time::Duration::from_secs(30)).await?;
///     ReaderGroup::create(&client, "demo", "audit", &["orders"], StartFrom::Cut(cut)).await?;
///     Ok(())
/// }
/// ```
#[derive(Debug, Clone, PartialEq)]
pub enum StartFrom {
    /// The beginning of every stream.
    Head,
    /// Only events written after the group is created.
    Tail,
    /// Given positions (for example a completed checkpoint's).
    Cut(StreamCut),
}

/// A position for a set of segments of a group's streams: where to start or resume.
///
/// Returned by [`ReaderGroup::wait_for_checkpoint`] and [`Reader::positions`]; used by
/// [`StartFrom::Cut`] and [`ReaderGroup::reset_to_cut`]. The controller refuses a cut
/// (`Invalid`) that names a segment outside the group's streams, misses one of its streams,
/// or holds a segment together with one of its ancestors.
///
/// # Example
///
/// ```
/// use nadi_client::StreamCut;
/// use nadi_proto::SegmentId;
/// let mut cut = StreamCut::default();
/// cut.insert("orders", SegmentId::new(0, 0), 0);
/// cut.insert("orders", SegmentId::new(0, 1), 1024);
/// assert_eq!(cut.positions.len(), 2);
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StreamCut {
    /// (stream, segment) → offset of the next event to read.
    pub positions: BTreeMap<(String, SegmentId), u64>,
}

impl StreamCut {
    /// Adds (or replaces) one segment's position: `offset` is where the next event to read
    /// starts in `segment` of `stream`.
    pub fn insert(&mut self, stream: &str, segment: SegmentId, offset: u64) {
        self.positions.insert((stream.to_owned(), segment), offset);
    }

    /// The cut of one stream as the controller's `GetStreamCut` returns it (`stream cut`,
    /// [`NadiClient::stream_cut_at`](crate::NadiClient::stream_cut_at)).
    pub fn of_stream(stream: &str, cut: &[pb::SegmentOffset]) -> StreamCut {
        let mut c = StreamCut::default();
        for p in cut {
            c.insert(stream, SegmentId::from_packed(p.segment_id), p.offset);
        }
        c
    }

    fn to_pb(&self) -> Vec<pb::SegmentPosition> {
        self.positions
            .iter()
            .map(|((stream, id), off)| pb::SegmentPosition {
                stream: stream.clone(),
                segment_id: id.packed(),
                offset: *off,
            })
            .collect()
    }

    fn from_pb(list: &[pb::SegmentPosition]) -> StreamCut {
        StreamCut {
            positions: list
                .iter()
                .map(|p| ((p.stream.clone(), SegmentId::from_packed(p.segment_id)), p.offset))
                .collect(),
        }
    }
}

/// A handle on a reader group: create, inspect, checkpoint, reset, delete, and join as a reader.
///
/// The group's state (members, segment assignment, positions, checkpoints) lives in the
/// controller; the handle only names it, so it is cheap to clone and any process can hold one.
/// See `docs/reader-groups.md`.
///
/// # Example
///
/// ```no_run
/// # async fn example() -> Result<(), nadi_client::ClientError> {
/// use nadi_client::{NadiClient, ReaderConfig, ReaderGroup, StartFrom};
/// let client = NadiClient::new(&["http://127.0.0.1:9090".to_owned()])?;
/// let group = ReaderGroup::create(&client, "demo", "billing", &["orders"], StartFrom::Head).await?;
/// let mut reader = group.reader(ReaderConfig::default()).await?;
/// while let Some(ev) = reader.read_next().await? {
///     println!("{} at {:?}", String::from_utf8_lossy(&ev.payload), ev.position);
/// }
/// reader.close().await?;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct ReaderGroup {
    client: NadiClient,
    scope: String,
    name: String,
}

impl ReaderGroup {
    /// Creates group `name` over `streams` of `scope`, starting at `start`.
    ///
    /// # Errors
    ///
    /// `AlreadyExists` if the group exists, `NotFound` if the scope or a stream does not,
    /// `Invalid` for a bad name, no streams, a stream named twice or a bad stream cut,
    /// `Unavailable` if no controller answered.
    #[tracing::instrument(level = "debug", name = "client.reader_group.create", skip_all, fields(scope = %scope, group = %name))]
    pub async fn create(
        client: &NadiClient,
        scope: &str,
        name: &str,
        streams: &[&str],
        start: StartFrom,
    ) -> Result<ReaderGroup, ClientError> {
        Self::create_with(client, scope, name, streams, start, false).await
    }

    /// [`Self::create`], as a *subscriber* if `subscriber`: a stream with consumption-based
    /// retention (`consumption:MIN,MAX`) keeps its data until every subscriber group's last
    /// checkpoint has passed it (at most MAX).
    pub async fn create_with(
        client: &NadiClient,
        scope: &str,
        name: &str,
        streams: &[&str],
        start: StartFrom,
        subscriber: bool,
    ) -> Result<ReaderGroup, ClientError> {
        let (kind, cut) = match &start {
            StartFrom::Head => (pb::reader_group_start::Kind::HeadUnspecified, vec![]),
            StartFrom::Tail => (pb::reader_group_start::Kind::Tail, vec![]),
            StartFrom::Cut(c) => (pb::reader_group_start::Kind::StreamCut, c.to_pb()),
        };
        let req = pb::CreateReaderGroupRequest {
            scope: scope.to_owned(),
            group: name.to_owned(),
            streams: streams.iter().map(|s| (*s).to_owned()).collect(),
            start: Some(pb::ReaderGroupStart { kind: kind as i32, stream_cut: cut }),
            subscriber,
        };
        client
            .controller_channel(|ch| {
                let req = req.clone();
                async move { svc(ch).create_reader_group(req).await }
            })
            .await?;
        Ok(ReaderGroup::handle(client, scope, name))
    }

    /// Opens an existing group.
    ///
    /// # Errors
    ///
    /// `NotFound` if there is no such group, `Unavailable` if no controller answered.
    pub async fn open(client: &NadiClient, scope: &str, name: &str) -> Result<ReaderGroup, ClientError> {
        let g = ReaderGroup::handle(client, scope, name);
        g.info().await?;
        Ok(g)
    }

    /// Opens the group, creating it with `streams` and `start` if it does not exist. An
    /// existing group keeps its own streams and positions: `streams` and `start` are then
    /// ignored.
    ///
    /// # Errors
    ///
    /// As [`create`](Self::create), except `AlreadyExists`.
    pub async fn create_or_open(
        client: &NadiClient,
        scope: &str,
        name: &str,
        streams: &[&str],
        start: StartFrom,
    ) -> Result<ReaderGroup, ClientError> {
        match ReaderGroup::create(client, scope, name, streams, start).await {
            Err(e) if e.kind == ErrorKind::AlreadyExists => ReaderGroup::open(client, scope, name).await,
            other => other,
        }
    }

    /// A handle without checking that the group exists (calls on it fail with `NotFound` if
    /// it does not). Makes no call.
    pub fn handle(client: &NadiClient, scope: &str, name: &str) -> ReaderGroup {
        ReaderGroup { client: client.clone(), scope: scope.to_owned(), name: name.to_owned() }
    }

    /// The group's scope.
    pub fn scope(&self) -> &str {
        &self.scope
    }

    /// The group's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Readers, assignment, positions and segment lengths (lag = length − position).
    ///
    /// # Errors
    ///
    /// `NotFound` if the group does not exist, `Unavailable` if no controller answered.
    pub async fn info(&self) -> Result<pb::ReaderGroupInfo, ClientError> {
        let req = pb::GetReaderGroupRequest { scope: self.scope.clone(), group: self.name.clone() };
        let r = self
            .client
            .controller_channel(|ch| {
                let req = req.clone();
                async move { svc(ch).get_reader_group(req).await }
            })
            .await?;
        r.group.ok_or_else(|| ClientError::new(ErrorKind::Internal, "controller returned no group"))
    }

    /// Deletes the group, with its positions and checkpoints. Readers still in it fail at
    /// their next sync.
    ///
    /// # Errors
    ///
    /// `NotFound` if the group does not exist, `Unavailable` if no controller answered.
    #[tracing::instrument(level = "debug", name = "client.reader_group.delete", skip_all, fields(scope = %self.scope, group = %self.name))]
    pub async fn delete(self) -> Result<(), ClientError> {
        let req = pb::DeleteReaderGroupRequest { scope: self.scope.clone(), group: self.name.clone() };
        self.client
            .controller_channel(|ch| {
                let req = req.clone();
                async move { svc(ch).delete_reader_group(req).await }
            })
            .await
            .map(|_| ())
    }

    /// Starts checkpoint `name`: every current reader records its position at its next sync.
    /// Returns at once; see [`ReaderGroup::wait_for_checkpoint`]. Readers mark the first event
    /// after their part of the checkpoint with [`GroupEvent::checkpoint`].
    ///
    /// # Errors
    ///
    /// `Conflict` if another checkpoint is still pending, `AlreadyExists` if a checkpoint of
    /// this name exists, `NotFound` if the group does not exist, `Invalid` for a bad name,
    /// `Unavailable` if no controller answered.
    #[tracing::instrument(level = "debug", name = "client.reader_group.initiate_checkpoint", skip_all, fields(scope = %self.scope, group = %self.name, checkpoint = %name))]
    pub async fn initiate_checkpoint(&self, name: &str) -> Result<pb::CheckpointInfo, ClientError> {
        let req = pb::InitiateCheckpointRequest {
            scope: self.scope.clone(),
            group: self.name.clone(),
            checkpoint: name.to_owned(),
        };
        let r = self
            .client
            .controller_channel(|ch| {
                let req = req.clone();
                async move { svc(ch).initiate_checkpoint(req).await }
            })
            .await?;
        r.checkpoint.ok_or_else(|| ClientError::new(ErrorKind::Internal, "controller returned no checkpoint"))
    }

    /// Checkpoint `name`, complete or pending (with the readers it still waits for).
    ///
    /// # Errors
    ///
    /// `NotFound` if the group or checkpoint does not exist, `Unavailable` if no controller
    /// answered.
    pub async fn checkpoint(&self, name: &str) -> Result<pb::CheckpointInfo, ClientError> {
        let req = pb::GetCheckpointRequest {
            scope: self.scope.clone(),
            group: self.name.clone(),
            checkpoint: name.to_owned(),
        };
        let r = self
            .client
            .controller_channel(|ch| {
                let req = req.clone();
                async move { svc(ch).get_checkpoint(req).await }
            })
            .await?;
        r.checkpoint.ok_or_else(|| ClientError::new(ErrorKind::Internal, "controller returned no checkpoint"))
    }

    /// Polls checkpoint `name` until it is complete (every reader recorded its position) and
    /// returns its positions. Polls every 100 ms. Readers record their part only while they
    /// call [`Reader::read_next`], so something must be reading.
    ///
    /// # Errors
    ///
    /// `Unavailable` if it is still incomplete after `timeout` (the message names the readers
    /// it waits for); otherwise as [`checkpoint`](Self::checkpoint).
    pub async fn wait_for_checkpoint(&self, name: &str, timeout: Duration) -> Result<StreamCut, ClientError> {
        let deadline = Instant::now() + timeout;
        loop {
            let c = self.checkpoint(name).await?;
            if c.complete {
                return Ok(StreamCut::from_pb(&c.positions));
            }
            if Instant::now() >= deadline {
                return Err(ClientError::new(
                    ErrorKind::Unavailable,
                    format!("checkpoint {name} still waits for readers {:?}", c.waiting_for),
                ));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Moves the group to a completed checkpoint: every reader is removed (they must join
    /// again: their next sync fails with `NotFound`) and reading restarts exactly at the
    /// checkpoint's positions. Returns the group after the reset.
    ///
    /// # Errors
    ///
    /// `NotFound` if the group does not exist or has no completed checkpoint `name` (a
    /// pending one counts as missing), `Unavailable` if no controller answered.
    #[tracing::instrument(level = "debug", name = "client.reader_group.reset_to_checkpoint", skip_all, fields(scope = %self.scope, group = %self.name, checkpoint = %name))]
    pub async fn reset_to_checkpoint(&self, name: &str) -> Result<pb::ReaderGroupInfo, ClientError> {
        self.reset(name.to_owned(), vec![]).await
    }

    /// Moves the group to a stream cut (like [`ReaderGroup::reset_to_checkpoint`]).
    ///
    /// # Errors
    ///
    /// `Invalid` for a cut the group cannot start from (see [`StreamCut`]), `NotFound` if
    /// the group does not exist, `Unavailable` if no controller answered.
    #[tracing::instrument(level = "debug", name = "client.reader_group.reset_to_cut", skip_all, fields(scope = %self.scope, group = %self.name))]
    pub async fn reset_to_cut(&self, cut: &StreamCut) -> Result<pb::ReaderGroupInfo, ClientError> {
        self.reset(String::new(), cut.to_pb()).await
    }

    async fn reset(
        &self,
        checkpoint: String,
        stream_cut: Vec<pb::SegmentPosition>,
    ) -> Result<pb::ReaderGroupInfo, ClientError> {
        let req =
            pb::ResetReaderGroupRequest { scope: self.scope.clone(), group: self.name.clone(), checkpoint, stream_cut };
        let r = self
            .client
            .controller_channel(|ch| {
                let req = req.clone();
                async move { svc(ch).reset_reader_group(req).await }
            })
            .await?;
        r.group.ok_or_else(|| ClientError::new(ErrorKind::Internal, "controller returned no group"))
    }

    /// Declares a reader offline (it died): its segments go back at its last synced positions,
    /// so events it handed out after its last sync are handed out again. The controller also
    /// does this on its own when a reader stops syncing for too long.
    ///
    /// # Errors
    ///
    /// `NotFound` if the group or reader does not exist, `Unavailable` if no controller
    /// answered.
    #[tracing::instrument(level = "debug", name = "client.reader_group.reader_offline", skip_all, fields(scope = %self.scope, group = %self.name, reader = %reader_id))]
    pub async fn reader_offline(&self, reader_id: &str) -> Result<(), ClientError> {
        let req = pb::ReaderOfflineRequest {
            scope: self.scope.clone(),
            group: self.name.clone(),
            reader_id: reader_id.to_owned(),
        };
        self.client
            .controller_channel(|ch| {
                let req = req.clone();
                async move { svc(ch).reader_offline(req).await }
            })
            .await
            .map(|_| ())
    }

    /// Joins the group as a new reader (see [`Reader`]): syncs once with the controller,
    /// which assigns the reader its share of the segments.
    ///
    /// # Errors
    ///
    /// `NotFound` if the group does not exist, `Invalid` for a bad reader id, `Unavailable`
    /// if no controller answered.
    pub async fn reader(&self, config: ReaderConfig) -> Result<Reader, ClientError> {
        Reader::join(self, config).await
    }
}

/// Settings of a [`Reader`].
///
/// # Example
///
/// ```
/// use std::time::Duration;
/// let config = nadi_client::ReaderConfig { sync_interval: Duration::from_millis(200), ..Default::default() };
/// assert!(config.reader_id.is_none());
/// ```
#[derive(Debug, Clone)]
pub struct ReaderConfig {
    /// The reader's id, unique within the group (1..=128 of `[A-Za-z0-9._-]`); random if `None`.
    pub reader_id: Option<String>,
    /// How often the reader reports its positions (and heartbeats). Events handed out since the
    /// last sync are handed out again if the reader dies; keep it well below the controller's
    /// reader timeout.
    pub sync_interval: Duration,
}

impl Default for ReaderConfig {
    fn default() -> Self {
        ReaderConfig { reader_id: None, sync_interval: Duration::from_millis(500) }
    }
}

/// Where an event is: its segment, its offset, and the offset of the event after it.
///
/// # Example
///
/// ```no_run
/// use nadi_client::{ClientError, Reader};
///
/// async fn example(reader: &mut Reader) -> Result<(), ClientError> {
///     if let Some(ev) = reader.read_next().await? {
///         let p = &ev.position;
///         // The segment id prints as "number.#epoch.epoch".
///         println!("{}/{} [{}, {})", p.stream, p.segment, p.offset, p.next_offset);
///     }
///     Ok(())
/// }
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventPosition {
    /// The stream it belongs to.
    pub stream: String,
    /// Its segment.
    pub segment: SegmentId,
    /// Offset of the event in its segment.
    pub offset: u64,
    /// Offset right after it: the reader's position once the event is handed out.
    pub next_offset: u64,
}

/// One event read by a [`Reader`], with its position.
///
/// # Example
///
/// ```no_run
/// use nadi_client::{ClientError, Reader};
///
/// async fn example(reader: &mut Reader) -> Result<(), ClientError> {
///     while let Some(ev) = reader.read_next().await? {
///         if let Some(name) = &ev.checkpoint {
///             println!("-- checkpoint {name}: the events above are before it --");
///         }
///         println!("{}", String::from_utf8_lossy(&ev.payload));
///     }
///     Ok(())
/// }
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupEvent {
    /// The event.
    pub payload: Bytes,
    /// Where it is.
    pub position: EventPosition,
    /// Set on the first event handed out after this reader recorded checkpoint `name`: every
    /// event handed out before it is before the checkpoint, this one and all later ones after.
    pub checkpoint: Option<String>,
}

/// What a segment's read task delivers.
#[derive(Debug)]
enum Item {
    Event { offset: u64, next_offset: u64, payload: Bytes },
    End { at: u64 },
    Failed(ClientError),
}

#[derive(Debug)]
struct Owned {
    position: u64,
    token: u64,
    task: JoinHandle<()>,
}

type Key = (String, SegmentId);

/// A member of a reader group. Hands out the events of the segments it owns, in segment order,
/// and syncs its positions with the controller.
///
/// Made by [`ReaderGroup::reader`]. It syncs inside [`read_next`](Reader::read_next) (every
/// [`ReaderConfig::sync_interval`], when a segment is finished, and for checkpoints), so keep
/// calling it; end with [`close`](Reader::close) to hand the segments on exactly after the
/// last event returned. Dropping it without `close` stops its reads; the controller then
/// declares it offline after its timeout, and events after its last sync are read again.
///
/// # Example
///
/// ```no_run
/// # async fn example(group: nadi_client::ReaderGroup) -> Result<(), nadi_client::ClientError> {
/// use futures::StreamExt;
/// let mut reader = group.reader(nadi_client::ReaderConfig::default()).await?;
/// {
///     let mut events = std::pin::pin!(reader.events());
///     while let Some(ev) = events.next().await {
///         let ev = ev?;
///         println!("{:?}", ev.payload);
///     }
/// }
/// reader.close().await?;
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct Reader {
    group: ReaderGroup,
    id: String,
    config: ReaderConfig,
    owned: BTreeMap<Key, Owned>,
    /// Segments read to their end, not yet reported.
    finished: BTreeMap<Key, u64>,
    tx: mpsc::Sender<(u64, Item)>,
    rx: mpsc::Receiver<(u64, Item)>,
    next_token: u64,
    next_sync: Instant,
    /// A sync is needed before anything else is handed out (set before every sync, cleared
    /// after its answer is applied: a cancelled `read_next` leaves it set).
    must_sync: bool,
    joined: bool,
    /// The last checkpoint this reader recorded, to mark the next event with.
    checkpoint_mark: Option<String>,
    end_of_group: bool,
    /// Watermarks of each stream asked about.
    watermarks: HashMap<String, Tracker>,
}

impl Drop for Reader {
    fn drop(&mut self) {
        for o in self.owned.values() {
            o.task.abort();
        }
    }
}

impl Reader {
    async fn join(group: &ReaderGroup, config: ReaderConfig) -> Result<Reader, ClientError> {
        let id = config.reader_id.clone().unwrap_or_else(|| format!("reader-{:016x}", rand::random::<u64>()));
        let (tx, rx) = mpsc::channel(1024);
        let mut r = Reader {
            group: group.clone(),
            id,
            config,
            owned: BTreeMap::new(),
            finished: BTreeMap::new(),
            tx,
            rx,
            next_token: 0,
            next_sync: Instant::now(),
            must_sync: true,
            joined: false,
            checkpoint_mark: None,
            end_of_group: false,
            watermarks: HashMap::new(),
        };
        r.sync().await?;
        Ok(r)
    }

    /// This reader's id in its group ([`ReaderConfig::reader_id`], or the random one chosen).
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The segments this reader owns, with its position in each (the offset after the last
    /// event handed out). Local: no call to the controller.
    pub fn positions(&self) -> StreamCut {
        StreamCut { positions: self.owned.iter().map(|(k, o)| (k.clone(), o.position)).collect() }
    }

    /// This reader's watermark in `stream` (a stream of the group, in its scope; see
    /// docs/protocol.md, "Watermarks"): every event that writers noting their time
    /// ([`EventWriter::note_time`](crate::EventWriter::note_time)) wrote with an event time
    /// below it and that this reader has not handed out yet lies in a segment the group has not
    /// read that far: the watermark is the group's, with this reader's own segments at the
    /// events it handed out and the other segments of the group (owned by other readers or
    /// not yet assigned) at the positions last reported to the controller. `None` until the
    /// group passed a watermark's cut. It can go down after a reset. Asks the controller for
    /// new watermarks and the group's positions at most every 200 ms.
    ///
    /// # Errors
    ///
    /// `NotFound` if the stream or the group was deleted, `Unavailable` if no controller
    /// answered.
    pub async fn watermark(&mut self, stream: &str) -> Result<Option<u64>, ClientError> {
        let tracker =
            self.watermarks.entry(stream.to_owned()).or_insert_with(|| Tracker::new(&self.group.scope, stream, false));
        if tracker.due() {
            let info = self.group.info().await?;
            let progress = info.readers.iter().flat_map(|r| r.segments.iter()).chain(info.unassigned.iter());
            tracker.group_positions = progress
                .filter_map(|p| p.position.as_ref())
                .filter(|p| p.stream == stream)
                .map(|p| (p.segment_id, p.offset))
                .collect();
        }
        let mut positions: BTreeMap<u64, u64> = tracker.group_positions.iter().copied().collect();
        // This reader's own segments at the events it handed out (a finished one at its end).
        let own = self.owned.iter().map(|(k, o)| (k, o.position)).chain(self.finished.iter().map(|(k, at)| (k, *at)));
        for ((_, id), position) in own.filter(|((s, _), _)| s == stream) {
            positions.insert(id.packed(), position);
        }
        let ids: Vec<u64> = positions.keys().copied().collect();
        tracker.refresh(&self.group.client, &ids).await?;
        let held: Vec<Held> = positions
            .into_iter()
            .map(|(id, position)| {
                let (low, high) = tracker.ranges.get(&id).copied().unwrap_or((0.0, 0.0));
                Held { id, low, high, position }
            })
            .collect();
        Ok(tracker.current(&held))
    }

    /// The next event, or `None` once every stream of the group is sealed and read to its end.
    /// Waits while there is nothing to read. Cancel-safe: an event is either returned or left
    /// for the next call, and a sync interrupted by cancellation is repeated before anything
    /// else is handed out.
    ///
    /// # Errors
    ///
    /// `NotFound` if the group was deleted, or this reader was removed from it (a reset, or
    /// declared offline): join again with [`ReaderGroup::reader`]. `Unavailable` if no
    /// controller answered a sync, or a segment stayed unreadable for 20 attempts in a row
    /// (about 9 s);
    /// `Internal` for damaged data.
    pub async fn read_next(&mut self) -> Result<Option<GroupEvent>, ClientError> {
        loop {
            if self.must_sync || Instant::now() >= self.next_sync {
                self.sync().await?;
            }
            if self.end_of_group && self.owned.is_empty() {
                return Ok(None);
            }
            let next = match tokio::time::timeout_at(self.next_sync, self.rx.recv()).await {
                Ok(Some(next)) => next,
                Ok(None) | Err(_) => continue,
            };
            let (token, item) = next;
            let Some(key) = self.owned.iter().find(|(_, o)| o.token == token).map(|(k, _)| k.clone()) else {
                continue; // from a segment this reader no longer owns
            };
            match item {
                Item::Event { offset, next_offset, payload } => {
                    if let Some(o) = self.owned.get_mut(&key) {
                        o.position = next_offset;
                    }
                    let position = EventPosition { stream: key.0, segment: key.1, offset, next_offset };
                    return Ok(Some(GroupEvent { payload, position, checkpoint: self.checkpoint_mark.take() }));
                }
                Item::End { at } => {
                    self.owned.remove(&key);
                    self.finished.insert(key, at);
                    self.must_sync = true;
                }
                Item::Failed(e) => return Err(e),
            }
        }
    }

    /// The events as a `futures::Stream` (ends when [`Reader::read_next`] returns `None`, and
    /// after the first error, which it yields). Borrows the reader: drop the stream before
    /// [`close`](Self::close).
    pub fn events(&mut self) -> impl Stream<Item = Result<GroupEvent, ClientError>> + '_ {
        futures::stream::unfold((self, false), |(r, failed)| async move {
            if failed {
                return None;
            }
            match r.read_next().await {
                Ok(Some(ev)) => Some((Ok(ev), (r, false))),
                Ok(None) => None,
                Err(e) => Some((Err(e), (r, true))),
            }
        })
    }

    fn positions_pb(&self) -> Vec<pb::SegmentPosition> {
        self.owned
            .iter()
            .map(|((stream, id), o)| pb::SegmentPosition {
                stream: stream.clone(),
                segment_id: id.packed(),
                offset: o.position,
            })
            .collect()
    }

    /// Reports positions and finished segments; applies the answer. Records a checkpoint the
    /// answer asks for with a second sync, before any event is handed out.
    async fn sync(&mut self) -> Result<(), ClientError> {
        self.must_sync = true;
        let mut checkpoint = String::new();
        let mut acked = false;
        loop {
            let req = pb::ReaderSyncRequest {
                scope: self.group.scope.clone(),
                group: self.group.name.clone(),
                reader_id: self.id.clone(),
                join: !self.joined,
                positions: self.positions_pb(),
                finished: self
                    .finished
                    .iter()
                    .map(|((stream, id), at)| pb::SegmentPosition {
                        stream: stream.clone(),
                        segment_id: id.packed(),
                        offset: *at,
                    })
                    .collect(),
                checkpoint: checkpoint.clone(),
            };
            let resp = self
                .group
                .client
                .controller_channel(|ch| {
                    let req = req.clone();
                    async move { svc(ch).reader_sync(req).await }
                })
                .await?;
            self.joined = true;
            self.finished.clear();
            if !checkpoint.is_empty() {
                self.checkpoint_mark = Some(std::mem::take(&mut checkpoint));
            }
            self.apply(resp.segments);
            self.end_of_group = resp.end_of_group;
            if !resp.checkpoint.is_empty() && !acked {
                checkpoint = resp.checkpoint;
                acked = true;
                continue;
            }
            break;
        }
        self.must_sync = false;
        self.next_sync = Instant::now() + self.config.sync_interval;
        Ok(())
    }

    /// Makes the owned set what the controller says: stops segments taken away, starts new
    /// ones, and restarts any whose position the controller moved (a reset).
    fn apply(&mut self, segments: Vec<pb::AssignedSegment>) {
        let mut keep = BTreeMap::new();
        for a in segments {
            let Some(p) = a.position else { continue };
            let key = (p.stream.clone(), SegmentId::from_packed(p.segment_id));
            match self.owned.remove(&key) {
                Some(o) if o.position == p.offset => {
                    keep.insert(key, o);
                }
                old => {
                    if let Some(o) = old {
                        o.task.abort();
                    }
                    self.next_token += 1;
                    let token = self.next_token;
                    let task = tokio::spawn(read_segment(
                        self.group.client.clone(),
                        a.endpoint,
                        a.qualified_name,
                        p.offset,
                        token,
                        self.tx.clone(),
                    ));
                    keep.insert(key, Owned { position: p.offset, token, task });
                }
            }
        }
        for (_, o) in std::mem::replace(&mut self.owned, keep) {
            o.task.abort();
        }
    }

    /// Leaves the group: the segments go back at the positions of the events handed out, so the
    /// next owner continues exactly there.
    ///
    /// # Errors
    ///
    /// `NotFound` if the reader is no longer in the group (removed by a reset or declared
    /// offline) or the group was deleted, `Unavailable` if no controller answered.
    pub async fn close(mut self) -> Result<(), ClientError> {
        for o in self.owned.values() {
            o.task.abort();
        }
        if !self.finished.is_empty() {
            self.sync().await?;
        }
        let req = pb::ReaderLeaveRequest {
            scope: self.group.scope.clone(),
            group: self.group.name.clone(),
            reader_id: self.id.clone(),
            positions: self.positions_pb(),
        };
        self.group
            .client
            .controller_channel(|ch| {
                let req = req.clone();
                async move { svc(ch).reader_leave(req).await }
            })
            .await
            .map(|_| ())
    }
}

/// Reads one segment from `offset`, following its tail, until its end, through a
/// [`SegmentReader`] (which retries a dropped connection from the last delivered position).
async fn read_segment(
    client: NadiClient,
    endpoint: String,
    segment: String,
    offset: u64,
    token: u64,
    tx: mpsc::Sender<(u64, Item)>,
) {
    let mut r = SegmentReader::new(&client, &endpoint, &segment, offset);
    loop {
        match r.next_chunk().await {
            Ok(Some(chunk)) => {
                for ev in chunk.events {
                    let item = Item::Event { offset: ev.offset, next_offset: ev.next_offset, payload: ev.payload };
                    if tx.send((token, item)).await.is_err() {
                        return;
                    }
                }
            }
            Ok(None) => {
                let _ = tx.send((token, Item::End { at: r.position() })).await;
                return;
            }
            Err(e) => {
                let e = ClientError { message: format!("reading {segment}: {}", e.message), ..e };
                let _ = tx.send((token, Item::Failed(e))).await;
                return;
            }
        }
    }
}
