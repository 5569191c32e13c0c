//! Model-based test: arbitrary sequences of operations give the same answers
//! from the sled store as from a plain in-memory model, used directly and
//! through the admin socket (a `RemoteStore` talking to an `AdminSocket`
//! served by a thread over a sled store).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use proptest::prelude::*;
use stamps_core::{ManualClock, StaticToken};
use stamps_store::{
    Account, AccountKind, AdminShutdown, AdminSocket, Refusal, RemoteStore, SecretHasher,
    SledStore, Store, StoreError, TokenCheck, TokenFilter, admin_socket_path,
};

const NOW: u64 = 1_700_000_000;

#[derive(Debug, Clone)]
enum Op {
    Add(AccountKind, Option<u64>, String),
    SetActive(AccountKind, u64, bool),
    CreateToken(u64, u64, Option<String>),
    Revoke(usize),
    Check(usize, Presented),
    List(TokenFilter),
    ListAccounts(AccountKind),
    Reopen,
}

/// Which token a `Check` presents.
#[derive(Debug, Clone, Copy)]
enum Presented {
    Issued,
    WrongSecret,
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

fn op() -> impl Strategy<Value = Op> {
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
    ]
}

/// The model: plain maps, and the rules written the obvious way.
#[derive(Default)]
struct Model {
    accounts: BTreeMap<(AccountKind, u64), Account>,
    /// (user, merchant, label, revoked) per token, in creation order.
    tokens: Vec<(u64, u64, Option<String>, bool)>,
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

/// An open store, and what must live as long as it (a serving thread).
struct Opened {
    store: Box<dyn Store>,
    _server: Option<Server>,
}

/// A thread serving a sled store on its admin socket; stopped and joined
/// on drop, which closes the sled store.
struct Server {
    stop: AdminShutdown,
    thread: Option<JoinHandle<()>>,
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.shutdown();
        self.thread.take().unwrap().join().unwrap();
    }
}

/// Opens the store of `dir`, which the sequence may just have dropped: its
/// lock goes with sled's threads, a moment later.
fn reopen(dir: &Path, clock: &Arc<ManualClock>) -> SledStore {
    SledStore::open_with_patience(
        dir,
        SecretHasher::owasp(),
        clock.clone(),
        Duration::from_secs(10),
    )
    .unwrap()
}

fn open_sled(dir: &Path, clock: &Arc<ManualClock>) -> Opened {
    Opened {
        store: Box::new(reopen(dir, clock)),
        _server: None,
    }
}

fn open_remote(dir: &Path, clock: &Arc<ManualClock>) -> Opened {
    let sled = reopen(dir, clock);
    let path = admin_socket_path(dir);
    let socket = AdminSocket::bind(&path).unwrap();
    let stop = socket.shutdown_handle();
    let thread = socket.spawn(Arc::new(sled)).unwrap();
    let remote = RemoteStore::connect(&path)
        .unwrap()
        .expect("the server listens")
        .with_clock(clock.clone());
    Opened {
        store: Box::new(remote),
        _server: Some(Server {
            stop,
            thread: Some(thread),
        }),
    }
}

/// Runs `ops` against the store `open` gives and against the model.
fn check_against_model(
    ops: Vec<Op>,
    open: fn(&Path, &Arc<ManualClock>) -> Opened,
) -> Result<(), TestCaseError> {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::new(NOW));
    let open = || open(dir.path(), &clock);
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
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    #[test]
    fn sled_store_matches_the_model(ops in prop::collection::vec(op(), 1..30)) {
        check_against_model(ops, open_sled)?;
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 16, ..ProptestConfig::default() })]

    #[test]
    fn remote_store_matches_the_model(ops in prop::collection::vec(op(), 1..30)) {
        check_against_model(ops, open_remote)?;
    }
}
