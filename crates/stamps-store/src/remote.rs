//! The local admin channel: a [`Store`] served over a Unix socket.
//!
//! sled lets one process at a time open a database, so while
//! `stamps-server` runs on a data directory the admin command line cannot
//! open the store itself. The server instead listens on
//! `<data dir>/admin.sock` ([`admin_socket_path`]) and the command line
//! talks to it with a [`RemoteStore`]; with no server running it opens the
//! store directly. Nothing reachable from the network administers the
//! server: the socket is a file with mode 0600 in the (0700) data
//! directory, so file permissions are the access control.
//!
//! The protocol is described on [`Request`]; [`AdminSocket`] has an
//! example.

use std::borrow::Cow;
use std::fs;
use std::io::{self, BufRead, BufReader, Write};
use std::os::unix::fs::{DirBuilderExt, FileTypeExt, MetadataExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use stamps_core::{Clock, SystemClock, TokenId, UnixTime};

use crate::Store;
use crate::error::{Result, StoreError};
use crate::hashing::SecretHasher;
use crate::records::{
    Account, AccountKind, AuditEvent, JwtRevocation, JwtRevocationTarget, KeyInfo, PruneSummary,
    SigningKeyRecord, TokenFilter, TokenRecord,
};
use crate::snapshot::{Snapshot, SnapshotSummary};

/// The name of the admin socket inside a data directory.
pub const ADMIN_SOCKET_FILE: &str = "admin.sock";

/// The longest request or response line either side accepts, in bytes,
/// newline excluded (1 GiB).
pub const MAX_LINE_BYTES: usize = 1 << 30;

/// How long a [`RemoteStore`] waits on a silent server, and how long the
/// server waits on a silent client, before giving up (per read or write).
pub const ADMIN_TIMEOUT: Duration = Duration::from_secs(60);

/// The admin socket of the data directory `data_dir`:
/// `<data_dir>/admin.sock`.
pub fn admin_socket_path(data_dir: &Path) -> PathBuf {
    data_dir.join(ADMIN_SOCKET_FILE)
}

/// One call of a [`Store`] method, as sent over the admin socket: one
/// variant per required method but `hasher` and `now`, which are local to
/// each side. Borrowed on the client side (a `restore` is not copied),
/// owned once received.
///
/// # The admin socket protocol
///
/// Newline-delimited JSON over a Unix stream. The client writes one
/// [`Request`] per line; the server answers each with one [`Response`]
/// line, in order, until the client closes its end. A line longer than
/// [`MAX_LINE_BYTES`] (1 GiB: `restore` carries a whole export) is refused
/// rather than read forever.
///
/// ```text
/// → {"add_account":{"kind":"merchant","name":"My Merchant","id":1}}
/// ← {"ok":{"id":1,"name":"My Merchant","active":true,"created_at":1764340000}}
/// → {"revoke_token":{"id":"0123456789abcdef"}}
/// ← {"err":{"not_found":{"kind":"token","id":"0123456789abcdef"}}}
/// ```
///
/// Errors travel as the [`StoreError`] the server's store returned (it is
/// serialisable) and come back equal: same variant, same fields, same text.
///
/// No secret crosses the socket: [`Store::create_token`] runs in the
/// client, which hashes the new secret and sends only the record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum Request<'a> {
    /// [`Store::add_account`].
    AddAccount {
        /// Merchant or user.
        kind: AccountKind,
        /// Its name.
        name: Cow<'a, str>,
        /// The id asked for, if any.
        id: Option<u64>,
    },
    /// [`Store::account`].
    Account {
        /// Merchant or user.
        kind: AccountKind,
        /// Its id.
        id: u64,
    },
    /// [`Store::accounts`].
    Accounts {
        /// Merchants or users.
        kind: AccountKind,
    },
    /// [`Store::set_account_active`].
    SetAccountActive {
        /// Merchant or user.
        kind: AccountKind,
        /// Its id.
        id: u64,
        /// Enabled or disabled.
        active: bool,
    },
    /// [`Store::insert_token`].
    InsertToken {
        /// The record (its hash, never a secret).
        record: Cow<'a, TokenRecord>,
    },
    /// [`Store::token`].
    Token {
        /// The public id.
        id: TokenId,
    },
    /// [`Store::tokens`].
    Tokens {
        /// Which tokens.
        filter: TokenFilter,
    },
    /// [`Store::revoke_token`].
    RevokeToken {
        /// The public id.
        id: TokenId,
    },
    /// [`Store::replace_token_hash`].
    ReplaceTokenHash {
        /// The public id.
        id: TokenId,
        /// The hash expected now.
        old_hash: Cow<'a, str>,
        /// Its replacement.
        new_hash: Cow<'a, str>,
    },
    /// [`Store::snapshot`].
    Snapshot,
    /// [`Store::restore`].
    Restore {
        /// Everything to load.
        snapshot: Cow<'a, Snapshot>,
    },
    /// [`Store::revoke_jwts`].
    RevokeJwts {
        /// What to revoke.
        target: JwtRevocationTarget,
    },
    /// [`Store::jwt_revocations`].
    JwtRevocations,
    /// [`Store::rotate_signing_key`].
    RotateSigningKey {
        /// [`Store::rotate_signing_key_with`]'s `drop_previous`.
        #[serde(default)]
        drop_previous: bool,
    },
    /// [`Store::signing_keys`] (the answer carries the keys: the socket is
    /// as private as the key file beside it).
    SigningKeys,
    /// [`Store::prune`].
    Prune {
        /// Revocations and keys retired before this are removed.
        expired_before: UnixTime,
    },
    /// [`Store::append_audit`].
    AppendAudit {
        /// The events, in order.
        events: Cow<'a, [AuditEvent]>,
    },
    /// [`Store::audit`].
    Audit {
        /// From this time on.
        since: UnixTime,
    },
    /// [`Store::prune_audit`].
    PruneAudit {
        /// Events older than this are deleted.
        before: UnixTime,
        /// About this many at most.
        max_events: usize,
    },
}

