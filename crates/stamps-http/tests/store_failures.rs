//! The 503 and 500 rows of the error table, in process: a store that fails
//! stops only what needs it; JWT checks go on.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;
use std::time::Duration;

use actix_web::{test, web};
use stamps_core::{
    ExpiryRules, ExposeSecret, JwtCodec, KeySet, LookupDigest, SigningKey, StaticToken,
    SystemClock, TokenId, UnixTime,
};
use stamps_http::{Authenticator, LiveState, StaticTokenCache};
use stamps_store::{
    Account, AccountKind, AuditEvent, JwtRevocation, JwtRevocationTarget, KeyInfo, PruneSummary,
    Result, SecretHasher, SigningKeyRecord, Snapshot, SnapshotSummary, Store, StoreError,
    TokenFilter, TokenRecord,
};
use stamps_store_sled::SledStore;

/// A store whose every call fails the same way.
struct FailingStore {
    hasher: SecretHasher,
    error: fn() -> StoreError,
}

impl Store for FailingStore {
    fn add_account(&self, _: AccountKind, _: &str, _: Option<u64>) -> Result<Account> {
        Err((self.error)())
    }
    fn account(&self, _: AccountKind, _: u64) -> Result<Option<Account>> {
        Err((self.error)())
    }
    fn accounts(&self, _: AccountKind) -> Result<Vec<Account>> {
        Err((self.error)())
    }
    fn set_account_active(&self, _: AccountKind, _: u64, _: bool) -> Result<Account> {
        Err((self.error)())
    }
    fn insert_tokens(&self, _: &[TokenRecord]) -> Result<()> {
        Err((self.error)())
    }
    fn imported_token(&self, _: &LookupDigest) -> Result<Option<TokenRecord>> {
        Err((self.error)())
    }
    fn record_last_used(&self, _: &[(TokenId, UnixTime)]) -> Result<()> {
        Err((self.error)())
    }
    fn has_imported_tokens(&self) -> Result<bool> {
        Err((self.error)())
    }
    fn token(&self, _: &TokenId) -> Result<Option<TokenRecord>> {
        Err((self.error)())
    }
    fn tokens(&self, _: TokenFilter) -> Result<Vec<TokenRecord>> {
        Err((self.error)())
    }
    fn revoke_token(&self, _: &TokenId) -> Result<TokenRecord> {
        Err((self.error)())
    }
    fn replace_token_hash(&self, _: &TokenId, _: &str, _: &str) -> Result<bool> {
        Err((self.error)())
    }
    fn snapshot(&self) -> Result<Snapshot> {
        Err((self.error)())
    }
    fn restore(&self, _: &Snapshot) -> Result<SnapshotSummary> {
        Err((self.error)())
    }
    fn revoke_jwts(&self, _: JwtRevocationTarget) -> Result<JwtRevocation> {
        Err((self.error)())
    }
    fn jwt_revocations(&self) -> Result<Vec<JwtRevocation>> {
        Err((self.error)())
    }
    fn rotate_signing_key_with(&self, _: bool) -> Result<KeyInfo> {
        Err((self.error)())
    }
    fn signing_keys(&self) -> Result<Vec<SigningKeyRecord>> {
        Err((self.error)())
    }
    fn prune(&self, _: UnixTime) -> Result<PruneSummary> {
        Err((self.error)())
    }
    fn append_audit(&self, _: &[AuditEvent]) -> Result<()> {
        Err((self.error)())
    }
    fn audit(&self, _: UnixTime) -> Result<Vec<AuditEvent>> {
        Err((self.error)())
    }
    fn prune_audit(&self, _: UnixTime, _: usize) -> Result<usize> {
        Err((self.error)())
    }
    fn hasher(&self) -> &SecretHasher {
        &self.hasher
    }
    fn now(&self) -> UnixTime {
        0
    }
}

