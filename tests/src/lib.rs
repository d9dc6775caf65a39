//! Test harness: runs the real `nadi` binary as a child process.
//!
//! [`Standalone`] starts `nadi standalone` on OS-chosen loopback ports in a given data
//! directory and learns its addresses from the ready line it prints, so tests never race for
//! ports. [`Standalone::cli`] runs client commands against it. The binary is found next to the
//! test executable (`target/<profile>/nadi`, built by `cargo test --workspace` because the
//! server crate has integration tests of its own) or at `$NADI_BIN`. Note: `cargo test -p
//! nadi-tests` alone, and `cargo test --workspace --test NAME`, do not rebuild that binary: run
//! `cargo build -p nadi-server` first, or plain `cargo test --workspace`.

pub mod cluster;
pub mod docker;
pub mod load;
pub mod tls;

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Arc, Mutex, mpsc};
use std::time::Duration;

/// Path of the `nadi` binary under test.
pub fn nadi_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("NADI_BIN") {
        return PathBuf::from(p);
    }
    let exe = std::env::current_exe().expect("test executable path");
    // target/<profile>/deps/<test> -> target/<profile>/nadi
    let profile_dir = exe.parent().and_then(Path::parent).expect("target profile dir");
    let bin = profile_dir.join("nadi");
    assert!(bin.exists(), "{} not found: run the tests with `cargo test --workspace` or set NADI_BIN", bin.display());
    bin
}

/// A running `nadi standalone`.
#[derive(Debug)]
pub struct Standalone {
    child: Child,
    pub data_dir: PathBuf,
    pub controller_url: String,
    pub segment_url: String,
    pub http_addr: String,
    /// Pravega's controller URI (`tcp://…`, `tls://…`) with `--pravega-controller-listen`.
    pub pravega_controller: Option<String>,
    /// The `HOST:PORT` Pravega clients are sent to for segments, with `--pravega-segment-listen`.
    pub pravega_segments: Option<String>,
    /// Everything the server printed on stderr (for failure messages).
    pub log: Arc<Mutex<String>>,
}

impl Standalone {
    /// Starts a server on `data_dir` and waits until it is ready (at most 60 s).
    pub fn start(data_dir: &Path) -> Standalone {
        Self::start_with(data_dir, &[])
    }

    /// Starts a server with extra flags.
    pub fn start_with(data_dir: &Path, extra: &[&str]) -> Standalone {
        Self::start_with_env(data_dir, extra, &[])
    }

    /// The command that starts a server on `data_dir` on OS-chosen loopback ports.
    pub fn command(data_dir: &Path, extra: &[&str]) -> Command {
        let mut cmd = Command::new(nadi_bin());
        cmd.args(["standalone", "--data-dir"])
            .arg(data_dir)
            .args([
                "--controller-listen",
                "127.0.0.1:0",
                "--segment-listen",
                "127.0.0.1:0",
                "--http-listen",
                "127.0.0.1:0",
            ])
            .args(extra);
        cmd
    }

