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
use nadi_security::channel::{Channel, ClientSecurity};
use parking_lot::Mutex;
use tonic::service::Interceptor;
use tonic::service::interceptor::InterceptedService;

use crate::error::{ClientError, ErrorKind};

/// Largest gRPC message the client sends or accepts.
pub(crate) const MAX_MESSAGE: usize = 17 * 1024 * 1024;

/// How long a controller call keeps retrying while no controller can serve it (e.g. during a
/// leader election, which takes about a second).
pub const CONTROLLER_RETRY_FOR: Duration = Duration::from_secs(10);

/// What to create: the segment count and policies of a new stream, for
/// [`NadiClient::create_stream`].
///
/// # Example
///
/// ```no_run
/// use nadi_client::{ClientError, NadiClient, StreamSpec};
/// use nadi_proto::controller::v1::{RetentionPolicy, retention_policy};
///
/// async fn example() -> Result<(), ClientError> {
///     let client = NadiClient::new(&["http://127.0.0.1:9090".to_owned()])?;
///     // Four segments, never scaled automatically, everything kept.
///     client.create_stream("demo", "orders", StreamSpec::fixed(4)).await?;
///     // One segment, keeping about a day of data.
///     let mut spec = StreamSpec::fixed(1);
///     spec.config.retention =
///         Some(RetentionPolicy { kind: retention_policy::Kind::Time as i32, value: 24 * 3600 * 1000, max_value: 0 });
///     client.create_stream("demo", "clicks", spec).await?;
///     Ok(())
/// }
/// ```
#[derive(Debug, Clone)]
pub struct StreamSpec {
    /// The stream's scaling and retention policies, as sent to the controller (see
    /// `StreamConfig` in `controller.proto`: an absent scaling policy means one fixed segment,
    /// an absent retention policy keeps everything).
    pub config: pb::StreamConfig,
}

impl StreamSpec {
    /// A stream with a fixed number of segments (scaling policy `FIXED` with
    /// `min_segments = segments`) and no retention limit. Manual scaling stays possible.
    /// `0` is not checked here; the controller decides what it means.
    pub fn fixed(segments: u32) -> Self {
        Self {
            config: pb::StreamConfig {
                scaling: Some(pb::ScalingPolicy { min_segments: segments, ..Default::default() }),
                retention: None,
            },
        }
    }
}

/// A channel to one controller whose calls carry one logical request's id.
pub(crate) type ControllerChannel = InterceptedService<Channel, RequestId>;

/// Stamps a controller call with its idempotency key ([`nadi_proto::REQUEST_ID_HEADER`]): a
/// fresh id per logical request, the same on every retry and failover of it, so a controller
/// that applied the request before its answer was lost answers the retry from its record
/// instead of applying it again.
#[derive(Debug, Clone)]
pub(crate) struct RequestId(tonic::metadata::AsciiMetadataValue);

impl RequestId {
    /// 128 random bits, in hex.
    fn fresh() -> RequestId {
        let id = format!("{:032x}", rand::random::<u128>());
        RequestId(id.parse().expect("hex digits are valid metadata"))
    }
}

impl Interceptor for RequestId {
    fn call(&mut self, mut req: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
        req.metadata_mut().insert(nadi_proto::REQUEST_ID_HEADER, self.0.clone());
        Ok(req)
    }
}

#[derive(Debug)]
struct Inner {
    /// The token and TLS trust every channel of this client uses.
    security: ClientSecurity,
    /// Set for a client made by [`NadiClient::as_caller`]: the `authorization` header its
    /// calls carry instead of `security`'s token (`Some(None)`: none at all).
    authorization: Option<Option<http::HeaderValue>>,
    controllers: Vec<Channel>,
    urls: Vec<String>,
    current: AtomicUsize,
    stores: Mutex<HashMap<String, Channel>>,
}

