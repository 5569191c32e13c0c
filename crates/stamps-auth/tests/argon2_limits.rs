//! The argon2 work a flood can cause, in process: concurrent guesses cannot
//! outrun the per-id limit (one verification in flight per id, the limit
//! checked again before each), the queue for argon2 is bounded, and the
//! holder of a token id under attack is not locked out from the address
//! that proved it.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use stamps_auth::{
    AuthError, AuthObserver, Authenticator, LiveState, StaticTokenCache, Throttle, Throttled,
};
use stamps_core::{
    ExpiryRules, ExposeSecret, JwtCodec, KeySet, SigningKey, StaticToken, SystemClock,
};
use stamps_store::{AccountKind, Store};
use stamps_store_sled::SledStore;

struct Fixture {
    _dir: tempfile::TempDir,
    store: Arc<dyn Store>,
    auth: Arc<Authenticator>,
    hashes: Arc<Hashes>,
    /// A live static token of user 5870 at merchant 1.
    token: String,
}

fn fixture(throttle: Option<Throttle>, argon2_permits: usize) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let store = SledStore::open(dir.path()).unwrap();
    store
        .add_account(AccountKind::Merchant, "M", Some(1))
        .unwrap();
    store
        .add_account(AccountKind::User, "U", Some(5870))
        .unwrap();
    let token = store.create_token(5870, 1, None).unwrap().token;
    let store: Arc<dyn Store> = Arc::new(store);
    let live = Arc::new(
        LiveState::load(
            store.as_ref(),
            StaticTokenCache::new(100, Duration::from_secs(60)),
        )
        .unwrap(),
    );
    let codec = JwtCodec::new(KeySet::new(SigningKey::random()), ExpiryRules::default());
    let hashes = Arc::new(Hashes::default());
    let auth = Authenticator::new(
        codec,
        Arc::new(SystemClock),
        live,
        Some(store.clone()),
        argon2_permits,
    )
    .with_throttle(throttle)
    .with_observer(Some(hashes.clone()));
    Fixture {
        _dir: dir,
        store,
        auth: Arc::new(auth),
        hashes,
        token: token.to_secret_string().expose_secret().to_owned(),
    }
}

/// The same id with another (well-formed) secret.
fn wrong_secret(token: &str) -> String {
    let id = StaticToken::parse_id(token).unwrap();
    let guess = StaticToken::from_parts(id, &"k".repeat(32)).unwrap();
    guess.to_secret_string().expose_secret().to_owned()
}

/// Counts the argon2 verifications the Authenticator reports.
#[derive(Default)]
struct Hashes(AtomicU64);

impl AuthObserver for Hashes {
    fn argon2_hashed(&self, _took: Duration) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }
}

/// argon2 verifications run so far.
fn hashes(counted: &Hashes) -> u64 {
    counted.0.load(Ordering::Relaxed)
}

fn ip(last: u8) -> Option<IpAddr> {
    Some(IpAddr::from([192, 0, 2, last]))
}

fn throttle(per_token: u32) -> Throttle {
    Throttle::new(
        NonZeroU32::new(1_000).unwrap(),
        NonZeroU32::new(per_token).unwrap(),
        Duration::from_secs(60),
    )
    .unwrap()
}

/// Runs `requests` at once, each `(text, client)`; their answers.
async fn all_at_once(
    auth: &Arc<Authenticator>,
    requests: Vec<(String, Option<IpAddr>)>,
) -> Vec<Result<stamps_auth::CachedToken, AuthError>> {
    let tasks: Vec<_> = requests
        .into_iter()
        .map(|(text, client)| {
            let auth = auth.clone();
            tokio::spawn(async move { auth.verify_static(&text, client).await })
        })
        .collect();
    let mut answers = Vec::new();
    for task in tasks {
        answers.push(task.await.unwrap());
    }
    answers
}

#[tokio::test]
async fn concurrent_wrong_secrets_against_one_id_cost_no_more_hashes_than_its_limit() {
    let fx = fixture(Some(throttle(3)), 2);
    let guess = wrong_secret(&fx.token);
    let requests = (0..60).map(|_| (guess.clone(), ip(1))).collect();
    let answers = all_at_once(&fx.auth, requests).await;
    // The limit (3), not the concurrency (60): each guess waits for the
    // count of the one before. (Before: 60 hashes, all 401.)
    assert_eq!(hashes(&fx.hashes), 3);
    let throttled = answers
        .iter()
        .filter(|a| matches!(a, Err(AuthError::Throttled(_))))
        .count();
    assert_eq!(throttled, 57, "{answers:?}");
}

