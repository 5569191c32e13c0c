//! What the [`Authenticator`](crate::Authenticator) reports as it works, for
//! whoever counts it: [`AuthObserver`]. stamps-http's `Metrics` implements
//! it as Prometheus series; the tests count with it; a service that counts
//! nothing passes none.

use std::sync::Arc;
use std::time::Duration;

use crate::outcome::{AuthReason, Scheme};

/// Receives the Authenticator's events. Each method is called on the
/// request path (or on the blocking pool, for a hash), so it must be cheap:
/// an atomic add, not I/O. Every method does nothing by default.
///
/// ```
/// use std::sync::atomic::{AtomicU64, Ordering};
/// use stamps_auth::{AuthObserver, AuthReason, Scheme};
///
/// #[derive(Default)]
/// struct Refusals(AtomicU64);
///
/// impl AuthObserver for Refusals {
///     fn outcome(&self, _scheme: Scheme, reason: AuthReason) {
///         if reason != AuthReason::Ok {
///             self.0.fetch_add(1, Ordering::Relaxed);
///         }
///     }
/// }
///
/// let refusals = Refusals::default();
/// refusals.outcome(Scheme::Jwt, AuthReason::Expired);
/// assert_eq!(refusals.0.load(Ordering::Relaxed), 1);
/// ```
pub trait AuthObserver: Send + Sync {
    /// An authentication attempt ended, accepted or refused, and why.
    fn outcome(&self, scheme: Scheme, reason: AuthReason) {
        let _ = (scheme, reason);
    }

    /// A static token was looked up in the verification cache.
    fn cache_lookup(&self, hit: bool) {
        let _ = hit;
    }

    /// Verifications waiting for an argon2 permit changed by `change`
    /// (+1 joined, -1 left: also when the request was dropped).
    fn argon2_queue_changed(&self, change: i64) {
        let _ = change;
    }

    /// argon2 hashes running changed by `change` (+1 started, -1 ended).
    fn argon2_running_changed(&self, change: i64) {
        let _ = change;
    }

    /// A verification waited this long for its argon2 permit.
    fn argon2_waited(&self, waited: Duration) {
        let _ = waited;
    }

    /// One argon2 verification took this long.
    fn argon2_hashed(&self, took: Duration) {
        let _ = took;
    }
}

/// One unit of a gauge an observer keeps, given back when dropped (also
/// when the future or the closure holding it is dropped).
pub(crate) struct GaugeHold {
    observer: Arc<dyn AuthObserver>,
    change: fn(&dyn AuthObserver, i64),
}

impl GaugeHold {
    /// Adds one through `change` now, and takes it back on drop.
    pub(crate) fn new(
        observer: &Arc<dyn AuthObserver>,
        change: fn(&dyn AuthObserver, i64),
    ) -> Self {
        change(observer.as_ref(), 1);
        Self {
            observer: Arc::clone(observer),
            change,
        }
    }
}

impl Drop for GaugeHold {
    fn drop(&mut self) {
        (self.change)(self.observer.as_ref(), -1);
    }
}