/// The answer to one [`Request`]: the method's result, or its error.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Response<T> {
    /// The method succeeded with this value.
    Ok(T),
    /// The method failed, with the store's error as it is.
    Err(StoreError),
}

impl<T> From<Result<T>> for Response<T> {
    fn from(result: Result<T>) -> Self {
        match result {
            Ok(value) => Response::Ok(value),
            Err(e) => Response::Err(e),
        }
    }
}

impl<T> Response<T> {
    /// The result the server's store gave.
    pub fn into_result(self) -> Result<T> {
        match self {
            Response::Ok(value) => Ok(value),
            Response::Err(e) => Err(e),
        }
    }
}

/// Reads one line, without its newline: `Ok(None)` at a clean end of the
/// stream, an `InvalidData` error for a line longer than `max` bytes (of
/// which at most `max + 1` are read), `UnexpectedEof` for a cut line.
fn read_line<R: BufRead>(reader: &mut R, max: usize) -> io::Result<Option<Vec<u8>>> {
    let mut line = Vec::new();
    let limit = u64::try_from(max).unwrap_or(u64::MAX).saturating_add(1);
    io::Read::take(&mut *reader, limit).read_until(b'\n', &mut line)?;
    if line.is_empty() {
        return Ok(None);
    }
    if line.last() == Some(&b'\n') {
        line.pop();
        return Ok(Some(line));
    }
    if line.len() > max {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("line longer than {max} bytes"),
        ));
    }
    Err(io::Error::new(
        io::ErrorKind::UnexpectedEof,
        "the stream ended in the middle of a line",
    ))
}

