//! Throttling of failed authentication (CONTRACT §1.4, 429 `throttled`).
//!
//! Two limits, each counting *failures* only (refused credentials): one per
//! client address, one per static token id. A key over its limit is refused
//! with `Retry-After` before any work is done for it: no store lookup, no
//! argon2. What is never throttled is decided by the caller: a valid JWT or
//! a proven (cached) static token never asks.
//!
//! Each key's budget is a GCRA bucket ([`governor`]): `limit` failures at
//! once, then one more per `window / limit`. governor cannot say whether a
//! key is over its limit without spending a cell, and a check that spends
//! would count attempts instead of failures; so each key also keeps the
//! instant until which it is refused, set when a failure empties its bucket
//! (for one replenish interval, an upper bound of the wait) or is refused
//! by it (for governor's exact wait). The keys live in a bounded
//! [`moka`] cache that forgets a key idle for a whole window (its bucket
//! would be full again anyway): the memory is bounded whatever the number
//! of addresses or ids an attacker uses, and moka's frequency-based
//! admission keeps the keys that keep failing when a flood of new ones
//! arrives.

use std::hash::Hash;
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use governor::clock::{Clock, MonotonicClock, Reference};
use governor::middleware::StateInformationMiddleware;
use governor::state::{InMemoryState, NotKeyed};
use governor::{Quota, RateLimiter};
use moka::sync::Cache;
use stamps_config::RateLimitSettings;
use stamps_core::TokenId;

/// Keys tracked per limit at most; the least used are forgotten first.
pub const TRACKED_KEYS: u64 = 100_000;

/// One key's bucket.
type Bucket<C> = RateLimiter<NotKeyed, InMemoryState, C, StateInformationMiddleware>;

struct Entry<C: Clock> {
    bucket: Bucket<C>,
    /// Nanoseconds since the limiter's origin until which the key is
    /// refused; 0 for never.
    refused_until: AtomicU64,
}

/// A failure limit per key: [`FailureLimiter::check`] refuses a key over
/// its limit without counting; [`FailureLimiter::fail`] counts one failure.
pub struct FailureLimiter<K, C: Clock = MonotonicClock> {
    quota: Quota,
    clock: C,
    origin: C::Instant,
    entries: Cache<K, Arc<Entry<C>>>,
}

impl<K, C: Clock> std::fmt::Debug for FailureLimiter<K, C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FailureLimiter")
            .field("quota", &self.quota)
            .field("keys", &self.entries.entry_count())
            .finish_non_exhaustive()
    }
}

impl<K> FailureLimiter<K>
where
    K: Hash + Eq + Clone + Send + Sync + 'static,
{
    /// `limit` failures per `window` and key, on the system's monotonic
    /// clock; `None` if the window is too short to divide by the limit.
    pub fn new(limit: NonZeroU32, window: Duration, capacity: u64) -> Option<Self> {
        Self::with_clock(limit, window, capacity, MonotonicClock)
    }
}

