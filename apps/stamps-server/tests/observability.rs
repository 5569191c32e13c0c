//! End-to-end tests of what operators watch: the probes (`/healthz`,
//! `/readyz`, including a store that cannot write and an admin socket that
//! is gone), `/metrics` (every counter moves by what was sent, on the main
//! listener or one of its own), and JSON logs (JSON, and no secret).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::{SECRET, Server, client, eventually, json_of, provision, set_file_size_limit};
use serde_json::{Value, json};
use stamps_core::{Clock, ExpiryRules, JwtCodec, KeySet, SigningKey, SystemClock};

fn get(url: &str) -> reqwest::blocking::Response {
    client().get(url).send().unwrap()
}

fn readyz(server: &Server) -> (u16, Value) {
    let (status, body, headers) = json_of(get(&format!("{}/readyz", server.url)));
    assert_eq!(headers["cache-control"], "no-store");
    (status, body)
}

// ---------------------------------------------------------------------------
// Probes.

#[test]
fn probes_answer_anyone_are_never_throttled_and_refuse_other_methods() {
    let data = tempfile::tempdir().unwrap();
    let server = Server::start_in(data, &[("STAMPS_RATE_LIMIT__PER_ADDRESS", "1")]);
    for path in ["/healthz", "/healthz/"] {
        let (status, body, headers) = json_of(get(&format!("{}{path}", server.url)));
        assert_eq!((status, body), (200, json!({"status": "ok"})), "{path}");
        assert_eq!(headers["content-type"], "application/json");
    }
    let (status, body) = readyz(&server);
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body,
        json!({"status": "ok", "checks": {"store": "ok", "admin_socket": "ok"}})
    );
    let head = client()
        .head(format!("{}/readyz/", server.url))
        .send()
        .unwrap();
    assert_eq!(head.status(), 200);
    assert!(head.text().unwrap().is_empty());

    for method in ["POST", "PUT", "DELETE", "OPTIONS"] {
        let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        for path in ["/healthz", "/readyz/"] {
            let response = client()
                .request(method.clone(), format!("{}{path}", server.url))
                .send()
                .unwrap();
            let (status, body, headers) = json_of(response);
            assert_eq!(status, 405, "{method} {path}");
            assert_eq!(headers["allow"], "GET, HEAD");
            assert_eq!(body["error_code"], "method_not_allowed");
        }
    }
    // Metrics are off by default: /metrics is an unknown path.
    let (status, body, _) = json_of(get(&format!("{}/metrics", server.url)));
    assert_eq!((status, &body["error_code"]), (404, &json!("not_found")));

    // This address is throttled now, for the API only.
    let mut statuses = Vec::new();
    for _ in 0..5 {
        statuses.push(server.ping("Bearer not.a.jwt"));
    }
    assert!(statuses.contains(&429), "{statuses:?}");
    for _ in 0..20 {
        assert_eq!(readyz(&server).0, 200);
        assert_eq!(get(&format!("{}/healthz", server.url)).status(), 200);
    }
}

#[test]
fn readyz_is_503_naming_the_store_while_it_cannot_write_and_ready_again_after() {
    // Writes fail (EFBIG) under a file size limit of one byte, as on a
    // disk that refuses them; the server stays up, JWTs still verify.
    let server = Server::start_ignoring_sigxfsz(tempfile::tempdir().unwrap(), &[]);
    let token = provision(server.data_dir());
    let jwt = server.access_token(&token);
    assert_eq!(readyz(&server).0, 200);

    set_file_size_limit(server.child.id(), "1");
    let mut last = Value::Null;
    eventually(Duration::from_secs(20), "readyz says 503", || {
        let (status, body) = readyz(&server);
        last = body;
        status == 503
    });
    assert_eq!(last["status"], "unavailable", "{last}");
    let store = last["checks"]["store"].as_str().unwrap();
    assert!(["full", "closed", "unwritable"].contains(&store), "{last}");
    assert_eq!(last["checks"]["admin_socket"], "ok");
    // A word, never a path or an error text.
    assert!(!last.to_string().contains('/'), "{last}");
    server.await_log("not ready");
    // Alive all along, and JWTs go on.
    assert_eq!(get(&format!("{}/healthz", server.url)).status(), 200);
    assert_eq!(server.ping(&format!("Bearer {jwt}")), 200);

    set_file_size_limit(server.child.id(), "unlimited");
    eventually(Duration::from_secs(20), "readyz says 200 again", || {
        readyz(&server).0 == 200
    });
    server.await_log("ready again");
}

