//! The storage writer: one task per container that moves segment data from the Tier-1 log to
//! Tier-2 chunk objects, and deletes the chunks nothing refers to any more.
//!
//! ```text
//!  durable state (read index) ──► pick runs ──► read from the log (CRC-checked)
//!        ▲                                          │
//!        │ Tiered op (durable, via the writer       ▼
//!        │ thread's metadata channel)          PUT chunk object (retried with backoff)
//!        └──────────────────────────────────────────┘
//!  after the op is durable, the container's writer thread writes checkpoints that no longer
//!  refer to the old log files, and the log recycles them.
//! ```
//!
//! Invariants:
//! - A run is recorded as tiered only after its chunk upload succeeded; Tier-1 bytes are
//!   dropped from the index only when that record is durable, and log files are recycled only
//!   after checkpoints that do not refer to them are durable (see `FileLog::recycle`).
//! - An upload that failed may have landed. Its key is the same the next try uses (segment
//!   incarnation and offset), and a run always starts where the previous one ended, so a
//!   retry overwrites it. A chunk uploaded but never recorded (crash in between) is deleted by
//!   the sweep at start-up, which runs before any upload.
//! - Nothing here waits on the writer thread while holding a lock; while Tier-2 is down the
//!   task retries, Tier-1 keeps taking appends up to its capacity, and then appends wait.
//!
//! A replicated container (docs/replication.md) runs this task on every replica, but only the
//! replica that serves (leads, and has applied an entry of its term) moves or deletes anything;
//! the `Tiered` operation goes through the group's log, so every replica drops the same Tier-1
//! bytes from its index and refers to the same chunk, in a Tier-2 all replicas share. Fencing a
//! deposed leader:
//! - every upload has its own key: its tag is the uploader's term (high 32 bits) and a random
//!   number, so a late upload of a deposed leader never overwrites a chunk its successor
//!   recorded for the same bytes (it lands as an object nobody refers to);
//! - the writer thread records a `Tiered` only while it leads in the tag's term;
//! - a leader sweeps once it serves (before its first upload) and every [`SWEEP_EVERY`]: it
//!   deletes the chunks nobody refers to *from earlier terms only*. By then every entry that
//!   can ever commit from an earlier term is applied here (Raft: it is in this leader's log,
//!   before its own first entry, which is applied), so such a chunk can never be referred to;
//!   a chunk of this or a later term may still be recorded and is left alone.
//!
//! Owns: the per-container mover task and the container's Tier-2 view. Calls: `crate::tier2`,
//! `crate::direct`, `crate::metrics`, the container writer (metadata channel). Called by: `crate::store` (starts one
//! per container).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use backon::BackoffBuilder;

use std::collections::HashSet;
use std::sync::Arc;

use tokio::sync::oneshot;

use crate::container::Container;
use crate::container::checkpoint::IndexEntry;
use crate::container::state::ChunkId;
use crate::container::writer::Request;
use crate::direct::{background, prefault};
use crate::error::StoreError;
use crate::log::LogAddress;
use crate::tier2::Tier2;
use crate::tier2::{Urgency, encode_chunk_into, new_tag, tag_term};

/// Default size at which a segment's Tier-1 bytes are moved to Tier-2 as one chunk.
pub const DEFAULT_CHUNK_BYTES: u64 = 32 * 1024 * 1024;
/// Default age after which a segment's Tier-1 bytes are moved to Tier-2 even if fewer.
pub const DEFAULT_MAX_AGE: Duration = Duration::from_secs(30);

/// When the storage writer moves data.
#[derive(Debug, Clone)]
pub struct TieringOptions {
    /// A segment's Tier-1 bytes are moved once this many have gathered (also the largest
    /// chunk, except that one append batch is never split).
    pub chunk_bytes: u64,
    /// ... or once the oldest of them is this old.
    pub max_age: Duration,
    /// Tier-1 has a capacity: move the bytes in every file but the current one right away, so
    /// that files are recycled before appends have to wait.
    pub eager: bool,
}

