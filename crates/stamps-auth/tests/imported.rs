//! Imported tokens as the server decides on them: accepted like issued
//! ones (cache, exchange, revocation, expiry), found by one keyed lookup;
//! while none is stored, another text is refused with no lookup at all;
//! an unknown text costs no argon2 and counts as a refused credential.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use stamps_auth::{
    AccessRequest, AuthError, AuthObserver, AuthReason, Authenticator, LiveState, ObservedStore,
    Scheme, StaticTokenCache, Throttle,
};
use stamps_core::{ExpiryRules, JwtCodec, KeySet, LookupKey, ManualClock, SigningKey};
use stamps_store::{AccountKind, MemoryStore, SecretHasher, Store, TokenImport};

const NOW: u64 = 1_800_000_000;
const SEED_TOKEN: &str = "23095sgtr95402mkdls954002";
const DRF_KEY: &str = "9944b09199c62bcf9418ad846dd0e4bbdfc6ee4b";

/// What the Authenticator reported.
#[derive(Default)]
struct Seen {
    cache_lookups: AtomicU64,
    hashes: AtomicU64,
    refused: AtomicU64,
}

impl AuthObserver for Seen {
    fn outcome(&self, scheme: Scheme, reason: AuthReason) {
        assert_eq!(scheme, Scheme::Static);
        if reason != AuthReason::Ok {
            self.refused.fetch_add(1, Ordering::Relaxed);
        }
    }
    fn cache_lookup(&self, _hit: bool) {
        self.cache_lookups.fetch_add(1, Ordering::Relaxed);
    }
    fn argon2_hashed(&self, _took: Duration) {
        self.hashes.fetch_add(1, Ordering::Relaxed);
    }
}

struct Fixture {
    clock: Arc<ManualClock>,
    /// Changes made here reach the live state, as through the admin socket.
    store: Arc<ObservedStore>,
    key: LookupKey,
    auth: Authenticator,
    seen: Arc<Seen>,
}

fn fixture(throttle: Option<Throttle>) -> Fixture {
    let clock = Arc::new(ManualClock::new(NOW));
    let hasher = SecretHasher::with_params(8, 1, 1).unwrap();
    let inner = MemoryStore::with(hasher, clock.clone());
    inner
        .add_account(AccountKind::Merchant, "M", Some(1))
        .unwrap();
    inner
        .add_account(AccountKind::User, "U", Some(5870))
        .unwrap();
    let live = Arc::new(
        LiveState::load(
            &inner,
            StaticTokenCache::new(100, Duration::from_secs(3600)),
        )
        .unwrap(),
    );
    let store = Arc::new(ObservedStore::new(Arc::new(inner), live.clone()));
    let key = LookupKey::new(&[3; 32]).unwrap();
    let seen = Arc::new(Seen::default());
    let codec = JwtCodec::new(KeySet::new(SigningKey::random()), ExpiryRules::default());
    let auth = Authenticator::new(codec, clock.clone(), live, Some(store.clone()), 1)
        .with_lookup_key(Some(key.clone()))
        .with_throttle(throttle)
        .with_observer(Some(seen.clone()));
    Fixture {
        clock,
        store,
        key,
        auth,
        seen,
    }
}

fn import(fx: &Fixture, text: &str, expires_at: Option<u64>) -> stamps_core::TokenId {
    let import = TokenImport {
        text: text.into(),
        user_id: 5870,
        merchant_id: 1,
        label: None,
        expires_at,
    };
    fx.store.import_tokens(&[import], &fx.key).unwrap()[0].id
}

fn ip() -> Option<IpAddr> {
    Some(IpAddr::from([192, 0, 2, 1]))
}

#[tokio::test]
async fn while_none_is_imported_other_texts_cost_no_lookup() {
    let fx = fixture(None);
    for text in [SEED_TOKEN, DRF_KEY, "not-a-token-of-any-kind"] {
        assert_eq!(
            fx.auth.verify_static(text, ip()).await,
            Err(AuthError::InvalidToken)
        );
    }
    // Refused and counted, before the cache, the digest or the store.
    assert_eq!(fx.seen.cache_lookups.load(Ordering::Relaxed), 0);
    assert_eq!(fx.seen.refused.load(Ordering::Relaxed), 3);
}

#[tokio::test]
async fn an_imported_token_works_as_an_issued_one() {
    let fx = fixture(None);
    let id = import(&fx, SEED_TOKEN, Some(NOW + 100));
    // The seed's curl line, unchanged: get-access-token with its token.
    let request = AccessRequest {
        token: SEED_TOKEN,
        merchant_id: 1,
    };
    let minted = fx
        .auth
        .exchange(request, IpAddr::from([192, 0, 2, 1]))
        .await
        .unwrap();
    assert_eq!(
        (minted.claims.user_id, minted.claims.merchant_id),
        (5870, 1)
    );
    // Then from the cache: one hash in all.
    let header = format!("Token {SEED_TOKEN}");
    let principal = fx
        .auth
        .authenticate(Some(header.as_bytes()), ip())
        .await
        .unwrap();
    assert_eq!(principal.proof, stamps_auth::Proof::StaticToken(id));
    assert_eq!(fx.seen.hashes.load(Ordering::Relaxed), 1);
    let other_merchant = AccessRequest {
        token: SEED_TOKEN,
        merchant_id: 2,
    };
    assert_eq!(
        fx.auth
            .exchange(other_merchant, IpAddr::from([192, 0, 2, 1]))
            .await,
        Err(AuthError::MerchantForbidden)
    );

    // Expiry, at its instant, from the cache.
    fx.clock.set(NOW + 100);
    assert_eq!(
        fx.auth.verify_static(SEED_TOKEN, ip()).await,
        Err(AuthError::TokenExpired)
    );
    // Revocation, at once (the cache is evicted by the observed store).
    fx.clock.set(NOW);
    let drf = import(&fx, DRF_KEY, None);
    assert!(fx.auth.verify_static(DRF_KEY, ip()).await.is_ok());
    fx.store.revoke_token(&drf).unwrap();
    assert_eq!(
        fx.auth.verify_static(DRF_KEY, ip()).await,
        Err(AuthError::InvalidToken)
    );
}

#[tokio::test]
async fn an_unknown_text_costs_one_lookup_no_hash_and_counts_as_a_failure() {
    let limit = NonZeroU32::new(3).unwrap();
    let throttle = Throttle::new(limit, NonZeroU32::new(10).unwrap(), Duration::from_secs(60));
    let fx = fixture(throttle);
    import(&fx, SEED_TOKEN, None);
    for _ in 0..3 {
        assert_eq!(
            fx.auth
                .verify_static("23095sgtr95402mkdls954003", ip())
                .await,
            Err(AuthError::InvalidToken)
        );
    }
    assert_eq!(fx.seen.hashes.load(Ordering::Relaxed), 0);
    // Over the address's limit: 429, before any lookup.
    assert!(matches!(
        fx.auth
            .verify_static("23095sgtr95402mkdls954004", ip())
            .await,
        Err(AuthError::Throttled(_))
    ));
    // A text that cannot be imported is refused without a lookup.
    let lookups = fx.seen.cache_lookups.load(Ordering::Relaxed);
    let other = Some(IpAddr::from([192, 0, 2, 9]));
    assert_eq!(
        fx.auth
            .verify_static("has a space in it, so no", other)
            .await,
        Err(AuthError::InvalidToken)
    );
    assert_eq!(fx.seen.cache_lookups.load(Ordering::Relaxed), lookups);
}
