//! The focused checks beside the model, for any backend: the audit
//! trail's retention, token expiry, imported tokens and the last use. Each
//! takes a store (and what it needs of its clock) and says what is wrong in
//! one line.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use stamps_core::{Clock, Jti, LookupKey, ManualClock, StaticToken, TokenId, UnixTime};

use crate::{
    AccountKind, AuditEvent, Refusal, Store, StoreError, TokenCheck, TokenFilter, TokenImport,
};

/// The audit trail's rules, for any backend, on an empty store: JWTs
/// issued ([`Store::append_jwt_issued`]) and text events read back in
/// order with growing sequence numbers; [`Store::prune_audit`] deletes the
/// events older than its cut-off only, the oldest first, in steps of about
/// its bound, and returns 0 once nothing is left to delete.
pub fn check_audit_retention(store: &dyn Store) -> Result<(), String> {
    let issued = |at| crate::JwtIssued {
        at,
        client: std::net::IpAddr::from([203, 0, 113, 7]),
        jti: Jti::from_bytes([7; 16]),
        user_id: 5870,
        merchant_id: 1,
        token_id: "0123456789abcdef"
            .parse()
            .unwrap_or_else(|_| unreachable!()),
    };
    let fail = |what: &str, e: StoreError| format!("{what}: {e}");
    // Three batches of old JWTs, an old admin event, then recent ones.
    for batch in 0..3u64 {
        let old: Vec<_> = (0..100).map(|i| issued(1_000 + batch * 100 + i)).collect();
        store
            .append_jwt_issued(&old)
            .map_err(|e| fail("append", e))?;
    }
    let admin = AuditEvent::new(
        1_400,
        "stamps-admin uid=0 (root)",
        "token.revoke",
        "token x",
    );
    store
        .append_audit(&[admin])
        .map_err(|e| fail("append", e))?;
    store
        .append_jwt_issued(&[issued(5_000), issued(5_001)])
        .map_err(|e| fail("append", e))?;
    let all = store.audit(0).map_err(|e| fail("audit", e))?;
    if all.len() != 303 || !all.windows(2).all(|w| w[0].seq < w[1].seq) {
        return Err(format!("{} events, or out of order", all.len()));
    }
    if all[0].action != "jwt.issue" || all[300].action != "token.revoke" {
        return Err(format!("unexpected events: {:?} {:?}", all[0], all[300]));
    }
    // Steps of about 150: sled deletes whole batches (100 each).
    let mut steps = 0;
    let mut removed = 0;
    loop {
        let n = store
            .prune_audit(4_000, 150)
            .map_err(|e| fail("prune", e))?;
        if n == 0 {
            break;
        }
        if n > 250 {
            return Err(format!("a step of {n} events, for a bound of 150"));
        }
        removed += n;
        steps += 1;
        if steps > 10 {
            return Err("pruning never ends".to_owned());
        }
    }
    let kept = store.audit(0).map_err(|e| fail("audit", e))?;
    let times: Vec<_> = kept.iter().map(|e| e.at).collect();
    if removed != 301 || steps < 2 || times != [5_000, 5_001] {
        return Err(format!(
            "removed {removed} in {steps} steps, kept {times:?}"
        ));
    }
    Ok(())
}

