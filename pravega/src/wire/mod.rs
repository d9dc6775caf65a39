//! Pravega's segment-store wire protocol (`WireCommands`), as spoken by pravega-client-rust
//! 0.3.7 — the client inside the Python `pravega` 0.3.8 wheel. A codec only: no sockets, no
//! storage. The segment front end in `nadi-server` reads frames with [`decode_frame`], decodes
//! them with [`Request::decode`], and writes [`Reply::encode`]d frames back.
//!
//! # Frames
//!
//! Every command travels as one frame; both integers are big-endian:
//!
//! ```text
//!  0               4               8
//! +---------------+---------------+----------------------------------+
//! | type: i32     | length: i32   | payload: `length` bytes          |
//! +---------------+---------------+----------------------------------+
//!   a type code     0 ..= MAX_WIRE_COMMAND_SIZE (0x00FF_FFFF)
//!
//! Hello(15, 5):  ffffff81 00000008 0000000f 00000005
//! ```
//!
//! The payload is the command's fields in declaration order, encoded as bincode2 encodes them
//! for the Rust client (big-endian; strings `u16 len + UTF-8`; byte arrays `u32 len + bytes`;
//! lists `u32 count + items`; `u128` ids as 16 bytes; `bool` as one byte 0/1): see the table
//! in `wire/codec.rs`. Decoding ignores trailing payload bytes, as the client does.
//!
//! # Conversation
//!
//! - The client opens with `Hello(high 15, low 5)`; the server answers one `Hello` and nothing
//!   before it (an unprompted frame shifts the client's request/reply pairing).
//! - Then requests and replies strictly alternate in order on a pooled connection; each reply
//!   echoes [`Request::request_id`] (the client drops the connection otherwise). Appends are
//!   the exception: a writer's connection carries `SetupAppend`, then `AppendBlockEnd` blocks
//!   acknowledged by `DataAppended` (one block in flight per segment writer).
//! - An `AppendBlockEnd`'s data is Pravega-framed events ([`event`]), which is Nadi's own event
//!   framing: Nadi stores the block as it comes (once checked) and serves readers stored bytes.
//!
//! # Errors
//!
//! Bytes from the network are never trusted: no decoder panics or allocates by a peer's
//! declared size. A bad frame header is a [`WireError`] for which [`WireError::is_framing`]
//! holds (close the connection); an unknown type code is [`WireError::UnknownCommand`]; a
//! malformed known command is [`WireError::Malformed`] with the request id when it precedes
//! the broken field (answer `OperationUnsupported`, or close).
//!
//! Sources: pravega-client-rust at 4778dc5 (`wire_protocol/src/commands.rs`,
//! `wire_commands.rs`, `client_connection.rs`), Pravega's `WireCommands.java` and
//! `AppendProcessor.java`; /work/pravega-research.md §3.

mod codec;
mod commands;
mod error;
pub mod event;
mod frame;

#[cfg(test)]
mod arb;
#[cfg(test)]
mod props;
#[cfg(test)]
mod tests;

pub use commands::*;
pub use error::{EncodeError, PayloadProblem, WireError};
pub use event::EventBlockError;
pub use frame::{Frame, decode_frame};

/// The protocol version this codec speaks (the client's `WIRE_VERSION`).
pub const WIRE_VERSION: i32 = 15;

/// The oldest protocol version this codec accepts (the client's `OLDEST_COMPATIBLE_VERSION`).
pub const OLDEST_COMPATIBLE_VERSION: i32 = 5;

/// Largest payload a frame may carry: 16 MiB − 1, the client's `MAX_WIRECOMMAND_SIZE`.
pub const MAX_WIRE_COMMAND_SIZE: u32 = 0x00FF_FFFF;

/// Size of a frame header: type and length.
pub const FRAME_HEADER_LEN: usize = 8;
