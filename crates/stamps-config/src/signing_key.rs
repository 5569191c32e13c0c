//! The signing key: the configured secret, or the key file the server
//! generates in the data directory on first use.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use rand::TryRngCore;
use rand::rngs::OsRng;
use secrecy::ExposeSecret;
use secrecy::zeroize::Zeroizing;
use stamps_core::SigningKey;

use crate::error::SettingsError;
use crate::raw::check_secret;
use crate::settings::{Settings, StoreSettings};

/// The name of the file, inside the data directory, that keeps the generated
/// JWT secret when none is configured.
pub const KEY_FILE_NAME: &str = "jwt-secret";

/// The largest key file read: a secret longer than this is not one.
const MAX_KEY_FILE_LEN: u64 = 4096;

/// Random bytes in a generated secret: 256 bits.
const GENERATED_SECRET_BYTES: usize = 32;
// ---------------------------------------------------------------------------
// The signing key
// ---------------------------------------------------------------------------

/// The HS256 key the server signs with, and where it came from.
#[derive(Debug, Clone)]
pub struct ResolvedKey {
    /// The key.
    pub key: SigningKey,
    /// Where it came from, for the server's start-up log.
    pub source: KeySource,
}

/// Where the signing key came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeySource {
    /// `jwt.secret`.
    Configured,
    /// A new secret, just written to this key file.
    Generated(PathBuf),
    /// The secret of this existing key file.
    Loaded(PathBuf),
    /// None: a store several servers share, with no `jwt.secret`, keeps
    /// the keys that sign and verify (rotated keys); the base key is
    /// random, known to no one ([`base_signing_key`]).
    Store,
}

/// The signing key of `settings`: the configured `jwt.secret`, or else the
/// secret of the key file `<data_dir>/jwt-secret`, generated on first use.
///
/// The key file holds the secret as text: a new one is 43 characters of
/// base64url (32 random bytes from the operating system) and a newline, which
/// is not part of the key; the HMAC key is the text's bytes, so the file's
/// content can be copied into `jwt.secret`. A new file is created (with the
/// data directory, mode 0700, if needed) with mode 0600 from the start and
/// appears complete or not at all; when two processes race, both end up with
/// the winner's secret.
///
/// An existing key file must give no permission to group or others, and hold
/// UTF-8 text (trailing line breaks are ignored) that is not empty, nor
/// weak unless `jwt.allow_weak_secret` is set.
pub fn resolve_signing_key(settings: &Settings) -> Result<ResolvedKey, SettingsError> {
    match existing_signing_key(settings)? {
        Some(resolved) => Ok(resolved),
        None => generate_key_file(
            &settings.data_dir,
            &settings.key_file_path(),
            settings.jwt.allow_weak_secret,
        ),
    }
}

/// Like [`resolve_signing_key`], but never generates a key file: `None`
/// when there is neither a configured secret nor a key file (for tools
/// that only read, such as `stamps-admin jwt inspect`).
pub fn existing_signing_key(settings: &Settings) -> Result<Option<ResolvedKey>, SettingsError> {
    let allow_weak = settings.jwt.allow_weak_secret;
    if let Some(secret) = &settings.jwt.secret {
        let bytes = secret.expose_secret().as_bytes();
        check_secret(bytes, allow_weak, || "jwt.secret".to_owned())?;
        let key = SigningKey::new(bytes.to_vec()).map_err(|_| SettingsError::EmptySecret)?;
        return Ok(Some(ResolvedKey {
            key,
            source: KeySource::Configured,
        }));
    }
    let path = settings.key_file_path();
    Ok(read_key_file(&path, allow_weak)?.map(|key| ResolvedKey {
        key,
        source: KeySource::Loaded(path),
    }))
}

/// The base key of the server's key set, chosen as the server chooses
/// it. With a store several servers share (`[store] backend =
/// "postgres"`) and no `jwt.secret`: a random key known to no one
/// ([`KeySource::Store`]; the store's rotated keys sign and verify).
/// Otherwise the configured secret, or the key file, made now if missing
/// ([`resolve_signing_key`]).
pub fn base_signing_key(settings: &Settings) -> Result<ResolvedKey, SettingsError> {
    store_keys_sign(settings).map_or_else(|| resolve_signing_key(settings), Ok)
}

/// [`base_signing_key`] for a tool that must never make a key file
/// (`stamps-admin jwt inspect`): `None` when there is neither a secret nor
/// a key file to check against.
pub fn existing_base_signing_key(
    settings: &Settings,
) -> Result<Option<ResolvedKey>, SettingsError> {
    match store_keys_sign(settings) {
        Some(store) => Ok(Some(store)),
        None => existing_signing_key(settings),
    }
}

/// The base key when the store's keys sign: a shared store, no secret.
fn store_keys_sign(settings: &Settings) -> Option<ResolvedKey> {
    let shared = matches!(settings.store, StoreSettings::Postgres { .. });
    (shared && settings.jwt.secret.is_none()).then(|| ResolvedKey {
        key: SigningKey::random(),
        source: KeySource::Store,
    })
}

/// The key of the key file at `path`, or `None` if there is no such file.
fn read_key_file(path: &Path, allow_weak: bool) -> Result<Option<SigningKey>, SettingsError> {
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
    let secret = bytes.get(..len).unwrap_or_default();
    check_secret(secret, allow_weak, || {
        format!("the secret of key file {}", path.display())
    })?;
    // An exact copy, so that no reallocation leaves the secret behind; the
    // buffer read is wiped when dropped.
    let key = SigningKey::new(secret.to_vec()).map_err(|_| invalid("it is empty"))?;
    Ok(Some(key))
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

/// Writes a new secret to the key file `path`, or reads the one another
/// process wrote there first.
fn generate_key_file(
    dir: &Path,
    path: &Path,
    allow_weak: bool,
) -> Result<ResolvedKey, SettingsError> {
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
    let temporary = dir.join(format!(
        ".{KEY_FILE_NAME}.{}.{}.tmp",
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

    let key = SigningKey::new(secret.as_bytes().to_vec())
        .map_err(|_| SettingsError::Randomness("empty secret".to_owned()))?;
    Ok(ResolvedKey {
        key,
        source: KeySource::Generated(path.to_owned()),
    })
}

fn loaded_after_race(path: &Path, allow_weak: bool) -> Result<ResolvedKey, SettingsError> {
    match read_key_file(path, allow_weak)? {
        Some(key) => Ok(ResolvedKey {
            key,
            source: KeySource::Loaded(path.to_owned()),
        }),
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
