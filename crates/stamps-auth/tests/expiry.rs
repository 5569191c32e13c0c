//! Static token expiry as the server decides it: a token stops at its
//! instant, from the cache too and with no admin action; once its secret is
//! proven it is `TokenExpired` (a wrong secret stays `InvalidToken`, so
//! expiry tells a guesser nothing); get-access-token refuses it alike.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use stamps_auth::{AccessRequest, AuthError, Authenticator, LiveState, StaticTokenCache};
use stamps_core::{
    ExpiryRules, ExposeSecret, JwtCodec, KeySet, ManualClock, SigningKey, StaticToken,
};
use stamps_store::{AccountKind, MemoryStore, SecretHasher, Store};

const NOW: u64 = 1_800_000_000;

struct Fixture {
    clock: Arc<ManualClock>,
    store: Arc<dyn Store>,
    auth: Authenticator,
}

fn fixture() -> Fixture {
    let clock = Arc::new(ManualClock::new(NOW));
    let hasher = SecretHasher::with_params(8, 1, 1).unwrap();
    let store = MemoryStore::with(hasher, clock.clone());
    store
        .add_account(AccountKind::Merchant, "M", Some(1))
        .unwrap();
    store
        .add_account(AccountKind::User, "U", Some(5870))
        .unwrap();
    let store: Arc<dyn Store> = Arc::new(store);
    let live = Arc::new(
        LiveState::load(
            store.as_ref(),
            StaticTokenCache::new(100, Duration::from_secs(3600)),
        )
        .unwrap(),
    );
    let codec = JwtCodec::new(KeySet::new(SigningKey::random()), ExpiryRules::default());
    let auth = Authenticator::new(codec, clock.clone(), live, Some(store.clone()), 1);
    Fixture { clock, store, auth }
}

fn text(token: &StaticToken) -> String {
    token.to_secret_string().expose_secret().to_owned()
}

fn ip() -> Option<IpAddr> {
    Some(IpAddr::from([192, 0, 2, 1]))
}

#[tokio::test]
async fn a_cached_token_stops_at_its_instant() {
    let fx = fixture();
    let issued = fx
        .store
        .create_expiring_token(5870, 1, None, Some(NOW + 60))
        .unwrap();
    let token = text(&issued.token);
    // Proven, and cached.
    let known = fx.auth.verify_static(&token, ip()).await.unwrap();
    assert_eq!(known.expires_at, Some(NOW + 60));
    fx.clock.set(NOW + 59);
    assert!(fx.auth.verify_static(&token, ip()).await.is_ok());
    // Its instant: refused from the cache, no store change, no eviction.
    fx.clock.set(NOW + 60);
    assert_eq!(
        fx.auth.verify_static(&token, ip()).await,
        Err(AuthError::TokenExpired)
    );
    let header = format!("Token {token}");
    assert_eq!(
        fx.auth.authenticate(Some(header.as_bytes()), ip()).await,
        Err(AuthError::TokenExpired)
    );
    let request = AccessRequest {
        token: &token,
        merchant_id: 1,
    };
    assert_eq!(
        fx.auth
            .exchange(request, IpAddr::from([192, 0, 2, 1]))
            .await,
        Err(AuthError::TokenExpired)
    );
}

#[tokio::test]
async fn an_expired_token_is_token_expired_only_with_its_secret() {
    let fx = fixture();
    let issued = fx
        .store
        .create_expiring_token(5870, 1, None, Some(NOW + 5))
        .unwrap();
    fx.clock.set(NOW + 5);
    // First use after expiry, not cached: proven by argon2, then refused.
    let token = text(&issued.token);
    for _ in 0..3 {
        assert_eq!(
            fx.auth.verify_static(&token, ip()).await,
            Err(AuthError::TokenExpired)
        );
    }
    let guess = StaticToken::from_parts(*issued.token.id(), &"k".repeat(32)).unwrap();
    assert_eq!(
        fx.auth.verify_static(&text(&guess), ip()).await,
        Err(AuthError::InvalidToken)
    );
    // A token without an expiry works whenever.
    let forever = fx.store.create_token(5870, 1, None).unwrap();
    fx.clock.set(NOW + 100 * 365 * 86_400);
    assert!(
        fx.auth
            .verify_static(&text(&forever.token), ip())
            .await
            .is_ok()
    );
}
