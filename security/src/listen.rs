//! Accepting connections, with or without TLS, for tonic and axum servers alike; what a
//! request may know about its connection ([`ConnInfo`]); and the gate of node-only services
//! ([`NodeOnlyLayer`]).
//!
//! Owns: [`Listener`] (a stream of accepted [`Conn`]s for tonic's `serve_with_incoming*`, and
//! an `axum::serve::Listener`), [`ConnInfo`] (remote address and, over TLS, the verified client
//! certificate's [`PeerIdentity`]), [`NodeOnlyLayer`]. Calls: [`crate::tls`], [`crate::auth`]
//! (the extension it reads). Called by: the
//! server programs for every listener (controller and segment store gRPC, admin and ops HTTP).
//!
//! Invariants:
//! - The accept loop only accepts: each TLS handshake runs in a task of its own, bounded by
//!   [`HANDSHAKE_TIMEOUT`], and at most [`MAX_HANDSHAKES`] run at once, so a slow or garbage
//!   client never holds up another. A failed handshake is logged at debug and the connection
//!   dropped; the server never sees it.
//! - Without TLS the same loop hands TCP connections over as they come (Nagle off, as before).
//! - The loop ends, and the listening socket closes, when the server drops the listener (as
//!   tonic and axum do when they shut down).
//! - gRPC requests carry the connection's [`ConnInfo`] in their extensions (tonic's
//!   `Connected`); axum handlers get it as `ConnectInfo<ConnInfo>` when the router is served
//!   with `into_make_service_with_connect_info::<ConnInfo>()`.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, mpsc};

use crate::auth::VerifiedClientCertificate;
use crate::tls::{Alpn, PeerIdentity, ServerTls};

/// How long a client has to complete its TLS handshake.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// TLS handshakes in progress at once on one listener; the next connection waits for one to end.
pub const MAX_HANDSHAKES: usize = 256;

/// What a request may know about the connection it came on.
#[derive(Debug, Clone)]
pub struct ConnInfo {
    /// The client's address.
    pub remote_addr: SocketAddr,
    /// Whether the connection is TLS.
    pub tls: bool,
    /// The verified client certificate's identity, if the client presented one (TLS only).
    pub peer: Option<Arc<PeerIdentity>>,
}

/// An accepted connection: plain TCP or TLS over TCP.
#[derive(Debug)]
pub struct Conn {
    io: Io,
    info: ConnInfo,
}

#[derive(Debug)]
enum Io {
    Plain(TcpStream),
    Tls(Box<tokio_rustls::server::TlsStream<TcpStream>>),
}

impl Conn {
    /// What the server knows about this connection.
    pub fn info(&self) -> &ConnInfo {
        &self.info
    }
}

/// Accepted connections of one listening socket, TLS handshakes done (see the module's
/// invariants). A `Stream` for tonic and an `axum::serve::Listener`.
#[derive(Debug)]
pub struct Listener {
    local_addr: SocketAddr,
    rx: mpsc::Receiver<Conn>,
}

impl Listener {
    /// Starts accepting on `listener`: TLS with `tls`'s current configuration for `alpn`, or
    /// plain TCP when `tls` is None. Must be called within a tokio runtime.
    pub fn new(listener: TcpListener, tls: Option<(Arc<ServerTls>, Alpn)>) -> io::Result<Listener> {
        let local_addr = listener.local_addr()?;
        let (tx, rx) = mpsc::channel(64);
        tokio::spawn(accept_loop(listener, tls, tx));
        Ok(Listener { local_addr, rx })
    }

    /// The address it listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }
}

