//! Unit tests of the container: group commit, recovery, reads from both tiers, checkpoints.

use super::*;
use crate::log::mem::MemLog;
use crate::log::{RECORD_HEADER_LEN, RecordKind, Replayer};

/// Recovers a container from `log` as after a crash; `log` then follows the new writer.
fn mem_container(log: &mut MemLog) -> Container {
    mem_container_with(log, &ContainerOptions::default())
}

fn mem_container_with(log: &mut MemLog, opts: &ContainerOptions) -> Container {
    let mut replay = Replay::default();
    let (new_log, report) = log.recover(&mut replay);
    *log = new_log.clone();
    let checkpoint = report.checkpoint.map(|(_, addr)| addr);
    Container::start(0, Box::new(new_log), replay, None, checkpoint, opts)
}

async fn append(c: &Container, seg: &str, writer: &str, last: i64, events: &[&[u8]]) -> Result<AppendAck, StoreError> {
    c.append(seg, writer, last, events.len() as u32, frame(events)).await?.await.unwrap()
}

fn payloads(chunk: &ReadChunk) -> Vec<Vec<u8>> {
    nadi_proto::framing::events(&chunk.data).map(|e| e.unwrap().1.to_vec()).collect()
}

#[tokio::test]
async fn create_append_read_seal() {
    let mut log = MemLog::new(32 << 20);
    let c = mem_container(&mut log);
    assert!(c.create("s/t/0.#epoch.0").await.unwrap());
    assert!(!c.create("s/t/0.#epoch.0").await.unwrap());
    let ack = append(&c, "s/t/0.#epoch.0", "w", 1, &[b"a", b"bb"]).await.unwrap();
    assert_eq!(ack, AppendAck { last_event_number: 1, segment_length: 19 });
    let chunk = c.read("s/t/0.#epoch.0", 0, 1 << 20).unwrap();
    assert_eq!(payloads(&chunk), vec![b"a".to_vec(), b"bb".to_vec()]);
    assert!(!chunk.end_of_segment);
    // Reading from the second event's boundary works; from inside an event does not.
    assert_eq!(payloads(&c.read("s/t/0.#epoch.0", 9, 1 << 20).unwrap()), vec![b"bb".to_vec()]);
    assert!(matches!(c.read("s/t/0.#epoch.0", 3, 1 << 20), Err(StoreError::BadOffset { .. })));
    assert!(matches!(c.read("s/t/0.#epoch.0", 99, 1 << 20), Err(StoreError::BadOffset { .. })));
    assert_eq!(c.seal("s/t/0.#epoch.0").await.unwrap(), 19);
    assert!(matches!(append(&c, "s/t/0.#epoch.0", "w", 2, &[b"c"]).await, Err(StoreError::Sealed(_))));
    assert!(c.read("s/t/0.#epoch.0", 19, 1 << 20).unwrap().end_of_segment);
    assert!(matches!(append(&c, "nope", "w", 0, &[b"c"]).await, Err(StoreError::SegmentNotFound(_))));
}

#[tokio::test]
async fn retries_are_not_stored_twice_even_after_a_crash() {
    let mut log = MemLog::new(32 << 20);
    let c = mem_container(&mut log);
    c.create("x").await.unwrap();
    append(&c, "x", "w", 2, &[b"e0", b"e1", b"e2"]).await.unwrap();
    // The same batch again, and a batch overlapping it: only new events are stored.
    assert_eq!(append(&c, "x", "w", 2, &[b"e0", b"e1", b"e2"]).await.unwrap().last_event_number, 2);
    append(&c, "x", "w", 4, &[b"e2", b"e3", b"e4"]).await.unwrap();
    drop(c);
    let c = mem_container(&mut log);
    assert_eq!(c.writer_state("x", "w").await.unwrap().0, 4);
    assert_eq!(append(&c, "x", "w", 4, &[b"e3", b"e4"]).await.unwrap().last_event_number, 4);
    let all = payloads(&c.read("x", 0, 1 << 20).unwrap());
    assert_eq!(all, ["e0", "e1", "e2", "e3", "e4"].map(|s| s.as_bytes().to_vec()));
    assert_eq!(c.writer_state("x", "other").await.unwrap().0, -1);
}

