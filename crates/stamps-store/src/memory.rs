//! [`MemoryStore`]: the whole [`Store`] in memory, for tests, examples and
//! services that provision their tokens at start. Nothing survives the
//! process.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use stamps_core::{Clock, LookupDigest, SystemClock, TokenId, UnixTime};

use crate::Store;
use crate::error::{Result, StoreError};
use crate::hashing::SecretHasher;
use crate::records::{
    Account, AccountKind, AuditEvent, JwtRevocation, JwtRevocationTarget, KeyInfo, PruneSummary,
    SigningKeyRecord, TokenFilter, TokenRecord, validate_id, validate_text,
};
use crate::snapshot::{Snapshot, SnapshotSummary};

/// A [`Store`] held in memory, with the same rules as the persistent
/// backends (validation, atomic operations, the same errors; the
/// conformance model holds it to them). Clones share one store, so a test
/// can "reopen" it by cloning.
///
/// ```
/// use stamps_store::{AccountKind, MemoryStore, Store, TokenCheck};
///
/// let store = MemoryStore::new();
/// store.add_account(AccountKind::Merchant, "My Merchant", Some(1))?;
/// store.add_account(AccountKind::User, "user5870", Some(5870))?;
/// let issued = store.create_token(5870, 1, Some("till 3"))?;
/// assert!(matches!(store.check_token(&issued.token)?, TokenCheck::Live(_)));
/// # Ok::<(), stamps_store::StoreError>(())
/// ```
#[derive(Clone)]
pub struct MemoryStore {
    state: Arc<Mutex<State>>,
    hasher: SecretHasher,
    clock: Arc<dyn Clock>,
}

impl std::fmt::Debug for MemoryStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryStore").finish_non_exhaustive()
    }
}

#[derive(Default)]
struct State {
    merchants: BTreeMap<u64, Account>,
    users: BTreeMap<u64, Account>,
    tokens: BTreeMap<TokenId, TokenRecord>,
    /// Imported tokens' lookup digests, to their ids.
    imported: HashMap<LookupDigest, TokenId>,
    /// One per jti, user or merchant (the seam does not order them).
    revocations: HashMap<JwtRevocationTarget, JwtRevocation>,
    signing_keys: BTreeMap<u64, SigningKeyRecord>,
    /// The trail in appended batches, as the backends prune it.
    audit: VecDeque<Vec<AuditEvent>>,
    next_audit_seq: u64,
}

impl State {
    fn accounts(&mut self, kind: AccountKind) -> &mut BTreeMap<u64, Account> {
        match kind {
            AccountKind::Merchant => &mut self.merchants,
            AccountKind::User => &mut self.users,
        }
    }

    fn is_empty(&self) -> bool {
        self.merchants.is_empty() && self.users.is_empty() && self.tokens.is_empty()
    }
}

impl Default for MemoryStore {
    fn default() -> Self {
        Self::new()
    }
}

impl MemoryStore {
    /// An empty store with production hashing and the system clock.
    pub fn new() -> Self {
        Self::with(SecretHasher::owasp(), Arc::new(SystemClock))
    }

