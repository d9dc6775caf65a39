//! Writing files with `O_DIRECT`, from memory aligned for it.
//!
//! The Tier-1 log and the local Tier-2 backend write with `O_DIRECT` where the filesystem
//! supports it. A buffered write copies every byte into page-cache pages and writeback walks
//! them again; on these machines fresh page-cache pages are also slow to touch (the host
//! reclaims memory the guest frees), so buffered writes cost several times the CPU per byte
//! of direct ones (docs/performance.md). Direct writes need the buffer address, the file
//! offset and the length to be multiples of the block size ([`DIRECT_ALIGN`]).
//!
//! Owns: aligned buffers and `O_DIRECT` helpers (a leaf). Calls: nothing of this crate. Called by:
//! `crate::log::file`, `crate::tier2`, the storage writer.

use std::fs::{File, OpenOptions};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Alignment of `O_DIRECT` writes: offsets, lengths and buffer addresses.
pub(crate) const DIRECT_ALIGN: u64 = 4096;

pub(crate) const fn align_down(v: u64) -> u64 {
    v & !(DIRECT_ALIGN - 1)
}

pub(crate) const fn align_up(v: u64) -> u64 {
    align_down(v + DIRECT_ALIGN - 1)
}

/// Memory aligned for `O_DIRECT`: the in-memory copy of a log file, or a Tier-2 chunk on its
/// way to a local file.
///
/// Shared between one writer and readers under the log's rule: the writer only writes bytes
/// at or past the written position, readers only read bytes before the durable one.
pub(crate) struct FileBuffer {
    ptr: std::ptr::NonNull<u8>,
    len: usize,
    /// The anonymous mapping behind `ptr`: page-aligned, and zero pages are only backed once
    /// touched (an aligned heap allocation would be zeroed up front, touching every page at
    /// once: tens of milliseconds for a log file's buffer).
    _map: memmap2::MmapMut,
}

// SAFETY: the buffer is plain memory; concurrent access follows the rule above (disjoint
// ranges), as for the shared map.
unsafe impl Send for FileBuffer {}
unsafe impl Sync for FileBuffer {}

impl std::fmt::Debug for FileBuffer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FileBuffer").field("len", &self.len).finish()
    }
}

impl FileBuffer {
    /// A zeroed buffer (pages are only backed once touched).
    pub(crate) fn new(len: usize) -> Self {
        let mut map = memmap2::MmapOptions::new()
            .len(len.max(1))
            .map_anon()
            .unwrap_or_else(|e| panic!("cannot map {len} bytes of memory: {e}"));
        let ptr = std::ptr::NonNull::new(map.as_mut_ptr()).expect("a mapping is never at address 0");
        Self { ptr, len, _map: map }
    }

    /// Copies `data` to `pos`.
    ///
    /// # Safety
    ///
    /// No reader may be reading `pos..pos + data.len()` (it must lie at or past the written
    /// position), and only one writer writes at a time.
    pub(crate) unsafe fn write(&self, pos: usize, data: &[u8]) {
        assert!(pos + data.len() <= self.len, "log buffer write past its end");
        // SAFETY: in bounds (checked); exclusive by the caller's promise.
        unsafe { std::ptr::copy_nonoverlapping(data.as_ptr(), self.ptr.as_ptr().add(pos), data.len()) }
    }

    /// Zeroes `from..to`. Same contract as [`Self::write`].
    pub(crate) unsafe fn zero(&self, from: usize, to: usize) {
        assert!(from <= to && to <= self.len, "log buffer zeroing past its end");
        // SAFETY: in bounds (checked); exclusive by the caller's promise.
        unsafe { std::ptr::write_bytes(self.ptr.as_ptr().add(from), 0, to - from) }
    }

    /// The bytes `from..to`.
    ///
    /// # Safety
    ///
    /// Nobody may be writing that range while the slice lives.
    pub(crate) unsafe fn slice(&self, from: usize, to: usize) -> &[u8] {
        assert!(from <= to && to <= self.len, "log buffer read past its end");
        // SAFETY: in bounds (checked); not written concurrently by the caller's promise.
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr().add(from), to - from) }
    }
}