/// A connection to a Nadi cluster. Cheap to clone: clones share the connections.
///
/// Holds one lazily connected gRPC channel per controller URL and one per segment store it
/// has talked to. Every controller call goes to the controller that answered last; when that
/// one is unavailable it moves on to the next URL, and rounds over all URLs repeat with a
/// growing pause (100 ms up to 1 s) for up to 10 s, which rides out a controller leader
/// election. Errors that are not [retryable](ClientError::is_retryable) (`NotFound`,
/// `AlreadyExists`, …) return at once. Calls that go straight to a segment store
/// ([`segment_info`](NadiClient::segment_info)) are not retried.
///
/// # Example
///
/// ```no_run
/// use nadi_client::{ClientError, NadiClient};
///
/// async fn example() -> Result<(), ClientError> {
///     // Three controller nodes: any of them can answer.
///     let urls = ["http://10.0.0.1:9090", "http://10.0.0.2:9090", "http://10.0.0.3:9090"];
///     let client = NadiClient::new(&urls.map(String::from))?;
///     for scope in client.list_scopes().await? {
///         println!("{scope}: {:?}", client.list_streams(&scope).await?);
///     }
///     Ok(())
/// }
/// ```
#[derive(Debug, Clone)]
pub struct NadiClient {
    inner: Arc<Inner>,
}

fn grant_pb(principal: &str, permission: &str, resource: &str) -> pb::PermissionGrant {
    pb::PermissionGrant {
        principal: principal.to_owned(),
        resource: resource.to_owned(),
        permission: permission.to_owned(),
    }
}

fn channel(security: &ClientSecurity, url: &str) -> Result<Channel, ClientError> {
    security.channel(url).map_err(|e| ClientError::new(ErrorKind::Invalid, e.to_string()))
}

impl NadiClient {
    /// A client for the controllers at `urls` (the first is tried first; see the type's docs
    /// for the failover). Connections are made lazily, on first use, so this neither checks
    /// that a controller is reachable nor waits for one.
    ///
    /// # Errors
    ///
    /// `Invalid` if `urls` is empty or a URL cannot be parsed.
    ///
    /// # Panics
    ///
    /// Outside a Tokio runtime (the lazy channels start a background task).
    pub fn new(urls: &[String]) -> Result<NadiClient, ClientError> {
        NadiClient::with_security(urls, ClientSecurity::default())
    }

    /// A client like [`new`](NadiClient::new) whose calls carry `security`'s bearer token and
    /// which trusts its CA for `https://` URLs (docs/security.md).
    ///
    /// # Errors
    ///
    /// `Invalid` if `urls` is empty, a URL cannot be parsed, the token is not visible ASCII,
    /// or the TLS files cannot be read.
    ///
    /// # Panics
    ///
    /// Outside a Tokio runtime (the lazy channels start a background task).
    pub fn with_security(urls: &[String], security: ClientSecurity) -> Result<NadiClient, ClientError> {
        if urls.is_empty() {
            return Err(ClientError::new(ErrorKind::Invalid, "no controller URL given"));
        }
        let controllers = urls.iter().map(|u| channel(&security, u)).collect::<Result<_, ClientError>>()?;
        Ok(NadiClient {
            inner: Arc::new(Inner {
                security,
                authorization: None,
                controllers,
                urls: urls.to_vec(),
                current: AtomicUsize::new(0),
                stores: Mutex::default(),
            }),
        })
    }

    /// This client acting for another caller: its calls carry `authorization` (that caller's
    /// `authorization` header; `None`: no header at all) instead of this client's token, so
    /// the controllers and stores check the caller's permissions, not this client's. For
    /// front ends that serve other protocols over Nadi (the Pravega controller API) and pass
    /// their callers' tokens on. Cheap: the connections are shared with this client.
    pub fn as_caller(&self, authorization: Option<http::HeaderValue>) -> NadiClient {
        let controllers = self.inner.controllers.iter().map(|c| c.with_authorization(authorization.clone())).collect();
        NadiClient {
            inner: Arc::new(Inner {
                security: self.inner.security.clone(),
                authorization: Some(authorization),
                controllers,
                urls: self.inner.urls.clone(),
                current: AtomicUsize::new(self.inner.current.load(Ordering::Relaxed)),
                stores: Mutex::default(),
            }),
        }
    }

    /// Calls the controller, moving to the next URL when one is unavailable. Rounds over all
    /// URLs repeat with a growing pause (100 ms up to 1 s) for up to [`CONTROLLER_RETRY_FOR`],
    /// which rides out a controller leader election; errors that are not retryable return at
    /// once.
    pub(crate) async fn controller<T, F, Fut>(&self, mut call: F) -> Result<T, ClientError>
    where
        F: FnMut(ControllerServiceClient<ControllerChannel>) -> Fut,
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
        F: FnMut(TransactionServiceClient<ControllerChannel>) -> Fut,
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
        F: FnMut(ControllerChannel) -> Fut,
        Fut: Future<Output = Result<tonic::Response<T>, tonic::Status>>,
    {
        self.any_controller(call).await
    }

