//! Frames: the unit of Pravega's wire protocol, `i32 type | i32 length | payload`, both
//! integers big-endian. [`decode_frame`] splits a connection's incoming bytes into frames as
//! they arrive; [`Frame::encode`] writes one.
//!
//! Invariants: a frame is returned only when all its payload bytes are in the buffer, and then
//! exactly `8 + length` bytes are consumed; a header with a negative length or one over
//! [`MAX_WIRE_COMMAND_SIZE`] is an error as soon as the header is in (the payload is never
//! waited for or buffered), and the buffer is left as it was.

use bytes::{Buf, BufMut, Bytes, BytesMut};

use super::error::{EncodeError, WireError};
use super::{FRAME_HEADER_LEN, MAX_WIRE_COMMAND_SIZE};

/// One command as it travels: its type code and its undecoded payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    /// Which command the payload holds (see [`super::type_code`]).
    pub type_code: i32,
    /// The command's fields; decode with [`Frame::request`] or [`Frame::reply`].
    pub payload: Bytes,
}

impl Frame {
    /// Decodes the payload as a command a client sends.
    pub fn request(&self) -> Result<super::Request, WireError> {
        super::Request::decode(self.type_code, &self.payload)
    }

    /// Decodes the payload as a command a server sends.
    pub fn reply(&self) -> Result<super::Reply, WireError> {
        super::Reply::decode(self.type_code, &self.payload)
    }

    /// Appends the frame (header and payload) to `out`.
    pub fn encode(&self, out: &mut BytesMut) -> Result<(), EncodeError> {
        if self.payload.len() > MAX_WIRE_COMMAND_SIZE as usize {
            return Err(EncodeError::FrameTooLarge { command: "frame", len: self.payload.len() });
        }
        out.reserve(FRAME_HEADER_LEN + self.payload.len());
        out.put_i32(self.type_code);
        out.put_i32(self.payload.len() as i32);
        out.put_slice(&self.payload);
        Ok(())
    }
}

/// Takes the next whole frame off the front of `buf`.
///
/// Returns `Ok(None)` while the frame is incomplete (read more bytes and call again; `buf` has
/// been reserved for the rest), `Ok(Some(frame))` once it is whole, and an error for a header
/// no valid frame has: the stream cannot be resynchronised after one, so the caller closes the
/// connection. The payload is a zero-copy split of `buf`.
pub fn decode_frame(buf: &mut BytesMut) -> Result<Option<Frame>, WireError> {
    let Some(header) = buf.get(..FRAME_HEADER_LEN) else {
        return Ok(None);
    };
    let type_code = i32::from_be_bytes([header[0], header[1], header[2], header[3]]);
    let length = i32::from_be_bytes([header[4], header[5], header[6], header[7]]);
    if length < 0 {
        return Err(WireError::NegativeLength { type_code, length });
    }
    if length as u32 > MAX_WIRE_COMMAND_SIZE {
        return Err(WireError::FrameTooLarge { type_code, length });
    }
    let total = FRAME_HEADER_LEN + length as usize;
    if buf.len() < total {
        buf.reserve(total - buf.len());
        return Ok(None);
    }
    buf.advance(FRAME_HEADER_LEN);
    let payload = buf.split_to(length as usize).freeze();
    Ok(Some(Frame { type_code, payload }))
}
