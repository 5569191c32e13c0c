//! The store's conformance model, for every backend: arbitrary sequences
//! of operations (accounts, static tokens, JWT revocations, signing keys
//! and their pruning, the audit trail, snapshots) must give the same
//! answers from a [`Store`] as from a plain in-memory model. Enabled by the `conformance` feature; the sled
//! backend, the admin socket and the PostgreSQL backend all run it, with
//! the focused checks beside it ([`check_audit_retention`],
//! [`check_token_expiry`], [`check_imported_tokens`], [`check_last_use`]).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;
use std::sync::Arc;

use proptest::prelude::*;

mod checks;

pub use checks::{
    check_audit_retention, check_imported_tokens, check_last_use, check_token_expiry,
};
use stamps_core::{Jti, ManualClock, StaticToken, UnixTime};

use crate::{
    Account, AccountKind, AuditEvent, JwtRevocation, JwtRevocationTarget, KeyInfo, PruneSummary,
    Refusal, Store, StoreError, TokenCheck, TokenFilter,
};

/// The time of the model's clock.
pub const NOW: u64 = 1_700_000_000;

/// One operation of a sequence.
#[derive(Debug, Clone)]
pub enum Op {
    /// Add an account with this id (or the next) and name.
    Add(AccountKind, Option<u64>, String),
    /// Enable or disable an account.
    SetActive(AccountKind, u64, bool),
    /// Create a token for (user, merchant) with a label.
    CreateToken(u64, u64, Option<String>),
    /// Revoke the i-th token created (or an unknown one).
    Revoke(usize),
    /// Check the i-th token created, presented as given.
    Check(usize, Presented),
    /// List tokens.
    List(TokenFilter),
    /// List merchants or users.
    ListAccounts(AccountKind),
    /// Drop the store and open it again.
    Reopen,
    /// Revoke JWTs: of a user or a merchant (which may not exist), or one
    /// `jti`.
    RevokeJwts(JwtRevocationTarget),
    /// Make a new signing key, dropping every earlier one or not.
    RotateKey(bool),
    /// Prune what expired before the model's time plus this many seconds.
    Prune(u64),
    /// Append audit events at the model's time plus each offset; a `false`
    /// makes that event's action invalid, so the whole batch is refused.
    AppendAudit(Vec<(u64, bool)>),
    /// Read the trail from the model's time plus this many seconds.
    Audit(u64),
    /// Take a snapshot.
    Snapshot,
}

/// Which token a `Check` presents.
/// Which token a `Check` presents.
#[derive(Debug, Clone, Copy)]
pub enum Presented {
    /// The token as issued.
    Issued,
    /// Its id with another secret.
    WrongSecret,
    /// A token never issued.
    Unknown,
}

/// Error categories both sides must agree on.
fn category(e: &StoreError) -> &'static str {
    match e {
        StoreError::NotFound { .. } => "not found",
        StoreError::Duplicate { .. } => "duplicate",
        StoreError::InvalidText { .. } => "invalid text",
        StoreError::InvalidId { .. } => "invalid id",
        other => panic!("unexpected store error {other}"),
    }
}

fn kind() -> impl Strategy<Value = AccountKind> {
    prop_oneof![Just(AccountKind::Merchant), Just(AccountKind::User)]
}

fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        8 => "[a-zA-Z0-9 é]{1,12}",
        1 => Just(String::new()),
        1 => Just("tab\there".to_owned()),
        1 => Just("x".repeat(201)),
    ]
}

/// Any operation, weighted towards the ones that change the store.
pub fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (kind(), prop::option::of(0u64..5), text()).prop_map(|(k, id, name)| Op::Add(k, id, name)),
        3 => (kind(), 0u64..5, any::<bool>()).prop_map(|(k, id, a)| Op::SetActive(k, id, a)),
        2 => (0u64..5, 0u64..5, prop::option::of(text())).prop_map(|(u, m, l)| Op::CreateToken(u, m, l)),
        2 => (0usize..4).prop_map(Op::Revoke),
        2 => (0usize..4, prop_oneof![Just(Presented::Issued), Just(Presented::WrongSecret), Just(Presented::Unknown)])
            .prop_map(|(i, p)| Op::Check(i, p)),
        1 => (prop::option::of(0u64..5), prop::option::of(0u64..5))
            .prop_map(|(user_id, merchant_id)| Op::List(TokenFilter { user_id, merchant_id })),
        1 => kind().prop_map(Op::ListAccounts),
        1 => Just(Op::Reopen),
        2 => revocation_target().prop_map(Op::RevokeJwts),
        2 => any::<bool>().prop_map(Op::RotateKey),
        1 => (0u64..3).prop_map(Op::Prune),
        1 => prop::collection::vec((0u64..3, prop::bool::weighted(0.9)), 1..4).prop_map(Op::AppendAudit),
        1 => (0u64..4).prop_map(Op::Audit),
        1 => Just(Op::Snapshot),
    ]
}

