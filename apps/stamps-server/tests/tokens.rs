//! End-to-end: static tokens beyond the issued kind's basics, with the real
//! binaries on a running server: imported tokens and expiry (CONTRACT §2),
//! and the times the admin command line reads (RFC 3339 with any offset).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::time::Duration;

use common::{Server, eventually, json_of, provision};

fn started() -> (Server, String) {
    let data = tempfile::tempdir().unwrap();
    let token = provision(data.path());
    (Server::start_in(data, &[]), token)
}

/// The status and `error_code` of a ping with this static token.
fn ping(server: &Server, token: &str) -> (u16, String) {
    let response = server
        .post("/api/ping")
        .header("Authorization", format!("Token {token}"))
        .send()
        .unwrap();
    let (status, body, _) = json_of(response);
    (status, body["error_code"].as_str().unwrap_or("").to_owned())
}

/// The Stamps docs' example token, and a Django REST framework key.
const SEED_TOKEN: &str = "23095sgtr95402mkdls954002";
const DRF_KEY: &str = "9944b09199c62bcf9418ad846dd0e4bbdfc6ee4b";

#[test]
fn tokens_clients_already_hold_are_imported_while_the_server_runs_and_work_unchanged() {
    let (server, issued) = started();
    let data = server.data_dir();
    // Not accepted before the import (and no lookup is made for them).
    assert_eq!(ping(&server, SEED_TOKEN), (401, "invalid_token".to_owned()));
    let out = common::admin_output_with_input(
        data,
        &[
            "--json",
            "token",
            "import",
            "--user",
            "5870",
            "--merchant",
            "1",
            "--label",
            "pos",
        ],
        &format!("{SEED_TOKEN}\n"),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let record: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let id = record["id"].as_str().unwrap().to_owned();

    // The seed's curl line, its body byte for byte, at once.
    let response = server
        .post("/api/auth/get-access-token/")
        .header("Content-Type", "application/json")
        .body(r#"{"token": "23095sgtr95402mkdls954002", "crm_merchant_id": 1}"#)
        .send()
        .unwrap();
    let (status, body, _) = json_of(response);
    assert_eq!(status, 200, "{body}");
    let jwt = body["access_token"].as_str().unwrap().to_owned();
    let verified = server
        .post("/api/auth/verify-token/")
        .header("Authorization", format!("Bearer {jwt}"))
        .send()
        .unwrap();
    assert_eq!(json_of(verified).1["user_id"], 5870);
    // Form-encoded too; Token on ping; another merchant is 403.
    let form = server
        .post("/api/auth/get-access-token/")
        .header("Content-Type", "application/x-www-form-urlencoded")
        .body(format!("token={SEED_TOKEN}&crm_merchant_id=1"))
        .send()
        .unwrap();
    assert_eq!(form.status().as_u16(), 200);
    assert_eq!(ping(&server, SEED_TOKEN), (200, String::new()));
    let other = server
        .post("/api/auth/get-access-token/")
        .header("Content-Type", "application/json")
        .body(format!(
            r#"{{"token": "{SEED_TOKEN}", "crm_merchant_id": 2}}"#
        ))
        .send()
        .unwrap();
    assert_eq!(other.status().as_u16(), 403);
    // Issued tokens are unaffected; an unknown text is refused.
    assert_eq!(ping(&server, &issued), (200, String::new()));
    assert_eq!(ping(&server, "23095sgtr95402mkdls954003").0, 401);

    // A file of them, all or nothing, while the server runs.
    let lines = format!("{{\"token\": \"{DRF_KEY}\", \"user_id\": 5870, \"merchant_id\": 1}}\n");
    let out =
        common::admin_output_with_input(data, &["--json", "token", "import-file", "-"], &lines);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(ping(&server, DRF_KEY), (200, String::new()));

    // Revoked by its public id: refused at once, from the cache too.
    server.admin(&["token", "revoke", &id]);
    assert_eq!(ping(&server, SEED_TOKEN), (401, "invalid_token".to_owned()));
    assert_eq!(server.try_access_token(SEED_TOKEN).0, 401);
    assert_eq!(ping(&server, DRF_KEY).0, 200);

    // Named by its id in the audit trail; the text nowhere.
    let audit = server.admin(&["audit"]).to_string();
    assert!(audit.contains(&id) && audit.contains("token.import"));
    let (status, data, logs) = server.terminate();
    assert!(status.success());
    for text in [SEED_TOKEN, DRF_KEY] {
        assert!(
            !audit.contains(text) && !logs.contains(text),
            "{text} shown"
        );
    }
    drop(data);
}

#[test]
fn a_token_created_to_expire_stops_at_its_instant_with_no_admin_action() {
    let (server, _) = started();
    let created = server.admin(&[
        "token",
        "create",
        "--user",
        "5870",
        "--merchant",
        "1",
        "--expires-in",
        "2s",
    ]);
    let token = created["token"].as_str().unwrap().to_owned();
    let expires_at = created["expires_at"].as_str().unwrap().to_owned();
    assert!(expires_at.ends_with('Z'), "{expires_at}");
    assert_eq!(created["last_used_at"], serde_json::Value::Null);
    // Live now, proven and cached by the server.
    assert_eq!(ping(&server, &token), (200, String::new()));
    // Then refused at its instant, from the cache: 401 token_expired.
    eventually(Duration::from_secs(10), "the token expires", || {
        ping(&server, &token) == (401, "token_expired".to_owned())
    });
    assert_eq!(server.try_access_token(&token).0, 401);
    // Its id with a wrong secret (a valid checksum: the store and argon2
    // are asked) is no more than invalid: expiry tells a guesser nothing.
    let id = stamps_core::StaticToken::parse_id(&token).unwrap();
    let wrong = stamps_core::StaticToken::from_parts(id, &"k".repeat(32)).unwrap();
    let wrong = stamps_core::ExposeSecret::expose_secret(&wrong.to_secret_string()).to_owned();
    assert_eq!(ping(&server, &wrong).0, 401);
    assert_ne!(ping(&server, &wrong).1, "token_expired");

    let listed = server.admin(&["token", "list"]);
    let row = listed
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["id"] == created["id"])
        .unwrap()
        .clone();
    assert_eq!(row["expires_at"].as_str(), Some(expires_at.as_str()));
    let checked = common::admin_output_with_input(
        server.data_dir(),
        &["--json", "token", "check", "-"],
        &token,
    );
    let checked: serde_json::Value = serde_json::from_slice(&checked.stdout).unwrap();
    assert_eq!(checked["status"], "expired");
}

#[test]
fn expiry_and_since_are_rfc3339_instants_with_any_offset() {
    let (server, _) = started();
    let created = server.admin(&[
        "token",
        "create",
        "--user",
        "5870",
        "--merchant",
        "1",
        "--expires-at",
        "2100-01-01T05:30:00+05:30",
    ]);
    assert_eq!(created["expires_at"], "2100-01-01T00:00:00Z");
    // audit --since with an offset (only Z was read before).
    let events = server.admin(&["audit", "--since", "2000-01-01T05:30:00+05:30"]);
    assert!(!events.as_array().unwrap().is_empty());

    let refused = |args: &[&str], says: &str| {
        let out = common::admin_output(server.data_dir(), args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?}");
        assert!(stderr.contains(says), "{args:?}: {stderr}");
    };
    let create = ["token", "create", "--user", "5870", "--merchant", "1"];
    refused(
        &[&create[..], &["--expires-at", "2001-01-01T00:00:00Z"]].concat(),
        "the expiry must be in the future",
    );
    refused(
        &[&create[..], &["--expires-at", "next tuesday"]].concat(),
        "RFC 3339",
    );
    refused(
        &[
            &create[..],
            &["--expires-in", "1h", "--expires-at", "2100-01-01T00:00:00Z"],
        ]
        .concat(),
        "cannot be used with",
    );
    // Nothing was created by the refusals: the provisioned token and one.
    assert_eq!(
        server.admin(&["token", "list"]).as_array().unwrap().len(),
        2
    );
}

/// The `last_used_at` of token `id` in `token list`, or null.
fn last_used(server: &Server, id: &str) -> serde_json::Value {
    let listed = server.admin(&["token", "list"]);
    listed
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["id"] == id)
        .map(|t| t["last_used_at"].clone())
        .unwrap()
}

