//! Runs the procedures of docs/OPERATIONS.md as written, in bash, against
//! servers of this test's own: back up, restore into a new data directory
//! and serve it, rotate the key, respond to a leak. `stamps-admin` is the
//! binary under test (first on PATH).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::path::Path;
use std::process::Command;

use common::{Server, admin_binary, doc_block, provision};

/// Runs a procedure with `vars` set; returns its stdout.
fn run(name: &str, vars: &[(&str, &str)], bin: &Path) -> String {
    let lines = doc_block("docs/OPERATIONS.md", &format!("procedure:{name}"));
    let script = format!("set -euo pipefail\n{}\n", lines.join("\n"));
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let out = Command::new("bash")
        .arg("-c")
        .arg(&script)
        .envs(vars.iter().copied())
        .env("PATH", path)
        .env_remove("STAMPS_JWT__SECRET")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{name}:\n{script}\nstdout:\n{stdout}\nstderr:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// A directory holding `stamps-admin`, for PATH.
fn admin_on_path() -> tempfile::TempDir {
    let bin = tempfile::tempdir().unwrap();
    std::os::unix::fs::symlink(admin_binary(), bin.path().join("stamps-admin")).unwrap();
    bin
}

/// A token an existing deployment issued, imported into every test server.
const IMPORTED: &str = "9944b09199c62bcf9418ad846dd0e4bbdfc6ee4b";

/// A server with a generated secret (the default), as in production; its
/// static token and a JWT it issued; and the imported token [`IMPORTED`].
fn production_like_server() -> (Server, String, String) {
    let data = tempfile::tempdir().unwrap();
    let token = provision(data.path());
    let server = Server::start_in(data, &[("STAMPS_JWT__SECRET", "")]);
    let jwt = server.access_token(&token);
    let out = common::admin_output_with_input(
        server.data_dir(),
        &["token", "import", "--user", "5870", "--merchant", "1"],
        IMPORTED,
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(server.ping(&format!("Token {IMPORTED}")), 200);
    (server, token, jwt)
}

#[test]
fn backup_restore_rotation_and_leak_response_work_as_documented() {
    let bin = admin_on_path();
    let work = tempfile::tempdir().unwrap();
    let backup = work.path().join("backup");
    let new_data = work.path().join("restored");

    let (server, token, old_jwt) = production_like_server();
    let data_dir = server.data_dir().to_str().unwrap().to_owned();

    run(
        "backup",
        &[("DATA", &data_dir), ("BACKUP", backup.to_str().unwrap())],
        bin.path(),
    );
    let mode = |p: &Path| {
        std::os::unix::fs::PermissionsExt::mode(&p.metadata().unwrap().permissions()) & 0o777
    };
    assert_eq!(mode(&backup.join("stamps.jsonl")), 0o600);

    let url = server.url.clone();
    run(
        "rotate",
        &[
            ("DATA", &data_dir),
            ("URL", &url),
            ("TOKEN", &token),
            ("OLD_JWT", &old_jwt),
        ],
        bin.path(),
    );

    // Restore into a new directory, serve it: the static token and the
    // JWT signed with the backed-up secret both work.
    run(
        "restore",
        &[
            ("NEW", new_data.to_str().unwrap()),
            ("BACKUP", backup.to_str().unwrap()),
        ],
        bin.path(),
    );
    let restored_dir = tempfile::TempDir::with_prefix_in("served", work.path()).unwrap();
    std::fs::remove_dir(restored_dir.path()).unwrap();
    std::fs::rename(&new_data, restored_dir.path()).unwrap();
    let restored = Server::start_in(restored_dir, &[("STAMPS_JWT__SECRET", "")]);
    assert_eq!(restored.ping(&format!("Token {token}")), 200);
    assert_eq!(restored.ping(&format!("Token {IMPORTED}")), 200);
    assert_eq!(restored.ping(&format!("Bearer {old_jwt}")), 200);
    drop(restored);

    // A leak: the token is found live, revoked, and the user's JWTs too.
    let out = run(
        "leak",
        &[("DATA", &data_dir), ("LEAKED", &token)],
        bin.path(),
    );
    assert!(
        out.contains(r#""status":"live","revoked_now":true"#),
        "{out}"
    );
    assert_eq!(server.ping(&format!("Token {token}")), 401);
    assert_eq!(server.ping(&format!("Bearer {old_jwt}")), 401);
    assert!(out.contains("jwt.revoke_all"), "{out}");
}

#[test]
fn moving_from_sled_to_postgres_works_as_documented() {
    let Some(base) = stamps_store_postgres::testing::base_url() else {
        return;
    };
    let database = stamps_store_postgres::testing::scratch_url_on(&base);
    let bin = admin_on_path();
    let work = tempfile::tempdir().unwrap();
    let export = work.path().join("stamps.jsonl");
    let config = work.path().join("replica.toml");

    let (server, token, old_jwt) = production_like_server();
    let data_dir = server.data_dir().to_str().unwrap().to_owned();
    run(
        "to-postgres",
        &[
            ("DATA", &data_dir),
            ("EXPORT", export.to_str().unwrap()),
            ("DATABASE_URL", &database),
            ("CONFIG", config.to_str().unwrap()),
        ],
        bin.path(),
    );
    drop(server);

    // Two replicas on the configuration the procedure wrote.
    let replicas: Vec<Server> = (0..2)
        .map(|_| {
            Server::start_with_config(
                tempfile::tempdir().unwrap(),
                &config,
                &[("STAMPS_JWT__SECRET", "")],
            )
        })
        .collect();
    for replica in &replicas {
        assert!(replica.logs().contains("store: PostgreSQL"));
        assert_eq!(replica.ping(&format!("Token {token}")), 200);
        assert_eq!(
            replica.ping(&format!("Token {IMPORTED}")),
            200,
            "imported tokens move too"
        );
        assert_eq!(
            replica.ping(&format!("Bearer {old_jwt}")),
            200,
            "old JWTs stay valid"
        );
        let jwt = replica.access_token(&token);
        for other in &replicas {
            assert_eq!(other.ping(&format!("Bearer {jwt}")), 200);
        }
    }
}

#[test]
fn moving_from_django_rest_framework_works_as_documented() {
    let Some(base) = stamps_store_postgres::testing::base_url() else {
        return;
    };
    // The old deployment: Django's users, DRF's tokens, the CRM's
    // merchants and memberships, in a database of their own.
    let old = stamps_store_postgres::testing::scratch_url_on(&base);
    let mut client = postgres::Client::connect(&old, postgres::NoTls).unwrap();
    client
        .batch_execute(
            "CREATE TABLE auth_user (id integer PRIMARY KEY, username text NOT NULL);
             CREATE TABLE authtoken_token (key varchar(40) PRIMARY KEY,
                 created timestamptz NOT NULL DEFAULT now(),
                 user_id integer NOT NULL UNIQUE REFERENCES auth_user (id));
             CREATE TABLE crm_merchant (id integer PRIMARY KEY, name text NOT NULL);
             CREATE TABLE crm_membership (user_id integer PRIMARY KEY, merchant_id integer NOT NULL);
             INSERT INTO crm_merchant VALUES (1, 'My Merchant'), (2, 'Other Merchant');
             INSERT INTO auth_user VALUES (5870, 'user5870'), (5871, 'user5871'), (5872, 'no merchant');
             INSERT INTO crm_membership VALUES (5870, 1), (5871, 2);
             INSERT INTO authtoken_token (key, user_id) VALUES
                 ('9944b09199c62bcf9418ad846dd0e4bbdfc6ee4b', 5870),
                 ('23095sgtr95402mkdls954002', 5871),
                 ('0000000000000000000000000000000000000000', 5872);",
        )
        .unwrap();

    // A new server, empty, running: the procedure provisions it live.
    let server = Server::start_in(tempfile::tempdir().unwrap(), &[]);
    let bin = admin_on_path();
    let data_dir = server.data_dir().to_str().unwrap().to_owned();
    let out = run(
        "from-drf",
        &[
            ("DATA", &data_dir),
            ("OLD_DATABASE_URL", &old),
            ("URL", &server.url),
        ],
        bin.path(),
    );
    assert!(out.contains(r#""merchant":"My Merchant""#), "{out}");

    // Every client as it was: the DRF key, and the seed's token through
    // the seed's own curl body, for the merchant each user is for.
    assert_eq!(
        server.ping("Token 9944b09199c62bcf9418ad846dd0e4bbdfc6ee4b"),
        200
    );
    let response = server
        .post("/api/auth/get-access-token/")
        .header("Content-Type", "application/json")
        .body(r#"{"token": "23095sgtr95402mkdls954002", "crm_merchant_id": 2}"#)
        .send()
        .unwrap();
    assert_eq!(response.status().as_u16(), 200);
    // The user without a merchant was left out, as the procedure says.
    assert_eq!(
        server.ping("Token 0000000000000000000000000000000000000000"),
        401
    );
    // Nothing of the tokens in the server's log.
    assert!(
        !server
            .logs()
            .contains("9944b09199c62bcf9418ad846dd0e4bbdfc6ee4b")
    );
}
