//! The settings of `stamps-server` (CONTRACT §3.1): where it listens, where
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
//! in `<data_dir>/jwt-secret` ([`KEY_FILE_NAME`]), readable by its owner only.
//!
//! # Example
//!
//! ```
//! use std::time::Duration;
//! use stamps_http::settings::{KeySource, Settings, StoreSettings, resolve_signing_key};
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

use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::net::{Ipv4Addr, SocketAddr};
use std::num::NonZeroU32;
use std::path::{Path, PathBuf};
use std::time::Duration;

use config::{Config, Environment, FileFormat, Map, Source, Value, ValueKind};
use rand::TryRngCore;
use rand::rngs::OsRng;
use secrecy::zeroize::Zeroizing;
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Deserializer};
use stamps_core::{ConfigError, ExpiryRules, MIN_STRONG_KEY_LEN, SigningKey, Weakness, weakness};
use thiserror::Error;

use crate::audit::AuditPolicy;
use crate::client::{TrustedProxies, parse_trusted_net};
use crate::quota::IssueQuota;
use crate::throttle::Throttle;

/// The name of the file, inside the data directory, that keeps the generated
/// JWT secret when none is configured.
pub const KEY_FILE_NAME: &str = "jwt-secret";

/// The prefix of the environment variables that set settings.
const ENV_PREFIX: &str = "STAMPS";

/// Every setting, as the dotted path of its key. The environment variable of
/// `jwt.secret` is `STAMPS_JWT__SECRET`. A test checks that this list matches
/// the fields of [`RawSettings`] exactly.
const KNOWN_KEYS: &[&str] = &[
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
];

/// The settings that hold a list: an array in the file, a comma-separated
/// list in the environment.
const LIST_KEYS: &[&str] = &["proxy.trusted"];

/// The largest key file read: a secret longer than this is not one.
const MAX_KEY_FILE_LEN: u64 = 4096;

/// Random bytes in a generated secret: 256 bits.
const GENERATED_SECRET_BYTES: usize = 32;

// ---------------------------------------------------------------------------
// The validated settings
// ---------------------------------------------------------------------------

/// The validated settings of `stamps-server`.
///
/// `Debug` hides the JWT secret and the store URL.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The address the HTTP API listens on (`listen`). Port 0 asks the system
    /// for a free port.
    pub listen: SocketAddr,
    /// The directory of the embedded store and of the generated key file
    /// (`data_dir`).
    pub data_dir: PathBuf,
    /// How JWTs are signed and how long they live (`[jwt]`).
    pub jwt: JwtSettings,
    /// Which store keeps the static tokens (`[store]`).
    pub store: StoreSettings,
    /// Which proxies may name the client (`[proxy]`).
    pub proxy: ProxySettings,
    /// The limits on failed authentication and on issuance
    /// (`[rate_limit]`).
    pub rate_limit: RateLimitSettings,
    /// What the audit trail keeps (`[audit]`).
    pub audit: AuditPolicy,
    /// Native TLS (`[tls]`); `None` serves plain HTTP.
    pub tls: Option<TlsSettings>,
    /// HTTPS policy, connection limits and timeouts (`[http]`).
    pub http: HttpSettings,
    /// Prometheus metrics (`[metrics]`).
    pub metrics: MetricsSettings,
    /// How log lines are written (`[log]`).
    pub log: LogSettings,
}

/// The `[metrics]` settings. Off by default: metrics say how much traffic
/// and how many failures a server sees, which is not for everyone.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MetricsSettings {
    /// Count, and serve `GET /metrics` (`metrics.enabled`; off by default).
    pub enabled: bool,
    /// A listener of its own for `/metrics` (`metrics.listen`), which the
    /// main listener then answers 404 for; `None` serves it on the main
    /// listener. Plain HTTP, whatever `[tls]` says: keep it on loopback or
    /// a private network.
    pub listen: Option<SocketAddr>,
}

/// The `[log]` settings. Levels come from the `STAMPS_LOG` (or `RUST_LOG`)
/// environment variable, in `tracing`'s filter syntax.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LogSettings {
    /// Text for people, or JSON lines for a log pipeline (`log.format`).
    pub format: LogFormat,
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum LogFormat {
    /// One human-readable line per event (`"text"`, the default).
    #[default]
    Text,
    /// One JSON object per line (`"json"`).
    Json,
}

/// The `[proxy]` settings.
#[derive(Debug, Clone, Default)]
pub struct ProxySettings {
    /// The proxies whose `X-Forwarded-For` and `X-Forwarded-Proto` are
    /// believed (`proxy.trusted`; none by default).
    pub trusted: TrustedProxies,
}

/// The `[rate_limit]` settings: failed authentications allowed per client
/// address and per static token id, in a sliding window.
#[derive(Debug, Clone)]
pub struct RateLimitSettings {
    /// Whether failures are limited at all (`rate_limit.enabled`).
    pub enabled: bool,
    /// Failures per window from one client address (`rate_limit.per_address`).
    pub per_address: NonZeroU32,
    /// Failures per window against one static token id
    /// (`rate_limit.per_token`).
    pub per_token: NonZeroU32,
    /// The window (`rate_limit.window`): a limit's whole budget comes back
    /// over it, one failure at a time.
    pub window: Duration,
    /// JWTs one static token may obtain per window
    /// (`rate_limit.issue_per_token`, 600 by default); `None` (0): no
    /// limit. Not turned off by `enabled`, which is about failures.
    pub issue_per_token: Option<NonZeroU32>,
}

impl RateLimitSettings {
    /// The throttle these settings describe, or `None` when disabled.
    pub fn throttle(&self) -> Option<Throttle> {
        if !self.enabled {
            return None;
        }
        Throttle::new(self.per_address, self.per_token, self.window)
    }

    /// The issuance quota these settings describe, or `None` for no limit.
    pub fn issue_quota(&self) -> Option<IssueQuota> {
        IssueQuota::new(self.issue_per_token?, self.window)
    }
}

/// The `[tls]` settings: PEM files of the certificate chain and its key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsSettings {
    /// The certificate chain, leaf first (`tls.cert`).
    pub cert: PathBuf,
    /// The private key (`tls.key`).
    pub key: PathBuf,
}

/// The `[http]` settings: what the server demands of connections, and how
/// long it waits for them.
#[derive(Debug, Clone)]
pub struct HttpSettings {
    /// Refuse plain-HTTP requests with 403 `https_required`
    /// (`http.require_https`).
    pub require_https: bool,
    /// The `max-age` of `Strict-Transport-Security` on HTTPS responses
    /// (`http.hsts_max_age`).
    pub hsts_max_age: Duration,
    /// Open connections at most, all workers together
    /// (`http.max_connections`); more wait in the listen queue.
    pub max_connections: usize,
    /// Open connections at most from one client address (an IPv6 /64),
    /// trusted proxies excepted; more are closed on arrival
    /// (`http.max_connections_per_address`; a tenth of `max_connections`
    /// unless set; 0: no cap).
    pub max_connections_per_address: usize,
    /// A connection's first request head must arrive within this, or it is
    /// closed with 408 (`http.header_timeout`).
    pub header_timeout: Duration,
    /// A request body must arrive within this, or the request is refused
    /// with 400 (`http.body_timeout`).
    pub body_timeout: Duration,
    /// An idle keep-alive connection is closed after this; zero disables
    /// keep-alive (`http.keep_alive`).
    pub keep_alive: Duration,
    /// A client gets this long to close its side after the response before
    /// the connection is dropped (`http.disconnect_timeout`).
    pub disconnect_timeout: Duration,
}

impl Default for RateLimitSettings {
    fn default() -> Self {
        Self {
            enabled: true,
            per_address: NonZeroU32::new(60).unwrap_or(NonZeroU32::MIN),
            per_token: NonZeroU32::new(10).unwrap_or(NonZeroU32::MIN),
            window: Duration::from_secs(60),
            issue_per_token: NonZeroU32::new(600),
        }
    }
}

impl Default for HttpSettings {
    fn default() -> Self {
        Self {
            require_https: false,
            hsts_max_age: Duration::from_secs(365 * 86_400),
            max_connections: 10_000,
            max_connections_per_address: 1_000,
            header_timeout: Duration::from_secs(5),
            body_timeout: Duration::from_secs(10),
            keep_alive: Duration::from_secs(5),
            disconnect_timeout: Duration::from_secs(1),
        }
    }
}

/// The `[jwt]` settings.
#[derive(Debug, Clone)]
pub struct JwtSettings {
    /// The configured HMAC secret (`jwt.secret`), never empty; `None` to use
    /// the key file of the data directory (see [`resolve_signing_key`]).
    pub secret: Option<SecretString>,
    /// The lifetime and leeway of minted JWTs (`jwt.lifetime`, `jwt.leeway`).
    pub rules: ExpiryRules,
    /// Whether a weak secret ([`stamps_core::weakness`]: shorter than
    /// [`MIN_STRONG_KEY_LEN`] bytes, or of low variety) is accepted
    /// (`jwt.allow_weak_secret`), for test vectors such as `TESTJWT`.
    pub allow_weak_secret: bool,
}

impl JwtSettings {
    /// True when a secret is configured and is weak (it was accepted
    /// because `allow_weak_secret` is set): the server should log a
    /// warning.
    pub fn secret_is_weak(&self) -> bool {
        self.secret
            .as_ref()
            .is_some_and(|secret| is_weak(secret.expose_secret().as_bytes()))
    }
}

/// The `[store]` settings: which backend keeps the static tokens.
#[derive(Debug, Clone)]
pub enum StoreSettings {
    /// The embedded sled store, in the data directory (`backend = "sled"`).
    Sled,
    /// A PostgreSQL database shared by several replicas
    /// (`backend = "postgres"`).
    Postgres {
        /// The connection URL (`store.url`); secret, as it may hold a
        /// password.
        url: SecretString,
    },
}

