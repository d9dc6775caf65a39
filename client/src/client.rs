//! Connections to the controller (with failover) and to segment stores.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use nadi_proto::controller::v1 as pb;
use nadi_proto::controller::v1::controller_service_client::ControllerServiceClient;
use nadi_proto::controller::v1::transaction_service_client::TransactionServiceClient;
use nadi_proto::segment::v1::segment_store_client::SegmentStoreClient;
use parking_lot::Mutex;
use tonic::transport::{Channel, Endpoint};

use crate::error::{ClientError, ErrorKind};

/// Largest gRPC message the client sends or accepts.
pub(crate) const MAX_MESSAGE: usize = 17 * 1024 * 1024;

/// How long a controller call keeps retrying while no controller can serve it (e.g. during a
/// leader election, which takes about a second).
pub const CONTROLLER_RETRY_FOR: Duration = Duration::from_secs(10);

/// What to create: the segment count and policies of a new stream.
#[derive(Debug, Clone)]
pub struct StreamSpec {
    pub config: pb::StreamConfig,
}

impl StreamSpec {
    /// A stream with a fixed number of segments and no retention limit.
    pub fn fixed(segments: u32) -> Self {
        Self {
            config: pb::StreamConfig {
                scaling: Some(pb::ScalingPolicy { min_segments: segments, ..Default::default() }),
                retention: None,
            },
        }
    }
}

#[derive(Debug)]
struct Inner {
    controllers: Vec<Channel>,
    urls: Vec<String>,
    current: AtomicUsize,
    stores: Mutex<HashMap<String, Channel>>,
}

/// A connection to a Nadi cluster. Cheap to clone.
#[derive(Debug, Clone)]
pub struct NadiClient {
    inner: Arc<Inner>,
}

pub(crate) fn endpoint(url: &str) -> Result<Endpoint, ClientError> {
    Ok(Endpoint::from_shared(url.to_owned())
        .map_err(|e| ClientError::new(ErrorKind::Invalid, format!("bad URL {url:?}: {e}")))?
        .connect_timeout(Duration::from_secs(5))
        .tcp_nodelay(true)
        .initial_stream_window_size(8 * 1024 * 1024)
        .initial_connection_window_size(32 * 1024 * 1024))
}

impl NadiClient {
    /// A client for the controllers at `urls` (tried in order, failing over on unavailability).
    /// Connections are made lazily, on first use.
    pub fn new(urls: &[String]) -> Result<NadiClient, ClientError> {
        if urls.is_empty() {
            return Err(ClientError::new(ErrorKind::Invalid, "no controller URL given"));
        }
        let controllers = urls.iter().map(|u| Ok(endpoint(u)?.connect_lazy())).collect::<Result<_, ClientError>>()?;
        Ok(NadiClient {
            inner: Arc::new(Inner {
                controllers,
                urls: urls.to_vec(),
                current: AtomicUsize::new(0),
                stores: Mutex::default(),
            }),
        })
    }

    /// Calls the controller, moving to the next URL when one is unavailable. Rounds over all
    /// URLs repeat with a growing pause (100 ms up to 1 s) for up to [`CONTROLLER_RETRY_FOR`],
    /// which rides out a controller leader election; errors that are not retryable return at
    /// once.
    pub(crate) async fn controller<T, F, Fut>(&self, mut call: F) -> Result<T, ClientError>
    where
        F: FnMut(ControllerServiceClient<Channel>) -> Fut,
        Fut: Future<Output = Result<tonic::Response<T>, tonic::Status>>,
    {
        self.any_controller(|channel| {
            call(
                ControllerServiceClient::new(channel)
                    .max_decoding_message_size(MAX_MESSAGE)
                    .max_encoding_message_size(MAX_MESSAGE),
            )
        })
        .await
    }

