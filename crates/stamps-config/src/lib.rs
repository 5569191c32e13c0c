//! The configuration of `stamps-server` and `stamps-admin` (CONTRACT §3.1): where it listens, where
//! it keeps its data, how it signs JWTs, which store it uses, which proxies
//! it trusts, how it limits failed authentication, TLS, how it treats
//! connections, metrics and the log format.
//!
//! Settings come from three layers, each over the previous one:
//!
//! 1. the built-in defaults (`listen = "127.0.0.1:8080"`,
//!    `data_dir = "./stamps-data"`, `jwt.lifetime = "24h"`,
//!    `jwt.leeway = "30s"`, `jwt.allow_weak_secret = false`,
//!    `store.backend = "sled"`, no `jwt.secret`; no trusted proxy; rate
//!    limits on, 60 failures a minute per address and 10 per token id, 600
//!    JWTs a minute per static token; audit events kept 30 days; no
//!    TLS; `require_https` off, connections and timeouts as in
//!    [`HttpSettings::default`]; metrics off; text logs);
//! 2. the TOML file named by `--config PATH`, if any: a missing file, an
//!    unknown key or a key of the wrong type is an error;
//! 3. the environment variables named after each key: `STAMPS_LISTEN`,
//!    `STAMPS_DATA_DIR`, `STAMPS_JWT__SECRET`, ..., `STAMPS_PROXY__TRUSTED`
//!    (a comma-separated list), `STAMPS_RATE_LIMIT__PER_ADDRESS`,
//!    `STAMPS_TLS__CERT`, `STAMPS_HTTP__REQUIRE_HTTPS`, ... (`__` separates
//!    a section from its key). Names are matched exactly, in upper case; any
//!    other variable, `STAMPS_`-prefixed or not, is ignored.
//!
//! [`Settings::load`] merges and validates them into [`Settings`]; every
//! [`SettingsError`] displays as one line naming the setting and the problem,
//! and never shows a secret (the JWT secret, or the PostgreSQL URL, which may
//! hold a password). `Debug` of every settings type hides them too.
//!
//! With no configured secret, [`resolve_signing_key`] keeps a generated one
//! in `<data_dir>/jwt-secret` ([`KEY_FILE_NAME`]), readable by its owner only;
//! [`lookup_key`] does the same for the key imported tokens are found by
//! (`tokens.lookup_secret`, or `<data_dir>/token-lookup-key`).
//!
//! This crate has no HTTP and no store in it: `stamps-admin` reads the same
//! settings as the server without compiling either. It gives plain values
//! ([`TrustedProxies`], [`AuditPolicy`], the limits of
//! [`RateLimitSettings`]); the crates that act on them build their own
//! types from these.
//!
//! # Example
//!
//! ```
//! use std::time::Duration;
//! use stamps_config::{KeySource, Settings, StoreSettings, resolve_signing_key};
//!
//! let data_dir = tempfile::tempdir()?;
//! let env = [
//!     ("STAMPS_JWT__LIFETIME".to_owned(), "15m".to_owned()),
//!     ("STAMPS_DATA_DIR".to_owned(), data_dir.path().display().to_string()),
//!     ("STAMPS_NOT_A_SETTING".to_owned(), "ignored".to_owned()),
//! ];
//! let settings = Settings::load_from(None, env)?;
//! assert_eq!(settings.listen.to_string(), "127.0.0.1:8080");
//! assert_eq!(settings.jwt.rules.lifetime(), Duration::from_secs(15 * 60));
//! assert!(matches!(settings.store, StoreSettings::Sled));
//!
//! // No secret configured: one is generated on first use, then reused.
//! let first = resolve_signing_key(&settings)?;
//! assert!(matches!(first.source, KeySource::Generated(_)));
//! let again = resolve_signing_key(&settings)?;
//! assert!(matches!(again.source, KeySource::Loaded(_)));
//! assert_eq!(first.key, again.key);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod error;
mod key_file;
mod lookup_key;
mod proxy;
mod raw;
mod settings;
mod signing_key;
mod sources;
#[cfg(test)]
mod tests;

pub use error::SettingsError;
pub use lookup_key::{
    LOOKUP_KEY_FILE_NAME, ResolvedLookupKey, existing_lookup_key, lookup_key, lookup_key_path,
};
pub use proxy::{TrustedProxies, parse_trusted_net};
pub use settings::{
    AuditPolicy, HttpSettings, JwtSettings, LogFormat, LogSettings, MetricsSettings, ProxySettings,
    RateLimitSettings, Settings, StoreSettings, TlsSettings, TokensSettings,
};
pub use signing_key::{
    KEY_FILE_NAME, KeySource, ResolvedKey, base_signing_key, existing_base_signing_key,
    existing_signing_key, resolve_signing_key,
};
