//! Fuzz target `jwt_verify`: the check is `stamps_fuzz_checks::check_jwt_verify` (crates/stamps-fuzz-checks),
//! which the corpus-replay tests run too.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| stamps_fuzz_checks::check_jwt_verify(data));
