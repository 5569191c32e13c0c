//! Values given on the command line that are more than a string: a token
//! (or `-` for stdin), a `jti`, a time.

use std::io::Read;
use std::time::UNIX_EPOCH;

use stamps_core::{Clock, Jti, SystemClock, UnixTime};

use crate::error::AdminError;

/// Reads a token argument: the text itself, or stdin for `-`.
pub fn read_token_arg(arg: &str) -> Result<String, AdminError> {
    if arg != "-" {
        return Ok(arg.trim().to_owned());
    }
    let mut text = String::new();
    std::io::stdin()
        .take(64 * 1024)
        .read_to_string(&mut text)
        .map_err(AdminError::io("cannot read the token from stdin"))?;
    Ok(text.trim().to_owned())
}

/// Parses a `jti` given on the command line.
pub fn parse_jti(text: &str) -> Result<Jti, AdminError> {
    text.parse()
        .map_err(|_| AdminError::Invalid("a jti is 32 lowercase hexadecimal characters".into()))
}

/// Parses `--since`: an RFC 3339 time, or a duration back from now.
pub fn parse_since(text: &str) -> Result<UnixTime, AdminError> {
    if let Ok(time) = humantime::parse_rfc3339_weak(text) {
        return Ok(time.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs()));
    }
    if let Ok(ago) = humantime::parse_duration(text) {
        return Ok(SystemClock.now().saturating_sub(ago.as_secs()));
    }
    Err(AdminError::Invalid(format!(
        "--since {text:?}: give an RFC 3339 time (2026-11-28T09:00:00Z) or a duration (30m, 1h, 7d)"
    )))
}