#[tokio::test]
async fn a_gap_in_event_numbers_is_refused_so_a_lost_batch_is_never_acknowledged() {
    let mut log = MemLog::new(32 << 20);
    let c = mem_container(&mut log);
    c.create("x").await.unwrap();
    append(&c, "x", "w", 1, &[b"e0", b"e1"]).await.unwrap();
    // Events 2..=3 were never stored (say their batch failed); 4..=5 must not be stored
    // either, or a reconnecting writer would take 2..=3 as acknowledged.
    let err = append(&c, "x", "w", 5, &[b"e4", b"e5"]).await.unwrap_err();
    assert!(matches!(err, StoreError::EventNumberGap { expected: 2, got: 4, .. }), "{err}");
    assert_eq!(c.writer_state("x", "w").await.unwrap().0, 1);
    append(&c, "x", "w", 3, &[b"e2", b"e3"]).await.unwrap();
    append(&c, "x", "w", 5, &[b"e4", b"e5"]).await.unwrap();
    let all = payloads(&c.read("x", 0, 1 << 20).unwrap());
    assert_eq!(all.len(), 6);
}

#[tokio::test]
async fn conditional_append_truncate_merge_and_attributes_survive_a_crash() {
    let mut log = MemLog::new(32 << 20);
    let c = mem_container(&mut log);
    c.create("t").await.unwrap();
    c.create("src").await.unwrap();
    // Conditional append: only at the expected length; a mismatch reports the actual one.
    let ack = c.conditional_append("t", 0, 2, frame(&[b"a0", b"a1"])).await.unwrap();
    assert_eq!(ack.segment_length, 20);
    let err = c.conditional_append("t", 0, 1, frame(&[b"x"])).await.unwrap_err();
    assert!(matches!(err, StoreError::OffsetMismatch { expected: 0, actual: 20, .. }), "{err}");
    // Truncate: to an event boundary only; earlier offsets then fail with Truncated.
    assert!(matches!(c.truncate("t", 3).await, Err(StoreError::BadOffset { .. })));
    c.truncate("t", 10).await.unwrap();
    assert!(matches!(c.read("t", 0, 100), Err(StoreError::Truncated { start: 10, .. })));
    assert_eq!(payloads(&c.read("t", 10, 100).unwrap()), vec![b"a1".to_vec()]);
    c.truncate("t", 0).await.unwrap(); // moving backwards changes nothing
    assert_eq!(c.info("t").unwrap().start_offset, 10);
    // Merge: the source must be sealed; its readable bytes follow the target's.
    append(&c, "src", "w", 2, &[b"s0", b"s1", b"s2"]).await.unwrap();
    assert!(matches!(c.merge("t", "src").await, Err(StoreError::NotSealed(_))));
    c.seal("src").await.unwrap();
    c.truncate("src", 10).await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(c.merge("t", "src").await.unwrap(), 20 + 20);
    assert!(matches!(c.info("src"), Err(StoreError::SegmentNotFound(_))));
    // Attributes: compare-and-set.
    c.update_attribute("t", "checkpoint", None, 7).await.unwrap();
    let err = c.update_attribute("t", "checkpoint", None, 8).await.unwrap_err();
    assert!(matches!(err, StoreError::AttributeMismatch { actual: Some(7), .. }), "{err}");
    c.update_attribute("t", "checkpoint", Some(7), 9).await.unwrap();

    let check = |c: &Container| {
        let info = c.info("t").unwrap();
        assert_eq!((info.start_offset, info.length), (10, 40));
        assert_eq!(info.attributes, vec![("checkpoint".to_owned(), 9)]);
        let all = payloads(&c.read("t", 10, 1 << 20).unwrap());
        assert_eq!(all, ["a1", "s1", "s2"].map(|s| s.as_bytes().to_vec()));
    };
    check(&c);
    drop(c);
    let c = mem_container(&mut log);
    check(&c);
    assert!(matches!(c.info("src"), Err(StoreError::SegmentNotFound(_))));
}

