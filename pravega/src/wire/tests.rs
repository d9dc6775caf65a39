//! Example-based tests of the wire codec: golden byte vectors built by hand from
//! pravega-client-rust's layouts (so a change in field order or width fails loudly; the
//! bincode-encoded ones were also checked once against bincode2 2.0.1 with the client's
//! configuration, ConditionalAppend against the client's hand-written `write_fields`), and unit
//! tests of every error path. Property tests and the bounded fuzz target are in `props.rs`.

use bytes::{BufMut, Bytes, BytesMut};

use super::event::{self, EventBlockError};
use super::*;

/// Bytes from hex, ignoring spaces and `|` separators.
fn hex(s: &str) -> Vec<u8> {
    let digits: Vec<u8> = s.bytes().filter(u8::is_ascii_hexdigit).collect();
    assert!(digits.len().is_multiple_of(2), "odd number of hex digits in {s:?}");
    digits
        .chunks(2)
        .map(|pair| u8::from_str_radix(std::str::from_utf8(pair).expect("ascii"), 16).expect("hex"))
        .collect()
}

pub(super) fn encode_request(r: &Request) -> Vec<u8> {
    let mut out = BytesMut::new();
    r.encode(&mut out).expect("encodes");
    out.to_vec()
}

pub(super) fn encode_reply(r: &Reply) -> Vec<u8> {
    let mut out = BytesMut::new();
    r.encode(&mut out).expect("encodes");
    out.to_vec()
}

/// Takes exactly one whole frame from `bytes`.
pub(super) fn one_frame(bytes: &[u8]) -> Frame {
    let mut buf = BytesMut::from(bytes);
    let frame = decode_frame(&mut buf).expect("valid header").expect("whole frame");
    assert!(buf.is_empty(), "{} bytes left after the frame", buf.len());
    frame
}

/// Asserts that `request` encodes to exactly `golden` and that `golden` decodes back to it.
fn assert_request_golden(request: Request, golden: &str) {
    let bytes = hex(golden);
    assert_eq!(encode_request(&request), bytes, "encoding of {}", request.name());
    assert_eq!(one_frame(&bytes).request().expect("decodes"), request);
}

fn assert_reply_golden(reply: Reply, golden: &str) {
    let bytes = hex(golden);
    assert_eq!(encode_reply(&reply), bytes, "encoding of {}", reply.name());
    assert_eq!(one_frame(&bytes).reply().expect("decodes"), reply);
}

const WRITER: u128 = 0x0011_2233_4455_6677_8899_aabb_ccdd_eeff;
const WRITER_HEX: &str = "00112233445566778899aabbccddeeff";

// -------------------------------------------------------------------------------------------
// Golden vectors.

#[test]
fn hello_golden() {
    let golden = "ffffff81 00000008 0000000f 00000005";
    assert_request_golden(Request::Hello(Hello::CURRENT), golden);
    assert_reply_golden(Reply::Hello(Hello::CURRENT), golden);
    assert_eq!(Hello::CURRENT, Hello { high_version: 15, low_version: 5 });
}

#[test]
fn keep_alive_golden_has_an_empty_payload() {
    assert_request_golden(Request::KeepAlive(KeepAlive), "00000064 00000000");
    assert_reply_golden(Reply::KeepAlive(KeepAlive), "00000064 00000000");
}

#[test]
fn setup_append_golden() {
    // request_id i64 | writer_id u128 | segment (u16 len + UTF-8) | delegation_token (u16 len)
    let segment = "sc/st/0.#epoch.0"; // 16 bytes
    let golden = format!(
        "00000001 0000002c | 0000000000000007 | {WRITER_HEX} | 0010 {} | 0000",
        segment.bytes().map(|b| format!("{b:02x}")).collect::<String>()
    );
    assert_request_golden(
        SetupAppend { request_id: 7, writer_id: WRITER, segment: segment.into(), delegation_token: String::new() }
            .into(),
        &golden,
    );
}

#[test]
fn append_block_end_golden_from_the_research() {
    // Writer 1, one event "hi", last event number 1, request 7 (pravega-research.md §3).
    let golden = "00000004 00000036 | 00000000000000000000000000000001 | 0000000a \
                  | 0000000a 00000000 00000002 6869 | 00000001 | 0000000000000001 | 0000000000000007";
    let block = AppendBlockEnd {
        writer_id: 1,
        size_of_whole_events: 10,
        data: Bytes::from(hex("00000000 00000002 6869")),
        num_event: 1,
        last_event_number: 1,
        request_id: 7,
    };
    assert_eq!(block.events().expect("valid block"), vec![Bytes::from_static(b"hi")]);
    assert_request_golden(block.into(), golden);
}