/// Opens `path` for `O_DIRECT` writes, or `None` where that is not supported (tmpfs, some
/// network filesystems) or the file's length is not a whole number of blocks.
pub(crate) fn open_direct(path: &Path, len: u64) -> Option<File> {
    use std::os::unix::fs::OpenOptionsExt;
    if !len.is_multiple_of(DIRECT_ALIGN) {
        return None;
    }
    match OpenOptions::new().write(true).custom_flags(libc::O_DIRECT).open(path) {
        Ok(f) => Some(f),
        Err(e) => {
            tracing::debug!(file = %path.display(), error = %e, "O_DIRECT not available; writing through the page cache");
            None
        }
    }
}

impl FileBuffer {
    /// Its length in bytes.
    pub(crate) fn len(&self) -> usize {
        self.len
    }
}

/// Creates (or empties) `path` for `O_DIRECT` writes, or `None` where the filesystem does not
/// support that.
pub(crate) fn create_direct(path: &Path) -> Option<File> {
    use std::os::unix::fs::OpenOptionsExt;
    OpenOptions::new().write(true).create(true).truncate(true).custom_flags(libc::O_DIRECT).open(path).ok()
}

impl FileBuffer {
    /// The bytes `from..to`, to fill.
    ///
    /// # Safety
    ///
    /// Nobody else may be reading or writing that range while the slice lives.
    #[allow(clippy::mut_from_ref)]
    pub(crate) unsafe fn slice_mut(&self, from: usize, to: usize) -> &mut [u8] {
        assert!(from <= to && to <= self.len, "buffer access past its end");
        // SAFETY: in bounds (checked); exclusive by the caller's promise.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.as_ptr().add(from), to - from) }
    }
}

/// Backs every page of `spare` now, by writing a zero into each: memory that a later copy
/// would touch page by page (a fault per page, and on these VMs fresh memory fills at only
/// 0.5–0.7 GB/s) is paid for here instead, off the path that is waiting for it.
pub(crate) fn prefault(spare: &mut [std::mem::MaybeUninit<u8>]) {
    for b in spare.iter_mut().step_by(DIRECT_ALIGN as usize) {
        b.write(0);
    }
}

impl FileBuffer {
    /// Backs every page of the buffer now (see [`prefault`]); its bytes stay zero where they
    /// were.
    ///
    /// # Safety
    ///
    /// Nobody else may be using the buffer (e.g. it was just taken from its pool).
    pub(crate) unsafe fn prefault(&self) {
        // SAFETY: exclusive by the caller's promise; zeros over a free buffer. Initialized
        // bytes may be viewed as `MaybeUninit` (same layout), and only zeros are written.
        prefault(unsafe { &mut *(self.slice_mut(0, self.len) as *mut [u8] as *mut [std::mem::MaybeUninit<u8>]) });
    }
}

/// Aligned buffers kept for reuse (fresh memory is slow to touch on these machines).
#[derive(Debug)]
pub(crate) struct BufferPool {
    free: parking_lot::Mutex<Vec<FileBuffer>>,
    /// Free buffers kept; more are released.
    keep: usize,
    /// Smallest buffer allocated.
    min_len: usize,
}

impl BufferPool {
    pub(crate) fn new(keep: usize, min_len: usize) -> std::sync::Arc<Self> {
        std::sync::Arc::new(Self { free: parking_lot::Mutex::default(), keep, min_len })
    }

    /// The smallest free buffer of at least `len` bytes, or a new one.
    pub(crate) fn take(&self, len: usize) -> FileBuffer {
        let mut free = self.free.lock();
        let best = free.iter().enumerate().filter(|(_, b)| b.len() >= len).min_by_key(|(_, b)| b.len()).map(|(i, _)| i);
        match best {
            Some(i) => free.swap_remove(i),
            None => {
                drop(free);
                // Rounded up to whole MiB so that slightly larger requests can reuse it.
                let mib = 1 << 20;
                FileBuffer::new(len.max(self.min_len).div_ceil(mib) * mib + mib)
            }
        }
    }

    /// Makes sure the pool holds a buffer of at least `len` bytes whose pages are backed
    /// (see [`prefault`]).
    pub(crate) fn prefault(&self, len: usize) {
        let buf = self.take(len);
        // SAFETY: taken out of the pool: this thread is its only user.
        unsafe { buf.prefault() };
        self.give(buf);
    }

