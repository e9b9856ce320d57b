#![no_main]
// cargo +nightly fuzz run jwt (see scripts/fuzz.sh)
libfuzzer_sys::fuzz_target!(|data: &[u8]| khoa_server::fuzzing::jwt(data));
