//! Garbage on the wire gets a typed error.
//!
//! When a request body is not a valid message (wrong wire types, invalid UTF-8 in a string,
//! truncated frames), the gRPC framework answers INTERNAL with a bare message such as "failed
//! to decode Protobuf message: …". Nadi's own errors always carry a `google.rpc.ErrorInfo`
//! detail; a framework error without one is rewritten here to INVALID_ARGUMENT with the stable
//! code `INVALID_ARGUMENT`, keeping the framework's message. The request never reached a
//! handler, so nothing was changed.
//!
//! This covers errors reported in the response headers (unary calls, and streams that fail
//! before their first reply). A bad message later in a long stream ends that stream with the
//! framework's INTERNAL status in its trailers.

use std::collections::HashMap;
use std::task::{Context, Poll};

use futures::future::BoxFuture;
use nadi_proto::ErrorCode;
use tonic::body::Body;
use tower::{Layer, Service};

const DETAILS: &str = "grpc-status-details-bin";

/// The layer; see the module docs.
#[derive(Debug, Clone, Copy, Default)]
pub struct TypedDecodeErrorsLayer;

impl<S> Layer<S> for TypedDecodeErrorsLayer {
    type Service = TypedDecodeErrors<S>;

    fn layer(&self, inner: S) -> Self::Service {
        TypedDecodeErrors { inner }
    }
}

/// The service built by [`TypedDecodeErrorsLayer`].
#[derive(Debug, Clone)]
pub struct TypedDecodeErrors<S> {
    inner: S,
}

impl<S> Service<http::Request<Body>> for TypedDecodeErrors<S>
where
    S: Service<http::Request<Body>, Response = http::Response<Body>> + Clone + Send + 'static,
    S::Future: Send,
    S::Error: Into<tower::BoxError>,
{
    type Response = http::Response<Body>;
    type Error = tower::BoxError;
    type Future = BoxFuture<'static, Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, req: http::Request<Body>) -> Self::Future {
        let fut = self.inner.call(req);
        Box::pin(async move {
            let resp = fut.await.map_err(Into::into)?;
            if resp.headers().contains_key(DETAILS) {
                return Ok(resp);
            }
            match tonic::Status::from_header_map(resp.headers()) {
                Some(s) if s.code() == tonic::Code::Internal => Ok(nadi_proto::errors::to_status(
                    ErrorCode::InvalidArgument,
                    format!("malformed request: {}", s.message()),
                    HashMap::new(),
                )
                .into_http()),
                _ => Ok(resp),
            }
        })
    }
}
