//! Property tests of the wire codec: every request and reply round-trips, a stream of frames
//! decodes the same however it is chunked, and — the bounded fuzz target issue 20 asks for, run
//! by every `cargo test` — arbitrary bytes and valid frames damaged by bit flips, truncations,
//! insertions and length changes never panic the frame reader or the decoders: they yield
//! commands, wait for more bytes, or fail with a typed error.

use bytes::{BufMut, Bytes, BytesMut};
use proptest::prelude::*;
use proptest::sample::Index;

use super::event::{self, EVENT_HEADER_LEN};
use super::tests::{encode_reply, encode_request, framed, one_frame};
use super::*;

/// Feeds `bytes` to the frame reader in chunks of `chunk` bytes, as a socket might deliver
/// them, decoding every whole frame both as a request and as a reply, and checking the reader's
/// and the decoders' contracts on the way. Returns the decoded requests.
fn drive(bytes: &[u8], chunk: usize) -> Vec<Request> {
    let mut buf = BytesMut::new();
    let mut requests = Vec::new();
    for piece in bytes.chunks(chunk.max(1)) {
        buf.put_slice(piece);
        loop {
            let before = buf.clone();
            match decode_frame(&mut buf) {
                Ok(None) => {
                    assert_eq!(buf, before, "waiting consumes nothing");
                    if buf.len() >= FRAME_HEADER_LEN {
                        let length = i32::from_be_bytes([buf[4], buf[5], buf[6], buf[7]]);
                        assert!(buf.len() < FRAME_HEADER_LEN + length as usize, "waited with a whole frame");
                    }
                    break;
                }
                Ok(Some(frame)) => {
                    assert_eq!(before.len() - buf.len(), FRAME_HEADER_LEN + frame.payload.len());
                    assert!(frame.payload.len() <= MAX_WIRE_COMMAND_SIZE as usize);
                    if let Some(request) = check_request_decoding(&frame) {
                        requests.push(request);
                    }
                    check_reply_decoding(&frame);
                }
                Err(e) => {
                    assert!(e.is_framing(), "{e:?}");
                    assert_eq!(buf, before, "an error leaves the buffer as it was");
                    return requests;
                }
            }
        }
    }
    requests
}

/// Decodes a frame as a request; a success must re-encode to bytes that decode to the same
/// request (decoding is a projection: trailing bytes and table payload sizes are dropped).
fn check_request_decoding(frame: &Frame) -> Option<Request> {
    match frame.request() {
        Ok(request) => {
            assert_eq!(request.type_code(), frame.type_code);
            assert_eq!(one_frame(&encode_request(&request)).request().as_ref(), Ok(&request));
            Some(request)
        }
        Err(WireError::UnknownCommand { type_code }) => {
            assert_eq!(type_code, frame.type_code);
            assert!(!Request::is_known(type_code));
            None
        }
        Err(WireError::Malformed { type_code, .. }) => {
            assert_eq!(type_code, frame.type_code);
            assert!(Request::is_known(type_code));
            None
        }
        Err(e) => panic!("a payload cannot fail with a framing error: {e:?}"),
    }
}

fn check_reply_decoding(frame: &Frame) {
    match frame.reply() {
        Ok(reply) => {
            assert_eq!(reply.type_code(), frame.type_code);
            assert_eq!(one_frame(&encode_reply(&reply)).reply().as_ref(), Ok(&reply));
        }
        Err(WireError::UnknownCommand { type_code }) => assert!(!Reply::is_known(type_code)),
        Err(WireError::Malformed { type_code, .. }) => assert!(Reply::is_known(type_code)),
        Err(e) => panic!("a payload cannot fail with a framing error: {e:?}"),
    }
}

/// One way to damage a valid frame.
#[derive(Debug, Clone)]
enum Mutation {
    FlipBit(Index, u8),
    SetByte(Index, u8),
    Truncate(Index),
    Insert(Index, u8),
    Remove(Index),
    /// Overwrites the frame's declared length.
    SetLength(i32),
    /// Overwrites the first four bytes of the payload, where most counts and lengths live.
    SetPayloadWord(u32),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        (any::<Index>(), 0u8..8).prop_map(|(i, b)| Mutation::FlipBit(i, b)),
        (any::<Index>(), any::<u8>()).prop_map(|(i, b)| Mutation::SetByte(i, b)),
        any::<Index>().prop_map(Mutation::Truncate),
        (any::<Index>(), any::<u8>()).prop_map(|(i, b)| Mutation::Insert(i, b)),
        any::<Index>().prop_map(Mutation::Remove),
        prop_oneof![Just(-1), Just(0), Just(i32::MAX), Just(0x0100_0000), 0..64i32, any::<i32>()]
            .prop_map(Mutation::SetLength),
        prop_oneof![Just(u32::MAX), Just(0x8000_0000), 0..64u32, any::<u32>()].prop_map(Mutation::SetPayloadWord),
    ]
}

fn apply(bytes: &mut Vec<u8>, m: &Mutation) {
    if bytes.is_empty() {
        return;
    }
    match m {
        Mutation::FlipBit(i, bit) => {
            let i = i.index(bytes.len());
            bytes[i] ^= 1 << bit;
        }
        Mutation::SetByte(i, b) => {
            let i = i.index(bytes.len());
            bytes[i] = *b;
        }
        Mutation::Truncate(i) => bytes.truncate(i.index(bytes.len())),
        Mutation::Insert(i, b) => bytes.insert(i.index(bytes.len() + 1), *b),
        Mutation::Remove(i) => {
            bytes.remove(i.index(bytes.len()));
        }
        Mutation::SetLength(len) => {
            if bytes.len() >= FRAME_HEADER_LEN {
                bytes[4..8].copy_from_slice(&len.to_be_bytes());
            }
        }
        Mutation::SetPayloadWord(w) => {
            if bytes.len() >= FRAME_HEADER_LEN + 4 {
                bytes[8..12].copy_from_slice(&w.to_be_bytes());
            }
        }
    }
}