    /// Starts a server with extra flags and environment variables.
    pub fn start_with_env(data_dir: &Path, extra: &[&str], env: &[(&str, &str)]) -> Standalone {
        let mut child = Self::command(data_dir, extra)
            .envs(env.iter().copied())
            .env("NADI_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn nadi standalone");
        let stderr = child.stderr.take().expect("piped stderr");
        let log = Arc::new(Mutex::new(String::new()));
        let (ready_tx, ready_rx) = mpsc::channel();
        let log2 = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if line.starts_with("nadi standalone ready:") {
                    let _ = ready_tx.send(line.clone());
                }
                let mut l = log2.lock().unwrap();
                l.push_str(&line);
                l.push('\n');
            }
        });
        let line = match ready_rx.recv_timeout(Duration::from_secs(60)) {
            Ok(line) => line,
            Err(_) => {
                let _ = child.kill();
                panic!("nadi standalone did not become ready; its log:\n{}", log.lock().unwrap());
            }
        };
        // "nadi standalone ready: controller URL, segment store URL, admin URL" (https:// URLs
        // with TLS)
        let urls: Vec<String> = line
            .split_whitespace()
            .filter(|w| w.starts_with("http://") || w.starts_with("https://"))
            .map(|w| w.trim_end_matches(',').to_owned())
            .collect();
        assert_eq!(urls.len(), 3, "unexpected ready line: {line}");
        // "…, pravega controller tcp://ADDR, pravega segments HOST:PORT (…)" when asked for.
        let words: Vec<&str> = line.split_whitespace().map(|w| w.trim_end_matches(',')).collect();
        let after = |a: &str, b: &str| words.windows(3).find(|w| w[0] == a && w[1] == b).map(|w| w[2].to_owned());
        Standalone {
            child,
            data_dir: data_dir.to_owned(),
            controller_url: urls[0].clone(),
            segment_url: urls[1].clone(),
            http_addr: urls[2].split_once("://").map_or(urls[2].as_str(), |(_, a)| a).to_owned(),
            pravega_controller: after("pravega", "controller"),
            pravega_segments: after("pravega", "segments"),
            log,
        }
    }

    /// Runs `nadi --controller URL args…`.
    pub fn cli(&self, args: &[&str]) -> Output {
        self.cli_stdin(args, b"")
    }

    /// Runs `nadi --controller URL args…` with `input` on stdin.
    pub fn cli_stdin(&self, args: &[&str], input: &[u8]) -> Output {
        run_cli(&self.controller_url, args, input)
    }

    /// The server's log once a line holding every one of `needles` has been read from its
    /// stderr, or as it is after `timeout`. (A client can see an error before the thread
    /// that copies the server's stderr has read the line logged with it.)
    pub fn log_with(&self, needles: &[&str], timeout: std::time::Duration) -> String {
        let deadline = std::time::Instant::now() + timeout;
        loop {
            let log = self.log.lock().unwrap().clone();
            let found = log.lines().any(|l| needles.iter().all(|n| l.contains(n)));
            if found || std::time::Instant::now() >= deadline {
                return log;
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }

    /// Stops the server with SIGINT (Ctrl-C) and waits for it to exit.
    pub fn stop(mut self) {
        // SAFETY: sending a signal to our own child process by pid.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGINT) };
        let status = self.child.wait().expect("wait for nadi");
        assert!(
            status.success(),
            "nadi standalone exited with {status} after Ctrl-C; log:\n{}",
            self.log.lock().unwrap()
        );
    }

    /// The server's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Kills the server with SIGKILL.
    pub fn kill9(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Standalone {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs `nadi --controller CONTROLLERS args…` with `input` on stdin and waits for it.
pub fn run_cli(controllers: &str, args: &[&str], input: &[u8]) -> Output {
    let mut child = Command::new(nadi_bin())
        .arg("--controller")
        .arg(controllers)
        .args(args)
        .env("NADI_LOG", "error")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn nadi client command");
    let mut stdin = child.stdin.take().expect("piped stdin");
    let input = input.to_vec();
    let feeder = std::thread::spawn(move || {
        let _ = stdin.write_all(&input);
    });
    let out = child.wait_with_output().expect("client command output");
    let _ = feeder.join();
    out
}

/// Asserts that a command succeeded and returns its stdout.
pub fn ok(out: &Output) -> String {
    assert!(
        out.status.success(),
        "command failed with {}: stdout {:?} stderr {:?}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout.clone()).expect("utf-8 stdout")
}

/// Asserts that a command failed with exactly one `error: …` line containing `needle`.
pub fn fails_with(out: &Output, needle: &str) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "command unexpectedly succeeded; stderr {stderr:?}");
    let lines: Vec<_> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "expected one error line, got {stderr:?}");
    assert!(
        lines[0].starts_with("error: ") && lines[0].contains(needle),
        "expected an error naming {needle:?}, got {stderr:?}"
    );
}

/// Lines `key<i mod keys>\t<i>` for i in 0..n, as the acceptance tests write them.
pub fn keyed_lines(n: u64, keys: u64) -> Vec<u8> {
    let mut s = String::new();
    for i in 0..n {
        s.push_str(&format!("key{}\t{i}\n", i % keys));
    }
    s.into_bytes()
}

/// Checks that `output` holds every number 0..n exactly once and each key's numbers in
/// increasing order.
pub fn check_keyed_output(output: &str, n: u64) {
    let mut seen = vec![false; n as usize];
    let mut last: std::collections::HashMap<&str, u64> = Default::default();
    let mut count = 0u64;
    for line in output.lines() {
        let (key, num) = line.split_once('\t').unwrap_or_else(|| panic!("malformed line {line:?}"));
        let num: u64 = num.parse().unwrap_or_else(|_| panic!("malformed number in {line:?}"));
        assert!(num < n, "unexpected event {num}");
        assert!(!seen[num as usize], "event {num} read twice");
        seen[num as usize] = true;
        if let Some(prev) = last.insert(key, num) {
            assert!(prev < num, "key {key}: {num} read after {prev}");
        }
        count += 1;
    }
    assert_eq!(count, n, "expected {n} events, read {count}");
}

/// One HTTP/1.1 request to the admin API at `addr` (`host:port`), with an optional JSON body.
/// Returns the status and the body parsed as JSON (`Null` when empty). A tiny client on purpose:
/// the tests need nothing more, and it keeps an HTTP stack out of the test build.
pub fn http(addr: &str, method: &str, path: &str, body: Option<&str>) -> (u16, serde_json::Value) {
    let (status, text) = http_raw(addr, method, path, body.map(|b| ("application/json", b)));
    let json = if text.trim().is_empty() {
        serde_json::Value::Null
    } else {
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{method} {path}: body is not JSON ({e}): {text:?}"))
    };
    (status, json)
}

/// Like [`http`] with an explicit content type, returning the raw body text.
pub fn http_raw(addr: &str, method: &str, path: &str, body: Option<(&str, &str)>) -> (u16, String) {
    http_with(addr, method, path, body, &[])
}

/// Like [`http_raw`] with extra request headers (e.g. `("Authorization", "Bearer …")`).
pub fn http_with(
    addr: &str,
    method: &str,
    path: &str,
    body: Option<(&str, &str)>,
    headers: &[(&str, &str)],
) -> (u16, String) {
    use std::io::Read;
    let mut conn = std::net::TcpStream::connect(addr).expect("connect to the admin HTTP API");
    conn.set_read_timeout(Some(Duration::from_secs(60))).expect("set timeout");
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    for (name, value) in headers {
        req.push_str(&format!("{name}: {value}\r\n"));
    }
    if let Some((content_type, b)) = body {
        req.push_str(&format!("Content-Type: {content_type}\r\nContent-Length: {}\r\n", b.len()));
    }
    req.push_str("\r\n");
    if let Some((_, b)) = body {
        req.push_str(b);
    }
    conn.write_all(req.as_bytes()).expect("send request");
    let mut resp = Vec::new();
    conn.read_to_end(&mut resp).expect("read response");
    let resp = String::from_utf8(resp).expect("utf-8 response");
    let (head, body) = resp.split_once("\r\n\r\n").unwrap_or_else(|| panic!("malformed response {resp:?}"));
    assert!(!head.to_ascii_lowercase().contains("transfer-encoding: chunked"), "chunked bodies are not supported");
    let status = head.split_whitespace().nth(1).and_then(|s| s.parse().ok()).expect("status code");
    (status, body.to_owned())
}

/// The stable error code a failed CLI command printed (`error: … [CODE]`).
pub fn cli_code(out: &Output) -> String {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "command unexpectedly succeeded; stderr {stderr:?}");
    let line =
        stderr.lines().find(|l| l.starts_with("error: ")).unwrap_or_else(|| panic!("no error line in {stderr:?}"));
    let code = line.rsplit_once('[').and_then(|(_, c)| c.strip_suffix(']'));
    code.unwrap_or_else(|| panic!("no [CODE] in {line:?}")).to_owned()
}

/// Parses a command's stdout as JSON.
pub fn json_out(out: &Output) -> serde_json::Value {
    let text = ok(out);
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON ({e}): {text:?}"))
}

/// Checks keyed events read back (`(key, per-key sequence number)`, in read order) against
/// what was acknowledged (`key` → number of events, numbered from 0): every event exactly once,
/// and each key's events in the order written. `what` names the reader in failure messages.
pub fn check_per_key_order(events: &[(String, u64)], expected: &std::collections::HashMap<String, u64>, what: &str) {
    let mut last: std::collections::HashMap<&str, u64> = std::collections::HashMap::new();
    let mut count: std::collections::HashMap<&str, u64> = std::collections::HashMap::new();
    for (key, seq) in events {
        if let Some(prev) = last.insert(key, *seq) {
            assert!(prev < *seq, "{what}: key {key}: {seq} read after {prev}");
        }
        *count.entry(key).or_default() += 1;
    }
    for (key, n) in expected {
        assert_eq!(count.get(key.as_str()).copied().unwrap_or(0), *n, "{what}: key {key}: events read");
        assert_eq!(last.get(key.as_str()).copied(), Some(n - 1), "{what}: key {key}: last sequence number");
    }
    assert_eq!(count.len(), expected.len(), "{what}: keys read");
}

/// Parses a `key:seq` event payload.
pub fn parse_keyed_event(p: &[u8]) -> (String, u64) {
    let s = std::str::from_utf8(p).expect("utf-8 event");
    let (k, n) = s.split_once(':').expect("key:seq");
    (k.to_owned(), n.parse().expect("sequence number"))
}

/// Tier-2 chunk objects under a local Tier-2 root (`file://` URL of that folder), counted.
pub fn tier2_chunks(root: &Path) -> usize {
    fn walk(dir: &Path, n: &mut usize) {
        let Ok(entries) = std::fs::read_dir(dir) else { return };
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                walk(&p, n);
            } else if p.extension().is_some_and(|x| x == "chunk") {
                *n += 1;
            }
        }
    }
    let mut n = 0;
    walk(root, &mut n);
    n
}

