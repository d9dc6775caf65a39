//! A controller request forwarded by a follower can take effect on the leader and its answer
//! still be lost on the way back; the client then retries a request that was already applied.
//! Every mutating request carries an idempotency key (`x-nadi-request-id`, one per logical
//! request, the same on its retries), and the leader's state machine answers a repeated key
//! from its record instead of applying the request again.
//!
//! The loss is injected on the forward path (`NADI_FAULT_DROP_FORWARDED_ANSWERS` in the
//! controllers' environment): the leader runs the request, the follower drops its answer and
//! tells the client UNAVAILABLE, and the client retries through the same follower. The test
//! checks what the client was told against what the controller kept.

use std::time::Duration;

use nadi_client::{NadiClient, StreamSpec};
use nadi_proto::controller::v1 as pb;
use nadi_tests::cluster::Cluster;

/// Times the follower's log says it dropped a leader's answer to `method`.
fn drops(c: &Cluster, follower: u64, method: &str) -> usize {
    let log = c.controllers[&follower].log.lock().unwrap().clone();
    log.lines().filter(|l| l.contains("injected fault") && l.contains(method)).count()
}

#[test]
fn a_forwarded_request_retried_after_a_lost_answer_is_applied_once() {
    let dir = tempfile::tempdir().unwrap();
    let c = Cluster::start_with_env(
        dir.path(),
        3,
        &[("NADI_FAULT_DROP_FORWARDED_ANSWERS", "ScaleStream:1,BeginTxn:1,CommitTxn:1")],
    );
    let leader = c.leader(Duration::from_secs(30));
    let follower = c.ports.keys().copied().find(|id| *id != leader).unwrap();
    // Only the follower: every call is forwarded, and every retry goes through it again.
    let url = format!("http://127.0.0.1:{}", c.ports[&follower]);
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let client = NadiClient::new(&[url]).unwrap();
        client.create_scope("demo").await.unwrap();
        let info = client.create_stream("demo", "t", StreamSpec::fixed(1)).await.unwrap();
        assert_eq!(info.active_segments.len(), 1);
        let first = info.active_segments[0].id;

        // Scale: split the one segment in two. Applied twice, the retry would find the
        // segment sealed and fail although the scale happened.
        let req = pb::ScaleStreamRequest {
            scope: "demo".into(),
            stream: "t".into(),
            sealed_segment_ids: vec![first],
            new_ranges: vec![pb::KeyRange { low: 0.0, high: 0.5 }, pb::KeyRange { low: 0.5, high: 1.0 }],
        };
        let scaled = client.scale_stream(req).await.expect("the retried scale is told the scale's success");
        assert_eq!(scaled.epoch, 1, "{scaled:?}");
        assert_eq!(scaled.active_segments.len(), 2, "{scaled:?}");
        let history = client.stream_history("demo", "t").await.unwrap();
        assert_eq!(history.epochs.len(), 2, "created + one scale, not two: {history:?}");

        // Begin: exactly one transaction is opened, the one the client was told about.
        let txn = client.begin_txn("demo", "t", Duration::from_secs(60)).await.expect("begin");
        let open: Vec<String> = client.list_txns("demo", "t").await.unwrap().into_iter().map(|t| t.txn_id).collect();
        assert_eq!(open, vec![txn.txn_id.clone()], "one transaction opened by one begin");

        // Commit: the retry is told the commit's success, and the transaction is committed once.
        let status = client.commit_txn(&txn.txn_id).await.expect("the retried commit is told it committed");
        assert_eq!(status.state, nadi_client::TxnState::Committed, "{status:?}");
    });
    // The faults did fire: every answer above was lost once and the client retried.
    for method in ["ScaleStream", "BeginTxn", "CommitTxn"] {
        assert_eq!(drops(&c, follower, method), 1, "the follower dropped one answer to {method}");
    }
}
