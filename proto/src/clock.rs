//! The wall clock that stamps append times and judges times given to seek by time.
//!
//! [`now_ms`] is the system clock in milliseconds since the Unix epoch. For tests only, the
//! environment variable `NADI_FAULT_CLOCK_FILE` names a file holding a number of milliseconds:
//! while that file exists and parses, it is the clock (read on every call), so a test can step
//! time by minutes in a second. Processes started without the variable never look at a file.
//! [`parse_rfc3339_ms`] reads the RFC 3339 times the CLI and the admin HTTP API take.

use std::sync::OnceLock;
use std::time::{SystemTime, UNIX_EPOCH};

/// The test hook's environment variable.
pub const FAULT_CLOCK_ENV: &str = "NADI_FAULT_CLOCK_FILE";

fn fault_file() -> Option<&'static std::path::Path> {
    static FILE: OnceLock<Option<std::path::PathBuf>> = OnceLock::new();
    FILE.get_or_init(|| std::env::var_os(FAULT_CLOCK_ENV).map(Into::into)).as_deref()
}

/// Milliseconds since the Unix epoch (the test clock, when one is set).
pub fn now_ms() -> u64 {
    if let Some(file) = fault_file()
        && let Ok(text) = std::fs::read_to_string(file)
        && let Ok(ms) = text.trim().parse::<u64>()
    {
        return ms;
    }
    system_ms()
}

/// The system clock, never the test clock.
pub fn system_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

/// An RFC 3339 time with `Z` or a numeric offset `±HH:MM` in milliseconds since the Unix
/// epoch; `None` if it is not one, or is before 1970.
pub fn parse_rfc3339_ms(text: &str) -> Option<u64> {
    // humantime reads RFC 3339 in UTC only: an offset is split off and applied here.
    let (utc, offset_minutes) = match text.len().checked_sub(6).and_then(|i| Some((i, text.get(i..)?))) {
        Some((i, tail)) if (tail.starts_with('+') || tail.starts_with('-')) && tail.as_bytes()[3] == b':' => {
            let hours: i64 = tail.get(1..3)?.parse().ok()?;
            let minutes: i64 = tail.get(4..6)?.parse().ok()?;
            if hours > 23 || minutes > 59 {
                return None;
            }
            let sign = if tail.starts_with('-') { -1 } else { 1 };
            (format!("{}Z", text.get(..i)?), sign * (hours * 60 + minutes))
        }
        _ => (text.to_owned(), 0),
    };
    let t = humantime::parse_rfc3339(&utc).ok()?;
    let ms = i64::try_from(t.duration_since(UNIX_EPOCH).ok()?.as_millis()).ok()?;
    u64::try_from(ms - offset_minutes * 60_000).ok()
}
