//! Damage tests on the real binary's Tier-1 log files:
//! - the last log file cut at random positions inside its last record, with garbage appended:
//!   recovery cuts the torn tail and serves everything before it;
//! - one byte flipped in the middle of a record: the store reports the damage with file and
//!   offset, and no read returns the damaged bytes.

use std::fs;
use std::path::{Path, PathBuf};

use nadi_tests::{Standalone, ok};
use rand::Rng;

/// (start, end) of every record in a log file, parsed per docs/on-disk-format.md.
fn records(bytes: &[u8]) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    let mut pos = 0;
    while pos + 24 <= bytes.len() && &bytes[pos..pos + 4] == b"NADI" {
        let len = u32::from_le_bytes(bytes[pos + 8..pos + 12].try_into().unwrap()) as usize;
        let end = pos + (24 + len).div_ceil(8) * 8;
        out.push((pos, end));
        pos = end;
    }
    out
}

/// The one log file that holds records (the stream has a single segment).
fn data_log(dir: &Path) -> PathBuf {
    let mut found = Vec::new();
    for c in fs::read_dir(dir.join("tier1")).unwrap() {
        let c = c.unwrap().path();
        if !c.is_dir() {
            continue;
        }
        for f in fs::read_dir(&c).unwrap() {
            let f = f.unwrap().path();
            if fs::read(&f).map(|b| b.starts_with(b"NADI")).unwrap_or(false) {
                found.push(f);
            }
        }
    }
    assert_eq!(found.len(), 1, "expected one log file with records, found {found:?}");
    found.pop().unwrap()
}

/// Writes `batches` separate `nadi write` invocations (one record each) and returns the lines.
fn populate(s: &Standalone, batches: usize) -> Vec<String> {
    ok(&s.cli(&["scope", "create", "dmg"]));
    ok(&s.cli(&["stream", "create", "dmg/s", "--segments", "1"]));
    let mut all = Vec::new();
    for b in 0..batches {
        let lines: Vec<String> = (0..50).map(|i| format!("batch{b}-event{i}-{}", "x".repeat(i * 7))).collect();
        ok(&s.cli_stdin(&["write", "dmg/s", "--key", "k"], (lines.join("\n") + "\n").as_bytes()));
        all.extend(lines);
    }
    all
}

fn read_lines(s: &Standalone, max: usize) -> std::process::Output {
    s.cli(&["read", "dmg/s", "--from-start", "--max", &max.to_string(), "--idle-timeout", "3"])
}

#[test]
fn a_torn_tail_is_cut_and_everything_before_it_is_served() {
    let dir = tempfile::tempdir().unwrap();
    let s = Standalone::start(dir.path());
    let lines = populate(&s, 6);
    s.stop();
    let log = data_log(dir.path());
    let original = fs::read(&log).unwrap();
    let recs = records(&original);
    // Records: create-segment, then one per write invocation.
    let (last_start, last_end) = *recs.last().unwrap();
    let before_last = lines.len() - 50;
    let mut rng = rand::rng();
    for round in 0..4 {
        let cut = rng.random_range(last_start + 1..last_end);
        let mut damaged = original[..cut].to_vec();
        damaged.extend((0..rng.random_range(1..5000)).map(|_| rng.random::<u8>()));
        fs::write(&log, &damaged).unwrap();
        let s = Standalone::start(dir.path());
        let out = read_lines(&s, lines.len());
        let got = ok(&out);
        let got: Vec<&str> = got.lines().collect();
        assert_eq!(got.len(), before_last, "round {round}: cut at {cut}");
        assert!(got.iter().zip(&lines).all(|(a, b)| a == b), "round {round}: served events differ");
        assert!(s.log.lock().unwrap().contains("torn tail"), "round {round}: recovery did not log the torn tail");
        // The store takes writes again after the cut, and they survive a restart.
        ok(&s.cli_stdin(&["write", "dmg/s", "--key", "k"], b"after-the-cut\n"));
        s.stop();
        let s = Standalone::start(dir.path());
        let got = ok(&read_lines(&s, before_last + 1));
        assert_eq!(got.lines().last(), Some("after-the-cut"));
        s.stop();
        fs::write(&log, &original).unwrap();
    }
}

#[test]
fn a_flipped_byte_is_reported_with_file_and_offset_and_never_served() {
    let dir = tempfile::tempdir().unwrap();
    let s = Standalone::start(dir.path());
    let lines = populate(&s, 6);
    s.stop();
    let log = data_log(dir.path());
    let mut bytes = fs::read(&log).unwrap();
    let recs = records(&bytes);
    // Damage the payload of the record holding the third write (record index 3).
    let (start, end) = recs[3];
    let at = (start + 24 + end) / 2;
    bytes[at] ^= 0x20;
    fs::write(&log, &bytes).unwrap();

    let s = Standalone::start(dir.path());
    let server_log = s.log.lock().unwrap().clone();
    let file_name = log.file_name().unwrap().to_string_lossy().into_owned();
    assert!(
        server_log.contains("damaged")
            && server_log.contains(&file_name)
            && server_log.contains(&format!("offset={start}")),
        "the store did not report the damage with file and offset: {server_log}"
    );
    let out = read_lines(&s, lines.len());
    assert!(!out.status.success(), "reading past the damage must fail");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&file_name) && stderr.contains(&format!("offset {start}")),
        "error must name file and offset: {stderr}"
    );
    // What was served is exactly the events before the damaged record, byte for byte.
    let served = String::from_utf8(out.stdout).unwrap();
    let served: Vec<&str> = served.lines().collect();
    assert_eq!(served.len(), 100, "the two writes before the damaged record are served");
    assert!(served.iter().zip(&lines).all(|(a, b)| a == b));
    // Writes are refused rather than appended after damage.
    let w = s.cli_stdin(&["write", "dmg/s", "--key", "k"], b"more\n");
    assert!(!w.status.success());
    // Nothing on disk was changed by the store: the damage is still there to inspect.
    s.stop();
    assert_eq!(fs::read(&log).unwrap(), bytes);
}
