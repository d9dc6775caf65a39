//! The conformance suite every [`LogWriter`] implementation must pass.
//!
//! Each test is written once against a [`Harness`] and run for the mmap'd file log (with `O_DIRECT`
//! writes, and with buffered ones) and the in-memory double. "Crash" means: stop using the writer without another `sync`, then recover.

use std::path::PathBuf;

use super::file::{FileLog, FileLogOptions, MIN_FILE_SIZE};
use super::mem::MemLog;
use super::{LogAddress, LogWriter, Lsn, RecordKind, RecoveredRecord, Replayer};

/// What recovery replayed: lsn, kind and payload of each record.
type Replayed = Vec<(Lsn, RecordKind, Vec<u8>)>;

/// Opens and crash-recovers one kind of log.
pub(crate) trait Harness {
    type Log: LogWriter;
    /// Opens the log (fresh or recovered), returning what recovery replayed.
    fn open(&mut self) -> (Self::Log, Replayed);
    /// Abandons `log` as a crash would and recovers.
    fn crash(&mut self, log: Self::Log) -> (Self::Log, Replayed);
    /// Abandons `log` as a crash would and recovers from the newest checkpoint `replay` takes.
    fn recover(&mut self, log: Self::Log, replay: &mut Collect) -> Self::Log;
}

/// A replayer that takes checkpoints if told to, and collects what it is given.
#[derive(Default)]
pub(crate) struct Collect {
    accept: bool,
    checkpoint: Option<(Lsn, Vec<u8>)>,
    seen: Replayed,
}

impl Replayer for Collect {
    fn checkpoint(&mut self, rec: &RecoveredRecord<'_>) -> bool {
        if self.accept {
            self.checkpoint = Some((rec.lsn, rec.payload.to_vec()));
        }
        self.accept
    }
    fn record(&mut self, rec: &RecoveredRecord<'_>) {
        self.seen.push((rec.lsn, rec.kind, rec.payload.to_vec()));
    }
}

struct FileHarness {
    _dir: tempfile::TempDir,
    path: PathBuf,
    /// `O_DIRECT` writes with one earlier file kept in memory (the default), or buffered
    /// writes with only the current file in memory (older files read through the map).
    direct: bool,
}

impl FileHarness {
    fn options(&self) -> FileLogOptions {
        FileLogOptions {
            file_size: MIN_FILE_SIZE,
            direct_io: self.direct,
            cached_files: if self.direct { 1 } else { 0 },
            ..Default::default()
        }
    }
}

impl Harness for FileHarness {
    type Log = FileLog;
    fn open(&mut self) -> (FileLog, Replayed) {
        let mut seen = Vec::new();
        let (log, report) =
            FileLog::open(&self.path, self.options(), &mut |r| seen.push((r.lsn, r.kind, r.payload.to_vec())))
                .expect("open file log");
        assert!(report.corruption.is_none());
        (log, seen)
    }
    fn crash(&mut self, log: FileLog) -> (FileLog, Replayed) {
        drop(log);
        self.open()
    }
    fn recover(&mut self, log: FileLog, replay: &mut Collect) -> FileLog {
        drop(log);
        let (log, report) = FileLog::recover(&self.path, self.options(), replay).expect("recover file log");
        assert!(report.corruption.is_none());
        log
    }
}

struct MemHarness {
    log: MemLog,
}

impl Harness for MemHarness {
    type Log = MemLog;
    fn open(&mut self) -> (MemLog, Replayed) {
        self.crash(self.log.clone())
    }
    fn crash(&mut self, log: MemLog) -> (MemLog, Replayed) {
        let mut seen = Vec::new();
        let (log, _) = log.crash(&mut |r| seen.push((r.lsn, r.kind, r.payload.to_vec())));
        self.log = log.clone();
        (log, seen)
    }
    fn recover(&mut self, log: MemLog, replay: &mut Collect) -> MemLog {
        let (log, _) = log.recover(replay);
        self.log = log.clone();
        log
    }
}

fn payload(i: u64, len: usize) -> Vec<u8> {
    (0..len).map(|b| (b as u64).wrapping_mul(31).wrapping_add(i) as u8).collect()
}

