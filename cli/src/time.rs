//! TIME arguments (seek by time): `stream cut --at`, `read --from-time` and
//! `reader-group create --from-time` all take one syntax, turned here into milliseconds since
//! the Unix epoch before any request is sent:
//!
//! - RFC 3339, in UTC or with an offset: `2026-12-07T09:00:00Z`, `2026-12-07T10:00:00.5+01:00`;
//! - a time ago: `-` and a duration, `-1h`, `-30m`, `-45s`, `-2d`, `-1h30m`: now minus it, now
//!   being [`nadi_proto::clock::now_ms`] (the clock that stamps append times);
//! - milliseconds since the Unix epoch: `1765098000000`.
//!
//! Anything else is an [`InvalidInput`] (`INVALID_ARGUMENT`; an `ArgError` in the commands),
//! like every other bad argument.

use nadi_proto::views::InvalidInput;

/// `text`, the value of `flag`, as milliseconds since the Unix epoch (see the module docs).
///
/// # Errors
///
/// [`InvalidInput`] naming the flag and the accepted forms.
pub fn parse_time(flag: &str, text: &str) -> Result<u64, InvalidInput> {
    parse_time_at(flag, text, nadi_proto::clock::now_ms())
}

/// [`parse_time`] with the current time given (`now_ms`), for relative times.
pub fn parse_time_at(flag: &str, text: &str, now_ms: u64) -> Result<u64, InvalidInput> {
    let text = text.trim();
    let bad = |why: &str| {
        InvalidInput(format!(
            "{flag} {text:?}: {why}; give an RFC 3339 time (2026-12-07T09:00:00Z, 2026-12-07T10:00:00+01:00), \
             a time ago (-1h, -30m, -45s, -2d, -1h30m) or milliseconds since the Unix epoch"
        ))
    };
    if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) {
        return text.parse().map_err(|_| bad("too large"));
    }
    if let Some(ago) = text.strip_prefix('-') {
        let ago = humantime::parse_duration(ago).map_err(|e| bad(&format!("not a duration ({e})")))?;
        let ago = u64::try_from(ago.as_millis()).map_err(|_| bad("too far back"))?;
        return now_ms.checked_sub(ago).ok_or_else(|| bad("reaches back before 1970"));
    }
    nadi_proto::clock::parse_rfc3339_ms(text).ok_or_else(|| bad("not a time"))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 2025-12-07T09:00:00Z.
    const T: u64 = 1_765_098_000_000;

    fn at(text: &str) -> Result<u64, InvalidInput> {
        parse_time_at("--at", text, T)
    }

    #[test]
    fn rfc3339_in_utc_or_with_an_offset() {
        assert_eq!(at("2025-12-07T09:00:00Z").unwrap(), T);
        assert_eq!(at("2025-12-07T09:00:00.250Z").unwrap(), T + 250);
        assert_eq!(at("2025-12-07T10:00:00+01:00").unwrap(), T);
        assert_eq!(at("2025-12-07T03:30:00-05:30").unwrap(), T);
        assert_eq!(at("2025-12-07T09:00:00+00:00").unwrap(), T);
        assert_eq!(at(" 2025-12-07T09:00:00Z ").unwrap(), T, "surrounding blanks are ignored");
    }

    #[test]
    fn relative_times_are_before_now() {
        assert_eq!(at("-1h").unwrap(), T - 3_600_000);
        assert_eq!(at("-30m").unwrap(), T - 1_800_000);
        assert_eq!(at("-45s").unwrap(), T - 45_000);
        assert_eq!(at("-2d").unwrap(), T - 2 * 86_400_000);
        assert_eq!(at("-1h30m").unwrap(), T - 5_400_000);
        assert_eq!(at("-0s").unwrap(), T);
    }

    #[test]
    fn milliseconds_since_the_epoch() {
        assert_eq!(at("1765098000000").unwrap(), T);
        assert_eq!(at("0").unwrap(), 0);
    }

    #[test]
    fn anything_else_is_an_invalid_argument() {
        for bad in [
            "",
            "yesterday",
            "1h",
            "+1h",
            "-",
            "-1x",
            "-1h30",
            "2025-12-07",
            "2025-12-07 09:00",
            "2025-12-07T09:00:00+24:00",
            "1970-01-01T00:00:00+01:00",
            "99999999999999999999999",
            "-100000000d",
            "12.5",
            "٣٣",
        ] {
            let e = at(bad).expect_err(bad);
            assert_eq!(e.code(), nadi_proto::ErrorCode::InvalidArgument, "{bad:?}");
            assert!(e.to_string().contains(&format!("--at {:?}", bad.trim())), "{e}");
            assert!(e.to_string().contains("RFC 3339"), "{e}");
        }
    }
}
