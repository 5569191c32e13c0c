//! What the server knows in memory, so that JWTs are verified without
//! touching the disk and admin changes take effect at once: every merchant
//! (name, active) and user (active), the JWT revocations, the signing keys
//! made by rotation, and the static token cache.
//!
//! [`ObservedStore`] wraps the store: every change made through it (by the
//! admin channel or by a handler) updates this state before the call
//! returns.

use std::collections::hash_map::Entry;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, PoisonError, RwLock};

use stamps_core::{Claims, Jti, LookupDigest, RotatedKey, TokenId, UnixTime};
use stamps_store::{
    Account, AccountKind, AuditEvent, Change, JwtIssued, JwtRevocation, JwtRevocationTarget,
    KeyInfo, PruneSummary, Result as StoreResult, SecretHasher, SigningKeyRecord, Snapshot,
    SnapshotSummary, Store, TokenFilter, TokenRecord,
};

use crate::RecordMap;
use crate::cache::StaticTokenCache;

/// Why verified claims grant nothing ([`LiveState::jwt_refusal`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JwtRefusal {
    /// The user or the merchant does not exist or is disabled.
    Disabled,
    /// A JWT revocation covers the token (its `jti`, or its user's or
    /// merchant's tokens issued at or before the revocation).
    Revoked,
}

/// A merchant as the API needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LiveMerchant {
    /// Its display name (`ping` answers with it).
    pub name: Arc<str>,
    /// Whether its tokens are accepted.
    pub active: bool,
}

/// The in-memory state behind authentication.
#[derive(Debug)]
pub struct LiveState {
    merchants: RwLock<RecordMap<u64, LiveMerchant>>,
    users: RwLock<RecordMap<u64, bool>>,
    cache: StaticTokenCache,
    /// Bumped by every eviction, so a verification that raced with one does
    /// not put a stale entry back into the cache.
    generation: AtomicU64,
    revoked: RwLock<RevokedJwts>,
    /// False while no revocation exists: the JWT path then skips the lock.
    any_revoked: AtomicBool,
    rotated_keys: RwLock<Vec<RotatedKey>>,
    /// Bumped whenever `rotated_keys` changes, so verifiers rebuild their
    /// key set.
    keys_version: AtomicU64,
    /// Whether the store may hold imported tokens: while it holds none, a
    /// presented text that is not an issued token is refused without a
    /// digest or a lookup. Only ever set (a revoked imported token still
    /// needs its lookup to be refused as proven).
    any_imported: AtomicBool,
}

/// The JWT revocations in force, indexed by what they target.
#[derive(Debug, Default)]
struct RevokedJwts {
    jtis: RecordMap<Jti, JwtRevocation>,
    users: RecordMap<u64, JwtRevocation>,
    merchants: RecordMap<u64, JwtRevocation>,
}

impl RevokedJwts {
    fn apply(&mut self, revocation: &JwtRevocation) {
        match revocation.target {
            JwtRevocationTarget::Jti { jti } => keep_latest(self.jtis.entry(jti), revocation),
            JwtRevocationTarget::User { id } => keep_latest(self.users.entry(id), revocation),
            JwtRevocationTarget::Merchant { id } => {
                keep_latest(self.merchants.entry(id), revocation);
            }
        }
    }

    fn refuses(&self, claims: &Claims) -> bool {
        let refuses = |r: Option<&JwtRevocation>| r.is_some_and(|r| r.refuses(claims));
        refuses(self.jtis.get(&claims.jti))
            || refuses(self.users.get(&claims.user_id))
            || refuses(self.merchants.get(&claims.merchant_id))
    }

    fn is_empty(&self) -> bool {
        self.jtis.is_empty() && self.users.is_empty() && self.merchants.is_empty()
    }
}

/// Keeps the later of two revocations of the same target.
fn keep_latest<K>(slot: Entry<'_, K, JwtRevocation>, revocation: &JwtRevocation) {
    let kept = slot.or_insert(*revocation);
    if kept.revoked_at < revocation.revoked_at {
        *kept = *revocation;
    }
}