fn empty_log_starts_at_zero(h: &mut impl Harness) {
    let (log, seen) = h.open();
    assert!(seen.is_empty());
    assert_eq!((log.written_lsn(), log.durable_lsn()), (0, 0));
}

fn written_and_durable_are_distinct(h: &mut impl Harness) {
    let (mut log, _) = h.open();
    let (lsn, _) = log.append(RecordKind::Batch, b"one").unwrap();
    assert_eq!(lsn, 1);
    assert_eq!((log.written_lsn(), log.durable_lsn()), (1, 0));
    log.sync().unwrap();
    assert_eq!((log.written_lsn(), log.durable_lsn()), (1, 1));
    let (lsn, _) = log.append(RecordKind::Checkpoint, b"two").unwrap();
    assert_eq!(lsn, 2);
    assert_eq!((log.written_lsn(), log.durable_lsn()), (2, 1));
}

fn synced_records_read_back_and_survive_a_crash(h: &mut impl Harness) {
    let (mut log, _) = h.open();
    let mut expect = Vec::new();
    let mut addrs: Vec<(LogAddress, Vec<u8>)> = Vec::new();
    for i in 1..=200u64 {
        let p = payload(i, (i as usize * 97) % 3000);
        let kind = if i % 50 == 0 { RecordKind::Checkpoint } else { RecordKind::Batch };
        let (lsn, addr) = log.append(kind, &p).unwrap();
        assert_eq!(lsn, i);
        addrs.push((addr, p.clone()));
        expect.push((i, kind, p));
        if i % 7 == 0 {
            log.sync().unwrap();
        }
    }
    log.sync().unwrap();
    let reader = log.reader();
    for (addr, p) in &addrs {
        assert_eq!(&reader.read(*addr, p.len()).unwrap()[..], &p[..]);
        if p.len() > 10 {
            assert_eq!(&reader.read(addr.offset(5), 5).unwrap()[..], &p[5..10]);
        }
    }
    let (log, seen) = h.crash(log);
    assert_eq!(seen, expect);
    assert_eq!((log.written_lsn(), log.durable_lsn()), (200, 200));
}

fn unsynced_records_are_all_or_nothing(h: &mut impl Harness) {
    let (mut log, _) = h.open();
    for i in 1..=10u64 {
        log.append(RecordKind::Batch, &payload(i, 100)).unwrap();
    }
    log.sync().unwrap();
    for i in 11..=20u64 {
        log.append(RecordKind::Batch, &payload(i, 100)).unwrap();
    }
    let (mut log, seen) = h.crash(log);
    // The durable prefix is intact; unsynced records may or may not be there, but whole.
    assert!(seen.len() >= 10 && seen.len() <= 20);
    for (lsn, _, p) in &seen {
        assert_eq!(p, &payload(*lsn, 100));
    }
    // New records continue the lsn sequence after whatever survived.
    let (lsn, _) = log.append(RecordKind::Batch, b"next").unwrap();
    assert_eq!(lsn, seen.len() as Lsn + 1);
}

fn records_span_many_files(h: &mut impl Harness) {
    let (mut log, _) = h.open();
    let big = log.max_record_payload().min(4 << 20);
    let mut expect = Vec::new();
    for i in 1..=12u64 {
        let p = payload(i, big - i as usize);
        log.reserve(p.len()).unwrap();
        log.append(RecordKind::Batch, &p).unwrap();
        expect.push((i, RecordKind::Batch, p));
        if i % 3 == 0 {
            log.sync().unwrap();
        }
    }
    log.sync().unwrap();
    let (_, seen) = h.crash(log);
    assert_eq!(seen.len(), expect.len());
    assert!(seen == expect, "records across files replay byte-identical");
}

fn oversized_record_is_refused_without_writing(h: &mut impl Harness) {
    let (mut log, _) = h.open();
    let too_big = vec![0u8; log.max_record_payload() + 1];
    assert!(log.append(RecordKind::Batch, &too_big).is_err());
    assert_eq!(log.written_lsn(), 0);
    log.append(RecordKind::Batch, b"fine").unwrap();
    log.sync().unwrap();
    let (_, seen) = h.crash(log);
    assert_eq!(seen, vec![(1, RecordKind::Batch, b"fine".to_vec())]);
}

