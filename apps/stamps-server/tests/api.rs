//! End-to-end: the real binaries on 127.0.0.1, every row of the contract's
//! error table, the seed document's examples, and admin changes while the
//! server runs.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::collections::HashSet;
use std::io::Read;

use common::{Server, json_of, provision};
use serde_json::{Value, json};

const JSON: (&str, &str) = ("Content-Type", "application/json");

/// A server with merchant 1, user 5870 and one static token.
fn provisioned() -> (Server, String) {
    let data = tempfile::tempdir().unwrap();
    let token = provision(data.path());
    (Server::start_in(data, &[]), token)
}

fn assert_error(
    response: reqwest::blocking::Response,
    status: u16,
    code: &str,
) -> (Value, reqwest::header::HeaderMap) {
    let (got, body, headers) = json_of(response);
    assert_eq!(got, status, "{body}");
    assert_eq!(body["error_code"], code, "{body}");
    assert!(body["detail"].is_string(), "{body}");
    assert_eq!(body["error_message"], body["detail"], "{body}");
    if status == 401 {
        let challenge = headers
            .get("www-authenticate")
            .expect("401 without WWW-Authenticate");
        assert!(challenge.to_str().unwrap().starts_with("Bearer"));
    }
    (body, headers)
}

#[test]
fn the_seed_documents_three_examples() {
    let (server, token) = provisioned();

    // 1. get-access-token, JSON, exactly as the seed's curl sends it.
    let jwt = server.access_token(&token);
    let parts: Vec<&str> = jwt.split('.').collect();
    assert_eq!(parts.len(), 3);
    assert_eq!(parts[0], "eyJ0eXAiOiJKV1QiLCJhbGciOiJIUzI1NiJ9");

    // 2. verify-token returns the payload: the seed's keys, in its order.
    let response = server
        .post("/api/auth/verify-token/")
        .header(JSON.0, JSON.1)
        .header("Authorization", format!("Bearer {jwt}"))
        .send()
        .unwrap();
    assert_eq!(response.status(), 200);
    let text = response.text().unwrap();
    let keys: Vec<&str> = ["token_type", "exp", "iat", "jti", "user_id", "merchant_id"].to_vec();
    let positions: Vec<usize> = keys
        .iter()
        .map(|k| text.find(&format!("\"{k}\"")).unwrap())
        .collect();
    assert!(positions.windows(2).all(|w| w[0] < w[1]), "{text}");
    let payload: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(payload["token_type"], "access");
    assert_eq!(payload["user_id"], 5870);
    assert_eq!(payload["merchant_id"], 1);
    assert_eq!(
        payload["exp"].as_u64().unwrap() - payload["iat"].as_u64().unwrap(),
        86_400
    );

    // 3. ping with the static token.
    let response = server
        .post("/api/ping")
        .header(JSON.0, JSON.1)
        .header("Authorization", format!("Token {token}"))
        .send()
        .unwrap();
    let (status, body, _) = json_of(response);
    assert_eq!(status, 200);
    assert_eq!(
        body,
        json!({"pong": {"merchant": "My Merchant", "merchant_id": 1}})
    );
}

#[test]
fn paths_with_and_without_slash_bodies_json_or_form_schemes_in_any_case() {
    let (server, token) = provisioned();
    let jwt = server.access_token(&token);
    for path in ["/api/auth/get-access-token", "/api/auth/get-access-token/"] {
        let form = server
            .post(path)
            .form(&[("token", token.as_str()), ("crm_merchant_id", "1")])
            .send()
            .unwrap();
        assert_eq!(form.status(), 200);
    }
    for path in ["/api/auth/verify-token", "/api/auth/verify-token/"] {
        let response = server
            .post(path)
            .header("Authorization", format!("bearer {jwt}"))
            .send()
            .unwrap();
        assert_eq!(response.status(), 200);
    }
    for path in ["/api/ping", "/api/ping/"] {
        for auth in [
            format!("BEARER {jwt}"),
            format!("token {token}"),
            format!("Token {token}"),
        ] {
            let response = server
                .post(path)
                .header("Authorization", auth)
                .send()
                .unwrap();
            assert_eq!(response.status(), 200);
        }
    }
}

