//! The PostgreSQL backend of stamps' [`Store`]: several `stamps-server`
//! replicas share one database, and each follows the others' changes.
//!
//! [`PgStore`] keeps the sled backend's semantics (validated, atomic
//! operations; argon2id hashes only; the same [`StoreError`]s), so the
//! model-based test of the store runs against both. What it adds:
//!
//! * **Versioned migrations**, applied by [`PgStore::open`] under an
//!   advisory lock, so replicas starting at once migrate once.
//! * **A change log.** Every change that servers keep in memory (accounts,
//!   static token and JWT revocations, signing keys, imports) writes a
//!   [`Change`] row in the same transaction, and `NOTIFY stamps_changes`.
//!   Writers take an advisory transaction lock before they number the row,
//!   so rows commit in sequence order and a follower reading "after the
//!   last one I saw" never skips one. [`PgStore::change_feed`] follows it:
//!   woken by the notification, with a short poll as the backstop.
//!
//! # Example
//!
//! ```no_run
//! use stamps_store::{AccountKind, Store};
//! use stamps_store_postgres::PgStore;
//!
//! let store = PgStore::open("postgres://stamps@127.0.0.1/stamps")?;
//! store.add_account(AccountKind::Merchant, "My Merchant", Some(1))?;
//! # Ok::<(), stamps_store::StoreError>(())
//! ```
#![deny(missing_docs)]

mod change_log;
mod connect;
mod feed;
mod migrations;
mod rows;
mod served;
#[cfg(feature = "testing")]
pub mod testing;
mod tls;

use std::sync::Arc;
use std::time::Duration;

use postgres::Transaction;
use postgres::types::ToSql;
use r2d2_postgres::PostgresConnectionManager;
use stamps_core::{Clock, LookupDigest, SystemClock, TokenId, UnixTime};
use stamps_store::{
    Account, AccountKind, AuditEvent, Change, JwtRevocation, JwtRevocationTarget, KeyInfo,
    PruneSummary, Result, SecretHasher, SigningKeyRecord, Snapshot, SnapshotSummary, Store,
    StoreError, TokenFilter, TokenRecord, validate_id, validate_text,
};

use crate::change_log::{lock_changes, log_change};
use crate::rows::{
    ACCOUNT_COLUMNS, TOKEN_COLUMNS, account_of, decode, encode, from_bigint, id_text, parse_id,
    revocation_key, table, to_bigint, token_of,
};
use crate::tls::Tls;

pub use feed::PgChangeFeed;
pub use migrations::{MIGRATIONS, SCHEMA_VERSION};

/// Connections in each server's pool. Requests reach the database only for
/// static tokens not yet cached and for admin commands; audit batches take
/// one more.
pub const POOL_SIZE: u32 = 8;
/// How long a request waits for a connection (or to make one) before it
/// fails with a storage error, which the API answers with 503.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// How long a connection waits for a silent database host before it gives
/// up (TCP_USER_TIMEOUT, and about what the keepalive probes take).
pub const DEAD_PEER_TIMEOUT: Duration = Duration::from_secs(10);
/// The channel every change is announced on.
pub const CHANGE_CHANNEL: &str = "stamps_changes";
/// Change log rows older than this are pruned: a replica away longer
/// reloads everything when it returns.
pub const CHANGE_LOG_RETENTION: UnixTime = 7 * 24 * 3600;
/// Rows per statement when importing.
const IMPORT_CHUNK: usize = 5_000;

type Pool = r2d2::Pool<PostgresConnectionManager<Tls>>;

/// A [`Store`] on a PostgreSQL database, shared by any number of processes.
pub struct PgStore {
    pool: Pool,
    config: postgres::Config,
    /// The TLS connector of every connection (the change feed's too).
    tls: Tls,
    hasher: SecretHasher,
    clock: Arc<dyn Clock>,
}

impl std::fmt::Debug for PgStore {
    // Never the URL: it may hold a password.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgStore").finish_non_exhaustive()
    }
}

