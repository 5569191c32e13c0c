//! Native TLS: the rustls server configuration of `[tls] cert` and
//! `[tls] key` (PEM files), with ring as the crypto provider.
//!
//! Every failure is a [`TlsError`] naming the file and the problem, in one
//! line, and never quoting the key file's content.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::ServerConfig;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use secrecy::zeroize::Zeroizing;

/// The largest certificate or key file read.
const MAX_PEM_LEN: u64 = 1 << 20;

/// A TLS configuration that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// Occurs when the certificate or key file cannot be read.
    #[error("cannot read TLS {what} {}: {cause}", path.display())]
    Unreadable {
        /// `certificate` or `private key`.
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// Why.
        cause: io::Error,
    },
    /// Occurs when the certificate or key file holds no usable PEM item of
    /// its kind (empty, garbage, too large, or another kind of item).
    #[error("invalid TLS {what} {}: {problem}", path.display())]
    Invalid {
        /// `certificate` or `private key`.
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// What is wrong, without quoting the file.
        problem: &'static str,
    },
    /// Occurs when rustls refuses the pair: the key does not belong to the
    /// certificate, or is of an unsupported type.
    #[error("TLS certificate {} and key {} cannot be used together: {reason}", cert.display(), key.display())]
    Pair {
        /// The certificate file.
        cert: PathBuf,
        /// The key file.
        key: PathBuf,
        /// rustls's reason.
        reason: String,
    },
}

fn read_pem(what: &'static str, path: &Path) -> Result<Zeroizing<Vec<u8>>, TlsError> {
    let unreadable = |cause| TlsError::Unreadable {
        what,
        path: path.to_owned(),
        cause,
    };
    let metadata = fs::metadata(path).map_err(unreadable)?;
    if !metadata.is_file() {
        return Err(TlsError::Invalid {
            what,
            path: path.to_owned(),
            problem: "it is not a regular file",
        });
    }
    if metadata.len() > MAX_PEM_LEN {
        return Err(TlsError::Invalid {
            what,
            path: path.to_owned(),
            problem: "it is larger than 1 MiB",
        });
    }
    fs::read(path).map(Zeroizing::new).map_err(unreadable)
}

/// The private key must be the server user's and readable by it alone, as
/// the JWT key file must (a symbolic link, as certbot makes, is followed:
/// the file it names is checked).
fn check_private(path: &Path) -> Result<(), TlsError> {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};

    let invalid = |problem| TlsError::Invalid {
        what: "private key",
        path: path.to_owned(),
        problem,
    };
    let metadata = fs::metadata(path).map_err(|cause| TlsError::Unreadable {
        what: "private key",
        path: path.to_owned(),
        cause,
    })?;
    if metadata.uid() != rustix::process::geteuid().as_raw() {
        return Err(invalid(
            "it belongs to another user than the one the server runs as (chown it)",
        ));
    }
    if metadata.permissions().mode() & 0o077 != 0 {
        return Err(invalid(
            "group or others may read it: make it readable by its owner only (chmod 600)",
        ));
    }
    Ok(())
}

