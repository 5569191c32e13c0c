//! TLS to the database, as libpq does it: `sslmode` (`disable`, `prefer`,
//! `require`, `verify-ca`, `verify-full`) and `sslrootcert=PATH` in the
//! store URL, for the pool and the change feed's connection alike.
//!
//! The client (tokio-postgres, under the synchronous `postgres`) knows
//! only `disable`, `prefer` and `require`, and no `sslrootcert`: both are
//! taken out of the URL here and turned into its mode and a rustls
//! connector (`tokio-postgres-rustls`; rustls with ring is what the server
//! already uses for HTTPS, so no second TLS stack or system OpenSSL).
//!
//! | `sslmode` | encrypted | certificate checked |
//! | --- | --- | --- |
//! | `disable` | never | - |
//! | `prefer` (libpq's default) | if the server offers it | no |
//! | `require` | always | no; against `sslrootcert` (as `verify-ca`) when one is given, as libpq does |
//! | `verify-ca` | always | chain to `sslrootcert` |
//! | `verify-full` | always | chain to `sslrootcert`, and the host name |
//!
//! Without `sslrootcert`, `verify-ca` and `verify-full` read
//! `~/.postgresql/root.crt`, as libpq does, and fail clearly if it is missing.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, verify_tls12_signature, verify_tls13_signature};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{
    CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme,
};
use stamps_store::{Result, StoreError};
use tokio_postgres_rustls::MakeRustlsConnect;

/// The connector every connection to the database uses.
pub(crate) type Tls = MakeRustlsConnect;

/// libpq's `sslmode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SslMode {
    Disable,
    Prefer,
    Require,
    VerifyCa,
    VerifyFull,
}

impl SslMode {
    fn parse(text: &str) -> Result<Self> {
        Ok(match text {
            "disable" => Self::Disable,
            "prefer" => Self::Prefer,
            "require" => Self::Require,
            "verify-ca" => Self::VerifyCa,
            "verify-full" => Self::VerifyFull,
            _ => {
                return Err(invalid(
                    "sslmode must be disable, prefer, require, verify-ca or verify-full",
                ));
            }
        })
    }
}

/// A store URL split into what the client understands and the TLS
/// settings taken out of it.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct TlsSettings {
    /// The URL without `sslmode` and `sslrootcert`.
    pub(crate) url: String,
    pub(crate) mode: SslMode,
    pub(crate) root_cert: Option<PathBuf>,
}

fn invalid(why: &str) -> StoreError {
    StoreError::Backend(format!("invalid store.url: {why}"))
}

/// Takes `sslmode` and `sslrootcert` out of `url`: the query of a
/// `postgres://` URL, or the `key=value` pairs of a connection string.
pub(crate) fn split_url(url: &str) -> Result<TlsSettings> {
    let mut mode = None;
    let mut root_cert = None;
    let mut take = |key: &str, value: String| -> Result<bool> {
        match key {
            "sslmode" => mode = Some(SslMode::parse(&value)?),
            "sslrootcert" if value == "system" => {
                return Err(invalid(
                    "sslrootcert=system is not supported; name the CA's certificate file (PEM)",
                ));
            }
            "sslrootcert" => root_cert = Some(PathBuf::from(value)),
            _ => return Ok(false),
        }
        Ok(true)
    };
    let rest = if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        match url.split_once('?') {
            None => url.to_owned(),
            Some((base, query)) => {
                let mut kept = Vec::new();
                for pair in query.split('&').filter(|p| !p.is_empty()) {
                    let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
                    if !take(key, percent_decode(value)?)? {
                        kept.push(pair);
                    }
                }
                if kept.is_empty() {
                    base.to_owned()
                } else {
                    format!("{base}?{}", kept.join("&"))
                }
            }
        }
    } else {
        let mut kept = Vec::new();
        for pair in url.split_whitespace() {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            if !take(key.trim(), value.trim_matches('\'').to_owned())? {
                kept.push(pair);
            }
        }
        kept.join(" ")
    };
    Ok(TlsSettings {
        url: rest,
        mode: mode.unwrap_or(SslMode::Prefer),
        root_cert,
    })
}