    /// Calls `nadi.controller.v1.TransactionService`, with the same failover as
    /// [`controller`](Self::controller).
    pub(crate) async fn transactions<T, F, Fut>(&self, mut call: F) -> Result<T, ClientError>
    where
        F: FnMut(TransactionServiceClient<Channel>) -> Fut,
        Fut: Future<Output = Result<tonic::Response<T>, tonic::Status>>,
    {
        self.any_controller(|channel| {
            call(
                TransactionServiceClient::new(channel)
                    .max_decoding_message_size(MAX_MESSAGE)
                    .max_encoding_message_size(MAX_MESSAGE),
            )
        })
        .await
    }

    /// Like [`Self::controller`], for any service of the controller (e.g. reader groups):
    /// `call` gets a channel to one controller.
    pub(crate) async fn controller_channel<T, F, Fut>(&self, call: F) -> Result<T, ClientError>
    where
        F: FnMut(Channel) -> Fut,
        Fut: Future<Output = Result<tonic::Response<T>, tonic::Status>>,
    {
        self.any_controller(call).await
    }

    /// The failover loop behind [`controller`](Self::controller): `call` gets a channel to one
    /// controller node at a time.
    async fn any_controller<T, F, Fut>(&self, mut call: F) -> Result<T, ClientError>
    where
        F: FnMut(Channel) -> Fut,
        Fut: Future<Output = Result<tonic::Response<T>, tonic::Status>>,
    {
        let n = self.inner.controllers.len();
        let deadline = tokio::time::Instant::now() + CONTROLLER_RETRY_FOR;
        let mut pause = Duration::from_millis(100);
        let mut last = None;
        loop {
            let start = self.inner.current.load(Ordering::Relaxed);
            for i in 0..n {
                let idx = (start + i) % n;
                match call(self.inner.controllers[idx].clone()).await {
                    Ok(r) => {
                        self.inner.current.store(idx, Ordering::Relaxed);
                        return Ok(r.into_inner());
                    }
                    Err(s) => {
                        let e = ClientError::from(s);
                        if !e.is_retryable() {
                            return Err(e);
                        }
                        last = Some(e);
                    }
                }
            }
            if tokio::time::Instant::now() + pause > deadline {
                break;
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_secs(1));
        }
        let e = last.unwrap_or_else(|| ClientError::new(ErrorKind::Unavailable, "no controller"));
        let urls = self.inner.urls.join(", ");
        Err(ClientError::new(ErrorKind::Unavailable, format!("cannot reach the controller at {urls}: {}", e.message)))
    }

    /// A client for the segment store at `url` (connections are shared).
    pub(crate) fn segment_store(&self, url: &str) -> Result<SegmentStoreClient<Channel>, ClientError> {
        let channel = {
            let mut stores = self.inner.stores.lock();
            match stores.get(url) {
                Some(c) => c.clone(),
                None => {
                    let c = endpoint(url)?.connect_lazy();
                    stores.insert(url.to_owned(), c.clone());
                    c
                }
            }
        };
        Ok(SegmentStoreClient::new(channel)
            .max_decoding_message_size(MAX_MESSAGE)
            .max_encoding_message_size(MAX_MESSAGE))
    }

    /// Creates a scope.
    pub async fn create_scope(&self, scope: &str) -> Result<(), ClientError> {
        self.controller(|mut c| async move { c.create_scope(pb::CreateScopeRequest { scope: scope.to_owned() }).await })
            .await
            .map(|_| ())
    }

    /// Lists scopes.
    pub async fn list_scopes(&self) -> Result<Vec<String>, ClientError> {
        Ok(self.controller(|mut c| async move { c.list_scopes(pb::ListScopesRequest {}).await }).await?.scopes)
    }