#[tokio::test]
async fn truncate_refuses_a_segment_deleted_and_created_again_after_the_check() {
    let mut log = MemLog::new(32 << 20);
    let c = mem_container(&mut log);
    c.create("x").await.unwrap();
    append(&c, "x", "w", 1, &[b"old-0", b"old-1"]).await.unwrap();
    // The check passes for the first incarnation (13 is the boundary after "old-0") ...
    let checked = c.check_truncate("x", 13).await.unwrap();
    // ... then the name is deleted and created again, with other events, before the writer
    // gets the truncation.
    c.delete("x").await.unwrap();
    c.create("x").await.unwrap();
    append(&c, "x", "w", 0, &[b"new-event-0"]).await.unwrap();
    let err = c.truncate_checked("x", checked, 13).await.unwrap_err();
    assert!(matches!(err, StoreError::SegmentReplaced(_)), "{err}");
    assert_eq!(err.code(), nadi_proto::ErrorCode::SegmentNotFound);
    // The new segment was not touched, here or after a restart.
    assert_eq!(c.info("x").unwrap().start_offset, 0);
    drop(c);
    let c = mem_container(&mut log);
    assert_eq!(c.info("x").unwrap().start_offset, 0);
    assert_eq!(payloads(&c.read("x", 0, 100).unwrap()), vec![b"new-event-0".to_vec()]);
    // A truncation checked against the current incarnation goes through.
    c.truncate("x", 19).await.unwrap();
    assert_eq!(c.info("x").unwrap().start_offset, 19);
}

#[tokio::test]
async fn queued_bytes_stay_within_the_limit_while_the_disk_stalls() {
    let mut log = MemLog::new(32 << 20);
    let limit = 1u64 << 20;
    let c = mem_container_with(&mut log, &ContainerOptions { queue_bytes: limit, ..Default::default() });
    c.create("x").await.unwrap();
    // The disk stalls: the writer thread takes the first group and waits in `sync`.
    log.hold_syncs();
    let body = vec![7u8; 100 << 10];
    let batch = frame(&[&body]);
    let cost = ops::append_size("w", batch.len()) as u64 + 1;
    let mut acks = Vec::new();
    let mut stalled = None;
    for i in 0..1000i64 {
        // Polled once: an append either is queued at once or waits for room.
        let mut queued = Box::pin(c.append("x", "w", i, 1, batch.clone()));
        match futures::poll!(queued.as_mut()) {
            std::task::Poll::Ready(ack) => acks.push(ack.unwrap()),
            std::task::Poll::Pending => {
                stalled = Some(queued);
                break;
            }
        }
        assert!(c.queued_bytes() <= limit, "{} bytes queued", c.queued_bytes());
    }
    let mut stalled = stalled.expect("appends stall once the limit is reached");
    // Exactly as many appends were accepted as fit in the limit, and none is answered.
    // (The create's permit, 17 bytes, may still be held a moment after its answer.)
    assert_eq!(acks.len() as u64, limit / cost);
    assert!(c.queued_bytes() >= acks.len() as u64 * cost && c.queued_bytes() <= limit);
    for ack in &mut acks {
        assert!(matches!(ack.try_recv(), Err(oneshot::error::TryRecvError::Empty)));
    }
    assert!(futures::poll!(stalled.as_mut()).is_pending(), "still no room while the disk stalls");
    // The disk catches up: the stalled append is queued, and everything is acknowledged in
    // order and readable.
    log.release_syncs();
    acks.push(stalled.await.unwrap());
    for (i, ack) in acks.into_iter().enumerate() {
        assert_eq!(ack.await.unwrap().unwrap().last_event_number, i as i64);
    }
    let n = c.info("x").unwrap().length / batch.len() as u64;
    assert_eq!(n, limit / cost + 1);
    // A single request larger than the whole limit waits for an empty queue, not forever.
    let big = vec![1u8; 2 << 20];
    append(&c, "x", "w", n as i64, &[&big]).await.unwrap();
}