/// A [`Store`] that forwards every call to the server listening on an
/// admin socket ([`AdminSocket`]).
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

    fn insert_token(&self, record: &TokenRecord) -> Result<()> {
        self.call(&Request::InsertToken {
            record: Cow::Borrowed(record),
        })
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

/// Runs one request against `store` and encodes the answer line (without
/// its newline). An answer over `max_line` bytes is replaced by an error.
fn answer<S: Store + ?Sized>(store: &S, request: Request<'_>, max_line: usize) -> Vec<u8> {
    fn encode<T: Serialize>(result: Result<T>) -> serde_json::Result<Vec<u8>> {
        serde_json::to_vec(&Response::from(result))
    }
    let encoded = match request {
        Request::AddAccount { kind, name, id } => encode(store.add_account(kind, &name, id)),
        Request::Account { kind, id } => encode(store.account(kind, id)),
        Request::Accounts { kind } => encode(store.accounts(kind)),
        Request::SetAccountActive { kind, id, active } => {
            encode(store.set_account_active(kind, id, active))
        }
        Request::InsertToken { record } => encode(store.insert_token(&record)),
        Request::Token { id } => encode(store.token(&id)),
        Request::Tokens { filter } => encode(store.tokens(filter)),
        Request::RevokeToken { id } => encode(store.revoke_token(&id)),
        Request::ReplaceTokenHash {
            id,
            old_hash,
            new_hash,
        } => encode(store.replace_token_hash(&id, &old_hash, &new_hash)),
        Request::Snapshot => encode(store.snapshot()),
        Request::Restore { snapshot } => encode(store.restore(&snapshot)),
        Request::RevokeJwts { target } => encode(store.revoke_jwts(target)),
        Request::JwtRevocations => encode(store.jwt_revocations()),
        Request::RotateSigningKey { drop_previous } => {
            encode(store.rotate_signing_key_with(drop_previous))
        }
        Request::SigningKeys => encode(store.signing_keys()),
        Request::Prune { expired_before } => encode(store.prune(expired_before)),
        Request::AppendAudit { events } => encode(store.append_audit(&events)),
        Request::Audit { since } => encode(store.audit(since)),
        Request::PruneAudit { before, max_events } => encode(store.prune_audit(before, max_events)),
    };
    match encoded {
        Ok(line) if line.len() <= max_line => line,
        Ok(line) => refusal(format!(
            "the answer is {} bytes, over the admin socket's limit of {max_line} bytes",
            line.len()
        )),
        Err(e) => refusal(format!("cannot encode the answer: {e}")),
    }
}

/// An error answer carrying [`StoreError::Backend`] with `reason`.
fn refusal(reason: String) -> Vec<u8> {
    let response: Response<()> = Response::Err(StoreError::Backend(reason));
    // An enum of strings always encodes; the fallback is never used.
    serde_json::to_vec(&response)
        .unwrap_or_else(|_| br#"{"err":{"backend":"admin socket error"}}"#.to_vec())
}

/// Serves one admin connection: reads [`Request`] lines from `stream` and
/// answers each against `store`, until the client closes its end.
///
/// A malformed request is answered with an error and the connection goes
/// on. A request line over [`MAX_LINE_BYTES`] is answered with an error,
/// then the connection is closed and an `InvalidData` error returned. A
/// client silent for [`ADMIN_TIMEOUT`] is dropped (a `WouldBlock` or
/// `TimedOut` error). Errors are the caller's to log; the store is
/// unaffected by them.
pub fn serve_connection<S: Store + ?Sized>(store: &S, stream: UnixStream) -> io::Result<()> {
    serve_connection_limited(store, stream, MAX_LINE_BYTES)
}

/// [`serve_connection`], refusing lines over `max_line` bytes.
pub fn serve_connection_limited<S: Store + ?Sized>(
    store: &S,
    stream: UnixStream,
    max_line: usize,
) -> io::Result<()> {
    stream.set_read_timeout(Some(ADMIN_TIMEOUT))?;
    stream.set_write_timeout(Some(ADMIN_TIMEOUT))?;
    let mut reader = BufReader::new(&stream);
    let mut writer = &stream;
    loop {
        let (mut reply, outcome) = match read_line(&mut reader, max_line) {
            Ok(None) => return Ok(()),
            Ok(Some(line)) => match serde_json::from_slice::<Request<'_>>(&line) {
                Ok(request) => {
                    drop(line);
                    (answer(store, request, max_line), Ok(()))
                }
                Err(e) => (refusal(format!("malformed admin request: {e}")), Ok(())),
            },
            Err(e) if e.kind() == io::ErrorKind::InvalidData => (
                refusal(format!(
                    "admin request refused: longer than the admin socket's limit of {max_line} bytes"
                )),
                Err(e),
            ),
            Err(e) => return Err(e),
        };
        reply.push(b'\n');
        writer.write_all(&reply)?;
        writer.flush()?;
        outcome?;
    }
}

/// A process-wide counter for the names of temporary bind directories.
static BIND_ATTEMPT: AtomicU64 = AtomicU64::new(0);

/// The listening admin socket of a server, which a [`RemoteStore`] in
/// another process talks to (see [`Request`] for the protocol).
///
/// The socket file has mode 0600 from the moment it appears at its path,
/// and is removed when the `AdminSocket` is dropped (unless another
/// socket has replaced it meanwhile).
///
/// # Example
///
/// ```
/// use std::sync::Arc;
/// use stamps_store::{AccountKind, AdminSocket, MemoryStore, RemoteStore, Store, admin_socket_path};
///
/// let dir = tempfile::tempdir()?;
/// // The server side: the store, served on the data directory's socket.
/// let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
/// let socket = AdminSocket::bind(&admin_socket_path(dir.path()))?;
/// let stopper = socket.shutdown_handle();
/// let server = socket.spawn(store.clone())?;
///
/// // The admin side, in another process as a rule.
/// let remote = RemoteStore::connect(&admin_socket_path(dir.path()))?.expect("a server listens");
/// remote.add_account(AccountKind::Merchant, "My Merchant", Some(1))?;
/// assert!(store.account(AccountKind::Merchant, 1)?.is_some());
///
/// stopper.shutdown();
/// server.join().expect("the accept loop does not panic");
/// assert!(!admin_socket_path(dir.path()).exists());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
pub struct AdminSocket {
    /// Replaced (and the old one closed) when the accept loop binds the
    /// path again.
    listener: Mutex<UnixListener>,
    path: PathBuf,
    /// Device and inode of our socket file, to remove only our own; a new
    /// one when the accept loop binds the path again.
    file_id: Arc<Mutex<(u64, u64)>>,
    stop: Arc<AtomicBool>,
    /// False once the accept loop has ended.
    serving: Arc<AtomicBool>,
    max_line: usize,
}

/// Whether an [`AdminSocket`] is up, from any thread: its accept loop has
/// not ended and its socket file is still the one it bound (a temporary
/// file cleaner, say, may have removed it). Reads two things, talks to no
/// one: cheap enough for every readiness probe. Cloneable.
#[derive(Debug, Clone)]
pub struct AdminHealth {
    path: PathBuf,
    file_id: Arc<Mutex<(u64, u64)>>,
    serving: Arc<AtomicBool>,
}

/// Why an [`AdminSocket`] is not up.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum AdminDown {
    /// Occurs once the accept loop has ended (shut down, or its thread
    /// died).
    #[error("the admin socket's accept loop has stopped")]
    Stopped,
    /// Occurs when the socket file is gone from its path, or is another
    /// file now: stamps-admin cannot reach this server.
    #[error("the admin socket file is gone or was replaced")]
    Missing,
}

