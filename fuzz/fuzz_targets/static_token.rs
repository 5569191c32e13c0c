//! Fuzz target `static_token`: the check is `stamps_fuzz_checks::check_static_token` (crates/stamps-fuzz-checks),
//! which the corpus-replay tests run too.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| stamps_fuzz_checks::check_static_token(data));
