//! An in-memory [`LogWriter`]: a test double for container tests.
//!
//! It keeps the same contract as the file log: records are numbered from 1, `sync` moves the
//! durable lsn to the written lsn, and [`MemLog::crash`] keeps exactly the durable records, the
//! way a power cut keeps exactly what was flushed. [`MemLog::recover`] starts from the newest
//! checkpoint, as the file log does. [`MemLog::hold_syncs`] makes `sync` wait until
//! [`MemLog::release_syncs`], to stand in for a disk slower than the writers.
//!
//! Owns: `MemLog`. Calls: `crate::log` (traits). Called by: tests and the conformance suite.

use std::sync::Arc;

use bytes::Bytes;
use parking_lot::{Condvar, Mutex};

use super::{LogAddress, LogError, LogReader, LogWriter, Lsn, RecordKind, RecoveredRecord, RecoveryReport, Replayer};

#[derive(Debug, Default)]
struct Inner {
    records: Vec<(RecordKind, Bytes)>,
    durable: usize,
    /// Index of the newest durable checkpoint record.
    checkpoint: Option<usize>,
}

/// Holds `sync` while set (a stalled disk).
#[derive(Debug, Default)]
struct Gate {
    held: Mutex<bool>,
    released: Condvar,
}

/// The in-memory log.
#[derive(Debug, Clone)]
pub struct MemLog {
    inner: Arc<Mutex<Inner>>,
    gate: Arc<Gate>,
    max_payload: usize,
}

/// Full replay, ignoring checkpoints as starting points.
struct Visit<'a>(&'a mut dyn FnMut(&RecoveredRecord<'_>));

impl Replayer for Visit<'_> {
    fn checkpoint(&mut self, _: &RecoveredRecord<'_>) -> bool {
        false
    }
    fn record(&mut self, rec: &RecoveredRecord<'_>) {
        (self.0)(rec)
    }
}

impl MemLog {
    /// A new, empty log.
    pub fn new(max_payload: usize) -> Self {
        Self { inner: Arc::default(), gate: Arc::default(), max_payload }
    }

    /// Simulates a crash and a restart: drops every record that was not synced, then replays
    /// every survivor through `visit` and returns a fresh writer over them.
    pub fn crash(&self, visit: &mut dyn FnMut(&RecoveredRecord<'_>)) -> (MemLog, RecoveryReport) {
        self.recover(&mut Visit(visit))
    }

    /// Like [`crash`](Self::crash), but offers the newest checkpoint to `replay` first and, if
    /// it is taken, replays only the records after it.
    pub fn recover(&self, replay: &mut dyn Replayer) -> (MemLog, RecoveryReport) {
        let mut inner = self.inner.lock();
        let durable = inner.durable;
        inner.records.truncate(durable);
        let records = inner.records.clone();
        let checkpoint = inner.checkpoint.filter(|&i| i < durable);
        drop(inner);
        let log = MemLog {
            inner: Arc::new(Mutex::new(Inner { records: records.clone(), durable, checkpoint })),
            gate: Arc::default(),
            ..self.clone()
        };
        let record = |i: usize| RecoveredRecord {
            kind: records[i].0,
            lsn: i as Lsn + 1,
            addr: LogAddress { file: i as u64, pos: 0 },
            payload: &records[i].1,
        };
        let mut report = RecoveryReport { last_lsn: durable as Lsn, ..Default::default() };
        let mut from = 0;
        if let Some(i) = checkpoint
            && replay.checkpoint(&record(i))
        {
            report.checkpoint = Some((i as Lsn + 1, record(i).addr));
            from = i + 1;
        }
        for i in from..records.len() {
            replay.record(&record(i));
        }
        (log, report)
    }

    /// Makes every `sync` from now on wait until [`release_syncs`](Self::release_syncs).
    pub fn hold_syncs(&self) {
        *self.gate.held.lock() = true;
    }

    /// Lets held and later syncs complete.
    pub fn release_syncs(&self) {
        *self.gate.held.lock() = false;
        self.gate.released.notify_all();
    }
}

impl LogWriter for MemLog {
    fn reserve(&mut self, len: usize) -> Result<(), LogError> {
        if len > self.max_payload {
            return Err(LogError::RecordTooLarge { len, max: self.max_payload });
        }
        Ok(())
    }

    fn append(&mut self, kind: RecordKind, payload: &[u8]) -> Result<(Lsn, LogAddress), LogError> {
        self.reserve(payload.len())?;
        let mut inner = self.inner.lock();
        inner.records.push((kind, Bytes::copy_from_slice(payload)));
        let idx = inner.records.len() - 1;
        Ok((idx as Lsn + 1, LogAddress { file: idx as u64, pos: 0 }))
    }

    fn sync(&mut self) -> Result<(), std::io::Error> {
        {
            let mut held = self.gate.held.lock();
            while *held {
                self.gate.released.wait(&mut held);
            }
        }
        let mut inner = self.inner.lock();
        inner.durable = inner.records.len();
        Ok(())
    }

    fn written_lsn(&self) -> Lsn {
        self.inner.lock().records.len() as Lsn
    }

    fn durable_lsn(&self) -> Lsn {
        self.inner.lock().durable as Lsn
    }

    fn max_record_payload(&self) -> usize {
        self.max_payload
    }

    fn checkpoint(&mut self, payload: &[u8]) -> Result<Lsn, LogError> {
        let (lsn, _) = self.append(RecordKind::Checkpoint, payload)?;
        self.sync().expect("the in-memory log cannot fail to sync");
        self.inner.lock().checkpoint = Some(lsn as usize - 1);
        Ok(lsn)
    }

    fn reader(&self) -> Arc<dyn LogReader> {
        Arc::new(self.clone())
    }
}

impl LogReader for MemLog {
    fn verify_record(&self, payload_addr: LogAddress) -> Result<(), LogError> {
        // Records in memory cannot rot; only check that the record exists.
        match self.inner.lock().records.get(payload_addr.file as usize) {
            Some(_) => Ok(()),
            None => Err(LogError::OutOfRange { addr: payload_addr, len: 0 }),
        }
    }

    fn read_into(&self, addr: LogAddress, len: usize, out: &mut Vec<u8>) -> Result<(), LogError> {
        let inner = self.inner.lock();
        let out_of_range = || LogError::OutOfRange { addr, len };
        let (_, payload) = inner.records.get(addr.file as usize).ok_or_else(out_of_range)?;
        let start = addr.pos as usize;
        let end = start.checked_add(len).ok_or_else(out_of_range)?;
        if end > payload.len() {
            return Err(out_of_range());
        }
        out.extend_from_slice(&payload[start..end]);
        Ok(())
    }
}
