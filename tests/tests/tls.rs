//! TLS over the real binary (issue 19, acceptance 2), with certificates made in the test:
//! clients trusting the cluster's CA work end to end (the CLI with `--tls-ca`, the Rust client),
//! a client trusting another CA fails its handshake with an error that names the certificate and
//! changes nothing, a plaintext client against a TLS port fails in bounded time, node-only
//! services (Raft, replication) refuse a connection without a node certificate and accept one
//! with it, a replaced certificate is served to new connections without a restart, bad TLS
//! settings stop the start with a clear error, and a cluster of 3 controllers and 3 stores with
//! `--replication-factor 3` runs with TLS everywhere (every acknowledged event read back).

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use bytes::Bytes;
use nadi_client::{EventWriter, NadiClient, StreamReader, StreamSpec, WriterConfig};
use nadi_proto::raft::v1 as rpb;
use nadi_proto::raft::v1::raft_service_client::RaftServiceClient;
use nadi_proto::replica::v1 as reppb;
use nadi_proto::replica::v1::replica_service_client::ReplicaServiceClient;
use nadi_security::channel::ClientSecurity;
use nadi_security::tls::{ClientTls, TlsFiles};
use nadi_tests::cluster::{Proc, free_port};
use nadi_tests::load::{KeyedLoad, check_stream, keys};
use nadi_tests::tls::{CertFiles, Pki, https_get, server_cn};
use nadi_tests::{Standalone, check_keyed_output, keyed_lines, nadi_bin, ok, run_cli};

const N: u64 = 2_000;

/// A standalone serving TLS with a certificate for `cn` from `pki`.
fn tls_standalone(dir: &Path, pki: &Pki, cn: &str) -> (Standalone, CertFiles) {
    let files = pki.issue(cn);
    let args = pki.server_args(&files);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    (Standalone::start_with(&dir.join("data"), &args), files)
}

/// `nadi --tls-ca CA args…` against `url`.
fn cli_trusting(url: &str, ca: &Path, args: &[&str], input: &[u8]) -> Output {
    let ca = ca.display().to_string();
    let mut all = vec!["--tls-ca", ca.as_str()];
    all.extend_from_slice(args);
    run_cli(url, &all, input)
}

/// Runs `nadi --controller URL args…` and waits at most `limit` (killing it and failing then).
fn cli_within(url: &str, args: &[&str], limit: Duration) -> Output {
    let mut child = Command::new(nadi_bin())
        .arg("--controller")
        .arg(url)
        .args(args)
        .env("NADI_LOG", "error")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn nadi");
    let deadline = Instant::now() + limit;
    while child.try_wait().expect("wait").is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("`nadi {}` did not finish within {limit:?}", args.join(" "));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    child.wait_with_output().expect("output")
}

fn security(ca: &Path, identity: Option<&CertFiles>) -> ClientSecurity {
    ClientSecurity {
        token: None,
        tls: Some(ClientTls {
            files: TlsFiles {
                cert: identity.map(|i| i.cert.clone()),
                key: identity.map(|i| i.key.clone()),
                ca: Some(ca.to_owned()),
            },
        }),
    }
}

