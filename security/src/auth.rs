//! Authentication: bearer tokens and the principals they name.

use std::fmt;
use std::str::FromStr;

/// Whether calls must carry a valid bearer token (`--auth`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum AuthMode {
    /// No authentication: every caller may do everything.
    #[default]
    None,
    /// Every call needs a valid token and the permission for what it does.
    Required,
}

impl FromStr for AuthMode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "none" => Ok(AuthMode::None),
            "required" => Ok(AuthMode::Required),
            _ => Err(format!("{s:?} is not an auth mode (none, required)")),
        }
    }
}

impl fmt::Display for AuthMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            AuthMode::None => "none",
            AuthMode::Required => "required",
        })
    }
}

impl serde::Serialize for AuthMode {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}
