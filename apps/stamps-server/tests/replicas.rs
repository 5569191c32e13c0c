//! Several `stamps-server` replicas on one PostgreSQL database: changes
//! made through any of them, or by `stamps-admin` on the database, reach
//! every replica within a second; a killed replica leaves the others
//! serving; without the database, JWTs and cached static tokens keep
//! working, the rest is 503, and everything recovers by itself.
//!
//! Needs `STAMPS_TEST_POSTGRES_URL` (`scripts/test.sh` provides it).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::process::Output;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use common::{Server, admin_binary, admin_output, bearer_of, eventually, json_of};
use serde_json::Value;
use stamps_core::{Clock, ExpiryRules, JwtCodec, KeySet, SystemClock};
use stamps_store::SigningKeyRecord;
use stamps_store_postgres::testing::{Cluster, base_url, scratch_url_on};

/// What the contract allows for a change to reach every replica.
const PROPAGATION_LIMIT: Duration = Duration::from_secs(1);

/// `stamps-admin --store-url URL --json ARGS`, straight on the database.
fn admin_on(url: &str, args: &[&str]) -> Output {
    std::process::Command::new(admin_binary())
        .arg("--store-url")
        .arg(url)
        .arg("--json")
        .args(args)
        .output()
        .unwrap()
}

