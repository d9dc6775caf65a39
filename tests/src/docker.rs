//! Helpers for tests that run the `nadi` image in Docker: bounded commands, the image built
//! from the binary under test, and the skip rule (no Docker: a clear line and a pass, except
//! that under `CI` only a missing Docker may skip).

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::nadi_bin;

/// The workspace root.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("workspace root").to_owned()
}

/// Runs `cmd` with `input` on stdin; `None` if it did not finish within `timeout` (it is killed).
pub fn run_bounded(cmd: &mut Command, input: &[u8], timeout: Duration) -> Option<Output> {
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    let mut stdin = child.stdin.take().expect("piped stdin");
    let input = input.to_vec();
    let feeder = std::thread::spawn(move || {
        let _ = stdin.write_all(&input);
    });
    let mut out_pipe = child.stdout.take().expect("piped stdout");
    let mut err_pipe = child.stderr.take().expect("piped stderr");
    let out_reader = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = out_pipe.read_to_end(&mut v);
        v
    });
    let err_reader = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = err_pipe.read_to_end(&mut v);
        v
    });
    let deadline = Instant::now() + timeout;
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for a child") {
            break Some(status);
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let _ = feeder.join();
    let stdout = out_reader.join().unwrap_or_default();
    let stderr = err_reader.join().unwrap_or_default();
    status.map(|status| Output { status, stdout, stderr })
}

/// Like [`run_bounded`], failing the test on a timeout or a non-zero exit; returns stdout.
pub fn run_ok(cmd: &mut Command, input: &[u8], timeout: Duration) -> String {
    let what = format!("{cmd:?}");
    let out = run_bounded(cmd, input, timeout).unwrap_or_else(|| panic!("{what} did not finish in {timeout:?}"));
    assert!(
        out.status.success(),
        "{what} failed with {}:\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Whether `program args…` runs and exits 0 within 30 s.
pub fn succeeds(program: &str, args: &[&str]) -> bool {
    run_bounded(Command::new(program).args(args), b"", Duration::from_secs(30)).is_some_and(|o| o.status.success())
}

/// Prints why a Docker test is skipped; under `CI` only a missing Docker may skip it.
pub fn skip_or_fail(why: &str) {
    assert!(std::env::var_os("CI").is_none() || why.starts_with("docker not"), "under CI: {why}");
    eprintln!("skipped: {why}");
}

/// The image of the binary under test: `$NADI_TEST_IMAGE` as it is, else `nadi:test` built by
/// `deploy/docker/build-image.sh` (which makes the debootstrap base only if it is missing and
/// rebuilds the image only if its inputs changed).
pub fn test_image() -> String {
    match std::env::var("NADI_TEST_IMAGE") {
        Ok(image) => image,
        Err(_) => {
            let mut cmd = Command::new(repo_root().join("deploy/docker/build-image.sh"));
            cmd.env("NADI_BIN", nadi_bin()).env("NADI_IMAGE", "nadi:test");
            run_ok(&mut cmd, b"", Duration::from_secs(600));
            "nadi:test".to_owned()
        }
    }
}
