//! Tier-2: segment data as chunk objects in object storage (local files, S3, or memory).
//!
//! The storage writer of each container ([`crate::container::storage_writer`]) copies runs of a segment's bytes
//! out of the Tier-1 log into *chunk objects*; reads of old data fetch them back through a
//! byte-bounded cache. Everything goes through `Arc<dyn ObjectStore>`.
//!
//! Layout (see docs/on-disk-format.md, "Tier-2"):
//!
//! ```text
//! {root}/{store-id}/container-{c}/{local:020}/{offset:020}.chunk
//!         │           │             │          └ segment offset of the chunk's first byte
//!         │           │             └ container-local id of the segment incarnation that wrote it
//!         │           └ the container (fixed per data directory)
//!         └ the segment store's stable id (tier1/store-id)
//! ```
//!
//! Listing `…/{local:020}/` returns a segment's chunks in offset order. Each object is a header
//! followed by the data:
//!
//! ```text
//! magic "NCHK" | version: u8 = 1 | 3 zero bytes | offset: u64 | len: u64 | crc32: u32
//! | name_len: u16 | name: [u8; name_len] | data: [u8; len]
//! crc32 = CRC-32 (IEEE) of every byte of the object except the crc32 field itself.
//! ```
//!
//! A chunk is checked on every fetch: a bad magic, length or CRC is [`Tier2Error::Corrupt`],
//! and its bytes are never served. An upload that failed may still have landed: uploads are
//! idempotent (the same name always gets the same bytes, or bytes that extend them), and the
//! container's durable chunk index, not the listing, decides what is part of a segment.
//!
//! Owns: `Tier2` (objects, chunk codec, read cache). Calls: `crate::direct`, `crate::metrics`. Called by:
//! `crate::container` (reads, storage writer), `crate::node` (opens it).

use std::collections::HashMap;
use std::path::Path as FsPath;
use std::sync::Arc;
use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use parking_lot::Mutex;
use tokio::sync::OnceCell;

pub use crate::direct::Urgency;
use crate::direct::{BufferPool, align_up, background, create_direct, paced, paced_len, read_direct};

/// Errors of Tier-2.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Tier2Error {
    /// The Tier-2 URL names a backend that does not exist.
    #[error("unknown Tier-2 backend {scheme:?} in {url:?}: use file:///path, s3://bucket/prefix or memory://")]
    UnknownScheme { url: String, scheme: String },
    /// The Tier-2 URL does not parse, or the backend refused its settings.
    #[error("bad Tier-2 URL {url:?}: {detail}")]
    BadUrl { url: String, detail: String },
    /// The object store failed (down, throttled, refused). Retry later.
    #[error("Tier-2 {op} of {key} failed: {detail}")]
    Unavailable { op: &'static str, key: String, detail: String },
    /// A chunk that fails its checks: its bytes are never served.
    #[error("Tier-2 chunk {key} is damaged: {detail}")]
    Corrupt { key: String, detail: String },
    /// A chunk the index names is not in Tier-2.
    #[error("Tier-2 chunk {key} is missing")]
    Missing { key: String },
}

impl Tier2Error {
    /// True if the same operation may succeed later.
    pub fn is_retryable(&self) -> bool {
        matches!(self, Tier2Error::Unavailable { .. })
    }
}

/// An opened Tier-2 backend.
#[derive(Debug, Clone)]
pub struct Backend {
    pub store: Arc<dyn ObjectStore>,
    /// Where this deployment's objects live inside the store.
    pub root: Path,
    /// For the local file backend: its directory. The object store writes files without
    /// fsync, so [`Tier2::put`] syncs each chunk (and its directories) itself.
    pub local_dir: Option<std::path::PathBuf>,
}

