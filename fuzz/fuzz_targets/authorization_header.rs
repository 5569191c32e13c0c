//! Fuzz target `authorization_header`: the check is `stamps_fuzz_checks::check_authorization_header` (crates/stamps-fuzz-checks),
//! which the corpus-replay tests run too.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| stamps_fuzz_checks::check_authorization_header(data));
