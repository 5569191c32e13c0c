//! Fuzz target `static_token`: the check is `stamps_fuzz::check_static_token` (fuzz/src/lib.rs),
//! which the corpus-replay tests run too.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| stamps_fuzz::check_static_token(data));
