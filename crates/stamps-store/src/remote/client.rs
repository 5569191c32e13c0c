//! [`RemoteStore`]: the [`Store`] the admin command line uses, a client
//! of the server's admin socket.

use std::borrow::Cow;
use std::io::{self, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde::de::DeserializeOwned;
use stamps_core::{Clock, LookupDigest, SystemClock, TokenId, UnixTime};

use super::{ADMIN_TIMEOUT, MAX_LINE_BYTES, Request, Response, read_line};
use crate::Store;
use crate::error::{Result, StoreError};
use crate::hashing::SecretHasher;
use crate::records::{
    Account, AccountKind, AuditEvent, JwtRevocation, JwtRevocationTarget, KeyInfo, PruneSummary,
    SigningKeyRecord, TokenFilter, TokenRecord,
};
use crate::snapshot::{Snapshot, SnapshotSummary};

/// A [`Store`] that forwards every call to the server listening on an
/// admin socket ([`AdminSocket`](crate::AdminSocket)).
///
/// Each call makes its own connection, so a `RemoteStore` holds nothing
/// open between calls and never keeps the server waiting. A server that
/// does not answer within the timeout ([`ADMIN_TIMEOUT`] unless set)
/// gives a [`StoreError::Backend`], not a hang.
///
/// Token secrets stay in this process: [`Store::create_token`] hashes with
/// this store's own hasher (OWASP's parameters unless set) and sends only
/// the record; `created_at` comes from this store's clock (the system
/// clock unless set).
pub struct RemoteStore {
    path: PathBuf,
    hasher: SecretHasher,
    clock: Arc<dyn Clock>,
    timeout: Duration,
    max_line: usize,
}

impl std::fmt::Debug for RemoteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RemoteStore")
            .field("path", &self.path)
            .field("timeout", &self.timeout)
            .field("max_line", &self.max_line)
            .finish_non_exhaustive()
    }
}

impl RemoteStore {
    /// Connects to the server on `socket_path`, if one is there.
    ///
    /// `Ok(None)` when no server is: no file at that path, or nobody
    /// listening on it (the stale socket of a server that crashed). The
    /// caller then opens the store directly. Any other failure (such as
    /// a socket this user may not use) is an error.
    pub fn connect(socket_path: &Path) -> Result<Option<Self>> {
        match UnixStream::connect(socket_path) {
            // Nothing more to say on this connection: each call makes its own.
            Ok(_) => Ok(Some(Self {
                path: socket_path.to_path_buf(),
                hasher: SecretHasher::owasp(),
                clock: Arc::new(SystemClock),
                timeout: ADMIN_TIMEOUT,
                max_line: MAX_LINE_BYTES,
            })),
            // No server: no socket, a stale one, or a path too long for a
            // socket (107 bytes), where no server can have bound one either.
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::NotFound
                        | io::ErrorKind::ConnectionRefused
                        | io::ErrorKind::InvalidInput
                ) =>
            {
                Ok(None)
            }
            Err(e) => Err(StoreError::Backend(format!(
                "cannot connect to the admin socket {}: {e}",
                socket_path.display()
            ))),
        }
    }

    /// The same store, hashing new token secrets with `hasher`.
    pub fn with_hasher(mut self, hasher: SecretHasher) -> Self {
        self.hasher = hasher;
        self
    }

    /// The same store, dating new tokens with `clock`.
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// The same store, waiting at most `timeout` for each read or write.
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The same store, refusing requests and answers longer than
    /// `max_line` bytes (the default is [`MAX_LINE_BYTES`]).
    pub fn with_max_line_bytes(mut self, max_line: usize) -> Self {
        self.max_line = max_line;
        self
    }

    /// The socket this store talks to.
    pub fn socket_path(&self) -> &Path {
        &self.path
    }

    fn failed(&self, what: &str, e: &io::Error) -> StoreError {
        let why = match e.kind() {
            io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => {
                format!("no answer within {:?}", self.timeout)
            }
            _ => e.to_string(),
        };
        StoreError::Backend(format!(
            "admin socket {}: {what}: {why}",
            self.path.display()
        ))
    }

    /// Sends one request on a new connection and reads its answer.
    fn call<T: DeserializeOwned>(&self, request: &Request<'_>) -> Result<T> {
        let mut line = serde_json::to_vec(request)
            .map_err(|e| StoreError::Backend(format!("cannot encode an admin request: {e}")))?;
        if line.len() > self.max_line {
            return Err(StoreError::Backend(format!(
                "the request is {} bytes, over the admin socket's limit of {} bytes",
                line.len(),
                self.max_line
            )));
        }
        line.push(b'\n');
        let stream = UnixStream::connect(&self.path)
            .map_err(|e| self.failed("cannot connect (has the server stopped?)", &e))?;
        stream
            .set_read_timeout(Some(self.timeout))
            .and_then(|()| stream.set_write_timeout(Some(self.timeout)))
            .map_err(|e| self.failed("cannot set a timeout", &e))?;
        (&stream)
            .write_all(&line)
            .and_then(|()| (&stream).flush())
            .map_err(|e| self.failed("cannot send the request", &e))?;
        drop(line);
        let answer = match read_line(&mut BufReader::new(&stream), self.max_line) {
            Ok(Some(answer)) => answer,
            Ok(None) => {
                return Err(StoreError::Backend(format!(
                    "admin socket {}: the server closed the connection without answering",
                    self.path.display()
                )));
            }
            Err(e) => return Err(self.failed("cannot read the answer", &e)),
        };
        let response: Response<T> = serde_json::from_slice(&answer).map_err(|e| {
            StoreError::Backend(format!(
                "admin socket {}: malformed answer: {e}",
                self.path.display()
            ))
        })?;
        response.into_result()
    }
}

