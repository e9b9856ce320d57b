#![no_main]
// cargo +nightly fuzz run authorization_request (see scripts/fuzz.sh)
libfuzzer_sys::fuzz_target!(|data: &[u8]| khoa_server::fuzzing::authorization_request(data));
