//! [`StreamManager`]: administration of scopes and streams from an application.

use nadi_proto::controller::v1 as pb;

use crate::client::{NadiClient, StreamSpec};
use crate::error::ClientError;
use crate::reader_group::StreamCut;

/// Scopes, streams, their policies, seal, delete, stream cuts and truncation.
///
/// A thin, typed layer over the controller API of a [`NadiClient`] (it fails over between the
/// controller URLs the same way).
///
/// # Example
/// ```no_run
/// # async fn example() -> Result<(), nadi_client::ClientError> {
/// use nadi_client::{NadiClient, StreamManager, StreamSpec};
/// let client = NadiClient::new(&["http://127.0.0.1:9090".to_owned()])?;
/// let manager = StreamManager::new(&client);
/// manager.create_scope("demo").await?;
/// manager.create_stream("demo", "orders", StreamSpec::fixed(4)).await?;
/// // ... later: drop everything before the current tail.
/// let tail = manager.tail_cut("demo", "orders").await?;
/// let deleted = manager.truncate("demo", "orders", &tail).await?;
/// println!("truncated; {deleted} old segments deleted");
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct StreamManager {
    client: NadiClient,
}

impl StreamManager {
    /// A manager using `client`'s controller connection.
    pub fn new(client: &NadiClient) -> StreamManager {
        StreamManager { client: client.clone() }
    }

    /// Creates a scope. `AlreadyExists` if it exists.
    pub async fn create_scope(&self, scope: &str) -> Result<(), ClientError> {
        self.client.create_scope(scope).await
    }

    /// Deletes an empty scope (`Conflict` while it holds streams).
    pub async fn delete_scope(&self, scope: &str) -> Result<(), ClientError> {
        self.client.delete_scope(scope).await
    }

    /// All scopes, sorted.
    pub async fn list_scopes(&self) -> Result<Vec<String>, ClientError> {
        self.client.list_scopes().await
    }

    /// Creates a stream with its segments and policies.
    pub async fn create_stream(
        &self,
        scope: &str,
        stream: &str,
        spec: StreamSpec,
    ) -> Result<pb::StreamInfo, ClientError> {
        self.client.create_stream(scope, stream, spec).await
    }

    /// Replaces the given parts of a stream's policies (scaling, retention).
    pub async fn update_stream(
        &self,
        scope: &str,
        stream: &str,
        config: pb::StreamConfig,
    ) -> Result<pb::StreamInfo, ClientError> {
        self.client.update_stream(scope, stream, config).await
    }

    /// The streams of a scope, sorted.
    pub async fn list_streams(&self, scope: &str) -> Result<Vec<String>, ClientError> {
        self.client.list_streams(scope).await
    }

    /// A stream's configuration, state, epoch and active segments.
    pub async fn stream_info(&self, scope: &str, stream: &str) -> Result<pb::StreamInfo, ClientError> {
        self.client.stream_info(scope, stream).await
    }

    /// Seals a stream: no more writes; readers reach its end. Idempotent.
    pub async fn seal_stream(&self, scope: &str, stream: &str) -> Result<(), ClientError> {
        self.client.seal_stream(scope, stream).await
    }

    /// Deletes a sealed stream and its data (`Conflict` if it is not sealed).
    pub async fn delete_stream(&self, scope: &str, stream: &str) -> Result<(), ClientError> {
        self.client.delete_stream(scope, stream).await
    }

    /// The stream cut at the head: every head segment at its start offset.
    pub async fn head_cut(&self, scope: &str, stream: &str) -> Result<StreamCut, ClientError> {
        self.cut(scope, stream, false).await
    }

    /// The stream cut at the tail: every active segment at its current length. Reading from
    /// it gives only events written afterwards; truncating at it drops everything written so
    /// far.
    pub async fn tail_cut(&self, scope: &str, stream: &str) -> Result<StreamCut, ClientError> {
        self.cut(scope, stream, true).await
    }

    /// The stream cut at `time_ms` (milliseconds since the Unix epoch): reading from it gives
    /// the events appended at or after that time. See [`NadiClient::stream_cut_at`].
    pub async fn cut_at(&self, scope: &str, stream: &str, time_ms: u64) -> Result<StreamCut, ClientError> {
        Ok(StreamCut::of_stream(stream, &self.client.stream_cut_at(scope, stream, time_ms).await?))
    }

    async fn cut(&self, scope: &str, stream: &str, tail: bool) -> Result<StreamCut, ClientError> {
        Ok(StreamCut::of_stream(stream, &self.client.stream_cut(scope, stream, tail).await?))
    }

    /// Truncates the stream at `cut` (its positions for `stream`; other streams' are ignored):
    /// segments wholly before the cut are deleted, the cut's segments are truncated at their
    /// offsets, and the cut becomes the head. Returns how many segments were deleted. A cut
    /// before the current head, or whose segments do not tile the key space, is refused with
    /// `Invalid` and changes nothing.
    pub async fn truncate(&self, scope: &str, stream: &str, cut: &StreamCut) -> Result<u32, ClientError> {
        let positions: Vec<pb::SegmentOffset> = cut
            .positions
            .iter()
            .filter(|((s, _), _)| s == stream)
            .map(|((_, id), off)| pb::SegmentOffset { segment_id: id.packed(), offset: *off })
            .collect();
        Ok(self.client.truncate_stream(scope, stream, positions).await?.deleted_segments)
    }
}
