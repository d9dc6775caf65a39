//! The memory-mapped file log: the Tier-1 log of one segment container.
//!
//! Layout: a directory of files `log-{seq:020}.log`, each allocated to its full size with
//! `fallocate` *before* it is mapped (so a full disk surfaces as `NoSpace` while preparing a
//! file, never as SIGBUS on a store into the map; see [`allocate`] for why not zero-filled). A
//! file is prepared as `*.tmp`, fsync'd, renamed and the directory fsync'd, so a crash never
//! leaves a half-prepared file under a log name. Unwritten bytes read as zeros either way.
//!
//! Invariants:
//! - Records are written strictly in lsn order, each entirely inside one file, starting on an
//!   8-byte boundary; a record that does not fit in the current file goes to the next one.
//! - A file is never truncated or shrunk while mapped.
//! - Each record is written with one positioned write; `sync` fdatasyncs the current file and
//!   any file left since the last sync, and only then advances `durable_lsn`. Readers and
//!   recovery read through the map (one page cache, so they see what was written).
//! - Bytes beyond the durable position are only read by recovery, never by readers.
//!
//! Recovery starts from the newest valid checkpoint record: the pointer file `checkpoint`
//! (written crash-safely after the checkpoint record is durable) names the newest two; without
//! a usable pointer file, a walk over the record headers finds them. From there it replays the
//! chain of records with consecutive lsns, checking every CRC. Where the chain ends, it looks
//! for any valid record with a larger lsn further on: if there is one, the log is damaged in the
//! middle ([`Corruption`]) and is opened read-only; if there is none, the bytes after the chain
//! are a torn tail (a batch cut short by a crash) and are zeroed, unless they are records of a
//! recycled file's earlier life (smaller lsns), which it holds anyway. A checkpoint record named by
//! the pointer file that fails its checks is reported and stepped over (its length is in the
//! pointer file), since it holds no data that is not also in the records around it.
//!
//! Size: about 840 lines, over the ~800 of the house rule on purpose. What is left here is
//! `FileLog` itself: its recovery (chain walk, damage and torn-tail rules) and its write path
//! (reserve, append, sync, checkpoint, recycle) keep the invariants above together, and
//! splitting them would spread one set of invariants over files. The pointer file
//! (`pointer.rs`), the mapped files and readers (`mapped.rs`) and the tests (`tests.rs`) are
//! apart.
//!
//! Owns: `FileLog`. Calls: `crate::direct`, this room's `pointer` and `mapped`. Called by:
//! `container` (opens and recovers its log).

