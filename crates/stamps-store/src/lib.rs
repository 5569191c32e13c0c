//! The storage seam of stamps: merchants, users and static tokens (stored
//! with argon2id hashes only), JWT revocations, rotated signing keys and
//! the audit trail, behind one trait. No backend lives here.
//!
//! The [`Store`] trait is the seam between the rest of stamps and storage:
//! the server and the admin command line use the trait. The backends are
//! crates of their own: `stamps-store-sled` (the embedded default) and
//! `stamps-store-postgres` (one database shared by several replicas). While
//! a server holds its store open, other processes (the admin command line)
//! reach it through [`RemoteStore`], over the server's local
//! [`AdminSocket`]. [`MemoryStore`] keeps it all in memory, for tests and
//! examples. The `conformance` module (feature `conformance`) is the model
//! every backend is tested against.
//!
//! Rules every backend keeps:
//!
//! * a static token's secret is never written anywhere, only its argon2id
//!   hash ([`SecretHasher`], OWASP parameters);
//! * a presented token is found by its public id in O(1), and at most one
//!   hash is checked for it;
//! * every operation is validated and atomic: on error nothing changed;
//! * a write is durable (flushed) before the call returns.
//!
//! # Example
//!
//! ```
//! use stamps_store::{AccountKind, MemoryStore, Store, TokenCheck};
//!
//! // Any backend: stamps_store_sled::SledStore::open(dir) for the embedded one.
//! let store = MemoryStore::new();
//! store.add_account(AccountKind::Merchant, "My Merchant", Some(1))?;
//! store.add_account(AccountKind::User, "user5870", Some(5870))?;
//! let issued = store.create_token(5870, 1, Some("till 3"))?;
//! assert!(matches!(store.check_token(&issued.token)?, TokenCheck::Live(_)));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
#![deny(missing_docs)]

mod changes;
#[cfg(feature = "conformance")]
pub mod conformance;
mod error;
mod hashing;
mod memory;
mod records;
mod remote;
mod served;
mod snapshot;

pub use changes::{Change, ChangeFeed, FeedEvent};
pub use error::{Result, StoreError};
pub use hashing::{OWASP_ITERATIONS, OWASP_MEMORY_KIB, OWASP_PARALLELISM, SecretHasher};
pub use memory::MemoryStore;
pub use records::{
    Account, AccountKind, AuditEvent, IssuedToken, JwtIssued, JwtRevocation, JwtRevocationTarget,
    KeyInfo, MAX_TEXT_CHARS, PruneSummary, Refusal, SigningKeyRecord, TokenCheck, TokenFilter,
    TokenImport, TokenRecord, validate_id, validate_text,
};
pub use remote::{
    ADMIN_SOCKET_FILE, ADMIN_TIMEOUT, AdminDown, AdminHealth, AdminShutdown, AdminSocket,
    MAX_LINE_BYTES, RemoteStore, Request, Response, admin_socket_path, serve_connection,
    serve_connection_limited,
};
pub use served::ServedStore;
pub use snapshot::{SCHEMA_VERSION, Snapshot, SnapshotSummary};

use std::collections::HashMap;

use stamps_core::{
    ExposeSecret, LookupDigest, LookupKey, StaticToken, TokenId, UnixTime, check_imported_text,
};

/// What stamps needs from storage. Implemented by each backend; the
/// provided methods hold the logic that does not depend on the backend.
pub trait Store: Send + Sync {
    /// Adds a merchant or user, with the given id or the next free one.
    fn add_account(&self, kind: AccountKind, name: &str, id: Option<u64>) -> Result<Account>;

    /// The merchant or user with this id, if any.
    fn account(&self, kind: AccountKind, id: u64) -> Result<Option<Account>>;

    /// Every merchant or every user, by id.
    fn accounts(&self, kind: AccountKind) -> Result<Vec<Account>>;

    /// Enables or disables a merchant or user; returns it as it now is.
    fn set_account_active(&self, kind: AccountKind, id: u64, active: bool) -> Result<Account>;

