//! Reading one segment: fetch (the store's `Read` stream) → decode (framed events) → position
//! (the offset after the last event returned) → retry (reconnect from that position).
//!
//! Owns the per-segment read protocol and its retry policy, in one place. Calls the segment
//! store through [`NadiClient::segment_store`] and asks the controller where a segment lives
//! now ([`NadiClient::segment_endpoint`]) after a lost connection. Called by the plain reader
//! (`reader.rs`), the reader-group member (`reader_group.rs`), and the `nadi` CLI (`bench
//! --catch-up`), each of which only decides what to do with the events.
//!
//! ```text
//!   offset ──► Read(segment, offset, follow) ──► chunk ──► decode ──► events [offset, next_offset)
//!     ▲                                                                    │
//!     └──────────── position = next_offset of the last event returned ◄────┘
//!   lost connection: back off (capped), re-resolve the store, read again from `position`
//! ```
//!
//! Invariants: events come out in segment order, each once (a retry restarts exactly after the
//! last event returned); a chunk that does not decode is `Internal` and never retried.

use std::time::Duration;

use bytes::Bytes;
use nadi_proto::framing;
use nadi_proto::segment::v1 as pb;
use tokio_stream::StreamExt;

use crate::client::NadiClient;
use crate::error::{ClientError, ErrorKind};

/// Failed attempts in a row (no data in between) before a segment read fails for good.
pub(crate) const MAX_READ_ATTEMPTS: u32 = 20;

/// The wait before retry `attempt` (1, 2, …): 100 ms doubling up to [`MAX_READ_BACKOFF`].
pub(crate) fn read_backoff(attempt: u32) -> Duration {
    Duration::from_millis(50u64 << attempt.min(6)).min(MAX_READ_BACKOFF)
}

/// The longest wait between two attempts. A reader that follows a tail must notice a
/// restarted store within about this long: tests and the CLI give up after a few idle seconds
/// (`--idle-timeout`), so an uncapped doubling (3.2 s, 6.4 s, …) read as "no more events".
pub(crate) const MAX_READ_BACKOFF: Duration = Duration::from_millis(500);

/// One event of a segment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SegmentEvent {
    /// Where its frame starts in the segment.
    pub offset: u64,
    /// Where the next event starts: the reader's position once this one is handed out.
    pub next_offset: u64,
    /// The event as written.
    pub payload: Bytes,
}

/// What one [`SegmentReader::next_chunk`] returns: the events of one store response, in order.
#[derive(Debug, Default)]
pub struct SegmentChunk {
    /// Decoded events.
    pub events: Vec<SegmentEvent>,
    /// Bytes of the response (framing included).
    pub bytes: u64,
}

/// Reads one segment from an offset, in order, retrying lost connections from the last
/// position returned. Pull-based: callers loop on [`next_chunk`](Self::next_chunk) and
/// decide where the events go.
///
/// # Example
///
/// ```no_run
/// use nadi_client::{ClientError, NadiClient, SegmentReader};
///
/// async fn example(client: &NadiClient, endpoint: &str, segment: &str) -> Result<(), ClientError> {
///     // Everything the segment holds now, without waiting for more.
///     let info = client.segment_info(endpoint, segment).await?;
///     let mut r = SegmentReader::new(client, endpoint, segment, info.start_offset).up_to(info.length);
///     while let Some(chunk) = r.next_chunk().await? {
///         println!("{} events", chunk.events.len());
///     }
///     Ok(())
/// }
/// ```
#[derive(Debug)]
pub struct SegmentReader {
    client: NadiClient,
    endpoint: String,
    segment: String,
    /// Offset after the last event returned: where a new read starts.
    position: u64,
    /// Stop at this offset and do not follow the tail (`up_to`); `None`: follow the tail
    /// until the segment is sealed and read to its end.
    end: Option<u64>,
    max_bytes_per_message: u32,
    responses: Option<tonic::Streaming<pb::ReadResponse>>,
    /// The segment's end was reached: nothing more to read.
    done: bool,
    /// Failed attempts since the last data.
    attempts: u32,
    /// The open read stream has not brought anything yet.
    fresh: bool,
}

impl SegmentReader {
    /// A reader of `segment` (served by `endpoint`) from `offset`, following its tail until
    /// the segment is sealed and read to its end.
    pub fn new(client: &NadiClient, endpoint: &str, segment: &str, offset: u64) -> SegmentReader {
        SegmentReader {
            client: client.clone(),
            endpoint: endpoint.to_owned(),
            segment: segment.to_owned(),
            position: offset,
            end: None,
            max_bytes_per_message: 0,
            responses: None,
            done: false,
            attempts: 0,
            fresh: false,
        }
    }

