//! A simple stream reader: one tail-following read stream per active segment, merged.
//!
//! Events of one segment arrive in segment order, and a key always maps to one segment of an
//! epoch, so per-key order holds. Reader groups, checkpoints and following scaled topologies
//! come with the client issue; this reader ends a segment when it is sealed and read to its end.

use std::time::Duration;

use bytes::Bytes;
use nadi_proto::framing;
use nadi_proto::segment::v1 as pb;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_stream::StreamExt;

use crate::client::NadiClient;
use crate::error::{ClientError, ErrorKind};

/// One event as read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventRead {
    /// Qualified name of the segment it came from.
    pub segment: String,
    /// Offset of the event in its segment (its position).
    pub offset: u64,
    pub payload: Bytes,
}

/// Reads all active segments of a stream.
#[derive(Debug)]
pub struct StreamReader {
    rx: mpsc::Receiver<Result<EventRead, ClientError>>,
    tasks: Vec<JoinHandle<()>>,
}

impl Drop for StreamReader {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

impl StreamReader {
    /// Opens a reader over `scope/stream`, from the start of every segment or from its tail.
    pub async fn new(
        client: &NadiClient,
        scope: &str,
        stream: &str,
        from_start: bool,
    ) -> Result<StreamReader, ClientError> {
        let active = client.active_segments(scope, stream).await?;
        let (tx, rx) = mpsc::channel(1024);
        let mut tasks = Vec::new();
        for loc in active.segments {
            let seg =
                loc.segment.ok_or_else(|| ClientError::new(ErrorKind::Internal, "segment location without segment"))?;
            let mut store = client.segment_store(&loc.endpoint)?;
            let info = store
                .get_segment_info(pb::GetSegmentInfoRequest { segment: seg.qualified_name.clone() })
                .await?
                .into_inner();
            let offset = if from_start { info.start_offset } else { info.length };
            tasks.push(tokio::spawn(read_segment(
                client.clone(),
                loc.endpoint,
                seg.qualified_name,
                offset,
                tx.clone(),
            )));
        }
        Ok(StreamReader { rx, tasks })
    }

    /// The next event, `None` once every segment is sealed and read to its end.
    pub async fn next(&mut self) -> Option<Result<EventRead, ClientError>> {
        self.rx.recv().await
    }
}

async fn read_segment(
    client: NadiClient,
    endpoint: String,
    segment: String,
    mut offset: u64,
    tx: mpsc::Sender<Result<EventRead, ClientError>>,
) {
    let mut attempts = 0u32;
    loop {
        let result: Result<bool, ClientError> = async {
            let mut store = client.segment_store(&endpoint)?;
            let req = pb::ReadRequest { segment: segment.clone(), offset, follow: true, max_bytes_per_message: 0 };
            let mut responses = store.read(req).await?.into_inner();
            while let Some(resp) = responses.next().await {
                let resp = resp?;
                attempts = 0;
                for ev in framing::events(&resp.data) {
                    let (at, payload) =
                        ev.map_err(|e| ClientError::new(ErrorKind::Internal, format!("{segment}: {e}")))?;
                    let ev = EventRead { segment: segment.clone(), offset: resp.offset + at as u64, payload };
                    if tx.send(Ok(ev)).await.is_err() {
                        return Ok(true);
                    }
                }
                offset = resp.offset + resp.data.len() as u64;
                if resp.end_of_segment {
                    return Ok(true);
                }
            }
            Err(ClientError::new(ErrorKind::Unavailable, "read stream ended"))
        }
        .await;
        match result {
            Ok(_) => return,
            Err(e) if e.is_retryable() && attempts < 10 => {
                attempts += 1;
                tokio::time::sleep(Duration::from_millis(50 * (1 << attempts.min(6)))).await;
            }
            Err(e) => {
                let _ = tx.send(Err(e)).await;
                return;
            }
        }
    }
}