impl AdminHealth {
    /// `Ok` while the socket is up.
    pub fn check(&self) -> std::result::Result<(), AdminDown> {
        if !self.serving.load(Ordering::Acquire) {
            return Err(AdminDown::Stopped);
        }
        if is_ours(&self.path, &self.file_id) {
            Ok(())
        } else {
            Err(AdminDown::Missing)
        }
    }
}

/// Whether the file at `path` is the socket `file_id` names.
fn is_ours(path: &Path, file_id: &Mutex<(u64, u64)>) -> bool {
    let id = *file_id.lock().unwrap_or_else(PoisonError::into_inner);
    fs::symlink_metadata(path).is_ok_and(|meta| (meta.dev(), meta.ino()) == id)
}

/// How long the accept loop waits for a connection before it looks at its
/// stop flag and its socket file again: the bound on a shutdown whose
/// wake-up connection could not be made (the file was removed).
const ACCEPT_POLL: Duration = Duration::from_millis(250);

/// Clears the serving flag when the accept loop ends, by return or panic.
struct ServingGuard<'a>(&'a AtomicBool);

impl Drop for ServingGuard<'_> {
    fn drop(&mut self) {
        self.0.store(false, Ordering::Release);
    }
}

/// Stops the accept loop of an [`AdminSocket`] ([`AdminSocket::serve`] or
/// [`AdminSocket::spawn`]), from any thread. Cloneable.
#[derive(Debug, Clone)]
pub struct AdminShutdown {
    path: PathBuf,
    stop: Arc<AtomicBool>,
}

