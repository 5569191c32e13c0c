//! The admin socket: `RemoteStore` against an `AdminSocket` served by a
//! thread, as the admin command line uses a running server.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use stamps_core::{ExposeSecret, ManualClock, TokenId, UnixTime};
use stamps_store::{
    Account, AccountKind, AdminShutdown, AdminSocket, AuditEvent, JwtRevocation,
    JwtRevocationTarget, KeyInfo, MAX_LINE_BYTES, PruneSummary, RemoteStore, SecretHasher,
    SigningKeyRecord, Snapshot, SnapshotSummary, Store, StoreError, TokenCheck, TokenFilter,
    TokenRecord, admin_socket_path, serve_connection_limited,
};
use stamps_store_sled::SledStore;
use tempfile::TempDir;

/// A store served on its data directory's admin socket by a thread.
struct Served {
    dir: TempDir,
    store: Arc<dyn Store>,
    stop: AdminShutdown,
    thread: Option<JoinHandle<()>>,
}

impl Served {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn Store> = Arc::new(
            SledStore::open_with(
                dir.path(),
                SecretHasher::owasp(),
                Arc::new(ManualClock::new(1_000)),
            )
            .unwrap(),
        );
        Self::serve(dir, store)
    }

    fn serve(dir: TempDir, store: Arc<dyn Store>) -> Self {
        let socket = AdminSocket::bind(&admin_socket_path(dir.path())).unwrap();
        let stop = socket.shutdown_handle();
        let thread = Some(socket.spawn(store.clone()).unwrap());
        Self {
            dir,
            store,
            stop,
            thread,
        }
    }

    fn socket(&self) -> PathBuf {
        admin_socket_path(self.dir.path())
    }

    fn remote(&self) -> RemoteStore {
        RemoteStore::connect(&self.socket())
            .unwrap()
            .expect("a server listens")
            .with_clock(Arc::new(ManualClock::new(1_000)))
    }

    fn stop(&mut self) {
        self.stop.shutdown();
        if let Some(thread) = self.thread.take() {
            thread.join().unwrap();
        }
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        self.stop();
    }
}

fn seed(store: &dyn Store) {
    store
        .add_account(AccountKind::Merchant, "My Merchant", Some(1))
        .unwrap();
    store
        .add_account(AccountKind::User, "user5870", Some(5870))
        .unwrap();
}

#[test]
fn changes_through_the_socket_are_seen_by_the_server_at_once() {
    let served = Served::new();
    let remote = served.remote();
    seed(&remote);
    assert_eq!(
        served.store.account(AccountKind::Merchant, 1).unwrap(),
        remote.account(AccountKind::Merchant, 1).unwrap()
    );
    let issued = remote.create_token(5870, 1, Some("till 3")).unwrap();
    let TokenCheck::Live(record) = served.store.check_token(&issued.token).unwrap() else {
        panic!("the server does not see the new token as live");
    };
    assert_eq!(record, issued.record);
    assert!(matches!(
        remote.check_token(&issued.token).unwrap(),
        TokenCheck::Live(_)
    ));

    remote
        .set_account_active(AccountKind::User, 5870, false)
        .unwrap();
    assert!(
        !served
            .store
            .account(AccountKind::User, 5870)
            .unwrap()
            .unwrap()
            .active
    );
    assert!(remote.revoke_token(issued.token.id()).unwrap().revoked);
    assert!(
        served
            .store
            .token(issued.token.id())
            .unwrap()
            .unwrap()
            .revoked
    );

    assert!(
        remote
            .replace_token_hash(issued.token.id(), &record.hash, "$argon2id$new")
            .unwrap()
    );
    assert!(
        !remote
            .replace_token_hash(issued.token.id(), &record.hash, "$argon2id$newer")
            .unwrap()
    );
    assert_eq!(
        served.store.token(issued.token.id()).unwrap().unwrap().hash,
        "$argon2id$new"
    );
    assert_eq!(
        remote.tokens(TokenFilter::default()).unwrap(),
        served.store.tokens(TokenFilter::default()).unwrap()
    );
    assert_eq!(remote.snapshot().unwrap(), served.store.snapshot().unwrap());
    assert_eq!(
        remote.accounts(AccountKind::User).unwrap(),
        served.store.accounts(AccountKind::User).unwrap()
    );
}

