//! The admin HTTP API (axum, JSON, versioned under `/v1`), with its OpenAPI document at
//! `/openapi.json` generated from these handlers (utoipa).
//!
//! Every `/v1` handler is a thin adapter over the gRPC API `nadi.controller.v1`: it calls this
//! node's own controller endpoint through a tonic client and converts the answer with
//! [`crate::views`], the same conversions the CLI's `--json` output uses. So HTTP and CLI agree
//! by construction, and whatever the gRPC layer does (leader forwarding, once there is Raft)
//! HTTP gets for free.
//!
//! Errors are JSON `{"code": "NOT_FOUND_STREAM", "message": "…"}` with the stable gRPC error
//! code names and HTTP statuses 400 (invalid name, argument or body), 404 (unknown scope, stream,
//! segment), 409 (exists, sealed, scaling, not empty, not sealed), 503 (unavailable, no leader)
//! and 500 (internal).

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::extract::{FromRequestParts, MatchedPath, Path, Query, Request, State};
use axum::http::request::Parts;
use axum::http::{StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use nadi_proto::ErrorCode;
use nadi_proto::controller::v1 as pb;
use nadi_proto::controller::v1::controller_service_client::ControllerServiceClient;
use nadi_proto::controller::v1::transaction_service_client::TransactionServiceClient;
use nadi_security::channel::{Channel, ClientSecurity};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use serde::{Deserialize, Serialize};
use utoipa::{OpenApi, ToSchema};

use crate::MetaError;
use crate::views::{
    ActiveSegmentsView, CheckpointView, ClusterView, HistoryView, ReaderGroupListView, ReaderGroupView, ScaleBody,
    ScopeListView, ScopeView, StreamCutView, StreamListView, StreamView, TruncateBody, TruncatedView, TxnListView,
    TxnView,
};
use nadi_proto::controller::v1::reader_group_service_client::ReaderGroupServiceClient;

/// The JSON body of every error.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ErrorBody {
    /// Stable code, e.g. `NOT_FOUND_STREAM` (the gRPC `ErrorInfo.reason`, see docs/protocol.md).
    pub code: String,
    /// What went wrong, for people.
    pub message: String,
}

/// An error answer: an HTTP status and an [`ErrorBody`].
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    body: ErrorBody,
}

impl ApiError {
    fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        ApiError {
            status: http_status(code),
            body: ErrorBody { code: code.reason().to_owned(), message: message.into() },
        }
    }
}

/// The HTTP status for a stable error code.
pub fn http_status(code: ErrorCode) -> StatusCode {
    use tonic::Code;
    match code.grpc_code() {
        Code::NotFound => StatusCode::NOT_FOUND,
        Code::AlreadyExists | Code::FailedPrecondition | Code::Aborted => StatusCode::CONFLICT,
        Code::InvalidArgument | Code::OutOfRange => StatusCode::BAD_REQUEST,
        Code::Unavailable | Code::ResourceExhausted => StatusCode::SERVICE_UNAVAILABLE,
        Code::Unauthenticated => StatusCode::UNAUTHORIZED,
        Code::PermissionDenied => StatusCode::FORBIDDEN,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

impl From<tonic::Status> for ApiError {
    fn from(s: tonic::Status) -> Self {
        let (code, _) = nadi_proto::errors::from_status(&s);
        let message = if s.message().is_empty() { format!("{:?}", s.code()) } else { s.message().to_owned() };
        ApiError::new(code, message)
    }
}

impl From<MetaError> for ApiError {
    fn from(e: MetaError) -> Self {
        ApiError::new(e.code(), e.to_string())
    }
}

impl From<nadi_proto::views::InvalidInput> for ApiError {
    fn from(e: nadi_proto::views::InvalidInput) -> Self {
        MetaError::from(e).into()
    }
}

impl From<JsonRejection> for ApiError {
    fn from(r: JsonRejection) -> Self {
        ApiError::new(ErrorCode::InvalidArgument, format!("malformed JSON body: {}", r.body_text()))
    }
}

impl From<PathRejection> for ApiError {
    fn from(r: PathRejection) -> Self {
        ApiError::new(ErrorCode::InvalidArgument, format!("malformed path: {}", r.body_text()))
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.status, Json(self.body)).into_response()
    }
}

type ApiResult<T> = Result<T, ApiError>;

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    method: String,
    route: String,
    status: u16,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabels {
    method: String,
    route: String,
}

/// Request counts and latencies per route (the matched pattern, not the raw path, so the
/// label set stays small) and status.
#[derive(Debug)]
struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    latency: Family<RouteLabels, Histogram, fn() -> Histogram>,
}

impl Metrics {
    /// `extra` registers the metrics of whatever else runs in this process (standalone's
    /// segment store) on the same `/metrics`.
    fn new(extra: impl FnOnce(&mut Registry)) -> Metrics {
        let mut registry = Registry::default();
        let requests = Family::<RequestLabels, Counter>::default();
        let latency: Family<RouteLabels, Histogram, fn() -> Histogram> =
            Family::new_with_constructor(|| Histogram::new(exponential_buckets(0.0005, 2.0, 16)));
        let http = registry.sub_registry_with_prefix("nadi_http");
        http.register("requests", "Admin HTTP requests by route and status", requests.clone());
        http.register("request_duration_seconds", "Admin HTTP request latency by route", latency.clone());
        extra(&mut registry);
        Metrics { registry, requests, latency }
    }
}

#[derive(Debug, Clone)]
struct AppState {
    /// The channel to this node's controller gRPC endpoint, carrying the HTTP caller's
    /// `authorization` header (see [`Caller`]): the controller authenticates and authorizes
    /// the call exactly as it would a gRPC client's.
    channel: Channel,
    /// The same channel with this node's own token, for `/ready`.
    node: Channel,
    metrics: Arc<Metrics>,
    /// `/metrics` needs a token with read on the cluster.
    metrics_auth: bool,
    /// Checks tokens before anything else (with `--auth required`).
    auth: Option<Arc<nadi_security::auth::Authenticator>>,
}

impl AppState {
    fn grpc(&self) -> ControllerServiceClient<Channel> {
        ControllerServiceClient::new(self.channel.clone())
    }

