//! Pravega's segment-store wire protocol over this store (issue 20, docs/pravega-compat.md):
//! what an unmodified Pravega client (pravega-client-rust 0.3.7, the Python `pravega` 0.3.8)
//! asks of a segment store, served from the same containers as Nadi's own gRPC service.
//!
//! One task per connection. It reads frames as they come and keeps the replies in request
//! order (a queue of pending replies): appends are queued on their container in arrival order
//! while earlier ones are being made durable; reads and metadata requests run meanwhile. The
//! client alternates request and reply on its pooled connections and keeps one append block in
//! flight per writer, so the queue is short; it is bounded all the same.
//!
//! How Pravega's model meets Nadi's:
//! - names: the same, except transaction segments (`#transaction.{hex}` ↔ `#txn.{UUID}`);
//! - data: Nadi stores events in Pravega's framing, so an `AppendBlockEnd` is stored as it
//!   comes (after checking it is exactly its declared events) and reads serve stored bytes
//!   from any offset; a byte stream's `ConditionalBlockEnd` is stored as raw bytes;
//! - writers: the 128-bit writer id is Nadi writer `pravega-{32 hex}`; Pravega numbers events
//!   from 1, Nadi from 0 (Nadi number = Pravega number − 1), so a retried block is acked
//!   without being stored again (exactly once) and a lost one is a gap, as for Nadi writers;
//! - tables (reader-group state): [`table`].
//!
//! Bad input never reaches the store and never panics: a first frame that is not `Hello`,
//! garbage, a negative or oversized length, an unknown command type, a malformed payload, an
//! append without `SetupAppend` or a block that is not its declared events close the
//! connection (nothing of the block is stored). Requests this front end does not serve get
//! `OperationUnsupported` with their request id.
//!
//! Owns: the wire connections. Calls: `crate::store`, `crate::container`, `net::access`.
//! Called by: `crate::node::pravega` (which binds the listener).

pub mod table;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures::future::BoxFuture;
use futures::stream::{FuturesOrdered, StreamExt};
use nadi_pravega::txn_id::nadi_segment_name;
use nadi_pravega::wire::{self as w, Reply, Request};
use nadi_proto::framing::{self, MAX_EVENT_SIZE};
use nadi_security::acl::Permission;
use nadi_security::auth::AuthMode;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::access::Access;
use crate::error::StoreError;
use crate::store::SegmentStore;
use crate::store::load::StoreLoad;
use table::{TableError, Tables};

/// Longest a read at the tail of an open segment is held for data before an empty reply (the
/// client times a request out after 30 s; its event readers re-ask at once on an empty reply).
pub const DEFAULT_READ_HOLD: Duration = Duration::from_secs(20);
/// Most bytes one `SegmentRead` carries (the client asks for 8 MiB; a frame holds < 16 MiB).
pub const MAX_READ: usize = 8 * 1024 * 1024;
/// Replies a connection may owe before it stops reading requests.
const MAX_PENDING: usize = 64;

/// The Pravega wire front end of one segment store.
#[derive(Debug, Clone)]
pub struct PravegaWire {
    store: Arc<SegmentStore>,
    tables: Arc<Tables>,
    load: StoreLoad,
    access: Access,
    read_hold: Duration,
}

impl PravegaWire {
    pub fn new(store: Arc<SegmentStore>, load: StoreLoad, access: Access) -> PravegaWire {
        PravegaWire { tables: Arc::new(Tables::new(store.clone())), store, load, access, read_hold: DEFAULT_READ_HOLD }
    }

    /// How long a read at the tail waits for data (tests shorten it).
    pub fn with_read_hold(mut self, hold: Duration) -> PravegaWire {
        self.read_hold = hold;
        self
    }

