//! Authentication, done once per request: the [`Authenticator`] decides on
//! a credential and hands back a proven [`Principal`], or an [`AuthError`].
//!
//! * `Authorization: Bearer <JWT>`: verified in memory by stamps-core (no
//!   store, no disk), then the user and merchant must be active and no
//!   revocation may cover the token ([`jwt`]).
//! * `Authorization: Token <static token>`: parsed (a bad checksum stops
//!   here), then accepted from the verification cache, or else looked up by
//!   id and, only if the id exists, verified with argon2id on the blocking
//!   pool under a bound on concurrent hashes ([`static_token`]).
//! * get-access-token: a static token exchanged for a fresh JWT
//!   ([`Authenticator::exchange`]).
//!
//! Refused credentials count against the client's address and (for static
//! tokens) the token id in the [`Throttle`], if one is set: over a limit,
//! the answer is [`AuthError::Throttled`], and a static token that is not
//! yet proven is refused before the store is asked. Valid JWTs and proven
//! static tokens never meet the throttle. Every outcome is reported to the
//! [`AuthObserver`], if one is set, under its [`AuthReason`].

mod exchange;
mod jwt;
mod static_token;

use std::hash::RandomState;
use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::AtomicUsize;

use arc_swap::ArcSwap;
use stamps_core::{Claims, Clock, JwtCodec, LookupKey, TokenId, UnixTime};
use stamps_store::{Store, StoreError};
use tokio::sync::Semaphore;

use crate::audit::AuditTrail;
use crate::credentials::Credentials;
use crate::error::AuthError;
use crate::hash_timer::HashTimer;
use crate::last_use::LastUse;
use crate::live::LiveState;
use crate::observer::AuthObserver;
use crate::outcome::{AuthReason, Scheme};
use crate::quota::IssueQuota;
use crate::throttle::Throttle;

pub use exchange::AccessRequest;
use jwt::ScheduledCodec;
use static_token::FLIGHT_STRIPES;
pub use static_token::{QUEUE_PER_PERMIT, STORE_DEADLINE};

/// Who a request is, and how it proved it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// The authenticated user.
    pub user_id: u64,
    /// The merchant the credential grants access to.
    pub merchant_id: u64,
    /// The credential that proved it.
    pub proof: Proof,
}

/// The credential behind a [`Principal`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Proof {
    /// A JWT, with its verified claims.
    Jwt(Claims),
    /// A static token, by its public id.
    StaticToken(TokenId),
}

/// Verifies JWTs and static tokens against the codec, the live state, and
/// (for static tokens not yet cached) the store; exchanges static tokens
/// for JWTs.
///
/// ```
/// use std::sync::Arc;
/// use stamps_auth::{AuthError, Authenticator, LiveState, StaticTokenCache};
/// use stamps_core::{ExpiryRules, JwtCodec, KeySet, SigningKey, SystemClock};
///
/// # tokio::runtime::Builder::new_current_thread().enable_all().build()?.block_on(async {
/// let codec = JwtCodec::new(KeySet::new(SigningKey::new(vec![7; 32])?), ExpiryRules::default());
/// let live = Arc::new(LiveState::empty(StaticTokenCache::new(1000, std::time::Duration::from_secs(300))));
/// // No store: JWTs only. Nobody is active in an empty live state.
/// let auth = Authenticator::new(codec, Arc::new(SystemClock), live, None, 1);
/// let jwt = auth.codec().mint(5870, 1, auth.now()).token;
/// let header = format!("Bearer {jwt}");
/// assert_eq!(auth.authenticate(Some(header.as_bytes()), None).await, Err(AuthError::InvalidToken));
/// assert_eq!(auth.authenticate(None, None).await, Err(AuthError::NotAuthenticated));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// # })?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct Authenticator {
    /// The configured key and expiry rules; rotated keys come from the
    /// live state.
    base: JwtCodec,
    /// The codec in force, rebuilt when the rotated keys change or one of
    /// them expires.
    scheduled: ArcSwap<ScheduledCodec>,
    clock: Arc<dyn Clock>,
    live: Arc<LiveState>,
    store: Option<Arc<dyn Store>>,
    argon2_permits: Arc<Semaphore>,
    /// Verifications waiting for an argon2 permit now, and the most that
    /// may ([`QUEUE_PER_PERMIT`] per permit): beyond, 429.
    queued: Arc<AtomicUsize>,
    max_queued: usize,
    /// One verification in flight per token id (striped by a keyed hash of
    /// the id): the others wait, then find its answer cached or its failure
    /// counted before doing any work of their own.
    flights: Box<[tokio::sync::Mutex<()>]>,
    flight_hasher: RandomState,
    throttle: Option<Throttle>,
    quota: Option<IssueQuota>,
    trail: Option<AuditTrail>,
    /// The key imported tokens are found by; `None`: they are not accepted.
    lookup_key: Option<LookupKey>,
    /// Where static tokens' successful uses are noted, if anywhere.
    last_use: Option<Arc<LastUse>>,
    hash_timer: HashTimer,
    observer: Option<Arc<dyn AuthObserver>>,
}

