//! End-to-end: JWT revocation, key rotation, `jwt inspect`, `token check`
//! and the audit trail, with the real binaries, on a running server.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::process::Output;

use common::{SECRET, Server, provision};
use serde_json::Value;
use stamps_core::{ExpiryRules, JwtCodec, KeySet, SigningKey};

fn started() -> (Server, String) {
    let data = tempfile::tempdir().unwrap();
    let token = provision(data.path());
    (Server::start_in(data, &[]), token)
}

/// `stamps-admin --data-dir <data> ARGS`, with `stdin` fed to it.
fn admin_with_stdin(server: &Server, args: &[&str], stdin: &str) -> Output {
    common::admin_output_with_input(server.data_dir(), args, stdin)
}

fn json(output: &Output) -> Value {
    serde_json::from_slice(&output.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&output.stdout)))
}

fn jti_of(server: &Server, jwt: &str) -> String {
    let inspected = admin_with_stdin(server, &["--json", "jwt", "inspect", "-"], jwt);
    json(&inspected)["claims"]["jti"]
        .as_str()
        .unwrap()
        .to_owned()
}

fn bearer(jwt: &str) -> String {
    format!("Bearer {jwt}")
}

#[test]
fn a_revoked_jti_is_refused_at_once_by_the_running_server() {
    let (server, token) = started();
    let revoked = server.access_token(&token);
    let kept = server.access_token(&token);
    assert_eq!(server.ping(&bearer(&revoked)), 200);

    let jti = jti_of(&server, &revoked);
    let answer = server.admin(&["jwt", "revoke", &jti]);
    assert_eq!(
        answer["target"],
        serde_json::json!({"kind": "jti", "jti": jti})
    );

    assert_eq!(server.ping(&bearer(&revoked)), 401);
    assert_eq!(server.ping(&bearer(&kept)), 200);
    let verify = server
        .post("/api/auth/verify-token/")
        .header("Authorization", bearer(&revoked))
        .send()
        .unwrap();
    let (status, body, _) = common::json_of(verify);
    assert_eq!(
        (status, body["error_code"].as_str()),
        (401, Some("invalid_token"))
    );

    // Still refused after a restart.
    let (_, data, _) = server.terminate();
    let server = Server::start_in(data, &[]);
    assert_eq!(server.ping(&bearer(&revoked)), 401);
    assert_eq!(server.ping(&bearer(&kept)), 200);
}

