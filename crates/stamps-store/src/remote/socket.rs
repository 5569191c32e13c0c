//! [`AdminSocket`]: the socket file's lifecycle (bound private, rebound
//! when a cleanup job removed it, removed at shutdown), its accept loop,
//! and the health the server's readiness reads.

use std::fs;
use std::io::{self};
use std::os::unix::fs::{DirBuilderExt, FileTypeExt, MetadataExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::Duration;

use super::{MAX_LINE_BYTES, serve_connection_limited};
use crate::Store;
use crate::error::{Result, StoreError};

/// A process-wide counter for the names of temporary bind directories.
static BIND_ATTEMPT: AtomicU64 = AtomicU64::new(0);

/// The listening admin socket of a server, which a [`RemoteStore`](crate::RemoteStore) in
/// another process talks to (see [`Request`](crate::Request) for the protocol).
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
    /// Listens on `path` (normally [`admin_socket_path`](crate::admin_socket_path) of the data
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
    /// (see [`serve_connection`](crate::serve_connection)) until [`AdminShutdown::shutdown`] is
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
