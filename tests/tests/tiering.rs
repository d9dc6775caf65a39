//! Tiering against the real binary: with a small `--tier1-capacity`, a write far larger than
//! the cap keeps the Tier-1 log files under it (plus one file) because the storage writer moves
//! data to Tier-2 and the log recycles its files; a full read from the start then returns every
//! event exactly once, in per-key order, byte for byte, before and after a restart. Bad tiering
//! settings are refused with a clear message.
//!
//! The acceptance run of issue 7 (5 GiB through a 512 MiB cap) is the ignored test
//! `five_gib_through_a_512mib_tier1`; the CI test below proves the same at a smaller size.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use nadi_tests::{Standalone, ok};

/// Bytes of Tier-1 log files on disk (current, written, recycled and being prepared).
fn tier1_bytes(data: &Path) -> u64 {
    let mut total = 0;
    let Ok(containers) = std::fs::read_dir(data.join("tier1")) else { return 0 };
    for c in containers.flatten() {
        let Ok(files) = std::fs::read_dir(c.path()) else { continue };
        for f in files.flatten() {
            if f.file_name().to_string_lossy().starts_with("log-") {
                total += f.metadata().map(|m| m.len()).unwrap_or(0);
            }
        }
    }
    total
}

fn chunk_count(dir: &Path) -> usize {
    let mut n = 0;
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                n += chunk_count(&p);
            } else if p.extension().is_some_and(|e| e == "chunk") {
                n += 1;
            }
        }
    }
    n
}

/// Line `i`: `key{i % keys}\t{i}\t` and filler up to about `size` bytes, derived from `i`.
fn line(i: u64, keys: u64, size: usize) -> String {
    let mut s = format!("key{}\t{i}\t", i % keys);
    let fill = size.saturating_sub(s.len());
    s.extend((0..fill).map(|j| (b'a' + ((i as usize + j) % 26) as u8) as char));
    s
}

/// Reads the whole stream from the start with `nadi read`, checking line by line (nothing is
/// held but one bit per event): every line 0..n exactly once, byte-identical, each key's lines
/// in increasing order.
fn read_and_check(controller: &str, n: u64, keys: u64, size: usize) {
    use std::io::BufRead;
    let mut child = std::process::Command::new(nadi_tests::nadi_bin())
        .args(["--controller", controller, "read", "demo/big", "--from-start", "--idle-timeout", "3"])
        .env("NADI_LOG", "error")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let out = std::io::BufReader::with_capacity(1 << 20, child.stdout.take().unwrap());
    let mut seen = vec![false; n as usize];
    let mut last = vec![None::<u64>; keys as usize];
    let mut count = 0u64;
    for l in out.lines() {
        let l = l.unwrap();
        let mut parts = l.splitn(3, '\t');
        let (_, num) = (parts.next(), parts.next());
        let num: u64 = num.and_then(|n| n.parse().ok()).unwrap_or_else(|| panic!("malformed line {l:.60}"));
        assert!(num < n, "unexpected event {num}");
        assert!(!seen[num as usize], "event {num} read twice");
        seen[num as usize] = true;
        assert_eq!(l, line(num, keys, size), "event {num} is not byte-identical");
        let k = (num % keys) as usize;
        assert!(last[k].is_none_or(|p| p < num), "key {k}: {num} read after {:?}", last[k]);
        last[k] = Some(num);
        count += 1;
    }
    let status = child.wait_with_output().unwrap();
    assert!(status.status.success(), "nadi read failed: {}", String::from_utf8_lossy(&status.stderr));
    assert_eq!(count, n, "expected {n} events, read {count}");
}

/// Writes lines `from..to` with one `nadi write`, generated while they are sent.
fn write_lines(controller: &str, from: u64, to: u64, keys: u64, size: usize) {
    use std::io::Write;
    let mut child = std::process::Command::new(nadi_tests::nadi_bin())
        .args(["--controller", controller, "write", "demo/big", "--key-sep", "\t"])
        .env("NADI_LOG", "error")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stdin = child.stdin.take().unwrap();
    let feeder = std::thread::spawn(move || {
        let mut w = std::io::BufWriter::with_capacity(1 << 20, stdin);
        for j in from..to {
            if writeln!(w, "{}", line(j, keys, size)).is_err() {
                return;
            }
        }
    });
    let out = child.wait_with_output().unwrap();
    feeder.join().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "nadi write failed: {}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains(&format!("wrote {}", to - from)), "{stdout}");
}

