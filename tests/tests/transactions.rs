//! Transactions against the real binary (`nadi standalone`): commit (events appear once, in
//! per-key order, and only after the commit), a retried commit, abort, lease expiry (the
//! controller aborts; commit then fails with TXN_ABORTED), resuming a transaction from other
//! processes (no duplicates, nothing lost), commit across a scale (a rolling commit), and the
//! admin HTTP views. The leader-kill case is in `transactions_cluster.rs`.

use std::time::{Duration, Instant};

use bytes::Bytes;
use nadi_client::{ClientError, EventWriter, NadiClient, StreamSpec, TransactionalWriter, TxnState, WriterConfig};
use nadi_proto::ErrorCode;
use nadi_proto::SegmentId;
use nadi_proto::controller::v1 as pb;
use nadi_proto::framing;
use nadi_proto::segment::v1 as spb;
use nadi_proto::segment::v1::segment_store_client::SegmentStoreClient;
use nadi_tests::{Standalone, check_keyed_output, cli_code, http, ok};
use tokio_stream::StreamExt;

fn line(i: u64) -> (String, Bytes) {
    let key = format!("key{}", i % 7);
    (key.clone(), Bytes::from(format!("{key}\t{i}")))
}

async fn write_range(w: &EventWriter, range: std::ops::Range<u64>) {
    for i in range {
        let (key, payload) = line(i);
        w.write(Some(key.as_bytes()), payload).await.unwrap();
    }
}

async fn txn_write_range(t: &TransactionalWriter, range: std::ops::Range<u64>) {
    for i in range {
        let (key, payload) = line(i);
        t.write(Some(key.as_bytes()), payload).await.unwrap();
    }
}

fn lines(range: std::ops::Range<u64>) -> Vec<u8> {
    range.map(|i| format!("key{}\t{i}\n", i % 7)).collect::<String>().into_bytes()
}

/// Every event of every segment the stream ever had, read to the current end (no waiting).
/// Segments are visited in order of the epoch they were created in: a key lives in exactly one
/// segment per epoch, so this order keeps each key's events in stream order.
async fn read_everything(client: &NadiClient, store_url: &str, scope: &str, stream: &str) -> String {
    let history = client.stream_history(scope, stream).await.unwrap();
    let mut segments: Vec<pb::Segment> = Vec::new();
    for e in history.epochs {
        for s in e.segments {
            if !segments.iter().any(|x| x.id == s.id) {
                segments.push(s);
            }
        }
    }
    segments.sort_by_key(|s| (SegmentId::from_packed(s.id).epoch(), SegmentId::from_packed(s.id).number()));
    let mut store = SegmentStoreClient::connect(store_url.to_owned()).await.unwrap();
    let mut out = String::new();
    for s in segments {
        let req =
            spb::ReadRequest { segment: s.qualified_name.clone(), offset: 0, follow: false, max_bytes_per_message: 0 };
        let mut responses = store.read(req).await.unwrap().into_inner();
        while let Some(r) = responses.next().await {
            let r = r.unwrap();
            for ev in framing::events(&r.data) {
                out.push_str(std::str::from_utf8(&ev.unwrap().1).unwrap());
                out.push('\n');
            }
        }
    }
    out
}

fn code(e: &ClientError) -> ErrorCode {
    e.code.unwrap_or_else(|| panic!("no stable code in {e:?}"))
}

