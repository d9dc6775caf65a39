//! Writers and readers through scaling: several writers write keyed events with per-key
//! sequence numbers while the stream is split and merged again and again (through the CLI, as
//! an operator would). A reader that started at the head before the first scale follows the
//! successors live. Afterwards every acknowledged event is read exactly once, and each key's
//! sequence numbers are read in increasing order, both by the live reader and by a fresh
//! reader from the head.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use bytes::Bytes;
use nadi_client::{EventWriter, NadiClient, StreamReader, StreamSpec, WriterConfig};
use nadi_tests::{Standalone, check_per_key_order, ok, parse_keyed_event};
use rand::Rng;

const WRITERS: usize = 3;
const KEYS: usize = 40;
const SCALES: u32 = 12;

#[test]
fn per_key_order_and_exactly_once_through_splits_and_merges() {
    let dir = tempfile::tempdir().unwrap();
    let s = Standalone::start(dir.path());
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let _guard = rt.enter();
    let client = NadiClient::new(std::slice::from_ref(&s.controller_url)).unwrap();
    rt.block_on(async {
        client.create_scope("demo").await.unwrap();
        client.create_stream("demo", "t", StreamSpec::fixed(2)).await.unwrap();
    });

    // A reader from the head, started before any scale, follows the topology live. It reads
    // until it has as many events as were written (known once the writers are done).
    let (total_tx, total_rx) = tokio::sync::watch::channel(None::<usize>);
    let live = rt.spawn({
        let client = client.clone();
        async move {
            let mut total_rx = total_rx;
            let mut r = StreamReader::new(&client, "demo", "t", true).await.unwrap();
            let mut out = Vec::new();
            while total_rx.borrow().is_none_or(|t| out.len() < t) {
                tokio::select! {
                    ev = tokio::time::timeout(Duration::from_secs(60), r.next()) => match ev {
                        Ok(Some(Ok(ev))) => out.push(parse_keyed_event(&ev.payload)),
                        other => panic!("live reader stopped after {} events: {other:?}", out.len()),
                    },
                    _ = total_rx.changed() => {}
                }
            }
            out
        }
    });
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));

    // Writers: each owns its keys (key = w<writer>-k<i>) and numbers each key's events.
    let writers: Vec<_> = (0..WRITERS)
        .map(|w| {
            let client = client.clone();
            let stop = stop.clone();
            rt.spawn(async move {
                let config = WriterConfig { writer_id: Some(format!("writer-{w}")), ..WriterConfig::default() };
                let writer = EventWriter::new(&client, "demo", "t", config).await.unwrap();
                let mut next: HashMap<String, u64> = HashMap::new();
                let mut i = 0u64;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    i += 1;
                    let key = format!("w{w}-k{}", rand::rng().random_range(0..KEYS));
                    let seq = next.entry(key.clone()).or_default();
                    let payload = Bytes::from(format!("{key}:{seq}"));
                    *seq += 1;
                    writer.write(Some(key.as_bytes()), payload).await.unwrap();
                    if i.is_multiple_of(200) {
                        writer.flush().await.unwrap();
                        tokio::time::sleep(Duration::from_millis(10)).await;
                    }
                }
                writer.close().await.unwrap();
                next
            })
        })
        .collect();

    // Meanwhile: split and merge, several times.
    let started = Instant::now();
    let mut scales = 0;
    while scales < SCALES {
        let info: serde_json::Value =
            serde_json::from_str(&ok(&s.cli(&["stream", "info", "demo/t", "--json"]))).unwrap();
        let segs = info["segments"].as_array().unwrap();
        let ids: Vec<u64> = segs.iter().map(|x| x["id"].as_u64().unwrap()).collect();
        if scales % 2 == 0 || ids.len() < 2 {
            let victim = ids[rand::rng().random_range(0..ids.len())].to_string();
            ok(&s.cli(&["stream", "scale", "demo/t", "--split", &victim, "--into", "2"]));
        } else {
            let i = rand::rng().random_range(0..ids.len() - 1);
            ok(&s.cli(&["stream", "scale", "demo/t", "--merge", &format!("{},{}", ids[i], ids[i + 1])]));
        }
        scales += 1;
        std::thread::sleep(Duration::from_millis(150));
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let mut expected = HashMap::new();
    for w in writers {
        expected.extend(rt.block_on(w).unwrap());
    }
    let total: u64 = expected.values().sum();
    total_tx.send(Some(total as usize)).unwrap();
    eprintln!("{scales} scales in {:?}; {total} events", started.elapsed());

    let live = rt.block_on(live).unwrap();
    check_per_key_order(&live, &expected, "live reader");
    let fresh = rt.block_on(async {
        let mut r = StreamReader::new(&client, "demo", "t", true).await.unwrap();
        let mut out = Vec::new();
        while out.len() < total as usize {
            match tokio::time::timeout(Duration::from_secs(30), r.next()).await {
                Ok(Some(Ok(ev))) => out.push(parse_keyed_event(&ev.payload)),
                other => panic!("fresh reader stopped after {} events: {other:?}", out.len()),
            }
        }
        // Nothing more than what was written.
        assert!(tokio::time::timeout(Duration::from_millis(500), r.next()).await.is_err(), "an extra event");
        out
    });
    check_per_key_order(&fresh, &expected, "reader from the head");
}
