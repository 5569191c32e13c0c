//! [`ResilientStore`]: the server's [`SledStore`], kept usable through a
//! full disk without a restart.
//!
//! sled 0.34 remembers the first I/O error of a log write and fails every
//! later write with it, for the life of the open database, even once the
//! cause is gone; the write that met the error stays visible in memory
//! although it never reached the disk. Only reopening the database clears
//! both. So this wrapper:
//!
//! 1. refuses a write with [`StoreError::Full`], before sled sees it, while
//!    less than a reserve is free on the store's file system: sled is never
//!    poisoned by a disk that simply filled up, reads go on, and writes work
//!    again as soon as space is freed;
//! 2. after a write that fails in storage all the same (the reserve was not
//!    enough, a quota, the file size limit, an I/O error), drops and reopens
//!    the database at once, so that what is read is what is on disk;
//! 3. if it cannot reopen (sled writes a snapshot when it opens, which a
//!    full disk refuses), stays closed: every call fails with the cause,
//!    and the next call after [`REOPEN_INTERVAL`] tries again.
//!
//! See docs/STORAGE.md, "Disk full".

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError, RwLock, RwLockReadGuard};
use std::time::{Duration, Instant};

use stamps_core::{Clock, LookupDigest, SystemClock, TokenId, UnixTime};

use crate::sled_store::SledStore;
use stamps_store::SecretHasher;
use stamps_store::{
    Account, AccountKind, AuditEvent, JwtIssued, JwtRevocation, JwtRevocationTarget, KeyInfo,
    PruneSummary, SigningKeyRecord, TokenFilter, TokenRecord,
};
use stamps_store::{Result, StoreError};
use stamps_store::{ServedStore, Store};
use stamps_store::{Snapshot, SnapshotSummary};

/// Below this much free space on the store's file system, writes are
/// refused with [`StoreError::Full`] before they reach sled.
pub const DEFAULT_SPACE_RESERVE: u64 = 4 * 1024 * 1024;

/// Below this much free space (by default; four times the reserve), the
/// JWTs issued are no longer appended to the audit trail
/// ([`Store::append_jwt_issued`]): the trail, which any holder of a static
/// token makes grow, stops first, and the space between the two reserves
/// is left to revocations, disabling and every other change.
pub const AUDIT_SPACE_RESERVE: u64 = 4 * DEFAULT_SPACE_RESERVE;

/// A closed store tries to reopen at most this often.
pub const REOPEN_INTERVAL: Duration = Duration::from_secs(1);

/// How long a reopen waits for the dropped database's threads to release
/// its lock.
const RELEASE_PATIENCE: Duration = Duration::from_secs(5);

/// A [`SledStore`] that refuses writes before the disk is full, and reopens
/// itself after a storage failure. Every [`Store`] call runs on the store
/// open at the time; see the module documentation.
pub struct ResilientStore {
    dir: PathBuf,
    hasher: SecretHasher,
    clock: Arc<dyn Clock>,
    reserve: u64,
    /// `None` while closed.
    current: RwLock<Option<Generation>>,
    closed: Mutex<Closed>,
}

/// One opening of the database.
struct Generation {
    store: SledStore,
    number: u64,
}

/// Why the store is closed, and when it last tried to reopen.
#[derive(Default)]
struct Closed {
    cause: Option<StoreError>,
    last_attempt: Option<Instant>,
    opened: u64,
}

impl std::fmt::Debug for ResilientStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResilientStore")
            .field("dir", &self.dir)
            .field("reserve", &self.reserve)
            .field("open", &self.is_open())
            .finish_non_exhaustive()
    }
}

impl ResilientStore {
    /// Opens the store in `data_dir` as [`SledStore::open`] does, keeping
    /// [`DEFAULT_SPACE_RESERVE`] free.
    pub fn open(data_dir: &Path) -> Result<Self> {
        Self::open_with(
            data_dir,
            SecretHasher::owasp(),
            Arc::new(SystemClock),
            DEFAULT_SPACE_RESERVE,
        )
    }

    /// Opens the store with a given hasher, clock and space reserve (in
    /// bytes; 0 leaves every write to sled).
    pub fn open_with(
        data_dir: &Path,
        hasher: SecretHasher,
        clock: Arc<dyn Clock>,
        reserve: u64,
    ) -> Result<Self> {
        let store = SledStore::open_with(data_dir, hasher.clone(), clock.clone())?;
        Ok(Self {
            dir: data_dir.to_owned(),
            hasher,
            clock,
            reserve,
            current: RwLock::new(Some(Generation { store, number: 0 })),
            closed: Mutex::default(),
        })
    }

