//! A writer process killed with SIGKILL while its last batches are in flight, then run again
//! with the same writer id over the same input, stores every event exactly once: the store
//! acknowledges what it already holds (the re-sent last batch among it) without storing it
//! twice.

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use nadi_tests::{Standalone, check_keyed_output, keyed_lines, nadi_bin, ok};

#[test]
fn a_restarted_writer_with_the_same_id_stores_nothing_twice() {
    let dir = tempfile::tempdir().unwrap();
    let s = Standalone::start(dir.path());
    ok(&s.cli(&["scope", "create", "demo"]));
    ok(&s.cli(&["stream", "create", "demo/t", "--segments", "4"]));
    const N: u64 = 40_000;
    let input = keyed_lines(N, 97);

    // First run: the input fed in paced chunks (as from a live source), SIGKILLed while it
    // is still writing, with batches in flight.
    let mut first = Command::new(nadi_bin())
        .args(["--controller", &s.controller_url, "write", "demo/t", "--key-sep", "\t", "--writer-id", "job-1"])
        .env("NADI_LOG", "error")
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut stdin = first.stdin.take().unwrap();
    let chunks: Vec<Vec<u8>> =
        input.split_inclusive(|b| *b == b'\n').collect::<Vec<_>>().chunks(200).map(|c| c.concat()).collect();
    let feeder = std::thread::spawn(move || {
        for c in chunks {
            if stdin.write_all(&c).is_err() {
                break; // the writer was killed
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    });
    // Wait until some of it is stored, so the kill lands mid-stream.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let out = s.cli(&["read", "demo/t", "--from-start", "--max", "1000", "--idle-timeout", "1"]);
        if String::from_utf8_lossy(&out.stdout).lines().count() >= 1000 {
            break;
        }
        assert!(Instant::now() < deadline, "the first run stored nothing");
    }
    first.kill().unwrap();
    let _ = first.wait();
    feeder.join().unwrap();
    let stored_before = ok(&s.cli(&["read", "demo/t", "--from-start", "--idle-timeout", "2"])).lines().count();
    eprintln!("first run stored {stored_before} of {N} events before SIGKILL");

    // Second run: the whole input again, same writer id.
    let out = ok(&s.cli_stdin(&["write", "demo/t", "--key-sep", "\t", "--writer-id", "job-1"], &input));
    assert!(out.contains(&format!("wrote {N} events")), "{out}");
    let read = ok(&s.cli(&["read", "demo/t", "--from-start", "--max", &N.to_string(), "--idle-timeout", "20"]));
    check_keyed_output(&read, N);
    // And nothing beyond: a third identical run adds nothing either.
    ok(&s.cli_stdin(&["write", "demo/t", "--key-sep", "\t", "--writer-id", "job-1"], &input));
    let all = ok(&s.cli(&["read", "demo/t", "--from-start", "--idle-timeout", "3"]));
    check_keyed_output(&all, N);
}