#[test]
fn conditional_block_end_golden() {
    // writer_id | event_number | expected_offset | data (u32 len) | request_id
    let golden = format!(
        "00000059 0000002f | {WRITER_HEX} | 0000000000000003 | 0000000000000400 | 00000003 616263 | 0000000000000009"
    );
    assert_request_golden(
        ConditionalBlockEnd {
            writer_id: WRITER,
            event_number: 3,
            expected_offset: 1024,
            data: Bytes::from_static(b"abc"),
            request_id: 9,
        }
        .into(),
        &golden,
    );
}

#[test]
fn conditional_append_golden_embeds_a_framed_event() {
    // writer_id | event_number | expected_offset | i32 0 | u32 len | data | request_id
    let golden = format!(
        "00000005 00000032 | {WRITER_HEX} | 0000000000000001 | 0000000000000000 | 00000000 00000002 6869 \
         | 0000000000000002"
    );
    assert_request_golden(
        ConditionalAppend {
            writer_id: WRITER,
            event_number: 1,
            expected_offset: 0,
            event: EmbeddedEvent { data: Bytes::from_static(b"hi") },
            request_id: 2,
        }
        .into(),
        &golden,
    );
}

#[test]
fn read_segment_golden_has_the_request_id_last() {
    // segment | offset | suggested_length | delegation_token | request_id
    let golden = "00000009 00000019 | 0001 73 | 0000000000000010 | 00800000 | 0000 | 0000000000000003";
    assert_request_golden(
        ReadSegment {
            segment: "s".into(),
            offset: 16,
            suggested_length: 8 * 1024 * 1024,
            delegation_token: String::new(),
            request_id: 3,
        }
        .into(),
        golden,
    );
}

#[test]
fn segment_read_golden() {
    // segment | offset | at_tail (1 byte) | end_of_segment (1 byte) | data (u32 len) | request_id
    let golden = "0000000a 0000001d | 0001 73 | 0000000000000010 | 01 | 00 | 00000004 deadbeef | 0000000000000003";
    assert_reply_golden(
        SegmentRead {
            segment: "s".into(),
            offset: 16,
            at_tail: true,
            end_of_segment: false,
            data: Bytes::from(hex("deadbeef")),
            request_id: 3,
        }
        .into(),
        golden,
    );
}

#[test]
fn append_setup_and_data_appended_golden() {
    assert_reply_golden(
        AppendSetup { request_id: 7, segment: "s".into(), writer_id: WRITER, last_event_number: i64::MIN }.into(),
        &format!("00000002 00000023 | 0000000000000007 | 0001 73 | {WRITER_HEX} | 8000000000000000"),
    );
    assert_reply_golden(
        DataAppended {
            writer_id: WRITER,
            event_number: 5,
            previous_event_number: 4,
            request_id: 8,
            current_segment_write_offset: 100,
        }
        .into(),
        &format!(
            "00000007 00000030 | {WRITER_HEX} | 0000000000000005 | 0000000000000004 | 0000000000000008 \
             | 0000000000000064"
        ),
    );
}

#[test]
fn stream_segment_info_golden() {
    // request_id | segment_name | exists | is_sealed | is_deleted | last_modified | write_offset | start_offset
    let golden = "0000000c 00000026 | 0000000000000002 | 0001 73 | 01 00 00 \
                  | 0000000000000001 | 00000000000003e8 | 0000000000000000";
    assert_reply_golden(
        StreamSegmentInfo {
            request_id: 2,
            segment_name: "s".into(),
            exists: true,
            is_sealed: false,
            is_deleted: false,
            last_modified: 1,
            write_offset: 1000,
            start_offset: 0,
        }
        .into(),
        golden,
    );
}

#[test]
fn update_table_entries_golden() {
    // request_id | segment | token | u32 count | key: i32 payload (4+len+8), u32 len, data, i64 version
    // | value: i32 payload (len+4), u32 len, data | table_segment_offset
    let golden = "0000004a 00000036 | 0000000000000004 | 0001 74 | 0000 | 00000001 \
                  | 0000000e 00000002 6b31 ffffffffffffffff | 00000007 00000003 763131 | ffffffffffffffff";
    assert_request_golden(
        UpdateTableEntries {
            request_id: 4,
            segment: "t".into(),
            delegation_token: String::new(),
            table_entries: vec![TableEntry {
                key: TableKey { data: Bytes::from_static(b"k1"), version: TableKey::NOT_EXISTS },
                value: TableValue { data: Bytes::from_static(b"v11") },
            }],
            table_segment_offset: -1,
        }
        .into(),
        golden,
    );
}

