//! Segment operations over the wire against the real binary: conditional append, truncate,
//! merge (same container only), attributes with compare-and-set, seal, and their typed errors.

use bytes::BytesMut;
use nadi_proto::ErrorCode;
use nadi_proto::errors::from_status;
use nadi_proto::framing;
use nadi_proto::segment::v1 as pb;
use nadi_proto::segment::v1::segment_store_client::SegmentStoreClient;
use nadi_tests::Standalone;
use tokio_stream::StreamExt;
use tonic::transport::Channel;

fn frame(events: &[&str]) -> bytes::Bytes {
    let mut b = BytesMut::new();
    for e in events {
        framing::put_event(&mut b, e.as_bytes()).unwrap();
    }
    b.freeze()
}

async fn read_from(
    store: &mut SegmentStoreClient<Channel>,
    segment: &str,
    offset: u64,
) -> Result<Vec<String>, tonic::Status> {
    let req = pb::ReadRequest { segment: segment.into(), offset, follow: false, max_bytes_per_message: 0 };
    let mut s = store.read(req).await?.into_inner();
    let mut out = Vec::new();
    while let Some(m) = s.next().await {
        for ev in framing::events(&m?.data) {
            out.push(String::from_utf8(ev.unwrap().1.to_vec()).unwrap());
        }
    }
    Ok(out)
}

async fn cond(
    store: &mut SegmentStoreClient<Channel>,
    segment: &str,
    expected: u64,
    events: &[&str],
) -> Result<u64, tonic::Status> {
    let req = pb::ConditionalAppendRequest {
        segment: segment.into(),
        expected_offset: expected,
        event_count: events.len() as u32,
        data: frame(events),
    };
    Ok(store.conditional_append(req).await?.into_inner().segment_length)
}

#[tokio::test]
async fn conditional_append_truncate_merge_attributes() {
    let dir = tempfile::tempdir().unwrap();
    let server = Standalone::start(dir.path());
    let mut store = SegmentStoreClient::connect(server.segment_url.clone()).await.unwrap();
    let target = "ops/s/0.#epoch.0".to_owned();
    store.create_segment(pb::CreateSegmentRequest { segment: target.clone() }).await.unwrap();

    // Conditional append at the right and the wrong offset.
    assert_eq!(cond(&mut store, &target, 0, &["t0", "t1"]).await.unwrap(), 20);
    let err = cond(&mut store, &target, 0, &["lost"]).await.unwrap_err();
    let (code, meta) = from_status(&err);
    assert_eq!(code, ErrorCode::OffsetMismatch);
    assert_eq!(meta.get("actual_length").map(String::as_str), Some("20"));

    // Truncate to the second event; reading before it is a typed error naming the start.
    let trunc = |offset| pb::TruncateSegmentRequest { segment: target.clone(), offset };
    let err = store.truncate_segment(trunc(2)).await.unwrap_err();
    assert_eq!(from_status(&err).0, ErrorCode::BadOffset, "not an event boundary");
    store.truncate_segment(trunc(10)).await.unwrap();
    let err = read_from(&mut store, &target, 0).await.unwrap_err();
    let (code, meta) = from_status(&err);
    assert_eq!(code, ErrorCode::Truncated);
    assert_eq!(meta.get("start_offset").map(String::as_str), Some("10"));
    assert_eq!(read_from(&mut store, &target, 10).await.unwrap(), vec!["t1"]);

    // Merge: find a source in another container (refused) and one in the same (merged).
    let mut merged = false;
    let mut refused = false;
    for n in 1..64 {
        let source = format!("ops/s/{n}.#epoch.1");
        store.create_segment(pb::CreateSegmentRequest { segment: source.clone() }).await.unwrap();
        cond(&mut store, &source, 0, &["m0", "m1"]).await.unwrap();
        let merge = pb::MergeSegmentsRequest { target: target.clone(), source: source.clone() };
        let err = store.merge_segments(merge.clone()).await.unwrap_err();
        let code = from_status(&err).0;
        if code == ErrorCode::InvalidArgument {
            assert!(err.message().contains("different containers"), "{}", err.message());
            refused = true;
            continue;
        }
        assert_eq!(code, ErrorCode::SegmentNotSealed, "an unsealed source cannot be merged");
        store.seal_segment(pb::SealSegmentRequest { segment: source.clone() }).await.unwrap();
        let len = store.merge_segments(merge).await.unwrap().into_inner().target_length;
        assert_eq!(len, 40);
        let gone = store.get_segment_info(pb::GetSegmentInfoRequest { segment: source }).await.unwrap_err();
        assert_eq!(from_status(&gone).0, ErrorCode::SegmentNotFound);
        merged = true;
        if refused {
            break;
        }
    }
    assert!(merged && refused, "expected both a same-container and a cross-container source");

    // Attributes: compare-and-set.
    let upd =
        |expected, value| pb::UpdateAttributeRequest { segment: target.clone(), key: "cp".into(), expected, value };
    store.update_attribute(upd(None, 1)).await.unwrap();
    let err = store.update_attribute(upd(None, 2)).await.unwrap_err();
    let (code, meta) = from_status(&err);
    assert_eq!(code, ErrorCode::AttributeMismatch);
    assert_eq!(meta.get("actual_value").map(String::as_str), Some("1"));
    store.update_attribute(upd(Some(1), 2)).await.unwrap();

    // Everything survives a restart; a sealed target refuses appends.
    server.stop();
    let server = Standalone::start(dir.path());
    let mut store = SegmentStoreClient::connect(server.segment_url.clone()).await.unwrap();
    let info =
        store.get_segment_info(pb::GetSegmentInfoRequest { segment: target.clone() }).await.unwrap().into_inner();
    assert_eq!((info.start_offset, info.length), (10, 40));
    assert_eq!(info.attributes, vec![pb::Attribute { key: "cp".into(), value: 2 }]);
    assert_eq!(read_from(&mut store, &target, 10).await.unwrap(), vec!["t1", "m0", "m1"]);
    store.seal_segment(pb::SealSegmentRequest { segment: target.clone() }).await.unwrap();
    let err = cond(&mut store, &target, 40, &["late"]).await.unwrap_err();
    assert_eq!(from_status(&err).0, ErrorCode::Sealed);
}
