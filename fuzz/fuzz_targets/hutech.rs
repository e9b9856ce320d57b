#![no_main]
// cargo +nightly fuzz run hutech (see scripts/fuzz.sh)
libfuzzer_sys::fuzz_target!(|data: &[u8]| khoa_server::fuzzing::hutech(data));
