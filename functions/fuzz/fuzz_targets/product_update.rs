#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| product_service::fuzzing::update(data));
