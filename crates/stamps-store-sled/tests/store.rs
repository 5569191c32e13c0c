//! The sled store's behaviour through the `Store` trait.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;

use stamps_core::{ExposeSecret, ManualClock, StaticToken};
use stamps_store::{
    AccountKind::{Merchant, User},
    Refusal, SecretHasher, Store, StoreError, TokenCheck, TokenFilter,
};
use stamps_store_sled::SledStore;
use tempfile::TempDir;

/// sled lets go of a database's lock a moment after its last handle is
/// dropped (later under load): a reopen waits for it, 10 s at most.
const REOPEN_PATIENCE: std::time::Duration = std::time::Duration::from_secs(10);

fn open(dir: &TempDir) -> SledStore {
    SledStore::open_with_patience(
        dir.path(),
        SecretHasher::owasp(),
        Arc::new(ManualClock::new(1_000)),
        REOPEN_PATIENCE,
    )
    .unwrap()
}

/// The store's sled database itself, to write what another version or a
/// crash left, or to read what the store wrote; with the same patience.
fn raw_db(dir: &TempDir) -> sled::Db {
    let tries = REOPEN_PATIENCE.as_millis() / 10;
    (0..tries)
        .find_map(|_| {
            let opened = sled::open(dir.path().join("db")).ok();
            if opened.is_none() {
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
            opened
        })
        .unwrap()
}

fn seeded() -> (TempDir, SledStore) {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    store.add_account(Merchant, "My Merchant", Some(1)).unwrap();
    store.add_account(User, "user5870", Some(5870)).unwrap();
    (dir, store)
}

#[test]
fn accounts_take_given_or_allocated_ids_and_refuse_duplicates() {
    let (_dir, store) = seeded();
    assert_eq!(store.add_account(Merchant, "second", None).unwrap().id, 2);
    assert_eq!(store.add_account(User, "next", None).unwrap().id, 5871);
    assert!(matches!(
        store.add_account(Merchant, "again", Some(1)),
        Err(StoreError::Duplicate { kind, .. }) if kind == "merchant"
    ));
    assert_eq!(
        store.account(Merchant, 1).unwrap().unwrap().name,
        "My Merchant"
    );
    let merchants: Vec<u64> = store
        .accounts(Merchant)
        .unwrap()
        .iter()
        .map(|m| m.id)
        .collect();
    assert_eq!(merchants, [1, 2]);
    assert_eq!(
        store.account(Merchant, 1).unwrap().unwrap().created_at,
        1_000
    );
}

#[test]
fn bad_input_is_refused_and_changes_nothing() {
    let (_dir, store) = seeded();
    let before = store.snapshot().unwrap();
    for name in ["", "a\nb", &"x".repeat(201)] {
        assert!(matches!(
            store.add_account(User, name, None),
            Err(StoreError::InvalidText { field, .. }) if field == "name"
        ));
    }
    assert!(matches!(
        store.add_account(User, "zero", Some(0)),
        Err(StoreError::InvalidId { .. })
    ));
    assert!(matches!(
        store.create_token(1, 1, None),
        Err(StoreError::NotFound { kind, .. }) if kind == "user"
    ));
    assert!(matches!(
        store.create_token(5870, 2, None),
        Err(StoreError::NotFound { kind, .. }) if kind == "merchant"
    ));
    assert!(matches!(
        store.create_token(5870, 1, Some("bad\u{0}label")),
        Err(StoreError::InvalidText { field, .. }) if field == "label"
    ));
    assert!(matches!(
        store.set_account_active(Merchant, 9, false),
        Err(StoreError::NotFound { .. })
    ));
    let unknown = *StaticToken::generate().id();
    assert!(matches!(
        store.revoke_token(&unknown),
        Err(StoreError::NotFound { kind, .. }) if kind == "token"
    ));
    assert_eq!(store.snapshot().unwrap(), before);
}

#[test]
fn a_token_is_live_until_revoked_or_its_user_or_merchant_is_disabled() {
    let (_dir, store) = seeded();
    let issued = store.create_token(5870, 1, Some("till 3")).unwrap();
    assert!(
        issued
            .record
            .hash
            .starts_with("$argon2id$v=19$m=19456,t=2,p=1$")
    );
    let live = |store: &SledStore| store.check_token(&issued.token).unwrap();
    assert_eq!(live(&store), TokenCheck::Live(issued.record.clone()));

    store.set_account_active(User, 5870, false).unwrap();
    assert_eq!(live(&store), TokenCheck::Refused(Refusal::UserDisabled));
    store.set_account_active(User, 5870, true).unwrap();
    store.set_account_active(Merchant, 1, false).unwrap();
    assert_eq!(live(&store), TokenCheck::Refused(Refusal::MerchantDisabled));
    store.set_account_active(Merchant, 1, true).unwrap();
    assert!(matches!(live(&store), TokenCheck::Live(_)));

    let revoked = store.revoke_token(issued.token.id()).unwrap();
    assert!(revoked.revoked);
    assert!(store.revoke_token(issued.token.id()).unwrap().revoked);
    assert_eq!(live(&store), TokenCheck::Refused(Refusal::Revoked));
}

#[test]
fn wrong_secrets_and_unknown_ids_are_refused() {
    let (_dir, store) = seeded();
    let issued = store.create_token(5870, 1, None).unwrap();
    let wrong = StaticToken::from_parts(*issued.token.id(), &"0".repeat(32)).unwrap();
    assert_eq!(
        store.check_token(&wrong).unwrap(),
        TokenCheck::Refused(Refusal::WrongSecret)
    );
    assert_eq!(
        store.check_token(&StaticToken::generate()).unwrap(),
        TokenCheck::Refused(Refusal::Unknown)
    );
}

#[test]
fn tokens_are_listed_oldest_first_and_filtered() {
    let (_dir, store) = seeded();
    store.add_account(Merchant, "other", Some(2)).unwrap();
    let a = store.create_token(5870, 1, None).unwrap().record;
    let b = store.create_token(5870, 2, Some("b")).unwrap().record;
    let all = store.tokens(TokenFilter::default()).unwrap();
    assert_eq!(all.len(), 2);
    let only = |merchant_id| {
        store
            .tokens(TokenFilter {
                user_id: Some(5870),
                merchant_id: Some(merchant_id),
            })
            .unwrap()
    };
    assert_eq!(only(1), [a]);
    assert_eq!(only(2), [b]);
    assert!(
        store
            .tokens(TokenFilter {
                user_id: Some(1),
                merchant_id: None
            })
            .unwrap()
            .is_empty()
    );
}

#[test]
fn hashes_under_old_parameters_are_replaced_on_use() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::new(1));
    let issued = {
        let weak = SledStore::open_with(
            dir.path(),
            SecretHasher::with_params(8, 1, 1).unwrap(),
            clock.clone(),
        )
        .unwrap();
        weak.add_account(Merchant, "m", Some(1)).unwrap();
        weak.add_account(User, "u", Some(1)).unwrap();
        weak.create_token(1, 1, None).unwrap()
    };
    let store =
        SledStore::open_with_patience(dir.path(), SecretHasher::owasp(), clock, REOPEN_PATIENCE)
            .unwrap();
    assert!(store.hasher().needs_rehash(&issued.record.hash));
    assert!(matches!(
        store.check_token(&issued.token).unwrap(),
        TokenCheck::Live(_)
    ));
    let rehashed = store.token(issued.token.id()).unwrap().unwrap();
    assert!(!store.hasher().needs_rehash(&rehashed.hash));
    assert!(matches!(
        store.check_token(&issued.token).unwrap(),
        TokenCheck::Live(_)
    ));
}

