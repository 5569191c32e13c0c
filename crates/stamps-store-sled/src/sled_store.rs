//! The embedded backend: sled 0.34.
//!
//! Layout: one sled database in `<data dir>/db` with these trees.
//!
//! | tree | key | value |
//! | --- | --- | --- |
//! | `meta` | `schema_version` | u32, big-endian |
//! | `meta` | `import_pending` | present only while an import is written |
//! | `meta` | `write_probe` | the time of the last [`SledStore::probe_write`], u64 big-endian |
//! | `merchants`, `users` | id as u64 big-endian (so keys sort by id) | [`Account`] as JSON |
//! | `tokens` | the 16-byte public id | [`TokenRecord`] as JSON |
//! | `imported` | an imported token's 32-byte lookup digest | its public id |
//! | `jwt_revocations` | `j` + jti, `u`/`m` + id big-endian | [`JwtRevocation`] as JSON |
//! | `signing_keys` | sequence number, u64 big-endian | [`SigningKeyRecord`] as JSON |
//! | `audit` | first sequence number of a batch, u64 big-endian | the batch of events, compact (`audit_codec.rs`; older records: a JSON array) |
//!
//! Durability: every write is flushed before the call returns. sled's flush
//! writes its log with `sync_file_range`, which survives the process being
//! killed but not a power loss (see docs/STORAGE.md).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::Serialize;
use serde::de::DeserializeOwned;
use sled::transaction::{
    ConflictableTransactionError, TransactionError, Transactional, TransactionalTree,
};
use sled::{Db, Tree};
use stamps_core::{Clock, LookupDigest, SystemClock, TokenId, UnixTime};

use crate::audit_codec::{self, Entry};
use crate::error::sled_error;
use stamps_store::SecretHasher;
use stamps_store::Store;
use stamps_store::{
    Account, AccountKind, AuditEvent, JwtIssued, JwtRevocation, JwtRevocationTarget, KeyInfo,
    PruneSummary, SigningKeyRecord, TokenFilter, TokenRecord, validate_id, validate_text,
};
use stamps_store::{Result, StoreError};
use stamps_store::{SCHEMA_VERSION, Snapshot, SnapshotSummary};

mod import;

const SCHEMA_KEY: &[u8] = b"schema_version";
/// Present while an import is being written.
const IMPORT_PENDING_KEY: &[u8] = b"import_pending";
/// Rewritten by every write probe (readiness checks).
const WRITE_PROBE_KEY: &[u8] = b"write_probe";
const MERCHANTS: &str = "merchants";
const USERS: &str = "users";
const TOKENS: &str = "tokens";
const IMPORTED: &str = "imported";
const JWT_REVOCATIONS: &str = "jwt_revocations";
const SIGNING_KEYS: &str = "signing_keys";
const AUDIT: &str = "audit";

/// A [`Store`] on an embedded sled database.
///
/// One process at a time may open a data directory; a second one gets
/// [`StoreError::Locked`] at once (no waiting).
pub struct SledStore {
    db: Db,
    meta: Tree,
    merchants: Tree,
    users: Tree,
    tokens: Tree,
    imported: Tree,
    jwt_revocations: Tree,
    signing_keys: Tree,
    audit: Tree,
    hasher: SecretHasher,
    clock: Arc<dyn Clock>,
    path: PathBuf,
}

impl std::fmt::Debug for SledStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SledStore")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

/// The most sled keeps of the store in memory (its default is 1 GiB). The
/// server's RSS follows it: the audit trail of a busy server grows to its
/// retention, and a cache of 1 GiB would keep all of it. Lookups stay fast
/// past it: a token is read from the store once, then verified from the
/// server's own cache (docs/PERFORMANCE.md, "Memory and lookups").
pub const CACHE_CAPACITY_BYTES: u64 = 32 * 1024 * 1024;

impl SledStore {
    /// Opens (creating if need be, with mode 0700) the store in `data_dir`,
    /// with production hashing and the system clock.
    pub fn open(data_dir: &Path) -> Result<Self> {
        Self::open_with(data_dir, SecretHasher::owasp(), Arc::new(SystemClock))
    }

