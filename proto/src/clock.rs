//! The wall clock that stamps append times and judges times given to seek by time.
//!
//! [`now_ms`] is the system clock in milliseconds since the Unix epoch. For tests only, the
//! environment variable `NADI_FAULT_CLOCK_FILE` names a file holding a number of milliseconds:
//! while that file exists and parses, it is the clock (read on every call), so a test can step
//! time by minutes in a second. Processes started without the variable never look at a file.

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
