//! The raw layer: what the file and the environment hold, before
//! validation. Values from the environment are text, so numbers, booleans
//! and lists accept text too.

use std::net::SocketAddr;
use std::num::NonZeroU32;
use std::path::PathBuf;
use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Deserializer};
use stamps_core::{ConfigError, ExpiryRules, weakness};

use crate::error::SettingsError;
use crate::proxy::{TrustedProxies, parse_trusted_net};
use crate::settings::{
    AuditPolicy, HttpSettings, JwtSettings, LogFormat, LogSettings, MetricsSettings, ProxySettings,
    RateLimitSettings, Settings, StoreSettings, TlsSettings, TokensSettings,
};

/// The settings as written, before validation. Its `Default` is the built-in
/// defaults of CONTRACT §3.1.
#[derive(Debug, Deserialize)]
#[cfg_attr(test, derive(serde::Serialize))]
#[serde(deny_unknown_fields, default)]
pub(crate) struct RawSettings {
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
    tokens: RawTokens,
}

#[derive(Debug, Default, Deserialize)]
#[cfg_attr(test, derive(serde::Serialize))]
#[serde(deny_unknown_fields, default)]
struct RawTokens {
    #[serde(deserialize_with = "deserialize_secret")]
    #[cfg_attr(test, serde(serialize_with = "crate::tests::serialize_secret"))]
    lookup_secret: Option<SecretString>,
}

impl RawTokens {
    fn validate(self) -> Result<TokensSettings, SettingsError> {
        let lookup_secret = self
            .lookup_secret
            .filter(|secret| !secret.expose_secret().is_empty());
        if let Some(secret) = &lookup_secret {
            // Never weak: it alone stands between a stolen database and
            // guessing imported tokens at HMAC speed.
            check_secret(secret.expose_secret().as_bytes(), false, || {
                "tokens.lookup_secret".to_owned()
            })?;
        }
        Ok(TokensSettings { lookup_secret })
    }
}

#[derive(Debug, Deserialize)]
#[cfg_attr(test, derive(serde::Serialize))]
#[serde(deny_unknown_fields, default)]
struct RawMetrics {
    enabled: RawValue,
    listen: Option<String>,
}

impl Default for RawMetrics {
    fn default() -> Self {
        Self {
            enabled: RawValue::Bool(false),
            listen: None,
        }
    }
}

#[derive(Debug, Deserialize)]
#[cfg_attr(test, derive(serde::Serialize))]
#[serde(deny_unknown_fields, default)]
struct RawLog {
    format: String,
    access: RawValue,
}

impl Default for RawLog {
    fn default() -> Self {
        Self {
            format: "text".to_owned(),
            access: RawValue::Bool(LogSettings::default().access),
        }
    }
}

#[derive(Debug, Deserialize)]
#[cfg_attr(test, derive(serde::Serialize))]
#[serde(deny_unknown_fields, default)]
struct RawProxy {
    trusted: RawValue,
}

impl Default for RawProxy {
    fn default() -> Self {
        Self {
            trusted: RawValue::List(Vec::new()),
        }
    }
}

#[derive(Debug, Deserialize)]
#[cfg_attr(test, derive(serde::Serialize))]
#[serde(deny_unknown_fields, default)]
struct RawRateLimit {
    enabled: RawValue,
    per_address: RawValue,
    per_token: RawValue,
    window: String,
    issue_per_token: RawValue,
}

#[derive(Debug, Deserialize)]
#[cfg_attr(test, derive(serde::Serialize))]
#[serde(deny_unknown_fields, default)]
struct RawAudit {
    retention: String,
    jwt_issued: RawValue,
}

impl Default for RawAudit {
    fn default() -> Self {
        Self {
            retention: "30d".to_owned(),
            jwt_issued: RawValue::Bool(AuditPolicy::default().jwt_issued),
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
    require_https: RawValue,
    hsts_max_age: String,
    max_connections: RawValue,
    /// Unset: a tenth of `max_connections`.
    max_connections_per_address: Option<RawValue>,
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
    #[cfg_attr(test, serde(serialize_with = "crate::tests::serialize_secret"))]
    secret: Option<SecretString>,
    lifetime: String,
    leeway: String,
    allow_weak_secret: RawValue,
}

#[derive(Debug, Deserialize)]
#[cfg_attr(test, derive(serde::Serialize))]
#[serde(deny_unknown_fields, default)]
struct RawStore {
    backend: String,
    #[serde(deserialize_with = "deserialize_secret")]
    #[cfg_attr(test, serde(serialize_with = "crate::tests::serialize_secret"))]
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
            tokens: RawTokens::default(),
        }
    }
}

impl Default for RawRateLimit {
    fn default() -> Self {
        let defaults = RateLimitSettings::default();
        Self {
            enabled: RawValue::Bool(defaults.enabled),
            per_address: RawValue::Whole(u64::from(defaults.per_address.get())),
            per_token: RawValue::Whole(u64::from(defaults.per_token.get())),
            window: "1m".to_owned(),
            issue_per_token: RawValue::Whole(
                defaults.issue_per_token.map_or(0, |n| u64::from(n.get())),
            ),
        }
    }
}