impl Default for Settings {
    /// The built-in defaults: what [`Settings::load_from`] returns with no
    /// file and no environment.
    fn default() -> Self {
        Self {
            listen: SocketAddr::from((Ipv4Addr::LOCALHOST, 8080)),
            data_dir: PathBuf::from("./stamps-data"),
            jwt: JwtSettings {
                secret: None,
                rules: ExpiryRules::default(),
                allow_weak_secret: false,
            },
            store: StoreSettings::Sled,
            proxy: ProxySettings::default(),
            rate_limit: RateLimitSettings::default(),
            audit: AuditPolicy::default(),
            tls: None,
            http: HttpSettings::default(),
            metrics: MetricsSettings::default(),
            log: LogSettings::default(),
        }
    }
}

impl Settings {
    /// Loads the settings from the defaults, the TOML file `config` (if
    /// given), and the process environment.
    ///
    /// Only the `STAMPS_...` variables that name a setting are read; one of
    /// them whose value is not UTF-8 is an error.
    pub fn load(config: Option<&Path>) -> Result<Self, SettingsError> {
        let mut env = Vec::new();
        for (name, value) in std::env::vars_os() {
            let Some(name) = name.to_str() else { continue };
            if !is_setting_env_var(name) {
                continue;
            }
            let value = value
                .into_string()
                .map_err(|_| SettingsError::EnvNotUnicode {
                    name: name.to_owned(),
                })?;
            env.push((name.to_owned(), value));
        }
        Self::load_from(config, env)
    }

    /// Loads the settings from the defaults, the TOML file `config` (if
    /// given), and the environment variables `env` instead of the process's:
    /// for tests. Variables that name no setting are ignored.
    pub fn load_from(
        config: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Self, SettingsError> {
        let mut builder = Config::builder();
        if let Some(path) = config {
            let text =
                fs::read_to_string(path).map_err(|cause| SettingsError::ConfigFileUnreadable {
                    path: path.to_owned(),
                    cause,
                })?;
            let file = config::File::from_str(&text, FileFormat::Toml);
            let table = file
                .collect()
                .map_err(|error| SettingsError::ConfigFileSyntax {
                    path: path.to_owned(),
                    detail: describe_toml_error(&error),
                })?;
            check_file_keys(path, &table)?;
            builder = builder.add_source(file);
        }

        let env: Map<String, String> = env
            .into_iter()
            .filter(|(name, _)| is_setting_env_var(name))
            .collect();
        builder = builder.add_source(
            Environment::with_prefix(ENV_PREFIX)
                .prefix_separator("_")
                .separator("__")
                .source(Some(env)),
        );

        let raw: RawSettings = builder
            .build()
            .and_then(Config::try_deserialize)
            .map_err(|error| SettingsError::Malformed(one_line(&error.to_string())))?;
        raw.validate()
    }

    /// The path of the key file that keeps the generated secret:
    /// `<data_dir>/jwt-secret`.
    pub fn key_file_path(&self) -> PathBuf {
        self.data_dir.join(KEY_FILE_NAME)
    }
}

// ---------------------------------------------------------------------------
// Errors
// ---------------------------------------------------------------------------

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

// ---------------------------------------------------------------------------
// The raw layer
// ---------------------------------------------------------------------------

/// The settings as written, before validation. Its `Default` is the built-in
/// defaults of CONTRACT §3.1.
#[derive(Debug, Deserialize)]
#[cfg_attr(test, derive(serde::Serialize))]
#[serde(deny_unknown_fields, default)]
struct RawSettings {
    listen: String,
    data_dir: String,
    jwt: RawJwt,
    store: RawStore,
    proxy: RawProxy,
    rate_limit: RawRateLimit,
    audit: RawAudit,
    tls: RawTls,
    http: RawHttp,
    metrics: RawMetrics,
    log: RawLog,
}

#[derive(Debug, Deserialize)]
#[cfg_attr(test, derive(serde::Serialize))]
#[serde(deny_unknown_fields, default)]
struct RawMetrics {
    enabled: RawBool,
    listen: Option<String>,
}

impl Default for RawMetrics {
    fn default() -> Self {
        Self {
            enabled: RawBool::Bool(false),
            listen: None,
        }
    }
}

#[derive(Debug, Deserialize)]
#[cfg_attr(test, derive(serde::Serialize))]
#[serde(deny_unknown_fields, default)]
struct RawLog {
    format: String,
}

impl Default for RawLog {
    fn default() -> Self {
        Self {
            format: "text".to_owned(),
        }
    }
}

#[derive(Debug, Default, Deserialize)]
#[cfg_attr(test, derive(serde::Serialize))]
#[serde(deny_unknown_fields, default)]
struct RawProxy {
    trusted: RawList,
}

#[derive(Debug, Deserialize)]
#[cfg_attr(test, derive(serde::Serialize))]
#[serde(deny_unknown_fields, default)]
struct RawRateLimit {
    enabled: RawBool,
    per_address: RawNumber,
    per_token: RawNumber,
    window: String,
    issue_per_token: RawNumber,
}

#[derive(Debug, Deserialize)]
#[cfg_attr(test, derive(serde::Serialize))]
#[serde(deny_unknown_fields, default)]
struct RawAudit {
    retention: String,
    jwt_issued: RawBool,
}

impl Default for RawAudit {
    fn default() -> Self {
        Self {
            retention: "30d".to_owned(),
            jwt_issued: RawBool::Bool(AuditPolicy::default().jwt_issued),
        }
    }
}

#[derive(Debug, Default, Deserialize)]
#[cfg_attr(test, derive(serde::Serialize))]
#[serde(deny_unknown_fields, default)]
struct RawTls {
    cert: Option<String>,
    key: Option<String>,
}

#[derive(Debug, Deserialize)]
#[cfg_attr(test, derive(serde::Serialize))]
#[serde(deny_unknown_fields, default)]
struct RawHttp {
    require_https: RawBool,
    hsts_max_age: String,
    max_connections: RawNumber,
    /// Unset: a tenth of `max_connections`.
    max_connections_per_address: Option<RawNumber>,
    header_timeout: String,
    body_timeout: String,
    keep_alive: String,
    disconnect_timeout: String,
}

#[derive(Debug, Deserialize)]
#[cfg_attr(test, derive(serde::Serialize))]
#[serde(deny_unknown_fields, default)]
struct RawJwt {
    #[serde(deserialize_with = "deserialize_secret")]
    #[cfg_attr(test, serde(serialize_with = "tests::serialize_secret"))]
    secret: Option<SecretString>,
    lifetime: String,
    leeway: String,
    allow_weak_secret: RawBool,
}

#[derive(Debug, Deserialize)]
#[cfg_attr(test, derive(serde::Serialize))]
#[serde(deny_unknown_fields, default)]
struct RawStore {
    backend: String,
    #[serde(deserialize_with = "deserialize_secret")]
    #[cfg_attr(test, serde(serialize_with = "tests::serialize_secret"))]
    url: Option<SecretString>,
}

impl Default for RawSettings {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:8080".to_owned(),
            data_dir: "./stamps-data".to_owned(),
            jwt: RawJwt::default(),
            store: RawStore::default(),
            proxy: RawProxy::default(),
            rate_limit: RawRateLimit::default(),
            audit: RawAudit::default(),
            tls: RawTls::default(),
            http: RawHttp::default(),
            metrics: RawMetrics::default(),
            log: RawLog::default(),
        }
    }
}

impl Default for RawRateLimit {
    fn default() -> Self {
        let defaults = RateLimitSettings::default();
        Self {
            enabled: RawBool::Bool(defaults.enabled),
            per_address: RawNumber::Number(u64::from(defaults.per_address.get())),
            per_token: RawNumber::Number(u64::from(defaults.per_token.get())),
            window: "1m".to_owned(),
            issue_per_token: RawNumber::Number(
                defaults.issue_per_token.map_or(0, |n| u64::from(n.get())),
            ),
        }
    }
}

impl Default for RawHttp {
    fn default() -> Self {
        Self {
            require_https: RawBool::Bool(false),
            hsts_max_age: "365d".to_owned(),
            max_connections: RawNumber::Number(HttpSettings::default().max_connections as u64),
            max_connections_per_address: None,
            header_timeout: "5s".to_owned(),
            body_timeout: "10s".to_owned(),
            keep_alive: "5s".to_owned(),
            disconnect_timeout: "1s".to_owned(),
        }
    }
}

impl Default for RawJwt {
    fn default() -> Self {
        Self {
            secret: None,
            lifetime: "24h".to_owned(),
            leeway: "30s".to_owned(),
            allow_weak_secret: RawBool::Bool(false),
        }
    }
}

impl Default for RawStore {
    fn default() -> Self {
        Self {
            backend: "sled".to_owned(),
            url: None,
        }
    }
}

/// A boolean as written: a TOML file has booleans, the environment only
/// text. Only `true` and `false` are accepted, in any case.
#[derive(Debug)]
#[cfg_attr(test, derive(serde::Serialize), serde(untagged))]
enum RawBool {
    Bool(bool),
    Text(String),
}

impl RawBool {
    fn validate(&self, setting: &'static str) -> Result<bool, SettingsError> {
        match self {
            Self::Bool(value) => Ok(*value),
            Self::Text(text) if text.eq_ignore_ascii_case("true") => Ok(true),
            Self::Text(text) if text.eq_ignore_ascii_case("false") => Ok(false),
            Self::Text(text) => Err(SettingsError::Invalid {
                setting,
                value: text.clone(),
                reason: "expected true or false".to_owned(),
            }),
        }
    }
}

impl<'de> Deserialize<'de> for RawBool {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;

        impl serde::de::Visitor<'_> for Visitor {
            type Value = RawBool;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("true or false")
            }

            fn visit_bool<E: serde::de::Error>(self, value: bool) -> Result<RawBool, E> {
                Ok(RawBool::Bool(value))
            }

            fn visit_str<E: serde::de::Error>(self, value: &str) -> Result<RawBool, E> {
                Ok(RawBool::Text(value.to_owned()))
            }
        }

        deserializer.deserialize_any(Visitor)
    }
}

/// A whole number as written: a TOML file has integers, the environment
/// only text.
#[derive(Debug)]
#[cfg_attr(test, derive(serde::Serialize), serde(untagged))]
enum RawNumber {
    Number(u64),
    Text(String),
}

