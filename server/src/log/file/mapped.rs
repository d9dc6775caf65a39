//! The mapped files of a file log and the reading side shared by readers ([`LogReader`] for
//! [`Files`]): reads through the in-memory copy of the newest files, the map, or `O_DIRECT`.
//!
//! Owns: one file's map and read paths. Called by: `FileLog` (writer) and container readers.

use super::*;

/// One mapped log file.
#[derive(Debug)]
pub(super) struct MappedFile {
    pub(super) seq: u64,
    pub(super) path: PathBuf,
    pub(super) file: File,
    pub(super) map: MmapRaw,
    pub(super) len: u64,
    /// The in-memory copy readers use instead of the map, while the log keeps one.
    pub(super) mem: RwLock<Option<Arc<FileBuffer>>>,
    /// The file opened for `O_DIRECT` reads ([`LogReader::read_once`]), once needed; `None`
    /// where that is not supported.
    pub(super) direct_read: std::sync::OnceLock<Option<File>>,
}

impl MappedFile {
    pub(super) fn open(path: PathBuf, seq: u64) -> Result<Self, LogError> {
        let file = OpenOptions::new().read(true).write(true).open(&path).map_err(|e| LogError::io(&path, e))?;
        let len = file.metadata().map_err(|e| LogError::io(&path, e))?.len();
        // An empty file cannot be mapped; map one byte-less placeholder by giving it a page.
        let map = if len == 0 {
            MmapOptions::new().len(0).map_raw(&file)
        } else {
            MmapOptions::new().len(len as usize).map_raw(&file)
        }
        .map_err(|e| LogError::io(&path, e))?;
        Ok(Self { seq, path, file, map, len, mem: RwLock::new(None), direct_read: std::sync::OnceLock::new() })
    }

    /// The mapped bytes. Callers only look at ranges no writer is writing (see module docs).
    pub(super) fn bytes(&self) -> &[u8] {
        if self.len == 0 {
            return &[];
        }
        // SAFETY: the map is `len` bytes long and lives as long as `self`; the file is never
        // truncated while mapped, so every byte stays backed. Concurrent writes only touch
        // bytes past the durable position, which readers never look at.
        unsafe { std::slice::from_raw_parts(self.map.as_ptr(), self.len as usize) }
    }
}

/// The files of a log, shared between the writer and readers.
#[derive(Debug)]
pub(super) struct Files {
    pub(super) by_seq: RwLock<std::collections::BTreeMap<u64, Arc<MappedFile>>>,
    /// Aligned buffers for [`LogReader::read_once`]'s `O_DIRECT` reads.
    pub(super) pool: Arc<BufferPool>,
}

impl Default for Files {
    fn default() -> Self {
        Self { by_seq: RwLock::default(), pool: BufferPool::new(2, READ_ONCE_WINDOW) }
    }
}

/// The most [`LogReader::read_once`] reads from a file at once.
pub(super) const READ_ONCE_WINDOW: usize = 8 << 20;
/// Pieces less than this far apart are read in one window (the bytes between are read too).
pub(super) const READ_ONCE_GAP: u64 = 256 << 10;

impl Files {
    /// Copies pieces `pieces` (all of `file`, in address order) out of one `O_DIRECT` read of
    /// the aligned range covering them.
    pub(super) fn read_window(
        &self,
        file: &MappedFile,
        direct: &File,
        pieces: &[(LogAddress, usize)],
        out: &mut Vec<u8>,
    ) -> std::io::Result<()> {
        let first = pieces.first().expect("a window has pieces").0.pos;
        let last = pieces.last().expect("a window has pieces");
        let from = align_down(first);
        let to = align_up(last.0.pos + last.1 as u64).min(file.len);
        let buf = self.pool.read_at(direct, from, (to - from) as usize)?;
        for &(addr, n) in pieces {
            let at = (addr.pos - from) as usize;
            // SAFETY: this thread owns `buf` until it gives it back below.
            out.extend_from_slice(unsafe { buf.slice(at, at + n) });
        }
        self.pool.give(buf);
        Ok(())
    }
}

