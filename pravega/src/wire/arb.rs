//! Proptest strategies for every field type, so the `command!` macro can derive a strategy for
//! each command from its field list (tests only).
//!
//! Invariant: the strategies cover the whole value space of each type that matters to the
//! encoding — extreme integers, both bools, empty and multi-byte strings, empty and non-empty
//! byte arrays and lists — while keeping values small enough for fast tests.

use bytes::Bytes;
use proptest::collection::vec;
use proptest::prelude::*;

use super::{EmbeddedEvent, TableEntry, TableKey, TableValue};

/// A type with a proptest strategy over its values.
pub(crate) trait Arb: Sized {
    fn arb() -> BoxedStrategy<Self>;
}

impl Arb for i32 {
    fn arb() -> BoxedStrategy<Self> {
        prop_oneof![Just(i32::MIN), Just(-1), Just(0), Just(i32::MAX), any::<i32>()].boxed()
    }
}

impl Arb for i64 {
    fn arb() -> BoxedStrategy<Self> {
        prop_oneof![Just(i64::MIN), Just(-1), Just(0), Just(i64::MAX), any::<i64>()].boxed()
    }
}

impl Arb for u8 {
    fn arb() -> BoxedStrategy<Self> {
        any::<u8>().boxed()
    }
}

impl Arb for u128 {
    fn arb() -> BoxedStrategy<Self> {
        prop_oneof![Just(0), Just(u128::MAX), any::<u128>()].boxed()
    }
}

impl Arb for bool {
    fn arb() -> BoxedStrategy<Self> {
        any::<bool>().boxed()
    }
}

impl Arb for String {
    fn arb() -> BoxedStrategy<Self> {
        // Any Unicode scalar values, so multi-byte UTF-8 lengths are exercised.
        proptest::string::string_regex("(?s).{0,12}").expect("valid regex").boxed()
    }
}

impl Arb for Bytes {
    fn arb() -> BoxedStrategy<Self> {
        vec(any::<u8>(), 0..48).prop_map(Bytes::from).boxed()
    }
}

impl<T: Arb + std::fmt::Debug + 'static> Arb for Vec<T> {
    fn arb() -> BoxedStrategy<Self> {
        vec(T::arb(), 0..4).boxed()
    }
}

impl Arb for TableKey {
    fn arb() -> BoxedStrategy<Self> {
        (Bytes::arb(), i64::arb()).prop_map(|(data, version)| TableKey { data, version }).boxed()
    }
}

impl Arb for TableValue {
    fn arb() -> BoxedStrategy<Self> {
        Bytes::arb().prop_map(|data| TableValue { data }).boxed()
    }
}

impl Arb for TableEntry {
    fn arb() -> BoxedStrategy<Self> {
        (TableKey::arb(), TableValue::arb()).prop_map(|(key, value)| TableEntry { key, value }).boxed()
    }
}

impl Arb for EmbeddedEvent {
    fn arb() -> BoxedStrategy<Self> {
        Bytes::arb().prop_map(|data| EmbeddedEvent { data }).boxed()
    }
}