impl Default for TieringOptions {
    fn default() -> Self {
        Self { chunk_bytes: DEFAULT_CHUNK_BYTES, max_age: DEFAULT_MAX_AGE, eager: false }
    }
}

/// Largest chunk size whose buffers are backed at start (larger ones grow when used).
const PREFAULT_MAX: u64 = 64 << 20;

/// How often the task looks for work when nothing wakes it.
const TICK: Duration = Duration::from_millis(200);
/// The shortest time between two looks for work while appends keep waking the task.
const PASS: Duration = Duration::from_millis(50);
/// How often the leader of a replicated container sweeps chunks nobody refers to (late
/// uploads of deposed leaders; chunks deleted while this replica followed).
pub const SWEEP_EVERY: Duration = Duration::from_secs(600);

/// Starts the storage writer of a container (nothing happens without Tier-2).
pub fn spawn(container: &Container, opts: TieringOptions) -> Option<tokio::task::JoinHandle<()>> {
    container.tier2()?;
    let c = container.for_storage_writer();
    Some(tokio::spawn(run(c, opts)))
}

fn backoff() -> impl Iterator<Item = Duration> {
    backon::ExponentialBuilder::default()
        .with_min_delay(Duration::from_millis(100))
        .with_max_delay(Duration::from_secs(5))
        .with_jitter()
        .without_max_times()
        .build()
}

async fn run(c: Container, opts: TieringOptions) {
    if c.tier2().is_none() {
        return;
    }
    let id = c.id();
    // Reused for every chunk: fresh memory is slow to touch on these machines. Backed now,
    // before the first moves: in a new store every segment's first chunk moves at about the
    // same time, and touching these buffers then, under load, raised the p99 of appends in
    // those seconds from about 10 ms to 40–70 ms (docs/performance.md, 2026-12-04).
    let mut buffers = {
        let len = opts.chunk_bytes.min(PREFAULT_MAX) as usize + (1 << 20);
        let t2 = c.tier2().cloned();
        tokio::task::spawn_blocking(move || {
            let mut b = Buffers { run: Vec::with_capacity(len), chunk: bytes::BytesMut::with_capacity(len) };
            prefault(b.run.spare_capacity_mut());
            prefault(b.chunk.spare_capacity_mut());
            if let Some(t2) = t2 {
                t2.prefault_put(len);
            }
            b
        })
        .await
        .unwrap_or_default()
    };
    // When each run (segment incarnation, offset) was first seen in Tier-1.
    let mut first_seen: HashMap<(u64, u64), Instant> = HashMap::new();
    // The term of a replicated container's leadership the last sweep was done in (`Some(0)`
    // for a single-copy container), and when.
    let mut swept: Option<(u64, Instant)> = None;
    let mut changes = c.subscribe();
    loop {
        if c.storage_writer_stopped() {
            return;
        }
        // Single-copy: term 0 (always serves). Replicated: only the serving leader works.
        let Some(term) = c.mover_term() else {
            // Another replica deletes: what this one's applies found unreferenced is for it to
            // find by its sweep, should this one lead later.
            c.take_garbage();
            swept = None;
            first_seen.clear();
            tokio::time::sleep(TICK).await;
            continue;
        };
        // 1. Sweep, before any upload: chunks that no segment refers to (uploaded but not
        //    recorded before a crash, or not deleted after their segment went, or uploaded by
        //    a deposed leader).
        let due = match swept {
            Some((t, at)) => t != term || (term > 0 && at.elapsed() >= SWEEP_EVERY),
            None => true,
        };
        if due {
            match sweep(&c, term).await {
                Ok(n) => {
                    if n > 0 {
                        tracing::info!(container = id, chunks = n, "Tier-2: deleted chunks no segment refers to");
                    }
                    swept = Some((term, Instant::now()));
                }
                Err(e) => {
                    tracing::warn!(container = id, error = %e, "Tier-2 sweep failed; retrying");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    continue;
                }
            }
        }
        delete_garbage(&c).await;
        let (current, stalled) = c.tier1_state();
        let now = Instant::now();
        let mut runs = c.tier_candidates(opts.chunk_bytes);
        first_seen.retain(|k, _| runs.iter().any(|r| (r.local, r.offset) == *k));
        runs.sort_by_key(|r| (r.oldest_file, r.offset));
        for run in runs {
            let seen = *first_seen.entry((run.local, run.offset)).or_insert(now);
            let due = run.len >= opts.chunk_bytes
                || run.more
                || now.duration_since(seen) >= opts.max_age
                || ((opts.eager || stalled) && run.oldest_file < current)
                // Its oldest bytes are in the oldest log file kept in memory: moved now, they
                // are copied from memory; after the next file switch they would be read from
                // the disk. (Not for small runs: a slow segment would make tiny chunks.)
                || (run.len >= opts.chunk_bytes / 8 && run.oldest_file + c.cached_files() <= current);
            if !due {
                continue;
            }
            match move_run(&c, &run, term, &mut buffers).await {
                Ok(()) => {}
                Err(StoreError::ShuttingDown) => return,
                Err(e @ StoreError::NotLeader { .. }) => {
                    tracing::debug!(container = id, error = %e, "no longer leading: moves stop");
                    break;
                }
                Err(e) => tracing::debug!(container = id, segment = run.name, error = %e, "run not moved to Tier-2"),
            }
        }
        // Appends wake this task at every group commit: look again at most every PASS, unless
        // appends wait for Tier-1 space.
        if !c.tier1_state().1 {
            tokio::time::sleep(PASS).await;
        }
        tokio::select! {
            r = changes.changed() => if r.is_err() { return },
            _ = tokio::time::sleep(TICK) => {}
        }
    }
}

