//! Static tokens, issued (`stmp_...`, found by their public id) and
//! imported (any other text, found by its digest under the lookup key):
//! the cache, then the store and argon2id, under the throttle, one
//! verification in flight per token, and a bounded queue for the argon2
//! permits. An unknown token is refused after about as long as an argon2
//! verification takes ([`HashTimer`](crate::HashTimer)), without the work.

use std::hash::BuildHasher;
use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use stamps_core::{
    ExposeSecret, LookupDigest, SecretString, StaticToken, TOKEN_PREFIX, TokenId,
    check_imported_text,
};
use stamps_store::{Refusal, TokenCheck};

use super::{Authenticator, Denial};
use crate::cache::{CachedToken, RefusedToken};
use crate::error::AuthError;
use crate::observer::{AuthObserver, GaugeHold};
use crate::outcome::{AuthReason, Scheme};
use crate::throttle::Throttled;

/// The longest a static token's verification may take with the store
/// (lookup, the argon2 queue, the hash): past it, 503 `store_unavailable`.
/// The queue's bound keeps a healthy verification far below it.
pub const STORE_DEADLINE: Duration = Duration::from_secs(5);

/// Stripes of the single-flight locks: ids that share one wait for each
/// other, which costs order, not work.
pub(super) const FLIGHT_STRIPES: usize = 256;

/// Verifications that may wait for an argon2 permit, per permit: about
/// half a second of hashing each; beyond, 429 with `Retry-After: 1`.
pub const QUEUE_PER_PERMIT: usize = 16;

/// What is looked up for a presented static token: an issued token by its
/// public id, an imported one by the digest of its text.
enum Presented {
    Issued(StaticToken),
    Imported(LookupDigest),
}

impl Authenticator {
    /// Verifies a static token presented by `client` (its address, if
    /// known) and returns whom it authenticates, whichever merchant is asked
    /// for (the caller compares). An issued token (`stmp_...`) is parsed
    /// first (garbage stops there); any other text can only be an imported
    /// token ([`Authenticator::with_lookup_key`]).
    pub async fn verify_static(
        &self,
        text: &str,
        client: Option<IpAddr>,
    ) -> Result<CachedToken, AuthError> {
        let known = if text.starts_with(TOKEN_PREFIX) {
            self.verify_issued(text, client).await?
        } else {
            self.verify_imported(text, client).await?
        };
        let id = known.token_id;
        let now = self.clock.now();
        // Proven (its secret was right): an expired token says so, at its
        // instant, from the cache too.
        if known.is_expired(now) {
            let denial = Denial::new(AuthError::TokenExpired, AuthReason::Expired);
            return Err(self.deny(Scheme::Static, client, Some(&id), denial));
        }
        if !self.live.grants(known.user_id, known.merchant_id) {
            let denial = Denial::new(AuthError::InvalidToken, AuthReason::Disabled);
            return Err(self.deny(Scheme::Static, client, Some(&id), denial));
        }
        if let Some(last_use) = &self.last_use {
            last_use.note(id, now);
        }
        self.count(Scheme::Static, AuthReason::Ok);
        Ok(known)
    }

    /// An issued token: the format and checksum first (garbage stops here),
    /// without copying the secret; the whole token only on a cache miss.
    async fn verify_issued(
        &self,
        text: &str,
        client: Option<IpAddr>,
    ) -> Result<CachedToken, AuthError> {
        let id = StaticToken::parse_id(text)
            .map_err(|_| self.deny(Scheme::Static, client, None, AuthError::InvalidToken.into()))?;
        if let Some(hit) = self.cached(text) {
            return Ok(hit);
        }
        let token = StaticToken::parse(text).map_err(|_| {
            self.count(Scheme::Static, AuthReason::Invalid);
            AuthError::InvalidToken
        })?;
        let flight = self.flight_hasher.hash_one(id);
        self.verify_uncached(text, client, Some(&id), Presented::Issued(token), flight)
            .await
    }

    /// Any other text: refused at once, with no digest and no lookup, while
    /// no imported token is stored (or no lookup key is set) or when it
    /// cannot be one; otherwise from the cache, or one keyed lookup of its
    /// digest (and argon2 only if it is stored).
    async fn verify_imported(
        &self,
        text: &str,
        client: Option<IpAddr>,
    ) -> Result<CachedToken, AuthError> {
        let key = match &self.lookup_key {
            Some(key) if self.live.any_imported() && check_imported_text(text).is_ok() => key,
            _ => {
                let denial = AuthError::InvalidToken.into();
                return Err(self.deny(Scheme::Static, client, None, denial));
            }
        };
        if let Some(hit) = self.cached(text) {
            return Ok(hit);
        }
        self.check_throttle(client, None)?;
        let digest = key.digest(text);
        // One keyed lookup first: a text that is not stored is refused at
        // once, with no argon2 queue, no hash-time pacing and no single
        // flight. Unlike an issued token's public id, an imported token is
        // all secret: whether a text is stored tells nothing but whether it
        // is a token, which its hash would say at once anyway.
        if !self
            .is_imported(digest)
            .await
            .map_err(|e| self.deny(Scheme::Static, client, None, e))?
        {
            let denial = AuthError::InvalidToken.into();
            return Err(self.deny(Scheme::Static, client, None, denial));
        }
        let flight = self.flight_hasher.hash_one(digest);
        self.verify_uncached(text, client, None, Presented::Imported(digest), flight)
            .await
    }

