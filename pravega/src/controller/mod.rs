//! Pravega's controller gRPC API (`io.pravega.controller.stream.api.grpc.v1.ControllerService`,
//! the vendored `proto/Controller.proto`) served over Nadi's controller.
//!
//! The front end keeps no state of its own: it is a client of Nadi's controllers (through
//! [`NadiClient`], like the admin HTTP API), so scopes, streams, segments and transactions have
//! one source of truth and a stream made by a Pravega application is the same stream `nadi`
//! and the Rust client see. Each call carries its caller's `authorization` header on to Nadi
//! ([`NadiClient::as_caller`]), so Nadi checks the caller's permissions; only `getURI` asks
//! with the node's own credentials (where a segment is served is not the caller's secret).
//!
//! How the Pravega client (pravega-client-rust 0.3.7, inside the Python `pravega` 0.3.8)
//! reads the answers decides their shape:
//!
//! - outcomes with a status enum (`CreateScopeStatus`, `TxnStatus`, …) are answered in the enum
//!   (`SCOPE_EXISTS`, `TRANSACTION_NOT_FOUND`, …), never as a gRPC error; other failures are
//!   gRPC statuses with Nadi's error code in the details (`nadi_proto::errors`). The client
//!   gives up at once on INVALID_ARGUMENT, NOT_FOUND, ALREADY_EXISTS, PERMISSION_DENIED and
//!   UNIMPLEMENTED, and retries anything else (about ten times, backing off up to 10 s);
//! - every `SegmentId` carries its `streamInfo` and every `SegmentRange` its `segmentId` (the
//!   client unwraps them); key ranges are doubles, and the range that ends the key space ends
//!   at exactly 1.0 ([`convert::max_key`]);
//! - list calls page with a continuation token: the front end answers everything after the
//!   token in one page whose token is its last name, so the next call gets the empty page
//!   that ends the listing;
//! - segment ids are Nadi's packed `(epoch << 32) | number`, which is Pravega's encoding too,
//!   and transaction ids map to Nadi's by [`crate::txn_id`].
//!
//! RPCs not listed in docs/pravega-compat.md answer UNIMPLEMENTED (the generated default
//! stubs): reader-group and key-value-table RPCs, truncation, writer marks.
//!
//! Owns: [`PravegaController`] and the generated code ([`pb`]). Calls: `crate::txn_id`; its
//! files `scopes` (scopes and streams), `segments` (segments, `getURI`, scaling), `txns`
//! (transactions) and `convert` (shapes and errors). Called by: `nadi-server` (node wiring).

mod convert;
mod scopes;
mod segments;
mod txns;

use std::sync::Arc;

use nadi_client::NadiClient;
use parking_lot::Mutex;
use tonic::{Request, Response, Status};

/// Generated code of Pravega's controller API.
pub mod pb {
    #![allow(missing_debug_implementations, clippy::all)]
    tonic::include_proto!("io.pravega.controller.stream.api.grpc.v1");
}

use pb::controller_service_server::{ControllerService, ControllerServiceServer};

/// Pravega's controller API over Nadi's controllers. Cheap to clone.
#[derive(Debug, Clone)]
pub struct PravegaController {
    /// A client of Nadi's controllers with this node's own credentials: callers' requests go
    /// out through [`NadiClient::as_caller`] on the same connections.
    nadi: NadiClient,
    /// Where each container's store serves the Pravega wire protocol, as last fetched (see
    /// [`segments::Routes`]): `getURI` is called for every segment connection a client
    /// makes, so the cluster view is reused for a moment instead of asked each time.
    routes: Arc<Mutex<Option<segments::Fetched>>>,
}

impl PravegaController {
    /// The front end over the controllers `nadi` talks to (with this node's credentials).
    pub fn new(nadi: NadiClient) -> PravegaController {
        PravegaController { nadi, routes: Arc::default() }
    }

    /// The front end over the controllers at `controller_urls` (a node passes its own gRPC
    /// URL, as its admin HTTP API does), calling them with `security` (the node's credentials,
    /// used only where no caller's are: `getURI`). Connects lazily.
    ///
    /// # Errors
    ///
    /// As [`NadiClient::with_security`]: a URL that does not parse, a token that is not
    /// visible ASCII, TLS files that cannot be read.
    pub fn connect(
        controller_urls: &[String],
        security: nadi_client::ClientSecurity,
    ) -> Result<PravegaController, nadi_client::ClientError> {
        Ok(PravegaController::new(NadiClient::with_security(controller_urls, security)?))
    }

    /// The tonic service, ready to be served.
    pub fn into_server(self) -> ControllerServiceServer<PravegaController> {
        ControllerServiceServer::new(self)
    }

    /// A client of Nadi that acts as the caller of `req`: it carries the request's
    /// `authorization` header (Pravega clients with auth send `Bearer <token>`), or none.
    fn caller<T>(&self, req: &Request<T>) -> NadiClient {
        let authorization = req
            .metadata()
            .get(http::header::AUTHORIZATION.as_str())
            .and_then(|v| http::HeaderValue::from_bytes(v.as_bytes()).ok());
        self.nadi.as_caller(authorization)
    }
}

type Reply<T> = Result<Response<T>, Status>;

/// How long a delegation token lasts before the client asks for another (the token inside is
/// checked on every request whatever this says).
const DELEGATION_TOKEN_SECS: u64 = 3600;

