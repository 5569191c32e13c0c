//! End-to-end: native TLS with a certificate made for the test, HSTS,
//! `require_https` (with `X-Forwarded-Proto` believed only from a trusted
//! proxy), and slow or stalled clients that cannot pin the server.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::{Server, json_of, provision, server_binary};
use serde_json::json;

/// A self-signed certificate for 127.0.0.1 and localhost, written as PEM
/// files; returns (cert path, key path, cert PEM).
fn certificate(dir: &Path) -> (PathBuf, PathBuf, String) {
    let certified =
        rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_owned(), "localhost".to_owned()])
            .unwrap();
    let cert = dir.join("cert.pem");
    let key = dir.join("key.pem");
    std::fs::write(&cert, certified.cert.pem()).unwrap();
    std::fs::write(&key, certified.signing_key.serialize_pem()).unwrap();
    // Readable by its owner only, as the server demands of a private key.
    std::fs::set_permissions(
        &key,
        <std::fs::Permissions as std::os::unix::fs::PermissionsExt>::from_mode(0o600),
    )
    .unwrap();
    (cert, key, certified.cert.pem())
}

/// A client that trusts `cert_pem` only.
fn tls_client(cert_pem: &str) -> reqwest::blocking::Client {
    reqwest::blocking::Client::builder()
        .use_rustls_tls()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(cert_pem.as_bytes()).unwrap())
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap()
}

#[test]
fn tls_serves_the_api_with_hsts_and_require_https_is_satisfied() {
    let certs = tempfile::tempdir().unwrap();
    let (cert, key, pem) = certificate(certs.path());
    let data = tempfile::tempdir().unwrap();
    let token = provision(data.path());
    let server = Server::start_in(
        data,
        &[
            ("STAMPS_TLS__CERT", cert.to_str().unwrap()),
            ("STAMPS_TLS__KEY", key.to_str().unwrap()),
            ("STAMPS_HTTP__REQUIRE_HTTPS", "true"),
        ],
    );
    assert!(
        server.url.starts_with("https://127.0.0.1:"),
        "{}",
        server.url
    );
    let client = tls_client(&pem);

    let response = client
        .post(format!("{}/api/auth/get-access-token/", server.url))
        .json(&json!({"token": token, "crm_merchant_id": 1}))
        .send()
        .unwrap();
    let (status, body, headers) = json_of(response);
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        headers.get("strict-transport-security").unwrap(),
        "max-age=31536000"
    );
    let jwt = body["access_token"].as_str().unwrap();
    let response = client
        .post(format!("{}/api/auth/verify-token/", server.url))
        .bearer_auth(jwt)
        .send()
        .unwrap();
    assert_eq!(response.status(), 200);
    // Errors over TLS carry HSTS too.
    let response = client
        .post(format!("{}/api/ping", server.url))
        .send()
        .unwrap();
    assert_eq!(response.status(), 401);
    assert!(response.headers().contains_key("strict-transport-security"));

    // Plain HTTP on the TLS port gets no API answer.
    let plain = server.url.replacen("https://", "http://", 1);
    let answered = common::client()
        .post(format!("{plain}/api/ping"))
        .send()
        .is_ok_and(|r| r.headers().contains_key("content-type"));
    assert!(!answered);
    // A client that does not trust the certificate refuses the server.
    assert!(
        common::client()
            .post(format!("{}/api/ping", server.url))
            .send()
            .is_err()
    );
}