/// New tokens for `principals` (in order) and the `--token-file` holding their hashes, written
/// into `dir` as `tokens.toml`.
pub fn token_file(dir: &Path, principals: &[&str]) -> (Vec<String>, PathBuf) {
    let mut file = String::new();
    let tokens = principals
        .iter()
        .map(|who| {
            let (token, entry) = nadi_security::auth::new_token(who).expect("a token");
            file.push_str(&nadi_security::auth::entry_toml(&entry));
            token
        })
        .collect();
    let path = dir.join("tokens.toml");
    std::fs::write(&path, file).expect("write the token file");
    (tokens, path)
}

/// A standalone's flags for authentication required with `token_file`, `admin` a superuser,
/// and both Pravega listeners on free ports.
pub fn pravega_auth_flags(token_file: &Path) -> Vec<String> {
    [
        "--auth",
        "required",
        "--token-file",
        token_file.to_str().expect("a UTF-8 path"),
        "--superusers",
        "admin",
        "--pravega-controller-listen",
        "127.0.0.1:0",
        "--pravega-segment-listen",
        "127.0.0.1:0",
    ]
    .iter()
    .map(|s| (*s).to_owned())
    .collect()
}

/// Sets the test clock of a server started with `NADI_FAULT_CLOCK_FILE=file` (see
/// `nadi_proto::clock`) to `ms`, atomically (a server never reads half a number).
pub fn set_clock(file: &Path, ms: u64) {
    let tmp = file.with_extension("tmp");
    std::fs::write(&tmp, ms.to_string()).unwrap();
    std::fs::rename(&tmp, file).unwrap();
}
