//! Unit tests of loading, validation and the key file.

use std::fs;
use std::num::NonZeroU32;
use std::path::{Path, PathBuf};
use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};

use std::collections::BTreeSet;
#[cfg(unix)]
use std::os::unix::fs::PermissionsExt;

use crate::raw::RawSettings;
use crate::sources::{KNOWN_KEYS, env_var_name};
use crate::*;

const STRONG: &str = "a-secret-of-at-least-thirty-two-bytes!";
const WEAK: &str = "TESTJWT-weak-secret";

pub(super) fn serialize_secret<S: serde::Serializer>(
    secret: &Option<SecretString>,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    serde::Serialize::serialize(&secret.as_ref().map(|_| "[redacted]"), serializer)
}

fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(name, value)| ((*name).to_owned(), (*value).to_owned()))
        .collect()
}

fn write_config(dir: &Path, text: &str) -> PathBuf {
    let path = dir.join("stamps.toml");
    fs::write(&path, text).unwrap();
    path
}

fn load_file(text: &str) -> Result<Settings, SettingsError> {
    let dir = tempfile::tempdir().unwrap();
    Settings::load_from(Some(&write_config(dir.path(), text)), Vec::new())
}

fn load_env(pairs: &[(&str, &str)]) -> Result<Settings, SettingsError> {
    Settings::load_from(None, env(pairs))
}

fn error_of(result: Result<Settings, SettingsError>) -> String {
    let error = result.unwrap_err();
    let shown = error.to_string();
    assert!(!shown.contains('\n'), "more than one line: {shown}");
    shown
}

fn settings_in(dir: &Path) -> Settings {
    Settings {
        data_dir: dir.to_owned(),
        ..Settings::default()
    }
}

fn base64url_decode(text: &str) -> Vec<u8> {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(text)
        .unwrap()
}

#[cfg(unix)]
fn mode_of(path: &Path) -> u32 {
    fs::metadata(path).unwrap().permissions().mode() & 0o777
}

// --- sources -----------------------------------------------------------
fn set_mode(path: &Path, mode: u32) {
    #[cfg(unix)]
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).unwrap();
    #[cfg(not(unix))]
    let _ = (path, mode);
}

mod key_file;
mod load;