    /// Whether an imported token has this digest: one keyed read on the
    /// blocking pool, given up on (503) past [`STORE_DEADLINE`].
    async fn is_imported(&self, digest: LookupDigest) -> Result<bool, Denial> {
        let store = self.store.clone().ok_or(AuthError::InvalidToken)?;
        let lookup = tokio::task::spawn_blocking(move || store.imported_token(&digest));
        match tokio::time::timeout(STORE_DEADLINE, lookup).await {
            Ok(Ok(found)) => Ok(found?.is_some()),
            Ok(Err(_)) => Err(AuthError::Internal.into()),
            Err(_) => Err(Denial::new(
                AuthError::StoreUnavailable,
                AuthReason::Unavailable,
            )),
        }
    }

    /// The cache's answer for `text`, counted as a hit or a miss.
    fn cached(&self, text: &str) -> Option<CachedToken> {
        let cached = self.live.cache().get(text);
        if let Some(observer) = &self.observer {
            observer.cache_lookup(cached.is_some());
        }
        cached
    }

    /// A token the cache does not know: throttled, refused as before, or
    /// verified with the store, one at a time per id (or digest, `flight`).
    async fn verify_uncached(
        &self,
        text: &str,
        client: Option<IpAddr>,
        id: Option<&TokenId>,
        presented: Presented,
        flight: u64,
    ) -> Result<CachedToken, AuthError> {
        // Not proven: an address or id over its limit stops here, before
        // the store and argon2.
        self.check_throttle(client, id)?;
        self.refuse_as_before(text, client).await?;
        // One verification in flight per token. The others wait here (no
        // CPU), then find the same token proven (cached), or the failure
        // counted: concurrent guesses cannot outrun the limit, each one
        // waits for the count of the one before.
        let stripe = flight as usize % FLIGHT_STRIPES;
        let _flight = self.flights[stripe].lock().await;
        if let Some(hit) = self.live.cache().get(text) {
            return Ok(hit);
        }
        self.check_throttle(client, id)?;
        // A store that hangs (a stopped database host) is given up on: 503,
        // while its call finishes, or not, on the blocking pool.
        let verified =
            tokio::time::timeout(STORE_DEADLINE, self.verify_with_store(text, presented))
                .await
                .unwrap_or_else(|_| {
                    Err(Denial::new(
                        AuthError::StoreUnavailable,
                        AuthReason::Unavailable,
                    ))
                });
        // An imported token's text is all secret: its refusals count
        // against the address (there is no public id to guess at).
        let known = verified.map_err(|e| self.deny(Scheme::Static, client, id, e))?;
        if let Some(throttle) = &self.throttle {
            throttle.proven(client, &known.token_id);
        }
        Ok(known)
    }

    /// Refuses a token proven before and refused then (revoked, or its user
    /// or merchant disabled, still), without argon2: after a hash's time,
    /// on a timer, and counted as a failure like any refusal.
    async fn refuse_as_before(&self, text: &str, client: Option<IpAddr>) -> Result<(), AuthError> {
        let Some(before) = self.live.cache().get_refused(text) else {
            return Ok(());
        };
        let (error, reason) = if before.revoked {
            (AuthError::InvalidToken, AuthReason::Revoked)
        } else if before.token.is_expired(self.clock.now()) {
            (AuthError::TokenExpired, AuthReason::Expired)
        } else if !self
            .live
            .grants(before.token.user_id, before.token.merchant_id)
        {
            (AuthError::InvalidToken, AuthReason::Disabled)
        } else {
            // Enabled again: verify it anew.
            self.live.cache().forget_refused(text);
            return Ok(());
        };
        tokio::time::sleep(self.hash_timer.estimate()).await;
        let id = before.token.token_id;
        Err(self.deny(
            Scheme::Static,
            client,
            Some(&id),
            Denial::new(error, reason),
        ))
    }

    /// `Throttled` (counted as `throttled`) when the client's address, or
    /// the token id for an address that has not proved it lately, is over
    /// its limit.
    fn check_throttle(
        &self,
        client: Option<IpAddr>,
        id: Option<&TokenId>,
    ) -> Result<(), AuthError> {
        match &self.throttle {
            Some(throttle) => throttle.check(client, id).map_err(|throttled| {
                self.count(Scheme::Static, AuthReason::Throttled);
                AuthError::from(throttled)
            }),
            None => Ok(()),
        }
    }