/// Token expiry, for any backend: `store` must be empty, on `clock` (a
/// [`ManualClock`] this check moves forward). An expiry not in the future
/// is refused; a token is live up to the second before its expiry and
/// refused as [`Refusal::Expired`] from that second on (its secret checked
/// first: a wrong secret stays [`Refusal::WrongSecret`], a revoked token
/// [`Refusal::Revoked`]); the expiry is listed and carried by a snapshot,
/// and a token without an expiry never expires.
pub fn check_token_expiry(store: &dyn Store, clock: &ManualClock) -> Result<(), String> {
    let fail = |what: &str, e: StoreError| format!("{what}: {e}");
    add_accounts(
        store,
        &[(AccountKind::Merchant, 1), (AccountKind::User, 5870)],
    )?;
    let now = clock.now();
    for past in [now, now - 1] {
        match store.create_expiring_token(5870, 1, None, Some(past)) {
            Err(StoreError::ExpiryPast { expires_at, .. }) if expires_at == past => {}
            other => return Err(format!("expiry at {past} (now {now}): {other:?}")),
        }
    }
    let create = |expires_at| {
        store
            .create_expiring_token(5870, 1, Some("till"), expires_at)
            .map_err(|e| fail("create", e))
    };
    let expiring = create(Some(now + 10))?;
    let revoked = create(Some(now + 10))?;
    let forever = create(None)?;
    store
        .revoke_token(revoked.token.id())
        .map_err(|e| fail("revoke", e))?;
    let check = |token: &StaticToken| match store.check_token(token) {
        Ok(TokenCheck::Live(_)) => Ok(None),
        Ok(TokenCheck::Refused(why)) => Ok(Some(why)),
        Err(e) => Err(fail("check", e)),
    };
    let wrong = StaticToken::from_parts(*expiring.token.id(), &"z".repeat(32))
        .map_err(|e| format!("wrong secret: {e}"))?;
    let expect = |at, want: [Option<Refusal>; 4]| -> Result<(), String> {
        clock.set(at);
        let got = [
            check(&expiring.token)?,
            check(&wrong)?,
            check(&revoked.token)?,
            check(&forever.token)?,
        ];
        if got != want {
            return Err(format!("at now+{}: {got:?}, not {want:?}", at - now));
        }
        Ok(())
    };
    let wrong_secret = Some(Refusal::WrongSecret);
    let revoked_too = Some(Refusal::Revoked);
    expect(now + 9, [None, wrong_secret, revoked_too, None])?;
    expect(
        now + 10,
        [Some(Refusal::Expired), wrong_secret, revoked_too, None],
    )?;
    expect(
        now + 1_000_000,
        [Some(Refusal::Expired), wrong_secret, revoked_too, None],
    )?;

    // Made in one second: the order among them is the backend's.
    let sorted = |mut pairs: Vec<(TokenId, Option<UnixTime>)>| {
        pairs.sort();
        pairs
    };
    let listed = sorted(
        store
            .tokens(TokenFilter::default())
            .map_err(|e| fail("list", e))?
            .into_iter()
            .map(|t| (t.id, t.expires_at))
            .collect(),
    );
    let want = sorted(vec![
        (*expiring.token.id(), Some(now + 10)),
        (*revoked.token.id(), Some(now + 10)),
        (*forever.token.id(), None),
    ]);
    if listed != want {
        return Err(format!("listed {listed:?}, not {want:?}"));
    }
    let snapshot = store.snapshot().map_err(|e| fail("snapshot", e))?;
    let carried = sorted(
        snapshot
            .tokens
            .iter()
            .map(|t| (t.id, t.expires_at))
            .collect(),
    );
    if carried != want {
        return Err(format!("the snapshot carries {carried:?}, not {want:?}"));
    }
    Ok(())
}

/// Imported tokens, for any backend, on an empty store: a batch is stored
/// all or none (a text given twice, already stored, of an unknown user, or
/// not importable refuses it by its entry, and nothing is stored); an
/// imported token is found by its digest and checked like an issued one
/// (live, revoked, its user disabled), never by its public id as an issued
/// token; another text, or the same under another key, is unknown; the
/// store says whether it holds any; and a snapshot carries the digests, so
/// a store restored from it finds them with the same key.
pub fn check_imported_tokens(store: &dyn Store, restored: &dyn Store) -> Result<(), String> {
    let fail = |what: &str, e: StoreError| format!("{what}: {e}");
    let key = LookupKey::new(&[5; 32]).map_err(|e| e.to_string())?;
    add_accounts(
        store,
        &[
            (AccountKind::Merchant, 1),
            (AccountKind::User, 5870),
            (AccountKind::User, 5871),
        ],
    )?;
    if store.has_imported_tokens().map_err(|e| fail("has", e))? {
        return Err("imported tokens in an empty store".into());
    }
    let import = |text: &str, user_id| TokenImport {
        text: text.into(),
        user_id,
        merchant_id: 1,
        label: Some("pos".into()),
        expires_at: None,
    };
    let seed = "23095sgtr95402mkdls954002";
    let drf = "9944b09199c62bcf9418ad846dd0e4bbdfc6ee4b";
    let refused = |batch: Vec<TokenImport>, entry: usize| -> Result<(), String> {
        match store.import_tokens(&batch, &key) {
            Err(StoreError::InvalidImport { line, reason }) if line == entry => {
                if reason.contains(seed) || reason.contains(drf) {
                    return Err(format!("the text is quoted: {reason}"));
                }
                Ok(())
            }
            other => Err(format!("entry {entry}: {other:?}")),
        }
    };
    refused(vec![import(seed, 5870), import(seed, 5871)], 2)?;
    refused(vec![import(seed, 5870), import(drf, 9)], 2)?;
    refused(vec![import("short", 5870)], 1)?;
    refused(vec![import(&format!("stmp_{drf}"), 5870)], 1)?;
    if !store
        .tokens(TokenFilter::default())
        .map_err(|e| fail("list", e))?
        .is_empty()
    {
        return Err("a refused batch stored something".into());
    }
    let records = store
        .import_tokens(&[import(seed, 5870), import(drf, 5871)], &key)
        .map_err(|e| fail("import", e))?;
    refused(
        vec![import("another-fine-token-1", 5870), import(drf, 5870)],
        2,
    )?;
    if !store.has_imported_tokens().map_err(|e| fail("has", e))? {
        return Err("has_imported_tokens is false after an import".into());
    }
    let check = |text: &str, key: &LookupKey| match store.check_imported(text, &key.digest(text)) {
        Ok(TokenCheck::Live(record)) => Ok(Ok(record.id)),
        Ok(TokenCheck::Refused(why)) => Ok(Err(why)),
        Err(e) => Err(fail("check", e)),
    };
    if check(seed, &key)? != Ok(records[0].id) || check(drf, &key)? != Ok(records[1].id) {
        return Err("an imported token is not live".into());
    }
    let other_key = LookupKey::new(&[6; 32]).map_err(|e| e.to_string())?;
    let unknown = Err(Refusal::Unknown);
    if check("23095sgtr95402mkdls954003", &key)? != unknown || check(seed, &other_key)? != unknown {
        return Err("another text or key found a token".into());
    }
    // Its id is public; presented as an issued token, it is unknown.
    let as_issued =
        StaticToken::from_parts(records[0].id, &"z".repeat(32)).map_err(|e| e.to_string())?;
    if store
        .check_token(&as_issued)
        .map_err(|e| fail("check", e))?
        != TokenCheck::Refused(Refusal::Unknown)
    {
        return Err("an imported token was checked by its id".into());
    }
    store
        .revoke_token(&records[0].id)
        .map_err(|e| fail("revoke", e))?;
    store
        .set_account_active(AccountKind::User, 5871, false)
        .map_err(|e| fail("disable", e))?;
    if check(seed, &key)? != Err(Refusal::Revoked)
        || check(drf, &key)? != Err(Refusal::UserDisabled)
    {
        return Err("revoked or disabled imported tokens are not refused".into());
    }

    let snapshot = store.snapshot().map_err(|e| fail("snapshot", e))?;
    restored
        .restore(&snapshot)
        .map_err(|e| fail("restore", e))?;
    if !restored.has_imported_tokens().map_err(|e| fail("has", e))? {
        return Err("the restored store has no imported token".into());
    }
    match restored.imported_token(&key.digest(drf)) {
        Ok(Some(record)) if record.id == records[1].id => Ok(()),
        other => Err(format!("the restored store lost the digest: {other:?}")),
    }
}