#[test]
fn every_row_of_the_error_table() {
    let (server, token) = provisioned();
    let jwt = server.access_token(&token);
    let get = "/api/auth/get-access-token/";

    // 400: malformed JSON; missing and wrongly typed fields, each named.
    assert_error(
        server
            .post(get)
            .header(JSON.0, JSON.1)
            .body("{")
            .send()
            .unwrap(),
        400,
        "invalid_request",
    );
    let (body, _) = assert_error(
        server
            .post(get)
            .header(JSON.0, JSON.1)
            .body("{}")
            .send()
            .unwrap(),
        400,
        "invalid_request",
    );
    assert!(body["errors"]["token"].is_string() && body["errors"]["crm_merchant_id"].is_string());
    let (body, _) = assert_error(
        server
            .post(get)
            .header(JSON.0, JSON.1)
            .body(r#"{"token": 1, "crm_merchant_id": "x"}"#)
            .send()
            .unwrap(),
        400,
        "invalid_request",
    );
    assert!(body["errors"]["token"].is_string() && body["errors"]["crm_merchant_id"].is_string());

    // 401 not_authenticated: no credentials, or another scheme.
    assert_error(
        server.post("/api/ping").send().unwrap(),
        401,
        "not_authenticated",
    );
    assert_error(
        server
            .post("/api/ping")
            .header("Authorization", "Basic dTpw")
            .send()
            .unwrap(),
        401,
        "not_authenticated",
    );
    assert_error(
        server.post("/api/auth/verify-token/").send().unwrap(),
        401,
        "not_authenticated",
    );

    // 401 invalid_token: one body for garbage, a tampered JWT, a typo'd or
    // unknown static token.
    let mut tampered = jwt.clone().into_bytes();
    let last = tampered.len() - 2;
    tampered[last] = if tampered[last] == b'A' { b'B' } else { b'A' };
    let tampered = String::from_utf8(tampered).unwrap();
    let typo = token.replacen("stmp_", "stmq_", 1);
    let mut bodies = HashSet::new();
    for auth in [
        format!("Bearer {tampered}"),
        "Bearer garbage".to_owned(),
        format!("Token {typo}"),
        "Token stmp_0000000000000000_00000000000000000000000000000000_0000000".to_owned(),
    ] {
        let (body, _) = assert_error(
            server
                .post("/api/ping")
                .header("Authorization", auth)
                .send()
                .unwrap(),
            401,
            "invalid_token",
        );
        bodies.insert(body.to_string());
    }
    let (body, _) = assert_error(
        server
            .post(get)
            .header(JSON.0, JSON.1)
            .body(json!({"token": typo, "crm_merchant_id": 1}).to_string())
            .send()
            .unwrap(),
        401,
        "invalid_token",
    );
    bodies.insert(body.to_string());
    assert_eq!(bodies.len(), 1, "{bodies:?}");
    assert_eq!(body["detail"], "Invalid token");

    // 403: a live token for another merchant, an unknown one included.
    for merchant in [2, 999] {
        assert_error(
            server
                .post(get)
                .header(JSON.0, JSON.1)
                .body(json!({"token": token, "crm_merchant_id": merchant}).to_string())
                .send()
                .unwrap(),
            403,
            "merchant_forbidden",
        );
    }

    // 404, 405 with Allow, OPTIONS.
    assert_error(
        server.post("/api/nothing").send().unwrap(),
        404,
        "not_found",
    );
    assert_error(
        common::client()
            .get(format!("{}/", server.url))
            .send()
            .unwrap(),
        404,
        "not_found",
    );
    for path in [
        "/api/ping",
        "/api/auth/verify-token/",
        "/api/auth/get-access-token",
    ] {
        let (_, headers) = assert_error(
            common::client()
                .get(format!("{}{path}", server.url))
                .send()
                .unwrap(),
            405,
            "method_not_allowed",
        );
        assert_eq!(headers.get("allow").unwrap(), "POST, OPTIONS");
    }
    let options = common::client()
        .request(reqwest::Method::OPTIONS, format!("{}/api/ping", server.url))
        .send()
        .unwrap();
    assert!(options.status().is_success());
    assert_eq!(options.headers().get("allow").unwrap(), "POST, OPTIONS");

    // 413: over 64 KiB, declared or chunked.
    let big = vec![b' '; 65_537];
    assert_error(
        server
            .post(get)
            .header(JSON.0, JSON.1)
            .body(big.clone())
            .send()
            .unwrap(),
        413,
        "payload_too_large",
    );
    let chunked =
        reqwest::blocking::Body::new(std::io::Cursor::new(big.clone()).chain(std::io::empty()));
    assert_error(
        server
            .post(get)
            .header(JSON.0, JSON.1)
            .body(chunked)
            .send()
            .unwrap(),
        413,
        "payload_too_large",
    );
    assert_error(
        server
            .post("/api/ping")
            .header("Authorization", format!("Bearer {jwt}"))
            .body(big)
            .send()
            .unwrap(),
        413,
        "payload_too_large",
    );
    // A declared size is refused before credentials are looked at; a
    // chunked body as soon as it crosses the limit.
    for path in ["/api/ping", "/api/auth/verify-token/"] {
        assert_error(
            server.post(path).body(vec![b' '; 65_537]).send().unwrap(),
            413,
            "payload_too_large",
        );
        assert_error(
            server
                .post(path)
                .header("Authorization", format!("Token {typo}"))
                .body(vec![b' '; 65_537])
                .send()
                .unwrap(),
            413,
            "payload_too_large",
        );
        let big = std::io::Cursor::new(vec![b' '; 65_537]).chain(std::io::empty());
        assert_error(
            server
                .post(path)
                .header("Authorization", format!("Bearer {jwt}"))
                .body(reqwest::blocking::Body::new(big))
                .send()
                .unwrap(),
            413,
            "payload_too_large",
        );
    }
    // Exactly 64 KiB is accepted (as a body; then judged on its content).
    let mut exact = format!(r#"{{"token": "{token}", "crm_merchant_id": 1, "pad": ""#).into_bytes();
    exact.resize(65_536 - 2, b'x');
    exact.extend_from_slice(b"\"}");
    assert_eq!(
        server
            .post(get)
            .header(JSON.0, JSON.1)
            .body(exact)
            .send()
            .unwrap()
            .status(),
        200
    );

    // 415.
    assert_error(
        server
            .post(get)
            .header("Content-Type", "text/plain")
            .body("token=x")
            .send()
            .unwrap(),
        415,
        "unsupported_media_type",
    );

    // 401 token_expired and the rest need time or store changes: see the
    // tests below and tests/lifecycle.rs.
    assert!(
        !server.logs().contains(&token),
        "a static token reached the log"
    );
    assert!(!server.logs().contains(&jwt), "a JWT reached the log");
}

#[test]
fn an_expired_jwt_is_token_expired() {
    let data = tempfile::tempdir().unwrap();
    let token = provision(data.path());
    // A two-second lifetime and no leeway; the token is then expired after
    // at most three seconds, polled in short steps (bounded).
    let server = Server::start_in(
        data,
        &[("STAMPS_JWT__LIFETIME", "2s"), ("STAMPS_JWT__LEEWAY", "0s")],
    );
    let jwt = server.access_token(&token);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let response = server
            .post("/api/auth/verify-token/")
            .header("Authorization", format!("Bearer {jwt}"))
            .send()
            .unwrap();
        if response.status() == 401 {
            assert_error(response, 401, "token_expired");
            break;
        }
        assert_eq!(response.status(), 200);
        assert!(
            std::time::Instant::now() < deadline,
            "the token never expired"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}

#[test]
fn changes_made_with_the_admin_cli_while_the_server_runs_apply_to_the_next_request() {
    let (server, token) = provisioned();
    let jwt = server.access_token(&token);
    let ping = |auth: &str| {
        server
            .post("/api/ping")
            .header("Authorization", auth.to_owned())
            .send()
            .unwrap()
            .status()
            .as_u16()
    };
    let (static_auth, jwt_auth) = (format!("Token {token}"), format!("Bearer {jwt}"));
    assert_eq!((ping(&static_auth), ping(&jwt_auth)), (200, 200));

    // Disable the merchant: both credentials refused at once; enable again.
    server.admin(&["merchant", "disable", "1"]);
    assert_eq!((ping(&static_auth), ping(&jwt_auth)), (401, 401));
    server.admin(&["merchant", "enable", "1"]);
    assert_eq!((ping(&static_auth), ping(&jwt_auth)), (200, 200));

    // Disable the user, likewise.
    server.admin(&["user", "disable", "5870"]);
    assert_eq!((ping(&static_auth), ping(&jwt_auth)), (401, 401));
    server.admin(&["user", "enable", "5870"]);

    // A token created while running works at once; revoking it stops it at once.
    let created = server.admin(&["token", "create", "--user", "5870", "--merchant", "1"]);
    let second = format!("Token {}", created["token"].as_str().unwrap());
    assert_eq!(ping(&second), 200);
    server.admin(&["token", "revoke", created["id"].as_str().unwrap()]);
    assert_eq!(ping(&second), 401);
    assert_eq!(ping(&static_auth), 200);

    // The CLI reads the running server's store, the same as offline, by
    // data directory or by the server's configuration file.
    let listed = server.admin(&["token", "list"]);
    assert_eq!(listed.as_array().unwrap().len(), 2);
    let config = server.data_dir().join("stamps.toml");
    std::fs::write(
        &config,
        format!("data_dir = {:?}\n", server.data_dir().display().to_string()),
    )
    .unwrap();
    let out = std::process::Command::new(common::admin_binary())
        .args([
            "--config",
            config.to_str().unwrap(),
            "--json",
            "merchant",
            "disable",
            "1",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(ping(&static_auth), 401);
}

#[test]
fn two_hundred_concurrent_get_access_token_calls_all_succeed_with_distinct_jtis() {
    let (server, token) = provisioned();
    let url = format!("{}/api/auth/get-access-token/", server.url);
    let body = json!({"token": token, "crm_merchant_id": 1}).to_string();
    let threads: Vec<_> = (0..200)
        .map(|_| {
            let (url, body) = (url.clone(), body.clone());
            std::thread::spawn(move || {
                let response = common::client()
                    .post(url)
                    .header(JSON.0, JSON.1)
                    .body(body)
                    .send()
                    .unwrap();
                let (status, body, _) = json_of(response);
                assert_eq!(status, 200, "{body}");
                body["access_token"].as_str().unwrap().to_owned()
            })
        })
        .collect();
    let jtis: HashSet<String> = threads
        .into_iter()
        .map(|t| {
            let jwt = t.join().unwrap();
            let response = server
                .post("/api/auth/verify-token/")
                .header("Authorization", format!("Bearer {jwt}"))
                .send()
                .unwrap();
            let (_, payload, _) = json_of(response);
            payload["jti"].as_str().unwrap().to_owned()
        })
        .collect();
    assert_eq!(jtis.len(), 200);
}

#[test]
fn the_server_serves_its_openapi_document_without_credentials() {
    let server = Server::start();
    let client = common::client();
    let response = client
        .get(format!("{}/api/openapi.json", server.url))
        .send()
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.headers()["content-type"].to_str().unwrap(),
        "application/json"
    );
    let doc: Value = response.json().unwrap();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3.1."));
    for path in [
        "/api/auth/get-access-token/",
        "/api/auth/verify-token/",
        "/api/ping",
    ] {
        assert!(doc["paths"][path]["post"].is_object(), "{path}");
    }
    // Other methods: 405 with the document path's own Allow.
    let (body, headers) = assert_error(
        client
            .post(format!("{}/api/openapi.json", server.url))
            .send()
            .unwrap(),
        405,
        "method_not_allowed",
    );
    assert_eq!(headers["allow"], "GET, HEAD, OPTIONS", "{body}");
    let head = client
        .head(format!("{}/api/openapi.json/", server.url))
        .send()
        .unwrap();
    assert_eq!(head.status(), 200);
}

#[test]
fn the_forward_authentication_check_answers_any_method_with_the_identity_in_headers() {
    let (server, token) = provisioned();
    let jwt = server.access_token(&token);
    let client = common::client();
    let check = |method: reqwest::Method, path: &str| {
        client.request(method, format!("{}{path}", server.url))
    };
    let (_, claims, _) = json_of(
        server
            .post("/api/auth/verify-token/")
            .header("Authorization", format!("Bearer {jwt}"))
            .send()
            .unwrap(),
    );

    // Any method, with or without the slash, either scheme; any body ignored.
    for method in ["GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"] {
        for path in ["/api/auth/check", "/api/auth/check/"] {
            let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
            let response = check(method.clone(), path)
                .header("Authorization", format!("Bearer {jwt}"))
                .body("ignored")
                .send()
                .unwrap();
            let (status, body, headers) = json_of(response);
            assert_eq!(status, 200, "{method} {path}: {body}");
            assert_eq!(body, json!({"user_id": 5870, "merchant_id": 1}));
            assert_eq!(headers["x-stamps-user-id"], "5870");
            assert_eq!(headers["x-stamps-merchant-id"], "1");
            assert_eq!(headers["x-stamps-token-kind"], "jwt");
            assert_eq!(headers["x-stamps-jti"], claims["jti"].as_str().unwrap());
        }
    }
    let response = check(reqwest::Method::HEAD, "/api/auth/check")
        .header("Authorization", format!("Token {token}"))
        .send()
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["x-stamps-token-kind"], "static");
    assert!(!response.headers().contains_key("x-stamps-jti"));

    // Restricted to one merchant by the proxy's header.
    let restricted = |merchant: &str| {
        check(reqwest::Method::GET, "/api/auth/check")
            .header("Authorization", format!("Token {token}"))
            .header("X-Stamps-Merchant", merchant)
            .send()
            .unwrap()
    };
    assert_eq!(restricted("1").status(), 200);
    assert_error(restricted("2"), 403, "merchant_forbidden");
    let (body, _) = assert_error(restricted("one"), 400, "invalid_request");
    assert!(body["errors"]["X-Stamps-Merchant"].is_string(), "{body}");

    // Refusals as everywhere else; a body over the limit is 413, unread.
    let refused = |authorization: Option<&str>| {
        let request = check(reqwest::Method::GET, "/api/auth/check");
        match authorization {
            Some(value) => request.header("Authorization", value),
            None => request,
        }
        .send()
        .unwrap()
    };
    assert_error(refused(None), 401, "not_authenticated");
    assert_error(refused(Some("Bearer not.a.jwt")), 401, "invalid_token");
    assert_error(refused(Some("Token stmp_nope")), 401, "invalid_token");
    let big = check(reqwest::Method::POST, "/api/auth/check")
        .header("Authorization", format!("Bearer {jwt}"))
        .body(vec![b'x'; 70_000])
        .send()
        .unwrap();
    assert_error(big, 413, "payload_too_large");
}