async fn accept_loop(listener: TcpListener, tls: Option<(Arc<ServerTls>, Alpn)>, tx: mpsc::Sender<Conn>) {
    let handshakes = Arc::new(Semaphore::new(MAX_HANDSHAKES));
    loop {
        let accepted = tokio::select! {
            _ = tx.closed() => return,
            a = listener.accept() => a,
        };
        let (tcp, remote_addr) = match accepted {
            Ok(a) => a,
            Err(e) => {
                // Out of file descriptors and the like: pause rather than spin.
                tracing::warn!(error = %e, addr = ?listener.local_addr().ok(), "accepting a connection failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        // Without this, a small reply that follows another waits for the client's delayed ACK.
        let _ = tcp.set_nodelay(true);
        let Some((tls, alpn)) = &tls else {
            let conn = Conn { io: Io::Plain(tcp), info: ConnInfo { remote_addr, tls: false, peer: None } };
            if tx.send(conn).await.is_err() {
                return;
            }
            continue;
        };
        let permit = tokio::select! {
            _ = tx.closed() => return,
            p = handshakes.clone().acquire_owned() => match p { Ok(p) => p, Err(_) => return },
        };
        let acceptor = tokio_rustls::TlsAcceptor::from(tls.config(*alpn));
        let tx = tx.clone();
        tokio::spawn(async move {
            let _permit = permit;
            let stream = match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                Ok(Ok(s)) => s,
                Ok(Err(e)) => {
                    tracing::debug!(client = %remote_addr, error = %e, "TLS handshake failed");
                    return;
                }
                Err(_) => {
                    tracing::debug!(client = %remote_addr, "TLS handshake timed out");
                    return;
                }
            };
            let peer = stream.get_ref().1.peer_certificates().and_then(|c| c.first()).and_then(PeerIdentity::of);
            let info = ConnInfo { remote_addr, tls: true, peer: peer.map(Arc::new) };
            let _ = tx.send(Conn { io: Io::Tls(Box::new(stream)), info }).await;
        });
    }
}

impl futures::Stream for Listener {
    type Item = Result<Conn, io::Error>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.rx.poll_recv(cx).map(|c| c.map(Ok))
    }
}

impl axum::serve::Listener for Listener {
    type Io = Conn;
    type Addr = ConnInfo;

    async fn accept(&mut self) -> (Conn, ConnInfo) {
        match self.rx.recv().await {
            Some(conn) => {
                let info = conn.info.clone();
                (conn, info)
            }
            // The accept loop ended (the runtime is shutting down): no more connections.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> io::Result<ConnInfo> {
        Ok(ConnInfo { remote_addr: self.local_addr, tls: false, peer: None })
    }
}

impl axum::extract::connect_info::Connected<axum::serve::IncomingStream<'_, Listener>> for ConnInfo {
    fn connect_info(stream: axum::serve::IncomingStream<'_, Listener>) -> ConnInfo {
        stream.remote_addr().clone()
    }
}

impl tonic::transport::server::Connected for Conn {
    type ConnectInfo = ConnInfo;

    fn connect_info(&self) -> ConnInfo {
        self.info.clone()
    }
}

impl AsyncRead for Conn {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        match &mut self.io {
            Io::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Io::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Conn {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        match &mut self.io {
            Io::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Io::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match &mut self.io {
            Io::Plain(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            Io::Tls(s) => Pin::new(s.as_mut()).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match &self.io {
            Io::Plain(s) => s.is_write_vectored(),
            Io::Tls(s) => s.is_write_vectored(),
        }
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match &mut self.io {
            Io::Plain(s) => Pin::new(s).poll_flush(cx),
            Io::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match &mut self.io {
            Io::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Io::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

/// gRPC path prefixes of the services only nodes call: the controllers' Raft and the stores'
/// registration with them (`nadi.raft.v1`), and the stores' replication (`nadi.replica.v1`).
pub const NODE_ONLY_PREFIXES: &[&str] = &["/nadi.raft.v1.", "/nadi.replica.v1."];

/// Over TLS, tells the services who the connection proved to be, and keeps node-only services
/// for nodes: a request whose connection presented a verified client certificate carries
/// [`VerifiedClientCertificate`] (which [`crate::auth::AuthLayer`], inside this layer, takes for
/// a node), and a call to a node-only service (`prefixes`) whose connection did not present one
/// is refused as Unauthenticated. Applied only where the listener serves TLS (a plaintext
/// cluster has no certificates to ask for); a no-op when `enabled` is false. Must be outside
/// the auth layer.
#[derive(Debug, Clone)]
pub struct NodeOnlyLayer {
    enabled: bool,
    prefixes: &'static [&'static str],
}

impl NodeOnlyLayer {
    /// Gates [`NODE_ONLY_PREFIXES`] when `enabled` (the listener serves TLS).
    pub fn new(enabled: bool) -> NodeOnlyLayer {
        NodeOnlyLayer { enabled, prefixes: NODE_ONLY_PREFIXES }
    }
}

impl<S> tower::Layer<S> for NodeOnlyLayer {
    type Service = NodeOnly<S>;
    fn layer(&self, inner: S) -> NodeOnly<S> {
        NodeOnly { inner, layer: self.clone() }
    }
}

/// The service of [`NodeOnlyLayer`].
#[derive(Debug, Clone)]
pub struct NodeOnly<S> {
    inner: S,
    layer: NodeOnlyLayer,
}

impl<S, B, R> tower::Service<http::Request<B>> for NodeOnly<S>
where
    S: tower::Service<http::Request<B>, Response = http::Response<R>>,
    R: Default,
{
    type Response = http::Response<R>;
    type Error = S::Error;
    type Future = futures::future::Either<std::future::Ready<Result<http::Response<R>, S::Error>>, S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: http::Request<B>) -> Self::Future {
        if !self.layer.enabled {
            return futures::future::Either::Right(self.inner.call(req));
        }
        let peer = req.extensions().get::<ConnInfo>().and_then(|i| i.peer.clone());
        match peer {
            Some(peer) => {
                req.extensions_mut().insert(VerifiedClientCertificate { subject: peer.subject.clone() });
            }
            None if self.layer.prefixes.iter().any(|p| req.uri().path().starts_with(p)) => {
                let status = crate::auth::typed(
                    nadi_proto::errors::ErrorCode::Unauthenticated,
                    format!(
                        "{} is for Nadi nodes only: the connection must present a client certificate signed by the cluster's CA (the node's --tls-cert)",
                        req.uri().path()
                    ),
                );
                return futures::future::Either::Left(std::future::ready(Ok(status.into_http())));
            }
            None => {}
        }
        futures::future::Either::Right(self.inner.call(req))
    }
}