impl PgStore {
    /// Connects to the database at `url` (a `postgres://` URL or a
    /// key=value connection string), with production hashing and the
    /// system clock, and applies any pending migration.
    ///
    /// # Errors
    /// [`StoreError::Backend`] when the URL is invalid or the database
    /// cannot be reached within [`CONNECT_TIMEOUT`] (the message never
    /// shows the URL); [`StoreError::SchemaTooNew`] when a newer stamps
    /// migrated it.
    pub fn open(url: &str) -> Result<Self> {
        Self::open_with(url, SecretHasher::owasp(), Arc::new(SystemClock))
    }

    /// Like [`PgStore::open`], with a given hasher and clock.
    pub fn open_with(url: &str, hasher: SecretHasher, clock: Arc<dyn Clock>) -> Result<Self> {
        let (config, tls) = connect::config_and_tls(url)?;
        let pool = r2d2::Pool::builder()
            .max_size(POOL_SIZE)
            .min_idle(Some(1))
            .connection_timeout(CONNECT_TIMEOUT)
            // r2d2 would log each failed attempt through `log`; the caller
            // reports the error it gets instead.
            .error_handler(Box::new(r2d2::NopErrorHandler))
            .build(PostgresConnectionManager::new(config.clone(), tls.clone()))
            .map_err(unreachable)?;
        let store = Self {
            pool,
            config,
            tls,
            hasher,
            clock,
        };
        migrations::apply(&mut *store.connection()?)?;
        Ok(store)
    }

    /// A pooled connection.
    fn connection(&self) -> Result<r2d2::PooledConnection<PostgresConnectionManager<Tls>>> {
        self.pool.get().map_err(unreachable)
    }