impl<K, C> FailureLimiter<K, C>
where
    K: Hash + Eq + Clone + Send + Sync + 'static,
    C: Clock + Clone + Send + Sync + 'static,
{
    /// Like [`FailureLimiter::new`], on the given clock (tests use
    /// governor's `FakeRelativeClock`).
    pub fn with_clock(
        limit: NonZeroU32,
        window: Duration,
        capacity: u64,
        clock: C,
    ) -> Option<Self> {
        let quota = Quota::with_period(window / limit.get())?.allow_burst(limit);
        let origin = clock.now();
        Some(Self {
            quota,
            origin,
            clock,
            entries: Cache::builder()
                .max_capacity(capacity)
                .time_to_idle(window.max(Duration::from_secs(1)))
                .build(),
        })
    }

    fn now(&self) -> u64 {
        self.clock.now().duration_since(self.origin).as_u64()
    }

    /// The wait before `key` may fail again, if it is over its limit now.
    /// Counts nothing.
    pub fn check(&self, key: &K) -> Result<(), Duration> {
        let Some(entry) = self.entries.get(key) else {
            return Ok(());
        };
        let until = entry.refused_until.load(Ordering::Acquire);
        let now = self.now();
        if until > now {
            Err(Duration::from_nanos(until - now))
        } else {
            Ok(())
        }
    }

    /// Counts a failure of `key`. `Err` (with the wait) when it is over the
    /// limit: this failure went past it.
    pub fn fail(&self, key: &K) -> Result<(), Duration> {
        let entry = self.entries.get_with_by_ref(key, || {
            Arc::new(Entry {
                bucket: RateLimiter::direct_with_clock(self.quota, self.clock.clone())
                    .with_middleware::<StateInformationMiddleware>(),
                refused_until: AtomicU64::new(0),
            })
        });
        let now = self.now();
        match entry.bucket.check() {
            Ok(state) if state.remaining_burst_capacity() > 0 => Ok(()),
            Ok(_) => {
                // The bucket is empty: the next failure is refused until a
                // cell comes back, at most one replenish interval from now.
                let wait = self.quota.replenish_interval();
                refuse_until(&entry.refused_until, now, wait);
                Ok(())
            }
            Err(not_until) => {
                let wait = not_until.wait_time_from(self.clock.now());
                refuse_until(&entry.refused_until, now, wait);
                Err(wait)
            }
        }
    }

    /// How many keys are tracked (an estimate; for tests and `Debug`).
    pub fn tracked(&self) -> u64 {
        self.entries.run_pending_tasks();
        self.entries.entry_count()
    }
}

fn refuse_until(slot: &AtomicU64, now: u64, wait: Duration) {
    let wait = u64::try_from(wait.as_nanos()).unwrap_or(u64::MAX);
    slot.fetch_max(now.saturating_add(wait).max(1), Ordering::AcqRel);
}

/// The key of a client address: IPv4 addresses one by one, IPv6 by /64
/// (what one subscriber usually holds; per address, a single host could
/// use 2^64 of them).
pub fn address_key(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V6(v6) => IpAddr::V6((u128::from(v6) & !u128::from(u64::MAX)).into()),
        v4 => v4,
    }
}

/// The limits on failed authentication: per client address and per static
/// token id. See the module documentation.
#[derive(Debug)]
pub struct Throttle {
    by_address: FailureLimiter<IpAddr>,
    by_token: FailureLimiter<TokenId>,
    /// Token ids and the client addresses (keyed as [`address_key`]) that
    /// proved them lately: the per-id limit does not stop them, so that
    /// guesses from elsewhere cannot lock the holder out.
    proven: Cache<(TokenId, IpAddr), ()>,
}

/// How long an address that proved a token id stays exempt from that
/// id's limit (the address limit still applies).
pub const PROVEN_FOR: Duration = Duration::from_secs(24 * 3600);

impl Throttle {
    /// The throttle `settings` describe (`[rate_limit]`), or `None` when
    /// failures are not limited (`rate_limit.enabled = false`).
    pub fn from_settings(settings: &RateLimitSettings) -> Option<Self> {
        if !settings.enabled {
            return None;
        }
        Self::new(settings.per_address, settings.per_token, settings.window)
    }

    /// `per_address` failures per `window` from one client address,
    /// `per_token` per `window` against one static token id. `None` if the
    /// window is too short to divide by the limits.
    pub fn new(per_address: NonZeroU32, per_token: NonZeroU32, window: Duration) -> Option<Self> {
        Some(Self {
            by_address: FailureLimiter::new(per_address, window, TRACKED_KEYS)?,
            by_token: FailureLimiter::new(per_token, window, TRACKED_KEYS)?,
            proven: Cache::builder()
                .max_capacity(TRACKED_KEYS)
                .time_to_live(PROVEN_FOR)
                .build(),
        })
    }

    /// Remembers that `client` proved `token` (its secret verified): for
    /// [`PROVEN_FOR`], that address is not stopped by the id's limit.
    pub fn proven(&self, client: Option<IpAddr>, token: &TokenId) {
        if let Some(ip) = client {
            self.proven.insert((*token, address_key(ip)), ());
        }
    }

    /// The id's limit applies to `client` (it has not proved this id lately).
    fn limits(&self, client: Option<IpAddr>, token: &TokenId) -> bool {
        client.is_none_or(|ip| !self.proven.contains_key(&(*token, address_key(ip))))
    }