impl LogReader for Files {
    /// From the in-memory copy where the file has one, else with `O_DIRECT` reads of whole
    /// windows (pieces close together share one read): bytes read once would only push other
    /// data out of the page cache, and filling fresh page-cache pages is what costs most here.
    /// Files without `O_DIRECT` are read through the map.
    fn read_once(&self, pieces: &[(LogAddress, usize)], out: &mut Vec<u8>) -> Result<(), LogError> {
        let mut i = 0;
        while i < pieces.len() {
            let (addr, len) = pieces[i];
            let file = self.by_seq.read().get(&addr.file).cloned().ok_or(LogError::OutOfRange { addr, len })?;
            let direct = if file.mem.read().is_some() {
                None
            } else {
                file.direct_read.get_or_init(|| open_direct_read(&file.path)).as_ref()
            };
            let Some(direct) = direct else {
                self.read_into(addr, len, out)?;
                i += 1;
                continue;
            };
            // The window: following pieces of the same file close enough to read together.
            let start = align_down(addr.pos);
            let mut end = i + 1;
            let mut reach = addr.pos + len as u64;
            while let Some(&(next, n)) = pieces.get(end) {
                let next_end = next.pos + n as u64;
                if next.file != addr.file
                    || next.pos < reach
                    || next.pos - reach > READ_ONCE_GAP
                    || align_up(next_end) - start > READ_ONCE_WINDOW as u64
                {
                    break;
                }
                reach = next_end;
                end += 1;
            }
            if reach > file.len {
                return Err(LogError::OutOfRange { addr, len });
            }
            let before = out.len();
            self.read_window(&file, direct, &pieces[i..end], out).map_err(|e| LogError::io(&file.path, e))?;
            // As in `read_into`: a file recycled meanwhile may have been overwritten.
            if !self.by_seq.read().get(&addr.file).is_some_and(|f| Arc::ptr_eq(f, &file)) {
                out.truncate(before);
                return Err(LogError::OutOfRange { addr, len });
            }
            i = end;
        }
        Ok(())
    }

    fn verify_record(&self, payload_addr: LogAddress) -> Result<(), LogError> {
        let file = self
            .by_seq
            .read()
            .get(&payload_addr.file)
            .cloned()
            .ok_or(LogError::OutOfRange { addr: payload_addr, len: 0 })?;
        let pos = (payload_addr.pos as usize)
            .checked_sub(RECORD_HEADER_LEN)
            .ok_or(LogError::OutOfRange { addr: payload_addr, len: 0 })?;
        match record_at(file.bytes(), pos) {
            Some(_) => Ok(()),
            None => Err(LogError::Corrupt { file: file.path.clone(), offset: pos as u64 }),
        }
    }

    fn read_into(&self, addr: LogAddress, len: usize, out: &mut Vec<u8>) -> Result<(), LogError> {
        let file = self.by_seq.read().get(&addr.file).cloned().ok_or(LogError::OutOfRange { addr, len })?;
        let end = addr.pos.checked_add(len as u64).ok_or(LogError::OutOfRange { addr, len })?;
        if end > file.len {
            return Err(LogError::OutOfRange { addr, len });
        }
        if let Some(mem) = file.mem.read().clone() {
            // SAFETY: callers only read durable bytes, which the writer never writes again.
            out.extend_from_slice(unsafe { mem.slice(addr.pos as usize, end as usize) });
            return Ok(());
        }
        // SAFETY: `addr.pos..end` is inside the map (checked above), and callers only read
        // durable bytes, which the writer never writes again; the slice covers just that range,
        // so it never aliases bytes being written.
        let range = unsafe { std::slice::from_raw_parts(file.map.as_ptr().add(addr.pos as usize), len) };
        let before = out.len();
        out.extend_from_slice(range);
        // A file is removed from the map before it is recycled (and only then written again):
        // if it is still here after the copy, the copy saw the bytes it was meant to.
        if !self.by_seq.read().get(&addr.file).is_some_and(|f| Arc::ptr_eq(f, &file)) {
            out.truncate(before);
            return Err(LogError::OutOfRange { addr, len });
        }
        Ok(())
    }
}
