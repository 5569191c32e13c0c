//! The verification path of stamps-core, each case beside its floor.
//!
//! `hmac_floor` is HMAC-SHA256 over the same signing input with the key
//! schedule precomputed: the least any HS256 verifier must do. The ratio
//! `jwt_verify_valid / hmac_floor` is the figure reported in
//! docs/PERFORMANCE.md (target: at most 2).
#![allow(clippy::unwrap_used, missing_docs)]

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;
use stamps_core::{ExpiryRules, ExposeSecret, JwtCodec, KeySet, SigningKey, StaticToken};

const SECRET: &[u8] = b"a benchmark secret of thirty-two bytes or more";
const NOW: u64 = 1_657_246_216;

fn verification(c: &mut Criterion) {
    let codec = JwtCodec::new(
        KeySet::new(SigningKey::new(SECRET.to_vec()).unwrap()),
        ExpiryRules::default(),
    );
    let token = codec.mint(5870, 1, NOW).token;
    let (signing_input, _) = token.rsplit_once('.').unwrap();
    let mut tampered = token.clone().into_bytes();
    let middle = tampered.len() / 2;
    tampered[middle] = if tampered[middle] == b'A' { b'B' } else { b'A' };
    let tampered = String::from_utf8(tampered).unwrap();
    let keyed = Hmac::<Sha256>::new_from_slice(SECRET).unwrap();
    let static_token = StaticToken::generate().to_secret_string();

    assert!(codec.verify(&token, NOW).is_ok());
    assert!(codec.verify(&tampered, NOW).is_err());

    let mut group = c.benchmark_group("verification");
    group.bench_function("hmac_floor", |b| {
        b.iter(|| {
            let mut mac = keyed.clone();
            mac.update(black_box(signing_input.as_bytes()));
            black_box(mac.finalize().into_bytes())
        })
    });
    group.bench_function("jwt_verify_valid", |b| {
        b.iter(|| codec.verify(black_box(&token), NOW))
    });
    group.bench_function("jwt_verify_reference_jsonwebtoken", |b| {
        b.iter(|| codec.verify_reference(black_box(&token), NOW))
    });
    group.bench_function("jwt_reject_tampered", |b| {
        b.iter(|| codec.verify(black_box(&tampered), NOW))
    });
    group.bench_function("jwt_mint", |b| {
        b.iter(|| codec.mint(black_box(5870), 1, NOW))
    });
    group.bench_function("static_token_parse", |b| {
        b.iter(|| StaticToken::parse(black_box(static_token.expose_secret())))
    });
    group.finish();
}

criterion_group!(benches, verification);
criterion_main!(benches);