impl RawNumber {
    /// The number, if it is between `min` and `max`.
    fn validate(&self, setting: &'static str, min: u64, max: u64) -> Result<u64, SettingsError> {
        let (value, shown) = match self {
            Self::Number(value) => (Some(*value), value.to_string()),
            Self::Text(text) => (text.trim().parse::<u64>().ok(), text.clone()),
        };
        match value {
            Some(value) if (min..=max).contains(&value) => Ok(value),
            _ => Err(SettingsError::Invalid {
                setting,
                value: shown,
                reason: format!("expected a whole number from {min} to {max}"),
            }),
        }
    }
}

impl<'de> Deserialize<'de> for RawNumber {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;

        impl serde::de::Visitor<'_> for Visitor {
            type Value = RawNumber;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a whole number")
            }

            fn visit_u64<E: serde::de::Error>(self, value: u64) -> Result<RawNumber, E> {
                Ok(RawNumber::Number(value))
            }

            fn visit_i64<E: serde::de::Error>(self, value: i64) -> Result<RawNumber, E> {
                Ok(RawNumber::Text(value.to_string()))
            }

            fn visit_f64<E: serde::de::Error>(self, value: f64) -> Result<RawNumber, E> {
                Ok(RawNumber::Text(value.to_string()))
            }

            fn visit_str<E: serde::de::Error>(self, value: &str) -> Result<RawNumber, E> {
                Ok(RawNumber::Text(value.to_owned()))
            }
        }

        deserializer.deserialize_any(Visitor)
    }
}

/// A list of strings as written: an array in a TOML file, comma-separated
/// text in the environment.
#[derive(Debug, Default)]
#[cfg_attr(test, derive(serde::Serialize))]
struct RawList(Vec<String>);

impl<'de> Deserialize<'de> for RawList {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;

        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = RawList;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a list of strings, or one comma-separated string")
            }

            fn visit_str<E: serde::de::Error>(self, value: &str) -> Result<RawList, E> {
                Ok(RawList(
                    value
                        .split(',')
                        .map(str::trim)
                        .filter(|item| !item.is_empty())
                        .map(str::to_owned)
                        .collect(),
                ))
            }

            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> Result<RawList, A::Error> {
                let mut items = Vec::new();
                while let Some(item) = seq.next_element::<String>()? {
                    items.push(item);
                }
                Ok(RawList(items))
            }
        }

        deserializer.deserialize_any(Visitor)
    }
}

/// Reads a secret string. Whatever goes wrong, the error never quotes the
/// value.
fn deserialize_secret<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<SecretString>, D::Error> {
    match String::deserialize(deserializer) {
        Ok(secret) => Ok(Some(SecretString::from(secret))),
        Err(_) => Err(serde::de::Error::custom("expected a string")),
    }
}

impl RawSettings {
    fn validate(self) -> Result<Settings, SettingsError> {
        let listen = self
            .listen
            .parse::<SocketAddr>()
            .map_err(|_| SettingsError::Invalid {
                setting: "listen",
                value: self.listen.clone(),
                reason: "expected an IP address and a port, like 127.0.0.1:8080 or [::1]:8080"
                    .to_owned(),
            })?;

        if self.data_dir.is_empty() {
            return Err(SettingsError::Invalid {
                setting: "data_dir",
                value: self.data_dir,
                reason: "must not be empty".to_owned(),
            });
        }
        let data_dir = PathBuf::from(self.data_dir);

        let jwt = self.jwt.validate()?;
        let store = self.store.validate()?;
        let proxy = self.proxy.validate()?;
        let rate_limit = self.rate_limit.validate()?;
        let audit = self.audit.validate()?;
        let tls = self.tls.validate()?;
        let http = self.http.validate()?;
        let metrics = self.metrics.validate(listen)?;
        let log = self.log.validate()?;
        Ok(Settings {
            listen,
            data_dir,
            jwt,
            store,
            proxy,
            rate_limit,
            audit,
            tls,
            http,
            metrics,
            log,
        })
    }
}

impl RawProxy {
    fn validate(self) -> Result<ProxySettings, SettingsError> {
        let nets = self
            .trusted
            .0
            .iter()
            .map(|item| {
                parse_trusted_net(item).ok_or_else(|| SettingsError::Invalid {
                    setting: "proxy.trusted",
                    value: item.clone(),
                    reason: "expected an IP address or a network like \"10.0.0.0/8\"".to_owned(),
                })
            })
            .collect::<Result<_, _>>()?;
        Ok(ProxySettings {
            trusted: TrustedProxies::new(nets),
        })
    }
}

/// The longest rate-limit window.
const MAX_WINDOW: Duration = Duration::from_secs(86_400);

impl RawRateLimit {
    fn validate(self) -> Result<RateLimitSettings, SettingsError> {
        let enabled = self.enabled.validate("rate_limit.enabled")?;
        let limit = |raw: &RawNumber, setting| {
            raw.validate(setting, 1, 1_000_000)
                .map(|n| NonZeroU32::new(n as u32).unwrap_or(NonZeroU32::MIN))
        };
        let per_address = limit(&self.per_address, "rate_limit.per_address")?;
        let per_token = limit(&self.per_token, "rate_limit.per_token")?;
        let window = parse_duration("rate_limit.window", &self.window)?;
        if window < Duration::from_secs(1) || window > MAX_WINDOW {
            return Err(SettingsError::Invalid {
                setting: "rate_limit.window",
                value: self.window,
                reason: "must be between 1 second and 24 hours".to_owned(),
            });
        }
        let issue_per_token =
            self.issue_per_token
                .validate("rate_limit.issue_per_token", 0, 1_000_000)?;
        Ok(RateLimitSettings {
            enabled,
            per_address,
            per_token,
            window,
            issue_per_token: NonZeroU32::new(issue_per_token as u32),
        })
    }
}

impl RawAudit {
    fn validate(self) -> Result<AuditPolicy, SettingsError> {
        let retention = parse_duration("audit.retention", &self.retention)?;
        Ok(AuditPolicy {
            // "0s" keeps the trail forever.
            retention: (!retention.is_zero()).then_some(retention),
            jwt_issued: self.jwt_issued.validate("audit.jwt_issued")?,
        })
    }
}

impl RawTls {
    fn validate(self) -> Result<Option<TlsSettings>, SettingsError> {
        let cert = self.cert.filter(|path| !path.is_empty());
        let key = self.key.filter(|path| !path.is_empty());
        match (cert, key) {
            (None, None) => Ok(None),
            (Some(cert), Some(key)) => Ok(Some(TlsSettings {
                cert: PathBuf::from(cert),
                key: PathBuf::from(key),
            })),
            (Some(_), None) => Err(SettingsError::TlsHalf {
                set: "tls.cert",
                missing: "tls.key",
            }),
            (None, Some(_)) => Err(SettingsError::TlsHalf {
                set: "tls.key",
                missing: "tls.cert",
            }),
        }
    }
}

impl RawHttp {
    fn validate(self) -> Result<HttpSettings, SettingsError> {
        let require_https = self.require_https.validate("http.require_https")?;
        let hsts_max_age = parse_duration("http.hsts_max_age", &self.hsts_max_age)?;
        let max_connections = self
            .max_connections
            .validate("http.max_connections", 1, 1_000_000)? as usize;
        let max_connections_per_address = match &self.max_connections_per_address {
            Some(number) => {
                number.validate("http.max_connections_per_address", 0, 1_000_000)? as usize
            }
            None => (max_connections / 10).max(1),
        };
        let bounded = |setting, text: &str, min: Duration| {
            let value = parse_duration(setting, text)?;
            if value < min || value > Duration::from_secs(3600) {
                return Err(SettingsError::Invalid {
                    setting,
                    value: text.to_owned(),
                    reason: if min.is_zero() {
                        "must be at most 1 hour".to_owned()
                    } else {
                        "must be between 1 millisecond and 1 hour".to_owned()
                    },
                });
            }
            Ok(value)
        };
        let millisecond = Duration::from_millis(1);
        Ok(HttpSettings {
            require_https,
            hsts_max_age,
            max_connections,
            max_connections_per_address,
            header_timeout: bounded("http.header_timeout", &self.header_timeout, millisecond)?,
            body_timeout: bounded("http.body_timeout", &self.body_timeout, millisecond)?,
            keep_alive: bounded("http.keep_alive", &self.keep_alive, Duration::ZERO)?,
            disconnect_timeout: bounded(
                "http.disconnect_timeout",
                &self.disconnect_timeout,
                Duration::ZERO,
            )?,
        })
    }
}

impl RawMetrics {
    fn validate(self, main: SocketAddr) -> Result<MetricsSettings, SettingsError> {
        let enabled = self.enabled.validate("metrics.enabled")?;
        let Some(text) = self.listen.filter(|text| !text.is_empty()) else {
            return Ok(MetricsSettings {
                enabled,
                listen: None,
            });
        };
        let invalid = |reason: &str| SettingsError::Invalid {
            setting: "metrics.listen",
            value: text.clone(),
            reason: reason.to_owned(),
        };
        let listen = text.parse::<SocketAddr>().map_err(|_| {
            invalid("expected an IP address and a port, like 127.0.0.1:9090 or [::1]:9090")
        })?;
        if !enabled {
            return Err(invalid(
                "metrics.enabled is false: set it to true to serve /metrics there, \
                 or remove metrics.listen",
            ));
        }
        if listen == main && listen.port() != 0 {
            return Err(invalid(
                "it is the main listener's address: give /metrics a port of its own, \
                 or remove metrics.listen to serve it on the main listener",
            ));
        }
        Ok(MetricsSettings {
            enabled,
            listen: Some(listen),
        })
    }
}

impl RawLog {
    fn validate(self) -> Result<LogSettings, SettingsError> {
        let format = if self.format.eq_ignore_ascii_case("text") {
            LogFormat::Text
        } else if self.format.eq_ignore_ascii_case("json") {
            LogFormat::Json
        } else {
            return Err(SettingsError::Invalid {
                setting: "log.format",
                value: self.format,
                reason: "expected \"text\" or \"json\"".to_owned(),
            });
        };
        Ok(LogSettings { format })
    }
}