async fn call(error: fn() -> StoreError) -> Vec<(u16, serde_json::Value)> {
    // Accounts known in memory (loaded while the store still worked).
    let dir = tempfile::tempdir().unwrap();
    let healthy = SledStore::open(dir.path()).unwrap();
    healthy
        .add_account(AccountKind::Merchant, "My Merchant", Some(1))
        .unwrap();
    healthy
        .add_account(AccountKind::User, "u", Some(5870))
        .unwrap();
    let live = Arc::new(
        LiveState::load(&healthy, StaticTokenCache::new(10, Duration::from_secs(60))).unwrap(),
    );

    let codec = JwtCodec::new(
        KeySet::new(SigningKey::new(vec![7; 32]).unwrap()),
        ExpiryRules::default(),
    );
    let jwt = codec
        .mint(5870, 1, stamps_core::Clock::now(&SystemClock))
        .token;
    let failing: Arc<dyn Store> = Arc::new(FailingStore {
        hasher: SecretHasher::owasp(),
        error,
    });
    let auth = web::Data::new(Authenticator::new(
        codec,
        Arc::new(SystemClock),
        live,
        Some(failing),
        1,
    ));
    let app = test::init_service(stamps_http::app(stamps_http::AppState::new(auth))).await;

    let static_token = StaticToken::generate()
        .to_secret_string()
        .expose_secret()
        .to_owned();
    let requests = [
        test::TestRequest::post()
            .uri("/api/auth/get-access-token/")
            .set_json(serde_json::json!({"token": static_token, "crm_merchant_id": 1})),
        test::TestRequest::post()
            .uri("/api/ping")
            .insert_header(("Authorization", format!("Token {static_token}"))),
        test::TestRequest::post()
            .uri("/api/auth/verify-token/")
            .insert_header(("Authorization", format!("Bearer {jwt}"))),
        test::TestRequest::post()
            .uri("/api/ping")
            .insert_header(("Authorization", format!("Bearer {jwt}"))),
    ];
    let mut answers = Vec::new();
    for request in requests {
        let response = test::call_service(&app, request.to_request()).await;
        let status = response.status().as_u16();
        let body: serde_json::Value = test::read_body_json(response).await;
        answers.push((status, body));
    }
    answers
}

#[actix_web::test]
async fn an_unreachable_or_full_store_is_503_for_static_tokens_while_jwts_go_on() {
    let unreachable = || StoreError::Backend("No space left on device".into());
    let full = || StoreError::Full("the file system is full".into());
    for error in [unreachable as fn() -> StoreError, full] {
        let answers = call(error).await;
        for (status, body) in &answers[..2] {
            assert_eq!(*status, 503, "{body}");
            assert_eq!(body["error_code"], "store_unavailable");
            assert!(
                !body.to_string().contains("space") && !body.to_string().contains("full"),
                "internals leaked: {body}"
            );
        }
        assert_eq!(answers[2].0, 200);
        assert_eq!(answers[3].0, 200);
        assert_eq!(answers[3].1["pong"]["merchant"], "My Merchant");
    }
}

#[actix_web::test]
async fn anything_unexpected_is_a_500_that_leaks_nothing() {
    let answers = call(|| StoreError::Corrupt {
        tree: "tokens".into(),
        reason: "secret detail".into(),
    })
    .await;
    for (status, body) in &answers[..2] {
        assert_eq!(*status, 500, "{body}");
        assert_eq!(body["error_code"], "internal_error");
        assert!(!body.to_string().contains("secret detail"), "{body}");
    }
    assert_eq!(answers[2].0, 200);
}

/// Writes, then reports a failure, as a failed flush after a committed
/// transaction would.
struct FailsAfterWriting(SledStore);

fn flush_failed() -> StoreError {
    StoreError::Backend("flush failed".into())
}