    /// Serves one connection (plain TCP or TLS) until the peer closes it or sends bad input;
    /// returns why it ended.
    pub async fn serve<C>(&self, mut conn: C) -> Result<(), String>
    where
        C: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
    {
        let mut buf = BytesMut::with_capacity(64 * 1024);
        let mut out = BytesMut::new();
        // The handshake: one Hello each way before anything else.
        let hello = loop {
            match w::decode_frame(&mut buf).map_err(|e| e.to_string())? {
                Some(frame) => break frame.request().map_err(|e| e.to_string())?,
                None => {
                    if conn.read_buf(&mut buf).await.map_err(|e| e.to_string())? == 0 {
                        return Ok(());
                    }
                }
            }
        };
        let Request::Hello(hello) = hello else {
            return Err(format!("the first command was {}, not Hello", hello.name()));
        };
        Reply::Hello(w::Hello::CURRENT).encode(&mut out).map_err(|e| e.to_string())?;
        conn.write_all_buf(&mut out).await.map_err(|e| e.to_string())?;
        if !hello.is_compatible() {
            return Err(format!(
                "the client speaks versions {}..={}, this server {}..={}",
                hello.low_version,
                hello.high_version,
                w::Hello::CURRENT.low_version,
                w::Hello::CURRENT.high_version
            ));
        }

        let mut conn_state = Connection::default();
        let mut pending: FuturesOrdered<BoxFuture<'static, Outcome>> = FuturesOrdered::new();
        loop {
            // Requests already buffered are taken before reading more.
            while pending.len() < MAX_PENDING {
                match w::decode_frame(&mut buf).map_err(|e| e.to_string())? {
                    Some(frame) => {
                        let request = frame.request().map_err(|e| e.to_string())?;
                        let outcome = self.dispatch(request, &mut conn_state).await;
                        pending.push_back(outcome);
                    }
                    None => break,
                }
            }
            tokio::select! {
                read = conn.read_buf(&mut buf), if pending.len() < MAX_PENDING => {
                    // The peer closed: what is queued is durable or failing on its own; nobody
                    // is left to tell.
                    if read.map_err(|e| e.to_string())? == 0 {
                        return Ok(());
                    }
                }
                Some(outcome) = pending.next(), if !pending.is_empty() => {
                    if let Some(reply) = conn_state.settle(outcome.writer, outcome.reply) {
                        reply.encode(&mut out).map_err(|e| e.to_string())?;
                        conn.write_all_buf(&mut out).await.map_err(|e| e.to_string())?;
                    }
                    if let Some(why) = outcome.close {
                        return Err(why);
                    }
                }
            }
        }
    }