    /// True unless a storage failure closed the store and it has not been
    /// reopened yet.
    pub fn is_open(&self) -> bool {
        self.read_current().is_some()
    }

    /// Makes every write so far durable ([`SledStore::flush`]). A closed
    /// store has nothing to flush: every write it acknowledged was flushed
    /// before it returned.
    pub fn flush(&self) -> Result<()> {
        match self.read_current().as_ref() {
            Some(current) => current.store.flush(),
            None => Ok(()),
        }
    }

    /// Proves the store takes writes ([`SledStore::probe_write`]) the way
    /// every write goes: refused with [`StoreError::Full`] while less than
    /// the reserve is free, and followed by a reopen if it fails in
    /// storage. `Ok` means open and writable at this moment. Each call
    /// writes to disk: readiness checks should cache its answer.
    pub fn probe_write(&self) -> Result<()> {
        self.write(SledStore::probe_write)
    }

    /// The size of the open database on disk, in bytes
    /// ([`SledStore::size_on_disk`]); `None` while the store is closed.
    /// Reads file sizes only: cheap enough for every metrics scrape.
    pub fn size_on_disk(&self) -> Option<u64> {
        self.read_current()
            .as_ref()
            .and_then(|open| open.store.size_on_disk().ok())
    }

    fn read_current(&self) -> RwLockReadGuard<'_, Option<Generation>> {
        self.current.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn lock_closed(&self) -> std::sync::MutexGuard<'_, Closed> {
        self.closed.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Runs a reading call on the open store (reopening it first if it is
    /// closed and due for a try).
    fn read<T>(&self, call: impl FnOnce(&SledStore) -> Result<T>) -> Result<T> {
        self.run(call).0
    }

    /// Runs a writing call: refused while space is short, and followed by a
    /// reopen if it failed in storage.
    fn write<T>(&self, call: impl FnOnce(&SledStore) -> Result<T>) -> Result<T> {
        self.check_space(self.reserve).inspect_err(|e| {
            tracing::warn!(error = %e, "a store write was refused; reads go on");
        })?;
        self.write_unchecked(call)
    }

    /// Runs a write whose free space was checked, reopening after a storage
    /// failure.
    fn write_unchecked<T>(&self, call: impl FnOnce(&SledStore) -> Result<T>) -> Result<T> {
        let (result, generation) = self.run(call);
        if let (Err(e), Some(generation)) = (&result, generation)
            && e.is_storage_failure()
        {
            self.reopen_after(generation, e);
        }
        result
    }

    fn run<T>(&self, call: impl FnOnce(&SledStore) -> Result<T>) -> (Result<T>, Option<u64>) {
        if !self.is_open()
            && let Err(e) = self.try_reopen()
        {
            return (Err(e), None);
        }
        let current = self.read_current();
        match current.as_ref() {
            Some(open) => (call(&open.store), Some(open.number)),
            None => (Err(self.closed_error()), None),
        }
    }

    /// [`StoreError::Full`] when less than `reserve` is free.
    fn check_space(&self, reserve: u64) -> Result<()> {
        if reserve == 0 {
            return Ok(());
        }
        match fs2::available_space(&self.dir) {
            Ok(free) if free < reserve => Err(StoreError::Full(format!(
                "{} free on its file system, less than the {} stamps keeps in reserve",
                bytes(free),
                bytes(reserve)
            ))),
            // Space unknown: let the write find out.
            _ => Ok(()),
        }
    }

    /// Drops the database that failed (unless another call already did) and
    /// opens it again; closed if that fails.
    fn reopen_after(&self, generation: u64, cause: &StoreError) {
        let mut current = self.current.write().unwrap_or_else(PoisonError::into_inner);
        if current.as_ref().map(|open| open.number) != Some(generation) {
            return;
        }
        tracing::error!(error = %cause, "a store write failed in storage; reopening the store");
        if let Some(failed) = current.take() {
            close_aside(failed.store);
        }
        if let Err(e) = self.open_again_into(&mut current) {
            tracing::error!(
                error = %e,
                "the store is closed: it cannot be reopened; until it is, requests that \
                 need it fail (503), JWTs are still verified; it is retried every {}s",
                REOPEN_INTERVAL.as_secs()
            );
        }
    }

    /// Reopens a closed store, at most once per [`REOPEN_INTERVAL`].
    fn try_reopen(&self) -> Result<()> {
        {
            let mut closed = self.lock_closed();
            if closed
                .last_attempt
                .is_some_and(|last| last.elapsed() < REOPEN_INTERVAL)
            {
                return Err(closed_error(&closed));
            }
            closed.last_attempt = Some(Instant::now());
        }
        let mut current = self.current.write().unwrap_or_else(PoisonError::into_inner);
        if current.is_some() {
            return Ok(());
        }
        self.open_again_into(&mut current)
    }

    /// Opens the database into `current`; or, if that fails, records why
    /// it stays closed and returns the error calls now fail with.
    fn open_again_into(&self, current: &mut Option<Generation>) -> Result<()> {
        let reopened = self.open_again();
        let mut closed = self.lock_closed();
        closed.last_attempt = Some(Instant::now());
        match reopened {
            Ok(store) => {
                closed.opened += 1;
                *current = Some(Generation {
                    store,
                    number: closed.opened,
                });
                closed.cause = None;
                tracing::info!("store reopened: reads and writes go on");
                Ok(())
            }
            Err(e) => {
                closed.cause = Some(e);
                Err(closed_error(&closed))
            }
        }
    }

    /// Opens the database, waiting (bounded) for the threads of the one
    /// just dropped to release its lock.
    fn open_again(&self) -> Result<SledStore> {
        SledStore::open_with_patience(
            &self.dir,
            self.hasher.clone(),
            self.clock.clone(),
            RELEASE_PATIENCE,
        )
    }

    fn closed_error(&self) -> StoreError {
        closed_error(&self.lock_closed())
    }
}

/// Drops a failed database on a thread of its own: sled's lock on its files
/// goes with it, but a panic or a stall in sled's shutdown (a background
/// thread that died) stays there, and [`ResilientStore::open_again`] gives
/// up waiting for the lock after [`RELEASE_PATIENCE`] instead of hanging.
fn close_aside(store: SledStore) {
    let spawned = std::thread::Builder::new()
        .name("stamps-store-close".into())
        .spawn(move || drop(store));
    if let Err(e) = spawned {
        tracing::warn!(error = %e, "cannot start a thread to close the failed store");
    }
}

/// The error every call of a closed store fails with: its cause, or what
/// stands for it.
fn closed_error(closed: &Closed) -> StoreError {
    match &closed.cause {
        Some(StoreError::Full(cause)) => StoreError::Full(cause.clone()),
        Some(other) => StoreError::Backend(format!(
            "the store is closed after a storage failure and could not be reopened: {other}"
        )),
        None => StoreError::Backend("the store is closed after a storage failure".to_owned()),
    }
}

/// `n` bytes, for people.
fn bytes(n: u64) -> String {
    const KIB: u64 = 1024;
    const MIB: u64 = 1024 * KIB;
    if n >= MIB {
        format!("{} MiB", n / MIB)
    } else if n >= KIB {
        format!("{} KiB", n / KIB)
    } else {
        format!("{n} bytes")
    }
}

impl Store for ResilientStore {
    fn add_account(&self, kind: AccountKind, name: &str, id: Option<u64>) -> Result<Account> {
        self.write(|s| s.add_account(kind, name, id))
    }