    /// An empty store with a given hasher (tests use cheap parameters) and
    /// clock.
    pub fn with(hasher: SecretHasher, clock: Arc<dyn Clock>) -> Self {
        Self {
            state: Arc::default(),
            hasher,
            clock,
        }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock leaves whole values behind: every
        // operation changes the state only once it has checked everything.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

fn duplicate(kind: &'static str, record: &TokenRecord) -> StoreError {
    StoreError::Duplicate {
        kind: kind.into(),
        id: record.id.to_string(),
    }
}

fn not_found(kind: &'static str, id: impl ToString) -> StoreError {
    StoreError::NotFound {
        kind: kind.into(),
        id: id.to_string(),
    }
}

impl Store for MemoryStore {
    fn add_account(&self, kind: AccountKind, name: &str, id: Option<u64>) -> Result<Account> {
        validate_text("name", name)?;
        let now = self.now();
        let mut state = self.state();
        let accounts = state.accounts(kind);
        let id = match id {
            Some(id) => id,
            None => accounts
                .last_key_value()
                .map_or(1, |(last, _)| last.saturating_add(1)),
        };
        validate_id(kind, id)?;
        if accounts.contains_key(&id) {
            return Err(StoreError::Duplicate {
                kind: kind.as_str().into(),
                id: id.to_string(),
            });
        }
        let account = Account {
            id,
            name: name.to_owned(),
            active: true,
            created_at: now,
        };
        accounts.insert(id, account.clone());
        Ok(account)
    }

    fn account(&self, kind: AccountKind, id: u64) -> Result<Option<Account>> {
        Ok(self.state().accounts(kind).get(&id).cloned())
    }

    fn accounts(&self, kind: AccountKind) -> Result<Vec<Account>> {
        Ok(self.state().accounts(kind).values().cloned().collect())
    }

    fn set_account_active(&self, kind: AccountKind, id: u64, active: bool) -> Result<Account> {
        let mut state = self.state();
        let account = state
            .accounts(kind)
            .get_mut(&id)
            .ok_or_else(|| not_found(kind.as_str(), id))?;
        account.active = active;
        Ok(account.clone())
    }

    fn insert_tokens(&self, records: &[TokenRecord]) -> Result<()> {
        let mut state = self.state();
        // Everything checked first (within the batch too), then written.
        let mut ids = std::collections::HashSet::new();
        let mut lookups = std::collections::HashSet::new();
        for record in records {
            if !state.users.contains_key(&record.user_id) {
                return Err(not_found(AccountKind::User.as_str(), record.user_id));
            }
            if !state.merchants.contains_key(&record.merchant_id) {
                return Err(not_found(
                    AccountKind::Merchant.as_str(),
                    record.merchant_id,
                ));
            }
            if state.tokens.contains_key(&record.id) || !ids.insert(record.id) {
                return Err(duplicate("token", record));
            }
            if let Some(lookup) = &record.lookup
                && (state.imported.contains_key(lookup) || !lookups.insert(*lookup))
            {
                return Err(duplicate("imported token", record));
            }
        }
        for record in records {
            if let Some(lookup) = record.lookup {
                state.imported.insert(lookup, record.id);
            }
            state.tokens.insert(record.id, record.clone());
        }
        Ok(())
    }

    fn record_last_used(&self, uses: &[(TokenId, UnixTime)]) -> Result<()> {
        let mut state = self.state();
        for (id, at) in uses {
            if let Some(record) = state.tokens.get_mut(id) {
                record.last_used_at = record.last_used_at.max(Some(*at));
            }
        }
        Ok(())
    }

    fn imported_token(&self, lookup: &LookupDigest) -> Result<Option<TokenRecord>> {
        let state = self.state();
        Ok(state
            .imported
            .get(lookup)
            .and_then(|id| state.tokens.get(id))
            .cloned())
    }

    fn has_imported_tokens(&self) -> Result<bool> {
        Ok(!self.state().imported.is_empty())
    }

    fn token(&self, id: &TokenId) -> Result<Option<TokenRecord>> {
        Ok(self.state().tokens.get(id).cloned())
    }

    fn tokens(&self, filter: TokenFilter) -> Result<Vec<TokenRecord>> {
        let mut tokens: Vec<TokenRecord> = self
            .state()
            .tokens
            .values()
            .filter(|record| filter.matches(record))
            .cloned()
            .collect();
        tokens.sort_by_key(|t| (t.created_at, t.id));
        Ok(tokens)
    }

    fn revoke_token(&self, id: &TokenId) -> Result<TokenRecord> {
        let mut state = self.state();
        let record = state
            .tokens
            .get_mut(id)
            .ok_or_else(|| not_found("token", id))?;
        record.revoked = true;
        Ok(record.clone())
    }

    fn replace_token_hash(&self, id: &TokenId, old_hash: &str, new_hash: &str) -> Result<bool> {
        let mut state = self.state();
        let record = state
            .tokens
            .get_mut(id)
            .ok_or_else(|| not_found("token", id))?;
        let replace = record.hash == old_hash;
        if replace {
            new_hash.clone_into(&mut record.hash);
        }
        Ok(replace)
    }

    fn snapshot(&self) -> Result<Snapshot> {
        let state = self.state();
        let mut tokens: Vec<TokenRecord> = state.tokens.values().cloned().collect();
        tokens.sort_by_key(|t| (t.created_at, t.id));
        Ok(Snapshot {
            merchants: state.merchants.values().cloned().collect(),
            users: state.users.values().cloned().collect(),
            tokens,
        })
    }

    fn restore(&self, snapshot: &Snapshot) -> Result<SnapshotSummary> {
        let mut state = self.state();
        if !state.is_empty() {
            return Err(StoreError::NotEmpty);
        }
        for m in &snapshot.merchants {
            state.merchants.insert(m.id, m.clone());
        }
        for u in &snapshot.users {
            state.users.insert(u.id, u.clone());
        }
        for t in &snapshot.tokens {
            if let Some(lookup) = t.lookup {
                state.imported.insert(lookup, t.id);
            }
            state.tokens.insert(t.id, t.clone());
        }
        Ok(snapshot.summary())
    }

    fn revoke_jwts(&self, target: JwtRevocationTarget) -> Result<JwtRevocation> {
        let revoked_at = self.now();
        let mut state = self.state();
        if let Some((kind, id)) = target.account()
            && !state.accounts(kind).contains_key(&id)
        {
            return Err(not_found(kind.as_str(), id));
        }
        let revocation = JwtRevocation { target, revoked_at };
        state.revocations.insert(target, revocation);
        Ok(revocation)
    }

    fn jwt_revocations(&self) -> Result<Vec<JwtRevocation>> {
        Ok(self.state().revocations.values().copied().collect())
    }

    fn rotate_signing_key_with(&self, drop_previous: bool) -> Result<KeyInfo> {
        let created_at = self.now();
        let mut state = self.state();
        let id = state
            .signing_keys
            .last_key_value()
            .map_or(1, |(last, _)| last.saturating_add(1));
        let record = SigningKeyRecord {
            id,
            created_at,
            key: stamps_core::SigningKey::random(),
            drops_previous: drop_previous,
        };
        let info = record.info();
        state.signing_keys.insert(id, record);
        Ok(info)
    }

    fn signing_keys(&self) -> Result<Vec<SigningKeyRecord>> {
        Ok(self.state().signing_keys.values().cloned().collect())
    }

    fn prune(&self, expired_before: UnixTime) -> Result<PruneSummary> {
        let mut state = self.state();
        let before = state.revocations.len();
        state
            .revocations
            .retain(|_, revocation| revocation.revoked_at >= expired_before);
        // A key stopped signing when the next one was made; the newest stays.
        let replaced: Vec<u64> = {
            let keys: Vec<&SigningKeyRecord> = state.signing_keys.values().collect();
            keys.windows(2)
                .filter(|pair| pair[1].created_at < expired_before)
                .map(|pair| pair[0].id)
                .collect()
        };
        for id in &replaced {
            state.signing_keys.remove(id);
        }
        Ok(PruneSummary {
            revocations: before - state.revocations.len(),
            keys: replaced.len(),
        })
    }

    fn append_audit(&self, events: &[AuditEvent]) -> Result<()> {
        for event in events {
            event.validate()?;
        }
        if events.is_empty() {
            return Ok(());
        }
        let mut state = self.state();
        let mut batch = events.to_vec();
        for event in &mut batch {
            event.seq = state.next_audit_seq;
            state.next_audit_seq += 1;
        }
        state.audit.push_back(batch);
        Ok(())
    }

    fn audit(&self, since: UnixTime) -> Result<Vec<AuditEvent>> {
        Ok(self
            .state()
            .audit
            .iter()
            .flatten()
            .filter(|event| event.at >= since)
            .cloned()
            .collect())
    }

    fn prune_audit(&self, before: UnixTime, max_events: usize) -> Result<usize> {
        // Whole batches, the oldest first, until one holds a recent event.
        let mut state = self.state();
        let mut removed = 0;
        while removed < max_events
            && let Some(oldest) = state.audit.front()
            && oldest.iter().all(|event| event.at < before)
        {
            removed += oldest.len();
            state.audit.pop_front();
        }
        Ok(removed)
    }

    fn hasher(&self) -> &SecretHasher {
        &self.hasher
    }

    fn now(&self) -> UnixTime {
        self.clock.now()
    }
}

#[cfg(all(test, feature = "conformance"))]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::conformance::{
        Opened, check_against_model, check_audit_retention, check_imported_tokens, check_last_use,
        check_token_expiry, op,
    };
    use proptest::prelude::*;
    use stamps_core::ManualClock;

