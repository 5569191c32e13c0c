//! Authentication, done once per request: the [`Authenticator`] and the
//! extractors that hand handlers a proven [`Principal`].
//!
//! * `Authorization: Bearer <JWT>`: verified in memory by stamps-core (no
//!   store, no disk), then the user and merchant must be active.
//! * `Authorization: Token <static token>`: parsed (a bad checksum stops
//!   here), then accepted from the verification cache, or else looked up by
//!   id and, only if the id exists, verified with argon2id on the blocking
//!   pool under a bound on concurrent hashes.
//!
//! The scheme word is matched case-insensitively (RFC 7235).
//!
//! Denial credentials count against the client's address and (for static
//! tokens) the token id in the [`Throttle`], if one is set: over a limit,
//! the answer is 429, and a static token that is not yet proven is refused
//! before the store is asked. Valid JWTs and proven static tokens never
//! meet the throttle. An unknown token id is refused after about as long as
//! an argon2 verification takes ([`stamps_auth::HashTimer`]), without the work.

use std::future::{Future, Ready, ready};
use std::hash::{BuildHasher, RandomState};
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use actix_web::dev::Payload;
use actix_web::http::header;
use actix_web::{FromRequest, HttpRequest, web};
use arc_swap::ArcSwap;
use stamps_core::{
    Claims, Clock, JwtCodec, Minted, StaticToken, TokenId, UnixTime, VerifyError, scheduled_key_set,
};
use stamps_store::{Refusal, Store, TokenCheck};
use tokio::sync::Semaphore;

use crate::client_info::ClientInfo;
use crate::credentials::Credentials;
use crate::error::ApiError;
use crate::metrics::Metrics;
use crate::outcome::{AuthReason, Scheme};
use stamps_auth::{CachedToken, HashTimer, JwtRefusal, LiveState, RefusedToken, Throttle};

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
/// (for static tokens not yet cached) the store.
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
    hash_timer: HashTimer,
    metrics: Option<Arc<Metrics>>,
}

/// A denied credential: the error the client sees, and the reason the
/// metrics count it under.
#[derive(Debug)]
struct Denial {
    error: ApiError,
    reason: AuthReason,
}

impl Denial {
    fn new(error: ApiError, reason: AuthReason) -> Self {
        Self { error, reason }
    }
}

impl From<ApiError> for Denial {
    /// The reason an error says by itself: store failures are
    /// `unavailable`, expiry `expired`, anything else `invalid`.
    fn from(error: ApiError) -> Self {
        let reason = match &error {
            ApiError::TokenExpired => AuthReason::Expired,
            ApiError::Throttled { .. } => AuthReason::Throttled,
            ApiError::StoreUnavailable | ApiError::Internal => AuthReason::Unavailable,
            _ => AuthReason::Invalid,
        };
        Self { error, reason }
    }
}

impl From<stamps_store::StoreError> for Denial {
    fn from(error: stamps_store::StoreError) -> Self {
        Denial::from(ApiError::from(error))
    }
}

impl std::fmt::Debug for Authenticator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Authenticator")
            .field("codec", &self.base)
            .field("argon2_permits", &self.argon2_permits.available_permits())
            .field("throttle", &self.throttle)
            .finish_non_exhaustive()
    }
}

