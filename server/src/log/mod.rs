//! The Tier-1 durable log: an append-only sequence of checksummed records.
//!
//! Each segment container owns one log. Its writer task appends one record per group-commit
//! batch and then calls [`LogWriter::sync`]; only after `sync` returns are the operations in the
//! record acknowledged. Two positions are kept apart everywhere:
//!
//! ```text
//!   lsn:   1      2      3      4      5
//!        [rec ][rec  ][rec][rec    ][rec ]
//!                           ^              ^
//!                    durable_lsn = 3   written_lsn = 5
//!   records 1..=3 survive any crash; 4..=5 are in the map but not yet flushed and may vanish
//!   (wholly: a record is either entirely recovered or not at all).
//! ```
//!
//! Record format (little-endian, see `docs/on-disk-format.md`):
//!
//! ```text
//! +-------+---------+------+-------+-------------+-----+-------+---------+---------+
//! | magic | version | kind | flags | payload_len | lsn | crc32 | payload | padding |
//! |  4 B  |   1 B   | 1 B  |  2 B  |     4 B     | 8 B |  4 B  |  len B  | to 8 B  |
//! +-------+---------+------+-------+-------------+-----+-------+---------+---------+
//! crc32 = CRC-32 (IEEE) over the first 20 header bytes followed by the payload.
//! ```
//!
//! Implementations: [`file::FileLog`] (memory-mapped, pre-zeroed files; the product) and
//! [`mem::MemLog`] (an in-memory test double). Both pass the conformance suite in this module.

pub mod file;
pub mod mem;

use std::fmt;
use std::path::PathBuf;

use bytes::Bytes;

/// Log sequence number: the position of a record in the log, starting at 1 and increasing by
/// one per record, across files and restarts.
pub type Lsn = u64;

/// Where a byte lives in the log: a file sequence number and a byte position in that file.
/// For [`mem::MemLog`], `file` is the record index and `pos` the position in its payload.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug)]
pub struct LogAddress {
    pub file: u64,
    pub pos: u64,
}

impl LogAddress {
    /// The address `delta` bytes further on in the same record.
    pub fn offset(self, delta: u64) -> Self {
        Self { file: self.file, pos: self.pos + delta }
    }
}

impl fmt::Display for LogAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "file {} offset {}", self.file, self.pos)
    }
}

/// What a record holds.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
#[repr(u8)]
pub enum RecordKind {
    /// One group-commit batch of container operations.
    Batch = 1,
    /// A snapshot of container metadata.
    Checkpoint = 2,
    /// One entry of a replicated container's consensus log (`crate::replica`): an envelope
    /// naming its term, leader and index, then the body (a batch, or nothing, or a membership).
    Entry = 3,
    /// Removes the replicated log's entries from an index on (a follower's conflicting,
    /// never-committed suffix); the records stay in the file, later ones replace them.
    Truncate = 4,
    /// Segment bytes a replica of a replicated container received in a snapshot (what its
    /// leader had not moved to Tier-2 yet); read through the read index only, never replayed.
    Data = 5,
}

impl RecordKind {
    fn from_u8(v: u8) -> Option<Self> {
        match v {
            1 => Some(Self::Batch),
            2 => Some(Self::Checkpoint),
            3 => Some(Self::Entry),
            4 => Some(Self::Truncate),
            5 => Some(Self::Data),
            _ => None,
        }
    }
}

/// Magic bytes at the start of every record.
pub const RECORD_MAGIC: [u8; 4] = *b"NADI";
/// Current record format version.
pub const RECORD_VERSION: u8 = 1;
/// Bytes in a record header.
pub const RECORD_HEADER_LEN: usize = 24;
/// Records start on multiples of this.
pub const RECORD_ALIGN: usize = 8;

/// Total bytes a record with a payload of `len` bytes takes in a file.
pub const fn record_len(len: usize) -> usize {
    (RECORD_HEADER_LEN + len).div_ceil(RECORD_ALIGN) * RECORD_ALIGN
}