    fn txns(&self) -> TransactionServiceClient<Channel> {
        TransactionServiceClient::new(self.channel.clone())
    }

    fn groups(&self) -> ReaderGroupServiceClient<Channel> {
        ReaderGroupServiceClient::new(self.channel.clone())
    }
}

/// The state of one request, whose calls to the controller carry the request's own
/// `authorization` header (and none when it has none, never the node's).
struct Caller(AppState);

impl FromRequestParts<AppState> for Caller {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Caller, Self::Rejection> {
        let authorization = parts.headers.get(header::AUTHORIZATION).cloned();
        let mut s = state.clone();
        s.channel = state.channel.with_authorization(authorization);
        Ok(Caller(s))
    }
}

/// The admin router, calling the controller's gRPC API at `controller_url` (this node's own).
pub fn router(controller_url: &str) -> Result<Router, MetaError> {
    router_with_metrics(controller_url, &HttpSecurity::default(), |_| {})
}

/// How the admin API reaches its controller and guards `/metrics`.
#[derive(Debug, Clone, Default)]
pub struct HttpSecurity {
    /// This node's client security: its TLS trust for an `https://` controller URL, and its
    /// token (used only for `/ready`; requests carry their callers' own).
    pub client: ClientSecurity,
    /// `/metrics` needs a token with read on the cluster.
    pub metrics_auth: bool,
    /// This node's authenticator: with `--auth required`, requests without a valid token are
    /// refused (401) before their bodies are read.
    pub auth: Option<Arc<nadi_security::auth::Authenticator>>,
}

/// Like [`router`]; `extra` registers more metrics on its `/metrics` (standalone adds its
/// segment store's).
pub fn router_with_metrics(
    controller_url: &str,
    security: &HttpSecurity,
    extra: impl FnOnce(&mut Registry),
) -> Result<Router, MetaError> {
    let endpoint = security
        .client
        .endpoint(controller_url)
        .map_err(|e| MetaError::InvalidArgument(format!("controller endpoint {controller_url:?}: {e}")))?;
    let node = security
        .client
        .wrap(endpoint.timeout(Duration::from_secs(60)).connect_lazy())
        .map_err(|e| MetaError::InvalidArgument(e.to_string()))?;
    let state = AppState {
        channel: node.with_authorization(None),
        node,
        metrics: Arc::new(Metrics::new(extra)),
        metrics_auth: security.metrics_auth,
        auth: security.auth.clone().filter(|a| a.mode() == nadi_security::auth::AuthMode::Required),
    };
    let stream = "/v1/scopes/{scope}/streams/{stream}";
    let group = "/v1/scopes/{scope}/reader-groups/{group}";
    Ok(Router::new()
        .route("/health", get(health))
        .route("/ready", get(ready))
        .route("/metrics", get(metrics))
        .route("/openapi.json", get(openapi))
        .route("/v1/scopes", get(list_scopes).post(create_scope))
        .route("/v1/scopes/{scope}", axum::routing::delete(delete_scope))
        .route("/v1/scopes/{scope}/streams", get(list_streams).post(create_stream))
        .route(stream, get(get_stream).patch(update_stream).delete(delete_stream))
        .route(&format!("{stream}/seal"), post(seal_stream))
        .route(&format!("{stream}/scale"), post(scale_stream))
        .route(&format!("{stream}/segments"), get(active_segments))
        .route(&format!("{stream}/history"), get(history))
        .route(&format!("{stream}/history.svg"), get(history_svg))
        .route(&format!("{stream}/cut"), get(stream_cut))
        .route(&format!("{stream}/truncate"), post(truncate_stream))
        .route(&format!("{stream}/transactions"), get(list_txns))
        .route(&format!("{stream}/transactions/{{txn}}"), get(get_txn))
        .route(&format!("{stream}/transactions/{{txn}}/commit"), post(commit_txn))
        .route(&format!("{stream}/transactions/{{txn}}/abort"), post(abort_txn))
        .route("/v1/scopes/{scope}/reader-groups", get(list_groups).post(create_group))
        .route(group, get(get_group).delete(delete_group))
        .route(&format!("{group}/checkpoints"), post(create_checkpoint))
        .route(&format!("{group}/checkpoints/{{checkpoint}}"), get(get_checkpoint))
        .route(&format!("{group}/reset"), post(reset_group))
        .route(&format!("{group}/readers/{{reader}}/offline"), post(reader_offline))
        .route("/v1/cluster", get(cluster))
        .fallback(not_found)
        .layer(middleware::from_fn_with_state(state.clone(), authenticate))
        .layer(middleware::from_fn_with_state(state.clone(), track))
        .with_state(state))
}

/// With `--auth required`, a request to anything but the probes and `/metrics` needs a valid
/// token before anything else is looked at (so a malformed body without a token is a 401, not
/// a 400). What the caller may do is then decided by the controller, to which the request's
/// token is passed on.
async fn authenticate(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let Some(auth) = &state.auth else { return next.run(req).await };
    if OPEN_PATHS.contains(&req.uri().path()) {
        return next.run(req).await;
    }
    match auth.authenticate(req.headers().get(header::AUTHORIZATION)).await {
        Ok(_) => next.run(req).await,
        Err(e) => ApiError::new(ErrorCode::Unauthenticated, e.to_string()).into_response(),
    }
}

async fn track(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let route = req.extensions().get::<MatchedPath>().map_or("unmatched", |p| p.as_str()).to_owned();
    let method = req.method().to_string();
    let start = Instant::now();
    let resp = next.run(req).await;
    let m = &state.metrics;
    m.latency
        .get_or_create(&RouteLabels { method: method.clone(), route: route.clone() })
        .observe(start.elapsed().as_secs_f64());
    m.requests.get_or_create(&RequestLabels { method, route, status: resp.status().as_u16() }).inc();
    resp
}

async fn not_found() -> ApiError {
    ApiError {
        status: StatusCode::NOT_FOUND,
        body: ErrorBody {
            code: ErrorCode::InvalidArgument.reason().to_owned(),
            message: "no such endpoint; see /openapi.json".into(),
        },
    }
}