#[test]
fn a_removed_admin_socket_comes_back_and_sigterm_still_exits_0() {
    let data = tempfile::tempdir().unwrap();
    provision(data.path());
    let server = Server::start_in(data, &[]);
    let socket = server.data_dir().join("admin.sock");
    assert_eq!(readyz(&server).0, 200);

    // A cleanup job deletes the socket file: the server makes it again, and
    // stamps-admin and the readiness check work again, with no restart.
    std::fs::remove_file(&socket).unwrap();
    eventually(Duration::from_secs(10), "the socket file is back", || {
        socket.exists()
    });
    let merchants = server.admin(&["merchant", "list"]);
    assert_eq!(merchants[0]["name"], "My Merchant", "{merchants}");
    eventually(Duration::from_secs(10), "readyz says 200 again", || {
        readyz(&server).0 == 200
    });
    server.await_log("the admin socket file was gone: made again");

    // Replaced, in one rename, by a file that is not a socket, which the
    // server may not replace: no socket can be made at the path, so the
    // shutdown's wake-up connection fails for certain. SIGTERM once the
    // accept loop has seen it: the server stops all the same (it used to
    // wait for ever on its accept loop), and leaves that file alone.
    let other = server.data_dir().join("not-a-socket");
    std::fs::write(&other, "someone else's").unwrap();
    std::fs::rename(&other, &socket).unwrap();
    eventually(Duration::from_secs(10), "the accept loop saw it", || {
        server.logs().contains("cannot be made again")
    });
    let started = std::time::Instant::now();
    let (status, data, logs) = server.terminate();
    assert_eq!(status.code(), Some(0), "{logs}");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(
        std::fs::read_to_string(data.path().join("admin.sock")).unwrap(),
        "someone else's"
    );
}

// ---------------------------------------------------------------------------
// Metrics.

/// Every sample of a Prometheus text page: series (name and labels) to
/// value.
fn samples(text: &str) -> BTreeMap<String, f64> {
    text.lines()
        .filter(|line| !line.starts_with('#') && !line.is_empty())
        .map(|line| {
            let (series, value) = line.rsplit_once(' ').unwrap();
            (series.to_owned(), value.parse().unwrap())
        })
        .collect()
}

fn scrape(url: &str) -> BTreeMap<String, f64> {
    let response = get(url);
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.headers()["content-type"],
        "text/plain; version=0.0.4; charset=utf-8"
    );
    samples(&response.text().unwrap())
}

/// What a counter moved by between two scrapes (absent counts as 0).
fn moved(before: &BTreeMap<String, f64>, after: &BTreeMap<String, f64>, series: &str) -> f64 {
    after.get(series).copied().unwrap_or(0.0) - before.get(series).copied().unwrap_or(0.0)
}

