//! Scope, stream and segment names.
//!
//! Scope and stream names are 1..=128 characters of `[A-Za-z0-9._-]` and start with a letter or
//! a digit (names starting with `_` are reserved for the system). A segment's qualified name is
//! `"{scope}/{stream}/{number}.#epoch.{epoch}"`, computed from its [`SegmentId`].

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
    #[error("segment name {0:?} is malformed: expected scope/stream/NUMBER.#epoch.EPOCH")]
    Segment(String),
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
    pub id: SegmentId,
}

/// The container (out of `count`) that hosts the segment named `segment`: XXH64 (seed 0) of the
/// qualified name, modulo `count`. Segment stores and the controller must agree on it.
pub fn container_of(segment: &str, count: u32) -> u32 {
    (xxhash_rust::xxh64::xxh64(segment.as_bytes(), 0) % count.max(1) as u64) as u32
}

/// Parses `"{scope}/{stream}/{number}.#epoch.{epoch}"`.
pub fn parse_segment_name(name: &str) -> Result<SegmentName<'_>, NameError> {
    let bad = || NameError::Segment(name.to_owned());
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
    Ok(SegmentName { scope, stream, id })
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
        assert_eq!(parsed, SegmentName { scope: "demo", stream: "orders", id });
        for bad in ["demo/orders", "demo/orders/x.#epoch.1", "demo/orders/01.#epoch.1", "d/o/1#epoch1"] {
            assert!(parse_segment_name(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn scoped_stream() {
        assert_eq!(parse_scoped_stream("demo/orders").unwrap(), ("demo", "orders"));
        assert!(parse_scoped_stream("demo").is_err());
        assert!(parse_scoped_stream("demo/or/ders").is_err());
    }
}