/// `NodeStatus` (a Raft service call) on the controller at `url`, presenting `identity`.
async fn node_status(url: &str, ca: &Path, identity: Option<&CertFiles>) -> Result<rpb::NodeStatusResponse, String> {
    let ch = security(ca, identity).endpoint(url).map_err(|e| e.to_string())?.connect().await.map_err(|e| {
        // The handshake's error is in the source chain.
        let mut text = e.to_string();
        let mut source = std::error::Error::source(&e);
        while let Some(s) = source {
            text.push_str(&format!(": {s}"));
            source = s.source();
        }
        text
    })?;
    RaftServiceClient::new(ch)
        .node_status(rpb::NodeStatusRequest {})
        .await
        .map(|r| r.into_inner())
        .map_err(|s| format!("{:?}: {}", s.code(), s.message()))
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn clients_trusting_the_ca_work_and_others_fail_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new(dir.path(), "cluster");
    let (s, _) = tls_standalone(dir.path(), &pki, "standalone");
    assert!(s.controller_url.starts_with("https://"), "ready line: {}", s.controller_url);
    assert!(s.segment_url.starts_with("https://"), "ready line: {}", s.segment_url);
    let url = s.controller_url.clone();

    // The CLI trusting the CA: create, write, read back every event.
    ok(&cli_trusting(&url, &pki.ca, &["scope", "create", "demo"], b""));
    ok(&cli_trusting(&url, &pki.ca, &["stream", "create", "demo/orders", "--segments", "4"], b""));
    let out = ok(&cli_trusting(&url, &pki.ca, &["write", "demo/orders", "--key-sep", "\t"], &keyed_lines(N, 17)));
    assert!(out.contains(&format!("wrote {N} events")), "write printed {out:?}");
    let read = ok(&cli_trusting(
        &url,
        &pki.ca,
        &["read", "demo/orders", "--from-start", "--max", &N.to_string(), "--idle-timeout", "20"],
        b"",
    ));
    check_keyed_output(&read, N);

    // The Rust client trusting the CA.
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    rt.block_on(async {
        let client = NadiClient::with_security(std::slice::from_ref(&url), security(&pki.ca, None)).unwrap();
        client.create_stream("demo", "rust", StreamSpec::fixed(2)).await.unwrap();
        let writer = EventWriter::new(&client, "demo", "rust", WriterConfig::default()).await.unwrap();
        for i in 0..500u32 {
            writer
                .write(Some(format!("k{}", i % 7).as_bytes()), Bytes::from(format!("k{}:{}", i % 7, i / 7)))
                .await
                .unwrap();
        }
        writer.close().await.unwrap();
        let mut reader = StreamReader::new(&client, "demo", "rust", true).await.unwrap();
        let mut n = 0;
        while n < 500 {
            let ev =
                tokio::time::timeout(Duration::from_secs(20), reader.next()).await.expect("read").unwrap().unwrap();
            assert!(std::str::from_utf8(&ev.payload).unwrap().starts_with('k'));
            n += 1;
        }
    });

    // A client trusting another CA: the handshake fails, the error names the certificate, and
    // nothing is created.
    let other = Pki::new(dir.path(), "other");
    let out = cli_within(
        &url,
        &["--tls-ca", &other.ca.display().to_string(), "scope", "create", "intruder"],
        Duration::from_secs(60),
    );
    assert_eq!(out.status.code(), Some(1), "stderr: {}", stderr(&out));
    eprintln!("wrong-CA CLI: {}", stderr(&out).trim());
    let err = stderr(&out).to_lowercase();
    assert!(
        err.starts_with("error: ") && err.contains("certificate"),
        "stderr does not name a certificate problem: {err}"
    );
    assert!(err.contains("--tls-ca"), "stderr does not say what to check: {err}");
    let scopes = ok(&cli_trusting(&url, &pki.ca, &["scope", "list"], b""));
    assert_eq!(scopes.split_whitespace().collect::<Vec<_>>(), ["demo"], "the wrong-CA client created something");

    // A plaintext client against the TLS port: an error, in bounded time.
    let plain_url = url.replacen("https://", "http://", 1);
    let started = Instant::now();
    let out = cli_within(&plain_url, &["scope", "create", "plain"], Duration::from_secs(60));
    assert_eq!(out.status.code(), Some(1), "stderr: {}", stderr(&out));
    eprintln!("plaintext CLI failed after {:?}: {}", started.elapsed(), stderr(&out).trim());
    assert!(stderr(&out).contains("use an https:// URL"), "stderr: {}", stderr(&out));
    let plain = rt.block_on(async {
        let client = NadiClient::new(std::slice::from_ref(&plain_url)).unwrap();
        tokio::time::timeout(Duration::from_secs(30), client.list_scopes()).await
    });
    assert!(matches!(plain, Ok(Err(_))), "a plaintext Rust client did not fail cleanly: {plain:?}");
    assert!(!ok(&cli_trusting(&url, &pki.ca, &["scope", "list"], b"")).contains("plain"));

    // The admin HTTP API speaks HTTPS to a client trusting the CA, and nothing to plaintext.
    let (status, body) = https_get(&s.http_addr, &pki.ca, "/v1/scopes").unwrap();
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("demo"), "{body}");
    assert!(https_get(&s.http_addr, &other.ca, "/v1/scopes").unwrap_err().contains("certificate"));
    let plain_http = {
        use std::io::{Read, Write};
        let mut conn = std::net::TcpStream::connect(&s.http_addr).unwrap();
        conn.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        conn.write_all(b"GET /v1/scopes HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").unwrap();
        let mut resp = Vec::new();
        let _ = conn.read_to_end(&mut resp);
        resp
    };
    assert!(!String::from_utf8_lossy(&plain_http).contains("demo"), "plaintext HTTP got an answer");
    s.stop();
}

