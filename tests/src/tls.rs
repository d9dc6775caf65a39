//! Certificates for TLS tests, made in the test: a CA ([`Pki`]) that signs certificates for
//! loopback (`127.0.0.1`, `localhost`), written as PEM files into a test's temp dir; the flags
//! that give them to a server; and small TLS probes (the certificate a server presents, one
//! HTTPS/1.1 request) built on rustls with the `ring` provider, as the servers are.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A certificate authority of a test.
#[derive(Debug)]
pub struct Pki {
    dir: PathBuf,
    name: String,
    issuer: Issuer<'static, KeyPair>,
    /// The CA's certificate (PEM): what `--tls-ca` is given.
    pub ca: PathBuf,
}

/// A certificate and its key, as PEM files.
#[derive(Debug, Clone)]
pub struct CertFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl Pki {
    /// A new CA named `name`; its files go into `dir`.
    pub fn new(dir: &Path, name: &str) -> Pki {
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, format!("{name} CA"));
        let key = KeyPair::generate().expect("CA key");
        let pem = params.self_signed(&key).expect("self-signed CA").pem();
        let ca = dir.join(format!("{name}-ca.crt"));
        std::fs::write(&ca, pem).expect("write CA");
        Pki { dir: dir.to_owned(), name: name.to_owned(), issuer: Issuer::new(params, key), ca }
    }

    /// A certificate for loopback with common name `cn`, signed by this CA.
    pub fn issue(&self, cn: &str) -> CertFiles {
        let files = CertFiles {
            cert: self.dir.join(format!("{}-{cn}.crt", self.name)),
            key: self.dir.join(format!("{}-{cn}.key", self.name)),
        };
        self.reissue(cn, &files);
        files
    }

    /// Writes a new certificate (and key) with common name `cn` over `files`, key first.
    pub fn reissue(&self, cn: &str, files: &CertFiles) {
        let mut params =
            CertificateParams::new(vec!["127.0.0.1".to_owned(), "localhost".to_owned()]).expect("cert params");
        params.distinguished_name.push(DnType::CommonName, cn);
        let key = KeyPair::generate().expect("key");
        let cert = params.signed_by(&key, &self.issuer).expect("sign");
        std::fs::write(&files.key, key.serialize_pem()).expect("write key");
        std::fs::write(&files.cert, cert.pem()).expect("write cert");
    }

    /// `--tls-cert`, `--tls-key`, `--tls-ca` for a server presenting `files` and trusting this CA.
    pub fn server_args(&self, files: &CertFiles) -> Vec<String> {
        vec![
            "--tls-cert".into(),
            files.cert.display().to_string(),
            "--tls-key".into(),
            files.key.display().to_string(),
            "--tls-ca".into(),
            self.ca.display().to_string(),
        ]
    }
}

fn client_config(ca: &Path, alpn: &[&[u8]]) -> Arc<rustls::ClientConfig> {
    let roots = nadi_security::tls::load_roots(ca).expect("CA bundle");
    let mut config = rustls::ClientConfig::builder_with_provider(nadi_security::tls::provider())
        .with_safe_default_protocol_versions()
        .expect("protocol versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Arc::new(config)
}

async fn connect(
    addr: &str,
    ca: &Path,
    alpn: &[&[u8]],
) -> Result<tokio_rustls::client::TlsStream<tokio::net::TcpStream>, String> {
    let tcp = tokio::net::TcpStream::connect(addr).await.map_err(|e| format!("connect {addr}: {e}"))?;
    let name = rustls::pki_types::ServerName::try_from("127.0.0.1").expect("server name");
    tokio_rustls::TlsConnector::from(client_config(ca, alpn)).connect(name, tcp).await.map_err(|e| e.to_string())
}

fn block_on<T>(f: impl std::future::Future<Output = T>) -> T {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    rt.block_on(f)
}

/// The common name of the certificate the server at `addr` (`host:port`, gRPC or HTTP)
/// presents to a new connection trusting `ca`, or the handshake's error (at most 10 s).
pub fn server_cn(addr: &str, ca: &Path) -> Result<String, String> {
    block_on(async {
        let tls = tokio::time::timeout(Duration::from_secs(10), connect(addr, ca, &[b"h2", b"http/1.1"]))
            .await
            .map_err(|_| "TLS handshake timed out".to_owned())??;
        let cert = tls.get_ref().1.peer_certificates().and_then(|c| c.first()).ok_or("no server certificate")?;
        let id = nadi_security::tls::PeerIdentity::of(cert).ok_or("unparsable server certificate")?;
        id.common_name.ok_or_else(|| "no common name".to_owned())
    })
}

/// One HTTPS/1.1 `GET path` to `addr` trusting `ca`: the status and body.
pub fn https_get(addr: &str, ca: &Path, path: &str) -> Result<(u16, String), String> {
    block_on(async {
        let io = async {
            let mut tls = connect(addr, ca, &[b"http/1.1"]).await?;
            let req = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
            tls.write_all(req.as_bytes()).await.map_err(|e| e.to_string())?;
            let mut resp = Vec::new();
            tls.read_to_end(&mut resp).await.map_err(|e| e.to_string())?;
            Ok::<_, String>(resp)
        };
        let resp = tokio::time::timeout(Duration::from_secs(30), io).await.map_err(|_| "timed out".to_owned())??;
        let resp = String::from_utf8_lossy(&resp).into_owned();
        let (head, body) = resp.split_once("\r\n\r\n").ok_or_else(|| format!("malformed response {resp:?}"))?;
        let status = head.split_whitespace().nth(1).and_then(|s| s.parse().ok()).ok_or("no status")?;
        Ok((status, body.to_owned()))
    })
}
