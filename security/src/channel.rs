//! Client channels: a tonic channel that carries the caller's bearer token on every request
//! and, for `https://` URLs, speaks TLS trusting the configured CA (the system's roots when
//! none is configured) and, when the [`ClientTls`] holds a certificate and key (a node calling
//! another node), presenting that certificate. `http://` URLs stay plaintext.
//!
//! Every gRPC client in Nadi (the client library, the CLI, the admin HTTP API calling its
//! controller, a controller calling another, a segment store calling the controllers or its
//! replicas) builds its channels here, so a token or a CA given once applies everywhere.

use std::task::{Context, Poll};
use std::time::Duration;

use http::HeaderValue;
use tonic::transport::Endpoint;

use crate::tls::ClientTls;

/// How a client authenticates itself and whom it trusts.
#[derive(Debug, Clone, Default)]
pub struct ClientSecurity {
    /// Sent as `authorization: Bearer <token>` on every request.
    pub token: Option<String>,
    /// Used for `https://` URLs.
    pub tls: Option<ClientTls>,
}

/// Why a channel could not be made.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ChannelError {
    #[error("bad URL {url:?}: {reason}")]
    BadUrl { url: String, reason: String },
    #[error("the token cannot be sent as a header (it must be visible ASCII)")]
    BadToken,
    #[error("TLS for {url}: {reason}")]
    Tls { url: String, reason: String },
}

impl ClientSecurity {
    /// The `authorization` header value, if a token is set.
    pub fn header(&self) -> Result<Option<HeaderValue>, ChannelError> {
        match &self.token {
            None => Ok(None),
            Some(t) => {
                let mut v = HeaderValue::from_str(&format!("Bearer {t}")).map_err(|_| ChannelError::BadToken)?;
                v.set_sensitive(true);
                Ok(Some(v))
            }
        }
    }

    /// An endpoint for `url` with Nadi's transport settings; TLS when `url` is `https://`.
    pub fn endpoint(&self, url: &str) -> Result<Endpoint, ChannelError> {
        let ep = Endpoint::from_shared(url.to_owned())
            .map_err(|e| ChannelError::BadUrl { url: url.to_owned(), reason: e.to_string() })?
            .connect_timeout(Duration::from_secs(5))
            .tcp_nodelay(true)
            .initial_stream_window_size(8 * 1024 * 1024)
            .initial_connection_window_size(32 * 1024 * 1024);
        if !url.starts_with("https://") {
            return Ok(ep);
        }
        // https: trust the CA of `tls` (the system's roots without one) and present its
        // certificate when it has one (a node calling another node).
        let tls = self.tls.clone().unwrap_or_default();
        let config =
            tls.tonic_config().map_err(|e| ChannelError::Tls { url: url.to_owned(), reason: e.to_string() })?;
        ep.tls_config(config).map_err(|e| ChannelError::Tls { url: url.to_owned(), reason: e.to_string() })
    }

    /// A lazily connected channel to `url` carrying the token.
    pub fn channel(&self, url: &str) -> Result<Channel, ChannelError> {
        self.wrap(self.endpoint(url)?.connect_lazy())
    }

    /// `inner` carrying this token.
    pub fn wrap(&self, inner: tonic::transport::Channel) -> Result<Channel, ChannelError> {
        Ok(Channel { inner, authorization: self.header()? })
    }
}

/// A tonic channel that adds `authorization` to every request that does not already carry
/// one (a request may carry its own: the admin HTTP API passes on its caller's token).
#[derive(Debug, Clone)]
pub struct Channel {
    inner: tonic::transport::Channel,
    authorization: Option<HeaderValue>,
}

impl Channel {
    /// A channel without a token (for tests and callers that set headers themselves).
    pub fn plain(inner: tonic::transport::Channel) -> Channel {
        Channel { inner, authorization: None }
    }

    /// This channel carrying `authorization` instead of its own (the admin HTTP API passes
    /// on its caller's header; `None` sends none).
    pub fn with_authorization(&self, authorization: Option<HeaderValue>) -> Channel {
        Channel { inner: self.inner.clone(), authorization }
    }
}

impl tower::Service<http::Request<tonic::body::Body>> for Channel {
    type Response = http::Response<tonic::body::Body>;
    type Error = tonic::transport::Error;
    type Future = tonic::transport::channel::ResponseFuture;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        tower::Service::poll_ready(&mut self.inner, cx)
    }

    fn call(&mut self, mut req: http::Request<tonic::body::Body>) -> Self::Future {
        if let Some(v) = &self.authorization
            && !req.headers().contains_key(http::header::AUTHORIZATION)
        {
            req.headers_mut().insert(http::header::AUTHORIZATION, v.clone());
        }
        self.inner.call(req)
    }
}