#[test]
fn imported_tokens_and_last_use_go_through_the_socket() {
    let (store, restored, used) = (Served::new(), Served::new(), Served::new());
    stamps_store::conformance::check_imported_tokens(&store.remote(), &restored.remote()).unwrap();
    stamps_store::conformance::check_last_use(&used.remote()).unwrap();
}

#[test]
fn restore_goes_through_and_refuses_a_store_with_records() {
    let source = Served::new();
    seed(source.store.as_ref());
    source.store.create_token(5870, 1, None).unwrap();
    let snapshot = source.remote().snapshot().unwrap();
    assert_eq!(snapshot.summary().tokens, 1);

    let target = Served::new();
    let remote = target.remote();
    assert_eq!(
        remote.restore(&snapshot).unwrap(),
        SnapshotSummary {
            merchants: 1,
            users: 1,
            tokens: 1
        }
    );
    assert_eq!(target.store.snapshot().unwrap(), snapshot);
    let refused = remote.restore(&snapshot).unwrap_err();
    assert!(matches!(refused, StoreError::NotEmpty), "{refused:?}");
}

/// A call expected to fail.
type FailingCall = dyn Fn(&dyn Store) -> StoreError;

/// The same failing calls on a direct store and through the socket give
/// the same variant, fields and text.
#[test]
fn store_errors_arrive_identical() {
    let direct_dir = tempfile::tempdir().unwrap();
    let direct = SledStore::open(direct_dir.path()).unwrap();
    seed(&direct);
    let served = Served::new();
    let remote = served.remote();
    seed(&remote);

    let unknown: TokenId = "0123456789abcdef".parse().unwrap();
    let record = TokenRecord {
        id: unknown,
        user_id: 5870,
        merchant_id: 99,
        label: None,
        hash: "$argon2id$x".into(),
        created_at: 1,
        revoked: false,
        expires_at: None,
        last_used_at: None,
        lookup: None,
    };
    let calls: Vec<(&str, Box<FailingCall>)> = vec![
        (
            "duplicate",
            Box::new(|s| {
                s.add_account(AccountKind::Merchant, "again", Some(1))
                    .unwrap_err()
            }),
        ),
        (
            "empty name",
            Box::new(|s| s.add_account(AccountKind::User, "", None).unwrap_err()),
        ),
        (
            "long name",
            Box::new(|s| {
                s.add_account(AccountKind::User, &"x".repeat(201), None)
                    .unwrap_err()
            }),
        ),
        (
            "control",
            Box::new(|s| s.add_account(AccountKind::User, "a\nb", None).unwrap_err()),
        ),
        (
            "id 0",
            Box::new(|s| {
                s.add_account(AccountKind::User, "zero", Some(0))
                    .unwrap_err()
            }),
        ),
        (
            "unknown account",
            Box::new(|s| {
                s.set_account_active(AccountKind::Merchant, 42, false)
                    .unwrap_err()
            }),
        ),
        (
            "unknown token",
            Box::new(move |s| s.revoke_token(&unknown).unwrap_err()),
        ),
        (
            "token for an unknown merchant",
            Box::new(move |s| s.insert_token(&record).unwrap_err()),
        ),
        (
            "bad label",
            Box::new(|s| s.create_token(5870, 1, Some("")).unwrap_err()),
        ),
        (
            "not empty",
            Box::new(|s| s.restore(&Snapshot::default()).unwrap_err()),
        ),
    ];
    for (what, call) in &calls {
        let want = call(&direct);
        let got = call(&remote);
        assert_eq!(format!("{got:?}"), format!("{want:?}"), "{what}");
        assert_eq!(got.to_string(), want.to_string(), "{what}");
    }
}

/// A store failing every call with the error `make` gives.
struct Failing(fn() -> StoreError);