/// Encodes a record header for a payload.
pub fn encode_header(kind: RecordKind, lsn: Lsn, payload: &[u8]) -> [u8; RECORD_HEADER_LEN] {
    encode_header_parts(kind, lsn, &[payload])
}

/// Encodes a record header for a payload made of `parts`, back to back.
pub fn encode_header_parts(kind: RecordKind, lsn: Lsn, parts: &[&[u8]]) -> [u8; RECORD_HEADER_LEN] {
    let len: usize = parts.iter().map(|p| p.len()).sum();
    let mut h = [0u8; RECORD_HEADER_LEN];
    h[0..4].copy_from_slice(&RECORD_MAGIC);
    h[4] = RECORD_VERSION;
    h[5] = kind as u8;
    // h[6..8]: flags, zero.
    h[8..12].copy_from_slice(&(len as u32).to_le_bytes());
    h[12..20].copy_from_slice(&lsn.to_le_bytes());
    let mut crc = crc32fast::Hasher::new();
    crc.update(&h[0..20]);
    for p in parts {
        crc.update(p);
    }
    h[20..24].copy_from_slice(&crc.finalize().to_le_bytes());
    h
}

/// A record header that passed its structural checks (the CRC is checked with the payload).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header {
    pub kind: RecordKind,
    pub len: usize,
    pub lsn: Lsn,
    pub crc: u32,
}

/// Parses a header; `None` if the bytes cannot be the start of a record.
pub fn decode_header(h: &[u8]) -> Option<Header> {
    if h.len() < RECORD_HEADER_LEN || h[0..4] != RECORD_MAGIC || h[4] != RECORD_VERSION {
        return None;
    }
    let kind = RecordKind::from_u8(h[5])?;
    let len = u32::from_le_bytes(h[8..12].try_into().ok()?) as usize;
    let lsn = u64::from_le_bytes(h[12..20].try_into().ok()?);
    let crc = u32::from_le_bytes(h[20..24].try_into().ok()?);
    Some(Header { kind, len, lsn, crc })
}

/// Checks a record's CRC given its raw header bytes and payload.
pub fn crc_matches(header_bytes: &[u8], header: &Header, payload: &[u8]) -> bool {
    let mut crc = crc32fast::Hasher::new();
    crc.update(&header_bytes[0..20]);
    crc.update(payload);
    crc.finalize() == header.crc
}

/// Errors of the log.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LogError {
    /// The disk is full: nothing was written. Retry when space returns.
    #[error("Tier-1 log {dir}: no space left on device while preparing a log file")]
    NoSpace { dir: PathBuf },
    /// Tier-1 is at its capacity (`--tier1-capacity`): no file can be added until a file whose
    /// data is all in Tier-2 is recycled. Nothing was written; retry once files are freed.
    #[error("Tier-1 log {dir}: at its capacity of {files} files; waiting for data to move to Tier-2")]
    Full { dir: PathBuf, files: usize },
    /// A record larger than a log file can hold.
    #[error("log record of {len} bytes exceeds the maximum of {max} bytes")]
    RecordTooLarge { len: usize, max: usize },
    /// A record that fails its checks (magic, header, CRC) where a valid one was expected.
    #[error("log record in {file} at offset {offset} fails its checks (CRC): the bytes are damaged")]
    Corrupt { file: PathBuf, offset: u64 },
    /// A read outside what was written.
    #[error("log read at {addr} of {len} bytes is outside the log")]
    OutOfRange { addr: LogAddress, len: usize },
    /// Any other I/O error (opening, preparing or recovering files).
    #[error("Tier-1 log I/O error on {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

impl LogError {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        if source.raw_os_error() == Some(libc::ENOSPC) {
            // The caller knows the directory; the path of the file is close enough.
            return LogError::NoSpace { dir: path.into() };
        }
        LogError::Io { path: path.into(), source }
    }

    /// True if the same operation may succeed later (space may be freed).
    pub fn is_retryable(&self) -> bool {
        matches!(self, LogError::NoSpace { .. } | LogError::Full { .. })
    }
}

