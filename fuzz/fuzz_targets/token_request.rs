#![no_main]
// cargo +nightly fuzz run token_request (see scripts/fuzz.sh)
libfuzzer_sys::fuzz_target!(|data: &[u8]| khoa_server::fuzzing::token_request(data));
