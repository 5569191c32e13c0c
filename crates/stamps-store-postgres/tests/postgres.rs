//! What the PostgreSQL backend adds to the store's model: migrations that
//! concurrent starts apply once, the change feed (in order, woken by
//! NOTIFY, found by the poll when no notification comes, resumed after a
//! dropped connection), and all-or-nothing imports.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use postgres::NoTls;
use stamps_core::{Clock, ManualClock};
use stamps_store::{
    AccountKind, AuditEvent, Change, ChangeFeed, FeedEvent, JwtRevocationTarget, SecretHasher,
    Snapshot, Store, StoreError, TokenFilter,
};
use stamps_store_postgres::testing::scratch_url;
use stamps_store_postgres::{PgStore, SCHEMA_VERSION};

fn client(url: &str) -> postgres::Client {
    postgres::Client::connect(url, NoTls).unwrap()
}

/// Every change the feed delivers within `patience`, until `count` came.
fn collect(feed: &mut dyn ChangeFeed, count: usize, patience: Duration) -> Vec<Change> {
    let deadline = Instant::now() + patience;
    let mut changes = Vec::new();
    while changes.len() < count {
        assert!(Instant::now() < deadline, "only {changes:?}");
        match feed.next(Duration::from_millis(250)).unwrap() {
            FeedEvent::Changes(more) => changes.extend(more),
            FeedEvent::Resync => panic!("unexpected resync"),
        }
    }
    changes
}

#[test]
fn replicas_starting_at_once_migrate_once() {
    let Some(url) = scratch_url() else { return };
    let opened: Vec<_> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..6)
            .map(|_| scope.spawn(|| PgStore::open(&url)))
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert!(opened.iter().all(Result::is_ok), "{opened:?}");
    // Each migration once, up to this build's version.
    let versions: Vec<i32> = client(&url)
        .query(
            "SELECT version FROM schema_migrations ORDER BY version",
            &[],
        )
        .unwrap()
        .iter()
        .map(|row| row.get(0))
        .collect();
    assert_eq!(versions, (1..=SCHEMA_VERSION).collect::<Vec<_>>());
}

#[test]
fn a_database_of_the_first_schema_is_migrated_with_its_tokens_kept() {
    let Some(url) = scratch_url() else { return };
    // What the first release made: its schema, an account pair, a token.
    let mut old = client(&url);
    old.batch_execute(stamps_store_postgres::MIGRATIONS[0].1)
        .unwrap();
    old.batch_execute(
        "CREATE TABLE schema_migrations (version integer PRIMARY KEY,
                                         applied_at timestamptz NOT NULL DEFAULT now());
         INSERT INTO schema_migrations (version) VALUES (1);
         INSERT INTO merchants (id, name, active, created_at) VALUES (1, 'M', true, 1);
         INSERT INTO users (id, name, active, created_at) VALUES (5870, 'U', true, 1);
         INSERT INTO tokens (id, user_id, merchant_id, label, hash, created_at, revoked)
             VALUES ('0123456789abcdef', 5870, 1, 'till', 'h', 7, false);",
    )
    .unwrap();
    let store = PgStore::open(&url).unwrap();
    let token = store
        .token(&"0123456789abcdef".parse().unwrap())
        .unwrap()
        .unwrap();
    assert_eq!(
        (token.user_id, token.label.as_deref()),
        (5870, Some("till"))
    );
    assert_eq!((token.expires_at, token.last_used_at), (None, None));
}

#[test]
fn a_database_migrated_by_a_newer_stamps_is_refused() {
    let Some(url) = scratch_url() else { return };
    drop(PgStore::open(&url).unwrap());
    client(&url)
        .execute("INSERT INTO schema_migrations (version) VALUES (99)", &[])
        .unwrap();
    let e = PgStore::open(&url).unwrap_err();
    assert!(
        matches!(e, StoreError::SchemaTooNew { found: 99, .. }),
        "{e}"
    );
}

#[test]
fn a_bad_url_or_an_unreachable_database_is_a_clear_error_without_the_password() {
    let e = PgStore::open("postgres://u:hunter2@127.0.0.1:1/x").unwrap_err();
    let shown = e.to_string();
    assert!(shown.contains("unreachable"), "{shown}");
    assert!(!shown.contains("hunter2"), "{shown}");
    let e = PgStore::open("postgres://u:hunter2@[::1").unwrap_err();
    assert!(
        e.to_string()
            .starts_with("storage error: invalid store.url"),
        "{e}"
    );
    assert!(!e.to_string().contains("hunter2"));
}