/// The storage writer's buffers, kept from one chunk to the next.
#[derive(Debug, Default)]
struct Buffers {
    /// A run's bytes, read from the log.
    run: Vec<u8>,
    /// The chunk object being uploaded (taken back after the upload when nothing else holds it).
    chunk: bytes::BytesMut,
}

/// Uploads one run (retrying until it lands) and records it; `term` is the leader's (0 for a
/// single-copy container, whose chunks are untagged).
async fn move_run(c: &Container, run: &Candidate, term: u64, buffers: &mut Buffers) -> Result<(), StoreError> {
    let t2 = c.tier2().expect("storage writer runs with Tier-2").clone();
    let id = c.id();
    let started = Instant::now();
    // Copying tens of MiB and checksumming them would hold up a runtime thread (and the
    // appends it serves) for milliseconds: done on a blocking thread.
    let (object, returned) = {
        let (c, run, mut b) = (c.clone(), run.clone(), std::mem::take(buffers));
        // Paced, as the upload is, unless appends wait for Tier-1 space.
        let urgent = c.tier1_state().1;
        tokio::task::spawn_blocking(move || {
            let read = |b: &mut Buffers| c.read_tier1_run(&run, &mut b.run);
            let read = if urgent {
                read(&mut b)
            } else {
                let (read, paused) = background(|| read(&mut b));
                crate::metrics::tier2_yielded(paused.as_secs_f64());
                read
            };
            let object = read.map(|()| encode_chunk_into(&mut b.chunk, &run.name, run.offset, &b.run));
            (object, b)
        })
        .await
        .map_err(|e| StoreError::Internal(format!("storage writer: {e}")))?
    };
    *buffers = returned;
    let mut object = object?;
    let chunk = ChunkId { local: run.local, offset: run.offset, tag: if term == 0 { 0 } else { new_tag(term) } };
    let key = t2.chunk_key(id, chunk);
    let mut delays = backoff();
    let mut failures = 0u32;
    loop {
        // In the background while appends can go on; urgent once they wait for Tier-1 space.
        let urgency = if c.tier1_state().1 { Urgency::Urgent } else { Urgency::Background };
        match t2.put(&key, object.clone(), urgency).await {
            Ok(()) => {
                // Take the buffer back if the store kept no reference to it.
                if let Ok(b) = std::mem::take(&mut object).try_into_mut() {
                    buffers.chunk = b;
                }
                break;
            }
            Err(e) => {
                failures += 1;
                if failures == 1 || failures.is_power_of_two() {
                    tracing::warn!(container = id, key = %key, failures, error = %e,
                        "Tier-2 upload failed; retrying (Tier-1 keeps the data meanwhile)");
                }
                if c.storage_writer_stopped() {
                    return Err(StoreError::ShuttingDown);
                }
                if c.mover_term() != Some(term) {
                    // Deposed meanwhile: the upload may have landed, as an object nobody will
                    // refer to (its tag is of this term); a later leader's sweep deletes it.
                    return Err(StoreError::NotLeader { container: id, leader: None });
                }
                tokio::time::sleep(delays.next().unwrap_or(Duration::from_secs(5))).await;
            }
        }
    }
    if failures > 0 {
        tracing::info!(container = id, key = %key, failures, "Tier-2 upload succeeded after retries");
    }
    match c.tiered(run, chunk.tag).await {
        Ok(()) => {
            c.shared.metrics.moved(id, run.len, started.elapsed().as_secs_f64());
            Ok(())
        }
        // The outcome is unknown (the entry may still commit): the chunk stays; if nothing
        // refers to it, the sweep of a later term deletes it.
        Err(e @ (StoreError::ShuttingDown | StoreError::NotLeader { .. })) => Err(e),
        Err(e) => {
            // Refused before it was logged: the segment went (or was truncated past the run)
            // meanwhile, so the chunk is garbage.
            c.return_garbage(vec![chunk]);
            Err(e)
        }
    }
}