    /// Creates a stream.
    pub async fn create_stream(
        &self,
        scope: &str,
        stream: &str,
        spec: StreamSpec,
    ) -> Result<pb::StreamInfo, ClientError> {
        let resp = self
            .controller(|mut c| async move {
                {
                    c.create_stream(pb::CreateStreamRequest {
                        scope: scope.to_owned(),
                        stream: stream.to_owned(),
                        config: Some(spec.config),
                    })
                    .await
                }
            })
            .await?;
        resp.stream.ok_or_else(|| ClientError::new(ErrorKind::Internal, "controller returned no stream"))
    }

    /// Lists the streams of a scope.
    pub async fn list_streams(&self, scope: &str) -> Result<Vec<String>, ClientError> {
        Ok(self
            .controller(|mut c| async move { c.list_streams(pb::ListStreamsRequest { scope: scope.to_owned() }).await })
            .await?
            .streams)
    }

    /// A stream's configuration, state and active segments.
    pub async fn stream_info(&self, scope: &str, stream: &str) -> Result<pb::StreamInfo, ClientError> {
        let resp = self
            .controller(|mut c| async move {
                c.get_stream(pb::GetStreamRequest { scope: scope.to_owned(), stream: stream.to_owned() }).await
            })
            .await?;
        resp.stream.ok_or_else(|| ClientError::new(ErrorKind::Internal, "controller returned no stream"))
    }

    /// Seals a stream.
    pub async fn seal_stream(&self, scope: &str, stream: &str) -> Result<(), ClientError> {
        self.controller(|mut c| async move {
            c.seal_stream(pb::SealStreamRequest { scope: scope.to_owned(), stream: stream.to_owned() }).await
        })
        .await
        .map(|_| ())
    }

    /// Deletes a sealed stream.
    pub async fn delete_stream(&self, scope: &str, stream: &str) -> Result<(), ClientError> {
        self.controller(|mut c| async move {
            c.delete_stream(pb::DeleteStreamRequest { scope: scope.to_owned(), stream: stream.to_owned() }).await
        })
        .await
        .map(|_| ())
    }

    /// The active segments of a stream with their segment stores.
    pub async fn active_segments(
        &self,
        scope: &str,
        stream: &str,
    ) -> Result<pb::GetActiveSegmentsResponse, ClientError> {
        self.controller(|mut c| async move {
            {
                c.get_active_segments(pb::GetActiveSegmentsRequest {
                    scope: scope.to_owned(),
                    stream: stream.to_owned(),
                })
                .await
            }
        })
        .await
    }

    /// The segments that replaced the sealed segment `segment_id`, each with its predecessors.
    /// Empty if the segment is active, or if the whole stream was sealed.
    pub async fn successors(
        &self,
        scope: &str,
        stream: &str,
        segment_id: u64,
    ) -> Result<Vec<pb::SuccessorSegment>, ClientError> {
        let req = pb::GetSuccessorsRequest { scope: scope.to_owned(), stream: stream.to_owned(), segment_id };
        Ok(self
            .controller(|mut c| {
                let req = req.clone();
                async move { c.get_successors(req).await }
            })
            .await?
            .successors)
    }

    /// The stream cut at the head (each head segment at its start offset) or, with `tail`, at
    /// the tail (each active segment at its length).
    pub async fn stream_cut(
        &self,
        scope: &str,
        stream: &str,
        tail: bool,
    ) -> Result<Vec<pb::SegmentOffset>, ClientError> {
        let which = if tail {
            pb::get_stream_cut_request::Which::Tail
        } else {
            pb::get_stream_cut_request::Which::HeadUnspecified
        };
        let req = pb::GetStreamCutRequest { scope: scope.to_owned(), stream: stream.to_owned(), which: which as i32 };
        Ok(self
            .controller(|mut c| {
                let req = req.clone();
                async move { c.get_stream_cut(req).await }
            })
            .await?
            .cut)
    }

