//! JWTs: verifying them (in memory), the signing keys in force, and minting
//! one this server accepts at once.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use stamps_core::{Claims, JwtCodec, Minted, UnixTime, VerifyError, scheduled_key_set};

use super::{Authenticator, Denial};
use crate::credentials::Credentials;
use crate::error::AuthError;
use crate::live::{JwtRefusal, LiveState};
use crate::outcome::{AuthReason, Scheme};

impl Authenticator {
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
                let next_second = UNIX_EPOCH + Duration::from_secs(cutoff.saturating_add(1));
                if let Ok(wait) = next_second.duration_since(SystemTime::now()) {
                    tokio::time::sleep(wait.min(Duration::from_secs(1))).await;
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
    /// `InvalidToken`.
    pub async fn mint(&self, user_id: u64, merchant_id: u64) -> Result<Minted, AuthError> {
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
        Err(AuthError::InvalidToken)
    }

    /// Verifies a JWT: signature, claims, expiry, then the user and merchant
    /// must exist and be active, and no revocation may cover it. Pure
    /// memory; counted nowhere (see [`Authenticator::authenticate`]).
    pub fn verify_jwt(&self, token: &str) -> Result<Claims, AuthError> {
        self.check_jwt(token).map_err(|denial| denial.error)
    }

    pub(super) fn check_jwt(&self, token: &str) -> Result<Claims, Denial> {
        let now = self.clock.now();
        let claims = self
            .scheduled(now)
            .codec
            .verify(token, now)
            .map_err(denial_of)?;
        self.check_grants(claims)
    }

    /// verify-token's one call: the `Authorization` header's value must
    /// carry a JWT (anything else is `NotAuthenticated`, and not counted:
    /// not an attempt of this scheme), which is verified like
    /// [`Authenticator::verify_jwt`] and answered with its claims and its
    /// payload's JSON exactly as it is in the token. `client` is asked for
    /// the sender's address only when the JWT is refused (the throttle
    /// counts it).
    pub fn verify_bearer(
        &self,
        header: Option<&[u8]>,
        client: impl FnOnce() -> Option<IpAddr>,
    ) -> Result<(Claims, Vec<u8>), AuthError> {
        let verified = match Credentials::parse(header) {
            Ok(Some(Credentials::Bearer(jwt))) => self
                .check_jwt_with_payload(jwt)
                .map_err(|denial| (Scheme::Jwt, denial)),
            Ok(_) => return Err(AuthError::NotAuthenticated),
            Err(malformed) => Err((malformed.scheme, AuthError::from(malformed).into())),
        };
        match verified {
            Ok(verified) => {
                self.count(Scheme::Jwt, AuthReason::Ok);
                Ok(verified)
            }
            Err((scheme, denial)) => Err(self.deny(scheme, client(), None, denial)),
        }
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
                Err(Denial::new(AuthError::InvalidToken, AuthReason::Disabled))
            }
            Some(JwtRefusal::Revoked) => {
                Err(Denial::new(AuthError::InvalidToken, AuthReason::Revoked))
            }
        }
    }
}

/// A codec for the key set in force, and until when it is.
#[derive(Debug)]
pub(super) struct ScheduledCodec {
    codec: Arc<JwtCodec>,
    keys_version: u64,
    /// When a key it holds expires, if ever.
    changes_at: Option<UnixTime>,
}

impl ScheduledCodec {
    pub(super) fn build(base: &JwtCodec, live: &LiveState, now: UnixTime) -> Self {
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
        VerifyError::Expired => AuthError::TokenExpired.into(),
        VerifyError::Invalid(_) => AuthError::InvalidToken.into(),
    }
}