#[tokio::test]
async fn reads_are_cut_at_event_boundaries_and_deleted_segments_vanish() {
    let mut log = MemLog::new(32 << 20);
    let c = mem_container(&mut log);
    c.create("x").await.unwrap();
    let big = vec![7u8; 1000];
    for i in 0..10 {
        append(&c, "x", "w", i, &[&big]).await.unwrap();
    }
    let chunk = c.read("x", 0, 2500).unwrap();
    assert_eq!(payloads(&chunk).len(), 2, "two 1008-byte events fit in 2500 bytes");
    let chunk = c.read("x", 0, 10).unwrap();
    assert_eq!(payloads(&chunk).len(), 1, "at least one event even if it exceeds the limit");
    c.delete("x").await.unwrap();
    assert!(matches!(c.read("x", 0, 10), Err(StoreError::SegmentNotFound(_))));
    drop(c);
    let c = mem_container(&mut log);
    assert!(matches!(c.info("x"), Err(StoreError::SegmentNotFound(_))));
    assert!(c.create("x").await.unwrap(), "a deleted name can be created again");
}

// ---- Checkpoints, on the real file log ----

use crate::log::file::MIN_FILE_SIZE;
use crate::log::{Header, RecoveryReport, decode_header, record_len};

fn file_opts(checkpoint_interval: u64) -> ContainerOptions {
    ContainerOptions {
        log: FileLogOptions { file_size: MIN_FILE_SIZE, ..Default::default() },
        checkpoint_interval,
        ..Default::default()
    }
}

/// Waits until the writer thread has finished everything queued (including a checkpoint
/// that the last group triggered), then drops the container.
async fn close(c: Container) {
    let _ = c.writer_state("", "").await;
    c.close().await;
}

/// Recovers the log in `dir` twice, without starting a container: by full replay, and
/// from the newest checkpoint.
fn replay_both(dir: &Path) -> ((Replay, RecoveryReport), (Replay, RecoveryReport)) {
    let opts = file_opts(u64::MAX).log;
    let mut full = Replay::default();
    let (log, full_report) = FileLog::open(dir, opts.clone(), &mut |r| full.record(r)).unwrap();
    drop(log);
    let mut from_cp = Replay::default();
    let (log, cp_report) = FileLog::recover(dir, opts, &mut from_cp).unwrap();
    drop(log);
    ((full, full_report), (from_cp, cp_report))
}

/// Every record in log file 1: (header offset, header).
fn records_in(dir: &Path) -> Vec<(u64, Header)> {
    let bytes = std::fs::read(dir.join(format!("log-{:020}.log", 1))).unwrap();
    let mut out = Vec::new();
    let mut pos = 0usize;
    while let Some(h) = bytes.get(pos..).and_then(decode_header) {
        out.push((pos as u64, h));
        pos += record_len(h.len);
    }
    out
}

fn flip_byte(dir: &Path, at: u64) {
    use std::os::unix::fs::FileExt;
    let f = std::fs::OpenOptions::new().read(true).write(true).open(dir.join(format!("log-{:020}.log", 1))).unwrap();
    let mut b = [0u8; 1];
    f.read_exact_at(&mut b, at).unwrap();
    f.write_all_at(&[b[0] ^ 0x10], at).unwrap();
}