#[test]
fn the_feed_delivers_every_change_in_order_from_any_process() {
    let Some(url) = scratch_url() else { return };
    let writer = PgStore::open(&url).unwrap();
    let follower = PgStore::open(&url).unwrap();
    let mut feed = follower.change_feed().unwrap();

    let merchant = writer
        .add_account(AccountKind::Merchant, "M", Some(1))
        .unwrap();
    writer
        .add_account(AccountKind::User, "U", Some(5870))
        .unwrap();
    let token = writer.create_token(5870, 1, None).unwrap();
    let disabled = writer
        .set_account_active(AccountKind::Merchant, 1, false)
        .unwrap();
    writer.revoke_token(&token.record.id).unwrap();
    let revocation = writer
        .revoke_jwts(JwtRevocationTarget::User { id: 5870 })
        .unwrap();
    writer.rotate_signing_key().unwrap();
    // Not followed: no server keeps these in memory.
    writer
        .append_audit(&[AuditEvent::new(1, "a", "x.y", "s")])
        .unwrap();

    let changes = collect(&mut feed, 6, Duration::from_secs(10));
    assert_eq!(
        changes,
        vec![
            Change::Account {
                kind: AccountKind::Merchant,
                account: merchant
            },
            Change::Account {
                kind: AccountKind::User,
                account: follower.account(AccountKind::User, 5870).unwrap().unwrap()
            },
            Change::Account {
                kind: AccountKind::Merchant,
                account: disabled
            },
            Change::TokenRevoked {
                id: token.record.id
            },
            Change::JwtRevoked { revocation },
            Change::JwtStateChanged,
        ]
    );
    assert_eq!(
        feed.next(Duration::from_millis(50)).unwrap(),
        FeedEvent::Changes(vec![])
    );
}

#[test]
fn the_poll_finds_a_change_whose_notification_never_came() {
    let Some(url) = scratch_url() else { return };
    let store = PgStore::open(&url).unwrap();
    let mut feed = store.change_feed().unwrap();
    assert_eq!(
        feed.next(Duration::from_millis(10)).unwrap(),
        FeedEvent::Changes(vec![])
    );
    // A row with no NOTIFY, as if the notification were lost.
    client(&url)
        .execute(
            "INSERT INTO change_log (at, change) VALUES (1, '{\"change\":\"restored\"}')",
            &[],
        )
        .unwrap();
    let started = Instant::now();
    let changes = collect(&mut feed, 1, Duration::from_secs(5));
    assert_eq!(changes, vec![Change::Restored]);
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );
}

#[test]
fn the_feed_resumes_after_its_connection_is_dropped_and_loses_nothing() {
    let Some(url) = scratch_url() else { return };
    let store = PgStore::open(&url).unwrap();
    let mut feed = store.change_feed().unwrap();
    store.add_account(AccountKind::User, "U", Some(1)).unwrap();
    assert_eq!(collect(&mut feed, 1, Duration::from_secs(5)).len(), 1);

    // Kill every session listening, then change something meanwhile.
    client(&url)
        .execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity
             WHERE pid <> pg_backend_pid() AND query LIKE 'LISTEN%'",
            &[],
        )
        .unwrap();
    store
        .set_account_active(AccountKind::User, 1, false)
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut changes = Vec::new();
    let mut errors = 0;
    while changes.is_empty() {
        assert!(Instant::now() < deadline, "no change after the drop");
        match feed.next(Duration::from_millis(100)) {
            Ok(FeedEvent::Changes(more)) => changes.extend(more),
            Ok(FeedEvent::Resync) => panic!("nothing was pruned: no resync"),
            Err(_) => errors += 1,
        }
    }
    assert!(errors <= 1, "{errors} errors");
    assert!(matches!(
        &changes[..],
        [Change::Account { account, .. }] if !account.active
    ));
}