/// How a run reaches its Tier-2.
struct Run<'a> {
    flags: &'a [&'a str],
    env: &'a [(&'a str, &'a str)],
    /// Called (on another thread) once the first part of the data is written: an outage.
    outage: Option<Box<dyn FnOnce() + Send>>,
    /// True if Tier-2 holds chunks.
    has_chunks: Box<dyn Fn(&Path) -> bool>,
}

/// Writes `total` bytes of ~`size`-byte events with `--tier1-capacity cap` and the given log
/// file size, watching the Tier-1 files all along; then reads everything back, restarts, and
/// reads it again. Returns the largest Tier-1 size seen and the server's log.
fn write_through_a_capped_tier1(run: Run<'_>, cap: u64, file: u64, total: u64, size: usize) -> (u64, String) {
    let dir = tempfile::tempdir().unwrap();
    let Run { flags, env, mut outage, has_chunks } = run;
    let s = Standalone::start_with_env(dir.path(), flags, env);
    ok(&s.cli(&["scope", "create", "demo"]));
    ok(&s.cli(&["stream", "create", "demo/big", "--segments", "4"]));

    let stop = Arc::new(AtomicBool::new(false));
    let max_seen = Arc::new(AtomicU64::new(0));
    let watcher = {
        let (stop, max_seen, data) = (stop.clone(), max_seen.clone(), dir.path().to_owned());
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                max_seen.fetch_max(tier1_bytes(&data), Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(5));
            }
        })
    };
    // Bounded in time: a run that stops making progress (writers waiting for ever) is killed,
    // and the writes then fail the test instead of hanging it.
    let done = Arc::new(AtomicBool::new(false));
    let watchdog = {
        let (done, pid) = (done.clone(), s.pid());
        let limit = Duration::from_secs(60 + total / (1 << 20));
        std::thread::spawn(move || {
            let deadline = std::time::Instant::now() + limit;
            while !done.load(Ordering::Relaxed) {
                if std::time::Instant::now() > deadline {
                    eprintln!("tiering: the run took more than {limit:?}; killing the server");
                    // SAFETY: a signal to our own child, by pid.
                    unsafe { libc::kill(pid as i32, libc::SIGKILL) };
                    return;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        })
    };
    let keys = 16;
    let n = total / size as u64;
    // Several `nadi write` runs (an outage starts after the first).
    let per_run = (n / 4).max(1);
    let mut i = 0;
    let mut outage_thread = None;
    while i < n {
        if i > 0
            && let Some(f) = outage.take()
        {
            outage_thread = Some(std::thread::spawn(f));
        }
        let end = (i + per_run).min(n);
        write_lines(&s.controller_url, i, end, keys, size);
        i = end;
    }
    if let Some(t) = outage_thread {
        t.join().unwrap();
    }
    stop.store(true, Ordering::Relaxed);
    watcher.join().unwrap();
    let max = max_seen.load(Ordering::Relaxed);
    assert!(max <= cap + file, "Tier-1 reached {max} bytes; the cap is {cap} plus one file of {file}");
    assert!(has_chunks(dir.path()), "data moved to Tier-2");

    read_and_check(&s.controller_url, n, keys, size);
    done.store(true, Ordering::Relaxed);
    watchdog.join().unwrap();
    let log = s.log.lock().unwrap().clone();
    s.stop();
    let s = Standalone::start_with_env(dir.path(), flags, env);
    read_and_check(&s.controller_url, n, keys, size);
    s.stop();
    (max, log)
}

fn local_tier2(flags: &'static [&'static str]) -> Run<'static> {
    Run { flags, env: &[], outage: None, has_chunks: Box::new(|data| chunk_count(&data.join("tier2")) > 0) }
}