impl LiveState {
    /// A state knowing no account: every JWT is refused until accounts
    /// are added through an [`ObservedStore`].
    pub fn empty(cache: StaticTokenCache) -> Self {
        Self {
            merchants: RwLock::default(),
            users: RwLock::default(),
            cache,
            generation: AtomicU64::new(0),
            revoked: RwLock::default(),
            any_revoked: AtomicBool::new(false),
            rotated_keys: RwLock::default(),
            keys_version: AtomicU64::new(0),
            any_imported: AtomicBool::new(false),
        }
    }

    /// The state of `store` as it is now, with an empty token cache.
    pub fn load(store: &dyn Store, cache: StaticTokenCache) -> StoreResult<Self> {
        let state = Self::empty(cache);
        state.reload(store)?;
        Ok(state)
    }

    /// Reads every account, JWT revocation and rotated key again (and
    /// whether imported tokens exist), and empties the cache (after an
    /// import).
    pub fn reload(&self, store: &dyn Store) -> StoreResult<()> {
        self.reload_jwt_state(store)?;
        if store.has_imported_tokens()? {
            self.note_imported();
        }
        let merchants = store
            .accounts(AccountKind::Merchant)?
            .into_iter()
            .map(|m| {
                (
                    m.id,
                    LiveMerchant {
                        name: m.name.into(),
                        active: m.active,
                    },
                )
            })
            .collect();
        let users = store
            .accounts(AccountKind::User)?
            .into_iter()
            .map(|u| (u.id, u.active))
            .collect();
        *self
            .merchants
            .write()
            .unwrap_or_else(PoisonError::into_inner) = merchants;
        *self.users.write().unwrap_or_else(PoisonError::into_inner) = users;
        self.bump();
        self.cache.clear();
        Ok(())
    }

    /// Whether the store may hold imported tokens (any was stored, seen at
    /// load or since).
    #[inline]
    pub fn any_imported(&self) -> bool {
        self.any_imported.load(Ordering::Acquire)
    }

    /// Imported tokens were stored: from now on presented texts are looked
    /// up.
    pub fn note_imported(&self) {
        self.any_imported.store(true, Ordering::Release);
    }

