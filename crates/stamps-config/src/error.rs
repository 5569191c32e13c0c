//! What can go wrong with a configuration or a signing key.

use std::fmt;
use std::io;
use std::path::PathBuf;

use stamps_core::{MIN_STRONG_KEY_LEN, Weakness};
use thiserror::Error;

/// A configuration that cannot be used, or a signing key that cannot be had.
///
/// Each error displays as one line naming the setting (or file) and the
/// problem; none shows a secret. The display is the whole story: the errors
/// carry no further [`std::error::Error::source`].
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum SettingsError {
    /// Occurs when the file named by `--config` cannot be read (it does not
    /// exist, is a directory, is not UTF-8, ...).
    #[error("cannot read config file {}: {cause}", path.display())]
    ConfigFileUnreadable {
        /// The file.
        path: PathBuf,
        /// Why.
        cause: io::Error,
    },
    /// Occurs when the config file is not valid TOML.
    #[error("invalid TOML in {}: {detail}", path.display())]
    ConfigFileSyntax {
        /// The file.
        path: PathBuf,
        /// Where and what, without the content of the line.
        detail: String,
    },
    /// Occurs when the config file has a key that names no setting.
    #[error("unknown key {key:?} in {}{}", path.display(), DidYouMean(*suggestion))]
    UnknownKey {
        /// The dotted path of the key, such as `jwt.secrett`.
        key: String,
        /// The file.
        path: PathBuf,
        /// The known key it most likely meant.
        suggestion: Option<&'static str>,
    },
    /// Occurs when a key of the config file holds a table where a value is
    /// expected, or the other way round.
    #[error("invalid {key} in {}: expected {expected}", path.display())]
    WrongType {
        /// The dotted path of the key.
        key: String,
        /// The file.
        path: PathBuf,
        /// What the key should hold.
        expected: &'static str,
    },
    /// Occurs when a (non-secret) setting has a value that cannot be used.
    #[error("invalid {setting} {value:?}: {reason}")]
    Invalid {
        /// The dotted path of the setting, such as `jwt.lifetime`.
        setting: &'static str,
        /// The value given.
        value: String,
        /// What is wrong with it.
        reason: String,
    },
    /// Occurs when the merged configuration cannot be read into settings,
    /// for example `jwt.allow_weak_secret` set to something other than a
    /// boolean.
    #[error("invalid configuration: {0}")]
    Malformed(String),
    /// Occurs when an environment variable naming a setting is not UTF-8.
    #[error("environment variable {name} is not valid UTF-8")]
    EnvNotUnicode {
        /// The variable.
        name: String,
    },
    /// Occurs when `jwt.secret` is set to the empty string, even with
    /// `allow_weak_secret`.
    #[error(
        "jwt.secret is empty: set a secret of at least {MIN_STRONG_KEY_LEN} bytes, \
         or leave it unset to have one generated"
    )]
    EmptySecret,
    /// Occurs when a secret is weak ([`stamps_core::weakness`]: shorter
    /// than [`MIN_STRONG_KEY_LEN`] bytes, a repeated pattern, too few
    /// distinct bytes) and `jwt.allow_weak_secret` is not set.
    #[error(
        "{origin} {weakness}: an HS256 secret needs at least \
         {MIN_STRONG_KEY_LEN} random bytes (RFC 7518 §3.2); use a longer, random one \
         (openssl rand -base64 32), or set jwt.allow_weak_secret = true (for test vectors only)"
    )]
    WeakSecret {
        /// Where the secret comes from: `jwt.secret`, or the key file.
        origin: String,
        /// What is wrong with it.
        weakness: Weakness,
    },
    /// Occurs when `store.backend` is `postgres` and `store.url` is missing
    /// or empty.
    #[error("store.url is required when store.backend is \"postgres\"")]
    MissingStoreUrl,
    /// Occurs when `store.url` is set but `store.backend` is `sled`: most
    /// likely a forgotten `store.backend = "postgres"`.
    #[error(
        "store.url is set but store.backend is \"sled\": set store.backend = \"postgres\" \
         to use it, or remove store.url"
    )]
    UnusedStoreUrl,
    /// Occurs when one of `tls.cert` and `tls.key` is set without the other.
    #[error("{set} is set but {missing} is not: TLS needs both")]
    TlsHalf {
        /// The setting given.
        set: &'static str,
        /// The one missing.
        missing: &'static str,
    },
    /// Occurs when the data directory cannot be created.
    #[error("cannot create data directory {}: {cause}", path.display())]
    DataDir {
        /// The directory.
        path: PathBuf,
        /// Why.
        cause: io::Error,
    },
    /// Occurs when the key file cannot be read or written.
    #[error("cannot {action} key file {}: {cause}", path.display())]
    KeyFileIo {
        /// The key file.
        path: PathBuf,
        /// What was attempted: `read`, `write`, ...
        action: &'static str,
        /// Why it failed.
        cause: io::Error,
    },
    /// Occurs when the key file gives any permission to group or others.
    #[error(
        "key file {path} has mode {mode:04o}: it must give no permission to group or \
         others (chmod 600 {path})",
        path = path.display()
    )]
    KeyFilePermissions {
        /// The key file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// Occurs when the key file belongs to another user than the one
    /// reading it: they could have written a secret of their choosing.
    #[error(
        "key file {} belongs to uid {owner}, not to uid {me}, which reads it: another user \
         could have written a secret of their choosing (chown {me} {})",
        path.display(),
        path.display()
    )]
    KeyFileOwner {
        /// The key file.
        path: PathBuf,
        /// Its owner.
        owner: u32,
        /// The user reading it.
        me: u32,
    },
    /// Occurs when the key file holds no usable secret: empty, not UTF-8
    /// text, too large, or not a regular file.
    #[error("invalid key file {}: {problem}", path.display())]
    KeyFileInvalid {
        /// The key file.
        path: PathBuf,
        /// What is wrong with it.
        problem: &'static str,
    },
    /// Occurs when the operating system's random generator fails while
    /// generating a secret.
    #[error("cannot generate a JWT secret: the system's random generator failed: {0}")]
    Randomness(String),
}

/// Displays `" (did you mean \"jwt.secret\"?)"`, or nothing.
struct DidYouMean(Option<&'static str>);

impl fmt::Display for DidYouMean {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(key) => write!(f, " (did you mean {key:?}?)"),
            None => Ok(()),
        }
    }
}