/// The rustls server configuration of a PEM certificate chain (leaf first)
/// and a PEM private key (PKCS#8, PKCS#1 or SEC1).
pub fn server_config(cert: &Path, key: &Path) -> Result<ServerConfig, TlsError> {
    let cert_pem = read_pem("certificate", cert)?;
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&cert_pem)
        .collect::<Result<_, _>>()
        .map_err(|_| TlsError::Invalid {
            what: "certificate",
            path: cert.to_owned(),
            problem: "it is not valid PEM",
        })?;
    if chain.is_empty() {
        return Err(TlsError::Invalid {
            what: "certificate",
            path: cert.to_owned(),
            problem: "it holds no PEM CERTIFICATE",
        });
    }

    check_private(key)?;
    let key_pem = read_pem("private key", key)?;
    let private = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|_| TlsError::Invalid {
        what: "private key",
        path: key.to_owned(),
        problem: "it holds no PEM private key (PKCS#8, PKCS#1 or SEC1)",
    })?;

    let pair = |e: rustls::Error| TlsError::Pair {
        cert: cert.to_owned(),
        key: key.to_owned(),
        reason: e.to_string(),
    };
    ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .map_err(pair)?
        .with_no_client_auth()
        .with_single_cert(chain, private)
        .map_err(pair)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pair() -> (String, String) {
        let certified = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
        (certified.cert.pem(), certified.signing_key.serialize_pem())
    }

    /// Writes a file readable by its owner only, as keys must be.
    fn write(dir: &Path, name: &str, content: &str) -> PathBuf {
        use std::os::unix::fs::PermissionsExt;
        let path = dir.join(name);
        fs::write(&path, content).unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).unwrap();
        path
    }

    #[test]
    fn a_private_key_others_may_read_is_refused_naming_the_fix() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let (cert, key) = pair();
        let cert_path = write(dir.path(), "cert.pem", &cert);
        let key_path = write(dir.path(), "key.pem", &key);
        for mode in [0o640, 0o644, 0o604] {
            fs::set_permissions(&key_path, fs::Permissions::from_mode(mode)).unwrap();
            let shown = server_config(&cert_path, &key_path)
                .unwrap_err()
                .to_string();
            assert!(shown.starts_with("invalid TLS private key"), "{shown}");
            assert!(shown.ends_with("(chmod 600)"), "{shown}");
            assert!(!shown.contains("PRIVATE KEY"), "{shown}");
        }
        fs::set_permissions(&key_path, fs::Permissions::from_mode(0o400)).unwrap();
        assert!(server_config(&cert_path, &key_path).is_ok());
    }

    #[test]
    fn a_certificate_and_its_key_make_a_config() {
        let dir = tempfile::tempdir().unwrap();
        let (cert, key) = pair();
        let config = server_config(
            &write(dir.path(), "cert.pem", &cert),
            &write(dir.path(), "key.pem", &key),
        )
        .unwrap();
        assert!(config.alpn_protocols.is_empty());
    }

    #[test]
    fn missing_garbage_and_mismatched_files_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let (cert, key) = pair();
        let (_, other_key) = pair();
        let cert_path = write(dir.path(), "cert.pem", &cert);
        let key_path = write(dir.path(), "key.pem", &key);
        let absent = dir.path().join("absent.pem");

        let shown = server_config(&absent, &key_path).unwrap_err().to_string();
        assert!(
            shown.starts_with(&format!(
                "cannot read TLS certificate {}: ",
                absent.display()
            )),
            "{shown}"
        );
        let shown = server_config(&cert_path, &absent).unwrap_err().to_string();
        assert!(shown.starts_with("cannot read TLS private key"), "{shown}");

        let garbage = write(dir.path(), "garbage.pem", "not a certificate\n");
        let shown = server_config(&garbage, &key_path).unwrap_err().to_string();
        assert!(shown.starts_with("invalid TLS certificate"), "{shown}");
        // A certificate where the key should be, and the other way round.
        let shown = server_config(&cert_path, &cert_path)
            .unwrap_err()
            .to_string();
        assert!(shown.starts_with("invalid TLS private key"), "{shown}");
        let shown = server_config(&key_path, &key_path).unwrap_err().to_string();
        assert!(shown.starts_with("invalid TLS certificate"), "{shown}");

        let mismatched = write(dir.path(), "other.pem", &other_key);
        let shown = server_config(&cert_path, &mismatched)
            .unwrap_err()
            .to_string();
        assert!(shown.contains("cannot be used together"), "{shown}");
        assert!(!shown.contains("PRIVATE KEY"), "{shown}");

        let shown = server_config(dir.path(), &key_path)
            .unwrap_err()
            .to_string();
        assert!(shown.ends_with("it is not a regular file"), "{shown}");
    }
}