/// Opens the object store a Tier-2 URL names.
///
/// - `file:///abs/dir` (or a bare path): local files under that directory;
/// - `s3://bucket/prefix`: AWS S3 or an S3-compatible server; credentials and region from the
///   usual `AWS_*` variables, and `endpoint` (if given) for an S3-compatible server;
/// - `memory://`: in memory (tests only: lost on exit).
///
/// Returns the store and the root path of this store's objects inside it.
pub fn open_url(url: &str, endpoint: Option<&str>) -> Result<Backend, Tier2Error> {
    let bad = |detail: String| Tier2Error::BadUrl { url: url.to_owned(), detail };
    if !url.contains("://") {
        return open_dir(FsPath::new(url)).map_err(|e| bad(e.to_string()));
    }
    let parsed = url::Url::parse(url).map_err(|e| bad(e.to_string()))?;
    match parsed.scheme() {
        "file" => {
            let path = parsed.to_file_path().map_err(|_| bad("a file URL needs an absolute path".into()))?;
            open_dir(&path).map_err(|e| bad(e.to_string()))
        }
        "memory" => Ok(Backend {
            store: Arc::new(object_store::memory::InMemory::new()),
            root: Path::from(""),
            local_dir: None,
        }),
        "s3" => {
            let bucket = parsed.host_str().filter(|b| !b.is_empty()).ok_or_else(|| bad("no bucket name".into()))?;
            let mut b = object_store::aws::AmazonS3Builder::from_env().with_bucket_name(bucket);
            if let Some(ep) = endpoint.filter(|e| !e.is_empty()) {
                b = b.with_endpoint(ep).with_allow_http(ep.starts_with("http://"));
            }
            // One retry mechanism, ours (the storage writer's backoff, logged; readers retry
            // UNAVAILABLE themselves): the client does not retry on its own, so an outage is
            // noticed and reported promptly.
            let retry = object_store::RetryConfig {
                max_retries: 0,
                retry_timeout: Duration::from_secs(10),
                backoff: object_store::BackoffConfig::default(),
            };
            // A request to a server that stopped answering fails after this long (and is
            // retried), rather than hanging. (Set key by key: `with_client_options` would
            // replace what the environment and `with_allow_http` set.)
            use object_store::ClientConfigKey as K;
            use object_store::aws::AmazonS3ConfigKey as S;
            let b = b.with_config(S::Client(K::Timeout), "5s").with_config(S::Client(K::ConnectTimeout), "2s");
            let store = b.with_retry(retry).build().map_err(|e| bad(e.to_string()))?;
            Ok(Backend { store: Arc::new(store), root: Path::from(parsed.path().trim_matches('/')), local_dir: None })
        }
        other => Err(Tier2Error::UnknownScheme { url: url.to_owned(), scheme: other.to_owned() }),
    }
}

fn open_dir(dir: &FsPath) -> std::io::Result<Backend> {
    std::fs::create_dir_all(dir)?;
    let dir = std::fs::canonicalize(dir)?;
    let fs = object_store::local::LocalFileSystem::new_with_prefix(&dir)
        .map_err(std::io::Error::other)?
        .with_automatic_cleanup(true);
    Ok(Backend { store: Arc::new(fs), root: Path::from(""), local_dir: Some(dir) })
}

/// Buffers kept for local chunk writes (one per container writing at once is plenty).
const KEEP_BUFFERS: usize = 4;
/// Smallest buffer allocated for a local chunk write or read.
const MIN_BUFFER: usize = 8 << 20;
/// Bytes of a local chunk written per `pwrite`.
const WRITE_PIECE: usize = 1 << 20;
/// Free buffers kept for local chunk reads (the cache holds those in use).
const READ_BUFFERS_KEPT: usize = 4;

/// Where the local backend keeps the object `key`.
fn local_path(root: &FsPath, key: &Path) -> std::path::PathBuf {
    let mut path = root.to_path_buf();
    for part in key.parts() {
        path.push(part.as_ref());
    }
    path
}

/// Reads a local chunk file: with `O_DIRECT` into a pooled buffer (a catch-up read then costs
/// no page-cache memory), else mapped.
fn get_local(path: &FsPath, pool: &Arc<BufferPool>) -> std::io::Result<Bytes> {
    match read_direct(path, pool)? {
        Some(b) => Ok(b),
        None => map_file(&std::fs::File::open(path)?),
    }
}

