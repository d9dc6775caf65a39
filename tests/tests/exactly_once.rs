//! Exactly-once appends over the wire: a writer that re-sends an acknowledged batch, on the
//! same stream, after a dropped connection, and after reconnecting with the same writer id,
//! produces no duplicates; the setup handshake tells it where it stands.

use bytes::{Bytes, BytesMut};
use nadi_client::{NadiClient, StreamSpec};
use nadi_proto::framing;
use nadi_proto::segment::v1 as pb;
use nadi_proto::segment::v1::segment_store_client::SegmentStoreClient;
use nadi_tests::Standalone;
use tokio::sync::mpsc;
use tokio_stream::StreamExt;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::Channel;

fn batch(last: i64, events: &[&str]) -> pb::AppendRequest {
    let mut data = BytesMut::new();
    for e in events {
        framing::put_event(&mut data, e.as_bytes()).unwrap();
    }
    pb::AppendRequest {
        kind: Some(pb::append_request::Kind::Batch(pb::AppendBatch {
            last_event_number: last,
            event_count: events.len() as u32,
            data: data.freeze(),
        })),
    }
}

/// Opens an append stream; returns the sender, the response stream and the setup ack.
async fn open(
    store: &mut SegmentStoreClient<Channel>,
    segment: &str,
    writer: &str,
) -> (mpsc::Sender<pb::AppendRequest>, tonic::Streaming<pb::AppendResponse>, pb::SetupAck) {
    let (tx, rx) = mpsc::channel(16);
    let setup = pb::AppendSetup { segment: segment.to_owned(), writer_id: writer.to_owned() };
    tx.send(pb::AppendRequest { kind: Some(pb::append_request::Kind::Setup(setup)) }).await.unwrap();
    let mut resp = store.append(ReceiverStream::new(rx)).await.unwrap().into_inner();
    let Some(Ok(pb::AppendResponse { kind: Some(pb::append_response::Kind::SetupAck(ack)) })) = resp.next().await
    else {
        panic!("no setup ack")
    };
    (tx, resp, ack)
}

async fn ack(resp: &mut tonic::Streaming<pb::AppendResponse>) -> pb::AppendAck {
    match resp.next().await {
        Some(Ok(pb::AppendResponse { kind: Some(pb::append_response::Kind::Ack(a)) })) => a,
        other => panic!("expected an ack, got {other:?}"),
    }
}

async fn read_all(store: &mut SegmentStoreClient<Channel>, segment: &str) -> Vec<Bytes> {
    let req = pb::ReadRequest { segment: segment.to_owned(), offset: 0, follow: false, max_bytes_per_message: 0 };
    let mut s = store.read(req).await.unwrap().into_inner();
    let mut out = Vec::new();
    while let Some(m) = s.next().await {
        for ev in framing::events(&m.unwrap().data) {
            out.push(ev.unwrap().1);
        }
    }
    out
}

#[tokio::test]
async fn resent_batches_are_not_stored_twice() {
    let dir = tempfile::tempdir().unwrap();
    let server = Standalone::start(dir.path());
    let client = NadiClient::new(std::slice::from_ref(&server.controller_url)).unwrap();
    client.create_scope("eo").await.unwrap();
    let info = client.create_stream("eo", "s", StreamSpec::fixed(1)).await.unwrap();
    let segment = info.active_segments[0].qualified_name.clone();
    let mut store = SegmentStoreClient::connect(server.segment_url.clone()).await.unwrap();

    // A new writer starts with no history.
    let (tx, mut resp, setup) = open(&mut store, &segment, "app-writer").await;
    assert_eq!(setup.last_event_number, -1);
    tx.send(batch(2, &["e0", "e1", "e2"])).await.unwrap();
    let first = ack(&mut resp).await;
    assert_eq!(first.last_event_number, 2);
    // The same batch again on the same stream: acknowledged, not stored.
    tx.send(batch(2, &["e0", "e1", "e2"])).await.unwrap();
    let again = ack(&mut resp).await;
    assert_eq!((again.last_event_number, again.segment_length), (2, first.segment_length));

    // Drop the connection, reconnect with the same id: the handshake says 2 is durable, and
    // re-sending everything (as a writer unsure of its last ack would) adds only new events.
    drop(tx);
    drop(resp);
    let (tx, mut resp, setup) = open(&mut store, &segment, "app-writer").await;
    assert_eq!(setup.last_event_number, 2);
    assert_eq!(setup.segment_length, first.segment_length);
    tx.send(batch(2, &["e0", "e1", "e2"])).await.unwrap();
    assert_eq!(ack(&mut resp).await.last_event_number, 2);
    tx.send(batch(4, &["e2", "e3", "e4"])).await.unwrap();
    assert_eq!(ack(&mut resp).await.last_event_number, 4);
    drop(tx);

    // A restart of the store does not forget the writer's position.
    server.stop();
    let server = Standalone::start(dir.path());
    let mut store = SegmentStoreClient::connect(server.segment_url.clone()).await.unwrap();
    let (tx, mut resp, setup) = open(&mut store, &segment, "app-writer").await;
    assert_eq!(setup.last_event_number, 4);
    tx.send(batch(4, &["e3", "e4"])).await.unwrap();
    assert_eq!(ack(&mut resp).await.last_event_number, 4);
    drop(tx);

    let events = read_all(&mut store, &segment).await;
    let expected: Vec<Bytes> = ["e0", "e1", "e2", "e3", "e4"].iter().map(|s| Bytes::from(*s)).collect();
    assert_eq!(events, expected, "every event exactly once, in order");
    let info = store.get_segment_info(pb::GetSegmentInfoRequest { segment }).await.unwrap().into_inner();
    assert_eq!(info.writers, vec![pb::WriterState { writer_id: "app-writer".into(), last_event_number: 4 }]);
}
