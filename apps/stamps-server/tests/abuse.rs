//! End-to-end: failed authentication is throttled (CONTRACT §1.4, 429) per
//! client address and per static token id, the address being what trusted
//! proxies say; valid JWTs and proven static tokens never are; and an
//! unknown token id is refused about as late as a wrong secret.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::time::{Duration, Instant};

use common::{Server, json_of, provision};
use reqwest::blocking::Response;
use serde_json::{Value, json};
use stamps_core::{ExposeSecret, StaticToken};

const GET: &str = "/api/auth/get-access-token/";
const VERIFY: &str = "/api/auth/verify-token/";

/// A provisioned server with extra settings, and its static token.
fn server_with(env: &[(&str, &str)]) -> (Server, String) {
    let data = tempfile::tempdir().unwrap();
    let token = provision(data.path());
    (Server::start_in(data, env), token)
}

fn get_access_token(server: &Server, token: &str, forwarded_for: Option<&str>) -> Response {
    let mut request = server
        .post(GET)
        .header("Content-Type", "application/json")
        .body(json!({"token": token, "crm_merchant_id": 1}).to_string());
    if let Some(client) = forwarded_for {
        request = request.header("X-Forwarded-For", client);
    }
    request.send().unwrap()
}

/// Proves the static token (it is cached from then on) and returns a JWT.
fn access_token(server: &Server, token: &str) -> String {
    let (status, body, _) = json_of(get_access_token(server, token, None));
    assert_eq!(status, 200, "{body}");
    body["access_token"].as_str().unwrap().to_owned()
}

fn verify(server: &Server, jwt: &str, forwarded_for: Option<&str>) -> Response {
    let mut request = server
        .post(VERIFY)
        .header("Authorization", format!("Bearer {jwt}"));
    if let Some(client) = forwarded_for {
        request = request.header("X-Forwarded-For", client);
    }
    request.send().unwrap()
}

fn ping(server: &Server, authorization: &str) -> u16 {
    server
        .post("/api/ping")
        .header("Authorization", authorization)
        .send()
        .unwrap()
        .status()
        .as_u16()
}

/// The same token id with another secret, and a valid checksum: a real
/// guess, which the checksum cannot stop.
fn wrong_secret(token: &str) -> String {
    let real = StaticToken::parse(token).unwrap();
    let guess =
        StaticToken::from_parts(*real.id(), StaticToken::generate().secret().expose_secret())
            .unwrap();
    guess.to_secret_string().expose_secret().to_owned()
}

/// A JWT with a broken signature.
fn tampered(jwt: &str) -> String {
    let (rest, signature) = jwt.rsplit_once('.').unwrap();
    let first = if signature.starts_with('A') { 'B' } else { 'A' };
    format!("{rest}.{first}{}", &signature[1..])
}

fn assert_status(response: Response, status: u16) -> Value {
    let (got, body, _) = json_of(response);
    assert_eq!(got, status, "{body}");
    body
}

/// A 429 `throttled` with the body of every error and a `Retry-After` in
/// whole seconds, at most a window; returns it.
fn assert_throttled(response: Response) -> u64 {
    let (status, body, headers) = json_of(response);
    assert_eq!(status, 429, "{body}");
    assert_eq!(body["error_code"], "throttled", "{body}");
    assert!(
        body["detail"]
            .as_str()
            .unwrap()
            .starts_with("Request was throttled.")
    );
    assert_eq!(body["error_message"], body["detail"]);
    let retry_after: u64 = headers
        .get("retry-after")
        .expect("429 without Retry-After")
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=60).contains(&retry_after), "{retry_after}");
    retry_after
}