#[test]
fn import_is_all_or_nothing_into_an_empty_store_only() {
    let Some(url) = scratch_url() else { return };
    let source = PgStore::open(&scratch_url().unwrap()).unwrap();
    source
        .add_account(AccountKind::Merchant, "M", Some(u64::MAX - 1))
        .unwrap();
    source.add_account(AccountKind::User, "U", Some(7)).unwrap();
    for _ in 0..3 {
        source.create_token(7, u64::MAX - 1, Some("till")).unwrap();
    }
    let snapshot = source.snapshot().unwrap();

    let target = PgStore::open(&url).unwrap();
    let summary = target.restore(&snapshot).unwrap();
    assert_eq!(summary, snapshot.summary());
    assert_eq!(target.snapshot().unwrap(), snapshot);
    assert_eq!(
        target
            .tokens(TokenFilter {
                user_id: Some(7),
                merchant_id: None
            })
            .unwrap()
            .len(),
        3
    );
    assert!(matches!(
        target.restore(&snapshot),
        Err(StoreError::NotEmpty)
    ));

    // A snapshot whose token names a missing user loads nothing.
    let empty = PgStore::open(&scratch_url().unwrap()).unwrap();
    let broken = Snapshot {
        users: Vec::new(),
        ..snapshot
    };
    assert!(empty.restore(&broken).is_err());
    assert_eq!(empty.snapshot().unwrap(), Snapshot::default());
}

#[test]
fn audit_keeps_batch_order_and_prune_keeps_the_newest_key() {
    let Some(url) = scratch_url() else { return };
    let store = PgStore::open(&url).unwrap();
    let events: Vec<AuditEvent> = (0..50)
        .map(|i| AuditEvent::new(100 + i, "api 127.0.0.1", "jwt.issue", format!("jti {i}")))
        .collect();
    store.append_audit(&events).unwrap();
    let read = store.audit(0).unwrap();
    let subjects: Vec<_> = read.iter().map(|e| e.subject.clone()).collect();
    let want: Vec<_> = events.iter().map(|e| e.subject.clone()).collect();
    assert_eq!(subjects, want);
    assert!(read.windows(2).all(|w| w[0].seq < w[1].seq));
    assert_eq!(store.audit(140).unwrap().len(), 10);

    store.rotate_signing_key().unwrap();
    store.rotate_signing_key().unwrap();
    let summary = store.prune(store.now() + 10).unwrap();
    assert_eq!(summary.keys, 1);
    assert_eq!(store.signing_keys().unwrap().len(), 1, "the newest stays");
}

#[test]
fn a_feed_behind_pruned_changes_reloads_everything_and_keys_keep_their_order() {
    let Some(url) = scratch_url() else { return };
    let clock = Arc::new(ManualClock::new(1_700_000_000));
    let store = PgStore::open_with(&url, SecretHasher::owasp(), clock.clone()).unwrap();
    let mut behind = store.change_feed().unwrap();
    store.add_account(AccountKind::User, "U", Some(1)).unwrap();
    let first = store.rotate_signing_key().unwrap();

    // A writer whose clock is behind: its key still comes after.
    clock.set(1_700_000_000 - 100);
    let second = store.rotate_signing_key().unwrap();
    assert!(
        second.created_at >= first.created_at,
        "{first:?} {second:?}"
    );

    // Eight days on, the changes are pruned; a feed that missed them
    // cannot catch up row by row.
    clock.set(1_700_000_000 + 8 * 24 * 3600);
    store.prune(clock.now() - 90_000).unwrap();
    assert_eq!(
        behind.next(Duration::from_millis(10)).unwrap(),
        FeedEvent::Resync
    );
    // After the resync it follows new changes as usual.
    store
        .set_account_active(AccountKind::User, 1, false)
        .unwrap();
    assert_eq!(collect(&mut behind, 1, Duration::from_secs(5)).len(), 1);
}

#[test]
fn the_last_use_only_moves_forward() {
    let Some(url) = scratch_url() else { return };
    let hasher = SecretHasher::with_params(8, 1, 1).unwrap();
    let store = PgStore::open_with(&url, hasher, Arc::new(ManualClock::new(1_000))).unwrap();
    stamps_store::conformance::check_last_use(&store).unwrap();
}