/// The OpenAPI document of this API.
#[derive(Debug, OpenApi)]
#[openapi(
    info(
        title = "Nadi admin API",
        description = "Admin HTTP API of the Nadi controller. Errors are JSON `{code, message}` with the stable codes of docs/protocol.md."
    ),
    paths(
        health,
        ready,
        metrics,
        list_scopes,
        create_scope,
        delete_scope,
        list_streams,
        create_stream,
        get_stream,
        update_stream,
        delete_stream,
        seal_stream,
        scale_stream,
        active_segments,
        history,
        history_svg,
        stream_cut,
        truncate_stream,
        list_txns,
        get_txn,
        commit_txn,
        abort_txn,
        list_groups,
        create_group,
        get_group,
        delete_group,
        create_checkpoint,
        get_checkpoint,
        reset_group,
        reader_offline,
        cluster
    ),
    modifiers(&Secured)
)]
pub struct ApiDoc;

/// Says in the API description what `--auth required` does: every operation but the probes
/// (`/health`, `/ready`) and `/metrics` takes a bearer token, and may answer 401 (no valid
/// token) or 403 (no permission) with the usual error body.
struct Secured;

/// Paths that never need a token (`/metrics` needs one only with `--metrics-auth true`; the API
/// description is public).
const OPEN_PATHS: &[&str] = &["/health", "/ready", "/metrics", "/openapi.json"];

impl utoipa::Modify for Secured {
    fn modify(&self, api: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityRequirement, SecurityScheme};
        use utoipa::openapi::{ContentBuilder, Ref, ResponseBuilder};
        let components = api.components.get_or_insert_with(Default::default);
        components.add_security_scheme("bearer", SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)));
        let error = |what: &str| {
            ResponseBuilder::new()
                .description(what)
                .content(
                    "application/json",
                    ContentBuilder::new().schema(Some(Ref::from_schema_name("ErrorBody"))).build(),
                )
                .build()
        };
        for (path, item) in api.paths.paths.iter_mut() {
            if OPEN_PATHS.contains(&path.as_str()) {
                continue;
            }
            let ops = [&mut item.get, &mut item.put, &mut item.post, &mut item.delete, &mut item.patch];
            for op in ops.into_iter().flatten() {
                op.security = Some(vec![SecurityRequirement::new("bearer", Vec::<String>::new())]);
                op.responses
                    .responses
                    .insert("401".into(), error("No valid bearer token (with `--auth required`).").into());
                op.responses.responses.insert("403".into(), error("The caller lacks the permission.").into());
            }
        }
    }
}

async fn openapi() -> Json<utoipa::openapi::OpenApi> {
    Json(ApiDoc::openapi())
}

/// Liveness.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct HealthView {
    /// Always `ok`.
    pub status: String,
    /// The server version.
    pub version: String,
}

/// Readiness.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ReadyView {
    /// Always `ready`.
    pub status: String,
    /// The controller leader's id.
    pub leader_id: u64,
}

/// Process is alive (says nothing about the controller).
#[utoipa::path(get, path = "/health", responses((status = 200, body = HealthView)))]
async fn health() -> Json<HealthView> {
    Json(HealthView { status: "ok".into(), version: env!("CARGO_PKG_VERSION").into() })
}

/// The controller answers (and there is a leader).
#[utoipa::path(get, path = "/ready", responses((status = 200, body = ReadyView), (status = 503, body = ErrorBody)))]
async fn ready(State(s): State<AppState>) -> ApiResult<Json<ReadyView>> {
    let c =
        ControllerServiceClient::new(s.node.clone()).get_cluster_info(pb::GetClusterInfoRequest {}).await?.into_inner();
    if c.leader_id == 0 {
        return Err(ApiError::new(ErrorCode::Unavailable, "the controller has no leader"));
    }
    Ok(Json(ReadyView { status: "ready".into(), leader_id: c.leader_id }))
}

/// Prometheus metrics (OpenMetrics text).
#[utoipa::path(get, path = "/metrics", responses((status = 200, content_type = "application/openmetrics-text", body = String)))]
async fn metrics(Caller(s): Caller) -> Response {
    if s.metrics_auth {
        // Reading the cluster's description needs read on the cluster, as metrics do.
        if let Err(status) = s.grpc().get_cluster_info(pb::GetClusterInfoRequest {}).await {
            return ApiError::from(status).into_response();
        }
    }
    let mut text = String::new();
    if let Err(e) = prometheus_client::encoding::text::encode(&mut text, &s.metrics.registry) {
        return ApiError::new(ErrorCode::Internal, format!("encoding metrics: {e}")).into_response();
    }
    ([(header::CONTENT_TYPE, "application/openmetrics-text; version=1.0.0; charset=utf-8")], text).into_response()
}

/// Lists the scopes.
#[utoipa::path(get, path = "/v1/scopes", responses((status = 200, body = ScopeListView), (status = 503, body = ErrorBody)))]
async fn list_scopes(Caller(s): Caller) -> ApiResult<Json<ScopeListView>> {
    let r = s.grpc().list_scopes(pb::ListScopesRequest {}).await?.into_inner();
    Ok(Json(ScopeListView { scopes: r.scopes }))
}

/// Creates a scope.
#[utoipa::path(post, path = "/v1/scopes", request_body = ScopeView, responses(
    (status = 201, body = ScopeView), (status = 400, body = ErrorBody), (status = 409, body = ErrorBody), (status = 503, body = ErrorBody)))]
async fn create_scope(
    Caller(s): Caller,
    body: Result<Json<ScopeView>, JsonRejection>,
) -> ApiResult<(StatusCode, Json<ScopeView>)> {
    let Json(body) = body?;
    s.grpc().create_scope(pb::CreateScopeRequest { scope: body.scope.clone() }).await?;
    Ok((StatusCode::CREATED, Json(body)))
}

/// Deletes an empty scope.
#[utoipa::path(delete, path = "/v1/scopes/{scope}", params(("scope" = String, Path, description = "Scope name")), responses(
    (status = 204), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody), (status = 503, body = ErrorBody)))]