fn revocation_target() -> impl Strategy<Value = JwtRevocationTarget> {
    prop_oneof![
        (0u64..5).prop_map(|id| JwtRevocationTarget::User { id }),
        (0u64..5).prop_map(|id| JwtRevocationTarget::Merchant { id }),
        (0u8..3).prop_map(|n| JwtRevocationTarget::Jti {
            jti: Jti::from_bytes([n; 16])
        }),
    ]
}

/// A revocation's identity: one entry per jti, user or merchant.
fn target_key(target: &JwtRevocationTarget) -> String {
    format!("{target:?}")
}

/// The model: plain maps, and the rules written the obvious way.
#[derive(Default)]
struct Model {
    accounts: BTreeMap<(AccountKind, u64), Account>,
    /// (user, merchant, label, revoked) per token, in creation order.
    tokens: Vec<(u64, u64, Option<String>, bool)>,
    /// The JWT revocations, by target.
    revocations: BTreeMap<String, JwtRevocation>,
    /// The signing keys made: (id, drops_previous), oldest first; all made
    /// at [`NOW`].
    keys: Vec<(u64, bool)>,
    /// The audit trail: (at, action, subject), in order.
    audit: Vec<(UnixTime, String, String)>,
}

impl Model {
    fn valid_text(t: &str) -> bool {
        !t.is_empty() && t.chars().count() <= 200 && !t.chars().any(char::is_control)
    }

    fn add(
        &mut self,
        kind: AccountKind,
        id: Option<u64>,
        name: &str,
    ) -> Result<Account, &'static str> {
        if !Self::valid_text(name) {
            return Err("invalid text");
        }
        let id = match id {
            Some(0) => return Err("invalid id"),
            Some(id) if self.accounts.contains_key(&(kind, id)) => return Err("duplicate"),
            Some(id) => id,
            None => self
                .accounts
                .range((kind, 0)..=(kind, u64::MAX))
                .last()
                .map_or(1, |(&(_, id), _)| id + 1),
        };
        let account = Account {
            id,
            name: name.to_owned(),
            active: true,
            created_at: NOW,
        };
        self.accounts.insert((kind, id), account.clone());
        Ok(account)
    }

    fn active(&self, kind: AccountKind, id: u64) -> bool {
        self.accounts.get(&(kind, id)).is_some_and(|a| a.active)
    }
}

/// An open store, and what must live as long as it (a serving thread),
/// dropped after it.
pub struct Opened {
    /// The store under test.
    pub store: Box<dyn Store>,
    /// Whatever the store needs kept alive.
    pub guard: Option<Box<dyn std::any::Any>>,
}

impl std::fmt::Debug for Opened {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Opened").finish_non_exhaustive()
    }
}

impl Opened {
    /// A store needing nothing else.
    pub fn bare(store: impl Store + 'static) -> Self {
        Self {
            store: Box::new(store),
            guard: None,
        }
    }
}

