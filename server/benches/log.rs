//! Criterion micro-benchmarks of the Tier-1 log: record encode/decode (header + CRC, and the
//! batch operation codec), append + sync of group-commit-sized records, recovery of a bare log,
//! and container recovery with and without metadata checkpoints (recovery time should follow
//! the checkpoint interval, not the total data written).
//! Run with `cargo bench -p nadi-server --bench log`. Compare figures within one run only.

use std::hint::black_box;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use nadi_server::container::ops;
use nadi_server::container::{Container, ContainerOptions, frame};
use nadi_server::log::file::{FileLog, FileLogOptions};
use nadi_server::log::{LogWriter, RecordKind, crc_matches, decode_header, encode_header};

fn codec(c: &mut Criterion) {
    let mut g = c.benchmark_group("record");
    for size in [1024usize, 64 * 1024, 1024 * 1024] {
        let payload = vec![7u8; size];
        g.throughput(Throughput::Bytes(size as u64));
        g.bench_with_input(BenchmarkId::new("encode_header_crc", size), &payload, |b, p| {
            b.iter(|| black_box(encode_header(RecordKind::Batch, 42, p)))
        });
        let header = encode_header(RecordKind::Batch, 42, &payload);
        g.bench_with_input(BenchmarkId::new("decode_header_check_crc", size), &payload, |b, p| {
            b.iter(|| {
                let h = decode_header(&header).expect("valid header");
                assert!(crc_matches(&header, &h, p));
            })
        });
    }
    // A batch of 1,000 appends of 1 KiB: encode and decode of the operation codec.
    let data = vec![1u8; 1024];
    let mut buf = Vec::new();
    for i in 0..1000 {
        ops::encode_append(&mut buf, i % 16, i * 1028, "writer-1", i as i64, 1, &data);
    }
    g.throughput(Throughput::Bytes(buf.len() as u64));
    g.bench_function("ops_encode_1000x1KiB", |b| {
        let mut out = Vec::with_capacity(buf.len());
        b.iter(|| {
            out.clear();
            for i in 0..1000u64 {
                ops::encode_append(&mut out, i % 16, i * 1028, "writer-1", i as i64, 1, &data);
            }
            black_box(out.len())
        })
    });
    g.bench_function("ops_decode_1000x1KiB", |b| b.iter(|| black_box(ops::decode(&buf).expect("decodes").len())));
    g.finish();
}

fn append_sync(c: &mut Criterion) {
    let mut g = c.benchmark_group("append_sync");
    g.sample_size(20);
    for size in [64 * 1024usize, 1024 * 1024, 4 * 1024 * 1024] {
        let dir = tempfile::tempdir().expect("temp dir");
        let (mut log, _) =
            FileLog::open(dir.path(), FileLogOptions { file_size: 64 << 20, ..Default::default() }, &mut |_| {})
                .expect("open log");
        let payload = vec![3u8; size];
        g.throughput(Throughput::Bytes(size as u64));
        g.bench_function(BenchmarkId::from_parameter(size), |b| {
            b.iter(|| {
                log.append(RecordKind::Batch, &payload).expect("append");
                log.sync().expect("sync");
            })
        });
    }
    g.finish();
}

fn recovery(c: &mut Criterion) {
    let mut g = c.benchmark_group("recovery");
    g.sample_size(10);
    let dir = tempfile::tempdir().expect("temp dir");
    let total = 128usize << 20;
    {
        let (mut log, _) = FileLog::open(dir.path(), FileLogOptions::default(), &mut |_| {}).expect("open log");
        let payload = vec![5u8; 1 << 20];
        for _ in 0..total >> 20 {
            log.append(RecordKind::Batch, &payload).expect("append");
        }
        log.sync().expect("sync");
    }
    g.throughput(Throughput::Bytes(total as u64));
    g.bench_function("replay_128MiB_of_1MiB_records", |b| {
        b.iter(|| {
            let mut n = 0usize;
            let (_log, report) = FileLog::open(dir.path(), FileLogOptions::default(), &mut |_| n += 1).expect("open");
            assert_eq!(n, total >> 20);
            black_box(report.last_lsn)
        })
    });
    g.finish();
}

/// Writes `total` bytes of 1 MiB batches (1 KiB events) to 16 segments of one container, with
/// checkpoints every `interval` bytes, and returns once every append is durable.
fn populate_container(dir: &std::path::Path, total: u64, interval: u64) {
    let rt = tokio::runtime::Builder::new_current_thread().build().expect("runtime");
    rt.block_on(async {
        let opts = ContainerOptions { checkpoint_interval: interval, ..Default::default() };
        let c = Container::open(0, dir, &opts).expect("open container");
        let event = vec![9u8; 1020];
        let batch = frame(&vec![event.as_slice(); 1024]);
        for s in 0..16 {
            c.create(&format!("bench/s/{s}")).await.expect("create");
        }
        let mut pending = Vec::new();
        for i in 0..total / batch.len() as u64 {
            let (seg, n) = (i % 16, (i / 16) as i64);
            let last = (n + 1) * 1024 - 1;
            let ack = c.append(&format!("bench/s/{seg}"), "w", last, 1024, batch.clone()).await.expect("queue");
            pending.push(ack);
            if pending.len() == 16 {
                for a in pending.drain(..) {
                    a.await.expect("answer").expect("append");
                }
            }
        }
        for a in pending {
            a.await.expect("answer").expect("append");
        }
        // A barrier: a checkpoint the last group triggered is written before this returns.
        c.writer_state("bench/s/0", "w").await.expect("barrier");
    });
}

fn container_recovery(c: &mut Criterion) {
    let mut g = c.benchmark_group("container_recovery");
    g.sample_size(10);
    for total_mib in [64u64, 256, 512] {
        for (label, interval) in [("full_replay", u64::MAX), ("checkpoint_every_16MiB", 16 << 20)] {
            let dir = tempfile::tempdir().expect("temp dir");
            populate_container(dir.path(), total_mib << 20, interval);
            let opts = ContainerOptions { checkpoint_interval: interval, ..Default::default() };
            g.bench_function(BenchmarkId::new(label, format!("{total_mib}MiB")), |b| {
                b.iter(|| {
                    let c = Container::open(0, dir.path(), &opts).expect("recover");
                    black_box(c.info("bench/s/0").expect("segment").length)
                })
            });
        }
    }
    g.finish();
}

criterion_group!(benches, codec, append_sync, recovery, container_recovery);
criterion_main!(benches);
