#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| user_service::fuzzing::update(data));
