//! The typed commands: [`Request`] (what a Pravega client sends to a segment store) and
//! [`Reply`] (what the segment store answers), one struct per command, with the field order
//! and encodings of pravega-client-rust 0.3.7 (`wire_protocol/src/commands.rs`, the crate the
//! Python `pravega` 0.3.8 wheel is built from) and the meaning of Pravega's `WireCommands.java`.
//!
//! Invariants:
//! - a struct's fields are declared in wire order; the `command!` macro derives encoding,
//!   decoding (and, in tests, a proptest strategy) from that one declaration, so the three
//!   cannot drift apart;
//! - `decode(type_code, payload)` reads the fields in order and ignores trailing bytes (as the
//!   client does); an unknown type code is [`WireError::UnknownCommand`], a short or invalid
//!   field is [`WireError::Malformed`] carrying the request id if it was read before the bad
//!   field;
//! - `encode` writes a whole frame or nothing (on error the output is rolled back).
//!
//! Commands Pravega defines that neither enum decodes (a decode gives `UnknownCommand`):
//! `AppendBlock` (3), `Padding` (−1), `PartialEvent` (−2) and a bare `Event` (0) — the Rust
//! client never sends them (it sends whole blocks as `AppendBlockEnd`); and the admin-only
//! `FlushToStorage`, `ListStorageChunks`, `GetTableSegmentInfo`, `MergeSegmentsBatch`,
//! `ErrorMessage` and their replies.

use bytes::{BufMut, Bytes, BytesMut};

use super::codec::{Field, Reader, TooLong};
use super::error::{EncodeError, PayloadProblem, WireError};
use super::event::{self, EventBlockError};
use super::{FRAME_HEADER_LEN, MAX_WIRE_COMMAND_SIZE, OLDEST_COMPATIBLE_VERSION, WIRE_VERSION};

/// The type code of every command, as Pravega numbers them (`WireCommandType.java`).
pub mod type_code {
    /// Version negotiation, both directions; the first frame on every connection.
    pub const HELLO: i32 = -127;
    /// Filler inside an append stream (Java clients only; never decoded here).
    pub const PADDING: i32 = -1;
    /// An event split across append blocks (Java clients only; never decoded here).
    pub const PARTIAL_EVENT: i32 = -2;
    /// The header type of an event inside segment data (see [`super::super::event`]).
    pub const EVENT: i32 = 0;
    pub const SETUP_APPEND: i32 = 1;
    pub const APPEND_SETUP: i32 = 2;
    /// Raw append data before an `AppendBlockEnd` (Java clients only; never decoded here).
    pub const APPEND_BLOCK: i32 = 3;
    pub const APPEND_BLOCK_END: i32 = 4;
    pub const CONDITIONAL_APPEND: i32 = 5;
    pub const DATA_APPENDED: i32 = 7;
    pub const CONDITIONAL_CHECK_FAILED: i32 = 8;
    pub const READ_SEGMENT: i32 = 9;
    pub const SEGMENT_READ: i32 = 10;
    pub const GET_STREAM_SEGMENT_INFO: i32 = 11;
    pub const STREAM_SEGMENT_INFO: i32 = 12;
    pub const CREATE_SEGMENT: i32 = 20;
    pub const SEGMENT_CREATED: i32 = 21;
    pub const SEAL_SEGMENT: i32 = 28;
    pub const SEGMENT_SEALED: i32 = 29;
    pub const DELETE_SEGMENT: i32 = 30;
    pub const SEGMENT_DELETED: i32 = 31;
    pub const UPDATE_SEGMENT_POLICY: i32 = 32;
    pub const SEGMENT_POLICY_UPDATED: i32 = 33;
    pub const GET_SEGMENT_ATTRIBUTE: i32 = 34;
    pub const SEGMENT_ATTRIBUTE: i32 = 35;
    pub const UPDATE_SEGMENT_ATTRIBUTE: i32 = 36;
    pub const SEGMENT_ATTRIBUTE_UPDATED: i32 = 37;
    pub const TRUNCATE_SEGMENT: i32 = 38;
    pub const SEGMENT_TRUNCATED: i32 = 39;
    pub const CREATE_TRANSIENT_SEGMENT: i32 = 40;
    pub const WRONG_HOST: i32 = 50;
    pub const SEGMENT_IS_SEALED: i32 = 51;
    pub const SEGMENT_ALREADY_EXISTS: i32 = 52;
    pub const NO_SUCH_SEGMENT: i32 = 53;
    pub const INVALID_EVENT_NUMBER: i32 = 55;
    pub const SEGMENT_IS_TRUNCATED: i32 = 56;
    pub const OPERATION_UNSUPPORTED: i32 = 57;
    pub const MERGE_SEGMENTS: i32 = 58;
    pub const SEGMENTS_MERGED: i32 = 59;
    pub const AUTH_TOKEN_CHECK_FAILED: i32 = 60;
    pub const CREATE_TABLE_SEGMENT: i32 = 70;
    pub const DELETE_TABLE_SEGMENT: i32 = 71;
    pub const MERGE_TABLE_SEGMENTS: i32 = 72;
    pub const SEAL_TABLE_SEGMENT: i32 = 73;
    pub const UPDATE_TABLE_ENTRIES: i32 = 74;
    pub const TABLE_ENTRIES_UPDATED: i32 = 75;
    pub const REMOVE_TABLE_KEYS: i32 = 76;
    pub const TABLE_KEYS_REMOVED: i32 = 77;
    pub const READ_TABLE: i32 = 78;
    pub const TABLE_READ: i32 = 79;
    pub const TABLE_SEGMENT_NOT_EMPTY: i32 = 80;
    pub const TABLE_KEY_DOES_NOT_EXIST: i32 = 81;
    pub const TABLE_KEY_BAD_VERSION: i32 = 82;
    pub const READ_TABLE_KEYS: i32 = 83;
    pub const TABLE_KEYS_READ: i32 = 84;
    pub const READ_TABLE_ENTRIES: i32 = 85;
    pub const TABLE_ENTRIES_READ: i32 = 86;
    pub const TABLE_ENTRIES_DELTA_READ: i32 = 87;
    pub const READ_TABLE_ENTRIES_DELTA: i32 = 88;
    pub const CONDITIONAL_BLOCK_END: i32 = 89;
    pub const KEEP_ALIVE: i32 = 100;
}