/// A record found during recovery.
#[derive(Debug)]
pub struct RecoveredRecord<'a> {
    pub kind: RecordKind,
    pub lsn: Lsn,
    /// Address of the first payload byte.
    pub addr: LogAddress,
    pub payload: &'a [u8],
}

/// What recovery found besides the records.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct RecoveryReport {
    /// Last valid lsn (0 if the log is empty).
    pub last_lsn: Lsn,
    /// A torn tail (partial or garbage bytes after the last valid record) that was cut off.
    pub torn_tail: Option<TornTail>,
    /// Damage before the tail: a record that fails its checks while valid records follow it.
    /// Everything from here on was not replayed and must not be served.
    pub corruption: Option<Corruption>,
    /// The checkpoint recovery started from: its lsn and the address of its payload. Records
    /// before it were not read, so their CRCs were not checked; `None` for a full replay.
    pub checkpoint: Option<(Lsn, LogAddress)>,
    /// Checkpoint records that were named as starting points but failed their checks. Recovery
    /// started from an earlier checkpoint (or the start of the log) instead.
    pub bad_checkpoints: Vec<BadCheckpoint>,
}

/// A checkpoint record that failed its checks during recovery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadCheckpoint {
    pub file: PathBuf,
    /// Offset of the record's header in `file`.
    pub offset: u64,
    pub lsn: Lsn,
}

/// Receives what recovery reads. Recovery first offers the newest usable checkpoint to
/// [`checkpoint`](Self::checkpoint); if it is taken, only the records after it are passed to
/// [`record`](Self::record), otherwise an earlier checkpoint is offered, and failing all, every
/// record from the start of the log.
pub trait Replayer {
    /// Offered a checkpoint record (its CRC checked). Returns true if the state was loaded from
    /// it; false leaves the state untouched (the payload did not decode), and recovery then
    /// tries an earlier starting point.
    fn checkpoint(&mut self, rec: &RecoveredRecord<'_>) -> bool;
    /// One record after the starting point, in lsn order (checkpoint records included).
    fn record(&mut self, rec: &RecoveredRecord<'_>);
}

/// A cut-off torn tail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TornTail {
    pub file: PathBuf,
    pub offset: u64,
}

/// Damage found in the middle of the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Corruption {
    pub file: PathBuf,
    pub offset: u64,
    /// The last lsn replayed before the damage.
    pub after_lsn: Lsn,
    /// The lsn of the first valid record found after the damage.
    pub next_valid_lsn: Lsn,
}

impl fmt::Display for Corruption {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "corrupt log record in {} at offset {} (after lsn {}, valid records resume at lsn {})",
            self.file.display(),
            self.offset,
            self.after_lsn,
            self.next_valid_lsn
        )
    }
}