impl Authenticator {
    /// An authenticator. `store` is `None` for a service that accepts JWTs
    /// only; `argon2_concurrency` bounds simultaneous argon2id hashes (at
    /// least 1).
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
            hash_timer: HashTimer::default(),
            metrics: None,
        }
    }

    /// The same authenticator, counting outcomes, cache lookups and argon2
    /// work in `metrics` (`None`: counting nothing).
    pub fn with_metrics(mut self, metrics: Option<Arc<Metrics>>) -> Self {
        self.metrics = metrics;
        self
    }

    /// Counts an authentication outcome, if metrics are on.
    #[inline]
    fn count(&self, scheme: Scheme, reason: AuthReason) {
        if let Some(metrics) = &self.metrics {
            metrics.record_auth(scheme, reason);
        }
    }

    /// The same authenticator, limiting failed attempts with `throttle`
    /// (`None`: no limit).
    pub fn with_throttle(mut self, throttle: Option<Throttle>) -> Self {
        self.throttle = throttle;
        self
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
    ) -> ApiError {
        let Denial { error, reason } = denial;
        let error = match (&self.throttle, &error) {
            (Some(throttle), ApiError::InvalidToken | ApiError::TokenExpired) => throttle
                .record_failure(client, token)
                .map_or_else(ApiError::from, |()| error),
            _ => error,
        };
        let reason = match error {
            ApiError::Throttled { .. } => AuthReason::Throttled,
            _ => reason,
        };
        self.count(scheme, reason);
        error
    }

    /// The codec in force now: the newest rotated key signs; the configured
    /// key and older ones verify until their tokens have expired.
    pub fn codec(&self) -> Arc<JwtCodec> {
        Arc::clone(&self.scheduled(self.clock.now()).codec)
    }

    /// The scheduled codec at `now`, rebuilt first if the rotated keys
    /// changed or a retired key's time is up. A guard, not a clone: the hot
    /// path takes no reference count.
    fn scheduled(&self, now: UnixTime) -> arc_swap::Guard<Arc<ScheduledCodec>> {
        let current = self.scheduled.load();
        if current.is_fresh(&self.live, now) {
            return current;
        }
        self.scheduled
            .store(Arc::new(ScheduledCodec::build(&self.base, &self.live, now)));
        self.scheduled.load()
    }

    /// The `iat` to mint a JWT for this user and merchant with: now, or the
    /// next second when a `jwt revoke-all` made in this very second would
    /// refuse a token issued in it (waits for at most one second).
    pub async fn issue_time(&self, user_id: u64, merchant_id: u64) -> UnixTime {
        let now = self.clock.now();
        match self.live.jwt_cutoff(user_id, merchant_id) {
            Some(cutoff) if cutoff >= now => {
                let next_second = std::time::UNIX_EPOCH
                    + std::time::Duration::from_secs(cutoff.saturating_add(1));
                if let Ok(wait) = next_second.duration_since(std::time::SystemTime::now()) {
                    actix_web::rt::time::sleep(wait.min(std::time::Duration::from_secs(1))).await;
                }
                self.clock.now()
            }
            _ => now,
        }
    }

    /// Mints a JWT for this user and merchant that this server accepts at
    /// once: issued after any `revoke-all` cut-off it knows (waiting out
    /// that second, [`Authenticator::issue_time`]), and checked before it
    /// is handed out, so that a revocation or a disabled account that
    /// arrived meanwhile (from another replica, say) never yields a token
    /// the service itself would refuse (CONTRACT §1.2). Such a token is
    /// minted again past the new cut-off; a disabled user or merchant is
    /// `invalid_token`.
    pub async fn mint(&self, user_id: u64, merchant_id: u64) -> Result<Minted, ApiError> {
        // Twice at most: the second mint is past every cut-off known then.
        for _ in 0..2 {
            let iat = self.issue_time(user_id, merchant_id).await;
            let minted = self.codec().mint(user_id, merchant_id, iat);
            match self.check_grants(minted.claims.clone()) {
                Ok(_) => return Ok(minted),
                Err(Denial {
                    reason: AuthReason::Revoked,
                    ..
                }) => continue,
                Err(denial) => return Err(denial.error),
            }
        }
        Err(ApiError::InvalidToken)
    }

    /// The live state.
    pub fn live(&self) -> &LiveState {
        &self.live
    }

    /// The current time by this authenticator's clock.
    pub fn now(&self) -> UnixTime {
        self.clock.now()
    }

    /// Verifies a JWT: signature, claims, expiry, then the user and merchant
    /// must exist and be active. Pure memory.
    pub fn verify_jwt(&self, token: &str) -> Result<Claims, ApiError> {
        self.check_jwt(token).map_err(|denial| denial.error)
    }

    fn check_jwt(&self, token: &str) -> Result<Claims, Denial> {
        let now = self.clock.now();
        let claims = self
            .scheduled(now)
            .codec
            .verify(token, now)
            .map_err(denial_of)?;
        self.check_grants(claims)
    }

    /// Like [`Authenticator::verify_jwt`], with the payload's JSON bytes as
    /// they are in the token.
    pub fn verify_jwt_with_payload(&self, token: &str) -> Result<(Claims, Vec<u8>), ApiError> {
        self.check_jwt_with_payload(token)
            .map_err(|denial| denial.error)
    }

    fn check_jwt_with_payload(&self, token: &str) -> Result<(Claims, Vec<u8>), Denial> {
        let now = self.clock.now();
        let (claims, payload) = self
            .scheduled(now)
            .codec
            .verify_with_payload(token, now)
            .map_err(denial_of)?;
        Ok((self.check_grants(claims)?, payload))
    }

    /// The user and merchant of verified claims must exist and be active,
    /// and no JWT revocation may cover the token.
    fn check_grants(&self, claims: Claims) -> Result<Claims, Denial> {
        match self.live.jwt_refusal(&claims) {
            None => Ok(claims),
            Some(JwtRefusal::Disabled) => {
                Err(Denial::new(ApiError::InvalidToken, AuthReason::Disabled))
            }
            Some(JwtRefusal::Revoked) => {
                Err(Denial::new(ApiError::InvalidToken, AuthReason::Revoked))
            }
        }
    }

    /// Verifies a static token presented by `client` (its address, if
    /// known) and returns whom it authenticates, whichever merchant is asked
    /// for (the caller compares).
    pub async fn verify_static(
        &self,
        text: &str,
        client: Option<IpAddr>,
    ) -> Result<CachedToken, ApiError> {
        // The format and checksum first (garbage stops here), without
        // copying the secret; the whole token only on a cache miss.
        let id = StaticToken::parse_id(text)
            .map_err(|_| self.deny(Scheme::Static, client, None, ApiError::InvalidToken.into()))?;
        let cached = self.live.cache().get(text);
        if let Some(metrics) = &self.metrics {
            metrics.record_cache(cached.is_some());
        }
        let known = match cached {
            Some(hit) => hit,
            None => {
                // Not proven: an address or id over its limit stops here,
                // before the store and argon2.
                self.check_throttle(client, &id)?;
                self.refuse_as_before(text, client, &id).await?;
                let token = StaticToken::parse(text).map_err(|_| {
                    self.count(Scheme::Static, AuthReason::Invalid);
                    ApiError::InvalidToken
                })?;
                // One verification in flight per token id. The others wait
                // here (no CPU), then find the same token proven (cached),
                // or the failure counted: concurrent guesses cannot outrun
                // the limit, each one waits for the count of the one before.
                let stripe = self.flight_hasher.hash_one(id) as usize % FLIGHT_STRIPES;
                let _flight = self.flights[stripe].lock().await;
                match self.live.cache().get(text) {
                    Some(hit) => hit,
                    None => {
                        self.check_throttle(client, &id)?;
                        // A store that hangs (a stopped database host) is
                        // given up on: 503, while its call finishes, or not,
                        // on the blocking pool.
                        let verified = tokio::time::timeout(
                            STORE_DEADLINE,
                            self.verify_with_store(text, token),
                        )
                        .await
                        .unwrap_or_else(|_| {
                            Err(Denial::new(
                                ApiError::StoreUnavailable,
                                AuthReason::Unavailable,
                            ))
                        });
                        let known = verified
                            .map_err(|e| self.deny(Scheme::Static, client, Some(&id), e))?;
                        if let Some(throttle) = &self.throttle {
                            throttle.proven(client, &id);
                        }
                        known
                    }
                }
            }
        };
        if !self.live.grants(known.user_id, known.merchant_id) {
            let denial = Denial::new(ApiError::InvalidToken, AuthReason::Disabled);
            return Err(self.deny(Scheme::Static, client, Some(&id), denial));
        }
        self.count(Scheme::Static, AuthReason::Ok);
        Ok(known)
    }

    /// Refuses a token proven before and refused then (revoked, or its user
    /// or merchant disabled, still), without argon2: after a hash's time,
    /// on a timer, and counted as a failure like any refusal.
    async fn refuse_as_before(
        &self,
        text: &str,
        client: Option<IpAddr>,
        id: &TokenId,
    ) -> Result<(), ApiError> {
        let Some(before) = self.live.cache().get_refused(text) else {
            return Ok(());
        };
        let reason = if before.revoked {
            AuthReason::Revoked
        } else if !self
            .live
            .grants(before.token.user_id, before.token.merchant_id)
        {
            AuthReason::Disabled
        } else {
            // Enabled again: verify it anew.
            self.live.cache().forget_refused(text);
            return Ok(());
        };
        tokio::time::sleep(self.hash_timer.estimate()).await;
        let denial = Denial::new(ApiError::InvalidToken, reason);
        Err(self.deny(Scheme::Static, client, Some(id), denial))
    }

    /// 429 (counted as `throttled`) when the client's address, or the token
    /// id for an address that has not proved it lately, is over its limit.
    fn check_throttle(&self, client: Option<IpAddr>, id: &TokenId) -> Result<(), ApiError> {
        match &self.throttle {
            Some(throttle) => throttle.check(client, Some(id)).map_err(|throttled| {
                self.count(Scheme::Static, AuthReason::Throttled);
                ApiError::from(throttled)
            }),
            None => Ok(()),
        }
    }

    /// The slow path: one keyed lookup, and argon2id only for a known id.
    /// Known or not, the request waits its turn for a permit (at most
    /// [`QUEUE_PER_PERMIT`] waiting per permit, else 429): an unknown id
    /// then gives its permit back and waits as long as a hash takes, on a
    /// timer, so that both answer alike under load too.
    async fn verify_with_store(
        &self,
        text: &str,
        token: StaticToken,
    ) -> Result<CachedToken, Denial> {
        let store = self.store.clone().ok_or(ApiError::InvalidToken)?;
        let generation = self.live.generation();

        let id = *token.id();
        let lookup = Arc::clone(&store);
        let found = web::block(move || lookup.token(&id))
            .await
            .map_err(|_| ApiError::Internal)??
            .map(|record| CachedToken {
                token_id: record.id,
                user_id: record.user_id,
                merchant_id: record.merchant_id,
            });

        // Waiting for a permit is async: a queue of wrong guesses never
        // occupies a worker, and JWT requests keep being served. The queue
        // is bounded: past it, a first use would wait longer than a retry.
        let queued = QueueSlot::take(&self.queued);
        if queued.position >= self.max_queued {
            return Err(Denial::new(
                ApiError::Throttled { retry_after: 1 },
                AuthReason::Throttled,
            ));
        }
        let waiting = self
            .metrics
            .as_ref()
            .map(|m| (m.argon2_waiting(), Instant::now()));
        let permit = Arc::clone(&self.argon2_permits)
            .acquire_owned()
            .await
            .map_err(|_| ApiError::Internal)?;
        drop(queued);
        if let (Some(metrics), Some((_, since))) = (&self.metrics, waiting) {
            metrics.record_argon2_wait(since.elapsed());
        }
        let Some(found) = found else {
            // As late as a wrong secret would be, on a timer: no CPU.
            drop(permit);
            tokio::time::sleep(self.hash_timer.estimate()).await;
            return Err(ApiError::InvalidToken.into());
        };
        // Concurrent first uses of one token queue here behind the first;
        // once it has verified and cached the token, the rest need no hash.
        if let Some(hit) = self.live.cache().get(text) {
            return Ok(hit);
        }
        // The permit travels with the hash: released when the hash is done,
        // even if this request is dropped meanwhile; so does the gauge.
        let hashing = self.metrics.as_ref().map(|m| m.argon2_hashing());
        let (check, took) = web::block(move || {
            let _permit = permit;
            let _hashing = hashing;
            let started = Instant::now();
            let check = store.check_token(&token);
            (check, started.elapsed())
        })
        .await
        .map_err(|_| ApiError::Internal)?;
        self.hash_timer.record(took);
        if let Some(metrics) = &self.metrics {
            metrics.record_argon2_hash(took);
        }
        let record = match check? {
            TokenCheck::Live(record) => record,
            TokenCheck::Refused(why) => {
                let reason = match why {
                    Refusal::Revoked => AuthReason::Revoked,
                    Refusal::UserDisabled | Refusal::MerchantDisabled => AuthReason::Disabled,
                    Refusal::Unknown | Refusal::WrongSecret => AuthReason::Invalid,
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
                return Err(Denial::new(ApiError::InvalidToken, reason));
            }
        };
        let entry = CachedToken {
            token_id: record.id,
            user_id: record.user_id,
            merchant_id: record.merchant_id,
        };
        self.live.cache_if_unchanged(generation, text, entry);
        Ok(entry)
    }

    /// Authenticates a request from its `Authorization` header, sent by
    /// `client` (its address, if known).
    pub async fn authenticate(
        &self,
        header: Option<&header::HeaderValue>,
        client: Option<IpAddr>,
    ) -> Result<Principal, ApiError> {
        let credentials = Credentials::parse(header)
            .map_err(|e| self.deny(e.scheme, client, None, ApiError::from(e).into()))?;
        match credentials {
            None => Err(ApiError::NotAuthenticated),
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

/// The longest a static token's verification may take with the store
/// (lookup, the argon2 queue, the hash): past it, 503 `store_unavailable`.
/// The queue's bound keeps a healthy verification far below it.
pub const STORE_DEADLINE: std::time::Duration = std::time::Duration::from_secs(5);

/// Stripes of the single-flight locks: ids that share one wait for each
/// other, which costs order, not work.
const FLIGHT_STRIPES: usize = 256;

/// Verifications that may wait for an argon2 permit, per permit: about
/// half a second of hashing each; beyond, 429 with `Retry-After: 1`.
pub const QUEUE_PER_PERMIT: usize = 16;

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

/// A codec for the key set in force, and until when it is.
#[derive(Debug)]
struct ScheduledCodec {
    codec: Arc<JwtCodec>,
    keys_version: u64,
    /// When a key it holds expires, if ever.
    changes_at: Option<UnixTime>,
}

impl ScheduledCodec {
    fn build(base: &JwtCodec, live: &LiveState, now: UnixTime) -> Self {
        // Read the version first: a rotation racing with this build bumps
        // it again, and the next call rebuilds.
        let keys_version = live.keys_version();
        let (keys, changes_at) = scheduled_key_set(
            base.keys().current().clone(),
            live.rotated_keys(),
            base.rules(),
            now,
        );
        Self {
            codec: Arc::new(JwtCodec::new(keys, *base.rules())),
            keys_version,
            changes_at,
        }
    }

    fn is_fresh(&self, live: &LiveState, now: UnixTime) -> bool {
        self.keys_version == live.keys_version() && self.changes_at.is_none_or(|t| now < t)
    }
}

fn denial_of(e: VerifyError) -> Denial {
    match e {
        VerifyError::Expired => ApiError::TokenExpired.into(),
        VerifyError::Invalid(_) => ApiError::InvalidToken.into(),
    }
}

fn authenticator(req: &HttpRequest) -> Result<web::Data<Authenticator>, ApiError> {
    req.app_data::<web::Data<Authenticator>>()
        .cloned()
        .ok_or_else(|| {
            tracing::error!("no Authenticator registered with app_data");
            ApiError::Internal
        })
}

/// Extracts the [`Principal`] of a request authenticated by either scheme;
/// rejects it with the right 401 otherwise.
///
/// Register a `web::Data<Authenticator>` on the app, then take
/// `Authenticated` as a handler argument:
///
/// ```no_run
/// use actix_web::{App, HttpResponse, web};
/// use stamps_http::{Authenticated, Authenticator};
///
/// async fn whoami(who: Authenticated) -> HttpResponse {
///     HttpResponse::Ok().body(format!("user {} at merchant {}", who.0.user_id, who.0.merchant_id))
/// }
///
/// fn app(auth: web::Data<Authenticator>) -> App<impl actix_web::dev::ServiceFactory<
///     actix_web::dev::ServiceRequest, Config = (), Response = actix_web::dev::ServiceResponse,
///     Error = actix_web::Error, InitError = ()>> {
///     App::new().app_data(auth).route("/whoami", web::get().to(whoami))
/// }
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Authenticated(pub Principal);

impl FromRequest for Authenticated {
    type Error = ApiError;
    type Future = Pin<Box<dyn Future<Output = Result<Self, ApiError>>>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let auth = authenticator(req);
        let header = req.headers().get(header::AUTHORIZATION).cloned();
        let client = ClientInfo::of(req).ip;
        Box::pin(async move {
            let principal = auth?.authenticate(header.as_ref(), Some(client)).await?;
            Ok(Authenticated(principal))
        })
    }
}

/// Extracts the verified claims of a request authenticated with
/// `Authorization: Bearer <JWT>` (verify-token): any other credential is
/// `not_authenticated`. Also keeps the payload's JSON exactly as it is in
/// the token ([`BearerClaims::payload_json`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BearerClaims {
    /// The verified claims.
    pub claims: Claims,
    payload: Vec<u8>,
}

impl BearerClaims {
    /// The token's payload, byte for byte: the same keys and values as the
    /// claims, in the token's own order and spacing.
    pub fn payload_json(&self) -> &[u8] {
        &self.payload
    }

    /// Takes the payload out.
    pub fn into_payload_json(self) -> Vec<u8> {
        self.payload
    }
}

impl FromRequest for BearerClaims {
    type Error = ApiError;
    type Future = Ready<Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let verify = |auth: &Authenticator| {
            let header = req.headers().get(header::AUTHORIZATION);
            let credentials = Credentials::parse(header)
                .map_err(|e| (e.scheme, Denial::from(ApiError::from(e))))?;
            match credentials {
                Some(Credentials::Bearer(jwt)) => {
                    let (claims, payload) = auth
                        .check_jwt_with_payload(jwt)
                        .map_err(|e| (Scheme::Jwt, e))?;
                    auth.count(Scheme::Jwt, AuthReason::Ok);
                    Ok(BearerClaims { claims, payload })
                }
                // Not an authentication attempt of this endpoint's scheme.
                _ => Err((
                    Scheme::Jwt,
                    Denial::new(ApiError::NotAuthenticated, AuthReason::Invalid),
                )),
            }
        };
        ready(authenticator(req).and_then(|auth| {
            // The client's address is worked out only for a refusal.
            verify(&auth).map_err(|(scheme, denial)| match denial.error {
                ApiError::NotAuthenticated => ApiError::NotAuthenticated,
                _ => auth.deny(scheme, Some(ClientInfo::of(req).ip), None, denial),
            })
        }))
    }
}
