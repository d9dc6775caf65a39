//! The routing-key hash: one stable function from key bytes to the key space `[0, 1)`.
//!
//! Every client (Rust, the Java connector, anything else) must route a key to the same segment,
//! so this function is part of the protocol and must never change:
//!
//! ```text
//! h     = XXH64(key as UTF-8 bytes, seed = 0)         // 64-bit xxHash, as in the xxHash spec
//! point = (h >> 11) as f64 / 2^53                     // top 53 bits, exactly representable
//! ```
//!
//! `point` lies in `[0, 1)` and a segment owns the key if `low <= point < high`. Test vectors are
//! in `docs/protocol.md` and in the tests below.

/// Maps routing-key bytes to a point in `[0, 1)`.
pub fn key_point(key: &[u8]) -> f64 {
    let h = xxhash_rust::xxh64::xxh64(key, 0);
    (h >> 11) as f64 / (1u64 << 53) as f64
}

/// True if `point` falls into the half-open key range `[low, high)`. The range ending at 1.0
/// is closed in practice since points are always below 1.
pub fn in_range(point: f64, low: f64, high: f64) -> bool {
    low <= point && point < high
}

/// The equal split of `[low, high)` into `n` ranges, with exact shared boundaries (the end of
/// range `i` is the start of range `i + 1`, and the last range ends exactly at `high`).
pub fn split_range(low: f64, high: f64, n: u32) -> Vec<(f64, f64)> {
    assert!(n >= 1, "split into at least one range");
    let width = high - low;
    let bound = |i: u32| {
        if i == n { high } else { low + width * i as f64 / n as f64 }
    };
    (0..n).map(|i| (bound(i), bound(i + 1))).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The documented test vectors (docs/protocol.md), cross-checked against the Python
    /// `xxhash` package. Changing any of these breaks every client in the field.
    pub(crate) const VECTORS: &[(&str, u64, f64)] = &[
        ("", 0xef46db3751d8e999, 0.9346749315317059),
        ("a", 0xd24ec4f1a98c6e5b, 0.8215144243236395),
        ("key0", 0x6290e6bc61d244bb, 0.3850235185544273),
        ("order-42", 0xb5623ec0a2fa4fce, 0.708530351667812),
        ("Nadi", 0x6b32413a1d1299fe, 0.41873557728565414),
        ("key96", 0x36a1e996d5455793, 0.21340808803986033),
        ("\u{fc}n\u{ef}code", 0xaff510094968e696, 0.6873331091568704),
    ];

    #[test]
    fn xxh64_matches_the_specification_for_the_empty_input() {
        // The xxHash specification's reference value for XXH64("", seed 0).
        assert_eq!(xxhash_rust::xxh64::xxh64(b"", 0), 0xef46db3751d8e999);
    }

    #[test]
    fn documented_vectors() {
        for (key, hash, point) in VECTORS {
            assert_eq!(xxhash_rust::xxh64::xxh64(key.as_bytes(), 0), *hash, "hash of {key:?}");
            assert_eq!(key_point(key.as_bytes()), *point, "point of {key:?}");
        }
    }

    proptest! {
        #[test]
        fn points_are_in_unit_interval(key: Vec<u8>) {
            let p = key_point(&key);
            prop_assert!((0.0..1.0).contains(&p));
        }

        #[test]
        fn split_covers_exactly(n in 1u32..64, a in 0.0f64..1.0, b in 0.0f64..1.0) {
            let (low, high) = if a < b { (a, b) } else { (b, a) };
            prop_assume!(high > low);
            let parts = split_range(low, high, n);
            prop_assert_eq!(parts.len(), n as usize);
            prop_assert_eq!(parts[0].0, low);
            prop_assert_eq!(parts[n as usize - 1].1, high);
            for w in parts.windows(2) {
                prop_assert_eq!(w[0].1, w[1].0);
            }
        }
    }
}