/// Writes a chunk file of the local backend durably, where the object store would put it:
/// into `NAME.tmp` with `O_DIRECT` (from a reused aligned buffer; buffered where the
/// filesystem has no `O_DIRECT`), cut to length, fsync'd, renamed, then every directory from
/// its own up to the backend's root fsync'd (new folders must survive a crash too). A
/// `.tmp` left by a crash is not a chunk name: the start-up sweep deletes it.
///
/// Direct, because a buffered write of every byte moved to Tier-2 would cost as much CPU as
/// the Tier-1 log saves by writing directly (see [`crate::direct`]).
fn put_local(root: &FsPath, key: &Path, data: &[u8], buffers: &BufferPool) -> std::io::Result<()> {
    use std::os::unix::fs::FileExt;
    let path = local_path(root, key);
    let parent = path.parent().ok_or_else(|| std::io::Error::other("a chunk key names a folder"))?;
    std::fs::create_dir_all(parent)?;
    let mut tmp = path.clone().into_os_string();
    tmp.push(".tmp");
    let tmp = std::path::PathBuf::from(tmp);
    match create_direct(&tmp) {
        Some(file) => {
            let padded = align_up(data.len() as u64) as usize;
            let buf = buffers.take(padded);
            // SAFETY: this thread owns the buffer (taken out of the pool).
            unsafe {
                buf.write(0, data);
                buf.zero(data.len(), padded);
            }
            // In 1 MiB writes, so that the Tier-1 log's writes and syncs are not queued behind
            // a whole chunk on the same disk.
            let mut written = Ok(());
            let mut at = 0;
            while at < padded && written.is_ok() {
                let end = (at + paced_len(WRITE_PIECE)).min(padded);
                // SAFETY: as above.
                written = paced(|| file.write_all_at(unsafe { buf.slice(at, end) }, at as u64));
                at = end;
            }
            buffers.give(buf);
            match written {
                Ok(()) => {}
                // The filesystem took the open but not the write: write through the page cache.
                Err(e) if e.raw_os_error() == Some(libc::EINVAL) => std::fs::write(&tmp, data)?,
                Err(e) => return Err(e),
            }
            file.set_len(data.len() as u64)?;
            paced(|| file.sync_all())?;
        }
        None => {
            std::fs::write(&tmp, data)?;
            std::fs::File::open(&tmp)?.sync_all()?;
        }
    }
    std::fs::rename(&tmp, &path)?;
    let mut dir = path.parent();
    while let Some(d) = dir {
        std::fs::File::open(d)?.sync_all()?;
        if d == root {
            break;
        }
        dir = d.parent();
    }
    Ok(())
}

const MAGIC: [u8; 4] = *b"NCHK";
const VERSION: u8 = 1;
/// Bytes of the fixed part of a chunk header (before the name).
const FIXED_HEADER: usize = 4 + 4 + 8 + 8 + 4 + 2;

/// Encodes a chunk object: header, then `data`.
pub fn encode_chunk(name: &str, offset: u64, data: &[u8]) -> Bytes {
    encode_chunk_into(&mut BytesMut::new(), name, offset, data)
}

/// Encodes a chunk object into `b` (cleared first, its capacity reused) and hands it out.
pub fn encode_chunk_into(b: &mut BytesMut, name: &str, offset: u64, data: &[u8]) -> Bytes {
    b.clear();
    b.reserve(FIXED_HEADER + name.len() + data.len());
    b.put_slice(&MAGIC);
    b.put_slice(&[VERSION, 0, 0, 0]);
    b.put_u64_le(offset);
    b.put_u64_le(data.len() as u64);
    b.put_u32_le(0);
    b.put_u16_le(name.len() as u16);
    b.put_slice(name.as_bytes());
    b.put_slice(data);
    let crc = chunk_crc(b);
    b[24..28].copy_from_slice(&crc.to_le_bytes());
    b.split().freeze()
}

fn chunk_crc(b: &[u8]) -> u32 {
    let mut h = crc32fast::Hasher::new();
    h.update(&b[..24]);
    h.update(&b[28..]);
    h.finalize()
}

/// What a chunk's header says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChunkHeader {
    pub name: String,
    pub offset: u64,
    pub len: u64,
}