impl AdminShutdown {
    /// Asks the accept loop to stop, and wakes it up (by connecting to the
    /// socket; if its file was removed, the loop sees the request within
    /// a quarter of a second all the same). The loop returns once the
    /// connection it may be serving ends; the socket file is removed when
    /// the `AdminSocket` drops (at the end of the thread for
    /// [`AdminSocket::spawn`]). Calling it again is harmless.
    pub fn shutdown(&self) {
        self.stop.store(true, Ordering::SeqCst);
        // Nobody listening means the loop is gone already.
        let _ = UnixStream::connect(&self.path);
    }
}

impl AdminSocket {
    /// Listens on `path` (normally [`admin_socket_path`] of the data
    /// directory, which must exist).
    ///
    /// A stale socket left at `path` by a server that crashed is replaced;
    /// a socket someone still listens on, or any other kind of file, is an
    /// error and left alone.
    pub fn bind(path: &Path) -> Result<Self> {
        let (listener, file_id) = bind_listener(path)?;
        Ok(Self {
            listener: Mutex::new(listener),
            path: path.to_path_buf(),
            file_id: Arc::new(Mutex::new(file_id)),
            stop: Arc::new(AtomicBool::new(false)),
            serving: Arc::new(AtomicBool::new(true)),
            max_line: MAX_LINE_BYTES,
        })
    }

    /// The same socket, refusing lines over `max_line` bytes (the default
    /// is [`MAX_LINE_BYTES`]).
    pub fn with_max_line_bytes(mut self, max_line: usize) -> Self {
        self.max_line = max_line;
        self
    }

    /// The path of the socket file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// What stops [`AdminSocket::serve`] or [`AdminSocket::spawn`]. Take it
    /// before `spawn`, which consumes the socket.
    pub fn shutdown_handle(&self) -> AdminShutdown {
        AdminShutdown {
            path: self.path.clone(),
            stop: self.stop.clone(),
        }
    }

    /// What tells whether this socket is up ([`AdminHealth::check`]), from
    /// any thread. Take it before `spawn`, which consumes the socket.
    pub fn health_handle(&self) -> AdminHealth {
        AdminHealth {
            path: self.path.clone(),
            file_id: self.file_id.clone(),
            serving: self.serving.clone(),
        }
    }

    /// The accept loop: serves connections one at a time against `store`
    /// (see [`serve_connection`]) until [`AdminShutdown::shutdown`] is
    /// called. Failures of single connections are not reported.
    ///
    /// It waits for connections at most 250 ms at a time, so that
    /// it stops even when the socket file was removed (a cleanup job) and
    /// the shutdown's wake-up connection could not be made; and when its
    /// file is gone, it binds the path again, so that stamps-admin and the
    /// readiness check recover without a restart. A path taken by another
    /// file is left alone (logged once).
    pub fn serve<S: Store + ?Sized>(&self, store: &S) {
        let _serving = ServingGuard(&self.serving);
        let mut warned = false;
        while !self.stop.load(Ordering::SeqCst) {
            let mut listener = self.listener.lock().unwrap_or_else(PoisonError::into_inner);
            let mut fds = [rustix::event::PollFd::new(
                &*listener,
                rustix::event::PollFlags::IN,
            )];
            let timeout = rustix::event::Timespec::try_from(ACCEPT_POLL).ok();
            match rustix::event::poll(&mut fds, timeout.as_ref()) {
                Ok(0) | Err(_) => {
                    if !is_ours(&self.path, &self.file_id) {
                        match self.bind_again() {
                            // The old socket closes: nothing waits on it.
                            Ok(new) => {
                                *listener = new;
                                warned = false;
                            }
                            Err(e) if !warned => {
                                tracing::warn!(error = %e, "the admin socket file is gone and cannot be made again");
                                warned = true;
                            }
                            Err(_) => {}
                        }
                    }
                    continue;
                }
                Ok(_) => {}
            }
            match listener.accept() {
                Ok((stream, _)) => {
                    if self.stop.load(Ordering::SeqCst) {
                        break;
                    }
                    let _ = serve_connection_limited(store, stream, self.max_line);
                }
                // Such as too many open files: wait rather than spin.
                Err(_) => std::thread::sleep(Duration::from_millis(50)),
            }
        }
    }

