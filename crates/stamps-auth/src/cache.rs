//! The verification cache of static tokens.
//!
//! argon2id costs tens of milliseconds, so a static token is verified
//! against its hash once, then accepted from memory until it goes unused
//! for the idle time, or has been cached for [`MAX_AGE_IDLE_TIMES`] idle
//! times whatever its use, or a revocation or a disabled user or merchant
//! evicts it (at once). An active holder stays cached: a token id under
//! attack cannot push it back to argon2 and the id's failure limit. Entries are keyed by an HMAC-SHA256 of the whole presented token
//! under a key that lives only in this process: the cache never holds a
//! token, and a memory dump of it proves nothing.

use std::time::Duration;

use hmac::{Hmac, KeyInit, Mac};
use moka::sync::Cache;
use rand::RngCore;
use sha2::Sha256;
use stamps_core::{TokenId, UnixTime};
use stamps_store::TokenRecord;

/// A cached token is proven again after this many idle times, used or not.
pub const MAX_AGE_IDLE_TIMES: u32 = 12;

/// What a cache hit says about a token: who it authenticates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CachedToken {
    /// The token's public id.
    pub token_id: TokenId,
    /// Its user.
    pub user_id: u64,
    /// Its merchant.
    pub merchant_id: u64,
    /// When it stops granting access, if ever (seconds since the epoch):
    /// checked on every hit, so a cached token expires at its instant too.
    pub expires_at: Option<UnixTime>,
}

impl CachedToken {
    /// True when the token has expired at `now`.
    pub fn is_expired(&self, now: UnixTime) -> bool {
        self.expires_at.is_some_and(|at| at <= now)
    }
}

impl From<&TokenRecord> for CachedToken {
    fn from(record: &TokenRecord) -> Self {
        Self {
            token_id: record.id,
            user_id: record.user_id,
            merchant_id: record.merchant_id,
            expires_at: record.expires_at,
        }
    }
}

/// A token whose secret was proven but which is refused: revoked, expired,
/// or of a disabled user or merchant. Remembered, like a live one, so that a client
/// retrying it costs no argon2 (on every replica).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RefusedToken {
    /// The token and whom it is for.
    pub token: CachedToken,
    /// Revoked (for good); otherwise refused for a disabled user or
    /// merchant, which may be enabled again.
    pub revoked: bool,
}

/// A bounded, expiring map from keyed token fingerprints to [`CachedToken`]
/// (and to [`RefusedToken`], apart).
pub struct StaticTokenCache {
    fingerprint_key: Hmac<Sha256>,
    entries: Cache<[u8; 32], CachedToken>,
    refused: Cache<[u8; 32], RefusedToken>,
}

impl std::fmt::Debug for StaticTokenCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StaticTokenCache")
            .field("entries", &self.entries.entry_count())
            .finish_non_exhaustive()
    }
}

impl StaticTokenCache {
    /// A cache of at most `capacity` tokens, each kept while it is used at
    /// least every `idle`, and [`MAX_AGE_IDLE_TIMES`] × `idle` at most (then
    /// proven again: the backstop for a change a replica might have
    /// missed).
    pub fn new(capacity: u64, idle: Duration) -> Self {
        // A full block of key: HMAC-SHA256's native key size.
        let mut key = [0u8; 64];
        rand::rng().fill_bytes(&mut key);
        Self {
            fingerprint_key: Hmac::<Sha256>::new(&key.into()),
            refused: Cache::builder()
                .max_capacity(capacity)
                .time_to_idle(idle)
                .time_to_live(idle.saturating_mul(MAX_AGE_IDLE_TIMES))
                .build(),
            entries: Cache::builder()
                .max_capacity(capacity)
                .time_to_idle(idle)
                .time_to_live(idle.saturating_mul(MAX_AGE_IDLE_TIMES))
                .support_invalidation_closures()
                .build(),
        }
    }

    fn fingerprint(&self, token: &str) -> [u8; 32] {
        let mut mac = self.fingerprint_key.clone();
        mac.update(token.as_bytes());
        mac.finalize().into_bytes().into()
    }

    /// The entry for this exact token text, if it was verified recently.
    pub fn get(&self, token: &str) -> Option<CachedToken> {
        self.entries.get(&self.fingerprint(token))
    }

    /// Remembers a token that argon2 just verified.
    pub fn insert(&self, token: &str, entry: CachedToken) {
        self.entries.insert(self.fingerprint(token), entry);
    }

    /// Forgets every entry matching `predicate`, at once: no later `get`
    /// returns them.
    pub fn evict(&self, predicate: impl Fn(&CachedToken) -> bool + Send + Sync + 'static) {
        // Fails only if invalidation closures were not enabled at build.
        if self
            .entries
            .invalidate_entries_if(move |_, entry| predicate(entry))
            .is_err()
        {
            self.entries.invalidate_all();
        }
    }

    /// How many tokens are cached, after the cache's pending maintenance
    /// (for metrics: not for the request path).
    pub fn entry_count(&self) -> u64 {
        self.entries.run_pending_tasks();
        self.entries.entry_count()
    }

    /// The refusal remembered for this exact token text, if any.
    pub fn get_refused(&self, token: &str) -> Option<RefusedToken> {
        self.refused.get(&self.fingerprint(token))
    }

    /// Remembers a token that argon2 proved but that is refused.
    pub fn insert_refused(&self, token: &str, refused: RefusedToken) {
        self.refused.insert(self.fingerprint(token), refused);
    }

    /// Forgets the refusal of this token text (its account was enabled).
    pub fn forget_refused(&self, token: &str) {
        self.refused.invalidate(&self.fingerprint(token));
    }

    /// Forgets everything.
    pub fn clear(&self) {
        self.entries.invalidate_all();
        self.refused.invalidate_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use stamps_core::StaticToken;

    #[test]
    fn hits_only_the_exact_token_and_evicts_at_once() {
        let cache = StaticTokenCache::new(100, Duration::from_secs(60));
        let id = *StaticToken::generate().id();
        let entry = CachedToken {
            token_id: id,
            user_id: 1,
            merchant_id: 2,
            expires_at: None,
        };
        cache.insert("stmp_a", entry);
        assert_eq!(cache.get("stmp_a"), Some(entry));
        assert_eq!(cache.get("stmp_b"), None);
        cache.evict(|e| e.user_id == 9);
        assert_eq!(cache.get("stmp_a"), Some(entry));
        cache.evict(move |e| e.token_id == id);
        assert_eq!(cache.get("stmp_a"), None);
    }

    #[test]
    fn fingerprints_are_keyed_per_cache() {
        let a = StaticTokenCache::new(1, Duration::from_secs(1));
        let b = StaticTokenCache::new(1, Duration::from_secs(1));
        assert_ne!(a.fingerprint("same"), b.fingerprint("same"));
        assert_eq!(a.fingerprint("same"), a.fingerprint("same"));
    }
}
