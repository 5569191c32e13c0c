//! The systemd unit of docs/deploy: sandboxed as documented, and accepted
//! by `systemd-analyze verify` (when the tool is on this machine).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::process::Command;

const UNIT: &str = include_str!("../../../docs/deploy/stamps-server.service");

/// A unit's `Key=value` lines, trimmed, comments left out.
fn directives(unit: &str) -> Vec<&str> {
    unit.lines()
        .map(str::trim)
        .filter(|l| !l.starts_with('#') && l.contains('='))
        .collect()
}

#[test]
fn the_unit_sandboxes_the_server_to_its_data_directory() {
    let directives = directives(UNIT);
    for required in [
        "DynamicUser=yes",
        "StateDirectory=stamps",
        "StateDirectoryMode=0700",
        "ProtectSystem=strict",
        "ReadWritePaths=/var/lib/stamps",
        "NoNewPrivileges=yes",
        "Environment=STAMPS_DATA_DIR=/var/lib/stamps",
        "ExecStart=/usr/local/bin/stamps-server",
        "KillSignal=SIGTERM",
    ] {
        assert!(directives.contains(&required), "{required} missing");
    }
}

#[test]
fn systemd_analyze_verify_accepts_the_unit() {
    let Ok(probe) = Command::new("systemd-analyze").arg("--version").output() else {
        eprintln!("systemd-analyze is not installed: only the directives were checked");
        return;
    };
    assert!(probe.status.success());
    let dir = tempfile::tempdir().unwrap();
    let unit = dir.path().join("stamps-server.service");
    // verify wants ExecStart to exist: point it at the binary under test.
    let text = UNIT.replace(
        "/usr/local/bin/stamps-server",
        common::server_binary().to_str().unwrap(),
    );
    std::fs::write(&unit, text).unwrap();
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&unit)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    // Unknown keys are only warnings, with status 0: any line naming the unit fails.
    assert!(out.status.success(), "{stderr}");
    assert!(!stderr.contains("stamps-server.service"), "{stderr}");
}

/// The Debian package's unit (docs/deploy/debian): the same sandbox, as
/// the package's `stamps` user, with the package's configuration file.
const PACKAGE_UNIT: &str = include_str!("../../../docs/deploy/debian/stamps-server.service");

#[test]
fn the_package_unit_runs_the_server_as_stamps_with_its_configuration() {
    let directives = directives(PACKAGE_UNIT);
    for required in [
        "User=stamps",
        "Group=stamps",
        "ExecStart=/usr/bin/stamps-server --config /etc/stamps/stamps.toml",
        "ProtectSystem=strict",
        "ReadWritePaths=/var/lib/stamps",
        "NoNewPrivileges=yes",
        "KillSignal=SIGTERM",
        "UMask=0077",
    ] {
        assert!(directives.contains(&required), "{required} missing");
    }
    // Every sandboxing line of the cargo-install unit is in it too.
    for line in UNIT.lines().map(str::trim) {
        if line.starts_with("Protect")
            || line.starts_with("Restrict")
            || line.starts_with("SystemCall")
        {
            assert!(
                directives.contains(&line),
                "{line} missing from the package's unit"
            );
        }
    }
}
