//! Tests of the file log beyond the shared conformance suite: recovery edge cases, damage,
//! recycling, the pointer file.

use super::*;

fn collect(dir: &Path) -> (FileLog, RecoveryReport, Vec<(Lsn, Vec<u8>)>) {
    let mut seen = Vec::new();
    let (log, report) =
        FileLog::open(dir, FileLogOptions { file_size: MIN_FILE_SIZE, ..Default::default() }, &mut |r| {
            seen.push((r.lsn, r.payload.to_vec()))
        })
        .unwrap();
    (log, report, seen)
}

fn payload(i: u64) -> Vec<u8> {
    (0..(100 + i * 37 % 5000)).map(|b| (b ^ i) as u8).collect()
}

fn write_records(dir: &Path, n: u64) -> Vec<(LogAddress, usize)> {
    let (mut log, _, _) = collect(dir);
    let mut addrs = Vec::new();
    for i in 1..=n {
        let p = payload(i);
        let (_, addr) = log.append(RecordKind::Batch, &p).unwrap();
        addrs.push((addr, p.len()));
    }
    log.sync().unwrap();
    addrs
}

#[test]
fn torn_tail_is_cut_at_any_position_and_garbage_is_ignored() {
    let dir = tempfile::tempdir().unwrap();
    let addrs = write_records(dir.path(), 50);
    let path = dir.path().join(file_name(1));
    let original = fs::read(&path).unwrap();
    let end_of_last = addrs.last().map(|(a, l)| a.pos as usize + l).unwrap();
    let start_of_last = addrs.last().unwrap().0.pos as usize - RECORD_HEADER_LEN;
    for cut in [start_of_last + 1, start_of_last + 10, start_of_last + 30, end_of_last - 1] {
        fs::write(&path, &original).unwrap();
        let f = OpenOptions::new().write(true).open(&path).unwrap();
        f.set_len(cut as u64).unwrap();
        f.write_all_at(&[0xAB; 777], cut as u64).unwrap();
        drop(f);
        let (_, report, seen) = collect(dir.path());
        assert_eq!(seen.len(), 49, "cut at {cut}");
        assert!(report.corruption.is_none());
        assert_eq!(report.torn_tail.as_ref().map(|t| t.offset), Some(start_of_last as u64));
        for (lsn, p) in &seen {
            assert_eq!(p, &payload(*lsn));
        }
        // After the cut-off, the log is writable and recovers cleanly again.
        let (mut log, _, _) = collect(dir.path());
        log.append(RecordKind::Batch, b"after").unwrap();
        log.sync().unwrap();
        drop(log);
        let (_, report, seen) = collect(dir.path());
        assert_eq!(report.torn_tail, None);
        assert_eq!(seen.last().unwrap(), &(50, b"after".to_vec()));
    }
}

#[test]
fn flipped_byte_in_the_middle_is_reported_with_file_and_offset() {
    let dir = tempfile::tempdir().unwrap();
    let addrs = write_records(dir.path(), 30);
    let path = dir.path().join(file_name(1));
    let (victim, len) = addrs[10];
    let f = OpenOptions::new().read(true).write(true).open(&path).unwrap();
    let at = victim.pos + len as u64 / 2;
    let mut b = [0u8; 1];
    f.read_exact_at(&mut b, at).unwrap();
    f.write_all_at(&[b[0] ^ 0x40], at).unwrap();
    drop(f);
    let (mut log, report, seen) = collect(dir.path());
    assert_eq!(seen.len(), 10, "records before the damage are replayed, none after");
    let c = report.corruption.expect("damage reported");
    assert_eq!(c.file, path);
    assert_eq!(c.offset, victim.pos - RECORD_HEADER_LEN as u64);
    assert_eq!((c.after_lsn, c.next_valid_lsn), (10, 12));
    assert!(log.append(RecordKind::Batch, b"x").is_err(), "a damaged log is read-only");
    // Nothing was changed on disk: the damage is still there for an operator to inspect.
    let (_, report2, _) = collect(dir.path());
    assert_eq!(report2.corruption, Some(c));
}

#[test]
fn damage_at_the_very_start_of_the_log_is_reported_not_skipped() {
    let dir = tempfile::tempdir().unwrap();
    {
        let (mut log, _, _) = collect(dir.path());
        // Enough 4 MiB records to spill into a second file.
        for i in 0..7u64 {
            log.append(RecordKind::Batch, &vec![i as u8; 4 << 20]).unwrap();
        }
        log.sync().unwrap();
    }
    assert!(dir.path().join(file_name(2)).exists(), "the records spilled into file 2");
    let first = dir.path().join(file_name(1));
    let f = OpenOptions::new().read(true).write(true).open(&first).unwrap();
    f.write_all_at(&[0xFF], 100).unwrap();
    drop(f);
    let (mut log, report, seen) = collect(dir.path());
    assert!(seen.is_empty(), "nothing after the damage is replayed");
    let c = report.corruption.expect("damage in the first record is reported");
    assert_eq!((c.file, c.offset, c.after_lsn), (first, 0, 0));
    assert!(log.append(RecordKind::Batch, b"x").is_err());
}