    /// Refuses (429) a client address, or a token id, that is over its
    /// limit, before any work is done for it. Counts nothing.
    /// An address that proved the id lately ([`Throttle::proven`]) is
    /// checked against its own limit only.
    pub fn check(&self, client: Option<IpAddr>, token: Option<&TokenId>) -> Result<(), Throttled> {
        let by_address = client.map(|ip| self.by_address.check(&address_key(ip)));
        let by_token = token
            .filter(|id| self.limits(client, id))
            .map(|id| self.by_token.check(id));
        throttled(by_address, by_token)
    }

    /// Counts a refused credential from `client` (against `token`):
    /// `Ok` to answer the refusal itself, [`Throttled`] (429) when the
    /// address or the token id is over its limit (then the failure is not
    /// counted again) or this failure takes it over.
    pub fn record_failure(
        &self,
        client: Option<IpAddr>,
        token: Option<&TokenId>,
    ) -> Result<(), Throttled> {
        self.check(client, token)?;
        let by_address = client.map(|ip| self.by_address.fail(&address_key(ip)));
        let by_token = token.map(|id| self.by_token.fail(id));
        throttled(by_address, by_token)
    }
}

/// A refusal for being over a limit (429 `throttled` over HTTP): try
/// again after `retry_after` whole seconds (`Retry-After`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("over the limit: retry after {retry_after} s")]
pub struct Throttled {
    /// Seconds to wait, rounded up, at least 1.
    pub retry_after: u64,
}

/// The longer wait of the limits that refuse, if any does.
fn throttled(
    by_address: Option<Result<(), Duration>>,
    by_token: Option<Result<(), Duration>>,
) -> Result<(), Throttled> {
    let wait = [by_address, by_token]
        .into_iter()
        .flatten()
        .filter_map(Result::err)
        .max();
    match wait {
        None => Ok(()),
        Some(wait) => Err(Throttled {
            retry_after: retry_after_secs(wait),
        }),
    }
}

