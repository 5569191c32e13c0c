//! Memory stays bounded while argon2id runs: each hash borrows 19 MiB, and
//! the allocator must hand it back. (With glibc's malloc, a burst of wrong
//! secrets left 19 MiB resident per malloc arena: 420 MiB after 40 tries.)
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::thread;

use common::{Server, provision};
use stamps_core::{ExposeSecret, StaticToken};

/// Resident memory of a process, in KiB.
fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

#[test]
fn a_burst_of_wrong_secrets_for_a_real_token_id_does_not_keep_argon2_memory() {
    // Enough budget per token id for the whole burst to reach argon2.
    let server = Server::start_in(
        tempfile::tempdir().unwrap(),
        &[("STAMPS_RATE_LIMIT__PER_TOKEN", "100")],
    );
    let real = StaticToken::parse(&provision(server.data_dir())).unwrap();
    // Warm the process up with one valid hash, so the baseline includes
    // whatever one hash legitimately leaves behind.
    let ok = server
        .post("/api/ping")
        .header(
            "Authorization",
            format!("Token {}", real.to_secret_string().expose_secret()),
        )
        .send()
        .unwrap();
    assert_eq!(ok.status(), 200);
    let before = rss_kib(server.child.id());

    // 4 clients x 6 wrong secrets with valid checksums: 24 full argon2 runs,
    // spread over the blocking pool's threads.
    thread::scope(|scope| {
        for _ in 0..4 {
            scope.spawn(|| {
                for _ in 0..6 {
                    let guess = StaticToken::from_parts(
                        *real.id(),
                        StaticToken::generate().secret().expose_secret(),
                    )
                    .unwrap();
                    let refused = server
                        .post("/api/ping")
                        .header(
                            "Authorization",
                            format!("Token {}", guess.to_secret_string().expose_secret()),
                        )
                        .send()
                        .unwrap();
                    assert_eq!(refused.status(), 401);
                }
            });
        }
    });

    let after = rss_kib(server.child.id());
    let grown_mib = after.saturating_sub(before) / 1024;
    assert!(
        grown_mib < 38,
        "RSS grew by {grown_mib} MiB over 24 argon2 runs ({before} KiB -> {after} KiB)"
    );
}