impl Store for Failing {
    fn add_account(&self, _: AccountKind, _: &str, _: Option<u64>) -> Result<Account, StoreError> {
        Err((self.0)())
    }
    fn account(&self, _: AccountKind, _: u64) -> Result<Option<Account>, StoreError> {
        Err((self.0)())
    }
    fn accounts(&self, _: AccountKind) -> Result<Vec<Account>, StoreError> {
        Err((self.0)())
    }
    fn set_account_active(&self, _: AccountKind, _: u64, _: bool) -> Result<Account, StoreError> {
        Err((self.0)())
    }
    fn insert_tokens(&self, _: &[TokenRecord]) -> Result<(), StoreError> {
        Err((self.0)())
    }
    fn imported_token(
        &self,
        _: &stamps_core::LookupDigest,
    ) -> Result<Option<TokenRecord>, StoreError> {
        Err((self.0)())
    }
    fn has_imported_tokens(&self) -> Result<bool, StoreError> {
        Err((self.0)())
    }
    fn record_last_used(&self, _: &[(TokenId, UnixTime)]) -> Result<(), StoreError> {
        Err((self.0)())
    }
    fn token(&self, _: &TokenId) -> Result<Option<TokenRecord>, StoreError> {
        Err((self.0)())
    }
    fn tokens(&self, _: TokenFilter) -> Result<Vec<TokenRecord>, StoreError> {
        Err((self.0)())
    }
    fn revoke_token(&self, _: &TokenId) -> Result<TokenRecord, StoreError> {
        Err((self.0)())
    }
    fn replace_token_hash(&self, _: &TokenId, _: &str, _: &str) -> Result<bool, StoreError> {
        Err((self.0)())
    }
    fn snapshot(&self) -> Result<Snapshot, StoreError> {
        Err((self.0)())
    }
    fn restore(&self, _: &Snapshot) -> Result<SnapshotSummary, StoreError> {
        Err((self.0)())
    }
    fn revoke_jwts(&self, _: JwtRevocationTarget) -> Result<JwtRevocation, StoreError> {
        Err((self.0)())
    }
    fn jwt_revocations(&self) -> Result<Vec<JwtRevocation>, StoreError> {
        Err((self.0)())
    }
    fn rotate_signing_key_with(&self, _: bool) -> Result<KeyInfo, StoreError> {
        Err((self.0)())
    }
    fn signing_keys(&self) -> Result<Vec<SigningKeyRecord>, StoreError> {
        Err((self.0)())
    }
    fn prune(&self, _: UnixTime) -> Result<PruneSummary, StoreError> {
        Err((self.0)())
    }
    fn append_audit(&self, _: &[AuditEvent]) -> Result<(), StoreError> {
        Err((self.0)())
    }
    fn audit(&self, _: UnixTime) -> Result<Vec<AuditEvent>, StoreError> {
        Err((self.0)())
    }
    fn prune_audit(&self, _: UnixTime, _: usize) -> Result<usize, StoreError> {
        Err((self.0)())
    }
    fn hasher(&self) -> &SecretHasher {
        unreachable!()
    }
    fn now(&self) -> UnixTime {
        unreachable!()
    }
}

/// Every variant, also those a running sled store cannot produce on
/// demand, comes back the same from every method.
#[test]
fn every_error_variant_round_trips_with_identical_text() {
    let makers: [fn() -> StoreError; 11] = [
        || StoreError::NotFound {
            kind: "user".into(),
            id: "9".into(),
        },
        || StoreError::Duplicate {
            kind: "token".into(),
            id: "0123456789abcdef".into(),
        },
        || StoreError::InvalidText {
            field: "label".into(),
            reason: "must not be empty".into(),
        },
        || StoreError::InvalidId {
            kind: "merchant".into(),
            id: u64::MAX,
        },
        || StoreError::NotEmpty,
        || StoreError::InvalidImport {
            line: 3,
            reason: "a reason with \"quotes\" and\nnewlines".into(),
        },
        || StoreError::Locked {
            path: "/srv/stamps/db".into(),
        },
        || StoreError::SchemaTooNew {
            path: "/srv/stamps/db".into(),
            found: 7,
            supported: 1,
        },
        || StoreError::Corrupt {
            tree: "merchants".into(),
            reason: "EOF while parsing".into(),
        },
        || StoreError::Hash("memory cost is too small".into()),
        || StoreError::Backend("No space left on device (os error 28)".into()),
    ];
    let id: TokenId = "0123456789abcdef".parse().unwrap();
    let record = TokenRecord {
        id,
        user_id: 1,
        merchant_id: 1,
        label: None,
        hash: "h".into(),
        created_at: 1,
        revoked: false,
        expires_at: None,
        last_used_at: None,
        lookup: None,
    };
    for make in makers {
        let dir = tempfile::tempdir().unwrap();
        let served = Served::serve(dir, Arc::new(Failing(make)));
        let remote = served.remote();
        let want = make();
        let errors = [
            remote
                .add_account(AccountKind::User, "x", None)
                .unwrap_err(),
            remote.account(AccountKind::User, 1).unwrap_err(),
            remote.accounts(AccountKind::Merchant).unwrap_err(),
            remote
                .set_account_active(AccountKind::User, 1, true)
                .unwrap_err(),
            remote.insert_token(&record).unwrap_err(),
            remote.token(&id).unwrap_err(),
            remote.tokens(TokenFilter::default()).unwrap_err(),
            remote.revoke_token(&id).unwrap_err(),
            remote.replace_token_hash(&id, "a", "b").unwrap_err(),
            remote.snapshot().unwrap_err(),
            remote.restore(&Snapshot::default()).unwrap_err(),
        ];
        for got in errors {
            assert_eq!(format!("{got:?}"), format!("{want:?}"));
            assert_eq!(got.to_string(), want.to_string());
        }
    }
}

