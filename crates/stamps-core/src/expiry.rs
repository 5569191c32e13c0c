//! Expiry rules (lifetime and leeway) and the clock they are applied with.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::error::ConfigError;

/// Seconds since the Unix epoch, the unit of the `exp` and `iat` claims.
pub type UnixTime = u64;

/// How long a minted JWT lives and how much clock skew verification forgives.
///
/// Validated on construction: a lifetime of at least one second (and at most
/// [`ExpiryRules::MAX_LIFETIME`], so `exp` never overflows), and a leeway
/// strictly smaller than the lifetime.
///
/// ```
/// use std::time::Duration;
/// use stamps_core::ExpiryRules;
///
/// let rules = ExpiryRules::new(Duration::from_secs(3600), Duration::from_secs(30))?;
/// assert_eq!(rules.lifetime(), Duration::from_secs(3600));
/// assert!(ExpiryRules::new(Duration::ZERO, Duration::ZERO).is_err());
/// assert!(ExpiryRules::new(Duration::from_secs(30), Duration::from_secs(30)).is_err());
/// # Ok::<(), stamps_core::ConfigError>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExpiryRules {
    lifetime_secs: u64,
    leeway_secs: u64,
}

impl ExpiryRules {
    /// The default lifetime of the Stamps documentation: 24 hours.
    pub const DEFAULT_LIFETIME: Duration = Duration::from_secs(24 * 60 * 60);
    /// The default leeway: 30 seconds.
    pub const DEFAULT_LEEWAY: Duration = Duration::from_secs(30);
    /// The longest lifetime accepted: 366 days. Access tokens that live longer
    /// are static tokens in disguise.
    pub const MAX_LIFETIME: Duration = Duration::from_secs(366 * 24 * 60 * 60);

    /// Validates and builds the rules. Sub-second parts are dropped, since
    /// JWT times are whole seconds.
    pub fn new(lifetime: Duration, leeway: Duration) -> Result<Self, ConfigError> {
        let lifetime_secs = lifetime.as_secs();
        if lifetime_secs == 0 || lifetime > Self::MAX_LIFETIME {
            return Err(ConfigError::Lifetime {
                max_days: Self::MAX_LIFETIME.as_secs() / 86_400,
            });
        }
        let leeway_secs = leeway.as_secs();
        if leeway_secs >= lifetime_secs {
            return Err(ConfigError::Leeway);
        }
        Ok(Self {
            lifetime_secs,
            leeway_secs,
        })
    }

    /// How long a minted token is valid.
    pub fn lifetime(&self) -> Duration {
        Duration::from_secs(self.lifetime_secs)
    }

    /// The clock skew forgiven on `exp` and `iat`.
    pub fn leeway(&self) -> Duration {
        Duration::from_secs(self.leeway_secs)
    }

    /// The oldest a token can be and still be accepted, in seconds:
    /// lifetime plus leeway (saturating). A JWT revocation or a retired
    /// key older than this refuses or verifies nothing any more.
    pub fn max_token_age_secs(&self) -> u64 {
        self.lifetime_secs.saturating_add(self.leeway_secs)
    }

    /// The `exp` of a token issued at `iat`.
    pub fn expiry_for(&self, iat: UnixTime) -> UnixTime {
        iat.saturating_add(self.lifetime_secs)
    }

    /// True when a token with this `exp` is expired at `now`, beyond the leeway.
    pub fn is_expired(&self, exp: UnixTime, now: UnixTime) -> bool {
        now > exp.saturating_add(self.leeway_secs)
    }

    /// True when `iat` lies in the future at `now`, beyond the leeway.
    pub fn is_issued_in_future(&self, iat: UnixTime, now: UnixTime) -> bool {
        iat > now.saturating_add(self.leeway_secs)
    }
}

impl Default for ExpiryRules {
    fn default() -> Self {
        Self {
            lifetime_secs: Self::DEFAULT_LIFETIME.as_secs(),
            leeway_secs: Self::DEFAULT_LEEWAY.as_secs(),
        }
    }
}

/// A source of the current time, so that callers (and tests) decide what
/// "now" is. stamps-core itself never reads the clock: its functions take
/// `now` as an argument.
pub trait Clock: Send + Sync {
    /// The current time in whole seconds since the Unix epoch.
    fn now(&self) -> UnixTime;
}

/// The system's wall clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> UnixTime {
        // A clock set before 1970 reads as the epoch: every token then looks
        // issued in the future and is refused, which is the safe failure.
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |elapsed| elapsed.as_secs())
    }
}

/// A clock that moves only when told to: for tests.
///
/// ```
/// use stamps_core::{Clock, ManualClock};
///
/// let clock = ManualClock::new(1_000);
/// clock.advance(30);
/// assert_eq!(clock.now(), 1_030);
/// ```
#[derive(Debug, Default)]
pub struct ManualClock(AtomicU64);

impl ManualClock {
    /// A clock showing `now`.
    pub fn new(now: UnixTime) -> Self {
        Self(AtomicU64::new(now))
    }

    /// Sets the time.
    pub fn set(&self, now: UnixTime) {
        self.0.store(now, Ordering::SeqCst);
    }

    /// Moves the time forward by `seconds`.
    pub fn advance(&self, seconds: u64) {
        self.0.fetch_add(seconds, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> UnixTime {
        self.0.load(Ordering::SeqCst)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_the_documented_ones() {
        let rules = ExpiryRules::default();
        assert_eq!(rules.lifetime(), Duration::from_secs(86_400));
        assert_eq!(rules.leeway(), Duration::from_secs(30));
        assert_eq!(rules.max_token_age_secs(), 24 * 3600 + 30);
        assert_eq!(
            ExpiryRules::new(rules.lifetime(), rules.leeway()),
            Ok(rules)
        );
    }

    #[test]
    fn rejects_zero_too_long_and_leeway_not_below_lifetime() {
        let s = Duration::from_secs;
        assert!(ExpiryRules::new(Duration::ZERO, s(0)).is_err());
        assert!(ExpiryRules::new(Duration::from_millis(999), s(0)).is_err());
        assert!(ExpiryRules::new(ExpiryRules::MAX_LIFETIME + s(1), s(0)).is_err());
        assert_eq!(ExpiryRules::new(s(60), s(60)), Err(ConfigError::Leeway));
        assert_eq!(ExpiryRules::new(s(60), s(61)), Err(ConfigError::Leeway));
        assert!(ExpiryRules::new(s(60), s(59)).is_ok());
        assert!(ExpiryRules::new(ExpiryRules::MAX_LIFETIME, s(0)).is_ok());
    }

    #[test]
    fn expiry_and_future_checks_honour_the_leeway_boundary() {
        let rules = ExpiryRules::new(Duration::from_secs(100), Duration::from_secs(10)).unwrap();
        assert_eq!(rules.expiry_for(1_000), 1_100);
        assert!(!rules.is_expired(1_100, 1_110));
        assert!(rules.is_expired(1_100, 1_111));
        assert!(!rules.is_issued_in_future(1_010, 1_000));
        assert!(rules.is_issued_in_future(1_011, 1_000));
        // No overflow at the ends of the range.
        assert!(!rules.is_expired(u64::MAX, u64::MAX));
        assert_eq!(rules.expiry_for(u64::MAX), u64::MAX);
    }

    #[test]
    fn manual_clock_moves_only_when_told() {
        let clock = ManualClock::new(5);
        assert_eq!(clock.now(), 5);
        clock.advance(10);
        assert_eq!(clock.now(), 15);
        clock.set(1);
        assert_eq!(clock.now(), 1);
        assert!(SystemClock.now() > 1_600_000_000);
    }
}
