//! TLS for listeners and channels (rustls with the `ring` provider).
//!
//! Owns: the PEM files a process is given ([`TlsFiles`]: `--tls-cert`, `--tls-key`, `--tls-ca`)
//! and what is built from them: a listener's configuration ([`ServerTls`]) and a client's
//! ([`ClientTls`], used by [`crate::channel::ClientSecurity::endpoint`] for `https://` URLs).
//! Calls: rustls, x509-parser. Called by: [`crate::listen`] (handshakes), [`crate::channel`],
//! the server programs (start-up checks).
//!
//! Invariants:
//! - One crypto provider, `ring`, always passed explicitly: other crates of the build enable
//!   rustls' `aws-lc-rs` too, and with both compiled in rustls cannot pick a default.
//! - A [`ServerTls`] always holds a configuration that loaded completely: files that fail to
//!   load (missing, not PEM, key not matching the certificate) are refused at start-up, and
//!   after start-up keep the last good configuration (with a warning) until they are fixed.
//! - Client certificates are optional at the TLS layer (clients authenticate with tokens);
//!   one that is presented must chain to `--tls-ca`, or the handshake fails. Whether a
//!   connection presented one is recorded in [`PeerIdentity`] (see [`crate::listen`]), and
//!   node-only services refuse connections without one ([`crate::listen::NodeOnlyLayer`]).
//! - Reloading: [`ServerTls::watch`] looks at the files' modification times and sizes once a
//!   second and builds a new configuration when they change; every handshake takes the
//!   configuration current at that moment, so a new connection sees a new certificate without
//!   a restart while established connections keep theirs. Clients read their files each time
//!   they make a channel.

use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock, Weak};
use std::time::{Duration, SystemTime};

use parking_lot::RwLock;
use rustls::RootCertStore;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::sign::CertifiedKey;

/// The TLS files a process was given (`--tls-cert`, `--tls-key`, `--tls-ca`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
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
    /// `ca`: the CAs the client trusts (without one, the system's roots); `cert` and `key`
    /// together: the client certificate it presents (nodes present their `--tls-cert`).
    pub files: TlsFiles,
}

/// Why TLS could not be set up from the files given.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TlsError {
    #[error("--tls-cert needs --tls-key (the certificate's private key)")]
    CertWithoutKey,
    #[error("--tls-key needs --tls-cert (the certificate of that key)")]
    KeyWithoutCert,
    #[error(
        "--tls-cert needs --tls-ca (the CA bundle that signed the nodes' certificates: nodes verify each other with it)"
    )]
    NoCa,
    #[error("cannot read the TLS {what} {}: {source}", path.display())]
    Read { what: &'static str, path: PathBuf, source: std::io::Error },
    #[error("the TLS {what} {} is not usable: {reason}", path.display())]
    Invalid { what: &'static str, path: PathBuf, reason: String },
    #[error("the TLS key {} does not match the certificate {}: {reason}", key.display(), cert.display())]
    KeyMismatch { cert: PathBuf, key: PathBuf, reason: String },
}

impl TlsError {
    /// Whether trying again later may succeed (a file being replaced), as opposed to a setting
    /// or a file that is wrong until someone changes it.
    pub fn is_retryable(&self) -> bool {
        matches!(self, TlsError::Read { .. })
    }
}

/// The crypto provider of every TLS configuration Nadi builds.
pub fn provider() -> Arc<CryptoProvider> {
    static PROVIDER: OnceLock<Arc<CryptoProvider>> = OnceLock::new();
    PROVIDER.get_or_init(|| Arc::new(rustls::crypto::ring::default_provider())).clone()
}

impl TlsFiles {
    /// Whether these files turn TLS on for a server (a certificate and its key).
    pub fn serves_tls(&self) -> bool {
        self.cert.is_some() && self.key.is_some()
    }

    /// Checks that the settings go together: a certificate needs its key and a CA, a key
    /// needs its certificate. (Whether the files load is checked by [`ServerTls::load`].)
    pub fn check_server(&self) -> Result<(), TlsError> {
        match (&self.cert, &self.key) {
            (Some(_), None) => return Err(TlsError::CertWithoutKey),
            (None, Some(_)) => return Err(TlsError::KeyWithoutCert),
            (Some(_), Some(_)) if self.ca.is_none() => return Err(TlsError::NoCa),
            _ => {}
        }
        Ok(())
    }

    /// A modification stamp of the files, to tell when they changed.
    fn stamp(&self) -> Vec<Option<(SystemTime, u64)>> {
        [&self.cert, &self.key, &self.ca]
            .into_iter()
            .map(|p| {
                let m = std::fs::metadata(p.as_ref()?).ok()?;
                Some((m.modified().ok()?, m.len()))
            })
            .collect()
    }
}

fn read(what: &'static str, path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read { what, path: path.to_owned(), source })
}

/// The certificates of a PEM file (at least one).
pub fn load_certs(what: &'static str, path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let pem = read(what, path)?;
    let invalid = |reason: String| TlsError::Invalid { what, path: path.to_owned(), reason };
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| invalid(format!("not PEM ({e})")))?;
    if certs.is_empty() {
        return Err(invalid("no PEM certificate (-----BEGIN CERTIFICATE-----) in it".into()));
    }
    Ok(certs)
}

