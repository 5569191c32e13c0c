//! `token import` and `token import-file`: the tokens clients of an
//! existing deployment already hold (CONTRACT §2), stored as argon2id
//! hashes and found by their digest under the lookup key. The text comes
//! from stdin or a file, never from the command line (where `ps` and shell
//! history would keep it), and is never printed.

use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::path::Path;

use serde::Deserialize;
use stamps_config::{Settings, lookup_key};
use stamps_core::{LookupKey, SecretString};
use stamps_store::{Store, StoreError, TokenImport, TokenRecord};

use crate::error::AdminError;

/// The most read from stdin or a file: an import of a million tokens is
/// well under it.
const MAX_INPUT_BYTES: u64 = 1 << 30;

/// One line of `token import-file`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ImportLine {
    token: String,
    user_id: u64,
    merchant_id: u64,
    #[serde(default)]
    label: Option<String>,
    /// RFC 3339, any offset; absent or null: never.
    #[serde(default)]
    expires_at: Option<String>,
}

/// The lookup key imports are made with: the server's (`tokens.lookup_secret`,
/// or on sled the data directory's key file, made now if missing).
pub fn key(settings: &Settings) -> Result<LookupKey, AdminError> {
    match lookup_key(settings)? {
        Some(resolved) => Ok(resolved.key),
        None => Err(AdminError::Invalid(
            "imported tokens on a shared store need tokens.lookup_secret (STAMPS_TOKENS__LOOKUP_SECRET), \
             the same as every replica's"
                .into(),
        )),
    }
}

/// `token import`: one token's text, one line of stdin.
pub fn read_one(input: impl Read) -> Result<SecretString, AdminError> {
    let mut text = String::new();
    input
        .take(64 * 1024)
        .read_to_string(&mut text)
        .map_err(AdminError::io("cannot read the token from stdin"))?;
    let text = SecretString::from(text);
    let lines: Vec<&str> = stamps_core::ExposeSecret::expose_secret(&text)
        .lines()
        .filter(|line| !line.is_empty())
        .collect();
    match lines.as_slice() {
        [one] => Ok(SecretString::from(*one)),
        [] => Err(AdminError::Invalid(
            "give the token's text on stdin (one line)".into(),
        )),
        _ => Err(AdminError::Invalid(
            "stdin holds more than one line: token import takes one token (token import-file takes many)"
                .into(),
        )),
    }
}

/// `token import-file`: JSON lines `{"token", "user_id", "merchant_id",
/// "label"?, "expires_at"?}` from `path` (`-`: stdin), with the number of
/// the line each came from. A bad line is refused by its number, without
/// quoting it.
pub fn read_file(path: &Path) -> Result<Vec<(usize, TokenImport)>, AdminError> {
    let reader: Box<dyn BufRead> = if path == Path::new("-") {
        Box::new(BufReader::new(std::io::stdin().take(MAX_INPUT_BYTES)))
    } else {
        let file =
            File::open(path).map_err(AdminError::io(format!("cannot read {}", path.display())))?;
        Box::new(BufReader::new(file.take(MAX_INPUT_BYTES)))
    };
    let mut imports = Vec::new();
    for (index, line) in reader.lines().enumerate() {
        let number = index + 1;
        let invalid = |reason: String| StoreError::InvalidImport {
            line: number,
            reason,
        };
        let line = SecretString::from(line.map_err(|e| invalid(e.to_string()))?);
        let text = stamps_core::ExposeSecret::expose_secret(&line);
        if text.trim().is_empty() {
            continue;
        }
        // serde's message could quote a value: only its kind and column.
        let parsed: ImportLine = serde_json::from_str(text).map_err(|e| {
            invalid(format!(
                "not a JSON object of token, user_id, merchant_id, label and expires_at ({:?} error at column {})",
                e.classify(),
                e.column()
            ))
        })?;
        let expires_at = parsed
            .expires_at
            .as_deref()
            .map(crate::args::expires_at)
            .transpose()
            .map_err(|e| invalid(format!("expires_at: {e}")))?;
        imports.push((
            number,
            TokenImport {
                text: SecretString::from(parsed.token),
                user_id: parsed.user_id,
                merchant_id: parsed.merchant_id,
                label: parsed.label,
                expires_at,
            },
        ));
    }
    if imports.is_empty() {
        return Err(AdminError::Invalid(format!(
            "{} holds no token to import",
            path.display()
        )));
    }
    Ok(imports)
}

/// Imports `imports` (each with the line it came from), all or none; a
/// refusal names that line.
pub fn import(
    store: &dyn Store,
    key: &LookupKey,
    imports: Vec<(usize, TokenImport)>,
) -> Result<Vec<TokenRecord>, AdminError> {
    let (lines, imports): (Vec<usize>, Vec<TokenImport>) = imports.into_iter().unzip();
    store.import_tokens(&imports, key).map_err(|e| match e {
        // The store numbers entries; the operator knows lines.
        StoreError::InvalidImport { line, reason } => StoreError::InvalidImport {
            line: lines.get(line.wrapping_sub(1)).copied().unwrap_or(line),
            reason,
        }
        .into(),
        other => other.into(),
    })
}