/// What a client can observe of every segment: info and all readable events.
fn observe(c: &Container, names: &[&str]) -> Vec<Option<(SegmentInfo, Vec<Vec<u8>>)>> {
    names
        .iter()
        .map(|n| {
            let info = c.info(n).ok()?;
            let mut events = Vec::new();
            let mut at = info.start_offset;
            while at < info.length {
                let chunk = c.read(n, at, 1 << 20).unwrap();
                at += chunk.data.len() as u64;
                events.extend(payloads(&chunk));
            }
            Some((info, events))
        })
        .collect()
}

const NAMES: [&str; 5] = ["s/a", "s/b", "s/c", "s/src", "s/gone"];

/// A mix of every kind of operation, over several groups: `round` makes each call differ.
async fn workload(c: &Container, round: i64) {
    for n in NAMES {
        c.create(n).await.unwrap();
    }
    for i in 0..40i64 {
        let seg = NAMES[(i % 3) as usize];
        let writer = format!("w{}", i % 4);
        let last = c.writer_state(seg, &writer).await.unwrap().0;
        let body = vec![b'a' + (i % 26) as u8; 10 + (i as usize * 37 + round as usize) % 900];
        append(c, seg, &writer, last + 2, &[&body, format!("r{round}-{i}").as_bytes()]).await.unwrap();
    }
    let len = c.info("s/c").unwrap().length;
    c.conditional_append("s/c", len, 1, frame(&[b"conditional"])).await.unwrap();
    c.update_attribute("s/a", &format!("k{round}"), None, round as u64).await.unwrap();
    append(c, "s/src", "m", 0, &[format!("to-merge-{round}").as_bytes()]).await.unwrap();
    c.seal("s/src").await.unwrap();
    c.merge("s/b", "s/src").await.unwrap();
    // Truncate "s/a" at its second event.
    let first = c.read("s/a", c.info("s/a").unwrap().start_offset, 1).unwrap();
    c.truncate("s/a", first.offset + first.data.len() as u64).await.unwrap();
    c.delete("s/gone").await.unwrap();
}

#[tokio::test]
async fn recovery_from_a_checkpoint_gives_the_same_state_as_a_full_replay() {
    let dir = tempfile::tempdir().unwrap();
    // Small interval: checkpoints are written on their own, many times.
    let c = Container::open(0, dir.path(), &file_opts(16 << 10)).unwrap();
    workload(&c, 1).await;
    // Later rounds re-create deleted names, so local ids and merges cross checkpoints.
    workload(&c, 2).await;
    c.checkpoint().await.unwrap();
    workload(&c, 3).await;
    let before = observe(&c, &NAMES);
    close(c).await;

    let records = records_in(dir.path());
    let checkpoints = records.iter().filter(|(_, h)| h.kind == RecordKind::Checkpoint).count();
    assert!(checkpoints > 3, "periodic checkpoints were written ({checkpoints})");
    let ((full, full_report), (from_cp, cp_report)) = replay_both(dir.path());
    let (cp_lsn, _) = cp_report.checkpoint.expect("recovery started from a checkpoint");
    assert!(cp_lsn > records.len() as u64 / 2, "from a recent checkpoint: lsn {cp_lsn} of {}", records.len());
    assert_eq!(full_report.last_lsn, cp_report.last_lsn);
    assert!(full.error.is_none() && from_cp.error.is_none());
    assert_eq!(from_cp.durable, full.durable, "segments, writers, attributes and read index");
    assert_eq!(from_cp.written, full.written, "the writer's view, including the next local id");

    let c = Container::open(0, dir.path(), &file_opts(16 << 10)).unwrap();
    assert_eq!(observe(&c, &NAMES), before, "what clients see is unchanged");
    // Exactly-once state survived: a retry is acknowledged without being stored again.
    let (last, len) = c.writer_state("s/a", "w0").await.unwrap();
    append(&c, "s/a", "w0", last, &[b"retry"]).await.unwrap();
    assert_eq!(c.info("s/a").unwrap().length, len);
    close(c).await;
}