    /// The merchant with this id, if it exists.
    pub fn merchant(&self, id: u64) -> Option<LiveMerchant> {
        self.merchants
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&id)
            .cloned()
    }

    /// How many merchants and users there are, active or not.
    pub fn account_counts(&self) -> (usize, usize) {
        let merchants = self
            .merchants
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .len();
        let users = self
            .users
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .len();
        (merchants, users)
    }

    /// True when the user exists and is active.
    pub fn user_active(&self, id: u64) -> bool {
        self.users
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&id)
            .copied()
            .unwrap_or(false)
    }

    /// True when the merchant exists and is active.
    pub fn merchant_active(&self, id: u64) -> bool {
        self.merchant(id).is_some_and(|m| m.active)
    }

    /// True when both the user and the merchant exist and are active.
    pub fn grants(&self, user_id: u64, merchant_id: u64) -> bool {
        self.user_active(user_id) && self.merchant_active(merchant_id)
    }

    /// True when a JWT revocation refuses these (verified) claims: its
    /// `jti` was revoked, or its user's or merchant's JWTs issued at or
    /// before its `iat` were.
    pub fn jwt_revoked(&self, claims: &Claims) -> bool {
        if !self.any_revoked.load(Ordering::Acquire) {
            return false;
        }
        self.revoked
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .refuses(claims)
    }

    /// Why these verified claims grant nothing, if they do not: the one
    /// rule both the server (every JWT it accepts) and `stamps-admin jwt
    /// inspect` apply, in this order: the user and the merchant must exist
    /// and be active, then no JWT revocation may cover the token.
    pub fn jwt_refusal(&self, claims: &Claims) -> Option<JwtRefusal> {
        if !self.grants(claims.user_id, claims.merchant_id) {
            return Some(JwtRefusal::Disabled);
        }
        if self.jwt_revoked(claims) {
            return Some(JwtRefusal::Revoked);
        }
        None
    }

    /// The latest second at or before which JWTs of this user or merchant
    /// were revoked, if any (a token minted in that second would be refused).
    pub fn jwt_cutoff(&self, user_id: u64, merchant_id: u64) -> Option<UnixTime> {
        if !self.any_revoked.load(Ordering::Acquire) {
            return None;
        }
        let revoked = self.revoked.read().unwrap_or_else(PoisonError::into_inner);
        let at = |r: Option<&JwtRevocation>| r.map(|r| r.revoked_at);
        at(revoked.users.get(&user_id)).max(at(revoked.merchants.get(&merchant_id)))
    }

    /// The signing keys made by rotation (secrets; never log them).
    pub fn rotated_keys(&self) -> Vec<RotatedKey> {
        self.rotated_keys
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Changes whenever [`LiveState::rotated_keys`] does.
    pub fn keys_version(&self) -> u64 {
        self.keys_version.load(Ordering::Acquire)
    }

    /// Reads the JWT revocations and rotated keys again (after a rotation
    /// or a prune).
    pub fn reload_jwt_state(&self, store: &dyn Store) -> StoreResult<()> {
        let mut revoked = RevokedJwts::default();
        for revocation in store.jwt_revocations()? {
            revoked.apply(&revocation);
        }
        let keys = store.signing_keys()?;
        self.set_revoked(revoked);
        self.set_rotated_keys(keys);
        Ok(())
    }

    fn set_revoked(&self, revoked: RevokedJwts) {
        let mut slot = self.revoked.write().unwrap_or_else(PoisonError::into_inner);
        self.any_revoked
            .store(!revoked.is_empty(), Ordering::Release);
        *slot = revoked;
    }

    fn apply_jwt_revocation(&self, revocation: &JwtRevocation) {
        let mut slot = self.revoked.write().unwrap_or_else(PoisonError::into_inner);
        slot.apply(revocation);
        self.any_revoked.store(true, Ordering::Release);
    }

    fn set_rotated_keys(&self, records: Vec<SigningKeyRecord>) {
        let keys = records.into_iter().map(RotatedKey::from).collect();
        *self
            .rotated_keys
            .write()
            .unwrap_or_else(PoisonError::into_inner) = keys;
        self.keys_version.fetch_add(1, Ordering::AcqRel);
    }

    /// The static token cache.
    pub fn cache(&self) -> &StaticTokenCache {
        &self.cache
    }

    /// The eviction generation; see [`LiveState::cache_if_unchanged`].
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::SeqCst)
    }

    /// Caches a verified token unless an eviction happened since
    /// `generation` was read (the token may have been revoked meanwhile).
    pub fn cache_if_unchanged(&self, generation: u64, token: &str, entry: crate::CachedToken) {
        self.cache.insert(token, entry);
        // Re-check after inserting: an eviction that ran between the check
        // and the insert would otherwise be undone.
        if self.generation() != generation {
            let id = entry.token_id;
            self.cache.evict(move |e| e.token_id == id);
        }
    }

    fn bump(&self) {
        self.generation.fetch_add(1, Ordering::SeqCst);
    }

    /// Records a merchant or user as it now is (disabling one evicts its
    /// cached static tokens). [`ObservedStore`] calls this for every change;
    /// a service without a store declares its accounts with it.
    pub fn apply_account(&self, kind: AccountKind, account: &Account) {
        match kind {
            AccountKind::Merchant => {
                let live = LiveMerchant {
                    name: account.name.as_str().into(),
                    active: account.active,
                };
                self.merchants
                    .write()
                    .unwrap_or_else(PoisonError::into_inner)
                    .insert(account.id, live);
            }
            AccountKind::User => {
                self.users
                    .write()
                    .unwrap_or_else(PoisonError::into_inner)
                    .insert(account.id, account.active);
            }
        }
        if !account.active {
            self.bump();
            let id = account.id;
            self.cache.evict(move |e| match kind {
                AccountKind::Merchant => e.merchant_id == id,
                AccountKind::User => e.user_id == id,
            });
        }
    }

    /// Applies a change made elsewhere (another replica, the admin command
    /// line on a shared database), read from a change feed. Re-reads the
    /// store only for key and revocation sets and after an import.
    ///
    /// # Errors
    /// A store error while re-reading; nothing changed in that case, and
    /// the caller should try again.
    pub fn apply_change(&self, store: &dyn Store, change: &Change) -> StoreResult<()> {
        match change {
            Change::Account { kind, account } => self.apply_account(*kind, account),
            Change::TokenRevoked { id } => self.apply_revocation(*id),
            Change::JwtRevoked { revocation } => self.apply_jwt_revocation(revocation),
            Change::JwtStateChanged => self.reload_jwt_state(store)?,
            Change::TokensImported => self.note_imported(),
            Change::Restored => self.reload(store)?,
        }
        Ok(())
    }

    fn apply_revocation(&self, id: TokenId) {
        self.bump();
        self.cache.evict(move |e| e.token_id == id);
    }
}

