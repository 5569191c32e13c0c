//! Durability: a writer process is killed with SIGKILL at random points; on
//! reopening, every write it acknowledged is there and every record reads
//! back whole.
//!
//! The writer is this test binary run again with `CRASH_WRITER_DIR` set,
//! so no extra binary is needed.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::mpsc;
use std::time::Duration;

use rand::Rng;
use stamps_core::{ManualClock, TokenId};
use stamps_store::{AccountKind, SecretHasher, Store, TokenFilter};
use stamps_store_sled::SledStore;

const WRITER_DIR: &str = "CRASH_WRITER_DIR";

/// Cheap hashing: this test is about durability, not about argon2.
fn open(dir: &Path) -> SledStore {
    SledStore::open_with(
        dir,
        SecretHasher::with_params(8, 1, 1).unwrap(),
        Arc::new(ManualClock::new(1)),
    )
    .unwrap()
}

/// The child's body; does nothing unless run as the writer. Each line it
/// prints acknowledges a write that the store has returned from (flushed).
#[test]
fn crash_writer() {
    let Some(dir) = std::env::var_os(WRITER_DIR) else {
        return;
    };
    let store = open(Path::new(&dir));
    let out = std::io::stdout();
    let mut out = out.lock();
    let (mut user, mut merchant) = (None, None);
    for i in 0..100_000u32 {
        let line = match i % 4 {
            0 => {
                let m = store
                    .add_account(AccountKind::Merchant, &format!("m{i}"), None)
                    .unwrap();
                merchant = Some(m.id);
                format!("merchant {}", m.id)
            }
            1 => {
                let u = store
                    .add_account(AccountKind::User, &format!("u{i}"), None)
                    .unwrap();
                user = Some(u.id);
                format!("user {}", u.id)
            }
            2 => {
                let t = store
                    .create_token(user.unwrap(), merchant.unwrap(), Some("crash"))
                    .unwrap();
                format!("token {}", t.record.id)
            }
            _ => {
                let id = store
                    .tokens(TokenFilter::default())
                    .unwrap()
                    .last()
                    .unwrap()
                    .id;
                store.revoke_token(&id).unwrap();
                format!("revoked {id}")
            }
        };
        writeln!(out, "ack {line}").unwrap();
        out.flush().unwrap();
    }
}

#[test]
fn acknowledged_writes_survive_sigkill() {
    let dir = tempfile::tempdir().unwrap();
    let mut acked: Vec<String> = Vec::new();
    let mut rng = rand::rng();

    for _round in 0..8 {
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args(["--exact", "crash_writer", "--nocapture", "--test-threads=1"])
            .env(WRITER_DIR, dir.path())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(ack) = line.strip_prefix("ack ")
                    && tx.send(ack.to_owned()).is_err()
                {
                    break;
                }
            }
        });
        // Kill after a random number of acknowledgements: the writer is then
        // somewhere inside its next write.
        let target = rng.random_range(1..120);
        for _ in 0..target {
            match rx.recv_timeout(Duration::from_secs(30)) {
                Ok(ack) => acked.push(ack),
                Err(e) => panic!("writer stalled or died: {e}"),
            }
        }
        child.kill().unwrap();
        child.wait().unwrap();
        // Acknowledgements printed before the kill count too.
        acked.extend(rx.try_iter());
        reader.join().unwrap();

        check(dir.path(), &acked);
    }
    assert!(acked.len() >= 8);
}

/// Every acknowledged write is present; every record decodes; every token
/// names an existing user and merchant.
fn check(dir: &Path, acked: &[String]) {
    let store = open(dir);
    let merchants = store.accounts(AccountKind::Merchant).unwrap();
    let users = store.accounts(AccountKind::User).unwrap();
    let tokens = store.tokens(TokenFilter::default()).unwrap();
    for ack in acked {
        let (what, id) = ack.split_once(' ').unwrap();
        let present = match what {
            "merchant" => merchants.iter().any(|m| m.id.to_string() == id),
            "user" => users.iter().any(|u| u.id.to_string() == id),
            "token" => tokens.iter().any(|t| t.id.as_str() == id),
            "revoked" => {
                let id: TokenId = id.parse().unwrap();
                tokens.iter().any(|t| t.id == id && t.revoked)
            }
            other => panic!("unknown ack {other}"),
        };
        assert!(present, "acknowledged write lost: {ack}");
    }
    for t in &tokens {
        assert!(
            users.iter().any(|u| u.id == t.user_id),
            "token {} without its user",
            t.id
        );
        assert!(
            merchants.iter().any(|m| m.id == t.merchant_id),
            "token {} without its merchant",
            t.id
        );
    }
}
