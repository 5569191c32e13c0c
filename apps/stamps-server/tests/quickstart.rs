//! Runs the README's quickstart lines against a server of this test's own.
//!
//! The lines run as written, in bash, with three differences a reader's
//! machine does not need: `URL=` and `DATA=` name this test's server and
//! data directory, and `cargo` is a stand-in that does nothing (the
//! binaries are already built; `target/release/stamps-admin` is linked to
//! the one under test).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::process::Command;

use common::{Server, admin_binary, doc_block};

#[test]
fn the_readme_quickstart_works_as_written() {
    let server = Server::start();
    let work = tempfile::tempdir().unwrap();
    let release = work.path().join("target/release");
    std::fs::create_dir_all(&release).unwrap();
    std::os::unix::fs::symlink(admin_binary(), release.join("stamps-admin")).unwrap();
    let shims = work.path().join("shims");
    std::fs::create_dir_all(&shims).unwrap();
    let cargo = shims.join("cargo");
    std::fs::write(&cargo, "#!/bin/sh\nexit 0\n").unwrap();
    std::fs::set_permissions(&cargo, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();

    let mut replaced = 0;
    let script: Vec<String> = doc_block("README.md", "quickstart")
        .into_iter()
        .map(|line| {
            if line.starts_with("URL=") {
                replaced += 1;
                format!("URL={}", server.url)
            } else if line.starts_with("DATA=") {
                replaced += 1;
                format!("DATA={}", server.data_dir().display())
            } else {
                line
            }
        })
        .collect();
    assert_eq!(replaced, 2, "the quickstart sets URL= and DATA=");
    let script = format!("set -euo pipefail\n{}\n", script.join("\n"));

    let path = format!(
        "{}:{}",
        shims.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let out = Command::new("bash")
        .arg("-c")
        .arg(&script)
        .current_dir(work.path())
        .env("PATH", path)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{script}\nstdout:\n{stdout}\nstderr:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // verify-token printed the payload; both pings the merchant.
    assert!(stdout.contains(r#""token_type":"access""#), "{stdout}");
    assert!(
        stdout.contains(r#""user_id":5870,"merchant_id":1}"#),
        "{stdout}"
    );
    assert_eq!(
        stdout
            .matches(r#"{"pong":{"merchant":"My Merchant","merchant_id":1}}"#)
            .count(),
        2,
        "{stdout}"
    );
    // The forward-authentication check named the user and merchant.
    let headers = stdout.to_ascii_lowercase();
    for expected in [
        "x-stamps-user-id: 5870",
        "x-stamps-merchant-id: 1",
        "x-stamps-token-kind: jwt",
        "x-stamps-jti: ",
    ] {
        assert!(headers.contains(expected), "{expected}: {stdout}");
    }
}
