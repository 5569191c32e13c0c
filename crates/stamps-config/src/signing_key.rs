//! The signing key: the configured secret, or the key file the server
//! generates in the data directory on first use.

use std::path::PathBuf;

use secrecy::ExposeSecret;
use stamps_core::SigningKey;

use crate::error::SettingsError;
use crate::key_file::{generate_key_file, read_key_file};
use crate::raw::check_secret;
use crate::settings::{Settings, StoreSettings};

/// The name of the file, inside the data directory, that keeps the generated
/// JWT secret when none is configured.
pub const KEY_FILE_NAME: &str = "jwt-secret";

// ---------------------------------------------------------------------------
// The signing key
// ---------------------------------------------------------------------------

/// The HS256 key the server signs with, and where it came from.
#[derive(Debug, Clone)]
pub struct ResolvedKey {
    /// The key.
    pub key: SigningKey,
    /// Where it came from, for the server's start-up log.
    pub source: KeySource,
}

/// Where the signing key came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeySource {
    /// `jwt.secret`.
    Configured,
    /// A new secret, just written to this key file.
    Generated(PathBuf),
    /// The secret of this existing key file.
    Loaded(PathBuf),
    /// None: a store several servers share, with no `jwt.secret`, keeps
    /// the keys that sign and verify (rotated keys); the base key is
    /// random, known to no one ([`base_signing_key`]).
    Store,
}

/// The signing key of `settings`: the configured `jwt.secret`, or else the
/// secret of the key file `<data_dir>/jwt-secret`, generated on first use.
///
/// The key file holds the secret as text: a new one is 43 characters of
/// base64url (32 random bytes from the operating system) and a newline, which
/// is not part of the key; the HMAC key is the text's bytes, so the file's
/// content can be copied into `jwt.secret`. A new file is created (with the
/// data directory, mode 0700, if needed) with mode 0600 from the start and
/// appears complete or not at all; when two processes race, both end up with
/// the winner's secret.
///
/// An existing key file must give no permission to group or others, and hold
/// UTF-8 text (trailing line breaks are ignored) that is not empty, nor
/// weak unless `jwt.allow_weak_secret` is set.
pub fn resolve_signing_key(settings: &Settings) -> Result<ResolvedKey, SettingsError> {
    match existing_signing_key(settings)? {
        Some(resolved) => Ok(resolved),
        None => {
            let path = settings.key_file_path();
            let (secret, source) =
                generate_key_file(&settings.data_dir, &path, settings.jwt.allow_weak_secret)?;
            let key = SigningKey::new(secret.to_vec())
                .map_err(|_| SettingsError::Randomness("empty secret".to_owned()))?;
            Ok(ResolvedKey { key, source })
        }
    }
}

/// Like [`resolve_signing_key`], but never generates a key file: `None`
/// when there is neither a configured secret nor a key file (for tools
/// that only read, such as `stamps-admin jwt inspect`).
pub fn existing_signing_key(settings: &Settings) -> Result<Option<ResolvedKey>, SettingsError> {
    let allow_weak = settings.jwt.allow_weak_secret;
    if let Some(secret) = &settings.jwt.secret {
        let bytes = secret.expose_secret().as_bytes();
        check_secret(bytes, allow_weak, || "jwt.secret".to_owned())?;
        let key = SigningKey::new(bytes.to_vec()).map_err(|_| SettingsError::EmptySecret)?;
        return Ok(Some(ResolvedKey {
            key,
            source: KeySource::Configured,
        }));
    }
    let path = settings.key_file_path();
    let Some(secret) = read_key_file(&path, allow_weak)? else {
        return Ok(None);
    };
    // An exact copy: no reallocation leaves the secret behind; the buffer
    // read is wiped when dropped.
    let key = SigningKey::new(secret.to_vec()).map_err(|_| SettingsError::EmptySecret)?;
    Ok(Some(ResolvedKey {
        key,
        source: KeySource::Loaded(path),
    }))
}

/// The base key of the server's key set, chosen as the server chooses
/// it. With a store several servers share (`[store] backend =
/// "postgres"`) and no `jwt.secret`: a random key known to no one
/// ([`KeySource::Store`]; the store's rotated keys sign and verify).
/// Otherwise the configured secret, or the key file, made now if missing
/// ([`resolve_signing_key`]).
pub fn base_signing_key(settings: &Settings) -> Result<ResolvedKey, SettingsError> {
    store_keys_sign(settings).map_or_else(|| resolve_signing_key(settings), Ok)
}

/// [`base_signing_key`] for a tool that must never make a key file
/// (`stamps-admin jwt inspect`): `None` when there is neither a secret nor
/// a key file to check against.
pub fn existing_base_signing_key(
    settings: &Settings,
) -> Result<Option<ResolvedKey>, SettingsError> {
    match store_keys_sign(settings) {
        Some(store) => Ok(Some(store)),
        None => existing_signing_key(settings),
    }
}

/// The base key when the store's keys sign: a shared store, no secret.
fn store_keys_sign(settings: &Settings) -> Option<ResolvedKey> {
    let shared = matches!(settings.store, StoreSettings::Postgres { .. });
    (shared && settings.jwt.secret.is_none()).then(|| ResolvedKey {
        key: SigningKey::random(),
        source: KeySource::Store,
    })
}
