//! Crash test: the real binary under continuous load from several writers is killed with
//! SIGKILL at random moments, 20 times. After every restart, each event a writer was told is
//! durable (its `flush()` returned Ok) must be present exactly once, in per-writer order and
//! byte-identical; events not acknowledged must be either wholly present or absent. Every other
//! run of the server writes metadata checkpoints every 256 KiB, so kills also land while
//! checkpoints and their pointer file are being written, and recoveries start from them.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use bytes::Bytes;
use nadi_client::{EventWriter, NadiClient, StreamSpec, WriterConfig};
use nadi_proto::framing;
use nadi_proto::segment::v1 as pb;
use nadi_proto::segment::v1::segment_store_client::SegmentStoreClient;
use nadi_tests::Standalone;
use rand::Rng;
use tokio_stream::StreamExt;

const WRITERS: u32 = 4;
const CYCLES: u32 = 20;

/// The payload of event `seq` of writer `w` in `cycle`: a readable header and deterministic
/// filler of a size that varies with the event, so byte-identity is checkable.
fn payload(w: u32, cycle: u32, seq: u64) -> Vec<u8> {
    let mut p = format!("w{w}:{cycle}:{seq}:").into_bytes();
    let len = (seq.wrapping_mul(2654435761) % 1500) as usize;
    p.extend((0..len).map(|i| b'a' + ((i as u64 + seq + w as u64) % 26) as u8));
    p
}

fn parse(p: &[u8]) -> (u32, u32, u64) {
    let text = std::str::from_utf8(&p[..p.len().min(40)]).unwrap_or("");
    let mut it = text.splitn(4, ':');
    let w = it.next().and_then(|s| s.strip_prefix('w')).and_then(|s| s.parse().ok());
    let c = it.next().and_then(|s| s.parse().ok());
    let s = it.next().and_then(|s| s.parse().ok());
    match (w, c, s) {
        (Some(w), Some(c), Some(s)) => (w, c, s),
        _ => panic!("unparseable event {:?}", String::from_utf8_lossy(&p[..p.len().min(60)])),
    }
}

/// Writes until stopped; returns how many events of this cycle were acknowledged.
async fn writer_loop(client: NadiClient, w: u32, cycle: u32, acked: std::sync::Arc<std::sync::atomic::AtomicU64>) {
    let cfg = WriterConfig { writer_id: Some(format!("writer-{w}")), max_reconnects: 0, ..Default::default() };
    let Ok(writer) = EventWriter::new(&client, "crash", "load", cfg).await else { return };
    let key = format!("key-{w}");
    let mut seq = 0u64;
    loop {
        let group = rand::rng().random_range(1..40);
        for _ in 0..group {
            if writer.write(Some(key.as_bytes()), Bytes::from(payload(w, cycle, seq))).await.is_err() {
                return;
            }
            seq += 1;
        }
        if writer.flush().await.is_err() {
            return;
        }
        acked.store(seq, std::sync::atomic::Ordering::SeqCst);
    }
}

/// Reads every segment of the stream to its current end.
async fn read_everything(s: &Standalone, client: &NadiClient) -> Vec<Bytes> {
    let segs = client.active_segments("crash", "load").await.expect("active segments");
    let mut store = SegmentStoreClient::connect(s.segment_url.clone()).await.expect("connect store");
    let mut events = Vec::new();
    for loc in segs.segments {
        let name = loc.segment.unwrap().qualified_name;
        let req = pb::ReadRequest { segment: name, offset: 0, follow: false, max_bytes_per_message: 0 };
        let mut stream = store.read(req).await.expect("read").into_inner();
        while let Some(msg) = stream.next().await {
            let msg = msg.expect("read message");
            for ev in framing::events(&msg.data) {
                events.push(ev.expect("well-framed event").1);
            }
        }
    }
    events
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_events_survive_kill_9_exactly_once_in_order() {
    kill_cycles(CYCLES, &[]).await;
}

/// The same while the storage writer moves data to Tier-2 all the time (tiny chunks, no
/// waiting) and Tier-1 files are recycled under a capacity: kills land during uploads, between
/// an upload and its record, and while files are recycled. No chunk may be lost or counted
/// twice: every acknowledged event is read exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_events_survive_kill_9_during_uploads_to_tier2() {
    let flags = [
        "--containers",
        "2",
        "--log-file-size",
        "20MiB",
        "--tier1-capacity",
        "120MiB",
        "--tier2-chunk-size",
        "64KiB",
        "--tier2-max-age",
        "50ms",
    ];
    let dir = kill_cycles(10, &flags).await;
    // Every chunk in Tier-2 is one the index refers to, and the data read back covered them.
    let chunks = walk(&dir.path().join("tier2")).iter().filter(|p| p.extension().is_some_and(|e| e == "chunk")).count();
    assert!(chunks > 0, "data moved to Tier-2 during the run");
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                out.extend(walk(&p));
            } else {
                out.push(p);
            }
        }
    }
    out
}