    fn cheap() -> SecretHasher {
        SecretHasher::with_params(8, 1, 1).unwrap()
    }

    #[test]
    fn audit_retention_is_kept() {
        let store = MemoryStore::with(cheap(), Arc::new(ManualClock::new(1_000)));
        check_audit_retention(&store).unwrap();
    }

    #[test]
    fn tokens_expire_at_their_instant() {
        let clock = Arc::new(ManualClock::new(1_000));
        let store = MemoryStore::with(cheap(), clock.clone());
        check_token_expiry(&store, &clock).unwrap();
    }

    #[test]
    fn the_last_use_only_moves_forward() {
        check_last_use(&MemoryStore::with(
            cheap(),
            Arc::new(ManualClock::new(1_000)),
        ))
        .unwrap();
    }

    #[test]
    fn imported_tokens_are_found_by_their_digest() {
        let clock = Arc::new(ManualClock::new(1_000));
        let store = MemoryStore::with(cheap(), clock.clone());
        let restored = MemoryStore::with(cheap(), clock);
        check_imported_tokens(&store, &restored).unwrap();
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

        #[test]
        fn memory_store_matches_the_model(ops in prop::collection::vec(op(), 1..30)) {
            let mut kept: Option<MemoryStore> = None;
            check_against_model(ops, |clock| {
                // "Reopening" keeps the contents: a clone shares them.
                let store = kept
                    .get_or_insert_with(|| MemoryStore::with(cheap(), clock.clone()))
                    .clone();
                Opened::bare(store)
            })?;
        }
    }
}
