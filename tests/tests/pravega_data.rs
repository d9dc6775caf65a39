//! Events through the unmodified Pravega Python client (`pravega==0.3.8`, in `target/pravega`,
//! installed by `.ci/run`) against the real `nadi` binary's Pravega front end (issue 20):
//!
//! - a `StreamWriter` writes 100,000 events over 100 routing keys and flushes; `nadi read`
//!   reads every one exactly once in per-key order; events `nadi write` adds are read by a
//!   Pravega reader group (two readers; the client hands segments to the second one only at
//!   its 10-second rebalance, so how they share is printed, not asserted) with the client's
//!   own events, exactly once, in per-key order;
//! - a `StreamTxnWriter` commits one transaction and aborts another: `nadi read` sees the
//!   committed events only;
//! - a reader group reads exactly once in per-key order while `nadi stream scale` splits and
//!   merges the stream mid-read, with writes between the scalings;
//! - a `ByteStream` is written, sought, read back and truncated;
//! - `seal_stream` (a writer of the sealed stream is refused), `delete_stream`, `list_stream`;
//! - with `--auth required`, an application whose token has `write` on the scope writes and
//!   reads through the segment port (its delegation token carries its own token, checked
//!   there against the same grants); one without a grant is refused;
//! - a writer whose store is killed (SIGKILL) and restarted mid-write reconnects with its
//!   writer id and resends what was not acknowledged: nothing is lost and nothing doubled.
//!
//! The checker is over acknowledged events: a writer's events count as acknowledged once its
//! `flush` returned; every one must be read back exactly once, in its key's order.
//! Costs about 2–3 minutes of `cargo test` (debug build of the store).

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use nadi_tests::cluster::free_port;
use nadi_tests::{Standalone, check_per_key_order, nadi_bin, ok};

/// The Python interpreter of the venv with `pravega==0.3.8` (see pravega_controller.rs).
fn pravega_python(test: &str) -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("NADI_PRAVEGA_PYTHON") {
        return Some(PathBuf::from(p));
    }
    let target = nadi_bin().parent().and_then(|p| p.parent()).map(|t| t.join("pravega/bin/python"));
    if let Some(t) = target.filter(|t| t.exists()) {
        return Some(t);
    }
    let how = "python3.11 -m venv target/pravega && target/pravega/bin/pip install pravega==0.3.8 \
               (or run .ci/run once, or set NADI_PRAVEGA_PYTHON to such a venv's python)";
    if std::env::var_os("NADI_SKIP_PRAVEGA_PY").is_some_and(|v| v == "1") {
        eprintln!("SKIPPED {test}: no venv with pravega==0.3.8 ({how})");
        return None;
    }
    panic!("the Pravega Python client is not installed: {how}; NADI_SKIP_PRAVEGA_PY=1 skips this test");
}

fn script() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("python/pravega_data.py")
}

fn py_command(python: &Path, uri: &str, args: &[&str]) -> Command {
    let mut c = Command::new(python);
    c.arg(script()).arg(uri).args(args).env("RUST_LOG", "error").stdin(Stdio::null());
    c.env_remove("pravega_client_auth_token").env_remove("pravega_client_auth_method");
    c
}

/// Runs one mode as an application with auth on, presenting `token`.
fn py_as(python: &Path, uri: &str, token: &str, args: &[&str]) -> Output {
    py_command(python, uri, args)
        .env("pravega_client_auth_method", "Basic")
        .env("pravega_client_auth_token", token)
        .output()
        .unwrap_or_else(|e| panic!("run {}: {e}", python.display()))
}

/// Runs one mode of the script to its end; panics with its output unless it succeeded.
fn py(python: &Path, uri: &str, args: &[&str]) -> String {
    let out = py_command(python, uri, args).output().unwrap_or_else(|e| panic!("run {}: {e}", python.display()));
    py_ok(&out, args)
}

fn py_ok(out: &Output, args: &[&str]) -> String {
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "the Python client failed ({args:?}):\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// `KEY SEQ ...` lines as `(KEY, SEQ)`, in order.
fn keyed(lines: &str) -> Vec<(String, u64)> {
    lines
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let mut parts = l.split(' ');
            let key = parts.next().expect("a key").to_owned();
            let seq = parts.next().and_then(|s| s.parse().ok()).unwrap_or_else(|| panic!("a sequence number: {l:?}"));
            (key, seq)
        })
        .collect()
}

/// `keys` keys `{prefix}{i}`, each with `per_key` events.
fn expect(prefix: &str, keys: u64, per_key: u64) -> HashMap<String, u64> {
    (0..keys).map(|k| (format!("{prefix}{k}"), per_key)).collect()
}