    /// Gives a buffer back (keeping the largest ones).
    pub(crate) fn give(&self, buf: FileBuffer) {
        let mut free = self.free.lock();
        if free.len() < self.keep {
            free.push(buf);
        } else if let Some(smallest) = free.iter_mut().min_by_key(|b| b.len())
            && smallest.len() < buf.len()
        {
            *smallest = buf;
        }
    }

    /// The first `len` bytes of `buf` as `Bytes`; the buffer comes back to this pool when the
    /// last clone is dropped.
    pub(crate) fn bytes(self: &std::sync::Arc<Self>, buf: FileBuffer, len: usize) -> bytes::Bytes {
        assert!(len <= buf.len(), "pooled bytes longer than their buffer");
        bytes::Bytes::from_owner(Pooled { buf: Some(buf), len, pool: std::sync::Arc::downgrade(self) })
    }
}

/// A pooled buffer handed out as `Bytes` (read-only from then on).
struct Pooled {
    buf: Option<FileBuffer>,
    len: usize,
    pool: std::sync::Weak<BufferPool>,
}

impl AsRef<[u8]> for Pooled {
    fn as_ref(&self) -> &[u8] {
        let buf = self.buf.as_ref().expect("present until dropped");
        // SAFETY: nobody writes a buffer once it is handed out as bytes.
        unsafe { buf.slice(0, self.len) }
    }
}

impl Drop for Pooled {
    fn drop(&mut self) {
        if let (Some(buf), Some(pool)) = (self.buf.take(), self.pool.upgrade()) {
            pool.give(buf);
        }
    }
}

impl BufferPool {
    /// Reads `len` bytes at `from` (a multiple of [`DIRECT_ALIGN`]) of a file opened with
    /// `O_DIRECT` into a buffer of this pool (given back on error). Fewer bytes than asked is
    /// `UnexpectedEof`.
    pub(crate) fn read_at(&self, file: &File, from: u64, len: usize) -> std::io::Result<FileBuffer> {
        use std::os::unix::fs::FileExt;
        let padded = align_up(len as u64) as usize;
        let buf = self.take(padded.max(DIRECT_ALIGN as usize));
        let mut got = 0;
        while got < len {
            let end = (got + paced_len(padded - got)).min(padded);
            // SAFETY: this thread owns `buf` (taken from the pool) until it returns it.
            let read = paced(|| file.read_at(unsafe { buf.slice_mut(got, end) }, from + got as u64));
            match read {
                Ok(n) if n > 0 => got += n,
                Ok(_) => {
                    self.give(buf);
                    return Err(std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "file shorter than expected"));
                }
                Err(e) => {
                    self.give(buf);
                    return Err(e);
                }
            }
        }
        Ok(buf)
    }
}

/// Reads a whole file with `O_DIRECT` into a buffer of `pool` (no page cache), or `None` where
/// the filesystem does not support `O_DIRECT`.
pub(crate) fn read_direct(path: &Path, pool: &std::sync::Arc<BufferPool>) -> std::io::Result<Option<bytes::Bytes>> {
    let Some(file) = open_direct_read(path) else {
        // Not there, or no O_DIRECT here: tell them apart with a plain open.
        File::open(path)?;
        return Ok(None);
    };
    let len = file.metadata()?.len() as usize;
    match pool.read_at(&file, 0, len) {
        Ok(buf) => Ok(Some(pool.bytes(buf, len))),
        // The filesystem took the open but not the read.
        Err(e) if e.raw_os_error() == Some(libc::EINVAL) => Ok(None),
        Err(e) => Err(e),
    }
}

/// Opens `path` for `O_DIRECT` reads, or `None` where that is not supported.
pub(crate) fn open_direct_read(path: &Path) -> Option<File> {
    use std::os::unix::fs::OpenOptionsExt;
    OpenOptions::new().read(true).custom_flags(libc::O_DIRECT).open(path).ok()
}

/// How urgent a background write is: moving data to Tier-2 is `Background` until Tier-1 is
/// full and appends wait for it, then `Urgent`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Urgency {
    /// Disk I/O in the idle class ([`with_idle_io`]): the Tier-1 log's writes and flushes go
    /// first.
    Background,
    /// Disk I/O at the thread's normal priority.
    Urgent,
}

