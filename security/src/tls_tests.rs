//! Unit tests of the TLS configurations and the listener: start-up checks name the problem,
//! handshakes with the right and the wrong CA, client certificates seen by the server, the
//! node-only gate, reload on file change, and handshakes that do not hold up the accept loop.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use futures::StreamExt;
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::*;
use crate::listen::{ConnInfo, Listener, NodeOnlyLayer};

/// A CA that signs certificates for 127.0.0.1.
struct Ca {
    issuer: Issuer<'static, KeyPair>,
    pem: String,
}

impl Ca {
    fn new(name: &str) -> Ca {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        let key = KeyPair::generate().unwrap();
        let pem = params.self_signed(&key).unwrap().pem();
        Ca { issuer: Issuer::new(params, key), pem }
    }

    /// (certificate PEM, key PEM) for `cn`, valid for 127.0.0.1 and localhost.
    fn sign(&self, cn: &str) -> (String, String) {
        let mut params = CertificateParams::new(vec!["127.0.0.1".to_owned(), "localhost".to_owned()]).unwrap();
        params.distinguished_name.push(DnType::CommonName, cn);
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        (cert.pem(), key.serialize_pem())
    }
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

/// Files for a server signed by `ca`, named with `prefix`.
fn server_files(dir: &Path, ca: &Ca, prefix: &str, cn: &str) -> TlsFiles {
    let (cert, key) = ca.sign(cn);
    TlsFiles {
        cert: Some(write(dir, &format!("{prefix}.crt"), &cert)),
        key: Some(write(dir, &format!("{prefix}.key"), &key)),
        ca: Some(write(dir, &format!("{prefix}-ca.crt"), &ca.pem)),
    }
}

#[test]
fn start_up_checks_name_the_problem() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("test CA");
    let good = server_files(dir.path(), &ca, "good", "node-1");
    assert!(ServerTls::load(&good).is_ok());

    let no_key = TlsFiles { key: None, ..good.clone() };
    assert!(matches!(ServerTls::load(&no_key), Err(TlsError::CertWithoutKey)));
    let no_cert = TlsFiles { cert: None, ..good.clone() };
    assert!(matches!(ServerTls::load(&no_cert), Err(TlsError::KeyWithoutCert)));
    let no_ca = TlsFiles { ca: None, ..good.clone() };
    assert!(matches!(ServerTls::load(&no_ca), Err(TlsError::NoCa)));

    let missing = TlsFiles { cert: Some(dir.path().join("nope.crt")), ..good.clone() };
    let e = ServerTls::load(&missing).unwrap_err();
    assert!(matches!(e, TlsError::Read { .. }) && e.is_retryable(), "{e}");
    assert!(e.to_string().contains("nope.crt"), "{e}");

    let garbage = TlsFiles { cert: Some(write(dir.path(), "garbage.crt", "hello\n")), ..good.clone() };
    let e = ServerTls::load(&garbage).unwrap_err();
    assert!(e.to_string().contains("no PEM certificate"), "{e}");
    let garbage_key = TlsFiles { key: Some(write(dir.path(), "garbage.key", "hello\n")), ..good.clone() };
    let e = ServerTls::load(&garbage_key).unwrap_err();
    assert!(e.to_string().contains("no PEM private key"), "{e}");

    // Another certificate's key.
    let other = server_files(dir.path(), &ca, "other", "node-2");
    let mismatched = TlsFiles { key: other.key.clone(), ..good.clone() };
    let e = ServerTls::load(&mismatched).unwrap_err();
    assert!(matches!(e, TlsError::KeyMismatch { .. }), "{e}");
    assert!(!e.is_retryable());
}

#[test]
fn node_urls_follow_the_tls_setting() {
    assert_eq!(node_url("127.0.0.1:1", false), "http://127.0.0.1:1");
    assert_eq!(node_url("127.0.0.1:1", true), "https://127.0.0.1:1");
    assert_eq!(node_url("http://h:1", true), "https://h:1");
    assert_eq!(node_url("http://h:1", false), "http://h:1");
    assert_eq!(node_url("https://h:1", false), "https://h:1");
}

