//! A full disk: appends fail with a clear, retryable STORAGE_FULL error, nothing acknowledged
//! is lost, and the store takes writes again as soon as space returns, without a restart.
//!
//! The data directory lives on a small tmpfs mounted by the test (this needs root, as CI and
//! the development machines have; elsewhere the test says so and does nothing).

use std::path::{Path, PathBuf};
use std::process::Command;

use bytes::Bytes;
use nadi_client::{EventWriter, NadiClient, StreamReader, StreamSpec, WriterConfig};
use nadi_proto::ErrorCode;
use nadi_tests::Standalone;

struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(dir: &Path, size: &str) -> Option<Tmpfs> {
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir)
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        ok.then(|| Tmpfs(dir.to_owned()))
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

fn event(i: u64) -> Bytes {
    let mut p = format!("{i:08}-").into_bytes();
    p.resize(1000, b'x');
    Bytes::from(p)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_fails_appends_cleanly_and_recovers_when_space_returns() {
    let dir = tempfile::tempdir().unwrap();
    let Some(_mount) = Tmpfs::mount(dir.path(), "64m") else {
        eprintln!("SKIPPED: cannot mount a tmpfs here (needs root); the disk-full test did not run");
        return;
    };
    let data = dir.path().join("data");
    let server = Standalone::start_with(&data, &["--containers", "1", "--log-file-size", "20MiB"]);
    let client = NadiClient::new(std::slice::from_ref(&server.controller_url)).unwrap();
    client.create_scope("full").await.unwrap();
    client.create_stream("full", "s", StreamSpec::fixed(1)).await.unwrap();

    // Leave room for the current 20 MiB log file only: the next one cannot be allocated.
    let filler = dir.path().join("filler");
    let free = {
        let out = Command::new("df").args(["--output=avail", "-B1"]).arg(dir.path()).output().unwrap();
        String::from_utf8(out.stdout).unwrap().lines().nth(1).unwrap().trim().parse::<u64>().unwrap()
    };
    let st = Command::new("fallocate").args(["-l", &(free - (2 << 20)).to_string()]).arg(&filler).status().unwrap();
    assert!(st.success());

    let cfg = || WriterConfig { writer_id: Some("w".into()), max_reconnects: 0, ..Default::default() };
    let writer = EventWriter::new(&client, "full", "s", cfg()).await.unwrap();
    let mut acked = 0u64;
    let mut next = 0u64;
    let err = loop {
        for _ in 0..500 {
            if writer.write(Some(b"k"), event(next)).await.is_err() {
                break;
            }
            next += 1;
        }
        match writer.flush().await {
            Ok(()) => acked = next,
            Err(e) => break e,
        }
        assert!(next < 100_000, "the disk never filled up");
    };
    assert_eq!(err.code, Some(ErrorCode::StorageFull), "expected STORAGE_FULL, got {err:?}");
    assert!(err.is_retryable());
    assert!(err.message.contains("storage is full"), "{}", err.message);
    assert!(acked > 10_000, "about 20 MiB of 1 KB events should have fit, acknowledged {acked}");
    drop(writer);

    // Space returns: the same writer id continues, without a restart of the store.
    std::fs::remove_file(&filler).unwrap();
    let writer = EventWriter::new(&client, "full", "s", cfg()).await.unwrap();
    for i in 0..1000 {
        writer.write(Some(b"k"), Bytes::from(format!("after-{i}"))).await.unwrap();
    }
    writer.close().await.expect("writes succeed once space is back");

    // Every acknowledged event is there once, in order, followed by the later ones.
    let mut reader = StreamReader::new(&client, "full", "s", true).await.unwrap();
    let mut seen = Vec::new();
    while let Ok(Some(ev)) = tokio::time::timeout(std::time::Duration::from_secs(5), reader.next()).await {
        seen.push(ev.unwrap().payload);
    }
    let before: Vec<_> = seen.iter().filter(|p| !p.starts_with(b"after-")).collect();
    assert!(before.len() as u64 >= acked, "{} of {acked} acknowledged events survived", before.len());
    for (i, p) in before.iter().enumerate() {
        assert_eq!(**p, event(i as u64), "event {i}");
    }
    let after = seen.iter().filter(|p| p.starts_with(b"after-")).count();
    assert_eq!(after, 1000);
    drop(reader);
    server.stop();
}
