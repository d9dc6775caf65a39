//! What the segment stores hold of a stream, for the admin API (and so the web console):
//! `GET …/streams/{stream}/stats` (each segment's head, length, event count and bytes per tier)
//! and `GET …/streams/{stream}/events` (a preview of the latest events of each active segment).
//!
//! The rest of the admin API asks only the controller; these two ask the segment stores too,
//! as `nadi stream stats` and `nadi read` do, with the HTTP caller's own `authorization` header
//! (so a store checks the caller's permission on the stream, exactly as for a client). Nothing
//! here runs unless a request comes: no task, no cache of figures.
//!
//! Where the tail preview starts: segments hold framed events and only event boundaries may be
//! read from, so the preview cannot start "N events before the end". It asks the store for the
//! first event appended after a time (`GetOffsetAtTime`, always a boundary), going back
//! 1 s, 10 s, 1 min, 10 min, 1 h, 1 day (else from the segment's creation) until the bytes
//! after it hold the wanted number of events (by the segment's mean event size), then, while
//! that window holds much more (over 4 times the wanted bytes and over 256 KiB), halves the
//! time step (at most 24 probes in all). It then reads at most [`READ_BYTES`] from there and
//! keeps the last `limit` events. So a preview usually reads little more than it shows; the
//! store's time index has one time per commit group (up to a few MiB), which bounds how
//! close to the tail a boundary can be found.
//!
//! ```text
//!   start_offset           offset at (now - window)              length
//!        |...........................|[ev][ev][ev][ev][ev][ev]...|
//!                                    |<-- read, keep last N --->|
//! ```

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use axum::Json;
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query};
use base64::Engine as _;
use bytes::Bytes;
use futures::StreamExt as _;
use nadi_proto::ErrorCode;
use nadi_proto::SegmentId;
use nadi_proto::controller::v1 as pb;
use nadi_proto::segment::v1 as spb;
use nadi_proto::segment::v1::segment_store_client::SegmentStoreClient;
use nadi_security::channel::{Channel, ChannelError, ClientSecurity};
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::{ApiError, ApiResult, AppState, Caller, ErrorBody};

/// The most bytes one tail preview reads from one segment.
pub const READ_BYTES: u64 = 4 * 1024 * 1024;
/// Events per segment a preview returns by default, and at most.
const DEFAULT_LIMIT: u32 = 20;
const MAX_LIMIT: u32 = 200;
/// Payload bytes of one event a preview returns by default, and at most.
const DEFAULT_PREVIEW: u32 = 256;
const MAX_PREVIEW: u32 = 4096;
/// How far back the preview looks for a boundary, in milliseconds, before it halves the
/// time step; and how many `GetOffsetAtTime` probes one segment's preview makes at most.
const WINDOWS_MS: &[u64] = &[1_000, 10_000, 60_000, 600_000, 3_600_000, 86_400_000];
const MAX_PROBES: u32 = 24;

/// One segment as its segment store reports it.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct SegmentStatsView {
    /// Packed id `(epoch << 32) | number`.
    pub id: u64,
    /// The segment's number within the stream.
    pub number: u32,
    /// The epoch that created it.
    pub epoch: u32,
    /// Qualified name, as the segment store knows it.
    pub name: String,
    /// Its slice of the routing-key space, `[low, high)`.
    pub key_range: [f64; 2],
    /// `open` (takes appends) or `sealed`, as the store says.
    pub state: String,
    /// When the controller created it, milliseconds since the Unix epoch.
    pub created_at_ms: u64,
    /// First readable offset (moves forward with truncation).
    pub head_offset: u64,
    /// Durable length: one past the last acknowledged byte (framed events, 8 bytes of header
    /// each).
    pub length: u64,
    /// Events ever appended (truncation does not lower it); two samples give a rate.
    pub event_count: u64,
    /// Of its readable bytes, how many are in the store's Tier-1 log and how many in Tier-2.
    pub tier1_bytes: u64,
    pub tier2_bytes: u64,
    /// The segment store that answered.
    pub endpoint: String,
}