/// A TLS client of `addr` trusting `ca`, optionally presenting `identity`; sends `ping` and
/// reads what the server answers until it closes.
async fn client_roundtrip(
    addr: std::net::SocketAddr,
    ca: &Path,
    identity: Option<(&Path, &Path)>,
) -> Result<(String, Vec<u8>), String> {
    let roots = load_roots(ca).unwrap();
    let builder = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots);
    let mut config = match identity {
        Some((cert, key)) => builder.with_client_auth_cert(load_certs("c", cert).unwrap(), load_key(key).unwrap()),
        None => Ok(builder.with_no_client_auth()),
    }
    .unwrap();
    config.alpn_protocols = vec![b"h2".to_vec()];
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tcp = tokio::net::TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
    let name = rustls::pki_types::ServerName::try_from("127.0.0.1").unwrap();
    let mut tls = connector.connect(name, tcp).await.map_err(|e| e.to_string())?;
    let subject = tls
        .get_ref()
        .1
        .peer_certificates()
        .and_then(|c| c.first())
        .and_then(PeerIdentity::of)
        .and_then(|p| p.common_name)
        .unwrap_or_default();
    tls.write_all(b"ping").await.map_err(|e| e.to_string())?;
    let mut out = Vec::new();
    tls.read_to_end(&mut out).await.map_err(|e| e.to_string())?;
    Ok((subject, out))
}

/// Serves `listener`: answers each connection with its client certificate's common name (or
/// `-`) and closes it.
fn echo_identity(mut listener: Listener) {
    tokio::spawn(async move {
        while let Some(Ok(mut conn)) = listener.next().await {
            tokio::spawn(async move {
                let who = conn.info().peer.as_ref().and_then(|p| p.common_name.clone()).unwrap_or("-".into());
                let mut buf = [0u8; 4];
                let _ = conn.read_exact(&mut buf).await;
                let _ = conn.write_all(who.as_bytes()).await;
                let _ = conn.shutdown().await;
            });
        }
    });
}

#[tokio::test]
async fn handshakes_trust_the_right_ca_and_see_client_certificates() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("cluster CA");
    let files = server_files(dir.path(), &ca, "server", "node-1");
    let tls = ServerTls::load(&files).unwrap();
    let tcp = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = tcp.local_addr().unwrap();
    echo_identity(Listener::new(tcp, Some((tls, Alpn::Grpc))).unwrap());
    let ca_file = files.ca.clone().unwrap();

    // Without a client certificate: accepted, no peer identity.
    let (server_cn, who) = client_roundtrip(addr, &ca_file, None).await.unwrap();
    assert_eq!(server_cn, "node-1");
    assert_eq!(who, b"-");

    // With a node certificate of the same CA: the server sees its subject.
    let node = server_files(dir.path(), &ca, "node-2", "node-2");
    let (_, who) =
        client_roundtrip(addr, &ca_file, Some((node.cert.as_deref().unwrap(), node.key.as_deref().unwrap())))
            .await
            .unwrap();
    assert_eq!(who, b"node-2");

    // A client trusting another CA refuses the server's certificate.
    let other = Ca::new("other CA");
    let other_files = server_files(dir.path(), &other, "other", "intruder");
    let e = client_roundtrip(addr, other_files.ca.as_deref().unwrap(), None).await.unwrap_err();
    assert!(e.contains("certificate"), "{e}");

    // A client certificate from another CA is refused by the server (the handshake fails; the
    // client sees it at its first read at the latest).
    let e = client_roundtrip(
        addr,
        &ca_file,
        Some((other_files.cert.as_deref().unwrap(), other_files.key.as_deref().unwrap())),
    )
    .await;
    assert!(e.is_err(), "a client certificate of another CA was accepted: {e:?}");
}

#[tokio::test]
async fn a_stalled_handshake_does_not_hold_up_other_clients() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("cluster CA");
    let files = server_files(dir.path(), &ca, "server", "node-1");
    let tls = ServerTls::load(&files).unwrap();
    let tcp = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = tcp.local_addr().unwrap();
    echo_identity(Listener::new(tcp, Some((tls, Alpn::Grpc))).unwrap());
    // Clients that connect and say nothing, or send garbage and wait.
    let mut idle = Vec::new();
    for i in 0..8 {
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        if i % 2 == 0 {
            s.write_all(b"\x16\x03\x01\x00").await.unwrap();
        }
        idle.push(s);
    }
    let started = Instant::now();
    let (_, who) =
        tokio::time::timeout(Duration::from_secs(5), client_roundtrip(addr, files.ca.as_deref().unwrap(), None))
            .await
            .expect("a good client was held up by stalled handshakes")
            .unwrap();
    assert_eq!(who, b"-");
    assert!(started.elapsed() < Duration::from_secs(5));
    // A plaintext client gets its connection closed, not a hang.
    let mut plain = tokio::net::TcpStream::connect(addr).await.unwrap();
    plain.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n").await.unwrap();
    let mut buf = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(5), plain.read_to_end(&mut buf)).await;
    assert!(read.is_ok(), "the server did not close a plaintext client's connection");
}

