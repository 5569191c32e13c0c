//! Secret key files in the data directory (the JWT key file, the imported
//! tokens' lookup key): made with mode 0600 from the first instant and
//! complete or not at all, read without following a symbolic link and
//! checked (owner, mode, size, content) on the open descriptor.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::Path;

use rand::TryRngCore;
use rand::rngs::OsRng;
use secrecy::zeroize::Zeroizing;

use crate::error::SettingsError;
use crate::raw::check_secret;
use crate::signing_key::KeySource;

/// The largest key file read: a secret longer than this is not one.
const MAX_KEY_FILE_LEN: u64 = 4096;

/// Random bytes in a generated secret: 256 bits.
const GENERATED_SECRET_BYTES: usize = 32;

/// The secret of the key file at `path`, checked (not empty, not weak
/// unless `allow_weak`), or `None` if there is no such file.
pub(crate) fn read_key_file(
    path: &Path,
    allow_weak: bool,
) -> Result<Option<Zeroizing<Vec<u8>>>, SettingsError> {
    let io_error = |action, cause| SettingsError::KeyFileIo {
        path: path.to_owned(),
        action,
        cause,
    };
    let invalid = |problem| SettingsError::KeyFileInvalid {
        path: path.to_owned(),
        problem,
    };

    // Not through a symbolic link (one could point anywhere), and checked
    // on the descriptor opened, not by path again: no swap in between.
    let flags =
        rustix::fs::OFlags::RDONLY | rustix::fs::OFlags::NOFOLLOW | rustix::fs::OFlags::CLOEXEC;
    let file = match rustix::fs::open(path, flags, rustix::fs::Mode::empty()) {
        Ok(fd) => File::from(fd),
        Err(rustix::io::Errno::NOENT) => return Ok(None),
        Err(rustix::io::Errno::LOOP) => {
            return Err(invalid("it is a symbolic link (use the file itself)"));
        }
        Err(error) => return Err(io_error("open", error.into())),
    };
    let metadata = file
        .metadata()
        .map_err(|error| io_error("inspect", error))?;
    if !metadata.is_file() {
        return Err(invalid("it is not a regular file"));
    }
    check_key_file_owner(path, &metadata)?;
    check_key_file_mode(path, &metadata)?;

    // Allocated once, large enough, so that no copy of the secret is left
    // behind by a reallocation; wiped when dropped.
    let mut bytes = Zeroizing::new(Vec::with_capacity(MAX_KEY_FILE_LEN as usize + 1));
    file.take(MAX_KEY_FILE_LEN + 1)
        .read_to_end(&mut bytes)
        .map_err(|error| io_error("read", error))?;
    if bytes.len() as u64 > MAX_KEY_FILE_LEN {
        return Err(invalid("it is larger than 4096 bytes"));
    }
    let text = std::str::from_utf8(&bytes).map_err(|_| invalid("it is not UTF-8 text"))?;
    let len = text.trim_end_matches(['\n', '\r']).len();
    if len == 0 {
        return Err(invalid(
            "it is empty (delete it to have a new secret generated, or write a secret in it)",
        ));
    }
    bytes.truncate(len);
    check_secret(&bytes, allow_weak, || {
        format!("the secret of key file {}", path.display())
    })?;
    Ok(Some(bytes))
}

#[cfg(unix)]
fn check_key_file_mode(path: &Path, metadata: &fs::Metadata) -> Result<(), SettingsError> {
    use std::os::unix::fs::PermissionsExt;

    let mode = metadata.permissions().mode() & 0o7777;
    if mode & 0o077 != 0 {
        return Err(SettingsError::KeyFilePermissions {
            path: path.to_owned(),
            mode,
        });
    }
    Ok(())
}

#[cfg(not(unix))]
fn check_key_file_mode(_path: &Path, _metadata: &fs::Metadata) -> Result<(), SettingsError> {
    Ok(())
}

/// A key file another user owns could hold a secret of their choosing.
fn check_key_file_owner(path: &Path, metadata: &fs::Metadata) -> Result<(), SettingsError> {
    use std::os::unix::fs::MetadataExt;

    let me = rustix::process::geteuid().as_raw();
    if metadata.uid() != me {
        return Err(SettingsError::KeyFileOwner {
            path: path.to_owned(),
            owner: metadata.uid(),
            me,
        });
    }
    Ok(())
}