#[test]
fn remove_table_keys_golden() {
    let golden = "0000004c 0000002a | 0000000000000005 | 0001 74 | 0000 | 00000001 \
                  | 0000000d 00000001 6b 8000000000000000 | ffffffffffffffff";
    assert_request_golden(
        RemoveTableKeys {
            request_id: 5,
            segment: "t".into(),
            delegation_token: String::new(),
            keys: vec![TableKey { data: Bytes::from_static(b"k"), version: TableKey::NO_VERSION }],
            table_segment_offset: -1,
        }
        .into(),
        golden,
    );
}

#[test]
fn read_table_entries_delta_golden() {
    let golden = "00000058 00000019 | 0000000000000006 | 0001 74 | 0000 | 0000000000000000 | 0000000a";
    assert_request_golden(
        ReadTableEntriesDelta {
            request_id: 6,
            segment: "t".into(),
            delegation_token: String::new(),
            from_position: 0,
            suggested_entry_count: 10,
        }
        .into(),
        golden,
    );
}

#[test]
fn table_replies_golden() {
    assert_reply_golden(
        TableEntriesUpdated { request_id: 4, updated_versions: vec![0, 7] }.into(),
        "0000004b 0000001c | 0000000000000004 | 00000002 | 0000000000000000 | 0000000000000007",
    );
    assert_reply_golden(
        TableEntriesDeltaRead {
            request_id: 6,
            segment: "t".into(),
            entries: vec![],
            should_clear: false,
            reached_end: true,
            last_position: 42,
        }
        .into(),
        "00000057 00000019 | 0000000000000006 | 0001 74 | 00000000 | 00 | 01 | 000000000000002a",
    );
    assert_reply_golden(
        TableKeyBadVersion { request_id: 9, segment: "t".into(), server_stack_trace: String::new() }.into(),
        "00000052 0000000d | 0000000000000009 | 0001 74 | 0000",
    );
}

#[test]
fn error_replies_golden() {
    assert_reply_golden(
        SegmentIsSealed { request_id: 1, segment: "s".into(), server_stack_trace: "x".into(), offset: 2 }.into(),
        "00000033 00000016 | 0000000000000001 | 0001 73 | 0001 78 | 0000000000000002",
    );
    assert_reply_golden(
        NoSuchSegment { request_id: 1, segment: "s".into(), server_stack_trace: String::new(), offset: -1 }.into(),
        "00000035 00000015 | 0000000000000001 | 0001 73 | 0000 | ffffffffffffffff",
    );
    assert_reply_golden(
        WrongHost { request_id: 1, segment: "s".into(), correct_host: "h".into(), server_stack_trace: String::new() }
            .into(),
        "00000032 00000010 | 0000000000000001 | 0001 73 | 0001 68 | 0000",
    );
    assert_reply_golden(
        InvalidEventNumber { writer_id: WRITER, event_number: 3, server_stack_trace: String::new() }.into(),
        &format!("00000037 0000001a | {WRITER_HEX} | 0000000000000003 | 0000"),
    );
    assert_reply_golden(
        OperationUnsupported { request_id: 1, operation_name: "op".into(), server_stack_trace: String::new() }.into(),
        "00000039 0000000e | 0000000000000001 | 0002 6f70 | 0000",
    );
}

#[test]
fn strings_are_utf8_with_a_u16_byte_length() {
    // "é" is two UTF-8 bytes: the length counts bytes, not characters.
    assert_reply_golden(
        SegmentCreated { request_id: 1, segment: "é".into() }.into(),
        "00000015 0000000c | 0000000000000001 | 0002 c3a9",
    );
}

// -------------------------------------------------------------------------------------------
// Request ids and version negotiation.