/// Sums over a stream's segments.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
pub struct StreamTotalsView {
    pub segments: usize,
    pub open_segments: usize,
    /// Sum of the lengths: two samples give the stream's append rate in bytes.
    pub length: u64,
    /// Readable bytes (`length - head_offset`, summed).
    pub size_bytes: u64,
    pub event_count: u64,
    pub tier1_bytes: u64,
    pub tier2_bytes: u64,
}

/// One sample of a stream's segments, as `nadi stream stats --json` shows them without the
/// rates: a rate is the difference of two samples over the time between their `sampled_at_ms`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct StreamStatsView {
    pub scope: String,
    pub stream: String,
    /// `active` or `sealed`.
    pub state: String,
    /// The current epoch.
    pub epoch: u32,
    /// When the stores were asked, milliseconds since the Unix epoch.
    pub sampled_at_ms: u64,
    /// Every segment the stream still has (truncated-away segments are gone), by id.
    pub segments: Vec<SegmentStatsView>,
    pub totals: StreamTotalsView,
}

/// The preview of one event.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct EventPreviewView {
    /// The segment holding it (packed id).
    pub segment_id: u64,
    /// Offset of its frame in the segment (a position a reader could start from).
    pub offset: u64,
    /// Its payload's size in bytes.
    pub size: u64,
    /// The first `preview` bytes of the payload, base64 (standard alphabet, padded): any bytes.
    pub preview_base64: String,
    /// The same bytes as text when they are UTF-8 (a character cut at the end of the preview
    /// is left out), else `null`. A JSON string: show it as text, never as markup.
    pub preview_utf8: Option<String>,
    /// The payload is longer than the preview.
    pub truncated: bool,
}

/// The latest events of a stream's active segments.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct StreamEventsView {
    pub scope: String,
    pub stream: String,
    /// When the stores were asked, milliseconds since the Unix epoch.
    pub sampled_at_ms: u64,
    /// Per active segment (by key range), its latest events, oldest first.
    pub events: Vec<EventPreviewView>,
}

/// How much `GET …/events` returns.
#[derive(Debug, Clone, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct EventsQuery {
    /// Events per active segment, 1..=200 (default 20).
    limit: Option<u32>,
    /// Payload bytes shown per event, 0..=4096 (default 256).
    preview: Option<u32>,
}

fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

/// Channels to the segment stores, one per endpoint, made on first use (lazily connected)
/// with this node's TLS trust; each request replaces the node's token with its caller's.
/// Cheap to clone (every admin request clones the router state).
#[derive(Debug, Clone, Default)]
pub struct StoreChannels {
    security: Arc<ClientSecurity>,
    channels: Arc<Mutex<HashMap<String, Channel>>>,
}

impl StoreChannels {
    pub fn new(security: ClientSecurity) -> StoreChannels {
        StoreChannels { security: Arc::new(security), channels: Arc::default() }
    }

    fn channel(&self, endpoint: &str) -> Result<Channel, ChannelError> {
        let mut channels = self.channels.lock();
        if let Some(c) = channels.get(endpoint) {
            return Ok(c.clone());
        }
        let c = self.security.channel(endpoint)?;
        channels.insert(endpoint.to_owned(), c.clone());
        Ok(c)
    }
}

/// A client of the segment store at `endpoint`, with the caller's `authorization`.
fn store(s: &AppState, endpoint: &str) -> ApiResult<SegmentStoreClient<Channel>> {
    let channel = s.stores.channel(endpoint).map_err(|e| ApiError::new(ErrorCode::Unavailable, e.to_string()))?;
    Ok(SegmentStoreClient::new(channel.with_authorization(s.authorization.clone()))
        .max_decoding_message_size(16 * 1024 * 1024))
}