/// The writing side of a log. Owned by one writer task; never shared.
pub trait LogWriter: Send + 'static {
    /// Makes sure the next record of up to `len` payload bytes can be appended without
    /// allocating: prepares the next file now if the current one cannot hold it. This is where
    /// `NoSpace` surfaces, before anything is written.
    fn reserve(&mut self, len: usize) -> Result<(), LogError>;

    /// Like [`reserve`](Self::reserve), for a record of segment data: fails with
    /// [`LogError::Full`] instead of adding a file beyond the configured capacity. (Metadata
    /// records may still add one file beyond it, so that the records which free space can
    /// always be written.)
    fn reserve_data(&mut self, len: usize) -> Result<(), LogError> {
        self.reserve(len)
    }

    /// The sequence number of the file being written (the record index for logs without files).
    fn current_file(&self) -> u64 {
        0
    }

    /// Like [`checkpoint`](Self::checkpoint); `keep_from` is the oldest log file the
    /// checkpoint's state still refers to. Once the newest checkpoints the pointer file names
    /// all keep nothing before file F, the files before F are recycled: kept (already written,
    /// so faster to flush than new ones) and reused as later files.
    fn checkpoint_keeping(&mut self, payload: &[u8], keep_from: u64) -> Result<Lsn, LogError> {
        let _ = keep_from;
        self.checkpoint(payload)
    }

    /// Copies one record into the log after the last one and returns its lsn and the address
    /// of its first payload byte. The record is *written*, not durable: a crash before the
    /// next [`sync`](Self::sync) may lose it (wholly). Fails only with `RecordTooLarge` or
    /// `NoSpace`, and then writes nothing.
    fn append(&mut self, kind: RecordKind, payload: &[u8]) -> Result<(Lsn, LogAddress), LogError>;

    /// Like [`append`](Self::append), for a payload made of `parts` back to back (an envelope
    /// and a body), without joining them first.
    fn append_parts(&mut self, kind: RecordKind, parts: &[&[u8]]) -> Result<(Lsn, LogAddress), LogError> {
        self.append(kind, &parts.concat())
    }

    /// Makes every written record durable. An error here means the state of the log on disk is
    /// unknown; callers must treat it as fatal (see docs/operations.md, "Failure policy").
    fn sync(&mut self) -> Result<(), std::io::Error>;

    /// Lsn of the last record appended.
    fn written_lsn(&self) -> Lsn;

    /// Lsn of the last record known durable.
    fn durable_lsn(&self) -> Lsn;

    /// Largest payload a single record may have.
    fn max_record_payload(&self) -> usize;

    /// Appends a `Checkpoint` record, makes it durable together with everything before it,
    /// and then records it as the newest starting point for recovery. Fails like
    /// [`append`](Self::append) (nothing written); a failed sync aborts the process, as
    /// everywhere. If recording the starting point fails, the checkpoint is still in the log
    /// and recovery finds it by other means (see `docs/on-disk-format.md`).
    fn checkpoint(&mut self, payload: &[u8]) -> Result<Lsn, LogError>;

    /// A handle for concurrent readers.
    fn reader(&self) -> std::sync::Arc<dyn LogReader>;
}

/// The reading side of a log, shared by any number of reader tasks.
pub trait LogReader: Send + Sync + fmt::Debug + 'static {
    /// Appends `len` bytes starting at `addr` to `out`. Callers must only read bytes of durable
    /// records (the container publishes lengths only after `sync`), so reads never race with
    /// writes. On error nothing is appended.
    fn read_into(&self, addr: LogAddress, len: usize, out: &mut Vec<u8>) -> Result<(), LogError>;

    /// Checks the record whose payload starts at `payload_addr`: header, length and CRC. For
    /// records that recovery did not read (those before the checkpoint it started from), so
    /// that damaged bytes are reported instead of served. Fails with `Corrupt` naming the file
    /// and the offset of the record's header.
    fn verify_record(&self, payload_addr: LogAddress) -> Result<(), LogError>;

    /// Appends the bytes of every `(addr, len)` piece to `out`, in order, for a reader that
    /// reads each byte once (the storage writer moving data to Tier-2): an implementation may
    /// then bypass caches meant for repeated reads. Same rules as [`Self::read_into`]; on error
    /// `out` may hold some of the pieces.
    fn read_once(&self, pieces: &[(LogAddress, usize)], out: &mut Vec<u8>) -> Result<(), LogError> {
        for &(addr, len) in pieces {
            self.read_into(addr, len, out)?;
        }
        Ok(())
    }

    /// Copies `len` bytes starting at `addr`.
    fn read(&self, addr: LogAddress, len: usize) -> Result<Bytes, LogError> {
        let mut out = Vec::with_capacity(len);
        self.read_into(addr, len, &mut out)?;
        Ok(out.into())
    }
}

#[cfg(test)]
pub(crate) mod conformance;
