//! The data directory: created private, and checked before the store opens
//! it, so that a directory stamps cannot use, or one that others could
//! change, stops it at start with one clear message (see docs/STORAGE.md,
//! "The data directory").

use std::io;
use std::path::Path;

use crate::sled_store::create_data_dir;
use stamps_store::{Result, StoreError};

/// The store's own directory inside the data directory.
pub(crate) const DB_DIR: &str = "db";

/// Prepares `dir` for the store: creates it (mode 0700) if it does not
/// exist; refuses it if it is not a directory this process can read and
/// write, or if group or others may write in it (they could replace the
/// store or the JWT secret); creates the store's directory `db` in it with
/// mode 0700, or makes an existing one so.
///
/// A data directory that others may only read is accepted: everything in it
/// is private on its own (`db` 0700, the key file 0600, the admin socket
/// 0600), so they see names, not contents.
pub(crate) fn prepare(dir: &Path) -> Result<()> {
    create_data_dir(dir)
        .map_err(|e| unusable(dir, format!("cannot create it: {e}{ACCESS_HINT}")))?;
    let metadata = std::fs::metadata(dir)
        .map_err(|e| unusable(dir, format!("cannot inspect it: {e}{ACCESS_HINT}")))?;
    if !metadata.is_dir() {
        return Err(unusable(dir, "it is not a directory".to_owned()));
    }
    check_not_writable_by_others(dir, &metadata)?;
    std::fs::read_dir(dir)
        .map_err(|e| unusable(dir, format!("cannot read it: {e}{ACCESS_HINT}")))?;
    let db = dir.join(DB_DIR);
    make_private(&db).map_err(|e| open_error(dir, e))?;
    remove_unfinished_snapshots(&db).map_err(|e| open_error(dir, e))
}

/// Refuses a data directory, or the store's directory or the admin socket
/// in it, that belongs to another user than the one this process runs as
/// (CONTRACT §3.1). A directory another user prepared, even a private one,
/// could hand the server a JWT secret of their choosing, or have its store
/// renamed aside and its socket replaced. What does not exist yet passes:
/// it will be made by this process. The server runs this at start, on
/// either backend (on PostgreSQL the data directory holds the admin
/// socket); the key file is checked on its open descriptor as it is read.
///
/// ```
/// let dir = tempfile::tempdir()?;
/// stamps_store_sled::check_data_dir_owner(dir.path())?; // ours
/// stamps_store_sled::check_data_dir_owner(&dir.path().join("not yet"))?; // made later, by us
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn check_data_dir_owner(dir: &Path) -> Result<()> {
    use std::os::unix::fs::MetadataExt;

    let me = rustix::process::geteuid().as_raw();
    for path in [
        dir.to_path_buf(),
        dir.join(DB_DIR),
        dir.join(stamps_store::ADMIN_SOCKET_FILE),
    ] {
        match std::fs::symlink_metadata(&path) {
            Ok(meta) if meta.uid() != me => {
                return Err(unusable(
                    dir,
                    format!(
                        "{} belongs to uid {}, not to uid {me}, which this server runs as: a \
                         directory another user prepared could hand it a JWT secret of their \
                         choosing; use a directory of this user (chown -R {me} {})",
                        path.display(),
                        meta.uid(),
                        dir.display()
                    ),
                ));
            }
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => {
                return Err(unusable(
                    dir,
                    format!("cannot inspect {}: {e}", path.display()),
                ));
            }
        }
    }
    Ok(())
}

/// Removes the snapshots sled 0.34 began and did not finish.
///
/// sled writes a snapshot to `snap.<lsn>.generating`, then renames it to
/// `snap.<lsn>`. A write cut short (a full disk, a crash) leaves the file
/// behind, and sled then takes it for the newest snapshot and refuses to
/// open the database for good ("empty/corrupt snapshot file found",
/// spacejam/sled#1527). Such a file is never a whole snapshot: sled only
/// renames complete, synced ones. It is removed while holding sled's own
/// lock on the database, so that no other process is writing it; if the
/// database is in use, nothing is done (opening it will say it is in use).
fn remove_unfinished_snapshots(db: &Path) -> io::Result<()> {
    let data_file = match std::fs::File::open(db.join("db")) {
        Ok(file) => file,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    if fs2::FileExt::try_lock_exclusive(&data_file).is_err() {
        return Ok(());
    }
    for entry in std::fs::read_dir(db)? {
        let path = entry?.path();
        let unfinished = path
            .file_name()
            .and_then(|name| name.to_str())
            .is_some_and(|name| name.starts_with("snap.") && name.ends_with(".generating"));
        if unfinished {
            std::fs::remove_file(&path)?;
            tracing::warn!(path = %path.display(), "removed a snapshot sled did not finish writing");
        }
    }
    // The lock goes with the file.
    drop(data_file);
    Ok(())
}

/// How to fix an access error.
const ACCESS_HINT: &str = "; it must be readable and writable by the user stamps runs as, \
     on a file system mounted read-write";

/// Refuses a directory that group or others may write in, saying how to
/// fix it.
#[cfg(unix)]
fn check_not_writable_by_others(dir: &Path, metadata: &std::fs::Metadata) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;

    let mode = metadata.permissions().mode() & 0o7777;
    if mode & 0o022 == 0 {
        return Ok(());
    }
    Err(unusable(
        dir,
        format!(
            "it has mode {mode:04o}, which lets group or others replace the store or the JWT \
             secret in it; make it private with `chmod 700 {}`",
            dir.display()
        ),
    ))
}