/// Runs the server with `env`, expecting it to refuse to start; its stderr.
fn start_failure(env: &[(&str, &str)]) -> String {
    let data = tempfile::tempdir().unwrap();
    let out = Command::new(server_binary())
        .env_clear()
        .env("STAMPS_LISTEN", "127.0.0.1:0")
        .env("STAMPS_DATA_DIR", data.path())
        .env("STAMPS_JWT__SECRET", common::SECRET)
        .envs(env.iter().copied())
        .output()
        .unwrap();
    assert!(!out.status.success());
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn bad_tls_files_stop_the_start_with_one_clear_line() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key, _) = certificate(dir.path());
    let garbage = dir.path().join("garbage.pem");
    std::fs::write(&garbage, "not PEM at all\n").unwrap();
    let absent = dir.path().join("absent.pem");
    // The same key, readable by all.
    let shared = dir.path().join("shared-key.pem");
    std::fs::write(&shared, std::fs::read(&key).unwrap()).unwrap();
    std::fs::set_permissions(
        &shared,
        <std::fs::Permissions as std::os::unix::fs::PermissionsExt>::from_mode(0o644),
    )
    .unwrap();
    let (cert, key, garbage, absent, shared) = (
        cert.to_str().unwrap(),
        key.to_str().unwrap(),
        garbage.to_str().unwrap(),
        absent.to_str().unwrap(),
        shared.to_str().unwrap(),
    );
    for (env, expect) in [
        (
            vec![("STAMPS_TLS__CERT", absent), ("STAMPS_TLS__KEY", key)],
            "cannot read TLS certificate",
        ),
        (
            vec![("STAMPS_TLS__CERT", garbage), ("STAMPS_TLS__KEY", key)],
            "invalid TLS certificate",
        ),
        (
            vec![("STAMPS_TLS__CERT", cert), ("STAMPS_TLS__KEY", garbage)],
            "invalid TLS private key",
        ),
        (
            vec![("STAMPS_TLS__CERT", cert), ("STAMPS_TLS__KEY", shared)],
            "group or others may read it: make it readable by its owner only (chmod 600)",
        ),
        (vec![("STAMPS_TLS__CERT", cert)], "tls.key is not"),
    ] {
        let stderr = start_failure(&env);
        let lines: Vec<&str> = stderr.lines().collect();
        assert_eq!(lines.len(), 1, "{stderr}");
        assert!(lines[0].starts_with("stamps-server: "), "{stderr}");
        assert!(lines[0].contains(expect), "{stderr}");
        assert!(!stderr.contains("PRIVATE KEY"), "{stderr}");
    }
}

#[test]
fn require_https_refuses_plain_http_unless_a_trusted_proxy_reports_https() {
    let ping = |server: &Server, proto: Option<&str>| {
        let mut request = server.post("/api/ping");
        if let Some(proto) = proto {
            request = request.header("X-Forwarded-Proto", proto);
        }
        json_of(request.send().unwrap())
    };

    let server = Server::start_in(
        tempfile::tempdir().unwrap(),
        &[
            ("STAMPS_HTTP__REQUIRE_HTTPS", "true"),
            ("STAMPS_PROXY__TRUSTED", "127.0.0.1/32"),
        ],
    );
    let (status, body, headers) = ping(&server, None);
    assert_eq!(status, 403, "{body}");
    assert_eq!(body["error_code"], "https_required");
    assert_eq!(body["error_message"], body["detail"]);
    assert!(!headers.contains_key("strict-transport-security"));
    // Unknown paths too: nothing is served over plain HTTP.
    let (status, _, _) = json_of(server.post("/nowhere").send().unwrap());
    assert_eq!(status, 403);
    let (status, _, _) = ping(&server, Some("http"));
    assert_eq!(status, 403);
    // The trusted proxy says the client used HTTPS: served, with HSTS.
    let (status, body, headers) = ping(&server, Some("https"));
    assert_eq!(status, 401, "{body}");
    assert_eq!(body["error_code"], "not_authenticated");
    assert!(headers.contains_key("strict-transport-security"));

    // The same claim from a peer that is not a trusted proxy is ignored.
    let server = Server::start_in(
        tempfile::tempdir().unwrap(),
        &[("STAMPS_HTTP__REQUIRE_HTTPS", "true")],
    );
    let (status, body, _) = ping(&server, Some("https"));
    assert_eq!(status, 403, "{body}");

    // Off by default.
    let server = Server::start();
    let (status, _, headers) = ping(&server, None);
    assert_eq!(status, 401);
    assert!(!headers.contains_key("strict-transport-security"));
}

fn host_port(server: &Server) -> String {
    server.url.trim_start_matches("http://").to_owned()
}

