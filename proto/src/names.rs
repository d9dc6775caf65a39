//! Scope, stream and segment names.
//!
//! Scope and stream names are 1..=128 characters of `[A-Za-z0-9._-]` and start with a letter or
//! a digit (names starting with `_` are reserved for the system). A segment's qualified name is
//! `"{scope}/{stream}/{number}.#epoch.{epoch}"`, computed from its [`SegmentId`].
//!
//! A transaction segment is named after the stream segment it belongs to (its *parent*):
//! `"{parent}#txn.{txn id}"`. [`container_of`] hashes only the parent part, so a transaction
//! segment always lives in its parent's container, which is what lets a commit merge it into
//! the parent without copying (`MergeSegments` works within one container only).

use crate::SegmentId;

/// Longest scope or stream name, in bytes.
pub const MAX_NAME_LEN: usize = 128;

/// Why a name was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum NameError {
    #[error("{kind} name is empty")]
    Empty { kind: &'static str },
    #[error("{kind} name {name:?} is longer than {MAX_NAME_LEN} characters")]
    TooLong { kind: &'static str, name: String },
    #[error(
        "{kind} name {name:?} is malformed: use letters, digits, '.', '_' and '-', starting with a letter or digit"
    )]
    Malformed { kind: &'static str, name: String },
    #[error("segment name {0:?} is malformed: expected scope/stream/NUMBER.#epoch.EPOCH[#txn.ID]")]
    Segment(String),
    #[error("transaction id {0:?} is malformed: expected 1..=64 characters of [0-9a-f-]")]
    TxnId(String),
}

/// Checks a scope name.
pub fn validate_scope(name: &str) -> Result<(), NameError> {
    validate("scope", name)
}

/// Checks a stream name.
pub fn validate_stream(name: &str) -> Result<(), NameError> {
    validate("stream", name)
}

/// Checks the name of something else that follows the scope/stream rules (reader groups,
/// readers, checkpoints); `kind` names it in the error.
pub fn validate_named(kind: &'static str, name: &str) -> Result<(), NameError> {
    validate(kind, name)
}

fn validate(kind: &'static str, name: &str) -> Result<(), NameError> {
    if name.is_empty() {
        return Err(NameError::Empty { kind });
    }
    if name.len() > MAX_NAME_LEN {
        return Err(NameError::TooLong { kind, name: name.to_owned() });
    }
    let mut chars = name.chars();
    let first_ok = chars.next().is_some_and(|c| c.is_ascii_alphanumeric());
    let rest_ok = chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
    if !(first_ok && rest_ok) {
        return Err(NameError::Malformed { kind, name: name.to_owned() });
    }
    Ok(())
}

/// Splits `"scope/stream"` into its two checked parts.
pub fn parse_scoped_stream(s: &str) -> Result<(&str, &str), NameError> {
    let Some((scope, stream)) = s.split_once('/') else {
        return Err(NameError::Malformed { kind: "scope/stream", name: s.to_owned() });
    };
    validate_scope(scope)?;
    validate_stream(stream)?;
    Ok((scope, stream))
}

/// The qualified name of a segment of a stream.
pub fn segment_name(scope: &str, stream: &str, id: SegmentId) -> String {
    format!("{scope}/{stream}/{id}")
}

/// A parsed qualified segment name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SegmentName<'a> {
    pub scope: &'a str,
    pub stream: &'a str,
    /// The id of the stream segment (the parent, for a transaction segment).
    pub id: SegmentId,
    /// The transaction id, for a transaction segment.
    pub txn: Option<&'a str>,
}

/// What separates a transaction segment's parent name from the transaction id.
pub const TXN_MARKER: &str = "#txn.";

/// Longest transaction id, in bytes.
pub const MAX_TXN_ID_LEN: usize = 64;

/// The container (out of `count`) that hosts the segment named `segment`: XXH64 (seed 0) of the
/// qualified name, modulo `count`. A transaction segment (`{parent}#txn.{id}`) hashes as its
/// parent, so both live in one container. Segment stores and the controller must agree on it.
pub fn container_of(segment: &str, count: u32) -> u32 {
    let placed = parent_of(segment);
    (xxhash_rust::xxh64::xxh64(placed.as_bytes(), 0) % count.max(1) as u64) as u32
}

/// The parent part of a transaction segment's name (`{parent}#txn.{id}` → `{parent}`); any other
/// name is returned unchanged.
pub fn parent_of(segment: &str) -> &str {
    match segment.find(TXN_MARKER) {
        Some(at) => &segment[..at],
        None => segment,
    }
}