#[tokio::test]
async fn new_connections_see_a_replaced_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("cluster CA");
    let files = server_files(dir.path(), &ca, "server", "first");
    let tls = ServerTls::load(&files).unwrap();
    let tcp = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = tcp.local_addr().unwrap();
    echo_identity(Listener::new(tcp, Some((tls.clone(), Alpn::Grpc))).unwrap());
    let ca_file = files.ca.clone().unwrap();
    assert_eq!(client_roundtrip(addr, &ca_file, None).await.unwrap().0, "first");

    // A broken replacement keeps the old certificate.
    std::fs::write(files.cert.as_ref().unwrap(), "not a certificate").unwrap();
    assert!(!tls.reload_if_changed());
    assert_eq!(client_roundtrip(addr, &ca_file, None).await.unwrap().0, "first");

    // A good one is served to the next connection; the watcher finds it within a few seconds.
    tls.watch(Duration::from_millis(100));
    let (cert, key) = ca.sign("second");
    std::fs::write(files.key.as_ref().unwrap(), key).unwrap();
    std::fs::write(files.cert.as_ref().unwrap(), cert).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let cn = client_roundtrip(addr, &ca_file, None).await.unwrap().0;
        if cn == "second" {
            break;
        }
        assert!(Instant::now() < deadline, "still serving {cn:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn node_only_services_need_a_client_certificate() {
    use tower::{Layer, Service, ServiceExt};
    // Answers with the subject the layer handed on, in a header.
    let ok = tower::service_fn(|req: http::Request<()>| async move {
        let mut resp = http::Response::new(tonic::body::Body::empty());
        if let Some(c) = req.extensions().get::<crate::auth::VerifiedClientCertificate>() {
            resp.headers_mut().insert("x-subject", c.subject.parse().unwrap());
        }
        Ok::<_, std::convert::Infallible>(resp)
    });
    let call = |enabled: bool, path: &str, peer: Option<PeerIdentity>| {
        let mut svc = NodeOnlyLayer::new(enabled).layer(ok);
        let mut req = http::Request::builder().uri(path).body(()).unwrap();
        req.extensions_mut().insert(ConnInfo {
            remote_addr: "127.0.0.1:1".parse().unwrap(),
            tls: true,
            peer: peer.map(Arc::new),
        });
        async move {
            let resp = svc.ready().await.unwrap().call(req).await.unwrap();
            let header = |h: &str| resp.headers().get(h).map(|v| v.to_str().unwrap().to_owned());
            header("grpc-status").or_else(|| header("x-subject"))
        }
    };
    let node = PeerIdentity { subject: "CN=node".into(), common_name: Some("node".into()) };
    let unauthenticated = Some(format!("{}", tonic::Code::Unauthenticated as i32));
    assert_eq!(call(true, "/nadi.raft.v1.RaftService/Vote", None).await, unauthenticated);
    assert_eq!(call(true, "/nadi.replica.v1.ReplicaService/AppendEntries", None).await, unauthenticated);
    // A node passes, and the services (the auth layer) learn its subject.
    assert_eq!(call(true, "/nadi.raft.v1.RaftService/Vote", Some(node.clone())).await.as_deref(), Some("CN=node"));
    assert_eq!(
        call(true, "/nadi.controller.v1.ControllerService/ListScopes", Some(node.clone())).await.as_deref(),
        Some("CN=node")
    );
    assert_eq!(call(true, "/nadi.controller.v1.ControllerService/ListScopes", None).await, None);
    // Without TLS the layer does nothing.
    assert_eq!(call(false, "/nadi.raft.v1.RaftService/Vote", None).await, None);
    assert_eq!(call(false, "/nadi.raft.v1.RaftService/Vote", Some(node)).await, None);
}
