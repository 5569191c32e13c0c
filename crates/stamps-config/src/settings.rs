//! The validated settings, and how they are loaded.

use std::fs;
use std::net::{Ipv4Addr, SocketAddr};
use std::num::NonZeroU32;
use std::path::{Path, PathBuf};
use std::time::Duration;

use config::{Config, Environment, FileFormat, Map, Source};
use secrecy::{ExposeSecret, SecretString};
use stamps_core::ExpiryRules;

use crate::error::SettingsError;
use crate::proxy::TrustedProxies;
use crate::raw::{RawSettings, is_weak};
use crate::signing_key::KEY_FILE_NAME;
use crate::sources::{
    ENV_PREFIX, check_file_keys, describe_toml_error, is_setting_env_var, one_line,
};

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
    /// Static tokens (`[tokens]`).
    pub tokens: TokensSettings,
}

/// The `[tokens]` settings.
#[derive(Debug, Clone, Default)]
pub struct TokensSettings {
    /// The secret imported tokens are found by (`tokens.lookup_secret`;
    /// `Debug` hides it): at least 32 bytes, the same on every replica. On
    /// sled, `None` uses the key file `<data_dir>/token-lookup-key`; on
    /// PostgreSQL, `None` leaves imported tokens off (see
    /// [`lookup_key`](crate::lookup_key)).
    pub lookup_secret: Option<SecretString>,
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
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogSettings {
    /// Text for people, or JSON lines for a log pipeline (`log.format`).
    pub format: LogFormat,
    /// One line per request (`log.access`, on by default; CONTRACT §3.1).
    pub access: bool,
}

impl Default for LogSettings {
    /// Text lines, one per request.
    fn default() -> Self {
        Self {
            format: LogFormat::Text,
            access: true,
        }
    }
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

/// What the audit trail keeps (`[audit]`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AuditPolicy {
    /// Events older than this are deleted (`audit.retention`); `None`
    /// keeps them forever.
    pub retention: Option<Duration>,
    /// Whether each JWT issued is recorded (`audit.jwt_issued`).
    pub jwt_issued: bool,
}

impl Default for AuditPolicy {
    /// 30 days, JWTs issued recorded (CONTRACT §3.1).
    fn default() -> Self {
        Self {
            retention: Some(Duration::from_secs(30 * 86_400)),
            jwt_issued: true,
        }
    }
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
    /// the key file of the data directory (see
    /// [`resolve_signing_key`](crate::resolve_signing_key)).
    pub secret: Option<SecretString>,
    /// The lifetime and leeway of minted JWTs (`jwt.lifetime`, `jwt.leeway`).
    pub rules: ExpiryRules,
    /// Whether a weak secret ([`stamps_core::weakness`]: shorter than
    /// [`MIN_STRONG_KEY_LEN`](stamps_core::MIN_STRONG_KEY_LEN) bytes, or of low variety) is accepted
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
            tokens: TokensSettings::default(),
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