    /// Opens the store with a given hasher and clock.
    pub fn open_with(data_dir: &Path, hasher: SecretHasher, clock: Arc<dyn Clock>) -> Result<Self> {
        crate::data_dir::prepare(data_dir)?;
        let path = data_dir.join("db");
        let db = sled::Config::new()
            .path(&path)
            .cache_capacity(CACHE_CAPACITY_BYTES)
            .open()
            .map_err(|e| match e {
                sled::Error::Io(io) if io.to_string().contains("could not acquire lock") => {
                    StoreError::Locked {
                        path: path.display().to_string(),
                    }
                }
                sled::Error::Io(io) => crate::data_dir::open_error(data_dir, io),
                other => sled_error(other),
            })?;
        let store = Self {
            meta: db.open_tree("meta").map_err(sled_error)?,
            merchants: db.open_tree(MERCHANTS).map_err(sled_error)?,
            users: db.open_tree(USERS).map_err(sled_error)?,
            tokens: db.open_tree(TOKENS).map_err(sled_error)?,
            imported: db.open_tree(IMPORTED).map_err(sled_error)?,
            jwt_revocations: db.open_tree(JWT_REVOCATIONS).map_err(sled_error)?,
            signing_keys: db.open_tree(SIGNING_KEYS).map_err(sled_error)?,
            audit: db.open_tree(AUDIT).map_err(sled_error)?,
            db,
            hasher,
            clock,
            path,
        };
        store.check_schema()?;
        Ok(store)
    }

    /// Like [`SledStore::open_with`], but a store found locked is tried
    /// again until `patience` has passed. sled releases a database's lock
    /// when its own background threads let go of it, a moment after the
    /// last handle was dropped: a reopen in the same process can find it
    /// still held. Another process's lock is waited for just the same.
    pub fn open_with_patience(
        data_dir: &Path,
        hasher: SecretHasher,
        clock: Arc<dyn Clock>,
        patience: std::time::Duration,
    ) -> Result<Self> {
        let deadline = std::time::Instant::now() + patience;
        loop {
            match Self::open_with(data_dir, hasher.clone(), clock.clone()) {
                Err(StoreError::Locked { .. }) if std::time::Instant::now() < deadline => {
                    std::thread::sleep(std::time::Duration::from_millis(10));
                }
                other => return other,
            }
        }
    }

    /// Reads the schema version; stamps a new store with the current one;
    /// rolls back an import that a crash interrupted.
    fn check_schema(&self) -> Result<()> {
        if self
            .meta
            .contains_key(IMPORT_PENDING_KEY)
            .map_err(sled_error)?
        {
            self.undo_import()?;
        }
        match self.meta.get(SCHEMA_KEY).map_err(sled_error)? {
            Some(bytes) => {
                let found = <[u8; 4]>::try_from(bytes.as_ref())
                    .map(u32::from_be_bytes)
                    .map_err(|_| corrupt("meta", "schema version is not 4 bytes"))?;
                if found > SCHEMA_VERSION {
                    return Err(StoreError::SchemaTooNew {
                        path: self.path.display().to_string(),
                        found,
                        supported: SCHEMA_VERSION,
                    });
                }
                // Version 2 adds token fields that read as absent in
                // version 1's records: nothing to rewrite, only the version
                // (so that an older stamps refuses the store it cannot read).
                if found < SCHEMA_VERSION {
                    self.meta
                        .insert(SCHEMA_KEY, &SCHEMA_VERSION.to_be_bytes())
                        .map_err(sled_error)?;
                    self.flush()?;
                }
                Ok(())
            }
            None if self.is_empty() => {
                self.meta
                    .insert(SCHEMA_KEY, &SCHEMA_VERSION.to_be_bytes())
                    .map_err(sled_error)?;
                self.flush()
            }
            None => Err(corrupt("meta", "records without a schema version")),
        }
    }

    fn is_empty(&self) -> bool {
        self.merchants.is_empty() && self.users.is_empty() && self.tokens.is_empty()
    }

    /// Makes every write so far durable against a crash of this process.
    pub fn flush(&self) -> Result<()> {
        self.db.flush().map_err(sled_error)?;
        Ok(())
    }

    /// The size of the database on disk, in bytes.
    pub fn size_on_disk(&self) -> Result<u64> {
        self.db.size_on_disk().map_err(sled_error)
    }

