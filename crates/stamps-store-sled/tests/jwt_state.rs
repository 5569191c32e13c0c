//! JWT revocations, rotated signing keys, pruning and the audit trail,
//! through the `Store` trait: on the sled store, and the same through the
//! admin socket.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;

use stamps_core::{Claims, Jti, ManualClock, TokenType};
use stamps_store::{
    AccountKind::{Merchant, User},
    AdminSocket, AuditEvent, JwtRevocationTarget, PruneSummary, RemoteStore, SecretHasher, Store,
    StoreError, admin_socket_path,
};
use stamps_store_sled::SledStore;
use tempfile::TempDir;

fn seeded() -> (TempDir, Arc<ManualClock>, SledStore) {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::new(1_000));
    let store = SledStore::open_with(dir.path(), SecretHasher::owasp(), clock.clone()).unwrap();
    store.add_account(Merchant, "My Merchant", Some(1)).unwrap();
    store.add_account(User, "user5870", Some(5870)).unwrap();
    (dir, clock, store)
}

fn claims(iat: u64, jti: Jti) -> Claims {
    Claims {
        token_type: TokenType::Access,
        exp: iat + 100,
        iat,
        jti,
        user_id: 5870,
        merchant_id: 1,
    }
}

/// Runs `check` on the sled store, then on a remote one served over the
/// admin socket, so both answer alike.
fn on_both(check: impl Fn(&dyn Store, &ManualClock)) {
    let (_dir, clock, store) = seeded();
    check(&store, &clock);

    let (dir, clock, store) = seeded();
    let socket = AdminSocket::bind(&admin_socket_path(dir.path())).unwrap();
    let stop = socket.shutdown_handle();
    let thread = socket.spawn(Arc::new(store)).unwrap();
    let remote = RemoteStore::connect(&admin_socket_path(dir.path()))
        .unwrap()
        .unwrap();
    check(&remote, &clock);
    stop.shutdown();
    thread.join().unwrap();
}

#[test]
fn revocations_refuse_what_they_target_and_are_pruned_after_expiry() {
    on_both(|store, clock| {
        let jti = Jti::random();
        let by_jti = store.revoke_jwts(JwtRevocationTarget::Jti { jti }).unwrap();
        assert_eq!(by_jti.revoked_at, 1_000);
        assert!(by_jti.refuses(&claims(990, jti)));
        assert!(!by_jti.refuses(&claims(990, Jti::random())));

        clock.set(2_000);
        let by_user = store
            .revoke_jwts(JwtRevocationTarget::User { id: 5870 })
            .unwrap();
        // Issued at or before the revocation: refused; after: not.
        assert!(by_user.refuses(&claims(2_000, Jti::random())));
        assert!(!by_user.refuses(&claims(2_001, Jti::random())));

        // Unknown accounts are refused clearly, and nothing is recorded.
        assert!(matches!(
            store.revoke_jwts(JwtRevocationTarget::Merchant { id: 9 }),
            Err(StoreError::NotFound { kind, .. }) if kind == "merchant"
        ));
        assert_eq!(store.jwt_revocations().unwrap().len(), 2);

        // Revoking again moves the cut-off forward: still one entry.
        clock.set(3_000);
        store
            .revoke_jwts(JwtRevocationTarget::User { id: 5870 })
            .unwrap();
        let all = store.jwt_revocations().unwrap();
        assert_eq!(all.len(), 2);
        assert!(all.iter().any(|r| r.revoked_at == 3_000));

        // Pruning drops what was made before the horizon, only that.
        assert_eq!(
            store.prune(2_500).unwrap(),
            PruneSummary {
                revocations: 1,
                keys: 0
            }
        );
        let left = store.jwt_revocations().unwrap();
        assert_eq!(left.len(), 1);
        assert_eq!(left[0].target, JwtRevocationTarget::User { id: 5870 });
    });
}

#[test]
fn rotated_keys_are_kept_in_order_and_pruned_once_replaced_long_enough() {
    on_both(|store, clock| {
        assert!(store.signing_keys().unwrap().is_empty());
        let first = store.rotate_signing_key().unwrap();
        clock.set(1_500);
        let second = store.rotate_signing_key().unwrap();
        assert_eq!((first.id, first.created_at), (1, 1_000));
        assert_eq!((second.id, second.created_at), (2, 1_500));
        let keys = store.signing_keys().unwrap();
        assert_eq!(
            keys.iter().map(|k| k.info()).collect::<Vec<_>>(),
            [first, second]
        );
        assert_ne!(keys[0].key, keys[1].key);
        assert_eq!(keys[0].key.expose_secret().len(), 32);
        // Debug never shows a key.
        let shown = format!("{keys:?}");
        assert!(
            !shown.contains(&format!("{:?}", keys[0].key.expose_secret())),
            "{shown}"
        );

        // The first key was replaced at 1 500: kept until the horizon passes it.
        assert_eq!(store.prune(1_500).unwrap(), PruneSummary::default());
        assert_eq!(store.prune(1_501).unwrap().keys, 1);
        // The newest key always stays.
        assert_eq!(store.prune(u64::MAX).unwrap().keys, 0);
        assert_eq!(
            store
                .signing_keys()
                .unwrap()
                .iter()
                .map(|k| k.id)
                .collect::<Vec<_>>(),
            [2]
        );
        // Ids keep growing after a prune.
        assert_eq!(store.rotate_signing_key().unwrap().id, 3);
    });
}

#[test]
fn the_audit_trail_appends_in_order_and_filters_by_time() {
    on_both(|store, _| {
        let event =
            |at, action: &str| AuditEvent::new(at, "stamps-admin uid=0", action, "user 5870");
        store
            .append_audit(&[event(10, "user.add"), event(20, "user.disable")])
            .unwrap();
        store.append_audit(&[event(30, "user.enable")]).unwrap();
        let all = store.audit(0).unwrap();
        let actions: Vec<_> = all.iter().map(|e| e.action.as_str()).collect();
        assert_eq!(actions, ["user.add", "user.disable", "user.enable"]);
        assert!(all.windows(2).all(|w| w[0].seq < w[1].seq));
        assert_eq!(store.audit(20).unwrap().len(), 2);
        // Bad text is refused, and nothing of the batch is written.
        assert!(matches!(
            store.append_audit(&[event(40, "ok"), event(40, "bad\nline")]),
            Err(StoreError::InvalidText { field, .. }) if field == "action"
        ));
        assert_eq!(store.audit(0).unwrap().len(), 3);
    });
}

#[test]
fn keys_revocations_and_the_trail_survive_a_reopen_but_not_an_export() {
    let (dir, _clock, store) = seeded();
    store.rotate_signing_key().unwrap();
    store
        .revoke_jwts(JwtRevocationTarget::User { id: 5870 })
        .unwrap();
    store
        .append_audit(&[AuditEvent::new(1, "me", "key.rotate", "key 1")])
        .unwrap();
    let key = store.signing_keys().unwrap()[0].key.clone();
    let snapshot = store.snapshot().unwrap();
    drop(store);

    let store = SledStore::open(dir.path()).unwrap();
    assert_eq!(store.signing_keys().unwrap()[0].key, key);
    assert_eq!(store.jwt_revocations().unwrap().len(), 1);
    assert_eq!(store.audit(0).unwrap().len(), 1);

    // An export holds accounts and tokens only: keys are secrets.
    let mut lines = Vec::new();
    snapshot.write_jsonl(&mut lines).unwrap();
    let text = String::from_utf8(lines).unwrap();
    assert!(!text.contains(&hex_of(key.expose_secret())));
    assert!(!text.contains("key.rotate"));
}

fn hex_of(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