    /// The slow path: one keyed lookup (by id, or by digest), and argon2id
    /// only for a stored token. Stored or not, the request waits its turn
    /// for a permit (at most [`QUEUE_PER_PERMIT`] waiting per permit, else
    /// `Throttled`): an unknown one then gives its permit back and waits as
    /// long as a hash takes, on a timer, so that both answer alike under
    /// load too.
    async fn verify_with_store(
        &self,
        text: &str,
        presented: Presented,
    ) -> Result<CachedToken, Denial> {
        let store = self.store.clone().ok_or(AuthError::InvalidToken)?;
        let generation = self.live.generation();

        let lookup = Arc::clone(&store);
        let found = match &presented {
            Presented::Issued(token) => {
                let id = *token.id();
                tokio::task::spawn_blocking(move || lookup.token(&id))
                    .await
                    .map_err(|_| AuthError::Internal)??
                    // An imported token is presented as its own text.
                    .filter(|record| !record.is_imported())
            }
            Presented::Imported(digest) => {
                let digest = *digest;
                tokio::task::spawn_blocking(move || lookup.imported_token(&digest))
                    .await
                    .map_err(|_| AuthError::Internal)??
            }
        }
        .as_ref()
        .map(CachedToken::from);

        // Waiting for a permit is async: a queue of wrong guesses never
        // occupies a worker, and JWT requests keep being served. The queue
        // is bounded: past it, a first use would wait longer than a retry.
        let queued = QueueSlot::take(&self.queued);
        if queued.position >= self.max_queued {
            return Err(Denial::new(
                AuthError::Throttled(Throttled { retry_after: 1 }),
                AuthReason::Throttled,
            ));
        }
        let waiting = self.observer.as_ref().map(|observer| {
            let hold = GaugeHold::new(observer, |o: &dyn AuthObserver, change| {
                o.argon2_queue_changed(change)
            });
            (hold, Instant::now())
        });
        let permit = Arc::clone(&self.argon2_permits)
            .acquire_owned()
            .await
            .map_err(|_| AuthError::Internal)?;
        drop(queued);
        if let (Some(observer), Some((_, since))) = (&self.observer, waiting) {
            observer.argon2_waited(since.elapsed());
        }
        let Some(found) = found else {
            // As late as a wrong secret would be, on a timer: no CPU.
            drop(permit);
            tokio::time::sleep(self.hash_timer.estimate()).await;
            return Err(AuthError::InvalidToken.into());
        };
        // Concurrent first uses of one token queue here behind the first;
        // once it has verified and cached the token, the rest need no hash.
        if let Some(hit) = self.live.cache().get(text) {
            return Ok(hit);
        }
        // The permit travels with the hash: released when the hash is done,
        // even if this request is dropped meanwhile; so does the gauge.
        let hashing = self.observer.as_ref().map(|observer| {
            GaugeHold::new(observer, |o: &dyn AuthObserver, change| {
                o.argon2_running_changed(change)
            })
        });
        // The text goes to the blocking pool as a secret (wiped when dropped).
        let secret = SecretString::from(text);
        let (check, took) = tokio::task::spawn_blocking(move || {
            let _permit = permit;
            let _hashing = hashing;
            let started = Instant::now();
            let check = match &presented {
                Presented::Issued(token) => store.check_token(token),
                Presented::Imported(digest) => store.check_imported(secret.expose_secret(), digest),
            };
            (check, started.elapsed())
        })
        .await
        .map_err(|_| AuthError::Internal)?;
        self.hash_timer.record(took);
        if let Some(observer) = &self.observer {
            observer.argon2_hashed(took);
        }
        let record = match check? {
            TokenCheck::Live(record) => record,
            TokenCheck::Refused(why) => {
                let (error, reason) = match why {
                    Refusal::Revoked => (AuthError::InvalidToken, AuthReason::Revoked),
                    Refusal::Expired => (AuthError::TokenExpired, AuthReason::Expired),
                    Refusal::UserDisabled | Refusal::MerchantDisabled => {
                        (AuthError::InvalidToken, AuthReason::Disabled)
                    }
                    Refusal::Unknown | Refusal::WrongSecret => {
                        (AuthError::InvalidToken, AuthReason::Invalid)
                    }
                };
                // Proven but refused: a retry is refused without argon2.
                if reason != AuthReason::Invalid {
                    let revoked = reason == AuthReason::Revoked;
                    let refused = RefusedToken {
                        token: found,
                        revoked,
                    };
                    self.live.cache().insert_refused(text, refused);
                }
                return Err(Denial::new(error, reason));
            }
        };
        let entry = CachedToken::from(&record);
        self.live.cache_if_unchanged(generation, text, entry);
        Ok(entry)
    }
}

/// A place in the argon2 queue, given back when dropped.
struct QueueSlot<'a> {
    queued: &'a AtomicUsize,
    /// How many were waiting before this one.
    position: usize,
}

impl<'a> QueueSlot<'a> {
    fn take(queued: &'a AtomicUsize) -> Self {
        let position = queued.fetch_add(1, Ordering::AcqRel);
        Self { queued, position }
    }
}

impl Drop for QueueSlot<'_> {
    fn drop(&mut self) {
        self.queued.fetch_sub(1, Ordering::AcqRel);
    }
}