/// Deletes the chunks no segment refers to any more; failures are tried again later.
async fn delete_garbage(c: &Container) {
    let Some(t2) = c.tier2() else { return };
    let garbage = c.take_garbage();
    let mut failed = Vec::new();
    for chunk in garbage {
        let key = t2.chunk_key(c.id(), chunk);
        if let Err(e) = t2.delete(&key).await {
            tracing::debug!(key = %key, error = %e, "Tier-2 delete failed; will retry");
            failed.push(chunk);
        }
    }
    if !failed.is_empty() {
        c.return_garbage(failed);
    }
}

/// Deletes every chunk of this container that the durable state does not refer to, but for
/// those uploaded in `term` or later (a replicated container's leader's; see the module docs).
async fn sweep(c: &Container, term: u64) -> Result<usize, crate::tier2::Tier2Error> {
    let t2 = c.tier2().expect("storage writer runs with Tier-2");
    let referenced = c.chunk_ids();
    let mut n = 0;
    for (key, _) in t2.list(c.id()).await? {
        let keep = match t2.parse_key(c.id(), &key) {
            Some(id) => referenced.contains(&id) || (term > 0 && tag_term(id.tag) >= term),
            None => false,
        };
        if !keep {
            t2.delete(&key).await?;
            n += 1;
        }
    }
    Ok(n)
}

/// A run of a segment's Tier-1 bytes that the storage writer may move to Tier-2.
#[derive(Debug, Clone)]
pub(crate) struct Candidate {
    pub name: String,
    pub local: u64,
    pub offset: u64,
    pub len: u64,
    /// The oldest log file the run's bytes are in.
    pub oldest_file: u64,
    /// The segment has more Tier-1 bytes after this run.
    pub more: bool,
}

/// The storage writer's view of a container (see [`crate::container::storage_writer`]).
impl Container {
    pub(crate) fn tier2(&self) -> Option<&Arc<Tier2>> {
        self.shared.tier2.as_ref()
    }

    /// The storage writer's settings, if there is a Tier-2.
    pub(crate) fn tiering_options(&self) -> Option<crate::container::storage_writer::TieringOptions> {
        self.shared.tier2.as_ref().map(|_| self.shared.tiering.clone())
    }