#[test]
fn a_file_cut_inside_the_last_records_padding_keeps_that_record() {
    let dir = tempfile::tempdir().unwrap();
    let addrs = write_records(dir.path(), 5);
    let (addr, len) = *addrs.last().unwrap();
    assert_ne!(len % 8, 0, "the last record needs padding for this test");
    let path = dir.path().join(file_name(1));
    OpenOptions::new().write(true).open(&path).unwrap().set_len(addr.pos + len as u64).unwrap();
    let (_, report, seen) = collect(dir.path());
    assert_eq!(seen.len(), 5);
    assert!(report.corruption.is_none() && report.torn_tail.is_none());
}

/// Takes every checkpoint; collects the batch records after it.
#[derive(Default)]
struct AfterCheckpoint(Vec<(Lsn, Vec<u8>)>);

impl Replayer for AfterCheckpoint {
    fn checkpoint(&mut self, _: &RecoveredRecord<'_>) -> bool {
        true
    }
    fn record(&mut self, rec: &RecoveredRecord<'_>) {
        if rec.kind == RecordKind::Batch {
            self.0.push((rec.lsn, rec.payload.to_vec()));
        }
    }
}

fn files_on_disk(dir: &Path) -> usize {
    fs::read_dir(dir).unwrap().filter(|e| e.as_ref().unwrap().file_name().to_string_lossy().starts_with("log-")).count()
}

#[test]
fn earlier_files_in_memory_stay_within_the_budget() {
    let mib = 1024 * 1024;
    assert_eq!(cached_files_for(4, 64 * mib), 2, "the defaults keep two");
    assert_eq!(cached_files_for(8, 64 * mib), 1);
    assert_eq!(cached_files_for(1024, 20 * mib), 0);
    assert_eq!(cached_files_for(1, 4096 * mib - 4096), 0);
    for (c, f) in [(1u32, 20 * mib), (3, 100 * mib), (16, 32 * mib), (64, 64 * mib)] {
        assert!(cached_files_for(c, f) as u64 * c as u64 * f <= CACHED_FILES_BUDGET);
    }
}

/// Each `sync` writes the partly filled last block again: records synced one by one, many
/// to a block, must read back intact while that happens (from memory, through the map once
/// their file left memory, and with `read_once`'s direct reads), and survive a restart.
#[test]
fn small_records_synced_one_by_one_read_back_intact_meanwhile_and_after_a_restart() {
    for opts in [
        FileLogOptions { file_size: MIN_FILE_SIZE, ..Default::default() },
        FileLogOptions { file_size: MIN_FILE_SIZE, cached_files: 0, ..Default::default() },
        FileLogOptions { file_size: MIN_FILE_SIZE, cached_files: 0, direct_io: false, ..Default::default() },
    ] {
        let dir = tempfile::tempdir().unwrap();
        let (mut log, _) = FileLog::open(dir.path(), opts.clone(), &mut |_| {}).unwrap();
        let reader = log.reader();
        type Records = Vec<(LogAddress, Vec<u8>)>;
        let written: Arc<parking_lot::Mutex<Records>> = Arc::default();
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        // A reader that keeps re-reading every durable record while the writer goes on.
        let checker = {
            let (reader, written, stop) = (reader.clone(), written.clone(), stop.clone());
            std::thread::spawn(move || {
                let mut rounds = 0u64;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let all = written.lock().clone();
                    for (a, p) in all.iter().rev().take(64) {
                        assert!(reader.read(*a, p.len()).unwrap() == p[..], "record at {a} intact while written");
                    }
                    rounds += 1;
                }
                rounds
            })
        };
        // 3,000 records of 700–1,500 bytes (several per 4 KiB block), and every 100th one of
        // 1 MiB so that the log goes over two files.
        for i in 0..3_000u64 {
            let len = if i % 100 == 99 { 1 << 20 } else { 700 + (i * 131) % 800 };
            let p: Vec<u8> = (0..len).map(|b| (b * 31 + i) as u8).collect();
            let (_, addr) = log.append(RecordKind::Batch, &p).unwrap();
            log.sync().unwrap();
            written.lock().push((addr, p));
        }
        assert!(log.current_file() >= 2, "the records spread over more than one file");
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        assert!(checker.join().unwrap() > 0);
        let all = written.lock().clone();
        let pieces: Vec<(LogAddress, usize)> = all.iter().map(|(a, p)| (*a, p.len())).collect();
        let mut once = Vec::new();
        reader.read_once(&pieces, &mut once).unwrap();
        assert!(once == all.iter().flat_map(|(_, p)| p.iter().copied()).collect::<Vec<u8>>(), "read_once");
        // Only `sync` put the records in the file: a restart finds every one of them.
        drop(log);
        let mut seen = Vec::new();
        let (_, report) = FileLog::open(dir.path(), opts, &mut |r| seen.push(r.payload.to_vec())).unwrap();
        assert!(report.corruption.is_none() && report.torn_tail.is_none(), "{report:?}");
        assert!(seen == all.into_iter().map(|(_, p)| p).collect::<Vec<_>>(), "every record after a restart");
    }
}