async fn delete_scope(Caller(s): Caller, path: Result<Path<String>, PathRejection>) -> ApiResult<StatusCode> {
    let Path(scope) = path?;
    s.grpc().delete_scope(pb::DeleteScopeRequest { scope }).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Lists the streams of a scope.
#[utoipa::path(get, path = "/v1/scopes/{scope}/streams", params(("scope" = String, Path, description = "Scope name")), responses(
    (status = 200, body = StreamListView), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody), (status = 503, body = ErrorBody)))]
async fn list_streams(Caller(s): Caller, path: Result<Path<String>, PathRejection>) -> ApiResult<Json<StreamListView>> {
    let Path(scope) = path?;
    let r = s.grpc().list_streams(pb::ListStreamsRequest { scope: scope.clone() }).await?.into_inner();
    Ok(Json(StreamListView { scope, streams: r.streams }))
}

/// The body of `POST /v1/scopes/{scope}/streams`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateStreamBody {
    /// The stream's name.
    pub stream: String,
    /// Segments of a `fixed` stream, 1..=1024 (default 1).
    pub segments: Option<u32>,
    /// `fixed` (default), `events:RATE,FACTOR,MIN` or `bytes:RATE,FACTOR,MIN`.
    pub scaling: Option<String>,
    /// `none` (default), `time:DURATION` (e.g. `10s`, `5m`) or `size:BYTES` (e.g. `512MiB`).
    pub retention: Option<String>,
}

/// Creates a stream.
#[utoipa::path(post, path = "/v1/scopes/{scope}/streams", params(("scope" = String, Path, description = "Scope name")),
    request_body = CreateStreamBody, responses(
    (status = 201, body = StreamView), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody), (status = 503, body = ErrorBody)))]
async fn create_stream(
    Caller(s): Caller,
    path: Result<Path<String>, PathRejection>,
    body: Result<Json<CreateStreamBody>, JsonRejection>,
) -> ApiResult<(StatusCode, Json<StreamView>)> {
    let Path(scope) = path?;
    let Json(body) = body?;
    let config = crate::views::create_config(body.segments, body.scaling.as_deref(), body.retention.as_deref())?;
    let r = s
        .grpc()
        .create_stream(pb::CreateStreamRequest { scope, stream: body.stream, config: Some(config) })
        .await?
        .into_inner();
    Ok((StatusCode::CREATED, Json(stream_view(r.stream)?)))
}

fn stream_view(info: Option<pb::StreamInfo>) -> ApiResult<StreamView> {
    info.map(|i| StreamView::from(&i))
        .ok_or_else(|| ApiError::new(ErrorCode::Internal, "the controller returned no stream"))
}

async fn info(s: &AppState, scope: &str, stream: &str) -> ApiResult<pb::StreamInfo> {
    let r =
        s.grpc().get_stream(pb::GetStreamRequest { scope: scope.into(), stream: stream.into() }).await?.into_inner();
    r.stream.ok_or_else(|| ApiError::new(ErrorCode::Internal, "the controller returned no stream"))
}

/// A stream's policies, state and active segments.
#[utoipa::path(get, path = "/v1/scopes/{scope}/streams/{stream}", params(
    ("scope" = String, Path, description = "Scope name"), ("stream" = String, Path, description = "Stream name")), responses(
    (status = 200, body = StreamView), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody), (status = 503, body = ErrorBody)))]
async fn get_stream(
    Caller(s): Caller,
    path: Result<Path<(String, String)>, PathRejection>,
) -> ApiResult<Json<StreamView>> {
    let Path((scope, stream)) = path?;
    Ok(Json(StreamView::from(&info(&s, &scope, &stream).await?)))
}

/// The body of `PATCH /v1/scopes/{scope}/streams/{stream}`: the policies to change.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateStreamBody {
    /// New scaling policy (`fixed` keeps the current segment count).
    pub scaling: Option<String>,
    /// New retention policy.
    pub retention: Option<String>,
}

/// Changes a stream's policies.
#[utoipa::path(patch, path = "/v1/scopes/{scope}/streams/{stream}", params(
    ("scope" = String, Path, description = "Scope name"), ("stream" = String, Path, description = "Stream name")),
    request_body = UpdateStreamBody, responses(
    (status = 200, body = StreamView), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody), (status = 503, body = ErrorBody)))]
async fn update_stream(
    Caller(s): Caller,
    path: Result<Path<(String, String)>, PathRejection>,
    body: Result<Json<UpdateStreamBody>, JsonRejection>,
) -> ApiResult<Json<StreamView>> {
    let Path((scope, stream)) = path?;
    let Json(body) = body?;
    let current = info(&s, &scope, &stream).await?;
    let config = crate::views::update_config(&current, body.scaling.as_deref(), body.retention.as_deref())?;
    let r = s.grpc().update_stream(pb::UpdateStreamRequest { scope, stream, config: Some(config) }).await?.into_inner();
    Ok(Json(stream_view(r.stream)?))
}

/// Deletes a sealed stream.
#[utoipa::path(delete, path = "/v1/scopes/{scope}/streams/{stream}", params(
    ("scope" = String, Path, description = "Scope name"), ("stream" = String, Path, description = "Stream name")), responses(
    (status = 204), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody), (status = 503, body = ErrorBody)))]
async fn delete_stream(
    Caller(s): Caller,
    path: Result<Path<(String, String)>, PathRejection>,
) -> ApiResult<StatusCode> {
    let Path((scope, stream)) = path?;
    s.grpc().delete_stream(pb::DeleteStreamRequest { scope, stream }).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Seals a stream.
#[utoipa::path(post, path = "/v1/scopes/{scope}/streams/{stream}/seal", params(
    ("scope" = String, Path, description = "Scope name"), ("stream" = String, Path, description = "Stream name")), responses(
    (status = 200, body = StreamView), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody), (status = 503, body = ErrorBody)))]
async fn seal_stream(
    Caller(s): Caller,
    path: Result<Path<(String, String)>, PathRejection>,
) -> ApiResult<Json<StreamView>> {
    let Path((scope, stream)) = path?;
    s.grpc().seal_stream(pb::SealStreamRequest { scope: scope.clone(), stream: stream.clone() }).await?;
    Ok(Json(StreamView::from(&info(&s, &scope, &stream).await?)))
}

