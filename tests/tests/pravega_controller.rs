//! Pravega's controller API (`--pravega-controller-listen`, docs/pravega-compat.md) against the
//! real binary, with tonic clients generated from the vendored `Controller.proto` and with the
//! unmodified Pravega Python client:
//!
//! - scopes and streams: create (fixed and rate policies), list with the paging the client
//!   expects, configuration, seal, delete; outcomes as status enums; Nadi's CLI sees the same
//!   streams (one source of truth);
//! - segments: current, head, per epoch, successors with all their predecessors after
//!   `nadi stream scale` splits and merges, `getURI` for any segment (including a reader
//!   group's `_kvtable` pseudo-segment), Pravega's own `scale`/`checkScale`;
//! - transactions under Pravega-shaped ids (`lowBits ≥ 0`, the epoch in the top 32 bits) that
//!   are the Nadi transactions' own ids;
//! - bad input (unknown names, malformed names, missing fields, negative ids): a status enum
//!   or a gRPC error, never a panic;
//! - tokens: a caller's token is checked and passed on, so Nadi's permissions apply; TLS like
//!   the node's other listeners;
//! - a cluster's controller learns where stores serve Pravega segments from their heartbeats;
//! - the Python client (`pravega==0.3.8` in `target/pravega`, installed by `.ci/run`).

use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use nadi_pravega::controller::pb;
use nadi_pravega::controller::pb::controller_service_client::ControllerServiceClient;
use nadi_pravega::txn_id::PravegaTxnId;
use nadi_tests::cluster::{Proc, free_port};
use nadi_tests::{Standalone, cli_code, nadi_bin, ok};
use tonic::transport::Channel;

type Client = ControllerServiceClient<Channel>;

/// A standalone serving Pravega's controller API (and advertising a Pravega segment endpoint).
fn start(dir: &std::path::Path, extra: &[&str]) -> Standalone {
    let mut args = vec!["--pravega-controller-listen", "127.0.0.1:0", "--pravega-segment-listen", "127.0.0.1:0"];
    args.extend(extra);
    Standalone::start_with(dir, &args)
}

async fn client(s: &Standalone) -> Client {
    let uri = s.pravega_controller.as_deref().expect("the ready line names the Pravega controller");
    let url = uri.replacen("tcp://", "http://", 1);
    ControllerServiceClient::connect(url).await.expect("connect to the Pravega controller API")
}

fn stream(scope: &str, stream: &str) -> pb::StreamInfo {
    pb::StreamInfo { scope: scope.into(), stream: stream.into(), access_operation: 0 }
}

fn config(scope: &str, name: &str, scale_type: i32, rate: i32, factor: i32, min: i32) -> pb::StreamConfig {
    pb::StreamConfig {
        stream_info: Some(stream(scope, name)),
        scaling_policy: Some(pb::ScalingPolicy {
            scale_type,
            target_rate: rate,
            scale_factor: factor,
            min_num_segments: min,
        }),
        retention_policy: Some(pb::RetentionPolicy { retention_type: 0, retention_param: 0, retention_max: i64::MAX }),
        tags: None,
    }
}

fn seg_id(scope: &str, name: &str, id: i64) -> pb::SegmentId {
    pb::SegmentId { stream_info: Some(stream(scope, name)), segment_id: id }
}

/// `(id, minKey, maxKey)` of each range, checking the shape the client unwraps.
fn ranges(r: &[pb::SegmentRange], scope: &str, name: &str) -> Vec<(i64, f64, f64)> {
    r.iter()
        .map(|r| {
            let id = r.segment_id.as_ref().expect("segmentId is set");
            assert_eq!(id.stream_info.as_ref(), Some(&stream(scope, name)), "streamInfo is set");
            (id.segment_id, r.min_key, r.max_key)
        })
        .collect()
}

async fn list_all_streams(c: &mut Client, scope: &str) -> Vec<String> {
    let mut token = String::new();
    let mut out = Vec::new();
    for _ in 0..10 {
        let r = c
            .list_streams_in_scope(pb::StreamsInScopeRequest {
                scope: Some(pb::ScopeInfo { scope: scope.into() }),
                continuation_token: Some(pb::ContinuationToken { token: token.clone() }),
            })
            .await
            .unwrap()
            .into_inner();
        if r.streams.is_empty() {
            return out;
        }
        token = r.continuation_token.expect("a non-empty page carries a token").token;
        assert!(!token.is_empty());
        out.extend(r.streams.into_iter().map(|s| s.stream));
    }
    panic!("listing did not end with an empty page");
}