/// Checks a transaction id: 1..=64 characters of `[0-9a-f-]` (the controller makes them as
/// lowercase UUID-like strings). The restriction keeps ids safe in segment names and URL paths.
pub fn validate_txn_id(id: &str) -> Result<(), NameError> {
    let ok = !id.is_empty()
        && id.len() <= MAX_TXN_ID_LEN
        && id.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b) || b == b'-');
    if ok { Ok(()) } else { Err(NameError::TxnId(id.to_owned())) }
}

/// The name of transaction `txn`'s segment for the stream segment named `parent`.
pub fn txn_segment_name(parent: &str, txn: &str) -> String {
    format!("{parent}{TXN_MARKER}{txn}")
}

/// Parses `"{scope}/{stream}/{number}.#epoch.{epoch}"`, optionally followed by `#txn.{id}`.
pub fn parse_segment_name(name: &str) -> Result<SegmentName<'_>, NameError> {
    let bad = || NameError::Segment(name.to_owned());
    let (name, txn) = match name.split_once(TXN_MARKER) {
        Some((parent, txn)) => {
            validate_txn_id(txn).map_err(|_| bad())?;
            (parent, Some(txn))
        }
        None => (name, None),
    };
    let mut parts = name.splitn(3, '/');
    let (Some(scope), Some(stream), Some(seg)) = (parts.next(), parts.next(), parts.next()) else {
        return Err(bad());
    };
    validate_scope(scope).map_err(|_| bad())?;
    validate_stream(stream).map_err(|_| bad())?;
    let (number, epoch) = seg.split_once(".#epoch.").ok_or_else(bad)?;
    let number: u32 = number.parse().map_err(|_| bad())?;
    let epoch: u32 = epoch.parse().map_err(|_| bad())?;
    let id = SegmentId::new(epoch, number);
    // Reject non-canonical spellings such as leading zeros: one segment, one name.
    if seg != id.to_string() {
        return Err(bad());
    }
    Ok(SegmentName { scope, stream, id, txn })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn good_and_bad_names() {
        for ok in ["demo", "a", "orders-2024", "x.y_z", "9lives"] {
            validate_stream(ok).unwrap();
        }
        for bad in ["", "_sys", "-x", "a/b", "sp ace", "ünï", &"x".repeat(129)] {
            assert!(validate_stream(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn segment_names_round_trip() {
        let id = SegmentId::new(4, 17);
        let name = segment_name("demo", "orders", id);
        assert_eq!(name, "demo/orders/17.#epoch.4");
        let parsed = parse_segment_name(&name).unwrap();
        assert_eq!(parsed, SegmentName { scope: "demo", stream: "orders", id, txn: None });
        for bad in [
            "demo/orders",
            "demo/orders/x.#epoch.1",
            "demo/orders/01.#epoch.1",
            "d/o/1#epoch1",
            "demo/orders/17.#epoch.4#txn.",
            "demo/orders/17.#epoch.4#txn.XY",
            "demo/orders/17.#epoch.4#txn.ab#txn.cd",
        ] {
            assert!(parse_segment_name(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn txn_segments_live_with_their_parent() {
        let parent = segment_name("demo", "orders", SegmentId::new(2, 9));
        let txn = txn_segment_name(&parent, "0a1b2c3d-0000-4000-8000-00000000beef");
        assert_eq!(txn, "demo/orders/9.#epoch.2#txn.0a1b2c3d-0000-4000-8000-00000000beef");
        let parsed = parse_segment_name(&txn).unwrap();
        assert_eq!(parsed.id, SegmentId::new(2, 9));
        assert_eq!(parsed.txn, Some("0a1b2c3d-0000-4000-8000-00000000beef"));
        assert_eq!(parent_of(&txn), parent);
        for count in [1, 4, 7, 64] {
            assert_eq!(container_of(&txn, count), container_of(&parent, count));
        }
        assert!(validate_txn_id("").is_err());
        assert!(validate_txn_id("ABC").is_err());
        assert!(validate_txn_id(&"a".repeat(65)).is_err());
    }

    #[test]
    fn scoped_stream() {
        assert_eq!(parse_scoped_stream("demo/orders").unwrap(), ("demo", "orders"));
        assert!(parse_scoped_stream("demo").is_err());
        assert!(parse_scoped_stream("demo/or/ders").is_err());
    }
}
