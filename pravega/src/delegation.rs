//! Delegation tokens: how a Pravega client's credentials reach the segment port.
//!
//! With authentication on, the Pravega client asks the controller for a delegation token
//! (`getDelegationToken`) and sends it with every segment-store request. The client parses it
//! as a JWT (three dot-separated parts, the middle one base64 JSON with an `exp` field) to know
//! when to ask again. Nadi issues no tokens of its own here: the delegation token *wraps the
//! caller's own token* (the static token or JWT the controller listener checked), and the
//! segment port unwraps it and checks it like any bearer token, against the same grants. So a
//! revoked token stops working on the segment port at once, whatever `exp` says.
//!
//! ```text
//! base64({"alg":"none","typ":"nadi-delegation"}) . base64({"exp":EXP,"tok":"<caller's token>"}) . nadi
//! ```
//!
//! The wrapped token is as secret as the caller's bearer token itself (base64 is not
//! encryption): the segment port should be reached over a trusted network, as the controller
//! listener is. Invariants: [`unwrap`] of [`wrap`] gives the token back; anything else is
//! `None` (never a panic).

use base64::Engine;
use base64::engine::general_purpose::STANDARD;

const HEADER: &str = r#"{"alg":"none","typ":"nadi-delegation"}"#;
const SIGNATURE: &str = "nadi";

/// A delegation token for `token`, which the client refreshes after `exp` (seconds since the
/// epoch).
pub fn wrap(token: &str, exp: u64) -> String {
    let body = serde_json::json!({ "exp": exp, "tok": token }).to_string();
    format!("{}.{}.{SIGNATURE}", STANDARD.encode(HEADER), STANDARD.encode(body))
}

/// The caller's token inside a delegation token made by [`wrap`].
pub fn unwrap(delegation: &str) -> Option<String> {
    let mut parts = delegation.split('.');
    let (header, body, signature) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() || signature != SIGNATURE || STANDARD.decode(header).ok()? != HEADER.as_bytes() {
        return None;
    }
    let body: serde_json::Value = serde_json::from_slice(&STANDARD.decode(body).ok()?).ok()?;
    body.get("tok")?.as_str().map(str::to_owned).filter(|t| !t.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_wrapped_token_unwraps_and_looks_like_a_jwt_to_the_client() {
        for token in ["nadi_abc123", "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJhIn0.sig"] {
            let d = wrap(token, 1_900_000_000);
            assert_eq!(unwrap(&d).as_deref(), Some(token));
            // What the client does: three parts, the body base64 JSON with "exp".
            let parts: Vec<&str> = d.split('.').collect();
            assert_eq!(parts.len(), 3);
            let body = String::from_utf8(STANDARD.decode(parts[1]).unwrap()).unwrap();
            assert!(body.contains(r#""exp":1900000000"#), "{body}");
        }
        for bad in ["", "nadi_abc", "a.b.c", "a.b.c.d", &wrap("", 1), &wrap("x", 1).replace(".nadi", ".other")] {
            assert_eq!(unwrap(bad), None, "{bad:?}");
        }
    }
}