impl std::fmt::Debug for Authenticator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Authenticator")
            .field("codec", &self.base)
            .field("argon2_permits", &self.argon2_permits.available_permits())
            .field("throttle", &self.throttle)
            .field("quota", &self.quota)
            .field("trail", &self.trail.is_some())
            .field("imported_tokens", &self.lookup_key.is_some())
            .finish_non_exhaustive()
    }
}

/// A denied credential: the error the client sees, and the reason the
/// observer counts it under.
#[derive(Debug)]
struct Denial {
    error: AuthError,
    reason: AuthReason,
}

impl Denial {
    fn new(error: AuthError, reason: AuthReason) -> Self {
        Self { error, reason }
    }
}

impl From<AuthError> for Denial {
    /// The reason an error says by itself: store failures are
    /// `unavailable`, expiry `expired`, anything else `invalid`.
    fn from(error: AuthError) -> Self {
        let reason = match error {
            AuthError::TokenExpired => AuthReason::Expired,
            AuthError::Throttled(_) => AuthReason::Throttled,
            AuthError::StoreUnavailable | AuthError::Internal => AuthReason::Unavailable,
            _ => AuthReason::Invalid,
        };
        Self { error, reason }
    }
}

impl From<StoreError> for Denial {
    fn from(error: StoreError) -> Self {
        Denial::from(AuthError::from(error))
    }
}

impl Authenticator {
    /// An authenticator. `store` is `None` for a service that accepts JWTs
    /// only; `argon2_concurrency` bounds simultaneous argon2id hashes (at
    /// least 1). No throttle, quota, audit trail or observer until set.
    pub fn new(
        codec: JwtCodec,
        clock: Arc<dyn Clock>,
        live: Arc<LiveState>,
        store: Option<Arc<dyn Store>>,
        argon2_concurrency: usize,
    ) -> Self {
        let scheduled = ScheduledCodec::build(&codec, &live, clock.now());
        let permits = argon2_concurrency.max(1);
        Self {
            base: codec,
            scheduled: ArcSwap::from_pointee(scheduled),
            clock,
            live,
            store,
            argon2_permits: Arc::new(Semaphore::new(permits)),
            queued: Arc::new(AtomicUsize::new(0)),
            max_queued: permits.saturating_mul(QUEUE_PER_PERMIT),
            flights: (0..FLIGHT_STRIPES)
                .map(|_| tokio::sync::Mutex::new(()))
                .collect(),
            flight_hasher: RandomState::new(),
            throttle: None,
            quota: None,
            trail: None,
            lookup_key: None,
            last_use: None,
            hash_timer: HashTimer::default(),
            observer: None,
        }
    }

