//! Process wiring: the three server commands of the `nadi` binary and what they share.
//!
//! Owns: [`standalone`] (`nadi standalone`: everything in one process), [`controller`] (`nadi
//! controller`: one member of the controllers' Raft group), [`segment_store`] (`nadi
//! segment-store`: a store that registers with the controllers), [`registration`] (the store's
//! stable id and its heartbeats to the controllers), [`pravega`] (the Pravega front end's
//! listeners, off by default), [`config`] (every program's settings,
//! declared once), [`settings`] (how they are layered: default < file < env < flag, and
//! printed), [`logging`] (text or JSON logs on stderr), and here the listeners (plain or TLS:
//! `--tls-cert`, `--tls-key`, `--tls-ca` turn TLS on for every listener of the process) and
//! the gRPC server settings all of them use.
//! Calls: [`crate::net`] (the services it serves), [`crate::store`] (opens the store), the
//! `nadi-controller` crate (the controller node). Called by: the binary's `main`.

pub mod config;
pub mod controller;
pub mod logging;
pub mod ops_http;
pub mod pravega;
pub mod registration;
pub mod segment_store;
pub mod settings;
pub mod standalone;

use std::sync::Arc;

use anyhow::Context;
use nadi_security::listen::{Listener, NodeOnlyLayer};
use nadi_security::tls::{Alpn, ServerTls, TlsFiles};
use tokio::net::TcpListener;
use tonic::transport::Server;
use tower::layer::util::{Identity, Stack};

use crate::net::wire::TypedDecodeErrorsLayer;

pub async fn bind(addr: std::net::SocketAddr, what: &str) -> anyhow::Result<TcpListener> {
    TcpListener::bind(addr).await.with_context(|| format!("cannot listen for the {what} on {addr}"))
}

/// The TLS every listener of this process serves (None: plaintext), loaded from `files` and
/// watched for changes once a second. A file that is missing, not PEM, or a key that does not
/// match the certificate stops the start with an error naming it.
pub fn server_tls(files: &TlsFiles) -> anyhow::Result<Option<Arc<ServerTls>>> {
    if !files.serves_tls() {
        files.check_server()?;
        return Ok(None);
    }
    let tls = ServerTls::load(files)?;
    tls.watch(std::time::Duration::from_secs(1));
    Ok(Some(tls))
}

/// `https` when this process serves TLS, else `http`: the scheme of every URL it gives out
/// (its ready line, the endpoints it advertises, the URLs it calls other nodes at).
pub fn scheme(tls: Option<&Arc<ServerTls>>) -> &'static str {
    if tls.is_some() { "https" } else { "http" }
}

/// Accepted gRPC connections of `listener`, TLS when `tls` is set (handshakes off the accept
/// loop), with Nagle's algorithm off. (`Server::tcp_nodelay` applies only to listeners tonic
/// binds itself; without it, a small acknowledgement that follows another one waits for the
/// client's delayed TCP ACK, up to 40 ms, whenever the client has nothing more to send, e.g.
/// for the last events before a flush.)
pub fn incoming(listener: TcpListener, tls: Option<&Arc<ServerTls>>) -> anyhow::Result<Listener> {
    Ok(Listener::new(listener, tls.map(|t| (t.clone(), Alpn::Grpc)))?)
}

/// Accepted HTTP/1.1 connections of `listener` (admin and ops HTTP), TLS when `tls` is set.
/// Serve a router on it with `into_make_service_with_connect_info::<ConnInfo>()`.
pub fn http_incoming(listener: TcpListener, tls: Option<&Arc<ServerTls>>) -> anyhow::Result<Listener> {
    Ok(Listener::new(listener, tls.map(|t| (t.clone(), Alpn::Http)))?)
}

/// The gRPC server type of [`grpc_server`].
pub type GrpcServer = Server<Stack<TypedDecodeErrorsLayer, Stack<NodeOnlyLayer, Identity>>>;

/// A gRPC server builder with the transport tuned for large batches (see MACHINE-LIMITS), whose
/// malformed-request errors are typed (see [`crate::net::wire`]). With `tls`, calls to the
/// node-only services (Raft, registration, replication) need a verified client certificate.
pub fn grpc_server(tls: Option<&Arc<ServerTls>>) -> GrpcServer {
    Server::builder()
        .tcp_nodelay(true)
        .max_frame_size(Some(1024 * 1024 - 1))
        .initial_stream_window_size(Some(8 * 1024 * 1024))
        .initial_connection_window_size(Some(32 * 1024 * 1024))
        .layer(NodeOnlyLayer::new(tls.is_some()))
        .layer(TypedDecodeErrorsLayer)
}

/// This node's authenticator (reads the token file and the JWT key).
pub fn authenticator(
    sec: &config::SecurityConfig,
) -> anyhow::Result<std::sync::Arc<nadi_security::auth::Authenticator>> {
    Ok(std::sync::Arc::new(nadi_security::auth::Authenticator::new(&sec.auth)?))
}

/// Warns when a listener is reachable beyond this machine without TLS or without
/// authentication, and says what a loopback-only node is: open.
pub fn security_notice(sec: &config::SecurityConfig, addrs: &[std::net::SocketAddr]) -> String {
    use nadi_security::auth::AuthMode;
    let open_to_network = addrs.iter().any(|a| !a.ip().is_loopback());
    let auth_on = sec.auth.mode == AuthMode::Required;
    if open_to_network && (!sec.tls_on() || !auth_on) {
        let missing = match (sec.tls_on(), auth_on) {
            (false, false) => "without TLS and without authentication",
            (false, true) => "without TLS (tokens cross the network in clear text)",
            _ => "without authentication (anyone who reaches it may do everything)",
        };
        tracing::warn!("listening beyond loopback {missing}: see docs/security.md");
    }
    match (sec.tls_on(), auth_on) {
        (false, false) => "open: no TLS, no authentication".into(),
        (true, false) => "TLS, no authentication".into(),
        (false, true) => "authentication required, no TLS".into(),
        (true, true) => "TLS, authentication required".into(),
    }
}

/// Resolves when `rx` says stop.
pub async fn stopped(mut rx: tokio::sync::watch::Receiver<bool>) {
    let _ = rx.wait_for(|s| *s).await;
}

/// Resolves on Ctrl-C or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).expect("install SIGTERM handler");
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}
