//! End-to-end: start, configuration errors, signals, crash and restart.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::process::Command;

use common::{Server, admin_json, provision, server_binary};

#[test]
fn sigterm_stops_gracefully_with_exit_code_zero() {
    let data = tempfile::tempdir().unwrap();
    let token = provision(data.path());
    let server = Server::start_in(data, &[]);
    assert_eq!(server.try_access_token(&token).0, 200);
    let (status, _data, logs) = server.terminate();
    assert_eq!(status.code(), Some(0), "{logs}");
    assert!(logs.contains("store flushed"), "{logs}");
}

#[test]
fn a_token_created_while_running_survives_sigkill_and_restart() {
    let server = Server::start();
    let token = provision(server.data_dir());
    assert_eq!(server.try_access_token(&token).0, 200);
    let data = server.kill();
    let restarted = Server::start_in(data, &[]);
    assert_eq!(restarted.try_access_token(&token).0, 200);
    let tokens = restarted.admin(&["token", "list"]);
    assert_eq!(tokens.as_array().unwrap().len(), 1);
}

#[test]
fn without_a_configured_secret_one_is_generated_with_mode_0600_and_kept() {
    use std::os::unix::fs::PermissionsExt;
    let data = tempfile::tempdir().unwrap();
    let token = provision(data.path());
    let no_secret = [("STAMPS_JWT__SECRET", "")];
    let server = Server::start_in(data, &no_secret);
    let jwt = server.access_token(&token);
    let (status, data, logs) = server.terminate();
    assert_eq!(status.code(), Some(0));

    let key_file = data.path().join("jwt-secret");
    let secret = std::fs::read_to_string(&key_file).unwrap();
    assert_eq!(
        std::fs::metadata(&key_file).unwrap().permissions().mode() & 0o777,
        0o600
    );
    assert!(secret.trim().len() >= 43);
    assert!(!logs.contains(secret.trim()), "the secret reached the log");
    assert!(logs.contains("jwt-secret"), "{logs}");

    // Kept: after a restart, JWTs signed before still verify.
    let server = Server::start_in(data, &no_secret);
    let response = server
        .post("/api/auth/verify-token/")
        .header("Authorization", format!("Bearer {jwt}"))
        .send()
        .unwrap();
    assert_eq!(response.status(), 200);
}

#[test]
fn a_bad_configuration_exits_non_zero_with_one_clear_line() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("stamps.toml");
    for (contents, env, expect) in [
        (
            "listen = \"127.0.0.1:0\"\nnot_a_setting = 1\n",
            vec![],
            "not_a_setting",
        ),
        ("[jwt]\nsecret = \"short\"\n", vec![], "32"),
        ("[jwt]\nlifetime = \"0s\"\n", vec![], "lifetime"),
        ("", vec![("STAMPS_LISTEN", "not an address")], "listen"),
    ] {
        std::fs::write(&config, contents).unwrap();
        let out = Command::new(server_binary())
            .env_clear()
            .env("STAMPS_DATA_DIR", dir.path().join("data"))
            .envs(env)
            .arg("--config")
            .arg(&config)
            .output()
            .unwrap();
        assert!(!out.status.success(), "{contents}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        let lines: Vec<&str> = stderr.lines().collect();
        assert_eq!(lines.len(), 1, "{stderr}");
        assert!(lines[0].contains(expect), "{stderr}");
        assert!(!stderr.contains("short\""), "{stderr}");
    }
}

#[test]
fn a_second_server_on_the_same_data_directory_is_refused_clearly() {
    let server = Server::start();
    let out = Command::new(server_binary())
        .env_clear()
        .env("STAMPS_LISTEN", "127.0.0.1:0")
        .env("STAMPS_DATA_DIR", server.data_dir())
        .env("STAMPS_JWT__SECRET", common::SECRET)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("in use"));
    let _ = admin_json(server.data_dir(), &["merchant", "list"]);
}
