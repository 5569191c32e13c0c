//! TLS to the database: a throwaway cluster with `ssl = on` that takes
//! TLS connections only, its certificate signed at test time by a CA of
//! the test's, for the host name `localhost`. Each `sslmode` as libpq
//! defines it, through `PgStore::open` (the pool) and its change feed.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
use stamps_store::{AccountKind, ChangeFeed, Store};
use stamps_store_postgres::PgStore;
use stamps_store_postgres::testing::Cluster;

/// A CA: its certificate (PEM) and what signs with it.
fn ca(name: &str) -> (String, Issuer<'static, KeyPair>) {
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.distinguished_name.push(DnType::CommonName, name);
    let key = KeyPair::generate().unwrap();
    let cert = params.self_signed(&key).unwrap();
    (cert.pem(), Issuer::new(params, key))
}

/// The server's certificate for `localhost` only, and its key (PEM).
fn server_cert(issuer: &Issuer<'static, KeyPair>) -> (String, String) {
    let params = CertificateParams::new(vec!["localhost".to_owned()]).unwrap();
    let key = KeyPair::generate().unwrap();
    let cert = params.signed_by(&key, issuer).unwrap();
    (cert.pem(), key.serialize_pem())
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

/// The store URL of the cluster, by `host`, with `query`.
fn url(cluster: &Cluster, host: &str, query: &str) -> String {
    format!(
        "postgres://stamps:not-the-password@{host}:{}/postgres?{query}",
        cluster.port()
    )
}

/// Opens a store at `url` and uses it, the change feed included.
fn works(url: &str) {
    let store = PgStore::open(url).unwrap_or_else(|e| panic!("{url}: {e}"));
    store
        .add_account(AccountKind::Merchant, "My Merchant", None)
        .unwrap();
    assert!(!store.accounts(AccountKind::Merchant).unwrap().is_empty());
    store
        .change_feed()
        .unwrap()
        .next(std::time::Duration::from_millis(10))
        .unwrap();
}

/// The error of opening a store at `url`: one line, no password.
fn refused(url: &str) -> String {
    let error = PgStore::open(url)
        .map(|_| ())
        .expect_err("connected")
        .to_string();
    eprintln!("refused: {error}");
    assert!(!error.contains("not-the-password"), "{error}");
    assert!(!error.contains('\n'), "{error}");
    error
}

#[test]
fn each_sslmode_connects_or_refuses_as_libpq_does() {
    let (ca_pem, issuer) = ca("stamps test CA");
    let (cert, key) = server_cert(&issuer);
    let Some(cluster) = Cluster::start_with_tls(&cert, &key) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let right_ca = write(dir.path(), "ca.pem", &ca_pem);
    let (other_ca_pem, _) = ca("another CA");
    let wrong_ca = write(dir.path(), "other-ca.pem", &other_ca_pem);
    let root = |path: &Path| format!("sslrootcert={}", path.display());

    // Encrypted without a check, as libpq: require, and prefer (the
    // default) against a server that requires TLS.
    works(&url(&cluster, "127.0.0.1", "sslmode=require"));
    works(&url(&cluster, "127.0.0.1", "sslmode=prefer"));
    works(&url(&cluster, "127.0.0.1", ""));
    // The chain: the right CA passes, for any host name...
    works(&url(
        &cluster,
        "127.0.0.1",
        &format!("sslmode=verify-ca&{}", root(&right_ca)),
    ));
    // ... and with the name the certificate holds.
    works(&url(
        &cluster,
        "localhost",
        &format!("sslmode=verify-full&{}", root(&right_ca)),
    ));

    // Refused at open, with one line that names the problem: a CA that
    // did not sign the certificate, or a host name it does not hold.
    let refusals = [
        (
            "localhost",
            format!("sslmode=verify-full&{}", root(&wrong_ca)),
            "UnknownIssuer",
        ),
        (
            "127.0.0.1",
            format!("sslmode=verify-full&{}", root(&right_ca)),
            "not valid for name",
        ),
        (
            "127.0.0.1",
            format!("sslmode=verify-ca&{}", root(&wrong_ca)),
            "UnknownIssuer",
        ),
        (
            "127.0.0.1",
            format!("sslmode=require&{}", root(&wrong_ca)),
            "UnknownIssuer",
        ),
    ];
    for (host, query, cause) in &refusals {
        let error = refused(&url(&cluster, host, query));
        assert!(error.contains("invalid peer certificate"), "{error}");
        assert!(error.contains(cause), "{host} {query}: {error}");
    }
    // Plain text to a server that takes TLS only.
    let error = refused(&url(&cluster, "127.0.0.1", "sslmode=disable"));
    assert!(
        error.contains("pg_hba.conf") || error.contains("SSL"),
        "{error}"
    );
    // A root certificate that cannot be read.
    let error = refused(&url(
        &cluster,
        "localhost",
        "sslmode=verify-full&sslrootcert=/nonexistent.pem",
    ));
    assert!(
        error.contains("cannot read sslrootcert /nonexistent.pem"),
        "{error}"
    );
}