/// Declares a command struct whose fields are in wire order, with its encoder and decoder.
macro_rules! command {
    (
        $(#[$meta:meta])*
        $name:ident = $code:expr;
        { $( $(#[$fmeta:meta])* $field:ident : $ty:ty ),+ $(,)? }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, PartialEq, Eq)]
        pub struct $name {
            $( $(#[$fmeta])* pub $field: $ty, )+
        }

        impl $name {
            /// This command's type code.
            pub const TYPE_CODE: i32 = $code;
            const NAME: &'static str = stringify!($name);

            fn put_fields(&self, out: &mut BytesMut) -> Result<(), EncodeError> {
                $(
                    Field::put(&self.$field, out).map_err(|TooLong { len, max }| EncodeError::FieldTooLong {
                        command: Self::NAME,
                        field: stringify!($field),
                        len,
                        max,
                    })?;
                )+
                Ok(())
            }

            fn get_fields(r: &mut Reader<'_>) -> Result<Self, WireError> {
                let mut known_request_id: Option<i64> = None;
                $(
                    let $field = <$ty as Field>::get(r).map_err(|problem| WireError::Malformed {
                        type_code: Self::TYPE_CODE,
                        command: Self::NAME,
                        field: stringify!($field),
                        request_id: known_request_id,
                        problem,
                    })?;
                    if stringify!($field) == "request_id" {
                        known_request_id = Field::as_i64(&$field);
                    }
                )+
                let _ = known_request_id;
                Ok($name { $( $field, )+ })
            }

            /// A proptest strategy over every value of this command.
            #[cfg(test)]
            pub(crate) fn arb() -> impl proptest::strategy::Strategy<Value = Self> {
                use proptest::strategy::Strategy as _;
                ( $( <$ty as super::arb::Arb>::arb(), )+ ).prop_map(|( $( $field, )+ )| $name { $( $field, )+ })
            }
        }
    };
}

/// Declares an enum of commands (each variant wraps the struct of the same name) with its
/// type code, name, frame encoder and decoder.
macro_rules! command_enum {
    (
        $(#[$meta:meta])*
        $enum:ident { $( $variant:ident ),+ $(,)? }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, PartialEq, Eq)]
        pub enum $enum {
            $( #[doc = concat!("See [`", stringify!($variant), "`].")] $variant($variant), )+
        }

        impl $enum {
            /// The type code the frame carries.
            pub fn type_code(&self) -> i32 {
                match self {
                    $( $enum::$variant(_) => $variant::TYPE_CODE, )+
                }
            }

            /// The command's name, for logs and `OperationUnsupported`.
            pub fn name(&self) -> &'static str {
                match self {
                    $( $enum::$variant(_) => stringify!($variant), )+
                }
            }

            /// Appends the whole frame (type, length, payload) to `out`; on error nothing is
            /// appended.
            pub fn encode(&self, out: &mut BytesMut) -> Result<(), EncodeError> {
                let start = out.len();
                out.put_i32(self.type_code());
                out.put_i32(0);
                let written = match self {
                    $( $enum::$variant(c) => c.put_fields(out), )+
                };
                finish_frame(out, start, self.name(), written)
            }

            /// Decodes the payload of a frame of type `type_code`. Trailing bytes are ignored.
            pub fn decode(type_code: i32, payload: &Bytes) -> Result<Self, WireError> {
                let mut r = Reader::new(payload);
                match type_code {
                    $( $variant::TYPE_CODE => $variant::get_fields(&mut r).map($enum::$variant), )+
                    _ => Err(WireError::UnknownCommand { type_code }),
                }
            }

            /// Whether `type_code` is one this enum decodes.
            pub fn is_known(type_code: i32) -> bool {
                matches!(type_code, $( $variant::TYPE_CODE )|+)
            }

            /// A proptest strategy over every command of this enum.
            #[cfg(test)]
            pub(crate) fn arb() -> proptest::strategy::BoxedStrategy<Self> {
                use proptest::strategy::Strategy as _;
                proptest::strategy::Union::new(vec![
                    $( $variant::arb().prop_map($enum::$variant).boxed(), )+
                ])
                .boxed()
            }
        }
    };
}

/// Patches the length into the header written at `start`, or rolls the frame back.
fn finish_frame(
    out: &mut BytesMut,
    start: usize,
    command: &'static str,
    written: Result<(), EncodeError>,
) -> Result<(), EncodeError> {
    let checked = written.and_then(|()| {
        let len = out.len() - start - FRAME_HEADER_LEN;
        if len > MAX_WIRE_COMMAND_SIZE as usize {
            return Err(EncodeError::FrameTooLarge { command, len });
        }
        Ok(len)
    });
    match checked {
        Ok(len) => {
            out[start + 4..start + FRAME_HEADER_LEN].copy_from_slice(&(len as i32).to_be_bytes());
            Ok(())
        }
        Err(e) => {
            out.truncate(start);
            Err(e)
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Table segment entries.

/// A key of a table segment, with the version a conditional update expects (in requests) or
/// the key's current version (in replies).
///
/// Wire: `i32 payload size (= 4 + len + 8; written, ignored when read, as the client does) |
/// u32 len | key bytes | i64 version`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableKey {
    /// The key, opaque to the server (the client's reader groups put CBOR here).
    pub data: Bytes,
    /// [`TableKey::NO_VERSION`], [`TableKey::NOT_EXISTS`] or a version ≥ 0.
    pub version: i64,
}

impl TableKey {
    /// In a request: update or remove whatever the key's version is (unconditional).
    pub const NO_VERSION: i64 = i64::MIN;
    /// In a request: the key must not exist. In a `TableRead` reply: the key is absent.
    pub const NOT_EXISTS: i64 = -1;
}

impl Field for TableKey {
    fn put(&self, out: &mut BytesMut) -> Result<(), TooLong> {
        let payload = payload_size(self.data.len(), 4 + 8)?;
        out.put_i32(payload);
        self.data.put(out)?;
        out.put_i64(self.version);
        Ok(())
    }
    fn get(r: &mut Reader<'_>) -> Result<Self, PayloadProblem> {
        let _payload = r.i32()?;
        let data = r.bytes()?;
        let version = r.i64()?;
        Ok(TableKey { data, version })
    }
}

/// A value of a table segment.
///
/// Wire: `i32 payload size (= len + 4; written, ignored when read) | u32 len | value bytes`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableValue {
    /// The value, opaque to the server.
    pub data: Bytes,
}

impl Field for TableValue {
    fn put(&self, out: &mut BytesMut) -> Result<(), TooLong> {
        let payload = payload_size(self.data.len(), 4)?;
        out.put_i32(payload);
        self.data.put(out)
    }
    fn get(r: &mut Reader<'_>) -> Result<Self, PayloadProblem> {
        let _payload = r.i32()?;
        let data = r.bytes()?;
        Ok(TableValue { data })
    }
}

/// One key and its value. A list of entries (`TableEntries`) is `u32 count | (key, value)…`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableEntry {
    pub key: TableKey,
    pub value: TableValue,
}

impl Field for TableEntry {
    fn put(&self, out: &mut BytesMut) -> Result<(), TooLong> {
        self.key.put(out)?;
        self.value.put(out)
    }
    fn get(r: &mut Reader<'_>) -> Result<Self, PayloadProblem> {
        Ok(TableEntry { key: TableKey::get(r)?, value: TableValue::get(r)? })
    }
}

/// The `i32` payload size a table key or value declares: its data length plus `extra`.
fn payload_size(len: usize, extra: usize) -> Result<i32, TooLong> {
    let max = i32::MAX as usize - extra;
    if len > max {
        return Err(TooLong { len, max });
    }
    Ok((len + extra) as i32)
}

/// An event embedded in a `ConditionalAppend`: `i32 type (0) | u32 len | payload`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EmbeddedEvent {
    /// The event's payload, without Pravega's 8-byte header.
    pub data: Bytes,
}

impl Field for EmbeddedEvent {
    fn put(&self, out: &mut BytesMut) -> Result<(), TooLong> {
        out.put_i32(type_code::EVENT);
        self.data.put(out)
    }
    fn get(r: &mut Reader<'_>) -> Result<Self, PayloadProblem> {
        let kind = r.i32()?;
        if kind != type_code::EVENT {
            return Err(PayloadProblem::NotAnEvent(kind));
        }
        Ok(EmbeddedEvent { data: r.bytes()? })
    }
}

// ---------------------------------------------------------------------------------------------
// Both directions.

command! {
    /// Version negotiation. The client sends `Hello(15, 5)` first on every connection and
    /// expects exactly one `Hello` back before anything else; the server must not send one
    /// unprompted. The request id of a `Hello` is 0.
    Hello = type_code::HELLO;
    {
        /// The newest protocol version the sender speaks.
        high_version: i32,
        /// The oldest protocol version the sender still speaks.
        low_version: i32,
    }
}

impl Hello {
    /// What this codec speaks: versions 5 to 15, like the 0.3.7 client and Pravega 0.13.
    pub const CURRENT: Hello = Hello { high_version: WIRE_VERSION, low_version: OLDEST_COMPATIBLE_VERSION };

    /// Whether a peer announcing this range can talk to us (Java's `AppendProcessor.hello`:
    /// incompatible when its low version is above ours or its high version below our oldest).
    pub fn is_compatible(&self) -> bool {
        self.low_version <= WIRE_VERSION && self.high_version >= OLDEST_COMPATIBLE_VERSION
    }
}

/// A liveness probe with an empty payload (any payload bytes are ignored). The Rust client
/// never sends one; a server echoes it. Its request id is −1.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct KeepAlive;

impl KeepAlive {
    /// This command's type code.
    pub const TYPE_CODE: i32 = type_code::KEEP_ALIVE;

    fn put_fields(&self, _out: &mut BytesMut) -> Result<(), EncodeError> {
        Ok(())
    }

    fn get_fields(_r: &mut Reader<'_>) -> Result<Self, WireError> {
        Ok(KeepAlive)
    }

    #[cfg(test)]
    pub(crate) fn arb() -> impl proptest::strategy::Strategy<Value = Self> {
        proptest::strategy::Just(KeepAlive)
    }
}

// ---------------------------------------------------------------------------------------------
// Requests: appends.

command! {
    /// Opens (or re-opens, after a reconnect) a writer's append session on a segment. Answered
    /// by `AppendSetup` with the writer's last durable event number — even for a sealed segment
    /// (any other reply makes the Rust writer reconnect forever; sealing is reported on the
    /// next append, as Java does).
    SetupAppend = type_code::SETUP_APPEND;
    {
        request_id: i64,
        /// The writer's id (a random UUID per client process and segment writer).
        writer_id: u128,
        /// The fully qualified segment name, `scope/stream/number.#epoch.N`.
        segment: String,
        /// `""` while auth is off.
        delegation_token: String,
    }
}

command! {
    /// A block of whole events from one writer: `data` is `num_event` Pravega-framed events
    /// (see [`super::event`]) numbered up to `last_event_number`. Applied all or nothing;
    /// answered by `DataAppended`, or `SegmentIsSealed`/`NoSuchSegment`.
    AppendBlockEnd = type_code::APPEND_BLOCK_END;
    {
        writer_id: u128,
        /// Bytes of whole events in `data` (the Rust client sends only whole events, so this
        /// is `data.len()`).
        size_of_whole_events: i32,
        /// The events, each with its 8-byte header.
        data: Bytes,
        /// How many events `data` holds (Java rejects ≤ 0).
        num_event: i32,
        /// The event number of the last event in the block; a block whose number is not above
        /// the writer's stored one is a retry and is acked without appending.
        last_event_number: i64,
        request_id: i64,
    }
}

impl AppendBlockEnd {
    /// The block's event payloads (headers stripped, zero-copy), after checking the block's
    /// framing against `num_event` and `size_of_whole_events`.
    pub fn events(&self) -> Result<Vec<Bytes>, EventBlockError> {
        event::split_events(&self.data, self.num_event, self.size_of_whole_events)
    }
}

command! {
    /// A single event appended only if the segment's length is `expected_offset` (sent by the
    /// client's CLI only). The event is embedded with its header.
    ConditionalAppend = type_code::CONDITIONAL_APPEND;
    {
        writer_id: u128,
        event_number: i64,
        expected_offset: i64,
        event: EmbeddedEvent,
        request_id: i64,
    }
}

command! {
    /// Raw bytes (no event headers: the ByteStream writer) appended only if the segment's
    /// length is `expected_offset`. Answered by `DataAppended` or `ConditionalCheckFailed`; a
    /// retry (`event_number` not above the stored one) is acked before the offset check.
    ConditionalBlockEnd = type_code::CONDITIONAL_BLOCK_END;
    {
        writer_id: u128,
        /// The number of the last event in `data`.
        event_number: i64,
        expected_offset: i64,
        data: Bytes,
        request_id: i64,
    }
}

// ---------------------------------------------------------------------------------------------
// Requests: segments.

command! {
    /// Reads from `offset`; answered by `SegmentRead` at exactly that offset (the client
    /// asserts it), or `SegmentIsTruncated`/`NoSuchSegment`.
    ReadSegment = type_code::READ_SEGMENT;
    {
        segment: String,
        offset: i64,
        /// How many bytes the client would like (8 MiB for events, 1 MiB for ByteStream).
        suggested_length: i32,
        delegation_token: String,
        request_id: i64,
    }
}

command! {
    /// Asks for a segment's length, head and sealed state; answered by `StreamSegmentInfo`.
    GetStreamSegmentInfo = type_code::GET_STREAM_SEGMENT_INFO;
    {
        request_id: i64,
        segment_name: String,
        delegation_token: String,
    }
}

command! {
    /// Creates a segment (the client uses it only for events over 8 MiB, via a transient
    /// segment path, and in its CLI).
    CreateSegment = type_code::CREATE_SEGMENT;
    {
        request_id: i64,
        segment: String,
        target_rate: i32,
        /// Pravega's `ScaleType` byte: 0 no scaling, 1 by events, 2 by bytes.
        scale_type: u8,
        delegation_token: String,
    }
}

command! {
    /// Creates a transient segment to stage a large event (client's `large_writer`).
    CreateTransientSegment = type_code::CREATE_TRANSIENT_SEGMENT;
    {
        request_id: i64,
        writer_id: u128,
        /// The parent segment the transient one belongs to.
        segment: String,
        delegation_token: String,
    }
}

command! {
    /// Changes a segment's scaling policy (client CLI only).
    UpdateSegmentPolicy = type_code::UPDATE_SEGMENT_POLICY;
    {
        request_id: i64,
        segment: String,
        target_rate: i32,
        scale_type: u8,
        delegation_token: String,
    }
}

command! {
    /// Appends segment `source` to `target` (the client's `large_writer` merges a transient
    /// segment into its parent).
    MergeSegments = type_code::MERGE_SEGMENTS;
    {
        request_id: i64,
        target: String,
        source: String,
        delegation_token: String,
    }
}

command! {
    /// Seals a segment (the ByteStream writer's `seal`); answered by `SegmentSealed`.
    SealSegment = type_code::SEAL_SEGMENT;
    {
        request_id: i64,
        segment: String,
        delegation_token: String,
    }
}

command! {
    /// Drops a segment's data below `truncation_offset` (ByteStream `truncate`); answered by
    /// `SegmentTruncated`.
    TruncateSegment = type_code::TRUNCATE_SEGMENT;
    {
        request_id: i64,
        segment: String,
        truncation_offset: i64,
        delegation_token: String,
    }
}

command! {
    /// Deletes a segment (client CLI only); answered by `SegmentDeleted`.
    DeleteSegment = type_code::DELETE_SEGMENT;
    {
        request_id: i64,
        segment: String,
        delegation_token: String,
    }
}

command! {
    /// Reads a segment attribute (the client's index streams and CLI only).
    GetSegmentAttribute = type_code::GET_SEGMENT_ATTRIBUTE;
    {
        request_id: i64,
        segment_name: String,
        /// The attribute's UUID.
        attribute_id: u128,
        delegation_token: String,
    }
}

command! {
    /// Compare-and-sets a segment attribute (the client's index streams and CLI only).
    UpdateSegmentAttribute = type_code::UPDATE_SEGMENT_ATTRIBUTE;
    {
        request_id: i64,
        segment_name: String,
        attribute_id: u128,
        new_value: i64,
        /// `i64::MIN` means "no value yet".
        expected_value: i64,
        delegation_token: String,
    }
}

// ---------------------------------------------------------------------------------------------
// Requests: table segments.

command! {
    /// Creates a table segment (one per reader group); answered by `SegmentCreated` or
    /// `SegmentAlreadyExists`, both fine for the client.
    CreateTableSegment = type_code::CREATE_TABLE_SEGMENT;
    {
        request_id: i64,
        segment: String,
        delegation_token: String,
    }
}

command! {
    /// Deletes a table segment; answered by `SegmentDeleted`, `NoSuchSegment` or (when
    /// `must_be_empty` and it is not) `TableSegmentNotEmpty`.
    DeleteTableSegment = type_code::DELETE_TABLE_SEGMENT;
    {
        request_id: i64,
        segment: String,
        must_be_empty: bool,
        delegation_token: String,
    }
}

command! {
    /// Merges table segment `source` into `target` (client CLI only).
    MergeTableSegments = type_code::MERGE_TABLE_SEGMENTS;
    {
        request_id: i64,
        target: String,
        source: String,
        delegation_token: String,
    }
}

command! {
    /// Seals a table segment (client CLI only).
    SealTableSegment = type_code::SEAL_TABLE_SEGMENT;
    {
        request_id: i64,
        segment: String,
        delegation_token: String,
    }
}

command! {
    /// A batch of conditional puts, atomic as a whole; answered by `TableEntriesUpdated` with
    /// one new version per entry, or `TableKeyBadVersion`/`TableKeyDoesNotExist`.
    UpdateTableEntries = type_code::UPDATE_TABLE_ENTRIES;
    {
        request_id: i64,
        segment: String,
        delegation_token: String,
        /// Keys carry the expected version; the same key may appear more than once.
        table_entries: Vec<TableEntry>,
        /// Expected segment length for the whole batch; the client always sends −1 (none).
        table_segment_offset: i64,
    }
}

command! {
    /// A batch of conditional removes; answered by `TableKeysRemoved` or a version failure.
    RemoveTableKeys = type_code::REMOVE_TABLE_KEYS;
    {
        request_id: i64,
        segment: String,
        delegation_token: String,
        keys: Vec<TableKey>,
        table_segment_offset: i64,
    }
}

command! {
    /// Point lookups; answered by `TableRead` with one entry per key, in order.
    ReadTable = type_code::READ_TABLE;
    {
        request_id: i64,
        segment: String,
        delegation_token: String,
        keys: Vec<TableKey>,
    }
}

command! {
    /// Pages through a table's keys; answered by `TableKeysRead`.
    ReadTableKeys = type_code::READ_TABLE_KEYS;
    {
        request_id: i64,
        segment: String,
        delegation_token: String,
        suggested_key_count: i32,
        /// Empty for the first page, then the token of the previous reply.
        continuation_token: Bytes,
    }
}

command! {
    /// Pages through a table's entries; answered by `TableEntriesRead`.
    ReadTableEntries = type_code::READ_TABLE_ENTRIES;
    {
        request_id: i64,
        segment: String,
        delegation_token: String,
        suggested_entry_count: i32,
        continuation_token: Bytes,
    }
}

command! {
    /// Entries changed at or after `from_position` (how reader groups sync their state);
    /// answered by `TableEntriesDeltaRead`.
    ReadTableEntriesDelta = type_code::READ_TABLE_ENTRIES_DELTA;
    {
        request_id: i64,
        segment: String,
        delegation_token: String,
        from_position: i64,
        suggested_entry_count: i32,
    }
}

// ---------------------------------------------------------------------------------------------
// Replies: appends.

command! {
    /// The answer to `SetupAppend`: events up to `last_event_number` are durable and acked.
    AppendSetup = type_code::APPEND_SETUP;
    {
        request_id: i64,
        segment: String,
        writer_id: u128,
        /// `i64::MIN` when the writer has appended nothing to this segment.
        last_event_number: i64,
    }
}

command! {
    /// Acks every event of the writer numbered up to `event_number`. The client reads only
    /// `writer_id` and `event_number`.
    DataAppended = type_code::DATA_APPENDED;
    {
        writer_id: u128,
        event_number: i64,
        previous_event_number: i64,
        request_id: i64,
        /// The segment's length after the append.
        current_segment_write_offset: i64,
    }
}

command! {
    /// A conditional append found the segment at another length; fails the writer's events
    /// numbered from `event_number`.
    ConditionalCheckFailed = type_code::CONDITIONAL_CHECK_FAILED;
    {
        writer_id: u128,
        event_number: i64,
        request_id: i64,
    }
}

command! {
    /// The writer sent an event number out of sequence. Its "request id" is `event_number`.
    /// The Rust writer ignores it, so a server sends it and then closes the connection.
    InvalidEventNumber = type_code::INVALID_EVENT_NUMBER;
    {
        writer_id: u128,
        event_number: i64,
        server_stack_trace: String,
    }
}

// ---------------------------------------------------------------------------------------------
// Replies: segments.

command! {
    /// Data read from `offset` (which must equal the request's). Empty data with
    /// `end_of_segment` means the segment is sealed and fully read.
    SegmentRead = type_code::SEGMENT_READ;
    {
        segment: String,
        offset: i64,
        /// The read reached the current end of an open segment.
        at_tail: bool,
        /// The read reached the end of a sealed segment.
        end_of_segment: bool,
        data: Bytes,
        request_id: i64,
    }
}

command! {
    /// The answer to `GetStreamSegmentInfo`.
    StreamSegmentInfo = type_code::STREAM_SEGMENT_INFO;
    {
        request_id: i64,
        segment_name: String,
        exists: bool,
        is_sealed: bool,
        is_deleted: bool,
        /// Milliseconds since the epoch.
        last_modified: i64,
        /// The segment's length (the tail).
        write_offset: i64,
        /// The first readable offset (the head, after truncation).
        start_offset: i64,
    }
}

command! {
    /// A segment or table segment was created.
    SegmentCreated = type_code::SEGMENT_CREATED;
    {
        request_id: i64,
        segment: String,
    }
}

command! {
    /// A segment was sealed.
    SegmentSealed = type_code::SEGMENT_SEALED;
    {
        request_id: i64,
        segment: String,
    }
}

command! {
    /// A segment was truncated.
    SegmentTruncated = type_code::SEGMENT_TRUNCATED;
    {
        request_id: i64,
        segment: String,
    }
}

command! {
    /// A segment or table segment was deleted.
    SegmentDeleted = type_code::SEGMENT_DELETED;
    {
        request_id: i64,
        segment: String,
    }
}

command! {
    /// A segment's scaling policy was changed.
    SegmentPolicyUpdated = type_code::SEGMENT_POLICY_UPDATED;
    {
        request_id: i64,
        segment: String,
    }
}

command! {
    /// `source` was appended to `target`.
    SegmentsMerged = type_code::SEGMENTS_MERGED;
    {
        request_id: i64,
        target: String,
        source: String,
        new_target_write_offset: i64,
    }
}

command! {
    /// An attribute's value (`i64::MIN` when unset).
    SegmentAttribute = type_code::SEGMENT_ATTRIBUTE;
    {
        request_id: i64,
        value: i64,
    }
}

command! {
    /// Whether a compare-and-set of an attribute took effect.
    SegmentAttributeUpdated = type_code::SEGMENT_ATTRIBUTE_UPDATED;
    {
        request_id: i64,
        success: bool,
    }
}

// ---------------------------------------------------------------------------------------------
// Replies: errors.

command! {
    /// The segment is owned by another segment store; the client asks the controller again.
    WrongHost = type_code::WRONG_HOST;
    {
        request_id: i64,
        segment: String,
        /// Ignored by the client.
        correct_host: String,
        server_stack_trace: String,
    }
}

command! {
    /// The segment is sealed. On an append, `segment` must be the exact qualified name (the
    /// writer parses it to find its successors).
    SegmentIsSealed = type_code::SEGMENT_IS_SEALED;
    {
        request_id: i64,
        segment: String,
        server_stack_trace: String,
        offset: i64,
    }
}

command! {
    /// The segment (or table segment) already exists.
    SegmentAlreadyExists = type_code::SEGMENT_ALREADY_EXISTS;
    {
        request_id: i64,
        segment: String,
        server_stack_trace: String,
    }
}

command! {
    /// The segment does not exist (readers treat it as completed).
    NoSuchSegment = type_code::NO_SUCH_SEGMENT;
    {
        request_id: i64,
        segment: String,
        server_stack_trace: String,
        offset: i64,
    }
}

command! {
    /// The read offset is below the segment's start (readers treat it as completed).
    SegmentIsTruncated = type_code::SEGMENT_IS_TRUNCATED;
    {
        request_id: i64,
        segment: String,
        start_offset: i64,
        server_stack_trace: String,
        offset: i64,
    }
}

command! {
    /// The request is understood but not served; the answer for anything unimplemented.
    OperationUnsupported = type_code::OPERATION_UNSUPPORTED;
    {
        request_id: i64,
        operation_name: String,
        server_stack_trace: String,
    }
}

command! {
    /// The delegation token was refused (only with auth on).
    AuthTokenCheckFailed = type_code::AUTH_TOKEN_CHECK_FAILED;
    {
        request_id: i64,
        server_stack_trace: String,
        /// −1 unspecified, 0 check failed, 1 token expired.
        error_code: i32,
    }
}

// ---------------------------------------------------------------------------------------------
// Replies: table segments.

command! {
    /// The new version of each updated entry, in request order.
    TableEntriesUpdated = type_code::TABLE_ENTRIES_UPDATED;
    {
        request_id: i64,
        updated_versions: Vec<i64>,
    }
}

command! {
    /// The keys were removed.
    TableKeysRemoved = type_code::TABLE_KEYS_REMOVED;
    {
        request_id: i64,
        segment: String,
    }
}

command! {
    /// One entry per requested key, in order; an absent key has version −1 and an empty value
    /// (the client panics on an empty list).
    TableRead = type_code::TABLE_READ;
    {
        request_id: i64,
        segment: String,
        entries: Vec<TableEntry>,
    }
}

command! {
    /// `DeleteTableSegment` with `must_be_empty` found keys.
    TableSegmentNotEmpty = type_code::TABLE_SEGMENT_NOT_EMPTY;
    {
        request_id: i64,
        segment: String,
        server_stack_trace: String,
    }
}

command! {
    /// A conditional update or remove named a version for a key that does not exist.
    TableKeyDoesNotExist = type_code::TABLE_KEY_DOES_NOT_EXIST;
    {
        request_id: i64,
        segment: String,
        server_stack_trace: String,
    }
}

command! {
    /// A conditional update or remove expected another version.
    TableKeyBadVersion = type_code::TABLE_KEY_BAD_VERSION;
    {
        request_id: i64,
        segment: String,
        server_stack_trace: String,
    }
}

command! {
    /// A page of keys.
    TableKeysRead = type_code::TABLE_KEYS_READ;
    {
        request_id: i64,
        segment: String,
        keys: Vec<TableKey>,
        /// Where the next page starts; an empty page ends the listing.
        continuation_token: Bytes,
    }
}

command! {
    /// A page of entries.
    TableEntriesRead = type_code::TABLE_ENTRIES_READ;
    {
        request_id: i64,
        segment: String,
        entries: Vec<TableEntry>,
        continuation_token: Bytes,
    }
}

command! {
    /// Live entries written at or after the requested position, in position order; the client
    /// reads only `entries` and `last_position` and loops until a reply has no entries.
    TableEntriesDeltaRead = type_code::TABLE_ENTRIES_DELTA_READ;
    {
        request_id: i64,
        segment: String,
        entries: Vec<TableEntry>,
        should_clear: bool,
        reached_end: bool,
        /// The position just past the last returned entry.
        last_position: i64,
    }
}

// ---------------------------------------------------------------------------------------------
// The enums.

command_enum! {
    /// A command a Pravega client sends to a segment store.
    Request {
        Hello,
        KeepAlive,
        SetupAppend,
        AppendBlockEnd,
        ConditionalAppend,
        ConditionalBlockEnd,
        ReadSegment,
        GetStreamSegmentInfo,
        CreateSegment,
        CreateTransientSegment,
        UpdateSegmentPolicy,
        MergeSegments,
        SealSegment,
        TruncateSegment,
        DeleteSegment,
        GetSegmentAttribute,
        UpdateSegmentAttribute,
        CreateTableSegment,
        DeleteTableSegment,
        MergeTableSegments,
        SealTableSegment,
        UpdateTableEntries,
        RemoveTableKeys,
        ReadTable,
        ReadTableKeys,
        ReadTableEntries,
        ReadTableEntriesDelta,
    }
}

impl Request {
    /// The request id the reply must carry (the client drops the connection on a mismatch):
    /// the command's `request_id` field, except `Hello` (0) and `KeepAlive` (−1).
    pub fn request_id(&self) -> i64 {
        match self {
            Request::Hello(_) => 0,
            Request::KeepAlive(_) => -1,
            Request::SetupAppend(c) => c.request_id,
            Request::AppendBlockEnd(c) => c.request_id,
            Request::ConditionalAppend(c) => c.request_id,
            Request::ConditionalBlockEnd(c) => c.request_id,
            Request::ReadSegment(c) => c.request_id,
            Request::GetStreamSegmentInfo(c) => c.request_id,
            Request::CreateSegment(c) => c.request_id,
            Request::CreateTransientSegment(c) => c.request_id,
            Request::UpdateSegmentPolicy(c) => c.request_id,
            Request::MergeSegments(c) => c.request_id,
            Request::SealSegment(c) => c.request_id,
            Request::TruncateSegment(c) => c.request_id,
            Request::DeleteSegment(c) => c.request_id,
            Request::GetSegmentAttribute(c) => c.request_id,
            Request::UpdateSegmentAttribute(c) => c.request_id,
            Request::CreateTableSegment(c) => c.request_id,
            Request::DeleteTableSegment(c) => c.request_id,
            Request::MergeTableSegments(c) => c.request_id,
            Request::SealTableSegment(c) => c.request_id,
            Request::UpdateTableEntries(c) => c.request_id,
            Request::RemoveTableKeys(c) => c.request_id,
            Request::ReadTable(c) => c.request_id,
            Request::ReadTableKeys(c) => c.request_id,
            Request::ReadTableEntries(c) => c.request_id,
            Request::ReadTableEntriesDelta(c) => c.request_id,
        }
    }
}

command_enum! {
    /// A command a segment store sends to a Pravega client.
    Reply {
        Hello,
        KeepAlive,
        AppendSetup,
        DataAppended,
        ConditionalCheckFailed,
        InvalidEventNumber,
        SegmentRead,
        StreamSegmentInfo,
        SegmentCreated,
        SegmentSealed,
        SegmentTruncated,
        SegmentDeleted,
        SegmentPolicyUpdated,
        SegmentsMerged,
        SegmentAttribute,
        SegmentAttributeUpdated,
        WrongHost,
        SegmentIsSealed,
        SegmentAlreadyExists,
        NoSuchSegment,
        SegmentIsTruncated,
        OperationUnsupported,
        AuthTokenCheckFailed,
        TableEntriesUpdated,
        TableKeysRemoved,
        TableRead,
        TableSegmentNotEmpty,
        TableKeyDoesNotExist,
        TableKeyBadVersion,
        TableKeysRead,
        TableEntriesRead,
        TableEntriesDeltaRead,
    }
}

impl Reply {
    /// The request id the client matches this reply against: the `request_id` field, except
    /// `Hello` (0), `KeepAlive` (−1) and `InvalidEventNumber` (its `event_number`), as in the
    /// client's `Reply::get_request_id`.
    pub fn request_id(&self) -> i64 {
        match self {
            Reply::Hello(_) => 0,
            Reply::KeepAlive(_) => -1,
            Reply::InvalidEventNumber(c) => c.event_number,
            Reply::AppendSetup(c) => c.request_id,
            Reply::DataAppended(c) => c.request_id,
            Reply::ConditionalCheckFailed(c) => c.request_id,
            Reply::SegmentRead(c) => c.request_id,
            Reply::StreamSegmentInfo(c) => c.request_id,
            Reply::SegmentCreated(c) => c.request_id,
            Reply::SegmentSealed(c) => c.request_id,
            Reply::SegmentTruncated(c) => c.request_id,
            Reply::SegmentDeleted(c) => c.request_id,
            Reply::SegmentPolicyUpdated(c) => c.request_id,
            Reply::SegmentsMerged(c) => c.request_id,
            Reply::SegmentAttribute(c) => c.request_id,
            Reply::SegmentAttributeUpdated(c) => c.request_id,
            Reply::WrongHost(c) => c.request_id,
            Reply::SegmentIsSealed(c) => c.request_id,
            Reply::SegmentAlreadyExists(c) => c.request_id,
            Reply::NoSuchSegment(c) => c.request_id,
            Reply::SegmentIsTruncated(c) => c.request_id,
            Reply::OperationUnsupported(c) => c.request_id,
            Reply::AuthTokenCheckFailed(c) => c.request_id,
            Reply::TableEntriesUpdated(c) => c.request_id,
            Reply::TableKeysRemoved(c) => c.request_id,
            Reply::TableRead(c) => c.request_id,
            Reply::TableSegmentNotEmpty(c) => c.request_id,
            Reply::TableKeyDoesNotExist(c) => c.request_id,
            Reply::TableKeyBadVersion(c) => c.request_id,
            Reply::TableKeysRead(c) => c.request_id,
            Reply::TableEntriesRead(c) => c.request_id,
            Reply::TableEntriesDeltaRead(c) => c.request_id,
        }
    }
}

macro_rules! impl_from {
    ($enum:ident: $( $variant:ident ),+ $(,)?) => {
        $( impl From<$variant> for $enum {
            fn from(c: $variant) -> Self {
                $enum::$variant(c)
            }
        } )+
    };
}

impl_from!(Request: SetupAppend, AppendBlockEnd, ConditionalAppend, ConditionalBlockEnd, ReadSegment,
    GetStreamSegmentInfo, CreateSegment, CreateTransientSegment, UpdateSegmentPolicy, MergeSegments, SealSegment,
    TruncateSegment, DeleteSegment, GetSegmentAttribute, UpdateSegmentAttribute, CreateTableSegment,
    DeleteTableSegment, MergeTableSegments, SealTableSegment, UpdateTableEntries, RemoveTableKeys, ReadTable,
    ReadTableKeys, ReadTableEntries, ReadTableEntriesDelta);

impl_from!(Reply: AppendSetup, DataAppended, ConditionalCheckFailed, InvalidEventNumber, SegmentRead,
    StreamSegmentInfo, SegmentCreated, SegmentSealed, SegmentTruncated, SegmentDeleted, SegmentPolicyUpdated,
    SegmentsMerged, SegmentAttribute, SegmentAttributeUpdated, WrongHost, SegmentIsSealed, SegmentAlreadyExists,
    NoSuchSegment, SegmentIsTruncated, OperationUnsupported, AuthTokenCheckFailed, TableEntriesUpdated,
    TableKeysRemoved, TableRead, TableSegmentNotEmpty, TableKeyDoesNotExist, TableKeyBadVersion, TableKeysRead,
    TableEntriesRead, TableEntriesDeltaRead);