    /// Runs `work` in a transaction, committed if it returns `Ok`.
    fn transaction<T>(&self, work: impl FnOnce(&mut Transaction<'_>) -> Result<T>) -> Result<T> {
        let mut connection = self.connection()?;
        let mut tx = connection.transaction().map_err(backend)?;
        let value = work(&mut tx)?;
        tx.commit().map_err(backend)?;
        Ok(value)
    }

    fn is_empty(tx: &mut Transaction<'_>) -> Result<bool> {
        let row = tx
            .query_one(
                "SELECT NOT EXISTS (SELECT 1 FROM merchants)
                    AND NOT EXISTS (SELECT 1 FROM users)
                    AND NOT EXISTS (SELECT 1 FROM tokens)",
                &[],
            )
            .map_err(backend)?;
        Ok(row.get(0))
    }
}

/// A storage failure from the database.
fn backend(e: postgres::Error) -> StoreError {
    match e.as_db_error() {
        Some(db) => StoreError::Backend(format!("database error: {}", db.message())),
        None => StoreError::Backend(format!("database connection: {e}")),
    }
}

fn unreachable(e: r2d2::Error) -> StoreError {
    StoreError::Backend(format!("the database is unreachable: {e}"))
}

fn account_exists(tx: &mut Transaction<'_>, kind: AccountKind, id: u64) -> Result<bool> {
    let sql = format!(
        "SELECT EXISTS (SELECT 1 FROM {} WHERE id = $1::text::numeric)",
        table(kind)
    );
    let row = tx.query_one(&sql, &[&id_text(id)]).map_err(backend)?;
    Ok(row.get(0))
}

/// Returns once the wall clock has passed second `at`, waiting at most a
/// second. A `revoke-all` cut-off refuses every JWT issued (`iat`) up to
/// its second; another replica may mint one in that very second before the
/// change log reaches it, a token it would then refuse itself. So the
/// revocation does not return before that second is over: a JWT asked for
/// afterwards, anywhere, is issued later than the cut-off (clocks in step).
fn wait_out_the_second(at: UnixTime) {
    let next = std::time::UNIX_EPOCH + Duration::from_secs(at.saturating_add(1));
    if let Ok(wait) = next.duration_since(std::time::SystemTime::now()) {
        std::thread::sleep(wait.min(Duration::from_secs(1)));
    }
}

impl Store for PgStore {
    fn add_account(&self, kind: AccountKind, name: &str, id: Option<u64>) -> Result<Account> {
        validate_text("name", name)?;
        if let Some(id) = id {
            validate_id(kind, id)?;
        }
        let table = table(kind);
        self.transaction(|tx| {
            // Under the change lock, the next free id cannot be taken by
            // another writer before this one commits.
            lock_changes(tx)?;
            let chosen = match id {
                Some(id) => id,
                None => {
                    let sql = format!("SELECT coalesce(max(id), 0)::text FROM {table}");
                    let row = tx.query_one(&sql, &[]).map_err(backend)?;
                    let next = parse_id(table, row.get(0))?.saturating_add(1);
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
            let sql = format!(
                "INSERT INTO {table} (id, name, active, created_at)
                 VALUES ($1::text::numeric, $2, true, $3) ON CONFLICT (id) DO NOTHING"
            );
            let inserted = tx
                .execute(
                    &sql,
                    &[&id_text(chosen), &name, &to_bigint(account.created_at)?],
                )
                .map_err(backend)?;
            if inserted == 0 {
                return Err(StoreError::Duplicate {
                    kind: kind.as_str().into(),
                    id: chosen.to_string(),
                });
            }
            let change = Change::Account {
                kind,
                account: account.clone(),
            };
            log_change(tx, account.created_at, &change)?;
            Ok(account)
        })
    }

    fn account(&self, kind: AccountKind, id: u64) -> Result<Option<Account>> {
        let table = table(kind);
        let sql = format!("SELECT {ACCOUNT_COLUMNS} FROM {table} WHERE id = $1::text::numeric");
        self.connection()?
            .query_opt(&sql, &[&id_text(id)])
            .map_err(backend)?
            .map(|row| account_of(table, &row))
            .transpose()
    }

    fn accounts(&self, kind: AccountKind) -> Result<Vec<Account>> {
        let table = table(kind);
        let sql = format!("SELECT {ACCOUNT_COLUMNS} FROM {table} ORDER BY id");
        self.connection()?
            .query(&sql, &[])
            .map_err(backend)?
            .iter()
            .map(|row| account_of(table, row))
            .collect()
    }

    fn set_account_active(&self, kind: AccountKind, id: u64, active: bool) -> Result<Account> {
        let table = table(kind);
        self.transaction(|tx| {
            lock_changes(tx)?;
            let sql = format!(
                "UPDATE {table} SET active = $2 WHERE id = $1::text::numeric
                 RETURNING {ACCOUNT_COLUMNS}"
            );
            let Some(row) = tx
                .query_opt(&sql, &[&id_text(id), &active])
                .map_err(backend)?
            else {
                return Err(StoreError::NotFound {
                    kind: kind.as_str().into(),
                    id: id.to_string(),
                });
            };
            let account = account_of(table, &row)?;
            let change = Change::Account {
                kind,
                account: account.clone(),
            };
            log_change(tx, self.now(), &change)?;
            Ok(account)
        })
    }

    fn insert_tokens(&self, records: &[TokenRecord]) -> Result<()> {
        self.transaction(|tx| {
            for record in records {
                for (kind, id) in [
                    (AccountKind::User, record.user_id),
                    (AccountKind::Merchant, record.merchant_id),
                ] {
                    if !account_exists(tx, kind, id)? {
                        return Err(StoreError::NotFound {
                            kind: kind.as_str().into(),
                            id: id.to_string(),
                        });
                    }
                }
                let lookup = record.lookup.map(|l| l.to_string());
                // Either unique column may conflict (the id, an imported
                // token's digest): nothing is inserted, and the whole
                // transaction is rolled back below.
                let inserted = tx
                    .execute(
                        "INSERT INTO tokens (id, user_id, merchant_id, label, hash, created_at,
                                             revoked, expires_at, last_used_at, lookup)
                         VALUES ($1, $2::text::numeric, $3::text::numeric, $4, $5, $6, $7, $8,
                                 $9, $10)
                         ON CONFLICT DO NOTHING",
                        &[
                            &record.id.as_str(),
                            &id_text(record.user_id),
                            &id_text(record.merchant_id),
                            &record.label,
                            &record.hash,
                            &to_bigint(record.created_at)?,
                            &record.revoked,
                            &record.expires_at.map(to_bigint).transpose()?,
                            &record.last_used_at.map(to_bigint).transpose()?,
                            &lookup,
                        ],
                    )
                    .map_err(backend)?;
                if inserted == 0 {
                    let id_taken = tx
                        .query_opt("SELECT 1 FROM tokens WHERE id = $1", &[&record.id.as_str()])
                        .map_err(backend)?
                        .is_some();
                    return Err(StoreError::Duplicate {
                        kind: if id_taken { "token" } else { "imported token" }.into(),
                        id: record.id.to_string(),
                    });
                }
            }
            if records.iter().any(TokenRecord::is_imported) {
                log_change(tx, self.now(), &Change::TokensImported)?;
            }
            Ok(())
        })
    }

    fn record_last_used(&self, uses: &[(TokenId, UnixTime)]) -> Result<()> {
        if uses.is_empty() {
            return Ok(());
        }
        let ids: Vec<&str> = uses.iter().map(|(id, _)| id.as_str()).collect();
        let times = uses
            .iter()
            .map(|(_, at)| to_bigint(*at))
            .collect::<Result<Vec<i64>>>()?;
        // Each replica reports its own uses: the latest wins.
        self.connection()?
            .execute(
                "UPDATE tokens SET last_used_at = u.at
                 FROM (SELECT id, max(at) AS at
                       FROM unnest($1::text[], $2::bigint[]) AS r(id, at)
                       GROUP BY id) AS u
                 WHERE tokens.id = u.id
                   AND (tokens.last_used_at IS NULL OR tokens.last_used_at < u.at)",
                &[&ids, &times],
            )
            .map_err(backend)?;
        Ok(())
    }

    fn imported_token(&self, lookup: &LookupDigest) -> Result<Option<TokenRecord>> {
        let sql = format!("SELECT {TOKEN_COLUMNS} FROM tokens WHERE lookup = $1");
        self.connection()?
            .query_opt(&sql, &[&lookup.to_string()])
            .map_err(backend)?
            .map(|row| token_of(&row))
            .transpose()
    }

    fn has_imported_tokens(&self) -> Result<bool> {
        self.connection()?
            .query_one(
                "SELECT EXISTS (SELECT 1 FROM tokens WHERE lookup IS NOT NULL)",
                &[],
            )
            .map_err(backend)
            .map(|row| row.get(0))
    }

    fn token(&self, id: &TokenId) -> Result<Option<TokenRecord>> {
        let sql = format!("SELECT {TOKEN_COLUMNS} FROM tokens WHERE id = $1");
        self.connection()?
            .query_opt(&sql, &[&id.as_str()])
            .map_err(backend)?
            .map(|row| token_of(&row))
            .transpose()
    }

    fn tokens(&self, filter: TokenFilter) -> Result<Vec<TokenRecord>> {
        let sql = format!(
            "SELECT {TOKEN_COLUMNS} FROM tokens
             WHERE ($1::text IS NULL OR user_id = $1::text::numeric)
               AND ($2::text IS NULL OR merchant_id = $2::text::numeric)"
        );
        let mut tokens = self
            .connection()?
            .query(
                &sql,
                &[
                    &filter.user_id.map(id_text),
                    &filter.merchant_id.map(id_text),
                ],
            )
            .map_err(backend)?
            .iter()
            .map(token_of)
            .collect::<Result<Vec<_>>>()?;
        // The same order as sled's, by byte order of the id (not a collation).
        tokens.sort_by_key(|t| (t.created_at, t.id));
        Ok(tokens)
    }

    fn revoke_token(&self, id: &TokenId) -> Result<TokenRecord> {
        self.transaction(|tx| {
            lock_changes(tx)?;
            let sql =
                format!("UPDATE tokens SET revoked = true WHERE id = $1 RETURNING {TOKEN_COLUMNS}");
            let Some(row) = tx.query_opt(&sql, &[&id.as_str()]).map_err(backend)? else {
                return Err(StoreError::NotFound {
                    kind: "token".into(),
                    id: id.to_string(),
                });
            };
            let record = token_of(&row)?;
            log_change(tx, self.now(), &Change::TokenRevoked { id: *id })?;
            Ok(record)
        })
    }

    fn replace_token_hash(&self, id: &TokenId, old_hash: &str, new_hash: &str) -> Result<bool> {
        self.transaction(|tx| {
            let exists = tx
                .query_opt("SELECT 1 FROM tokens WHERE id = $1", &[&id.as_str()])
                .map_err(backend)?;
            if exists.is_none() {
                return Err(StoreError::NotFound {
                    kind: "token".into(),
                    id: id.to_string(),
                });
            }
            let replaced = tx
                .execute(
                    "UPDATE tokens SET hash = $3 WHERE id = $1 AND hash = $2",
                    &[&id.as_str(), &old_hash, &new_hash],
                )
                .map_err(backend)?;
            Ok(replaced == 1)
        })
    }

    fn snapshot(&self) -> Result<Snapshot> {
        let mut connection = self.connection()?;
        // One consistent view of the three tables.
        let mut tx = connection
            .build_transaction()
            .isolation_level(postgres::IsolationLevel::RepeatableRead)
            .read_only(true)
            .start()
            .map_err(backend)?;
        let mut accounts = |kind| -> Result<Vec<Account>> {
            let table = table(kind);
            let sql = format!("SELECT {ACCOUNT_COLUMNS} FROM {table} ORDER BY id");
            tx.query(&sql, &[])
                .map_err(backend)?
                .iter()
                .map(|row| account_of(table, row))
                .collect()
        };
        let merchants = accounts(AccountKind::Merchant)?;
        let users = accounts(AccountKind::User)?;
        let sql = format!("SELECT {TOKEN_COLUMNS} FROM tokens");
        let mut tokens = tx
            .query(&sql, &[])
            .map_err(backend)?
            .iter()
            .map(token_of)
            .collect::<Result<Vec<_>>>()?;
        tokens.sort_by_key(|t| (t.created_at, t.id));
        tx.commit().map_err(backend)?;
        Ok(Snapshot {
            merchants,
            users,
            tokens,
        })
    }

    fn restore(&self, snapshot: &Snapshot) -> Result<SnapshotSummary> {
        // One transaction: all or nothing, even if the process dies.
        self.transaction(|tx| {
            lock_changes(tx)?;
            if !Self::is_empty(tx)? {
                return Err(StoreError::NotEmpty);
            }
            for (kind, accounts) in [
                (AccountKind::Merchant, &snapshot.merchants),
                (AccountKind::User, &snapshot.users),
            ] {
                let sql = format!(
                    "INSERT INTO {} (id, name, active, created_at)
                     SELECT i::numeric, n, a, c
                     FROM unnest($1::text[], $2::text[], $3::bool[], $4::bigint[]) AS r(i, n, a, c)",
                    table(kind)
                );
                for chunk in accounts.chunks(IMPORT_CHUNK) {
                    let ids: Vec<String> = chunk.iter().map(|a| id_text(a.id)).collect();
                    let names: Vec<&str> = chunk.iter().map(|a| a.name.as_str()).collect();
                    let active: Vec<bool> = chunk.iter().map(|a| a.active).collect();
                    let created = chunk
                        .iter()
                        .map(|a| to_bigint(a.created_at))
                        .collect::<Result<Vec<_>>>()?;
                    let params: [&(dyn ToSql + Sync); 4] = [&ids, &names, &active, &created];
                    tx.execute(&sql, &params).map_err(backend)?;
                }
            }
            for chunk in snapshot.tokens.chunks(IMPORT_CHUNK) {
                let ids: Vec<&str> = chunk.iter().map(|t| t.id.as_str()).collect();
                let users: Vec<String> = chunk.iter().map(|t| id_text(t.user_id)).collect();
                let merchants: Vec<String> = chunk.iter().map(|t| id_text(t.merchant_id)).collect();
                let labels: Vec<Option<&str>> = chunk.iter().map(|t| t.label.as_deref()).collect();
                let hashes: Vec<&str> = chunk.iter().map(|t| t.hash.as_str()).collect();
                let created = chunk
                    .iter()
                    .map(|t| to_bigint(t.created_at))
                    .collect::<Result<Vec<_>>>()?;
                let revoked: Vec<bool> = chunk.iter().map(|t| t.revoked).collect();
                let optional = |time: fn(&TokenRecord) -> Option<UnixTime>| {
                    chunk
                        .iter()
                        .map(|t| time(t).map(to_bigint).transpose())
                        .collect::<Result<Vec<Option<i64>>>>()
                };
                let expires = optional(|t| t.expires_at)?;
                let used = optional(|t| t.last_used_at)?;
                let lookups: Vec<Option<String>> = chunk
                    .iter()
                    .map(|t| t.lookup.map(|l| l.to_string()))
                    .collect();
                tx.execute(
                    "INSERT INTO tokens (id, user_id, merchant_id, label, hash, created_at, revoked,
                                         expires_at, last_used_at, lookup)
                     SELECT i, u::numeric, m::numeric, l, h, c, r, e, lu, k
                     FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[],
                                 $6::bigint[], $7::bool[], $8::bigint[], $9::bigint[], $10::text[])
                          AS t(i, u, m, l, h, c, r, e, lu, k)",
                    &[
                        &ids, &users, &merchants, &labels, &hashes, &created, &revoked, &expires,
                        &used, &lookups,
                    ],
                )
                .map_err(backend)?;
            }
            log_change(tx, self.now(), &Change::Restored)?;
            Ok(snapshot.summary())
        })
    }

