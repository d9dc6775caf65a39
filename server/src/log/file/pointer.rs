//! The pointer file: which checkpoint records recovery starts from (the newest two), and the
//! fallback walk over record headers when that file is missing or damaged.
//!
//! Owns: the pointer file's format and crash-safe replacement. Called by: `FileLog`'s
//! recovery and checkpoint writes.

use super::*;

/// The pointer file naming the newest checkpoint records, in the log directory.
pub(super) const POINTER_FILE: &str = "checkpoint";
pub(super) const POINTER_MAGIC: [u8; 4] = *b"NCKP";
pub(super) const POINTER_VERSION: u8 = 1;
/// Checkpoints the pointer file names: the newest, and the one before as a fallback.
pub(super) const POINTER_KEEP: usize = 2;

/// Where a checkpoint record is: enough to check it, and to step over it if it is damaged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct CheckpointPos {
    pub(super) lsn: Lsn,
    /// File sequence number.
    pub(super) file: u64,
    /// Offset of the record header in the file.
    pub(super) pos: u64,
    /// Payload length.
    pub(super) len: u32,
}

/// What the pointer file says.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(super) struct Pointer {
    /// The newest valid checkpoints, newest first.
    pub(super) checkpoints: Vec<CheckpointPos>,
    /// Damaged checkpoint records after the oldest of `checkpoints` that an earlier recovery
    /// stepped over; a later recovery from an older checkpoint steps over them again.
    pub(super) damaged: Vec<CheckpointPos>,
}

/// Encodes the pointer file: magic, version, count, damaged count, a zero byte, the entries
/// (checkpoints, then damaged ones) as lsn:u64 file:u64 pos:u64 len:u32, then a CRC-32 of
/// everything before it.
pub(super) fn encode_pointer(p: &Pointer) -> Vec<u8> {
    let mut b = Vec::with_capacity(12 + 28 * (p.checkpoints.len() + p.damaged.len()));
    b.extend_from_slice(&POINTER_MAGIC);
    b.extend_from_slice(&[POINTER_VERSION, p.checkpoints.len() as u8, p.damaged.len() as u8, 0]);
    for c in p.checkpoints.iter().chain(&p.damaged) {
        b.extend_from_slice(&c.lsn.to_le_bytes());
        b.extend_from_slice(&c.file.to_le_bytes());
        b.extend_from_slice(&c.pos.to_le_bytes());
        b.extend_from_slice(&c.len.to_le_bytes());
    }
    let crc = crc32fast::hash(&b);
    b.extend_from_slice(&crc.to_le_bytes());
    b
}

pub(super) fn decode_pointer(b: &[u8]) -> Option<Pointer> {
    let (body, crc) = b.split_at_checked(b.len().checked_sub(4)?)?;
    if crc32fast::hash(body).to_le_bytes() != crc || body.get(0..4)? != POINTER_MAGIC || body[4] != POINTER_VERSION {
        return None;
    }
    let (count, damaged) = (body[5] as usize, body[6] as usize);
    let entries = body.get(8..)?;
    if entries.len() != (count + damaged) * 28 {
        return None;
    }
    let u64_at = |e: &[u8], i: usize| e.get(i..i + 8).and_then(|s| s.try_into().ok()).map(u64::from_le_bytes);
    let mut all: Vec<CheckpointPos> = entries
        .chunks_exact(28)
        .map(|e| {
            Some(CheckpointPos {
                lsn: u64_at(e, 0)?,
                file: u64_at(e, 8)?,
                pos: u64_at(e, 16)?,
                len: u32::from_le_bytes(e.get(24..28)?.try_into().ok()?),
            })
        })
        .collect::<Option<_>>()?;
    let damaged = all.split_off(count);
    Some(Pointer { checkpoints: all, damaged })
}

/// Reads the pointer file; `None` if it is missing or does not check out.
pub(super) fn read_pointer(dir: &Path) -> Option<Pointer> {
    let path = dir.join(POINTER_FILE);
    match fs::read(&path) {
        Ok(b) => {
            let list = decode_pointer(&b);
            if list.is_none() {
                tracing::warn!(file = %path.display(), "Tier-1 log: the checkpoint pointer file is damaged; ignoring it");
            }
            list
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => {
            tracing::warn!(file = %path.display(), error = %e, "Tier-1 log: cannot read the checkpoint pointer file; ignoring it");
            None
        }
    }
}

/// Replaces the pointer file crash-safely: temp file, fsync, rename, fsync the directory.
pub(super) fn write_pointer(dir: &Path, pointer: &Pointer) -> Result<(), LogError> {
    let path = dir.join(POINTER_FILE);
    let tmp = dir.join(format!("{POINTER_FILE}.tmp"));
    let result = (|| -> std::io::Result<()> {
        let mut f = OpenOptions::new().write(true).create(true).truncate(true).open(&tmp)?;
        std::io::Write::write_all(&mut f, &encode_pointer(pointer))?;
        f.sync_all()?;
        fs::rename(&tmp, &path)
    })();
    if let Err(e) = result {
        let _ = fs::remove_file(&tmp);
        return Err(LogError::io(&tmp, e));
    }
    fsync_dir(dir)
}

/// The newest checkpoint records found by walking record headers (no CRC checks) along the
/// chain of consecutive lsns from the start of the first file; newest first. A fallback for a
/// missing or damaged pointer file: every candidate is checked before it is used.
pub(super) fn walk_headers(files: &[Arc<MappedFile>]) -> Vec<CheckpointPos> {
    let mut found = Vec::new();
    let mut last: Option<Lsn> = None;
    'files: for f in files {
        let bytes = f.bytes();
        let mut pos = 0usize;
        while let Some(h) = bytes.get(pos..pos + RECORD_HEADER_LEN).and_then(decode_header) {
            let fits = (pos + RECORD_HEADER_LEN).checked_add(h.len).is_some_and(|end| end <= bytes.len());
            if !fits || last.is_some_and(|l| h.lsn != l + 1) {
                break;
            }
            if h.kind == RecordKind::Checkpoint {
                found.push(CheckpointPos { lsn: h.lsn, file: f.seq, pos: pos as u64, len: h.len as u32 });
            }
            last = Some(h.lsn);
            pos += record_len(h.len);
        }
        // The chain goes on only if the next file starts with the next lsn.
        if pos == 0 && last.is_some() {
            break 'files;
        }
    }
    found.reverse();
    found.truncate(POINTER_KEEP);
    found
}