/// Scales a stream: split one segment, merge adjacent ones, or seal segments and give their
/// successors' key ranges.
#[utoipa::path(post, path = "/v1/scopes/{scope}/streams/{stream}/scale", params(
    ("scope" = String, Path, description = "Scope name"), ("stream" = String, Path, description = "Stream name")),
    request_body = ScaleBody, responses(
    (status = 200, body = StreamView), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody), (status = 503, body = ErrorBody)))]
async fn scale_stream(
    Caller(s): Caller,
    path: Result<Path<(String, String)>, PathRejection>,
    body: Result<Json<ScaleBody>, JsonRejection>,
) -> ApiResult<Json<StreamView>> {
    let Path((scope, stream)) = path?;
    let Json(body) = body?;
    let current = info(&s, &scope, &stream).await?;
    let req = crate::views::plan_scale(&current, &body)?;
    let r = s.grpc().scale_stream(req).await?.into_inner();
    Ok(Json(stream_view(r.stream)?))
}

/// The active segments with their segment stores.
#[utoipa::path(get, path = "/v1/scopes/{scope}/streams/{stream}/segments", params(
    ("scope" = String, Path, description = "Scope name"), ("stream" = String, Path, description = "Stream name")), responses(
    (status = 200, body = ActiveSegmentsView), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody), (status = 503, body = ErrorBody)))]
async fn active_segments(
    Caller(s): Caller,
    path: Result<Path<(String, String)>, PathRejection>,
) -> ApiResult<Json<ActiveSegmentsView>> {
    let Path((scope, stream)) = path?;
    let r = s
        .grpc()
        .get_active_segments(pb::GetActiveSegmentsRequest { scope: scope.clone(), stream: stream.clone() })
        .await?
        .into_inner();
    Ok(Json(ActiveSegmentsView::new(&scope, &stream, &r)))
}

/// Which stream cut `GET …/cut` returns.
#[derive(Debug, Clone, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
struct CutQuery {
    /// `head` (default: every head segment at its start offset), `tail` (every active
    /// segment at its length), or a time: RFC 3339 (`2026-12-07T09:00:00Z`,
    /// `2026-12-07T10:00:00+01:00`) or milliseconds since the Unix epoch. The cut at a time
    /// holds, per segment, the first event appended at or after it; reading from it returns
    /// the events appended from then on. A time ahead of the clock is 400 `TIME_IN_FUTURE`,
    /// one before the stream was created 400 `TIME_BEFORE_STREAM`.
    at: Option<String>,
}

/// A stream cut at the head or the tail of the stream, or at a time.
#[utoipa::path(get, path = "/v1/scopes/{scope}/streams/{stream}/cut", params(
    ("scope" = String, Path, description = "Scope name"), ("stream" = String, Path, description = "Stream name"), CutQuery), responses(
    (status = 200, body = StreamCutView), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody), (status = 503, body = ErrorBody)))]
async fn stream_cut(
    Caller(s): Caller,
    path: Result<Path<(String, String)>, PathRejection>,
    query: Result<Query<CutQuery>, QueryRejection>,
) -> ApiResult<Json<StreamCutView>> {
    use pb::get_stream_cut_request::Which;
    let Path((scope, stream)) = path?;
    let Query(q) = query.map_err(|e| ApiError::new(ErrorCode::InvalidArgument, e.body_text()))?;
    let (which, time_ms) = match q.at.as_deref() {
        None | Some("head") => (Which::HeadUnspecified, 0),
        Some("tail") => (Which::Tail, 0),
        Some(time) => match parse_time_ms(time) {
            Some(ms) => (Which::Time, ms),
            None => {
                return Err(ApiError::new(
                    ErrorCode::InvalidArgument,
                    format!(
                        "at={time:?}: use head, tail, an RFC 3339 time (2026-12-07T09:00:00Z) or milliseconds since the Unix epoch"
                    ),
                ));
            }
        },
    };
    let req = pb::GetStreamCutRequest { scope: scope.clone(), stream: stream.clone(), which: which as i32, time_ms };
    let r = s.grpc().get_stream_cut(req).await?.into_inner();
    Ok(Json(StreamCutView::new(&scope, &stream, &r.cut)))
}

/// A time as `GET …/cut?at=` takes it, in milliseconds since the Unix epoch: that number
/// itself, or RFC 3339 with `Z` or a numeric offset (`2026-12-07T10:00:00.250+01:00`).
/// `None` if it is neither, or before 1970.
fn parse_time_ms(text: &str) -> Option<u64> {
    if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) {
        return text.parse().ok();
    }
    nadi_proto::clock::parse_rfc3339_ms(text)
}

/// Truncates a stream at a stream cut, or before a time (`before`: at the cut at that time, so
/// every event appended before it goes): segments wholly before the cut are deleted, the cut's
/// segments truncated at their offsets; the cut becomes the head. Every offset must be an event
/// boundary (an offset from `GET …/cut` or a reader's position): an offset inside an event is
/// refused with 400 `INVALID_ARGUMENT` before any segment is touched, and so are offsets past a
/// segment's end.
#[utoipa::path(post, path = "/v1/scopes/{scope}/streams/{stream}/truncate", params(
    ("scope" = String, Path, description = "Scope name"), ("stream" = String, Path, description = "Stream name")),
    request_body = TruncateBody, responses(
    (status = 200, body = TruncatedView), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody), (status = 503, body = ErrorBody)))]
async fn truncate_stream(
    Caller(s): Caller,
    path: Result<Path<(String, String)>, PathRejection>,
    body: Result<Json<TruncateBody>, JsonRejection>,
) -> ApiResult<Json<TruncatedView>> {
    let Path((scope, stream)) = path?;
    let Json(body) = body?;
    let cut = match (body.before.as_deref(), body.cut.is_empty()) {
        (None, false) => {
            body.cut.iter().map(|c| pb::SegmentOffset { segment_id: c.segment_id, offset: c.offset }).collect()
        }
        (Some(time), true) => {
            let Some(time_ms) = parse_time_ms(time) else {
                return Err(ApiError::new(
                    ErrorCode::InvalidArgument,
                    format!("before={time:?}: use an RFC 3339 time (2026-12-07T09:00:00Z) or milliseconds since the Unix epoch"),
                ));
            };
            use pb::get_stream_cut_request::Which;
            let req = pb::GetStreamCutRequest {
                scope: scope.clone(),
                stream: stream.clone(),
                which: Which::Time as i32,
                time_ms,
            };
            s.grpc().get_stream_cut(req).await?.into_inner().cut
        }
        _ => return Err(ApiError::new(ErrorCode::InvalidArgument, "give exactly one of cut and before")),
    };
    let req = pb::TruncateStreamRequest { scope: scope.clone(), stream: stream.clone(), cut };
    let r = s.grpc().truncate_stream(req).await?.into_inner();
    Ok(Json(TruncatedView {
        head: StreamCutView::new(&scope, &stream, &r.head).cut,
        scope,
        stream,
        deleted_segments: r.deleted_segments,
    }))
}