    fn revoke_jwts(&self, target: JwtRevocationTarget) -> Result<JwtRevocation> {
        let revoked = self.transaction(|tx| {
            lock_changes(tx)?;
            if let Some((kind, id)) = target.account()
                && !account_exists(tx, kind, id)?
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
            tx.execute(
                "INSERT INTO jwt_revocations (target, revoked_at, record) VALUES ($1, $2, $3)
                 ON CONFLICT (target) DO UPDATE
                 SET revoked_at = EXCLUDED.revoked_at, record = EXCLUDED.record",
                &[
                    &revocation_key(&target),
                    &to_bigint(revocation.revoked_at)?,
                    &encode(&revocation)?,
                ],
            )
            .map_err(backend)?;
            log_change(
                tx,
                revocation.revoked_at,
                &Change::JwtRevoked { revocation },
            )?;
            Ok(revocation)
        })?;
        if revoked.target.account().is_some() {
            wait_out_the_second(revoked.revoked_at);
        }
        Ok(revoked)
    }

    fn jwt_revocations(&self) -> Result<Vec<JwtRevocation>> {
        self.connection()?
            .query("SELECT record FROM jwt_revocations ORDER BY target", &[])
            .map_err(backend)?
            .iter()
            .map(|row| decode("jwt_revocations", row.get(0)))
            .collect()
    }