/// The requests a test sent, by (route label, status code).
#[derive(Default)]
struct Sent(BTreeMap<(&'static str, u16), u32>);

impl Sent {
    fn post(&mut self, server: &Server, route: &'static str, path: &str, auth: &str) -> u16 {
        let status = server
            .post(path)
            .header("Authorization", auth)
            .send()
            .unwrap()
            .status()
            .as_u16();
        *self.0.entry((route, status)).or_default() += 1;
        status
    }
}

const VERIFY: &str = "/api/auth/verify-token";
const PING: &str = "/api/ping";

#[test]
fn metrics_count_requests_outcomes_the_cache_and_argon2() {
    let data = tempfile::tempdir().unwrap();
    let server = Server::start_in(
        data,
        &[
            ("STAMPS_METRICS__ENABLED", "true"),
            ("STAMPS_RATE_LIMIT__PER_ADDRESS", "10"),
        ],
    );
    let metrics_url = format!("{}/metrics", server.url);
    let token = provision(server.data_dir());
    let doomed = server.admin(&["token", "create", "--user", "5870", "--merchant", "1"]);
    server.admin(&["token", "revoke", doomed["id"].as_str().unwrap()]);
    let before = scrape(&metrics_url);
    let mut sent = Sent::default();

    // Static tokens: the first use hashes (a cache miss), the second does
    // not (a hit); the revoked one is hashed and refused.
    let jwt = server.access_token(&token);
    server.access_token(&token);
    *sent
        .0
        .entry(("/api/auth/get-access-token", 200))
        .or_default() += 2;
    let doomed = format!("Token {}", doomed["token"].as_str().unwrap());
    assert_eq!(sent.post(&server, PING, "/api/ping", &doomed), 401);
    assert_eq!(
        sent.post(&server, PING, "/api/ping/", &format!("Token {token}")),
        200
    );

    // JWTs: valid (with and without the slash), expired, revoked, forged.
    let bearer = format!("Bearer {jwt}");
    for path in [
        "/api/auth/verify-token/",
        "/api/auth/verify-token",
        "/api/ping",
    ] {
        let route = if path.starts_with(VERIFY) {
            VERIFY
        } else {
            PING
        };
        assert_eq!(sent.post(&server, route, path, &bearer), 200);
    }
    let codec = JwtCodec::new(
        KeySet::new(SigningKey::new(SECRET.as_bytes().to_vec()).unwrap()),
        ExpiryRules::default(),
    );
    let expired = codec.mint(5870, 1, SystemClock.now() - 3 * 86_400);
    let expired = format!("Bearer {}", expired.token);
    assert_eq!(
        sent.post(&server, VERIFY, "/api/auth/verify-token/", &expired),
        401
    );
    let revoked = server.access_token(&token);
    *sent
        .0
        .entry(("/api/auth/get-access-token", 200))
        .or_default() += 1;
    let jti = codec.verify(&revoked, SystemClock.now()).unwrap().jti;
    server.admin(&["jwt", "revoke", &jti.to_string()]);
    let revoked = format!("Bearer {revoked}");
    assert_eq!(sent.post(&server, PING, "/api/ping", &revoked), 401);
    let forged = last_char_changed(&bearer);
    assert_eq!(
        sent.post(&server, VERIFY, "/api/auth/verify-token/", &forged),
        401
    );

    // Unknown paths are one label, whatever the path.
    for path in ["/nope", "/api/ping/extra", "/api/auth/verify-token//"] {
        let status = get(&format!("{}{path}", server.url)).status().as_u16();
        assert_eq!(status, 404, "{path}");
        *sent.0.entry(("unmatched", 404)).or_default() += 1;
    }
    let status = get(&format!("{}{VERIFY}", server.url)).status().as_u16();
    assert_eq!(status, 405);
    *sent.0.entry((VERIFY, 405)).or_default() += 1;

    // Forged JWTs until this address is throttled (4 failures so far).
    let (mut invalid, mut throttled) = (1, 0);
    for _ in 0..30 {
        match sent.post(&server, VERIFY, "/api/auth/verify-token/", &forged) {
            401 => invalid += 1,
            429 => {
                throttled += 1;
                break;
            }
            other => panic!("unexpected {other}"),
        }
    }
    assert_eq!(throttled, 1, "never throttled");

    let after = scrape(&metrics_url);
    let moved = |series: &str| moved(&before, &after, series);

    for ((route, code), count) in &sent.0 {
        let series = format!("stamps_http_requests_total{{route=\"{route}\",code=\"{code}\"}}");
        assert_eq!(moved(&series), f64::from(*count), "{series}");
    }
    // Only pattern labels: no raw path, whatever was sent.
    for series in after.keys() {
        assert!(
            !series.contains("/nope") && !series.contains("extra"),
            "{series}"
        );
    }
    let verify_count: u32 = sent
        .0
        .iter()
        .filter(|((route, _), _)| *route == VERIFY)
        .map(|(_, n)| n)
        .sum();
    assert_eq!(
        moved("stamps_http_request_duration_seconds_count{route=\"/api/auth/verify-token\"}"),
        f64::from(verify_count)
    );
    assert_eq!(
        moved(
            "stamps_http_request_duration_seconds_bucket{route=\"/api/auth/verify-token\",le=\"+Inf\"}"
        ),
        f64::from(verify_count)
    );

    let auth = |scheme: &str, reason: &str| {
        moved(&format!(
            "stamps_auth_outcomes_total{{scheme=\"{scheme}\",reason=\"{reason}\"}}"
        ))
    };
    assert_eq!(auth("static", "ok"), 4.0); // three access tokens, one ping
    assert_eq!(auth("static", "revoked"), 1.0);
    assert_eq!(auth("jwt", "ok"), 3.0);
    assert_eq!(auth("jwt", "expired"), 1.0);
    assert_eq!(auth("jwt", "revoked"), 1.0);
    assert_eq!(auth("jwt", "invalid"), f64::from(invalid));
    assert_eq!(auth("jwt", "throttled"), f64::from(throttled));
    assert_eq!(auth("static", "invalid"), 0.0);

    // Two tokens hashed (the first use, the revoked one); the rest cached.
    assert_eq!(moved("stamps_static_token_cache_misses_total"), 2.0);
    assert_eq!(moved("stamps_static_token_cache_hits_total"), 3.0);
    assert_eq!(moved("stamps_argon2_hash_seconds_count"), 2.0);
    assert_eq!(moved("stamps_argon2_wait_seconds_count"), 2.0);
    assert_eq!(after["stamps_argon2_queue_depth"], 0.0);
    assert_eq!(after["stamps_argon2_in_progress"], 0.0);

    // Read at scrape time.
    assert!(after["stamps_store_size_bytes"] > 0.0);
    assert_eq!(after["stamps_store_open"], 1.0);
    assert_eq!(after["stamps_accounts{kind=\"merchant\"}"], 1.0);
    assert_eq!(after["stamps_accounts{kind=\"user\"}"], 1.0);
    assert_eq!(after["stamps_static_token_cache_entries"], 1.0);
    // The log writer kept up: nothing dropped.
    assert_eq!(after["stamps_log_lines_dropped_total"], 0.0);
    // The scrape before this one was counted too.
    assert!(moved("stamps_http_requests_total{route=\"/metrics\",code=\"200\"}") >= 1.0);
}

#[test]
fn a_metrics_listener_of_its_own_serves_metrics_and_the_main_one_does_not() {
    let data = tempfile::tempdir().unwrap();
    let server = Server::start_in(
        data,
        &[
            ("STAMPS_METRICS__ENABLED", "true"),
            ("STAMPS_METRICS__LISTEN", "127.0.0.1:0"),
        ],
    );
    let logs = server.logs();
    let metrics_url = logs
        .lines()
        .find_map(|line| {
            line.split_once("serving /metrics on ")
                .map(|(_, url)| url.trim())
        })
        .unwrap_or_else(|| panic!("no metrics listener in the log:\n{logs}"))
        .to_owned();
    assert_ne!(metrics_url, format!("{}/metrics", server.url));

    for path in ["/metrics", "/metrics/"] {
        let (status, body, _) = json_of(get(&format!("{}{path}", server.url)));
        assert_eq!(
            (status, &body["error_code"]),
            (404, &json!("not_found")),
            "{path}"
        );
    }
    assert_eq!(server.ping("Bearer not.a.jwt"), 401);

    let samples = scrape(&metrics_url);
    assert_eq!(
        samples["stamps_http_requests_total{route=\"/api/ping\",code=\"401\"}"],
        1.0
    );
    assert_eq!(
        samples["stamps_http_requests_total{route=\"unmatched\",code=\"404\"}"],
        2.0
    );
    assert_eq!(
        samples["stamps_auth_outcomes_total{scheme=\"jwt\",reason=\"invalid\"}"],
        1.0
    );

    // Nothing else there.
    let base = metrics_url.trim_end_matches("/metrics");
    let (status, _, _) = json_of(get(&format!("{base}/healthz")));
    assert_eq!(status, 404);
    let response = client().post(&metrics_url).send().unwrap();
    let (status, body, headers) = json_of(response);
    assert_eq!(
        (status, &body["error_code"]),
        (405, &json!("method_not_allowed"))
    );
    assert_eq!(headers["allow"], "GET, HEAD");

    // It stops with the server.
    let (status, _, logs) = server.terminate();
    assert_eq!(status.code(), Some(0), "{logs}");
}

// ---------------------------------------------------------------------------
// Logs.

/// A ping with a static token, and the id of its request line, if any.
fn ping_request_id(server: &Server, token: &str) -> Option<String> {
    let response = server
        .post("/api/ping")
        .header("Authorization", format!("Token {token}"))
        .send()
        .unwrap();
    assert_eq!(response.status(), 200);
    let id = response.headers().get("x-request-id")?;
    Some(id.to_str().unwrap().to_owned())
}

#[test]
fn by_default_each_request_has_a_text_line_written_at_once_and_the_last_at_a_stop() {
    let data = tempfile::tempdir().unwrap();
    let server = Server::start_in(data, &[]);
    let token = provision(server.data_dir());
    // A worker holds its lines only until it has answered what was ready:
    // an idle server's line is written without waiting for more requests.
    let first = ping_request_id(&server, &token).unwrap();
    server.await_log(&format!("request_id={first}"));
    let last = ping_request_id(&server, &token).unwrap();
    let (status, _, logs) = server.terminate();
    assert_eq!(status.code(), Some(0), "{logs}");
    let position = |needle: &str| {
        logs.lines()
            .position(|line| line.contains(needle))
            .unwrap_or_else(|| panic!("no line with {needle}:\n{logs}"))
    };
    // Every request line comes before the stop's last line.
    assert!(position(&format!("request_id={last}")) < position("stopped; store flushed"));
    for id in [first, last] {
        let line = logs
            .lines()
            .find(|line| line.contains(&format!("request_id={id}")))
            .unwrap_or_else(|| panic!("no line for {id}:\n{logs}"));
        assert!(line.contains("  INFO request "), "{line}");
        assert!(
            line.contains("method=POST path=/api/ping status=200 latency_us="),
            "{line}"
        );
    }
    assert!(!logs.contains(&token));
}

#[test]
fn access_lines_can_be_turned_off_and_the_rest_of_the_log_stays() {
    let data = tempfile::tempdir().unwrap();
    let server = Server::start_in(data, &[("STAMPS_LOG__ACCESS", "false")]);
    let token = provision(server.data_dir());
    for _ in 0..3 {
        assert_eq!(server.ping(&format!("Token {token}")), 200);
    }
    let (status, _, logs) = server.terminate();
    assert_eq!(status.code(), Some(0), "{logs}");
    assert!(!logs.contains(" request "), "{logs}");
    assert!(!logs.contains("request_id"), "{logs}");
    // Everything else is there, to the last line of a clean stop.
    assert!(logs.contains("listening on") && logs.contains("stopped; store flushed"));
}

#[test]
fn request_lines_follow_the_log_level_of_their_target() {
    let data = tempfile::tempdir().unwrap();
    let server = Server::start_in(data, &[("STAMPS_LOG", "info,stamps_http::logging=warn")]);
    let token = provision(server.data_dir());
    // No line, so no id to find it by.
    assert_eq!(ping_request_id(&server, &token), None);
    let (status, _, logs) = server.terminate();
    assert_eq!(status.code(), Some(0), "{logs}");
    assert!(!logs.contains("request_id"), "{logs}");
    assert!(logs.contains("listening on") && logs.contains("stopped; store flushed"));
}

#[test]
fn json_logs_are_one_object_per_line_and_never_hold_a_secret() {
    let data = tempfile::tempdir().unwrap();
    let server = Server::start_in(data, &[("STAMPS_LOG__FORMAT", "json")]);
    let token = provision(server.data_dir());
    let jwt = server.access_token(&token);
    assert_eq!(server.ping(&format!("Bearer {jwt}")), 200);
    assert_eq!(server.ping(&format!("Token {token}")), 200);
    let wrong = last_char_changed(&token);
    assert_eq!(server.ping(&format!("Token {wrong}")), 401);
    assert_eq!(server.ping(&format!("Bearer {jwt}x")), 401);
    let (status, _, logs) = server.terminate();
    assert_eq!(status.code(), Some(0), "{logs}");

    let lines: Vec<Value> = logs
        .lines()
        .filter(|line| !line.trim().is_empty())
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}")))
        .collect();
    for line in &lines {
        assert!(line.is_object(), "{line}");
        assert!(
            line["timestamp"].is_string() && line["level"].is_string(),
            "{line}"
        );
    }
    let requests: Vec<&Value> = lines
        .iter()
        .filter(|line| line["message"] == "request")
        .collect();
    assert_eq!(requests.len(), 5, "{logs}");
    for request in &requests {
        assert_eq!(request["method"], "POST");
        assert!(request["status"].is_u64() && request["request_id"].is_string());
    }
    assert!(
        lines
            .iter()
            .any(|line| line["message"] == "stopped; store flushed")
    );
    let secret_part = token.split('_').nth(2).unwrap();
    for secret in [token.as_str(), secret_part, &wrong, &jwt, SECRET] {
        assert!(!logs.contains(secret), "a secret is in the log:\n{logs}");
    }
}

/// `text` with its last character replaced by another one (an `x`, or a
/// `y` where it was an `x`: the text must change).
fn last_char_changed(text: &str) -> String {
    let (head, last) = text.split_at(text.len() - 1);
    format!("{head}{}", if last == "x" { 'y' } else { 'x' })
}