#[test]
fn no_file_in_the_data_directory_holds_a_secret() {
    let (dir, store) = seeded();
    let secrets: Vec<String> = (0..3)
        .map(|_| store.create_token(5870, 1, None).unwrap().token)
        .flat_map(|t| {
            [
                t.to_secret_string().expose_secret().to_owned(),
                t.secret().expose_secret().to_owned(),
            ]
        })
        .collect();
    store.flush().unwrap();
    drop(store);
    let mut files = vec![dir.path().to_path_buf()];
    let mut scanned = 0;
    while let Some(path) = files.pop() {
        if path.is_dir() {
            files.extend(std::fs::read_dir(&path).unwrap().map(|e| e.unwrap().path()));
            continue;
        }
        let bytes = std::fs::read(&path).unwrap();
        scanned += bytes.len();
        for secret in &secrets {
            assert!(
                !bytes.windows(secret.len()).any(|w| w == secret.as_bytes()),
                "{} holds a secret",
                path.display()
            );
        }
    }
    assert!(scanned > 0);
}

#[test]
fn a_second_opener_is_told_the_store_is_in_use() {
    let (dir, _store) = seeded();
    match SledStore::open(dir.path()) {
        Err(StoreError::Locked { path }) => assert!(path.ends_with("db")),
        other => panic!("expected Locked, got {other:?}"),
    }
}

