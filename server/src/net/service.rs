//! gRPC service `nadi.segment.v1.SegmentStore` over a [`SegmentStore`].
//!
//! Appends are pipelined: the handler keeps reading batches and queueing them on the container
//! (in arrival order, which is the order they are stored in) while earlier ones are being made
//! durable, and sends acknowledgements in order. At most [`MAX_IN_FLIGHT`] batches and about
//! [`MAX_IN_FLIGHT_BYTES`] per stream are queued (and each container bounds the bytes queued on
//! it, see `ContainerOptions::queue_bytes`), so a fast writer is slowed to the disk's pace
//! instead of buffered without bound, and one stream cannot take a container's whole queue.
//!
//! Owns: the segment-store gRPC service. Calls: `crate::store`, `crate::container`, `crate::error`.
//! Called by: `crate::node` (serves it).

use std::pin::Pin;
use std::sync::Arc;

use futures::stream::FuturesOrdered;
use futures::{Stream, StreamExt};
use nadi_proto::framing::{self, FramingError, MAX_EVENT_SIZE};
use nadi_proto::segment::v1 as pb;
use nadi_security::acl::Permission;
use pb::segment_store_server::SegmentStore as SegmentStoreApi;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};

use super::access::Access;
use crate::container::MAX_BATCH_BYTES;
use crate::error::StoreError;
use crate::store::SegmentStore;
use crate::store::load::StoreLoad;

/// Append batches queued per stream before the handler stops reading more.
pub const MAX_IN_FLIGHT: usize = 64;
/// Bytes of append batches queued per stream before the handler stops reading more (it stops
/// once this is reached, so one batch may take it past by at most one batch, 16 MiB).
pub const MAX_IN_FLIGHT_BYTES: usize = 32 * 1024 * 1024;
/// Default upper bound of one read response.
pub const DEFAULT_READ_CHUNK: usize = 1024 * 1024;
/// Longest writer id, in bytes.
pub const MAX_WRITER_ID_LEN: usize = 256;
/// Longest segment name, in bytes.
pub const MAX_SEGMENT_NAME_LEN: usize = 512;

/// The gRPC service.
#[derive(Debug, Clone)]
pub struct SegmentService {
    store: Arc<SegmentStore>,
    load: StoreLoad,
    /// Who may append, read and manage segments.
    access: Access,
}

impl SegmentService {
    pub fn new(store: Arc<SegmentStore>) -> Self {
        Self { store, load: StoreLoad::default(), access: Access::default() }
    }

    /// Checks each call against `access` (default: open).
    pub fn with_access(mut self, access: Access) -> Self {
        self.access = access;
        self
    }

    /// Counts acknowledged appends on `load` (for the auto-scaler).
    pub fn with_load(mut self, load: StoreLoad) -> Self {
        self.load = load;
        self
    }

    /// The tonic server for this service, with large frames and windows (see MACHINE-LIMITS).
    pub fn into_server(self) -> pb::segment_store_server::SegmentStoreServer<Self> {
        pb::segment_store_server::SegmentStoreServer::new(self)
            .max_decoding_message_size(MAX_BATCH_BYTES + 64 * 1024)
            .max_encoding_message_size(MAX_BATCH_BYTES + 64 * 1024)
    }
}

fn check_segment(name: &str) -> Result<(), StoreError> {
    if name.is_empty() || name.len() > MAX_SEGMENT_NAME_LEN {
        return Err(StoreError::InvalidArgument(format!("segment name must be 1..={MAX_SEGMENT_NAME_LEN} bytes")));
    }
    Ok(())
}

fn check_batch(b: &pb::AppendBatch) -> Result<(), StoreError> {
    if b.event_count == 0 || b.last_event_number < b.event_count as i64 - 1 || b.last_event_number == i64::MAX {
        return Err(StoreError::InvalidArgument(format!(
            "batch of {} events cannot end at event number {}",
            b.event_count, b.last_event_number
        )));
    }
    if b.data.len() > MAX_BATCH_BYTES {
        return Err(StoreError::InvalidArgument(format!("batch of {} bytes exceeds {MAX_BATCH_BYTES}", b.data.len())));
    }
    framing::check_batch(&b.data, b.event_count).map_err(|e| match e {
        FramingError::TooLarge { len } => StoreError::EventTooLarge { len, max: MAX_EVENT_SIZE },
        other => StoreError::InvalidArgument(other.to_string()),
    })?;
    Ok(())
}

type BoxStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send + 'static>>;

#[tonic::async_trait]
impl SegmentStoreApi for SegmentService {
    #[tracing::instrument(level = "debug", name = "store.create_segment", skip_all, fields(segment = %req.get_ref().segment))]
    async fn create_segment(
        &self,
        req: Request<pb::CreateSegmentRequest>,
    ) -> Result<Response<pb::CreateSegmentResponse>, Status> {
        self.access.require_superuser(&req, "create segments")?;
        let name = req.into_inner().segment;
        check_segment(&name)?;
        let created = self.store.container(&name).create(&name).await?;
        Ok(Response::new(pb::CreateSegmentResponse { created }))
    }

    async fn get_segment_info(
        &self,
        req: Request<pb::GetSegmentInfoRequest>,
    ) -> Result<Response<pb::SegmentInfo>, Status> {
        self.access.require_on_segment(&self.access.caller(&req)?, &req.get_ref().segment, Permission::Read).await?;
        let name = req.into_inner().segment;
        check_segment(&name)?;
        let info = self.store.container(&name).info(&name)?;
        Ok(Response::new(pb::SegmentInfo {
            segment: info.name,
            start_offset: info.start_offset,
            length: info.length,
            sealed: info.sealed,
            writers: info
                .writers
                .into_iter()
                .map(|(writer_id, last_event_number)| pb::WriterState { writer_id, last_event_number })
                .collect(),
            attributes: info.attributes.into_iter().map(|(key, value)| pb::Attribute { key, value }).collect(),
            tier1_bytes: info.tier1_bytes,
            tier2_bytes: info.tier2_bytes,
            event_count: info.event_count,
        }))
    }

    async fn get_offset_at_time(
        &self,
        req: Request<pb::GetOffsetAtTimeRequest>,
    ) -> Result<Response<pb::GetOffsetAtTimeResponse>, Status> {
        self.access.require_on_segment(&self.access.caller(&req)?, &req.get_ref().segment, Permission::Read).await?;
        let pb::GetOffsetAtTimeRequest { segment, time_ms } = req.into_inner();
        check_segment(&segment)?;
        let a = self.store.container(&segment).offset_at_time(&segment, time_ms).await?;
        Ok(Response::new(pb::GetOffsetAtTimeResponse {
            offset: a.offset,
            past_end: a.past_end,
            length: a.length,
            sealed: a.sealed,
            event_time_ms: a.event_time_ms,
            start_offset: a.start_offset,
        }))
    }

    type AppendStream = BoxStream<pb::AppendResponse>;