/// Runs `ops` against the store `open` gives and against the model.
/// `open` is called for the first store and again after each
/// [`Op::Reopen`] (the previous one dropped first); the store starts empty,
/// with a clock at [`NOW`].
pub fn check_against_model(
    ops: Vec<Op>,
    mut open: impl FnMut(&Arc<ManualClock>) -> Opened,
) -> Result<(), TestCaseError> {
    let clock = Arc::new(ManualClock::new(NOW));
    let mut open = || open(&clock);
    let mut store = Some(open());
    let mut model = Model::default();
    let mut issued: Vec<StaticToken> = Vec::new();

    for op in ops {
        let s = store.as_ref().unwrap().store.as_ref();
        match op {
            Op::Add(kind, id, name) => {
                let got = s.add_account(kind, &name, id).map_err(|e| category(&e));
                prop_assert_eq!(got, model.add(kind, id, &name));
            }
            Op::SetActive(kind, id, active) => {
                let got = s
                    .set_account_active(kind, id, active)
                    .map_err(|e| category(&e));
                let want = match model.accounts.get_mut(&(kind, id)) {
                    Some(a) => {
                        a.active = active;
                        Ok(a.clone())
                    }
                    None => Err("not found"),
                };
                prop_assert_eq!(got, want);
            }
            Op::CreateToken(user, merchant, label) => {
                let got = s.create_token(user, merchant, label.as_deref());
                let want = if label.as_deref().is_some_and(|l| !Model::valid_text(l)) {
                    Err("invalid text")
                } else if !model.accounts.contains_key(&(AccountKind::User, user))
                    || !model
                        .accounts
                        .contains_key(&(AccountKind::Merchant, merchant))
                {
                    Err("not found")
                } else {
                    Ok(())
                };
                match got {
                    Ok(t) => {
                        prop_assert_eq!(want, Ok(()));
                        prop_assert_eq!(
                            (t.record.user_id, t.record.merchant_id, &t.record.label),
                            (user, merchant, &label)
                        );
                        model.tokens.push((user, merchant, label, false));
                        issued.push(t.token);
                    }
                    Err(e) => prop_assert_eq!(Err(category(&e)), want),
                }
            }
            Op::Revoke(i) => match issued.get(i) {
                Some(token) => {
                    prop_assert!(s.revoke_token(token.id()).unwrap().revoked);
                    model.tokens[i].3 = true;
                }
                None => {
                    let unknown = *StaticToken::generate().id();
                    prop_assert_eq!(
                        s.revoke_token(&unknown)
                            .map_err(|e| category(&e))
                            .map(|_| ()),
                        Err("not found")
                    );
                }
            },
            Op::Check(i, presented) => {
                let Some(token) = issued.get(i) else { continue };
                let (user, merchant, _, revoked) = model.tokens[i];
                let (presented, want) = match presented {
                    Presented::Unknown => (StaticToken::generate(), Some(Refusal::Unknown)),
                    Presented::WrongSecret => (
                        StaticToken::from_parts(*token.id(), &"z".repeat(32)).unwrap(),
                        Some(Refusal::WrongSecret),
                    ),
                    Presented::Issued => (
                        token.clone(),
                        if revoked {
                            Some(Refusal::Revoked)
                        } else if !model.active(AccountKind::User, user) {
                            Some(Refusal::UserDisabled)
                        } else if !model.active(AccountKind::Merchant, merchant) {
                            Some(Refusal::MerchantDisabled)
                        } else {
                            None
                        },
                    ),
                };
                let got = match s.check_token(&presented).unwrap() {
                    TokenCheck::Live(record) => {
                        prop_assert_eq!(record.id, *token.id());
                        None
                    }
                    TokenCheck::Refused(r) => Some(r),
                };
                prop_assert_eq!(got, want);
            }
            Op::List(filter) => {
                let got: Vec<_> = s
                    .tokens(filter)
                    .unwrap()
                    .into_iter()
                    .map(|t| (t.id, t.user_id, t.merchant_id, t.label, t.revoked))
                    .collect();
                let mut want: Vec<_> = issued
                    .iter()
                    .zip(&model.tokens)
                    .filter(|(_, (u, m, _, _))| {
                        filter.user_id.is_none_or(|f| f == *u)
                            && filter.merchant_id.is_none_or(|f| f == *m)
                    })
                    .map(|(t, (u, m, l, r))| (*t.id(), *u, *m, l.clone(), *r))
                    .collect();
                // Same created_at for all: the store orders them by id.
                want.sort_by_key(|w| w.0);
                prop_assert_eq!(got, want);
            }
            Op::ListAccounts(kind) => {
                let want: Vec<Account> = model
                    .accounts
                    .range((kind, 0)..=(kind, u64::MAX))
                    .map(|(_, a)| a.clone())
                    .collect();
                prop_assert_eq!(s.accounts(kind).unwrap(), want);
            }
            Op::Reopen => {
                drop(store.take());
                store = Some(open());
            }
            Op::RevokeJwts(target) => {
                let got = s.revoke_jwts(target).map_err(|e| category(&e));
                let want = match target.account() {
                    Some((kind, id)) if !model.accounts.contains_key(&(kind, id)) => {
                        Err("not found")
                    }
                    _ => {
                        let revocation = JwtRevocation {
                            target,
                            revoked_at: NOW,
                        };
                        model.revocations.insert(target_key(&target), revocation);
                        Ok(revocation)
                    }
                };
                prop_assert_eq!(got, want);
                let mut listed = s.jwt_revocations().unwrap();
                listed.sort_by_key(|r| target_key(&r.target));
                let modelled: Vec<_> = model.revocations.values().copied().collect();
                prop_assert_eq!(listed, modelled);
            }
            Op::RotateKey(drop_previous) => {
                let id = model.keys.last().map_or(1, |(id, _)| id + 1);
                model.keys.push((id, drop_previous));
                prop_assert_eq!(
                    s.rotate_signing_key_with(drop_previous).unwrap(),
                    KeyInfo {
                        id,
                        created_at: NOW,
                        drops_previous: drop_previous,
                    }
                );
                let listed: Vec<_> = s
                    .signing_keys()
                    .unwrap()
                    .into_iter()
                    .map(|k| (k.id, k.drops_previous, k.created_at))
                    .collect();
                let modelled: Vec<_> = model.keys.iter().map(|&(id, d)| (id, d, NOW)).collect();
                prop_assert_eq!(listed, modelled);
            }
            Op::Prune(offset) => {
                let before = NOW + offset;
                let revocations = model.revocations.len();
                model.revocations.retain(|_, r| r.revoked_at >= before);
                // Every key was made at NOW: all but the newest go once
                // NOW is before the cut-off.
                let keys = if NOW < before {
                    model.keys.len().saturating_sub(1)
                } else {
                    0
                };
                model.keys.drain(..keys);
                prop_assert_eq!(
                    s.prune(before).unwrap(),
                    PruneSummary {
                        revocations: revocations - model.revocations.len(),
                        keys,
                    }
                );
                let kept: Vec<_> = s.signing_keys().unwrap().iter().map(|k| k.id).collect();
                let modelled: Vec<_> = model.keys.iter().map(|(id, _)| *id).collect();
                prop_assert_eq!(kept, modelled);
                prop_assert_eq!(s.jwt_revocations().unwrap().len(), model.revocations.len());
            }
            Op::AppendAudit(events) => {
                let batch: Vec<AuditEvent> = events
                    .iter()
                    .map(|&(offset, valid)| {
                        let action = if valid { "token.revoke" } else { "bad\naction" };
                        AuditEvent::new(NOW + offset, "stamps-admin uid=0", action, "token x")
                    })
                    .collect();
                let got = s.append_audit(&batch).map_err(|e| category(&e));
                if events.iter().all(|&(_, valid)| valid) {
                    prop_assert_eq!(got, Ok(()));
                    model
                        .audit
                        .extend(batch.into_iter().map(|e| (e.at, e.action, e.subject)));
                } else {
                    prop_assert_eq!(got, Err("invalid text"));
                }
            }
            Op::Audit(offset) => {
                let got: Vec<_> = s
                    .audit(NOW + offset)
                    .unwrap()
                    .into_iter()
                    .map(|e| (e.at, e.action, e.subject))
                    .collect();
                let want: Vec<_> = model
                    .audit
                    .iter()
                    .filter(|(at, _, _)| *at >= NOW + offset)
                    .cloned()
                    .collect();
                prop_assert_eq!(got, want);
            }
            Op::Snapshot => {
                let snapshot = s.snapshot().unwrap();
                for (kind, accounts) in [
                    (AccountKind::Merchant, &snapshot.merchants),
                    (AccountKind::User, &snapshot.users),
                ] {
                    let want: Vec<Account> = model
                        .accounts
                        .range((kind, 0)..=(kind, u64::MAX))
                        .map(|(_, a)| a.clone())
                        .collect();
                    prop_assert_eq!(accounts, &want);
                }
                let mut got: Vec<_> = snapshot
                    .tokens
                    .iter()
                    .map(|t| (t.id, t.user_id, t.merchant_id, t.label.clone(), t.revoked))
                    .collect();
                got.sort_by_key(|t| t.0);
                let mut want: Vec<_> = issued
                    .iter()
                    .zip(&model.tokens)
                    .map(|(t, (u, m, l, r))| (*t.id(), *u, *m, l.clone(), *r))
                    .collect();
                want.sort_by_key(|w| w.0);
                prop_assert_eq!(got, want);
            }
        }
    }
    Ok(())
}