    fn account(&self, kind: AccountKind, id: u64) -> Result<Option<Account>> {
        self.read(|s| s.account(kind, id))
    }

    fn accounts(&self, kind: AccountKind) -> Result<Vec<Account>> {
        self.read(|s| s.accounts(kind))
    }

    fn set_account_active(&self, kind: AccountKind, id: u64, active: bool) -> Result<Account> {
        self.write(|s| s.set_account_active(kind, id, active))
    }

    fn insert_tokens(&self, records: &[TokenRecord]) -> Result<()> {
        self.write(|s| s.insert_tokens(records))
    }

    fn record_last_used(&self, uses: &[(TokenId, UnixTime)]) -> Result<()> {
        self.write(|s| s.record_last_used(uses))
    }

    fn imported_token(&self, lookup: &LookupDigest) -> Result<Option<TokenRecord>> {
        self.read(|s| s.imported_token(lookup))
    }

    fn has_imported_tokens(&self) -> Result<bool> {
        self.read(|s| s.has_imported_tokens())
    }

    fn token(&self, id: &TokenId) -> Result<Option<TokenRecord>> {
        self.read(|s| s.token(id))
    }

    fn tokens(&self, filter: TokenFilter) -> Result<Vec<TokenRecord>> {
        self.read(|s| s.tokens(filter))
    }

    fn revoke_token(&self, id: &TokenId) -> Result<TokenRecord> {
        self.write(|s| s.revoke_token(id))
    }

    fn replace_token_hash(&self, id: &TokenId, old_hash: &str, new_hash: &str) -> Result<bool> {
        self.write(|s| s.replace_token_hash(id, old_hash, new_hash))
    }