#[tokio::test]
async fn damage_before_the_checkpoint_is_reported_on_read_and_never_served() {
    let dir = tempfile::tempdir().unwrap();
    let c = Container::open(0, dir.path(), &file_opts(u64::MAX)).unwrap();
    c.create("a").await.unwrap();
    c.create("b").await.unwrap();
    for i in 0..4 {
        append(&c, "a", "w", i, &[format!("a{i}").as_bytes()]).await.unwrap();
    }
    append(&c, "b", "w", 0, &[b"b0"]).await.unwrap();
    c.checkpoint().await.unwrap();
    append(&c, "a", "w", 4, &[b"a4"]).await.unwrap();
    // The bytes of the second append to "a" (a1), and the record holding them.
    let victim = c.shared.durable.read().segments["a"].index[1];
    close(c).await;
    let header = victim.record().pos - RECORD_HEADER_LEN as u64;
    flip_byte(dir.path(), victim.addr.pos + 5);

    // The damage is before the checkpoint: start-up does not read it ...
    let c = Container::open(0, dir.path(), &file_opts(u64::MAX)).unwrap();
    assert!(c.shared.damage.is_none());
    // ... but no read returns those bytes, now or later.
    let file = format!("log-{:020}.log", 1);
    for _ in 0..2 {
        let err = c.read("a", victim.offset, 1 << 20).unwrap_err();
        assert_eq!(err.code(), nadi_proto::ErrorCode::Corrupt);
        let msg = err.to_string();
        assert!(msg.contains(&file) && msg.contains(&format!("offset {header}")), "names file and offset: {msg}");
        // A read that starts before the damage stops right before it.
        let chunk = c.read("a", 0, 1 << 20).unwrap();
        assert_eq!(payloads(&chunk), vec![b"a0".to_vec()]);
        assert_eq!(chunk.offset + chunk.data.len() as u64, victim.offset);
    }
    // Undamaged records, before and after the checkpoint, are served.
    assert_eq!(payloads(&c.read("a", 0, 1).unwrap()), vec![b"a0".to_vec()]);
    let after = victim.offset + victim.len as u64;
    assert_eq!(payloads(&c.read("a", after, 1 << 20).unwrap()), ["a2", "a3", "a4"].map(|s| s.as_bytes().to_vec()));
    assert_eq!(payloads(&c.read("b", 0, 1 << 20).unwrap()), vec![b"b0".to_vec()]);
    // The container keeps taking writes.
    append(&c, "a", "w", 5, &[b"a5"]).await.unwrap();
    close(c).await;
}

