//! The sources: the environment's variable names, and the file's keys
//! (an unknown one is an error, with a suggestion).

use std::path::Path;

use config::{Map, Value, ValueKind};

use crate::error::SettingsError;

/// The prefix of the environment variables that set settings.
pub(crate) const ENV_PREFIX: &str = "STAMPS";

/// Every setting, as the dotted path of its key. The environment variable of
/// `jwt.secret` is `STAMPS_JWT__SECRET`. A test checks that this list matches
/// the fields of `RawSettings` exactly.
///
/// The raw structs' `deny_unknown_fields` alone would not do: the
/// environment must ignore a `STAMPS_` variable that names no setting
/// (CONTRACT §3.1), which takes the names before `config` sees them, and
/// an unknown key in the file is answered with the key it most likely
/// meant, across sections (`secret` → `jwt.secret`), which serde's message
/// (the fields of one struct) cannot say.
pub(crate) const KNOWN_KEYS: &[&str] = &[
    "listen",
    "data_dir",
    "jwt.secret",
    "jwt.lifetime",
    "jwt.leeway",
    "jwt.allow_weak_secret",
    "store.backend",
    "store.url",
    "proxy.trusted",
    "rate_limit.enabled",
    "rate_limit.per_address",
    "rate_limit.per_token",
    "rate_limit.window",
    "rate_limit.issue_per_token",
    "audit.retention",
    "audit.jwt_issued",
    "tls.cert",
    "tls.key",
    "http.require_https",
    "http.hsts_max_age",
    "http.max_connections",
    "http.max_connections_per_address",
    "http.header_timeout",
    "http.body_timeout",
    "http.keep_alive",
    "http.disconnect_timeout",
    "metrics.enabled",
    "metrics.listen",
    "log.format",
    "log.access",
    "tokens.lookup_secret",
];

/// The settings that hold a list: an array in the file, a comma-separated
/// list in the environment.
const LIST_KEYS: &[&str] = &["proxy.trusted"];

// ---------------------------------------------------------------------------
// Sources
// ---------------------------------------------------------------------------

/// The environment variable of a setting: `jwt.secret` → `STAMPS_JWT__SECRET`.
pub(crate) fn env_var_name(key: &str) -> String {
    format!(
        "{ENV_PREFIX}_{}",
        key.replace('.', "__").to_ascii_uppercase()
    )
}

pub(crate) fn is_setting_env_var(name: &str) -> bool {
    KNOWN_KEYS.iter().any(|key| env_var_name(key) == name)
}

/// True for a key that is a section of settings (`jwt`, `store`).
fn is_section(key: &str) -> bool {
    KNOWN_KEYS.iter().any(|known| {
        known
            .strip_prefix(key)
            .is_some_and(|rest| rest.starts_with('.'))
    })
}

/// Refuses the first (in sorted order) unknown key of the file, then the
/// first key holding a table where a value is expected or the other way round.
pub(crate) fn check_file_keys(
    path: &Path,
    table: &Map<String, Value>,
) -> Result<(), SettingsError> {
    fn walk(
        prefix: &str,
        table: &Map<String, Value>,
        unknown: &mut Vec<String>,
        mistyped: &mut Vec<(String, &'static str)>,
    ) {
        for (key, value) in table {
            let full = if prefix.is_empty() {
                key.clone()
            } else {
                format!("{prefix}.{key}")
            };
            if LIST_KEYS.contains(&full.as_str()) {
                match &value.kind {
                    ValueKind::Array(items)
                        if items
                            .iter()
                            .all(|item| matches!(item.kind, ValueKind::String(_))) => {}
                    _ => mistyped.push((full, "an array of strings")),
                }
            } else if KNOWN_KEYS.contains(&full.as_str()) {
                if matches!(value.kind, ValueKind::Table(_) | ValueKind::Array(_)) {
                    mistyped.push((full, "a single value, not a table or an array"));
                }
            } else if is_section(&full) {
                match &value.kind {
                    ValueKind::Table(inner) => walk(&full, inner, unknown, mistyped),
                    _ => mistyped.push((full, "a table of settings")),
                }
            } else {
                unknown.push(full);
            }
        }
    }

    let mut unknown = Vec::new();
    let mut mistyped = Vec::new();
    walk("", table, &mut unknown, &mut mistyped);
    unknown.sort();
    mistyped.sort();
    if let Some(key) = unknown.into_iter().next() {
        return Err(SettingsError::UnknownKey {
            suggestion: suggest(&key),
            key,
            path: path.to_owned(),
        });
    }
    if let Some((key, expected)) = mistyped.into_iter().next() {
        return Err(SettingsError::WrongType {
            key,
            path: path.to_owned(),
            expected,
        });
    }
    Ok(())
}

/// The known key an unknown one most likely meant: a close spelling, or the
/// same key in its section (`secret` → `jwt.secret`).
fn suggest(unknown: &str) -> Option<&'static str> {
    let lower = unknown.to_ascii_lowercase();
    KNOWN_KEYS
        .iter()
        .copied()
        .filter_map(|known| {
            let distance = if known
                .rsplit('.')
                .next()
                .is_some_and(|leaf| leaf == lower && known != lower)
            {
                1
            } else {
                strsim::levenshtein(&lower, known)
            };
            (distance <= 2).then_some((distance, known))
        })
        .min_by_key(|(distance, _)| *distance)
        .map(|(_, known)| known)
}

/// The position and message of a TOML syntax error, without the excerpt of
/// the offending line that the parser prints (it may hold a secret).
pub(crate) fn describe_toml_error(error: &config::ConfigError) -> String {
    let text = match error {
        config::ConfigError::FileParse { cause, .. } => cause.to_string(),
        other => other.to_string(),
    };
    let lines: Vec<&str> = text.lines().collect();
    match lines
        .first()
        .and_then(|first| first.strip_prefix("TOML parse error at "))
    {
        // The layout is: position, gutter, the line itself, the caret line,
        // then the message.
        Some(position) => {
            let message = one_line(&lines.get(4..).unwrap_or_default().join("\n"));
            if message.is_empty() {
                position.to_owned()
            } else {
                format!("{position}: {message}")
            }
        }
        // No excerpt: a value the parser read but could not represent.
        None if !text.contains('|') => one_line(&text),
        None => "not a valid TOML document".to_owned(),
    }
}

/// Joins the non-empty lines of `text` with spaces.
pub(crate) fn one_line(text: &str) -> String {
    text.lines()
        .map(str::trim)
        .filter(|line| !line.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}