    /// Proves the store takes writes: rewrites one small key of the `meta`
    /// tree (the current time; no record changes) and flushes it. For
    /// readiness checks, which should call it rarely: each call is a
    /// write to disk.
    pub fn probe_write(&self) -> Result<()> {
        self.meta
            .insert(WRITE_PROBE_KEY, &self.clock.now().to_be_bytes())
            .map_err(sled_error)?;
        self.flush()
    }

    fn accounts_tree(&self, kind: AccountKind) -> &Tree {
        match kind {
            AccountKind::Merchant => &self.merchants,
            AccountKind::User => &self.users,
        }
    }
}

/// Creates a data directory (and its parents) with mode 0700, or leaves an
/// existing one as it is: the store and the server's key file live there.
pub fn create_data_dir(dir: &Path) -> std::io::Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(dir)
}

fn corrupt(tree: &'static str, reason: impl ToString) -> StoreError {
    StoreError::Corrupt {
        tree: tree.into(),
        reason: reason.to_string(),
    }
}

fn encode(value: &impl Serialize) -> Result<Vec<u8>> {
    serde_json::to_vec(value).map_err(|e| StoreError::Backend(e.to_string()))
}

fn decode<T: DeserializeOwned>(tree: &'static str, bytes: &[u8]) -> Result<T> {
    serde_json::from_slice(bytes).map_err(|e| corrupt(tree, e))
}

/// The key of a revocation: one entry per jti, user or merchant.
fn revocation_key(target: &JwtRevocationTarget) -> Vec<u8> {
    let (tag, id) = match target {
        JwtRevocationTarget::Jti { jti } => {
            return [&b"j"[..], jti.to_string().as_bytes()].concat();
        }
        JwtRevocationTarget::User { id } => (b'u', id),
        JwtRevocationTarget::Merchant { id } => (b'm', id),
    };
    let mut key = vec![tag];
    key.extend_from_slice(&id.to_be_bytes());
    key
}

/// The highest u64 big-endian key of a tree, or 0 when it is empty.
fn last_sequence(tree: &Tree, name: &'static str) -> Result<u64> {
    match tree.last().map_err(sled_error)? {
        Some((key, _)) => <[u8; 8]>::try_from(key.as_ref())
            .map(u64::from_be_bytes)
            .map_err(|_| corrupt(name, "key is not 8 bytes")),
        None => Ok(0),
    }
}

/// The sequence number an audit record is keyed by.
fn batch_key(key: &[u8]) -> Result<u64> {
    <[u8; 8]>::try_from(key)
        .map(u64::from_be_bytes)
        .map_err(|_| corrupt(AUDIT, "key is not 8 bytes"))
}

fn tree_name(kind: AccountKind) -> &'static str {
    match kind {
        AccountKind::Merchant => MERCHANTS,
        AccountKind::User => USERS,
    }
}

/// Runs a sled transaction whose closure returns our errors.
fn abort<T>(e: StoreError) -> std::result::Result<T, ConflictableTransactionError<StoreError>> {
    Err(ConflictableTransactionError::Abort(e))
}

fn tx_result<T>(r: std::result::Result<T, TransactionError<StoreError>>) -> Result<T> {
    match r {
        Ok(value) => Ok(value),
        Err(TransactionError::Abort(e)) => Err(e),
        Err(TransactionError::Storage(e)) => Err(sled_error(e)),
    }
}

/// Reads and decodes inside a transaction.
fn tx_get<T: DeserializeOwned>(
    tree: &TransactionalTree,
    name: &'static str,
    key: &[u8],
) -> std::result::Result<Option<T>, ConflictableTransactionError<StoreError>> {
    match tree.get(key)? {
        None => Ok(None),
        Some(bytes) => match decode(name, &bytes) {
            Ok(value) => Ok(Some(value)),
            Err(e) => abort(e),
        },
    }
}