#[test]
fn request_ids_follow_the_clients_rules() {
    assert_eq!(Request::Hello(Hello::CURRENT).request_id(), 0);
    assert_eq!(Request::KeepAlive(KeepAlive).request_id(), -1);
    let read = ReadSegment {
        segment: "s".into(),
        offset: 0,
        suggested_length: 1,
        delegation_token: String::new(),
        request_id: 42,
    };
    assert_eq!(Request::from(read).request_id(), 42);
    assert_eq!(Reply::Hello(Hello::CURRENT).request_id(), 0);
    assert_eq!(Reply::KeepAlive(KeepAlive).request_id(), -1);
    let invalid = InvalidEventNumber { writer_id: 1, event_number: 17, server_stack_trace: String::new() };
    assert_eq!(Reply::from(invalid).request_id(), 17);
    let appended = DataAppended {
        writer_id: 1,
        event_number: 3,
        previous_event_number: 2,
        request_id: 99,
        current_segment_write_offset: 0,
    };
    assert_eq!(Reply::from(appended).request_id(), 99);
}

#[test]
fn hello_compatibility_follows_java() {
    assert!(Hello::CURRENT.is_compatible());
    assert!(Hello { high_version: 20, low_version: 15 }.is_compatible());
    assert!(Hello { high_version: 5, low_version: 1 }.is_compatible());
    assert!(!Hello { high_version: 30, low_version: 16 }.is_compatible());
    assert!(!Hello { high_version: 4, low_version: 1 }.is_compatible());
}

// -------------------------------------------------------------------------------------------
// The frame reader.

#[test]
fn decode_frame_waits_for_the_header_and_the_payload() {
    let bytes = hex("ffffff81 00000008 0000000f 00000005");
    let mut buf = BytesMut::new();
    for (i, b) in bytes.iter().enumerate() {
        assert_eq!(decode_frame(&mut buf), Ok(None), "after {i} bytes");
        buf.put_u8(*b);
    }
    let frame = decode_frame(&mut buf).expect("valid").expect("whole");
    assert_eq!(frame.type_code, type_code::HELLO);
    assert_eq!(frame.reply(), Ok(Reply::Hello(Hello::CURRENT)));
    assert!(buf.is_empty());
}

#[test]
fn decode_frame_takes_frames_one_at_a_time() {
    let mut buf = BytesMut::new();
    Request::Hello(Hello::CURRENT).encode(&mut buf).expect("encodes");
    Request::KeepAlive(KeepAlive).encode(&mut buf).expect("encodes");
    buf.put_slice(&hex("00000009 00000004 0000")); // the start of a third frame
    assert_eq!(decode_frame(&mut buf).expect("valid").expect("whole").type_code, type_code::HELLO);
    assert_eq!(decode_frame(&mut buf).expect("valid").expect("whole").type_code, type_code::KEEP_ALIVE);
    assert_eq!(decode_frame(&mut buf), Ok(None));
    assert_eq!(buf.len(), 10, "the partial frame stays buffered");
}

#[test]
fn decode_frame_rejects_negative_and_oversized_lengths_from_the_header_alone() {
    let mut negative = BytesMut::from(&hex("00000001 ffffffff")[..]);
    assert_eq!(decode_frame(&mut negative), Err(WireError::NegativeLength { type_code: 1, length: -1 }));
    assert_eq!(negative.len(), 8, "the buffer is left as it was");

    let mut oversized = BytesMut::from(&hex("00000004 01000000")[..]);
    let err = decode_frame(&mut oversized).expect_err("over the limit");
    assert_eq!(err, WireError::FrameTooLarge { type_code: 4, length: 0x0100_0000 });
    assert!(err.is_framing() && !err.is_retryable());

    // The limit itself is allowed: the reader waits for the payload.
    let mut at_limit = BytesMut::from(&hex("00000004 00ffffff")[..]);
    assert_eq!(decode_frame(&mut at_limit), Ok(None));
}

#[test]
fn unknown_type_codes_are_a_typed_error_carrying_the_code() {
    // AppendBlock (3) is a Pravega command this side does not decode; 1234 is nothing at all.
    for code in [type_code::APPEND_BLOCK, type_code::PADDING, 1234] {
        let err = Request::decode(code, &Bytes::new()).expect_err("unknown");
        assert_eq!(err, WireError::UnknownCommand { type_code: code });
        assert_eq!(err.type_code(), code);
        assert!(!err.is_framing());
        assert!(!Request::is_known(code));
    }
    // A reply type is unknown as a request, and the other way round.
    assert!(matches!(Request::decode(type_code::DATA_APPENDED, &Bytes::new()), Err(WireError::UnknownCommand { .. })));
    assert!(matches!(Reply::decode(type_code::SETUP_APPEND, &Bytes::new()), Err(WireError::UnknownCommand { .. })));
}

