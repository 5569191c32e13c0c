//! Values given on the command line that are more than a string: a token
//! (or `-` for stdin), a `jti`, a time (an RFC 3339 instant with any
//! offset, or a duration).

use std::io::Read;
use std::time::{Duration, UNIX_EPOCH};

use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

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

/// Parses `--since`: an RFC 3339 instant (any offset), or a duration back
/// from now. Fractions of a second are dropped: the events of that second
/// are included.
pub fn parse_since(text: &str) -> Result<UnixTime, AdminError> {
    if let Some((secs, _)) = instant(text) {
        return Ok(secs);
    }
    if let Ok(ago) = humantime::parse_duration(text) {
        return Ok(SystemClock.now().saturating_sub(ago.as_secs()));
    }
    Err(AdminError::Invalid(format!(
        "--since {text:?}: give an RFC 3339 time (2026-11-28T09:00:00Z, 2026-11-28T14:30:00+05:30) or a duration (30m, 1h, 7d)"
    )))
}

/// Parses `--expires-at` (clap's value parser): an RFC 3339 instant with
/// any offset, as whole seconds since the epoch, a fraction rounded up (a
/// token never stops before the instant given).
pub fn expires_at(text: &str) -> Result<UnixTime, String> {
    match instant(text) {
        Some((secs, fraction)) => Ok(secs.saturating_add(u64::from(fraction))),
        None => Err(
            "expected an RFC 3339 instant at or after 1970, such as 2027-01-31T00:00:00Z or 2027-01-31T09:00:00+05:30"
                .to_owned(),
        ),
    }
}

/// Parses `--expires-in` and `--unused-since` (clap's value parser): a
/// duration such as `90d`, `12h` or `30m`, of at least a second.
pub fn duration(text: &str) -> Result<Duration, String> {
    match humantime::parse_duration(text) {
        Ok(d) if d.as_secs() >= 1 => Ok(d),
        Ok(_) => Err("expected a duration of at least 1 second".to_owned()),
        Err(e) => Err(format!("expected a duration such as 90d, 12h or 30m ({e})")),
    }
}

/// An instant as whole seconds since the epoch, and whether a fraction of a
/// second followed: RFC 3339 with any offset, or (as before offsets were
/// read) a time without one, taken as UTC. `None` before 1970 or unreadable.
fn instant(text: &str) -> Option<(UnixTime, bool)> {
    if let Ok(time) = OffsetDateTime::parse(text, &Rfc3339) {
        let secs = u64::try_from(time.unix_timestamp()).ok()?;
        return Some((secs, time.nanosecond() > 0));
    }
    let time = humantime::parse_rfc3339_weak(text).ok()?;
    let since_epoch = time.duration_since(UNIX_EPOCH).ok()?;
    Some((since_epoch.as_secs(), since_epoch.subsec_nanos() > 0))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn instants_are_read_with_any_offset() {
        // 2026-12-05T01:00:00Z, written three ways.
        for text in [
            "2026-12-05T01:00:00Z",
            "2026-12-05T06:30:00+05:30",
            "2026-12-04T20:00:00-05:00",
            "2026-12-05t01:00:00z",
            "2026-12-05T01:00:00",
        ] {
            assert_eq!(parse_since(text).unwrap(), 1_796_432_400, "{text}");
            assert_eq!(expires_at(text).unwrap(), 1_796_432_400, "{text}");
        }
        // A fraction: since drops it, an expiry rounds up.
        assert_eq!(
            parse_since("2026-12-05T01:00:00.25Z").unwrap(),
            1_796_432_400
        );
        assert_eq!(
            expires_at("2026-12-05T01:00:00.25Z").unwrap(),
            1_796_432_401
        );
        for bad in [
            "tomorrow",
            "2026-13-01T00:00:00Z",
            "1969-12-31T23:59:59Z",
            "",
        ] {
            assert!(expires_at(bad).is_err(), "{bad}");
        }
        assert!(parse_since("tomorrow").is_err());
    }

    #[test]
    fn durations_are_at_least_a_second() {
        assert_eq!(duration("90d").unwrap(), Duration::from_secs(90 * 86_400));
        assert!(duration("0s").is_err());
        assert!(duration("500ms").is_err());
        assert!(duration("soon").is_err());
    }
}
