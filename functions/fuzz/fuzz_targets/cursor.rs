#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| service_core::fuzzing::cursor(data));