    fn rotate_signing_key_with(&self, drop_previous: bool) -> Result<KeyInfo> {
        let key = stamps_core::SigningKey::random();
        self.transaction(|tx| {
            lock_changes(tx)?;
            let row = tx
                .query_one(
                    "SELECT coalesce(max(id), 0), coalesce(max(created_at), 0) FROM signing_keys",
                    &[],
                )
                .map_err(backend)?;
            // Keys sign in order of creation time; a writer whose clock is
            // behind the last key's must not make a key that never signs.
            let record = SigningKeyRecord {
                id: from_bigint("signing_keys", row.get(0))?.saturating_add(1),
                created_at: self.now().max(from_bigint("signing_keys", row.get(1))?),
                key,
                drops_previous: drop_previous,
            };
            tx.execute(
                "INSERT INTO signing_keys (id, created_at, record) VALUES ($1, $2, $3)",
                &[
                    &to_bigint(record.id)?,
                    &to_bigint(record.created_at)?,
                    &encode(&record)?,
                ],
            )
            .map_err(backend)?;
            log_change(tx, record.created_at, &Change::JwtStateChanged)?;
            Ok(record.info())
        })
    }

    fn signing_keys(&self) -> Result<Vec<SigningKeyRecord>> {
        self.connection()?
            .query("SELECT record FROM signing_keys ORDER BY id", &[])
            .map_err(backend)?
            .iter()
            .map(|row| decode("signing_keys", row.get(0)))
            .collect()
    }