    /// Reads only up to `end` (for example the segment's length now) and does not wait for
    /// more: a catch-up read of what is there.
    pub fn up_to(mut self, end: u64) -> SegmentReader {
        self.end = Some(end);
        self.done = self.position >= end;
        self
    }

    /// Asks the store for responses of at most this many bytes (0: the store's default).
    pub fn max_bytes_per_message(mut self, max: u32) -> SegmentReader {
        self.max_bytes_per_message = max;
        self
    }

    /// The segment's qualified name.
    pub fn segment(&self) -> &str {
        &self.segment
    }

    /// The offset after the last event returned.
    pub fn position(&self) -> u64 {
        self.position
    }

    /// The next events, in segment order; `None` once the end is reached (the sealed
    /// segment's end, or the `up_to` offset). Waits at the tail of an open segment. A lost
    /// connection is retried (backing off up to 500 ms) from the position, and asks the
    /// controller whether the segment moved to another store.
    ///
    /// Cancel-safe only between chunks: a chunk being fetched when the future is dropped is
    /// fetched again by the next call.
    ///
    /// # Errors
    ///
    /// The last error after 20 failed attempts in a row (`Unavailable`, …); at once for an
    /// error that is not retryable, e.g. `Internal` for data that does not decode or
    /// `NotFound` for a deleted segment.
    pub async fn next_chunk(&mut self) -> Result<Option<SegmentChunk>, ClientError> {
        loop {
            if self.done {
                return Ok(None);
            }
            match self.try_next().await {
                Ok(chunk) => return Ok(chunk),
                Err(e) if e.is_retryable() && self.attempts < MAX_READ_ATTEMPTS => {
                    self.responses = None;
                    self.attempts += 1;
                    tracing::debug!(segment = %self.segment, error = %e, attempt = self.attempts, "segment read lost; retrying");
                    tokio::time::sleep(read_backoff(self.attempts)).await;
                    // The store may have restarted at another address.
                    if let Ok(now) = self.client.segment_endpoint(&self.segment).await {
                        self.endpoint = now;
                    }
                }
                Err(e) => {
                    self.responses = None;
                    self.done = true;
                    return Err(e);
                }
            }
        }
    }

    /// One attempt: opens the read stream if needed and decodes its next response.
    async fn try_next(&mut self) -> Result<Option<SegmentChunk>, ClientError> {
        loop {
            let responses = match &mut self.responses {
                Some(r) => r,
                None => {
                    self.fresh = true;
                    let mut store = self.client.segment_store(&self.endpoint)?;
                    let req = pb::ReadRequest {
                        segment: self.segment.clone(),
                        offset: self.position,
                        follow: self.end.is_none(),
                        max_bytes_per_message: self.max_bytes_per_message,
                    };
                    self.responses.insert(store.read(req).await?.into_inner())
                }
            };
            let Some(resp) = responses.next().await else {
                self.responses = None;
                if self.end.is_some() {
                    // Not following: the store ends a read at what it has. Read on from the
                    // position, unless this read brought nothing.
                    if std::mem::take(&mut self.fresh) {
                        self.done = true;
                        return Ok(None);
                    }
                    continue;
                }
                return Err(ClientError::new(ErrorKind::Unavailable, "read stream ended"));
            };
            let resp = resp?;
            self.attempts = 0;
            self.fresh = false;
            let mut chunk = SegmentChunk { events: Vec::new(), bytes: resp.data.len() as u64 };
            for ev in framing::events(&resp.data) {
                let (at, payload) =
                    ev.map_err(|e| ClientError::new(ErrorKind::Internal, format!("{}: {e}", self.segment)))?;
                let offset = resp.offset + at as u64;
                let next_offset = offset + framing::framed_len(payload.len()) as u64;
                chunk.events.push(SegmentEvent { offset, next_offset, payload });
            }
            self.position = resp.offset + resp.data.len() as u64;
            let reached = self.end.is_some_and(|end| self.position >= end);
            if resp.end_of_segment || reached || (self.end.is_some() && resp.data.is_empty()) {
                self.done = true;
                self.responses = None;
            }
            if chunk.events.is_empty() && !self.done {
                continue; // an empty response at the tail: keep waiting
            }
            return Ok(Some(chunk));
        }
    }
}