    async fn append(&self, req: Request<Streaming<pb::AppendRequest>>) -> Result<Response<Self::AppendStream>, Status> {
        let who = self.access.caller(&req)?;
        let mut inbound = req.into_inner();
        let setup = match inbound.message().await? {
            Some(pb::AppendRequest { kind: Some(pb::append_request::Kind::Setup(s)) }) => s,
            _ => {
                return Err(StoreError::InvalidArgument(
                    "the first message of an append stream must be `setup`".into(),
                )
                .into());
            }
        };
        check_segment(&setup.segment)?;
        // The whole append stream writes to the segment named in its setup.
        self.access.require_on_segment(&who, &setup.segment, Permission::Write).await?;
        if setup.writer_id.is_empty() || setup.writer_id.len() > MAX_WRITER_ID_LEN {
            return Err(StoreError::InvalidArgument(format!("writer id must be 1..={MAX_WRITER_ID_LEN} bytes")).into());
        }
        let container = self.store.container(&setup.segment).clone();
        let (last, length) = container.writer_state(&setup.segment, &setup.writer_id).await?;
        let (tx, rx) = mpsc::channel::<Result<pb::AppendResponse, Status>>(MAX_IN_FLIGHT + 1);
        let setup_ack =
            pb::append_response::Kind::SetupAck(pb::SetupAck { last_event_number: last, segment_length: length });
        let _ = tx.send(Ok(pb::AppendResponse { kind: Some(setup_ack) })).await;
        let load = self.load.clone();
        let open = container.metrics().stream_opened("append");
        let access = self.access.clone();
        // The grants this stream's permission was last checked against: a change of them (a
        // revocation) is checked again before the next batch.
        let mut checked = access.acl_version();
        tokio::spawn(async move {
            let _open = open;
            let (segment, writer) = (setup.segment, setup.writer_id);
            let mut pending = FuturesOrdered::new();
            // Bytes of the batches in `pending`.
            let mut pending_bytes = 0usize;
            let mut inbound_open = true;
            loop {
                let room = pending.len() < MAX_IN_FLIGHT && pending_bytes < MAX_IN_FLIGHT_BYTES;
                tokio::select! {
                    msg = inbound.message(), if inbound_open && room => {
                        let batch = match msg {
                            Ok(Some(pb::AppendRequest { kind: Some(pb::append_request::Kind::Batch(b)) })) => b,
                            Ok(Some(_)) => {
                                let _ = tx.send(Err(StoreError::InvalidArgument("only batches may follow setup".into()).into())).await;
                                return;
                            }
                            Ok(None) => { inbound_open = false; continue; }
                            // The client went away; batches already queued still complete.
                            Err(_) => return,
                        };
                        if let Err(e) = check_batch(&batch) {
                            let _ = tx.send(Err(e.into())).await;
                            return;
                        }
                        if access.acl_version() != checked {
                            checked = access.acl_version();
                            if let Err(e) = access.require_on_segment(&who, &segment, Permission::Write).await {
                                let _ = tx.send(Err(e)).await;
                                return;
                            }
                        }
                        let (len, events) = (batch.data.len(), batch.event_count);
                        match container.append(&segment, &writer, batch.last_event_number, batch.event_count, batch.data).await {
                            Ok(rx) => {
                                pending_bytes += len;
                                pending.push_back(async move { (rx.await, len, events) });
                            }
                            Err(e) => { let _ = tx.send(Err(e.into())).await; return; }
                        }
                    }
                    Some((done, len, events)) = pending.next(), if !pending.is_empty() => {
                        pending_bytes -= len;
                        let res = done.unwrap_or(Err(StoreError::ShuttingDown));
                        if res.is_ok() {
                            load.record(&segment, events as u64, len as u64);
                        }
                        let msg = res.map(|ack| pb::AppendResponse {
                            kind: Some(pb::append_response::Kind::Ack(pb::AppendAck {
                                last_event_number: ack.last_event_number,
                                segment_length: ack.segment_length,
                            })),
                        });
                        let failed = msg.is_err();
                        if tx.send(msg.map_err(Status::from)).await.is_err() || failed {
                            return;
                        }
                    }
                    else => return,
                }
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    type ReadStream = BoxStream<pb::ReadResponse>;

    async fn read(&self, req: Request<pb::ReadRequest>) -> Result<Response<Self::ReadStream>, Status> {
        self.access.require_on_segment(&self.access.caller(&req)?, &req.get_ref().segment, Permission::Read).await?;
        let req = req.into_inner();
        check_segment(&req.segment)?;
        let container = self.store.container(&req.segment).clone();
        // Responses stay below the message size limit (one event may still exceed `max` alone).
        let max = match req.max_bytes_per_message {
            0 => DEFAULT_READ_CHUNK,
            n => (n as usize).min(MAX_BATCH_BYTES / 2),
        };
        // Fail fast on a bad start (unknown segment, truncated offset) before streaming.
        let mut changes = container.subscribe();
        changes.borrow_and_update();
        let first = container.read_any(&req.segment, req.offset, max).await?;
        let (tx, rx) = mpsc::channel::<Result<pb::ReadResponse, Status>>(4);
        let open = container.metrics().stream_opened("read");
        tokio::spawn(async move {
            let _open = open;
            // The Tier-2 chunk this reader is in (see `Container::read_holding`).
            let mut held = None;
            let mut chunk = first;
            loop {
                let at_tail = chunk.data.is_empty();
                let next_offset = chunk.offset + chunk.data.len() as u64;
                let end = chunk.end_of_segment;
                // At the tail, stay quiet unless the caller is not following (it wants to know
                // it reached the end) or the segment ended.
                if !at_tail || !req.follow || end {
                    let msg = pb::ReadResponse {
                        offset: chunk.offset,
                        data: chunk.data,
                        end_of_segment: end,
                        segment_length: chunk.segment_length,
                    };
                    if tx.send(Ok(msg)).await.is_err() {
                        return;
                    }
                }
                if end || (at_tail && !req.follow) {
                    return;
                }
                if at_tail {
                    tokio::select! {
                        changed = changes.changed() => if changed.is_err() { return },
                        _ = tx.closed() => return,
                    }
                }
                changes.borrow_and_update();
                chunk = match container.read_holding(&req.segment, next_offset, max, &mut held).await {
                    Ok(c) => c,
                    Err(e) => {
                        let _ = tx.send(Err(e.into())).await;
                        return;
                    }
                };
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    #[tracing::instrument(level = "debug", name = "store.seal_segment", skip_all, fields(segment = %req.get_ref().segment))]
    async fn seal_segment(
        &self,
        req: Request<pb::SealSegmentRequest>,
    ) -> Result<Response<pb::SealSegmentResponse>, Status> {
        self.access.require_superuser(&req, "seal segments")?;
        let name = req.into_inner().segment;
        check_segment(&name)?;
        let length = self.store.container(&name).seal(&name).await?;
        Ok(Response::new(pb::SealSegmentResponse { length }))
    }

    async fn conditional_append(
        &self,
        req: Request<pb::ConditionalAppendRequest>,
    ) -> Result<Response<pb::ConditionalAppendResponse>, Status> {
        self.access.require_on_segment(&self.access.caller(&req)?, &req.get_ref().segment, Permission::Write).await?;
        let req = req.into_inner();
        check_segment(&req.segment)?;
        let batch = pb::AppendBatch {
            last_event_number: req.event_count as i64 - 1,
            event_count: req.event_count,
            data: req.data.clone(),
        };
        check_batch(&batch)?;
        let len = req.data.len() as u64;
        let ack = self
            .store
            .container(&req.segment)
            .conditional_append(&req.segment, req.expected_offset, req.event_count, req.data)
            .await?;
        self.load.record(&req.segment, req.event_count as u64, len);
        Ok(Response::new(pb::ConditionalAppendResponse { segment_length: ack.segment_length }))
    }

    #[tracing::instrument(level = "debug", name = "store.truncate_segment", skip_all, fields(segment = %req.get_ref().segment, offset = req.get_ref().offset))]
    async fn truncate_segment(
        &self,
        req: Request<pb::TruncateSegmentRequest>,
    ) -> Result<Response<pb::TruncateSegmentResponse>, Status> {
        self.access.require_superuser(&req, "truncate segments")?;
        let req = req.into_inner();
        check_segment(&req.segment)?;
        self.store.container(&req.segment).truncate(&req.segment, req.offset).await?;
        Ok(Response::new(pb::TruncateSegmentResponse {}))
    }

    #[tracing::instrument(level = "debug", name = "store.merge_segments", skip_all, fields(target = %req.get_ref().target, source = %req.get_ref().source))]
    async fn merge_segments(
        &self,
        req: Request<pb::MergeSegmentsRequest>,
    ) -> Result<Response<pb::MergeSegmentsResponse>, Status> {
        self.access.require_superuser(&req, "merge segments")?;
        let req = req.into_inner();
        check_segment(&req.target)?;
        check_segment(&req.source)?;
        let target = self.store.container(&req.target);
        if self.store.container(&req.source).id() != target.id() {
            return Err(StoreError::InvalidArgument(format!(
                "segments {} and {} live in different containers; only segments of one container can be merged",
                req.target, req.source
            ))
            .into());
        }
        let target_length = target.merge(&req.target, &req.source).await?;
        Ok(Response::new(pb::MergeSegmentsResponse { target_length }))
    }

    async fn update_attribute(
        &self,
        req: Request<pb::UpdateAttributeRequest>,
    ) -> Result<Response<pb::UpdateAttributeResponse>, Status> {
        self.access.require_on_segment(&self.access.caller(&req)?, &req.get_ref().segment, Permission::Write).await?;
        let req = req.into_inner();
        check_segment(&req.segment)?;
        if req.key.is_empty() || req.key.len() > 256 {
            return Err(StoreError::InvalidArgument("attribute key must be 1..=256 bytes".into()).into());
        }
        self.store.container(&req.segment).update_attribute(&req.segment, &req.key, req.expected, req.value).await?;
        Ok(Response::new(pb::UpdateAttributeResponse {}))
    }

    #[tracing::instrument(level = "debug", name = "store.delete_segment", skip_all, fields(segment = %req.get_ref().segment))]
    async fn delete_segment(
        &self,
        req: Request<pb::DeleteSegmentRequest>,
    ) -> Result<Response<pb::DeleteSegmentResponse>, Status> {
        self.access.require_superuser(&req, "delete segments")?;
        let name = req.into_inner().segment;
        check_segment(&name)?;
        self.store.container(&name).delete(&name).await?;
        Ok(Response::new(pb::DeleteSegmentResponse {}))
    }
}