    /// Stores new token records, all or none, atomically checking that
    /// each one's user and merchant exist, that its id is free and, for an
    /// imported token, that no other token has its lookup digest
    /// ([`StoreError::Duplicate`] of kind `token` or `imported token`,
    /// naming the new record's id).
    fn insert_tokens(&self, records: &[TokenRecord]) -> Result<()>;

    /// Stores one new token record ([`Store::insert_tokens`]).
    fn insert_token(&self, record: &TokenRecord) -> Result<()> {
        self.insert_tokens(std::slice::from_ref(record))
    }

    /// Records when tokens last authenticated: each `(id, at)` moves its
    /// token's `last_used_at` to `at` unless it is already later (several
    /// replicas report; the latest wins). Unknown ids are skipped. Servers
    /// call it with a batch every few seconds, never per request.
    fn record_last_used(&self, uses: &[(TokenId, UnixTime)]) -> Result<()>;

    /// The imported token with this lookup digest, if any: one keyed read.
    fn imported_token(&self, lookup: &LookupDigest) -> Result<Option<TokenRecord>>;

    /// Whether any imported token is stored (revoked ones too): a server
    /// with none never computes a lookup digest for a presented text.
    fn has_imported_tokens(&self) -> Result<bool>;

    /// The token with this public id, if any: one keyed read.
    fn token(&self, id: &TokenId) -> Result<Option<TokenRecord>>;

    /// The tokens passing `filter`, oldest first.
    fn tokens(&self, filter: TokenFilter) -> Result<Vec<TokenRecord>>;

    /// Marks a token revoked (revoking twice is not an error); returns it.
    fn revoke_token(&self, id: &TokenId) -> Result<TokenRecord>;

    /// Replaces a token's hash if it is still `old_hash` (after a rehash
    /// under new parameters). Returns whether it was replaced.
    fn replace_token_hash(&self, id: &TokenId, old_hash: &str, new_hash: &str) -> Result<bool>;

    /// Everything in the store (hashes, never secrets), for export.
    fn snapshot(&self) -> Result<Snapshot>;

    /// Loads a validated snapshot into an empty store, all or nothing.
    fn restore(&self, snapshot: &Snapshot) -> Result<SnapshotSummary>;

    /// Records a JWT revocation made now (see [`JwtRevocation`]); revoking
    /// a user or merchant again moves its cut-off forward. A user or
    /// merchant must exist.
    fn revoke_jwts(&self, target: JwtRevocationTarget) -> Result<JwtRevocation>;

    /// Every JWT revocation not yet pruned.
    fn jwt_revocations(&self) -> Result<Vec<JwtRevocation>>;

    /// Makes a new random signing key, which signs from now on; returns it
    /// without its secret.
    fn rotate_signing_key(&self) -> Result<KeyInfo> {
        self.rotate_signing_key_with(false)
    }

    /// [`Store::rotate_signing_key`]; with `drop_previous` (the emergency:
    /// `key rotate --drop-previous`), every earlier key, the configured one
    /// included, stops verifying at once ([`SigningKeyRecord::drops_previous`]).
    fn rotate_signing_key_with(&self, drop_previous: bool) -> Result<KeyInfo>;

    /// Every signing key made by rotation and not yet pruned, oldest first.
    fn signing_keys(&self) -> Result<Vec<SigningKeyRecord>>;

    /// Removes what can no longer refuse or verify anything: revocations
    /// made before `expired_before`, and signing keys replaced before it
    /// (the newest key always stays). Callers pass `now - lifetime - leeway`.
    fn prune(&self, expired_before: UnixTime) -> Result<PruneSummary>;

    /// Appends events to the audit trail, in order, durably.
    fn append_audit(&self, events: &[AuditEvent]) -> Result<()>;

    /// Appends the JWTs get-access-token issued to the audit trail, in
    /// order, durably. They are the bulk of the trail: a backend may store
    /// them compactly, and may refuse them ([`StoreError::Full`]) while
    /// other writes still succeed, so that the trail never takes the space
    /// revocations and other changes need (sled's `ResilientStore`). By
    /// default they are appended as the text events
    /// [`JwtIssued::to_event`] makes.
    fn append_jwt_issued(&self, issued: &[JwtIssued]) -> Result<()> {
        let events: Vec<AuditEvent> = issued.iter().map(|i| i.to_event(0)).collect();
        self.append_audit(&events)
    }