#[tokio::test]
async fn scopes_and_streams_map_onto_nadi() {
    use pb::create_scope_status::Status as CS;
    use pb::create_stream_status::Status as CT;
    use pb::delete_scope_status::Status as DS;
    use pb::delete_stream_status::Status as DT;
    use pb::update_stream_status::Status as US;
    let dir = tempfile::tempdir().unwrap();
    let s = start(dir.path(), &[]);
    let mut c = client(&s).await;
    let scope = |name: &str| pb::ScopeInfo { scope: name.into() };

    assert_eq!(c.create_scope(scope("sc")).await.unwrap().into_inner().status(), CS::Success);
    assert_eq!(c.create_scope(scope("sc")).await.unwrap().into_inner().status(), CS::ScopeExists);
    assert_eq!(c.create_scope(scope("bad name")).await.unwrap().into_inner().status(), CS::InvalidScopeName);
    assert_eq!(c.create_scope(scope("")).await.unwrap().into_inner().status(), CS::InvalidScopeName);
    assert!(c.check_scope_exists(scope("sc")).await.unwrap().into_inner().exists);
    assert!(!c.check_scope_exists(scope("nope")).await.unwrap().into_inner().exists);
    assert!(!c.check_scope_exists(scope("b/d")).await.unwrap().into_inner().exists);
    // Scopes page: everything, then the empty page.
    let first = c
        .list_scopes(pb::ScopesRequest { continuation_token: Some(pb::ContinuationToken { token: String::new() }) })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(first.scopes, ["sc"]);
    let token = first.continuation_token.expect("token").token;
    let second = c
        .list_scopes(pb::ScopesRequest { continuation_token: Some(pb::ContinuationToken { token }) })
        .await
        .unwrap()
        .into_inner();
    assert!(second.scopes.is_empty(), "{second:?}");

    // Streams: fixed, by events, by kilobytes; retention by time and size.
    assert_eq!(c.create_stream(config("sc", "fixed", 0, 0, 0, 3)).await.unwrap().into_inner().status(), CT::Success);
    assert_eq!(
        c.create_stream(config("sc", "fixed", 0, 0, 0, 3)).await.unwrap().into_inner().status(),
        CT::StreamExists
    );
    let mut by_events = config("sc", "by-events", 2, 100, 2, 2);
    by_events.retention_policy =
        Some(pb::RetentionPolicy { retention_type: 1, retention_param: 3_600_000, retention_max: i64::MAX });
    by_events.tags = Some(pb::Tags { tag: vec!["ignored".into()] });
    assert_eq!(c.create_stream(by_events.clone()).await.unwrap().into_inner().status(), CT::Success);
    let mut by_kbytes = config("sc", "by-kbytes", 1, 1024, 3, 1);
    by_kbytes.retention_policy =
        Some(pb::RetentionPolicy { retention_type: 2, retention_param: 1 << 30, retention_max: i64::MAX });
    assert_eq!(c.create_stream(by_kbytes.clone()).await.unwrap().into_inner().status(), CT::Success);
    assert_eq!(
        c.create_stream(config("nope", "x", 0, 0, 0, 1)).await.unwrap().into_inner().status(),
        CT::ScopeNotFound
    );
    assert_eq!(
        c.create_stream(config("sc", "_reserved", 0, 0, 0, 1)).await.unwrap().into_inner().status(),
        CT::InvalidStreamName
    );
    assert_eq!(
        c.create_stream(config("sc", "a/b", 0, 0, 0, 1)).await.unwrap().into_inner().status(),
        CT::InvalidStreamName
    );
    // Bad policies and missing fields are errors the client does not retry.
    for bad in [config("sc", "x", 9, 0, 0, 1), config("sc", "x", 2, 100, 1, 1), config("sc", "x", 0, 0, 0, -1)] {
        let e = c.create_stream(bad).await.unwrap_err();
        assert_eq!(e.code(), tonic::Code::InvalidArgument, "{e:?}");
    }
    let e = c.create_stream(pb::StreamConfig::default()).await.unwrap_err();
    assert_eq!(e.code(), tonic::Code::InvalidArgument, "{e:?}");

    // The configuration reads back (tags are not kept).
    let got = c.get_stream_configuration(stream("sc", "by-events")).await.unwrap().into_inner();
    by_events.tags = None;
    assert_eq!(got, by_events);
    assert_eq!(c.get_stream_configuration(stream("sc", "by-kbytes")).await.unwrap().into_inner(), by_kbytes);
    let fixed = c.get_stream_configuration(stream("sc", "fixed")).await.unwrap().into_inner();
    assert_eq!(fixed.scaling_policy.unwrap().min_num_segments, 3);
    assert_eq!(fixed.retention_policy, None);
    let e = c.get_stream_configuration(stream("sc", "nope")).await.unwrap_err();
    assert_eq!(e.code(), tonic::Code::NotFound, "{e:?}");
    assert_eq!(
        c.update_stream(config("sc", "by-events", 0, 0, 0, 2)).await.unwrap().into_inner().status(),
        US::Success
    );
    let policy = c.get_stream_configuration(stream("sc", "by-events")).await.unwrap().into_inner().scaling_policy;
    assert_eq!(policy.unwrap().scale_type, 0, "now fixed");
    assert_eq!(
        c.update_stream(config("sc", "nope", 0, 0, 0, 1)).await.unwrap().into_inner().status(),
        US::StreamNotFound
    );
    assert_eq!(
        c.update_stream(config("nope", "x", 0, 0, 0, 1)).await.unwrap().into_inner().status(),
        US::ScopeNotFound
    );

    // Streams page like scopes; an unknown scope is an empty listing with SCOPE_NOT_FOUND.
    assert_eq!(list_all_streams(&mut c, "sc").await, ["by-events", "by-kbytes", "fixed"]);
    let r = c
        .list_streams_in_scope(pb::StreamsInScopeRequest {
            scope: Some(pb::ScopeInfo { scope: "nope".into() }),
            continuation_token: None,
        })
        .await
        .unwrap()
        .into_inner();
    assert!(r.streams.is_empty());
    assert_eq!(r.status(), pb::streams_in_scope_response::Status::ScopeNotFound);
    assert!(c.check_stream_exists(stream("sc", "fixed")).await.unwrap().into_inner().exists);
    assert!(!c.check_stream_exists(stream("sc", "nope")).await.unwrap().into_inner().exists);
    assert!(!c.check_stream_exists(stream("no pe", "x")).await.unwrap().into_inner().exists);

    // One source of truth: Nadi's CLI sees the Pravega client's streams and policies.
    let listed = ok(&s.cli(&["stream", "list", "sc"]));
    for name in ["by-events", "by-kbytes", "fixed"] {
        assert!(listed.lines().any(|l| l.trim() == name), "{name} in {listed}");
    }
    let info = ok(&s.cli(&["stream", "info", "sc/by-kbytes", "--json"]));
    assert!(info.contains("1024") && info.contains("1073741824"), "{info}");

    // Seal and delete, with the outcomes as status values.
    assert_eq!(c.delete_stream(stream("sc", "fixed")).await.unwrap().into_inner().status(), DT::StreamNotSealed);
    assert_eq!(c.seal_stream(stream("sc", "fixed")).await.unwrap().into_inner().status(), US::Success);
    assert_eq!(c.seal_stream(stream("sc", "fixed")).await.unwrap().into_inner().status(), US::Success);
    let current = c.get_current_segments(stream("sc", "fixed")).await.unwrap().into_inner();
    assert!(current.segment_ranges.is_empty(), "a sealed stream has no current segments: {current:?}");
    assert_eq!(c.seal_stream(stream("sc", "nope")).await.unwrap().into_inner().status(), US::StreamNotFound);
    assert_eq!(c.seal_stream(stream("nope", "x")).await.unwrap().into_inner().status(), US::ScopeNotFound);
    assert_eq!(c.delete_scope(scope("sc")).await.unwrap().into_inner().status(), DS::ScopeNotEmpty);
    assert_eq!(c.delete_stream(stream("sc", "fixed")).await.unwrap().into_inner().status(), DT::Success);
    assert_eq!(c.delete_stream(stream("sc", "fixed")).await.unwrap().into_inner().status(), DT::StreamNotFound);
    assert_eq!(cli_code(&s.cli(&["stream", "info", "sc/fixed"])), "NOT_FOUND_STREAM");
    for name in ["by-events", "by-kbytes"] {
        assert_eq!(c.seal_stream(stream("sc", name)).await.unwrap().into_inner().status(), US::Success);
        assert_eq!(c.delete_stream(stream("sc", name)).await.unwrap().into_inner().status(), DT::Success);
    }
    assert_eq!(c.delete_scope(scope("sc")).await.unwrap().into_inner().status(), DS::Success);
    assert_eq!(c.delete_scope(scope("sc")).await.unwrap().into_inner().status(), DS::ScopeNotFound);
    assert_eq!(c.delete_scope(scope("bad name")).await.unwrap().into_inner().status(), DS::ScopeNotFound);
    assert!(!ok(&s.cli(&["scope", "list"])).lines().any(|l| l.trim() == "sc"));

    // RPCs the front end does not serve are UNIMPLEMENTED (final for the client).
    let e = c.create_reader_group(pb::ReaderGroupConfiguration::default()).await.unwrap_err();
    assert_eq!(e.code(), tonic::Code::Unimplemented, "{e:?}");
    let token = c.get_delegation_token(stream("sc", "x")).await.unwrap().into_inner();
    assert_eq!(token.delegation_token, "");
    s.stop();
}