    /// Starts serving one request: appends are queued on their container here, in order; the
    /// rest runs in the returned future.
    async fn dispatch(&self, request: Request, conn: &mut Connection) -> BoxFuture<'static, Outcome> {
        let id = request.request_id();
        match request {
            Request::Hello(_) => ready(Outcome::close("a second Hello")),
            Request::KeepAlive(_) => ready(Outcome::reply(Reply::KeepAlive(w::KeepAlive))),
            Request::SetupAppend(c) => ready(self.setup_append(c, conn).await),
            Request::AppendBlockEnd(c) => self.append_block(c, conn).await,
            Request::ConditionalAppend(c) => {
                let events = c.event.data.clone();
                if let Err(e) = framing::check_batch(&events, 1) {
                    return ready(Outcome::close(format!("ConditionalAppend: not one event: {e}")));
                }
                self.conditional(conn, c.writer_id, c.event_number, c.expected_offset, 1, events, id)
            }
            Request::ConditionalBlockEnd(c) => {
                self.conditional(conn, c.writer_id, c.event_number, c.expected_offset, 0, c.data, id)
            }
            Request::ReadSegment(c) => {
                let this = self.clone();
                Box::pin(async move { this.read(c).await })
            }
            other => {
                let this = self.clone();
                Box::pin(async move { this.segment_request(other).await })
            }
        }
    }

    /// The Nadi name of a wire name, and that the caller's token allows `needed` on it.
    async fn resolve(&self, wire: &str, token: &str, needed: Permission) -> Result<String, Reply> {
        let bad = || {
            Reply::NoSuchSegment(w::NoSuchSegment {
                request_id: 0,
                segment: wire.to_owned(),
                server_stack_trace: "not a segment name".into(),
                offset: -1,
            })
        };
        if wire.is_empty() || wire.len() > crate::net::service::MAX_SEGMENT_NAME_LEN {
            return Err(bad());
        }
        let name = nadi_segment_name(wire).ok_or_else(bad)?;
        if self.access.authenticator().mode() == AuthMode::Required {
            // A delegation token from the Pravega controller API carries the caller's token.
            let token = nadi_pravega::delegation::unwrap(token).unwrap_or_else(|| token.to_owned());
            let header = http::HeaderValue::from_str(&format!("Bearer {token}")).ok();
            let denied = |why: String| {
                Reply::AuthTokenCheckFailed(w::AuthTokenCheckFailed {
                    request_id: 0,
                    server_stack_trace: why,
                    error_code: 0,
                })
            };
            let who =
                self.access.authenticator().authenticate(header.as_ref()).await.map_err(|e| denied(e.to_string()))?;
            self.access.require_on_segment(&who, &name, needed).await.map_err(|s| denied(s.message().to_owned()))?;
        }
        Ok(name)
    }

    async fn setup_append(&self, c: w::SetupAppend, conn: &mut Connection) -> Outcome {
        let name = match self.resolve(&c.segment, &c.delegation_token, Permission::Write).await {
            Ok(n) => n,
            Err(reply) => return Outcome::reply(with_id(reply, c.request_id)),
        };
        let writer = nadi_writer(c.writer_id);
        match self.store.container(&name).writer_state(&name, &writer).await {
            Ok((last, _)) => {
                let last = wire_number(last);
                conn.writers.insert(c.writer_id, Session { wire: c.segment.clone(), name, writer, last_acked: last });
                Outcome {
                    reply: Some(Reply::AppendSetup(w::AppendSetup {
                        request_id: c.request_id,
                        segment: c.segment,
                        writer_id: c.writer_id,
                        last_event_number: last,
                    })),
                    writer: Some((c.writer_id, WriterEvent::Setup)),
                    close: None,
                }
            }
            Err(e) => error_outcome(e, c.request_id, &c.segment, -1),
        }
    }

    async fn append_block(&self, c: w::AppendBlockEnd, conn: &mut Connection) -> BoxFuture<'static, Outcome> {
        let Some(s) = conn.writers.get(&c.writer_id) else {
            return ready(Outcome::close(format!("an append by writer {:032x} without SetupAppend", c.writer_id)));
        };
        if usize::try_from(c.size_of_whole_events).ok() != Some(c.data.len()) || c.num_event < 1 {
            return ready(Outcome::close(format!(
                "AppendBlockEnd declares {} events in {} bytes but carries {} bytes",
                c.num_event,
                c.size_of_whole_events,
                c.data.len()
            )));
        }
        if let Err(e) = framing::check_batch(&c.data, c.num_event as u32) {
            return ready(Outcome::close(format!("AppendBlockEnd is not {} whole events: {e}", c.num_event)));
        }
        let first = c.last_event_number.saturating_sub(c.num_event as i64 - 1);
        if first < 1 || c.last_event_number == i64::MAX {
            return ready(invalid_event_number(c.writer_id, c.last_event_number));
        }
        let (wire, name, writer_id, last) = (s.wire.clone(), s.name.clone(), c.writer_id, c.last_event_number);
        let (events, bytes) = (c.num_event as u32, c.data.len() as u64);
        let container = self.store.container(&name);
        let queued = container.append(&name, &s.writer, last - 1, events, c.data).await;
        let load = self.load.clone();
        let request_id = c.request_id;
        match queued {
            Err(e) => ready(writer_error(e, writer_id, request_id, &wire, last)),
            Ok(rx) => Box::pin(async move {
                match rx.await.unwrap_or(Err(StoreError::ShuttingDown)) {
                    Ok(ack) => {
                        load.record(&name, events as u64, bytes);
                        Outcome {
                            reply: Some(Reply::DataAppended(w::DataAppended {
                                writer_id,
                                event_number: last,
                                previous_event_number: first - 1,
                                request_id,
                                current_segment_write_offset: ack.segment_length as i64,
                            })),
                            writer: Some((writer_id, WriterEvent::Acked(last))),
                            close: None,
                        }
                    }
                    Err(e) => writer_error(e, writer_id, request_id, &wire, last),
                }
            }),
        }
    }

    /// `ConditionalAppend` (one event) and `ConditionalBlockEnd` (raw bytes, a byte stream's).
    #[allow(clippy::too_many_arguments)]
    fn conditional(
        &self,
        conn: &mut Connection,
        writer_id: u128,
        event_number: i64,
        expected_offset: i64,
        events: u32,
        data: Bytes,
        request_id: i64,
    ) -> BoxFuture<'static, Outcome> {
        let Some(s) = conn.writers.get(&writer_id) else {
            return ready(Outcome::close(format!("an append by writer {writer_id:032x} without SetupAppend")));
        };
        if event_number < 1 || event_number == i64::MAX {
            return ready(invalid_event_number(writer_id, event_number));
        }
        if data.len() > MAX_EVENT_SIZE + framing::EVENT_HEADER_LEN {
            return ready(Outcome::close(format!("a conditional append of {} bytes", data.len())));
        }
        let Ok(expected) = u64::try_from(expected_offset) else {
            return ready(Outcome::close(format!("a conditional append at offset {expected_offset}")));
        };
        let (wire, name, writer, acked) = (s.wire.clone(), s.name.clone(), s.writer.clone(), s.last_acked);
        let container = self.store.container(&name).clone();
        let load = self.load.clone();
        Box::pin(async move {
            let len = data.len() as u64;
            match container.conditional_append_as(&name, &writer, event_number - 1, expected, events, data).await {
                Ok(ack) => {
                    load.record(&name, events as u64, len);
                    Outcome {
                        reply: Some(Reply::DataAppended(w::DataAppended {
                            writer_id,
                            event_number,
                            previous_event_number: acked,
                            request_id,
                            current_segment_write_offset: ack.segment_length as i64,
                        })),
                        writer: Some((writer_id, WriterEvent::Acked(event_number))),
                        close: None,
                    }
                }
                // The client fails its events from this number on: those after the last ack.
                Err(StoreError::OffsetMismatch { .. }) => Outcome {
                    reply: Some(Reply::ConditionalCheckFailed(w::ConditionalCheckFailed {
                        writer_id,
                        event_number: acked.max(0) + 1,
                        request_id,
                    })),
                    writer: Some((writer_id, WriterEvent::Failed)),
                    close: None,
                },
                Err(e) => writer_error(e, writer_id, request_id, &wire, event_number),
            }
        })
    }

    async fn read(&self, c: w::ReadSegment) -> Outcome {
        let name = match self.resolve(&c.segment, &c.delegation_token, Permission::Read).await {
            Ok(n) => n,
            Err(reply) => return Outcome::reply(with_id(reply, c.request_id)),
        };
        let Ok(offset) = u64::try_from(c.offset) else {
            return Outcome::close(format!("ReadSegment at offset {}", c.offset));
        };
        let max = usize::try_from(c.suggested_length).unwrap_or(0).clamp(1, MAX_READ);
        let container = self.store.container(&name).clone();
        let mut changes = container.subscribe();
        let deadline = tokio::time::Instant::now() + self.read_hold;
        let mut held = None;
        loop {
            changes.borrow_and_update();
            let reply = |data: Bytes, length: u64, end_of_segment: bool| {
                let end = offset + data.len() as u64;
                Outcome::reply(Reply::SegmentRead(w::SegmentRead {
                    segment: c.segment.clone(),
                    offset: c.offset,
                    at_tail: end >= length,
                    end_of_segment,
                    data,
                    request_id: c.request_id,
                }))
            };
            match container.read_bytes(&name, offset, max, &mut held).await {
                Ok(chunk) if !chunk.data.is_empty() || chunk.end_of_segment => {
                    return reply(chunk.data, chunk.segment_length, chunk.end_of_segment);
                }
                Ok(_) => {}
                // Past the end: of a sealed segment, its end; of an open one, wait as at the
                // tail (a rare request, so the segment's state is looked up only here).
                Err(StoreError::BadOffset { .. }) => match container.info(&name) {
                    Ok(info) if info.sealed => return reply(Bytes::new(), info.length, true),
                    Ok(_) => {}
                    Err(e) => return error_outcome(e, c.request_id, &c.segment, c.offset),
                },
                Err(e) => return error_outcome(e, c.request_id, &c.segment, c.offset),
            }
            // At (or past) the tail of an open segment: wait for data, for a while.
            let waited = tokio::time::timeout_at(deadline, changes.changed()).await;
            if !matches!(waited, Ok(Ok(()))) {
                return Outcome::reply(Reply::SegmentRead(w::SegmentRead {
                    segment: c.segment,
                    offset: c.offset,
                    at_tail: true,
                    end_of_segment: false,
                    data: Bytes::new(),
                    request_id: c.request_id,
                }));
            }
        }
    }

    /// Segment metadata, attributes and table segments.
    async fn segment_request(&self, request: Request) -> Outcome {
        let id = request.request_id();
        let unsupported = |what: &str| {
            Outcome::reply(Reply::OperationUnsupported(w::OperationUnsupported {
                request_id: id,
                operation_name: what.to_owned(),
                server_stack_trace: String::new(),
            }))
        };
        let (wire, token, needed) = match &request {
            Request::GetStreamSegmentInfo(c) => (c.segment_name.clone(), c.delegation_token.clone(), Permission::Read),
            Request::GetSegmentAttribute(c) => (c.segment_name.clone(), c.delegation_token.clone(), Permission::Read),
            Request::UpdateSegmentAttribute(c) => {
                (c.segment_name.clone(), c.delegation_token.clone(), Permission::Write)
            }
            Request::ReadTable(c) => (c.segment.clone(), c.delegation_token.clone(), Permission::Read),
            Request::ReadTableKeys(c) => (c.segment.clone(), c.delegation_token.clone(), Permission::Read),
            Request::ReadTableEntries(c) => (c.segment.clone(), c.delegation_token.clone(), Permission::Read),
            Request::ReadTableEntriesDelta(c) => (c.segment.clone(), c.delegation_token.clone(), Permission::Read),
            Request::UpdateTableEntries(c) => (c.segment.clone(), c.delegation_token.clone(), Permission::Write),
            Request::RemoveTableKeys(c) => (c.segment.clone(), c.delegation_token.clone(), Permission::Write),
            Request::CreateTableSegment(c) => (c.segment.clone(), c.delegation_token.clone(), Permission::Write),
            Request::DeleteTableSegment(c) => (c.segment.clone(), c.delegation_token.clone(), Permission::Write),
            Request::SealSegment(c) => (c.segment.clone(), c.delegation_token.clone(), Permission::Admin),
            Request::SealTableSegment(c) => (c.segment.clone(), c.delegation_token.clone(), Permission::Admin),
            Request::TruncateSegment(c) => (c.segment.clone(), c.delegation_token.clone(), Permission::Admin),
            Request::DeleteSegment(c) => (c.segment.clone(), c.delegation_token.clone(), Permission::Admin),
            Request::CreateSegment(c) => (c.segment.clone(), c.delegation_token.clone(), Permission::Admin),
            Request::MergeSegments(c) => (c.target.clone(), c.delegation_token.clone(), Permission::Admin),
            other => return unsupported(other.name()),
        };
        let name = match self.resolve(&wire, &token, needed).await {
            Ok(n) => n,
            Err(reply) => return Outcome::reply(with_id(reply, id)),
        };
        let container = self.store.container(&name);
        let done = |reply: Reply| Outcome::reply(reply);
        let failed = |e: StoreError| error_outcome(e, id, &wire, -1);
        match request {
            Request::GetStreamSegmentInfo(c) => match container.info(&name) {
                Ok(info) => done(Reply::StreamSegmentInfo(w::StreamSegmentInfo {
                    request_id: id,
                    segment_name: c.segment_name,
                    exists: true,
                    is_sealed: info.sealed,
                    is_deleted: false,
                    last_modified: now_millis(),
                    write_offset: info.length as i64,
                    start_offset: info.start_offset as i64,
                })),
                Err(e) => failed(e),
            },
            Request::GetSegmentAttribute(c) => match container.info(&name) {
                Ok(info) => {
                    let key = attribute_key(c.attribute_id);
                    let value = info.attributes.iter().find(|(k, _)| *k == key).map_or(i64::MIN, |(_, v)| *v as i64);
                    done(Reply::SegmentAttribute(w::SegmentAttribute { request_id: id, value }))
                }
                Err(e) => failed(e),
            },
            Request::UpdateSegmentAttribute(c) => {
                let expected = (c.expected_value != i64::MIN).then_some(c.expected_value as u64);
                let key = attribute_key(c.attribute_id);
                match container.update_attribute(&name, &key, expected, c.new_value as u64).await {
                    Ok(()) => done(Reply::SegmentAttributeUpdated(w::SegmentAttributeUpdated {
                        request_id: id,
                        success: true,
                    })),
                    Err(StoreError::AttributeMismatch { .. }) => {
                        done(Reply::SegmentAttributeUpdated(w::SegmentAttributeUpdated {
                            request_id: id,
                            success: false,
                        }))
                    }
                    Err(e) => failed(e),
                }
            }
            Request::SealSegment(_) | Request::SealTableSegment(_) => match container.seal(&name).await {
                Ok(_) => done(Reply::SegmentSealed(w::SegmentSealed { request_id: id, segment: wire.clone() })),
                Err(e) => failed(e),
            },
            Request::TruncateSegment(c) => {
                let Ok(offset) = u64::try_from(c.truncation_offset) else {
                    return Outcome::close(format!("TruncateSegment at offset {}", c.truncation_offset));
                };
                match container.truncate_bytes(&name, offset).await {
                    Ok(()) => {
                        done(Reply::SegmentTruncated(w::SegmentTruncated { request_id: id, segment: wire.clone() }))
                    }
                    Err(e) => failed(e),
                }
            }
            Request::DeleteSegment(_) => match container.delete(&name).await {
                Ok(()) => done(Reply::SegmentDeleted(w::SegmentDeleted { request_id: id, segment: wire.clone() })),
                Err(e) => failed(e),
            },
            Request::CreateSegment(_) => match container.create(&name).await {
                Ok(true) => done(Reply::SegmentCreated(w::SegmentCreated { request_id: id, segment: wire.clone() })),
                Ok(false) => done(already_exists(id, &wire)),
                Err(e) => failed(e),
            },
            Request::MergeSegments(c) => {
                let source = match self.resolve(&c.source, &c.delegation_token, Permission::Admin).await {
                    Ok(n) => n,
                    Err(reply) => return Outcome::reply(with_id(reply, id)),
                };
                if self.store.container(&source).id() != container.id() {
                    return unsupported("MergeSegments of segments in different containers");
                }
                match container.merge(&name, &source).await {
                    Ok(length) => done(Reply::SegmentsMerged(w::SegmentsMerged {
                        request_id: id,
                        target: c.target,
                        source: c.source,
                        new_target_write_offset: length as i64,
                    })),
                    Err(e) => failed(e),
                }
            }
            Request::CreateTableSegment(_) => match self.tables.create(&name).await {
                Ok(true) => done(Reply::SegmentCreated(w::SegmentCreated { request_id: id, segment: wire.clone() })),
                Ok(false) => done(already_exists(id, &wire)),
                Err(e) => failed(e),
            },
            Request::DeleteTableSegment(c) => match self.tables.delete(&name, c.must_be_empty).await {
                Ok(true) => done(Reply::SegmentDeleted(w::SegmentDeleted { request_id: id, segment: wire.clone() })),
                Ok(false) => done(Reply::TableSegmentNotEmpty(w::TableSegmentNotEmpty {
                    request_id: id,
                    segment: wire.clone(),
                    server_stack_trace: String::new(),
                })),
                Err(e) => table_failed(e, id, &wire),
            },
            Request::UpdateTableEntries(c) => {
                let entries: Vec<table::Entry> = c
                    .table_entries
                    .into_iter()
                    .map(|e| table::Entry { key: e.key.data, value: e.value.data, version: e.key.version })
                    .collect();
                match self.tables.update(&name, &entries).await {
                    Ok(updated_versions) => {
                        done(Reply::TableEntriesUpdated(w::TableEntriesUpdated { request_id: id, updated_versions }))
                    }
                    Err(e) => table_failed(e, id, &wire),
                }
            }
            Request::RemoveTableKeys(c) => {
                let keys: Vec<table::Entry> = c
                    .keys
                    .into_iter()
                    .map(|k| table::Entry { key: k.data, value: Bytes::new(), version: k.version })
                    .collect();
                match self.tables.remove(&name, &keys).await {
                    Ok(()) => {
                        done(Reply::TableKeysRemoved(w::TableKeysRemoved { request_id: id, segment: wire.clone() }))
                    }
                    Err(e) => table_failed(e, id, &wire),
                }
            }
            Request::ReadTable(c) => {
                let keys: Vec<Bytes> = c.keys.into_iter().map(|k| k.data).collect();
                match self.tables.get(&name, &keys).await {
                    Ok(entries) => done(Reply::TableRead(w::TableRead {
                        request_id: id,
                        segment: wire.clone(),
                        entries: entries.into_iter().map(wire_entry).collect(),
                    })),
                    Err(e) => failed(e),
                }
            }
            Request::ReadTableEntriesDelta(c) => {
                let max = usize::try_from(c.suggested_entry_count).unwrap_or(1);
                match self.tables.since(&name, c.from_position.max(0), max).await {
                    Ok((entries, last_position)) => done(Reply::TableEntriesDeltaRead(w::TableEntriesDeltaRead {
                        request_id: id,
                        segment: wire.clone(),
                        reached_end: entries.is_empty(),
                        entries: entries.into_iter().map(wire_entry).collect(),
                        should_clear: false,
                        last_position,
                    })),
                    Err(e) => failed(e),
                }
            }
            Request::ReadTableKeys(c) => {
                let from = token_position(&c.continuation_token);
                let max = usize::try_from(c.suggested_key_count).unwrap_or(1);
                match self.tables.since(&name, from, max).await {
                    Ok((entries, next)) => done(Reply::TableKeysRead(w::TableKeysRead {
                        request_id: id,
                        segment: wire.clone(),
                        keys: entries.into_iter().map(|e| wire_entry(e).key).collect(),
                        continuation_token: Bytes::copy_from_slice(&next.to_be_bytes()),
                    })),
                    Err(e) => failed(e),
                }
            }
            Request::ReadTableEntries(c) => {
                let from = token_position(&c.continuation_token);
                let max = usize::try_from(c.suggested_entry_count).unwrap_or(1);
                match self.tables.since(&name, from, max).await {
                    Ok((entries, next)) => done(Reply::TableEntriesRead(w::TableEntriesRead {
                        request_id: id,
                        segment: wire.clone(),
                        entries: entries.into_iter().map(wire_entry).collect(),
                        continuation_token: Bytes::copy_from_slice(&next.to_be_bytes()),
                    })),
                    Err(e) => failed(e),
                }
            }
            other => unsupported(other.name()),
        }
    }
}