/// Checks a chunk object and returns its header and data (a slice of `obj`, no copy).
pub fn decode_chunk(key: &str, obj: Bytes) -> Result<(ChunkHeader, Bytes), Tier2Error> {
    let corrupt = |detail: &str| Tier2Error::Corrupt { key: key.to_owned(), detail: detail.to_owned() };
    if obj.len() < FIXED_HEADER || obj[0..4] != MAGIC {
        return Err(corrupt("not a chunk (bad magic)"));
    }
    if obj[4] != VERSION {
        return Err(corrupt("unknown chunk version"));
    }
    let u64_at = |i: usize| u64::from_le_bytes(obj[i..i + 8].try_into().expect("8 bytes"));
    let (offset, len) = (u64_at(8), u64_at(16));
    let crc = u32::from_le_bytes(obj[24..28].try_into().expect("4 bytes"));
    let name_len = u16::from_le_bytes(obj[28..30].try_into().expect("2 bytes")) as usize;
    let data_at = FIXED_HEADER + name_len;
    if obj.len() as u64 != data_at as u64 + len {
        return Err(corrupt("length does not match the header"));
    }
    if chunk_crc(&obj) != crc {
        return Err(corrupt("CRC mismatch"));
    }
    let name = std::str::from_utf8(&obj[FIXED_HEADER..data_at]).map_err(|_| corrupt("segment name is not UTF-8"))?;
    Ok((ChunkHeader { name: name.to_owned(), offset, len }, obj.slice(data_at..)))
}

/// A Tier-2 chunk object of a container: the segment incarnation that wrote it, at which of
/// its offsets, and the upload's tag (0 for a single-copy container; a replicated container's
/// leader makes one per upload with [`new_tag`], so that a deposed leader's late upload can
/// never overwrite the chunk its successor recorded for the same bytes).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ChunkId {
    pub local: u64,
    pub offset: u64,
    pub tag: u64,
}

/// The tag of an upload by the leader of `term` (never 0: 0 is an untagged, single-copy chunk):
/// the term in the high 32 bits, a random odd number in the low ones.
pub fn new_tag(term: u64) -> u64 {
    (term.min(u32::MAX as u64) << 32) | (rand::random::<u32>() as u64 | 1)
}

/// The term an upload's tag was made in (0 for an untagged chunk).
pub fn tag_term(tag: u64) -> u64 {
    tag >> 32
}

/// The folder under a Tier-2 root where replicated containers keep their chunks (all replicas
/// of a container, on any store, read and write `replicated/container-N`); a single-copy
/// store's folder is its store id.
pub const REPLICATED_FOLDER: &str = "replicated";

/// The Tier-2 store of one segment store: the object store, where this store's objects live,
/// and the read cache.
#[derive(Debug)]
pub struct Tier2 {
    store: Arc<dyn ObjectStore>,
    /// See [`Backend::local_dir`].
    local_dir: Option<std::path::PathBuf>,
    /// `{root}/{store-id}`.
    base: Path,
    cache: ChunkCache,
    /// Aligned buffers for writing local chunk files with `O_DIRECT`, reused.
    buffers: Arc<BufferPool>,
    /// Aligned buffers for reading local chunk files with `O_DIRECT` (back when evicted).
    read_buffers: Arc<BufferPool>,
    /// Chunk reads ([`get`](Self::get)) and, of those, fetches (not served by the cache).
    gets: std::sync::atomic::AtomicU64,
    fetches: std::sync::atomic::AtomicU64,
}

impl Tier2 {
    /// `root` is the prefix inside the store; `store_id` separates the segment stores that
    /// share one bucket. `cache_bytes` bounds the chunk data held for reads.
    pub fn new(backend: Backend, store_id: &str, cache_bytes: u64) -> Self {
        let base = backend.root.clone().join(store_id);
        Self {
            store: backend.store,
            local_dir: backend.local_dir,
            base,
            cache: ChunkCache::new(cache_bytes),
            buffers: BufferPool::new(KEEP_BUFFERS, MIN_BUFFER),
            read_buffers: BufferPool::new(READ_BUFFERS_KEPT, MIN_BUFFER),
            gets: 0.into(),
            fetches: 0.into(),
        }
    }