#[tokio::test]
async fn segments_follow_scaling_and_get_uri_answers_any_segment() {
    let dir = tempfile::tempdir().unwrap();
    let s = start(dir.path(), &[]);
    let mut c = client(&s).await;
    ok(&s.cli(&["scope", "create", "sc"]));
    ok(&s.cli(&["stream", "create", "sc/st", "--segments", "2"]));
    let current = |c: &mut Client| {
        let mut c = c.clone();
        async move { c.get_current_segments(stream("sc", "st")).await.unwrap().into_inner().segment_ranges }
    };
    let first = ranges(&current(&mut c).await, "sc", "st");
    assert_eq!(first, [(0, 0.0, 0.5), (1, 0.5, 1.0)]);

    // Split segment 0 with Nadi's CLI: epoch 1 has three segments; 0's successors are the
    // two halves, each with predecessor 0.
    ok(&s.cli(&["stream", "scale", "sc/st", "--split", "0"]));
    let after_split = ranges(&current(&mut c).await, "sc", "st");
    let e1 = |n: i64| (1i64 << 32) | n;
    assert_eq!(after_split, [(e1(2), 0.0, 0.25), (e1(3), 0.25, 0.5), (1, 0.5, 1.0)]);
    let succ = c.get_segments_immediately_following(seg_id("sc", "st", 0)).await.unwrap().into_inner();
    let got: Vec<_> = succ
        .segments
        .iter()
        .map(|e| (ranges(std::slice::from_ref(e.segment.as_ref().unwrap()), "sc", "st")[0], e.value.clone()))
        .collect();
    assert_eq!(got, [((e1(2), 0.0, 0.25), vec![0]), ((e1(3), 0.25, 0.5), vec![0])]);
    // The deprecated spelling answers the same.
    let old = c.get_segments_immediatly_following(seg_id("sc", "st", 0)).await.unwrap().into_inner();
    assert_eq!(old, succ);
    // An active segment has no successors yet.
    let none = c.get_segments_immediately_following(seg_id("sc", "st", 1)).await.unwrap().into_inner();
    assert!(none.segments.is_empty());

    // Merge the two halves back: the successor lists BOTH predecessors.
    ok(&s.cli(&["stream", "scale", "sc/st", "--merge", &format!("{},{}", e1(2), e1(3))]));
    let e2 = |n: i64| (2i64 << 32) | n;
    assert_eq!(ranges(&current(&mut c).await, "sc", "st"), [(e2(4), 0.0, 0.5), (1, 0.5, 1.0)]);
    for pred in [e1(2), e1(3)] {
        let succ = c.get_segments_immediately_following(seg_id("sc", "st", pred)).await.unwrap().into_inner();
        assert_eq!(succ.segments.len(), 1);
        let mut preds = succ.segments[0].value.clone();
        preds.sort();
        assert_eq!(preds, [e1(2), e1(3)], "all predecessors of the merged segment");
        assert_eq!(succ.segments[0].segment.as_ref().unwrap().max_key, 0.5);
    }

    // Epochs and the head: epoch 0's segments at offset 0.
    for (epoch, want) in [(0, first.clone()), (1, after_split.clone())] {
        let r = c
            .get_epoch_segments(pb::GetEpochSegmentsRequest { stream_info: Some(stream("sc", "st")), epoch })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(ranges(&r.segment_ranges, "sc", "st"), want, "epoch {epoch}");
    }
    let e = c
        .get_epoch_segments(pb::GetEpochSegmentsRequest { stream_info: Some(stream("sc", "st")), epoch: 9 })
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::NotFound);
    let head = c
        .get_segments(pb::GetSegmentsRequest { stream_info: Some(stream("sc", "st")), timestamp: 0 })
        .await
        .unwrap()
        .into_inner();
    let mut got: Vec<(i64, i64)> =
        head.segments.iter().map(|l| (l.segment_id.as_ref().unwrap().segment_id, l.offset)).collect();
    got.sort();
    assert_eq!(got, [(0, 0), (1, 0)]);
    assert!(head.segments.iter().all(|l| l.segment_id.as_ref().unwrap().stream_info.is_some()));

    let valid = |id: i64| {
        let mut c = c.clone();
        async move { c.is_segment_valid(seg_id("sc", "st", id)).await.unwrap().into_inner().response }
    };
    assert!(!valid(0).await && !valid(e1(2)).await && valid(e2(4)).await && valid(1).await);

    // Pravega's own scale: split segment 1, then checkScale of the epoch it started from.
    let r = c
        .scale(pb::ScaleRequest {
            stream_info: Some(stream("sc", "st")),
            sealed_segments: vec![1],
            new_key_ranges: vec![
                pb::scale_request::KeyRangeEntry { start: 0.5, end: 0.75 },
                pb::scale_request::KeyRangeEntry { start: 0.75, end: 1.0 },
            ],
            scale_timestamp: 0,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.status(), pb::scale_response::ScaleStreamStatus::Started);
    assert_eq!(r.epoch, 2);
    let e3 = |n: i64| (3i64 << 32) | n;
    assert_eq!(ranges(&r.segments, "sc", "st"), [(e3(5), 0.5, 0.75), (e3(6), 0.75, 1.0)]);
    let check = |epoch: i32| {
        let mut c = c.clone();
        async move {
            c.check_scale(pb::ScaleStatusRequest { stream_info: Some(stream("sc", "st")), epoch })
                .await
                .unwrap()
                .into_inner()
                .status()
        }
    };
    use pb::scale_status_response::ScaleStatus as SS;
    assert_eq!(check(2).await, SS::Success);
    assert_eq!(check(9).await, SS::InvalidInput);
    assert_eq!(check(-1).await, SS::InvalidInput);
    let bad = c
        .scale(pb::ScaleRequest {
            stream_info: Some(stream("sc", "st")),
            sealed_segments: vec![1],
            new_key_ranges: vec![pb::scale_request::KeyRangeEntry { start: 0.5, end: 1.0 }],
            scale_timestamp: 0,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(bad.status(), pb::scale_response::ScaleStreamStatus::PreconditionFailed, "segment 1 is sealed now");

    // getURI: any segment of any stream — existing or not, including a reader group's table —
    // is served at the advertised Pravega segment endpoint.
    let advertised = s.pravega_segments.clone().expect("the ready line names the Pravega segment endpoint");
    for id in [seg_id("sc", "st", 0), seg_id("sc", "st", e3(6)), seg_id("sc", "rg_kvtable", 0), seg_id("other", "x", 7)]
    {
        let uri = c.get_uri(id).await.unwrap().into_inner();
        assert_eq!(format!("{}:{}", uri.endpoint, uri.port), advertised);
    }

    // Bad input: errors, not panics; the server keeps serving.
    for bad in
        [seg_id("bad scope", "st", 0), seg_id("sc", "st", -1), pb::SegmentId { stream_info: None, segment_id: 0 }]
    {
        let e = c.get_uri(bad).await.unwrap_err();
        assert_eq!(e.code(), tonic::Code::InvalidArgument, "{e:?}");
    }
    let e = c.get_current_segments(stream("sc", "nope")).await.unwrap_err();
    assert_eq!(e.code(), tonic::Code::NotFound, "{e:?}");
    let e = c.get_current_segments(stream("b d", "x")).await.unwrap_err();
    assert_eq!(e.code(), tonic::Code::InvalidArgument, "{e:?}");
    let e = c.get_segments_immediately_following(seg_id("sc", "st", 99)).await.unwrap_err();
    assert_eq!(e.code(), tonic::Code::NotFound, "{e:?}");
    let e = c.is_segment_valid(seg_id("sc", "st", -5)).await.unwrap_err();
    assert_eq!(e.code(), tonic::Code::InvalidArgument);
    assert_eq!(ranges(&current(&mut c).await, "sc", "st").len(), 3);
    s.stop();
}

#[tokio::test]
async fn transactions_use_pravega_shaped_ids_that_are_nadis_own() {
    use pb::ping_txn_status::Status as PS;
    use pb::txn_state::State as TS;
    use pb::txn_status::Status as TX;
    let dir = tempfile::tempdir().unwrap();
    let s = start(dir.path(), &[]);
    let mut c = client(&s).await;
    ok(&s.cli(&["scope", "create", "sc"]));
    ok(&s.cli(&["stream", "create", "sc/st", "--segments", "2"]));
    let nadi = nadi_client::NadiClient::new(std::slice::from_ref(&s.controller_url)).unwrap();
    let begin = |c: &mut Client| {
        let mut c = c.clone();
        async move {
            c.create_transaction(pb::CreateTxnRequest { stream_info: Some(stream("sc", "st")), lease: 90_000 })
                .await
                .unwrap()
                .into_inner()
        }
    };
    let req = |id: &pb::TxnId| pb::TxnRequest {
        stream_info: Some(stream("sc", "st")),
        txn_id: Some(*id),
        writer_id: "123".into(),
        timestamp: i64::MIN,
    };
    let state = |c: &mut Client, id: pb::TxnId| {
        let mut c = c.clone();
        async move { c.check_transaction_state(req(&id)).await.unwrap().into_inner().state() }
    };
    let ping = |c: &mut Client, id: pb::TxnId| {
        let mut c = c.clone();
        async move {
            c.ping_transaction(pb::PingTxnRequest {
                stream_info: Some(stream("sc", "st")),
                txn_id: Some(id),
                lease: 90_000,
            })
            .await
            .unwrap()
            .into_inner()
            .status()
        }
    };

    // Begin: lowBits ≥ 0, epoch 0 in the top bits, the epoch's segments as parents.
    let t = begin(&mut c).await;
    let id = t.txn_id.expect("txnId is set");
    assert!(id.low_bits >= 0, "{id:?}");
    let pid = PravegaTxnId::from_bits(id.high_bits, id.low_bits);
    assert_eq!(pid.epoch(), 0);
    assert_eq!(ranges(&t.active_segments, "sc", "st"), [(0, 0.0, 0.5), (1, 0.5, 1.0)]);
    // It is the Nadi transaction with the UUID text of that number, on that stream.
    let n = nadi.get_txn(&pid.to_nadi()).await.unwrap();
    assert_eq!((n.scope.as_str(), n.stream.as_str(), n.epoch, n.segments.len()), ("sc", "st", 0, 2));
    assert!(n.segments[0].qualified_name.ends_with(&format!("#txn.{}", pid.to_nadi())));
    assert_eq!(n.lease_ms, 90_000);
    assert_eq!(state(&mut c, id).await, TS::Open);
    assert_eq!(ping(&mut c, id).await, PS::Ok);
    assert_eq!(c.commit_transaction(req(&id)).await.unwrap().into_inner().status(), TX::Success);
    assert_eq!(state(&mut c, id).await, TS::Committed);
    assert_eq!(ping(&mut c, id).await, PS::Committed, "a ping after the commit is not an error");
    assert_eq!(c.commit_transaction(req(&id)).await.unwrap().into_inner().status(), TX::Success, "idempotent");
    assert_eq!(ok(&s.cli(&["txn", "list", "sc/st"])).matches("committed").count(), 1);

    // Abort.
    let t2 = begin(&mut c).await.txn_id.unwrap();
    assert_ne!(t2, id);
    assert_eq!(c.abort_transaction(req(&t2)).await.unwrap().into_inner().status(), TX::Success);
    assert_eq!(state(&mut c, t2).await, TS::Aborted);
    assert_eq!(ping(&mut c, t2).await, PS::Aborted);
    assert_eq!(c.abort_transaction(req(&t2)).await.unwrap().into_inner().status(), TX::Success);
    let e = c.commit_transaction(req(&t2)).await.unwrap_err();
    assert_eq!(e.code(), tonic::Code::FailedPrecondition, "an aborted transaction cannot commit: {e:?}");
    let e = c.abort_transaction(req(&id)).await.unwrap_err();
    assert_eq!(e.code(), tonic::Code::FailedPrecondition, "a committed transaction cannot abort: {e:?}");

    // Unknown ids, and a known id under another stream: not found, never a panic.
    let unknown = pb::TxnId { high_bits: 1, low_bits: 2 };
    assert_eq!(state(&mut c, unknown).await, TS::Unknown);
    assert_eq!(ping(&mut c, unknown).await, PS::Aborted);
    assert_eq!(c.commit_transaction(req(&unknown)).await.unwrap().into_inner().status(), TX::TransactionNotFound);
    assert_eq!(c.abort_transaction(req(&unknown)).await.unwrap().into_inner().status(), TX::TransactionNotFound);
    let mut other = req(&id);
    other.stream_info = Some(stream("sc", "other"));
    assert_eq!(c.commit_transaction(other.clone()).await.unwrap().into_inner().status(), TX::TransactionNotFound);
    assert_eq!(c.check_transaction_state(other).await.unwrap().into_inner().state(), TS::Unknown);
    let e = c.commit_transaction(pb::TxnRequest { txn_id: None, ..req(&id) }).await.unwrap_err();
    assert_eq!(e.code(), tonic::Code::InvalidArgument);
    let e = c
        .create_transaction(pb::CreateTxnRequest { stream_info: Some(stream("sc", "nope")), lease: 1 })
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::NotFound, "{e:?}");

    // After a scale, ids carry the new epoch; the epoch's segments are what getEpochSegments
    // (which the client calls for it) answers.
    ok(&s.cli(&["stream", "scale", "sc/st", "--split", "0"]));
    let t3 = begin(&mut c).await;
    let id3 = t3.txn_id.unwrap();
    let p3 = PravegaTxnId::from_bits(id3.high_bits, id3.low_bits);
    assert_eq!(p3.epoch(), 1);
    assert!(id3.low_bits >= 0);
    assert_eq!(t3.active_segments.len(), 3);
    let epoch = c
        .get_epoch_segments(pb::GetEpochSegmentsRequest {
            stream_info: Some(stream("sc", "st")),
            epoch: (id3.high_bits >> 32) as i32,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(epoch.segment_ranges, t3.active_segments);
    // Leases beyond Nadi's bounds are clamped, never LEASE_TOO_LARGE.
    let r = c
        .ping_transaction(pb::PingTxnRequest {
            stream_info: Some(stream("sc", "st")),
            txn_id: Some(id3),
            lease: i64::MAX,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.status(), PS::Ok);
    assert_eq!(c.commit_transaction(req(&id3)).await.unwrap().into_inner().status(), TX::Success);
    s.stop();
}

/// With `--auth required`, a Pravega caller's token (`Bearer`, or the Python client's static
/// `Basic <token>`) is checked and passed on: Nadi's permissions apply to it.
#[tokio::test]
async fn a_callers_token_is_checked_and_passed_on() {
    use pb::create_scope_status::Status as CS;
    let dir = tempfile::tempdir().unwrap();
    let (tokens, token_file) = nadi_tests::token_file(dir.path(), &["admin", "nobody"]);
    let (admin, nobody) = (tokens[0].clone(), tokens[1].clone());
    let s = start(
        &dir.path().join("data"),
        &["--auth", "required", "--token-file", token_file.to_str().unwrap(), "--superusers", "admin"],
    );
    let mut c = client(&s).await;
    let with = |auth: Option<String>, scope: &str| {
        let mut req = tonic::Request::new(pb::ScopeInfo { scope: scope.into() });
        if let Some(a) = auth {
            req.metadata_mut().insert("authorization", a.parse().unwrap());
        }
        req
    };
    let e = c.create_scope(with(None, "a")).await.unwrap_err();
    assert_eq!(e.code(), tonic::Code::Unauthenticated, "{e:?}");
    let e = c.create_scope(with(Some("Bearer nadi_wrong".into()), "a")).await.unwrap_err();
    assert_eq!(e.code(), tonic::Code::Unauthenticated, "{e:?}");
    let e = c.create_scope(with(Some(format!("Bearer {nobody}")), "a")).await.unwrap_err();
    assert_eq!(e.code(), tonic::Code::PermissionDenied, "Nadi checked nobody's permissions: {e:?}");
    let r = c.create_scope(with(Some(format!("Bearer {admin}")), "a")).await.unwrap().into_inner();
    assert_eq!(r.status(), CS::Success);
    // The Python client's static token: `Basic <token>`.
    let r = c.create_scope(with(Some(format!("Basic {admin}")), "b")).await.unwrap().into_inner();
    assert_eq!(r.status(), CS::Success);
    let e = c.create_scope(with(Some(format!("Basic {nobody}")), "c")).await.unwrap_err();
    assert_eq!(e.code(), tonic::Code::PermissionDenied, "{e:?}");
    // What a principal may not see, it does not list.
    let mut req = tonic::Request::new(pb::ScopesRequest::default());
    req.metadata_mut().insert("authorization", format!("Bearer {nobody}").parse().unwrap());
    assert!(c.list_scopes(req).await.unwrap().into_inner().scopes.is_empty());
    // getURI needs a valid token, not a grant on the cluster (it asks with the node's).
    let mut req = tonic::Request::new(seg_id("a", "x", 0));
    req.metadata_mut().insert("authorization", format!("Bearer {nobody}").parse().unwrap());
    let uri = c.get_uri(req).await.unwrap().into_inner();
    assert_eq!(Some(format!("{}:{}", uri.endpoint, uri.port)), s.pravega_segments);
    let e = c.get_uri(seg_id("a", "x", 0)).await.unwrap_err();
    assert_eq!(e.code(), tonic::Code::Unauthenticated, "{e:?}");
    s.stop();
}

/// With `--tls-cert`, the Pravega controller listener speaks TLS like the node's others, and the
/// ready line gives the `tls://` URI Pravega clients use.
#[tokio::test]
async fn the_pravega_controller_serves_tls_when_the_node_does() {
    let dir = tempfile::tempdir().unwrap();
    let pki = nadi_tests::tls::Pki::new(dir.path(), "pravega");
    let args = pki.server_args(&pki.issue("node"));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let s = start(&dir.path().join("data"), &args);
    let uri = s.pravega_controller.clone().unwrap();
    let addr = uri.strip_prefix("tls://").unwrap_or_else(|| panic!("a tls:// URI: {uri}"));
    let security = nadi_security::channel::ClientSecurity {
        token: None,
        tls: Some(nadi_security::tls::ClientTls {
            files: nadi_security::tls::TlsFiles { cert: None, key: None, ca: Some(pki.ca.clone()) },
        }),
    };
    let channel = security.endpoint(&format!("https://{addr}")).unwrap().connect().await.unwrap();
    let mut c = ControllerServiceClient::new(channel);
    let r = c.create_scope(pb::ScopeInfo { scope: "sc".into() }).await.unwrap().into_inner();
    assert_eq!(r.status(), pb::create_scope_status::Status::Success);
    // Plaintext to the TLS port fails cleanly.
    let plain = ControllerServiceClient::connect(format!("http://{addr}")).await;
    if let Ok(mut plain) = plain {
        assert!(plain.create_scope(pb::ScopeInfo { scope: "x".into() }).await.is_err());
    }
    s.stop();
}

/// `nadi controller --pravega-controller-listen` learns where stores serve Pravega segments from
/// their heartbeats: UNAVAILABLE (which the client retries) until a store reports one.
#[tokio::test]
async fn a_clusters_controller_learns_segment_endpoints_from_heartbeats() {
    let dir = tempfile::tempdir().unwrap();
    let (port, pravega_port, store_port) = (free_port(), free_port(), free_port());
    let args = |v: &[&str]| v.iter().map(|s| (*s).to_owned()).collect::<Vec<String>>();
    let data = |name: &str| dir.path().join(name).display().to_string();
    let _controller = Proc::start(
        &args(&[
            "controller",
            "--id",
            "1",
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--peers",
            &format!("1=127.0.0.1:{port}"),
            "--data-dir",
            &data("controller"),
            "--pravega-controller-listen",
            &format!("127.0.0.1:{pravega_port}"),
        ]),
        "nadi controller 1 ready",
        Duration::from_secs(30),
    );
    let store_args = |pravega: &[&str]| {
        let mut a = args(&[
            "--controller",
            &format!("http://127.0.0.1:{port}"),
            "segment-store",
            "--listen",
            &format!("127.0.0.1:{store_port}"),
            "--data-dir",
            &data("store"),
        ]);
        a.extend(args(pravega));
        a
    };
    let store = Proc::start(&store_args(&[]), "nadi segment-store ready", Duration::from_secs(60));
    let mut c = ControllerServiceClient::connect(format!("http://127.0.0.1:{pravega_port}")).await.unwrap();
    let e = c.get_uri(seg_id("sc", "st", 0)).await.unwrap_err();
    assert_eq!(e.code(), tonic::Code::Unavailable, "{e:?}");
    assert!(e.message().contains("--pravega-segment-listen"), "{e:?}");
    store.kill9();
    let segment_port = free_port();
    let _store = Proc::start(
        &store_args(&[
            "--pravega-segment-listen",
            &format!("127.0.0.1:{segment_port}"),
            "--pravega-segment-advertise",
            &format!("store.example:{segment_port}"),
        ]),
        "nadi segment-store ready",
        Duration::from_secs(60),
    );
    let uri = c.get_uri(seg_id("sc", "rg_kvtable", 0)).await.unwrap().into_inner();
    assert_eq!((uri.endpoint.as_str(), uri.port), ("store.example", i32::from(segment_port)));
}

/// The Python interpreter of the venv with `pravega==0.3.8`: `$NADI_PRAVEGA_PYTHON`, else
/// `target/pravega/bin/python` (made by `.ci/run`); `None` if neither exists.
fn pravega_python() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("NADI_PRAVEGA_PYTHON") {
        return Some(PathBuf::from(p));
    }
    let target = nadi_bin().parent().and_then(|p| p.parent()).map(|t| t.join("pravega/bin/python"))?;
    target.exists().then_some(target)
}

/// The unmodified Python client: scopes, streams (fixed and auto-scaling), listing, seal,
/// delete, transactions' bookkeeping; and Nadi's CLI sees what it made.
#[test]
fn the_python_client_manages_scopes_and_streams() {
    let Some(python) = pravega_python() else {
        let how = "python3.11 -m venv target/pravega && target/pravega/bin/pip install pravega==0.3.8 \
                   (or run .ci/run once, or set NADI_PRAVEGA_PYTHON to such a venv's python)";
        if std::env::var_os("NADI_SKIP_PRAVEGA_PY").is_some_and(|v| v == "1") {
            eprintln!("SKIPPED the_python_client_manages_scopes_and_streams: no venv with pravega==0.3.8 ({how})");
            return;
        }
        panic!("the Pravega Python client is not installed: {how}; NADI_SKIP_PRAVEGA_PY=1 skips this test");
    };
    let dir = tempfile::tempdir().unwrap();
    let s = start(dir.path(), &[]);
    let uri = s.pravega_controller.clone().unwrap();
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("python/pravega_controller.py");
    let mut child = Command::new(&python)
        .arg(&script)
        .args([uri.as_str(), "py"])
        .env("RUST_LOG", "error")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("run {}: {e}", python.display()));
    let mut stdin = child.stdin.take().unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut seen = String::new();
    let mut line = String::new();
    let reached = loop {
        line.clear();
        if stdout.read_line(&mut line).unwrap() == 0 {
            break false;
        }
        seen.push_str(&line);
        if line.trim() == "READY-FOR-NADI-CHECK" {
            break true;
        }
    };
    if !reached {
        let out = child.wait_with_output().unwrap();
        panic!("the Python client failed:\n{seen}\n{}", String::from_utf8_lossy(&out.stderr));
    }
    // One source of truth: what the Python client made is what Nadi's CLI sees.
    let listed = ok(&s.cli(&["stream", "list", "py"]));
    let mut names: Vec<&str> = listed.lines().map(str::trim).filter(|l| !l.is_empty()).collect();
    names.sort();
    assert_eq!(names, ["by-data", "by-events"], "{listed}");
    let by_data = ok(&s.cli(&["stream", "info", "py/by-data", "--json"]));
    assert!(by_data.contains("1073741824"), "the size retention the Python client set: {by_data}");
    writeln!(stdin, "go").unwrap();
    drop(stdin);
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut stdout, &mut rest).unwrap();
    seen.push_str(&rest);
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success() && seen.contains("DONE"),
        "the Python client failed:\n{seen}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!ok(&s.cli(&["scope", "list"])).lines().any(|l| l.trim() == "py"));
    s.stop();
}