impl Store for SledStore {
    fn add_account(&self, kind: AccountKind, name: &str, id: Option<u64>) -> Result<Account> {
        validate_text("name", name)?;
        if let Some(id) = id {
            validate_id(kind, id)?;
        }
        let tree = self.accounts_tree(kind);
        // An allocated id is the highest one plus one; a concurrent writer
        // may take it first, so retry (bounded) on that race.
        for _ in 0..16 {
            let chosen = match id {
                Some(id) => id,
                None => {
                    let next = last_sequence(tree, tree_name(kind))?.saturating_add(1);
                    validate_id(kind, next)?;
                    next
                }
            };
            let account = Account {
                id: chosen,
                name: name.to_owned(),
                active: true,
                created_at: self.now(),
            };
            let swapped = tree
                .compare_and_swap(
                    chosen.to_be_bytes(),
                    None as Option<&[u8]>,
                    Some(encode(&account)?),
                )
                .map_err(sled_error)?;
            match swapped {
                Ok(()) => {
                    self.flush()?;
                    return Ok(account);
                }
                Err(_) if id.is_none() => continue,
                Err(_) => {
                    return Err(StoreError::Duplicate {
                        kind: kind.as_str().into(),
                        id: chosen.to_string(),
                    });
                }
            }
        }
        Err(StoreError::Backend(
            "could not allocate an id: too much contention".into(),
        ))
    }

    fn account(&self, kind: AccountKind, id: u64) -> Result<Option<Account>> {
        self.accounts_tree(kind)
            .get(id.to_be_bytes())
            .map_err(sled_error)?
            .map(|bytes| decode(tree_name(kind), &bytes))
            .transpose()
    }

    fn accounts(&self, kind: AccountKind) -> Result<Vec<Account>> {
        self.accounts_tree(kind)
            .iter()
            .values()
            .map(|bytes| decode(tree_name(kind), &bytes.map_err(sled_error)?))
            .collect()
    }

    fn set_account_active(&self, kind: AccountKind, id: u64, active: bool) -> Result<Account> {
        let name = tree_name(kind);
        let account = tx_result(self.accounts_tree(kind).transaction(|tree| {
            let key = id.to_be_bytes();
            let Some(mut account) = tx_get::<Account>(tree, name, &key)? else {
                return abort(StoreError::NotFound {
                    kind: kind.as_str().into(),
                    id: id.to_string(),
                });
            };
            account.active = active;
            match encode(&account) {
                Ok(bytes) => tree.insert(&key, bytes)?,
                Err(e) => return abort(e),
            };
            Ok(account)
        }))?;
        self.flush()?;
        Ok(account)
    }

