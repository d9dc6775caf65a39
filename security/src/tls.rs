//! TLS for listeners and channels (rustls).
//!
//! To be built (issue 19, item 1): server configurations from `--tls-cert`, `--tls-key` and
//! `--tls-ca` that reload when the files change; client configurations that trust `--tls-ca`
//! and, between nodes, present the node's own certificate.

use std::path::PathBuf;

/// The TLS files a process was given (`--tls-cert`, `--tls-key`, `--tls-ca`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TlsFiles {
    /// PEM certificate chain this process presents (as a server, and to other nodes as a client).
    pub cert: Option<PathBuf>,
    /// PEM private key of `cert`.
    pub key: Option<PathBuf>,
    /// PEM CA bundle this process trusts (servers it calls; nodes' client certificates).
    pub ca: Option<PathBuf>,
}

/// What a client needs to call an `https://` URL: the CA it trusts and, for a node calling
/// another node, the identity it presents.
#[derive(Debug, Clone, Default)]
pub struct ClientTls {
    pub files: TlsFiles,
}