#[test]
fn node_only_services_need_a_node_certificate_and_certificates_reload() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new(dir.path(), "cluster");
    let (s, files) = tls_standalone(dir.path(), &pki, "first");
    let url = s.controller_url.clone();
    let addr = url.trim_start_matches("https://").to_owned();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();

    // Raft without a client certificate: refused, and the refusal says why.
    let refused = rt.block_on(node_status(&url, &pki.ca, None)).unwrap_err();
    assert!(refused.starts_with("Unauthenticated") && refused.contains("client certificate"), "{refused}");
    // With a node certificate of the cluster's CA: answered.
    let node = pki.issue("node-2");
    let status = rt.block_on(node_status(&url, &pki.ca, Some(&node))).unwrap();
    assert_eq!(status.id, 1);
    // A certificate from another CA does not get that far: the handshake fails.
    let other = Pki::new(dir.path(), "other");
    let foreign = other.issue("node-x");
    let e = rt.block_on(node_status(&url, &pki.ca, Some(&foreign))).unwrap_err();
    assert!(!e.starts_with("Unauthenticated"), "a foreign certificate passed the handshake: {e}");
    // Client services do not need one.
    ok(&cli_trusting(&url, &pki.ca, &["scope", "create", "demo"], b""));

    // Reload: new files in place; a new connection sees the new certificate, no restart.
    assert_eq!(server_cn(&addr, &pki.ca).unwrap(), "first");
    let pid = s.pid();
    pki.reissue("renewed", &files);
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let cn = server_cn(&addr, &pki.ca).unwrap();
        if cn == "renewed" {
            break;
        }
        assert!(Instant::now() < deadline, "still serving {cn:?} 20 s after the files changed");
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(server_cn(&s.http_addr, &pki.ca).unwrap(), "renewed", "the admin HTTP listener reloaded too");
    assert_eq!(s.pid(), pid);
    // Clients go on working with the renewed certificate, and so does the store's registration.
    assert_eq!(ok(&cli_trusting(&url, &pki.ca, &["scope", "list"], b"")).trim(), "demo");
    ok(&cli_trusting(&url, &pki.ca, &["stream", "create", "demo/after", "--segments", "1"], b""));
    ok(&cli_trusting(&url, &pki.ca, &["write", "demo/after"], b"one\ntwo\n"));

    // A broken replacement is refused with a warning and the renewed certificate stays.
    std::fs::write(&files.cert, "not a certificate\n").unwrap();
    let log = s.log_with(&["TLS files changed but cannot be loaded"], Duration::from_secs(20));
    assert!(log.contains("TLS files changed but cannot be loaded"), "no warning in the log:\n{log}");
    assert_eq!(server_cn(&addr, &pki.ca).unwrap(), "renewed");
    s.stop();
}