    /// Binds the path again (its file was removed or replaced): the new
    /// listener, whose file the health check and `Drop` now know as ours.
    fn bind_again(&self) -> Result<UnixListener> {
        let (listener, file_id) = bind_listener(&self.path)?;
        *self.file_id.lock().unwrap_or_else(PoisonError::into_inner) = file_id;
        tracing::info!(path = %self.path.display(), "the admin socket file was gone: made again");
        Ok(listener)
    }

    /// Runs [`AdminSocket::serve`] on a thread of its own
    /// (`stamps-admin-socket`). The thread ends after
    /// [`AdminShutdown::shutdown`], removing the socket file as it goes.
    pub fn spawn(self, store: Arc<dyn Store>) -> Result<JoinHandle<()>> {
        std::thread::Builder::new()
            .name("stamps-admin-socket".into())
            .spawn(move || self.serve(store.as_ref()))
            .map_err(|e| StoreError::Backend(format!("cannot start the admin socket thread: {e}")))
    }
}

/// Binds a new listening socket at `path`, mode 0600 from the moment it
/// appears there; returns it with the device and inode of its file.
fn bind_listener(path: &Path) -> Result<(UnixListener, (u64, u64))> {
    let fail = |what: &str, e: io::Error| {
        StoreError::Backend(format!("admin socket {}: {what}: {e}", path.display()))
    };
    match fs::symlink_metadata(path) {
        Ok(meta) if meta.file_type().is_socket() => {
            if UnixStream::connect(path).is_ok() {
                return Err(StoreError::Backend(format!(
                    "admin socket {}: another process is listening on it \
                     (is another stamps-server running on this data directory?)",
                    path.display()
                )));
            }
            // Stale: the rename below replaces it.
        }
        Ok(_) => {
            return Err(StoreError::Backend(format!(
                "admin socket {}: the path exists and is not a socket; not replacing it",
                path.display()
            )));
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(fail("cannot inspect it", e)),
    }

    // No moment with wider permissions than 0600: bind() creates the
    // socket file with permissions from the umask, which is process-wide
    // (changing it would race other threads). So bind inside a new
    // private (0700) directory beside the target, where nobody else can
    // reach the socket, chmod it to 0600 there, then rename it into
    // place atomically (which also replaces a stale socket).
    let parent = match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    };
    let (temp_dir, temp_path) = private_temp_dir(parent).map_err(|e| {
        fail(
            "cannot create a temporary directory beside it to bind in",
            e,
        )
    })?;
    let bound = (|| -> Result<(UnixListener, (u64, u64))> {
        let listener = UnixListener::bind(&temp_path).map_err(|e| fail("cannot bind", e))?;
        fs::set_permissions(&temp_path, fs::Permissions::from_mode(0o600))
            .map_err(|e| fail("cannot set its mode to 0600", e))?;
        let meta = fs::symlink_metadata(&temp_path).map_err(|e| fail("cannot inspect", e))?;
        fs::rename(&temp_path, path).map_err(|e| fail("cannot move it into place", e))?;
        Ok((listener, (meta.dev(), meta.ino())))
    })();
    // Whatever happened, the temporary directory goes (with the socket
    // if it was not moved).
    let _ = fs::remove_file(&temp_path);
    let _ = fs::remove_dir(&temp_dir);
    bound
}

impl Drop for AdminSocket {
    fn drop(&mut self) {
        // Only our own socket: a later server may have replaced it.
        if is_ours(&self.path, &self.file_id) {
            let _ = fs::remove_file(&self.path);
        }
    }
}