    fn prune(&self, expired_before: UnixTime) -> Result<PruneSummary> {
        let cutoff = to_bigint(expired_before)?;
        self.transaction(|tx| {
            lock_changes(tx)?;
            let revocations = tx
                .execute(
                    "DELETE FROM jwt_revocations WHERE revoked_at < $1",
                    &[&cutoff],
                )
                .map_err(backend)?;
            // A key stopped signing when the next one was made; the newest stays.
            let keys = tx
                .execute(
                    "DELETE FROM signing_keys k WHERE EXISTS
                     (SELECT 1 FROM signing_keys n WHERE n.id > k.id AND n.created_at < $1)",
                    &[&cutoff],
                )
                .map_err(backend)?;
            let now = self.now();
            // Followers behind the last row pruned must reload everything:
            // `meta.change_log_pruned_through` tells them.
            tx.execute(
                "WITH pruned AS (DELETE FROM change_log WHERE at < $1 RETURNING seq)
                 INSERT INTO meta (key, value)
                 SELECT 'change_log_pruned_through', max(seq) FROM pruned HAVING count(*) > 0
                 ON CONFLICT (key) DO UPDATE SET value = greatest(meta.value, EXCLUDED.value)",
                &[&to_bigint(now.saturating_sub(CHANGE_LOG_RETENTION))?],
            )
            .map_err(backend)?;
            let summary = PruneSummary {
                revocations: usize::try_from(revocations).unwrap_or(usize::MAX),
                keys: usize::try_from(keys).unwrap_or(usize::MAX),
            };
            if summary != PruneSummary::default() {
                log_change(tx, now, &Change::JwtStateChanged)?;
            }
            Ok(summary)
        })
    }

