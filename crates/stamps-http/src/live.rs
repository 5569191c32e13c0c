//! What the server knows in memory, so that JWTs are verified without
//! touching the disk and admin changes take effect at once: every merchant
//! (name, active) and user (active), and the static token cache.
//!
//! [`ObservedStore`] wraps the store: every change made through it (by the
//! admin channel or by a handler) updates this state before the call
//! returns.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, PoisonError, RwLock};

use stamps_core::{TokenId, UnixTime};
use stamps_store::{
    Account, AccountKind, Result as StoreResult, SecretHasher, Snapshot, SnapshotSummary, Store,
    TokenFilter, TokenRecord,
};

use crate::cache::StaticTokenCache;

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
    merchants: RwLock<HashMap<u64, LiveMerchant>>,
    users: RwLock<HashMap<u64, bool>>,
    cache: StaticTokenCache,
    /// Bumped by every eviction, so a verification that raced with one does
    /// not put a stale entry back into the cache.
    generation: AtomicU64,
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
        }
    }

    /// The state of `store` as it is now, with an empty token cache.
    pub fn load(store: &dyn Store, cache: StaticTokenCache) -> StoreResult<Self> {
        let state = Self::empty(cache);
        state.reload(store)?;
        Ok(state)
    }

    /// Reads every account again and empties the cache (after an import).
    pub fn reload(&self, store: &dyn Store) -> StoreResult<()> {
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

    /// The merchant with this id, if it exists.
    pub fn merchant(&self, id: u64) -> Option<LiveMerchant> {
        self.merchants
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&id)
            .cloned()
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

    fn apply_account(&self, kind: AccountKind, account: &Account) {
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

    fn insert_token(&self, record: &TokenRecord) -> StoreResult<()> {
        self.inner.insert_token(record)
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

    fn hasher(&self) -> &SecretHasher {
        self.inner.hasher()
    }

    fn now(&self) -> UnixTime {
        self.inner.now()
    }
}