/// Creates a new directory with mode 0700 in `parent`; returns it and the
/// path for a socket inside it. Names are short: socket paths are limited
/// to about 100 bytes.
fn private_temp_dir(parent: &Path) -> io::Result<(PathBuf, PathBuf)> {
    let mut builder = fs::DirBuilder::new();
    builder.mode(0o700);
    let mut last = io::Error::other("no attempt made");
    for _ in 0..64 {
        let n = BIND_ATTEMPT.fetch_add(1, Ordering::Relaxed);
        let dir = parent.join(format!(".admin-{}-{n}", std::process::id()));
        match builder.create(&dir) {
            Ok(()) => {
                let socket = dir.join("s");
                return Ok((dir, socket));
            }
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => last = e,
            Err(e) => return Err(e),
        }
    }
    Err(last)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;

    fn every_error() -> Vec<StoreError> {
        vec![
            StoreError::NotFound {
                kind: "merchant".into(),
                id: "7".into(),
            },
            StoreError::NotFound {
                kind: "token".into(),
                id: "0123456789abcdef".into(),
            },
            StoreError::Duplicate {
                kind: "user".into(),
                id: "5870".into(),
            },
            StoreError::InvalidText {
                field: "label".into(),
                reason: "must not contain control characters".into(),
            },
            StoreError::InvalidText {
                field: "name".into(),
                reason: "must be at most 200 characters".into(),
            },
            StoreError::InvalidId {
                kind: "user".into(),
                id: 0,
            },
            StoreError::NotEmpty,
            StoreError::InvalidImport {
                line: 4,
                reason: "bad \"line\"\nwith a newline".into(),
            },
            StoreError::Locked {
                path: "/var/lib/stamps/db".into(),
            },
            StoreError::SchemaTooNew {
                path: "/d/db".into(),
                found: 9,
                supported: 1,
            },
            StoreError::Corrupt {
                tree: "tokens".into(),
                reason: "expected value at line 1".into(),
            },
            StoreError::Hash("bad params".into()),
            StoreError::Backend("disk full".into()),
            StoreError::Full("the file system is full".into()),
            StoreError::DataDir {
                path: "/d".into(),
                problem: "it has mode 0755".into(),
            },
        ]
    }

    #[test]
    fn errors_round_trip_through_json() {
        for error in every_error() {
            let line = serde_json::to_vec(&Response::<()>::from(Err(error.clone()))).unwrap();
            assert!(!line.contains(&b'\n'));
            let back: Response<()> = serde_json::from_slice(&line).unwrap();
            let back = back.into_result().unwrap_err();
            assert_eq!(back, error);
            assert_eq!(back.to_string(), error.to_string());
        }
    }

    #[test]
    fn words_a_newer_server_sends_are_kept() {
        let line = br#"{"err":{"not_found":{"kind":"widget","id":"3"}}}"#;
        let back: Response<()> = serde_json::from_slice(line).unwrap();
        assert_eq!(
            back.into_result().unwrap_err().to_string(),
            "no widget with id 3"
        );
    }

    #[test]
    fn lines_are_bounded() {
        let read = |input: &[u8], max| read_line(&mut &input[..], max);
        assert_eq!(read(b"", 4).unwrap(), None);
        assert_eq!(read(b"abcd\nrest", 4).unwrap(), Some(b"abcd".to_vec()));
        assert_eq!(
            read(b"abcde\n", 4).unwrap_err().kind(),
            io::ErrorKind::InvalidData
        );
        assert_eq!(
            read(b"abcdefgh", 4).unwrap_err().kind(),
            io::ErrorKind::InvalidData
        );
        assert_eq!(
            read(b"abc", 4).unwrap_err().kind(),
            io::ErrorKind::UnexpectedEof
        );
    }

    #[test]
    fn requests_have_a_readable_form() {
        let request = Request::AddAccount {
            kind: AccountKind::Merchant,
            name: "My Merchant".into(),
            id: Some(1),
        };
        let text = serde_json::to_string(&request).unwrap();
        assert_eq!(
            text,
            r#"{"add_account":{"kind":"merchant","name":"My Merchant","id":1}}"#
        );
        assert_eq!(serde_json::from_str::<Request<'_>>(&text).unwrap(), request);
        assert_eq!(
            serde_json::to_string(&Request::Snapshot).unwrap(),
            r#""snapshot""#
        );
    }
}
