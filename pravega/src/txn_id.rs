//! Pravega transaction ids and how they map to Nadi's, both ways, without a table.
//!
//! A Pravega transaction id is a 128-bit number the client sees as `TxnId { highBits,
//! lowBits }` (two `i64`s) and writes into transaction segment names as 32 hex digits
//! (`{parent}#transaction.{high:016x}{low:016x}`). Nadi's are strings the controller records
//! (`[0-9a-f-]`, `nadi_proto::names::validate_txn_id`). The mapping is the UUID text of the
//! number: `0123456789abcdef0123456789abcdef` ↔ `01234567-89ab-cdef-0123-456789abcdef`. It is a
//! bijection between all u128 values and all 36-character lowercase UUID texts, so the front
//! end proposes that text as the Nadi id when it begins a transaction (`BeginTxn.txn_id`) and
//! parses it back from any id it is given: no second store of ids.
//!
//! The ids the front end makes follow two rules of the Pravega client (pravega-client-rust
//! 0.3.7, `model_helper.rs`):
//!
//! ```text
//!  127          96 95                   64 63 62                             0
//! +--------------+-----------------------+--+--------------------------------+
//! | epoch (u32)  | random                | 0| random                         |
//! +--------------+-----------------------+--+--------------------------------+
//!  highBits (i64): epoch in its top 32 bits  lowBits (i64): never negative
//! ```
//!
//! - the creation epoch is in the top 32 bits (`TxId::get_epoch() = id >> 96`: the client asks
//!   for that epoch's segments when it resumes a transaction);
//! - `lowBits ≥ 0`: the client rebuilds the number as `(high as u128) << 64 | (low as u128)`,
//!   which sign-extends a negative `lowBits` over the high half and so would name another
//!   transaction.
//!
//! Owns: [`PravegaTxnId`]. Calls: nothing. Called by: `controller` (and the segment wire front
//! end, for transaction segment names).

use std::fmt;

/// A Pravega transaction id: the 128-bit number behind `TxnId { highBits, lowBits }`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PravegaTxnId(pub u128);

/// What the segment wire protocol puts between a parent segment's name and a transaction id.
pub const TXN_SEGMENT_MARKER: &str = "#transaction.";

impl PravegaTxnId {
    /// A fresh id for a transaction begun in `epoch`: the epoch in the top 32 bits, random bits
    /// below, bit 63 clear (so `lowBits ≥ 0`).
    pub fn new(epoch: u32) -> PravegaTxnId {
        let random: u128 = rand::random();
        let below_epoch = random & ((1u128 << 96) - 1) & !(1u128 << 63);
        PravegaTxnId((u128::from(epoch) << 96) | below_epoch)
    }

    /// The id the client sends: `(highBits as u128) << 64 | (lowBits as u128)`, exactly as the
    /// client computes it (a negative `lowBits` sign-extends; such an id was never made here).
    pub fn from_bits(high: i64, low: i64) -> PravegaTxnId {
        PravegaTxnId(((high as u128) << 64) | (low as u128))
    }

    /// `highBits`: the top 64 bits.
    pub fn high_bits(self) -> i64 {
        (self.0 >> 64) as u64 as i64
    }

    /// `lowBits`: the low 64 bits.
    pub fn low_bits(self) -> i64 {
        self.0 as u64 as i64
    }

    /// The epoch the transaction began in, as the client reads it (`id >> 96`).
    pub fn epoch(self) -> u32 {
        (self.0 >> 96) as u32
    }

    /// The Nadi transaction id: the number's lowercase UUID text (8-4-4-4-12 hex digits).
    pub fn to_nadi(self) -> String {
        let h = format!("{:032x}", self.0);
        format!("{}-{}-{}-{}-{}", &h[..8], &h[8..12], &h[12..16], &h[16..20], &h[20..])
    }

    /// The Pravega id whose [`to_nadi`](Self::to_nadi) is `id`; `None` for any other string
    /// (transactions begun by Nadi's own clients have ids of the same shape, so they parse too:
    /// a Pravega client can look them up, although their epoch bits mean nothing).
    pub fn from_nadi(id: &str) -> Option<PravegaTxnId> {
        let b = id.as_bytes();
        if b.len() != 36 || [8, 13, 18, 23].iter().any(|&i| b[i] != b'-') {
            return None;
        }
        let hex: String = id.chars().filter(|&c| c != '-').collect();
        if hex.len() != 32 || !hex.bytes().all(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(&c)) {
            return None;
        }
        u128::from_str_radix(&hex, 16).ok().map(PravegaTxnId)
    }