fn nadi_read_all(s: &Standalone, stream: &str, max: u64) -> String {
    // One more than expected: a duplicate would be read, not cut off.
    ok(&s.cli(&["read", stream, "--from-start", "--max", &(max + 1).to_string(), "--idle-timeout", "10"]))
}

/// Runs the script's reader group in the background: events go to a file; `READ n` lines are
/// its progress.
struct GroupReader {
    child: Child,
    out: PathBuf,
    progress: std::sync::mpsc::Receiver<String>,
    args: Vec<String>,
}

impl GroupReader {
    fn start(python: &Path, uri: &str, dir: &Path, args: &[&str]) -> GroupReader {
        let out = dir.join(format!("{}.events", args[2]));
        let mut full: Vec<String> = vec!["read".into()];
        full.extend(args.iter().take(4).map(|a| a.to_string()));
        full.push(out.display().to_string());
        full.extend(args.iter().skip(4).map(|a| a.to_string()));
        let refs: Vec<&str> = full.iter().map(String::as_str).collect();
        let mut child = py_command(python, uri, &refs).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
        let stdout = BufReader::new(child.stdout.take().unwrap());
        let (tx, progress) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in stdout.lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        GroupReader { child, out, progress, args: full }
    }

    /// Waits for a progress line of at least `n` events read.
    fn wait_read(&self, n: u64) {
        let deadline = Instant::now() + Duration::from_secs(120);
        while Instant::now() < deadline {
            if let Ok(line) = self.progress.recv_timeout(Duration::from_millis(200))
                && let Some(k) = line.strip_prefix("READ ").and_then(|k| k.parse::<u64>().ok())
                && k >= n
            {
                return;
            }
        }
        panic!("the Pravega reader group did not read {n} events in 120 s");
    }

    /// Waits for the reader to finish and returns what it read.
    fn finish(mut self) -> String {
        let deadline = Instant::now() + Duration::from_secs(240);
        let status = loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                break status;
            }
            assert!(Instant::now() < deadline, "the Pravega reader group did not finish in 240 s");
            std::thread::sleep(Duration::from_millis(100));
        };
        let mut err = String::new();
        std::io::Read::read_to_string(&mut self.child.stderr.take().unwrap(), &mut err).unwrap();
        let said: Vec<String> = self.progress.try_iter().collect();
        assert!(status.success(), "the Pravega reader failed ({:?}):\n{}\n{err}", self.args, said.join("\n"));
        if let Some(line) = said.iter().find(|l| l.starts_with("PER READER")) {
            eprintln!("{}: {line}", self.args[3]);
        }
        std::fs::read_to_string(&self.out).unwrap()
    }
}

fn start(dir: &Path, controller_port: u16, segment_port: u16) -> Standalone {
    Standalone::start_with(
        dir,
        &[
            "--pravega-controller-listen",
            &format!("127.0.0.1:{controller_port}"),
            "--pravega-segment-listen",
            &format!("127.0.0.1:{segment_port}"),
        ],
    )
}

