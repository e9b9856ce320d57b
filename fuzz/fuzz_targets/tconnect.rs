#![no_main]
// cargo +nightly fuzz run tconnect (see scripts/fuzz.sh)
libfuzzer_sys::fuzz_target!(|data: &[u8]| khoa_server::fuzzing::tconnect(data));