#[tokio::test]
async fn a_damaged_or_torn_checkpoint_falls_back_without_losing_acknowledged_data() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_owned();
    let c = Container::open(0, &path, &file_opts(u64::MAX)).unwrap();
    workload(&c, 1).await;
    let cp1 = c.checkpoint().await.unwrap();
    workload(&c, 2).await;
    let cp2 = c.checkpoint().await.unwrap();
    workload(&c, 3).await;
    let acknowledged = observe(&c, &NAMES);
    close(c).await;
    let ((full, _), _) = replay_both(&path);
    let log_file = path.join(format!("log-{:020}.log", 1));
    let pristine = std::fs::read(&log_file).unwrap();
    let pointer = std::fs::read(path.join("checkpoint")).unwrap();
    let (cp2_pos, cp2_header) = *records_in(&path).iter().find(|(_, h)| h.lsn == cp2).unwrap();
    assert_eq!(cp2_header.kind, RecordKind::Checkpoint);

    // 1. The newest checkpoint is damaged: recovery starts from the one before, steps
    //    over the damaged record and replays everything after it.
    flip_byte(&path, cp2_pos + RECORD_HEADER_LEN as u64 + 3);
    let mut replay = Replay::default();
    let (log, report) = FileLog::recover(&path, file_opts(u64::MAX).log, &mut replay).unwrap();
    drop(log);
    assert_eq!(report.checkpoint.map(|(lsn, _)| lsn), Some(cp1));
    assert_eq!(report.bad_checkpoints.iter().map(|b| (b.lsn, b.offset)).collect::<Vec<_>>(), vec![(cp2, cp2_pos)]);
    assert!(report.corruption.is_none() && report.torn_tail.is_none());
    assert_eq!((replay.durable, replay.written), (full.durable, full.written));
    let c = Container::open(0, &path, &file_opts(u64::MAX)).unwrap();
    assert_eq!(observe(&c, &NAMES), acknowledged);
    // Writes go on after the damaged checkpoint, and survive another restart.
    append(&c, "s/b", "late", 0, &[b"late"]).await.unwrap();
    let later = observe(&c, &NAMES);
    close(c).await;
    let c = Container::open(0, &path, &file_opts(u64::MAX)).unwrap();
    assert_eq!(observe(&c, &NAMES), later);
    // A newer checkpoint that gets damaged too: recovery goes back to the first one and
    // steps over both damaged ones (the pointer file remembers the older one).
    let cp4 = c.checkpoint().await.unwrap();
    append(&c, "s/b", "late", 1, &[b"later"]).await.unwrap();
    let latest = observe(&c, &NAMES);
    close(c).await;
    let (cp4_pos, _) = *records_in(&path).iter().find(|(_, h)| h.lsn == cp4).unwrap();
    flip_byte(&path, cp4_pos + RECORD_HEADER_LEN as u64 + 3);
    let mut replay = Replay::default();
    let (log, report) = FileLog::recover(&path, file_opts(u64::MAX).log, &mut replay).unwrap();
    drop(log);
    assert_eq!(report.checkpoint.map(|(lsn, _)| lsn), Some(cp1));
    assert!(report.corruption.is_none() && report.torn_tail.is_none());
    let c = Container::open(0, &path, &file_opts(u64::MAX)).unwrap();
    assert_eq!(observe(&c, &NAMES), latest);
    close(c).await;

    // 2. A checkpoint torn by a crash: written but not durable, so the pointer file still
    //    names the earlier ones. Recovery cuts it as a torn tail.
    std::fs::write(&log_file, &pristine).unwrap();
    std::fs::write(path.join("checkpoint"), &pointer).unwrap();
    let c = Container::open(0, &path, &file_opts(u64::MAX)).unwrap();
    let cp3 = c.checkpoint().await.unwrap();
    close(c).await;
    std::fs::write(path.join("checkpoint"), &pointer).unwrap();
    let (cp3_pos, cp3_header) = *records_in(&path).iter().find(|(_, h)| h.lsn == cp3).unwrap();
    let mut torn = std::fs::read(&log_file).unwrap();
    let cut = (cp3_pos as usize) + (RECORD_HEADER_LEN + cp3_header.len) / 2;
    torn[cut..cut + 64].fill(0xEE);
    torn.truncate(cut + 64);
    std::fs::write(&log_file, &torn).unwrap();
    let mut replay = Replay::default();
    let (log, report) = FileLog::recover(&path, file_opts(u64::MAX).log, &mut replay).unwrap();
    drop(log);
    assert_eq!(report.checkpoint.map(|(lsn, _)| lsn), Some(cp2));
    assert_eq!(report.torn_tail.map(|t| t.offset), Some(cp3_pos));
    assert!(report.corruption.is_none());
    let c = Container::open(0, &path, &file_opts(u64::MAX)).unwrap();
    assert_eq!(observe(&c, &NAMES), acknowledged);
    close(c).await;

    // 3. No usable pointer file: the newest checkpoint is found by walking the headers.
    std::fs::write(path.join("checkpoint"), b"garbage").unwrap();
    let ((full, _), (from_cp, report)) = replay_both(&path);
    assert_eq!(report.checkpoint.map(|(lsn, _)| lsn), Some(cp2));
    assert_eq!((from_cp.durable, from_cp.written), (full.durable, full.written));
    std::fs::remove_file(path.join("checkpoint")).unwrap();
    let c = Container::open(0, &path, &file_opts(u64::MAX)).unwrap();
    assert_eq!(observe(&c, &NAMES), acknowledged);
    close(c).await;
}