    /// Chunk reads so far, and how many of them were fetched (the rest: cache hits).
    pub fn cache_counts(&self) -> (u64, u64) {
        use std::sync::atomic::Ordering::Relaxed;
        (self.gets.load(Relaxed), self.fetches.load(Relaxed))
    }

    /// The folder of one container's chunks.
    pub fn container_dir(&self, container: u32) -> Path {
        self.base.clone().join(format!("container-{container}"))
    }

    /// The key of a chunk: written by segment incarnation `id.local` at segment offset
    /// `id.offset`, and for a tagged upload its tag (`{offset}-{tag}.chunk`).
    pub fn chunk_key(&self, container: u32, id: ChunkId) -> Path {
        let file = match id.tag {
            0 => format!("{:020}.chunk", id.offset),
            tag => format!("{:020}-{tag:016x}.chunk", id.offset),
        };
        self.container_dir(container).join(format!("{:020}", id.local)).join(file)
    }

    /// Parses a chunk key of `container` back into its chunk id.
    pub fn parse_key(&self, container: u32, key: &Path) -> Option<ChunkId> {
        let dir = self.container_dir(container);
        let mut rest = key.prefix_match(&dir)?;
        let local = rest.next()?.as_ref().parse().ok()?;
        let file = rest.next()?;
        let name = file.as_ref().strip_suffix(".chunk")?;
        let (offset, tag) = match name.split_once('-') {
            None => (name.parse().ok()?, 0),
            Some((offset, tag)) => (offset.parse().ok()?, u64::from_str_radix(tag, 16).ok().filter(|&t| t != 0)?),
        };
        rest.next().is_none().then_some(ChunkId { local, offset, tag })
    }

    /// Uploads a chunk once (the caller retries); when it returns Ok the chunk is durable. May
    /// have landed even if it fails. The local backend writes a `Background` chunk with idle
    /// disk I/O priority ([`crate::direct::with_idle_io`]), so that it does not hold up the
    /// Tier-1 log on the same disk.
    pub async fn put(&self, key: &Path, object: Bytes, urgency: Urgency) -> Result<(), Tier2Error> {
        if let Some(root) = self.local_dir.clone() {
            let (k, buffers) = (key.clone(), self.buffers.clone());
            let failed = |e: String| Tier2Error::Unavailable { op: "upload", key: key.to_string(), detail: e };
            let put = move || put_local(&root, &k, &object, &buffers);
            return tokio::task::spawn_blocking(move || match urgency {
                Urgency::Background => {
                    let (done, paused) = background(put);
                    crate::metrics::tier2_yielded(paused.as_secs_f64());
                    done
                }
                Urgency::Urgent => put(),
            })
            .await
            .map_err(|e| failed(e.to_string()))?
            .map_err(|e| failed(e.to_string()));
        }
        self.store.put(key, PutPayload::from_bytes(object)).await.map_err(|e| unavailable("upload", key, e))?;
        Ok(())
    }

    /// Backs the memory that writing a chunk object of up to `len` bytes to the local backend
    /// will use (nothing for other backends). See [`crate::container::storage_writer`]'s start.
    pub(crate) fn prefault_put(&self, len: usize) {
        if self.local_dir.is_some() {
            self.buffers.prefault(align_up(len as u64) as usize);
        }
    }

