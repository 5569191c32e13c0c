//! The errors of the store.

use std::borrow::Cow;

use serde::{Deserialize, Serialize};
use stamps_core::UnixTime;
use thiserror::Error;

/// A failed store operation. Every variant but [`StoreError::Backend`]
/// leaves the store unchanged; a `Backend` error raised while flushing may
/// come after the change was written, so callers that mirror the store
/// (the server's in-memory state) re-read it. A write refused with
/// [`StoreError::Full`] by a backend that keeps a reserve of space (sled's
/// `ResilientStore`) was not made; from a backend without one, `Full` is
/// like `Backend` (see docs/STORAGE.md, "Disk full").
///
/// Errors are serialisable: the admin socket sends the store's error as
/// it is, and the other side gets one equal in variant, fields and text.
/// The words a backend names (`kind`, `field`, `tree`, ...) are
/// `Cow<'static, str>`: static where the store makes them, owned where
/// they arrive from the socket.
#[derive(Debug, Clone, PartialEq, Eq, Error, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum StoreError {
    /// Occurs when a merchant, user or token with the given id does not exist.
    #[error("no {kind} with id {id}")]
    NotFound {
        /// `merchant`, `user` or `token`.
        kind: Cow<'static, str>,
        /// The id asked for.
        id: String,
    },
    /// Occurs when a record with the given id already exists.
    #[error("a {kind} with id {id} already exists")]
    Duplicate {
        /// `merchant`, `user` or `token`.
        kind: Cow<'static, str>,
        /// The id asked for.
        id: String,
    },
    /// Occurs when a name or label is empty, longer than 200 characters, or
    /// holds a control character.
    #[error("invalid {field}: {reason}")]
    InvalidText {
        /// `name` or `label`.
        field: Cow<'static, str>,
        /// What is wrong with it.
        reason: Cow<'static, str>,
    },
    /// Occurs when an id is out of range (0 is never an id).
    #[error("invalid {kind} id {id}: ids are whole numbers from 1 to {max}", max = u64::MAX - 1)]
    InvalidId {
        /// `merchant` or `user`.
        kind: Cow<'static, str>,
        /// The id given.
        id: u64,
    },
    /// Occurs when a token would be created or imported with an expiry
    /// that is not in the future: it would never grant access.
    #[error(
        "the expiry must be in the future: {expires_at} is not after now ({now}), in seconds since the epoch"
    )]
    ExpiryPast {
        /// The expiry given, in seconds since the epoch.
        expires_at: UnixTime,
        /// The store's time when it was refused.
        now: UnixTime,
    },
    /// Occurs when `import` targets a store that already holds records.
    #[error("the store already holds records; import needs an empty store")]
    NotEmpty,
    /// Occurs when an export file cannot be imported; nothing was loaded.
    #[error("import line {line}: {reason}")]
    InvalidImport {
        /// The 1-based line of the file.
        line: usize,
        /// What is wrong with it.
        reason: String,
    },
    /// Occurs when another process (a running server, another admin
    /// command) has the data directory open.
    #[error("the store at {path} is in use by another process (is stamps-server running on it?)")]
    Locked {
        /// The database directory.
        path: String,
    },
    /// Occurs when the store was written by a newer stamps.
    #[error(
        "the store at {path} has schema version {found}, newer than this stamps supports ({supported}); upgrade stamps"
    )]
    SchemaTooNew {
        /// The database directory.
        path: String,
        /// The version on disk.
        found: u32,
        /// The newest version this build reads.
        supported: u32,
    },
    /// Occurs when a stored record cannot be decoded: the files were changed
    /// by something other than stamps.
    #[error("corrupt store record in {tree}: {reason}")]
    Corrupt {
        /// The tree the record is in.
        tree: Cow<'static, str>,
        /// What failed.
        reason: String,
    },
    /// Occurs when hashing a secret fails (argon2 refused its parameters).
    #[error("hashing failed: {0}")]
    Hash(String),
    /// Occurs when the database itself fails: I/O errors other than
    /// [`StoreError::Full`].
    #[error("storage error: {0}")]
    Backend(String),
    /// Occurs when a write needs space the store's file system does not
    /// have (full, a disk quota, the file size limit). Holds the cause.
    #[error("no space left for the store: {0}; free some space on its file system, then retry")]
    Full(String),
    /// Occurs when the data directory cannot be used: not a directory,
    /// not readable or writable by this process, on a read-only file
    /// system, or open to group or others.
    #[error("cannot use data directory {path}: {problem}")]
    DataDir {
        /// The data directory.
        path: String,
        /// What is wrong, and how to fix it.
        problem: String,
    },
}

impl StoreError {
    /// True for the failures of the storage itself ([`StoreError::Backend`],
    /// [`StoreError::Full`]), after which the store may be unusable until
    /// it is reopened; false for refusals of the request.
    pub fn is_storage_failure(&self) -> bool {
        matches!(self, StoreError::Backend(_) | StoreError::Full(_))
    }
}

/// The result of store operations.
pub type Result<T, E = StoreError> = std::result::Result<T, E>;