impl Store for RemoteStore {
    fn add_account(&self, kind: AccountKind, name: &str, id: Option<u64>) -> Result<Account> {
        self.call(&Request::AddAccount {
            kind,
            name: Cow::Borrowed(name),
            id,
        })
    }

    fn account(&self, kind: AccountKind, id: u64) -> Result<Option<Account>> {
        self.call(&Request::Account { kind, id })
    }

    fn accounts(&self, kind: AccountKind) -> Result<Vec<Account>> {
        self.call(&Request::Accounts { kind })
    }

    fn set_account_active(&self, kind: AccountKind, id: u64, active: bool) -> Result<Account> {
        self.call(&Request::SetAccountActive { kind, id, active })
    }

    fn insert_tokens(&self, records: &[TokenRecord]) -> Result<()> {
        self.call(&Request::InsertTokens {
            records: Cow::Borrowed(records),
        })
    }

    fn record_last_used(&self, uses: &[(TokenId, UnixTime)]) -> Result<()> {
        self.call(&Request::RecordLastUsed {
            uses: Cow::Borrowed(uses),
        })
    }

    fn imported_token(&self, lookup: &LookupDigest) -> Result<Option<TokenRecord>> {
        self.call(&Request::ImportedToken { lookup: *lookup })
    }

    fn has_imported_tokens(&self) -> Result<bool> {
        self.call(&Request::HasImportedTokens)
    }

    fn token(&self, id: &TokenId) -> Result<Option<TokenRecord>> {
        self.call(&Request::Token { id: *id })
    }

    fn tokens(&self, filter: TokenFilter) -> Result<Vec<TokenRecord>> {
        self.call(&Request::Tokens { filter })
    }

    fn revoke_token(&self, id: &TokenId) -> Result<TokenRecord> {
        self.call(&Request::RevokeToken { id: *id })
    }

    fn replace_token_hash(&self, id: &TokenId, old_hash: &str, new_hash: &str) -> Result<bool> {
        self.call(&Request::ReplaceTokenHash {
            id: *id,
            old_hash: Cow::Borrowed(old_hash),
            new_hash: Cow::Borrowed(new_hash),
        })
    }

    fn snapshot(&self) -> Result<Snapshot> {
        self.call(&Request::Snapshot)
    }

    fn restore(&self, snapshot: &Snapshot) -> Result<SnapshotSummary> {
        self.call(&Request::Restore {
            snapshot: Cow::Borrowed(snapshot),
        })
    }

    fn revoke_jwts(&self, target: JwtRevocationTarget) -> Result<JwtRevocation> {
        self.call(&Request::RevokeJwts { target })
    }

    fn jwt_revocations(&self) -> Result<Vec<JwtRevocation>> {
        self.call(&Request::JwtRevocations)
    }

    fn rotate_signing_key_with(&self, drop_previous: bool) -> Result<KeyInfo> {
        self.call(&Request::RotateSigningKey { drop_previous })
    }

    fn signing_keys(&self) -> Result<Vec<SigningKeyRecord>> {
        self.call(&Request::SigningKeys)
    }

    fn prune(&self, expired_before: UnixTime) -> Result<PruneSummary> {
        self.call(&Request::Prune { expired_before })
    }

    fn append_audit(&self, events: &[AuditEvent]) -> Result<()> {
        self.call(&Request::AppendAudit {
            events: Cow::Borrowed(events),
        })
    }

    fn audit(&self, since: UnixTime) -> Result<Vec<AuditEvent>> {
        self.call(&Request::Audit { since })
    }

    fn prune_audit(&self, before: UnixTime, max_events: usize) -> Result<usize> {
        self.call(&Request::PruneAudit { before, max_events })
    }

    fn hasher(&self) -> &SecretHasher {
        &self.hasher
    }

    fn now(&self) -> UnixTime {
        self.clock.now()
    }
}