/// Every epoch of a stream with its segments.
#[utoipa::path(get, path = "/v1/scopes/{scope}/streams/{stream}/history", params(
    ("scope" = String, Path, description = "Scope name"), ("stream" = String, Path, description = "Stream name")), responses(
    (status = 200, body = HistoryView), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody), (status = 503, body = ErrorBody)))]
async fn history(
    Caller(s): Caller,
    path: Result<Path<(String, String)>, PathRejection>,
) -> ApiResult<Json<HistoryView>> {
    let Path((scope, stream)) = path?;
    let r = s
        .grpc()
        .get_stream_history(pb::GetStreamHistoryRequest { scope: scope.clone(), stream: stream.clone() })
        .await?
        .into_inner();
    Ok(Json(HistoryView::new(&scope, &stream, &r)))
}

/// A picture of the stream's segments over time (key space upwards, time to the right),
/// coloured by why each segment was created.
#[utoipa::path(get, path = "/v1/scopes/{scope}/streams/{stream}/history.svg", params(
    ("scope" = String, Path, description = "Scope name"), ("stream" = String, Path, description = "Stream name")), responses(
    (status = 200, content_type = "image/svg+xml", body = String), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody), (status = 503, body = ErrorBody)))]
async fn history_svg(Caller(s): Caller, path: Result<Path<(String, String)>, PathRejection>) -> ApiResult<Response> {
    let Path((scope, stream)) = path?;
    let r = s
        .grpc()
        .get_stream_history(pb::GetStreamHistoryRequest { scope: scope.clone(), stream: stream.clone() })
        .await?
        .into_inner();
    let svg = crate::history_svg::render(&HistoryView::new(&scope, &stream, &r), crate::service::now_ms());
    Ok(([(header::CONTENT_TYPE, "image/svg+xml")], svg).into_response())
}

/// The transactions of a stream the controller remembers: open, committing and aborting ones,
/// and recently finished ones.
#[utoipa::path(get, path = "/v1/scopes/{scope}/streams/{stream}/transactions", params(
    ("scope" = String, Path, description = "Scope name"), ("stream" = String, Path, description = "Stream name")), responses(
    (status = 200, body = TxnListView), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody), (status = 503, body = ErrorBody)))]
async fn list_txns(
    Caller(s): Caller,
    path: Result<Path<(String, String)>, PathRejection>,
) -> ApiResult<Json<TxnListView>> {
    let Path((scope, stream)) = path?;
    let r =
        s.txns().list_txns(pb::ListTxnsRequest { scope: scope.clone(), stream: stream.clone() }).await?.into_inner();
    Ok(Json(TxnListView { scope, stream, transactions: r.txns.iter().map(TxnView::from).collect() }))
}

/// One transaction's state and segments.
#[utoipa::path(get, path = "/v1/scopes/{scope}/streams/{stream}/transactions/{txn}", params(
    ("scope" = String, Path, description = "Scope name"), ("stream" = String, Path, description = "Stream name"),
    ("txn" = String, Path, description = "Transaction id")), responses(
    (status = 200, body = TxnView), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody), (status = 503, body = ErrorBody)))]
async fn get_txn(
    Caller(s): Caller,
    path: Result<Path<(String, String, String)>, PathRejection>,
) -> ApiResult<Json<TxnView>> {
    let Path((scope, stream, txn)) = path?;
    nadi_proto::names::validate_scope(&scope).map_err(MetaError::from)?;
    nadi_proto::names::validate_stream(&stream).map_err(MetaError::from)?;
    let r = s.txns().get_txn(pb::GetTxnRequest { txn_id: txn.clone() }).await?.into_inner();
    let t = r.txn.ok_or_else(|| ApiError::new(ErrorCode::Internal, "the controller returned no transaction"))?;
    // The id is global; under another stream's path it does not exist.
    if t.scope != scope || t.stream != stream {
        return Err(MetaError::TxnNotFound(format!("{txn} of stream {scope}/{stream}")).into());
    }
    Ok(Json(TxnView::from(&t)))
}

/// Looks up transaction `txn` and checks it belongs to `scope/stream` (ids are global).
async fn txn_of(s: &AppState, scope: &str, stream: &str, txn: &str) -> ApiResult<pb::TxnInfo> {
    nadi_proto::names::validate_scope(scope).map_err(MetaError::from)?;
    nadi_proto::names::validate_stream(stream).map_err(MetaError::from)?;
    let r = s.txns().get_txn(pb::GetTxnRequest { txn_id: txn.to_owned() }).await?.into_inner();
    let t = r.txn.ok_or_else(|| ApiError::new(ErrorCode::Internal, "the controller returned no transaction"))?;
    if t.scope != scope || t.stream != stream {
        return Err(MetaError::TxnNotFound(format!("{txn} of stream {scope}/{stream}")).into());
    }
    Ok(t)
}

/// Commits a transaction (what `nadi txn commit` does): all its events become readable.
/// Committing a committed transaction succeeds; an aborted one gives 409 `TXN_ABORTED`.
#[utoipa::path(post, path = "/v1/scopes/{scope}/streams/{stream}/transactions/{txn}/commit", params(
    ("scope" = String, Path, description = "Scope name"), ("stream" = String, Path, description = "Stream name"),
    ("txn" = String, Path, description = "Transaction id")), responses(
    (status = 200, body = TxnView), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody), (status = 503, body = ErrorBody)))]