/// A [`Store`] that keeps a [`LiveState`] in step with every change made
/// through it. The server hands this, not the bare store, to the admin
/// channel and the handlers.
#[derive(Clone)]
pub struct ObservedStore {
    inner: Arc<dyn Store>,
    live: Arc<LiveState>,
}

impl std::fmt::Debug for ObservedStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ObservedStore").finish_non_exhaustive()
    }
}

impl ObservedStore {
    /// Wraps `inner`, reporting changes to `live`.
    pub fn new(inner: Arc<dyn Store>, live: Arc<LiveState>) -> Self {
        Self { inner, live }
    }

    /// The live state kept in step.
    pub fn live(&self) -> &Arc<LiveState> {
        &self.live
    }
}

impl Store for ObservedStore {
    fn add_account(&self, kind: AccountKind, name: &str, id: Option<u64>) -> StoreResult<Account> {
        let result = self.inner.add_account(kind, name, id);
        match (&result, id) {
            (Ok(account), _) => self.live.apply_account(kind, account),
            // As above: follow the store after a failure.
            (Err(_), Some(id)) => {
                if let Ok(Some(account)) = self.inner.account(kind, id) {
                    self.live.apply_account(kind, &account);
                }
            }
            (Err(_), None) => {}
        }
        result
    }

    fn account(&self, kind: AccountKind, id: u64) -> StoreResult<Option<Account>> {
        self.inner.account(kind, id)
    }

    fn accounts(&self, kind: AccountKind) -> StoreResult<Vec<Account>> {
        self.inner.accounts(kind)
    }

    fn set_account_active(&self, kind: AccountKind, id: u64, active: bool) -> StoreResult<Account> {
        match self.inner.set_account_active(kind, id, active) {
            Ok(account) => {
                self.live.apply_account(kind, &account);
                Ok(account)
            }
            Err(e) => {
                // A failure after the write (a failed flush) may have left
                // the change in the store: follow what the store now says.
                if let Ok(Some(account)) = self.inner.account(kind, id) {
                    self.live.apply_account(kind, &account);
                }
                Err(e)
            }
        }
    }

    fn insert_tokens(&self, records: &[TokenRecord]) -> StoreResult<()> {
        let result = self.inner.insert_tokens(records);
        // Noted even after a failure (a failed flush may follow the write):
        // a needless lookup costs little, a missed one refuses a token.
        if records.iter().any(TokenRecord::is_imported) {
            self.live.note_imported();
        }
        result
    }