/// The last use of tokens, for any backend, on an empty store: recorded in
/// batches, it only moves forward (several replicas report; the latest
/// wins), skips unknown ids, is listed and carried by a snapshot.
pub fn check_last_use(store: &dyn Store) -> Result<(), String> {
    let fail = |what: &str, e: StoreError| format!("{what}: {e}");
    add_accounts(
        store,
        &[(AccountKind::Merchant, 1), (AccountKind::User, 5870)],
    )?;
    let used = store
        .create_token(5870, 1, None)
        .map_err(|e| fail("create", e))?;
    let unused = store
        .create_token(5870, 1, None)
        .map_err(|e| fail("create", e))?;
    let (id, unknown) = (*used.token.id(), *StaticToken::generate().id());
    let last_used = |id: &TokenId| -> Result<Option<UnixTime>, String> {
        Ok(store
            .token(id)
            .map_err(|e| fail("token", e))?
            .and_then(|t| t.last_used_at))
    };
    for (batch, want) in [
        (vec![(id, 2_000), (unknown, 9_000)], Some(2_000)),
        // One replica's older report does not move it back.
        (vec![(id, 1_500)], Some(2_000)),
        (vec![(id, 2_500), (id, 2_400)], Some(2_500)),
        (vec![], Some(2_500)),
    ] {
        store
            .record_last_used(&batch)
            .map_err(|e| fail("record", e))?;
        if last_used(&id)? != want {
            return Err(format!(
                "after {batch:?}: {:?}, not {want:?}",
                last_used(&id)?
            ));
        }
    }
    if last_used(unused.token.id())?.is_some() {
        return Err("an unused token has a last use".into());
    }
    let snapshot = store.snapshot().map_err(|e| fail("snapshot", e))?;
    let carried = snapshot
        .tokens
        .iter()
        .find(|t| t.id == id)
        .map(|t| t.last_used_at);
    if carried != Some(Some(2_500)) {
        return Err(format!("the snapshot carries {carried:?}"));
    }
    Ok(())
}

/// Adds these accounts (named "A") for a focused check.
fn add_accounts(store: &dyn Store, accounts: &[(AccountKind, u64)]) -> Result<(), String> {
    for &(kind, id) in accounts {
        store
            .add_account(kind, "A", Some(id))
            .map_err(|e| format!("add {} {id}: {e}", kind.as_str()))?;
    }
    Ok(())
}
