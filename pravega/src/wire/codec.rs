//! Primitive encodings of command fields, as pravega-client-rust encodes them (bincode2,
//! big-endian, `string_length = u16`, `array_length = u32`):
//!
//! | Rust type   | Wire bytes                                                  |
//! |-------------|-------------------------------------------------------------|
//! | `i32`/`i64` | 4/8 bytes, big-endian                                       |
//! | `u8`        | 1 byte                                                      |
//! | `u128`      | 16 bytes, big-endian (a Java UUID: msb then lsb)            |
//! | `bool`      | 1 byte, 0 or 1 (any other value is an error)                |
//! | `String`    | u16 length (BE) + UTF-8 bytes (like Java's `writeUTF`)      |
//! | `Bytes`     | u32 length (BE) + bytes                                     |
//! | `Vec<T>`    | u32 count (BE) + each item                                  |
//!
//! Invariants: [`Reader`] never reads past its buffer and never panics; a length or count is
//! trusted only as far as the remaining bytes cover it (no allocation sized by the peer);
//! byte arrays are zero-copy slices of the frame's payload. [`Field::put`] writes nothing
//! it cannot also read back.

use bytes::{BufMut, Bytes, BytesMut};

use super::error::PayloadProblem;

/// A cursor over one frame's payload. Decoding ignores bytes left after the last field, as
/// the client does.
#[derive(Debug)]
pub(crate) struct Reader<'a> {
    buf: &'a Bytes,
    pos: usize,
}

impl<'a> Reader<'a> {
    pub(crate) fn new(buf: &'a Bytes) -> Self {
        Reader { buf, pos: 0 }
    }

    /// Bytes not read yet.
    pub(crate) fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    /// The next `n` bytes, consumed.
    fn take(&mut self, n: usize) -> Result<&'a [u8], PayloadProblem> {
        let remaining = self.remaining();
        if n > remaining {
            return Err(PayloadProblem::Truncated { needed: n, remaining });
        }
        let start = self.pos;
        self.pos += n;
        let buf: &'a Bytes = self.buf;
        Ok(&buf[start..start + n])
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], PayloadProblem> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N)?);
        Ok(out)
    }

    /// The next `n` bytes as a zero-copy slice of the payload.
    fn slice(&mut self, n: usize) -> Result<Bytes, PayloadProblem> {
        let remaining = self.remaining();
        if n > remaining {
            return Err(PayloadProblem::Truncated { needed: n, remaining });
        }
        let start = self.pos;
        self.pos += n;
        Ok(self.buf.slice(start..start + n))
    }

    pub(crate) fn i32(&mut self) -> Result<i32, PayloadProblem> {
        self.array().map(i32::from_be_bytes)
    }

    pub(crate) fn i64(&mut self) -> Result<i64, PayloadProblem> {
        self.array().map(i64::from_be_bytes)
    }

    pub(crate) fn u32(&mut self) -> Result<u32, PayloadProblem> {
        self.array().map(u32::from_be_bytes)
    }

    /// A u32 length prefix followed by that many bytes.
    pub(crate) fn bytes(&mut self) -> Result<Bytes, PayloadProblem> {
        let len = self.u32()? as usize;
        self.slice(len)
    }
}

/// The limit a field's length prefix puts on it, when [`Field::put`] finds it exceeded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct TooLong {
    pub(crate) len: usize,
    pub(crate) max: usize,
}

/// A value with a wire encoding; command structs are sequences of fields.
pub(crate) trait Field: Sized {
    /// Appends the encoding to `out`; on error, `out` may hold a partial field (the command
    /// encoder rolls the whole frame back).
    fn put(&self, out: &mut BytesMut) -> Result<(), TooLong>;
    /// Reads one value.
    fn get(r: &mut Reader<'_>) -> Result<Self, PayloadProblem>;
    /// The value as a request id, if this is an `i64` (used to report the request id of a
    /// command whose later fields are malformed).
    fn as_i64(&self) -> Option<i64> {
        None
    }
}

impl Field for i32 {
    fn put(&self, out: &mut BytesMut) -> Result<(), TooLong> {
        out.put_i32(*self);
        Ok(())
    }
    fn get(r: &mut Reader<'_>) -> Result<Self, PayloadProblem> {
        r.i32()
    }
}

impl Field for i64 {
    fn put(&self, out: &mut BytesMut) -> Result<(), TooLong> {
        out.put_i64(*self);
        Ok(())
    }
    fn get(r: &mut Reader<'_>) -> Result<Self, PayloadProblem> {
        r.i64()
    }
    fn as_i64(&self) -> Option<i64> {
        Some(*self)
    }
}

impl Field for u8 {
    fn put(&self, out: &mut BytesMut) -> Result<(), TooLong> {
        out.put_u8(*self);
        Ok(())
    }
    fn get(r: &mut Reader<'_>) -> Result<Self, PayloadProblem> {
        r.array::<1>().map(|[b]| b)
    }
}

impl Field for u128 {
    fn put(&self, out: &mut BytesMut) -> Result<(), TooLong> {
        out.put_u128(*self);
        Ok(())
    }
    fn get(r: &mut Reader<'_>) -> Result<Self, PayloadProblem> {
        r.array().map(u128::from_be_bytes)
    }
}

impl Field for bool {
    fn put(&self, out: &mut BytesMut) -> Result<(), TooLong> {
        out.put_u8(u8::from(*self));
        Ok(())
    }
    fn get(r: &mut Reader<'_>) -> Result<Self, PayloadProblem> {
        match r.array::<1>()? {
            [0] => Ok(false),
            [1] => Ok(true),
            [b] => Err(PayloadProblem::InvalidBool(b)),
        }
    }
}

impl Field for String {
    fn put(&self, out: &mut BytesMut) -> Result<(), TooLong> {
        let len = u16::try_from(self.len()).map_err(|_| TooLong { len: self.len(), max: u16::MAX as usize })?;
        out.put_u16(len);
        out.put_slice(self.as_bytes());
        Ok(())
    }
    fn get(r: &mut Reader<'_>) -> Result<Self, PayloadProblem> {
        let len = u16::from_be_bytes(r.array()?) as usize;
        let raw = r.take(len)?;
        std::str::from_utf8(raw).map(str::to_owned).map_err(|_| PayloadProblem::InvalidUtf8)
    }
}

impl Field for Bytes {
    fn put(&self, out: &mut BytesMut) -> Result<(), TooLong> {
        let len = u32::try_from(self.len()).map_err(|_| TooLong { len: self.len(), max: u32::MAX as usize })?;
        out.put_u32(len);
        out.put_slice(self);
        Ok(())
    }
    fn get(r: &mut Reader<'_>) -> Result<Self, PayloadProblem> {
        r.bytes()
    }
}

impl<T: Field> Field for Vec<T> {
    fn put(&self, out: &mut BytesMut) -> Result<(), TooLong> {
        let count = u32::try_from(self.len()).map_err(|_| TooLong { len: self.len(), max: u32::MAX as usize })?;
        out.put_u32(count);
        self.iter().try_for_each(|item| item.put(out))
    }
    fn get(r: &mut Reader<'_>) -> Result<Self, PayloadProblem> {
        let count = r.u32()? as usize;
        // Every item takes at least one byte, so the remaining bytes bound a truthful count.
        let mut items = Vec::with_capacity(count.min(r.remaining()));
        for _ in 0..count {
            items.push(T::get(r)?);
        }
        Ok(items)
    }
}