/// `%XX` escapes of a URL's query value.
fn percent_decode(value: &str) -> Result<String> {
    let bytes = value.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = value
                .get(i + 1..i + 3)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or_else(|| invalid("a bad %-escape in the query"))?;
            out.push(hex);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| invalid("a query value that is not UTF-8"))
}

impl TlsSettings {
    /// The client's own mode for this `sslmode`.
    pub(crate) fn client_mode(&self) -> postgres::config::SslMode {
        match self.mode {
            SslMode::Disable => postgres::config::SslMode::Disable,
            SslMode::Prefer => postgres::config::SslMode::Prefer,
            SslMode::Require | SslMode::VerifyCa | SslMode::VerifyFull => {
                postgres::config::SslMode::Require
            }
        }
    }

    /// The connector: rustls, checking the server's certificate as the
    /// mode says. Reads the root certificate file now, so that a missing
    /// or bad one fails at start.
    pub(crate) fn connector(&self) -> Result<Tls> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let check = match (self.mode, &self.root_cert) {
            (SslMode::Disable | SslMode::Prefer, _) | (SslMode::Require, None) => Check::Nothing,
            (SslMode::Require | SslMode::VerifyCa, Some(path)) => Check::Chain(path.clone()),
            (SslMode::VerifyCa, None) => Check::Chain(default_root_cert(self.mode)?),
            (SslMode::VerifyFull, Some(path)) => Check::ChainAndName(path.clone()),
            (SslMode::VerifyFull, None) => Check::ChainAndName(default_root_cert(self.mode)?),
        };
        let verifier: Arc<dyn ServerCertVerifier> = match check {
            Check::Nothing => Arc::new(NoCertificateCheck(Arc::clone(&provider))),
            Check::Chain(path) => Arc::new(ChainOnly(webpki_verifier(&path, &provider)?)),
            Check::ChainAndName(path) => webpki_verifier(&path, &provider)?,
        };
        let config = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| StoreError::Backend(format!("TLS to the database: {e}")))?
            .dangerous()
            .with_custom_certificate_verifier(verifier)
            .with_no_client_auth();
        Ok(MakeRustlsConnect::new(config))
    }
}

enum Check {
    Nothing,
    Chain(PathBuf),
    ChainAndName(PathBuf),
}

/// libpq's default root certificate file, which must exist for the
/// verifying modes.
fn default_root_cert(mode: SslMode) -> Result<PathBuf> {
    let path = std::env::var_os("HOME")
        .map(|home| Path::new(&home).join(".postgresql/root.crt"))
        .filter(|path| path.exists());
    path.ok_or_else(|| {
        let name = if mode == SslMode::VerifyFull {
            "verify-full"
        } else {
            "verify-ca"
        };
        invalid(&format!(
            "sslmode={name} needs sslrootcert=PATH, the certificate (PEM) of the CA that signed \
             the database's (~/.postgresql/root.crt does not exist)"
        ))
    })
}

/// The standard WebPKI check (chain and host name) against the CAs in
/// the PEM file at `path`.
fn webpki_verifier(
    path: &Path,
    provider: &Arc<CryptoProvider>,
) -> Result<Arc<WebPkiServerVerifier>> {
    let shown = path.display();
    let pem = std::fs::read(path)
        .map_err(|e| invalid(&format!("cannot read sslrootcert {shown}: {e}")))?;
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(&pem) {
        let cert = cert.map_err(|_| invalid(&format!("sslrootcert {shown} is not PEM")))?;
        roots
            .add(cert)
            .map_err(|e| invalid(&format!("sslrootcert {shown}: {e}")))?;
    }
    if roots.is_empty() {
        return Err(invalid(&format!(
            "sslrootcert {shown} holds no certificate"
        )));
    }
    WebPkiServerVerifier::builder_with_provider(Arc::new(roots), Arc::clone(provider))
        .build()
        .map_err(|e| invalid(&format!("sslrootcert {shown}: {e}")))
}