    fn record_last_used(&self, uses: &[(TokenId, UnixTime)]) -> StoreResult<()> {
        self.inner.record_last_used(uses)
    }

    fn imported_token(&self, lookup: &LookupDigest) -> StoreResult<Option<TokenRecord>> {
        self.inner.imported_token(lookup)
    }

    fn has_imported_tokens(&self) -> StoreResult<bool> {
        self.inner.has_imported_tokens()
    }

    fn token(&self, id: &TokenId) -> StoreResult<Option<TokenRecord>> {
        self.inner.token(id)
    }

    fn tokens(&self, filter: TokenFilter) -> StoreResult<Vec<TokenRecord>> {
        self.inner.tokens(filter)
    }

    fn revoke_token(&self, id: &TokenId) -> StoreResult<TokenRecord> {
        let result = self.inner.revoke_token(id);
        // Evicting is always safe, and after a failed flush the revocation
        // may be in the store all the same.
        self.live.apply_revocation(*id);
        result
    }

    fn replace_token_hash(
        &self,
        id: &TokenId,
        old_hash: &str,
        new_hash: &str,
    ) -> StoreResult<bool> {
        self.inner.replace_token_hash(id, old_hash, new_hash)
    }

    fn snapshot(&self) -> StoreResult<Snapshot> {
        self.inner.snapshot()
    }

    fn restore(&self, snapshot: &Snapshot) -> StoreResult<SnapshotSummary> {
        let result = self.inner.restore(snapshot);
        // Whatever happened, the live state follows the store.
        self.live.reload(self.inner.as_ref())?;
        result
    }

    fn revoke_jwts(&self, target: JwtRevocationTarget) -> StoreResult<JwtRevocation> {
        let result = self.inner.revoke_jwts(target);
        match &result {
            Ok(revocation) => self.live.apply_jwt_revocation(revocation),
            // The write may have landed before the failure: follow the store.
            Err(_) => {
                let _ = self.live.reload_jwt_state(self.inner.as_ref());
            }
        }
        result
    }

    fn jwt_revocations(&self) -> StoreResult<Vec<JwtRevocation>> {
        self.inner.jwt_revocations()
    }

    fn rotate_signing_key_with(&self, drop_previous: bool) -> StoreResult<KeyInfo> {
        let result = self.inner.rotate_signing_key_with(drop_previous);
        // Success or not, sign with whatever the store now holds.
        let reloaded = self.live.reload_jwt_state(self.inner.as_ref());
        let info = result?;
        reloaded?;
        Ok(info)
    }

    fn signing_keys(&self) -> StoreResult<Vec<SigningKeyRecord>> {
        self.inner.signing_keys()
    }

    fn prune(&self, expired_before: UnixTime) -> StoreResult<PruneSummary> {
        let result = self.inner.prune(expired_before);
        // Forget in memory what the store forgot (nothing to do, the usual
        // case, costs nothing: this runs every minute).
        if result.as_ref().is_ok_and(|s| *s == PruneSummary::default()) {
            return result;
        }
        let reloaded = self.live.reload_jwt_state(self.inner.as_ref());
        let summary = result?;
        reloaded?;
        Ok(summary)
    }

    fn append_audit(&self, events: &[AuditEvent]) -> StoreResult<()> {
        self.inner.append_audit(events)
    }

    fn append_jwt_issued(&self, issued: &[JwtIssued]) -> StoreResult<()> {
        self.inner.append_jwt_issued(issued)
    }

    fn audit(&self, since: UnixTime) -> StoreResult<Vec<AuditEvent>> {
        self.inner.audit(since)
    }

    fn prune_audit(&self, before: UnixTime, max_events: usize) -> StoreResult<usize> {
        self.inner.prune_audit(before, max_events)
    }

    fn hasher(&self) -> &SecretHasher {
        self.inner.hasher()
    }

    fn now(&self) -> UnixTime {
        self.inner.now()
    }
}