/// The private key of a PEM file (PKCS#8, PKCS#1 or SEC1).
pub fn load_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    let pem = read("key", path)?;
    PrivateKeyDer::from_pem_slice(&pem).map_err(|e| TlsError::Invalid {
        what: "key",
        path: path.to_owned(),
        reason: match e {
            rustls::pki_types::pem::Error::NoItemsFound => {
                "no PEM private key (-----BEGIN PRIVATE KEY-----) in it".into()
            }
            e => format!("not PEM ({e})"),
        },
    })
}

/// The trust anchors of a PEM CA bundle; every certificate in it must be usable.
pub fn load_roots(path: &Path) -> Result<RootCertStore, TlsError> {
    let mut roots = RootCertStore::empty();
    for cert in load_certs("CA", path)? {
        roots.add(cert).map_err(|e| TlsError::Invalid { what: "CA", path: path.to_owned(), reason: e.to_string() })?;
    }
    Ok(roots)
}

/// A certificate chain with its private key, checked to belong together.
pub fn load_identity(cert: &Path, key: &Path) -> Result<Arc<CertifiedKey>, TlsError> {
    let chain = load_certs("certificate", cert)?;
    let der = load_key(key)?;
    let certified = CertifiedKey::from_der(chain, der, &provider()).map_err(|e| TlsError::KeyMismatch {
        cert: cert.to_owned(),
        key: key.to_owned(),
        reason: e.to_string(),
    })?;
    Ok(Arc::new(certified))
}

/// The application protocol a listener speaks, offered in ALPN.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Alpn {
    /// gRPC: HTTP/2 only (tonic's clients insist on `h2`).
    Grpc,
    /// An HTTP API for browsers, curl and probes: HTTP/1.1.
    Http,
}

/// One loaded configuration, per protocol.
#[derive(Debug)]
struct Loaded {
    grpc: Arc<rustls::ServerConfig>,
    http: Arc<rustls::ServerConfig>,
}

/// A listener's TLS: the server configuration built from `--tls-cert`, `--tls-key` and
/// `--tls-ca`, replaced when the files change (see the module's invariants).
#[derive(Debug)]
pub struct ServerTls {
    files: TlsFiles,
    current: RwLock<Arc<Loaded>>,
    /// The stamp of the files behind `current`, or of the last change that failed to load
    /// (so that a bad file is warned about once, not every second).
    seen: parking_lot::Mutex<Vec<Option<(SystemTime, u64)>>>,
}

impl ServerTls {
    /// Loads the files (checked as at start-up: any problem is an error).
    pub fn load(files: &TlsFiles) -> Result<Arc<ServerTls>, TlsError> {
        files.check_server()?;
        let stamp = files.stamp();
        let loaded = build(files)?;
        Ok(Arc::new(ServerTls {
            files: files.clone(),
            current: RwLock::new(Arc::new(loaded)),
            seen: parking_lot::Mutex::new(stamp),
        }))
    }

    /// The configuration for a handshake now.
    pub fn config(&self, alpn: Alpn) -> Arc<rustls::ServerConfig> {
        let current = self.current.read();
        match alpn {
            Alpn::Grpc => current.grpc.clone(),
            Alpn::Http => current.http.clone(),
        }
    }

    /// Reloads the files if they changed since the last look. Returns whether a new
    /// configuration was installed. Blocking file I/O: call it off the runtime's workers.
    pub fn reload_if_changed(&self) -> bool {
        let stamp = self.files.stamp();
        {
            let mut seen = self.seen.lock();
            if *seen == stamp {
                return false;
            }
            *seen = stamp;
        }
        match build(&self.files) {
            Ok(loaded) => {
                *self.current.write() = Arc::new(loaded);
                tracing::info!(cert = ?self.files.cert, "TLS certificate reloaded");
                true
            }
            Err(e) => {
                tracing::warn!(error = %e, "TLS files changed but cannot be loaded; still serving the previous certificate");
                false
            }
        }
    }