#[tonic::async_trait]
impl ControllerService for PravegaController {
    async fn create_scope(&self, req: Request<pb::ScopeInfo>) -> Reply<pb::CreateScopeStatus> {
        scopes::create_scope(self, req).await
    }

    async fn delete_scope(&self, req: Request<pb::ScopeInfo>) -> Reply<pb::DeleteScopeStatus> {
        scopes::delete_scope(self, req).await
    }

    async fn list_scopes(&self, req: Request<pb::ScopesRequest>) -> Reply<pb::ScopesResponse> {
        scopes::list_scopes(self, req).await
    }

    async fn check_scope_exists(&self, req: Request<pb::ScopeInfo>) -> Reply<pb::ExistsResponse> {
        scopes::check_scope_exists(self, req).await
    }

    async fn create_stream(&self, req: Request<pb::StreamConfig>) -> Reply<pb::CreateStreamStatus> {
        scopes::create_stream(self, req).await
    }

    async fn update_stream(&self, req: Request<pb::StreamConfig>) -> Reply<pb::UpdateStreamStatus> {
        scopes::update_stream(self, req).await
    }

    async fn get_stream_configuration(&self, req: Request<pb::StreamInfo>) -> Reply<pb::StreamConfig> {
        scopes::get_stream_configuration(self, req).await
    }

    async fn seal_stream(&self, req: Request<pb::StreamInfo>) -> Reply<pb::UpdateStreamStatus> {
        scopes::seal_stream(self, req).await
    }

    async fn delete_stream(&self, req: Request<pb::StreamInfo>) -> Reply<pb::DeleteStreamStatus> {
        scopes::delete_stream(self, req).await
    }

    async fn list_streams_in_scope(
        &self,
        req: Request<pb::StreamsInScopeRequest>,
    ) -> Reply<pb::StreamsInScopeResponse> {
        scopes::list_streams_in_scope(self, req).await
    }

    async fn check_stream_exists(&self, req: Request<pb::StreamInfo>) -> Reply<pb::ExistsResponse> {
        scopes::check_stream_exists(self, req).await
    }

    async fn get_current_segments(&self, req: Request<pb::StreamInfo>) -> Reply<pb::SegmentRanges> {
        segments::get_current_segments(self, req).await
    }

    async fn get_epoch_segments(&self, req: Request<pb::GetEpochSegmentsRequest>) -> Reply<pb::SegmentRanges> {
        segments::get_epoch_segments(self, req).await
    }

    async fn get_segments(&self, req: Request<pb::GetSegmentsRequest>) -> Reply<pb::SegmentsAtTime> {
        segments::get_segments(self, req).await
    }

    async fn get_segments_immediately_following(&self, req: Request<pb::SegmentId>) -> Reply<pb::SuccessorResponse> {
        segments::successors(self, req).await
    }

    /// The deprecated, misspelled name of `getSegmentsImmediatelyFollowing` (older clients).
    async fn get_segments_immediatly_following(&self, req: Request<pb::SegmentId>) -> Reply<pb::SuccessorResponse> {
        segments::successors(self, req).await
    }

    async fn get_uri(&self, req: Request<pb::SegmentId>) -> Reply<pb::NodeUri> {
        segments::get_uri(self, req).await
    }

    async fn is_segment_valid(&self, req: Request<pb::SegmentId>) -> Reply<pb::SegmentValidityResponse> {
        segments::is_segment_valid(self, req).await
    }

    async fn scale(&self, req: Request<pb::ScaleRequest>) -> Reply<pb::ScaleResponse> {
        segments::scale(self, req).await
    }

    async fn check_scale(&self, req: Request<pb::ScaleStatusRequest>) -> Reply<pb::ScaleStatusResponse> {
        segments::check_scale(self, req).await
    }

    async fn create_transaction(&self, req: Request<pb::CreateTxnRequest>) -> Reply<pb::CreateTxnResponse> {
        txns::create_transaction(self, req).await
    }

    async fn ping_transaction(&self, req: Request<pb::PingTxnRequest>) -> Reply<pb::PingTxnStatus> {
        txns::ping_transaction(self, req).await
    }

    async fn commit_transaction(&self, req: Request<pb::TxnRequest>) -> Reply<pb::TxnStatus> {
        txns::commit_transaction(self, req).await
    }

    async fn abort_transaction(&self, req: Request<pb::TxnRequest>) -> Reply<pb::TxnStatus> {
        txns::abort_transaction(self, req).await
    }

    async fn check_transaction_state(&self, req: Request<pb::TxnRequest>) -> Reply<pb::TxnState> {
        txns::check_transaction_state(self, req).await
    }

    /// The caller's own bearer token wrapped as a delegation token ([`crate::delegation`]),
    /// which the segment port unwraps and checks; empty when the call carries no token (auth
    /// off), which the client accepts.
    async fn get_delegation_token(&self, req: Request<pb::StreamInfo>) -> Reply<pb::DelegationToken> {
        let token = req
            .metadata()
            .get(http::header::AUTHORIZATION.as_str())
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split_once(' '))
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
            .map(|(_, t)| t.trim().to_owned())
            .filter(|t| !t.is_empty());
        let Some(token) = token else {
            return Ok(Response::new(pb::DelegationToken { delegation_token: String::new() }));
        };
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
        let delegation_token = crate::delegation::wrap(&token, now + DELEGATION_TOKEN_SECS);
        Ok(Response::new(pb::DelegationToken { delegation_token }))
    }
}
