//! A writer's close racing a scale: many keyed appends are queued while the stream is scaled
//! three times (random splits and merges), then the writer is closed while two more scales
//! land at a random moment around `close()`. The scales seal segments while their events are
//! in flight, so the writer re-routes them to the successors while `close()` runs.
//!
//! Checked in every round: `close()` succeeds; no writer task is alive once it has returned
//! (`nadi_client::test_hooks`, enabled by this crate's `test-hooks` feature of
//! `nadi-client`); and a reader from the head reads every acknowledged event exactly once,
//! each key's events in the order written.

use std::collections::HashMap;
use std::time::Duration;

use bytes::Bytes;
use nadi_client::nadi_proto::controller::v1 as pb;
use nadi_client::{EventWriter, NadiClient, StreamReader, StreamSpec, WriterConfig, test_hooks};
use nadi_tests::{Standalone, check_per_key_order, parse_keyed_event};
use rand::Rng;

const ROUNDS: usize = 24;
const EVENTS: u64 = 3000;
const KEYS: u64 = 24;

/// One random scale of `scope/stream`: splits a segment in two, or merges two neighbours.
async fn scale_once(client: &NadiClient, scope: &str, stream: &str) {
    let info = client.stream_info(scope, stream).await.expect("stream info");
    let segs = &info.active_segments;
    let (sealed, new_ranges) = if segs.len() < 2 || (segs.len() < 6 && rand::rng().random_bool(0.6)) {
        let s = &segs[rand::rng().random_range(0..segs.len())];
        let mid = (s.key_low + s.key_high) / 2.0;
        (vec![s.id], vec![pb::KeyRange { low: s.key_low, high: mid }, pb::KeyRange { low: mid, high: s.key_high }])
    } else {
        let i = rand::rng().random_range(0..segs.len() - 1);
        (vec![segs[i].id, segs[i + 1].id], vec![pb::KeyRange { low: segs[i].key_low, high: segs[i + 1].key_high }])
    };
    let req = pb::ScaleStreamRequest {
        scope: scope.to_owned(),
        stream: stream.to_owned(),
        sealed_segment_ids: sealed,
        new_ranges,
    };
    client.scale_stream(req).await.expect("scale");
}

#[test]
fn close_racing_a_scale_keeps_per_key_order_and_leaves_no_task() {
    let dir = tempfile::tempdir().unwrap();
    let s = Standalone::start(dir.path());
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let _guard = rt.enter();
    let client = NadiClient::new(std::slice::from_ref(&s.controller_url)).unwrap();
    rt.block_on(async {
        client.create_scope("race").await.unwrap();
        for round in 0..ROUNDS {
            let stream = format!("r{round}");
            client.create_stream("race", &stream, StreamSpec::fixed(2)).await.unwrap();
            // Small batches: many of them in flight when the segments are sealed.
            let config =
                WriterConfig { max_batch_bytes: 512, queue_len: 16, max_in_flight: 4, ..WriterConfig::default() };
            let writer = EventWriter::new(&client, "race", &stream, config).await.unwrap();
            // The first scale lands among the writes, the second one around close().
            let (scaled_tx, mut scaled_rx) = tokio::sync::oneshot::channel();
            let (closing_tx, closing_rx) = tokio::sync::oneshot::channel::<()>();
            let delay = Duration::from_millis(rand::rng().random_range(0..30));
            let scale = tokio::spawn({
                let (client, stream) = (client.clone(), stream.clone());
                async move {
                    for _ in 0..3 {
                        scale_once(&client, "race", &stream).await;
                    }
                    let _ = scaled_tx.send(());
                    let _ = closing_rx.await;
                    tokio::time::sleep(delay).await;
                    for _ in 0..2 {
                        scale_once(&client, "race", &stream).await;
                    }
                }
            });
            let mut next: HashMap<String, u64> = HashMap::new();
            let mut total = 0u64;
            let mut write = async |n: u64| {
                for _ in 0..n {
                    let key = format!("k{}", rand::rng().random_range(0..KEYS));
                    let seq = next.entry(key.clone()).or_default();
                    let payload = Bytes::from(format!("{key}:{seq}"));
                    *seq += 1;
                    total += 1;
                    writer.write(Some(key.as_bytes()), payload).await.unwrap();
                }
                tokio::task::yield_now().await;
            };
            while scaled_rx.try_recv().is_err() {
                write(100).await;
            }
            write(rand::rng().random_range(0..EVENTS)).await;
            let _ = closing_tx.send(());
            let closed = writer.close().await;
            let alive = test_hooks::live_writer_tasks();
            scale.await.unwrap();
            let what = format!("round {round} ({total} events, second scale {delay:?} into close)");
            closed.unwrap_or_else(|e| panic!("{what}: close failed: {e}"));
            assert_eq!(alive, 0, "{what}: writer tasks alive after close()");

            let mut reader = StreamReader::new(&client, "race", &stream, true).await.unwrap();
            let mut read = Vec::new();
            while read.len() < total as usize {
                match tokio::time::timeout(Duration::from_secs(20), reader.next()).await {
                    Ok(Some(Ok(ev))) => read.push(parse_keyed_event(&ev.payload)),
                    other => panic!("{what}: reader stopped after {} events: {other:?}", read.len()),
                }
            }
            let extra = tokio::time::timeout(Duration::from_millis(300), reader.next()).await;
            assert!(extra.is_err(), "{what}: an event more than written: {extra:?}");
            check_per_key_order(&read, &next, &what);
        }
    });
}