    fn snapshot(&self) -> Result<Snapshot> {
        self.read(SledStore::snapshot)
    }

    fn restore(&self, snapshot: &Snapshot) -> Result<SnapshotSummary> {
        self.write(|s| s.restore(snapshot))
    }

    fn revoke_jwts(&self, target: JwtRevocationTarget) -> Result<JwtRevocation> {
        self.write(|s| s.revoke_jwts(target))
    }

    fn jwt_revocations(&self) -> Result<Vec<JwtRevocation>> {
        self.read(SledStore::jwt_revocations)
    }

    fn rotate_signing_key_with(&self, drop_previous: bool) -> Result<KeyInfo> {
        self.write(|s| s.rotate_signing_key_with(drop_previous))
    }

    fn signing_keys(&self) -> Result<Vec<SigningKeyRecord>> {
        self.read(SledStore::signing_keys)
    }

    fn prune(&self, expired_before: UnixTime) -> Result<PruneSummary> {
        self.write(|s| s.prune(expired_before))
    }

    fn append_audit(&self, events: &[AuditEvent]) -> Result<()> {
        self.write(|s| s.append_audit(events))
    }

    /// Refused while less than four times the reserve is free
    /// ([`AUDIT_SPACE_RESERVE`] by default), without a log line: the
    /// audit writer reports it.
    fn append_jwt_issued(&self, issued: &[JwtIssued]) -> Result<()> {
        self.check_space(self.reserve.saturating_mul(4))?;
        self.write_unchecked(|s| s.append_jwt_issued(issued))
    }

    fn audit(&self, since: UnixTime) -> Result<Vec<AuditEvent>> {
        self.read(|s| s.audit(since))
    }

    fn prune_audit(&self, before: UnixTime, max_events: usize) -> Result<usize> {
        self.write(|s| s.prune_audit(before, max_events))
    }

    fn hasher(&self) -> &SecretHasher {
        &self.hasher
    }

    fn now(&self) -> UnixTime {
        self.clock.now()
    }
}

/// The server's view of the embedded store: held by one server, closed
/// while a storage failure lasts.
impl ServedStore for ResilientStore {
    fn probe_write(&self) -> Result<()> {
        ResilientStore::probe_write(self)
    }

    fn size_on_disk(&self) -> Result<u64> {
        ResilientStore::size_on_disk(self)
            .ok_or_else(|| StoreError::Backend("the store is closed".into()))
    }

    fn is_open(&self) -> bool {
        ResilientStore::is_open(self)
    }

    fn flush(&self) -> Result<()> {
        ResilientStore::flush(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A store with cheap hashing and a fixed clock, keeping `reserve` free.
    fn open_test_store(dir: &Path, reserve: u64) -> ResilientStore {
        ResilientStore::open_with(
            dir,
            SecretHasher::with_params(8, 1, 1).unwrap(),
            Arc::new(stamps_core::ManualClock::new(1)),
            reserve,
        )
        .unwrap()
    }

    #[test]
    fn sizes_read_well() {
        assert_eq!(bytes(0), "0 bytes");
        assert_eq!(bytes(1023), "1023 bytes");
        assert_eq!(bytes(12 * 1024 + 5), "12 KiB");
        assert_eq!(bytes(DEFAULT_SPACE_RESERVE), "4 MiB");
    }

    #[test]
    fn a_reserve_larger_than_the_file_system_refuses_writes_and_reads_go_on() {
        let dir = tempfile::tempdir().unwrap();
        let store = open_test_store(dir.path(), 0);
        store
            .add_account(AccountKind::Merchant, "m", Some(1))
            .unwrap();
        drop(store);

        let store = open_test_store(dir.path(), u64::MAX);
        let e = store
            .add_account(AccountKind::Merchant, "n", Some(2))
            .unwrap_err();
        assert!(
            matches!(&e, StoreError::Full(c) if c.contains("reserve")),
            "{e}"
        );
        assert!(store.is_open());
        assert_eq!(store.accounts(AccountKind::Merchant).unwrap().len(), 1);
        // The write probe says so too, and changes no record.
        assert!(matches!(store.probe_write(), Err(StoreError::Full(_))));
        assert!(store.is_open());
    }

    #[test]
    fn the_write_probe_writes_no_record_and_the_size_is_known() {
        let dir = tempfile::tempdir().unwrap();
        let store = open_test_store(dir.path(), 0);
        let before = store.snapshot().unwrap();
        store.probe_write().unwrap();
        store.probe_write().unwrap();
        assert_eq!(store.snapshot().unwrap(), before);
        assert!(store.size_on_disk().is_some_and(|bytes| bytes > 0));
    }
}