    /// A handle without the append channel: the writer thread stops when every other handle
    /// is dropped, even while the storage writer runs.
    pub(crate) fn for_storage_writer(&self) -> Container {
        Container { shared: self.shared.clone(), tx: None, meta_tx: self.meta_tx.clone(), observer: false }
    }

    /// True once the writer thread has stopped (or never ran: a damaged container).
    pub(crate) fn storage_writer_stopped(&self) -> bool {
        self.meta_tx.as_ref().is_none_or(|t| t.is_closed())
    }

    /// For every segment with bytes in the Tier-1 log: its first run of contiguous entries,
    /// up to about `max_len` bytes (at least one entry).
    pub(crate) fn tier_candidates(&self, max_len: u64) -> Vec<Candidate> {
        let d = self.shared.durable.read();
        let mut out = Vec::new();
        for (name, s) in &d.segments {
            let Some(first) = s.index.first() else { continue };
            let (mut len, mut oldest, mut n) = (0u64, u64::MAX, 0usize);
            for e in &s.index {
                if first.offset + len != e.offset || (n > 0 && len + e.len as u64 > max_len) {
                    break;
                }
                len += e.len as u64;
                oldest = oldest.min(e.addr.file);
                n += 1;
            }
            out.push(Candidate {
                name: name.clone(),
                local: s.local,
                offset: first.offset,
                len,
                oldest_file: oldest,
                more: n < s.index.len(),
            });
        }
        out
    }

    /// Copies a run of Tier-1 bytes (checking the CRC of records recovery did not read).
    pub(crate) fn read_tier1_run(&self, c: &Candidate, buf: &mut Vec<u8>) -> Result<(), StoreError> {
        let pieces: Vec<IndexEntry> = {
            let d = self.shared.durable.read();
            let s = d
                .segments
                .get(&c.name)
                .filter(|s| s.local == c.local)
                .ok_or_else(|| StoreError::SegmentNotFound(c.name.clone()))?;
            let first = s.index.partition_point(|e| e.offset < c.offset);
            s.index[first..].iter().take_while(|e| e.offset < c.offset + c.len).copied().collect()
        };
        let covered: u64 = pieces.iter().map(|p| p.len as u64).sum();
        if pieces.first().map(|p| p.offset) != Some(c.offset) || covered != c.len {
            return Err(StoreError::InvalidArgument(format!("segment {}: the run moved", c.name)));
        }
        self.verify_pieces(&c.name, &pieces).map_err(|(_, e)| e)?;
        buf.clear();
        let pieces: Vec<(LogAddress, usize)> = pieces.iter().map(|p| (p.addr, p.len as usize)).collect();
        self.shared.log.read_once(&pieces, buf).map_err(|e| StoreError::Internal(e.to_string()))
    }

    /// Records, durably, that a run is in Tier-2 (its chunk, upload `tag`, uploaded).
    pub(crate) async fn tiered(&self, c: &Candidate, tag: u64) -> Result<(), StoreError> {
        let Some(tx) = &self.meta_tx else { return Err(self.damaged()) };
        let (reply, rx) = oneshot::channel();
        let req = Request::Tiered { name: c.name.clone(), local: c.local, offset: c.offset, len: c.len, tag, reply };
        tx.send(req).await.map_err(|_| StoreError::ShuttingDown)?;
        rx.await.map_err(|_| StoreError::ShuttingDown)?
    }

    /// Chunks no segment refers to any more (taken: the caller deletes them).
    pub(crate) fn take_garbage(&self) -> Vec<ChunkId> {
        std::mem::take(&mut *self.shared.garbage.lock())
    }

    /// Gives back chunks whose deletion failed, to try again later.
    pub(crate) fn return_garbage(&self, ids: Vec<ChunkId>) {
        self.shared.garbage.lock().extend(ids);
    }

    /// Every chunk the durable state refers to.
    pub(crate) fn chunk_ids(&self) -> HashSet<ChunkId> {
        let d = self.shared.durable.read();
        d.segments.values().flat_map(|s| s.chunks.iter().map(|c| c.obj)).collect()
    }