#[test]
fn an_address_that_keeps_failing_is_throttled_but_its_valid_credentials_pass() {
    let (server, token) = server_with(&[("STAMPS_RATE_LIMIT__PER_ADDRESS", "5")]);
    let jwt = access_token(&server, &token);
    let bad = tampered(&jwt);

    for _ in 0..5 {
        assert_status(verify(&server, &bad, None), 401);
    }
    assert_throttled(verify(&server, &bad, None));
    // Every refused credential from the address is throttled now: garbage,
    // an unproven static token (before any store lookup).
    assert_throttled(
        server
            .post("/api/ping")
            .header("Authorization", "Token stmp_garbage")
            .send()
            .unwrap(),
    );
    assert_throttled(get_access_token(&server, &wrong_secret(&token), None));

    // Valid credentials from the same address are never throttled.
    assert_status(verify(&server, &jwt, None), 200);
    assert_eq!(ping(&server, &format!("Bearer {jwt}")), 200);
    assert_eq!(ping(&server, &format!("Token {token}")), 200);
    assert_status(get_access_token(&server, &token, None), 200);
    // Requests without credentials are not failures, and not throttled.
    assert_eq!(server.post("/api/ping").send().unwrap().status(), 401);
}

#[test]
fn a_token_id_flooded_with_wrong_secrets_refuses_the_guesses_but_not_its_holder() {
    let (server, token) = server_with(&[
        ("STAMPS_RATE_LIMIT__PER_TOKEN", "3"),
        ("STAMPS_RATE_LIMIT__PER_ADDRESS", "1000"),
    ]);
    access_token(&server, &token);
    let other = server.admin(&["token", "create", "--user", "5870", "--merchant", "1"]);
    let other = other["token"].as_str().unwrap().to_owned();

    for _ in 0..3 {
        assert_status(get_access_token(&server, &wrong_secret(&token), None), 401);
    }
    for _ in 0..5 {
        assert_throttled(get_access_token(&server, &wrong_secret(&token), None));
    }
    // The holder's proven secret passes, by both routes.
    assert_status(get_access_token(&server, &token, None), 200);
    assert_eq!(ping(&server, &format!("Token {token}")), 200);
    // Another token id is not affected.
    assert_status(get_access_token(&server, &wrong_secret(&other), None), 401);
    assert_status(get_access_token(&server, &other, None), 200);
}

#[test]
fn forwarded_for_names_the_client_only_from_a_trusted_proxy() {
    let env = [("STAMPS_RATE_LIMIT__PER_ADDRESS", "3")];
    let (server, token) = server_with(&[env[0], ("STAMPS_PROXY__TRUSTED", "127.0.0.1/32")]);
    let bad = tampered(&access_token(&server, &token));

    // Behind the trusted proxy (us, on 127.0.0.1), 203.0.113.7 fails.
    for _ in 0..3 {
        assert_status(verify(&server, &bad, Some("203.0.113.7")), 401);
    }
    assert_throttled(verify(&server, &bad, Some("203.0.113.7")));
    // A forged entry on the left does not help: the proxy appended .7.
    assert_throttled(verify(&server, &bad, Some("198.51.100.1, 203.0.113.7")));
    // Other clients, and the proxy itself, are not throttled.
    assert_status(verify(&server, &bad, Some("203.0.113.8")), 401);
    assert_status(verify(&server, &bad, None), 401);

    // Without trusted proxies the header is ignored: every failure counts
    // for the TCP peer, whatever it claims.
    let (server, token) = server_with(&env);
    let bad = tampered(&access_token(&server, &token));
    for i in 0..3 {
        let claimed = format!("203.0.113.{i}");
        assert_status(verify(&server, &bad, Some(&claimed)), 401);
    }
    assert_throttled(verify(&server, &bad, Some("203.0.113.99")));
    assert_throttled(verify(&server, &bad, None));
}

#[test]
fn limits_are_configurable_and_can_be_turned_off() {
    let (server, token) = server_with(&[
        ("STAMPS_RATE_LIMIT__ENABLED", "false"),
        ("STAMPS_RATE_LIMIT__PER_ADDRESS", "1"),
        ("STAMPS_RATE_LIMIT__PER_TOKEN", "1"),
    ]);
    let bad = tampered(&access_token(&server, &token));
    for _ in 0..8 {
        assert_status(verify(&server, &bad, None), 401);
    }
    for _ in 0..3 {
        assert_status(get_access_token(&server, &wrong_secret(&token), None), 401);
    }
    server.await_log("rate limits on failed authentication are off");
}