/// Where a table listing continues: the position in a token this front end gave (empty: the
/// start).
fn token_position(token: &Bytes) -> i64 {
    token.get(..8).and_then(|b| b.try_into().ok()).map_or(0, i64::from_be_bytes).max(0)
}

fn wire_entry(e: table::Entry) -> w::TableEntry {
    w::TableEntry { key: w::TableKey { data: e.key, version: e.version }, value: w::TableValue { data: e.value } }
}

fn already_exists(request_id: i64, segment: &str) -> Reply {
    Reply::SegmentAlreadyExists(w::SegmentAlreadyExists {
        request_id,
        segment: segment.to_owned(),
        server_stack_trace: String::new(),
    })
}

fn table_failed(e: TableError, request_id: i64, segment: &str) -> Outcome {
    match e {
        TableError::BadVersion { .. } => Outcome::reply(Reply::TableKeyBadVersion(w::TableKeyBadVersion {
            request_id,
            segment: segment.to_owned(),
            server_stack_trace: e.to_string(),
        })),
        TableError::KeyDoesNotExist { .. } => Outcome::reply(Reply::TableKeyDoesNotExist(w::TableKeyDoesNotExist {
            request_id,
            segment: segment.to_owned(),
            server_stack_trace: e.to_string(),
        })),
        TableError::TooLarge(why) => Outcome::reply(Reply::OperationUnsupported(w::OperationUnsupported {
            request_id,
            operation_name: why,
            server_stack_trace: String::new(),
        })),
        TableError::Store(e) => error_outcome(e, request_id, segment, -1),
    }
}