#[test]
fn the_python_client_writes_transacts_and_reads_what_nadi_reads() {
    let Some(python) = pravega_python("the_python_client_writes_transacts_and_reads_what_nadi_reads") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let s = start(&dir.path().join("data"), 0, 0);
    let uri = s.pravega_controller.clone().unwrap();
    let py = |args: &[&str]| py(&python, &uri, args);

    // Create: fixed, then auto-scaling.
    py(&["create", "d", "fixed", "4"]);
    py(&["create", "d", "auto", "2", "auto"]);
    let auto: serde_json::Value = serde_json::from_str(&ok(&s.cli(&["stream", "info", "d/auto", "--json"]))).unwrap();
    assert_eq!(auto["policy"]["scaling"], "events:1000,2,2", "{auto}");

    // 100,000 events over 100 keys, flushed: Nadi's reader sees each once, in key order.
    let said = py(&["write", "d", "fixed", "100000", "100", "py"]);
    assert!(said.contains("ACKED 100000"), "{said}");
    eprintln!("{}", said.trim());
    let read = nadi_read_all(&s, "d/fixed", 100_000);
    check_per_key_order(&keyed(&read), &expect("k", 100, 1000), "nadi read of the Pravega writer's events");

    // The other way round: `nadi write` adds 1,000 events; a Pravega reader group reads all.
    let lines: String = (0..1000).map(|i| format!("n{} {} nadi\n", i % 10, i / 10)).collect();
    ok(&s.cli_stdin(&["write", "d/fixed", "--key-sep", " "], lines.as_bytes()));
    let group = GroupReader::start(&python, &uri, dir.path(), &["d", "fixed", "all", "101000"]).finish();
    let mut want = expect("k", 100, 1000);
    want.extend(expect("n", 10, 100));
    check_per_key_order(&keyed(&group), &want, "a Pravega reader group");

    // Transactions: one committed, one aborted.
    py(&["create", "d", "tx", "3"]);
    let said = py(&["txn", "d", "tx"]);
    assert!(said.contains("TXNS DONE"), "{said}");
    let read = nadi_read_all(&s, "d/tx", 200);
    assert!(!read.contains("aborted"), "an aborted transaction's events were read: {read}");
    check_per_key_order(&keyed(&read), &expect("t", 10, 10), "the committed transaction");

    // Scaling mid-read: 2 segments → split → merge, with writes before, between and after.
    py(&["create", "d", "sc", "2"]);
    py(&["write", "d", "sc", "4000", "20", "before", "0"]);
    let reader = GroupReader::start(&python, &uri, dir.path(), &["d", "sc", "scaling", "12000", "0.05"]);
    reader.wait_read(1);
    let info = ok(&s.cli(&["stream", "info", "d/sc", "--json"]));
    let v: serde_json::Value = serde_json::from_str(&info).unwrap();
    let first = v["segments"][0]["id"].as_u64().unwrap_or_else(|| panic!("segment ids: {info}"));
    ok(&s.cli(&["stream", "scale", "d/sc", "--split", &first.to_string()]));
    py(&["write", "d", "sc", "4000", "20", "split", "200"]);
    let info = ok(&s.cli(&["stream", "info", "d/sc", "--json"]));
    let v: serde_json::Value = serde_json::from_str(&info).unwrap();
    let ids: Vec<u64> = v["segments"].as_array().unwrap().iter().map(|s| s["id"].as_u64().unwrap()).collect();
    assert_eq!(ids.len(), 3, "{info}");
    ok(&s.cli(&["stream", "scale", "d/sc", "--merge", &format!("{},{}", ids[0], ids[1])]));
    py(&["write", "d", "sc", "4000", "20", "merged", "400"]);
    let read = reader.finish();
    check_per_key_order(&keyed(&read), &expect("k", 20, 600), "a Pravega reader group across a split and a merge");

    // A byte stream: written, sought, read, truncated.
    py(&["create", "d", "bytes", "1"]);
    let said = py(&["bytes", "d", "bytes"]);
    assert!(said.contains("BYTES DONE"), "{said}");

    // Seal (a writer is refused afterwards), list, delete.
    let said = py(&["finish", "d", "fixed"]);
    assert!(said.contains("FINISH DONE"), "{said}");
    assert!(!ok(&s.cli(&["stream", "list", "d"])).lines().any(|l| l.trim() == "fixed"));
    s.stop();
}

