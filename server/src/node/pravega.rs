//! The Pravega front end's listeners (issue 20, docs/pravega-compat.md), off unless asked for:
//!
//! - `--pravega-controller-listen` (`nadi standalone`, `nadi controller`): Pravega's
//!   controller gRPC API ([`nadi_pravega::controller`]), a client of this node's own
//!   controller endpoint (as the admin HTTP API is), behind the same TLS and authentication
//!   layer as the node's other listeners. A caller's token is checked here and passed on, so
//!   Nadi applies the caller's permissions. The Python client sends a static token as
//!   `Basic <token>` (`pravega_client_auth_method=Basic`, `pravega_client_auth_token=…`);
//!   [`BasicTokenAsBearer`] reads that as `Bearer <token>`. The layer in front matters: a
//!   call the front end makes for a caller without a token carries no token to Nadi, and over
//!   TLS its connection presents this node's certificate, which Nadi takes for a node; only
//!   callers the layer let through (a valid token, or their own verified client certificate)
//!   get that far.
//! - `--pravega-segment-listen` (`nadi standalone`, `nadi segment-store`): Pravega's
//!   segment-store wire protocol. This process binds it (so a port in use fails fast, and
//!   port 0 is resolved) and its store reports the advertised `HOST:PORT` in its heartbeats,
//!   which is what the controller API's `getURI` answers; [`serve_segments`] serves the
//!   protocol on it (`net::pravega`), over TLS when the node serves TLS. Its authentication is
//!   per request: the delegation token carries the caller's own token
//!   (`nadi_pravega::delegation`).
//!
//! Owns: serving both listeners. Calls: `node` (listeners, TLS, the gRPC server), `net`. Called by:
//! `node::standalone`, `node::controller`, `node::segment_store`.

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context;
use nadi_pravega::controller::PravegaController;
use nadi_security::auth::{AuthLayer, Authenticator};
use nadi_security::channel::ClientSecurity;
use nadi_security::tls::ServerTls;
use tokio::net::TcpListener;

use super::config::PravegaSegmentConfig;
use crate::net::pravega::PravegaWire;

/// Reads `authorization: Basic <token>` as `Bearer <token>`: how the Pravega Python client
/// sends a static token. Other headers pass unchanged.
#[derive(Debug, Clone, Copy, Default)]
pub struct BasicTokenAsBearer;

impl<S> tower::Layer<S> for BasicTokenAsBearer {
    type Service = BasicTokenAsBearerService<S>;
    fn layer(&self, inner: S) -> Self::Service {
        BasicTokenAsBearerService { inner }
    }
}

/// The service [`BasicTokenAsBearer`] builds.
#[derive(Debug, Clone)]
pub struct BasicTokenAsBearerService<S> {
    inner: S,
}

impl<S, B> tower::Service<http::Request<B>> for BasicTokenAsBearerService<S>
where
    S: tower::Service<http::Request<B>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut std::task::Context<'_>) -> std::task::Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: http::Request<B>) -> S::Future {
        let bearer = req
            .headers()
            .get(http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split_once(' '))
            .filter(|(scheme, token)| scheme.eq_ignore_ascii_case("basic") && !token.trim().is_empty())
            .and_then(|(_, token)| http::HeaderValue::from_str(&format!("Bearer {}", token.trim())).ok());
        if let Some(mut v) = bearer {
            v.set_sensitive(true);
            req.headers_mut().insert(http::header::AUTHORIZATION, v);
        }
        self.inner.call(req)
    }
}
use super::{bind, grpc_server, incoming};

/// The controller URI a Pravega application is given for `addr`: `tcp://` (`tls://` when
/// this process serves TLS), as the Pravega clients spell it.
pub fn controller_uri(addr: SocketAddr, tls: bool) -> String {
    format!("{}://{addr}", if tls { "tls" } else { "tcp" })
}

/// Serves Pravega's controller API on `listener` until `stop` fires, calling Nadi's controller
/// at `own_url` (this node's) with `client` (this node's credentials) for what no caller's
/// token covers.
pub fn serve_controller(
    own_url: &str,
    client: &ClientSecurity,
    auth: Arc<Authenticator>,
    listener: TcpListener,
    tls: Option<&Arc<ServerTls>>,
    stop: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<tokio::task::JoinHandle<Result<(), tonic::transport::Error>>> {
    let api = PravegaController::connect(&[own_url.to_owned()], client.clone())
        .with_context(|| format!("the Pravega controller API's client of {own_url}"))?;
    let server = grpc_server(tls)
        .layer(BasicTokenAsBearer)
        .layer(AuthLayer::new(auth))
        .add_service(api.into_server())
        .serve_with_incoming_shutdown(incoming(listener, tls)?, stop);
    Ok(tokio::spawn(server))
}

/// Binds `--pravega-segment-listen`; returns the listener and the `HOST:PORT` Pravega clients
/// are sent to.
pub async fn bind_segments(cfg: &PravegaSegmentConfig) -> anyhow::Result<(TcpListener, String)> {
    let listener = bind(cfg.listen, "Pravega segment store").await?;
    let advertised = cfg.advertised(listener.local_addr()?)?;
    Ok((listener, advertised))
}

/// Serves Pravega's segment-store wire protocol on `listener` until `stop` fires: one task per
/// connection, each served by `wire` ([`PravegaWire`]: appends, reads, segment metadata and
/// table segments over this store's containers). With `tls`, connections are TLS (the node's
/// certificate, reloaded like its other listeners'), as a Pravega client that was given a
/// `tls://` controller URI expects of segment stores too.
pub fn serve_segments(
    listener: TcpListener,
    tls: Option<&Arc<ServerTls>>,
    wire: PravegaWire,
    stop: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<tokio::task::JoinHandle<()>> {
    use futures::StreamExt;
    // The wire protocol has no ALPN name; the Pravega client offers none, so any config will do.
    let mut incoming =
        nadi_security::listen::Listener::new(listener, tls.map(|t| (t.clone(), nadi_security::tls::Alpn::Http)))?;
    Ok(tokio::spawn(async move {
        tokio::pin!(stop);
        loop {
            tokio::select! {
                _ = &mut stop => return,
                accepted = incoming.next() => match accepted {
                    Some(Ok(conn)) => {
                        let peer = conn.info().remote_addr;
                        let wire = wire.clone();
                        tokio::spawn(async move {
                            if let Err(why) = wire.serve(conn).await {
                                tracing::debug!(%peer, %why, "Pravega segment connection closed");
                            }
                        });
                    }
                    Some(Err(e)) => tracing::warn!(error = %e, "accepting a Pravega segment connection failed"),
                    None => return,
                },
            }
        }
    }))
}