    /// The term the storage writer may move data in: `Some(0)` for a single-copy container;
    /// for a replicated one, the term this replica serves in, if it serves.
    pub(crate) fn mover_term(&self) -> Option<u64> {
        match &self.shared.group {
            None => Some(0),
            Some(g) => g.serving_term(),
        }
    }

    /// The Tier-1 log file being written, and whether appends wait for Tier-1 space.
    /// Earlier log files kept in memory: bytes in older files are read from the disk.
    pub(crate) fn cached_files(&self) -> u64 {
        self.shared.cached_files
    }

    pub(crate) fn tier1_state(&self) -> (u64, bool) {
        use std::sync::atomic::Ordering;
        (self.shared.current_file.load(Ordering::Relaxed), self.shared.stalled.load(Ordering::Relaxed))
    }

    /// Bytes of segment data in Tier-1 and in Tier-2 (for tests and metrics).
    pub fn tier_bytes(&self) -> (u64, u64) {
        let d = self.shared.durable.read();
        let t1 = d.segments.values().flat_map(|s| s.index.iter()).map(|e| e.len as u64).sum();
        let t2 = d.segments.values().flat_map(|s| s.chunks.iter()).map(|c| c.len).sum();
        (t1, t2)
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;
    use std::sync::Arc;

    use super::*;
    use crate::container::{ContainerOptions, frame};
    use crate::log::file::{FileLogOptions, MIN_FILE_SIZE};
    use crate::tier2::{Tier2, open_url};

    fn opts(t2: &Arc<Tier2>) -> ContainerOptions {
        ContainerOptions {
            log: FileLogOptions { file_size: MIN_FILE_SIZE, max_files: 3, ..Default::default() },
            checkpoint_interval: 8 << 20,
            tier2: Some(t2.clone()),
            tiering: TieringOptions { chunk_bytes: 2 << 20, max_age: Duration::from_millis(200), eager: true },
            ..Default::default()
        }
    }

    /// Log files on disk (in the log, recycled, or being prepared).
    fn files(dir: &Path) -> usize {
        std::fs::read_dir(dir)
            .unwrap()
            .filter(|e| e.as_ref().unwrap().file_name().to_string_lossy().starts_with("log-"))
            .count()
    }

    async fn read_all(c: &Container, seg: &str) -> Vec<u8> {
        let info = c.info(seg).unwrap();
        let mut at = info.start_offset;
        let mut out = Vec::new();
        while at < info.length {
            let chunk = c.read_any(seg, at, 1 << 20).await.unwrap();
            assert!(!chunk.data.is_empty());
            at += chunk.data.len() as u64;
            out.extend_from_slice(&chunk.data);
        }
        out
    }

    async fn wait_for(what: &str, mut cond: impl FnMut() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(60);
        while !cond() {
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_merge_reuses_the_sources_chunks_and_deleting_the_target_deletes_them() {
        let dir = tempfile::tempdir().unwrap();
        let t2 = Arc::new(Tier2::new(open_url("memory://", None).unwrap(), "store-test", 8 << 20));
        let mut o = opts(&t2);
        o.tiering.max_age = Duration::from_millis(20);
        let c = Container::open(0, dir.path(), &o).unwrap();
        spawn(&c, o.tiering.clone());
        let (target, source) = ("s/t/0.#epoch.0", "s/t/0.#epoch.0#txn.1");
        c.create(target).await.unwrap();
        c.create(source).await.unwrap();
        let mut expected = frame(&[b"target-0"]).to_vec();
        c.append(target, "w", 0, 1, frame(&[b"target-0"])).await.unwrap().await.unwrap().unwrap();
        for i in 0..3 {
            let body = vec![b'a' + i as u8; 100_000];
            expected.extend_from_slice(&frame(&[&body]));
            c.append(source, "t", i, 1, frame(&[&body])).await.unwrap().await.unwrap().unwrap();
        }
        wait_for("everything to move to Tier-2", || c.tier_bytes().0 == 0).await;
        let objects = t2.list(0).await.unwrap().len();
        assert!(objects >= 2);
        c.seal(source).await.unwrap();
        assert_eq!(c.merge(target, source).await.unwrap(), expected.len() as u64);
        assert!(read_all(&c, target).await == expected, "the target reads its own bytes, then the source's");
        assert_eq!(t2.list(0).await.unwrap().len(), objects, "the merge copied nothing");
        drop(c);
        tokio::time::sleep(Duration::from_millis(300)).await;
        let c = Container::open(0, dir.path(), &o).unwrap();
        spawn(&c, o.tiering.clone());
        assert!(read_all(&c, target).await == expected, "and so after a restart");
        c.seal(target).await.unwrap();
        c.delete(target).await.unwrap();
        let mut left = objects;
        for _ in 0..500 {
            left = t2.list(0).await.unwrap().len();
            if left == 0 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(left, 0, "deleting the target deleted its chunks and the merged source's");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn data_moves_to_tier2_files_are_recycled_under_the_cap_and_everything_survives_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let t2 = Arc::new(Tier2::new(open_url("memory://", None).unwrap(), "store-test", 8 << 20));
        let c = Container::open(0, dir.path(), &opts(&t2)).unwrap();
        spawn(&c, opts(&t2).tiering);
        let segs = ["s/a/0", "s/b/0", "s/c/0"];
        for s in segs {
            c.create(s).await.unwrap();
        }
        // 96 MiB through a log capped at 3 files of 20 MiB: only possible if files are recycled.
        let mut written: Vec<Vec<u8>> = vec![Vec::new(); 3];
        let mut max_files = 0;
        for i in 0..384i64 {
            let k = (i % 3) as usize;
            let body: Vec<u8> = (0..256 * 1024).map(|b| (b as i64 * 7 + i) as u8).collect();
            let data = frame(&[&body]);
            written[k].extend_from_slice(&data);
            c.append(segs[k], "w", i / 3, 1, data).await.unwrap().await.unwrap().unwrap();
            max_files = max_files.max(files(dir.path()));
        }
        assert!(max_files <= 4, "Tier-1 stays within 3 files plus one: saw {max_files}");
        let (t1, t2_bytes) = c.tier_bytes();
        assert!(t2_bytes > 60 << 20, "most data moved to Tier-2 ({t1} in Tier-1, {t2_bytes} in Tier-2)");
        for (k, s) in segs.iter().enumerate() {
            assert!(read_all(&c, s).await == written[k], "segment {s} reads back every byte in order");
        }
        // Truncation and deletion delete chunks.
        let before = t2.list(0).await.unwrap().len();
        let len_a = c.info("s/a/0").unwrap().length;
        let half = (written[0].len() / 2 / nadi_proto::framing::framed_len(256 * 1024)
            * nadi_proto::framing::framed_len(256 * 1024)) as u64;
        c.truncate("s/a/0", half).await.unwrap();
        c.delete("s/b/0").await.unwrap();
        let t2c = t2.clone();
        let mut now = before;
        for _ in 0..300 {
            now = t2c.list(0).await.unwrap().len();
            if now < before * 2 / 3 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(now < before * 2 / 3, "chunks of the deleted and truncated data are gone: {before} -> {now}");
        assert_eq!(c.info("s/a/0").unwrap().length, len_a);
        drop(c);
        wait_for("the writer thread to stop", || files(dir.path()) > 0).await;
        tokio::time::sleep(Duration::from_millis(200)).await;

        // Restart: the chunk index comes back from the checkpoint and the log.
        let c = Container::open(0, dir.path(), &opts(&t2)).unwrap();
        assert!(read_all(&c, "s/c/0").await == written[2]);
        let a = read_all(&c, "s/a/0").await;
        assert!(a[..] == written[0][half as usize..], "the truncated segment reads from its new start");
        assert!(matches!(c.read_any("s/b/0", 0, 10).await, Err(StoreError::SegmentNotFound(_))));
        assert!(matches!(c.read_any("s/a/0", 0, 10).await, Err(StoreError::Truncated { .. })));
    }
}