/// Segments the stores answered about (a `NOT_FOUND_SEGMENT` is a segment truncated away or
/// merged: left out).
fn not_found_segment(status: &tonic::Status) -> bool {
    nadi_proto::errors::from_status(status).0 == ErrorCode::SegmentNotFound
}

/// Each segment of a stream as its segment store reports it: head, length, events, bytes in
/// Tier-1 and Tier-2. Take two samples for rates.
#[utoipa::path(get, path = "/v1/scopes/{scope}/streams/{stream}/stats", params(
    ("scope" = String, Path, description = "Scope name"), ("stream" = String, Path, description = "Stream name")), responses(
    (status = 200, body = StreamStatsView), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody), (status = 503, body = ErrorBody)))]
pub async fn stream_stats(
    Caller(s): Caller,
    path: Result<Path<(String, String)>, PathRejection>,
) -> ApiResult<Json<StreamStatsView>> {
    let Path((scope, stream)) = path?;
    let info = super::info(&s, &scope, &stream).await?;
    let history = s
        .grpc()
        .get_stream_history(pb::GetStreamHistoryRequest { scope: scope.clone(), stream: stream.clone() })
        .await?
        .into_inner();
    // Each segment once, with its state now (every epoch lists its segments' current state).
    let mut segments: BTreeMap<u64, pb::Segment> = BTreeMap::new();
    for e in history.epochs {
        for seg in e.segments {
            segments.insert(seg.id, seg);
        }
    }
    let cluster = s.grpc().get_cluster_info(pb::GetClusterInfoRequest {}).await?.into_inner();
    let count = cluster.containers.len() as u32;
    if count == 0 {
        return Err(ApiError::new(ErrorCode::Unavailable, "no segment store has registered yet"));
    }
    let sampled_at_ms = now_ms();
    let asks = segments.into_values().map(|seg| {
        let container = nadi_proto::names::container_of(&seg.qualified_name, count);
        let endpoint = cluster
            .containers
            .iter()
            .find(|a| a.container == container && !a.endpoint.is_empty())
            .map(|a| a.endpoint.clone());
        let s = &s;
        async move {
            let Some(endpoint) = endpoint else {
                return Err(ApiError::new(
                    ErrorCode::Unavailable,
                    format!("no segment store serves segment {} now (container {container})", seg.qualified_name),
                ));
            };
            let req = spb::GetSegmentInfoRequest { segment: seg.qualified_name.clone() };
            match store(s, &endpoint)?.get_segment_info(req).await {
                Ok(i) => Ok(Some(segment_stats(&seg, &i.into_inner(), endpoint))),
                Err(status) if not_found_segment(&status) => Ok(None),
                Err(status) => Err(status.into()),
            }
        }
    });
    let mut out = Vec::new();
    for r in futures::future::join_all(asks).await {
        if let Some(seg) = r? {
            out.push(seg);
        }
    }
    let totals = StreamTotalsView {
        segments: out.len(),
        open_segments: out.iter().filter(|s| s.state == "open").count(),
        length: out.iter().map(|s| s.length).sum(),
        size_bytes: out.iter().map(|s| s.length.saturating_sub(s.head_offset)).sum(),
        event_count: out.iter().map(|s| s.event_count).sum(),
        tier1_bytes: out.iter().map(|s| s.tier1_bytes).sum(),
        tier2_bytes: out.iter().map(|s| s.tier2_bytes).sum(),
    };
    Ok(Json(StreamStatsView {
        scope,
        stream,
        state: nadi_proto::views::state_name(info.state).to_owned(),
        epoch: info.epoch,
        sampled_at_ms,
        segments: out,
        totals,
    }))
}

fn segment_stats(seg: &pb::Segment, info: &spb::SegmentInfo, endpoint: String) -> SegmentStatsView {
    let id = SegmentId::from_packed(seg.id);
    SegmentStatsView {
        id: seg.id,
        number: id.number(),
        epoch: id.epoch(),
        name: seg.qualified_name.clone(),
        key_range: [seg.key_low, seg.key_high],
        state: if info.sealed { "sealed" } else { "open" }.to_owned(),
        created_at_ms: seg.created_at_ms,
        head_offset: info.start_offset,
        length: info.length,
        event_count: info.event_count,
        tier1_bytes: info.tier1_bytes,
        tier2_bytes: info.tier2_bytes,
        endpoint,
    }
}