#[test]
fn imported_tokens_are_found_by_their_digest() {
    let (Some(first), Some(second)) = (scratch_url(), scratch_url()) else {
        return;
    };
    let open = |url: &str| {
        let hasher = SecretHasher::with_params(8, 1, 1).unwrap();
        PgStore::open_with(url, hasher, Arc::new(ManualClock::new(1_700_000_000))).unwrap()
    };
    let (store, restored) = (open(&first), open(&second));
    let mut feed = store.change_feed().unwrap();
    stamps_store::conformance::check_imported_tokens(&store, &restored).unwrap();
    // The other replicas learn that imported tokens exist.
    let changes = collect(&mut feed, 4, Duration::from_secs(5));
    assert!(changes.contains(&Change::TokensImported), "{changes:?}");
}

#[test]
fn tokens_expire_at_their_instant() {
    let Some(url) = scratch_url() else { return };
    let clock = Arc::new(ManualClock::new(1_700_000_000));
    let hasher = SecretHasher::with_params(8, 1, 1).unwrap();
    let store = PgStore::open_with(&url, hasher, clock.clone()).unwrap();
    stamps_store::conformance::check_token_expiry(&store, &clock).unwrap();
}

#[test]
fn the_audit_trail_is_pruned_by_time_in_steps() {
    let Some(url) = scratch_url() else { return };
    let store = PgStore::open(&url).unwrap();
    stamps_store::conformance::check_audit_retention(&store).unwrap();
}

#[test]
fn revoke_all_returns_only_once_its_second_is_over() {
    let Some(url) = scratch_url() else { return };
    let store = PgStore::open(&url).unwrap();
    store
        .add_account(AccountKind::User, "U", Some(5870))
        .unwrap();
    for _ in 0..2 {
        let revocation = store
            .revoke_jwts(JwtRevocationTarget::User { id: 5870 })
            .unwrap();
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs();
        assert!(now > revocation.revoked_at, "{now} {revocation:?}");
    }
}

#[test]
fn a_change_log_restored_to_an_older_state_makes_the_feed_reload_everything() {
    let Some(url) = scratch_url() else { return };
    let store = PgStore::open(&url).unwrap();
    let mut feed = store.change_feed().unwrap();
    store.add_account(AccountKind::User, "A", Some(1)).unwrap();
    let mut db = client(&url);
    let dumped: i64 = db
        .query_one("SELECT max(seq) FROM change_log", &[])
        .unwrap()
        .get(0);
    store.add_account(AccountKind::User, "B", Some(2)).unwrap();
    store.add_account(AccountKind::User, "C", Some(3)).unwrap();
    assert_eq!(collect(&mut feed, 3, Duration::from_secs(5)).len(), 3);

    // What `pg_restore --clean` of a dump taken after the first change
    // does to the log: its rows and its sequence go back.
    db.batch_execute(&format!(
        "DELETE FROM change_log WHERE seq > {dumped};
         SELECT setval(pg_get_serial_sequence('change_log', 'seq'), {dumped})"
    ))
    .unwrap();
    // A change made after the restore is numbered below what the feed saw:
    // it used to be skipped, and every later one too, until a restart.
    store
        .set_account_active(AccountKind::User, 1, false)
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        assert!(Instant::now() < deadline, "no reload asked for");
        if let FeedEvent::Resync = feed.next(Duration::from_millis(250)).unwrap() {
            break;
        }
    }
    // From there on, changes flow again.
    store.add_account(AccountKind::User, "D", Some(4)).unwrap();
    assert_eq!(collect(&mut feed, 1, Duration::from_secs(5)).len(), 1);

    // Restored again, and as many changes made as were lost before the
    // feed looks: the numbers are back where it was, the rows are others.
    let seen: i64 = db
        .query_one("SELECT max(seq) FROM change_log", &[])
        .unwrap()
        .get(0);
    db.batch_execute(&format!(
        "DELETE FROM change_log WHERE seq > {dumped};
         SELECT setval(pg_get_serial_sequence('change_log', 'seq'), {dumped})"
    ))
    .unwrap();
    for id in 0..(seen - dumped) {
        store
            .set_account_active(AccountKind::User, 2 + (id as u64 % 2), false)
            .unwrap();
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        assert!(
            Instant::now() < deadline,
            "the rewritten log went unnoticed"
        );
        if let FeedEvent::Resync = feed.next(Duration::from_millis(250)).unwrap() {
            break;
        }
    }
}