#[cfg(not(unix))]
fn check_not_writable_by_others(_dir: &Path, _metadata: &std::fs::Metadata) -> Result<()> {
    Ok(())
}

/// Creates the directory `db` with mode 0700, or gives an existing one that
/// mode (sled creates its directory with the default permissions).
#[cfg(unix)]
fn make_private(db: &Path) -> io::Result<()> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};

    match std::fs::DirBuilder::new().mode(0o700).create(db) {
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
        other => return other,
    }
    let mode = std::fs::metadata(db)?.permissions().mode() & 0o777;
    if mode != 0o700 {
        std::fs::set_permissions(db, std::fs::Permissions::from_mode(0o700))?;
        tracing::info!(path = %db.display(), "the store's directory is now private (mode 0700)");
    }
    Ok(())
}

#[cfg(not(unix))]
fn make_private(db: &Path) -> io::Result<()> {
    std::fs::create_dir_all(db)
}

/// The error for an I/O error met while opening the store in `dir`: worded
/// for the data directory if it is one of access (permission denied, a
/// read-only file system).
pub(crate) fn open_error(dir: &Path, e: io::Error) -> StoreError {
    match e.kind() {
        io::ErrorKind::PermissionDenied | io::ErrorKind::ReadOnlyFilesystem => {
            unusable(dir, format!("cannot write in it: {e}{ACCESS_HINT}"))
        }
        _ => crate::error::sled_error(sled::Error::Io(e)),
    }
}

/// The data directory `dir` cannot be used: `problem` says why, and how
/// to fix it.
fn unusable(dir: &Path, problem: String) -> StoreError {
    StoreError::DataDir {
        path: dir.display().to_string(),
        problem,
    }
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn a_missing_directory_is_created_private() {
        let parent = tempfile::tempdir().unwrap();
        let dir = parent.path().join("a").join("data");
        assert!(prepare(&dir).is_ok());
        let mode = std::fs::metadata(&dir).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o700);
    }

    #[test]
    fn a_directory_others_may_write_in_is_refused_with_the_fix() {
        let dir = tempfile::tempdir().unwrap();
        let set_mode = |mode| {
            std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(mode)).unwrap();
        };
        for mode in [0o770, 0o702, 0o777, 0o720, 0o1777] {
            set_mode(mode);
            let e = prepare(dir.path()).unwrap_err().to_string();
            assert!(e.contains(&format!("mode {mode:04o}")), "{e}");
            assert!(e.contains("chmod 700"), "{e}");
        }
        assert!(!dir.path().join(DB_DIR).exists());
        // Readable by others is fine: what is inside is private.
        for mode in [0o700, 0o750, 0o755] {
            set_mode(mode);
            prepare(dir.path()).unwrap();
        }
    }

    #[test]
    fn the_stores_directory_is_made_private() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join(DB_DIR);
        std::fs::create_dir(&db).unwrap();
        std::fs::set_permissions(&db, std::fs::Permissions::from_mode(0o755)).unwrap();
        prepare(dir.path()).unwrap();
        let mode = std::fs::metadata(&db).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o700);
    }

    #[test]
    fn an_unfinished_sled_snapshot_does_not_stop_the_store_from_opening() {
        use crate::SledStore;
        use stamps_store::{AccountKind, Store};
        let dir = tempfile::tempdir().unwrap();
        let store = SledStore::open(dir.path()).unwrap();
        store.add_account(AccountKind::User, "u", Some(7)).unwrap();
        drop(store);
        // What a snapshot write cut short by a full disk leaves: sled would
        // take it for the newest snapshot and refuse the database.
        let unfinished = dir
            .path()
            .join(DB_DIR)
            .join("snap.7FFFFFFFFFFFFFFF.generating");
        std::fs::write(&unfinished, b"").unwrap();

        // sled lets go of its lock a moment after the last handle drops.
        let store = SledStore::open_with_patience(
            dir.path(),
            stamps_store::SecretHasher::owasp(),
            std::sync::Arc::new(stamps_core::SystemClock),
            std::time::Duration::from_secs(10),
        )
        .unwrap();
        assert!(store.account(AccountKind::User, 7).unwrap().is_some());
        assert!(!unfinished.exists());
        // Not while the database is in use: it could be being written.
        std::fs::write(&unfinished, b"").unwrap();
        assert!(matches!(
            SledStore::open(dir.path()),
            Err(StoreError::Locked { .. })
        ));
        assert!(unfinished.exists());
    }

    #[test]
    fn a_file_in_place_of_the_directory_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("data");
        std::fs::write(&file, b"").unwrap();
        let e = prepare(&file).unwrap_err().to_string();
        assert!(e.starts_with("cannot use data directory"), "{e}");
    }

    #[test]
    fn access_errors_at_open_are_worded_for_the_data_directory() {
        let dir = Path::new("/srv/stamps");
        for kind in [
            io::ErrorKind::PermissionDenied,
            io::ErrorKind::ReadOnlyFilesystem,
        ] {
            let e = open_error(dir, io::Error::from(kind)).to_string();
            assert!(
                e.starts_with("cannot use data directory /srv/stamps: cannot write in it"),
                "{e}"
            );
        }
        let full = open_error(dir, io::Error::from(io::ErrorKind::StorageFull));
        assert!(matches!(full, StoreError::Full(_)), "{full:?}");
    }
}