#[test]
fn a_store_from_a_newer_schema_is_refused_clearly() {
    let dir = tempfile::tempdir().unwrap();
    {
        let db = raw_db(&dir);
        db.open_tree("meta")
            .unwrap()
            .insert("schema_version", &3u32.to_be_bytes())
            .unwrap();
        db.flush().unwrap();
    }
    let err = SledStore::open_with_patience(
        dir.path(),
        SecretHasher::owasp(),
        Arc::new(ManualClock::new(1_000)),
        REOPEN_PATIENCE,
    )
    .unwrap_err();
    assert!(matches!(
        err,
        StoreError::SchemaTooNew {
            found: 3,
            supported: 2,
            ..
        }
    ));
    assert!(err.to_string().contains("upgrade stamps"));
}

#[test]
fn a_store_of_schema_1_opens_with_its_tokens_and_is_marked_2() {
    let dir = tempfile::tempdir().unwrap();
    {
        // What the first release wrote: no expiry, no last use.
        let db = raw_db(&dir);
        db.open_tree("meta")
            .unwrap()
            .insert("schema_version", &1u32.to_be_bytes())
            .unwrap();
        let account = br#"{"id":1,"name":"M","active":true,"created_at":1}"#;
        db.open_tree("merchants")
            .unwrap()
            .insert(1u64.to_be_bytes(), &account[..])
            .unwrap();
        let token = br#"{"id":"0123456789abcdef","user_id":5870,"merchant_id":1,"label":null,"hash":"h","created_at":7,"revoked":false}"#;
        db.open_tree("tokens")
            .unwrap()
            .insert("0123456789abcdef", &token[..])
            .unwrap();
        db.flush().unwrap();
    }
    let store = open(&dir);
    let token = store
        .token(&"0123456789abcdef".parse().unwrap())
        .unwrap()
        .unwrap();
    assert_eq!(
        (token.created_at, token.expires_at, token.last_used_at),
        (7, None, None)
    );
    drop(store);
    let db = raw_db(&dir);
    let version = db.open_tree("meta").unwrap().get("schema_version").unwrap();
    assert_eq!(version.as_deref(), Some(&2u32.to_be_bytes()[..]));
}

#[test]
fn snapshot_restores_into_an_empty_store_only() {
    let (_dir, store) = seeded();
    let issued = store.create_token(5870, 1, Some("x")).unwrap();
    let snapshot = store.snapshot().unwrap();
    assert!(matches!(
        store.restore(&snapshot),
        Err(StoreError::NotEmpty)
    ));

    let mut text = Vec::new();
    snapshot.write_jsonl(&mut text).unwrap();
    let other_dir = tempfile::tempdir().unwrap();
    let other = open(&other_dir);
    let summary = other
        .restore(&stamps_store::Snapshot::read_jsonl(text.as_slice()).unwrap())
        .unwrap();
    assert_eq!(
        (summary.merchants, summary.users, summary.tokens),
        (1, 1, 1)
    );
    assert_eq!(other.snapshot().unwrap(), snapshot);
    assert!(matches!(
        other.check_token(&issued.token).unwrap(),
        TokenCheck::Live(_)
    ));
}