impl RawJwt {
    fn validate(self) -> Result<JwtSettings, SettingsError> {
        let lifetime = parse_duration("jwt.lifetime", &self.lifetime)?;
        let leeway = parse_duration("jwt.leeway", &self.leeway)?;
        let allow_weak_secret = self.allow_weak_secret.validate("jwt.allow_weak_secret")?;
        let rules = ExpiryRules::new(lifetime, leeway).map_err(|error| match error {
            ConfigError::Leeway => SettingsError::Invalid {
                setting: "jwt.leeway",
                value: self.leeway.clone(),
                reason: format!("{error} (jwt.lifetime is {:?})", self.lifetime),
            },
            other => SettingsError::Invalid {
                setting: "jwt.lifetime",
                value: self.lifetime.clone(),
                reason: other.to_string(),
            },
        })?;
        if let Some(secret) = &self.secret {
            check_secret(secret.expose_secret().as_bytes(), allow_weak_secret, || {
                "jwt.secret".to_owned()
            })?;
        }
        Ok(JwtSettings {
            secret: self.secret,
            rules,
            allow_weak_secret,
        })
    }
}

impl RawStore {
    fn validate(self) -> Result<StoreSettings, SettingsError> {
        let url = self.url.filter(|url| !url.expose_secret().is_empty());
        if self.backend.eq_ignore_ascii_case("sled") {
            match url {
                None => Ok(StoreSettings::Sled),
                Some(_) => Err(SettingsError::UnusedStoreUrl),
            }
        } else if self.backend.eq_ignore_ascii_case("postgres") {
            match url {
                Some(url) => Ok(StoreSettings::Postgres { url }),
                None => Err(SettingsError::MissingStoreUrl),
            }
        } else {
            Err(SettingsError::Invalid {
                setting: "store.backend",
                value: self.backend,
                reason: "expected \"sled\" or \"postgres\"".to_owned(),
            })
        }
    }
}

fn parse_duration(setting: &'static str, value: &str) -> Result<Duration, SettingsError> {
    humantime::parse_duration(value).map_err(|error| SettingsError::Invalid {
        setting,
        value: value.to_owned(),
        reason: format!("expected a duration like \"30s\", \"15m\" or \"24h\" ({error})"),
    })
}

fn is_weak(secret: &[u8]) -> bool {
    weakness(secret).is_some()
}