/// `verify-ca`: the chain is checked, the host name is not.
#[derive(Debug)]
struct ChainOnly(Arc<WebPkiServerVerifier>);

impl ServerCertVerifier for ChainOnly {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> std::result::Result<ServerCertVerified, rustls::Error> {
        match self
            .0
            .verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
        {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}

/// `prefer` and `require` without a root certificate: encrypted, the
/// certificate taken as it is (libpq's behaviour; the handshake's
/// signatures are still checked).
#[derive(Debug)]
struct NoCertificateCheck(Arc<CryptoProvider>);

impl ServerCertVerifier for NoCertificateCheck {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> std::result::Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sslmode_and_sslrootcert_are_taken_out_of_a_url() {
        let split = split_url(
            "postgres://stamps:pw@db.internal:5432/stamps?sslmode=verify-full&sslrootcert=%2Fetc%2Fca.pem&connect_timeout=5",
        )
        .unwrap();
        assert_eq!(
            split.url,
            "postgres://stamps:pw@db.internal:5432/stamps?connect_timeout=5"
        );
        assert_eq!(split.mode, SslMode::VerifyFull);
        assert_eq!(split.root_cert, Some(PathBuf::from("/etc/ca.pem")));

        let plain = split_url("postgres://stamps@127.0.0.1/stamps").unwrap();
        assert_eq!(plain.url, "postgres://stamps@127.0.0.1/stamps");
        assert_eq!(plain.mode, SslMode::Prefer, "libpq's default");

        let only = split_url("postgresql://h/db?sslmode=require").unwrap();
        assert_eq!(
            (only.url.as_str(), only.mode),
            ("postgresql://h/db", SslMode::Require)
        );
    }

    #[test]
    fn sslmode_and_sslrootcert_are_taken_out_of_a_connection_string() {
        let split =
            split_url("host=db user=stamps sslmode=verify-ca sslrootcert=/etc/ca.pem").unwrap();
        assert_eq!(split.url, "host=db user=stamps");
        assert_eq!(split.mode, SslMode::VerifyCa);
        assert_eq!(split.root_cert, Some(PathBuf::from("/etc/ca.pem")));
    }

    #[test]
    fn a_bad_sslmode_is_refused_by_name_without_the_url() {
        let error = split_url("postgres://stamps:hunter2@db/stamps?sslmode=sometimes")
            .unwrap_err()
            .to_string();
        assert!(error.contains("sslmode must be"), "{error}");
        assert!(!error.contains("hunter2"), "{error}");
        let error = split_url("postgres://db/stamps?sslrootcert=system")
            .unwrap_err()
            .to_string();
        assert!(error.contains("not supported"), "{error}");
    }

    #[test]
    fn the_verifying_modes_need_a_readable_root_certificate() {
        let missing = TlsSettings {
            url: String::new(),
            mode: SslMode::VerifyFull,
            root_cert: Some(PathBuf::from("/nonexistent/ca.pem")),
        };
        let error = missing.connector().map(|_| ()).unwrap_err().to_string();
        assert!(
            error.contains("cannot read sslrootcert /nonexistent/ca.pem"),
            "{error}"
        );
        let dir = tempfile::tempdir().unwrap();
        let garbage = dir.path().join("ca.pem");
        std::fs::write(&garbage, "not a certificate\n").unwrap();
        let bad = TlsSettings {
            url: String::new(),
            mode: SslMode::VerifyCa,
            root_cert: Some(garbage),
        };
        let error = bad.connector().map(|_| ()).unwrap_err().to_string();
        assert!(
            error.contains("holds no certificate") || error.contains("not PEM"),
            "{error}"
        );
        // The modes that check nothing need no file.
        for mode in [SslMode::Disable, SslMode::Prefer, SslMode::Require] {
            let settings = TlsSettings {
                url: String::new(),
                mode,
                root_cert: None,
            };
            assert!(settings.connector().is_ok());
        }
    }
}