#[test]
fn revoke_all_refuses_earlier_tokens_of_the_user_or_merchant_and_new_ones_work() {
    for whose in [["--user", "5870"], ["--merchant", "1"]] {
        let (server, token) = started();
        let before = server.access_token(&token);
        let answer = server.admin(&["jwt", "revoke-all", whose[0], whose[1]]);
        assert!(answer["revoked_at"].is_string(), "{answer}");
        assert_eq!(server.ping(&bearer(&before)), 401, "{whose:?}");
        // A token asked for right away (maybe in the same second) works.
        let after = server.access_token(&token);
        assert_eq!(server.ping(&bearer(&after)), 200, "{whose:?}");
        // Static tokens are not JWTs: unaffected.
        assert_eq!(server.ping(&format!("Token {token}")), 200);
    }
    // Exactly one of --user and --merchant.
    let (server, _) = started();
    let out = common::admin_output(server.data_dir(), &["jwt", "revoke-all"]);
    assert!(!out.status.success());
    let out = common::admin_output(server.data_dir(), &["jwt", "revoke-all", "--user", "9"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("no user with id 9"));
    let out = common::admin_output(server.data_dir(), &["jwt", "revoke", "not-a-jti"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("32 lowercase hexadecimal"));
}

#[test]
fn a_rotated_key_signs_at_once_and_after_restart_while_old_tokens_keep_working() {
    let (server, token) = started();
    let old = server.access_token(&token);
    let rotated = server.admin(&["key", "rotate"]);
    assert_eq!(rotated["id"], 1);
    assert!(
        !rotated.to_string().contains("key_hex"),
        "a key is never printed: {rotated}"
    );

    let configured = JwtCodec::new(
        KeySet::new(SigningKey::new(SECRET.as_bytes().to_vec()).unwrap()),
        ExpiryRules::default(),
    );
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let new = server.access_token(&token);
    // The header is byte-identical; the signature is not the configured key's.
    assert_eq!(new.split('.').next(), old.split('.').next());
    assert!(configured.verify(&old, now).is_ok());
    assert!(configured.verify(&new, now).is_err());
    assert_eq!(server.ping(&bearer(&new)), 200);
    assert_eq!(server.ping(&bearer(&old)), 200);

    let (_, data, _) = server.terminate();
    let server = Server::start_in(data, &[]);
    let after_restart = server.access_token(&token);
    assert!(configured.verify(&after_restart, now).is_err());
    for jwt in [&old, &new, &after_restart] {
        assert_eq!(server.ping(&bearer(jwt)), 200);
    }
}

#[test]
fn jwt_inspect_says_why_a_token_is_or_is_not_valid() {
    let (server, token) = started();
    let jwt = server.access_token(&token);

    let valid = admin_with_stdin(&server, &["--json", "jwt", "inspect", "-"], &jwt);
    assert!(valid.status.success());
    let report = json(&valid);
    assert_eq!(report["valid"], true);
    assert_eq!(
        report["header"],
        serde_json::json!({"typ": "JWT", "alg": "HS256"})
    );
    assert_eq!(report["claims"]["user_id"], 5870);

    // A changed signature. The first character of the signature is changed,
    // not the last: the last one of 43 carries two padding bits, so some
    // replacements there are non-canonical base64 ("malformed"), not a bad
    // signature.
    let (rest, signature) = jwt.rsplit_once('.').unwrap();
    let first = if signature.starts_with('A') { 'B' } else { 'A' };
    let tampered = format!("{rest}.{first}{}", &signature[1..]);
    let bad = admin_with_stdin(&server, &["--json", "jwt", "inspect", "-"], &tampered);
    assert_eq!(bad.status.code(), Some(1));
    assert_eq!(json(&bad)["reason"], "bad signature");
    assert!(String::from_utf8_lossy(&bad.stderr).starts_with("error: the token is not valid"));

    // Garbage, and a revoked token.
    let garbage = admin_with_stdin(&server, &["--json", "jwt", "inspect", "-"], "abc");
    assert_eq!(json(&garbage)["reason"], "malformed");
    server.admin(&["user", "disable", "5870"]);
    let disabled = admin_with_stdin(&server, &["--json", "jwt", "inspect", "-"], &jwt);
    assert_eq!(json(&disabled)["reason"], "user 5870 is disabled");
    server.admin(&["user", "enable", "5870"]);
    server.admin(&["jwt", "revoke-all", "--merchant", "1"]);
    let revoked = admin_with_stdin(&server, &["jwt", "inspect", "-"], &jwt);
    assert_eq!(revoked.status.code(), Some(1));
    let text = String::from_utf8_lossy(&revoked.stdout);
    assert!(
        text.contains("not valid: revoked: every JWT for merchant 1"),
        "{text}"
    );
}

#[test]
fn token_check_tells_a_live_leaked_token_and_revokes_it_on_request() {
    let (server, token) = started();
    let secret_part = token.split('_').nth(2).unwrap().to_owned();

    let live = admin_with_stdin(&server, &["--json", "token", "check", "-"], &token);
    assert!(live.status.success());
    let report = json(&live);
    assert_eq!(report["status"], "live");
    assert_eq!(report["revoked_now"], false);
    assert!(!String::from_utf8_lossy(&live.stdout).contains(&secret_part));

    // Same id, another secret (a valid checksum): not this token.
    let other = stamps_core::StaticToken::from_parts(
        stamps_core::StaticToken::parse(&token)
            .unwrap()
            .id()
            .to_owned(),
        stamps_core::StaticToken::generate()
            .secret()
            .expose_secret(),
    )
    .unwrap();
    let other = stamps_core::ExposeSecret::expose_secret(&other.to_secret_string()).to_owned();
    let wrong = admin_with_stdin(
        &server,
        &["--json", "token", "check", "--revoke", "-"],
        &other,
    );
    assert_eq!(wrong.status.code(), Some(1));
    assert_eq!(json(&wrong)["status"], "wrong_secret");
    assert_eq!(json(&wrong)["revoked_now"], false);
    assert_eq!(server.ping(&format!("Token {token}")), 200);

    let malformed = admin_with_stdin(&server, &["--json", "token", "check", "-"], "stmp_nope");
    assert_eq!(json(&malformed)["status"], "malformed");

    let revoked = admin_with_stdin(
        &server,
        &["--json", "token", "check", "--revoke", "-"],
        &token,
    );
    assert!(revoked.status.success());
    assert_eq!(json(&revoked)["revoked_now"], true);
    assert_eq!(server.ping(&format!("Token {token}")), 401);
    let again = admin_with_stdin(&server, &["--json", "token", "check", "-"], &token);
    assert_eq!(json(&again)["status"], "revoked");
}

#[test]
fn the_audit_trail_records_issuance_revocation_rotation_and_admin_changes_without_secrets() {
    let (server, token) = started();
    let jwt = server.access_token(&token);
    let jti = jti_of(&server, &jwt);
    server.admin(&["jwt", "revoke", &jti]);
    server.admin(&["key", "rotate"]);
    server.admin(&["merchant", "disable", "1"]);
    let id = token.split('_').nth(1).unwrap();
    server.admin(&["token", "revoke", id]);

    // Issuance is written in the background: poll, bounded.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let events = loop {
        let events = server.admin(&["audit"]);
        let has_issue = events
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["action"] == "jwt.issue");
        if has_issue || std::time::Instant::now() > deadline {
            break events;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    let actions: Vec<&str> = events
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    for expected in [
        "merchant.add",
        "user.add",
        "token.create",
        "jwt.issue",
        "jwt.revoke",
        "key.rotate",
        "merchant.disable",
        "token.revoke",
    ] {
        assert!(
            actions.contains(&expected),
            "{expected} missing from {actions:?}"
        );
    }
    let event = |action: &str| {
        events
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["action"] == action)
            .unwrap()
            .clone()
    };
    let issue = event("jwt.issue");
    assert_eq!(issue["actor"], "api 127.0.0.1");
    assert!(issue["subject"].as_str().unwrap().contains(&jti));
    let admin_event = event("key.rotate");
    assert!(
        admin_event["actor"]
            .as_str()
            .unwrap()
            .starts_with("stamps-admin uid=")
    );

    let text = events.to_string();
    let secret_part = token.split('_').nth(2).unwrap();
    assert!(
        !text.contains(secret_part),
        "a static token secret in the audit trail"
    );
    assert!(
        !text.contains(jwt.split('.').nth(2).unwrap()),
        "a JWT in the audit trail"
    );

    // --since filters; a bad --since is a clear error.
    assert_eq!(
        server.admin(&["audit", "--since", "2999-01-01T00:00:00Z"]),
        serde_json::json!([])
    );
    assert!(
        !server
            .admin(&["audit", "--since", "1h"])
            .as_array()
            .unwrap()
            .is_empty()
    );
    let out = common::admin_output(server.data_dir(), &["audit", "--since", "yesterday-ish"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("RFC 3339"));
}

/// The actions in the audit trail of `data`.
fn audit_actions(data: &std::path::Path) -> Vec<String> {
    common::admin_json(data, &["audit"])
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap().to_owned())
        .collect()
}

#[test]
fn events_past_the_audit_retention_are_deleted_by_the_server() {
    let data = tempfile::tempdir().unwrap();
    let token = provision(data.path());
    let server = Server::start_in(data, &[("STAMPS_AUDIT__RETENTION", "2s")]);
    server.access_token(&token);
    // Written within a moment, then deleted once two seconds old (the
    // server prunes every second with this retention).
    common::eventually(
        std::time::Duration::from_secs(10),
        "the JWT issued is in the audit trail",
        || audit_actions(server.data_dir()).contains(&"jwt.issue".to_owned()),
    );
    common::eventually(
        std::time::Duration::from_secs(15),
        "the audit trail is emptied past its retention",
        || audit_actions(server.data_dir()).is_empty(),
    );
}

#[test]
fn with_audit_jwt_issued_off_jwts_issued_are_not_recorded_but_admin_changes_are() {
    let data = tempfile::tempdir().unwrap();
    let token = provision(data.path());
    let server = Server::start_in(data, &[("STAMPS_AUDIT__JWT_ISSUED", "false")]);
    let jwt = server.access_token(&token);
    server.admin(&["jwt", "revoke", &jti_of(&server, &jwt)]);
    // A clean stop writes everything queued: nothing was.
    let (status, data, _) = server.terminate();
    assert!(status.success());
    let actions = audit_actions(data.path());
    assert!(actions.contains(&"jwt.revoke".to_owned()), "{actions:?}");
    assert!(!actions.contains(&"jwt.issue".to_owned()), "{actions:?}");
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// A JWT signed with the test servers' configured secret, with these times.
fn forged(iat: u64, exp: u64) -> String {
    let codec = JwtCodec::new(
        KeySet::new(SigningKey::new(SECRET.as_bytes().to_vec()).unwrap()),
        ExpiryRules::default(),
    );
    let mut claims = stamps_core::Claims::new(
        5870,
        1,
        iat,
        stamps_core::Jti::random(),
        &ExpiryRules::default(),
    );
    claims.exp = exp;
    codec.sign(&claims)
}

#[test]
fn a_retired_key_forges_nothing_new_and_drop_previous_ends_every_earlier_key() {
    // No leeway: "after the retirement" is the next second.
    let data = tempfile::tempdir().unwrap();
    let token = provision(data.path());
    let server = Server::start_in(data, &[("STAMPS_JWT__LEEWAY", "0s")]);
    let day = 86_400;
    // The configured key signs; a token that lives longer than the
    // lifetime is refused whoever signed it.
    let now = unix_now();
    assert_eq!(server.ping(&bearer(&forged(now, now + day))), 200);
    assert_eq!(server.ping(&bearer(&forged(now, u64::MAX))), 401);
    assert_eq!(server.ping(&bearer(&forged(now, now + day + 1))), 401);

    let before = unix_now();
    let issued_before = server.access_token(&token);
    server.admin(&["key", "rotate"]);
    let after = unix_now();
    // Signed by the configured key before the rotation: still valid.
    assert_eq!(server.ping(&bearer(&issued_before)), 200);
    assert_eq!(server.ping(&bearer(&forged(before, before + day))), 200);
    // Forged with it once it was retired: refused.
    common::eventually(
        std::time::Duration::from_secs(3),
        "the clock to pass the rotation",
        || unix_now() > after,
    );
    let late = unix_now();
    assert_eq!(server.ping(&bearer(&forged(late, late + day))), 401);
    // jwt inspect, with the server's settings, says why.
    let inspected = std::process::Command::new(common::admin_binary())
        .args(common::store_args(server.data_dir()))
        .env("STAMPS_JWT__SECRET", SECRET)
        .env("STAMPS_JWT__LEEWAY", "0s")
        .args(["--json", "jwt", "inspect", &forged(late, late + day)])
        .output()
        .unwrap();
    let inspected = json(&inspected);
    assert_eq!(inspected["valid"], false, "{inspected}");
    assert!(
        inspected["reason"].as_str().unwrap().contains("retired"),
        "{inspected}"
    );

    // The emergency: every earlier key, the configured one included, ends.
    let signed_by_key_1 = server.access_token(&token);
    let rotated = server.admin(&["key", "rotate", "--drop-previous"]);
    assert_eq!(rotated["drops_previous"], true, "{rotated}");
    for jwt in [
        &issued_before,
        &signed_by_key_1,
        &forged(before, before + day),
    ] {
        assert_eq!(server.ping(&bearer(jwt)), 401);
    }
    let fresh = server.access_token(&token);
    assert_eq!(server.ping(&bearer(&fresh)), 200);
    // And so it stays after a restart.
    let (_, data, _) = server.terminate();
    let server = Server::start_in(data, &[("STAMPS_JWT__LEEWAY", "0s")]);
    assert_eq!(server.ping(&bearer(&fresh)), 200);
    assert_eq!(server.ping(&bearer(&signed_by_key_1)), 401);
    assert_eq!(server.ping(&bearer(&issued_before)), 401);
}
