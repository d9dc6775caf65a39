//! Property-based run of the admin HTTP API against its own `/openapi.json` with schemathesis:
//! no 5xx, and every response (status, content type, body) conforms to the documented schema.
//!
//! schemathesis comes from PyPI; `.ci/run` installs the pinned version into
//! `target/schemathesis` (a venv). The test uses `$NADI_SCHEMATHESIS`, then that venv, then
//! `schemathesis` on `PATH`, and fails with install instructions when none is there.

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use nadi_tests::{Standalone, nadi_bin, ok};

fn schemathesis() -> PathBuf {
    if let Some(p) = std::env::var_os("NADI_SCHEMATHESIS") {
        return PathBuf::from(p);
    }
    let venv = nadi_bin().parent().and_then(|p| p.parent()).map(|t| t.join("schemathesis/bin/schemathesis"));
    if let Some(v) = venv.filter(|v| v.exists()) {
        return v;
    }
    let on_path = Command::new("schemathesis").arg("--version").stdout(Stdio::null()).stderr(Stdio::null()).status();
    if on_path.is_ok_and(|s| s.success()) {
        return PathBuf::from("schemathesis");
    }
    panic!(
        "schemathesis is not installed. Run `.ci/run` once, or: python3 -m venv target/schemathesis && \
         target/schemathesis/bin/pip install schemathesis==4.32.5 (or set NADI_SCHEMATHESIS to its path)"
    );
}

#[test]
fn schemathesis_finds_no_server_errors_and_no_schema_violations() {
    let bin = schemathesis();
    let dir = tempfile::tempdir().unwrap();
    let s = Standalone::start(dir.path());
    // Some data so that the generated requests also reach existing scopes and streams.
    ok(&s.cli(&["scope", "create", "demo"]));
    ok(&s.cli(&["stream", "create", "demo/orders", "--segments", "2"]));
    let url = format!("http://{}/openapi.json", s.http_addr);
    let mut child = Command::new(&bin)
        // schemathesis keeps a cache in `.schemathesis/` of its working directory.
        .current_dir(dir.path())
        .args(["run", &url])
        .args([
            "--checks",
            "not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance",
            "--phases",
            "examples,coverage,fuzzing,stateful",
            "--max-examples",
            "40",
            "--seed",
            "1",
            "--no-color",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", bin.display()));
    // Bounded in time: a run that hangs is a failure, not a stuck test suite.
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        if child.try_wait().expect("wait for schemathesis").is_some() {
            break;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let out = child.wait_with_output().expect("schemathesis output");
            panic!("schemathesis did not finish in 300 s:\n{}", String::from_utf8_lossy(&out.stdout));
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let out = child.wait_with_output().expect("schemathesis output");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "schemathesis found problems:\n{stdout}\n{}\nserver log:\n{}",
        String::from_utf8_lossy(&out.stderr),
        s.log.lock().unwrap()
    );
    assert!(stdout.contains("passed"), "schemathesis ran no test:\n{stdout}");
}