fn admin_ok(url: &str, args: &[&str]) -> Value {
    let out = admin_on(url, args);
    assert!(
        out.status.success(),
        "stamps-admin {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// Merchant 1, user 5870 and `tokens` static tokens for them, on `url`.
fn provision(url: &str, tokens: usize) -> Vec<String> {
    admin_ok(
        url,
        &["merchant", "add", "--name", "My Merchant", "--id", "1"],
    );
    admin_ok(url, &["user", "add", "--name", "user5870", "--id", "5870"]);
    (0..tokens)
        .map(|_| {
            let created = admin_ok(
                url,
                &["token", "create", "--user", "5870", "--merchant", "1"],
            );
            created["token"].as_str().unwrap().to_owned()
        })
        .collect()
}

/// A replica on the database at `url`, signing with the store's keys (no
/// configured secret), with a data directory of its own for its admin
/// socket.
fn replica(url: &str) -> Server {
    Server::start_in(
        tempfile::tempdir().unwrap(),
        &[
            ("STAMPS_STORE__BACKEND", "postgres"),
            ("STAMPS_STORE__URL", url),
            ("STAMPS_JWT__SECRET", ""),
        ],
    )
}

fn verify_status(server: &Server, jwt: &str) -> u16 {
    server
        .post("/api/auth/verify-token/")
        .header("Authorization", bearer_of(jwt))
        .send()
        .unwrap()
        .status()
        .as_u16()
}

/// Polls every replica (bounded by the limit, with margin) until `refused`
/// holds on all; returns how long that took.
fn time_until_all(
    servers: &[&Server],
    what: &str,
    mut holds: impl FnMut(&Server) -> bool,
) -> Duration {
    let start = Instant::now();
    let deadline = start + PROPAGATION_LIMIT * 5;
    let mut pending: Vec<&Server> = servers.to_vec();
    while !pending.is_empty() {
        assert!(Instant::now() < deadline, "{what}: not on every replica");
        pending.retain(|s| !holds(s));
        if !pending.is_empty() {
            std::thread::sleep(Duration::from_millis(5));
        }
    }
    start.elapsed()
}

/// The newest signing key in the store at `url`.
fn newest_key(url: &str) -> SigningKeyRecord {
    let mut client = postgres::Client::connect(url, postgres::NoTls).unwrap();
    let row = client
        .query_one(
            "SELECT record FROM signing_keys ORDER BY id DESC LIMIT 1",
            &[],
        )
        .unwrap();
    serde_json::from_str(row.get(0)).unwrap()
}

fn verifies_with(key: &SigningKeyRecord, jwt: &str) -> bool {
    JwtCodec::new(KeySet::new(key.key.clone()), ExpiryRules::default())
        .verify(jwt, SystemClock.now())
        .is_ok()
}

#[test]
fn changes_made_anywhere_reach_every_replica_within_a_second() {
    let Some(base) = base_url() else { return };
    let url = scratch_url_on(&base);
    let token = provision(&url, 1).remove(0);
    let (a, b, c) = (replica(&url), replica(&url), replica(&url));
    let all = [&a, &b, &c];

    // Every replica signs with the store's key: a JWT from any verifies on all.
    let key = newest_key(&url);
    let jwts: Vec<String> = all.iter().map(|s| s.access_token(&token)).collect();
    for jwt in &jwts {
        assert!(verifies_with(&key, jwt));
        for server in all {
            assert_eq!(verify_status(server, jwt), 200);
        }
    }

    // 1. Revoke a JWT through replica A (its admin socket).
    let jwt = &jwts[0];
    let jti = json_of(
        a.post("/api/auth/verify-token/")
            .header("Authorization", bearer_of(jwt))
            .send()
            .unwrap(),
    )
    .1["jti"]
        .as_str()
        .unwrap()
        .to_owned();
    let out = admin_output(a.data_dir(), &["jwt", "revoke", &jti]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(verify_status(&a, jwt), 401, "A refuses at once");
    let revoke = time_until_all(&[&b, &c], "JWT revocation", |s| {
        verify_status(s, jwt) == 401
    });

    // 2. Disable the merchant with stamps-admin on the database itself:
    // every JWT and the (cached) static token are refused everywhere.
    let live_jwt = &jwts[1];
    for server in all {
        assert_eq!(server.ping(&format!("Token {token}")), 200, "cache warmed");
    }
    admin_ok(&url, &["merchant", "disable", "1"]);
    // Timed on the JWT path (a cheap probe); the static token, whose
    // refusal costs an argon2 check, is asserted after.
    let disable = time_until_all(&all, "merchant disabled", |s| {
        verify_status(s, live_jwt) == 401
    });
    for server in all {
        assert_eq!(
            server.ping(&format!("Token {token}")),
            401,
            "cached token evicted"
        );
    }
    admin_ok(&url, &["merchant", "enable", "1"]);
    let enable = time_until_all(&all, "merchant enabled", |s| {
        verify_status(s, live_jwt) == 200
    });
    for server in all {
        assert_eq!(server.ping(&format!("Token {token}")), 200);
    }

    // 3. Rotate the key with stamps-admin: every replica signs with the new
    // one, and tokens signed before still verify.
    admin_ok(&url, &["key", "rotate"]);
    let rotated = newest_key(&url);
    assert_ne!(rotated.id, key.id);
    let rotation = time_until_all(&all, "key rotation", |s| {
        verifies_with(&rotated, &s.access_token(&token))
    });
    for server in all {
        assert_eq!(
            verify_status(server, live_jwt),
            200,
            "old tokens still verify"
        );
    }

    eprintln!(
        "propagation to every replica: JWT revocation {revoke:?}, merchant disabled {disable:?}, \
         enabled {enable:?}, key rotation {rotation:?}"
    );
    for (what, took) in [
        ("revocation", revoke),
        ("disable", disable),
        ("enable", enable),
        ("rotation", rotation),
    ] {
        assert!(took < PROPAGATION_LIMIT, "{what} took {took:?}");
    }
}

#[test]
fn a_killed_replica_leaves_the_others_serving() {
    let Some(base) = base_url() else { return };
    let url = scratch_url_on(&base);
    let token = provision(&url, 1).remove(0);
    let (a, b, c) = (replica(&url), replica(&url), replica(&url));
    let jwt = a.access_token(&token);

    // Load on B and C from two threads each; A is killed part way.
    const REQUESTS: usize = 300;
    let done = Arc::new(AtomicUsize::new(0));
    let failures = std::thread::scope(|scope| {
        let workers: Vec<_> = [&b, &c, &b, &c]
            .into_iter()
            .enumerate()
            .map(|(i, server)| {
                let (jwt, token, done) = (&jwt, &token, done.clone());
                scope.spawn(move || {
                    let mut failures = Vec::new();
                    for n in 0..REQUESTS {
                        let status = if (n + i) % 2 == 0 {
                            verify_status(server, jwt)
                        } else {
                            server.ping(&format!("Token {token}"))
                        };
                        if status != 200 {
                            failures.push(status);
                        }
                        done.fetch_add(1, Ordering::Relaxed);
                    }
                    failures
                })
            })
            .collect();
        eventually(Duration::from_secs(30), "load under way", || {
            done.load(Ordering::Relaxed) >= REQUESTS
        });
        a.kill();
        workers
            .into_iter()
            .flat_map(|w| w.join().unwrap())
            .collect::<Vec<_>>()
    });
    assert!(failures.is_empty(), "B and C failed: {failures:?}");
    // And they still take changes.
    admin_ok(&url, &["user", "disable", "5870"]);
    time_until_all(&[&b, &c], "user disabled", |s| {
        verify_status(s, &jwt) == 401
    });
}

#[test]
fn without_the_database_jwts_and_cached_tokens_work_the_rest_is_503_and_all_recovers() {
    let Some(cluster) = Cluster::start() else {
        return;
    };
    let url = cluster.url();
    let tokens = provision(&url, 2);
    let (cached, uncached) = (&tokens[0], &tokens[1]);
    let (a, b) = (replica(&url), replica(&url));
    let jwt = a.access_token(cached);
    for server in [&a, &b] {
        assert_eq!(server.ping(&format!("Token {cached}")), 200);
    }

    cluster.stop();
    for server in [&a, &b] {
        assert_eq!(verify_status(server, &jwt), 200, "JWTs need no database");
        assert_eq!(server.ping(&bearer_of(&jwt)), 200);
        assert_eq!(server.ping(&format!("Token {cached}")), 200, "cached token");
        let (status, _) = server.try_access_token(cached);
        assert_eq!(status, 200, "a cached token still gets JWTs");
        let (status, body, _) = json_of(
            server
                .post("/api/ping")
                .header("Authorization", format!("Token {uncached}"))
                .send()
                .unwrap(),
        );
        assert_eq!(
            (status, body["error_code"].as_str()),
            (503, Some("store_unavailable")),
            "{body}"
        );
        let ready = common::client()
            .get(format!("{}/readyz", server.url))
            .send()
            .unwrap();
        assert_eq!(ready.status().as_u16(), 503);
    }

    cluster.resume();
    for server in [&a, &b] {
        eventually(Duration::from_secs(20), "the store is back", || {
            server.ping(&format!("Token {uncached}")) == 200
        });
    }
    // The change feeds reconnected: a change reaches both again.
    admin_ok(&url, &["user", "disable", "5870"]);
    let took = time_until_all(&[&a, &b], "user disabled after recovery", |s| {
        verify_status(s, &jwt) == 401
    });
    assert!(took < PROPAGATION_LIMIT * 2, "{took:?}");
}

#[test]
fn metrics_on_postgres_report_the_size_and_leave_the_pool_alone() {
    let Some(base) = base_url() else { return };
    let url = scratch_url_on(&base);
    let token = provision(&url, 1).remove(0);
    let server = Server::start_in(
        tempfile::tempdir().unwrap(),
        &[
            ("STAMPS_STORE__BACKEND", "postgres"),
            ("STAMPS_STORE__URL", &url),
            ("STAMPS_JWT__SECRET", ""),
            ("STAMPS_METRICS__ENABLED", "true"),
        ],
    );
    let scrape = || {
        let response = common::client()
            .get(format!("{}/metrics", server.url))
            .send()
            .unwrap();
        assert_eq!(response.status().as_u16(), 200);
        response.text().unwrap()
    };
    // More scrapes than the pool has connections: reading the database
    // from a scrape once cost one connection each.
    for _ in 0..2 * stamps_store_postgres::POOL_SIZE {
        scrape();
    }
    eventually(
        Duration::from_secs(10),
        "the database size in /metrics",
        || {
            scrape()
                .lines()
                .any(|l| l.contains("store_size_bytes") && !l.starts_with('#'))
        },
    );
    // The store is still reachable: a static token not yet cached needs it.
    assert_eq!(server.ping(&format!("Token {token}")), 200);
}

#[test]
fn a_jwt_asked_for_right_after_revoke_all_is_valid_on_every_replica() {
    let Some(base) = base_url() else { return };
    let url = scratch_url_on(&base);
    let token = provision(&url, 1).remove(0);
    let (a, b) = (replica(&url), replica(&url));
    // A cut-off refuses every JWT issued up to its second: the command
    // returns only once that second is over, so a JWT any replica issues
    // afterwards, whether the change has reached it yet or not, is valid
    // everywhere. (Before, about 1 in 20 came back dead on arrival.)
    for round in 0..3 {
        admin_ok(&url, &["jwt", "revoke-all", "--user", "5870"]);
        for issuer in [&b, &a] {
            let jwt = issuer.access_token(&token);
            for server in [&a, &b] {
                assert_eq!(verify_status(server, &jwt), 200, "round {round}");
            }
        }
    }
}

#[test]
fn a_hung_database_is_a_503_within_seconds_and_all_recovers() {
    let Some(cluster) = Cluster::start() else {
        return;
    };
    let url = cluster.url();
    let tokens = provision(&url, 2);
    let (cached, uncached) = (&tokens[0], &tokens[1]);
    let a = replica(&url);
    let jwt = a.access_token(cached);

    // Frozen (SIGSTOP): connections stay open, nothing answers. It used to
    // hold an uncached static token for as long as the freeze lasted.
    cluster.freeze();
    let started = Instant::now();
    let (status, body, _) = json_of(
        a.post("/api/ping")
            .header("Authorization", format!("Token {uncached}"))
            .send()
            .unwrap(),
    );
    let took = started.elapsed();
    assert_eq!(
        (status, body["error_code"].as_str()),
        (503, Some("store_unavailable")),
        "{body}"
    );
    assert!(took < Duration::from_secs(8), "{took:?}");
    assert_eq!(verify_status(&a, &jwt), 200, "JWTs need no database");
    assert_eq!(a.ping(&format!("Token {cached}")), 200, "cached token");

    cluster.unfreeze();
    eventually(Duration::from_secs(30), "the store answers again", || {
        a.ping(&format!("Token {uncached}")) == 200
    });
}