    /// Deletes a chunk; a missing one counts as deleted.
    pub async fn delete(&self, key: &Path) -> Result<(), Tier2Error> {
        match self.store.delete(key).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => {
                self.cache.forget(key.as_ref());
                Ok(())
            }
            Err(e) => Err(unavailable("delete", key, e)),
        }
    }

    /// Every chunk key under a container, in key order.
    pub async fn list(&self, container: u32) -> Result<Vec<(Path, u64)>, Tier2Error> {
        use futures::TryStreamExt;
        let dir = self.container_dir(container);
        let mut out: Vec<(Path, u64)> = self
            .store
            .list(Some(&dir))
            .map_ok(|m| (m.location, m.size))
            .try_collect()
            .await
            .map_err(|e| unavailable("list", &dir, e))?;
        out.sort();
        Ok(out)
    }

    /// Fetches and checks a chunk's data, through the cache (concurrent fetches of one chunk
    /// share one request). A fetch that fails is not cached.
    pub async fn get(&self, key: &Path) -> Result<Bytes, Tier2Error> {
        self.gets.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let cell = self.cache.cell(key.as_ref());
        let data = cell
            .get_or_try_init(|| async {
                self.fetches.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if let Some(root) = &self.local_dir {
                    let (path, pool) = (local_path(root, key), self.read_buffers.clone());
                    let failed = |detail: String| Tier2Error::Unavailable { op: "read", key: key.to_string(), detail };
                    let obj = match tokio::task::spawn_blocking(move || get_local(&path, &pool)).await {
                        Ok(Ok(obj)) => obj,
                        Ok(Err(e)) if e.kind() == std::io::ErrorKind::NotFound => {
                            return Err(Tier2Error::Missing { key: key.to_string() });
                        }
                        Ok(Err(e)) => return Err(failed(e.to_string())),
                        Err(e) => return Err(failed(e.to_string())),
                    };
                    return decode_chunk(key.as_ref(), obj).map(|(_, data)| data);
                }
                let obj = match self.store.get(key).await {
                    // (Local files never get here: `get_local` reads them.)
                    Ok(r) => r.bytes().await.map_err(|e| unavailable("read", key, e))?,
                    Err(object_store::Error::NotFound { .. }) => {
                        return Err(Tier2Error::Missing { key: key.to_string() });
                    }
                    Err(e) => return Err(unavailable("read", key, e)),
                };
                decode_chunk(key.as_ref(), obj).map(|(_, data)| data)
            })
            .await;
        match data {
            Ok(d) => {
                let d = d.clone();
                self.cache.loaded(key.as_ref(), d.len() as u64);
                Ok(d)
            }
            Err(e) => {
                self.cache.forget(key.as_ref());
                Err(e)
            }
        }
    }

    /// Starts fetching a chunk of about `size` bytes into the cache in the background
    /// (read-ahead), unless that would take more than half the cache: read-ahead must not
    /// evict what readers are using.
    pub fn prefetch(self: &Arc<Self>, key: Path, size: u64) {
        if self.cache.has(key.as_ref()) || self.cache.committed() + size > self.cache.max_bytes / 2 {
            return;
        }
        let me = self.clone();
        tokio::spawn(async move {
            if let Err(e) = me.get(&key).await {
                tracing::debug!(key = %key, error = %e, "Tier-2 read-ahead failed");
            }
        });
    }

    /// Bytes of chunk data held by the read cache.
    pub fn cached_bytes(&self) -> u64 {
        self.cache.inner.lock().bytes
    }
}

/// Maps a chunk file, read in whole (it is checked right after).
fn map_file(file: &std::fs::File) -> std::io::Result<Bytes> {
    if file.metadata()?.len() == 0 {
        return Ok(Bytes::new());
    }
    // SAFETY: chunk files are never changed in place: an upload writes a new file and renames
    // it over the old name, and a delete unlinks it; either leaves this mapping's file intact.
    let map = unsafe { memmap2::MmapOptions::new().populate().map(file)? };
    Ok(Bytes::from_owner(map))
}

fn unavailable(op: &'static str, key: &Path, e: object_store::Error) -> Tier2Error {
    Tier2Error::Unavailable { op, key: key.to_string(), detail: e.to_string() }
}

/// A read cache of chunk data, bounded in bytes, evicting the least recently used chunk.
#[derive(Debug)]
struct ChunkCache {
    max_bytes: u64,
    inner: Mutex<CacheInner>,
}

#[derive(Debug, Default)]
struct CacheInner {
    entries: HashMap<String, CacheEntry>,
    /// Bytes of loaded entries.
    bytes: u64,
    tick: u64,
}

#[derive(Debug)]
struct CacheEntry {
    cell: Arc<OnceCell<Bytes>>,
    /// Size once loaded and counted (0 while loading).
    size: u64,
    used: u64,
}

impl ChunkCache {
    fn new(max_bytes: u64) -> Self {
        Self { max_bytes, inner: Mutex::default() }
    }

    fn has(&self, key: &str) -> bool {
        self.inner.lock().entries.contains_key(key)
    }

