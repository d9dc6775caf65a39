//! Keyed load for tests: a writer of `key:seq` events at a steady rate, and the check of a
//! whole stream against what that writer was told.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use nadi_client::{EventWriter, NadiClient, StreamReader, WriterConfig};

use crate::{check_per_key_order, parse_keyed_event};

/// Writes `key:seq` events (each key numbered from 0) at about `rate` per second, keys taken
/// in turn, until stopped. Any write or close error fails the test (through `stop`).
#[derive(Debug)]
pub struct KeyedLoad {
    stop: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<HashMap<String, u64>>,
}

impl KeyedLoad {
    /// Starts writing to `scope/stream` (call inside a tokio runtime).
    pub fn start(client: &NadiClient, scope: &str, stream: &str, keys: Vec<String>, rate: f64) -> KeyedLoad {
        let stop = Arc::new(AtomicBool::new(false));
        let (client, scope, stream, stop2) = (client.clone(), scope.to_owned(), stream.to_owned(), stop.clone());
        let task = tokio::spawn(async move {
            let config = WriterConfig { writer_id: Some(format!("load-{stream}")), ..WriterConfig::default() };
            let writer = EventWriter::new(&client, &scope, &stream, config).await.unwrap();
            let mut next: HashMap<String, u64> = HashMap::new();
            let start = Instant::now();
            let mut n = 0u64;
            let mut tick = tokio::time::interval(Duration::from_millis(10));
            while !stop2.load(Ordering::Relaxed) {
                tick.tick().await;
                let due = (start.elapsed().as_secs_f64() * rate) as u64;
                while n < due {
                    let key = &keys[(n % keys.len() as u64) as usize];
                    let seq = next.entry(key.clone()).or_default();
                    writer.write(Some(key.as_bytes()), Bytes::from(format!("{key}:{seq}"))).await.unwrap();
                    *seq += 1;
                    n += 1;
                }
            }
            writer.close().await.unwrap();
            next
        });
        KeyedLoad { stop, task }
    }

    /// Stops, flushes and closes the writer; returns how many events of each key were
    /// acknowledged.
    pub async fn stop(self) -> HashMap<String, u64> {
        self.stop.store(true, Ordering::Relaxed);
        self.task.await.unwrap()
    }
}

/// Keys `k0`, `k1`, …
pub fn keys(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("k{i}")).collect()
}

/// Reads `scope/stream` from its head and checks it against what was acknowledged (see
/// [`check_per_key_order`]); nothing more may follow.
pub async fn check_stream(client: &NadiClient, scope: &str, stream: &str, expected: &HashMap<String, u64>) {
    let total: u64 = expected.values().sum();
    let mut r = StreamReader::new(client, scope, stream, true).await.unwrap();
    let mut out = Vec::new();
    while out.len() < total as usize {
        match tokio::time::timeout(Duration::from_secs(30), r.next()).await {
            Ok(Some(Ok(ev))) => out.push(parse_keyed_event(&ev.payload)),
            other => panic!("reader stopped after {} of {total} events: {other:?}", out.len()),
        }
    }
    assert!(tokio::time::timeout(Duration::from_millis(300), r.next()).await.is_err(), "an event nobody wrote");
    check_per_key_order(&out, expected, stream);
}

/// Writes one event per key of `keys` to `writer` and waits until all are acknowledged, again
/// and again until a round succeeds (failing the test after 60 s); returns the time since
/// `started`. With keys covering every segment of the writer's stream, a success means every
/// container takes writes again (after a store was killed or cut off).
pub async fn writes_resume(writer: &EventWriter, keys: &[String], started: Instant) -> Duration {
    loop {
        for k in keys {
            writer.write(Some(k.as_bytes()), Bytes::from_static(b"probe")).await.unwrap();
        }
        if tokio::time::timeout(Duration::from_secs(20), writer.flush()).await.is_ok_and(|r| r.is_ok()) {
            return started.elapsed();
        }
        assert!(started.elapsed() < Duration::from_secs(60), "writes did not resume within 60 s");
    }
}
