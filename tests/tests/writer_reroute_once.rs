//! The writer's re-route through a merge successor that was itself sealed: one task per
//! segment, per-key order, nothing lost or doubled.
//!
//! The interleaving, made deterministic (earlier notes: "a merge successor sealed again while
//! a predecessor still forwards, then a second task created for that successor"):
//!
//! ```text
//!   A [0, .5)  B [.5, 1)      the writer has written to both
//!   merge A+B → C             writes to A's keys: A is sealed, re-routes to C (task C)
//!   split C → D, E            writes to A's keys: C is sealed, re-routes to D and E
//!   writes to B's keys        B is sealed; its successor is C, whose task has handed over
//! ```
//!
//! Before the fix the writer forgot C's task once it had handed over, and B's re-route started
//! a second task for C: two tasks numbering one writer's events on one segment, the
//! precondition of the reorder the notes describe. Now a sealed segment's task stays in the
//! writer's task map until `close()`, so B's events go through C's task, which forwards them
//! to E after everything it forwarded before.

use std::collections::HashMap;

use bytes::Bytes;
use nadi_client::nadi_proto::controller::v1 as pb;
use nadi_client::nadi_proto::routing::key_point;
use nadi_client::{EventWriter, NadiClient, StreamReader, StreamSpec, WriterConfig, test_hooks};
use nadi_tests::{Standalone, check_per_key_order, parse_keyed_event};

/// A key whose point lies in `[low, high)`.
fn key_in(low: f64, high: f64, tag: &str) -> String {
    (0..).map(|i| format!("{tag}{i}")).find(|k| (low..high).contains(&key_point(k.as_bytes()))).expect("a key")
}

async fn scale(client: &NadiClient, stream: &str, sealed: Vec<u64>, ranges: &[(f64, f64)]) -> pb::StreamInfo {
    let req = pb::ScaleStreamRequest {
        scope: "once".to_owned(),
        stream: stream.to_owned(),
        sealed_segment_ids: sealed,
        new_ranges: ranges.iter().map(|&(low, high)| pb::KeyRange { low, high }).collect(),
    };
    client.scale_stream(req).await.expect("scale")
}

#[test]
fn a_predecessor_rerouting_into_a_sealed_merge_successor_uses_its_one_task() {
    let dir = tempfile::tempdir().unwrap();
    let s = Standalone::start(dir.path());
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    rt.block_on(async {
        let client = NadiClient::new(std::slice::from_ref(&s.controller_url)).unwrap();
        client.create_scope("once").await.unwrap();
        client.create_stream("once", "t", StreamSpec::fixed(2)).await.unwrap();
        let (ka, kb) = (key_in(0.0, 0.5, "a"), key_in(0.5, 1.0, "b"));
        let writer = EventWriter::new(&client, "once", "t", WriterConfig::default()).await.unwrap();
        let mut next: HashMap<String, u64> = HashMap::new();
        let mut write = async |key: &str, n: u64| {
            for _ in 0..n {
                let seq = next.entry(key.to_owned()).or_default();
                writer.write(Some(key.as_bytes()), Bytes::from(format!("{key}:{seq}"))).await.unwrap();
                *seq += 1;
            }
            writer.flush().await.unwrap();
        };
        write(&ka, 10).await;
        write(&kb, 10).await;

        let info = client.stream_info("once", "t").await.unwrap();
        let ids: Vec<u64> = info.active_segments.iter().map(|s| s.id).collect();
        let merged = scale(&client, "t", ids, &[(0.0, 1.0)]).await;
        write(&ka, 10).await; // A sealed: re-routed to C
        let c = merged.active_segments[0].clone();
        scale(&client, "t", vec![c.id], &[(0.0, 0.5), (0.5, 1.0)]).await;
        write(&ka, 10).await; // C sealed: re-routed to D and E
        write(&kb, 10).await; // B sealed: its successor is C
        write(&ka, 5).await;
        write(&kb, 5).await;
        let c_tasks = test_hooks::writer_tasks_started(&c.qualified_name);
        writer.close().await.unwrap();
        assert_eq!(test_hooks::live_writer_tasks(), 0, "writer tasks alive after close()");
        assert_eq!(c_tasks, 1, "tasks the writer started for the merge successor {}", c.qualified_name);

        let total: u64 = next.values().sum();
        let mut reader = StreamReader::new(&client, "once", "t", true).await.unwrap();
        let mut read = Vec::new();
        while read.len() < total as usize {
            match tokio::time::timeout(std::time::Duration::from_secs(20), reader.next()).await {
                Ok(Some(Ok(ev))) => read.push(parse_keyed_event(&ev.payload)),
                other => panic!("reader stopped after {} of {total} events: {other:?}", read.len()),
            }
        }
        let extra = tokio::time::timeout(std::time::Duration::from_millis(300), reader.next()).await;
        assert!(extra.is_err(), "an event more than written: {extra:?}");
        check_per_key_order(&read, &next, "merge successor sealed while a predecessor re-routes");
    });
}