#[test]
fn idle_connections_beyond_the_cap_do_not_starve_a_normal_client() {
    let server = Server::start_in(
        tempfile::tempdir().unwrap(),
        &[
            ("STAMPS_HTTP__MAX_CONNECTIONS", "4"),
            // One address for all: the test is of the server-wide cap.
            ("STAMPS_HTTP__MAX_CONNECTIONS_PER_ADDRESS", "0"),
            ("STAMPS_HTTP__HEADER_TIMEOUT", "500ms"),
        ],
    );
    let addr = host_port(&server);
    // Four times the cap, connected and silent.
    let idle: Vec<TcpStream> = (0..16)
        .map(|_| TcpStream::connect(&addr).unwrap())
        .collect();

    let started = Instant::now();
    let response = server.post("/api/ping").send().unwrap();
    let waited = started.elapsed();
    assert_eq!(response.status(), 401);
    assert!(waited < Duration::from_secs(20), "served after {waited:?}");

    // The silent connections were closed by the server (408 or EOF), not
    // left open: a read ends, within a bound.
    for mut stream in idle.into_iter().take(4) {
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let mut buf = Vec::new();
        let read = stream.read_to_end(&mut buf);
        assert!(read.is_ok(), "idle connection still open: {read:?}");
        let text = String::from_utf8_lossy(&buf);
        assert!(
            text.is_empty() || text.starts_with("HTTP/1.1 408"),
            "{text}"
        );
    }
}

/// Whether the server closed `stream` (end of stream, or a reset when it
/// closed with the request unread), without waiting.
fn closed_by_server(stream: &TcpStream) -> bool {
    stream.set_nonblocking(true).unwrap();
    let peeked = stream.peek(&mut [0u8; 1]);
    stream.set_nonblocking(false).unwrap();
    match peeked {
        Ok(0) => true,
        Ok(_) => false,
        Err(e) => e.kind() != std::io::ErrorKind::WouldBlock,
    }
}

#[test]
fn one_address_cannot_hold_every_connection() {
    let server = Server::start_in(
        tempfile::tempdir().unwrap(),
        &[
            ("STAMPS_HTTP__MAX_CONNECTIONS", "20"),
            ("STAMPS_HTTP__MAX_CONNECTIONS_PER_ADDRESS", "5"),
            // Trickling clients are not cut short: only the cap holds them.
            ("STAMPS_HTTP__HEADER_TIMEOUT", "60s"),
            ("STAMPS_METRICS__ENABLED", "true"),
        ],
    );
    let addr = host_port(&server);
    // Sixty connections from 127.0.0.1, each trickling a request head that
    // never ends: three times every slot of the server.
    let tricklers: Vec<TcpStream> = (0..60)
        .map(|_| {
            let mut stream = TcpStream::connect(&addr).unwrap();
            // The server may have closed it already: what was sent is moot.
            let _ = stream.write_all(b"POST /api/ping HTTP/1.1\r\nHost: stamps\r\n");
            stream
        })
        .collect();

    // All but five are closed by the server on arrival, and counted.
    common::eventually(Duration::from_secs(10), "55 connections closed", || {
        tricklers.iter().filter(|s| closed_by_server(s)).count() == 55
    });
    // 127.0.0.1 holds its five places: ask from another address.
    let other = reqwest::blocking::Client::builder()
        .local_address(std::net::IpAddr::from([127, 0, 0, 2]))
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let metrics = other
        .get(format!("{}/metrics", server.url))
        .send()
        .unwrap()
        .text()
        .unwrap();
    assert!(
        metrics.contains("stamps_connections_refused_total 55"),
        "{metrics}"
    );
    server.await_log("connections refused");

    // Another address is served at once (it used to wait in the listen
    // queue behind the tricklers until their head timeout: a minute).
    let response = other
        .post(format!("{}/api/ping", server.url))
        .send()
        .unwrap();
    assert_eq!(response.status(), 401);

    // The five still open are the address's places; once they close, the
    // address is served again.
    drop(tricklers);
    common::eventually(Duration::from_secs(10), "127.0.0.1 served again", || {
        server
            .post("/api/ping")
            .send()
            .is_ok_and(|response| response.status() == 401)
    });
}

#[test]
fn a_stalled_body_is_refused_in_time() {
    let server = Server::start_in(
        tempfile::tempdir().unwrap(),
        &[("STAMPS_HTTP__BODY_TIMEOUT", "500ms")],
    );
    let mut stream = TcpStream::connect(host_port(&server)).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    // Headers promise 100 bytes; one arrives, then nothing.
    stream
        .write_all(
            b"POST /api/auth/get-access-token/ HTTP/1.1\r\nHost: stamps\r\n\
              Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{",
        )
        .unwrap();
    let started = Instant::now();
    let mut buf = [0u8; 4096];
    let n = stream.read(&mut buf).unwrap();
    let text = String::from_utf8_lossy(&buf[..n]);
    assert!(text.starts_with("HTTP/1.1 400"), "{text}");
    assert!(text.contains("did not arrive in time"), "{text}");
    assert!(started.elapsed() < Duration::from_secs(10));
}