    /// Truncates a stream at a stream cut; see `StreamManager::truncate`.
    pub async fn truncate_stream(
        &self,
        scope: &str,
        stream: &str,
        cut: Vec<pb::SegmentOffset>,
    ) -> Result<pb::TruncateStreamResponse, ClientError> {
        let req = pb::TruncateStreamRequest { scope: scope.to_owned(), stream: stream.to_owned(), cut };
        self.controller(|mut c| {
            let req = req.clone();
            async move { c.truncate_stream(req).await }
        })
        .await
    }

    /// The segments a reader from the beginning of the stream starts with.
    pub async fn head_segments(&self, scope: &str, stream: &str) -> Result<Vec<pb::SegmentLocation>, ClientError> {
        let req = pb::GetHeadSegmentsRequest { scope: scope.to_owned(), stream: stream.to_owned() };
        Ok(self
            .controller(|mut c| {
                let req = req.clone();
                async move { c.get_head_segments(req).await }
            })
            .await?
            .segments)
    }

    /// A segment's start offset, length, sealed flag and per-writer last event numbers, from
    /// the store at `endpoint`.
    pub async fn segment_info(
        &self,
        endpoint: &str,
        segment: &str,
    ) -> Result<nadi_proto::segment::v1::SegmentInfo, ClientError> {
        let mut store = self.segment_store(endpoint)?;
        let req = nadi_proto::segment::v1::GetSegmentInfoRequest { segment: segment.to_owned() };
        Ok(store.get_segment_info(req).await?.into_inner())
    }

    /// Deletes an empty scope.
    pub async fn delete_scope(&self, scope: &str) -> Result<(), ClientError> {
        self.controller(|mut c| async move { c.delete_scope(pb::DeleteScopeRequest { scope: scope.to_owned() }).await })
            .await
            .map(|_| ())
    }

    /// Replaces the given parts of a stream's policies.
    pub async fn update_stream(
        &self,
        scope: &str,
        stream: &str,
        config: pb::StreamConfig,
    ) -> Result<pb::StreamInfo, ClientError> {
        let resp = self
            .controller(|mut c| {
                let req = pb::UpdateStreamRequest {
                    scope: scope.to_owned(),
                    stream: stream.to_owned(),
                    config: Some(config),
                };
                async move { c.update_stream(req).await }
            })
            .await?;
        resp.stream.ok_or_else(|| ClientError::new(ErrorKind::Internal, "controller returned no stream"))
    }

    /// Scales a stream (see `ControllerService.ScaleStream`); returns it after the scale.
    pub async fn scale_stream(&self, req: pb::ScaleStreamRequest) -> Result<pb::StreamInfo, ClientError> {
        let resp = self
            .controller(|mut c| {
                let req = req.clone();
                async move { c.scale_stream(req).await }
            })
            .await?;
        resp.stream.ok_or_else(|| ClientError::new(ErrorKind::Internal, "controller returned no stream"))
    }

    /// Every epoch of a stream.
    pub async fn stream_history(&self, scope: &str, stream: &str) -> Result<pb::GetStreamHistoryResponse, ClientError> {
        self.controller(|mut c| async move {
            c.get_stream_history(pb::GetStreamHistoryRequest { scope: scope.to_owned(), stream: stream.to_owned() })
                .await
        })
        .await
    }

    /// Controller members, leader, segment stores and container assignment.
    pub async fn cluster_info(&self) -> Result<pb::GetClusterInfoResponse, ClientError> {
        self.controller(|mut c| async move { c.get_cluster_info(pb::GetClusterInfoRequest {}).await }).await
    }

    /// The reader groups of a scope, sorted.
    pub async fn list_reader_groups(&self, scope: &str) -> Result<Vec<String>, ClientError> {
        use nadi_proto::controller::v1::reader_group_service_client::ReaderGroupServiceClient;
        let r = self
            .controller_channel(|ch| async move {
                ReaderGroupServiceClient::new(ch)
                    .list_reader_groups(pb::ListReaderGroupsRequest { scope: scope.to_owned() })
                    .await
            })
            .await?;
        Ok(r.groups)
    }
}