/// Polls `status` until it is `want` (at most `timeout`).
async fn wait_state(client: &NadiClient, id: &str, want: TxnState, timeout: Duration) -> nadi_client::TxnStatus {
    let deadline = Instant::now() + timeout;
    loop {
        let st = client.txn_status(id).await.unwrap();
        if st.state == want {
            return st;
        }
        assert!(Instant::now() < deadline, "transaction {id} is {:?}, not {want:?}, after {timeout:?}", st.state);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commit_abort_expiry_and_resume() {
    let dir = tempfile::tempdir().unwrap();
    let s = Standalone::start(dir.path());
    let client = NadiClient::new(std::slice::from_ref(&s.controller_url)).unwrap();
    client.create_scope("demo").await.unwrap();
    client.create_stream("demo", "orders", StreamSpec::fixed(4)).await.unwrap();
    let everything = || read_everything(&client, &s.segment_url, "demo", "orders");

    // Commit: durable but invisible before, all there (once, in key order) after.
    let mut txn = TransactionalWriter::begin(&client, "demo", "orders", Duration::from_secs(60)).await.unwrap();
    txn_write_range(&txn, 0..300).await;
    txn.flush().await.unwrap();
    assert_eq!(everything().await, "", "a reader sees nothing of an open transaction");
    let listed = client.list_txns("demo", "orders").await.unwrap();
    assert_eq!(listed.iter().map(|t| t.txn_id.as_str()).collect::<Vec<_>>(), vec![txn.txn_id()]);
    let committed = txn.commit().await.unwrap();
    assert_eq!((committed.state, committed.rolled), (TxnState::Committed, false));
    check_keyed_output(&everything().await, 300);
    // Also through the ordinary reader and the CLI.
    let read = ok(&s.cli(&["read", "demo/orders", "--from-start", "--max", "300", "--idle-timeout", "5"]));
    check_keyed_output(&read, 300);
    // A retried commit (client, CLI) of a committed transaction succeeds and adds nothing.
    let id = txn.txn_id().to_owned();
    assert_eq!(client.commit_txn(&id).await.unwrap().state, TxnState::Committed);
    assert!(ok(&s.cli(&["txn", "commit", &id])).contains("committed"));
    assert!(txn.write(Some(b"k"), "late".into()).await.is_err(), "a committed transaction takes no writes");
    // It cannot be aborted any more.
    assert_eq!(code(&client.abort_txn(&id).await.unwrap_err()), ErrorCode::TxnNotOpen);
    check_keyed_output(&everything().await, 300);

    // Abort: nothing ever appears; commit afterwards is refused with TXN_ABORTED.
    let mut txn = TransactionalWriter::begin(&client, "demo", "orders", Duration::from_secs(60)).await.unwrap();
    txn_write_range(&txn, 1000..1050).await;
    txn.flush().await.unwrap();
    let aborted = txn.abort().await.unwrap();
    assert_eq!((aborted.state, aborted.abort_reason.as_str()), (TxnState::Aborted, "client"));
    assert_eq!(client.abort_txn(txn.txn_id()).await.unwrap().state, TxnState::Aborted, "abort is idempotent");
    assert_eq!(code(&client.commit_txn(txn.txn_id()).await.unwrap_err()), ErrorCode::TxnAborted);
    assert_eq!(cli_code(&s.cli(&["txn", "commit", txn.txn_id()])), "TXN_ABORTED");
    // The handle that asked to abort refuses to commit (without asking the controller).
    let refused = txn.commit().await.unwrap_err();
    assert_eq!(refused.kind, nadi_client::ErrorKind::Conflict, "{refused:?}");
    check_keyed_output(&everything().await, 300);

    // Lease expiry: the controller aborts it; commit and ping then fail with TXN_ABORTED.
    let txn = TransactionalWriter::begin(&client, "demo", "orders", Duration::from_millis(700)).await.unwrap();
    txn_write_range(&txn, 2000..2010).await;
    txn.flush().await.unwrap();
    // A ping keeps it alive past its first deadline.
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(txn.ping(None).await.unwrap().state, TxnState::Open);
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(txn.status().await.unwrap().state, TxnState::Open, "the ping extended the lease");
    let expired = wait_state(&client, txn.txn_id(), TxnState::Aborted, Duration::from_secs(10)).await;
    assert_eq!(expired.abort_reason, "lease expired");
    assert_eq!(code(&client.commit_txn(txn.txn_id()).await.unwrap_err()), ErrorCode::TxnAborted);
    assert_eq!(code(&txn.ping(None).await.unwrap_err()), ErrorCode::TxnAborted);
    check_keyed_output(&everything().await, 300);

    // Resume from other processes: begin in one, write in two more, commit in a fourth. The
    // second writer continues the numbering after what the store holds: nothing is lost to
    // deduplication and nothing is written twice.
    let id = ok(&s.cli(&["txn", "begin", "demo/orders"])).trim().to_owned();
    ok(&s.cli_stdin(&["txn", "write", &id, "--key-sep", "\t"], &lines(300..420)));
    ok(&s.cli_stdin(&["txn", "write", &id, "--key-sep", "\t"], &lines(420..500)));
    check_keyed_output(&everything().await, 300);
    // A resumed handle in this process adds more, then the CLI commits.
    let resumed = TransactionalWriter::resume(&client, &id).await.unwrap();
    txn_write_range(&resumed, 500..520).await;
    resumed.flush().await.unwrap();
    assert!(ok(&s.cli(&["txn", "commit", &id])).contains("committed"));
    check_keyed_output(&everything().await, 520);

    // `nadi write --txn`: one transaction for all stdin lines.
    let out = ok(&s.cli_stdin(&["write", "demo/orders", "--txn", "--key-sep", "\t"], &lines(520..600)));
    assert!(out.contains("wrote 80 events") && out.contains("committed"), "{out}");
    check_keyed_output(&everything().await, 600);

    // Admin HTTP: list and status.
    let (status, body) = http(&s.http_addr, "GET", "/v1/scopes/demo/streams/orders/transactions", None);
    assert_eq!(status, 200, "{body}");
    let txns = body["transactions"].as_array().unwrap();
    assert_eq!(txns.len(), 5, "{body}");
    let states: Vec<_> = txns.iter().map(|t| t["state"].as_str().unwrap()).collect();
    assert_eq!(states, ["committed", "aborted", "aborted", "committed", "committed"]);
    let path = format!("/v1/scopes/demo/streams/orders/transactions/{id}");
    let (status, body) = http(&s.http_addr, "GET", &path, None);
    assert_eq!((status, body["state"].as_str()), (200, Some("committed")), "{body}");
    assert_eq!(body["segments"].as_array().unwrap().len(), 4);
    let (status, body) = http(&s.http_addr, "GET", "/v1/scopes/demo/streams/orders/transactions/abc", None);
    assert_eq!((status, body["code"].as_str()), (404, Some("TXN_NOT_FOUND")), "{body}");
    let (status, body) = http(&s.http_addr, "GET", "/v1/scopes/demo/streams/orders/transactions/XYZ", None);
    assert_eq!((status, body["code"].as_str()), (400, Some("INVALID_NAME")), "{body}");
    let (status, body) = http(&s.http_addr, "GET", "/v1/scopes/demo/streams/nope/transactions", None);
    assert_eq!((status, body["code"].as_str()), (404, Some("NOT_FOUND_STREAM")), "{body}");

    // HTTP twins of `nadi txn commit|abort`: they agree with the CLI's view.
    let h = s.http_addr.clone();
    let id2 = ok(&s.cli(&["txn", "begin", "demo/orders"])).trim().to_owned();
    ok(&s.cli_stdin(&["txn", "write", &id2, "--key-sep", "\t"], &lines(600..610)));
    let (status, body) = http(&h, "POST", &format!("/v1/scopes/demo/streams/orders/transactions/{id2}/commit"), None);
    assert_eq!((status, body["state"].as_str()), (200, Some("committed")), "{body}");
    assert!(ok(&s.cli(&["txn", "status", &id2])).contains("committed"));
    check_keyed_output(&everything().await, 610);
    let (status, _) = http(&h, "POST", &format!("/v1/scopes/demo/streams/orders/transactions/{id2}/commit"), None);
    assert_eq!(status, 200, "committing a committed transaction succeeds");
    let id3 = ok(&s.cli(&["txn", "begin", "demo/orders"])).trim().to_owned();
    let (status, body) = http(&h, "POST", &format!("/v1/scopes/demo/streams/orders/transactions/{id3}/abort"), None);
    assert_eq!((status, body["state"].as_str()), (200, Some("aborted")), "{body}");
    let (status, body) = http(&h, "POST", &format!("/v1/scopes/demo/streams/orders/transactions/{id3}/commit"), None);
    assert_eq!((status, body["code"].as_str()), (409, Some("TXN_ABORTED")), "{body}");
    assert_eq!(cli_code(&s.cli(&["txn", "commit", &id3])), "TXN_ABORTED");
    // Ids are global: under another stream's path the transaction does not exist.
    let (status, body) = http(&h, "POST", &format!("/v1/scopes/demo/streams/nope/transactions/{id2}/abort"), None);
    assert_eq!((status, body["code"].as_str()), (404, Some("TXN_NOT_FOUND")), "{body}");
    check_keyed_output(&everything().await, 610);

    // Bad input: typed errors, nothing changes.
    let before = client.list_txns("demo", "orders").await.unwrap();
    let e = client.begin_txn("demo", "nope", Duration::from_secs(1)).await.unwrap_err();
    assert_eq!(code(&e), ErrorCode::StreamNotFound);
    let e = client.begin_txn("demo", "orders", Duration::from_millis(5)).await.unwrap_err();
    assert_eq!(code(&e), ErrorCode::InvalidArgument);
    assert_eq!(code(&client.txn_status("not-hex!").await.unwrap_err()), ErrorCode::InvalidName);
    assert_eq!(code(&client.commit_txn("abcdef").await.unwrap_err()), ErrorCode::TxnNotFound);
    assert_eq!(cli_code(&s.cli(&["txn", "abort", "abcdef"])), "TXN_NOT_FOUND");
    assert_eq!(client.list_txns("demo", "orders").await.unwrap(), before);
    check_keyed_output(&everything().await, 610);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commit_across_a_scale_rolls_the_transaction_into_a_new_epoch() {
    let dir = tempfile::tempdir().unwrap();
    let s = Standalone::start(dir.path());
    let client = NadiClient::new(std::slice::from_ref(&s.controller_url)).unwrap();
    client.create_scope("demo").await.unwrap();
    client.create_stream("demo", "rolling", StreamSpec::fixed(2)).await.unwrap();
    let everything = || read_everything(&client, &s.segment_url, "demo", "rolling");
    let writer = || EventWriter::new(&client, "demo", "rolling", WriterConfig::default());

    // Numbers say where each event must be read, per key: 0..100 before the scale, 100..200
    // after it (both before the commit), 200..300 in the transaction, 300..400 after the commit.
    let w = writer().await.unwrap();
    write_range(&w, 0..100).await;
    w.close().await.unwrap();
    let mut txn = TransactionalWriter::begin(&client, "demo", "rolling", Duration::from_secs(60)).await.unwrap();
    assert_eq!(txn.epoch(), 0);
    txn_write_range(&txn, 200..250).await;
    // Split the first segment while the transaction is open.
    let info = client.stream_info("demo", "rolling").await.unwrap();
    let first = &info.active_segments[0];
    let mid = (first.key_low + first.key_high) / 2.0;
    client
        .scale_stream(pb::ScaleStreamRequest {
            scope: "demo".into(),
            stream: "rolling".into(),
            sealed_segment_ids: vec![first.id],
            new_ranges: vec![
                pb::KeyRange { low: first.key_low, high: mid },
                pb::KeyRange { low: mid, high: first.key_high },
            ],
        })
        .await
        .unwrap();
    let w = writer().await.unwrap();
    write_range(&w, 100..200).await;
    w.close().await.unwrap();
    txn_write_range(&txn, 250..300).await;
    txn.flush().await.unwrap();
    assert_eq!(everything().await.lines().count(), 200, "nothing of the transaction is visible");

    let committed = txn.commit().await.unwrap();
    assert_eq!((committed.state, committed.rolled), (TxnState::Committed, true));
    let w = writer().await.unwrap();
    write_range(&w, 300..400).await;
    w.close().await.unwrap();
    check_keyed_output(&everything().await, 400);

    // The new epoch is made of the transaction's segments, which tile the key space again.
    let history = client.stream_history("demo", "rolling").await.unwrap();
    let last = history.epochs.last().unwrap();
    assert_eq!((last.epoch, last.reason), (2, pb::EpochReason::TxnCommit as i32));
    assert_eq!(last.segments.len(), 2);
    assert!(last.segments.iter().all(|s| s.qualified_name.ends_with(&format!("#txn.{}", committed.txn_id))));
    assert_eq!((last.segments[0].key_low, last.segments[1].key_high), (0.0, 1.0));
    // Retrying the commit changes nothing.
    assert_eq!(client.commit_txn(&committed.txn_id).await.unwrap().state, TxnState::Committed);
    assert_eq!(client.stream_history("demo", "rolling").await.unwrap().epochs.len(), 3);

    // A same-epoch transaction on the rolled stream merges into the promoted segments, and the
    // stream can still scale and be sealed and deleted afterwards.
    let mut txn = TransactionalWriter::begin(&client, "demo", "rolling", Duration::from_secs(60)).await.unwrap();
    txn_write_range(&txn, 400..450).await;
    assert!(!txn.commit().await.unwrap().rolled);
    check_keyed_output(&everything().await, 450);
    let open = TransactionalWriter::begin(&client, "demo", "rolling", Duration::from_secs(60)).await.unwrap();
    txn_write_range(&open, 9000..9010).await;
    open.flush().await.unwrap();
    ok(&s.cli(&["stream", "seal", "demo/rolling"]));
    assert_eq!(code(&client.commit_txn(open.txn_id()).await.unwrap_err()), ErrorCode::Sealed);
    check_keyed_output(&everything().await, 450);
    ok(&s.cli(&["stream", "delete", "demo/rolling"]));
    assert_eq!(code(&client.txn_status(open.txn_id()).await.unwrap_err()), ErrorCode::TxnNotFound);
}