async fn commit_txn(
    Caller(s): Caller,
    path: Result<Path<(String, String, String)>, PathRejection>,
) -> ApiResult<Json<TxnView>> {
    let Path((scope, stream, txn)) = path?;
    txn_of(&s, &scope, &stream, &txn).await?;
    let r = s.txns().commit_txn(pb::CommitTxnRequest { txn_id: txn }).await?.into_inner();
    txn_view(r.txn)
}

/// The transaction a commit or abort answered with.
fn txn_view(t: Option<pb::TxnInfo>) -> ApiResult<Json<TxnView>> {
    let t = t.ok_or_else(|| ApiError::new(ErrorCode::Internal, "the controller returned no transaction"))?;
    Ok(Json(TxnView::from(&t)))
}

/// Aborts a transaction (what `nadi txn abort` does): none of its events will be readable.
#[utoipa::path(post, path = "/v1/scopes/{scope}/streams/{stream}/transactions/{txn}/abort", params(
    ("scope" = String, Path, description = "Scope name"), ("stream" = String, Path, description = "Stream name"),
    ("txn" = String, Path, description = "Transaction id")), responses(
    (status = 200, body = TxnView), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody), (status = 503, body = ErrorBody)))]
async fn abort_txn(
    Caller(s): Caller,
    path: Result<Path<(String, String, String)>, PathRejection>,
) -> ApiResult<Json<TxnView>> {
    let Path((scope, stream, txn)) = path?;
    txn_of(&s, &scope, &stream, &txn).await?;
    let r = s.txns().abort_txn(pb::AbortTxnRequest { txn_id: txn }).await?.into_inner();
    txn_view(r.txn)
}

/// Controller members, leader, segment stores and container assignment.
#[utoipa::path(get, path = "/v1/cluster", responses((status = 200, body = ClusterView), (status = 503, body = ErrorBody)))]
async fn cluster(Caller(s): Caller) -> ApiResult<Json<ClusterView>> {
    let r = s.grpc().get_cluster_info(pb::GetClusterInfoRequest {}).await?.into_inner();
    Ok(Json(ClusterView::from(&r)))
}

/// The reader groups of a scope.
#[utoipa::path(get, path = "/v1/scopes/{scope}/reader-groups", params(("scope" = String, Path, description = "Scope name")), responses(
    (status = 200, body = ReaderGroupListView), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody), (status = 503, body = ErrorBody)))]
async fn list_groups(
    Caller(s): Caller,
    path: Result<Path<String>, PathRejection>,
) -> ApiResult<Json<ReaderGroupListView>> {
    let Path(scope) = path?;
    let r = s.groups().list_reader_groups(pb::ListReaderGroupsRequest { scope: scope.clone() }).await?.into_inner();
    Ok(Json(ReaderGroupListView { scope, groups: r.groups }))
}

/// The body of `POST /v1/scopes/{scope}/reader-groups`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateReaderGroupBody {
    /// The group's name.
    pub group: String,
    /// Streams of the scope the group reads (at least one).
    pub streams: Vec<String>,
    /// `head` (default), `tail`, or a stream cut `STREAM/SEGMENT_ID=OFFSET,…`.
    pub from: Option<String>,
    /// Hold the streams' data until this group's checkpoints pass it (consumption-based
    /// retention); default false.
    #[serde(default)]
    pub subscriber: bool,
}

fn start_pb(from: Option<&str>) -> Result<pb::ReaderGroupStart, MetaError> {
    use pb::reader_group_start::Kind;
    Ok(match from.unwrap_or("head") {
        "head" => pb::ReaderGroupStart { kind: Kind::HeadUnspecified as i32, stream_cut: vec![] },
        "tail" => pb::ReaderGroupStart { kind: Kind::Tail as i32, stream_cut: vec![] },
        cut => pb::ReaderGroupStart { kind: Kind::StreamCut as i32, stream_cut: crate::views::parse_stream_cut(cut)? },
    })
}

fn group_view(g: Option<pb::ReaderGroupInfo>) -> ApiResult<ReaderGroupView> {
    g.map(|g| ReaderGroupView::from(&g))
        .ok_or_else(|| ApiError::new(ErrorCode::Internal, "the controller returned no reader group"))
}

/// Creates a reader group.
#[utoipa::path(post, path = "/v1/scopes/{scope}/reader-groups", params(("scope" = String, Path, description = "Scope name")),
    request_body = CreateReaderGroupBody, responses(
    (status = 201, body = ReaderGroupView), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody), (status = 503, body = ErrorBody)))]
async fn create_group(
    Caller(s): Caller,
    path: Result<Path<String>, PathRejection>,
    body: Result<Json<CreateReaderGroupBody>, JsonRejection>,
) -> ApiResult<(StatusCode, Json<ReaderGroupView>)> {
    let Path(scope) = path?;
    let Json(body) = body?;
    let start = start_pb(body.from.as_deref())?;
    let r = s
        .groups()
        .create_reader_group(pb::CreateReaderGroupRequest {
            scope,
            group: body.group,
            streams: body.streams,
            start: Some(start),
            subscriber: body.subscriber,
        })
        .await?
        .into_inner();
    Ok((StatusCode::CREATED, Json(group_view(r.group)?)))
}

/// A reader group: readers, segment assignment, positions and lag.
#[utoipa::path(get, path = "/v1/scopes/{scope}/reader-groups/{group}", params(
    ("scope" = String, Path, description = "Scope name"), ("group" = String, Path, description = "Reader group name")), responses(
    (status = 200, body = ReaderGroupView), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody), (status = 503, body = ErrorBody)))]
async fn get_group(
    Caller(s): Caller,
    path: Result<Path<(String, String)>, PathRejection>,
) -> ApiResult<Json<ReaderGroupView>> {
    let Path((scope, group)) = path?;
    let r = s.groups().get_reader_group(pb::GetReaderGroupRequest { scope, group }).await?.into_inner();
    Ok(Json(group_view(r.group)?))
}

/// Deletes a reader group.
#[utoipa::path(delete, path = "/v1/scopes/{scope}/reader-groups/{group}", params(
    ("scope" = String, Path, description = "Scope name"), ("group" = String, Path, description = "Reader group name")), responses(
    (status = 204), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody), (status = 503, body = ErrorBody)))]
