//! The append stream's codec: a batch's events are framed straight into the gRPC message
//! buffer, from the payloads the writer was given, when the batch is sent.
//!
//! Framing events into a batch buffer first, and then letting prost copy that buffer into the
//! message buffer, copied every byte twice on the writer's side (about a tenth of the client's
//! CPU at the maximum rate; docs/performance.md). The bytes on the wire are exactly the
//! `AppendRequest` that prost encodes for the same batch (tested below), so the store is
//! unchanged.
//!
//! Owns: the append request encoding. Called by: `writer` (the segment task's append stream).

use std::sync::Arc;

use bytes::{BufMut, Bytes};
use nadi_proto::framing::{EVENT_HEADER_LEN, EVENT_TYPE};
use nadi_proto::segment::v1 as pb;
use prost::Message;
use prost::encoding::{WireType, encode_key, encode_varint, encoded_len_varint, key_len};
use tonic::Status;
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};

/// One message of an append stream, as the writer hands it over.
pub(crate) enum Outgoing {
    Setup(pb::AppendSetup),
    /// Events numbered `last - payloads.len() + 1 ..= last`, framed when encoded.
    Batch {
        last: i64,
        payloads: Arc<Vec<Bytes>>,
    },
}

/// Bytes of `payloads` framed.
fn framed_len(payloads: &[Bytes]) -> usize {
    payloads.iter().map(|p| EVENT_HEADER_LEN + p.len()).sum()
}

/// `AppendRequest.batch` (field 2) holding `AppendBatch { last_event_number: 1, event_count: 2,
/// data: 3 }`, with proto3's rule that fields at their default value are left out; `data_len`
/// is `framed_len(payloads)`.
fn encode_batch(last: i64, payloads: &[Bytes], data_len: usize, buf: &mut impl BufMut) {
    let count = payloads.len() as u32;
    let mut inner = 0;
    if last != 0 {
        inner += key_len(1) + encoded_len_varint(last as u64);
    }
    if count != 0 {
        inner += key_len(2) + encoded_len_varint(count as u64);
    }
    if data_len != 0 {
        inner += key_len(3) + encoded_len_varint(data_len as u64) + data_len;
    }
    encode_key(2, WireType::LengthDelimited, buf);
    encode_varint(inner as u64, buf);
    if last != 0 {
        encode_key(1, WireType::Varint, buf);
        encode_varint(last as u64, buf);
    }
    if count != 0 {
        encode_key(2, WireType::Varint, buf);
        encode_varint(count as u64, buf);
    }
    if data_len != 0 {
        encode_key(3, WireType::LengthDelimited, buf);
        encode_varint(data_len as u64, buf);
        for p in payloads {
            buf.put_u32(EVENT_TYPE);
            buf.put_u32(p.len() as u32);
            buf.put_slice(p);
        }
    }
}

/// Upper bound of the encoded size of a batch of `data_len` framed bytes (for one allocation
/// of the message buffer).
fn batch_size_bound(data_len: usize) -> usize {
    // Field 2's key and length, three keys, two varints of at most 10 bytes, data's length.
    1 + 10 + 3 + 10 + 10 + 10 + data_len
}

#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct AppendCodec;

pub(crate) struct AppendEncoder;

impl Encoder for AppendEncoder {
    type Item = Outgoing;
    type Error = Status;

    fn encode(&mut self, item: Outgoing, buf: &mut EncodeBuf<'_>) -> Result<(), Status> {
        match item {
            Outgoing::Setup(s) => pb::AppendRequest { kind: Some(pb::append_request::Kind::Setup(s)) }
                .encode(buf)
                .map_err(|e| Status::internal(format!("encoding the append setup: {e}"))),
            Outgoing::Batch { last, payloads } => {
                let data_len = framed_len(&payloads);
                buf.reserve(batch_size_bound(data_len));
                encode_batch(last, &payloads, data_len, buf);
                Ok(())
            }
        }
    }
}

/// The responses are plain prost messages.
pub(crate) struct AppendDecoder(tonic_prost::ProstDecoder<pb::AppendResponse>);

impl Decoder for AppendDecoder {
    type Item = pb::AppendResponse;
    type Error = Status;

    fn decode(&mut self, buf: &mut DecodeBuf<'_>) -> Result<Option<pb::AppendResponse>, Status> {
        self.0.decode(buf)
    }
}

impl Codec for AppendCodec {
    type Encode = Outgoing;
    type Decode = pb::AppendResponse;
    type Encoder = AppendEncoder;
    type Decoder = AppendDecoder;

    fn encoder(&mut self) -> AppendEncoder {
        AppendEncoder
    }

    fn decoder(&mut self) -> AppendDecoder {
        AppendDecoder(tonic_prost::ProstCodec::<pb::AppendRequest, pb::AppendResponse>::default().decoder())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::BytesMut;
    use nadi_proto::framing;

    /// The batch on the wire is the message prost makes of the same events framed into one
    /// buffer, for event numbers and counts at and around the varint and default-value edges.
    #[test]
    fn batch_encodes_as_prost_does() {
        let sizes: &[&[usize]] = &[&[0], &[1], &[5, 0, 300], &[127, 128], &[70_000], &[3; 200]];
        for (i, sizes) in sizes.iter().enumerate() {
            let payloads: Vec<Bytes> =
                sizes.iter().enumerate().map(|(j, &n)| Bytes::from(vec![(i * 31 + j) as u8; n])).collect();
            for last in [0, 1, 127, 128, 300, i64::MAX - 1] {
                let mut data = BytesMut::new();
                for p in &payloads {
                    framing::put_event(&mut data, p).unwrap();
                }
                let expected = pb::AppendRequest {
                    kind: Some(pb::append_request::Kind::Batch(pb::AppendBatch {
                        last_event_number: last,
                        event_count: payloads.len() as u32,
                        data: data.freeze(),
                    })),
                }
                .encode_to_vec();
                let mut ours = Vec::new();
                encode_batch(last, &payloads, framed_len(&payloads), &mut ours);
                assert_eq!(ours, expected, "sizes {sizes:?}, last {last}");
                assert!(ours.len() <= batch_size_bound(framed_len(&payloads)));
            }
        }
    }
}
