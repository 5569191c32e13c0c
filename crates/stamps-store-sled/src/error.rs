//! sled's errors as the seam's [`StoreError`].

use stamps_store::StoreError;

/// The cause to report when `e` means there is no space for a write, if it
/// does: the file system is full, a disk quota or the file size limit was
/// reached.
pub(crate) fn no_space_cause(e: &std::io::Error) -> Option<&'static str> {
    use std::io::ErrorKind;
    match e.kind() {
        ErrorKind::StorageFull => Some("the file system is full"),
        ErrorKind::QuotaExceeded => Some("the disk quota is exhausted"),
        ErrorKind::FileTooLarge => Some("the file size limit (RLIMIT_FSIZE) is reached"),
        _ => None,
    }
}

/// A sled error as a [`StoreError`]: no space is [`StoreError::Full`],
/// anything else [`StoreError::Backend`].
pub(crate) fn sled_error(e: sled::Error) -> StoreError {
    if let sled::Error::Io(io) = &e
        && let Some(cause) = no_space_cause(io)
    {
        return StoreError::Full(cause.to_owned());
    }
    StoreError::Backend(e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Error, ErrorKind};

    #[test]
    fn no_space_io_errors_become_full_and_others_stay_backend() {
        for (kind, cause) in [
            (ErrorKind::StorageFull, "file system is full"),
            (ErrorKind::QuotaExceeded, "quota"),
            (ErrorKind::FileTooLarge, "RLIMIT_FSIZE"),
        ] {
            // sled keeps an I/O error as a copy with the same kind.
            let e = sled_error(sled::Error::Io(Error::new(kind, "os error")));
            assert!(
                matches!(&e, StoreError::Full(c) if c.contains(cause)),
                "{e:?}"
            );
            assert!(e.to_string().starts_with("no space left for the store: "));
            assert!(e.is_storage_failure());
        }
        let e = sled_error(sled::Error::Io(Error::from(ErrorKind::PermissionDenied)));
        assert!(matches!(e, StoreError::Backend(_)), "{e:?}");
        assert!(e.is_storage_failure());
        assert!(!StoreError::NotEmpty.is_storage_failure());
    }
}
