//! Garbage bytes on the wire: requests whose bodies are not valid protobuf, sent to the
//! controller and to the segment store, get INVALID_ARGUMENT with the stable code
//! `INVALID_ARGUMENT` (never a hang, a crash or a changed state).

use bytes::{Buf, BufMut};
use nadi_proto::ErrorCode;
use nadi_tests::{Standalone, ok};
use rand::RngCore;
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::{Request, Status};

/// Sends raw bytes as the request message and ignores the reply's bytes.
#[derive(Debug, Clone, Default)]
struct Raw;

impl Encoder for Raw {
    type Item = Vec<u8>;
    type Error = Status;
    fn encode(&mut self, item: Vec<u8>, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
        dst.put_slice(&item);
        Ok(())
    }
}

impl Decoder for Raw {
    type Item = ();
    type Error = Status;
    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<()>, Status> {
        src.advance(src.remaining());
        Ok(Some(()))
    }
}

impl Codec for Raw {
    type Encode = Vec<u8>;
    type Decode = ();
    type Encoder = Raw;
    type Decoder = Raw;
    fn encoder(&mut self) -> Raw {
        Raw
    }
    fn decoder(&mut self) -> Raw {
        Raw
    }
}

async fn send(url: &str, path: &'static str, body: Vec<u8>) -> Result<(), Status> {
    let channel = tonic::transport::Endpoint::from_shared(url.to_owned()).unwrap().connect().await.unwrap();
    let mut grpc = tonic::client::Grpc::new(channel);
    grpc.ready().await.unwrap();
    grpc.unary(Request::new(body), http::uri::PathAndQuery::from_static(path), Raw).await.map(|_| ())
}

#[test]
fn malformed_protobuf_gets_invalid_argument_and_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let s = Standalone::start(dir.path());
    ok(&s.cli(&["scope", "create", "demo"]));
    ok(&s.cli(&["stream", "create", "demo/t", "--segments", "2"]));
    let before = (ok(&s.cli(&["scope", "list"])), ok(&s.cli(&["stream", "info", "demo/t", "--json"])));

    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let mut rng = rand::rng();
    let mut bodies: Vec<Vec<u8>> = vec![
        vec![0x0a, 0x02, 0xff, 0xfe], // field 1 (a string) holding invalid UTF-8
        vec![0x08, 0x05],             // field 1 as a varint where a string is expected
        vec![0x0a, 0x7f, b'a'],       // a length past the end of the message
        vec![0xff; 12],               // not protobuf at all
    ];
    for _ in 0..20 {
        let mut b = vec![0u8; 2 + (rng.next_u32() % 64) as usize];
        rng.fill_bytes(&mut b);
        b[0] = 0x0a; // field 1, length-delimited,
        b[1] = 0x7f; // claiming more bytes (127) than the random rest holds
        bodies.push(b);
    }
    let targets = [
        (s.controller_url.clone(), "/nadi.controller.v1.ControllerService/CreateScope"),
        (s.controller_url.clone(), "/nadi.controller.v1.ControllerService/DeleteStream"),
        (s.segment_url.clone(), "/nadi.segment.v1.SegmentStore/CreateSegment"),
        (s.segment_url.clone(), "/nadi.segment.v1.SegmentStore/DeleteSegment"),
    ];
    for (url, path) in &targets {
        for body in &bodies {
            let err = rt.block_on(send(url, path, body.clone())).expect_err("garbage must be refused");
            assert_eq!(err.code(), tonic::Code::InvalidArgument, "{path} {body:?}: {err:?}");
            let (code, _) = nadi_proto::errors::from_status(&err);
            assert_eq!(code, ErrorCode::InvalidArgument, "{path}: {err:?}");
            assert!(err.message().contains("malformed request"), "{path}: {}", err.message());
        }
    }
    let after = (ok(&s.cli(&["scope", "list"])), ok(&s.cli(&["stream", "info", "demo/t", "--json"])));
    assert_eq!(before, after, "garbage changed nothing");
    let written = ok(&s.cli_stdin(&["write", "demo/t", "--key", "k"], b"still works\n"));
    assert!(written.contains("wrote 1"), "{written}");
}