/// Refuses an empty secret, and a weak one unless `allow_weak`. `origin`
/// names the secret in the error.
fn check_secret(
    secret: &[u8],
    allow_weak: bool,
    origin: impl FnOnce() -> String,
) -> Result<(), SettingsError> {
    if secret.is_empty() {
        return Err(SettingsError::EmptySecret);
    }
    if let Some(weakness) = weakness(secret).filter(|_| !allow_weak) {
        return Err(SettingsError::WeakSecret {
            origin: origin(),
            weakness,
        });
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// Sources
// ---------------------------------------------------------------------------

/// The environment variable of a setting: `jwt.secret` → `STAMPS_JWT__SECRET`.
fn env_var_name(key: &str) -> String {
    format!(
        "{ENV_PREFIX}_{}",
        key.replace('.', "__").to_ascii_uppercase()
    )
}

fn is_setting_env_var(name: &str) -> bool {
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
fn check_file_keys(path: &Path, table: &Map<String, Value>) -> Result<(), SettingsError> {
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
fn describe_toml_error(error: &config::ConfigError) -> String {
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
fn one_line(text: &str) -> String {
    text.lines()
        .map(str::trim)
        .filter(|line| !line.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

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
        None => generate_key_file(
            &settings.data_dir,
            &settings.key_file_path(),
            settings.jwt.allow_weak_secret,
        ),
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
    Ok(read_key_file(&path, allow_weak)?.map(|key| ResolvedKey {
        key,
        source: KeySource::Loaded(path),
    }))
}

/// The key of the key file at `path`, or `None` if there is no such file.
fn read_key_file(path: &Path, allow_weak: bool) -> Result<Option<SigningKey>, SettingsError> {
    let io_error = |action, cause| SettingsError::KeyFileIo {
        path: path.to_owned(),
        action,
        cause,
    };
    let invalid = |problem| SettingsError::KeyFileInvalid {
        path: path.to_owned(),
        problem,
    };

    // Not through a symbolic link (one could point anywhere), and checked
    // on the descriptor opened, not by path again: no swap in between.
    let flags =
        rustix::fs::OFlags::RDONLY | rustix::fs::OFlags::NOFOLLOW | rustix::fs::OFlags::CLOEXEC;
    let file = match rustix::fs::open(path, flags, rustix::fs::Mode::empty()) {
        Ok(fd) => File::from(fd),
        Err(rustix::io::Errno::NOENT) => return Ok(None),
        Err(rustix::io::Errno::LOOP) => {
            return Err(invalid("it is a symbolic link (use the file itself)"));
        }
        Err(error) => return Err(io_error("open", error.into())),
    };
    let metadata = file
        .metadata()
        .map_err(|error| io_error("inspect", error))?;
    if !metadata.is_file() {
        return Err(invalid("it is not a regular file"));
    }
    check_key_file_owner(path, &metadata)?;
    check_key_file_mode(path, &metadata)?;

    // Allocated once, large enough, so that no copy of the secret is left
    // behind by a reallocation; wiped when dropped.
    let mut bytes = Zeroizing::new(Vec::with_capacity(MAX_KEY_FILE_LEN as usize + 1));
    file.take(MAX_KEY_FILE_LEN + 1)
        .read_to_end(&mut bytes)
        .map_err(|error| io_error("read", error))?;
    if bytes.len() as u64 > MAX_KEY_FILE_LEN {
        return Err(invalid("it is larger than 4096 bytes"));
    }
    let text = std::str::from_utf8(&bytes).map_err(|_| invalid("it is not UTF-8 text"))?;
    let len = text.trim_end_matches(['\n', '\r']).len();
    if len == 0 {
        return Err(invalid(
            "it is empty (delete it to have a new secret generated, or write a secret in it)",
        ));
    }
    let secret = bytes.get(..len).unwrap_or_default();
    check_secret(secret, allow_weak, || {
        format!("the secret of key file {}", path.display())
    })?;
    // An exact copy, so that no reallocation leaves the secret behind; the
    // buffer read is wiped when dropped.
    let key = SigningKey::new(secret.to_vec()).map_err(|_| invalid("it is empty"))?;
    Ok(Some(key))
}

#[cfg(unix)]
fn check_key_file_mode(path: &Path, metadata: &fs::Metadata) -> Result<(), SettingsError> {
    use std::os::unix::fs::PermissionsExt;

    let mode = metadata.permissions().mode() & 0o7777;
    if mode & 0o077 != 0 {
        return Err(SettingsError::KeyFilePermissions {
            path: path.to_owned(),
            mode,
        });
    }
    Ok(())
}

#[cfg(not(unix))]
fn check_key_file_mode(_path: &Path, _metadata: &fs::Metadata) -> Result<(), SettingsError> {
    Ok(())
}

/// A key file another user owns could hold a secret of their choosing.
fn check_key_file_owner(path: &Path, metadata: &fs::Metadata) -> Result<(), SettingsError> {
    use std::os::unix::fs::MetadataExt;

    let me = rustix::process::geteuid().as_raw();
    if metadata.uid() != me {
        return Err(SettingsError::KeyFileOwner {
            path: path.to_owned(),
            owner: metadata.uid(),
            me,
        });
    }
    Ok(())
}

/// Options that create a new file, failing if it exists, readable and
/// writable by its owner only from the first instant.
fn create_new_private() -> OpenOptions {
    let mut options = OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    options
}

fn create_data_dir(dir: &Path) -> Result<(), SettingsError> {
    stamps_store::create_data_dir(dir).map_err(|cause| SettingsError::DataDir {
        path: dir.to_owned(),
        cause,
    })
}

/// 32 random bytes from the operating system, as 43 characters of base64url.
fn generate_secret() -> Result<Zeroizing<String>, SettingsError> {
    let mut bytes = Zeroizing::new([0_u8; GENERATED_SECRET_BYTES]);
    OsRng
        .try_fill_bytes(&mut *bytes)
        .map_err(|error| SettingsError::Randomness(error.to_string()))?;
    Ok(Zeroizing::new(base64url(&*bytes)))
}

/// Writes a new secret to the key file `path`, or reads the one another
/// process wrote there first.
fn generate_key_file(
    dir: &Path,
    path: &Path,
    allow_weak: bool,
) -> Result<ResolvedKey, SettingsError> {
    let io_error = |action, cause| SettingsError::KeyFileIo {
        path: path.to_owned(),
        action,
        cause,
    };
    create_data_dir(dir)?;
    let secret = generate_secret()?;

    // Write the secret to a private temporary file, then link it to its
    // name: the key file appears complete or not at all, and a link never
    // replaces an existing file.
    let mut suffix = [0_u8; 8];
    OsRng
        .try_fill_bytes(&mut suffix)
        .map_err(|error| SettingsError::Randomness(error.to_string()))?;
    let temporary = dir.join(format!(
        ".{KEY_FILE_NAME}.{}.{}.tmp",
        std::process::id(),
        base64url(&suffix)
    ));
    let written = write_secret(&temporary, &secret);
    let linked = written.and_then(|()| fs::hard_link(&temporary, path));
    // The temporary name is only ever ours; failing to remove it leaves a
    // private file behind, which is harmless.
    let _ = fs::remove_file(&temporary);
    match linked {
        Ok(()) => {}
        Err(error) if error.kind() == io::ErrorKind::AlreadyExists => {
            return loaded_after_race(path, allow_weak);
        }
        Err(_) => {
            // No hard links on this file system: create the key file
            // directly (another process racing with this one could then
            // read it before it is complete, and refuse it as empty).
            let mut file = match create_new_private().open(path) {
                Ok(file) => file,
                Err(error) if error.kind() == io::ErrorKind::AlreadyExists => {
                    return loaded_after_race(path, allow_weak);
                }
                Err(error) => return Err(io_error("create", error)),
            };
            write_all_secret(&mut file, &secret).map_err(|error| io_error("write", error))?;
        }
    }
    sync_dir(dir);

    let key = SigningKey::new(secret.as_bytes().to_vec())
        .map_err(|_| SettingsError::Randomness("empty secret".to_owned()))?;
    Ok(ResolvedKey {
        key,
        source: KeySource::Generated(path.to_owned()),
    })
}

fn loaded_after_race(path: &Path, allow_weak: bool) -> Result<ResolvedKey, SettingsError> {
    match read_key_file(path, allow_weak)? {
        Some(key) => Ok(ResolvedKey {
            key,
            source: KeySource::Loaded(path.to_owned()),
        }),
        None => Err(SettingsError::KeyFileIo {
            path: path.to_owned(),
            action: "read",
            cause: io::Error::new(
                io::ErrorKind::NotFound,
                "it disappeared while being created",
            ),
        }),
    }
}

fn write_secret(path: &Path, secret: &str) -> io::Result<()> {
    let mut file = create_new_private().open(path)?;
    write_all_secret(&mut file, secret)
}

fn write_all_secret(file: &mut File, secret: &str) -> io::Result<()> {
    file.write_all(secret.as_bytes())?;
    file.write_all(b"\n")?;
    file.sync_all()
}

/// Makes the new directory entry durable; best effort.
fn sync_dir(dir: &Path) {
    if let Ok(dir) = File::open(dir) {
        let _ = dir.sync_all();
    }
}

/// Base64url without padding (RFC 4648 §5).
fn base64url(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    use std::collections::BTreeSet;
    #[cfg(unix)]
    use std::os::unix::fs::PermissionsExt;

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

    #[test]
    fn defaults_without_file_or_env() {
        let settings = load_env(&[]).unwrap();
        assert_eq!(settings.listen, "127.0.0.1:8080".parse().unwrap());
        assert_eq!(settings.data_dir, PathBuf::from("./stamps-data"));
        assert!(settings.jwt.secret.is_none());
        assert_eq!(settings.jwt.rules.lifetime(), Duration::from_secs(86_400));
        assert_eq!(settings.jwt.rules.leeway(), Duration::from_secs(30));
        assert!(!settings.jwt.allow_weak_secret);
        assert!(!settings.jwt.secret_is_weak());
        assert!(matches!(settings.store, StoreSettings::Sled));
        assert_eq!(
            format!("{settings:?}"),
            format!("{:?}", Settings::default())
        );
        assert_eq!(
            settings.key_file_path(),
            PathBuf::from("./stamps-data/jwt-secret")
        );
    }

    #[test]
    fn file_values_are_read() {
        let settings = load_file(&format!(
            r#"
            listen = "0.0.0.0:0"
            data_dir = "/var/lib/stamps"
            [jwt]
            secret = "{STRONG}"
            lifetime = "15m"
            leeway = "5s"
            allow_weak_secret = false
            [store]
            backend = "postgres"
            url = "postgres://stamps:pw@127.0.0.1/stamps"
            "#
        ))
        .unwrap();
        assert_eq!(settings.listen, "0.0.0.0:0".parse().unwrap());
        assert_eq!(settings.data_dir, PathBuf::from("/var/lib/stamps"));
        assert_eq!(
            settings.jwt.secret.as_ref().unwrap().expose_secret(),
            STRONG
        );
        assert_eq!(settings.jwt.rules.lifetime(), Duration::from_secs(900));
        assert_eq!(settings.jwt.rules.leeway(), Duration::from_secs(5));
        match &settings.store {
            StoreSettings::Postgres { url } => {
                assert_eq!(url.expose_secret(), "postgres://stamps:pw@127.0.0.1/stamps");
            }
            StoreSettings::Sled => panic!("expected postgres"),
        }
        let shown = format!("{settings:?}");
        assert!(!shown.contains(STRONG) && !shown.contains("pw@"), "{shown}");
    }

    #[test]
    fn hardening_defaults_and_file_values() {
        let settings = load_env(&[]).unwrap();
        assert!(settings.proxy.trusted.is_empty());
        assert!(settings.rate_limit.enabled);
        assert!(settings.rate_limit.throttle().is_some());
        // CONTRACT §1.4: at least 60 failures a minute per address.
        assert_eq!(settings.rate_limit.per_address.get(), 60);
        assert_eq!(settings.rate_limit.window, Duration::from_secs(60));
        assert_eq!(settings.rate_limit.per_token.get(), 10);
        assert!(settings.tls.is_none());
        assert!(!settings.http.require_https);
        assert_eq!(settings.http.hsts_max_age, Duration::from_secs(31_536_000));
        assert_eq!(settings.http.max_connections, 10_000);
        assert_eq!(settings.http.max_connections_per_address, 1_000);

        let settings = load_file(
            r#"
            [proxy]
            trusted = ["127.0.0.1/32", "10.0.0.0/8"]
            [rate_limit]
            enabled = true
            per_address = 100
            per_token = 5
            window = "5m"
            [tls]
            cert = "cert.pem"
            key = "key.pem"
            [http]
            require_https = true
            max_connections = 500
            header_timeout = "500ms"
            "#,
        )
        .unwrap();
        assert_eq!(settings.proxy.trusted.nets().len(), 2);
        assert_eq!(settings.rate_limit.per_address.get(), 100);
        assert_eq!(settings.rate_limit.per_token.get(), 5);
        assert_eq!(settings.rate_limit.window, Duration::from_secs(300));
        assert_eq!(settings.tls.unwrap().key, PathBuf::from("key.pem"));
        assert!(settings.http.require_https);
        assert_eq!(settings.http.max_connections, 500);
        // Unset, the per-address cap follows: a tenth.
        assert_eq!(settings.http.max_connections_per_address, 50);
        assert_eq!(settings.http.header_timeout, Duration::from_millis(500));
        // The rest keeps its defaults.
        assert_eq!(settings.http.body_timeout, Duration::from_secs(10));
    }

    #[test]
    fn bad_hardening_values_are_refused_naming_the_setting() {
        for (pairs, expect) in [
            (
                &[("STAMPS_PROXY__TRUSTED", "10.0.0.0/8,localhost")][..],
                "invalid proxy.trusted \"localhost\": expected an IP address or a network",
            ),
            (
                &[("STAMPS_RATE_LIMIT__PER_ADDRESS", "0")][..],
                "invalid rate_limit.per_address \"0\": expected a whole number from 1 to 1000000",
            ),
            (
                &[("STAMPS_RATE_LIMIT__PER_TOKEN", "ten")][..],
                "invalid rate_limit.per_token \"ten\"",
            ),
            (
                &[("STAMPS_RATE_LIMIT__WINDOW", "500ms")][..],
                "invalid rate_limit.window \"500ms\": must be between 1 second and 24 hours",
            ),
            (
                &[("STAMPS_RATE_LIMIT__ENABLED", "sometimes")][..],
                "invalid rate_limit.enabled \"sometimes\": expected true or false",
            ),
            (
                &[("STAMPS_TLS__CERT", "cert.pem")][..],
                "tls.cert is set but tls.key is not: TLS needs both",
            ),
            (
                &[("STAMPS_TLS__KEY", "key.pem")][..],
                "tls.key is set but tls.cert is not: TLS needs both",
            ),
            (
                &[("STAMPS_HTTP__MAX_CONNECTIONS", "0")][..],
                "invalid http.max_connections \"0\"",
            ),
            (
                &[("STAMPS_HTTP__MAX_CONNECTIONS_PER_ADDRESS", "-1")][..],
                "invalid http.max_connections_per_address \"-1\": expected a whole number from 0 to 1000000",
            ),
            (
                &[("STAMPS_HTTP__HEADER_TIMEOUT", "0s")][..],
                "invalid http.header_timeout \"0s\": must be between 1 millisecond and 1 hour",
            ),
            (
                &[("STAMPS_HTTP__BODY_TIMEOUT", "2h")][..],
                "invalid http.body_timeout \"2h\"",
            ),
            (
                &[("STAMPS_HTTP__REQUIRE_HTTPS", "yes")][..],
                "invalid http.require_https \"yes\"",
            ),
        ] {
            let shown = error_of(load_env(pairs));
            assert!(shown.starts_with(expect), "{shown}");
        }
        let shown = error_of(load_file("[proxy]\ntrusted = \"10.0.0.0/8\"\n"));
        assert!(shown.starts_with("invalid proxy.trusted in "), "{shown}");
        assert!(shown.ends_with("expected an array of strings"), "{shown}");
        let shown = error_of(load_file("[proxy]\ntrusted = [1]\n"));
        assert!(shown.ends_with("expected an array of strings"), "{shown}");
        let shown = error_of(load_file("[rate_limit]\nper_address = -1\n"));
        assert!(
            shown.starts_with("invalid rate_limit.per_address"),
            "{shown}"
        );
        // An empty list, and empty TLS paths from the environment, are unset.
        let settings = load_file("[proxy]\ntrusted = []\n").unwrap();
        assert!(settings.proxy.trusted.is_empty());
        let settings = load_env(&[("STAMPS_TLS__CERT", ""), ("STAMPS_TLS__KEY", "")]).unwrap();
        assert!(settings.tls.is_none());
    }

    #[test]
    fn metrics_and_log_settings() {
        // Off and text by default.
        let settings = load_env(&[]).unwrap();
        assert_eq!(settings.metrics, MetricsSettings::default());
        assert!(!settings.metrics.enabled);
        assert_eq!(settings.log.format, LogFormat::Text);

        let settings = load_file(
            "[metrics]\nenabled = true\nlisten = \"[::1]:0\"\n[log]\nformat = \"json\"\n",
        )
        .unwrap();
        assert!(settings.metrics.enabled);
        assert_eq!(settings.metrics.listen, Some("[::1]:0".parse().unwrap()));
        assert_eq!(settings.log.format, LogFormat::Json);
        // On the main listener; an empty listen from the environment is unset.
        let settings = load_env(&[
            ("STAMPS_METRICS__ENABLED", "true"),
            ("STAMPS_METRICS__LISTEN", ""),
        ])
        .unwrap();
        assert_eq!(settings.metrics.listen, None);

        for (pairs, expect) in [
            (
                &[("STAMPS_METRICS__ENABLED", "on")][..],
                "invalid metrics.enabled \"on\": expected true or false",
            ),
            (
                &[("STAMPS_METRICS__LISTEN", "127.0.0.1:9090")][..],
                "invalid metrics.listen \"127.0.0.1:9090\": metrics.enabled is false",
            ),
            (
                &[
                    ("STAMPS_METRICS__ENABLED", "true"),
                    ("STAMPS_METRICS__LISTEN", "localhost:9090"),
                ][..],
                "invalid metrics.listen \"localhost:9090\": expected an IP address and a port",
            ),
            (
                &[
                    ("STAMPS_METRICS__ENABLED", "true"),
                    ("STAMPS_METRICS__LISTEN", "127.0.0.1:8080"),
                ][..],
                "invalid metrics.listen \"127.0.0.1:8080\": it is the main listener's address",
            ),
            (
                &[("STAMPS_LOG__FORMAT", "xml")][..],
                "invalid log.format \"xml\": expected \"text\" or \"json\"",
            ),
        ] {
            let shown = error_of(load_env(pairs));
            assert!(shown.starts_with(expect), "{shown}");
        }
        let shown = error_of(load_file("[metrics]\nlsten = \"127.0.0.1:9090\"\n"));
        assert!(shown.contains("unknown key \"metrics.lsten\""), "{shown}");
        assert!(shown.contains("did you mean \"metrics.listen\""), "{shown}");
    }

    #[test]
    fn audit_settings_default_to_30_days_with_jwts_issued_and_0s_keeps_forever() {
        let settings = load_env(&[]).unwrap();
        assert_eq!(settings.audit, AuditPolicy::default());
        assert_eq!(
            settings.audit.retention,
            Some(Duration::from_secs(30 * 86_400))
        );
        assert!(settings.audit.jwt_issued);
        let settings = load_file("[audit]\nretention = \"0s\"\njwt_issued = false\n").unwrap();
        assert_eq!(settings.audit.retention, None);
        assert!(!settings.audit.jwt_issued);
        let settings = load_env(&[("STAMPS_AUDIT__RETENTION", "90d")]).unwrap();
        assert_eq!(
            settings.audit.retention,
            Some(Duration::from_secs(90 * 86_400))
        );
        for (pairs, expect) in [
            (
                &[("STAMPS_AUDIT__RETENTION", "a month")][..],
                "invalid audit.retention \"a month\"",
            ),
            (
                &[("STAMPS_AUDIT__JWT_ISSUED", "sometimes")][..],
                "invalid audit.jwt_issued \"sometimes\": expected true or false",
            ),
        ] {
            let shown = error_of(load_env(pairs));
            assert!(shown.starts_with(expect), "{shown}");
        }
    }

    #[test]
    fn the_issuance_quota_is_600_per_window_by_default_and_0_lifts_it() {
        let settings = load_env(&[]).unwrap();
        assert_eq!(settings.rate_limit.issue_per_token, NonZeroU32::new(600));
        assert!(settings.rate_limit.issue_quota().is_some());
        // Not lifted by turning the failure limits off.
        let settings = load_env(&[("STAMPS_RATE_LIMIT__ENABLED", "false")]).unwrap();
        assert!(settings.rate_limit.issue_quota().is_some());
        let settings = load_file("[rate_limit]\nissue_per_token = 0\n").unwrap();
        assert_eq!(settings.rate_limit.issue_per_token, None);
        assert!(settings.rate_limit.issue_quota().is_none());
        let shown = error_of(load_env(&[("STAMPS_RATE_LIMIT__ISSUE_PER_TOKEN", "-1")]));
        assert!(
            shown.starts_with("invalid rate_limit.issue_per_token \"-1\""),
            "{shown}"
        );
    }

    #[test]
    fn a_partial_section_keeps_the_other_defaults() {
        let settings = load_file("[jwt]\nleeway = \"1m\"\n").unwrap();
        assert_eq!(settings.jwt.rules.lifetime(), Duration::from_secs(86_400));
        assert_eq!(settings.jwt.rules.leeway(), Duration::from_secs(60));
        assert_eq!(settings.listen, "127.0.0.1:8080".parse().unwrap());
    }

    #[test]
    fn env_overrides_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = write_config(
            dir.path(),
            "listen = \"127.0.0.1:9000\"\ndata_dir = \"/from/file\"\n[jwt]\nlifetime = \"1h\"\nleeway = \"10s\"\n",
        );
        let settings = Settings::load_from(
            Some(&path),
            env(&[
                ("STAMPS_LISTEN", "[::1]:0"),
                ("STAMPS_JWT__LIFETIME", "2h"),
                ("STAMPS_JWT__SECRET", STRONG),
            ]),
        )
        .unwrap();
        assert_eq!(settings.listen, "[::1]:0".parse().unwrap());
        assert_eq!(settings.data_dir, PathBuf::from("/from/file"));
        assert_eq!(settings.jwt.rules.lifetime(), Duration::from_secs(7200));
        assert_eq!(settings.jwt.rules.leeway(), Duration::from_secs(10));
        assert_eq!(
            settings.jwt.secret.as_ref().unwrap().expose_secret(),
            STRONG
        );
    }

    #[test]
    fn every_env_var_sets_its_setting() {
        let settings = load_env(&[
            ("STAMPS_LISTEN", "10.0.0.1:80"),
            ("STAMPS_DATA_DIR", "/srv/stamps"),
            ("STAMPS_JWT__SECRET", WEAK),
            ("STAMPS_JWT__LIFETIME", "30m"),
            ("STAMPS_JWT__LEEWAY", "0s"),
            ("STAMPS_JWT__ALLOW_WEAK_SECRET", "true"),
            ("STAMPS_STORE__BACKEND", "postgres"),
            ("STAMPS_STORE__URL", "postgres://db/stamps"),
            ("STAMPS_PROXY__TRUSTED", "127.0.0.1/32, 10.0.0.0/8,::1"),
            ("STAMPS_RATE_LIMIT__ENABLED", "false"),
            ("STAMPS_RATE_LIMIT__PER_ADDRESS", "7"),
            ("STAMPS_RATE_LIMIT__PER_TOKEN", "3"),
            ("STAMPS_RATE_LIMIT__WINDOW", "10m"),
            ("STAMPS_TLS__CERT", "/etc/stamps/cert.pem"),
            ("STAMPS_TLS__KEY", "/etc/stamps/key.pem"),
            ("STAMPS_HTTP__REQUIRE_HTTPS", "true"),
            ("STAMPS_HTTP__HSTS_MAX_AGE", "1h"),
            ("STAMPS_HTTP__MAX_CONNECTIONS", "64"),
            ("STAMPS_HTTP__MAX_CONNECTIONS_PER_ADDRESS", "0"),
            ("STAMPS_HTTP__HEADER_TIMEOUT", "2s"),
            ("STAMPS_HTTP__BODY_TIMEOUT", "3s"),
            ("STAMPS_HTTP__KEEP_ALIVE", "0s"),
            ("STAMPS_HTTP__DISCONNECT_TIMEOUT", "500ms"),
            ("STAMPS_METRICS__ENABLED", "true"),
            ("STAMPS_METRICS__LISTEN", "127.0.0.1:9100"),
            ("STAMPS_LOG__FORMAT", "JSON"),
        ])
        .unwrap();
        assert_eq!(
            settings.metrics,
            MetricsSettings {
                enabled: true,
                listen: Some("127.0.0.1:9100".parse().unwrap()),
            }
        );
        assert_eq!(settings.log.format, LogFormat::Json);
        let nets: Vec<String> = settings
            .proxy
            .trusted
            .nets()
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(nets, ["127.0.0.1/32", "10.0.0.0/8", "::1/128"]);
        assert!(!settings.rate_limit.enabled);
        assert!(settings.rate_limit.throttle().is_none());
        assert_eq!(settings.rate_limit.per_address.get(), 7);
        assert_eq!(settings.rate_limit.per_token.get(), 3);
        assert_eq!(settings.rate_limit.window, Duration::from_secs(600));
        assert_eq!(
            settings.tls,
            Some(TlsSettings {
                cert: PathBuf::from("/etc/stamps/cert.pem"),
                key: PathBuf::from("/etc/stamps/key.pem"),
            })
        );
        let http = &settings.http;
        assert!(http.require_https);
        assert_eq!(http.hsts_max_age, Duration::from_secs(3600));
        assert_eq!(http.max_connections, 64);
        assert_eq!(http.max_connections_per_address, 0);
        assert_eq!(http.header_timeout, Duration::from_secs(2));
        assert_eq!(http.body_timeout, Duration::from_secs(3));
        assert_eq!(http.keep_alive, Duration::ZERO);
        assert_eq!(http.disconnect_timeout, Duration::from_millis(500));
        assert_eq!(settings.listen, "10.0.0.1:80".parse().unwrap());
        assert_eq!(settings.data_dir, PathBuf::from("/srv/stamps"));
        assert_eq!(settings.jwt.secret.as_ref().unwrap().expose_secret(), WEAK);
        assert_eq!(settings.jwt.rules.lifetime(), Duration::from_secs(1800));
        assert_eq!(settings.jwt.rules.leeway(), Duration::ZERO);
        assert!(settings.jwt.allow_weak_secret);
        assert!(settings.jwt.secret_is_weak());
        assert!(matches!(settings.store, StoreSettings::Postgres { .. }));
    }

    #[test]
    fn allow_weak_secret_from_env_is_a_bool_and_nonsense_is_refused() {
        for (value, expected) in [("true", true), ("false", false), ("TRUE", true)] {
            let settings = load_env(&[("STAMPS_JWT__ALLOW_WEAK_SECRET", value)]).unwrap();
            assert_eq!(settings.jwt.allow_weak_secret, expected, "{value}");
        }
        for value in ["maybe", "1", "yes", ""] {
            let shown = error_of(load_env(&[("STAMPS_JWT__ALLOW_WEAK_SECRET", value)]));
            assert_eq!(
                shown,
                format!("invalid jwt.allow_weak_secret {value:?}: expected true or false")
            );
        }
    }

    #[test]
    fn allow_weak_secret_in_the_file_is_a_bool() {
        let settings = load_file("[jwt]\nallow_weak_secret = true\n").unwrap();
        assert!(settings.jwt.allow_weak_secret);
        let settings = load_file("[jwt]\nallow_weak_secret = \"false\"\n").unwrap();
        assert!(!settings.jwt.allow_weak_secret);
        let shown = error_of(load_file("[jwt]\nallow_weak_secret = 1\n"));
        assert!(shown.contains("jwt.allow_weak_secret"), "{shown}");
        assert!(shown.contains("expected true or false"), "{shown}");
    }

    #[test]
    fn numeric_looking_secrets_stay_strings() {
        let digits = "00012345678901234567890123456789012345";
        let settings = load_env(&[("STAMPS_JWT__SECRET", digits)]).unwrap();
        assert_eq!(settings.jwt.secret.unwrap().expose_secret(), digits);
        // (Of low variety: allowed here, only the type is in question.)
        let settings = load_env(&[
            ("STAMPS_JWT__SECRET", "1e400000000000000000000000000000000"),
            ("STAMPS_JWT__ALLOW_WEAK_SECRET", "true"),
        ])
        .unwrap();
        assert_eq!(
            settings.jwt.secret.unwrap().expose_secret(),
            "1e400000000000000000000000000000000"
        );
    }

    #[test]
    fn unknown_env_vars_are_ignored() {
        let settings = load_env(&[
            ("STAMPS_FOO", "bar"),
            ("STAMPS_JWT__SECRETT", "x"),
            ("STAMPS_JWT", "x"),
            ("STAMPS_TLS__CERTIFICATE", "x"),
            ("STAMPS_RATE_LIMIT", "x"),
            ("STAMPS__LISTEN", "x"),
            ("OTHER_LISTEN", "x"),
            ("PATH", "/usr/bin"),
        ])
        .unwrap();
        assert_eq!(
            format!("{settings:?}"),
            format!("{:?}", Settings::default())
        );
    }

    #[test]
    fn known_keys_match_the_raw_fields_exactly() {
        fn flatten(prefix: &str, value: &serde_json::Value, out: &mut BTreeSet<String>) {
            match value {
                serde_json::Value::Object(map) => {
                    for (key, inner) in map {
                        let full = if prefix.is_empty() {
                            key.clone()
                        } else {
                            format!("{prefix}.{key}")
                        };
                        flatten(&full, inner, out);
                    }
                }
                _ => {
                    out.insert(prefix.to_owned());
                }
            }
        }
        let json = serde_json::to_value(RawSettings::default()).unwrap();
        let mut fields = BTreeSet::new();
        flatten("", &json, &mut fields);
        let known: BTreeSet<String> = KNOWN_KEYS.iter().map(|key| (*key).to_owned()).collect();
        assert_eq!(fields, known);
        assert_eq!(
            env_var_name("jwt.allow_weak_secret"),
            "STAMPS_JWT__ALLOW_WEAK_SECRET"
        );
        assert_eq!(env_var_name("data_dir"), "STAMPS_DATA_DIR");
    }

    #[test]
    fn unknown_file_key_is_an_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = write_config(dir.path(), "[jwt]\nsecrett = \"x\"\n");
        let shown = error_of(Settings::load_from(Some(&path), Vec::new()));
        assert_eq!(
            shown,
            format!(
                "unknown key \"jwt.secrett\" in {} (did you mean \"jwt.secret\"?)",
                path.display()
            )
        );

        let shown = error_of(load_file("secret = \"x\"\n"));
        assert!(shown.starts_with("unknown key \"secret\" in "), "{shown}");
        assert!(shown.ends_with("(did you mean \"jwt.secret\"?)"), "{shown}");

        let shown = error_of(load_file("[bogus]\ncert = \"x\"\n"));
        assert!(shown.starts_with("unknown key \"bogus\" in "), "{shown}");
        assert!(!shown.contains("did you mean"), "{shown}");
        let shown = error_of(load_file("[tls]\ncertificate = \"x\"\n"));
        assert!(
            shown.starts_with("unknown key \"tls.certificate\" in "),
            "{shown}"
        );

        // Keys are case-sensitive.
        let shown = error_of(load_file("Listen = \"127.0.0.1:1\"\n"));
        assert!(shown.contains("unknown key \"Listen\""), "{shown}");
        assert!(shown.contains("did you mean \"listen\""), "{shown}");
    }

    #[test]
    fn file_keys_of_the_wrong_shape_are_errors() {
        let shown = error_of(load_file("jwt = 5\n"));
        assert!(shown.starts_with("invalid jwt in "), "{shown}");
        assert!(shown.ends_with("expected a table of settings"), "{shown}");
        let shown = error_of(load_file("[jwt.lifetime]\nvalue = \"1h\"\n"));
        assert!(shown.starts_with("invalid jwt.lifetime in "), "{shown}");
        let shown = error_of(load_file("listen = [\"127.0.0.1:1\"]\n"));
        assert!(shown.starts_with("invalid listen in "), "{shown}");
    }

    #[test]
    fn a_missing_config_file_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("absent.toml");
        let shown = error_of(Settings::load_from(Some(&path), Vec::new()));
        assert!(
            shown.starts_with(&format!("cannot read config file {}: ", path.display())),
            "{shown}"
        );
    }

    #[test]
    fn invalid_toml_is_one_line_without_the_offending_text() {
        let secret = "hunter2-super-secret-value-0123456789";
        let dir = tempfile::tempdir().unwrap();
        let path = write_config(dir.path(), &format!("[jwt]\nsecret = \"{secret}\n"));
        let shown = error_of(Settings::load_from(Some(&path), Vec::new()));
        assert!(
            shown.starts_with(&format!(
                "invalid TOML in {}: line 2, column",
                path.display()
            )),
            "{shown}"
        );
        assert!(!shown.contains("hunter2"), "{shown}");
    }

    // --- validation --------------------------------------------------------

    #[test]
    fn bad_durations_are_refused() {
        let shown = error_of(load_env(&[("STAMPS_JWT__LIFETIME", "0s")]));
        assert_eq!(
            shown,
            "invalid jwt.lifetime \"0s\": lifetime must be between 1 second and 366 days"
        );
        let shown = error_of(load_env(&[("STAMPS_JWT__LIFETIME", "500ms")]));
        assert!(
            shown.starts_with("invalid jwt.lifetime \"500ms\": "),
            "{shown}"
        );
        let shown = error_of(load_env(&[("STAMPS_JWT__LIFETIME", "400days")]));
        assert!(
            shown.starts_with("invalid jwt.lifetime \"400days\": "),
            "{shown}"
        );
        for value in ["abc", "10", "-5s", ""] {
            let shown = error_of(load_env(&[("STAMPS_JWT__LIFETIME", value)]));
            assert!(
                shown.starts_with(&format!(
                    "invalid jwt.lifetime {value:?}: expected a duration"
                )),
                "{shown}"
            );
        }
        let shown = error_of(load_file("[jwt]\nleeway = \"soon\"\n"));
        assert!(
            shown.starts_with("invalid jwt.leeway \"soon\": "),
            "{shown}"
        );
    }

    #[test]
    fn leeway_must_be_below_lifetime() {
        let shown = error_of(load_env(&[
            ("STAMPS_JWT__LIFETIME", "1m"),
            ("STAMPS_JWT__LEEWAY", "60s"),
        ]));
        assert_eq!(
            shown,
            "invalid jwt.leeway \"60s\": leeway must be smaller than the lifetime (jwt.lifetime is \"1m\")"
        );
        assert!(
            load_env(&[
                ("STAMPS_JWT__LIFETIME", "1m"),
                ("STAMPS_JWT__LEEWAY", "59s")
            ])
            .is_ok()
        );
    }

    #[test]
    fn bad_listen_is_refused_and_port_zero_accepted() {
        for value in ["abc", "127.0.0.1", "127.0.0.1:99999", "localhost:8080", ""] {
            let shown = error_of(load_env(&[("STAMPS_LISTEN", value)]));
            assert!(
                shown.starts_with(&format!("invalid listen {value:?}: expected an IP address")),
                "{shown}"
            );
        }
        let settings = load_env(&[("STAMPS_LISTEN", "127.0.0.1:0")]).unwrap();
        assert_eq!(settings.listen.port(), 0);
    }

    #[test]
    fn empty_data_dir_is_refused() {
        let shown = error_of(load_env(&[("STAMPS_DATA_DIR", "")]));
        assert_eq!(shown, "invalid data_dir \"\": must not be empty");
    }

    #[test]
    fn weak_secrets_are_refused_unless_allowed() {
        // From the file.
        let shown = error_of(load_file(&format!("[jwt]\nsecret = \"{WEAK}\"\n")));
        assert!(
            shown.starts_with("jwt.secret is too short (19 bytes)"),
            "{shown}"
        );
        assert!(shown.contains("allow_weak_secret"), "{shown}");
        let settings = load_file(&format!(
            "[jwt]\nsecret = \"{WEAK}\"\nallow_weak_secret = true\n"
        ))
        .unwrap();
        assert!(settings.jwt.secret_is_weak());

        // From the environment.
        let shown = error_of(load_env(&[("STAMPS_JWT__SECRET", "TESTJWT")]));
        assert!(
            shown.starts_with("jwt.secret is too short (7 bytes)"),
            "{shown}"
        );
        let settings = load_env(&[
            ("STAMPS_JWT__SECRET", "TESTJWT"),
            ("STAMPS_JWT__ALLOW_WEAK_SECRET", "true"),
        ])
        .unwrap();
        assert!(settings.jwt.secret_is_weak());
        let resolved = resolve_signing_key(&settings).unwrap();
        assert_eq!(resolved.key.expose_secret(), b"TESTJWT");
        assert_eq!(resolved.source, KeySource::Configured);

        // The limit is 32 bytes of UTF-8, not 32 characters.
        assert!(load_env(&[("STAMPS_JWT__SECRET", "x".repeat(31).as_str())]).is_err());
        let settings =
            load_env(&[("STAMPS_JWT__SECRET", "0123456789abcdefghijklmnopqrstuv")]).unwrap();
        assert!(!settings.jwt.secret_is_weak());
        assert!(load_env(&[("STAMPS_JWT__SECRET", "èéêëìíîïðñòóôõö÷")]).is_ok());
        assert!(load_env(&[("STAMPS_JWT__SECRET", "èéêëìíîïðñòóôõ")]).is_err());

        // Long enough but obviously low variety: refused, saying why.
        for (secret, why) in [
            ("x".repeat(32), "is one character repeated"),
            ("abcd".repeat(8), "repeats a pattern of 4 bytes"),
            ("0123456789".repeat(4), "repeats a pattern of 10 bytes"),
            (
                "aaaabbbbccccddddaaaabbbbccccdddx".to_owned(),
                "has only 5 distinct bytes",
            ),
        ] {
            let shown = error_of(load_env(&[("STAMPS_JWT__SECRET", secret.as_str())]));
            assert!(shown.starts_with(&format!("jwt.secret {why}")), "{shown}");
            assert!(!shown.contains(&secret), "the secret is echoed: {shown}");
            let allowed = load_env(&[
                ("STAMPS_JWT__SECRET", secret.as_str()),
                ("STAMPS_JWT__ALLOW_WEAK_SECRET", "true"),
            ])
            .unwrap();
            assert!(allowed.jwt.secret_is_weak());
        }
    }

    #[test]
    fn empty_secret_is_refused_even_when_weak_ones_are_allowed() {
        for allow in ["false", "true"] {
            let shown = error_of(load_env(&[
                ("STAMPS_JWT__SECRET", ""),
                ("STAMPS_JWT__ALLOW_WEAK_SECRET", allow),
            ]));
            assert!(shown.starts_with("jwt.secret is empty"), "{shown}");
        }
    }

    #[test]
    fn store_settings_are_checked() {
        let shown = error_of(load_env(&[("STAMPS_STORE__BACKEND", "postgres")]));
        assert_eq!(
            shown,
            "store.url is required when store.backend is \"postgres\""
        );
        let shown = error_of(load_file("[store]\nbackend = \"postgres\"\nurl = \"\"\n"));
        assert!(shown.starts_with("store.url is required"), "{shown}");
        let shown = error_of(load_env(&[("STAMPS_STORE__URL", "postgres://u:pw@db/s")]));
        assert!(
            shown.starts_with("store.url is set but store.backend is \"sled\""),
            "{shown}"
        );
        assert!(!shown.contains("pw@"), "{shown}");
        let shown = error_of(load_env(&[("STAMPS_STORE__BACKEND", "mysql")]));
        assert_eq!(
            shown,
            "invalid store.backend \"mysql\": expected \"sled\" or \"postgres\""
        );
        let settings = load_env(&[
            ("STAMPS_STORE__BACKEND", "postgres"),
            ("STAMPS_STORE__URL", "postgres://u:pw@db/s"),
        ])
        .unwrap();
        let shown = format!("{settings:?}");
        assert!(!shown.contains("pw@"), "{shown}");
    }

    #[test]
    fn secrets_of_the_wrong_type_are_not_echoed() {
        let shown = error_of(load_file(
            "[jwt]\nsecret = [\"hunter2-hunter2-hunter2-hunter2-x\"]\n",
        ));
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(shown.contains("jwt.secret"), "{shown}");
    }

    #[test]
    fn error_messages_never_contain_the_secret() {
        let secret = "SeCrEt-VaLuE";
        let dir = tempfile::tempdir().unwrap();
        let mut errors = vec![
            load_env(&[("STAMPS_JWT__SECRET", secret)]).unwrap_err(),
            load_env(&[("STAMPS_JWT__SECRET", secret), ("STAMPS_LISTEN", "x")]).unwrap_err(),
            load_env(&[
                ("STAMPS_JWT__SECRET", secret),
                ("STAMPS_JWT__LIFETIME", "0s"),
            ])
            .unwrap_err(),
            load_file(&format!("[jwt]\nsecret = \"{secret}\"\nbogus = 1\n")).unwrap_err(),
            load_file(&format!("[jwt]\nsecret = \"{secret}\" x\n")).unwrap_err(),
            load_file(&format!(
                "[jwt]\nsecret = \"{secret}\"\nsecret = \"{secret}\"\n"
            ))
            .unwrap_err(),
        ];
        let key_file = dir.path().join(KEY_FILE_NAME);
        fs::write(&key_file, format!("{secret}\n")).unwrap();
        set_mode(&key_file, 0o600);
        errors.push(resolve_signing_key(&settings_in(dir.path())).unwrap_err());
        #[cfg(unix)]
        {
            set_mode(&key_file, 0o640);
            errors.push(resolve_signing_key(&settings_in(dir.path())).unwrap_err());
        }
        for error in errors {
            let shown = format!("{error} {error:?}");
            assert!(!shown.contains(secret), "{shown}");
        }
    }

    // --- the key file ------------------------------------------------------

    fn set_mode(path: &Path, mode: u32) {
        #[cfg(unix)]
        fs::set_permissions(path, fs::Permissions::from_mode(mode)).unwrap();
        #[cfg(not(unix))]
        let _ = (path, mode);
    }

    #[test]
    fn key_file_is_generated_private_with_256_bits_then_reused() {
        let root = tempfile::tempdir().unwrap();
        let data_dir = root.path().join("nested").join("data");
        let settings = settings_in(&data_dir);
        let path = data_dir.join(KEY_FILE_NAME);

        let first = resolve_signing_key(&settings).unwrap();
        assert_eq!(first.source, KeySource::Generated(path.clone()));
        #[cfg(unix)]
        {
            assert_eq!(mode_of(&path), 0o600);
            assert_eq!(mode_of(&data_dir), 0o700);
        }

        let text = fs::read_to_string(&path).unwrap();
        assert_eq!(text.len(), 44, "{text:?}");
        let (secret, newline) = text.split_at(43);
        assert_eq!(newline, "\n");
        assert_eq!(first.key.expose_secret(), secret.as_bytes());
        assert_eq!(base64url_decode(secret).len(), 32);
        assert!(!first.key.is_weak());

        let again = resolve_signing_key(&settings).unwrap();
        assert_eq!(again.source, KeySource::Loaded(path.clone()));
        assert_eq!(again.key, first.key);

        // Its content works as a configured secret, to the same key.
        let configured = load_env(&[("STAMPS_JWT__SECRET", secret)]).unwrap();
        assert_eq!(resolve_signing_key(&configured).unwrap().key, first.key);

        // Another data directory gets another secret; no temporary is left.
        let other = resolve_signing_key(&settings_in(&root.path().join("other"))).unwrap();
        assert_ne!(other.key, first.key);
        let names: Vec<_> = fs::read_dir(&data_dir)
            .unwrap()
            .map(|entry| entry.unwrap().file_name())
            .collect();
        assert_eq!(names, [KEY_FILE_NAME]);
    }

    #[test]
    fn a_configured_secret_wins_over_the_key_file() {
        let dir = tempfile::tempdir().unwrap();
        let mut settings = settings_in(dir.path());
        settings.jwt.secret = Some(SecretString::from(STRONG));
        let resolved = resolve_signing_key(&settings).unwrap();
        assert_eq!(resolved.source, KeySource::Configured);
        assert_eq!(resolved.key.expose_secret(), STRONG.as_bytes());
        assert!(!dir.path().join(KEY_FILE_NAME).exists());

        // Settings built by hand are checked too.
        settings.jwt.secret = Some(SecretString::from("short"));
        let error = resolve_signing_key(&settings).unwrap_err();
        assert!(matches!(error, SettingsError::WeakSecret { .. }), "{error}");
    }

    #[cfg(unix)]
    #[test]
    fn key_file_readable_by_others_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let settings = settings_in(dir.path());
        resolve_signing_key(&settings).unwrap();
        let path = dir.path().join(KEY_FILE_NAME);
        set_mode(&path, 0o644);
        let error = resolve_signing_key(&settings).unwrap_err();
        assert_eq!(
            error.to_string(),
            format!(
                "key file {0} has mode 0644: it must give no permission to group or others (chmod 600 {0})",
                path.display()
            )
        );
        set_mode(&path, 0o604);
        assert!(resolve_signing_key(&settings).is_err());
        set_mode(&path, 0o400);
        assert!(resolve_signing_key(&settings).is_ok());
    }

    #[test]
    fn empty_or_broken_key_files_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let settings = settings_in(dir.path());
        let path = dir.path().join(KEY_FILE_NAME);
        for content in [&b""[..], b"\n", b"\r\n\n"] {
            fs::write(&path, content).unwrap();
            set_mode(&path, 0o600);
            let shown = resolve_signing_key(&settings).unwrap_err().to_string();
            assert!(
                shown.starts_with(&format!("invalid key file {}: it is empty", path.display())),
                "{shown}"
            );
        }
        fs::write(&path, [0xff_u8; 40]).unwrap();
        let shown = resolve_signing_key(&settings).unwrap_err().to_string();
        assert!(shown.ends_with("it is not UTF-8 text"), "{shown}");

        fs::remove_file(&path).unwrap();
        fs::create_dir(&path).unwrap();
        let shown = resolve_signing_key(&settings).unwrap_err().to_string();
        assert!(shown.contains(&path.display().to_string()), "{shown}");
    }

    #[test]
    fn operator_written_key_files_are_trimmed_and_checked() {
        let dir = tempfile::tempdir().unwrap();
        let mut settings = settings_in(dir.path());
        let path = dir.path().join(KEY_FILE_NAME);
        fs::write(&path, format!("{STRONG}\r\n")).unwrap();
        set_mode(&path, 0o600);
        let resolved = resolve_signing_key(&settings).unwrap();
        assert_eq!(resolved.key.expose_secret(), STRONG.as_bytes());
        assert_eq!(resolved.source, KeySource::Loaded(path.clone()));

        fs::write(&path, "TESTJWT\n").unwrap();
        let shown = resolve_signing_key(&settings).unwrap_err().to_string();
        assert!(
            shown.starts_with(&format!(
                "the secret of key file {} is too short (7 bytes)",
                path.display()
            )),
            "{shown}"
        );
        settings.jwt.allow_weak_secret = true;
        assert_eq!(
            resolve_signing_key(&settings).unwrap().key.expose_secret(),
            b"TESTJWT"
        );
    }

    #[test]
    fn racing_processes_agree_on_one_secret() {
        let dir = tempfile::tempdir().unwrap();
        let settings = settings_in(&dir.path().join("data"));
        let results: Vec<ResolvedKey> = std::thread::scope(|scope| {
            let handles: Vec<_> = (0..8)
                .map(|_| scope.spawn(|| resolve_signing_key(&settings).unwrap()))
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        let generated = results
            .iter()
            .filter(|r| matches!(r.source, KeySource::Generated(_)))
            .count();
        assert_eq!(generated, 1);
        assert!(results.iter().all(|r| r.key == results[0].key));
    }
}