/// Runs `cycles` kill -9 cycles with `base` flags on every start; returns the data directory.
async fn kill_cycles(cycles: u32, base: &[&str]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let mut server = Standalone::start_with(dir.path(), base);
    let client = NadiClient::new(std::slice::from_ref(&server.controller_url)).unwrap();
    client.create_scope("crash").await.unwrap();
    client.create_stream("crash", "load", StreamSpec::fixed(4)).await.unwrap();

    // acked[(writer, cycle)] = number of events of that cycle acknowledged.
    let mut acked: HashMap<(u32, u32), u64> = HashMap::new();
    let started = Instant::now();
    let mut total_checked = 0usize;
    for cycle in 0..cycles {
        let client = NadiClient::new(std::slice::from_ref(&server.controller_url)).unwrap();
        let counters: Vec<_> =
            (0..WRITERS).map(|_| std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0))).collect();
        let tasks: Vec<_> = (0..WRITERS)
            .map(|w| tokio::spawn(writer_loop(client.clone(), w, cycle, counters[w as usize].clone())))
            .collect();
        let delay = rand::rng().random_range(150..700);
        tokio::time::sleep(Duration::from_millis(delay)).await;
        // Snapshot what was acknowledged *before* the kill: anything acknowledged is durable.
        for (w, c) in counters.iter().enumerate() {
            acked.insert((w as u32, cycle), c.load(std::sync::atomic::Ordering::SeqCst));
        }
        server.kill9();
        for t in &tasks {
            t.abort();
        }
        let mut flags = base.to_vec();
        if cycle % 2 == 0 {
            flags.extend(["--checkpoint-interval", "256KiB"]);
        }
        server = Standalone::start_with(dir.path(), &flags);
        let client = NadiClient::new(std::slice::from_ref(&server.controller_url)).unwrap();
        let events = read_everything(&server, &client).await;
        total_checked = events.len();

        // Per writer: (cycle, seq) strictly increasing, every payload byte-identical.
        let mut per_writer: BTreeMap<u32, Vec<(u32, u64)>> = BTreeMap::new();
        for ev in &events {
            let (w, c, seq) = parse(ev);
            assert_eq!(&ev[..], &payload(w, c, seq)[..], "event w{w}:{c}:{seq} is not byte-identical");
            per_writer.entry(w).or_default().push((c, seq));
        }
        for (w, list) in &per_writer {
            for pair in list.windows(2) {
                assert!(pair[0] < pair[1], "writer {w}: {:?} then {:?} (duplicate or out of order)", pair[0], pair[1]);
            }
        }
        // Every acknowledged event is there.
        for (&(w, c), &n) in &acked {
            let present = per_writer.get(&w).map(|l| l.iter().filter(|(cc, _)| *cc == c).count() as u64).unwrap_or(0);
            assert!(present >= n, "writer {w} cycle {c}: {n} events acknowledged but only {present} survived");
            // Events of a cycle that are present form a prefix 0..present (no holes).
            if let Some(l) = per_writer.get(&w) {
                let seqs: Vec<u64> = l.iter().filter(|(cc, _)| *cc == c).map(|(_, s)| *s).collect();
                assert!(
                    seqs.iter().enumerate().all(|(i, s)| *s == i as u64),
                    "writer {w} cycle {c}: a hole in {seqs:?}"
                );
            }
        }
    }
    let acked_total: u64 = acked.values().sum();
    eprintln!(
        "crash test: {cycles} kill -9 cycles in {:.1}s, {acked_total} acknowledged events, {total_checked} events present at the end",
        started.elapsed().as_secs_f64()
    );
    assert!(acked_total > 0, "the load never got an acknowledgement: the test proved nothing");
    server.stop();
    dir
}