#[test]
fn an_import_interrupted_by_a_crash_is_rolled_back_at_the_next_open() {
    let dir = tempfile::tempdir().unwrap();
    drop(open(&dir));
    {
        // What a crash mid-import leaves: the marker and part of the data.
        let db = raw_db(&dir);
        db.open_tree("meta")
            .unwrap()
            .insert("import_pending", &[1])
            .unwrap();
        db.open_tree("merchants")
            .unwrap()
            .insert(1u64.to_be_bytes(), &b"{}"[..])
            .unwrap();
        db.flush().unwrap();
    }
    let store = open(&dir);
    assert!(store.snapshot().unwrap().is_empty());
    store.add_account(Merchant, "fresh", None).unwrap();
    drop(store);
    assert_eq!(open(&dir).accounts(Merchant).unwrap().len(), 1);
}

#[test]
fn the_last_use_only_moves_forward() {
    let dir = tempfile::tempdir().unwrap();
    stamps_store::conformance::check_last_use(&open(&dir)).unwrap();
}

#[test]
fn imported_tokens_are_found_by_their_digest() {
    let dirs = [tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap()];
    let [store, restored] = dirs.each_ref().map(|dir| {
        let hasher = SecretHasher::with_params(8, 1, 1).unwrap();
        SledStore::open_with(dir.path(), hasher, Arc::new(ManualClock::new(1_000))).unwrap()
    });
    stamps_store::conformance::check_imported_tokens(&store, &restored).unwrap();
    // The index survives a reopen.
    drop(store);
    let store = open(&dirs[0]);
    assert!(store.has_imported_tokens().unwrap());
}

#[test]
fn tokens_expire_at_their_instant() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::new(1_000));
    let hasher = SecretHasher::with_params(8, 1, 1).unwrap();
    let store = SledStore::open_with(dir.path(), hasher, clock.clone()).unwrap();
    stamps_store::conformance::check_token_expiry(&store, &clock).unwrap();
}

#[test]
fn the_audit_trail_is_pruned_by_time_in_steps() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    stamps_store::conformance::check_audit_retention(&store).unwrap();
}

/// Bytes of every file under `dir`.
fn size_of(dir: &std::path::Path) -> u64 {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|entry| {
            let entry = entry.unwrap();
            let meta = entry.metadata().unwrap();
            if meta.is_dir() {
                size_of(&entry.path())
            } else {
                meta.len()
            }
        })
        .sum()
}

/// The data directory, not the record count: JWTs issued take a few dozen
/// bytes each on disk, and once pruned their space is used again (the
/// JSON batches of before went to sled's blobs/, ~190-530 bytes an event,
/// and kept growing after a prune). The bound leaves room for how sled
/// happens to fill its segments: 85 bytes measured here, 101 on a clean
/// CI machine.
#[test]
fn pruned_audit_space_is_used_again_and_a_jwt_takes_under_150_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    let issued = |at| stamps_store::JwtIssued {
        at,
        client: std::net::IpAddr::from([203, 0, 113, 7]),
        jti: stamps_core::Jti::random(),
        user_id: 5870,
        merchant_id: 1,
        token_id: "0123456789abcdef".parse().unwrap(),
    };
    let write = |from: u64| {
        for batch in 0..100 {
            let events: Vec<_> = (0..1_000).map(|_| issued(from + batch)).collect();
            store.append_jwt_issued(&events).unwrap();
        }
    };
    let empty = size_of(dir.path());
    write(1_000);
    let first = size_of(dir.path());
    let per_event = (first - empty) / 100_000;
    assert!(per_event < 150, "{per_event} bytes per JWT issued");
    while store.prune_audit(2_000, 10_000).unwrap() > 0 {}
    assert!(store.audit(0).unwrap().is_empty());
    write(3_000);
    let second = size_of(dir.path());
    eprintln!(
        "{per_event} bytes per JWT; {first} bytes, then {second} after pruning and as many again"
    );
    assert!(
        second < first + (first - empty) / 2,
        "{first} bytes, then {second} after pruning and as many again"
    );
}