/// A preview of the latest events of each active segment of a stream: offsets, sizes and the
/// first bytes of each payload (base64, and as text when UTF-8). Reads at most 4 MiB per
/// segment; with more than that appended in the last second it shows events of the last
/// second rather than the very latest.
#[utoipa::path(get, path = "/v1/scopes/{scope}/streams/{stream}/events", params(
    ("scope" = String, Path, description = "Scope name"), ("stream" = String, Path, description = "Stream name"), EventsQuery), responses(
    (status = 200, body = StreamEventsView), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody), (status = 503, body = ErrorBody)))]
pub async fn stream_events(
    Caller(s): Caller,
    path: Result<Path<(String, String)>, PathRejection>,
    query: Result<Query<EventsQuery>, QueryRejection>,
) -> ApiResult<Json<StreamEventsView>> {
    let Path((scope, stream)) = path?;
    let Query(q) = query.map_err(|e| ApiError::new(ErrorCode::InvalidArgument, e.body_text()))?;
    let limit = q.limit.unwrap_or(DEFAULT_LIMIT);
    let preview = q.preview.unwrap_or(DEFAULT_PREVIEW);
    if !(1..=MAX_LIMIT).contains(&limit) || preview > MAX_PREVIEW {
        return Err(ApiError::new(
            ErrorCode::InvalidArgument,
            format!("limit must be 1..={MAX_LIMIT} and preview 0..={MAX_PREVIEW}"),
        ));
    }
    let active = s
        .grpc()
        .get_active_segments(pb::GetActiveSegmentsRequest { scope: scope.clone(), stream: stream.clone() })
        .await?
        .into_inner();
    let sampled_at_ms = now_ms();
    let reads = active.segments.iter().filter_map(|l| l.segment.as_ref().map(|seg| (seg, &l.endpoint))).map(
        |(seg, endpoint)| {
            let s = &s;
            async move {
                let client = store(s, endpoint)?;
                match tail(client, seg, limit as usize, preview as usize, sampled_at_ms).await {
                    Ok(events) => Ok(events),
                    Err(status) if not_found_segment(&status) => Ok(Vec::new()),
                    Err(status) => Err(ApiError::from(status)),
                }
            }
        },
    );
    let mut events = Vec::new();
    for r in futures::future::join_all(reads).await {
        events.extend(r?);
    }
    Ok(Json(StreamEventsView { scope, stream, sampled_at_ms, events }))
}

/// The last `limit` events of one segment (see the module header for where it starts).
async fn tail(
    mut client: SegmentStoreClient<Channel>,
    seg: &pb::Segment,
    limit: usize,
    preview: usize,
    now: u64,
) -> Result<Vec<EventPreviewView>, tonic::Status> {
    let name = seg.qualified_name.clone();
    let info = client.get_segment_info(spb::GetSegmentInfoRequest { segment: name.clone() }).await?.into_inner();
    let (start, length) = (info.start_offset, info.length);
    if length <= start {
        return Ok(Vec::new());
    }
    let mean = length.checked_div(info.event_count).map_or(1024, |m| m.max(9));
    let want = (mean * limit as u64).min(READ_BYTES);
    let from = if length - start <= want {
        start
    } else {
        boundary_before_tail(&mut client, &name, (start, seg.created_at_ms), length, want, now).await
    };
    let req = spb::ReadRequest { segment: name, offset: from, follow: false, max_bytes_per_message: 256 * 1024 };
    let mut responses = client.read(req).await?.into_inner();
    let mut kept: VecDeque<EventPreviewView> = VecDeque::with_capacity(limit + 1);
    let mut read = 0u64;
    while let Some(r) = responses.next().await {
        let r = r?;
        read += r.data.len() as u64;
        for ev in nadi_proto::framing::events(&r.data) {
            let (at, payload) = ev.map_err(|e| tonic::Status::internal(format!("segment framing: {e}")))?;
            kept.push_back(event_preview(seg.id, r.offset + at as u64, &payload, preview));
            if kept.len() > limit {
                kept.pop_front();
            }
        }
        if read >= READ_BYTES || r.end_of_segment {
            break;
        }
    }
    Ok(kept.into())
}