/// Small files and a small cap, so that a CI-sized write goes through many recycles.
const FLAGS: [&str; 10] = [
    "--containers",
    "2",
    "--log-file-size",
    "20MiB",
    "--tier1-capacity",
    "120MiB",
    "--tier2-chunk-size",
    "2MiB",
    "--tier2-max-age",
    "2s",
];

#[test]
fn tier1_stays_under_its_capacity_and_a_full_read_returns_every_byte_in_order() {
    // 320 MiB through 120 MiB of Tier-1.
    let (max, _) = write_through_a_capped_tier1(local_tier2(&FLAGS), 120 << 20, 20 << 20, 320 << 20, 1000);
    eprintln!("tiering: Tier-1 peaked at {:.1} MiB under a 120 MiB cap", max as f64 / (1 << 20) as f64);
}

/// Issue 7, acceptance 1: 5 GiB with `--tier1-capacity 512MiB` (run by hand, release build:
/// `cargo test --release -p nadi-tests --test tiering -- --ignored`).
#[test]
#[ignore]
fn five_gib_through_a_512mib_tier1() {
    const BIG: [&str; 4] = ["--tier1-capacity", "512MiB", "--log-file-size", "32MiB"];
    let (max, _) = write_through_a_capped_tier1(local_tier2(&BIG), 512 << 20, 32 << 20, 5 << 30, 1000);
    eprintln!("tiering: Tier-1 peaked at {:.1} MiB under a 512 MiB cap", max as f64 / (1 << 20) as f64);
}