#[test]
fn recycled_files_are_reused_under_the_cap_and_never_clobber_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let opts = FileLogOptions { file_size: MIN_FILE_SIZE, max_files: 3, ..Default::default() };
    let (mut log, _) = FileLog::recover(dir.path(), opts.clone(), &mut AfterCheckpoint::default()).unwrap();
    let reader = log.reader();
    let mut since_checkpoint = Vec::new();
    let mut written = Vec::new();
    // 200 MiB through a log of at most 3 files of 20 MiB: only possible with recycling. A
    // checkpoint every 3 MiB keeps only the current file, so recycled files appear while
    // the next file is being prepared in the background too.
    for i in 0..200u64 {
        let p: Vec<u8> = (0..(1 << 20) - 100).map(|b| (b as u64 ^ i) as u8).collect();
        log.reserve_data(p.len()).expect("never full: files are recycled");
        let (lsn, addr) = log.append(RecordKind::Batch, &p).unwrap();
        log.sync().unwrap();
        written.push((addr, p.clone()));
        since_checkpoint.push((lsn, p));
        // Everything since the last checkpoint reads back intact.
        for (a, p) in written.iter().rev().take(since_checkpoint.len()) {
            assert!(reader.read(*a, p.len()).unwrap() == p[..], "record at {a} is intact");
        }
        if i % 3 == 2 {
            let keep = log.current_file();
            log.checkpoint_keeping(b"cp", keep).unwrap();
            since_checkpoint.clear();
        }
        assert!(files_on_disk(dir.path()) <= 4, "at most 3 files plus one");
    }
    assert!(log.current_file() > 8, "the log went through many files");
    drop(log);
    let mut replay = AfterCheckpoint::default();
    let (_, report) = FileLog::recover(dir.path(), opts.clone(), &mut replay).unwrap();
    assert!(report.corruption.is_none(), "{report:?}");
    // The current file is a recycled one: past the end of the log it holds records of its
    // earlier life, which are neither a torn tail nor zeroed.
    assert_eq!(report.torn_tail, None, "old records of a recycled file are not a torn tail");
    assert!(replay.0 == since_checkpoint, "recovery replays exactly the records after the checkpoint");

    // A record cut short by a crash is still a torn tail, and is cut: in the middle of that
    // recycled file, and at the start of the next one (a record of the largest size).
    for size in [20_000, (MIN_FILE_SIZE as usize) - RECORD_HEADER_LEN - RECORD_ALIGN] {
        let (mut log, _) = FileLog::recover(dir.path(), opts.clone(), &mut AfterCheckpoint::default()).unwrap();
        let p = vec![7u8; size];
        log.reserve_data(p.len()).unwrap();
        let (_, addr) = log.append(RecordKind::Batch, &p).unwrap();
        log.sync().unwrap();
        let path = dir.path().join(file_name(addr.file));
        drop(log);
        // Part of its payload never reached the disk: other bytes are there instead.
        let f = OpenOptions::new().write(true).open(&path).unwrap();
        f.write_all_at(&[0x5A; 4096], addr.pos + size as u64 / 2).unwrap();
        f.sync_all().unwrap();
        let mut replay = AfterCheckpoint::default();
        let (_, report) = FileLog::recover(dir.path(), opts.clone(), &mut replay).unwrap();
        assert!(report.corruption.is_none(), "{report:?}");
        let torn = report.torn_tail.expect("the torn record is reported");
        assert_eq!((torn.file, torn.offset), (path, addr.pos - RECORD_HEADER_LEN as u64), "{size} bytes");
        assert!(replay.0 == since_checkpoint, "the torn record is not replayed; everything before it is");
    }
}

#[test]
fn interrupted_file_preparation_is_discarded() {
    let dir = tempfile::tempdir().unwrap();
    write_records(dir.path(), 3);
    fs::write(dir.path().join("log-00000000000000000002.tmp"), b"partial").unwrap();
    let (_, report, seen) = collect(dir.path());
    assert_eq!(seen.len(), 3);
    assert_eq!(report.torn_tail, None);
    assert!(!dir.path().join("log-00000000000000000002.tmp").exists());
}

#[test]
fn all_zeros_looks_at_every_byte_including_a_partial_last_page() {
    let mut bytes = vec![0u8; 3 * 4096 + 100];
    assert!(all_zeros(&bytes));
    assert!(all_zeros(&bytes[..0]));
    for at in [0, 4095, 4096, 2 * 4096 + 17, 3 * 4096, 3 * 4096 + 99] {
        bytes[at] = 1;
        assert!(!all_zeros(&bytes), "a 1 at {at}");
        assert!(all_zeros(&bytes[at + 1..]), "zeros after {at}");
        bytes[at] = 0;
    }
}