    /// Looks at the files every `every` (a second in the programs) until `self` is dropped.
    pub fn watch(self: &Arc<Self>, every: Duration) {
        let weak: Weak<ServerTls> = Arc::downgrade(self);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let Some(tls) = weak.upgrade() else { return };
                let _ = tokio::task::spawn_blocking(move || tls.reload_if_changed()).await;
            }
        });
    }
}

fn build(files: &TlsFiles) -> Result<Loaded, TlsError> {
    let (Some(cert), Some(key)) = (&files.cert, &files.key) else {
        return Err(if files.cert.is_some() { TlsError::CertWithoutKey } else { TlsError::KeyWithoutCert });
    };
    let ca = files.ca.as_ref().ok_or(TlsError::NoCa)?;
    let identity = load_identity(cert, key)?;
    let roots = Arc::new(load_roots(ca)?);
    // Client certificates: asked for, optional, and verified against the CA when given.
    let verifier = WebPkiClientVerifier::builder_with_provider(roots, provider())
        .allow_unauthenticated()
        .build()
        .map_err(|e| TlsError::Invalid { what: "CA", path: ca.clone(), reason: e.to_string() })?;
    let base = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Invalid { what: "certificate", path: cert.clone(), reason: e.to_string() })?
        .with_client_cert_verifier(verifier)
        .with_cert_resolver(Arc::new(rustls::sign::SingleCertAndKey::from(identity)));
    let with_alpn = |protocols: &[&[u8]]| {
        let mut c = base.clone();
        c.alpn_protocols = protocols.iter().map(|p| p.to_vec()).collect();
        Arc::new(c)
    };
    Ok(Loaded { grpc: with_alpn(&[b"h2"]), http: with_alpn(&[b"http/1.1"]) })
}

impl ClientTls {
    /// A client trusting the CA bundle `ca` (None: the system's roots), presenting no certificate.
    pub fn trusting(ca: Option<PathBuf>) -> ClientTls {
        ClientTls { files: TlsFiles { ca, ..Default::default() } }
    }

    /// tonic's TLS settings for a channel: the CA as its roots (the system's without one) and,
    /// when both a certificate and its key are given, that identity. Reads the files now, so a
    /// channel made after a file changed uses the new one.
    pub fn tonic_config(&self) -> Result<tonic::transport::ClientTlsConfig, TlsError> {
        let mut config = tonic::transport::ClientTlsConfig::new();
        match &self.files.ca {
            Some(ca) => {
                // Checked here so that a bad bundle is named, rather than silently trusting nothing.
                load_roots(ca)?;
                config = config.ca_certificate(tonic::transport::Certificate::from_pem(read("CA", ca)?));
            }
            None => config = config.with_native_roots(),
        }
        match (&self.files.cert, &self.files.key) {
            (Some(cert), Some(key)) => {
                load_identity(cert, key)?;
                config = config
                    .identity(tonic::transport::Identity::from_pem(read("certificate", cert)?, read("key", key)?));
            }
            (Some(_), None) => return Err(TlsError::CertWithoutKey),
            (None, Some(_)) => return Err(TlsError::KeyWithoutCert),
            (None, None) => {}
        }
        Ok(config.timeout(Duration::from_secs(10)))
    }
}

/// Who the other end of a TLS connection proved to be: the subject of the client certificate
/// it presented, verified against `--tls-ca` during the handshake. Nodes present their
/// `--tls-cert`; ordinary clients present none (they authenticate with tokens).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerIdentity {
    /// The certificate's subject, as RFC 4514 text (`CN=controller-1,O=example`).
    pub subject: String,
    /// The subject's common name, if it has one.
    pub common_name: Option<String>,
}

impl PeerIdentity {
    /// The identity in a verified end-entity certificate (None if it cannot be parsed, which
    /// after rustls verified it does not happen).
    pub fn of(cert: &CertificateDer<'_>) -> Option<PeerIdentity> {
        let (_, parsed) = x509_parser::parse_x509_certificate(cert.as_ref()).ok()?;
        let subject = parsed.subject();
        let common_name = subject.iter_common_name().next().and_then(|cn| cn.as_str().ok()).map(str::to_owned);
        Some(PeerIdentity { subject: subject.to_string(), common_name })
    }
}

/// A node-to-node URL: `HOST:PORT` gets the scheme of the node's TLS setting, and with TLS on
/// an `http://` URL becomes `https://` (a node that serves TLS calls its peers over TLS: all
/// nodes of a cluster run with the same TLS settings).
pub fn node_url(url: &str, tls: bool) -> String {
    let scheme = if tls { "https" } else { "http" };
    match url.split_once("://") {
        Some(("http", rest)) if tls => format!("https://{rest}"),
        Some(_) => url.to_owned(),
        None => format!("{scheme}://{url}"),
    }
}

#[cfg(test)]
#[path = "tls_tests.rs"]
mod tests;