/// The Nadi writer id of a Pravega writer.
fn nadi_writer(id: u128) -> String {
    format!("pravega-{id:032x}")
}

/// A Nadi event number (from 0; −1: none) as Pravega numbers it (from 1; `i64::MIN`: none).
fn wire_number(nadi: i64) -> i64 {
    if nadi < 0 { i64::MIN } else { nadi + 1 }
}

/// Where Pravega attribute `id` is kept among a segment's attributes.
fn attribute_key(id: u128) -> String {
    format!("pravega.{id:032x}")
}

fn now_millis() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
}

/// A reply with `request_id` set (replies are built before the id is known in `resolve`).
fn with_id(reply: Reply, request_id: i64) -> Reply {
    match reply {
        Reply::NoSuchSegment(mut r) => {
            r.request_id = request_id;
            Reply::NoSuchSegment(r)
        }
        Reply::AuthTokenCheckFailed(mut r) => {
            r.request_id = request_id;
            Reply::AuthTokenCheckFailed(r)
        }
        other => other,
    }
}

/// What a writer's append came to, for the connection's bookkeeping.
#[derive(Debug, Clone, Copy)]
enum WriterEvent {
    Setup,
    Acked(i64),
    Failed,
}

/// One reply (or none), and whether the connection ends after it.
struct Outcome {
    reply: Option<Reply>,
    writer: Option<(u128, WriterEvent)>,
    close: Option<String>,
}

