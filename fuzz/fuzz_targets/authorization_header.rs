//! Fuzz target `authorization_header`: the check is `stamps_fuzz::check_authorization_header` (fuzz/src/lib.rs),
//! which the corpus-replay tests run too.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| stamps_fuzz::check_authorization_header(data));