/// Whole seconds, rounded up, at least 1.
pub(crate) fn retry_after_secs(wait: Duration) -> u64 {
    let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
    secs.max(1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use governor::clock::FakeRelativeClock;
    use proptest::prelude::*;

    #[test]
    fn the_settings_turn_the_limits_on_and_off() {
        let on = RateLimitSettings::default();
        assert!(Throttle::from_settings(&on).is_some());
        assert!(crate::IssueQuota::from_settings(&on).is_some());
        // Failure limits off: the issuance quota stays.
        let off = RateLimitSettings {
            enabled: false,
            ..on.clone()
        };
        assert!(Throttle::from_settings(&off).is_none());
        assert!(crate::IssueQuota::from_settings(&off).is_some());
        let no_quota = RateLimitSettings {
            issue_per_token: None,
            ..on
        };
        assert!(crate::IssueQuota::from_settings(&no_quota).is_none());
    }

    fn limiter(
        limit: u32,
        window: Duration,
    ) -> (FailureLimiter<u32, FakeRelativeClock>, FakeRelativeClock) {
        let clock = FakeRelativeClock::default();
        let limiter = FailureLimiter::with_clock(
            NonZeroU32::new(limit).unwrap(),
            window,
            1000,
            clock.clone(),
        )
        .unwrap();
        (limiter, clock)
    }

    #[test]
    fn a_key_fails_limit_times_then_is_refused_until_a_cell_returns() {
        let (limiter, clock) = limiter(3, Duration::from_secs(60));
        for _ in 0..3 {
            assert_eq!(limiter.check(&7), Ok(()));
            assert_eq!(limiter.fail(&7), Ok(()));
        }
        // The bucket is empty: refused, for at most one interval (20 s).
        let wait = limiter.check(&7).unwrap_err();
        assert!(
            wait <= Duration::from_secs(20) && wait > Duration::ZERO,
            "{wait:?}"
        );
        // Other keys are untouched.
        assert_eq!(limiter.check(&8), Ok(()));
        clock.advance(Duration::from_secs(20));
        assert_eq!(limiter.check(&7), Ok(()));
        assert_eq!(limiter.fail(&7), Ok(()));
        assert!(limiter.check(&7).is_err());
        // A failure counted while over the limit (a race) is refused with
        // governor's wait.
        let wait = limiter.fail(&7).unwrap_err();
        assert!(wait <= Duration::from_secs(20), "{wait:?}");
        // A whole window later the key has its full budget again.
        clock.advance(Duration::from_secs(60));
        for _ in 0..3 {
            assert_eq!(limiter.fail(&7), Ok(()));
        }
    }

    #[test]
    fn checking_counts_nothing() {
        let (limiter, _) = limiter(2, Duration::from_secs(60));
        for _ in 0..100 {
            assert_eq!(limiter.check(&1), Ok(()));
        }
        assert_eq!(limiter.fail(&1), Ok(()));
        assert_eq!(limiter.check(&1), Ok(()));
    }

    #[test]
    fn memory_is_bounded() {
        let clock = FakeRelativeClock::default();
        let limiter: FailureLimiter<u32, _> = FailureLimiter::with_clock(
            NonZeroU32::new(5).unwrap(),
            Duration::from_secs(60),
            100,
            clock,
        )
        .unwrap();
        for key in 0..10_000 {
            let _ = limiter.fail(&key);
        }
        assert!(limiter.tracked() <= 100, "{}", limiter.tracked());
    }

    #[test]
    fn ipv6_addresses_share_their_64_prefix() {
        let a: IpAddr = "2001:db8:1:2:aaaa::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:bbbb::2".parse().unwrap();
        let c: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert_eq!(address_key(a), address_key(b));
        assert_ne!(address_key(a), address_key(c));
        let v4: IpAddr = "192.0.2.1".parse().unwrap();
        assert_eq!(address_key(v4), v4);
        assert_eq!(address_key("::ffff:192.0.2.1".parse().unwrap()), v4);
    }

    #[test]
    fn the_throttle_refuses_with_the_longest_wait() {
        let throttle = Throttle::new(
            NonZeroU32::new(2).unwrap(),
            NonZeroU32::new(100).unwrap(),
            Duration::from_secs(60),
        )
        .unwrap();
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        for _ in 0..2 {
            assert_eq!(throttle.record_failure(Some(ip), None), Ok(()));
        }
        match throttle.record_failure(Some(ip), None) {
            Err(Throttled { retry_after }) => assert!((1..=30).contains(&retry_after)),
            other => panic!("expected 429, got {other:?}"),
        }
        assert!(throttle.check(Some(ip), None).is_err());
        // Another address, and no address at all, are not throttled.
        assert!(
            throttle
                .check(Some("192.0.2.2".parse().unwrap()), None)
                .is_ok()
        );
        assert!(throttle.check(None, None).is_ok());
    }

    #[test]
    fn retry_after_rounds_up_to_whole_seconds() {
        assert_eq!(retry_after_secs(Duration::ZERO), 1);
        assert_eq!(retry_after_secs(Duration::from_millis(1)), 1);
        assert_eq!(retry_after_secs(Duration::from_secs(2)), 2);
        assert_eq!(retry_after_secs(Duration::from_millis(2001)), 3);
    }

    proptest! {
        /// Over any sequence of failures and pauses, a key never gets more
        /// failures counted as allowed than its budget: `limit` at once plus
        /// one per interval elapsed.
        #[test]
        fn never_more_failures_than_the_budget(
            limit in 1u32..20,
            steps in proptest::collection::vec((0u64..5_000, 1usize..10), 1..40),
        ) {
            let window = Duration::from_secs(60);
            let (limiter, clock) = limiter(limit, window);
            let interval = window / limit;
            let mut allowed = 0u64;
            let mut elapsed = Duration::ZERO;
            for (pause_ms, tries) in steps {
                clock.advance(Duration::from_millis(pause_ms));
                elapsed += Duration::from_millis(pause_ms);
                for _ in 0..tries {
                    if limiter.check(&1).is_ok() && limiter.fail(&1).is_ok() {
                        allowed += 1;
                    }
                }
            }
            let budget = u64::from(limit) + (elapsed.as_nanos() / interval.as_nanos()) as u64;
            prop_assert!(allowed <= budget, "{} > {}", allowed, budget);
            // And a key that never failed is never refused.
            prop_assert!(limiter.check(&2).is_ok());
        }
    }
}
