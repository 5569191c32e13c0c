//! The store's side of static-token authentication.
//!
//! * `lookup_by_id/{1000,1000000}`: one keyed read of a token record with a
//!   thousand and with a million tokens stored. The ratio shows the lookup
//!   is O(1) in practice (a B-tree: logarithmic, with a few levels).
//! * `lookup_imported/{1000,1000000}`: the same for imported tokens, found
//!   by their lookup digest (all the tokens stored are imported ones), and
//!   `lookup_digest`: the HMAC-SHA256 of a 40-character text that a
//!   presented imported token costs before its lookup. An unknown text
//!   costs these two, and no argon2.
//! * `argon2id_verify`: one OWASP argon2id verification, the price of a
//!   static token the server has not seen yet (issued or imported alike).
//!
//! Run as a test (`cargo test --all-targets`, no `--bench` argument), it
//! uses 10,000 tokens instead of a million, to stay fast.
#![allow(clippy::unwrap_used, missing_docs)]

use std::hint::black_box;

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use stamps_core::{LookupDigest, LookupKey, StaticToken};
use stamps_store::{Account, SecretHasher, Snapshot, Store, TokenRecord};
use stamps_store_sled::SledStore;

fn benchmarking() -> bool {
    std::env::args().any(|a| a == "--bench")
}

/// The text of the `i`-th imported token: 40 characters, as DRF's keys.
fn imported_text(i: usize) -> String {
    format!("{i:040x}")
}

/// A store holding `count` tokens (all with one precomputed hash: the
/// lookup does not look at it), imported ones (digests under `imported`)
/// or issued ones, and a sample of their ids and digests.
fn store_with(
    count: usize,
    hash: &str,
    imported: Option<&LookupKey>,
) -> (
    tempfile::TempDir,
    SledStore,
    Vec<(stamps_core::TokenId, Option<LookupDigest>)>,
) {
    let dir = tempfile::tempdir().unwrap();
    let store = SledStore::open(dir.path()).unwrap();
    let account = |id| Account {
        id,
        name: format!("a{id}"),
        active: true,
        created_at: 1,
    };
    let tokens: Vec<TokenRecord> = (0..count)
        .map(|i| TokenRecord {
            id: *StaticToken::generate().id(),
            user_id: 1,
            merchant_id: 1,
            label: None,
            hash: hash.to_owned(),
            created_at: 1,
            revoked: false,
            expires_at: None,
            last_used_at: None,
            lookup: imported.map(|key| key.digest(&imported_text(i))),
        })
        .collect();
    let sample = tokens
        .iter()
        .step_by((count / 1000).max(1))
        .map(|t| (t.id, t.lookup))
        .collect();
    let snapshot = Snapshot {
        merchants: vec![account(1)],
        users: vec![account(1)],
        tokens,
    };
    store.restore(&snapshot).unwrap();
    // Reopen, as a server starting on an existing store would: the page
    // cache then holds what lookups touch, not everything just written.
    drop(store);
    let store = SledStore::open(dir.path()).unwrap();
    (dir, store, sample)
}

fn store(c: &mut Criterion) {
    let hasher = SecretHasher::owasp();
    let token = StaticToken::generate();
    let hash = hasher.hash(token.secret()).unwrap();

    let mut group = c.benchmark_group("store");
    let large = if benchmarking() { 1_000_000 } else { 10_000 };
    let key = LookupKey::new(&[9; 32]).unwrap();
    for count in [1_000, large] {
        let (_dir, store, sample) = store_with(count, &hash, None);
        let mut next = sample.iter().cycle();
        group.bench_with_input(BenchmarkId::new("lookup_by_id", count), &count, |b, _| {
            b.iter(|| {
                let (id, _) = next.next().unwrap();
                store.token(black_box(id)).unwrap().unwrap()
            })
        });
        drop((store, _dir));
        let (_dir, store, sample) = store_with(count, &hash, Some(&key));
        let mut next = sample.iter().filter_map(|(_, digest)| *digest).cycle();
        group.bench_with_input(
            BenchmarkId::new("lookup_imported", count),
            &count,
            |b, _| {
                b.iter(|| {
                    let digest = next.next().unwrap();
                    store.imported_token(black_box(&digest)).unwrap().unwrap()
                })
            },
        );
    }
    let text = imported_text(7);
    group.bench_function("lookup_digest", |b| b.iter(|| key.digest(black_box(&text))));
    group.sample_size(10);
    group.bench_function("argon2id_verify", |b| {
        b.iter(|| assert!(hasher.verify(black_box(&hash), token.secret())))
    });
    group.finish();
}

criterion_group!(benches, store);
criterion_main!(benches);
