//! Fuzz target `access_token_body`: the check is `stamps_fuzz_checks::check_access_token_body` (crates/stamps-fuzz-checks),
//! which the corpus-replay tests run too.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| stamps_fuzz_checks::check_access_token_body(data));