fn raft_opts(checkpoint_interval: u64) -> ContainerOptions {
    ContainerOptions { replication: Some(Default::default()), ..file_opts(checkpoint_interval) }
}

/// A container run as a one-voter consensus group answers and stores exactly what a
/// single-copy container does for the same requests, writes only Raft entries (and
/// checkpoints), and after a restart serves the same state, exactly-once writer state included.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_raft_container_keeps_what_a_single_copy_container_keeps() {
    let (single_dir, raft_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let single = Container::open(0, single_dir.path(), &file_opts(16 << 10)).unwrap();
    let raft = Container::open(0, raft_dir.path(), &raft_opts(16 << 10)).unwrap();
    for round in 1..=3 {
        workload(&single, round).await;
        workload(&raft, round).await;
        if round == 2 {
            single.checkpoint().await.unwrap();
            raft.checkpoint().await.unwrap();
        }
    }
    let expected = observe(&single, &NAMES);
    assert_eq!(observe(&raft, &NAMES), expected, "the same requests, the same state");
    close(single).await;
    close(raft).await;

    let records = records_in(raft_dir.path());
    let count = |k: RecordKind| records.iter().filter(|(_, h)| h.kind == k).count();
    assert_eq!(count(RecordKind::Batch), 0, "a raft container writes entries, not batches");
    assert!(count(RecordKind::Entry) > 40, "one entry per group: {}", count(RecordKind::Entry));
    assert!(count(RecordKind::Checkpoint) > 3, "periodic checkpoints: {}", count(RecordKind::Checkpoint));

    let raft = Container::open(0, raft_dir.path(), &raft_opts(16 << 10)).unwrap();
    assert_eq!(observe(&raft, &NAMES), expected, "after a restart");
    // Exactly-once state survived: a retry is acknowledged without being stored again.
    let (last, len) = raft.writer_state("s/a", "w0").await.unwrap();
    append(&raft, "s/a", "w0", last, &[b"retry"]).await.unwrap();
    assert_eq!(raft.info("s/a").unwrap().length, len);
    close(raft).await;
}

/// A single-copy container's log opens as a raft container (its records are committed and
/// applied as they are), and a raft container's log is refused by a single-copy container,
/// with the setting to use, instead of being opened without its entries.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_single_copy_log_opens_as_raft_and_not_back() {
    let dir = tempfile::tempdir().unwrap();
    let c = Container::open(0, dir.path(), &file_opts(16 << 10)).unwrap();
    workload(&c, 1).await;
    let before = observe(&c, &NAMES);
    close(c).await;

    let c = Container::open(0, dir.path(), &raft_opts(16 << 10)).unwrap();
    assert_eq!(observe(&c, &NAMES), before, "single-copy data, opened as raft");
    workload(&c, 2).await;
    let after = observe(&c, &NAMES);
    close(c).await;
    let c = Container::open(0, dir.path(), &raft_opts(16 << 10)).unwrap();
    assert_eq!(observe(&c, &NAMES), after, "both kinds of records, after a restart");
    close(c).await;

    let err = Container::open(0, dir.path(), &file_opts(16 << 10)).unwrap_err();
    assert!(err.to_string().contains("--container-log raft"), "{err}");
    // Refusing changed nothing: it still opens as raft, with everything.
    let c = Container::open(0, dir.path(), &raft_opts(16 << 10)).unwrap();
    assert_eq!(observe(&c, &NAMES), after);
    close(c).await;
}