    fn insert_tokens(&self, records: &[TokenRecord]) -> Result<()> {
        let encoded = records
            .iter()
            .map(|record| encode(record).map(|bytes| (record, bytes)))
            .collect::<Result<Vec<_>>>()?;
        let duplicate = |kind: &'static str, record: &TokenRecord| {
            abort(StoreError::Duplicate {
                kind: kind.into(),
                id: record.id.to_string(),
            })
        };
        tx_result(
            (&self.users, &self.merchants, &self.tokens, &self.imported).transaction(
                |(users, merchants, tokens, imported)| {
                    // A transaction reads its own writes: a repeat within
                    // the batch is found like one already stored.
                    for (record, bytes) in &encoded {
                        for (tree, kind, id) in [
                            (users, AccountKind::User, record.user_id),
                            (merchants, AccountKind::Merchant, record.merchant_id),
                        ] {
                            if tree.get(id.to_be_bytes())?.is_none() {
                                return abort(StoreError::NotFound {
                                    kind: kind.as_str().into(),
                                    id: id.to_string(),
                                });
                            }
                        }
                        let key = record.id.as_str().as_bytes();
                        if tokens.get(key)?.is_some() {
                            return duplicate("token", record);
                        }
                        if let Some(lookup) = &record.lookup {
                            if imported.get(lookup.as_bytes())?.is_some() {
                                return duplicate("imported token", record);
                            }
                            imported.insert(lookup.as_bytes().as_slice(), key)?;
                        }
                        tokens.insert(key, bytes.as_slice())?;
                    }
                    Ok(())
                },
            ),
        )?;
        self.flush()
    }

    fn record_last_used(&self, uses: &[(TokenId, UnixTime)]) -> Result<()> {
        let changed = tx_result(self.tokens.transaction(|tokens| {
            let mut changed = false;
            for (id, at) in uses {
                let key = id.as_str().as_bytes();
                let Some(mut record) = tx_get::<TokenRecord>(tokens, TOKENS, key)? else {
                    continue;
                };
                if record.last_used_at.is_some_and(|last| last >= *at) {
                    continue;
                }
                record.last_used_at = Some(*at);
                match encode(&record) {
                    Ok(bytes) => tokens.insert(key, bytes)?,
                    Err(e) => return abort(e),
                };
                changed = true;
            }
            Ok(changed)
        }))?;
        if changed {
            self.flush()?;
        }
        Ok(())
    }

    fn imported_token(&self, lookup: &LookupDigest) -> Result<Option<TokenRecord>> {
        let Some(id) = self.imported.get(lookup.as_bytes()).map_err(sled_error)? else {
            return Ok(None);
        };
        self.tokens
            .get(&id)
            .map_err(sled_error)?
            .map(|bytes| decode(TOKENS, &bytes))
            .transpose()
    }

    fn has_imported_tokens(&self) -> Result<bool> {
        Ok(!self.imported.is_empty())
    }

    fn token(&self, id: &TokenId) -> Result<Option<TokenRecord>> {
        self.tokens
            .get(id.as_str())
            .map_err(sled_error)?
            .map(|bytes| decode(TOKENS, &bytes))
            .transpose()
    }

    fn tokens(&self, filter: TokenFilter) -> Result<Vec<TokenRecord>> {
        let mut tokens = Vec::new();
        for bytes in self.tokens.iter().values() {
            let record: TokenRecord = decode(TOKENS, &bytes.map_err(sled_error)?)?;
            if filter.matches(&record) {
                tokens.push(record);
            }
        }
        tokens.sort_by_key(|t| (t.created_at, t.id));
        Ok(tokens)
    }

    fn revoke_token(&self, id: &TokenId) -> Result<TokenRecord> {
        let (record, _) = self.update_token(id, |record| {
            let changed = !record.revoked;
            record.revoked = true;
            changed
        })?;
        Ok(record)
    }

    fn replace_token_hash(&self, id: &TokenId, old_hash: &str, new_hash: &str) -> Result<bool> {
        let (_, replaced) = self.update_token(id, |record| {
            let replace = record.hash == old_hash;
            if replace {
                record.hash = new_hash.to_owned();
            }
            replace
        })?;
        Ok(replaced)
    }

    fn snapshot(&self) -> Result<Snapshot> {
        Ok(Snapshot {
            merchants: self.accounts(AccountKind::Merchant)?,
            users: self.accounts(AccountKind::User)?,
            tokens: self.tokens(TokenFilter::default())?,
        })
    }

    fn restore(&self, snapshot: &Snapshot) -> Result<SnapshotSummary> {
        self.import(snapshot)
    }

    fn revoke_jwts(&self, target: JwtRevocationTarget) -> Result<JwtRevocation> {
        if let Some((kind, id)) = target.account()
            && self.account(kind, id)?.is_none()
        {
            return Err(StoreError::NotFound {
                kind: kind.as_str().into(),
                id: id.to_string(),
            });
        }
        let revocation = JwtRevocation {
            target,
            revoked_at: self.now(),
        };
        self.jwt_revocations
            .insert(revocation_key(&target), encode(&revocation)?)
            .map_err(sled_error)?;
        self.flush()?;
        Ok(revocation)
    }

    fn jwt_revocations(&self) -> Result<Vec<JwtRevocation>> {
        self.jwt_revocations
            .iter()
            .values()
            .map(|bytes| decode(JWT_REVOCATIONS, &bytes.map_err(sled_error)?))
            .collect()
    }

    fn rotate_signing_key_with(&self, drop_previous: bool) -> Result<KeyInfo> {
        let key = stamps_core::SigningKey::random();
        for _ in 0..16 {
            let id = last_sequence(&self.signing_keys, SIGNING_KEYS)?.saturating_add(1);
            let record = SigningKeyRecord {
                id,
                created_at: self.now(),
                key: key.clone(),
                drops_previous: drop_previous,
            };
            let swapped = self
                .signing_keys
                .compare_and_swap(
                    id.to_be_bytes(),
                    None as Option<&[u8]>,
                    Some(encode(&record)?),
                )
                .map_err(sled_error)?;
            if swapped.is_ok() {
                self.flush()?;
                return Ok(record.info());
            }
        }
        Err(StoreError::Backend(
            "could not allocate a key id: too much contention".into(),
        ))
    }

    fn signing_keys(&self) -> Result<Vec<SigningKeyRecord>> {
        self.signing_keys
            .iter()
            .values()
            .map(|bytes| decode(SIGNING_KEYS, &bytes.map_err(sled_error)?))
            .collect()
    }

    fn prune(&self, expired_before: UnixTime) -> Result<PruneSummary> {
        let mut summary = PruneSummary::default();
        for revocation in self.jwt_revocations()? {
            if revocation.revoked_at < expired_before {
                let key = revocation_key(&revocation.target);
                // Only if unchanged: a newer revocation of the same target stays.
                let removed = self
                    .jwt_revocations
                    .compare_and_swap(&key, Some(encode(&revocation)?), None as Option<&[u8]>)
                    .map_err(sled_error)?;
                summary.revocations += usize::from(removed.is_ok());
            }
        }
        let keys = self.signing_keys()?;
        // A key stopped signing when the next one was made.
        for (key, next) in keys.iter().zip(keys.iter().skip(1)) {
            if next.created_at < expired_before {
                self.signing_keys
                    .remove(key.id.to_be_bytes())
                    .map_err(sled_error)?;
                summary.keys += 1;
            }
        }
        if summary != PruneSummary::default() {
            self.flush()?;
        }
        Ok(summary)
    }

    fn append_audit(&self, events: &[AuditEvent]) -> Result<()> {
        for event in events {
            event.validate()?;
        }
        self.append_entries(events.iter().map(Entry::Text))
    }

    fn append_jwt_issued(&self, issued: &[JwtIssued]) -> Result<()> {
        self.append_entries(issued.iter().map(Entry::JwtIssued))
    }

    fn audit(&self, since: UnixTime) -> Result<Vec<AuditEvent>> {
        let mut events = Vec::new();
        for item in self.audit.iter() {
            let (key, bytes) = item.map_err(sled_error)?;
            let batch = audit_codec::decode(batch_key(&key)?, &bytes)?;
            events.extend(batch.into_iter().filter(|e| e.at >= since));
        }
        Ok(events)
    }

    fn prune_audit(&self, before: UnixTime, max_events: usize) -> Result<usize> {
        // Batches come in sequence order, which is time order but for
        // clocks set back: the oldest first, until one is recent.
        let mut removed = 0;
        for item in self.audit.iter() {
            let (key, bytes) = item.map_err(sled_error)?;
            let (newest, count) = audit_codec::summary(&bytes)?;
            if newest >= before || removed >= max_events {
                break;
            }
            self.audit.remove(key).map_err(sled_error)?;
            removed += count;
        }
        if removed > 0 {
            self.flush()?;
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

impl SledStore {
    /// Appends events as one record, keyed by the first one's sequence
    /// number: one tree insert and one flush however many events (JWT
    /// issuance comes in batches from the HTTP side). `generate_id` is
    /// monotonic across restarts, so the trail keeps its order.
    fn append_entries<'a>(&self, entries: impl ExactSizeIterator<Item = Entry<'a>>) -> Result<()> {
        let mut sequenced = Vec::with_capacity(entries.len());
        for entry in entries {
            sequenced.push((self.db.generate_id().map_err(sled_error)?, entry));
        }
        let Some(&(first, _)) = sequenced.first() else {
            return Ok(());
        };
        let bytes = audit_codec::encode(first, &sequenced)?;
        self.audit
            .insert(first.to_be_bytes(), bytes)
            .map_err(sled_error)?;
        self.flush()
    }

    /// Read-modify-write of one token record in a transaction; `change`
    /// says whether it changed anything worth writing (it may run more than
    /// once, if the transaction is retried). Returns the record and whether
    /// it was written.
    fn update_token(
        &self,
        id: &TokenId,
        change: impl Fn(&mut TokenRecord) -> bool,
    ) -> Result<(TokenRecord, bool)> {
        let record = tx_result(self.tokens.transaction(|tokens| {
            let key = id.as_str().as_bytes();
            let Some(mut record) = tx_get::<TokenRecord>(tokens, TOKENS, key)? else {
                return abort(StoreError::NotFound {
                    kind: "token".into(),
                    id: id.to_string(),
                });
            };
            let changed = change(&mut record);
            if changed {
                match encode(&record) {
                    Ok(bytes) => tokens.insert(key, bytes)?,
                    Err(e) => return abort(e),
                };
            }
            Ok((record, changed))
        }))?;
        if record.1 {
            self.flush()?;
        }
        Ok(record)
    }
}