/// Runs `f` as background disk I/O: in the idle I/O class ([`with_idle_io`]), and with its
/// reads and writes paced ([`paced`]). Returns what `f` returned and how long its pieces
/// paused for appends (for `nadi_tier2_yielded_seconds_total`, which callers record).
pub(crate) fn background<T>(f: impl FnOnce() -> T) -> (T, Duration) {
    /// Clears the thread's mark when dropped.
    struct Unmark;
    impl Drop for Unmark {
        fn drop(&mut self) {
            PACED.set(false);
        }
    }
    with_idle_io(|| {
        PACED.set(true);
        PAUSED.set(Duration::ZERO);
        let _unmark = Unmark;
        let out = f();
        (out, PAUSED.get())
    })
}

thread_local! {
    /// Set while the thread runs [`background`] I/O.
    static PACED: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
    /// Time the thread's [`background`] I/O has paused so far.
    static PAUSED: std::cell::Cell<Duration> = const { std::cell::Cell::new(Duration::ZERO) };
}

/// One piece of paced I/O at a time in the process, with its pause.
static TURN: parking_lot::Mutex<()> = parking_lot::const_mutex(());

/// Largest read or write of paced I/O: the log's write waits behind at most one such piece
/// (about 0.3 ms on a disk that writes 1 GB/s).
pub(crate) const PACED_PIECE: usize = 256 << 10;

/// Foreground I/O (a Tier-1 log sync) within this long makes paced I/O pause.
const BUSY_WINDOW: Duration = Duration::from_millis(200);

/// When the process started, for [`LAST_FOREGROUND`].
static EPOCH: std::sync::LazyLock<Instant> = std::sync::LazyLock::new(Instant::now);
/// Microseconds after [`EPOCH`] of the last foreground I/O ([`note_foreground_io`]).
static LAST_FOREGROUND: AtomicU64 = AtomicU64::new(0);

/// Called by the Tier-1 log when it syncs: appends are being made, so paced I/O pauses.
pub(crate) fn note_foreground_io() {
    LAST_FOREGROUND.store(EPOCH.elapsed().as_micros() as u64, Ordering::Relaxed);
}

/// `len`, cut to [`PACED_PIECE`] on a thread running [`background`] I/O.
pub(crate) fn paced_len(len: usize) -> usize {
    if PACED.get() { len.min(PACED_PIECE) } else { len }
}

/// Does one piece of disk I/O. On a thread running [`background`] I/O while appends are being
/// made (a Tier-1 sync within [`BUSY_WINDOW`]): one piece at a time in the process, followed
/// by a pause as long as the piece took, so that the disk is idle at least half of the time
/// and a log write or sync is never queued behind more than one piece. Idle I/O priority
/// alone does not do this: a request the device already holds is not reordered, and a
/// virtual disk queues in the host too (measured: 1 MiB chunk writes and 8 MiB log reads of
/// the storage writer made the log's 4 KiB writes take 3–12 ms).
pub(crate) fn paced<T>(io: impl FnOnce() -> T) -> T {
    if !PACED.get() {
        return io();
    }
    let _turn = TURN.lock();
    let started = Instant::now();
    let out = io();
    let took = started.elapsed();
    let since_foreground =
        EPOCH.elapsed().saturating_sub(Duration::from_micros(LAST_FOREGROUND.load(Ordering::Relaxed)));
    if since_foreground < BUSY_WINDOW {
        std::thread::sleep(took);
        PAUSED.set(PAUSED.get() + took);
    }
    out
}

/// Runs `f` with the calling thread's disk I/O priority in the idle class (`ioprio_set`),
/// then restores the priority it had, also if `f` panics.
///
/// For background writes (chunks moved to Tier-2 on the same disk): a block-layer scheduler
/// that honours priorities (mq-deadline, bfq) then dispatches the Tier-1 log's writes and
/// flushes, which appends wait for, before them, instead of queueing a commit behind a
/// chunk's 1 MiB writes. Idle I/O cannot starve: mq-deadline dispatches a waiting request
/// of a lower class after `prio_aging_expire` (10 s by default), and the storage writer
/// writes `Urgent`ly once Tier-1 is full (appends then wait, so the disk is free anyway).
/// The scheduler `none` ignores priorities; where the call is refused, `f` just runs.
pub(crate) fn with_idle_io<T>(f: impl FnOnce() -> T) -> T {
    /// Restores the thread's I/O priority when dropped.
    struct Restore(Option<libc::c_long>);
    impl Drop for Restore {
        fn drop(&mut self) {
            if let Some(old) = self.0 {
                set_io_priority(old);
            }
        }
    }
    const IOPRIO_CLASS_IDLE: libc::c_long = 3;
    const IOPRIO_CLASS_SHIFT: u32 = 13;
    let old = io_priority();
    let _restore = Restore(old.filter(|_| set_io_priority(IOPRIO_CLASS_IDLE << IOPRIO_CLASS_SHIFT)));
    f()
}