// -------------------------------------------------------------------------------------------
// Malformed payloads.

#[test]
fn a_truncated_command_reports_the_request_id_when_it_came_first() {
    // SetupAppend cut inside writer_id: the request id was read.
    let payload = Bytes::from(hex("0000000000000007 0011"));
    let err = Request::decode(type_code::SETUP_APPEND, &payload).expect_err("truncated");
    assert_eq!(
        err,
        WireError::Malformed {
            type_code: type_code::SETUP_APPEND,
            command: "SetupAppend",
            field: "writer_id",
            request_id: Some(7),
            problem: PayloadProblem::Truncated { needed: 16, remaining: 2 },
        }
    );
    assert_eq!(err.request_id(), Some(7));

    // Cut inside the request id itself: unknown.
    let err = Request::decode(type_code::SETUP_APPEND, &Bytes::from(hex("000000"))).expect_err("truncated");
    assert_eq!(err.request_id(), None);

    // ReadSegment carries its request id last: a truncated one cannot report it.
    let err = Request::decode(type_code::READ_SEGMENT, &Bytes::from(hex("0001 73 00000000"))).expect_err("cut");
    assert!(matches!(err, WireError::Malformed { field: "offset", request_id: None, .. }), "{err:?}");
}

#[test]
fn bools_other_than_zero_or_one_are_rejected() {
    let payload = Bytes::from(hex("0000000000000001 0001 74 02 0000"));
    let err = Request::decode(type_code::DELETE_TABLE_SEGMENT, &payload).expect_err("bad bool");
    assert!(
        matches!(
            err,
            WireError::Malformed {
                field: "must_be_empty",
                request_id: Some(1),
                problem: PayloadProblem::InvalidBool(2),
                ..
            }
        ),
        "{err:?}"
    );
}

#[test]
fn strings_must_be_utf8() {
    let payload = Bytes::from(hex("0000000000000001 0002 c328 0000"));
    let err = Request::decode(type_code::SEAL_SEGMENT, &payload).expect_err("bad UTF-8");
    assert!(
        matches!(err, WireError::Malformed { field: "segment", problem: PayloadProblem::InvalidUtf8, .. }),
        "{err:?}"
    );
}

#[test]
fn a_huge_declared_count_fails_without_allocating_for_it() {
    // TableEntriesUpdated declaring 2^32 - 1 versions with one present.
    let payload = Bytes::from(hex("0000000000000001 ffffffff 0000000000000000"));
    let err = Reply::decode(type_code::TABLE_ENTRIES_UPDATED, &payload).expect_err("truncated");
    assert!(matches!(err, WireError::Malformed { field: "updated_versions", .. }), "{err:?}");
    // A byte array declaring more bytes than the payload has.
    let payload = Bytes::from(hex("0000000000000001 0001 73 ffffffff"));
    assert!(Reply::decode(type_code::TABLE_KEYS_READ, &payload).is_err());
}

#[test]
fn an_embedded_event_must_have_type_zero() {
    let payload =
        Bytes::from(hex(&format!("{WRITER_HEX} 0000000000000001 0000000000000000 ffffffff 00000000 0000000000000002")));
    let err = Request::decode(type_code::CONDITIONAL_APPEND, &payload).expect_err("not an event");
    assert!(matches!(err, WireError::Malformed { problem: PayloadProblem::NotAnEvent(-1), .. }), "{err:?}");
}

#[test]
fn trailing_payload_bytes_are_ignored() {
    let payload = Bytes::from(hex("0000000f 00000005 deadbeef"));
    assert_eq!(Request::decode(type_code::HELLO, &payload), Ok(Request::Hello(Hello::CURRENT)));
    assert_eq!(Request::decode(type_code::KEEP_ALIVE, &payload), Ok(Request::KeepAlive(KeepAlive)));
}

#[test]
fn table_payload_sizes_are_written_but_not_trusted() {
    // A key whose declared payload size is nonsense still decodes, as in the client.
    let payload = Bytes::from(hex("0000000000000001 0001 74 0000 00000001 7fffffff 00000001 6b 0000000000000003"));
    let Ok(Request::ReadTable(read)) = Request::decode(type_code::READ_TABLE, &payload) else {
        panic!("decodes");
    };
    assert_eq!(read.keys, vec![TableKey { data: Bytes::from_static(b"k"), version: 3 }]);
}

// -------------------------------------------------------------------------------------------
// Encoding limits.