#[tokio::test]
async fn the_holder_gets_through_from_the_address_that_proved_the_id_while_it_is_under_attack() {
    let fx = fixture(Some(throttle(2)), 1);
    // The holder proves the token from its address; then its cache entry
    // goes (idle, or a restart of the cache).
    fx.auth.verify_static(&fx.token, ip(1)).await.unwrap();
    fx.auth.live().cache().clear();
    // Guesses from rotating addresses put the id over its limit.
    let guess = wrong_secret(&fx.token);
    for last in 10..14 {
        let _ = fx.auth.verify_static(&guess, ip(last)).await;
    }
    assert!(matches!(
        fx.auth.verify_static(&guess, ip(20)).await,
        Err(AuthError::Throttled(_))
    ));
    // The holder, from its address, is verified all the same (before: 429
    // until the attack paused); the right secret from an address that
    // never proved it waits like any other.
    let known = fx.auth.verify_static(&fx.token, ip(1)).await.unwrap();
    assert_eq!(known.user_id, 5870);
    fx.auth.live().cache().clear();
    assert!(matches!(
        fx.auth.verify_static(&fx.token, ip(21)).await,
        Err(AuthError::Throttled(_))
    ));
}

#[tokio::test]
async fn the_argon2_queue_is_bounded() {
    // One permit: one hash at a time, 16 more may wait; no failure limits,
    // to see the queue alone. Wrong secrets for as many tokens as it takes
    // (one verification in flight per id would queue one id's by itself).
    let fx = fixture(None, 1);
    let store = fx.store.clone();
    let requests: Vec<_> = (0..24)
        .map(|_| {
            let issued = store.create_token(5870, 1, None).unwrap().token;
            let text = issued.to_secret_string().expose_secret().to_owned();
            (wrong_secret(&text), ip(1))
        })
        .collect();
    let answers = all_at_once(&fx.auth, requests).await;
    let throttled = answers
        .iter()
        .filter(|a| matches!(a, Err(AuthError::Throttled(Throttled { retry_after: 1 }))))
        .count();
    let refused = answers
        .iter()
        .filter(|a| matches!(a, Err(AuthError::InvalidToken)))
        .count();
    // Beyond the one hashing and the 16 waiting: 429 at once, no hash
    // (before: all 24 hashed, one after the other). How many depends on
    // how many hashes end while the rest arrive: some, not none.
    assert_eq!(throttled + refused, 24, "{answers:?}");
    assert!((1..=24 - 17).contains(&throttled), "{throttled} throttled");
    assert_eq!(hashes(&fx.hashes), refused as u64);
}

#[tokio::test]
async fn a_revoked_or_disabled_token_costs_one_hash_however_often_it_is_retried() {
    let fx = fixture(None, 1);
    let id = StaticToken::parse_id(&fx.token).unwrap();
    let live = fx.auth.live();

    // Disabled user: refused, the retries without argon2; enabled again:
    // verified anew.
    let user = fx
        .store
        .set_account_active(AccountKind::User, 5870, false)
        .unwrap();
    live.apply_account(AccountKind::User, &user);
    for _ in 0..5 {
        assert!(matches!(
            fx.auth.verify_static(&fx.token, ip(1)).await,
            Err(AuthError::InvalidToken)
        ));
    }
    assert_eq!(hashes(&fx.hashes), 1);
    let user = fx
        .store
        .set_account_active(AccountKind::User, 5870, true)
        .unwrap();
    live.apply_account(AccountKind::User, &user);
    fx.auth.verify_static(&fx.token, ip(1)).await.unwrap();
    assert_eq!(hashes(&fx.hashes), 2);

    // Revoked: the same.
    fx.store.revoke_token(&id).unwrap();
    live.cache().clear();
    for _ in 0..5 {
        assert!(matches!(
            fx.auth.verify_static(&fx.token, ip(1)).await,
            Err(AuthError::InvalidToken)
        ));
    }
    assert_eq!(hashes(&fx.hashes), 3);
    // A wrong secret for it still costs its hash: only the proven text is
    // remembered.
    let _ = fx.auth.verify_static(&wrong_secret(&fx.token), ip(1)).await;
    assert_eq!(hashes(&fx.hashes), 4);
}