/// Options that create a new file, failing if it exists, readable and
/// writable by its owner only from the first instant.
fn create_new_private() -> OpenOptions {
    let mut options = OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    options
}

/// Creates the data directory (and its parents) private, as the store
/// does, when the key file comes first.
fn create_data_dir(dir: &Path) -> Result<(), SettingsError> {
    let mut builder = fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(dir).map_err(|cause| SettingsError::DataDir {
        path: dir.to_owned(),
        cause,
    })
}

/// 32 random bytes from the operating system, as 43 characters of base64url.
fn generate_secret() -> Result<Zeroizing<String>, SettingsError> {
    let mut bytes = Zeroizing::new([0_u8; GENERATED_SECRET_BYTES]);
    OsRng
        .try_fill_bytes(&mut *bytes)
        .map_err(|error| SettingsError::Randomness(error.to_string()))?;
    Ok(Zeroizing::new(base64url(&*bytes)))
}

/// Writes a new secret to the key file `path` (in the data directory
/// `dir`, made if missing), or reads the one another process wrote there
/// first: the secret, and which of the two happened.
pub(crate) fn generate_key_file(
    dir: &Path,
    path: &Path,
    allow_weak: bool,
) -> Result<(Zeroizing<Vec<u8>>, KeySource), SettingsError> {
    let io_error = |action, cause| SettingsError::KeyFileIo {
        path: path.to_owned(),
        action,
        cause,
    };
    create_data_dir(dir)?;
    let secret = generate_secret()?;

    // Write the secret to a private temporary file, then link it to its
    // name: the key file appears complete or not at all, and a link never
    // replaces an existing file.
    let mut suffix = [0_u8; 8];
    OsRng
        .try_fill_bytes(&mut suffix)
        .map_err(|error| SettingsError::Randomness(error.to_string()))?;
    let name = path
        .file_name()
        .map_or_else(|| "key".into(), |name| name.to_string_lossy());
    let temporary = dir.join(format!(
        ".{name}.{}.{}.tmp",
        std::process::id(),
        base64url(&suffix)
    ));
    let written = write_secret(&temporary, &secret);
    let linked = written.and_then(|()| fs::hard_link(&temporary, path));
    // The temporary name is only ever ours; failing to remove it leaves a
    // private file behind, which is harmless.
    let _ = fs::remove_file(&temporary);
    match linked {
        Ok(()) => {}
        Err(error) if error.kind() == io::ErrorKind::AlreadyExists => {
            return loaded_after_race(path, allow_weak);
        }
        Err(_) => {
            // No hard links on this file system: create the key file
            // directly (another process racing with this one could then
            // read it before it is complete, and refuse it as empty).
            let mut file = match create_new_private().open(path) {
                Ok(file) => file,
                Err(error) if error.kind() == io::ErrorKind::AlreadyExists => {
                    return loaded_after_race(path, allow_weak);
                }
                Err(error) => return Err(io_error("create", error)),
            };
            write_all_secret(&mut file, &secret).map_err(|error| io_error("write", error))?;
        }
    }
    sync_dir(dir);
    let secret = Zeroizing::new(secret.as_bytes().to_vec());
    Ok((secret, KeySource::Generated(path.to_owned())))
}

fn loaded_after_race(
    path: &Path,
    allow_weak: bool,
) -> Result<(Zeroizing<Vec<u8>>, KeySource), SettingsError> {
    match read_key_file(path, allow_weak)? {
        Some(secret) => Ok((secret, KeySource::Loaded(path.to_owned()))),
        None => Err(SettingsError::KeyFileIo {
            path: path.to_owned(),
            action: "read",
            cause: io::Error::new(
                io::ErrorKind::NotFound,
                "it disappeared while being created",
            ),
        }),
    }
}

fn write_secret(path: &Path, secret: &str) -> io::Result<()> {
    let mut file = create_new_private().open(path)?;
    write_all_secret(&mut file, secret)
}

fn write_all_secret(file: &mut File, secret: &str) -> io::Result<()> {
    file.write_all(secret.as_bytes())?;
    file.write_all(b"\n")?;
    file.sync_all()
}

/// Makes the new directory entry durable; best effort.
fn sync_dir(dir: &Path) {
    if let Ok(dir) = File::open(dir) {
        let _ = dir.sync_all();
    }
}

/// Base64url without padding (RFC 4648 §5).
fn base64url(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}
