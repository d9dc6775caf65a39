//! An in-memory [`LogWriter`]: a test double for container tests.
//!
//! It keeps the same contract as the file log: records are numbered from 1, `sync` moves the
//! durable lsn to the written lsn, and [`MemLog::crash`] keeps exactly the durable records, the
//! way a power cut keeps exactly what was flushed.

use std::sync::Arc;

use bytes::Bytes;
use parking_lot::Mutex;

use super::{LogAddress, LogError, LogReader, LogWriter, Lsn, RecordKind, RecoveredRecord, RecoveryReport};

#[derive(Debug, Default)]
struct Inner {
    records: Vec<(RecordKind, Bytes)>,
    durable: usize,
}

/// The in-memory log.
#[derive(Debug, Clone)]
pub struct MemLog {
    inner: Arc<Mutex<Inner>>,
    max_payload: usize,
}

impl MemLog {
    /// A new, empty log.
    pub fn new(max_payload: usize) -> Self {
        Self { inner: Arc::default(), max_payload }
    }

    /// Simulates a crash and a restart: drops every record that was not synced, then replays
    /// the survivors through `visit` and returns a fresh writer over them.
    pub fn crash(&self, visit: &mut dyn FnMut(&RecoveredRecord<'_>)) -> (MemLog, RecoveryReport) {
        let mut inner = self.inner.lock();
        let durable = inner.durable;
        inner.records.truncate(durable);
        let records = inner.records.clone();
        drop(inner);
        let log = MemLog { inner: Arc::new(Mutex::new(Inner { records: records.clone(), durable })), ..self.clone() };
        for (i, (kind, payload)) in records.iter().enumerate() {
            visit(&RecoveredRecord {
                kind: *kind,
                lsn: i as Lsn + 1,
                addr: LogAddress { file: i as u64, pos: 0 },
                payload,
            });
        }
        (log, RecoveryReport { last_lsn: durable as Lsn, ..Default::default() })
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

    fn reader(&self) -> Arc<dyn LogReader> {
        Arc::new(self.clone())
    }
}

impl LogReader for MemLog {
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