#[test]
fn a_writer_cut_off_by_a_store_restart_duplicates_nothing() {
    let Some(python) = pravega_python("a_writer_cut_off_by_a_store_restart_duplicates_nothing") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let (ctl, seg) = (free_port(), free_port());
    let s = start(&data, ctl, seg);
    let uri = s.pravega_controller.clone().unwrap();
    py(&python, &uri, &["create", "r", "s", "3"]);
    const EVENTS: u64 = 60_000;
    // Paced (25 ms per 500 events, about 3 s in all) so that it is still writing when cut off.
    let mut writer = py_command(&python, &uri, &["write", "r", "s", &EVENTS.to_string(), "30", "w", "0", "0.025"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Kill the store once part of the events is stored, then start it again on the same ports.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let info = ok(&s.cli(&["stream", "stats", "r/s", "--json"]));
        let v: serde_json::Value = serde_json::from_str(&info).unwrap();
        let stored = v["total"]["writer_events"].as_u64().unwrap_or(0);
        if stored > EVENTS / 4 {
            assert!(stored < EVENTS, "the writer finished before it could be cut off: {info}");
            assert!(writer.try_wait().unwrap().is_none(), "the writer finished before it could be cut off");
            break;
        }
        assert!(Instant::now() < deadline, "the writer stored nothing in 60 s: {info}");
        std::thread::sleep(Duration::from_millis(50));
    }
    s.kill9();
    let s = start(&data, ctl, seg);
    let deadline = Instant::now() + Duration::from_secs(180);
    while writer.try_wait().unwrap().is_none() {
        assert!(Instant::now() < deadline, "the writer did not finish in 180 s after the restart");
        std::thread::sleep(Duration::from_millis(100));
    }
    let said = py_ok(&writer.wait_with_output().unwrap(), &["write"]);
    assert!(said.contains(&format!("ACKED {EVENTS}")), "{said}");
    let read = nadi_read_all(&s, "r/s", EVENTS);
    check_per_key_order(&keyed(&read), &expect("k", 30, EVENTS / 30), "events of a writer cut off by a restart");
    s.stop();
}

#[test]
fn with_auth_on_the_segment_port_checks_the_callers_own_token() {
    let Some(python) = pravega_python("with_auth_on_the_segment_port_checks_the_callers_own_token") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let (tokens, token_file) = nadi_tests::token_file(dir.path(), &["admin", "app", "nobody"]);
    let (admin, app, nobody) = (&tokens[0], &tokens[1], &tokens[2]);
    let flags = nadi_tests::pravega_auth_flags(&token_file);
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    let s = Standalone::start_with(&dir.path().join("data"), &flags);
    let uri = s.pravega_controller.clone().unwrap();
    ok(&s.cli(&["--token", admin, "scope", "create", "sec"]));
    ok(&s.cli(&["--token", admin, "acl", "grant", "app", "write", "prn::/scope:sec"]));
    py_ok(&py_as(&python, &uri, admin, &["create", "sec", "st", "2"]), &["create"]);
    let said = py_ok(&py_as(&python, &uri, app, &["write", "sec", "st", "2000", "20", "app"]), &["write"]);
    assert!(said.contains("ACKED 2000"), "{said}");
    let out = dir.path().join("sec.events");
    let out_arg = out.display().to_string();
    py_ok(&py_as(&python, &uri, app, &["read", "sec", "st", "g", "2000", &out_arg]), &["read"]);
    check_per_key_order(&keyed(&std::fs::read_to_string(&out).unwrap()), &expect("k", 20, 100), "an authorized reader");
    // Without a grant: refused (by the controller first; the segment port refuses its
    // delegation token too, tests/pravega_wire.rs).
    let refused = py_as(&python, &uri, nobody, &["write", "sec", "st", "10", "1", "nobody"]);
    assert!(!refused.status.success(), "a writer without a grant was let through");
    s.stop();
}

/// With `--tls-cert`, both Pravega listeners speak TLS: an application given the `tls://`
/// controller URI (a DNS name in the certificate, as the client refuses IP addresses) and the
/// CA writes and reads through the segment port over TLS.
#[test]
fn over_tls_the_client_writes_and_reads() {
    let Some(python) = pravega_python("over_tls_the_client_writes_and_reads") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let pki = nadi_tests::tls::Pki::new(dir.path(), "pravega");
    let mut args = pki.server_args(&pki.issue("node"));
    let (ctl, seg) = (free_port(), free_port());
    args.extend([
        "--pravega-controller-listen".to_owned(),
        format!("127.0.0.1:{ctl}"),
        "--pravega-segment-listen".to_owned(),
        format!("127.0.0.1:{seg}"),
        "--pravega-segment-advertise".to_owned(),
        format!("localhost:{seg}"),
    ]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let s = Standalone::start_with(&dir.path().join("data"), &args);
    assert_eq!(s.pravega_controller.as_deref(), Some(format!("tls://127.0.0.1:{ctl}").as_str()));
    let uri = format!("tls://localhost:{ctl}");
    let with_ca = |args: &[&str]| {
        let out = py_command(&python, &uri, args)
            .env("pravega_client_tls_cert_path", &pki.ca)
            .output()
            .unwrap_or_else(|e| panic!("run {}: {e}", python.display()));
        py_ok(&out, args)
    };
    with_ca(&["create", "tls", "st", "2"]);
    let said = with_ca(&["write", "tls", "st", "2000", "20", "tls"]);
    assert!(said.contains("ACKED 2000"), "{said}");
    let out = dir.path().join("tls.events").display().to_string();
    with_ca(&["read", "tls", "st", "g", "2000", &out]);
    check_per_key_order(&keyed(&std::fs::read_to_string(&out).unwrap()), &expect("k", 20, 100), "a reader over TLS");
    // Plain TCP to the TLS segment port gets no Pravega reply.
    let mut c = std::net::TcpStream::connect(("127.0.0.1", seg)).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    std::io::Write::write_all(&mut c, &[0xff, 0xff, 0xff, 0x81, 0, 0, 0, 8, 0, 0, 0, 15, 0, 0, 0, 5]).unwrap();
    let mut b = [0u8; 16];
    let n = std::io::Read::read(&mut c, &mut b).unwrap_or(0);
    assert!(n == 0 || b[..4] != [0xff, 0xff, 0xff, 0x81], "a plaintext Hello was answered over a TLS port");
    s.stop();
}