/// An event boundary with at least `want` bytes after it, and not many more than that where
/// a few `GetOffsetAtTime` probes find one (see the module header). `start` (the segment's
/// head, created at `created_ms`) is the answer of last resort.
async fn boundary_before_tail(
    client: &mut SegmentStoreClient<Channel>,
    name: &str,
    (start, created_ms): (u64, u64),
    length: u64,
    want: u64,
    now: u64,
) -> u64 {
    let mut at = async |time_ms: u64| -> Option<u64> {
        let req = spb::GetOffsetAtTimeRequest { segment: name.to_owned(), time_ms };
        client.get_offset_at_time(req).await.ok().map(|r| r.into_inner().offset.clamp(start, length))
    };
    // What is read after the boundary: enough for `want`, a little more is fine.
    let enough = (want * 4).clamp(256 * 1024, READ_BYTES);
    // (time, offset): `near` has fewer than `want` bytes after it, `far` at least `want`.
    let mut near = (now, length);
    let mut far = (created_ms.min(now), start);
    let mut probes = 0;
    for &back in WINDOWS_MS {
        let time = now.saturating_sub(back);
        if time <= far.0 {
            break;
        }
        probes += 1;
        match at(time).await {
            Some(offset) if length - offset >= want => {
                far = (time, offset);
                break;
            }
            Some(offset) => near = (time, offset),
            None => {}
        }
    }
    while length - far.1 > enough && near.0 - far.0 > 1 && probes < MAX_PROBES {
        probes += 1;
        let mid = far.0 + (near.0 - far.0) / 2;
        match at(mid).await {
            Some(offset) if length - offset >= want => far = (mid, offset),
            Some(offset) => near = (mid, offset),
            None => break,
        }
    }
    far.1
}

/// The preview of one event: its first `preview` bytes, base64 and (when UTF-8) text.
fn event_preview(segment_id: u64, offset: u64, payload: &Bytes, preview: usize) -> EventPreviewView {
    let shown = &payload[..payload.len().min(preview)];
    let truncated = shown.len() < payload.len();
    let preview_utf8 = match std::str::from_utf8(shown) {
        Ok(text) => Some(text.to_owned()),
        // Only a character cut by the preview's end: the text before it.
        Err(e) if truncated && e.error_len().is_none() => {
            Some(String::from_utf8_lossy(&shown[..e.valid_up_to()]).into_owned())
        }
        Err(_) => None,
    };
    EventPreviewView {
        segment_id,
        offset,
        size: payload.len() as u64,
        preview_base64: base64::engine::general_purpose::STANDARD.encode(shown),
        preview_utf8,
        truncated,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn previews_keep_any_bytes_and_text_only_when_utf8() {
        let p = event_preview(7, 16, &Bytes::from_static(b"<script>alert(1)</script>"), 256);
        assert_eq!(p.preview_utf8.as_deref(), Some("<script>alert(1)</script>"));
        assert!(!p.truncated);
        let p = event_preview(7, 16, &Bytes::from_static(&[0xff, 0xfe, b'a']), 256);
        assert_eq!(p.preview_utf8, None);
        assert_eq!(p.preview_base64, "//5h");
        // "é" is two bytes; a preview of 2 bytes cuts it: the text keeps what is whole.
        let p = event_preview(7, 16, &Bytes::from("aé"), 2);
        assert_eq!((p.preview_utf8.as_deref(), p.truncated, p.size), (Some("a"), true, 3));
    }
}