use std::fs::{self, File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::thread::JoinHandle;

use memmap2::{MmapOptions, MmapRaw};

use crate::direct::{BufferPool, FileBuffer, align_down, align_up, open_direct, open_direct_read};
use parking_lot::RwLock;

use super::{
    BadCheckpoint, Corruption, LogAddress, LogError, LogReader, LogWriter, Lsn, RECORD_ALIGN, RECORD_HEADER_LEN,
    RecordKind, RecoveredRecord, RecoveryReport, Replayer, TornTail, crc_matches, decode_header, encode_header_parts,
    record_len,
};

/// Settings of a file log.
#[derive(Debug, Clone)]
pub struct FileLogOptions {
    /// Size of each log file. A record never spans files, so this also bounds the largest record.
    pub file_size: u64,
    /// At most this many log files (current, written, recycled and being prepared) for data;
    /// 0 means no limit. Metadata records may add one more. Set from `--tier1-capacity`.
    pub max_files: usize,
    /// Earlier log files kept in memory next to the current one (which always is), so that
    /// readers of recent data (tail readers, the storage writer) never go to the disk. Each
    /// costs `file_size` bytes of memory once written. Default 2: with 64 MiB files, the
    /// storage writer finds a 32 MiB run of each of four segments of a container in memory.
    pub cached_files: usize,
    /// Write with `O_DIRECT` where the filesystem supports it (see [`FileLog`]). Default
    /// true; false writes through the page cache, as on filesystems without `O_DIRECT`.
    pub direct_io: bool,
}

impl Default for FileLogOptions {
    fn default() -> Self {
        Self { file_size: 64 * 1024 * 1024, max_files: 0, cached_files: 2, direct_io: true }
    }
}

/// Memory for earlier log files kept in memory, over all containers of a store (the current
/// files' copies come on top: one file per container).
pub const CACHED_FILES_BUDGET: u64 = 512 * 1024 * 1024;

/// How many earlier files each of `containers` logs of `file_size` bytes keeps in memory
/// ([`FileLogOptions::cached_files`]): two, or fewer where that would exceed
/// [`CACHED_FILES_BUDGET`] over all containers.
pub fn cached_files_for(containers: u32, file_size: u64) -> usize {
    let per_container = CACHED_FILES_BUDGET / (containers.max(1) as u64 * file_size.max(1));
    per_container.min(2) as usize
}

/// Recycled files kept for reuse when there is no capacity limit; more are deleted.
const FREE_KEEP_UNLIMITED: usize = 4;

/// Smallest allowed log file: must hold the largest append batch (16 MiB) plus framing.
pub const MIN_FILE_SIZE: u64 = 20 * 1024 * 1024;
/// Largest allowed log file: positions inside a record payload must fit in a u32 (the read
/// index keeps them to find a record from its bytes).
pub const MAX_FILE_SIZE: u64 = 4 * 1024 * 1024 * 1024 - 4096;

mod mapped;
mod pointer;

use mapped::*;
use pointer::*;

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

/// The memory-mapped file log.
///
/// Records are copied into an in-memory copy of the current file (no syscall per record);
/// `sync` writes the range added since the last write with one `O_DIRECT` `pwrite` (whole
/// 4 KiB blocks: the partly filled last block is written again next time) and fdatasyncs.
/// Readers of the current file and of the newest earlier ones
/// ([`FileLogOptions::cached_files`]) copy from that memory; older files are read through
/// their map. Without `O_DIRECT` (tmpfs, or [`FileLogOptions::direct_io`] off) the same range
/// is written through the page cache.
#[derive(Debug)]
pub struct FileLog {
    dir: PathBuf,
    opts: FileLogOptions,
    files: Arc<Files>,
    current: Arc<MappedFile>,
    /// Next byte to write in `current`.
    write_pos: u64,
    /// Bytes of `current` before this are synced.
    flushed_pos: u64,
    /// Earlier files written but not yet synced (left when rolling to a new file).
    unflushed: Vec<Arc<MappedFile>>,
    written_lsn: Lsn,
    durable_lsn: Lsn,
    /// The in-memory copy of `current`, where records are assembled.
    buf: Arc<FileBuffer>,
    /// Bytes of `current` before this are written to the file (not necessarily synced).
    file_pos: u64,
    /// `current` opened with `O_DIRECT`, if supported; else writes go through the page cache.
    direct: Option<File>,
    /// Earlier files whose in-memory copy readers still use, oldest first.
    cached: std::collections::VecDeque<Arc<MappedFile>>,
    /// The next file, being allocated in the background.
    spare: Option<JoinHandle<Result<PathBuf, LogError>>>,
    /// Set when recovery found damage: the log is then read-only.
    damaged: Option<Corruption>,
    /// The newest valid checkpoint records (newest first) and the damaged ones recovery
    /// stepped over: what the pointer file says.
    pointer: Pointer,
    /// For each of `pointer.checkpoints`: the oldest file its state refers to (0 if unknown,
    /// for checkpoints written before this process started).
    keep: Vec<u64>,
    /// Recycled files (`log-{seq}.free`), ready to be reused as the next file.
    free: Vec<PathBuf>,
}

fn file_name(seq: u64) -> String {
    format!("log-{seq:020}.log")
}

fn free_name(seq: u64) -> String {
    format!("log-{seq:020}.free")
}

fn parse_file_name(name: &str) -> Option<u64> {
    name.strip_prefix("log-")?.strip_suffix(".log")?.parse().ok()
}

fn fsync_dir(dir: &Path) -> Result<(), LogError> {
    File::open(dir).and_then(|d| d.sync_all()).map_err(|e| LogError::io(dir, e))
}

/// Creates a pre-zeroed log file crash-safely: write zeros to a temp file, fsync, rename,
/// fsync the directory.
fn prepare_file(dir: &Path, seq: u64, size: u64) -> Result<PathBuf, LogError> {
    let path = dir.join(file_name(seq));
    let tmp = dir.join(format!("log-{seq:020}.tmp"));
    let result = (|| -> std::io::Result<()> {
        let f = OpenOptions::new().write(true).create(true).truncate(true).open(&tmp)?;
        allocate(&f, size)?;
        f.sync_all()?;
        fs::rename(&tmp, &path)
    })();
    if let Err(e) = result {
        let _ = fs::remove_file(&tmp);
        return Err(LogError::io(&tmp, e));
    }
    fsync_dir(dir)?;
    Ok(path)
}

/// Reserves `size` bytes of disk for a new file, so that stores into its map can never fail
/// for lack of space (SIGBUS). `fallocate` reserves the blocks without writing them; writing
/// zeros instead would double the bytes written for every byte of data. (Pre-zeroed files
/// flush faster, see MACHINE-LIMITS.md, but that only pays off for files that are recycled
/// rather than created: recycling arrives with tiering.) Filesystems without `fallocate` get
/// zeros.
fn allocate(f: &File, size: u64) -> std::io::Result<()> {
    use std::os::fd::AsRawFd;
    // SAFETY: a plain syscall on a file descriptor we own for the duration of the call.
    let rc = unsafe { libc::fallocate(f.as_raw_fd(), 0, 0, size as libc::off_t) };
    if rc == 0 {
        return Ok(());
    }
    let err = std::io::Error::last_os_error();
    if err.raw_os_error() == Some(libc::EOPNOTSUPP) {
        return write_zeros(f, 0, size);
    }
    Err(err)
}

fn write_zeros(f: &File, from: u64, to: u64) -> std::io::Result<()> {
    const CHUNK: usize = 1 << 20;
    let zeros = vec![0u8; CHUNK];
    let mut pos = from;
    while pos < to {
        let n = CHUNK.min((to - pos) as usize);
        f.write_all_at(&zeros[..n], pos)?;
        pos += n as u64;
    }
    Ok(())
}

/// True if the bytes of a log file after the end of the log (`end`, after the record with lsn
/// `last`) are the old contents of a recycled file rather than a torn tail: no record starts
/// at `end` with an lsn after `last` (that would be a record cut short by a crash), and the
/// first valid record after `end` has an lsn at most `last`, so it was written before the file
/// was recycled. Called only when no valid record after `end` has a larger lsn (else the log
/// is damaged), so nothing of this life lies there. Such bytes are what a recycled file holds
/// past its written position while the store runs: neither a warning nor zeroing is due.
fn old_life_after(bytes: &[u8], end: usize, last: Lsn) -> bool {
    if bytes.get(end..end + RECORD_HEADER_LEN).and_then(decode_header).is_some_and(|h| h.lsn > last) {
        return false;
    }
    valid_records(bytes, end).next().is_some_and(|h| h.lsn <= last)
}

/// True if every byte of `bytes` is zero. Compares page-sized chunks with a page of zeros
/// (`memcmp`), so that it is fast in an unoptimised build too: recovery checks up to a whole
/// log file (64 MiB by default) per container on every start, and a byte-by-byte loop over
/// that takes about 0.2 s per container in a debug build, several times that on a busy machine.
fn all_zeros(bytes: &[u8]) -> bool {
    const ZEROS: [u8; 4096] = [0; 4096];
    let mut chunks = bytes.chunks_exact(ZEROS.len());
    for chunk in &mut chunks {
        if chunk != ZEROS {
            return false;
        }
    }
    chunks.remainder().iter().all(|&b| b == 0)
}

/// Tries to read a valid record at `pos` of `bytes`.
fn record_at(bytes: &[u8], pos: usize) -> Option<(super::Header, &[u8])> {
    let h = bytes.get(pos..pos + RECORD_HEADER_LEN)?;
    let header = decode_header(h)?;
    let start = pos + RECORD_HEADER_LEN;
    let payload = bytes.get(start..start.checked_add(header.len)?)?;
    crc_matches(h, &header, payload).then_some((header, payload))
}

impl FileLog {
    /// Opens (or creates) the log in `dir`, replaying every valid record from the start of the
    /// log through `visit` in lsn order; checkpoints are not used as starting points. See the
    /// module docs for how torn tails and damage are told apart.
    pub fn open(
        dir: &Path,
        opts: FileLogOptions,
        visit: &mut dyn FnMut(&RecoveredRecord<'_>),
    ) -> Result<(FileLog, RecoveryReport), LogError> {
        Self::open_inner(dir, opts, &mut Visit(visit), false)
    }

    /// Opens (or creates) the log in `dir`, starting from the newest checkpoint that checks out
    /// and that `replay` accepts, then replaying every record after it (see the module docs).
    pub fn recover(
        dir: &Path,
        opts: FileLogOptions,
        replay: &mut dyn Replayer,
    ) -> Result<(FileLog, RecoveryReport), LogError> {
        Self::open_inner(dir, opts, replay, true)
    }

    fn open_inner(
        dir: &Path,
        opts: FileLogOptions,
        replay: &mut dyn Replayer,
        from_checkpoint: bool,
    ) -> Result<(FileLog, RecoveryReport), LogError> {
        // Whole blocks, so that `O_DIRECT` writes can reach the end of a file.
        let opts = FileLogOptions { file_size: align_down(opts.file_size.clamp(MIN_FILE_SIZE, MAX_FILE_SIZE)), ..opts };
        fs::create_dir_all(dir).map_err(|e| LogError::io(dir, e))?;
        let mut seqs = Vec::new();
        let mut free = Vec::new();
        for entry in fs::read_dir(dir).map_err(|e| LogError::io(dir, e))? {
            let entry = entry.map_err(|e| LogError::io(dir, e))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.ends_with(".free") {
                free.push(entry.path());
            } else if name.ends_with(".tmp") {
                // A file whose preparation was interrupted: never part of the log.
                fs::remove_file(entry.path()).map_err(|e| LogError::io(entry.path(), e))?;
            } else if let Some(seq) = parse_file_name(&name) {
                seqs.push(seq);
            }
        }
        seqs.sort_unstable();
        if seqs.is_empty() {
            prepare_file(dir, 1, opts.file_size)?;
            seqs.push(1);
        }
        let mut mapped = Vec::with_capacity(seqs.len());
        for &seq in &seqs {
            mapped.push(Arc::new(MappedFile::open(dir.join(file_name(seq)), seq)?));
        }

        // 1. Find the starting point: the newest checkpoint that checks out and decodes.
        let mut report = RecoveryReport::default();
        // Checkpoints the (CRC-checked) pointer file names but that fail their checks: the
        // chain may step over them, their lengths being known.
        // They stay in the pointer file, so that a later recovery from an older checkpoint
        // steps over them too.
        let mut skippable: Vec<CheckpointPos> = Vec::new();
        // (file index, position after the checkpoint record, its lsn)
        let mut start: Option<(usize, usize, Lsn)> = None;
        let mut checkpoints = Vec::new();
        if from_checkpoint {
            let pointer = read_pointer(dir);
            let trusted = pointer.is_some();
            let candidates = match pointer {
                Some(p) => {
                    skippable = p.damaged;
                    p.checkpoints
                }
                None => walk_headers(&mapped),
            };
            if !trusted && !candidates.is_empty() {
                tracing::warn!(dir = %dir.display(), "Tier-1 log: no usable checkpoint pointer file; found checkpoints by walking the record headers");
            }
            for c in candidates {
                let Some(idx) = mapped.iter().position(|f| f.seq == c.file) else { continue };
                let f = &mapped[idx];
                let pos = c.pos as usize;
                match record_at(f.bytes(), pos) {
                    Some((h, payload))
                        if h.kind == RecordKind::Checkpoint && h.lsn == c.lsn && h.len == c.len as usize =>
                    {
                        let addr = LogAddress { file: f.seq, pos: (pos + RECORD_HEADER_LEN) as u64 };
                        let rec = RecoveredRecord { kind: h.kind, lsn: h.lsn, addr, payload };
                        if replay.checkpoint(&rec) {
                            start = Some((idx, (pos + record_len(h.len)).min(f.bytes().len()), h.lsn));
                            report.checkpoint = Some((h.lsn, addr));
                            checkpoints.push(c);
                            break;
                        }
                        tracing::warn!(file = %f.path.display(), offset = pos, lsn = c.lsn,
                            "Tier-1 log: a checkpoint does not decode; recovering from an earlier one");
                    }
                    _ => {
                        tracing::error!(file = %f.path.display(), offset = pos, lsn = c.lsn,
                            "Tier-1 log: a checkpoint record is damaged; recovering from an earlier checkpoint");
                        report.bad_checkpoints.push(BadCheckpoint { file: f.path.clone(), offset: c.pos, lsn: c.lsn });
                        if trusted {
                            skippable.push(c);
                        }
                    }
                }
            }
        }

        // 2. Follow the chain of consecutive lsns, checking every record.
        let (first_idx, first_pos, mut last) = match start {
            Some((idx, pos, lsn)) => (idx, pos, Some(lsn)),
            None => (0, 0, None),
        };
        let skip_at = |seq: u64, pos: usize, lsn: Lsn| {
            skippable.iter().find(|c| c.file == seq && c.pos == pos as u64 && c.lsn == lsn).copied()
        };
        // Without a checkpoint the chain starts at the first record of the first file: lsn 1,
        // unless earlier files were recycled (then the replay is partial, and the container
        // reports what it misses).
        let first_lsn = match mapped.first() {
            Some(f) if f.seq > 1 => record_at(f.bytes(), 0).map_or(1, |(h, _)| h.lsn),
            _ => 1,
        };
        let (mut end_idx, mut end_pos) = (first_idx, first_pos as u64);
        'files: for (i, f) in mapped.iter().enumerate().skip(first_idx) {
            let bytes = f.bytes();
            let mut pos = if i == first_idx { first_pos } else { 0 };
            loop {
                // Files are never trimmed (yet: recycling comes with tiering), so without a
                // checkpoint the chain starts with lsn 1 at the start of the first file; each
                // record is the next lsn.
                let expected = last.map_or(first_lsn, |l| l + 1);
                match record_at(bytes, pos) {
                    Some((h, payload)) if h.lsn == expected => {
                        let addr = LogAddress { file: f.seq, pos: (pos + RECORD_HEADER_LEN) as u64 };
                        replay.record(&RecoveredRecord { kind: h.kind, lsn: h.lsn, addr, payload });
                        if h.kind == RecordKind::Checkpoint {
                            checkpoints.insert(
                                0,
                                CheckpointPos { lsn: h.lsn, file: f.seq, pos: pos as u64, len: h.len as u32 },
                            );
                        }
                        last = Some(h.lsn);
                        // A file cut inside the last record's padding still holds the record.
                        pos = (pos + record_len(h.len)).min(bytes.len());
                    }
                    _ => match skip_at(f.seq, pos, expected) {
                        Some(c) => {
                            tracing::error!(file = %f.path.display(), offset = pos, lsn = c.lsn,
                                "Tier-1 log: stepping over a damaged checkpoint record; it holds no data");
                            last = Some(c.lsn);
                            pos = (pos + record_len(c.len as usize)).min(bytes.len());
                        }
                        None => break,
                    },
                }
            }
            end_idx = i;
            end_pos = pos as u64;
            // The chain continues in the next file only if its first record is the next lsn.
            // (Never from a file that yielded nothing: damage at the very start of the log must
            // be found and reported below, not skipped.)
            let continues = last.is_some_and(|l| {
                mapped.get(i + 1).is_some_and(|next| {
                    record_at(next.bytes(), 0).is_some_and(|(h, _)| h.lsn == l + 1)
                        || skip_at(next.seq, 0, l + 1).is_some()
                })
            });
            if !continues {
                break 'files;
            }
        }
        checkpoints.truncate(POINTER_KEEP);
        let last_lsn = last.unwrap_or(0);
        report.last_lsn = last_lsn;

        // 2. Anything valid beyond the end of the chain means damage in the middle.
        //    The end file's bytes after the chain are usually zeros (preallocated, never written
        //    there). That rules out everything the scans below look for in it (a record starts
        //    with a non-zero magic), so it is checked first, in one pass that compares whole
        //    pages: without it every restart scanned each container's end file three times
        //    (record search, old-life check, zero check), byte by byte.
        let end_file = mapped[end_idx].clone();
        let tail_is_zero = all_zeros(&end_file.bytes()[end_pos as usize..]);
        let later = if tail_is_zero {
            find_later_record(&mapped[end_idx + 1..], 0, last_lsn)
        } else {
            find_later_record(&mapped[end_idx..], end_pos as usize, last_lsn)
        };
        let mut damaged = None;
        if let Some(next_valid_lsn) = later {
            let c = Corruption { file: end_file.path.clone(), offset: end_pos, after_lsn: last_lsn, next_valid_lsn };
            tracing::error!(file = %c.file.display(), offset = c.offset, after_lsn = last_lsn, next_valid_lsn,
                "Tier-1 log is damaged: a record in the middle fails its checks; data after it will not be served");
            report.corruption = Some(c.clone());
            damaged = Some(c);
        } else {
            // 3. A torn tail: zero everything after the chain in the end file, drop later files.
            //    Unless the bytes there are what a recycled file holds past its written
            //    position anyway: records of its earlier life (see `old_life_after`).
            if tail_is_zero {
                // Nothing was written after the chain in this file.
            } else if old_life_after(end_file.bytes(), end_pos as usize, last_lsn) {
                tracing::debug!(file = %end_file.path.display(), offset = end_pos,
                    "Tier-1 log: the rest of this recycled file holds records of its earlier life; left as it is");
            } else {
                tracing::warn!(file = %end_file.path.display(), offset = end_pos,
                    "Tier-1 log: torn tail after the last valid record (a record cut short by a crash, or garbage); zeroing it");
                write_zeros(&end_file.file, end_pos, end_file.len)
                    .and_then(|_| end_file.file.sync_data())
                    .map_err(|e| LogError::io(&end_file.path, e))?;
                report.torn_tail = Some(TornTail { file: end_file.path.clone(), offset: end_pos });
            }
            for f in &mapped[end_idx + 1..] {
                // The chain did not go on into this file: a record there of this life (an lsn
                // after the last) was cut short by a crash.
                let header = f.bytes().get(..RECORD_HEADER_LEN).and_then(decode_header);
                if report.torn_tail.is_none() && header.is_some_and(|h| h.lsn > last_lsn) {
                    tracing::warn!(file = %f.path.display(), offset = 0,
                        "Tier-1 log: torn tail at the start of a log file (a record cut short by a crash); removing the file");
                    report.torn_tail = Some(TornTail { file: f.path.clone(), offset: 0 });
                }
                fs::remove_file(&f.path).map_err(|e| LogError::io(&f.path, e))?;
            }
            mapped.truncate(end_idx + 1);
            fsync_dir(dir)?;
        }

        // 4. A short end file (cut by hand or by a tool) is filled up to size before writing.
        let mut current = mapped[end_idx].clone();
        if damaged.is_none() && current.len < opts.file_size {
            let target = opts.file_size;
            write_zeros(&current.file, current.len, target)
                .and_then(|_| current.file.sync_all())
                .map_err(|e| LogError::io(&current.path, e))?;
            drop(mapped.pop());
            let reopened = Arc::new(MappedFile::open(current.path.clone(), current.seq)?);
            drop(current);
            mapped.push(reopened.clone());
            current = reopened;
        }

        // The in-memory copy of the end file starts with what it holds.
        let buf = Arc::new(FileBuffer::new(current.len as usize));
        // SAFETY: nobody else knows this buffer yet.
        unsafe { buf.write(0, &current.bytes()[..end_pos as usize]) };
        *current.mem.write() = Some(buf.clone());
        let direct = if opts.direct_io { open_direct(&current.path, current.len) } else { None };

        let files = Arc::new(Files::default());
        {
            let mut by_seq = files.by_seq.write();
            for f in &mapped {
                by_seq.insert(f.seq, f.clone());
            }
        }
        let log = FileLog {
            dir: dir.to_owned(),
            opts,
            files,
            current,
            write_pos: end_pos,
            flushed_pos: end_pos,
            unflushed: Vec::new(),
            written_lsn: last_lsn,
            durable_lsn: last_lsn,
            buf,
            file_pos: end_pos,
            direct,
            cached: std::collections::VecDeque::new(),
            spare: None,
            damaged,
            keep: vec![0; checkpoints.len()],
            pointer: Pointer { checkpoints, damaged: skippable },
            free,
        };
        Ok((log, report))
    }

    /// The directory of this log.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Where recovery found damage, if it did.
    pub fn damage(&self) -> Option<&Corruption> {
        self.damaged.as_ref()
    }

    /// Log files on disk: in the log, recycled, and being prepared.
    fn files_on_disk(&self) -> usize {
        self.files.by_seq.read().len() + self.free.len() + self.spare.is_some() as usize
    }

    /// True if a file may be added without going over the capacity.
    fn below_capacity(&self) -> bool {
        self.opts.max_files == 0 || self.files_on_disk() < self.opts.max_files
    }

    /// Starts preparing the next file in the background once the current one is half full,
    /// unless a recycled one is ready (or the capacity is reached).
    fn maybe_start_spare(&mut self) {
        if self.spare.is_none()
            && self.free.is_empty()
            && self.write_pos * 2 >= self.current.len
            && self.below_capacity()
        {
            let (dir, seq, size) = (self.dir.clone(), self.current.seq + 1, self.opts.file_size);
            self.spare = Some(std::thread::spawn(move || prepare_file(&dir, seq, size)));
        }
    }

    /// Moves writing to the next file: a recycled one, the one prepared in the background, or
    /// a new one. With `strict`, fails with `Full` rather than go over the capacity.
    fn roll(&mut self, strict: bool) -> Result<(), LogError> {
        let seq = self.current.seq + 1;
        // The file prepared in the background is already named `log-{seq}.log`: use it first
        // (renaming a recycled file to that name would replace it under the spare's feet).
        let path = match self.spare.take() {
            Some(handle) => match handle.join() {
                Ok(Ok(path)) => path,
                // The background preparation failed (perhaps no space then): try once more now.
                Ok(Err(_)) | Err(_) => match self.take_free(seq)? {
                    Some(path) => path,
                    None => prepare_file(&self.dir, seq, self.opts.file_size)?,
                },
            },
            None => match self.take_free(seq)? {
                Some(path) => path,
                None if strict && !self.below_capacity() => {
                    return Err(LogError::Full { dir: self.dir.clone(), files: self.opts.max_files });
                }
                None => prepare_file(&self.dir, seq, self.opts.file_size)?,
            },
        };
        let next = Arc::new(MappedFile::open(path, seq)?);
        // What the old file holds goes to it now; the next sync makes it durable.
        self.write_out();
        self.cached.push_back(self.current.clone());
        let buf = self.take_buffer(next.len as usize);
        *next.mem.write() = Some(buf.clone());
        self.direct = if self.opts.direct_io { open_direct(&next.path, next.len) } else { None };
        self.files.by_seq.write().insert(seq, next.clone());
        let old = std::mem::replace(&mut self.current, next);
        self.buf = buf;
        if self.write_pos > self.flushed_pos {
            self.unflushed.push(old);
        }
        self.write_pos = 0;
        self.flushed_pos = 0;
        self.file_pos = 0;
        Ok(())
    }

    /// A buffer for the next file: the oldest cached file's, if no reader holds it, else a
    /// new one. Files beyond [`FileLogOptions::cached_files`] lose theirs (readers then use
    /// the map; everything in them has been written to the file).
    fn take_buffer(&mut self, len: usize) -> Arc<FileBuffer> {
        let mut reusable = None;
        while self.cached.len() > self.opts.cached_files {
            let Some(f) = self.cached.pop_front() else { break };
            let Some(b) = f.mem.write().take() else { continue };
            // Readers clone the buffer under the lock just taken: if none holds it now, none will.
            if reusable.is_none() && Arc::strong_count(&b) == 1 && b.len() == len {
                reusable = Some(b);
            }
        }
        reusable.unwrap_or_else(|| Arc::new(FileBuffer::new(len)))
    }

    /// Writes the bytes of the current file added since the last write to it: whole blocks
    /// with `O_DIRECT` (the partly filled last block is zero-padded in the buffer and written
    /// again next time), else one buffered write. An I/O error aborts, as a failed fsync does:
    /// the space was allocated up front, so the file's state is then unknown.
    fn write_out(&mut self) {
        if self.write_pos <= self.file_pos {
            return;
        }
        let result = match &self.direct {
            Some(direct) => {
                let from = align_down(self.file_pos);
                let to = align_up(self.write_pos).min(self.current.len);
                // SAFETY: past the written position: no reader looks there.
                unsafe { self.buf.zero(self.write_pos as usize, to as usize) };
                // SAFETY: `from..to` is at or past the durable position or was durable
                // already; the only writer is this thread.
                let bytes = unsafe { self.buf.slice(from as usize, to as usize) };
                match direct.write_all_at(bytes, from) {
                    Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {
                        tracing::warn!(file = %self.current.path.display(), error = %e,
                            "O_DIRECT write refused; writing through the page cache from now on");
                        self.direct = None;
                        self.current.file.write_all_at(bytes, from)
                    }
                    r => r,
                }
            }
            None => {
                // SAFETY: as above.
                let bytes = unsafe { self.buf.slice(self.file_pos as usize, self.write_pos as usize) };
                self.current.file.write_all_at(bytes, self.file_pos)
            }
        };
        if let Err(e) = result {
            tracing::error!(file = %self.current.path.display(), error = %e, "write to the Tier-1 log failed; aborting");
            std::process::abort();
        }
        self.file_pos = self.write_pos;
    }

    /// Renames a recycled file to be log file `seq` (its old records have smaller lsns, so
    /// recovery never mistakes them for records of this file). Files of another size (the
    /// setting changed) are deleted instead.
    fn take_free(&mut self, seq: u64) -> Result<Option<PathBuf>, LogError> {
        while let Some(free) = self.free.pop() {
            let size = fs::metadata(&free).map(|m| m.len()).unwrap_or(0);
            if size != self.opts.file_size {
                fs::remove_file(&free).map_err(|e| LogError::io(&free, e))?;
                continue;
            }
            let path = self.dir.join(file_name(seq));
            if path.exists() {
                // Never replace a file of the log.
                return Err(LogError::io(&path, std::io::Error::other("the next log file exists already")));
            }
            fs::rename(&free, &path).map_err(|e| LogError::io(&free, e))?;
            fsync_dir(&self.dir)?;
            return Ok(Some(path));
        }
        Ok(None)
    }

    /// Recycles every file before the oldest one that the checkpoints named by the pointer
    /// file refer to (never the current file). Their records are never needed again: recovery
    /// starts from one of those checkpoints, and the data is in Tier-2.
    fn recycle(&mut self) -> Result<(), LogError> {
        if self.keep.len() < POINTER_KEEP || self.damaged.is_some() {
            return Ok(());
        }
        let limit = self.keep.iter().copied().min().unwrap_or(0).min(self.current.seq);
        let old: Vec<u64> = self.files.by_seq.read().range(..limit).map(|(s, _)| *s).collect();
        if old.is_empty() {
            return Ok(());
        }
        let keep_free = if self.opts.max_files == 0 { FREE_KEEP_UNLIMITED } else { usize::MAX };
        for seq in old {
            // Out of the map first: a reader that copied bytes then sees the file gone.
            let Some(f) = self.files.by_seq.write().remove(&seq) else { continue };
            if self.free.len() < keep_free {
                let to = self.dir.join(free_name(seq));
                fs::rename(&f.path, &to).map_err(|e| LogError::io(&f.path, e))?;
                self.free.push(to);
            } else {
                fs::remove_file(&f.path).map_err(|e| LogError::io(&f.path, e))?;
            }
            tracing::debug!(file = %f.path.display(), "Tier-1 log file recycled");
        }
        fsync_dir(&self.dir)
    }

    fn reserve_inner(&mut self, len: usize, strict: bool) -> Result<(), LogError> {
        if let Some(c) = &self.damaged {
            return Err(LogError::Io {
                path: c.file.clone(),
                source: std::io::Error::other("the log is damaged and read-only"),
            });
        }
        let max = self.max_record_payload();
        if len > max {
            return Err(LogError::RecordTooLarge { len, max });
        }
        if self.write_pos + record_len(len) as u64 > self.current.len {
            self.roll(strict)?;
        }
        self.maybe_start_spare();
        Ok(())
    }
}

/// Looks for any valid record with an lsn above `after` in `files[0]` from `from` on, or in any
/// later file. Returns its lsn.
fn find_later_record(files: &[Arc<MappedFile>], from: usize, after: Lsn) -> Option<Lsn> {
    files.iter().enumerate().find_map(|(i, f)| {
        valid_records(f.bytes(), if i == 0 { from } else { 0 }).map(|h| h.lsn).find(|&lsn| lsn > after)
    })
}

/// The valid records of `bytes` from `from` on, at every record-aligned position (whether or
/// not they belong to the log's chain): what recovery looks at past the end of the chain.
fn valid_records(bytes: &[u8], from: usize) -> impl Iterator<Item = super::Header> + '_ {
    (from..bytes.len().saturating_sub(RECORD_HEADER_LEN - 1))
        .step_by(RECORD_ALIGN)
        .filter(|&pos| bytes[pos..pos + 4] == super::RECORD_MAGIC)
        .filter_map(|pos| record_at(bytes, pos).map(|(h, _)| h))
}