#[test]
fn a_static_token_obtains_only_its_issuance_quota_and_still_authenticates() {
    let (server, token) = server_with(&[("STAMPS_RATE_LIMIT__ISSUE_PER_TOKEN", "3")]);
    let second = common::admin_json(
        server.data_dir(),
        &["token", "create", "--user", "5870", "--merchant", "1"],
    )["token"]
        .as_str()
        .unwrap()
        .to_owned();
    let issued: Vec<String> = (0..3).map(|_| access_token(&server, &token)).collect();
    // The fourth is over the quota: 429 with Retry-After (60 s / 3 = 20 s
    // for the next one), whatever the client.
    let retry_after = assert_throttled(get_access_token(&server, &token, None));
    assert!((1..=20).contains(&retry_after), "{retry_after}");
    assert_throttled(get_access_token(&server, &token, Some("203.0.113.5")));
    // Only issuance is limited: the token still authenticates, the JWTs it
    // obtained still verify, and another token has a quota of its own.
    assert_eq!(ping(&server, &format!("Token {token}")), 200);
    for jwt in &issued {
        assert_status(verify(&server, jwt, None), 200);
    }
    access_token(&server, &second);
    // A refused request spends nothing: a wrong merchant is 403, not 429.
    let (status, _, _) = json_of(
        server
            .post(GET)
            .header("Content-Type", "application/json")
            .body(json!({"token": second, "crm_merchant_id": 2}).to_string())
            .send()
            .unwrap(),
    );
    assert_eq!(status, 403);
}

#[test]
fn the_issuance_quota_is_600_a_minute_by_default_and_0_lifts_it() {
    let (server, token) = server_with(&[("STAMPS_RATE_LIMIT__WINDOW", "1h")]);
    for _ in 0..600 {
        access_token(&server, &token);
    }
    assert_throttled_within(get_access_token(&server, &token, None), 6);
    drop(server);
    let (server, token) = server_with(&[
        ("STAMPS_RATE_LIMIT__WINDOW", "1h"),
        ("STAMPS_RATE_LIMIT__ISSUE_PER_TOKEN", "0"),
    ]);
    for _ in 0..650 {
        access_token(&server, &token);
    }
}

/// A 429 `throttled` whose `Retry-After` is at most `max` seconds.
fn assert_throttled_within(response: Response, max: u64) {
    let (status, body, headers) = json_of(response);
    assert_eq!((status, &body["error_code"]), (429, &json!("throttled")));
    let retry_after: u64 = headers["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=max).contains(&retry_after), "{retry_after}");
}

/// Median latency of `n` calls.
fn median(n: usize, mut call: impl FnMut() -> Value) -> (Duration, Value) {
    let mut times = Vec::new();
    let mut last = Value::Null;
    for _ in 0..n {
        let started = Instant::now();
        last = call();
        times.push(started.elapsed());
    }
    times.sort();
    (times[n / 2], last)
}

#[test]
fn unknown_ids_are_refused_about_as_late_as_wrong_secrets_with_the_same_body() {
    let (server, token) = server_with(&[("STAMPS_RATE_LIMIT__ENABLED", "false")]);
    // Measured hashes feed the estimate the unknown-id refusal waits for.
    for _ in 0..3 {
        assert_status(get_access_token(&server, &wrong_secret(&token), None), 401);
    }
    let (wrong, wrong_body) = median(5, || {
        assert_status(get_access_token(&server, &wrong_secret(&token), None), 401)
    });
    let (unknown, unknown_body) = median(5, || {
        let fresh = StaticToken::generate();
        assert_status(
            get_access_token(&server, fresh.to_secret_string().expose_secret(), None),
            401,
        )
    });
    assert_eq!(wrong_body, unknown_body);
    // Generous bounds: the same order of magnitude, never a giveaway
    // (before pacing, an unknown id answered at once, ~1 ms against ~25).
    assert!(
        unknown * 3 >= wrong && unknown <= wrong * 3 + Duration::from_millis(100),
        "unknown id {unknown:?} against wrong secret {wrong:?}"
    );
}