    /// The failover loop behind [`controller`](Self::controller): `call` gets a channel to one
    /// controller node at a time. Every attempt carries the same request id (one per call of
    /// this function), so the controller applies the request at most once.
    async fn any_controller<T, F, Fut>(&self, mut call: F) -> Result<T, ClientError>
    where
        F: FnMut(ControllerChannel) -> Fut,
        Fut: Future<Output = Result<tonic::Response<T>, tonic::Status>>,
    {
        let n = self.inner.controllers.len();
        let deadline = tokio::time::Instant::now() + CONTROLLER_RETRY_FOR;
        let mut pause = Duration::from_millis(100);
        let mut last = None;
        let id = RequestId::fresh();
        loop {
            let start = self.inner.current.load(Ordering::Relaxed);
            for i in 0..n {
                let idx = (start + i) % n;
                match call(InterceptedService::new(self.inner.controllers[idx].clone(), id.clone())).await {
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

    /// The connection to the segment store at `url` (shared), with this client's credentials.
    pub(crate) fn store_channel(&self, url: &str) -> Result<Channel, ClientError> {
        let mut stores = self.inner.stores.lock();
        Ok(match stores.get(url) {
            Some(c) => c.clone(),
            None => {
                let mut c = channel(&self.inner.security, url)?;
                if let Some(authorization) = &self.inner.authorization {
                    c = c.with_authorization(authorization.clone());
                }
                stores.insert(url.to_owned(), c.clone());
                c
            }
        })
    }

    /// A client for the segment store at `url` (connections are shared).
    pub fn segment_store(&self, url: &str) -> Result<SegmentStoreClient<Channel>, ClientError> {
        let channel = self.store_channel(url)?;
        Ok(SegmentStoreClient::new(channel)
            .max_decoding_message_size(MAX_MESSAGE)
            .max_encoding_message_size(MAX_MESSAGE))
    }

    /// Creates a scope.
    ///
    /// # Errors
    ///
    /// `AlreadyExists` if it exists, `Invalid` for a bad name, `Unavailable` if no
    /// controller answered within the retry period.
    #[tracing::instrument(level = "debug", name = "client.create_scope", skip_all, fields(scope = %scope))]
    pub async fn create_scope(&self, scope: &str) -> Result<(), ClientError> {
        self.controller(|mut c| async move { c.create_scope(pb::CreateScopeRequest { scope: scope.to_owned() }).await })
            .await
            .map(|_| ())
    }

    /// Lists the scopes.
    ///
    /// # Errors
    ///
    /// `Unavailable` if no controller answered within the retry period.
    pub async fn list_scopes(&self) -> Result<Vec<String>, ClientError> {
        Ok(self.controller(|mut c| async move { c.list_scopes(pb::ListScopesRequest {}).await }).await?.scopes)
    }

    /// Creates stream `scope/stream` with `spec` and returns it (its active segments are
    /// created on the segment stores before this returns).
    ///
    /// # Errors
    ///
    /// `NotFound` if the scope does not exist, `AlreadyExists` if the stream does,
    /// `Invalid` for a bad name or policy, `Unavailable` if no controller (or no segment
    /// store) could serve it.
    #[tracing::instrument(level = "debug", name = "client.create_stream", skip_all, fields(scope = %scope, stream = %stream))]
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
    ///
    /// # Errors
    ///
    /// `NotFound` if the scope does not exist, `Unavailable` if no controller answered.
    pub async fn list_streams(&self, scope: &str) -> Result<Vec<String>, ClientError> {
        Ok(self
            .controller(|mut c| async move { c.list_streams(pb::ListStreamsRequest { scope: scope.to_owned() }).await })
            .await?
            .streams)
    }

    /// A stream's configuration, state, epoch and active segments.
    ///
    /// # Errors
    ///
    /// `NotFound` if the scope or stream does not exist, `Unavailable` if no controller
    /// answered.
    pub async fn stream_info(&self, scope: &str, stream: &str) -> Result<pb::StreamInfo, ClientError> {
        let resp = self
            .controller(|mut c| async move {
                c.get_stream(pb::GetStreamRequest { scope: scope.to_owned(), stream: stream.to_owned() }).await
            })
            .await?;
        resp.stream.ok_or_else(|| ClientError::new(ErrorKind::Internal, "controller returned no stream"))
    }

    /// Seals a stream: its segments take no more appends (writers fail with `Sealed`) and
    /// readers end once they have read everything.
    ///
    /// # Errors
    ///
    /// `NotFound` if the stream does not exist, `Conflict` while a scale is in progress,
    /// `Unavailable` if no controller answered.
    #[tracing::instrument(level = "debug", name = "client.seal_stream", skip_all, fields(scope = %scope, stream = %stream))]
    pub async fn seal_stream(&self, scope: &str, stream: &str) -> Result<(), ClientError> {
        self.controller(|mut c| async move {
            c.seal_stream(pb::SealStreamRequest { scope: scope.to_owned(), stream: stream.to_owned() }).await
        })
        .await
        .map(|_| ())
    }

    /// Deletes a sealed stream and its data.
    ///
    /// # Errors
    ///
    /// `NotFound` if it does not exist, `Conflict` if it is not sealed, `Unavailable` if
    /// no controller answered.
    #[tracing::instrument(level = "debug", name = "client.delete_stream", skip_all, fields(scope = %scope, stream = %stream))]
    pub async fn delete_stream(&self, scope: &str, stream: &str) -> Result<(), ClientError> {
        self.controller(|mut c| async move {
            c.delete_stream(pb::DeleteStreamRequest { scope: scope.to_owned(), stream: stream.to_owned() }).await
        })
        .await
        .map(|_| ())
    }

    /// The current epoch's active segments of a stream (sorted by key range, covering
    /// [0, 1)) with the endpoint of the segment store owning each.
    ///
    /// # Errors
    ///
    /// `NotFound` if the stream does not exist, `Unavailable` if no controller answered
    /// (or no segment store is registered).
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
    ///
    /// # Errors
    ///
    /// `NotFound` if the stream or segment does not exist, `Unavailable` if no
    /// controller answered.
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
        self.get_stream_cut(scope, stream, which, 0).await
    }

    /// The stream cut at `time_ms` (milliseconds since the Unix epoch, the segment stores'
    /// clock): per segment, the first event appended at or after that time, or its end. Reading
    /// from it returns the events appended from then on. Where those events were truncated
    /// already, the cut is at the head. Sorted by key range.
    ///
    /// # Errors
    ///
    /// `Invalid` with code `TimeInFuture` for a time ahead of the clock, `TimeBeforeStream`
    /// for one before the stream was created; `NotFound` if the stream does not exist,
    /// `Unavailable` if no controller (or segment store) answered.
    pub async fn stream_cut_at(
        &self,
        scope: &str,
        stream: &str,
        time_ms: u64,
    ) -> Result<Vec<pb::SegmentOffset>, ClientError> {
        self.get_stream_cut(scope, stream, pb::get_stream_cut_request::Which::Time, time_ms).await
    }

    async fn get_stream_cut(
        &self,
        scope: &str,
        stream: &str,
        which: pb::get_stream_cut_request::Which,
        time_ms: u64,
    ) -> Result<Vec<pb::SegmentOffset>, ClientError> {
        let req = pb::GetStreamCutRequest {
            scope: scope.to_owned(),
            stream: stream.to_owned(),
            which: which as i32,
            time_ms,
        };
        Ok(self
            .controller(|mut c| {
                let req = req.clone();
                async move { c.get_stream_cut(req).await }
            })
            .await?
            .cut)
    }

    /// Notes a writer's time: every event `writer_id` appends after this has an event time of
    /// at least `time_ms`; `position` holds, for every segment it appended to, an event
    /// boundary at or past its last acknowledged event there. `closed` ends the writer's part
    /// in the watermark. Returns the stream's watermark (0 while it has none). Use
    /// [`EventWriter::note_time`](crate::EventWriter::note_time), which fills in the rest.
    ///
    /// # Errors
    ///
    /// `Invalid` for a time below the writer's previous note or a bad writer id, `NotFound`
    /// for an unknown stream or segment, `Unavailable` if no controller answered.
    pub async fn note_writer_time(&self, req: pb::NoteWriterTimeRequest) -> Result<u64, ClientError> {
        Ok(self
            .controller(|mut c| {
                let req = req.clone();
                async move { c.note_writer_time(req).await }
            })
            .await?
            .watermark_ms)
    }

    /// The stream's recent watermarks above `after_ms`, oldest first (docs/protocol.md,
    /// "Watermarks"). Readers use them through [`StreamReader::watermark`](crate::StreamReader::watermark)
    /// and [`Reader::watermark`](crate::Reader::watermark).
    ///
    /// # Errors
    ///
    /// `NotFound` if the stream does not exist, `Unavailable` if no controller answered.
    pub async fn watermarks(
        &self,
        scope: &str,
        stream: &str,
        after_ms: u64,
    ) -> Result<pb::GetWatermarksResponse, ClientError> {
        let req = pb::GetWatermarksRequest { scope: scope.to_owned(), stream: stream.to_owned(), after_ms };
        self.controller(|mut c| {
            let req = req.clone();
            async move { c.get_watermarks(req).await }
        })
        .await
    }

    /// Truncates a stream at a stream cut; see `StreamManager::truncate`.
    #[tracing::instrument(level = "debug", name = "client.truncate_stream", skip_all, fields(scope = %scope, stream = %stream))]
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

    /// The segments a reader from the beginning of the stream starts with, sorted by key
    /// range, with their stores. Read them from their start offsets (see
    /// [`segment_info`](Self::segment_info)).
    ///
    /// # Errors
    ///
    /// `NotFound` if the stream does not exist, `Unavailable` if no controller answered.
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
    /// the store at `endpoint`. Asks the store once: no failover, no retry.
    ///
    /// # Errors
    ///
    /// `NotFound` if the store has no such segment, `Invalid` for a bad endpoint URL,
    /// `Unavailable` if the store cannot be reached.
    pub async fn segment_info(
        &self,
        endpoint: &str,
        segment: &str,
    ) -> Result<nadi_proto::segment::v1::SegmentInfo, ClientError> {
        let mut store = self.segment_store(endpoint)?;
        let req = nadi_proto::segment::v1::GetSegmentInfoRequest { segment: segment.to_owned() };
        Ok(store.get_segment_info(req).await?.into_inner())
    }

    /// Like [`segment_info`](Self::segment_info), but a retryable failure (the store cannot be
    /// reached, or no longer leads the segment's replicated container) is retried for about
    /// 10 s, asking the controller before each retry where the segment is served now.
    ///
    /// # Errors
    ///
    /// As [`segment_info`](Self::segment_info): the last error once the retries are used up,
    /// at once for one that is not retryable.
    pub async fn segment_info_following(
        &self,
        endpoint: &str,
        segment: &str,
    ) -> Result<nadi_proto::segment::v1::SegmentInfo, ClientError> {
        let mut endpoint = endpoint.to_owned();
        let mut attempt = 0u32;
        loop {
            match self.segment_info(&endpoint, segment).await {
                Err(e) if e.is_retryable() && attempt < 15 => {
                    attempt += 1;
                    tokio::time::sleep(Duration::from_millis((50u64 << attempt.min(5)).min(1000))).await;
                    if let Ok(now) = self.segment_endpoint(segment).await {
                        endpoint = now;
                    }
                }
                other => return other,
            }
        }
    }

    /// Deletes an empty scope.
    ///
    /// # Errors
    ///
    /// `NotFound` if it does not exist, `Conflict` if it still has streams, `Unavailable`
    /// if no controller answered.
    #[tracing::instrument(level = "debug", name = "client.delete_scope", skip_all, fields(scope = %scope))]
    pub async fn delete_scope(&self, scope: &str) -> Result<(), ClientError> {
        self.controller(|mut c| async move { c.delete_scope(pb::DeleteScopeRequest { scope: scope.to_owned() }).await })
            .await
            .map(|_| ())
    }

    /// Replaces the given parts of a stream's policies (a `None` field of `config` keeps the
    /// current policy) and returns the stream.
    ///
    /// # Errors
    ///
    /// `NotFound` if the stream does not exist, `Invalid` for a bad policy,
    /// `Unavailable` if no controller answered.
    #[tracing::instrument(level = "debug", name = "client.update_stream", skip_all, fields(scope = %scope, stream = %stream))]
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

    /// Scales a stream (see `ControllerService.ScaleStream`): seals the given segments and
    /// replaces them with new ones; returns the stream after the scale. Writers and readers
    /// follow to the successors on their own.
    ///
    /// # Errors
    ///
    /// `NotFound` if the stream or a segment does not exist, `Invalid` if the new ranges
    /// do not cover the sealed ones, `Conflict` if another scale is in progress, `Sealed` if the
    /// stream is sealed, `Unavailable` if no controller answered.
    #[tracing::instrument(level = "debug", name = "client.scale_stream", skip_all, fields(scope = %req.scope, stream = %req.stream))]
    pub async fn scale_stream(&self, req: pb::ScaleStreamRequest) -> Result<pb::StreamInfo, ClientError> {
        let resp = self
            .controller(|mut c| {
                let req = req.clone();
                async move { c.scale_stream(req).await }
            })
            .await?;
        resp.stream.ok_or_else(|| ClientError::new(ErrorKind::Internal, "controller returned no stream"))
    }

    /// Every epoch of a stream, oldest first.
    ///
    /// # Errors
    ///
    /// `NotFound` if the stream does not exist, `Unavailable` if no controller answered.
    pub async fn stream_history(&self, scope: &str, stream: &str) -> Result<pb::GetStreamHistoryResponse, ClientError> {
        self.controller(|mut c| async move {
            c.get_stream_history(pb::GetStreamHistoryRequest { scope: scope.to_owned(), stream: stream.to_owned() })
                .await
        })
        .await
    }

    /// Controller members, leader, segment stores and container assignment.
    ///
    /// # Errors
    ///
    /// `Unavailable` if no controller answered.
    pub async fn cluster_info(&self) -> Result<pb::GetClusterInfoResponse, ClientError> {
        self.controller(|mut c| async move { c.get_cluster_info(pb::GetClusterInfoRequest {}).await }).await
    }

    /// Gives `principal` `permission` (`read`, `write`, `admin`) on `resource` (`prn::/`,
    /// `prn::/scope:S`, `prn::/scope:S/stream:T`, `prn::/scope:S/reader-group:G`); true if
    /// it was not granted before.
    ///
    /// # Errors
    ///
    /// `PermissionDenied` without admin on `resource`; `Invalid` for a malformed principal,
    /// resource or permission.
    pub async fn grant_permission(
        &self,
        principal: &str,
        permission: &str,
        resource: &str,
    ) -> Result<bool, ClientError> {
        let grant = grant_pb(principal, permission, resource);
        let r = self
            .controller(|mut c| {
                let grant = grant.clone();
                async move { c.grant_permission(pb::GrantPermissionRequest { grant: Some(grant) }).await }
            })
            .await?;
        Ok(r.added)
    }

    /// Takes a grant back; true if it existed.
    ///
    /// # Errors
    ///
    /// As [`grant_permission`](NadiClient::grant_permission).
    pub async fn revoke_permission(
        &self,
        principal: &str,
        permission: &str,
        resource: &str,
    ) -> Result<bool, ClientError> {
        let grant = grant_pb(principal, permission, resource);
        let r = self
            .controller(|mut c| {
                let grant = grant.clone();
                async move { c.revoke_permission(pb::RevokePermissionRequest { grant: Some(grant) }).await }
            })
            .await?;
        Ok(r.removed)
    }

    /// The grants the caller may see (of `principal` only, if given).
    ///
    /// # Errors
    ///
    /// `Unavailable` if no controller answered.
    pub async fn list_permissions(&self, principal: Option<&str>) -> Result<Vec<pb::PermissionGrant>, ClientError> {
        let principal = principal.unwrap_or_default().to_owned();
        let r = self
            .controller(|mut c| {
                let principal = principal.clone();
                async move { c.list_permissions(pb::ListPermissionsRequest { principal }).await }
            })
            .await?;
        Ok(r.grants)
    }

    /// Who the controller takes this client for.
    ///
    /// # Errors
    ///
    /// `Unauthenticated` if the token is missing or not valid.
    pub async fn who_am_i(&self) -> Result<pb::WhoAmIResponse, ClientError> {
        self.controller(|mut c| async move { c.who_am_i(pb::WhoAmIRequest {}).await }).await
    }

    /// The endpoint of the segment store serving the segment named `segment` now (from the
    /// cluster's container assignment). Used to reconnect after a store restarted elsewhere.
    ///
    /// # Errors
    ///
    /// `Unavailable` if no controller answered or no store hosts the segment's container.
    pub async fn segment_endpoint(&self, segment: &str) -> Result<String, ClientError> {
        let info = self.cluster_info().await?;
        let count = info.containers.len() as u32;
        let container = nadi_proto::names::container_of(segment, count);
        info.containers
            .iter()
            .find(|a| a.container == container && !a.endpoint.is_empty())
            .map(|a| a.endpoint.clone())
            .ok_or_else(|| ClientError::new(ErrorKind::Unavailable, format!("no segment store hosts {segment} now")))
    }

    /// The reader groups of a scope, sorted (see [`ReaderGroup`](crate::ReaderGroup)).
    ///
    /// # Errors
    ///
    /// `NotFound` if the scope does not exist, `Unavailable` if no controller answered.
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