impl Default for RawHttp {
    fn default() -> Self {
        Self {
            require_https: RawValue::Bool(false),
            hsts_max_age: "365d".to_owned(),
            max_connections: RawValue::Whole(HttpSettings::default().max_connections as u64),
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
            allow_weak_secret: RawValue::Bool(false),
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

/// A scalar or list as written. A TOML file has booleans, integers,
/// floats and arrays; the environment only text. serde picks the variant
/// (untagged: the first that fits, in this order), and each setting's
/// validation says which it accepts: [`RawValue::boolean`],
/// [`RawValue::whole`], [`RawValue::list`].
///
/// Why not `config`'s own conversions: `Environment::try_parsing` turns
/// every variable that looks like a number into one, so a secret of
/// digits would lose its leading zeros or become a float in exponent form
/// (`numeric_looking_secrets_stay_strings` holds that), and its list
/// splitting (`list_separator`, `with_list_parse_key`) only runs under
/// `try_parsing`; its string-to-bool conversion takes `yes`, `on` and `1`,
/// where the contract's settings are `true` or `false`.
#[derive(Debug, Deserialize)]
#[cfg_attr(test, derive(serde::Serialize))]
#[serde(untagged)]
enum RawValue {
    Bool(bool),
    Whole(u64),
    /// Negative or fractional: refused by every setting, but shown as written.
    Number(f64),
    Text(String),
    List(Vec<String>),
}

impl RawValue {
    /// The value as an error shows it.
    fn shown(&self) -> String {
        match self {
            Self::Bool(value) => value.to_string(),
            Self::Whole(value) => value.to_string(),
            Self::Number(value) => value.to_string(),
            Self::Text(text) => text.clone(),
            Self::List(items) => items.join(","),
        }
    }

    fn invalid(&self, setting: &'static str, reason: String) -> SettingsError {
        SettingsError::Invalid {
            setting,
            value: self.shown(),
            reason,
        }
    }

    /// A boolean: `true` or `false`, as a TOML boolean or as text in any
    /// case.
    fn boolean(&self, setting: &'static str) -> Result<bool, SettingsError> {
        match self {
            Self::Bool(value) => Ok(*value),
            Self::Text(text) if text.eq_ignore_ascii_case("true") => Ok(true),
            Self::Text(text) if text.eq_ignore_ascii_case("false") => Ok(false),
            _ => Err(self.invalid(setting, "expected true or false".to_owned())),
        }
    }

    /// A whole number from `min` to `max`, as a TOML integer or as text.
    fn whole(&self, setting: &'static str, min: u64, max: u64) -> Result<u64, SettingsError> {
        let value = match self {
            Self::Whole(value) => Some(*value),
            Self::Text(text) => text.trim().parse::<u64>().ok(),
            _ => None,
        };
        match value {
            Some(value) if (min..=max).contains(&value) => Ok(value),
            _ => Err(self.invalid(
                setting,
                format!("expected a whole number from {min} to {max}"),
            )),
        }
    }

    /// A list of strings: a TOML array, or comma-separated text (items
    /// trimmed, empty ones dropped).
    fn list(&self, setting: &'static str) -> Result<Vec<String>, SettingsError> {
        match self {
            Self::List(items) => Ok(items.clone()),
            Self::Text(text) => Ok(text
                .split(',')
                .map(str::trim)
                .filter(|item| !item.is_empty())
                .map(str::to_owned)
                .collect()),
            _ => Err(self.invalid(setting, "expected a list of strings".to_owned())),
        }
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
    pub(crate) fn validate(self) -> Result<Settings, SettingsError> {
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
        let tokens = self.tokens.validate()?;
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
            tokens,
        })
    }
}

impl RawProxy {
    fn validate(self) -> Result<ProxySettings, SettingsError> {
        let nets = self
            .trusted
            .list("proxy.trusted")?
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
        let enabled = self.enabled.boolean("rate_limit.enabled")?;
        let limit = |raw: &RawValue, setting| {
            raw.whole(setting, 1, 1_000_000)
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
                .whole("rate_limit.issue_per_token", 0, 1_000_000)?;
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
            jwt_issued: self.jwt_issued.boolean("audit.jwt_issued")?,
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
        let require_https = self.require_https.boolean("http.require_https")?;
        let hsts_max_age = parse_duration("http.hsts_max_age", &self.hsts_max_age)?;
        let max_connections = self
            .max_connections
            .whole("http.max_connections", 1, 1_000_000)? as usize;
        let max_connections_per_address = match &self.max_connections_per_address {
            Some(number) => {
                number.whole("http.max_connections_per_address", 0, 1_000_000)? as usize
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
        let enabled = self.enabled.boolean("metrics.enabled")?;
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
        let access = self.access.boolean("log.access")?;
        Ok(LogSettings { format, access })
    }
}

impl RawJwt {
    fn validate(self) -> Result<JwtSettings, SettingsError> {
        let lifetime = parse_duration("jwt.lifetime", &self.lifetime)?;
        let leeway = parse_duration("jwt.leeway", &self.leeway)?;
        let allow_weak_secret = self.allow_weak_secret.boolean("jwt.allow_weak_secret")?;
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

pub(crate) fn is_weak(secret: &[u8]) -> bool {
    weakness(secret).is_some()
}

/// Refuses an empty secret, and a weak one unless `allow_weak`. `origin`
/// names the secret in the error.
pub(crate) fn check_secret(
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