#[test]
fn connect_finds_no_server_without_a_socket_or_with_a_stale_one() {
    let dir = tempfile::tempdir().unwrap();
    let path = admin_socket_path(dir.path());
    assert!(RemoteStore::connect(&path).unwrap().is_none());
    assert!(
        RemoteStore::connect(&dir.path().join("no-such-dir").join("admin.sock"))
            .unwrap()
            .is_none()
    );

    // A crashed server leaves its socket file behind: nobody listens.
    drop(UnixListener::bind(&path).unwrap());
    assert!(
        std::fs::symlink_metadata(&path)
            .unwrap()
            .file_type()
            .is_socket()
    );
    assert!(RemoteStore::connect(&path).unwrap().is_none());

    // A new server replaces the stale socket.
    let socket = AdminSocket::bind(&path).unwrap();
    assert!(RemoteStore::connect(&path).unwrap().is_some());
    drop(socket);
    assert!(!path.exists());
    assert!(RemoteStore::connect(&path).unwrap().is_none());
}

/// The names in `dir`.
fn names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    names
}

#[test]
fn the_socket_is_private_and_removed_when_the_server_stops() {
    let mut served = Served::new();
    let path = served.socket();
    let meta = std::fs::symlink_metadata(&path).unwrap();
    assert!(meta.file_type().is_socket());
    assert_eq!(
        meta.permissions().mode() & 0o777,
        0o600,
        "{:o}",
        meta.permissions().mode()
    );
    // Nothing is left over from binding.
    assert_eq!(names(served.dir.path()), ["admin.sock", "db"]);

    served.stop();
    assert!(!path.exists());
    assert_eq!(names(served.dir.path()), ["db"]);
}

#[test]
fn bind_leaves_alone_what_it_must_not_replace() {
    let dir = tempfile::tempdir().unwrap();
    let path = admin_socket_path(dir.path());

    // Not a socket.
    std::fs::write(&path, "precious").unwrap();
    let refused = AdminSocket::bind(&path).unwrap_err().to_string();
    assert!(refused.contains("not a socket"), "{refused}");
    assert_eq!(std::fs::read_to_string(&path).unwrap(), "precious");
    std::fs::remove_file(&path).unwrap();

    // A live socket.
    let live = AdminSocket::bind(&path).unwrap();
    let refused = AdminSocket::bind(&path).unwrap_err().to_string();
    assert!(
        refused.contains("another process is listening"),
        "{refused}"
    );
    assert!(path.exists());
    drop(live);

    // A replaced socket is not removed by the old owner.
    let old = AdminSocket::bind(&path).unwrap();
    std::fs::remove_file(&path).unwrap();
    let new = AdminSocket::bind(&path).unwrap();
    drop(old);
    assert!(path.exists());
    drop(new);
    assert!(!path.exists());
    assert!(names(dir.path()).is_empty());
}