#[test]
fn start_up_refuses_bad_tls_settings() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new(dir.path(), "cluster");
    let a = pki.issue("a");
    let b = pki.issue("b");
    let garbage = dir.path().join("garbage.pem");
    std::fs::write(&garbage, "hello\n").unwrap();
    let p = |p: &Path| p.display().to_string();
    let ca = p(&pki.ca);
    let cases: Vec<(Vec<String>, &str)> = vec![
        (vec!["--tls-cert".into(), p(&a.cert), "--tls-ca".into(), ca.clone()], "--tls-cert needs --tls-key"),
        (vec!["--tls-key".into(), p(&a.key), "--tls-ca".into(), ca.clone()], "--tls-key needs --tls-cert"),
        (vec!["--tls-cert".into(), p(&a.cert), "--tls-key".into(), p(&a.key)], "--tls-cert needs --tls-ca"),
        (
            vec!["--tls-cert".into(), p(&a.cert), "--tls-key".into(), p(&b.key), "--tls-ca".into(), ca.clone()],
            "does not match the certificate",
        ),
        (
            vec!["--tls-cert".into(), p(&garbage), "--tls-key".into(), p(&a.key), "--tls-ca".into(), ca.clone()],
            "no PEM certificate",
        ),
        (
            vec!["--tls-cert".into(), p(&a.cert), "--tls-key".into(), p(&a.key), "--tls-ca".into(), p(&garbage)],
            "no PEM certificate",
        ),
        (
            vec![
                "--tls-cert".into(),
                p(&dir.path().join("missing.crt")),
                "--tls-key".into(),
                p(&a.key),
                "--tls-ca".into(),
                ca.clone(),
            ],
            "cannot read the TLS certificate",
        ),
    ];
    for (i, (args, needle)) in cases.iter().enumerate() {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let mut child = Standalone::command(&dir.path().join(format!("data-{i}")), &args)
            .env("NADI_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        while child.try_wait().unwrap().is_none() {
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!("nadi standalone {args:?} did not stop");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let out = child.wait_with_output().unwrap();
        let err = stderr(&out);
        assert!(!out.status.success(), "{args:?} started");
        assert!(err.contains(needle), "{args:?}: expected {needle:?} in {err:?}");
        assert!(!err.contains("ready"), "{args:?}: {err}");
    }
}

/// Prints the logs of the cluster's processes if the test fails.
struct Logs<'a>(&'a BTreeMap<String, Proc>);

impl Drop for Logs<'_> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            for (name, p) in self.0 {
                eprintln!("---- {name} log ----\n{}", p.log.lock().unwrap());
            }
        }
    }
}

#[test]
fn a_cluster_of_three_controllers_and_three_replicated_stores_runs_over_tls() {
    tls_cluster(false);
}

/// With `--auth required` and no node tokens, the nodes authenticate to each other by their
/// certificates alone; the client by its token.
#[test]
fn a_cluster_over_tls_with_auth_required_authenticates_nodes_by_certificate() {
    tls_cluster(true);
}