    /// Bytes loaded, plus a guess for those being loaded.
    fn committed(&self) -> u64 {
        let g = self.inner.lock();
        let loading = g.entries.values().filter(|e| e.size == 0).count() as u64;
        g.bytes + loading * (g.bytes / (g.entries.len() as u64 - loading).max(1))
    }

    fn cell(&self, key: &str) -> Arc<OnceCell<Bytes>> {
        let mut g = self.inner.lock();
        g.tick += 1;
        let tick = g.tick;
        let e = g.entries.entry(key.to_owned()).or_insert_with(|| CacheEntry {
            cell: Arc::new(OnceCell::new()),
            size: 0,
            used: tick,
        });
        e.used = tick;
        e.cell.clone()
    }

    /// Counts a loaded entry and evicts the least recently used ones beyond the bound (never
    /// the one just loaded, so one chunk larger than the bound is still served).
    fn loaded(&self, key: &str, size: u64) {
        let mut g = self.inner.lock();
        let g = &mut *g;
        match g.entries.get_mut(key) {
            Some(e) if e.size == 0 && size > 0 => {
                e.size = size;
                g.bytes += size;
            }
            _ => {}
        }
        while g.bytes > self.max_bytes {
            let victim = g
                .entries
                .iter()
                .filter(|(k, e)| e.size > 0 && k.as_str() != key)
                .min_by_key(|(_, e)| e.used)
                .map(|(k, _)| k.clone());
            let Some(v) = victim else { break };
            if let Some(e) = g.entries.remove(&v) {
                g.bytes -= e.size;
            }
        }
    }

