//! JWT revocation and key rotation as the server sees them: through the
//! `ObservedStore`, effective at once in the `Authenticator`, with no store
//! read per request; and old keys dropped once their tokens have expired.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;
use std::time::Duration;

use stamps_auth::{AuthError, Authenticator, LiveState, ObservedStore, StaticTokenCache};
use stamps_core::{Claims, ExpiryRules, JwtCodec, KeySet, ManualClock, SigningKey, TokenType};
use stamps_store::{AccountKind, JwtRevocationTarget, SecretHasher, Store};
use stamps_store_sled::SledStore;

const LIFETIME: u64 = 100;
const LEEWAY: u64 = 10;

struct Fixture {
    _dir: tempfile::TempDir,
    clock: Arc<ManualClock>,
    store: Arc<dyn Store>,
    configured: SigningKey,
}

impl Fixture {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let clock = Arc::new(ManualClock::new(10_000));
        let sled = SledStore::open_with(dir.path(), SecretHasher::owasp(), clock.clone()).unwrap();
        sled.add_account(AccountKind::Merchant, "My Merchant", Some(1))
            .unwrap();
        sled.add_account(AccountKind::User, "u", Some(5870))
            .unwrap();
        Self {
            _dir: dir,
            clock,
            store: Arc::new(sled),
            configured: SigningKey::new(vec![7; 32]).unwrap(),
        }
    }

    fn rules() -> ExpiryRules {
        ExpiryRules::new(Duration::from_secs(LIFETIME), Duration::from_secs(LEEWAY)).unwrap()
    }

    /// A server's view: live state loaded from the store, and the observed
    /// store changes go through.
    fn server(&self) -> (Authenticator, ObservedStore) {
        let live = Arc::new(
            LiveState::load(
                self.store.as_ref(),
                StaticTokenCache::new(10, Duration::from_secs(60)),
            )
            .unwrap(),
        );
        let codec = JwtCodec::new(KeySet::new(self.configured.clone()), Self::rules());
        let observed = ObservedStore::new(self.store.clone(), live.clone());
        let auth = Authenticator::new(codec, self.clock.clone(), live, None, 1);
        (auth, observed)
    }

    /// A token signed with the configured key, issued now.
    fn signed_with_configured_key(&self) -> String {
        let now = self.clock.now();
        JwtCodec::new(KeySet::new(self.configured.clone()), Self::rules()).sign(&Claims {
            token_type: TokenType::Access,
            exp: now + LIFETIME,
            iat: now,
            jti: stamps_core::Jti::random(),
            user_id: 5870,
            merchant_id: 1,
        })
    }
}

use stamps_core::Clock as _;

#[test]
fn a_revoked_jti_is_refused_at_once_and_others_are_not() {
    let fx = Fixture::new();
    let (auth, observed) = fx.server();
    let revoked = auth.codec().mint(5870, 1, fx.clock.now());
    let kept = auth.codec().mint(5870, 1, fx.clock.now());
    assert!(auth.verify_jwt(&revoked.token).is_ok());

    observed
        .revoke_jwts(JwtRevocationTarget::Jti {
            jti: revoked.claims.jti,
        })
        .unwrap();
    assert!(matches!(
        auth.verify_jwt(&revoked.token),
        Err(AuthError::InvalidToken)
    ));
    assert!(auth.verify_jwt(&kept.token).is_ok());

    // A restarted server loads the revocation from the store.
    let (restarted, _) = fx.server();
    assert!(restarted.verify_jwt(&revoked.token).is_err());
    assert!(restarted.verify_jwt(&kept.token).is_ok());
}

#[test]
fn revoke_all_refuses_tokens_issued_until_then_and_not_later_ones() {
    for target in [
        JwtRevocationTarget::User { id: 5870 },
        JwtRevocationTarget::Merchant { id: 1 },
    ] {
        let fx = Fixture::new();
        let (auth, observed) = fx.server();
        let before = auth.codec().mint(5870, 1, fx.clock.now());
        observed.revoke_jwts(target).unwrap();
        assert!(auth.verify_jwt(&before.token).is_err(), "{target:?}");
        // The same second is covered; the server mints later ones from the
        // next second on.
        assert_eq!(auth.live().jwt_cutoff(5870, 1), Some(fx.clock.now()));
        fx.clock.advance(1);
        let after = auth.codec().mint(5870, 1, fx.clock.now());
        assert!(auth.verify_jwt(&after.token).is_ok(), "{target:?}");
    }
}

#[test]
fn a_rotated_key_signs_at_once_and_the_old_one_verifies_until_its_tokens_expire() {
    let fx = Fixture::new();
    let (auth, observed) = fx.server();
    let old = auth.codec().mint(5870, 1, fx.clock.now());
    observed.rotate_signing_key().unwrap();

    let new = auth.codec().mint(5870, 1, fx.clock.now());
    // Same header bytes, different key.
    assert_eq!(new.token.split('.').next(), old.token.split('.').next());
    let configured_only = JwtCodec::new(KeySet::new(fx.configured.clone()), Fixture::rules());
    assert!(configured_only.verify(&new.token, fx.clock.now()).is_err());
    assert!(auth.verify_jwt(&new.token).is_ok());
    assert!(auth.verify_jwt(&old.token).is_ok());

    // The retired key verifies only what it signed by its retirement (plus
    // the leeway): a token forged with it later is refused at once, while
    // the ones it signed before keep working until they expire.
    fx.clock.advance(LEEWAY);
    let forged = fx.signed_with_configured_key();
    assert!(auth.verify_jwt(&forged).is_ok());
    fx.clock.advance(1);
    let forged = fx.signed_with_configured_key();
    assert!(matches!(
        auth.verify_jwt(&forged),
        Err(AuthError::InvalidToken)
    ));
    assert!(auth.verify_jwt(&old.token).is_ok());
    fx.clock.advance(LIFETIME);
    assert!(auth.verify_jwt(&old.token).is_err());
    let fresh = auth.codec().mint(5870, 1, fx.clock.now());
    assert!(auth.verify_jwt(&fresh.token).is_ok());

    // After a restart the rotated key still signs.
    let (restarted, _) = fx.server();
    assert!(restarted.verify_jwt(&fresh.token).is_ok());
    let again = restarted.codec().mint(5870, 1, fx.clock.now());
    assert!(
        configured_only
            .verify(&again.token, fx.clock.now())
            .is_err()
    );
    assert!(auth.verify_jwt(&again.token).is_ok());
}

#[test]
fn pruning_through_the_observed_store_forgets_expired_revocations() {
    let fx = Fixture::new();
    let (auth, observed) = fx.server();
    let token = auth.codec().mint(5870, 1, fx.clock.now());
    observed
        .revoke_jwts(JwtRevocationTarget::Jti {
            jti: token.claims.jti,
        })
        .unwrap();
    fx.clock.advance(LIFETIME + LEEWAY + 1);
    let horizon = fx.clock.now() - LIFETIME - LEEWAY;
    assert!(auth.live().jwt_revoked(&token.claims));
    assert_eq!(observed.prune(horizon).unwrap().revocations, 1);
    assert!(fx.store.jwt_revocations().unwrap().is_empty());
    // Forgotten in memory too.
    assert!(!auth.live().jwt_revoked(&token.claims));
    // The token is refused all the same: it has expired.
    assert!(matches!(
        auth.verify_jwt(&token.token),
        Err(AuthError::TokenExpired)
    ));
}