#[test]
fn the_last_use_is_written_within_a_minute_and_at_a_stop() {
    let (server, issued) = started();
    let id = stamps_core::StaticToken::parse_id(&issued)
        .unwrap()
        .to_string();
    let unused = server.admin(&["token", "create", "--user", "5870", "--merchant", "1"]);
    let unused_id = unused["id"].as_str().unwrap().to_owned();
    assert_eq!(last_used(&server, &id), serde_json::Value::Null);

    // A use is noted in memory and written by the server within its
    // interval (30 s): no store write per request.
    assert_eq!(ping(&server, &issued), (200, String::new()));
    eventually(Duration::from_secs(45), "the last use is written", || {
        last_used(&server, &id).is_string()
    });
    assert_eq!(last_used(&server, &unused_id), serde_json::Value::Null);

    // A later use is written when the server stops, not lost.
    let first = last_used(&server, &id);
    let jwt = server.access_token(unused["token"].as_str().unwrap());
    assert!(!jwt.is_empty());
    let data = {
        let (status, data, _) = server.terminate();
        assert!(status.success());
        data
    };
    let listed = common::admin_json(data.path(), &["token", "list"]);
    let row = |id: &str| {
        listed
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["id"] == id)
            .unwrap()
            .clone()
    };
    assert!(row(&unused_id)["last_used_at"].is_string());
    assert!(row(&id)["last_used_at"].as_str() >= first.as_str());
}