/// `ioprio_get`'s `which` for one thread (the kernel's "process" is a task).
const IOPRIO_WHO_PROCESS: libc::c_long = 1;

/// The calling thread's I/O priority, `None` if the kernel does not say.
fn io_priority() -> Option<libc::c_long> {
    // SAFETY: a plain syscall about the calling thread (`who` = 0); no memory is passed.
    let p = unsafe { libc::syscall(libc::SYS_ioprio_get, IOPRIO_WHO_PROCESS, 0 as libc::c_long) };
    (p >= 0).then_some(p)
}

/// Sets the calling thread's I/O priority; false if refused.
fn set_io_priority(value: libc::c_long) -> bool {
    // SAFETY: as in `io_priority`.
    unsafe { libc::syscall(libc::SYS_ioprio_set, IOPRIO_WHO_PROCESS, 0 as libc::c_long, value) == 0 }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Only background I/O is cut into pieces, and the mark ends with it, also on a panic.
    #[test]
    fn background_io_is_cut_into_pieces_and_only_there() {
        assert_eq!(paced_len(8 << 20), 8 << 20);
        assert_eq!(background(|| paced_len(8 << 20)).0, PACED_PIECE);
        assert_eq!(background(|| paced_len(4096)).0, 4096);
        assert_eq!(paced_len(8 << 20), 8 << 20, "the mark ends with the background work");
        let r = std::panic::catch_unwind(|| background(|| panic!("inside")));
        assert!(r.is_err());
        assert_eq!(paced_len(8 << 20), 8 << 20, "the mark ends after a panic too");
        // Outside background work, `paced` runs the I/O and returns what it returned.
        assert_eq!(paced(|| 7), 7);
    }

    /// Pages of `buf` that are backed by memory (`mincore`).
    fn resident_pages(buf: &FileBuffer) -> usize {
        let pages = buf.len().div_ceil(4096);
        let mut vec = vec![0u8; pages];
        // SAFETY: the buffer's mapping is page-aligned and `len` bytes long; `vec` has a byte
        // per page.
        let rc = unsafe {
            libc::mincore(buf.slice(0, buf.len()).as_ptr() as *mut libc::c_void, buf.len(), vec.as_mut_ptr())
        };
        assert_eq!(rc, 0, "mincore: {}", std::io::Error::last_os_error());
        vec.iter().filter(|&&v| v & 1 == 1).count()
    }

    #[test]
    fn prefaulted_buffers_are_backed_and_still_zero() {
        let buf = FileBuffer::new(8 << 20);
        assert_eq!(resident_pages(&buf), 0, "a fresh buffer is backed only once touched");
        // SAFETY: this test's own buffer.
        unsafe { buf.prefault() };
        assert_eq!(resident_pages(&buf), 2048, "every page backed");
        // SAFETY: nobody writes it meanwhile.
        assert!(unsafe { buf.slice(0, buf.len()) }.iter().all(|&b| b == 0), "still zeros");

        let mut v: Vec<u8> = Vec::with_capacity(1 << 20);
        prefault(v.spare_capacity_mut());
        assert!(v.is_empty(), "spare capacity only");

        let pool = BufferPool::new(2, 1 << 20);
        pool.prefault(3 << 20);
        let again = pool.take(3 << 20);
        assert_eq!(resident_pages(&again), again.len() / 4096, "the pool hands out the backed buffer");
    }

    #[test]
    fn idle_io_priority_holds_inside_and_is_restored_after_even_on_panic() {
        let before = io_priority().expect("ioprio_get works on Linux");
        let inside = with_idle_io(|| io_priority().expect("ioprio_get"));
        assert_eq!(inside >> 13, 3, "the idle class inside (got {inside:#x})");
        assert_eq!(io_priority(), Some(before), "restored after");
        let r = std::panic::catch_unwind(|| with_idle_io(|| panic!("inside")));
        assert!(r.is_err());
        assert_eq!(io_priority(), Some(before), "restored after a panic");
    }
}