impl LogWriter for FileLog {
    fn reserve(&mut self, len: usize) -> Result<(), LogError> {
        self.reserve_inner(len, false)
    }

    fn reserve_data(&mut self, len: usize) -> Result<(), LogError> {
        self.reserve_inner(len, true)
    }

    fn current_file(&self) -> u64 {
        self.current.seq
    }

    fn append(&mut self, kind: RecordKind, payload: &[u8]) -> Result<(Lsn, LogAddress), LogError> {
        self.append_parts(kind, &[payload])
    }

    fn append_parts(&mut self, kind: RecordKind, parts: &[&[u8]]) -> Result<(Lsn, LogAddress), LogError> {
        let payload_len: usize = parts.iter().map(|p| p.len()).sum();
        self.reserve(payload_len)?;
        let lsn = self.written_lsn + 1;
        let header = encode_header_parts(kind, lsn, parts);
        let pos = self.write_pos;
        // Into the in-memory copy: header, payload and alignment padding. `sync` writes it out.
        let len = record_len(payload_len);
        let mut at = pos as usize;
        // SAFETY: at or past the written position, which no reader looks at; the only writer
        // is this thread. (`reserve` made room: the record fits in the file.)
        unsafe {
            self.buf.write(at, &header);
            at += RECORD_HEADER_LEN;
            for p in parts {
                self.buf.write(at, p);
                at += p.len();
            }
            self.buf.zero(at, pos as usize + len);
        }
        self.write_pos += len as u64;
        self.written_lsn = lsn;
        Ok((lsn, LogAddress { file: self.current.seq, pos: pos + RECORD_HEADER_LEN as u64 }))
    }