    fn append_audit(&self, events: &[AuditEvent]) -> Result<()> {
        for event in events {
            event.validate()?;
        }
        if events.is_empty() {
            return Ok(());
        }
        let at = events
            .iter()
            .map(|e| to_bigint(e.at))
            .collect::<Result<Vec<_>>>()?;
        let actors: Vec<&str> = events.iter().map(|e| e.actor.as_str()).collect();
        let actions: Vec<&str> = events.iter().map(|e| e.action.as_str()).collect();
        let subjects: Vec<&str> = events.iter().map(|e| e.subject.as_str()).collect();
        // One statement per batch; the sequence follows the batch's order.
        self.connection()?
            .execute(
                "INSERT INTO audit (at, actor, action, subject)
                 SELECT a, b, c, d FROM unnest($1::bigint[], $2::text[], $3::text[], $4::text[])
                 WITH ORDINALITY AS e(a, b, c, d, n) ORDER BY n",
                &[&at, &actors, &actions, &subjects],
            )
            .map_err(backend)?;
        Ok(())
    }

    fn audit(&self, since: UnixTime) -> Result<Vec<AuditEvent>> {
        self.connection()?
            .query(
                "SELECT seq, at, actor, action, subject FROM audit WHERE at >= $1 ORDER BY seq",
                // A time beyond bigint selects nothing, as it would in sled.
                &[&i64::try_from(since).unwrap_or(i64::MAX)],
            )
            .map_err(backend)?
            .iter()
            .map(|row| {
                Ok(AuditEvent {
                    seq: from_bigint("audit", row.get(0))?,
                    at: from_bigint("audit", row.get(1))?,
                    actor: row.get(2),
                    action: row.get(3),
                    subject: row.get(4),
                })
            })
            .collect()
    }

    fn prune_audit(&self, before: UnixTime, max_events: usize) -> Result<usize> {
        // The oldest first, a bounded number per statement: a short
        // transaction, and vacuum makes the space reusable.
        let deleted = self
            .connection()?
            .execute(
                "DELETE FROM audit WHERE seq IN
                 (SELECT seq FROM audit WHERE at < $1 ORDER BY at LIMIT $2)",
                &[
                    &i64::try_from(before).unwrap_or(i64::MAX),
                    &i64::try_from(max_events).unwrap_or(i64::MAX),
                ],
            )
            .map_err(backend)?;
        Ok(usize::try_from(deleted).unwrap_or(usize::MAX))
    }

    fn hasher(&self) -> &SecretHasher {
        &self.hasher
    }

    fn now(&self) -> UnixTime {
        self.clock.now()
    }
}