    /// The audit trail from `since` on (seconds since the epoch), oldest
    /// first.
    fn audit(&self, since: UnixTime) -> Result<Vec<AuditEvent>>;

    /// Deletes audit events older than `before`, the oldest first, about
    /// `max_events` at most (a backend may delete a whole batch more);
    /// returns how many it deleted. Callers prune in small steps, off the
    /// request path, until it returns 0.
    fn prune_audit(&self, before: UnixTime, max_events: usize) -> Result<usize>;

    /// The hasher for token secrets.
    fn hasher(&self) -> &SecretHasher;

    /// The current time, for `created_at`.
    fn now(&self) -> UnixTime;

    /// Creates a static token for `user_id` at `merchant_id` that never
    /// expires. The returned [`IssuedToken`] holds the only copy of the
    /// secret.
    fn create_token(
        &self,
        user_id: u64,
        merchant_id: u64,
        label: Option<&str>,
    ) -> Result<IssuedToken> {
        self.create_expiring_token(user_id, merchant_id, label, None)
    }

    /// [`Store::create_token`], expiring at `expires_at` (seconds since the
    /// epoch; `None`: never), which must be in the future
    /// ([`StoreError::ExpiryPast`]).
    fn create_expiring_token(
        &self,
        user_id: u64,
        merchant_id: u64,
        label: Option<&str>,
        expires_at: Option<UnixTime>,
    ) -> Result<IssuedToken> {
        if let Some(label) = label {
            validate_text("label", label)?;
        }
        let now = self.now();
        if let Some(expires_at) = expires_at.filter(|at| *at <= now) {
            return Err(StoreError::ExpiryPast { expires_at, now });
        }
        // 80-bit random ids do not collide in practice; retry a few times
        // rather than trust that blindly.
        let mut attempts = 0;
        loop {
            let token = StaticToken::generate();
            let record = TokenRecord {
                id: *token.id(),
                user_id,
                merchant_id,
                label: label.map(str::to_owned),
                hash: self.hasher().hash(token.secret())?,
                created_at: now,
                revoked: false,
                expires_at,
                last_used_at: None,
                lookup: None,
            };
            match self.insert_token(&record) {
                Err(StoreError::Duplicate { .. }) if attempts < 3 => attempts += 1,
                Err(e) => return Err(e),
                Ok(()) => return Ok(IssuedToken { record, token }),
            }
        }
    }

    /// Checks a presented (already parsed) static token: one keyed lookup,
    /// then one argon2id verification if and only if the id exists (and is
    /// an issued token's: an imported token is presented as its own text).
    ///
    /// The secret is checked before anything else about the record, so a
    /// caller without the secret learns nothing (revoked, expired and
    /// unknown look alike). A hash made under older parameters is replaced
    /// on success.
    fn check_token(&self, token: &StaticToken) -> Result<TokenCheck> {
        match self.token(token.id())? {
            Some(record) if !record.is_imported() => {
                check_record(self, record, token.secret().expose_secret())
            }
            _ => Ok(TokenCheck::Refused(Refusal::Unknown)),
        }
    }

    /// Checks a presented imported token, `text`, whose digest under the
    /// lookup key is `lookup`: one keyed lookup, then one argon2id
    /// verification of the whole text if and only if the digest is
    /// stored; then as [`Store::check_token`].
    fn check_imported(&self, text: &str, lookup: &LookupDigest) -> Result<TokenCheck> {
        match self.imported_token(lookup)? {
            Some(record) => check_record(self, record, text),
            None => Ok(TokenCheck::Refused(Refusal::Unknown)),
        }
    }