    /// The same authenticator, reporting outcomes, cache lookups and argon2
    /// work to `observer` (`None`: to nobody).
    pub fn with_observer(mut self, observer: Option<Arc<dyn AuthObserver>>) -> Self {
        self.observer = observer;
        self
    }

    /// The same authenticator, limiting failed attempts with `throttle`
    /// (`None`: no limit).
    pub fn with_throttle(mut self, throttle: Option<Throttle>) -> Self {
        self.throttle = throttle;
        self
    }

    /// The same authenticator, bounding the JWTs one static token obtains
    /// by [`Authenticator::exchange`] with `quota` (`None`: no bound).
    pub fn with_issue_quota(mut self, quota: Option<IssueQuota>) -> Self {
        self.quota = quota;
        self
    }

    /// The same authenticator, recording every JWT
    /// [`Authenticator::exchange`] issues in `trail` (`None`: no record).
    pub fn with_audit_trail(mut self, trail: Option<AuditTrail>) -> Self {
        self.trail = trail;
        self
    }

    /// The same authenticator, accepting imported tokens (CONTRACT §2),
    /// found by their digest under `key` (`None`: only issued tokens).
    pub fn with_lookup_key(mut self, key: Option<LookupKey>) -> Self {
        self.lookup_key = key;
        self
    }

    /// The same authenticator, noting each static token's successful use in
    /// `last_use` (`None`: nowhere), for the server to write in batches.
    pub fn with_last_use(mut self, last_use: Option<Arc<LastUse>>) -> Self {
        self.last_use = last_use;
        self
    }

    /// Reports an authentication outcome, if anyone observes.
    #[inline]
    fn count(&self, scheme: Scheme, reason: AuthReason) {
        if let Some(observer) = &self.observer {
            observer.outcome(scheme, reason);
        }
    }

    /// What to answer for a refusal from `client` (and against `token`): a
    /// refused credential counts as a failure in the throttle and may turn
    /// into 429; any other error is returned as it is. Every refusal is
    /// counted here, under its reason (or `throttled`).
    fn deny(
        &self,
        scheme: Scheme,
        client: Option<IpAddr>,
        token: Option<&TokenId>,
        denial: Denial,
    ) -> AuthError {
        let Denial { error, reason } = denial;
        let error = match (&self.throttle, error) {
            (Some(throttle), AuthError::InvalidToken | AuthError::TokenExpired) => throttle
                .record_failure(client, token)
                .map_or_else(AuthError::from, |()| error),
            _ => error,
        };
        let reason = match error {
            AuthError::Throttled(_) => AuthReason::Throttled,
            _ => reason,
        };
        self.count(scheme, reason);
        error
    }

    /// The live state.
    pub fn live(&self) -> &LiveState {
        &self.live
    }

    /// The current time by this authenticator's clock.
    pub fn now(&self) -> UnixTime {
        self.clock.now()
    }

    /// Authenticates a request from its `Authorization` header's value
    /// (`None`: no header), sent by `client` (its address, if known).
    pub async fn authenticate(
        &self,
        header: Option<&[u8]>,
        client: Option<IpAddr>,
    ) -> Result<Principal, AuthError> {
        let credentials = Credentials::parse(header)
            .map_err(|e| self.deny(e.scheme, client, None, AuthError::from(e).into()))?;
        match credentials {
            None => Err(AuthError::NotAuthenticated),
            Some(Credentials::Bearer(jwt)) => {
                let claims = self
                    .check_jwt(jwt)
                    .map_err(|e| self.deny(Scheme::Jwt, client, None, e))?;
                self.count(Scheme::Jwt, AuthReason::Ok);
                Ok(Principal {
                    user_id: claims.user_id,
                    merchant_id: claims.merchant_id,
                    proof: Proof::Jwt(claims),
                })
            }
            Some(Credentials::Token(text)) => {
                let known = self.verify_static(text, client).await?;
                Ok(Principal {
                    user_id: known.user_id,
                    merchant_id: known.merchant_id,
                    proof: Proof::StaticToken(known.token_id),
                })
            }
        }
    }
}