/// A valid frame of any request or reply.
fn valid_frame() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![Request::arb().prop_map(|r| encode_request(&r)), Reply::arb().prop_map(|r| encode_reply(&r))]
}

proptest! {
    #[test]
    fn every_request_round_trips(request in Request::arb()) {
        let bytes = encode_request(&request);
        let frame = one_frame(&bytes);
        prop_assert_eq!(frame.type_code, request.type_code());
        prop_assert_eq!(frame.request(), Ok(request.clone()));
        // The frame encoder writes the same bytes back.
        let mut again = BytesMut::new();
        frame.encode(&mut again).expect("fits");
        prop_assert_eq!(&again[..], &bytes[..]);
    }

    #[test]
    fn every_reply_round_trips(reply in Reply::arb()) {
        let bytes = encode_reply(&reply);
        let frame = one_frame(&bytes);
        prop_assert_eq!(frame.type_code, reply.type_code());
        prop_assert_eq!(frame.reply(), Ok(reply));
    }

    #[test]
    fn a_stream_of_requests_decodes_whatever_the_chunking(
        requests in proptest::collection::vec(Request::arb(), 1..8),
        chunk in 1usize..64,
    ) {
        let bytes: Vec<u8> = requests.iter().flat_map(encode_request).collect();
        prop_assert_eq!(drive(&bytes, chunk), requests);
    }

    #[test]
    fn a_malformed_commands_request_id_is_the_one_it_carries(request in Request::arb(), cut in any::<Index>()) {
        // A payload cut short decodes only if nothing was cut (or the command has no fields, as
        // KeepAlive); otherwise it is Malformed, and a request id it reports is the real one.
        let bytes = encode_request(&request);
        let payload = Bytes::copy_from_slice(&bytes[FRAME_HEADER_LEN..]);
        let cut = cut.index(payload.len() + 1);
        match Request::decode(request.type_code(), &payload.slice(..cut)) {
            Ok(decoded) => prop_assert_eq!(decoded, request),
            Err(WireError::Malformed { request_id, .. }) => {
                if let Some(id) = request_id {
                    prop_assert_eq!(id, request.request_id());
                }
            }
            Err(e) => prop_assert!(false, "unexpected {:?}", e),
        }
    }

    #[test]
    fn framed_events_split_back_into_their_payloads(
        payloads in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..40), 1..20),
    ) {
        let refs: Vec<&[u8]> = payloads.iter().map(Vec::as_slice).collect();
        let data = framed(&refs);
        prop_assert_eq!(data.len(), payloads.iter().map(|p| EVENT_HEADER_LEN + p.len()).sum::<usize>());
        let events = event::split_events(&data, payloads.len() as i32, data.len() as i32).expect("valid");
        prop_assert_eq!(events.iter().map(|b| b.to_vec()).collect::<Vec<_>>(), payloads);
    }

    #[test]
    fn split_events_never_panics_on_arbitrary_blocks(
        data in proptest::collection::vec(any::<u8>(), 0..96),
        num_event in prop_oneof![Just(1), 0..8i32, any::<i32>()],
        size_delta in prop_oneof![Just(0), -2..3i32, any::<i32>()],
    ) {
        let data = Bytes::from(data);
        let size = (data.len() as i32).wrapping_add(size_delta);
        if let Ok(events) = event::split_events(&data, num_event, size) {
            prop_assert_eq!(events.len(), num_event as usize);
            prop_assert_eq!(
                events.iter().map(|e| EVENT_HEADER_LEN + e.len()).sum::<usize>(),
                data.len()
            );
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// Arbitrary bytes never panic the reader or the decoders: they yield commands, wait for
    /// more, or fail with a typed error.
    #[test]
    fn arbitrary_bytes_never_panic(
        bytes in proptest::collection::vec(any::<u8>(), 0..256),
        chunk in 1usize..300,
    ) {
        drive(&bytes, chunk);
    }

    /// Arbitrary bytes behind a plausible header reach the payload decoders of every type.
    #[test]
    fn arbitrary_payloads_of_known_types_never_panic(
        code in prop_oneof![(-130i32..110), any::<i32>()],
        payload in proptest::collection::vec(any::<u8>(), 0..128),
    ) {
        let mut bytes = Vec::with_capacity(FRAME_HEADER_LEN + payload.len());
        bytes.extend_from_slice(&code.to_be_bytes());
        bytes.extend_from_slice(&(payload.len() as i32).to_be_bytes());
        bytes.extend_from_slice(&payload);
        drive(&bytes, bytes.len());
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2048))]

    /// The bounded fuzz target: valid frames of every command, damaged by bit flips,
    /// truncations, insertions and length changes, never panic the reader or the decoders.
    #[test]
    fn mutated_frames_never_panic(
        frames in proptest::collection::vec(valid_frame(), 1..4),
        mutations in proptest::collection::vec(mutation(), 1..5),
        chunk in 1usize..128,
    ) {
        let mut bytes: Vec<u8> = frames.concat();
        for m in &mutations {
            apply(&mut bytes, m);
        }
        drive(&bytes, chunk);
    }
}