#[test]
fn an_oversized_request_is_refused_not_read_forever() {
    let dir = tempfile::tempdir().unwrap();
    let store = SledStore::open(dir.path()).unwrap();
    let (client, server) = UnixStream::pair().unwrap();
    let serving = std::thread::spawn(move || serve_connection_limited(&store, server, 1024));

    // 4 KiB on one line, and more to come: the server stops after 1 KiB.
    let mut writer = &client;
    writer.write_all(&[b'x'; 4096]).unwrap();
    let mut answer = String::new();
    BufReader::new(&client).read_line(&mut answer).unwrap();
    assert!(
        answer
            .contains("admin request refused: longer than the admin socket's limit of 1024 bytes"),
        "{answer}"
    );
    let ended = serving.join().unwrap().unwrap_err();
    assert_eq!(ended.kind(), std::io::ErrorKind::InvalidData);
    // The server closed the connection (Linux reports the unread rest of
    // the request as a reset).
    let mut rest = Vec::new();
    match (&client).read_to_end(&mut rest) {
        Ok(0) => {}
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {}
        other => panic!("{other:?}"),
    }
}

#[test]
fn malformed_requests_get_an_error_and_the_connection_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let store = SledStore::open(dir.path()).unwrap();
    let (client, server) = UnixStream::pair().unwrap();
    let serving = std::thread::spawn(move || serve_connection_limited(&store, server, 1024));
    let mut writer = &client;
    writer
        .write_all(b"not json\n{\"accounts\":{\"kind\":\"user\"}}\n")
        .unwrap();
    let mut reader = BufReader::new(&client);
    let mut first = String::new();
    reader.read_line(&mut first).unwrap();
    assert!(
        first.starts_with(r#"{"err":{"backend":"malformed admin request"#),
        "{first}"
    );
    let mut second = String::new();
    reader.read_line(&mut second).unwrap();
    assert_eq!(second, "{\"ok\":[]}\n");
    client.shutdown(std::net::Shutdown::Write).unwrap();
    serving.join().unwrap().unwrap();
}

#[test]
fn oversized_requests_and_answers_are_refused_by_the_client() {
    let served = Served::new();
    seed(served.store.as_ref());
    let remote = served.remote().with_max_line_bytes(200);
    let refused = remote
        .add_account(AccountKind::User, &"é".repeat(150), None)
        .unwrap_err()
        .to_string();
    assert!(
        refused.contains("over the admin socket's limit of 200 bytes"),
        "{refused}"
    );
    for i in 0..4 {
        served
            .store
            .add_account(AccountKind::Merchant, &format!("merchant {i}"), None)
            .unwrap();
    }
    let refused = remote
        .accounts(AccountKind::Merchant)
        .unwrap_err()
        .to_string();
    assert!(refused.contains("line longer than 200 bytes"), "{refused}");
    const { assert!(MAX_LINE_BYTES == 1 << 30) };
}

#[test]
fn the_server_refuses_an_oversized_answer() {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn Store> = Arc::new(SledStore::open(dir.path()).unwrap());
    seed(store.as_ref());
    let socket = AdminSocket::bind(&admin_socket_path(dir.path()))
        .unwrap()
        .with_max_line_bytes(300);
    let stop = socket.shutdown_handle();
    let thread = socket.spawn(store.clone()).unwrap();
    let remote = RemoteStore::connect(&admin_socket_path(dir.path()))
        .unwrap()
        .unwrap();
    for i in 0..8 {
        remote
            .add_account(AccountKind::Merchant, &format!("merchant {i}"), None)
            .unwrap();
    }
    let refused = remote.snapshot().unwrap_err();
    assert!(
        matches!(&refused, StoreError::Backend(text) if text.contains("the answer is") && text.contains("limit of 300 bytes")),
        "{refused:?}"
    );
    stop.shutdown();
    thread.join().unwrap();
}

#[test]
fn a_hung_server_gives_an_error_not_a_hang() {
    let dir = tempfile::tempdir().unwrap();
    let path = admin_socket_path(dir.path());
    let listener = UnixListener::bind(&path).unwrap();
    // Accepts, never answers.
    let silent = std::thread::spawn(move || {
        let (stream, _) = listener.accept().unwrap();
        let (_second, _) = listener.accept().unwrap();
        std::thread::sleep(Duration::from_secs(2));
        drop(stream);
    });
    let remote = RemoteStore::connect(&path)
        .unwrap()
        .unwrap()
        .with_timeout(Duration::from_millis(200));
    let started = Instant::now();
    let error = remote.accounts(AccountKind::User).unwrap_err().to_string();
    assert!(started.elapsed() < Duration::from_secs(2));
    assert!(error.contains("no answer within 200ms"), "{error}");
    silent.join().unwrap();
}