    /// The suffix of this transaction's segment names on the Pravega wire: the two halves as
    /// 16 hex digits each (`{high:016x}{low:016x}`, two's complement), i.e. the number in hex.
    pub fn segment_suffix(self) -> String {
        format!("{:032x}", self.0)
    }

    /// The id in a Pravega transaction segment name's suffix (32 hex digits, either case).
    pub fn from_segment_suffix(hex: &str) -> Option<PravegaTxnId> {
        if hex.len() != 32 || !hex.bytes().all(|c| c.is_ascii_hexdigit()) {
            return None;
        }
        u128::from_str_radix(hex, 16).ok().map(PravegaTxnId)
    }
}

/// The Nadi name of a segment named `wire` on Pravega's wire: the same name, except that a
/// transaction segment `{parent}#transaction.{32 hex digits}` is `{parent}#txn.{UUID text}`.
/// `None` for a transaction suffix that is not 32 hex digits.
pub fn nadi_segment_name(wire: &str) -> Option<String> {
    match wire.split_once(TXN_SEGMENT_MARKER) {
        None => Some(wire.to_owned()),
        Some((parent, hex)) => {
            let id = PravegaTxnId::from_segment_suffix(hex)?;
            Some(nadi_proto::names::txn_segment_name(parent, &id.to_nadi()))
        }
    }
}

impl fmt::Display for PravegaTxnId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_nadi())
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn new_ids_follow_the_clients_rules() {
        for epoch in [0, 1, 7, u32::MAX] {
            for _ in 0..100 {
                let id = PravegaTxnId::new(epoch);
                assert_eq!(id.epoch(), epoch);
                assert!(id.low_bits() >= 0, "{id:?}");
                // What the client rebuilds from the two halves is the same id.
                assert_eq!(PravegaTxnId::from_bits(id.high_bits(), id.low_bits()), id);
                nadi_proto::names::validate_txn_id(&id.to_nadi()).unwrap();
            }
        }
        assert_ne!(PravegaTxnId::new(3), PravegaTxnId::new(3));
    }

    #[test]
    fn known_values() {
        let id = PravegaTxnId(0x0123_4567_89ab_cdef_0123_4567_89ab_cdef);
        assert_eq!(id.to_nadi(), "01234567-89ab-cdef-0123-456789abcdef");
        assert_eq!(id.segment_suffix(), "0123456789abcdef0123456789abcdef");
        assert_eq!((id.high_bits(), id.low_bits()), (0x0123_4567_89ab_cdef, 0x0123_4567_89ab_cdef));
        assert_eq!(id.epoch(), 0x0123_4567);
        // A negative lowBits sign-extends, as in the client: another id.
        assert_eq!(PravegaTxnId::from_bits(5, -1), PravegaTxnId(u128::MAX));
        for bad in ["", "0123456789abcdef0123456789abcdef", "01234567-89AB-cdef-0123-456789abcdef", "x"] {
            assert_eq!(PravegaTxnId::from_nadi(bad), None, "{bad:?}");
        }
        assert_eq!(PravegaTxnId::from_segment_suffix("0123456789ABCDEF0123456789abcdef"), Some(id));
        assert_eq!(PravegaTxnId::from_segment_suffix("0123"), None);
    }

    proptest! {
        #[test]
        fn nadi_text_round_trips(n: u128) {
            let id = PravegaTxnId(n);
            prop_assert_eq!(PravegaTxnId::from_nadi(&id.to_nadi()), Some(id));
            prop_assert_eq!(PravegaTxnId::from_segment_suffix(&id.segment_suffix()), Some(id));
            // The client's rebuild is exact unless a negative lowBits sign-extends.
            let rebuilt = PravegaTxnId::from_bits(id.high_bits(), id.low_bits());
            prop_assert_eq!(rebuilt == id, id.low_bits() >= 0 || id.high_bits() == -1);
        }

        #[test]
        fn any_nadi_uuid_text_round_trips(s in "[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}") {
            let id = PravegaTxnId::from_nadi(&s).unwrap();
            prop_assert_eq!(id.to_nadi(), s);
        }
    }
}
