//! The store's conformance model (`stamps_store::conformance`), against
//! the PostgreSQL backend: each case on a scratch schema of its own.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use proptest::prelude::*;
use stamps_store::SecretHasher;
use stamps_store::conformance::{Opened, check_against_model, op};
use stamps_store_postgres::PgStore;
use stamps_store_postgres::testing::scratch_url;

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    #[test]
    fn postgres_store_matches_the_model(ops in prop::collection::vec(op(), 1..30)) {
        let Some(url) = scratch_url() else { return Ok(()) };
        check_against_model(ops, |clock| {
            Opened::bare(PgStore::open_with(&url, SecretHasher::owasp(), clock.clone()).unwrap())
        })?;
    }
}