fn out_of_range_reads_fail(h: &mut impl Harness) {
    let (mut log, _) = h.open();
    let (_, addr) = log.append(RecordKind::Batch, b"abc").unwrap();
    log.sync().unwrap();
    let r = log.reader();
    assert!(r.read(LogAddress { file: 999, pos: 0 }, 1).is_err());
    assert!(r.read(LogAddress { file: addr.file, pos: u64::MAX - 10 }, 100).is_err());
    assert!(r.read(addr, 1 << 30).is_err());
}

fn checkpoints_are_durable_starting_points(h: &mut impl Harness) {
    let (mut log, _) = h.open();
    for i in 1..=5u64 {
        log.append(RecordKind::Batch, &payload(i, 300)).unwrap();
    }
    // A checkpoint is durable when it returns, with everything before it.
    assert_eq!(log.checkpoint(b"cp-1").unwrap(), 6);
    assert_eq!(log.durable_lsn(), 6);
    let mut after = Vec::new();
    for i in 7..=9u64 {
        log.append(RecordKind::Batch, &payload(i, 300)).unwrap();
        after.push((i, RecordKind::Batch, payload(i, 300)));
    }
    log.sync().unwrap();
    // Recovery offers the checkpoint, then only the records after it.
    let mut taken = Collect { accept: true, ..Default::default() };
    let mut log = h.recover(log, &mut taken);
    assert_eq!(taken.checkpoint, Some((6, b"cp-1".to_vec())));
    assert_eq!(taken.seen, after);
    // The newest checkpoint wins; one that is refused means a replay from the start.
    assert_eq!(log.checkpoint(b"cp-2").unwrap(), 10);
    let mut taken = Collect { accept: true, ..Default::default() };
    let log = h.recover(log, &mut taken);
    assert_eq!((taken.checkpoint, taken.seen.len()), (Some((10, b"cp-2".to_vec())), 0));
    let mut refused = Collect::default();
    let log = h.recover(log, &mut refused);
    assert_eq!(refused.checkpoint, None);
    assert_eq!(refused.seen.iter().map(|r| r.0).collect::<Vec<_>>(), (1..=10).collect::<Vec<_>>());
    assert_eq!(refused.seen[5], (6, RecordKind::Checkpoint, b"cp-1".to_vec()));
    assert_eq!(log.written_lsn(), 10);
}

fn records_verify(h: &mut impl Harness) {
    let (mut log, _) = h.open();
    let (_, addr) = log.append(RecordKind::Batch, b"checked").unwrap();
    log.sync().unwrap();
    let r = log.reader();
    r.verify_record(addr).unwrap();
    assert!(r.verify_record(LogAddress { file: 999, pos: 24 }).is_err());
}

macro_rules! suite {
    ($($test:ident),*) => {
        mod file_log {
            $(#[test] fn $test() {
                let dir = tempfile::tempdir().unwrap();
                let path = dir.path().join("log");
                super::$test(&mut super::FileHarness { _dir: dir, path, direct: true });
            })*
        }
        mod file_log_buffered {
            $(#[test] fn $test() {
                let dir = tempfile::tempdir().unwrap();
                let path = dir.path().join("log");
                super::$test(&mut super::FileHarness { _dir: dir, path, direct: false });
            })*
        }
        mod mem_log {
            $(#[test] fn $test() {
                super::$test(&mut super::MemHarness { log: super::MemLog::new(super::MIN_FILE_SIZE as usize - 32) });
            })*
        }
    };
}

suite!(
    empty_log_starts_at_zero,
    written_and_durable_are_distinct,
    synced_records_read_back_and_survive_a_crash,
    unsynced_records_are_all_or_nothing,
    records_span_many_files,
    oversized_record_is_refused_without_writing,
    out_of_range_reads_fail,
    checkpoints_are_durable_starting_points,
    records_verify
);