/// 3 controllers (`--replication-factor 3`) and 3 stores placed by them, TLS on every node
/// (and `--auth required` with `auth`): a keyed writer for 5 s, then every acknowledged event
/// read back; the node-only services refuse a connection without a node certificate.
fn tls_cluster(auth: bool) {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new(dir.path(), "cluster");
    // The only token: a superuser's, for the test's client. Nodes have none.
    let (admin_token, auth_args) = if auth {
        let (token, entry) = nadi_security::auth::new_token("admin").unwrap();
        let file = dir.path().join("tokens.toml");
        std::fs::write(&file, nadi_security::auth::entry_toml(&entry)).unwrap();
        let args = ["--auth", "required", "--token-file", &file.display().to_string(), "--superusers", "admin"]
            .map(str::to_owned)
            .to_vec();
        (Some(token), args)
    } else {
        (None, Vec::new())
    };
    let ctl_ports: BTreeMap<u64, u16> = (1..=3).map(|id| (id, free_port())).collect();
    // Bare HOST:PORT peers: the nodes call them over TLS because TLS is on.
    let peers = ctl_ports.iter().map(|(id, p)| format!("{id}=127.0.0.1:{p}")).collect::<Vec<_>>().join(",");
    let urls: Vec<String> = ctl_ports.values().map(|p| format!("https://127.0.0.1:{p}")).collect();
    let mut procs: BTreeMap<String, Proc> = BTreeMap::new();

    let controllers: Vec<(String, Proc)> = std::thread::scope(|s| {
        let handles: Vec<_> = ctl_ports
            .iter()
            .map(|(&id, &port)| {
                let mut args: Vec<String> = [
                    "controller",
                    "--id",
                    &id.to_string(),
                    "--listen",
                    &format!("127.0.0.1:{port}"),
                    "--peers",
                    &peers,
                    "--data-dir",
                    &dir.path().join(format!("controller-{id}")).display().to_string(),
                    "--replication-factor",
                    "3",
                ]
                .iter()
                .map(|s| s.to_string())
                .collect();
                args.extend(pki.server_args(&pki.issue(&format!("controller-{id}"))));
                args.extend(auth_args.iter().cloned());
                let ready = format!("nadi controller {id} ready");
                s.spawn(move || (format!("controller-{id}"), Proc::start(&args, &ready, Duration::from_secs(30))))
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    procs.extend(controllers);
    for (name, p) in &procs {
        assert!(p.ready_line.contains("grpc https://"), "{name}: {}", p.ready_line);
    }

    let store_ports: BTreeMap<u64, u16> = (1..=3).map(|id| (id, free_port())).collect();
    let controller_arg = urls.join(",");
    let stores: Vec<(String, Proc)> = std::thread::scope(|s| {
        let handles: Vec<_> = store_ports
            .iter()
            .map(|(&id, &port)| {
                let mut args: Vec<String> = [
                    "--controller",
                    &controller_arg,
                    "segment-store",
                    "--listen",
                    &format!("127.0.0.1:{port}"),
                    "--data-dir",
                    &dir.path().join(format!("store-{id}")).display().to_string(),
                    "--containers",
                    "4",
                    "--tier2",
                    &format!("file://{}", dir.path().join("tier2").display()),
                    "--container-log",
                    "raft",
                ]
                .iter()
                .map(|s| s.to_string())
                .collect();
                args.extend(pki.server_args(&pki.issue(&format!("store-{id}"))));
                args.extend(auth_args.iter().cloned());
                s.spawn(move || {
                    (format!("store-{id}"), Proc::start(&args, "nadi segment-store ready", Duration::from_secs(60)))
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    procs.extend(stores);
    let _logs = Logs(&procs);

    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let _enter = rt.enter();
    let client =
        NadiClient::with_security(&urls, ClientSecurity { token: admin_token, ..security(&pki.ca, None) }).unwrap();
    rt.block_on(async {
        // Every store registered with its https:// endpoint, and every container has three
        // replicas placed.
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let info = client.cluster_info().await.unwrap();
            let endpoints: Vec<&str> = info.containers.iter().map(|c| c.endpoint.as_str()).collect();
            if !endpoints.is_empty() && endpoints.iter().all(|e| e.starts_with("https://")) {
                break;
            }
            assert!(Instant::now() < deadline, "containers not served over https: {endpoints:?}");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        client.create_scope("demo").await.unwrap();
        client.create_stream("demo", "r", StreamSpec::fixed(8)).await.unwrap();
        let load = KeyedLoad::start(&client, "demo", "r", keys(32), 400.0);
        tokio::time::sleep(Duration::from_secs(5)).await;
        let expected = load.stop().await;
        let total: u64 = expected.values().sum();
        assert!(total >= 1000, "the writer wrote through TLS ({total} events)");
        check_stream(&client, "demo", "r", &expected).await;
    });

    // Node-only services on every node refuse a connection without a node certificate.
    let refused = rt.block_on(node_status(&urls[0], &pki.ca, None)).unwrap_err();
    assert!(refused.starts_with("Unauthenticated"), "{refused}");
    let leader = rt.block_on(node_status(&urls[0], &pki.ca, Some(&pki.issue("probe")))).unwrap();
    assert!(leader.leader.is_some(), "{leader:?}");
    let store_url = format!("https://127.0.0.1:{}", store_ports[&1]);
    let replica = rt.block_on(async {
        let ch = security(&pki.ca, None).endpoint(&store_url).unwrap().connect().await.unwrap();
        ReplicaServiceClient::new(ch).vote(reppb::ReplicaRequest::default()).await
    });
    let status = replica.unwrap_err();
    assert_eq!(status.code(), tonic::Code::Unauthenticated, "{status:?}");
}