async fn delete_group(Caller(s): Caller, path: Result<Path<(String, String)>, PathRejection>) -> ApiResult<StatusCode> {
    let Path((scope, group)) = path?;
    s.groups().delete_reader_group(pb::DeleteReaderGroupRequest { scope, group }).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The body of `POST …/reader-groups/{group}/checkpoints`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CheckpointBody {
    /// The checkpoint's name, unique within the group.
    pub name: String,
}

fn checkpoint_view(c: Option<pb::CheckpointInfo>) -> ApiResult<CheckpointView> {
    c.map(|c| CheckpointView::from(&c))
        .ok_or_else(|| ApiError::new(ErrorCode::Internal, "the controller returned no checkpoint"))
}

/// Starts a checkpoint: every reader records its position at its next sync. Poll
/// `GET …/checkpoints/{checkpoint}` until `complete`.
#[utoipa::path(post, path = "/v1/scopes/{scope}/reader-groups/{group}/checkpoints", params(
    ("scope" = String, Path, description = "Scope name"), ("group" = String, Path, description = "Reader group name")),
    request_body = CheckpointBody, responses(
    (status = 201, body = CheckpointView), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody), (status = 503, body = ErrorBody)))]
async fn create_checkpoint(
    Caller(s): Caller,
    path: Result<Path<(String, String)>, PathRejection>,
    body: Result<Json<CheckpointBody>, JsonRejection>,
) -> ApiResult<(StatusCode, Json<CheckpointView>)> {
    let Path((scope, group)) = path?;
    let Json(body) = body?;
    let r = s
        .groups()
        .initiate_checkpoint(pb::InitiateCheckpointRequest { scope, group, checkpoint: body.name })
        .await?
        .into_inner();
    Ok((StatusCode::CREATED, Json(checkpoint_view(r.checkpoint)?)))
}

/// A checkpoint, complete (with its positions) or pending (with the readers it waits for).
#[utoipa::path(get, path = "/v1/scopes/{scope}/reader-groups/{group}/checkpoints/{checkpoint}", params(
    ("scope" = String, Path, description = "Scope name"), ("group" = String, Path, description = "Reader group name"),
    ("checkpoint" = String, Path, description = "Checkpoint name")), responses(
    (status = 200, body = CheckpointView), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody), (status = 503, body = ErrorBody)))]
async fn get_checkpoint(
    Caller(s): Caller,
    path: Result<Path<(String, String, String)>, PathRejection>,
) -> ApiResult<Json<CheckpointView>> {
    let Path((scope, group, checkpoint)) = path?;
    let r = s.groups().get_checkpoint(pb::GetCheckpointRequest { scope, group, checkpoint }).await?.into_inner();
    Ok(Json(checkpoint_view(r.checkpoint)?))
}

/// The body of `POST …/reader-groups/{group}/reset`: a checkpoint name or a stream cut.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ResetBody {
    /// A completed checkpoint of the group.
    pub checkpoint: Option<String>,
    /// Or a stream cut `STREAM/SEGMENT_ID=OFFSET,…`.
    pub cut: Option<String>,
}

/// Moves a reader group to a checkpoint or a stream cut; its readers must join again.
#[utoipa::path(post, path = "/v1/scopes/{scope}/reader-groups/{group}/reset", params(
    ("scope" = String, Path, description = "Scope name"), ("group" = String, Path, description = "Reader group name")),
    request_body = ResetBody, responses(
    (status = 200, body = ReaderGroupView), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody), (status = 503, body = ErrorBody)))]
async fn reset_group(
    Caller(s): Caller,
    path: Result<Path<(String, String)>, PathRejection>,
    body: Result<Json<ResetBody>, JsonRejection>,
) -> ApiResult<Json<ReaderGroupView>> {
    let Path((scope, group)) = path?;
    let Json(body) = body?;
    let (checkpoint, stream_cut) = match (body.checkpoint, body.cut) {
        (Some(c), None) => (c, vec![]),
        (None, Some(cut)) => (String::new(), crate::views::parse_stream_cut(&cut)?),
        _ => {
            return Err(ApiError::new(ErrorCode::InvalidArgument, "give exactly one of `checkpoint` and `cut`"));
        }
    };
    let r = s
        .groups()
        .reset_reader_group(pb::ResetReaderGroupRequest { scope, group, checkpoint, stream_cut })
        .await?
        .into_inner();
    Ok(Json(group_view(r.group)?))
}

/// Declares a reader offline: its segments go back at its last synced positions.
#[utoipa::path(post, path = "/v1/scopes/{scope}/reader-groups/{group}/readers/{reader}/offline", params(
    ("scope" = String, Path, description = "Scope name"), ("group" = String, Path, description = "Reader group name"),
    ("reader" = String, Path, description = "Reader id")), responses(
    (status = 204), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody), (status = 503, body = ErrorBody)))]
async fn reader_offline(
    Caller(s): Caller,
    path: Result<Path<(String, String, String)>, PathRejection>,
) -> ApiResult<StatusCode> {
    let Path((scope, group, reader_id)) = path?;
    s.groups().reader_offline(pb::ReaderOfflineRequest { scope, group, reader_id }).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cut_times_are_rfc3339_or_milliseconds() {
        assert_eq!(parse_time_ms("1765098000000"), Some(1_765_098_000_000));
        assert_eq!(parse_time_ms("2025-12-07T09:00:00Z"), Some(1_765_098_000_000));
        assert_eq!(parse_time_ms("2025-12-07T09:00:00.250Z"), Some(1_765_098_000_250));
        assert_eq!(parse_time_ms("2025-12-07T10:30:00+01:30"), Some(1_765_098_000_000));
        assert_eq!(parse_time_ms("2025-12-07T04:00:00-05:00"), Some(1_765_098_000_000));
        for bad in ["", "yesterday", "-1h", "2025-12-07", "2025-12-07T09:00:00+25:00", "1970-01-01T00:00:00+01:00"] {
            assert_eq!(parse_time_ms(bad), None, "{bad:?}");
        }
    }
}
