//! The issuance quota (CONTRACT §1.4, `rate_limit.issue_per_token`): how
//! many JWTs one static token obtains per window. Every JWT issued adds an
//! event to the audit trail, so without a bound one valid token could fill
//! the disk; with it, what one token costs is bounded, and so is the trail
//! within its retention.
//!
//! Only issuance is limited: the token still authenticates (ping, any
//! `Token` request), and the JWTs it obtained keep working. Each server
//! counts for itself: behind N replicas a token obtains up to N times the
//! quota (docs/SECURITY.md).

use std::num::NonZeroU32;
use std::time::Duration;

use stamps_config::RateLimitSettings;
use stamps_core::TokenId;

use crate::throttle::{FailureLimiter, TRACKED_KEYS, Throttled, retry_after_secs};

/// JWTs per static token per window: `limit` at once, then one more every
/// `window / limit` (a GCRA bucket per token id, in bounded memory).
#[derive(Debug)]
pub struct IssueQuota {
    // The failure limiter's buckets, spent here by each issuance.
    per_token: FailureLimiter<TokenId>,
}

impl IssueQuota {
    /// `limit` JWTs per `window` and static token; `None` if the window is
    /// too short to divide by the limit.
    ///
    /// ```
    /// use std::num::NonZeroU32;
    /// use std::time::Duration;
    /// use stamps_auth::{IssueQuota, Throttled};
    ///
    /// let quota = IssueQuota::new(NonZeroU32::new(2).unwrap(), Duration::from_secs(60)).unwrap();
    /// let id = "0123456789abcdef".parse()?;
    /// assert!(quota.spend(&id).is_ok());
    /// assert!(quota.spend(&id).is_ok());
    /// assert_eq!(quota.spend(&id), Err(Throttled { retry_after: 30 }));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn new(limit: NonZeroU32, window: Duration) -> Option<Self> {
        Some(Self {
            per_token: FailureLimiter::new(limit, window, TRACKED_KEYS)?,
        })
    }

    /// The quota `settings` describe (`rate_limit.issue_per_token` per
    /// `rate_limit.window`), or `None` for no limit (0). Not lifted by
    /// `rate_limit.enabled = false`, which is about failures.
    pub fn from_settings(settings: &RateLimitSettings) -> Option<Self> {
        Self::new(settings.issue_per_token?, settings.window)
    }

    /// Spends one JWT of `token`'s quota, or refuses with the wait until
    /// the next one (429 `throttled` over HTTP).
    pub fn spend(&self, token: &TokenId) -> Result<(), Throttled> {
        self.per_token.fail(token).map_err(|wait| Throttled {
            retry_after: retry_after_secs(wait),
        })
    }
}
