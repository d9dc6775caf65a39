//! Damage tests on the real binary's Tier-1 log files:
//! - the last log file cut at random positions inside its last record, with garbage appended:
//!   recovery cuts the torn tail and serves everything before it;
//! - one byte flipped in the middle of a record: the store reports the damage with file and
//!   offset, and no read returns the damaged bytes;
//! - the same damage in a record before a metadata checkpoint: start-up does not read it, but
//!   the first read of it reports it with file and offset and returns none of its bytes.

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
    // Records: create-segment, then usually one per write invocation (a write's first batch
    // is sometimes committed alone). Count the events stored before the last record.
    let (last_start, last_end) = *recs.last().unwrap();
    let before_last = original[..last_start].windows(6).filter(|w| w == b"-event").count();
    assert!(
        before_last >= lines.len() - 50 && before_last < lines.len(),
        "{before_last} events before the last record"
    );
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
    // Damage the payload of the record holding the first event of the third write. (A write
    // may take more than one record when its first batch is committed alone, so find it by its
    // bytes, and count the events stored before it.)
    let needle = b"batch2-event0-";
    let (start, end) = *recs
        .iter()
        .find(|&&(start, end)| bytes[start..end].windows(needle.len()).any(|w| w == needle))
        .expect("the record of the third write");
    let before = bytes[..start].windows(6).filter(|w| w == b"-event").count();
    assert!(before >= 100, "two writes precede it ({before} events)");
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
    assert_eq!(served.len(), before, "every event before the damaged record is served");
    assert!(served.iter().zip(&lines).all(|(a, b)| a == b));
    // Writes are refused rather than appended after damage.
    let w = s.cli_stdin(&["write", "dmg/s", "--key", "k"], b"more\n");
    assert!(!w.status.success());
    // Nothing on disk was changed by the store: the damage is still there to inspect.
    s.stop();
    assert_eq!(fs::read(&log).unwrap(), bytes);
}

/// Kind byte of the record starting at `start` (1 = Batch, 2 = Checkpoint).
fn kind(bytes: &[u8], start: usize) -> u8 {
    bytes[start + 5]
}

#[test]
fn damage_before_a_checkpoint_is_reported_on_read_and_never_served() {
    let dir = tempfile::tempdir().unwrap();
    // A checkpoint after every group commit.
    let flags = ["--checkpoint-interval", "1"];
    let s = Standalone::start_with(dir.path(), &flags);
    let lines = populate(&s, 6);
    s.stop();
    let log = data_log(dir.path());
    let mut bytes = fs::read(&log).unwrap();
    let recs = records(&bytes);
    let batches: Vec<_> = recs.iter().copied().filter(|&(start, _)| kind(&bytes, start) == 1).collect();
    assert!(recs.len() > batches.len(), "checkpoints were written");
    assert_eq!(kind(&bytes, recs.last().unwrap().0), 2, "the log ends with a checkpoint");
    // Damage the payload of the batch holding the first event of the fourth write. (A write
    // may take more than one batch, so find it by its bytes.)
    let needle = b"batch3-event0-";
    let (start, end) = *batches
        .iter()
        .find(|&&(start, end)| bytes[start..end].windows(needle.len()).any(|w| w == needle))
        .expect("the batch of the fourth write");
    // Events stored before it; checkpoints hold no event payloads.
    let before = bytes[..start].windows(6).filter(|w| w == b"-event").count();
    assert!(before >= 150, "three writes precede it ({before} events)");
    bytes[(start + 24 + end) / 2] ^= 0x20;
    fs::write(&log, &bytes).unwrap();

    let s = Standalone::start_with(dir.path(), &flags);
    let file_name = log.file_name().unwrap().to_string_lossy().into_owned();
    let out = read_lines(&s, lines.len());
    assert!(!out.status.success(), "reading into the damage must fail");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&file_name) && stderr.contains(&format!("offset {start}")),
        "error must name file and offset: {stderr}"
    );
    let server_log = s.log_with(&["damaged", &file_name], std::time::Duration::from_secs(5));
    assert!(
        server_log.lines().any(|l| l.contains("damaged") && l.contains(&file_name)),
        "the store logs it: {server_log}"
    );
    // Exactly the events before the damaged record were served, byte for byte.
    let served = String::from_utf8(out.stdout).unwrap();
    let served: Vec<&str> = served.lines().collect();
    assert_eq!(served.len(), before, "every event before the damaged record is served");
    assert!(served.iter().zip(&lines).all(|(a, b)| a == b));
    // The damage holds no metadata the store needs: writes go on, and survive a restart.
    ok(&s.cli_stdin(&["write", "dmg/s", "--key", "k"], b"after-the-damage\n"));
    s.stop();
    let s = Standalone::start_with(dir.path(), &flags);
    assert!(!s.log.lock().unwrap().contains("Tier-1 log is damaged:"), "start-up does not read the damaged record");
    ok(&s.cli_stdin(&["write", "dmg/s", "--key", "k"], b"after-a-restart\n"));
    s.stop();
    // Nothing before the damage was rewritten by the store.
    let after = fs::read(&log).unwrap();
    assert_eq!(after[..end], bytes[..end]);
}