    /// Imports the tokens clients of an existing deployment already hold
    /// (CONTRACT §2), all or none: each text must be importable
    /// ([`check_imported_text`]), appear once, and be stored by no other
    /// token; each user and merchant must exist, each label be valid and
    /// each expiry in the future. Otherwise [`StoreError::InvalidImport`]
    /// names the first bad entry (1-based, as the lines of a file), never
    /// its text, and nothing is stored. Each gets a random public id, an
    /// argon2id hash of its text and its digest under `key`; the records
    /// are returned.
    fn import_tokens(&self, imports: &[TokenImport], key: &LookupKey) -> Result<Vec<TokenRecord>> {
        let invalid = |line: usize, reason: String| StoreError::InvalidImport { line, reason };
        let now = self.now();
        let mut seen: HashMap<LookupDigest, usize> = HashMap::with_capacity(imports.len());
        let mut digests = Vec::with_capacity(imports.len());
        for (index, import) in imports.iter().enumerate() {
            let line = index + 1;
            let text = import.text.expose_secret();
            check_imported_text(text).map_err(|e| invalid(line, e.to_string()))?;
            if let Some(label) = &import.label {
                validate_text("label", label).map_err(|e| invalid(line, e.to_string()))?;
            }
            if let Some(expires_at) = import.expires_at.filter(|at| *at <= now) {
                let e = StoreError::ExpiryPast { expires_at, now };
                return Err(invalid(line, e.to_string()));
            }
            for (kind, id) in [
                (AccountKind::User, import.user_id),
                (AccountKind::Merchant, import.merchant_id),
            ] {
                if self.account(kind, id)?.is_none() {
                    return Err(invalid(line, format!("no {} with id {id}", kind.as_str())));
                }
            }
            let digest = key.digest(text);
            if let Some(first) = seen.insert(digest, line) {
                return Err(invalid(line, format!("the same token as line {first}")));
            }
            if self.imported_token(&digest)?.is_some() {
                return Err(invalid(line, "this token is already stored".to_owned()));
            }
            digests.push(digest);
        }
        // Hashed only once every entry is known to be good.
        let mut records = Vec::with_capacity(imports.len());
        for (import, digest) in imports.iter().zip(digests) {
            records.push(TokenRecord {
                id: *StaticToken::generate().id(),
                user_id: import.user_id,
                merchant_id: import.merchant_id,
                label: import.label.clone(),
                hash: self.hasher().hash_text(import.text.expose_secret())?,
                created_at: now,
                revoked: false,
                expires_at: import.expires_at,
                last_used_at: None,
                lookup: Some(digest),
            });
        }
        match self.insert_tokens(&records) {
            // Raced by another import, or (once in 2^80) an id taken.
            Err(StoreError::Duplicate { kind, id }) => {
                let line = records
                    .iter()
                    .position(|r| r.id.as_str() == id)
                    .map_or(1, |i| i + 1);
                Err(invalid(line, format!("a {kind} like it is already stored")))
            }
            other => other.map(|()| records),
        }
    }
}

/// The rules after the lookup, for issued and imported tokens alike: the
/// secret (or text) first, then revoked, expired, the user and the merchant
/// active; a hash made under older parameters is replaced on success.
fn check_record<S: Store + ?Sized>(
    store: &S,
    record: TokenRecord,
    secret: &str,
) -> Result<TokenCheck> {
    if !store.hasher().verify_text(&record.hash, secret) {
        return Ok(TokenCheck::Refused(Refusal::WrongSecret));
    }
    if record.revoked {
        return Ok(TokenCheck::Refused(Refusal::Revoked));
    }
    if record.is_expired(store.now()) {
        return Ok(TokenCheck::Refused(Refusal::Expired));
    }
    let active = |kind, id| Ok::<_, StoreError>(store.account(kind, id)?.is_some_and(|a| a.active));
    if !active(AccountKind::User, record.user_id)? {
        return Ok(TokenCheck::Refused(Refusal::UserDisabled));
    }
    if !active(AccountKind::Merchant, record.merchant_id)? {
        return Ok(TokenCheck::Refused(Refusal::MerchantDisabled));
    }
    if store.hasher().needs_rehash(&record.hash) {
        // Best effort: a failed rehash leaves the old, still valid hash.
        if let Ok(new_hash) = store.hasher().hash_text(secret) {
            let _ = store.replace_token_hash(&record.id, &record.hash, &new_hash);
        }
    }
    Ok(TokenCheck::Live(record))
}