#[test]
fn encoding_a_string_over_u16_fails_and_writes_nothing() {
    let mut out = BytesMut::from(&b"prefix"[..]);
    let long = "x".repeat(u16::MAX as usize + 1);
    let reply = Reply::from(SegmentCreated { request_id: 1, segment: long });
    let err = reply.encode(&mut out).expect_err("too long");
    assert_eq!(err, EncodeError::FieldTooLong { command: "SegmentCreated", field: "segment", len: 65536, max: 65535 });
    assert_eq!(&out[..], b"prefix");
    // Exactly u16::MAX bytes fit.
    let reply = Reply::from(SegmentCreated { request_id: 1, segment: "x".repeat(u16::MAX as usize) });
    reply.encode(&mut out).expect("fits");
}

#[test]
fn encoding_a_frame_over_the_limit_fails_and_writes_nothing() {
    let mut out = BytesMut::new();
    let reply = Reply::from(SegmentRead {
        segment: "s".into(),
        offset: 0,
        at_tail: false,
        end_of_segment: false,
        data: Bytes::from(vec![0u8; MAX_WIRE_COMMAND_SIZE as usize]),
        request_id: 1,
    });
    let err = reply.encode(&mut out).expect_err("too large");
    assert!(matches!(err, EncodeError::FrameTooLarge { command: "SegmentRead", .. }), "{err:?}");
    assert!(out.is_empty());
}

// -------------------------------------------------------------------------------------------
// Event framing inside blocks.

pub(super) fn framed(payloads: &[&[u8]]) -> Bytes {
    let mut out = BytesMut::new();
    for p in payloads {
        event::put_event(&mut out, p).expect("small event");
    }
    out.freeze()
}

#[test]
fn split_events_returns_the_payloads() {
    let data = framed(&[b"a", b"", b"hello"]);
    let len = data.len() as i32;
    let events = event::split_events(&data, 3, len).expect("valid");
    assert_eq!(events, vec![Bytes::from_static(b"a"), Bytes::new(), Bytes::from_static(b"hello")]);
    assert_eq!(data.len(), event::framed_len(1) + event::framed_len(0) + event::framed_len(5));
}

#[test]
fn split_events_rejects_every_malformed_block() {
    let data = framed(&[b"ab", b"cd"]);
    let len = data.len() as i32;
    let cases: Vec<(Bytes, i32, i32, EventBlockError)> = vec![
        (data.clone(), 0, len, EventBlockError::InvalidCount { num_event: 0 }),
        (data.clone(), -3, len, EventBlockError::InvalidCount { num_event: -3 }),
        (data.clone(), 2, len - 1, EventBlockError::SizeMismatch { declared: len - 1, actual: 20 }),
        (data.clone(), 2, -1, EventBlockError::SizeMismatch { declared: -1, actual: 20 }),
        (data.clone(), 3, len, EventBlockError::CountMismatch { declared: 3, found: 2 }),
        (data.clone(), 1, len, EventBlockError::TrailingBytes { declared: 1, remaining: 10 }),
        (data.slice(..14), 2, 14, EventBlockError::TruncatedHeader { index: 1, at: 10 }),
        (data.slice(..19), 2, 19, EventBlockError::TruncatedPayload { index: 1, at: 10, length: 2, remaining: 1 }),
        (Bytes::from(hex("00000001 00000000")), 1, 8, EventBlockError::NotAnEvent { index: 0, at: 0, type_code: 1 }),
        (Bytes::from(hex("00000000 fffffffe")), 1, 8, EventBlockError::NegativeLength { index: 0, at: 0, length: -2 }),
        (
            Bytes::from(hex("00000000 00800001")),
            1,
            8,
            EventBlockError::TooLarge { index: 0, at: 0, length: 0x0080_0001 },
        ),
    ];
    for (data, num_event, size, expected) in cases {
        assert_eq!(event::split_events(&data, num_event, size), Err(expected.clone()), "{expected}");
        assert!(!expected.is_retryable());
    }
}

#[test]
fn an_eight_mib_event_is_allowed_and_one_more_byte_is_not() {
    let max = nadi_proto::framing::MAX_EVENT_SIZE;
    assert_eq!(event::event_header(max).expect("fits"), hex("00000000 00800000")[..]);
    assert_eq!(event::event_header(max + 1), Err(EncodeError::EventTooLarge { len: max + 1, max }));
    let mut out = BytesMut::new();
    assert!(event::put_event(&mut out, &vec![0; max + 1]).is_err());
    assert!(out.is_empty());
}
