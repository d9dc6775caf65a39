//! Segment ids.
//!
//! A segment id packs the epoch in which the segment was created and its number within the
//! stream: `id = (epoch << 32) | number`. Numbers are unique within a stream across all epochs,
//! so the number alone identifies a segment; the epoch tells when it was born. The packed form is
//! the only form that crosses the wire (`uint64` in the protos); this type is the only form in
//! Rust code.

use std::fmt;

/// The packed `(epoch << 32) | number` id of a segment.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize)]
#[serde(transparent)]
pub struct SegmentId(u64);

impl SegmentId {
    /// Packs an epoch and a segment number.
    pub const fn new(epoch: u32, number: u32) -> Self {
        Self(((epoch as u64) << 32) | number as u64)
    }

    /// Wraps a packed id as sent on the wire.
    pub const fn from_packed(packed: u64) -> Self {
        Self(packed)
    }

    /// The packed form, as sent on the wire.
    pub const fn packed(self) -> u64 {
        self.0
    }

    /// The epoch in which this segment was created.
    pub const fn epoch(self) -> u32 {
        (self.0 >> 32) as u32
    }

    /// The segment's number, unique within its stream.
    pub const fn number(self) -> u32 {
        self.0 as u32
    }
}

impl fmt::Debug for SegmentId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SegmentId({}.#epoch.{})", self.number(), self.epoch())
    }
}

impl fmt::Display for SegmentId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.#epoch.{}", self.number(), self.epoch())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn pack_unpack(epoch: u32, number: u32) {
            let id = SegmentId::new(epoch, number);
            prop_assert_eq!(id.epoch(), epoch);
            prop_assert_eq!(id.number(), number);
            prop_assert_eq!(SegmentId::from_packed(id.packed()), id);
        }
    }

    #[test]
    fn known_packing() {
        assert_eq!(SegmentId::new(1, 2).packed(), (1u64 << 32) | 2);
        assert_eq!(SegmentId::new(3, 7).to_string(), "7.#epoch.3");
    }
}