impl Outcome {
    fn reply(reply: Reply) -> Outcome {
        Outcome { reply: Some(reply), writer: None, close: None }
    }

    fn close(why: impl Into<String>) -> Outcome {
        Outcome { reply: None, writer: None, close: Some(why.into()) }
    }
}

fn ready(outcome: Outcome) -> BoxFuture<'static, Outcome> {
    Box::pin(std::future::ready(outcome))
}

/// A writer's append session on this connection.
#[derive(Debug)]
struct Session {
    wire: String,
    name: String,
    writer: String,
    /// The last event number acknowledged to the writer (`i64::MIN`: none).
    last_acked: i64,
}

/// What a connection remembers: its writers, and which of them failed (their later replies
/// are dropped until they set up again, so the client sees one failure per failed block run).
#[derive(Debug, Default)]
struct Connection {
    writers: HashMap<u128, Session>,
    failed: HashSet<u128>,
}

impl Connection {
    /// The reply to send for `outcome`, after the writer bookkeeping.
    fn settle(&mut self, writer: Option<(u128, WriterEvent)>, reply: Option<Reply>) -> Option<Reply> {
        let Some((id, event)) = writer else { return reply };
        match event {
            WriterEvent::Setup => {
                self.failed.remove(&id);
                reply
            }
            _ if self.failed.contains(&id) => None,
            WriterEvent::Acked(n) => {
                if let Some(s) = self.writers.get_mut(&id) {
                    s.last_acked = s.last_acked.max(n);
                }
                reply
            }
            WriterEvent::Failed => {
                self.failed.insert(id);
                reply
            }
        }
    }
}