    fn sync(&mut self) -> Result<(), std::io::Error> {
        // Appends are being made: the storage writer's disk I/O paces itself.
        crate::direct::note_foreground_io();
        self.write_out();
        let started = std::time::Instant::now();
        let mut synced = false;
        for f in self.unflushed.drain(..) {
            f.file.sync_data()?;
            synced = true;
        }
        if self.write_pos > self.flushed_pos {
            self.current.file.sync_data()?;
            self.flushed_pos = self.write_pos;
            synced = true;
        }
        if synced {
            crate::metrics::fsync_observed(started.elapsed().as_secs_f64());
        }
        self.durable_lsn = self.written_lsn;
        Ok(())
    }

    fn checkpoint(&mut self, payload: &[u8]) -> Result<Lsn, LogError> {
        self.checkpoint_keeping(payload, 0)
    }

    fn checkpoint_keeping(&mut self, payload: &[u8], keep_from: u64) -> Result<Lsn, LogError> {
        let (lsn, addr) = self.append(RecordKind::Checkpoint, payload)?;
        if let Err(e) = self.sync() {
            tracing::error!(file = %self.current.path.display(), error = %e, "fsync of the Tier-1 log failed; aborting (see docs/operations.md)");
            std::process::abort();
        }
        // Only now, with the record durable, may the pointer file name it.
        let pos =
            CheckpointPos { lsn, file: addr.file, pos: addr.pos - RECORD_HEADER_LEN as u64, len: payload.len() as u32 };
        let p = &mut self.pointer;
        p.checkpoints.insert(0, pos);
        p.checkpoints.truncate(POINTER_KEEP);
        // The checkpoint record itself must stay too.
        self.keep.insert(0, keep_from.min(addr.file));
        self.keep.truncate(POINTER_KEEP);
        // Damaged checkpoints before the oldest named one can no longer be met by a recovery.
        let oldest = p.checkpoints.last().map_or(0, |c| c.lsn);
        p.damaged.retain(|d| d.lsn > oldest);
        p.damaged.truncate(u8::MAX as usize);
        if let Err(e) = write_pointer(&self.dir, &self.pointer) {
            tracing::warn!(dir = %self.dir.display(), error = %e,
                "Tier-1 log: cannot update the checkpoint pointer file; recovery will find the checkpoint by walking the record headers");
            // Recovery may then walk the headers from the first file: recycle nothing.
            self.keep.fill(0);
            return Ok(lsn);
        }
        if let Err(e) = self.recycle() {
            tracing::warn!(dir = %self.dir.display(), error = %e, "Tier-1 log: cannot recycle old log files");
        }
        Ok(lsn)
    }

    fn written_lsn(&self) -> Lsn {
        self.written_lsn
    }

    fn durable_lsn(&self) -> Lsn {
        self.durable_lsn
    }

    fn max_record_payload(&self) -> usize {
        self.opts.file_size as usize - RECORD_HEADER_LEN - RECORD_ALIGN
    }

    fn reader(&self) -> Arc<dyn LogReader> {
        self.files.clone()
    }
}

impl Drop for FileLog {
    /// Written records reach the file (not necessarily the disk), as they would have with
    /// buffered writes.
    fn drop(&mut self) {
        if self.damaged.is_none() {
            self.write_out();
        }
        if let Some(spare) = self.spare.take() {
            let _ = spare.join();
        }
    }
}

#[cfg(test)]
mod tests;