#[test]
fn a_stopped_server_gives_a_clear_error() {
    let mut served = Served::new();
    let remote = served.remote();
    served.stop();
    let error = remote.accounts(AccountKind::User).unwrap_err().to_string();
    assert!(error.contains("has the server stopped?"), "{error}");
}

#[test]
fn no_secret_crosses_the_socket() {
    // A fake server records the requests it gets and answers them from a
    // real store.
    let dir = tempfile::tempdir().unwrap();
    let store = SledStore::open(dir.path()).unwrap();
    seed(&store);
    let path = admin_socket_path(dir.path());
    let listener = UnixListener::bind(&path).unwrap();
    let remote = RemoteStore::connect(&path).unwrap().unwrap();
    let recorder = std::thread::spawn(move || {
        let mut seen = Vec::new();
        // `connect` probed once; then create_token makes one call.
        for _ in 0..2 {
            let (stream, _) = listener.accept().unwrap();
            let mut line = Vec::new();
            BufReader::new(&stream)
                .read_until(b'\n', &mut line)
                .unwrap();
            if line.is_empty() {
                continue;
            }
            seen.extend_from_slice(&line);
            let (a, b) = UnixStream::pair().unwrap();
            (&a).write_all(&line).unwrap();
            a.shutdown(std::net::Shutdown::Write).unwrap();
            serve_connection_limited(&store, b, 1 << 20).unwrap();
            let mut answer = Vec::new();
            (&a).read_to_end(&mut answer).unwrap();
            (&stream).write_all(&answer).unwrap();
        }
        seen
    });
    let issued = remote.create_token(5870, 1, None).unwrap();
    let seen = String::from_utf8(recorder.join().unwrap()).unwrap();
    assert!(seen.contains(issued.token.id().as_str()), "{seen}");
    assert!(
        !seen.contains(issued.token.secret().expose_secret()),
        "{seen}"
    );
    let whole = issued.token.to_secret_string();
    assert!(!seen.contains(whole.expose_secret()), "{seen}");
}

#[test]
fn a_socket_path_too_long_for_unix_sockets_means_no_server() {
    let dir = tempfile::tempdir().unwrap();
    let long = dir.path().join("d".repeat(150));
    std::fs::create_dir_all(&long).unwrap();
    let socket = admin_socket_path(&long);
    assert!(RemoteStore::connect(&socket).unwrap().is_none());
    // And a server cannot bind there: it says so instead of panicking.
    assert!(AdminSocket::bind(&socket).is_err());
}

#[test]
fn admin_health_follows_the_accept_loop_and_the_socket_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = admin_socket_path(dir.path());
    let store: Arc<dyn Store> = Arc::new(SledStore::open(&dir.path().join("store")).unwrap());
    let socket = AdminSocket::bind(&path).unwrap();
    let health = socket.health_handle();
    let stop = socket.shutdown_handle();
    let thread = socket.spawn(store).unwrap();
    assert_eq!(health.check(), Ok(()));

    // A file cleaner removes the socket file: down until the accept
    // loop binds the path again (within a poll or two), then up, and
    // serving.
    std::fs::remove_file(&path).unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    while health.check().is_err() {
        assert!(Instant::now() < deadline, "not rebound");
        std::thread::sleep(Duration::from_millis(20));
    }
    let remote = RemoteStore::connect(&path).unwrap().unwrap();
    remote.add_account(AccountKind::User, "U", Some(1)).unwrap();

    // Replaced, in one rename, by a file that is not a socket, which
    // the loop may not replace: the shutdown's wake-up connection
    // fails for certain (no race with a rebind), and the loop still
    // ends, within its poll interval, leaving that file alone.
    let other = dir.path().join("not-a-socket");
    std::fs::write(&other, b"someone else's").unwrap();
    std::fs::rename(&other, &path).unwrap();
    assert!(health.check().is_err());
    let (done, finished) = std::sync::mpsc::channel();
    stop.shutdown();
    std::thread::spawn(move || {
        let _ = done.send(thread.join().is_ok());
    });
    assert_eq!(finished.recv_timeout(Duration::from_secs(5)), Ok(true));
    assert_eq!(health.check(), Err(stamps_store::AdminDown::Stopped));
    assert_eq!(std::fs::read(&path).unwrap(), b"someone else's");
}
