//! A cluster of real processes on loopback: N `nadi controller` nodes (a Raft group) and one
//! `nadi segment-store`, each in its own data directory under one temp dir.
//!
//! Controller ports must be known before any node starts (every node is given all peers), so
//! they are picked by binding port 0 and releasing it; the segment store uses port 0 and
//! reports its address in its ready line.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

use nadi_proto::raft::v1 as rpb;
use nadi_proto::raft::v1::raft_service_client::RaftServiceClient;

use crate::nadi_bin;

/// A child process whose stderr is collected, started by waiting for its ready line.
#[derive(Debug)]
pub struct Proc {
    child: Child,
    pub ready_line: String,
    pub log: Arc<Mutex<String>>,
}

impl Proc {
    /// Runs `nadi args…` and waits (at most `timeout`) for a stderr line starting with `ready`.
    pub fn start(args: &[String], ready: &str, timeout: Duration) -> Proc {
        Self::start_env(args, ready, timeout, &[])
    }

    /// Like [`Proc::start`] with extra environment variables.
    pub fn start_env(args: &[String], ready: &str, timeout: Duration, env: &[(String, String)]) -> Proc {
        let mut child = Command::new(nadi_bin())
            .args(args)
            .env("NADI_LOG", "info,openraft=warn")
            .envs(env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn nadi");
        let stderr = child.stderr.take().expect("piped stderr");
        let log = Arc::new(Mutex::new(String::new()));
        let (tx, rx) = mpsc::channel();
        let log2 = log.clone();
        let ready = ready.to_owned();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if line.starts_with(&ready) {
                    let _ = tx.send(line.clone());
                }
                let mut l = log2.lock().unwrap();
                l.push_str(&line);
                l.push('\n');
            }
        });
        match rx.recv_timeout(timeout) {
            Ok(ready_line) => Proc { child, ready_line, log },
            Err(_) => {
                let _ = child.kill();
                panic!("`nadi {}` did not become ready; its log:\n{}", args.join(" "), log.lock().unwrap());
            }
        }
    }

    /// SIGKILL.
    pub fn kill9(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A free loopback port (bound and released; another process could take it in between, which
/// on a test machine's loopback is rare).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// Controllers and one segment store.
#[derive(Debug)]
pub struct Cluster {
    pub dir: PathBuf,
    pub ports: BTreeMap<u64, u16>,
    /// Admin HTTP port of each controller.
    pub http_ports: BTreeMap<u64, u16>,
    pub controllers: BTreeMap<u64, Proc>,
    pub store: Option<Proc>,
    /// The segment store's port, the same across restarts (as a deployed store's would be).
    pub store_port: u16,
    /// The segment store's `--http-listen` port (`/metrics`, `/health`, `/ready`).
    pub store_http_port: u16,
    /// Extra environment of every controller and the segment store (e.g. fault-injection
    /// hooks, auto-scaling timing).
    pub controller_env: Vec<(String, String)>,
    runtime: tokio::runtime::Runtime,
}

impl Cluster {
    /// Starts `n` controllers and one segment store under `dir`.
    pub fn start(dir: &Path, n: u64) -> Cluster {
        Self::start_with_env(dir, n, &[])
    }

    /// Starts `n` controllers and one segment store, each with the extra environment `env`.
    pub fn start_with_env(dir: &Path, n: u64, env: &[(&str, &str)]) -> Cluster {
        let ports = (1..=n).map(|id| (id, free_port())).collect();
        let http_ports = (1..=n).map(|id| (id, free_port())).collect();
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let controller_env = env.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
        let mut c = Cluster {
            dir: dir.to_owned(),
            ports,
            http_ports,
            controllers: BTreeMap::new(),
            store: None,
            store_port: free_port(),
            store_http_port: free_port(),
            controller_env,
            runtime,
        };
        for id in 1..=n {
            c.start_controller(id);
        }
        c.start_store();
        c
    }

    fn peers(&self) -> String {
        self.ports.iter().map(|(id, p)| format!("{id}=127.0.0.1:{p}")).collect::<Vec<_>>().join(",")
    }

    /// Every controller URL, comma-separated (what clients are given).
    pub fn controller_urls(&self) -> String {
        self.ports.values().map(|p| format!("http://127.0.0.1:{p}")).collect::<Vec<_>>().join(",")
    }

    /// Starts (or restarts) controller `id` on its port and data dir.
    pub fn start_controller(&mut self, id: u64) {
        let args = vec![
            "controller".to_owned(),
            "--id".into(),
            id.to_string(),
            "--listen".into(),
            format!("127.0.0.1:{}", self.ports[&id]),
            "--peers".into(),
            self.peers(),
            "--data-dir".into(),
            self.dir.join(format!("controller-{id}")).display().to_string(),
            "--http-listen".into(),
            format!("127.0.0.1:{}", self.http_ports[&id]),
        ];
        let ready = format!("nadi controller {id} ready");
        let p = Proc::start_env(&args, &ready, Duration::from_secs(30), &self.controller_env);
        self.controllers.insert(id, p);
    }

    /// Starts (or restarts) the segment store on its port; it is ready once registered with a
    /// leader.
    pub fn start_store(&mut self) {
        let args = vec![
            "--controller".to_owned(),
            self.controller_urls(),
            "segment-store".into(),
            "--listen".into(),
            format!("127.0.0.1:{}", self.store_port),
            "--data-dir".into(),
            self.dir.join("store").display().to_string(),
            "--http-listen".into(),
            format!("127.0.0.1:{}", self.store_http_port),
        ];
        self.store =
            Some(Proc::start_env(&args, "nadi segment-store ready", Duration::from_secs(60), &self.controller_env));
    }

    /// `host:port` of the segment store's HTTP listener.
    pub fn store_http_addr(&self) -> String {
        format!("127.0.0.1:{}", self.store_http_port)
    }

    /// `host:port` of controller `id`'s admin HTTP API.
    pub fn http_addr(&self, id: u64) -> String {
        format!("127.0.0.1:{}", self.http_ports[&id])
    }

    /// SIGKILLs controller `id`.
    pub fn kill_controller(&mut self, id: u64) {
        if let Some(p) = self.controllers.remove(&id) {
            p.kill9();
        }
    }

    /// Runs `nadi --controller <all URLs> args…`.
    pub fn cli(&self, args: &[&str]) -> Output {
        crate::run_cli(&self.controller_urls(), args, b"")
    }

    /// Starts `nadi --controller <all URLs> args…` without waiting for it.
    pub fn spawn_cli(&self, args: &[&str]) -> Child {
        Command::new(nadi_bin())
            .arg("--controller")
            .arg(self.controller_urls())
            .args(args)
            .env("NADI_LOG", "error")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run nadi")
    }

    /// Runs `nadi --controller <all URLs> args…` with `input` on stdin.
    pub fn cli_stdin_all(&self, args: &[&str], input: &[u8]) -> Output {
        crate::run_cli(&self.controller_urls(), args, input)
    }

    /// Controller `id`'s own view (None if it does not answer). Asked with the nodes' token
    /// when the cluster has one (`NADI_NODE_TOKEN_FILE` in its environment).
    pub fn status(&self, id: u64) -> Option<rpb::NodeStatusResponse> {
        let url = format!("http://127.0.0.1:{}", self.ports[&id]);
        let token = self
            .controller_env
            .iter()
            .find(|(k, _)| k == "NADI_NODE_TOKEN_FILE")
            .and_then(|(_, path)| std::fs::read_to_string(path).ok())
            .map(|t| t.trim().to_owned());
        self.runtime.block_on(async {
            let ch = tonic::transport::Endpoint::from_shared(url)
                .ok()?
                .connect_timeout(Duration::from_millis(300))
                .timeout(Duration::from_secs(2))
                .connect()
                .await
                .ok()?;
            let mut req = tonic::Request::new(rpb::NodeStatusRequest {});
            if let Some(t) = token {
                req.metadata_mut().insert("authorization", format!("Bearer {t}").parse().ok()?);
            }
            RaftServiceClient::new(ch).node_status(req).await.ok().map(|r| r.into_inner())
        })
    }

    /// Waits until the running controllers agree on a leader that is one of them; returns it.
    pub fn leader(&self, timeout: Duration) -> u64 {
        let deadline = Instant::now() + timeout;
        loop {
            let views: Vec<_> = self.controllers.keys().filter_map(|id| self.status(*id)).collect();
            let leaders: Vec<_> = views.iter().map(|s| s.leader).collect();
            if let Some(Some(l)) = leaders.first()
                && leaders.iter().all(|x| *x == Some(*l))
                && self.controllers.contains_key(l)
                && views.len() == self.controllers.len()
            {
                return *l;
            }
            assert!(Instant::now() < deadline, "no agreed leader within {timeout:?}: {views:?}");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Waits until every running controller has applied the same log index with the same state
    /// digest; returns that `(last_applied, digest)`.
    pub fn converged(&self, timeout: Duration) -> (u64, u64) {
        let deadline = Instant::now() + timeout;
        loop {
            let views: Vec<_> = self.controllers.keys().map(|id| self.status(*id)).collect();
            if views.iter().all(Option::is_some) {
                let pairs: Vec<_> = views.iter().flatten().map(|s| (s.last_applied, s.state_digest)).collect();
                if pairs.windows(2).all(|w| w[0] == w[1]) {
                    return pairs[0];
                }
            }
            assert!(Instant::now() < deadline, "controllers did not converge within {timeout:?}: {views:?}");
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}