fn invalid_event_number(writer_id: u128, event_number: i64) -> Outcome {
    Outcome {
        reply: Some(Reply::InvalidEventNumber(w::InvalidEventNumber {
            writer_id,
            event_number,
            server_stack_trace: format!("event number {event_number} is out of sequence"),
        })),
        writer: Some((writer_id, WriterEvent::Failed)),
        close: Some(format!("writer {writer_id:032x}: event number {event_number} out of sequence")),
    }
}

/// A failed append: the writer's error reply, or `InvalidEventNumber` and a close for a gap.
fn writer_error(e: StoreError, writer_id: u128, request_id: i64, segment: &str, event_number: i64) -> Outcome {
    if let StoreError::EventNumberGap { .. } = e {
        return invalid_event_number(writer_id, event_number);
    }
    let mut outcome = error_outcome(e, request_id, segment, -1);
    outcome.writer = Some((writer_id, WriterEvent::Failed));
    outcome
}

/// A store error as Pravega's typed reply; errors with no such reply close the connection (the
/// client reconnects and retries, with its writer id where it writes).
fn error_outcome(e: StoreError, request_id: i64, segment: &str, offset: i64) -> Outcome {
    let segment = segment.to_owned();
    let stack = e.to_string();
    match e {
        StoreError::SegmentNotFound(_) | StoreError::SegmentReplaced(_) => {
            Outcome::reply(Reply::NoSuchSegment(w::NoSuchSegment {
                request_id,
                segment,
                server_stack_trace: stack,
                offset,
            }))
        }
        StoreError::Sealed(_) => Outcome::reply(Reply::SegmentIsSealed(w::SegmentIsSealed {
            request_id,
            segment,
            server_stack_trace: stack,
            offset,
        })),
        StoreError::Truncated { start, .. } => Outcome::reply(Reply::SegmentIsTruncated(w::SegmentIsTruncated {
            request_id,
            segment,
            start_offset: start as i64,
            server_stack_trace: stack,
            offset,
        })),
        StoreError::NotLeader { leader, .. } => Outcome::reply(Reply::WrongHost(w::WrongHost {
            request_id,
            segment,
            correct_host: leader.unwrap_or_default(),
            server_stack_trace: stack,
        })),
        StoreError::Unauthenticated(_) | StoreError::PermissionDenied(_) => {
            Outcome::reply(Reply::AuthTokenCheckFailed(w::AuthTokenCheckFailed {
                request_id,
                server_stack_trace: stack,
                error_code: 0,
            }))
        }
        StoreError::InvalidArgument(_)
        | StoreError::BadOffset { .. }
        | StoreError::TimeInFuture { .. }
        | StoreError::EventTooLarge { .. }
        | StoreError::NotSealed(_)
        | StoreError::AttributeMismatch { .. }
        | StoreError::OffsetMismatch { .. }
        | StoreError::EventNumberGap { .. } => Outcome::reply(Reply::OperationUnsupported(w::OperationUnsupported {
            request_id,
            operation_name: stack,
            server_stack_trace: String::new(),
        })),
        StoreError::Corrupt { .. }
        | StoreError::StorageFull(_)
        | StoreError::Unavailable(_)
        | StoreError::ShuttingDown
        | StoreError::Internal(_) => {
            tracing::warn!(%segment, error = %stack, "a Pravega request failed; closing its connection");
            Outcome::close(stack)
        }
    }
}