    fn forget(&self, key: &str) {
        let mut g = self.inner.lock();
        if let Some(e) = g.entries.remove(key) {
            g.bytes -= e.size;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(local: u64, offset: u64) -> ChunkId {
        ChunkId { local, offset, tag: 0 }
    }

    #[test]
    fn tagged_keys_parse_back_and_differ_from_untagged_ones() {
        let t2 = Tier2::new(open_url("memory://", None).unwrap(), "replicated", 0);
        let tagged = ChunkId { local: 7, offset: 4096, tag: 0xdead_beef_0000_0001 };
        let (a, b) = (t2.chunk_key(3, tagged), t2.chunk_key(3, id(7, 4096)));
        assert_ne!(a, b);
        assert_eq!(t2.parse_key(3, &a), Some(tagged));
        assert_eq!(t2.parse_key(3, &b), Some(id(7, 4096)));
        assert_eq!(t2.parse_key(4, &a), None, "another container's key");
        for bad in [
            "00000000000000000007/x.chunk",
            "00000000000000000007/00000000000000004096-0.chunk",
            "00000000000000000007/00000000000000004096-zz.chunk",
            "00000000000000000007/00000000000000004096.chunk/x",
        ] {
            let key = t2.container_dir(3).join(bad);
            assert_eq!(t2.parse_key(3, &key), None, "{bad}");
        }
    }

    #[test]
    fn chunks_round_trip_and_damage_is_detected_anywhere() {
        let obj = encode_chunk("s/str/0", 4096, b"hello chunk");
        let (h, data) = decode_chunk("k", obj.clone()).unwrap();
        assert_eq!(h, ChunkHeader { name: "s/str/0".into(), offset: 4096, len: 11 });
        assert_eq!(&data[..], b"hello chunk");
        for i in 0..obj.len() {
            let mut bad = obj.to_vec();
            bad[i] ^= 0x01;
            assert!(
                matches!(decode_chunk("k", bad.into()), Err(Tier2Error::Corrupt { .. })),
                "a flipped byte at {i} is found"
            );
        }
        assert!(matches!(decode_chunk("k", obj.slice(..obj.len() - 1)), Err(Tier2Error::Corrupt { .. })));
    }

    #[test]
    fn urls() {
        assert!(matches!(open_url("ftp://x/y", None), Err(Tier2Error::UnknownScheme { .. })));
        assert!(matches!(open_url("s3:///prefix", None), Err(Tier2Error::BadUrl { .. })));
        assert!(open_url("memory://", None).is_ok());
        let dir = tempfile::tempdir().unwrap();
        let url = format!("file://{}", dir.path().join("t2").display());
        assert!(open_url(&url, None).is_ok());
        assert!(dir.path().join("t2").is_dir());
    }

    #[tokio::test]
    async fn keys_list_in_offset_order_and_the_cache_stays_bounded() {
        let t2 = Tier2::new(open_url("memory://", None).unwrap(), "store-1", 3000);
        for off in [0u64, 1000, 2000, 3000] {
            let key = t2.chunk_key(0, id(7, off));
            assert_eq!(t2.parse_key(0, &key), Some(id(7, off)));
            t2.put(&key, encode_chunk("s/a/0", off, &vec![1u8; 1000]), Urgency::Urgent).await.unwrap();
        }
        let keys: Vec<_> =
            t2.list(0).await.unwrap().into_iter().map(|(k, _)| t2.parse_key(0, &k).unwrap().offset).collect();
        assert_eq!(keys, vec![0, 1000, 2000, 3000]);
        for off in [0u64, 1000, 2000, 3000] {
            assert_eq!(t2.get(&t2.chunk_key(0, id(7, off))).await.unwrap().len(), 1000);
            assert!(t2.cached_bytes() <= 3000);
        }
        assert!(matches!(t2.get(&t2.chunk_key(0, id(7, 5000))).await, Err(Tier2Error::Missing { .. })));
        t2.delete(&t2.chunk_key(0, id(7, 0))).await.unwrap();
        t2.delete(&t2.chunk_key(0, id(7, 0))).await.unwrap();
        assert_eq!(t2.list(0).await.unwrap().len(), 3);
    }

    #[tokio::test]
    async fn local_chunks_written_and_read_directly_are_exact_and_checked() {
        let dir = tempfile::tempdir().unwrap();
        let t2 = Tier2::new(open_url(dir.path().to_str().unwrap(), None).unwrap(), "store-1", 1 << 30);
        // Sizes around the 4 KiB block and the 1 MiB write piece, so that every object ends
        // mid-block and the padding must be cut off.
        let sizes = [1usize, 4095, 4096, 4097, (1 << 20) + 13, 3 * (1 << 20) - 7];
        for (i, &n) in sizes.iter().enumerate() {
            let data: Vec<u8> = (0..n).map(|b| (b * 7 + i) as u8).collect();
            let key = t2.chunk_key(0, id(3, i as u64));
            let object = encode_chunk("s/a/0", i as u64, &data);
            t2.put(&key, object.clone(), Urgency::Background).await.unwrap();
            // The object store sees exactly the object (listing and its own reads).
            let listed = t2.list(0).await.unwrap();
            assert!(listed.contains(&(key.clone(), object.len() as u64)), "{n}-byte chunk listed with its size");
            let via_store = t2.store.get(&key).await.unwrap().bytes().await.unwrap();
            assert_eq!(via_store, object, "{n}-byte chunk read back by the object store");
            assert_eq!(&t2.get(&key).await.unwrap()[..], &data[..], "{n}-byte chunk read back directly");
        }
        // No temporary file stays behind.
        let leftovers = walk(dir.path()).into_iter().filter(|p| p.extension().is_some_and(|e| e == "tmp")).count();
        assert_eq!(leftovers, 0);
        // A damaged file is refused, never served (fresh cache: a new Tier2 on the same dir).
        let key = t2.chunk_key(0, id(3, 4));
        let path = local_path(&t2.local_dir.clone().unwrap(), &key);
        let mut bytes = std::fs::read(&path).unwrap();
        bytes[100_000] ^= 0x20;
        std::fs::write(&path, &bytes).unwrap();
        let fresh = Tier2::new(open_url(dir.path().to_str().unwrap(), None).unwrap(), "store-1", 1 << 30);
        assert!(matches!(fresh.get(&key).await, Err(Tier2Error::Corrupt { .. })));
        std::fs::remove_file(&path).unwrap();
        assert!(matches!(fresh.get(&key).await, Err(Tier2Error::Missing { .. })));
    }

    fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
        let mut out = Vec::new();
        for e in std::fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                out.extend(walk(&p));
            } else {
                out.push(p);
            }
        }
        out
    }
}
