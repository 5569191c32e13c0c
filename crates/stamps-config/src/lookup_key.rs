//! The key imported static tokens are found by (CONTRACT §2): a secret kept
//! apart from the store, like the JWT key, so that the lookup digests in a
//! stolen database or export test no guess faster than the argon2id hashes
//! beside them (docs/TOKENS.md).
//!
//! Where it comes from: `tokens.lookup_secret` if set; otherwise, on the
//! embedded store, the key file `<data_dir>/token-lookup-key`, made on
//! first need (mode 0600, like `jwt-secret`); on a store several replicas
//! share, nowhere: each replica has a data directory of its own, so the
//! secret must be configured, the same on all of them, to use imported
//! tokens.

use std::path::PathBuf;

use secrecy::ExposeSecret;
use stamps_core::LookupKey;

use crate::error::SettingsError;
use crate::key_file::{generate_key_file, read_key_file};
use crate::settings::{Settings, StoreSettings};
use crate::signing_key::KeySource;

/// The name of the file, inside the data directory, that keeps the
/// generated lookup key when none is configured.
pub const LOOKUP_KEY_FILE_NAME: &str = "token-lookup-key";

/// The lookup key, and where it came from.
#[derive(Debug, Clone)]
pub struct ResolvedLookupKey {
    /// The key.
    pub key: LookupKey,
    /// Where it came from, for the server's start-up log.
    pub source: KeySource,
}

/// The lookup key of `settings`, the key file made now if it is missing
/// (the server, `token import`): `None` on a shared store with no
/// `tokens.lookup_secret`, where imported tokens are off.
///
/// ```
/// use stamps_config::{KeySource, Settings, lookup_key};
///
/// let data_dir = tempfile::tempdir()?;
/// let env = [("STAMPS_DATA_DIR".to_owned(), data_dir.path().display().to_string())];
/// let settings = Settings::load_from(None, env)?;
/// let made = lookup_key(&settings)?.unwrap();
/// assert!(matches!(made.source, KeySource::Generated(_)));
/// let again = lookup_key(&settings)?.unwrap();
/// assert!(matches!(again.source, KeySource::Loaded(_)));
/// assert_eq!(made.key.digest("23095sgtr95402mkdls954002"), again.key.digest("23095sgtr95402mkdls954002"));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn lookup_key(settings: &Settings) -> Result<Option<ResolvedLookupKey>, SettingsError> {
    if let Some(found) = existing_lookup_key(settings)? {
        return Ok(Some(found));
    }
    if !matches!(settings.store, StoreSettings::Sled) {
        return Ok(None);
    }
    let path = lookup_key_path(settings);
    let (secret, source) = generate_key_file(&settings.data_dir, &path, false)?;
    resolved(&secret, source).map(Some)
}

/// [`lookup_key`] for a command that only reads (`token check`): never
/// makes the key file; `None` when there is no key to find imported tokens
/// with.
pub fn existing_lookup_key(
    settings: &Settings,
) -> Result<Option<ResolvedLookupKey>, SettingsError> {
    if let Some(secret) = &settings.tokens.lookup_secret {
        return resolved(secret.expose_secret().as_bytes(), KeySource::Configured).map(Some);
    }
    if !matches!(settings.store, StoreSettings::Sled) {
        return Ok(None);
    }
    let path = lookup_key_path(settings);
    match read_key_file(&path, false)? {
        Some(secret) => resolved(&secret, KeySource::Loaded(path)).map(Some),
        None => Ok(None),
    }
}

/// `<data_dir>/token-lookup-key`.
pub fn lookup_key_path(settings: &Settings) -> PathBuf {
    settings.data_dir.join(LOOKUP_KEY_FILE_NAME)
}

fn resolved(secret: &[u8], source: KeySource) -> Result<ResolvedLookupKey, SettingsError> {
    let key = LookupKey::new(secret).map_err(|e| SettingsError::Invalid {
        setting: "tokens.lookup_secret",
        value: "(hidden)".to_owned(),
        reason: e.to_string(),
    })?;
    Ok(ResolvedLookupKey { key, source })
}
