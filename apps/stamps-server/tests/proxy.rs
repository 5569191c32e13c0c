//! Forward authentication behind real nginx: docs/PROXIES.md's nginx
//! configuration, as written but for its addresses, in front of a small
//! upstream (nginx too, echoing the identity headers it receives), with
//! `auth_request` to a real stamps-server.
//!
//! Needs Debian's `nginx` (`scripts/test.sh` installs it, as CI does);
//! without it the test says so and passes, unless `STAMPS_TEST_NGINX=required`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::{Server, bearer_of, eventually, provision};

/// Debian's nginx, if installed.
fn nginx_binary() -> Option<PathBuf> {
    let candidates = std::env::var_os("PATH")
        .map(|path| std::env::split_paths(&path).collect::<Vec<_>>())
        .unwrap_or_default()
        .into_iter()
        .chain([PathBuf::from("/usr/sbin")]);
    candidates.map(|dir| dir.join("nginx")).find(|p| p.exists())
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// nginx running a configuration in a directory of its own.
struct Nginx {
    child: Child,
    dir: tempfile::TempDir,
}

impl Nginx {
    fn start(binary: &Path, http_block: &str, ports: &[u16]) -> Nginx {
        let dir = tempfile::tempdir().unwrap();
        let prefix = dir.path().display().to_string();
        let conf = format!(
            "worker_processes 1;\n\
             pid {prefix}/nginx.pid;\n\
             error_log {prefix}/error.log info;\n\
             events {{ worker_connections 128; }}\n\
             http {{\n\
             access_log off;\n\
             client_body_temp_path {prefix}/body;\n\
             proxy_temp_path {prefix}/proxy;\n\
             fastcgi_temp_path {prefix}/fastcgi;\n\
             uwsgi_temp_path {prefix}/uwsgi;\n\
             scgi_temp_path {prefix}/scgi;\n\
             {http_block}\n}}\n"
        );
        std::fs::write(dir.path().join("nginx.conf"), conf).unwrap();
        let child = Command::new(binary)
            .arg("-p")
            .arg(dir.path())
            .arg("-c")
            .arg(dir.path().join("nginx.conf"))
            .arg("-e")
            .arg(dir.path().join("error.log"))
            .args(["-g", "daemon off;"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let nginx = Nginx { child, dir };
        for port in ports {
            eventually(Duration::from_secs(10), "nginx listening", || {
                std::net::TcpStream::connect(("127.0.0.1", *port)).is_ok()
            });
        }
        nginx
    }

    fn error_log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("error.log")).unwrap_or_default()
    }
}

impl Drop for Nginx {
    /// SIGTERM, which makes the master stop its workers too (a SIGKILL
    /// would leave them running), then SIGKILL if it has not exited
    /// within 10 s.
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        for _ in 0..200 {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The http-level configuration of docs/PROXIES.md, with stamps at
/// `stamps`, the upstream at `upstream` and nginx listening on `front`.
fn documented_config(stamps: &str, upstream: u16, front: u16) -> String {
    let lines = common::doc_block("docs/PROXIES.md", "nginx");
    let text = lines.join("\n");
    assert!(text.contains("server 127.0.0.1:8080;"));
    assert!(text.contains("listen 80;"));
    assert!(text.contains("http://127.0.0.1:9000"));
    text.replace("server 127.0.0.1:8080;", &format!("server {stamps};"))
        .replace("listen 80;", &format!("listen 127.0.0.1:{front};"))
        .replace(
            "http://127.0.0.1:9000",
            &format!("http://127.0.0.1:{upstream}"),
        )
}

/// The upstream: answers every request with the identity headers it got.
fn echo_upstream(port: u16) -> String {
    format!(
        "server {{\n\
         listen 127.0.0.1:{port};\n\
         location / {{\n\
         default_type text/plain;\n\
         return 200 \"user=$http_x_stamps_user_id merchant=$http_x_stamps_merchant_id \
         kind=$http_x_stamps_token_kind jti=$http_x_stamps_jti\";\n\
         }}\n\
         }}\n"
    )
}

/// GET `path` through nginx: status, headers and body.
fn through(
    front: u16,
    path: &str,
    headers: &[(&str, &str)],
) -> (u16, reqwest::header::HeaderMap, String) {
    let mut request = common::client().get(format!("http://127.0.0.1:{front}{path}"));
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let response = request.send().unwrap();
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    (status, headers, response.text().unwrap())
}

#[test]
fn nginx_lets_through_exactly_what_stamps_accepts() {
    let Some(nginx) = nginx_binary() else {
        assert!(
            std::env::var("STAMPS_TEST_NGINX").as_deref() != Ok("required"),
            "nginx is required (STAMPS_TEST_NGINX=required) but not installed"
        );
        eprintln!("nginx is not installed: the forward-authentication test is skipped");
        return;
    };
    let data = tempfile::tempdir().unwrap();
    let static_token = provision(data.path());
    common::admin_json(
        data.path(),
        &["merchant", "add", "--name", "Other", "--id", "2"],
    );
    let other_merchant = common::admin_json(
        data.path(),
        &["token", "create", "--user", "5870", "--merchant", "2"],
    )["token"]
        .as_str()
        .unwrap()
        .to_owned();
    let revoked = common::admin_json(
        data.path(),
        &["token", "create", "--user", "5870", "--merchant", "1"],
    );
    // JWTs live 3 s (one expires during the test); nginx is the trusted
    // proxy that names the client; a low failure limit to reach 429.
    let server = Server::start_in(
        data,
        &[
            ("STAMPS_JWT__LIFETIME", "3s"),
            ("STAMPS_JWT__LEEWAY", "0s"),
            ("STAMPS_PROXY__TRUSTED", "127.0.0.1"),
            ("STAMPS_RATE_LIMIT__PER_ADDRESS", "10"),
        ],
    );
    server.admin(&["token", "revoke", revoked["id"].as_str().unwrap()]);
    let stamps = server.url.trim_start_matches("http://").to_owned();
    let (upstream, front) = (free_port(), free_port());
    let config = documented_config(&stamps, upstream, front) + &echo_upstream(upstream);
    let proxy = Nginx::start(&nginx, &config, &[upstream, front]);
    let pass = |path: &str, headers: &[(&str, &str)]| through(front, path, headers);

    // A valid JWT reaches the upstream with its identity, whatever the
    // client claimed in the same headers.
    let jwt = server.access_token(&static_token);
    let (_, claims, _) = common::json_of(
        server
            .post("/api/auth/verify-token/")
            .header("Authorization", bearer_of(&jwt))
            .send()
            .unwrap(),
    );
    let jti = claims["jti"].as_str().unwrap().to_owned();
    let (status, _, body) = pass(
        "/orders/7",
        &[
            ("Authorization", &bearer_of(&jwt)),
            ("X-Stamps-User-Id", "1"),
            ("X-Stamps-Merchant", "2"),
        ],
    );
    assert_eq!(status, 200, "{body}\n{}", proxy.error_log());
    assert_eq!(body, format!("user=5870 merchant=1 kind=jwt jti={jti}"));
    // A static token too, with no jti.
    let (status, _, body) = pass("/", &[("Authorization", &format!("Token {static_token}"))]);
    assert_eq!(status, 200, "{body}");
    assert_eq!(body, "user=5870 merchant=1 kind=static jti=");
    // The merchant-1 route: merchant 1's token passes, merchant 2's is 403.
    let (status, _, body) = pass(
        "/merchant-1/x",
        &[("Authorization", &format!("Token {static_token}"))],
    );
    assert_eq!(
        (status, body.as_str()),
        (200, "user=5870 merchant=1 kind=static jti=")
    );
    let (status, _, _) = pass(
        "/merchant-1/x",
        &[("Authorization", &format!("Token {other_merchant}"))],
    );
    assert_eq!(status, 403);
    // ... while on the general route it passes, for merchant 2.
    let (status, _, body) = pass(
        "/",
        &[("Authorization", &format!("Token {other_merchant}"))],
    );
    assert_eq!(
        (status, body.as_str()),
        (200, "user=5870 merchant=2 kind=static jti=")
    );

    // Refused by nginx with stamps' status and challenge.
    let refusals: [(&str, String); 3] = [
        ("no credentials", String::new()),
        ("garbage", "Bearer not.a.jwt".to_owned()),
        (
            "revoked",
            format!("Token {}", revoked["token"].as_str().unwrap()),
        ),
    ];
    for (what, authorization) in &refusals {
        let headers: Vec<(&str, &str)> = if authorization.is_empty() {
            vec![]
        } else {
            vec![("Authorization", authorization.as_str())]
        };
        let (status, headers, _) = pass("/orders/7", &headers);
        assert_eq!(status, 401, "{what}");
        assert!(
            headers
                .get("www-authenticate")
                .and_then(|v| v.to_str().ok())
                .is_some_and(|v| v.starts_with("Bearer")),
            "{what}: {headers:?}"
        );
    }
    // An expired JWT: 200 until its three seconds are over, then 401.
    let expiring = bearer_of(&server.access_token(&static_token));
    eventually(Duration::from_secs(15), "the JWT expired", || {
        let (status, _, _) = pass("/", &[("Authorization", &expiring)]);
        assert!(status == 200 || status == 401, "{status}");
        status == 401
    });
    // A client that keeps failing is throttled: 429 with Retry-After,
    // passed on by the documented error_page; valid credentials still pass.
    let mut throttled = None;
    for _ in 0..50 {
        let (status, headers, _) = pass("/", &[("Authorization", "Bearer not.a.jwt")]);
        if status == 429 {
            throttled = Some(headers);
            break;
        }
        assert_eq!(status, 401);
    }
    let headers = throttled.expect("no 429 within 50 failures");
    assert!(headers.contains_key("retry-after"), "{headers:?}");
    let (status, _, _) = pass("/", &[("Authorization", &format!("Token {static_token}"))]);
    assert_eq!(status, 200);
    // The check location is internal: not reachable through nginx.
    let (status, _, _) = pass(
        "/_stamps_check",
        &[("Authorization", &format!("Token {static_token}"))],
    );
    assert_eq!(status, 404);

    // stamps gone: 503, not 500 and not a pass.
    let (exit, _, _) = server.terminate();
    assert!(exit.success());
    let (status, _, _) = pass("/", &[("Authorization", &format!("Token {static_token}"))]);
    assert_eq!(status, 503, "{}", proxy.error_log());
}