impl Store for FailsAfterWriting {
    fn add_account(&self, kind: AccountKind, name: &str, id: Option<u64>) -> Result<Account> {
        self.0.add_account(kind, name, id).and(Err(flush_failed()))
    }
    fn account(&self, kind: AccountKind, id: u64) -> Result<Option<Account>> {
        self.0.account(kind, id)
    }
    fn accounts(&self, kind: AccountKind) -> Result<Vec<Account>> {
        self.0.accounts(kind)
    }
    fn set_account_active(&self, kind: AccountKind, id: u64, active: bool) -> Result<Account> {
        self.0
            .set_account_active(kind, id, active)
            .and(Err(flush_failed()))
    }
    fn insert_tokens(&self, records: &[TokenRecord]) -> Result<()> {
        self.0.insert_tokens(records)
    }
    fn imported_token(&self, lookup: &LookupDigest) -> Result<Option<TokenRecord>> {
        self.0.imported_token(lookup)
    }
    fn record_last_used(&self, uses: &[(TokenId, UnixTime)]) -> Result<()> {
        self.0.record_last_used(uses)
    }
    fn has_imported_tokens(&self) -> Result<bool> {
        self.0.has_imported_tokens()
    }
    fn token(&self, id: &TokenId) -> Result<Option<TokenRecord>> {
        self.0.token(id)
    }
    fn tokens(&self, filter: TokenFilter) -> Result<Vec<TokenRecord>> {
        self.0.tokens(filter)
    }
    fn revoke_token(&self, id: &TokenId) -> Result<TokenRecord> {
        self.0.revoke_token(id).and(Err(flush_failed()))
    }
    fn replace_token_hash(&self, id: &TokenId, old: &str, new: &str) -> Result<bool> {
        self.0.replace_token_hash(id, old, new)
    }
    fn snapshot(&self) -> Result<Snapshot> {
        self.0.snapshot()
    }
    fn restore(&self, snapshot: &Snapshot) -> Result<SnapshotSummary> {
        self.0.restore(snapshot)
    }
    fn revoke_jwts(&self, target: JwtRevocationTarget) -> Result<JwtRevocation> {
        self.0.revoke_jwts(target)
    }
    fn jwt_revocations(&self) -> Result<Vec<JwtRevocation>> {
        self.0.jwt_revocations()
    }
    fn rotate_signing_key_with(&self, drop_previous: bool) -> Result<KeyInfo> {
        self.0.rotate_signing_key_with(drop_previous)
    }
    fn signing_keys(&self) -> Result<Vec<SigningKeyRecord>> {
        self.0.signing_keys()
    }
    fn prune(&self, before: UnixTime) -> Result<PruneSummary> {
        self.0.prune(before)
    }
    fn append_audit(&self, events: &[AuditEvent]) -> Result<()> {
        self.0.append_audit(events)
    }
    fn audit(&self, since: UnixTime) -> Result<Vec<AuditEvent>> {
        self.0.audit(since)
    }
    fn prune_audit(&self, before: UnixTime, max_events: usize) -> Result<usize> {
        self.0.prune_audit(before, max_events)
    }
    fn hasher(&self) -> &SecretHasher {
        self.0.hasher()
    }
    fn now(&self) -> UnixTime {
        self.0.now()
    }
}

#[actix_web::test]
async fn a_change_written_before_a_failed_flush_still_reaches_the_live_state() {
    let dir = tempfile::tempdir().unwrap();
    let sled = SledStore::open(dir.path()).unwrap();
    sled.add_account(AccountKind::Merchant, "My Merchant", Some(1))
        .unwrap();
    sled.add_account(AccountKind::User, "u", Some(5870))
        .unwrap();
    let token_id = *StaticToken::generate().id();
    let live = Arc::new(
        LiveState::load(&sled, StaticTokenCache::new(10, Duration::from_secs(60))).unwrap(),
    );
    let observed = stamps_http::ObservedStore::new(Arc::new(FailsAfterWriting(sled)), live.clone());

    // A disabled user whose flush "failed" is disabled in memory too.
    assert!(live.user_active(5870));
    assert!(
        observed
            .set_account_active(AccountKind::User, 5870, false)
            .is_err()
    );
    assert!(!live.user_active(5870));

    // A new merchant likewise becomes known.
    assert!(
        observed
            .add_account(AccountKind::Merchant, "second", Some(2))
            .is_err()
    );
    assert!(live.merchant(2).is_some());

    // A revocation evicts the cache whatever the store answered.
    let entry = stamps_http::CachedToken {
        token_id,
        user_id: 5870,
        merchant_id: 1,
        expires_at: None,
    };
    live.cache().insert("the token", entry);
    assert!(observed.revoke_token(&token_id).is_err());
    assert_eq!(live.cache().get("the token"), None);
}

/// Appends tried by [`slow_failure`]'s store.
static APPENDS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// An unreachable database: every call fails after a wait.
fn slow_failure() -> StoreError {
    APPENDS.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    std::thread::sleep(Duration::from_millis(200));
    StoreError::Backend("the database is unreachable".into())
}

#[actix_web::test]
async fn stopping_while_the_store_fails_drops_the_audit_backlog_instead_of_retrying_it() {
    let store: Arc<dyn Store> = Arc::new(FailingStore {
        hasher: SecretHasher::owasp(),
        error: slow_failure,
    });
    let keep = stamps_http::AuditPolicy {
        retention: None,
        jwt_issued: true,
    };
    let (trail, writer) = stamps_http::AuditTrail::spawn(store, keep).unwrap();
    // Five batches' worth: retried batch by batch, each would wait.
    for _ in 0..5_000 {
        trail.record_jwt_issued(stamps_http::JwtIssued {
            at: 1,
            client: "127.0.0.1".parse().unwrap(),
            jti: stamps_core::Jti::random(),
            user_id: 1,
            merchant_id: 1,
            token_id: "0123456789abcdef".parse().unwrap(),
        });
    }
    writer.finish();
    let appends = APPENDS.load(std::sync::atomic::Ordering::SeqCst);
    assert!((1..=2).contains(&appends), "{appends} appends");
}
