//! The store's side of static-token authentication.
//!
//! * `lookup_by_id/{1000,1000000}`: one keyed read of a token record with a
//!   thousand and with a million tokens stored. The ratio shows the lookup
//!   is O(1) in practice (a B-tree: logarithmic, with a few levels).
//! * `argon2id_verify`: one OWASP argon2id verification, the price of a
//!   static token the server has not seen yet.
//!
//! Run as a test (`cargo test --all-targets`, no `--bench` argument), it
//! uses 10,000 tokens instead of a million, to stay fast.
#![allow(clippy::unwrap_used, missing_docs)]

use std::hint::black_box;

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use stamps_core::StaticToken;
use stamps_store::{Account, SecretHasher, Snapshot, Store, TokenRecord};
use stamps_store_sled::SledStore;

fn benchmarking() -> bool {
    std::env::args().any(|a| a == "--bench")
}

/// A store holding `count` tokens (all with one precomputed hash: the
/// lookup does not look at it) and a sample of their ids.
fn store_with(
    count: usize,
    hash: &str,
) -> (tempfile::TempDir, SledStore, Vec<stamps_core::TokenId>) {
    let dir = tempfile::tempdir().unwrap();
    let store = SledStore::open(dir.path()).unwrap();
    let account = |id| Account {
        id,
        name: format!("a{id}"),
        active: true,
        created_at: 1,
    };
    let tokens: Vec<TokenRecord> = (0..count)
        .map(|_| TokenRecord {
            id: *StaticToken::generate().id(),
            user_id: 1,
            merchant_id: 1,
            label: None,
            hash: hash.to_owned(),
            created_at: 1,
            revoked: false,
            expires_at: None,
            last_used_at: None,
            lookup: None,
        })
        .collect();
    let sample = tokens
        .iter()
        .step_by((count / 1000).max(1))
        .map(|t| t.id)
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
    for count in [1_000, large] {
        let (_dir, store, sample) = store_with(count, &hash);
        let mut next = sample.iter().cycle();
        group.bench_with_input(BenchmarkId::new("lookup_by_id", count), &count, |b, _| {
            b.iter(|| {
                store
                    .token(black_box(next.next().unwrap()))
                    .unwrap()
                    .unwrap()
            })
        });
    }
    group.sample_size(10);
    group.bench_function("argon2id_verify", |b| {
        b.iter(|| assert!(hasher.verify(black_box(&hash), token.secret())))
    });
    group.finish();
}

criterion_group!(benches, store);
criterion_main!(benches);
