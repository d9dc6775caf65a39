//! Adaptive batching in the writer: while a batch is in flight, events fill the next one
//! instead of going out an event or two at a time, and nothing is lost, doubled or reordered.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use nadi_client::{AckObserver, EventWriter, NadiClient, StreamReader, StreamSpec, WriterConfig};
use nadi_tests::Standalone;

/// Counts acknowledged batches and events.
#[derive(Default)]
struct Acks {
    batches: AtomicU64,
    events: AtomicU64,
}

impl AckObserver for Acks {
    fn acked(&self, written_at: &[Instant], _now: Instant) {
        self.batches.fetch_add(1, Ordering::Relaxed);
        self.events.fetch_add(written_at.len() as u64, Ordering::Relaxed);
    }
}

fn event(i: u64) -> Bytes {
    Bytes::from(format!("event-{i:06}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_written_while_a_batch_is_in_flight_fill_the_next_batch_and_arrive_once_in_order() {
    const N: u64 = 20_000;
    let dir = tempfile::tempdir().unwrap();
    let server = Standalone::start(dir.path());
    let client = NadiClient::new(std::slice::from_ref(&server.controller_url)).unwrap();
    client.create_scope("batch").await.unwrap();
    client.create_stream("batch", "s", StreamSpec::fixed(1)).await.unwrap();

    let acks = Arc::new(Acks::default());
    let cfg = WriterConfig { observer: Some(acks.clone()), ..WriterConfig::default() };
    let writer = EventWriter::new(&client, "batch", "s", cfg).await.unwrap();
    for i in 0..N {
        writer.write(Some(b"one-key"), event(i)).await.unwrap();
    }
    // A flush sends the open batch at once, whatever is in flight.
    tokio::time::timeout(Duration::from_secs(30), writer.flush()).await.expect("flush returns").unwrap();
    assert_eq!(acks.events.load(Ordering::Relaxed), N, "every event acknowledged once");
    let batches = acks.batches.load(Ordering::Relaxed);
    eprintln!("{N} events in {batches} batches");
    // Each batch takes a round trip with an fsync, far longer than writing an event: the
    // events written meanwhile go out together.
    assert!(batches * 20 <= N, "{batches} batches for {N} events: fewer than 20 events per batch");

    // One more event after a pause (nothing in flight) goes out alone, and close flushes it.
    writer.write(Some(b"one-key"), event(N)).await.unwrap();
    writer.close().await.unwrap();
    assert_eq!(acks.events.load(Ordering::Relaxed), N + 1);

    let mut reader = StreamReader::new(&client, "batch", "s", true).await.unwrap();
    let read = async {
        let mut seen = Vec::new();
        while (seen.len() as u64) < N + 1 {
            seen.push(reader.next().await.expect("the reader ends only after the events").unwrap().payload);
        }
        seen
    };
    let seen = tokio::time::timeout(Duration::from_secs(30), read).await.expect("all events read within 30 s");
    for (i, p) in seen.iter().enumerate() {
        assert_eq!(*p, event(i as u64), "event {i}");
    }
    drop(reader);
    server.stop();
}