#[test]
fn bad_tiering_settings_are_refused_with_a_clear_message() {
    let dir = tempfile::tempdir().unwrap();
    let start = |extra: &[&str]| {
        let out = Standalone::command(dir.path(), extra).output().unwrap();
        assert!(!out.status.success(), "{extra:?} must be refused");
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    let e = start(&["--tier2", "ftp://host/x"]);
    assert!(e.contains("unknown Tier-2 backend") && e.contains("s3://"), "{e}");
    let e = start(&["--tier1-capacity", "10MiB"]);
    assert!(e.contains("too small") && e.contains("at least 3 log files"), "{e}");
    let e = start(&["--tier1-capacity", "lots"]);
    assert!(e.contains("is not a size"), "{e}");
    let e = start(&["--tier2", "none", "--tier1-capacity", "1GiB"]);
    assert!(e.contains("needs a Tier-2"), "{e}");
}

/// An S3-compatible server (moto, installed by `.ci/run` under target/moto) on a free loopback
/// port, killed when dropped.
struct Moto {
    child: std::process::Child,
    port: u16,
}

impl Moto {
    fn start() -> Option<Moto> {
        let bin = std::env::var_os("NADI_MOTO_SERVER")
            .map(std::path::PathBuf::from)
            .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/moto/bin/moto_server"));
        if !bin.exists() {
            assert!(std::env::var_os("CI").is_none(), "{} is missing: .ci/run installs it", bin.display());
            eprintln!("SKIPPED: {} not found (run .ci/run once to install moto)", bin.display());
            return None;
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let child = std::process::Command::new(bin)
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("start moto_server");
        let moto = Moto { child, port };
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(std::time::Instant::now() < deadline, "moto_server did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
        Some(moto)
    }

    fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Number of objects in `bucket` (up to 1000 are enough to tell).
    fn object_count(addr: &str, bucket: &str) -> usize {
        let (status, body) = nadi_tests::http_raw(addr, "GET", &format!("/{bucket}?list-type=2"), None);
        let n = body.matches("<Key>").count();
        if n == 0 {
            eprintln!("moto: listing {bucket} gave {status}: {body:.500}");
        }
        n
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        // SAFETY: a signal to our own child, by pid (it may be stopped: wake it to die).
        unsafe { libc::kill(self.child.id() as i32, libc::SIGCONT) };
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Issue 7, acceptance 3 at CI size: the same as above against an S3-compatible server, which
/// stops answering for 10 s in the middle of the run (SIGSTOP, then SIGCONT: moto keeps its
/// objects in memory, so a restart would lose them). Uploads fail and are retried, Tier-1 keeps
/// taking writes (then makes writers wait), and everything drains: no event lost.
#[test]
fn s3_outage_mid_run_loses_nothing_and_writes_resume() {
    let Some(moto) = Moto::start() else { return };
    let addr = moto.addr();
    let (status, body) = nadi_tests::http_raw(&addr, "PUT", "/nadi", None);
    assert_eq!(status, 200, "create bucket: {body}");
    let endpoint = format!("http://{addr}");
    let mut flags = vec!["--tier2", "s3://nadi/cluster-a", "--tier2-endpoint", endpoint.as_str()];
    flags.extend(FLAGS);
    let env = [("AWS_ACCESS_KEY_ID", "test"), ("AWS_SECRET_ACCESS_KEY", "test"), ("AWS_REGION", "us-east-1")];
    let pid = moto.child.id() as i32;
    let outage = move || {
        // SAFETY: signals to our own child process, by pid.
        unsafe { libc::kill(pid, libc::SIGSTOP) };
        std::thread::sleep(Duration::from_secs(10));
        unsafe { libc::kill(pid, libc::SIGCONT) };
    };
    let addr2 = addr.clone();
    let run = Run {
        flags: &flags,
        env: &env,
        outage: Some(Box::new(outage)),
        has_chunks: Box::new(move |_| Moto::object_count(&addr2, "nadi") > 0),
    };
    let (max, log) = write_through_a_capped_tier1(run, 120 << 20, 20 << 20, 200 << 20, 1000);
    assert!(log.contains("Tier-2 upload failed"), "the outage was felt by the uploads; log:\n{log}");
    eprintln!("tiering (S3): Tier-1 peaked at {:.1} MiB under a 120 MiB cap", max as f64 / (1 << 20) as f64);
    drop(moto);
}

/// `nadi bench --catch-up` reads a stream whose older data moved to Tier-2 and reports the
/// Tier-2 part and the Tier-1 part apart: every byte and event once, split by where it was.
#[test]
fn catch_up_bench_reports_tier2_and_tier1_reads_apart() {
    let dir = tempfile::tempdir().unwrap();
    let flags = ["--containers", "2", "--tier2-chunk-size", "1MiB", "--tier2-max-age", "1s"];
    let s = Standalone::start_with(dir.path(), &flags);
    let bench = |args: &[&str]| {
        let out = s.cli(&[&["bench", "--stream", "demo/cu", "--segments", "2"][..], args].concat());
        serde_json::from_str::<serde_json::Value>(ok(&out).trim()).unwrap()
    };
    let first = bench(&["--rate", "4000", "--duration", "1", "--event-size", "1000"]);
    let stats = |s: &Standalone| {
        serde_json::from_str::<serde_json::Value>(ok(&s.cli(&["stream", "stats", "demo/cu", "--json"])).trim()).unwrap()
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while stats(&s)["total"]["tier2_bytes"].as_u64().unwrap_or(0) == 0 {
        assert!(std::time::Instant::now() < deadline, "nothing moved to Tier-2 in 60 s: {}", stats(&s));
        std::thread::sleep(Duration::from_millis(200));
    }
    let second = bench(&["--rate", "2000", "--duration", "1", "--event-size", "1000"]);
    let events = first["events"].as_u64().unwrap() + second["events"].as_u64().unwrap();
    let total = stats(&s)["total"]["length"].as_u64().unwrap();
    let r = bench(&["--catch-up"]);
    assert_eq!(r["events"].as_u64(), Some(events), "{r}");
    assert_eq!(r["bytes"].as_u64(), Some(total), "{r}");
    let (t2, t1) = (r["tier2"]["bytes"].as_u64().unwrap(), r["tier1"]["bytes"].as_u64().unwrap());
    assert!(t2 > 0, "some bytes came from Tier-2: {r}");
    assert_eq!(t2 + t1, total, "{r}");
    assert!(r["tier2"]["mb_per_sec"].as_f64().unwrap() > 0.0, "{r}");
    s.stop();
}
